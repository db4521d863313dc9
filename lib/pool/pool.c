/* pool.c: a pool of states per module in a remote (cairn/pool.h,
 * docs/POOL.md): init, provision, checkin, leases, compact, gc, ls.
 *
 * In the remote (any backend, through remote/backend.h):
 *   <module>/...     the module's states: one member a push (checkin) or a
 *                    compaction; members are immutable, named by digest
 *   _pool            the descriptor: one record, annotation cairn.pool.format
 *   _lease           a record a live provision: cairn.pool.lease (id),
 *                    .expires (unix s), .created (unix ns), .module, .states (the
 *                    member digests it stacks on); renewed by a new record
 *                    then the old one taken out
 *   _usage           use counts gc folded from expired leases:
 *                    cairn.pool.usage = {"<digest>": [last use ns, hits]}
 *   _retire          members a compaction folded: .tag, .retire (digests),
 *                    .compacted (unix s); taken out once the grace is over
 * A record is an OCI manifest whose config and one layer are the empty
 * descriptor ("{}"), its facts in its annotations: one read each.
 *
 * On the host, the cache (CACHE/<first 16 hex of sha256(url)>/):
 *   members/<hex>/       a frozen state: member <hex> pulled alone, then frozen
 *   members/<hex>.json   its facts (tag, parents, bytes here); written after
 *                        the directory: no sidecar, no entry
 *   merged/<key>/, .json a frozen merge of the lowest lowers (--max-lowers)
 *   modules/<m>.json     the members of m as last listed (offline provisions)
 *   provisions/<id>.json a provision of this host: its DEST, lease, entries
 *   lock                 flock: the accounting and eviction, one at a time
 *   tmp/                 pulls and freezes in progress
 *
 * Invariants:
 * - provision reads the descriptor and the listing of each ranked module,
 *   and fetches only members the cache lacks: its cost does not grow with
 *   the pool;
 * - an entry is published by rename once frozen, its sidecar after it:
 *   a killed fetch leaves only tmp/, swept by the next provision;
 * - the lease is written before DEST is made, so a gc that starts after
 *   DEST exists sees it; a gc already running keeps what was used within its
 *   grace (the listing to lease window is far shorter);
 * - eviction takes out entries no live provision of this host stacks on
 *   and not used within the cache grace; DEST is made last, so a full cache
 *   creates nothing.
 */
#include "combine/combine.h"
#include "remote/backend.h"

#include <cairn/merge.h>
#include <cairn/pool.h>

#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <jansson.h>

#define MT_EMPTY      "application/vnd.oci.empty.v1+json"
#define EMPTY_DIGEST  "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
#define AT_POOL       "application/vnd.cairn.pool.v1"
#define AT_LEASE      "application/vnd.cairn.pool.lease.v1"
#define AT_USAGE      "application/vnd.cairn.pool.usage.v1"
#define TAG_POOL      "_pool"
#define TAG_LEASE     "_lease"
#define TAG_USAGE     "_usage"
#define TAG_RETIRE    "_retire"
#define AT_RETIRE     "application/vnd.cairn.pool.retire.v1"
#define CACHE_MAX_DEFAULT (10ull << 30)
#define CACHE_GRACE_DEFAULT 600
#define LEASE_TTL_DEFAULT 3600
#define RETIRE_GRACE_DEFAULT 3600
#define PATH_MAX_POOL 4096


/* snprintf for paths: the length checked (paths here are far below the
 * bound; a longer one is cut, then fails to open). */
static void pathf(char *buf, size_t size, const char *fmt, ...) CAIRN_PRINTF(3, 4);
static void pathf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size)
        buf[0] = 0;
}


/* Write CACHE/<rel> ("sub/name") atomically: rel's directory is where the
 * temporary name goes. */
static int cache_write(const char *cache, const char *rel, const char *text)
{
    if (!text)
        return -ENOMEM;
    const char *slash = strrchr(rel, '/');
    char dir[PATH_MAX_POOL];
    if (slash)
        pathf(dir, sizeof(dir), "%s/%.*s", cache, (int)(slash - rel), rel);
    else
        pathf(dir, sizeof(dir), "%s", cache);
    _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    return cairn__write_file_atomic(dfd, slash ? slash + 1 : rel, text, strlen(text), 0644);
}

/* ---- names, options ----------------------------------------------------- */

static bool module_ok(const char *m)
{
    size_t n = m ? strlen(m) : 0;
    if (n == 0 || n > CAIRN_POOL_MODULE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = m[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '_' && c != '-')))
            return false;
    }
    return true;
}

static int module_check(const char *m, cairn_error *err)
{
    if (!module_ok(m))
        return cairn__err(err, -EINVAL, "module '%s': expected [a-z0-9][a-z0-9_-]*, at most %d",
                          m ? m : "", CAIRN_POOL_MODULE_MAX);
    return 0;
}

typedef struct pool {
    cairn_pool_options o;
    char url[CAIRN_REMOTE_URL_MAX + 1];
    char cache[PATH_MAX_POOL];  /* CACHE/<key> */
    uint64_t cache_max;
    int64_t cache_grace;
    int64_t lease_ttl;
    cairn__remote_conn *c;      /* NULL until connected */
} pool;

