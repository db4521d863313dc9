#!/usr/bin/env bash
# fsck runs SQLite's integrity check on every database of the stack (quick
# by default, full with --full-db), each problem named with the file, and
# does not check rows read from a corrupt database.
source "$(dirname "$0")/lib.sh"

j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# zero page N (1-based) of a database file, in place
zero_page() { dd if=/dev/zero of="$1" bs=4096 seek=$(($2 - 1)) count=1 conv=notrunc 2>/dev/null; }

cairn init "$T/s" >/dev/null
id=$(sed -n 's/^id=//p' "$T/s/cairn-state")
mkdir -p "$T/d"
for i in $(seq 1 300); do echo "blob $i" >"$T/d/f$i"; done
cairn -C "$T/s" blob put "$T/d"/* >/dev/null

step "a clean database: 0 problems, quick and full"
cairn -C "$T/s" fsck | grep -qx '0 problems' || die "a clean state has problems"
cairn -C "$T/s" fsck --full-db | grep -qx '0 problems' || die "a clean state has problems (--full-db)"

step "a zeroed page is reported with the file"
cp -a "$T/s" "$T/z"
sqlite3 "$T/z/db/$id.sqlite" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
[ ! -s "$T/z/db/$id.sqlite-wal" ] || die "the database has frames in its WAL: the page would be read from there"
# page 5 is a b-tree root of the schema (blob_labels): nothing but fsck reads it
[ "$(sqlite3 "$T/z/db/$id.sqlite" "SELECT rootpage FROM sqlite_master WHERE name = 'blob_labels'")" = 5 ] \
    || die "the schema moved: pick another page"
zero_page "$T/z/db/$id.sqlite" 5
for flag in --no-hash --full-db; do
    out=$(cairn -C "$T/z" fsck $flag --json) && die "fsck $flag of a corrupt database exited 0"
    echo "$out" | python3 -c '
import json,sys
d=json.load(sys.stdin)
db=[p for p in d["problems"] if p["kind"]=="database"]
assert db, d
assert all(p["name"].endswith("/db/'"$id"'.sqlite") and p["problem"]=="corrupt" for p in db), db
assert any("Page 5" in p["detail"] for p in db), db
assert d["count"]==len(d["problems"]), d' || die "fsck $flag did not report the page: $out"
done
fails 3 "^database .*/z/db/$id.sqlite: corrupt: " -- sh -c "\"$CAIRN\" -C \"$T/z\" fsck >&2"

step "a corrupt lower is reported with its own file"
cairn freeze -q "$T/s" "$T/f"
fid=$(sed -n 's/^id=//p' "$T/f/cairn-state")
cairn init "$T/top" >/dev/null
cairn stack add "$T/top" "$T/f" >/dev/null
cairn -C "$T/top" fsck | grep -qx '0 problems' || die "a clean stack has problems"
zero_page "$T/f/db/$fid.sqlite" 5
out=$(cairn -C "$T/top" fsck --json) && die "fsck of a stack over a corrupt lower exited 0"
[ "$(echo "$out" | j '[p["name"] for p in d["problems"] if p["kind"]=="database"][0]')" = "$T/f/db/$fid.sqlite" ] \
    || die "the lower's file is not named: $out"

step "repair leaves a corrupt database alone (and its objects)"
n=$(ls "$T/z/blobs/sha256" | wc -l)
cairn -C "$T/z" fsck --repair >/dev/null || true
[ "$(ls "$T/z/blobs/sha256" | wc -l)" = "$n" ] || die "repair moved objects on the word of a corrupt database"
echo "fsck of databases ok"
