#!/usr/bin/env bash
# crash.sh: crash every mutating command of cairn, at every point where it
# writes, syncs, renames, links or unlinks and at random times, and check
# the promises of docs/DESIGN.md ("Writes and crashes") after each crash.
#
# usage: crash.sh [--full] [--points N] [--kills N] [--budget SECONDS]
#                 [--seed N] [--all] [--list] [--log FILE] [--jobs N]
#                 [--results FILE] [EXPERIMENT...]
#        crash.sh --table RESULTS-FILE...
#
# An experiment is a command over a state made for it (see the table at the
# end of this file). Its clean run, under the fault shim in counting mode
# (faultshim.c), gives the reference: the state it leaves, and how many
# times it calls each of write, pwrite, fsync, fdatasync, syncfs, rename,
# renameat, renameat2, link, linkat, unlink, unlinkat, copy_file_range and
# ioctl(FICLONE): every call is a fault point. Each run starts from a fresh
# copy of the state and crashes the command once:
#   - at a fault point: the call fails with EIO, or with ENOSPC from there on
#     (a full disk stays full), or the process is SIGKILLed there;
#   - or SIGKILLed after a random delay within its clean run's duration.
# Then, classes of failure in brackets:
#   [crash] it died of anything but our kill (a signal, a sanitizer report,
#   exit 2), [hang] it ran past the timeout, [status] it failed with no fault;
#   [fsck] `cairn fsck` (full hash) of every state finds a problem other than
#   an unreferenced object (a crash may leave those; gc removes them) or an
#   interrupted commit (its diff moved, its intent naming where: the rerun
#   below must finish it);
#   [lost] everything there before is still there, except what the command
#   removes, every blob still reads back with `blob get --verify`, and what
#   the command printed as done is there; [lie] if it exited 0 the state is
#   the clean run's;
#   [rerun] if it failed, the same command run again completes (a command
#   that cannot run twice, such as commit or rm, may instead find its work
#   done) and leaves the clean run's state; [rerun-fsck] fsck is clean (but
#   for unreferenced objects) after it;
#   [litter] nothing is left beside the states that the clean run does not
#   leave; [gc] after `gc --grace 0` fsck is clean, unreferenced objects
#   included; [staging] and tmp/ is empty.
# A clean run that fails any of these is [baseline].
#
# In the suite (no --full): a deterministic sample of fault points (--points,
# default 4; 2 under ASan) and of random kills (--kills, default 1) an
# experiment, within a time budget for the runs (--budget, default 60 s; 240
# s under ASan; 0: none) shared out among the experiments: on a loaded
# machine an experiment stops once its runs have spent its share, and says
# so (the sample is the same; how much of it runs is not). --full sweeps every point with every
# action and 20 random kills, with no budget, and prints the table experiment
# x runs x failures (by hand: it takes hours). --seed changes the random
# delays (each experiment's own, the same whatever runs beside it). --all
# also runs the experiments that known-failures skips. --log FILE keeps every
# failure's details. --jobs N runs N experiments at once, each in a crash.sh
# of its own (its own states, so nothing is shared but the machine), and
# prints their outputs as they end and then one table. --results FILE keeps
# the lines the table is made of; --table prints the table of such files
# (sweeps run apart, one table), with the exit status of a --full sweep. Exit 1 if a run failed in a class
# known-failures does not list for its experiment (--full: if any run
# failed).
#
# Environment: CAIRN (the command), CAIRN_FAULTSHIM (faultshim.so); both
# default to the build directory BUILD_ROOT (else build/ at the top).
here=$(cd "$(dirname "$0")" && pwd)
BUILD_ROOT=${BUILD_ROOT:-$here/../../build}
export CAIRN=${CAIRN:-$BUILD_ROOT/cli/cairn}
SHIM=${CAIRN_FAULTSHIM:-$BUILD_ROOT/tests/crash/faultshim.so}
source "$here/../cli/lib.sh"
source "$here/crash-lib.sh"
CAIRN=$(realpath "$CAIRN")
SHIM=$(realpath "$SHIM")
[ -f "$SHIM" ] || die "no fault shim at $SHIM (build it: ninja -C BUILD tests/crash/faultshim.so)"

