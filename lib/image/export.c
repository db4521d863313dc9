/* image-export.c: write an image as an OCI image layout (cairn_image_export).
 *
 * The layout gets the image's config, its layers and its manifest as blobs,
 * then index.json naming the manifest; for an oci-archive, the same members
 * go into a tar written under a temporary name and renamed into place when
 * complete, or, when DEST is a device or a FIFO, written into it in place
 * (never renamed over), with layer temporaries unnamed in the state's tmp/. A layer whose original blob the store no longer holds is made
 * again from its snapshot with cairn_layer_export(): it has the same diff id
 * (so the config stays as it is) but, compressed anew, another digest, so
 * the manifest is rewritten to name it (and gets a digest of its own).
 * Blobs are written under a temporary name, synced, then renamed: an
 * interrupted export leaves no blob under a wrong name and no index.json.
 */
#include "core/core.h"
#include "image/oci-private.h"

#include <dirent.h>
#include <sys/stat.h>

#include <archive.h>
#include <archive_entry.h>

#include "cairn/image.h"
#include "cairn/layer.h"

#define CHUNK (1u << 20)

typedef struct out {
    cairn_state *st;
    const cairn_image_export_options *opts;
    const char *dest;
    int format;
    int rootfd, blobfd;       /* layout */
    struct archive *a;        /* archive */
    char *arc_tmp;            /* archive: dest + ".tmp-<random>" */
    int dirfd;                /* archive: the directory of dest, for layer temporaries */
    int devfd;                /* archive into a device or FIFO, written in place; or -1 */
    char *buf;
    uint64_t done, total;
} out;

static void progress(out *o, uint64_t n)
{
    o->done += n;
    if (o->opts->progress)
        o->opts->progress(o->opts->progress_userdata, o->done, o->total);
}

static int copy_fd(int in, int outfd)
{
    for (;;) {
        ssize_t n = copy_file_range(in, NULL, outfd, NULL, 1u << 30, 0);
        if (n == 0)
            return 0;
        if (n > 0)
            continue;
        if (errno == EINTR)
            continue;
        if (errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP && errno != ENOSYS)
            return -errno;
        break;
    }
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return 0;
        int r = cairn__write_all(outfd, buf, (size_t)n);
        if (r < 0)
            return r;
    }
}

/* Layout: a new file in blobs/sha256 under a temporary name; publish with
 * layout_publish (fsync, rename). */
static int layout_tmp(out *o, char *name, size_t size, cairn_error *err)
{
    char rnd[CAIRN_STATE_ID_LEN + 1];
    int r = cairn__random_id(rnd);
    if (r < 0)
        return cairn__err(err, r, "random: %m");
    snprintf(name, size, ".tmp-%s", rnd);
    int fd = openat(o->blobfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return cairn__err(err, -errno, "%s/blobs/sha256/%s: %m", o->dest, name);
    return fd;
}

static int layout_publish(out *o, int fd, const char *tmp, const char *digest, cairn_error *err)
{
    if (fsync(fd) < 0) {
        int e = -errno;
        unlinkat(o->blobfd, tmp, 0);
        return cairn__err(err, e, "%s/blobs/sha256/%s: fsync: %m", o->dest, tmp);
    }
    if (renameat(o->blobfd, tmp, o->blobfd, cairn__digest_hex(digest)) < 0) {
        int e = -errno;
        unlinkat(o->blobfd, tmp, 0);
        return cairn__err(err, e, "%s/blobs/sha256/%s: rename: %m", o->dest, tmp);
    }
    return 0;
}

static int arc_fail(out *o, const char *what, cairn_error *err)
{
    int e = archive_errno(o->a);
    return cairn__err(err, e > 0 ? -e : -EIO, "%s: writing %s: %s", o->dest, what,
                      archive_error_string(o->a));
}

static int arc_header(out *o, const char *path, int64_t size, cairn_error *err)
{
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return cairn__err(err, -ENOMEM, "out of memory");
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, size);
    archive_entry_set_mtime(e, 0, 0);
    int rc = archive_write_header(o->a, e);
    archive_entry_free(e);
    if (rc != ARCHIVE_OK)
        return arc_fail(o, path, err);
    return 0;
}

