/* core/core.h: what the library's files share about a state and the public
 * API hides: the state and its layers, their statements and transactions,
 * the lock, staging names, the union walks over the layers.
 *
 * Conventions (docs/CONVENTIONS.md has the long form):
 * - Return 0 or a count on success, -errno or CAIRN_E_* on failure. Report the
 *   cause through cairn__err(err, code, fmt, ...), which returns `code`, so an
 *   error path reads `return cairn__err(err, -errno, "blob %s: open: %m", d);`.
 * - Never clobber an output parameter on failure; free functions accept NULL.
 * - All state I/O goes through directory fds (openat family).
 * - Cleanup attributes for locals: _cleanup_free_, _cleanup_close_,
 *   _cleanup_(fn); hand ownership out with steal_pointer()/steal_fd().
 */
#ifndef CAIRN_CORE_H
#define CAIRN_CORE_H

#include "db/db.h"
#include "util/util.h"

/* ---- state ------------------------------------------------------------ */

/* The kernel's boot id without dashes (32 hex digits); staging entries in
 * tmp/ start with it so that those of an earlier boot can be told apart. */
CAIRN_INTERNAL int cairn__boot_id(char out[40]);
/* Parse a lowers file held in buf (modified): calls fn(ud, id, path) for
 * each "<state-id> <absolute path>" line, in order. */
CAIRN_INTERNAL int cairn__lowers_parse(char *buf, const char *path,
                                       int (*fn)(void *, const char *, const char *), void *ud,
                                       cairn_error *err);
/* The id (and frozen flag) from dirfd's identity file (state.c). */
CAIRN_INTERNAL int cairn__identity_get(int dirfd, const char *path,
                                       char out_id[CAIRN_STATE_ID_LEN + 1], bool *frozen,
                                       cairn_error *err);
/* Write an identity file naming db/<state_id>.sqlite (atomically). */
CAIRN_INTERNAL int cairn__identity_new(int dirfd, const char *path, const char *state_id,
                                       bool frozen, cairn_error *err);
/* Drop layers n.. of an open state (after a flatten made them redundant). */
CAIRN_INTERNAL void cairn__layers_trim(cairn_state *st, size_t n);
/* Copy the snapshot directory ssfd/name into dsfd/name: a tree of hardlinks
 * (how: see cairn__clone_file_at), staged under tfd (tmp/ of `owner`, whose
 * staging name it takes; NULL: an unowned name) and renamed without
 * replacing (-EEXIST: already there). A file reflinked or copied
 * keeps its owner, mode, times and xattrs, and a hardlink group stays one
 * group; symlinks, devices, fifos and whiteouts keep theirs. When any file
 * was not linked, the copy's canonical tar must digest to `expect` (may be
 * NULL: not checked) before it is renamed into place: else CAIRN_E_MISMATCH,
 * nothing placed, and `got` (may be NULL) holds what it tars to. *bytes
 * grows by the bytes copied. */
CAIRN_INTERNAL int cairn__snapshot_clone(cairn_state *owner, int ssfd, const char *name, int tfd,
                                         int dsfd, int how, const char *expect, uint64_t *bytes,
                                         char *got);
/* A directory built beside `path` and renamed onto it when complete:
 * "<path>.<tag>-<pid>"; sweep removes those whose process is gone. */
CAIRN_INTERNAL char *cairn__side_name(const char *path, const char *tag);
CAIRN_INTERNAL void cairn__side_sweep(const char *path, const char *tag);
/* Move dirfd/name (a bad object: it does not hold what its name says) to
 * quarantine/<tag>.<name>.<time>, never replacing and never deleting. */
CAIRN_INTERNAL int cairn__quarantine(cairn_state *st, int dirfd, const char *name,
                                     const char *tag, cairn_error *err);
/* A new staging name in st's tmp/, owned by st while it is open:
 * "<boot-id>-<owner>-<tag>-<random>", where st holds an OFD lock on byte
 * 2^40 + owner of the state's `lock` file (taken on first use, dropped by
 * cairn_state_free). A sweep tells a live process's staging from a dead
 * one's by asking for that lock. */
CAIRN_INTERNAL int cairn__tmp_name(cairn_state *st, char *out, size_t size, const char *tag);
/* This process's token as an owner of st, "<boot-id>-<owner>" (the lock
 * byte cairn__tmp_name takes, taken here too), for a file that says a
 * process is at work on the state (a commit's intent): cairn__owner_live
 * tells whether that process still is. */
CAIRN_INTERNAL int cairn__owner_token(cairn_state *st, char *out, size_t size);
/* Does the process that wrote token (cairn__owner_token) still hold the
 * state open: a token of this boot whose lock byte is held? false for a
 * malformed token. */
CAIRN_INTERNAL bool cairn__owner_live(cairn_state *st, const char *token);
/* An unowned name, "<boot-id>-<tag>-<random>", for staging inside a
 * directory that is removed whole when its builder fails (freeze's side
 * directory): sweeps of this boot leave such names alone. */
