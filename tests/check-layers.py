#!/usr/bin/env python3
"""check-layers: the library's folders call and include only downward.

docs/ARCHITECTURE.md gives the order, lowest first. A file of a folder may
include the headers of, and call the cairn__ functions defined in, its own
folder and the folders below it, never one above. Includes are read from
the sources; calls from the symbols the static library's objects need
(nm), so a call through a header that lies about where a function lives is
caught too. Exits 1 listing every edge that goes up.
Usage: check-layers.py SOURCE_ROOT BUILD_ROOT
"""
import os
import re
import subprocess
import sys

ORDER = ["util", "db", "core", "store", "snapshot", "cache", "image", "gc", "combine",
         "remote", "containerd", "pool"]
RANK = {d: i for i, d in enumerate(ORDER)}
# Edges that go up today, each to be cut; an edge not listed here fails.
KNOWN = {
}


def folder_of(path):
    parts = path.split("/")
    return parts[-2] if len(parts) >= 2 else None


def main():
    src, build = sys.argv[1], sys.argv[2]
    lib = os.path.join(src, "lib")
    bad = []
    for d in sorted(os.listdir(lib)):
        p = os.path.join(lib, d)
        if not os.path.isdir(p):
            continue
        if d not in RANK:
            bad.append(f"lib/{d}/: a folder not in the order of docs/ARCHITECTURE.md")
            continue
        for f in sorted(os.listdir(p)):
            if not f.endswith((".c", ".h")):
                continue
            for line in open(os.path.join(p, f), encoding="utf-8"):
                m = re.match(r'\s*#\s*include\s+"([a-z]+)/', line)
                if m and m.group(1) in RANK and RANK[m.group(1)] > RANK[d]:
                    edge = (d, m.group(1))
                    if edge not in KNOWN:
                        bad.append(f"lib/{d}/{f} includes {line.strip()[9:]}: {d} is below {m.group(1)}")
    # Calls: where each cairn__ symbol is defined, and who needs it.
    a = os.path.join(build, "lib", "libcairn.a")
    out = subprocess.run(["nm", "-A", a], capture_output=True, text=True, check=True).stdout
    defined, needed = {}, []
    for line in out.splitlines():
        m = re.match(r".*?:([a-z]+)_[A-Za-z0-9_.-]+\.c\.o:\s*(?:[0-9a-f]+)?\s+([A-Za-z])\s+(cairn__\w+)$", line)
        if not m:
            continue
        d, kind, sym = m.groups()
        if kind == "U":
            needed.append((d, sym))
        elif kind in "TDBR":
            defined[sym] = d
    for d, sym in needed:
        t = defined.get(sym)
        if t and d in RANK and t in RANK and RANK[t] > RANK[d] and (d, t) not in KNOWN:
            bad.append(f"lib/{d}/ calls {sym}, defined in lib/{t}/ above it")
    for b in sorted(set(bad)):
        print(b)
    if bad:
        print(f"check-layers: {len(set(bad))} edges go up (docs/ARCHITECTURE.md)")
        return 1
    print("check-layers: every include and call goes down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
