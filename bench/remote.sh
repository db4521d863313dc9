#!/usr/bin/env bash
# remote: cairn's transfers to each remote beside the peer tool of that
# remote, in one run, repeated, with the load average:
#   file://  push and pull            rsync -a (then sync: cairn syncs)
#   s3://    (moto_server)            aws s3 sync of the same blobs
#   oci://   (docker-registry)        skopeo copy of an OCI layout of the same blobs
#                                     (images of 100 layers: skopeo slows as an
#                                     image's layer count grows, at 10,000 from 88
#                                     to 3 layers a second pulling; JOBS skopeo
#                                     processes at once, as cairn's JOBS transfers)
#   the loopback limit                curl of one object of all those bytes (s3, oci),
#                                     cat of one file (file)
# and, per remote: re-push after 5% new data (bytes sent / bytes new, the
# target 1.0), pull --lazy startup (open to stacked) and its first read
# beside an eager pull, compact of STATES states under one tag (object
# bytes moved, the target 0, and metadata bytes moved).
#
#   state: BLOBS random blobs of SIZE bytes (5,000 x 64 KiB by default)
#
# Usage: bench/remote.sh [WORKDIR]
#   env: BLOBS SIZE STATES REPEAT (2) REMOTES ("file s3 oci") JOBS (8, cairn's default)
# Run by hand, never by the tests; needs rsync, curl, skopeo, docker-registry,
# aws (Debian's awscli) and moto (pip: moto[server]) for the remotes asked.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CAIRN=${CAIRN:-$REPO/build/cli/cairn}
[ -x "$CAIRN" ] || { echo "remote: build cairn first (ninja -C build)" >&2; exit 1; }
BLOBS=${BLOBS:-5000} SIZE=${SIZE:-65536} STATES=${STATES:-32} REPEAT=${REPEAT:-2} JOBS=${JOBS:-8}
REMOTES=${REMOTES:-file s3 oci}
for t in python3 curl; do command -v $t >/dev/null || { echo "remote: $t is needed" >&2; exit 1; }; done
for r in $REMOTES; do
    case $r in
    file) need=(rsync) ;;
    s3) need=(aws) ;;
    oci) need=(skopeo docker-registry) ;;
    *) echo "remote: unknown remote '$r' (file s3 oci)" >&2; exit 1 ;;
    esac
    for t in "${need[@]}"; do
        command -v "$t" >/dev/null || { echo "remote: $t is needed for $r" >&2; exit 1; }
    done
done
case " $REMOTES " in *" s3 "*)
    python3 -c 'import importlib.util as u, sys; sys.exit(not u.find_spec("moto"))' ||
        { echo "remote: moto is needed for s3 (pip install 'moto[server]')" >&2; exit 1; } ;;
esac
# Debian's awscli when installed (a pip one earlier in PATH may differ)
AWS=aws; [ ! -x /usr/bin/aws ] || AWS=/usr/bin/aws
W=${1:-}
if [ -z "$W" ]; then W=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-remote-XXXXXX"); KEEP=0; else mkdir -p "$W"; KEEP=1; fi
W=$(cd "$W" && pwd)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ "$KEEP" -eq 1 ] || rm -rf "$W"
}
trap cleanup EXIT
j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
now() { date +%s.%N; }
load() { cut -d' ' -f1 /proc/loadavg; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    local i
    for i in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "remote: nothing listens on port $1" >&2; exit 1
}
# timed VAR CMD...: run CMD (its stdout in $W/out), its seconds in VAR
timed() {
    local v=$1 t0 t1; shift
    t0=$(now); "$@" >"$W/out"; t1=$(now)
    printf -v "$v" %s "$(python3 -c "print(f'{$t1 - $t0:.3f}')")"
}
# rec REMOTE OP RUN CAIRN_S PEER PEER_S: one row of results
rec() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$W/results.tsv"; }
# note REMOTE TEXT: a row of counts
note() { printf '%s\t%s\n' "$1" "$2" >>"$W/notes.tsv"; }

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
rm -rf "$W/in"
total=$((BLOBS * SIZE))
# 5% new: a state stacked on the frozen one, with BLOBS/20 blobs of its own
"$CAIRN" freeze "$W/s" "$W/f" >/dev/null
"$CAIRN" init "$W/s5" >/dev/null
"$CAIRN" -C "$W/s5" stack add "$W/f" >/dev/null
python3 - "$W/new" "$((BLOBS / 20))" "$SIZE" <<'PY'
import os, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(d, exist_ok=True)
for i in range(n):
    with open(f"{d}/{i}", "wb") as f:
        f.write(os.urandom(size))
