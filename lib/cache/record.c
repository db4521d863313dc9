/* record.c: the build cache's records (cairn/record.h); the usage of
 * objects they count is in core/usage.c.
 *
 * Tables (lib/db/db.c): cache_results(key, result, kind, created) and
 * cache_links(parent, input, output, op, selector, child), both sets whose
 * merge is their union; usage(object, state, last_used, hits), one row per
 * object and per state so that a merge keeps the max of times and each
 * state's count (the sum over states is the object's hits).
 *
 * Invariants:
 * - A row of cache_results names a snapshot or blob that was present when
 *   it was written (publish last): add_result checks presence and inserts
 *   under the state's lock held shared, so garbage collection (exclusive)
 *   cannot remove the object in between.
 * - Reads treat a result whose object is gone as a miss.
 * - Lookups read every layer, top first; writes go to layer 0 only.
 *
 * Release and remove, in one transaction: delete the result rows, then the
 * links into keys left empty (no result, no child link in any layer), then
 * the same for their parents. The objects are left to gc.
 */
#include "cache/cache-private.h"

#include <sys/stat.h>

/* ---- results ---------------------------------------------------------- */

const char *cairn_result_kind_name(cairn_result_kind kind)
{
    switch (kind) {
    case CAIRN_RESULT_SNAPSHOT:
        return "snapshot";
    case CAIRN_RESULT_BLOB:
        return "blob";
    }
    return "?";
}

int cairn_result_kind_parse(const char *name, cairn_result_kind *out)
{
    if (name && !strcmp(name, "snapshot"))
        *out = CAIRN_RESULT_SNAPSHOT;
    else if (name && !strcmp(name, "blob"))
        *out = CAIRN_RESULT_BLOB;
    else
        return -EINVAL;
    return 0;
}

static int check_key(const char *what, const char *key, cairn_error *err)
{
    cairn_error e = {0};
    if (cairn_digest_check(key, &e) < 0)
        return cairn__err(err, CAIRN_E_DIGEST, "%s: %s", what, e.message);
    return 0;
}

int cairn_record_add_result(cairn_state *st, const char *key, cairn_result_kind kind,
                            const char *result, int64_t created, cairn_error *err)
{
    int r = check_key("cache key", key, err);
    if (r < 0)
        return r;
    r = check_key("result", result, err);
    if (r < 0)
        return r;
    const char *kname = cairn_result_kind_name(kind);
    if (kind != CAIRN_RESULT_SNAPSHOT && kind != CAIRN_RESULT_BLOB)
        return cairn__err(err, -EINVAL, "record %s: unknown result kind %d", key, (int)kind);
    r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    static const char ins[] = "INSERT INTO cache_results(key, result, kind, created) "
                              "VALUES (?, ?, ?, ?) ON CONFLICT(key, result) DO NOTHING";
    /* Shared lock: gc cannot delete the object between the check and the row. */
    r = cairn__lock(st, false, err);
    if (r < 0)
        return r;
    r = cairn__object_present(st, kname, result, NULL, err);
    if (r == 0)
        r = cairn__err(err, -ENOENT, "record %s: %s %s is not there; store it before its record",
                       key, kname, result);
    if (r < 0)
        goto out;
    r = cairn__tx_begin(st, err);
    if (r < 0)
        goto out;
    int added = cairn__exec_args(st, err, ins, "sssi", key, result, kname,
                                 (int64_t)(created > 0 ? created : cairn__now()));
    /* A (re)recorded result counts as a use: a gc running now sees it. */
    r = added < 0 ? added : cairn__usage_mark(st, kname, result, 0, err);
    if (r < 0) {
        cairn__tx_rollback(st);
        goto out;
    }
    r = cairn__tx_commit(st, err);
    if (r == 0)
        r = added > 0;
out:
    cairn__unlock(st);
    return r;
}

typedef struct res_vec {
    cairn_record_result *v;
    size_t n, cap;
    int r;
} res_vec;

