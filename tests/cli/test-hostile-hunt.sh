#!/usr/bin/env bash
# test-hostile-hunt.sh: inputs made by an attacker, against the layer
# applier, the image importer and the state's own files. Each is refused
# with a clear error naming the object and the cause and leaves the state as
# it was, or (where the input is legal) is applied without changing anything
# it may not change. Every input is generated here (python3 tarfile/json).
source "$(dirname "$0")/lib.sh"
S=$T/s   # where legal layers are applied
R=$T/r   # where hostile ones are refused: it must stay empty
cairn init "$S" >/dev/null
cairn init "$R" >/dev/null
OUT=$T/outside
mkdir -p "$OUT"
echo "precious" >"$OUT/victim"

# gen NAME ENTRY...: $T/NAME.tar from python tuples, one an argument:
#   ("f", path, content[, mode[, pax]])  ("d", path[, mode])  ("l", path, target)
#   ("h", path, target[, pax])
gen() {
    local name=$1; shift
    python3 - "$T/$name.tar" "$@" <<'PY'
import ast, io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    for spec in sys.argv[2:]:
        e = ast.literal_eval(spec)
        i = tarfile.TarInfo(e[1]); i.mtime = 1700000000
        data = None
        if e[0] == "f":
            data = e[2].encode(); i.size = len(data)
            i.mode = e[3] if len(e) > 3 else 0o644
            if len(e) > 4: i.pax_headers = e[4]
        elif e[0] == "d":
            i.type = tarfile.DIRTYPE; i.mode = e[2] if len(e) > 2 else 0o755
        elif e[0] == "l":
            i.type = tarfile.SYMTYPE; i.linkname = e[2]
        elif e[0] == "h":
            i.type = tarfile.LNKTYPE; i.linkname = e[2]
            if len(e) > 3: i.pax_headers = e[3]
        t.addfile(i, io.BytesIO(data) if data is not None else None)
PY
}

# nothing_left STATE: no snapshot, no staging; the file outside untouched.
nothing_left() {
    [ -z "$(cairn -C "$1" snapshot ls)" ] || die "a snapshot was recorded in $1"
    [ -z "$(ls -A "$1/snapshots")" ] || die "snapshots/ of $1 is not empty"
    [ -z "$(ls -A "$1/tmp")" ] || die "staging left in $1/tmp: $(ls -A "$1/tmp")"
    [ "$(ls -A "$OUT")" = victim ] && [ "$(cat "$OUT/victim")" = precious ] ||
        die "something was written outside"
}
# refused PATTERN FILE: the layer import fails naming the cause; nothing is left.
refused() {
    fails 1 "$1" -- cairn -C "$R" layer import "$2"
    nothing_left "$R"
}
# applied FILE: the layer imports; prints the snapshot's directory.
applied() {
    local ch
    ch=$(cairn -C "$S" layer import "$1") || die "could not import $1"
    echo "$S/snapshots/${ch#sha256:}"
}
mode_of() { stat -c %a "$1"; }
# mklayout DIR PLAIN:BLOB:MEDIATYPE...: an OCI layout of those layers (the
# config's diff id of each is the digest of PLAIN), named "t".
mklayout() {
    python3 - "$@" <<'PY'
import hashlib, json, os, sys
out = sys.argv[1]
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def put(b):
    h = hashlib.sha256(b).hexdigest()
    open(f"{out}/blobs/sha256/{h}", "wb").write(b)
    return "sha256:" + h, len(b)
layers, diffs = [], []
for spec in sys.argv[2:]:
    plain, blob, mt = spec.split(":")
    diffs.append("sha256:" + hashlib.sha256(open(plain, "rb").read()).hexdigest())
    d, n = put(open(blob, "rb").read())
    layers.append({"mediaType": mt, "digest": d, "size": n})
cd, cs = put(json.dumps({"os": "linux", "architecture": "amd64",
                         "rootfs": {"type": "layers", "diff_ids": diffs}}).encode())
md, ms = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
    "layers": layers}).encode())
