# realtools-lib.sh: image artifacts made and read by the tools people use, all
# from Debian (umoci, skopeo, buildah, podman, containerd's ctr; docker (Debian's docker.io,
# unpacked by scripts/deps)), each with its storage, configuration and daemon under
# $T. Sourced after lib.sh. Nothing of the machine's is used or changed: the
# test runs in a mount namespace of its own, and what the tools insist on
# writing in system places (containers/image's blob-info cache in
# /var/lib/containers) lands in a shadow under $T.
#
#   rt_private_namespace "$@"   first thing after sourcing: re-run the test in
#                               a private mount namespace (every mount dies with it)
#   rt_need TOOL...             skip the test (exit 77) naming the Debian package
#   rt_setup                    private roots and configuration for the tools;
#                               every daemon, mount and container stopped at exit
#   rt_list DIR [--no-mtime]    tree-list.py: one line per entry (type, mode,
#                               owner, size, content, link target, xattrs, hardlinks)
#   rt_same_tree REF.list DIR WHAT   DIR's listing equals REF.list, or die with the difference
#   rt_digests PATH [REF]       image-digests.py: manifest, config, layers, chain, names
#   rt_containerd_start/_stop, rt_ctr ARGS (namespace from $CONTAINERD_NAMESPACE)
#   rt_ctr_list IMAGE OUT       the tree of an image's snapshot, as containerd mounts it
#   rt_dockerd_start/_stop, rt_docker ARGS   (Debian's docker.io, unpacked by scripts/deps)
#   rt_buildah, rt_podman       the makers' storage; rt_reader_podman DIR: an
#                               empty storage of its own to load an export into
#   rt_make_umoci LAYOUT REF [TARGET]  four layers by umoci insert (see the function)
#   rt_make_buildah NAME FORMAT three layers by buildah copy/mount/commit
#   rt_buildah_list IMAGE OUT   the tree of IMAGE as buildah mounts it
#   rt_podman_list IMAGE OUT    the tree of IMAGE as podman mounts it (maker storage)
#   rt_umoci_list LAYOUT:REF OUT  the tree umoci unpack makes
#   rt_cell ID STEP FN          run one check of one artifact, record ok/FAIL/n/a
#   rt_table                    print the table of cells; rt_failed: any FAIL?

RT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$RT_DIR/ctrd-config.sh"

# The test re-runs itself with a mount namespace of its own: buildah's and
# containerd's mounts, the shadows of system directories, the checkouts' mounts
# all vanish with it, whatever way the test ends.
rt_private_namespace() {
    local here
    here=$(readlink /proc/self/ns/mnt)
    [ "${CAIRN_RT_NS:-}" = "$here" ] && return 0
    local why
    if ! why=$(unshare --mount --propagation private true 2>&1); then
        # needs root, and / a mount point (in a chroot it is not: EINVAL);
        # without it the tools' mounts would reach the machine's namespace
        echo "SKIP: cannot make a private mount namespace (needs root, and / a mount point, which a chroot's is not): $why"
        exit 77
    fi
    trap - EXIT
    rm -rf "$T"
    exec unshare --mount --propagation private \
        bash -c 'export CAIRN_RT_NS=$(readlink /proc/self/ns/mnt); exec bash "$@"' rt "$0" "$@"
}

# rt_need TOOL...: each tool must be there; the Debian package that has it is named.
rt_need() {
    local t pkg
    for t in "$@"; do
        command -v "$t" >/dev/null && continue
        case $t in
            ctr | containerd) pkg=containerd ;;
            setfattr | getfattr) pkg=attr ;;
            unshare | findmnt) pkg=util-linux ;;
            *) pkg=$t ;;
        esac
        echo "SKIP: $t not found (Debian package $pkg; scripts/deps installs it)"
        exit 77
    done
}

# The shadow of a system directory: an overlay whose upper is under $T, only
# in the private namespace. What lands in the upper is reported at the end.
rt_shadow() {
    local d=$1 n
    [ -d "$d" ] || return 0
    [ "${CAIRN_RT_NS:-}" = "$(readlink /proc/self/ns/mnt)" ] || die "rt_shadow $d outside the private namespace"
    n=$(echo "$d" | tr / _)
    mkdir -p "$RT/shadow/$n/u" "$RT/shadow/$n/w"
    mount -t overlay overlay -o "lowerdir=$d,upperdir=$RT/shadow/$n/u,workdir=$RT/shadow/$n/w" "$d"
    RT_SHADOWS+=("$d")
}

