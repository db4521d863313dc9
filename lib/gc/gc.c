/* gc.c: garbage collection (cairn/gc.h) and the object graph it walks.
 *
 * Only this state's own objects (layer 0) are ever removed. Everything a
 * lower holds or names is a root: a lower is read-only, and a file in this
 * directory that a lower found side by side in db/ names is the lower's.
 *
 * Phases, in order:
 *   1. load (no lock; one read transaction on layer 0): every blob and
 *      snapshot of every layer, snapshot parents, the blobs that manifests
 *      and indexes name (parsed), usage times. T0 = the start time.
 *      Records are read through cache_result_refs (one row an object, kept
 *      by triggers), not one row a record.
 *   2. mark (no lock) from the hard roots: live leases, images, volumes'
 *      current versions, active snapshots' parents, what a containerd holds, lowers' records and
 *      objects, objects created or used within the grace period; through
 *      parents and manifests.
 *   3. policy (no lock): records are soft roots. With a policy, the least
 *      recently used results of this state's records are chosen for removal,
 *      with reference counts telling the bytes each removal frees, until the
 *      budget is met.
 *   4. orphans (no lock): files and directories in blobs/sha256 and
 *      snapshots/ that no row names, older than the grace period, but the
 *      diffs of commits in progress (an active row whose intent names
 *      them: snapshot.c), which are re-read under the lock.
 *   5. lock: the state's lock exclusive, then the database's write lock.
 *      Writers publish under the lock held shared, so from here nothing new
 *      can name an object. Delta mark: re-read the small root tables
 *      (leases, images, volumes, active), the blob and snapshot rows the
 *      graph did not see, and the results recorded (by the wall clock of
 *      the insert, not the row's own time) and objects used since T0 minus
 *      a slack of DELTA_SLACK seconds; mark what they keep.
 *   6. rows, in one transaction: records of results the policy removed and
 *      the links left empty, then the rows of the objects to remove (blobs,
 *      labels, snapshots, usage), old volume versions, expired leases.
 *      Commit (durable: synchronous=FULL).
 *   7. objects: unlink the blob files, remove the snapshot directories, then
 *      the orphans (each re-checked: still named by no row), the
 *      directories of active/ that no active row names, then the staging
 *      in tmp/ that no live process owns (core/state.c), reported as files
 *      of tmp/;
 *   8. unlock.
 * Row first, then object: a crash between 6 and 7 leaves unreferenced files
 * (the next gc removes them), never a row naming a missing object.
 */
#include "gc/graph.h"
#include "snapshot/snapshot-private.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <jansson.h>

#define DELTA_SLACK 2 /* seconds: clocks tick in whole seconds */

/* ---- marking ---------------------------------------------------------- */

typedef struct gc_run {
    cairn_state *st;
    cairn_gc_options o;
    cairn_gc_fn fn;
    void *ud;
    cairn_gc_stats stats;
    cairn__graph g;
    int32_t *stack;
    size_t n_stack, cap_stack;
    uint64_t *ino; /* inode of each object's file, from the directory scan (0: unknown) */
    int64_t now, t0;
    bool no_youth; /* du: what would go with no grace period at all */
    cairn__strset *pending; /* chain ids of commits in progress (snapshot.c) */
    cairn_error *err;
} gc_run;

static int push(gc_run *R, int32_t i)
{
    if (R->n_stack == R->cap_stack) {
        size_t nc = R->cap_stack ? R->cap_stack * 2 : 1024;
        int32_t *ns = realloc(R->stack, nc * sizeof(*ns));
        if (!ns)
            return -ENOMEM;
        R->stack = ns;
        R->cap_stack = nc;
    }
    R->stack[R->n_stack++] = i;
    return 0;
}

/* Mark i and what it keeps (parents, what manifests name). */
static int mark(gc_run *R, int32_t i)
{
    if (i < 0 || R->g.objs[i].mark)
        return 0;
    R->g.objs[i].mark = 1;
    int r = push(R, i);
    while (r == 0 && R->n_stack) {
        cairn__obj *o = &R->g.objs[R->stack[--R->n_stack]];
        if (o->parent >= 0 && !R->g.objs[o->parent].mark) {
            R->g.objs[o->parent].mark = 1;
            r = push(R, o->parent);
        }
        for (uint32_t e = 0; r == 0 && e < o->n_edges; e++) {
            uint32_t t = R->g.edges[o->edges + e];
            if (!R->g.objs[t].mark) {
                R->g.objs[t].mark = 1;
                r = push(R, (int32_t)t);
            }
        }
    }
    return r < 0 ? cairn__err(R->err, r, "out of memory") : 0;
}

static int kind_of(const char *kind)
{
    return !strcmp(kind, "blob") ? CAIRN__OBJ_BLOB : CAIRN__OBJ_SNAPSHOT;
}

static int mark_name(gc_run *R, int kind, const char *name)
{
    return mark(R, cairn__graph_find(&R->g, kind, name));
}

/* A manifest named by a root or newly written: parse it when the graph has
 * not (its media type was not recorded as a manifest, or it is newer than
 * the graph), mark what it names, then mark it. */
struct mm_ctx {
    gc_run *R;
    int r;
};

static int mm_cb(void *ud, const char *digest)
{
    struct mm_ctx *c = ud;
    c->r = mark_name(c->R, CAIRN__OBJ_BLOB, digest);
    return c->r;
}

static int mark_manifest(gc_run *R, const char *digest)
{
    int32_t i = cairn__graph_find(&R->g, CAIRN__OBJ_BLOB, digest);
    if (i >= 0 && (R->g.objs[i].mark || R->g.objs[i].manifest))
        return mark(R, i);
    void *buf = NULL;
    size_t len = 0;
    if (cairn_blob_read(R->st, digest, &buf, &len, NULL) == 0) {
        struct mm_ctx c = {R, 0};
        cairn__manifest_refs(buf, len, mm_cb, &c);
        free(buf);
        if (c.r < 0)
            return c.r;
    }
    return mark(R, i);
}

