/* bolt.c: a read-only reader of bbolt's file format (containerd/bolt.h).
 *
 * The format, as bbolt writes it (all integers little-endian):
 *   - the file is an array of pages of one size; page n starts at n * size;
 *   - a page starts with a 16-byte header: id u64, flags u16, count u16,
 *     overflow u32; a page whose data does not fit spans `overflow` more
 *     pages after it;
 *   - pages 0 and 1 are meta pages (flag 0x04): after the header, magic u32
 *     (0xED0CDAED), version u32 (2), page size u32, flags u32, the root
 *     bucket (root page u64, sequence u64), freelist page u64, the high
 *     water mark (pages in use) u64, txid u64, then an FNV-1a 64 checksum of
 *     the 56 bytes before it. A commit writes the meta page txid % 2, so
 *     the valid one with the higher txid is the current state and the other
 *     the one before;
 *   - branch pages (0x01) hold `count` elements of 16 bytes: key offset u32
 *     (from the element), key size u32, child page u64;
 *   - leaf pages (0x02) hold `count` elements of 16 bytes: flags u32 (0x01:
 *     the value is a nested bucket), key offset u32 (from the element), key
 *     size u32, value size u32; the value follows the key;
 *   - a nested bucket's value is its header (root page u64, sequence u64);
 *     root 0 means an inline bucket, whose leaf page follows the header in
 *     the value itself.
 *
 * Invariants of this reader: nothing read from the file is trusted. A page
 * id must lie in [2, high water mark) and its span inside the file; its
 * header must carry its own id (a page elsewhere is not this page) and a
 * branch or leaf flag; every element, key and value must lie inside its
 * page. A walk marks the pages it has entered and refuses one met twice (a
 * cycle, or two parents sharing a child) and any tree deeper than
 * DEPTH_MAX, so damage of any shape ends in an error.
 */
#include "containerd/bolt.h"

#include <endian.h>
#include <sys/stat.h>

#define MAGIC     0xED0CDAEDu
#define VERSION   2u
#define HDR       16u
#define ELEM      16u
#define META_SUM  56u /* bytes of a meta covered by its checksum */
#define DEPTH_MAX 64

enum { F_BRANCH = 0x01, F_LEAF = 0x02, F_META = 0x04, F_BUCKET = 0x01 };

typedef struct meta {
    uint32_t page_size;
    uint64_t root, freelist, pgid, txid;
} meta;

struct cairn__bolt {
    uint8_t *buf;
    size_t len;
    char *what;
    meta m;
};

static uint16_t le16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return le16toh(v);
}
static uint32_t le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}
static uint64_t le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
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

/* The meta page at byte `off`: 0 valid (*out filled), else a reason. */
static const char *meta_read(const cairn__bolt *db, uint64_t off, meta *out)
{
    if (off + HDR + META_SUM + 8 > db->len)
        return "past the end of the file";
    const uint8_t *p = db->buf + off;
    if (!(le16(p + 8) & F_META))
        return "not a meta page";
    const uint8_t *m = p + HDR;
    if (le32(m) != MAGIC)
        return "bad magic";
    if (le32(m + 4) != VERSION)
        return "unsupported version";
    if (le64(m + META_SUM) != fnv1a64(m, META_SUM))
        return "bad checksum";
    uint32_t ps = le32(m + 8);
    if (ps < 512 || ps > (1u << 20) || (ps & (ps - 1)))
        return "bad page size";
    meta r = {.page_size = ps, .root = le64(m + 16), .freelist = le64(m + 32),
              .pgid = le64(m + 40), .txid = le64(m + 48)};
    if (r.pgid < 4 || r.pgid > db->len / ps)
        return "its pages run past the end of the file (truncated?)";
    if (r.root < 2 || r.root >= r.pgid)
        return "its root page is out of range";
    *out = r;
    return NULL;
}

