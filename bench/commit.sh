#!/usr/bin/env bash
# bench/commit.sh: committing a ~200 MB diff (a copy of part of /usr).
#   cairn snapshot commit     the DiffID (canonical tar into SHA-256), syncfs, rename, row
#   ostree commit             the same tree into a fresh bare repository
#   tar -c | openssl sha256   reading and hashing the tree as a tar: the limit
# Each is run RUNS times on a warm page cache after a `sync`, and the median
# is shown with its ratio to the limit. Run by hand; never by the tests.
# Usage: bench/commit.sh [WORKDIR]   env: SIZE_MB (200), RUNS (5), CAIRN
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-200}
RUNS=${RUNS:-5}
CAIRN=${CAIRN:-$PWD/build/cli/cairn}
[ -x "$CAIRN" ] || { echo "build cairn first (ninja -C build)" >&2; exit 1; }
command -v ostree >/dev/null || { echo "ostree is missing (scripts/deps installs it)" >&2; exit 1; }
if [ $# -ge 1 ]; then W=$1; mkdir -p "$W"; else W=$(mktemp -d "${TMPDIR:-/var/tmp}/cairn-bench-XXXXXX"); fi
W=$(cd "$W" && pwd)
trap 'rm -rf "$W"' EXIT

# The tree: whole directories of /usr, in this order, until SIZE_MB.
SRC=$W/src
mkdir -p "$SRC"
total=0
for d in /usr/lib/python3.11 /usr/include /usr/libexec /usr/share/perl /usr/lib/gcc /usr/bin \
         /usr/share/locale /usr/lib/x86_64-linux-gnu; do
    [ -d "$d" ] || continue
    [ "$total" -ge $((SIZE_MB << 20)) ] && break
    mkdir -p "$SRC$(dirname "$d")"
    cp -a "$d" "$SRC$(dirname "$d")/"
    total=$(du -sb "$SRC" | cut -f1)
done
files=$(find "$SRC" -type f | wc -l)
printf 'tree: %s MB in %s files (%s; load average %s)\n' "$((total >> 20))" "$files" \
    "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
tar -C "$SRC" -cf - . >/dev/null # warm the cache

# The limit.
: >"$W/t.limit"
for _ in $(seq "$RUNS"); do
    sync
    s=$(now); tar -C "$SRC" -cf - . | openssl dgst -sha256 >/dev/null; e=$(now)
    awk -v s="$s" -v e="$e" 'BEGIN {print e - s}' >>"$W/t.limit"
done

# cairn: each run commits a fresh copy of the tree (copied before the clock).
S=$W/state
"$CAIRN" init "$S" >/dev/null
: >"$W/t.cairn"
for _ in $(seq "$RUNS"); do
    id=$("$CAIRN" -C "$S" snapshot prepare)
    cp -a "$SRC/." "$S/active/$id/fs/"
    sync
    s=$(now); chain=$("$CAIRN" -C "$S" snapshot commit "$id"); e=$(now)
    awk -v s="$s" -v e="$e" 'BEGIN {print e - s}' >>"$W/t.cairn"
    "$CAIRN" -C "$S" snapshot rm "$chain"
done

# ostree: a fresh bare repository each run.
: >"$W/t.ostree"
for i in $(seq "$RUNS"); do
    R=$W/repo$i
    ostree --repo="$R" init --mode=bare
    sync
    s=$(now); ostree --repo="$R" commit --branch=bench --tree=dir="$SRC" >/dev/null; e=$(now)
    awk -v s="$s" -v e="$e" 'BEGIN {print e - s}' >>"$W/t.ostree"
    rm -rf "$R"
done

limit=$(median <"$W/t.limit")
printf '\n%-34s %10s %10s\n' "commit of the tree" "seconds" "vs limit"
for k in limit cairn ostree; do
    m=$(median <"$W/t.$k")
    case $k in
        limit) name="tar -c | openssl dgst -sha256" ;;
        cairn) name="cairn snapshot commit" ;;
        ostree) name="ostree commit (bare repo)" ;;
    esac
    printf '%-34s %10.3f %9.2fx\n' "$name" "$m" "$(awk -v m="$m" -v l="$limit" 'BEGIN {print m / l}')"
done
printf '(median of %s runs, warm cache, after sync; %s cores; load average after: %s)\n' \
    "$RUNS" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
