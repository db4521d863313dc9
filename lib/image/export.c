/* export.c: write an image as an OCI image layout (cairn_image_export).
 *
 * The layout gets the image's config, its layers and its manifest as blobs,
 * then index.json naming the manifest; an oci-archive holds the same members
 * and a manifest.json (Config, RepoTags, Layers) that `docker load` reads,
 * as containerd's `ctr images export` writes.
 *
 * An oci-archive into a device or a FIFO (/dev/stdout, a pipe) is written
 * into it in place, never renamed over (that would replace /dev/null for
 * every user of the machine), its layer temporaries unnamed (O_TMPFILE) in
 * the state's tmp/.
 *
 * Invariant: DEST appears complete or not at all (but a device or FIFO). The layout is built in a
 * directory beside DEST (".NAME.cairn-tmp-*"), the archive in a file beside
 * it; each is synced and renamed into place last, without replacing anything
 * but an empty directory (a layout's DEST may be one); a failure removes
 * what was built. Inside, blobs are written under temporary names, synced,
 * then renamed.
 *
 * Layers: the original blob, as it is, when the store holds it; with
 * `recompress`, a blob in another compression than the one asked for is
 * decompressed and compressed again (the same tar, so the same diff id and
 * config, but another digest). A layer whose blob is gone is made again from
 * its snapshot with cairn_layer_export() (same diff id). Either way the
 * manifest is rewritten to name the new blobs (and gets a digest of its
 * own); a Docker manifest given zstd layers becomes an OCI one, Docker
 * schema 2 having no zstd type.
 */
#include "core/core.h"
#include "image/oci-private.h"

#include <ctype.h>
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
    int dirfd;                /* the directory DEST is in */
    char *base;               /* DEST's name in it */
    char *tmp;                /* what is being built beside DEST, until it is renamed */
    bool replace_empty;       /* layout: DEST is an empty directory, to be replaced */
    int rootfd, blobfd;       /* layout: tmp, tmp/blobs/sha256 */
    struct archive *a;        /* archive, written to arc_fd (tmp) or devfd */
    int arc_fd;
    int devfd;                /* archive into a device or FIFO, written in place; or -1 */
    char *buf;
    uint64_t done, total;
} out;

/* A stop is an error like any other: DEST is built beside and never
 * renamed into place. */
static int progress(out *o, uint64_t n, cairn_error *err)
{
    o->done += n;
    return cairn__progress(o->opts->progress, o->opts->progress_userdata, o->done, o->total,
                           "image export", err);
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
    return progress(o, len, err);
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
        r = cairn__copy_fd(in, fd, (off_t)size);
        if (r < 0) {
            unlinkat(o->blobfd, tmp, 0);
            return cairn__err(err, r, "%s/%s: copy: %m", o->dest, path);
        }
        r = layout_publish(o, fd, tmp, digest, err);
        if (r < 0)
            return r;
    }
    return progress(o, (uint64_t)size, err);
}

/* A new temporary file for a layer: beside DEST for an archive (it is
 * copied into the tar), in blobs/sha256 for a layout (it is renamed there). */
