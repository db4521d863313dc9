#!/usr/bin/env bash
# test-layer-hostile.sh: hostile layer tarballs are refused with a clear
# error, write nothing outside their snapshot, and leave the state as it was
# (no snapshot, no row, no staging left in tmp/).
source "$(dirname "$0")/lib.sh"
S=$T/s
cairn init "$S" >/dev/null
OUT=$T/outside
mkdir -p "$OUT"
echo "precious" >"$OUT/victim"

# gen NAME SPEC...: write $T/NAME.tar from entries "kind:path[:arg]":
# f:path:content  d:path  l:path:target (symlink)  h:path:target (hardlink)
# c:path:major,minor (char device)  p:path:size (regular, header says size)
gen() {
    local name=$1; shift
    python3 - "$T/$name.tar" "$@" <<'PY'
import io, sys, tarfile
out, specs = sys.argv[1], sys.argv[2:]
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    for spec in specs:
        kind, path, *rest = spec.split(":", 2)
        arg = rest[0] if rest else ""
        i = tarfile.TarInfo(path)
        i.mtime = 1700000000
        data = None
        if kind == "f":
            data = arg.encode(); i.size = len(data)
        elif kind == "d":
            i.type = tarfile.DIRTYPE; i.mode = 0o755
        elif kind == "l":
            i.type = tarfile.SYMTYPE; i.linkname = arg
        elif kind == "h":
            i.type = tarfile.LNKTYPE; i.linkname = arg
        elif kind == "c":
            i.type = tarfile.CHRTYPE; i.devmajor, i.devminor = map(int, arg.split(","))
        t.addfile(i, io.BytesIO(data) if data is not None else None)
PY
}

# refused CODE-PATTERN FILE [import args]: the import fails with the pattern
# and leaves nothing behind.
refused() {
    local pat=$1 file=$2; shift 2
    fails 1 "$pat" -- cairn -C "$S" layer import "$file" "$@"
    [ -z "$(cairn -C "$S" snapshot ls)" ] || die "a snapshot was recorded after refusing $file"
    [ -z "$(ls -A "$S/snapshots")" ] || die "snapshots/ is not empty after refusing $file"
    [ -z "$(ls -A "$S/tmp")" ] || die "staging left in tmp/ after refusing $file: $(ls -A "$S/tmp")"
    [ "$(ls -A "$OUT")" = victim ] || die "something was written outside: $(ls -A "$OUT")"
    [ "$(cat "$OUT/victim")" = precious ] || die "the file outside was overwritten"
    [ ! -e /tmp/cairn-evil ] || { rm -f /tmp/cairn-evil; die "a file escaped to /tmp"; }
}

step "paths with .. or absolute paths"
gen dotdot "f:../../../../..$OUT/victim:pwned" "f:ok:x"
refused "'\.\.' in the path" "$T/dotdot.tar"
gen dotdot2 "d:a" "f:a/../../escape:pwned"
refused "'\.\.' in the path" "$T/dotdot2.tar"
gen absolute "f:/tmp/cairn-evil:pwned"
refused "absolute path" "$T/absolute.tar"

step "a symlink pointing out, then an entry written through it"
gen symout "l:out:$OUT" "f:out/victim:pwned"
refused "resolves outside the layer" "$T/symout.tar"
gen symrel "d:a" "l:a/up:../../../../../../../../..$OUT" "f:a/up/victim:pwned"
refused "resolves outside the layer" "$T/symrel.tar"
gen symdeep "l:x:/" "f:x/tmp/cairn-evil:pwned"
refused "resolves outside the layer" "$T/symdeep.tar"

step "a hardlink to a path outside the layer, or to nothing in it"
gen hlout "h:passwd:../../../../../../etc/passwd"
refused "hardlink to a path outside" "$T/hlout.tar"
gen hlabs "h:passwd:/etc/passwd"
refused "hardlink to a path outside" "$T/hlabs.tar"
gen hlmissing "h:passwd:etc/passwd"
refused "not in the layer" "$T/hlmissing.tar"
gen hlsym "l:s:$OUT" "h:s2:s/victim"
refused "resolves outside the layer" "$T/hlsym.tar"

step "a symlink later replaced by a directory"
gen symdir "l:d:$OUT" "d:d" "f:d/victim:pwned"
refused "directory over a symlink" "$T/symdir.tar"

step "a whiteout in disguise, an overlayfs xattr"
gen wh00 "c:x:0,0"
refused "whiteout in disguise" "$T/wh00.tar"
python3 - "$T/ovlx.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    i = tarfile.TarInfo("d"); i.type = tarfile.DIRTYPE
    i.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc"}
    t.addfile(i)
PY
refused "overlayfs xattr" "$T/ovlx.tar"

