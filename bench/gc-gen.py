#!/usr/bin/env python3
"""gc-gen.py: fill a fresh cairn state for bench/gc.sh, fast: object files
written directly and rows inserted in batches (no CLI call per object).

Usage: gc-gen.py STATE BLOBS SNAPSHOTS RECORDS KEEP_FRACTION

BLOBS blobs (64 to 4096 bytes) and SNAPSHOTS committed snapshots (a directory
with one file each, in chains of up to 8) are made, all a day old. RECORDS
cache records (each key one result) name objects among the first
KEEP_FRACTION of them (with their parent chains); the rest are garbage.
"""
import hashlib, os, random, sqlite3, sys, time

state, n_blobs, n_snaps, n_recs, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
ident = dict(l.split("=", 1) for l in open(os.path.join(state, "cairn-state")).read().split("\n")[1:] if "=" in l)
db = sqlite3.connect(os.path.join(state, ident["database"]))
db.execute("PRAGMA synchronous = OFF")
rnd = random.Random(42)
day_ago = int(time.time()) - 86400

def sha(b):
    return hashlib.sha256(b).hexdigest()

blobs = []
bdir = os.path.join(state, "blobs", "sha256")
for i in range(n_blobs):
    data = ("blob %d " % i).encode() + rnd.randbytes(rnd.randint(64, 4096))
    h = sha(data)
    with open(os.path.join(bdir, h), "wb") as f:
        f.write(data)
    os.chmod(os.path.join(bdir, h), 0o444)
    blobs.append(("sha256:" + h, len(data)))
db.executemany("INSERT INTO blobs(digest, size, media_type, created) VALUES (?, ?, '', ?)",
               [(d, s, day_ago) for d, s in blobs])

snaps = []  # (chain, parent, diff, size)
sdir = os.path.join(state, "snapshots")
parent = None
for i in range(n_snaps):
    if i % 8 == 0:
        parent = None
    data = ("snapshot %d " % i).encode() + rnd.randbytes(rnd.randint(64, 4096))
    diff = "sha256:" + sha(b"diff " + data)
    chain = diff if parent is None else "sha256:" + sha((parent + " " + diff).encode())
    os.makedirs(os.path.join(sdir, chain[7:]))
    with open(os.path.join(sdir, chain[7:], "file"), "wb") as f:
        f.write(data)
    snaps.append((chain, parent, diff, len(data)))
    parent = chain
db.executemany("INSERT INTO snapshots(chain_id, parent, diff_id, size, created, tar_digest) "
               "VALUES (?, ?, ?, ?, ?, ?)", [(c, p, d, s, day_ago, d) for c, p, d, s in snaps])

# Records name the kept share: blobs and the tops of kept chains.
kept_blobs = blobs[: int(len(blobs) * keep)]
kept_snaps = snaps[: int(len(snaps) * keep)]
results = [(d, "blob") for d, _ in kept_blobs] + [(c, "snapshot") for c, _, _, _ in kept_snaps]
rows = []
for k in range(n_recs):
    key = "sha256:" + sha(b"key %d" % k)
    res, kind = results[k % len(results)] if results else (None, None)
    if res:
        rows.append((key, res, kind, day_ago))
    if len(rows) >= 100000:
        db.executemany("INSERT INTO cache_results(key, result, kind, created) VALUES (?, ?, ?, ?)", rows)
        rows = []
db.executemany("INSERT INTO cache_results(key, result, kind, created) VALUES (?, ?, ?, ?)", rows)
db.execute("UPDATE cache_result_refs SET touched = ?", (day_ago,))
db.commit()
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.close()
os.sync()
print("%d blobs, %d snapshots, %d records; %d objects kept by records" %
      (n_blobs, n_snaps, n_recs, len(kept_blobs) + len(kept_snaps)), file=sys.stderr)