static int arc_data_fd(out *o, const char *path, int fd, int64_t size, cairn_error *err)
{
    int r = arc_header(o, path, size, err);
    if (r < 0)
        return r;
    int64_t left = size;
    while (left > 0) {
        ssize_t n = read(fd, o->buf, left < CHUNK ? (size_t)left : CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return cairn__err(err, -errno, "%s: read: %m", path);
        if (n == 0)
            return cairn__err(err, CAIRN_E_TRUNCATED, "%s: ended %lld bytes early", path,
                              (long long)left);
        if (archive_write_data(o->a, o->buf, (size_t)n) != n)
            return arc_fail(o, path, err);
        left -= n;
    }
    return 0;
}

/* A blob from a buffer. */
static int put_buf(out *o, const char *digest, const void *buf, size_t len, cairn_error *err)
{
    char path[96];
    snprintf(path, sizeof(path), "blobs/sha256/%s", cairn__digest_hex(digest));
    if (o->format == CAIRN_IMAGE_FORMAT_OCI_ARCHIVE) {
        int r = arc_header(o, path, (int64_t)len, err);
        if (r < 0)
            return r;
        if (len && archive_write_data(o->a, buf, len) != (la_ssize_t)len)
            return arc_fail(o, path, err);
    } else {
        char tmp[64];
        _cleanup_close_ int fd = layout_tmp(o, tmp, sizeof(tmp), err);
        if (fd < 0)
            return fd;
        int r = cairn__write_all(fd, buf, len);
        if (r < 0) {
            unlinkat(o->blobfd, tmp, 0);
            return cairn__err(err, r, "%s/%s: write: %m", o->dest, path);
        }
        r = layout_publish(o, fd, tmp, digest, err);
        if (r < 0)
            return r;
    }
    progress(o, len);
    return 0;
}

/* A blob of the store, copied as it is. */
static int put_store_blob(out *o, const char *digest, int64_t size, cairn_error *err)
{
    _cleanup_close_ int in = -1;
    int r = cairn_blob_open(o->st, digest, 0, &in, err);
    if (r < 0)
        return r;
    struct stat sb;
    if (fstat(in, &sb) < 0)
        return cairn__err(err, -errno, "blob %s: stat: %m", digest);
    if (sb.st_size != size)
        return cairn__err(err, CAIRN_E_CORRUPT,
                          "blob %s: %lld bytes in the store, the manifest says %lld; run fsck",
                          digest, (long long)sb.st_size, (long long)size);
    char path[96];
    snprintf(path, sizeof(path), "blobs/sha256/%s", cairn__digest_hex(digest));
    if (o->format == CAIRN_IMAGE_FORMAT_OCI_ARCHIVE) {
        r = arc_data_fd(o, path, in, size, err);
        if (r < 0)
            return r;
    } else {
        char tmp[64];
        _cleanup_close_ int fd = layout_tmp(o, tmp, sizeof(tmp), err);
        if (fd < 0)
            return fd;
        r = copy_fd(in, fd);
        if (r < 0) {
            unlinkat(o->blobfd, tmp, 0);
            return cairn__err(err, r, "%s/%s: copy: %m", o->dest, path);
        }
        r = layout_publish(o, fd, tmp, digest, err);
        if (r < 0)
            return r;
    }
    progress(o, (uint64_t)size);
    return 0;
}

/* A layer made again from its snapshot; fills its new digest and size. */
static int put_layer_from_snapshot(out *o, const char *chain_id, size_t idx, char *digest,
                                   uint64_t *size, cairn_error *err)
{
    char tmp[96];
    char rnd[CAIRN_STATE_ID_LEN + 1];
    int r = cairn__random_id(rnd);
    if (r < 0)
        return cairn__err(err, r, "random: %m");
    int dfd = o->format == CAIRN_IMAGE_FORMAT_OCI_ARCHIVE ? o->dirfd : o->blobfd;
    snprintf(tmp, sizeof(tmp), ".%s-layer-%s.tmp",
             o->format == CAIRN_IMAGE_FORMAT_OCI_ARCHIVE ? "cairn" : "tmp", rnd);
    /* Beside a device (dfd is the state's tmp/ then) it has no name at all. */
    _cleanup_close_ int fd =
        o->devfd >= 0 ? openat(dfd, ".", O_RDWR | O_TMPFILE | O_CLOEXEC, 0600)
                      : openat(dfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return cairn__err(err, -errno, "%s: temporary file for layer %zu: %m", o->dest, idx);
    r = cairn_layer_export(o->st, chain_id, fd, o->opts->compression, digest, size, err);
    if (r < 0) {
        if (o->devfd < 0)
            unlinkat(dfd, tmp, 0);
        return cairn__err_prefix(err, r, "layer %zu (snapshot %s)", idx, chain_id);
    }
    if (o->format == CAIRN_IMAGE_FORMAT_OCI_ARCHIVE) {
        char path[96];
        snprintf(path, sizeof(path), "blobs/sha256/%s", cairn__digest_hex(digest));
        if (lseek(fd, 0, SEEK_SET) < 0)
            r = cairn__err(err, -errno, "%s: seek: %m", tmp);
        else
            r = arc_data_fd(o, path, fd, (int64_t)*size, err);
        if (o->devfd < 0)
            unlinkat(dfd, tmp, 0);
    } else {
        r = layout_publish(o, fd, tmp, digest, err);
    }
    if (r == 0)
        progress(o, *size);
    return r;
}

static const char *layer_media_type(bool docker, int compression)
{
    if (docker && compression == CAIRN__COMP_GZIP)
        return CAIRN__MT_DOCKER_LAYER;
    return compression == CAIRN__COMP_GZIP   ? CAIRN__MT_OCI_LAYER_GZ
           : compression == CAIRN__COMP_ZSTD ? CAIRN__MT_OCI_LAYER_ZST
                                             : CAIRN__MT_OCI_LAYER;
}

static int out_open(out *o, cairn_error *err)
{
    if (o->format == CAIRN_IMAGE_FORMAT_OCI_ARCHIVE) {
        struct stat sb;
        if (lstat(o->dest, &sb) == 0) {
            /* A device or a FIFO (or a symlink to one) is written into, never
             * replaced: renaming over /dev/null would replace it for every
             * user of the machine. Anything else there is refused. */
            if (stat(o->dest, &sb) < 0 || S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode))
                return cairn__err(err, -EEXIST, "%s: already exists", o->dest);
            o->devfd = open(o->dest, O_WRONLY | O_NOCTTY | O_CLOEXEC);
            if (o->devfd < 0)
                return cairn__err(err, -errno, "%s: %m", o->dest);
            if (fstat(o->devfd, &sb) < 0 || S_ISREG(sb.st_mode))
                return cairn__err(err, -EEXIST, "%s: already exists", o->dest);
            int tfd = cairn__tmpfd(o->st, err);
            if (tfd < 0)
                return tfd;
            o->dirfd = fcntl(tfd, F_DUPFD_CLOEXEC, 3);
            if (o->dirfd < 0)
                return cairn__err(err, -errno, "dup: %m");
            o->a = archive_write_new();
            if (!o->a)
                return cairn__err(err, -ENOMEM, "out of memory");
            if (archive_write_set_format_pax_restricted(o->a) != ARCHIVE_OK ||
                archive_write_open_fd(o->a, o->devfd) != ARCHIVE_OK)
                return arc_fail(o, o->dest, err);
            return 0;
        }
        _cleanup_free_ char *dir = strdup(o->dest);
        if (!dir)
            return cairn__err(err, -ENOMEM, "out of memory");
        char *slash = strrchr(dir, '/');
        const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
        o->dirfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (o->dirfd < 0)
            return cairn__err(err, -errno, "%s: %m", d);
        char rnd[CAIRN_STATE_ID_LEN + 1];
        int r = cairn__random_id(rnd);
        if (r < 0)
            return cairn__err(err, r, "random: %m");
        if (asprintf(&o->arc_tmp, "%s.tmp-%.16s", o->dest, rnd) < 0) {
            o->arc_tmp = NULL;
            return cairn__err(err, -ENOMEM, "out of memory");
        }
        o->a = archive_write_new();
        if (!o->a)
            return cairn__err(err, -ENOMEM, "out of memory");
        if (archive_write_set_format_pax_restricted(o->a) != ARCHIVE_OK ||
            archive_write_open_filename(o->a, o->arc_tmp) != ARCHIVE_OK)
            return arc_fail(o, o->arc_tmp, err);
        return 0;
    }
    if (mkdir(o->dest, 0755) < 0 && errno != EEXIST)
        return cairn__err(err, -errno, "%s: %m", o->dest);
    o->rootfd = open(o->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (o->rootfd < 0)
        return cairn__err(err, -errno, "%s: %m", o->dest);
    /* Only into an empty directory: never mix with another layout's index. */
    int dup_fd = dup(o->rootfd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!d) {
        if (dup_fd >= 0)
            close(dup_fd);
        return cairn__err(err, -errno, "%s: %m", o->dest);
    }
    struct dirent *de;
    bool empty = true;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            empty = false;
    closedir(d);
    if (!empty)
        return cairn__err(err, -ENOTEMPTY, "%s: not empty; export into a new directory",
                          o->dest);
    int r;
    if ((r = cairn__mkdir_at(o->rootfd, "blobs", 0755)) < 0)
        return cairn__err(err, r, "%s/blobs: %m", o->dest);
    int bfd = openat(o->rootfd, "blobs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (bfd < 0)
        return cairn__err(err, -errno, "%s/blobs: %m", o->dest);
    r = cairn__mkdir_at(bfd, "sha256", 0755);
    if (r == 0)
        o->blobfd = openat(bfd, "sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int e = errno;
    close(bfd);
    if (r < 0 || o->blobfd < 0)
        return cairn__err(err, r < 0 ? r : -e, "%s/blobs/sha256: %m", o->dest);
    return 0;
}

/* The top-level files, last: oci-layout, then index.json. */
static int out_finish(out *o, const char *index, cairn_error *err)
{
    static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
    int r;
    if (o->format == CAIRN_IMAGE_FORMAT_OCI_ARCHIVE) {
        if ((r = arc_header(o, "oci-layout", (int64_t)strlen(layout), err)) < 0)
            return r;
        if (archive_write_data(o->a, layout, strlen(layout)) != (la_ssize_t)strlen(layout))
            return arc_fail(o, "oci-layout", err);
        if ((r = arc_header(o, "index.json", (int64_t)strlen(index), err)) < 0)
            return r;
        if (archive_write_data(o->a, index, strlen(index)) != (la_ssize_t)strlen(index))
            return arc_fail(o, "index.json", err);
        if (archive_write_close(o->a) != ARCHIVE_OK)
            return arc_fail(o, o->devfd >= 0 ? o->dest : o->arc_tmp, err);
        if (o->devfd >= 0)
            return 0; /* nothing to sync or rename: it went where it goes */
        r = cairn__fsync_at(AT_FDCWD, o->arc_tmp);
        if (r < 0)
            return cairn__err(err, r, "%s: fsync: %m", o->arc_tmp);
        r = cairn__rename_noreplace(AT_FDCWD, o->arc_tmp, AT_FDCWD, o->dest);
        if (r < 0)
            return cairn__err(err, r, "%s: %m", o->dest);
        free(o->arc_tmp);
        o->arc_tmp = NULL;
        return cairn__fsync_at(o->dirfd, NULL) < 0 ? cairn__err(err, -errno, "%s: fsync", o->dest)
                                                   : 0;
    }
    if (fsync(o->blobfd) < 0)
        return cairn__err(err, -errno, "%s/blobs/sha256: fsync: %m", o->dest);
    r = cairn__write_file_atomic(o->rootfd, "oci-layout", layout, strlen(layout), 0644);
    if (r == 0)
        r = cairn__write_file_atomic(o->rootfd, "index.json", index, strlen(index), 0644);
    if (r < 0)
        return cairn__err(err, r, "%s: writing index.json: %m", o->dest);
    return 0;
}

static void out_clear(out *o)
{
    if (o->a) {
        archive_write_free(o->a);
        if (o->arc_tmp)
            unlink(o->arc_tmp);
    }
    free(o->arc_tmp);
    if (o->rootfd >= 0)
        close(o->rootfd);
    if (o->blobfd >= 0)
        close(o->blobfd);
    if (o->dirfd >= 0)
        close(o->dirfd);
    if (o->devfd >= 0)
        close(o->devfd);
    free(o->buf);
}

int cairn_image_export(cairn_state *st, const char *name, const char *dest,
                       const cairn_image_export_options *opts, cairn_error *err)
{
    cairn_image_export_options def = CAIRN_IMAGE_EXPORT_OPTIONS_INIT;
    if (!opts)
        opts = &def;
    if (opts->version != CAIRN_IMAGE_EXPORT_OPTIONS_VERSION)
        return cairn__err(err, -EINVAL, "image export: options version %u is not %d",
                          opts->version, CAIRN_IMAGE_EXPORT_OPTIONS_VERSION);
    if (opts->format != CAIRN_IMAGE_FORMAT_OCI && opts->format != CAIRN_IMAGE_FORMAT_OCI_ARCHIVE)
        return cairn__err(err, -EINVAL, "image export: unknown format %d", opts->format);
    if (opts->compression < CAIRN__COMP_NONE || opts->compression > CAIRN__COMP_ZSTD)
        return cairn__err(err, -EINVAL, "image export: unknown compression %d",
                          opts->compression);
    const char *ref = opts->ref ? opts->ref : name;
    int r = cairn_image_name_check(ref, err);
    if (r < 0)
        return r;
    cairn_image_info info;
    r = cairn_image_get(st, name, &info, err);
    if (r < 0)
        return r;

    _cleanup_free_ void *mbuf = NULL, *cbuf = NULL;
    size_t mlen = 0, clen = 0;
    cairn__oci_manifest man = {0};
    cairn__oci_config cfg = {0};
    char *mjson = NULL, *index = NULL;
    out o = {.st = st, .opts = opts, .dest = dest, .format = opts->format,
             .rootfd = -1, .blobfd = -1, .dirfd = -1, .devfd = -1};
    r = cairn_blob_read(st, info.manifest, &mbuf, &mlen, err);
    if (r < 0) {
        r = cairn__err_prefix(err, r, "image '%s': manifest", name);
        goto out;
    }
    r = cairn__oci_parse_manifest(mbuf, mlen, info.manifest, &man, err);
    if (r < 0)
        goto out;
    r = cairn_blob_read(st, man.config.digest, &cbuf, &clen, err);
    if (r < 0) {
        r = cairn__err_prefix(err, r, "image '%s': config", name);
        goto out;
    }
    r = cairn__oci_parse_config(cbuf, clen, man.config.digest, &cfg, err);
    if (r < 0)
        goto out;
    if (cfg.n_diff_ids != man.n_layers) {
        r = cairn__err(err, CAIRN_E_FORMAT, "config %s: %zu diff ids for %zu layers",
                       man.config.digest, cfg.n_diff_ids, man.n_layers);
        goto out;
    }
    o.buf = malloc(CHUNK);
    if (!o.buf) {
        r = cairn__err(err, -ENOMEM, "out of memory");
        goto out;
    }
    o.total = mlen + clen;
    for (size_t i = 0; i < man.n_layers; i++)
        o.total += (uint64_t)man.layers[i].size;
    r = out_open(&o, err);
    if (r < 0)
        goto out;

    r = put_buf(&o, man.config.digest, cbuf, clen, err);
    bool rewritten = false;
    char chain[CAIRN_DIGEST_LEN + 1] = "";
    for (size_t i = 0; i < man.n_layers && r == 0; i++) {
        const cairn__oci_desc *d = &man.layers[i];
        cairn__oci_chain_id(chain, cfg.diff_ids[i], chain);
        bool dup = false;
        for (size_t k = 0; k < i; k++)
            dup |= !strcmp(man.layers[k].digest, d->digest);
        if (dup)
            continue;
        r = cairn_blob_exists(st, d->digest, err);
        if (r > 0) {
            r = put_store_blob(&o, d->digest, d->size, err);
            if (r < 0)
                r = cairn__err_prefix(err, r, "layer %zu", i);
            continue;
        }
        if (r < 0)
            break;
        char nd[CAIRN_DIGEST_LEN + 1];
        uint64_t nsize = 0;
        r = put_layer_from_snapshot(&o, chain, i, nd, &nsize, err);
        if (r < 0)
            break;
        if (!strcmp(nd, d->digest))
            continue; /* made again byte for byte */
        json_t *l = json_array_get(json_object_get(man.root, "layers"), i);
        json_object_set_new(l, "digest", json_string(nd));
        json_object_set_new(l, "size", json_integer((json_int_t)nsize));
        json_object_set_new(l, "mediaType",
                            json_string(layer_media_type(man.docker, opts->compression)));
        rewritten = true;
    }
    if (r < 0)
        goto out;
    char mdigest[CAIRN_DIGEST_LEN + 1];
    const char *mdata = mbuf;
    size_t msize = mlen;
    if (rewritten) {
        mjson = json_dumps(man.root, JSON_COMPACT);
        if (!mjson) {
            r = cairn__err(err, -ENOMEM, "out of memory");
            goto out;
        }
        mdata = mjson;
        msize = strlen(mjson);
        cairn__sha256_buf(mdata, msize, mdigest);
    } else {
        memcpy(mdigest, info.manifest, sizeof(mdigest));
    }
    r = put_buf(&o, mdigest, mdata, msize, err);
    if (r < 0)
        goto out;

    json_t *platform = json_pack("{s:s, s:s}", "architecture", cfg.arch, "os", cfg.os);
    if (platform && cfg.variant[0])
        json_object_set_new(platform, "variant", json_string(cfg.variant));
    json_t *idx = json_pack(
        "{s:i, s:s, s:[{s:s, s:s, s:I, s:{s:s}, s:o}]}", "schemaVersion", 2, "mediaType",
        CAIRN__MT_OCI_INDEX, "manifests", "mediaType",
        man.docker ? CAIRN__MT_DOCKER_MANIFEST : CAIRN__MT_OCI_MANIFEST, "digest", mdigest, "size",
        (json_int_t)msize, "annotations", CAIRN__ANNOT_REF_NAME, ref, "platform", platform);
    index = idx ? json_dumps(idx, JSON_COMPACT) : NULL;
    json_decref(idx);
    if (!index) {
        r = cairn__err(err, -ENOMEM, "out of memory");
        goto out;
    }
    r = out_finish(&o, index, err);
out:
    out_clear(&o);
    free(mjson);
    free(index);
    cairn__oci_manifest_clear(&man);
    cairn__oci_config_clear(&cfg);
    return r;
}
