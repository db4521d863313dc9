#!/usr/bin/env bash
# test-gc-stack.sh: gc never touches a lower. A frozen state with old,
# unreferenced blobs is used as a lower twice: through a lowers file
# ('cairn stack add') and through overlayfs (its database side by side in
# db/, its files in the same directory as the top's). gc of the top removes
# the top's own garbage only; the lower's blobs stay readable, its records
# resolve, and the lower is byte for byte unchanged.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cache-lib.sh"
sums() { (cd "$1" && find . -type f -exec sha256sum {} + | sort); }

step "a frozen state with garbage and a record"
cairn init "$T/a.live" >/dev/null
echo "lower garbage" >"$T/lg"; echo "lower result" >"$T/lr"
LG=$(cairn -C "$T/a.live" blob put "$T/lg")
LR=$(cairn -C "$T/a.live" blob put "$T/lr")
cairn -C "$T/a.live" record put "$(dg lowerkey)" "$LR" >/dev/null
age "$T/a.live"
cairn freeze -q "$T/a.live" "$T/a"
before=$(sums "$T/a")

step "stacked through a lowers file"
cairn init "$T/s" >/dev/null
cairn stack add "$T/s" "$T/a" >/dev/null
echo "top garbage" >"$T/tg"
TG=$(cairn -C "$T/s" blob put "$T/tg")
age "$T/s"
cairn -C "$T/s" gc --grace 0 --keep-duration 0 >"$T/gc1"
grep -q "removed blob $TG" "$T/gc1" || die "the top's garbage stayed: $(cat "$T/gc1")"
! grep -q "$LG" "$T/gc1" || die "gc touched the lower's blob"
cairn -C "$T/s" blob get "$LG" --verify | cmp -s - "$T/lg" || die "the lower's blob through the stack"
[ "$(cairn -C "$T/s" record get "$(dg lowerkey)")" = "blob $LR" ] || die "the lower's record"
[ "$(sums "$T/a")" = "$before" ] || die "the lower changed"

step "stacked through overlayfs: the lower's files are in the top's directory"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || die "overlayfs is not available"
mkdir -p "$T/upper" "$T/work" "$T/m"
mount -t overlay overlay -o "lowerdir=$T/a,upperdir=$T/upper,workdir=$T/work" "$T/m"
cairn init -q "$T/m"
echo "view garbage" >"$T/vg"
VG=$(cairn -C "$T/m" blob put "$T/vg")
age "$T/m"
cairn -C "$T/m" gc --grace 0 --keep-duration 0 >"$T/gc2"
grep -q "removed blob $VG" "$T/gc2" || die "the view's garbage stayed: $(cat "$T/gc2")"
! grep -q "$LG" "$T/gc2" || die "gc of the view removed the lower's blob (its file is the lower's)"
[ -f "$T/m/blobs/sha256/${LG#sha256:}" ] || die "the lower's file is gone from the view"
[ ! -e "$T/upper/blobs/sha256/${LG#sha256:}" ] || die "a whiteout or copy of the lower's file in the upper"
cairn -C "$T/m" fsck >/dev/null || die "fsck of the view"
umount "$T/m"
[ "$(sums "$T/a")" = "$before" ] || die "the lower changed under the view"
echo ok
