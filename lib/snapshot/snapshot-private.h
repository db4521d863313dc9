/* snapshot-private.h: what the snapshot, layer and mount files share. */
#ifndef CAIRN_SNAPSHOT_PRIVATE_H
#define CAIRN_SNAPSHOT_PRIVATE_H

#include "core/core.h"
#include "cairn/layer.h"
#include "cairn/snapshot.h"

#include <locale.h>

/* libarchive converts names between UTF-8 (PAX records) and the locale's
 * charset; a library must not depend on (or change) the process locale, so
 * tar code runs with C.UTF-8 set for the calling thread only. Returns the
 * previous locale for _leave ((locale_t)0 when C.UTF-8 is missing). */
CAIRN_INTERNAL locale_t cairn__utf8_locale_enter(void);
CAIRN_INTERNAL void cairn__utf8_locale_leave(locale_t old);

/* The overlayfs xattr namespace this process writes and reads: trusted.* as
 * root, user.* (overlayfs' userxattr mode) otherwise. */
CAIRN_INTERNAL const char *cairn__ovl_prefix(void);

/* Where canonical tar bytes go: called with each chunk in order. */
typedef int (*cairn__tar_sink_fn)(void *ud, const void *buf, size_t len);

enum {
    CAIRN__TAR_STRIP = 1 << 0, /* remove overlayfs' bookkeeping xattrs (origin, impure, ...) */
};

/* Write the canonical tar of the overlayfs-format diff at dirfd to sink (see
 * tar.c for the form). `what` names the diff in messages. out_size (may be
 * NULL) receives the sum of the regular files' sizes. */
CAIRN_INTERNAL int cairn__tar_diff(int dirfd, const char *what, unsigned flags,
                                   cairn__tar_sink_fn sink, void *ud, uint64_t *out_size,
                                   cairn_error *err);
/* cairn__tar_diff(), telling fn of each entry once it is written: `e` as
 * written (borrowed for the call), `data` the digest of a regular file's
 * data (NULL for any other entry, a hardlink to an earlier one included).
 * A non-zero return of fn stops the walk and is returned. */
struct archive_entry;
typedef int (*cairn__tar_entry_fn)(void *ud, struct archive_entry *e, const char *data);
CAIRN_INTERNAL int cairn__tar_diff_each(int dirfd, const char *what, unsigned flags,
                                        cairn__tar_sink_fn sink, void *ud, cairn__tar_entry_fn fn,
                                        void *fn_ud, uint64_t *out_size, cairn_error *err);
/* The digest of that tar. */
CAIRN_INTERNAL int cairn__tar_digest(int dirfd, const char *what, unsigned flags,
                                     char out[CAIRN_DIGEST_LEN + 1], uint64_t *out_size,
                                     cairn_error *err);

/* The digest of the canonical tar of the layer read from fd (uncompressed,
 * gzip or zstd) as applied over `parent` (a chain id, or NULL), as
 * cairn_layer_import() would record it, without recording anything: the
 * layer is applied in a staging directory of tmp/ and removed. Its DiffID
 * must be expected_diff_id (CAIRN_E_MISMATCH). Lets a tree made elsewhere
 * from the same layer be proven to be that layer. */
CAIRN_INTERNAL int cairn__layer_canon(cairn_state *st, const char *parent, int fd,
                                      const char *expected_diff_id,
                                      char canon[CAIRN_DIGEST_LEN + 1], cairn_error *err);

/* Whether the tree at treefd (a diff in overlayfs form, made elsewhere) is
 * what cairn_layer_import() of the layer read from layer_fd (-1: none)
 * makes, without writing anything (layer.c says how). canon and *size
 * receive the tree's canonical tar digest and size, as cairn__tar_digest()
 * gives them. 1: shown (the digest is diff_id itself, or the layer's
 * entries are the tree's); 0: not shown (a difference, or a layer this
 * comparison does not model: `why` says which; cairn__layer_canon()
 * decides then); < 0: the tree could not be read (err). */
CAIRN_INTERNAL int cairn__layer_prove(int treefd, const char *what, int layer_fd,
                                      const char *diff_id, char canon[CAIRN_DIGEST_LEN + 1],
                                      uint64_t *size, char *why, size_t whylen, cairn_error *err);

/* ChainID of diff_id over parent (NULL or "" for a base). */
CAIRN_INTERNAL void cairn__chain_id(const char *parent, const char *diff_id,
                                    char out[CAIRN_DIGEST_LEN + 1]);

