#!/usr/bin/env bash
# The s3:// backend against s3rver (npm; it runs on Debian's nodejs, so this
# test runs everywhere; it does not check signatures, see
# test-remote-s3-moto.sh for that): every operation, multipart, boto3 reading
# what was stored, and the fault proxy in between.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3-lib.sh"
need node npm
: "${BUILD_ROOT:?}"

start_s3rver cairn-test 280
BUCKET=cairn-test PREFIX=ci/run
s3_scenario "s3://$BUCKET/$PREFIX"

step "no credentials: refused before any request"
fails 1 "no credentials" -- env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME="$T" \
    "$REMOTE_TOOL" "s3://$BUCKET/$PREFIX" ls
fails 1 "plain http to another host" -- env AWS_ENDPOINT_URL=http://example.com "$REMOTE_TOOL" "s3://$BUCKET/x" ls

step "~/.aws/credentials, [default] and AWS_PROFILE"
mkdir -p "$T/home/.aws"
printf '[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n[other]\naws_access_key_id=S3RVER\naws_secret_access_key=S3RVER\n' >"$T/home/.aws/credentials"
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME="$T/home" "$REMOTE_TOOL" "s3://$BUCKET/$PREFIX" states main >/dev/null
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME="$T/home" AWS_PROFILE=other "$REMOTE_TOOL" "s3://$BUCKET/$PREFIX" states main >/dev/null
fails 1 "profile nope: not in" -- env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME="$T/home" AWS_PROFILE=nope \
    "$REMOTE_TOOL" "s3://$BUCKET/$PREFIX" ls

step "the fault proxy: 500, 429, resets, stalls, truncated and wrong bytes"
# each fault alone (so each is surely met), then all of them mixed
seed=0
for f in 500 429 reset stall truncate corrupt all; do
    seed=$((seed + 1))
    faults=$f; [ "$f" != all ] || faults=500,429,reset,stall,truncate,corrupt
    start_proxy "$PORT" --seed "$seed" --rate 0.4 --faults "$faults" --stall 4 --log "$T/proxy.$f.log"
    AWS_ENDPOINT_URL=http://127.0.0.1:$PROXY_PORT s3_faults "s3://$BUCKET/$PREFIX" 2
    stop_proxy
    [ "$f" = all ] || grep -q " $f\$" "$T/proxy.$f.log" || die "the proxy never injected $f"
done
s3_verify_all "s3://$BUCKET/$PREFIX"

step "a server that always fails: a clear error after the retries"
start_proxy "$PORT" --rate 1 --faults 500
fails 1 "remote blob sha256:.*GET http://127.0.0.1:$PROXY_PORT/cairn-test/ci/run/blobs/sha256/.*500 \(InternalError: injected by the fault proxy\) \(4 attempts\)" -- \
    env AWS_ENDPOINT_URL=http://127.0.0.1:$PROXY_PORT CAIRN_HTTP_RETRIES=3 CAIRN_HTTP_BACKOFF_MS=5 \
    "$REMOTE_TOOL" "s3://$BUCKET/$PREFIX" get "$(dg "$T/a")" "$T/x"
stop_proxy
start_proxy "$PORT" --rate 1 --faults corrupt
fails 1 "remote blob sha256:.*the server sent bytes that hash to sha256:" -- \
    env AWS_ENDPOINT_URL=http://127.0.0.1:$PROXY_PORT CAIRN_HTTP_RETRIES=2 CAIRN_HTTP_BACKOFF_MS=5 \
    "$REMOTE_TOOL" "s3://$BUCKET/$PREFIX" get "$(dg "$T/a")" "$T/x"
[ ! -e "$T/x" ] || die "wrong bytes were kept"
stop_proxy
step "a 429 with Retry-After is retried no sooner than asked; another 4xx is never retried"
# the proxy answers 400 to a request retried before its Retry-After is up
start_proxy "$PORT" --seed 3 --rate 0.5 --faults 429 --retry-after 1 --log "$T/ra.log"
env AWS_ENDPOINT_URL=http://127.0.0.1:$PROXY_PORT CAIRN_HTTP_RETRIES=10 CAIRN_HTTP_BACKOFF_MS=1 \
    "$REMOTE_TOOL" "s3://$BUCKET/$PREFIX" get "$(dg "$T/a")" "$T/ra" || die "a get through 429s failed"
cmp "$T/a" "$T/ra" || die "the get through 429s is not the blob"
grep -q " 429$" "$T/ra.log" || die "the proxy never answered 429"
! grep -q " early$" "$T/ra.log" || die "a retry came sooner than its Retry-After"
stop_proxy
start_proxy "$PORT" --rate 1 --faults 400 --log "$T/400.log"
fails 1 "GET http://127.0.0.1:$PROXY_PORT/.*answered 400 \(BadRequest" -- \
    env AWS_ENDPOINT_URL=http://127.0.0.1:$PROXY_PORT CAIRN_HTTP_BACKOFF_MS=1 \
    "$REMOTE_TOOL" "s3://$BUCKET/$PREFIX" get "$(dg "$T/a")" "$T/x"
[ "$(grep -c ' 400$' "$T/400.log")" = 1 ] || die "a 400 was sent again: $(cat "$T/400.log")"
stop_proxy
step "the core end to end: push to s3://, pull into an empty state, the same content"
j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
cairn init "$T/sa" >/dev/null
mkdir -p "$T/sin"; for i in 1 2 3 4 5; do head -c $((i * 30000)) /dev/urandom >"$T/sin/$i"; done
cairn -C "$T/sa" blob put "$T/sin"/* >/dev/null
act=$(cairn -C "$T/sa" snapshot prepare)
mkdir -p "$T/sa/active/$act/fs/etc"; echo base >"$T/sa/active/$act/fs/etc/f"
base=$(cairn -C "$T/sa" snapshot commit "$act")
act=$(cairn -C "$T/sa" snapshot prepare "$base")
mkdir -p "$T/sa/active/$act/fs/srv"; head -c 40000 /dev/urandom >"$T/sa/active/$act/fs/srv/g"
top=$(cairn -C "$T/sa" snapshot commit "$act")
cairn -C "$T/sa" record put "sha256:$(echo k | sha256sum | cut -d' ' -f1)" "$top" >/dev/null
E2E=s3://$BUCKET/e2e
cairn -C "$T/sa" remote add origin "$E2E"
out=$(cairn -C "$T/sa" push --json origin main)
[ "$(echo "$out" | j 'd["objects_moved"]')" -gt 0 ] || die "push sent nothing: $out"
out=$(cairn -C "$T/sa" push --json origin main)
[ "$(echo "$out" | j 'd["objects_moved"]')" = 0 ] || die "an unchanged push sent objects: $out"
cairn init "$T/sb" >/dev/null
cairn -C "$T/sb" pull "$E2E" main >/dev/null
content() {
    { cairn -C "$1" blob ls --json | j '"\n".join(sorted(b["digest"]+" "+str(b["size"]) for b in d))'
      cairn -C "$1" snapshot ls --json | j '"\n".join(sorted(s["chain_id"] for s in d))'
    } | sort
}
[ "$(content "$T/sa")" = "$(content "$T/sb")" ] || die "the pulled state differs from the pushed one"
cairn -C "$T/sb" fsck >/dev/null || die "fsck after pull: $(cairn -C "$T/sb" fsck)"
cairn -C "$T/sb" remote states "$E2E" main | grep -q main || die "remote states: $(cairn -C "$T/sb" remote states "$E2E" main)"
echo "s3rver: ok"
