/* image.c: OCI images (cairn/image.h): import, get, list, remove, export.
 *
 * Invariant: a live row of `images` (manifest != '') names a manifest blob,
 * a config blob and a top snapshot that all exist in the state or its
 * lowers. A row with manifest = '' is a tombstone: it hides a lower's row of
 * the same name (the register's last write was a removal).
 *
 * Import, in order (publish last):
 *   1. read the source: an image layout directory, or an oci-archive read
 *      once for its small files (oci-layout, index.json, JSON blobs);
 *   2. resolve: index.json, nested indexes, the manifest of the platform
 *      asked for, its config; every document checked against the digest and
 *      size its descriptor gives; the layers' chain ids from the diff ids;
 *   3. ingest: the documents and the layer blobs the store lacks, in one
 *      blob batch (one filesystem sync); an archive is read a second time,
 *      streaming only the layer blobs needed;
 *   4. apply: each layer whose snapshot is missing, in order (a layer's
 *      parent must be there before it starts), through cairn_layer_import()
 *      with the config's diff id as the expected one. With threads, 3 and 4
 *      overlap: a thread with its own state handle copies the blobs while
 *      the layers are applied from the layout's files, and an inflater
 *      thread decompresses the layers ahead into a bounded queue that a
 *      pump feeds to the importer through a pipe;
 *   5. record: one row name -> (manifest, config, top chain id).
 * A failure before 5 records nothing; blobs and snapshots made before it
 * stay (they are valid content, named by their digests) for gc to collect.
 *
 * Export writes blobs first, index.json (or the whole tar, under a
 * temporary name) last.
 */
#include "cairn-private.h"
#include "cache-private.h"
#include "oci-private.h"
#include "fsck-private.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <archive.h>
#include <archive_entry.h>

#include "cairn/image.h"
#include "cairn/layer.h"

#define CHUNK (1u << 20)
/* An oci-archive's small blobs kept in memory by its first read. */
#define ARCHIVE_CACHE_MAX (256u << 20)

int cairn_image_name_check(const char *name, cairn_error *err)
{
    if (!name || !*name)
        return cairn__err(err, -EINVAL, "image name: empty");
    size_t n = strlen(name);
    if (n > CAIRN_IMAGE_NAME_MAX)
        return cairn__err(err, -EINVAL, "image name '%.40s...': longer than %d characters", name,
                          CAIRN_IMAGE_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= ' ' || c >= 127)
            return cairn__err(err, -EINVAL,
                              "image name '%.80s': character %zu is a space or not printable ASCII",
                              name, i + 1);
    }
    return 0;
}

/* ---- the source: a layout directory or an oci-archive ------------------ */

typedef struct arc_entry {
    char name[80];   /* "index.json", "oci-layout" or a digest */
    int64_t size;
    char *data;      /* cached bytes, or NULL */
} arc_entry;

typedef struct source {
    const char *path;
    bool archive;
    int rootfd;      /* layout */
    int blobfd;      /* layout: blobs/sha256, or -1 when missing */
    arc_entry *ents; /* archive */
    size_t n_ents;
} source;

static void source_clear(source *s)
{
    if (s->rootfd >= 0)
        close(s->rootfd);
    if (s->blobfd >= 0)
        close(s->blobfd);
    for (size_t i = 0; i < s->n_ents; i++)
        free(s->ents[i].data);
    free(s->ents);
}

/* The name of an archive member in the layout: "index.json", "oci-layout",
 * "sha256:<hex>" for blobs/sha256/<hex>; NULL for anything else. */
static const char *arc_member(const char *path, char buf[80])
{
    while (path[0] == '.' && path[1] == '/')
        path += 2;
    while (*path == '/')
        path++;
    if (!strcmp(path, "index.json") || !strcmp(path, "oci-layout"))
        return path;
    if (strncmp(path, "blobs/sha256/", 13) != 0)
        return NULL;
    snprintf(buf, 80, "sha256:%.70s", path + 13);
    if (cairn_digest_check(buf, NULL) < 0)
        return NULL;
    return buf;
}

static struct archive *arc_open(const char *path, cairn_error *err)
{
    struct archive *a = archive_read_new();
    if (!a) {
        cairn__err(err, -ENOMEM, "out of memory");
        return NULL;
    }
    archive_read_support_format_tar(a);
    /* The compressions libarchive decodes in process, not all it knows:
     * for lrzip, grzip, lzop and others it runs a program from PATH,
     * chosen by the first bytes of the file. */
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_bzip2(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_zstd(a);
    if (archive_read_open_filename(a, path, CHUNK) != ARCHIVE_OK) {
        int e = archive_errno(a);
        cairn__err(err, e > 0 ? -e : CAIRN_E_FORMAT, "%s: %s", path, archive_error_string(a));
        archive_read_free(a);
        return NULL;
    }
    return a;
}

static int arc_fail(struct archive *a, const char *path, const char *what, cairn_error *err)
{
    const char *msg = archive_error_string(a);
    int e = archive_errno(a);
    int code = CAIRN_E_FORMAT;
    if (msg && (strstr(msg, "runcated") || strstr(msg, "remature")))
        code = CAIRN_E_TRUNCATED;
    else if (e == EIO || e == EACCES || e == ENOENT || e == ENOMEM || e == EISDIR)
        code = -e;
    return cairn__err(err, code, "%s: %s%s%s%s%s", path, what, what[0] ? ": " : "",
                      code == CAIRN_E_TRUNCATED ? "the archive ends early (" : "",
                      msg ? msg : "unreadable archive", code == CAIRN_E_TRUNCATED ? ")" : "");
}

/* First read of an archive: the members of the layout, small ones cached. */
static int arc_scan(source *s, cairn_error *err)
{
    struct archive *a = arc_open(s->path, err);
    if (!a)
        return err ? err->code : CAIRN_E_FORMAT;
    size_t cached = 0, cap = 0;
    int r = 0;
    struct archive_entry *e;
    for (;;) {
        int rc = archive_read_next_header(a, &e);
        if (rc == ARCHIVE_EOF)
            break;
        if (rc < ARCHIVE_WARN) {
            r = arc_fail(a, s->path, "", err);
            goto out;
        }
        if (archive_entry_filetype(e) != AE_IFREG)
            continue;
        char buf[80];
        const char *m = arc_member(archive_entry_pathname(e), buf);
        if (!m)
            continue;
        if (s->n_ents == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            arc_entry *ne = realloc(s->ents, ncap * sizeof(*ne));
            if (!ne) {
                r = cairn__err(err, -ENOMEM, "out of memory");
                goto out;
            }
            s->ents = ne;
            cap = ncap;
        }
        arc_entry *ae = &s->ents[s->n_ents++];
        memset(ae, 0, sizeof(*ae));
        snprintf(ae->name, sizeof(ae->name), "%s", m);
        ae->size = archive_entry_size(e);
        if (ae->size < 0 || (uint64_t)ae->size > CAIRN__OCI_JSON_MAX ||
            cached + (size_t)ae->size > ARCHIVE_CACHE_MAX)
            continue; /* read in the second pass, if needed */
        ae->data = malloc((size_t)ae->size + 1);
        if (!ae->data) {
            r = cairn__err(err, -ENOMEM, "out of memory");
            goto out;
        }
        la_ssize_t got = 0;
        while (got < ae->size) {
            la_ssize_t n = archive_read_data(a, ae->data + got, (size_t)(ae->size - got));
            if (n < 0) {
                r = arc_fail(a, s->path, ae->name, err);
                goto out;
            }
            if (n == 0)
                break;
            got += n;
        }
        if (got != ae->size) {
            r = cairn__err(err, CAIRN_E_TRUNCATED, "%s: %s: %lld of %lld bytes", s->path, ae->name,
                           (long long)got, (long long)ae->size);
            goto out;
        }
        ae->data[got] = 0;
        cached += (size_t)ae->size;
    }
out:
    archive_read_free(a);
    return r;
}

static arc_entry *arc_find(source *s, const char *name)
{
    /* The last member of a name wins, as when a tar is extracted. */
    for (size_t i = s->n_ents; i-- > 0;)
        if (!strcmp(s->ents[i].name, name))
            return &s->ents[i];
    return NULL;
}

static int source_open(source *s, const char *path, cairn_error *err)
{
    memset(s, 0, sizeof(*s));
    s->path = path;
    s->rootfd = -1;
    s->blobfd = -1;
    struct stat sb;
    if (stat(path, &sb) < 0)
        return cairn__err(err, -errno, "%s: %m", path);
    if (S_ISDIR(sb.st_mode)) {
        s->rootfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->rootfd < 0)
            return cairn__err(err, -errno, "%s: %m", path);
        s->blobfd = openat(s->rootfd, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->blobfd < 0 && errno != ENOENT)
            return cairn__err(err, -errno, "%s/blobs/sha256: %m", path);
        return 0;
    }
    if (!S_ISREG(sb.st_mode))
        return cairn__err(err, CAIRN_E_FORMAT,
                          "%s: neither an image layout directory nor an oci-archive file", path);
    s->archive = true;
    return arc_scan(s, err);
}

