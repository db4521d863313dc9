/* import.c: adopting a containerd root (cairn/containerd-import.h).
 *
 * What containerd keeps where (its metadata/buckets.go and
 * snapshots/storage/bolt.go):
 *   io.containerd.metadata.v1.bolt/meta.db:
 *     v1/<namespace>/images/<name>/{target/{digest,mediatype,size},labels/}
 *     v1/<namespace>/content/blob/<digest>/{size,labels/}
 *     v1/<namespace>/snapshots/overlayfs/<key>/{name,parent,labels/}
 *       (an unpacked layer's key is its ChainID; `name` is the key the
 *       snapshotter knows it by)
 *   io.containerd.snapshotter.v1.overlayfs/metadata.db:
 *     v1/snapshots/<name>/{id,kind,parent}   kind 3: committed
 *     its tree at snapshots/<id>/fs
 *   io.containerd.content.v1.content/blobs/sha256/<hex>
 * Sizes are Go's zigzag varints, ids unsigned varints.
 *
 * Phases:
 *   1. lock: a shared flock on each bolt file, taken without waiting: a
 *      running containerd holds them exclusively (refused, CAIRN_E_BUSY),
 *      and holding them keeps one from starting while we read;
 *   2. read both databases whole (bolt.c), and nothing else of them;
 *   3. blobs: each linked into tmp/ (link, else reflink, else copy),
 *      hashed there against its name, then under the state's lock one
 *      syncfs, the renames into blobs/sha256 and one transaction of rows;
 *   4. images: index (the host's platform) -> manifest -> config; for each
 *      layer in order, its ChainID; containerd's snapshot of that key is
 *      proven: the canonical tar of its fs digests to the DiffID, or the
 *      layer blob read beside the tree makes exactly its entries
 *      (cairn__layer_prove, nothing written), or, for a layer that
 *      comparison does not model, the canonical tar of the layer applied
 *      by cairn in tmp/ is the tree's; its fs linked into tmp/ and
 *      published (snapshot.c: syncfs, rename, row);
 *      then the image row;
 *   5. the other committed snapshots, parents first, by the DiffID of
 *      their tree.
 * Nothing is written under the root: files there are opened read-only,
 * links made from them land in the state.
 */
#include "containerd/bolt.h"
#include "cairn/containerd-import.h"
#include "core/core.h"
#include "core/usage.h"
#include "image/image-private.h"
#include "image/oci-private.h"
#include "snapshot/snapshot-private.h"

#include <stdarg.h>
#include <sys/file.h>
#include <sys/stat.h>

#define META_DB  "io.containerd.metadata.v1.bolt/meta.db"
#define SNAP_DB  "io.containerd.snapshotter.v1.overlayfs/metadata.db"
#define SNAP_DIR "io.containerd.snapshotter.v1.overlayfs/snapshots"
#define BLOB_DIR "io.containerd.content.v1.content/blobs/sha256"
#define BOLT_MAX ((size_t)1 << 31)

enum { KIND_VIEW = 1, KIND_ACTIVE = 2, KIND_COMMITTED = 3 };
enum { S_PENDING, S_DONE, S_REFUSED };

typedef struct label {
    char *key, *value;
} label;

typedef struct blob {
    char digest[CAIRN_DIGEST_LEN + 1];
    int64_t size;
    label *labels;
    size_t n_labels;
    char media_type[CAIRN_MEDIA_TYPE_MAX + 1];
    int state;
} blob;

typedef struct image {
    char *ns, *name;
    char target[CAIRN_DIGEST_LEN + 1];
    label *labels;
    size_t n_labels;
} image;

/* A snapshot of a namespace (meta.db), joined with the snapshotter's row. */
typedef struct snap {
    char *ns, *key, *backend, *parent; /* parent: a key of the same namespace, or NULL */
    int kind;
    uint64_t id;
    int state;
    char chain[CAIRN_DIGEST_LEN + 1]; /* cairn's name, once done */
} snap;

typedef struct backend {
    char *name, *parent;
    uint64_t id;
    int kind;
} backend;

typedef struct importer {
    cairn_state *st;
    const cairn_containerd_import_options *opts;
    cairn_containerd_import_stats *stats;
    cairn_error *err;
    int rootfd, blobfd, snapfd;
    blob *blobs;
    size_t n_blobs;
    image *images;
    size_t n_images;
    snap *snaps;
    size_t n_snaps;
    backend *backends;
    size_t n_backends;
    const char *cur_ns; /* while reading meta.db */
    const cairn__bolt *db;
    uint64_t done, total; /* progress: blobs, then committed snapshots */
} importer;

static void progress(importer *im)
{
    if (im->opts->version >= 2 && im->opts->progress && im->total)
        im->opts->progress(im->opts->progress_userdata,
                           im->done < im->total ? im->done : im->total, im->total);
}

/* A committed snapshot met (imported, there already or left out): counted once. */
static void snap_met(importer *im)
{
    im->stats->snapshots++;
    im->done++;
    progress(im);
}

static void report(importer *im, const char *kind, const char *name, const char *fmt, ...)
    CAIRN_PRINTF(4, 5);
static void report(importer *im, const char *kind, const char *name, const char *fmt, ...)
{
    if (!im->opts->report)
        return;
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    im->opts->report(im->opts->report_userdata, kind, name, why);
}

