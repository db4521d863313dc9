#!/usr/bin/env bash
# The command's shape: -C (or CAIRN_STATE) names the state for every
# command, the positional forms kept; one output shape for every rm; options
# a command does not take are refused; exit codes say what was left.
source "$(dirname "$0")/lib.sh"

j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

step "states to combine"
mkdir -p "$T/data"
for s in a b; do
    cairn init "$T/$s.live" >/dev/null
    echo "$s" >"$T/data/$s"
    cairn -C "$T/$s.live" blob put "$T/data/$s" >/dev/null
done
da=sha256:$(sha "$T/data/a"); db=sha256:$(sha "$T/data/b")

step "-C SRC freeze DEST, beside freeze SRC DEST"
cairn -C "$T/a.live" freeze -q "$T/a"
cairn freeze -q "$T/b.live" "$T/b"
cairn -C "$T/a" blob stat "$da" >/dev/null || die "-C SRC freeze"
fails 2 "expected DEST" -- cairn -C "$T/a.live" freeze "$T/x" "$T/y"

step "-C TOP stack add LOWER..., stack ls, stack rm LOWER"
cairn init "$T/top" >/dev/null
cairn -C "$T/top" stack add "$T/a" "$T/b" >/dev/null
[ "$(cairn -C "$T/top" stack ls | wc -l)" = 2 ] || die "-C stack add did not add both"
CAIRN_STATE="$T/top" cairn stack ls | grep -q "$T/b" || die "CAIRN_STATE stack ls"
cairn -C "$T/top" stack rm "$T/b" | grep -q "^removed lower $T/b$" || die "-C stack rm"
[ "$(cairn stack ls "$T/top" | wc -l)" = 1 ] || die "stack rm by -C"
cairn stack add "$T/top" "$T/b" >/dev/null     # the positional form still works
[ "$(cairn stack ls "$T/top" | wc -l)" = 2 ] || die "positional stack add"

step "-C DEST merge SRC..., beside merge DEST SRC..."
cairn -C "$T/m1" merge -q "$T/a" "$T/b"
cairn merge -q "$T/m2" "$T/a" "$T/b"
for m in m1 m2; do
    cairn -C "$T/$m" blob stat "$da" >/dev/null && cairn -C "$T/$m" blob stat "$db" >/dev/null \
        || die "$m lacks a blob"
done

step "-C DIR init and -C DIR flatten"
cairn -C "$T/c" init >/dev/null
cairn -C "$T/c" stack add "$T/a" >/dev/null
cairn -C "$T/c" flatten -q
[ -z "$(cairn -C "$T/c" stack ls)" ] || die "-C flatten left lowers"

step "every rm prints one shape: removed KIND NAME, and {removed: [{kind, name}]}"
S="$T/r"; cairn init "$S" >/dev/null; export CAIRN_STATE=$S
d=$(cairn blob put "$T/data/a" | awk '{print $1}')
cairn blob rm "$d" | grep -qx "removed blob $d" || die "blob rm text"
cairn blob put "$T/data/a" >/dev/null
[ "$(cairn blob rm --json "$d" | j 'd["removed"][0]["kind"] + " " + d["removed"][0]["name"]')" = "blob $d" ] || die "blob rm json"
id=$(cairn snapshot prepare)
top=$(cairn snapshot commit "$id")
cairn snapshot rm "$top" | grep -qx "removed snapshot $top" || die "snapshot rm text"
cairn lease create L1 >/dev/null
cairn lease rm L1 | grep -qx "removed lease L1" || die "lease rm text (it printed nothing before)"
cairn lease create L2 >/dev/null
[ "$(cairn lease rm --json L2 | j 'd["removed"][0]["name"]')" = L2 ] || die "lease rm json"
cairn blob put "$T/data/b" >/dev/null
key=sha256:$(echo key | sha256sum | cut -d' ' -f1)
cairn record put "$key" "$db" >/dev/null
cairn record rm "$key" | grep -qx "removed record $key (1 rows)" || die "record rm text: $(cairn record rm "$key" 2>&1 || true)"
cairn volume open v1 >/dev/null
cairn volume save v1 >/dev/null
[ "$(cairn volume rm --json v1 | j 'd["removed"][0]["versions"]')" = 1 ] || die "volume rm json"
fails 1 "not found|no such|no volume" -- cairn volume rm v1

step "lease drop takes resources out of a lease; lease rm removes leases"
cairn lease create L3 >/dev/null
cairn lease add L3 blob "$db" >/dev/null
cairn lease drop L3 blob "$db" >/dev/null
cairn lease ls --json | grep -q L3 || die "lease drop removed the lease"
fails 2 "unknown|usage|expected" -- cairn lease remove L3 blob "$db"

step "options a command does not take are refused"
fails 2 "invalid option|unrecognized|unknown" -- cairn snapshot prepare -o "$T/x"
[ ! -e "$T/x" ] || die "prepare -o wrote a file"
unset CAIRN_STATE
