#!/usr/bin/env bash
# gc: garbage collection, du and fsck of a large state, beside the peers
# and the physical limit. Prints one table of wall seconds (best of RUNS for
# the runs that change nothing; one run for those that delete) with ratios.
#
#   state: BLOBS blobs + SNAPS snapshots (100,000 objects by default) and
#          RECORDS cache records (1,000,000), made by bench/gc-gen.py
#   gc, nothing to collect: every object kept by records
#   gc, half to collect: records keep half of the objects
#   the limit: one unlink per removed blob file, one unlink + rmdir per
#          removed snapshot directory (bench/unlink-limit.c), same layout
#   ostree prune --refs-only: a bare-user repository of as many file
#          objects, all reachable (nothing) / half of them unreachable (half)
#   git prune --expire=now and git gc --prune=now: as many loose blobs, all
#          reachable from a commit / half unreachable (git gc also repacks,
#          so it does more than cairn; git prune is the like-for-like one)
#
# Usage: bench/gc.sh [WORKDIR] [RUNS]   (env: BLOBS SNAPS RECORDS REUSE)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CAIRN=${CAIRN:-$REPO/build/cli/cairn}
[ -x "$CAIRN" ] || { echo "gc: build cairn first (ninja -C build)" >&2; exit 1; }
for t in python3 ostree git cc; do command -v $t >/dev/null || { echo "gc: $t is needed (scripts/deps)" >&2; exit 1; }; done
BLOBS=${BLOBS:-50000} SNAPS=${SNAPS:-50000} RECORDS=${RECORDS:-1000000}
W=${1:-}
RUNS=${2:-3}
if [ -z "$W" ]; then W=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-gc-XXXXXX"); KEEP=0; else mkdir -p "$W"; KEEP=1; fi
W=$(cd "$W" && pwd)
cleanup() { [ "$KEEP" -eq 1 ] || rm -rf "$W"; }
trap cleanup EXIT
OBJS=$((BLOBS + SNAPS))
HALF=$((OBJS / 2))

# best CMD...: best wall time of RUNS runs, seconds (stdin closed: git
# pack-objects reads revisions from an inherited stdin).
best() {
    local b=
    for _ in $(seq 1 "$RUNS"); do
        local s e
        s=$(date +%s.%N); "$@" </dev/null >/dev/null 2>&1 || { echo "gc: failed: $*" >&2; exit 1; }; e=$(date +%s.%N)
        b=$(python3 -c "import sys; t=$e-$s; b='$b'; print(t if not b else min(t, float(b)))")
    done
    echo "  $* : $b s" >&2
    echo "$b"
}
once() {
    local s e
    s=$(date +%s.%N); "$@" </dev/null >/dev/null 2>"$W/once.err" || { echo "gc: failed: $*: $(cat "$W/once.err")" >&2; exit 1; }; e=$(date +%s.%N)
    echo "  $* : $(python3 -c "print($e - $s)") s" >&2
    python3 -c "print($e - $s)"
}

echo "making the states ($BLOBS blobs, $SNAPS snapshots, $RECORDS records)..." >&2
# REUSE=1 keeps a 'full' state made by an earlier run (gc without a policy
# leaves it as it was); 'half' is made again (its gc deletes).
if [ "${REUSE:-0}" != 1 ] || [ ! -f "$W/full/cairn-state" ]; then
    rm -rf "$W/full"; "$CAIRN" init "$W/full" >/dev/null
    python3 bench/gc-gen.py "$W/full" "$BLOBS" "$SNAPS" "$RECORDS" 1.0
fi
rm -rf "$W/half"; "$CAIRN" init "$W/half" >/dev/null
python3 bench/gc-gen.py "$W/half" "$BLOBS" "$SNAPS" "$RECORDS" 0.5
sync

T_GC0=$(best "$CAIRN" -C "$W/full" gc)
T_DU=$(best "$CAIRN" -C "$W/full" du)
T_FSCK=$(best "$CAIRN" -C "$W/full" fsck --no-hash)
"$CAIRN" -C "$W/half" gc --dry-run --json >"$W/half.dry.json"
REMOVED=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["counts"]; print(c["blobs"] + c["snapshots"])' "$W/half.dry.json")
T_GCH=$(once "$CAIRN" -C "$W/half" gc)

# The limit: as many files and directories of the same shape, unlinked one by one.
echo "the unlink limit..." >&2
rm -rf "$W/limit"; mkdir -p "$W/limit/blobs" "$W/limit/snapshots"
python3 - "$W/limit" "$((BLOBS / 2))" "$((SNAPS / 2))" <<'PY'
import os, sys, random
root, nb, ns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(7)
paths = []
for i in range(nb):
    p = os.path.join(root, "blobs", "%064x" % rnd.getrandbits(256))
    open(p, "wb").write(rnd.randbytes(rnd.randint(64, 4096))); paths.append(p)
