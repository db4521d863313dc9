#!/usr/bin/env bash
# test-mount.sh: snapshots mounted with real overlayfs match their checkout:
# contents, modes, owners, xattrs, symlink targets, hardlinks; whiteouts and
# opaque directories hide what is below in both; long chains mount.
source "$(dirname "$0")/lib.sh"
LIST="$(dirname "$0")/tree-list.py"
S=$T/s
cairn init "$S" >/dev/null

step "three layers: files, then a whiteout and an opaque directory, then more"
A=$(cairn -C "$S" snapshot prepare --label one)
F=$S/active/$A/fs
mkdir -p "$F/etc" "$F/data/keep" "$F/data/old" "$F/bin"
echo "hello" >"$F/etc/hello"
echo "gone soon" >"$F/etc/doomed"
echo "old" >"$F/data/old/file"
echo "kept" >"$F/data/keep/file"
printf 'binary\0data' >"$F/bin/tool"
chmod 4755 "$F/bin/tool"
chown 1234:5678 "$F/etc/hello"
ln "$F/bin/tool" "$F/bin/tool-link"
ln -s ../etc/hello "$F/bin/hello-link"
setfattr -n user.origin -v layer-one "$F/etc/hello"
setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= "$F/bin/tool" 2>/dev/null || true
mknod "$F/etc/null" c 1 3
mkfifo "$F/etc/fifo"
L1=$(cairn -C "$S" snapshot commit "$A")

B=$(cairn -C "$S" snapshot prepare "$L1" --label two)
MNT=$T/mnt; mkdir -p "$MNT"
cairn -C "$S" mount "$B" "$MNT"
fails 1 "is mounted .*unmount it first" -- cairn -C "$S" snapshot commit "$B"
fails 1 "is mounted" -- cairn -C "$S" snapshot rm "$B"
rm "$MNT/etc/doomed"
rm -r "$MNT/data/old"
mkdir "$MNT/data/old"
echo "new" >"$MNT/data/old/other"
echo "more" >>"$MNT/etc/hello"
cairn umount "$MNT"
[ -c "$S/active/$B/fs/etc/doomed" ] || die "the upper has no whiteout for etc/doomed"
L2=$(cairn -C "$S" snapshot commit "$B")

C=$(cairn -C "$S" snapshot prepare "$L2" --label three)
echo "three" >"$S/active/$C/fs/three"
L3=$(cairn -C "$S" snapshot commit "$C")

step "the export of the middle layer has the OCI whiteout and opaque markers"
cairn -C "$S" layer export "$L2" -o "$T/l2.tar" >/dev/null
tar -tf "$T/l2.tar" >"$T/l2.list"
grep -qx 'etc/.wh.doomed' "$T/l2.list" || die "no etc/.wh.doomed in the layer"
grep -qx 'data/old/.wh..wh..opq' "$T/l2.list" || die "no opaque marker in the layer"

step "mount the chain read-only and compare it with checkouts (linked and copied)"
cairn -C "$S" mount "$L3" "$MNT"
python3 "$LIST" "$MNT" >"$T/mounted"
cairn umount "$MNT"
cairn -C "$S" snapshot checkout "$L3" "$T/co" -q
python3 "$LIST" "$T/co" >"$T/co.list"
cairn -C "$S" snapshot checkout "$L3" "$T/cc" --copy --json >"$T/cc.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["copied"] > 0, d' "$T/cc.json"
python3 "$LIST" "$T/cc" >"$T/cc.list"
diff -u "$T/mounted" "$T/co.list" || die "the checkout differs from the overlayfs mount"
diff -u "$T/mounted" "$T/cc.list" || die "the copied checkout differs from the overlayfs mount"
grep -q '^etc/hello .* 1234:5678 .*user.origin=' "$T/mounted" || die "owner or xattr lost: $(grep etc/hello "$T/mounted")"
grep -q '^bin/hello-link .*-> ../etc/hello' "$T/mounted" || die "symlink target lost"
grep -q '^bin/tool .*links=bin/tool,bin/tool-link' "$T/mounted" || die "hardlink lost"
grep -q '^bin/tool 0o104755' "$T/mounted" || die "setuid mode lost"
grep -q '^etc/null .*dev 1,3' "$T/mounted" || die "device node lost"

step "a whiteout hides the lower file, an opaque directory its lower contents, in both"
for t in "$T/mounted" "$T/co.list"; do
    ! grep -q '^etc/doomed' "$t" || die "etc/doomed shows through its whiteout in $t"
    ! grep -q '^data/old/file' "$t" || die "data/old/file shows through the opaque directory in $t"
    grep -q '^data/old/other' "$t" || die "data/old/other missing in $t"
    grep -q '^data/keep/file' "$t" || die "data/keep/file missing in $t"
done
[ "$(cat "$T/co/etc/hello")" = "$(printf 'hello\nmore')" ] || die "etc/hello has the wrong contents"

step "a view mounts read-only; mounts --json is an OCI mounts entry"
V=$(cairn -C "$S" snapshot view "$L1")
cairn -C "$S" mount "$V" "$MNT"
[ -f "$MNT/etc/doomed" ] || die "the view of the first layer lacks etc/doomed"
if touch "$MNT/x" 2>/dev/null; then die "a view is writable"; fi
cairn umount "$MNT"
cairn -C "$S" snapshot mounts "$C" --json >/dev/null 2>&1 && die "a committed active id still mounts"
cairn -C "$S" snapshot mounts "$V" --json | python3 -c '
import json, sys
m = json.load(sys.stdin)[0]
assert m["type"] == "overlay" and m["source"] == "overlay", m
assert "ro" in m["options"], m
assert any(o.startswith("lowerdir=") for o in m["options"]), m'

step "a chain of 100 layers mounts (more than a page of lowerdirs)"
P=
for i in $(seq 1 100); do
    mkdir -p "$T/l/$i"
    echo "$i" >"$T/l/$i/file$i"
    echo "$i" >"$T/l/$i/top"
    tar -C "$T/l/$i" -cf "$T/l/$i.tar" .
    P=$(cairn -C "$S" layer import "$T/l/$i.tar" ${P:+--parent "$P"})
done
cairn -C "$S" snapshot mounts "$P" | awk '{print length($0)}' | { read -r n; [ "$n" -gt 4096 ] || die "the options are only $n bytes"; }
cairn -C "$S" mount "$P" "$MNT"
[ "$(cat "$MNT/top")" = 100 ] || die "the top layer does not win: $(cat "$MNT/top")"
[ "$(ls "$MNT" | grep -c '^file')" = 100 ] || die "not all 100 layers show"
python3 "$LIST" "$MNT" >"$T/long.mounted"
cairn umount "$MNT"
cairn -C "$S" snapshot checkout "$P" "$T/long" -q
python3 "$LIST" "$T/long" >"$T/long.co"
diff -u "$T/long.mounted" "$T/long.co" || die "the long chain's checkout differs from its mount"
W=$(cairn -C "$S" snapshot prepare "$P")
cairn -C "$S" mount "$W" "$MNT"
echo 101 >"$MNT/top"
cairn umount "$MNT"
P2=$(cairn -C "$S" snapshot commit "$W")
cairn -C "$S" snapshot checkout "$P2" "$T/long2" -q
[ "$(cat "$T/long2/top")" = 101 ] || die "a write over the long chain was lost"

step "errors"
fails 1 "not there" -- cairn -C "$S" mount "sha256:$(printf '%064d' 0)" "$MNT"
fails 1 "umount .*$MNT" -- cairn umount "$MNT"
fails 2 "expected" -- cairn -C "$S" mount "$P"
echo "ok"
