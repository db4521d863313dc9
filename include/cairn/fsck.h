/* cairn/fsck.h: check a state against its invariants, and repair it.
 *
 * fsck first runs SQLite's integrity check on every database of the stack
 * (quick_check, or integrity_check with full_db): a corrupt database is
 * reported, kind "database" and its file as the name, and the checks of
 * rows are skipped (rows read from it cannot be trusted). Then it checks
 * that every row names an object that exists and is intact, and
 * that every object is named by a row. Each problem is reported through a
 * callback with the object's name. With repair, rows naming a missing object
 * are dropped and corrupt files are moved to quarantine/ (never deleted);
 * unreferenced objects are only reported (garbage collection removes them).
 * Only this state is checked and repaired: lowers are read-only.
 */
#ifndef CAIRN_FSCK_H
#define CAIRN_FSCK_H

#include <cairn/error.h>
#include <cairn/state.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cairn_fsck_options {
    unsigned version;        /* CAIRN_FSCK_OPTIONS_VERSION */
    int repair;              /* drop rows naming missing objects, quarantine corrupt ones */
    int no_hash;             /* skip re-hashing contents: check presence and sizes only */
    cairn_progress_fn progress; /* objects checked of the total, or NULL */
    void *progress_userdata;
    /* SQLite's full integrity_check of every database of the stack (cost:
     * reads every index against its table) instead of quick_check. (version 2) */
    int full_db;
} cairn_fsck_options;
#define CAIRN_FSCK_OPTIONS_VERSION 2
#define CAIRN_FSCK_OPTIONS_INIT {.version = CAIRN_FSCK_OPTIONS_VERSION}

typedef struct cairn_fsck_problem {
    const char *kind;    /* "database", "blob", "snapshot", "record", "image", "volume", "file" */
    const char *name;    /* the object's name (digest, chain id, key, path) */
    const char *problem; /* "missing", "corrupt", "size", "unreferenced", "dangling" */
    const char *detail;  /* a sentence for a person, or "" */
    const char *action;  /* what repair did: "", "dropped row", "quarantined" */
} cairn_fsck_problem;

typedef void (*cairn_fsck_fn)(void *userdata, const cairn_fsck_problem *problem);

/* Returns the number of problems found (0: clean), or < 0 when the check
 * itself could not run. */
CAIRN_EXPORT int cairn_fsck(cairn_state *st, const cairn_fsck_options *opts, cairn_fsck_fn fn,
                            void *userdata, cairn_error *err);

#ifdef __cplusplus
}
#endif
#endif
