/* gc/graph.h: the object graph of a state (graph.c), walked by gc, du and
 * fsck: every blob and snapshot of every layer, snapshot parents, and what
 * manifests name. */
#ifndef CAIRN_GRAPH_H
#define CAIRN_GRAPH_H

#include "cache/cache-private.h"

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
    int32_t parent; /* snapshots: index of the parent, -1 none or not known */
    uint32_t refs;  /* gc: references from records and kept soft objects */
    uint32_t edges; /* manifests: first index into the graph's edge list */
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
/* "sha256:<64 hex>" -> 32 bytes; false when malformed. */
CAIRN_INTERNAL bool cairn__digest_raw(const char *digest, unsigned char raw[32]);
CAIRN_INTERNAL int32_t cairn__graph_find_raw(const cairn__graph *g, int kind,
                                             const unsigned char raw[32]);
/* Parse a manifest or index (JSON) and call fn for each digest it names
 * (config, layers, manifests, subject). Not JSON: returns CAIRN_E_FORMAT. */
CAIRN_INTERNAL int cairn__manifest_refs(const void *buf, size_t len,
                                        int (*fn)(void *ud, const char *digest), void *ud);
CAIRN_INTERNAL bool cairn__is_manifest_type(const char *media_type);
/* Set `mark` on what gc's hard roots keep (leases, images, volumes, active,
 * lowers, and objects younger than `grace` seconds; grace < 0: no youth). */
CAIRN_INTERNAL int cairn__graph_mark_roots(cairn_state *st, cairn__graph *g, int64_t grace,
                                           cairn_error *err);

#endif
