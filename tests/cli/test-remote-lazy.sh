#!/bin/bash
# test-remote-lazy.sh: cairn pull --lazy. A tag pulled lazily is a lower of
# the state; nothing but metadata is fetched until an object is read. On
# random states (blobs, random chains of snapshots, records, an image) a
# lazy stack answers every question as the eager pull does: blob ls, stat
# and get, snapshot ls and checkout, record get, image ls. Then: a remote
# that is down or lies fails the read, clearly, and stores nothing; the
# cache is shared by the states of the machine, bounded by cache gc and by
# a standing bound (cache bound) that each fetch keeps.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/image-lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
export CAIRN_CACHE_DIR=$T/cache
R=$T/remote
URL="file://$R"

# fetched: the objects the cache holds (blob files and snapshot directories).
fetched() {
    local n=0 d
    for d in "$CAIRN_CACHE_DIR"/lowers/*/; do
        [ -d "$d" ] || continue
        n=$((n + $(find "$d/blobs/sha256" "$d/snapshots" -mindepth 1 -maxdepth 1 | wc -l)))
    done
    echo "$n"
}

# mkrandom STATE SEED: random blobs, a random chain of snapshots, records
# naming blobs and snapshots; seed 1 also imports an image.
mkrandom() {
    local s=$1 seed=$2
    cairn init "$s" >/dev/null
    python3 - "$T/in-$seed" "$seed" <<'PY'
import os, random, sys
d, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
os.makedirs(d, exist_ok=True)
for i in range(rng.randint(3, 12)):
    with open(f"{d}/{i}", "wb") as f:
        f.write(rng.randbytes(rng.choice([0, 1, 100, 4096, 70000, 300000])))
PY
    cairn -C "$s" blob put "$T/in-$seed"/* >/dev/null
    local top
    top=$(python3 "$HERE/random-stack.py" "$s" "$seed") || die "seed $seed: no stack"
    local k=0 d
    for d in $(cairn -C "$s" blob ls --json | j '" ".join(b["digest"] for b in d[:4])') "$top"; do
        k=$((k + 1))
        cairn -C "$s" record put "sha256:$(echo "$seed-$k" | sha256sum | cut -d' ' -f1)" "$d" >/dev/null
    done
    if [ "$seed" = 1 ]; then
        make_image "$T/layout" v1
        cairn -C "$s" image import "$T/layout" >/dev/null
    fi
}

# records STATE: what record get answers for each key of the seeds
records() {
    local k sd
    for k in $(seq 1 5); do
        for sd in $SEEDS; do
            echo "record $sd-$k: $(cairn -C "$1" record get "sha256:$(echo "$sd-$k" | sha256sum | cut -d' ' -f1)" 2>&1 || true)"
        done
    done
}

# view STATE: what a user sees, one text; "lower" (where a row is) and
# "last_used" (when this state used it: an eager pull uses what it imports)
# dropped.
view() {
    local s=$1 co=$T/co-$RANDOM d c
    cairn -C "$s" blob ls --json | python3 -c '
import json, sys
for b in json.load(sys.stdin):
    b.pop("lower", None); b.pop("last_used", None); print(json.dumps(b, sort_keys=True))'
    for d in $(cairn -C "$s" blob ls --json | j '" ".join(b["digest"] for b in d)'); do
        cairn -C "$s" blob stat --json "$d" | python3 -c '
import json, sys
b = json.load(sys.stdin); b.pop("lower", None); print(json.dumps(b, sort_keys=True))'
        echo "$d $(cairn -C "$s" blob get "$d" | sha256sum | cut -d' ' -f1)"
    done
    cairn -C "$s" snapshot ls --json | python3 -c '
import json, sys
for b in json.load(sys.stdin):
    b.pop("lower", None); b.pop("last_used", None); print(json.dumps(b, sort_keys=True))'
    for c in $(cairn -C "$s" snapshot ls --json | j '" ".join(b["chain_id"] for b in d)'); do
        rm -rf "$co"
        cairn -C "$s" snapshot checkout "$c" "$co" >/dev/null 2>&1
        echo "checkout $c"
        python3 "$HERE/tree-list.py" "$co"
    done
    rm -rf "$co"
    records "$s"
    cairn -C "$s" image ls --json | python3 -c '
import json, sys
for b in json.load(sys.stdin):
    b.pop("lower", None); b.pop("last_used", None); print(json.dumps(b, sort_keys=True))'
}

SEEDS="1 2 3"
step "random states: a lazy stack answers as the eager pull does (seeds $SEEDS)"
for seed in $SEEDS; do
    mkrandom "$T/a$seed" "$seed"
    cairn -C "$T/a$seed" push "$URL" "t$seed" >/dev/null
done
# seed 3's tag has two members: the stack reads both, the pull merges them
mkrandom "$T/b3" 4
cairn -C "$T/b3" push "$URL" t3 >/dev/null
SEEDS="1 2 3 4"
for seed in 1 2 3; do
    cairn init "$T/e$seed" >/dev/null
    cairn -C "$T/e$seed" pull "$URL" "t$seed" >/dev/null
    cairn init "$T/l$seed" >/dev/null
    before=$(fetched)
    out=$(cairn -C "$T/l$seed" pull --lazy --json "$URL" "t$seed")
    [ "$(echo "$out" | j 'd["bytes_moved"]')" = 0 ] || die "seed $seed: a lazy pull moved objects: $out"
    [ "$(fetched)" = "$before" ] || die "seed $seed: a lazy pull fetched objects"
    # opening, listing and stat-ing fetch nothing either
    cairn -C "$T/l$seed" info >/dev/null
    cairn -C "$T/l$seed" blob ls >/dev/null
    cairn -C "$T/l$seed" snapshot ls >/dev/null
    [ "$(fetched)" = "$before" ] || die "seed $seed: listing a lazy stack fetched objects"
    # a record's result not fetched yet is there (fetched when read): a hit
    records "$T/e$seed" >"$T/rec-e$seed"
    records "$T/l$seed" >"$T/rec-l$seed"
    diff -u "$T/rec-e$seed" "$T/rec-l$seed" >&2 || die "seed $seed: before any read the lazy stack's records miss"
    [ "$(fetched)" = "$before" ] || die "seed $seed: record get fetched objects"
    view "$T/e$seed" >"$T/view-e$seed"
    view "$T/l$seed" >"$T/view-l$seed"
    grep -q '^checkout ' "$T/view-e$seed" || die "seed $seed: no snapshot in the view"
    diff -u "$T/view-e$seed" "$T/view-l$seed" >&2 || die "seed $seed: the lazy stack answers otherwise"
    [ "$(fetched)" -gt "$before" ] || die "seed $seed: reads fetched nothing"
done
grep -q '"name"' "$T/view-l1" || die "no image in seed 1's view"

step "the cache is shared: another state stacking the same member fetches nothing"
cairn init "$T/l1b" >/dev/null
cairn -C "$T/l1b" pull --lazy "$URL" t1 >/dev/null
before=$(fetched)
view "$T/l1b" >"$T/view-l1b"
diff -u "$T/view-e1" "$T/view-l1b" >&2 || die "a second lazy stack answers otherwise"
[ "$(fetched)" = "$before" ] || die "the second state fetched again what the cache holds"

step "the stack survives: fsck of the top, and a push of the lazy stack is whole"
cairn -C "$T/l2" fsck >/dev/null || die "fsck of a lazy stack failed"
cairn -C "$T/l2" push "file://$T/remote2" again >/dev/null
cairn init "$T/e2b" >/dev/null
cairn -C "$T/e2b" pull "file://$T/remote2" again >/dev/null
view "$T/e2b" >"$T/view-e2b"
diff -u "$T/view-e2" "$T/view-e2b" >&2 || die "a push of a lazy stack lost something"

step "merge and flatten of a lazy stack fetch what they take: the union is whole, the cache can go"
cairn cache gc --max-bytes 0 >/dev/null
out=$(cairn merge --json "$T/m1" "$T/l1") || die "merge of a lazy stack failed"
[ "$(echo "$out" | j 'd["refused"]')" = 0 ] || die "merge of a lazy stack left objects out: $out"
cairn init "$T/f1" >/dev/null
cairn -C "$T/f1" pull --lazy "$URL" t1 >/dev/null
cairn cache gc --max-bytes 0 >/dev/null
out=$(cairn -C "$T/f1" flatten --json) || die "flatten of a lazy stack failed"
[ "$(echo "$out" | j 'd["refused"]')" = 0 ] || die "flatten of a lazy stack left objects out: $out"
[ -z "$(cairn -C "$T/f1" stack ls)" ] || die "flatten left a lower: $(cairn -C "$T/f1" stack ls)"
cairn cache gc --max-bytes 0 >/dev/null # what they hold is their own
for s in m1 f1; do
    cairn -C "$T/$s" fsck >/dev/null || die "fsck of the $s of a lazy stack failed"
    view "$T/$s" >"$T/view-$s"
    diff -u "$T/view-e1" "$T/view-$s" >&2 || die "the $s of a lazy stack answers otherwise"
done
[ "$(fetched)" = 0 ] || die "reading the merged states fetched again"

step "an image's snapshot travels as the image's layer blob: a checkout fetches it once, as the blob"
cairn init "$T/i1" >/dev/null
cairn -C "$T/i1" pull --lazy "$URL" t1 >/dev/null
cairn cache gc --max-bytes 0 >/dev/null
# a snapshot whose layer (the lazy lower's objects list) is a blob of the stack
pair=$(python3 - "$CAIRN_CACHE_DIR" "$(cairn -C "$T/i1" blob ls --json | j '" ".join(b["digest"] for b in d)')" <<'PY'
import glob, sys
blobs = set(sys.argv[2].split())
for f in glob.glob(sys.argv[1] + "/lowers/*/objects"):
    for line in open(f):
        w = line.split()
        if len(w) >= 2 and w[1] in blobs:
            print(w[0], w[1]); sys.exit(0)
PY
)
[ -n "$pair" ] || die "seed 1: no snapshot travels as an image's layer blob"
set -- $pair
cairn -C "$T/i1" snapshot checkout "$1" "$T/co-i1" >/dev/null || die "checkout of the image's snapshot failed"
mv "$R" "$T/remote-away"
cairn -C "$T/i1" blob get "$2" >"$T/layer-i1" 2>"$T/err-i1" ||
    die "the image's layer blob was not kept by the checkout that fetched it: $(cat "$T/err-i1")"
