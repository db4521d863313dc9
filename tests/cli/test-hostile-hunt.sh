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
echo "ok"
