#!/usr/bin/env bash
# test-busy.sh: a state another process holds, past the wait (CAIRN_WAIT),
# fails with exit 4 and says what holds it: the lock's holder by pid, the
# database's as another writer. Nothing waits on a clock: CAIRN_WAIT=0.
source "$(dirname "$0")/lib.sh"
command -v flock >/dev/null || { echo "flock missing"; exit 77; }
command -v sqlite3 >/dev/null || { echo "sqlite3 missing"; exit 77; }

S=$T/s
cairn init "$S" >/dev/null
D=$(printf 'busy' | cairn -C "$S" blob put - | tail -1)

step "the lock held (a gc or blob rm elsewhere): exit 4 naming its pid"
mkfifo "$T/go"
flock -x "$S/lock" sh -c 'echo locked; exec cat "$0" >/dev/null' "$T/go" >"$T/flock.out" &
holder=$!
exec 3>"$T/go"
until grep -q locked "$T/flock.out"; do sleep 0.05; done
CAIRN_WAIT=0 fails 4 "lock: held by process $holder" -- cairn -C "$S" blob rm "$D"
CAIRN_WAIT=0 fails 4 "held by process $holder" -- cairn -C "$S" gc
fails 2 "CAIRN_WAIT 'soon'" -- env CAIRN_WAIT=soon "$CAIRN" -C "$S" blob rm "$D"
exec 3>&-
wait "$holder"
cairn -C "$S" blob stat "$D" >/dev/null || die "the blob went while the lock was held"

step "the database held by another writer: exit 4, 'another writer'"
db=$(ls "$S"/db/*.sqlite)
mkfifo "$T/sql"
sqlite3 "$db" <"$T/sql" >"$T/sql.out" &
sq=$!
exec 4>"$T/sql"
echo "BEGIN IMMEDIATE; SELECT 'began';" >&4
until grep -q began "$T/sql.out"; do sleep 0.05; done
CAIRN_WAIT=0 fails 4 "another writer holds it" -- sh -c "printf 'more' | '$CAIRN' -C '$S' blob put -"
echo "ROLLBACK;" >&4
exec 4>&-
wait "$sq"

step "free again: the same calls succeed"
printf 'more' | cairn -C "$S" blob put - >/dev/null
cairn -C "$S" blob rm "$D" >/dev/null
[ "$(cairn -C "$S" fsck >/dev/null; echo $?)" = 0 ] || die "fsck after"
echo ok
