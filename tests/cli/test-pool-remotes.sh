#!/usr/bin/env bash
# test-pool-remotes.sh s3|oci: the pool scenario of pool-lib.sh against a
# real server: s3rver (an S3 server, from npm) or Debian's docker-registry;
# then the server stopped: a provision comes from this host's cache with a
# warning, a module never listed here is left out saying so, checkin fails
# naming the remote. (One test a server: one that cannot run skips alone.)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3-lib.sh"
source "$(dirname "$0")/pool-lib.sh"
SERVER=${1:?usage: test-pool-remotes.sh s3|oci}
case $SERVER in
s3) need node npm ;;
oci) need docker-registry ;;
*) die "unknown server '$SERVER' (s3 or oci)" ;;
esac
: "${BUILD_ROOT:?}"
export CAIRN_HTTP_RETRIES=2 CAIRN_HTTP_BACKOFF_MS=20 CAIRN_HTTP_STALL_S=3
export HOME="$T/home"
mkdir -p "$HOME"

# down_scenario URL KILL_PID: the remote goes away under a host with a cache
down_scenario() {
    local U=$1 pid=$2 out
    export CAIRN_POOL_CACHE="$T/down-cache-$pid"
    cairn pool init "$U" >/dev/null
    cairn pool provision "$U" base "$T/d0-$pid" >/dev/null
    session "$T/d0-$pid" down 5 4096
    cairn pool checkin "$U" base "$T/d0-$pid" >/dev/null
    cairn pool provision "$U" base "$T/d1-$pid" >/dev/null # listed and cached here
    kill "$pid"; wait "$pid" 2>/dev/null || true
    step "the remote is down ($U): provision from the cache, with a warning"
    out=$(cairn pool provision --json --dep never "$U" base "$T/d2-$pid" 2>"$T/warn-$pid")
    [ "$(echo "$out" | j 'd["offline"]')" = True ] || die "not offline: $out"
    [ "$(blobs "$T/d2-$pid")" = "$(blobs "$T/d1-$pid")" ] || die "offline provision lacks what the cache had"
    grep -q "warning: pool $U unreachable" "$T/warn-$pid" || die "no warning: $(cat "$T/warn-$pid")"
    grep -q "module never: never listed on this host, left out" "$T/warn-$pid" || die "no word of never: $(cat "$T/warn-$pid")"
    fsck_clean "$T/d2-$pid"
    fails 1 "pool $U" -- cairn pool checkin "$U" base "$T/d2-$pid"
}

if [ "$SERVER" = s3 ]; then
    # s3rver, installed once under the build directory (as test-remote-s3rver.sh)
    CACHE=$BUILD_ROOT/test-cache/s3rver
    S3RVER=$CACHE/node_modules/.bin/s3rver
    if [ ! -x "$S3RVER" ]; then
        mkdir -p "$CACHE"
        if ! (cd "$CACHE" && timeout 240 npm install --no-audit --no-fund --loglevel=error s3rver@3) >"$T/npm.log" 2>&1; then
            if grep -Eqi 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|network|registry' "$T/npm.log"; then
                echo "SKIP: npm cannot reach its registry to install s3rver: $(tail -3 "$T/npm.log")"
                exit 77
            fi
            cat "$T/npm.log"; die "npm install s3rver failed"
        fi
    fi
    mkdir -p "$T/s3rver"
    timeout 800 "$S3RVER" -d "$T/s3rver" -a 127.0.0.1 -p 0 --configure-bucket pool-test >"$T/s3rver.log" 2>&1 &
    S3PID=$!
    PIDS+=($S3PID)
    for i in $(seq 150); do grep -q 'listening on' "$T/s3rver.log" && break; sleep 0.2; done
    PORT=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$T/s3rver.log" | head -1 | cut -d: -f2)
    [ -n "$PORT" ] || { cat "$T/s3rver.log"; die "s3rver did not start"; }
    export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
    export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
    pool_scenario "s3://pool-test/fleet"
    down_scenario "s3://pool-test/down" "$S3PID"
    echo ok
    exit 0
fi

# the registry, deletes allowed (compact and gc take members out)
RPORT=$(free_port)
mkdir -p "$T/reg"
cat >"$T/reg/config.yml" <<EOC
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $T/reg/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$RPORT
EOC
timeout 800 docker-registry serve "$T/reg/config.yml" >"$T/reg/log" 2>&1 &
RPID=$!
PIDS+=($RPID)
for i in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$RPORT") 2>/dev/null && break; sleep 0.1; done
pool_scenario "oci://127.0.0.1:$RPORT/fleet"
down_scenario "oci://127.0.0.1:$RPORT/down" "$RPID"
echo ok