PY
find "$W/new" -type f | xargs -n 2000 "$CAIRN" -C "$W/s5" blob put >/dev/null
new=$(((BLOBS / 20) * SIZE))
# STATES small states, one blob each, to compact under one tag
for i in $(seq 1 "$STATES"); do
    "$CAIRN" init "$W/c$i" >/dev/null
    head -c "$SIZE" /dev/urandom | "$CAIRN" -C "$W/c$i" blob put - >/dev/null
done
one=$("$CAIRN" -C "$W/s" blob ls --json | j 'd[len(d)//2]["digest"]')
# the same bytes as one object, for the loopback limit
find "$W/s/blobs/sha256" -type f -exec cat {} + >"$W/one"
onedg="sha256:$(sha256sum "$W/one" | cut -d' ' -f1)"
# the same blobs as an OCI layout (hardlinks), for skopeo: IMAGES images
IMAGES=$(python3 - "$W/s/blobs/sha256" "$W/layout" <<'PY'
import hashlib, json, os, sys
src, lay = sys.argv[1], sys.argv[2]
os.makedirs(f"{lay}/blobs/sha256", exist_ok=True)
layers = []
for h in sorted(os.listdir(src)):
    os.link(f"{src}/{h}", f"{lay}/blobs/sha256/{h}")
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                   "digest": "sha256:" + h, "size": os.path.getsize(f"{src}/{h}")})
def put(b):
    d = hashlib.sha256(b).hexdigest()
    open(f"{lay}/blobs/sha256/{d}", "wb").write(b)
    return {"digest": "sha256:" + d, "size": len(b)}
cfg = put(json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": []}}).encode())
# images of 100 layers, as real images have: skopeo's time a layer grows
# with the layers of the image (pulling 10,000-layer images fell from 88 to
# 3 layers a second, 100-layer ones held 138)
mans = []
for k in range(0, len(layers), 100):
    man = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": dict(cfg, mediaType="application/vnd.oci.image.config.v1+json"),
                          "layers": layers[k:k + 100]}).encode())
    mans.append(dict(man, mediaType="application/vnd.oci.image.manifest.v1+json",
                     annotations={"org.opencontainers.image.ref.name": f"main{k // 100}"}))
json.dump({"schemaVersion": 2, "manifests": mans}, open(f"{lay}/index.json", "w"))
open(f"{lay}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
print(len(mans))
PY
)
sync

# the servers
case " $REMOTES " in *" s3 "*)
    MOTO=$(free_port)
    python3 -m moto.server -H 127.0.0.1 -p "$MOTO" >"$W/moto.log" 2>&1 &
    PIDS+=($!)
    wait_port "$MOTO"
    export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
    export AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO
    # Debian's awscli 2.9 reads no AWS_ENDPOINT_URL: it is given each time
    "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" s3 mb s3://bench >/dev/null
    "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" s3 cp --quiet "$W/one" s3://bench/one
    ONEURL=$("$AWS" --endpoint-url "$AWS_ENDPOINT_URL" s3 presign s3://bench/one)
    ;;
esac
case " $REMOTES " in *" oci "*)
    REG=$(free_port)
    mkdir -p "$W/reg"
    printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:%s\n' \
        "$W/reg/data" "$REG" >"$W/reg/config.yml"
    docker-registry serve "$W/reg/config.yml" >"$W/reg/log" 2>&1 &
    PIDS+=($!)
    wait_port "$REG"
    loc=$(curl -sf -X POST -D - -o /dev/null "http://127.0.0.1:$REG/v2/one/blobs/uploads/" |
          tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    case $loc in http*) ;; *) loc="http://127.0.0.1:$REG$loc" ;; esac
    case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
    curl -sf -X PUT -H 'Content-Type: application/octet-stream' -T "$W/one" \
        "$loc${sep}digest=$onedg" -o /dev/null
    ;;
esac

url_of() { # url_of REMOTE NAME
    case $1 in
    file) echo "file://$W/r-$2" ;;
    s3) echo "s3://bench/$2" ;;
    oci) echo "oci://127.0.0.1:$REG/$2" ;;
    esac
}
peer_push() { # peer_push REMOTE NAME
    case $1 in
    file) rsync -a "$W/s/blobs/sha256/" "$W/rsync-$2/" && sync ;;
    s3) "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" s3 sync --quiet "$W/s/blobs/sha256" "s3://bench/peer-$2/" ;;
    oci) seq 0 $((IMAGES - 1)) | xargs -P "$JOBS" -I{} skopeo copy -q --dest-tls-verify=false \
            "oci:$W/layout:main{}" "docker://127.0.0.1:$REG/peer-$2:main{}" ;;
    esac
}
peer_pull() {
    case $1 in
    file) rsync -a "$W/rsync-$2/" "$W/rsync-back-$2/" && sync ;;
    s3) "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" s3 sync --quiet "s3://bench/peer-$2/" "$W/s3-back-$2" && sync ;;
    oci) seq 0 $((IMAGES - 1)) | xargs -P "$JOBS" -I{} skopeo copy -q --src-tls-verify=false \
            "docker://127.0.0.1:$REG/peer-$2:main{}" "oci:$W/skopeo-back-$2-{}:main{}" && sync ;;
    esac
}
limit() { # limit REMOTE: one object of all the bytes, fetched by curl (file: cat)
    case $1 in
    file) cat "$W/one" >/dev/null ;;
    s3) curl -sf "$ONEURL" -o /dev/null ;;
    oci) curl -sf "http://127.0.0.1:$REG/v2/one/blobs/$onedg" -o /dev/null ;;
    esac
}
peer_name() {
    case $1 in file) echo "rsync -a; sync" ;; s3) echo "aws s3 sync" ;; oci) echo "skopeo copy" ;; esac
}