static int pool_open(pool *p, const char *url, const cairn_pool_options *opts, cairn_error *err)
{
    cairn_pool_options def = CAIRN_POOL_OPTIONS_INIT;
    *p = (pool){.o = opts ? *opts : def};
    int r = cairn__opts_version(p->o.version, CAIRN_POOL_OPTIONS_VERSION, "pool", err);
    if (r < 0)
        return r;
    if (!url || !strstr(url, "://"))
        return cairn__err(err, -EINVAL, "pool '%s': expected a URL (file:///dir, "
                          "s3://bucket/prefix, oci://host/repository)", url ? url : "");
    r = cairn_remote_url(NULL, url, p->url, sizeof(p->url), err);
    if (r < 0)
        return r;
    /* one URL, one cache: no trailing slash makes two */
    size_t n = strlen(p->url);
    while (n > 0 && p->url[n - 1] == '/' && !strstr(p->url + n - 1, "://"))
        p->url[--n] = 0;
    const char *root = p->o.cache;
    char def_root[PATH_MAX_POOL];
    if (!root || !*root)
        root = getenv("CAIRN_POOL_CACHE");
    if (!root || !*root) {
        const char *x = getenv("XDG_CACHE_HOME");
        if (x && *x)
            snprintf(def_root, sizeof(def_root), "%s/cairn/pool", x);
        else
            pathf(def_root, sizeof(def_root), "/var/cache/cairn/pool");
        root = def_root;
    }
    char key[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(p->url, strlen(p->url), key);
    pathf(p->cache, sizeof(p->cache), "%s/%.16s", root, key + 7);
    p->cache_max = p->o.cache_max;
    const char *e = getenv("CAIRN_POOL_CACHE_MAX");
    if (!p->cache_max && e && *e)
        p->cache_max = strtoull(e, NULL, 10);
    if (!p->cache_max)
        p->cache_max = CACHE_MAX_DEFAULT;
    e = getenv("CAIRN_POOL_CACHE_GRACE");
    p->cache_grace = e && *e ? strtoll(e, NULL, 10) : CACHE_GRACE_DEFAULT;
    p->lease_ttl = p->o.lease_ttl > 0 ? p->o.lease_ttl : LEASE_TTL_DEFAULT;
    return 0;
}

static int pool_connect(pool *p, cairn_error *err)
{
    if (p->c)
        return 0;
    return cairn__remote_connect(p->url, p->o.remote, &p->c, err);
}

static void pool_close(pool *p)
{
    cairn__remote_disconnect(p->c);
    p->c = NULL;
}

/* ---- records: manifests whose facts are their annotations --------------- */

static int empty_blob(pool *p, cairn_error *err)
{
    const char *d = EMPTY_DIGEST;
    uint8_t have = 0;
    int r = p->c->ops->blobs_have(p->c->r, &d, 1, &have, err);
    if (r < 0 || have)
        return r;
    _cleanup_close_ int fd = memfd_create("cairn-empty", MFD_CLOEXEC);
    if (fd < 0)
        return cairn__err(err, -errno, "memfd: %m");
    r = cairn__write_all(fd, "{}", 2);
    if (r < 0)
        return cairn__err(err, r, "memfd: %m");
    return p->c->ops->blob_put(p->c->r, EMPTY_DIGEST, fd, 2, MT_EMPTY, NULL, NULL, err);
}

/* Publish a record under tag; annotations is taken. */
static int record_put(pool *p, const char *tag, const char *type, json_t *annotations,
                      char digest[CAIRN_DIGEST_LEN + 1], cairn_error *err)
{
    int r = empty_blob(p, err);
    if (r < 0) {
        json_decref(annotations);
        return r;
    }
    json_t *m = json_pack("{s:i, s:s, s:s, s:{s:s, s:s, s:i}, s:[{s:s, s:s, s:i}], s:o}",
                          "schemaVersion", 2, "mediaType",
                          "application/vnd.oci.image.manifest.v1+json", "artifactType", type,
                          "config", "mediaType", MT_EMPTY, "digest", EMPTY_DIGEST, "size", 2,
                          "layers", "mediaType", MT_EMPTY, "digest", EMPTY_DIGEST, "size", 2,
                          "annotations", annotations);
    char *text = m ? json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(m);
    if (!text)
        return cairn__err(err, -ENOMEM, "out of memory");
    cairn__sha256_buf(text, strlen(text), digest);
    r = p->c->ops->state_put(p->c->r, tag, digest, text, strlen(text), err);
    free(text);
    return r;
}

typedef struct record {
    char digest[CAIRN_DIGEST_LEN + 1];
    int64_t mtime;
    json_t *ann; /* owned */
} record;

typedef struct recordv {
    record *v;
    size_t n, cap;
} recordv;

static void recordv_free(recordv *rv)
{
    for (size_t i = 0; i < rv->n; i++)
        json_decref(rv->v[i].ann);
    free(rv->v);
    *rv = (recordv){0};
}

static int record_add(void *ud, const char *tag, const char *digest, int64_t mtime)
{
    (void)tag;
    recordv *rv = ud;
    if (rv->n == rv->cap) {
        size_t cap = rv->cap ? rv->cap * 2 : 16;
        record *nv = realloc(rv->v, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        rv->v = nv;
        rv->cap = cap;
    }
    rv->v[rv->n++] = (record){.mtime = mtime};
    snprintf(rv->v[rv->n - 1].digest, CAIRN_DIGEST_LEN + 1, "%s", digest);
    return 0;
}

/* The records of tag, each read and verified (one taken out since the
 * listing is passed by). */
static int records_list(pool *p, const char *tag, recordv *out, cairn_error *err)
{
    recordv rv = {0};
    int r = p->c->ops->states_list(p->c->r, tag, record_add, &rv, err);
    if (r == -ENOMEM)
        r = cairn__err(err, r, "out of memory");
    size_t w = 0;
    for (size_t i = 0; r == 0 && i < rv.n; i++) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        cairn_error e2 = {0};
        r = p->c->ops->state_get(p->c->r, tag, rv.v[i].digest, &buf, &len, &e2);
        if (r == -ENOENT) {
            r = 0;
            continue;
        }
        if (r < 0) {
            if (err)
                *err = e2;
            break;
        }
        char got[CAIRN_DIGEST_LEN + 1];
        cairn__sha256_buf(buf, len, got);
        if (strcmp(got, rv.v[i].digest) != 0) {
            r = cairn__err(err, CAIRN_E_MISMATCH, "pool %s: record %s of %s hashes to %s",
                           p->url, rv.v[i].digest, tag, got);
            break;
        }
        json_t *m = json_loadb(buf, len, 0, NULL);
        json_t *a = json_object_get(m, "annotations");
        if (!json_is_object(a)) {
            json_decref(m);
            continue; /* not one of ours */
        }
        record rec = rv.v[i];
        rec.ann = json_incref(a);
        json_decref(m);
        rv.v[w++] = rec;
    }
    if (r < 0) {
        for (size_t i = 0; i < w; i++)
            json_decref(rv.v[i].ann);
        free(rv.v);
        return r;
    }
    rv.n = w;
    *out = rv;
    return 0;
}

static const char *ann_str(json_t *a, const char *k)
{
    const char *v = json_string_value(json_object_get(a, k));
    return v ? v : "";
}

static int64_t ann_int(json_t *a, const char *k)
{
    return strtoll(ann_str(a, k), NULL, 10);
}

/* d is one of the comma separated list. */
static bool list_has(const char *list, const char *d)
{
    size_t dl = strlen(d);
    for (const char *q = strstr(list, d); q; q = strstr(q + 1, d))
        if ((q == list || q[-1] == ',') && (q[dl] == 0 || q[dl] == ','))
            return true;
    return false;
}

/* The pool's descriptor: 0 when this library reads it. */
static int descriptor_check(pool *p, cairn_error *err)
{
    recordv rv = {0};
    int r = records_list(p, TAG_POOL, &rv, err);
    if (r < 0)
        return r;
    if (rv.n == 0)
        r = cairn__err(err, -ENOENT, "pool %s: not a pool (no descriptor; cairn pool init %s)",
                       p->url, p->url);
    for (size_t i = 0; r == 0 && i < rv.n; i++) {
        int64_t f = ann_int(rv.v[i].ann, "cairn.pool.format");
        if (f > CAIRN_POOL_FORMAT)
            r = cairn__err(err, CAIRN_E_NEWER, "pool %s: format %lld, this cairn reads up to "
                           "%d; upgrade cairn", p->url, (long long)f, CAIRN_POOL_FORMAT);
        else if (f < 1)
            r = cairn__err(err, CAIRN_E_FORMAT, "pool %s: descriptor %s: no format", p->url,
                           rv.v[i].digest);
    }
    recordv_free(&rv);
    return r;
}

/* Connected and the descriptor read: what every command but provision (which
 * goes on offline) needs first; a failure names the pool. */
static int pool_ready(pool *p, cairn_error *err)
{
    int r = pool_connect(p, err);
    if (r == 0)
        r = descriptor_check(p, err);
    if (r < 0 && err && strncmp(err->message, "pool ", 5) != 0)
        cairn__err_prefix(err, r, "pool %s", p->url);
    return r;
}

int cairn_pool_init(const char *url, const cairn_pool_options *opts, cairn_error *err)
{
    pool p = {0};
    int r = pool_open(&p, url, opts, err);
    if (r == 0)
        r = pool_connect(&p, err);
    if (r == 0) {
        cairn_error e2 = {0};
        r = descriptor_check(&p, &e2);
        if (r == -ENOENT) {
            char fmt[16], d[CAIRN_DIGEST_LEN + 1];
            snprintf(fmt, sizeof(fmt), "%d", CAIRN_POOL_FORMAT);
            r = record_put(&p, TAG_POOL, AT_POOL, json_pack("{s:s}", "cairn.pool.format", fmt),
                           d, err);
        } else if (r < 0 && err) {
            *err = e2;
        }
    }
    pool_close(&p);
    return r;
}

/* ---- the dependency graph ----------------------------------------------- */

typedef struct graph {
    cairn__strv names;
    size_t **adj; /* adj[i]: indices, n_adj[i] of them */
    size_t *n_adj;
    size_t cap;
} graph;

static void graph_free(graph *g)
{
    for (size_t i = 0; i < g->names.n; i++)
        free(g->adj[i]);
    free(g->adj);
    free(g->n_adj);
    cairn__strv_free(&g->names);
    *g = (graph){0};
}

static ssize_t graph_node(graph *g, const char *name)
{
    for (size_t i = 0; i < g->names.n; i++)
        if (!strcmp(g->names.v[i], name))
            return (ssize_t)i;
    if (g->names.n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        size_t **na = realloc(g->adj, cap * sizeof(*na));
        if (!na)
            return -ENOMEM;
        g->adj = na;
        size_t *nn = realloc(g->n_adj, cap * sizeof(*nn));
        if (!nn)
            return -ENOMEM;
        g->n_adj = nn;
        g->cap = cap;
    }
    if (cairn__strv_push(&g->names, name) < 0)
        return -ENOMEM;
    g->adj[g->names.n - 1] = NULL;
    g->n_adj[g->names.n - 1] = 0;
    return (ssize_t)g->names.n - 1;
}

static int graph_edge(graph *g, const char *from, const char *to)
{
    ssize_t a = graph_node(g, from), b = a < 0 ? a : graph_node(g, to);
    if (a < 0 || b < 0)
        return -ENOMEM;
    for (size_t k = 0; k < g->n_adj[a]; k++)
        if (g->adj[a][k] == (size_t)b)
            return 0;
    size_t *nv = realloc(g->adj[a], (g->n_adj[a] + 1) * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    nv[g->n_adj[a]++] = (size_t)b;
    g->adj[a] = nv;
    return 0;
}

static int deps_file_load(graph *g, const char *path, cairn_error *err)
{
    json_error_t je;
    json_t *d = json_load_file(path, 0, &je);
    if (!d)
        return cairn__err(err, CAIRN_E_FORMAT, "deps file %s: line %d: %s", path, je.line,
                          je.text);
    int r = 0;
    if (!json_is_object(d))
        r = cairn__err(err, CAIRN_E_FORMAT, "deps file %s: expected an object mapping each "
                       "module to its direct dependencies", path);
    const char *k;
    json_t *v;
    json_object_foreach(d, k, v)
    {
        if (r < 0)
            break;
        if ((r = module_check(k, err)) < 0) {
            cairn__err_prefix(err, r, "deps file %s", path);
            break;
        }
        if (!json_is_array(v)) {
            r = cairn__err(err, CAIRN_E_FORMAT, "deps file %s: %s: expected an array of "
                           "modules", path, k);
            break;
        }
        if (graph_node(g, k) < 0) {
            r = cairn__err(err, -ENOMEM, "out of memory");
            break;
        }
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            const char *dep = json_string_value(x);
            if (!dep || !module_ok(dep)) {
                r = cairn__err(err, CAIRN_E_FORMAT, "deps file %s: %s: dependency %zu is not "
                               "a module name", path, k, i);
                break;
            }
            if (graph_edge(g, k, dep) < 0) {
                r = cairn__err(err, -ENOMEM, "out of memory");
                break;
            }
        }
    }
    json_decref(d);
    return r;
}

/* Depth-first from `at`: a back edge is a cycle, named in err. */
static int graph_cycle(const graph *g, size_t at, int *color, size_t *path, size_t depth,
                       cairn_error *err)
{
    color[at] = 1;
    path[depth] = at;
    for (size_t k = 0; k < g->n_adj[at]; k++) {
        size_t b = g->adj[at][k];
        if (color[b] == 1) {
            char msg[CAIRN_ERROR_MESSAGE_MAX] = "";
            size_t start = 0;
            while (path[start] != b)
                start++;
            for (size_t i = start; i <= depth; i++) {
                size_t l = strlen(msg);
                snprintf(msg + l, sizeof(msg) - l, "%s -> ", g->names.v[path[i]]);
            }
            size_t l = strlen(msg);
            snprintf(msg + l, sizeof(msg) - l, "%s", g->names.v[b]);
            return cairn__err(err, -ELOOP, "dependency cycle: %s; refused, nothing provisioned",
                              msg);
        }
        if (color[b] == 0) {
            int r = graph_cycle(g, b, color, path, depth + 1, err);
            if (r < 0)
                return r;
        }
    }
    color[at] = 2;
    return 0;
}

typedef struct ranked {
    char module[CAIRN_POOL_MODULE_MAX + 1];
    unsigned distance;
} ranked;

/* The module and its transitive dependencies, by distance (breadth first,
 * in the order the dependencies are listed). */
static int rank_modules(const char *module, const cairn_pool_provision_options *po,
                        ranked **out, size_t *n_out, cairn_error *err)
{
    graph g = {0};
    int r = graph_node(&g, module) < 0 ? cairn__err(err, -ENOMEM, "out of memory") : 0;
    for (size_t i = 0; r == 0 && i < po->n_deps; i++) {
        r = module_check(po->deps[i], err);
        if (r == 0 && graph_edge(&g, module, po->deps[i]) < 0)
            r = cairn__err(err, -ENOMEM, "out of memory");
    }
    if (r == 0 && po->deps_file)
        r = deps_file_load(&g, po->deps_file, err);
    size_t n = g.names.n;
    int *color = r == 0 ? calloc(n, sizeof(*color)) : NULL;
    size_t *path = r == 0 ? calloc(n + 1, sizeof(*path)) : NULL;
    size_t *queue = r == 0 ? calloc(n, sizeof(*queue)) : NULL;
    unsigned *dist = r == 0 ? calloc(n, sizeof(*dist)) : NULL;
    ranked *rk = r == 0 ? calloc(n, sizeof(*rk)) : NULL;
    if (r == 0 && (!color || !path || !queue || !dist || !rk))
        r = cairn__err(err, -ENOMEM, "out of memory");
    if (r == 0)
        r = graph_cycle(&g, 0, color, path, 0, err);
    size_t head = 0, tail = 0, m = 0;
    if (r == 0) {
        memset(color, 0, n * sizeof(*color));
        queue[tail++] = 0;
        color[0] = 1;
    }
    while (r == 0 && head < tail) {
        size_t a = queue[head++];
        snprintf(rk[m].module, sizeof(rk[m].module), "%s", g.names.v[a]);
        rk[m++].distance = dist[a];
        for (size_t k = 0; k < g.n_adj[a]; k++) {
            size_t b = g.adj[a][k];
            if (!color[b]) {
                color[b] = 1;
                dist[b] = dist[a] + 1;
                queue[tail++] = b;
            }
        }
    }
    free(color);
    free(path);
    free(queue);
    free(dist);
    graph_free(&g);
    if (r < 0) {
        free(rk);
        return r;
    }
    *out = rk;
    *n_out = m;
    return 0;
}

/* ---- the host cache ---------------------------------------------------- */

static int cache_dirs(pool *p, cairn_error *err)
{
    static const char *const sub[] = {"members", "merged", "modules", "provisions", "tmp"};
    char path[PATH_MAX_POOL + 32];
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(sub); i++) {
        pathf(path, sizeof(path), "%s/%s", p->cache, sub[i]);
        int r = cairn__mkdir_p(path, 0755);
        if (r < 0)
            return cairn__err(err, r, "pool cache %s: %m", path);
    }
    pathf(path, sizeof(path), "%s/url", p->cache);
    if (access(path, F_OK) < 0) {
        _cleanup_close_ int dfd = open(p->cache, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0)
            (void)cairn__write_file_atomic(dfd, "url", p->url, strlen(p->url), 0644);
    }
    return 0;
}

