#!/usr/bin/env bash
# snapshot commit and volume save, stopped at every point where they sync or
# rename (SIGKILL there, or EIO from the call) by a fault shim: at every point
# either the active snapshot with its data or the committed one with its row
# (for a volume: its version) exists, gc --grace 0 then deletes none of it,
# and a rerun completes with the user's files intact and fsck clean.
source "$(dirname "$0")/lib.sh"
SHIM=${FAULT_SHIM:?FAULT_SHIM must name the fault shim}
# Under ASan the shim is not first in the link order; that is fine here.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"

# faulted SPEC CMD...: run CMD with the fault; prints "fired" when it did.
faulted() {
    local spec=$1; shift
    rm -f "$T/fault.log"
    CAIRN_TEST_FAULT=$spec CAIRN_TEST_FAULT_LOG=$T/fault.log LD_PRELOAD=$SHIM "$@" \
        >"$T/fault.out" 2>"$T/fault.err" || true
    [ -s "$T/fault.log" ] && echo fired || true
}

# fill DIR: a small tree of the user's work.
fill() {
    mkdir -p "$1/d"
    echo "precious $2" >"$1/file"
    head -c 100000 /dev/urandom >"$1/d/big"
    ln "$1/file" "$1/d/hard"
}

# same_tree A B: the files of A and B have the same names and bytes.
same_tree() {
    diff <(cd "$1" && find . -type f -exec sha256sum {} + | sort -k2) \
         <(cd "$2" && find . -type f -exec sha256sum {} + | sort -k2) >/dev/null
}

cairn init "$T/s" >/dev/null
export CAIRN_STATE=$T/s
points=0
for op in syncfs fsync fdatasync rename; do
    for action in kill EIO; do
        for n in $(seq 1 40); do
            step "snapshot commit, $op #$n: $action"
            id=$(cairn snapshot prepare)
            rm -rf "$T/want"; fill "$T/want" "$op-$n-$action"
            cp -a "$T/want/." "$T/s/active/$id/fs/"
            fired=$(faulted "$op:$n:$action" "$CAIRN" snapshot commit "$id")
            if [ -z "$fired" ]; then
                grep -Eq '^sha256:' "$T/fault.out" || die "commit without a fault failed: $(cat "$T/fault.err")"
                chain=$(cat "$T/fault.out")
            else
                points=$((points + 1))
                if cairn snapshot ls --active | grep -q "^$id "; then
                    # Not committed: gc keeps what the rerun needs. (A
                    # committed snapshot that nothing names is garbage.)
                    cairn gc --grace 0 >/dev/null || die "gc after the fault failed"
                    chain=$(cairn snapshot commit "$id") || die "the rerun of commit failed"
                else
                    # Committed before the fault stopped it from printing:
                    # the only snapshot of the state.
                    chain=$(cairn snapshot ls | grep -Eo '^sha256:[0-9a-f]{64}') ||
                        die "neither the active snapshot nor a committed one is left: $(cat "$T/fault.err")"
                fi
            fi
            cairn snapshot stat "$chain" >/dev/null || die "$chain has no row"
            rm -rf "$T/out"; cairn snapshot checkout "$chain" "$T/out"
            same_tree "$T/want" "$T/out" || die "the committed files differ from the user's"
            cairn snapshot rm "$chain" >/dev/null
            # What a commit killed after its rows leaves (work/) gc removes.
            [ -z "$fired" ] || cairn gc --grace 0 >/dev/null
            [ ! -e "$T/s/active/$id" ] || die "active/$id left behind"
            cairn fsck >"$T/fsck.out" || die "fsck after $op #$n $action: $(cat "$T/fsck.out")"
            [ -n "$fired" ] || break
        done
    done
done
[ "$points" -ge 6 ] || die "only $points fault points of commit were reached"

step "volume save, stopped at each point, leaves the open volume or a saved version"
vpoints=0
for op in syncfs fsync fdatasync rename; do
    for action in kill EIO; do
        for n in $(seq 1 40); do
            vol=v-$op-$n-$action
            id=$(cairn volume open "$vol")
            rm -rf "$T/want"; fill "$T/want" "$vol"
            cp -a "$T/want/." "$T/s/active/$id/fs/"
            fired=$(faulted "$op:$n:$action" "$CAIRN" volume save "$vol")
            if [ -n "$fired" ]; then
                vpoints=$((vpoints + 1))
                cairn gc --grace 0 >/dev/null || die "gc after the fault failed"
                if cairn snapshot ls --active | grep -q "^$id "; then
                    cairn volume save "$vol" >/dev/null || die "$vol: the rerun of save failed"
                fi
            fi
            v=$(cairn volume versions "$vol" | head -1 | grep -Eo 'sha256:[0-9a-f]{64}') ||
                die "$vol: no version after $op #$n $action: $(cat "$T/fault.err")"
            cairn gc --grace 0 >/dev/null
            rm -rf "$T/out"; cairn snapshot checkout "$v" "$T/out" || die "$vol: version $v is gone"
            same_tree "$T/want" "$T/out" || die "$vol: the saved files differ from the user's"
            cairn fsck >"$T/fsck.out" || die "fsck after save $op #$n $action: $(cat "$T/fsck.out")"
            cairn volume rm "$vol" >/dev/null
            [ -n "$fired" ] || break
        done
    done
done
[ "$vpoints" -ge 6 ] || die "only $vpoints fault points of volume save were reached"
echo "all commit crash tests passed ($points commit points, $vpoints save points)"