/* A top-level file of the layout (oci-layout, index.json), NUL-terminated. */
static int source_read_file(source *s, const char *name, char **out, size_t *len,
                            cairn_error *err)
{
    if (s->archive) {
        arc_entry *e = arc_find(s, name);
        if (!e)
            return cairn__err(err, CAIRN_E_FORMAT, "%s: no %s in the archive; not an oci-archive",
                              s->path, name);
        if (!e->data)
            return cairn__err(err, CAIRN_E_FORMAT, "%s: %s: larger than %u bytes", s->path, name,
                              CAIRN__OCI_JSON_MAX);
        char *d = malloc((size_t)e->size + 1);
        if (!d)
            return cairn__err(err, -ENOMEM, "out of memory");
        memcpy(d, e->data, (size_t)e->size + 1);
        *out = d;
        *len = (size_t)e->size;
        return 0;
    }
    int r = cairn__read_file_at(s->rootfd, name, CAIRN__OCI_JSON_MAX, out, len);
    if (r == -ENOENT)
        return cairn__err(err, CAIRN_E_FORMAT, "%s: no %s file; not an OCI image layout", s->path,
                          name);
    if (r == -EFBIG)
        return cairn__err(err, CAIRN_E_FORMAT, "%s/%s: larger than %u bytes", s->path, name,
                          CAIRN__OCI_JSON_MAX);
    if (r == CAIRN_E_FORMAT)
        return cairn__err(err, r, "%s/%s: not a regular file", s->path, name);
    if (r < 0)
        return cairn__err(err, r, "%s/%s: %m", s->path, name);
    return 0;
}

