#!/usr/bin/env bash
# test-import-containerd.sh: `cairn import containerd ROOT` on roots made by
# Debian's containerd (private root, state and socket under $T; the
# machine's containerd, if any, is never touched), and on damaged ones.
#   - a busybox image in four layers (whiteout, opaque directory, hardlink,
#     owners) as a docker-archive in namespace default and as an
#     oci-archive in namespace team, `ctr images import`ed (unpacked into
#     the overlayfs snapshotter), run once, and a container left behind;
#   - refused while containerd runs, and nothing imported;
#   - imported: names, blobs linked (same inode, 0 bytes copied) and
#     verified, snapshots by ChainID whose checkout lists as containerd's
#     own mount of the image, fsck clean; the root unchanged (listing with
#     contents before and after); a second import changes nothing;
#   - over a frozen lower holding some of the blobs and snapshots: none
#     stored twice, rows right, fsck clean, the lower byte for byte the same;
#   - a progress bar on a terminal (script(1)), none into a file;
#   - a second containerd with another image: both states merged, fsck clean;
#   - trees proven by reading their layer beside them: none applied again;
#   - a snapshot tree changed behind containerd's back (a file's content,
#     an owner, an xattr, an opaque directory made plain): refused,
#     reported, and the layer applied from its blob instead; a blob
#     changed: refused;
#   - meta.db damaged (cut, magic, checksums, a page past the end, a cycle,
#     and random damage): a clear error, nothing imported, no crash.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/realtools-lib.sh"
rt_private_namespace "$@"
rt_need containerd ctr runc busybox python3
[ "$(id -u)" -eq 0 ] || { echo "SKIP: containerd's overlayfs snapshotter needs root"; exit 77; }
HERE=$(cd "$(dirname "$0")" && pwd)
BOLT_DUMP=${BOLT_DUMP:-$BUILD_ROOT/tests/bolt-dump}
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=99"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}exitcode=99"
RT_DIR=$HERE
list() { python3 "$HERE/tree-list.py" "$@"; }

declare -A PIDS
ctrd_start() {
    local c=$1 i
    mkdir -p "$c"
    ctrd_private_config "$c" >"$c/config.toml"
    containerd --config "$c/config.toml" >"$c/log" 2>&1 &
    PIDS[$c]=$!
    for i in $(seq 150); do
        ctr --address "$c/sock" version >/dev/null 2>&1 && return 0
        kill -0 "${PIDS[$c]}" 2>/dev/null || break
        sleep 0.1
    done
    tail -5 "$c/log" >&2
    die "containerd did not start"
}
ctrd_stop() {
    local pid=${PIDS[$1]:-} i
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    PIDS[$1]=
}
c_ctr() { local c=$1; shift; ctr --address "$c/sock" "$@"; }
stop_all() {
    local rc=$? c
    set +e
    for c in "${!PIDS[@]}"; do ctrd_stop "$c"; done
    (exit $rc)
    cleanup
}
trap stop_all EXIT

# The tree of an image as containerd mounts it.
ctr_tree() {
    local c=$1 ns=$2 image=$3 out=$4 m
    m=$(mktemp -d "$T/mnt-XXXXXX")
    c_ctr "$c" -n "$ns" images mount "$image" "$m" >/dev/null
    list "$m" >"$out"
    c_ctr "$c" -n "$ns" images unmount --rm "$m" >/dev/null
}
# A listing of a root with every file's content: what the importer must not change.
root_sig() {
    python3 - "$1" <<'PY'
import hashlib, os, stat, sys
root = sys.argv[1]
for d, dirs, files in os.walk(root):
    dirs.sort()
    for n in sorted(dirs + files):
        p = os.path.join(d, n)
        s = os.lstat(p)
        line = "%s %o %d:%d %d %d" % (os.path.relpath(p, root), s.st_mode, s.st_uid, s.st_gid,
                                      s.st_size, s.st_mtime_ns)
        if stat.S_ISREG(s.st_mode):
            line += " " + hashlib.sha256(open(p, "rb").read()).hexdigest()
        elif stat.S_ISLNK(s.st_mode):
            line += " -> " + os.readlink(p)
        print(line)
PY
}
names() { cairn -C "$1" image ls --json | python3 -c 'import json,sys; [print(i["name"]) for i in json.load(sys.stdin)]'; }
field() { cairn -C "$1" image ls --json | python3 -c 'import json,sys; print([i for i in json.load(sys.stdin) if i["name"]==sys.argv[1]][0][sys.argv[2]])' "$2" "$3"; }
blobs() { cairn -C "$1" blob ls -q | awk '{print $1}'; }
jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
# The chain ids of an archive's image (its config's diff ids).
chain_ids() {
    python3 - "$1" <<'PY'
import hashlib, json, sys, tarfile
t = tarfile.open(sys.argv[1])
names = t.getnames()
if "manifest.json" in names:
    cfg = json.load(t.extractfile(json.load(t.extractfile("manifest.json"))[0]["Config"]))
else:
    idx = json.load(t.extractfile("index.json"))
    blob = lambda d: t.extractfile("blobs/sha256/" + d.split(":")[1])
    man = json.load(blob(idx["manifests"][0]["digest"]))
    cfg = json.load(blob(man["config"]["digest"]))
chain = None
for d in cfg["rootfs"]["diff_ids"]:
    chain = d if chain is None else "sha256:" + hashlib.sha256((chain + " " + d).encode()).hexdigest()
    print(chain)
PY
}

