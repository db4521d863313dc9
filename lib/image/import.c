/* import.c: OCI images into a state (cairn_image_import in cairn/image.h).
 *
 * Invariant: a live row of `images` (manifest != '') names a manifest blob,
 * a config blob and a top snapshot that all exist in the state or its
 * lowers. A row with manifest = '' is a tombstone: it hides a lower's row of
 * the same name (the register's last write was a removal).
 *
 * Import, in order (publish last):
 *   1. read the source: an image layout directory, or an oci-archive read
 *      once for its small files (oci-layout, index.json, JSON blobs), or a
 *      docker-archive of either kind, read as the layout cairn makes of it
 *      (archive.c);
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
#include "image/image-private.h"
#include "cache/cache-private.h"

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
/* ---- resolving the image ---------------------------------------------- */

typedef struct doc {
    char digest[CAIRN_DIGEST_LEN + 1];
    char media_type[CAIRN_MEDIA_TYPE_MAX + 1];
    char *buf;
    size_t len;
} doc;

typedef struct candidate {
    cairn__oci_desc d;
    char ref_name[256];   /* org.opencontainers.image.ref.name, its own or its index's */
    char image_name[256]; /* io.containerd.image.name, its own or its index's */
    bool schema1;         /* refused when picked */
} candidate;

/* The name an image is recorded under: containerd's full name when the
 * index gives one (its ref.name is then often the tag alone), else ref.name. */
static const char *cand_name(const candidate *c)
{
    return c->image_name[0] ? c->image_name : c->ref_name;
}

/* PATH:REF names a candidate by either annotation, as containerd and skopeo
 * each look up their own. */
static bool cand_is(const candidate *c, const char *ref)
{
    return !strcmp(c->ref_name, ref) || !strcmp(c->image_name, ref);
}

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
    cairn__strv names;        /* the names to record: every name of the chosen manifest */
    cairn__oci_manifest man;
    cairn__oci_config cfg;
    layer_job *jobs;
    size_t n_jobs;
    size_t walked;            /* descriptors of indexes walked, all depths */
    uint64_t index_bytes;     /* nested indexes read */
    /* progress, shared by the threads */
    pthread_mutex_t lock;
    uint64_t done, total;
    int stopped; /* CAIRN_E_USER once the progress callback asked to stop */
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
 * become candidates (inheriting the names of the index that names them). */
static int walk_index(import *im, const cairn__oci_desc *ds, size_t n, const char *ref_name,
                      const char *image_name, int depth, cairn_error *err)
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
        const char *in = d->image_name[0] ? d->image_name : image_name;
        int kind = cairn__oci_desc_kind(d);
        if (kind == CAIRN__DESC_INDEX) {
            if (im->ref && !(rn && !strcmp(rn, im->ref)) && !(in && !strcmp(in, im->ref)))
                continue;
            im->index_bytes += (uint64_t)d->size;
            if (im->index_bytes > WALK_BYTES_MAX)
                return cairn__err(err, CAIRN_E_FORMAT,
                                  "%s: the nested indexes it names add up to more than %llu "
                                  "bytes",
                                  im->src.path, (unsigned long long)WALK_BYTES_MAX);
            char *buf = NULL;
            size_t len = 0;
            int r = cairn__source_read_blob(&im->src, d, "index", &buf, &len, err);
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
                r = walk_index(im, sub, nsub, rn, in, depth + 1, err);
            free(sub);
            if (r < 0)
                return r;
        } else if (kind == CAIRN__DESC_MANIFEST || kind == CAIRN__DESC_SCHEMA1) {
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
            snprintf(c->image_name, sizeof(c->image_name), "%s", in ? in : "");
            c->schema1 = kind == CAIRN__DESC_SCHEMA1;
        }
        /* Anything else (artifacts, attestations) is not an image: skipped. */
    }
    return 0;
}

/* Pick the manifest: by REF, then by platform. Several names for one
 * manifest (a docker-archive's RepoTags, an index naming it twice) are not a
 * choice to make: all of them are recorded. Several manifests for the
 * platform under different names are. */
