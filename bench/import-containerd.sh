#!/usr/bin/env bash
# import-containerd.sh: `cairn import containerd` of a containerd root beside
# `cp -al` of the same root (the floor for linking a tree). Run by hand, as root.
#
# The root is made by Debian's containerd on a private root and socket under
# WORKDIR: IMAGES docker-archives of LAYERS layers each (random files of
# FILE_MB, SIZE_MB in all, and a few hundred small ones), `ctr images
# import`ed (unpacked into the overlayfs snapshotter), then containerd is
# stopped. Each run imports into a fresh state and `cp -al`s the root into a
# fresh directory, on the same filesystem; the load average is taken at each
# run, as other work on this machine adds time to both. Caches are not
# dropped (the machine is shared): both sides read warm metadata. The
# importer also reads every byte (blobs are hashed, trees tarred, and a
# layer not in cairn's canonical form is read beside its tree to prove it,
# or applied in tmp/ where that comparison does not model it: "unpacked");
# its columns say how much. Disk: about 4x SIZE_MB at the peak.
#
# A WORKDIR kept by an earlier run (KEEP=1) that holds a root is used again
# as it is, so two builds can be timed on the same root: BEFORE=path names
# another cairn binary (an older build), timed beside this one in each run.
#
# Usage: bench/import-containerd.sh [WORKDIR]
# Env: SIZE_MB (3072), IMAGES (3), LAYERS (4), FILE_MB (16), REPEAT (3), KEEP=1, BEFORE
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
. "$REPO/tests/cli/ctrd-config.sh"
SIZE_MB=${SIZE_MB:-3072}
IMAGES=${IMAGES:-3}
LAYERS=${LAYERS:-4}
FILE_MB=${FILE_MB:-16}
REPEAT=${REPEAT:-3}
[ "$(id -u)" -eq 0 ] || { echo "import-containerd.sh: run as root (containerd's overlayfs)" >&2; exit 2; }
command -v containerd >/dev/null && command -v ctr >/dev/null ||
    { echo "import-containerd.sh: containerd and ctr are needed (scripts/deps)" >&2; exit 2; }
[ -f build-bench/build.ninja ] || meson setup build-bench --buildtype=release -Dtests=false >/dev/null
ninja -C build-bench >/dev/null
CAIRN=$REPO/build-bench/cli/cairn
W=${1:-$(mktemp -d /var/tmp/cairn-bench-ctrd-XXXXXX)}
mkdir -p "$W"; W=$(cd "$W" && pwd)
C=$W/containerd
PID=
cleanup() {
    [ -n "$PID" ] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
    [ "${KEEP:-0}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(uname -r), $(df -T "$W" | awk 'NR==2{print $2}') at $W"
if [ -d "$C/root" ]; then
    echo "== using the root made before at $C/root"
else
echo "== making $IMAGES images of $LAYERS layers, $SIZE_MB MB in all"
python3 - "$W" "$IMAGES" "$LAYERS" "$SIZE_MB" "$FILE_MB" <<'PY'
import hashlib, io, json, os, sys, tarfile
w, images, layers, size_mb, file_mb = sys.argv[1], *map(int, sys.argv[2:])
per_layer = size_mb * (1 << 20) // (images * layers)
for i in range(images):
    d = os.path.join(w, "img%d" % i)
    os.makedirs(d, exist_ok=True)
    names, diff_ids = [], []
    for l in range(layers):
        p = os.path.join(d, "layer%d.tar" % l)
        with tarfile.open(p, "w", format=tarfile.PAX_FORMAT) as t:
            for sub in ("data", "data/%d" % l, "small", "small/%d" % l):
                ti = tarfile.TarInfo(sub); ti.type = tarfile.DIRTYPE; ti.mode = 0o755
                t.addfile(ti)
            left, n = per_layer, 0
            while left > 0:
                sz = min(left, file_mb << 20)
                ti = tarfile.TarInfo("data/%d/f%d" % (l, n)); ti.size = sz
                t.addfile(ti, io.BytesIO(os.urandom(sz)))
                left -= sz; n += 1
            for k in range(200):
                b = os.urandom(512 + k)
                ti = tarfile.TarInfo("small/%d/s%d" % (l, k)); ti.size = len(b)
                t.addfile(ti, io.BytesIO(b))
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        diff_ids.append("sha256:" + h.hexdigest())
        names.append("layer%d.tar" % l)
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    open(os.path.join(d, "config.json"), "wb").write(cfg)
    json.dump([{"Config": "config.json", "RepoTags": ["bench.example/img%d:1" % i], "Layers": names}],
              open(os.path.join(d, "manifest.json"), "w"))
PY
mkdir -p "$C"
ctrd_private_config "$C" >"$C/config.toml"
containerd --config "$C/config.toml" >"$C/log" 2>&1 &
PID=$!
for _ in $(seq 150); do ctr --address "$C/sock" version >/dev/null 2>&1 && break; sleep 0.1; done
for i in $(seq 0 $((IMAGES - 1))); do
    tar -C "$W/img$i" -cf - . | ctr --address "$C/sock" images import - >/dev/null
    rm -rf "$W/img$i"
done
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
fi
ROOT=$C/root
echo "== root: $(du -sh "$ROOT" | cut -f1), $(find "$ROOT" -type f | wc -l) files"

now() { date +%s.%N; }
# One import into a fresh state: "seconds bytes_copied MB_read layers_applied".
import_one() {
    rm -rf "$W/state"
    "$1" init "$W/state" >/dev/null
    local t0 t1
    t0=$(now)
    "$1" -C "$W/state" --json import containerd "$ROOT" >"$W/imp.json"
    t1=$(now)
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(float(sys.argv[2]), j["bytes_copied"], j["bytes_verified"] >> 20, j.get("layers_applied", 0))' \
        "$W/imp.json" "$(echo "$t1 - $t0" | bc -l)"
}
printf '\n%-4s %9s %9s %7s %12s %10s %8s' run cairn "cp -al" ratio "bytes copied" "read (MB)" unpacked
[ -n "${BEFORE:-}" ] && printf ' %9s %7s' before ratio
printf ' %s\n' loadavg
for r in $(seq "$REPEAT"); do
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    if [ -n "${BEFORE:-}" ]; then
        read -r ba _ < <(import_one "$BEFORE")
    fi
    read -r a copied verified layers < <(import_one "$CAIRN")
    rm -rf "$W/cpal"
    t1=$(now)
    cp -al "$ROOT" "$W/cpal"
    t2=$(now)
    b=$(echo "$t2 - $t1" | bc -l)
    printf '%-4s %8.2fs %8.2fs %6.1fx %12s %10s %8s' "$r" "$a" "$b" "$(echo "$a / $b" | bc -l)" "$copied" "$verified" "$layers"
    [ -n "${BEFORE:-}" ] && printf ' %8.2fs %6.1fx' "$ba" "$(echo "$ba / $b" | bc -l)"
    printf ' %s\n' "$load"
done
"$CAIRN" -C "$W/state" fsck >/dev/null && echo "(the last state: fsck clean)"
