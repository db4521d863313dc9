/* util/util.h: helpers that know nothing of a state: cleanup, errors, time,
 * hex, SHA-256, files through directory fds, string vectors and sets.
 * What the library's files share about a state is in core/core.h.
 */
#ifndef CAIRN_UTIL_H
#define CAIRN_UTIL_H

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
/* An options struct's version: 1 up to `max` (the library's own) is known;
 * anything else fails with -EINVAL naming `what`. A struct of an older
 * version is a prefix of the current one: zero past `version` (and the
 * fields an older caller does not have) means each field's default. */
CAIRN_INTERNAL int cairn__opts_version(unsigned version, unsigned max, const char *what,
                                       cairn_error *err);
/* Report progress to `fn` (may be NULL): 0 to go on, or CAIRN_E_USER (in
 * err, naming `what`) when the callback asked to stop. */
CAIRN_INTERNAL int cairn__progress(cairn_progress_fn fn, void *ud, uint64_t done, uint64_t total,
                                   const char *what, cairn_error *err);

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
/* Open `path` (relative, one or more components) beneath dirfd, following
 * no symlink at any step (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or
 * O_NOFOLLOW at every step where openat2 is missing). -ELOOP when a step
 * is a symlink, -EXDEV when the path would leave dirfd. O_CLOEXEC is added. */
CAIRN_INTERNAL int cairn__open_beneath(int dirfd, const char *path, int flags, mode_t mode);
/* Does dirfd/name hold the blob `digest` of `size` bytes: a regular file
 * (not a symlink, a FIFO, a device) of that size whose bytes hash to it?
 * 1 yes, 0 no, -errno (-ENOENT: not there). Proves an object found under a
 * name before anything trusts it (EEXIST on publishing). */
CAIRN_INTERNAL int cairn__file_is(int dirfd, const char *name, uint64_t size, const char *digest);
/* Remove dirfd/name and everything below it; missing is not an error. */
CAIRN_INTERNAL int cairn__rm_rf_at(int dirfd, const char *name);
/* Make dst a copy of src: a hardlink when allowed, else a reflink, else a
 * byte copy (written to a temporary name and renamed without replacing).
 * Returns 0 (linked), 1 (reflinked), 2 (copied), -EEXIST if dst exists, or
 * -errno. `how`: 0 any, 'l' link only, 'r' reflink or copy, 'c' copy. */
CAIRN_INTERNAL int cairn__clone_file_at(int srcdirfd, const char *src, int dstdirfd,
                                        const char *dst, int how);
/* Copy from in's offset to its end into out: copy_file_range for `size`
 * bytes (the length expected), then read and write for what is left, or
 * all of it where the kernel cannot. 0 or -errno. */
CAIRN_INTERNAL int cairn__copy_fd(int in, int out, off_t size);

/* A text column, "" for NULL. */
static inline const char *cairn__col(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? (const char *)t : "";
}
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
