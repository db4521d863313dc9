/* cairn/gc.h: garbage collection and disk usage.
 *
 * Garbage collection removes from this state (never from a lower) the
 * blobs, snapshots, records, volume versions and expired leases that
 * nothing keeps. What keeps an object:
 *   - a live lease naming it (blobs, snapshots; records: the key's results;
 *     volumes: every version);
 *   - an image (its manifest, config and top snapshot);
 *   - a volume's current version; an active snapshot's parent;
 *   - a cache record (its result), unless the policy below removes the
 *     record;
 *   - a kept snapshot (its parent), a kept manifest or index (what it names);
 *   - a lower state (everything a lower holds or names is kept);
 *   - youth: an object created or used within the grace period (whole
 *     seconds, inclusive) is kept, so that a writer racing the collection
 *     cannot lose what it just wrote; and whatever is recorded, leased or
 *     used while a run is under way is kept by that run.
 *
 * The policy, like a build engine's cache pruning, removes records: with
 * keep_duration set, records whose result was not used for that long; with
 * max_used / min_free set, the least recently used records until this
 * state's objects take at most max_used bytes and the filesystem has at
 * least min_free bytes free, but never below `reserved` bytes. Without any
 * of them, records are kept and only what nothing keeps is removed.
 */
#ifndef CAIRN_GC_H
#define CAIRN_GC_H

#include <stdint.h>
#include <cairn/error.h>
#include <cairn/state.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_GC_GRACE_DEFAULT 600 /* seconds */
#define CAIRN_GC_GRACE_NONE (-1)   /* grace: no youth at all */

/* Zero (or negative) past `version` means the default: no grace field set is
 * CAIRN_GC_GRACE_DEFAULT, no policy field set keeps every record. */
typedef struct cairn_gc_options {
    unsigned version;      /* CAIRN_GC_OPTIONS_VERSION */
    int dry_run;           /* report what would be removed, remove nothing */
    int64_t grace;         /* seconds; 0: CAIRN_GC_GRACE_DEFAULT; < 0: none */
    int64_t keep_duration; /* seconds; 0: not set */
    int64_t max_used;      /* bytes; 0: not set (1 evicts every record not kept otherwise) */
    int64_t min_free;      /* bytes; 0: not set */
    int64_t reserved;      /* bytes; 0: not set */
    cairn_progress_fn progress; /* objects removed of those to remove, or NULL; a stop
                                 * leaves files no row names, the next gc's to remove */
    void *progress_userdata;
} cairn_gc_options;
#define CAIRN_GC_OPTIONS_VERSION 1
#define CAIRN_GC_OPTIONS_INIT {.version = CAIRN_GC_OPTIONS_VERSION}

typedef struct cairn_gc_item {
    const char *kind;   /* "blob", "snapshot", "record", "volume", "lease", "file" */
    const char *name;   /* digest, chain id, "key result", "name version", lease id, path */
    uint64_t size;      /* bytes freed (objects), 0 for rows */
    const char *reason; /* "unreferenced", "policy", "expired", "old version", "orphan file" */
} cairn_gc_item;
typedef void (*cairn_gc_fn)(void *userdata, const cairn_gc_item *item);

/* What a run removed (or, with dry_run, would remove; a dry run does not
 * count the links that pruning emptied keys would remove). */
typedef struct cairn_gc_stats {
    uint64_t blobs, snapshots, records, links, volume_versions, leases, files;
    uint64_t bytes_freed;
    uint64_t used_before; /* bytes of this state's objects before */
    uint64_t used_after;
    uint64_t kept_objects;
} cairn_gc_stats;

/* Collect. `fn` (may be NULL) is called for each thing removed (or that
 * would be, with dry_run), after it is removed. `stats` may be NULL. */
CAIRN_EXPORT int cairn_gc(cairn_state *st, const cairn_gc_options *opts, cairn_gc_fn fn,
                          void *userdata, cairn_gc_stats *stats, cairn_error *err);

/* ---- disk usage ------------------------------------------------------- */

typedef struct cairn_du_entry {
    const char *kind;  /* "image", "volume", "record" */
    const char *name;  /* image name, volume name, cache key */
    uint64_t size;     /* bytes of everything it keeps */
    uint64_t unique;   /* bytes only it keeps */
    uint64_t objects;  /* objects it keeps */
} cairn_du_entry;

typedef struct cairn_du_totals {
    cairn_count blobs, snapshots;   /* union of the state and its lowers */
    cairn_count own_blobs, own_snapshots; /* this state's own */
    uint64_t records, links, volumes, images, leases;
    uint64_t total;      /* bytes of all objects, each counted once */
    uint64_t reclaimable; /* bytes nothing keeps but records (or nothing at all) */
    uint64_t unreferenced; /* bytes nothing keeps */
} cairn_du_totals;

/* Usage: totals, then fn for each image, volume and record key, largest
 * first (by size, then name). `limit` > 0 caps the entries reported per
 * kind. */
typedef int (*cairn_du_fn)(void *userdata, const cairn_du_entry *entry);
CAIRN_EXPORT int cairn_du(cairn_state *st, unsigned limit, cairn_du_totals *totals,
                          cairn_du_fn fn, void *userdata, cairn_error *err);

#ifdef __cplusplus
}
#endif
#endif
