/* cairn/merge.h: combine states: freeze, stack (lazy), merge (eager),
 * flatten, and the flatten policy.
 *
 * freeze: a consistent, read-only, point-in-time copy of a state that an
 *   engine may be writing to. Objects are hardlinked (reflinked or copied
 *   across filesystems), the database is copied with SQLite's backup API.
 *   Only a frozen state can be a lower of a stack.
 * stack: a state reads through the frozen states listed in its `lowers`
 *   file ("<state-id> <absolute path>" a line, topmost first). Lookups fall
 *   through, writes go to the top.
 * merge: write the union of states into one, objects by link, reflink, copy
 *   or move, metadata by each table's merge rule (docs/DESIGN.md), rows last
 *   in one transaction. Idempotent: an interrupted merge run again completes.
 * flatten: merge a stack's lowers into its top and drop them.
 */
#ifndef CAIRN_MERGE_H
#define CAIRN_MERGE_H

#include <stdint.h>
#include <cairn/error.h>
#include <cairn/state.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How objects reach the destination. AUTO: the cheapest that works for each
 * object (hardlink, else reflink, else copy). LINK: hardlinks only (fails
 * across filesystems). REFLINK: a reflink, else a copy. COPY: bytes.
 * MOVE: rename out of the sources (whole snapshot directories at once), which
 * are consumed: removed once the merge is complete. */
enum {
    CAIRN_MERGE_AUTO = 0,
    CAIRN_MERGE_LINK,
    CAIRN_MERGE_REFLINK,
    CAIRN_MERGE_COPY,
    CAIRN_MERGE_MOVE,
};

typedef struct cairn_merge_stats {
    uint64_t objects;      /* objects the sources hold (blobs and snapshots) */
    uint64_t present;      /* already in the destination */
    uint64_t linked;       /* hardlinked */
    uint64_t reflinked;
    uint64_t copied;
    uint64_t moved;
    uint64_t bytes_copied; /* bytes written by copies (0 when all were linked) */
    uint64_t refused;      /* corrupt or missing copies left out (reported) */
    uint64_t rows;         /* rows inserted or updated */
} cairn_merge_stats;

/* A problem found while combining: a corrupt or missing copy of an object.
 * `path` is the copy refused, `other` the copy kept (or ""). */
typedef struct cairn_merge_problem {
    const char *kind;    /* "blob", "snapshot" */
    const char *name;    /* digest or chain id */
    const char *problem; /* "corrupt", "missing", "conflict" */
    const char *path;
    const char *other;
    const char *detail;
} cairn_merge_problem;
typedef void (*cairn_merge_problem_fn)(void *userdata, const cairn_merge_problem *p);

typedef struct cairn_merge_options {
    unsigned version;     /* CAIRN_MERGE_OPTIONS_VERSION */
    int mode;             /* CAIRN_MERGE_* */
    int verify;           /* hash every object before taking it (cost: bytes) */
    int background;       /* flatten: short transactions, never block a writer for long */
    cairn_merge_problem_fn problem;
    void *problem_userdata;
    cairn_progress_fn progress; /* objects placed of the total; non-zero stops (CAIRN_E_USER):
                                 * no row is in yet, a rerun completes */
    void *progress_userdata;
    /* MOVE: a source's active snapshots and leases are local (never merged)
     * and go with the source; the merge is refused while a source holds any
     * (-EBUSY, naming them), unless this is set. (version 2) */
    int drop_local;
} cairn_merge_options;
#define CAIRN_MERGE_OPTIONS_VERSION 2
#define CAIRN_MERGE_OPTIONS_INIT {.version = CAIRN_MERGE_OPTIONS_VERSION}

/* Freeze the state at `src` into a new state at `dest` (missing or an empty
 * directory). The copy holds everything committed in `src` before the call
 * began, has a new id and is frozen. Active snapshots and leases stay out.
 * `out_id` (CAIRN_STATE_ID_LEN + 1, or NULL) receives the new id. */
CAIRN_EXPORT int cairn_freeze(const char *src, const char *dest, cairn_merge_stats *stats,
                              char *out_id, cairn_error *err);