step "images and a containerd root"
python3 "$HERE/busybox-image.py" "$T/bb.tar" example.com/busybox:1 docker 0
python3 "$HERE/busybox-image.py" "$T/bbo.tar" example.com/busybox-oci:1 oci 1
A=$T/a
ctrd_start "$A"
c_ctr "$A" images import "$T/bb.tar" >/dev/null
c_ctr "$A" -n team images import "$T/bbo.tar" >/dev/null
c_ctr "$A" run --rm example.com/busybox:1 once /bin/sh -c 'cat /etc/seed' | grep -qx "seed 0" ||
    die "the image does not run under containerd"
c_ctr "$A" containers create example.com/busybox:1 left >/dev/null # an active snapshot stays
ctr_tree "$A" default example.com/busybox:1 "$T/bb.ref"
ctr_tree "$A" team example.com/busybox-oci:1 "$T/bbo.ref"
grep -q '^etc/seed ' "$T/bb.ref" && ! grep -q '^etc/motd ' "$T/bb.ref" && grep -q '^opq/new ' "$T/bb.ref" ||
    die "containerd's view of the image is not what it was built as"

step "refused while containerd runs"
cairn init "$T/s1" >/dev/null
fails 4 "containerd is running" -- cairn -C "$T/s1" import containerd "$A/root"
[ -z "$(names "$T/s1")" ] && [ -z "$(blobs "$T/s1")" ] ||
    die "a refused import left something"

step "import"
ctrd_stop "$A"
root_sig "$A/root" >"$T/root.before"
rc=0
cairn -C "$T/s1" --json import containerd "$A/root" >"$T/imp.json" || rc=$?
[ $rc -eq 0 ] || die "import exited $rc: $(cat "$T/imp.json")"
root_sig "$A/root" >"$T/root.after"
diff -u "$T/root.before" "$T/root.after" || die "the import changed the containerd root"
[ "$(jget "$T/imp.json" bytes_copied)" = 0 ] && [ "$(jget "$T/imp.json" files_copied)" = 0 ] ||
    die "bytes were copied on one filesystem: $(cat "$T/imp.json")"
[ "$(jget "$T/imp.json" images)" = 2 ] && [ "$(jget "$T/imp.json" snapshots_skipped)" -ge 1 ] ||
    die "expected 2 images and the container's snapshot skipped: $(cat "$T/imp.json")"
# Five trees (busybox's four, the oci image's last) proven by their layer's
# stream, none by applying the layer again in tmp/.
[ "$(jget "$T/imp.json" layers_applied)" = 0 ] && [ "$(jget "$T/imp.json" layers_compared)" = 5 ] ||
    die "trees not proven by reading their layers: $(cat "$T/imp.json")"
names "$T/s1" >"$T/images"
grep -qx 'example.com/busybox:1' "$T/images" && grep -qx 'team/example.com/busybox-oci:1' "$T/images" ||
    die "image names not kept: $(cat "$T/images")"
