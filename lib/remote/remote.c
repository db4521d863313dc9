/* remote.c: remotes of a state (cairn/remote.h): their configuration, push,
 * pull, the listing of states, compact and gc, written against the
 * backends' vtable (remote/backend.h) only.
 *
 * A pushed state, in the remote's OCI image layout:
 *   config     application/vnd.cairn.state.config.v1+json: {"format",
 *              "state", "tag", "parents", "created"}
 *   layers[0]  application/vnd.cairn.state.db.v1+sqlite: the metadata, one
 *              self-contained SQLite file (no WAL), local rows dropped
 *   layers[1..] every object its rows name, annotated "cairn.kind": "blob"
 *              (its own media type) or "snapshot" (a layer tarball, with
 *              "cairn.chain-id", "cairn.parent", "cairn.diff-id")
 * in one image manifest, or, past opts->objects_per_manifest objects, in
 * several manifests (each with the config, the first with the database)
 * under an image index: no document exceeds 4 MiB.
 *
 * Invariants:
 * - publish last: state_put is called once every object the state names
 *   is stored (checked by blobs_have or just sent), so an interrupted push
 *   leaves no visible state, and a rerun sends only what is still missing;
 * - verify on read: every document and object fetched is hashed against
 *   its name (and its size checked) before it is parsed or ingested; an
 *   object is ingested with its digest expected, and a snapshot imported
 *   with its DiffID expected and its chain id checked, so no row names
 *   bytes that were not verified;
 * - a pull never fetches what the state or its lowers hold;
 * - compact moves no object: it fetches databases and documents only, and
 *   publishes the merged state before it takes the old members out;
 * - gc removes an object only when no state listed after the states'
 *   removal names it and it is older than the grace period.
 *
 * Push, in order: 1. the database: backup of the state's own, the lowers'
 * rows merged in (or, --own, the snapshots its own build on), local rows
 * dropped; 2. the objects its rows name; 3. which the remote holds (one
 * batch), snapshots matched by chain id against the layers the remote's
 * states already carry, so an unchanged snapshot is not even exported;
 * 4. send the missing, each checked against its name first; 5. the
 * database and config; 6. the manifests; 7. publish.
 * Pull: 1. the members' documents, configs and databases, verified; 2. the
 * union of their objects less what the state holds; 3. blobs fetched,
 * verified and ingested in one batch; 4. snapshots fetched, verified and
 * imported parents first; 5. each member's database as a frozen state of
 * its own, merged into the state by cairn_merge() (every object is there,
 * so every row is taken).
 */
#include "combine/combine.h"
#include "image/oci-private.h"
#include "remote/backend.h"
#include "remote/xfer.h"
#include "snapshot/snapshot-private.h"
#include "store/store-private.h"

#include <dirent.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#define MT_CONFIG   "application/vnd.cairn.state.config.v1+json"
#define MT_DB       "application/vnd.cairn.state.db.v1+sqlite"
#define MT_ARTIFACT "application/vnd.cairn.state.v1"
#define MT_BLOB     "application/octet-stream"
#define DOC_MAX     (4u << 20)
#define PER_MANIFEST_DEFAULT 8192
#define REMOTE_PATH_MAX 4096

/* The backends compiled in. */
static const cairn__remote_ops *const backends[] = {&cairn__remote_file, &cairn__remote_s3,
                                                    &cairn__remote_oci};

/* ---- configuration ----------------------------------------------------- */

static bool name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > CAIRN_REMOTE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

static bool is_url(const char *s)
{
    return strstr(s, "://") != NULL;
}

static int url_check(const char *url, cairn_error *err)
{
    if (strlen(url) > CAIRN_REMOTE_URL_MAX)
        return cairn__err(err, -EINVAL, "remote URL longer than %d bytes", CAIRN_REMOTE_URL_MAX);
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return cairn__err(err, -EINVAL, "remote URL: a control character at byte %zu",
                              (size_t)(p - url));
    const char *sep = strstr(url, "://");
    if (!sep)
        return cairn__err(err, -EINVAL, "remote '%s': expected a URL (file:///dir, "
                          "s3://bucket/prefix, oci://host/repository)", url);
    size_t sn = (size_t)(sep - url);
    const char *auth = sep + 3;
    const char *slash = strchr(auth, '/');
    const char *at = strchr(auth, '@');
    if (at && (!slash || at < slash))
        return cairn__err(err, -EINVAL, "remote %.*s://...: credentials in a URL are refused "
                          "(they would be stored); the backend takes them from the environment",
                          (int)sn, url);
    /* the schemes of remotes, whether or not this build has their backend */
    static const char *const schemes[] = {"file", "s3", "oci"};
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(schemes); i++)
        if (strlen(schemes[i]) == sn && !strncmp(schemes[i], url, sn))
            return 0;
    return cairn__err(err, -EPROTONOSUPPORT, "remote %.*s://: unknown scheme (file://, s3://, "
                      "oci://)", (int)sn, url);
}

int cairn_remote_add(cairn_state *st, const char *name, const char *url, cairn_error *err)
{
    if (!name || !name_ok(name))
        return cairn__err(err, -EINVAL, "remote name '%s': expected [a-z0-9][a-z0-9._-]*, at most "
                          "%d", name ? name : "", CAIRN_REMOTE_NAME_MAX);
    int r = url ? url_check(url, err) : cairn__err(err, -EINVAL, "remote %s: no URL", name);
    if (r < 0)
        return r;
    char key[CAIRN_REMOTE_NAME_MAX + 16];
    snprintf(key, sizeof(key), "remote:%s", name);
    static const char get[] = "SELECT value FROM meta WHERE key = ?";
    static const char ins[] = "INSERT INTO meta(key, value) VALUES (?1, ?2)";
    r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    r = cairn__tx_begin(st, err);
    if (r < 0)
        return r;
    sqlite3_stmt *s;
    r = cairn__stmt(st, 0, get, &s, err);
    if (r == 0) {
        sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            r = strcmp(cairn__col(s, 0), url) ? cairn__err(err, -EEXIST,
                                                           "remote %s: already names %s", name,
                                                           cairn__col(s, 0))
                                              : 1;
        else if (rc != SQLITE_DONE)
            r = cairn__err_db(err, st->layers[0].db, rc, "remote add");
        sqlite3_reset(s);
    }
    if (r == 0 && (r = cairn__stmt(st, 0, ins, &s, err)) == 0) {
        sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, url, -1, SQLITE_STATIC);
        r = cairn__step_done(st, 0, s, err);
    }
    if (r < 0) {
        cairn__tx_rollback(st);
        return r;
    }
    return cairn__tx_commit(st, err);
}

int cairn_remote_remove(cairn_state *st, const char *name, cairn_error *err)
{
    char key[CAIRN_REMOTE_NAME_MAX + 16];
    snprintf(key, sizeof(key), "remote:%s", name ? name : "");
    int r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    static const char del[] = "DELETE FROM meta WHERE key = ?";
    r = cairn__exec_key(st, del, key, err);
    if (r < 0)
        return r;
    if (sqlite3_changes(st->layers[0].db) == 0)
        return cairn__err(err, -ENOENT, "remote %s: no such remote", name ? name : "");
    return 0;
}

int cairn_remote_list(cairn_state *st, cairn_remote_fn fn, void *ud, cairn_error *err)
{
    static const char sql[] = "SELECT substr(key, 8), value FROM meta WHERE key > 'remote:' AND "
                              "key < 'remote;' ORDER BY key";
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    int rc;
    while (r == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW)
        r = fn(ud, cairn__col(s, 0), cairn__col(s, 1));
    if (r == 0 && rc != SQLITE_DONE)
        r = cairn__err_db(err, st->layers[0].db, rc, "remote list");
    sqlite3_reset(s);
    return r;
}

int cairn_remote_url(cairn_state *st, const char *remote, char *buf, size_t size,
                     cairn_error *err)
{
    if (!remote || !*remote)
        return cairn__err(err, -EINVAL, "no remote given");
    if (is_url(remote)) {
        int r = url_check(remote, err);
        if (r < 0)
            return r;
        snprintf(buf, size, "%s", remote);
        return 0;
    }
    if (!st)
        return cairn__err(err, -ENOENT, "remote %s: not a URL, and no state to look it up in",
                          remote);
    static const char sql[] = "SELECT value FROM meta WHERE key = ?";
    char key[CAIRN_REMOTE_NAME_MAX + 16];
    snprintf(key, sizeof(key), "remote:%s", remote);
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        snprintf(buf, size, "%s", cairn__col(s, 0));
    else if (rc == SQLITE_DONE)
        r = cairn__err(err, -ENOENT, "remote %s: no such remote (cairn remote add %s URL)", remote,
                       remote);
    else
        r = cairn__err_db(err, st->layers[0].db, rc, "remote lookup");
    sqlite3_reset(s);
    return r;
}

/* ---- a session with a remote ------------------------------------------- */

typedef struct session {
    cairn_state *st; /* may be NULL (states, compact, gc of a URL) */
    const cairn__remote_ops *ops;
    cairn__remote *r;
    char url[CAIRN_REMOTE_URL_MAX + 1];
    cairn_remote_options o;
    cairn_remote_stats stats;
    char *scratch; /* a private directory for fetched files */
    unsigned seq;
    uint64_t total, done; /* progress, in bytes */
    uint64_t xbase;       /* done when a transfer pool started */
} session;

static void progress(session *s)
{
    if (s->o.progress)
        s->o.progress(s->o.progress_userdata, s->done, s->total);
}

/* The pool's side of a session (xfer.h): each worker opens the remote as
 * the session did; progress is the session's. */
static cairn__remote_conf session_conf(const session *s)
{
    return (cairn__remote_conf){s->url, s->o.jobs, s->o.insecure, s->o.region, s->o.endpoint,
                                s->o.auth_file};
}

static unsigned session_workers(const session *s, size_t n)
{
    unsigned jobs = s->o.jobs ? (s->o.jobs < 256 ? s->o.jobs : 256) : 8;
    return n < jobs ? (unsigned)(n ? n : 1) : jobs;
}

typedef struct xfer {
    session *s;
    uint64_t base;
} xfer;

static void xfer_cb(void *ud, uint64_t done)
{
    xfer *x = ud;
    x->s->done = x->base + done;
    progress(x->s);
}

/* The backend of `remote`, opened; no scratch directory (session_open). */
static int session_connect(session *s, cairn_state *st, const char *remote,
                           const cairn_remote_options *opts, cairn_error *err)
{
    cairn_remote_options def = CAIRN_REMOTE_OPTIONS_INIT;
    *s = (session){.st = st, .o = opts ? *opts : def};
    int r = cairn__opts_version(s->o.version, CAIRN_REMOTE_OPTIONS_VERSION, "remote", err);
    if (r < 0)
        return r;
    /* Zero means the default: zstd (the media type below follows it). */
    if (s->o.compression == CAIRN_COMPRESSION_DEFAULT)
        s->o.compression = CAIRN_COMPRESSION_ZSTD;
    r = cairn_remote_url(st, remote, s->url, sizeof(s->url), err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(backends); i++) {
        size_t n = strlen(backends[i]->scheme);
        if (!strncmp(s->url, backends[i]->scheme, n) && !strncmp(s->url + n, "://", 3))
            s->ops = backends[i];
    }
    if (!s->ops)
        return cairn__err(err, -EPROTONOSUPPORT, "remote %s: this cairn has no backend for it "
                          "(it has file:// and oci://)", s->url);
    cairn__remote_conf conf = session_conf(s);
    return s->ops->open(&conf, &s->r, err);
}

static int session_open(session *s, cairn_state *st, const char *remote,
                        const cairn_remote_options *opts, cairn_error *err)
{
    int r = session_connect(s, st, remote, opts, err);
    if (r < 0)
        return r;
    /* Scratch: under the state's tmp/ when it can be written (same
     * filesystem as the objects; owned by st: swept once its process is
     * gone, or after a reboot), else $TMPDIR. */
    if (st && !st->readonly && cairn__tmpfd(st, NULL) >= 0) {
        char name[128];
        r = cairn__tmp_name(st, name, sizeof(name), "remote");
        if (r == 0 && asprintf(&s->scratch, "%s/tmp/%s", st->path, name) < 0)
            s->scratch = NULL;
        if (s->scratch && mkdir(s->scratch, 0700) < 0) {
            free(s->scratch);
            s->scratch = NULL;
        }
    }
    if (!s->scratch) {
        const char *t = getenv("TMPDIR");
        if (asprintf(&s->scratch, "%s/cairn-remote-XXXXXX", t && *t ? t : "/tmp") < 0)
            s->scratch = NULL;
        if (!s->scratch || !mkdtemp(s->scratch)) {
            r = -errno;
            free(s->scratch);
            s->scratch = NULL;
            return cairn__err(err, r ? r : -ENOMEM, "remote: a scratch directory: %m");
        }
    }
    return 0;
}

static void session_close(session *s)
{
    if (s->r)
        s->ops->close(s->r);
    s->r = NULL;
    if (s->scratch)
        cairn__rm_rf_at(AT_FDCWD, s->scratch);
    free(s->scratch);
    s->scratch = NULL;
}

