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
    start_s3rver pool-test 800
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
