/* containerd-private.h: what the containerd services share: the server's
 * context, and the generated protobuf-c messages under short names. */
#ifndef CAIRN_CONTAINERD_PRIVATE_H
#define CAIRN_CONTAINERD_PRIVATE_H

#include "containerd/grpc.h"
#include "cairn/containerd.h"

#include "content.pb-c.h"
#include "mount.pb-c.h"
#include "snapshots.pb-c.h"
#include "wkt.pb-c.h"

/* containerd's limits on labels (its labels.Validate): key and value
 * together at most this many bytes. */
#define CAIRN__CTRD_LABEL_MAX 4096
/* And all of one object's labels together (this server's own bound). */
#define CAIRN__CTRD_LABELS_MAX (64u << 10)

typedef struct cairn__ingest cairn__ingest;

typedef struct cairn__ctrd {
    cairn_state *st;
    cairn__ingest *ingests; /* content writes in progress, by ref */
    size_t n_ingests;
    cairn_containerd_stats stats;
} cairn__ctrd;

CAIRN_INTERNAL extern const cairn__grpc_method cairn__ctrd_snapshot_methods[];
CAIRN_INTERNAL extern const cairn__grpc_method cairn__ctrd_content_methods[];
CAIRN_INTERNAL void cairn__ctrd_content_free(cairn__ctrd *x);

/* Labels of a request, checked against the limits: 0 or InvalidArgument
 * (the call is then finished). */
typedef struct cairn__kv {
    const char *key, *value;
} cairn__kv;
CAIRN_INTERNAL bool cairn__ctrd_labels_ok(cairn__grpc_call *c, const char *what, size_t n,
                                          const cairn__kv *kv);
CAIRN_INTERNAL void cairn__ctrd_ts(Google__Protobuf__Timestamp *ts, int64_t ns);

#endif
