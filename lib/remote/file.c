/* file.c: the file:// backend of remotes (remote/backend.h): a directory
 * that is an OCI image layout.
 *
 *   oci-layout                    {"imageLayoutVersion": "1.0.0"}
 *   blobs/sha256/<hex>            every object, manifests included
 *   states/<tag>/<manifest hex>   one file a state published under <tag>:
 *                                 its manifest's bytes (the truth)
 *   index.json                    derived from states/: one entry a state,
 *                                 ref name "<tag>.<hex, 16 digits>", so
 *                                 OCI tools (skopeo, umoci) read the states
 *   tmp/                          staging of this backend's writes
 *
 * Invariants:
 * - a file under blobs/ holds the bytes of its name: written under tmp/,
 *   made durable, renamed without replacing (EEXIST: the same content is
 *   there), the directory fsynced. Blobs are synced in batches, as OSTree
 *   does: blob_put stages a blob without an fsync of its own; a flush (one
 *   syncfs() of the remote's file system, every PENDING_MAX blobs or
 *   PENDING_BYTES bytes, before a state is published, and at close) makes
 *   the batch durable, and only then renames it into blobs/. So no name in
 *   blobs/ ever holds bytes a crash could lose, and a push of many small
 *   objects costs one sync a batch instead of two fsyncs an object;
 * - a state file is written the same way, after its manifest's blob, and
 *   only once the caller stored every object it names (publish last); so a
 *   writer killed at any point leaves at most files no state names;
 * - index.json follows states/ under an flock of the root: a publish
 *   clones it and writes its one entry over the closing "]}" (so a push
 *   costs its entry, not the index), a removal writes it less the entry;
 *   each renamed over the old one, so concurrent writers never lose a
 *   member and readers see a whole index. states/ is the truth: an index
 *   missing or of another shape is rebuilt from it (every manifest read);
 * - a staging file of tmp/ untouched for a day belongs to a writer that
 *   died: the next writer removes it (a live one writes to its file
 *   without a pause that long).
 */
#include "remote/backend.h"

#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <jansson.h>

struct cairn__remote {
    char *root;
    int dirfd;   /* the root, -1 until it exists */
    int blobfd;  /* blobs/sha256 */
    bool swept;  /* tmp/ swept by this handle's first write */
    int tmpfd;   /* tmp/, -1 until the first staged blob */
    /* blobs staged in tmp/, not yet synced nor renamed (see the invariants) */
    char (*pending)[2][128]; /* {staging name, hex} */
    size_t n_pending, cap_pending;
    uint64_t pending_bytes;
    cairn__strset *pending_set; /* their hex, for blobs_have */
};

#define PENDING_MAX 1024
#define PENDING_BYTES (32ull << 20)
/* $CAIRN_FILE_PENDING_MAX: fewer blobs a sync (tests: a push killed midway
 * that has made some visible) */
static size_t pending_max(void)
{
    const char *e = getenv("CAIRN_FILE_PENDING_MAX");
    long v = e && *e ? strtol(e, NULL, 10) : 0;
    return v > 0 && v < PENDING_MAX ? (size_t)v : PENDING_MAX;
}

#define STALE_NS (24LL * 3600 * 1000000000)

