#!/usr/bin/env bash
# test-output.sh: what the command writes at a path the user names. A regular
# file (or nothing) is replaced whole; a device, a FIFO or a symlink to one is
# written into and stays what it was; a symlink to a regular file, or
# dangling, is replaced and its target left alone; a name planted where the
# output is staged is never followed. Directory destinations (checkout,
# image export as a layout, init, freeze, merge) refuse a device.
source "$(dirname "$0")/lib.sh"
S=$T/s
cairn init "$S" >/dev/null
printf 'the blob\n' >"$T/in"
D=$(cairn -C "$S" blob put "$T/in")
A=$(cairn -C "$S" snapshot prepare)
echo layer >"$S/active/$A/fs/f"
L=$(cairn -C "$S" snapshot commit "$A")
mknod "$T/null" c 1 3
chmod 666 "$T/null"
mkfifo "$T/fifo"

# still_dev: $T/null is still the character device 1,3.
still_dev() { [ -c "$T/null" ] && [ "$(stat -c %t,%T "$T/null")" = 1,3 ] || die "$1 replaced the device: $(ls -l "$T/null")"; }
# through_fifo OUT CMD...: run CMD, which writes into $T/fifo, with a reader that saves it to OUT.
through_fifo() {
    local out=$1; shift
    cat "$T/fifo" >"$out" &
    local rd=$!
    "$@" >/dev/null || { kill "$rd" 2>/dev/null; die "$* failed writing into a FIFO"; }
    [ -p "$T/fifo" ] || { kill "$rd" 2>/dev/null; die "$* replaced the FIFO"; }
    wait "$rd"
}

step "blob get -o: a device, a FIFO, a symlink to a device are written into"
cairn -C "$S" blob get "$D" -o "$T/null"
still_dev "blob get -o DEVICE"
through_fifo "$T/got" cairn -C "$S" blob get "$D" -o "$T/fifo"
cmp "$T/in" "$T/got" || die "the FIFO's reader got other bytes"
ln -s null "$T/to-null"
cairn -C "$S" blob get "$D" -o "$T/to-null"
[ -L "$T/to-null" ] || die "the symlink to a device was replaced"
still_dev "blob get -o SYMLINK-TO-DEVICE"

step "blob get -o: a regular file and symlinks to one or to nothing are replaced, targets kept"
echo old >"$T/reg"
cairn -C "$S" blob get "$D" -o "$T/reg"
cmp "$T/in" "$T/reg" || die "the regular file was not replaced"
echo precious >"$T/target"
ln -s target "$T/to-target"
cairn -C "$S" blob get "$D" -o "$T/to-target"
[ ! -L "$T/to-target" ] && cmp -s "$T/in" "$T/to-target" || die "the symlink to a file was not replaced by the blob"
[ "$(cat "$T/target")" = precious ] || die "the symlink's target was written"
ln -s "$T/nowhere/x" "$T/dangling"
cairn -C "$S" blob get "$D" -o "$T/dangling"
cmp "$T/in" "$T/dangling" && [ ! -e "$T/nowhere" ] || die "the dangling symlink was not replaced"
echo precious >"$T/victim"
ln -s victim "$T/reg2.cairn-tmp"
cairn -C "$S" blob get "$D" -o "$T/reg2"
[ "$(cat "$T/victim")" = precious ] && [ -L "$T/reg2.cairn-tmp" ] ||
    die "a symlink planted beside the output was followed"
cmp "$T/in" "$T/reg2" || die "reg2 was not written"
mkdir "$T/dir"
fails 1 "dir: Is a directory" -- cairn -C "$S" blob get "$D" -o "$T/dir"
[ -d "$T/dir" ] || die "the directory was replaced"
[ -z "$(ls "$T" | grep cairn- | grep -v reg2.cairn-tmp)" ] || die "staged files left behind: $(ls "$T")"

step "layer export -o: the same rules"
cairn -C "$S" layer export "$L" -o "$T/l.tar" >/dev/null
cairn -C "$S" layer export "$L" -o "$T/null" >/dev/null
still_dev "layer export -o DEVICE"
cairn -C "$S" layer export "$L" -o "$T/to-null" >/dev/null
still_dev "layer export -o SYMLINK-TO-DEVICE"
through_fifo "$T/l2.tar" cairn -C "$S" layer export "$L" -o "$T/fifo"
cmp "$T/l.tar" "$T/l2.tar" || die "the layer through a FIFO differs"
ln -s victim "$T/l3.tar.partial"
cairn -C "$S" layer export "$L" -o "$T/l3.tar" >/dev/null
[ "$(cat "$T/victim")" = precious ] || die "a symlink planted beside the layer was followed"
cmp "$T/l.tar" "$T/l3.tar" || die "l3.tar differs"

step "image export --format oci-archive into a device, a FIFO, a symlink to a device"
cp "$T/l.tar" "$T/layer.tar" # canonical: the layer can be made again from its snapshot
python3 - "$T/lay" "$T/layer.tar" <<'PY'
import hashlib, json, os, sys
out, layer = sys.argv[1], open(sys.argv[2], "rb").read()
os.makedirs(out + "/blobs/sha256")
def put(b):
    h = hashlib.sha256(b).hexdigest()
    open(f"{out}/blobs/sha256/{h}", "wb").write(b)
    return {"digest": "sha256:" + h, "size": len(b)}
ld = put(layer)
cd = put(json.dumps({"os": "linux", "architecture": "amd64",
                     "rootfs": {"type": "layers", "diff_ids": [ld["digest"]]}}).encode())
md = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cd},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **ld}]}).encode())
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    **md, "annotations": {"org.opencontainers.image.ref.name": "t"}}]}, open(out + "/index.json", "w"))
open(out + "/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
cairn -C "$S" image import "$T/lay" >/dev/null
cairn -C "$S" image export t "$T/null" --format oci-archive -q
still_dev "image export DEVICE"
cairn -C "$S" image export t "$T/to-null" --format oci-archive -q
still_dev "image export SYMLINK-TO-DEVICE"
through_fifo "$T/img.tar" cairn -C "$S" image export t "$T/fifo" --format oci-archive -q
tar -tf "$T/img.tar" | grep -qx index.json || die "the archive through the FIFO has no index.json"
fails 1 "already exists" -- cairn -C "$S" image export t "$T/reg" --format oci-archive
fails 1 "already exists" -- cairn -C "$S" image export t "$T/to-target" --format oci-archive
# The layer made again from its snapshot (its blob gone) is staged unnamed.
LD=sha256:$(sha "$T/layer.tar")
cairn -C "$S" blob rm "$LD" >/dev/null
fails 1 "$LD" -- cairn -C "$S" blob stat "$LD"
through_fifo "$T/img2.tar" cairn -C "$S" image export t "$T/fifo" --format oci-archive -q
[ "$(tar -tf "$T/img2.tar" | grep -c '^blobs/sha256/')" = 3 ] || die "the remade layer is not in the archive"
[ -z "$(ls -A "$S/tmp")" ] || die "layer temporaries left in tmp/: $(ls -A "$S/tmp")"
still_dev "image export"

step "directory destinations refuse a device and leave it"
fails 1 "null" -- cairn -C "$S" image export t "$T/null"
fails 1 "null" -- cairn -C "$S" snapshot checkout "$L" "$T/null"
fails 1 "null" -- cairn init "$T/null"
fails 1 "null" -- cairn freeze "$S" "$T/null"
fails 1 "null" -- cairn merge "$T/null" "$S"
still_dev "a directory destination"
[ -p "$T/fifo" ] || die "the FIFO was replaced"
echo "ok"
