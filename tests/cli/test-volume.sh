#!/usr/bin/env bash
# test-volume.sh: volumes through the command: open, mount, write, save,
# two sessions at once, versions, gc of old versions, rm, bad names.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cache-lib.sh"
S=$T/s
cairn init "$S" >/dev/null
export CAIRN_STATE=$S

# mnt JSON_FILE TARGET: mount what 'volume open --json' described.
mnt() {
    mkdir -p "$2"
    python3 - "$1" "$2" <<'PY'
import json, subprocess, sys
m = json.load(open(sys.argv[1]))["mount"]
subprocess.check_call(["mount", "-t", m["type"], "-o", ",".join(m["options"]), m["source"], sys.argv[2]])
PY
}

step "open a new volume, mount it, write, save"
cairn volume open apt --json >"$T/o1.json"
ID=$(jq1 'j["id"]' <"$T/o1.json")
[ "$(jq1 'j["parent"]' <"$T/o1.json")" = "" ] || die "a new volume starts from nothing"
mnt "$T/o1.json" "$T/m1"
mkdir -p "$T/m1/archives" && echo "deb one" >"$T/m1/archives/one.deb"
umount "$T/m1"
V1=$(cairn volume save apt)
[ "$(cairn volume ls --json | jq1 'j[0]["current"]')" = "$V1" ] || die "the saved version is current"

step "two sessions at once: both save, the later is current, the other stays listed"
cairn volume open apt --json >"$T/o2.json"
cairn volume open apt --json >"$T/o3.json"
[ "$(jq1 'j["parent"]' <"$T/o2.json")" = "$V1" ] || die "a session starts from the current version"
mnt "$T/o2.json" "$T/m2"
mnt "$T/o3.json" "$T/m3"
[ "$(cat "$T/m2/archives/one.deb")" = "deb one" ] || die "the volume's content is not in the mount"
echo "deb two" >"$T/m2/archives/two.deb"
echo "deb three" >"$T/m3/archives/three.deb"
rm "$T/m3/archives/one.deb"
umount "$T/m2" "$T/m3"
fails 1 "open 2 times; say which" -- cairn volume save apt
V2=$(cairn volume save apt "$(jq1 'j["id"]' <"$T/o2.json")")
V3=$(cairn volume save apt "$(jq1 'j["id"]' <"$T/o3.json")")
cairn volume versions apt --json | jq1 '[(v["version"], v["current"]) for v in j]' >"$T/v"
python3 - "$T/v" "$V1" "$V2" "$V3" <<'PY'
import ast, sys
v = ast.literal_eval(open(sys.argv[1]).read())
assert v == [(sys.argv[4], True), (sys.argv[3], False), (sys.argv[2], False)], v
PY
cairn volume open apt --json >"$T/o4.json"
mnt "$T/o4.json" "$T/m4"
[ -e "$T/m4/archives/three.deb" ] && [ ! -e "$T/m4/archives/one.deb" ] && [ ! -e "$T/m4/archives/two.deb" ] ||
    die "the current version is the later save: $(ls "$T/m4/archives")"
umount "$T/m4"
cairn snapshot rm "$(jq1 'j["id"]' <"$T/o4.json")" >/dev/null

step "gc keeps the current version and its parents; old versions go"
age "$S"
cairn gc >"$T/gc"
grep -q "removed volume apt $V2 - (old version)" "$T/gc" || die "old version V2 not removed: $(cat "$T/gc")"
grep -q "removed snapshot $V2" "$T/gc" || die "V2's snapshot not removed"
[ -d "$S/snapshots/${V1#sha256:}" ] || die "V1 is V3's parent: it must stay"
[ "$(cairn volume ls --json | jq1 'j[0]["current"], j[0]["versions"]' | tr '\n' ' ')" = "$V3 1 " ] || die "after gc"
cairn fsck >/dev/null || die "fsck"

step "bad names, unknown volumes, rm"
fails 1 "only letters, digits" -- cairn volume open "../etc"
fails 1 "not open" -- cairn volume save pip
fails 1 "not found" -- cairn volume versions pip
cairn volume rm apt | grep -q "1 version" || die "rm"
fails 1 "not found" -- cairn volume rm apt
age "$S"
cairn gc --json | jq1 'j["counts"]["snapshots"]' | grep -qx 2 || die "the forgotten volume's snapshots should go"
echo ok