static char *dupn(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

static bool has_nul(const uint8_t *p, size_t n)
{
    return memchr(p, 0, n) != NULL;
}

/* Go's encoding/binary varints. */
static bool uvarint(const uint8_t *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && i < 10; i++) {
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}
static bool varint(const uint8_t *p, size_t n, int64_t *out)
{
    uint64_t u;
    if (!uvarint(p, n, &u))
        return false;
    *out = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
    return true;
}

static void *grow(void *v, size_t n, size_t size)
{
    /* Powers of two: the array is reallocated when n reaches one. */
    if (n & (n - 1) && n > 8)
        return v;
    return realloc(v, (n < 8 ? 8 : n * 2) * size);
}

/* ---- reading meta.db ------------------------------------------------------ */

typedef struct labels_ctx {
    label **v;
    size_t *n;
} labels_ctx;

static int label_each(void *ud, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                      bool is_bucket)
{
    labels_ctx *c = ud;
    if (is_bucket || !kl || has_nul(k, kl) || has_nul(v, vl) || memchr(k, '=', kl))
        return 0; /* not a label cairn can hold */
    label *nv = grow(*c->v, *c->n, sizeof(label));
    if (!nv)
        return -ENOMEM;
    *c->v = nv;
    label *l = &nv[(*c->n)++];
    l->key = dupn(k, kl);
    l->value = dupn(v, vl);
    return l->key && l->value ? 0 : -ENOMEM;
}

static int read_labels(importer *im, const cairn__bolt_bucket *b, label **v, size_t *n)
{
    cairn__bolt_bucket lb;
    int r = cairn__bolt_sub(b, "labels", 0, &lb, im->err);
    if (r <= 0)
        return r;
    labels_ctx c = {v, n};
    r = cairn__bolt_each(&lb, label_each, &c, im->err);
    return r == -ENOMEM ? cairn__err(im->err, r, "out of memory") : r;
}

static void labels_free(label *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].value);
    }
    free(v);
}

static blob *blob_find(importer *im, const char *digest)
{
    for (size_t i = 0; i < im->n_blobs; i++)
        if (!strcmp(im->blobs[i].digest, digest))
            return &im->blobs[i];
    return NULL;
}

static int blob_each(void *ud, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                     bool is_bucket)
{
    importer *im = ud;
    char digest[CAIRN_DIGEST_LEN + 1];
    if (!is_bucket || kl != CAIRN_DIGEST_LEN)
        return 0;
    memcpy(digest, k, kl);
    digest[kl] = 0;
    if (cairn_digest_check(digest, NULL) < 0) {
        report(im, "blob", digest, "not a sha256 digest cairn can hold; left out");
        return 0;
    }
    cairn__bolt_bucket b;
    int r = cairn__bolt_bucket_of(im->db, v, vl, &b, im->err);
    if (r < 0)
        return r;
    const uint8_t *sv;
    size_t sl;
    int64_t size = -1;
    r = cairn__bolt_get(&b, "size", &sv, &sl, im->err);
    if (r < 0)
        return r;
    if (r == 1 && !varint(sv, sl, &size))
        size = -1;
    blob *bl = blob_find(im, digest);
    if (!bl) {
        blob *nb = grow(im->blobs, im->n_blobs, sizeof(blob));
        if (!nb)
            return cairn__err(im->err, -ENOMEM, "out of memory");
        im->blobs = nb;
        bl = &nb[im->n_blobs++];
        memset(bl, 0, sizeof(*bl));
        memcpy(bl->digest, digest, sizeof(digest));
        bl->size = size;
    }
    return read_labels(im, &b, &bl->labels, &bl->n_labels);
}

static int image_each(void *ud, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                      bool is_bucket)
{
    importer *im = ud;
    if (!is_bucket || !kl || has_nul(k, kl))
        return 0;
    cairn__bolt_bucket b, t;
    int r = cairn__bolt_bucket_of(im->db, v, vl, &b, im->err);
    if (r < 0)
        return r;
    _cleanup_free_ char *name = dupn(k, kl);
    if (!name)
        return cairn__err(im->err, -ENOMEM, "out of memory");
    r = cairn__bolt_sub(&b, "target", 0, &t, im->err);
    if (r < 0)
        return r;
    const uint8_t *dv = NULL;
    size_t dl = 0;
    if (r == 1 && (r = cairn__bolt_get(&t, "digest", &dv, &dl, im->err)) < 0)
        return r;
    char digest[CAIRN_DIGEST_LEN + 1] = "";
    if (dl == CAIRN_DIGEST_LEN) {
        memcpy(digest, dv, dl);
        digest[dl] = 0;
    }
    if (!dv || cairn_digest_check(digest, NULL) < 0) {
        report(im, "image", name, "its target is no sha256 digest; left out");
        im->stats->images_refused++;
        return 0;
    }
    image *ni = grow(im->images, im->n_images, sizeof(image));
    if (!ni)
        return cairn__err(im->err, -ENOMEM, "out of memory");
    im->images = ni;
    image *img = &ni[im->n_images++];
    memset(img, 0, sizeof(*img));
    img->ns = strdup(im->cur_ns);
    img->name = steal_pointer(&name);
    memcpy(img->target, digest, sizeof(digest));
    if (!img->ns)
        return cairn__err(im->err, -ENOMEM, "out of memory");
    return read_labels(im, &b, &img->labels, &img->n_labels);
}

static int snap_each(void *ud, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                     bool is_bucket)
{
    importer *im = ud;
    if (!is_bucket || !kl || has_nul(k, kl))
        return 0;
    cairn__bolt_bucket b;
    int r = cairn__bolt_bucket_of(im->db, v, vl, &b, im->err);
    if (r < 0)
        return r;
    const uint8_t *nv = NULL, *pv = NULL;
    size_t nl = 0, pl = 0;
    if ((r = cairn__bolt_get(&b, "name", &nv, &nl, im->err)) < 0 ||
        (r = cairn__bolt_get(&b, "parent", &pv, &pl, im->err)) < 0)
        return r;
    if (!nv || !nl || has_nul(nv, nl) || (pv && has_nul(pv, pl)))
        return 0;
    snap *ns = grow(im->snaps, im->n_snaps, sizeof(snap));
    if (!ns)
        return cairn__err(im->err, -ENOMEM, "out of memory");
    im->snaps = ns;
    snap *s = &ns[im->n_snaps++];
    memset(s, 0, sizeof(*s));
    s->ns = strdup(im->cur_ns);
    s->key = dupn(k, kl);
    s->backend = dupn(nv, nl);
    s->parent = pv && pl ? dupn(pv, pl) : NULL;
    if (!s->ns || !s->key || !s->backend || (pv && pl && !s->parent))
        return cairn__err(im->err, -ENOMEM, "out of memory");
    return 0;
}

