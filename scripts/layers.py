#!/usr/bin/env python3
"""Checks the module graph of the palaver crate: no import loops between its modules.

Every `crate::a::b` path in a file of module `m` is an edge m -> a (top-level modules) and,
inside one top-level module, m/x -> m/y for its submodules. Prints each cycle; exits 1 if any.
"""
import os, re, sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(__file__), "..", "crates", "palaver", "src")
PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)(?:::([a-z_][a-z0-9_]*))?")
SUPER = re.compile(r"\bsuper::([a-z_][a-z0-9_]*)")
GROUP = re.compile(r"\buse crate::\{([^;]*)\}", re.S)

def module_of(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts  # e.g. ["service", "chat"] or ["lib"]

def strip_tests(text):
    # unit tests may reach anywhere; cut at the first #[cfg(test)] module
    i = text.find("#[cfg(test)]\nmod tests")
    return text if i < 0 else text[:i]

edges = defaultdict(set)
sub_edges = defaultdict(set)
for dirpath, _, files in os.walk(ROOT):
    for f in files:
        if not f.endswith(".rs"):
            continue
        path = os.path.join(dirpath, f)
        rel = os.path.relpath(path, ROOT)
        mod = module_of(rel)
        if mod in (["lib"], ["main"]):
            continue
        text = strip_tests(open(path).read())
        text = re.sub(r"//.*", "", text)
        refs = [(a, b) for a, b in PATH.findall(text)]
        for group in GROUP.findall(text):
            for item in re.split(r",(?![^{]*\})", group):
                item = item.strip()
                m = re.match(r"([a-z_][a-z0-9_]*)(?:::([a-z_][a-z0-9_]*))?", item)
                if m:
                    refs.append((m.group(1), m.group(2) or ""))
        top = mod[0]
        for a, b in refs:
            if a != top:
                edges[top].add(a)
            elif len(mod) > 1 and b and b != mod[1]:
                sub_edges[top].add((mod[1], b))
        if len(mod) > 1:
            for s in SUPER.findall(text):
                if len(mod) == 2 and s != mod[1]:
                    sub_edges[top].add((mod[1], s))

def cycles(graph):
    found, seen = [], set()
    def dfs(node, stack):
        for nxt in sorted(graph.get(node, ())):
            if nxt in stack:
                cyc = stack[stack.index(nxt):] + [nxt]
                key = frozenset(cyc)
                if key not in seen:
                    seen.add(key)
                    found.append(cyc)
            elif len(stack) < 12:
                dfs(nxt, stack + [nxt])
    for n in sorted(graph):
        dfs(n, [n])
    return found

bad = 0
for cyc in cycles(edges):
    print("loop between modules: " + " -> ".join(cyc)); bad += 1
for top, pairs in sorted(sub_edges.items()):
    g = defaultdict(set)
    for a, b in pairs:
        g[a].add(b)
    for cyc in cycles(g):
        print(f"loop inside {top}: " + " -> ".join(cyc)); bad += 1
if "-v" in sys.argv:
    for k in sorted(edges):
        print(f"{k} -> {', '.join(sorted(edges[k]))}")
sys.exit(1 if bad else 0)
