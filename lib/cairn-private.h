/* cairn-private.h: what the library's files share and the public API hides.
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
#ifndef CAIRN_PRIVATE_H
#define CAIRN_PRIVATE_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cairn/cairn.h"

#define CAIRN_INTERNAL __attribute__((visibility("hidden")))

/* ---- cleanup ---------------------------------------------------------- */

static inline void cairn__freep(void *p)
{
    free(*(void **)p);
}
static inline void cairn__closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}
static inline void cairn__fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}
static inline void cairn__finalizep(sqlite3_stmt **s)
{
    sqlite3_finalize(*s);
}

#define _cleanup_(f)     __attribute__((cleanup(f)))
#define _cleanup_free_   _cleanup_(cairn__freep)
#define _cleanup_close_  _cleanup_(cairn__closep)
#define _cleanup_fclose_ _cleanup_(cairn__fclosep)
#define _cleanup_stmt_   _cleanup_(cairn__finalizep)

static inline void *cairn__steal_ptr(void *pp)
{
    void **p = pp;
    void *v = *p;
    *p = NULL;
    return v;
}
#define steal_pointer(pp) ((__typeof__(*(pp)))cairn__steal_ptr(pp))
static inline int steal_fd(int *fd)
{
    int v = *fd;
    *fd = -1;
    return v;
}

#define CAIRN_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define CAIRN_UNUSED        __attribute__((unused))
#define CAIRN_PRINTF(a, b)  __attribute__((format(printf, a, b)))

/* ---- errors ----------------------------------------------------------- */

/* Set err (when not NULL) to `code` and the formatted message; return code.
 * %m in fmt is expanded from -code when code is an errno value. */
CAIRN_INTERNAL int cairn__err(cairn_error *err, int code, const char *fmt, ...) CAIRN_PRINTF(3, 4);
/* Prefix the message already in err: "prefix: old message", with `code` as
 * the new code. Returns code. */
CAIRN_INTERNAL int cairn__err_prefix(cairn_error *err, int code, const char *fmt, ...)
    CAIRN_PRINTF(3, 4);
/* An error from SQLite on `db`, as CAIRN_E_DB (or -ENOSPC, -EROFS, ... where
 * SQLite's extended code says so). */
CAIRN_INTERNAL int cairn__err_db(cairn_error *err, sqlite3 *db, int rc, const char *what);

/* ---- small helpers ---------------------------------------------------- */

CAIRN_INTERNAL int64_t cairn__now(void);     /* unix seconds */
CAIRN_INTERNAL int64_t cairn__now_ns(void);  /* CLOCK_REALTIME in ns */
CAIRN_INTERNAL void cairn__hex(char *out, const unsigned char *in, size_t n); /* out: 2n+1 */
CAIRN_INTERNAL int cairn__random_id(char out[CAIRN_STATE_ID_LEN + 1]);
/* Format a digest "sha256:<hex>" from 32 raw bytes. */
CAIRN_INTERNAL void cairn__digest_fmt(char out[CAIRN_DIGEST_LEN + 1], const unsigned char raw[32]);
/* The hex part of a checked digest. */
static inline const char *cairn__digest_hex(const char *digest)
{
    return digest + 7;
}

/* ---- SHA-256 ---------------------------------------------------------- */

typedef struct cairn__sha256 cairn__sha256;
CAIRN_INTERNAL cairn__sha256 *cairn__sha256_new(void);
CAIRN_INTERNAL void cairn__sha256_update(cairn__sha256 *h, const void *buf, size_t len);
CAIRN_INTERNAL void cairn__sha256_final(cairn__sha256 *h, char out[CAIRN_DIGEST_LEN + 1]);
CAIRN_INTERNAL void cairn__sha256_free(cairn__sha256 *h);
/* Digest of a whole buffer. */
CAIRN_INTERNAL void cairn__sha256_buf(const void *buf, size_t len, char out[CAIRN_DIGEST_LEN + 1]);
/* Digest of everything readable from fd; returns bytes read or -errno. */
CAIRN_INTERNAL int64_t cairn__sha256_fd(int fd, char out[CAIRN_DIGEST_LEN + 1]);