for d in $(blobs "$T/s1"); do
    h=${d#sha256:}
    [ "$(sha256sum <"$T/s1/blobs/sha256/$h" | cut -d' ' -f1)" = "$h" ] || die "blob $d does not verify"
    [ "$(stat -c %i "$T/s1/blobs/sha256/$h")" = "$(stat -c %i "$A/root/io.containerd.content.v1.content/blobs/sha256/$h")" ] ||
        die "blob $d is not a hardlink of containerd's"
done
cairn -C "$T/s1" snapshot ls -q | awk '{print $1}' | sort >"$T/snaps"
for tar in bb bbo; do
    chain_ids "$T/$tar.tar" | while read -r c; do
        grep -qx "$c" "$T/snaps" || die "snapshot $c ($tar) is not there by its ChainID"
    done
done
top=$(chain_ids "$T/bb.tar" | tail -1)
cairn -C "$T/s1" snapshot checkout "$top" "$T/co1" >/dev/null
list "$T/co1" >"$T/co1.list"
diff -u "$T/bb.ref" "$T/co1.list" || die "the checkout differs from containerd's mount of the image"
top=$(chain_ids "$T/bbo.tar" | tail -1)
cairn -C "$T/s1" snapshot checkout "$top" "$T/co2" >/dev/null
list "$T/co2" >"$T/co2.list"
diff -u "$T/bbo.ref" "$T/co2.list" || die "the checkout (oci image) differs from containerd's mount"
cairn -C "$T/s1" blob stat "$(field "$T/s1" example.com/busybox:1 manifest)" |
    grep -q 'containerd.io/gc.ref.content.config' || die "containerd's content labels not kept"
cairn -C "$T/s1" fsck >/dev/null || die "fsck after the import"

step "a second import changes nothing"
cairn -C "$T/s1" --json import containerd "$A/root" >"$T/imp2.json"
[ "$(jget "$T/imp2.json" blobs_present)" = "$(jget "$T/imp2.json" blobs)" ] &&
    [ "$(jget "$T/imp2.json" snapshots_present)" = "$(jget "$T/imp2.json" snapshots)" ] ||
    die "a second import did work again: $(cat "$T/imp2.json")"

step "a progress bar on a terminal, none otherwise"
cairn init "$T/s1t" >/dev/null
script -qec "$CAIRN -C $T/s1t import containerd $A/root" /dev/null >"$T/tty.out"
grep -q 'import \[#*\] 100% ' "$T/tty.out" || die "no progress bar on a terminal: $(cat -v "$T/tty.out" | head -c 300)"
grep -q 'imported .*: 2 images' "$T/tty.out" || die "no summary on a terminal: $(cat -v "$T/tty.out" | head -c 300)"
rm -rf "$T/s1t"; cairn init "$T/s1t" >/dev/null
cairn -C "$T/s1t" import containerd "$A/root" >"$T/notty.out" 2>&1
! grep -q 'import \[' "$T/notty.out" || die "a progress bar drawn into a file"

step "a second containerd, another image; the states merge"
python3 "$HERE/busybox-image.py" "$T/bb2.tar" example.com/busybox:2 docker 2
B=$T/b
ctrd_start "$B"
c_ctr "$B" images import "$T/bb2.tar" >/dev/null
ctr_tree "$B" default example.com/busybox:2 "$T/bb2.ref"
ctrd_stop "$B"
cairn init "$T/s2" >/dev/null
cairn -C "$T/s2" import containerd "$B/root" >/dev/null
cairn merge "$T/m" "$T/s1" "$T/s2" >/dev/null
cairn -C "$T/m" fsck >/dev/null || die "fsck of the merge"
[ "$(names "$T/m" | sort | tr '\n' ' ')" = "example.com/busybox:1 example.com/busybox:2 team/example.com/busybox-oci:1 " ] ||
    die "merged images: $(names "$T/m")"
cairn -C "$T/m" snapshot checkout "$(chain_ids "$T/bb2.tar" | tail -1)" "$T/co3" >/dev/null
list "$T/co3" >"$T/co3.list"
diff -u "$T/bb2.ref" "$T/co3.list" || die "the merged state's checkout differs"

step "over a frozen lower that holds some of it: nothing twice, the lower unchanged"
# The lower holds busybox:1, whose first three layers busybox:2 shares.
cairn freeze -q "$T/s1" "$T/low"
root_sig "$T/low" >"$T/low.before"
cairn init "$T/top" >/dev/null
cairn -C "$T/top" stack add "$T/low" >/dev/null
cairn -C "$T/top" --json import containerd "$B/root" >"$T/impl.json" || die "import over a lower: $(cat "$T/impl.json")"
[ "$(jget "$T/impl.json" blobs_present)" = 3 ] && [ "$(jget "$T/impl.json" snapshots_present)" = 3 ] &&
    [ "$(jget "$T/impl.json" snapshots)" = 4 ] ||
    die "the lower's blobs and snapshots not found there: $(cat "$T/impl.json")"
nb=$(( $(jget "$T/impl.json" blobs) - 3 ))
[ "$(find "$T/top/blobs/sha256" -type f | wc -l)" = "$nb" ] || die "the top holds blobs the lower has"
[ "$(find "$T/top/snapshots" -mindepth 1 -maxdepth 1 | wc -l)" = 1 ] || die "the top holds snapshots the lower has"
# Rows: each object once, the lower's marked as the lower's, the new ones the top's.
cairn -C "$T/top" blob ls --json >"$T/topblobs.json"
cairn -C "$T/top" snapshot ls --json >"$T/topsnaps.json"
python3 - "$T/topblobs.json" "$T/topsnaps.json" "$(chain_ids "$T/bb2.tar" | tr '\n' ' ')" <<'PY' || die "rows over the lower are wrong"
import collections, json, sys
blobs, snaps, chains = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3].split()
for rows, key in ((blobs, "digest"), (snaps, "chain_id")):
    dup = [k for k, n in collections.Counter(r[key] for r in rows).items() if n > 1]
    assert not dup, "listed twice: %s" % dup
