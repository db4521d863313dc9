#!/usr/bin/env bash
# test-snapshot.sh: prepare, commit, export, import, stat, ls, rm, fsck of
# snapshots through the command.
source "$(dirname "$0")/lib.sh"
S1=$T/s1 S2=$T/s2
cairn init "$S1" >/dev/null
cairn init "$S2" >/dev/null

# fill DIR: the same tree, with fixed times, wherever it is made.
fill() {
    mkdir -p "$1/usr/bin" "$1/etc/conf.d" "$1/long/$(printf 'n%.0s' $(seq 1 120))"
    printf 'hello\n' >"$1/etc/hello"
    printf 'x%.0s' $(seq 1 5000) >"$1/usr/bin/tool"
    chmod 755 "$1/usr/bin/tool"
    ln "$1/usr/bin/tool" "$1/usr/bin/tool2"
    ln -s ../etc/hello "$1/usr/hello"
    echo deep >"$1/long/$(printf 'n%.0s' $(seq 1 120))/$(printf 'f%.0s' $(seq 1 200))"
    setfattr -n user.note -v "a note" "$1/etc/hello"
    chown 42:43 "$1/etc/conf.d"
    echo utf8 >"$1/etc/café"                      # a PAX path record in UTF-8
    echo bytes >"$1/etc/$(printf 'lat\xe9n')"     # not UTF-8: raw bytes (hdrcharset=BINARY)
    find "$1" -exec touch -h -d '2024-01-02 03:04:05' {} +
}

