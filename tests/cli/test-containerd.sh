#!/usr/bin/env bash
# test-containerd.sh: `cairn serve containerd` as the proxy snapshotter and
# content store of Debian's containerd 1.6 (with ctr and runc), each daemon
# on a private root and socket under $T:
# - ctr images import of a three-layer busybox image, ctr run of a command
#   that reads a file of the lowest layer (and sees the upper layers'
#   whiteout and opaque dir) and writes one;
# - ctr snapshots prepare/mounts/commit/ls/info/usage/rm, ctr content
#   ls/get/rm through the proxy;
# - a server that goes away: containerd's calls fail cleanly and work again
#   when it is back; SIGTERM stops it cleanly;
# - the fleet: engine 1 pulls (ctr images pull --plain-http) from
#   docker-registry on 127.0.0.1 and runs; its state is frozen; engine 2 (an
#   empty containerd root, a new state stacked on the frozen one) pulls the
#   same image with containerd's client library and its unpacker (as CRI and
#   nerdctl pull; ctr 1.6 does not send the ref label): no layer applied, no
#   layer blob fetched, the frozen state byte for byte unchanged, and
#   containerd's gc of engine 2 removes only engine 2's own objects; the
#   merge of both states passes fsck and a third containerd runs from it.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/containerd-lib.sh"
need docker-registry skopeo busybox go
: "${SOURCE_ROOT:?}" "${BUILD_ROOT:?}"
# containerd's own client library pulls with its unpacker (ctr 1.6 does not):
# built from Debian's containerd sources, cached in the build tree.
PULL=$BUILD_ROOT/tests/ctrd-pull
[ -d /usr/share/gocode/src/github.com/containerd/containerd ] ||
    { echo "SKIP: golang-github-containerd-containerd-dev is not installed"; exit 77; }
(cd "$SOURCE_ROOT/tests/cli/ctrd-pull" && GO111MODULE=off GOPATH=/usr/share/gocode \
    GOCACHE="$BUILD_ROOT/go-cache" go build -o "$PULL" .)
# KEEP_LOGS=DIR: the daemons' logs are copied there at exit (to debug a failure).
keep_logs() {
    [ -n "${KEEP_LOGS:-}" ] || return 0
    local f
    for f in "$T"/*.log "$T"/ctrd-*/log "$T"/reg/log; do
        [ -f "$f" ] && cp "$f" "$KEEP_LOGS/$(basename "$(dirname "$f")")-$(basename "$f")"
    done
    return 0
}
trap 'rc=$?; ctrd_cleanup; reg_stop; keep_logs; (exit $rc); cleanup' EXIT
REG_PID=
reg_stop() { [ -z "$REG_PID" ] || { kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; }; }
# tree_sum DIR: a digest of every file's path, type, mode, size and bytes.
tree_sum() {
    (cd "$1" && find . -printf '%p %y %m %s %l\n' | LC_ALL=C sort &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) | sha256sum | cut -d' ' -f1
}
IMG=docker.io/library/bb:1
python3 "$(dirname "$0")/ctrd-image.py" "$(command -v busybox)" "$T/oci" "$T/img.tar" "$IMG" >/dev/null
RUN='cat /lowest.txt; test ! -e /doomed.txt; test ! -e /opq/old.txt; cat /opq/new.txt; echo written >/w.txt; cat /w.txt'

step "--print-config names the socket for both plugins and disables the built-in content store"
cfg=$(cairn serve containerd --socket "$T/x.sock" --print-config)
grep -q 'disabled_plugins = \["io.containerd.content.v1.content"\]' <<<"$cfg" || die "config: $cfg"
[ "$(grep -c "address = \"$T/x.sock\"" <<<"$cfg")" -eq 2 ] || die "config: $cfg"
fails 2 "absolute path" -- cairn serve containerd --socket rel.sock

