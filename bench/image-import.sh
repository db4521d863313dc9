#!/usr/bin/env bash
# image-import: import + unpack of a multi-layer image built with umoci from
# this machine's /usr, by cairn, by `umoci unpack`, and by containerd
# (`ctr images import`, overlayfs snapshotter, a containerd this script starts
# on its own socket and root), beside the gzip limit (zcat of the layers).
# Prints one table: best and median of each over N rounds (each round runs
# every tool once), and their ratios to cairn.
# Usage: bench/image-import.sh [WORKDIR] [RUNS]   (as root; WORKDIR default
# a temporary directory; the image is built once and kept in WORKDIR/image)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
[ "$(id -u)" -eq 0 ] || { echo "image-import: run as root (containerd, overlayfs, owners)" >&2; exit 1; }
for t in umoci containerd ctr zcat python3; do command -v $t >/dev/null || { echo "image-import: $t is needed (scripts/deps)" >&2; exit 1; }; done
CAIRN=${CAIRN:-$REPO/build/cli/cairn}
[ -x "$CAIRN" ] || { echo "image-import: build cairn first (ninja -C build)" >&2; exit 1; }
W=${1:-}
RUNS=${2:-5}
if [ -z "$W" ]; then W=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-XXXXXX"); KEEP=0; else mkdir -p "$W"; KEEP=1; fi
W=$(cd "$W" && pwd)
CTRD_PID=
cleanup() {
    [ -n "$CTRD_PID" ] && kill "$CTRD_PID" 2>/dev/null && wait "$CTRD_PID" 2>/dev/null || true
    findmnt -rn -o TARGET 2>/dev/null | grep "^$W" | sort -r | while read -r m; do umount -l "$m" || true; done
    rm -rf "$W/run"
    [ "$KEEP" -eq 1 ] || rm -rf "$W"
}
trap cleanup EXIT

# ---- the image: one layer per /usr subtree -------------------------------
SUBTREES=(/usr/include /usr/lib/python3.11 /usr/lib/gcc /usr/libexec /usr/share/perl5 /usr/sbin)
IMG=$W/image
if [ ! -f "$IMG/done" ]; then
    echo "building the image from ${SUBTREES[*]} (once)..." >&2
    rm -rf "$IMG"; mkdir -p "$IMG"
    umoci init --layout "$IMG/lay" >/dev/null
    umoci new --image "$IMG/lay:bench"
    umoci unpack --image "$IMG/lay:bench" "$IMG/b" >/dev/null
    for s in "${SUBTREES[@]}"; do
        [ -d "$s" ] || continue
        mkdir -p "$IMG/b/rootfs$(dirname "$s")"
        cp -a "$s" "$IMG/b/rootfs$s"
        umoci repack --refresh-bundle --image "$IMG/lay:bench" "$IMG/b" >/dev/null
    done
    umoci gc --layout "$IMG/lay"
    rm -rf "$IMG/b"
    # The same layout as an oci-archive, for containerd (which reads tars).
    tar -C "$IMG/lay" -cf "$IMG/bench.tar" oci-layout index.json blobs
    touch "$IMG/done"
fi
LAYERS=$(python3 - "$IMG/lay" <<'PY'
import json, os, sys
lay = sys.argv[1]
idx = json.load(open(os.path.join(lay, "index.json")))
man = json.load(open(os.path.join(lay, "blobs/sha256", idx["manifests"][0]["digest"][7:])))
print(" ".join(os.path.join(lay, "blobs/sha256", l["digest"][7:]) for l in man["layers"]))
PY
)
read -r NL CSIZE USIZE NFILES < <(python3 - $LAYERS <<'PY'
import gzip, os, sys, tarfile
c = u = n = 0
for p in sys.argv[1:]:
    c += os.path.getsize(p)
    with gzip.open(p) as f:
        t = tarfile.open(fileobj=f, mode="r|")
        for m in t:
            n += 1
            u += m.size
print(len(sys.argv) - 1, c, u, n)
PY
)

# ---- timing ---------------------------------------------------------------
# Rounds: each round runs every tool once, so that a busy machine slows them
# alike; each tool's best and median over the rounds are kept.
now() { date +%s.%N; }
declare -A TIMES
one_run() { # name setup-fn run-fn
    local name=$1 setup=$2 fn=$3 t0 t1 t
    if [ -n "$CTRD_PID" ]; then containerd_stop; fi
    rm -rf "$W/run"; mkdir -p "$W/run"
    $setup
    sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    # The input read back into the page cache: every tool starts warm.
    cat $LAYERS "$IMG/bench.tar" >/dev/null
    t0=$(now); $fn; t1=$(now)
    t=$(python3 -c "print($t1 - $t0)")
    TIMES[$name]="${TIMES[$name]:-} $t"
    echo "  $name: $t s" >&2
}