static int choose(import *im, cairn_error *err)
{
    size_t by_ref = 0, pick = SIZE_MAX, schema1 = SIZE_MAX;
    char refs[512] = "", plats[512] = "";
    for (size_t i = 0; i < im->n_cands; i++) {
        candidate *c = &im->cands[i];
        if (im->ref && !cand_is(c, im->ref))
            continue;
        by_ref++;
        if (c->d.has_platform) {
            size_t l = strlen(plats);
            snprintf(plats + l, sizeof(plats) - l, "%s%s/%s%s%s", l ? ", " : "", c->d.os,
                     c->d.arch, c->d.variant[0] ? "/" : "", c->d.variant);
        }
        if (!platform_match(im, &c->d))
            continue;
        if (c->schema1) {
            if (schema1 == SIZE_MAX)
                schema1 = i;
            continue;
        }
        if (pick == SIZE_MAX) {
            pick = i;
        } else if (strcmp(cand_name(&im->cands[pick]), cand_name(c)) &&
                   strcmp(im->cands[pick].d.digest, c->d.digest)) {
            /* Two images of the same platform under different names. */
            for (size_t k = 0; k < im->n_cands; k++) {
                size_t l = strlen(refs);
                if (!strstr(refs, cand_name(&im->cands[k])))
                    snprintf(refs + l, sizeof(refs) - l, "%s'%s'", l ? ", " : "",
                             cand_name(&im->cands[k]));
            }
            return cairn__err(err, -EINVAL,
                              "%s: the layout holds several images (%s); name one as PATH:REF",
                              im->src.path, refs);
        } else if (!c->d.has_platform && im->cands[pick].d.has_platform) {
            continue; /* prefer the one that says it matches */
        }
    }
    if (pick == SIZE_MAX && schema1 != SIZE_MAX)
        return cairn__err(err, CAIRN_E_FORMAT, "%s: image '%s' (manifest %s): %s", im->src.path,
                          cand_name(&im->cands[schema1]), im->cands[schema1].d.digest,
                          CAIRN__SCHEMA1_WHY);
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
    /* Every name of the chosen manifest (only the one asked for, with REF). */
    for (size_t i = 0; i < im->n_cands; i++) {
        const candidate *c = &im->cands[i];
        const char *n = cand_name(c);
        if (!n[0] || strcmp(c->d.digest, im->chosen.d.digest) ||
            (im->ref && !cand_is(c, im->ref)))
            continue;
        bool had = false;
        for (size_t k = 0; k < im->names.n; k++)
            had |= !strcmp(im->names.v[k], n);
        if (!had && cairn__strv_push(&im->names, n) < 0)
            return cairn__err(err, -ENOMEM, "out of memory");
    }
    return 0;
}

static int resolve(import *im, cairn_error *err)
{
    source *s = &im->src;
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    char what[4200];
    int r;
    if (!s->docker) {
        r = cairn__source_read_file(s, "oci-layout", &buf, &len, err);
        if (r < 0)
            return r;
        snprintf(what, sizeof(what), "%s%soci-layout", s->path, s->archive ? ": " : "/");
        r = cairn__oci_check_layout(buf, len, what, err);
        if (r < 0)
            return r;
        free(steal_pointer(&buf));
    }
    /* A docker-archive's index is the one made of its manifest.json. */
    r = cairn__source_read_file(s, "index.json", &buf, &len, err);
    if (r < 0)
        return r;
    snprintf(what, sizeof(what), "%s%s%s", s->path, s->archive ? ": " : "/",
             s->docker ? "manifest.json" : "index.json");
    cairn__oci_desc *ds = NULL;
    size_t n = 0;
    r = cairn__oci_parse_index(buf, len, what, &ds, &n, err);
    if (r < 0)
        return r;
    /* The index is stored (a docker-archive's is cairn's own making: not). */
    if (s->docker)
        free(steal_pointer(&buf));
    else
        r = add_doc(im, NULL, CAIRN__MT_OCI_INDEX, steal_pointer(&buf), len, err);
    if (r == 0)
        r = walk_index(im, ds, n, NULL, NULL, 0, err);
    free(ds);
    if (r < 0)
        return r;
    r = choose(im, err);
    if (r < 0)
        return r;

    /* The manifest and its config. */
    const cairn__oci_desc *md = &im->chosen.d;
    r = cairn__source_read_blob(s, md, "manifest", &buf, &len, err);
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
    r = cairn__source_read_blob(s, cd, "config", &buf, &len, err);
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
        r = cairn__image_snapshot_exists(im->st, j->chain_id, err);
        if (r < 0)
            return r;
        j->have_snap = r > 0;
    }
    return 0;
}

