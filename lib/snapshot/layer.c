/* layer.c: layer tarballs in and out of snapshots (cairn/layer.h).
 *
 * Import, in phases:
 *   1. check the parent is there; with an expected DiffID whose snapshot is
 *      there already, stop: nothing to do;
 *   2. detect the compression (gzip, zstd or none) from the first bytes,
 *      decompress, hash the plain tar stream as it goes by (the DiffID,
 *      computed while reading) and feed it to libarchive's tar reader;
 *   3. apply each entry into a staging directory under tmp/: every path is
 *      resolved beneath it with openat2(RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS),
 *      so no entry writes outside it, whatever links earlier entries made;
 *      OCI whiteouts become overlayfs whiteouts, `.wh..wh..opq` the opaque
 *      xattr; directories get their mode and times last;
 *   4. check the DiffID against the expected one; compute the digest of the
 *      canonical tar of what was applied (equal to the DiffID when the input
 *      was canonical, which export needs to know);
 *   5. publish (snapshot.c): syncfs, rename into snapshots/<hex>, the row.
 * Any failure removes the staging directory: no partial snapshot, no row.
 *
 * Export writes the canonical tar (tar.c) through a SHA-256 of the plain
 * stream and, when compressing, a libarchive "raw" writer with the filter.
 *
 * Proof (cairn__layer_prove): a tree unpacked elsewhere from a layer is
 * compared with the entries the layer's stream would make, writing
 * nothing; see its section.
 */
#include "snapshot/snapshot-private.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <archive.h>
#include <archive_entry.h>
#include <zlib.h>
#include <zstd.h>

#define IMPORT_BUF (1u << 20)
/* The holes of sparse entries, in all, in one layer. A sparse file costs
 * its apparent size to every later reading of the snapshot (its canonical
 * tar is computed at import, and written at export): a 10 KB layer could
 * declare a 16 TB file and hold an import for a day. Tars written by image
 * builders carry no sparse entries; a tool's --sparse may, with a few. */
#define HOLES_MAX (1ull << 30)

/* ---- import ----------------------------------------------------------- */

typedef struct dir_fixup {
    char *path;
    dev_t dev;            /* the directory the entry made, to find it again */
    ino_t ino;
    bool superseded;      /* a later entry of the same directory says otherwise */
    mode_t mode;
    uid_t uid;
    gid_t gid;
    struct timespec mtime;
} dir_fixup;

typedef struct importer {
    cairn_state *st;
    const cairn_layer_import_options *opts;
    cairn_error *err;
    int in_fd;
    uint64_t in_bytes;
    struct archive *tar;  /* the tar parser, fed the plain stream */
    cairn__sha256 *hash;  /* of the plain tar stream */
    int raw_err;          /* a failure of the decompression: CAIRN_E_* */
    char raw_msg[256];
    int kind;             /* 'p'lain, 'g'zip, 'z'std */
    z_stream zs;
    bool zinit;
    ZSTD_DStream *zd;
    bool member_done;     /* the last gzip member or zstd frame is complete */
    bool in_eof;
    size_t in_len, in_pos;
    char *outbuf;
    char *inbuf;
    char *databuf;
    int root;             /* the staging directory */
    bool privileged;
    uint64_t size;
    uint64_t holes;       /* of sparse entries so far */
    dir_fixup *dirs;
    size_t ndirs, capdirs;
    int *chain;           /* the parent chain's snapshot directories, top first */
    size_t nchain;
    uint64_t fed;         /* plain bytes given to the tar reader */
    int64_t data_end;     /* where the current entry's data ends in them; -1 unknown */
    bool ended_early;     /* the stream ended there: its padding and end made up */
    bool read_past_end;   /* the reader asked for more after the last byte */
} importer;

/* ---- the plain tar stream -------------------------------------------- *
 * Decompression is done here with zlib and libzstd rather than through
 * libarchive's filters: libarchive 3.6 does not check the CRC-32 in a gzip
 * member's trailer, so a corrupt gzip stream would be applied silently. zlib
 * checks it (windowBits 15 + 16), libzstd checks a frame's checksum. */

static int fill(importer *im)
{
    if (im->in_eof)
        return 0;
    for (;;) {
        ssize_t n = read(im->in_fd, im->inbuf, IMPORT_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return cairn__err(im->err, -errno, "layer: read: %m");
        if (n == 0)
            im->in_eof = true;
        im->in_len = (size_t)n;
        im->in_pos = 0;
        im->in_bytes += (uint64_t)n;
        if (n > 0) {
            int r = cairn__progress(im->opts->progress, im->opts->progress_userdata, im->in_bytes,
                                    0, "layer import", im->err);
            if (r < 0)
                return r;
        }
        return (int)(n > 0);
    }
}

static int stream_error(importer *im, int code, const char *fmt, const char *detail)
    CAIRN_PRINTF(3, 0);
static int stream_error(importer *im, int code, const char *fmt, const char *detail)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    im->raw_err = code;
    snprintf(im->raw_msg, sizeof(im->raw_msg), fmt, detail);
#pragma GCC diagnostic pop
    return code;
}

/* Detect the compression from the first bytes. */
static int plain_start(importer *im)
{
    int r = fill(im);
    if (r < 0)
        return r;
    const unsigned char *b = (const unsigned char *)im->inbuf;
    size_t n = im->in_len;
    if (n == 0)
        return cairn__err(im->err, CAIRN_E_TRUNCATED, "layer: the input is empty");
    if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
        im->kind = 'g';
        if (inflateInit2(&im->zs, 15 + 16) != Z_OK)
            return cairn__err(im->err, -ENOMEM, "layer: gzip: out of memory");
        im->zinit = true;
    } else if (n >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd) {
        im->kind = 'z';
        im->zd = ZSTD_createDStream();
        if (!im->zd || ZSTD_isError(ZSTD_initDStream(im->zd)))
            return cairn__err(im->err, -ENOMEM, "layer: zstd: out of memory");
    } else if ((n >= 3 && !memcmp(b, "BZh", 3)) || (n >= 6 && !memcmp(b, "\xfd" "7zXZ", 6))) {
        return cairn__err(im->err, CAIRN_E_FORMAT,
                          "layer: compressed with %s; only gzip and zstd are accepted",
                          b[0] == 'B' ? "bzip2" : "xz");
    } else {
        im->kind = 'p';
    }
    return 0;
}

/* The next plain bytes: > 0 with *buf set, 0 at the end, < 0 on error
 * (im->raw_err and raw_msg say why). */
static ssize_t plain_next(importer *im, const void **buf)
{
    if (im->kind == 'p') {
        if (im->in_pos >= im->in_len) {
            int r = fill(im);
            if (r <= 0)
                return r;
        }
        *buf = im->inbuf + im->in_pos;
        size_t n = im->in_len - im->in_pos;
        im->in_pos = im->in_len;
        return (ssize_t)n;
    }
    for (;;) {
        if (im->in_pos >= im->in_len && !im->in_eof) {
            int r = fill(im);
            if (r < 0)
                return r;
        }
        size_t avail = im->in_len - im->in_pos;
        if (avail == 0 && im->in_eof) {
            if (!im->member_done)
                return stream_error(im, CAIRN_E_TRUNCATED, "the %s stream ends early",
                                    im->kind == 'g' ? "gzip" : "zstd");
            return 0;
        }
        if (im->kind == 'g') {
            if (im->member_done) {
                /* Another member follows (concatenated gzip). */
                if (inflateReset(&im->zs) != Z_OK)
                    return stream_error(im, CAIRN_E_FORMAT, "gzip: %s", "reset failed");
                im->member_done = false;
            }
            im->zs.next_in = (unsigned char *)im->inbuf + im->in_pos;
            im->zs.avail_in = (unsigned)avail;
            im->zs.next_out = (unsigned char *)im->outbuf;
            im->zs.avail_out = IMPORT_BUF;
            int rc = inflate(&im->zs, Z_NO_FLUSH);
            im->in_pos = im->in_len - im->zs.avail_in;
            size_t got = IMPORT_BUF - im->zs.avail_out;
            if (rc == Z_STREAM_END)
                im->member_done = true;
            else if (rc != Z_OK && rc != Z_BUF_ERROR)
                return stream_error(im, CAIRN_E_FORMAT, "gzip: %s",
                                    im->zs.msg ? im->zs.msg : "corrupt data");
            if (got) {
                *buf = im->outbuf;
                return (ssize_t)got;
            }
        } else {
            ZSTD_inBuffer in = {im->inbuf + im->in_pos, avail, 0};
            ZSTD_outBuffer out = {im->outbuf, IMPORT_BUF, 0};
            size_t rc = ZSTD_decompressStream(im->zd, &out, &in);
            im->in_pos += in.pos;
            if (ZSTD_isError(rc))
                return stream_error(im, CAIRN_E_FORMAT, "zstd: %s", ZSTD_getErrorName(rc));
            im->member_done = rc == 0;
            if (out.pos) {
                *buf = im->outbuf;
                return (ssize_t)out.pos;
            }
        }
    }
}