/* ---- files ------------------------------------------------------------ */

CAIRN_INTERNAL int cairn__write_all(int fd, const void *buf, size_t len);           /* 0/-errno */
CAIRN_INTERNAL ssize_t cairn__read_all(int fd, void *buf, size_t len);              /* short at EOF */
/* Read a small file (< max bytes) at dirfd/name into a NUL-terminated buffer.
 * -ELOOP for a symlink, -EFBIG when larger, CAIRN_E_FORMAT when not a regular
 * file (a FIFO, a device: never opened blocking, never read). */
CAIRN_INTERNAL int cairn__read_file_at(int dirfd, const char *name, size_t max, char **out,
                                       size_t *out_len);
/* Write a small file atomically: tmp, fsync, rename, fsync dir. */
CAIRN_INTERNAL int cairn__write_file_atomic(int dirfd, const char *name, const void *buf,
                                            size_t len, mode_t mode);
CAIRN_INTERNAL int cairn__mkdir_at(int dirfd, const char *name, mode_t mode); /* EEXIST ok */
CAIRN_INTERNAL int cairn__mkdir_p(const char *path, mode_t mode);
CAIRN_INTERNAL int cairn__fsync_at(int dirfd, const char *name); /* name NULL: dirfd itself */
CAIRN_INTERNAL int cairn__rename_noreplace(int olddirfd, const char *oldname, int newdirfd,
                                           const char *newname);
/* Remove dirfd/name and everything below it; missing is not an error. */
CAIRN_INTERNAL int cairn__rm_rf_at(int dirfd, const char *name);
/* Make dst a copy of src: a hardlink when allowed, else a reflink, else a
 * byte copy (written to a temporary name and renamed without replacing).
 * Returns 0 (linked), 1 (reflinked), 2 (copied), -EEXIST if dst exists, or
 * -errno. `how`: 0 any, 'l' link only, 'r' reflink or copy, 'c' copy. */
CAIRN_INTERNAL int cairn__clone_file_at(int srcdirfd, const char *src, int dstdirfd,
                                        const char *dst, int how);

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
 * (how: see cairn__clone_file_at), staged under tfd (tmp/) and renamed
 * without replacing (-EEXIST: already there). *bytes grows by bytes copied. */
CAIRN_INTERNAL int cairn__snapshot_clone(int ssfd, const char *name, int tfd, int dsfd, int how,
                                         uint64_t *bytes);
/* A directory built beside `path` and renamed onto it when complete:
 * "<path>.<tag>-<pid>"; sweep removes those whose process is gone. */
CAIRN_INTERNAL char *cairn__side_name(const char *path, const char *tag);
CAIRN_INTERNAL void cairn__side_sweep(const char *path, const char *tag);
/* Apply the flatten policy of a writable stack being opened (merge.c). */
CAIRN_INTERNAL int cairn__flatten_on_open(cairn_state *st, cairn_error *err);
/* A new staging name in tmp/: "<boot-id>-<tag>-<random>". */
CAIRN_INTERNAL int cairn__tmp_name(char *out, size_t size, const char *tag);

/* The state's lock: writers that publish objects hold it shared, deleters
 * (blob rm, gc) exclusive, only while deleting. */
CAIRN_INTERNAL int cairn__lock(cairn_state *st, bool exclusive, cairn_error *err);
CAIRN_INTERNAL void cairn__unlock(cairn_state *st);

/* A text column, "" for NULL. */
static inline const char *cairn__col(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? (const char *)t : "";
}

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

#define CAIRN_SCHEMA_VERSION 1

/* A database of the stack: [0] is the state's own (writable unless the state
 * is frozen or opened read-only), the rest are lowers, opened immutable. */
typedef struct cairn__stmt_slot {
    const char *sql; /* key: the address of a string literal */
    sqlite3_stmt *stmt;
} cairn__stmt_slot;

#define CAIRN_STMT_CACHE 64