open(out + "/index.json", "w").write(json.dumps({"schemaVersion": 2, "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
     "annotations": {"org.opencontainers.image.ref.name": "t"}}]}))
open(out + "/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
}
# image_refused PATTERN LAYOUT [args]: a fresh state refuses it and keeps nothing.
image_refused() {
    local pat=$1 lay=$2 s=$T/si; shift 2
    rm -rf "$s"; cairn init "$s" >/dev/null
    fails 1 "$pat" -- timeout 20 "$CAIRN" -C "$s" image import "$lay" --platform linux/amd64 "$@"
    [ "$(cairn -C "$s" image ls | wc -l)" = 1 ] || die "an image row after refusing $lay"
    nothing_left "$s"
}

gen one '("f","hello","hi")'

step "a directory entry later replaced by a symlink does not change what the link points to"
# 'd' (0777) then 'd -> .': the directory's mode was applied to the
# snapshot's root through the link (the root of every mount of it).
gen dirroot '("d","d",0o777)' '("l","d",".")'
D=$(applied "$T/dirroot.tar")
[ "$(mode_of "$D")" = 755 ] || die "a replaced directory's mode reached the snapshot root: $(mode_of "$D")"
[ "$(readlink "$D/d")" = . ] || die "the symlink is not there"
gen dirother '("d","d",0o1777)' '("d","a",0o750)' '("l","d","a")'
D=$(applied "$T/dirother.tar")
[ "$(mode_of "$D/a")" = 750 ] || die "a replaced directory's mode reached another one: $(mode_of "$D/a")"

step "a directory named twice takes its last entry"
gen dupdir '("d","d",0o700)' '("d","d",0o755)'
D=$(applied "$T/dupdir.tar")
[ "$(mode_of "$D/d")" = 755 ] || die "the first of two entries of a directory won: $(mode_of "$D/d")"

step "a whiteout name used as a directory on the way"
gen whdir '("f",".wh.etc/passwd","x")'
refused "'\.wh\.etc/passwd': a whiteout name used as a directory" "$T/whdir.tar"
gen opqdir '("d","a")' '("f","a/.wh..wh..opq/x","")'
refused "a whiteout name used as a directory" "$T/opqdir.tar"

step "a hardlink to a whiteout the layer made"
# '.wh.x' makes x a whiteout (a 0/0 character device); 'y' hardlinked to it
# was a second whiteout, hiding a lower y, that no '.wh.y' entry asked for.
python3 - "$T/hlwh.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    t.addfile(tarfile.TarInfo(".wh.x"), io.BytesIO(b""))
    h = tarfile.TarInfo("y"); h.type = tarfile.LNKTYPE; h.linkname = "x"
    t.addfile(h)
PY
refused "'y': a hardlink to a whiteout" "$T/hlwh.tar"

step "sparse files: a few holes are kept, a tiny layer declaring terabytes is refused"
mkdir -p "$T/sp"
truncate -s 20G "$T/sp/holes"; echo end >>"$T/sp/holes"
tar -C "$T/sp" --sparse --format=pax -cf "$T/sparse.tar" holes
refused "'holes': sparse files with more than 1 GiB of holes" "$T/sparse.tar"
rm "$T/sp/holes"; truncate -s 64M "$T/sp/small"; echo end >>"$T/sp/small"
tar -C "$T/sp" --sparse --format=pax -cf "$T/sparse-ok.tar" small
D=$(applied "$T/sparse-ok.tar")
cmp -s "$D/small" "$T/sp/small" || die "a small sparse file was not applied as it is"

step "a path deep enough to fill the message names its cause"
python3 - "$T/deep.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    i = tarfile.TarInfo("a/" * 2040 + "f"); i.size = 1
    t.addfile(i, io.BytesIO(b"x"))
