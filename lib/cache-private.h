/* cache-private.h: what the build cache's files share (records, leases,
 * volumes, gc, du, their fsck checkers). */
#ifndef CAIRN_CACHE_PRIVATE_H
#define CAIRN_CACHE_PRIVATE_H

#include "cairn-private.h"
#include "fsck-private.h"

#include "cairn/volume.h"

/* Usage rows name a blob or a snapshot by its digest or chain id alone (as
 * the snapshot code does; a blob and a snapshot of the same digest, an
 * uncompressed base layer, share their row), anything else "<kind>:<name>"
 * ("volume:<name>"). */
#define CAIRN__USAGE_NAME_MAX (16 + 256)
CAIRN_INTERNAL int cairn__usage_name(char *out, size_t size, const char *kind, const char *name);
/* Mark an object used now in this state (last_used = max(old, now),
 * hits + `hits`). Writes layer 0 in its own transaction (or the caller's).
 * A read-only state is left alone (returns 0). */
CAIRN_INTERNAL int cairn__usage_mark(cairn_state *st, const char *kind, const char *name,
                                      unsigned hits, cairn_error *err);
/* The merged usage of an object: last_used = max over states and layers,
 * hits = sum over states of the max seen for that state. */
CAIRN_INTERNAL int cairn__usage_get(cairn_state *st, const char *kind, const char *name,
                                    int64_t *last_used, uint64_t *hits, cairn_error *err);

/* Is the object there: a row in some layer and its file or directory in
 * that layer's root? 1 yes, 0 no, < 0 error. *layer (may be NULL) gets the
 * topmost layer that holds it. `kind` is "blob" or "snapshot". */
CAIRN_INTERNAL int cairn__object_present(cairn_state *st, const char *kind, const char *name,
                                         int *layer, cairn_error *err);

/* Prune the branches of `keys` (n of them) in layer 0, inside the caller's
 * transaction: a key left with no result and no link to a child (in any
 * layer) loses the links into it, and its parents are pruned the same way.
 * Returns the number of links removed. */
CAIRN_INTERNAL int cairn__record_prune(cairn_state *st, const char *const *keys, size_t n,
                                       cairn_error *err);

/* A lease is live when it never expires (expires == 0) or expires after now. */
#define CAIRN__LEASE_LIVE_SQL "(expires = 0 OR expires > ?)"

/* ---- the object graph (gc.c), shared with du.c ------------------------ */

enum { CAIRN__OBJ_BLOB = 0, CAIRN__OBJ_SNAPSHOT = 1 };

typedef struct cairn__obj {
    unsigned char raw[32]; /* the digest / chain id's bytes */
    uint8_t kind;          /* CAIRN__OBJ_* */
    uint8_t mark;          /* gc: 1 kept by a hard root; du: scratch */
    uint8_t in0;           /* 1: this state (layer 0) holds a row for it */
    uint8_t lower;         /* 1: some lower holds a row for it */
    uint8_t sibling;       /* 1: a lower side by side in db/ names it (its file is the lower's) */
    uint8_t manifest;      /* 1: a blob whose media type is a manifest or an index */
    uint8_t gone;          /* gc: chosen for removal */
    uint8_t pad;
    int32_t parent;        /* snapshots: index of the parent, -1 none or not known */
    uint32_t refs;         /* gc: references from records and kept soft objects */
    uint32_t edges;        /* manifests: first index into the graph's edge list */
    uint32_t n_edges;
    uint64_t size;
    int64_t created;
    int64_t last_used;
} cairn__obj;

typedef struct cairn__graph {
    cairn__obj *objs;
    size_t n, cap;
    uint32_t *slots; /* open addressing: index + 1, 0 empty */
    size_t n_slots;
    uint32_t *edges; /* manifests' referenced objects */
    size_t n_edges_used, cap_edges;
} cairn__graph;

CAIRN_INTERNAL void cairn__graph_free(cairn__graph *g);
/* Index of (kind, digest) or -1. */
CAIRN_INTERNAL int32_t cairn__graph_find(const cairn__graph *g, int kind, const char *digest);
/* Load every blob and snapshot of every layer, their parents and the blobs
 * that manifests and indexes name (parsed), and the usage times. */
CAIRN_INTERNAL int cairn__graph_load(cairn_state *st, cairn__graph *g, cairn_error *err);
CAIRN_INTERNAL void cairn__graph_digest(const cairn__obj *o, char out[CAIRN_DIGEST_LEN + 1]);
/* Parse a manifest or index (JSON) and call fn for each digest it names
 * (config, layers, manifests, subject). Not JSON: returns CAIRN_E_FORMAT. */
CAIRN_INTERNAL int cairn__manifest_refs(const void *buf, size_t len,
                                        int (*fn)(void *ud, const char *digest), void *ud);
CAIRN_INTERNAL bool cairn__is_manifest_type(const char *media_type);
/* Set `mark` on what gc's hard roots keep (leases, images, volumes, active,
 * lowers, and objects younger than `grace` seconds; grace < 0: no youth). */
CAIRN_INTERNAL int cairn__graph_mark_roots(cairn_state *st, cairn__graph *g, int64_t grace,
                                           cairn_error *err);

/* fsck checkers (lib/fsck.c lists them). */
CAIRN_INTERNAL int cairn__fsck_records(cairn__fsck *f, cairn_error *err);
CAIRN_INTERNAL int cairn__fsck_leases(cairn__fsck *f, cairn_error *err);
CAIRN_INTERNAL int cairn__fsck_volumes(cairn__fsck *f, cairn_error *err);

#endif