/* Run `sql` on each layer in [from, to) and call row(R, stmt) per row. */
static int each_row(gc_run *R, size_t from, size_t to, const char *sql, int64_t arg,
                    int (*row)(gc_run *, sqlite3_stmt *))
{
    for (size_t li = from; li < to; li++) {
        sqlite3_stmt *s;
        int r = cairn__stmt(R->st, li, sql, &s, R->err);
        if (r < 0)
            return r;
        if (sqlite3_bind_parameter_count(s) >= 1)
            sqlite3_bind_int64(s, 1, arg);
        int rc;
        while (r == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW)
            r = row(R, s);
        sqlite3_reset(s);
        if (r < 0)
            return r;
        if (rc != SQLITE_DONE)
            return cairn__err_db(R->err, R->st->layers[li].db, rc, "gc: read roots");
    }
    return 0;
}

/* Rows: (kind, name) of a resource or an object. */
static int row_kind_name(gc_run *R, sqlite3_stmt *s)
{
    const char *kind = cairn__col(s, 0), *name = cairn__col(s, 1);
    if (!strcmp(kind, "blob") || !strcmp(kind, "snapshot"))
        return mark_name(R, kind_of(kind), name);
    return 0;
}

static int row_image(gc_run *R, sqlite3_stmt *s)
{
    int r = mark_manifest(R, cairn__col(s, 0));
    if (r == 0)
        r = mark_name(R, CAIRN__OBJ_BLOB, cairn__col(s, 1));
    if (r == 0)
        r = mark_name(R, CAIRN__OBJ_SNAPSHOT, cairn__col(s, 2));
    return r;
}

static int row_snapshot(gc_run *R, sqlite3_stmt *s)
{
    return mark_name(R, CAIRN__OBJ_SNAPSHOT, cairn__col(s, 0));
}

/* Rows of layer 0 the graph did not see as this state's: written since. */
static bool seen_in0(gc_run *R, int kind, const char *name)
{
    int32_t i = cairn__graph_find(&R->g, kind, name);
    return i >= 0 && R->g.objs[i].in0;
}

static int row_new_blob(gc_run *R, sqlite3_stmt *s)
{
    const char *d = cairn__col(s, 0);
    if (seen_in0(R, CAIRN__OBJ_BLOB, d))
        return 0;
    if (cairn__is_manifest_type(cairn__col(s, 1)))
        return mark_manifest(R, d);
    return mark_name(R, CAIRN__OBJ_BLOB, d);
}

static int row_new_snapshot(gc_run *R, sqlite3_stmt *s)
{
    if (seen_in0(R, CAIRN__OBJ_SNAPSHOT, cairn__col(s, 0)))
        return 0;
    int r = mark_name(R, CAIRN__OBJ_SNAPSHOT, cairn__col(s, 0));
    if (r == 0 && sqlite3_column_type(s, 1) == SQLITE_TEXT)
        r = mark_name(R, CAIRN__OBJ_SNAPSHOT, cairn__col(s, 1));
    return r;
}

static int row_usage(gc_run *R, sqlite3_stmt *s)
{
    const char *o = cairn__col(s, 0);
    int r = mark_name(R, CAIRN__OBJ_BLOB, o);
    return r < 0 ? r : mark_name(R, CAIRN__OBJ_SNAPSHOT, o);
}

/* Volumes' current versions: newest (created, version) per name, over the
 * union. One query per layer, combined here. */
typedef struct vol_cur {
    char name[CAIRN_LEASE_NAME_MAX + 1];
    char version[CAIRN_DIGEST_LEN + 1];
    int64_t created;
} vol_cur;

static int volumes_current(gc_run *R, vol_cur **out, size_t *n_out)
{
    static const char sql[] = "SELECT name, version, created FROM volume_versions";
    vol_cur *v = NULL;
    size_t n = 0, cap = 0;
    int r = 0;
    for (size_t li = 0; li < R->st->n_layers && r == 0; li++) {
        sqlite3_stmt *s;
        r = cairn__stmt(R->st, li, sql, &s, R->err);
        if (r < 0)
            break;
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            const char *nm = cairn__col(s, 0), *ver = cairn__col(s, 1);
            int64_t c = sqlite3_column_int64(s, 2);
            size_t k = 0;
            while (k < n && strcmp(v[k].name, nm) != 0)
                k++;
            if (k == n) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 16;
                    vol_cur *nv = realloc(v, cap * sizeof(*nv));
                    if (!nv) {
                        r = -ENOMEM;
                        break;
                    }
                    v = nv;
                }
                snprintf(v[n].name, sizeof(v[n].name), "%s", nm);
                v[n].version[0] = 0;
                v[n].created = INT64_MIN;
                n++;
            }
            if (c > v[k].created || (c == v[k].created && strcmp(ver, v[k].version) > 0)) {
                v[k].created = c;
                snprintf(v[k].version, sizeof(v[k].version), "%s", ver);
            }
        }
        sqlite3_reset(s);
        if (r == 0 && rc != SQLITE_DONE)
            r = cairn__err_db(R->err, R->st->layers[li].db, rc, "gc: volumes");
    }
    if (r == -ENOMEM)
        r = cairn__err(R->err, r, "out of memory");
    if (r < 0) {
        free(v);
        return r;
    }
    *out = v;
    *n_out = n;
    return 0;
}