rt_setup() {
    RT=$T/rt
    RT_SHADOWS=()
    RT_CTRD_PID=
    RT_DOCKERD_PID=
    mkdir -p "$RT"/{home/.config/containers,run,tmp,cni,cells,maker,scratch}
    chmod 0700 "$RT/run"
    # The tools read their user configuration from HOME and XDG: give them
    # empty ones. python3 is resolved first: a version manager's shim may
    # find its interpreters through HOME.
    RT_PYTHON=$(python3 -c 'import sys; print(sys.executable)')
    python3() { "$RT_PYTHON" "$@"; }
    export HOME=$RT/home XDG_CONFIG_HOME=$RT/home/.config XDG_DATA_HOME=$RT/home/.local/share
    export XDG_CACHE_HOME=$RT/home/.cache XDG_RUNTIME_DIR=$RT/run TMPDIR=$RT/tmp
    # overlayfs where the kernel lets us mount it here, vfs otherwise.
    RT_DRIVER=vfs
    mkdir -p "$RT/probe"/{l,u,w,m}
    if mount -t overlay overlay -o "lowerdir=$RT/probe/l,upperdir=$RT/probe/u,workdir=$RT/probe/w" "$RT/probe/m" 2>/dev/null; then
        umount "$RT/probe/m"
        RT_DRIVER=overlay
    fi
    rm -rf "$RT/probe"
    cat >"$RT/storage.conf" <<EOF
[storage]
driver = "$RT_DRIVER"
graphroot = "$RT/maker/graph"
runroot = "$RT/maker/run"
EOF
    cat >"$RT/containers.conf" <<EOF
[network]
network_config_dir = "$RT/cni"
[engine]
tmp_dir = "$RT/maker/libpod"
events_logger = "none"
cgroup_manager = "cgroupfs"
image_copy_tmp_dir = "$RT/tmp"
EOF
    cat >"$RT/registries.conf" <<EOF
unqualified-search-registries = []
short-name-mode = "disabled"
EOF
    echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$HOME/.config/containers/policy.json"
    export CONTAINERS_STORAGE_CONF=$RT/storage.conf CONTAINERS_CONF=$RT/containers.conf
    export CONTAINERS_REGISTRIES_CONF=$RT/registries.conf
    # containers/image keeps a blob-info cache in /var/lib/containers/cache for
    # root, with no option to move it; short-name aliases go to /var/cache.
    rt_shadow /var/lib
    rt_shadow /var/cache
    trap rt_cleanup EXIT
}

