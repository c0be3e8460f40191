#!/usr/bin/env python3
"""xfile_calls.py -- count the calls that cross a file boundary in the core.

Usage: tests/tools/xfile_calls.py FILE.c...  [--edges]

For the given C files, finds each function defined at column 0 (our style:
the return type on the line before, the name first on its own line) and
counts the call sites of it in the other given files (comments and strings
removed). Prints, per file pair, how many call sites and distinct functions
cross from one to the other, then the totals, and any cycle between files.
The README's layout section quotes its figures for the job path.
"""
import re
import sys
from itertools import permutations

def strip(src):
    src = re.sub(r'/\*.*?\*/', ' ', src, flags=re.S)
    src = re.sub(r'//[^\n]*', ' ', src)
    src = re.sub(r'"(\\.|[^"\\])*"', '""', src)
    return src

def main(argv):
    edges_wanted = '--edges' in argv
    files = [a for a in argv if not a.startswith('--')]
    text = {f: strip(open(f).read()) for f in files}
    defined = {}
    for f, src in text.items():
        for m in re.finditer(r'^([a-z_][a-z0-9_]*)\(', src, flags=re.M):
            defined.setdefault(m.group(1), f)
    calls = {}
    for f, src in text.items():
        for m in re.finditer(r'\b([a-z_][a-z0-9_]*)\s*\(', src):
            name = m.group(1)
            g = defined.get(name)
            if g is None or g == f:
                continue
            # A definition line is not a call.
            line_start = src.rfind('\n', 0, m.start()) + 1
            if m.start() == line_start:
                continue
            calls.setdefault((f, g), []).append(name)
    sites = sum(len(v) for v in calls.values())
    funcs = sum(len(set(v)) for v in calls.values())
    for (f, g), names in sorted(calls.items()):
        print(f"{f} -> {g}: {len(names)} calls, {len(set(names))} functions"
              + (f" ({', '.join(sorted(set(names)))})" if edges_wanted else ''))
    graph = {}
    for (f, g) in calls:
        graph.setdefault(f, set()).add(g)
    cycles = set()
    def reach(a, b, seen):
        if a == b:
            return True
        seen.add(a)
        return any(reach(n, b, seen) for n in graph.get(a, ()) if n not in seen)
    for f, g in permutations(graph, 2):
        if g in graph.get(f, ()) and reach(g, f, set()):
            cycles.add(tuple(sorted((f, g))))
    print(f"total: {sites} cross-file call sites, {funcs} distinct (caller file, function) pairs, "
          f"{len(calls)} file pairs, {len(cycles)} file pairs on a cycle")
    for c in sorted(cycles):
        print(f"cycle: {c[0]} <-> {c[1]}")

if __name__ == '__main__':
    main(sys.argv[1:])