own = {s["chain_id"] for s in snaps if not s["lower"]}
low = {s["chain_id"] for s in snaps if s["lower"]}
assert own == {chains[3]}, "the top's own snapshots: %s" % own
assert set(chains[:3]) <= low, "the shared layers are not the lower's"
PY
[ "$(names "$T/top" | sort | tr '\n' ' ')" = "example.com/busybox:1 example.com/busybox:2 team/example.com/busybox-oci:1 " ] ||
    die "images over the lower: $(names "$T/top")"
cairn -C "$T/top" snapshot checkout "$(chain_ids "$T/bb2.tar" | tail -1)" "$T/co5" >/dev/null
list "$T/co5" >"$T/co5.list"
diff -u "$T/bb2.ref" "$T/co5.list" || die "the checkout over the lower differs"
cairn -C "$T/top" fsck >/dev/null || die "fsck of the top over its lower"
root_sig "$T/low" >"$T/low.after"
diff -u "$T/low.before" "$T/low.after" || die "the import changed the lower"

step "a tree changed behind containerd's back is refused"
cp -a "$B/root" "$T/bad"
"$BOLT_DUMP" "$T/bad/io.containerd.snapshotter.v1.overlayfs/metadata.db" >"$T/snapdb.dump"
# containerd's directory of the snapshot of the image's layer $1 (1-4).
snapfs() {
    local key
    key=$(chain_ids "$T/bb2.tar" | sed -n "$1p")
    python3 - "$T/snapdb.dump" "$key" "$T/bad/io.containerd.snapshotter.v1.overlayfs/snapshots" <<'PY'
import sys
cur = False
for line in open(sys.argv[1]):
    s = line.strip()
    if s.endswith(sys.argv[2] + "/"):
        cur = True
    elif cur and s.startswith("id = 0x"):
        print("%s/%d/fs" % (sys.argv[3], int(s[7:9], 16)))
        break
PY
}
for l in 1 2 3 4; do [ -d "$(snapfs $l)" ] || die "no snapshot directory found for layer $l"; done
# Layer 1: an xattr added; 2: an owner changed; 3: the opaque directory
# made plain; 4: a file's content. Only the last changes any file's bytes.
python3 - "$(snapfs 1)" "$(snapfs 2)" "$(snapfs 3)" <<'PY'
import os, sys
os.setxattr(os.path.join(sys.argv[1], "etc/passwd"), "user.added", b"1", follow_symlinks=False)
os.chown(os.path.join(sys.argv[2], "home/owned"), 0, 0)
os.removexattr(os.path.join(sys.argv[3], "opq"), "trusted.overlay.opaque")
PY
echo tampered >"$(snapfs 4)/etc/seed"
cairn init "$T/s3" >/dev/null
rc=0
cairn -C "$T/s3" import containerd "$T/bad" >"$T/imp3.out" 2>"$T/imp3.err" || rc=$?
[ $rc -eq 3 ] || die "a tampered tree: exit $rc, expected 3: $(cat "$T/imp3.err")"
for l in 1 2 3 4; do
    key=$(chain_ids "$T/bb2.tar" | sed -n "${l}p")
    grep -q "snapshot $key: .*its tree is not the layer" "$T/imp3.err" ||
        die "layer $l's changed tree not reported: $(cat "$T/imp3.err")"
