#!/usr/bin/env bash
# README.md is true to the code: it opens with the two commands a newcomer
# runs, says who cairn is for, where the command is after scripts/demo (and its
# PATH line works), that cache keys are digests (and the command refuses
# others), what to do after `volume open` (its lines work as written), and
# every command and option its shell blocks use exists.
source "$(dirname "$0")/lib.sh"
: "${SOURCE_ROOT:?}"
need python3
R=$SOURCE_ROOT/README.md

# block N: the Nth ```sh block of the README (from 1)
block() {
    python3 - "$R" "$1" <<'PY'
import re, sys
blocks = re.findall(r"^```sh\n(.*?)^```", open(sys.argv[1]).read(), re.M | re.S)
print(blocks[int(sys.argv[2]) - 1], end="")
PY
}

step "it opens with the two commands"
[ "$(block 1 | awk '{print $1}' | tr '\n' ' ')" = "scripts/demo scripts/test " ] ||
    die "the README's first commands are not scripts/demo and scripts/test: $(block 1)"

step "it says in one sentence who cairn is for"
sed -n '3p' "$R" | grep -q '^cairn is for ' || die "the README's first paragraph does not start with who cairn is for"

step "it says where scripts/demo leaves the command, and its PATH line works"
built=$(sed -n 's|^CAIRN=\$REPO/||p' "$SOURCE_ROOT/scripts/demo")
[ -n "$built" ] || die "scripts/demo does not set CAIRN=\$REPO/..."
grep -qF "\`$built\`" "$R" || die "the README does not say the command is at $built (where scripts/demo builds it)"
pathline=$(block 2 | grep '^export PATH=' | sed 's/ *#.*//' || true)
[ -n "$pathline" ] || die "the README has no PATH line after the two commands"
mkdir -p "$T/checkout/$(dirname "$built")"
ln -s "$CAIRN" "$T/checkout/$built"
found=$(cd "$T/checkout" && eval "$pathline" && type -P cairn)
[ "$found" = "$T/checkout/$built" ] || die "after '$pathline' in a checkout, cairn is '$found', not $built"

step "it says cache keys are digests, and the command refuses a key that is not one"
block 3 | grep -q 'cache key is a digest (sha256:<64 hex>)' || die "the tour does not say that a cache key is a digest"
cairn init "$T/s" >/dev/null
export CAIRN_STATE=$T/s
echo result >"$T/r"
res=$(cairn blob put "$T/r")
fails 1 "digest 'step-1': expected 'sha256:' and 64 hex" -- cairn record put step-1 "$res"

step "what to do after volume open, run as the README writes it"
lines=$(block 3 | sed -n '/volume open NAME/,/volume save NAME/p' | sed 's/ *#.*//')
grep -q 'cairn mount \$VID /mnt/cache' <<<"$lines" || die "the tour does not mount what volume open printed: $lines"
[ "$(wc -l <<<"$lines")" = 4 ] || die "the tour's volume lines are not open, mount, umount, save: $lines"
mkdir -p "$T/mnt/cache"
# each line as written, with NAME a name and /mnt/cache a directory of the test's
run_line() {
    local l
    l=$(sed -n "$1p" <<<"$lines")
    l=${l//NAME/apt}
    l=${l//\/mnt\/cache/$T/mnt/cache}
    echo "+ $l"
    eval "$l"
}
{ run_line 1 && run_line 2 && echo written >"$T/mnt/cache/f" && run_line 3 && run_line 4; } >"$T/vol.out" 2>&1 ||
    die "the README's volume lines fail: $(cat "$T/vol.out")"
V=$(cairn volume ls --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["current"])')
cairn snapshot checkout "$V" "$T/vol" >/dev/null
[ "$(cat "$T/vol/f")" = written ] || die "what was written after volume open is not in the saved version"

step "every command and option in the README's shell blocks exists"
cairn --help >"$T/help"
python3 - "$R" "$T/help" >"$T/uses" <<'PY'
import re, shlex, sys
text = open(sys.argv[1]).read()
cmds = set(re.findall(r"^  ([a-z]+(?: [a-z]+)?)\s{2,}\S", open(sys.argv[2]).read().split("Commands:")[1], re.M))
for block in re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S):
    for line in block.splitlines():
        line = line.split(" #")[0].split("#")[0] if not line.startswith("#") else ""
        for seg in re.split(r";|&&|\$\(|\)|\|", line):
            words = seg.replace("[", " ").replace("]", " ").split()
            if not words or words[0] != "cairn":
                continue
            words = words[1:]
            while words and words[0] in ("-C", "--state"):
                words = words[2:]
            name = " ".join(words[:2]) if " ".join(words[:2]) in cmds else words[0] if words else ""
            if name not in cmds:
                print(f"?\t{seg.strip()}")
                continue
            opts = sorted({w.split("=")[0] for w in words if w.startswith("--")})
            print(f"{name}\t{' '.join(opts)}")
PY
[ -s "$T/uses" ] || die "no cairn command found in the README"
while IFS=$'\t' read -r name opts; do
    [ "$name" != "?" ] || die "the README runs a command cairn does not have: $opts"
    # shellcheck disable=SC2086
    cairn $name --help >"$T/cmd-help" 2>&1 || die "cairn $name --help fails"
    for o in $opts; do
        grep -q -- "$o\b" "$T/cmd-help" || die "the README gives cairn $name $o, which its --help does not list"
    done
done <"$T/uses"
echo "readme: ok ($(wc -l <"$T/uses") commands checked)"
