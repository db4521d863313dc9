#!/usr/bin/env bash
# pool: the time of `cairn pool provision` (stack mode, the states in the
# host cache) in pools of 10, 1,000 and 10,000 states, against the target of
# 100 ms. Provision lists only the ranked modules' tags, so the time should
# not grow with the pool.
#
#   the module provisioned: app over base, 5 states each, checked in by real
#   sessions (20 blobs and a snapshot each); the rest of the pool: other
#   modules of one state each, published by copying a real member's manifest
#   under their tags (a state published under many tags; its objects are
#   there), so a 10,000-state pool takes seconds to make, not hours.
#
# Each size: one provision to fill the cache, then RUNS timed provisions
# into fresh directories (the command as a user runs it: process start
# included), then a checkin of a 16 KiB delta from each; the median and the
# spread of the wall time are printed, the median CPU time (user + system)
# and the load average.
#
# Usage: bench/pool.sh [WORKDIR]   (env: SIZES="10 1000 10000" RUNS=7)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CAIRN=${CAIRN:-$REPO/build/cli/cairn}
[ -x "$CAIRN" ] || { echo "pool: build cairn first (ninja -C build)" >&2; exit 1; }
SIZES=${SIZES:-"10 1000 10000"} RUNS=${RUNS:-7}
W=${1:-}
if [ -z "$W" ]; then W=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-pool-XXXXXX"); KEEP=0; else mkdir -p "$W"; KEEP=1; fi
W=$(cd "$W" && pwd)
cleanup() { [ "$KEEP" -eq 1 ] || rm -rf "$W"; }
trap cleanup EXIT
# timed_cairn ARGS...: "wall_ms cpu_ms" of cairn ARGS (its CPU: user + system,
# which a loaded box inflates far less than the wall time), by bash's time
timed_cairn() {
    local TIMEFORMAT='%3R %3U %3S' out
    out=$( { time "$CAIRN" "$@" >/dev/null 2>&1; } 2>&1 ) || return 1
    python3 -c "import sys; r, u, s = map(float, sys.argv[1:]); print(f'{r * 1e3:.1f} {(u + s) * 1e3:.1f}')" $out
}
stats() { python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f'{statistics.median(v):.1f} {min(v):.1f} {max(v):.1f}')" "$@"; }

# session DIR NAME: 20 random blobs of 16 KiB and a snapshot
session() {
    mkdir -p "$W/in-$2"
    for i in $(seq 1 20); do head -c 16384 /dev/urandom >"$W/in-$2/$i"; done
    "$CAIRN" -C "$1" blob put "$W/in-$2"/* >/dev/null
    local act
    act=$("$CAIRN" -C "$1" snapshot prepare)
    mkdir -p "$1/active/$act/fs/srv"; head -c 30000 /dev/urandom >"$1/active/$act/fs/srv/$2"
    "$CAIRN" -C "$1" snapshot commit "$act" >/dev/null
}

printf "%-8s %12s %12s %12s %8s %8s %8s  %s\n" "states" "median ms" "min ms" "max ms" "cpu ms" "target" "vs 10" "load average (1 5 15)"
base_ms=""
checkins=()
for n in $SIZES; do
    P="$W/pool-$n" U="file://$W/pool-$n"
    export CAIRN_POOL_CACHE="$W/cache-$n"
    "$CAIRN" pool init "$U" >/dev/null
    for m in base app; do
        for i in 1 2 3 4 5; do
            d="$W/s-$n-$m-$i"
            if [ "$m" = app ]; then "$CAIRN" pool provision --dep base "$U" app "$d" >/dev/null
            else "$CAIRN" pool provision "$U" base "$d" >/dev/null; fi
            session "$d" "$m$i"
            "$CAIRN" pool checkin "$U" "$m" "$d" >/dev/null
        done
    done
    filler=$((n - 10))
    one=$(ls "$P/states/base" | head -1)
    python3 - "$P" "$one" "$filler" <<'PY'
import json, os, shutil, sys
root, one, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
src = os.path.join(root, "states", "base", one)
idx = json.load(open(os.path.join(root, "index.json")))
size = os.path.getsize(src)
for i in range(n):
    d = os.path.join(root, "states", f"mod-{i:05d}")
    os.makedirs(d, exist_ok=True)
    shutil.copyfile(src, os.path.join(d, one))
    idx["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                             "digest": "sha256:" + one, "size": size,
                             "annotations": {"org.opencontainers.image.ref.name": f"mod-{i:05d}.{one[:16]}",
                                             "cairn.tag": f"mod-{i:05d}"}})
# the index as cairn keeps it: one entry a state
json.dump(idx, open(os.path.join(root, "index.json"), "w"), separators=(",", ":"))
PY
    total=$(find "$P/states" -mindepth 2 -type f ! -path '*/_*' | wc -l)
    "$CAIRN" pool provision --dep base "$U" app "$W/warm-$n" >/dev/null # fills the cache
    times=() cpus=()
    for r in $(seq 1 "$RUNS"); do
        read -r wall cpu < <(timed_cairn pool provision --dep base "$U" app "$W/p-$n-$r")
        times+=("$wall") cpus+=("$cpu")
        [ "$("$CAIRN" -C "$W/p-$n-$r" stack ls | wc -l)" = 10 ] || { echo "pool: provision did not stack 10 states" >&2; exit 1; }
    done
    read -r med lo hi < <(stats "${times[@]}")
    read -r cpu _ _ < <(stats "${cpus[@]}")
    [ -n "$base_ms" ] || base_ms=$med
    ratio=$(python3 -c "print(f'{$med / $base_ms:.2f}')")
    printf "%-8s %12s %12s %12s %8s %8s %8s  %s\n" "$total" "$med" "$lo" "$hi" "$cpu" "100" "$ratio" "$(cut -d' ' -f1-3 /proc/loadavg)"
    # checkin of a delta (one blob of 16 KiB) from each provision: its time
    # should not grow with the pool either
    ctimes=() ccpus=()
    for r in $(seq 1 "$RUNS"); do
        head -c 16384 /dev/urandom >"$W/delta-$n-$r"
        "$CAIRN" -C "$W/p-$n-$r" blob put "$W/delta-$n-$r" >/dev/null
        read -r wall cpu < <(timed_cairn pool checkin "$U" app "$W/p-$n-$r")
        ctimes+=("$wall") ccpus+=("$cpu")
    done
    read -r cmed clo chi < <(stats "${ctimes[@]}")
    read -r ccpu _ _ < <(stats "${ccpus[@]}")
    [ -n "${cbase_ms:-}" ] || cbase_ms=$cmed
    cratio=$(python3 -c "print(f'{$cmed / $cbase_ms:.2f}')")
    checkins+=("$(printf "%-8s %12s %12s %12s %8s %8s %8s  %s" "$total" "$cmed" "$clo" "$chi" "$ccpu" "-" "$cratio" "$(cut -d' ' -f1-3 /proc/loadavg)")")
done
echo
echo "checkin of a 16 KiB delta (file://):"
printf "%-8s %12s %12s %12s %8s %8s %8s  %s\n" "states" "median ms" "min ms" "max ms" "cpu ms" "target" "vs 10" "load average (1 5 15)"
printf "%s\n" "${checkins[@]}"