CAIRN_INTERNAL int cairn__tmp_name_unowned(char *out, size_t size, const char *tag);
/* Make the state's reserve (db/<id>.reserve, space gc can free on a full
 * file system) when it is missing and there is room for it (state.c). */
CAIRN_INTERNAL void cairn__reserve_ensure(cairn_state *st);
/* Staging no live process owns: an earlier boot's entries, and this boot's
 * of owners whose lock is free (their process is gone). Removed unless
 * `dry`; fn (or NULL) gets each entry, its bytes and
 * why. Returns how many, or < 0 when tmp/ cannot be read. */
typedef void (*cairn__tmp_fn)(void *ud, const char *name, uint64_t bytes, const char *why);
CAIRN_INTERNAL int cairn__tmp_sweep(cairn_state *st, bool dry, cairn__tmp_fn fn, void *ud,
                                    cairn_error *err);

/* The state's lock: writers that publish objects hold it shared, deleters
 * (blob rm, gc) exclusive, only while deleting. */
CAIRN_INTERNAL int cairn__lock(cairn_state *st, bool exclusive, cairn_error *err);
CAIRN_INTERNAL void cairn__unlock(cairn_state *st);

/* Walk the union of a query over all layers. `sql` returns rows sorted by
 * column 0 (TEXT, unique within a layer). For each distinct key, fn gets the
 * row of the topmost layer that holds it. `bind` (or NULL) binds parameters
 * on each layer's statement. A non-zero return from fn stops the walk. */
CAIRN_INTERNAL int cairn__union_walk(cairn_state *st, const char *sql,
                                     int (*bind)(void *ud, sqlite3_stmt *s),
                                     int (*fn)(void *ud, size_t layer, sqlite3_stmt *s),
                                     void *ud, cairn_error *err);

/* The same walk, for keys whose value is merged across layers by a rule
 * (min, max, newest): for each distinct key, acc() is called with the row of
 * every layer that holds it, topmost first (`first` set for the first), then
 * emit() once. A non-zero return from either stops the walk. */
CAIRN_INTERNAL int cairn__union_walk_all(cairn_state *st, const char *sql,
                                         int (*bind)(void *ud, sqlite3_stmt *s),
                                         int (*acc)(void *ud, size_t layer, sqlite3_stmt *s,
                                                    bool first),
                                         int (*emit)(void *ud), void *ud, cairn_error *err);

/* ---- database --------------------------------------------------------- */

/* A layer's prepared statements, keyed by the address of their SQL (a string
 * literal): open addressing in a table that doubles when half full. No
 * statement is ever evicted, so a statement a caller is stepping stays valid
 * however many others are prepared meanwhile; the bound is the number of
 * literals in the library (each prepared once a layer it runs on). */
typedef struct cairn__stmt_slot {
    const char *sql; /* key: the address of a string literal */
    sqlite3_stmt *stmt;
} cairn__stmt_slot;

typedef struct cairn__stmt_cache {
    cairn__stmt_slot *slots; /* cap entries, NULL until the first statement */
    size_t cap;              /* a power of two */
    size_t n;
} cairn__stmt_cache;

typedef struct cairn__layer {
    char id[CAIRN_STATE_ID_LEN + 1];
    char *root;      /* state directory that holds this layer's objects */
    char *db_path;   /* its database file */
    int dirfd;       /* fd of root (shared with other layers of the same root: see owns_dirfd) */
    bool owns_dirfd;
    int blobfd;      /* blobs/sha256 of root, opened lazily (-1) */
    int snapfd;      /* snapshots/ of root, opened lazily (-1) */
    sqlite3 *db;     /* opened lazily for lowers */
    cairn__stmt_cache stmts;
    bool lazy;       /* a remote lower: its objects are fetched on first use
                      * (its root holds a `remote` file; see below) */
    void *fetch_conn; /* the provider's connection for this lazy layer, kept
                       * between fetches (NULL until the first); released
                       * with the layer */
} cairn__layer;

struct cairn_state {
    char *path;
    int dirfd;
    unsigned flags;
    bool frozen;
    bool readonly;   /* frozen, on a read-only filesystem, or opened CAIRN_OPEN_READONLY */
    bool rofs;       /* the state directory is on a read-only filesystem */
    char id[CAIRN_STATE_ID_LEN + 1];
    unsigned format;
    cairn__layer *layers;
    size_t n_layers;
    int tmpfd;       /* tmp/, -1 until first staged write */
    int txdepth;     /* nesting of cairn__tx_begin on layer 0 */
    int lockfd;      /* the lock file, -1 until first locked */
    int lockdepth;
    int stagefd;     /* the lock file, holding this state's staging byte; -1 until first staged */
    char stage_owner[17];
    unsigned timeout_ms; /* waits for the lock and for other writers (cairn_state_set_timeout) */
};

