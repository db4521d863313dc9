#!/usr/bin/env bash
# Stacking in overlayfs: frozen states A and B mounted as lowers with an
# empty upper; `cairn init` on the mount gives it an identity of its own in
# the upper and keeps A's and B's databases (found side by side in db/) as
# read-only layers. Everything in A and B is usable, a snapshot directory of
# each can be the lowerdir of a nested overlayfs mount, new writes land in
# the upper only, and A and B are byte for byte unchanged afterwards.
source "$(dirname "$0")/lib.sh"

j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
blobs_of() { cairn -C "$1" blob ls | awk '{print $1}' | sort; }
# Every file's bytes, and every entry's type, mode and owner.
sums() { (cd "$1" && find . -type f -exec sha256sum {} + | sort; find . -printf '%y %m %U:%G %p\n' | sort); }

grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || die "overlayfs is not available"

step "two frozen states, each with blobs and a snapshot directory"
mkdir -p "$T/data"
for s in a b; do
    cairn init "$T/$s.live" >/dev/null
    for i in $(seq 1 30); do echo "$s blob $i" >"$T/data/$s$i"; done
    echo "common" >"$T/data/common"
    cairn -C "$T/$s.live" blob put "$T/data/$s"* "$T/data/common" >/dev/null
    # Committed snapshots: a base, and a child over it.
    act=$(cairn -C "$T/$s.live" snapshot prepare)
    mkdir -p "$T/$s.live/active/$act/fs/etc"
    echo "from $s" >"$T/$s.live/active/$act/fs/etc/$s.conf"
    echo "shared from $s" >"$T/$s.live/active/$act/fs/etc/shared.conf"
    base=$(cairn -C "$T/$s.live" snapshot commit "$act")
    act=$(cairn -C "$T/$s.live" snapshot prepare "$base")
    mkdir -p "$T/$s.live/active/$act/fs/usr"
    echo "child of $s" >"$T/$s.live/active/$act/fs/usr/$s.child"
    chain=$(cairn -C "$T/$s.live" snapshot commit "$act")
    cairn freeze -q "$T/$s.live" "$T/$s"
    eval "chain_$s=${chain#sha256:}; full_$s=$chain"
done
suma=$(sums "$T/a"); sumb=$(sums "$T/b")
want=$( (blobs_of "$T/a"; blobs_of "$T/b") | sort -u)

step "mount A and B as lowers with an empty upper; cairn init on the mount"
mkdir -p "$T/upper" "$T/work" "$T/m"
mount -t overlay overlay -o "lowerdir=$T/a:$T/b,upperdir=$T/upper,workdir=$T/work" "$T/m"
aid=$(sed -n 's/^id=//p' "$T/a/cairn-state"); bid=$(sed -n 's/^id=//p' "$T/b/cairn-state")
fails 1 "frozen" -- cairn -C "$T/m" blob put "$T/data/common"   # A's identity: read-only
mid=$(cairn init --json "$T/m" | j 'd["id"]')
[ "$mid" != "$aid" ] && [ "$mid" != "$bid" ] || die "the mount kept a lower's id"
grep -qx "id=$mid" "$T/upper/cairn-state" || die "the new identity is not in the upper"
[ -f "$T/upper/db/$mid.sqlite" ] || die "the new database is not in the upper"

step "everything in A and B is usable"
info=$(cairn -C "$T/m" info --json)
[ "$(echo "$info" | j 'd["lowers"]')" = 2 ] || die "A's and B's databases are not layers: $info"
[ "$(echo "$info" | j 'd["frozen"]')" = False ] || die "the mount is frozen"
[ "$(blobs_of "$T/m")" = "$want" ] || die "blob ls is not the union"
[ "$(echo "$info" | j 'd["snapshots"]["count"]')" = 4 ] || die "snapshots: $info"
cairn -C "$T/m" snapshot stat "$full_b" >/dev/null || die "B's snapshot through the view"
cairn -C "$T/m" blob get --verify "sha256:$(sha "$T/data/a7")" | cmp -s - "$T/data/a7" || die "A's blob"
cairn -C "$T/m" blob get --verify "sha256:$(sha "$T/data/b9")" | cmp -s - "$T/data/b9" || die "B's blob"
cairn -C "$T/m" fsck >/dev/null || die "fsck of the mount"

