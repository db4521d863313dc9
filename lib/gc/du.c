/* du.c: disk usage of a state (cairn/gc.h: cairn_du).
 *
 * Entries are what an engine names: images, volumes and cache keys. Each
 * keeps a set of objects (its results or versions, their parent snapshots,
 * what its manifests name). An entry's size counts each object it keeps
 * once; its unique size counts the objects no other entry keeps. The totals
 * count every object once. Two passes over the entries: the first counts
 * how many entries keep each object, the second sizes each entry.
 */
#include "gc/graph.h"

typedef struct du_run {
    cairn_state *st;
    cairn__graph g;
    uint32_t *stamp;   /* last entry that visited the object */
    uint8_t *keepers;  /* entries that keep the object, saturated at 2 */
    uint8_t *by_record;
    uint32_t cur;
    int pass;
    int32_t *stack;
    size_t n_stack, cap_stack;
    /* the entry being sized */
    uint64_t size, unique, objects;
    bool is_record;
    /* results */
    cairn_du_entry *out;
    char **names;
    size_t n_out, cap_out;
    const char *kind;
    cairn_error *err;
} du_run;

static int du_push(du_run *D, int32_t i)
{
    if (i < 0 || D->stamp[i] == D->cur)
        return 0;
    D->stamp[i] = D->cur;
    if (D->n_stack == D->cap_stack) {
        size_t nc = D->cap_stack ? D->cap_stack * 2 : 256;
        int32_t *ns = realloc(D->stack, nc * sizeof(*ns));
        if (!ns)
            return -ENOMEM;
        D->stack = ns;
        D->cap_stack = nc;
    }
    D->stack[D->n_stack++] = i;
    return 0;
}

/* Visit what object i keeps, counting it for the current entry. */
static int du_visit(du_run *D, int32_t i)
{
    int r = du_push(D, i);
    while (r == 0 && D->n_stack) {
        int32_t k = D->stack[--D->n_stack];
        cairn__obj *o = &D->g.objs[k];
        if (D->pass == 0) {
            if (D->keepers[k] < 2)
                D->keepers[k]++;
            if (D->is_record)
                D->by_record[k] = 1;
        } else {
            D->size += o->size;
            D->objects++;
            if (D->keepers[k] == 1)
                D->unique += o->size;
        }
        r = du_push(D, o->parent);
        for (uint32_t e = 0; r == 0 && e < o->n_edges; e++)
            r = du_push(D, (int32_t)D->g.edges[o->edges + e]);
    }
    return r;
}

static void entry_begin(du_run *D)
{
    D->cur++;
    D->size = D->unique = D->objects = 0;
}

