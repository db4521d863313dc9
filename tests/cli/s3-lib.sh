# s3-lib.sh: sourced by the s3:// tests after lib.sh. The backend is driven
# through remote-tool (tests/unit/remote-tool.c: the vtable as a command)
# against real servers started here on 127.0.0.1, each bounded in time and
# killed at exit. Helpers: rt, free_port, wait_port, start_s3rver,
# start_proxy, s3_scenario, s3_faults.
: "${REMOTE_TOOL:?REMOTE_TOOL must name tests/remote-tool}"
PIDS=()
s3_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap 'rc=$?; s3_cleanup; (exit $rc); cleanup' EXIT
rt() { "$REMOTE_TOOL" "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_port PORT: until something listens there (20 s)
wait_port() {
    local i
    for i in $(seq 200); do
        python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1"
}
# start_s3rver BUCKET SECONDS: s3rver (from npm, installed once in a cache
# under the build directory) serving BUCKET for SECONDS; sets PORT, S3PID and
# the AWS_* it takes. Skips (exit 77) when npm cannot reach its registry.
start_s3rver() {
    local cache=$BUILD_ROOT/test-cache/s3rver i
    local s3rver=$cache/node_modules/.bin/s3rver
    if [ ! -x "$s3rver" ]; then
        mkdir -p "$cache"
        if ! (cd "$cache" && timeout 240 npm install --no-audit --no-fund --loglevel=error s3rver@3) >"$T/npm.log" 2>&1; then
            if grep -Eqi 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|network|registry' "$T/npm.log"; then
                echo "SKIP: npm cannot reach its registry to install s3rver: $(tail -3 "$T/npm.log")"
                exit 77
            fi
            cat "$T/npm.log"; die "npm install s3rver failed"
        fi
    fi
    mkdir -p "$T/s3rver"
    timeout "$2" "$s3rver" -d "$T/s3rver" -a 127.0.0.1 -p 0 --configure-bucket "$1" >"$T/s3rver.log" 2>&1 &
    S3PID=$!
    PIDS+=($S3PID)
    for i in $(seq 150); do grep -q 'listening on' "$T/s3rver.log" && break; sleep 0.2; done
    PORT=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$T/s3rver.log" | head -1 | cut -d: -f2)
    [ -n "$PORT" ] || { cat "$T/s3rver.log"; die "s3rver did not start"; }
    export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
    export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
}
# start_proxy UPSTREAM_PORT ARGS...: the fault proxy in front of it; sets PROXY_PORT, PROXY_PID
start_proxy() {
    local up=$1; shift
    rm -f "$T/proxy.port"
    timeout 300 python3 "$SOURCE_ROOT/tests/http-fault-proxy.py" --upstream "127.0.0.1:$up" \
        --port-file "$T/proxy.port" --timeout 280 "$@" &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    local i
    for i in $(seq 100); do [ -s "$T/proxy.port" ] && break; sleep 0.1; done
    [ -s "$T/proxy.port" ] || die "the fault proxy did not start"
    PROXY_PORT=$(cat "$T/proxy.port")
}
stop_proxy() { kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; }
dg() { echo "sha256:$(sha "$1")"; }

# s3_scenario URL: every operation of the vtable, checked; boto3 lists what
# was stored, independently (BUCKET, PREFIX name it for boto3).
s3_scenario() {
    local url=$1 d a b big
    step "put, have, get, list, rm ($url)"
    head -c 200000 /dev/urandom >"$T/a"; echo small >"$T/b"; head -c 100 /dev/urandom >"$T/c"
    a=$(dg "$T/a"); b=$(dg "$T/b")
    [ "$(rt "$url" put "$T/a" "$T/b" "$T/c" | tr '\n' ' ')" = "$a $b $(dg "$T/c") " ] || die "put printed other digests"
    rt "$url" put "$T/a" >/dev/null # again: already there
    local missing="sha256:$(printf '%064d' 0)"
    for mode in head list; do
        [ "$(CAIRN_S3_HAVE=$mode rt "$url" have "$a" "$missing" "$b" | awk '{print $2}' | tr -d '\n')" = 101 ] ||
            die "have by $mode is wrong"
    done
    rt "$url" get "$a" "$T/a.out"; cmp "$T/a" "$T/a.out" || die "get returned other bytes"
    fails 1 "remote blob $missing: GET .*404" -- rt "$url" get "$missing" "$T/none"
    rt "$url" ls >"$T/ls"
    grep -q "^$a 200000 [1-9]" "$T/ls" && grep -q "^$b 6 " "$T/ls" || die "ls: $(cat "$T/ls")"
    rt "$url" rm "$(dg "$T/c")" "$missing"
    ! rt "$url" ls | grep -q "$(dg "$T/c")" || die "a removed blob is listed"

    step "states: put, list, get, rm"
    printf '{"schemaVersion": 2, "n": %s}' 1 >"$T/m1"; printf '{"schemaVersion": 2, "n": %s}' 2 >"$T/m2"
    local m1 m2
    m1=$(rt "$url" state-put main "$T/m1"); m2=$(rt "$url" state-put main "$T/m2")
    rt "$url" state-put other "$T/m1" >/dev/null
    [ "$(rt "$url" states main | awk '{print $2}' | sort | tr '\n' ' ')" = "$(printf '%s\n' "$m1" "$m2" | sort | tr '\n' ' ')" ] ||
        die "states main: $(rt "$url" states main)"
    [ "$(rt "$url" states | wc -l)" = 3 ] || die "states: $(rt "$url" states)"
    rt "$url" state-get main "$m2" "$T/m2.out"; cmp "$T/m2" "$T/m2.out"
    rt "$url" state-rm main "$m1"
    [ "$(rt "$url" states main | awk '{print $2}')" = "$m2" ] || die "state-rm left $(rt "$url" states main)"
    fails 1 "not a tag" -- rt "$url" state-put ../x "$T/m1"

    step "multipart: a blob over the threshold, in parts, read back"
    head -c 11000000 /dev/urandom >"$T/big"; big=$(dg "$T/big")
    CAIRN_S3_MULTIPART_THRESHOLD=5000000 CAIRN_S3_PART_SIZE=5242880 rt "$url" put "$T/big" >/dev/null
    rt "$url" get "$big" "$T/big.out"; cmp "$T/big" "$T/big.out" || die "multipart blob read back wrong"

    step "boto3 lists and reads what was stored, independently"
    python3 - "$BUCKET" "$PREFIX" "$a" "$big" "$m2" <<'PY'
import hashlib, sys
import boto3
bucket, prefix, a, big, m2 = sys.argv[1:]
s3 = boto3.client("s3")
keys = {}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
    for o in page.get("Contents", []):
        keys[o["Key"]] = o["Size"]
for d in (a, big):
    k = prefix + "/blobs/sha256/" + d[7:]
    assert k in keys, (k, sorted(keys))
    body = s3.get_object(Bucket=bucket, Key=k)["Body"].read()
    assert "sha256:" + hashlib.sha256(body).hexdigest() == d, k
assert prefix + "/states/main/" + m2[7:] in keys
assert prefix + "/oci-layout" in keys
print("boto3: %d keys, the blobs hash to their names" % len(keys))
PY
}

# s3_faults URL_OF_PROXY RUNS: operations through the fault proxy (already
# started with a rate); each succeeds with its result verified or fails
# saying which object and why. Prints "ok=N failed=M".
s3_faults() {
    local url=$1 runs=$2 i ok=0 bad=0 f d out rc
    export CAIRN_HTTP_BACKOFF_MS=10 CAIRN_HTTP_STALL_S=2 CAIRN_HTTP_RETRIES=4
    for i in $(seq "$runs"); do
        f=$T/fault.$i
        head -c $((1000 + i * 7919)) /dev/urandom >"$f"; d=$(dg "$f")
        for op in put get have ls state-put state-get; do
            rc=0
            case $op in
                put) out=$(rt "$url" put "$f" 2>&1) || rc=$? ;;
                get) out=$(rt "$url" get "$d" "$f.out" 2>&1) || rc=$?
                     [ "$rc" -ne 0 ] || cmp -s "$f" "$f.out" || die "get through faults: other bytes for $d" ;;
                have) out=$(rt "$url" have "$d" 2>&1) || rc=$? ;;
                ls) out=$(CAIRN_S3_MAX_KEYS=${FAULT_MAX_KEYS:-1000} rt "$url" ls 2>&1) || rc=$? ;;
                state-put) printf '{"fault": %d}' "$i" >"$f.m"; out=$(rt "$url" state-put faults "$f.m" 2>&1) || rc=$? ;;
                state-get) out=$(rt "$url" state-get faults "$(dg "$f.m")" "$f.m.out" 2>&1) || rc=$?
                           [ "$rc" -ne 0 ] || cmp -s "$f.m" "$f.m.out" || die "state-get through faults: other bytes" ;;
            esac
            if [ "$rc" -eq 0 ]; then
                ok=$((ok + 1))
            else
                bad=$((bad + 1))
                [ "$rc" -eq 1 ] || die "$op through faults: exit $rc: $out"
                grep -Eq "remote (blob|blobs|state|states|oci-layout)" <<<"$out" || die "$op through faults: an unclear error: $out"
                ! grep -qF -- "$AWS_SECRET_ACCESS_KEY" <<<"$out" || die "a secret in an error: $out"
            fi
        done
    done
    unset CAIRN_HTTP_BACKOFF_MS CAIRN_HTTP_STALL_S CAIRN_HTTP_RETRIES
    echo "through faults: ok=$ok failed=$bad"
    [ "$ok" -gt 0 ] || die "nothing succeeded through the faults"
}

# s3_verify_all URL: every blob listed hashes to its name (remote-tool get checks).
s3_verify_all() {
    local d n=0
    while read -r d _; do
        rt "$1" get "$d" "$T/verify.out" || die "blob $d stored under its name holds other bytes"
        n=$((n + 1))
    done < <(rt "$1" ls)
    echo "verified $n blobs"
}
