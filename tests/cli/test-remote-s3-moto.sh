#!/usr/bin/env bash
# The s3:// backend against moto's server: once with signature checking on
# (keys made through its IAM API; wrong keys refused, no secret printed),
# once without (moto 5 checks a signature over the query as it decoded it,
# so a listing of a prefix with '/' is refused however it is signed, boto3's
# own included): listings in pages, multipart, a multipart upload resumed
# after a kill, and the fault proxy. moto is not packaged in Debian: without
# it the test is skipped, saying so.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3-lib.sh"
# moto is optional (pip only), so it is looked for, never imported, here
if ! python3 -c 'import importlib.util as u, sys; sys.exit(not u.find_spec("moto"))'; then
    echo "SKIP: moto (with its server) is not installed: not packaged in Debian; pip install 'moto[server]'"
    exit 77
fi
python3 -c 'import boto3'
start_moto() { # start_moto VAR ENV...: a moto server; its port in VAR
    local port
    port=$(free_port)
    env "${@:2}" timeout 280 python3 -m moto.server -H 127.0.0.1 -p "$port" >"$T/moto.$1.log" 2>&1 &
    PIDS+=($!)
    wait_port "$port"
    printf -v "$1" %s "$port"
}
export AWS_REGION=us-east-1

step "moto with signature checks: keys from its IAM API"
start_moto AUTH INITIAL_NO_AUTH_ACTION_COUNT=3
read -r AK SK < <(python3 - "http://127.0.0.1:$AUTH" <<'PY'
import json, sys
import boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="cairn")
iam.put_user_policy(UserName="cairn", PolicyName="s3", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
k = iam.create_access_key(UserName="cairn")["AccessKey"]
print(k["AccessKeyId"], k["SecretAccessKey"])
PY
)
export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_ENDPOINT_URL=http://127.0.0.1:$AUTH
python3 -c 'import boto3; boto3.client("s3").create_bucket(Bucket="signed")'
U=s3://signed/p
head -c 300000 /dev/urandom >"$T/s"; D=$(dg "$T/s")
[ "$(rt "$U" put "$T/s")" = "$D" ]
[ "$(CAIRN_S3_HAVE=head rt "$U" have "$D" "sha256:$(printf '%064d' 1)" | awk '{print $2}' | tr -d '\n')" = 10 ]
rt "$U" get "$D" "$T/s.out"; cmp "$T/s" "$T/s.out"
echo '{"signed": true}' >"$T/sm"; M=$(rt "$U" state-put main "$T/sm")
rt "$U" state-get main "$M" "$T/sm.out"; cmp "$T/sm" "$T/sm.out"
python3 -c 'import boto3,sys; assert boto3.client("s3").head_object(Bucket="signed", Key="p/blobs/sha256/"+sys.argv[1][7:])["ContentLength"] == 300000' "$D"
rt "$U" rm "$D"; rt "$U" state-rm main "$M"

step "wrong and unknown keys: a clear error, no secret in it"
out=$(AWS_SECRET_ACCESS_KEY=not-the-secret-1234 rt "$U" get "$D" "$T/x" 2>&1) && die "a wrong secret was accepted"
grep -q "remote blob $D: GET http://127.0.0.1:$AUTH/signed/p/blobs/sha256/.*403 (SignatureDoesNotMatch" <<<"$out" || die "unclear: $out"
! grep -q "not-the-secret-1234" <<<"$out" || die "the secret is in the error: $out"
out=$(AWS_ACCESS_KEY_ID=AKIANOSUCHKEY0000000 rt "$U" get "$D" "$T/x" 2>&1) && die "an unknown key was accepted"
grep -q "403 (InvalidAccessKeyId" <<<"$out" || die "unclear: $out"
out=$(AWS_SECRET_ACCESS_KEY=not-the-secret-1234 rt "$U" put "$T/s" 2>&1) && die "a wrong secret was accepted"
grep -q "HEAD .*403 (Forbidden: wrong or expired credentials" <<<"$out" || die "unclear: $out"
! grep -q "not-the-secret-1234" <<<"$out" || die "the secret is in the error: $out"
! grep -qF "$SK" <<<"$out" || die "the secret is in the error: $out"
out=$(AWS_SESSION_TOKEN=expired-session-token-xyz rt "$U" put "$T/s" 2>&1) || true
! grep -q "expired-session-token-xyz" <<<"$out" || die "the session token is in the error: $out"

step "moto without signature checks: everything else"
start_moto OPEN
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_ENDPOINT_URL=http://127.0.0.1:$OPEN
python3 -c 'import boto3; boto3.client("s3").create_bucket(Bucket="open")'
BUCKET=open PREFIX=a/b
U=s3://$BUCKET/$PREFIX
s3_scenario "$U"

step "listings in pages: continuation tokens signed and sent"
for i in 1 2 3 4 5; do echo "page $i" >"$T/pg$i"; done
rt "$U" put "$T"/pg? >/dev/null
[ "$(CAIRN_S3_MAX_KEYS=2 rt "$U" ls | wc -l)" = "$(rt "$U" ls | wc -l)" ] || die "pages lost keys"
[ "$(CAIRN_S3_MAX_KEYS=1 CAIRN_S3_HAVE=list rt "$U" have "$(dg "$T/pg5")" | awk '{print $2}')" = 1 ]

step "a multipart upload killed in the middle, resumed by a rerun"
export CAIRN_S3_MULTIPART_THRESHOLD=5000000 CAIRN_S3_PART_SIZE=5242880
head -c 26000000 /dev/urandom >"$T/huge"; H=$(dg "$T/huge") # 5 parts
start_proxy "$OPEN" --hold 'partNumber=4' --log "$T/hold.log"
AWS_ENDPOINT_URL=http://127.0.0.1:$PROXY_PORT REMOTE_JOBS=1 "$REMOTE_TOOL" "$U" put "$T/huge" >/dev/null 2>&1 &
PUT=$!
for i in $(seq 300); do grep -q ' hold$' "$T/hold.log" 2>/dev/null && break; sleep 0.1; done
grep -q ' hold$' "$T/hold.log" || die "the upload never reached part 4"
kill -9 "$PUT"; wait "$PUT" 2>/dev/null || true
stop_proxy
[ "$(rt "$U" have "$H" | awk '{print $2}')" = 0 ] || die "a killed upload is visible"
start_proxy "$OPEN" --log "$T/resume.log"
AWS_ENDPOINT_URL=http://127.0.0.1:$PROXY_PORT rt "$U" put "$T/huge" >/dev/null
stop_proxy
sent=$(grep -c '^PUT .*partNumber=' "$T/resume.log" || true)
[ "$sent" = 2 ] || die "the rerun sent $sent parts, not the 2 missing: $(cat "$T/resume.log")"
rt "$U" get "$H" "$T/huge.out"; cmp "$T/huge" "$T/huge.out" || die "the resumed blob reads back wrong"
unset CAIRN_S3_MULTIPART_THRESHOLD CAIRN_S3_PART_SIZE

step "the fault proxy in front of moto"
for seed in 7 8; do
    start_proxy "$OPEN" --seed "$seed" --rate 0.3 --stall 4 --log "$T/proxy.$seed.log"
    FAULT_MAX_KEYS=3 AWS_ENDPOINT_URL=http://127.0.0.1:$PROXY_PORT s3_faults "$U" 4
    stop_proxy
done
s3_verify_all "$U"
echo "moto: ok"
