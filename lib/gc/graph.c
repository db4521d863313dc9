/* graph.c: the object graph of a state (cache/cache-private.h): every blob
 * and snapshot of every layer as a node, snapshot parents and what manifests
 * and indexes name as edges, loaded in one pass over the rows. gc marks it;
 * du, fsck and the remote export walk it too.
 */
#include "gc/graph.h"

#include <jansson.h>

/* ---- the graph -------------------------------------------------------- */

/* Hex digit values, -1 for anything else: a table, as this runs for every
 * row and every directory entry of a large state. */
static const signed char hexv[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,
    ['6'] = 7,  ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12,
    ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
}; /* value + 1; 0: not a digit */

/* "sha256:<64 hex>" -> 32 bytes; false when malformed. */
bool cairn__digest_raw(const char *d, unsigned char raw[32])
{
    if (strncmp(d, "sha256:", 7) != 0)
        return false;
    const unsigned char *h = (const unsigned char *)d + 7;
    for (int i = 0; i < 32; i++) {
        int a = hexv[h[2 * i]], b = a ? hexv[h[2 * i + 1]] : 0;
        if (!a || !b)
            return false;
        raw[i] = (unsigned char)((a - 1) << 4 | (b - 1));
    }
    return h[64] == 0;
}

void cairn__graph_digest(const cairn__obj *o, char out[CAIRN_DIGEST_LEN + 1])
{
    cairn__digest_fmt(out, o->raw);
}

static size_t slot_of(const unsigned char raw[32], int kind, size_t mask)
{
    uint64_t h;
    memcpy(&h, raw, 8);
    return (size_t)((h ^ (uint64_t)kind * 0x9e3779b97f4a7c15ull) & mask);
}

int32_t cairn__graph_find_raw(const cairn__graph *g, int kind, const unsigned char raw[32])
{
    if (!g->n_slots)
        return -1;
    size_t mask = g->n_slots - 1;
    for (size_t i = slot_of(raw, kind, mask);; i = (i + 1) & mask) {
        uint32_t v = g->slots[i];
        if (!v)
            return -1;
        const cairn__obj *o = &g->objs[v - 1];
        if (o->kind == kind && !memcmp(o->raw, raw, 32))
            return (int32_t)(v - 1);
    }
}

int32_t cairn__graph_find(const cairn__graph *g, int kind, const char *digest)
{
    unsigned char raw[32];
    if (!cairn__digest_raw(digest, raw))
        return -1;
    return cairn__graph_find_raw(g, kind, raw);
}

static int rehash(cairn__graph *g, size_t n_slots)
{
    uint32_t *s = calloc(n_slots, sizeof(*s));
    if (!s)
        return -ENOMEM;
    size_t mask = n_slots - 1;
    for (size_t k = 0; k < g->n; k++) {
        size_t i = slot_of(g->objs[k].raw, g->objs[k].kind, mask);
        while (s[i])
            i = (i + 1) & mask;
        s[i] = (uint32_t)(k + 1);
    }
    free(g->slots);
    g->slots = s;
    g->n_slots = n_slots;
    return 0;
}

/* Find or add; returns the index or -ENOMEM. */
static int32_t graph_add(cairn__graph *g, int kind, const unsigned char raw[32], bool *added)
{
    int32_t f = cairn__graph_find_raw(g, kind, raw);
    *added = f < 0;
    if (f >= 0)
        return f;
    if ((g->n + 1) * 2 > g->n_slots) {
        int r = rehash(g, g->n_slots ? g->n_slots * 2 : 1024);
        if (r < 0)
            return r;
    }
    if (g->n == g->cap) {
        size_t nc = g->cap ? g->cap * 2 : 1024;
        cairn__obj *no = realloc(g->objs, nc * sizeof(*no));
        if (!no)
            return -ENOMEM;
        g->objs = no;
        g->cap = nc;
    }
    cairn__obj *o = &g->objs[g->n];
    memset(o, 0, sizeof(*o));
    memcpy(o->raw, raw, 32);
    o->kind = (uint8_t)kind;
    o->parent = -1;
    size_t mask = g->n_slots - 1;
    size_t i = slot_of(raw, kind, mask);
    while (g->slots[i])
        i = (i + 1) & mask;
    g->slots[i] = (uint32_t)(g->n + 1);
    return (int32_t)g->n++;
}

