#!/usr/bin/env bash
# Edges where a command did something the user did not ask for: a move that
# drops what is never merged, an init that re-identifies a frozen lower in
# place, a duration past int64 read as negative, an identity whose frozen
# flag this cairn does not know read as live.
source "$(dirname "$0")/lib.sh"

j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

step "merge --move refuses a source holding active snapshots or leases"
cairn init "$T/src" >/dev/null
echo data >"$T/f"
cairn -C "$T/src" blob put "$T/f" >/dev/null
act=$(cairn -C "$T/src" snapshot prepare)
cairn -C "$T/src" lease create keep >/dev/null
fails 1 "source .*/src holds 1 active snapshot and 1 lease.*--drop-local" -- cairn merge --move "$T/dst" "$T/src"
[ -d "$T/src/active/$act" ] || die "a refused move removed the active snapshot"
[ "$(cairn -C "$T/src" lease ls | wc -l)" = 1 ] || die "a refused move removed the lease"
[ ! -e "$T/dst/cairn-state" ] || die "a refused move created the destination"
cairn merge --move --drop-local -q "$T/dst" "$T/src"
[ ! -e "$T/src" ] || die "--move --drop-local left its source"
[ "$(cairn -C "$T/dst" blob ls | wc -l)" = 1 ] || die "--move --drop-local lost the blob"

step "init over a frozen directory is refused without --over-frozen"
cairn init "$T/live" >/dev/null
cairn -C "$T/live" blob put "$T/f" >/dev/null
cairn freeze -q "$T/live" "$T/frozen"
cairn init "$T/top" >/dev/null
cairn stack add "$T/top" "$T/frozen" >/dev/null
cp "$T/frozen/cairn-state" "$T/ident.before"
fails 1 "a frozen state \\(id [0-9a-f]{32}\\).*--over-frozen" -- cairn init "$T/frozen"
cmp -s "$T/frozen/cairn-state" "$T/ident.before" || die "a refused init changed the identity"
[ "$(cairn -C "$T/top" blob ls | wc -l)" = 1 ] || die "the stack over the frozen state broke"
cp -a "$T/frozen" "$T/copy"
new=$(cairn init --json --over-frozen "$T/copy" | j 'd["id"]')
[ "$(sed -n 's/^id=//p' "$T/copy/cairn-state")" = "$new" ] || die "--over-frozen did not re-identify"
[ "$(cairn -C "$T/copy" blob ls | wc -l)" = 1 ] || die "the re-identified copy lost its lower"

step "durations: the largest int64 is not negative; past it is too long"
cairn init "$T/s" >/dev/null
cairn -C "$T/s" lease create big --ttl 9223372036854775807s >/dev/null
[ "$(cairn -C "$T/s" lease ls --json | j 'd[0]["expired"]')" = False ] || die "the longest lease is expired"
fails 2 "too long" -- cairn -C "$T/s" lease create l2 --ttl 9223372036854775808s
fails 2 "too long" -- cairn -C "$T/s" lease create l3 --ttl 106751991167301d
fails 2 "too long" -- cairn -C "$T/s" gc --grace 99999999999999999999s
fails 2 "expected a duration" -- cairn -C "$T/s" lease create l4 --ttl -5s
fails 2 "expected a duration" -- cairn -C "$T/s" lease create l4 --ttl 1.5x
cairn -C "$T/s" lease create half --ttl 1.5h >/dev/null
cairn -C "$T/s" lease ls --json | python3 -c '
import json,sys
l={x["id"]:x for x in json.load(sys.stdin)}["half"]
sys.exit(0 if l["expires"]-l["created"]==5400 else "1.5h is %d s" % (l["expires"]-l["created"]))'

step "an identity whose frozen flag is not 0 or 1 is refused"
for v in yes true 2 none; do
    [ "$v" = none ] && v=
    cp -a "$T/s" "$T/fz"
    sed -i "s/^frozen=0\$/frozen=$v/" "$T/fz/cairn-state"
    fails 1 "cairn-state: corrupt identity file \\(frozen '$v', expected 0 or 1\\)" -- cairn -C "$T/fz" blob put "$T/f"
    fails 1 "corrupt identity file" -- cairn -C "$T/fz" info
    rm -rf "$T/fz"
done
echo "all edges ok"
