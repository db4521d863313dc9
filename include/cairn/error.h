/* cairn/error.h: return codes and the optional error message.
 *
 * Every cairn function that can fail returns an int: 0 (or a count) on
 * success, a negative errno value (-ENOENT, -EIO, ...) or one of the CAIRN_E_
 * codes below on failure. The codes live in a reserved range well below any
 * errno value so the two never collide.
 *
 * Functions take an optional `cairn_error *err` as their last parameter. When
 * it is not NULL and the call fails, it receives the code and a message that
 * names the object and the cause, ready for a person to read. The library
 * never prints and keeps no thread-local error state.
 */
#ifndef CAIRN_ERROR_H
#define CAIRN_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define CAIRN_EXPORT __attribute__((visibility("default")))
#else
#define CAIRN_EXPORT
#endif

enum {
    CAIRN_E_BASE = -10000,
    CAIRN_E_CORRUPT = -10001,   /* bytes do not match their name, or a row names a missing object */
    CAIRN_E_FORMAT = -10002,    /* a file cairn reads is not in the expected format */
    CAIRN_E_NEWER = -10003,     /* written by a newer cairn (format or schema) */
    CAIRN_E_NOTSTATE = -10004,  /* the directory is not a cairn state */
    CAIRN_E_DIGEST = -10005,    /* a digest is malformed or of an unsupported algorithm */
    CAIRN_E_MISMATCH = -10006,  /* data does not match the digest it was expected to have */
    CAIRN_E_DB = -10007,        /* the metadata database failed */
    CAIRN_E_UNSAFE = -10008,    /* hostile input: a path escaping its root, a bad link, ... */
    CAIRN_E_FROZEN = -10009,    /* a write to a frozen (read-only) state */
    CAIRN_E_INUSE = -10010,     /* the object is in use (referenced, leased, mounted) */
    CAIRN_E_LOWER = -10011,     /* a lower state has vanished or been replaced */
    CAIRN_E_TRUNCATED = -10012, /* input ended before it was complete */
    CAIRN_E_BUSY = -10013,      /* another process held the state (its lock or its database)
                                 * past the wait (cairn_state_set_timeout()) */
    CAIRN_E_USER = -10014,      /* a callback of the caller returned non-zero: stopped */
    CAIRN_E_LAST = -10015,
};

#define CAIRN_ERROR_MESSAGE_MAX 1024

/* Caller-allocated; zero it (or not) before use, cairn only writes it on failure. */
typedef struct cairn_error {
    int code;
    char message[CAIRN_ERROR_MESSAGE_MAX];
} cairn_error;

/* A short, static description of a return code (errno or CAIRN_E_*). */
CAIRN_EXPORT const char *cairn_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