loads=("$(load)")
for run in $(seq 1 "$REPEAT"); do
    for r in $REMOTES; do
        echo "run $run: $r (load $(load))" >&2
        U=$(url_of "$r" "run$run")
        timed tp "$CAIRN" -C "$W/s" push --jobs "$JOBS" --json "$U" main
        sent=$(j 'd["bytes_moved"]' <"$W/out")
        timed p peer_push "$r" "$run"
        rec "$r" "push $BLOBS x $SIZE B" "$run" "$tp" "$(peer_name "$r")" "$p"
        [ "$sent" = "$total" ] || echo "remote: push sent $sent bytes of $total" >&2
        "$CAIRN" init "$W/p-$r-$run" >/dev/null
        timed t "$CAIRN" -C "$W/p-$r-$run" pull --jobs "$JOBS" "$U" main
        timed p peer_pull "$r" "$run"
        rec "$r" "pull into an empty state" "$run" "$t" "$(peer_name "$r")" "$p"
        timed p limit "$r"
        rec "$r" "pull, beside the loopback limit" "$run" "$t" \
            "curl of one object (file: cat)" "$p"
        "$CAIRN" init "$W/l-$r-$run" >/dev/null
        timed lz env CAIRN_CACHE_DIR="$W/cache-$r-$run" "$CAIRN" -C "$W/l-$r-$run" pull --lazy "$U" main
        timed first env CAIRN_CACHE_DIR="$W/cache-$r-$run" "$CAIRN" -C "$W/l-$r-$run" blob get "$one"
        rec "$r" "pull --lazy: startup (vs eager pull)" "$run" "$lz" "cairn pull (eager)" "$t"
        rec "$r" "pull --lazy: first read of a blob" "$run" "$first" "-" ""
        timed t "$CAIRN" -C "$W/s5" push --json "$U" main
        resent=$(j 'd["bytes_moved"]' <"$W/out")
        note "$r" "run $run: re-push after 5% new data: $resent bytes sent for $new new: $(python3 -c "print(f'{$resent / $new:.3f}')") ($t s)"
        for i in $(seq 1 "$STATES"); do
            "$CAIRN" -C "$W/c$i" push "$U" many >/dev/null
        done
        timed t "$CAIRN" remote compact --json "$U" many
        cm=$(j 'd["bytes_moved"]' <"$W/out"); cmeta=$(j 'd["meta_bytes"]' <"$W/out")
        note "$r" "run $run: compact of $STATES states: $cm object bytes moved, $cmeta metadata bytes ($t s)"
    done
    loads+=("$(load)")
done

echo
echo "remote bench: $BLOBS objects of $SIZE bytes ($(python3 -c "print(f'{$total / 2**20:.1f}')") MiB), $REPEAT runs, $JOBS jobs, $(nproc) CPUs"
echo "load average (1 min) at the start and after each run: ${loads[*]}"
python3 - "$W/results.tsv" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r, op, run, c, peer, p = line.rstrip("\n").split("\t")
    rows.setdefault((r, op, peer), []).append((float(c), float(p) if p else None))
print(f"{'remote':6} {'operation':38} {'cairn s (each run)':22} {'peer':34} {'peer s (each run)':20} {'ratio':>6}")
for (r, op, peer), v in rows.items():
    cs = [x[0] for x in v]
    ps = [x[1] for x in v if x[1] is not None]
    ratio = f"{statistics.median(cs) / statistics.median(ps):6.2f}" if ps and statistics.median(ps) > 0 else "     -"
    print(f"{r:6} {op:38} {' '.join(f'{x:.2f}' for x in cs):22} {peer:34} "
          f"{' '.join(f'{x:.2f}' for x in ps):20} {ratio}")
print("ratio: cairn's median / the peer's median, in the same run (under 1: cairn is faster)")
PY
awk -F'\t' '{printf "%-6s %s\n", $1, $2}' "$W/notes.tsv"
