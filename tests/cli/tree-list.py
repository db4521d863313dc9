#!/usr/bin/env python3
"""tree-list.py DIR: one line per entry below DIR (not DIR itself), sorted:
path, type and mode, owner, size, content digest and mtime (files), link target,
xattrs other than overlayfs' own, and the other paths sharing its inode. Two
trees with the same listing have the same contents, metadata and hardlinks."""
import hashlib
import os
import stat
import sys

root = sys.argv[1]
entries = {}
inodes = {}
for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
        p = os.path.join(dirpath, name)
        rel = os.path.relpath(p, root)
        st = os.lstat(p)
        kind = stat.S_IFMT(st.st_mode)
        line = [rel, oct(st.st_mode), f"{st.st_uid}:{st.st_gid}"]
        if stat.S_ISREG(kind):
            with open(p, "rb") as f:
                line.append(hashlib.sha256(f.read()).hexdigest()[:16])
            line.append(f"size={st.st_size}")
            line.append(str(st.st_mtime_ns // 1000000000))
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        elif stat.S_ISLNK(kind):
            line.append("-> " + os.readlink(p))
        elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
            line.append(f"dev {os.major(st.st_rdev)},{os.minor(st.st_rdev)}")
        if not stat.S_ISLNK(kind):
            try:
                names = sorted(os.listxattr(p, follow_symlinks=False))
            except OSError:
                names = []
            for x in names:
                if ".overlay." in x:
                    continue
                line.append(f"{x}={os.getxattr(p, x, follow_symlinks=False)!r}")
        entries[rel] = (line, (st.st_dev, st.st_ino) if stat.S_ISREG(kind) else None)
for rel in sorted(entries):
    line, key = entries[rel]
    if key and len(inodes[key]) > 1:
        line.append("links=" + ",".join(sorted(inodes[key])))
    print(" ".join(line))
