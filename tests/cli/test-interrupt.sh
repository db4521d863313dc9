#!/usr/bin/env bash
# Ctrl-C: a long command (freeze, merge, gc) stopped by a
# SIGINT stops at its next progress report, says so, exits 130, and leaves
# its state as valid as a crash there would: freeze leaves no DEST and
# nothing beside it; merge leaves the sources as they were and a DEST a
# rerun completes; gc leaves only files no row names, which the next gc
# removes. The SIGINT comes from the fault shim at a sync of the command
# (a point it always reaches before its last report, in one thread), so
# no timing is involved. (Image import overlaps its phases in threads: no
# sync comes surely before its last report; unit-engine stops it through
# the callback.) Also: freeze draws a progress bar on a terminal, none when piped.
source "$(dirname "$0")/lib.sh"
SHIM=${FAULT_SHIM:?FAULT_SHIM must name the fault shim}
# Under ASan the shim is not first in the link order; that is fine here.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"

# interrupted SPEC CMD...: run CMD with a Ctrl-C at SPEC; it must exit 130
# naming the interruption.
interrupted() {
    local spec=$1 rc=0; shift
    rm -f "$T/fault.log"
    CAIRN_TEST_FAULT=$spec CAIRN_TEST_FAULT_LOG=$T/fault.log LD_PRELOAD=$SHIM "$@" \
        >"$T/int.out" 2>"$T/int.err" || rc=$?
    [ -s "$T/fault.log" ] || die "$*: the Ctrl-C at $spec never came"
    [ "$rc" = 130 ] || die "$*: exit $rc after Ctrl-C, not 130: $(cat "$T/int.err")"
    grep -q "interrupted" "$T/int.err" || die "$*: no word of the interruption: $(cat "$T/int.err")"
}
fsck_clean() { cairn -C "$1" fsck >"$T/fsck.out" || die "fsck of $1: $(head -5 "$T/fsck.out")"; }

step "a state of 600 blobs and a snapshot"
cairn init "$T/s" >/dev/null
mkdir -p "$T/data"
for i in $(seq 1 600); do echo "blob $i" >"$T/data/b$i"; done
cairn -C "$T/s" blob put "$T/data"/* >/dev/null
act=$(cairn -C "$T/s" snapshot prepare)
echo "in a snapshot" >"$T/s/active/$act/fs/file"
cairn -C "$T/s" snapshot commit "$act" >/dev/null

step "freeze: a bar on a terminal, none when piped"
script -qec "$CAIRN freeze $T/s $T/tty" /dev/null >"$T/tty.out"
grep -q 'freeze \[' "$T/tty.out" || die "no progress bar on a terminal: $(cat -v "$T/tty.out" | head -c 300)"
cairn freeze "$T/s" "$T/piped" 2>"$T/pipe.err" >/dev/null
[ ! -s "$T/pipe.err" ] || die "progress drawn when not on a terminal: $(cat "$T/pipe.err")"

step "freeze, interrupted: no DEST, nothing beside it, the source clean; a rerun freezes"
interrupted fdatasync:1:int cairn freeze "$T/s" "$T/f"
[ ! -e "$T/f" ] || die "an interrupted freeze left its DEST"
ls "$T" | grep -q cairn-freeze && die "an interrupted freeze left its side directory"
fsck_clean "$T/s"
cairn freeze "$T/s" "$T/f" >/dev/null
fsck_clean "$T/f"

step "merge, interrupted: the sources as they were, and a rerun completes"
interrupted fdatasync:1:int cairn merge "$T/m" "$T/s" "$T/f"
fsck_clean "$T/s"
fsck_clean "$T/f"
cairn merge "$T/m" "$T/s" "$T/f" >/dev/null
fsck_clean "$T/m"
[ "$(cairn -C "$T/m" blob ls | wc -l)" = 600 ] || die "the rerun merge lost blobs"

step "gc, interrupted: only unnamed files left, and the next gc removes them"
cp -a "$T/s" "$T/g"
# A day old: gc keeps what was used in the seconds before it.
gid=$(sed -n 's/^id=//p' "$T/g/cairn-state")
sqlite3 "$T/g/db/$gid.sqlite" "UPDATE blobs SET created = created - 86400;
    UPDATE usage SET last_used = last_used - 86400"
interrupted fdatasync:1:int cairn -C "$T/g" gc --grace 0
rc=0
cairn -C "$T/g" fsck >"$T/fsck.out" || rc=$?
if [ "$rc" != 0 ]; then
    [ "$rc" = 3 ] || die "fsck after an interrupted gc: exit $rc"
    grep -v '^[0-9]* problems' "$T/fsck.out" | grep -v ': unreferenced: ' &&
        die "an interrupted gc left more than unnamed files"
fi
cairn -C "$T/g" gc --grace 0 >/dev/null
fsck_clean "$T/g"
[ "$(cairn -C "$T/g" blob ls | wc -l)" = 0 ] || die "gc kept blobs no root holds"

echo ok
