/* cairn/pool.h: a pool of states per module, in a remote, for a fleet that
 * provisions build engines (docs/POOL.md).
 *
 * A pool is a remote (file://, s3://, oci://) whose tags are modules: each
 * session checked in adds a member to its module's tag, never overwriting
 * another. Provisioning a session makes a fresh writable state stacked over
 * the states of a module and of its transitive dependencies, ranked (the
 * module first, then by distance, then newest first), taken from a bounded
 * cache of frozen states on the host, each pulled once per member digest
 * (members are immutable: a cache hit costs the module's listing only).
 * Checking in pushes the top of that stack, what the session added: its
 * cost grows with the delta, not with the state.
 *
 * Records of the pool itself live under tags starting with '_' (never a
 * module): "_pool" the descriptor (its format), "_lease" a lease per live
 * provision (the states it stacks on, an expiry), "_usage" the use counts
 * that gc folded from expired leases, "_retire" the states a compaction
 * folded, taken out once its grace is over. gc keeps every state an
 * unexpired lease names, and the compacted state that folded one.
 *
 * Host cache: opts->cache, else $CAIRN_POOL_CACHE, else
 * $XDG_CACHE_HOME/cairn/pool, else /var/cache/cairn/pool. Bounded by
 * opts->cache_max (else $CAIRN_POOL_CACHE_MAX, else 10 GiB): least
 * recently used entries that no live provision of the host stacks on are
 * evicted; when that is not enough, provision fails with -ENOSPC and
 * creates nothing.
 */
#ifndef CAIRN_POOL_H
#define CAIRN_POOL_H

#include <stdint.h>
#include <cairn/error.h>
#include <cairn/remote.h>
#include <cairn/state.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The pool format this library writes and the newest it reads. */
#define CAIRN_POOL_FORMAT 1
/* Module names: [a-z0-9][a-z0-9_-]*, at most 100 (a tag of every backend). */
#define CAIRN_POOL_MODULE_MAX 100

typedef struct cairn_pool_options {
    unsigned version;                  /* CAIRN_POOL_OPTIONS_VERSION */
    const cairn_remote_options *remote; /* transfers and credentials; NULL: defaults */
    const char *cache;                 /* the host cache directory (see above) */
    uint64_t cache_max;                /* bytes; 0: $CAIRN_POOL_CACHE_MAX or 10 GiB */
    int64_t lease_ttl;                 /* seconds a lease lives unrenewed; 0: 3600 */
    int64_t retire_grace;              /* seconds a member a compaction folded stays
                                        * before compact or gc takes it out; 0: 3600;
                                        * negative: none (at once) */
    cairn_progress_fn progress;        /* bytes fetched into the cache */
    void *progress_userdata;
} cairn_pool_options;
#define CAIRN_POOL_OPTIONS_VERSION 1
#define CAIRN_POOL_OPTIONS_INIT {.version = CAIRN_POOL_OPTIONS_VERSION}

/* Make a pool in the remote at `url`: its descriptor. Idempotent; a remote
 * holding a pool of a newer format is refused (CAIRN_E_NEWER). */
CAIRN_EXPORT int cairn_pool_init(const char *url, const cairn_pool_options *opts,
                                 cairn_error *err);

enum {
    CAIRN_POOL_STACK = 0, /* DEST stacks over the cached frozen states (nothing copied) */
    CAIRN_POOL_MERGE,     /* DEST holds their union, self-contained (objects linked) */
    CAIRN_POOL_OVERLAY,   /* the overlayfs mount composing them is described (and made) */
};

/* One lower of a provision, in rank order. */
typedef struct cairn_pool_lower {
    const char *module;
    const char *digest;   /* the member's manifest digest; "" for a merged tail */
    const char *path;     /* its frozen state in the host cache */
    unsigned distance;    /* 0: the module itself, 1: a direct dependency, ... */
    int fetched;          /* 1: pulled into the cache now, 0: it was there */
} cairn_pool_lower;
typedef void (*cairn_pool_lower_fn)(void *userdata, const cairn_pool_lower *l);

typedef struct cairn_pool_provision_options {
    unsigned version;            /* CAIRN_POOL_PROVISION_OPTIONS_VERSION */
    int mode;                    /* CAIRN_POOL_* */
    const char *const *deps;     /* direct dependencies of the module */
    size_t n_deps;
    const char *deps_file;       /* JSON: {"module": ["dependency", ...], ...}; may be NULL */
    unsigned max_lowers;         /* stack: past this many, the lowest are merged into one
                                  * (cached); 0: no bound */
    int mount;                   /* overlay: mount it at DEST (upper and work beside
                                  * DEST, named DEST.upper and DEST.work) */
    cairn_pool_lower_fn lower;   /* each lower, in rank order; may be NULL */
    void *lower_userdata;
} cairn_pool_provision_options;
#define CAIRN_POOL_PROVISION_OPTIONS_VERSION 1
#define CAIRN_POOL_PROVISION_OPTIONS_INIT {.version = CAIRN_POOL_PROVISION_OPTIONS_VERSION}