done
[ "$(grep -c "applied from the layer blob" "$T/imp3.err")" = 4 ] ||
    die "not applied from their blobs: $(cat "$T/imp3.err")"
cairn -C "$T/s3" snapshot checkout "$key" "$T/co4" >/dev/null
list "$T/co4" >"$T/co4.list"
diff -u "$T/bb2.ref" "$T/co4.list" || die "the layers applied from their blobs differ"
cairn -C "$T/s3" fsck >/dev/null || die "fsck after a refused snapshot"

step "a changed blob is refused, and so is its image"
rm -rf "$T/bad2"; cp -a "$B/root" "$T/bad2"
man=$(field "$T/s2" example.com/busybox:2 config)
f=$T/bad2/io.containerd.content.v1.content/blobs/sha256/${man#sha256:}
chmod u+w "$f"; printf ' ' >>"$f"
cairn init "$T/s4" >/dev/null
rc=0
cairn -C "$T/s4" import containerd "$T/bad2" >/dev/null 2>"$T/imp4.err" || rc=$?
[ $rc -eq 3 ] || die "a changed blob: exit $rc: $(cat "$T/imp4.err")"
grep -q "blob $man: its bytes do not match" "$T/imp4.err" || die "blob not reported: $(cat "$T/imp4.err")"
grep -q "image example.com/busybox:2: its config" "$T/imp4.err" || die "image not reported: $(cat "$T/imp4.err")"
! blobs "$T/s4" | grep -qx "$man" || die "the changed blob was stored"
[ -z "$(names "$T/s4")" ] || die "an image with a bad config was recorded"
cairn -C "$T/s4" fsck >/dev/null || die "fsck after a refused blob"

step "damaged databases: a clear error, nothing imported"
META=io.containerd.metadata.v1.bolt/meta.db
"$BOLT_DUMP" "$B/root/$META" >"$T/meta.dump" || die "bolt-dump failed on containerd's meta.db"
grep -q 'example.com/busybox:2' "$T/meta.dump" || die "bolt-dump does not read containerd's meta.db"
for mode in truncate magic checksum pastend cycle; do
    rm -rf "$T/dmg"; cp -a "$B/root" "$T/dmg"
    python3 "$HERE/bolt-corrupt.py" "$B/root/$META" "$T/dmg/$META" "$mode"
    rm -rf "$T/s5"; cairn init "$T/s5" >/dev/null
    case $mode in
        truncate | checksum) pat="not a usable bbolt file.*(truncated|bad checksum)" ;;
        magic) pat="bad magic" ;;
        pastend) pat="page [0-9]+ is out of range" ;;
        cycle) pat="a cycle" ;;
    esac
    fails 1 "$META: .*$pat" -- cairn -C "$T/s5" import containerd "$T/dmg"
    [ -z "$(blobs "$T/s5")" ] || die "$mode: a refused import stored blobs"
done
python3 "$HERE/bolt-corrupt.py" "$B/root/$META" "$T/dmg/$META" meta0
rm -rf "$T/s5"; cairn init "$T/s5" >/dev/null
cairn -C "$T/s5" import containerd "$T/dmg" >/dev/null || die "one bad meta page: the other should be used"

step "random damage: bolt-dump and the importer end cleanly"
for i in $(seq 1 ${CAIRN_BOLT_ROUNDS:-200}); do
    python3 "$HERE/bolt-corrupt.py" "$B/root/$META" "$T/x.db" random "$i"
    rc=0
    "$BOLT_DUMP" "$T/x.db" >/dev/null 2>"$T/x.err" || rc=$?
    [ $rc -le 1 ] && ! grep -qE "Sanitizer|runtime error" "$T/x.err" ||
        die "seed $i: bolt-dump exited $rc: $(tail -3 "$T/x.err")"
    if [ $((i % 20)) -eq 0 ]; then
        cp "$T/x.db" "$T/dmg/$META"
        rc=0
        cairn -C "$T/s5" import containerd "$T/dmg" >/dev/null 2>"$T/x.err" || rc=$?
        [ $rc -le 3 ] && ! grep -qE "Sanitizer|runtime error" "$T/x.err" ||
            die "seed $i: the importer exited $rc: $(tail -3 "$T/x.err")"
    fi
done
cairn -C "$T/s5" fsck >/dev/null || die "fsck after imports of damaged roots"
echo "ok"