typedef struct cairn__layer {
    char id[CAIRN_STATE_ID_LEN + 1];
    char *root;      /* state directory that holds this layer's objects */
    char *db_path;   /* its database file */
    int dirfd;       /* fd of root (shared with other layers of the same root: see owns_dirfd) */
    bool owns_dirfd;
    int blobfd;      /* blobs/sha256 of root, opened lazily (-1) */
    int snapfd;      /* snapshots/ of root, opened lazily (-1) */
    sqlite3 *db;     /* opened lazily for lowers */
    cairn__stmt_slot stmts[CAIRN_STMT_CACHE];
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
};

/* Open layer i's database when not yet open. */
CAIRN_INTERNAL int cairn__layer_open(cairn_state *st, size_t i, cairn_error *err);
/* A cached, reset statement on layer i (opened as needed). `sql` must be a
 * string literal (its address is the cache key). NULL on error (err set). */
CAIRN_INTERNAL sqlite3_stmt *cairn__stmt(cairn_state *st, size_t i, const char *sql,
                                         cairn_error *err);
/* The fds of a layer's object directories, opened on first use. */
CAIRN_INTERNAL int cairn__layer_blobfd(cairn_state *st, size_t i, cairn_error *err);
CAIRN_INTERNAL int cairn__layer_snapfd(cairn_state *st, size_t i, cairn_error *err);
/* tmp/ of the state, for staging. */
CAIRN_INTERNAL int cairn__tmpfd(cairn_state *st, cairn_error *err);
/* Fail with CAIRN_E_FROZEN / -EROFS when the state may not be written. */
CAIRN_INTERNAL int cairn__check_writable(cairn_state *st, cairn_error *err);

/* Write transactions on layer 0: BEGIN IMMEDIATE (waits for other writers),
 * nestable (only the outermost commits). Rollback undoes the outermost. */
CAIRN_INTERNAL int cairn__tx_begin(cairn_state *st, cairn_error *err);
CAIRN_INTERNAL int cairn__tx_commit(cairn_state *st, cairn_error *err);
CAIRN_INTERNAL void cairn__tx_rollback(cairn_state *st);

/* Run one statement with one text parameter (?1 = key) on layer 0 in a
 * transaction of its own (nested in one already open). `sql`: a literal. */
CAIRN_INTERNAL int cairn__exec_key(cairn_state *st, const char *sql, const char *key,
                                   cairn_error *err);
/* Run SQL without results on layer i. */
CAIRN_INTERNAL int cairn__exec(cairn_state *st, size_t i, const char *sql, cairn_error *err);
/* Step a statement that returns no row (or whose rows are ignored); resets it. */
CAIRN_INTERNAL int cairn__step_done(cairn_state *st, size_t i, sqlite3_stmt *s, cairn_error *err);

/* Create or migrate the schema of a freshly opened writable database. */
CAIRN_INTERNAL int cairn__db_migrate(sqlite3 *db, const char *path, cairn_error *err);
/* Read the schema version of a database (PRAGMA user_version). */
CAIRN_INTERNAL int cairn__db_schema(sqlite3 *db);
/* Open a database file: writable (WAL), read-only, or immutable (frozen
 * states and lowers: no locks, nothing written beside it). */
enum { CAIRN__DB_RW, CAIRN__DB_RO, CAIRN__DB_IMMUTABLE };
CAIRN_INTERNAL int cairn__db_open(const char *path, int mode, sqlite3 **out, cairn_error *err);

/* A growing vector of owned strings. */
typedef struct cairn__strv {
    char **v;
    size_t n, cap;
} cairn__strv;
CAIRN_INTERNAL int cairn__strv_push(cairn__strv *sv, const char *s); /* 0 or -ENOMEM */
CAIRN_INTERNAL void cairn__strv_free(cairn__strv *sv);               /* leaves it empty */

/* A set of strings, for listing unions without duplicates. */
typedef struct cairn__strset cairn__strset;
CAIRN_INTERNAL cairn__strset *cairn__strset_new(void);
CAIRN_INTERNAL int cairn__strset_add(cairn__strset *s, const char *str); /* 1 new, 0 had, <0 */
CAIRN_INTERNAL bool cairn__strset_has(const cairn__strset *s, const char *str);
CAIRN_INTERNAL void cairn__strset_free(cairn__strset *s);

#endif
