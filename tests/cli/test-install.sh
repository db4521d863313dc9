#!/usr/bin/env bash
# meson install honours DESTDIR; a program builds against the installed
# header (plain C11, pedantic) and pkg-config file, links the shared library
# and works; the library exports only cairn_* symbols.
source "$(dirname "$0")/lib.sh"
: "${BUILD_ROOT:?}"
step "install into a DESTDIR"
meson install -C "$BUILD_ROOT" --destdir "$T/dest" --no-rebuild --quiet >/dev/null
pc=$(find "$T/dest" -name cairn.pc | head -1)
[ -n "$pc" ] || die "no cairn.pc installed"
[ -x "$(find "$T/dest" -path '*/bin/cairn' | head -1)" ] || die "no cairn command installed"
for h in cairn.h error.h state.h store.h fsck.h; do
    [ -f "$(find "$T/dest" -path "*/include/cairn/$h" | head -1)" ] || die "no $h installed"
done
so=$(find "$T/dest" -name 'libcairn.so.0*' -type f | head -1)
[ -n "$so" ] || die "no shared library"
[ -f "$(find "$T/dest" -name libcairn.a | head -1)" ] || die "no static library"

step "only cairn_* symbols are exported"
leaked=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^cairn_' | grep -v '^_' || true)
[ -z "$leaked" ] || die "exported non-API symbols: $leaked"

step "a program builds against the installed files"
cat >"$T/prog.c" <<'C'
#include <cairn/cairn.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv)
{
    cairn_error err;
    char id[CAIRN_STATE_ID_LEN + 1];
    if (cairn_state_init(argv[1], id, &err) < 0) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    cairn_state *st;
    if (cairn_state_open(&st, argv[1], 0, &err) < 0)
        return 1;
    char d[CAIRN_DIGEST_LEN + 1];
    if (cairn_blob_put_buf(st, "hello\n", 6, NULL, d, &err) < 0)
        return 1;
    printf("%s\n", d);
    cairn_state_free(st);
    return argc > 2;
}
C
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$T/dest
san=()
case "${SANITIZE:-none}" in none|"") ;; *) san=(-fsanitize="$SANITIZE") ;; esac
cc -std=c11 -Wall -Wextra -Werror -pedantic "${san[@]}" -o "$T/prog" "$T/prog.c" \
    $(pkg-config --cflags --libs cairn) || die "does not build against the installed files"
out=$(LD_LIBRARY_PATH=$(dirname "$so") "$T/prog" "$T/state")
[ "$out" = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03" ] || die "prog said: $out"
cairn -C "$T/state" blob get "$out" | grep -q hello || die "the command does not read what the library wrote"
echo "install tests passed"