typedef struct cairn_pool_provision_result {
    char state_id[CAIRN_STATE_ID_LEN + 1]; /* DEST's (overlay without mount: "") */
    unsigned modules;     /* modules ranked (the module and its dependencies) */
    unsigned lowers;      /* states DEST reads through (merge: merged) */
    unsigned fetched;     /* members pulled into the cache now */
    unsigned cached;      /* members the cache had */
    int offline;          /* the remote was not reachable: provisioned from the cache */
    char lease[CAIRN_STATE_ID_LEN + 1]; /* the lease taken, or "" (offline) */
    char warning[CAIRN_ERROR_MESSAGE_MAX]; /* "" or what a person should know */
    char *overlay;        /* overlay: the mount(8) command line; malloc'd, or NULL */
} cairn_pool_provision_result;
/* Free what a result owns (overlay). Accepts NULL. */
CAIRN_EXPORT void cairn_pool_provision_result_clear(cairn_pool_provision_result *res);

/* Provision DEST (missing or an empty directory): a writable state over the
 * states of `module` and its transitive dependencies (opts->deps, and the
 * deps file's), ranked. An unknown module is a clean miss: DEST is an empty
 * state, res->lowers 0. A cycle in the dependencies is refused (-ELOOP,
 * naming it) before anything is written. With the remote down, the cache's
 * last listing of each module is used and res->offline set, with a
 * warning; a module never listed on this host is then missing from the
 * stack (said in the warning). On failure DEST is left as it was. */
CAIRN_EXPORT int cairn_pool_provision(const char *url, const char *module, const char *dest,
                                      const cairn_pool_options *opts,
                                      const cairn_pool_provision_options *popts,
                                      cairn_pool_provision_result *res, cairn_error *err);

/* Check the state at `state` (provisioned from the pool) in as a new state
 * of `module`: its own rows and the objects they name, less what the pool
 * holds (push --own). Its lease is renewed. out_digest (CAIRN_DIGEST_LEN +
 * 1, or NULL) receives the new member's digest. */
CAIRN_EXPORT int cairn_pool_checkin(const char *url, const char *module, const char *state,
                                    const cairn_pool_options *opts, cairn_remote_stats *stats,
                                    char *out_digest, cairn_error *err);

/* Renew the lease of the provision at `state` (another lease_ttl from now),
 * or release it (the states it named may then be collected). */
CAIRN_EXPORT int cairn_pool_lease_renew(const char *url, const char *state,
                                        const cairn_pool_options *opts, cairn_error *err);
CAIRN_EXPORT int cairn_pool_lease_release(const char *url, const char *state,
                                          const cairn_pool_options *opts, cairn_error *err);

/* Fold the delta states of `module` (NULL: of every module) into one each,
 * in the remote: no object moves. The folded states stay for
 * opts->retire_grace (a provision that listed one before still finds it;
 * none stacks both), then this or a later compact or gc takes them out;
 * *retired (may be NULL) counts those taken out by this run. Returns the
 * number of modules folded. */
CAIRN_EXPORT int cairn_pool_compact(const char *url, const char *module,
                                    const cairn_pool_options *opts, cairn_remote_stats *stats,
                                    uint64_t *retired, cairn_error *err);

typedef struct cairn_pool_gc_options {
    unsigned version;   /* CAIRN_POOL_GC_OPTIONS_VERSION */
    uint64_t max_size;  /* retire states, least recently used first, until the objects
                         * the remaining states name take at most this many bytes */
    int64_t grace;      /* objects no state names go once older than this (seconds) */
    int dry_run;
} cairn_pool_gc_options;
#define CAIRN_POOL_GC_OPTIONS_VERSION 1
#define CAIRN_POOL_GC_OPTIONS_INIT {CAIRN_POOL_GC_OPTIONS_VERSION, 0, 3600, 0}

typedef struct cairn_pool_gc_stats {
    uint64_t states;        /* states before */
    uint64_t retired;       /* states taken out */
    uint64_t kept_leased;   /* states over the size kept because a live lease names them */
    uint64_t size_before;   /* bytes the states named */
    uint64_t size_after;
    uint64_t objects_removed; /* objects no state names, removed */
    uint64_t bytes_removed;
    uint64_t leases_folded; /* expired leases folded into the use counts */
    uint64_t folded_retired; /* states compactions folded, their grace over, taken out */
} cairn_pool_gc_stats;

CAIRN_EXPORT int cairn_pool_gc(const char *url, const cairn_pool_options *opts,
                               const cairn_pool_gc_options *gc, cairn_pool_gc_stats *stats,
                               cairn_error *err);

typedef struct cairn_pool_entry {
    const char *module;
    const char *digest;
    const char *state_id;
    int64_t published;  /* unix seconds, 0 when the backend keeps no time (oci) */
    int64_t last_use;   /* unix seconds: the newest provision that stacked on it, else published */
    uint64_t hits;      /* provisions that stacked on it */
    uint64_t objects;
    uint64_t bytes;
    int leased;         /* an unexpired lease names it */
    int cached;         /* this host's cache holds it */
    const char *folded; /* compacted: the members it folded, comma separated, or "" */
} cairn_pool_entry;
typedef int (*cairn_pool_entry_fn)(void *userdata, const cairn_pool_entry *e);

/* The states of `module` (NULL: of every module), by module then age. */
CAIRN_EXPORT int cairn_pool_ls(const char *url, const char *module,
                               const cairn_pool_options *opts, cairn_pool_entry_fn fn,
                               void *userdata, cairn_error *err);

#ifdef __cplusplus
}
#endif
#endif