/* A JSON blob named by a descriptor, checked against its digest and size. */
static int source_read_blob(source *s, const cairn__oci_desc *d, const char *role, char **out,
                            size_t *len, cairn_error *err)
{
    if ((uint64_t)d->size > CAIRN__OCI_JSON_MAX)
        return cairn__err(err, CAIRN_E_FORMAT, "%s %s: %lld bytes, larger than %u", role,
                          d->digest, (long long)d->size, CAIRN__OCI_JSON_MAX);
    _cleanup_free_ char *buf = NULL;
    size_t n = 0;
    if (s->archive) {
        arc_entry *e = arc_find(s, d->digest);
        if (!e)
            return cairn__err(err, -ENOENT, "%s %s: missing from %s", role, d->digest, s->path);
        if (!e->data || e->size != d->size)
            return cairn__err(err, CAIRN_E_MISMATCH,
                              "%s %s: %lld bytes in %s, the descriptor says %lld", role, d->digest,
                              (long long)e->size, s->path, (long long)d->size);
        buf = malloc((size_t)e->size + 1);
        if (!buf)
            return cairn__err(err, -ENOMEM, "out of memory");
        memcpy(buf, e->data, (size_t)e->size + 1);
        n = (size_t)e->size;
    } else {
        int r = s->blobfd < 0 ? -ENOENT
                              : cairn__read_file_at(s->blobfd, cairn__digest_hex(d->digest),
                                                    (size_t)d->size, &buf, &n);
        if (r == -ENOENT)
            return cairn__err(err, -ENOENT, "%s %s: missing from %s/blobs/sha256", role,
                              d->digest, s->path);
        if (r == -EFBIG)
            return cairn__err(err, CAIRN_E_MISMATCH,
                              "%s %s: larger than the %lld bytes its descriptor says", role,
                              d->digest, (long long)d->size);
        if (r == CAIRN_E_FORMAT)
            return cairn__err(err, r, "%s %s: %s/blobs/sha256: not a regular file", role,
                              d->digest, s->path);
        if (r < 0)
            return cairn__err(err, r, "%s %s: %s/blobs/sha256: %m", role, d->digest, s->path);
        if ((int64_t)n != d->size)
            return cairn__err(err, n < (size_t)d->size ? CAIRN_E_TRUNCATED : CAIRN_E_MISMATCH,
                              "%s %s: %zu bytes, the descriptor says %lld", role, d->digest, n,
                              (long long)d->size);
    }
    char got[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(buf, n, got);
    if (strcmp(got, d->digest) != 0)
        return cairn__err(err, CAIRN_E_MISMATCH, "%s %s: the data's digest is %s", role,
                          d->digest, got);
    *out = steal_pointer(&buf);
    *len = n;
    return 0;
}

/* ---- resolving the image ---------------------------------------------- */

typedef struct doc {
    char digest[CAIRN_DIGEST_LEN + 1];
    char media_type[CAIRN_MEDIA_TYPE_MAX + 1];
    char *buf;
    size_t len;
} doc;

typedef struct candidate {
    cairn__oci_desc d;
    char ref_name[256];
} candidate;

typedef struct layer_job {
    cairn__oci_desc desc;
    int compression;
    char diff_id[CAIRN_DIGEST_LEN + 1];
    char chain_id[CAIRN_DIGEST_LEN + 1];
    char parent[CAIRN_DIGEST_LEN + 1]; /* "" for the base */
    bool have_blob;
    bool have_snap;
    bool done;
} layer_job;

typedef struct import {
    cairn_state *st;
    const cairn_image_import_options *opts;
    source src;
    const char *ref;          /* PATH:REF, or NULL */
    char os[32], arch[32], variant[32];
    doc *docs;                /* JSON documents to store */
    size_t n_docs, cap_docs;
    candidate *cands;
    size_t n_cands, cap_cands;
    candidate chosen;
    cairn__oci_manifest man;
    cairn__oci_config cfg;
    layer_job *jobs;
    size_t n_jobs;
    size_t walked;            /* descriptors of indexes walked, all depths */
    uint64_t index_bytes;     /* nested indexes read */
    /* progress, shared by the threads */
    pthread_mutex_t lock;
    uint64_t done, total;
} import;

static int add_doc(import *im, const cairn__oci_desc *d, const char *mt, char *buf, size_t len,
                   cairn_error *err)
{
    /* A nested index named many times is stored once. */
    for (size_t i = 0; d && i < im->n_docs; i++)
        if (!strcmp(im->docs[i].digest, d->digest)) {
            free(buf);
            return 0;
        }
    if (im->n_docs == im->cap_docs) {
        size_t nc = im->cap_docs ? im->cap_docs * 2 : 8;
        doc *nd = realloc(im->docs, nc * sizeof(*nd));
        if (!nd) {
            free(buf);
            return cairn__err(err, -ENOMEM, "out of memory");
        }
        im->docs = nd;
        im->cap_docs = nc;
    }
    doc *o = &im->docs[im->n_docs++];
    memset(o, 0, sizeof(*o));
    if (d)
        memcpy(o->digest, d->digest, sizeof(o->digest));
    else
        cairn__sha256_buf(buf, len, o->digest);
    snprintf(o->media_type, sizeof(o->media_type), "%s", mt);
    o->buf = buf;
    o->len = len;
    return 0;
}

static bool platform_match(const import *im, const cairn__oci_desc *d)
{
    if (!d->has_platform)
        return true;
    if (strcmp(d->os, im->os) || strcmp(d->arch, im->arch))
        return false;
    /* No variant asked for: any (the index lists the preferred first). */
    return !im->variant[0] || !strcmp(d->variant, im->variant);
}

/* An index tree is a DAG, not a tree: the same nested index may be named
 * many times at each level, so its walk is bounded in total, not only in
 * depth (an index naming one sub-index 1000 times, which names another 1000
 * times, would otherwise cost a million reads). */
#define WALK_DESC_MAX (1u << 14)
#define WALK_BYTES_MAX (16ull * CAIRN__OCI_JSON_MAX)

/* Walk an index's descriptors: nested indexes are read and walked, manifests
 * become candidates (inheriting the ref name of the index that names them). */
static int walk_index(import *im, const cairn__oci_desc *ds, size_t n, const char *ref_name,
                      int depth, cairn_error *err)
{
    if (depth > 8)
        return cairn__err(err, CAIRN_E_FORMAT, "%s: indexes nested more than 8 deep",
                          im->src.path);
    for (size_t i = 0; i < n; i++) {
        const cairn__oci_desc *d = &ds[i];
        if (++im->walked > WALK_DESC_MAX)
            return cairn__err(err, CAIRN_E_FORMAT,
                              "%s: the index and the indexes it names hold more than %u "
                              "descriptors in all",
                              im->src.path, WALK_DESC_MAX);
        const char *rn = d->ref_name[0] ? d->ref_name : ref_name;
        int kind = cairn__oci_desc_kind(d);
        if (kind == CAIRN__DESC_INDEX) {
            if (im->ref && (!rn || strcmp(rn, im->ref)))
                continue;
            im->index_bytes += (uint64_t)d->size;
            if (im->index_bytes > WALK_BYTES_MAX)
                return cairn__err(err, CAIRN_E_FORMAT,
                                  "%s: the nested indexes it names add up to more than %llu "
                                  "bytes",
                                  im->src.path, (unsigned long long)WALK_BYTES_MAX);
            char *buf = NULL;
            size_t len = 0;
            int r = source_read_blob(&im->src, d, "index", &buf, &len, err);
            if (r < 0)
                return r;
            cairn__oci_desc *sub = NULL;
            size_t nsub = 0;
            r = cairn__oci_parse_index(buf, len, d->digest, &sub, &nsub, err);
            if (r == 0)
                r = add_doc(im, d, d->media_type, buf, len, err);
            else
                free(buf);
            if (r == 0)
                r = walk_index(im, sub, nsub, rn, depth + 1, err);
            free(sub);
            if (r < 0)
                return r;
        } else if (kind == CAIRN__DESC_MANIFEST) {
            if (im->n_cands == im->cap_cands) {
                size_t ncap = im->cap_cands ? im->cap_cands * 2 : 8;
                candidate *nc = realloc(im->cands, ncap * sizeof(*nc));
                if (!nc)
                    return cairn__err(err, -ENOMEM, "out of memory");
                im->cands = nc;
                im->cap_cands = ncap;
            }
            candidate *c = &im->cands[im->n_cands++];
            c->d = *d;
            snprintf(c->ref_name, sizeof(c->ref_name), "%s", rn ? rn : "");
        }
        /* Anything else (artifacts, attestations) is not an image: skipped. */
    }
    return 0;
}

static int choose(import *im, cairn_error *err)
{
    /* Filter by ref, then by platform. */
    size_t by_ref = 0, pick = SIZE_MAX;
    char refs[512] = "", plats[512] = "";
    for (size_t i = 0; i < im->n_cands; i++) {
        candidate *c = &im->cands[i];
        if (im->ref && strcmp(c->ref_name, im->ref))
            continue;
        by_ref++;
        if (c->d.has_platform) {
            size_t l = strlen(plats);
            snprintf(plats + l, sizeof(plats) - l, "%s%s/%s%s%s", l ? ", " : "", c->d.os,
                     c->d.arch, c->d.variant[0] ? "/" : "", c->d.variant);
        }
        if (!platform_match(im, &c->d))
            continue;
        if (pick == SIZE_MAX) {
            pick = i;
        } else if (strcmp(im->cands[pick].ref_name, c->ref_name)) {
            /* Two images of the same platform under different names. */
            for (size_t k = 0; k < im->n_cands; k++) {
                size_t l = strlen(refs);
                if (!strstr(refs, im->cands[k].ref_name))
                    snprintf(refs + l, sizeof(refs) - l, "%s'%s'", l ? ", " : "",
                             im->cands[k].ref_name);
            }
            return cairn__err(err, -EINVAL,
                              "%s: the layout holds several images (%s); name one as PATH:REF",
                              im->src.path, refs);
        } else if (!c->d.has_platform && im->cands[pick].d.has_platform) {
            continue; /* prefer the one that says it matches */
        }
    }
    if (pick == SIZE_MAX) {
        if (im->ref && by_ref == 0)
            return cairn__err(err, -ENOENT, "%s: no image named '%s' in the index", im->src.path,
                              im->ref);
        if (by_ref == 0)
            return cairn__err(err, -ENOENT, "%s: the index names no image manifest",
                              im->src.path);
        return cairn__err(err, -ENOENT, "%s: no manifest for platform %s/%s%s%s (the index has %s)",
                          im->src.path, im->os, im->arch, im->variant[0] ? "/" : "", im->variant,
                          plats[0] ? plats : "none");
    }
    im->chosen = im->cands[pick];
    return 0;
}

static int snapshot_exists(cairn_state *st, const char *chain_id, cairn_error *err)
{
    static const char sql[] = "SELECT 1 FROM snapshots WHERE chain_id = ?";
    for (size_t i = 0; i < st->n_layers; i++) {
        sqlite3_stmt *s = cairn__stmt(st, i, sql, err);
        if (!s)
            return err ? err->code : CAIRN_E_DB;
        sqlite3_bind_text(s, 1, chain_id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc == SQLITE_ROW)
            return 1;
        if (rc != SQLITE_DONE)
            return cairn__err_db(err, st->layers[i].db, rc, "snapshot lookup");
    }
    return 0;
}

static int resolve(import *im, cairn_error *err)
{
    source *s = &im->src;
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    char what[4200];
    int r = source_read_file(s, "oci-layout", &buf, &len, err);
    if (r < 0)
        return r;
    snprintf(what, sizeof(what), "%s%soci-layout", s->path, s->archive ? ": " : "/");
    r = cairn__oci_check_layout(buf, len, what, err);
    if (r < 0)
        return r;
    free(steal_pointer(&buf));
    r = source_read_file(s, "index.json", &buf, &len, err);
    if (r < 0)
        return r;
    snprintf(what, sizeof(what), "%s%sindex.json", s->path, s->archive ? ": " : "/");
    cairn__oci_desc *ds = NULL;
    size_t n = 0;
    r = cairn__oci_parse_index(buf, len, what, &ds, &n, err);
    if (r < 0)
        return r;
    r = add_doc(im, NULL, CAIRN__MT_OCI_INDEX, steal_pointer(&buf), len, err);
    if (r == 0)
        r = walk_index(im, ds, n, NULL, 0, err);
    free(ds);
    if (r < 0)
        return r;
    r = choose(im, err);
    if (r < 0)
        return r;

    /* The manifest and its config. */
    const cairn__oci_desc *md = &im->chosen.d;
    r = source_read_blob(s, md, "manifest", &buf, &len, err);
    if (r < 0)
        return r;
    r = cairn__oci_parse_manifest(buf, len, md->digest, &im->man, err);
    if (r < 0)
        return r;
    r = add_doc(im, md, im->man.docker ? CAIRN__MT_DOCKER_MANIFEST : CAIRN__MT_OCI_MANIFEST,
                steal_pointer(&buf), len, err);
    if (r < 0)
        return r;
    const cairn__oci_desc *cd = &im->man.config;
    r = source_read_blob(s, cd, "config", &buf, &len, err);
    if (r < 0)
        return cairn__err_prefix(err, r, "manifest %s", md->digest);
    r = cairn__oci_parse_config(buf, len, cd->digest, &im->cfg, err);
    if (r < 0)
        return r;
    r = add_doc(im, cd,
                cd->media_type[0] ? cd->media_type
                : im->man.docker  ? CAIRN__MT_DOCKER_CONFIG
                                  : CAIRN__MT_OCI_CONFIG,
                steal_pointer(&buf), len, err);
    if (r < 0)
        return r;
    /* The index did not say: the config does. */
    if (!md->has_platform && (strcmp(im->cfg.os, im->os) || strcmp(im->cfg.arch, im->arch)))
        return cairn__err(err, -ENOENT,
                          "%s: no manifest for platform %s/%s: the image is for %s/%s (import it "
                          "with --platform %s/%s)",
                          s->path, im->os, im->arch, im->cfg.os, im->cfg.arch, im->cfg.os,
                          im->cfg.arch);
    if (im->cfg.n_diff_ids != im->man.n_layers)
        return cairn__err(err, CAIRN_E_FORMAT,
                          "config %s: %zu diff ids for the %zu layers of manifest %s", cd->digest,
                          im->cfg.n_diff_ids, im->man.n_layers, md->digest);

    /* The layers and their snapshots. */
    im->jobs = calloc(im->man.n_layers ? im->man.n_layers : 1, sizeof(*im->jobs));
    if (!im->jobs)
        return cairn__err(err, -ENOMEM, "out of memory");
    im->n_jobs = im->man.n_layers;
    for (size_t i = 0; i < im->n_jobs; i++) {
        layer_job *j = &im->jobs[i];
        j->desc = im->man.layers[i];
        cairn__oci_layer_type(j->desc.media_type, &j->compression);
        memcpy(j->diff_id, im->cfg.diff_ids[i], sizeof(j->diff_id));
        if (i > 0)
            memcpy(j->parent, im->jobs[i - 1].chain_id, sizeof(j->parent));
        cairn__oci_chain_id(j->parent, j->diff_id, j->chain_id);
        r = cairn_blob_exists(im->st, j->desc.digest, err);
        if (r < 0)
            return r;
        j->have_blob = r > 0;
        r = snapshot_exists(im->st, j->chain_id, err);
        if (r < 0)
            return r;
        j->have_snap = r > 0;
    }
    return 0;
}

/* ---- ingest ----------------------------------------------------------- */

static void progress_add(import *im, uint64_t n)
{
    if (!im->opts->progress)
        return;
    pthread_mutex_lock(&im->lock);
    im->done += n;
    im->opts->progress(im->opts->progress_userdata, im->done, im->total);
    pthread_mutex_unlock(&im->lock);
}

static int ingest_layer_fd(import *im, cairn_blob_batch *b, layer_job *j, size_t idx,
                           cairn_error *err)
{
    _cleanup_close_ int fd = im->src.blobfd < 0
                                 ? -1
                                 : openat(im->src.blobfd, cairn__digest_hex(j->desc.digest),
                                          O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0 && (im->src.blobfd < 0 || errno == ENOENT))
        return cairn__err(err, -ENOENT, "layer %zu (%s) of manifest %s: missing from %s/blobs/sha256",
                          idx, j->desc.digest, im->chosen.d.digest, im->src.path);
    if (fd < 0)
        return cairn__err(err, -errno, "layer %s: %s/blobs/sha256: %m", j->desc.digest,
                          im->src.path);
    /* Opened without blocking: a FIFO there must not hang the import. */
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return cairn__err(err, -errno, "layer %s: %s/blobs/sha256: %m", j->desc.digest,
                          im->src.path);
    if (!S_ISREG(sb.st_mode))
        return cairn__err(err, CAIRN_E_FORMAT, "layer %zu (%s) of manifest %s: %s/blobs/sha256: "
                          "not a regular file", idx, j->desc.digest, im->chosen.d.digest,
                          im->src.path);
    cairn_blob_put_options po = CAIRN_BLOB_PUT_OPTIONS_INIT;
    po.expected = j->desc.digest;
    po.expected_size = j->desc.size;
    po.media_type = j->desc.media_type;
    int r = cairn_blob_batch_put_fd(b, fd, &po, NULL, err);
    if (r < 0)
        return cairn__err_prefix(err, r, "layer %zu of manifest %s", idx, im->chosen.d.digest);
    progress_add(im, (uint64_t)j->desc.size);
    return 0;
}

/* Second read of an archive: stream the layer blobs the store lacks. */
static int ingest_layers_archive(import *im, cairn_error *err)
{
    bool want = false;
    for (size_t i = 0; i < im->n_jobs; i++)
        if (!im->jobs[i].have_blob) {
            if (!arc_find(&im->src, im->jobs[i].desc.digest))
                return cairn__err(err, -ENOENT, "layer %zu (%s) of manifest %s: missing from %s",
                                  i, im->jobs[i].desc.digest, im->chosen.d.digest, im->src.path);
            want = true;
        }
    if (!want)
        return 0;
    struct archive *a = arc_open(im->src.path, err);
    if (!a)
        return err ? err->code : CAIRN_E_FORMAT;
    _cleanup_free_ char *buf = malloc(CHUNK);
    if (!buf) {
        archive_read_free(a);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    int r = 0;
    struct archive_entry *e;
    for (;;) {
        int rc = archive_read_next_header(a, &e);
        if (rc == ARCHIVE_EOF)
            break;
        if (rc < ARCHIVE_WARN) {
            r = arc_fail(a, im->src.path, "", err);
            break;
        }
        if (archive_entry_filetype(e) != AE_IFREG)
            continue;
        char nb[80];
        const char *m = arc_member(archive_entry_pathname(e), nb);
        if (!m || strncmp(m, "sha256:", 7))
            continue;
        layer_job *j = NULL;
        size_t idx = 0;
        for (size_t i = 0; i < im->n_jobs; i++)
            if (!im->jobs[i].have_blob && !strcmp(im->jobs[i].desc.digest, m)) {
                j = &im->jobs[i];
                idx = i;
            }
        if (!j)
            continue;
        cairn_blob_put_options po = CAIRN_BLOB_PUT_OPTIONS_INIT;
        po.expected = j->desc.digest;
        po.expected_size = j->desc.size;
        po.media_type = j->desc.media_type;
        cairn_blob_writer *w = NULL;
        r = cairn_blob_writer_new(&w, im->st, &po, err);
        if (r < 0)
            break;
        for (;;) {
            la_ssize_t n = archive_read_data(a, buf, CHUNK);
            if (n < 0) {
                r = arc_fail(a, im->src.path, j->desc.digest, err);
                break;
            }
            if (n == 0)
                break;
            r = cairn_blob_writer_write(w, buf, (size_t)n, err);
            if (r < 0)
                break;
            progress_add(im, (uint64_t)n);
        }
        if (r == 0)
            r = cairn_blob_writer_commit(w, NULL, err);
        cairn_blob_writer_free(w);
        if (r < 0) {
            r = cairn__err_prefix(err, r, "layer %zu of manifest %s", idx, im->chosen.d.digest);
            break;
        }
        /* Several members of one name: the first one ingested is enough. */
        for (size_t i = 0; i < im->n_jobs; i++)
            if (!strcmp(im->jobs[i].desc.digest, j->desc.digest))
                im->jobs[i].have_blob = true;
    }
    archive_read_free(a);
    if (r < 0)
        return r;
    for (size_t i = 0; i < im->n_jobs; i++)
        if (!im->jobs[i].have_blob)
            return cairn__err(err, CAIRN_E_TRUNCATED,
                              "layer %zu (%s) of manifest %s: not found on a second read of %s "
                              "(did it change?)",
                              i, im->jobs[i].desc.digest, im->chosen.d.digest, im->src.path);
    return 0;
}

/* Into `st`: im->st, or a handle of the same state for a thread of its own. */
static int ingest(import *im, cairn_state *st, cairn_error *err)
{
    cairn_blob_batch *b = NULL;
    int r = cairn_blob_batch_new(&b, st, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < im->n_docs && r == 0; i++) {
        cairn_blob_put_options po = CAIRN_BLOB_PUT_OPTIONS_INIT;
        po.expected = im->docs[i].digest;
        po.media_type = im->docs[i].media_type;
        r = cairn_blob_batch_put_buf(b, im->docs[i].buf, im->docs[i].len, &po, NULL, err);
    }
    if (!im->src.archive) {
        for (size_t i = 0; i < im->n_jobs && r == 0; i++) {
            layer_job *j = &im->jobs[i];
            bool dup = false; /* the same blob twice in one manifest */
            for (size_t k = 0; k < i; k++)
                dup |= !strcmp(im->jobs[k].desc.digest, j->desc.digest);
            if (!j->have_blob && !dup)
                r = ingest_layer_fd(im, b, j, i, err);
        }
    }
    if (r == 0)
        r = cairn_blob_batch_commit(b, err);
    cairn_blob_batch_free(b);
    if (r < 0)
        return r;
    if (im->src.archive)
        return ingest_layers_archive(im, err);
    return 0;
}

/* Ingest beside the applying: layers are applied from the source's files
 * (their diff ids check them), while this thread copies the same files into
 * the store (their digests check them). */
typedef struct ingest_thread {
    import *im;
    int r;
    cairn_error err;
    pthread_t th;
} ingest_thread;

static void *ingest_main(void *arg)
{
    ingest_thread *t = arg;
    cairn_state *st = NULL;
    t->r = cairn_state_open(&st, t->im->st->path, 0, &t->err);
    if (t->r == 0)
        t->r = ingest(t->im, st, &t->err);
    cairn_state_free(st);
    return NULL;
}

/* ---- apply ------------------------------------------------------------ */

/* A layer's snapshot needs its parent's to be there before it starts, so
 * layers are applied one after the other. What runs beside the applying is
 * the decompression: one thread (the inflater) decompresses the layers in
 * order, running ahead into a bounded queue of plain-tar chunks per layer,
 * and a pump thread feeds the current layer's chunks into a pipe from which
 * cairn_layer_import() reads. So the inflater keeps working while a layer is
 * being hashed, checked and published, and inflating, hashing and writing
 * files share the CPUs. */

#define READAHEAD_MAX (128u << 20)

typedef struct chunk {
    struct chunk *next;
    size_t len;
    char data[];
} chunk;

typedef struct lqueue {
    chunk *head, *tail;
    bool eof;        /* the inflater is done with this layer */
    int code;        /* 0, or why inflating stopped */
    char msg[256];
} lqueue;

typedef struct prefetch {
    import *im;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    lqueue *q;       /* one per layer */
    int *fds;        /* the layers' blobs, opened beforehand (owned) */
    size_t buffered;
    bool stop;
    pthread_t th;
} prefetch;

/* The blob of layer i: from the layout when it has it (it may be being
 * ingested right now), else from the store. */
static int open_layer(import *im, cairn_state *st, size_t i, int *out, cairn_error *err)
{
    layer_job *j = &im->jobs[i];
    int fd = im->src.blobfd >= 0 ? openat(im->src.blobfd, cairn__digest_hex(j->desc.digest),
                                          O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
                                 : -1;
    if (fd >= 0) {
        /* Not blocking on a FIFO there; ingest refuses what is not a file. */
        struct stat sb;
        if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
            close(fd);
            return cairn__err(err, CAIRN_E_FORMAT,
                              "layer %zu (%s) of manifest %s: %s/blobs/sha256: not a regular file",
                              i, j->desc.digest, im->chosen.d.digest, im->src.path);
        }
        *out = fd;
        return 0;
    }
    int r = cairn_blob_open(st, j->desc.digest, 0, out, err);
    if (r < 0)
        return cairn__err_prefix(err, r, "layer %zu of manifest %s", i, im->chosen.d.digest);
    return 0;
}

static void ra_finish(prefetch *ra, size_t i, int code, const char *msg)
{
    pthread_mutex_lock(&ra->lock);
    ra->q[i].eof = true;
    ra->q[i].code = code;
    if (msg)
        snprintf(ra->q[i].msg, sizeof(ra->q[i].msg), "%s", msg);
    pthread_cond_broadcast(&ra->cond);
    pthread_mutex_unlock(&ra->lock);
}

static void *inflate_main(void *arg)
{
    prefetch *ra = arg;
    import *im = ra->im;
    for (size_t i = 0; i < im->n_jobs; i++) {
        if (im->jobs[i].have_snap)
            continue;
        /* The state handle is the applier's: the blob was opened before. */
        _cleanup_close_ int fd = steal_fd(&ra->fds[i]);
        struct archive *a = archive_read_new();
        if (!a) {
            ra_finish(ra, i, -ENOMEM, "out of memory");
            continue;
        }
        /* Exactly the compression the media type names, once: not whatever
         * libarchive recognises (xz, bzip2, lrzip through an external
         * program, a gzip inside a gzip), which a layer of that type may
         * not be. */
        int comp = im->jobs[i].compression;
        const char *cname = comp == CAIRN__COMP_ZSTD ? "zstd" : "gzip";
        if (comp != CAIRN__COMP_NONE &&
            archive_read_append_filter(a, comp == CAIRN__COMP_ZSTD ? ARCHIVE_FILTER_ZSTD
                                                                   : ARCHIVE_FILTER_GZIP) !=
                ARCHIVE_OK) {
            ra_finish(ra, i, CAIRN_E_FORMAT, archive_error_string(a));
            archive_read_free(a);
            continue;
        }
        archive_read_support_format_raw(a);
        struct archive_entry *ae;
        if (archive_read_open_fd(a, fd, CHUNK) != ARCHIVE_OK ||
            archive_read_next_header(a, &ae) != ARCHIVE_OK) {
            char m[256];
            snprintf(m, sizeof(m), "not %s as its media type says (%s)", cname,
                     archive_error_string(a));
            ra_finish(ra, i, CAIRN_E_FORMAT, comp != CAIRN__COMP_NONE ? m : archive_error_string(a));
            archive_read_free(a);
            continue;
        }
        uint64_t reported = 0;
        int code = 0;
        const char *msg = NULL;
        for (;;) {
            const void *b;
            size_t len;
            int64_t off;
            int rc = archive_read_data_block(a, &b, &len, &off);
            if (rc == ARCHIVE_EOF)
                break;
            if (rc < ARCHIVE_WARN) {
                msg = archive_error_string(a);
                code = msg && (strstr(msg, "runcated") || strstr(msg, "remature"))
                           ? CAIRN_E_TRUNCATED
                           : CAIRN_E_FORMAT;
                if (!msg)
                    msg = "decompression failed";
                break;
            }
            chunk *c = malloc(sizeof(*c) + len);
            if (!c) {
                code = -ENOMEM;
                msg = "out of memory";
                break;
            }
            c->next = NULL;
            c->len = len;
            memcpy(c->data, b, len);
            pthread_mutex_lock(&ra->lock);
            while (ra->buffered >= READAHEAD_MAX && !ra->stop)
                pthread_cond_wait(&ra->cond, &ra->lock);
            bool stop = ra->stop;
            if (!stop) {
                lqueue *q = &ra->q[i];
                if (q->tail)
                    q->tail->next = c;
                else
                    q->head = c;
                q->tail = c;
                ra->buffered += len;
                pthread_cond_broadcast(&ra->cond);
            }
            pthread_mutex_unlock(&ra->lock);
            if (stop) {
                free(c);
                archive_read_free(a);
                return NULL;
            }
            int64_t in = archive_filter_bytes(a, -1);
            if (in > 0 && (uint64_t)in > reported) {
                progress_add(im, (uint64_t)in - reported);
                reported = (uint64_t)in;
            }
        }
        if (code == 0 && reported < (uint64_t)im->jobs[i].desc.size)
            progress_add(im, (uint64_t)im->jobs[i].desc.size - reported);
        ra_finish(ra, i, code, msg);
        archive_read_free(a);
    }
    return NULL;
}

typedef struct pump {
    prefetch *ra;
    size_t i;
    int out_fd;      /* the pipe's write end (owned, closed at the end) */
    pthread_t th;
} pump;

static void *pump_main(void *arg)
{
    pump *p = arg;
    prefetch *ra = p->ra;
    lqueue *q = &ra->q[p->i];
    /* The reader may stop early (a bad layer): a write to its closed pipe
     * must fail with EPIPE, not kill the process. */
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    bool epipe = false;
    for (;;) {
        pthread_mutex_lock(&ra->lock);
        while (!q->head && !q->eof && !ra->stop)
            pthread_cond_wait(&ra->cond, &ra->lock);
        chunk *c = q->head;
        if (c) {
            q->head = c->next;
            if (!q->head)
                q->tail = NULL;
            ra->buffered -= c->len;
            pthread_cond_broadcast(&ra->cond);
        }
        pthread_mutex_unlock(&ra->lock);
        if (!c)
            break; /* the end of this layer's stream (or stop) */
        int r = epipe ? 0 : cairn__write_all(p->out_fd, c->data, c->len);
        free(c);
        if (r == -EPIPE)
            epipe = true; /* drain the queue, so the inflater is not held up */
        else if (r < 0)
            break;
    }
    close(p->out_fd);
    if (epipe) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return NULL;
}

struct layer_progress {
    import *im;
    uint64_t last;
};

static void layer_progress_cb(void *ud, uint64_t done, uint64_t total)
{
    struct layer_progress *p = ud;
    if (done > p->last) {
        progress_add(p->im, done - p->last);
        p->last = done;
    }
}

static int apply_one(import *im, prefetch *ra, size_t i, cairn_error *err)
{
    cairn_state *st = im->st;
    layer_job *j = &im->jobs[i];
    cairn_layer_import_options lo = CAIRN_LAYER_IMPORT_OPTIONS_INIT;
    lo.expected_diff_id = j->diff_id;
    struct layer_progress lp = {im, 0};
    _cleanup_close_ int fd = -1;
    pump p = {.ra = ra, .i = i, .out_fd = -1};
    bool pumping = false;
    int r;
    if (ra) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0)
            return cairn__err(err, -errno, "layer %zu: pipe: %m", i);
        fcntl(fds[1], F_SETPIPE_SZ, 1 << 20); /* fewer switches; a smaller pipe works too */
        fd = fds[0];
        p.out_fd = fds[1];
        int e = pthread_create(&p.th, NULL, pump_main, &p);
        if (e) {
            close(p.out_fd);
            return cairn__err(err, -e, "layer %zu: starting a thread: %m", i);
        }
        pumping = true;
    } else {
        r = open_layer(im, st, i, &fd, err);
        if (r < 0)
            return r;
        if (im->opts->progress) {
            lo.progress = layer_progress_cb;
            lo.progress_userdata = &lp;
        }
    }
    char chain[CAIRN_DIGEST_LEN + 1], diff[CAIRN_DIGEST_LEN + 1];
    r = cairn_layer_import(st, j->parent[0] ? j->parent : NULL, fd, &lo, chain, diff, err);
    if (pumping) {
        /* Unblock the pump if the import stopped reading early. */
        close(steal_fd(&fd));
        pthread_join(p.th, NULL);
        pthread_mutex_lock(&ra->lock);
        int code = ra->q[i].code;
        char msg[256];
        memcpy(msg, ra->q[i].msg, sizeof(msg));
        pthread_mutex_unlock(&ra->lock);
        /* The cause is the compressed stream, not the tar it cut short. */
        if (code)
            r = cairn__err(err, code, "the compressed stream is corrupt (%s)", msg);
    } else if (r == 0 && lp.last < (uint64_t)j->desc.size) {
        progress_add(im, (uint64_t)j->desc.size - lp.last);
    }
    if (r < 0)
        return cairn__err_prefix(err, r, "layer %zu (%s) of manifest %s", i, j->desc.digest,
                                 im->chosen.d.digest);
    if (strcmp(chain, j->chain_id) != 0)
        return cairn__err(err, CAIRN_E_CORRUPT,
                          "layer %zu (%s): applied as snapshot %s, expected chain id %s", i,
                          j->desc.digest, chain, j->chain_id);
    return 0;
}

