/* lease.c: leases (cairn/lease.h).
 *
 * Tables: leases(id, created, expires) and lease_resources(lease, kind,
 * name), local to the state's own database (layer 0), never merged.
 * Adding a resource holds the state's lock shared, like any writer that
 * publishes a reference, so that a gc deleting (exclusive) either sees the
 * lease or runs before it exists.
 */
#include "cache/cache-private.h"

static int check_id(const char *id, cairn_error *err)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > CAIRN_LEASE_ID_MAX)
        return cairn__err(err, -EINVAL, "lease id '%.140s': must have 1 to %d characters",
                          id ? id : "", CAIRN_LEASE_ID_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return cairn__err(err, -EINVAL,
                              "lease id '%.140s': only letters, digits and '.-_' are allowed", id);
    }
    return 0;
}

static int check_resource(const char *kind, const char *name, cairn_error *err)
{
    if (!kind || (strcmp(kind, "blob") && strcmp(kind, "snapshot") && strcmp(kind, "record") &&
                  strcmp(kind, "volume")))
        return cairn__err(err, -EINVAL,
                          "lease resource kind '%s': expected blob, snapshot, record or volume",
                          kind ? kind : "");
    if (!name || !*name || strlen(name) > CAIRN_LEASE_NAME_MAX)
        return cairn__err(err, -EINVAL, "lease resource %s: the name must have 1 to %d characters",
                          kind, CAIRN_LEASE_NAME_MAX);
    if (strcmp(kind, "volume") != 0) {
        cairn_error e = {0};
        if (cairn_digest_check(name, &e) < 0)
            return cairn__err(err, CAIRN_E_DIGEST, "lease resource %s: %s", kind, e.message);
    }
    return 0;
}

/* When a lease of `ttl` seconds taken at `now` expires: 0 (never) for no
 * ttl; a ttl past the end of time saturates rather than wrap negative
 * (an expiry in the past would let gc take what the lease holds). */
static int64_t expiry(int64_t now, int64_t ttl)
{
    int64_t e;
    if (!ttl)
        return 0;
    return __builtin_add_overflow(now, ttl, &e) ? INT64_MAX : e;
}

int cairn_lease_create(cairn_state *st, const char *id, int64_t ttl, char *out_id,
                       cairn_error *err)
{
    char rnd[CAIRN_STATE_ID_LEN + 1];
    if (!id) {
        int r = cairn__random_id(rnd);
        if (r < 0)
            return cairn__err(err, r, "random id: %m");
        id = rnd;
    }
    int r = check_id(id, err);
    if (r < 0)
        return r;
    if (ttl < 0)
        return cairn__err(err, -EINVAL, "lease %s: negative time to live", id);
    r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    static const char sql[] = "INSERT INTO leases(id, created, expires) VALUES (?, ?, ?) "
                              "ON CONFLICT(id) DO NOTHING";
    int64_t now = cairn__now();
    r = cairn__exec_args(st, err, sql, "sii", id, now, expiry(now, ttl));
    if (r < 0)
        return r;
    if (r == 0)
        return cairn__err(err, -EEXIST, "lease %s: already exists", id);
    if (out_id)
        snprintf(out_id, CAIRN_LEASE_ID_MAX + 1, "%s", id);
    return 0;
}

int cairn_lease_renew(cairn_state *st, const char *id, int64_t ttl, cairn_error *err)
{
    int r = check_id(id, err);
    if (r < 0)
        return r;
    if (ttl < 0)
        return cairn__err(err, -EINVAL, "lease %s: negative time to live", id);
    static const char sql[] = "UPDATE leases SET expires = ?2 WHERE id = ?1";
    r = cairn__lock(st, false, err);
    if (r < 0)
        return r;
    r = cairn__exec_args(st, err, sql, "si", id, expiry(cairn__now(), ttl));
    cairn__unlock(st);
    if (r == 0)
        return cairn__err(err, -ENOENT, "lease %s: not found", id);
    return r < 0 ? r : 0;
}

