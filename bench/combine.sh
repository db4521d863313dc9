#!/usr/bin/env bash
# combine.sh: combining states, beside the peer tools. Run by hand, as root.
#
#   merge   `cairn merge` (links) of 2, 8 and 32 states holding OBJECTS
#           objects in all (many small blobs, some large ones), beside
#           `cp -al` of the same object files (the floor for linking),
#           `rsync -a`, `ostree pull-local` of the same files committed to
#           ostree repos (one a state), and `skopeo copy` between OCI
#           layouts of the blobs (measured on a sample: skopeo takes ~20 ms
#           an object; the total is extrapolated by object count, and says so);
#   freeze  `cairn freeze` of the whole union (one state, ~5 GB) beside
#           `cp -al` and `cp -a` of it;
#   stack   open time of a stack of 1, 8, 64 lowers and lookup latency
#           through it (bench-stack-lookup).
# Caches are dropped before each timed command. cairn syncs what it wrote
# (one syncfs) and cp -al does not: "cp -al+sync" is the durable equivalent.
# The cheap commands (cairn, cp -al) run REPEAT times (default 3), the best
# time is kept: other work on the machine only ever adds time. Disk: about 2x the data at
# the peak (~10 GB with the defaults); everything is removed at the end.
#
# Usage: bench/combine.sh [WORKDIR]
# Env: OBJECTS (100000), LARGE (200 large blobs), LARGE_MB (20), SMALL_KB
#      (mean size of the small ones, 8), SKOPEO_SAMPLE (2000), KEEP=1 keeps WORKDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OBJECTS=${OBJECTS:-100000}
LARGE=${LARGE:-200}
LARGE_MB=${LARGE_MB:-20}
SMALL_KB=${SMALL_KB:-8}
SKOPEO_SAMPLE=${SKOPEO_SAMPLE:-2000}
REPEAT=${REPEAT:-3}
[ "$(id -u)" -eq 0 ] || { echo "combine.sh: run as root (drops caches)" >&2; exit 2; }
scripts/deps >/dev/null
# A build of its own (release), so that rebuilding build/ cannot disturb a run.
[ -f build-bench/build.ninja ] || meson setup build-bench --buildtype=release -Dtests=false >/dev/null
ninja -C build-bench >/dev/null
CAIRN=$REPO/build-bench/cli/cairn
W=${1:-$(mktemp -d /var/tmp/cairn-bench-combine-XXXXXX)}
mkdir -p "$W"; W=$(cd "$W" && pwd)
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$W"; }
trap cleanup EXIT
cairn() { "$CAIRN" "$@"; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# t NAME CMD...: time CMD (after dropping caches) into the results file.
RES=$W/results
: >"$RES"
t() {
    local name=$1; shift
    drop
    local _t0 _t1
    _t0=$(date +%s.%N)
    "$@" >/dev/null
    _t1=$(date +%s.%N)
    echo "$name $(echo "$_t1 - $_t0" | bc -l)" >>"$RES"
    printf '  %-28s %8.3f s\n' "$name" "$(echo "$_t1 - $_t0" | bc -l)"
}
get() { awk -v k="$1" '$1 == k {print $2}' "$RES" | sort -g | head -1; }

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(df -T "$W" | awk 'NR==2{print $2}') at $W"
echo "== data: $OBJECTS objects ($LARGE of ${LARGE_MB} MiB, the rest ~${SMALL_KB} KiB) in 32 states"
per=$((OBJECTS / 32)); lper=$((LARGE / 32)); [ "$lper" -ge 1 ] || lper=1
for i in $(seq -w 0 31); do
    s=$W/s32/$i
    cairn init -q "$s"
    mkdir -p "$W/gen"
    python3 - "$W/gen" "$((per - lper))" "$SMALL_KB" "$i" <<'PY'
import os, random, sys
d, n, kb, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
r = random.Random(int(tag))
for k in range(n):
    size = max(64, int(r.lognormvariate(0, 1) * kb * 1024 / 1.65))
    with open(f"{d}/{k}", "wb") as f:
        f.write(f"{tag} {k} ".encode() + os.urandom(size))
PY
    find "$W/gen" -type f -print0 | xargs -0 -n 4000 "$CAIRN" -C "$s" blob put -q >/dev/null
    rm -rf "$W/gen"
    for k in $(seq 1 "$lper"); do
        head -c "$((LARGE_MB << 20))" /dev/urandom >"$W/large"
        cairn -C "$s" blob put -q "$W/large" >/dev/null
    done
    rm -f "$W/large"
done
# 8 and 2 states: merges (by links) of groups of the 32; 1: all of them.
for g in $(seq 0 7); do
    cairn merge -q "$W/s8/$g" $(for k in 0 1 2 3; do printf '%s ' "$W/s32/$(printf %02d $((g * 4 + k)))"; done)
done
cairn merge -q "$W/s2/0" "$W"/s8/{0,1,2,3}
cairn merge -q "$W/s2/1" "$W"/s8/{4,5,6,7}
cairn merge -q "$W/s1" "$W"/s2/{0,1}
total=$(cairn -C "$W/s1" info --json | python3 -c 'import json,sys; d=json.load(sys.stdin)["blobs"]; print(d["count"], d["bytes"])')
echo "   union: $total (objects, bytes)"

echo "== ostree repos: one per state (bare-user; 8 and 2 by pull-local)"
mkdir -p "$W/o32" "$W/o8" "$W/o2"
for i in $(seq -w 0 31); do
    ostree --repo="$W/o32/$i" init --mode=bare-user
    ostree --repo="$W/o32/$i" commit --branch="s$i" --tree=dir="$W/s32/$i/blobs/sha256" >/dev/null
done
for g in $(seq 0 7); do
    ostree --repo="$W/o8/$g" init --mode=bare-user
    for k in 0 1 2 3; do ostree --repo="$W/o8/$g" pull-local "$W/o32/$(printf %02d $((g * 4 + k)))" >/dev/null; done
done
for g in 0 1; do
    ostree --repo="$W/o2/$g" init --mode=bare-user
    for k in 0 1 2 3; do ostree --repo="$W/o2/$g" pull-local "$W/o8/$((g * 4 + k))" >/dev/null; done
done

echo "== merge"
for n in 2 8 32; do
    srcs=("$W/s$n"/*)
    echo " $n states"
    cm() { "$CAIRN" merge --link --json "$W/m" "${srcs[@]}" >"$W/merge.json"; }
    cpal() { mkdir -p "$W/c"; for s in "${srcs[@]}"; do cp -al "$s/blobs/sha256/." "$W/c/"; done; }
    cpals() { cpal; sync; }
    for rep in $(seq 1 "$REPEAT"); do
        t "merge.cairn.$n" cm
        echo "merge.cairn_bytes.$n $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_copied"])' "$W/merge.json")" >>"$RES"
        "$CAIRN" -C "$W/m" fsck --no-hash -q || { echo "fsck of the merge failed" >&2; exit 1; }
        rm -rf "$W/m"
        t "merge.cpal.$n" cpal
        rm -rf "$W/c"
        t "merge.cpalsync.$n" cpals
        rm -rf "$W/c"
    done
    rs() { rsync -a "${srcs[@]/%//blobs/sha256/}" "$W/r/"; }
    t "merge.rsync.$n" rs
    rm -rf "$W/r"
    ost() { ostree --repo="$W/od" init --mode=bare-user; for o in "$W/o$n"/*; do ostree --repo="$W/od" pull-local "$o"; done; }
    t "merge.ostree.$n" ost
    rm -rf "$W/od"
done

echo "== skopeo (a sample of $SKOPEO_SAMPLE blobs as OCI layouts of 100-layer images)"
python3 - "$W/s1/blobs/sha256" "$W/oci-src" "$SKOPEO_SAMPLE" <<'PY'
import hashlib, json, os, random, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = sorted(os.listdir(src))
sample = random.Random(1).sample(names, min(n, len(names)))
os.makedirs(f"{dst}/blobs/sha256")
def put(b):
    h = hashlib.sha256(b).hexdigest()
    open(f"{dst}/blobs/sha256/{h}", "wb").write(b)
    return "sha256:" + h, len(b)
mans = []
for i in range(0, len(sample), 100):
    layers = []
    for h in sample[i:i + 100]:
        os.link(f"{src}/{h}", f"{dst}/blobs/sha256/{h}")
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                       "digest": "sha256:" + h, "size": os.path.getsize(f"{src}/{h}")})
    cd, cs = put(json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}).encode())
    md, ms = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                             "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                             "layers": layers}).encode())
    mans.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
                 "platform": {"architecture": "amd64", "os": "linux", "variant": str(i)}})
idx, isz = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": mans}).encode())
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
           "digest": idx, "size": isz, "annotations": {"org.opencontainers.image.ref.name": "all"}}]},
          open(f"{dst}/index.json", "w"))
open(f"{dst}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
print(len(sample), sum(os.path.getsize(f"{src}/{h}") for h in sample))
PY
t "skopeo.sample" skopeo copy -q --all "oci:$W/oci-src:all" "oci:$W/oci-dst:all"
rm -rf "$W/oci-src" "$W/oci-dst"

echo "== freeze of the union (one state)"
cpalf() { cp -al "$W/s1" "$W/f"; sync; }
for rep in $(seq 1 "$REPEAT"); do
    t "freeze.cairn" "$CAIRN" freeze -q "$W/s1" "$W/f"
    "$CAIRN" -C "$W/f" fsck --no-hash -q
    rm -rf "$W/f"
    t "freeze.cpal" cp -al "$W/s1" "$W/f"
    rm -rf "$W/f"
    t "freeze.cpalsync" cpalf
    rm -rf "$W/f"
done
t "freeze.cpa" cp -a "$W/s1" "$W/f"
rm -rf "$W/f"

echo "== stack"
mkdir -p "$W/stack"
"$REPO/build-bench/bench/bench-stack-lookup" "$W/stack" 1 8 64 | tee "$W/stack.txt"
rm -rf "$W/stack"

echo
echo "== results ($OBJECTS objects, $(echo "$total" | awk '{printf "%.2f GB", $2/1e9}'); ratios: cairn / peer, < 1 is faster)"
nobj=$(echo "$total" | awk '{print $1}')
sk=$(get skopeo.sample)
printf '%-9s %8s %8s %9s %8s %8s %12s %9s %11s %9s %9s %10s\n' op cairn "cp -al" "cp+sync" rsync ostree "skopeo(ext)" "/cp -al" "/cp+sync" "/rsync" "/ostree" "/skopeo"
for n in 2 8 32; do
    c=$(get merge.cairn.$n); l=$(get merge.cpal.$n); ls=$(get merge.cpalsync.$n); r=$(get merge.rsync.$n); o=$(get merge.ostree.$n)
    s=$(echo "$sk * $nobj / $SKOPEO_SAMPLE" | bc -l)
    printf '%-9s %7.2fs %7.2fs %8.2fs %7.2fs %7.2fs %11.0fs %8.2fx %10.2fx %8.3fx %8.3fx %9.4fx\n' "merge $n" "$c" "$l" "$ls" "$r" "$o" "$s" \
        "$(echo "$c / $l" | bc -l)" "$(echo "$c / $ls" | bc -l)" "$(echo "$c / $r" | bc -l)" "$(echo "$c / $o" | bc -l)" "$(echo "$c / $s" | bc -l)"
done
for n in 2 8 32; do echo "   merge $n: data bytes copied by cairn: $(get merge.cairn_bytes.$n)"; done
f=$(get freeze.cairn); l=$(get freeze.cpal); ls=$(get freeze.cpalsync); a=$(get freeze.cpa)
printf '%-9s %7.2fs  cp -al %.2fs (%.2fx)  cp -al+sync %.2fs (%.2fx)  cp -a %.2fs (%.3fx)\n' freeze "$f" "$l" "$(echo "$f / $l" | bc -l)" "$ls" "$(echo "$f / $ls" | bc -l)" "$a" "$(echo "$f / $a" | bc -l)"
echo "stack (microseconds, medians, warm):"
cat "$W/stack.txt"
