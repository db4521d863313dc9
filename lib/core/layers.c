/* layers.c: the layers of an open state (core/core.h): each one's database
 * opened on first use, its cached statements, its object directories; the
 * write transactions on layer 0; the union of a query over all layers.
 *
 * Layer 0 is the state's own database, the only one ever written; layers
 * 1.. are lowers, opened immutable. state.c builds the list at open.
 */
#include "core/core.h"

#include <assert.h>
#include <dlfcn.h>
#include <limits.h>
#include <sys/stat.h>

int cairn__layer_open(cairn_state *st, size_t i, cairn_error *err)
{
    cairn__layer *l = &st->layers[i];
    if (l->db)
        return 0;
    int mode = i > 0 || st->frozen || st->rofs ? CAIRN__DB_IMMUTABLE
               : st->readonly      ? CAIRN__DB_RO
                                   : CAIRN__DB_RW;
    /* A database is a plain file of the state: a FIFO would hang SQLite's
     * open, a symlink or a device would read something else. */
    char name[CAIRN_STATE_ID_LEN + 16];
    snprintf(name, sizeof(name), "db/%s.sqlite", l->id);
    struct stat sb;
    if (fstatat(l->dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(sb.st_mode)) {
        int r = cairn__err(err, CAIRN_E_FORMAT, "%s: not a regular file", l->db_path);
        return i > 0 ? cairn__err_prefix(err, CAIRN_E_LOWER, "lower state %s (id %s)", l->root,
                                         l->id)
                     : r;
    }
    /* SQLite opens its -wal and -shm with O_NOFOLLOW, and then fails with
     * "unable to open database file": say what is wrong instead. */
    static const char *const sides[] = {"-wal", "-shm"};
    for (size_t k = 0; k < CAIRN_ARRAY_SIZE(sides); k++) {
        char side[CAIRN_STATE_ID_LEN + 24];
        snprintf(side, sizeof(side), "%s%s", name, sides[k]);
        if (fstatat(l->dirfd, side, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(sb.st_mode)) {
            int r = cairn__err(err, CAIRN_E_UNSAFE, "%s%s: a symlink; the database's files must "
                               "be the state's own", l->db_path, sides[k]);
            return i > 0 ? cairn__err_prefix(err, CAIRN_E_LOWER, "lower state %s (id %s)",
                                             l->root, l->id)
                         : r;
        }
    }
    int r = cairn__db_open(l->db_path, mode, &l->db, err);
    if (r == 0 && mode != CAIRN__DB_IMMUTABLE)
        sqlite3_busy_timeout(l->db, (int)(st->timeout_ms > INT_MAX ? INT_MAX : st->timeout_ms));
    if (r < 0 && i > 0)
        return cairn__err_prefix(err, CAIRN_E_LOWER, "lower state %s (id %s)", l->root, l->id);
    return r;
}

static int layer_subdir(cairn_state *st, size_t i, int *fdp, const char *sub, cairn_error *err)
{
    cairn__layer *l = &st->layers[i];
    if (*fdp >= 0)
        return *fdp;
    /* Beneath the root, no symlink at any step: the state was checked at
     * open, and this keeps a symlink planted since from taking gc (which
     * deletes through these fds) outside the state. */
    int fd = cairn__open_beneath(l->dirfd, sub, O_RDONLY | O_DIRECTORY, 0);
    if (fd == -ELOOP || fd == -EXDEV)
        return cairn__err(err, CAIRN_E_UNSAFE,
                          "%s/%s: a symlink; the directories of a state must be its own", l->root,
                          sub);
    if (fd < 0)
        return cairn__err(err, fd, "%s/%s: %m", l->root, sub);
    *fdp = fd;
    return fd;
}

int cairn__layer_blobfd(cairn_state *st, size_t i, cairn_error *err)
{
    return layer_subdir(st, i, &st->layers[i].blobfd, "blobs/sha256", err);
}

int cairn__layer_snapfd(cairn_state *st, size_t i, cairn_error *err)
{
    return layer_subdir(st, i, &st->layers[i].snapfd, "snapshots", err);
}

/* ---- lazy lowers: the provider (core.h) ------------------------------- */

static const cairn__lower_provider *lower_provider;

void cairn__lower_provider_set(const cairn__lower_provider *p)
{
    __atomic_store_n(&lower_provider, p, __ATOMIC_RELEASE);
}

int cairn__lower_fetch(cairn_state *st, size_t layer, int kind, const char *name,
                       cairn_error *err)
{
    const cairn__lower_provider *p = __atomic_load_n(&lower_provider, __ATOMIC_ACQUIRE);
    if (!p)
        return cairn__err(err, -ENOTSUP, "%s %s: in lazy lower %s, which this program cannot "
                          "fetch from (built without remotes)",
                          kind == CAIRN__LOWER_BLOB ? "blob" : "snapshot", name,
                          st->layers[layer].root);
    return p->fetch(st, layer, kind, name, err);
}

void cairn__lower_release(cairn__layer *l)
{
    const cairn__lower_provider *p = __atomic_load_n(&lower_provider, __ATOMIC_ACQUIRE);
    if (l->fetch_conn && p && p->release)
        p->release(l->fetch_conn);
    l->fetch_conn = NULL;
}

/* ---- per-layer statement cache ---------------------------------------- */

/* The slot of `sql` in a table of cap entries (a power of two): where it is,
 * or the empty slot where it goes. Literals are at least 1-aligned and often
 * 8- or 32-aligned: mix the address so that the low bits spread. */
static cairn__stmt_slot *stmt_slot(cairn__stmt_slot *slots, size_t cap, const char *sql)
{
    uint64_t h = (uint64_t)(uintptr_t)sql * UINT64_C(0x9e3779b97f4a7c15);
    size_t k = (size_t)(h >> 32) & (cap - 1);
    while (slots[k].sql && slots[k].sql != sql)
        k = (k + 1) & (cap - 1);
    return &slots[k];
}

/* Double the table (or make the first). Moving slots moves only pointers:
 * the statements themselves, perhaps being stepped by a caller, stay put. */
static int stmt_grow(cairn__stmt_cache *c, cairn_error *err)
{
    size_t cap = c->cap ? c->cap * 2 : 64;
    cairn__stmt_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return cairn__err(err, -ENOMEM, "statement cache: out of memory");
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i].sql)
            *stmt_slot(slots, cap, c->slots[i].sql) = c->slots[i];
    free(c->slots);
    c->slots = slots;
    c->cap = cap;
    return 0;
}

