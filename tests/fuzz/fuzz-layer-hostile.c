/* fuzz-layer-hostile.c: a layer tarball, as cairn_layer_import() reads it,
 * from seeds that attack (fuzz-layer.c starts from benign ones). The input
 * is the stream (plain tar, gzip or zstd). The import must fail with a
 * message or succeed; either way nothing is written outside the staging
 * directory (a canary beside the state stays as it was) and no staging is
 * left in tmp/. Seeds are built at start with libarchive: every entry type,
 * links pointing out and written through, whiteouts, an opaque directory,
 * PAX names and xattrs, and the same layer compressed. */
#include <cairn/cairn.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

typedef struct fuzz_seed {
    const void *data;
    size_t size;
} fuzz_seed;

static char *root;   /* holds s/ (the state) and outside/ (the canary) */
static char state_dir[4200], tmp_dir[4200], canary[4200], outside[4200];
static cairn_state *st;

/* ---- seeds ------------------------------------------------------------ */

#define NSEEDS 8
static fuzz_seed seeds[NSEEDS + 1];
static size_t nseeds;

typedef struct ent {
    char kind; /* f file, d dir, l symlink, h hardlink, p fifo, c char device */
    const char *path;
    const char *arg; /* content, link target */
    const char *xattr; /* "name=value" or NULL */
} ent;

static void add_seed(const ent *es, size_t n, int filter)
{
    size_t cap = 1 << 16, used = 0;
    void *buf = malloc(cap);
    struct archive *a = archive_write_new();
    if (!buf || !a || archive_write_set_format_pax_restricted(a) != ARCHIVE_OK)
        abort();
    if (filter == 'g')
        archive_write_add_filter_gzip(a);
    else if (filter == 'z')
        archive_write_add_filter_zstd(a);
    archive_write_set_bytes_per_block(a, 0);
    if (archive_write_open_memory(a, buf, cap, &used) != ARCHIVE_OK)
        abort();
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, es[i].path);
        archive_entry_set_mtime(e, 1700000000, 0);
        archive_entry_set_perm(e, 0644);
        size_t len = 0;
        switch (es[i].kind) {
        case 'f':
            archive_entry_set_filetype(e, AE_IFREG);
            len = strlen(es[i].arg);
            archive_entry_set_size(e, (la_int64_t)len);
            break;
        case 'd':
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_perm(e, 0755);
            break;
        case 'l':
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, es[i].arg);
            break;
        case 'h':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, es[i].arg);
            break;
        case 'p':
            archive_entry_set_filetype(e, AE_IFIFO);
            break;
        case 'c':
            archive_entry_set_filetype(e, AE_IFCHR);
            archive_entry_set_rdevmajor(e, 1);
            archive_entry_set_rdevminor(e, 3);
            break;
        }
        if (es[i].xattr) {
            const char *eq = strchr(es[i].xattr, '=');
            char k[128];
            snprintf(k, sizeof(k), "%.*s", (int)(eq - es[i].xattr), es[i].xattr);
            archive_entry_xattr_add_entry(e, k, eq + 1, strlen(eq + 1));
        }
        if (archive_write_header(a, e) != ARCHIVE_OK)
            abort();
        if (len && archive_write_data(a, es[i].arg, len) != (la_ssize_t)len)
            abort();
        archive_entry_free(e);
    }
    if (archive_write_close(a) != ARCHIVE_OK)
        abort();
    archive_write_free(a);
    seeds[nseeds].data = buf;
    seeds[nseeds].size = used;
    nseeds++;
}

const fuzz_seed *fuzz_seeds_get(void)
{
    static const ent plain[] = {
        {'d', "etc", NULL, NULL},
        {'f', "etc/conf", "hello\n", "user.color=blue"},
        {'l', "etc/link", "conf", NULL},
        {'h', "etc/hard", "etc/conf", NULL},
        {'p', "etc/fifo", NULL, NULL},
        {'c', "etc/null", NULL, NULL},
        {'f', "etc/.wh.gone", "", NULL},
        {'d', "opq", NULL, NULL},
        {'f', "opq/.wh..wh..opq", "", NULL},
        {'f', "opq/new", "n", NULL},
    };
    static const ent hostile[] = {
        {'l', "out", "../../../outside", NULL},
        {'f', "out/victim", "pwned", NULL},
        {'l', "abs", "/", NULL},
        {'f', "abs/tmp/x", "pwned", NULL},
        {'h', "hl", "../outside/victim", NULL},
        {'f', "../outside/victim", "pwned", NULL},
    };
    static const ent swaps[] = {
        {'d', "d", NULL, NULL},
        {'f', "d/f", "1", NULL},
        {'l', "d", ".", NULL},
        {'d', "s", NULL, NULL},
        {'l', "t", "s", NULL},
        {'f', "t/through", "2", NULL},
        {'d', "x", NULL, NULL},
        {'l', "x", "../outside", NULL},
        {'f', "x/victim", "pwned", NULL},
    };
    static const ent odd[] = {
        {'f', "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/"
              "a-name-long-enough-for-a-pax-path-header-to-be-written-for-it", "x", NULL},
        {'l', "long-target", "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/"
                             "a-target-long-enough-for-a-pax-linkpath-header", NULL},
        {'f', "ovl", "x", "trusted.overlay.redirect=/etc"},
        {'f', "dup", "1", NULL},
        {'f', "dup", "22", NULL},
        {'f', ".wh.x/y", "", NULL},
    };
#define N(a) (sizeof(a) / sizeof((a)[0]))
    add_seed(plain, N(plain), 0);
    add_seed(hostile, N(hostile), 0);
    add_seed(swaps, N(swaps), 0);
    add_seed(odd, N(odd), 0);
    add_seed(plain, N(plain), 'g');
    add_seed(plain, N(plain), 'z');
    add_seed(swaps, N(swaps), 'g');
    seeds[nseeds].data = NULL;
    return seeds;
}