step "ctr images import and ctr run through cairn"
cairn init "$T/s1" >/dev/null
serve_start "$T/s1" s1
ctrd_start e1 "$T/s1.sock"
ctr e1 images import --snapshotter cairn "$T/img.tar" >/dev/null
out=$(ctr e1 run --snapshotter cairn --rm "$IMG" t1 sh -c "$RUN")
[ "$out" = "from the lowest layer
the opaque dir's own
written" ] || die "ctr run printed: $out"
# Three layers committed, each under its cairn ChainID, none left active.
[ "$(cairn -C "$T/s1" snapshot ls | grep -c '^sha256:')" -eq 3 ] || die "$(cairn -C "$T/s1" snapshot ls)"
[ "$(ctr e1 snapshots --snapshotter cairn ls | grep -c Committed)" -eq 3 ] || die "ctr snapshots ls"
cairn -C "$T/s1" fsck >/dev/null
# cairn's own gc keeps what containerd holds (its gc is containerd's).
cairn -C "$T/s1" gc --grace 0 >/dev/null
[ "$(cairn -C "$T/s1" snapshot ls | grep -c '^sha256:')" -eq 3 ] || die "cairn gc removed containerd's snapshots"

step "ctr snapshots prepare, mounts, commit, info, usage, ls, rm"
top=$(ctr e1 snapshots --snapshotter cairn ls | awk '$3 == "Committed" {print $1}' | while read -r k; do
    ctr e1 snapshots --snapshotter cairn ls | awk -v k="$k" '$2 == k' | grep -q . || echo "$k"; done)
[ -n "$top" ] || die "no top snapshot"
ctr e1 snapshots --snapshotter cairn prepare work "$top" >/dev/null
mkdir "$T/mnt"
eval "$(ctr e1 snapshots --snapshotter cairn mounts "$T/mnt" work)"
echo "made by hand" >"$T/mnt/hand.txt"
cat "$T/mnt/lowest.txt" | grep -q "lowest layer" || die "the prepared snapshot does not show its parents"
umount "$T/mnt"
ctr e1 snapshots --snapshotter cairn usage work | grep -q work || die "usage"
ctr e1 snapshots --snapshotter cairn commit done work
ctr e1 snapshots --snapshotter cairn info done | grep -q '"Kind": "Committed"' || die "info: $(ctr e1 snapshots --snapshotter cairn info done)"
ctr e1 snapshots --snapshotter cairn ls | grep -q '^done ' || die "ls lacks done"
[ "$(cairn -C "$T/s1" snapshot ls | grep -c '^sha256:')" -eq 4 ] || die "the commit is not a cairn snapshot"
ctr e1 snapshots --snapshotter cairn rm "$top" 2>/dev/null && die "removed a parent"
ctr e1 snapshots --snapshotter cairn rm done
ctr e1 snapshots --snapshotter cairn ls | grep -q '^done ' && die "done still listed"

step "ctr content ls, get, rm"
mdig=$(ctr e1 images ls -q | head -1 >/dev/null; ctr e1 images ls | awk -v i="$IMG" '$1 == i {print $3}')
ctr e1 content ls | grep -q "$mdig" || die "content ls lacks the manifest"
ctr e1 content get "$mdig" | cmp - "$T/oci/blobs/sha256/${mdig#sha256:}" || die "content get differs"
# Removed from containerd's metadata, a layer blob goes from the state when
# containerd's gc (started by the removal) deletes it through the proxy.
l0=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"])' "$T/oci/blobs/sha256/${mdig#sha256:}")
cairn -C "$T/s1" blob stat "$l0" >/dev/null
ctr e1 content rm "$l0" >/dev/null
ctr e1 content ls | grep -q "^$l0" && die "content rm left it listed"
for i in $(seq 100); do
    cairn -C "$T/s1" blob stat "$l0" >/dev/null 2>&1 || break
    [ "$i" -lt 100 ] || die "containerd's gc did not delete $l0 from the state"
    sleep 0.1
done

step "the server goes away: clean errors; back: containerd works again"
serve_stop s1
grep -q 'stopped:' "$T/s1.serve.log" || die "no stop line"
ctr e1 snapshots --snapshotter cairn prepare w2 "$top" 2>"$T/err" && die "prepare worked with no server"
grep -Eqi 'unavailable|connection|transport' "$T/err" || die "unclear error: $(cat "$T/err")"
serve_start "$T/s1" s1
# containerd redials with a backoff (at most 3 s): the first calls may still fail.
for i in $(seq 100); do
    ctr e1 snapshots --snapshotter cairn prepare w2 "$top" >/dev/null 2>&1 && break
    [ "$i" -lt 100 ] || die "containerd did not come back to the server"
    sleep 0.1
done
ctr e1 snapshots --snapshotter cairn rm w2
step "bytes that are not gRPC, a client that vanishes: the server goes on serving"
python3 - "$T/s1.sock" <<'PY'
import socket, sys
def conn():
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    return s
s = conn(); s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"); s.recv(100); s.close()
s = conn(); s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(range(256)) * 4); s.close()
s = conn(); s.close()
# a HEADERS frame cut in its middle, then gone
s = conn(); s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x01\x00\x01"); s.close()
PY
out=$(ctr e1 run --snapshotter cairn --rm "$IMG" t2 cat /top.txt)
[ "$out" = "from the top layer" ] || die "run after the restart: $out"
ctrd_stop e1
serve_stop s1
cairn -C "$T/s1" fsck >/dev/null

step "registry: engine 1 pulls and runs"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$T/reg"
cat >"$T/reg/config.yml" <<CFG
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $T/reg/data
http:
  addr: 127.0.0.1:$PORT
CFG
docker-registry serve "$T/reg/config.yml" >"$T/reg/log" 2>&1 &
REG_PID=$!
for i in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
skopeo copy -q --dest-tls-verify=false "oci:$T/oci:1" "docker://127.0.0.1:$PORT/bb:1"
RIMG=127.0.0.1:$PORT/bb:1
layers=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(" ".join(l["digest"] for l in m["layers"]))' \
    "$T/oci/blobs/sha256/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"][7:])' "$T/oci/index.json")")
