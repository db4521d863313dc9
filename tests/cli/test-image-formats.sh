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
# (Output to files, not into grep -q: under pipefail an early exit of grep
# fails the writer with SIGPIPE.)
cairn image import "$T/co:lon" --name colon >"$T/colon.out" 2>&1 || true
grep -q "several images" "$T/colon.out" || die "an existing path with a colon was split: $(cat "$T/colon.out")"
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

step "export: a failed export leaves nothing at DEST, nor beside it"
# umoci's layer tars are not in canonical form: with their blobs gone, the
# export fails at layer 0, after the config blob was written.
cairn init "$T/s2" >/dev/null
cairn -C "$T/s2" image import "$T/lay:example.com/team/app:1.0" --name gone >/dev/null
for d in $(layout_layers "$T/lay" | head -2); do cairn -C "$T/s2" blob rm "$d" >/dev/null 2>&1 || true; done
mkdir "$T/outd"
for f in oci oci-archive; do
    fails 1 "layer 0 \\(snapshot sha256:[0-9a-f]*\\).*not in canonical form" -- cairn -C "$T/s2" image export --format $f gone "$T/outd/dest"
    [ -z "$(ls -A "$T/outd")" ] || die "a failed $f export left: $(ls -A "$T/outd")"
    mkdir "$T/outd/dest"
    if [ $f = oci ]; then pat="not in canonical form"; else pat="dest: already exists"; fi
    fails 1 "$pat" -- cairn -C "$T/s2" image export --format $f gone "$T/outd/dest"
    [ -d "$T/outd/dest" ] && [ -z "$(ls -A "$T/outd/dest")" ] && [ "$(ls -A "$T/outd")" = dest ] || die "a failed $f export into an empty directory left: $(ls -AR "$T/outd")"
    rmdir "$T/outd/dest"
done

step "export: DEST may be missing or an empty directory (replaced), nothing else"
mkdir "$T/empty"
cairn image export d1 "$T/empty" >/dev/null
[ -f "$T/empty/index.json" ] || die "an empty directory was not exported into"
fails 1 "not empty" -- cairn image export d1 "$T/empty"
echo keep >"$T/afile"
fails 1 "already exists and is not a directory" -- cairn image export d1 "$T/afile"
fails 1 "already exists" -- cairn image export --format oci-archive d1 "$T/afile"
[ "$(cat "$T/afile")" = keep ] || die "a file was replaced"
ln -s "$T/elsewhere" "$T/alink"
fails 1 "already exists and is not a directory" -- cairn image export d1 "$T/alink"
[ ! -e "$T/elsewhere" ] || die "an export followed a symlink"

