/* fuzz-bolt.c: containerd's bbolt files through cairn's reader
 * (lib/containerd/bolt.c). The seeds are small bbolt files built here, page
 * by page as bbolt lays them out (512-byte pages): both meta pages, a
 * freelist, a root leaf holding a bucket on its own page, a bucket whose
 * root is a branch over two leaves, an inline bucket, a nested inline
 * bucket below a branch's leaf, and plain values. Each seed must read back
 * whole (else the target aborts: a seed the reader refuses tests nothing);
 * each mutated input must then open and walk, or fail with a message,
 * never fault (the ASan build catches what goes wrong). */
#include "containerd/bolt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct fuzz_seed {
    const void *data;
    size_t size;
} fuzz_seed;

#define PS    512u
#define PAGES 8u

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A page header at p. */
static void page_hdr(uint8_t *p, uint64_t id, uint16_t flags, uint16_t count)
{
    put64(p, id);
    put16(p + 8, flags);
    put16(p + 10, count);
    put32(p + 12, 0);
}

typedef struct kv {
    const char *key;
    const uint8_t *val;
    size_t vlen;
    bool bucket;
} kv;

/* A leaf page at p (its header id `id`) holding kvs; returns its length. */
static size_t leaf(uint8_t *p, uint64_t id, const kv *kvs, unsigned n)
{
    page_hdr(p, id, 0x02, (uint16_t)n);
    size_t data = 16 + 16u * n;
    for (unsigned i = 0; i < n; i++) {
        uint8_t *e = p + 16 + 16u * i;
        size_t kl = strlen(kvs[i].key);
        put32(e, kvs[i].bucket ? 0x01 : 0);
        put32(e + 4, (uint32_t)(p + data - e));
        put32(e + 8, (uint32_t)kl);
        put32(e + 12, (uint32_t)kvs[i].vlen);
        memcpy(p + data, kvs[i].key, kl);
        memcpy(p + data + kl, kvs[i].val, kvs[i].vlen);
        data += kl + kvs[i].vlen;
    }
    return data;
}

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void meta_page(uint8_t *f, uint64_t id, uint64_t txid)
{
    uint8_t *p = f + id * PS;
    page_hdr(p, id, 0x04, 0);
    uint8_t *m = p + 16;
    put32(m, 0xED0CDAEDu);
    put32(m + 4, 2);
    put32(m + 8, PS);
    put32(m + 12, 0);
    put64(m + 16, 3); /* the root bucket's page */
    put64(m + 24, 0);
    put64(m + 32, 2); /* the freelist */
    put64(m + 40, PAGES);
    put64(m + 48, txid);
    put64(m + 56, fnv1a64(m, 56));
}

static uint8_t seed_file[2][PAGES * PS];

/* Seed `which`: 0 all of the above; 1 the same with the meta pages' txids
 * swapped, so the other one is current. */
static void build(uint8_t *f, int which)
{
    memset(f, 0, PAGES * PS);
    meta_page(f, 0, which ? 7 : 6);
    meta_page(f, 1, which ? 6 : 7);
    page_hdr(f + 2 * PS, 2, 0x10, 0); /* an empty freelist */

    uint8_t b4[16] = {0}, b5[16] = {0};
    put64(b4, 4);
    put64(b5, 5);
    /* An inline bucket: its header (root 0), then its leaf page. */
    uint8_t inl[128] = {0};
    static const uint8_t v[] = "value";
    kv in_kvs[] = {{"k", v, 5, false}};
    size_t inl_len = 16 + leaf(inl + 16, 0, in_kvs, 1);
    kv root_kvs[] = {
        {"a", b4, 16, true},
        {"b", b5, 16, true},
        {"c", inl, inl_len, true},
        {"d", (const uint8_t *)"x", 1, false},
    };
    leaf(f + 3 * PS, 3, root_kvs, 4);
    kv p4[] = {{"k1", (const uint8_t *)"v1", 2, false}, {"k2", (const uint8_t *)"v2", 2, false}};
    leaf(f + 4 * PS, 4, p4, 2);
    /* Page 5: a branch over pages 6 and 7. */
    uint8_t *br = f + 5 * PS;
    page_hdr(br, 5, 0x01, 2);
    static const char *const bkeys[] = {"k", "m"};
    size_t data = 16 + 32;
    for (unsigned i = 0; i < 2; i++) {
        uint8_t *e = br + 16 + 16u * i;
        put32(e, (uint32_t)(br + data - e));
        put32(e + 4, 1);
        put64(e + 8, 6 + i);
        br[data++] = (uint8_t)bkeys[i][0];
    }
    kv p6[] = {{"k", (const uint8_t *)"1", 1, false}};
    leaf(f + 6 * PS, 6, p6, 1);
    kv p7[] = {{"m", (const uint8_t *)"2", 1, false}, {"n", inl, inl_len, true}};
    leaf(f + 7 * PS, 7, p7, 2);
}

