/* cairn/snapshot.h: filesystem snapshots.
 *
 * A committed snapshot is an immutable filesystem diff over a parent,
 * named by its OCI ChainID: the DiffID for a base, sha256(parent ChainID +
 * " " + DiffID) otherwise. The DiffID is the sha256 of the diff as a
 * canonical uncompressed tar (cairn_layer_export() writes that tar). The
 * diff lives at STATE/snapshots/<chainid-hex>/ in overlayfs format
 * (whiteouts are 0/0 character devices, opaque directories carry the
 * overlay.opaque xattr) and is mounted directly as a lowerdir.
 *
 * An active snapshot is a writable diff over an optional parent, with a
 * random id (CAIRN_STATE_ID_LEN hex characters), at STATE/active/<id>/fs;
 * committing it turns it into a committed snapshot. A view is a read-only
 * use of a committed snapshot. Active snapshots and views are local to a
 * state and never merged.
 *
 * Lookups fall through the state's lower states; only this state's own
 * snapshots can be removed.
 */
#ifndef CAIRN_SNAPSHOT_H
#define CAIRN_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>
#include <cairn/error.h>
#include <cairn/state.h>
#include <cairn/store.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_LABEL_MAX 255

typedef struct cairn_snapshot_info {
    char chain_id[CAIRN_DIGEST_LEN + 1];
    char parent[CAIRN_DIGEST_LEN + 1]; /* "" for a base */
    char diff_id[CAIRN_DIGEST_LEN + 1];
    uint64_t size;     /* bytes of the regular files of the diff */
    int64_t created;   /* unix seconds */
    int64_t last_used; /* unix seconds, 0 when never used */
    int lower;         /* 0: in this state; n > 0: found in the n-th lower */
} cairn_snapshot_info;

typedef struct cairn_active_info {
    char id[CAIRN_STATE_ID_LEN + 1];
    int view;                          /* 1: a read-only view, 0: writable */
    char parent[CAIRN_DIGEST_LEN + 1]; /* "" when over nothing */
    char label[CAIRN_LABEL_MAX + 1];
    int64_t created; /* unix seconds */
} cairn_active_info;

/* A new writable snapshot over `parent` (a chain id, or NULL for none), with
 * an optional label. out_id (CAIRN_STATE_ID_LEN + 1) receives its id.
 * -ENOENT when the parent is not there. */
CAIRN_EXPORT int cairn_snapshot_prepare(cairn_state *st, const char *parent, const char *label,
                                        char *out_id, cairn_error *err);

/* A read-only view of the committed snapshot `chain_id`. */
CAIRN_EXPORT int cairn_snapshot_view(cairn_state *st, const char *chain_id, const char *label,
                                     char *out_id, cairn_error *err);

/* Commit the active snapshot `id` (CAIRN_E_INUSE while mounted): its diff gets
 * its DiffID and ChainID, moves into snapshots/ and the active snapshot is
 * gone. Committing a diff that is already there (same ChainID) keeps the one
 * there. A commit that failed or was killed after its diff moved leaves the
 * active snapshot; committing it again finishes the commit. out_chain_id and
 * out_diff_id (CAIRN_DIGEST_LEN + 1, may be NULL). */
CAIRN_EXPORT int cairn_snapshot_commit(cairn_state *st, const char *id, char *out_chain_id,
                                       char *out_diff_id, cairn_error *err);

/* Remove a committed snapshot (by chain id) or an active one or a view (by
 * id): row first, then the directory. A committed snapshot that is the parent
 * of another snapshot or of an active one is refused with CAIRN_E_INUSE; one
 * only a lower holds with -EROFS, an active one still mounted with
 * CAIRN_E_INUSE; -ENOENT when it is not there. */
CAIRN_EXPORT int cairn_snapshot_remove(cairn_state *st, const char *name, cairn_error *err);

/* -ENOENT when not there. Stat of a committed snapshot. */
CAIRN_EXPORT int cairn_snapshot_stat(cairn_state *st, const char *chain_id,
                                     cairn_snapshot_info *out, cairn_error *err);
CAIRN_EXPORT int cairn_snapshot_active_stat(cairn_state *st, const char *id,
                                            cairn_active_info *out, cairn_error *err);

/* Each committed snapshot, sorted by chain id, the union over the lowers; a
 * non-zero return from fn stops the walk and is returned. */
typedef int (*cairn_snapshot_fn)(void *userdata, const cairn_snapshot_info *info);
CAIRN_EXPORT int cairn_snapshot_list(cairn_state *st, cairn_snapshot_fn fn, void *userdata,
                                     cairn_error *err);
/* Each active snapshot and view of this state, sorted by id. */
typedef int (*cairn_active_fn)(void *userdata, const cairn_active_info *info);
CAIRN_EXPORT int cairn_snapshot_active_list(cairn_state *st, cairn_active_fn fn, void *userdata,
                                            cairn_error *err);

/* The parent chain of `chain_id`: itself first, then each parent down to
 * the base. CAIRN_E_CORRUPT when a parent is missing. */
CAIRN_EXPORT int cairn_snapshot_walk(cairn_state *st, const char *chain_id, cairn_snapshot_fn fn,
                                     void *userdata, cairn_error *err);

/* ---- mounts ------------------------------------------------------------- */

/* A mount in the shape of an OCI runtime spec `mounts` entry. */
typedef struct cairn_mount {
    char *type;     /* "overlay" or "bind" */
    char *source;
    char **options; /* n_options strings */
    size_t n_options;
} cairn_mount;

/* The mount of an active snapshot, a view (by id) or a committed snapshot (by
 * chain id, read-only): overlayfs with the parents as lowerdirs (the nearest
 * first), the diff as upperdir and a workdir; a bind mount when there is
 * nothing to stack. Free with cairn_mount_free(). */
CAIRN_EXPORT int cairn_snapshot_mounts(cairn_state *st, const char *name, cairn_mount **out,
                                       cairn_error *err);
/* The mount as a JSON object {"type","source","options":[...]} (malloc'd,
 * the caller frees it), or NULL when out of memory. */
CAIRN_EXPORT char *cairn_mount_json(const cairn_mount *m);
CAIRN_EXPORT void cairn_mount_free(cairn_mount *m);

/* Mount `name` (as for cairn_snapshot_mounts()) on `target`. Long parent
 * chains use the new mount API (one lowerdir at a time), so they are not
 * limited by the size of a mount options page. Needs CAP_SYS_ADMIN. */
CAIRN_EXPORT int cairn_snapshot_mount(cairn_state *st, const char *name, const char *target,
                                      cairn_error *err);
CAIRN_EXPORT int cairn_snapshot_umount(const char *target, cairn_error *err);

/* ---- checkout ----------------------------------------------------------- */

enum {
    CAIRN_CHECKOUT_COPY = 1 << 0, /* copy files, never hardlink them to the snapshots */
};

/* Materialise the chain `chain_id` into the plain directory `target` (created;
 * must not exist or be empty): whiteouts and opaque directories applied, files
 * hardlinked from the snapshots where the filesystem allows (a checkout then
 * shares their inodes: do not modify them in place) and copied otherwise.
 * Returns the number of files copied rather than linked. */
CAIRN_EXPORT int cairn_snapshot_checkout(cairn_state *st, const char *chain_id, const char *target,
                                         unsigned flags, cairn_error *err);

#ifdef __cplusplus
}
#endif
#endif