/* Sweep tmp/ of work left by processes that are gone: names end "-<pid>". */
static void cache_sweep(pool *p)
{
    char path[PATH_MAX_POOL + 8];
    pathf(path, sizeof(path), "%s/tmp", p->cache);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *dash = strrchr(de->d_name, '-');
        if (de->d_name[0] == '.' || !dash)
            continue;
        pid_t pid = (pid_t)strtol(dash + 1, NULL, 10);
        if (pid > 0 && kill(pid, 0) < 0 && errno == ESRCH)
            cairn__rm_rf_at(dirfd(d), de->d_name);
    }
    closedir(d);
}

static int cache_lock(pool *p, cairn_error *err)
{
    char path[PATH_MAX_POOL + 8];
    pathf(path, sizeof(path), "%s/lock", p->cache);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return cairn__err(err, -errno, "pool cache %s: %m", path);
    if (flock(fd, LOCK_EX) < 0) {
        int e = -errno;
        close(fd);
        return cairn__err(err, e, "pool cache %s: lock: %m", path);
    }
    return fd;
}

/* Facts of an entry ("members/<hex>" or "merged/<key>"): its sidecar. */
static json_t *entry_facts(pool *p, const char *entry)
{
    char path[PATH_MAX_POOL + 256];
    pathf(path, sizeof(path), "%s/%s.json", p->cache, entry);
    return json_load_file(path, 0, NULL);
}

static void entry_touch(pool *p, const char *entry)
{
    char path[PATH_MAX_POOL + 256];
    pathf(path, sizeof(path), "%s/%s.json", p->cache, entry);
    utimensat(AT_FDCWD, path, NULL, 0);
}

static uint64_t state_bytes(const char *path)
{
    cairn_state *st = NULL;
    cairn_state_info info;
    uint64_t b = 0;
    if (cairn_state_open(&st, path, CAIRN_OPEN_READONLY, NULL) == 0 &&
        cairn_state_info_get(st, &info, NULL) == 0)
        b = info.blobs.bytes + info.snapshots.bytes;
    cairn_state_free(st);
    return b;
}

/* Entries live provisions of this host stack on (their DEST still there). */
static int live_entries(pool *p, cairn__strset *live)
{
    char path[PATH_MAX_POOL + 16];
    pathf(path, sizeof(path), "%s/provisions", p->cache);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char f[PATH_MAX_POOL + 300];
        snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
        json_t *j = json_load_file(f, 0, NULL);
        const char *dest = json_string_value(json_object_get(j, "dest"));
        /* an overlay described, not mounted: live while its lease is */
        bool leased = json_integer_value(json_object_get(j, "expires")) > cairn__now();
        if (dest && (access(dest, F_OK) == 0 || leased)) {
            size_t i;
            json_t *e;
            json_array_foreach(json_object_get(j, "entries"), i, e)
                if (json_string_value(e))
                    cairn__strset_add(live, json_string_value(e));
        } else if (j) {
            unlinkat(dirfd(d), de->d_name, 0); /* its DEST is gone */
        }
        json_decref(j);
    }
    closedir(d);
    return 0;
}

typedef struct centry {
    char name[300]; /* "members/<hex>" */
    uint64_t bytes;
    int64_t used;   /* the sidecar's mtime, ns */
} centry;

static int centry_cmp(const void *a, const void *b)
{
    const centry *x = a, *y = b;
    return x->used < y->used ? -1 : x->used > y->used;
}

/* Keep the cache within its bound: least recently used entries go, except
 * those in `keep`, those live provisions stack on and those used within the
 * grace. -ENOSPC when that is not enough. Under the cache lock. */
static int cache_bound(pool *p, const cairn__strset *keep, cairn_error *err)
{
    int lfd = cache_lock(p, err);
    if (lfd < 0)
        return lfd;
    cairn__strset *live = cairn__strset_new();
    centry *v = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    int r = live ? 0 : cairn__err(err, -ENOMEM, "out of memory");
    if (r == 0)
        live_entries(p, live);
    static const char *const kinds[] = {"members", "merged"};
    for (size_t k = 0; r == 0 && k < 2; k++) {
        char dir[PATH_MAX_POOL + 16];
        pathf(dir, sizeof(dir), "%s/%s", p->cache, kinds[k]);
        DIR *d = opendir(dir);
        struct dirent *de;
        while (d && r == 0 && (de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
                continue;
            struct stat sb;
            if (fstatat(dirfd(d), de->d_name, &sb, 0) < 0)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                centry *nv = realloc(v, cap * sizeof(*nv));
                if (!nv) {
                    r = cairn__err(err, -ENOMEM, "out of memory");
                    break;
                }
                v = nv;
            }
            centry *e = &v[n++];
            pathf(e->name, sizeof(e->name), "%s/%.*s", kinds[k], (int)(l - 5), de->d_name);
            e->used = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
            json_t *f = entry_facts(p, e->name);
            e->bytes = (uint64_t)json_integer_value(json_object_get(f, "local_bytes"));
            json_decref(f);
            total += e->bytes;
        }
        if (d)
            closedir(d);
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), centry_cmp);
    int64_t now = cairn__now_ns();
    uint64_t pinned = 0;
    for (size_t i = 0; r == 0 && i < n && total > p->cache_max; i++) {
        centry *e = &v[i];
        if (cairn__strset_has(keep, e->name) || cairn__strset_has(live, e->name) ||
            now - e->used < p->cache_grace * 1000000000LL) {
            pinned += e->bytes;
            continue;
        }
        /* the sidecar first: without it the entry is not there */
        char path[PATH_MAX_POOL + 320];
        pathf(path, sizeof(path), "%s/%s.json", p->cache, e->name);
        unlink(path);
        pathf(path, sizeof(path), "%s/%s", p->cache, e->name);
        cairn__rm_rf_at(AT_FDCWD, path);
        total -= e->bytes;
    }
    if (r == 0 && total > p->cache_max) {
        char a[32], b[32];
        snprintf(a, sizeof(a), "%llu", (unsigned long long)total);
        pathf(b, sizeof(b), "%llu", (unsigned long long)p->cache_max);
        r = cairn__err(err, -ENOSPC, "pool cache %s is full: %s bytes wanted, bound %s; %llu "
                       "bytes are used by live provisions or within the last %llds; raise "
                       "--cache-max or release provisions", p->cache, a, b,
                       (unsigned long long)pinned, (long long)p->cache_grace);
    }
    free(v);
    cairn__strset_free(live);
    close(lfd);
    return r;
}

/* ---- a module's members, and fetching them ------------------------------ */

typedef struct pmember {
    char module[CAIRN_POOL_MODULE_MAX + 1];
    char digest[CAIRN_DIGEST_LEN + 1];
    int64_t mtime;
    unsigned distance;
    char entry[300];    /* "members/<hex>" */
    char *parents;      /* comma separated, from the facts */
    bool fetched, folded;
} pmember;

typedef struct pmemberv {
    pmember *v;
    size_t n, cap;
} pmemberv;

static void pmemberv_free(pmemberv *mv)
{
    for (size_t i = 0; i < mv->n; i++)
        free(mv->v[i].parents);
    free(mv->v);
    *mv = (pmemberv){0};
}

typedef struct listing {
    pmemberv *mv;
    const char *module;
    unsigned distance;
} listing;