/* The tar reader's input: the plain bytes, hashed as they go by.
 *
 * A stream that ends exactly where an entry's data ends, off a block
 * boundary, is whole but for what a tar writer adds after it: the padding to
 * the block and the end-of-archive blocks (umoci 0.4.7's `insert` writes its
 * layers so, and umoci, containerd and podman apply them). Those bytes are
 * made up here for the reader, once, and not hashed: the DiffID stays the
 * digest of the bytes as they are. A stream cut anywhere else (in a header,
 * in data, in the padding) still ends there, and the reader says truncated. */
static la_ssize_t tar_read(struct archive *a, void *ud, const void **buf)
{
    static const char zeros[3 * 512];
    importer *im = ud;
    const void *b = NULL;
    ssize_t n = plain_next(im, &b);
    if (n < 0) {
        if (!im->raw_err)
            stream_error(im, (int)n, "%s", "read error");
        archive_set_error(a, EIO, "%s", im->raw_msg);
        return -1;
    }
    if (n == 0 && !im->ended_early && im->fed % 512 && im->data_end >= 0 &&
        (uint64_t)im->data_end == im->fed) {
        im->ended_early = true;
        *buf = zeros;
        return (la_ssize_t)(512 - im->fed % 512 + 1024);
    }
    if (n > 0) {
        cairn__sha256_update(im->hash, b, (size_t)n);
        im->fed += (uint64_t)n;
    } else {
        im->read_past_end = true;
    }
    *buf = b;
    return n;
}

static int unsafe(importer *im, const char *path, const char *why)
{
    return cairn__err(im->err, CAIRN_E_UNSAFE, "layer entry '%.200s': %s; refused", path, why);
}

/* Normalise a path from the tar into `out`: strip "./" and a trailing '/',
 * refuse absolute paths and "..". Returns 0, or 1 for the root itself: "."
 * or "./", and "/" too (umoci's `insert ... /` names the root so), which is
 * the layer's root, not an absolute path out of it. */
static int clean_path(importer *im, const char *in, char *out, size_t size)
{
    if (!in || !*in)
        return unsafe(im, "", "empty path");
    size_t o = 0;
    const char *p = in;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *q = strchrnul(p, '/');
        size_t n = (size_t)(q - p);
        if (n == 1 && p[0] == '.') {
            p = q;
            continue;
        }
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return unsafe(im, in, "'..' in the path");
        if (n > NAME_MAX)
            return unsafe(im, in, "a name longer than 255 bytes");
        if (o + n + 2 > size)
            return unsafe(im, in, "path too long");
        if (o)
            out[o++] = '/';
        memcpy(out + o, p, n);
        o += n;
        p = q;
    }
    out[o] = 0;
    if (in[0] == '/' && o)
        return unsafe(im, in, "absolute path");
    return o == 0 ? 1 : 0;
}

