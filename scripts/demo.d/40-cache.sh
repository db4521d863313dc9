# Part 4: the build cache: records, a volume, a lease, and gc under a budget.
say "cache records: an engine records what its steps produced, and looks them up"
E3=$W/engine3
run init "$E3"
key() { printf 'sha256:%s' "$(printf '%s' "$1" | sha256sum | cut -d' ' -f1)"; }
OP=$(key "op: RUN make")
for i in 1 2 3 4 5 6; do
    head -c $((1 << 20)) /dev/urandom >"$W/out$i"
    OUT[$i]=$(cairn -C "$E3" blob put "$W/out$i")
    cairn -C "$E3" record put "$(key "step $i")" "${OUT[$i]}" >/dev/null
done
run -C "$E3" record put "$(key "step 2")" --link-from "$(key "step 1")" --op "$OP" --input 0
run -C "$E3" record links "$(key "step 1")"
check "a recorded step is a hit" [ "$(cairn -C "$E3" record get "$(key "step 3")")" = "blob ${OUT[3]}" ]
check "an unknown step is a miss (exit 1)" sh -c "! '$CAIRN' -C '$E3' record get '$(key "never ran")' 2>/dev/null"

say "a volume: a package cache kept warm between sessions"
VID=$(cairn -C "$E3" volume open apt-cache)
mkdir -p "$W/vol"
run -C "$E3" mount "$VID" "$W/vol"
mkdir -p "$W/vol/archives" && cp "$W/out1" "$W/vol/archives/pkg.deb"
run umount "$W/vol"
V1=$(cairn -C "$E3" volume save apt-cache)
VID=$(cairn -C "$E3" volume open apt-cache)
run -C "$E3" mount "$VID" "$W/vol"
check "the next session sees the cached package" cmp -s "$W/out1" "$W/vol/archives/pkg.deb"
echo "more" >"$W/vol/archives/index"
run umount "$W/vol"
V2=$(cairn -C "$E3" volume save apt-cache)
run -C "$E3" volume versions apt-cache

say "a session's lease, recent use, and some garbage"
head -c $((1 << 20)) /dev/urandom >"$W/leased"
head -c $((1 << 20)) /dev/urandom >"$W/junk"
run -C "$E3" lease create session --ttl 1h
LEASED=sha256:$(sha256sum "$W/leased" | cut -d' ' -f1)
run -C "$E3" lease add session blob "$LEASED"
cairn -C "$E3" blob put "$W/leased" >/dev/null
JUNK=$(cairn -C "$E3" blob put "$W/junk")
sleep 1
for i in 4 5 6; do cairn -C "$E3" record get "$(key "step $i")" >/dev/null; done
sleep 3 # past gc's window for uses made while it runs
run -C "$E3" du

say "gc under a budget of 5.5 MiB: garbage first, then the least recently used records"
run -C "$E3" gc --grace 0 --max-used 5.5MiB --dry-run
run -C "$E3" gc --grace 0 --max-used 5.5MiB
for i in 1 2 3; do
    check "step $i (least recently used) was evicted" sh -c "! '$CAIRN' -C '$E3' record get '$(key "step $i")' 2>/dev/null"
done
for i in 4 5 6; do
    check "step $i (used recently) stayed" [ "$(cairn -C "$E3" record get "$(key "step $i")")" = "blob ${OUT[$i]}" ]
done
check "the leased blob stayed" [ "$(cairn -C "$E3" blob stat "$LEASED" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')" = $((1 << 20)) ]
check "the garbage went" sh -c "! '$CAIRN' -C '$E3' blob stat '$JUNK' 2>/dev/null"
check "the volume's current version stayed" [ "$(cairn -C "$E3" volume ls --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["current"])')" = "$V2" ]
check "its parent version stayed under it" [ -d "$E3/snapshots/${V1#sha256:}" ]
run -C "$E3" lease rm session
run -C "$E3" fsck