full=0 points='' kills='' seed=1 all=0 list=0 log='' budget='' jobs=1 keep='' table=0
only=()
argv=("$@")
while [ $# -gt 0 ]; do
    case $1 in
    --full) full=1 ;;
    --jobs) jobs=$2; shift ;;
    --results) keep=$(realpath -m "$2"); shift ;;
    --table) table=1 ;;
    --points) points=$2; shift ;;
    --kills) kills=$2; shift ;;
    --seed) seed=$2; shift ;;
    --budget) budget=$2; shift ;;
    --all) all=1 ;;
    --list) list=1 ;;
    --log) log=$(realpath -m "$2"); shift ;;
    -h|--help) sed -n '2,/^here=/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "crash.sh: unknown option $1" >&2; exit 2 ;;
    *) only+=("$1") ;;
    esac
    shift
done
asan=0
case "${SANITIZE:-}" in *address*) asan=1 ;; esac
ldd "$CAIRN" 2>/dev/null | grep -q libasan && asan=1
[ -n "$points" ] || points=$([ $asan = 1 ] && echo 2 || echo 4)
[ -n "$kills" ] || kills=$([ $full = 1 ] && echo 20 || echo 1)
[ -n "$budget" ] || budget=$([ $full = 1 ] && echo 0 || { [ $asan = 1 ] && echo 240 || echo 60; })
TMO=120
vmax=$([ $full = 1 ] && echo 1000000 || echo 2)   # blobs read back after a crash
# The shim comes before ASan's runtime in the lookup order: let ASan start.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"

R=$T/run        # every run happens here, so the paths a state records hold
TPL=$T/tpl      # experiment templates and their clean runs
W=$T/work       # one run's outputs
IN=$T/in        # input files, read only
mkdir -p "$TPL" "$W"
results=$T/results  # one line a run: EXP MODE SPEC OUTCOME [CLASS...]
: >"$results"
[ -z "$log" ] || : >"$log"

# ---- the experiments ----------------------------------------------------
# exp NAME STATES FLAGS COMMAND: COMMAND (arguments of cairn, evaluated in
# $R after the template's variables) over the states STATES (directories
# under $R). FLAGS, comma-separated: once (running it again after it is
# done fails: commit, rm, create), random (it makes an active snapshot of a
# random id, left out of the comparison), prints (the digests it prints are
# what it made), aged (its clean run waits 3.5 s after the setup: what gc
# --grace 0 removes depends on the clock: its delta keeps what is younger
# than 2 s, in whole seconds). A function setup_NAME (dashes as
# underscores), when there, runs in $R over a copy of the base state s and
# prints shell assignments.
EXPS=()
declare -A E_STATES E_FLAGS E_CMD
exp() {
    EXPS+=("$1")
    E_STATES[$1]=$2 E_FLAGS[$1]=$3 E_CMD[$1]=$4
}

