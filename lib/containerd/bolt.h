/* containerd/bolt.h: a read-only reader of bbolt database files.
 *
 * containerd keeps its metadata (meta.db) and its snapshotters' (metadata.db)
 * in bbolt files: a B+tree of pages with two meta pages at the front. This
 * reader loads a file into memory (never mapping it, so a file cut short
 * under us cannot fault), picks the newer of the two meta pages whose
 * checksum holds, and walks buckets through branch and leaf pages, nested
 * and inline buckets and overflow pages. It never writes the file.
 *
 * Every page id, offset and length read from the file is checked against
 * the file before it is used: a damaged file gives CAIRN_E_CORRUPT (or
 * CAIRN_E_FORMAT for what is no bbolt file at all) with a message naming the
 * page, never a crash; a tree that loops back on itself is caught.
 */
#ifndef CAIRN_CONTAINERD_BOLT_H
#define CAIRN_CONTAINERD_BOLT_H

#include "util/util.h"

typedef struct cairn__bolt cairn__bolt;

/* A bucket: its root page, or its inline page held in its parent's value.
 * Borrowed from the database; valid until cairn__bolt_close(). */
typedef struct cairn__bolt_bucket {
    const cairn__bolt *db;
    uint64_t root;           /* 0: inline */
    const uint8_t *inl;      /* the inline page, when root is 0 */
    size_t inl_len;
} cairn__bolt_bucket;

/* Read the bbolt file open at fd (from its start; the fd stays the
 * caller's) into memory and choose its meta page. `what` names the file in
 * messages. Files larger than `max` bytes are refused (-EFBIG). */
CAIRN_INTERNAL int cairn__bolt_open(int fd, const char *what, size_t max, cairn__bolt **out,
                                    cairn_error *err);
CAIRN_INTERNAL void cairn__bolt_close(cairn__bolt *db);
/* The transaction id of the chosen meta page, and its page size. */
CAIRN_INTERNAL uint64_t cairn__bolt_txid(const cairn__bolt *db);
CAIRN_INTERNAL uint32_t cairn__bolt_page_size(const cairn__bolt *db);

/* The root bucket (the one holding the top-level buckets). */
CAIRN_INTERNAL void cairn__bolt_root(const cairn__bolt *db, cairn__bolt_bucket *out);

/* One key of a bucket: a value, or a nested bucket (is_bucket). */
typedef int (*cairn__bolt_fn)(void *ud, const uint8_t *key, size_t klen, const uint8_t *val,
                              size_t vlen, bool is_bucket);
/* Each key of `b` in order. A non-zero return of fn stops the walk and is
 * returned. CAIRN_E_CORRUPT for damage met on the way. */
CAIRN_INTERNAL int cairn__bolt_each(const cairn__bolt_bucket *b, cairn__bolt_fn fn, void *ud,
                                    cairn_error *err);
/* The value of `key` in `b`: 1 found (*val, *vlen borrowed; NULL-safe), 0
 * missing or a bucket, < 0 damage. */
CAIRN_INTERNAL int cairn__bolt_get(const cairn__bolt_bucket *b, const char *key,
                                   const uint8_t **val, size_t *vlen, cairn_error *err);
/* The nested bucket `key` (a NUL-terminated name, or klen bytes when klen
 * is not 0): 1 found, 0 missing (or a plain value), < 0 damage. */
CAIRN_INTERNAL int cairn__bolt_sub(const cairn__bolt_bucket *b, const void *key, size_t klen,
                                   cairn__bolt_bucket *out, cairn_error *err);
/* The nested bucket of a value met by cairn__bolt_each (is_bucket). */
CAIRN_INTERNAL int cairn__bolt_bucket_of(const cairn__bolt *db, const uint8_t *val, size_t vlen,
                                         cairn__bolt_bucket *out, cairn_error *err);

#endif
