/* cairn/state.h: a state directory, its identity and its metadata.
 *
 * A state is a directory holding a build engine's cache: blobs, snapshots,
 * records and volumes, with its metadata in db/<state-id>.sqlite. See
 * docs/DESIGN.md for the layout and the invariants.
 *
 * Threads: a cairn_state is used by one thread at a time. Calls on one
 * handle must not overlap; a handle may pass from thread to thread (under
 * the caller's own lock, or by handing it over). To work in parallel, open
 * a handle per thread: handles share nothing but constants in the process,
 * and the state's lock and SQLite's file locks order them as they order
 * separate processes. Callbacks run in the calling thread, except where a
 * function says otherwise (image import's progress, from its threads).
 */
#ifndef CAIRN_STATE_H
#define CAIRN_STATE_H

#include <stdint.h>
#include <cairn/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The on-disk format this library writes and the newest it reads. */
#define CAIRN_FORMAT_VERSION 1
/* A state id: 128 random bits as 32 lowercase hex characters. */
#define CAIRN_STATE_ID_LEN 32

typedef struct cairn_state cairn_state;

/* Flags for cairn_state_open(). */
enum {
    CAIRN_OPEN_READONLY = 1 << 0, /* never write: no database writes, no staging */
    /* When the file system is too full to open the database for writing,
     * free the state's reserve (space kept for this) and try again: for gc,
     * which then frees space. Read-only opens need no reserve: with no WAL
     * left they read the database as immutable. */
    CAIRN_OPEN_FREE_RESERVE = 1 << 1,
};

/* Progress of a long operation: `done` of `total` units (bytes or objects,
 * as the operation documents); total is 0 when unknown. Return 0 to go on;
 * anything else stops the operation (merge, freeze, flatten, gc, fsck,
 * image import and export, layer import) at its next safe point, and it
 * fails with CAIRN_E_USER, leaving the state as valid as a crash there would
 * (its staging removed, nothing half-written that a row names). Remote push
 * and pull report through it but do not stop yet. */
typedef int (*cairn_progress_fn)(void *userdata, uint64_t done, uint64_t total);

/* Create a state at `path` (created if missing, must be empty or an
 * overlayfs view of states: see docs/DESIGN.md). Creating a state over one
 * that already exists with its own identity fails with -EEXIST.
 * When `out_id` is not NULL it receives the new id (CAIRN_STATE_ID_LEN + 1). */
CAIRN_EXPORT int cairn_state_init(const char *path, char *out_id, cairn_error *err);

/* Flags for cairn_state_init_with(). */
enum {
    /* Give a frozen state a writable identity in place (not needed on an
     * overlayfs view, where the identity goes to the upper layer). Stacks
     * that read the frozen state as a lower then fail: its id changed. */
    CAIRN_INIT_OVER_FROZEN = 1 << 0,
};

/* cairn_state_init() with flags. Over a frozen state that is not an
 * overlayfs view it fails with -EEXIST unless CAIRN_INIT_OVER_FROZEN. */
CAIRN_EXPORT int cairn_state_init_with(const char *path, unsigned flags, char *out_id,
                                       cairn_error *err);

/* Open the state at `path`. On success *out owns the state; free it with
 * cairn_state_free(). Fails with CAIRN_E_NOTSTATE, CAIRN_E_FORMAT,
 * CAIRN_E_NEWER or -errno, naming the file at fault; changes nothing then. */
CAIRN_EXPORT int cairn_state_open(cairn_state **out, const char *path, unsigned flags,
                                  cairn_error *err);

/* How long a call on `st` waits for another process holding the state (its
 * lock, or a write to its database) before it fails with CAIRN_E_BUSY, whose
 * message says who holds it. Default: 60000 ms; 0 fails at once. */
#define CAIRN_TIMEOUT_DEFAULT 60000 /* ms */
CAIRN_EXPORT void cairn_state_set_timeout(cairn_state *st, unsigned ms);

/* Close the state and free it. Accepts NULL. */
CAIRN_EXPORT void cairn_state_free(cairn_state *st);

/* Borrowed strings, valid until cairn_state_free(). */
CAIRN_EXPORT const char *cairn_state_id(const cairn_state *st);
CAIRN_EXPORT const char *cairn_state_path(const cairn_state *st);

typedef struct cairn_count {
    uint64_t count;
    uint64_t bytes;
} cairn_count;

typedef struct cairn_state_info {
    char id[CAIRN_STATE_ID_LEN + 1];
    unsigned format;      /* format of the identity file and layout */
    unsigned schema;      /* schema version of the database */
    int frozen;           /* 1 when the state is frozen (usable as a lower) */
    unsigned lowers;      /* number of lower states read through */
    cairn_count blobs;    /* bytes: file sizes */
    cairn_count snapshots;
    cairn_count active;
    cairn_count images;
    cairn_count records;  /* count: results; bytes: 0 */
    cairn_count volumes;
    cairn_count leases;
} cairn_state_info;

/* Fill *out with the state's identity and its object counts (the union of
 * the state and its lowers). */
CAIRN_EXPORT int cairn_state_info_get(cairn_state *st, cairn_state_info *out, cairn_error *err);

#ifdef __cplusplus
}
#endif
#endif