static int layer_tmp(out *o, size_t idx, char tmp[96], int *dfd, cairn_error *err)
{
    char rnd[CAIRN_STATE_ID_LEN + 1];
    int r = cairn__random_id(rnd);
    if (r < 0)
        return cairn__err(err, r, "random: %m");
    *dfd = o->format == CAIRN_IMAGE_FORMAT_OCI_ARCHIVE ? o->dirfd : o->blobfd;
    snprintf(tmp, 96, ".%s-layer-%s.tmp",
             o->format == CAIRN_IMAGE_FORMAT_OCI_ARCHIVE ? "cairn" : "tmp", rnd);
    /* Beside a device (dfd is the state's tmp/ then) it has no name at all. */
    if (o->devfd >= 0)
        tmp[0] = 0;
    int fd = o->devfd >= 0 ? openat(*dfd, ".", O_RDWR | O_TMPFILE | O_CLOEXEC, 0600)
                           : openat(*dfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return cairn__err(err, -errno, "%s: temporary file for layer %zu: %m", o->dest, idx);
    return fd;
}

/* A finished layer temporary (its digest known) into the output. */
static int layer_publish(out *o, int fd, int dfd, const char *tmp, const char *digest,
                         uint64_t size, cairn_error *err)
{
    int r;
    if (o->format == CAIRN_IMAGE_FORMAT_OCI_ARCHIVE) {
        char path[96];
        snprintf(path, sizeof(path), "blobs/sha256/%s", cairn__digest_hex(digest));
        if (lseek(fd, 0, SEEK_SET) < 0)
            r = cairn__err(err, -errno, "%s: seek: %m", tmp);
        else
            r = arc_data_fd(o, path, fd, (int64_t)size, err);
        if (tmp[0])
            unlinkat(dfd, tmp, 0);
    } else {
        r = layout_publish(o, fd, tmp, digest, err);
    }
    if (r == 0)
        r = progress(o, size, err);
    return r;
}

/* A layer made again from its snapshot; fills its new digest and size. */
static int put_layer_from_snapshot(out *o, const char *chain_id, size_t idx, char *digest,
                                   uint64_t *size, cairn_error *err)
{
    char tmp[96];
    int dfd;
    _cleanup_close_ int fd = layer_tmp(o, idx, tmp, &dfd, err);
    if (fd < 0)
        return fd;
    int r = cairn_layer_export(o->st, chain_id, fd, o->opts->compression, digest, size, err);
    if (r < 0) {
        if (tmp[0])
            unlinkat(dfd, tmp, 0);
        return cairn__err_prefix(err, r, "layer %zu (snapshot %s)", idx, chain_id);
    }
    return layer_publish(o, fd, dfd, tmp, digest, *size, err);
}

/* A layer blob of the store in another compression: the same tar (checked
 * against its diff id), compressed as asked. */
static int put_layer_recompressed(out *o, const cairn__oci_desc *d, int from,
                                  const char *diff_id, size_t idx, char *digest, uint64_t *size,
                                  cairn_error *err)
{
    int to = o->opts->compression;
    _cleanup_close_ int in = -1;
    int r = cairn_blob_open(o->st, d->digest, 0, &in, err);
    if (r < 0)
        return cairn__err_prefix(err, r, "layer %zu", idx);
    char tmp[96];
    int dfd;
    _cleanup_close_ int fd = layer_tmp(o, idx, tmp, &dfd, err);
    if (fd < 0)
        return fd;
    struct archive *rd = archive_read_new(), *wr = NULL;
    cairn__sha256 *h = cairn__sha256_new();
    struct archive_entry *ae;
    if (!rd || !h) {
        r = cairn__err(err, -ENOMEM, "out of memory");
        goto out;
    }
    /* Exactly the compression the media type names, as import reads it. */
    if ((from != CAIRN__COMP_NONE &&
         archive_read_append_filter(rd, from == CAIRN__COMP_ZSTD ? ARCHIVE_FILTER_ZSTD
                                                                 : ARCHIVE_FILTER_GZIP) !=
             ARCHIVE_OK) ||
        archive_read_support_format_raw(rd) != ARCHIVE_OK ||
        archive_read_open_fd(rd, in, CHUNK) != ARCHIVE_OK ||
        archive_read_next_header(rd, &ae) != ARCHIVE_OK) {
        r = cairn__err(err, CAIRN_E_CORRUPT, "layer %zu (%s): %s", idx, d->digest,
                       archive_error_string(rd));
        goto out;
    }
    if (to != CAIRN__COMP_NONE) {
        wr = archive_write_new();
        struct archive_entry *e = wr ? archive_entry_new() : NULL;
        bool ok = e && archive_write_set_format_raw(wr) == ARCHIVE_OK &&
                  (to == CAIRN__COMP_GZIP
                       ? archive_write_add_filter_gzip(wr) == ARCHIVE_OK &&
                             archive_write_set_filter_option(wr, "gzip", "timestamp", NULL) ==
                                 ARCHIVE_OK
                       : archive_write_add_filter_zstd(wr) == ARCHIVE_OK) &&
                  archive_write_set_bytes_per_block(wr, 0) == ARCHIVE_OK &&
                  archive_write_open_fd(wr, fd) == ARCHIVE_OK;
        if (ok) {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_pathname(e, "layer.tar");
            ok = archive_write_header(wr, e) == ARCHIVE_OK;
        }
        archive_entry_free(e);
        if (!ok) {
            r = cairn__err(err, wr ? CAIRN_E_FORMAT : -ENOMEM, "layer %zu: compressor: %s", idx,
                           wr ? archive_error_string(wr) : "out of memory");
            goto out;
        }
    }
    for (;;) {
        la_ssize_t n = archive_read_data(rd, o->buf, CHUNK);
        if (n < 0) {
            r = cairn__err(err, CAIRN_E_CORRUPT, "layer %zu (%s): %s; run fsck", idx, d->digest,
                           archive_error_string(rd));
            goto out;
        }
        if (n == 0)
            break;
        cairn__sha256_update(h, o->buf, (size_t)n);
        if (wr ? archive_write_data(wr, o->buf, (size_t)n) != n
               : (r = cairn__write_all(fd, o->buf, (size_t)n)) < 0) {
            r = wr ? cairn__err(err, -EIO, "layer %zu: %s", idx, archive_error_string(wr))
                   : cairn__err(err, r, "%s: write: %m", tmp);
            goto out;
        }
    }
    if (wr && archive_write_close(wr) != ARCHIVE_OK) {
        r = cairn__err(err, -EIO, "layer %zu: %s", idx, archive_error_string(wr));
        goto out;
    }
    char plain[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_final(h, plain);
    if (strcmp(plain, diff_id)) {
        r = cairn__err(err, CAIRN_E_CORRUPT,
                       "layer %zu (%s): its tar's digest is %s, the config's diff id %s", idx,
                       d->digest, plain, diff_id);
        goto out;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        r = cairn__err(err, -errno, "%s: seek: %m", tmp);
        goto out;
    }
    int64_t n = cairn__sha256_fd(fd, digest);
    if (n < 0) {
        r = cairn__err(err, (int)n, "%s: read: %m", tmp);
        goto out;
    }
    *size = (uint64_t)n;
    r = layer_publish(o, fd, dfd, tmp, digest, *size, err);
    dfd = -1; /* published or removed */
out:
    if (dfd >= 0)
        if (tmp[0])
            unlinkat(dfd, tmp, 0);
    if (rd)
        archive_read_free(rd);
    if (wr)
        archive_write_free(wr);
    cairn__sha256_free(h);
    return r;
}

static const char *layer_media_type(bool docker, int compression)
{
    if (docker && compression == CAIRN__COMP_GZIP)
        return CAIRN__MT_DOCKER_LAYER;
    if (docker && compression == CAIRN__COMP_NONE)
        return CAIRN__MT_DOCKER_LAYER_TAR;
    return compression == CAIRN__COMP_GZIP   ? CAIRN__MT_OCI_LAYER_GZ
           : compression == CAIRN__COMP_ZSTD ? CAIRN__MT_OCI_LAYER_ZST
                                             : CAIRN__MT_OCI_LAYER;
}

/* A Docker schema 2 manifest made an OCI one (for zstd layers, which
 * Docker's types cannot name): the same config and layers, OCI's types. */
static void manifest_to_oci(json_t *root)
{
    json_object_set_new(root, "mediaType", json_string(CAIRN__MT_OCI_MANIFEST));
    json_object_set_new(json_object_get(root, "config"), "mediaType",
                        json_string(CAIRN__MT_OCI_CONFIG));
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(root, "layers"), i, l) {
        const char *mt = json_string_value(json_object_get(l, "mediaType"));
        if (mt && !strcmp(mt, CAIRN__MT_DOCKER_LAYER))
            json_object_set_new(l, "mediaType", json_string(CAIRN__MT_OCI_LAYER_GZ));
        else if (mt && !strcmp(mt, CAIRN__MT_DOCKER_LAYER_TAR))
            json_object_set_new(l, "mediaType", json_string(CAIRN__MT_OCI_LAYER));
    }
}

/* Whether `docker load` takes the name as a RepoTags entry: a Docker
 * reference [domain/]path:tag, the path of lower-case components. */
static bool docker_tag_ok(const char *ref)
{
    const char *slash = strrchr(ref, '/'), *colon = strrchr(ref, ':');
    if (!colon || colon == ref || (slash && colon < slash) || !colon[1] ||
        strlen(colon + 1) > 128 || colon[1] == '.' || colon[1] == '-')
        return false;
    for (const char *c = colon + 1; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '.' && *c != '-')
            return false;
    const char *p = ref, *first = strchr(ref, '/');
    if (first && first < colon) {
        /* A first component with a dot or a colon, or "localhost", is a domain. */
        bool domain = (size_t)(first - ref) == 9 && !strncmp(ref, "localhost", 9);
        for (const char *c = ref; c < first; c++)
            domain |= *c == '.' || *c == ':';
        if (domain) {
            for (const char *c = ref; c < first; c++)
                if (!isalnum((unsigned char)*c) && *c != '.' && *c != '-' && *c != ':')
                    return false;
            p = first + 1;
        }
    }
    bool start = true; /* at the start of a component: a letter or digit must come */
    for (const char *c = p; c < colon; c++) {
        bool an = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9');
        if (start && !an)
            return false;
        if (!an && *c != '/' && *c != '.' && *c != '_' && *c != '-')
            return false;
        start = *c == '/';
    }
    return !start && isalnum((unsigned char)colon[-1]);
}

/* The directory DEST is in and its name there; a temporary name beside it. */
static int dest_split(out *o, cairn_error *err)
{
    _cleanup_free_ char *dir = strdup(o->dest);
    if (!dir)
        return cairn__err(err, -ENOMEM, "out of memory");
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        dir[--n] = 0;
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : dir;
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return cairn__err(err, -EINVAL, "%s: name a new file or directory to export into",
                          o->dest);
    o->base = strdup(base);
    const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
    if (!o->base)
        return cairn__err(err, -ENOMEM, "out of memory");
    o->dirfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (o->dirfd < 0)
        return cairn__err(err, -errno, "%s: %m", d);
    char rnd[CAIRN_STATE_ID_LEN + 1];
    int r = cairn__random_id(rnd);
    if (r < 0)
        return cairn__err(err, r, "random: %m");
    if (asprintf(&o->tmp, ".%.200s.cairn-tmp-%.16s", o->base, rnd) < 0) {
        o->tmp = NULL;
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    return 0;
}

static int dir_is_empty(int dirfd, const char *name, bool *empty)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int e = -errno;
        if (fd >= 0)
            close(fd);
        return e;
    }
    struct dirent *de;
    *empty = true;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            *empty = false;
    closedir(d);
    return 0;
}

