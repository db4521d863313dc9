#!/usr/bin/env bash
# Staging left by a killed process is found and removed: a put killed with
# -9 mid-stream leaves its file in tmp/, which fsck reports, gc removes (and
# a dry run only reports), and the next writable open removes; the staging
# of a live put is left alone by all of them, and that put completes. A
# process that exits normally leaves nothing in tmp/.
source "$(dirname "$0")/lib.sh"

cairn init "$T/s" >/dev/null
head -c 8M /dev/urandom >"$T/big"
mkfifo "$T/fifo"
# A put of $T/big that has written part of it and waits for the rest: its
# input is a pipe that stays open after 4 MiB. Sets PUT, WRITER, STAGED.
start_put() {
    (head -c 4M "$T/big"; exec sleep 1000) >"$T/fifo" &
    WRITER=$!
    "$CAIRN" -C "$T/s" blob put - <"$T/fifo" >"$T/put.out" 2>&1 &   # not the function: $! must be the put
    PUT=$!
    STAGED=
    for _ in $(seq 1 600); do
        STAGED=$(find "$T/s/tmp" -name '*-blob-*' -size +1024k 2>/dev/null | head -1)
        [ -n "$STAGED" ] && break
        kill -0 "$PUT" 2>/dev/null || die "the put ended early: $(cat "$T/put.out")"
        sleep 0.1
    done
    [ -n "$STAGED" ] || die "no staging file with data appeared in tmp/"
}
kill_put() {
    kill -9 "$PUT"; wait "$PUT" 2>/dev/null || true
    kill "$WRITER" 2>/dev/null || true; wait "$WRITER" 2>/dev/null || true
}

step "a normal put leaves nothing in tmp/"
echo small >"$T/small"
cairn -C "$T/s" blob put "$T/small" >/dev/null
[ -z "$(ls -A "$T/s/tmp")" ] || die "tmp/ after a put: $(ls -A "$T/s/tmp")"

step "a put killed with -9 mid-stream: fsck reports its staging"
start_put
kill_put
[ -f "$STAGED" ] || die "the killed put left no staging (nothing to test)"
name=$(basename "$STAGED")
fails 3 "^file tmp/$name: unreferenced: .*staging of a process that is gone" -- \
    sh -c "\"$CAIRN\" -C \"$T/s\" fsck >&2"

step "gc --dry-run reports it and leaves it; gc removes it"
cairn -C "$T/s" gc --dry-run | grep -q "tmp/$name" || die "a dry run did not report the staging"
[ -f "$STAGED" ] || die "a dry run removed the staging"
# (the open of a writable gc removes it already; test-gc.c has a gc of a
# state opened before the put died)
cairn -C "$T/s" gc >/dev/null
[ -z "$(ls -A "$T/s/tmp")" ] || die "tmp/ after gc: $(ls -A "$T/s/tmp")"
cairn -C "$T/s" fsck | grep -qx '0 problems' || die "problems left after gc"

step "the next writable open removes it too"
start_put
kill_put
[ -f "$STAGED" ] || die "the killed put left no staging"
cairn -C "$T/s" blob put "$T/small" >/dev/null
[ ! -e "$STAGED" ] || die "a writable open left a dead process's staging"
[ -z "$(ls -A "$T/s/tmp")" ] || die "tmp/ after an open: $(ls -A "$T/s/tmp")"

step "a live put's staging is left alone, and the put completes"
start_put
cairn -C "$T/s" gc --grace 0 >/dev/null
cairn -C "$T/s" blob put "$T/small" >/dev/null
cairn -C "$T/s" fsck | grep -qx '0 problems' || die "fsck reported a live put's staging"
[ -f "$STAGED" ] || die "a live put's staging was removed"
kill "$WRITER"; wait "$WRITER" 2>/dev/null || true   # the input ends: 4 MiB
wait "$PUT" || die "the live put failed: $(cat "$T/put.out")"
[ "$(cat "$T/put.out")" = "sha256:$(head -c 4M "$T/big" | sha256sum | cut -d' ' -f1)" ] \
    || die "the live put stored the wrong bytes: $(cat "$T/put.out")"
[ -z "$(ls -A "$T/s/tmp")" ] || die "tmp/ after the put: $(ls -A "$T/s/tmp")"
echo "staging ok"
