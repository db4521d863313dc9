#!/usr/bin/env bash
# soak.sh: everything at once on one state for SECONDS (default 20): blob
# writers (small blobs and ones of several ingest slots), a committer of
# snapshot chains, an importer of layers over snapshots nothing keeps, a
# recorder of cache results, a volume user, gc --grace 0
# with a budget, freeze, merge, and readers (blob get --verify, snapshot
# checkout, listings, du, a live fsck). Each worker loops until the time is
# up, each command bounded by a timeout.
#
# usage: soak.sh [SECONDS] [--log FILE]
#
# What must hold (failure classes in brackets, by worker):
#   - every command succeeds, or fails only as busy (EXPECTED below) [the
#     worker's name: put, commit, import, record, volume, gc, freeze, merge, read,
#     fsck-live (a live fsck: any problem but an unreferenced object, which
#     is a writer's object before its row)];
#   - what a writer saw kept stays: a blob or snapshot it put, leased, and
#     then found still there (gc may take an object before the lease names
#     it; not after) reads back, blobs with --verify [lost];
#   - at the end: fsck (full hash) of the state, of its frozen copies and of
#     the merged states is clean, unreferenced objects included (nothing
#     crashed), and tmp/ is empty [fsck];
#   - in either fsck, no snapshot's parent is missing [dangling].
# Exit 1 on a failure in a class that tests/crash/known-failures does not list
# for "soak". Environment: CAIRN, as crash.sh.
here=$(cd "$(dirname "$0")" && pwd)
BUILD_ROOT=${BUILD_ROOT:-$here/../../build}
export CAIRN=${CAIRN:-$BUILD_ROOT/cli/cairn}
source "$here/../cli/lib.sh"
source "$here/crash-lib.sh"
CAIRN=$(realpath "$CAIRN")

dur=20 log=''
while [ $# -gt 0 ]; do
    case $1 in
    --log) log=$(realpath -m "$2"); shift ;;
    -h|--help) sed -n '2,/^here=/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    [0-9]*) dur=$1 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
EXPECTED='busy|database is locked'
TMO=120

S=$T/s
mkdir -p "$T/fail" "$T/kept" "$T/work" "$T/runs"
make_inputs "$T/in"
cairn init "$S" >/dev/null
cairn -C "$S" lease create keep >/dev/null
end=$((SECONDS + dur))

# try WORKER CMD...: run a cairn command; a failure not EXPECTED (nor ALSO,
# when set) is noted for WORKER. Prints the command's output; returns its
# status.
try() {
    local w=$1 rc=0 err
    shift
    err=$(mktemp "$T/work/err.XXXXXX")
    timeout -k 5 $TMO "$CAIRN" "$@" 2>"$err" || rc=$?
    echo $rc >>"$T/runs/$w"
    if [ $rc -ne 0 ] && ! grep -Eq "$EXPECTED${ALSO:+|$ALSO}" "$err"; then
        echo "$w: exit $rc: cairn $*: $(head -c 400 "$err")" >>"$T/fail/$w"
    fi
    rm -f "$err"
    return $rc
}
# keep KIND NAME: lease it, and if it is still there once leased, nothing
# may take it any more.
keep() {
    try "$3" -C "$S" lease add keep "$1" "$2" >/dev/null || return 0
    if "$CAIRN" -C "$S" "$1" stat "$2" >/dev/null 2>&1; then
        echo "$2" >>"$T/kept/$1"
    fi
}
# problems CLASS WHERE: note fsck's problem lines (standard input) under
# CLASS, a snapshot whose parent is missing under "dangling" (issue 9,
# item 4: an import racing gc), names of objects shortened.
problems() {
    local l
    grep -v '^[0-9]* problems\{0,1\}$' | while IFS= read -r l; do
        l=$(sed -E 's/sha256:[0-9a-f]{64}/sha256:.../g; s/[0-9a-f]{32,}/ID/g' <<<"$l")
        case $l in
        *dangling*) echo "dangling: $2: $l" >>"$T/fail/dangling" ;;
        *) echo "$1: $2: $l" >>"$T/fail/$1" ;;
        esac
    done
}
pick() { [ -s "$1" ] && shuf -n1 "$1" || true; }

putter() {
    local id=$1 i=0 f d
    f=$T/work/put.$id
    while [ $SECONDS -lt $end ]; do
        i=$((i + 1))
        if [ $((i % 25)) = 0 ]; then
            head -c $((9 * 1024 * 1024 + RANDOM)) /dev/urandom >"$f"   # more than two slots
        else
            head -c $((RANDOM * (1 + i % 5))) /dev/urandom >"$f"
        fi
        d=$(try put -C "$S" blob put "$f" | cut -d' ' -f1) || continue
        keep blob "$d" put
        # The same bytes again: already there.
        [ $((i % 3)) != 0 ] || try put -C "$S" blob put "$f" >/dev/null || true
    done
}

