/* fuzz-layer.c: layer tarballs, as cairn_layer_import() reads them. Each
 * input is imported into one real state: it must fail with a message or
 * succeed, never crash, never leave staging behind in tmp/, and never write
 * beside the state (a sentinel directory next to it stays empty). */
#include <cairn/cairn.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

typedef struct fuzz_seed {
    const void *data;
    size_t size;
} fuzz_seed;

/* Seeds are real tars, built by libarchive before main() into fixed
 * buffers (their size is known: ustar, unblocked). */
#define ONE_FILE_TAR (512 * 2 + 1024)
#define LINKS_TAR (512 * 6 + 1024) /* d, d/f and its data, d/s, d/h, d/.wh.gone */
static unsigned char seed_file[ONE_FILE_TAR], seed_links[LINKS_TAR];
/* The first cut where its last entry's data ends (no padding, no end
 * blocks), as umoci 0.4.7 writes layers: whole, so imported. */
static unsigned char seed_short[512 + sizeof("hello world") - 1];

const fuzz_seed fuzz_seeds[] = {
    {seed_file, sizeof(seed_file)},
    {seed_links, sizeof(seed_links)},
    {seed_short, sizeof(seed_short)},
    {NULL, 0},
};

typedef struct sink {
    unsigned char *p, *end;
} sink;

static la_ssize_t to_buf(struct archive *a, void *ud, const void *b, size_t n)
{
    sink *s = ud;
    if (n > (size_t)(s->end - s->p))
        abort(); /* the seed's size above is wrong */
    memcpy(s->p, b, n);
    s->p += n;
    return (la_ssize_t)n;
}

static void entry(struct archive *a, const char *path, int type, const char *target,
                  const char *data)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, (unsigned)type);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, 1700000000, 0);
    if (type == AE_IFLNK)
        archive_entry_set_symlink(e, target);
    else if (target)
        archive_entry_set_hardlink(e, target);
    archive_entry_set_size(e, data ? (la_int64_t)strlen(data) : 0);
    archive_write_header(a, e);
    if (data)
        archive_write_data(a, data, strlen(data));
    archive_entry_free(e);
}

static void build(unsigned char *buf, size_t size, int which)
{
    sink s = {buf, buf + size};
    struct archive *a = archive_write_new();
    archive_write_set_format_ustar(a);
    archive_write_set_bytes_per_block(a, 0);
    archive_write_open2(a, &s, NULL, to_buf, NULL, NULL);
    if (which == 0) {
        entry(a, "etc/hello", AE_IFREG, NULL, "hello world");
    } else {
        entry(a, "d", AE_IFDIR, NULL, NULL);
        entry(a, "d/f", AE_IFREG, NULL, "data");
        entry(a, "d/s", AE_IFLNK, "f", NULL);
        entry(a, "d/h", AE_IFREG, "d/f", NULL);
        entry(a, "d/.wh.gone", AE_IFREG, NULL, NULL);
    }
    archive_write_close(a);
    archive_write_free(a);
    if (s.p != s.end)
        abort(); /* the seed's size above is wrong */
}

__attribute__((constructor)) static void make_seeds(void)
{
    build(seed_file, sizeof(seed_file), 0);
    build(seed_links, sizeof(seed_links), 1);
    memcpy(seed_short, seed_file, sizeof(seed_short));
}

static char *root, *state, *outside;
static cairn_state *st;

static void cleanup(void)
{
    cairn_state_free(st);
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    free(root);
    free(state);
    free(outside);
}

static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        abort();
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root) {
        char tmpl[] = "/tmp/cairn-fuzz-layer-XXXXXX";
        root = mkdtemp(tmpl) ? strdup(tmpl) : NULL;
        if (!root || asprintf(&state, "%s/s", root) < 0 || asprintf(&outside, "%s/out", root) < 0)
            abort();
        atexit(cleanup);
        cairn_error err;
        if (cairn_state_init(state, NULL, &err) < 0 || cairn_state_open(&st, state, 0, &err) < 0 ||
            mkdir(outside, 0755) < 0)
            abort();
    }
    int fd = memfd_create("layer", MFD_CLOEXEC);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size) || lseek(fd, 0, SEEK_SET) != 0)
        abort();
    cairn_error err = {0};
    char chain[CAIRN_DIGEST_LEN + 1];
    int r = cairn_layer_import(st, NULL, fd, NULL, chain, NULL, &err);
    close(fd);
    if (r < 0 && !err.message[0])
        abort(); /* a failure must say why */
    if (r == 0 && cairn_snapshot_remove(st, chain, &err) < 0) {
        fprintf(stderr, "remove %s: %s\n", chain, err.message);
        abort();
    }
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s/tmp", state);
    if (entries(tmp) != 0 || entries(outside) != 0) {
        fprintf(stderr, "staging left behind or a write outside the state\n");
        abort();
    }
    return 0;
}
