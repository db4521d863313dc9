# Part 3: OCI images: one built with umoci is imported, checked out, exported.
say "an image: build one with umoci, import it, check it out, export it"
IMGW=$W/image
mkdir -p "$IMGW"
umoci init --layout "$IMGW/layout" >/dev/null
umoci new --image "$IMGW/layout:app"
umoci unpack --image "$IMGW/layout:app" "$IMGW/bundle" >/dev/null
mkdir -p "$IMGW/bundle/rootfs/app/data"
for i in $(seq 1 50); do head -c $((i * 1000)) /dev/urandom >"$IMGW/bundle/rootfs/app/data/file$i"; done
echo "hello from the image" >"$IMGW/bundle/rootfs/app/hello"
umoci repack --refresh-bundle --image "$IMGW/layout:app" "$IMGW/bundle" >/dev/null
rm "$IMGW/bundle/rootfs/app/data/file1"                      # a whiteout in the next layer
echo "version 2" >"$IMGW/bundle/rootfs/app/version"
umoci repack --refresh-bundle --image "$IMGW/layout:app" "$IMGW/bundle" >/dev/null
run -C "$E1" image import "$IMGW/layout"
run -C "$E1" image ls
TOP=$(cairn -C "$E1" image show --json app | python3 -c 'import json,sys; print(json.load(sys.stdin)["top"])')
check "the image has two layers" \
    [ "$(cairn -C "$E1" image show --json app | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"])')" = 2 ]
cairn -C "$E1" snapshot checkout "$TOP" "$IMGW/checkout" >/dev/null 2>&1
check "the checkout holds the image's file" \
    [ "$(cat "$IMGW/checkout/app/hello")" = "hello from the image" ]
check "the deleted file is gone from the top" [ ! -e "$IMGW/checkout/app/data/file1" ]
check "the checkout matches the bundle umoci made" diff -r "$IMGW/bundle/rootfs/app" "$IMGW/checkout/app"
run -C "$E1" image export app "$IMGW/exported"
umoci unpack --image "$IMGW/exported:app" "$IMGW/unpacked" >/dev/null
check "umoci unpacks the export to the same files" diff -r "$IMGW/bundle/rootfs/app" "$IMGW/unpacked/rootfs/app"