static int resolve_dir(importer *im, const char *dir, const char *path, int *out)
{
    if (!*dir) {
        int fd = dup(im->root);
        if (fd < 0)
            return cairn__err(im->err, -errno, "dup: %m");
        *out = fd;
        return 0;
    }
    struct open_how how = {
        .flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    int fd = (int)syscall(SYS_openat2, im->root, dir, &how, sizeof(how));
    if (fd >= 0) {
        *out = fd;
        return 0;
    }
    if (errno == EXDEV || errno == ELOOP)
        return unsafe(im, path, "its directory resolves outside the layer (through a link)");
    return -errno;
}

/* The directory holding `path` (created as needed, 0755 root, mtime 0), its
 * fd in *out and the last component in *name. */
/* A fixup for the directory open at fd, named path; NULL when out of memory. */
static dir_fixup *new_fixup(importer *im, const char *path, int fd)
{
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return NULL;
    if (im->ndirs == im->capdirs) {
        size_t nc = im->capdirs ? im->capdirs * 2 : 64;
        dir_fixup *nd = realloc(im->dirs, nc * sizeof(*nd));
        if (!nd)
            return NULL;
        im->dirs = nd;
        im->capdirs = nc;
    }
    dir_fixup *f = &im->dirs[im->ndirs];
    memset(f, 0, sizeof(*f));
    f->path = strdup(path);
    if (!f->path)
        return NULL;
    f->dev = sb.st_dev;
    f->ino = sb.st_ino;
    im->ndirs++;
    return f;
}

/* Whether snapshot directory `dfd`, which has no `path`, hides the layers
 * below it there: an opaque directory on the way (its root included) does,
 * as overlayfs shows the chain. */
static bool opaque_on_the_way(int dfd, const char *path)
{
    char key[64], v[4];
    snprintf(key, sizeof(key), "%sopaque", cairn__ovl_prefix());
    if (fgetxattr(dfd, key, v, sizeof(v)) == 1 && v[0] == 'y')
        return true;
    char dir[PATH_MAX + 1];
    snprintf(dir, sizeof(dir), "%s", path);
    for (char *slash = dir; (slash = strchr(slash, '/')); slash++) {
        *slash = 0;
        struct open_how how = {
            .flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                       RESOLVE_NO_XDEV,
        };
        int fd = (int)syscall(SYS_openat2, dfd, dir, &how, sizeof(how));
        *slash = '/';
        if (fd < 0)
            return false; /* the layer does not reach that deep */
        bool opaque = fgetxattr(fd, key, v, sizeof(v)) == 1 && v[0] == 'y';
        close(fd);
        if (opaque)
            return true;
    }
    return false;
}

/* A directory the layer writes into without listing it (umoci and others
 * write only the changed file): in overlayfs the upper directory's metadata
 * hides the lower one's, so it takes mode, owner and mtime from the nearest
 * snapshot of the parent chain that has it, as the chain shows it. A
 * whiteout, a non-directory or an opaque directory on the way there, or
 * nothing at all, gives 0755 root:root and time 0. A later entry for the
 * same directory supersedes this (fix_dirs: the last one wins). */
static void inherit_dir(importer *im, const char *path, dir_fixup *f)
{
    f->mode = 0755;
    for (size_t i = 0; i < im->nchain; i++) {
        struct open_how how = {
            .flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                       RESOLVE_NO_XDEV,
        };
        int fd = (int)syscall(SYS_openat2, im->chain[i], path, &how, sizeof(how));
        if (fd < 0) {
            if (errno == ENOENT && !opaque_on_the_way(im->chain[i], path))
                continue; /* this snapshot did not touch it: look further down */
            return;
        }
        struct stat sb;
        int r = fstat(fd, &sb);
        close(fd);
        if (r == 0 && S_ISDIR(sb.st_mode)) {
            f->mode = sb.st_mode & 07777;
            f->uid = sb.st_uid;
            f->gid = sb.st_gid;
            f->mtime = sb.st_mtim;
        }
        return;
    }
}

static int open_parent(importer *im, char *path, int *out, const char **name)
{
    char *slash = strrchr(path, '/');
    if (!slash) {
        *name = path;
        return resolve_dir(im, "", path, out);
    }
    *slash = 0;
    *name = slash + 1;
    int r = resolve_dir(im, path, path, out);
    if (r != -ENOENT && r != -ENOTDIR) {
        *slash = '/';
        if (r < 0 && r != CAIRN_E_UNSAFE)
            return cairn__err(im->err, r, "layer entry '%.200s': %m", path);
        return r;
    }
    /* Create the missing directories one at a time, each resolved beneath. */
    int fd = dup(im->root);
    if (fd < 0) {
        *slash = '/';
        return cairn__err(im->err, -errno, "dup: %m");
    }
    char *p = path;
    for (;;) {
        char *q = strchr(p, '/');
        if (q)
            *q = 0;
        bool made = mkdirat(fd, p, 0755) == 0;
        if (!made && errno != EEXIST) {
            r = -errno;
            if (q)
                *q = '/';
            close(fd);
            *slash = '/';
            return cairn__err(im->err, r, "layer entry '%.200s': mkdir: %m", path);
        }
        struct open_how how = {
            .flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS |
                       RESOLVE_NO_XDEV,
        };
        int nfd = (int)syscall(SYS_openat2, fd, p, &how, sizeof(how));
        int e = errno;
        /* Its metadata is set with the layer's own directories, at the end. */
        dir_fixup *fx = made && nfd >= 0 ? new_fixup(im, path, nfd) : NULL;
        if (made && nfd >= 0 && !fx) {
            close(nfd);
            nfd = -1;
            e = ENOMEM;
        }
        if (fx)
            inherit_dir(im, path, fx);
        if (q)
            *q = '/';
        close(fd);
        if (nfd < 0) {
            *slash = '/';
            if (e == ELOOP || e == EXDEV || e == ENOTDIR)
                return unsafe(im, path, "a parent is not a directory of the layer");
            return cairn__err(im->err, -e, "layer entry '%.200s': %s", path, cairn_strerror(-e));
        }
        fd = nfd;
        if (!q)
            break;
        p = q + 1;
    }
    *slash = '/';
    *out = fd;
    return 0;
}

/* Remove what is at dfd/name unless both it and the new entry are
 * directories (then the directory is kept with its contents). */
static int clear_slot(importer *im, int dfd, const char *name, bool new_is_dir, const char *path)
{
    struct stat sb;
    if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : cairn__err(im->err, -errno, "layer entry '%.200s': %m", path);
    if (S_ISDIR(sb.st_mode) && new_is_dir)
        return 1;
    if (S_ISLNK(sb.st_mode) && new_is_dir)
        return unsafe(im, path, "a directory over a symlink of the same layer");
    int r = cairn__rm_rf_at(dfd, name);
    if (r < 0)
        return cairn__err(im->err, r, "layer entry '%.200s': replace: %m", path);
    return 0;
}

static int set_xattrs(importer *im, struct archive_entry *e, int fd, int dfd, const char *name,
                      const char *path)
{
    if (archive_entry_xattr_reset(e) == 0)
        return 0;
    char lpath[PATH_MAX];
    snprintf(lpath, sizeof(lpath), "/proc/self/fd/%d/%s", dfd, name);
    const char *k;
    const void *v;
    size_t n;
    while (archive_entry_xattr_next(e, &k, &v, &n) == ARCHIVE_OK) {
        if (!strncmp(k, "trusted.overlay.", 16) || !strncmp(k, "user.overlay.", 13))
            return unsafe(im, path, "it sets an overlayfs xattr");
        int rc = fd >= 0 ? fsetxattr(fd, k, v, n, 0) : lsetxattr(lpath, k, v, n, 0);
        if (rc < 0) {
            if ((errno == EPERM || errno == ENOTSUP) && !im->privileged)
                continue; /* trusted.* and security.* need privileges: dropped */
            if (errno == EPERM && fd < 0 && !strncmp(k, "user.", 5))
                continue; /* the kernel keeps user.* off symlinks and devices */
            return cairn__err(im->err, -errno, "layer entry '%.200s': xattr %s: %m", path, k);
        }
    }
    return 0;
}

static int set_owner_times(importer *im, struct archive_entry *e, int dfd, const char *name,
                           const char *path, bool is_link)
{
    if (im->privileged &&
        fchownat(dfd, name, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
                 AT_SYMLINK_NOFOLLOW) < 0)
        return cairn__err(im->err, -errno, "layer entry '%.200s': chown: %m", path);
    if (!is_link && fchmodat(dfd, name, archive_entry_perm(e), 0) < 0)
        return cairn__err(im->err, -errno, "layer entry '%.200s': chmod: %m", path);
    struct timespec t[2];
    t[0].tv_sec = archive_entry_mtime(e);
    t[0].tv_nsec = archive_entry_mtime_nsec(e);
    t[1] = t[0];
    if (utimensat(dfd, name, t, AT_SYMLINK_NOFOLLOW) < 0)
        return cairn__err(im->err, -errno, "layer entry '%.200s': times: %m", path);
    return 0;
}

static int tar_error(importer *im, const char *what)
{
    if (im->raw_err == CAIRN_E_TRUNCATED)
        return cairn__err(im->err, CAIRN_E_TRUNCATED, "layer: truncated: %s", im->raw_msg);
    if (im->raw_err == CAIRN_E_USER)
        return cairn__err(im->err, CAIRN_E_USER, "layer import: stopped by the caller");
    if (im->raw_err)
        return cairn__err(im->err, im->raw_err < 0 && im->raw_err > -4096 ? im->raw_err
                                                                         : CAIRN_E_FORMAT,
                          "layer: the compressed stream is corrupt (%s)", im->raw_msg);
    const char *m = archive_error_string(im->tar);
    /* The reader wanted bytes past the end (a cut in a PAX header's records
     * reads as "unknown error"): the stream ends inside an entry. */
    if ((m && (strstr(m, "runcated") || strstr(m, "premature"))) || im->read_past_end)
        return cairn__err(im->err, CAIRN_E_TRUNCATED, "layer: %s: the tar is truncated (%s)", what,
                          m ? m : "it ends inside an entry");
    return cairn__err(im->err, CAIRN_E_FORMAT, "layer: %s: not a valid tar (%s)", what,
                      m ? m : "unknown error");
}

static int write_file(importer *im, struct archive_entry *e, int dfd, const char *name,
                      const char *path)
{
    _cleanup_close_ int fd =
        openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return cairn__err(im->err, -errno, "layer entry '%.200s': create: %m", path);
    const void *buf;
    size_t len;
    int64_t off, end = 0;
    uint64_t data = 0;
    for (;;) {
        int rc = archive_read_data_block(im->tar, &buf, &len, &off);
        if (rc == ARCHIVE_EOF)
            break;
        if (rc != ARCHIVE_OK)
            return tar_error(im, path);
        if (off != end && lseek(fd, off, SEEK_SET) < 0)
            return cairn__err(im->err, -errno, "layer entry '%.200s': seek: %m", path);
        int r = cairn__write_all(fd, buf, len);
        if (r < 0)
            return cairn__err(im->err, r, "layer entry '%.200s': write: %m", path);
        end = off + (int64_t)len;
        data += len;
    }
    int64_t size = archive_entry_size(e);
    uint64_t apparent = (uint64_t)(size > end ? size : end);
    if (apparent > data) {
        im->holes += apparent - data;
        if (im->holes > HOLES_MAX)
            return unsafe(im, path,
                          "sparse files with more than 1 GiB of holes in the layer (this one "
                          "has data for only part of its size)");
    }
    if (size > end && ftruncate(fd, size) < 0)
        return cairn__err(im->err, -errno, "layer entry '%.200s': truncate: %m", path);
    im->size += (uint64_t)size;
    /* chown first: it drops security.capability and the setuid bits. */
    if (im->privileged &&
        fchown(fd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0)
        return cairn__err(im->err, -errno, "layer entry '%.200s': chown: %m", path);
    int r = set_xattrs(im, e, fd, dfd, name, path);
    if (r < 0)
        return r;
    if (fchmod(fd, archive_entry_perm(e)) < 0)
        return cairn__err(im->err, -errno, "layer entry '%.200s': chmod: %m", path);
    struct timespec t[2];
    t[0].tv_sec = archive_entry_mtime(e);
    t[0].tv_nsec = archive_entry_mtime_nsec(e);
    t[1] = t[0];
    if (futimens(fd, t) < 0)
        return cairn__err(im->err, -errno, "layer entry '%.200s': times: %m", path);
    return 0;
}

static int apply_entry(importer *im, struct archive_entry *e)
{
    const char *raw = archive_entry_pathname(e);
    char path[PATH_MAX + 1];
    int r = clean_path(im, raw, path, sizeof(path));
    if (r < 0)
        return r;
    if (r == 1)
        return 0; /* the root: the snapshot directory keeps its own */
    /* A whiteout name is only ever a file: as a directory on the way
     * (`.wh.x/y`, `.wh..wh..opq/y`) it would make a snapshot whose export
     * other tools read as a whiteout. */
    for (const char *c = path; (c = strstr(c, ".wh.")); c += 4)
        if ((c == path || c[-1] == '/') && strchr(c, '/'))
            return unsafe(im, path, "a whiteout name used as a directory");
    _cleanup_close_ int dfd = -1;
    const char *name;
    r = open_parent(im, path, &dfd, &name);
    if (r < 0)
        return r;
    const char *hl = archive_entry_hardlink(e);
    mode_t type = archive_entry_filetype(e);

    if (!strncmp(name, ".wh.", 4)) {
        if (hl || type != AE_IFREG)
            return unsafe(im, path, "a whiteout that is not a plain file");
        if (!strcmp(name, ".wh..wh..opq")) {
            char key[64];
            snprintf(key, sizeof(key), "%sopaque", cairn__ovl_prefix());
            if (fsetxattr(dfd, key, "y", 1, 0) < 0)
                return cairn__err(im->err, -errno, "layer entry '%.200s': set %s: %m", path, key);
            return 0;
        }
        const char *target = name + 4;
        if (!*target || !strcmp(target, ".") || !strcmp(target, ".."))
            return unsafe(im, path, "a whiteout of nothing");
        r = clear_slot(im, dfd, target, false, path);
        if (r < 0)
            return r;
        if (mknodat(dfd, target, S_IFCHR | 0000, makedev(0, 0)) < 0)
            return cairn__err(im->err, -errno, "layer entry '%.200s': whiteout: %m", path);
        return 0;
    }

    if (hl) {
        char tpath[PATH_MAX + 1];
        r = clean_path(im, hl, tpath, sizeof(tpath));
        if (r == 1)
            return unsafe(im, path, "a hardlink to the root");
        if (r < 0)
            return unsafe(im, path, "a hardlink to a path outside the layer");
        _cleanup_close_ int tfd = -1;
        char *slash = strrchr(tpath, '/');
        const char *tname = tpath;
        if (slash) {
            *slash = 0;
            tname = slash + 1;
            r = resolve_dir(im, tpath, path, &tfd);
        } else {
            r = resolve_dir(im, "", path, &tfd);
        }
        if (r == -ENOENT || r == -ENOTDIR)
            return unsafe(im, path, "a hardlink to a file that is not in the layer");
        if (r < 0)
            return r == CAIRN_E_UNSAFE ? r : cairn__err(im->err, r, "layer entry '%.200s': %m", path);
        struct stat sb;
        if (fstatat(tfd, tname, &sb, AT_SYMLINK_NOFOLLOW) < 0)
            return unsafe(im, path, "a hardlink to a file that is not in the layer");
        if (S_ISDIR(sb.st_mode))
            return unsafe(im, path, "a hardlink to a directory");
        if (S_ISCHR(sb.st_mode) && sb.st_rdev == makedev(0, 0))
            return unsafe(im, path, "a hardlink to a whiteout (a whiteout in disguise)");
        if (tfd >= 0 && sb.st_ino != 0) {
            struct stat cur;
            if (fstatat(dfd, name, &cur, AT_SYMLINK_NOFOLLOW) == 0 && cur.st_ino == sb.st_ino &&
                cur.st_dev == sb.st_dev)
                return 0; /* a link to itself */
        }
        r = clear_slot(im, dfd, name, false, path);
        if (r < 0)
            return r;
        if (linkat(tfd, tname, dfd, name, 0) < 0)
            return cairn__err(im->err, -errno, "layer entry '%.200s': link: %m", path);
        return 0;
    }

    switch (type) {
    case AE_IFDIR: {
        r = clear_slot(im, dfd, name, true, path);
        if (r < 0)
            return r;
        if (r == 0 && mkdirat(dfd, name, 0700) < 0)
            return cairn__err(im->err, -errno, "layer entry '%.200s': mkdir: %m", path);
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return cairn__err(im->err, -errno, "layer entry '%.200s': %m", path);
        r = set_xattrs(im, e, fd, dfd, name, path);
        if (r < 0)
            return r;
        dir_fixup *f = new_fixup(im, path, fd);
        if (!f)
            return cairn__err(im->err, errno ? -errno : -ENOMEM, "layer entry '%.200s': %m", path);
        f->mode = archive_entry_perm(e);
        f->uid = (uid_t)archive_entry_uid(e);
        f->gid = (gid_t)archive_entry_gid(e);
        f->mtime.tv_sec = archive_entry_mtime(e);
        f->mtime.tv_nsec = archive_entry_mtime_nsec(e);
        return 0;
    }
    case AE_IFREG:
        r = clear_slot(im, dfd, name, false, path);
        if (r < 0)
            return r;
        return write_file(im, e, dfd, name, path);
    case AE_IFLNK: {
        const char *target = archive_entry_symlink(e);
        if (!target || !*target)
            return unsafe(im, path, "a symlink without a target");
        r = clear_slot(im, dfd, name, false, path);
        if (r < 0)
            return r;
        if (symlinkat(target, dfd, name) < 0)
            return cairn__err(im->err, -errno, "layer entry '%.200s': symlink: %m", path);
        r = set_xattrs(im, e, -1, dfd, name, path);
        if (r < 0)
            return r;
        return set_owner_times(im, e, dfd, name, path, true);
    }
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO: {
        if (type != AE_IFIFO && !im->privileged)
            return unsafe(im, path, "a device node, and this process may not create them");
        if (type == AE_IFCHR && archive_entry_rdev(e) == 0)
            return unsafe(im, path, "a 0/0 character device (an overlayfs whiteout in disguise)");
        r = clear_slot(im, dfd, name, false, path);
        if (r < 0)
            return r;
        mode_t m = (type == AE_IFCHR ? S_IFCHR : type == AE_IFBLK ? S_IFBLK : S_IFIFO) | 0600;
        if (mknodat(dfd, name, m, archive_entry_rdev(e)) < 0)
            return cairn__err(im->err, -errno, "layer entry '%.200s': mknod: %m", path);
        r = set_xattrs(im, e, -1, dfd, name, path);
        if (r < 0)
            return r;
        return set_owner_times(im, e, dfd, name, path, false);
    }
    default:
        return unsafe(im, path, "an entry type cairn does not apply");
    }
}

static int cmp_fixup(const void *a, const void *b)
{
    const dir_fixup *x = *(dir_fixup *const *)a, *y = *(dir_fixup *const *)b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino)
        return x->ino < y->ino ? -1 : 1;
    return x < y ? -1 : x > y; /* entry order */
}

/* Directories last, deepest first: mode, owner and times that writing their
 * contents would have changed. A directory named twice takes its last entry
 * (as when a tar is extracted); one whose path now leads elsewhere (replaced
 * by a symlink to another directory, or to the root) is left alone: its
 * entry must not change what the symlink points to. */
static int fix_dirs(importer *im)
{
    if (im->ndirs > 1) {
        dir_fixup **by_ino = malloc(im->ndirs * sizeof(*by_ino));
        if (!by_ino)
            return cairn__err(im->err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < im->ndirs; i++)
            by_ino[i] = &im->dirs[i];
        qsort(by_ino, im->ndirs, sizeof(*by_ino), cmp_fixup);
        for (size_t i = 0; i + 1 < im->ndirs; i++)
            if (by_ino[i]->dev == by_ino[i + 1]->dev && by_ino[i]->ino == by_ino[i + 1]->ino)
                by_ino[i]->superseded = true;
        free(by_ino);
    }
    for (size_t i = im->ndirs; i-- > 0;) {
        dir_fixup *f = &im->dirs[i];
        if (f->superseded)
            continue;
        _cleanup_close_ int fd = -1;
        int r = resolve_dir(im, f->path, f->path, &fd);
        if (r == -ENOENT || r == -ENOTDIR)
            continue; /* replaced by a later entry */
        if (r < 0)
            return r == CAIRN_E_UNSAFE ? r : cairn__err(im->err, r, "layer entry '%.200s': %m", f->path);
        struct stat sb;
        if (fstat(fd, &sb) < 0)
            return cairn__err(im->err, -errno, "layer entry '%.200s': %m", f->path);
        if (sb.st_dev != f->dev || sb.st_ino != f->ino)
            continue; /* replaced: the path leads to another directory now */
        if (im->privileged && fchown(fd, f->uid, f->gid) < 0)
            return cairn__err(im->err, -errno, "layer entry '%.200s': chown: %m", f->path);
        if (fchmod(fd, f->mode) < 0)
            return cairn__err(im->err, -errno, "layer entry '%.200s': chmod: %m", f->path);
        struct timespec t[2] = {f->mtime, f->mtime};
        if (futimens(fd, t) < 0)
            return cairn__err(im->err, -errno, "layer entry '%.200s': times: %m", f->path);
    }
    return 0;
}

static void importer_clear(importer *im)
{
    if (im->tar)
        archive_read_free(im->tar);
    if (im->zinit)
        inflateEnd(&im->zs);
    ZSTD_freeDStream(im->zd);
    free(im->outbuf);
    cairn__sha256_free(im->hash);
    free(im->inbuf);
    for (size_t i = 0; i < im->ndirs; i++)
        free(im->dirs[i].path);
    free(im->dirs);
    for (size_t i = 0; i < im->nchain; i++)
        close(im->chain[i]);
    free(im->chain);
    if (im->root >= 0)
        close(im->root);
}

static int import_stream(importer *im, char diff_id[CAIRN_DIGEST_LEN + 1])
{
    im->inbuf = malloc(IMPORT_BUF);
    im->outbuf = malloc(IMPORT_BUF);
    im->hash = cairn__sha256_new();
    im->tar = archive_read_new();
    if (!im->inbuf || !im->outbuf || !im->hash || !im->tar)
        return cairn__err(im->err, -ENOMEM, "out of memory");
    int rc, r = plain_start(im);
    if (r < 0)
        return r;
    archive_read_support_format_tar(im->tar);
    if (archive_read_open(im->tar, im, NULL, tar_read, NULL) != ARCHIVE_OK)
        return tar_error(im, "start");
    struct archive_entry *e;
    unsigned long long entries = 0;
    for (;;) {
        rc = archive_read_next_header(im->tar, &e);
        if (rc == ARCHIVE_EOF)
            break;
        if (rc == ARCHIVE_WARN && im->raw_err == 0) {
            /* libarchive read a header it had to guess at (a malformed PAX
             * record, a bad field): what it guessed is not what the layer
             * says, so the layer is refused. */
            return cairn__err(im->err, CAIRN_E_FORMAT,
                              "layer: entry %llu: malformed header (%s); refused", entries + 1,
                              archive_error_string(im->tar) ? archive_error_string(im->tar)
                                                            : "unknown problem");
        } else if (rc != ARCHIVE_OK) {
            char what[64];
            snprintf(what, sizeof(what), "after entry %llu", entries);
            return tar_error(im, what);
        }
        entries++;
        /* The reader has consumed the headers: its data starts here (sparse
         * entries store less than their size: their end is not known). */
        im->data_end = archive_entry_sparse_count(e) == 0 && archive_entry_size_is_set(e)
                           ? archive_filter_bytes(im->tar, 0) + archive_entry_size(e)
                           : -1;
        r = apply_entry(im, e);
        if (r < 0)
            return r;
    }
    if (entries == 0 && archive_format(im->tar) == 0)
        return tar_error(im, "start");
    /* Bytes after the end marker belong to the stream too (and a
     * compressed stream must still end well). */
    const void *b;
    ssize_t n;
    while ((n = plain_next(im, &b)) > 0)
        cairn__sha256_update(im->hash, b, (size_t)n);
    if (n < 0)
        return im->raw_err ? tar_error(im, "end") : (int)n;
    cairn__sha256_final(im->hash, diff_id);
    return fix_dirs(im);
}

/* The directories of the parent chain, top first, for inherit_dir(). */
static int open_chain(importer *im, const char *parent)
{
    char cur[CAIRN_DIGEST_LEN + 1];
    snprintf(cur, sizeof(cur), "%s", parent ? parent : "");
    while (cur[0] && im->nchain < 4096) {
        cairn__snaprow row;
        int r = cairn__snapshot_find(im->st, cur, &row, im->err);
        if (r < 0)
            return r;
        if (r == 0)
            return cairn__err(im->err, -ENOENT, "layer import: snapshot %s of the parent chain "
                              "is not there", cur);
        r = cairn__snapshot_ensure(im->st, row.layer, cur, im->err);
        if (r < 0)
            return r;
        _cleanup_free_ char *path = cairn__snapshot_path(im->st, row.layer, cur);
        if (!path)
            return cairn__err(im->err, -ENOMEM, "out of memory");
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            return cairn__err(im->err, -errno, "snapshot %s: %s: %m", cur, path);
        int *nc = realloc(im->chain, (im->nchain + 1) * sizeof(*nc));
        if (!nc) {
            close(fd);
            return cairn__err(im->err, -ENOMEM, "out of memory");
        }
        im->chain = nc;
        im->chain[im->nchain++] = fd;
        memcpy(cur, row.info.parent, sizeof(cur));
    }
    return 0;
}

/* cairn_layer_import(), or with `canon` (not NULL) only steps 2-4: the
 * layer applied over `parent` in a staging directory, its DiffID checked,
 * the digest of its canonical tar into canon, the staging removed. */
static int layer_import(cairn_state *st, const char *parent, int fd,
                        const cairn_layer_import_options *opts, char *out_chain_id,
                        char *out_diff_id, char *canon_out, cairn_error *err);

int cairn_layer_import(cairn_state *st, const char *parent, int fd,
                       const cairn_layer_import_options *opts, char *out_chain_id,
                       char *out_diff_id, cairn_error *err)
{
    return layer_import(st, parent, fd, opts, out_chain_id, out_diff_id, NULL, err);
}

int cairn__layer_canon(cairn_state *st, const char *parent, int fd, const char *expected_diff_id,
                       char canon[CAIRN_DIGEST_LEN + 1], cairn_error *err)
{
    cairn_layer_import_options o = CAIRN_LAYER_IMPORT_OPTIONS_INIT;
    o.expected_diff_id = expected_diff_id;
    return layer_import(st, parent, fd, &o, NULL, NULL, canon, err);
}

static int layer_import(cairn_state *st, const char *parent, int fd,
                        const cairn_layer_import_options *opts, char *out_chain_id,
                        char *out_diff_id, char *canon_out, cairn_error *err)
{
    cairn_layer_import_options def = CAIRN_LAYER_IMPORT_OPTIONS_INIT;
    if (!opts)
        opts = &def;
    int r = cairn__opts_version(opts->version, CAIRN_LAYER_IMPORT_OPTIONS_VERSION, "layer import",
                                err);
    if (r < 0)
        return r;
    r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    if (parent && !*parent)
        parent = NULL;
    if (parent) {
        r = cairn_digest_check(parent, err);
        if (r < 0)
            return cairn__err_prefix(err, r, "parent");
        cairn__snaprow pr;
        r = cairn__snapshot_find(st, parent, &pr, err);
        if (r < 0)
            return r;
        if (r == 0)
            return cairn__err(err, -ENOENT, "layer import: parent snapshot %s is not there",
                              parent);
    }
    if (opts->expected_diff_id && !canon_out) {
        r = cairn_digest_check(opts->expected_diff_id, err);
        if (r < 0)
            return cairn__err_prefix(err, r, "expected DiffID");
        char chain[CAIRN_DIGEST_LEN + 1];
        cairn__chain_id(parent, opts->expected_diff_id, chain);
        cairn__snaprow row;
        r = cairn__snapshot_find(st, chain, &row, err);
        if (r < 0)
            return r;
        if (r == 1) {
            if (out_chain_id)
                memcpy(out_chain_id, chain, CAIRN_DIGEST_LEN + 1);
            if (out_diff_id)
                memcpy(out_diff_id, opts->expected_diff_id, CAIRN_DIGEST_LEN + 1);
            return 0;
        }
    }
    int tmpfd = cairn__tmpfd(st, err);
    if (tmpfd < 0)
        return tmpfd;
    char staged[160];
    r = cairn__tmp_name(st, staged, sizeof(staged), "layer");
    if (r < 0)
        return cairn__err(err, r, "staging name: %m");
    if (mkdirat(tmpfd, staged, 0755) < 0)
        return cairn__err(err, -errno, "%s/tmp/%s: %m", st->path, staged);

    importer im = {.st = st, .opts = opts, .err = err, .in_fd = fd, .root = -1, .data_end = -1};
    locale_t old_locale = cairn__utf8_locale_enter(); /* see snapshot-private.h */
    im.privileged = geteuid() == 0;
    r = open_chain(&im, parent);
    if (r < 0)
        goto fail;
    im.root = openat(tmpfd, staged, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    char diff_id[CAIRN_DIGEST_LEN + 1], chain[CAIRN_DIGEST_LEN + 1], canon[CAIRN_DIGEST_LEN + 1];
    if (im.root < 0) {
        r = cairn__err(err, -errno, "%s/tmp/%s: %m", st->path, staged);
        goto fail;
    }
    r = import_stream(&im, diff_id);
    if (r < 0)
        goto fail;
    if (opts->expected_diff_id && strcmp(diff_id, opts->expected_diff_id) != 0) {
        r = cairn__err(err, CAIRN_E_MISMATCH, "layer: its DiffID is %s, expected %s", diff_id,
                       opts->expected_diff_id);
        goto fail;
    }
    cairn__chain_id(parent, diff_id, chain);
    cairn__snaprow row;
    r = canon_out ? 0 : cairn__snapshot_find(st, chain, &row, err);
    if (r < 0)
        goto fail;
    if (r == 1) {
        r = 0;
        goto done; /* there already: drop the staged copy */
    }
    uint64_t size = 0;
    r = cairn__tar_digest(im.root, chain, 0, canon, &size, err);
    if (r < 0)
        goto fail;
    if (canon_out) {
        memcpy(canon_out, canon, CAIRN_DIGEST_LEN + 1);
        goto done;
    }
    r = cairn__snapshot_publish(st, tmpfd, staged, parent, diff_id, canon, im.size, err);
    if (r < 0)
        goto fail;
done:
    cairn__utf8_locale_leave(old_locale);
    importer_clear(&im);
    cairn__rm_rf_at(tmpfd, staged);
    if (out_chain_id)
        memcpy(out_chain_id, chain, CAIRN_DIGEST_LEN + 1);
    if (out_diff_id)
        memcpy(out_diff_id, diff_id, CAIRN_DIGEST_LEN + 1);
    return 0;
fail:
    cairn__utf8_locale_leave(old_locale);
    importer_clear(&im);
    cairn__rm_rf_at(tmpfd, staged);
    return r;
}

int cairn__layer_apply(cairn_state *st, const char *parent, int fd,
                       const char *expected_diff_id, int tfd, int dsfd, const char *name,
                       cairn_error *err)
{
    char staged[160];
    int r = cairn__tmp_name_unowned(staged, sizeof(staged), "lazy");
    if (r < 0)
        return cairn__err(err, r, "staging name: %m");
    if (mkdirat(tfd, staged, 0755) < 0)
        return cairn__err(err, -errno, "staging %s: %m", staged);
    cairn_layer_import_options opts = CAIRN_LAYER_IMPORT_OPTIONS_INIT;
    importer im = {.st = st, .opts = &opts, .err = err, .in_fd = fd, .root = -1, .data_end = -1};
    locale_t old_locale = cairn__utf8_locale_enter();
    im.privileged = geteuid() == 0;
    char diff_id[CAIRN_DIGEST_LEN + 1];
    r = open_chain(&im, parent);
    if (r == 0) {
        im.root = openat(tfd, staged, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (im.root < 0)
            r = cairn__err(err, -errno, "staging %s: %m", staged);
    }
    if (r == 0)
        r = import_stream(&im, diff_id);
    if (r == 0 && strcmp(diff_id, expected_diff_id) != 0)
        r = cairn__err(err, CAIRN_E_MISMATCH, "layer: its DiffID is %s, expected %s", diff_id,
                       expected_diff_id);
    /* data before the name that says it is there */
    if (r == 0 && syncfs(tfd) < 0)
        r = cairn__err(err, -errno, "sync: %m");
    if (r == 0) {
        r = cairn__rename_noreplace(tfd, staged, dsfd, name);
        if (r == -EEXIST)
            r = 0;
        else if (r < 0)
            cairn__err(err, r, "snapshot %s: rename: %m", name);
        else
            fsync(dsfd);
    }
    cairn__utf8_locale_leave(old_locale);
    importer_clear(&im);
    cairn__rm_rf_at(tfd, staged);
    return r;
}

/* ---- proof: a tree made elsewhere against the layer ------------------- *
 * containerd unpacked the layer into a tree of its own; cairn adopts that
 * tree once it is shown to be what cairn_layer_import() of the same layer
 * makes, which is what its canonical tar says. Applying the layer in tmp/
 * and comparing canonical tars (cairn__layer_canon) proves it but writes
 * the whole layer again; here nothing is written: one walk of the tree
 * gives its canonical tar digest and, for each entry of that tar, a digest
 * of what the tar holds of it (type, mode, owner, mtime, size, data, link
 * target, device, xattrs; whiteouts and opaque directories as the markers
 * the tar writes for them); one read of the layer gives the entries its
 * application would make, with the same digests; the two lists must be
 * equal. The layer is read in a second thread while the tree is walked.
 *
 * Only what is modelled exactly is compared: a layer whose entries each
 * name a path once, list every directory they write into (no directory
 * inherited from the parent chain), hardlink only to earlier files, carry
 * no sparse data, no overlayfs xattr and no xattr outside user., trusted.
 * and security. (nor any on a symlink or device), read by root. Anything
 * else, and any difference, is "not shown", and cairn__layer_canon()
 * decides. */

typedef struct prec {
    char *path;
    char d[CAIRN_DIGEST_LEN + 1]; /* of the entry as the canonical tar holds it */
    /* layer side only */
    size_t index;                 /* in the stream */
    char *link;                   /* a hardlink: its target */
    bool is_dir, is_reg;
    mode_t perm;
    int64_t uid, gid, mtime;
    size_t root;                  /* a hardlink: the record of its inode's first file */
} prec;

typedef struct precs {
    prec *v;
    size_t n, cap;
} precs;

static void precs_clear(precs *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].path);
        free(p->v[i].link);
    }
    free(p->v);
    memset(p, 0, sizeof(*p));
}