mv "$T/remote-away" "$R"
[ "$(sha256sum <"$T/layer-i1" | cut -d' ' -f1)" = "${2#sha256:}" ] || die "the layer blob read back wrong"
rm -rf "$T/co-i1"
# and a push sends that layer once: as the blob (objects sent: every file
# of the new remote but its database, config and manifest)
out=$(cairn -C "$T/a1" push --json "file://$T/remote-once" t1)
files=$(ls "$T/remote-once/blobs/sha256" | wc -l)
[ "$(echo "$out" | j 'd["objects_moved"]')" = $((files - 3)) ] ||
    die "a push counted $(echo "$out" | j 'd["objects_moved"]') objects sent for $((files - 3)) stored: $out"

step "a remote that is down fails the read, clearly, and stores nothing"
mkrandom "$T/a5" 5 >/dev/null
cairn -C "$T/a5" push "$URL" t5 >/dev/null
cairn init "$T/l5" >/dev/null
cairn -C "$T/l5" pull --lazy "$URL" t5 >/dev/null
blob=$(cairn -C "$T/a5" blob ls --json | j '[b for b in d if b["size"] > 0][0]["digest"]')
snap=$(cairn -C "$T/a5" snapshot ls --json | j 'd[-1]["chain_id"]')
mv "$R" "$T/remote-away"
before=$(fetched)
fails 1 "blob $blob: fetch from lazy lower .*\($URL\).*not stored" -- cairn -C "$T/l5" blob get "$blob"
fails 1 "snapshot .*: fetch from lazy lower" -- cairn -C "$T/l5" snapshot checkout "$snap" "$T/co5"
[ "$(fetched)" = "$before" ] || die "a failed fetch stored something"
[ ! -e "$T/co5" ] || [ -z "$(ls -A "$T/co5")" ] || die "a failed checkout left files"
for d in "$CAIRN_CACHE_DIR"/lowers/*/tmp; do
    [ -z "$(ls -A "$d")" ] || die "a failed fetch left staging in $d"
done
mv "$T/remote-away" "$R"
[ "$(cairn -C "$T/l5" blob get "$blob" | sha256sum | cut -d' ' -f1)" = "${blob#sha256:}" ] ||
    die "the read did not recover once the remote was back"

step "a remote that lies: wrong bytes refused at the read, nothing of them stored"
blob2=$(cairn -C "$T/a5" blob ls --json | j '[b for b in d if b["size"] > 0][-1]["digest"]')
[ "$blob2" != "$blob" ] || die "seed 5 has one non-empty blob"
f="$R/blobs/sha256/${blob2#sha256:}"
cp "$f" "$T/saved"
head -c "$(stat -c %s "$f")" /dev/urandom >"$f"
before=$(fetched)
fails 1 "blob $blob2: .*hash to sha256:" -- cairn -C "$T/l5" blob get "$blob2"
[ "$(fetched)" = "$before" ] || die "wrong bytes were stored"
# a layer that lies: its tarball replaced
layer=$(python3 - "$R" "$snap" <<'PY'
import json, os, sys
r, snap = sys.argv[1], sys.argv[2]
for tag in os.listdir(f"{r}/states"):
    if tag != "t5":
        continue
    for m in os.listdir(f"{r}/states/{tag}"):
        for l in json.load(open(f"{r}/states/{tag}/{m}"))["layers"]:
            if l.get("annotations", {}).get("cairn.chain-id") == snap:
                print(l["digest"])
PY
)
[ -n "$layer" ] || die "no layer for $snap in the remote"
lf="$R/blobs/sha256/${layer#sha256:}"
cp "$lf" "$T/saved-layer"
head -c "$(stat -c %s "$lf")" /dev/urandom >"$lf"
fails 1 "snapshot .*hash to sha256:" -- cairn -C "$T/l5" snapshot checkout "$snap" "$T/co5"
# (its parents, whose layers are right, may be fetched: not it)
! ls -d "$CAIRN_CACHE_DIR"/lowers/*/snapshots/"${snap#sha256:}" 2>/dev/null || die "a lying layer was stored"
cp "$T/saved" "$f"
cp "$T/saved-layer" "$lf"
cairn -C "$T/l5" snapshot checkout "$snap" "$T/co5" >/dev/null 2>&1 || die "checkout did not recover"