static int listing_add(void *ud, const char *tag, const char *digest, int64_t mtime)
{
    (void)tag;
    listing *l = ud;
    pmemberv *mv = l->mv;
    if (mv->n == mv->cap) {
        size_t cap = mv->cap ? mv->cap * 2 : 16;
        pmember *nv = realloc(mv->v, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        mv->v = nv;
        mv->cap = cap;
    }
    pmember *m = &mv->v[mv->n++];
    *m = (pmember){.mtime = mtime, .distance = l->distance};
    snprintf(m->module, sizeof(m->module), "%s", l->module);
    snprintf(m->digest, sizeof(m->digest), "%s", digest);
    pathf(m->entry, sizeof(m->entry), "members/%s", digest + 7);
    return 0;
}

/* Newest first within a module (a backend without times: by digest). */
static int pmember_cmp(const void *a, const void *b)
{
    const pmember *x = a, *y = b;
    if (x->distance != y->distance)
        return x->distance < y->distance ? -1 : 1;
    int c = strcmp(x->module, y->module);
    if (c)
        return c;
    if (x->mtime != y->mtime)
        return x->mtime > y->mtime ? -1 : 1;
    return strcmp(x->digest, y->digest);
}

/* The members of module: listed in the remote (and remembered), or, when
 * offline, as last listed on this host. */
static int module_members(pool *p, const char *module, unsigned distance, bool offline,
                          pmemberv *mv, cairn_error *err)
{
    size_t first = mv->n;
    listing l = {mv, module, distance};
    char name[CAIRN_POOL_MODULE_MAX + 16];
    pathf(name, sizeof(name), "modules/%s.json", module);
    _cleanup_close_ int dfd = open(p->cache, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return cairn__err(err, -errno, "pool cache %s: %m", p->cache);
    if (offline) {
        _cleanup_free_ char *buf = NULL;
        if (cairn__read_file_at(dfd, name, 16 << 20, &buf, NULL) < 0)
            return 1; /* never listed here */
        json_t *j = json_loads(buf, 0, NULL);
        size_t i;
        json_t *e;
        int r = 0;
        json_array_foreach(j, i, e)
        {
            const char *d = json_string_value(json_array_get(e, 0));
            if (d && cairn_digest_check(d, NULL) == 0 &&
                listing_add(&l, module, d, (int64_t)json_integer_value(json_array_get(e, 1))) < 0)
                r = cairn__err(err, -ENOMEM, "out of memory");
        }
        json_decref(j);
        return r;
    }
    int r = p->c->ops->states_list(p->c->r, module, listing_add, &l, err);
    if (r == -ENOMEM)
        return cairn__err(err, r, "out of memory");
    if (r < 0)
        return r;
    json_t *j = json_array();
    for (size_t i = first; j && i < mv->n; i++)
        json_array_append_new(j, json_pack("[s, I]", mv->v[i].digest, (json_int_t)mv->v[i].mtime));
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    /* rewritten (and synced) only when it changed: a hit writes nothing */
    _cleanup_free_ char *old = NULL;
    size_t olen = 0;
    if (text && (cairn__read_file_at(dfd, name, 16 << 20, &old, &olen) < 0 ||
                 olen != strlen(text) || memcmp(old, text, olen) != 0))
        (void)cache_write(p->cache, name, text);
    free(text);
    return 0;
}

typedef struct facts_ud {
    char *parents;
} facts_ud;

static int facts_cb(void *ud, const cairn__remote_member *m)
{
    facts_ud *f = ud;
    f->parents = strdup(m->parents);
    return f->parents ? 0 : -ENOMEM;
}

/* Pull member m alone into a fresh state, freeze it into the cache. */
static int member_fetch(pool *p, pmember *m, cairn_error *err)
{
    facts_ud f = {0};
    const char *d = m->digest;
    int r = 0;
    if (m->parents) {
        f.parents = steal_pointer(&m->parents);
    } else {
        r = cairn__remote_members(p->c, m->module, &d, 1, facts_cb, &f, err);
        if (r == -ENOMEM)
            r = cairn__err(err, r, "out of memory");
    }
    char pulled[PATH_MAX_POOL + 64], frozen[PATH_MAX_POOL + 64];
    char rid[CAIRN_STATE_ID_LEN + 1];
    if (r == 0 && (r = cairn__random_id(rid)) < 0)
        r = cairn__err(err, r, "random id: %m");
    pathf(pulled, sizeof(pulled), "%s/tmp/pull-%.12s-%d", p->cache, rid, (int)getpid());
    pathf(frozen, sizeof(frozen), "%s/tmp/frozen-%.12s-%d", p->cache, rid, (int)getpid());
    if (r == 0)
        r = cairn_state_init(pulled, NULL, err);
    cairn_state *st = NULL;
    if (r == 0)
        r = cairn_state_open(&st, pulled, 0, err);
    if (r == 0) {
        cairn_remote_options ro = CAIRN_REMOTE_OPTIONS_INIT;
        if (p->o.remote)
            ro = *p->o.remote;
        ro.progress = p->o.progress;
        ro.progress_userdata = p->o.progress_userdata;
        cairn_remote_stats rs = {0};
        r = cairn__remote_pull_member(st, p->url, m->module, m->digest, &ro, &rs, err);
    }
    cairn_state_free(st);
    if (r == 0)
        r = cairn_freeze(pulled, frozen, NULL, NULL, err);
    cairn__rm_rf_at(AT_FDCWD, pulled);
    char dest[PATH_MAX_POOL + 320];
    pathf(dest, sizeof(dest), "%s/%s", p->cache, m->entry);
    if (r == 0 && rename(frozen, dest) < 0) {
        if (errno != EEXIST && errno != ENOTEMPTY)
            r = cairn__err(err, -errno, "pool cache %s: %m", dest);
        /* another provision fetched it first: the same member */
    }
    cairn__rm_rf_at(AT_FDCWD, frozen);
    if (r == 0) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I}", "tag", m->module, "digest", m->digest,
                              "parents", f.parents ? f.parents : "", "local_bytes",
                              (json_int_t)state_bytes(dest), "mtime", (json_int_t)m->mtime);
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        char side[320];
        pathf(side, sizeof(side), "%s.json", m->entry);
        r = cache_write(p->cache, side, text);
        if (r < 0)
            r = cairn__err(err, r, "pool cache %s/%s: %m", p->cache, side);
        free(text);
    }
    if (r == 0) {
        m->parents = f.parents;
        f.parents = NULL;
        m->fetched = true;
    }
    free(f.parents);
    return r;
}

/* ---- provision ---------------------------------------------------------- */

void cairn_pool_provision_result_clear(cairn_pool_provision_result *res)
{
    if (!res)
        return;
    free(res->overlay);
    res->overlay = NULL;
}

static void warn(cairn_pool_provision_result *res, const char *fmt, ...) CAIRN_PRINTF(2, 3);
static void warn(cairn_pool_provision_result *res, const char *fmt, ...)
{
    size_t l = strlen(res->warning);
    if (l && l + 2 < sizeof(res->warning)) {
        strcat(res->warning, "; ");
        l += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->warning + l, sizeof(res->warning) - l, fmt, ap);
    va_end(ap);
}

static int lease_put(pool *p, const char *id, const char *module, const pmemberv *mv,
                     int64_t created, int64_t expires, char digest[CAIRN_DIGEST_LEN + 1],
                     cairn_error *err)
{
    size_t need = 1;
    for (size_t i = 0; i < mv->n; i++)
        need += strlen(mv->v[i].digest) + 1;
    _cleanup_free_ char *states = calloc(1, need);
    if (!states)
        return cairn__err(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < mv->n; i++) {
        if (mv->v[i].folded)
            continue;
        if (states[0])
            strcat(states, ",");
        strcat(states, mv->v[i].digest);
    }
    char exp[32], cr[32];
    snprintf(exp, sizeof(exp), "%lld", (long long)expires);
    snprintf(cr, sizeof(cr), "%lld", (long long)created);
    return record_put(p, TAG_LEASE, AT_LEASE,
                      json_pack("{s:s, s:s, s:s, s:s, s:s}", "cairn.pool.lease", id,
                                "cairn.pool.module", module, "cairn.pool.expires", exp,
                                "cairn.pool.created", cr, "cairn.pool.states", states),
                      digest, err);
}

/* The lowest lowers past max merged into one cached frozen state. */
static int merge_tail(pool *p, char **paths, size_t n, char *entry, size_t size,
                      cairn_error *err)
{
    cairn__sha256 *h = cairn__sha256_new();
    if (!h)
        return cairn__err(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        cairn__sha256_update(h, paths[i], strlen(paths[i]) + 1);
    char key[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_final(h, key);
    cairn__sha256_free(h);
    pathf(entry, size, "merged/%.32s", key + 7);
    char dest[PATH_MAX_POOL + 64];
    pathf(dest, sizeof(dest), "%s/%s", p->cache, entry);
    json_t *f = entry_facts(p, entry);
    json_decref(f);
    if (f)
        return 0;
    char rid[CAIRN_STATE_ID_LEN + 1];
    int r = cairn__random_id(rid);
    if (r < 0)
        return cairn__err(err, r, "random id: %m");
    char merged[PATH_MAX_POOL + 64], frozen[PATH_MAX_POOL + 64];
    pathf(merged, sizeof(merged), "%s/tmp/merge-%.12s-%d", p->cache, rid, (int)getpid());
    pathf(frozen, sizeof(frozen), "%s/tmp/frozen-%.12s-%d", p->cache, rid, (int)getpid());
    cairn_merge_options mo = CAIRN_MERGE_OPTIONS_INIT;
    r = cairn_merge(merged, (const char *const *)paths, n, &mo, NULL, err);
    if (r == 0)
        r = cairn_freeze(merged, frozen, NULL, NULL, err);
    cairn__rm_rf_at(AT_FDCWD, merged);
    if (r == 0 && rename(frozen, dest) < 0 && errno != EEXIST && errno != ENOTEMPTY)
        r = cairn__err(err, -errno, "pool cache %s: %m", dest);
    cairn__rm_rf_at(AT_FDCWD, frozen);
    if (r == 0) {
        json_t *j = json_pack("{s:I, s:I}", "local_bytes", (json_int_t)state_bytes(dest), "lowers",
                              (json_int_t)n);
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        char side[128];
        pathf(side, sizeof(side), "%s.json", entry);
        r = cache_write(p->cache, side, text);
        free(text);
        if (r < 0)
            r = cairn__err(err, r, "pool cache %s/%s: %m", p->cache, side);
    }
    return r;
}

static bool dir_empty_or_missing(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT;
    struct dirent *de;
    bool empty = true;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            empty = false;
    closedir(d);
    return empty;
}

/* DEST as an absolute path, whether it exists or not (its parent resolved). */
static void abs_path(const char *path, char *out, size_t size)
{
    char buf[PATH_MAX_POOL];
    if (realpath(path, buf)) {
        pathf(out, size, "%s", buf);
        return;
    }
    const char *slash = strrchr(path, '/');
    char parent[PATH_MAX_POOL];
    if (slash)
        snprintf(parent, sizeof(parent), "%.*s", (int)(slash - path), path);
    else
        snprintf(parent, sizeof(parent), ".");
    if (realpath(parent[0] ? parent : "/", buf))
        pathf(out, size, "%s/%s", strcmp(buf, "/") ? buf : "", slash ? slash + 1 : path);
    else
        snprintf(out, size, "%s", path);
}

/* provisions/<key>.json: key the state id of DEST, or the lease id for an
 * overlay not mounted (no state yet; found by its DEST, live while its
 * lease is: `expires` then). */
static int write_provision(pool *p, const char *dest, const char *module, const ranked *rk,
                           size_t nrk, const char *lease, const char *lease_digest,
                           int64_t created, int64_t expires, const pmemberv *mv, char **entries,
                           size_t ne, const char *key, cairn_error *err)
{
    char abs[PATH_MAX_POOL];
    abs_path(dest, abs, sizeof(abs));
    json_t *mods = json_array(), *ents = json_array(), *mems = json_array();
    for (size_t i = 0; i < nrk; i++)
        json_array_append_new(mods, json_string(rk[i].module));
    for (size_t i = 0; i < ne; i++)
        json_array_append_new(ents, json_string(entries[i]));
    for (size_t i = 0; i < mv->n; i++)
        if (!mv->v[i].folded)
            json_array_append_new(mems, json_string(mv->v[i].digest));
    json_t *j = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:s, s:s, s:I, s:I}", "url", p->url,
                          "dest", abs, "module", module, "modules", mods, "entries", ents,
                          "members", mems, "lease", lease, "lease_digest", lease_digest,
                          "created", (json_int_t)created, "expires", (json_int_t)expires);
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_INDENT(1)) : NULL;
    json_decref(j);
    char name[64];
    pathf(name, sizeof(name), "provisions/%s.json", key);
    int r = cache_write(p->cache, name, text);
    free(text);
    if (r < 0)
        return cairn__err(err, r, "pool cache %s/%s: %m", p->cache, name);
    return 0;
}

