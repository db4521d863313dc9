#!/usr/bin/env bash
# cairn freeze: a consistent point-in-time copy of a state an engine is
# writing to. The copy passes fsck, holds everything committed before the
# freeze began, is frozen (read-only, self-contained database, no WAL), has
# its own id, shares the objects' inodes (0 bytes copied), and leaves out
# active snapshots and leases.
source "$(dirname "$0")/lib.sh"

j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
blobs_of() { cairn -C "$1" blob ls | awk '{print $1}' | sort; }

step "a state with blobs, a lease and an active snapshot row"
cairn init "$T/e" >/dev/null
mkdir -p "$T/data"
for i in $(seq 1 200); do echo "blob $i" >"$T/data/b$i"; done
head -c 2000000 /dev/urandom >"$T/data/big"
cairn -C "$T/e" blob put "$T/data"/* >/dev/null
eid=$(sed -n 's/^id=//p' "$T/e/cairn-state")
sqlite3 "$T/e/db/$eid.sqlite" "INSERT INTO leases VALUES ('l1', 1, 9999999999)"
# A committed snapshot chain, and an active snapshot being written.
act=$(cairn -C "$T/e" snapshot prepare)
mkdir -p "$T/e/active/$act/fs/etc"; echo "base" >"$T/e/active/$act/fs/etc/base"
base=$(cairn -C "$T/e" snapshot commit "$act")
act=$(cairn -C "$T/e" snapshot prepare "$base")
mkdir -p "$T/e/active/$act/fs/opt"; echo "top" >"$T/e/active/$act/fs/opt/top"
top=$(cairn -C "$T/e" snapshot commit "$act")
busy=$(cairn -C "$T/e" snapshot prepare "$top" --label busy)
echo "being written" >"$T/e/active/$busy/fs/wip"

step "an engine keeps writing while the state is frozen"
mkdir -p "$T/engine"
(
    i=0
    while [ ! -e "$T/stop" ]; do
        i=$((i + 1))
        echo "engine write $i $RANDOM" >"$T/engine/w$i"
        cairn -C "$T/e" blob put "$T/engine/w$i" >>"$T/engine/committed" 2>/dev/null || true
    done
) &
engine=$!
while [ ! -s "$T/engine/committed" ] || [ "$(wc -l <"$T/engine/committed")" -lt 5 ]; do sleep 0.05; done
blobs_of "$T/e" >"$T/before"          # all committed before the freeze began
out=$(cairn freeze --json "$T/e" "$T/f")
sleep 0.2
touch "$T/stop"; wait "$engine"
[ "$(wc -l <"$T/engine/committed")" -gt 5 ] || die "the engine did not write during the freeze"

step "the copy passes fsck and holds everything committed before the freeze"
cairn -C "$T/f" fsck || die "the frozen copy fails fsck"
blobs_of "$T/f" >"$T/after"
missing=$(comm -23 "$T/before" "$T/after")
[ -z "$missing" ] || die "committed before the freeze, missing from the copy: $missing"
big=$(cairn -C "$T/e" blob put "$T/data/big")
cairn -C "$T/f" blob get --verify "$big" -o "$T/big.out"
cmp -s "$T/big.out" "$T/data/big" || die "the big blob differs"

step "a new id, frozen, a self-contained database without WAL"
fid=$(echo "$out" | j 'd["id"]')
[ "$fid" != "$eid" ] || die "the copy kept the id"
grep -qx "id=$fid" "$T/f/cairn-state" && grep -qx "frozen=1" "$T/f/cairn-state" || die "identity: $(cat "$T/f/cairn-state")"
[ "$(cairn -C "$T/f" info --json | j 'd["frozen"]')" = True ] || die "info does not say frozen"
[ "$(sqlite3 "file:$T/f/db/$fid.sqlite?immutable=1" 'PRAGMA journal_mode')" = delete ] || die "not journal_mode=DELETE"
ls "$T/f/db" | grep -Eq -- '-(wal|shm|journal)$' && die "WAL or journal files left: $(ls "$T/f/db")"
[ "$(ls "$T/f/db" | wc -l)" = 1 ] || die "db/ holds more than the copy's database: $(ls "$T/f/db")"

step "objects are hardlinks: 0 bytes copied"
[ "$(echo "$out" | j 'd["bytes_copied"]')" = 0 ] || die "bytes were copied: $out"
h=${big#sha256:}
[ "$(stat -c %i "$T/f/blobs/sha256/$h")" = "$(stat -c %i "$T/e/blobs/sha256/$h")" ] || die "not a hardlink"

step "leases and active snapshots stay out"
info=$(cairn -C "$T/f" info --json)
[ "$(echo "$info" | j 'd["leases"]["count"]')" = 0 ] || die "a lease was frozen"
[ "$(echo "$info" | j 'd["active"]["count"]')" = 0 ] || die "an active snapshot was frozen"
[ -z "$(ls "$T/f/active")" ] || die "active/ was copied: $(ls "$T/f/active")"
[ "$(cairn -C "$T/e" info --json | j 'd["active"]["count"]')" = 1 ] || die "the source lost its active snapshot"

step "the frozen snapshots are hardlinked trees, and mount"
[ "$(echo "$info" | j 'd["snapshots"]["count"]')" = 2 ] || die "snapshots: $info"
[ "$(stat -c %i "$T/f/snapshots/${top#sha256:}/opt/top")" = "$(stat -c %i "$T/e/snapshots/${top#sha256:}/opt/top")" ] || die "a snapshot file is not a hardlink"
cairn init "$T/over" >/dev/null
cairn stack add "$T/over" "$T/f" >/dev/null
mkdir -p "$T/mnt"
cairn -C "$T/over" mount "$top" "$T/mnt"
[ "$(cat "$T/mnt/etc/base")" = base ] && [ "$(cat "$T/mnt/opt/top")" = top ] || die "the frozen chain mounts wrong"
umount "$T/mnt"
[ "$(cairn -C "$T/e" info --json | j 'd["leases"]["count"]')" = 1 ] || die "the source lost its lease"

step "a frozen state refuses writes"
fails 1 "frozen" -- cairn -C "$T/f" blob put "$T/data/b1"

step "a frozen state can be frozen again, and stacked on"
cairn freeze -q "$T/f" "$T/f2"
cairn -C "$T/f2" fsck >/dev/null
[ "$(blobs_of "$T/f2")" = "$(blobs_of "$T/f")" ] || die "a freeze of a frozen state differs"

step "a freeze of a stack keeps its lowers"
cairn init "$T/top" >/dev/null
cairn stack add "$T/top" "$T/f" >/dev/null
echo "in the top" >"$T/data/top1"
cairn -C "$T/top" blob put "$T/data/top1" >/dev/null
cairn freeze -q "$T/top" "$T/topf"
[ "$(cairn stack ls "$T/topf" | awk '{print $1}')" = "$fid" ] || die "the frozen stack lost its lower"
[ "$(blobs_of "$T/topf")" = "$(blobs_of "$T/top")" ] || die "the frozen stack shows another union"
cairn -C "$T/topf" fsck >/dev/null

step "bad destinations and sources"
fails 1 "already a cairn state" -- cairn freeze "$T/e" "$T/f"
fails 1 "not a cairn state|no such directory" -- cairn freeze "$T/nowhere" "$T/x"
[ ! -e "$T/x" ] || die "a failed freeze left its destination"
fails 2 "expected SRC and DEST" -- cairn freeze "$T/e"
ls "$T" | grep -q 'cairn-freeze' && die "a side directory was left behind"
echo ok
