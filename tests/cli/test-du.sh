#!/usr/bin/env bash
# test-du.sh: disk usage through the command: totals by kind, entries by
# record and volume, largest first, shared bytes counted once.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cache-lib.sh"
S=$T/s
cairn init "$S" >/dev/null
export CAIRN_STATE=$S

A=$(cairn snapshot prepare); head -c 100000 /dev/urandom >"$S/active/$A/fs/base"
P=$(cairn snapshot commit "$A")
A=$(cairn snapshot prepare "$P"); head -c 3000 /dev/urandom >"$S/active/$A/fs/small"
C1=$(cairn snapshot commit "$A")
A=$(cairn snapshot prepare "$P"); head -c 20000 /dev/urandom >"$S/active/$A/fs/big"
C2=$(cairn snapshot commit "$A")
cairn record put "$(dg small)" "$C1" >/dev/null
cairn record put "$(dg big)" "$C2" >/dev/null
head -c 777 /dev/urandom >"$T/g"; cairn blob put "$T/g" >/dev/null
A=$(cairn volume open cache); head -c 5000 /dev/urandom >"$S/active/$A/fs/v"
cairn volume save cache >/dev/null

step "totals count each object once"
cairn du --json >"$T/du.json"
python3 - "$T/du.json" "$(dg small)" "$(dg big)" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
t = d["totals"]
assert t["snapshots"]["count"] == 4, t
assert t["snapshots"]["bytes"] == 100000 + 3000 + 20000 + 5000, t
assert t["blobs"]["bytes"] == 777, t
assert t["total"] == 128777, t
assert t["records"] == 2 and t["volumes"] == 1, t
assert t["unreferenced"] == 777, t
assert t["reclaimable"] == 777 + 123000, t  # records only keep them
r = d["records"]
assert [e["name"] for e in r] == [sys.argv[3], sys.argv[2]], r  # largest first
assert r[0]["size"] == 120000 and r[0]["unique"] == 20000, r[0]
assert r[1]["size"] == 103000 and r[1]["unique"] == 3000, r[1]
assert d["volumes"][0]["name"] == "cache" and d["volumes"][0]["size"] == 5000
PY

step "text output and limits"
cairn du >"$T/du.txt"
grep -q "^snapshots *4" "$T/du.txt" || die "du text: $(cat "$T/du.txt")"
[ "$(grep -c '^record ' "$T/du.txt")" = 2 ] || die "two record lines"
[ "$(cairn du --limit 1 --json | jq1 'len(j["records"])')" = 1 ] || die "--limit"
fails 2 "--limit 'many'" -- cairn du --limit many
echo ok