/* A new file in the scratch directory: its path in out. */
static int scratch_file(session *s, const char *tag, char *out, size_t size, int *fd)
{
    snprintf(out, size, "%s/%s-%u", s->scratch, tag, s->seq++);
    *fd = open(out, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    return *fd < 0 ? -errno : 0;
}

/* Fetch a blob into fd and check it: its bytes hash to digest, and their
 * count is `size` (when >= 0). Nothing is trusted before that. */
static int fetch_verified(session *s, const char *digest, int64_t size, int fd,
                          cairn_error *err)
{
    int r = cairn_digest_check(digest, err);
    if (r < 0)
        return cairn__err_prefix(err, r, "remote %s", s->url);
    xfer x = {s, s->done};
    r = s->ops->blob_get(s->r, digest, fd, xfer_cb, &x, err);
    if (r < 0)
        return r;
    return cairn__xfer_verify(s->url, digest, size, fd, err);
}

static void xpool_tick(void *ud, uint64_t bytes)
{
    session *s = ud;
    s->done = s->xbase + bytes;
    progress(s);
}

/* A small document (JSON), fetched and verified into a malloc'd buffer. */
static int fetch_doc(session *s, const char *digest, int64_t size, char **buf, size_t *len,
                     cairn_error *err)
{
    if (size > (int64_t)DOC_MAX)
        return cairn__err(err, CAIRN_E_FORMAT, "remote %s: document %s: %lld bytes, over 4 MiB",
                          s->url, digest, (long long)size);
    _cleanup_close_ int fd = memfd_create("cairn-doc", MFD_CLOEXEC);
    if (fd < 0)
        return cairn__err(err, -errno, "memfd: %m");
    int r = fetch_verified(s, digest, size, fd, err);
    if (r < 0)
        return r;
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return cairn__err(err, -errno, "memfd: %m");
    if ((uint64_t)sb.st_size > DOC_MAX)
        return cairn__err(err, CAIRN_E_FORMAT, "remote %s: document %s: over 4 MiB", s->url,
                          digest);
    char *b = malloc((size_t)sb.st_size + 1);
    if (!b)
        return cairn__err(err, -ENOMEM, "out of memory");
    ssize_t n = cairn__read_all(fd, b, (size_t)sb.st_size);
    if (n != sb.st_size) {
        free(b);
        return cairn__err(err, n < 0 ? (int)n : -EIO, "memfd: read: %m");
    }
    b[n] = 0;
    s->stats.meta_bytes += (uint64_t)n;
    *buf = b;
    *len = (size_t)n;
    return 0;
}

/* ---- objects and the documents naming them ---------------------------- */

enum { OBJ_BLOB, OBJ_SNAPSHOT };

typedef struct obj {
    int kind;
    char name[CAIRN_DIGEST_LEN + 1];   /* blob: its digest; snapshot: its chain id */
    char digest[CAIRN_DIGEST_LEN + 1]; /* what the remote holds */
    uint64_t size;
    char media_type[CAIRN_MEDIA_TYPE_MAX + 1];
    char parent[CAIRN_DIGEST_LEN + 1]; /* snapshot: "" for a base */
    char diff_id[CAIRN_DIGEST_LEN + 1];
    unsigned depth;
} obj;

typedef struct objv {
    obj *v;
    size_t n, cap;
} objv;

static obj *objv_add(objv *ov)
{
    if (ov->n == ov->cap) {
        size_t cap = ov->cap ? ov->cap * 2 : 64;
        obj *nv = realloc(ov->v, cap * sizeof(*nv));
        if (!nv)
            return NULL;
        ov->v = nv;
        ov->cap = cap;
    }
    obj *o = &ov->v[ov->n++];
    memset(o, 0, sizeof(*o));
    return o;
}

static int obj_cmp(const void *a, const void *b)
{
    const obj *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind - y->kind;
    return strcmp(x->name, y->name);
}

/* Sort and drop duplicates (by kind and name; the first stays). */
static void objv_uniq(objv *ov)
{
    if (ov->n < 2)
        return;
    qsort(ov->v, ov->n, sizeof(*ov->v), obj_cmp);
    size_t w = 1;
    for (size_t i = 1; i < ov->n; i++)
        if (obj_cmp(&ov->v[i], &ov->v[w - 1]) != 0)
            ov->v[w++] = ov->v[i];
    ov->n = w;
}

static obj *objv_find(const objv *ov, int kind, const char *name)
{
    if (!ov->n)
        return NULL;
    obj key = {.kind = kind};
    snprintf(key.name, sizeof(key.name), "%s", name);
    return bsearch(&key, ov->v, ov->n, sizeof(*ov->v), obj_cmp);
}

/* A state of the remote, as its documents say. */
typedef struct rstate {
    char tag[128];
    char digest[CAIRN_DIGEST_LEN + 1];
    int64_t mtime;
    char state_id[CAIRN_STATE_ID_LEN + 1];
    char *parents;           /* comma separated */
    char db[CAIRN_DIGEST_LEN + 1];
    int64_t db_size;
    char config[CAIRN_DIGEST_LEN + 1];
    int64_t config_size;
    cairn__strv chunks;      /* manifests under an index (digests) */
    uint64_t doc_bytes;      /* the manifests' and config's bytes */
    objv objs;
} rstate;

static void rstate_clear(rstate *rs)
{
    free(rs->parents);
    cairn__strv_free(&rs->chunks);
    free(rs->objs.v);
    memset(rs, 0, sizeof(*rs));
}

static const char *annot(json_t *d, const char *key)
{
    const char *v = json_string_value(json_object_get(json_object_get(d, "annotations"), key));
    return v ? v : "";
}

static int desc_get(session *s, json_t *d, const char *what, char *digest, int64_t *size,
                    cairn_error *err)
{
    const char *dg = json_string_value(json_object_get(d, "digest"));
    json_t *sz = json_object_get(d, "size");
    if (!dg || cairn_digest_check(dg, NULL) < 0 || !json_is_integer(sz) ||
        json_integer_value(sz) < 0)
        return cairn__err(err, CAIRN_E_FORMAT, "remote %s: %s: a descriptor without a valid "
                          "digest and size", s->url, what);
    snprintf(digest, CAIRN_DIGEST_LEN + 1, "%s", dg);
    *size = json_integer_value(sz);
    return 0;
}

/* The layers of one manifest into rs. */
static int parse_manifest(session *s, rstate *rs, const char *buf, size_t len, const char *what,
                          cairn_error *err)
{
    json_error_t je;
    json_t *m = json_loadb(buf, len, 0, &je);
    if (!m)
        return cairn__err(err, CAIRN_E_FORMAT, "remote %s: %s: %s", s->url, what, je.text);
    int r = 0;
    json_t *cfg = json_object_get(m, "config");
    const char *cmt = json_string_value(json_object_get(cfg, "mediaType"));
    if (!cmt || strcmp(cmt, MT_CONFIG) != 0) {
        json_decref(m);
        return cairn__err(err, CAIRN_E_FORMAT, "remote %s: %s: not a cairn state (config %s)",
                          s->url, what, cmt ? cmt : "missing");
    }
    if (!rs->config[0])
        r = desc_get(s, cfg, what, rs->config, &rs->config_size, err);
    json_t *layers = json_object_get(m, "layers");
    size_t i;
    json_t *d;
    json_array_foreach(layers, i, d)
    {
        if (r < 0)
            break;
        const char *mt = json_string_value(json_object_get(d, "mediaType"));
        const char *kind = annot(d, "cairn.kind");
        char dg[CAIRN_DIGEST_LEN + 1];
        int64_t sz;
        r = desc_get(s, d, what, dg, &sz, err);
        if (r < 0)
            break;
        if (!strcmp(kind, "db") || (mt && !strcmp(mt, MT_DB))) {
            memcpy(rs->db, dg, sizeof(dg));
            rs->db_size = sz;
            continue;
        }
        obj *o = objv_add(&rs->objs);
        if (!o) {
            r = cairn__err(err, -ENOMEM, "out of memory");
            break;
        }
        memcpy(o->digest, dg, sizeof(dg));
        o->size = (uint64_t)sz;
        snprintf(o->media_type, sizeof(o->media_type), "%s", mt ? mt : MT_BLOB);
        if (!strcmp(kind, "snapshot")) {
            o->kind = OBJ_SNAPSHOT;
            snprintf(o->name, sizeof(o->name), "%s", annot(d, "cairn.chain-id"));
            snprintf(o->parent, sizeof(o->parent), "%s", annot(d, "cairn.parent"));
            snprintf(o->diff_id, sizeof(o->diff_id), "%s", annot(d, "cairn.diff-id"));
            if (cairn_digest_check(o->name, NULL) < 0 ||
                cairn_digest_check(o->diff_id, NULL) < 0 ||
                (o->parent[0] && cairn_digest_check(o->parent, NULL) < 0))
                r = cairn__err(err, CAIRN_E_FORMAT, "remote %s: %s: layer %s: bad snapshot "
                               "annotations", s->url, what, dg);
        } else {
            o->kind = OBJ_BLOB;
            memcpy(o->name, dg, sizeof(dg));
        }
    }
    json_decref(m);
    return r;
}

/* Load a member of the remote: its document, chunks and config, verified. */
static int load_state(session *s, const char *tag, const char *digest, int64_t mtime, rstate *rs,
                      cairn_error *err)
{
    memset(rs, 0, sizeof(*rs));
    snprintf(rs->tag, sizeof(rs->tag), "%s", tag);
    snprintf(rs->digest, sizeof(rs->digest), "%s", digest);
    rs->mtime = mtime;
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    int r = s->ops->state_get(s->r, tag, digest, &buf, &len, err);
    if (r < 0)
        return r;
    char got[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(buf, len, got);
    if (strcmp(got, digest) != 0)
        return cairn__err(err, CAIRN_E_MISMATCH, "remote %s: state %s of %s: its manifest "
                          "hashes to %s; refused", s->url, digest, tag, got);
    rs->doc_bytes += len;
    s->stats.meta_bytes += len;
    json_t *doc = json_loadb(buf, len, 0, NULL);
    const char *mt = json_string_value(json_object_get(doc, "mediaType"));
    if (mt && !strcmp(mt, CAIRN__MT_OCI_INDEX)) {
        json_t *ms = json_object_get(doc, "manifests");
        size_t i;
        json_t *d;
        json_array_foreach(ms, i, d)
        {
            char dg[CAIRN_DIGEST_LEN + 1];
            int64_t sz;
            _cleanup_free_ char *mb = NULL;
            size_t ml = 0;
            r = desc_get(s, d, digest, dg, &sz, err);
            if (r == 0)
                r = fetch_doc(s, dg, sz, &mb, &ml, err);
            if (r == 0 && cairn__strv_push(&rs->chunks, dg) < 0)
                r = cairn__err(err, -ENOMEM, "out of memory");
            if (r == 0) {
                rs->doc_bytes += ml;
                r = parse_manifest(s, rs, mb, ml, dg, err);
            }
            if (r < 0)
                break;
        }
    } else if (doc) {
        r = parse_manifest(s, rs, buf, len, digest, err);
    } else {
        r = cairn__err(err, CAIRN_E_FORMAT, "remote %s: state %s: not JSON", s->url, digest);
    }
    json_decref(doc);
    if (r == 0 && (!rs->db[0] || !rs->config[0]))
        r = cairn__err(err, CAIRN_E_FORMAT, "remote %s: state %s: no database or config", s->url,
                       digest);
    _cleanup_free_ char *cb = NULL;
    size_t cl = 0;
    if (r == 0)
        r = fetch_doc(s, rs->config, rs->config_size, &cb, &cl, err);
    if (r == 0) {
        rs->doc_bytes += cl;
        json_t *c = json_loadb(cb, cl, 0, NULL);
        const char *id = json_string_value(json_object_get(c, "state"));
        snprintf(rs->state_id, sizeof(rs->state_id), "%s", id ? id : "");
        json_t *ps = json_object_get(c, "parents");
        size_t i;
        json_t *p;
        size_t need = 1;
        json_array_foreach(ps, i, p) need += strlen(json_string_value(p) ? json_string_value(p) : "") + 1;
        rs->parents = calloc(1, need);
        if (!rs->parents)
            r = cairn__err(err, -ENOMEM, "out of memory");
        json_array_foreach(ps, i, p)
        {
            if (!rs->parents || !json_string_value(p))
                continue;
            if (rs->parents[0])
                strcat(rs->parents, ",");
            strcat(rs->parents, json_string_value(p));
        }
        json_decref(c);
    }
    if (r < 0)
        rstate_clear(rs);
    return r;
}

typedef struct member {
    char tag[128];
    char digest[CAIRN_DIGEST_LEN + 1];
    int64_t mtime;
} member;

typedef struct memberv {
    member *v;
    size_t n, cap;
} memberv;

static int member_add(void *ud, const char *tag, const char *digest, int64_t mtime)
{
    memberv *mv = ud;
    if (mv->n == mv->cap) {
        size_t cap = mv->cap ? mv->cap * 2 : 16;
        member *nv = realloc(mv->v, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        mv->v = nv;
        mv->cap = cap;
    }
    member *m = &mv->v[mv->n++];
    snprintf(m->tag, sizeof(m->tag), "%s", tag);
    snprintf(m->digest, sizeof(m->digest), "%s", digest);
    m->mtime = mtime;
    return 0;
}

static int member_cmp(const void *a, const void *b)
{
    const member *x = a, *y = b;
    int c = strcmp(x->tag, y->tag);
    if (c)
        return c;
    if (x->mtime != y->mtime)
        return x->mtime < y->mtime ? -1 : 1;
    return strcmp(x->digest, y->digest);
}

/* A tag starting with '_' holds records of a pool (lib/pool/: its
 * descriptor, leases, usage), not states: listed by tag only, never among
 * every tag's states. */
static int member_add_state(void *ud, const char *tag, const char *digest, int64_t mtime)
{
    return tag[0] == '_' ? 0 : member_add(ud, tag, digest, mtime);
}

static int members_list(session *s, const char *tag, memberv *mv, cairn_error *err)
{
    int r = s->ops->states_list(s->r, tag, tag ? member_add : member_add_state, mv, err);
    if (r == -ENOMEM)
        return cairn__err(err, r, "out of memory");
    if (r < 0)
        return r;
    if (mv->n > 1)
        qsort(mv->v, mv->n, sizeof(*mv->v), member_cmp);
    return 0;
}

/* ---- publishing -------------------------------------------------------- */

static int put_buf(session *s, const char *media_type, const void *buf, size_t len,
                   char digest[CAIRN_DIGEST_LEN + 1], cairn_error *err)
{
    cairn__sha256_buf(buf, len, digest);
    const char *d = digest;
    uint8_t have = 0;
    int r = s->ops->blobs_have(s->r, &d, 1, &have, err);
    if (r < 0 || have)
        return r;
    _cleanup_close_ int fd = memfd_create("cairn-put", MFD_CLOEXEC);
    if (fd < 0)
        return cairn__err(err, -errno, "memfd: %m");
    r = cairn__write_all(fd, buf, len);
    if (r < 0)
        return cairn__err(err, r, "memfd: %m");
    r = s->ops->blob_put(s->r, digest, fd, len, media_type, NULL, NULL, err);
    if (r == 0)
        s->stats.meta_bytes += len;
    return r;
}

static json_t *obj_desc(const obj *o)
{
    json_t *d = json_pack("{s:s, s:s, s:I}", "mediaType", o->media_type[0] ? o->media_type : MT_BLOB,
                          "digest", o->digest, "size", (json_int_t)o->size);
    if (!d)
        return NULL;
    json_t *a = o->kind == OBJ_SNAPSHOT
                    ? json_pack("{s:s, s:s, s:s, s:s}", "cairn.kind", "snapshot", "cairn.chain-id",
                                o->name, "cairn.parent", o->parent, "cairn.diff-id", o->diff_id)
                    : json_pack("{s:s}", "cairn.kind", "blob");
    json_object_set_new(d, "annotations", a);
    return d;
}

/* The config, the manifests (chunked under an index past the limit), then
 * the state itself, last. Every object of `objs` is stored already. */
static int publish(session *s, const char *tag, const char *state_id, json_t *parents,
                   const char *db_digest, uint64_t db_size, const objv *objs, char *out_digest,
                   cairn_error *err)
{
    /* No time in it: the same state pushed twice is the same member (the
     * backend's listing has the time). */
    json_t *cfg = json_pack("{s:i, s:s, s:s, s:O}", "format", CAIRN_FORMAT_VERSION, "state",
                            state_id, "tag", tag, "parents", parents);
    char *ctext = cfg ? json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(cfg);
    if (!ctext)
        return cairn__err(err, -ENOMEM, "out of memory");
    char cdigest[CAIRN_DIGEST_LEN + 1];
    size_t clen = strlen(ctext);
    int r = put_buf(s, MT_CONFIG, ctext, clen, cdigest, err);
    free(ctext);
    if (r < 0)
        return r;
    size_t per = s->o.objects_per_manifest ? s->o.objects_per_manifest : PER_MANIFEST_DEFAULT;
    size_t chunks = objs->n / per + (objs->n % per != 0);
    if (chunks == 0)
        chunks = 1;
    json_t *index = chunks > 1 ? json_array() : NULL;
    char *top = NULL;
    for (size_t c = 0; r == 0 && c < chunks; c++) {
        json_t *layers = json_array();
        if (c == 0)
            json_array_append_new(layers,
                                  json_pack("{s:s, s:s, s:I, s:{s:s}}", "mediaType", MT_DB,
                                            "digest", db_digest, "size", (json_int_t)db_size,
                                            "annotations", "cairn.kind", "db"));
        for (size_t i = c * per; i < objs->n && i < (c + 1) * per; i++)
            json_array_append_new(layers, obj_desc(&objs->v[i]));
        json_t *m = json_pack("{s:i, s:s, s:s, s:{s:s, s:s, s:I}, s:o, s:{s:s, s:s}}",
                              "schemaVersion", 2, "mediaType", CAIRN__MT_OCI_MANIFEST,
                              "artifactType", MT_ARTIFACT, "config", "mediaType", MT_CONFIG,
                              "digest", cdigest, "size", (json_int_t)clen, "layers", layers,
                              "annotations", "cairn.state", state_id, "cairn.tag", tag);
        char *text = m ? json_dumps(m, JSON_COMPACT) : NULL;
        json_decref(m);
        if (!text) {
            r = cairn__err(err, -ENOMEM, "out of memory");
            break;
        }
        if (strlen(text) > DOC_MAX) {
            free(text);
            r = cairn__err(err, -EFBIG, "remote %s: a manifest of %zu objects is over 4 MiB; "
                           "fewer objects a manifest", s->url, per);
            break;
        }
        if (!index) {
            top = text;
            break;
        }
        char md[CAIRN_DIGEST_LEN + 1];
        r = put_buf(s, CAIRN__MT_OCI_MANIFEST, text, strlen(text), md, err);
        json_array_append_new(index, json_pack("{s:s, s:s, s:I}", "mediaType",
                                               CAIRN__MT_OCI_MANIFEST, "digest", md, "size",
                                               (json_int_t)strlen(text)));
        free(text);
    }
    if (r == 0 && index) {
        json_t *ix = json_pack("{s:i, s:s, s:s, s:O, s:{s:s, s:s}}", "schemaVersion", 2,
                               "mediaType", CAIRN__MT_OCI_INDEX, "artifactType", MT_ARTIFACT,
                               "manifests", index, "annotations", "cairn.state", state_id,
                               "cairn.tag", tag);
        top = ix ? json_dumps(ix, JSON_COMPACT) : NULL;
        json_decref(ix);
        if (!top)
            r = cairn__err(err, -ENOMEM, "out of memory");
        else if (strlen(top) > DOC_MAX)
            r = cairn__err(err, -EFBIG, "remote %s: the index is over 4 MiB", s->url);
    }
    json_decref(index);
    if (r == 0) {
        char digest[CAIRN_DIGEST_LEN + 1];
        cairn__sha256_buf(top, strlen(top), digest);
        r = s->ops->state_put(s->r, tag, digest, top, strlen(top), err);
        if (r == 0) {
            s->stats.meta_bytes += strlen(top);
            if (out_digest)
                memcpy(out_digest, digest, sizeof(digest));
        }
    }
    free(top);
    return r;
}

/* Send a file (a database) unless the remote holds it. */
static int put_file(session *s, const char *path, const char *media_type,
                    char digest[CAIRN_DIGEST_LEN + 1], uint64_t *size, cairn_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn__err(err, -errno, "%s: %m", path);
    int64_t n = cairn__sha256_fd(fd, digest);
    if (n < 0)
        return cairn__err(err, (int)n, "%s: read: %m", path);
    *size = (uint64_t)n;
    const char *d = digest;
    uint8_t have = 0;
    int r = s->ops->blobs_have(s->r, &d, 1, &have, err);
    if (r < 0 || have)
        return r;
    r = s->ops->blob_put(s->r, digest, fd, (uint64_t)n, media_type, NULL, NULL, err);
    if (r == 0)
        s->stats.meta_bytes += (uint64_t)n;
    return r;
}

/* ---- the pushed database ------------------------------------------------ */

static int db_exec(sqlite3 *db, const char *sql, const char *what, cairn_error *err)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return cairn__err_db(err, db, rc, what);
    return 0;
}

/* Make the state's database (with its lowers' rows unless own) at path:
 * a backup of its own at one point in time, the lowers merged in, local
 * rows dropped, one self-contained file. */
static int build_db(session *s, const char *path, bool own, cairn_error *err)
{
    cairn_state *st = s->st;
    int r = cairn__layer_open(st, 0, err);
    if (r < 0)
        return r;
    sqlite3 *db = NULL;
    r = cairn__db_copy(st->layers[0].db, path, &db, err);
    if (r < 0)
        return cairn__err_prefix(err, r, "push %s", st->path);
    r = db_exec(db, "PRAGMA journal_mode = DELETE", "push", err);
    for (size_t i = 1; r == 0 && i < st->n_layers; i++) {
        r = cairn__layer_open(st, i, err);
        if (r < 0)
            break;
        if (!own) {
            int n = cairn__merge_db_rows(db, st->layers[i].db_path, err);
            r = n < 0 ? n : 0;
            continue;
        }
        /* own: the snapshots its own build on, from the lowers, so that the
         * state names no snapshot whose parent it lacks */
        _cleanup_free_ char *uri = cairn__db_uri(st->layers[i].db_path, true);
        if (!uri)
            return cairn__err(err, -ENOMEM, "out of memory");
        char *sql = sqlite3_mprintf("ATTACH %Q AS low", uri);
        r = db_exec(db, sql, "push: attach a lower", err);
        sqlite3_free(sql);
        if (r < 0)
            break;
        for (int changed = 1; r == 0 && changed > 0;) {
            int before = sqlite3_total_changes(db);
            r = db_exec(db,
                        "INSERT OR IGNORE INTO main.snapshots SELECT * FROM low.snapshots "
                        "WHERE chain_id IN (SELECT parent FROM main.snapshots WHERE parent IS "
                        "NOT NULL AND parent != '' AND parent NOT IN (SELECT chain_id FROM "
                        "main.snapshots))",
                        "push: ancestors", err);
            changed = sqlite3_total_changes(db) - before;
        }
        sqlite3_exec(db, "DETACH low", NULL, NULL, NULL);
    }
    if (r == 0)
        r = db_exec(db,
                    "BEGIN; DELETE FROM lease_resources; DELETE FROM leases; DELETE FROM active; "
                    "DELETE FROM meta WHERE key NOT IN ('state_id', 'created'); COMMIT;",
                    "push: drop local rows", err);
    /* A small database (a session's delta) is mostly one page a table and
     * index: in pages of 512 bytes it is a fifth of its size in 4 KiB ones,
     * and any SQLite reads it. A big one keeps its pages. */
    sqlite3_stmt *pc = NULL;
    int64_t pages = 0, page_size = 0;
    if (r == 0 && sqlite3_prepare_v2(db, "SELECT page_count * page_size, page_size FROM "
                                     "pragma_page_count, pragma_page_size", -1, &pc,
                                     NULL) == SQLITE_OK &&
        sqlite3_step(pc) == SQLITE_ROW) {
        pages = sqlite3_column_int64(pc, 0);
        page_size = sqlite3_column_int64(pc, 1);
    }
    sqlite3_finalize(pc);
    if (r == 0)
        r = db_exec(db, pages && pages <= (1 << 20) && page_size > 512
                            ? "PRAGMA page_size = 512; VACUUM;" : "VACUUM;",
                    "push: drop local rows", err);
    if (sqlite3_close(db) != SQLITE_OK && r == 0)
        r = cairn__err(err, CAIRN_E_DB, "%s: close", path);
    return r;
}

/* The objects the rows of the database at path name. */
static int db_objects(const char *path, objv *ov, cairn_error *err)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    int r = 0;
    if (rc != SQLITE_OK) {
        r = cairn__err_db(err, db, rc, path);
        sqlite3_close(db);
        return r;
    }
    static const char *const q[] = {
        "SELECT digest, size, media_type, '', '' FROM blobs ORDER BY digest",
        "SELECT chain_id, 0, '', coalesce(parent, ''), diff_id FROM snapshots ORDER BY chain_id",
    };
    for (int k = 0; r == 0 && k < 2; k++) {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(db, q[k], -1, &st, NULL);
        while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            obj *o = objv_add(ov);
            if (!o) {
                r = cairn__err(err, -ENOMEM, "out of memory");
                break;
            }
            o->kind = k == 0 ? OBJ_BLOB : OBJ_SNAPSHOT;
            snprintf(o->name, sizeof(o->name), "%s", cairn__col(st, 0));
            if (k == 0)
                snprintf(o->digest, sizeof(o->digest), "%s", o->name);
            o->size = (uint64_t)sqlite3_column_int64(st, 1);
            snprintf(o->media_type, sizeof(o->media_type), "%s", cairn__col(st, 2));
            snprintf(o->parent, sizeof(o->parent), "%s", cairn__col(st, 3));
            snprintf(o->diff_id, sizeof(o->diff_id), "%s", cairn__col(st, 4));
            rc = SQLITE_OK;
        }
        if (r == 0 && rc != SQLITE_DONE)
            r = cairn__err_db(err, db, rc, path);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return r;
}

/* ---- push -------------------------------------------------------------- */

/* The layers the remote's states carry, by chain id: an unchanged snapshot
 * is then known to be there without exporting it. */
static int known_layers(session *s, const char *const *tags, size_t n_tags, objv *known,
                        cairn_error *err)
{
    memberv mv = {0};
    int r = tags ? 0 : members_list(s, NULL, &mv, err);
    for (size_t t = 0; r == 0 && tags && t < n_tags; t++)
        r = s->ops->states_list(s->r, tags[t], member_add, &mv, err);
    for (size_t i = 0; r == 0 && i < mv.n; i++) {
        rstate rs;
        cairn_error e2 = {0};
        if (load_state(s, mv.v[i].tag, mv.v[i].digest, mv.v[i].mtime, &rs, &e2) < 0)
            continue; /* a state we cannot read teaches nothing; it is not ours to fix */
        for (size_t k = 0; r == 0 && k < rs.objs.n; k++) {
            if (rs.objs.v[k].kind != OBJ_SNAPSHOT)
                continue;
            obj *o = objv_add(known);
            if (!o)
                r = cairn__err(err, -ENOMEM, "out of memory");
            else
                *o = rs.objs.v[k];
        }
        rstate_clear(&rs);
    }
    free(mv.v);
    objv_uniq(known);
    return r;
}

/* A snapshot imported from a tar cairn cannot reproduce (an image's layer)
 * travels as that original layer blob: found through the images whose
 * layers chain to its chain id. */
typedef struct layer_find {
    cairn_state *st;
    obj *o;
    bool found;
} layer_find;

static int find_in_image(void *ud, const cairn_image_info *im)
{
    layer_find *lf = ud;
    _cleanup_free_ void *mb = NULL, *cb = NULL;
    size_t ml = 0, cl = 0;
    if (!im->manifest[0] || cairn_blob_read(lf->st, im->manifest, &mb, &ml, NULL) < 0)
        return 0;
    cairn__oci_manifest m = {0};
    if (cairn__oci_parse_manifest(mb, ml, im->manifest, &m, NULL) < 0)
        return 0;
    cairn__oci_config c = {0};
    if (cairn_blob_read(lf->st, m.config.digest, &cb, &cl, NULL) == 0 &&
        cairn__oci_parse_config(cb, cl, m.config.digest, &c, NULL) == 0 &&
        c.n_diff_ids == m.n_layers) {
        char chain[CAIRN_DIGEST_LEN + 1] = "", next[CAIRN_DIGEST_LEN + 1];
        for (size_t i = 0; i < m.n_layers && !lf->found; i++) {
            cairn__oci_chain_id(chain, c.diff_ids[i], next);
            memcpy(chain, next, sizeof(chain));
            if (strcmp(chain, lf->o->name) != 0 ||
                cairn_blob_exists(lf->st, m.layers[i].digest, NULL) != 1)
                continue;
            memcpy(lf->o->digest, m.layers[i].digest, sizeof(lf->o->digest));
            memcpy(lf->o->media_type, m.layers[i].media_type, sizeof(lf->o->media_type));
            lf->o->size = (uint64_t)m.layers[i].size;
            lf->found = true;
        }
    }
    cairn__oci_config_clear(&c);
    cairn__oci_manifest_clear(&m);
    return lf->found ? 1 : 0;
}

static int original_layer(session *s, obj *o, cairn_error *err)
{
    layer_find lf = {s->st, o, false};
    int r = cairn_image_list(s->st, find_in_image, &lf, err);
    if (r < 0)
        return r;
    if (!lf.found)
        return cairn__err(err, CAIRN_E_FORMAT,
                          "remote %s: snapshot %s was imported from a layer tar not in canonical "
                          "form, and no image of the state names its original layer; it cannot "
                          "be pushed", s->url, o->name);
    return 0;
}

/* A sent object (the pool's done): its fd closed, its scratch file gone. */
static void push_done(void *ud, cairn__xjob *j)
{
    session *s = ud;
    if (j->fd >= 0)
        close(j->fd);
    if (j->ud)
        unlink(j->ud);
    free(j->ud);
    if (j->r == 0) {
        s->stats.objects_moved++;
        s->stats.bytes_moved += j->size;
    }
    free(j);
}

/* A registry takes a manifest only once what it names is stored, and an
 * index once its manifests are: blobs typed so are sent after the rest, in
 * that order, a barrier between (S3 and file do not mind). */
static int push_pass(const obj *o)
{
    if (o->kind != OBJ_BLOB)
        return 0;
    if (strstr(o->media_type, "image.index") || strstr(o->media_type, "manifest.list"))
        return 2;
    return strstr(o->media_type, "manifest") ? 1 : 0;
}

/* One missing object handed to the pool (made when first needed): a blob
 * opened, a snapshot's layer exported (or its original layer found), each
 * digest once a push (a layer may be a blob of the state as well). */
static int push_one(session *s, cairn_state *st, obj *o, size_t nmissing, cairn__strset *sent,
                    cairn__xpool **xp, cairn_error *err)
{
    _cleanup_close_ int fd = -1;
    char path[REMOTE_PATH_MAX] = "";
    bool verify = false;
    int r;
    if (o->kind == OBJ_BLOB) {
        r = cairn_blob_open(st, o->digest, 0, &fd, err);
        if (r < 0)
            return r;
        verify = true;
    } else {
        r = scratch_file(s, "layer", path, sizeof(path), &fd);
        if (r < 0)
            return cairn__err(err, r, "%s: %m", path);
        uint64_t size = 0;
        cairn_error e2 = {0};
        r = cairn_layer_export(st, o->name, fd, s->o.compression, o->digest, &size, &e2);
        if (r == CAIRN_E_FORMAT) {
            /* its original layer, a blob of the state */
            close(fd);
            fd = -1;
            unlink(path);
            path[0] = 0;
            r = original_layer(s, o, err);
            if (r == 0)
                r = cairn_blob_open(st, o->digest, 0, &fd, err);
            verify = true;
            size = o->size;
        } else if (r < 0 && err) {
            *err = e2;
        } else if (r == 0) {
            snprintf(o->media_type, sizeof(o->media_type), "%s",
                     s->o.compression == CAIRN_COMPRESSION_ZSTD   ? CAIRN__MT_OCI_LAYER_ZST
                     : s->o.compression == CAIRN_COMPRESSION_GZIP ? CAIRN__MT_OCI_LAYER_GZ
                                                                  : CAIRN__MT_OCI_LAYER);
        }
        if (r < 0) {
            if (path[0])
                unlink(path);
            return r;
        }
        o->size = size;
        const char *d = o->digest;
        uint8_t h = 0;
        r = s->ops->blobs_have(s->r, &d, 1, &h, err);
        if (r < 0 || h) { /* h: another state carried this very layer */
            if (h) {
                s->stats.objects_skipped++;
                s->stats.bytes_skipped += o->size;
            }
            if (path[0])
                unlink(path);
            return r < 0 ? r : 0;
        }
        s->total += size;
    }
    r = cairn__strset_add(sent, o->digest);
    if (r <= 0) { /* 0: sent already (or in flight) in this push */
        if (path[0])
            unlink(path);
        if (r < 0)
            return cairn__err(err, -ENOMEM, "out of memory");
        s->stats.objects_skipped++;
        s->stats.bytes_skipped += o->size;
        s->total -= o->size;
        return 0;
    }
    cairn__xjob *j = calloc(1, sizeof(*j));
    if (!j || (path[0] && !(j->ud = strdup(path)))) {
        free(j);
        if (path[0])
            unlink(path);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    j->put = true;
    j->verify = verify;
    memcpy(j->digest, o->digest, sizeof(j->digest));
    memcpy(j->media_type, o->media_type, sizeof(j->media_type));
    j->size = o->size;
    j->fd = fd;
    fd = -1;
    if (!*xp) {
        cairn__remote_conf conf = session_conf(s);
        r = cairn__xpool_new(xp, s->ops, &conf, session_workers(s, nmissing), push_done,
                             xpool_tick, s, err);
        if (r < 0) {
            j->r = r;
            push_done(s, j);
            return r;
        }
    }
    return cairn__xpool_submit(*xp, j, err);
}

int cairn_remote_push(cairn_state *st, const char *remote, const char *tag,
                      const cairn_remote_options *opts, cairn_remote_stats *stats,
                      char *out_digest, cairn_error *err)
{
    return cairn__remote_push_known(st, remote, tag, NULL, 0, opts, stats, out_digest, err);
}

int cairn__remote_push_known(cairn_state *st, const char *remote, const char *tag,
                             const char *const *known_tags, size_t n_known,
                             const cairn_remote_options *opts, cairn_remote_stats *stats,
                             char *out_digest, cairn_error *err)
{
    if (!st || !tag || !*tag)
        return cairn__err(err, -EINVAL, "push: a state and a tag are needed");
    session s;
    int r = session_open(&s, st, remote, opts, err);
    if (r < 0) {
        session_close(&s);
        return r;
    }
    bool locked = cairn__lock(st, false, NULL) == 0; /* gc of the state waits */
    objv objs = {0}, known = {0};
    char dbpath[REMOTE_PATH_MAX];
    int dbfd = -1;
    r = scratch_file(&s, "db", dbpath, sizeof(dbpath), &dbfd);
    if (r < 0)
        r = cairn__err(err, r, "%s: %m", dbpath);
    if (dbfd >= 0)
        close(dbfd);
    if (r == 0)
        unlink(dbpath);
    /* 1-2 */
    if (r == 0)
        r = build_db(&s, dbpath, s.o.own, err);
    if (r == 0)
        r = db_objects(dbpath, &objs, err);
    bool any_snap = false;
    for (size_t i = 0; i < objs.n; i++)
        any_snap |= objs.v[i].kind == OBJ_SNAPSHOT;
    if (r == 0 && any_snap)
        r = known_layers(&s, known_tags, n_known, &known, err);
    /* 3. one batch: blobs by digest, snapshots by the layer they had */
    const char **digests = calloc(objs.n + 1, sizeof(*digests));
    size_t *which = calloc(objs.n + 1, sizeof(*which));
    uint8_t *found = calloc(objs.n + 1, 1), *have = calloc(objs.n + 1, 1);
    if (r == 0 && (!digests || !which || !found || !have))
        r = cairn__err(err, -ENOMEM, "out of memory");
    size_t nd = 0;
    for (size_t i = 0; r == 0 && i < objs.n; i++) {
        obj *o = &objs.v[i];
        obj *k = o->kind == OBJ_SNAPSHOT ? objv_find(&known, OBJ_SNAPSHOT, o->name) : NULL;
        if (k) {
            memcpy(o->digest, k->digest, sizeof(o->digest));
            memcpy(o->media_type, k->media_type, sizeof(o->media_type));
            o->size = k->size;
        }
        if (o->digest[0]) {
            digests[nd] = o->digest;
            which[nd++] = i;
        }
    }
    s.stats.objects = objs.n;
    if (r == 0 && nd)
        r = s.ops->blobs_have(s.r, digests, nd, found, err);
    for (size_t j = 0; r == 0 && j < nd; j++)
        have[which[j]] = found[j];
    free(which);
    free(found);
    for (size_t i = 0; r == 0 && i < objs.n; i++)
        if (!have[i])
            s.total += objs.v[i].size;
    /* 4. the missing, JOBS at a time: this thread opens each blob (and
     * exports each layer), the pool's workers hash and send them; blobs
     * typed as manifests, then as indexes, after the rest (push_pass) */
    size_t nmissing = 0;
    for (size_t i = 0; i < objs.n; i++)
        nmissing += !have[i];
    cairn__xpool *xp = NULL;
    cairn__strset *sent = cairn__strset_new();
    if (!sent)
        r = cairn__err(err, -ENOMEM, "out of memory");
    s.xbase = s.done;
    for (size_t i = 0; r == 0 && i < objs.n; i++)
        if (have[i]) {
            s.stats.objects_skipped++;
            s.stats.bytes_skipped += objs.v[i].size;
        }
    for (int pass = 0; r == 0 && pass < 3; pass++) {
        if (pass && xp)
            r = cairn__xpool_wait_all(xp, err);
        for (size_t i = 0; r == 0 && i < objs.n; i++) {
            obj *o = &objs.v[i];
            if (have[i] || push_pass(o) != pass)
                continue;
            r = push_one(&s, st, o, nmissing, sent, &xp, err);
        }
    }
    if (xp) {
        if (r < 0)
            cairn__xpool_cancel(xp);
        int e = cairn__xpool_finish(xp, r < 0 ? NULL : err);
        if (r == 0)
            r = e;
        cairn__xpool_free(xp);
    }
    cairn__strset_free(sent);
    free(digests);
    free(have);
    if (locked)
        cairn__unlock(st);
    /* 5-7 */
    char dbd[CAIRN_DIGEST_LEN + 1];
    uint64_t dbsize = 0;
    if (r == 0)
        r = put_file(&s, dbpath, MT_DB, dbd, &dbsize, err);
    if (r == 0) {
        json_t *parents = json_array();
        for (size_t i = 1; parents && i < st->n_layers && !s.o.own; i++)
            json_array_append_new(parents, json_string(st->layers[i].id));
        r = parents ? publish(&s, tag, st->id, parents, dbd, dbsize, &objs, out_digest, err)
                    : cairn__err(err, -ENOMEM, "out of memory");
        json_decref(parents);
    }
    if (r == 0) {
        s.stats.states = 1;
        if (stats)
            *stats = s.stats;
    }
    free(objs.v);
    free(known.v);
    session_close(&s);
    return r;
}

/* ---- pull -------------------------------------------------------------- */

typedef struct pull_problems {
    cairn_state *st;
    uint64_t lacking; /* rows naming an object neither side has */
    char first[512];
} pull_problems;

static void pull_problem(void *ud, const cairn_merge_problem *p)
{
    pull_problems *pp = ud;
    /* A row of an object a lower of the state holds stays in that lower. */
    if (!strcmp(p->problem, "missing")) {
        if (!strcmp(p->kind, "blob") && cairn_blob_exists(pp->st, p->name, NULL) == 1)
            return;
        cairn_snapshot_info si;
        if (!strcmp(p->kind, "snapshot") && cairn_snapshot_stat(pp->st, p->name, &si, NULL) == 0)
            return;
    }
    if (!pp->lacking++)
        snprintf(pp->first, sizeof(pp->first), "%s %s: %s", p->kind, p->name, p->detail);
}

/* Parents first: a snapshot's depth among the snapshots pulled. */
static int depth_cmp(const void *a, const void *b)
{
    const obj *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind - y->kind;
    if (x->depth != y->depth)
        return x->depth < y->depth ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void snapshot_depths(objv *ov)
{
    for (size_t pass = 0; pass < ov->n; pass++) {
        bool changed = false;
        for (size_t i = 0; i < ov->n; i++) {
            obj *o = &ov->v[i];
            if (o->kind != OBJ_SNAPSHOT || !o->parent[0])
                continue;
            obj *p = objv_find(ov, OBJ_SNAPSHOT, o->parent);
            if (p && p->depth + 1 > o->depth && p->depth < ov->n) {
                o->depth = p->depth + 1;
                changed = true;
            }
        }
        if (!changed)
            break;
    }
}

/* Blobs fetched JOBS at a time by the pool's workers (each hashed there
 * against its name), taken into one batch by this thread as they come. */
typedef struct pull_ctx {
    session *s;
    cairn_blob_batch *b;
    int r;
    cairn_error *err;
} pull_ctx;

static void pull_done(void *ud, cairn__xjob *j)
{
    pull_ctx *c = ud;
    if (j->r == 0 && c->r == 0) {
        /* verified in its thread: the file itself goes into the batch (the
         * scratch is under the state's tmp/), copied only across filesystems */
        const char *mt = strcmp(j->media_type, MT_BLOB) ? j->media_type : NULL;
        c->r = cairn__blob_batch_adopt(c->b, AT_FDCWD, j->ud, j->fd, j->digest, j->size, mt,
                                       c->err);
        if (c->r == -EXDEV) {
            cairn_blob_put_options po = CAIRN_BLOB_PUT_OPTIONS_INIT;
            po.expected = j->digest;
            po.expected_size = (int64_t)j->size;
            po.media_type = mt;
            c->r = cairn_blob_batch_put_fd(c->b, j->fd, &po, NULL, c->err);
        }
        if (c->r == 0) {
            c->s->stats.objects_moved++;
            c->s->stats.bytes_moved += j->size;
        }
    }
    close(j->fd);
    unlink(j->ud);
    free(j->ud);
    free(j);
}

static void pull_tick(void *ud, uint64_t bytes)
{
    xpool_tick(((pull_ctx *)ud)->s, bytes);
}

static int pull_blobs(session *s, const objv *ov, cairn_error *err)
{
    pull_ctx c = {s, NULL, 0, err};
    cairn__xpool *xp = NULL;
    int r = 0;
    size_t nblobs = 0;
    for (size_t i = 0; i < ov->n; i++)
        nblobs += ov->v[i].kind == OBJ_BLOB;
    s->xbase = s->done;
    for (size_t i = 0; r == 0 && i < ov->n; i++) {
        const obj *o = &ov->v[i];
        if (o->kind != OBJ_BLOB)
            continue;
        if (cairn_digest_check(o->digest, NULL) < 0) {
            r = cairn__err(err, CAIRN_E_FORMAT, "remote %s: a blob named '%s'", s->url,
                           o->digest);
            break;
        }
        int have = cairn_blob_exists(s->st, o->digest, err);
        if (have < 0) {
            r = have;
            break;
        }
        if (have) {
            s->stats.objects_skipped++;
            s->stats.bytes_skipped += o->size;
            s->xbase += o->size;
            continue;
        }
        if (!c.b && (r = cairn_blob_batch_new(&c.b, s->st, err)) < 0)
            break;
        char path[REMOTE_PATH_MAX];
        int fd;
        r = scratch_file(s, "blob", path, sizeof(path), &fd);
        if (r < 0) {
            r = cairn__err(err, r, "%s: %m", path);
            break;
        }
        cairn__xjob *j = calloc(1, sizeof(*j));
        if (!j || !(j->ud = strdup(path))) {
            free(j);
            close(fd);
            unlink(path);
            r = cairn__err(err, -ENOMEM, "out of memory");
            break;
        }
        memcpy(j->digest, o->digest, sizeof(j->digest));
        memcpy(j->media_type, o->media_type, sizeof(j->media_type));
        j->size = o->size;
        j->fd = fd;
        if (!xp) {
            cairn__remote_conf conf = session_conf(s);
            r = cairn__xpool_new(&xp, s->ops, &conf, session_workers(s, nblobs), pull_done,
                                 pull_tick, &c, err);
            if (r < 0) {
                j->r = r;
                pull_done(&c, j);
                break;
            }
        }
        r = cairn__xpool_submit(xp, j, c.r < 0 ? NULL : err);
        if (r == 0)
            r = c.r;
    }
    if (xp) {
        if (r < 0 || c.r < 0)
            cairn__xpool_cancel(xp); /* this side failed: fetch no more */
        int e = cairn__xpool_finish(xp, r < 0 || c.r < 0 ? NULL : err);
        if (r == 0)
            r = e;
        cairn__xpool_free(xp);
    } else {
        s->done = s->xbase; /* all here already */
        progress(s);
    }
    if (r == 0)
        r = c.r;
    if (r == 0 && c.b)
        r = cairn_blob_batch_commit(c.b, err);
    cairn_blob_batch_free(c.b);
    return r < 0 ? r : 0;
}

static int pull_snapshots(session *s, objv *ov, cairn_error *err)
{
    snapshot_depths(ov);
    if (ov->n > 1)
        qsort(ov->v, ov->n, sizeof(*ov->v), depth_cmp);
    int r = 0;
    for (size_t i = 0; r == 0 && i < ov->n; i++) {
        obj *o = &ov->v[i];
        if (o->kind != OBJ_SNAPSHOT)
            continue;
        cairn_snapshot_info si;
        if (cairn_snapshot_stat(s->st, o->name, &si, NULL) == 0) {
            s->stats.objects_skipped++;
            s->stats.bytes_skipped += o->size;
            continue;
        }
        if (o->parent[0] && cairn_snapshot_stat(s->st, o->parent, &si, NULL) < 0)
            return cairn__err(err, -ENOENT, "remote %s: snapshot %s: its parent %s is neither "
                              "in the state nor in what was pulled", s->url, o->name, o->parent);
        char path[REMOTE_PATH_MAX] = "";
        int fd = -1;
        if (cairn_blob_exists(s->st, o->digest, NULL) == 1) {
            /* the layer is a blob here (an image's): read, and checked, locally */
            r = cairn_blob_open(s->st, o->digest, 1, &fd, err);
        } else {
            r = scratch_file(s, "layer", path, sizeof(path), &fd);
            if (r < 0)
                return cairn__err(err, r, "%s: %m", path);
            r = fetch_verified(s, o->digest, (int64_t)o->size, fd, err);
        }
        if (r == 0) {
            cairn_layer_import_options io = CAIRN_LAYER_IMPORT_OPTIONS_INIT;
            io.expected_diff_id = o->diff_id;
            char chain[CAIRN_DIGEST_LEN + 1];
            r = cairn_layer_import(s->st, o->parent[0] ? o->parent : NULL, fd, &io, chain, NULL,
                                   err);
            if (r < 0)
                cairn__err_prefix(err, r, "remote %s: snapshot %s", s->url, o->name);
            else if (strcmp(chain, o->name) != 0)
                r = cairn__err(err, CAIRN_E_MISMATCH, "remote %s: snapshot %s: its layer makes "
                               "%s", s->url, o->name, chain);
        }
        if (fd >= 0)
            close(fd);
        if (path[0])
            unlink(path);
        s->done += o->size;
        progress(s);
        if (r == 0 && path[0]) {
            s->stats.objects_moved++;
            s->stats.bytes_moved += o->size;
        } else if (r == 0) {
            s->stats.objects_skipped++;
            s->stats.bytes_skipped += o->size;
        }
    }
    return r;
}

/* A member's database as a frozen state of its own under the scratch
 * directory (a fresh id: never the id of a state of this machine). */
static int member_state(session *s, const char *dbfile, char *dir, size_t size,
                        cairn_error *err)
{
    snprintf(dir, size, "%s/state-%u", s->scratch, s->seq++);
    char id[CAIRN_STATE_ID_LEN + 1];
    int r = cairn__random_id(id);
    if (r < 0)
        return cairn__err(err, r, "random id: %m");
    static const char *const layout[] = {"db", "blobs", "blobs/sha256", "snapshots", "tmp"};
    if (mkdir(dir, 0700) < 0)
        return cairn__err(err, -errno, "%s: %m", dir);
    _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return cairn__err(err, -errno, "%s: %m", dir);
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(layout); i++)
        if ((r = cairn__mkdir_at(dfd, layout[i], 0755)) < 0)
            return cairn__err(err, r, "%s/%s: %m", dir, layout[i]);
    char name[64];
    snprintf(name, sizeof(name), "db/%s.sqlite", id);
    if (renameat(AT_FDCWD, dbfile, dfd, name) < 0)
        return cairn__err(err, -errno, "%s: %m", dbfile);
    return cairn__identity_new(dfd, dir, id, true, err);
}

static int pull_members(cairn_state *st, const char *remote, const char *tag,
                        const char *only, const cairn_remote_options *opts,
                        cairn_remote_stats *stats, cairn_error *err);

int cairn_remote_pull(cairn_state *st, const char *remote, const char *tag,
                      const cairn_remote_options *opts, cairn_remote_stats *stats,
                      cairn_error *err)
{
    return pull_members(st, remote, tag, NULL, opts, stats, err);
}

int cairn__remote_pull_member(cairn_state *st, const char *remote, const char *tag,
                              const char *digest, const cairn_remote_options *opts,
                              cairn_remote_stats *stats, cairn_error *err)
{
    return pull_members(st, remote, tag, digest, opts, stats, err);
}

/* Pull the members of tag, or only the member `only` (a manifest digest). */
static int pull_members(cairn_state *st, const char *remote, const char *tag,
                        const char *only, const cairn_remote_options *opts,
                        cairn_remote_stats *stats, cairn_error *err)
{
    if (!st || !tag || !*tag)
        return cairn__err(err, -EINVAL, "pull: a state and a tag are needed");
    int r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    session s;
    r = session_open(&s, st, remote, opts, err);
    memberv mv = {0};
    rstate *rs = NULL;
    objv all = {0};
    cairn__strv dirs = {0};
    if (r == 0)
        r = members_list(&s, tag, &mv, err);
    if (r == 0 && only) {
        size_t w = 0;
        for (size_t i = 0; i < mv.n; i++)
            if (!strcmp(mv.v[i].digest, only))
                mv.v[w++] = mv.v[i];
        mv.n = w;
        if (w == 0)
            r = cairn__err(err, -ENOENT, "remote %s: no state %s under tag %s", s.url, only, tag);
    }
    if (r == 0 && mv.n == 0)
        r = cairn__err(err, -ENOENT, "remote %s: no state under tag %s", s.url, tag);
    if (r == 0 && !(rs = calloc(mv.n, sizeof(*rs))))
        r = cairn__err(err, -ENOMEM, "out of memory");
    /* 1 */
    for (size_t i = 0; r == 0 && i < mv.n; i++) {
        r = load_state(&s, mv.v[i].tag, mv.v[i].digest, mv.v[i].mtime, &rs[i], err);
        char path[REMOTE_PATH_MAX];
        int fd = -1;
        if (r == 0)
            r = scratch_file(&s, "db", path, sizeof(path), &fd);
        if (r == 0)
            r = fetch_verified(&s, rs[i].db, rs[i].db_size, fd, err);
        if (fd >= 0)
            close(fd);
        s.stats.meta_bytes += (uint64_t)rs[i].db_size;
        char dir[REMOTE_PATH_MAX];
        if (r == 0)
            r = member_state(&s, path, dir, sizeof(dir), err);
        if (r == 0 && cairn__strv_push(&dirs, dir) < 0)
            r = cairn__err(err, -ENOMEM, "out of memory");
        for (size_t k = 0; r == 0 && k < rs[i].objs.n; k++) {
            obj *o = objv_add(&all);
            if (!o)
                r = cairn__err(err, -ENOMEM, "out of memory");
            else
                *o = rs[i].objs.v[k];
        }
    }
    /* 2-4 */
    objv_uniq(&all);
    s.stats.objects = all.n;
    for (size_t i = 0; i < all.n; i++)
        s.total += all.v[i].size;
    if (r == 0)
        r = pull_blobs(&s, &all, err);
    if (r == 0)
        r = pull_snapshots(&s, &all, err);
    /* 5 */
    if (r == 0) {
        pull_problems pp = {.st = st};
        cairn_merge_options mo = CAIRN_MERGE_OPTIONS_INIT;
        mo.problem = pull_problem;
        mo.problem_userdata = &pp;
        cairn_merge_stats ms = {0};
        r = cairn_merge(st->path, (const char *const *)dirs.v, dirs.n, &mo, &ms, err);
        if (r < 0)
            cairn__err_prefix(err, r, "remote %s: merge the rows of %s", s.url, tag);
        s.stats.rows = ms.rows;
        if (r == 0 && pp.lacking)
            r = cairn__err(err, CAIRN_E_CORRUPT, "remote %s: %llu rows of %s name objects its "
                           "states do not carry; left out (first: %s)", s.url,
                           (unsigned long long)pp.lacking, tag, pp.first);
    }
    if (r == 0) {
        s.stats.states = mv.n;
        if (stats)
            *stats = s.stats;
    }
    for (size_t i = 0; rs && i < mv.n; i++)
        rstate_clear(&rs[i]);
    free(rs);
    free(mv.v);
    free(all.v);
    cairn__strv_free(&dirs);
    session_close(&s);
    return r;
}

/* ---- states ------------------------------------------------------------ */

int cairn_remote_states(cairn_state *st, const char *remote, const char *tag,
                        const cairn_remote_options *opts, cairn_remote_state_fn fn, void *ud,
                        cairn_error *err)
{
    session s;
    int r = session_open(&s, st, remote, opts, err);
    memberv mv = {0};
    if (r == 0)
        r = members_list(&s, tag, &mv, err);
    for (size_t i = 0; r == 0 && i < mv.n; i++) {
        rstate rs;
        r = load_state(&s, mv.v[i].tag, mv.v[i].digest, mv.v[i].mtime, &rs, err);
        if (r < 0)
            break;
        uint64_t bytes = (uint64_t)rs.db_size + rs.doc_bytes;
        for (size_t k = 0; k < rs.objs.n; k++)
            bytes += rs.objs.v[k].size;
        cairn_remote_state e = {rs.tag,        rs.digest, rs.state_id,
                                rs.mtime / 1000000000, rs.objs.n, bytes,
                                rs.chunks.n ? (unsigned)rs.chunks.n : 1,
                                rs.parents ? rs.parents : ""};
        r = fn(ud, &e);
        rstate_clear(&rs);
    }
    free(mv.v);
    session_close(&s);
    return r;
}

/* ---- compact ----------------------------------------------------------- */

static int copy_file(const char *from, const char *to)
{
    _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
    _cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (in < 0 || out < 0)
        return -errno;
    char buf[1 << 16];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        int r = cairn__write_all(out, buf, (size_t)n);
        if (r < 0)
            return r;
    }
    return n < 0 ? -errno : 0;
}

/* Fold the members of tag (only those of only[0..n_only) when only is not
 * NULL: one gone since is passed by) into one; the folded ones taken out
 * when `retire`, else left for the caller to retire later (the pool, after
 * a grace period). */
static int compact_members(cairn_state *st, const char *remote, const char *tag,
                           const char *const *only, size_t n_only, bool retire,
                           const cairn_remote_options *opts, cairn_remote_stats *stats,
                           char *out_digest, cairn_error *err);

int cairn_remote_compact(cairn_state *st, const char *remote, const char *tag,
                         const cairn_remote_options *opts, cairn_remote_stats *stats,
                         char *out_digest, cairn_error *err)
{
    return compact_members(st, remote, tag, NULL, 0, true, opts, stats, out_digest, err);
}

int cairn__remote_compact_members(const char *remote, const char *tag,
                                  const char *const *digests, size_t n,
                                  const cairn_remote_options *opts, cairn_remote_stats *stats,
                                  char *out_digest, cairn_error *err)
{
    return compact_members(NULL, remote, tag, digests, n, false, opts, stats, out_digest, err);
}

static int compact_members(cairn_state *st, const char *remote, const char *tag,
                           const char *const *only, size_t n_only, bool retire,
                           const cairn_remote_options *opts, cairn_remote_stats *stats,
                           char *out_digest, cairn_error *err)
{
    if (!tag || !*tag)
        return cairn__err(err, -EINVAL, "compact: a tag is needed");
    session s;
    int r = session_open(&s, st, remote, opts, err);
    memberv mv = {0};
    rstate *rs = NULL;
    objv all = {0};
    char merged[REMOTE_PATH_MAX] = "";
    char id[CAIRN_STATE_ID_LEN + 1];
    if (r == 0)
        r = members_list(&s, tag, &mv, err);
    if (r == 0 && only) {
        size_t w = 0;
        for (size_t i = 0; i < mv.n; i++)
            for (size_t k = 0; k < n_only; k++)
                if (!strcmp(mv.v[i].digest, only[k])) {
                    mv.v[w++] = mv.v[i];
                    break;
                }
        mv.n = w;
    }
    if (r == 0 && mv.n < 2) { /* nothing to fold */
        if (mv.n == 1 && out_digest)
            memcpy(out_digest, mv.v[0].digest, CAIRN_DIGEST_LEN + 1);
        s.stats.states = 0;
        if (stats)
            *stats = s.stats;
        free(mv.v);
        session_close(&s);
        return 0;
    }
    if (r == 0 && !(rs = calloc(mv.n, sizeof(*rs))))
        r = cairn__err(err, -ENOMEM, "out of memory");
    if (r == 0 && (r = cairn__random_id(id)) < 0)
        cairn__err(err, r, "random id: %m");
    sqlite3 *db = NULL;
    /* the databases, merged by the rules of every table */
    for (size_t i = 0; r == 0 && i < mv.n; i++) {
        r = load_state(&s, mv.v[i].tag, mv.v[i].digest, mv.v[i].mtime, &rs[i], err);
        char path[REMOTE_PATH_MAX];
        int fd = -1;
        if (r == 0)
            r = scratch_file(&s, "db", path, sizeof(path), &fd);
        if (r == 0)
            r = fetch_verified(&s, rs[i].db, rs[i].db_size, fd, err);
        if (fd >= 0)
            close(fd);
        s.stats.meta_bytes += (uint64_t)rs[i].db_size;
        if (r == 0 && i == 0) {
            snprintf(merged, sizeof(merged), "%s/merged.sqlite", s.scratch);
            r = copy_file(path, merged);
            if (r < 0)
                r = cairn__err(err, r, "%s: %m", merged);
            int rc = r == 0 ? sqlite3_open_v2(merged, &db, SQLITE_OPEN_READWRITE, NULL) : SQLITE_OK;
            if (rc != SQLITE_OK)
                r = cairn__err_db(err, db, rc, merged);
        } else if (r == 0) {
            int n = cairn__merge_db_rows(db, path, err);
            r = n < 0 ? n : 0;
        }
        for (size_t k = 0; r == 0 && k < rs[i].objs.n; k++) {
            obj *o = objv_add(&all);
            if (!o)
                r = cairn__err(err, -ENOMEM, "out of memory");
            else
                *o = rs[i].objs.v[k];
        }
    }
    if (r == 0) {
        char *sql = sqlite3_mprintf("UPDATE meta SET value = %Q WHERE key = 'state_id'; VACUUM;",
                                    id);
        r = sql ? db_exec(db, sql, "compact", err) : cairn__err(err, -ENOMEM, "out of memory");
        sqlite3_free(sql);
    }
    if (db && sqlite3_close(db) != SQLITE_OK && r == 0)
        r = cairn__err(err, CAIRN_E_DB, "%s: close", merged);
    objv_uniq(&all);
    s.stats.objects = all.n;
    /* never publish a state naming an object the remote lacks */
    const char **dv = calloc(all.n + 1, sizeof(*dv));
    uint8_t *hv = calloc(all.n + 1, 1);
    if (r == 0 && (!dv || !hv))
        r = cairn__err(err, -ENOMEM, "out of memory");
    for (size_t i = 0; r == 0 && i < all.n; i++)
        dv[i] = all.v[i].digest;
    if (r == 0 && all.n)
        r = s.ops->blobs_have(s.r, dv, all.n, hv, err);
    for (size_t i = 0; r == 0 && i < all.n; i++)
        if (!hv[i])
            r = cairn__err(err, CAIRN_E_CORRUPT, "remote %s: %s names %s, which the remote does "
                           "not hold; nothing compacted", s.url, tag, all.v[i].digest);
    free(dv);
    free(hv);
    char dbd[CAIRN_DIGEST_LEN + 1], digest[CAIRN_DIGEST_LEN + 1];
    uint64_t dbsize = 0;
    if (r == 0)
        r = put_file(&s, merged, MT_DB, dbd, &dbsize, err);
    if (r == 0) {
        json_t *parents = json_array();
        for (size_t i = 0; parents && i < mv.n; i++)
            json_array_append_new(parents, json_string(mv.v[i].digest));
        r = parents ? publish(&s, tag, id, parents, dbd, dbsize, &all, digest, err)
                    : cairn__err(err, -ENOMEM, "out of memory");
        json_decref(parents);
    }
    /* the new member is there: the old ones go */
    for (size_t i = 0; r == 0 && retire && i < mv.n; i++)
        if (strcmp(mv.v[i].digest, digest) != 0)
            r = s.ops->state_delete(s.r, tag, mv.v[i].digest, err);
    if (r == 0) {
        s.stats.states = mv.n;
        if (stats)
            *stats = s.stats;
        if (out_digest)
            memcpy(out_digest, digest, sizeof(digest));
    }
    for (size_t i = 0; rs && i < mv.n; i++)
        rstate_clear(&rs[i]);
    free(rs);
    free(mv.v);
    free(all.v);
    session_close(&s);
    return r;
}

/* ---- gc ---------------------------------------------------------------- */

typedef struct rblob {
    char digest[CAIRN_DIGEST_LEN + 1];
    uint64_t size;
    int64_t mtime;
} rblob;

typedef struct rblobv {
    rblob *v;
    size_t n, cap;
} rblobv;

static int rblob_add(void *ud, const char *digest, uint64_t size, int64_t mtime)
{
    rblobv *bv = ud;
    if (bv->n == bv->cap) {
        size_t cap = bv->cap ? bv->cap * 2 : 256;
        rblob *nv = realloc(bv->v, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        bv->v = nv;
        bv->cap = cap;
    }
    rblob *b = &bv->v[bv->n++];
    snprintf(b->digest, sizeof(b->digest), "%s", digest);
    b->size = size;
    b->mtime = mtime;
    return 0;
}

static int mark_state(cairn__strset *live, const rstate *rs)
{
    int r = 0;
    r |= cairn__strset_add(live, rs->digest) < 0;
    r |= cairn__strset_add(live, rs->config) < 0;
    r |= cairn__strset_add(live, rs->db) < 0;
    for (size_t i = 0; i < rs->chunks.n; i++)
        r |= cairn__strset_add(live, rs->chunks.v[i]) < 0;
    for (size_t i = 0; i < rs->objs.n; i++)
        r |= cairn__strset_add(live, rs->objs.v[i].digest) < 0;
    return r ? -ENOMEM : 0;
}

static int record_add(void *ud, const char *tag, const char *digest, int64_t mtime)
{
    return tag[0] == '_' ? member_add(ud, tag, digest, mtime) : 0;
}

/* The records of a pool (tags starting with '_') are not states; what their
 * manifests name (a config, layers) stays as long as they do. */
static int mark_records(session *s, cairn__strset *live, cairn_error *err)
{
    memberv mv = {0};
    int r = s->ops->states_list(s->r, NULL, record_add, &mv, err);
    if (r == -ENOMEM)
        r = cairn__err(err, r, "out of memory");
    for (size_t i = 0; r == 0 && i < mv.n; i++) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        r = s->ops->state_get(s->r, mv.v[i].tag, mv.v[i].digest, &buf, &len, err);
        if (r == -ENOENT) { /* taken out since the listing */
            r = 0;
            continue;
        }
        if (r < 0)
            break;
        json_t *m = json_loadb(buf, len, 0, NULL);
        r |= cairn__strset_add(live, mv.v[i].digest) < 0;
        const char *cd = json_string_value(json_object_get(json_object_get(m, "config"), "digest"));
        if (cd)
            r |= cairn__strset_add(live, cd) < 0;
        size_t k;
        json_t *d;
        json_array_foreach(json_object_get(m, "layers"), k, d)
        {
            const char *ld = json_string_value(json_object_get(d, "digest"));
            if (ld)
                r |= cairn__strset_add(live, ld) < 0;
        }
        json_decref(m);
        if (r)
            r = cairn__err(err, -ENOMEM, "out of memory");
    }
    free(mv.v);
    return r;
}

int cairn_remote_gc(cairn_state *st, const char *remote, const cairn_remote_options *opts,
                    const cairn_remote_gc_options *gco, cairn_remote_stats *stats,
                    cairn_error *err)
{
    cairn_remote_gc_options g = CAIRN_REMOTE_GC_OPTIONS_INIT;
    if (gco)
        g = *gco;
    int r = cairn__opts_version(g.version, CAIRN_REMOTE_GC_OPTIONS_VERSION, "remote gc", err);
    if (r < 0)
        return r;
    session s;
    r = session_open(&s, st, remote, opts, err);
    memberv mv = {0};
    rblobv bv = {0};
    cairn__strset *live = cairn__strset_new();
    bool *gone = NULL;
    if (r == 0 && !live)
        r = cairn__err(err, -ENOMEM, "out of memory");
    /* candidates first: a blob stored after this listing is not one */
    if (r == 0) {
        r = s.ops->blobs_list(s.r, rblob_add, &bv, err);
        if (r == -ENOMEM)
            r = cairn__err(err, r, "out of memory");
    }
    if (r == 0)
        r = members_list(&s, NULL, &mv, err);
    if (r == 0 && !(gone = calloc(mv.n + 1, sizeof(*gone))))
        r = cairn__err(err, -ENOMEM, "out of memory");
    /* 1. states, by the policy: per tag, newest first */
    int64_t now = cairn__now_ns();
    bool policy = g.keep >= 0 || g.older_than > 0;
    for (size_t i = 0; r == 0 && policy && i < mv.n;) {
        size_t j = i;
        while (j < mv.n && !strcmp(mv.v[j].tag, mv.v[i].tag))
            j++;
        for (size_t k = i; k < j; k++) {
            size_t rank = j - 1 - k; /* 0: the newest */
            bool old = g.older_than <= 0 || now - mv.v[k].mtime > g.older_than * 1000000000LL;
            if ((g.keep < 0 || rank >= (size_t)g.keep) && old)
                gone[k] = true;
        }
        i = j;
    }
    for (size_t i = 0; r == 0 && i < mv.n; i++) {
        if (!gone[i])
            continue;
        if (!g.dry_run)
            r = s.ops->state_delete(s.r, mv.v[i].tag, mv.v[i].digest, err);
        s.stats.states++;
    }
    /* 2. what the states left name: listed again, after the removals */
    if (r == 0 && !g.dry_run) {
        free(mv.v);
        mv = (memberv){0};
        free(gone);
        r = members_list(&s, NULL, &mv, err);
        gone = r == 0 ? calloc(mv.n + 1, sizeof(*gone)) : NULL;
        if (r == 0 && !gone)
            r = cairn__err(err, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; r == 0 && i < mv.n; i++) {
        if (gone[i])
            continue;
        rstate rs;
        r = load_state(&s, mv.v[i].tag, mv.v[i].digest, mv.v[i].mtime, &rs, err);
        if (r < 0) {
            cairn__err_prefix(err, r, "remote gc: no object removed");
            break;
        }
        if (mark_state(live, &rs) < 0)
            r = cairn__err(err, -ENOMEM, "out of memory");
        rstate_clear(&rs);
    }
    /* and what the pool's records name (their tags start with '_') */
    if (r == 0)
        r = mark_records(&s, live, err);
    /* 3. objects no state names, past the grace period */
    for (size_t i = 0; r == 0 && i < bv.n; i++) {
        rblob *b = &bv.v[i];
        if (cairn__strset_has(live, b->digest))
            continue;
        if (b->mtime && now - b->mtime < g.grace * 1000000000LL)
            continue;
        if (!g.dry_run)
            r = s.ops->blob_delete(s.r, b->digest, err);
        s.stats.objects_moved++;
        s.stats.bytes_moved += b->size;
    }
    if (r == 0 && stats)
        *stats = s.stats;
    free(gone);
    free(mv.v);
    free(bv.v);
    cairn__strset_free(live);
    session_close(&s);
    return r;
}

/* ---- lazy lowers ------------------------------------------------------- *
 *
 * pull --lazy makes each member of the tag a lower of the state without
 * fetching an object: the member's database (verified) becomes a frozen
 * state in the cache, CACHE/lowers/<manifest hex>/, whose `remote` file
 * names where its objects are and whose `objects` file maps its snapshots
 * to the layers that carry them. Core opens it as any lower, sees the
 * `remote` file, and on the first read of an object whose file is missing
 * calls the provider below (registered at load time: core.h, lazy lowers),
 * which fetches it into that lower's blobs/ or snapshots/: staged in its
 * tmp/, hashed against its name (and its size, and a layer's DiffID),
 * synced, renamed into place without replacing. Nothing else is ever
 * written in a lower; the states of the machine that pull the same member
 * share its directory, and so what was fetched for it. A blob fetched for
 * another member is linked from there (and hashed) instead of fetched.
 * cairn_remote_cache_gc() bounds the cache: the objects fetched longest
 * ago go first; a database stays (it is what makes the lower a state).
 */

#define LAZY_REMOTE "remote"
#define LAZY_OBJECTS "objects"
#define CACHE_BOUND "max-bytes" /* the cache's standing bound (cairn_remote_cache_bound) */

static int cache_dir_get(const char *given, char **out, cairn_error *err)
{
    _cleanup_free_ char *d = NULL;
    const char *e;
    if (given && *given)
        d = strdup(given);
    else if ((e = getenv("CAIRN_CACHE_DIR")) && *e)
        d = strdup(e);
    else if ((e = getenv("XDG_CACHE_HOME")) && *e == '/')
        (void)!asprintf(&d, "%s/cairn", e);
    else if ((e = getenv("HOME")) && *e == '/')
        (void)!asprintf(&d, "%s/.cache/cairn", e);
    else
        return cairn__err(err, -EINVAL, "lazy pull: no cache directory (give one, or set "
                          "CAIRN_CACHE_DIR)");
    if (!d)
        return cairn__err(err, -ENOMEM, "out of memory");
    int r = cairn__mkdir_p(d, 0755);
    if (r < 0 && r != -EEXIST)
        return cairn__err(err, r, "cache %s: %m", d);
    char *real = realpath(d, NULL);
    if (!real)
        return cairn__err(err, -errno, "cache %s: %m", d);
    static const char *const sub[] = {"lowers", "tmp"};
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(sub); i++) {
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/%s", real, sub[i]) < 0 || (r = cairn__mkdir_p(p, 0755)) < 0) {
            r = p ? cairn__err(err, r, "cache %s: %m", p) : cairn__err(err, -ENOMEM, "out of memory");
            free(real);
            return r;
        }
    }
    *out = real;
    return 0;
}