int cairn_lease_remove(cairn_state *st, const char *id, cairn_error *err)
{
    int r = check_id(id, err);
    if (r < 0)
        return r;
    static const char sql[] = "DELETE FROM leases WHERE id = ?";
    r = cairn__exec_args(st, err, sql, "s", id);
    if (r == 0)
        return cairn__err(err, -ENOENT, "lease %s: not found", id);
    return r < 0 ? r : 0;
}

int cairn_lease_resource_add(cairn_state *st, const char *id, const char *kind, const char *name,
                             cairn_error *err)
{
    int r = check_id(id, err);
    if (r == 0)
        r = check_resource(kind, name, err);
    if (r < 0)
        return r;
    static const char sql[] = "INSERT INTO lease_resources(lease, kind, name) "
                              "SELECT id, ?2, ?3 FROM leases WHERE id = ?1 "
                              "ON CONFLICT DO NOTHING";
    static const char has[] = "SELECT 1 FROM leases WHERE id = ?";
    r = cairn__lock(st, false, err);
    if (r < 0)
        return r;
    r = cairn__tx_begin(st, err);
    if (r < 0) {
        cairn__unlock(st);
        return r;
    }
    sqlite3_stmt *q;
    r = cairn__stmt(st, 0, has, &q, err);
    if (r == 0) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(q);
        sqlite3_reset(q);
        if (rc == SQLITE_DONE)
            r = cairn__err(err, -ENOENT, "lease %s: not found", id);
        else if (rc != SQLITE_ROW)
            r = cairn__err_db(err, st->layers[0].db, rc, "lease lookup");
    }
    if (r == 0)
        r = cairn__exec_args(st, err, sql, "sss", id, kind, name);
    if (r >= 0) {
        int c = cairn__tx_commit(st, err);
        if (c < 0)
            r = c;
    } else {
        cairn__tx_rollback(st);
    }
    cairn__unlock(st);
    return r < 0 ? r : (r > 0);
}

int cairn_lease_resource_remove(cairn_state *st, const char *id, const char *kind, const char *name,
                                cairn_error *err)
{
    int r = check_id(id, err);
    if (r == 0)
        r = check_resource(kind, name, err);
    if (r < 0)
        return r;
    static const char sql[] = "DELETE FROM lease_resources WHERE lease = ? AND kind = ? AND name = ?";
    r = cairn__exec_args(st, err, sql, "sss", id, kind, name);
    return r < 0 ? r : (r > 0);
}

static void info_from(sqlite3_stmt *s, cairn_lease_info *info)
{
    memset(info, 0, sizeof(*info));
    snprintf(info->id, sizeof(info->id), "%s", cairn__col(s, 0));
    info->created = sqlite3_column_int64(s, 1);
    info->expires = sqlite3_column_int64(s, 2);
    info->resources = (uint64_t)sqlite3_column_int64(s, 3);
}

static const char list_sql[] =
    "SELECT id, created, expires, (SELECT count(*) FROM lease_resources WHERE lease = id) "
    "FROM leases ORDER BY id";

int cairn_lease_list(cairn_state *st, cairn_lease_fn fn, void *userdata, cairn_error *err)
{
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, list_sql, &s, err);
    if (r < 0)
        return r;
    /* Read all first: fn may call back into the library. */
    cairn_lease_info *v = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            cairn_lease_info *nv = realloc(v, cap * sizeof(*nv));
            if (!nv) {
                r = cairn__err(err, -ENOMEM, "out of memory");
                break;
            }
            v = nv;
        }
        info_from(s, &v[n++]);
    }
    sqlite3_reset(s);
    if (r == 0 && rc != SQLITE_DONE)
        r = cairn__err_db(err, st->layers[0].db, rc, "lease list");
    for (size_t i = 0; r == 0 && i < n; i++)
        r = fn(userdata, &v[i]);
    free(v);
    return r;
}

int cairn_lease_get(cairn_state *st, const char *id, cairn_lease_info *out, cairn_error *err)
{
    int r = check_id(id, err);
    if (r < 0)
        return r;
    static const char sql[] =
        "SELECT id, created, expires, (SELECT count(*) FROM lease_resources WHERE lease = id) "
        "FROM leases WHERE id = ?";
    sqlite3_stmt *s;
    r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        info_from(s, out);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return cairn__err(err, -ENOENT, "lease %s: not found", id);
    if (rc != SQLITE_ROW)
        return cairn__err_db(err, st->layers[0].db, rc, "lease lookup");
    return 0;
}

