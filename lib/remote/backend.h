/* remote/backend.h: the backends of remotes (file://, s3://, oci://) behind
 * one vtable; remote.c (push, pull, states, compact, gc) is written against
 * it only, as libgit2's odb.c is against odb_loose.c and odb_pack.c.
 *
 * A remote is an OCI image layout wherever it lives:
 *   blobs/sha256/<hex>            every object: blobs, snapshot layer tarballs,
 *                                 state databases, configs, manifests
 *   states/<tag>/<manifest hex>   file and S3: one key per state published
 *                                 under <tag> (its bytes: the manifest)
 * A registry keeps blobs in its blob store and each state's manifest under a
 * tag of its own, "<tag>.<manifest hex, 16 digits>" (registries have no key
 * listing by prefix; tags/list filtered by the prefix is the set). So a tag
 * names a set of states, never one overwritten slot: two writers publishing
 * under one tag at once both add a member, and reading the tag merges them.
 *
 * Every backend:
 * - names objects by digest only; the caller verifies every byte it reads
 *   (blob_get streams into an fd, the caller hashes) and checks a blob it
 *   sends against its name before sending;
 * - publishes a state (state_put) only after the caller has stored every
 *   object it names: the backend stores nothing that names a missing object
 *   (a registry refuses such a manifest itself);
 * - retries what is worth retrying (5xx, 429, resets, timeouts) with backoff,
 *   never a 4xx but 429, and reports the server and its answer otherwise;
 * - never prints, logs or stores a credential.
 * Functions return 0 (or a count) or a negative code with `err` set, as the
 * rest of the library.
 */
#ifndef CAIRN_REMOTE_BACKEND_H
#define CAIRN_REMOTE_BACKEND_H

#include "core/core.h"

#include <cairn/remote.h>

typedef struct cairn__remote cairn__remote; /* a backend's own handle */

/* What opening a remote takes beside its URL. Strings may be NULL (the
 * backend's defaults: environment, ~/.aws/credentials, ~/.docker/config.json). */
typedef struct cairn__remote_conf {
    const char *url;
    unsigned jobs;         /* parallel transfers, 0: the default (8) */
    bool insecure;         /* plain http to a host that is not loopback */
    const char *region;    /* s3 */
    const char *endpoint;  /* s3: overrides AWS_ENDPOINT_URL */
    const char *auth_file; /* oci: overrides REGISTRY_AUTH_FILE */
} cairn__remote_conf;

/* Progress of a transfer of `size` bytes: `done` grows to size. */
typedef void (*cairn__remote_progress)(void *ud, uint64_t done);

typedef struct cairn__remote_ops {
    const char *scheme; /* "file", "s3", "oci" */
    /* Opening writes nothing: a remote that holds nothing yet (a missing
     * directory, an empty prefix) opens, lists no state and no blob, and
     * is laid out by the first write. remote.c lists a backend in its
     * backends[] (and the layer check's order) to reach it. */
    int (*open)(const cairn__remote_conf *conf, cairn__remote **out, cairn_error *err);
    void (*close)(cairn__remote *r);

    /* present[i] = 1 when digests[i] is stored, 0 when not, for n digests:
     * in batches and in parallel (HEAD or a listing, whichever is cheaper).
     * A push skips what is present and names it in a state published later:
     * a backend where it is cheap (file) refreshes a present blob's time, so
     * remote gc's grace period covers the push that relies on it. */
    int (*blobs_have)(cairn__remote *r, const char *const *digests, size_t n, uint8_t *present,
                      cairn_error *err);
    /* Store `size` bytes read from fd at offset 0 under digest (already
     * checked by the caller). Big blobs are uploaded in parts that a rerun
     * resumes (S3 multipart, registry chunked upload); `media_type` is for
     * backends that keep one (may be ""). A blob whose media type is an OCI
     * image manifest or index (the chunks of a big state) is one a registry
     * must store as a manifest by digest (PUT /manifests/<digest>), so that
     * the index naming it keeps its layers from the registry's own gc; file
     * and S3 store it as any blob. */
    int (*blob_put)(cairn__remote *r, const char *digest, int fd, uint64_t size,
                    const char *media_type, cairn__remote_progress fn, void *ud, cairn_error *err);
    /* Make every blob put through this handle stored and visible, when
     * the backend holds some back to sync them together (file); NULL for a
     * backend whose blob_put stores at once. A push calls it on each
     * handle that sent blobs before it publishes a state naming them. */
    int (*flush)(cairn__remote *r, cairn_error *err);
    /* Stream the bytes of digest into fd (from its current offset); the
     * caller hashes and refuses wrong bytes. -ENOENT when not stored. */
    int (*blob_get)(cairn__remote *r, const char *digest, int fd, cairn__remote_progress fn,
                    void *ud, cairn_error *err);
    /* Remove a blob (remote gc); missing is not an error. A registry that
     * does not allow deletes says so (-EOPNOTSUPP). */
    int (*blob_delete)(cairn__remote *r, const char *digest, cairn_error *err);
    /* Every stored blob, with its size and time (unix ns, 0 if unknown). */
    int (*blobs_list)(cairn__remote *r,
                      int (*fn)(void *ud, const char *digest, uint64_t size, int64_t mtime),
                      void *ud, cairn_error *err);

    /* Publish a state: its manifest (OCI image manifest JSON, at most 4 MiB)
     * as a member of `tag`. Idempotent. */
    int (*state_put)(cairn__remote *r, const char *tag, const char *manifest_digest,
                     const void *buf, size_t len, cairn_error *err);
    /* The members of `tag` (tag NULL: of every tag): fn(tag, manifest digest). */
    int (*states_list)(cairn__remote *r, const char *tag,
                       int (*fn)(void *ud, const char *tag, const char *manifest_digest,
                                 int64_t mtime),
                       void *ud, cairn_error *err);
    /* The manifest's bytes (malloc'd; the caller verifies the digest). */
    int (*state_get)(cairn__remote *r, const char *tag, const char *manifest_digest, char **buf,
                     size_t *len, cairn_error *err);
    /* Take a member out of `tag` (compact, gc); the blobs stay. */
    int (*state_delete)(cairn__remote *r, const char *tag, const char *manifest_digest,
                        cairn_error *err);
} cairn__remote_ops;

