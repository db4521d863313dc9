#!/usr/bin/env bash
# The content store through the command: put (file, stdin, many), get, ls,
# stat, labels, rm, and JSON output that scripts can read.
source "$(dirname "$0")/lib.sh"
cairn init "$T/s" >/dev/null
export CAIRN_STATE=$T/s

step "put a file and stdin"
printf 'hello\n' >"$T/hello"
d=$(cairn blob put "$T/hello")
[ "$d" = "sha256:$(sha "$T/hello")" ] || die "digest $d"
[ "$(printf 'hello\n' | cairn blob put -)" = "$d" ] || die "stdin put differs"
[ "$(printf 'hello\n' | cairn blob put)" = "$d" ] || die "default stdin put differs"
[ -f "$T/s/blobs/sha256/${d#sha256:}" ] || die "no file in blobs/sha256"

step "get writes the bytes, -o writes a file, --verify checks them"
cairn blob get "$d" | cmp -s - "$T/hello" || die "get differs"
cairn blob get "$d" -o "$T/out" --verify
cmp -s "$T/out" "$T/hello" || die "get -o differs"

step "many files go in one batch"
mkdir "$T/many"
for i in $(seq 1 300); do echo "file $i" >"$T/many/f$i"; done
echo "file 1" >"$T/many/dup"   # the same bytes twice
cairn blob put "$T/many"/* >"$T/put.out"
[ "$(wc -l <"$T/put.out")" = 301 ] || die "put printed $(wc -l <"$T/put.out") lines"
grep -q "sha256:$(sha "$T/many/f7")  $T/many/f7" "$T/put.out" || die "put output lacks f7"
n=$(cairn blob ls --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" = 301 ] || die "ls shows $n blobs, expected 301 (300 + hello)"
[ "$(ls "$T/s/tmp" | wc -l)" = 0 ] || die "staging left behind"

step "media types, labels and stat"
echo '{"schemaVersion":2}' >"$T/m.json"
m=$(cairn blob put --media-type application/vnd.oci.image.manifest.v1+json --label team=build --label tier=1 "$T/m.json")
cairn blob ls --media-type application/vnd.oci.image.manifest.v1+json | grep -q "^$m " || die "ls by type"
[ "$(cairn blob ls --media-type application/vnd.oci.image.manifest.v1+json | wc -l)" = 1 ] || die "ls by type: extra rows"
cairn blob stat "$m" --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert s["size"] == 20, s
assert s["media_type"] == "application/vnd.oci.image.manifest.v1+json", s
assert s["labels"] == {"team": "build", "tier": "1"}, s
'
step "stat prints its date as image ls does; --json keeps the number"
created=$(cairn blob stat "$m" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["created"])')
[[ "$created" =~ ^[0-9]+$ ]] || die "blob stat --json created: $created"
when=$(date -u -d "@$created" '+%Y-%m-%d %H:%M:%S')
cairn blob stat "$m" | grep -qx "created:    $when" || die "blob stat should print 'created:    $when': $(cairn blob stat "$m")"
cairn blob label "$m" tier- owner=me
cairn blob stat "$m" | grep -q "label:      owner=me" || die "label not set"
cairn blob stat "$m" | grep -q "tier=" && die "label not cleared"

step "rm removes the row and the file"
cairn blob rm "$d" | grep -q "^removed blob $d$"
[ ! -e "$T/s/blobs/sha256/${d#sha256:}" ] || die "file left"
fails 1 "blob $d: not found" -- cairn blob get "$d"
fails 1 "blob $d: not found" -- cairn blob rm "$d"

step "bytes already under a name are proven before a put trusts them"
# A file named by no row (a crash's leftover, or garbage) is kept only when
# it is the blob; anything else is quarantined and replaced.
printf 'the real bytes\n' >"$T/x"
hx=$(sha "$T/x")
mkdir -p "$T/outside"; printf 'the real bytes\n' >"$T/outside/target"
for kind in garbage same-size symlink; do
    case $kind in
    garbage) printf 'garbage' >"$T/s/blobs/sha256/$hx" ;;
    same-size) printf 'THE REAL BYTES\n' >"$T/s/blobs/sha256/$hx" ;;
    symlink) ln -s "$T/outside/target" "$T/s/blobs/sha256/$hx" ;;
    esac
    [ "$(cairn blob put "$T/x")" = "sha256:$hx" ] || die "$kind: put printed another digest"
    [ -f "$T/s/blobs/sha256/$hx" ] && [ ! -L "$T/s/blobs/sha256/$hx" ] || die "$kind: not replaced"
    cairn blob get "sha256:$hx" | cmp -s - "$T/x" || die "$kind: get returns the bytes that were there"
    cairn blob get "sha256:$hx" --verify -o "$T/x.out" || die "$kind: --verify fails"
    ls "$T/s/quarantine" | grep -q "^blob\.$hx\." || die "$kind: the bad file was not quarantined"
    cairn fsck >/dev/null || die "$kind: fsck is not clean"
    cairn blob rm "sha256:$hx" >/dev/null
    rm -rf "$T/s/quarantine"/*
done
[ "$(cat "$T/outside/target")" = "the real bytes" ] || die "a file outside the state changed"
# A good leftover is kept as it is (no second copy, no quarantine).
cp "$T/x" "$T/s/blobs/sha256/$hx"
ino=$(stat -c %i "$T/s/blobs/sha256/$hx")
cairn blob put "$T/x" >/dev/null
[ "$(stat -c %i "$T/s/blobs/sha256/$hx")" = "$ino" ] || die "a good leftover was replaced"
[ -z "$(ls "$T/s/quarantine")" ] || die "a good leftover was quarantined"
cairn blob rm "sha256:$hx" >/dev/null

step "a progress bar on a terminal for long puts, none when piped"
head -c $((100 << 20)) /dev/zero >"$T/big"
script -qec "$CAIRN -C $T/s blob put $T/big" /dev/null >"$T/tty.out"
grep -q 'big \[' "$T/tty.out" || die "no progress bar on a terminal: $(cat -v "$T/tty.out" | head -c 300)"
grep -q "sha256:$(sha "$T/big")" "$T/tty.out" || die "no digest on a terminal"
cairn blob put "$T/big" 2>"$T/pipe.err" >/dev/null
[ ! -s "$T/pipe.err" ] || die "progress drawn when not on a terminal"
cairn blob rm "sha256:$(sha "$T/big")" >/dev/null

step "info counts blobs and bytes"
cairn info --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert s["blobs"]["count"] == 301, s["blobs"]
'
echo "all blob tests passed"
