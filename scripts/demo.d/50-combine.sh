# Part 5: combining states: two engines' states frozen, stacked, merged
# eagerly and merged by stacking them in overlayfs, each checked.
say "a second engine's state, sharing some blobs with the first"
E2=$W/engine2
run init "$E2"
mkdir -p "$W/data2"
for i in $(seq 1 100); do head -c $((i * 300)) /dev/urandom >"$W/data2/blob$i"; done
run -C "$E2" blob put "$W/data2"/blob* "$W/data"/blob1* >/dev/null
check "the second engine's state passes fsck" cairn -C "$E2" fsck -q

say "freeze both: consistent read-only copies, objects hardlinked, not copied"
run freeze "$E1" "$W/frozen1"
run freeze "$E2" "$W/frozen2"
check "the frozen copies pass fsck" cairn -C "$W/frozen1" fsck -q
field() { cairn -C "$1" info --json | python3 -c "import json,sys; print(json.load(sys.stdin)$2)"; }
check "a frozen copy says frozen" [ "$(field "$W/frozen1" '["frozen"]')" = True ]
check "its big blob is a hardlink of the engine's" \
    [ "$(stat -c %i "$W/frozen1/blobs/sha256/${BIG#sha256:}")" = "$(stat -c %i "$E1/blobs/sha256/${BIG#sha256:}")" ]
union() { cairn -C "$1" blob ls | awk '{print $1}' | sort; }
UNION=$( (union "$W/frozen1"; union "$W/frozen2") | sort -u)
echo "the union holds $(echo "$UNION" | wc -l) blobs"

say "stack (lazy): a new state reading through both; writes go to the top"
run init "$W/stacked"
run stack add "$W/stacked" "$W/frozen1" "$W/frozen2"
run stack ls "$W/stacked"
check "the stack lists the union" [ "$(union "$W/stacked")" = "$UNION" ]
check "a blob of the second engine reads through the stack, verified" \
    cairn -C "$W/stacked" blob get --verify "sha256:$(sha256sum "$W/data2/blob7" | cut -d' ' -f1)" -o /dev/null
echo "written in the stacked state" >"$W/top.txt"
TOP=$(cairn -C "$W/stacked" blob put "$W/top.txt")
check "a write lands in the top only" [ -f "$W/stacked/blobs/sha256/${TOP#sha256:}" ]
check "the stack passes fsck" cairn -C "$W/stacked" fsck -q

say "merge (eager): one self-contained state holding the union, 0 bytes copied"
printf '$ cairn merge --json %s %s %s\n' "$W/merged" "$W/frozen1" "$W/frozen2"
cairn merge --json "$W/merged" "$W/frozen1" "$W/frozen2" | tee "$W/merge.json"
check "no byte was copied" python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["bytes_copied"])' "$W/merge.json"
check "the merge holds the union" [ "$(union "$W/merged")" = "$UNION" ]
check "the merge has no lowers" [ "$(field "$W/merged" '["lowers"]')" = 0 ]
check "the merge passes fsck" cairn -C "$W/merged" fsck -q

say "merge by overlayfs: both frozen states as lowers, cairn init on the mount"
sums() { (cd "$1" && find . -type f -exec sha256sum {} + | sort); }
S1=$(sums "$W/frozen1"); S2=$(sums "$W/frozen2")
mkdir -p "$W/ovl/upper" "$W/ovl/work" "$W/ovl/merged"
mount -t overlay overlay -o "lowerdir=$W/frozen1:$W/frozen2,upperdir=$W/ovl/upper,workdir=$W/ovl/work" "$W/ovl/merged"
run init "$W/ovl/merged"
run -C "$W/ovl/merged" info
check "the mount shows the union" [ "$(union "$W/ovl/merged")" = "$UNION" ]
check "the first engine's big blob reads back, verified" \
    cairn -C "$W/ovl/merged" blob get --verify "$BIG" -o /dev/null
NEW=$(cairn -C "$W/ovl/merged" blob put "$W/top.txt")
check "a write lands in the upper only" [ -f "$W/ovl/upper/blobs/sha256/${NEW#sha256:}" ]
check "the mount passes fsck" cairn -C "$W/ovl/merged" fsck -q
umount "$W/ovl/merged"
check "both frozen states are byte for byte unchanged" [ "$(sums "$W/frozen1")" = "$S1" ] && [ "$(sums "$W/frozen2")" = "$S2" ]
