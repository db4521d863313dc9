#!/usr/bin/env python3
"""tree-list.py [--root] [--no-mtime] DIR: one line per entry below DIR (not
DIR itself unless --root), sorted by path:

    path mode(type and permissions, octal) uid:gid [type-specific] [xattrs] [links=...]

  regular file  content digest (16 hex), size=N, mtime (seconds; --no-mtime drops it)
  symlink       -> target
  device        dev MAJOR,MINOR
  fifo, socket  the type is in the mode
  xattrs        name=value for each, except overlayfs' own (*.overlay.*) and
                security.selinux (labels belong to the host, not the image)
  links=        the other paths of a regular file sharing its inode (a hardlink group)

Two trees with the same listing have the same types, modes, owners, sizes,
contents, link targets, device numbers, hardlink groups and xattrs. Directory
mtimes are left out: unpacking changes them."""
import hashlib
import os
import stat
import sys

args = sys.argv[1:]
with_root = "--root" in args
with_mtime = "--no-mtime" not in args
args = [a for a in args if a not in ("--root", "--no-mtime")]
if len(args) != 1:
    sys.exit("usage: tree-list.py [--root] [--no-mtime] DIR")
root = args[0]


def skip_xattr(name):
    return ".overlay." in name or name == "security.selinux"


def describe(p, rel):
    st = os.lstat(p)
    kind = stat.S_IFMT(st.st_mode)
    line = [rel, oct(st.st_mode), f"{st.st_uid}:{st.st_gid}"]
    if stat.S_ISREG(kind):
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        line.append(h.hexdigest()[:16])
        line.append(f"size={st.st_size}")
        if with_mtime:
            line.append(str(st.st_mtime_ns // 1000000000))
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
            if skip_xattr(x):
                continue
            line.append(f"{x}={os.getxattr(p, x, follow_symlinks=False)!r}")
    key = (st.st_dev, st.st_ino) if stat.S_ISREG(kind) else None
    return line, key


entries = {}
inodes = {}
if with_root:
    entries["."] = describe(root, ".")
for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
        p = os.path.join(dirpath, name)
        rel = os.path.relpath(p, root)
        line, key = describe(p, rel)
        if key:
            inodes.setdefault(key, []).append(rel)
        entries[rel] = (line, key)
for rel in sorted(entries):
    line, key = entries[rel]
    if key and len(inodes.get(key, ())) > 1:
        line.append("links=" + ",".join(sorted(inodes[key])))
    print(" ".join(line))
