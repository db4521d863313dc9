#!/usr/bin/env bash
# test-layer-ends.sh: where a layer tar may end. One that ends exactly at the
# end of an entry's data (no padding, no end-of-archive blocks, as umoci
# 0.4.7's insert writes) or at a block boundary without end blocks is whole:
# it imports, its DiffID is the digest of its bytes as they are. One cut in
# an entry's header, its data or its padding is refused as truncated and
# leaves nothing. A root entry named "/" (umoci insert ... /) or "./" is the
# layer's root.
source "$(dirname "$0")/lib.sh"
LIST="$(dirname "$0")/tree-list.py"
S=$T/s
cairn init "$S" >/dev/null

# mk NAME CUT SPEC...: $T/NAME.tar of entries "f:path:size" (a file of that
# many bytes) or "d:path", then cut: "whole", "data-end" (at the end of the
# last entry's data), "block-end" (after its padding, no end blocks), or
# "data-end+N" / "data-end-N" / "header+N" (N bytes into the last header
# block, its first for a PAX entry).
mk() {
    python3 - "$T/$1.tar" "$2" "${@:3}" <<'PY'
import io, sys, tarfile
out, cut, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
b = io.BytesIO()
with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
    for spec in specs:
        kind, path, *rest = spec.split(":")
        i = tarfile.TarInfo(path)
        i.mtime, i.uid, i.gid = 1700000000, 0, 0
        if kind == "d":
            i.type, i.mode = tarfile.DIRTYPE, 0o750
            t.addfile(i)
        else:
            data = bytes((n * 7 + 3) % 251 for n in range(int(rest[0])))
            i.size, i.mode = len(data), 0o640
            t.addfile(i, io.BytesIO(data))
raw = b.getvalue()
last = tarfile.open(fileobj=io.BytesIO(raw)).getmembers()[-1]
end = last.offset_data + last.size
at = {"whole": len(raw), "data-end": end, "block-end": last.offset_data + (last.size + 511) // 512 * 512}
if cut in at:
    n = at[cut]
elif cut.startswith("data-end"):
    n = end + int(cut[8:])
else:
    n = last.offset + int(cut[7:])
open(out, "wb").write(raw[:n])
PY
}
# ok NAME: the import succeeds, with the digest of the file as its DiffID.
ok() {
    local j; j=$(cairn -C "$S" layer import "$T/$1.tar" --json) || die "$1 was refused"
    local d; d=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["diff_id"])' <<<"$j")
    [ "$d" = "sha256:$(sha "$T/$1.tar")" ] || die "$1: DiffID $d is not the digest of its bytes"
    python3 -c 'import json,sys; print(json.load(sys.stdin)["chain_id"])' <<<"$j"
}
# refused_cut NAME: the import is refused as truncated and leaves nothing behind.
refused_cut() {
    local before; before=$(cairn -C "$S" snapshot ls | wc -l)
    fails 1 "truncated" -- cairn -C "$S" layer import "$T/$1.tar"
    [ "$(cairn -C "$S" snapshot ls | wc -l)" = "$before" ] || die "$1: a snapshot was recorded"
    [ -z "$(ls -A "$S/tmp")" ] || die "$1: staging left in tmp/: $(ls -A "$S/tmp")"
}

step "a tar that ends at the end of its last entry's data imports whole"
FILES=(d:etc f:etc/a:10 d:usr f:usr/big:70000 f:usr/last:700)
mk whole whole "${FILES[@]}"
mk short data-end "${FILES[@]}"
W=$(ok whole)
C=$(ok short)
cairn -C "$S" snapshot checkout "$W" "$T/w" -q
cairn -C "$S" snapshot checkout "$C" "$T/c" -q
diff -u <(python3 "$LIST" "$T/w") <(python3 "$LIST" "$T/c") || die "the short tar applied otherwise"
cmp <(tail -c 700 "$T/short.tar") "$T/c/usr/last" || die "usr/last has the wrong bytes"
gzip -nc "$T/short.tar" >"$T/short.tar.gz"
[ "$(cairn -C "$S" layer import "$T/short.tar.gz")" = "$C" ] || die "the gzip of the short tar is another layer"
zstd -q -c "$T/short.tar" >"$T/short.tar.zst"
[ "$(cairn -C "$S" layer import "$T/short.tar.zst")" = "$C" ] || die "the zstd of the short tar is another layer"

step "other whole ends: a PAX entry, a block boundary, a directory last"
long=usr/$(printf 'n%.0s' $(seq 1 150))
mk pax data-end d:usr "f:$long:33"
ok pax >/dev/null
mk block block-end d:usr f:usr/b:1000
ok block >/dev/null
mk block512 data-end d:usr f:usr/b:1024
ok block512 >/dev/null
mk dirlast data-end f:a:5 d:z
ok dirlast >/dev/null

step "cuts in a header, in data or in the padding are refused"
mk in-pad data-end+10 d:usr f:usr/b:700
refused_cut in-pad
mk in-pad1 data-end+1 d:usr f:usr/b:700
refused_cut in-pad1
mk in-data data-end-10 d:usr f:usr/b:700
refused_cut in-data
mk in-data1 data-end-1 d:usr f:usr/b:700
refused_cut in-data1
mk in-header header+100 d:usr f:usr/b:700
refused_cut in-header
mk in-pax-header header+700 d:usr "f:$long:33"
refused_cut in-pax-header
mk in-pax-data data-end-1 d:usr "f:$long:33"
refused_cut in-pax-data
gzip -nc "$T/in-pad.tar" >"$T/in-pad.tar.gz"
fails 1 "truncated" -- cairn -C "$S" layer import "$T/in-pad.tar.gz"

step "a root entry named /, ./ or // is the root, not an absolute path"
for r in / ./ //; do
    python3 - "$T/root.tar" "$r" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.GNU_FORMAT) as t:
    i = tarfile.TarInfo("x"); i.type = tarfile.DIRTYPE; i.mode = 0o700; i.mtime = 1
    i.name = sys.argv[2]  # tarfile would strip a trailing '/', so set it after
    t.addfile(i)
    f = tarfile.TarInfo("etc/f"); f.size = 2; f.mtime = 1
    t.addfile(f, io.BytesIO(b"ok"))
PY
    [ "$(head -c 100 "$T/root.tar" | tr -d '\0')" = "$r" ] || die "the root entry is not named '$r'"
    ch=$(cairn -C "$S" layer import "$T/root.tar") || die "a root entry named '$r' was refused"
    [ "$(cat "$S/snapshots/${ch#sha256:}/etc/f")" = ok ] || die "the layer after a root entry '$r' was not applied"
done
gen_abs() {
    python3 - "$T/abs.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.GNU_FORMAT) as t:
    f = tarfile.TarInfo("x"); f.size = 2; f.name = "/etc/f"
    t.addfile(f, io.BytesIO(b"no"))
PY
}
gen_abs
fails 1 "absolute path" -- cairn -C "$S" layer import "$T/abs.tar"
echo "ok"
