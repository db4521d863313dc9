#!/usr/bin/env bash
# bench/ab.sh: is a change of cairn faster or slower? Two builds, the same
# workloads, in the same run, taking turns, so that a busy machine slows both
# alike. The workloads are those of the other benches, scaled down so that a
# run takes minutes (cairn's side only; the peers' numbers do not move with
# a change of cairn):
#   ingest 1 x 512 MiB, 50 x 10 MiB, 10000 x 4 KiB   (ingest.sh)
#   commit of a ~200 MB tree of /usr                   (commit.sh)
#   image import of a 3-layer image built with umoci   (image-import.sh)
#   gc with nothing to collect, gc removing half, du,  (gc.sh, gc-gen.py)
#     fsck --no-hash
#   merge --link of 8 states, freeze of their union    (combine.sh)
#   stack open and lookups through 1, 8, 64 lowers     (stack-lookup.c)
# Each round runs every workload once with each build, in the order A B on
# odd rounds and B A on even ones. Warm page cache, `sync` before each timed
# command, nothing dropped. Prints the medians, the spread (min-max), B/A,
# and the load average before and after.
#
# Usage: bench/ab.sh BUILD_A BUILD_B [WORKDIR]
#   BUILD_*: meson build directories (cli/cairn, bench/bench-stack-lookup)
#   env: ROUNDS (3), ONLY (comma-separated workload prefixes: ingest, commit,
#        image, gc, du, fsck, merge, freeze, stack), KEEP=1 keeps WORKDIR.
# Needs root only for nothing; umoci for the image, ~6 GB free in WORKDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
A=$(cd "$1" && pwd) B=$(cd "$2" && pwd)
for b in "$A" "$B"; do
    [ -x "$b/cli/cairn" ] && [ -x "$b/bench/bench-stack-lookup" ] ||
        { echo "ab.sh: $b: no cli/cairn or bench/bench-stack-lookup (ninja -C $b)" >&2; exit 1; }
