# containerd-lib.sh: sourced by the tests that run Debian's containerd with
# cairn as its proxy snapshotter and content store. Every daemon runs on a
# private root, state dir and socket under $T; nothing touches the system's.
#   serve_start STATE NAME     start `cairn serve containerd` on $T/NAME.sock
#   serve_stop NAME            SIGTERM it, wait; fails unless it exited 0
#   ctrd_start NAME SOCK       start a containerd using the cairn socket SOCK
#                              (SOCK "": containerd's own content store and
#                              snapshotters, for comparison)
#   ctrd_stop NAME
#   ctr NAME ARGS...           ctr against containerd NAME
need containerd ctr runc

# runc needs / to be a mount point (it makes it a slave, then pivots away
# from it) and the cgroup filesystems. A chroot has neither (/ is a directory
# of the machine's filesystem, and /sys there a bind of the machine's without
# its submounts). Then the test runs again in a mount namespace of its own,
# chrooted into a recursive bind of its root, and mounts there the cgroup
# filesystems pid 1 has, with the same options (a v1 hierarchy mounted again
# is the same hierarchy). Nothing reaches the machine's mounts: the bind is
# made under a mount point of the chroot (/dev/shm, /run, /tmp) made private
# in the namespace first, every mount after it is in that private tree or in
# a private /sys, and all of it goes with the namespace.
# CTRD_SELF: the running script's absolute path (a bench that cd's sets it).
ctrd_root_is_mount() { awk '$5 == "/" { f = 1 } END { exit !f }' /proc/self/mountinfo; }
ctrd_have_cgroups() { grep -qE ' - cgroup2? ' /proc/self/mountinfo; }
ctrd_is_mount() { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }
ctrd_runc_ready() {
    ctrd_root_is_mount && ctrd_have_cgroups && return 0
    local self=${CTRD_SELF:-$0}
    if [ "${CAIRN_RUNC_NS:-}" != "$(readlink /proc/self/ns/mnt)" ]; then
        need unshare chroot
        unshare --mount --propagation unchanged true 2>/dev/null ||
            { echo "SKIP: runc needs / to be a mount point and cgroups, and this root cannot make a mount namespace to give it them (unshare --mount: not root?)"; exit 77; }
        local base="" b
        for b in /dev/shm /run /tmp; do ctrd_is_mount "$b" && { base=$b; break; }; done
        ! ctrd_root_is_mount && [ -z "$base" ] &&
            { echo "SKIP: runc needs / to be a mount point; this chroot has no mount point (/dev/shm, /run, /tmp) to bind its root under privately"; exit 77; }
        trap - EXIT
        rmdir "$T" 2>/dev/null || true
        local top="" rc=0
        [ -z "$base" ] || top=$(mktemp -d "$base/cairn-root-XXXXXX")
        unshare --mount --propagation unchanged bash -c \
            'export CAIRN_RUNC_NS=$(readlink /proc/self/ns/mnt) CAIRN_RUNC_BASE=$1 CAIRN_RUNC_TOP=$2; shift 2; exec bash "$@"' \
            ns "$base" "$top" "$self" "$@" || rc=$?
        [ -z "$top" ] || rmdir "$top" 2>/dev/null || true
        exit "$rc"
    fi
    if ! ctrd_root_is_mount; then
        # the base private first: the bind under it then reaches no other namespace
        mount --make-rprivate "$CAIRN_RUNC_BASE" && mount --rbind / "$CAIRN_RUNC_TOP" &&
            mount --make-rprivate "$CAIRN_RUNC_TOP" || die "cannot bind the root on $CAIRN_RUNC_TOP"
        trap - EXIT
        rmdir "$T" 2>/dev/null || true
        exec chroot "$CAIRN_RUNC_TOP" bash -c 'cd "$1" && shift && exec bash "$@"' cd "$PWD" "$self" "$@"
    fi
    ctrd_have_cgroups && return 0
    mount --make-rprivate /sys || die "cannot make /sys private in the test's mount namespace"
    local line mp fs opts n=0
    # mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS
    while read -r line; do
        mp=$(awk '{print $5}' <<<"$line")
        case $mp in /sys/fs/cgroup | /sys/fs/cgroup/*) ;; *) continue ;; esac
        fs=$(sed 's/.* - //' <<<"$line" | awk '{print $1}')
        opts=$(sed 's/.* - //' <<<"$line" | awk '{print $3}')
        # the tmpfs holding v1 hierarchies is read-only on some machines:
        # writable here, for their mount points
        [ "$fs" != tmpfs ] || opts=$(sed -E 's/(^|,)ro(,|$)/\1rw\2/' <<<"$opts")
        mkdir -p "$mp" 2>/dev/null || true
        mount -t "$fs" -o "$opts" "$fs" "$mp" || die "cannot mount $fs ($opts) on $mp"
        n=$((n + 1))
    done </proc/1/mountinfo
    [ "$n" -gt 0 ] || mount -t cgroup2 cgroup2 /sys/fs/cgroup || die "no cgroup filesystem to mount for runc"
}
ctrd_runc_ready "$@"
declare -A SERVE_PID CTRD_PID

serve_start() {
    local state=$1 name=$2
    "$CAIRN" -C "$state" serve containerd --socket "$T/$name.sock" 2>>"$T/$name.serve.log" &
    SERVE_PID[$name]=$!
    local i
    for i in $(seq 1 600); do
        [ -S "$T/$name.sock" ] && return 0
        kill -0 "${SERVE_PID[$name]}" 2>/dev/null || { cat "$T/$name.serve.log" >&2; die "cairn serve $name exited"; }
        sleep 0.1
    done
    die "cairn serve $name: no socket"
}

serve_stop() {
    local name=$1 rc=0
    kill -TERM "${SERVE_PID[$name]}"
    wait "${SERVE_PID[$name]}" || rc=$?
    unset "SERVE_PID[$name]"
    [ "$rc" -eq 0 ] || { cat "$T/$name.serve.log" >&2; die "cairn serve $name exited $rc on SIGTERM"; }
    [ ! -e "$T/$name.sock" ] || die "cairn serve $name left its socket"
}

ctrd_start() {
    local name=$1 sock=$2
    local dir=$T/ctrd-$name
    mkdir -p "$dir"
    {
        if [ -n "$sock" ]; then
            "$CAIRN" serve containerd --socket "$sock" --print-config | sed '/^\[proxy_plugins\]/,$d'
        else
            printf 'version = 2\ndisabled_plugins = []\n'
        fi
        cat <<CFG
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[debug]
  level = "debug"
# A deletion collects at once: by default the next gc waits 49 times the
# average gc's time (pause_threshold 0.02), past the tests' waits under load.
[plugins."io.containerd.gc.v1.scheduler"]
  deletion_threshold = 1
CFG
        [ -z "$sock" ] || "$CAIRN" serve containerd --socket "$sock" --print-config | sed -n '/^\[proxy_plugins\]/,$p'
    } >"$dir/config.toml"
    # The disabled list: containerd's own content store, and what cannot run here.
    sed -i 's|^disabled_plugins = \[\(.*\)\]|disabled_plugins = [\1, "io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]|; s|\[, |[|' "$dir/config.toml"
    containerd --config "$dir/config.toml" >>"$dir/log" 2>&1 &
    CTRD_PID[$name]=$!
    local i
    for i in $(seq 1 600); do
        ctr "$name" version >/dev/null 2>&1 && return 0
        kill -0 "${CTRD_PID[$name]}" 2>/dev/null || { tail -30 "$dir/log" >&2; die "containerd $name exited"; }
        sleep 0.1
    done
    die "containerd $name: not answering"
}

ctrd_stop() {
    local name=$1
    [ -n "${CTRD_PID[$name]:-}" ] || return 0
    kill -TERM "${CTRD_PID[$name]}" 2>/dev/null || true
    wait "${CTRD_PID[$name]}" 2>/dev/null || true
    unset "CTRD_PID[$name]"
}

ctr() {
    local name=$1
    shift
    command ctr --address "$T/ctrd-$name/containerd.sock" "$@"
}

ctrd_cleanup() {
    local n
    for n in "${!CTRD_PID[@]}"; do ctrd_stop "$n"; done
    for n in "${!SERVE_PID[@]}"; do kill -TERM "${SERVE_PID[$n]}" 2>/dev/null || true; wait "${SERVE_PID[$n]}" 2>/dev/null || true; done
}