int cairn_pool_provision(const char *url, const char *module, const char *dest,
                         const cairn_pool_options *opts,
                         const cairn_pool_provision_options *popts,
                         cairn_pool_provision_result *res, cairn_error *err)
{
    cairn_pool_provision_options po = CAIRN_POOL_PROVISION_OPTIONS_INIT;
    if (popts)
        po = *popts;
    cairn_pool_provision_result dummy;
    if (!res)
        res = &dummy;
    memset(res, 0, sizeof(*res));
    int r = cairn__opts_version(po.version, CAIRN_POOL_PROVISION_OPTIONS_VERSION,
                                "pool provision", err);
    if (r < 0)
        return r;
    if ((r = module_check(module, err)) < 0)
        return r;
    if (!dest || !*dest)
        return cairn__err(err, -EINVAL, "pool provision: no destination");
    if (po.mode < CAIRN_POOL_STACK || po.mode > CAIRN_POOL_OVERLAY)
        return cairn__err(err, -EINVAL, "pool provision: mode %d: expected stack, merge or "
                          "overlay", po.mode);
    if (!dir_empty_or_missing(dest))
        return cairn__err(err, -EEXIST, "%s: not empty; a provision makes a new state there, "
                          "nothing was changed", dest);
    ranked *rk = NULL;
    size_t nrk = 0;
    r = rank_modules(module, &po, &rk, &nrk, err);
    if (r < 0)
        return r;
    res->modules = (unsigned)nrk;
    pool p = {0};
    pmemberv mv = {0};
    char **paths = NULL;
    size_t np = 0;
    cairn__strset *keep = cairn__strset_new();
    char lease[CAIRN_STATE_ID_LEN + 1] = "", lease_digest[CAIRN_DIGEST_LEN + 1] = "";
    int64_t created = cairn__now_ns(); /* uses a second apart are still ordered */
    r = keep ? pool_open(&p, url, opts, err) : cairn__err(err, -ENOMEM, "out of memory");
    if (r == 0)
        r = cache_dirs(&p, err);
    if (r == 0)
        cache_sweep(&p);
    /* the remote: the descriptor, then each module's listing */
    bool offline = false;
    if (r == 0) {
        cairn_error e2 = {0};
        int c = pool_connect(&p, &e2);
        if (c == 0)
            c = descriptor_check(&p, &e2);
        if (c == CAIRN_E_NEWER || c == CAIRN_E_FORMAT || c == -ENOENT) {
            r = c;
            if (err)
                *err = e2;
        } else if (c < 0) {
            offline = true;
            res->offline = 1;
            warn(res, "pool %s unreachable (%s); provisioned from this host's cache", p.url,
                 e2.message);
        }
    }
    for (size_t i = 0; r == 0 && i < nrk; i++) {
        cairn_error e2 = {0};
        int c = module_members(&p, rk[i].module, rk[i].distance, offline, &mv, &e2);
        if (c == 1)
            warn(res, "module %s: never listed on this host, left out", rk[i].module);
        else if (c < 0 && !offline) {
            offline = true; /* went down between two listings */
            res->offline = 1;
            warn(res, "pool %s unreachable (%s); provisioned from this host's cache", p.url,
                 e2.message);
            i--;
        } else if (c < 0) {
            r = c;
            if (err)
                *err = e2;
        }
    }
    if (r == 0 && mv.n > 1)
        qsort(mv.v, mv.n, sizeof(*mv.v), pmember_cmp);
    /* what each member folded: from the cache's facts, else its documents
     * (a member folded away since the listing: passed by) */
    bool *cached = r == 0 ? calloc(mv.n + 1, sizeof(*cached)) : NULL;
    if (r == 0 && !cached)
        r = cairn__err(err, -ENOMEM, "out of memory");
    for (size_t i = 0; r == 0 && i < mv.n; i++) {
        pmember *m = &mv.v[i];
        json_t *f = entry_facts(&p, m->entry);
        if (f) {
            m->parents = strdup(ann_str(f, "parents"));
            json_decref(f);
            cached[i] = true;
        } else if (offline) {
            warn(res, "state %s of %s: not in this host's cache, left out", m->digest, m->module);
            m->folded = true; /* not stacked */
        } else {
            cairn_error e2 = {0};
            facts_ud fu = {0};
            const char *d = m->digest;
            int c = cairn__remote_members(p.c, m->module, &d, 1, facts_cb, &fu, &e2);
            if (c == -ENOENT) {
                m->folded = true; /* taken out by a compaction or gc since the listing */
            } else if (c < 0) {
                r = c == -ENOMEM ? cairn__err(err, c, "out of memory") : c;
                if (c != -ENOMEM && err)
                    *err = e2;
            }
            m->parents = fu.parents;
        }
        if (r == 0 && !m->folded && !m->parents)
            r = cairn__err(err, -ENOMEM, "out of memory");
    }
    /* a member another listed member folded is not stacked twice (while a
     * compaction's grace lasts, both are listed), nor fetched; whether that
     * one is folded in turn does not matter (what folds it holds both),
     * only that it is there (its facts read: not gone, or cached offline) */
    for (size_t i = 0; r == 0 && i < mv.n; i++)
        for (size_t j = 0; j < mv.n && !mv.v[i].folded; j++)
            if (i != j && mv.v[j].parents && list_has(mv.v[j].parents, mv.v[i].digest))
                mv.v[i].folded = true;
    /* fetch what the cache lacks */
    for (size_t i = 0; r == 0 && i < mv.n; i++) {
        pmember *m = &mv.v[i];
        if (m->folded)
            continue;
        if (cached[i]) {
            res->cached++;
        } else {
            cairn_error e2 = {0};
            int c = member_fetch(&p, m, &e2);
            if (c == -ENOENT) {
                m->folded = true; /* taken out by gc since the listing */
                continue;
            }
            if (c < 0) {
                r = c;
                if (err)
                    *err = e2;
                break;
            }
            res->fetched++;
        }
        cairn__strset_add(keep, m->entry);
        entry_touch(&p, m->entry);
    }
    free(cached);
    if (r == 0 && res->fetched)
        r = cache_bound(&p, keep, err);
    if (r == 0)
        paths = calloc(mv.n + 1, sizeof(*paths));
    if (r == 0 && !paths)
        r = cairn__err(err, -ENOMEM, "out of memory");
    char **entries = r == 0 ? calloc(mv.n + 1, sizeof(*entries)) : NULL;
    if (r == 0 && !entries)
        r = cairn__err(err, -ENOMEM, "out of memory");
    size_t ne = 0;
    for (size_t i = 0; r == 0 && i < mv.n; i++) {
        if (mv.v[i].folded)
            continue;
        if (asprintf(&paths[np], "%s/%s", p.cache, mv.v[i].entry) < 0 ||
            !(entries[ne] = strdup(mv.v[i].entry))) {
            r = cairn__err(err, -ENOMEM, "out of memory");
            break;
        }
        np++;
        ne++;
        if (po.lower) {
            cairn_pool_lower l = {mv.v[i].module, mv.v[i].digest, paths[np - 1],
                                  mv.v[i].distance, mv.v[i].fetched};
            po.lower(po.lower_userdata, &l);
        }
    }
    /* the lease, before DEST: a gc that starts after DEST exists keeps its states */
    bool makes_state = po.mode != CAIRN_POOL_OVERLAY || po.mount;
    if (r == 0 && !offline && np) {
        cairn_error e2 = {0};
        int c = cairn__random_id(lease);
        if (c == 0)
            c = lease_put(&p, lease, module, &mv, created, cairn__now() + p.lease_ttl, lease_digest,
                          &e2);
        if (c < 0) {
            lease[0] = 0;
            lease_digest[0] = 0;
            warn(res, "no lease taken (%s): a gc of the pool may retire what it stacks on",
                 e2.message);
        }
    }
    snprintf(res->lease, sizeof(res->lease), "%s", lease);
    if (r == 0 && po.mode == CAIRN_POOL_STACK && po.max_lowers && np > po.max_lowers) {
        size_t keepn = po.max_lowers > 1 ? po.max_lowers - 1 : 0;
        char entry[128];
        r = merge_tail(&p, paths + keepn, np - keepn, entry, sizeof(entry), err);
        if (r == 0) {
            for (size_t i = keepn; i < np; i++)
                free(paths[i]);
            for (size_t i = keepn; i < ne; i++)
                free(entries[i]);
            np = keepn;
            ne = keepn;
            if (asprintf(&paths[np], "%s/%s", p.cache, entry) < 0 ||
                !(entries[ne] = strdup(entry)))
                r = cairn__err(err, -ENOMEM, "out of memory");
            else {
                np++;
                ne++;
                entry_touch(&p, entry);
            }
        }
    }
    /* DEST, last */
    char id[CAIRN_STATE_ID_LEN + 1] = "";
    if (r == 0 && po.mode == CAIRN_POOL_STACK) {
        r = cairn_state_init(dest, id, err);
        if (r == 0 && np)
            r = cairn__stack_add_new(dest, (const char *const *)paths, np, err);
    } else if (r == 0 && po.mode == CAIRN_POOL_MERGE) {
        cairn_merge_options mo = CAIRN_MERGE_OPTIONS_INIT;
        r = np ? cairn_merge(dest, (const char *const *)paths, np, &mo, NULL, err) : 0;
        if (r == 0 && !np)
            r = cairn_state_init(dest, id, err);
        cairn_state *st = NULL;
        if (r == 0 && np && (r = cairn_state_open(&st, dest, CAIRN_OPEN_READONLY, err)) == 0)
            snprintf(id, sizeof(id), "%s", cairn_state_id(st));
        cairn_state_free(st);
    } else if (r == 0) {
        /* overlayfs: lowerdir=top:...:bottom, DEST.upper and DEST.work beside */
        size_t need = 256 + 3 * strlen(dest);
        for (size_t i = 0; i < np; i++)
            need += strlen(paths[i]) + 1;
        char *lower = calloc(1, need), *cmd = calloc(1, need + 128);
        if (!lower || !cmd)
            r = cairn__err(err, -ENOMEM, "out of memory");
        for (size_t i = 0; r == 0 && i < np; i++) {
            if (i)
                strcat(lower, ":");
            strcat(lower, paths[i]);
        }
        if (r == 0 && np == 0)
            r = cairn__err(err, -ENOENT, "pool provision --mode overlay: module %s has no "
                           "state to compose (a stack or merge provision makes an empty state)",
                           module);
        if (r == 0) {
            snprintf(cmd, need + 128, "mount -t overlay overlay -o lowerdir=%s,upperdir=%s.upper,"
                     "workdir=%s.work %s", lower, dest, dest, dest);
            res->overlay = steal_pointer(&cmd);
        }
        if (r == 0 && po.mount) {
            char up[PATH_MAX_POOL], wk[PATH_MAX_POOL];
            snprintf(up, sizeof(up), "%s.upper", dest);
            snprintf(wk, sizeof(wk), "%s.work", dest);
            char *data = NULL;
            if (mkdir(dest, 0755) < 0 && errno != EEXIST)
                r = cairn__err(err, -errno, "%s: %m", dest);
            else if ((mkdir(up, 0755) < 0 && errno != EEXIST) ||
                     (mkdir(wk, 0755) < 0 && errno != EEXIST))
                r = cairn__err(err, -errno, "%s: %m", up);
            else if (asprintf(&data, "lowerdir=%s,upperdir=%s,workdir=%s", lower, up, wk) < 0)
                r = cairn__err(err, -ENOMEM, "out of memory");
            else if (mount("overlay", dest, "overlay", 0, data) < 0)
                r = cairn__err(err, -errno, "%s: mount overlay: %m", dest);
            free(data);
            if (r == 0)
                r = cairn_state_init(dest, id, err);
        }
        free(lower);
        free(cmd);
    }
    if (r == 0 && (id[0] || lease[0])) {
        snprintf(res->state_id, sizeof(res->state_id), "%s", id);
        r = write_provision(&p, dest, module, rk, nrk, lease, lease_digest, created,
                            makes_state ? 0 : cairn__now() + p.lease_ttl, &mv, entries, ne,
                            id[0] ? id : lease, err);
    }
    res->lowers = (unsigned)np;
    for (size_t i = 0; paths && i < np; i++)
        free(paths[i]);
    free(paths);
    for (size_t i = 0; entries && i < ne; i++)
        free(entries[i]);
    free(entries);
    cairn__strset_free(keep);
    pmemberv_free(&mv);
    free(rk);
    pool_close(&p);
    return r;
}