setup_blob_rm() {
    printf 'J1=%s J2=%s\n' "$(cairn -C s blob put "$IN/junk1" | cut -d' ' -f1)" \
        "$(cairn -C s blob put "$IN/junk2" | cut -d' ' -f1)"
}
setup_snapshot_commit() {
    local a
    a=$(cairn -C s snapshot prepare "$CH2")
    fill_tree "s/active/$a/fs/extra" 3
    mkdir -p "s/active/$a/fs/usr/lib"
    mknod "s/active/$a/fs/usr/lib/lib1.so" c 0 0     # a whiteout: deleted from the parent
    echo "A=$a"
}
setup_volume_save() {
    local a
    a=$(cairn -C s volume open apt)
    mkdir -p "s/active/$a/fs/archives" "s/active/$a/fs/lists"
    echo "deb two" >"s/active/$a/fs/archives/two.deb"
    head -c 500000 /dev/zero | tr '\0' v >"s/active/$a/fs/archives/big.deb"
    ln "s/active/$a/fs/archives/big.deb" "s/active/$a/fs/lists/big.deb"
    echo "A=$a"
}
setup_record_put() {
    echo "K3=$(dg "key three")"
}
# gc: blobs nothing keeps, a snapshot nothing keeps, an old volume version.
setup_gc() {
    local a
    cairn -C s blob put "$IN/junk1" "$IN/junk2" >/dev/null
    a=$(cairn -C s snapshot prepare "$CH1")
    fill_tree "s/active/$a/fs" 5
    cairn -C s snapshot commit "$a" >/dev/null
    a=$(cairn -C s volume open apt)
    echo "deb two" >"s/active/$a/fs/two.deb"
    cairn -C s volume save apt "$a" >/dev/null
    cairn -C s image rm v1 >/dev/null
}
setup_gc_budget() { setup_gc; }
# A second state sharing some of s: the same base snapshot (same chain id),
# a blob of s, and its own blob, snapshot and record.
make_s2() {
    local a
    cairn init s2 >/dev/null
    cairn -C s2 blob put "$IN/small2" "$IN/junk2" >/dev/null
    a=$(cairn -C s2 snapshot prepare)
    fill_tree "s2/active/$a/fs" 1
    ch=$(cairn -C s2 snapshot commit "$a")
    a=$(cairn -C s2 snapshot prepare "$ch")
    fill_tree "s2/active/$a/fs/two" 2
    ch=$(cairn -C s2 snapshot commit "$a")
    cairn -C s2 record put "$(dg "key of s2")" "$ch" --kind snapshot >/dev/null
}
setup_merge() { make_s2; }
setup_merge_copy() { make_s2; }
setup_merge_reflink() { make_s2; }
make_stack() {
    make_s2
    cairn -q freeze s fz1 >/dev/null
    cairn -q freeze s2 fz2 >/dev/null
    rm -rf s s2
    cairn init top >/dev/null
    cairn -C top blob put "$IN/junk1" >/dev/null
}
setup_stack_add() { make_stack; }
setup_flatten() {
    make_stack
    cairn -q stack add top fz1 fz2 >/dev/null
}
setup_init_frozen() {
    cairn -q freeze s fz >/dev/null
    rm -rf s
}
setup_init() { rm -rf s; }

exp init            new        once     'init new'
exp init-frozen     fz         once     'init --over-frozen fz'
exp blob-put-small  s          prints   '-C s blob put "$IN/small1" "$IN/junk1" "$IN/junk2"'
exp blob-put-large  s          prints   '-C s blob put "$IN/big" "$IN/junk2"'
exp blob-rm         s          once     '-C s blob rm "$J1" "$J2"'
exp snapshot-prepare s         random   '-C s snapshot prepare "$CH2"'
exp snapshot-commit s          once,prints '-C s snapshot commit "$A"'
exp layer-import    s          prints   '-C s layer import "$IN/layer.tgz" --parent "$CH2"'
exp image-import    s          -        '-C s image import "$IN/layout:v2"'
exp image-rm        s          once     '-C s image rm v1'
exp record-put      s          -        '-C s record put "$K3" "$CH1" --kind snapshot --link-from "$K1" --op "$OP"'
exp volume-open     s          random   '-C s volume open apt'
exp volume-save     s          once,prints '-C s volume save apt "$A"'
exp lease-create    s          once     '-C s lease create L2 --ttl 2h'
exp lease-add       s          -        '-C s lease add L1 snapshot "$CH1" "$CH2"'
exp gc              s          aged     '-C s gc --grace 0'
exp gc-budget       s          aged     '-C s gc --grace 0 --max-used 1MB'
exp freeze          's fz'     once     'freeze s fz'
exp merge           'dst s s2' -        'merge dst s s2'
exp merge-copy      'dst s s2' -        'merge --copy dst s s2'
exp merge-reflink   'dst s s2' -        'merge --reflink dst s s2'
exp stack-add       'top fz1 fz2' -     'stack add top fz1 fz2'
exp flatten         'top fz1 fz2' -     '-C top flatten'

if [ $list = 1 ]; then
    printf '%s\n' "${EXPS[@]}"
    exit 0
