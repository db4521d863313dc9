/* fuzz-state.c: the identity file and the lowers file, as read when a state
 * is opened. The input is split at the first NUL: the identity file, then
 * the lowers file. Opening must fail cleanly or succeed; never crash. */
#include <cairn/cairn.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fuzz_seed {
    const void *data;
    size_t size;
} fuzz_seed;

#define S(lit) {lit, sizeof(lit) - 1}
const fuzz_seed fuzz_seeds[] = {
    S("cairn-state\nformat=1\nid=0123456789abcdef0123456789abcdef\n"
      "database=db/0123456789abcdef0123456789abcdef.sqlite\nfrozen=0\n"),
    S("cairn-state\nformat=1\nid=0123456789abcdef0123456789abcdef\n"
      "database=db/0123456789abcdef0123456789abcdef.sqlite\nfrozen=1\n\0"
      "fedcba9876543210fedcba9876543210 /nonexistent/lower\n# comment\n\n"),
    S("cairn-state\nformat=1\nid=0123456789abcdef0123456789abcdef\n"
      "database=db/0123456789abcdef0123456789abcdef.sqlite\n\0"
      "0123456789abcdef0123456789abcdef /\n"),
    {NULL, 0},
};

static char *root;

static void cleanup(void)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    free(root);
}

static void write_file(const char *dir, const char *name, const uint8_t *d, size_t n)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        abort();
    if (n && write(fd, d, n) != (ssize_t)n)
        abort();
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root) {
        /* One real state whose identity and lowers files each input replaces. */
        char tmpl[] = "/tmp/cairn-fuzz-state-XXXXXX";
        root = mkdtemp(tmpl) ? strdup(tmpl) : NULL;
        if (!root)
            abort();
        atexit(cleanup);
        cairn_error err;
        char id[CAIRN_STATE_ID_LEN + 1];
        if (cairn_state_init(root, id, &err) < 0)
            abort();
        /* Let seeds name this state's database. */
        char from[4096], to[4096];
        snprintf(from, sizeof(from), "%s/db/%s.sqlite", root, id);
        snprintf(to, sizeof(to), "%s/db/0123456789abcdef0123456789abcdef.sqlite", root);
        if (rename(from, to) < 0)
            abort();
    }
    const uint8_t *nul = memchr(data, 0, size);
    size_t n1 = nul ? (size_t)(nul - data) : size;
    write_file(root, "cairn-state", data, n1);
    if (nul)
        write_file(root, "lowers", nul + 1, size - n1 - 1);
    else {
        char p[4096];
        snprintf(p, sizeof(p), "%s/lowers", root);
        unlink(p);
    }
    cairn_state *st = NULL;
    cairn_error err = {0};
    int r = cairn_state_open(&st, root, CAIRN_OPEN_READONLY, &err);
    if (r == 0) {
        cairn_state_info info;
        cairn_state_info_get(st, &info, &err);
        cairn_state_free(st);
    } else if (!err.message[0] || r >= 0) {
        abort(); /* a failure must say why */
    }
    return 0;
}
