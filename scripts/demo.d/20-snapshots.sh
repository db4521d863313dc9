# Part 2: filesystem snapshots named by their content.
say "snapshots: prepare over nothing, write, commit, mount with overlayfs"
SN=$(cairn -C "$E1" snapshot prepare --label demo-base)
echo "active snapshot: $SN"
mkdir -p "$W/snapfs"
run -C "$E1" mount "$SN" "$W/snapfs"
mkdir -p "$W/snapfs/app/bin" "$W/snapfs/etc"
echo "#!/bin/sh" >"$W/snapfs/app/bin/run"
chmod 755 "$W/snapfs/app/bin/run"
echo "greeting=hello" >"$W/snapfs/etc/app.conf"
cp "$W/data/blob10" "$W/snapfs/app/data"
run umount "$W/snapfs"
BASE=$(cairn -C "$E1" snapshot commit "$SN")
echo "committed: $BASE"
check "the active snapshot is gone once committed" [ -z "$(cairn -C "$E1" snapshot ls --active)" ]

say "a second layer over it: change a file, delete one"
SN2=$(cairn -C "$E1" snapshot prepare "$BASE" --label demo-top)
run -C "$E1" snapshot mounts "$SN2" --json
run -C "$E1" mount "$SN2" "$W/snapfs"
echo "greeting=bonjour" >"$W/snapfs/etc/app.conf"
rm "$W/snapfs/app/data"
run umount "$W/snapfs"
TOP=$(cairn -C "$E1" snapshot commit "$SN2")
run -C "$E1" snapshot stat "$TOP"

say "mount the committed chain and check it"
run -C "$E1" mount "$TOP" "$W/snapfs"
check "the top layer's change shows" grep -qx "greeting=bonjour" "$W/snapfs/etc/app.conf"
check "the deleted file is hidden by its whiteout" [ ! -e "$W/snapfs/app/data" ]
check "the base layer's file shows through, executable" [ -x "$W/snapfs/app/bin/run" ]
check "the mount is read-only" sh -c "! touch '$W/snapfs/x' 2>/dev/null"
run umount "$W/snapfs"
run -C "$E1" snapshot checkout "$TOP" "$W/checkout"
check "the checkout applies the whiteout too" [ ! -e "$W/checkout/app/data" ]
check "the checkout has the top's config" grep -qx "greeting=bonjour" "$W/checkout/etc/app.conf"

say "export the layers and import them into another engine: same names"
E2=$W/engine2
run init "$E2"
cairn -C "$E1" layer export "$BASE" --compression gzip -o "$W/base.tar.gz" >/dev/null
cairn -C "$E1" layer export "$TOP" --compression zstd -o "$W/top.tar.zst" >/dev/null
B2=$(cairn -C "$E2" layer import "$W/base.tar.gz")
T2=$(cairn -C "$E2" layer import "$W/top.tar.zst" --parent "$B2")
check "the base has the same chain id in both engines" [ "$B2" = "$BASE" ]
check "the top has the same chain id in both engines" [ "$T2" = "$TOP" ]
check "the uncompressed export's digest is the DiffID" [ "sha256:$(cairn -C "$E2" layer export "$TOP" | sha256sum | cut -d' ' -f1)" = "$(cairn -C "$E2" snapshot stat "$TOP" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["diff_id"])')" ]
run -C "$E2" snapshot ls
run -C "$E2" fsck
