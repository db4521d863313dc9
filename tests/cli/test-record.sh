#!/usr/bin/env bash
# test-record.sh: cache records through the command: put, get (hits and
# misses), ls, links, rm, and fsck of records whose results are gone.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cache-lib.sh"
S=$T/s
cairn init "$S" >/dev/null
export CAIRN_STATE=$S
K=$(dg "exec: make") K2=$(dg "exec: make install") OP=$(dg "op exec") SEL=$(dg "selector /out")

step "put a result; get it back, marked used"
echo "build output" >"$T/out"
B=$(cairn blob put "$T/out")
cairn record put "$K" "$B" | grep -q "$K blob $B" || die "record put did not say what it recorded"
cairn record put "$K" "$B" | grep -q "already recorded" || die "a second put is not reported as known"
[ "$(cairn record get "$K")" = "blob $B" ] || die "record get did not return the result"
cairn record get "$K" --json | jq1 'j["hits"], j["kind"], j["result"]' >"$T/g"
[ "$(sed -n 1p "$T/g")" = 2 ] || die "two gets should count two hits: $(cat "$T/g")"
[ "$(sed -n 2p "$T/g")" = blob ] || die "kind"

step "misses and refusals"
fails 1 "no present result.*miss" -- cairn record get "$K2"
fails 1 "cache key: digest 'sha256:zz'" -- cairn record put sha256:zz "$B"
NOT=$(dg "never stored")
fails 1 "blob $NOT is not there; store it before its record" -- cairn record put "$K2" "$NOT" --kind blob
fails 1 "snapshot $NOT is not there" -- cairn record put "$K2" "$NOT"
[ "$(cairn record ls --json | jq1 'len(j)')" = 1 ] || die "a refused put left a row"
fails 2 "expected KEY" -- cairn record put
fails 2 "expected a RESULT" -- cairn record put "$K2"
fails 2 "--input '-1'" -- cairn record put "$K2" --link-from "$K" --op "$OP" --input -1
fails 2 "--kind 'tree'" -- cairn record put "$K2" "$B" --kind tree
fails 2 "needs --op" -- cairn record put "$K2" --link-from "$K"

step "a snapshot result"
A=$(cairn snapshot prepare)
echo installed >"$S/active/$A/fs/file"
CH=$(cairn snapshot commit "$A" --json | jq1 'j["chain_id"]')
cairn record put "$K2" "$CH" --link-from "$K" --op "$OP" --input 1 --selector "$SEL" >/dev/null
[ "$(cairn record get "$K2")" = "snapshot $CH" ] || die "a snapshot result"

step "links both ways, keys, keys by result"
cairn record links "$K" --json | jq1 'j[0]["child"], j[0]["input"], j[0]["op"], j[0]["selector"]' >"$T/l"
[ "$(sed -n 1p "$T/l")" = "$K2" ] && [ "$(sed -n 2p "$T/l")" = 1 ] && [ "$(sed -n 3p "$T/l")" = "$OP" ] &&
    [ "$(sed -n 4p "$T/l")" = "$SEL" ] || die "links: $(cat "$T/l")"
[ "$(cairn record links "$K2" --back --json | jq1 'j[0]["parent"]')" = "$K" ] || die "backlinks"
[ "$(cairn record ls --keys | wc -l)" = 2 ] || die "two keys"
[ "$(cairn record ls --result "$B")" = "$K" ] || die "keys by result"
cairn record ls | grep -q "$K2 snapshot" || die "record ls lists the snapshot result"

step "a result whose object is gone is a miss; fsck names it and repair drops it"
cairn blob rm "$B" >/dev/null
fails 1 "miss" -- cairn record get "$K"
cairn record ls --json | jq1 '[r["present"] for r in j if r["key"] == "'"$K"'"]' | grep -q False || die "ls should say the result is missing"
rc=0; cairn fsck >"$T/f" || rc=$?
[ $rc -eq 3 ] || die "fsck should exit 3 on a record naming a missing blob (got $rc)"
grep -q "record $K $B: missing" "$T/f" || die "fsck does not name the record: $(cat "$T/f")"
cairn fsck --repair | grep -q "dropped row" || die "repair"
cairn fsck >/dev/null || die "fsck not clean after repair"

step "rm a key; release a result"
cairn record put "$K" "$CH" >/dev/null
cairn record rm --result "$CH" | grep -q "2 rows" || die "release removes the result under both keys"
fails 1 "miss" -- cairn record get "$K2"
fails 1 "not found" -- cairn record rm "$K2"
[ -d "$S/snapshots/${CH#sha256:}" ] || die "release must leave the snapshot to gc"
echo ok