void cairn__graph_free(cairn__graph *g)
{
    free(g->objs);
    free(g->slots);
    free(g->edges);
    memset(g, 0, sizeof(*g));
}

bool cairn__is_manifest_type(const char *mt)
{
    static const char *const types[] = {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.artifact.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    };
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(types); i++)
        if (!strcmp(mt, types[i]))
            return true;
    return false;
}

static int refs_of(json_t *o, int (*fn)(void *, const char *), void *ud)
{
    const char *d = json_string_value(json_object_get(o, "digest"));
    return d ? fn(ud, d) : 0;
}

int cairn__manifest_refs(const void *buf, size_t len, int (*fn)(void *ud, const char *digest),
                         void *ud)
{
    json_t *root = json_loadb(buf, len, 0, NULL);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return CAIRN_E_FORMAT;
    }
    int r = 0;
    json_t *c = json_object_get(root, "config");
    if (json_is_object(c))
        r = refs_of(c, fn, ud);
    json_t *s = json_object_get(root, "subject");
    if (r == 0 && json_is_object(s))
        r = refs_of(s, fn, ud);
    static const char *const lists[] = {"layers", "manifests", "blobs"};
    for (size_t k = 0; r == 0 && k < CAIRN_ARRAY_SIZE(lists); k++) {
        json_t *a = json_object_get(root, lists[k]), *e;
        size_t i;
        if (!json_is_array(a))
            continue;
        json_array_foreach(a, i, e)
        {
            if (json_is_object(e) && (r = refs_of(e, fn, ud)) != 0)
                break;
        }
    }
    json_decref(root);
    return r;
}

typedef struct pend {
    int32_t from;
    unsigned char raw[32];
} pend;

typedef struct loader {
    cairn__graph *g;
    pend *p;           /* pending snapshot parents */
    size_t np, capp;
    int32_t *manifests; /* blobs to parse */
    size_t nm, capm;
} loader;

static int pend_add(loader *L, int32_t from, const unsigned char raw[32])
{
    if (L->np == L->capp) {
        size_t nc = L->capp ? L->capp * 2 : 1024;
        pend *np = realloc(L->p, nc * sizeof(*np));
        if (!np)
            return -ENOMEM;
        L->p = np;
        L->capp = nc;
    }
    L->p[L->np].from = from;
    memcpy(L->p[L->np].raw, raw, 32);
    L->np++;
    return 0;
}

static int edge_add(cairn__graph *g, uint32_t to)
{
    if (g->n_edges_used == g->cap_edges) {
        size_t nc = g->cap_edges ? g->cap_edges * 2 : 256;
        uint32_t *ne = realloc(g->edges, nc * sizeof(*ne));
        if (!ne)
            return -ENOMEM;
        g->edges = ne;
        g->cap_edges = nc;
    }
    g->edges[g->n_edges_used++] = to;
    return 0;
}

struct edge_ctx {
    cairn__graph *g;
    int32_t from;
};

static int edge_cb(void *ud, const char *digest)
{
    struct edge_ctx *c = ud;
    int32_t t = cairn__graph_find(c->g, CAIRN__OBJ_BLOB, digest);
    if (t < 0)
        return 0; /* names a blob this state does not hold */
    int r = edge_add(c->g, (uint32_t)t);
    if (r == 0)
        c->g->objs[c->from].n_edges++;
    return r;
}

/* Parse manifest `i` (its bytes from the store) into edges. Unreadable or
 * not JSON: no edges (fsck reports it), never an error of gc. */
static int parse_manifest(cairn_state *st, cairn__graph *g, int32_t i)
{
    cairn__obj *o = &g->objs[i];
    if (o->n_edges)
        return 0;
    char d[CAIRN_DIGEST_LEN + 1];
    cairn__graph_digest(o, d);
    void *buf = NULL;
    size_t len = 0;
    if (cairn_blob_read(st, d, &buf, &len, NULL) < 0)
        return 0;
    g->objs[i].edges = (uint32_t)g->n_edges_used;
    g->objs[i].manifest = 1;
    struct edge_ctx c = {g, i};
    int r = cairn__manifest_refs(buf, len, edge_cb, &c);
    free(buf);
    return r == CAIRN_E_FORMAT ? 0 : r;
}