step "device nodes when not root"
gen dev "c:null:1,3"
chmod 755 "$T"; chown -R 65534:65534 "$S" "$T/dev.tar"
# Another user runs a copy of the command: the checkout may be private (under /root).
cp "$CAIRN" "$T/cairn"; chmod 755 "$T/cairn"
nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
if nobody "$T/cairn" -C "$S" info >/dev/null 2>&1; then
    fails 1 "device node" -- nobody "$T/cairn" -C "$S" layer import "$T/dev.tar"
else
    echo "skipped: another user cannot use a state here: $(nobody "$T/cairn" -C "$S" info 2>&1 | head -1)"
fi
chown -R 0:0 "$S"; chmod 700 "$T"
[ -z "$(ls -A "$S/snapshots" "$S/tmp" | grep -v :)" ] || die "leftovers after a refused device node"
D=$(cairn -C "$S" layer import "$T/dev.tar")
[ -c "$S/snapshots/${D#sha256:}/null" ] || die "root could not import a device node"
cairn -C "$S" snapshot rm "$D"

step "huge or malformed headers"
python3 - "$T/longname.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    i = tarfile.TarInfo("d/" + "x" * 300); i.size = 1
    t.addfile(i, io.BytesIO(b"x"))
PY
refused "longer than 255" "$T/longname.tar"
python3 - "$T/longpath.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    i = tarfile.TarInfo("/".join(["d" * 200] * 30)); i.size = 1
    t.addfile(i, io.BytesIO(b"x"))
PY
refused "path too long" "$T/longpath.tar"
# A PAX record claiming a gigantic length.
python3 - "$T/hugepax.tar" <<'PY'
import sys, tarfile
rec = b"999999999999 path=x\n"
h = tarfile.TarInfo("PaxHeaders/x"); h.type = tarfile.XHDTYPE; h.size = len(rec)
hdr = h.tobuf(tarfile.USTAR_FORMAT)
f = tarfile.TarInfo("x"); f.size = 0
with open(sys.argv[1], "wb") as o:
    o.write(hdr + rec + b"\0" * (512 - len(rec)) + f.tobuf(tarfile.USTAR_FORMAT) + b"\0" * 1024)
PY
refused "not a valid tar|invalid|malformed" "$T/hugepax.tar"
# A header whose checksum is wrong, after a good entry.
gen good "f:a:aaaa" "f:b:bbbb"
python3 - "$T/good.tar" "$T/badsum.tar" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
# the second header follows the first (512) and its data (512)
b[1024 + 148:1024 + 156] = b"0000000\0"
open(sys.argv[2], "wb").write(b)
PY
refused "not a valid tar|checksum" "$T/badsum.tar"
head -c 700 /dev/urandom >"$T/garbage.tar"
refused "not a valid tar|Unrecognized" "$T/garbage.tar"

step "a truncated or corrupt gzip stream, a truncated tar"
head -c 2000000 /dev/urandom >"$T/big"
tar -C "$T" -cf "$T/bigl.tar" big
gzip -c "$T/bigl.tar" >"$T/bigl.tgz"
head -c 1000000 "$T/bigl.tgz" >"$T/trunc.tgz"
refused "truncated" "$T/trunc.tgz"
python3 - "$T/bigl.tgz" "$T/corrupt.tgz" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
for i in range(100000, 100400):
    b[i] ^= 0x5a
open(sys.argv[2], "wb").write(b)
PY
refused "corrupt|truncated" "$T/corrupt.tgz"
head -c 1500000 "$T/bigl.tar" >"$T/trunc.tar"
refused "truncated" "$T/trunc.tar"
: >"$T/empty.tar"
refused "empty" "$T/empty.tar"

step "a layer whose digest does not match the expected one"
WRONG="sha256:$(printf '%064d' 7)"
refused "DiffID is sha256:.*expected $WRONG" "$T/bigl.tar" --diff-id "$WRONG"
fails 1 "digest" -- cairn -C "$S" layer import "$T/bigl.tar" --diff-id "sha256:nothex"
fails 1 "parent snapshot .* is not there" -- cairn -C "$S" layer import "$T/bigl.tar" --parent "$WRONG"

step "the good layer still imports, with the expected digest and compressed"
DIFF="sha256:$(sha "$T/bigl.tar")"
CH=$(cairn -C "$S" layer import "$T/bigl.tgz" --diff-id "$DIFF")
[ "$CH" = "$DIFF" ] || die "a base's chain id is not its DiffID: $CH"
cmp -s "$T/big" "$S/snapshots/${CH#sha256:}/big" || die "the imported file differs"
zstd -q -c "$T/bigl.tar" >"$T/bigl.tzst"
cairn init "$T/s2" >/dev/null
[ "$(cairn -C "$T/s2" layer import "$T/bigl.tzst")" = "$CH" ] || die "zstd gives another chain id"
echo "ok"