static int choose_meta(cairn__bolt *db, cairn_error *err)
{
    meta m0 = {0}, m1 = {0};
    const char *why0 = meta_read(db, 0, &m0), *why1 = "not read";
    if (!why0) {
        why1 = meta_read(db, m0.page_size, &m1);
        if (!why1 && m1.page_size != m0.page_size)
            why1 = "its page size differs from the first's";
    } else {
        /* The first meta page is damaged: its page size is unknown, so
         * look for the second where each possible size would put it. */
        const char *shown = NULL; /* the reason where a meta page was, else at 4096 */
        for (uint32_t ps = 512; ps <= (1u << 16); ps <<= 1) {
            why1 = meta_read(db, ps, &m1);
            if (!why1 && m1.page_size == ps)
                break;
            why1 = why1 ? why1 : "its page size is not where it lies";
            if ((ps == 4096 && !shown) ||
                (ps + HDR + 16 <= db->len && le16(db->buf + ps + 8) & F_META &&
                 le32(db->buf + ps + HDR) == MAGIC))
                shown = why1;
        }
        if (why1 && shown)
            why1 = shown;
    }
    if (why0 && why1) {
        int code = CAIRN_E_FORMAT;
        if (db->len >= HDR + 4 && le32(db->buf + HDR) == MAGIC)
            code = CAIRN_E_CORRUPT; /* a bbolt file, damaged */
        return cairn__err(err, code, "%s: not a usable bbolt file: meta page 0: %s; meta page 1: %s",
                          db->what, why0, why1);
    }
    db->m = why0 ? m1 : why1 ? m0 : (m1.txid > m0.txid ? m1 : m0);
    return 0;
}

int cairn__bolt_open(int fd, const char *what, size_t max, cairn__bolt **out, cairn_error *err)
{
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return cairn__err(err, -errno, "%s: %m", what);
    if (!S_ISREG(sb.st_mode))
        return cairn__err(err, CAIRN_E_FORMAT, "%s: not a regular file", what);
    if ((uint64_t)sb.st_size > max)
        return cairn__err(err, -EFBIG, "%s: %lld bytes, more than the %zu this reader loads", what,
                          (long long)sb.st_size, max);
    cairn__bolt *db = calloc(1, sizeof(*db));
    if (!db || !(db->what = strdup(what)) || !(db->buf = malloc(sb.st_size ? sb.st_size : 1))) {
        cairn__bolt_close(db);
        return cairn__err(err, -ENOMEM, "%s: out of memory", what);
    }
    ssize_t n = lseek(fd, 0, SEEK_SET) < 0 ? -errno : cairn__read_all(fd, db->buf, (size_t)sb.st_size);
    if (n < 0) {
        cairn__bolt_close(db);
        return cairn__err(err, (int)n, "%s: %m", what);
    }
    db->len = (size_t)n; /* shorter if it shrank under us: the checks below see that */
    int r = choose_meta(db, err);
    if (r < 0) {
        cairn__bolt_close(db);
        return r;
    }
    *out = db;
    return 0;
}

void cairn__bolt_close(cairn__bolt *db)
{
    if (!db)
        return;
    free(db->buf);
    free(db->what);
    free(db);
}

uint64_t cairn__bolt_txid(const cairn__bolt *db)
{
    return db->m.txid;
}
uint32_t cairn__bolt_page_size(const cairn__bolt *db)
{
    return db->m.page_size;
}

void cairn__bolt_root(const cairn__bolt *db, cairn__bolt_bucket *out)
{
    *out = (cairn__bolt_bucket){.db = db, .root = db->m.root};
}

/* ---- pages -------------------------------------------------------------- */

typedef struct page {
    const uint8_t *p;
    size_t len;
    uint16_t flags, count;
} page;

static int page_get(const cairn__bolt *db, uint64_t id, page *out, cairn_error *err)
{
    const meta *m = &db->m;
    if (id < 2 || id >= m->pgid)
        return cairn__err(err, CAIRN_E_CORRUPT, "%s: page %llu is out of range (pages 2 to %llu)",
                          db->what, (unsigned long long)id, (unsigned long long)(m->pgid - 1));
    const uint8_t *p = db->buf + id * m->page_size;
    uint32_t overflow = le32(p + 12);
    if (le64(p) != id)
        return cairn__err(err, CAIRN_E_CORRUPT, "%s: page %llu says it is page %llu", db->what,
                          (unsigned long long)id, (unsigned long long)le64(p));
    if ((uint64_t)overflow >= m->pgid - id)
        return cairn__err(err, CAIRN_E_CORRUPT, "%s: page %llu overflows %u pages past the last",
                          db->what, (unsigned long long)id, overflow);
    *out = (page){.p = p, .len = ((size_t)overflow + 1) * m->page_size, .flags = le16(p + 8),
                  .count = le16(p + 10)};
    return 0;
}

