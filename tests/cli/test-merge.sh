#!/usr/bin/env bash
# cairn merge: the union of states written into one, objects linked (not
# copied) on one filesystem, copied or moved on request; corrupt copies
# refused; a newer format refused before anything is written; an
# interrupted merge (kill -9, many times) leaves no row naming a missing
# object and completes when run again. And cairn flatten.
source "$(dirname "$0")/lib.sh"

j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
ino() { stat -c %i "$1"; }
blobs_of() { cairn -C "$1" blob ls | awk '{print $1}' | sort; }
# fsck: no problem but unreferenced files (what an interrupted write leaves).
fsck_clean() {
    local out rc=0
    out=$(cairn -C "$1" fsck --json) || rc=$?
    [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || die "fsck of $1 failed to run ($rc)"
    echo "$out" | python3 -c '
import json,sys
d=json.load(sys.stdin)
bad=[p for p in d["problems"] if p["problem"]!="unreferenced"]
sys.exit("\n".join(p["kind"]+" "+p["name"]+": "+p["problem"]+": "+p["detail"] for p in bad) if bad else 0)' \
        || die "fsck of $1 found rows naming missing or corrupt objects"
}

step "three states, sharing some blobs"
mkdir -p "$T/data"
for s in a b c; do
    cairn init "$T/$s" >/dev/null
    mkdir -p "$T/data/$s"
    for i in $(seq 1 40); do echo "$s $i" >"$T/data/$s/f$i"; done
    for i in $(seq 1 5); do echo "shared $i" >"$T/data/$s/shared$i"; done
    head -c 300000 /dev/urandom >"$T/data/$s/big"
    cairn -C "$T/$s" blob put "$T/data/$s"/* >/dev/null
done
shared=$(cairn -C "$T/a" blob put "$T/data/a/shared1")
cairn -C "$T/a" blob label "$shared" color=red >/dev/null 2>&1 || true

step "merge by links: the union, every blob a hardlink, 0 bytes copied"
out=$(cairn merge --json "$T/m" "$T/a" "$T/b" "$T/c")
[ "$(echo "$out" | j 'd["bytes_copied"]')" = 0 ] || die "bytes were copied: $out"
[ "$(echo "$out" | j 'd["refused"]')" = 0 ] || die "refused: $out"
want=$( (blobs_of "$T/a"; blobs_of "$T/b"; blobs_of "$T/c") | sort -u)
[ "$(blobs_of "$T/m")" = "$want" ] || die "the merge is not the union"
[ "$(echo "$want" | wc -l)" = $((3 * 41 + 5)) ] || die "unexpected union size"
h=${shared#sha256:}
[ "$(ino "$T/m/blobs/sha256/$h")" = "$(ino "$T/a/blobs/sha256/$h")" ] || die "not a hardlink"
cairn -C "$T/m" fsck >/dev/null || die "the merge fails fsck"
[ "$(cairn -C "$T/m" info --json | j 'd["lowers"]')" = 0 ] || die "a merge is self-contained"

step "merge again: nothing new, the same rows"
before=$(sqlite3 "$T/m/db/"*.sqlite 'SELECT digest, size, media_type, created FROM blobs ORDER BY 1')
out=$(cairn merge --json "$T/m" "$T/c" "$T/a" "$T/b")
[ "$(echo "$out" | j 'd["present"]')" = "$(echo "$out" | j 'd["objects"]')" ] || die "a second merge placed objects: $out"
[ "$(echo "$out" | j 'd["rows"]')" = 0 ] || die "a second merge changed rows: $out"
after=$(sqlite3 "$T/m/db/"*.sqlite 'SELECT digest, size, media_type, created FROM blobs ORDER BY 1')
[ "$before" = "$after" ] || die "a second merge changed rows"

step "--copy writes bytes, --link refuses nothing on one filesystem"
out=$(cairn merge --copy --json "$T/mc" "$T/a")
[ "$(echo "$out" | j 'd["copied"]')" -gt 0 ] || die "--copy copied nothing: $out"
[ "$(ino "$T/mc/blobs/sha256/$h")" != "$(ino "$T/a/blobs/sha256/$h")" ] || die "--copy made a link"
cmp "$T/mc/blobs/sha256/$h" "$T/a/blobs/sha256/$h"
cairn merge --link -q "$T/ml" "$T/b" || die "--link failed"
cairn -C "$T/mc" fsck >/dev/null && cairn -C "$T/ml" fsck >/dev/null

step "--move consumes the sources"
cairn merge -q "$T/b2" "$T/b"; cairn merge -q "$T/c2" "$T/c"
cairn merge --move -q "$T/mm" "$T/b2" "$T/c2"
[ ! -e "$T/b2" ] && [ ! -e "$T/c2" ] || die "--move left its sources"
[ "$(blobs_of "$T/mm")" = "$( (blobs_of "$T/b"; blobs_of "$T/c") | sort -u)" ] || die "--move lost blobs"
cairn -C "$T/mm" fsck >/dev/null

step "a corrupt copy is refused, both paths named; the merge completes with the good one"
cairn init "$T/bad" >/dev/null
cairn -C "$T/bad" blob put "$T/data/a/shared1" "$T/data/b/f1" >/dev/null
chmod u+w "$T/bad/blobs/sha256/$h"
printf 'SHARED 1\n' >"$T/bad/blobs/sha256/$h"       # same size, other bytes
out=$(cairn merge "$T/mx" "$T/a" "$T/bad" 2>&1 >/dev/null) || die "merge failed: $out"
echo "$out" | grep -q "$T/bad/blobs/sha256/$h" || die "the corrupt copy is not named: $out"
echo "$out" | grep -q "$T/mx/blobs/sha256/$h" || die "the good copy is not named: $out"
cairn -C "$T/mx" blob get --verify "$shared" >/dev/null || die "the merged copy is not the good one"
cairn -C "$T/mx" fsck >/dev/null
step "... and in the other order: the bad copy taken first is quarantined"
out=$(cairn merge "$T/my" "$T/bad" "$T/a" 2>&1 >/dev/null) || die "merge failed: $out"
echo "$out" | grep -q "$T/a/blobs/sha256/$h" || die "the good copy is not named: $out"
cairn -C "$T/my" blob get --verify "$shared" >/dev/null || die "the merged copy is not the good one"
ls "$T/my/quarantine" | grep -q "$h" || die "the bad copy was not quarantined"
cairn -C "$T/my" fsck >/dev/null

step "--verify hashes every object: a lone corrupt copy is refused"
cairn init "$T/lone" >/dev/null
lone=$(cairn -C "$T/lone" blob put "$T/data/c/f2")
chmod u+w "$T/lone/blobs/sha256/${lone#sha256:}"
printf 'C 2\n' >"$T/lone/blobs/sha256/${lone#sha256:}"     # same size, other bytes
out=$(cairn merge --verify "$T/mv" "$T/lone" 2>&1 >/dev/null) || die "merge --verify failed: $out"
echo "$out" | grep -q "$T/lone/blobs/sha256/${lone#sha256:}" || die "--verify did not name the corrupt copy: $out"
cairn -C "$T/mv" blob stat "$lone" >/dev/null 2>&1 && die "--verify took a corrupt copy"
cairn -C "$T/mv" fsck >/dev/null

step "a blob whose file is missing in its source is left out, reported"
cairn init "$T/holey" >/dev/null
cairn -C "$T/holey" blob put "$T/data/c"/f1* >/dev/null
gone=$(blobs_of "$T/holey" | head -1)
rm -f "$T/holey/blobs/sha256/${gone#sha256:}"
out=$(cairn merge "$T/mh" "$T/holey" 2>&1 >/dev/null) || die "merge failed: $out"
echo "$out" | grep -q "missing" || die "the missing file is not reported: $out"
cairn -C "$T/mh" blob stat "$gone" >/dev/null 2>&1 && die "a row names a missing blob"
cairn -C "$T/mh" fsck >/dev/null

step "a newer format or schema is refused before anything is written"
cp -a "$T/a" "$T/newer"
sed -i 's/^format=1$/format=9/' "$T/newer/cairn-state"
fails 1 "format 9 is newer" -- cairn merge "$T/mn" "$T/b" "$T/newer"
[ ! -e "$T/mn" ] || die "a refused merge created its destination"
cp -a "$T/a" "$T/newer2"
sqlite3 "$T/newer2/db/"*.sqlite 'PRAGMA user_version = 42'
before=$(cd "$T/m" && find . -type f -exec sha256sum {} + | sort)
fails 1 "schema version 42 is newer" -- cairn merge "$T/m" "$T/newer2"
after=$(cd "$T/m" && find . -type f -exec sha256sum {} + | sort)
[ "$before" = "$after" ] || die "a refused merge wrote to an existing destination"

step "usage errors"
fails 2 "expected DEST and at least one SRC" -- cairn merge "$T/m"
fails 1 "is the destination itself" -- cairn merge "$T/m" "$T/m"
mkdir -p "$T/foreign"; echo x >"$T/foreign/file"
fails 1 "not empty and not a cairn state" -- cairn merge "$T/foreign" "$T/a"

step "snapshots: merged as trees of hardlinks, moved as whole directories"
snapstate() {   # snapstate DIR TAG: a state with a chain of two snapshots; prints the top chain id
    cairn init "$1" >/dev/null
    local act base
    act=$(cairn -C "$1" snapshot prepare)
    mkdir -p "$1/active/$act/fs/etc"; echo "$2 base" >"$1/active/$act/fs/etc/$2"
    ln -s "/etc/$2" "$1/active/$act/fs/etc/link-$2"
    base=$(cairn -C "$1" snapshot commit "$act")
    act=$(cairn -C "$1" snapshot prepare "$base")
    rm "$1/active/$act/fs/etc" 2>/dev/null || true
    mkdir -p "$1/active/$act/fs/srv"; echo "$2 child" >"$1/active/$act/fs/srv/$2"
    cairn -C "$1" snapshot commit "$act"
}
sx=$(snapstate "$T/sx" x); sy=$(snapstate "$T/sy" y)
out=$(cairn merge --json "$T/ms" "$T/sx" "$T/sy")
[ "$(echo "$out" | j 'd["bytes_copied"]')" = 0 ] || die "snapshot files were copied: $out"
f=$(find "$T/sx/snapshots" -type f -name x | head -1)
[ "$(stat -c %i "$f")" = "$(stat -c %i "$T/ms/snapshots/${f#$T/sx/snapshots/}")" ] || die "a snapshot file is not a hardlink"
mkdir -p "$T/mnt"
cairn -C "$T/ms" mount "$sy" "$T/mnt"
[ "$(cat "$T/mnt/srv/y")" = "y child" ] && [ "$(cat "$T/mnt/etc/y")" = "y base" ] && [ "$(readlink "$T/mnt/etc/link-y")" = /etc/y ] || die "the merged chain mounts wrong"
umount "$T/mnt"
cairn -C "$T/ms" fsck >/dev/null || die "fsck of merged snapshots"
d=$(ls "$T/sx/snapshots" | head -1); dino=$(stat -c %i "$T/sx/snapshots/$d")
cairn merge --move -q "$T/mvs" "$T/sx"
[ "$(stat -c %i "$T/mvs/snapshots/$d")" = "$dino" ] || die "--move did not rename the snapshot directory whole"
[ ! -e "$T/sx" ] || die "--move left its source"
cairn -C "$T/mvs" mount "$sx" "$T/mnt"
[ "$(cat "$T/mnt/srv/x")" = "x child" ] || die "the moved chain mounts wrong"
umount "$T/mnt"
cairn -C "$T/mvs" fsck >/dev/null

step "kill -9 at random points: no row names a missing object, and a rerun completes"
for s in p q r; do
    cairn init "$T/$s" >/dev/null
    mkdir -p "$T/data/$s"
    for i in $(seq 1 300); do echo "$s $i $RANDOM" >"$T/data/$s/f$i"; done
    cairn -C "$T/$s" blob put "$T/data/$s"/* >/dev/null
done
want=$( (blobs_of "$T/p"; blobs_of "$T/q"; blobs_of "$T/r") | sort -u)
for round in $(seq 1 10); do
    rm -rf "$T/k"
    for attempt in 1 2 3; do
        "$CAIRN" merge -q "$T/k" "$T/p" "$T/q" "$T/r" >/dev/null 2>&1 &   # the process itself, to kill it
        pid=$!
        sleep "0.0$((RANDOM % 10))$((RANDOM % 10))"
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        [ -f "$T/k/cairn-state" ] && fsck_clean "$T/k"
    done
    cairn merge -q "$T/k" "$T/p" "$T/q" "$T/r" || die "round $round: the rerun failed"
    [ "$(blobs_of "$T/k")" = "$want" ] || die "round $round: the rerun did not complete the merge"
    fsck_clean "$T/k"
done
[ -z "$(ls "$T" | grep 'cairn-new')" ] || die "interrupted creations left side directories: $(ls "$T" | grep cairn-new)"

step "flatten: a stack's lowers merged into its top and dropped"
cairn freeze "$T/a" "$T/af" >/dev/null
cairn freeze "$T/b" "$T/bf" >/dev/null
cairn init "$T/top" >/dev/null
cairn stack add "$T/top" "$T/af" "$T/bf" >/dev/null
echo "top only" >"$T/data/toponly"
cairn -C "$T/top" blob put "$T/data/toponly" >/dev/null
view=$(blobs_of "$T/top")
sumbefore=$(cd "$T/af" && find . -type f -exec sha256sum {} + | sort)
cairn flatten -q "$T/top"
[ -z "$(cairn stack ls "$T/top")" ] || die "flatten left lowers"
[ "$(cairn -C "$T/top" info --json | j 'd["lowers"]')" = 0 ] || die "still stacked"
[ "$(blobs_of "$T/top")" = "$view" ] || die "flatten changed the view"
cairn -C "$T/top" fsck >/dev/null
sumafter=$(cd "$T/af" && find . -type f -exec sha256sum {} + | sort)
[ "$sumbefore" = "$sumafter" ] || die "flatten modified a lower"
fails 2 "unknown option" -- cairn flatten --move "$T/top"
echo "ok"