nothing() { :; }
cairn_layout() { "$CAIRN" init -q "$W/run/st" && "$CAIRN" -C "$W/run/st" image import -q "$IMG/lay:bench"; }
cairn_archive() { "$CAIRN" init -q "$W/run/st" && "$CAIRN" -C "$W/run/st" image import -q "$IMG/bench.tar"; }
cairn_1thread() { "$CAIRN" init -q "$W/run/st" && "$CAIRN" -C "$W/run/st" image import -q --jobs 1 "$IMG/lay:bench"; }
umoci_unpack() { umoci unpack --image "$IMG/lay:bench" "$W/run/bundle" >/dev/null; }
zcat_limit() { for l in $LAYERS; do zcat "$l" >/dev/null; done; }

containerd_start() {
    mkdir -p "$W/run/ctrd/root" "$W/run/ctrd/state"
    printf '%s\n' 'version = 2' "root = \"$W/run/ctrd/root\"" "state = \"$W/run/ctrd/state\"" \
        '[grpc]' "  address = \"$W/run/ctrd/sock\"" >"$W/run/ctrd/config.toml"
    containerd --config "$W/run/ctrd/config.toml" >"$W/run/ctrd/log" 2>&1 &
    CTRD_PID=$!
    for _ in $(seq 100); do ctr -a "$W/run/ctrd/sock" version >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "containerd did not start:" >&2; cat "$W/run/ctrd/log" >&2; exit 1
}
containerd_import() {
    ctr -a "$W/run/ctrd/sock" -n bench images import --snapshotter overlayfs --base-name bench "$IMG/bench.tar" >/dev/null
}
# containerd did unpack: one overlayfs snapshot a layer (checked after the clock stopped).
containerd_check() {
    local ns
    ns=$(ctr -a "$W/run/ctrd/sock" -n bench snapshots --snapshotter overlayfs ls | tail -n +2 | wc -l)
    [ "$ns" -eq "$NL" ] || { echo "containerd made $ns snapshots for $NL layers" >&2; exit 1; }
}
containerd_stop() { kill "$CTRD_PID"; wait "$CTRD_PID" 2>/dev/null || true; CTRD_PID=; }

TOOLS=("cairn import (layout)" "cairn import (oci-archive)" "cairn import, 1 thread" "umoci unpack"
       "containerd import+unpack" "zcat (gzip limit)")
declare -A SETUP=(["containerd import+unpack"]=containerd_start)
declare -A FN=(["cairn import (layout)"]=cairn_layout ["cairn import (oci-archive)"]=cairn_archive
               ["cairn import, 1 thread"]=cairn_1thread ["umoci unpack"]=umoci_unpack
               ["containerd import+unpack"]=containerd_import ["zcat (gzip limit)"]=zcat_limit)
for round in $(seq 1 "$RUNS"); do
    echo "round $round of $RUNS" >&2
    for k in "${TOOLS[@]}"; do
        one_run "$k" "${SETUP[$k]:-nothing}" "${FN[$k]}"
        [ "$k" != "containerd import+unpack" ] || containerd_check
    done
done
[ -z "$CTRD_PID" ] || containerd_stop
stat_of() { python3 -c 'import statistics, sys; v = [float(x) for x in sys.argv[2:]]; print(min(v) if sys.argv[1] == "best" else statistics.median(v))' "$@"; }

echo
printf 'image: %s layers from %s\n' "$NL" "${SUBTREES[*]}"
printf '       %s MB compressed, %s MB in %s tar entries\n' "$((CSIZE / 1000000))" "$((USIZE / 1000000))" "$NFILES"
printf 'machine: %s CPUs, %s, load average %s; %s rounds, input in the page cache\n\n' \
    "$(nproc)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$RUNS"
printf '%-28s %9s %9s %10s %10s\n' "tool" "best s" "median s" "best/cairn" "med/cairn"
cb=$(stat_of best ${TIMES["cairn import (layout)"]}); cm=$(stat_of median ${TIMES["cairn import (layout)"]})
for k in "${TOOLS[@]}"; do
    b=$(stat_of best ${TIMES[$k]}); m=$(stat_of median ${TIMES[$k]})
    printf '%-28s %9.2f %9.2f %9.2fx %9.2fx\n' "$k" "$b" "$m" "$(python3 -c "print($b / $cb)")" "$(python3 -c "print($m / $cm)")"
done