/* Check a tree page's shape: a branch or a leaf whose elements fit. */
static int page_check(const cairn__bolt *db, const page *pg, uint64_t id, cairn_error *err)
{
    if (!(pg->flags & (F_BRANCH | F_LEAF)) || (pg->flags & F_BRANCH && pg->flags & F_LEAF))
        return cairn__err(err, CAIRN_E_CORRUPT, "%s: page %llu is no branch or leaf (flags %#x)",
                          db->what, (unsigned long long)id, pg->flags);
    if (HDR + (uint64_t)pg->count * ELEM > pg->len)
        return cairn__err(err, CAIRN_E_CORRUPT, "%s: page %llu: %u elements do not fit in it",
                          db->what, (unsigned long long)id, pg->count);
    if (pg->flags & F_BRANCH && pg->count == 0)
        return cairn__err(err, CAIRN_E_CORRUPT, "%s: page %llu: an empty branch", db->what,
                          (unsigned long long)id);
    return 0;
}

/* Element i of a checked page: its key, value (leaf) or child (branch). */
typedef struct elem {
    const uint8_t *key, *val;
    size_t klen, vlen;
    uint32_t flags;
    uint64_t child;
} elem;

static int elem_get(const cairn__bolt *db, const page *pg, uint64_t id, unsigned i, elem *out,
                    cairn_error *err)
{
    size_t at = HDR + (size_t)i * ELEM;
    const uint8_t *e = pg->p + at;
    uint64_t koff, klen, vlen = 0;
    memset(out, 0, sizeof(*out));
    if (pg->flags & F_BRANCH) {
        koff = at + (uint64_t)le32(e);
        klen = le32(e + 4);
        out->child = le64(e + 8);
    } else {
        out->flags = le32(e);
        koff = at + (uint64_t)le32(e + 4);
        klen = le32(e + 8);
        vlen = le32(e + 12);
    }
    if (koff + klen + vlen > pg->len)
        return cairn__err(err, CAIRN_E_CORRUPT, "%s: page %llu: element %u lies past the page",
                          db->what, (unsigned long long)id, i);
    out->key = pg->p + koff;
    out->klen = klen;
    out->val = out->key + klen;
    out->vlen = vlen;
    return 0;
}

int cairn__bolt_bucket_of(const cairn__bolt *db, const uint8_t *val, size_t vlen,
                          cairn__bolt_bucket *out, cairn_error *err)
{
    if (vlen < 16)
        return cairn__err(err, CAIRN_E_CORRUPT, "%s: a bucket's header is %zu bytes", db->what,
                          vlen);
    uint64_t root = le64(val);
    *out = (cairn__bolt_bucket){.db = db, .root = root};
    if (root == 0) {
        out->inl = val + 16;
        out->inl_len = vlen - 16;
        if (out->inl_len < HDR)
            return cairn__err(err, CAIRN_E_CORRUPT, "%s: an inline bucket of %zu bytes", db->what,
                              out->inl_len);
    }
    return 0;
}

/* The top page of a bucket. */
static int bucket_top(const cairn__bolt_bucket *b, page *out, uint64_t *id, cairn_error *err)
{
    const cairn__bolt *db = b->db;
    if (b->root == 0) {
        *out = (page){.p = b->inl, .len = b->inl_len, .flags = le16(b->inl + 8),
                      .count = le16(b->inl + 10)};
        *id = 0;
        int r = page_check(db, out, 0, err);
        if (r < 0)
            return r;
        if (!(out->flags & F_LEAF))
            return cairn__err(err, CAIRN_E_CORRUPT, "%s: an inline bucket that is no leaf", db->what);
        return 0;
    }
    *id = b->root;
    int r = page_get(db, b->root, out, err);
    return r < 0 ? r : page_check(db, out, b->root, err);
}

/* ---- walks -------------------------------------------------------------- */

typedef struct walker {
    const cairn__bolt *db;
    uint8_t *seen; /* a bit a page */
    cairn__bolt_fn fn;
    void *ud;
    cairn_error *err;
} walker;

