#!/usr/bin/env bash
# Ingest of blobs larger than a staging slot (streamed: hashed in one thread,
# written in another) through the command: a file, standard input, a batch
# that mixes sizes, and inputs that fail part way (nothing stored, nothing
# left staged).
source "$(dirname "$0")/lib.sh"
cd "$T"
cairn init s >/dev/null
cairn() { "$CAIRN" -C "$T/s" "$@"; }
staged() { find "$T/s/tmp" -mindepth 1 | wc -l; }

step "a 9 MiB + 5 file and the same bytes from a pipe"
head -c $((9 * 1048576 + 5)) /dev/urandom >big
d=$(cairn blob put big)
[ "$d" = "sha256:$(sha big)" ] || die "digest $d is not the file's"
cmp big "s/blobs/sha256/${d#sha256:}" || die "stored bytes differ"
cairn blob get --verify "$d" | cmp - big || die "get differs"
head -c $((12 * 1048576)) /dev/urandom >big2
d2=$(cat big2 | cairn blob put -)
[ "$d2" = "sha256:$(sha big2)" ] || die "stdin digest $d2 is not the data's"
cmp big2 "s/blobs/sha256/${d2#sha256:}" || die "stdin stored bytes differ"
[ "$(staged)" = 0 ] || die "staging left behind"

step "a batch of small, 64 KiB+, slot-sized and larger blobs"
mkdir in
for n in 0 1 4096 65536 100000 300001 4194304 4194305 9000000; do
    head -c "$n" /dev/urandom >"in/f$n"
done
cp big in/again   # already stored
cairn blob put in/* >put.out
for f in in/*; do
    grep -q "^sha256:$(sha "$f")  $f\$" put.out || die "no line for $f"
    cmp "$f" "s/blobs/sha256/$(sha "$f")" || die "stored $f differs"
done
[ "$(staged)" = 0 ] || die "staging left behind by the batch"

step "a batch with an unreadable input stores nothing"
mkdir bad
head -c 5000000 /dev/urandom >bad/a
mkdir bad/b   # a directory: reading it fails
head -c 70000 /dev/urandom >bad/c
fails 1 "bad/b: .*nothing was stored" -- cairn blob put bad/a bad/b bad/c
for f in bad/a bad/c; do
    [ ! -e "s/blobs/sha256/$(sha "$f")" ] || die "$f was stored"
    fails 1 "not found" -- cairn blob stat "sha256:$(sha "$f")"
done
[ "$(staged)" = 0 ] || die "staging left behind by the failed batch"

step "a large blob whose digest is not the expected one"
wrong=sha256:$(printf '%064d' 0)
head -c $((5 * 1048576)) /dev/urandom >big3
fails 1 "the data's digest is sha256:$(sha big3)" -- cairn blob put --digest "$wrong" big3
[ ! -e "s/blobs/sha256/$(sha big3)" ] || die "mismatching blob stored"
[ "$(staged)" = 0 ] || die "staging left behind by the mismatch"
cairn fsck >/dev/null || die "fsck complains"
echo ok
