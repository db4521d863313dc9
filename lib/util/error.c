/* error.c: return codes and messages (cairn/error.h). */
#include "util/util.h"

const char *cairn_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
    case CAIRN_E_CORRUPT:
        return "corrupt object";
    case CAIRN_E_FORMAT:
        return "bad format";
    case CAIRN_E_NEWER:
        return "written by a newer cairn";
    case CAIRN_E_NOTSTATE:
        return "not a cairn state";
    case CAIRN_E_DIGEST:
        return "bad digest";
    case CAIRN_E_MISMATCH:
        return "digest mismatch";
    case CAIRN_E_DB:
        return "database error";
    case CAIRN_E_UNSAFE:
        return "unsafe input";
    case CAIRN_E_FROZEN:
        return "state is frozen";
    case CAIRN_E_INUSE:
        return "object in use";
    case CAIRN_E_LOWER:
        return "lower state missing or replaced";
    case CAIRN_E_TRUNCATED:
        return "truncated input";
    case CAIRN_E_BUSY:
        return "state busy";
    case CAIRN_E_USER:
        return "stopped by the caller";
    default:
        if (code < 0 && code > CAIRN_E_BASE) {
            /* Not strerror(): its buffer for an unknown value is shared by
             * every thread. The description is a constant string. */
            const char *d = strerrordesc_np(-code);
            return d ? d : "unknown error";
        }
        return "unknown error";
    }
}

static void vset(cairn_error *err, int code, const char *prefix, const char *fmt, va_list ap)
{
    char buf[CAIRN_ERROR_MESSAGE_MAX];
    char expanded[CAIRN_ERROR_MESSAGE_MAX];
    size_t o = 0;

    /* Expand %m ourselves from the code, not from errno, which may have moved. */
    for (const char *p = fmt; *p && o + 1 < sizeof(expanded); p++) {
        if (p[0] == '%' && p[1] == 'm') {
            const char *m = cairn_strerror(code);
            size_t n = strlen(m);
            if (n > sizeof(expanded) - 1 - o)
                n = sizeof(expanded) - 1 - o;
            /* A '%' in the message would be read as a conversion: strerror has none. */
            memcpy(expanded + o, m, n);
            o += n;
            p++;
        } else {
            expanded[o++] = *p;
        }
    }
    expanded[o] = 0;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    vsnprintf(buf, sizeof(buf), expanded, ap);
#pragma GCC diagnostic pop
    err->code = code;
    size_t n = strlen(buf);
    if (n >= sizeof(err->message))
        n = sizeof(err->message) - 1;
    memcpy(err->message, buf, n);
    err->message[n] = 0;
    if (prefix && n + 2 < sizeof(err->message)) {
        memcpy(err->message + n, ": ", 3);
        n += 2;
        size_t m = strlen(prefix);
        if (m > sizeof(err->message) - 1 - n)
            m = sizeof(err->message) - 1 - n;
        memcpy(err->message + n, prefix, m);
        err->message[n + m] = 0;
    }
}

int cairn__err(cairn_error *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vset(err, code, NULL, fmt, ap);
    va_end(ap);
    return code;
}

int cairn__err_prefix(cairn_error *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    char old[CAIRN_ERROR_MESSAGE_MAX];
    memcpy(old, err->message, sizeof(old));
    va_list ap;
    va_start(ap, fmt);
    vset(err, code, old[0] ? old : NULL, fmt, ap);
    va_end(ap);
    return code;
}

int cairn__err_db(cairn_error *err, sqlite3 *db, int rc, const char *what)
{
    int code = CAIRN_E_DB;
    switch (rc & 0xff) {
    case SQLITE_FULL:
        code = -ENOSPC;
        break;
    case SQLITE_READONLY:
        code = -EROFS;
        break;
    case SQLITE_IOERR:
        code = -EIO;
        break;
    case SQLITE_NOMEM:
        code = -ENOMEM;
        break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        code = CAIRN_E_CORRUPT;
        break;
    case SQLITE_CANTOPEN:
        code = -ENOENT;
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        /* After the busy timeout: another connection holds the database. */
        code = CAIRN_E_BUSY;
        break;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        code = -EACCES;
        break;
    default:
        break;
    }
    const char *fname = db ? sqlite3_db_filename(db, "main") : NULL;
    return cairn__err(err, code, "%s%s%s: %s%s", fname && *fname ? fname : "database",
                      what ? ": " : "", what ? what : "",
                      db ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
                      code == CAIRN_E_BUSY ? " (another writer holds it)" : "");
}

int cairn__opts_version(unsigned version, unsigned max, const char *what, cairn_error *err)
{
    if (version == 0 || version > max)
        return cairn__err(err, -EINVAL, "%s: options version %u is not supported (1 to %u)",
                          what, version, max);
    return 0;
}

int cairn__progress(cairn_progress_fn fn, void *ud, uint64_t done, uint64_t total, const char *what,
                    cairn_error *err)
{
    if (!fn || fn(ud, done, total) == 0)
        return 0;
    return cairn__err(err, CAIRN_E_USER, "%s: stopped by the caller at %llu of %llu", what,
                      (unsigned long long)done, (unsigned long long)total);
}
