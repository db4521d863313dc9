#!/usr/bin/env bash
# Images end to end, against the real tools: an image built with umoci is
# imported, its top snapshot checked out and compared with umoci's own unpack
# of it; exported, and the export read back by skopeo and umoci. Bad input is
# refused naming the object, and records no image.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/image-lib.sh"
need umoci skopeo setfattr python3
cairn init "$T/s" >/dev/null
export CAIRN_STATE=$T/s
no_image() { ! cairn image ls --json | grep -q "\"name\": \"$1\"" || die "image $1 was recorded"; }

step "build a 3-layer image with umoci (whiteouts, an opaque directory)"
make_image "$T/lay" v1
umoci unpack --image "$T/lay:v1" "$T/ref" >/dev/null
tree_sig "$T/ref/rootfs" >"$T/ref.sig"
grep -q '^data/a f 644 1234:5678 .* user.color=' "$T/ref.sig" || die "the reference lacks what the test made: $(cat "$T/ref.sig")"
grep -q '^opq/fresh/file' "$T/ref.sig" && ! grep -q '^opq/old' "$T/ref.sig" || die "umoci did not apply the opaque layer"

step "import: three snapshots, named by the chain ids of the config's diff ids"
cairn image import "$T/lay" >"$T/out"
grep -q "imported v1: manifest sha256:[0-9a-f]*, 3 layers" "$T/out" || die "import said: $(cat "$T/out")"
cairn image show --json v1 >"$T/show.json"
top=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["top"])' "$T/show.json")
layout_chain_ids "$T/lay" >"$T/chains"
[ "$(tail -1 "$T/chains")" = "$top" ] || die "top $top is not the chain id $(tail -1 "$T/chains")"
while read -r c; do cairn snapshot stat "$c" >/dev/null || die "no snapshot $c"; done <"$T/chains"
while read -r d; do cairn blob stat "$d" >/dev/null || die "layer blob $d not stored"; done < <(layout_layers "$T/lay")
cairn image ls | grep -q '^v1 ' || die "image ls does not list v1"
# -q: the rows alone, no header line, for scripts.
[ "$(cairn -q image ls | cut -d' ' -f1)" = v1 ] || die "image ls -q: $(cairn -q image ls)"
[ "$(cairn image ls -q | wc -l)" = 1 ] || die "image ls -q prints more than its row"

step "check out the top snapshot: the same tree as umoci unpack"
cairn snapshot checkout "$top" "$T/co" >/dev/null
tree_sig "$T/co" >"$T/co.sig"
diff -u "$T/ref.sig" "$T/co.sig" || die "the checkout differs from umoci's unpack"

step "a directory made again by a later layer keeps the metadata it had below"
# Layer 2 of the image changes etc/conf without an entry for etc itself: the
# snapshot of layer 2 must show etc as layer 1 had it (as overlayfs copy-up
# and umoci do).
mkdir -p "$T/plain/etc"; chmod 0750 "$T/plain/etc"; echo a >"$T/plain/etc/f"
chown 123:456 "$T/plain/etc"; touch -d '2020-01-02 03:04:05' "$T/plain/etc"
tar -C "$T/plain" --numeric-owner -cf "$T/p1.tar" etc
echo b >"$T/plain/etc/f"
tar -C "$T/plain" --numeric-owner -cf "$T/p2.tar" etc/f
umoci init --layout "$T/plain-lay" && umoci new --image "$T/plain-lay:p"
umoci raw add-layer --image "$T/plain-lay:p" "$T/p1.tar"
umoci raw add-layer --image "$T/plain-lay:p" "$T/p2.tar"
cairn image import "$T/plain-lay" >/dev/null
ptop=$(cairn image show --json p | python3 -c 'import json,sys; print(json.load(sys.stdin)["top"])')
cairn snapshot checkout "$ptop" "$T/plain-co" >/dev/null
mode=$(stat -c %a "$T/plain-co/etc")
[ "$mode" = 750 ] || die "etc is $mode in the checkout, 750 in the image"
[ "$(stat -c %u:%g "$T/plain-co/etc")" = 123:456 ] || die "etc lost its owner: $(stat -c %u:%g "$T/plain-co/etc")"
[ "$(stat -c %Y "$T/plain-co/etc")" = "$(date -d '2020-01-02 03:04:05' +%s)" ] || die "etc lost its mtime"
mkdir "$T/plain-mnt"
cairn mount "$ptop" "$T/plain-mnt"
m2=$(stat -c %a:%u:%g "$T/plain-mnt/etc"); umount "$T/plain-mnt"
[ "$m2" = 750:123:456 ] || die "the mounted chain shows etc as $m2, not 750:123:456"

