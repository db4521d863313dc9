#!/usr/bin/env bash
# Bad input to the content store: each is refused with a clear message and a
# non-zero exit, and nothing is stored or lost.
source "$(dirname "$0")/lib.sh"
cairn init "$T/s" >/dev/null
export CAIRN_STATE=$T/s
printf 'hello\n' >"$T/hello"
good=sha256:$(sha "$T/hello")
cairn blob put "$T/hello" >/dev/null
snapshot() { (cd "$T/s" && find blobs -type f | sort; sqlite3 db/*.sqlite 'SELECT digest, size FROM blobs ORDER BY 1'); }
before=$(snapshot)
unchanged() { [ "$(snapshot)" = "$before" ] || die "the state changed: $1"; [ -z "$(ls -A "$T/s/tmp")" ] || die "staging left: $1"; }

step "malformed digests"
fails 1 "algorithm 'sha512' is not supported" -- cairn blob put --digest sha512:abcd "$T/hello"
fails 1 "algorithm 'md5' is not supported" -- cairn blob get md5:d41d8cd98f00b204e9800998ecf8427e
fails 1 "63 hex characters, expected 64" -- cairn blob get "${good%?}"
fails 1 "'G' at .* is not a lowercase hex digit" -- cairn blob stat "sha256:G${good:8}"
fails 1 "expected 'sha256:' and 64 hex" -- cairn blob rm nonsense
fails 1 "is not a lowercase hex digit" -- cairn blob get "sha256:$(echo "${good#sha256:}" | tr a-f A-F)"
unchanged "malformed digests"

step "--digest that does not match: nothing stored"
echo "other bytes" >"$T/other"
fails 1 "blob $good: the data's digest is sha256:$(sha "$T/other") \\(12 bytes\\); nothing was stored" -- cairn blob put --digest "$good" "$T/other"
unchanged "mismatched digest"
cairn blob ls | grep -q "$(sha "$T/other")" && die "mismatched data stored"

step "a truncated stream (fewer bytes than announced)"
head -c 1000 /dev/urandom >"$T/part"
fails 1 "got 1000 bytes, expected 4096; nothing was stored" -- cairn blob put --size 4096 "$T/part"
head -c 1000 "$T/part" | { fails 1 "got 1000 bytes, expected 4096" -- cairn blob put --size 4096 -; }
unchanged "truncated stream"

step "an unreadable input in a batch: nothing of the batch is stored"
mkdir "$T/batch"; for i in 1 2 3; do echo "batch $i" >"$T/batch/$i"; done
fails 1 "$T/missing: No such file or directory; nothing was stored" -- cairn blob put "$T/batch/1" "$T/missing" "$T/batch/2"
unchanged "failed batch"

step "a read-only state (permissions)"
if [ "$(id -u)" -ne 0 ]; then
    chmod -R a-w "$T/s"
    fails 1 "" -- cairn blob put "$T/other"
    chmod -R u+w "$T/s"
fi
step "a read-only state (read-only bind mount)"
mkdir "$T/ro"
mount --bind "$T/s" "$T/ro"
mount -o remount,bind,ro "$T/ro"
fails 1 "Read-only file system|read-only" -- cairn -C "$T/ro" blob put "$T/other"
cairn -C "$T/ro" blob get "$good" --verify | cmp -s - "$T/hello" || die "reads of a read-only state"
cairn -C "$T/ro" info >/dev/null || die "info of a read-only state"
umount "$T/ro"
unchanged "read-only state"

step "a full disk: ENOSPC on a small tmpfs, nothing half-stored"
mkdir "$T/small"
mount -t tmpfs -o size=2m tmpfs "$T/small"
cairn init "$T/small/s" >/dev/null
echo "fits" >"$T/fits"
fd=$(cairn -C "$T/small/s" blob put "$T/fits")
head -c $((3 << 20)) /dev/urandom >"$T/big"
fails 1 "No space left on device" -- cairn -C "$T/small/s" blob put "$T/big"
[ -z "$(ls -A "$T/small/s/tmp")" ] || die "ENOSPC left staging"
[ "$(cairn -C "$T/small/s" blob ls | wc -l)" = 1 ] || die "ENOSPC: rows changed"
cairn -C "$T/small/s" blob get "$fd" --verify >/dev/null || die "ENOSPC lost a blob"
cairn -C "$T/small/s" fsck | grep -q "^0 problems" || die "fsck after ENOSPC"
# And a batch that does not fit.
mkdir "$T/bigbatch"; for i in 1 2 3; do head -c $((1 << 20)) /dev/urandom >"$T/bigbatch/$i"; done
fails 1 "No space left on device" -- cairn -C "$T/small/s" blob put "$T/bigbatch"/*
[ -z "$(ls -A "$T/small/s/tmp")" ] || die "ENOSPC batch left staging"
cairn -C "$T/small/s" fsck | grep -q "^0 problems" || die "fsck after ENOSPC batch"
umount "$T/small"

step "a corrupt blob is not served"
B=$T/s/blobs/sha256/${good#sha256:}
chmod u+w "$B"; echo "jello" >"$B"
fails 1 "blob $good: corrupt" -- cairn blob get --verify "$good"
echo "all bad-input tests passed"