/* The roots every run re-reads under the lock: they are small. */
static int mark_small_roots(gc_run *R)
{
    cairn_state *st = R->st;
    static const char leased_objs[] =
        "SELECT r.kind, r.name FROM lease_resources r JOIN leases l ON l.id = r.lease "
        "WHERE (l.expires = 0 OR l.expires > ?1) AND r.kind IN ('blob', 'snapshot')";
    static const char leased_keys[] =
        "SELECT c.kind, c.result FROM lease_resources r JOIN leases l ON l.id = r.lease "
        "JOIN cache_results c ON c.key = r.name "
        "WHERE (l.expires = 0 OR l.expires > ?1) AND r.kind = 'record'";
    static const char leased_vols[] =
        "SELECT 'snapshot', v.version FROM lease_resources r JOIN leases l ON l.id = r.lease "
        "JOIN volume_versions v ON v.name = r.name "
        "WHERE (l.expires = 0 OR l.expires > ?1) AND r.kind = 'volume'";
    static const char images[] = "SELECT manifest, config, top FROM images";
    static const char active[] = "SELECT parent FROM active WHERE parent IS NOT NULL";
    int r = each_row(R, 0, 1, leased_objs, R->now, row_kind_name);
    if (r == 0)
        r = each_row(R, 0, 1, leased_keys, R->now, row_kind_name);
    if (r == 0)
        r = each_row(R, 0, 1, leased_vols, R->now, row_kind_name);
    if (r == 0)
        r = each_row(R, 0, st->n_layers, images, 0, row_image);
    if (r == 0)
        r = each_row(R, 0, 1, active, 0, row_snapshot);
    /* What a containerd holds through `cairn serve containerd` is its to
     * collect (its own gc removes what it no longer references). */
    static const char ctrd[] = "SELECT target FROM containerd_snapshots WHERE kind = 3";
    static const char ctrd_blobs[] = "SELECT 'blob', digest FROM containerd_content";
    if (r == 0)
        r = each_row(R, 0, 1, ctrd, 0, row_snapshot);
    if (r == 0)
        r = each_row(R, 0, 1, ctrd_blobs, 0, row_kind_name);
    /* Leased record keys and volumes may be held by lowers too. */
    if (r == 0 && st->n_layers > 1) {
        static const char keys[] =
            "SELECT r.kind, r.name FROM lease_resources r JOIN leases l ON l.id = r.lease "
            "WHERE (l.expires = 0 OR l.expires > ?1) AND r.kind IN ('record', 'volume')";
        sqlite3_stmt *s;
        r = cairn__stmt(st, 0, keys, &s, R->err);
        if (r < 0)
            return r;
        sqlite3_bind_int64(s, 1, R->now);
        cairn__strv names = {0}; /* pairs: kind, name */
        while (r == 0 && sqlite3_step(s) == SQLITE_ROW)
            if ((r = cairn__strv_push(&names, cairn__col(s, 0))) < 0 ||
                (r = cairn__strv_push(&names, cairn__col(s, 1))) < 0)
                r = cairn__err(R->err, r, "out of memory");
        sqlite3_reset(s);
        static const char by_key[] = "SELECT kind, result FROM cache_results WHERE key = ?";
        static const char by_vol[] =
            "SELECT 'snapshot', version FROM volume_versions WHERE name = ?";
        for (size_t k = 0; r == 0 && k + 1 < names.n; k += 2) {
            for (size_t li = 1; r == 0 && li < st->n_layers; li++) {
                sqlite3_stmt *q;
                r = cairn__stmt(st, li, !strcmp(names.v[k], "record") ? by_key : by_vol, &q,
                                R->err);
                if (r < 0)
                    break;
                sqlite3_bind_text(q, 1, names.v[k + 1], -1, SQLITE_TRANSIENT);
                while (r == 0 && sqlite3_step(q) == SQLITE_ROW)
                    r = row_kind_name(R, q);
                sqlite3_reset(q);
            }
        }
        cairn__strv_free(&names);
        if (r < 0)
            return r;
    }
    if (r < 0)
        return r;
    vol_cur *v = NULL;
    size_t nv = 0;
    r = volumes_current(R, &v, &nv);
    for (size_t k = 0; r == 0 && k < nv; k++)
        r = mark_name(R, CAIRN__OBJ_SNAPSHOT, v[k].version);
    free(v);
    return r;
}

static int row_result(gc_run *R, sqlite3_stmt *s)
{
    return mark_name(R, kind_of(cairn__col(s, 0)), cairn__col(s, 1));
}

static int mark_roots(gc_run *R)
{
    cairn_state *st = R->st;
    int r = mark_small_roots(R);
    /* Lowers: their records' results, and all they hold. */
    static const char lower_results[] = "SELECT kind, result FROM cache_result_refs";
    if (r == 0)
        r = each_row(R, 1, st->n_layers, lower_results, 0, row_result);
    int64_t young = R->now - R->o.grace;
    for (size_t i = 0; r == 0 && i < R->g.n; i++) {
        cairn__obj *o = &R->g.objs[i];
        bool is_young = !R->no_youth && (o->created >= young || o->last_used >= young);
        if (o->lower || is_young)
            r = mark(R, (int32_t)i);
    }
    return r;
}

/* ---- policy ----------------------------------------------------------- */

typedef struct cand {
    int32_t i;
    int64_t t;
} cand;

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* soft[i]: SOFT_KEPT when only records keep the object (through results,
 * parents and manifests), SOFT_GONE once the policy let it go. refs counts
 * the record rows naming it plus the soft objects that keep it. */
enum { SOFT_NONE = 0, SOFT_KEPT = 1, SOFT_GONE = 2 };

static int soft_ref(gc_run *R, int32_t t, uint8_t *soft)
{
    if (t < 0 || R->g.objs[t].mark)
        return 0;
    R->g.objs[t].refs++;
    if (soft[t])
        return 0;
    soft[t] = SOFT_KEPT;
    return push(R, t);
}

/* Soft-mark i (a result named by `records` rows) and what it keeps. */
static int soft_mark(gc_run *R, int32_t i, uint32_t records, uint8_t *soft)
{
    R->g.objs[i].refs += records;
    if (soft[i])
        return 0;
    soft[i] = SOFT_KEPT;
    int r = push(R, i);
    while (r == 0 && R->n_stack) {
        cairn__obj *o = &R->g.objs[R->stack[--R->n_stack]];
        r = soft_ref(R, o->parent, soft);
        for (uint32_t e = 0; r == 0 && e < o->n_edges; e++)
            r = soft_ref(R, (int32_t)R->g.edges[o->edges + e], soft);
    }
    return r < 0 ? cairn__err(R->err, r, "out of memory") : 0;
}

/* Drop `n` references to i; an object left with none goes, and drops its
 * references to what it kept. Returns the bytes of this state freed. */
