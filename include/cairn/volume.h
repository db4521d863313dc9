/* cairn/volume.h: volumes, the named mutable directories an engine keeps
 * warm (package caches, compiler caches).
 *
 * A volume is a name and a set of versions; each version is a committed
 * snapshot. Opening a volume gives an active snapshot over its current
 * version (mount it with cairn_snapshot_mounts() / cairn_snapshot_mount());
 * saving commits that active snapshot and records it as a new version.
 * The current version is the newest by (created, version): a rule that
 * gives the same answer in a stack of states and in their merge.
 *
 * Two sessions may open the same volume at once: each saves its own
 * version, the later save becomes current, the other stays listed until
 * garbage collection removes versions that are not current (and are not
 * leased). Nothing is lost silently.
 */
#ifndef CAIRN_VOLUME_H
#define CAIRN_VOLUME_H

#include <stdint.h>
#include <cairn/error.h>
#include <cairn/state.h>
#include <cairn/store.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_VOLUME_NAME_MAX 128

typedef struct cairn_volume_info {
    char name[CAIRN_VOLUME_NAME_MAX + 1];
    char current[CAIRN_DIGEST_LEN + 1]; /* chain id of the current version */
    int64_t created;                    /* of the current version, unix seconds */
    uint64_t versions;                  /* versions recorded (the union) */
    uint64_t size;                      /* bytes of the current version's chain */
    int lower;                          /* the current version is recorded in a lower */
} cairn_volume_info;

typedef struct cairn_volume_version {
    char version[CAIRN_DIGEST_LEN + 1]; /* chain id */
    int64_t created;                    /* unix seconds */
    int current;
    int present; /* its snapshot is there */
    int lower;
} cairn_volume_version;

/* Open `name` (letters, digits and ".-_", up to CAIRN_VOLUME_NAME_MAX): a new
 * active snapshot over its current version, or over nothing for a volume
 * that has none yet. out_id (CAIRN_STATE_ID_LEN + 1) receives its id;
 * out_parent (CAIRN_DIGEST_LEN + 1, may be NULL) the version it starts from
 * ("" for none). */
CAIRN_EXPORT int cairn_volume_open(cairn_state *st, const char *name, char *out_id,
                                   char *out_parent, cairn_error *err);

/* Save an opened volume: commit its active snapshot `id` (NULL: the only
 * one open for `name`; -EBUSY when several are) and record the result as
 * the newest version. out_version (CAIRN_DIGEST_LEN + 1, may be NULL)
 * receives the chain id. The active snapshot is gone afterwards. */
CAIRN_EXPORT int cairn_volume_save(cairn_state *st, const char *name, const char *id,
                                   char *out_version, cairn_error *err);

/* The current version of `name`; -ENOENT when it has none. */
CAIRN_EXPORT int cairn_volume_current(cairn_state *st, const char *name, cairn_volume_info *out,
                                      cairn_error *err);

typedef int (*cairn_volume_fn)(void *userdata, const cairn_volume_info *info);
/* Every volume, sorted by name, the union over the lowers. */
CAIRN_EXPORT int cairn_volume_list(cairn_state *st, cairn_volume_fn fn, void *userdata,
                                   cairn_error *err);

typedef int (*cairn_volume_version_fn)(void *userdata, const cairn_volume_version *v);
/* The versions of `name`, newest first. -ENOENT when it has none. */
CAIRN_EXPORT int cairn_volume_versions(cairn_state *st, const char *name,
                                       cairn_volume_version_fn fn, void *userdata,
                                       cairn_error *err);

/* Forget a volume's versions in this state (their snapshots are left to
 * gc). Returns the number of versions forgotten; -ENOENT when the volume
 * has none, -EROFS when only a lower holds it. */
CAIRN_EXPORT int cairn_volume_remove(cairn_state *st, const char *name, cairn_error *err);

#ifdef __cplusplus
}
#endif
#endif
