#!/usr/bin/env python3
"""The house rules on size: no source file over 400 lines, no function over 80.

Reads every .rs file under the workspace's `src/` folders (vendor/ aside). Functions are
measured from their `fn` line to the closing brace at the same indentation (rustfmt's
layout); code after a file's `#[cfg(test)]` module counts toward the file, not toward
function lengths. Prints what is over; exits 1 if anything is.
"""
import os, re, subprocess, sys

MAX_FILE, MAX_FN = 400, 80
FN = re.compile(r"^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+\"[^\"]*\"\s+)?fn\s+(\w+)")

root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True).stdout.strip() or "."
files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.rs"], cwd=root,
                       capture_output=True, text=True).stdout.split()
bad = []
for rel in files:
    if rel.startswith("vendor/") or "/src/" not in "/" + rel:
        continue
    path = os.path.join(root, rel)
    if not os.path.exists(path):
        continue
    lines = open(path).read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) > MAX_FILE:
        bad.append(f"{rel}: {len(lines)} lines (file limit {MAX_FILE})")
    for i, line in enumerate(lines):
        if line.startswith("#[cfg(test)]"):
            break
        m = FN.match(line)
        if not m or line.rstrip().endswith(";"):
            continue
        indent = m.group(1)
        for j in range(i + 1, len(lines)):
            if lines[j] == indent + "}":
                length = j - i + 1
                if length > MAX_FN:
                    bad.append(f"{rel}:{i + 1}: fn {m.group(8)} is {length} lines (function limit {MAX_FN})")
                break
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