rt_cleanup() {
    local rc=$? d i written
    set +e
    if command -v buildah >/dev/null && [ -d "$RT/maker/graph" ]; then
        buildah umount --all >/dev/null 2>&1
        buildah rm --all >/dev/null 2>&1
    fi
    if command -v podman >/dev/null; then
        [ -d "$RT/maker/graph" ] && podman image unmount --all >/dev/null 2>&1
    fi
    rt_dockerd_stop
    rt_containerd_stop
    written=$(for d in "$RT"/shadow/*/u; do
        [ -d "$d" ] && (cd "$d" && find . -mindepth 1 ! -type d | sed "s|^\.|$(basename "$(dirname "$d")" | tr _ /)|")
    done 2>/dev/null | sort)
    [ -n "$written" ] && echo "note: the tools wrote in system directories (kept in the test's shadow, not on the machine): $(echo $written)"
    for ((i = ${#RT_SHADOWS[@]} - 1; i >= 0; i--)); do umount -l "${RT_SHADOWS[i]}"; done
    (exit $rc)
    cleanup
}

rt_list() { python3 "$RT_DIR/tree-list.py" "$@"; }
rt_digests() { python3 "$RT_DIR/image-digests.py" "$@"; }

# rt_same_tree REF.list DIR WHAT: the tree at DIR lists as REF.list.
rt_same_tree() {
    local ref=$1 dir=$2 what=$3 out n first
    out=$(mktemp "$RT/tmp/list-XXXXXX")
    rt_list "$dir" >"$out"
    if ! diff -u "$ref" "$out" >"$out.diff"; then
        cat "$out.diff"
        n=$(grep -c '^[-+][^-+]' "$out.diff" || true)
        first=$(grep -m1 '^[-+][^-+]' "$out.diff" | cut -c1-120)
        die "$what differs from the reference in $n lines: $first"
    fi
}

rt_buildah() { buildah "$@"; }
rt_podman() { podman --tmpdir "$RT/maker/libpod" "$@"; }
# rt_reader_podman DIR ARGS: podman on an empty storage of its own under DIR.
rt_reader_podman() {
    local d=$1
    shift
    podman --root "$d/graph" --runroot "$d/run" --storage-driver "$RT_DRIVER" --tmpdir "$d/libpod" "$@"
}

# containerd on a private root, state directory and socket; no CRI, no /opt.
rt_containerd_start() {
    local c=$RT/containerd i
    mkdir -p "$c"
    ctrd_private_config "$c" >"$c/config.toml"
    containerd --config "$c/config.toml" >"$c/log" 2>&1 &
    RT_CTRD_PID=$!
    for i in $(seq 100); do
        [ -S "$c/sock" ] && ctr --address "$c/sock" version >/dev/null 2>&1 && return 0
        kill -0 "$RT_CTRD_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -5 "$c/log" >&2
    die "containerd did not start"
}
rt_ctr() { ctr --address "$RT/containerd/sock" "$@"; }

rt_stop_pid() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}
rt_containerd_stop() { rt_stop_pid "$RT_CTRD_PID"; RT_CTRD_PID=; }

# rt_ctr_list IMAGE OUT: the tree of an image as containerd mounts it for a
# container: its top snapshot, through a view under a lease (a bare
# `ctr snapshots view` is garbage to containerd's collector, which may remove
# it while it is mounted).
rt_ctr_list() {
    local image=$1 out=$2 mnt
    mnt=$(mktemp -d "$RT/scratch/ctr-view-XXXXXX")
    rt_ctr images mount "$image" "$mnt" >/dev/null
    rt_list "$mnt" >"$out"
    rt_ctr images unmount --rm "$mnt" >/dev/null
}

# dockerd (Debian's docker.io, unpacked by scripts/deps): on a private data root, exec
# root and socket, using the test's containerd, with no networking. It runs in
# a namespace of its own where /etc and /run are shadowed: it writes
# /etc/docker/key.json and /run/docker/plugins whatever its flags say.
rt_have_dockerd() { command -v dockerd >/dev/null && command -v docker >/dev/null; }
rt_dockerd_start() {
    local d=$RT/docker i
    mkdir -p "$d"/{data,exec,shadow,cfg}
    echo '{}' >"$d/daemon.json"
    unshare --mount --propagation private bash -c '
        d=$1; shift
        for s in /etc /run; do
            n=$(echo $s | tr / _); mkdir -p "$d/shadow/$n/u" "$d/shadow/$n/w"
            mount -t overlay overlay -o "lowerdir=$s,upperdir=$d/shadow/$n/u,workdir=$d/shadow/$n/w" "$s" || exit 1
        done
        exec dockerd "$@"' rt "$d" --config-file "$d/daemon.json" --data-root "$d/data" \
        --exec-root "$d/exec" -H "unix://$d/sock" --pidfile "$d/pid" --containerd "$RT/containerd/sock" \
        --iptables=false --ip6tables=false --bridge=none --storage-driver "${RT_DRIVER/overlay/overlay2}" \
        >"$d/log" 2>&1 &
    RT_DOCKERD_PID=$!
    export DOCKER_HOST=unix://$d/sock DOCKER_CONFIG=$d/cfg
    for i in $(seq 150); do
        [ -S "$d/sock" ] && docker version >/dev/null 2>&1 && return 0
        kill -0 "$RT_DOCKERD_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -5 "$d/log" >&2
    die "dockerd did not start"
}
rt_docker() { docker "$@"; }
rt_dockerd_stop() { rt_stop_pid "$RT_DOCKERD_PID"; RT_DOCKERD_PID=; }

# rt_make_umoci LAYOUT REF [TARGET]: an image made with umoci only. umoci
# 0.4.7's layer tars end with the last entry's data (no padding, no end
# blocks), and `insert DIR /` writes an entry named '/'.
#   1 insert DIR TARGET   (default /: the root entry '/') owners, modes
#                         (setuid), an xattr, a hardlink, symlinks (one
#                         dangling), a fifo, a device, a big file, an old mtime
#   2 insert FILE /opt/f  a file alone
#   3 --whiteout          a whiteout alone (TARGET/etc/e2): no entry for its directory
#   4 --opaque DIR /usr   usr replaced, nothing of the lower usr left
rt_make_umoci() {
    local lay=$1 ref=$2 to=${3:-/} s
    s=$(mktemp -d "$RT/scratch/umoci-src-XXXXXX")
    mkdir -p "$s/root/etc" "$s/root/usr/bin" "$s/root/data/sub" "$s/new-usr/lib"
    echo e >"$s/root/etc/e"
    ln "$s/root/etc/e" "$s/root/etc/e2"
    setfattr -n user.k -v v "$s/root/etc/e"
    printf '#!/bin/sh\n' >"$s/root/usr/bin/x"
    chown 7:8 "$s/root/usr/bin/x"
    chmod 4755 "$s/root/usr/bin/x"
    ln -s x "$s/root/usr/bin/lx"
    ln -s /nowhere/at/all "$s/root/data/dangling"
    mkfifo "$s/root/data/fifo"
    mknod "$s/root/data/null" c 1 3
    head -c 200000 /dev/urandom >"$s/root/data/big"
    echo old >"$s/root/data/sub/old"
    chmod 0600 "$s/root/data/sub/old"
    touch -d '2001-02-03 04:05:06' "$s/root/data/sub/old"
    chmod 0750 "$s/root/data/sub"
    echo f >"$s/file"
    echo lib >"$s/new-usr/lib/l"
    umoci init --layout "$lay"
    umoci new --image "$lay:$ref"
    umoci config --image "$lay:$ref" --config.cmd /usr/bin/x --config.env A=b --config.workingdir /data
    umoci insert --image "$lay:$ref" "$s/root" "$to"
    umoci insert --image "$lay:$ref" "$s/file" /opt/f
    umoci insert --image "$lay:$ref" --whiteout "${to%/}/etc/e2"
    umoci insert --image "$lay:$ref" --opaque "$s/new-usr" /usr
    rm -rf "$s"
}

rt_umoci_list() {
    local b
    b=$(mktemp -d "$RT/scratch/umoci-unpack-XXXXXX")
    rmdir "$b"
    umoci unpack --image "$1" "$b" >/dev/null
    rt_list "$b/rootfs" >"$2"
    rm -rf "$b"
}

# rt_make_buildah NAME FORMAT: localhost/NAME:latest in the makers' storage,
# in FORMAT (oci or docker), three layers, each a commit of a container from
# the one before (there is no base image to `buildah run` in):
#   1 buildah copy of a tree (a hardlink pair, a symlink, a file to delete, a
#     directory to delete, one to replace), then in the mount: an owner, a
#     setuid mode, an xattr, a fifo
#   2 in the mount: etc/e added, gone/ and data/tmp deleted (whiteouts)
#   3 in the mount: usr/y and srv/s added (no entry for etc), opq/ replaced
#     (an opaque directory); config: cmd, env, label, working directory
rt_make_buildah() {
    local name=$1 format=$2 s c m
    s=$(mktemp -d "$RT/scratch/buildah-src-XXXXXX")
    mkdir -p "$s/usr/bin" "$s/data" "$s/gone/deep" "$s/opq/old"
    printf '#!/bin/sh\n' >"$s/usr/bin/x"
    chmod 0755 "$s/usr/bin/x"
    echo hello >"$s/data/a"
    ln "$s/data/a" "$s/data/hard"
    ln -s ../usr/bin/x "$s/data/link"
    echo tmp >"$s/data/tmp"
    echo g >"$s/gone/deep/f"
    echo o >"$s/opq/old/file"
    c=$(buildah from --format "$format" scratch)
    buildah copy -q "$c" "$s" / >/dev/null
    m=$(buildah mount "$c")
    chown 1234:5678 "$m/data/a"
    chmod 4750 "$m/usr/bin/x"
    setfattr -n user.color -v blue "$m/data/a"
    mkfifo "$m/data/fifo"
    buildah commit -q --format "$format" --rm "$c" "localhost/$name-1:latest" >/dev/null
    c=$(buildah from --format "$format" "localhost/$name-1:latest")
    m=$(buildah mount "$c")
    mkdir "$m/etc"
    echo e >"$m/etc/e"
    rm -rf "$m/gone" "$m/data/tmp"
    buildah commit -q --format "$format" --rm "$c" "localhost/$name-2:latest" >/dev/null
    c=$(buildah from --format "$format" "localhost/$name-2:latest")
    m=$(buildah mount "$c")
    echo y >"$m/usr/y"
    mkdir "$m/srv"
    echo s >"$m/srv/s"
    rm -rf "$m/opq"
    mkdir "$m/opq"
    echo new >"$m/opq/new"
    buildah config --cmd /usr/bin/x --env A=b --label team=cairn --workingdir /data "$c"
    buildah commit -q --format "$format" --rm "$c" "localhost/$name:latest" >/dev/null
    rm -rf "$s"
}

rt_buildah_list() {
    local c m
    c=$(buildah from "$1")
    m=$(buildah mount "$c")
    rt_list "$m" >"$2"
    buildah umount "$c" >/dev/null
    buildah rm "$c" >/dev/null
}

rt_podman_list() {
    local m
    m=$(rt_podman image mount "$1")
    rt_list "$m" >"$2"
    rt_podman image unmount "$1" >/dev/null
}

# The cells of the table: one check (STEP) of one artifact (ID). A check is a
# function run in a subshell with errexit; it passes by returning 0, says
# "not applicable" with rt_na (a limit of the peer tool, not cairn's), and is
# blocked with rt_blocked when what it needs is missing. The message of a
# failure is the last line that cairn, die or the tool printed.
declare -A RT_STATUS RT_MSG
RT_IDS=()
RT_STEPS=()
rt_na() { echo "n/a: $*"; exit 77; }
rt_blocked() { echo "blocked: $*"; exit 78; }
rt_cell() {
    local id=$1 st=$2 fn=$3 log rc status msg
    log=$RT/cells/$id.$st.log
    [[ " ${RT_IDS[*]} " == *" $id "* ]] || RT_IDS+=("$id")
    [[ " ${RT_STEPS[*]} " == *" $st "* ]] || RT_STEPS+=("$st")
    local t0=$EPOCHREALTIME
    set +e
    (set -e; "$fn" "$id") >"$log" 2>&1
    rc=$?
    set -e
    local dt
    dt=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }')
    case $rc in
        0) status=ok ;;
        77) status=n/a ;;
        78) status=blocked ;;
        *) status=FAIL ;;
    esac
    msg=$(grep -E '^(cairn|FAIL:|n/a:|blocked:|Error|error|ctr:|umoci|skopeo|time=)' "$log" | tail -1 || true)
    [ -n "$msg" ] || msg=$(grep -v '^$' "$log" | tail -1 || true)
    msg=${msg#FAIL: } msg=${msg#n/a: } msg=${msg#blocked: }
    [ "$status" = ok ] && msg=
    RT_STATUS[$id|$st]=$status
    RT_MSG[$id|$st]=${msg:0:300}
    printf -- '--- %-26s %-14s %-7s %5s%s\n' "$id" "$st" "$status" "$dt" "${msg:+  ($msg)}"
}

# rt_cell_as ID STEP OTHER: the cell has the status OTHER's has (the same
# bytes were checked there).
rt_cell_as() {
    local id=$1 st=$2 other=$3
    RT_STATUS[$id|$st]=${RT_STATUS[$other|$st]}
    RT_MSG[$id|$st]="as $other${RT_MSG[$other|$st]:+: ${RT_MSG[$other|$st]}}"
    printf -- '--- %-26s %-14s %-7s %5s  (%s)\n' "$id" "$st" "${RT_STATUS[$id|$st]}" - "${RT_MSG[$id|$st]}"
}

rt_table() {
    local id st line
    line=$(printf '%-26s' artifact)
    for st in "${RT_STEPS[@]}"; do line+=$(printf ' %-9s' "$st"); done
    echo "$line"
    for id in "${RT_IDS[@]}"; do
        line=$(printf '%-26s' "$id")
        for st in "${RT_STEPS[@]}"; do line+=$(printf ' %-9s' "${RT_STATUS[$id|$st]:--}"); done
        echo "$line"
    done
}

# The same table in Markdown, every cell with its status and, for all but ok,
# the reason.
rt_table_md() {
    local id st line
    line="| artifact |"
    for st in "${RT_STEPS[@]}"; do line+=" $st |"; done
    echo "$line"
    line="|---|"
    for st in "${RT_STEPS[@]}"; do line+="---|"; done
    echo "$line"
    for id in "${RT_IDS[@]}"; do
        line="| $id |"
        for st in "${RT_STEPS[@]}"; do
            line+=" ${RT_STATUS[$id|$st]:--}"
            [ -n "${RT_MSG[$id|$st]:-}" ] && line+=": $(echo "${RT_MSG[$id|$st]}" | sed 's/|/\\|/g' | cut -c1-160)"
            line+=" |"
        done
        echo "$line"
    done
}

rt_failed() {
    local k
    for k in "${!RT_STATUS[@]}"; do [ "${RT_STATUS[$k]}" = FAIL ] && return 0; done
    return 1
}