step "import again: nothing new; under another name: the same snapshots"
nsnap=$(cairn snapshot ls | wc -l); nblob=$(cairn blob ls | wc -l)
cairn image import "$T/lay:v1" --name again --jobs 1 >/dev/null
[ "$(cairn snapshot ls | wc -l)" = "$nsnap" ] && [ "$(cairn blob ls | wc -l)" = "$nblob" ] || die "a second import stored something"
[ "$(cairn image show --json again | python3 -c 'import json,sys; print(json.load(sys.stdin)["top"])')" = "$top" ] || die "a second import has another top"

step "an oci-archive (made by skopeo) imports to the same snapshots"
skopeo copy -q "oci:$T/lay:v1" "oci-archive:$T/v1.tar:v1"
cairn init "$T/s2" >/dev/null
cairn -C "$T/s2" image import "$T/v1.tar" --name arc >/dev/null
[ "$(cairn -C "$T/s2" image show --json arc | python3 -c 'import json,sys; print(json.load(sys.stdin)["top"])')" = "$top" ] || die "the archive's import has another top"

step "export as a layout: skopeo copies it, umoci unpacks it to the same tree"
cairn image export v1 "$T/exp"
[ -f "$T/exp/index.json" ] && [ -f "$T/exp/oci-layout" ] || die "no index.json or oci-layout in the export"
skopeo copy -q "oci:$T/exp:v1" "oci:$T/copy:v1"
umoci unpack --image "$T/exp:v1" "$T/unp" >/dev/null
tree_sig "$T/unp/rootfs" | diff -u "$T/ref.sig" - || die "umoci's unpack of the export differs"
cmp -s "$T/lay/blobs/sha256/${top#sha256:}" /dev/null 2>/dev/null || true
for d in $(layout_layers "$T/lay"); do cmp -s "$T/lay/blobs/sha256/${d#sha256:}" "$T/exp/blobs/sha256/${d#sha256:}" || die "layer $d was not exported as it came"; done
fails 1 "not empty" -- cairn image export v1 "$T/exp"

step "export as an oci-archive: skopeo reads it"
cairn image export --format oci-archive v1 "$T/exp.tar"
skopeo copy -q "oci-archive:$T/exp.tar" "oci:$T/copy2:v1"
[ -f "$T/copy2/index.json" ] || die "skopeo did not copy the archive"
fails 1 "already exists" -- cairn image export --format oci-archive v1 "$T/exp.tar"

step "export when the layer blobs are gone: made again from the snapshots"
# umoci's tars are not in cairn's canonical form: refused, naming the layer.
for d in $(layout_layers "$T/lay"); do cairn -C "$T/s2" blob rm "$d" >/dev/null; done
fails 1 "layer 0 \\(snapshot sha256:[0-9a-f]*\\).*not in canonical form" -- cairn -C "$T/s2" image export arc "$T/gone"
[ ! -e "$T/gone/index.json" ] || die "a failed export left an index.json"
# An image whose layers cairn wrote itself (plain tars) is made again, gzipped.
S4=$T/s4; cairn init "$S4" >/dev/null
id=$(cairn -C "$S4" snapshot prepare)
mkdir -p "$S4/active/$id/fs/app"; echo one >"$S4/active/$id/fs/app/one"; ln -s one "$S4/active/$id/fs/app/link"
c1=$(cairn -C "$S4" snapshot commit "$id")
id=$(cairn -C "$S4" snapshot prepare "$c1")
mkdir -p "$S4/active/$id/fs/app"; echo two >"$S4/active/$id/fs/app/two"; chmod 0751 "$S4/active/$id/fs/app/two"
c2=$(cairn -C "$S4" snapshot commit "$id")
mkdir -p "$T/canon/blobs/sha256"
for c in "$c1" "$c2"; do cairn -C "$S4" layer export "$c" --compression none -o "$T/canon/l.tar" >/dev/null; d=$(sha "$T/canon/l.tar"); mv "$T/canon/l.tar" "$T/canon/blobs/sha256/$d"; echo "$d"; done >"$T/canon/layers"
python3 - "$T/canon" <<'PY'
import hashlib, json, os, sys
lay = sys.argv[1]; B = os.path.join(lay, "blobs/sha256")
def blob(b):
    d = hashlib.sha256(b).hexdigest(); open(os.path.join(B, d), "wb").write(b); return "sha256:" + d, len(b)
ls = open(os.path.join(lay, "layers")).read().split(); os.unlink(os.path.join(lay, "layers"))
cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": ["sha256:" + l for l in ls]}}).encode()
cd, cs = blob(cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + l,
                "size": os.path.getsize(os.path.join(B, l))} for l in ls]}).encode()