static prec *precs_add(precs *p, const char *path)
{
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 256;
        prec *nv = realloc(p->v, nc * sizeof(*nv));
        if (!nv)
            return NULL;
        p->v = nv;
        p->cap = nc;
    }
    prec *r = &p->v[p->n];
    memset(r, 0, sizeof(*r));
    r->path = strdup(path);
    if (!r->path)
        return NULL;
    p->n++;
    return r;
}

static void put_field(cairn__sha256 *h, const void *b, size_t n)
{
    char len[24];
    int k = snprintf(len, sizeof(len), "%zu:", n);
    cairn__sha256_update(h, len, (size_t)k);
    cairn__sha256_update(h, b, n);
}

static void put_num(cairn__sha256 *h, int64_t v)
{
    char b[24];
    int k = snprintf(b, sizeof(b), "%lld", (long long)v);
    put_field(h, b, (size_t)k);
}

static void put_str(cairn__sha256 *h, const char *s)
{
    put_field(h, s ? s : "", s ? strlen(s) + 1 : 0);
}

/* What the canonical tar holds of an entry, but its name. */
static int rec_digest(struct archive_entry *e, const char *data, char out[CAIRN_DIGEST_LEN + 1])
{
    cairn__sha256 *h = cairn__sha256_new();
    if (!h)
        return -ENOMEM;
    mode_t type = archive_entry_filetype(e);
    put_num(h, (int64_t)type);
    put_num(h, type == AE_IFLNK ? 0 : (int64_t)(archive_entry_perm(e) & 07777));
    put_num(h, archive_entry_uid(e));
    put_num(h, archive_entry_gid(e));
    put_num(h, archive_entry_mtime(e));
    put_num(h, archive_entry_size(e));
    put_str(h, archive_entry_symlink(e));
    put_str(h, archive_entry_hardlink(e));
    put_num(h, type == AE_IFCHR || type == AE_IFBLK ? (int64_t)archive_entry_rdev(e) : 0);
    put_num(h, archive_entry_xattr_reset(e));
    const char *k;
    const void *v;
    size_t n;
    while (archive_entry_xattr_next(e, &k, &v, &n) == ARCHIVE_OK) {
        put_str(h, k);
        put_field(h, v, n);
    }
    put_str(h, data);
    cairn__sha256_final(h, out);
    cairn__sha256_free(h);
    return 0;
}