static int ns_each(void *ud, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                   bool is_bucket)
{
    importer *im = ud;
    if (!is_bucket || !kl || has_nul(k, kl))
        return 0; /* "version" */
    _cleanup_free_ char *ns = dupn(k, kl);
    if (!ns)
        return cairn__err(im->err, -ENOMEM, "out of memory");
    if (im->opts->ns && strcmp(im->opts->ns, ns) != 0)
        return 0;
    im->cur_ns = ns;
    cairn__bolt_bucket b, sub, sub2;
    int r = cairn__bolt_bucket_of(im->db, v, vl, &b, im->err);
    if (r == 0 && (r = cairn__bolt_sub(&b, "content", 0, &sub, im->err)) == 1 &&
        (r = cairn__bolt_sub(&sub, "blob", 0, &sub2, im->err)) == 1)
        r = cairn__bolt_each(&sub2, blob_each, im, im->err);
    if (r >= 0 && (r = cairn__bolt_sub(&b, "images", 0, &sub, im->err)) == 1)
        r = cairn__bolt_each(&sub, image_each, im, im->err);
    if (r >= 0 && (r = cairn__bolt_sub(&b, "snapshots", 0, &sub, im->err)) == 1 &&
        (r = cairn__bolt_sub(&sub, "overlayfs", 0, &sub2, im->err)) == 1)
        r = cairn__bolt_each(&sub2, snap_each, im, im->err);
    im->cur_ns = NULL;
    return r < 0 ? r : 0;
}

static int backend_each(void *ud, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                        bool is_bucket)
{
    importer *im = ud;
    if (!is_bucket || !kl || has_nul(k, kl))
        return 0;
    cairn__bolt_bucket b;
    int r = cairn__bolt_bucket_of(im->db, v, vl, &b, im->err);
    if (r < 0)
        return r;
    const uint8_t *iv = NULL, *kv = NULL, *pv = NULL;
    size_t il = 0, kvl = 0, pl = 0;
    if ((r = cairn__bolt_get(&b, "id", &iv, &il, im->err)) < 0 ||
        (r = cairn__bolt_get(&b, "kind", &kv, &kvl, im->err)) < 0 ||
        (r = cairn__bolt_get(&b, "parent", &pv, &pl, im->err)) < 0)
        return r;
    uint64_t id;
    if (!iv || !uvarint(iv, il, &id) || !kv || kvl != 1 || (pv && has_nul(pv, pl)))
        return 0;
    backend *nb = grow(im->backends, im->n_backends, sizeof(backend));
    if (!nb)
        return cairn__err(im->err, -ENOMEM, "out of memory");
    im->backends = nb;
    backend *be = &nb[im->n_backends++];
    *be = (backend){.name = dupn(k, kl), .parent = pv && pl ? dupn(pv, pl) : NULL, .id = id,
                    .kind = kv[0]};
    return be->name ? 0 : cairn__err(im->err, -ENOMEM, "out of memory");
}

static backend *backend_find(importer *im, const char *name)
{
    for (size_t i = 0; i < im->n_backends; i++)
        if (!strcmp(im->backends[i].name, name))
            return &im->backends[i];
    return NULL;
}

static snap *snap_find(importer *im, const char *ns, const char *key)
{
    for (size_t i = 0; i < im->n_snaps; i++)
        if (!strcmp(im->snaps[i].ns, ns) && !strcmp(im->snaps[i].key, key))
            return &im->snaps[i];
    return NULL;
}