int cairn_lease_resource_list(cairn_state *st, const char *id, cairn_lease_resource_fn fn,
                              void *userdata, cairn_error *err)
{
    cairn_lease_info info;
    int r = cairn_lease_get(st, id, &info, err);
    if (r < 0)
        return r;
    static const char sql[] =
        "SELECT kind, name FROM lease_resources WHERE lease = ? ORDER BY kind, name";
    sqlite3_stmt *s;
    r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    /* Collected first: fn may call back into the library. */
    char **kv = NULL;
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char **nv = realloc(kv, (n + 2) * sizeof(*nv));
        if (!nv) {
            r = -ENOMEM;
            break;
        }
        kv = nv;
        kv[n] = strdup(cairn__col(s, 0));
        kv[n + 1] = strdup(cairn__col(s, 1));
        n += 2;
        if (!kv[n - 2] || !kv[n - 1]) {
            r = -ENOMEM;
            break;
        }
    }
    sqlite3_reset(s);
    if (r == -ENOMEM)
        r = cairn__err(err, r, "out of memory");
    else if (rc != SQLITE_DONE)
        r = cairn__err_db(err, st->layers[0].db, rc, "lease resources");
    for (size_t i = 0; r == 0 && i < n; i += 2)
        r = fn(userdata, kv[i], kv[i + 1]);
    for (size_t i = 0; i < n; i++)
        free(kv[i]);
    free(kv);
    return r;
}

/* ---- fsck ------------------------------------------------------------- */

/* Leases: a resource row whose lease is gone (foreign keys were off when it
 * was written), or a resource of an unknown kind or a malformed name.
 * Repair drops those rows. Expired leases are not problems: gc removes them. */
int cairn__fsck_leases(cairn__fsck *f, cairn_error *err)
{
    cairn_state *st = f->st;
    static const char sql[] =
        "SELECT lease, kind, name, lease IN (SELECT id FROM leases) FROM lease_resources "
        "ORDER BY lease, kind, name";
    static const char del[] =
        "DELETE FROM lease_resources WHERE lease = ? AND kind = ? AND name = ?";
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    char **bad = NULL;
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *l = cairn__col(s, 0), *k = cairn__col(s, 1), *nm = cairn__col(s, 2);
        bool orphan = !sqlite3_column_int(s, 3);
        if (!orphan && check_resource(k, nm, NULL) == 0)
            continue;
        char name[CAIRN_LEASE_ID_MAX + CAIRN_LEASE_NAME_MAX + 64];
        snprintf(name, sizeof(name), "%s %s %s", l, k, nm);
        cairn__fsck_report(f, "lease", name, orphan ? "dangling" : "corrupt",
                           f->opts.repair ? "dropped row" : "",
                           orphan ? "a resource of lease %s, which does not exist"
                                  : "lease %s holds a resource of unknown kind or a bad name",
                           l);
        char **nb = realloc(bad, (n + 3) * sizeof(*nb));
        if (!nb) {
            r = cairn__err(err, -ENOMEM, "out of memory");
            break;
        }
        bad = nb;
        bad[n] = strdup(l);
        bad[n + 1] = strdup(k);
        bad[n + 2] = strdup(nm);
        n += 3;
    }
    sqlite3_reset(s);
    if (r == 0 && rc != SQLITE_DONE)
        r = cairn__err_db(err, st->layers[0].db, rc, "fsck: leases");
    for (size_t i = 0; r == 0 && f->opts.repair && i < n; i += 3) {
        if (!bad[i] || !bad[i + 1] || !bad[i + 2]) {
            r = cairn__err(err, -ENOMEM, "out of memory");
            break;
        }
        int c = cairn__exec_args(st, err, del, "sss", bad[i], bad[i + 1], bad[i + 2]);
        r = c < 0 ? c : 0;
    }
    for (size_t i = 0; i < n; i++)
        free(bad[i]);
    free(bad);
    return r;
}