step "a snapshot of each, the lowerdirs of a nested overlayfs mount inside the merged state"
mkdir -p "$T/nu" "$T/nw" "$T/n"
mount -t overlay overlay \
    -o "lowerdir=$T/m/snapshots/$chain_a:$T/m/snapshots/$chain_b,upperdir=$T/nu,workdir=$T/nw" "$T/n"
[ "$(cat "$T/n/usr/a.child")" = "child of a" ] && [ "$(cat "$T/n/usr/b.child")" = "child of b" ] || die "nested mount content"
echo "written in the nested mount" >"$T/n/usr/new"
umount "$T/n"
[ -f "$T/nu/usr/new" ] || die "the nested mount's write is not in its upper"

step "cairn mounts a snapshot chain of B through the merged state"
mkdir -p "$T/cm"
cairn -C "$T/m" mount "$full_b" "$T/cm"
[ "$(cat "$T/cm/etc/b.conf")" = "from b" ] && [ "$(cat "$T/cm/usr/b.child")" = "child of b" ] || die "cairn mount of B's chain"
umount "$T/cm"

step "new writes land in the upper only"
echo "new after the mount" >"$T/data/new"
new=$(cairn -C "$T/m" blob put "$T/data/new")
[ -f "$T/upper/blobs/sha256/${new#sha256:}" ] || die "the new blob is not in the upper"
cairn -C "$T/m" blob label "sha256:$(sha "$T/data/a1")" seen=yes >/dev/null
cairn -C "$T/m" blob stat "sha256:$(sha "$T/data/a1")" | grep -q "seen=yes" || die "label"
[ "$(sqlite3 "$T/upper/db/$mid.sqlite" 'SELECT count(*) FROM blobs')" = 1 ] || die "rows outside the upper"
ls "$T/upper/db" | grep -qv "^$mid" && die "a lower database was copied up: $(ls "$T/upper/db")"

step "the mount can be frozen, and merged eagerly into a plain state"
cairn freeze -q "$T/m" "$T/mf"
cairn -C "$T/mf" fsck >/dev/null || die "fsck of the frozen view"
[ "$(blobs_of "$T/mf")" = "$( (echo "$want"; echo "$new") | sort -u)" ] || die "the frozen view lost blobs"
cairn merge -q "$T/eager" "$T/m"
[ "$(blobs_of "$T/eager")" = "$(blobs_of "$T/m")" ] || die "the eager merge of the view differs"
[ "$(cairn -C "$T/eager" info --json | j 'd["snapshots"]["count"]')" = 4 ] || die "snapshots not merged"
mkdir -p "$T/em"
cairn -C "$T/eager" mount "$full_a" "$T/em"
[ "$(cat "$T/em/usr/a.child")" = "child of a" ] || die "a merged snapshot chain does not mount"
umount "$T/em"
diff -r "$T/eager/snapshots/$chain_b" "$T/b/snapshots/$chain_b" || die "a merged snapshot differs"
cairn -C "$T/eager" fsck >/dev/null

step "flatten the view: rows into its own database, the lower databases dropped from the view"
cairn flatten -q "$T/m"
[ "$(cairn -C "$T/m" info --json | j 'd["lowers"]')" = 0 ] || die "still layered"
[ "$(blobs_of "$T/m")" = "$(blobs_of "$T/eager")" ] || die "flatten changed the view"
cairn -C "$T/m" fsck >/dev/null

step "A and B are byte for byte unchanged"
umount "$T/m"
[ "$(sums "$T/a")" = "$suma" ] || die "A changed"
[ "$(sums "$T/b")" = "$sumb" ] || die "B changed"
echo ok
