#!/usr/bin/env python3
"""random-stack.py STATE SEED: commit a random chain of layers in STATE with
the command in $CAIRN and print its top ChainID. The same seed makes the same
chain (contents, modes, owners, times, xattrs; not the inode numbers).

Each layer is written one of two ways:
- through `cairn mount` of the active snapshot (real overlayfs makes the
  whiteouts, the opaque directories and the copy-ups): new files, dirs,
  symlinks, hardlinks and FIFOs, changed contents, modes, owners and xattrs,
  files and whole directories removed, a directory replaced by a file and a
  file by a directory, a directory removed and made again;
- straight into the active snapshot's fs/, as a layer import would: whiteouts
  of names below, opaque directories, a directory over a
  file, a file over a directory, deep new paths whose parents this layer
  makes with metadata of its own.
Several layers between two others often leave a directory alone, which is
the case a checkout must look through."""
import os
import random
import stat
import subprocess
import sys

CAIRN = os.environ["CAIRN"]
state, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
OPAQUE = "trusted.overlay.opaque" if os.geteuid() == 0 else "user.overlay.opaque"
NAMES = ["a", "b", "c", "d", "etc", "usr", "bin", "x", "y", "lib", "srv", "data"]
OWNERS = [(0, 0), (1000, 1000), (1234, 5678), (0, 42)]


def cairn(*args):
    return subprocess.run([CAIRN, "-C", state, *args], check=True, stdout=subprocess.PIPE,
                          text=True).stdout.strip()


def tree(root):
    """The paths below root: (dirs, non-dirs), relative, sorted. A symlink is
    a non-dir wherever it points: nothing here writes through one."""
    dirs, files = [], []
    todo = ["."]
    while todo:
        d = todo.pop()
        for n in os.listdir(os.path.join(root, d)):
            rel = os.path.normpath(os.path.join(d, n))
            if stat.S_ISDIR(os.lstat(os.path.join(root, rel)).st_mode):
                dirs.append(rel)
                todo.append(rel)
            else:
                files.append(rel)
    return sorted(dirs), sorted(files)


def meta(p, kind="f"):
    """Random owner, mode, time and xattr on p."""
    uid, gid = rng.choice(OWNERS)
    os.chown(p, uid, gid, follow_symlinks=False)
    if kind == "l":
        os.utime(p, ns=(0, rng.randrange(1, 2**31) * 10**9), follow_symlinks=False)
        return
    os.chmod(p, rng.choice([0o644, 0o600, 0o755, 0o4755, 0o700, 0o444] if kind in "fp"
                           else [0o755, 0o700, 0o750, 0o1777, 0o555]))
    if kind in "fd" and rng.random() < 0.3:
        os.setxattr(p, "user.k" + str(rng.randrange(3)), str(rng.randrange(1000)).encode())
    if kind == "f":
        os.utime(p, ns=(0, rng.randrange(1, 2**31) * 10**9))