typedef struct walker {
    const cairn__bolt *db;
    int depth;
    unsigned keys;
    cairn_error *err;
} walker;

static int each(void *ud, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, bool is_bucket)
{
    walker *w = ud;
    w->keys++;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < kl; i++)
        sink ^= k[i]; /* every byte handed out must be readable */
    for (size_t i = 0; i < vl; i++)
        sink ^= v[i];
    (void)sink;
    if (!is_bucket)
        return 0;
    if (w->depth >= 16)
        return cairn__err(w->err, CAIRN_E_CORRUPT, "nested deeper than 16");
    cairn__bolt_bucket b;
    int r = cairn__bolt_bucket_of(w->db, v, vl, &b, w->err);
    if (r < 0)
        return r;
    const uint8_t *gv;
    size_t gl;
    cairn__bolt_bucket sub;
    if ((r = cairn__bolt_get(&b, "k", &gv, &gl, w->err)) < 0 ||
        (r = cairn__bolt_sub(&b, "n", 0, &sub, w->err)) < 0)
        return r;
    w->depth++;
    r = cairn__bolt_each(&b, each, w, w->err);
    w->depth--;
    return r;
}

/* Open and walk: the number of keys met, or < 0 with err set. */
static int run(const uint8_t *data, size_t size, cairn_error *err)
{
    int fd = memfd_create("fuzz-bolt", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    if (size && write(fd, data, size) != (ssize_t)size)
        abort();
    cairn__bolt *db = NULL;
    int r = cairn__bolt_open(fd, "fuzz.db", (size_t)1 << 24, &db, err);
    close(fd);
    if (r < 0) {
        if (!err->message[0])
            abort(); /* an error must say why */
        return r;
    }
    cairn__bolt_bucket root;
    cairn__bolt_root(db, &root);
    walker w = {.db = db, .err = err};
    r = cairn__bolt_each(&root, each, &w, err);
    if (r < 0 && !err->message[0])
        abort();
    cairn__bolt_close(db);
    return r < 0 ? r : (int)w.keys;
}

const fuzz_seed *fuzz_seeds_get(void)
{
    static fuzz_seed seeds[3];
    for (int i = 0; i < 2; i++) {
        build(seed_file[i], i);
        cairn_error err = {0};
        /* root: a b c d; a: k1 k2; b: k m n; c: k; n: k */
        int n = run(seed_file[i], sizeof(seed_file[i]), &err);
        if (n != 11) {
            fprintf(stderr, "fuzz-bolt: seed %d reads as %d keys (11 expected): %s\n", i, n,
                    err.message);
            abort();
        }
        seeds[i] = (fuzz_seed){seed_file[i], sizeof(seed_file[i])};
    }
    seeds[2] = (fuzz_seed){NULL, 0};
    return seeds;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cairn_error err = {0};
    run(data, size, &err);
    return 0;
}
