#!/usr/bin/env bash
# test-gc-race.sh: an engine writes (blobs under a lease, records, re-puts
# of old unreferenced blobs, volume saves, lease renewals) while gc runs in a
# loop in another process. Nothing the writer was told is stored may be
# lost; the state checks out after; old garbage does go. Bounded: one pass
# of the writer, a few seconds.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cache-lib.sh"
S=$T/s
cairn init "$S" >/dev/null
export CAIRN_STATE=$S
N=${RACE_N:-25}
mkdir -p "$T/old" "$T/new" "$T/junk"
for i in $(seq 1 "$N"); do
    echo "old $i" >"$T/old/$i"; echo "new $i" >"$T/new/$i"; echo "junk $i" >"$T/junk/$i"
done
cairn blob put "$T/old"/* "$T/junk"/* >/dev/null
age "$S"

writer() {
    set -e
    cairn lease create w --ttl 60s >/dev/null
    for i in $(seq 1 "$N"); do
        # re-put an old unreferenced blob and record it
        D=$(cairn blob put "$T/old/$i")
        cairn record put "$(dg "old $i")" "$D" >/dev/null
        # a new blob, leased before it is written, then recorded
        D=sha256:$(sha "$T/new/$i")
        cairn lease add w blob "$D" >/dev/null
        cairn blob put "$T/new/$i" >/dev/null
        cairn record put "$(dg "new $i")" "$D" >/dev/null
        cairn lease renew w --ttl 60s
        if [ $((i % 5)) = 0 ]; then
            A=$(cairn volume open vol)
            echo "$i" >"$S/active/$A/fs/f$i"
            cairn volume save vol >/dev/null
        fi
    done
    cairn lease rm w
}

step "write while gc runs"
writer >"$T/writer.log" 2>&1 &
W=$!
runs=0
while kill -0 "$W" 2>/dev/null; do
    cairn gc --grace 2 >>"$T/gc.log" 2>&1 || die "gc failed: $(tail -3 "$T/gc.log")"
    runs=$((runs + 1))
done
wait "$W" || die "the writer failed: $(cat "$T/writer.log")"
echo "gc ran $runs times beside the writer"
[ "$runs" -ge 2 ] || die "gc did not overlap the writer"

step "everything written is there"
for i in $(seq 1 "$N"); do
    cairn record get "$(dg "old $i")" >/dev/null || die "record old $i lost"
    cairn record get "$(dg "new $i")" >/dev/null || die "record new $i lost"
done
cairn volume versions vol --json | jq1 'j[0]["present"]' | grep -qx True || die "the volume's current version is gone"
cairn fsck >/dev/null || die "fsck after the race: $(cairn fsck)"
for i in $(seq 1 "$N"); do
    [ ! -e "$S/blobs/sha256/$(sha "$T/junk/$i")" ] || die "old junk $i was not collected"
done

step "layer imports over a parent that gc collects"
# The parent is checked before the layer is applied; gc (--grace 0, the
# parent aged and named by nothing) may remove it before the child's row is
# in. The child must then be refused, never published over a missing
# parent. The child is leased before it exists, so that a dangling one stays
# for fsck to see.
B=$T/build
cairn init "$B" >/dev/null
A=$(cairn -C "$B" snapshot prepare); echo base >"$B/active/$A/fs/base"
P=$(cairn -C "$B" snapshot commit "$A")
A=$(cairn -C "$B" snapshot prepare "$P"); echo child >"$B/active/$A/fs/child"
C=$(cairn -C "$B" snapshot commit "$A")
cairn -C "$B" layer export "$P" -o "$T/parent.tar" >/dev/null
cairn -C "$B" layer export "$C" -o "$T/child.tar" >/dev/null
cairn lease create imports >/dev/null
cairn lease add imports snapshot "$C" >/dev/null
M=${RACE_IMPORTS:-60}
DB=$(db "$S")
importer() {
    set -e
    for i in $(seq 1 "$M"); do
        [ "$(cairn layer import "$T/parent.tar")" = "$P" ]
        sqlite3 -cmd '.timeout 30000' "$DB" "UPDATE snapshots SET created = created - 60;
            UPDATE usage SET last_used = last_used - 60" >/dev/null
        if out=$(cairn layer import "$T/child.tar" --parent "$P" 2>&1); then
            [ "$out" = "$C" ] || { echo "child import printed $out"; exit 1; }
            echo published
        else
            grep -Eq "parent .*(is not there|was removed)" <<<"$out" || { echo "$out"; exit 1; }
            echo refused
        fi
        cairn snapshot rm "$C" >/dev/null 2>&1 || true
    done
}
importer >"$T/import.log" 2>&1 &
W=$!
runs=0
while kill -0 "$W" 2>/dev/null; do
    cairn gc --grace 0 >>"$T/gc.log" 2>&1 || die "gc failed: $(tail -3 "$T/gc.log")"
    runs=$((runs + 1))
    cairn fsck >"$T/fsck.out" 2>&1 || { grep -q dangling "$T/fsck.out" && die "a child was published over a missing parent: $(cat "$T/fsck.out")"; }
done
wait "$W" || die "the importer failed: $(tail -3 "$T/import.log")"
echo "gc ran $runs times; imports: $(sort "$T/import.log" | uniq -c | tr '\n' ' ')"
cairn fsck >"$T/fsck.out" || die "fsck after the import race: $(cat "$T/fsck.out")"
cairn lease rm imports
echo ok