fi
tables=()
if [ $table = 1 ]; then
    tables=("${only[@]}")
    only=()
    full=1
fi
for e in "${only[@]}"; do
    [ -n "${E_CMD[$e]+x}" ] || die "no experiment '$e' (crash.sh --list)"
done
[ ${#only[@]} -gt 0 ] || [ $table = 1 ] || only=("${EXPS[@]}")

# known-failures: "EXPERIMENT CLASS[,CLASS...]  # why"; CLASS * skips it.
declare -A KNOWN
while read -r e c _; do
    case $e in ''|'#'*) continue ;; esac
    KNOWN[$e]=$c
done <"$here/known-failures"

# ---- runs ---------------------------------------------------------------
flag() { [[ ",${E_FLAGS[$1]}," == *",$2,"* ]]; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# inspect ARGS...: check.py, through one process kept for the whole run.
coproc CHECK { exec python3 "$here/check.py" "$CAIRN" --serve; }
CHECK_PID=$CHECK_PID
# Copies of its pipes, which (unlike a coprocess's own) subshells inherit.
exec {CK_W}>&"${CHECK[1]}" {CK_R}<&"${CHECK[0]}"
# (set +e: under errexit "(exit 1)" would end the trap before cleanup)
trap 'rc=$?; set +e; kill "$CHECK_PID" 2>/dev/null; (exit $rc); cleanup' EXIT
inspect() {
    local IFS=$'\t' line
    echo "$PWD"$'\t'"$*" >&"$CK_W"
    while IFS= read -r line <&"$CK_R"; do
        [ "$line" != "<<END>>" ] || return 0
        printf '%s\n' "$line"
    done
    die "check.py stopped"
}
# norm EXP FILE: an inventory without what differs from run to run.
norm() {
    if flag "$1" random; then sed -E '/^[^ ]+ (active|view) /d' "$2"; else cat "$2"; fi
}
fresh() {
    cd "$T"
    rm -rf "$R"
    cp -a "$TPL/$1" "$R"
    cd "$R"
    # shellcheck disable=SC1090
    source "$TPL/$1.vars"
    eval "args=(${E_CMD[$1]})"
}

# template EXP: the experiment's state, then its clean run, counted.
template() {
    local e=$1 f=${1//-/_} t0 t1 rc=0 p
    cd "$T"
    rm -rf "$R"
    cp -a "$T/base" "$R"
    cd "$R"
    cp "$T/base.vars" "$TPL/$e.vars"
    # shellcheck disable=SC1090
    source "$T/base.vars"
    if declare -F "setup_$f" >/dev/null; then
        "setup_$f" >>"$TPL/$e.vars" || die "$e: setup failed"
    fi
    cd "$T"
    mv "$R" "$TPL/$e"
    # gc --grace 0 keeps what is a few seconds young: let the setup age.
    ! flag "$e" aged || sleep 3.5
    fresh "$e"
    : >"$W/err2"
    # shellcheck disable=SC2086
    inspect --inv "$TPL/$e.pre" ${E_STATES[$e]} >"$W/problems"
    rm -f "$TPL/$e.counts"
    t0=$(now_ms)
    # The shim goes into cairn only (env runs it), not into timeout.
    timeout -k 5 $TMO env LD_PRELOAD="$SHIM" CAIRN_FAULT_COUNT="$TPL/$e.counts" \
        "$CAIRN" "${args[@]}" >"$W/out" 2>"$W/err" || rc=$?
    t1=$(now_ms)
    echo $((t1 - t0)) >"$TPL/$e.ms"
    [ -s "$TPL/$e.counts" ] || : >"$TPL/$e.counts"
    if [ $rc -ne 0 ]; then
        echo "baseline: the clean run exited $rc: $(tail -c 300 "$W/err")" >>"$W/problems"
    fi
    # shellcheck disable=SC2086
    inspect --inv "$TPL/$e.ref" --fsck strict ${E_STATES[$e]} | sed 's/^/baseline: /' >>"$W/problems"
    ls -A "$R" >"$TPL/$e.top"
    # shellcheck disable=SC2086
    inspect --gc --fsck strict ${E_STATES[$e]} | sed 's/^/baseline: /' >>"$W/problems"
    norm "$e" "$TPL/$e.pre" >"$TPL/$e.npre"
    norm "$e" "$TPL/$e.ref" >"$TPL/$e.nref"
    comm -23 "$TPL/$e.pre" "$TPL/$e.ref" >"$TPL/$e.gone"
    comm -12 "$TPL/$e.pre" "$TPL/$e.ref" >"$TPL/$e.keep"
    if [ -s "$W/problems" ]; then
        record "$e" clean - failed
        return 1
    fi
    return 0
}

# record EXP MODE SPEC OUTCOME: note a run and its problems ($W/problems).
record() {
    local classes
    classes=$(sed -E 's/^([a-z-]+):.*/\1/' "$W/problems" | sort -u | tr '\n' ' ')
    echo "$1 $2 $3 $4 $classes" >>"$results"
    if [ -s "$W/problems" ]; then
        local known=${KNOWN[$1]:-} c unk=0
        for c in $classes; do
            [[ ",$known," == *",$c,"* || $known == '*' ]] || unk=1
        done
        local tag=KNOWN
        [ $unk = 0 ] || tag=FAIL
        echo "$tag $1 $2 $3 ($4):"
        sed 's/^/    /' "$W/problems" | head -n 6
        if [ -n "$log" ]; then
            { echo "== $tag $1 $2 $3 ($4)"; cat "$W/problems"; echo "-- stderr:"; tail -c 2000 "$W/err"
              [ ! -s "$W/err2" ] || { echo "-- rerun stderr:"; tail -c 2000 "$W/err2"; }; } >>"$log"
        fi
    fi
}

# run EXP MODE SPEC: MODE fault (SPEC OP:N[+]:ACTION) or kill (SPEC ms).
run() {
    local e=$1 mode=$2 spec=$3 rc=0 fired=- outcome
    fresh "$e"
    : >"$W/problems"
    : >"$W/err2"
    rm -f "$W/flog"
    if [ "$mode" = fault ]; then
        # (in braces: this shell says nothing of the kill)
        { timeout -k 5 $TMO env LD_PRELOAD="$SHIM" CAIRN_FAULT="$spec" CAIRN_FAULT_LOG="$W/flog" \
            "$CAIRN" "${args[@]}" >"$W/out" 2>"$W/err"; } 2>/dev/null || rc=$?
        [ -s "$W/flog" ] && fired=yes || fired=no
    else
        "$CAIRN" "${args[@]}" >"$W/out" 2>"$W/err" &
        local pid=$!
        sleep "$(printf '%d.%03d' $((spec / 1000)) $((spec % 1000)))"
        kill -KILL $pid 2>/dev/null && fired=yes || fired=no
        { wait $pid; } 2>/dev/null || rc=$?
        [ $rc -eq 137 ] || fired=no
    fi
    case $rc in
    0) outcome=done ;;
    1) outcome=failed
       [ $fired = yes ] || echo "status: exit 1 though no fault fired: $(tail -c 300 "$W/err")" >>"$W/problems"
       [ -s "$W/err" ] || echo "status: exit 1 without a message" >>"$W/problems" ;;
    124) outcome=hung; echo "hang: still running after $TMO s" >>"$W/problems" ;;
    137) outcome=killed
         [ $fired = yes ] && { [ $mode = kill ] || [[ $spec == *:kill ]]; } ||
             echo "crash: SIGKILL that was not ours" >>"$W/problems" ;;
    *) outcome="exit$rc"; echo "crash: exit $rc: $(tail -c 400 "$W/err")" >>"$W/problems" ;;
    esac
    if grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error:' "$W/err"; then
        echo "crash: a sanitizer report: $(grep -Em1 'Sanitizer|runtime error:' "$W/err")" >>"$W/problems"
    fi
    [ "$fired" != no ] || [ $mode != fault ] || outcome="$outcome,unreached"
    # After the crash: fsck, nothing lost, the blobs read back.
    # shellcheck disable=SC2086
    inspect --inv "$W/inv1" --verify "$TPL/$e.keep" --verify-max $vmax --fsck lenient ${E_STATES[$e]} >>"$W/problems"
    local l
    while read -r l; do
        grep -qxF -- "$l" "$W/inv1" || grep -qxF -- "$l" "$TPL/$e.gone" || echo "lost: $l" >>"$W/problems"
    done <"$TPL/$e.npre"
    if flag "$e" prints; then
        for l in $(grep -Eo 'sha256:[0-9a-f]{64}' "$W/out" | sort -u); do
            grep -q -- " $l" "$W/inv1" || echo "lost: printed $l, which is not there" >>"$W/problems"
        done
    fi
    if [ $rc -eq 0 ]; then
        norm "$e" "$W/inv1" >"$W/n1"
        cmp -s "$W/n1" "$TPL/$e.nref" ||
            echo "lie: exit 0, but not the clean run's state: $(differs "$e" "$W/inv1")" >>"$W/problems"
    elif [ $rc -eq 1 ] || [ $rc -eq 137 ]; then
        # A rerun completes, and leaves the clean run's state.
        local rc2=0 same
        timeout -k 5 $TMO "$CAIRN" "${args[@]}" >"$W/out2" 2>"$W/err2" || rc2=$?
        # shellcheck disable=SC2086
        inspect --inv "$W/inv2" --fsck lenient ${E_STATES[$e]} | sed 's/^[a-z-]*:/rerun-fsck:/' >>"$W/problems"
        norm "$e" "$W/inv2" >"$W/n2"
        cmp -s "$W/n2" "$TPL/$e.nref" && same=1 || same=0
        # A command that cannot run twice may refuse, if its work is done.
        if [ $rc2 -ne 0 ] && ! { flag "$e" once && [ $same = 1 ]; }; then
            echo "rerun: exit $rc2: $(tail -c 300 "$W/err2")" >>"$W/problems"
        fi
        [ $same = 1 ] ||
            echo "rerun: not the clean run's state: $(differs "$e" "$W/inv2")" >>"$W/problems"
    fi
    # Nothing left beside the states; gc removes what the crash left.
    ls -A "$R" >"$W/top"
    cmp -s "$W/top" "$TPL/$e.top" ||
        echo "litter: $(comm -13 "$TPL/$e.top" "$W/top" | tr '\n' ' ')beside the states" >>"$W/problems"
    # shellcheck disable=SC2086
    inspect --gc --fsck strict ${E_STATES[$e]} >>"$W/problems"
    record "$e" "$mode" "$spec" "$outcome"
}