static bool threaded(import *im)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return im->opts->jobs ? im->opts->jobs > 1 : cpus > 1;
}

static int apply(import *im, cairn_error *err)
{
    prefetch ra = {.im = im};
    bool started = false;
    if (threaded(im)) {
        ra.q = calloc(im->n_jobs ? im->n_jobs : 1, sizeof(*ra.q));
        ra.fds = malloc((im->n_jobs ? im->n_jobs : 1) * sizeof(*ra.fds));
        if (!ra.q || !ra.fds) {
            free(ra.q);
            free(ra.fds);
            return cairn__err(err, -ENOMEM, "out of memory");
        }
        int r = 0;
        for (size_t i = 0; i < im->n_jobs; i++)
            ra.fds[i] = -1;
        for (size_t i = 0; i < im->n_jobs && r == 0; i++)
            if (!im->jobs[i].have_snap)
                r = open_layer(im, im->st, i, &ra.fds[i], err);
        if (r < 0) {
            for (size_t i = 0; i < im->n_jobs; i++)
                if (ra.fds[i] >= 0)
                    close(ra.fds[i]);
            free(ra.q);
            free(ra.fds);
            return r;
        }
        pthread_mutex_init(&ra.lock, NULL);
        pthread_cond_init(&ra.cond, NULL);
        started = pthread_create(&ra.th, NULL, inflate_main, &ra) == 0;
    }
    int r = 0;
    for (size_t i = 0; i < im->n_jobs && r == 0; i++)
        if (!im->jobs[i].have_snap)
            r = apply_one(im, started ? &ra : NULL, i, err);
    if (ra.q) {
        if (started) {
            pthread_mutex_lock(&ra.lock);
            ra.stop = true;
            pthread_cond_broadcast(&ra.cond);
            pthread_mutex_unlock(&ra.lock);
            pthread_join(ra.th, NULL);
        }
        for (size_t i = 0; i < im->n_jobs; i++)
            for (chunk *c = ra.q[i].head, *n; c; c = n) {
                n = c->next;
                free(c);
            }
        for (size_t i = 0; i < im->n_jobs; i++)
            if (ra.fds[i] >= 0)
                close(ra.fds[i]);
        free(ra.q);
        free(ra.fds);
        pthread_mutex_destroy(&ra.lock);
        pthread_cond_destroy(&ra.cond);
    }
    return r;
}