static int write_text(int dfd, const char *name, const char *text, cairn_error *err,
                      const char *dir)
{
    int r = cairn__write_file_atomic(dfd, name, text, strlen(text), 0644);
    return r < 0 ? cairn__err(err, r, "%s/%s: %m", dir, name) : 0;
}

/* The member rs as a lazy lower in the cache (made, or there already): its
 * path in out. */
static int lazy_lower_make(session *s, const char *cache, const rstate *rs, char *out,
                           size_t size, cairn_error *err)
{
    snprintf(out, size, "%s/lowers/%s", cache, cairn__digest_hex(rs->digest));
    _cleanup_close_ int have = open(out, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    char id[CAIRN_STATE_ID_LEN + 1];
    /* its identity is written last: when it reads, the lower is whole */
    if (have >= 0 && cairn__identity_get(have, out, id, NULL, NULL) == 0)
        return 0;
    if (have >= 0)
        cairn__rm_rf_at(AT_FDCWD, out); /* a partial one: made before a crash */
    char name[128], side[REMOTE_PATH_MAX];
    int r = cairn__tmp_name_unowned(name, sizeof(name), "lower");
    if (r < 0)
        return cairn__err(err, r, "staging name: %m");
    snprintf(side, sizeof(side), "%s/tmp/%s", cache, name);
    if (mkdir(side, 0755) < 0)
        return cairn__err(err, -errno, "%s: %m", side);
    _cleanup_close_ int dfd = open(side, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        r = cairn__err(err, -errno, "%s: %m", side);
    static const char *const layout[] = {"db", "blobs", "blobs/sha256", "snapshots", "tmp"};
    for (size_t i = 0; r == 0 && i < CAIRN_ARRAY_SIZE(layout); i++)
        if ((r = cairn__mkdir_at(dfd, layout[i], i >= 3 ? 0700 : 0755)) < 0)
            cairn__err(err, r, "%s/%s: %m", side, layout[i]);
    if (r == 0)
        r = cairn__random_id(id) < 0 ? cairn__err(err, -EIO, "random id: %m") : 0;
    if (r == 0) {
        char db[64];
        snprintf(db, sizeof(db), "db/%s.sqlite", id);
        int fd = openat(dfd, db, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        r = fd < 0 ? cairn__err(err, -errno, "%s/%s: %m", side, db)
                   : fetch_verified(s, rs->db, rs->db_size, fd, err);
        s->stats.meta_bytes += (uint64_t)rs->db_size;
        if (fd >= 0)
            close(fd);
    }
    /* where its objects are: the URL and the options that reach it, never
     * a credential (the backend takes those from the environment) */
    if (r == 0) {
        _cleanup_free_ char *t = NULL;
        if (asprintf(&t, "url=%s\ntag=%s\nmember=%s\ninsecure=%d\nregion=%s\nendpoint=%s\n"
                     "auth-file=%s\n", s->url, rs->tag, rs->digest, s->o.insecure,
                     s->o.region ? s->o.region : "", s->o.endpoint ? s->o.endpoint : "",
                     s->o.auth_file ? s->o.auth_file : "") < 0)
            r = cairn__err(err, -ENOMEM, "out of memory");
        else
            r = write_text(dfd, LAZY_REMOTE, t, err, side);
    }
    if (r == 0) {
        /* "<chain id> <layer digest> <size> <diff id> <parent or ->" a line */
        size_t cap = 64 + rs->objs.n * 320;
        _cleanup_free_ char *t = malloc(cap);
        size_t n = 0;
        if (!t)
            r = cairn__err(err, -ENOMEM, "out of memory");
        for (size_t i = 0; t && i < rs->objs.n; i++) {
            const obj *o = &rs->objs.v[i];
            if (o->kind == OBJ_SNAPSHOT)
                n += (size_t)snprintf(t + n, cap - n, "%s %s %llu %s %s\n", o->name, o->digest,
                                      (unsigned long long)o->size, o->diff_id,
                                      o->parent[0] ? o->parent : "-");
        }
        if (t) {
            t[n] = 0;
            r = write_text(dfd, LAZY_OBJECTS, t, err, side);
        }
    }
    if (r == 0 && syncfs(dfd) < 0)
        r = cairn__err(err, -errno, "%s: sync: %m", side);
    if (r == 0)
        r = cairn__identity_new(dfd, side, id, true, err);
    if (r == 0) {
        r = cairn__rename_noreplace(AT_FDCWD, side, AT_FDCWD, out);
        if (r == -EEXIST || r == -ENOTEMPTY) { /* another pull made it meanwhile */
            cairn__rm_rf_at(AT_FDCWD, side);
            r = 0;
        } else if (r < 0) {
            cairn__err(err, r, "%s: %m", out);
        }
    }
    if (r < 0)
        cairn__rm_rf_at(AT_FDCWD, side);
    return r;
}

int cairn_remote_pull_lazy(cairn_state *st, const char *remote, const char *tag,
                           const cairn_remote_options *opts, const char *cache_dir,
                           cairn_remote_stats *stats, cairn_error *err)
{
    if (!st || !tag || !*tag)
        return cairn__err(err, -EINVAL, "pull: a state and a tag are needed");
    int r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *cache = NULL;
    r = cache_dir_get(cache_dir, &cache, err);
    if (r < 0)
        return r;
    session s;
    r = session_connect(&s, st, remote, opts, err);
    memberv mv = {0};
    cairn__strv dirs = {0};
    if (r == 0)
        r = members_list(&s, tag, &mv, err);
    if (r == 0 && mv.n == 0)
        r = cairn__err(err, -ENOENT, "remote %s: no state under tag %s", s.url, tag);
    for (size_t i = 0; r == 0 && i < mv.n; i++) {
        rstate rs;
        r = load_state(&s, mv.v[i].tag, mv.v[i].digest, mv.v[i].mtime, &rs, err);
        if (r < 0)
            break;
        char dir[REMOTE_PATH_MAX];
        r = lazy_lower_make(&s, cache, &rs, dir, sizeof(dir), err);
        if (r == 0 && cairn__strv_push(&dirs, dir) < 0)
            r = cairn__err(err, -ENOMEM, "out of memory");
        s.stats.objects += rs.objs.n;
        rstate_clear(&rs);
    }
    /* the lowers already stacked stay (a tag pulled again adds its new
     * members only) */
    size_t keep = 0;
    for (size_t i = 0; r == 0 && i < dirs.n; i++) {
        bool listed = false;
        for (size_t k = 1; k < st->n_layers && !listed; k++)
            listed = !strcmp(st->layers[k].root, dirs.v[i]);
        if (!listed)
            dirs.v[keep++] = dirs.v[i];
        else
            free(dirs.v[i]);
    }
    if (r == 0)
        dirs.n = keep;
    if (r == 0 && dirs.n)
        r = cairn_stack_add(st->path, (const char *const *)dirs.v, dirs.n, err);
    if (r == 0) {
        s.stats.states = mv.n;
        if (stats)
            *stats = s.stats;
    }
    free(mv.v);
    cairn__strv_free(&dirs);
    session_close(&s);
    return r;
}

/* key=value lines of a lazy lower's remote file. */
static const char *kv(char *buf, const char *key, char *out, size_t size)
{
    size_t kl = strlen(key);
    for (char *l = buf; l && *l;) {
        char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        if (len > kl && l[kl] == '=' && !strncmp(l, key, kl)) {
            snprintf(out, size, "%.*s", (int)(len - kl - 1), l + kl + 1);
            return out;
        }
        l = nl ? nl + 1 : NULL;
    }
    out[0] = 0;
    return out;
}

/* Link a blob another lower of the cache fetched already into tfd/tmp. */
static bool lazy_link_sibling(const char *root, const char *hex, int tfd, const char *tmp)
{
    _cleanup_free_ char *lowers = strdup(root);
    char *slash = lowers ? strrchr(lowers, '/') : NULL;
    if (!slash)
        return false;
    *slash = 0;
    DIR *d = opendir(lowers);
    if (!d)
        return false;
    bool ok = false;
    struct dirent *de;
    while (!ok && (de = readdir(d))) {
        if (de->d_name[0] == '.' || !strcmp(de->d_name, slash + 1))
            continue;
        char p[REMOTE_PATH_MAX];
        snprintf(p, sizeof(p), "%s/blobs/sha256/%s", de->d_name, hex);
        ok = linkat(dirfd(d), p, tfd, tmp, 0) == 0;
    }
    closedir(d);
    return ok;
}

/* Fetches nest (a snapshot's parents, its layer's blob), on this thread:
 * the cache's bound is kept once, by the outermost, for all it fetched
 * and with what a read of its object needs kept (a bound kept in a nested
 * fetch could take the parents the outer one is about to apply onto). */
static _Thread_local int lazy_depth;
static _Thread_local uint64_t lazy_fetched; /* bytes, by every level of the outermost */

static int lazy_fetch_blob(session *s, cairn_state *st, size_t layer, const char *digest,
                           int tfd, cairn_error *err)
{
    cairn__layer *L = &st->layers[layer];
    static const char sql[] = "SELECT size FROM blobs WHERE digest = ?";
    sqlite3_stmt *q;
    int r = cairn__stmt(st, layer, sql, &q, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(q, 1, digest, -1, SQLITE_STATIC);
    int64_t size = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
    sqlite3_reset(q);
    if (size < 0)
        return cairn__err(err, -ENOENT, "blob %s: not a blob of lazy lower %s", digest, L->root);
    int bfd = cairn__layer_blobfd(st, layer, err);
    if (bfd < 0)
        return bfd;
    const char *hex = cairn__digest_hex(digest);
    char tmp[128];
    r = cairn__tmp_name_unowned(tmp, sizeof(tmp), "blob");
    if (r < 0)
        return cairn__err(err, r, "staging name: %m");
    _cleanup_close_ int fd = -1;
    if (lazy_link_sibling(L->root, hex, tfd, tmp)) {
        fd = openat(tfd, tmp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        char got[CAIRN_DIGEST_LEN + 1];
        if (fd < 0 || cairn__sha256_fd(fd, got) != size || strcmp(got, digest) != 0) {
            /* not what its name says: fetch it instead */
            if (fd >= 0)
                close(fd);
            fd = -1;
            unlinkat(tfd, tmp, 0);
        }
    }
    if (fd < 0) {
        fd = openat(tfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
            return cairn__err(err, -errno, "%s/tmp/%s: %m", L->root, tmp);
        r = fetch_verified(s, digest, size, fd, err);
        if (r == 0 && fsync(fd) < 0)
            r = cairn__err(err, -errno, "%s/tmp/%s: fsync: %m", L->root, tmp);
        if (r < 0) {
            unlinkat(tfd, tmp, 0);
            return r;
        }
        lazy_fetched += (uint64_t)size;
    }
    r = cairn__rename_noreplace(tfd, tmp, bfd, hex);
    if (r == -EEXIST) {
        unlinkat(tfd, tmp, 0);
        return 0;
    }
    if (r < 0) {
        unlinkat(tfd, tmp, 0);
        return cairn__err(err, r, "%s/blobs/sha256/%s: %m", L->root, hex);
    }
    fsync(bfd);
    return 0;
}

static int lazy_fetch_snapshot(session *s, cairn_state *st, size_t layer, const char *chain,
                               int tfd, cairn_error *err)
{
    cairn__layer *L = &st->layers[layer];
    _cleanup_free_ char *objs = NULL;
    int r = cairn__read_file_at(L->dirfd, LAZY_OBJECTS, 64u << 20, &objs, NULL);
    if (r < 0)
        return cairn__err(err, r, "%s/%s: %m", L->root, LAZY_OBJECTS);
    char ldigest[CAIRN_DIGEST_LEN + 1] = "", diff[CAIRN_DIGEST_LEN + 1], parent[CAIRN_DIGEST_LEN + 1];
    unsigned long long size = 0;
    size_t cl = strlen(chain);
    for (char *l = objs; l && *l;) {
        char *nl = strchr(l, '\n');
        if (nl)
            *nl = 0;
        if (!strncmp(l, chain, cl) && l[cl] == ' ' &&
            sscanf(l + cl + 1, "%71s %llu %71s %71s", ldigest, &size, diff, parent) == 4)
            break;
        ldigest[0] = 0;
        l = nl ? nl + 1 : NULL;
    }
    if (!ldigest[0] || cairn_digest_check(ldigest, NULL) < 0 || cairn_digest_check(diff, NULL) < 0)
        return cairn__err(err, CAIRN_E_CORRUPT, "snapshot %s: lazy lower %s carries no layer "
                          "for it (%s)", chain, L->root, LAZY_OBJECTS);
    const char *par = strcmp(parent, "-") ? parent : NULL;
    if (par) { /* parents first: the layer applies over them */
        cairn__snaprow prow;
        r = cairn__snapshot_find(st, par, &prow, err);
        if (r == 0)
            r = cairn__err(err, -ENOENT, "snapshot %s: its parent %s is not in the stack", chain,
                           par);
        if (r > 0)
            r = cairn__snapshot_ensure(st, prow.layer, par, err);
        if (r < 0)
            return r;
    }
    cairn__snaprow row;
    r = cairn__snapshot_find(st, chain, &row, err);
    if (r <= 0)
        return r < 0 ? r : cairn__err(err, -ENOENT, "snapshot %s: not in the stack", chain);
    if (strcmp(row.info.diff_id, diff) != 0)
        return cairn__err(err, CAIRN_E_CORRUPT, "snapshot %s: lazy lower %s: its layer's DiffID "
                          "%s is not the row's %s", chain, L->root, diff, row.info.diff_id);
    int sfd = cairn__layer_snapfd(st, layer, err);
    if (sfd < 0)
        return sfd;
    /* A layer that is also a blob of the stack (a snapshot of an image
     * travels as the image's own layer blob) is read from that blob: got
     * once, as the blob (into this cache, nested on this connection), not
     * downloaded again for the snapshot. A local copy that does not apply
     * (its DiffID is checked) is passed over for the remote's. */
    cairn_blob_info bi;
    _cleanup_close_ int bfd = -1;
    if (cairn_blob_stat(st, ldigest, &bi, NULL) == 0 && bi.size == size &&
        cairn_blob_open(st, ldigest, 0, &bfd, NULL) == 0 &&
        cairn__layer_apply(st, par, bfd, diff, tfd, sfd, cairn__digest_hex(chain), NULL) == 0)
        return 0;
    char tmp[128];
    r = cairn__tmp_name_unowned(tmp, sizeof(tmp), "layer");
    if (r < 0)
        return cairn__err(err, r, "staging name: %m");
    _cleanup_close_ int fd = openat(tfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return cairn__err(err, -errno, "%s/tmp/%s: %m", L->root, tmp);
    r = fetch_verified(s, ldigest, (int64_t)size, fd, err);
    if (r == 0) {
        lazy_fetched += size;
        r = cairn__layer_apply(st, par, fd, diff, tfd, sfd, cairn__digest_hex(chain), err);
        if (r < 0)
            cairn__err_prefix(err, r, "snapshot %s (layer %s)", chain, ldigest);
    }
    unlinkat(tfd, tmp, 0);
    return r;
}

/* The standing bound of the cache: $CAIRN_CACHE_MAX, else what
 * cairn_remote_cache_bound() recorded in it; 0: none. */
static uint64_t cache_bound_get(const char *cache)
{
    /* bytes, digits only, as $CAIRN_POOL_CACHE_MAX; anything else is not
     * an override: the cache's own bound holds */
    const char *e = getenv("CAIRN_CACHE_MAX");
    if (e && *e && strspn(e, "0123456789") == strlen(e) && strlen(e) <= 19)
        return strtoull(e, NULL, 10);
    _cleanup_close_ int dfd = open(cache, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char *t = NULL;
    if (dfd < 0 || cairn__read_file_at(dfd, CACHE_BOUND, 64, &t, NULL) < 0)
        return 0;
    uint64_t max = strtoull(t, NULL, 10);
    free(t);
    return max;
}

/* After a fetch into the lower at `root` (CACHE/lowers/<hex>): keep the
 * cache under its bound. A process checks at its first fetch, then each
 * time it has fetched a sixteenth of the bound since it last checked (as
 * transferred), so the cache is held near the bound (docs/REMOTE.md says
 * what takes it over for a while). What was
 * fetched last goes last, and what a read of what it fetched needs stays
 * (keep_paths); a collection that fails is not the fetch's failure (the
 * next one tries again). */
static int cache_gc(const char *cache_dir, uint64_t max_bytes, int dry_run,
                    const cairn__strv *keep, int64_t keep_after, cairn_remote_stats *stats,
                    cairn_error *err);

/* The cache paths of what a read of `name` needs: a blob's file; a
 * snapshot's directory and its ancestors' (a checkout or mount reads the
 * chain), those in lazy lowers. */
static int keep_paths(cairn_state *st, size_t layer, int kind, const char *name,
                      cairn__strv *out)
{
    char p[REMOTE_PATH_MAX];
    if (kind == CAIRN__LOWER_BLOB) {
        snprintf(p, sizeof(p), "%s/blobs/sha256/%s", st->layers[layer].root,
                 cairn__digest_hex(name));
        return cairn__strv_push(out, p);
    }
    static const char has[] = "SELECT 1 FROM snapshots WHERE chain_id = ?";
    static const char par[] = "SELECT parent FROM snapshots WHERE chain_id = ?";
    char c[CAIRN_DIGEST_LEN + 1];
    snprintf(c, sizeof(c), "%s", name);
    for (int depth = 0; c[0] && depth < 256; depth++) {
        int i;
        if (cairn__layers_have(st, has, c, &i, NULL) <= 0)
            break;
        if (st->layers[i].lazy) {
            snprintf(p, sizeof(p), "%s/snapshots/%s", st->layers[i].root, cairn__digest_hex(c));
            if (cairn__strv_push(out, p) < 0)
                return -ENOMEM;
        }
        sqlite3_stmt *q;
        if (cairn__stmt(st, (size_t)i, par, &q, NULL) < 0)
            break;
        sqlite3_bind_text(q, 1, c, -1, SQLITE_TRANSIENT);
        const char *pc = sqlite3_step(q) == SQLITE_ROW ? cairn__col(q, 0) : "";
        snprintf(c, sizeof(c), "%s", pc ? pc : "");
        sqlite3_reset(q);
    }
    return 0;
}

static void cache_keep_bound(cairn_state *st, size_t layer, int kind, const char *name,
                             uint64_t fetched)
{
    const char *root = st->layers[layer].root;
    /* one count a process, whatever cache: a check comes a little early
     * when it fetches into several; one collection at a time a process */
    static _Atomic uint64_t since;
    static _Atomic int checked, running;
    char cache[REMOTE_PATH_MAX];
    snprintf(cache, sizeof(cache), "%s", root);
    for (int i = 0; i < 2; i++) {
        char *sl = strrchr(cache, '/');
        if (!sl || sl == cache)
            return;
        /* a lower of a cache: CACHE/lowers/<hex>; any other lazy lower is
         * not ours to collect */
        if (i == 1 && strcmp(sl + 1, "lowers") != 0)
            return;
        *sl = 0;
    }
    uint64_t max = cache_bound_get(cache);
    if (!max)
        return;
    uint64_t n = atomic_fetch_add(&since, fetched) + fetched;
    if (atomic_exchange(&checked, 1) && n < max / 16)
        return;
    if (atomic_exchange(&running, 1))
        return;
    atomic_store(&since, 0);
    cairn__strv keep = {0};
    /* what was placed in the last CAIRN_CACHE_GRACE seconds (10) stays: a
     * checkout or mount reading a chain, fetched piece by piece, is in flight */
    const char *g = getenv("CAIRN_CACHE_GRACE");
    int64_t grace = g && *g ? strtoll(g, NULL, 10) : 10;
    int64_t after = grace > 0 ? cairn__now_ns() - grace * 1000000000LL : 0;
    if (keep_paths(st, layer, kind, name, &keep) == 0)
        cache_gc(cache, max, 0, &keep, after, NULL, NULL);
    cairn__strv_free(&keep);
    atomic_store(&running, 0);
}

/* A lazy layer's connection, kept in its fetch_conn between fetches: a
 * handle reading lazily opens its remote (a TLS handshake, a registry's
 * token) once, not at every object. One idle for LAZY_IDLE_NS, or older
 * than LAZY_AGE_NS, is opened anew (credentials read at open may have been
 * rotated meanwhile), and so is one a fetch failed on. `busy`: a snapshot's
 * fetch fetches its parents (and its layer's blob) through the same layer,
 * nested: the connection stays theirs until the outermost is done. */
#define LAZY_IDLE_NS (60 * 1000000000LL)
#define LAZY_AGE_NS (600 * 1000000000LL)
typedef struct lazy_conn {
    session s;
    char region[256], endpoint[1024], auth[1024]; /* what s.o points to */
    int64_t opened, last; /* CLOCK_MONOTONIC */
    int busy;
    bool broken;
} lazy_conn;

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void lazy_release(void *conn)
{
    lazy_conn *c = conn;
    if (!c)
        return;
    session_close(&c->s);
    free(c);
}

static int lazy_conn_get(cairn__layer *L, lazy_conn **out, cairn_error *err)
{
    lazy_conn *c = L->fetch_conn;
    int64_t now = mono_ns();
    if (c && !c->busy && (c->broken || now - c->last > LAZY_IDLE_NS || now - c->opened > LAZY_AGE_NS)) {
        L->fetch_conn = NULL;
        lazy_release(c);
        c = NULL;
    }
    if (!c) {
        _cleanup_free_ char *conf = NULL;
        int r = cairn__read_file_at(L->dirfd, LAZY_REMOTE, 64u << 10, &conf, NULL);
        if (r < 0)
            return cairn__err(err, r, "lazy lower %s: %s: %m", L->root, LAZY_REMOTE);
        if (!(c = calloc(1, sizeof(*c))))
            return cairn__err(err, -ENOMEM, "out of memory");
        char url[CAIRN_REMOTE_URL_MAX + 1], ins[8];
        cairn_remote_options o = CAIRN_REMOTE_OPTIONS_INIT;
        kv(conf, "url", url, sizeof(url));
        o.insecure = atoi(kv(conf, "insecure", ins, sizeof(ins)));
        o.region = *kv(conf, "region", c->region, sizeof(c->region)) ? c->region : NULL;
        o.endpoint = *kv(conf, "endpoint", c->endpoint, sizeof(c->endpoint)) ? c->endpoint : NULL;
        o.auth_file = *kv(conf, "auth-file", c->auth, sizeof(c->auth)) ? c->auth : NULL;
        r = session_connect(&c->s, NULL, url, &o, err);
        if (r < 0) {
            lazy_release(c);
            return r;
        }
        c->opened = now;
        L->fetch_conn = c;
    }
    *out = c;
    return 0;
}

static int lazy_fetch(cairn_state *st, size_t layer, int kind, const char *name, cairn_error *err)
{
    cairn__layer *L = &st->layers[layer];
    _cleanup_close_ int tfd = cairn__open_beneath(L->dirfd, "tmp", O_RDONLY | O_DIRECTORY, 0);
    if (tfd < 0)
        return cairn__err(err, tfd, "lazy lower %s/tmp: %m", L->root);
    lazy_conn *c;
    int r = lazy_conn_get(L, &c, err);
    if (r < 0)
        return cairn__err_prefix(err, r, "%s %s: fetch from lazy lower %s",
                                 kind == CAIRN__LOWER_BLOB ? "blob" : "snapshot", name, L->root);
    if (lazy_depth++ == 0)
        lazy_fetched = 0;
    c->busy++;
    r = kind == CAIRN__LOWER_BLOB ? lazy_fetch_blob(&c->s, st, layer, name, tfd, err)
                                  : lazy_fetch_snapshot(&c->s, st, layer, name, tfd, err);
    c->busy--;
    lazy_depth--;
    c->last = mono_ns();
    if (r < 0) {
        cairn__err_prefix(err, r, "%s %s: fetch from lazy lower %s (%s)",
                          kind == CAIRN__LOWER_BLOB ? "blob" : "snapshot", name, L->root,
                          c->s.url);
        c->broken = true; /* the next fetch connects anew */
        if (!c->busy) {
            L->fetch_conn = NULL;
            lazy_release(c);
        }
        return r;
    }
    if (lazy_depth == 0)
        cache_keep_bound(st, layer, kind, name, lazy_fetched);
    return 0;
}

int cairn_remote_cache_bound(const char *cache_dir, uint64_t max_bytes, cairn_error *err)
{
    _cleanup_free_ char *cache = NULL;
    int r = cache_dir_get(cache_dir, &cache, err);
    if (r < 0)
        return r;
    _cleanup_close_ int dfd = open(cache, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return cairn__err(err, -errno, "cache %s: %m", cache);
    if (!max_bytes) {
        r = unlinkat(dfd, CACHE_BOUND, 0) < 0 && errno != ENOENT ? -errno : 0;
        return r < 0 ? cairn__err(err, r, "cache %s/%s: %m", cache, CACHE_BOUND) : 0;
    }
    char t[32];
    snprintf(t, sizeof(t), "%llu\n", (unsigned long long)max_bytes);
    return write_text(dfd, CACHE_BOUND, t, err, cache);
}

static const cairn__lower_provider lazy_provider = {.fetch = lazy_fetch, .release = lazy_release};

/* Registered when the library is loaded: core calls down into nothing
 * above it, it calls what was registered (core.h, lazy lowers). */
__attribute__((constructor)) static void lazy_register(void)
{
    cairn__lower_provider_set(&lazy_provider);
}

/* ---- the cache's gc ---------------------------------------------------- */

typedef struct cobj {
    char *path;
    uint64_t bytes;
    int64_t mtime;
} cobj;

typedef struct cobjv {
    cobj *v;
    size_t n, cap;
} cobjv;

static int cobj_add(cobjv *cv, const char *dir, const char *name, uint64_t bytes, int64_t mtime)
{
    if (cv->n == cv->cap) {
        size_t cap = cv->cap ? cv->cap * 2 : 256;
        cobj *nv = realloc(cv->v, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        cv->v = nv;
        cv->cap = cap;
    }
    cobj *c = &cv->v[cv->n];
    if (asprintf(&c->path, "%s/%s", dir, name) < 0)
        return -ENOMEM;
    c->bytes = bytes;
    c->mtime = mtime;
    cv->n++;
    return 0;
}

static int cobj_cmp(const void *a, const void *b)
{
    const cobj *x = a, *y = b;
    return x->mtime < y->mtime ? -1 : x->mtime > y->mtime ? 1 : strcmp(x->path, y->path);
}

/* Objects of one kind (blobs/sha256 or snapshots) of a lower of the cache;
 * staging older than an hour removed (a fetch in flight is younger). */
static int cache_scan(const char *dir, bool snapshots, cobjv *cv, int64_t now)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        struct stat sb;
        if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        /* when it was placed: its ctime (a rename or a link sets it; a
         * layer's tar sets the mtime of a snapshot's root, a sibling's
         * link keeps the sibling's) */
        int64_t mt = (int64_t)sb.st_ctim.tv_sec * 1000000000 + sb.st_ctim.tv_nsec;
        if (cv == NULL) { /* staging */
            if (now - mt > 3600LL * 1000000000)
                cairn__rm_rf_at(dirfd(d), de->d_name);
            continue;
        }
        uint64_t bytes = snapshots ? cairn__tree_bytes(dirfd(d), de->d_name, true)
                                   : (uint64_t)sb.st_blocks * 512;
        r = cobj_add(cv, dir, de->d_name, bytes, mt);
    }
    closedir(d);
    return r;
}

/* Is path a lowerdir of a mount this process can see? */
static bool mounted(const char *path)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return true; /* cannot tell: keep it */
    size_t pl = strlen(path);
    char *line = NULL;
    size_t cap = 0;
    bool hit = false;
    while (!hit && getline(&line, &cap, f) > 0)
        for (char *p = strstr(line, path); p && !hit; p = strstr(p + 1, path))
            hit = p[pl] == ':' || p[pl] == ',' || p[pl] == ' ' || p[pl] == '\n' || p[pl] == '/';
    free(line);
    fclose(f);
    return hit;
}

/* keep: the paths of objects to keep whatever the bound (what a fetch just
 * placed, and what its reader reads with it), or NULL; and every object
 * placed at or after keep_after (ns; 0: none) */
static int cache_gc(const char *cache_dir, uint64_t max_bytes, int dry_run,
                    const cairn__strv *keep, int64_t keep_after, cairn_remote_stats *stats,
                    cairn_error *err)
{
    _cleanup_free_ char *cache = NULL;
    int r = cache_dir_get(cache_dir, &cache, err);
    if (r < 0)
        return r;
    int64_t now = cairn__now_ns();
    char p[REMOTE_PATH_MAX];
    snprintf(p, sizeof(p), "%s/tmp", cache);
    if (!dry_run)
        cache_scan(p, false, NULL, now);
    snprintf(p, sizeof(p), "%s/lowers", cache);
    DIR *d = opendir(p);
    if (!d)
        return cairn__err(err, -errno, "cache %s: %m", p);
    cobjv cv = {0};
    cairn__strv lowers = {0};
    struct dirent *de;
    while (r == 0 && (de = readdir(d)))
        if (de->d_name[0] != '.' && cairn__strv_push(&lowers, de->d_name) < 0)
            r = -ENOMEM;
    closedir(d);
    cairn_remote_stats st = {0};
    for (size_t i = 0; r == 0 && i < lowers.n; i++) {
        char sub[REMOTE_PATH_MAX];
        snprintf(sub, sizeof(sub), "%s/lowers/%s/tmp", cache, lowers.v[i]);
        if (!dry_run)
            cache_scan(sub, false, NULL, now);
        snprintf(sub, sizeof(sub), "%s/lowers/%s/blobs/sha256", cache, lowers.v[i]);
        r = cache_scan(sub, false, &cv, now);
        snprintf(sub, sizeof(sub), "%s/lowers/%s/snapshots", cache, lowers.v[i]);
        if (r == 0)
            r = cache_scan(sub, true, &cv, now);
        st.states++;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < cv.n; i++)
        total += cv.v[i].bytes;
    st.objects = cv.n;
    if (cv.n > 1)
        qsort(cv.v, cv.n, sizeof(*cv.v), cobj_cmp);
    /* oldest fetched first, until the cache fits; a snapshot an overlay
     * mount reads stays */
    for (size_t i = 0; r == 0 && i < cv.n && total > max_bytes; i++) {
        if (strstr(cv.v[i].path, "/snapshots/") && mounted(cv.v[i].path))
            continue;
        bool kept = keep_after && cv.v[i].mtime >= keep_after;
        for (size_t k = 0; keep && k < keep->n && !kept; k++)
            kept = !strcmp(cv.v[i].path, keep->v[k]);
        if (kept)
            continue;
        if (!dry_run && cairn__rm_rf_at(AT_FDCWD, cv.v[i].path) < 0)
            continue;
        total -= cv.v[i].bytes;
        st.objects_moved++;
        st.bytes_moved += cv.v[i].bytes;
    }
    st.bytes_skipped = total;
    st.objects_skipped = cv.n - st.objects_moved;
    for (size_t i = 0; i < cv.n; i++)
        free(cv.v[i].path);
    free(cv.v);
    cairn__strv_free(&lowers);
    if (r < 0)
        return cairn__err(err, r, "cache %s: %m", cache);
    if (stats)
        *stats = st;
    return 0;
}

int cairn_remote_cache_gc(const char *cache_dir, uint64_t max_bytes, int dry_run,
                          cairn_remote_stats *stats, cairn_error *err)
{
    return cache_gc(cache_dir, max_bytes, dry_run, NULL, 0, stats, err);
}

/* ---- for the layers above (pool/) ------------------------------------- */

int cairn__remote_connect(const char *url, const cairn_remote_options *opts,
                          cairn__remote_conn **out, cairn_error *err)
{
    session *s = calloc(1, sizeof(*s));
    if (!s)
        return cairn__err(err, -ENOMEM, "out of memory");
    int r = session_open(s, NULL, url, opts, err);
    if (r < 0) {
        session_close(s);
        free(s);
        return r;
    }
    cairn__remote_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        session_close(s);
        free(s);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    c->ops = s->ops;
    c->r = s->r;
    c->url = s->url;
    c->session = s;
    *out = c;
    return 0;
}

void cairn__remote_disconnect(cairn__remote_conn *c)
{
    if (!c)
        return;
    session_close(c->session);
    free(c->session);
    free(c);
}

int cairn__remote_members(cairn__remote_conn *c, const char *tag, const char *const *digests,
                          size_t n, int (*fn)(void *ud, const cairn__remote_member *m), void *ud,
                          cairn_error *err)
{
    session *s = c->session;
    memberv mv = {0};
    int r = 0;
    if (!digests) {
        r = members_list(s, tag, &mv, err);
    } else {
        for (size_t i = 0; r == 0 && i < n; i++)
            if (member_add(&mv, tag, digests[i], 0) < 0)
                r = cairn__err(err, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; r == 0 && i < mv.n; i++) {
        rstate rs;
        cairn_error e2 = {0};
        r = load_state(s, mv.v[i].tag, mv.v[i].digest, mv.v[i].mtime, &rs, &e2);
        if (r == -ENOENT && !digests) { /* taken out since the listing (compact, gc) */
            r = 0;
            continue;
        }
        if (r < 0) {
            if (err)
                *err = e2;
            break;
        }
        cairn__remote_member m = {rs.tag, rs.digest, rs.state_id, rs.parents ? rs.parents : "",
                                  rs.mtime, rs.objs.n, (uint64_t)rs.db_size + rs.doc_bytes,
                                  NULL, NULL};
        const char **dv = calloc(rs.objs.n + 1, sizeof(*dv));
        uint64_t *sv = calloc(rs.objs.n + 1, sizeof(*sv));
        if (!dv || !sv)
            r = cairn__err(err, -ENOMEM, "out of memory");
        for (size_t k = 0; r == 0 && k < rs.objs.n; k++) {
            dv[k] = rs.objs.v[k].digest;
            sv[k] = rs.objs.v[k].size;
            m.bytes += rs.objs.v[k].size;
        }
        m.object_digests = dv;
        m.object_sizes = sv;
        if (r == 0)
            r = fn(ud, &m);
        free(dv);
        free(sv);
        rstate_clear(&rs);
    }
    free(mv.v);
    return r;
}