step "cache gc bounds the cache: what was fetched longest ago goes; a read fetches it again"
total=$(cairn cache gc --dry-run --json --max-bytes 0 | j 'd["bytes_removed"]')
[ "$total" -gt 0 ] || die "cache gc sees nothing to remove"
out=$(cairn cache gc --json --max-bytes $((total / 2)))
[ "$(echo "$out" | j 'd["bytes_kept"] <= '$((total / 2)))" = True ] || die "cache gc left too much: $out"
[ "$(echo "$out" | j 'd["objects_removed"]')" -gt 0 ] || die "cache gc removed nothing: $out"
cairn cache gc --max-bytes 0 >/dev/null
[ "$(fetched)" = 0 ] || die "cache gc --max-bytes 0 left objects"
view "$T/l1" >"$T/view-l1-again"
diff -u "$T/view-e1" "$T/view-l1-again" >&2 || die "after cache gc the lazy stack answers otherwise"

step "cache bound: every fetch keeps the cache under the standing bound"
# blob reads, each on its own (a snapshot's chain is read piece by piece:
# what was placed in the last CAIRN_CACHE_GRACE seconds stays; none here)
blobs_of() {
    local d
    for d in $(cairn -C "$1" blob ls --json | j '" ".join(b["digest"] for b in d)'); do
        echo "$d $(cairn -C "$1" blob get "$d" | sha256sum | cut -d' ' -f1)"
    done
}
export CAIRN_CACHE_GRACE=0
cairn cache gc --max-bytes 0 >/dev/null
blobs_of "$T/e1" >"$T/blobs-e1"
blobs_of "$T/l1" >/dev/null # every blob of l1 fetched, no bound
full=$(cairn cache gc --dry-run --json --max-bytes 0 | j 'd["bytes_removed"]')
# the largest: the bound may be passed by a sixteenth and one object
big=$(python3 - "$CAIRN_CACHE_DIR" <<'PY'
import glob, os, sys
print(max([os.lstat(o).st_blocks * 512 for o in glob.glob(sys.argv[1] + "/lowers/*/blobs/sha256/*")] + [0]))
PY
)
cairn cache gc --max-bytes 0 >/dev/null
bound=$((full / 3))
cairn cache bound "$bound"
[ "$(cat "$CAIRN_CACHE_DIR/max-bytes")" = "$bound" ] || die "cache bound: not recorded"
blobs_of "$T/l1" >"$T/blobs-l1-bound"
diff -u "$T/blobs-e1" "$T/blobs-l1-bound" >&2 || die "under a cache bound the lazy stack's blobs read otherwise"
now=$(cairn cache gc --dry-run --json --max-bytes 0 | j 'd["bytes_removed"]')
[ "$now" -lt "$full" ] || die "cache bound $bound: the cache holds $now bytes, all it fetched ($full)"
[ "$now" -le $((bound + bound / 16 + big)) ] || die "cache bound $bound: the cache holds $now bytes"
cairn cache bound none
[ ! -e "$CAIRN_CACHE_DIR/max-bytes" ] || die "cache bound none: still recorded"
fails 2 "expected a size" -- cairn cache bound lots
unset CAIRN_CACHE_GRACE

step "bad input: --cache without --lazy, cache gc without a bound"
fails 2 "--cache is for --lazy" -- cairn -C "$T/l1" pull --cache "$T/x" "$URL" t1
fails 2 "--max-bytes is needed" -- cairn cache gc
fails 1 "no state under tag nope" -- cairn -C "$T/l1" pull --lazy "$URL" nope
# a URL is written into the lower's remote file, a line a key: no line breaks
fails 1 "control character" -- cairn -C "$T/l1" pull --lazy "$(printf '%s\nendpoint=http://elsewhere' "$URL")" t1
echo ok