static uint64_t soft_drop(gc_run *R, int32_t i, uint32_t n, uint8_t *soft)
{
    uint64_t freed = 0;
    cairn__obj *o = &R->g.objs[i];
    o->refs = o->refs > n ? o->refs - n : 0;
    if (o->refs > 0 || soft[i] != SOFT_KEPT)
        return 0;
    /* Gone: walk down with the stack (chains can be long). */
    soft[i] = SOFT_GONE;
    if (o->in0)
        freed += o->size;
    if (push(R, i) < 0)
        return freed;
    while (R->n_stack) {
        cairn__obj *x = &R->g.objs[R->stack[--R->n_stack]];
        int32_t kids_first = x->parent;
        for (int64_t e = -1; e < (int64_t)x->n_edges; e++) {
            int32_t t = e < 0 ? kids_first : (int32_t)R->g.edges[x->edges + (uint32_t)e];
            if (t < 0 || R->g.objs[t].mark || soft[t] != SOFT_KEPT)
                continue;
            cairn__obj *y = &R->g.objs[t];
            if (y->refs > 0)
                y->refs--;
            if (y->refs > 0)
                continue;
            soft[t] = SOFT_GONE;
            if (y->in0)
                freed += y->size;
            if (push(R, t) < 0)
                return freed;
        }
    }
    return freed;
}

static int fs_free(cairn_state *st, uint64_t *out)
{
    struct statvfs sv;
    if (fstatvfs(st->dirfd, &sv) < 0)
        return -errno;
    *out = (uint64_t)sv.f_bavail * sv.f_frsize;
    return 0;
}

/* Layer 0's results: count record rows per object, soft-mark them; then,
 * with a policy, choose the results to forget (*gone_out lists them). */
static int policy(gc_run *R, uint8_t *soft, int32_t **gone_out, size_t *n_gone_out)
{
    static const char sql[] = "SELECT result, kind, n FROM cache_result_refs";
    sqlite3_stmt *s;
    int r = cairn__stmt(R->st, 0, sql, &s, R->err);
    if (r < 0)
        return r;
    cand *c = NULL;
    uint32_t *recs = NULL;
    size_t nc = 0, capc = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int32_t i = cairn__graph_find(&R->g, kind_of(cairn__col(s, 1)), cairn__col(s, 0));
        if (i < 0 || R->g.objs[i].mark)
            continue;
        if (nc == capc) {
            capc = capc ? capc * 2 : 1024;
            cand *n2 = realloc(c, capc * sizeof(*n2));
            uint32_t *r2 = n2 ? realloc(recs, capc * sizeof(*r2)) : NULL;
            if (n2)
                c = n2;
            if (!n2 || !r2) {
                r = -ENOMEM;
                break;
            }
            recs = r2;
        }
        c[nc].i = i;
        c[nc].t = R->g.objs[i].last_used > R->g.objs[i].created ? R->g.objs[i].last_used
                                                                : R->g.objs[i].created;
        recs[nc] = (uint32_t)sqlite3_column_int64(s, 2);
        nc++;
    }
    sqlite3_reset(s);
    if (r == 0 && rc != SQLITE_DONE)
        r = cairn__err_db(R->err, R->st->layers[0].db, rc, "gc: records");
    for (size_t k = 0; r == 0 && k < nc; k++)
        r = soft_mark(R, c[k].i, recs[k], soft);
    bool has_policy = R->o.keep_duration >= 0 || R->o.max_used >= 0 || R->o.min_free >= 0;
    if (r < 0 || !has_policy || nc == 0) {
        free(c);
        free(recs);
        return r == -ENOMEM ? cairn__err(R->err, r, "out of memory") : r;
    }
    uint32_t *rec_of = calloc(R->g.n, sizeof(*rec_of));
    if (!rec_of) {
        free(c);
        free(recs);
        return cairn__err(R->err, -ENOMEM, "out of memory");
    }
    for (size_t k = 0; k < nc; k++)
        rec_of[c[k].i] = recs[k];
    free(recs);
    uint64_t garbage_bytes = 0;
    for (size_t i = 0; i < R->g.n; i++)
        if (R->g.objs[i].in0 && !R->g.objs[i].mark && !soft[i])
            garbage_bytes += R->g.objs[i].size;
    bool sized = R->o.max_used >= 0 || R->o.min_free >= 0;
    uint64_t used = R->stats.used_before - garbage_bytes, freebytes = 0;
    if (R->o.min_free >= 0 && (r = fs_free(R->st, &freebytes)) < 0) {
        free(c);
        free(rec_of);
        return cairn__err(R->err, r, "%s: statvfs: %m", R->st->path);
    }
    freebytes += garbage_bytes;
    qsort(c, nc, sizeof(*c), cmp_cand);
    int32_t *gone = malloc(nc * sizeof(*gone));
    size_t ng = 0;
    if (!gone) {
        free(c);
        free(rec_of);
        return cairn__err(R->err, -ENOMEM, "out of memory");
    }
    int64_t cutoff = R->o.keep_duration >= 0 ? R->now - R->o.keep_duration : INT64_MAX;
    for (size_t k = 0; k < nc; k++) {
        if (c[k].t >= cutoff)
            continue;
        if (sized) {
            bool over = (R->o.max_used >= 0 && used > (uint64_t)R->o.max_used) ||
                        (R->o.min_free >= 0 && freebytes < (uint64_t)R->o.min_free);
            if (!over)
                break;
        }
        if (R->o.reserved >= 0 && used <= (uint64_t)R->o.reserved)
            break;
        uint64_t freed = soft_drop(R, c[k].i, rec_of[c[k].i], soft);
        gone[ng++] = c[k].i;
        used = used > freed ? used - freed : 0;
        freebytes += freed;
    }
    free(c);
    free(rec_of);
    *gone_out = gone;
    *n_gone_out = ng;
    return 0;
}

/* ---- orphans ---------------------------------------------------------- */

typedef struct orphan {
    char hex[65];
    uint8_t kind;
    uint64_t size;
} orphan;