/* ---- the target ------------------------------------------------------- */

static void cleanup(void)
{
    cairn_state_free(st);
    for (size_t i = 0; i < nseeds; i++)
        free((void *)seeds[i].data);
    char cmd[4300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    free(root);
}

static void setup(void)
{
    char tmpl[] = "/tmp/cairn-fuzz-layer-hostile-XXXXXX";
    root = mkdtemp(tmpl) ? strdup(tmpl) : NULL;
    if (!root)
        abort();
    atexit(cleanup);
    snprintf(state_dir, sizeof(state_dir), "%s/s", root);
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/s/tmp", root);
    snprintf(outside, sizeof(outside), "%s/outside", root);
    snprintf(canary, sizeof(canary), "%s/outside/victim", root);
    cairn_error err;
    char id[CAIRN_STATE_ID_LEN + 1];
    if (mkdir(outside, 0755) < 0 || cairn_state_init(state_dir, id, &err) < 0 ||
        cairn_state_open(&st, state_dir, 0, &err) < 0)
        abort();
    FILE *f = fopen(canary, "w");
    if (!f || fputs("precious", f) < 0 || fclose(f) != 0)
        abort();
}

static size_t entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        abort();
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* Most mutations of a plain tar only break a header's checksum: for inputs
 * of odd length, the checksums are recomputed first (walking headers by the
 * sizes they give), so that the mutated fields themselves reach the reader. */
static void fix_checksums(uint8_t *b, size_t size)
{
    size_t off = 0;
    while (off + 512 <= size) {
        uint8_t *h = b + off;
        if (h[0] == 0)
            break;
        memset(h + 148, ' ', 8);
        unsigned sum = 0;
        for (int i = 0; i < 512; i++)
            sum += h[i];
        snprintf((char *)h + 148, 8, "%06o", sum & 0777777);
        h[155] = ' ';
        unsigned long long n = 0;
        for (int i = 124; i < 136 && h[i] >= '0' && h[i] <= '7'; i++)
            n = n * 8 + (unsigned)(h[i] - '0');
        if (n > size)
            break;
        off += 512 + (size_t)((n + 511) / 512 * 512);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root)
        setup();
    int fd = memfd_create("layer", MFD_CLOEXEC);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
        abort();
    if (size % 2 && size >= 512 && data[0] != 0x1f && data[0] != 0x28) {
        uint8_t *copy = malloc(size);
        if (!copy)
            abort();
        memcpy(copy, data, size);
        fix_checksums(copy, size);
        if (pwrite(fd, copy, size, 0) != (ssize_t)size)
            abort();
        free(copy);
    }
    if (lseek(fd, 0, SEEK_SET) < 0)
        abort();
    char chain[CAIRN_DIGEST_LEN + 1], diff[CAIRN_DIGEST_LEN + 1];
    cairn_error err = {0};
    int r = cairn_layer_import(st, NULL, fd, NULL, chain, diff, &err);
    close(fd);
    if (getenv("FUZZ_VERBOSE"))
        fprintf(stderr, "%d %s\n", r, r < 0 ? err.message : chain);
    if (r < 0 && !err.message[0])
        abort(); /* a failure must say why */
    if (r > 0)
        abort();
    if (entries(tmp_dir) != 0) {
        fprintf(stderr, "staging left in tmp/ (import returned %d: %s)\n", r, err.message);
        abort();
    }
    char got[16] = "";
    FILE *f = fopen(canary, "r");
    if (!f || !fgets(got, sizeof(got), f) || strcmp(got, "precious") || entries(outside) != 1) {
        fprintf(stderr, "the layer wrote outside its snapshot\n");
        abort();
    }
    fclose(f);
    if (r == 0 && cairn_snapshot_remove(st, chain, &err) < 0) {
        fprintf(stderr, "snapshot rm %s: %s\n", chain, err.message);
        abort();
    }
    return 0;
}