/* ---- the images table ------------------------------------------------- */

static int record_locked(cairn_state *st, const char *name, const char *manifest,
                         const char *config, const char *top, cairn_error *err);

/* Publish last, under the state's lock held shared: what the row names is
 * checked to be there and counted as used, so a gc (which deletes under the
 * lock held exclusive, and keeps what was used during its run) cannot take
 * it between the check and the row. */
static int record(cairn_state *st, const char *name, const char *manifest, const char *config,
                  const char *top, cairn_error *err)
{
    int r = cairn__lock(st, false, err);
    if (r < 0)
        return r;
    const char *blobs[] = {manifest, config};
    for (size_t i = 0; r == 0 && i < 2; i++) {
        if (!blobs[i][0])
            continue;
        int p = cairn__object_present(st, "blob", blobs[i], NULL, err);
        if (p == 0)
            r = cairn__err(err, -ENOENT, "image %s: blob %s was removed while importing; import again",
                           name, blobs[i]);
        else if (p < 0)
            r = p;
        else
            cairn__usage_mark(st, "blob", blobs[i], 0, NULL);
    }
    if (r == 0 && top[0]) {
        int p = cairn__object_present(st, "snapshot", top, NULL, err);
        if (p == 0)
            r = cairn__err(err, -ENOENT,
                           "image %s: snapshot %s was removed while importing; import again", name,
                           top);
        else if (p < 0)
            r = p;
        else
            cairn__usage_mark(st, "snapshot", top, 0, NULL);
    }
    if (r == 0)
        r = record_locked(st, name, manifest, config, top, err);
    cairn__unlock(st);
    return r;
}