static int scan_orphans(gc_run *R, int kind, orphan **v, size_t *n, size_t *cap)
{
    cairn_state *st = R->st;
    int dfd = kind == CAIRN__OBJ_BLOB ? cairn__layer_blobfd(st, 0, R->err)
                                      : cairn__layer_snapfd(st, 0, R->err);
    if (dfd < 0)
        return dfd;
    int fd = dup(dfd);
    if (fd < 0)
        return cairn__err(R->err, -errno, "%s: %m", st->path);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return cairn__err(R->err, -ENOMEM, "out of memory");
    }
    rewinddir(d);
    int64_t old = R->now - R->o.grace;
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strlen(de->d_name) != 64)
            continue;
        char dg[CAIRN_DIGEST_LEN + 1];
        unsigned char raw[32];
        snprintf(dg, sizeof(dg), "sha256:%.64s", de->d_name);
        if (!cairn__digest_raw(dg, raw))
            continue;
        int32_t i = cairn__graph_find_raw(&R->g, kind, raw);
        if (i >= 0 && R->ino)
            R->ino[i] = de->d_ino;
        if (i >= 0 && (R->g.objs[i].in0 || R->g.objs[i].sibling))
            continue;
        if (kind == CAIRN__OBJ_SNAPSHOT && R->pending && cairn__strset_has(R->pending, dg))
            continue;
        struct stat sb;
        if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (sb.st_mtime > old || sb.st_ctime > old)
            continue;
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 64;
            orphan *nv = realloc(*v, nc * sizeof(*nv));
            if (!nv) {
                r = cairn__err(R->err, -ENOMEM, "out of memory");
                break;
            }
            *v = nv;
            *cap = nc;
        }
        orphan *o = &(*v)[(*n)++];
        memcpy(o->hex, de->d_name, 65);
        o->kind = (uint8_t)kind;
        o->size = S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size : 0;
    }
    closedir(d);
    return r;
}

/* Under the lock: is the file still named by no row of this directory? */
static int orphan_still(gc_run *R, const orphan *o)
{
    static const char blob_sql[] = "SELECT 1 FROM blobs WHERE digest = ?";
    static const char snap_sql[] = "SELECT 1 FROM snapshots WHERE chain_id = ?";
    char dg[CAIRN_DIGEST_LEN + 1];
    snprintf(dg, sizeof(dg), "sha256:%s", o->hex);
    /* A commit in progress has moved its diff here and not yet written
     * its row (R->pending is re-read under the lock). */
    if (o->kind == CAIRN__OBJ_SNAPSHOT && R->pending && cairn__strset_has(R->pending, dg))
        return 0;
    for (size_t li = 0; li < R->st->n_layers; li++) {
        if (R->st->layers[li].dirfd != R->st->dirfd)
            continue;
        sqlite3_stmt *s;
        int r = cairn__stmt(R->st, li, o->kind == CAIRN__OBJ_BLOB ? blob_sql : snap_sql, &s, R->err);
        if (r < 0)
            return r;
        sqlite3_bind_text(s, 1, dg, -1, SQLITE_TRANSIENT);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc == SQLITE_ROW)
            return 0;
        if (rc != SQLITE_DONE)
            return cairn__err_db(R->err, R->st->layers[li].db, rc, "gc: orphan check");
    }
    return 1;
}

/* Under the lock: directories of active/ that no active row names (left
 * by a commit killed after its rows, or by a prepare killed before its
 * row), older than the grace period. Prepare makes the directory and its
 * row under the lock held shared, so none is half made while this runs. */
static void report(gc_run *R, const char *kind, const char *name, uint64_t size,
                   const char *reason);

static int sweep_active(gc_run *R)
{
    cairn_state *st = R->st;
    static const char sql[] = "SELECT 1 FROM active WHERE id = ?";
    int afd = openat(st->dirfd, "active", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (afd < 0)
        return errno == ENOENT ? 0 : cairn__err(R->err, -errno, "%s/active: %m", st->path);
    DIR *d = fdopendir(afd);
    if (!d) {
        close(afd);
        return cairn__err(R->err, -ENOMEM, "out of memory");
    }
    int64_t old = R->now - R->o.grace; /* resolved by cairn_gc() */
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.' || strlen(de->d_name) != CAIRN_STATE_ID_LEN)
            continue;
        struct stat sb;
        if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
            sb.st_mtime > old || sb.st_ctime > old)
            continue;
        sqlite3_stmt *s;
        r = cairn__stmt(st, 0, sql, &s, R->err);
        if (r < 0)
            break;
        sqlite3_bind_text(s, 1, de->d_name, -1, SQLITE_TRANSIENT);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc == SQLITE_ROW)
            continue;
        if (rc != SQLITE_DONE) {
            r = cairn__err_db(R->err, st->layers[0].db, rc, "gc: active check");
            break;
        }
        if (!R->o.dry_run) {
            int q = cairn__rm_rf_at(dirfd(d), de->d_name);
            if (q < 0) {
                r = cairn__err(R->err, q, "%s/active/%s: remove: %m", st->path, de->d_name);
                break;
            }
        }
        char name[64];
        snprintf(name, sizeof(name), "active/%.32s", de->d_name);
        R->stats.files++;
        report(R, "file", name, 0, "orphan file");
    }
    closedir(d);
    return r;
}

/* ---- reporting -------------------------------------------------------- */

static void report(gc_run *R, const char *kind, const char *name, uint64_t size,
                   const char *reason)
{
    if (!R->fn)
        return;
    cairn_gc_item it = {kind, name, size, reason};
    R->fn(R->ud, &it);
}

static void gc_staging(void *ud, const char *name, uint64_t bytes, const char *why)
{
    gc_run *R = ud;
    char path[128];
    snprintf(path, sizeof(path), "tmp/%s", name);
    R->stats.files++;
    R->stats.bytes_freed += bytes;
    report(R, "file", path, bytes, why);
}

static const char *kind_name(int kind)
{
    return kind == CAIRN__OBJ_BLOB ? "blob" : "snapshot";
}

