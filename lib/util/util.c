/* util.c: small helpers shared by the library: time, hex, SHA-256, files
 * through directory fds, and a string set. Nothing here knows about states. */
#include "util/util.h"

#include <dirent.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#include <openssl/evp.h>

int64_t cairn__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

int64_t cairn__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void cairn__hex(char *out, const unsigned char *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

int cairn__random_id(char out[CAIRN_STATE_ID_LEN + 1])
{
    unsigned char raw[CAIRN_STATE_ID_LEN / 2];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    cairn__hex(out, raw, sizeof(raw));
    return 0;
}

void cairn__digest_fmt(char out[CAIRN_DIGEST_LEN + 1], const unsigned char raw[32])
{
    memcpy(out, "sha256:", 7);
    cairn__hex(out + 7, raw, 32);
}

int cairn_digest_check(const char *digest, cairn_error *err)
{
    if (!digest || !*digest)
        return cairn__err(err, CAIRN_E_DIGEST, "empty digest");
    const char *colon = strchr(digest, ':');
    if (!colon)
        return cairn__err(err, CAIRN_E_DIGEST,
                          "digest '%.80s': expected 'sha256:' and 64 hex characters", digest);
    if ((size_t)(colon - digest) != 6 || memcmp(digest, "sha256", 6) != 0)
        return cairn__err(err, CAIRN_E_DIGEST,
                          "digest '%.80s': algorithm '%.*s' is not supported (only sha256)", digest,
                          (int)((colon - digest) > 32 ? 32 : (colon - digest)), digest);
    const char *hex = colon + 1;
    size_t n = 0;
    for (; hex[n]; n++) {
        char c = hex[n];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return cairn__err(err, CAIRN_E_DIGEST,
                              "digest '%.80s': '%c' at %zu is not a lowercase hex digit", digest,
                              c >= 32 && c < 127 ? c : '?', n + 7);
    }
    if (n != 64)
        return cairn__err(err, CAIRN_E_DIGEST, "digest '%.80s': %zu hex characters, expected 64",
                          digest, n);
    return 0;
}

/* ---- SHA-256 through OpenSSL's EVP (SHA-NI where the CPU has it) ------- */

struct cairn__sha256 {
    EVP_MD_CTX *ctx;
};

cairn__sha256 *cairn__sha256_new(void)
{
    cairn__sha256 *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->ctx);
        free(h);
        return NULL;
    }
    return h;
}

void cairn__sha256_update(cairn__sha256 *h, const void *buf, size_t len)
{
    EVP_DigestUpdate(h->ctx, buf, len);
}

void cairn__sha256_final(cairn__sha256 *h, char out[CAIRN_DIGEST_LEN + 1])
{
    unsigned char raw[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(h->ctx, raw, &n);
    cairn__digest_fmt(out, raw);
}

void cairn__sha256_free(cairn__sha256 *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void cairn__sha256_buf(const void *buf, size_t len, char out[CAIRN_DIGEST_LEN + 1])
{
    unsigned char raw[32];
    unsigned int n = 0;
    EVP_Digest(buf, len, raw, &n, EVP_sha256(), NULL);
    cairn__digest_fmt(out, raw);
}

#define CAIRN_IO_CHUNK (1u << 20)

int64_t cairn__sha256_fd(int fd, char out[CAIRN_DIGEST_LEN + 1])
{
    _cleanup_free_ unsigned char *buf = malloc(CAIRN_IO_CHUNK);
    cairn__sha256 *h = cairn__sha256_new();
    if (!buf || !h) {
        cairn__sha256_free(h);
        return -ENOMEM;
    }
    int64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, CAIRN_IO_CHUNK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = -errno;
            cairn__sha256_free(h);
            return e;
        }
        if (n == 0)
            break;
        cairn__sha256_update(h, buf, (size_t)n);
        total += n;
    }
    cairn__sha256_final(h, out);
    cairn__sha256_free(h);
    return total;
}

/* ---- files ------------------------------------------------------------ */

int cairn__write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t cairn__read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