committer() {
    local i=0 a parent ch
    while [ $SECONDS -lt $end ]; do
        i=$((i + 1))
        parent=$([ $((i % 3)) = 0 ] && pick "$T/kept/snapshot" || true)
        # shellcheck disable=SC2086
        a=$(try commit -C "$S" snapshot prepare $parent) || continue
        mkdir -p "$S/active/$a/fs/d$i"
        echo "commit $i" >"$S/active/$a/fs/d$i/f"
        ln "$S/active/$a/fs/d$i/f" "$S/active/$a/fs/d$i/g"
        head -c $((RANDOM * 4)) /dev/urandom >"$S/active/$a/fs/d$i/data"
        ch=$(try commit -C "$S" snapshot commit "$a") || continue
        keep snapshot "$ch" commit
    done
}

recorder() {
    local i=0 r
    while [ $SECONDS -lt $end ]; do
        i=$((i + 1))
        r=$(pick "$T/kept/blob")
        [ -n "$r" ] || { sleep 0.1; continue; }
        try record -C "$S" record put "$(dg "soak key $i")" "$r" --kind blob >/dev/null || true
        r=$(pick "$T/kept/snapshot")
        [ -z "$r" ] || try record -C "$S" record put "$(dg "soak key s$i")" "$r" --kind snapshot \
            --link-from "$(dg "soak key $i")" --op "$(dg op)" >/dev/null || true
        "$CAIRN" -C "$S" record get "$(dg "soak key $((RANDOM % i + 1))")" >/dev/null 2>&1 || true
    done
}

# A layer over a snapshot nothing keeps, which gc may take at any time: the
# import fails (the parent is not there) or its child has its parent.
importer() {
    local i=0 a p ch
    while [ $SECONDS -lt $end ]; do
        i=$((i + 1))
        a=$(try import -C "$S" snapshot prepare) || continue
        echo "base $i" >"$S/active/$a/fs/base"
        p=$(try import -C "$S" snapshot commit "$a") || continue
        ch=$(ALSO="snapshot $p.*(not there|not found)|parent $p was removed" try import -C "$S" layer import "$T/in/layer.tgz" --parent "$p") ||
            continue
        keep snapshot "$ch" import
    done
}

volumer() {
    local i=0 a
    while [ $SECONDS -lt $end ]; do
        i=$((i + 1))
        a=$(try volume -C "$S" volume open cache) || continue
        mkdir -p "$S/active/$a/fs/v"
        echo "version $i" >"$S/active/$a/fs/v/$i"
        try volume -C "$S" volume save cache "$a" >/dev/null || true
    done
}

collector() {
    while [ $SECONDS -lt $end ]; do
        try gc -C "$S" -q gc --grace 0 --max-used 30MB >/dev/null || true
        sleep 0.2
    done
}

freezer() {
    local i=0
    while [ $SECONDS -lt $end ]; do
        i=$((i + 1))
        try freeze -q freeze "$S" "$T/fz.$i" >/dev/null || true
        # Keep the last four copies (the merger reads the newest).
        rm -rf "$T/fz.$((i - 4))"
        sleep 0.5
    done
}

merger() {
    local i=0 fz
    while [ $SECONDS -lt $end ]; do
        i=$((i + 1))
        try merge -q merge "$T/m.$i" "$S" >/dev/null || true
        # not a freeze's own staging beside its destination (fz.N.cairn-freeze-PID):
        # it is renamed away under the merge
        fz=$(ls -d "$T"/fz.* 2>/dev/null | grep -E '/fz\.[0-9]+$' | sort -t. -k2 -n | tail -n1 || true)
        # The newest frozen copy too (the freezer keeps it a while).
        [ -z "$fz" ] || [ ! -e "$fz/cairn-state" ] || try merge -q merge "$T/m.$i" "$fz" >/dev/null || true
        rm -rf "$T/m.$((i - 2))"
        sleep 0.5
    done
}

reader() {
    local b s out
    out=$T/work/checkout
    while [ $SECONDS -lt $end ]; do
        b=$(pick "$T/kept/blob")
        [ -z "$b" ] || try read -C "$S" blob get "$b" --verify >/dev/null || true
        s=$(pick "$T/kept/snapshot")
        if [ -n "$s" ]; then
            rm -rf "$out"
            try read -C "$S" snapshot checkout "$s" "$out" >/dev/null || true
        fi
        try read -C "$S" blob ls >/dev/null || true
        try read -C "$S" record ls >/dev/null || true
        try read -C "$S" du >/dev/null || true
        try read -C "$S" info >/dev/null || true
    done
}

