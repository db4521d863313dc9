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
    r = cairn__exec_args(st, err, sql, "ssii", obj, st->id, (int64_t)cairn__now(), (int64_t)hits);
    return r < 0 ? r : 0;
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
    int i;
    int r = cairn__layers_have(st, blob ? blob_sql : snap_sql, name, &i, err);
    if (r <= 0)
        return r;
    int dfd =
        blob ? cairn__layer_blobfd(st, (size_t)i, NULL) : cairn__layer_snapfd(st, (size_t)i, NULL);
    struct stat sb;
    /* the row names a missing object: a miss; but a lazy lower's object is
     * there to be fetched at its first read (core.h) */
    if (!st->layers[i].lazy &&
        (dfd < 0 || fstatat(dfd, cairn__digest_hex(name), &sb, AT_SYMLINK_NOFOLLOW) < 0))
        return 0;
    if (layer)
        *layer = i;
    return 1;
}