/* ---- checkin, leases ------------------------------------------------------ */

/* The provision record of the state at state_path (by its id), else of
 * the provision whose DEST it is (an overlay described, mounted or not),
 * in *out; id receives the record's key. -ENOENT with a message when this
 * host has none. */
static int provision_record(pool *p, const char *state_path, char *id, json_t **out,
                            cairn_error *err)
{
    cairn_state *st = NULL;
    char path[PATH_MAX_POOL + 64];
    json_t *j = NULL;
    if (cairn_state_open(&st, state_path, CAIRN_OPEN_READONLY, NULL) == 0) {
        snprintf(id, CAIRN_STATE_ID_LEN + 1, "%s", cairn_state_id(st));
        pathf(path, sizeof(path), "%s/provisions/%s.json", p->cache, id);
        j = json_load_file(path, 0, NULL);
    }
    cairn_state_free(st);
    char abs[PATH_MAX_POOL];
    abs_path(state_path, abs, sizeof(abs));
    pathf(path, sizeof(path), "%s/provisions", p->cache);
    DIR *d = j ? NULL : opendir(path);
    struct dirent *de;
    while (d && !j && (de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || l - 5 > CAIRN_STATE_ID_LEN || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        char f[PATH_MAX_POOL + 300];
        pathf(f, sizeof(f), "%s/%s", path, de->d_name);
        json_t *x = json_load_file(f, 0, NULL);
        const char *dest = json_string_value(json_object_get(x, "dest"));
        if (dest && !strcmp(dest, abs)) {
            j = x;
            snprintf(id, CAIRN_STATE_ID_LEN + 1, "%.*s", (int)(l - 5), de->d_name);
        } else {
            json_decref(x);
        }
    }
    if (d)
        closedir(d);
    *out = j;
    if (!j)
        return cairn__err(err, -ENOENT, "%s: not provisioned from pool %s on this host (no "
                          "record under %s)", state_path, p->url, path);
    return 0;
}

/* A new lease record expiring at `expires` (now: released; it stays, expired,
 * as a use of its states until gc folds it), then the old one out. */
static int lease_renew(pool *p, json_t *rec, const char *id, int64_t expires, cairn_error *err)
{
    const char *lease = json_string_value(json_object_get(rec, "lease"));
    const char *old = json_string_value(json_object_get(rec, "lease_digest"));
    if (!lease || !*lease)
        return 0;
    pmemberv mv = {0};
    listing l = {&mv, "", 0};
    size_t i;
    json_t *e;
    int r = 0;
    json_array_foreach(json_object_get(rec, "members"), i, e)
        if (json_string_value(e) && listing_add(&l, "", json_string_value(e), 0) < 0)
            r = cairn__err(err, -ENOMEM, "out of memory");
    char digest[CAIRN_DIGEST_LEN + 1];
    if (r == 0)
        r = lease_put(p, lease, json_string_value(json_object_get(rec, "module")), &mv,
                      (int64_t)json_integer_value(json_object_get(rec, "created")), expires,
                      digest, err);
    pmemberv_free(&mv);
    if (r == 0 && old && *old && strcmp(old, digest) != 0)
        r = p->c->ops->state_delete(p->c->r, TAG_LEASE, old, err);
    if (r == 0) {
        json_object_set_new(rec, "lease_digest", json_string(digest));
        if (json_integer_value(json_object_get(rec, "expires")))
            json_object_set_new(rec, "expires", json_integer(expires));
        char *text = json_dumps(rec, JSON_COMPACT | JSON_INDENT(1));
        char name[64];
        pathf(name, sizeof(name), "provisions/%s.json", id);
        r = cache_write(p->cache, name, text);
        free(text);
        if (r < 0)
            r = cairn__err(err, r, "pool cache %s/%s: %m", p->cache, name);
    }
    return r;
}

/* Renew the lease of the provision of `state` (release: make it expire
 * now, and forget the provision on this host). */
static int lease_set(const char *url, const char *state, const cairn_pool_options *opts,
                     bool release, cairn_error *err)
{
    pool p = {0};
    char id[CAIRN_STATE_ID_LEN + 1];
    json_t *rec = NULL;
    int r = pool_open(&p, url, opts, err);
    if (r == 0)
        r = provision_record(&p, state, id, &rec, err);
    if (r == 0)
        r = pool_connect(&p, err);
    if (r == 0)
        r = lease_renew(&p, rec, id, cairn__now() + (release ? 0 : p.lease_ttl), err);
    if (r == 0 && release) {
        char path[PATH_MAX_POOL + 64];
        pathf(path, sizeof(path), "%s/provisions/%s.json", p.cache, id);
        unlink(path);
    }
    json_decref(rec);
    pool_close(&p);
    return r;
}

int cairn_pool_lease_renew(const char *url, const char *state, const cairn_pool_options *opts,
                           cairn_error *err)
{
    return lease_set(url, state, opts, false, err);
}

int cairn_pool_lease_release(const char *url, const char *state, const cairn_pool_options *opts,
                             cairn_error *err)
{
    return lease_set(url, state, opts, true, err);
}

int cairn_pool_checkin(const char *url, const char *module, const char *state,
                       const cairn_pool_options *opts, cairn_remote_stats *stats,
                       char *out_digest, cairn_error *err)
{
    int r = module_check(module, err);
    if (r < 0)
        return r;
    pool p = {0};
    r = pool_open(&p, url, opts, err);
    if (r == 0)
        r = pool_ready(&p, err);
    char id[CAIRN_STATE_ID_LEN + 1] = "";
    cairn_error e2 = {0};
    json_t *rec = NULL;
    if (r == 0)
        provision_record(&p, state, id, &rec, &e2);
    /* the tags its lowers came from: where push looks for the snapshots it
     * builds on, instead of in every module of the pool */
    cairn__strv tags = {0};
    if (rec) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(rec, "modules"), i, e)
            if (json_string_value(e) && cairn__strv_push(&tags, json_string_value(e)) < 0)
                r = cairn__err(err, -ENOMEM, "out of memory");
    }
    bool found = false;
    for (size_t i = 0; i < tags.n; i++)
        found |= !strcmp(tags.v[i], module);
    if (rec && !found && r == 0 && cairn__strv_push(&tags, module) < 0)
        r = cairn__err(err, -ENOMEM, "out of memory");
    cairn_state *st = NULL;
    if (r == 0)
        r = cairn_state_open(&st, state, CAIRN_OPEN_READONLY, err);
    if (r == 0) {
        cairn_remote_options ro = CAIRN_REMOTE_OPTIONS_INIT;
        if (p.o.remote)
            ro = *p.o.remote;
        ro.own = 1;
        ro.progress = p.o.progress;
        ro.progress_userdata = p.o.progress_userdata;
        r = cairn__remote_push_known(st, p.url, module, rec ? (const char *const *)tags.v : NULL,
                                     tags.n, &ro, stats, out_digest, err);
        if (r < 0)
            cairn__err_prefix(err, r, "pool %s: check in %s as %s", p.url, state, module);
    }
    cairn_state_free(st);
    if (r == 0 && rec) {
        cairn_error e3 = {0};
        (void)lease_renew(&p, rec, id, cairn__now() + p.lease_ttl, &e3); /* the checkin is done; the lease expires */
    }
    cairn__strv_free(&tags);
    json_decref(rec);
    pool_close(&p);
    return r;
}

/* ---- compact ------------------------------------------------------------ */

static int tag_add(void *ud, const char *tag, const char *digest, int64_t mtime)
{
    (void)digest;
    (void)mtime;
    cairn__strv *tags = ud;
    if (tag[0] == '_' || (tags->n && !strcmp(tags->v[tags->n - 1], tag)))
        return 0;
    for (size_t i = 0; i < tags->n; i++)
        if (!strcmp(tags->v[i], tag))
            return 0;
    return cairn__strv_push(tags, tag);
}

/* A member a compaction folded stays until its grace is over, so a
 * provision that listed it before the compaction still finds it; a record
 * under "_retire" says which (cairn.pool.tag, cairn.pool.retire: the
 * digests, comma separated; cairn.pool.compacted: unix s). Records due
 * (compacted + grace <= now) are carried out: the members taken out, then
 * the record. A folded member no record names (a compaction killed before
 * it wrote one) gets one now. */

