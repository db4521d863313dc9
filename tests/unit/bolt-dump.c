/* bolt-dump: print every bucket and key of a bbolt file through cairn's
 * reader (lib/containerd/bolt.c), one line a key, nested buckets indented:
 *   bolt-dump FILE
 * Exits 0, or 1 with the reader's message. The tests compare its output with
 * what containerd's tools say, and run it over damaged files. */
#include "containerd/bolt.h"

#include <ctype.h>

typedef struct dumper {
    const cairn__bolt *db;
    int depth;
    cairn_error *err;
} dumper;

static void put_bytes(const uint8_t *p, size_t n)
{
    bool text = n > 0;
    for (size_t i = 0; i < n; i++)
        if (!isprint(p[i]))
            text = false;
    if (text)
        printf("%.*s", (int)n, (const char *)p);
    else {
        printf("0x");
        for (size_t i = 0; i < n && i < 64; i++)
            printf("%02x", p[i]);
        if (n > 64)
            printf("...(%zu bytes)", n);
    }
}

static int each(void *ud, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                bool is_bucket)
{
    dumper *d = ud;
    printf("%*s", d->depth * 2, "");
    put_bytes(key, klen);
    if (!is_bucket) {
        printf(" = ");
        put_bytes(val, vlen);
        printf("\n");
        return 0;
    }
    printf("/\n");
    if (d->depth >= 16)
        return cairn__err(d->err, CAIRN_E_CORRUPT, "buckets nested deeper than 16");
    cairn__bolt_bucket b;
    int r = cairn__bolt_bucket_of(d->db, val, vlen, &b, d->err);
    if (r < 0)
        return r;
    d->depth++;
    r = cairn__bolt_each(&b, each, d, d->err);
    d->depth--;
    return r;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bolt-dump FILE\n");
        return 2;
    }
    cairn_error err = {0};
    cairn__bolt *db;
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "bolt-dump: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    int r = cairn__bolt_open(fd, argv[1], (size_t)1 << 30, &db, &err);
    close(fd);
    if (r == 0) {
        printf("# txid %llu, page size %u\n", (unsigned long long)cairn__bolt_txid(db),
               cairn__bolt_page_size(db));
        cairn__bolt_bucket root;
        cairn__bolt_root(db, &root);
        dumper d = {.db = db, .err = &err};
        r = cairn__bolt_each(&root, each, &d, &err);
        cairn__bolt_close(db);
    }
    if (r < 0) {
        fflush(stdout);
        fprintf(stderr, "bolt-dump: %s (%s)\n", err.message, cairn_strerror(r));
        return 1;
    }
    return 0;
}