typedef struct cairn_freeze_options {
    unsigned version;           /* CAIRN_FREEZE_OPTIONS_VERSION */
    cairn_progress_fn progress; /* objects linked of the total; non-zero stops (CAIRN_E_USER) */
    void *progress_userdata;
} cairn_freeze_options;
#define CAIRN_FREEZE_OPTIONS_VERSION 1
#define CAIRN_FREEZE_OPTIONS_INIT {.version = CAIRN_FREEZE_OPTIONS_VERSION}

/* cairn_freeze() with options (NULL: the defaults). Stopped by its progress
 * callback, or failing anywhere, it leaves `dest` as it was. */
CAIRN_EXPORT int cairn_freeze_with(const char *src, const char *dest,
                                   const cairn_freeze_options *opts, cairn_merge_stats *stats,
                                   char *out_id, cairn_error *err);

/* Merge the states `srcs[0..n)` (each may be a stack: its whole union is
 * taken) into `dest`, created when missing. A source of a newer format or
 * schema is refused before anything is written. Returns 0 when complete,
 * even when copies were refused as corrupt (reported through opts->problem
 * and counted in stats->refused). */
CAIRN_EXPORT int cairn_merge(const char *dest, const char *const *srcs, size_t n,
                             const cairn_merge_options *opts, cairn_merge_stats *stats,
                             cairn_error *err);

/* Stacks. `dir` is a state; lowers must be frozen states. */
CAIRN_EXPORT int cairn_stack_add(const char *dir, const char *const *lowers, size_t n,
                                 cairn_error *err);
/* Remove a lower, named by its path or its id. Never opens the lowers, so it
 * works when a lower has vanished or been replaced. -ENOENT when not listed. */
CAIRN_EXPORT int cairn_stack_remove(const char *dir, const char *lower, cairn_error *err);

typedef struct cairn_stack_entry {
    const char *id;     /* recorded id */
    const char *path;   /* recorded path */
    const char *status; /* "ok", "missing", "replaced", "not-frozen", "unreadable" */
    const char *detail; /* for a person, "" when ok */
} cairn_stack_entry;
typedef int (*cairn_stack_fn)(void *userdata, const cairn_stack_entry *e);
/* The lowers of `dir` as recorded, in order, each checked (never fails on a
 * bad lower: its status says what is wrong). */
CAIRN_EXPORT int cairn_stack_list(const char *dir, cairn_stack_fn fn, void *userdata,
                                  cairn_error *err);

/* Flatten the stack at `dir`: merge its lowers (and the databases found
 * side by side in db/) into it, then drop them. Objects reach `dir` as
 * opts->mode says (AUTO by default; MOVE is refused: lowers are never
 * modified). With opts->background, rows move in short transactions so an
 * engine writing to the state never waits long. */
CAIRN_EXPORT int cairn_flatten(const char *dir, const cairn_merge_options *opts,
                               cairn_merge_stats *stats, cairn_error *err);

/* The flatten policy of a state (a row of its `meta` table, key
 * "flatten_policy"): "never" (default), "on-open" (cairn_flatten_on_open()
 * flattens a stack), "lowers>N" (it does when more than N lowers),
 * "background" (flattened by `cairn flatten --background`, never on open). */
CAIRN_EXPORT int cairn_flatten_policy_set(cairn_state *st, const char *policy, cairn_error *err);
/* Copies the policy into buf (size >= 32). */
CAIRN_EXPORT int cairn_flatten_policy_get(cairn_state *st, char *buf, size_t size,
                                          cairn_error *err);
/* 1 when the policy asks for a flatten now (for `background`: when there is
 * anything to flatten), 0 when not. */
CAIRN_EXPORT int cairn_flatten_due(cairn_state *st, cairn_error *err);
/* Apply the policy of a state just opened to write: flatten it now when the
 * policy is "on-open", or "lowers>N" with more than N lowers. Opening a
 * state never flattens it by itself (an open may not run a whole merge
 * behind its caller's back); a program that wants the policy kept calls
 * this after cairn_state_open(), as the command does. Returns 1 when it
 * flattened, 0 when nothing was due (or the state is read-only). opts and
 * stats may be NULL. */
CAIRN_EXPORT int cairn_flatten_on_open(cairn_state *st, const cairn_merge_options *opts,
                                       cairn_merge_stats *stats, cairn_error *err);

#ifdef __cplusplus
}
#endif
#endif