#ifndef NDEBUG
static bool sql_is_static(const char *sql)
{
    Dl_info info;
    return dladdr(sql, &info) != 0;
}
#endif

int cairn__stmt(cairn_state *st, size_t i, const char *sql, sqlite3_stmt **out, cairn_error *err)
{
    assert(i < st->n_layers);
    int r = cairn__layer_open(st, i, err);
    if (r < 0)
        return r;
    cairn__layer *l = &st->layers[i];
    cairn__stmt_cache *c = &l->stmts;
    cairn__stmt_slot *slot = c->cap ? stmt_slot(c->slots, c->cap, sql) : NULL;
    if (slot && slot->sql) {
        /* The key is the address: the text there must not have changed. */
        assert(strcmp(sqlite3_sql(slot->stmt), sql) == 0);
        sqlite3_reset(slot->stmt);
        sqlite3_clear_bindings(slot->stmt);
        *out = slot->stmt;
        return 0;
    }
    /* A key that is not a literal (a buffer on the heap or the stack) would
     * add an entry each call: the table would grow without end. Static
     * storage lies in a loaded object; the heap and the stack do not. */
    assert(sql_is_static(sql));
    /* Prepare before growing: a failed prepare leaves the table as it was. */
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v3(l->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
    if (rc != SQLITE_OK)
        return cairn__err_db(err, l->db, rc, "prepare");
    /* Lowers are read, never written: only layer 0 takes a write. */
    assert(i == 0 || sqlite3_stmt_readonly(s));
    if (2 * (c->n + 1) > c->cap) {
        r = stmt_grow(c, err);
        if (r < 0) {
            sqlite3_finalize(s);
            return r;
        }
    }
    slot = stmt_slot(c->slots, c->cap, sql);
    slot->sql = sql;
    slot->stmt = s;
    c->n++;
    *out = s;
    return 0;
}

int cairn__exec(cairn_state *st, size_t i, const char *sql, cairn_error *err)
{
    assert(i < st->n_layers);
    int r = cairn__layer_open(st, i, err);
    if (r < 0)
        return r;
    return cairn__db_exec(st->layers[i].db, sql, err);
}

int cairn__step_done(cairn_state *st, size_t i, sqlite3_stmt *s, cairn_error *err)
{
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        ;
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return cairn__err_db(err, st->layers[i].db, rc, NULL);
    return 0;
}

/* ---- transactions on the state's own database -------------------------- */

int cairn__exec_args(cairn_state *st, cairn_error *err, const char *sql, const char *types, ...)
{
    int r = cairn__tx_begin(st, err);
    if (r < 0)
        return r;
    sqlite3_stmt *q;
    r = cairn__stmt(st, 0, sql, &q, err);
    if (r == 0) {
        va_list ap;
        va_start(ap, types);
        for (int i = 0; types[i]; i++) {
            assert(types[i] == 's' || types[i] == 'i');
            if (types[i] == 'i') {
                sqlite3_bind_int64(q, i + 1, va_arg(ap, int64_t));
            } else {
                const char *v = va_arg(ap, const char *);
                if (v)
                    sqlite3_bind_text(q, i + 1, v, -1, SQLITE_STATIC);
                else
                    sqlite3_bind_null(q, i + 1);
            }
        }
        va_end(ap);
        r = cairn__step_done(st, 0, q, err);
        /* The strings are the caller's: no cached statement keeps them. */
        sqlite3_clear_bindings(q);
    }
    int changes = sqlite3_changes(st->layers[0].db);
    if (r == 0)
        r = cairn__tx_commit(st, err);
    else
        cairn__tx_rollback(st);
    return r < 0 ? r : changes;
}

int cairn__exec_key(cairn_state *st, const char *sql, const char *key, cairn_error *err)
{
    int r = cairn__exec_args(st, err, sql, "s", key);
    return r < 0 ? r : 0;
}

int cairn__layers_have(cairn_state *st, const char *sql, const char *key, int *layer,
                       cairn_error *err)
{
    for (size_t i = 0; i < st->n_layers; i++) {
        sqlite3_stmt *s;
        int r = cairn__stmt(st, i, sql, &s, err);
        if (r < 0)
            return r;
        sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        if (rc == SQLITE_ROW) {
            if (layer)
                *layer = (int)i;
            return 1;
        }
        if (rc != SQLITE_DONE)
            return cairn__err_db(err, st->layers[i].db, rc, "lookup");
    }
    return 0;
}

int cairn__tx_begin(cairn_state *st, cairn_error *err)
{
    int r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    assert(st->txdepth >= 0);
    if (st->txdepth++ > 0)
        return 0;
    /* BEGIN IMMEDIATE takes the write lock now, so a writer never has to
     * upgrade a read lock (which SQLite cannot wait for: SQLITE_BUSY). The
     * busy timeout makes it wait for other writers. */
    r = cairn__db_exec(st->layers[0].db, "BEGIN IMMEDIATE", err);
    if (r < 0)
        st->txdepth--;
    return r;
}

int cairn__tx_commit(cairn_state *st, cairn_error *err)
{
    /* A commit without its begin is a bug of the caller's pairing. */
    assert(st->txdepth > 0);
    if (st->txdepth <= 0)
        return cairn__err(err, -EINVAL, "commit outside a transaction");
    if (--st->txdepth > 0)
        return 0;
    int r = cairn__db_exec(st->layers[0].db, "COMMIT", err);
    if (r < 0)
        sqlite3_exec(st->layers[0].db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

void cairn__tx_rollback(cairn_state *st)
{
    if (st->txdepth <= 0)
        return;
    st->txdepth = 0;
    sqlite3_exec(st->layers[0].db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- the union of a query over the layers ----------------------------- */

int cairn__union_walk_all(cairn_state *st, const char *sql, int (*bind)(void *ud, sqlite3_stmt *s),
                          int (*acc)(void *ud, size_t layer, sqlite3_stmt *s, bool first),
                          int (*emit)(void *ud), void *ud, cairn_error *err)
{
    size_t n = st->n_layers;
    sqlite3_stmt **cur = calloc(n, sizeof(*cur));
    if (!cur)
        return cairn__err(err, -ENOMEM, "out of memory");
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *s;
        r = cairn__stmt(st, i, sql, &s, err);
        if (r < 0)
            goto out;
        if (bind && (r = bind(ud, s)) < 0)
            goto out;
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            cur[i] = s;
        else if (rc != SQLITE_DONE) {
            r = cairn__err_db(err, st->layers[i].db, rc, NULL);
            goto out;
        }
    }
    for (;;) {
        /* The smallest key; its topmost holder is the first one found. */
        size_t best = n;
        const char *bk = NULL;
        for (size_t i = 0; i < n; i++) {
            if (!cur[i])
                continue;
            const char *k = cairn__col(cur[i], 0);
            if (best == n || strcmp(k, bk) < 0) {
                best = i;
                bk = k;
            }
        }
        if (best == n)
            break;
        /* Every layer holding that key, topmost first, then advance it:
         * copy the key first, the step moves it. */
        _cleanup_free_ char *key = strdup(cairn__col(cur[best], 0));
        if (!key) {
            r = cairn__err(err, -ENOMEM, "out of memory");
            goto out;
        }
        for (size_t i = best; i < n; i++) {
            if (!cur[i])
                continue;
            if (strcmp(cairn__col(cur[i], 0), key) != 0)
                continue;
            r = acc(ud, i, cur[i], i == best);
            if (r != 0)
                goto out;
            int rc = sqlite3_step(cur[i]);
            if (rc != SQLITE_ROW) {
                if (rc != SQLITE_DONE) {
                    r = cairn__err_db(err, st->layers[i].db, rc, NULL);
                    goto out;
                }
                sqlite3_reset(cur[i]);
                cur[i] = NULL;
            }
        }
        if (emit && (r = emit(ud)) != 0)
            goto out;
    }
out:
    for (size_t i = 0; i < n; i++)
        if (cur[i])
            sqlite3_reset(cur[i]);
    free(cur);
    return r;
}

/* The topmost row of each key: union_walk_all keeping the first holder. */
struct walk_top {
    int (*fn)(void *ud, size_t layer, sqlite3_stmt *s);
    int (*bind)(void *ud, sqlite3_stmt *s);
    void *ud;
};

static int walk_top_acc(void *ud, size_t layer, sqlite3_stmt *s, bool first)
{
    struct walk_top *w = ud;
    return first ? w->fn(w->ud, layer, s) : 0;
}

static int walk_top_bind(void *ud, sqlite3_stmt *s)
{
    struct walk_top *w = ud;
    return w->bind(w->ud, s);
}

int cairn__union_walk(cairn_state *st, const char *sql, int (*bind)(void *ud, sqlite3_stmt *s),
                      int (*fn)(void *ud, size_t layer, sqlite3_stmt *s), void *ud,
                      cairn_error *err)
{
    struct walk_top w = {fn, bind, ud};
    return cairn__union_walk_all(st, sql, bind ? walk_top_bind : NULL, walk_top_acc, NULL, &w,
                                 err);
}