PY
refused "a path of [0-9]+ bytes is too long" "$T/deep.tar"

step "a setuid-root binary of a layer cannot be run by another user through the state"
# The snapshot holds the layer's files as they are (setuid root, device
# nodes): with snapshots/ open to all, any local user could run them.
python3 - "$T/suid.tar" <<'PY'
import sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    i = t.gettarinfo("/usr/bin/id", arcname="id"); i.mode = 0o4755; i.uid = i.gid = 0
    i.uname = i.gname = ""
    t.addfile(i, open("/usr/bin/id", "rb"))
PY
cairn init "$T/su" >/dev/null
SU=$(cairn -C "$T/su" layer import "$T/suid.tar")
[ "$(stat -c %a "$T/su/snapshots/${SU#sha256:}/id")" = 4755 ] || die "the setuid bit was not kept"
for d in snapshots active tmp; do
    [ "$(stat -c %a "$T/su/$d")" = 700 ] || die "$d/ of a new state is not private: $(stat -c %a "$T/su/$d")"
done
chmod 755 "$T"
# (through a shell: a plain process of that user, not setpriv's own exec)
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "$T/su/snapshots/${SU#sha256:}/id" 2>&1) &&
    rc=0 || rc=$?
chmod 700 "$T"
[ "$rc" != 0 ] && ! echo "$out" | grep -q "euid=0" || die "another user ran a layer's setuid binary: $out"

step "paths and links that held: PAX overrides, chains of links, swaps, odd names"
gen paxpath '("f","innocent","x",0o644,{"path":"../../escape"})'
refused "'\.\.' in the path" "$T/paxpath.tar"
gen paxlink '("f","t","x")' '("h","ok","t",{"linkpath":"/etc/passwd"})'
refused "hardlink to a path outside" "$T/paxlink.tar"
gen chain '("l","a","b")' '("l","b","c")' "(\"l\",\"c\",\"$OUT\")" '("f","a/victim","pwned")'
refused "resolves outside the layer" "$T/chain.tar"
gen dir2sym '("d","a")' "(\"l\",\"a\",\"$OUT\")" '("f","a/victim","pwned")'
refused "resolves outside the layer" "$T/dir2sym.tar"
gen whthrough "(\"l\",\"a\",\"$OUT\")" '("f","a/.wh.victim","")'
refused "resolves outside the layer" "$T/whthrough.tar"
gen opqthrough "(\"l\",\"a\",\"$OUT\")" '("f","a/.wh..wh..opq","")'
refused "resolves outside the layer" "$T/opqthrough.tar"
gen hlthrough "(\"l\",\"a\",\"$OUT\")" '("h","b","a/victim")'
refused "resolves outside the layer" "$T/hlthrough.tar"
gen whdotdot '("f",".wh..","")'
refused "whiteout of nothing" "$T/whdotdot.tar"
# A hardlink to a symlink links the symlink itself, not what it names.
gen hlsym "(\"l\",\"s\",\"$OUT/victim\")" '("h","s2","s")'
D=$(applied "$T/hlsym.tar")
[ -L "$D/s2" ] && [ "$(readlink "$D/s2")" = "$OUT/victim" ] || die "a hardlink to a symlink was followed"
# A symlink to the layer's own root, written through, stays inside.
gen selfloop '("l","a",".")' '("f","a/a/a/f","x")'
D=$(applied "$T/selfloop.tar")
[ "$(cat "$D/f")" = x ] || die "a file written through a link to the root is not in the layer"
# Names with a newline, setuid bits: legal, kept as they are.
gen oddname '("f","new\nline","x",0o4755)'
D=$(applied "$T/oddname.tar")
[ "$(mode_of "$D/new"$'\n'"line")" = 4755 ] || die "a setuid file lost its mode"
# Overlayfs' own metadata, in every spelling a tar can give an xattr.
for x in '"SCHILY.xattr.trusted.overlay.metacopy":""' \
         '"SCHILY.xattr.trusted.overlay.origin":"x"' \
         '"SCHILY.xattr.trusted.overlay.overlay.redirect":"/x"' \
         '"SCHILY.xattr.user.overlay.redirect":"/x"' \
         '"LIBARCHIVE.xattr.trusted%2Eoverlay%2Eredirect":"L2V0Yw=="'; do
    gen ovl "(\"f\",\"a\",\"x\",0o644,{$x})"
    refused "overlayfs xattr" "$T/ovl.tar"
done
# Bytes after the end of the tar belong to the stream: in the DiffID.
gen trail '("f","a","x")'
printf 'garbage after the end' >>"$T/trail.tar"
D=$(applied "$T/trail.tar")
[ "$(basename "$D")" = "$(sha "$T/trail.tar")" ] || die "trailing bytes are not in the DiffID"
# A PAX header giving a negative or huge size.
python3 - "$T/negsize.tar" <<'PY'
import sys, tarfile
rec = b"20 size=-999999999\n"
rec = (b"%d " % (len(rec))) + rec[3:]
h = tarfile.TarInfo("././@PaxHeader"); h.type = tarfile.XHDTYPE; h.size = len(rec)
f = tarfile.TarInfo("x"); f.size = 0
with open(sys.argv[1], "wb") as o:
    o.write(h.tobuf(tarfile.USTAR_FORMAT) + rec + b"\0" * (512 - len(rec)))
    o.write(f.tobuf(tarfile.USTAR_FORMAT) + b"\0" * 1024)
PY
refused "malformed|not a valid tar" "$T/negsize.tar"

step "image: a layer whose compression is not the one its media type names"
xz -c "$T/one.tar" >"$T/one.txz"
bzip2 -c "$T/one.tar" >"$T/one.tbz"
GZ=application/vnd.oci.image.layer.v1.tar+gzip
for b in one.txz one.tbz; do
    rm -rf "$T/lay"; mklayout "$T/lay" "$T/one.tar:$T/$b:$GZ"
    image_refused "not gzip as its media type says" "$T/lay" --jobs 2
done
gzip -nc "$T/one.tar" >"$T/one.tgz"
rm -rf "$T/lay"; mklayout "$T/lay" "$T/one.tar:$T/one.tgz:$GZ"
cairn init "$T/sgood" >/dev/null
cairn -C "$T/sgood" image import "$T/lay" --platform linux/amd64 --jobs 2 >/dev/null ||
    die "a gzip layer of a gzip media type was refused"

step "image: an index naming the same nested index many times at each level"
# 42 x 42 x 42 paths to one manifest: cheap to write, a quarter of a
# million descriptors (and as many reads of the nested indexes) to walk.
python3 - "$T/fan" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
os.makedirs(d + "/blobs/sha256")
def put(b):
    h = hashlib.sha256(b).hexdigest()
    open(f"{d}/blobs/sha256/{h}", "wb").write(b)
    return {"digest": "sha256:" + h, "size": len(b)}
cfg = put(json.dumps({"os": "linux", "architecture": "amd64",
                      "rootfs": {"type": "layers", "diff_ids": []}}).encode())
cfg["mediaType"] = "application/vnd.oci.image.config.v1+json"
desc = put(json.dumps({"schemaVersion": 2, "config": cfg, "layers": []}).encode())
desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
for level in range(2):
    desc = put(json.dumps({"schemaVersion": 2, "manifests": [desc] * 42}).encode())
    desc["mediaType"] = "application/vnd.oci.image.index.v1+json"
desc["annotations"] = {"org.opencontainers.image.ref.name": "fan"}
json.dump({"schemaVersion": 2, "manifests": [desc] * 42}, open(d + "/index.json", "w"))
open(d + "/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
image_refused "fan: the index and the indexes it names hold more than [0-9]+ descriptors" "$T/fan"

step "image: digests used as paths, missing blobs, mismatched diff ids"
rm -rf "$T/lay"; mklayout "$T/lay" "$T/one.tar:$T/one.tar:application/vnd.oci.image.layer.v1.tar"
python3 - "$T/lay" "$T/lay2" <<'PY'
import json, shutil, sys
src, dst = sys.argv[1:]
shutil.copytree(src, dst)
idx = json.load(open(dst + "/index.json"))
idx["manifests"][0]["digest"] = "sha256:../../../../etc/passwd"
json.dump(idx, open(dst + "/index.json", "w"))
PY
image_refused "manifests\[0\]: digest 'sha256:\.\./.*not a lowercase hex digit" "$T/lay2"
rm -rf "$T/lay2"; cp -a "$T/lay" "$T/lay2"
python3 - "$T/lay2" <<'PY'
import json, sys
d = sys.argv[1]
idx = json.load(open(d + "/index.json"))
idx["manifests"][0]["digest"] = "sha512:" + "0" * 128
json.dump(idx, open(d + "/index.json", "w"))
PY
image_refused "algorithm 'sha512' is not supported" "$T/lay2"
rm -rf "$T/lay2"; cp -a "$T/lay" "$T/lay2"
python3 - "$T/lay2" <<'PY'
import json, sys
d = sys.argv[1]
idx = json.load(open(d + "/index.json"))
idx["manifests"][0]["size"] = -1
json.dump(idx, open(d + "/index.json", "w"))
PY
image_refused '"size" is not a non-negative integer' "$T/lay2"
# The config's diff id is not the layer's.
rm -rf "$T/lay2"; gen other '("f","other","x")'
mklayout "$T/lay2" "$T/other.tar:$T/one.tar:application/vnd.oci.image.layer.v1.tar"
image_refused "DiffID is sha256:.*expected" "$T/lay2"
# Documents that held: too few diff ids, a missing config, deep nesting,
# numbers too large, a wrong type.
rm -rf "$T/lay2"; cp -a "$T/lay" "$T/lay2"
python3 - "$T/lay2" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
def put(b):
    h = hashlib.sha256(b).hexdigest()
    open(f"{d}/blobs/sha256/{h}", "wb").write(b)
    return "sha256:" + h, len(b)
idx = json.load(open(d + "/index.json"))
md = idx["manifests"][0]["digest"]
man = json.load(open(d + "/blobs/sha256/" + md[7:]))
cfg = json.load(open(d + "/blobs/sha256/" + man["config"]["digest"][7:]))
cfg["rootfs"]["diff_ids"] = []
man["config"]["digest"], man["config"]["size"] = put(json.dumps(cfg).encode())
idx["manifests"][0]["digest"], idx["manifests"][0]["size"] = put(json.dumps(man).encode())
json.dump(idx, open(d + "/index.json", "w"))
PY
image_refused "0 diff ids for the 1 layers" "$T/lay2"
rm -rf "$T/lay2"; cp -a "$T/lay" "$T/lay2"
python3 - "$T/lay2" <<'PY'
import json, os, sys
d = sys.argv[1]
idx = json.load(open(d + "/index.json"))
man = json.load(open(d + "/blobs/sha256/" + idx["manifests"][0]["digest"][7:]))
os.unlink(d + "/blobs/sha256/" + man["config"]["digest"][7:])
PY
image_refused "config sha256:[0-9a-f]+: missing from" "$T/lay2"
for doc in '{"schemaVersion":2,"manifests":'"$(printf '[%.0s' $(seq 5000))" \
           '{"schemaVersion":2,"manifests":[{"digest":"sha256:00","size":1e400}]}' \
           '{"schemaVersion":2,"manifests":[{"size":99999999999999999999999}]}' \
           '{"schemaVersion":"2","manifests":[]}'; do
    rm -rf "$T/lay2"; cp -a "$T/lay" "$T/lay2"
    printf '%s' "$doc" >"$T/lay2/index.json"
    image_refused "index.json: (malformed JSON|\"schemaVersion\" is not 2)" "$T/lay2"
done

# A layer blob that is a FIFO (opening it used to block for ever).
rm -rf "$T/lay2"; cp -a "$T/lay" "$T/lay2"
LB=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]+"/index.json")); print(m["manifests"][0]["digest"])' "$T/lay2")
L=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"][7:])' "$T/lay2/blobs/sha256/${LB#sha256:}")
rm "$T/lay2/blobs/sha256/$L"; mkfifo "$T/lay2/blobs/sha256/$L"
image_refused "blobs/sha256: not a regular file" "$T/lay2"
rm -rf "$T/lay2"; cp -a "$T/lay" "$T/lay2"
rm "$T/lay2/index.json"; mkfifo "$T/lay2/index.json"
image_refused "lay2/index.json: not a regular file" "$T/lay2"

step "image: an oci-archive with '..' or symlink members, or cut short"
( cd "$T/lay" && tar -cf "$T/arc.tar" oci-layout index.json blobs )
python3 - "$T/arc.tar" "$T/arcevil.tar" <<'PY'
import io, sys, tarfile
src, dst = sys.argv[1:]
with tarfile.open(src) as s, tarfile.open(dst, "w") as d:
    for m in s.getmembers():
        if m.name == "index.json":
            # the real index under a '..' name, a symlink in its place
            m2 = tarfile.TarInfo("../index.json"); m2.size = m.size
            d.addfile(m2, s.extractfile(m))
            l = tarfile.TarInfo("index.json"); l.type = tarfile.SYMTYPE; l.linkname = "/etc/passwd"
            d.addfile(l)
        else:
            d.addfile(m, s.extractfile(m) if m.isfile() else None)
PY
image_refused "no index.json in the archive" "$T/arcevil.tar"
# Cut in the middle of the last member's data.
CUT=$(python3 -c 'import sys,tarfile; m=tarfile.open(sys.argv[1]).getmembers()[-1]; print(m.offset_data + m.size // 2)' "$T/arc.tar")
head -c "$CUT" "$T/arc.tar" >"$T/arcshort.tar"
image_refused "truncated|Truncated|not found on a second read|missing" "$T/arcshort.tar"

# An "archive" whose first bytes say lrzip: libarchive ran the lrzip
# program found on PATH to decompress it (an attacker's bytes choosing what
# cairn executes). Only in-process decompressors are used now.
mkdir -p "$T/bin"
printf '#!/bin/sh\ntouch "%s/ran"\ncat\n' "$T" >"$T/bin/lrzip"
chmod +x "$T/bin/lrzip"
printf 'LRZI\0\006%0100d' 0 >"$T/fake.lrz"
PATH="$T/bin:$PATH" image_refused "fake.lrz: Unrecognized archive format" "$T/fake.lrz"
[ ! -e "$T/ran" ] || die "importing an archive ran an external program"
gzip -c "$T/arc.tar" >"$T/arc.tar.gz"
cairn init "$T/sgz" >/dev/null
cairn -C "$T/sgz" image import "$T/arc.tar.gz" --platform linux/amd64 >/dev/null ||
    die "a gzip-compressed oci-archive was refused"

step "state files: FIFOs, symlinks, odd bytes"
# Each used to hang (a FIFO) or must be refused by name; nothing is changed.
st_refused() {
    local pat=$1 s=$2
    fails 1 "$pat" -- timeout 20 "$CAIRN" -C "$s" info
}
cairn init "$T/f1" >/dev/null; rm "$T/f1/cairn-state"; mkfifo "$T/f1/cairn-state"
st_refused "f1/cairn-state: not a regular file" "$T/f1"
cairn init "$T/f2" >/dev/null; mkfifo "$T/f2/lowers"
st_refused "f2/lowers: not a regular file" "$T/f2"
cairn init "$T/f3" >/dev/null; mkfifo "$T/f3/db/0123456789abcdef0123456789abcdef.sqlite"
st_refused "f3/db/0123456789abcdef0123456789abcdef.sqlite: not a regular file" "$T/f3"
cairn init "$T/f4" >/dev/null
ln -s "$T/f1" "$T/f4/db/0123456789abcdef0123456789abcdef.sqlite"
st_refused "f4/db/0123456789abcdef0123456789abcdef.sqlite: not a regular file" "$T/f4"
cairn init "$T/f5" >/dev/null; ln -sf /etc/hostname "$T/f5/lowers"
st_refused "f5/lowers: Too many levels of symbolic links" "$T/f5"
cairn init "$T/f6" >/dev/null; mv "$T/f6/cairn-state" "$T/f6/real"; ln -s real "$T/f6/cairn-state"
st_refused "f6/cairn-state: Too many levels of symbolic links" "$T/f6"
cairn init "$T/f7" >/dev/null; head -c 10000000 /dev/zero >"$T/f7/lowers"
st_refused "f7/lowers: File too large" "$T/f7"
cairn init "$T/f8" >/dev/null; printf '0123456789abcdef0123456789abcdef lowers\n' >"$T/f8/lowers"
st_refused "f8/lowers:1: expected '<state-id> <absolute path>'" "$T/f8"
cairn init "$T/f9" >/dev/null
sed -i 's/^id=.*/id=0123456789abcdef\x000123456789abcdef/' "$T/f9/cairn-state"
st_refused "f9/cairn-state: corrupt identity file" "$T/f9"
# tmp/ a symlink out of the state: layers were staged (applied) there, and
# the sweep of an earlier boot's staging deleted there.
cairn init "$T/f11" >/dev/null; rm -rf "$T/f11/tmp"; ln -s "$OUT" "$T/f11/tmp"
fails 1 "f11/tmp: a symlink" -- \
    cairn -C "$T/f11" layer import "$T/one.tar"
[ "$(ls -A "$OUT")" = victim ] || die "a layer was staged outside the state: $(ls -A "$OUT")"
# A database row whose chain id or parent is not a digest (a hostile or
# damaged lower's database): it named a path out of snapshots/, which the
# mounts used as a lowerdir and a checkout hardlinked from.
cairn init "$T/f12" >/dev/null
P=$(cairn -C "$T/f12" layer import "$T/one.tar")
CH=$(cairn -C "$T/f12" layer import "$T/dirroot.tar" --parent "$P")
DB=$(ls "$T"/f12/db/*.sqlite)
sqlite3 "$DB" "INSERT INTO snapshots(chain_id, parent, diff_id, size, created)
               VALUES ('sha256:../../../../../../../..$OUT', NULL, 'x', 0, 0);
               UPDATE snapshots SET parent = 'sha256:../../../../../../../..$OUT'
               WHERE chain_id = '$CH';"
fails 1 "snapshot $CH \(in .*\): its parent 'sha256:\.\./.*' is not a digest" -- \
    cairn -C "$T/f12" snapshot mounts "$CH"
fails 1 "its parent 'sha256:\.\./.*' is not a digest" -- \
    cairn -C "$T/f12" snapshot checkout "$CH" "$T/co12"
[ ! -e "$T/co12/victim" ] || die "a checkout linked a file from outside the state"
rc=0; out=$(cairn -C "$T/f12" fsck 2>&1) || rc=$?
[ "$rc" = 3 ] && echo "$out" | grep -q "$CH: corrupt: its parent 'sha256:\.\./.*' is not a digest" ||
    die "fsck did not report the malformed parent (exit $rc): $out"
# A lowers file naming the state itself: it is not frozen, so not a lower.
cairn init "$T/f10" >/dev/null
printf '%s %s\n' "$(cairn -C "$T/f10" info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')" "$T/f10" >"$T/f10/lowers"
st_refused "is not frozen" "$T/f10"
echo "ok"
