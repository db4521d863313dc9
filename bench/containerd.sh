#!/usr/bin/env bash
# containerd: Debian's containerd 1.6 with its own content store and
# overlayfs snapshotter ("native") beside the same containerd with `cairn
# serve containerd` as its proxy content store and snapshotter:
#   - pull + unpack of a multi-layer image from docker-registry on 127.0.0.1
#     into an empty containerd root: native; cairn over an empty state
#     (cold); cairn over a new state stacked on a frozen state that has the
#     image (warm: the layers are adopted, only the manifests move);
#   - ctr run --rm of `true`, start to exit: native vs cairn.
# Pulls go through containerd's client library with its unpacker (the
# tests' ctrd-pull, the way CRI and nerdctl pull). Each case runs REPS times
# on fresh roots; the table gives the median and the ratio to native in the
# same run, with the load average before and after.
#
#   image: busybox, two small layers, then LAYERS layers of SIZE random bytes
#
# Usage: bench/containerd.sh [WORKDIR]   (env: REPS LAYERS SIZE; run as root)
set -euo pipefail
CTRD_SELF=$(realpath "$0")
cd "$(dirname "$0")/.."
REPO=$PWD
CAIRN=${CAIRN:-$REPO/build/cli/cairn}
[ -x "$CAIRN" ] || { echo "containerd: build cairn first (ninja -C build)" >&2; exit 1; }
for t in containerd ctr runc docker-registry skopeo busybox go python3; do
    command -v $t >/dev/null || { echo "containerd: $t is needed (scripts/deps)" >&2; exit 1; }
done
REPS=${REPS:-3} LAYERS=${LAYERS:-6} SIZE=${SIZE:-16777216}
W=${1:-}
if [ -z "$W" ]; then W=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-ctrd-XXXXXX"); KEEP=0; else mkdir -p "$W"; KEEP=1; fi
W=$(cd "$W" && pwd)
T=$W
die() { echo "containerd: $*" >&2; exit 1; }
need() { :; }
source "$REPO/tests/cli/containerd-lib.sh"
REG_PID=
cleanup() {
    local rc=$?
    ctrd_cleanup
    [ -z "$REG_PID" ] || { kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; }
    if command -v findmnt >/dev/null; then
        { findmnt -rn -o TARGET | grep "^$W" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done; } || true
    fi
    [ "$KEEP" -eq 1 ] || rm -rf "$W"
    exit "$rc"
}
trap cleanup EXIT
now() { date +%s%N; }
PULL=$W/ctrd-pull
(cd "$REPO/tests/cli/ctrd-pull" && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$W/go-cache" go build -o "$PULL" .)

echo "building the image: 3 busybox layers + $LAYERS x $SIZE bytes" >&2
EXTRA=$LAYERS:$SIZE python3 "$REPO/tests/cli/ctrd-image.py" "$(command -v busybox)" "$W/oci" "$W/img.tar" bench:1 >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$W/reg"
printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$W/reg/data" "$PORT" >"$W/reg/config.yml"
docker-registry serve "$W/reg/config.yml" >"$W/reg/log" 2>&1 &
REG_PID=$!
for i in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
skopeo copy -q --dest-tls-verify=false "oci:$W/oci:1" "docker://127.0.0.1:$PORT/bench:1"
IMG=127.0.0.1:$PORT/bench:1

# The warm lower: a state that pulled the image once, frozen.
"$CAIRN" init "$W/seed" >/dev/null
serve_start "$W/seed" seed
ctrd_start seed "$W/seed.sock"
"$PULL" "$W/ctrd-seed/containerd.sock" cairn "$IMG" >/dev/null
ctrd_stop seed
serve_stop seed
"$CAIRN" freeze "$W/seed" "$W/lower" >/dev/null

# run_case KIND REP: prints "pull_ns run_ns"
run_case() {
    local kind=$1 rep=$2 name=$1-$2 sock="" snap=overlayfs t0 t1 t2 t3
    case $kind in
        cold) "$CAIRN" init "$W/st-$name" >/dev/null ;;
        warm) "$CAIRN" init "$W/st-$name" >/dev/null; "$CAIRN" stack add "$W/st-$name" "$W/lower" >/dev/null ;;
    esac
    if [ "$kind" != native ]; then
        serve_start "$W/st-$name" "$name"
        sock=$W/$name.sock snap=cairn
    fi
    ctrd_start "$name" "$sock"
    sync
    t0=$(now)
    "$PULL" "$W/ctrd-$name/containerd.sock" "$snap" "$IMG" >/dev/null
    t1=$(now)
    # the first run mounts and starts a shim; the one timed is the second
    ctr "$name" run --snapshotter "$snap" --rm "$IMG" "w-$rep" true
    t2=$(now)
    ctr "$name" run --snapshotter "$snap" --rm "$IMG" "r-$rep" true
    t3=$(now)
    ctrd_stop "$name"
    [ "$kind" = native ] || serve_stop "$name"
    rm -rf "$W/ctrd-$name" "$W/st-$name"
    echo "$((t1 - t0)) $((t3 - t2))"
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A PULLS RUNS
for rep in $(seq 1 "$REPS"); do
    for kind in native cold warm; do
        read -r p r < <(run_case "$kind" "$rep")
        PULLS[$kind]+="$p "
        RUNS[$kind]+="$r "
        echo "rep $rep $kind: pull $((p / 1000000)) ms, run $((r / 1000000)) ms" >&2
    done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { python3 -c "print(f'{$1 / 1e6:.0f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
bytes=$(du -sb "$W/oci/blobs" | cut -f1)
echo "image: $((3 + LAYERS)) layers, $bytes bytes of blobs; $REPS runs each; load average $load0 -> $load1"
printf '%-58s %10s %10s\n' "operation (median of $REPS)" "ms" "x native"
np=$(median <<<"${PULLS[native]}") nr=$(median <<<"${RUNS[native]}")
for kind in native cold warm; do
    p=$(median <<<"${PULLS[$kind]}")
    case $kind in
        native) label="pull + unpack: containerd's content store, overlayfs" ;;
        cold) label="pull + unpack: cairn, empty state (cold)" ;;
        warm) label="pull + unpack: cairn over a frozen lower with it (warm)" ;;
    esac
    printf '%-58s %10s %10s\n' "$label" "$(ms "$p")" "$(ratio "$p" "$np")"
done
for kind in native cold; do
    r=$(median <<<"${RUNS[$kind]}")
    label="ctr run --rm true: $([ "$kind" = native ] && echo native overlayfs || echo cairn)"
    printf '%-58s %10s %10s\n' "$label" "$(ms "$r")" "$(ratio "$r" "$nr")"
done