step "prepare over nothing, write, commit"
A=$(cairn -C "$S1" snapshot prepare --label first)
[ ${#A} -eq 32 ] || die "an active id is 32 hex digits: $A"
cairn -C "$S1" snapshot ls --active --json | python3 -c '
import json, sys
a = json.load(sys.stdin)
assert len(a) == 1 and a[0]["kind"] == "active" and a[0]["label"] == "first", a'
fill "$S1/active/$A/fs"
cairn -C "$S1" snapshot commit "$A" --json >"$T/c1.json"
CH=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chain_id"])' "$T/c1.json")
DIFF=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["diff_id"])' "$T/c1.json")
[ "$CH" = "$DIFF" ] || die "a base's chain id is its DiffID"
[ -d "$S1/snapshots/${CH#sha256:}" ] || die "no snapshots/<hex> directory"
[ ! -e "$S1/active/$A" ] || die "the active snapshot is still there after commit"
[ -z "$(cairn -C "$S1" snapshot ls --active)" ] || die "the active row is still there"

step "the export's digest is the DiffID; import elsewhere gives the same chain id"
cairn -C "$S1" layer export "$CH" -o "$T/l.tar" >/dev/null
[ "sha256:$(sha "$T/l.tar")" = "$DIFF" ] || die "the exported tar's digest is not the DiffID"
cairn -C "$S1" layer export "$CH" >"$T/l2.tar"
cmp -s "$T/l.tar" "$T/l2.tar" || die "two exports differ"
tar -tvf "$T/l.tar" >"$T/l.list"
grep -q 'usr/bin/tool2 link to usr/bin/tool' "$T/l.list" || die "no tar hardlink"
grep -q 'etc/café' "$T/l.list" || die "the UTF-8 name is not in the tar"
cairn -C "$S1" layer export "$CH" --compression gzip -o "$T/l.tgz" --json >"$T/e.json"
python3 -c '
import json, sys, hashlib
d = json.load(open(sys.argv[1]))
b = open(sys.argv[2], "rb").read()
assert d["digest"] == "sha256:" + hashlib.sha256(b).hexdigest(), d
assert d["size"] == len(b), d' "$T/e.json" "$T/l.tgz"
[ "$(cairn -C "$S2" layer import "$T/l.tgz")" = "$CH" ] || die "the round trip changed the chain id"
cairn -C "$S2" layer export "$CH" -o "$T/back.tar" >/dev/null
cmp -s "$T/l.tar" "$T/back.tar" || die "the re-export of the imported layer differs"
[ "$(cat "$S2/snapshots/${CH#sha256:}/etc/$(printf 'lat\xe9n')")" = bytes ] || die "the non-UTF-8 name did not round-trip"
[ "$(cairn -C "$S2" layer import "$T/l.tar" --diff-id "$DIFF")" = "$CH" ] || die "a second import is not a no-op"

step "the same diff committed in another state gets the same name"
S3=$T/s3
cairn init "$S3" >/dev/null
B=$(cairn -C "$S3" snapshot prepare)
fill "$S3/active/$B/fs"
[ "$(cairn -C "$S3" snapshot commit "$B")" = "$CH" ] || die "the same diff got another name"
B=$(cairn -C "$S3" snapshot prepare)
fill "$S3/active/$B/fs"
[ "$(cairn -C "$S3" snapshot commit "$B")" = "$CH" ] || die "committing it again changed its name"
[ "$(cairn -C "$S3" snapshot ls | wc -l)" = 1 ] || die "two rows for one snapshot"
[ -z "$(ls -A "$S3/active")" ] || die "the duplicate's active directory was left"

step "a child: its chain id from the parent's, stat and walk"
C=$(cairn -C "$S1" snapshot prepare "$CH")
echo child >"$S1/active/$C/fs/child"
CH2=$(cairn -C "$S1" snapshot commit "$C")
D2=$(cairn -C "$S1" snapshot stat "$CH2" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["diff_id"])')
[ "$CH2" = "sha256:$(printf '%s %s' "$CH" "$D2" | sha256sum | cut -d' ' -f1)" ] || die "chain id is not sha256(parent + ' ' + diff)"
cairn -C "$S1" snapshot stat "$CH2" --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert s["parent"] == sys.argv[1] and s["size"] == 6 and s["created"] > 0, s' "$CH"
cairn -C "$S1" snapshot stat "$CH2" | grep -c "^parent *$CH" >/dev/null || die "stat does not show the parent"
cairn -C "$S1" layer export "$CH2" -o "$T/child.tar" >/dev/null
[ "$(cairn -C "$S2" layer import "$T/child.tar" --parent "$CH")" = "$CH2" ] || die "the child's round trip changed its name"
cairn -C "$S1" snapshot ls --json | python3 -c '
import json, sys
l = json.load(sys.stdin)
assert [s["chain_id"] for s in l] == sorted(s["chain_id"] for s in l), l
assert len(l) == 2, l'

step "remove: not a parent; active ones; views"
fails 1 "is the parent of snapshot $CH2" -- cairn -C "$S1" snapshot rm "$CH"
V=$(cairn -C "$S1" snapshot view "$CH2" --label look)
fails 1 "is the parent of active snapshot $V" -- cairn -C "$S1" snapshot rm "$CH2"
cairn -C "$S1" snapshot rm "$V"
[ ! -e "$S1/active/$V" ] || die "the view's directory is left"
cairn -C "$S1" snapshot rm "$CH2" "$CH"
[ -z "$(cairn -C "$S1" snapshot ls)" ] || die "rows left after rm"
[ -z "$(ls -A "$S1/snapshots")" ] || die "directories left after rm"
fails 1 "not there" -- cairn -C "$S1" snapshot rm "$CH"
fails 1 "neither a chain id nor an active id" -- cairn -C "$S1" snapshot rm bogus
fails 1 "not there" -- cairn -C "$S1" snapshot prepare "$CH"
fails 1 "is a view" -- cairn -C "$S2" snapshot commit "$(cairn -C "$S2" snapshot view "$CH")"

step "fsck: a changed file, a missing directory, an unreferenced one"
cairn -C "$S2" fsck >/dev/null || die "fsck of a clean state fails"
P2=$S2/snapshots/${CH#sha256:}
echo tampered >>"$P2/etc/hello"
touch -d '2024-01-02 03:04:05' "$P2/etc/hello"
fails 3 "" -- cairn -C "$S2" fsck
fsck_json() { cairn -C "$1" fsck --json 2>/dev/null || true; }
fsck_json "$S2" | grep -c '"corrupt"' >/dev/null || die "fsck does not report the changed file"
cairn -C "$S2" fsck --no-hash >/dev/null || die "fsck --no-hash rehashed"
cairn -C "$S2" snapshot rm "$CH2"
cairn -C "$S2" fsck --repair >/dev/null || true
[ -z "$(cairn -C "$S2" snapshot ls)" ] || die "repair kept the corrupt snapshot's row"
ls "$S2/quarantine" | grep -c snapshot >/dev/null || die "repair did not quarantine the corrupt snapshot"
cairn -C "$S2" fsck >/dev/null || die "fsck after repair still finds problems"
mkdir "$S3/snapshots/$(printf '%064d' 5)"
fsck_json "$S3" | grep -c '"unreferenced"' >/dev/null || die "an unreferenced directory is not reported"
rmdir "$S3/snapshots/$(printf '%064d' 5)"
mv "$S3/snapshots/${CH#sha256:}" "$T/gone"
fsck_json "$S3" | grep -c '"missing"' >/dev/null || die "a missing directory is not reported"

step "fsck: active snapshots without their directory, directories without a row"
X=$(cairn -C "$S3" snapshot prepare)
rm -rf "$S3/active/$X"
mkdir "$S3/active/0123456789abcdef0123456789abcdef"
fsck_json "$S3" >"$T/fa.json"
python3 - "$T/fa.json" "$X" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
got = {(p["kind"], p["name"], p["problem"]) for p in d["problems"]}
assert ("active", sys.argv[2], "missing") in got, got
assert ("active", "0123456789abcdef0123456789abcdef", "unreferenced") in got, got
PY
cairn -C "$S3" snapshot rm "$X"

step "a directory already under a snapshot's name is proven before commit trusts it"
# An orphan snapshots/<hex> (no row) with other files: commit quarantines it
# and keeps the user's files; a good leftover (the same diff) is kept.
S4=$T/s4
cairn init "$S4" >/dev/null
X=$(cairn -C "$S4" snapshot prepare)
fill "$S4/active/$X/fs"
mkdir -p "$S4/snapshots/${CH#sha256:}"; echo foreign >"$S4/snapshots/${CH#sha256:}/planted"
[ "$(cairn -C "$S4" snapshot commit "$X")" = "$CH" ] || die "commit over a foreign directory named another chain"
[ ! -e "$S4/snapshots/${CH#sha256:}/planted" ] || die "the foreign directory was kept as the snapshot"
ls "$S4/quarantine" | grep -q "^snapshot\.${CH#sha256:}\." || die "the foreign directory was not quarantined"
rm -rf "$T/co4"; cairn -C "$S4" snapshot checkout "$CH" "$T/co4"
[ "$(cat "$T/co4/etc/hello")" = hello ] || die "the user's files are not in the snapshot"
cairn -C "$S4" fsck >/dev/null || die "fsck after a commit over a foreign directory"
# The same for a layer import over a planted file (publish, not commit).
cairn -C "$S4" layer export "$CH" -o "$T/l4.tar"
cairn -C "$S4" snapshot rm "$CH" >/dev/null
printf 'planted' >"$S4/snapshots/${CH#sha256:}"
[ "$(cairn -C "$S4" layer import "$T/l4.tar")" = "$CH" ] || die "import over a planted file"
[ -d "$S4/snapshots/${CH#sha256:}" ] || die "the planted file was kept as the snapshot"
cairn -C "$S4" fsck >/dev/null || die "fsck after an import over a planted file"
# A good leftover: the same diff, named by no row, is kept as it is.
cairn -C "$S4" snapshot rm "$CH" >/dev/null
rm -rf "$S4/quarantine"/*
X=$(cairn -C "$S4" snapshot prepare)
fill "$S4/active/$X/fs"
cp -a "$S4/active/$X/fs" "$S4/snapshots/${CH#sha256:}"
ino=$(stat -c %i "$S4/snapshots/${CH#sha256:}")
[ "$(cairn -C "$S4" snapshot commit "$X")" = "$CH" ] || die "commit over a good leftover"
[ "$(stat -c %i "$S4/snapshots/${CH#sha256:}")" = "$ino" ] || die "a good leftover was replaced"
[ -z "$(ls "$S4/quarantine")" ] || die "a good leftover was quarantined"
cairn -C "$S4" fsck >/dev/null || die "fsck after a commit over a good leftover"

step "usage errors and --help"
cairn snapshot prepare --help | grep -c "usage: cairn snapshot prepare" >/dev/null || die "no help"
fails 2 "expected" -- cairn -C "$S1" snapshot commit
fails 2 "compression" -- cairn -C "$S1" layer export "$CH" --compression lz4 -o "$T/x"
echo "ok"
