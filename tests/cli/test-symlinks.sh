#!/usr/bin/env bash
# Nothing outside the state is touched through a symlink planted inside it:
# a state whose layout directories are symlinks is refused, naming the path;
# a snapshot or active directory that is a symlink is refused by checkout,
# mounts and mount, reported by fsck, and removed (the link, not what it
# names) by gc; merge leaves it out. A canary directory outside the state,
# the target of every link, must come out of all of it unchanged.
source "$(dirname "$0")/lib.sh"

CANARY=$T/canary
mkdir -p "$CANARY/sub"
echo "not the state's" >"$CANARY/secret"
echo "nor this" >"$CANARY/sub/more"
# names a blob directory would hold: gc and fsck look for these
for i in 1 2 3; do printf '%064d' "$i" >/dev/null; : >"$CANARY/$(printf '%064x' "$i")"; done
canary_sum() { (cd "$CANARY" && find . -printf '%p %i %n %s\n' | sort | sha256sum); }
SUM=$(canary_sum)
canary_ok() { [ "$(canary_sum)" = "$SUM" ] || die "the canary changed after: $*"; }

cairn init "$T/s" >/dev/null
echo hello >"$T/f"
cairn -C "$T/s" blob put "$T/f" >/dev/null
A=$(cairn -C "$T/s" snapshot prepare)
echo inside >"$T/s/active/$A/fs/file"
S=$(cairn -C "$T/s" snapshot commit "$A")
hex=${S#sha256:}

step "a layout directory that is a symlink: every command refuses, naming it"
for d in blobs blobs/sha256 snapshots active tmp db quarantine; do
    rm -rf "$T/x"; cp -a "$T/s" "$T/x"
    rm -rf "$T/lnk"; mv "$T/x/$d" "$T/lnk"
    # the link points at the canary for the object dirs; at the moved
    # directory for db/ (whose database must open for the check to matter)
    case $d in db) ln -s "$T/lnk" "$T/x/$d" ;; *) ln -s "$CANARY" "$T/x/$d" ;; esac
    for cmd in "info" "fsck" "fsck --repair" "gc --grace 0" "blob ls" "snapshot mounts $S" \
               "blob put $T/f"; do
        fails 1 "/x/$d: a symlink; the directories of a state must be its own" -- cairn -C "$T/x" $cmd
    done
    fails 1 "/x/$d: a symlink" -- cairn merge "$T/m-$RANDOM" "$T/x"
    canary_ok "$d a symlink"
done
# a lower whose layout goes through a symlink is refused the same way
cairn freeze -q "$T/s" "$T/low"
cairn init "$T/top" >/dev/null
cairn stack add "$T/top" "$T/low" >/dev/null
mv "$T/low/snapshots" "$T/low-snaps"; ln -s "$CANARY" "$T/low/snapshots"
fails 1 "/low/snapshots: a symlink" -- cairn -C "$T/top" gc --grace 0
canary_ok "a lower's snapshots/ a symlink"

step "the database's -wal or -shm a symlink: refused, naming it"
id=$(sed -n 's/^id=//p' "$T/s/cairn-state")
for side in wal shm; do
    rm -rf "$T/w"; cp -a "$T/s" "$T/w"
    rm -f "$T/w/db/$id.sqlite-$side"; ln -s "$CANARY/secret" "$T/w/db/$id.sqlite-$side"
    fails 1 "db/$id.sqlite-$side: a symlink" -- cairn -C "$T/w" blob put "$T/f"
    fails 1 "db/$id.sqlite-$side: a symlink" -- cairn -C "$T/w" info
    canary_ok "-$side a symlink"
done

step "snapshots/<hex> a symlink: checkout, mounts and mount refuse it"
cp -a "$T/s" "$T/y"
rm -rf "$T/y/snapshots/$hex"; ln -s "$CANARY" "$T/y/snapshots/$hex"
fails 1 "snapshots/$hex is a symlink" -- cairn -C "$T/y" snapshot checkout "$S" "$T/co"
[ -z "$(ls -A "$T/co" 2>/dev/null)" ] || die "checkout linked files from outside: $(ls -A "$T/co")"
fails 1 "snapshots/$hex is a symlink" -- cairn -C "$T/y" snapshot mounts "$S" --json
mkdir -p "$T/mnt"
fails 1 "snapshots/$hex is a symlink" -- cairn -C "$T/y" mount "$S" "$T/mnt"
B=$(cairn -C "$T/y" snapshot prepare "$S" 2>/dev/null) || B=
[ -z "$B" ] || fails 1 "snapshots/$hex is a symlink" -- cairn -C "$T/y" mount "$B" "$T/mnt"
grep -q " $T/mnt " /proc/self/mounts && die "a snapshot through a symlink was mounted"
canary_ok "checkout, mounts, mount"

step "merge leaves it out (and a move does not take the canary)"
out=$(cairn merge --json "$T/m1" "$T/y")
[ ! -e "$T/m1/snapshots/$hex" ] || die "merge took the symlinked snapshot"
cp -a "$T/y" "$T/y2"
cairn merge --move --drop-local -q "$T/m2" "$T/y2" || true
[ ! -e "$T/m2/snapshots/$hex" ] || [ ! -L "$T/m2/snapshots/$hex" ] || die "a move placed the link"
canary_ok "merge, merge --move"

step "fsck reports it; --repair and gc remove the link, never what it names"
fails 3 "snapshot $S: missing: .*snapshots/$hex is a symlink" -- sh -c "\"$CAIRN\" -C \"$T/y\" fsck >&2"
rc=0; cairn -C "$T/y" fsck --repair >/dev/null || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 3 ] || die "fsck --repair failed ($rc)"
canary_ok "fsck --repair"
cairn -C "$T/y" gc --grace 0 >/dev/null
[ ! -e "$T/y/snapshots/$hex" ] && [ ! -L "$T/y/snapshots/$hex" ] || die "gc left the orphan link"
canary_ok "gc"

step "active/<id>/fs a symlink: mount refuses it"
cp -a "$T/s" "$T/z"
C=$(cairn -C "$T/z" snapshot prepare)
rm -rf "$T/z/active/$C/fs"; ln -s "$CANARY" "$T/z/active/$C/fs"
fails 1 "active snapshot $C: .*active/$C/fs goes through a symlink" -- cairn -C "$T/z" mount "$C" "$T/mnt"
grep -q " $T/mnt " /proc/self/mounts && die "an active snapshot through a symlink was mounted"
fails 1 "" -- cairn -C "$T/z" snapshot commit "$C"
cairn -C "$T/z" gc --grace 0 >/dev/null
canary_ok "active mount, commit, gc"
echo "symlinks ok"
