# lib.sh: sourced by the end-to-end tests of the command.
#   CAIRN   the command under test (set by meson)
#   T       a scratch directory, removed at exit
# Helpers: ok, fails CODE PATTERN -- CMD..., die MESSAGE, need CMD...
set -euo pipefail
: "${CAIRN:?CAIRN must name the cairn command}"
T=$(mktemp -d "${TMPDIR:-/tmp}/cairn-cli-XXXXXX")
cleanup() {
    local rc=$?
    # Unmount anything a test left mounted under T, deepest first.
    if command -v findmnt >/dev/null; then
        { findmnt -rn -o TARGET | grep "^$T" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done; } || true
    fi
    chmod -R u+w "$T" 2>/dev/null || true
    rm -rf "$T"
    exit $rc
}
trap cleanup EXIT
cairn() { "$CAIRN" "$@"; }
# What scripts/deps unpacks rather than installs (its NAME@unpacked rows) comes
# first on PATH: the tests start those daemons themselves, on private roots.
for _d in "${CAIRN_UNPACKED:-/var/cache/cairn/unpacked}"/*/usr/sbin "${CAIRN_UNPACKED:-/var/cache/cairn/unpacked}"/*/usr/bin; do
    [ -d "$_d" ] && PATH=$_d:$PATH
done
unset _d
die() { echo "FAIL: $*" >&2; exit 1; }
# need CMD...: skip the test (exit 77, meson's SKIP) unless each command is
# installed. A test needs this only for a command scripts/deps does not install
# (tests/cli/test-deps.sh counts it as checked for).
need() {
    local c
    for c; do
        command -v "$c" >/dev/null || { echo "SKIP: $c is not installed (scripts/deps installs what it lists)"; exit 77; }
    done
}
step() { echo "--- $*"; }
# fails CODE PATTERN -- CMD...: CMD must exit with CODE and print PATTERN (grep -E) on stderr.
fails() {
    local code=$1 pat=$2; shift 3
    local out rc=0
    out=$("$@" 2>&1 >/dev/null) || rc=$?
    [ "$rc" -eq "$code" ] || die "expected exit $code, got $rc from: $* (stderr: $out)"
    grep -Eq -- "$pat" <<<"$out" || die "expected /$pat/ in stderr of: $* (got: $out)"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