static int record_locked(cairn_state *st, const char *name, const char *manifest,
                         const char *config, const char *top, cairn_error *err)
{
    static const char sql[] =
        "INSERT INTO images(name, manifest, config, top, updated) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET manifest = excluded.manifest, config = excluded.config, "
        "top = excluded.top, updated = max(excluded.updated, images.updated + 1)";
    int r = cairn__tx_begin(st, err);
    if (r < 0)
        return r;
    sqlite3_stmt *q = cairn__stmt(st, 0, sql, err);
    if (!q) {
        cairn__tx_rollback(st);
        return err ? err->code : CAIRN_E_DB;
    }
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, manifest, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, config, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, top, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 5, cairn__now_ns());
    r = cairn__step_done(st, 0, q, err);
    if (r < 0) {
        cairn__tx_rollback(st);
        return r;
    }
    return cairn__tx_commit(st, err);
}

static void row_info(sqlite3_stmt *s, size_t layer, cairn_image_info *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", cairn__col(s, 0));
    snprintf(out->manifest, sizeof(out->manifest), "%s", cairn__col(s, 1));
    snprintf(out->config, sizeof(out->config), "%s", cairn__col(s, 2));
    snprintf(out->top, sizeof(out->top), "%s", cairn__col(s, 3));
    out->updated = sqlite3_column_int64(s, 4);
    out->lower = (int)layer;
}