static int load_layer(cairn_state *st, size_t li, loader *L, cairn_error *err)
{
    static const char blobs_sql[] = "SELECT digest, size, media_type, created FROM blobs";
    static const char snaps_sql[] = "SELECT chain_id, parent, size, created FROM snapshots";
    static const char usage_sql[] =
        "SELECT object, max(last_used) FROM usage GROUP BY object";
    cairn__graph *g = L->g;
    bool sibling = li > 0 && st->layers[li].dirfd == st->dirfd;
    for (int pass = 0; pass < 3; pass++) {
        const char *sql = pass == 0 ? blobs_sql : pass == 1 ? snaps_sql : usage_sql;
        sqlite3_stmt *s;
        int r = cairn__stmt(st, li, sql, &s, err);
        if (r < 0)
            return r;
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            const char *name = cairn__col(s, 0);
            unsigned char raw[32];
            if (pass == 2) {
                /* A digest names the blob and the snapshot of that name. */
                if (!cairn__digest_raw(name, raw))
                    continue;
                int64_t t = sqlite3_column_int64(s, 1);
                for (int kind = 0; kind < 2; kind++) {
                    int32_t i = cairn__graph_find_raw(g, kind, raw);
                    if (i >= 0 && t > g->objs[i].last_used)
                        g->objs[i].last_used = t;
                }
                continue;
            }
            if (!cairn__digest_raw(name, raw))
                continue; /* malformed: fsck's business */
            bool added;
            int32_t i = graph_add(g, pass == 0 ? CAIRN__OBJ_BLOB : CAIRN__OBJ_SNAPSHOT, raw,
                                  &added);
            if (i < 0) {
                sqlite3_reset(s);
                return cairn__err(err, -ENOMEM, "out of memory");
            }
            cairn__obj *o = &g->objs[i];
            if (added) {
                o->size = (uint64_t)sqlite3_column_int64(s, 2 - (pass == 0));
                o->created = sqlite3_column_int64(s, 3);
            }
            if (li == 0)
                o->in0 = 1;
            else
                o->lower = 1;
            if (sibling)
                o->sibling = 1;
            r = 0;
            if (pass == 0 && added && cairn__is_manifest_type(cairn__col(s, 2))) {
                if (L->nm == L->capm) {
                    size_t nc = L->capm ? L->capm * 2 : 64;
                    int32_t *nm = realloc(L->manifests, nc * sizeof(*nm));
                    if (!nm)
                        r = -ENOMEM;
                    else {
                        L->manifests = nm;
                        L->capm = nc;
                    }
                }
                if (r == 0)
                    L->manifests[L->nm++] = i;
            } else if (pass == 1 && added && sqlite3_column_type(s, 1) == SQLITE_TEXT &&
                       cairn__digest_raw(cairn__col(s, 1), raw)) {
                r = pend_add(L, i, raw);
            }
            if (r < 0) {
                sqlite3_reset(s);
                return cairn__err(err, r, "out of memory");
            }
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return cairn__err_db(err, st->layers[li].db, rc, "gc: load");
    }
    return 0;
}

int cairn__graph_load(cairn_state *st, cairn__graph *g, cairn_error *err)
{
    loader L = {g, NULL, 0, 0, NULL, 0, 0};
    int r = 0;
    for (size_t li = 0; li < st->n_layers && r == 0; li++)
        r = load_layer(st, li, &L, err);
    for (size_t k = 0; r == 0 && k < L.np; k++)
        g->objs[L.p[k].from].parent = cairn__graph_find_raw(g, CAIRN__OBJ_SNAPSHOT, L.p[k].raw);
    for (size_t k = 0; r == 0 && k < L.nm; k++) {
        r = parse_manifest(st, g, L.manifests[k]);
        if (r < 0)
            r = cairn__err(err, r, "out of memory");
    }
    free(L.p);
    free(L.manifests);
    return r;
}
