#!/usr/bin/env python3
"""Checks the module graph of the palaver crate: no import loops, at any depth.

Every path a file names (`crate::a::b`, `super::x`, `self::x`, a `use crate::{a, b::c}` group)
is resolved to the module it points into. For each module P, its child modules form a graph:
child x -> child y when code under x names something under y. A loop in any of those graphs
is printed; the exit code is 1 if there is one. Unit tests (after `#[cfg(test)]` in a file,
and files named tests.rs) are left out: they may reach anywhere. `-v` prints the top level.
"""
import os, re, sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(__file__), "..", "crates", "palaver", "src")
IDENT = r"[a-z_][a-z0-9_]*"
PATH = re.compile(r"\b((?:crate|super|self)(?:::(?:super|" + IDENT + r"))*)(?:::\{([^;]*?)\})?")


def module_of(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return parts


def resolve(here, path):
    segs = path.split("::")
    if segs[0] == "crate":
        out, segs = [], segs[1:]
    elif segs[0] == "self":
        out, segs = list(here), segs[1:]
    else:
        out = list(here)
    for s in segs:
        if s == "super":
            out = out[:-1]
        else:
            out.append(s)
    return out


def group_items(group):
    depth, cur, items = 0, "", []
    for ch in group:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    items.append(cur.strip())
    return [i.split("::{")[0] for i in items if i]


modules = set()
refs = []  # (from module, to path)
for dirpath, _, files in os.walk(ROOT):
    for f in files:
        if not f.endswith(".rs") or f == "tests.rs":
            continue
        rel = os.path.relpath(os.path.join(dirpath, f), ROOT)
        here = module_of(rel)
        if here in ([], ["main"]):
            continue
        modules.add(tuple(here))
        text = open(os.path.join(dirpath, f)).read()
        cut = text.find("#[cfg(test)]\nmod tests")
        text = text if cut < 0 else text[:cut]
        text = re.sub(r"//.*", "", text)
        for path, group in PATH.findall(text):
            base = resolve(here, path)
            targets = [base + i.split("::") for i in group_items(group)] if group else [base]
            for t in targets:
                refs.append((here, [s for s in t if s not in ("self", "*")]))


def is_module(path):
    return tuple(path) in modules


graphs = defaultdict(lambda: defaultdict(set))
for src, dst in refs:
    # the longest prefix of dst that is a module
    while dst and not is_module(dst):
        dst = dst[:-1]
    for depth in range(min(len(src), len(dst))):
        if src[:depth] != dst[:depth]:
            break
        a, b = src[depth], dst[depth]
        if a != b:
            graphs[tuple(src[:depth])][a].add(b)
            break


def cycles(graph):
    found, seen = [], set()

    def dfs(node, stack):
        for nxt in sorted(graph.get(node, ())):
            if nxt in stack:
                cyc = stack[stack.index(nxt):] + [nxt]
                if frozenset(cyc) not in seen:
                    seen.add(frozenset(cyc))
                    found.append(cyc)
            elif len(stack) < 12:
                dfs(nxt, stack + [nxt])

    for n in sorted(graph):
        dfs(n, [n])
    return found


bad = 0
for parent in sorted(graphs):
    where = "::".join(parent) or "crate"
    for cyc in cycles(graphs[parent]):
        print(f"loop inside {where}: " + " -> ".join(cyc))
        bad += 1
if "-v" in sys.argv:
    top = graphs[()]
    for k in sorted(top):
        print(f"{k} -> {', '.join(sorted(top[k]))}")
sys.exit(1 if bad else 0)