/* Open layer i's database when not yet open. */
CAIRN_INTERNAL int cairn__layer_open(cairn_state *st, size_t i, cairn_error *err);
/* A cached, reset statement on layer i (opened as needed) in *out. `sql`
 * must be a string literal (its address is the cache key). Returns 0 or the
 * error's code (also when err is NULL); *out is untouched on failure. */
CAIRN_INTERNAL int cairn__stmt(cairn_state *st, size_t i, const char *sql, sqlite3_stmt **out,
                               cairn_error *err);
/* The fds of a layer's object directories, opened on first use. */
CAIRN_INTERNAL int cairn__layer_blobfd(cairn_state *st, size_t i, cairn_error *err);
CAIRN_INTERNAL int cairn__layer_snapfd(cairn_state *st, size_t i, cairn_error *err);
/* Lazy lowers. A lower whose root holds a file named `remote` is a state
 * pulled lazily (cairn pull --lazy): its database is there, its objects are
 * fetched on first use into its own blobs/ and snapshots/ (a cache shared
 * by the states of the machine). Core cannot call lib/remote (it is above):
 * remote registers a provider at load time, and the readers of objects
 * (store, snapshot) call cairn__lower_fetch() when a lazy layer lacks the
 * file of an object its rows name. The provider verifies every byte
 * against its name before the object's file appears. */
enum { CAIRN__LOWER_BLOB, CAIRN__LOWER_SNAPSHOT };
typedef struct cairn__lower_provider {
    /* Make layers[layer]'s file of the object `name` (a blob's digest, a
     * snapshot's chain id) exist, verified; 0 or a negative code with err
     * set. Called only for a lazy layer. */
    int (*fetch)(cairn_state *st, size_t layer, int kind, const char *name, cairn_error *err);
    /* Let go of what fetch kept in a layer's fetch_conn (a connection to
     * the remote, reused by the handle's next fetches). */
    void (*release)(void *conn);
} cairn__lower_provider;
CAIRN_INTERNAL void cairn__lower_provider_set(const cairn__lower_provider *p);
/* Fetch through the registered provider; without one, a clear error. */
CAIRN_INTERNAL int cairn__lower_fetch(cairn_state *st, size_t layer, int kind, const char *name,
                                      cairn_error *err);
/* Release a layer's fetch_conn (layer_clear). */
CAIRN_INTERNAL void cairn__lower_release(cairn__layer *l);

/* tmp/ of the state, for staging. */
CAIRN_INTERNAL int cairn__tmpfd(cairn_state *st, cairn_error *err);
/* Fail with CAIRN_E_FROZEN / -EROFS when the state may not be written. */
CAIRN_INTERNAL int cairn__check_writable(cairn_state *st, cairn_error *err);

/* Write transactions on layer 0: BEGIN IMMEDIATE (waits for other writers),
 * nestable (only the outermost commits). Rollback undoes the outermost. */
CAIRN_INTERNAL int cairn__tx_begin(cairn_state *st, cairn_error *err);
CAIRN_INTERNAL int cairn__tx_commit(cairn_state *st, cairn_error *err);
CAIRN_INTERNAL void cairn__tx_rollback(cairn_state *st);

/* Run one statement on layer 0 in a transaction of its own (nested in one
 * already open), its parameters bound in order as `types` says: 's' a
 * const char * (NULL binds SQL NULL), 'i' an int64_t. `sql`: a literal.
 * Returns the number of rows it changed, or < 0. */
CAIRN_INTERNAL int cairn__exec_args(cairn_state *st, cairn_error *err, const char *sql,
                                    const char *types, ...);
/* cairn__exec_args() of one text parameter (?1 = key); 0 or < 0. */
CAIRN_INTERNAL int cairn__exec_key(cairn_state *st, const char *sql, const char *key,
                                   cairn_error *err);
/* Does any layer (0 first) hold a row for `sql` (a literal, ?1 = key)?
 * 1 (*layer, when not NULL, set to the first that does), 0, or < 0. */
CAIRN_INTERNAL int cairn__layers_have(cairn_state *st, const char *sql, const char *key, int *layer,
                                      cairn_error *err);
/* Bytes below at/name, best effort: a file's, or a tree's sum (not following
 * symlinks, 64 levels deep); allocated: the blocks it takes, else sizes. */
CAIRN_INTERNAL uint64_t cairn__tree_bytes(int at, const char *name, bool allocated);
/* Run SQL without results on layer i. */
CAIRN_INTERNAL int cairn__exec(cairn_state *st, size_t i, const char *sql, cairn_error *err);
/* Step a statement that returns no row (or whose rows are ignored); resets it. */
CAIRN_INTERNAL int cairn__step_done(cairn_state *st, size_t i, sqlite3_stmt *s, cairn_error *err);

#endif
