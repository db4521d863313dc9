#!/usr/bin/env bash
# The state directory through the command: init, -C and CAIRN_STATE, info,
# and the errors of a directory that is not (or no longer) a good state.
source "$(dirname "$0")/lib.sh"

step "init creates the layout and an identity"
out=$(cairn init "$T/s")
echo "$out" | grep -Eq '^initialized state [0-9a-f]{32} in ' || die "init said: $out"
for d in blobs/sha256 snapshots active tmp db; do [ -d "$T/s/$d" ] || die "no $d/"; done
id=$(sed -n 's/^id=//p' "$T/s/cairn-state")
[ -f "$T/s/db/$id.sqlite" ] || die "no database named by the id"
[ "$(sqlite3 "$T/s/db/$id.sqlite" 'PRAGMA journal_mode')" = wal ] || die "database not in WAL mode"

step "-C, CAIRN_STATE and the current directory pick the state"
[ "$(cairn -C "$T/s" info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')" = "$id" ]
[ "$(CAIRN_STATE=$T/s cairn info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')" = "$id" ]
[ "$(cd "$T/s" && cairn info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')" = "$id" ]
cairn info -C "$T/s" | grep -q "^state:   $id" || die "info text lacks the id"

step "init twice is refused and changes nothing"
cp "$T/s/cairn-state" "$T/ident.before"
fails 1 "already a cairn state \\(id $id\\)" -- cairn init "$T/s"
cmp -s "$T/s/cairn-state" "$T/ident.before" || die "identity changed"

step "init refuses a non-empty directory that is not a state"
mkdir -p "$T/home"; echo precious >"$T/home/file"
fails 1 "not empty and not a cairn state" -- cairn init "$T/home"
[ "$(cat "$T/home/file")" = precious ] && [ ! -e "$T/home/cairn-state" ] || die "init touched a foreign directory"

step "a directory that is not a state"
fails 1 "not a cairn state" -- cairn -C "$T/home" info
fails 1 "no such directory" -- cairn -C "$T/nowhere" info
fails 1 "not a directory" -- cairn -C "$T/home/file" info

step "a newer format is refused naming the file, and nothing changes"
cp -a "$T/s" "$T/newer"
sed -i 's/^format=1$/format=2/' "$T/newer/cairn-state"
before=$(cd "$T/newer" && find . -type f -exec sha256sum {} + | sort)
fails 1 "cairn-state: format 2 is newer than this cairn's 1" -- cairn -C "$T/newer" blob put /etc/hostname
after=$(cd "$T/newer" && find . -type f -exec sha256sum {} + | sort)
[ "$before" = "$after" ] || die "a refused open changed files"

step "a newer schema is refused naming the database"
cp -a "$T/s" "$T/schema"
sqlite3 "$T/schema/db/$id.sqlite" 'PRAGMA user_version = 9'
fails 1 "$id.sqlite: schema version 9 is newer" -- cairn -C "$T/schema" info

step "a corrupt identity or database"
cp -a "$T/s" "$T/corrupt"
printf 'garbage\n' >"$T/corrupt/cairn-state"
fails 1 "cairn-state: corrupt identity file" -- cairn -C "$T/corrupt" info
cp -a "$T/s" "$T/nodb"
rm "$T/nodb/db/$id.sqlite"*
fails 1 "database is missing" -- cairn -C "$T/nodb" info
cp -a "$T/s" "$T/baddb"
rm -f "$T/baddb/db/$id.sqlite-wal" "$T/baddb/db/$id.sqlite-shm"
head -c 8192 /dev/urandom >"$T/baddb/db/$id.sqlite"
fails 1 "$id.sqlite: not a cairn database" -- cairn -C "$T/baddb" info

step "an empty, foreign or schemaless database is refused, read-only and writable alike"
# SQLite opens such a file as a valid database of version 0: migrating it
# would rebuild an empty schema under the state's id, and gc would then
# delete every object the lost rows named.
for kind in empty foreign schemaless; do
    cp -a "$T/s" "$T/db-$kind"
    db="$T/db-$kind/db/$id.sqlite"
    rm -f "$db-wal" "$db-shm"
    case $kind in
    empty) : >"$db" ;;
    foreign) rm "$db"; sqlite3 "$db" 'CREATE TABLE t(x); INSERT INTO t VALUES (1)' ;;
    schemaless) rm "$db"; sqlite3 "$db" 'CREATE TABLE meta(key, value); PRAGMA user_version = 1' ;;
    esac
    echo blob >"$T/db-$kind/blobs/sha256/$(printf blob | sha256sum | cut -d' ' -f1)"
    before=$(cd "$T/db-$kind" && find . -exec stat -c '%n %s %Y' {} + | sort)
    for cmd in "info" "fsck" "blob ls" "blob put /etc/hostname" "gc --grace 0" "snapshot prepare" \
        "record put k sha256:$(printf blob | sha256sum | cut -d' ' -f1)"; do
        # shellcheck disable=SC2086
        fails 1 "db/$id.sqlite: not a cairn database" -- cairn -C "$T/db-$kind" $cmd
    done
    after=$(cd "$T/db-$kind" && find . -exec stat -c '%n %s %Y' {} + | sort)
    [ "$before" = "$after" ] || die "$kind database: a refused command changed the state"
done
[ ! -s "$T/db-empty/db/$id.sqlite" ] || die "the empty database was given a schema"

step "usage errors exit 2, --help exits 0"
fails 2 "not a command" -- cairn frobnicate
fails 2 "unexpected argument" -- cairn -C "$T/s" info extra
cairn --help >"$T/help.txt"
grep -q "blob put" "$T/help.txt" || die "--help lacks commands"
cairn blob put --help | grep -q "usage: cairn blob put" || die "blob put --help"
# a group's --help: its commands on stdout, exit 0; the group alone is a usage error
for g in blob snapshot pool remote; do
    cairn $g --help >"$T/g.txt" || die "cairn $g --help exited $?"
    grep -q "^  cairn $g [a-z]" "$T/g.txt" || die "cairn $g --help lists no command: $(cat "$T/g.txt")"
done
fails 2 "cairn pool init" -- cairn pool
cairn --version | grep -Eq '^cairn [0-9]' || die "--version"
echo "all state tests passed"