static int walk_page(walker *w, const page *pg, uint64_t id, int depth)
{
    const cairn__bolt *db = w->db;
    for (unsigned i = 0; i < pg->count; i++) {
        elem e;
        int r = elem_get(db, pg, id, i, &e, w->err);
        if (r < 0)
            return r;
        if (pg->flags & F_LEAF) {
            r = w->fn(w->ud, e.key, e.klen, e.val, e.vlen, e.flags & F_BUCKET);
            if (r != 0)
                return r;
            continue;
        }
        if (depth >= DEPTH_MAX)
            return cairn__err(w->err, CAIRN_E_CORRUPT, "%s: the tree under page %llu is deeper "
                              "than %d (a cycle?)", db->what, (unsigned long long)id, DEPTH_MAX);
        page child;
        r = page_get(db, e.child, &child, w->err);
        if (r < 0)
            return r;
        if (w->seen[e.child / 8] & (1u << (e.child % 8)))
            return cairn__err(w->err, CAIRN_E_CORRUPT, "%s: page %llu is reached twice (from "
                              "page %llu): a cycle", db->what, (unsigned long long)e.child,
                              (unsigned long long)id);
        w->seen[e.child / 8] |= (uint8_t)(1u << (e.child % 8));
        r = page_check(db, &child, e.child, w->err);
        if (r < 0)
            return r;
        r = walk_page(w, &child, e.child, depth + 1);
        if (r != 0)
            return r;
    }
    return 0;
}

int cairn__bolt_each(const cairn__bolt_bucket *b, cairn__bolt_fn fn, void *ud, cairn_error *err)
{
    page top;
    uint64_t id;
    int r = bucket_top(b, &top, &id, err);
    if (r < 0)
        return r;
    walker w = {.db = b->db, .fn = fn, .ud = ud, .err = err};
    w.seen = calloc(b->db->m.pgid / 8 + 1, 1);
    if (!w.seen)
        return cairn__err(err, -ENOMEM, "%s: out of memory", b->db->what);
    if (id)
        w.seen[id / 8] |= (uint8_t)(1u << (id % 8));
    r = walk_page(&w, &top, id, 0);
    free(w.seen);
    return r;
}

static int keycmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

/* The leaf element of `key` in b: 1 found, 0 not, < 0 damage. */
static int find(const cairn__bolt_bucket *b, const uint8_t *key, size_t klen, elem *out,
                cairn_error *err)
{
    const cairn__bolt *db = b->db;
    page pg;
    uint64_t id;
    int r = bucket_top(b, &pg, &id, err);
    if (r < 0)
        return r;
    for (int depth = 0;; depth++) {
        if (pg.flags & F_LEAF) {
            for (unsigned i = 0; i < pg.count; i++) {
                r = elem_get(db, &pg, id, i, out, err);
                if (r < 0)
                    return r;
                if (keycmp(out->key, out->klen, key, klen) == 0)
                    return 1;
            }
            return 0;
        }
        if (depth >= DEPTH_MAX)
            return cairn__err(err, CAIRN_E_CORRUPT, "%s: the tree under page %llu is deeper than "
                              "%d (a cycle?)", db->what, (unsigned long long)id, DEPTH_MAX);
        /* The last child whose first key is at most `key` (the first when
         * none is): where bbolt itself would look. */
        uint64_t next = 0;
        for (unsigned i = 0; i < pg.count; i++) {
            elem e;
            r = elem_get(db, &pg, id, i, &e, err);
            if (r < 0)
                return r;
            if (i > 0 && keycmp(e.key, e.klen, key, klen) > 0)
                break;
            next = e.child;
        }
        r = page_get(db, next, &pg, err);
        if (r < 0)
            return r;
        r = page_check(db, &pg, next, err);
        if (r < 0)
            return r;
        id = next;
    }
}

int cairn__bolt_get(const cairn__bolt_bucket *b, const char *key, const uint8_t **val, size_t *vlen,
                    cairn_error *err)
{
    elem e;
    int r = find(b, (const uint8_t *)key, strlen(key), &e, err);
    if (r <= 0 || e.flags & F_BUCKET)
        return r < 0 ? r : 0;
    *val = e.val;
    *vlen = e.vlen;
    return 1;
}

int cairn__bolt_sub(const cairn__bolt_bucket *b, const void *key, size_t klen,
                    cairn__bolt_bucket *out, cairn_error *err)
{
    elem e;
    int r = find(b, key, klen ? klen : strlen(key), &e, err);
    if (r <= 0 || !(e.flags & F_BUCKET))
        return r < 0 ? r : 0;
    r = cairn__bolt_bucket_of(b->db, e.val, e.vlen, out, err);
    return r < 0 ? r : 1;
}