step "export as it is: skopeo reads the layout back, digests unchanged"
# (This skopeo's oci: reader skips index entries of Docker media types, even
# those it writes itself: the Docker image is checked blob by blob.)
cairn image export example.com/team/app:1.0 "$T/e-as" >/dev/null
[ "sha256:$(skopeo inspect --raw "oci:$T/e-as:example.com/team/app:1.0" | sha256sum | cut -d' ' -f1)" = "$(manifest_of example.com/team/app:1.0)" ] || die "the export's manifest is not the imported one"
skopeo copy -q "oci:$T/e-as:example.com/team/app:1.0" "oci:$T/e-as-copy:x"
for b in "$T"/e-as/blobs/sha256/*; do cmp -s "$b" "$T/lay/blobs/sha256/${b##*/}" || die "blob ${b##*/} changed on the way"; done
cairn image export d1 "$T/e-d1" >/dev/null
for b in "$T"/e-d1/blobs/sha256/*; do cmp -s "$b" "$T/v2s2/blobs/sha256/${b##*/}" || die "blob ${b##*/} changed on the way"; done

step "export --compression: the layers compressed as asked, the manifest rewritten"
cairn image export --compression gzip d1 "$T/e-gz" >/dev/null
[ "$(layout_layers "$T/e-gz")" = "$(layout_layers "$T/v2s2")" ] || die "gzip layers asked as gzip were made again"
cairn image export --compression zstd d1 "$T/e-zst" >/dev/null
python3 - "$T/e-zst" "$T/v2s2" <<'PY'
import json, os, sys
def man(lay):
    i = json.load(open(os.path.join(lay, "index.json")))
    return i, json.load(open(os.path.join(lay, "blobs/sha256", i["manifests"][0]["digest"][7:])))
(zi, z), (oi, o) = man(sys.argv[1]), man(sys.argv[2])
assert z["mediaType"] == zi["manifests"][0]["mediaType"] == "application/vnd.oci.image.manifest.v1+json", z
assert z["config"] == dict(o["config"], mediaType="application/vnd.oci.image.config.v1+json"), (z["config"], o["config"])
for zl, ol in zip(z["layers"], o["layers"]):
    assert zl["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd" and zl["digest"] != ol["digest"], zl
    assert open(os.path.join(sys.argv[1], "blobs/sha256", zl["digest"][7:]), "rb").read(4) == b"\x28\xb5\x2f\xfd", zl
PY
[ $? = 0 ] || die "the zstd export's manifest is not what was asked"
# skopeo checks each blob against its digest as it copies (umoci 0.4 has no zstd).
skopeo copy -q "oci:$T/e-zst:d1" "oci:$T/e-zst-copy:d1"
cairn init "$T/s3" >/dev/null
cairn -C "$T/s3" image import "$T/e-zst:d1" --name z >/dev/null
[ "$(cairn -C "$T/s3" image show --json z | jget top)" = "$(top_of d1)" ] || die "the zstd export has other diff ids"
# Plain Docker layers asked gzipped: Docker's gzip type, in a Docker manifest.
cairn image export --compression gzip plain "$T/e-plain" >/dev/null
python3 - "$T/e-plain" <<'PY'
import json, os, sys
lay = sys.argv[1]; i = json.load(open(os.path.join(lay, "index.json")))
m = json.load(open(os.path.join(lay, "blobs/sha256", i["manifests"][0]["digest"][7:])))
assert m["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json", m
assert all(l["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip" for l in m["layers"]), m
PY
cairn init "$T/s4" >/dev/null
cairn -C "$T/s4" image import "$T/e-plain" --name p >/dev/null
[ "$(cairn -C "$T/s4" image show --json p | jget top)" = "$(top_of plain)" ] || die "the gzipped export of plain layers has other diff ids"

step "export --format oci-archive carries a manifest.json: read as a docker-archive"
cairn image export --format oci-archive d1 "$T/d1.tar" >/dev/null
tar -xOf "$T/d1.tar" manifest.json | python3 -c '
import json, sys
m = json.load(sys.stdin); assert len(m) == 1 and m[0]["RepoTags"] == ["d1:latest"], m
assert m[0]["Config"].startswith("blobs/sha256/") and all(l.startswith("blobs/sha256/") for l in m[0]["Layers"]), m' || die "bad manifest.json"
skopeo inspect "docker-archive:$T/d1.tar" >/dev/null
skopeo copy -q "docker-archive:$T/d1.tar" "oci:$T/from-da:d1"
umoci unpack --image "$T/from-da:d1" "$T/from-da-unp" >/dev/null
tree_sig "$T/from-da-unp/rootfs" | diff -u "$T/u1.sig" - || die "the archive read as a docker-archive differs"
cairn image export --format oci-archive example.com/team/app:2.0 "$T/two.tar" >/dev/null
[ "$(tar -xOf "$T/two.tar" manifest.json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["RepoTags"])')" = "['example.com/team/app:2.0']" ] || die "RepoTags is not the image's name"
skopeo copy -q "oci-archive:$T/two.tar" "oci:$T/two-copy:x"

step "docker-archive: skopeo's, as a tar and as a directory, named by RepoTags"
# skopeo writes <diffid>.tar layer files behind legacy <id>/layer.tar symlinks.
skopeo copy -q --additional-tag example.com/team/app:latest "oci:$T/lay:example.com/team/app:1.0" "docker-archive:$T/da.tar:example.com/team/app:1.0"
tar -tvf "$T/da.tar" >"$T/da.list"
grep -q '^l.*/layer.tar -> ' "$T/da.list" || die "skopeo's archive has no layer.tar links (the test needs them)"
cairn init "$T/sd" >/dev/null
cairn -C "$T/sd" image import "$T/da.tar" >"$T/out"
grep -q "^imported example.com/team/app:1.0: .* 2 layers" "$T/out" || die "import said: $(cat "$T/out")"
[ "$(cairn -C "$T/sd" image show --json example.com/team/app:1.0 | jget top)" = "$(top_of example.com/team/app:1.0)" ] || die "the docker-archive has other snapshots than the layout"
[ "$(cairn -C "$T/sd" image show --json example.com/team/app:latest | jget manifest)" = "$(cairn -C "$T/sd" image show --json example.com/team/app:1.0 | jget manifest)" ] || die "the second RepoTag was not recorded"
rm -rf "$T/co-da"; cairn -C "$T/sd" snapshot checkout "$(top_of example.com/team/app:1.0)" "$T/co-da" >/dev/null
tree_sig "$T/co-da" | diff -u "$T/u1.sig" - || die "the docker-archive's checkout differs from umoci's unpack"
mkdir "$T/da-dir"; tar -C "$T/da-dir" -xf "$T/da.tar"
cairn init "$T/sd2" >/dev/null
cairn -C "$T/sd2" image import "$T/da-dir:example.com/team/app:latest" --jobs 1 >"$T/out"
grep -q "^imported example.com/team/app:latest: " "$T/out" || die "import said: $(cat "$T/out")"
[ "$(cairn -C "$T/sd2" image show --json example.com/team/app:latest | jget top)" = "$(top_of example.com/team/app:1.0)" ] || die "the docker-archive directory has other snapshots"
cairn init "$T/sd3" >/dev/null
cairn -C "$T/sd3" image import "$T/da-dir" --jobs 2 >/dev/null

step "docker-archive: Docker's legacy layout (<id>/layer.tar files, <id>.json), several images"
skopeo copy -q "oci:$T/lay:example.com/team/app:2.0" "docker-archive:$T/da2.tar:example.com/team/app:2.0"
mkdir "$T/legacy"; tar -C "$T/legacy" -xf "$T/da.tar"; tar -C "$T/legacy" -xf "$T/da2.tar" --overwrite
python3 - "$T/legacy" "$T/da.tar" "$T/da2.tar" <<'PY'
import json, os, subprocess, sys
lay = sys.argv[1]; ents = []
for a in sys.argv[2:]:
    ents += json.loads(subprocess.run(["tar", "-xOf", a, "manifest.json"], capture_output=True, check=True).stdout)
for e in ents:
    # The layers as docker save (before 25) lays them out: the file itself in <id>/layer.tar.
    new = []
    for d in sorted(os.listdir(lay)):
        p = os.path.join(lay, d, "layer.tar")
        if os.path.islink(p):
            t = os.path.normpath(os.path.join(lay, d, os.readlink(p)))
            if os.path.relpath(t, lay) in e["Layers"]:
                new.append((e["Layers"].index(os.path.relpath(t, lay)), d + "/layer.tar", t))
    assert len(new) == len(e["Layers"]), (new, e)
    for i, rel, t in new:
        os.unlink(os.path.join(lay, rel)); os.link(t, os.path.join(lay, rel))
    e["Layers"] = [rel for i, rel, t in sorted(new)]
for e in ents:
    for l in e["Layers"]: pass
for f in os.listdir(lay):
    if f.endswith(".tar"): os.unlink(os.path.join(lay, f))
json.dump(ents, open(os.path.join(lay, "manifest.json"), "w"))
PY
tar -C "$T/legacy" -cf "$T/legacy.tar" .
cairn init "$T/sl" >/dev/null
fails 1 "several images \\('example.com/team/app:1.0'.*'example.com/team/app:2.0'" -- cairn -C "$T/sl" image import "$T/legacy.tar"
cairn -C "$T/sl" image import "$T/legacy.tar:example.com/team/app:2.0" >/dev/null
cairn -C "$T/sl" image import "$T/legacy:example.com/team/app:1.0" >/dev/null
for n in 1.0 2.0; do
    [ "$(cairn -C "$T/sl" image show --json example.com/team/app:$n | jget top)" = "$(top_of example.com/team/app:$n)" ] || die "legacy $n has other snapshots"
done

step "docker-archive: layers as blobs (blobs/sha256, manifest.json, no oci-layout)"
# As newer podman, skopeo and Docker write; gzip layers here (skopeo's v2s2 layout).
cp -a "$T/v2s2" "$T/blobs"
python3 - "$T/blobs" <<'PY'
import json, os, sys
lay = sys.argv[1]; B = "blobs/sha256/"
idx = json.load(open(os.path.join(lay, "index.json")))
m = json.load(open(os.path.join(lay, B + idx["manifests"][0]["digest"][7:])))
json.dump([{"Config": B + m["config"]["digest"][7:], "RepoTags": ["blobs:1"],
            "Layers": [B + l["digest"][7:] for l in m["layers"]]}], open(os.path.join(lay, "manifest.json"), "w"))
os.unlink(os.path.join(lay, "index.json")); os.unlink(os.path.join(lay, "oci-layout"))
PY
tar -C "$T/blobs" -cf "$T/blobs.tar" .
cairn init "$T/sb" >/dev/null
cairn -C "$T/sb" image import "$T/blobs" >/dev/null
cairn -C "$T/sb" image import "$T/blobs.tar" --name blobs:tar >/dev/null
for n in blobs:1 blobs:tar; do
    [ "$(cairn -C "$T/sb" image show --json $n | jget top)" = "$(top_of d1)" ] || die "$n has other snapshots"
done
for l in $(layout_layers "$T/v2s2"); do cairn -C "$T/sb" blob stat "$l" >/dev/null || die "gzip layer $l not stored as it is"; done

step "docker-archive: what is refused says why"
cp -a "$T/da-dir" "$T/da-foreign"
python3 - "$T/da-foreign" <<'PY'
import json, os, sys
p = os.path.join(sys.argv[1], "manifest.json"); m = json.load(open(p))
cfg = json.load(open(os.path.join(sys.argv[1], m[0]["Config"])))
d = cfg["rootfs"]["diff_ids"][0]
m[0]["LayerSources"] = {d: {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "size": 1, "digest": d}}
json.dump(m, open(p, "w"))
PY
fails 1 "layer 0 \\(sha256:[0-9a-f]*\\) is of type .*foreign.*: a foreign \\(non-distributable\\) layer" -- cairn -C "$T/sd" image import "$T/da-foreign" --name foreign
mkdir "$T/neither"; echo '{}' >"$T/neither/index.json"
fails 1 "no oci-layout file: neither an OCI image layout nor a docker-archive \\(no manifest.json\\)" -- cairn -C "$T/sd" image import "$T/neither" --name n
cp -a "$T/da-dir" "$T/da-escape"
python3 - "$T/da-escape" <<'PY'
import json, os, sys
p = os.path.join(sys.argv[1], "manifest.json"); m = json.load(open(p))
m[0]["Layers"][0] = "../../../../../../etc/passwd"
json.dump(m, open(p, "w"))
PY
fails 1 "etc/passwd: layer: No such file" -- cairn -C "$T/sd" image import "$T/da-escape" --name escape

echo "ok"