typedef struct tmember {
    char digest[CAIRN_DIGEST_LEN + 1];
    char *parents;
    bool folded;
} tmember;

typedef struct tmemberv {
    tmember *v;
    size_t n, cap;
} tmemberv;

static void tmemberv_free(tmemberv *tv)
{
    for (size_t i = 0; i < tv->n; i++)
        free(tv->v[i].parents);
    free(tv->v);
    *tv = (tmemberv){0};
}

static int tmember_add(void *ud, const cairn__remote_member *rm)
{
    tmemberv *tv = ud;
    if (tv->n == tv->cap) {
        size_t cap = tv->cap ? tv->cap * 2 : 16;
        tmember *nv = realloc(tv->v, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        tv->v = nv;
        tv->cap = cap;
    }
    tmember *m = &tv->v[tv->n];
    *m = (tmember){0};
    snprintf(m->digest, sizeof(m->digest), "%s", rm->digest);
    if (!(m->parents = strdup(rm->parents)))
        return -ENOMEM;
    tv->n++;
    return 0;
}

static int64_t retire_grace(const pool *p)
{
    return p->o.retire_grace < 0 ? 0 : p->o.retire_grace ? p->o.retire_grace : RETIRE_GRACE_DEFAULT;
}

/* Carry out the retirements of tag (NULL: of every tag) that are due. */
static int retire_due(pool *p, const char *tag, uint64_t *retired, cairn_error *err)
{
    recordv rv = {0};
    int r = records_list(p, TAG_RETIRE, &rv, err);
    int64_t now = cairn__now();
    for (size_t i = 0; r == 0 && i < rv.n; i++) {
        json_t *a = rv.v[i].ann;
        const char *t = ann_str(a, "cairn.pool.tag");
        if ((tag && strcmp(t, tag) != 0) || !module_ok(t) ||
            ann_int(a, "cairn.pool.compacted") + retire_grace(p) > now)
            continue;
        const char *q = ann_str(a, "cairn.pool.retire");
        while (r == 0 && *q) {
            size_t len = strcspn(q, ",");
            char d[CAIRN_DIGEST_LEN + 1];
            snprintf(d, sizeof(d), "%.*s", (int)len, q);
            if (len == CAIRN_DIGEST_LEN && cairn_digest_check(d, NULL) == 0) {
                cairn_error e2 = {0};
                r = p->c->ops->state_delete(p->c->r, t, d, &e2);
                if (r == -ENOENT)
                    r = 0; /* another gc or compact took it out */
                else if (r < 0 && err)
                    *err = e2;
                else if (retired)
                    (*retired)++;
            }
            q += len + (q[len] == ',');
        }
        if (r == 0)
            r = p->c->ops->state_delete(p->c->r, TAG_RETIRE, rv.v[i].digest, err);
        if (r == -ENOENT)
            r = 0;
    }
    recordv_free(&rv);
    return r;
}

/* Compact the unfolded members of tag into one, the folded ones to be
 * retired after the grace. 1 when a compaction was made. */
static int compact_tag(pool *p, const char *tag, const cairn_remote_options *ro,
                       cairn_remote_stats *s, cairn_error *err)
{
    tmemberv tv = {0};
    recordv rv = {0};
    int r = cairn__remote_members(p->c, tag, NULL, 0, tmember_add, &tv, err);
    if (r == -ENOMEM)
        r = cairn__err(err, r, "out of memory");
    if (r == 0)
        r = records_list(p, TAG_RETIRE, &rv, err);
    for (size_t i = 0; r == 0 && i < tv.n; i++)
        for (size_t j = 0; j < tv.n && !tv.v[i].folded; j++)
            if (i != j && list_has(tv.v[j].parents, tv.v[i].digest))
                tv.v[i].folded = true;
    _cleanup_free_ const char **cand = calloc(tv.n + 1, sizeof(*cand));
    size_t nc = 0, need = 1;
    if (r == 0 && !cand)
        r = cairn__err(err, -ENOMEM, "out of memory");
    for (size_t i = 0; r == 0 && i < tv.n; i++) {
        need += CAIRN_DIGEST_LEN + 1;
        if (!tv.v[i].folded)
            cand[nc++] = tv.v[i].digest;
    }
    int made = 0;
    if (r == 0 && nc >= 2) {
        char digest[CAIRN_DIGEST_LEN + 1] = "";
        r = cairn__remote_compact_members(p->url, tag, cand, nc, ro, s, digest, err);
        made = r == 0 && s->states >= 2;
        for (size_t i = 0; made && i < tv.n; i++)
            tv.v[i].folded |= !tv.v[i].folded && strcmp(tv.v[i].digest, digest) != 0;
    }
    /* what is folded and no record names: one record, compacted now */
    _cleanup_free_ char *list = r == 0 ? calloc(1, need) : NULL;
    if (r == 0 && !list)
        r = cairn__err(err, -ENOMEM, "out of memory");
    for (size_t i = 0; r == 0 && i < tv.n; i++) {
        if (!tv.v[i].folded)
            continue;
        bool named = false;
        for (size_t k = 0; k < rv.n && !named; k++)
            named = !strcmp(ann_str(rv.v[k].ann, "cairn.pool.tag"), tag) &&
                    list_has(ann_str(rv.v[k].ann, "cairn.pool.retire"), tv.v[i].digest);
        if (named)
            continue;
        if (list[0])
            strcat(list, ",");
        strcat(list, tv.v[i].digest);
    }
    if (r == 0 && list[0]) {
        char now[32], d[CAIRN_DIGEST_LEN + 1];
        snprintf(now, sizeof(now), "%lld", (long long)cairn__now());
        r = record_put(p, TAG_RETIRE, AT_RETIRE,
                       json_pack("{s:s, s:s, s:s}", "cairn.pool.tag", tag, "cairn.pool.retire",
                                 list, "cairn.pool.compacted", now),
                       d, err);
    }
    recordv_free(&rv);
    tmemberv_free(&tv);
    return r < 0 ? r : made;
}

int cairn_pool_compact(const char *url, const char *module, const cairn_pool_options *opts,
                       cairn_remote_stats *stats, uint64_t *retired, cairn_error *err)
{
    if (module && module_check(module, err) < 0)
        return err ? err->code : -EINVAL;
    pool p = {0};
    int r = pool_open(&p, url, opts, err);
    if (r == 0)
        r = pool_ready(&p, err);
    cairn__strv tags = {0};
    if (r == 0 && module && cairn__strv_push(&tags, module) < 0)
        r = cairn__err(err, -ENOMEM, "out of memory");
    if (r == 0 && !module) {
        r = p.c->ops->states_list(p.c->r, NULL, tag_add, &tags, err);
        if (r == -ENOMEM)
            r = cairn__err(err, r, "out of memory");
    }
    cairn_remote_stats total = {0};
    int folded = 0;
    cairn_remote_options ro = CAIRN_REMOTE_OPTIONS_INIT;
    if (p.o.remote)
        ro = *p.o.remote;
    for (size_t i = 0; r == 0 && i < tags.n; i++) {
        cairn_remote_stats s = {0};
        r = compact_tag(&p, tags.v[i], &ro, &s, err);
        if (r < 0) {
            cairn__err_prefix(err, r, "pool compact: module %s", tags.v[i]);
            break;
        }
        folded += r;
        r = 0;
        total.states += s.states;
        total.objects += s.objects;
        total.objects_moved += s.objects_moved;
        total.bytes_moved += s.bytes_moved;
        total.meta_bytes += s.meta_bytes;
    }
    /* then the members folded long enough ago (this run's too, with no grace) */
    uint64_t gone = 0;
    if (r == 0)
        r = retire_due(&p, module, &gone, err);
    if (r == 0 && stats)
        *stats = total;
    if (r == 0 && retired)
        *retired = gone;
    cairn__strv_free(&tags);
    pool_close(&p);
    return r < 0 ? r : folded;
}

/* ---- what gc and ls read: states, leases, use ---------------------------- */

typedef struct gmember {
    char tag[CAIRN_POOL_MODULE_MAX + 1];
    char digest[CAIRN_DIGEST_LEN + 1];
    char state_id[CAIRN_STATE_ID_LEN + 1];
    char *parents;
    int64_t mtime;      /* ns */
    int64_t last_use;   /* ns */
    uint64_t hits;
    uint64_t objects, bytes, meta;
    size_t first_obj;   /* into the object table */
    bool leased, gone;
} gmember;

typedef struct gobj {
    const char *digest; /* borrowed from names */
    uint64_t size;
    size_t member;
    size_t id;          /* distinct object */
} gobj;

typedef struct view {
    gmember *m;
    size_t n, cap;
    gobj *o;
    size_t no, capo;
    cairn__strv names;  /* object digests, owned */
    recordv leases, usage;
} view;

static void view_free(view *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->m[i].parents);
    free(v->m);
    free(v->o);
    cairn__strv_free(&v->names);
    recordv_free(&v->leases);
    recordv_free(&v->usage);
    *v = (view){0};
}

static int view_member(void *ud, const cairn__remote_member *rm)
{
    view *v = ud;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        gmember *nv = realloc(v->m, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        v->m = nv;
        v->cap = cap;
    }
    gmember *m = &v->m[v->n];
    *m = (gmember){.mtime = rm->mtime, .objects = rm->objects, .bytes = rm->bytes,
                   .first_obj = v->no};
    snprintf(m->tag, sizeof(m->tag), "%s", rm->tag);
    snprintf(m->digest, sizeof(m->digest), "%s", rm->digest);
    snprintf(m->state_id, sizeof(m->state_id), "%s", rm->state_id);
    m->parents = strdup(rm->parents);
    if (!m->parents)
        return -ENOMEM;
    m->meta = rm->bytes;
    for (size_t i = 0; i < rm->objects; i++) {
        if (v->no == v->capo) {
            size_t cap = v->capo ? v->capo * 2 : 1024;
            gobj *nv = realloc(v->o, cap * sizeof(*nv));
            if (!nv)
                return -ENOMEM;
            v->o = nv;
            v->capo = cap;
        }
        if (cairn__strv_push(&v->names, rm->object_digests[i]) < 0)
            return -ENOMEM;
        v->o[v->no++] = (gobj){NULL, rm->object_sizes[i], v->n, 0};
        m->meta -= rm->object_sizes[i];
    }
    v->n++;
    return 0;
}

