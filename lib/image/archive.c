/* archive.c: the source of an image import: an OCI image layout directory,
 * or an oci-archive read once for its small files (oci-layout, index.json,
 * JSON blobs), whose members are then found by name (image-private.h).
 */
#include "image/image-private.h"

#include <sys/stat.h>

#include <archive.h>
#include <archive_entry.h>

#define CHUNK (1u << 20)
/* An oci-archive's small blobs kept in memory by its first read. */
#define ARCHIVE_CACHE_MAX (256u << 20)

/* ---- the source: a layout directory or an oci-archive ------------------ */

void cairn__source_clear(source *s)
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
const char *cairn__arc_member(const char *path, char buf[80])
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

struct archive *cairn__arc_open(const char *path, cairn_error *err)
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

int cairn__arc_fail(struct archive *a, const char *path, const char *what, cairn_error *err)
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
    struct archive *a = cairn__arc_open(s->path, err);
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
            r = cairn__arc_fail(a, s->path, "", err);
            goto out;
        }
        if (archive_entry_filetype(e) != AE_IFREG)
            continue;
        char buf[80];
        const char *m = cairn__arc_member(archive_entry_pathname(e), buf);
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
                r = cairn__arc_fail(a, s->path, ae->name, err);
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

arc_entry *cairn__arc_find(source *s, const char *name)
{
    /* The last member of a name wins, as when a tar is extracted. */
    for (size_t i = s->n_ents; i-- > 0;)
        if (!strcmp(s->ents[i].name, name))
            return &s->ents[i];
    return NULL;
}

int cairn__source_open(source *s, const char *path, cairn_error *err)
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
int cairn__source_read_file(source *s, const char *name, char **out, size_t *len,
                            cairn_error *err)
{
    if (s->archive) {
        arc_entry *e = cairn__arc_find(s, name);
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
int cairn__source_read_blob(source *s, const cairn__oci_desc *d, const char *role, char **out,
                            size_t *len, cairn_error *err)
{
    if ((uint64_t)d->size > CAIRN__OCI_JSON_MAX)
        return cairn__err(err, CAIRN_E_FORMAT, "%s %s: %lld bytes, larger than %u", role,
                          d->digest, (long long)d->size, CAIRN__OCI_JSON_MAX);
    _cleanup_free_ char *buf = NULL;
    size_t n = 0;
    if (s->archive) {
        arc_entry *e = cairn__arc_find(s, d->digest);
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