fsck_live() {
    local rc out
    while [ $SECONDS -lt $end ]; do
        # Problems beside writers and gc are failures too: a live state is
        # consistent at every commit. But for unreferenced objects: a writer
        # puts its object in place before the row that names it.
        rc=0
        out=$(timeout -k 5 $TMO "$CAIRN" -C "$S" fsck --no-hash 2>&1) || rc=$?
        echo $rc >>"$T/runs/fsck-live"
        out=$(grep -v -e ': unreferenced: ' -e '^[0-9]* problems\{0,1\}$' <<<"$out" || true)
        if [ $rc -ne 0 ] && [ -n "$out" ] && ! grep -Eq "$EXPECTED" <<<"$out"; then
            problems fsck-live "live" <<<"$out"
        fi
        sleep 0.3
    done
}

step "soak: $dur s"
pids=()
putter 1 & pids+=($!)
putter 2 & pids+=($!)
committer & pids+=($!)
recorder & pids+=($!)
volumer & pids+=($!)
importer & pids+=($!)
collector & pids+=($!)
freezer & pids+=($!)
merger & pids+=($!)
reader & pids+=($!)
fsck_live & pids+=($!)
# Every worker stops by itself at the end; one that does not, within the
# command timeout, is stopped.
stuck=0
for p in "${pids[@]}"; do
    left=$((end + TMO + 10 - SECONDS))
    [ $left -gt 0 ] || left=1
    if ! timeout $left tail --pid="$p" -f /dev/null; then
        kill -KILL "$p" 2>/dev/null || true
        stuck=1
    fi
    wait "$p" 2>/dev/null || true
done
[ $stuck = 0 ] || echo "hang: a worker did not stop" >>"$T/fail/hang"

step "soak: what was kept is there; fsck of the state, its copies and merges"
for b in $(sort -u "$T/kept/blob" 2>/dev/null); do
    echo 0 >>"$T/runs/lost"
    "$CAIRN" -C "$S" blob get "$b" --verify >/dev/null 2>"$T/work/err" ||
        echo "lost: blob $b (kept): $(head -c 300 "$T/work/err")" >>"$T/fail/lost"
done
for s in $(sort -u "$T/kept/snapshot" 2>/dev/null); do
    echo 0 >>"$T/runs/lost"
    "$CAIRN" -C "$S" snapshot stat "$s" >/dev/null 2>"$T/work/err" ||
        echo "lost: snapshot $s (kept): $(head -c 300 "$T/work/err")" >>"$T/fail/lost"
done
for d in "$S" "$T"/fz.* "$T"/m.*; do
    [ -e "$d/cairn-state" ] || continue
    echo 0 >>"$T/runs/fsck"
    echo 0 >>"$T/runs/dangling"
    out=$("$CAIRN" -C "$d" fsck 2>&1) || problems fsck "${d#"$T"/}" <<<"$out"
done
[ -z "$(ls -A "$S/tmp")" ] || echo "fsck: tmp/ holds $(ls -A "$S/tmp" | wc -l) entries" >>"$T/fail/fsck"
cairn -C "$S" info | sed -n '/^KIND/,$p'
echo "kept: $(sort -u "$T/kept/blob" 2>/dev/null | wc -l) blobs, $(sort -u "$T/kept/snapshot" 2>/dev/null | wc -l) snapshots; frozen copies and merges checked: $(ls -d "$T"/fz.* "$T"/m.* 2>/dev/null | wc -l)"

# The table: a worker's commands (or, for lost, fsck and dangling, the
# checks at the end: kept objects read back, states checked) and its
# failures.
echo
printf '%-10s %8s %8s\n' class runs failures
for c in put commit import record volume gc freeze merge read fsck-live lost fsck dangling hang; do
    printf '%-10s %8s %8s\n' "$c" "$(cat "$T/runs/$c" 2>/dev/null | wc -l)" \
        "$(cat "$T/fail/$c" 2>/dev/null | wc -l)"
done
echo

known=$(awk '$1 == "soak" { print $2 }' "$here/known-failures")
unknown=0
for f in "$T"/fail/*; do
    [ -e "$f" ] || continue
    c=${f##*/}
    tag=FAIL
    if [[ ",$known," == *",$c,"* ]]; then tag=KNOWN; else unknown=1; fi
    echo "$tag $c: $(wc -l <"$f") failures, e.g.:"
    sort "$f" | uniq -c | sort -rn | head -n 3 | cut -c1-400 | sed 's/^/    /'
    [ -z "$log" ] || { echo "== $tag $c"; cat "$f"; } >>"$log"
done
[ $unknown = 0 ] || die "soak: failures in classes known-failures does not list (above)"
echo "soak: ok"
