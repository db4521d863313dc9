# Part 3b: a build step on top of the image: a writable snapshot over its top
# layer, a change, a commit, and the result mounted.
say "a build step over the image: prepare on its top, change, commit, mount"
IMGTOP=$(cairn -C "$E1" image show --json app | python3 -c 'import json,sys; print(json.load(sys.stdin)["top"])')
STEP=$(cairn -C "$E1" snapshot prepare "$IMGTOP" --label build-step)
mkdir -p "$W/stepfs"
run -C "$E1" mount "$STEP" "$W/stepfs"
check "the image's files show in the writable snapshot" grep -qx "hello from the image" "$W/stepfs/app/hello"
echo "built on top" >"$W/stepfs/app/built"
rm "$W/stepfs/app/version"
run umount "$W/stepfs"
RESULT=$(cairn -C "$E1" snapshot commit "$STEP")
echo "build result: $RESULT"
check "the result's parent is the image's top" \
    [ "$(cairn -C "$E1" snapshot stat "$RESULT" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["parent"])')" = "$IMGTOP" ]
run -C "$E1" mount "$RESULT" "$W/stepfs"
check "the mounted result has the step's file" grep -qx "built on top" "$W/stepfs/app/built"
check "the step's deletion hides the image's file" [ ! -e "$W/stepfs/app/version" ]
check "the image's other files are still there" grep -qx "hello from the image" "$W/stepfs/app/hello"
run umount "$W/stepfs"