/* ---- ingest ----------------------------------------------------------- */

/* From any thread: CAIRN_E_USER once the callback asked to stop (it is not
 * called again then). The threads that ingest or apply stop at their next
 * call; the prefetch thread is stopped by the apply loop's end. A stop
 * leaves staged blobs (removed with their batch or writer) and committed
 * blobs and snapshots no image row names yet: a rerun takes them. */
static int progress_add(import *im, uint64_t n)
{
    if (!im->opts->progress)
        return 0;
    pthread_mutex_lock(&im->lock);
    im->done += n;
    if (!im->stopped && im->opts->progress(im->opts->progress_userdata, im->done, im->total))
        im->stopped = CAIRN_E_USER;
    int r = im->stopped;
    pthread_mutex_unlock(&im->lock);
    return r;
}

static int stopped(import *im, cairn_error *err)
{
    pthread_mutex_lock(&im->lock);
    int r = im->stopped;
    pthread_mutex_unlock(&im->lock);
    return r ? cairn__err(err, r, "image import: stopped by the caller") : 0;
}

static int ingest_layer_fd(import *im, cairn_blob_batch *b, layer_job *j, size_t idx,
                           cairn_error *err)
{
    char where[4200];
    cairn__source_blobs_where(&im->src, where, sizeof(where));
    _cleanup_close_ int fd = cairn__source_open_blob(&im->src, j->desc.digest);
    if (fd == -ENOENT)
        return cairn__err(err, -ENOENT, "layer %zu (%s) of manifest %s: missing from %s", idx,
                          j->desc.digest, im->chosen.d.digest, where);
    if (fd < 0)
        return cairn__err(err, fd, "layer %s: %s: %s", j->desc.digest, where, cairn_strerror(fd));
    /* Opened without blocking: a FIFO there must not hang the import. */
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return cairn__err(err, -errno, "layer %s: %s: %m", j->desc.digest, where);
    if (!S_ISREG(sb.st_mode))
        return cairn__err(err, CAIRN_E_FORMAT,
                          "layer %zu (%s) of manifest %s: %s: not a regular file", idx,
                          j->desc.digest, im->chosen.d.digest, where);
    cairn_blob_put_options po = CAIRN_BLOB_PUT_OPTIONS_INIT;
    po.expected = j->desc.digest;
    po.expected_size = j->desc.size;
    po.media_type = j->desc.media_type;
    int r = cairn_blob_batch_put_fd(b, fd, &po, NULL, err);
    if (r < 0)
        return cairn__err_prefix(err, r, "layer %zu of manifest %s", idx, im->chosen.d.digest);
    return progress_add(im, (uint64_t)j->desc.size) ? stopped(im, err) : 0;
}

/* Second read of an archive: stream the layer blobs the store lacks. */
static int ingest_layers_archive(import *im, cairn_error *err)
{
    bool want = false;
    for (size_t i = 0; i < im->n_jobs; i++)
        if (!im->jobs[i].have_blob) {
            if (!cairn__source_has_blob(&im->src, im->jobs[i].desc.digest))
                return cairn__err(err, -ENOENT, "layer %zu (%s) of manifest %s: missing from %s",
                                  i, im->jobs[i].desc.digest, im->chosen.d.digest, im->src.path);
            want = true;
        }
    if (!want)
        return 0;
    struct archive *a = cairn__arc_open(im->src.path, err);
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
            r = cairn__arc_fail(a, im->src.path, "", err);
            break;
        }
        if (archive_entry_filetype(e) != AE_IFREG)
            continue;
        char nb[80];
        const char *m = cairn__source_member(&im->src, archive_entry_pathname(e), nb);
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
                r = cairn__arc_fail(a, im->src.path, j->desc.digest, err);
                break;
            }
            if (n == 0)
                break;
            r = cairn_blob_writer_write(w, buf, (size_t)n, err);
            if (r == 0 && progress_add(im, (uint64_t)n))
                r = stopped(im, err);
            if (r < 0)
                break;
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
    int fd = im->src.archive ? -ENOENT : cairn__source_open_blob(&im->src, j->desc.digest);
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
                (void)progress_add(im, (uint64_t)in - reported);
                reported = (uint64_t)in;
            }
        }
        if (code == 0 && reported < (uint64_t)im->jobs[i].desc.size)
            (void)progress_add(im, (uint64_t)im->jobs[i].desc.size - reported);
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