static int sink_hash(void *ud, const void *buf, size_t len)
{
    cairn__sha256_update(ud, buf, len);
    return 0;
}

static int tree_entry(void *ud, struct archive_entry *e, const char *data)
{
    precs *p = ud;
    prec *r = precs_add(p, archive_entry_pathname(e));
    if (!r)
        return -ENOMEM;
    /* The writer gave a directory's name its '/'. */
    size_t n = strlen(r->path);
    if (n > 1 && r->path[n - 1] == '/')
        r->path[n - 1] = 0;
    return rec_digest(e, data, r->d);
}

static int cmp_prec(const void *a, const void *b)
{
    return strcmp(((const prec *)a)->path, ((const prec *)b)->path);
}

static prec *prec_find(precs *p, const char *path)
{
    prec key = {.path = (char *)path};
    return bsearch(&key, p->v, p->n, sizeof(prec), cmp_prec);
}

/* The layer side, run in its own thread. */
typedef struct layer_side {
    int fd;
    const char *diff_id;
    precs recs;
    int shown;         /* 1: the layer's entries are listed; 0: not modelled (why) */
    char why[256];
    atomic_int *stop;   /* set by the tree side: the layer is not needed */
} layer_side;

static int not_modelled(layer_side *ls, const char *fmt, ...) CAIRN_PRINTF(2, 3);
static int not_modelled(layer_side *ls, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ls->why, sizeof(ls->why), fmt, ap);
    va_end(ap);
    return 0;
}

