#!/usr/bin/env bash
# cairn stack: a state reading through frozen lowers. Everything sees the
# union; writes go to the top only and nothing in a lower is modified (lowers
# made read-only by chmod and by a read-only bind mount); a lower may itself
# be a stack; a vanished or replaced lower is named in a clear error and can
# be removed without opening it; the flatten policy.
source "$(dirname "$0")/lib.sh"

j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
blobs_of() { cairn -C "$1" blob ls | awk '{print $1}' | sort; }
sums() { (cd "$1" && find . -type f -exec sha256sum {} + | sort); }

step "two frozen states"
mkdir -p "$T/data"
for s in a b; do
    cairn init "$T/$s.live" >/dev/null
    for i in $(seq 1 20); do echo "$s $i" >"$T/data/$s$i"; done
    echo "common" >"$T/data/common"
    cairn -C "$T/$s.live" blob put "$T/data/$s"* "$T/data/common" >/dev/null
    cairn freeze -q "$T/$s.live" "$T/$s"
done
common=$(cairn -C "$T/a" blob put "$T/data/common" 2>/dev/null || sha256sum "$T/data/common" | awk '{print "sha256:"$1}')
a1=sha256:$(sha "$T/data/a1"); b1=sha256:$(sha "$T/data/b1")

step "only frozen states can be lowers"
cairn init "$T/top" >/dev/null
fails 1 "not frozen" -- cairn stack add "$T/top" "$T/a.live"
fails 1 "frozen" -- cairn stack add "$T/a" "$T/b"
fails 2 "expected at least one LOWER" -- cairn -C "$T/top" stack add

step "the lowers are made read-only: chmod, and a read-only bind mount"
mkdir -p "$T/ro"
mount --bind "$T/b" "$T/ro"
mount -o remount,ro,bind "$T/ro"
chmod -R a-w "$T/a"
suma=$(sums "$T/a"); sumb=$(sums "$T/b")
cairn stack add "$T/top" "$T/a" "$T/ro" >/dev/null
cairn stack ls "$T/top" >"$T/ls"
[ "$(wc -l <"$T/ls")" = 2 ] && grep -q " ok .*$T/a$" "$T/ls" && grep -q " ok .*$T/ro$" "$T/ls" || die "stack ls: $(cat "$T/ls")"
cairn stack add "$T/top" "$T/a" >/dev/null   # already there: nothing changes
[ "$(cairn stack ls "$T/top" | wc -l)" = 2 ] || die "a lower was listed twice"

step "everything sees the union"
want=$( (blobs_of "$T/a"; blobs_of "$T/b") | sort -u)
[ "$(blobs_of "$T/top")" = "$want" ] || die "blob ls is not the union"
info=$(cairn -C "$T/top" info --json)
[ "$(echo "$info" | j 'd["lowers"]')" = 2 ] || die "info: $info"
[ "$(echo "$info" | j 'd["blobs"]["count"]')" = "$(echo "$want" | wc -l)" ] || die "info counts: $info"
cairn -C "$T/top" blob get --verify "$a1" | cmp -s - "$T/data/a1" || die "read through a"
cairn -C "$T/top" blob get --verify "$b1" | cmp -s - "$T/data/b1" || die "read through the bind mount"
cairn -C "$T/top" blob stat "$b1" >/dev/null
cairn -C "$T/top" fsck >/dev/null || die "fsck of the stack"

step "writes go to the top only"
echo "new in top" >"$T/data/new"
new=$(cairn -C "$T/top" blob put "$T/data/new")
[ -f "$T/top/blobs/sha256/${new#sha256:}" ] || die "the new blob is not in the top"
cairn -C "$T/top" blob put "$T/data/a2" >/dev/null   # already in a lower: nothing written
cairn -C "$T/top" blob label "$a1" owner=top >/dev/null
cairn -C "$T/top" blob stat "$a1" | grep -q "owner=top" || die "a label on a lower's blob"
[ "$(sums "$T/a")" = "$suma" ] || die "a lower was modified"
[ "$(sums "$T/b")" = "$sumb" ] || die "the bind-mounted lower was modified"
fails 1 "" -- cairn -C "$T/top" blob rm "$a1"
[ "$(sums "$T/a")" = "$suma" ] || die "blob rm touched a lower"

step "du sees the union; gc of the stack never touches a lower"
cairn merge -q "$T/eager" "$T/top"
du_of() { cairn -C "$1" du --json | python3 -c 'import json,sys; t=json.load(sys.stdin)["totals"]; print(t["blobs"], t["snapshots"], t["total"], t["records"], t["images"], t["volumes"])'; }
[ "$(du_of "$T/top")" = "$(du_of "$T/eager")" ] || die "du of the stack and of its merge differ: $(du_of "$T/top") vs $(du_of "$T/eager")"
cairn -C "$T/top" gc -q >/dev/null
[ "$(sums "$T/a")" = "$suma" ] || die "gc of the stack modified a lower"
[ "$(sums "$T/b")" = "$sumb" ] || die "gc of the stack modified the bind-mounted lower"
cairn -C "$T/top" blob get --verify "$a1" >/dev/null || die "gc of the stack lost a lower's blob"