/* The register's order (the merge rule of `images`, lib/merge.c): the newest
 * write wins, ties broken by (manifest, config, top). > 0 when a beats b. */
static int row_newer(const cairn_image_info *a, const cairn_image_info *b)
{
    if (a->updated != b->updated)
        return a->updated > b->updated ? 1 : -1;
    int c = strcmp(a->manifest, b->manifest);
    if (!c)
        c = strcmp(a->config, b->config);
    if (!c)
        c = strcmp(a->top, b->top);
    return c;
}

/* The winning row of `name` over layers `from`.. (newest across the layers,
 * as a merge would keep): its layer, or -ENOENT. A tombstone is returned as
 * a row (manifest ""). */
static int find_row(cairn_state *st, const char *name, size_t from, cairn_image_info *out,
                    cairn_error *err)
{
    static const char sql[] =
        "SELECT name, manifest, config, top, updated FROM images WHERE name = ?";
    int found = -ENOENT;
    cairn_image_info best, cur;
    for (size_t i = from; i < st->n_layers; i++) {
        sqlite3_stmt *s = cairn__stmt(st, i, sql, err);
        if (!s)
            return err ? err->code : CAIRN_E_DB;
        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            row_info(s, i, &cur);
            if (found < 0 || row_newer(&cur, &best) > 0) {
                best = cur;
                found = (int)i;
            }
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            return cairn__err_db(err, st->layers[i].db, rc, "image lookup");
    }
    if (found >= 0 && out)
        *out = best;
    return found;
}

/* Layers and their size, from the manifest blob (left 0 when it cannot be read). */
static void fill_manifest_info(cairn_state *st, cairn_image_info *info)
{
    void *buf = NULL;
    size_t len = 0;
    if (cairn_blob_read(st, info->manifest, &buf, &len, NULL) < 0)
        return;
    cairn__oci_manifest m = {0};
    if (cairn__oci_parse_manifest(buf, len, info->manifest, &m, NULL) == 0) {
        info->layers = (unsigned)m.n_layers;
        for (size_t i = 0; i < m.n_layers; i++)
            info->size += (uint64_t)m.layers[i].size;
        cairn__oci_manifest_clear(&m);
    }
    free(buf);
}

int cairn_image_get(cairn_state *st, const char *name, cairn_image_info *out, cairn_error *err)
{
    int r = cairn_image_name_check(name, err);
    if (r < 0)
        return r;
    cairn_image_info info;
    r = find_row(st, name, 0, &info, err);
    if (r == -ENOENT || (r >= 0 && !info.manifest[0]))
        return cairn__err(err, -ENOENT, "image '%s': not found", name);
    if (r < 0)
        return r;
    fill_manifest_info(st, &info);
    if (out)
        *out = info;
    return 0;
}

struct list_ctx {
    cairn_image_fn fn;
    void *ud;
    cairn_image_info best; /* the winning row of the name being read */
};

static int list_row(void *ud, size_t layer, sqlite3_stmt *s, bool first)
{
    struct list_ctx *c = ud;
    cairn_image_info info;
    row_info(s, layer, &info);
    if (first || row_newer(&info, &c->best) > 0)
        c->best = info;
    return 0;
}

static int list_emit(void *ud)
{
    struct list_ctx *c = ud;
    if (!c->best.manifest[0])
        return 0; /* tombstone */
    return c->fn(c->ud, &c->best);
}

int cairn_image_list(cairn_state *st, cairn_image_fn fn, void *userdata, cairn_error *err)
{
    static const char sql[] =
        "SELECT name, manifest, config, top, updated FROM images ORDER BY name";
    struct list_ctx c = {.fn = fn, .ud = userdata};
    return cairn__union_walk_all(st, sql, NULL, list_row, list_emit, &c, err);
}