static int res_push(res_vec *rv, size_t layer, sqlite3_stmt *s, int key_col)
{
    if (rv->n == rv->cap) {
        size_t nc = rv->cap ? rv->cap * 2 : 8;
        cairn_record_result *nv = realloc(rv->v, nc * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        rv->v = nv;
        rv->cap = nc;
    }
    cairn_record_result *o = &rv->v[rv->n++];
    memset(o, 0, sizeof(*o));
    snprintf(o->key, sizeof(o->key), "%s", cairn__col(s, key_col));
    snprintf(o->result, sizeof(o->result), "%s", cairn__col(s, key_col + 1));
    if (cairn_result_kind_parse(cairn__col(s, key_col + 2), &o->kind) < 0)
        o->kind = 0;
    o->created = sqlite3_column_int64(s, key_col + 3);
    o->lower = (int)layer;
    return 0;
}

struct key_ctx {
    const char *key;
    res_vec *rv;
};

static int key_bind(void *ud, sqlite3_stmt *s)
{
    struct key_ctx *c = ud;
    sqlite3_bind_text(s, 1, c->key, -1, SQLITE_STATIC);
    return 0;
}

/* A (key, result) pair held by several layers reads as their merge would
 * hold it (lib/merge.c): the earliest created, the greatest kind name. */
static void res_merge(cairn_record_result *o, sqlite3_stmt *s, int key_col)
{
    const char *kind = cairn__col(s, key_col + 2);
    cairn_result_kind k;
    if (strcmp(kind, o->kind ? cairn_result_kind_name(o->kind) : "") > 0 &&
        cairn_result_kind_parse(kind, &k) == 0)
        o->kind = k;
    if (sqlite3_column_int64(s, key_col + 3) < o->created)
        o->created = sqlite3_column_int64(s, key_col + 3);
}

static int key_row(void *ud, size_t layer, sqlite3_stmt *s, bool first)
{
    struct key_ctx *c = ud;
    if (!first) {
        res_merge(&c->rv->v[c->rv->n - 1], s, 1);
        return 0;
    }
    return res_push(c->rv, layer, s, 1);
}

static int cmp_newest(const void *a, const void *b)
{
    const cairn_record_result *x = a, *y = b;
    if (x->created != y->created)
        return x->created > y->created ? -1 : 1;
    return strcmp(y->result, x->result);
}

/* All results of a key (union), newest first. */
static int key_results(cairn_state *st, const char *key, res_vec *rv, cairn_error *err)
{
    static const char sql[] = "SELECT result, key, result, kind, created FROM cache_results "
                              "WHERE key = ? ORDER BY result";
    struct key_ctx c = {key, rv};
    int r = cairn__union_walk_all(st, sql, key_bind, key_row, NULL, &c, err);
    if (r == -ENOMEM)
        return cairn__err(err, r, "out of memory");
    if (r < 0)
        return r;
    if (rv->n > 1)
        qsort(rv->v, rv->n, sizeof(*rv->v), cmp_newest);
    return 0;
}

static int fill_usage(cairn_state *st, cairn_record_result *res, cairn_error *err)
{
    return cairn__usage_get(st, cairn_result_kind_name(res->kind), res->result, &res->last_used,
                            &res->hits, err);
}

int cairn_record_results(cairn_state *st, const char *key, cairn_record_result_fn fn,
                         void *userdata, cairn_error *err)
{
    int r = check_key("cache key", key, err);
    if (r < 0)
        return r;
    res_vec rv = {0};
    r = key_results(st, key, &rv, err);
    for (size_t i = 0; r == 0 && i < rv.n; i++) {
        r = cairn__object_present(st, cairn_result_kind_name(rv.v[i].kind), rv.v[i].result, NULL,
                                  err);
        if (r <= 0)
            continue;
        r = fill_usage(st, &rv.v[i], err);
        if (r == 0)
            r = fn(userdata, &rv.v[i]);
    }
    free(rv.v);
    return r;
}

int cairn_record_load(cairn_state *st, const char *key, const char *result,
                      cairn_record_result *out, cairn_error *err)
{
    int r = check_key("cache key", key, err);
    if (r < 0)
        return r;
    if (result && (r = check_key("result", result, err)) < 0)
        return r;
    res_vec rv = {0};
    r = key_results(st, key, &rv, err);
    cairn_record_result *hit = NULL;
    for (size_t i = 0; r == 0 && i < rv.n && !hit; i++) {
        if (result && strcmp(rv.v[i].result, result) != 0)
            continue;
        r = cairn__object_present(st, cairn_result_kind_name(rv.v[i].kind), rv.v[i].result, NULL,
                                  err);
        if (r > 0) {
            hit = &rv.v[i];
            r = 0;
        }
    }
    if (r == 0 && !hit)
        r = cairn__err(err, -ENOENT, "record %s: %s%s", key,
                       result ? "no present result " : "no present result (a miss)",
                       result ? result : "");
    if (r == 0)
        r = cairn__usage_mark(st, cairn_result_kind_name(hit->kind), hit->result, 1, err);
    if (r == 0)
        r = fill_usage(st, hit, err);
    if (r == 0 && out)
        *out = *hit;
    free(rv.v);
    return r;
}

/* ---- pruning branches ------------------------------------------------- */

/* Does `key` have a result or a child link in any layer? */
static int key_alive(cairn_state *st, const char *key, cairn_error *err)
{
    static const char sql[] = "SELECT 1 FROM cache_results WHERE key = ?1 UNION ALL "
                              "SELECT 1 FROM cache_links WHERE parent = ?1 LIMIT 1";
    return cairn__layers_have(st, sql, key, NULL, err);
}

int cairn__record_prune(cairn_state *st, const char *const *keys, size_t n, cairn_error *err)
{
    static const char del[] = "DELETE FROM cache_links WHERE child = ? RETURNING parent";
    cairn__strv work = {0};
    int r = 0, removed = 0;
    for (size_t i = 0; i < n && r == 0; i++)
        r = cairn__strv_push(&work, keys[i]);
    /* Each round removes links, so it ends: at most one round per link. */
    while (r == 0 && work.n > 0) {
        char *k = work.v[--work.n];
        r = key_alive(st, k, err);
        if (r != 0) {
            free(k);
            r = r > 0 ? 0 : r;
            continue;
        }
        sqlite3_stmt *q;
        r = cairn__stmt(st, 0, del, &q, err);
        if (r < 0) {
            free(k);
            break;
        }
        sqlite3_bind_text(q, 1, k, -1, SQLITE_TRANSIENT);
        int rc;
        while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
            removed++;
            if ((r = cairn__strv_push(&work, cairn__col(q, 0))) < 0)
                break;
        }
        sqlite3_reset(q);
        free(k);
        if (r == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
            r = cairn__err_db(err, st->layers[0].db, rc, "prune links");
    }
    cairn__strv_free(&work);
    if (r == -ENOMEM)
        return cairn__err(err, r, "out of memory");
    return r < 0 ? r : removed;
}

int cairn_record_release(cairn_state *st, const char *result, cairn_error *err)
{
    int r = check_key("result", result, err);
    if (r < 0)
        return r;
    static const char del[] = "DELETE FROM cache_results WHERE result = ? RETURNING key";
    cairn__strv keys = {0};
    r = cairn__tx_begin(st, err);
    if (r < 0)
        return r;
    sqlite3_stmt *q;
    r = cairn__stmt(st, 0, del, &q, err);
    if (r < 0)
        goto fail;
    sqlite3_bind_text(q, 1, result, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        if ((r = cairn__strv_push(&keys, cairn__col(q, 0))) < 0)
            break;
    sqlite3_reset(q);
    if (r == -ENOMEM) {
        r = cairn__err(err, r, "out of memory");
        goto fail;
    }
    if (rc != SQLITE_DONE) {
        r = cairn__err_db(err, st->layers[0].db, rc, "release");
        goto fail;
    }
    r = cairn__record_prune(st, (const char *const *)keys.v, keys.n, err);
    if (r < 0)
        goto fail;
    r = cairn__tx_commit(st, err);
    if (r == 0)
        r = (int)keys.n;
    cairn__strv_free(&keys);
    return r;
fail:
    cairn__tx_rollback(st);
    cairn__strv_free(&keys);
    return r;
}

int cairn_record_remove(cairn_state *st, const char *key, cairn_error *err)
{
    int r = check_key("cache key", key, err);
    if (r < 0)
        return r;
    r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    static const char del_res[] = "DELETE FROM cache_results WHERE key = ?";
    static const char del_out[] = "DELETE FROM cache_links WHERE parent = ?";
    static const char del_in[] = "DELETE FROM cache_links WHERE child = ? RETURNING parent";
    cairn__strv parents = {0};
    int removed = 0;
    r = cairn__tx_begin(st, err);
    if (r < 0)
        return r;
    const char *sqls[] = {del_res, del_out, del_in};
    for (size_t i = 0; i < 3 && r == 0; i++) {
        sqlite3_stmt *q;
        r = cairn__stmt(st, 0, sqls[i], &q, err);
        if (r < 0)
            break;
        sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
        int rc;
        while ((rc = sqlite3_step(q)) == SQLITE_ROW)
            if ((r = cairn__strv_push(&parents, cairn__col(q, 0))) < 0)
                break;
        sqlite3_reset(q);
        if (r == 0 && rc != SQLITE_DONE)
            r = cairn__err_db(err, st->layers[0].db, rc, "record remove");
        if (r == 0)
            removed += sqlite3_changes(st->layers[0].db);
    }
    if (r == -ENOMEM)
        r = cairn__err(err, r, "out of memory");
    if (r == 0 && removed == 0) {
        int alive = key_alive(st, key, err);
        r = alive < 0   ? alive
            : alive > 0 ? cairn__err(err, -EROFS,
                                     "record %s: held by a lower state, which is read-only", key)
                        : cairn__err(err, -ENOENT, "record %s: not found", key);
    }
    if (r == 0) {
        int p = cairn__record_prune(st, (const char *const *)parents.v, parents.n, err);
        r = p < 0 ? p : 0;
        removed += p > 0 ? p : 0;
    }
    if (r == 0)
        r = cairn__tx_commit(st, err);
    else
        cairn__tx_rollback(st);
    cairn__strv_free(&parents);
    return r < 0 ? r : removed;
}

/* ---- links ------------------------------------------------------------ */

static int check_link(const cairn_record_link *l, cairn_error *err)
{
    if (!l)
        return cairn__err(err, -EINVAL, "no link given");
    int r = check_key("link op", l->op, err);
    if (r == 0 && l->selector[0])
        r = check_key("link selector", l->selector, err);
    if (r == 0 && (l->input > INT32_MAX || l->output > INT32_MAX))
        r = cairn__err(err, -EINVAL, "link input/output index out of range");
    return r;
}

/* A link's two keys and its own fields. */
static int check_edge(const char *parent, const cairn_record_link *link, const char *child,
                      cairn_error *err)
{
    int r = check_key("parent key", parent, err);
    if (r == 0)
        r = check_key("child key", child, err);
    if (r == 0)
        r = check_link(link, err);
    return r;
}

int cairn_record_add_link(cairn_state *st, const char *parent, const cairn_record_link *link,
                          const char *child, cairn_error *err)
{
    int r = check_edge(parent, link, child, err);
    if (r < 0)
        return r;
    static const char ins[] =
        "INSERT INTO cache_links(parent, input, output, op, selector, child) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING";
    r = cairn__lock(st, false, err);
    if (r < 0)
        return r;
    r = cairn__exec_args(st, err, ins, "siisss", parent, (int64_t)link->input,
                         (int64_t)link->output, link->op, link->selector, child);
    cairn__unlock(st);
    return r < 0 ? r : r > 0;
}

struct link_ctx {
    const char *key;
    const cairn_record_link *filter;
    cairn_record_link_fn fn;
    void *ud;
};

static int link_bind(void *ud, sqlite3_stmt *s)
{
    struct link_ctx *c = ud;
    sqlite3_bind_text(s, 1, c->key, -1, SQLITE_STATIC);
    return 0;
}

/* Columns: sort key, other key, input, output, op, selector. */
static int link_row(void *ud, size_t layer, sqlite3_stmt *s)
{
    struct link_ctx *c = ud;
    cairn_record_link l = {0};
    l.input = (unsigned)sqlite3_column_int64(s, 2);
    l.output = (unsigned)sqlite3_column_int64(s, 3);
    snprintf(l.op, sizeof(l.op), "%s", cairn__col(s, 4));
    snprintf(l.selector, sizeof(l.selector), "%s", cairn__col(s, 5));
    if (c->filter && (l.input != c->filter->input || l.output != c->filter->output ||
                      strcmp(l.op, c->filter->op) || strcmp(l.selector, c->filter->selector)))
        return 0;
    return c->fn(c->ud, cairn__col(s, 1), &l);
}

int cairn_record_links(cairn_state *st, const char *parent, const cairn_record_link *link,
                       cairn_record_link_fn fn, void *userdata, cairn_error *err)
{
    int r = check_key("parent key", parent, err);
    if (r == 0 && link)
        r = check_link(link, err);
    if (r < 0)
        return r;
    static const char sql[] =
        "SELECT child || ' ' || input || ' ' || output || ' ' || op || ' ' || selector, "
        "child, input, output, op, selector FROM cache_links WHERE parent = ? ORDER BY 1";
    struct link_ctx c = {parent, link, fn, userdata};
    return cairn__union_walk(st, sql, link_bind, link_row, &c, err);
}

int cairn_record_backlinks(cairn_state *st, const char *child, cairn_record_link_fn fn,
                           void *userdata, cairn_error *err)
{
    int r = check_key("child key", child, err);
    if (r < 0)
        return r;
    static const char sql[] =
        "SELECT parent || ' ' || input || ' ' || output || ' ' || op || ' ' || selector, "
        "parent, input, output, op, selector FROM cache_links WHERE child = ? ORDER BY 1";
    struct link_ctx c = {child, NULL, fn, userdata};
    return cairn__union_walk(st, sql, link_bind, link_row, &c, err);
}

int cairn_record_has_link(cairn_state *st, const char *parent, const cairn_record_link *link,
                          const char *child, cairn_error *err)
{
    int r = check_edge(parent, link, child, err);
    if (r < 0)
        return r;
    static const char sql[] = "SELECT 1 FROM cache_links WHERE parent = ? AND input = ? AND "
                              "output = ? AND op = ? AND selector = ? AND child = ?";
    for (size_t i = 0; i < st->n_layers; i++) {
        sqlite3_stmt *s;
        r = cairn__stmt(st, i, sql, &s, err);
        if (r < 0)
            return r;
        sqlite3_bind_text(s, 1, parent, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, link->input);
        sqlite3_bind_int64(s, 3, link->output);
        sqlite3_bind_text(s, 4, link->op, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 5, link->selector, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 6, child, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc == SQLITE_ROW)
            return 1;
        if (rc != SQLITE_DONE)
            return cairn__err_db(err, st->layers[i].db, rc, "link lookup");
    }
    return 0;
}

/* ---- keys ------------------------------------------------------------- */

struct keyfn_ctx {
    const char *arg;
    cairn_record_key_fn fn;
    void *ud;
};

static int keyfn_bind(void *ud, sqlite3_stmt *s)
{
    struct keyfn_ctx *c = ud;
    if (c->arg)
        sqlite3_bind_text(s, 1, c->arg, -1, SQLITE_STATIC);
    return 0;
}

static int keyfn_row(void *ud, size_t layer, sqlite3_stmt *s)
{
    struct keyfn_ctx *c = ud;
    return c->fn(c->ud, cairn__col(s, 0));
}

int cairn_record_keys_by_result(cairn_state *st, const char *result, cairn_record_key_fn fn,
                                void *userdata, cairn_error *err)
{
    int r = check_key("result", result, err);
    if (r < 0)
        return r;
    static const char sql[] = "SELECT key FROM cache_results WHERE result = ? ORDER BY key";
    struct keyfn_ctx c = {result, fn, userdata};
    return cairn__union_walk(st, sql, keyfn_bind, keyfn_row, &c, err);
}

int cairn_record_walk_keys(cairn_state *st, cairn_record_key_fn fn, void *userdata,
                           cairn_error *err)
{
    static const char sql[] =
        "SELECT key FROM cache_results UNION SELECT parent FROM cache_links ORDER BY 1";
    struct keyfn_ctx c = {NULL, fn, userdata};
    return cairn__union_walk(st, sql, keyfn_bind, keyfn_row, &c, err);
}

int cairn_record_exists(cairn_state *st, const char *key, cairn_error *err)
{
    int r = check_key("cache key", key, err);
    if (r < 0)
        return r;
    return key_alive(st, key, err);
}

struct list_ctx {
    cairn_state *st;
    cairn_record_list_fn fn;
    void *ud;
    cairn_error *err;
    res_vec rv; /* the pair being read across layers */
};

static int list_row(void *ud, size_t layer, sqlite3_stmt *s, bool first)
{
    struct list_ctx *c = ud;
    if (!first) {
        res_merge(&c->rv.v[0], s, 1);
        return 0;
    }
    c->rv.n = 0;
    int r = res_push(&c->rv, layer, s, 1);
    if (r < 0)
        return cairn__err(c->err, r, "out of memory");
    return 0;
}

static int list_emit(void *ud)
{
    struct list_ctx *c = ud;
    cairn_record_result *res = c->rv.v;
    int r = 0;
    int present = cairn__object_present(c->st, cairn_result_kind_name(res->kind), res->result,
                                        NULL, c->err);
    if (present >= 0)
        r = fill_usage(c->st, res, c->err);
    if (present >= 0 && r == 0)
        r = c->fn(c->ud, res, present);
    return present < 0 ? present : r;
}

int cairn_record_list(cairn_state *st, cairn_record_list_fn fn, void *userdata, cairn_error *err)
{
    /* Keys and results are digests of one length: ordering by the pair is
     * ordering by "key result", and reads the primary key in order. */
    static const char sql[] = "SELECT key || ' ' || result, key, result, kind, created "
                              "FROM cache_results ORDER BY key, result";
    struct list_ctx c = {.st = st, .fn = fn, .ud = userdata, .err = err};
    int r = cairn__union_walk_all(st, sql, NULL, list_row, list_emit, &c, err);
    free(c.rv.v);
    return r;
}

/* ---- fsck ------------------------------------------------------------- */

/* Records: every result of this state names an object that is there (in
 * any layer); keys, results and link digests are well formed. Repair drops
 * the rows naming missing objects (they were misses already). One presence
 * check per distinct result, not per row. */
/* The per-object counts that gc reads must agree with the records (they
 * are kept by triggers; a database edited by hand could break them). A
 * full scan of the records, so only when hashing (not with no_hash).
 * Repair rebuilds them. */
static int fsck_refs(cairn__fsck *f, cairn_error *err)
{
    cairn_state *st = f->st;
    static const char diff[] =
        "SELECT result, kind FROM ("
        "  SELECT result, kind, count(*) AS n FROM cache_results GROUP BY result, kind"
        "  EXCEPT SELECT result, kind, n FROM cache_result_refs) "
        "UNION SELECT result, kind FROM ("
        "  SELECT result, kind, n FROM cache_result_refs"
        "  EXCEPT SELECT result, kind, count(*) FROM cache_results GROUP BY result, kind) "
        "LIMIT 100";
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, diff, &s, err);
    if (r < 0)
        return r;
    int rc, bad = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        bad++;
        cairn__fsck_report(f, "record", cairn__col(s, 0), "corrupt",
                           f->opts.repair ? "rebuilt counts" : "",
                           "cache_result_refs does not count the records naming this %s",
                           cairn__col(s, 1));
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return cairn__err_db(err, st->layers[0].db, rc, "fsck: record counts");
    if (!bad || !f->opts.repair)
        return 0;
    r = cairn__tx_begin(st, err);
    if (r < 0)
        return r;
    r = cairn__exec(st, 0,
                    "DELETE FROM cache_result_refs;"
                    "INSERT INTO cache_result_refs(result, kind, n, touched) "
                    "SELECT result, kind, count(*), CAST(strftime('%s', 'now') AS INTEGER) "
                    "FROM cache_results GROUP BY result, kind;",
                    err);
    if (r < 0) {
        cairn__tx_rollback(st);
        return r;
    }
    return cairn__tx_commit(st, err);
}

int cairn__fsck_records(cairn__fsck *f, cairn_error *err)
{
    cairn_state *st = f->st;
    if (!f->opts.no_hash) {
        int q = fsck_refs(f, err);
        if (q < 0)
            return q;
    }
    static const char sql[] = "SELECT result, kind, n FROM cache_result_refs ORDER BY result";
    static const char keys_of[] =
        "SELECT key FROM cache_results WHERE result = ? AND kind = ? ORDER BY key";
    static const char del[] = "DELETE FROM cache_results WHERE result = ? AND kind = ?";
    cairn__strv bad = {0}; /* pairs: result, kind */
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        f->total++;
        (void)cairn__fsck_tick(f, err); /* a stop: at the end of the checker */
        const char *res = cairn__col(s, 0), *kind = cairn__col(s, 1);
        cairn_result_kind k;
        int present = 0;
        if (cairn_result_kind_parse(kind, &k) == 0 && cairn_digest_check(res, NULL) == 0) {
            present = cairn__object_present(st, kind, res, NULL, err);
            if (present < 0) {
                r = present;
                break;
            }
        }
        if (!present && ((r = cairn__strv_push(&bad, res)) < 0 || (r = cairn__strv_push(&bad, kind)) < 0))
            break;
    }
    sqlite3_reset(s);
    if (r == -ENOMEM)
        r = cairn__err(err, r, "out of memory");
    else if (r == 0 && rc != SQLITE_DONE)
        r = cairn__err_db(err, st->layers[0].db, rc, "fsck: records");
    for (size_t i = 0; r == 0 && i + 1 < bad.n; i += 2) {
        const char *res = bad.v[i], *kind = bad.v[i + 1];
        cairn_result_kind k;
        bool malformed = cairn_result_kind_parse(kind, &k) < 0 || cairn_digest_check(res, NULL) < 0;
        r = cairn__stmt(st, 0, keys_of, &s, err);
        if (r < 0)
            break;
        sqlite3_bind_text(s, 1, res, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            char name[2 * CAIRN_DIGEST_LEN + 64];
            snprintf(name, sizeof(name), "%.80s %.80s", cairn__col(s, 0), res);
            if (malformed)
                cairn__fsck_report(f, "record", name, "corrupt",
                                   f->opts.repair ? "dropped row" : "",
                                   "the result '%.80s' of kind '%.20s' is not a valid name", res,
                                   kind);
            else
                cairn__fsck_report(f, "record", name, "missing",
                                   f->opts.repair ? "dropped row" : "",
                                   "its result, %s %s, is not in the state", kind, res);
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE) {
            r = cairn__err_db(err, st->layers[0].db, rc, "fsck: records");
            break;
        }
        if (f->opts.repair) {
            r = cairn__tx_begin(st, err);
            if (r < 0)
                break;
            sqlite3_stmt *q;
            r = cairn__stmt(st, 0, del, &q, err);
            if (r < 0) {
                cairn__tx_rollback(st);
                break;
            }
            sqlite3_bind_text(q, 1, res, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 2, kind, -1, SQLITE_STATIC);
            r = cairn__step_done(st, 0, q, err);
            if (r == 0)
                r = cairn__tx_commit(st, err);
            else
                cairn__tx_rollback(st);
        }
    }
    cairn__strv_free(&bad);
    if (r < 0)
        return r;

    /* Links: well-formed names (a link to a key with nothing is legal: the
     * child's result may come later). */
    static const char links[] = "SELECT parent, input, output, op, selector, child "
                                "FROM cache_links ORDER BY parent";
    r = cairn__stmt(st, 0, links, &s, err);
    if (r < 0)
        return r;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *p = cairn__col(s, 0), *op = cairn__col(s, 3), *sel = cairn__col(s, 4),
                   *c = cairn__col(s, 5);
        if (cairn_digest_check(p, NULL) == 0 && cairn_digest_check(c, NULL) == 0 &&
            cairn_digest_check(op, NULL) == 0 && (!*sel || cairn_digest_check(sel, NULL) == 0))
            continue;
        char name[4 * CAIRN_DIGEST_LEN + 64];
        snprintf(name, sizeof(name), "%.80s -> %.80s", p, c);
        cairn__fsck_report(f, "record", name, "corrupt", "",
                           "a link with a malformed key, op or selector digest");
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return cairn__err_db(err, st->layers[0].db, rc, "fsck: links");
    return 0;
}
