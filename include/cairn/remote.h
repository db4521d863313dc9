/* cairn/remote.h: states shipped to remotes and back.
 *
 * A remote is an OCI image layout wherever it lives: a directory
 * (file:///abs/dir), an S3 bucket (s3://bucket/prefix) or a registry
 * (oci://host[:port]/repository). It keeps objects by digest and states
 * under tags. A tag names a set of states, never one slot: two pushes under
 * one tag at once both add a member, a pull of the tag merges every member
 * (the merge rules of docs/DESIGN.md), compact folds them into one.
 *
 * A pushed state is an OCI artifact: an image manifest (an image index of
 * manifests when it names more objects than one manifest holds, so no
 * manifest exceeds 4 MiB) whose config is a small JSON (state id, format,
 * parents), whose first layer is the state's metadata database frozen as
 * one SQLite file, and whose other layers are every object it names: blobs
 * as themselves, snapshots as layer tarballs whose DiffID is the
 * snapshot's (zstd unless asked otherwise).
 *
 * Only what is missing moves: a push checks which objects the remote holds
 * (in batches) and sends the others; a pull fetches only objects neither
 * the state nor its lowers hold. Every byte fetched is hashed against its
 * name before any row names it; wrong bytes are refused (CAIRN_E_MISMATCH)
 * and nothing of them is stored. A state is published last, after every
 * object it names is stored: an interrupted push leaves no visible state,
 * and run again it sends what is still missing.
 *
 * Remotes are configured by name in the state (local rows, never merged,
 * never pushed); no credential is ever stored: each backend takes its own
 * from the environment. Wherever a remote is asked for, a URL works too.
 */
#ifndef CAIRN_REMOTE_H
#define CAIRN_REMOTE_H

#include <stdint.h>
#include <cairn/error.h>
#include <cairn/layer.h>
#include <cairn/state.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_REMOTE_NAME_MAX 64
#define CAIRN_REMOTE_URL_MAX  2048

/* Configure a remote: name ([a-z0-9][a-z0-9._-]*, at most 64) -> URL.
 * A URL with credentials in it (user:password@) is refused. -EEXIST when
 * the name is taken by another URL. */
CAIRN_EXPORT int cairn_remote_add(cairn_state *st, const char *name, const char *url,
                                  cairn_error *err);
/* -ENOENT when no such remote. */
CAIRN_EXPORT int cairn_remote_remove(cairn_state *st, const char *name, cairn_error *err);
typedef int (*cairn_remote_fn)(void *userdata, const char *name, const char *url);
/* The configured remotes, by name. */
CAIRN_EXPORT int cairn_remote_list(cairn_state *st, cairn_remote_fn fn, void *userdata,
                                   cairn_error *err);
/* The URL of a remote name, or `remote` itself when it is a URL (st may
 * then be NULL). buf: CAIRN_REMOTE_URL_MAX + 1 bytes. */
CAIRN_EXPORT int cairn_remote_url(cairn_state *st, const char *remote, char *buf, size_t size,
                                  cairn_error *err);

typedef struct cairn_remote_options {
    unsigned version;            /* CAIRN_REMOTE_OPTIONS_VERSION */
    unsigned jobs;               /* objects moved at once (push, pull: threads, each with
                                  * its own connection) and existence checks; 0: 8 */
    int insecure;                /* oci: plain http to a host that is not loopback */
    const char *region;          /* s3 */
    const char *endpoint;        /* s3: overrides AWS_ENDPOINT_URL */
    const char *auth_file;       /* oci: overrides REGISTRY_AUTH_FILE */
    int own;                     /* push: this state's own rows, not the union with its
                                  * lowers (snapshots it builds on are carried along) */
    int compression;             /* push: snapshots' tarballs, CAIRN_COMPRESSION_* (layer.h);
                                  * 0: zstd */
    unsigned objects_per_manifest; /* push, compact: 0 the default (8192); fewer chunks a
                                    * big state into more manifests under an index */
    cairn_progress_fn progress;  /* bytes moved of the bytes to move */
    void *progress_userdata;
} cairn_remote_options;
#define CAIRN_REMOTE_OPTIONS_VERSION 1
#define CAIRN_REMOTE_OPTIONS_INIT {.version = CAIRN_REMOTE_OPTIONS_VERSION}

typedef struct cairn_remote_stats {
    uint64_t states;          /* push: 1; pull: members merged; compact: members folded;
                               * gc: states removed */
    uint64_t objects;         /* objects the states name (blobs and snapshots) */
    uint64_t objects_moved;   /* push: sent; pull: fetched; gc: blobs removed */
    uint64_t bytes_moved;
    uint64_t objects_skipped; /* already on the other side */
    uint64_t bytes_skipped;
    uint64_t meta_bytes;      /* databases, configs and manifests moved */
    uint64_t rows;            /* pull: rows merged into the state */
} cairn_remote_stats;

/* Push the state (its union with its lowers, or with opts->own its own
 * rows) to `remote` under `tag`. out_digest (CAIRN_DIGEST_LEN + 1, or NULL)
 * receives the published manifest's digest, the member's name. */
CAIRN_EXPORT int cairn_remote_push(cairn_state *st, const char *remote, const char *tag,
                                   const cairn_remote_options *opts, cairn_remote_stats *stats,
                                   char *out_digest, cairn_error *err);

