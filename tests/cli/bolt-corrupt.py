#!/usr/bin/env python3
"""bolt-corrupt.py IN OUT MODE [SEED]: a damaged copy of a bbolt file.

  truncate   the second half cut off
  magic      both meta pages' magic overwritten
  checksum   both meta pages' checksums wrong
  meta0      the first meta page's checksum wrong (the second still good)
  pastend    a nested bucket's root page id set past the end of the file
  cycle      a bucket's root page turned into a branch whose only child is itself
  random     SEED picks: a few random bytes of a random page, or a cut
The page layout read here (header: id u64, flags u16, count u16, overflow
u32; meta after it: magic, version, page size, flags, root, sequence,
freelist, pgid, txid, checksum: FNV-1a 64 of the 56 bytes before it) is
bbolt's file format."""
import random, struct, sys

src, out, mode = sys.argv[1:4]
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
b = bytearray(open(src, "rb").read())
ps = struct.unpack_from("<I", b, 16 + 8)[0]
npages = len(b) // ps


def fnv(data):
    h = 0xcbf29ce484222325
    for c in data:
        h ^= c
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def meta_fix(off):
    struct.pack_into("<Q", b, off + 16 + 56, fnv(bytes(b[off + 16:off + 16 + 56])))


def current_root():
    best = None
    for off in (0, ps):
        txid = struct.unpack_from("<Q", b, off + 16 + 48)[0]
        root = struct.unpack_from("<Q", b, off + 16 + 16)[0]
        if best is None or txid > best[0]:
            best = (txid, root, off)
    return best


def leaf_buckets():
    """(offset of the value, root) of each nested bucket with a page of its own."""
    found = []
    for pg in range(2, npages):
        off = pg * ps
        pid, flags, count = struct.unpack_from("<QHH", b, off)
        if pid != pg or not flags & 0x02:
            continue
        for i in range(count):
            e = off + 16 + i * 16
            fl, pos, ks, vs = struct.unpack_from("<IIII", b, e)
            if fl & 1 and vs >= 16:
                v = e + pos + ks
                if v + 8 <= len(b):
                    root = struct.unpack_from("<Q", b, v)[0]
                    if root:
                        found.append((v, root, bytes(b[e + pos:e + pos + ks])))
    # v1 first: every reader of containerd's files goes through it
    return sorted(found, key=lambda f: f[2] != b"v1")


if mode == "truncate":
    del b[len(b) // 2:]
elif mode == "magic":
    for off in (0, ps):
        struct.pack_into("<I", b, off + 16, 0x12345678)
elif mode == "checksum":
    for off in (0, ps):
        b[off + 16 + 56] ^= 0xff
elif mode == "meta0":
    b[16 + 56] ^= 0xff
elif mode == "pastend":
    # the current root page's buckets (v1 first): pages of older
    # transactions lie about too, and nothing reads them
    _, root, _ = current_root()
    nb = [f for f in leaf_buckets() if root * ps <= f[0] < (root + 1) * ps] or leaf_buckets()
    if nb:
        struct.pack_into("<Q", b, nb[0][0], npages + 1000)
    else:  # no nested bucket with a page: the root itself
        for off in (0, ps):
            struct.pack_into("<Q", b, off + 16 + 16, npages + 1000)
            meta_fix(off)
elif mode == "cycle":
    _, root, _ = current_root()
    off = root * ps
    # a branch of one element: key offset 16 (just past the element), key
    # size 1, child: this very page
    struct.pack_into("<QHHI", b, off, root, 0x01, 1, 0)
    struct.pack_into("<IIQ", b, off + 16, 16, 1, root)
    b[off + 32] = ord("v")
elif mode == "random":
    r = random.Random(seed)
    if r.random() < 0.15:
        del b[r.randrange(16, len(b)):]
    else:
        for _ in range(r.randint(1, 8)):
            pg = r.randrange(0, npages)
            at = pg * ps + (r.randrange(0, 64) if r.random() < 0.6 else r.randrange(0, ps))
            b[at] = r.choice([0, 1, 0xff, 0x7f, 0x80, r.randrange(256)])
        if r.random() < 0.5:  # keep the metas valid so the damage is met deeper
            for off in (0, ps):
                if struct.unpack_from("<I", b, off + 16)[0] == 0xED0CDAED:
                    meta_fix(off)
else:
    sys.exit("unknown mode " + mode)
open(out, "wb").write(b)