# differs EXP INV: how an inventory differs from the clean run's, briefly.
differs() {
    norm "$1" "$2" >"$W/nd"
    diff "$TPL/$1.nref" "$W/nd" | grep '^[<>]' | head -n 4 |
        sed 's/^</missing/; s/^>/extra/' | tr '\n' ';'
}

# points EXP: the fault points of the clean run, "OP N", in order.
points_all() {
    local op c n
    while read -r op c; do
        for ((n = 1; n <= c; n++)); do echo "$op $n"; done
    done <"$TPL/$1.counts"
}
# specs EXP: what to run at the fault points: everything (--full), or a
# deterministic sample of $points: round robin over the ops, those that
# publish first (renameat2, linkat, syncfs, fsync, ...; SQLite's pwrite and
# fdatasync last), taking each op's first call killed, its last failed (EIO,
# or ENOSPC from there on for a write), its middle one killed, and so on.
specs() {
    local e=$1 op n
    if [ $full = 1 ]; then
        points_all "$e" | while read -r op n; do
            echo "$op:$n:kill"
            echo "$op:$n:EIO"
            echo "$op:$n+:ENOSPC"
        done
        return
    fi
    # The ops in the order above, then each op's candidates, round robin.
    awk 'BEGIN { n = split("renameat2 linkat syncfs fsync unlinkat rename renameat copy_file_range ficlone link unlink write pwrite fdatasync", o, " ")
                 for (i = 1; i <= n; i++) rank[o[i]] = i }
         { print (($1 in rank) ? rank[$1] : 99), $0 }' "$TPL/$e.counts" | sort -n | cut -d' ' -f2- |
    awk -v k="$points" '
        function err(op, n) { return (op ~ /^(write|pwrite|copy_file_range)$/) ? op ":" n "+:ENOSPC" : op ":" n ":EIO" }
        { ops[++nops] = $1
          c = $2; m = int((c + 1) / 2); i = 0
          cand[$1, ++i] = $1 ":1:kill"
          cand[$1, ++i] = err($1, c)
          if (m != 1 && m != c) cand[$1, ++i] = $1 ":" m ":kill"
          cand[$1, ++i] = err($1, 1)
          if (c != 1) cand[$1, ++i] = $1 ":" c ":kill"
          if (m != 1 && m != c) cand[$1, ++i] = err($1, m)
          ncand[$1] = i }
        END { for (r = 1; r <= 6 && out < k; r++)
                  for (j = 1; j <= nops && out < k; j++)
                      if (r <= ncand[ops[j]]) { print cand[ops[j], r]; out++ } }'
}

