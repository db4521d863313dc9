#!/usr/bin/env bash
# The image formats people have, made by the real tools: references that
# name a registry path (PATH:example.com/team/app:1.0, skopeo's rule), the
# names containerd writes, every Docker schema 2 media type (and what is
# refused, with its reason), docker-archive in and out, and exports that
# leave nothing behind when they fail.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/image-lib.sh"
for tool in umoci skopeo python3 gzip; do
    command -v $tool >/dev/null || die "$tool is needed (scripts/deps installs it)"
done
cairn init "$T/s" >/dev/null
export CAIRN_STATE=$T/s
jget() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
top_of() { cairn image show --json "$1" | jget top; }
manifest_of() { cairn image show --json "$1" | jget manifest; }

# mk_image LAYOUT REF TEXT: a two-layer image (umoci repack: whole tars), the
# second layer deleting a file of the first and writing TEXT.
mk_image() {
    local lay=$1 ref=$2 b
    b=$(mktemp -d "$T/bundle-XXXXXX"); rmdir "$b"
    [ -d "$lay" ] || umoci init --layout "$lay"
    umoci new --image "$lay:$ref"
    umoci unpack --image "$lay:$ref" "$b" >/dev/null
    mkdir -p "$b/rootfs/etc" "$b/rootfs/usr/bin"
    echo base >"$b/rootfs/etc/base"; echo gone >"$b/rootfs/etc/gone"
    head -c 100000 /dev/urandom >"$b/rootfs/usr/bin/tool"
    umoci repack --refresh-bundle --image "$lay:$ref" "$b" >/dev/null
    rm "$b/rootfs/etc/gone"; echo "$3" >"$b/rootfs/etc/which"
    umoci repack --image "$lay:$ref" "$b" >/dev/null
    rm -rf "$b"
}
# The tree of an imported image's top snapshot, checked out at co_dir NAME.
co_dir() { echo "$T/co-${1//[\/:]/_}"; }
tree_of() { rm -rf "$(co_dir "$1")"; cairn snapshot checkout "$(top_of "$1")" "$(co_dir "$1")" >/dev/null; tree_sig "$(co_dir "$1")"; }

step "references: PATH:REF splits at the first colon, as skopeo's oci: transport"
mk_image "$T/lay" example.com/team/app:1.0 one
mk_image "$T/lay" example.com/team/app:2.0 two
umoci unpack --image "$T/lay:example.com/team/app:1.0" "$T/u1" >/dev/null
tree_sig "$T/u1/rootfs" >"$T/u1.sig"
fails 1 "several images \\('example.com/team/app:1.0', 'example.com/team/app:2.0'\\)" -- cairn image import "$T/lay"
cairn image import "$T/lay:example.com/team/app:1.0" >"$T/out"
grep -q "^imported example.com/team/app:1.0: " "$T/out" || die "import said: $(cat "$T/out")"
cairn image import "$T/lay:example.com/team/app:2.0" >/dev/null
tree_of example.com/team/app:1.0 | diff -u "$T/u1.sig" - || die "PATH:REF imported another image than umoci unpacks"
[ "$(cat "$(co_dir example.com/team/app:1.0)/etc/which")" = one ] || die "REF 1.0 is not image one"
tree_of example.com/team/app:2.0 >/dev/null
[ "$(cat "$(co_dir example.com/team/app:2.0)/etc/which")" = two ] || die "REF 2.0 is not image two"
skopeo inspect "oci:$T/lay:example.com/team/app:2.0" >/dev/null  # the same string names it for skopeo
fails 1 "no image named 'example.com/team/app:3.0'" -- cairn image import "$T/lay:example.com/team/app:3.0"
fails 1 "read as PATH:REF split at the first colon.*nowhere: No such file" -- cairn image import "$T/nowhere:example.com/a:1"
# An existing path that holds a colon is taken whole.
cp -a "$T/lay" "$T/co:lon"
cairn image import "$T/co:lon" --name colon 2>&1 | grep -q "several images" && die "an existing path with a colon was split"
cairn image import "$T/co:lon:example.com/team/app:1.0" --name colon2 2>/dev/null && die "a path with a colon took a REF"

step "references: containerd's io.containerd.image.name is a name too"
# As 'ctr images export' writes it: the full name beside a ref.name of the tag alone.
cp -a "$T/lay" "$T/ctr"
python3 - "$T/ctr/index.json" <<'PY'
import json, sys
p = sys.argv[1]; idx = json.load(open(p))
for m in idx["manifests"]:
    tag = m["annotations"]["org.opencontainers.image.ref.name"].rsplit(":", 1)[1]
    m["annotations"] = {"io.containerd.image.name": "registry.test/ctr/app:" + tag,
                        "org.opencontainers.image.ref.name": tag}