done
ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-ingest,commit,image,gc,du,fsck,merge,freeze,stack}
for t in python3 umoci; do command -v $t >/dev/null || { echo "ab.sh: $t is needed (scripts/deps)" >&2; exit 1; }; done
if [ $# -ge 3 ]; then W=$3; mkdir -p "$W"; else W=$(mktemp -d "${TMPDIR:-/var/tmp}/cairn-bench-ab-XXXXXX"); fi
W=$(cd "$W" && pwd)
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$W"; }
trap cleanup EXIT
RES=$W/results
: >"$RES"
want() { [[ ",$ONLY," == *",$1,"* ]]; }
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

# t NAME SIDE CMD...: time CMD, after a sync, into the results.
t() {
    local name=$1 side=$2 s e
    shift 2
    sync
    s=$(date +%s.%N)
    "$@" </dev/null >/dev/null 2>"$W/t.err" || { echo "ab.sh: $name ($side) failed: $*" >&2; cat "$W/t.err" >&2; exit 1; }
    e=$(date +%s.%N)
    echo "$name $side $(python3 -c "print($e - $s)")" >>"$RES"
}

echo "making the data in $W (load average $LOAD0)..." >&2
# ---- ingest inputs
if want ingest; then
    head -c $((512 << 20)) /dev/urandom >"$W/big"
    mkdir -p "$W/mid" "$W/tiny"
    (cd "$W/mid" && head -c $((500 << 20)) /dev/urandom | split -b $((10 << 20)) -a 2 -d - m)
    (cd "$W/tiny" && head -c $((10000 * 4096)) /dev/urandom | split -b 4096 -a 5 -d - t)
fi
# ---- commit: whole directories of /usr until ~200 MB
if want commit; then
    mkdir -p "$W/tree"
    for d in /usr/lib/python3.11 /usr/include /usr/libexec /usr/share/perl /usr/lib/gcc /usr/bin; do
        [ -d "$d" ] || continue
        [ "$(du -sb "$W/tree" | cut -f1)" -ge $((200 << 20)) ] && break
        mkdir -p "$W/tree$(dirname "$d")"
        cp -a "$d" "$W/tree$(dirname "$d")/"
    done
fi
# ---- image: 3 layers by umoci
if want image; then
    umoci init --layout "$W/lay" >/dev/null
    umoci new --image "$W/lay:bench"
    umoci unpack --image "$W/lay:bench" "$W/bundle" >/dev/null
    for s in /usr/include /usr/lib/python3.11 /usr/share/perl5; do
        [ -d "$s" ] || continue
        mkdir -p "$W/bundle/rootfs$(dirname "$s")"
        cp -a "$s" "$W/bundle/rootfs$s"
        umoci repack --refresh-bundle --image "$W/lay:bench" "$W/bundle" >/dev/null
    done
    umoci gc --layout "$W/lay"
    rm -rf "$W/bundle"
fi
# ---- gc: 20,000 objects, 200,000 records (made by one build, copied)
if want gc || want du || want fsck; then
    "$A/cli/cairn" init -q "$W/gc-full"
    python3 bench/gc-gen.py "$W/gc-full" 10000 10000 200000 1.0
    "$A/cli/cairn" init -q "$W/gc-half"
    python3 bench/gc-gen.py "$W/gc-half" 10000 10000 200000 0.5
    for s in A B; do cp -a "$W/gc-full" "$W/gc-full-$s" && cp -a "$W/gc-half" "$W/gc-half-$s"; done
    # each side's copies opened writable once by its own build, untimed (a
    # newer build migrates an older schema then: not in its gc's time)
    for s in A B; do
        if [ $s = A ]; then C=$A/cli/cairn; else C=$B/cli/cairn; fi
        for d in "$W/gc-full-$s" "$W/gc-half-$s"; do "$C" -C "$d" fsck -q --repair --no-hash >/dev/null || true; done
    done
fi
# ---- merge: 8 states of 2,500 small blobs each (and a 20 MiB one), made by
# each build for itself (a newer build opens an older schema read-only only
# after migrating it, and merge opens its sources read-only)
if want merge || want freeze; then
  for side in A B; do
    if [ $side = A ]; then C=$A/cli/cairn; else C=$B/cli/cairn; fi
    for i in 0 1 2 3 4 5 6 7; do
        s=$W/m8-$side/$i
        "$C" init -q "$s"
        mkdir -p "$W/gen"
        python3 - "$W/gen" 2500 "$i" <<'PY'
import os, random, sys
d, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = random.Random(int(tag))
for k in range(n):
    size = max(64, int(r.lognormvariate(0, 1) * 8 * 1024 / 1.65))
    with open(f"{d}/{k}", "wb") as f:
        f.write(f"{tag} {k} ".encode() + os.urandom(size))
PY
        head -c $((20 << 20)) /dev/urandom >"$W/gen/large"
        find "$W/gen" -type f -print0 | xargs -0 -n 4000 "$C" -C "$s" blob put -q >/dev/null
        rm -rf "$W/gen"
    done
    "$C" merge -q --link "$W/union-$side" "$W"/m8-$side/*
  done
fi

# ---- the rounds
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order="A B"; else order="B A"; fi
    echo "round $r of $ROUNDS ($order; load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    for s in $order; do
        if [ $s = A ]; then C=$A/cli/cairn; L=$A/bench/bench-stack-lookup; else C=$B/cli/cairn; L=$B/bench/bench-stack-lookup; fi
        if want ingest; then
            for w in big mid tiny; do
                rm -rf "$W/out"; "$C" init -q "$W/out"
                if [ $w = big ]; then f=("$W/big"); else f=("$W/$w"/*); fi
                cat "${f[@]}" >/dev/null
                t "ingest-$w" $s "$C" -C "$W/out" blob put -q "${f[@]}"
            done
            rm -rf "$W/out"
        fi
        if want commit; then
            rm -rf "$W/cs"; "$C" init -q "$W/cs"
            id=$("$C" -C "$W/cs" snapshot prepare)
            cp -a "$W/tree/." "$W/cs/active/$id/fs/"
            tar -C "$W/tree" -cf - . >/dev/null
            t commit $s "$C" -C "$W/cs" snapshot commit "$id"
            rm -rf "$W/cs"
        fi
        if want image; then
            rm -rf "$W/is"; "$C" init -q "$W/is"
            t image-import $s "$C" -C "$W/is" image import "$W/lay:bench"
            rm -rf "$W/is"
        fi
        if want gc; then
            t gc-nothing $s "$C" -C "$W/gc-full-$s" gc
            rm -rf "$W/gch"; cp -a "$W/gc-half-$s" "$W/gch"
            t gc-half $s "$C" -C "$W/gch" gc
            rm -rf "$W/gch"
        fi
        want du && t du $s "$C" -C "$W/gc-full-$s" du
        want fsck && t fsck-no-hash $s "$C" -C "$W/gc-full-$s" fsck --no-hash
        if want merge; then
            rm -rf "$W/m"
            t merge-8 $s "$C" merge -q --link "$W/m" "$W"/m8-$s/*
            rm -rf "$W/m"
        fi
        if want freeze; then
            rm -rf "$W/f"
            t freeze $s "$C" freeze "$W/union-$s" "$W/f"
            rm -rf "$W/f"
        fi
        if want stack; then
            rm -rf "$W/st"; mkdir -p "$W/st"
            "$L" "$W/st" 1 8 64 >"$W/stack.out"
            # lowers open_us first_us hit_us miss_us stat_us record_us
            awk -v s=$s 'NR > 1 {print "stack" $1 "-open", s, $2 / 1e6; print "stack" $1 "-hit", s, $4 / 1e6; print "stack" $1 "-record", s, $7 / 1e6}' "$W/stack.out" >>"$RES"
            rm -rf "$W/st"
        fi
    done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$RES" "$A" "$B" "$ROUNDS" "$LOAD0" "$LOAD1" <<'PY'
import collections, statistics, sys
res, a, b, rounds, l0, l1 = sys.argv[1:]
t = collections.defaultdict(lambda: {"A": [], "B": []})
order = []
for line in open(res):
    name, side, v = line.split()
    if name not in t:
        order.append(name)
    t[name][side].append(float(v))
def fmt(v):
    return f"{v * 1e6:.1f} us" if v < 0.01 else f"{v:.3f} s"
print(f"A = {a}\nB = {b}\n{rounds} rounds, A and B in turn; load average before {l0}, after {l1}\n")
print(f"| workload | A median | A min-max | B median | B min-max | B/A |")
print(f"|---|---|---|---|---|---|")
for n in order:
    ma, mb = statistics.median(t[n]["A"]), statistics.median(t[n]["B"])
    sa = f"{fmt(min(t[n]['A']))}-{fmt(max(t[n]['A']))}"
    sb = f"{fmt(min(t[n]['B']))}-{fmt(max(t[n]['B']))}"
    print(f"| {n} | {fmt(ma)} | {sa} | {fmt(mb)} | {sb} | {mb / ma:.2f}x |")
PY