int cairn__read_file_at(int dirfd, const char *name, size_t max, char **out, size_t *out_len)
{
    /* O_NONBLOCK: a FIFO in place of the file must not hang the open. */
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return -errno;
    if (!S_ISREG(sb.st_mode))
        return CAIRN_E_FORMAT;
    _cleanup_free_ char *buf = malloc(max + 1);
    if (!buf)
        return -ENOMEM;
    ssize_t n = cairn__read_all(fd, buf, max + 1);
    if (n < 0)
        return (int)n;
    if ((size_t)n > max)
        return -EFBIG;
    buf[n] = 0;
    if (out_len)
        *out_len = (size_t)n;
    *out = steal_pointer(&buf);
    return 0;
}

int cairn__fsync_at(int dirfd, const char *name)
{
    if (!name)
        return fsync(dirfd) < 0 ? -errno : 0;
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    return fsync(fd) < 0 ? -errno : 0;
}

int cairn__write_file_atomic(int dirfd, const char *name, const void *buf, size_t len,
                             mode_t mode)
{
    char tmp[256];
    char rnd[CAIRN_STATE_ID_LEN + 1];
    int r = cairn__random_id(rnd);
    if (r < 0)
        return r;
    if ((size_t)snprintf(tmp, sizeof(tmp), ".%.200s.%.8s.tmp", name, rnd) >= sizeof(tmp))
        return -ENAMETOOLONG;
    _cleanup_close_ int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    r = cairn__write_all(fd, buf, len);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (r == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
        r = -errno;
    if (r < 0) {
        unlinkat(dirfd, tmp, 0);
        return r;
    }
    return cairn__fsync_at(dirfd, NULL);
}

int cairn__mkdir_at(int dirfd, const char *name, mode_t mode)
{
    if (mkdirat(dirfd, name, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int cairn__mkdir_p(const char *path, mode_t mode)
{
    _cleanup_free_ char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int cairn__rename_noreplace(int olddirfd, const char *oldname, int newdirfd, const char *newname)
{
    if (syscall(SYS_renameat2, olddirfd, oldname, newdirfd, newname, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    /* A filesystem without RENAME_NOREPLACE: link then unlink is as atomic
     * for regular files; for directories, check then rename (racy, rare). */
    if (linkat(olddirfd, oldname, newdirfd, newname, 0) == 0) {
        unlinkat(olddirfd, oldname, 0);
        return 0;
    }
    if (errno != EPERM && errno != EISDIR)
        return -errno;
    struct stat sb;
    if (fstatat(newdirfd, newname, &sb, AT_SYMLINK_NOFOLLOW) == 0)
        return -EEXIST;
    return renameat(olddirfd, oldname, newdirfd, newname) < 0 ? -errno : 0;
}

int cairn__file_is(int dirfd, const char *name, uint64_t size, const char *digest)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == ELOOP ? 0 : -errno;
    struct stat sb;
    int r = 0;
    if (fstat(fd, &sb) < 0)
        r = -errno;
    else if (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == size) {
        char got[CAIRN_DIGEST_LEN + 1];
        int64_t n = cairn__sha256_fd(fd, got);
        r = n < 0 ? (int)n : (uint64_t)n == size && !strcmp(got, digest);
    }
    close(fd);
    return r;
}

static int rm_rf_children(int fd)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = -errno;
        close(fd);
        return e;
    }
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        int q = cairn__rm_rf_at(dirfd(d), de->d_name);
        if (q < 0 && r == 0)
            r = q;
    }
    closedir(d);
    return r;
}

static int open_beneath_walk(int dirfd, const char *path, int flags, mode_t mode)
{
    if (path[0] == '/')
        return -EXDEV;
    _cleanup_close_ int cur = -1;
    int at = dirfd;
    const char *p = path;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        char comp[NAME_MAX + 1];
        if (n == 0 || n > NAME_MAX)
            return n ? -ENAMETOOLONG : -EINVAL;
        memcpy(comp, p, n);
        comp[n] = 0;
        if (!strcmp(comp, ".."))
            return -EXDEV;
        if (!slash) {
            int fd = openat(at, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
            return fd < 0 ? -errno : fd;
        }
        int fd = openat(at, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return errno == ENOTDIR ? -ELOOP : -errno;
        if (cur >= 0)
            close(cur);
        cur = fd;
        at = fd;
        p = slash + 1;
    }
}

int cairn__open_beneath(int dirfd, const char *path, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
    if (fd >= 0)
        return (int)fd;
    if (errno != ENOSYS && errno != EPERM) /* EPERM: a seccomp filter that predates it */
        return -errno;
    return open_beneath_walk(dirfd, path, flags, mode);
}

int cairn__rm_rf_at(int dirfd, const char *name)
{
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    int r = rm_rf_children(fd);
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
        r = -errno;
    return r;
}

int cairn__copy_fd(int in, int out, off_t size)
{
    off_t left = size;
    while (left > 0) {
        ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS)
                break;
            return -errno;
        }
        if (n == 0)
            break;
        left -= n;
    }
    if (left == 0)
        return 0;
    /* Fallback: plain read/write from where we are. */
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
        int r = cairn__write_all(out, buf, (size_t)n);
        if (r < 0)
            return r;
    }
}

int cairn__clone_file_at(int srcdirfd, const char *src, int dstdirfd, const char *dst, int how)
{
    if (how == 0 || how == 'l') {
        if (linkat(srcdirfd, src, dstdirfd, dst, 0) == 0)
            return 0;
        if (errno == EEXIST || how == 'l' ||
            !(errno == EXDEV || errno == EMLINK || errno == EPERM || errno == EACCES))
            return -errno;
    }
    _cleanup_close_ int in = openat(srcdirfd, src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0)
        return -errno;
    struct stat sb;
    if (fstat(in, &sb) < 0)
        return -errno;
    char tmp[96];
    char rnd[CAIRN_STATE_ID_LEN + 1];
    int r = cairn__random_id(rnd);
    if (r < 0)
        return r;
    snprintf(tmp, sizeof(tmp), ".clone-%s", rnd);
    _cleanup_close_ int out =
        openat(dstdirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, sb.st_mode & 07777);
    if (out < 0)
        return -errno;
    int kind = 2;
    if (how != 'c' && ioctl(out, FICLONE, in) == 0)
        kind = 1;
    else
        r = cairn__copy_fd(in, out, sb.st_size);
    if (r == 0 && fsync(out) < 0)
        r = -errno;
    if (r == 0)
        r = cairn__rename_noreplace(dstdirfd, tmp, dstdirfd, dst);
    if (r < 0) {
        unlinkat(dstdirfd, tmp, 0);
        return r;
    }
    return kind;
}

/* ---- string vector ---------------------------------------------------- */

int cairn__strv_push(cairn__strv *sv, const char *s)
{
    if (sv->n == sv->cap) {
        size_t nc = sv->cap ? sv->cap * 2 : 16;
        char **nv = realloc(sv->v, nc * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        sv->v = nv;
        sv->cap = nc;
    }
    if (!(sv->v[sv->n] = strdup(s)))
        return -ENOMEM;
    sv->n++;
    return 0;
}

void cairn__strv_free(cairn__strv *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
    memset(sv, 0, sizeof(*sv));
}

/* ---- string set: open addressing, FNV-1a ------------------------------ */

struct cairn__strset {
    char **slots;
    size_t cap, n;
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

cairn__strset *cairn__strset_new(void)
{
    cairn__strset *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cap = 64;
    s->slots = calloc(s->cap, sizeof(char *));
    if (!s->slots) {
        free(s);
        return NULL;
    }
    return s;
}

static size_t strset_find(char **slots, size_t cap, const char *str)
{
    size_t i = fnv1a(str) & (cap - 1);
    while (slots[i] && strcmp(slots[i], str) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

int cairn__strset_add(cairn__strset *s, const char *str)
{
    if ((s->n + 1) * 4 > s->cap * 3) {
        size_t ncap = s->cap * 2;
        char **ns = calloc(ncap, sizeof(char *));
        if (!ns)
            return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slots[i])
                ns[strset_find(ns, ncap, s->slots[i])] = s->slots[i];
        free(s->slots);
        s->slots = ns;
        s->cap = ncap;
    }
    size_t i = strset_find(s->slots, s->cap, str);
    if (s->slots[i])
        return 0;
    s->slots[i] = strdup(str);
    if (!s->slots[i])
        return -ENOMEM;
    s->n++;
    return 1;
}

bool cairn__strset_has(const cairn__strset *s, const char *str)
{
    return s->slots[strset_find(s->slots, s->cap, str)] != NULL;
}

void cairn__strset_free(cairn__strset *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->cap; i++)
        free(s->slots[i]);
    free(s->slots);
    free(s);
}
