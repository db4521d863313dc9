/* usage.c: the usage of objects (core/usage.h): last use times and hit
 * counts, one row per object and per state, so that a merge keeps the max
 * of times and each state's count; and whether an object is there.
 */
#include "core/usage.h"

#include <sys/stat.h>

/* ---- usage ------------------------------------------------------------ */

int cairn__usage_name(char *out, size_t size, const char *kind, const char *name)
{
    bool bare = !strcmp(kind, "blob") || !strcmp(kind, "snapshot");
    if ((size_t)snprintf(out, size, "%s%s%s", bare ? "" : kind, bare ? "" : ":", name) >= size)
        return -ENAMETOOLONG;
    return 0;
}

int cairn__usage_mark(cairn_state *st, const char *kind, const char *name, unsigned hits,
                       cairn_error *err)
{
    if (st->readonly)
        return 0;
    char obj[CAIRN__USAGE_NAME_MAX];
    int r = cairn__usage_name(obj, sizeof(obj), kind, name);
    if (r < 0)
        return cairn__err(err, r, "%s %s: name too long", kind, name);
    static const char sql[] =
        "INSERT INTO usage(object, state, last_used, hits) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(object, state) DO UPDATE SET "
        "last_used = max(last_used, excluded.last_used), hits = hits + excluded.hits";
    r = cairn__tx_begin(st, err);
    if (r < 0)
        return r;
    sqlite3_stmt *q;
    r = cairn__stmt(st, 0, sql, &q, err);
    if (r < 0) {
        cairn__tx_rollback(st);
        return r;
    }
    sqlite3_bind_text(q, 1, obj, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, st->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, cairn__now());
    sqlite3_bind_int64(q, 4, hits);
    r = cairn__step_done(st, 0, q, err);
    if (r < 0) {
        cairn__tx_rollback(st);
        return r;
    }
    return cairn__tx_commit(st, err);
}

int cairn__usage_get(cairn_state *st, const char *kind, const char *name, int64_t *last_used,
                     uint64_t *hits, cairn_error *err)
{
    char obj[CAIRN__USAGE_NAME_MAX];
    int r = cairn__usage_name(obj, sizeof(obj), kind, name);
    if (r < 0)
        return cairn__err(err, r, "%s %s: name too long", kind, name);
    static const char sql[] = "SELECT state, last_used, hits FROM usage WHERE object = ?";
    /* Per state, the max count seen in any layer (the same state's row may
     * sit in several layers after merges); summed over states. */
    struct {
        char state[CAIRN_STATE_ID_LEN + 1];
        uint64_t hits;
    } seen[16];
    size_t n_seen = 0;
    int64_t lu = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < st->n_layers; i++) {
        sqlite3_stmt *s;
        r = cairn__stmt(st, i, sql, &s, err);
        if (r < 0)
            return r;
        sqlite3_bind_text(s, 1, obj, -1, SQLITE_TRANSIENT);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            const char *state = cairn__col(s, 0);
            int64_t t = sqlite3_column_int64(s, 1);
            uint64_t h = (uint64_t)sqlite3_column_int64(s, 2);
            if (t > lu)
                lu = t;
            size_t k = 0;
            while (k < n_seen && strcmp(seen[k].state, state) != 0)
                k++;
            if (k < n_seen) {
                if (h > seen[k].hits) {
                    total += h - seen[k].hits;
                    seen[k].hits = h;
                }
            } else {
                total += h;
                if (n_seen < CAIRN_ARRAY_SIZE(seen)) {
                    snprintf(seen[n_seen].state, sizeof(seen[n_seen].state), "%s", state);
                    seen[n_seen++].hits = h;
                }
            }
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return cairn__err_db(err, st->layers[i].db, rc, "usage");
    }
    if (last_used)
        *last_used = lu;
    if (hits)
        *hits = total;
    return 0;
}

/* ---- objects ---------------------------------------------------------- */

int cairn__object_present(cairn_state *st, const char *kind, const char *name, int *layer,
                          cairn_error *err)
{
    static const char blob_sql[] = "SELECT 1 FROM blobs WHERE digest = ?";
    static const char snap_sql[] = "SELECT 1 FROM snapshots WHERE chain_id = ?";
    bool blob = !strcmp(kind, "blob");
    if (cairn_digest_check(name, NULL) < 0)
        return 0;
    for (size_t i = 0; i < st->n_layers; i++) {
        sqlite3_stmt *s;
        int r = cairn__stmt(st, i, blob ? blob_sql : snap_sql, &s, err);
        if (r < 0)
            return r;
        sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc == SQLITE_DONE)
            continue;
        if (rc != SQLITE_ROW)
            return cairn__err_db(err, st->layers[i].db, rc, "lookup");
        int dfd = blob ? cairn__layer_blobfd(st, i, NULL) : cairn__layer_snapfd(st, i, NULL);
        struct stat sb;
        if (dfd < 0 || fstatat(dfd, cairn__digest_hex(name), &sb, AT_SYMLINK_NOFOLLOW) < 0)
            return 0; /* the row names a missing object: a miss */
        if (layer)
            *layer = (int)i;
        return 1;
    }
    return 0;
}
