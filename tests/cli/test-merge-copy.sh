#!/usr/bin/env bash
# Snapshots copied, not linked: merge --copy, --reflink falling back to a
# copy, and the default merge and freeze onto another filesystem (a tmpfs)
# keep everything the DiffID covers (hardlink groups, modes, owners, times,
# xattrs, symlinks, fifos, whiteouts, opaque directories), so every copy
# passes fsck; a copy that does not tar to its name is refused and reported.
source "$(dirname "$0")/lib.sh"

j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# groups DIR: the hardlink groups under DIR, as sorted lists of names.
groups() {
    (cd "$1" && find . -type f -links +1 -printf '%i %p\n' | sort |
        awk '{g[$1] = g[$1] " " $2} END {for (i in g) print g[i]}' | sort)
}

# fill DIR TAG: a diff with all the properties a copy must keep.
fill() {
    local d=$1
    mkdir -p "$d/bin" "$d/etc/conf.d" "$d/var/lib" "$d/opaque"
    printf 'tool %s\n' "$2" >"$d/bin/tool"
    ln "$d/bin/tool" "$d/bin/tool-a"; ln "$d/bin/tool" "$d/etc/tool-b"   # a group of three
    head -c 70000 /dev/urandom >"$d/var/lib/data"
    ln "$d/var/lib/data" "$d/etc/data-link"                             # a group of two
    chmod 4755 "$d/bin/tool"; chmod 0750 "$d/etc/conf.d"
    chown 42:43 "$d/var/lib/data"; chown 7:8 "$d/etc/conf.d"
    echo conf >"$d/etc/conf.d/a.conf"
    setfattr -n user.note -v "a note $2" "$d/etc/conf.d/a.conf"
    setfattr -n user.dirnote -v "on a dir" "$d/etc"
    setfattr -n user.big -v "$(head -c 3000 /dev/zero | tr '\0' x)" "$d/var/lib/data"
    ln -s ../bin/tool "$d/etc/link"; chown -h 5:6 "$d/etc/link"
    mkfifo "$d/var/fifo"; chmod 0640 "$d/var/fifo"
    mknod "$d/etc/gone" c 0 0                                           # a whiteout
    setfattr -n trusted.overlay.opaque -v y "$d/opaque"
    echo new >"$d/opaque/file"
    find "$d" -exec touch -h -d '2023-05-06 07:08:09' {} +
}

step "a source with two snapshots full of hardlink groups and special files"
S=$T/src
cairn init "$S" >/dev/null
A=$(cairn -C "$S" snapshot prepare); fill "$S/active/$A/fs" one
P=$(cairn -C "$S" snapshot commit "$A")
A=$(cairn -C "$S" snapshot prepare "$P"); fill "$S/active/$A/fs" two
C=$(cairn -C "$S" snapshot commit "$A")
cairn -C "$S" fsck >/dev/null || die "the source fails fsck"
want=$(groups "$S/snapshots")
[ "$(echo "$want" | wc -l)" = 4 ] || die "the source has $(echo "$want" | wc -l) hardlink groups, expected 4"

mkdir -p "$T/other"
mount -t tmpfs -o size=64m tmpfs "$T/other"
check() {   # check DEST OUT: every snapshot there, fsck clean, groups kept, nothing refused
    local dest=$1 out=$2
    [ -z "$out" ] || [ "$(echo "$out" | j 'd["refused"]')" = 0 ] || die "$dest: refused: $out"
    cairn -C "$dest" snapshot stat "$C" >/dev/null || die "$dest: the top snapshot is missing"
    cairn -C "$dest" fsck >"$T/fsck.out" || die "$dest fails fsck: $(cat "$T/fsck.out")"
    [ "$(groups "$dest/snapshots")" = "$want" ] || die "$dest: hardlink groups differ: $(groups "$dest/snapshots")"
}

step "merge onto another filesystem (links fail with EXDEV: copies)"
out=$(cairn merge --json "$T/other/m" "$S")
[ "$(echo "$out" | j 'd["copied"]')" -gt 0 ] || die "nothing was copied across filesystems: $out"
check "$T/other/m" "$out"

step "merge --copy and --reflink on one filesystem"
check "$T/mc" "$(cairn merge --copy --json "$T/mc" "$S")"
check "$T/mr" "$(cairn merge --reflink --json "$T/mr" "$S")"

step "freeze onto another filesystem"
cairn freeze "$S" "$T/other/f" >/dev/null
check "$T/other/f" ""

step "a copy that does not tar to its name is refused and reported"
hex=${C#sha256:}
echo tampered >>"$S/snapshots/$hex/bin/tool"
out=$(cairn merge --copy --json "$T/bad" "$S" 2>"$T/bad.err") || true
[ "$(echo "$out" | j 'd["refused"]')" = 1 ] || die "the tampered snapshot was not refused: $out"
grep -q "snapshot $C.*its copy tars to sha256:[0-9a-f]*, its name stands for" "$T/bad.err" ||
    die "the refusal is not reported: $(cat "$T/bad.err")"
fails 1 "is not there" -- cairn -C "$T/bad" snapshot stat "$C"
cairn -C "$T/bad" snapshot stat "$P" >/dev/null || die "the good parent was left out too"
[ ! -e "$T/bad/snapshots/$hex" ] || die "the refused copy was left in place"
fails 1 "snapshot $C: its copy .* tars to" -- cairn freeze "$S" "$T/other/bad"
umount "$T/other"
echo "all merge copy tests passed"