json.dump(idx, open(p, "w"))
PY
cairn image import "$T/ctr:registry.test/ctr/app:1.0" >"$T/out"
grep -q "^imported registry.test/ctr/app:1.0: " "$T/out" || die "containerd's name was not taken: $(cat "$T/out")"
cairn image import "$T/ctr:2.0" >"$T/out"
grep -q "^imported registry.test/ctr/app:2.0: " "$T/out" || die "ref.name did not find containerd's image: $(cat "$T/out")"
[ "$(manifest_of registry.test/ctr/app:1.0)" = "$(manifest_of example.com/team/app:1.0)" ] || die "containerd's name names another manifest"

step "Docker media types: skopeo's v2s2 (manifest, config, gzip layers)"
skopeo copy -q --format v2s2 "oci:$T/lay:example.com/team/app:1.0" "oci:$T/v2s2:d1"
grep -q 'application/vnd.docker.distribution.manifest.v2+json' "$T/v2s2/index.json" || die "skopeo did not write a v2s2 manifest"
cairn image import "$T/v2s2" >/dev/null
tree_of d1 | diff -u "$T/u1.sig" - || die "the v2s2 import differs from umoci's unpack"
[ "$(top_of d1)" = "$(top_of example.com/team/app:1.0)" ] || die "the v2s2 import has other snapshots"

step "Docker media types: uncompressed rootfs.diff.tar layers, in a manifest list"
# containerd's export writes plain Docker tar layers; the blobs are skopeo's,
# ungzipped, and the manifest named through a Docker manifest list.
cp -a "$T/v2s2" "$T/plain"
layout_rewrite "$T/plain" '
for l in man["layers"]:
    import gzip
    raw = gzip.decompress(open(os.path.join(B, l["digest"][7:]), "rb").read())
    l["digest"] = blob(raw); l["size"] = len(raw)
    l["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar"
'
python3 - "$T/plain" <<'PY'
import hashlib, json, os, sys
lay = sys.argv[1]; B = os.path.join(lay, "blobs/sha256")
idx = json.load(open(os.path.join(lay, "index.json")))
d = idx["manifests"][0]
lst = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
    "manifests": [{"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"],
                   "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
h = hashlib.sha256(lst).hexdigest(); open(os.path.join(B, h), "wb").write(lst)
idx["manifests"] = [{"mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
    "digest": "sha256:" + h, "size": len(lst), "annotations": {"org.opencontainers.image.ref.name": "plain"}}]
json.dump(idx, open(os.path.join(lay, "index.json"), "w"))
PY
cairn image import "$T/plain" --platform linux/amd64 >/dev/null
tree_of plain | diff -u "$T/u1.sig" - || die "the plain-tar import differs from umoci's unpack"
[ "$(top_of plain)" = "$(top_of d1)" ] || die "plain tar layers made other snapshots"

step "Docker media types: foreign layers and schema 1 are refused, saying why"
cp -a "$T/v2s2" "$T/foreign"
layout_rewrite "$T/foreign" 'man["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"'
fails 1 "layers\\[0\\]: layer media type \"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip\" is not supported: a foreign \\(non-distributable\\) layer is not shipped with the image" -- cairn image import "$T/foreign" --name f1
cp -a "$T/lay" "$T/nondist"
layout_rewrite "$T/nondist" 'man["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"'
fails 1 "is not supported: a foreign \\(non-distributable\\) layer" -- cairn image import "$T/nondist:example.com/team/app:1.0" --name f2
# Schema 1, as skopeo writes it (signed with a key of its own), in a layout.
skopeo copy -q --format v2s1 "oci:$T/lay:example.com/team/app:1.0" "dir:$T/s1dir"
python3 - "$T/s1dir" "$T/s1" <<'PY'
import hashlib, json, os, shutil, sys
src, lay = sys.argv[1:]; B = os.path.join(lay, "blobs/sha256"); os.makedirs(B)
for f in os.listdir(src):
    if len(f) == 64: shutil.copy(os.path.join(src, f), os.path.join(B, f))
m = open(os.path.join(src, "manifest.json"), "rb").read()
h = hashlib.sha256(m).hexdigest(); open(os.path.join(B, h), "wb").write(m)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "digest": "sha256:" + h, "size": len(m), "annotations": {"org.opencontainers.image.ref.name": "old"}}]},
    open(os.path.join(lay, "index.json"), "w"))
open(os.path.join(lay, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
fails 1 "image 'old' \\(manifest sha256:[0-9a-f]*\\): a Docker schema 1 manifest is not supported .*skopeo copy --format v2s2" -- cairn image import "$T/s1"
# Named with another media type, the document itself says schema 1.
sed -i 's/manifest.v1+prettyjws/manifest.v2+json/' "$T/s1/index.json"
fails 1 "sha256:[0-9a-f]*: a Docker schema 1 manifest is not supported" -- cairn image import "$T/s1"
for n in f1 f2 old; do cairn image show "$n" >/dev/null 2>&1 && die "refused image $n was recorded"; done

echo "ok"