/* Pull every member of `tag` into the state (eager): the objects it lacks
 * are fetched and verified, then the members' rows merged into it. */
CAIRN_EXPORT int cairn_remote_pull(cairn_state *st, const char *remote, const char *tag,
                                   const cairn_remote_options *opts, cairn_remote_stats *stats,
                                   cairn_error *err);

/* Pull `tag` lazily: each member becomes a lower of the state (its
 * `lowers` file) and nothing but metadata is fetched: the members'
 * manifests, configs and databases, each verified. A blob is fetched on
 * its first read, a snapshot on its first mount, checkout or export, into
 * the lower's directory in `cache_dir`, shared by the states of the
 * machine that pull the same member; each byte is hashed against its name
 * before the object's file appears, and a remote that is down or lies
 * fails that read (naming the remote and the object), storing nothing.
 * Lookups answer as after an eager pull (the rules of stacking).
 * cache_dir NULL: $CAIRN_CACHE_DIR, else $XDG_CACHE_HOME/cairn, else
 * ~/.cache/cairn. The cache's lowers must stay while a state stacks them
 * (cairn_remote_cache_gc removes fetched objects, never a lower). stats:
 * states = members stacked, objects = objects they name, meta_bytes. */
CAIRN_EXPORT int cairn_remote_pull_lazy(cairn_state *st, const char *remote, const char *tag,
                                        const cairn_remote_options *opts, const char *cache_dir,
                                        cairn_remote_stats *stats, cairn_error *err);

/* Bound the cache of lazy lowers (cache_dir as above) to max_bytes: the
 * objects fetched longest ago are removed first (a later read fetches them
 * again); a snapshot that an overlay mount reads is kept, and so is every
 * lower's metadata. Staging older than an hour is removed. stats->states:
 * lowers in the cache; objects: objects fetched; objects_moved /
 * bytes_moved: removed (or, dry_run, that would be); bytes_skipped: what
 * stays. */
CAIRN_EXPORT int cairn_remote_cache_gc(const char *cache_dir, uint64_t max_bytes, int dry_run,
                                       cairn_remote_stats *stats, cairn_error *err);

/* Give the cache (cache_dir as above) a standing bound of max_bytes (0:
 * none): from then on every process that fetches into it collects it as
 * cairn_remote_cache_gc() does, at its first fetch and after each sixteenth
 * of the bound it fetched, so the cache stays within about the bound (a
 * sixteenth of it over, at most, a fetching process). $CAIRN_CACHE_MAX
 * (bytes) overrides it for a process. */
CAIRN_EXPORT int cairn_remote_cache_bound(const char *cache_dir, uint64_t max_bytes,
                                          cairn_error *err);

typedef struct cairn_remote_state {
    const char *tag;
    const char *digest;   /* the manifest's: the member's name */
    const char *state_id; /* the state that was pushed */
    int64_t time;         /* published, unix seconds */
    uint64_t objects;     /* objects it names */
    uint64_t bytes;       /* their bytes, and the metadata's */
    unsigned chunks;      /* manifests (1 unless chunked under an index) */
    const char *parents;  /* compact: the members it folded, comma separated; or "" */
} cairn_remote_state;
typedef int (*cairn_remote_state_fn)(void *userdata, const cairn_remote_state *s);
/* The states of `tag` (NULL: of every tag), by tag then time. st may be
 * NULL when `remote` is a URL. */
CAIRN_EXPORT int cairn_remote_states(cairn_state *st, const char *remote, const char *tag,
                                     const cairn_remote_options *opts, cairn_remote_state_fn fn,
                                     void *userdata, cairn_error *err);

/* Fold the members of `tag` into one state, in the remote: their databases
 * are fetched, merged and published as one new member naming the union of
 * their objects, then the old members are taken out. No object is fetched
 * or sent (stats->bytes_moved is 0; meta_bytes counts what moved). */
CAIRN_EXPORT int cairn_remote_compact(cairn_state *st, const char *remote, const char *tag,
                                      const cairn_remote_options *opts,
                                      cairn_remote_stats *stats, char *out_digest,
                                      cairn_error *err);

typedef struct cairn_remote_gc_options {
    unsigned version;    /* CAIRN_REMOTE_GC_OPTIONS_VERSION */
    int keep;            /* keep the newest `keep` states of each tag (< 0: keep all) */
    int64_t older_than;  /* and remove only states older than this (seconds; 0: any age) */
    int64_t grace;       /* objects no state names are removed once older than this
                          * (seconds), so a push in flight keeps what it sent */
    int dry_run;         /* count, remove nothing */
} cairn_remote_gc_options;
#define CAIRN_REMOTE_GC_OPTIONS_VERSION 1
#define CAIRN_REMOTE_GC_OPTIONS_INIT {CAIRN_REMOTE_GC_OPTIONS_VERSION, -1, 0, 3600, 0}

/* Remove states by the policy, then the objects no remaining state names
 * and older than the grace period. A state naming an object that is missing
 * is never left behind by gc: objects are removed only when no state listed
 * after the removal names them. stats->states: states removed;
 * objects_moved / bytes_moved: blobs removed. */
CAIRN_EXPORT int cairn_remote_gc(cairn_state *st, const char *remote,
                                 const cairn_remote_options *opts,
                                 const cairn_remote_gc_options *gc, cairn_remote_stats *stats,
                                 cairn_error *err);

#ifdef __cplusplus
}
#endif
#endif