static bool xattr_modelled(const char *k)
{
    if (!strncmp(k, "trusted.overlay.", 16) || !strncmp(k, "user.overlay.", 13))
        return false;
    return !strncmp(k, "user.", 5) || !strncmp(k, "trusted.", 8) || !strncmp(k, "security.", 9);
}

static int cmp_xname(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The entry the tree walk would write for layer entry `in` at `path`. */
static struct archive_entry *model_entry(layer_side *ls, struct archive_entry *in, const char *path,
                                         mode_t type)
{
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return NULL;
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, type == AE_IFLNK ? 0777 : archive_entry_perm(in));
    archive_entry_set_uid(e, archive_entry_uid(in));
    archive_entry_set_gid(e, archive_entry_gid(in));
    archive_entry_set_mtime(e, archive_entry_mtime(in), 0);
    archive_entry_set_size(e, type == AE_IFREG ? archive_entry_size(in) : 0);
    if (type == AE_IFLNK)
        archive_entry_set_symlink(e, archive_entry_symlink(in));
    if (type == AE_IFCHR || type == AE_IFBLK)
        archive_entry_set_rdev(e, archive_entry_rdev(in));
    int nx = archive_entry_xattr_reset(in);
    if (nx > 0) {
        if (type != AE_IFDIR && type != AE_IFREG) {
            not_modelled(ls, "%s: xattrs on a symlink or device", path);
            archive_entry_free(e);
            return NULL;
        }
        const char *names[256];
        size_t k = 0;
        const char *name;
        const void *v;
        size_t n;
        while (archive_entry_xattr_next(in, &name, &v, &n) == ARCHIVE_OK) {
            if (!xattr_modelled(name) || k == CAIRN_ARRAY_SIZE(names)) {
                not_modelled(ls, "%s: xattr %s", path, name);
                archive_entry_free(e);
                return NULL;
            }
            names[k++] = name;
        }
        qsort(names, k, sizeof(names[0]), cmp_xname);
        for (size_t i = 0; i < k; i++) {
            /* Found again by name: the list holds the values in its order. */
            archive_entry_xattr_reset(in);
            while (archive_entry_xattr_next(in, &name, &v, &n) == ARCHIVE_OK)
                if (name == names[i])
                    break;
            archive_entry_xattr_add_entry(e, names[i], v, n);
        }
    }
    return e;
}

static struct archive_entry *marker_entry(const char *path)
{
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return NULL;
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0);
    archive_entry_set_size(e, 0);
    archive_entry_set_mtime(e, 0, 0);
    return e;
}

