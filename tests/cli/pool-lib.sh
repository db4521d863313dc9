# pool-lib.sh: sourced by the pool tests after lib.sh. pool_scenario URL runs
# the pool end to end against one remote: provision, checkin of a delta,
# concurrent checkins with a compaction, a gc and a provision in between,
# gc by least recent use with leases, the modes, the bad inputs.
j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
fsck_clean() { cairn -C "$1" fsck >/dev/null || die "fsck of $1 is not clean: $(cairn -C "$1" fsck)"; }
blobs() { cairn -C "$1" blob ls --json | j '"\n".join(sorted(b["digest"] for b in d))'; }
snaps() { cairn -C "$1" snapshot ls --json | j '"\n".join(sorted(s["chain_id"] for s in d))'; }
# session DIR NAME N SIZE: N random blobs, a chain of two snapshots, a record
session() {
    mkdir -p "$T/in-$2"
    for i in $(seq 1 "$3"); do head -c "$4" /dev/urandom >"$T/in-$2/$i"; done
    cairn -C "$1" blob put "$T/in-$2"/* >/dev/null
    local act base top
    act=$(cairn -C "$1" snapshot prepare)
    mkdir -p "$1/active/$act/fs/etc"; echo "$2 base" >"$1/active/$act/fs/etc/$2"
    base=$(cairn -C "$1" snapshot commit "$act")
    act=$(cairn -C "$1" snapshot prepare "$base")
    mkdir -p "$1/active/$act/fs/srv"; head -c 30000 /dev/urandom >"$1/active/$act/fs/srv/$2"
    top=$(cairn -C "$1" snapshot commit "$act")
    cairn -C "$1" record put "sha256:$(echo "$2" | sha256sum | cut -d' ' -f1)" "$top" >/dev/null
}
# pull_clean URL MODULE: every member of the module, pulled into a fresh
# state: every object its rows name is in the remote, fsck clean
pull_clean() {
    local d="$T/pull-$RANDOM$RANDOM"
    cairn init "$d" >/dev/null
    cairn -C "$d" pull "$1" "$2" >/dev/null || die "pull of $2 from $1 failed"
    fsck_clean "$d"
    rm -rf "$d"
}

pool_scenario() {
    local U=$1 W="$T/w$RANDOM" out
    mkdir -p "$W"
    export CAIRN_POOL_CACHE="$W/cache"
    step "init ($U); an unknown module is a clean miss: an empty state"
    cairn pool init "$U" | grep -q "format 1" || die "pool init"
    cairn pool init "$U" >/dev/null || die "pool init again"
    out=$(cairn pool provision --json "$U" nosuch "$W/empty")
    [ "$(echo "$out" | j 'd["hit"]')" = False ] && [ "$(echo "$out" | j 'd["lowers"]')" = 0 ] || die "miss: $out"
    fsck_clean "$W/empty"
    fails 2 "expected URL MODULE DEST" -- cairn pool provision "$U" base
    fails 1 "module 'Bad/name'" -- cairn pool provision "$U" Bad/name "$W/bad"
    [ ! -e "$W/bad" ] || die "a refused provision made its DEST"

    step "a session of base checked in; app over base: ranked, fetched once, then cached"
    cairn pool provision "$U" base "$W/b0" >/dev/null
    session "$W/b0" base 100 4096
    out=$(cairn pool checkin --json "$U" base "$W/b0")
    [ "$(echo "$out" | j 'd["objects_sent"]')" = 102 ] || die "checkin of base: $out"
    cairn pool provision "$U" app "$W/a0" >/dev/null
    session "$W/a0" app 3 4096
    cairn pool checkin "$U" app "$W/a0" >/dev/null
    out=$(cairn pool provision --json --dep base "$U" app "$W/a1")
    [ "$(echo "$out" | j 'd["lowers"]')" = 2 ] || die "provision app: $out"
    [ "$(echo "$out" | j '",".join(l["module"] for l in d["stack"])')" = app,base ] || die "rank: $out"
    [ "$(echo "$out" | j 'd["cached"]')" = 0 ] && [ "$(echo "$out" | j 'd["fetched"]')" = 2 ] || die "fetch: $out"
    [ "$(blobs "$W/a1")" = "$( (blobs "$W/b0"; blobs "$W/a0") | sort -u)" ] || die "app over base lacks blobs"
    [ "$(snaps "$W/a1" | wc -l)" = 4 ] || die "app over base: $(snaps "$W/a1")"
    fsck_clean "$W/a1"
    out=$(cairn pool provision --json --dep base "$U" app "$W/a2")
    [ "$(echo "$out" | j 'd["cached"]')" = 2 ] && [ "$(echo "$out" | j 'd["fetched"]')" = 0 ] || die "cache hit: $out"

    step "checkin sends the delta: 1 blob added to a state of 100 sends that blob"
    head -c 4096 /dev/urandom >"$W/one"
    cairn -C "$W/a2" blob put "$W/one" >/dev/null
    out=$(cairn pool checkin --json "$U" app "$W/a2")
    [ "$(echo "$out" | j 'd["objects_sent"]')" = 1 ] && [ "$(echo "$out" | j 'd["bytes_sent"]')" = 4096 ] ||
        die "checkin of a delta sent more: $out"
    # its metadata: a database of a few rows, not an empty schema of 93 KiB
    [ "$(echo "$out" | j 'd["meta_bytes"]')" -lt 32768 ] || die "checkin of a delta sent a big database: $out"

    step "concurrent checkins of one module, a compaction, a gc and a provision: nothing lost"
    local i pids=()
    for i in 1 2 3 4; do
        cairn pool provision "$U" base "$W/c$i" >/dev/null
        head -c 5000 /dev/urandom >"$W/c$i.blob"
        cairn -C "$W/c$i" blob put "$W/c$i.blob" >/dev/null
    done
    for i in 1 2 3 4; do cairn pool checkin "$U" base "$W/c$i" >"$W/ci$i.log" 2>&1 & pids+=($!); done
    cairn pool compact "$U" base >"$W/compact.log" 2>&1 & pids+=($!)
    cairn pool gc --max-size 1TiB "$U" >"$W/gc.log" 2>&1 & pids+=($!)
    cairn pool provision "$U" base "$W/mid" >"$W/mid.log" 2>&1 & pids+=($!)
    for i in "${pids[@]}"; do wait "$i" || die "a concurrent pool command failed: $(cat "$W"/*.log)"; done
    fsck_clean "$W/mid"
    cairn pool provision "$U" base "$W/after" >/dev/null
    blobs "$W/after" >"$W/after.blobs"
    for i in 1 2 3 4; do
        grep -q "sha256:$(sha "$W/c$i.blob")" "$W/after.blobs" || die "session $i's work is lost: $(cairn pool ls "$U")"
    done
    fsck_clean "$W/after"
    pull_clean "$U" base
    pull_clean "$U" app

    step "compact: no object moved; the folded states stay for the grace, stacked by none; --grace 0 retires them"
    out=$(cairn pool compact --json "$U")
    [ "$(echo "$out" | j 'd["bytes_moved"]')" = 0 ] || die "compact moved objects: $out"
    [ "$(cairn pool ls --json "$U" base | j 'len(d["states"])')" -gt 1 ] || die "compact took the folded states out at once: $(cairn pool ls "$U")"
    out=$(CAIRN_POOL_CACHE="$W/fresh" cairn pool provision --json "$U" base "$W/fresh-base")
    [ "$(echo "$out" | j 'd["lowers"]')" = 1 ] && [ "$(echo "$out" | j 'd["fetched"]')" = 1 ] ||
        die "a fresh host stacked or fetched the folded states: $out"
    [ "$(blobs "$W/fresh-base")" = "$(blobs "$W/after")" ] || die "the compacted state lacks blobs"
    out=$(cairn pool provision --json "$U" base "$W/old-host-base")
    [ "$(echo "$out" | j 'd["lowers"]')" = 1 ] || die "a host that cached the folded states stacked them: $out"
    out=$(cairn pool compact --json --grace 0 "$U")
    [ "$(echo "$out" | j 'd["retired"]')" -ge 2 ] || die "compact --grace 0 retired nothing: $out"
    [ "$(cairn pool ls --json "$U" base | j 'len(d["states"])')" = 1 ] || die "base not compacted: $(cairn pool ls "$U")"
    fsck_clean "$W/fresh-base"; fsck_clean "$W/old-host-base"
    CAIRN_POOL_CACHE="$W/fresh" cairn pool lease release "$U" "$W/fresh-base" >/dev/null
    cairn pool provision --dep base "$U" app "$W/a3" >/dev/null
    [ "$(blobs "$W/a3")" = "$( (blobs "$W/after"; blobs "$W/a2") | sort -u)" ] || die "after compact: blobs differ"
    fsck_clean "$W/a3"; fsck_clean "$W/a1"

    step "modes: merge is self-contained, overlay prints the mount, --max-lowers merges the tail"
    cairn pool provision --mode merge --dep base "$U" app "$W/m" >/dev/null
    [ -z "$(cairn -C "$W/m" stack ls)" ] || die "a merged provision has lowers"
    [ "$(blobs "$W/m")" = "$(blobs "$W/a3")" ] || die "merge: blobs differ"
    fsck_clean "$W/m"
    out=$(cairn pool provision --mode overlay --dep base "$U" app "$W/o")
    echo "$out" | grep -q "^mount -t overlay overlay -o lowerdir=.*members/.*:.*members/.*,upperdir=$W/o.upper,workdir=$W/o.work $W/o\$" ||
        die "overlay: $out"
    out=$(cairn pool provision --json --mode overlay --dep base "$U" app "$W/o2")
    [ -n "$(echo "$out" | j 'd["lease"]')" ] || die "an overlay described, not mounted, holds no lease: $out"
    cairn pool lease renew "$U" "$W/o2" >/dev/null || die "the lease of an overlay not mounted cannot be renewed by its DEST"
    cairn pool lease release "$U" "$W/o2" >/dev/null || die "the lease of an overlay not mounted cannot be released by its DEST"
    cairn pool lease release "$U" "$W/o" >/dev/null
    cairn pool provision --mode overlay --mount --dep base "$U" app "$W/om" >/dev/null
    [ "$(blobs "$W/om")" = "$(blobs "$W/a3")" ] || { umount "$W/om"; die "overlay mount: blobs differ"; }
    fsck_clean "$W/om"
    cairn pool lease release "$U" "$W/om" >/dev/null
    umount "$W/om"
    cairn pool provision --max-lowers 1 --dep base "$U" app "$W/x" >/dev/null
    [ "$(cairn -C "$W/x" stack ls | wc -l)" = 1 ] || die "max-lowers 1: $(cairn -C "$W/x" stack ls)"
    [ "$(blobs "$W/x")" = "$(blobs "$W/a3")" ] || die "max-lowers: blobs differ"
    fsck_clean "$W/x"

    step "bad input: a dependency cycle is refused naming it; a full cache creates nothing"
    echo '{"app": ["lib"], "lib": ["base", "app"]}' >"$W/deps.json"
    fails 1 "dependency cycle: app -> lib -> app" -- cairn pool provision --deps-file "$W/deps.json" "$U" app "$W/cy"
    [ ! -e "$W/cy" ] || die "a refused provision made its DEST"
    echo '{"app": [' >"$W/broken.json"
    fails 1 "deps file $W/broken.json" -- cairn pool provision --deps-file "$W/broken.json" "$U" app "$W/cy"
    fails 1 "pool cache .* is full" -- env CAIRN_POOL_CACHE="$W/small" "$CAIRN" pool provision --cache-max 1 "$U" base "$W/full"
    [ ! -e "$W/full" ] || die "a full cache made its DEST"
    fails 1 "not empty" -- cairn pool provision "$U" base "$W/a1"
    fsck_clean "$W/a1"

    step "gc: least recently used first, leased states kept"
    for i in 1 2 3 4; do cairn pool lease release "$U" "$W/c$i" >/dev/null; done
    cairn pool provision "$U" old "$W/old0" >/dev/null; session "$W/old0" old 5 4096
    cairn pool checkin "$U" old "$W/old0" >/dev/null
    cairn pool provision "$U" hot "$W/hot0" >/dev/null; session "$W/hot0" hot 5 4096
    cairn pool checkin "$U" hot "$W/hot0" >/dev/null
    for d in "$W"/*/; do [ -f "$d/cairn-state" ] && cairn pool lease release "$U" "$d" >/dev/null 2>&1 || true; done
    cairn pool provision "$U" old "$W/old1" >/dev/null # old: now the most recent use
    cairn pool lease release "$U" "$W/old1" >/dev/null
    cairn pool provision "$U" app "$W/lease" >/dev/null # a live lease on app
    cairn pool compact --grace 0 "$U" app >/dev/null
    for m in l1 l2 l3; do
        cairn pool provision "$U" "$m" "$W/$m-0" >/dev/null; session "$W/$m-0" "$m" 3 4096
        cairn pool checkin "$U" "$m" "$W/$m-0" >/dev/null
    done
    for m in l1 l2 l3; do # used in this order, after every other module's last use
        cairn pool provision "$U" "$m" "$W/$m-1" >/dev/null
        cairn pool lease release "$U" "$W/$m-1" >/dev/null
    done
    cairn pool ls --json "$U" >"$W/ls.json"
    local fit
    fit=$(j 'sum(s["bytes"] for s in d["states"] if s["module"] in ("app", "l2", "l3"))' <"$W/ls.json")
    out=$(cairn pool gc --json --max-size "$fit" "$U")
    mods=$(cairn pool ls --json "$U" | j '",".join(sorted(set(s["module"] for s in d["states"])))')
    [ "$mods" = app,l2,l3 ] || die "gc --max-size $fit (app leased, l2 and l3 the most recently used) kept $mods: $out"
    out=$(cairn pool gc --json --max-size 1 "$U")
    cairn pool ls --json "$U" >"$W/ls.json"
    mods=$(j '",".join(sorted(set(s["module"] for s in d["states"])))' <"$W/ls.json")
    [ "$mods" = app ] || die "gc --max-size 1 kept $mods: $out"
    cairn pool provision "$U" app "$W/after-gc" >/dev/null
    fsck_clean "$W/after-gc"; fsck_clean "$W/lease"
    pull_clean "$U" app
}