# --jobs: the experiments in crash.sh's of their own, N at once; each
# child's output is shown when it ends, less its table (one is made of all).
parallel() {
    local pass=() e p running=0 b
    declare -A pids
    set -- "${argv[@]}"
    while [ $# -gt 0 ]; do
        case $1 in
        --jobs | --results | --log | --budget) shift ;;
        --points | --kills | --seed) pass+=("$1" "$2"); shift ;;
        -*) pass+=("$1") ;;
        esac
        shift
    done
    # The budget is the wall time: each experiment gets jobs/n of it.
    if [ "$budget" -gt 0 ]; then
        b=$((budget * jobs / ${#only[@]}))
        pass+=(--budget $((b > 0 ? b : 1)))
    else
        pass+=(--budget 0)
    fi
    reap() {
        local x
        for x in "${!pids[@]}"; do
            kill -0 "${pids[$x]}" 2>/dev/null && continue
            wait "${pids[$x]}" 2>/dev/null || true
            unset "pids[$x]"
            sed '/^$/,$d' "$T/out.$x"
            if [ ! -f "$T/res.$x" ]; then
                echo "FAIL $x: its crash.sh stopped: $(tail -n 3 "$T/out.$x" | tr '\n' ' ')"
                echo "$x clean - failed driver" >"$T/res.$x"
            fi
            # Kept as each ends: a sweep stopped early keeps what it did.
            cat "$T/res.$x" >>"$results"
            [ -z "$keep" ] || cat "$T/res.$x" >>"$keep"
            [ -z "$log" ] || cat "$T/log.$x" >>"$log" 2>/dev/null || true
            running=$((running - 1))
        done
    }
    [ -z "$keep" ] || : >"$keep"
    for e in "${only[@]}"; do
        while [ $running -ge "$jobs" ]; do
            sleep 1   # (not wait -n: it also waits for the check coprocess)
            reap
        done
        bash "$0" "${pass[@]}" --results "$T/res.$e" ${log:+--log "$T/log.$e"} "$e" \
            >"$T/out.$e" 2>&1 &
        pids[$e]=$!
        running=$((running + 1))
    done
    while [ $running -gt 0 ]; do
        sleep 1
        reap
    done
}

t_start=$(now_ms)
share=0 cut=0 par=0
if [ $table = 1 ]; then
    cat "${tables[@]}" >"$results"
elif [ "$jobs" -gt 1 ] && [ ${#only[@]} -gt 1 ]; then
    par=1
    parallel
    only=()
else
    make_inputs "$IN"
    mkdir -p "$R"
    # The base state is made at $R, so that the paths it records are $R's.
    make_base "$R/s" "$IN" >"$T/base.vars"
    mv "$R" "$T/base"
fi
if [ "$budget" -gt 0 ] && [ ${#only[@]} -gt 0 ]; then
    share=$((budget * 1000 / ${#only[@]}))
fi
for e in "${only[@]}"; do
    RANDOM=$seed
    if [ "${KNOWN[$e]:-}" = '*' ] && [ $all = 0 ]; then
        echo "SKIP $e: a known failure (tests/crash/known-failures); --all runs it"
        echo "$e skip - skipped" >>"$results"
        continue
    fi
    t0=$(now_ms)
    template "$e" || continue
    t1=$(now_ms)
    ms=$(cat "$TPL/$e.ms")
    # The first fault point, the random kills, the other points; once the
    # experiment's runs have spent its share of the budget, it stops.
    todo=()
    specs "$e" >"$W/specs"
    mapfile -t pts <"$W/specs"
    for ((i = 0; i < kills; i++)); do
        todo+=("kill $(((RANDOM * 32768 + RANDOM) % (ms * 11 / 10 + 1)))")
    done
    [ ${#pts[@]} -eq 0 ] || todo=("fault ${pts[0]}" "${todo[@]}")
    for p in "${pts[@]:1}"; do todo+=("fault $p"); done
    n=0
    for r in "${todo[@]}"; do
        if [ $share -gt 0 ] && [ $n -gt 0 ] && [ $(($(now_ms) - t1)) -gt $share ]; then
            cut=$((cut + ${#todo[@]} - n))
            echo "    ($e: its share of the budget, $((share / 1000)) s, is spent: $((${#todo[@]} - n)) runs left out)"
            break
        fi
        # shellcheck disable=SC2086
        run "$e" $r
        n=$((n + 1))
    done
    echo "--- $e: $(grep -c "^$e " "$results") runs, $(awk -v e="$e" '$1 == e && NF > 4' "$results" | wc -l) failed ($(($(now_ms) - t0)) ms; clean run $ms ms, $(awk '{s += $2} END {print s + 0}' "$TPL/$e.counts") fault points)"
done

# ---- the table ----------------------------------------------------------
[ -z "$keep" ] || [ $par = 1 ] || cp "$results" "$keep"
echo
python3 - "$results" "$here/known-failures" <<'PY'
import collections, sys
runs = collections.OrderedDict()
known = {}
for line in open(sys.argv[2]):
    f = line.split("#")[0].split()
    if len(f) >= 2:
        known[f[0]] = f[1].split(",")
for line in open(sys.argv[1]):
    f = line.split()
    e, mode, outcome, classes = f[0], f[1], f[3], f[4:]
    r = runs.setdefault(e, {"runs": 0, "failed": 0, "unknown": 0, "classes": collections.Counter(),
                            "unreached": 0, "skipped": False, "points": set()})
    if mode == "skip":
        r["skipped"] = True
        continue
    r["runs"] += 1
    if "unreached" in outcome:
        r["unreached"] += 1
    if classes:
        r["failed"] += 1
        r["classes"].update(classes)
        k = known.get(e, [])
        if "*" not in k and any(c not in k for c in classes):
            r["unknown"] += 1
print("%-18s %6s %8s %8s  %s" % ("experiment", "runs", "failures", "unknown", "classes (runs)"))
for e, r in runs.items():
    if r["skipped"]:
        print("%-18s %6s %8s %8s  %s" % (e, "-", "-", "-", "skipped: known failure"))
        continue
    cl = " ".join("%s:%d" % kv for kv in sorted(r["classes"].items()))
    if r["unreached"]:
        cl += (" " if cl else "") + "(%d points not reached)" % r["unreached"]
    print("%-18s %6d %8d %8d  %s" % (e, r["runs"], r["failed"], r["unknown"], cl))
PY
echo "crash: $(($(now_ms) - t_start)) ms$([ $cut = 0 ] || echo "; $cut runs left out for the budget (a loaded machine)")"
unknown=0 anyfail=0
while read -r e mode spec outcome classes; do
    [ -n "$classes" ] || continue
    anyfail=1
    k=${KNOWN[$e]:-}
    for c in $classes; do
        [[ ",$k," == *",$c,"* || $k == '*' ]] || unknown=1
    done
done <"$results"
if [ $full = 1 ]; then
    [ $anyfail = 0 ]
else
    [ $unknown = 0 ] || die "runs failed in classes known-failures does not list (above)"
fi