/* One entry of the layer into ls->recs: 1 listed, 0 not modelled, < 0 error. */
static int layer_entry(layer_side *ls, importer *im, struct archive_entry *in, size_t index)
{
    char path[PATH_MAX + 1];
    cairn_error scratch = {0};
    cairn_error *saved = im->err;
    im->err = &scratch;
    int r = clean_path(im, archive_entry_pathname(in), path, sizeof(path));
    im->err = saved;
    if (r < 0)
        return not_modelled(ls, "%s", scratch.message);
    if (r == 1)
        return 1; /* the root: not an entry of the canonical tar */
    for (const char *c = path; (c = strstr(c, ".wh.")); c += 4)
        if ((c == path || c[-1] == '/') && strchr(c, '/'))
            return not_modelled(ls, "%s: a whiteout name used as a directory", path);
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    const char *hl = archive_entry_hardlink(in);
    mode_t type = archive_entry_filetype(in);
    struct archive_entry *e = NULL;
    const char *data = NULL;
    char dg[CAIRN_DIGEST_LEN + 1];
    prec *rec;
    if (!strncmp(name, ".wh.", 4)) {
        if (hl || type != AE_IFREG)
            return not_modelled(ls, "%s: a whiteout that is not a plain file", path);
        if (!strcmp(name, ".wh..wh..opq") && !slash)
            return not_modelled(ls, "an opaque root");
        if (strcmp(name, ".wh..wh..opq") != 0 &&
            (!name[4] || !strcmp(name + 4, ".") || !strcmp(name + 4, "..")))
            return not_modelled(ls, "%s: a whiteout of nothing", path);
        e = marker_entry(path);
        if (!e)
            return -ENOMEM;
    } else if (hl) {
        char target[PATH_MAX + 1];
        im->err = &scratch;
        r = clean_path(im, hl, target, sizeof(target));
        im->err = saved;
        if (r != 0)
            return not_modelled(ls, "%s: a hardlink to %s", path, hl);
        rec = precs_add(&ls->recs, path);
        if (!rec || !(rec->link = strdup(target)))
            return -ENOMEM;
        rec->index = index;
        return 1;
    } else {
        if (archive_entry_sparse_count(in) > 0)
            return not_modelled(ls, "%s: sparse", path);
        switch (type) {
        case AE_IFDIR:
        case AE_IFLNK:
        case AE_IFBLK:
        case AE_IFIFO:
            break;
        case AE_IFCHR:
            if (archive_entry_rdev(in) == 0)
                return not_modelled(ls, "%s: a 0/0 character device", path);
            break;
        case AE_IFREG: {
            cairn__sha256 *h = cairn__sha256_new();
            if (!h)
                return -ENOMEM;
            const void *buf;
            size_t len;
            int64_t off, end = 0;
            int rc;
            while ((rc = archive_read_data_block(im->tar, &buf, &len, &off)) == ARCHIVE_OK) {
                if (off != end || atomic_load(ls->stop))
                    break;
                cairn__sha256_update(h, buf, len);
                end = off + (int64_t)len;
            }
            cairn__sha256_final(h, dg);
            cairn__sha256_free(h);
            if (rc != ARCHIVE_EOF || end != archive_entry_size(in))
                return not_modelled(ls, "%s: its data does not read whole", path);
            data = dg;
            break;
        }
        default:
            return not_modelled(ls, "%s: an entry type not modelled", path);
        }
        if (type == AE_IFLNK && (!archive_entry_symlink(in) || !*archive_entry_symlink(in)))
            return not_modelled(ls, "%s: a symlink without a target", path);
        e = model_entry(ls, in, path, type);
        if (!e)
            return ls->why[0] ? 0 : -ENOMEM;
    }
    rec = precs_add(&ls->recs, path);
    r = rec ? rec_digest(e, data, rec->d) : -ENOMEM;
    if (rec) {
        rec->index = index;
        rec->is_dir = type == AE_IFDIR && !hl;
        rec->is_reg = type == AE_IFREG && data;
        rec->perm = archive_entry_perm(in);
        rec->uid = archive_entry_uid(in);
        rec->gid = archive_entry_gid(in);
        rec->mtime = archive_entry_mtime(in);
    }
    archive_entry_free(e);
    return r < 0 ? r : 1;
}

/* The layer's records, sorted, with their hardlinks written as the tree
 * walk writes them: 1, or 0 not modelled. */
static int layer_finish(layer_side *ls)
{
    precs *p = &ls->recs;
    qsort(p->v, p->n, sizeof(prec), cmp_prec);
    for (size_t i = 0; i + 1 < p->n; i++)
        if (!strcmp(p->v[i].path, p->v[i + 1].path))
            return not_modelled(ls, "%s: named twice", p->v[i].path);
    for (size_t i = 0; i < p->n; i++) {
        prec *r = &p->v[i];
        char dir[PATH_MAX + 1];
        snprintf(dir, sizeof(dir), "%s", r->path);
        char *slash = strrchr(dir, '/');
        const char *name = slash ? slash + 1 : dir;
        if (slash) {
            *slash = 0;
            prec *d = prec_find(p, dir);
            if (!d || !d->is_dir)
                return not_modelled(ls, "%s: its directory is not an entry of the layer", r->path);
        }
        if (!strncmp(name, ".wh.", 4) && strcmp(name, ".wh..wh..opq") != 0) {
            /* A whiteout of an entry of the same layer. */
            char other[2 * PATH_MAX + 8];
            snprintf(other, sizeof(other), "%s%s%s", slash ? dir : "", slash ? "/" : "", name + 4);
            if (prec_find(p, other))
                return not_modelled(ls, "%s: whites out an entry of the same layer", r->path);
        }
        if (r->link) {
            prec *t = prec_find(p, r->link);
            while (t && t->link && t->index < r->index)
                t = prec_find(p, t->link);
            if (!t || t->link || !t->is_reg || t->index > r->index)
                return not_modelled(ls, "%s: a hardlink to %s", r->path, r->link);
            r->root = (size_t)(t - p->v);
        }
    }
    /* Each inode's first name in the tar's order holds the data; the
     * others link to it, with its mode, owner and mtime, no xattrs. */
    size_t *first = calloc(p->n ? p->n : 1, sizeof(*first));
    if (!first)
        return -ENOMEM;
    for (size_t i = 0; i < p->n; i++)
        first[i] = i;
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].link && i < first[p->v[i].root])
            first[p->v[i].root] = i;
    int r = 1;
    for (size_t i = 0; r == 1 && i < p->n; i++) {
        if (!p->v[i].link && first[i] == i)
            continue;
        size_t root = p->v[i].link ? p->v[i].root : i;
        size_t f = first[root];
        if (f == i) {
            memcpy(p->v[i].d, p->v[root].d, sizeof(p->v[i].d)); /* the data, under this name */
            continue;
        }
        struct archive_entry *e = archive_entry_new();
        if (!e) {
            r = -ENOMEM;
            break;
        }
        archive_entry_set_pathname(e, p->v[i].path);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, p->v[root].perm);
        archive_entry_set_uid(e, p->v[root].uid);
        archive_entry_set_gid(e, p->v[root].gid);
        archive_entry_set_mtime(e, p->v[root].mtime, 0);
        archive_entry_set_size(e, 0);
        archive_entry_set_hardlink(e, p->v[f].path);
        /* The root's own digest went to f already (f sorts before it). */
        if (rec_digest(e, NULL, p->v[i].d) < 0)
            r = -ENOMEM;
        archive_entry_free(e);
    }
    free(first);
    return r;
}

static void *layer_thread(void *arg)
{
    layer_side *ls = arg;
    cairn_layer_import_options def = CAIRN_LAYER_IMPORT_OPTIONS_INIT;
    cairn_error scratch = {0};
    importer im = {.opts = &def, .err = &scratch, .in_fd = ls->fd, .root = -1, .data_end = -1};
    locale_t old_locale = cairn__utf8_locale_enter(); /* see snapshot-private.h */
    int r = 0;
    im.inbuf = malloc(IMPORT_BUF);
    im.outbuf = malloc(IMPORT_BUF);
    im.hash = cairn__sha256_new();
    im.tar = archive_read_new();
    if (!im.inbuf || !im.outbuf || !im.hash || !im.tar) {
        r = -ENOMEM;
        goto out;
    }
    if (plain_start(&im) < 0) {
        r = not_modelled(ls, "%s", scratch.message);
        goto out;
    }
    archive_read_support_format_tar(im.tar);
    if (archive_read_open(im.tar, &im, NULL, tar_read, NULL) != ARCHIVE_OK) {
        r = not_modelled(ls, "not a tar");
        goto out;
    }
    struct archive_entry *e;
    size_t entries = 0;
    for (r = 1; r == 1;) {
        if (atomic_load(ls->stop)) {
            r = not_modelled(ls, "stopped");
            break;
        }
        int rc = archive_read_next_header(im.tar, &e);
        if (rc == ARCHIVE_EOF)
            break;
        if (rc != ARCHIVE_OK) {
            r = not_modelled(ls, "after entry %zu: %s", entries,
                             im.raw_err ? im.raw_msg : "a header not read cleanly");
            break;
        }
        entries++;
        im.data_end = archive_entry_sparse_count(e) == 0 && archive_entry_size_is_set(e)
                          ? archive_filter_bytes(im.tar, 0) + archive_entry_size(e)
                          : -1;
        r = layer_entry(ls, &im, e, entries);
    }
    if (r == 1 && entries == 0)
        r = not_modelled(ls, "no entries");
    if (r == 1) {
        const void *b;
        ssize_t n;
        while ((n = plain_next(&im, &b)) > 0)
            cairn__sha256_update(im.hash, b, (size_t)n);
        char diff_id[CAIRN_DIGEST_LEN + 1];
        cairn__sha256_final(im.hash, diff_id);
        if (n < 0)
            r = not_modelled(ls, "the stream ends badly");
        else if (strcmp(diff_id, ls->diff_id) != 0)
            r = not_modelled(ls, "its DiffID is %s, not %s", diff_id, ls->diff_id);
    }
    if (r == 1)
        r = layer_finish(ls);
out:
    ls->shown = r;
    cairn__utf8_locale_leave(old_locale);
    importer_clear(&im);
    return NULL;
}

