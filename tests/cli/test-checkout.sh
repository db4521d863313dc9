#!/usr/bin/env bash
# test-checkout.sh: a checkout (linked and --copy) is the tree overlayfs
# shows for the same chain: first the case of a layer that does not name a
# directory its neighbours do, then random stacks (tests/cli/random-stack.py)
# compared by a full listing (tests/cli/tree-list.py); and a layer import
# that writes into a directory it does not list, under an opaque one.
# CHECKOUT_SEEDS="1-500" or "7 12" runs other seeds by hand; the suite runs 1-10.
source "$(dirname "$0")/lib.sh"
HERE=$(dirname "$0")
S=$T/s
cairn init "$S" >/dev/null
MNT=$T/mnt; mkdir -p "$MNT"

# same CHAIN NAME: the mount of CHAIN, its checkout and its copied checkout
# list the same.
same() {
    cairn -C "$S" mount "$1" "$MNT"
    python3 "$HERE/tree-list.py" "$MNT" >"$T/$2.mounted"
    cairn umount "$MNT"
    cairn -C "$S" snapshot checkout "$1" "$T/$2.co" -q
    cairn -C "$S" snapshot checkout "$1" "$T/$2.cc" --copy -q
    python3 "$HERE/tree-list.py" "$T/$2.co" >"$T/$2.co.list"
    python3 "$HERE/tree-list.py" "$T/$2.cc" >"$T/$2.cc.list"
    diff -u "$T/$2.mounted" "$T/$2.co.list" || die "$2: the checkout of $1 differs from its mount"
    diff -u "$T/$2.mounted" "$T/$2.cc.list" || die "$2: the copied checkout of $1 differs from its mount"
}

step "a layer between two others that names no usr/ leaves usr/bin/x to show"
layer() { # layer PARENT PATH...: a layer with these files; prints its ChainID
    local p=$1; shift
    local a; a=$(cairn -C "$S" snapshot prepare ${p:+"$p"})
    for f in "$@"; do mkdir -p "$(dirname "$S/active/$a/fs/$f")"; echo "$f" >"$S/active/$a/fs/$f"; done
    cairn -C "$S" snapshot commit "$a"
}
L1=$(layer "" usr/bin/x)
L2=$(layer "$L1" etc/e)
L3=$(layer "$L2" usr/y srv/s)
: same "$L3" three
for f in usr/bin/x etc/e usr/y srv/s; do
    : grep || die "$f is missing from the checkout"
done

step "a layer that writes into a directory it does not list takes its metadata from what the chain shows"
# L1 has usr/bin 0700 1234:5678; L2 makes usr opaque (usr/bin is gone from
# the chain); L3 writes usr/bin/x without an entry for usr/bin: it is new
# there, 0755 root:root, not L1's hidden one.
python3 - "$T/inh" <<'PY'
import io, sys, tarfile
def layer(name, entries):
    with tarfile.open(f"{sys.argv[1]}{name}.tar", "w", format=tarfile.PAX_FORMAT) as t:
        for path, mode, data in entries:
            i = tarfile.TarInfo(path); i.mtime = 1600000000; i.mode = mode
            i.uid, i.gid = (1234, 5678) if name == "1" else (0, 0)
            if data is None:
                i.type = tarfile.DIRTYPE; t.addfile(i)
            else:
                i.size = len(data); t.addfile(i, io.BytesIO(data))
layer("1", [("usr", 0o700, None), ("usr/bin", 0o700, None), ("usr/bin/old", 0o644, b"old")])
layer("2", [("usr", 0o755, None), ("usr/.wh..wh..opq", 0o644, b""), ("usr/o", 0o644, b"o")])
layer("3", [("usr/bin/x", 0o755, b"x")])
PY
I1=$(cairn -C "$S" layer import "$T/inh1.tar")
I2=$(cairn -C "$S" layer import "$T/inh2.tar" --parent "$I1")
I3=$(cairn -C "$S" layer import "$T/inh3.tar" --parent "$I2")
same "$I3" inherit
grep -q '^usr/bin 0o40755 0:0$' "$T/inherit.mounted" ||
    die "usr/bin took the metadata of the directory an opaque usr hides: $(grep '^usr/bin ' "$T/inherit.mounted")"
! grep -q '^usr/bin/old' "$T/inherit.mounted" || die "usr/bin/old shows through the opaque usr"

seeds=()
for s in ${CHECKOUT_SEEDS:-1-10}; do
    case $s in
    *-*) seeds+=($(seq "${s%-*}" "${s#*-}")) ;;
    *) seeds+=("$s") ;;
    esac
done
step "random stacks: seeds ${CHECKOUT_SEEDS:-1-10}"
for seed in "${seeds[@]}"; do
    top=$(python3 "$HERE/random-stack.py" "$S" "$seed") || die "seed $seed: the stack could not be made"
    same "$top" "seed$seed"
    rm -rf "$T/seed$seed.co" "$T/seed$seed.cc"
done
echo "ok"