static int layer_progress_cb(void *ud, uint64_t done, uint64_t total)
{
    (void)total;
    struct layer_progress *p = ud;
    if (done > p->last) {
        int r = progress_add(p->im, done - p->last);
        p->last = done;
        return r;
    }
    return 0;
}

/* Fed by the prefetch thread, which reports the bytes (and may have read
 * them all already): the caller's callback asked again, nothing added, so
 * that a stop asked for now is seen at the layer's next read. */
static int layer_stop_cb(void *ud, uint64_t done, uint64_t total)
{
    (void)done, (void)total;
    struct layer_progress *p = ud;
    return progress_add(p->im, 0);
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
        if (im->opts->progress) {
            lo.progress = layer_stop_cb;
            lo.progress_userdata = &lp;
        }
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
        if (progress_add(im, (uint64_t)j->desc.size - lp.last))
            r = stopped(im, err);
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

/* ---- import ----------------------------------------------------------- */

static void import_clear(import *im)
{
    cairn__source_clear(&im->src);
    for (size_t i = 0; i < im->n_docs; i++)
        free(im->docs[i].buf);
    free(im->docs);
    free(im->cands);
    cairn__strv_free(&im->names);
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
    int r = cairn__opts_version(opts->version, CAIRN_IMAGE_IMPORT_OPTIONS_VERSION, "image import",
                                err);
    if (r < 0)
        return r;
    r = cairn__check_writable(st, err);
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

    /* PATH:REF, as skopeo's oci: transport reads it: split at the first
     * colon, so REF may hold colons and slashes (example.com/team/app:1.0)
     * and PATH may not hold a colon. An existing PATH that holds one is
     * taken whole, with no REF. */
    if (!p) {
        r = cairn__err(err, -ENOMEM, "out of memory");
        goto out;
    }
    struct stat sb;
    char *colon = strchr(p, ':');
    if (colon && lstat(p, &sb) < 0 && errno == ENOENT) {
        if (colon == p || !colon[1]) {
            r = cairn__err(err, -EINVAL, "'%s': expected PATH:REF, both non-empty", path);
            goto out;
        }
        *colon = 0;
        im.ref = colon + 1;
    }
    r = cairn__source_open(&im.src, p, err);
    if (r == -ENOENT && im.ref)
        r = cairn__err_prefix(err, r,
                              "'%s' is read as PATH:REF split at the first colon (a path with a "
                              "colon takes no REF)",
                              path);
    if (r < 0)
        goto out;
    r = resolve(&im, err);
    if (r < 0)
        goto out;
    if (opts->name) {
        cairn__strv_free(&im.names);
        if (cairn__strv_push(&im.names, opts->name) < 0) {
            r = cairn__err(err, -ENOMEM, "out of memory");
            goto out;
        }
    }
    if (!im.names.n) {
        r = cairn__err(err, -ENOENT,
                       "%s: the index names the image without an %s or %s annotation; give it a "
                       "name",
                       path, CAIRN__ANNOT_REF_NAME, CAIRN__ANNOT_CTR_NAME);
        goto out;
    }
    for (size_t i = 0; i < im.names.n; i++)
        if ((r = cairn_image_name_check(im.names.v[i], err)) < 0)
            goto out;
    const char *name = im.names.v[0];

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
    for (size_t i = 0; i < im.names.n && r == 0; i++)
        r = cairn__image_record(st, im.names.v[i], im.chosen.d.digest, im.man.config.digest, top,
                                err);
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
        out->updated = cairn__now_ns() / 1000000000;
    }
out:
    import_clear(&im);
    return r;
}