int cairn__layer_prove(int treefd, const char *what, int layer_fd, const char *diff_id,
                       char canon[CAIRN_DIGEST_LEN + 1], uint64_t *size, char *why, size_t whylen,
                       cairn_error *err)
{
    if (why && whylen)
        why[0] = 0;
    atomic_int stop = 0;
    layer_side ls = {.fd = layer_fd, .diff_id = diff_id, .stop = &stop};
    pthread_t th;
    bool started = layer_fd >= 0 && geteuid() == 0 &&
                   pthread_create(&th, NULL, layer_thread, &ls) == 0;
    if (layer_fd >= 0 && !started)
        snprintf(ls.why, sizeof(ls.why), "%s", geteuid() ? "not root" : "no thread");
    precs tree = {0};
    cairn__sha256 *h = cairn__sha256_new();
    int r = h ? cairn__tar_diff_each(treefd, what, 0, sink_hash, h, tree_entry, &tree, size, err)
              : cairn__err(err, -ENOMEM, "out of memory");
    if (r == 0) {
        cairn__sha256_final(h, canon);
        if (!strcmp(canon, diff_id))
            r = 1; /* the layer was in the canonical form */
    }
    cairn__sha256_free(h);
    if (started) {
        if (r != 0)
            atomic_store(&stop, 1);
        pthread_join(th, NULL);
    }
    if (r == 0 && started) {
        if (ls.shown < 0)
            r = cairn__err(err, ls.shown, "layer: %s", cairn_strerror(ls.shown));
        else if (ls.shown == 1 && ls.recs.n != tree.n)
            snprintf(ls.why, sizeof(ls.why), "%zu entries in the layer, %zu in the tree",
                     ls.recs.n, tree.n);
        else if (ls.shown == 1) {
            size_t i = 0;
            while (i < tree.n && !strcmp(tree.v[i].path, ls.recs.v[i].path) &&
                   !strcmp(tree.v[i].d, ls.recs.v[i].d))
                i++;
            if (i == tree.n)
                r = 1;
            else
                snprintf(ls.why, sizeof(ls.why), "%s differs", tree.v[i].path);
        }
    }
    if (why && whylen && r == 0)
        snprintf(why, whylen, "%s", ls.why);
    precs_clear(&tree);
    precs_clear(&ls.recs);
    return r;
}

/* ---- export ----------------------------------------------------------- */

typedef struct exporter {
    int fd;
    cairn__sha256 *plain;  /* of the tar: the DiffID */
    cairn__sha256 *out;    /* of the bytes written */
    uint64_t out_bytes;
    struct archive *z;     /* compressor, or NULL */
    int werr;
} exporter;

static int write_out(exporter *x, const void *buf, size_t len)
{
    int r = cairn__write_all(x->fd, buf, len);
    if (r < 0) {
        x->werr = r;
        return r;
    }
    cairn__sha256_update(x->out, buf, len);
    x->out_bytes += len;
    return 0;
}

static la_ssize_t z_write(struct archive *a, void *ud, const void *buf, size_t len)
{
    exporter *x = ud;
    if (write_out(x, buf, len) < 0) {
        archive_set_error(a, -x->werr, "write: %s", cairn_strerror(x->werr));
        return -1;
    }
    return (la_ssize_t)len;
}

static int sink_export(void *ud, const void *buf, size_t len)
{
    exporter *x = ud;
    cairn__sha256_update(x->plain, buf, len);
    if (!x->z)
        return write_out(x, buf, len);
    if (archive_write_data(x->z, buf, len) != (la_ssize_t)len)
        return x->werr ? x->werr : -EIO;
    return 0;
}

int cairn_layer_export(cairn_state *st, const char *chain_id, int fd, int compression,
                       char *out_digest, uint64_t *out_size, cairn_error *err)
{
    int r = cairn_digest_check(chain_id, err);
    if (r < 0)
        return r;
    if (compression == CAIRN_COMPRESSION_DEFAULT)
        compression = CAIRN_COMPRESSION_GZIP;
    if (compression != CAIRN_COMPRESSION_NONE && compression != CAIRN_COMPRESSION_GZIP &&
        compression != CAIRN_COMPRESSION_ZSTD)
        return cairn__err(err, -EINVAL, "layer export: unknown compression %d", compression);
    cairn__snaprow row;
    r = cairn__snapshot_find(st, chain_id, &row, err);
    if (r < 0)
        return r;
    if (r == 0)
        return cairn__err(err, -ENOENT, "snapshot %s is not there", chain_id);
    if (row.tar_digest[0] && strcmp(row.tar_digest, row.info.diff_id) != 0)
        return cairn__err(err, CAIRN_E_FORMAT,
                          "snapshot %s: imported from a layer tar not in canonical form (DiffID "
                          "%s, canonical tar %s); export the original layer blob instead",
                          chain_id, row.info.diff_id, row.tar_digest);
    r = cairn__snapshot_ensure(st, row.layer, chain_id, err);
    if (r < 0)
        return r;
    int sfd = cairn__layer_snapfd(st, row.layer, err);
    if (sfd < 0)
        return sfd;
    _cleanup_close_ int dfd =
        openat(sfd, cairn__digest_hex(chain_id), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return cairn__err(err, errno == ENOENT ? CAIRN_E_CORRUPT : -errno,
                          "snapshot %s: %s/snapshots/%s: %s", chain_id, st->layers[row.layer].root,
                          cairn__digest_hex(chain_id), cairn_strerror(-errno));
    exporter x = {.fd = fd};
    x.plain = cairn__sha256_new();
    x.out = cairn__sha256_new();
    if (!x.plain || !x.out) {
        r = cairn__err(err, -ENOMEM, "out of memory");
        goto out;
    }
    if (compression != CAIRN_COMPRESSION_NONE) {
        x.z = archive_write_new();
        if (!x.z) {
            r = cairn__err(err, -ENOMEM, "out of memory");
            goto out;
        }
        int ok = archive_write_set_format_raw(x.z) == ARCHIVE_OK &&
                 (compression == CAIRN_COMPRESSION_GZIP
                      ? archive_write_add_filter_gzip(x.z) == ARCHIVE_OK &&
                            archive_write_set_filter_option(x.z, "gzip", "timestamp", NULL) ==
                                ARCHIVE_OK
                      : archive_write_add_filter_zstd(x.z) == ARCHIVE_OK) &&
                 archive_write_set_bytes_per_block(x.z, 0) == ARCHIVE_OK &&
                 archive_write_open2(x.z, &x, NULL, z_write, NULL, NULL) == ARCHIVE_OK;
        struct archive_entry *e = ok ? archive_entry_new() : NULL;
        if (e) {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_pathname(e, "layer.tar");
            ok = archive_write_header(x.z, e) == ARCHIVE_OK;
            archive_entry_free(e);
        } else {
            ok = 0;
        }
        if (!ok) {
            r = cairn__err(err, CAIRN_E_FORMAT, "layer export: compressor: %s",
                           archive_error_string(x.z));
            goto out;
        }
    }
    uint64_t size;
    r = cairn__tar_diff(dfd, chain_id, 0, sink_export, &x, &size, err);
    if (r < 0)
        goto out;
    if (x.z && archive_write_close(x.z) != ARCHIVE_OK) {
        r = cairn__err(err, x.werr ? x.werr : CAIRN_E_FORMAT, "layer export: %s",
                       archive_error_string(x.z));
        goto out;
    }
    char plain[CAIRN_DIGEST_LEN + 1], outd[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_final(x.plain, plain);
    cairn__sha256_final(x.out, outd);
    if (strcmp(plain, row.info.diff_id) != 0) {
        r = cairn__err(err, CAIRN_E_CORRUPT,
                       "snapshot %s: its files tar to %s, not its DiffID %s (changed on disk?)",
                       chain_id, plain, row.info.diff_id);
        goto out;
    }
    cairn__usage_touch(st, chain_id);
    if (out_digest)
        memcpy(out_digest, outd, CAIRN_DIGEST_LEN + 1);
    if (out_size)
        *out_size = x.out_bytes;
out:
    if (x.z)
        archive_write_free(x.z);
    cairn__sha256_free(x.plain);
    cairn__sha256_free(x.out);
    return r;
}
