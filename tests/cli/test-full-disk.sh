#!/usr/bin/env bash
# A full file system (a small tmpfs mounted in $T, filled with a file; no
# loop device needed, so it runs in a chroot or a container too): the
# commands that read work, a write fails saying the disk is full (not "not a
# cairn database"), and gc runs, freeing the state's reserve to open the
# database and then space, and makes the reserve again.
source "$(dirname "$0")/lib.sh"

mkdir -p "$T/mnt"
mount -t tmpfs -o size=32M,mode=0755 cairn-full-disk "$T/mnt"
S=$T/mnt/s
cairn init "$S" >/dev/null
id=$(sed -n 's/^id=//p' "$S/cairn-state")
echo keep >"$T/keep"
keep=$(cairn -C "$S" blob put "$T/keep")
cairn -C "$S" lease create hold >/dev/null
cairn -C "$S" lease add hold blob "$keep" >/dev/null
head -c 3M /dev/urandom >"$T/junk"
junk=$(cairn -C "$S" blob put "$T/junk")
[ -s "$S/db/$id.reserve" ] || die "a writable open made no reserve"
# out of gc's grace period (kept: created within it)
sqlite3 "$S/db/$id.sqlite" "UPDATE blobs SET created = created - 100000; UPDATE usage SET last_used = last_used - 100000"

step "fill the file system"
dd if=/dev/zero of="$T/mnt/fill" bs=1M 2>/dev/null || true
dd if=/dev/zero of="$T/mnt/fill2" bs=4k 2>/dev/null || true
[ "$(stat -f -c %a "$T/mnt")" = 0 ] || die "the file system is not full: $(df "$T/mnt")"

step "the commands that read work"
cairn -C "$S" info | grep -q "^state:   $id" || die "info failed on a full disk"
cairn -C "$S" blob ls | grep -q "$junk" || die "blob ls failed on a full disk"
out=$(cairn -C "$S" du 2>&1) || die "du failed on a full disk: $out"
cairn -C "$S" blob get "$keep" -o "$T/keep.out"
cmp -s "$T/keep" "$T/keep.out" || die "blob get read the wrong bytes"
rc=0; cairn -C "$S" fsck >"$T/fsck.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || die "fsck failed on a full disk ($rc): $(cat "$T/fsck.out")"
cairn -C "$S" gc --dry-run | grep -q "$junk" || die "gc --dry-run failed on a full disk"

step "a write says the file system is full"
echo new >"$T/new"
fails 1 "$id.sqlite: the file system is full" -- cairn -C "$S" blob put "$T/new"

step "gc runs: frees the reserve, then the junk; the reserve comes back"
out=$(cairn -C "$S" gc) || die "gc failed on a full disk: $out"
grep -q "$junk" <<<"$out" || die "gc did not remove the junk: $out"
[ ! -e "$S/blobs/sha256/${junk#sha256:}" ] || die "the junk blob is still there"
cairn -C "$S" blob get "$keep" -o "$T/keep.out2"
cmp -s "$T/keep" "$T/keep.out2" || die "gc lost the leased blob"
rm -f "$T/mnt/fill" "$T/mnt/fill2"
cairn -C "$S" blob put "$T/new" >/dev/null
[ -s "$S/db/$id.reserve" ] || die "the reserve was not made again"
cairn -C "$S" fsck | grep -qx '0 problems' || die "fsck after the full disk found problems"
umount "$T/mnt"
echo "full disk ok"