/* Use of each member: the use counts folded, and the leases (live or not). */
static void view_use(view *v, int64_t now)
{
    for (size_t i = 0; i < v->n; i++) {
        gmember *m = &v->m[i];
        m->last_use = m->mtime;
        for (size_t u = 0; u < v->usage.n; u++) {
            json_t *e = json_object_get(v->usage.v[u].ann, "cairn.pool.usage");
            json_t *map = json_is_string(e) ? json_loads(json_string_value(e), 0, NULL) : NULL;
            json_t *x = json_object_get(map, m->digest);
            int64_t last = (int64_t)json_integer_value(json_array_get(x, 0)); /* ns */
            uint64_t hits = (uint64_t)json_integer_value(json_array_get(x, 1));
            if (last > m->last_use)
                m->last_use = last;
            if (hits > m->hits)
                m->hits = hits; /* two gcs folding at once: the larger, never a double */
            json_decref(map);
        }
    }
    for (size_t l = 0; l < v->leases.n; l++) {
        json_t *a = v->leases.v[l].ann;
        const char *states = ann_str(a, "cairn.pool.states");
        int64_t created = ann_int(a, "cairn.pool.created");
        bool live = ann_int(a, "cairn.pool.expires") > now;
        for (size_t i = 0; i < v->n; i++) {
            gmember *m = &v->m[i];
            bool named = list_has(states, m->digest);
            /* a compacted state keeps what its folded members were leased for */
            bool folds = false;
            if (!named && m->parents[0])
                for (const char *q = m->parents; *q && !folds;) {
                    size_t len = strcspn(q, ",");
                    char d[CAIRN_DIGEST_LEN + 1];
                    snprintf(d, sizeof(d), "%.*s", (int)len, q);
                    folds = len == CAIRN_DIGEST_LEN && list_has(states, d);
                    q += len + (q[len] == ',');
                }
            if (!named && !folds)
                continue;
            if (named) {
                m->hits++;
                if (created > m->last_use)
                    m->last_use = created;
            }
            if (live)
                m->leased = true;
        }
    }
}

static int view_load(pool *p, const char *module, view *v, cairn_error *err)
{
    *v = (view){0};
    int r = records_list(p, TAG_LEASE, &v->leases, err);
    if (r == 0)
        r = records_list(p, TAG_USAGE, &v->usage, err);
    if (r == 0) {
        r = cairn__remote_members(p->c, module, NULL, 0, view_member, v, err);
        if (r == -ENOMEM)
            r = cairn__err(err, r, "out of memory");
    }
    for (size_t i = 0; i < v->no; i++)
        v->o[i].digest = v->names.v[i];
    if (r == 0)
        view_use(v, cairn__now());
    return r;
}

/* ---- gc ----------------------------------------------------------------- */

static int gobj_cmp(const void *a, const void *b)
{
    return strcmp(((const gobj *)a)->digest, ((const gobj *)b)->digest);
}

static int lru_cmp(const void *a, const void *b, void *ud)
{
    const gmember *m = ud;
    const gmember *x = &m[*(const size_t *)a], *y = &m[*(const size_t *)b];
    if (x->last_use != y->last_use)
        return x->last_use < y->last_use ? -1 : 1;
    return strcmp(x->digest, y->digest);
}

static const gmember *sort_members;
static int lru_cmp_q(const void *a, const void *b)
{
    return lru_cmp(a, b, (void *)sort_members);
}

/* Fold the expired leases into one use record, then take them out. */
static int fold_leases(pool *p, view *v, int64_t now, uint64_t *folded, cairn_error *err)
{
    size_t expired = 0;
    for (size_t l = 0; l < v->leases.n; l++)
        expired += ann_int(v->leases.v[l].ann, "cairn.pool.expires") <= now;
    if (!expired)
        return 0;
    json_t *map = json_object();
    for (size_t i = 0; map && i < v->n; i++) {
        const gmember *m = &v->m[i];
        if (m->hits || m->last_use > m->mtime)
            json_object_set_new(map, m->digest, json_pack("[I, I]", (json_int_t)m->last_use,
                                                          (json_int_t)m->hits));
    }
    char *text = map ? json_dumps(map, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(map);
    if (!text)
        return cairn__err(err, -ENOMEM, "out of memory");
    char d[CAIRN_DIGEST_LEN + 1];
    int r = record_put(p, TAG_USAGE, AT_USAGE, json_pack("{s:s}", "cairn.pool.usage", text), d,
                       err);
    free(text);
    for (size_t u = 0; r == 0 && u < v->usage.n; u++)
        if (strcmp(v->usage.v[u].digest, d) != 0)
            r = p->c->ops->state_delete(p->c->r, TAG_USAGE, v->usage.v[u].digest, err);
    for (size_t l = 0; r == 0 && l < v->leases.n; l++)
        if (ann_int(v->leases.v[l].ann, "cairn.pool.expires") <= now) {
            r = p->c->ops->state_delete(p->c->r, TAG_LEASE, v->leases.v[l].digest, err);
            (*folded)++;
        }
    return r;
}

int cairn_pool_gc(const char *url, const cairn_pool_options *opts,
                  const cairn_pool_gc_options *gco, cairn_pool_gc_stats *stats, cairn_error *err)
{
    cairn_pool_gc_options g = CAIRN_POOL_GC_OPTIONS_INIT;
    if (gco)
        g = *gco;
    int r = cairn__opts_version(g.version, CAIRN_POOL_GC_OPTIONS_VERSION, "pool gc", err);
    if (r < 0)
        return r;
    pool p = {0};
    view v = {0};
    cairn_pool_gc_stats gs = {0};
    size_t *order = NULL, *refs = NULL;
    r = pool_open(&p, url, opts, err);
    if (r == 0)
        r = pool_ready(&p, err);
    /* the members compactions folded, their grace over, go first */
    if (r == 0 && !g.dry_run)
        r = retire_due(&p, NULL, &gs.folded_retired, err);
    int64_t now = cairn__now();
    if (r == 0)
        r = view_load(&p, NULL, &v, err);
    gs.states = v.n;
    /* the distinct objects, and how many states name each */
    gobj *sorted = r == 0 && v.no ? malloc(v.no * sizeof(*sorted)) : NULL;
    if (r == 0 && v.no && !sorted)
        r = cairn__err(err, -ENOMEM, "out of memory");
    if (r == 0 && v.no) {
        memcpy(sorted, v.o, v.no * sizeof(*sorted));
        for (size_t i = 0; i < v.no; i++)
            sorted[i].id = i; /* back to v.o */
        qsort(sorted, v.no, sizeof(*sorted), gobj_cmp);
    }
    size_t distinct = 0;
    uint64_t size = 0;
    for (size_t i = 0; r == 0 && i < v.no; i++) {
        if (i == 0 || strcmp(sorted[i].digest, sorted[i - 1].digest) != 0) {
            distinct++;
            size += sorted[i].size;
        }
        v.o[sorted[i].id].id = distinct - 1;
    }
    for (size_t i = 0; i < v.n; i++)
        size += v.m[i].meta;
    refs = r == 0 ? calloc(distinct + 1, sizeof(*refs)) : NULL;
    if (r == 0 && !refs)
        r = cairn__err(err, -ENOMEM, "out of memory");
    uint64_t *dsize = r == 0 ? calloc(distinct + 1, sizeof(*dsize)) : NULL;
    if (r == 0 && !dsize)
        r = cairn__err(err, -ENOMEM, "out of memory");
    for (size_t i = 0; r == 0 && i < v.no; i++) {
        refs[v.o[i].id]++;
        dsize[v.o[i].id] = v.o[i].size;
    }
    free(sorted);
    gs.size_before = size;
    /* least recently used first, until the size fits */
    order = r == 0 ? calloc(v.n + 1, sizeof(*order)) : NULL;
    if (r == 0 && !order)
        r = cairn__err(err, -ENOMEM, "out of memory");
    for (size_t i = 0; r == 0 && i < v.n; i++)
        order[i] = i;
    if (r == 0 && v.n > 1) {
        sort_members = v.m;
        qsort(order, v.n, sizeof(*order), lru_cmp_q);
    }
    for (size_t k = 0; r == 0 && k < v.n && size > g.max_size; k++) {
        gmember *m = &v.m[order[k]];
        if (m->leased) {
            gs.kept_leased++;
            continue;
        }
        m->gone = true;
        gs.retired++;
        size -= m->meta;
        for (size_t i = m->first_obj; i < m->first_obj + m->objects; i++)
            if (--refs[v.o[i].id] == 0)
                size -= dsize[v.o[i].id];
    }
    gs.size_after = size;
    free(dsize);
    for (size_t i = 0; r == 0 && !g.dry_run && i < v.n; i++)
        if (v.m[i].gone) {
            r = p.c->ops->state_delete(p.c->r, v.m[i].tag, v.m[i].digest, err);
            if (r == -ENOENT) /* compacted meanwhile */
                r = 0;
        }
    if (r == 0 && !g.dry_run)
        r = fold_leases(&p, &v, now, &gs.leases_folded, err);
    /* then the objects no state names, past the grace */
    if (r == 0) {
        cairn_remote_options ro = CAIRN_REMOTE_OPTIONS_INIT;
        if (p.o.remote)
            ro = *p.o.remote;
        cairn_remote_gc_options rg = CAIRN_REMOTE_GC_OPTIONS_INIT;
        rg.keep = -1;
        rg.grace = g.grace;
        rg.dry_run = g.dry_run;
        cairn_remote_stats rs = {0};
        r = cairn_remote_gc(NULL, p.url, &ro, &rg, &rs, err);
        gs.objects_removed = rs.objects_moved;
        gs.bytes_removed = rs.bytes_moved;
    }
    if (r == 0 && stats)
        *stats = gs;
    free(order);
    free(refs);
    view_free(&v);
    pool_close(&p);
    return r;
}

/* ---- ls ----------------------------------------------------------------- */

int cairn_pool_ls(const char *url, const char *module, const cairn_pool_options *opts,
                  cairn_pool_entry_fn fn, void *ud, cairn_error *err)
{
    if (module && module_check(module, err) < 0)
        return err ? err->code : -EINVAL;
    pool p = {0};
    view v = {0};
    int r = pool_open(&p, url, opts, err);
    if (r == 0)
        r = pool_ready(&p, err);
    if (r == 0)
        r = view_load(&p, module, &v, err);
    for (size_t i = 0; r == 0 && i < v.n; i++) {
        gmember *m = &v.m[i];
        char entry[300];
        pathf(entry, sizeof(entry), "members/%s", m->digest + 7);
        json_t *f = entry_facts(&p, entry);
        cairn_pool_entry e = {m->tag,       m->digest,   m->state_id,
                              m->mtime / 1000000000,  m->last_use / 1000000000,
                              m->hits,      m->objects,  m->bytes,
                              m->leased,    f != NULL,   m->parents};
        json_decref(f);
        r = fn(ud, &e);
    }
    view_free(&v);
    pool_close(&p);
    return r;
}
