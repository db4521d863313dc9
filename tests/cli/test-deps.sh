#!/usr/bin/env bash
# scripts/deps cannot drift from the scripts: every command that scripts/,
# tests/ and bench/ call (and every module meson.build asks for) is in a row of
# scripts/deps, a shell builtin or function, or checked for first; and each row
# is true of its installed package (deps-check.py says how it reads the scripts).
# Then the check itself is checked: on a copy of the tree with unlisted commands
# put in each way a script can run one, it must name every one of them.
source "$(dirname "$0")/lib.sh"
: "${SOURCE_ROOT:?}"
need shfmt python3
CHECK=$SOURCE_ROOT/tests/cli/deps-check.py

step "every command the scripts call is one scripts/deps installs"
python3 "$CHECK" "$SOURCE_ROOT" >"$T/real.out" 2>&1 || { cat "$T/real.out"; die "scripts/deps is not complete (above)"; }
grep '^note:' "$T/real.out" || true

step "the check names an unlisted command, however a script runs it"
C=$T/tree
mkdir -p "$C"
for d in scripts tests bench .ci; do
    [ -e "$SOURCE_ROOT/$d" ] && cp -r "$SOURCE_ROOT/$d" "$C/"
done
(cd "$SOURCE_ROOT" && find . -name meson.build -not -path './.*' -not -path '*/meson-private/*' \
    -exec cp --parents {} "$C/" \;)
# one unlisted command in each form, and the line it is on
add() { echo "$1:$(($(wc -l <"$C/$1") + 1))"; echo "$2" >>"$C/$1"; }
plain=$(add tests/cli/test-blob.sh 'frobnicate-plain --x')
runner=$(add tests/cli/test-gc.sh 'fails 1 x -- timeout 5 frobnicate-runner y')
subst=$(add scripts/demo.d/10-store.sh 'check "a string run by sh" sh -c "frobnicate-shc a && true"')
found=$(add bench/gc.sh 'X=$(find . -type f -exec frobnicate-find {} +)')
heredoc=$(add tests/cli/test-du.sh 'python3 - <<PY
import frobmodule
PY')
pipe=$(add scripts/test 'echo x | xargs -0 -n 2 frobnicate-xargs')
cat >>"$C/tests/unit/test-store.c" <<'EOF'
static void frob(void)
{
    (void)system("cd /tmp && frobnicate-c x");
}
EOF
cfile="tests/unit/test-store.c:$(grep -n frobnicate-c "$C/tests/unit/test-store.c" | cut -d: -f1)"
add tests/cli/test-record.sh 'need frobnicate-guarded; frobnicate-guarded --ok' >/dev/null
echo "frob = dependency('frobpc', required : false)" >>"$C/meson.build"
rc=0
python3 "$CHECK" "$C" >"$T/mut.out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || { cat "$T/mut.out"; die "the check passed a tree with unlisted commands (exit $rc)"; }
for want in "$plain: calls frobnicate-plain" "$runner: calls frobnicate-runner" \
            "$subst: calls frobnicate-shc" "$found: calls frobnicate-find" \
            "$pipe: calls frobnicate-xargs" "$cfile: calls frobnicate-c" \
            "$heredoc: needs py:frobmodule" "meson.build: needs pc:frobpc"; do
    grep -qF "FAIL: $want," "$T/mut.out" || { cat "$T/mut.out"; die "the check did not say '$want'"; }
done
! grep -q frobnicate-guarded "$T/mut.out" || die "a command checked for with need was reported: $(grep guarded "$T/mut.out")"
[ "$(grep -c '^FAIL:' "$T/mut.out")" = 8 ] || { cat "$T/mut.out"; die "the check reported more than what was put in"; }

step "a row that names a command its package does not ship is refused"
if command -v dpkg-query >/dev/null && dpkg-query -W -f='${Status}' coreutils 2>/dev/null | grep -q 'ok installed'; then
    rm -rf "$C"; mkdir -p "$C/scripts"
    sed 's/^\(test *coreutils *\)/\1frobnicate-row /' "$SOURCE_ROOT/scripts/deps" >"$C/scripts/deps"
    grep -q 'frobnicate-row' "$C/scripts/deps" || die "the coreutils row was not found in scripts/deps"
    rc=0
    python3 "$CHECK" "$C" >"$T/row.out" 2>&1 || rc=$?
    [ "$rc" -eq 1 ] && grep -q 'coreutils does not ship frobnicate-row' "$T/row.out" ||
        { cat "$T/row.out"; die "a false row was not refused"; }
else
    echo "(no dpkg here: rows are not verified against packages)"
fi
echo "deps: ok"
