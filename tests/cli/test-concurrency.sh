#!/usr/bin/env bash
# Several processes ingest into one state at once: no lost rows, no
# "database is locked", and a blob removed while others ingest it is either
# there with its file or not there at all.
source "$(dirname "$0")/lib.sh"
cairn init "$T/s" >/dev/null
export CAIRN_STATE=$T/s

step "8 writers, 50 puts each, a shared subset written by all"
mkdir "$T/in"
for w in $(seq 1 8); do
    mkdir "$T/in/$w"
    for i in $(seq 1 50); do echo "writer $w item $i" >"$T/in/$w/$i"; done
    for i in $(seq 1 10); do echo "shared item $i" >"$T/in/$w/s$i"; done
done
pids=()
for w in $(seq 1 8); do
    (
        for i in $(seq 1 50); do cairn blob put "$T/in/$w/$i" >/dev/null; done
        cairn blob put "$T/in/$w"/s* >/dev/null
    ) 2>"$T/err.$w" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || die "a writer failed: $(cat "$T"/err.*)"; done
cat "$T"/err.* | grep -q . && die "writers printed errors: $(cat "$T"/err.*)"
n=$(cairn blob ls | wc -l)
[ "$n" = $((8 * 50 + 10)) ] || die "$n blobs, expected 410"
cairn fsck | grep -q "^0 problems" || die "fsck after parallel writers"

step "removers racing writers of the same blobs"
for round in $(seq 1 5); do
    ( for i in $(seq 1 10); do cairn blob put "$T/in/1/s$i" >/dev/null; done ) &
    a=$!
    ( for i in $(seq 1 10); do cairn blob rm "sha256:$(sha "$T/in/1/s$i")" >/dev/null 2>&1 || true; done ) &
    b=$!
    wait $a || die "writer failed in round $round"
    wait $b
    # Every row names a good file.
    out=$(cairn fsck || true)
    echo "$out" | grep -Eq "missing|corrupt" && die "round $round: $out"
done
echo "all concurrency tests passed"