step "a lower may itself be a stack"
cairn freeze -q "$T/top" "$T/topf"
cairn init "$T/up" >/dev/null
cairn stack add "$T/up" "$T/topf" >/dev/null
[ "$(blobs_of "$T/up")" = "$(blobs_of "$T/top")" ] || die "a stack of a stack shows another union"
[ "$(cairn -C "$T/up" info --json | j 'd["lowers"]')" = 3 ] || die "the lowers of the lower are not read"
cairn -C "$T/up" blob get --verify "$b1" >/dev/null

step "a vanished lower: a clear error naming it; stack rm still works"
umount "$T/ro"
fails 1 "lower state $T/ro.*(No such file|cairn-state|not a cairn state)" -- cairn -C "$T/top" info
rc=0; cairn stack ls "$T/top" >"$T/ls" 2>"$T/ls.err" || rc=$?
[ "$rc" -eq 3 ] || die "stack ls with a vanished lower exited $rc, not 3"
grep -Eq " (missing|unreadable) +$T/ro" "$T/ls" || die "stack ls does not flag it: $(cat "$T/ls")"
grep -q "1 lower not usable" "$T/ls.err" || die "stack ls does not say so: $(cat "$T/ls.err")"
cairn stack rm "$T/top" "$T/ro" >/dev/null
cairn -C "$T/top" info >/dev/null || die "the stack does not open after rm"
[ "$(cairn stack ls "$T/top" | wc -l)" = 1 ] || die "stack rm removed more than one"

step "a replaced lower: another state at its path"
chmod -R u+w "$T/a"
mv "$T/a" "$T/a.old"
cairn freeze -q "$T/b" "$T/a"
fails 1 "lower state $T/a was replaced: its id is [0-9a-f]+, the stack expects" -- cairn -C "$T/top" blob ls
{ cairn stack ls "$T/top" || true; } | grep -q " replaced " || die "stack ls does not say replaced"
aid=$({ cairn stack ls "$T/top" 2>/dev/null || true; } | awk '{print $1}')
cairn stack rm "$T/top" "$aid" >/dev/null        # by id
[ -z "$(cairn stack ls "$T/top")" ] || die "rm by id"
fails 1 "is not one of its lowers" -- cairn stack rm "$T/top" "$aid"

step "the flatten policy: lowers>1 flattens on the next writable open"
cairn init "$T/p" >/dev/null
cairn stack add "$T/p" "$T/a.old" "$T/b" >/dev/null
cairn flatten --policy 'lowers>1' "$T/p" >/dev/null
cairn -C "$T/p" blob put "$T/data/new" >/dev/null     # the next writable open
[ "$(cairn flatten --policy show --json "$T/p" | j 'd["policy"]')" = 'lowers>1' ] || die "policy not kept"
[ -z "$(cairn stack ls "$T/p")" ] || die "lowers>1 with 2 lowers did not flatten"
[ "$(blobs_of "$T/p")" = "$( (blobs_of "$T/a.old"; blobs_of "$T/b"; echo "$new") | sort -u)" ] || die "flatten lost blobs"
cairn -C "$T/p" fsck >/dev/null
fails 2 "expected never, on-open" -- cairn flatten --policy sometimes "$T/p"

step "never (the default) keeps the stack; on-open flattens when opened to write"
cairn init "$T/q" >/dev/null
cairn stack add "$T/q" "$T/b" >/dev/null
cairn -C "$T/q" blob put "$T/data/new" >/dev/null
[ -n "$(cairn stack ls "$T/q")" ] || die "never flattened"
cairn flatten --policy on-open "$T/q" >/dev/null
cairn -C "$T/q" info >/dev/null                       # a read-only open: no flatten
[ -n "$(cairn stack ls "$T/q")" ] || die "a read-only open flattened"
cairn -C "$T/q" blob put "$T/data/b2" >/dev/null      # opened to write
[ -z "$(cairn stack ls "$T/q")" ] || die "on-open did not flatten"

step "background: flatten --background while an engine writes"
cairn init "$T/bg" >/dev/null
cairn stack add "$T/bg" "$T/b" "$T/a.old" >/dev/null
cairn flatten --policy background "$T/bg" >/dev/null
[ -n "$(cairn stack ls "$T/bg")" ] || die "background flattened on open"
mkdir -p "$T/engine"
(
    for i in $(seq 1 40); do
        echo "engine $i" >"$T/engine/w$i"
        cairn -C "$T/bg" blob put "$T/engine/w$i" >>"$T/engine/committed" || exit 1
    done
) &
engine=$!
cairn flatten --background --if-due -q "$T/bg"
wait "$engine" || die "the engine failed while the state was flattened"
[ -z "$(cairn stack ls "$T/bg")" ] || die "background flatten left lowers"
for d in $(cat "$T/engine/committed"); do cairn -C "$T/bg" blob stat "$d" >/dev/null || die "engine write $d lost"; done
[ "$(blobs_of "$T/bg" | grep -c .)" = "$(( $(( $(blobs_of "$T/a.old" | wc -l) + $(blobs_of "$T/b" | wc -l) - 1 )) + 40 ))" ] || die "blobs after the background flatten"
cairn -C "$T/bg" fsck >/dev/null
out=$(cairn flatten --if-due "$T/bg")
echo "$out" | grep -q "no flatten due" || die "--if-due with nothing to do: $out"
echo ok