/* ---- deleting rows ---------------------------------------------------- */

static int step_bind1(gc_run *R, const char *sql, const char *a, const char *b)
{
    sqlite3_stmt *q;
    int r = cairn__stmt(R->st, 0, sql, &q, R->err);
    if (r < 0)
        return r;
    sqlite3_bind_text(q, 1, a, -1, SQLITE_TRANSIENT);
    if (b)
        sqlite3_bind_text(q, 2, b, -1, SQLITE_TRANSIENT);
    return cairn__step_done(R->st, 0, q, R->err);
}

/* The records of a result the policy let go: delete (or list, dry run). */
static int drop_records(gc_run *R, int32_t i, cairn__strv *keys)
{
    static const char del[] =
        "DELETE FROM cache_results WHERE result = ? AND kind = ? RETURNING key";
    static const char sel[] = "SELECT key FROM cache_results WHERE result = ? AND kind = ?";
    char d[CAIRN_DIGEST_LEN + 1];
    cairn__graph_digest(&R->g.objs[i], d);
    const char *kn = kind_name(R->g.objs[i].kind);
    sqlite3_stmt *q;
    int r = cairn__stmt(R->st, 0, R->o.dry_run ? sel : del, &q, R->err);
    if (r < 0)
        return r;
    sqlite3_bind_text(q, 1, d, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, kn, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        char name[2 * CAIRN_DIGEST_LEN + 2];
        snprintf(name, sizeof(name), "%s %s", cairn__col(q, 0), d);
        R->stats.records++;
        report(R, "record", name, 0, "policy");
        if (keys && (r = cairn__strv_push(keys, cairn__col(q, 0))) < 0)
            break;
    }
    sqlite3_reset(q);
    if (r < 0)
        return cairn__err(R->err, r, "out of memory");
    if (rc != SQLITE_DONE)
        return cairn__err_db(R->err, R->st->layers[0].db, rc, "gc: records");
    return 0;
}

static int drop_object_rows(gc_run *R, int32_t i)
{
    static const char del_blob[] = "DELETE FROM blobs WHERE digest = ?";
    static const char del_labels[] = "DELETE FROM blob_labels WHERE digest = ?";
    static const char del_snap[] = "DELETE FROM snapshots WHERE chain_id = ?";
    static const char del_usage[] = "DELETE FROM usage WHERE object = ?";
    cairn__obj *o = &R->g.objs[i];
    char d[CAIRN_DIGEST_LEN + 1], u[CAIRN__USAGE_NAME_MAX];
    cairn__graph_digest(o, d);
    int r;
    if (o->kind == CAIRN__OBJ_BLOB) {
        r = step_bind1(R, del_blob, d, NULL);
        if (r == 0)
            r = step_bind1(R, del_labels, d, NULL);
    } else {
        r = step_bind1(R, del_snap, d, NULL);
    }
    cairn__usage_name(u, sizeof(u), kind_name(o->kind), d);
    /* A blob and a snapshot of one digest share their usage row. */
    if (r == 0 && cairn__graph_find_raw(&R->g, !o->kind, o->raw) < 0)
        r = step_bind1(R, del_usage, u, NULL);
    return r;
}

/* Old volume versions (not current, volume not leased) and expired leases. */
static int drop_small(gc_run *R)
{
    static const char vers[] =
        "SELECT name, version FROM volume_versions WHERE name NOT IN ("
        "SELECT r.name FROM lease_resources r JOIN leases l ON l.id = r.lease "
        "WHERE r.kind = 'volume' AND (l.expires = 0 OR l.expires > ?1)) ORDER BY name, version";
    static const char del_ver[] = "DELETE FROM volume_versions WHERE name = ? AND version = ?";
    static const char exp_sel[] =
        "SELECT id FROM leases WHERE expires != 0 AND expires <= ?1 ORDER BY id";
    static const char exp_del[] = "DELETE FROM leases WHERE expires != 0 AND expires <= ?1";
    vol_cur *cur = NULL;
    size_t ncur = 0;
    int r = volumes_current(R, &cur, &ncur);
    if (r < 0)
        return r;
    cairn__strv old = {0};
    sqlite3_stmt *s;
    r = cairn__stmt(R->st, 0, vers, &s, R->err);
    if (r < 0) {
        free(cur);
        return r;
    }
    sqlite3_bind_int64(s, 1, R->now);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *nm = cairn__col(s, 0), *ver = cairn__col(s, 1);
        bool current = false;
        for (size_t k = 0; k < ncur && !current; k++)
            current = !strcmp(cur[k].name, nm) && !strcmp(cur[k].version, ver);
        if (current)
            continue;
        if ((r = cairn__strv_push(&old, nm)) < 0 || (r = cairn__strv_push(&old, ver)) < 0)
            break;
    }
    sqlite3_reset(s);
    free(cur);
    if (r == -ENOMEM)
        r = cairn__err(R->err, r, "out of memory");
    else if (rc != SQLITE_DONE)
        r = cairn__err_db(R->err, R->st->layers[0].db, rc, "gc: volumes");
    for (size_t k = 0; r == 0 && k + 1 < old.n; k += 2) {
        if (!R->o.dry_run)
            r = step_bind1(R, del_ver, old.v[k], old.v[k + 1]);
        char name[CAIRN_LEASE_NAME_MAX + CAIRN_DIGEST_LEN + 2];
        snprintf(name, sizeof(name), "%s %s", old.v[k], old.v[k + 1]);
        R->stats.volume_versions++;
        report(R, "volume", name, 0, "old version");
    }
    cairn__strv_free(&old);
    if (r < 0)
        return r;
    r = cairn__stmt(R->st, 0, exp_sel, &s, R->err);
    if (r < 0)
        return r;
    sqlite3_bind_int64(s, 1, R->now);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        R->stats.leases++;
        report(R, "lease", cairn__col(s, 0), 0, "expired");
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return cairn__err_db(R->err, R->st->layers[0].db, rc, "gc: leases");
    if (R->o.dry_run)
        return 0;
    r = cairn__stmt(R->st, 0, exp_del, &s, R->err);
    if (r < 0)
        return r;
    sqlite3_bind_int64(s, 1, R->now);
    return cairn__step_done(R->st, 0, s, R->err);
}