static int out_open(out *o, cairn_error *err)
{
    int r = dest_split(o, err);
    if (r < 0)
        return r;
    struct stat sb;
    bool exists = fstatat(o->dirfd, o->base, &sb, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT)
        return cairn__err(err, -errno, "%s: %m", o->dest);
    if (o->format == CAIRN_IMAGE_FORMAT_OCI_ARCHIVE && exists) {
        /* A device or a FIFO (or a symlink to one) is written into, never
         * replaced. Anything else there is refused. */
        if (stat(o->dest, &sb) < 0 || S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode))
            return cairn__err(err, -EEXIST, "%s: already exists", o->dest);
        o->devfd = open(o->dest, O_WRONLY | O_NOCTTY | O_CLOEXEC);
        if (o->devfd < 0)
            return cairn__err(err, -errno, "%s: %m", o->dest);
        if (fstat(o->devfd, &sb) < 0 || S_ISREG(sb.st_mode))
            return cairn__err(err, -EEXIST, "%s: already exists", o->dest);
        free(steal_pointer(&o->tmp)); /* nothing is built beside it */
        int tfd = cairn__tmpfd(o->st, err);
        if (tfd < 0)
            return tfd;
        close(o->dirfd);
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
    if (o->format == CAIRN_IMAGE_FORMAT_OCI_ARCHIVE) {
        o->arc_fd = openat(o->dirfd, o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (o->arc_fd < 0) {
            int e = -errno;
            free(steal_pointer(&o->tmp)); /* not ours to remove */
            return cairn__err(err, e, "%s: a file beside it: %m", o->dest);
        }
        o->a = archive_write_new();
        if (!o->a)
            return cairn__err(err, -ENOMEM, "out of memory");
        if (archive_write_set_format_pax_restricted(o->a) != ARCHIVE_OK ||
            archive_write_open_fd(o->a, o->arc_fd) != ARCHIVE_OK)
            return arc_fail(o, o->tmp, err);
        return 0;
    }
    /* Only a missing DEST or an empty directory: never mix with another
     * layout's index, never replace a file. */
    if (exists && !S_ISDIR(sb.st_mode))
        return cairn__err(err, -EEXIST, "%s: already exists and is not a directory", o->dest);
    if (exists) {
        bool empty = false;
        if ((r = dir_is_empty(o->dirfd, o->base, &empty)) < 0)
            return cairn__err(err, r, "%s: %m", o->dest);
        if (!empty)
            return cairn__err(err, -ENOTEMPTY, "%s: not empty; export into a new directory",
                              o->dest);
        o->replace_empty = true;
    }
    if (mkdirat(o->dirfd, o->tmp, 0755) < 0) {
        int e = -errno;
        free(steal_pointer(&o->tmp));
        return cairn__err(err, e, "%s: a directory beside it: %m", o->dest);
    }
    o->rootfd = openat(o->dirfd, o->tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (o->rootfd < 0)
        return cairn__err(err, -errno, "%s: %m", o->tmp);
    if ((r = cairn__mkdir_at(o->rootfd, "blobs", 0755)) < 0)
        return cairn__err(err, r, "%s/blobs: %m", o->tmp);
    int bfd = openat(o->rootfd, "blobs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (bfd < 0)
        return cairn__err(err, -errno, "%s/blobs: %m", o->tmp);
    r = cairn__mkdir_at(bfd, "sha256", 0755);
    if (r == 0)
        o->blobfd = openat(bfd, "sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int e = errno;
    close(bfd);
    if (r < 0 || o->blobfd < 0)
        return cairn__err(err, r < 0 ? r : -e, "%s/blobs/sha256: %m", o->tmp);
    return 0;
}

static int arc_file(out *o, const char *name, const char *data, cairn_error *err)
{
    size_t n = strlen(data);
    int r = arc_header(o, name, (int64_t)n, err);
    if (r < 0)
        return r;
    if (archive_write_data(o->a, data, n) != (la_ssize_t)n)
        return arc_fail(o, name, err);
    return 0;
}

/* The top-level files, last (oci-layout, index.json; manifest.json in an
 * archive), then DEST renamed into place. */
static int out_finish(out *o, const char *index, const char *docker, cairn_error *err)
{
    static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
    int r;
    if (o->format == CAIRN_IMAGE_FORMAT_OCI_ARCHIVE) {
        if ((r = arc_file(o, "oci-layout", layout, err)) < 0 ||
            (r = arc_file(o, "manifest.json", docker, err)) < 0 ||
            (r = arc_file(o, "index.json", index, err)) < 0)
            return r;
        if (archive_write_close(o->a) != ARCHIVE_OK)
            return arc_fail(o, o->devfd >= 0 ? o->dest : o->tmp, err);
        if (o->devfd >= 0)
            return 0; /* nothing to sync or rename: it went where it goes */
        if (fsync(o->arc_fd) < 0)
            return cairn__err(err, -errno, "%s: fsync: %m", o->tmp);
        r = cairn__rename_noreplace(o->dirfd, o->tmp, o->dirfd, o->base);
        if (r < 0)
            return cairn__err(err, r, "%s: %m", o->dest);
    } else {
        if (fsync(o->blobfd) < 0)
            return cairn__err(err, -errno, "%s/blobs/sha256: fsync: %m", o->tmp);
        r = cairn__write_file_atomic(o->rootfd, "oci-layout", layout, strlen(layout), 0644);
        if (r == 0)
            r = cairn__write_file_atomic(o->rootfd, "index.json", index, strlen(index), 0644);
        if (r < 0)
            return cairn__err(err, r, "%s: writing index.json: %m", o->tmp);
        if (fsync(o->rootfd) < 0)
            return cairn__err(err, -errno, "%s: fsync: %m", o->tmp);
        /* rename(2) replaces an empty directory and nothing else: one that
         * was filled meanwhile makes it fail (ENOTEMPTY), not lose data. */
        r = o->replace_empty ? (renameat(o->dirfd, o->tmp, o->dirfd, o->base) < 0 ? -errno : 0)
                             : cairn__rename_noreplace(o->dirfd, o->tmp, o->dirfd, o->base);
        if (r < 0)
            return cairn__err(err, r, "%s: %m", o->dest);
    }
    free(steal_pointer(&o->tmp)); /* published: no longer ours to remove */
    return cairn__fsync_at(o->dirfd, NULL) < 0 ? cairn__err(err, -errno, "%s: fsync", o->dest)
                                               : 0;
}

static void out_clear(out *o)
{
    if (o->a)
        archive_write_free(o->a);
    if (o->arc_fd >= 0)
        close(o->arc_fd);
    if (o->devfd >= 0)
        close(o->devfd);
    if (o->rootfd >= 0)
        close(o->rootfd);
    if (o->blobfd >= 0)
        close(o->blobfd);
    /* A failed export leaves nothing: what was built beside DEST goes. */
    if (o->tmp && o->dirfd >= 0)
        cairn__rm_rf_at(o->dirfd, o->tmp);
    free(o->tmp);
    free(o->base);
    if (o->dirfd >= 0)
        close(o->dirfd);
    free(o->buf);
}

int cairn_image_export(cairn_state *st, const char *name, const char *dest,
                       const cairn_image_export_options *opts, cairn_error *err)
{
    cairn_image_export_options def = CAIRN_IMAGE_EXPORT_OPTIONS_INIT;
    if (!opts)
        opts = &def;
    int r0 = cairn__opts_version(opts->version, CAIRN_IMAGE_EXPORT_OPTIONS_VERSION, "image export",
                                 err);
    if (r0 < 0)
        return r0;
    /* A struct of version 1 ends before recompress: copy what it has, the
     * rest stays zero (the default). */
    cairn_image_export_options own = {0};
    if (opts->version == 1)
        memcpy(&own, opts, offsetof(cairn_image_export_options, recompress));
    else
        own = *opts;
    /* Zero means the default: gzip, what every registry and runtime reads. */
    if (own.compression == CAIRN_COMPRESSION_DEFAULT)
        own.compression = CAIRN_COMPRESSION_GZIP;
    opts = &own;
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
    char *mjson = NULL, *index = NULL, *dmjson = NULL, *tagged = NULL;
    bool recompress = opts->version >= 2 && opts->recompress;
    out o = {.st = st, .opts = opts, .dest = dest, .format = opts->format,
             .rootfd = -1, .blobfd = -1, .dirfd = -1, .arc_fd = -1, .devfd = -1};
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
    bool rewritten = false, zstd = false;
    char chain[CAIRN_DIGEST_LEN + 1] = "";
    json_t *ls = json_object_get(man.root, "layers");
    for (size_t i = 0; i < man.n_layers && r == 0; i++) {
        const cairn__oci_desc *d = &man.layers[i];
        cairn__oci_chain_id(chain, cfg.diff_ids[i], chain);
        size_t dup = SIZE_MAX;
        for (size_t k = 0; k < i && dup == SIZE_MAX; k++)
            if (!strcmp(man.layers[k].digest, d->digest))
                dup = k;
        if (dup != SIZE_MAX) {
            /* The same blob again: written once, named as the first. */
            json_array_set(ls, i, json_array_get(ls, dup));
            continue;
        }
        char nd[CAIRN_DIGEST_LEN + 1];
        uint64_t nsize = 0;
        int from;
        r = cairn_blob_exists(st, d->digest, err);
        if (r < 0)
            break;
        if (r > 0 && (!recompress || cairn__oci_layer_type(d->media_type, &from) < 0 ||
                      from == opts->compression)) {
            r = put_store_blob(&o, d->digest, d->size, err);
            if (r < 0)
                r = cairn__err_prefix(err, r, "layer %zu", i);
            continue;
        }
        r = r > 0 ? put_layer_recompressed(&o, d, from, cfg.diff_ids[i], i, nd, &nsize, err)
                  : put_layer_from_snapshot(&o, chain, i, nd, &nsize, err);
        if (r < 0)
            break;
        if (!strcmp(nd, d->digest))
            continue; /* made again byte for byte */
        json_t *l = json_deep_copy(json_array_get(ls, i));
        json_object_set_new(l, "digest", json_string(nd));
        json_object_set_new(l, "size", json_integer((json_int_t)nsize));
        json_object_set_new(l, "mediaType",
                            json_string(layer_media_type(man.docker, opts->compression)));
        json_array_set_new(ls, i, l);
        rewritten = true;
        zstd |= opts->compression == CAIRN__COMP_ZSTD;
    }
    if (r < 0)
        goto out;
    bool docker = man.docker;
    if (docker && zstd) {
        manifest_to_oci(man.root);
        docker = false;
    }
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
        docker ? CAIRN__MT_DOCKER_MANIFEST : CAIRN__MT_OCI_MANIFEST, "digest", mdigest, "size",
        (json_int_t)msize, "annotations", CAIRN__ANNOT_REF_NAME, ref, "platform", platform);
    index = idx ? json_dumps(idx, JSON_COMPACT) : NULL;
    json_decref(idx);
    /* For `docker load`: the config and the layers by their paths in the
     * archive; RepoTags only for a name Docker takes (a name without a tag
     * gets ":latest", as docker tag would give it). */
    json_t *paths = json_array(), *tags = json_array();
    json_t *l;
    size_t li;
    json_array_foreach(ls, li, l) {
        char path[96];
        snprintf(path, sizeof(path), "blobs/sha256/%s",
                 cairn__digest_hex(json_string_value(json_object_get(l, "digest"))));
        json_array_append_new(paths, json_string(path));
    }
    const char *last_slash = strrchr(ref, '/'), *last_colon = strrchr(ref, ':');
    if ((!last_colon || (last_slash && last_colon < last_slash)) &&
        asprintf(&tagged, "%s:latest", ref) < 0)
        tagged = NULL;
    if (docker_tag_ok(tagged ? tagged : ref))
        json_array_append_new(tags, json_string(tagged ? tagged : ref));
    char cpath[96];
    snprintf(cpath, sizeof(cpath), "blobs/sha256/%.64s", cairn__digest_hex(man.config.digest));
    json_t *dm = json_pack("[{s:s, s:o, s:o}]", "Config", cpath, "RepoTags", tags, "Layers", paths);
    dmjson = dm ? json_dumps(dm, JSON_COMPACT) : NULL;
    json_decref(dm);
    if (!index || !dmjson) {
        r = cairn__err(err, -ENOMEM, "out of memory");
        goto out;
    }
    r = out_finish(&o, index, dmjson, err);
out:
    out_clear(&o);
    free(mjson);
    free(index);
    free(dmjson);
    free(tagged);
    cairn__oci_manifest_clear(&man);
    cairn__oci_config_clear(&cfg);
    return r;
}
