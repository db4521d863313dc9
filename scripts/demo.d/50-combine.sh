# Part 5: combining states: two engines' states frozen, stacked, merged
# eagerly and merged by stacking them in overlayfs, each checked.
say "a second engine's state, sharing some blobs with the first, with a snapshot"
C5=$W/combine
mkdir -p "$C5"
EB=$C5/engine-b
run init "$EB"
mkdir -p "$W/data2"
for i in $(seq 1 100); do head -c $((i * 300)) /dev/urandom >"$W/data2/blob$i"; done
run -C "$EB" blob put "$W/data2"/blob* "$W/data"/blob1* >/dev/null
ACT=$(cairn -C "$EB" snapshot prepare)
mkdir -p "$EB/active/$ACT/fs/opt"; echo "built by engine b" >"$EB/active/$ACT/fs/opt/b.txt"
SNAPB=$(cairn -C "$EB" snapshot commit "$ACT")
echo "engine b's snapshot: $SNAPB"
check "the second engine's state passes fsck" cairn -C "$EB" fsck -q

say "freeze both: consistent read-only copies, objects hardlinked, not copied"
run freeze "$E1" "$C5/frozen1"
run freeze "$EB" "$C5/frozen2"
check "the frozen copies pass fsck" cairn -C "$C5/frozen1" fsck -q
field() { cairn -C "$1" info --json | python3 -c "import json,sys; print(json.load(sys.stdin)$2)"; }
check "a frozen copy says frozen" [ "$(field "$C5/frozen1" '["frozen"]')" = True ]
check "its big blob is a hardlink of the engine's" \
    [ "$(stat -c %i "$C5/frozen1/blobs/sha256/${BIG#sha256:}")" = "$(stat -c %i "$E1/blobs/sha256/${BIG#sha256:}")" ]
union() { cairn -C "$1" blob ls | awk '{print $1}' | sort; }
UNION=$( (union "$C5/frozen1"; union "$C5/frozen2") | sort -u)
echo "the union holds $(echo "$UNION" | wc -l) blobs"

say "stack (lazy): a new state reading through both; writes go to the top"
run init "$C5/stacked"
run stack add "$C5/stacked" "$C5/frozen1" "$C5/frozen2"
run stack ls "$C5/stacked"
check "the stack lists the union" [ "$(union "$C5/stacked")" = "$UNION" ]
check "a blob of the second engine reads through the stack, verified" \
    cairn -C "$C5/stacked" blob get --verify "sha256:$(sha256sum "$W/data2/blob7" | cut -d' ' -f1)" -o "$C5/blob7.out"
echo "written in the stacked state" >"$C5/top.txt"
TOP=$(cairn -C "$C5/stacked" blob put "$C5/top.txt")
check "a write lands in the top only" [ -f "$C5/stacked/blobs/sha256/${TOP#sha256:}" ]
check "the stack passes fsck" cairn -C "$C5/stacked" fsck -q

say "merge (eager): one self-contained state holding the union, 0 bytes copied"
printf '$ cairn merge --json %s %s %s\n' "$C5/merged" "$C5/frozen1" "$C5/frozen2"
cairn merge --json "$C5/merged" "$C5/frozen1" "$C5/frozen2" | tee "$C5/merge.json"
check "no byte was copied" python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["bytes_copied"])' "$C5/merge.json"
check "the merge holds the union" [ "$(union "$C5/merged")" = "$UNION" ]
check "the merge has no lowers" [ "$(field "$C5/merged" '["lowers"]')" = 0 ]
check "the merge passes fsck" cairn -C "$C5/merged" fsck -q
mkdir -p "$C5/mnt"
run -C "$C5/merged" mount "$SNAPB" "$C5/mnt"
check "engine b's snapshot mounts from the merge" [ "$(cat "$C5/mnt/opt/b.txt")" = "built by engine b" ]
umount "$C5/mnt"

say "merge by overlayfs: both frozen states as lowers, cairn init on the mount"
sums() { (cd "$1" && find . -type f -exec sha256sum {} + | sort); }
S1=$(sums "$C5/frozen1"); S2=$(sums "$C5/frozen2")
mkdir -p "$C5/ovl/upper" "$C5/ovl/work" "$C5/ovl/merged"
mount -t overlay overlay -o "lowerdir=$C5/frozen1:$C5/frozen2,upperdir=$C5/ovl/upper,workdir=$C5/ovl/work" "$C5/ovl/merged"
run init "$C5/ovl/merged"
run -C "$C5/ovl/merged" info
check "the mount shows the union" [ "$(union "$C5/ovl/merged")" = "$UNION" ]
check "the first engine's big blob reads back, verified" \
    cairn -C "$C5/ovl/merged" blob get --verify "$BIG" -o "$C5/big.out"
NEW=$(cairn -C "$C5/ovl/merged" blob put "$C5/top.txt")
check "a write lands in the upper only" [ -f "$C5/ovl/upper/blobs/sha256/${NEW#sha256:}" ]
check "the mount passes fsck" cairn -C "$C5/ovl/merged" fsck -q
run -C "$C5/ovl/merged" mount "$SNAPB" "$C5/mnt"
check "engine b's snapshot mounts from inside the overlayfs mount" [ "$(cat "$C5/mnt/opt/b.txt")" = "built by engine b" ]
umount "$C5/mnt"
umount "$C5/ovl/merged"
check "both frozen states are byte for byte unchanged" [ "$(sums "$C5/frozen1")" = "$S1" ] && [ "$(sums "$C5/frozen2")" = "$S2" ]