for i in range(ns):
    d = os.path.join(root, "snapshots", "%064x" % rnd.getrandbits(256)); os.mkdir(d)
    open(os.path.join(d, "file"), "wb").write(rnd.randbytes(rnd.randint(64, 4096)))
    paths += [os.path.join(d, "file"), d]
open(os.path.join(root, "list"), "w").write("\n".join(paths) + "\n")
PY
sync
cc -O2 -o "$W/unlink-limit" bench/unlink-limit.c
T_LIM=$("$W/unlink-limit" <"$W/limit/list" 2>/dev/null)
echo "  unlink limit: $T_LIM s" >&2

# ostree: file objects in a bare-user repository.
echo "ostree..." >&2
ost_tree() { # DIR N SEED
    python3 - "$1" "$2" "$3" <<'PY'
import os, sys, random
d, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
for i in range(n):
    sub = os.path.join(d, "%03d" % (i % 256))
    os.makedirs(sub, exist_ok=True)
    open(os.path.join(sub, "f%d" % i), "wb").write(rnd.randbytes(rnd.randint(64, 4096)))
PY
}
rm -rf "$W/ost" "$W/ot1" "$W/ot2" "$W/g0" "$W/gh" "$W/gh2"
ostree init --repo="$W/ost" --mode=bare-user
ost_tree "$W/ot1" "$HALF" 1
ost_tree "$W/ot2" "$HALF" 2
ostree commit --repo="$W/ost" --branch=a --tree=dir="$W/ot1" --no-xattrs -s a >/dev/null
ostree commit --repo="$W/ost" --branch=b --tree=dir="$W/ot2" --no-xattrs -s b >/dev/null
sync
T_OST0=$(best ostree prune --repo="$W/ost" --refs-only)
ostree refs --repo="$W/ost" --delete b
T_OSTH=$(once ostree prune --repo="$W/ost" --refs-only)

# git: loose blobs, one commit naming half (or all) of them.
echo "git..." >&2
git_repo() { # DIR KEEP(all|half)
    rm -rf "$1"; git init -q "$1"
    git -C "$1" config gc.auto 0
    ost_tree "$1/t" "$OBJS" 3
    (cd "$1" && find t -type f | sort >all.list &&
        if [ "$2" = all ]; then cp all.list keep.list; else awk 'NR % 2' all.list >keep.list; fi &&
        git add --pathspec-from-file=keep.list &&
        git -c user.email=b@b -c user.name=b commit -qm c &&
        git hash-object -w --stdin-paths <all.list >/dev/null &&
        rm -rf t all.list keep.list && git reset -q --hard && git count-objects)
}
git_repo "$W/g0" all >&2
sync
T_GP0=$(best git -C "$W/g0" prune --expire=now)
T_GG0=$(once git -C "$W/g0" gc -q --prune=now)
git_repo "$W/gh" half >&2
cp -a "$W/gh" "$W/gh2"
sync
T_GPH=$(once git -C "$W/gh" prune --expire=now)
T_GGH=$(once git -C "$W/gh2" gc -q --prune=now)

python3 - "$OBJS" "$RECORDS" "$REMOVED" "$T_GC0" "$T_GCH" "$T_DU" "$T_FSCK" "$T_LIM" "$T_OST0" "$T_OSTH" "$T_GP0" "$T_GG0" "$T_GPH" "$T_GGH" <<'PY'
import sys
objs, recs, removed = sys.argv[1:4]
gc0, gch, du, fsck, lim, ost0, osth, gp0, gg0, gph, ggh = map(float, sys.argv[4:])
rows = [
    ("gc, nothing to collect", gc0, "ostree prune --refs-only", ost0),
    ("gc, nothing to collect", gc0, "git prune --expire=now", gp0),
    ("gc, nothing to collect", gc0, "git gc --prune=now (repacks)", gg0),
    ("gc, half to collect", gch, "one unlink per object (limit)", lim),
    ("gc, half to collect", gch, "ostree prune --refs-only", osth),
    ("gc, half to collect", gch, "git prune --expire=now", gph),
    ("gc, half to collect", gch, "git gc --prune=now (repacks)", ggh),
    ("du", du, "-", 0),
    ("fsck --no-hash", fsck, "-", 0),
]
print("state: %s objects (blobs + snapshots), %s records; half-collect removed %s objects"
      % (objs, recs, removed))
print("%-26s %9s   %-32s %9s %9s" % ("cairn", "seconds", "beside", "seconds", "ratio"))
for name, t, peer, p in rows:
    ratio = "%.2fx" % (t / p) if p else "-"
    print("%-26s %9.3f   %-32s %9s %9s" % (name, t, peer, "%.3f" % p if p else "-", ratio))
PY
