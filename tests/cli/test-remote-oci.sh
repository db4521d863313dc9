#!/usr/bin/env bash
# test-remote-oci.sh: the oci:// backend against Debian's docker-registry
# (distribution 2.8), started here on 127.0.0.1: the vtable through
# remote-tool (monolithic and chunked uploads, a chunked upload resumed
# through the fault proxy), push and pull end to end (fsck clean, the same
# content), concurrent pushes under one tag kept, a state chunked under an
# index, compact and gc, skopeo reading a state back; then a registry with
# htpasswd basic auth and one with token auth (Bearer, a token server of
# tests/): credentials from REGISTRY_AUTH_FILE and ~/.docker/config.json,
# none or wrong ones a clear error with no secret in it; and a registry that
# does not allow deletes saying so.
source "$(dirname "$0")/lib.sh"
: "${REMOTE_TOOL:?REMOTE_TOOL must name tests/remote-tool}"
: "${SOURCE_ROOT:?}"
need docker-registry htpasswd skopeo
PIDS=()
oci_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap 'rc=$?; oci_cleanup; (exit $rc); cleanup' EXIT
j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
rt() { "$REMOTE_TOOL" "$@"; }
dg() { echo "sha256:$(sha "$1")"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export CAIRN_HTTP_RETRIES=6 CAIRN_HTTP_BACKOFF_MS=20 CAIRN_HTTP_STALL_S=3
export HOME="$T/home" # no credentials of this machine's user are read
mkdir -p "$HOME"

# registry NAME [AUTH_LINES] [DELETE]: a registry under $T/NAME; sets PORT
registry() {
    local name=$1 auth=${2:-} del=${3:-true} i
    PORT=$(free_port)
    mkdir -p "$T/$name"
    cat >"$T/$name/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $T/$name/data
  delete:
    enabled: $del
http:
  addr: 127.0.0.1:$PORT
$auth
EOF
    timeout 600 docker-registry serve "$T/$name/config.yml" >"$T/$name/log" 2>&1 &
    PIDS+=($!)
    for i in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$T/$name/log"
    die "docker-registry did not start"
}

# mkstate DIR TAG N SIZE: N random blobs of SIZE bytes, two snapshots, a record
mkstate() {
    cairn init "$1" >/dev/null
    mkdir -p "$T/in-$2"
    for i in $(seq 1 "$3"); do head -c "$4" /dev/urandom >"$T/in-$2/$i"; done
    cairn -C "$1" blob put "$T/in-$2"/* >/dev/null
    local act base top
    act=$(cairn -C "$1" snapshot prepare)
    mkdir -p "$1/active/$act/fs/etc"; echo "$2 base" >"$1/active/$act/fs/etc/$2"
    base=$(cairn -C "$1" snapshot commit "$act")
    act=$(cairn -C "$1" snapshot prepare "$base")
    mkdir -p "$1/active/$act/fs/srv"; head -c 50000 /dev/urandom >"$1/active/$act/fs/srv/$2"
    top=$(cairn -C "$1" snapshot commit "$act")
    cairn -C "$1" record put "sha256:$(echo "$2" | sha256sum | cut -d' ' -f1)" "$top" >/dev/null
    echo "$top"
}
content() {
    { cairn -C "$1" blob ls --json | j '"\n".join(sorted(b["digest"]+" "+str(b["size"]) for b in d))'
      cairn -C "$1" snapshot ls --json | j '"\n".join(sorted(s["chain_id"] for s in d))'
    } | sort
}
fsck_clean() { cairn -C "$1" fsck >/dev/null || die "fsck of $1 is not clean: $(cairn -C "$1" fsck)"; }

registry open
OPEN=$PORT
U="oci://127.0.0.1:$OPEN/cairn/state"

step "the vtable: put (monolithic and chunked), have, get, states on an empty repository"
[ -z "$(rt "$U" states)" ] || die "a new repository lists states"
head -c 5000 /dev/urandom >"$T/small"; head -c 3000000 /dev/urandom >"$T/big"
s=$(dg "$T/small"); b=$(dg "$T/big")
[ "$(rt "$U" put "$T/small")" = "$s" ] || die "put small"
[ "$(CAIRN_OCI_CHUNK_THRESHOLD=1000000 CAIRN_OCI_CHUNK_SIZE=300000 rt "$U" put "$T/big")" = "$b" ] || die "put big, chunked"
missing="sha256:$(printf '%064d' 0)"
[ "$(rt "$U" have "$s" "$b" "$missing" | tr '\n' ' ')" = "$s 1 $b 1 $missing 0 " ] || die "have"
rt "$U" get "$b" "$T/big.out" && cmp "$T/big" "$T/big.out" || die "get big"
fails 1 "blob $missing: not stored" -- rt "$U" get "$missing" "$T/none"
fails 1 "not a sha256 digest" -- rt "$U" have "sha256:NOPE"
fails 1 "expected oci://host\[:port\]/repository" -- rt "oci://127.0.0.1:$OPEN" states
fails 1 "repository 'Bad': expected lower-case" -- rt "oci://127.0.0.1:$OPEN/Bad" states

step "push, pull into an empty state: the same content, fsck clean; a re-push sends nothing"
top=$(mkstate "$T/a" a 20 100000)
out=$(cairn -C "$T/a" push --json "$U" main)
[ "$(echo "$out" | j 'd["objects_moved"]')" = 22 ] || die "push: $out"
out=$(cairn -C "$T/a" push --json "$U" main)
[ "$(echo "$out" | j 'd["objects_moved"]')" = 0 ] || die "an unchanged push sent objects: $out"
[ "$(cairn remote states --json "$U" main | j 'len(d["states"])')" = 1 ] || die "one member expected"
cairn init "$T/b" >/dev/null
out=$(cairn -C "$T/b" pull --json "$U" main)
[ "$(echo "$out" | j 'd["objects_moved"]')" = 22 ] || die "pull: $out"
[ "$(content "$T/a")" = "$(content "$T/b")" ] || die "pulled content differs"
fsck_clean "$T/b"
key="sha256:$(echo a | sha256sum | cut -d' ' -f1)"
[ "$(cairn -C "$T/b" record get "$key")" = "snapshot $top" ] || die "the record did not travel"
out=$(cairn -C "$T/b" pull --json "$U" main)
[ "$(echo "$out" | j 'd["objects_moved"]')" = 0 ] || die "a re-pull fetched: $out"

step "the member is a tag <tag>.<16 hex> of the registry; skopeo reads it as an OCI artifact"
d=$(cairn remote states --json "$U" main | j 'd["states"][0]["digest"]')
mtag="main.$(echo "${d#sha256:}" | cut -c1-16)"
skopeo inspect --tls-verify=false --raw "docker://127.0.0.1:$OPEN/cairn/state:$mtag" >"$T/raw"
[ "$(dg "$T/raw")" = "$d" ] || die "skopeo: the member's tag names another manifest"
[ "$(j 'd["mediaType"] + " " + d["artifactType"] + " " + str(len(d["layers"]))' <"$T/raw")" = \
    "application/vnd.oci.image.manifest.v1+json application/vnd.cairn.state.v1 23" ] || die "skopeo: $(cat "$T/raw")"
skopeo copy -q --src-tls-verify=false "docker://127.0.0.1:$OPEN/cairn/state:$mtag" "oci:$T/sk:x" >/dev/null ||
    die "skopeo copy of a state"
[ "$(ls "$T/sk/blobs/sha256" | wc -l)" -ge 24 ] || die "skopeo copied too few blobs"

step "two pushes under one tag at once: both kept, a pull merges them"
mkstate "$T/x" x 15 65536 >/dev/null
mkstate "$T/y" y 15 65536 >/dev/null
cairn -C "$T/x" push "$U" shared >/dev/null &
px=$!
cairn -C "$T/y" push "$U" shared >/dev/null &
py=$!
wait $px && wait $py || die "a concurrent push failed"
[ "$(cairn remote states --json "$U" shared | j 'len(d["states"])')" = 2 ] || die "a member was lost"
cairn init "$T/xy" >/dev/null
cairn -C "$T/xy" pull "$U" shared >/dev/null
cairn merge "$T/xy-ref" "$T/x" "$T/y" >/dev/null
[ "$(content "$T/xy")" = "$(content "$T/xy-ref")" ] || die "the pull is not the merge of both pushes"
fsck_clean "$T/xy"

step "compact in the registry: one member, no object moved; gc --keep 0 takes states out"
out=$(cairn remote compact --json "$U" shared)
[ "$(echo "$out" | j 'd["bytes_moved"]')" = 0 ] || die "compact moved objects: $out"
[ "$(cairn remote states --json "$U" shared | j 'len(d["states"])')" = 1 ] || die "compact left members"
cairn init "$T/xy2" >/dev/null
cairn -C "$T/xy2" pull "$U" shared >/dev/null
[ "$(content "$T/xy2")" = "$(content "$T/xy-ref")" ] || die "the compacted state differs"
cairn -C "$T/x" push "$U" other >/dev/null
out=$(cairn remote gc --json --keep 0 --grace 0 "$U")
[ "$(echo "$out" | j 'd["states_removed"]')" = 3 ] || die "gc --keep 0: $out"
[ "$(cairn remote states --json "$U" | j 'len(d["states"])')" = 0 ] || die "gc left states"
cairn -C "$T/a" push "$U" main >/dev/null # the blobs stayed: nothing but metadata to send

step "a big state: manifests under an index (every one under 4 MiB), pulled back"
out=$(cairn -C "$T/a" push --json --objects-per-manifest 4 "$U" ch)
d=$(echo "$out" | j 'd["digest"]')
mtag="ch.$(echo "${d#sha256:}" | cut -c1-16)"
raw=$(skopeo inspect --tls-verify=false --raw "docker://127.0.0.1:$OPEN/cairn/state:$mtag")
[ "$(echo "$raw" | j 'd["mediaType"] + " " + str(len(d["manifests"]))')" = \
    "application/vnd.oci.image.index.v1+json 6" ] || die "not an index of 6 manifests: $raw"
cairn init "$T/chk" >/dev/null
cairn -C "$T/chk" pull "$U" ch >/dev/null
[ "$(content "$T/a")" = "$(content "$T/chk")" ] || die "the chunked state differs"
fsck_clean "$T/chk"

step "pull --lazy from the registry (the chunked state): metadata only, objects on first use"
cairn init "$T/lz" >/dev/null
out=$(CAIRN_CACHE_DIR=$T/cache cairn -C "$T/lz" pull --lazy --json "$U" ch)
[ "$(echo "$out" | j 'd["bytes_moved"]')" = 0 ] || die "a lazy pull moved objects: $out"
[ "$(content "$T/a")" = "$(content "$T/lz")" ] || die "the lazy stack lists otherwise"
[ -z "$(find "$T/cache/lowers" -mindepth 3 -path '*/blobs/sha256/*')" ] || die "listing fetched blobs"
for d in $(cairn -C "$T/a" blob ls --json | j '" ".join(b["digest"] for b in d)'); do
    [ "$(CAIRN_CACHE_DIR=$T/cache cairn -C "$T/lz" blob get "$d" | sha256sum | cut -d' ' -f1)" = "${d#sha256:}" ] ||
        die "lazy blob $d"
done
cairn -C "$T/a" snapshot checkout "$top" "$T/co-a" >/dev/null 2>&1
CAIRN_CACHE_DIR=$T/cache cairn -C "$T/lz" snapshot checkout "$top" "$T/co-lz" >/dev/null 2>&1 ||
    die "a lazy checkout from the registry failed"
[ "$(python3 "$SOURCE_ROOT/tests/cli/tree-list.py" "$T/co-a")" = \
    "$(python3 "$SOURCE_ROOT/tests/cli/tree-list.py" "$T/co-lz")" ] || die "the lazy checkout differs"

step "the fault proxy: a chunked upload resumed, a push and a pull verified"
rm -f "$T/proxy.port"
timeout 300 python3 "$SOURCE_ROOT/tests/http-fault-proxy.py" --upstream "127.0.0.1:$OPEN" \
    --port-file "$T/proxy.port" --timeout 280 --seed 7 --rate 0.25 --stall 2 \
    --faults 500,429,reset,stall,truncate,corrupt --log "$T/proxy.log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/proxy.port" ] && break; sleep 0.1; done
PP=$(cat "$T/proxy.port")
PU="oci://127.0.0.1:$PP/cairn/faults"
head -c 2500000 /dev/urandom >"$T/big2"
[ "$(CAIRN_OCI_CHUNK_THRESHOLD=100000 CAIRN_OCI_CHUNK_SIZE=100000 rt "$PU" put "$T/big2")" = "$(dg "$T/big2")" ] ||
    die "a chunked upload through faults"
grep -q '^PATCH .* [0-9a-z]*$' "$T/proxy.log" || die "no PATCH went through the proxy"
rt "oci://127.0.0.1:$OPEN/cairn/faults" get "$(dg "$T/big2")" "$T/big2.out" && cmp "$T/big2" "$T/big2.out" ||
    die "the resumed upload is not the blob"
mkstate "$T/f" f 30 30000 >/dev/null
cairn -C "$T/f" push "$PU" main >/dev/null 2>"$T/push.err" || cairn -C "$T/f" push "$PU" main >/dev/null ||
    die "push through faults: $(cat "$T/push.err")"
cairn init "$T/f2" >/dev/null
cairn -C "$T/f2" pull "$PU" main >/dev/null 2>&1 || cairn -C "$T/f2" pull "$PU" main >/dev/null ||
    die "pull through faults"
[ "$(content "$T/f")" = "$(content "$T/f2")" ] || die "the state through faults differs"
fsck_clean "$T/f2"
for f in 500 429 reset truncate corrupt; do
    grep -q " $f\$" "$T/proxy.log" || die "the proxy never injected $f"
done

step "transfers: --jobs at a time, push and pull (one at a time with --jobs 1)"
# a proxy that holds each request 50 ms and counts the most it holds at once
par_proxy() { # par_proxy REGEX: the requests counted
    rm -f "$T/par.port" "$T/par.n"
    timeout 300 python3 "$SOURCE_ROOT/tests/http-fault-proxy.py" --upstream "127.0.0.1:$OPEN" \
        --port-file "$T/par.port" --timeout 280 --rate 0 --delay 0.05 --inflight-file "$T/par.n" \
        --inflight-match "$1" &
    PIDS+=($!)
    for _ in $(seq 100); do [ -s "$T/par.port" ] && break; sleep 0.1; done
    [ -s "$T/par.port" ] || die "the counting proxy did not start"
}
# (uploads: a blob's POST and PUT; existence checks, HEADs, run in batches
# of --jobs anyway)
mkstate "$T/q" q 24 20000 >/dev/null
par_proxy '^(POST|PUT|PATCH) .*/blobs/'
cairn -C "$T/q" push --jobs 1 "oci://127.0.0.1:$(cat "$T/par.port")/cairn/one" main >/dev/null
[ "$(cat "$T/par.n")" = 1 ] || die "--jobs 1: a push sent $(cat "$T/par.n") uploads at once"
par_proxy '^(POST|PUT|PATCH) .*/blobs/'
cairn -C "$T/q" push --jobs 4 "oci://127.0.0.1:$(cat "$T/par.port")/cairn/four" main >/dev/null
n=$(cat "$T/par.n")
[ "$n" -ge 3 ] && [ "$n" -le 4 ] || die "--jobs 4: a push sent $n uploads at once"
par_proxy '^GET .*/blobs/sha256:'
cairn init "$T/q2" >/dev/null
cairn -C "$T/q2" pull --jobs 4 "oci://127.0.0.1:$(cat "$T/par.port")/cairn/four" main >/dev/null
n=$(cat "$T/par.n")
[ "$n" -ge 3 ] && [ "$n" -le 4 ] || die "--jobs 4: a pull sent $n fetches at once"
[ "$(content "$T/q")" = "$(content "$T/q2")" ] || die "the state pulled 4 at a time differs"
fsck_clean "$T/q2"

step "a registry with htpasswd basic auth"
SECRET="s3cr3t-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
htpasswd -Bbn ci "$SECRET" >"$T/htpasswd"
registry auth "auth:
  htpasswd:
    realm: cairn-test
    path: $T/htpasswd"
AP=$PORT
AU="oci://127.0.0.1:$AP/cairn/private"
b64=$(printf 'ci:%s' "$SECRET" | python3 -c 'import base64,sys; print(base64.b64encode(sys.stdin.buffer.read()).decode())')
printf '{"auths": {"127.0.0.1:%s": {"auth": "%s"}}}\n' "$AP" "$b64" >"$T/auth.json"
out=$(cairn -C "$T/a" push "$AU" main 2>&1) && die "a push without credentials went through: $out"
grep -q "asks for credentials (Basic) and none are given for 127.0.0.1:$AP" <<<"$out" || die "no credentials: $out"
REGISTRY_AUTH_FILE="$T/auth.json" cairn -C "$T/a" push "$AU" main >/dev/null
cairn init "$T/pa" >/dev/null
REGISTRY_AUTH_FILE="$T/auth.json" cairn -C "$T/pa" pull "$AU" main >/dev/null
[ "$(content "$T/a")" = "$(content "$T/pa")" ] || die "pulled content differs (auth)"
fsck_clean "$T/pa"
mkdir -p "$HOME/.docker"
printf '{"auths": {"http://127.0.0.1:%s/v2/": {"auth": "%s"}}}\n' "$AP" "$b64" >"$HOME/.docker/config.json"
[ "$(cairn remote states --json "$AU" main | j 'len(d["states"])')" = 1 ] || die "~/.docker/config.json"
[ "$(cairn remote states --json --auth-file "$T/auth.json" "$AU" main | j 'len(d["states"])')" = 1 ] || die "--auth-file"
skopeo inspect --tls-verify=false --authfile "$T/auth.json" --raw \
    "docker://127.0.0.1:$AP/cairn/private:main.$(cairn remote states --json "$AU" main | j 'd["states"][0]["digest"][7:23]')" |
    j 'd["artifactType"]' | grep -q cairn || die "skopeo with credentials"
wrong=$(printf 'ci:%s' "wrong-$SECRET" | python3 -c 'import base64,sys; print(base64.b64encode(sys.stdin.buffer.read()).decode())')
printf '{"auths": {"127.0.0.1:%s": {"auth": "%s"}}}\n' "$AP" "$wrong" >"$T/wrong.json"
out=$(REGISTRY_AUTH_FILE="$T/wrong.json" cairn -C "$T/a" push "$AU" main 2>&1) && die "wrong credentials went through"
grep -q "refused the credentials for 127.0.0.1:$AP" <<<"$out" || die "wrong credentials: $out"
out+=$(REGISTRY_AUTH_FILE="$T/wrong.json" rt "$AU" states 2>&1 || true)
out+=$(REGISTRY_AUTH_FILE="$T/auth.json" rt "$AU" get "$missing" "$T/none" 2>&1 || true)
for s in "$SECRET" "$b64" "$wrong"; do
    ! grep -qF -- "$s" <<<"$out" || die "a secret in the output: $out"
done
grep -rqF -- "$SECRET" "$T/a/db" "$T/pa" 2>/dev/null && die "a secret in a state"
echo '{not json' >"$T/broken.json"
fails 1 "auth file .*broken.json: not JSON" -- env REGISTRY_AUTH_FILE="$T/broken.json" "$CAIRN" remote states "$AU"

step "a registry with token auth (Bearer): a token from the realm, got with the credentials"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/tok.key" -out "$T/tok.crt" -days 2 \
    -subj /CN=cairn-test-token >/dev/null 2>&1 || die "openssl: a certificate for the token server"
rm -f "$T/tok.port"
timeout 300 python3 "$SOURCE_ROOT/tests/registry-token-server.py" --key "$T/tok.key" --cert "$T/tok.crt" \
    --user ci --password "$SECRET" --issuer cairn-test --port-file "$T/tok.port" --timeout 280 \
    --log "$T/tok.log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/tok.port" ] && break; sleep 0.1; done
[ -s "$T/tok.port" ] || die "the token server did not start"
registry token "auth:
  token:
    realm: http://127.0.0.1:$(cat "$T/tok.port")/token
    service: cairn-registry
    issuer: cairn-test
    rootcertbundle: $T/tok.crt"
TU="oci://127.0.0.1:$PORT/cairn/tokens"
printf '{"auths": {"127.0.0.1:%s": {"auth": "%s"}}}\n' "$PORT" "$b64" >"$T/tok-auth.json"
printf '{"auths": {"127.0.0.1:%s": {"auth": "%s"}}}\n' "$PORT" "$wrong" >"$T/tok-wrong.json"
REGISTRY_AUTH_FILE="$T/tok-auth.json" cairn -C "$T/a" push "$TU" main >/dev/null
cairn init "$T/ta" >/dev/null
REGISTRY_AUTH_FILE="$T/tok-auth.json" cairn -C "$T/ta" pull "$TU" main >/dev/null
[ "$(content "$T/a")" = "$(content "$T/ta")" ] || die "pulled content differs (token auth)"
fsck_clean "$T/ta"
grep -q "^GET /token ok repository:cairn/tokens:pull,push\$" "$T/tok.log" || die "no token asked for the repository: $(cat "$T/tok.log")"
# a handle that reads lazily connects once: a merge of a lazy stack fetches
# every object (22) in one process, and asks the token server once
cairn init "$T/tl" >/dev/null
REGISTRY_AUTH_FILE="$T/tok-auth.json" CAIRN_CACHE_DIR="$T/tok-cache" cairn -C "$T/tl" pull --lazy "$TU" main >/dev/null
n0=$(grep -c '^GET /token ok' "$T/tok.log")
out=$(REGISTRY_AUTH_FILE="$T/tok-auth.json" CAIRN_CACHE_DIR="$T/tok-cache" cairn merge --json "$T/tm" "$T/tl") ||
    die "merge of a lazy stack (token auth) failed"
[ "$(echo "$out" | j 'd["refused"]')" = 0 ] || die "merge of a lazy stack (token auth) left objects out: $out"
[ "$(content "$T/a")" = "$(content "$T/tm")" ] || die "merged content differs (lazy, token auth)"
n1=$(grep -c '^GET /token ok' "$T/tok.log")
[ $((n1 - n0)) -le 1 ] || die "a lazy merge of 22 objects asked for $((n1 - n0)) tokens (one connection a fetch)"
out=$(REGISTRY_AUTH_FILE="$T/tok-wrong.json" cairn -C "$T/a" push "$TU" main 2>&1) && die "wrong credentials got a token"
grep -q "the token server http://127.0.0.1:[0-9]*/token refused the credentials" <<<"$out" || die "wrong credentials (token): $out"
out+=$(REGISTRY_AUTH_FILE="$T/tok-auth.json" "$REMOTE_TOOL" "$TU" get "$missing" "$T/none" 2>&1 || true)
grep -q "blob $missing: not stored" <<<"$out" || die "a missing blob under token auth: $out"
for s in "$SECRET" "$b64" "$wrong"; do
    ! grep -qF -- "$s" <<<"$out" || die "a secret in the output: $out"
done
fails 1 "refused anonymous access" -- cairn remote states "$TU"

step "a registry that does not allow deletes says so"
registry nodelete "" false
NU="oci://127.0.0.1:$PORT/cairn/state"
cairn -C "$T/x" push "$NU" t >/dev/null
fails 1 "does not allow deletes .*REGISTRY_STORAGE_DELETE_ENABLED=true" -- cairn remote gc --keep 0 "$NU"
[ "$(cairn remote states --json "$NU" t | j 'len(d["states"])')" = 1 ] || die "the state went anyway"

step "plain http only for loopback hosts (or --insecure)"
fails 1 "https://" -- env CAIRN_HTTP_RETRIES=0 "$REMOTE_TOOL" "oci://cairn-test.invalid/r" states
echo ok
