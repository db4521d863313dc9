# cache-lib.sh: helpers of the build cache's end-to-end tests (sourced after lib.sh).
# dg STRING: a digest made of a string (cache keys, ops).
dg() { printf 'sha256:%s' "$(printf '%s' "$1" | sha256sum | cut -d' ' -f1)"; }
# db STATE: the state's own database file.
db() { echo "$1/db/$(cairn -C "$1" info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])').sqlite"; }
# age STATE [SECONDS]: make every row look older (default an hour), as if written long ago.
age() {
    local s=${2:-3600}
    sqlite3 "$(db "$1")" "UPDATE blobs SET created = created - $s; UPDATE snapshots SET created = created - $s;
        UPDATE cache_results SET created = created - $s; UPDATE usage SET last_used = last_used - $s;
        UPDATE cache_result_refs SET touched = touched - $s;"
}
# used STATE DIGEST SECONDS_AGO: set the last use of an object.
used() { sqlite3 "$(db "$1")" "UPDATE usage SET last_used = strftime('%s','now') - $3 WHERE object = '$2'"; }
# jq1 EXPR: evaluate a python expression on the JSON on stdin (bound to j);
# a tuple prints one element a line.
jq1() {
    python3 -c "import json,sys
j = json.load(sys.stdin)
v = ($1)
print('\n'.join(map(str, v)) if isinstance(v, tuple) else v)"
}