/* ---- the delta under the lock ----------------------------------------- */

/* The diffs of commits in progress: at snapshots/<hex> before their row
 * (snapshot.c's commit order), never orphans. */
static int pending_load(gc_run *R)
{
    cairn__strset_free(R->pending);
    R->pending = cairn__strset_new();
    if (!R->pending)
        return cairn__err(R->err, -ENOMEM, "out of memory");
    return cairn__snapshot_pending(R->st, R->pending, R->err);
}

static int delta(gc_run *R)
{
    /* Blobs and snapshots: exactly the rows the graph did not see (their
     * creation time is taken before their writer's transaction begins).
     * Records and uses: by time, taken inside their writer's transaction. */
    static const char new_blobs[] = "SELECT digest, media_type FROM blobs";
    static const char new_snaps[] = "SELECT chain_id, parent FROM snapshots";
    static const char new_results[] =
        "SELECT kind, result FROM cache_result_refs WHERE touched >= ?1";
    static const char new_usage[] = "SELECT object FROM usage WHERE last_used >= ?1";
    R->now = cairn__now();
    int r = mark_small_roots(R);
    if (r == 0)
        r = pending_load(R);
    if (r == 0)
        r = each_row(R, 0, 1, new_blobs, R->t0, row_new_blob);
    if (r == 0)
        r = each_row(R, 0, 1, new_snaps, R->t0, row_new_snapshot);
    if (r == 0)
        r = each_row(R, 0, 1, new_results, R->t0, row_result);
    if (r == 0)
        r = each_row(R, 0, 1, new_usage, R->t0, row_usage);
    return r;
}

/* ---- the run ---------------------------------------------------------- */

/* Called while objects are removed, their rows gone already: a stop leaves
 * files no row names, which the next gc removes. */
static int progress(gc_run *R, uint64_t done, uint64_t total)
{
    if (done % 256 == 0 || done == total)
        return cairn__progress(R->o.progress, R->o.progress_userdata, done, total, "gc", R->err);
    return 0;
}

static int cmp_ino(const void *a, const void *b, void *ud)
{
    const uint64_t *ino = ud;
    uint64_t x = ino[*(const int32_t *)a], y = ino[*(const int32_t *)b];
    return x < y ? -1 : x > y;
}