blob_gets() { local n=0 d; for d in $layers; do n=$((n + $(grep -c "GET /v2/bb/blobs/$d" "$T/reg/log" || true))); done; echo $n; }
cairn init "$T/p1" >/dev/null
serve_start "$T/p1" p1
ctrd_start f1 "$T/p1.sock"
ctr f1 images pull --plain-http --snapshotter cairn "$RIMG" >/dev/null
[ "$(blob_gets)" -eq 3 ] || die "engine 1 fetched $(blob_gets) layer blobs, expected 3"
[ "$(grep -c 'diff applied' "$T/ctrd-f1/log")" -eq 3 ] || die "engine 1 applied $(grep -c 'diff applied' "$T/ctrd-f1/log") layers"
out=$(ctr f1 run --snapshotter cairn --rm "$RIMG" r1 sh -c "$RUN")
[ "$(tail -1 <<<"$out")" = written ] || die "engine 1 run: $out"
ctrd_stop f1
serve_stop p1

step "engine 2 over the frozen state of engine 1: nothing applied, nothing fetched"
cairn freeze "$T/p1" "$T/f1" >/dev/null
before=$(tree_sum "$T/f1")
cairn init "$T/p2" >/dev/null
cairn stack add "$T/p2" "$T/f1" >/dev/null
serve_start "$T/p2" p2
ctrd_start f2 "$T/p2.sock"
"$PULL" "$T/ctrd-f2/containerd.sock" cairn "$RIMG" >/dev/null
[ "$(blob_gets)" -eq 3 ] || die "engine 2 fetched $(($(blob_gets) - 3)) layer blobs"
[ "$(grep -c 'diff applied' "$T/ctrd-f2/log" || true)" -eq 0 ] || die "engine 2 applied layers"
out=$(ctr f2 run --snapshotter cairn --rm "$RIMG" r2 sh -c "$RUN")
[ "$(tail -1 <<<"$out")" = written ] || die "engine 2 run: $out"
[ "$(cairn -C "$T/p2" snapshot ls | grep -c '^sha256:')" -eq 3 ] || die "engine 2 does not see the 3 snapshots"
serve_stop p2
grep -q ' 3 adopted' "$T/p2.serve.log" || die "not 3 adopted: $(grep stopped "$T/p2.serve.log")"
serve_start "$T/p2" p2
step "containerd's gc of engine 2 removes only engine 2's own objects"
ctr f2 images rm --sync "$RIMG" >/dev/null
[ "$(tree_sum "$T/f1")" = "$before" ] || die "the frozen lower changed"
cairn -C "$T/p2" fsck >/dev/null
"$PULL" "$T/ctrd-f2/containerd.sock" cairn "$RIMG" >/dev/null
ctrd_stop f2
serve_stop p2
[ "$(tree_sum "$T/f1")" = "$before" ] || die "the frozen lower changed"

step "the merge of both engines' states: fsck clean, a third containerd runs from it"
cairn merge "$T/m" "$T/p1" "$T/p2" >/dev/null
cairn -C "$T/m" fsck >/dev/null
[ "$(sqlite3 "$T/m/db/$(cairn -C "$T/m" --json info | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])').sqlite" 'SELECT count(*) FROM containerd_names')" -eq 3 ] ||
    die "the merge lacks containerd's names"
serve_start "$T/m" m
ctrd_start f3 "$T/m.sock"
"$PULL" "$T/ctrd-f3/containerd.sock" cairn "$RIMG" >/dev/null
[ "$(grep -c 'diff applied' "$T/ctrd-f3/log" || true)" -eq 0 ] || die "engine 3 applied layers"
[ "$(blob_gets)" -eq 3 ] || die "engine 3 fetched layer blobs"
out=$(ctr f3 run --snapshotter cairn --rm "$RIMG" r3 sh -c "$RUN")
[ "$(tail -1 <<<"$out")" = written ] || die "engine 3 run: $out"
ctrd_stop f3
serve_stop m
cairn -C "$T/m" fsck >/dev/null
echo "PASS"