md, ms = blob(man)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "canon"}}]}, open(os.path.join(lay, "index.json"), "w"))
open(os.path.join(lay, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
cairn init "$T/s5" >/dev/null
cairn -C "$T/s5" image import "$T/canon" >/dev/null
for d in $(layout_layers "$T/canon"); do cairn -C "$T/s5" blob rm "$d" >/dev/null; done
cairn -C "$T/s5" image export canon "$T/remade" >/dev/null
for d in $(layout_layers "$T/remade"); do
    [ -f "$T/canon/blobs/sha256/${d#sha256:}" ] && die "layer $d was not made again"
    zcat "$T/remade/blobs/sha256/${d#sha256:}" | cmp -s - "$T/canon/blobs/sha256/$(zcat "$T/remade/blobs/sha256/${d#sha256:}" | sha256sum | cut -d' ' -f1)" || die "layer $d does not hold the original tar"
done
umoci unpack --image "$T/remade:canon" "$T/remade-unp" >/dev/null
cairn -C "$T/s5" snapshot checkout "$c2" "$T/canon-co" >/dev/null
diff -u <(tree_sig "$T/canon-co") <(tree_sig "$T/remade-unp/rootfs") || die "umoci's unpack of the re-made export differs"
skopeo copy -q "oci:$T/remade:canon" "oci:$T/remade-copy:canon"

step "rm"
cairn image rm again >/dev/null
no_image again
fails 1 "image 'again': not found" -- cairn image rm again

step "bad input: nothing recorded, the object named"
bad() { rm -rf "$T/bad"; cp -a "$T/lay" "$T/bad"; }
bad; echo '{"schemaVersion": 2, "manifests": [' >"$T/bad/index.json"
fails 1 "bad/index.json: malformed JSON" -- cairn image import "$T/bad" --name b1
no_image b1

bad; layout_rewrite "$T/bad" 'man_raw = "{\"schemaVersion\": 2, \"config\": "'
mdig=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$T/bad/index.json")
fails 1 "$mdig: malformed JSON" -- cairn image import "$T/bad" --name b2
no_image b2

bad; layout_rewrite "$T/bad" 'cfg_raw = "{\"os\": \"linux\", \"rootfs\": {"'
cdig=$(python3 -c 'import json,sys; i=json.load(open(sys.argv[1])); print(json.load(open(sys.argv[2]+"/blobs/sha256/"+i["manifests"][0]["digest"][7:]))["config"]["digest"])' "$T/bad/index.json" "$T/bad")
fails 1 "$cdig: malformed JSON" -- cairn image import "$T/bad" --name b3
no_image b3

bad; l2=$(layout_layers "$T/bad" | sed -n 2p)
rm "$T/bad/blobs/sha256/${l2#sha256:}"
cairn init "$T/s3" >/dev/null   # a store that lacks the layer
fails 1 "layer 1 \\($l2\\) of manifest sha256:[0-9a-f]*: missing from" -- cairn -C "$T/s3" image import "$T/bad" --name b4
[ "$(cairn -C "$T/s3" image ls --json)" = "[]" ] || die "b4 was recorded"

bad; python3 - "$T/bad/blobs/sha256/${l2#sha256:}" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 0xff; open(p, "wb").write(b)
PY
fails 1 "$l2: the data's digest is sha256:" -- cairn -C "$T/s3" image import "$T/bad" --name b5
[ "$(cairn -C "$T/s3" image ls --json)" = "[]" ] || die "b5 was recorded"

bad; layout_rewrite "$T/bad" 'cfg["rootfs"]["diff_ids"][1] = cfg["rootfs"]["diff_ids"][0]'
fails 1 "layer 1 \\($l2\\) of manifest .*DiffID is sha256:[0-9a-f]*, expected" -- cairn -C "$T/s3" image import "$T/bad" --name b6
[ "$(cairn -C "$T/s3" image ls --json)" = "[]" ] || die "b6 was recorded"

size=$(stat -c %s "$T/v1.tar")
head -c $((size / 2)) "$T/v1.tar" >"$T/trunc.tar"
fails 1 "trunc.tar: .*(the archive ends early \\(Truncated tar archive\\)|missing from)" -- cairn -C "$T/s3" image import "$T/trunc.tar" --name b7
[ "$(cairn -C "$T/s3" image ls --json)" = "[]" ] || die "b7 was recorded"

fails 1 "no manifest for platform linux/s390x" -- cairn image import "$T/lay" --platform linux/s390x --name b8
fails 2 "expected os/arch" -- cairn image import "$T/lay" --platform linux
fails 2 "expected one image layout" -- cairn image import
no_image b8
[ -z "$(ls -A "$T/s/tmp")" ] || die "staging left behind: $(ls "$T/s/tmp")"
echo "ok"