static int run(gc_run *R)
{
    cairn_state *st = R->st;
    int r;
    R->now = cairn__now();
    R->t0 = R->now - DELTA_SLACK;

    /* 1. load, in one read transaction of layer 0 (a consistent view). */
    r = cairn__exec(st, 0, "BEGIN", R->err);
    if (r < 0)
        return r;
    r = cairn__graph_load(st, &R->g, R->err);
    for (size_t i = 0; r == 0 && i < R->g.n; i++)
        if (R->g.objs[i].in0)
            R->stats.used_before += R->g.objs[i].size;
    /* 2. mark. */
    if (r == 0)
        r = mark_roots(R);
    /* 3. policy. */
    uint8_t *soft = r == 0 ? calloc(R->g.n ? R->g.n : 1, 1) : NULL;
    int32_t *gone = NULL;
    size_t n_gone = 0;
    if (r == 0 && !soft)
        r = cairn__err(R->err, -ENOMEM, "out of memory");
    if (r == 0)
        r = policy(R, soft, &gone, &n_gone);
    cairn__exec(st, 0, "COMMIT", NULL);
    /* 4. orphans (and the inode of every object, to delete in inode order). */
    if (r == 0 && !(R->ino = calloc(R->g.n ? R->g.n : 1, sizeof(*R->ino))))
        r = cairn__err(R->err, -ENOMEM, "out of memory");
    orphan *orph = NULL;
    size_t n_orph = 0, cap_orph = 0;
    if (r == 0)
        r = pending_load(R);
    if (r == 0)
        r = scan_orphans(R, CAIRN__OBJ_BLOB, &orph, &n_orph, &cap_orph);
    if (r == 0)
        r = scan_orphans(R, CAIRN__OBJ_SNAPSHOT, &orph, &n_orph, &cap_orph);

    bool locked = false, in_tx = false;
    cairn__strv keys = {0};
    int32_t *del = NULL;
    size_t n_del = 0;
    /* 5. lock, delta (a dry run reads the delta too, unlocked). */
    if (r == 0 && !R->o.dry_run) {
        r = cairn__lock(st, true, R->err);
        locked = r == 0;
        if (r == 0) {
            r = cairn__tx_begin(st, R->err);
            in_tx = r == 0;
        }
    }
    if (r == 0)
        r = delta(R);
    /* 6. rows. */
    if (r == 0) {
        del = malloc((R->g.n ? R->g.n : 1) * sizeof(*del));
        if (!del)
            r = cairn__err(R->err, -ENOMEM, "out of memory");
    }
    for (size_t k = 0; r == 0 && k < n_gone; k++)
        if (!R->g.objs[gone[k]].mark)
            r = drop_records(R, gone[k], R->o.dry_run ? NULL : &keys);
    if (r == 0 && !R->o.dry_run && keys.n) {
        int p = cairn__record_prune(st, (const char *const *)keys.v, keys.n, R->err);
        if (p < 0)
            r = p;
        else
            R->stats.links += (uint64_t)p;
    }
    for (size_t i = 0; r == 0 && i < R->g.n; i++) {
        cairn__obj *o = &R->g.objs[i];
        if (!o->in0 || o->mark || soft[i] == SOFT_KEPT)
            continue;
        del[n_del++] = (int32_t)i;
        if (!R->o.dry_run)
            r = drop_object_rows(R, (int32_t)i);
    }
    if (r == 0)
        r = drop_small(R);
    if (in_tx) {
        if (r == 0)
            r = cairn__tx_commit(st, R->err);
        else
            cairn__tx_rollback(st);
    }
    /* 7. objects: the rows are gone and durable. In inode order: the
     * inode table is then written mostly in sequence. */
    if (r == 0 && n_del > 1)
        qsort_r(del, n_del, sizeof(*del), cmp_ino, R->ino);
    uint64_t total = n_del + n_orph, done = 0;
    for (size_t k = 0; r == 0 && k < n_del; k++) {
        cairn__obj *o = &R->g.objs[del[k]];
        char d[CAIRN_DIGEST_LEN + 1];
        cairn__graph_digest(o, d);
        if (!R->o.dry_run) {
            int dfd = o->kind == CAIRN__OBJ_BLOB ? cairn__layer_blobfd(st, 0, R->err)
                                                 : cairn__layer_snapfd(st, 0, R->err);
            if (dfd < 0) {
                r = dfd;
                break;
            }
            int q = o->kind == CAIRN__OBJ_BLOB
                        ? (unlinkat(dfd, cairn__digest_hex(d), 0) < 0 && errno != ENOENT ? -errno
                                                                                          : 0)
                        : cairn__rm_rf_at(dfd, cairn__digest_hex(d));
            if (q < 0) {
                r = cairn__err(R->err, q, "%s %s: remove: %m", kind_name(o->kind), d);
                break;
            }
        }
        if (o->kind == CAIRN__OBJ_BLOB)
            R->stats.blobs++;
        else
            R->stats.snapshots++;
        R->stats.bytes_freed += o->size;
        report(R, kind_name(o->kind), d, o->size, soft[del[k]] == SOFT_GONE ? "policy"
                                                                            : "unreferenced");
        r = progress(R, ++done, total);
    }
    for (size_t k = 0; r == 0 && k < n_orph; k++) {
        orphan *o = &orph[k];
        if (!R->o.dry_run) {
            int still = orphan_still(R, o);
            if (still < 0) {
                r = still;
                break;
            }
            if (!still)
                continue;
            int dfd = o->kind == CAIRN__OBJ_BLOB ? cairn__layer_blobfd(st, 0, R->err)
                                                 : cairn__layer_snapfd(st, 0, R->err);
            int q = dfd < 0 ? dfd : cairn__rm_rf_at(dfd, o->hex);
            if (q < 0) {
                r = cairn__err(R->err, q, "%s/%s/%s: remove: %m", st->path,
                               o->kind == CAIRN__OBJ_BLOB ? "blobs/sha256" : "snapshots", o->hex);
                break;
            }
        }
        char name[128];
        snprintf(name, sizeof(name), "%s/%s", o->kind == CAIRN__OBJ_BLOB ? "blobs/sha256"
                                                                          : "snapshots",
                 o->hex);
        R->stats.files++;
        R->stats.bytes_freed += o->size;
        report(R, "file", name, o->size, "orphan file");
        r = progress(R, ++done, total);
    }
    if (r == 0 && (locked || R->o.dry_run))
        r = sweep_active(R);
    /* Staging no live process owns (a killed put, import or merge): tmp/
     * entries whose owner's lock is free, or of an earlier boot. Open
     * sweeps them too; a long-running process opens once and gcs often. */
    if (r == 0) {
        int q = cairn__tmp_sweep(st, R->o.dry_run, gc_staging, R, R->err);
        if (q < 0)
            r = q;
    }
    /* 8. unlock. */
    if (locked)
        cairn__unlock(st);
    uint64_t freed_own = 0;
    for (size_t k = 0; k < n_del; k++)
        freed_own += R->g.objs[del[k]].size;
    R->stats.used_after = R->stats.used_before - freed_own;
    R->stats.kept_objects = 0;
    for (size_t i = 0; i < R->g.n; i++)
        R->stats.kept_objects += R->g.objs[i].in0;
    R->stats.kept_objects -= n_del;
    cairn__strv_free(&keys);
    cairn__strset_free(R->pending);
    R->pending = NULL;
    free(R->ino);
    R->ino = NULL;
    free(del);
    free(orph);
    free(gone);
    free(soft);
    return r;
}

int cairn_gc(cairn_state *st, const cairn_gc_options *opts, cairn_gc_fn fn, void *userdata,
             cairn_gc_stats *stats, cairn_error *err)
{
    cairn_gc_options def = CAIRN_GC_OPTIONS_INIT;
    gc_run R = {.st = st, .o = opts ? *opts : def, .fn = fn, .ud = userdata, .err = err};
    int r0 = cairn__opts_version(R.o.version, CAIRN_GC_OPTIONS_VERSION, "gc", err);
    if (r0 < 0)
        return r0;
    /* The public reading (zero: the default) into the run's: grace resolved,
     * -1 for a policy field not set. */
    R.o.grace = R.o.grace == 0 ? CAIRN_GC_GRACE_DEFAULT : R.o.grace < 0 ? 0 : R.o.grace;
    int64_t *unset[] = {&R.o.keep_duration, &R.o.max_used, &R.o.min_free, &R.o.reserved};
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(unset); i++)
        if (*unset[i] <= 0)
            *unset[i] = -1;
    if (!R.o.dry_run) {
        int r = cairn__check_writable(st, err);
        if (r < 0)
            return r;
    }
    int r = run(&R);
    /* The space gc freed makes the reserve a full file system took again. */
    if (r == 0 && !R.o.dry_run)
        cairn__reserve_ensure(st);
    cairn__graph_free(&R.g);
    free(R.stack);
    if (r == 0 && stats)
        *stats = R.stats;
    return r;
}

int cairn__graph_mark_roots(cairn_state *st, cairn__graph *g, int64_t grace, cairn_error *err)
{
    gc_run R = {.st = st, .err = err};
    cairn_gc_options def = {CAIRN_GC_OPTIONS_VERSION, .keep_duration = -1, .max_used = -1,
                            .min_free = -1, .reserved = -1};
    R.o = def;
    R.o.grace = grace < 0 ? 0 : grace;
    R.no_youth = grace < 0;
    R.now = cairn__now();
    R.g = *g;
    int r = mark_roots(&R);
    *g = R.g; /* parsing manifests may have grown the edge list */
    free(R.stack);
    return r;
}
