#!/usr/bin/env bash
# remote: push and pull of a state to a file:// remote, beside rsync of the
# same blobs and the copy limit (cp of one file of the same bytes); re-push
# after 5% new data (bytes sent / bytes new); compact of STATES states under
# one tag (object bytes moved, metadata bytes moved). One run each; prints
# one table. s3:// and oci:// rows come with their backends.
#
#   state: BLOBS random blobs of SIZE bytes (10,000 x 64 KiB by default)
#
# Usage: bench/remote.sh [WORKDIR]   (env: BLOBS SIZE STATES)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CAIRN=${CAIRN:-$REPO/build/cli/cairn}
[ -x "$CAIRN" ] || { echo "remote: build cairn first (ninja -C build)" >&2; exit 1; }
for t in python3 rsync; do command -v $t >/dev/null || { echo "remote: $t is needed" >&2; exit 1; }; done
BLOBS=${BLOBS:-10000} SIZE=${SIZE:-65536} STATES=${STATES:-32}
W=${1:-}
if [ -z "$W" ]; then W=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-remote-XXXXXX"); KEEP=0; else mkdir -p "$W"; KEEP=1; fi
W=$(cd "$W" && pwd)
cleanup() { [ "$KEEP" -eq 1 ] || rm -rf "$W"; }
trap cleanup EXIT
j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

echo "making a state of $BLOBS blobs of $SIZE bytes in $W" >&2
"$CAIRN" init "$W/s" >/dev/null
python3 - "$W/in" "$BLOBS" "$SIZE" <<'PY'
import os, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(d, exist_ok=True)
for i in range(n):
    with open(f"{d}/{i}", "wb") as f:
        f.write(os.urandom(size))
PY
find "$W/in" -type f | xargs -n 2000 "$CAIRN" -C "$W/s" blob put >/dev/null
sync
total=$((BLOBS * SIZE))

t0=$(now); out=$("$CAIRN" -C "$W/s" push --json "file://$W/r" main); t1=$(now)
push=$(secs "$t0" "$t1"); sent=$(echo "$out" | j 'd["bytes_moved"]')
"$CAIRN" init "$W/p" >/dev/null
t0=$(now); "$CAIRN" -C "$W/p" pull "file://$W/r" main >/dev/null; t1=$(now); pull=$(secs "$t0" "$t1")
t0=$(now); rsync -a "$W/s/blobs/" "$W/rsync/"; sync; t1=$(now); rs=$(secs "$t0" "$t1")
cat "$W"/in/* >"$W/one"; sync
t0=$(now); cp "$W/one" "$W/one-copy"; sync; t1=$(now); limit=$(secs "$t0" "$t1")

# re-push after 5% new data
mkdir -p "$W/new"
python3 - "$W/new" "$((BLOBS / 20))" "$SIZE" <<'PY'
import os, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    with open(f"{d}/{i}", "wb") as f:
        f.write(os.urandom(size))
PY
find "$W/new" -type f | xargs -n 2000 "$CAIRN" -C "$W/s" blob put >/dev/null
new=$(((BLOBS / 20) * SIZE))
t0=$(now); out=$("$CAIRN" -C "$W/s" push --json "file://$W/r" main); t1=$(now)
repush=$(secs "$t0" "$t1"); resent=$(echo "$out" | j 'd["bytes_moved"]'); remeta=$(echo "$out" | j 'd["meta_bytes"]')

# compact of STATES states under one tag, each with a few objects of its own
for i in $(seq 1 "$STATES"); do
    "$CAIRN" init "$W/c$i" >/dev/null
    head -c "$SIZE" /dev/urandom | "$CAIRN" -C "$W/c$i" blob put - >/dev/null
    "$CAIRN" -C "$W/c$i" push "file://$W/r" many >/dev/null
done
before=$(du -sb "$W/r/blobs" | cut -f1)
t0=$(now); out=$("$CAIRN" remote compact --json "file://$W/r" many); t1=$(now)
compact=$(secs "$t0" "$t1")
cmoved=$(echo "$out" | j 'd["bytes_moved"]'); cmeta=$(echo "$out" | j 'd["meta_bytes"]')

printf '%-44s %10s %14s\n' "operation" "seconds" "bytes"
printf '%-44s %10s %14s\n' "push, $BLOBS objects (file://)" "$push" "$sent"
printf '%-44s %10s %14s\n' "pull, into an empty state" "$pull" "$total"
printf '%-44s %10s %14s\n' "rsync -a of the blobs" "$rs" "$total"
printf '%-44s %10s %14s\n' "the limit: cp of one file of those bytes" "$limit" "$total"
printf '%-44s %10s %14s\n' "re-push after 5% new data: sent" "$repush" "$resent"
printf '%-44s %10s %14s\n' "   bytes sent / bytes new" "" "$(python3 -c "print(f'{$resent / $new:.3f}')")"
printf '%-44s %10s %14s\n' "   metadata sent" "" "$remeta"
printf '%-44s %10s %14s\n' "compact of $STATES states: object bytes moved" "$compact" "$cmoved"
printf '%-44s %10s %14s\n' "   metadata bytes moved" "" "$cmeta"