int cairn_image_remove(cairn_state *st, const char *name, cairn_error *err)
{
    int r = cairn_image_name_check(name, err);
    if (r < 0)
        return r;
    r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    r = cairn__tx_begin(st, err);
    if (r < 0)
        return r;
    cairn_image_info top, below;
    r = find_row(st, name, 0, &top, err);
    if (r == -ENOENT || (r >= 0 && !top.manifest[0])) {
        r = cairn__err(err, -ENOENT, "image '%s': not found", name);
        goto fail;
    }
    if (r < 0)
        goto fail;
    /* A live row in a lower would show through: hide it with a tombstone. */
    int lr = find_row(st, name, 1, &below, err);
    if (lr < 0 && lr != -ENOENT) {
        r = lr;
        goto fail;
    }
    if (lr > 0 && below.manifest[0]) {
        /* A tombstone names nothing: no object to check, so no state lock,
         * which would come after this open transaction (gc takes them the
         * other way round). */
        r = record_locked(st, name, "", "", "", err);
    } else {
        static const char del[] = "DELETE FROM images WHERE name = ?";
        sqlite3_stmt *q = cairn__stmt(st, 0, del, err);
        if (!q) {
            r = err ? err->code : CAIRN_E_DB;
            goto fail;
        }
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
        r = cairn__step_done(st, 0, q, err);
    }
    if (r < 0)
        goto fail;
    return cairn__tx_commit(st, err);
fail:
    cairn__tx_rollback(st);
    return r;
}

/* ---- fsck ------------------------------------------------------------- */

static int drop_row(cairn_state *st, const char *name, cairn_error *err)
{
    static const char del[] = "DELETE FROM images WHERE name = ?";
    return cairn__exec_key(st, del, name, err);
}

/* Every live image row of this state names a manifest blob, a config blob
 * and a top snapshot that are there (here or in a lower). Repair drops a
 * row that does not (the name is lost, not the content). */
int cairn__fsck_images(cairn__fsck *f, cairn_error *err)
{
    cairn_state *st = f->st;
    static const char sql[] =
        "SELECT name, manifest, config, top, updated FROM images WHERE manifest != '' "
        "ORDER BY name";
    /* Collect first: repair writes to the table being read. */
    cairn_image_info *rows = NULL;
    size_t n = 0;
    sqlite3_stmt *s = cairn__stmt(st, 0, sql, err);
    if (!s)
        return err ? err->code : CAIRN_E_DB;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        cairn_image_info *nr = realloc(rows, (n + 1) * sizeof(*nr));
        if (!nr) {
            sqlite3_reset(s);
            free(rows);
            return cairn__err(err, -ENOMEM, "out of memory");
        }
        rows = nr;
        row_info(s, 0, &rows[n++]);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        free(rows);
        return cairn__err_db(err, st->layers[0].db, rc, "images");
    }
    f->total += n;
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        const cairn_image_info *in = &rows[i];
        const char *what = NULL, *obj = NULL;
        int e = cairn_blob_exists(st, in->manifest, NULL);
        if (e <= 0) {
            what = "manifest blob";
            obj = in->manifest;
        } else if ((e = cairn_blob_exists(st, in->config, NULL)) <= 0) {
            what = "config blob";
            obj = in->config;
        } else if (in->top[0] && (e = snapshot_exists(st, in->top, err)) <= 0) {
            if (e < 0)
                break;
            what = "top snapshot";
            obj = in->top;
        }
        if (what) {
            cairn__fsck_report(f, "image", in->name, "dangling",
                               f->opts.repair ? "dropped row" : "", "its %s %s is not there",
                               what, obj);
            if (f->opts.repair)
                r = drop_row(st, in->name, err);
        }
        cairn__fsck_tick(f);
    }
    free(rows);
    return r;
}

/* ---- import ----------------------------------------------------------- */

static void import_clear(import *im)
{
    source_clear(&im->src);
    for (size_t i = 0; i < im->n_docs; i++)
        free(im->docs[i].buf);
    free(im->docs);
    free(im->cands);
    free(im->jobs);
    cairn__oci_manifest_clear(&im->man);
    cairn__oci_config_clear(&im->cfg);
    pthread_mutex_destroy(&im->lock);
}

int cairn_image_import(cairn_state *st, const char *path, const cairn_image_import_options *opts,
                       cairn_image_info *out, cairn_error *err)
{
    cairn_image_import_options def = CAIRN_IMAGE_IMPORT_OPTIONS_INIT;
    if (!opts)
        opts = &def;
    if (opts->version != CAIRN_IMAGE_IMPORT_OPTIONS_VERSION)
        return cairn__err(err, -EINVAL, "image import: options version %u is not %d",
                          opts->version, CAIRN_IMAGE_IMPORT_OPTIONS_VERSION);
    int r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    if (opts->name && (r = cairn_image_name_check(opts->name, err)) < 0)
        return r;
    import im = {.st = st, .opts = opts};
    pthread_mutex_init(&im.lock, NULL);
    im.src.rootfd = im.src.blobfd = -1;
    _cleanup_free_ char *p = strdup(path);
    if (opts->platform) {
        r = cairn__oci_parse_platform(opts->platform, im.os, im.arch, im.variant, err);
        if (r < 0)
            goto out;
    } else {
        cairn__oci_host_platform(im.os, im.arch, im.variant);
    }

    /* PATH:REF, when PATH itself does not exist. */
    if (!p) {
        r = cairn__err(err, -ENOMEM, "out of memory");
        goto out;
    }
    struct stat sb;
    char *colon = strrchr(p, ':');
    if (stat(p, &sb) < 0 && errno == ENOENT && colon && colon[1] && !strchr(colon, '/')) {
        *colon = 0;
        im.ref = colon + 1;
    }
    r = source_open(&im.src, p, err);
    if (r < 0)
        goto out;
    r = resolve(&im, err);
    if (r < 0)
        goto out;
    const char *name = opts->name ? opts->name : im.chosen.ref_name[0] ? im.chosen.ref_name : NULL;
    if (!name) {
        r = cairn__err(err, -ENOENT,
                       "%s: the index names the image without an %s annotation; give it a name",
                       path, CAIRN__ANNOT_REF_NAME);
        goto out;
    }
    r = cairn_image_name_check(name, err);
    if (r < 0)
        goto out;

    for (size_t i = 0; i < im.n_jobs; i++) {
        if (!im.jobs[i].have_blob)
            im.total += (uint64_t)im.jobs[i].desc.size;
        if (!im.jobs[i].have_snap)
            im.total += (uint64_t)im.jobs[i].desc.size;
    }
    size_t todo = 0;
    for (size_t i = 0; i < im.n_jobs; i++)
        todo += !im.jobs[i].have_snap;
    ingest_thread it = {.im = &im};
    if (!im.src.archive && todo && threaded(&im) &&
        pthread_create(&it.th, NULL, ingest_main, &it) == 0) {
        r = apply(&im, err);
        pthread_join(it.th, NULL);
        /* A blob that is not what its descriptor says is the first fault. */
        if (it.r < 0) {
            if (err)
                *err = it.err;
            r = it.r;
        }
    } else {
        r = ingest(&im, st, err);
        if (r == 0)
            r = apply(&im, err);
    }
    if (r < 0)
        goto out;
    const char *top = im.n_jobs ? im.jobs[im.n_jobs - 1].chain_id : "";
    r = record(st, name, im.chosen.d.digest, im.man.config.digest, top, err);
    if (r < 0)
        goto out;
    if (out) {
        memset(out, 0, sizeof(*out));
        snprintf(out->name, sizeof(out->name), "%s", name);
        memcpy(out->manifest, im.chosen.d.digest, sizeof(out->manifest));
        memcpy(out->config, im.man.config.digest, sizeof(out->config));
        snprintf(out->top, sizeof(out->top), "%s", top);
        out->layers = (unsigned)im.n_jobs;
        for (size_t i = 0; i < im.n_jobs; i++)
            out->size += (uint64_t)im.jobs[i].desc.size;
        out->updated = cairn__now_ns();
    }
out:
    import_clear(&im);
    return r;
}