static int cmp_entry(const void *a, const void *b)
{
    const cairn_du_entry *x = a, *y = b;
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int entry_end(du_run *D, const char *name)
{
    if (D->pass == 0)
        return 0;
    if (D->n_out == D->cap_out) {
        size_t nc = D->cap_out ? D->cap_out * 2 : 64;
        cairn_du_entry *no = realloc(D->out, nc * sizeof(*no));
        if (!no)
            return -ENOMEM;
        D->out = no;
        D->cap_out = nc;
    }
    char *nm = strdup(name);
    if (!nm)
        return -ENOMEM;
    D->out[D->n_out++] = (cairn_du_entry){D->kind, nm, D->size, D->unique, D->objects};
    return 0;
}

static int kind_idx(const char *k)
{
    return !strcmp(k, "blob") ? CAIRN__OBJ_BLOB : CAIRN__OBJ_SNAPSHOT;
}

/* Images: manifest (and what it names), config, top snapshot. */
static int du_images(du_run *D)
{
    static const char sql[] = "SELECT name, manifest, config, top FROM images ORDER BY name";
    cairn__strset *seen = cairn__strset_new();
    if (!seen)
        return -ENOMEM;
    int r = 0;
    D->kind = "image";
    D->is_record = false;
    for (size_t li = 0; li < D->st->n_layers && r == 0; li++) {
        sqlite3_stmt *s;
        r = cairn__stmt(D->st, li, sql, &s, D->err);
        if (r < 0)
            break;
        int rc;
        while (r == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            if (cairn__strset_add(seen, cairn__col(s, 0)) != 1)
                continue; /* the topmost layer's image wins */
            if (!*cairn__col(s, 1))
                continue; /* a tombstone hiding a lower's image */
            entry_begin(D);
            r = du_visit(D, cairn__graph_find(&D->g, CAIRN__OBJ_BLOB, cairn__col(s, 1)));
            if (r == 0)
                r = du_visit(D, cairn__graph_find(&D->g, CAIRN__OBJ_BLOB, cairn__col(s, 2)));
            if (r == 0)
                r = du_visit(D, cairn__graph_find(&D->g, CAIRN__OBJ_SNAPSHOT, cairn__col(s, 3)));
            if (r == 0)
                r = entry_end(D, cairn__col(s, 0));
        }
        sqlite3_reset(s);
    }
    cairn__strset_free(seen);
    return r;
}

/* Union-walk callbacks: rows sorted by a unique column 0 that starts with
 * the entry's name; rows of one entry are consecutive. */
struct group_ctx {
    du_run *D;
    char last[CAIRN_LEASE_NAME_MAX + CAIRN_DIGEST_LEN + 2];
    bool open;
};

static int group_row(void *ud, size_t layer, sqlite3_stmt *s)
{
    struct group_ctx *c = ud;
    du_run *D = c->D;
    const char *name = cairn__col(s, 1);
    int r = 0;
    if (!c->open || strcmp(c->last, name) != 0) {
        if (c->open && (r = entry_end(D, c->last)) < 0)
            return r;
        snprintf(c->last, sizeof(c->last), "%s", name);
        c->open = true;
        entry_begin(D);
    }
    return du_visit(D, cairn__graph_find(&D->g, kind_idx(cairn__col(s, 2)), cairn__col(s, 3)));
}

static int du_groups(du_run *D, const char *sql, const char *kind, bool is_record)
{
    struct group_ctx c = {.D = D};
    D->kind = kind;
    D->is_record = is_record;
    int r = cairn__union_walk(D->st, sql, NULL, group_row, &c, D->err);
    if (r == 0 && c.open)
        r = entry_end(D, c.last);
    return r;
}

static int du_pass(du_run *D)
{
    static const char vols[] =
        "SELECT name || ' ' || version, name, 'snapshot', version FROM volume_versions "
        "ORDER BY 1";
    /* Digests of one length: ordering by (key, result) is ordering by the
     * first column, and follows the primary key (no sort). */
    static const char recs[] =
        "SELECT key || ' ' || result, key, kind, result FROM cache_results ORDER BY key, result";
    int r = du_images(D);
    if (r == 0)
        r = du_groups(D, vols, "volume", false);
    if (r == 0)
        r = du_groups(D, recs, "record", true);
    return r;
}

static int count_rows(cairn_state *st, const char *sql, bool union_all, uint64_t *out,
                      cairn_error *err)
{
    *out = 0;
    for (size_t li = 0; li < (union_all ? st->n_layers : 1); li++) {
        sqlite3_stmt *s;
        int r = cairn__stmt(st, li, sql, &s, err);
        if (r < 0)
            return r;
        if (sqlite3_step(s) == SQLITE_ROW)
            *out += (uint64_t)sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
    }
    return 0;
}

int cairn_du(cairn_state *st, unsigned limit, cairn_du_totals *totals, cairn_du_fn fn,
             void *userdata, cairn_error *err)
{
    du_run D = {.st = st, .err = err};
    cairn_du_totals t = {0};
    int r = cairn__graph_load(st, &D.g, err);
    if (r == 0)
        r = cairn__graph_mark_roots(st, &D.g, -1, err);
    size_t n = D.g.n ? D.g.n : 1;
    if (r == 0) {
        D.stamp = calloc(n, sizeof(*D.stamp));
        D.keepers = calloc(n, 1);
        D.by_record = calloc(n, 1);
        if (!D.stamp || !D.keepers || !D.by_record)
            r = cairn__err(err, -ENOMEM, "out of memory");
    }
    for (D.pass = 0; r == 0 && D.pass < 2; D.pass++) {
        r = du_pass(&D);
        if (r == -ENOMEM)
            r = cairn__err(err, r, "out of memory");
    }
    for (size_t i = 0; r == 0 && i < D.g.n; i++) {
        cairn__obj *o = &D.g.objs[i];
        cairn_count *k = o->kind == CAIRN__OBJ_BLOB ? &t.blobs : &t.snapshots;
        k->count++;
        k->bytes += o->size;
        t.total += o->size;
        if (o->in0) {
            k = o->kind == CAIRN__OBJ_BLOB ? &t.own_blobs : &t.own_snapshots;
            k->count++;
            k->bytes += o->size;
            if (!o->mark) {
                t.reclaimable += o->size;
                if (!D.by_record[i])
                    t.unreferenced += o->size;
            }
        }
    }
    static const char n_records[] = "SELECT count(*) FROM cache_results";
    static const char n_links[] = "SELECT count(*) FROM cache_links";
    static const char n_images[] = "SELECT count(*) FROM images WHERE manifest != ''";
    static const char n_leases[] = "SELECT count(*) FROM leases";
    if (r == 0)
        r = count_rows(st, n_records, true, &t.records, err);
    if (r == 0)
        r = count_rows(st, n_links, true, &t.links, err);
    if (r == 0)
        r = count_rows(st, n_images, true, &t.images, err);
    if (r == 0)
        r = count_rows(st, n_leases, false, &t.leases, err);
    uint64_t vols = 0;
    for (size_t i = 0; i < D.n_out; i++)
        vols += !strcmp(D.out[i].kind, "volume");
    t.volumes = vols;
    if (r == 0 && totals)
        *totals = t;
    /* Report: per kind, largest first, up to `limit`. */
    if (r == 0 && fn) {
        static const char *const kinds[] = {"image", "volume", "record"};
        for (size_t k = 0; r == 0 && k < 3; k++) {
            size_t from = 0;
            while (from < D.n_out && strcmp(D.out[from].kind, kinds[k]))
                from++;
            size_t to = from;
            while (to < D.n_out && !strcmp(D.out[to].kind, kinds[k]))
                to++;
            if (to > from) /* D.out is NULL when there is nothing: qsort wants a pointer */
                qsort(D.out + from, to - from, sizeof(*D.out), cmp_entry);
            for (size_t i = from; r == 0 && i < to && (!limit || i - from < limit); i++)
                r = fn(userdata, &D.out[i]);
        }
    }
    for (size_t i = 0; i < D.n_out; i++)
        free((char *)D.out[i].name);
    free(D.out);
    free(D.stamp);
    free(D.keepers);
    free(D.by_record);
    free(D.stack);
    cairn__graph_free(&D.g);
    return r;
}