def content():
    n = rng.choice([0, 1, 10, 100, 5000, 70000])
    return bytes(rng.randrange(256) for _ in range(min(n, 64))) * max(1, n // 64)


def newname(root, d):
    for _ in range(20):
        n = rng.choice(NAMES) + (str(rng.randrange(4)) if rng.random() < 0.5 else "")
        if not os.path.lexists(os.path.join(root, d, n)):
            return os.path.join(d, n)
    return None


def mkfile(root, rel, hard_from=None):
    p = os.path.join(root, rel)
    if hard_from:
        os.link(os.path.join(root, hard_from), p)
        return
    with open(p, "wb") as f:
        f.write(content())
    meta(p)


def mkdir_tree(root, rel, depth):
    p = os.path.join(root, rel)
    os.mkdir(p)
    for _ in range(rng.randrange(4) if depth < 3 else 0):
        r = rng.random()
        n = newname(root, rel)
        if n is None:
            break
        if r < 0.5:
            mkfile(root, n)
        elif r < 0.75:
            mkdir_tree(root, n, depth + 1)
        else:
            os.symlink(rng.choice(["../a", "x", "/etc/passwd", "d/e/f"]), os.path.join(root, n))
            meta(os.path.join(root, n), "l")
    meta(p, "d")


def rm_rf(p):
    if os.path.isdir(p) and not os.path.islink(p):
        for n in os.listdir(p):
            rm_rf(os.path.join(p, n))
        os.rmdir(p)
    else:
        os.unlink(p)


def through_mount(fs):
    """Changes made through the overlayfs mount `fs` of the active snapshot."""
    for _ in range(rng.randrange(3, 12)):
        dirs, files = tree(fs)
        alldirs = ["."] + dirs
        op = rng.random()
        d = rng.choice(alldirs)
        if op < 0.18:
            n = newname(fs, d)
            if n:
                mkfile(fs, n)
        elif op < 0.30:
            n = newname(fs, d)
            if n:
                mkdir_tree(fs, n, d.count("/") + 1)
        elif op < 0.35:
            n = newname(fs, d)
            if n:
                os.symlink(rng.choice(["a", "../b", "/nowhere", "etc/x"]), os.path.join(fs, n))
                meta(os.path.join(fs, n), "l")
        elif op < 0.42:
            regs = [f for f in files if stat.S_ISREG(os.lstat(os.path.join(fs, f)).st_mode)]
            n = newname(fs, d)
            if regs and n:
                mkfile(fs, n, hard_from=rng.choice(regs))
        elif op < 0.45:
            n = newname(fs, d)
            if n:
                os.mkfifo(os.path.join(fs, n))
                meta(os.path.join(fs, n), "p")
        elif op < 0.55 and files:
            f = os.path.join(fs, rng.choice(files))
            if stat.S_ISREG(os.lstat(f).st_mode):
                with open(f, "ab") as o:
                    o.write(content()[:100] or b"+")
                meta(f)
        elif op < 0.62 and dirs:
            meta(os.path.join(fs, rng.choice(dirs)), "d")
        elif op < 0.72 and files:
            os.unlink(os.path.join(fs, rng.choice(files)))
        elif op < 0.80 and dirs:
            rm_rf(os.path.join(fs, rng.choice(dirs)))
        elif op < 0.87 and dirs:
            # a directory replaced by a file
            p = rng.choice(dirs)
            rm_rf(os.path.join(fs, p))
            mkfile(fs, p)
        elif op < 0.93 and files:
            # a file replaced by a directory (overlayfs makes it opaque)
            p = rng.choice(files)
            os.unlink(os.path.join(fs, p))
            mkdir_tree(fs, p, p.count("/") + 1)
        elif dirs:
            # a directory removed and made again: opaque
            p = rng.choice(dirs)
            rm_rf(os.path.join(fs, p))
            mkdir_tree(fs, p, p.count("/") + 1)


def opaque_above(fs, rel):
    while rel:
        try:
            if os.getxattr(os.path.join(fs, rel), OPAQUE) == b"y":
                return True
        except OSError:
            pass
        rel = os.path.dirname(rel)
    return False


def into_upper(fs, below):
    """Changes written into the upper fs/ directly; `below` is the tree of
    the layers below (dirs, non-dirs)."""
    dirs, files = below
    alldirs = dirs + files
    below_set = set(alldirs)
    for _ in range(rng.randrange(2, 8)):
        op = rng.random()
        target = rng.choice(alldirs) if alldirs and rng.random() < 0.8 else \
            os.path.join(rng.choice(["."] + dirs), rng.choice(NAMES))
        target = os.path.normpath(target)
        parent = os.path.dirname(target)
        p = os.path.join(fs, target)
        if os.path.lexists(p):
            continue
        if parent and not os.path.isdir(os.path.join(fs, parent)):
            a = parent
            while a and not os.path.lexists(os.path.join(fs, a)):
                a = os.path.dirname(a)
            if a and not stat.S_ISDIR(os.lstat(os.path.join(fs, a)).st_mode):
                continue  # this layer has a non-dir on the way
            os.makedirs(os.path.join(fs, parent))
            meta(os.path.join(fs, parent), "d")
        if op < 0.35:
            # A whiteout of a name below, as overlayfs and the tools make
            # them: one of nothing, or in a directory opaque in this layer,
            # would show in the mount's readdir (of a directory no other
            # layer merges) and fail its lstat.
            if target not in below_set or opaque_above(fs, parent):
                continue
            os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        elif op < 0.55:
            mkdir_tree(fs, target, target.count("/") + 1)
            os.setxattr(p, OPAQUE, b"y")
        elif op < 0.75:
            mkdir_tree(fs, target, target.count("/") + 1)  # merges with a dir below
        else:
            mkfile(fs, target)  # hides a dir or file below
    # hardlinks within this layer
    _, mine = tree(fs)
    regs = [f for f in mine if stat.S_ISREG(os.lstat(os.path.join(fs, f)).st_mode)]
    if regs and rng.random() < 0.5:
        src = rng.choice(regs)
        n = newname(fs, os.path.dirname(src))
        if n:
            os.link(os.path.join(fs, src), os.path.join(fs, n))


def main():
    mnt = os.path.join(state, "..", f"mnt-{seed}")
    os.makedirs(mnt, exist_ok=True)
    parent = None
    for i in range(rng.randint(2, 6)):
        aid = cairn("snapshot", "prepare", *([parent] if parent else []))
        fs = os.path.join(state, "active", aid, "fs")
        if parent is None or rng.random() < 0.6:
            cairn("mount", aid, mnt)
            try:
                if parent is None:
                    for _ in range(rng.randrange(2, 6)):
                        n = newname(mnt, ".")
                        mkdir_tree(mnt, n, 0)
                through_mount(mnt)
            finally:
                subprocess.run([CAIRN, "umount", mnt], check=True)
        else:
            if parent:
                cairn("mount", parent, mnt)
                try:
                    below = tree(mnt)
                finally:
                    subprocess.run([CAIRN, "umount", mnt], check=True)
            into_upper(fs, below)
        parent = cairn("snapshot", "commit", aid)
    os.rmdir(mnt)
    print(parent)


main()
