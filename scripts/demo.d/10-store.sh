# Part 1: an engine's state and its content store.
say "an engine's state: create it, store blobs, check them"
E1=$W/engine1
run init "$E1"
mkdir -p "$W/data"
for i in $(seq 1 200); do head -c $((i * 512)) /dev/urandom >"$W/data/blob$i"; done
head -c $((64 << 20)) /dev/urandom >"$W/data/big"
run -C "$E1" blob put "$W/data"/blob* >/dev/null
BIG=$(cairn -C "$E1" blob put --media-type application/octet-stream --label origin=demo "$W/data/big")
echo "big blob: $BIG"
check "the big blob's name is the sha256 of its bytes" [ "$BIG" = "sha256:$(sha256sum "$W/data/big" | cut -d' ' -f1)" ]
check "a second put of the same bytes stores nothing new" \
    [ "$(cairn -C "$E1" blob put "$W/data/big")" = "$BIG" ]
run -C "$E1" info
check "201 blobs recorded" [ "$(cairn -C "$E1" info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["blobs"]["count"])')" = 201 ]
cairn -C "$E1" blob get "$BIG" --verify -o "$W/big.out"
check "the blob reads back byte for byte" cmp -s "$W/data/big" "$W/big.out"
run -C "$E1" fsck