typedef struct cairn__snaprow {
    cairn_snapshot_info info;
    char tar_digest[CAIRN_DIGEST_LEN + 1];
    size_t layer; /* the layer of the state holding it */
} cairn__snaprow;

/* Look a committed snapshot up through the layers: 1 found (*out filled), 0
 * not there, < 0 on error. */
CAIRN_INTERNAL int cairn__snapshot_find(cairn_state *st, const char *chain_id,
                                        cairn__snaprow *out, cairn_error *err);
/* Absolute path of a snapshot's directory (malloc'd). */
CAIRN_INTERNAL char *cairn__snapshot_path(cairn_state *st, size_t layer, const char *chain_id);
/* snapshots/<hex> of the layer is a directory, not a symlink (CAIRN_E_UNSAFE)
 * nor another file (CAIRN_E_CORRUPT); missing is 0, left to the caller. */
CAIRN_INTERNAL int cairn__snapshot_dir_check(cairn_state *st, size_t layer, const char *chain_id,
                                             cairn_error *err);
/* When layer is a lazy lower that lacks the snapshot's directory, fetch it
 * (core.h, lazy lowers); else nothing. */
CAIRN_INTERNAL int cairn__snapshot_ensure(cairn_state *st, size_t layer, const char *chain_id,
                                          cairn_error *err);
/* Apply a layer tar read from fd over `parent` (a snapshot of st, or NULL)
 * into a new directory, staged in tfd (unowned names) and renamed to
 * dsfd/name without replacing (-EEXIST taken as done) once its DiffID is
 * `expected_diff_id` (else CAIRN_E_MISMATCH, nothing placed) and the file
 * system synced. No row is written: for a lazy lower, whose rows name the
 * snapshot already. */
CAIRN_INTERNAL int cairn__layer_apply(cairn_state *st, const char *parent, int fd,
                                      const char *expected_diff_id, int tfd, int dsfd,
                                      const char *name, cairn_error *err);
/* Publish a snapshot whose directory is staged at tmpfd/staged: under the
 * lock held shared, check the parent is (still) there, sync the filesystem,
 * rename it into snapshots/<hex> (one there that proves to be the same is
 * kept and the staged copy dropped; any other is quarantined), then insert
 * the row. -ENOENT when the parent went (a gc) while the layer was built. */
CAIRN_INTERNAL int cairn__snapshot_publish(cairn_state *st, int stagefd, const char *staged,
                                           const char *parent, const char *diff_id,
                                           const char *tar_digest, uint64_t size,
                                           cairn_error *err);
/* cairn_snapshot_commit() with fn(st, ud, chain, err) run inside its last
 * transaction, the one that inserts the snapshot row and deletes the active
 * one (a volume's version row goes in with them). A commit stopped after its
 * diff moved (a kill, a failed fsync) is resumed by committing the same id
 * again, which checks the moved directory against its name. */
typedef int (*cairn__commit_fn)(cairn_state *st, void *ud, const char *chain, cairn_error *err);
CAIRN_INTERNAL int cairn__snapshot_commit(cairn_state *st, const char *id, cairn__commit_fn fn,
                                          void *ud, char *out_chain_id, char *out_diff_id,
                                          cairn_error *err);
/* Add to `out` the chain ids of the commits in progress: their diff may sit
 * at snapshots/<hex> with no row yet, which gc must keep and fsck explain. */
CAIRN_INTERNAL int cairn__snapshot_pending(cairn_state *st, cairn__strset *out,
                                           cairn_error *err);
/* cairn_snapshot_mount() through mount(2) only, as on kernels without
 * overlayfs' lowerdir+ (for tests). */
CAIRN_INTERNAL int cairn__snapshot_mount_legacy(cairn_state *st, const char *name,
                                                const char *target, cairn_error *err);
/* Record a use of an object (last_used, hits) in this state's usage table. */
CAIRN_INTERNAL void cairn__usage_touch(cairn_state *st, const char *object);

/* The snapshot directories of a chain, nearest first (absolute paths). */
typedef struct cairn__chain {
    char **dirs;
    size_t n;
} cairn__chain;
CAIRN_INTERNAL int cairn__chain_get(cairn_state *st, const char *chain_id, cairn__chain *out,
                                    cairn_error *err);
CAIRN_INTERNAL void cairn__chain_free(cairn__chain *c);

#endif