/* Remove staging files of writers that died (see the invariants). */
static void sweep_tmp(cairn__remote *r)
{
    int fd = openat(r->dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    int64_t now = cairn__now_ns();
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat sb;
        if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(sb.st_mode))
            continue;
        if (now - ((int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec) > STALE_NS)
            unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

static int file_layout(cairn__remote *r, bool create, cairn_error *err)
{
    if (create && !r->swept && r->blobfd >= 0) {
        r->swept = true;
        sweep_tmp(r);
    }
    if (r->blobfd >= 0)
        return 0;
    if (r->dirfd < 0) {
        if (create && cairn__mkdir_p(r->root, 0755) < 0)
            return cairn__err(err, -errno, "remote %s: mkdir: %m", r->root);
        r->dirfd = open(r->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (r->dirfd < 0)
            return cairn__err(err, -errno, "remote file://%s: %m", r->root);
    }
    if (create) {
        static const char *const dirs[] = {"blobs", "blobs/sha256", "states", "tmp"};
        for (size_t i = 0; i < CAIRN_ARRAY_SIZE(dirs); i++) {
            int e = cairn__mkdir_at(r->dirfd, dirs[i], 0755);
            if (e < 0)
                return cairn__err(err, e, "remote %s/%s: mkdir: %m", r->root, dirs[i]);
        }
        if (faccessat(r->dirfd, "oci-layout", F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
            static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
            int e = cairn__write_file_atomic(r->dirfd, "oci-layout", layout, sizeof(layout) - 1,
                                             0644);
            if (e < 0)
                return cairn__err(err, e, "remote %s/oci-layout: %m", r->root);
        }
    }
    r->blobfd = openat(r->dirfd, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r->blobfd < 0) {
        if (errno == ENOENT && !create)
            return -ENOENT; /* an empty remote: nothing stored yet */
        return cairn__err(err, -errno, "remote %s/blobs/sha256: %m", r->root);
    }
    if (create && !r->swept) {
        r->swept = true;
        sweep_tmp(r);
    }
    return 0;
}

static int file_open(const cairn__remote_conf *conf, cairn__remote **out, cairn_error *err)
{
    const char *u = conf->url;
    if (strncmp(u, "file://", 7) != 0)
        return cairn__err(err, -EINVAL, "remote %s: not a file:// URL", u);
    const char *path = u + 7;
    if (path[0] != '/')
        return cairn__err(err, -EINVAL, "remote %s: expected file:///absolute/path", u);
    cairn__remote *r = calloc(1, sizeof(*r));
    if (!r || !(r->root = strdup(path))) {
        free(r);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    size_t n = strlen(r->root);
    while (n > 1 && r->root[n - 1] == '/')
        r->root[--n] = 0;
    r->dirfd = open(r->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r->dirfd < 0 && errno != ENOENT) {
        int e = cairn__err(err, -errno, "remote file://%s: %m", r->root);
        free(r->root);
        free(r);
        return e;
    }
    r->blobfd = -1;
    r->tmpfd = -1;
    *out = r;
    return 0;
}

static int flush(cairn__remote *r, cairn_error *err);

static void file_close(cairn__remote *r)
{
    if (!r)
        return;
    /* what a failed push sent stays useful to its rerun */
    flush(r, NULL);
    cairn__strset_free(r->pending_set);
    free(r->pending);
    if (r->tmpfd >= 0)
        close(r->tmpfd);
    if (r->blobfd >= 0)
        close(r->blobfd);
    if (r->dirfd >= 0)
        close(r->dirfd);
    free(r->root);
    free(r);
}

static const char *hex_of(const char *digest)
{
    return !strncmp(digest, "sha256:", 7) ? digest + 7 : NULL;
}

static int file_blobs_have(cairn__remote *r, const char *const *digests, size_t n,
                           uint8_t *present, cairn_error *err)
{
    int e = file_layout(r, false, err);
    if (e == -ENOENT) {
        memset(present, 0, n);
        return 0;
    }
    if (e < 0)
        return e;
    for (size_t i = 0; i < n; i++) {
        const char *hex = hex_of(digests[i]);
        struct stat sb;
        present[i] = hex && ((r->pending_set && cairn__strset_has(r->pending_set, hex)) ||
                             (fstatat(r->blobfd, hex, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
                              S_ISREG(sb.st_mode)));
        /* a use: gc's grace period now covers the push relying on it */
        if (present[i])
            utimensat(r->blobfd, hex, NULL, AT_SYMLINK_NOFOLLOW);
    }
    return 0;
}

/* Copy `size` bytes (0: to the end) from in to out, reporting progress. */
static int copy_fd(int in, int out, uint64_t size, cairn__remote_progress fn, void *ud)
{
    enum { CHUNK = 1 << 20 };
    _cleanup_free_ char *buf = malloc(CHUNK);
    if (!buf)
        return -ENOMEM;
    uint64_t done = 0;
    for (;;) {
        size_t want = CHUNK;
        if (size && size - done < want)
            want = (size_t)(size - done);
        if (size && want == 0)
            break;
        ssize_t k = read(in, buf, want);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (k == 0)
            break;
        int e = cairn__write_all(out, buf, (size_t)k);
        if (e < 0)
            return e;
        done += (uint64_t)k;
        if (fn)
            fn(ud, done);
    }
    if (size && done != size)
        return CAIRN_E_TRUNCATED;
    return 0;
}

/* Stage bytes under tmp/, fsync, rename to dirfd/name without replacing. */
static int stage_put(cairn__remote *r, int dirfd, const char *name, int in, uint64_t size,
                     const void *buf, size_t len, cairn__remote_progress fn, void *ud)
{
    int tfd = openat(r->dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (tfd < 0)
        return -errno;
    char tmp[128];
    int e = cairn__tmp_name_unowned(tmp, sizeof(tmp), "put");
    if (e < 0) {
        close(tfd);
        return e;
    }
    int fd = openat(tfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        e = -errno;
        close(tfd);
        return e;
    }
    if (buf)
        e = cairn__write_all(fd, buf, len);
    else if (lseek(in, 0, SEEK_SET) < 0)
        e = -errno;
    else
        e = copy_fd(in, fd, size, fn, ud);
    if (e == 0 && fsync(fd) < 0)
        e = -errno;
    if (close(fd) < 0 && e == 0)
        e = -errno;
    if (e == 0) {
        e = cairn__rename_noreplace(tfd, tmp, dirfd, name);
        if (e == -EEXIST) {
            unlinkat(tfd, tmp, 0);
            e = 0;
        } else if (e == 0 && fsync(dirfd) < 0) {
            e = -errno;
        }
    }
    if (e < 0)
        unlinkat(tfd, tmp, 0);
    close(tfd);
    return e;
}

/* Make the staged blobs durable (one syncfs), then rename them into
 * blobs/ and sync the directory: data before names. */
static int flush(cairn__remote *r, cairn_error *err)
{
    if (!r->n_pending)
        return 0;
    int e = syncfs(r->tmpfd) < 0 ? -errno : 0;
    for (size_t i = 0; i < r->n_pending; i++) {
        const char *tmp = r->pending[i][0], *hex = r->pending[i][1];
        int k = e < 0 ? e : cairn__rename_noreplace(r->tmpfd, tmp, r->blobfd, hex);
        if (k < 0)
            unlinkat(r->tmpfd, tmp, 0); /* EEXIST: the same bytes are there */
        if (k < 0 && k != -EEXIST && e == 0)
            e = k;
    }
    if (e == 0 && fsync(r->blobfd) < 0)
        e = -errno;
    r->n_pending = 0;
    r->pending_bytes = 0;
    cairn__strset_free(r->pending_set);
    r->pending_set = NULL;
    if (e < 0)
        return cairn__err(err, e, "remote %s: store the blobs sent: %m", r->root);
    return 0;
}

static int file_blob_put(cairn__remote *r, const char *digest, int fd, uint64_t size,
                         const char *media_type, cairn__remote_progress fn, void *ud,
                         cairn_error *err)
{
    (void)media_type;
    const char *hex = hex_of(digest);
    if (!hex || cairn_digest_check(digest, err) < 0)
        return cairn__err(err, CAIRN_E_DIGEST, "remote %s: bad digest %s", r->root, digest);
    int e = file_layout(r, true, err);
    if (e < 0)
        return e;
    if (r->pending_set && cairn__strset_has(r->pending_set, hex))
        return 0;
    if (r->tmpfd < 0 && (r->tmpfd = openat(r->dirfd, "tmp", O_RDONLY | O_DIRECTORY |
                                           O_CLOEXEC)) < 0)
        return cairn__err(err, -errno, "remote %s/tmp: %m", r->root);
    if (r->n_pending == r->cap_pending) {
        size_t cap = r->cap_pending ? r->cap_pending * 2 : 256;
        void *nv = realloc(r->pending, cap * sizeof(*r->pending));
        if (!nv)
            return cairn__err(err, -ENOMEM, "out of memory");
        r->pending = nv;
        r->cap_pending = cap;
    }
    if (!r->pending_set && !(r->pending_set = cairn__strset_new()))
        return cairn__err(err, -ENOMEM, "out of memory");
    char *tmp = r->pending[r->n_pending][0];
    e = cairn__tmp_name_unowned(tmp, 128, "put");
    int out = e < 0 ? -1 : openat(r->tmpfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (e == 0 && out < 0)
        e = -errno;
    if (e == 0 && lseek(fd, 0, SEEK_SET) < 0)
        e = -errno;
    if (e == 0)
        e = copy_fd(fd, out, size, fn, ud);
    if (out >= 0 && close(out) < 0 && e == 0)
        e = -errno;
    if (e == 0 && cairn__strset_add(r->pending_set, hex) < 0)
        e = -ENOMEM;
    if (e < 0) {
        if (out >= 0)
            unlinkat(r->tmpfd, tmp, 0);
        return cairn__err(err, e, "remote %s: blob %s: write: %m", r->root, digest);
    }
    snprintf(r->pending[r->n_pending][1], 128, "%s", hex);
    r->n_pending++;
    r->pending_bytes += size;
    if (r->n_pending >= pending_max() || r->pending_bytes >= PENDING_BYTES)
        return flush(r, err);
    return 0;
}

static int file_flush(cairn__remote *r, cairn_error *err)
{
    return r->n_pending ? flush(r, err) : 0;
}

static int file_blob_get(cairn__remote *r, const char *digest, int fd, cairn__remote_progress fn,
                         void *ud, cairn_error *err)
{
    const char *hex = hex_of(digest);
    if (!hex)
        return cairn__err(err, CAIRN_E_DIGEST, "remote %s: bad digest %s", r->root, digest);
    int f = r->n_pending ? flush(r, err) : 0;
    if (f < 0)
        return f;
    int e = file_layout(r, false, err);
    if (e == -ENOENT)
        return cairn__err(err, -ENOENT, "remote %s: blob %s: not stored", r->root, digest);
    if (e < 0)
        return e;
    _cleanup_close_ int in = openat(r->blobfd, hex, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return cairn__err(err, -errno, "remote %s: blob %s: %s", r->root, digest,
                          errno == ENOENT ? "not stored" : cairn_strerror(-errno));
    e = copy_fd(in, fd, 0, fn, ud);
    if (e < 0)
        return cairn__err(err, e, "remote %s: blob %s: read: %m", r->root, digest);
    return 0;
}

static int file_blob_delete(cairn__remote *r, const char *digest, cairn_error *err)
{
    const char *hex = hex_of(digest);
    if (!hex)
        return cairn__err(err, CAIRN_E_DIGEST, "remote %s: bad digest %s", r->root, digest);
    int e = file_layout(r, false, err);
    if (e == -ENOENT)
        return 0;
    if (e < 0)
        return e;
    if (unlinkat(r->blobfd, hex, 0) < 0 && errno != ENOENT)
        return cairn__err(err, -errno, "remote %s: blob %s: remove: %m", r->root, digest);
    return 0;
}

static bool is_hex64(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    return n == 64;
}

static int file_blobs_list(cairn__remote *r,
                           int (*fn)(void *ud, const char *digest, uint64_t size, int64_t mtime),
                           void *ud, cairn_error *err)
{
    int e = file_layout(r, false, err);
    if (e == -ENOENT)
        return 0;
    if (e < 0)
        return e;
    int fd = dup(r->blobfd);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        e = cairn__err(err, -errno, "remote %s/blobs/sha256: %m", r->root);
        if (fd >= 0)
            close(fd);
        return e;
    }
    rewinddir(d);
    struct dirent *de;
    int rv = 0;
    while (rv == 0 && (de = readdir(d))) {
        if (!is_hex64(de->d_name))
            continue;
        struct stat sb;
        if (fstatat(r->blobfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(sb.st_mode))
            continue;
        char digest[CAIRN_DIGEST_LEN + 1] = "sha256:";
        memcpy(digest + 7, de->d_name, 65); /* 64 hex digits and the NUL */
        rv = fn(ud, digest, (uint64_t)sb.st_size,
                (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec);
    }
    closedir(d);
    return rv;
}

/* ---- states ------------------------------------------------------------ */

static bool tag_ok(const char *tag)
{
    size_t n = strlen(tag);
    if (n == 0 || n > 110 || tag[0] == '.' || tag[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = tag[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

typedef int (*state_fn)(void *ud, const char *tag, const char *manifest_digest, int64_t mtime);

static int walk_tag(cairn__remote *r, int sfd, const char *tag, state_fn fn, void *ud,
                    cairn_error *err)
{
    int tfd = openat(sfd, tag, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (tfd < 0)
        return errno == ENOENT ? 0 : cairn__err(err, -errno, "remote %s/states/%s: %m", r->root, tag);
    DIR *d = fdopendir(tfd);
    if (!d) {
        close(tfd);
        return cairn__err(err, -errno, "remote %s/states/%s: %m", r->root, tag);
    }
    struct dirent *de;
    int rv = 0;
    while (rv == 0 && (de = readdir(d))) {
        if (!is_hex64(de->d_name))
            continue;
        struct stat sb;
        if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(sb.st_mode))
            continue;
        char digest[CAIRN_DIGEST_LEN + 1] = "sha256:";
        memcpy(digest + 7, de->d_name, 65); /* 64 hex digits and the NUL */
        rv = fn(ud, tag, digest, (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec);
    }
    closedir(d);
    return rv;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int file_states_list(cairn__remote *r, const char *tag, state_fn fn, void *ud,
                            cairn_error *err)
{
    if (tag && !tag_ok(tag))
        return cairn__err(err, -EINVAL, "remote tag '%s': expected [A-Za-z0-9_.-], at most 110",
                          tag);
    if (r->dirfd < 0)
        return 0;
    int sfd = openat(r->dirfd, "states", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0)
        return errno == ENOENT ? 0 : cairn__err(err, -errno, "remote %s/states: %m", r->root);
    if (tag) {
        int rv = walk_tag(r, sfd, tag, fn, ud, err);
        close(sfd);
        return rv;
    }
    DIR *d = fdopendir(sfd);
    if (!d) {
        close(sfd);
        return cairn__err(err, -errno, "remote %s/states: %m", r->root);
    }
    /* sorted, so listings do not depend on the directory's order */
    cairn__strv tags = {0};
    struct dirent *de;
    while ((de = readdir(d)))
        if (tag_ok(de->d_name) && cairn__strv_push(&tags, de->d_name) < 0) {
            closedir(d);
            cairn__strv_free(&tags);
            return cairn__err(err, -ENOMEM, "out of memory");
        }
    if (tags.n > 1)
        qsort(tags.v, tags.n, sizeof(*tags.v), cmp_str);
    int rv = 0;
    for (size_t i = 0; rv == 0 && i < tags.n; i++)
        rv = walk_tag(r, dirfd(d), tags.v[i], fn, ud, err);
    closedir(d);
    cairn__strv_free(&tags);
    return rv;
}

typedef struct index_acc {
    cairn__remote *r;
    json_t *manifests;
} index_acc;

/* One entry of index.json: the state's manifest (or index), ref name
 * "<tag>.<hex16>". */
static json_t *index_entry(const char *tag, const char *digest, const char *buf, size_t len,
                           uint64_t size)
{
    const char *mt = "application/vnd.oci.image.manifest.v1+json";
    json_t *doc = buf ? json_loadb(buf, len, 0, NULL) : NULL;
    const char *m = json_string_value(json_object_get(doc, "mediaType"));
    if (m && !strcmp(m, "application/vnd.oci.image.index.v1+json"))
        mt = "application/vnd.oci.image.index.v1+json";
    char ref[200];
    snprintf(ref, sizeof(ref), "%s.%.16s", tag, digest + 7);
    json_t *e = json_pack("{s:s, s:s, s:I, s:{s:s, s:s}}", "mediaType", mt, "digest", digest,
                          "size", (json_int_t)size, "annotations",
                          "org.opencontainers.image.ref.name", ref, "cairn.tag", tag);
    json_decref(doc);
    return e;
}

static int index_add(void *ud, const char *tag, const char *digest, int64_t mtime)
{
    (void)mtime;
    index_acc *a = ud;
    if (tag[0] == '_')
        return 0; /* a pool's record, not a state */
    struct stat sb;
    if (fstatat(a->r->blobfd, digest + 7, &sb, 0) < 0)
        return 0; /* its blob went: no entry (a broken index would fail OCI tools) */
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    if (cairn__read_file_at(a->r->blobfd, digest + 7, 4u << 20, &buf, &len) < 0)
        buf = NULL;
    json_t *e = index_entry(tag, digest, buf, len, (uint64_t)sb.st_size);
    if (!e || json_array_append_new(a->manifests, e) < 0)
        return -ENOMEM;
    return 0;
}

static int index_write(cairn__remote *r, json_t *manifests, cairn_error *err)
{
    json_t *idx = json_pack("{s:i, s:s, s:O}", "schemaVersion", 2, "mediaType",
                            "application/vnd.oci.image.index.v1+json", "manifests", manifests);
    char *text = idx ? json_dumps(idx, JSON_COMPACT) : NULL;
    json_decref(idx);
    if (!text)
        return cairn__err(err, -ENOMEM, "out of memory");
    int e = cairn__write_file_atomic(r->dirfd, "index.json", text, strlen(text), 0644);
    free(text);
    if (e < 0)
        return cairn__err(err, e, "remote %s/index.json: %m", r->root);
    return 0;
}

/* index.json from states/ (every manifest read), under the root's flock. */
static int index_rebuild(cairn__remote *r, cairn_error *err)
{
    index_acc a = {r, json_array()};
    int e = a.manifests ? file_states_list(r, NULL, index_add, &a, err) : -ENOMEM;
    if (e == 0)
        e = index_write(r, a.manifests, err);
    else if (e == -ENOMEM)
        cairn__err(err, e, "out of memory");
    json_decref(a.manifests);
    return e;
}

/* index.json with one entry more, under the root's flock: its bytes cloned
 * under tmp/ (a reflink where the filesystem has them, else copied inside
 * the kernel), the entry written over the closing "]}", renamed over it;
 * so a push writes the entry it adds, not the index, and reads no other
 * manifest. 1: index.json is missing or not as this writes it (the caller
 * rebuilds it). */
static int index_append(cairn__remote *r, const char *tag, const char *digest, const char *buf,
                        size_t len, cairn_error *err)
{
    struct stat sb;
    if (fstatat(r->dirfd, "index.json", &sb, 0) < 0 || sb.st_size < 3)
        return 1;
    int tfd = openat(r->dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (tfd < 0)
        return cairn__err(err, -errno, "remote %s/tmp: %m", r->root);
    char tmp[128];
    int e = cairn__tmp_name_unowned(tmp, sizeof(tmp), "index");
    if (e == 0)
        e = cairn__clone_file_at(r->dirfd, "index.json", tfd, tmp, 'r');
    int fd = e < 0 ? -1 : openat(tfd, tmp, O_RDWR | O_CLOEXEC);
    if (e >= 0 && fd < 0)
        e = -errno;
    char tail[3];
    off_t end = 0;
    if (fd >= 0 && ((end = lseek(fd, 0, SEEK_END)) < 3 || pread(fd, tail, 3, end - 3) != 3 ||
                    tail[1] != ']' || tail[2] != '}'))
        e = 1;
    char *text = NULL;
    if (e >= 0 && e != 1) {
        json_t *entry = index_entry(tag, digest, buf, len, len);
        char *one = entry ? json_dumps(entry, JSON_COMPACT) : NULL;
        json_decref(entry);
        if (!one || asprintf(&text, "%s%s]}", tail[0] == '[' ? "" : ",", one) < 0) {
            text = NULL;
            e = -ENOMEM;
        }
        free(one);
    }
    if (e >= 0 && e != 1 && pwrite(fd, text, strlen(text), end - 2) != (ssize_t)strlen(text))
        e = -EIO;
    if (e >= 0 && e != 1 && fsync(fd) < 0)
        e = -errno;
    if (e >= 0 && e != 1 && renameat(tfd, tmp, r->dirfd, "index.json") < 0)
        e = -errno;
    else if (e >= 0 && e != 1)
        e = fsync(r->dirfd) < 0 ? -errno : 0;
    free(text);
    if (fd >= 0)
        close(fd);
    unlinkat(tfd, tmp, 0);
    close(tfd);
    if (e < 0 && e != -ENOMEM)
        return cairn__err(err, e, "remote %s/index.json: %m", r->root);
    if (e == -ENOMEM)
        return cairn__err(err, e, "out of memory");
    return e > 0 ? 1 : 0;
}

/* index.json less the entry of tag's state digest, under the root's flock:
 * the index read and written again, no manifest read. 1: not as this
 * writes it (the caller rebuilds it). */
static int index_remove(cairn__remote *r, const char *tag, const char *digest, cairn_error *err)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    if (cairn__read_file_at(r->dirfd, "index.json", 1u << 30, &buf, &len) < 0)
        return 1;
    json_t *idx = json_loadb(buf, len, 0, NULL);
    json_t *mv = json_object_get(idx, "manifests");
    if (!json_is_array(mv)) {
        json_decref(idx);
        return 1;
    }
    json_t *out = json_array();
    size_t i;
    json_t *e;
    int rc = out ? 0 : -ENOMEM;
    json_array_foreach(mv, i, e)
    {
        const char *d = json_string_value(json_object_get(e, "digest"));
        const char *t = json_string_value(
            json_object_get(json_object_get(e, "annotations"), "cairn.tag"));
        if (rc == 0 && !(d && t && !strcmp(d, digest) && !strcmp(t, tag)) &&
            json_array_append(out, e) < 0)
            rc = -ENOMEM;
    }
    if (rc == 0 && json_array_size(out) != json_array_size(mv))
        rc = index_write(r, out, err);
    else if (rc == -ENOMEM)
        cairn__err(err, rc, "out of memory");
    json_decref(out);
    json_decref(idx);
    return rc;
}

static int file_state_put(cairn__remote *r, const char *tag, const char *manifest_digest,
                          const void *buf, size_t len, cairn_error *err)
{
    if (!tag_ok(tag))
        return cairn__err(err, -EINVAL, "remote tag '%s': expected [A-Za-z0-9_.-], at most 110",
                          tag);
    const char *hex = hex_of(manifest_digest);
    if (!hex || cairn_digest_check(manifest_digest, err) < 0)
        return cairn__err(err, CAIRN_E_DIGEST, "remote %s: bad digest %s", r->root,
                          manifest_digest);
    int e = file_layout(r, true, err);
    if (e == 0)
        e = flush(r, err); /* publish last: every blob it names is stored */
    if (e < 0)
        return e;
    /* the manifest as a blob first (an OCI layout's index names blobs) */
    e = stage_put(r, r->blobfd, hex, -1, 0, buf, len, NULL, NULL);
    if (e < 0)
        return cairn__err(err, e, "remote %s: manifest %s: write: %m", r->root, manifest_digest);
    int sfd = openat(r->dirfd, "states", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0)
        return cairn__err(err, -errno, "remote %s/states: %m", r->root);
    e = cairn__mkdir_at(sfd, tag, 0755);
    int tfd = e < 0 ? -1 : openat(sfd, tag, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (tfd < 0) {
        e = e < 0 ? e : -errno;
        close(sfd);
        return cairn__err(err, e, "remote %s/states/%s: %m", r->root, tag);
    }
    /* a pool's record (tag '_...') is no state for OCI tools: not indexed */
    bool indexed = tag[0] != '_';
    if (indexed && flock(r->dirfd, LOCK_EX) < 0) {
        e = -errno;
        close(tfd);
        close(sfd);
        return cairn__err(err, e, "remote %s: lock: %m", r->root);
    }
    struct stat sb;
    bool existed = fstatat(tfd, hex, &sb, AT_SYMLINK_NOFOLLOW) == 0;
    e = stage_put(r, tfd, hex, -1, 0, buf, len, NULL, NULL);
    if (e == 0)
        fsync(sfd);
    close(tfd);
    close(sfd);
    if (e < 0) {
        if (indexed)
            flock(r->dirfd, LOCK_UN);
        return cairn__err(err, e, "remote %s/states/%s/%s: write: %m", r->root, tag, hex);
    }
    if (indexed && !existed)
        e = index_append(r, tag, manifest_digest, buf, len, err);
    if (e == 1)
        e = index_rebuild(r, err);
    if (indexed)
        flock(r->dirfd, LOCK_UN);
    return e;
}

static int file_state_get(cairn__remote *r, const char *tag, const char *manifest_digest,
                          char **buf, size_t *len, cairn_error *err)
{
    const char *hex = hex_of(manifest_digest);
    if (!tag_ok(tag) || !hex || !is_hex64(hex))
        return cairn__err(err, -EINVAL, "remote %s: bad state %s/%s", r->root, tag,
                          manifest_digest);
    if (r->dirfd < 0)
        return cairn__err(err, -ENOENT, "remote %s: state %s %s: not there", r->root, tag,
                          manifest_digest);
    char name[300];
    snprintf(name, sizeof(name), "states/%s/%s", tag, hex);
    int e = cairn__read_file_at(r->dirfd, name, 4u << 20, buf, len);
    if (e < 0)
        return cairn__err(err, e, "remote %s/%s: %s", r->root, name,
                          e == -EFBIG ? "larger than 4 MiB" : cairn_strerror(e));
    return 0;
}

static int file_state_delete(cairn__remote *r, const char *tag, const char *manifest_digest,
                             cairn_error *err)
{
    const char *hex = hex_of(manifest_digest);
    if (!tag_ok(tag) || !hex || !is_hex64(hex))
        return cairn__err(err, -EINVAL, "remote %s: bad state %s/%s", r->root, tag,
                          manifest_digest);
    if (r->dirfd < 0)
        return 0;
    char name[300];
    snprintf(name, sizeof(name), "states/%s/%s", tag, hex);
    if (unlinkat(r->dirfd, name, 0) < 0 && errno != ENOENT)
        return cairn__err(err, -errno, "remote %s/%s: remove: %m", r->root, name);
    snprintf(name, sizeof(name), "states/%s", tag);
    unlinkat(r->dirfd, name, AT_REMOVEDIR); /* when it was the last member */
    int e = file_layout(r, false, err);
    if (e < 0)
        return e == -ENOENT ? 0 : e;
    if (tag[0] == '_')
        return 0;
    if (flock(r->dirfd, LOCK_EX) < 0)
        return cairn__err(err, -errno, "remote %s: lock: %m", r->root);
    e = index_remove(r, tag, manifest_digest, err);
    if (e == 1)
        e = index_rebuild(r, err);
    flock(r->dirfd, LOCK_UN);
    return e;
}

const cairn__remote_ops cairn__remote_file = {
    .scheme = "file",
    .open = file_open,
    .close = file_close,
    .blobs_have = file_blobs_have,
    .blob_put = file_blob_put,
    .flush = file_flush,
    .blob_get = file_blob_get,
    .blob_delete = file_blob_delete,
    .blobs_list = file_blobs_list,
    .state_put = file_state_put,
    .states_list = file_states_list,
    .state_get = file_state_get,
    .state_delete = file_state_delete,
};
