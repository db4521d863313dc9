#!/bin/bash
# test-remote-file.sh: remotes in a directory (file://), end to end: push and
# pull, only what is missing moving, concurrent pushes under one tag kept and
# merged, compact moving no object, gc, a push killed midway, wrong bytes in
# the remote refused, and the remote read by skopeo as an OCI image layout.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/image-lib.sh"
j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
R="$T/remote"
URL="file://$R"

# mkstate DIR TAG N SIZE: a state with N random blobs of SIZE bytes, a chain
# of two snapshots and a record naming the top one.
mkstate() {
    cairn init "$1" >/dev/null
    mkdir -p "$T/in-$2"
    for i in $(seq 1 "$3"); do head -c "$4" /dev/urandom >"$T/in-$2/$i"; done
    cairn -C "$1" blob put "$T/in-$2"/* >/dev/null
    local act base top
    act=$(cairn -C "$1" snapshot prepare)
    mkdir -p "$1/active/$act/fs/etc"; echo "$2 base" >"$1/active/$act/fs/etc/$2"
    ln -s "/etc/$2" "$1/active/$act/fs/etc/link-$2"
    base=$(cairn -C "$1" snapshot commit "$act")
    act=$(cairn -C "$1" snapshot prepare "$base")
    mkdir -p "$1/active/$act/fs/srv"; head -c 50000 /dev/urandom >"$1/active/$act/fs/srv/$2"
    top=$(cairn -C "$1" snapshot commit "$act")
    cairn -C "$1" record put "sha256:$(echo "$2" | sha256sum | cut -d' ' -f1)" "$top" >/dev/null
    echo "$top"
}
# content DIR: what a state holds, to compare two states by
content() {
    { cairn -C "$1" blob ls --json | j '"\n".join(sorted(b["digest"]+" "+str(b["size"]) for b in d))'
      cairn -C "$1" snapshot ls --json | j '"\n".join(sorted(s["chain_id"] for s in d))'
    } | sort
}
fsck_clean() { cairn -C "$1" fsck >/dev/null || die "fsck of $1 is not clean: $(cairn -C "$1" fsck)"; }

step "remote add, ls, rm; credentials in a URL are refused"
top=$(mkstate "$T/a" a 20 262144)
cairn -C "$T/a" remote add origin "$URL"
cairn -C "$T/a" remote ls | grep -q "^origin	$URL\$" || die "remote ls: $(cairn -C "$T/a" remote ls)"
[ "$(cairn -C "$T/a" remote ls --json | j 'd["remotes"][0]["url"]')" = "$URL" ] || die "remote ls --json"
fails 1 "already names" -- cairn -C "$T/a" remote add origin file:///elsewhere
fails 1 "credentials in a URL are refused" -- cairn -C "$T/a" remote add s s3://key:secret@bucket/x
cairn -C "$T/a" remote add spare file:///nowhere
cairn -C "$T/a" remote rm spare | grep -q "removed remote spare" || die "remote rm"
fails 1 "no such remote" -- cairn -C "$T/a" remote rm spare
fails 1 "no such remote" -- cairn -C "$T/a" push nosuch main

step "push, then pull into an empty state: the same content, fsck clean"
out=$(cairn -C "$T/a" push --json origin main)
[ "$(echo "$out" | j 'd["objects"]')" = 22 ] || die "push: objects: $out"
[ "$(echo "$out" | j 'd["objects_moved"]')" = 22 ] || die "push: sent: $out"
[ -f "$R/oci-layout" ] && [ -f "$R/index.json" ] || die "the remote is not an OCI layout"
[ "$(ls "$R/states/main" | wc -l)" = 1 ] || die "one state under main expected"
out=$(cairn -C "$T/a" push --json origin main)
[ "$(echo "$out" | j 'd["objects_moved"]')" = 0 ] || die "an unchanged push sent objects: $out"
[ "$(ls "$R/states/main" | wc -l)" = 1 ] || die "an unchanged push is a new member"
cairn init "$T/b" >/dev/null
out=$(cairn -C "$T/b" pull --json "$URL" main)       # a URL where a name goes
[ "$(echo "$out" | j 'd["objects_moved"]')" = 22 ] || die "pull: fetched: $out"
[ "$(content "$T/a")" = "$(content "$T/b")" ] || die "pulled content differs"
fsck_clean "$T/b"
key="sha256:$(echo a | sha256sum | cut -d' ' -f1)"
[ "$(cairn -C "$T/b" record get "$key")" = "snapshot $top" ] || die "the record did not travel"
cairn -C "$T/b" snapshot checkout "$top" "$T/co" >/dev/null
cmp "$T/co/srv/a" "$T/a/snapshots/${top#sha256:}/srv/a" || die "snapshot content differs"
[ "$(readlink "$T/co/etc/link-a")" = /etc/a ] || die "a symlink did not travel"

step "pull again: nothing fetched (the state holds it all)"
out=$(cairn -C "$T/b" pull --json "$URL" main)
[ "$(echo "$out" | j 'd["objects_moved"]')" = 0 ] || die "re-pull fetched: $out"
[ "$(echo "$out" | j 'd["bytes_skipped"]')" -gt 5000000 ] || die "re-pull skipped: $out"

step "re-push after 5% new data sends about 5% of the bytes"
head -c 262144 /dev/urandom >"$T/new5"
cairn -C "$T/a" blob put "$T/new5" >/dev/null
out=$(cairn -C "$T/a" push --json origin main)
sent=$(echo "$out" | j 'd["bytes_moved"]')
[ "$sent" -ge 262144 ] && [ "$sent" -le $((262144 * 11 / 10)) ] || die "re-push sent $sent bytes for 262144 new: $out"
[ "$(echo "$out" | j 'd["objects_moved"]')" = 1 ] || die "re-push sent more than the new blob: $out"
echo "re-push: $sent bytes sent for 262144 new ($(echo "$out" | j 'd["bytes_skipped"]') skipped)"

step "a pull of a state whose lowers hold objects fetches none of them"
cairn freeze "$T/b" "$T/bf" >/dev/null
cairn init "$T/c" >/dev/null
cairn stack add "$T/c" "$T/bf"
out=$(cairn -C "$T/c" pull --json "$URL" main)
[ "$(echo "$out" | j 'd["objects_moved"]')" = 1 ] || die "pull over a lower fetched what it holds: $out"
[ "$(echo "$out" | j 'd["bytes_moved"]')" = 262144 ] || die "pull over a lower: $out"
fsck_clean "$T/c"

step "two pushes under one tag at once: both kept, a pull merges them"
mkstate "$T/x" x 30 65536 >/dev/null
mkstate "$T/y" y 30 65536 >/dev/null
cairn -C "$T/x" push --json "$URL" shared >"$T/px" &
px=$!
cairn -C "$T/y" push --json "$URL" shared >"$T/py" &
py=$!
wait $px && wait $py || die "a concurrent push failed"
[ "$(cairn remote states --json "$URL" shared | j 'len(d["states"])')" = 2 ] || die "a member was lost"
cairn init "$T/xy" >/dev/null
cairn -C "$T/xy" pull "$URL" shared >/dev/null
cairn merge "$T/xy-ref" "$T/x" "$T/y" >/dev/null
[ "$(content "$T/xy")" = "$(content "$T/xy-ref")" ] || die "the pull is not the merge of both pushes"
for s in x y; do
    k="sha256:$(echo $s | sha256sum | cut -d' ' -f1)"
    cairn -C "$T/xy" record get "$k" >/dev/null || die "the record of $s is missing"
done
fsck_clean "$T/xy"

step "compact: the members folded into one, no object moved"
before=$(ls "$R/blobs/sha256" | sort)
out=$(cairn remote compact --json "$URL" shared)
[ "$(echo "$out" | j 'd["bytes_moved"]')" = 0 ] || die "compact moved objects: $out"
[ "$(echo "$out" | j 'd["states"]')" = 2 ] || die "compact: $out"
after=$(ls "$R/blobs/sha256" | sort)
added=$(comm -13 <(echo "$before") <(echo "$after") | wc -l)
[ -z "$(comm -23 <(echo "$before") <(echo "$after"))" ] || die "compact removed blobs"
[ "$added" -le 3 ] || die "compact added $added files (database, config, manifest expected)"
echo "compact: $(echo "$before" | wc -l) blobs before, $added added (metadata), $(echo "$out" | j 'd["meta_bytes"]') metadata bytes"
[ "$(cairn remote states --json "$URL" shared | j 'len(d["states"])')" = 1 ] || die "compact left members"
cairn init "$T/xy2" >/dev/null
cairn -C "$T/xy2" pull "$URL" shared >/dev/null
[ "$(content "$T/xy2")" = "$(content "$T/xy-ref")" ] || die "the compacted state differs"

step "gc: states by the policy, then what no state names; the rest still pulls"
n_before=$(ls "$R/blobs/sha256" | wc -l)
out=$(cairn remote gc --json --grace 1h "$URL")
[ "$(echo "$out" | j 'd["blobs_removed"]')" = 0 ] || die "gc removed objects within the grace: $out"
out=$(cairn remote gc --json --grace 0 --dry-run "$URL")
would=$(echo "$out" | j 'd["blobs_removed"]')
[ "$would" -ge 3 ] || die "gc --dry-run: the compacted members' metadata should go: $out"
[ "$(ls "$R/blobs/sha256" | wc -l)" = "$n_before" ] || die "a dry run removed something"
out=$(cairn remote gc --json --grace 0 "$URL")
[ "$(echo "$out" | j 'd["blobs_removed"]')" = "$would" ] || die "gc: $out (dry run said $would)"
[ "$(cairn remote states --json "$URL" main | j 'len(d["states"])')" = 2 ] || die "gc without a policy removed states"
out=$(cairn remote gc --json --keep 1 --grace 0 "$URL")
[ "$(echo "$out" | j 'd["states_removed"]')" = 1 ] || die "gc --keep 1: $out"
[ "$(cairn remote states --json "$URL" main | j 'len(d["states"])')" = 1 ] || die "gc --keep 1 left two"
for tag in main shared; do
    rm -rf "$T/g"; cairn init "$T/g" >/dev/null
    cairn -C "$T/g" pull "$URL" $tag >/dev/null || die "pull of $tag after gc"
    fsck_clean "$T/g"
done
[ "$(content "$T/g")" = "$(content "$T/xy-ref")" ] || die "gc lost objects of shared"

step "a push killed midway leaves no visible state; a rerun completes it"
# (600 blobs: a push sends 8 at a time, a small one is over before the kill;
# each of its handles syncs and shows what it sent every 8 blobs, not 1024)
mkstate "$T/k" k 600 262144 >/dev/null
KR="$T/kremote"
CAIRN_FILE_PENDING_MAX=8 "$CAIRN" -C "$T/k" push "file://$KR" big >/dev/null 2>&1 &
kp=$!
for _ in $(seq 1 600); do
    [ "$(ls "$KR/blobs/sha256" 2>/dev/null | wc -l)" -ge 10 ] && break
    sleep 0.02
done
kill -9 $kp 2>/dev/null || true
wait $kp 2>/dev/null || true
sent=$(ls "$KR/blobs/sha256" 2>/dev/null | wc -l)
[ "$sent" -ge 10 ] && [ "$sent" -lt 600 ] || die "the push was not killed midway ($sent blobs)"
[ "$(cairn remote states --json "file://$KR" | j 'len(d["states"])')" = 0 ] || die "a killed push left a visible state"
echo partial >"$KR/tmp/stale"; touch -d '2 days ago' "$KR/tmp/stale"   # a writer that died long ago
out=$(cairn -C "$T/k" push --json "file://$KR" big)
[ ! -e "$KR/tmp/stale" ] || die "a day-old staging file was left in the remote"
[ "$(echo "$out" | j 'd["objects_skipped"]')" -ge $((sent - 2)) ] || die "the rerun did not resume: $out"
cairn init "$T/k2" >/dev/null
cairn -C "$T/k2" pull "file://$KR" big >/dev/null
[ "$(content "$T/k")" = "$(content "$T/k2")" ] || die "the resumed push is not whole"

step "wrong bytes in the remote are refused on pull, nothing of them stored"
victim=$(cairn -C "$T/x" blob ls --json | j 'd[0]["digest"]')
f="$R/blobs/sha256/${victim#sha256:}"
size=$(stat -c %s "$f")
head -c "$size" /dev/urandom >"$f"
cairn init "$T/bad" >/dev/null
fails 1 "blob $victim: the bytes fetched .* hash to sha256:.*refused, nothing stored" -- cairn -C "$T/bad" pull "$URL" shared
cairn -C "$T/bad" blob stat "$victim" >/dev/null 2>&1 && die "a corrupt blob was stored"
[ "$(cairn -C "$T/bad" info --json | j 'd["blobs"]["count"]')" = 0 ] || die "a failed pull left blobs with rows"
fsck_clean "$T/bad"
# a corrupt manifest is refused too
m=$(ls "$R/states/main" | head -1)
echo '{}' >"$R/states/main/$m"
fails 1 "hashes to sha256:.*refused" -- cairn -C "$T/bad" pull "$URL" main

step "big states are chunked into manifests under an index"
out=$(cairn -C "$T/a" push --json --objects-per-manifest 5 "file://$T/chunked" ch)
d=$(echo "$out" | j 'd["digest"]')
[ "$(j '"%s %d" % (d["mediaType"], len(d["manifests"]))' <"$T/chunked/blobs/sha256/${d#sha256:}")" = \
    "application/vnd.oci.image.index.v1+json 5" ] || die "not an index of 5 manifests"
[ "$(cairn remote states --json "file://$T/chunked" ch | j 'd["states"][0]["manifests"]')" = 5 ] || die "states: manifests"
cairn init "$T/chk" >/dev/null
cairn -C "$T/chk" pull "file://$T/chunked" ch >/dev/null
[ "$(content "$T/a")" = "$(content "$T/chk")" ] || die "the chunked state differs"

step "an image's snapshots travel as its own layers; the image works after a pull"
make_image "$T/lay" v1
cairn init "$T/im" >/dev/null
cairn -C "$T/im" image import "$T/lay:v1" >/dev/null
out=$(cairn -C "$T/im" push --json "file://$T/imr" img)
cairn init "$T/im2" >/dev/null
cairn -C "$T/im2" pull "file://$T/imr" img >/dev/null
[ "$(content "$T/im")" = "$(content "$T/im2")" ] || die "the image's state differs after a pull"
imtop=$(cairn -C "$T/im2" image show --json v1 | j 'd["top"]')
cairn -C "$T/im" snapshot checkout "$imtop" "$T/im-co1" >/dev/null
cairn -C "$T/im2" snapshot checkout "$imtop" "$T/im-co2" >/dev/null
[ "$(tree_sig "$T/im-co1")" = "$(tree_sig "$T/im-co2")" ] || die "the image's tree differs after a pull"
cairn -C "$T/im2" image export v1 "$T/im-out" >/dev/null
fsck_clean "$T/im2"

step "the remote is an OCI image layout: skopeo copies a state, verifying every blob"
if command -v skopeo >/dev/null; then
    ref=$(j 'd["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]' <"$T/chunked/index.json")
    [ "$(skopeo inspect --raw "oci:$T/chunked:$ref" | j 'len(d["manifests"])')" = 5 ] || die "skopeo inspect"
    ref=$(j 'd["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]' <"$KR/index.json")
    skopeo copy -q "oci:$KR:$ref" "oci:$T/skopeo-copy:x" >/dev/null || die "skopeo copy of a state"
    [ "$(ls "$T/skopeo-copy/blobs/sha256" | wc -l)" -ge 150 ] || die "skopeo copied too few blobs"
else
    echo "skopeo not installed: skipped"
fi
echo "ok"
