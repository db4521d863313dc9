#!/usr/bin/env bash
# test-gc.sh: leases and garbage collection through the command: what keeps
# objects, dry runs, budgets (sizes, percentages, durations), expired
# leases, snapshots, bad options.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cache-lib.sh"
S=$T/s
cairn init "$S" >/dev/null
export CAIRN_STATE=$S
for i in 1 2 3 4; do head -c 1000000 /dev/urandom >"$T/r$i"; done
echo "nothing keeps me" >"$T/g"
echo "a lease keeps me" >"$T/l"
for i in 1 2 3 4; do B[$i]=$(cairn blob put "$T/r$i"); cairn record put "$(dg key$i)" "${B[$i]}" >/dev/null; done
G=$(cairn blob put "$T/g")
L=$(cairn blob put "$T/l")

step "leases"
cairn lease create session --ttl 1h >/dev/null
cairn lease add session blob "$L" >/dev/null
cairn lease ls --json | jq1 'j[0]["id"], len(j[0]["resources"]), j[0]["expires"] > j[0]["created"]' >"$T/ls"
[ "$(tr '\n' ' ' <"$T/ls")" = "session 1 True " ] || die "lease ls: $(cat "$T/ls")"
fails 1 "lease nope: not found" -- cairn lease add nope blob "$L"
fails 1 "expected blob, snapshot, record or volume" -- cairn lease add session file "$L"
fails 1 "already exists" -- cairn lease create session
fails 2 "--ttl 'soon'" -- cairn lease create x --ttl soon

step "within the grace period nothing goes, and gc says why"
cairn gc --json | jq1 'j["counts"]["blobs"]' | grep -qx 0 || die "gc removed young objects"
cairn gc --dry-run >"$T/young"
grep -q "^would remove nothing: what nothing keeps (.*) is younger than the grace period (10m; --grace 0" "$T/young" ||
    die "gc does not say that the grace period kept what it did not remove: $(cat "$T/young")"
cairn gc --help | grep -q -- "--grace D: keep what was created or used within D (default 10m)" ||
    die "gc --help does not give the grace period's default: $(cairn gc --help)"
cairn lease create brief --ttl 1s >/dev/null
cairn lease add brief blob "$G" >/dev/null

step "a dry run says what would go, and removes nothing"
age "$S"
sleep 1.1  # the lease 'brief' expires
cairn gc --dry-run >"$T/dry"
grep -q "would remove blob $G" "$T/dry" || die "dry run: $(cat "$T/dry")"
grep -q "would remove lease brief" "$T/dry" || die "dry run does not list the expired lease: $(cat "$T/dry"; cairn lease ls; date +%s)"
[ -f "$S/blobs/sha256/${G#sha256:}" ] || die "a dry run removed a file"

step "gc: the unreferenced blob and the expired lease go; the rest stays"
cairn gc --json >"$T/gc.json"
jq1 'j["counts"]["blobs"], j["counts"]["leases"], j["bytes_freed"]' <"$T/gc.json" | tr '\n' ' ' >"$T/c"
[ "$(cat "$T/c")" = "1 1 $(stat -c %s "$T/g") " ] || die "gc counts: $(cat "$T/c")"
[ ! -e "$S/blobs/sha256/${G#sha256:}" ] || die "the garbage blob's file is still there"
[ -f "$S/blobs/sha256/${L#sha256:}" ] || die "the leased blob went"
for i in 1 2 3 4; do cairn record get "$(dg key$i)" >/dev/null || die "record $i lost"; done
cairn fsck >/dev/null || die "fsck after gc"

step "a budget: the least recently used records go first"
age "$S" $((10 * 86400))
for i in 1 2 3 4; do used "$S" "${B[$i]}" $(( (5 - i) * 86400 )); done
fails 2 "--max-used '10XB'" -- cairn gc --max-used 10XB
fails 2 "--keep-duration 'long'" -- cairn gc --keep-duration long
cairn gc --max-used 2.5MB --dry-run | grep -c "would remove record" | grep -qx 2 || die "dry run of a budget"
cairn gc --max-used 2.5MB >"$T/b"
grep -q "removed record $(dg key1) ${B[1]}" "$T/b" && grep -q "removed record $(dg key2) ${B[2]}" "$T/b" ||
    die "the two least recently used records should go: $(cat "$T/b")"
fails 1 "miss" -- cairn record get "$(dg key1)"
cairn record get "$(dg key3)" >/dev/null || die "key3 went"

step "keep duration, a leased record, reserved space, a percentage"
age "$S" 86400
cairn lease add session record "$(dg key4)" >/dev/null
cairn gc --keep-duration 30d --json | jq1 'j["counts"]["records"]' | grep -qx 0 || die "keep-duration 30d removed records"
cairn gc --min-free 100% --reserved 2.1MB --json | jq1 'j["counts"]["records"]' | grep -qx 0 ||
    die "reserved space (2.1 MB, more than is held) should stop the collection"
cairn gc --min-free 100% --json | jq1 'j["counts"]["records"]' | grep -qx 1 || die "min-free 100% removes what is not leased"
cairn record get "$(dg key4)" >/dev/null || die "the leased record went"
fails 2 "--min-free '101%'" -- cairn gc --min-free 101%

step "snapshots: kept by a record and by an active child; removed when nothing keeps them"
A=$(cairn snapshot prepare); echo base >"$S/active/$A/fs/f"
P=$(cairn snapshot commit "$A")
A=$(cairn snapshot prepare "$P"); echo top >"$S/active/$A/fs/g"
C=$(cairn snapshot commit "$A")
cairn record put "$(dg snapkey)" "$C" >/dev/null
A=$(cairn snapshot prepare "$P")
age "$S"
cairn gc --json | jq1 'j["counts"]["snapshots"]' | grep -qx 0 || die "gc removed kept snapshots"
cairn record rm "$(dg snapkey)" >/dev/null
cairn snapshot rm "$A" >/dev/null
cairn gc >"$T/snaps.out"
grep -q "removed snapshot $C" "$T/snaps.out" && grep -q "removed snapshot $P" "$T/snaps.out" || die "snapshots: $(cat "$T/snaps.out")"
[ ! -e "$S/snapshots/${C#sha256:}" ] && [ ! -e "$S/snapshots/${P#sha256:}" ] || die "snapshot directories left"

step "a file no row names (a crash between rename and row) goes after the grace period"
echo lost >"$S/blobs/sha256/$(printf lost | sha256sum | cut -d' ' -f1)"
cairn gc --json | jq1 'j["counts"]["files"]' | grep -qx 0 || die "a young orphan went"
cairn gc --grace 0 | grep -q "removed file blobs/sha256/" || die "the orphan file stayed"
cairn gc --grace 0 >"$T/kept"
grep -q "^nothing removed: an image, volume, lease, record or lower keeps every object" "$T/kept" ||
    die "gc that removed nothing does not say what keeps it: $(cat "$T/kept")"
cairn fsck >/dev/null || die "fsck at the end"
cairn lease rm session
fails 1 "not found" -- cairn lease rm session
echo ok