/* Open a bolt file of the root, locked shared without waiting. */
static int open_locked(importer *im, const char *path, int *out_fd, cairn__bolt **out,
                       cairn_error *err)
{
    int fd = openat(im->rootfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return cairn__err(err, -errno, "%s: %m%s", path,
                          errno == ENOENT ? " (is this a containerd root, with the overlayfs "
                                            "snapshotter?)" : "");
    if (flock(fd, LOCK_SH | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return cairn__err(err, CAIRN_E_BUSY, "%s is locked: containerd is running on this "
                              "root; stop it first (nothing was imported)", path);
        return cairn__err(err, -e, "%s: lock: %m", path);
    }
    char what[256];
    snprintf(what, sizeof(what), "%s", path);
    int r = cairn__bolt_open(fd, what, BOLT_MAX, out, err);
    if (r < 0) {
        close(fd);
        return r;
    }
    *out_fd = fd;
    return 0;
}

/* ---- blobs ---------------------------------------------------------------- */

typedef struct placed {
    blob *b;
    bool present; /* there already (here or in a lower): its labels only */
    char tmp[128];
} placed;

/* Link (or copy) one blob into tmp/ and prove it: 1 staged, 0 refused. */
static int stage_blob(importer *im, int tfd, blob *b, placed *p)
{
    const char *hex = cairn__digest_hex(b->digest);
    struct stat sb;
    if (fstatat(im->blobfd, hex, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(sb.st_mode)) {
        report(im, "blob", b->digest, "not in the content store (%s); left out",
               errno == ENOENT ? "missing" : "not a regular file");
        return 0;
    }
    int r = cairn__tmp_name(im->st, p->tmp, sizeof(p->tmp), "ctrd-blob");
    if (r < 0)
        return cairn__err(im->err, r, "staging name: %m");
    r = cairn__clone_file_at(im->blobfd, hex, tfd, p->tmp, 0);
    if (r < 0)
        return cairn__err(im->err, r, "blob %s: link into %s/tmp: %m", b->digest, im->st->path);
    if (r == 2) {
        im->stats->files_copied++;
        im->stats->bytes_copied += (uint64_t)sb.st_size;
    } else if (r == 0) {
        im->stats->files_linked++;
    }
    /* Proven where it will stay: the staged name is ours, the source is not. */
    int ok = cairn__file_is(tfd, p->tmp, (uint64_t)sb.st_size, b->digest);
    im->stats->bytes_verified += (uint64_t)sb.st_size;
    if (ok != 1 || (b->size >= 0 && b->size != sb.st_size)) {
        unlinkat(tfd, p->tmp, 0);
        report(im, "blob", b->digest, "its bytes do not match its name%s; left out",
               b->size >= 0 && b->size != sb.st_size ? " (nor its recorded size)" : "");
        return 0;
    }
    b->size = sb.st_size;
    return 1;
}

static int insert_blob_rows(importer *im, placed *p, size_t n)
{
    static const char ins[] = "INSERT INTO blobs(digest, size, media_type, created) "
                              "VALUES (?, ?, ?, ?) ON CONFLICT(digest) DO NOTHING";
    static const char ins_label[] =
        "INSERT INTO blob_labels(digest, key, value, updated) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(digest, key) DO UPDATE SET value = excluded.value, updated = excluded.updated "
        "WHERE excluded.updated > updated";
    cairn_state *st = im->st;
    int r = cairn__tx_begin(st, im->err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        blob *b = p[i].b;
        sqlite3_stmt *q;
        /* A blob a lower holds gets no row here: a row names a file of its own state. */
        if (!p[i].present) {
            if ((r = cairn__stmt(st, 0, ins, &q, im->err)) < 0)
                goto fail;
            sqlite3_bind_text(q, 1, b->digest, -1, SQLITE_STATIC);
            sqlite3_bind_int64(q, 2, b->size);
            sqlite3_bind_text(q, 3, b->media_type, -1, SQLITE_STATIC);
            sqlite3_bind_int64(q, 4, cairn__now());
            if ((r = cairn__step_done(st, 0, q, im->err)) < 0)
                goto fail;
        }
        for (size_t j = 0; j < b->n_labels; j++) {
            if ((r = cairn__stmt(st, 0, ins_label, &q, im->err)) < 0)
                goto fail;
            sqlite3_bind_text(q, 1, b->digest, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 2, b->labels[j].key, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 3, b->labels[j].value, -1, SQLITE_STATIC);
            sqlite3_bind_int64(q, 4, cairn__now_ns());
            if ((r = cairn__step_done(st, 0, q, im->err)) < 0)
                goto fail;
        }
    }
    return cairn__tx_commit(st, im->err);
fail:
    cairn__tx_rollback(st);
    return r;
}

static int import_blobs(importer *im)
{
    cairn_state *st = im->st;
    int tfd = cairn__tmpfd(st, im->err);
    if (tfd < 0)
        return tfd;
    int dfd = cairn__layer_blobfd(st, 0, im->err);
    if (dfd < 0)
        return dfd;
    placed *p = calloc(im->n_blobs + 1, sizeof(*p));
    if (!p)
        return cairn__err(im->err, -ENOMEM, "out of memory");
    size_t n = 0;
    int r = 0;
    for (size_t i = 0; i < im->n_blobs; i++, im->done++, progress(im)) {
        blob *b = &im->blobs[i];
        im->stats->blobs++;
        memset(&p[n], 0, sizeof(p[n])); /* a refused blob's slot is taken again */
        r = cairn__object_present(st, "blob", b->digest, NULL, im->err);
        if (r < 0)
            goto out;
        if (r == 1) {
            /* Labels still go in: they are containerd's and cheap. */
            b->state = S_DONE;
            im->stats->blobs_present++;
            p[n].present = true;
            p[n++].b = b;
            continue;
        }
        p[n].b = b;
        r = stage_blob(im, tfd, b, &p[n]);
        if (r < 0)
            goto out;
        if (r == 0) {
            b->state = S_REFUSED;
            im->stats->blobs_refused++;
            continue;
        }
        n++;
    }
    /* Data first: durable and in place before the rows name them. */
    r = cairn__lock(st, false, im->err);
    if (r < 0)
        goto out;
    if (syncfs(tfd) < 0)
        r = cairn__err(im->err, -errno, "%s: syncfs: %m", st->path);
    for (size_t i = 0; r == 0 && i < n; i++) {
        if (!p[i].tmp[0])
            continue;
        const char *hex = cairn__digest_hex(p[i].b->digest);
        r = cairn__rename_noreplace(tfd, p[i].tmp, dfd, hex);
        if (r == -EEXIST) {
            /* Left by a crash or a racing writer: kept when it proves to be
             * the blob, else put aside and ours put in its place. */
            r = cairn__file_is(dfd, hex, (uint64_t)p[i].b->size, p[i].b->digest) == 1
                    ? 0
                    : cairn__quarantine(st, dfd, hex, "blob", im->err);
            if (r == 0 && faccessat(dfd, hex, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
                r = cairn__rename_noreplace(tfd, p[i].tmp, dfd, hex);
            unlinkat(tfd, p[i].tmp, 0);
        }
        if (r < 0)
            r = cairn__err(im->err, r, "blob %s: into place: %m", p[i].b->digest);
        else
            p[i].tmp[0] = 0;
        p[i].b->state = S_DONE;
    }
    if (r == 0 && n && (r = cairn__fsync_at(dfd, NULL)) < 0)
        r = cairn__err(im->err, r, "%s/blobs: fsync: %m", st->path);
    if (r == 0)
        r = insert_blob_rows(im, p, n);
    cairn__unlock(st);
out:
    for (size_t i = 0; i < n + 1 && i <= im->n_blobs; i++)
        if (p[i].tmp[0])
            unlinkat(tfd, p[i].tmp, 0);
    free(p);
    return r;
}

/* ---- snapshots ------------------------------------------------------------ */

/* Open containerd's snapshot directory of `s` (snapshots/<id>). */
static int snap_dir(importer *im, snap *s, int *out)
{
    char id[32];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)s->id);
    int fd = openat(im->snapfd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        report(im, "snapshot", s->key, "its directory %s/%s: %s", SNAP_DIR, id, strerror(errno));
        return 0;
    }
    *out = fd;
    return 1;
}

/* Link the fs of containerd's snapshot into the state as `parent`/diff_id:
 * 0 done, < 0 error. */
static int place_snapshot(importer *im, int sdir, const char *parent, const char *diff_id,
                          const char *tar_digest, uint64_t size)
{
    cairn_state *st = im->st;
    int tfd = cairn__tmpfd(st, im->err);
    if (tfd < 0)
        return tfd;
    char stage[128];
    int r = cairn__tmp_name(st, stage, sizeof(stage), "ctrd-snap");
    if (r < 0)
        return cairn__err(im->err, r, "staging name: %m");
    if (mkdirat(tfd, stage, 0700) < 0)
        return cairn__err(im->err, -errno, "%s/tmp/%s: %m", st->path, stage);
    _cleanup_close_ int sfd = openat(tfd, stage, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd < 0) {
        r = cairn__err(im->err, -errno, "%s/tmp/%s: %m", st->path, stage);
        goto out;
    }
    uint64_t bytes = 0;
    char got[CAIRN_DIGEST_LEN + 1] = "";
    r = cairn__snapshot_clone(st, sdir, "fs", tfd, sfd, 0, tar_digest, &bytes, got);
    if (r == CAIRN_E_MISMATCH) {
        r = cairn__err(im->err, r, "its copy tars to %s, not %s", got, tar_digest);
        goto out;
    }
    if (r < 0) {
        r = cairn__err(im->err, r, "link its fs into %s/tmp: %m", st->path);
        goto out;
    }
    if (bytes) {
        im->stats->files_copied++;
        im->stats->bytes_copied += bytes;
    }
    r = cairn__snapshot_publish(st, sfd, "fs", parent, diff_id, tar_digest, size, im->err);
out:
    cairn__rm_rf_at(tfd, stage);
    return r;
}

/* Import containerd's snapshot `s` as the layer `diff_id` (NULL: whatever
 * its tree is) over the cairn snapshot `parent`, proving it with the layer
 * blob `layer` (may be NULL). 1 done (s->chain set), 0 refused (reported),
 * < 0 error. */
static int import_snap(importer *im, snap *s, const char *parent, const char *diff_id,
                       const blob *layer, const char *why_ctx)
{
    if (s->state == S_DONE)
        return 1;
    if (s->state == S_REFUSED)
        return 0;
    snap_met(im);
    s->state = S_REFUSED;
    _cleanup_close_ int sdir = -1;
    if (!snap_dir(im, s, &sdir)) {
        im->stats->snapshots_refused++;
        return 0;
    }
    _cleanup_close_ int fsfd = openat(sdir, "fs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fsfd < 0) {
        report(im, "snapshot", s->key, "%s/%llu/fs: %s; left out", SNAP_DIR,
               (unsigned long long)s->id, strerror(errno));
        im->stats->snapshots_refused++;
        return 0;
    }
    char what[160], canon[CAIRN_DIGEST_LEN + 1], chain[CAIRN_DIGEST_LEN + 1], why[256];
    snprintf(what, sizeof(what), "containerd snapshot %llu", (unsigned long long)s->id);
    uint64_t size = 0;
    cairn_error e2 = {0};
    /* The layer blob is read beside the tree (layer.c): unless the tree
     * tars to the DiffID itself, its entries must be the layer's. */
    _cleanup_close_ int lfd = -1;
    if (diff_id && layer && layer->state == S_DONE)
        lfd = openat(im->blobfd, cairn__digest_hex(layer->digest), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int r = cairn__layer_prove(fsfd, what, lfd, diff_id ? diff_id : "", canon, &size, why,
                               sizeof(why), &e2);
    if (r < 0) {
        report(im, "snapshot", s->key, "%s; left out", e2.message);
        im->stats->snapshots_refused++;
        return 0;
    }
    im->stats->bytes_verified += size;
    if (lfd >= 0 && strcmp(canon, diff_id) != 0)
        im->stats->layers_compared++;
    if (!diff_id)
        diff_id = canon; /* not a layer of an image: named as cairn's commit names it */
    cairn__chain_id(parent, diff_id, chain);
    if (r == 0) {
        /* Not shown by reading the layer beside it (a difference, or a
         * layer the comparison does not model): the layer applied by cairn
         * where nothing sees it decides. */
        if (lfd < 0) {
            report(im, "snapshot", s->key, "%s: its tree tars to %s, not to the layer's DiffID "
                   "%s, and the layer blob to prove it by is not there; left out", why_ctx, canon,
                   diff_id);
            im->stats->snapshots_refused++;
            return 0;
        }
        char want[CAIRN_DIGEST_LEN + 1];
        e2 = (cairn_error){0};
        r = lseek(lfd, 0, SEEK_SET) < 0
                ? cairn__err(&e2, -errno, "layer blob %s: %m", layer->digest)
                : cairn__layer_canon(im->st, parent, lfd, diff_id, want, &e2);
        im->stats->layers_applied++;
        if (r < 0) {
            report(im, "snapshot", s->key, "%s: %s; left out", why_ctx, e2.message);
            im->stats->snapshots_refused++;
            return 0;
        }
        if (strcmp(want, canon) != 0) {
            report(im, "snapshot", s->key, "%s: its tree is not the layer %s (it tars to %s, the "
                   "layer applied by cairn to %s; %s); left out", why_ctx, diff_id, canon, want,
                   why);
            im->stats->snapshots_refused++;
            return 0;
        }
    }
    cairn__snaprow row;
    r = cairn__snapshot_find(im->st, chain, &row, im->err);
    if (r < 0)
        return r;
    if (r == 1) {
        im->stats->snapshots_present++;
    } else {
        r = place_snapshot(im, sdir, parent, diff_id, canon, size);
        if (r < 0)
            return cairn__err_prefix(im->err, r, "snapshot %s (%s)", chain, s->key);
    }
    memcpy(s->chain, chain, sizeof(chain));
    s->state = S_DONE;
    return 1;
}

/* Apply the layer blob (a refused or missing snapshot's): 1 done, 0 not. */
static int unpack_layer(importer *im, const char *parent, const char *diff_id, const blob *layer,
                        const char *image_name)
{
    if (!layer || layer->state != S_DONE)
        return 0;
    _cleanup_close_ int lfd = openat(im->blobfd, cairn__digest_hex(layer->digest),
                                     O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (lfd < 0)
        return 0;
    cairn_layer_import_options o = CAIRN_LAYER_IMPORT_OPTIONS_INIT;
    o.expected_diff_id = diff_id;
    cairn_error e2 = {0};
    char chain[CAIRN_DIGEST_LEN + 1];
    int r = cairn_layer_import(im->st, parent, lfd, &o, chain, NULL, &e2);
    if (r < 0) {
        report(im, "image", image_name, "layer %s: %s", layer->digest, e2.message);
        return 0;
    }
    cairn__snaprow row;
    if (cairn__snapshot_find(im->st, chain, &row, NULL) == 1)
        im->stats->bytes_copied += row.info.size;
    im->stats->snapshots_unpacked++;
    report(im, "snapshot", chain, "applied from the layer blob %s instead (image %s)",
           layer->digest, image_name);
    return 1;
}

/* ---- images --------------------------------------------------------------- */

/* A JSON blob of the root, proven against its name (malloc'd). */
static int read_json(importer *im, const char *digest, char **out, size_t *len)
{
    blob *b = blob_find(im, digest);
    if (!b || b->state != S_DONE)
        return 0;
    int r = cairn__read_file_at(im->blobfd, cairn__digest_hex(digest), CAIRN__OCI_JSON_MAX, out,
                                len);
    if (r < 0)
        return 0;
    char got[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(*out, *len, got);
    if (strcmp(got, digest) != 0) {
        free(*out);
        *out = NULL;
        return 0;
    }
    return 1;
}

static void set_media_type(importer *im, const char *digest, const char *mt)
{
    blob *b = blob_find(im, digest);
    if (b && !b->media_type[0])
        snprintf(b->media_type, sizeof(b->media_type), "%s", mt);
}

/* The manifest an image's target resolves to for this machine. */
static int resolve(importer *im, const image *img, char manifest[CAIRN_DIGEST_LEN + 1],
                   cairn__oci_manifest *m, const char *shown)
{
    char digest[CAIRN_DIGEST_LEN + 1];
    memcpy(digest, img->target, sizeof(digest));
    char os[32], arch[32], variant[32];
    cairn__oci_host_platform(os, arch, variant);
    for (int depth = 0; depth < 4; depth++) {
        _cleanup_free_ char *buf = NULL;
        size_t len;
        if (!read_json(im, digest, &buf, &len)) {
            report(im, "image", shown, "its document %s is not in the content store (or does not "
                   "match its name); left out", digest);
            return 0;
        }
        cairn_error e2 = {0};
        if (cairn__oci_parse_manifest(buf, len, digest, m, &e2) == 0) {
            memcpy(manifest, digest, sizeof(digest));
            return 1;
        }
        cairn__oci_desc *d = NULL;
        size_t n = 0;
        cairn_error e3 = {0};
        if (cairn__oci_parse_index(buf, len, digest, &d, &n, &e3) < 0) {
            report(im, "image", shown, "%s; left out", e2.message);
            return 0;
        }
        const cairn__oci_desc *pick = NULL;
        for (size_t i = 0; i < n && !pick; i++) {
            blob *b = blob_find(im, d[i].digest);
            if (!b || b->state != S_DONE)
                continue; /* containerd fetched only some platforms */
            if (d[i].has_platform &&
                (strcmp(d[i].os, os) || strcmp(d[i].arch, arch) ||
                 (variant[0] && d[i].variant[0] && strcmp(d[i].variant, variant))))
                continue;
            pick = &d[i];
        }
        if (!pick) {
            report(im, "image", shown, "no manifest for %s/%s in the content store; left out", os,
                   arch);
            free(d);
            return 0;
        }
        set_media_type(im, pick->digest, pick->media_type);
        memcpy(digest, pick->digest, sizeof(digest));
        free(d);
    }
    report(im, "image", shown, "indexes nested too deep; left out");
    return 0;
}

static int import_image(importer *im, image *img)
{
    char shown[CAIRN_IMAGE_NAME_MAX + 64];
    bool prefix = !im->opts->ns && strcmp(img->ns, "default") != 0;
    snprintf(shown, sizeof(shown), "%s%s%s", prefix ? img->ns : "", prefix ? "/" : "", img->name);
    if (cairn_image_name_check(shown, NULL) < 0) {
        report(im, "image", shown, "not a name cairn can hold; left out");
        im->stats->images_refused++;
        return 0;
    }
    char manifest[CAIRN_DIGEST_LEN + 1];
    cairn__oci_manifest m = {0};
    cairn__oci_config cfg = {0};
    int r = 0;
    bool ok = resolve(im, img, manifest, &m, shown);
    _cleanup_free_ char *cbuf = NULL;
    size_t clen;
    if (ok) {
        set_media_type(im, m.config.digest, m.config.media_type);
        cairn_error e2 = {0};
        if (!read_json(im, m.config.digest, &cbuf, &clen)) {
            report(im, "image", shown, "its config %s is not in the content store; left out",
                   m.config.digest);
            ok = false;
        } else if (cairn__oci_parse_config(cbuf, clen, m.config.digest, &cfg, &e2) < 0) {
            report(im, "image", shown, "%s; left out", e2.message);
            ok = false;
        } else if (cfg.n_diff_ids != m.n_layers) {
            report(im, "image", shown, "its config has %zu diff ids for %zu layers; left out",
                   cfg.n_diff_ids, m.n_layers);
            ok = false;
        }
    }
    char parent[CAIRN_DIGEST_LEN + 1] = "";
    for (size_t i = 0; ok && i < m.n_layers; i++) {
        const char *diff_id = cfg.diff_ids[i];
        char chain[CAIRN_DIGEST_LEN + 1], ctx[CAIRN_IMAGE_NAME_MAX + 128];
        cairn__chain_id(parent, diff_id, chain);
        snprintf(ctx, sizeof(ctx), "image %s, layer %zu", shown, i + 1);
        set_media_type(im, m.layers[i].digest, m.layers[i].media_type);
        blob *layer = blob_find(im, m.layers[i].digest);
        cairn__snaprow row;
        r = cairn__snapshot_find(im->st, chain, &row, im->err);
        if (r < 0)
            goto out;
        snap *s = snap_find(im, img->ns, chain);
        if (r == 1) {
            if (s && s->state == S_PENDING) {
                s->state = S_DONE; /* the same tree, by its name: nothing to do */
                memcpy(s->chain, chain, sizeof(chain));
                snap_met(im);
                im->stats->snapshots_present++;
            }
        } else {
            r = 0;
            if (s && s->kind == KIND_COMMITTED)
                r = import_snap(im, s, parent[0] ? parent : NULL, diff_id, layer, ctx);
            else
                report(im, "snapshot", chain, "%s: containerd holds no committed snapshot of it",
                       ctx);
            if (r < 0)
                goto out;
            if (r == 0 && !unpack_layer(im, parent[0] ? parent : NULL, diff_id, layer, shown)) {
                report(im, "image", shown, "layer %zu (%s) has no snapshot that verifies and no "
                       "layer blob to apply; left out", i + 1, chain);
                ok = false;
            }
            r = 0;
        }
        memcpy(parent, chain, sizeof(chain));
    }
    if (ok) {
        r = cairn__image_record(im->st, shown, manifest, m.config.digest, parent, im->err);
        if (r < 0)
            goto out;
        for (size_t i = 0; i < img->n_labels; i++) {
            cairn_error e2 = {0};
            if (cairn_blob_label_set(im->st, manifest, img->labels[i].key, img->labels[i].value,
                                     &e2) < 0)
                report(im, "image", shown, "label %s: %s", img->labels[i].key, e2.message);
        }
        im->stats->images++;
    } else {
        im->stats->images_refused++;
    }
out:
    cairn__oci_manifest_clear(&m);
    cairn__oci_config_clear(&cfg);
    return r;
}

/* What the images said their blobs are, for the rows inserted before. */
static int set_media_types(importer *im)
{
    static const char sql[] = "UPDATE blobs SET media_type = ? WHERE digest = ? AND media_type = ''";
    int r = cairn__tx_begin(im->st, im->err);
    if (r < 0)
        return r;
    for (size_t i = 0; r == 0 && i < im->n_blobs; i++) {
        if (!im->blobs[i].media_type[0] || im->blobs[i].state != S_DONE)
            continue;
        sqlite3_stmt *q;
        r = cairn__stmt(im->st, 0, sql, &q, im->err);
        if (r < 0)
            break;
        sqlite3_bind_text(q, 1, im->blobs[i].media_type, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, im->blobs[i].digest, -1, SQLITE_STATIC);
        r = cairn__step_done(im->st, 0, q, im->err);
    }
    if (r < 0) {
        cairn__tx_rollback(im->st);
        return r;
    }
    return cairn__tx_commit(im->st, im->err);
}

/* The committed snapshots no image named, parents first. */
static int import_rest(importer *im)
{
    for (bool progress = true; progress;) {
        progress = false;
        for (size_t i = 0; i < im->n_snaps; i++) {
            snap *s = &im->snaps[i];
            if (s->state != S_PENDING || s->kind != KIND_COMMITTED)
                continue;
            snap *p = s->parent ? snap_find(im, s->ns, s->parent) : NULL;
            if (s->parent && (!p || p->state == S_REFUSED)) {
                s->state = S_REFUSED;
                snap_met(im);
                im->stats->snapshots_refused++;
                report(im, "snapshot", s->key, "its parent %s was not imported; left out",
                       s->parent);
                progress = true;
                continue;
            }
            if (p && p->state != S_DONE)
                continue; /* a later round */
            char ctx[256];
            snprintf(ctx, sizeof(ctx), "snapshot %s", s->key);
            int r = import_snap(im, s, p ? p->chain : NULL, NULL, NULL, ctx);
            if (r < 0)
                return r;
            progress = true;
        }
    }
    for (size_t i = 0; i < im->n_snaps; i++) {
        snap *s = &im->snaps[i];
        if (s->state == S_PENDING && s->kind == KIND_COMMITTED) {
            s->state = S_REFUSED;
            snap_met(im);
            im->stats->snapshots_refused++;
            report(im, "snapshot", s->key, "its parents form a loop; left out");
        } else if (s->state == S_PENDING) {
            im->stats->snapshots_skipped++;
        }
    }
    return 0;
}

/* ---- the whole -------------------------------------------------------------- */

static void importer_clear(importer *im)
{
    for (size_t i = 0; i < im->n_blobs; i++)
        labels_free(im->blobs[i].labels, im->blobs[i].n_labels);
    free(im->blobs);
    for (size_t i = 0; i < im->n_images; i++) {
        free(im->images[i].ns);
        free(im->images[i].name);
        labels_free(im->images[i].labels, im->images[i].n_labels);
    }
    free(im->images);
    for (size_t i = 0; i < im->n_snaps; i++) {
        free(im->snaps[i].ns);
        free(im->snaps[i].key);
        free(im->snaps[i].backend);
        free(im->snaps[i].parent);
    }
    free(im->snaps);
    for (size_t i = 0; i < im->n_backends; i++) {
        free(im->backends[i].name);
        free(im->backends[i].parent);
    }
    free(im->backends);
}

static int read_root(importer *im, const cairn__bolt *meta, const cairn__bolt *sdb)
{
    cairn__bolt_bucket root, v1;
    cairn__bolt_root(meta, &root);
    im->db = meta;
    int r = cairn__bolt_sub(&root, "v1", 0, &v1, im->err);
    if (r == 0)
        return cairn__err(im->err, CAIRN_E_FORMAT, "%s: no v1 bucket: not containerd's metadata "
                          "(or of a version cairn does not know)", META_DB);
    if (r > 0)
        r = cairn__bolt_each(&v1, ns_each, im, im->err);
    if (r < 0)
        return r;
    cairn__bolt_bucket sroot, sv1, snaps;
    cairn__bolt_root(sdb, &sroot);
    im->db = sdb;
    r = cairn__bolt_sub(&sroot, "v1", 0, &sv1, im->err);
    if (r == 1 && (r = cairn__bolt_sub(&sv1, "snapshots", 0, &snaps, im->err)) == 1)
        r = cairn__bolt_each(&snaps, backend_each, im, im->err);
    im->db = NULL;
    if (r < 0)
        return r;
    /* Join: each namespace's snapshot with the snapshotter's row. */
    for (size_t i = 0; i < im->n_snaps; i++) {
        snap *s = &im->snaps[i];
        backend *b = backend_find(im, s->backend);
        if (!b) {
            s->state = S_REFUSED;
            snap_met(im);
            im->stats->snapshots_refused++;
            report(im, "snapshot", s->key, "the snapshotter has no snapshot %s; left out",
                   s->backend);
            continue;
        }
        s->id = b->id;
        s->kind = b->kind;
    }
    return 0;
}

int cairn_containerd_import(cairn_state *st, const char *root,
                            const cairn_containerd_import_options *opts,
                            cairn_containerd_import_stats *stats, cairn_error *err)
{
    cairn_containerd_import_options def = CAIRN_CONTAINERD_IMPORT_OPTIONS_INIT;
    cairn_containerd_import_stats dummy;
    if (!opts)
        opts = &def;
    if (!stats)
        stats = &dummy;
    memset(stats, 0, sizeof(*stats));
    int r = cairn__opts_version(opts->version, CAIRN_CONTAINERD_IMPORT_OPTIONS_VERSION,
                                "containerd import", err);
    if (r < 0)
        return r;
    r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    importer im = {.st = st, .opts = opts, .stats = stats, .err = err, .rootfd = -1,
                   .blobfd = -1, .snapfd = -1};
    int meta_fd = -1, snap_fd = -1;
    cairn__bolt *meta = NULL, *sdb = NULL;
    im.rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (im.rootfd < 0) {
        r = cairn__err(err, -errno, "%s: %m", root);
        goto out;
    }
    if ((r = open_locked(&im, META_DB, &meta_fd, &meta, err)) < 0 ||
        (r = open_locked(&im, SNAP_DB, &snap_fd, &sdb, err)) < 0)
        goto out;
    r = read_root(&im, meta, sdb);
    if (r < 0)
        goto out;
    im.total = im.n_blobs;
    for (size_t i = 0; i < im.n_snaps; i++)
        im.total += im.snaps[i].kind == KIND_COMMITTED || im.snaps[i].state == S_REFUSED;
    im.done = stats->snapshots; /* refused while reading */
    progress(&im);
    im.blobfd = openat(im.rootfd, BLOB_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    im.snapfd = openat(im.rootfd, SNAP_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if ((im.blobfd < 0 && im.n_blobs) || (im.snapfd < 0 && im.n_snaps)) {
        r = cairn__err(err, -errno, "%s/%s: %m", root, im.blobfd < 0 ? BLOB_DIR : SNAP_DIR);
        goto out;
    }
    /* Media types first (documents are read from the root, proven): the
     * images say what their blobs are. Then the blobs, images, the rest. */
    r = import_blobs(&im);
    for (size_t i = 0; r >= 0 && i < im.n_images; i++)
        r = import_image(&im, &im.images[i]);
    if (r >= 0)
        r = import_rest(&im);
    if (r >= 0)
        r = set_media_types(&im);
    if (r >= 0)
        r = stats->blobs_refused || stats->snapshots_refused || stats->images_refused ? 1 : 0;
out:
    cairn__bolt_close(meta);
    cairn__bolt_close(sdb);
    if (meta_fd >= 0)
        close(meta_fd); /* drops its lock */
    if (snap_fd >= 0)
        close(snap_fd);
    if (im.rootfd >= 0)
        close(im.rootfd);
    if (im.blobfd >= 0)
        close(im.blobfd);
    if (im.snapfd >= 0)
        close(im.snapfd);
    importer_clear(&im);
    return r;
}
