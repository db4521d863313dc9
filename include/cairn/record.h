/* cairn/record.h: the build cache's records: cache keys, their results, and
 * the links between keys.
 *
 * The model is a build engine's cache key storage. A cache key is a digest
 * ("sha256:<hex>") that the engine computes from an operation and its inputs.
 * A key has results: each a committed snapshot (by chain id) or a blob (by
 * digest), with the time it was recorded. A key links to child keys:
 * (parent key, input index, output index, op digest, selector digest) ->
 * child key, so an engine can walk from a known key to the keys of the
 * operations that consumed it.
 *
 * Rules:
 * - Publish last: a result is recorded only when its snapshot or blob is
 *   there (cairn_record_add_result() checks, under the state's lock).
 * - Read the same way: a result whose snapshot or blob is gone is a miss, not
 *   an error. Walks skip it; cairn_record_load() returns -ENOENT. (An object
 *   of a lazy lower not fetched yet is not gone: it is fetched when read.)
 * - Lookups and walks see the union of the state and its lowers; writes go to
 *   the state itself. What a lower holds cannot be removed (it is read-only).
 * - Loading a result marks it used (last use time, hit count) for this state;
 *   garbage collection removes the least recently used results first.
 */
#ifndef CAIRN_RECORD_H
#define CAIRN_RECORD_H

#include <stdint.h>
#include <cairn/error.h>
#include <cairn/state.h>
#include <cairn/store.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cairn_result_kind {
    CAIRN_RESULT_SNAPSHOT = 1, /* a committed snapshot, named by its chain id */
    CAIRN_RESULT_BLOB = 2,     /* a blob of the content store */
} cairn_result_kind;

/* "snapshot" or "blob" (or "?" for an unknown value). */
CAIRN_EXPORT const char *cairn_result_kind_name(cairn_result_kind kind);
/* Parse "snapshot" / "blob"; -EINVAL otherwise. */
CAIRN_EXPORT int cairn_result_kind_parse(const char *name, cairn_result_kind *out);

typedef struct cairn_record_result {
    char key[CAIRN_DIGEST_LEN + 1];
    char result[CAIRN_DIGEST_LEN + 1]; /* chain id or blob digest */
    cairn_result_kind kind;
    int64_t created;   /* unix seconds, when recorded */
    int64_t last_used; /* unix seconds, 0 when never loaded (max over states) */
    uint64_t hits;     /* loads, summed over the states that recorded them */
    int lower;         /* 0: recorded in this state; n > 0: in the n-th lower */
} cairn_record_result;

/* A link's label: which input of which op the parent key fed, and how. */
typedef struct cairn_record_link {
    unsigned input;                      /* input index of the child's op */
    unsigned output;                     /* output index of the parent's op */
    char op[CAIRN_DIGEST_LEN + 1];       /* digest of the child's operation */
    char selector[CAIRN_DIGEST_LEN + 1]; /* digest of a selector, or "" for none */
} cairn_record_link;

/* Record `result` (of `kind`) for `key`. `created` is the recording time in
 * unix seconds, 0 for now. Recording a pair that is there already succeeds
 * and changes nothing but the result's last use. Fails with -ENOENT when the
 * snapshot or blob is not there (publish it first). Returns 1 when the pair
 * is new, 0 when it was there. */
CAIRN_EXPORT int cairn_record_add_result(cairn_state *st, const char *key, cairn_result_kind kind,
                                         const char *result, int64_t created, cairn_error *err);

/* Call fn for each present result of `key`, newest first (by created, then
 * result). A non-zero return from fn stops the walk and is returned. */
typedef int (*cairn_record_result_fn)(void *userdata, const cairn_record_result *res);
CAIRN_EXPORT int cairn_record_results(cairn_state *st, const char *key, cairn_record_result_fn fn,
                                      void *userdata, cairn_error *err);

/* Look up one result of `key` and mark it used (in this state, unless the
 * state is read-only). `result` may be NULL: the newest present result.
 * -ENOENT (a miss) when there is no such result or its object is gone. */
CAIRN_EXPORT int cairn_record_load(cairn_state *st, const char *key, const char *result,
                                   cairn_record_result *out, cairn_error *err);

/* Forget `result` under every key of this state that names it, then forget
 * the links to keys left with no result and no link (and so on up the
 * parents). Returns the number of (key, result) pairs removed. The object
 * itself is left to garbage collection. */
CAIRN_EXPORT int cairn_record_release(cairn_state *st, const char *result, cairn_error *err);

/* Forget `key`: its results and its links in both directions, in this
 * state; then prune the parents' branches as cairn_record_release() does.
 * Returns the number of rows removed; -ENOENT when this state holds nothing
 * for the key (-EROFS when only a lower does). */
CAIRN_EXPORT int cairn_record_remove(cairn_state *st, const char *key, cairn_error *err);

/* Link `parent` to `child`. Returns 1 when new, 0 when there already. */
CAIRN_EXPORT int cairn_record_add_link(cairn_state *st, const char *parent,
                                       const cairn_record_link *link, const char *child,
                                       cairn_error *err);

/* Call fn(child, link) for each link from `parent`; with `link` not NULL,
 * only the children reached through exactly that link. Sorted by child. */
typedef int (*cairn_record_link_fn)(void *userdata, const char *key,
                                    const cairn_record_link *link);
CAIRN_EXPORT int cairn_record_links(cairn_state *st, const char *parent,
                                    const cairn_record_link *link, cairn_record_link_fn fn,
                                    void *userdata, cairn_error *err);

/* 1 when parent -link-> child is recorded, 0 when not. */
CAIRN_EXPORT int cairn_record_has_link(cairn_state *st, const char *parent,
                                       const cairn_record_link *link, const char *child,
                                       cairn_error *err);

/* Call fn(parent, link) for each link into `child`. */
CAIRN_EXPORT int cairn_record_backlinks(cairn_state *st, const char *child,
                                        cairn_record_link_fn fn, void *userdata,
                                        cairn_error *err);

/* Call fn(key) for each key that names `result` (present or not). */
typedef int (*cairn_record_key_fn)(void *userdata, const char *key);
CAIRN_EXPORT int cairn_record_keys_by_result(cairn_state *st, const char *result,
                                             cairn_record_key_fn fn, void *userdata,
                                             cairn_error *err);

/* Call fn(key) for every key that has a result or a link, sorted. */
CAIRN_EXPORT int cairn_record_walk_keys(cairn_state *st, cairn_record_key_fn fn, void *userdata,
                                        cairn_error *err);

/* 1 when `key` has a result or a link to a child, 0 when not. */
CAIRN_EXPORT int cairn_record_exists(cairn_state *st, const char *key, cairn_error *err);

/* Call fn for each result of each key (present or not: `present` says),
 * sorted by key then result; the listing behind `cairn record ls`. */
typedef int (*cairn_record_list_fn)(void *userdata, const cairn_record_result *res, int present);
CAIRN_EXPORT int cairn_record_list(cairn_state *st, cairn_record_list_fn fn, void *userdata,
                                   cairn_error *err);

#ifdef __cplusplus
}
#endif
#endif