CAIRN_INTERNAL extern const cairn__remote_ops cairn__remote_file;
CAIRN_INTERNAL extern const cairn__remote_ops cairn__remote_s3;
CAIRN_INTERNAL extern const cairn__remote_ops cairn__remote_oci;

/* ---- for the layers above (pool/): a remote as the vtable and a handle --- */

typedef struct cairn__remote_conn {
    const cairn__remote_ops *ops;
    cairn__remote *r;
    const char *url;  /* the URL, as opened */
    void *session;    /* remote.c's own */
} cairn__remote_conn;

/* Open the remote at `url` (a URL, not a configured name). */
CAIRN_INTERNAL int cairn__remote_connect(const char *url, const cairn_remote_options *opts,
                                         cairn__remote_conn **out, cairn_error *err);
CAIRN_INTERNAL void cairn__remote_disconnect(cairn__remote_conn *c); /* NULL ok */

/* A member of a tag as its documents say (borrowed, valid in the callback). */
typedef struct cairn__remote_member {
    const char *tag;
    const char *digest;
    const char *state_id;
    const char *parents;  /* comma separated: the lowers' ids, or the members folded */
    int64_t mtime;        /* published, unix ns (0: unknown) */
    size_t objects;
    uint64_t bytes;       /* objects', database's and documents' bytes */
    const char *const *object_digests; /* [objects] */
    const uint64_t *object_sizes;      /* [objects] */
} cairn__remote_member;

/* Load members of `tag`: digests[0..n) (each verified), or every member of
 * tag when digests is NULL (tag NULL: of every tag but the pool's records).
 * -ENOENT (from the backend) when a named member is gone. */
CAIRN_INTERNAL int cairn__remote_members(cairn__remote_conn *c, const char *tag,
                                         const char *const *digests, size_t n,
                                         int (*fn)(void *ud, const cairn__remote_member *m),
                                         void *ud, cairn_error *err);

/* cairn_remote_pull() of one member of tag only (its manifest digest). */
CAIRN_INTERNAL int cairn__remote_pull_member(cairn_state *st, const char *remote,
                                             const char *tag, const char *digest,
                                             const cairn_remote_options *opts,
                                             cairn_remote_stats *stats, cairn_error *err);

/* cairn_remote_push(), the snapshots the remote carries looked up among the
 * members of known_tags[0..n) only (NULL: every tag), so a push to a big
 * remote reads the documents of the tags it builds on, not of all. A
 * snapshot carried by no state of those tags is exported, and still not
 * sent when the remote holds its layer. */
CAIRN_INTERNAL int cairn__remote_push_known(cairn_state *st, const char *remote, const char *tag,
                                            const char *const *known_tags, size_t n_known,
                                            const cairn_remote_options *opts,
                                            cairn_remote_stats *stats, char *out_digest,
                                            cairn_error *err);

/* cairn_remote_compact() of the members digests[0..n) of tag (one gone
 * since is passed by; fewer than two left: nothing folded, 0), the folded
 * members left in place: the caller retires them (the pool does, after a
 * grace period, so a provision that listed one still finds it). */
CAIRN_INTERNAL int cairn__remote_compact_members(const char *remote, const char *tag,
                                                 const char *const *digests, size_t n,
                                                 const cairn_remote_options *opts,
                                                 cairn_remote_stats *stats, char *out_digest,
                                                 cairn_error *err);

#endif
