/* tar.c: the canonical tar of a diff, from which DiffIDs are computed.
 *
 * A snapshot's DiffID must be the same wherever the same diff is committed,
 * and a layer export must reproduce it byte for byte, so the tar is a pure
 * function of the diff's files:
 * - PAX (restricted: a ustar header, and a PAX extended header only where
 *   ustar cannot say it: long names, xattrs as SCHILY.xattr.*), not blocked
 *   (no padding past the two zero blocks that end it);
 * - entries sorted byte-wise by their whole path in the tar (without the
 *   trailing '/' of directories), so a directory precedes its contents; the
 *   root itself is not an entry;
 * - headers carry mode, uid, gid, mtime (whole seconds) of the file, its
 *   size, link target or device numbers; no atime, no ctime, empty
 *   uname/gname;
 * - xattrs sorted by name, except overlayfs' own (*.overlay.*);
 * - overlayfs whiteouts (0/0 character devices) become empty files
 *   `.wh.NAME`, an opaque directory (overlay.opaque=y) is followed by an
 *   empty file `.wh..wh..opq`; both with mode 0, owner 0:0, mtime 0;
 * - a file with several links within the diff is written once, at its first
 *   path in that order; the others are tar hardlinks to it;
 * - sockets are skipped (a tar cannot hold them).
 */
#include "snapshot/snapshot-private.h"

#include <dirent.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>

#include <archive.h>
#include <archive_entry.h>

locale_t cairn__utf8_locale_enter(void)
{
    static locale_t utf8; /* made once, never freed: a process-wide constant */
    locale_t l = __atomic_load_n(&utf8, __ATOMIC_ACQUIRE);
    if (!l) {
        l = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
        if (!l)
            return (locale_t)0;
        locale_t expected = (locale_t)0;
        if (!__atomic_compare_exchange_n(&utf8, &expected, l, false, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE)) {
            freelocale(l);
            l = expected;
        }
    }
    return uselocale(l);
}

void cairn__utf8_locale_leave(locale_t old)
{
    if (old)
        uselocale(old);
}

const char *cairn__ovl_prefix(void)
{
    return geteuid() == 0 ? "trusted.overlay." : "user.overlay.";
}

static bool is_ovl_xattr(const char *name)
{
    return !strncmp(name, "trusted.overlay.", 16) || !strncmp(name, "user.overlay.", 13);
}

typedef struct link_slot {
    dev_t dev;
    ino_t ino;
    char *path;
} link_slot;

typedef struct tar_walk {
    struct archive *a;
    const char *what;
    unsigned flags;
    cairn__tar_sink_fn sink;
    void *ud;
    int sink_err;
    cairn_error *err;
    uint64_t size;
    char *buf;
    size_t bufsize;
    link_slot *links; /* open addressing on (dev, ino) */
    size_t nlinks, caplinks;
    char opaque_name[64];
    cairn__tar_entry_fn entry_fn; /* or NULL */
    void *entry_ud;
    cairn__sha256 *data_hash;     /* of the current file's data, for entry_fn */
} tar_walk;

static la_ssize_t tw_write(struct archive *a, void *ud, const void *buf, size_t len)
{
    tar_walk *w = ud;
    int r = w->sink(w->ud, buf, len);
    if (r < 0) {
        w->sink_err = r;
        archive_set_error(a, -r, "write failed");
        return -1;
    }
    return (la_ssize_t)len;
}

static size_t link_hash(dev_t dev, ino_t ino, size_t cap)
{
    uint64_t h = ((uint64_t)ino * 0x9e3779b97f4a7c15ull) ^ (uint64_t)dev;
    return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

/* The first path seen for (dev, ino), or NULL after recording `path`. */
static int link_lookup(tar_walk *w, dev_t dev, ino_t ino, const char *path, const char **first)
{
    if ((w->nlinks + 1) * 2 > w->caplinks) {
        size_t ncap = w->caplinks ? w->caplinks * 2 : 256;
        link_slot *n = calloc(ncap, sizeof(*n));
        if (!n)
            return -ENOMEM;
        for (size_t i = 0; i < w->caplinks; i++) {
            if (!w->links[i].path)
                continue;
            size_t j = link_hash(w->links[i].dev, w->links[i].ino, ncap);
            while (n[j].path)
                j = (j + 1) & (ncap - 1);
            n[j] = w->links[i];
        }
        free(w->links);
        w->links = n;
        w->caplinks = ncap;
    }
    size_t j = link_hash(dev, ino, w->caplinks);
    while (w->links[j].path) {
        if (w->links[j].dev == dev && w->links[j].ino == ino) {
            *first = w->links[j].path;
            return 0;
        }
        j = (j + 1) & (w->caplinks - 1);
    }
    w->links[j].path = strdup(path);
    if (!w->links[j].path)
        return -ENOMEM;
    w->links[j].dev = dev;
    w->links[j].ino = ino;
    w->nlinks++;
    *first = NULL;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* An entry of the tar, collected before any is written so that all can be
 * sorted by their name in the tar. */
enum { ENT_FILE, ENT_WHITEOUT, ENT_OPAQUE };
typedef struct tar_ent {
    char *name; /* the name in the tar, without a trailing '/' */
    int kind;
} tar_ent;

static int cmp_ents(const void *a, const void *b)
{
    return strcmp(((const tar_ent *)a)->name, ((const tar_ent *)b)->name);
}

/* xattrs of a file (fd >= 0) or of dirfd/name, except overlayfs' own, added
 * to the entry sorted by name. Strips bookkeeping xattrs on request, and
 * tells whether the directory is opaque. */
static int add_xattrs(tar_walk *w, struct archive_entry *e, int fd, int dirfd, const char *name,
                      const char *path, bool *opaque)
{
    char proc[64];
    if (fd < 0)
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d/", dirfd);
    _cleanup_free_ char *lpath = NULL;
    if (fd < 0 && asprintf(&lpath, "%s%s", proc, name) < 0)
        return cairn__err(w->err, -ENOMEM, "out of memory");
    char small[1024];
    char *list = small;
    _cleanup_free_ char *big = NULL;
    ssize_t n = fd >= 0 ? flistxattr(fd, small, sizeof(small)) : llistxattr(lpath, small, sizeof(small));
    if (n < 0 && errno == ERANGE) {
        ssize_t want = fd >= 0 ? flistxattr(fd, NULL, 0) : llistxattr(lpath, NULL, 0);
        if (want < 0)
            return cairn__err(w->err, -errno, "%s: %s: list xattrs: %m", w->what, path);
        big = malloc((size_t)want + 1);
        if (!big)
            return cairn__err(w->err, -ENOMEM, "out of memory");
        list = big;
        n = fd >= 0 ? flistxattr(fd, big, (size_t)want) : llistxattr(lpath, big, (size_t)want);
    }
    if (n < 0) {
        if (errno == ENOTSUP)
            return 0;
        return cairn__err(w->err, -errno, "%s: %s: list xattrs: %m", w->what, path);
    }
    if (n == 0)
        return 0;
    const char *keep[256];
    size_t nk = 0;
    const char *pre = cairn__ovl_prefix();
    size_t prelen = strlen(pre);
    for (const char *p = list; p < list + n; p += strlen(p) + 1) {
        if (is_ovl_xattr(p)) {
            if (strncmp(p, pre, prelen) != 0)
                continue;
            const char *k = p + prelen;
            if (!strcmp(k, "opaque")) {
                char v[4];
                ssize_t m = fd >= 0 ? fgetxattr(fd, p, v, sizeof(v)) : lgetxattr(lpath, p, v, sizeof(v));
                if (m == 1 && v[0] == 'y' && opaque)
                    *opaque = true;
            } else if (!strcmp(k, "redirect") || !strcmp(k, "metacopy")) {
                return cairn__err(w->err, CAIRN_E_FORMAT,
                                  "%s: %s carries overlayfs '%s': the diff is not self-contained "
                                  "(mount with redirect_dir=off,metacopy=off)",
                                  w->what, path, k);
            } else if (w->flags & CAIRN__TAR_STRIP) {
                if ((fd >= 0 ? fremovexattr(fd, p) : lremovexattr(lpath, p)) < 0 &&
                    errno != ENODATA)
                    return cairn__err(w->err, -errno, "%s: %s: remove xattr %s: %m", w->what,
                                      path, p);
            }
            continue;
        }
        if (nk == CAIRN_ARRAY_SIZE(keep))
            return cairn__err(w->err, CAIRN_E_FORMAT, "%s: %s: more than %zu xattrs", w->what,
                              path, nk);
        keep[nk++] = p;
    }
    qsort(keep, nk, sizeof(keep[0]), cmp_names);
    for (size_t i = 0; i < nk; i++) {
        ssize_t m = fd >= 0 ? fgetxattr(fd, keep[i], NULL, 0) : lgetxattr(lpath, keep[i], NULL, 0);
        if (m < 0)
            return cairn__err(w->err, -errno, "%s: %s: xattr %s: %m", w->what, path, keep[i]);
        _cleanup_free_ char *v = malloc((size_t)m + 1);
        if (!v)
            return cairn__err(w->err, -ENOMEM, "out of memory");
        m = fd >= 0 ? fgetxattr(fd, keep[i], v, (size_t)m) : lgetxattr(lpath, keep[i], v, (size_t)m);
        if (m < 0)
            return cairn__err(w->err, -errno, "%s: %s: xattr %s: %m", w->what, path, keep[i]);
        archive_entry_xattr_add_entry(e, keep[i], v, (size_t)m);
    }
    return 0;
}

static int write_header(tar_walk *w, struct archive_entry *e, const char *path)
{
    /* ARCHIVE_WARN: written, but a name is not UTF-8 and went out as raw
     * bytes (PAX hdrcharset=BINARY), which is what the filesystem holds. */
    int rc = archive_write_header(w->a, e);
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
        if (w->sink_err)
            return cairn__err(w->err, w->sink_err, "%s: writing the tar: %m", w->what);
        return cairn__err(w->err, CAIRN_E_FORMAT, "%s: %s: tar header: %s", w->what, path,
                          archive_error_string(w->a));
    }
    return 0;
}

static int entry_told(tar_walk *w, struct archive_entry *e, const char *data, const char *path)
{
    int r = w->entry_fn(w->entry_ud, e, data);
    return r < 0 ? cairn__err(w->err, r, "%s: %s: %s", w->what, path, cairn_strerror(r)) : r;
}

static int write_marker(tar_walk *w, const char *path)
{
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return cairn__err(w->err, -ENOMEM, "out of memory");
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0);
    archive_entry_set_size(e, 0);
    archive_entry_set_mtime(e, 0, 0);
    int r = write_header(w, e, path);
    if (r == 0 && w->entry_fn)
        r = entry_told(w, e, NULL, path);
    archive_entry_free(e);
    return r;
}

static int write_data(tar_walk *w, int fd, const char *path, off_t size)
{
    off_t left = size;
    while (left > 0) {
        ssize_t n = read(fd, w->buf, w->bufsize);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return cairn__err(w->err, -errno, "%s: %s: read: %m", w->what, path);
        }
        if (n == 0)
            return cairn__err(w->err, CAIRN_E_CORRUPT, "%s: %s: shrank while being read",
                              w->what, path);
        if (n > left)
            n = (ssize_t)left; /* grew while being read: the header said `size` */
        if (w->data_hash)
            cairn__sha256_update(w->data_hash, w->buf, (size_t)n);
        if (archive_write_data(w->a, w->buf, (size_t)n) != n) {
            if (w->sink_err)
                return cairn__err(w->err, w->sink_err, "%s: writing the tar: %m", w->what);
            return cairn__err(w->err, CAIRN_E_FORMAT, "%s: %s: %s", w->what, path,
                              archive_error_string(w->a));
        }
        left -= n;
    }
    return 0;
}

/* The entry `path` of the tar (a file, directory, link or device), which
 * is `name` in directory dfd. */
static int emit_entry(tar_walk *w, int dfd, const char *name, const char *path)
{
    struct stat sb;
    if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        return cairn__err(w->err, -errno, "%s: %s: %m", w->what, path);
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return cairn__err(w->err, -ENOMEM, "out of memory");
    archive_entry_set_pathname(e, path);
    archive_entry_set_mode(e, sb.st_mode);
    archive_entry_set_uid(e, sb.st_uid);
    archive_entry_set_gid(e, sb.st_gid);
    archive_entry_set_mtime(e, sb.st_mtim.tv_sec, 0);
    int r = 0;
    _cleanup_close_ int fd = -1;
    if (S_ISREG(sb.st_mode)) {
        const char *first = NULL;
        if (sb.st_nlink > 1) {
            r = link_lookup(w, sb.st_dev, sb.st_ino, path, &first);
            if (r < 0) {
                archive_entry_free(e);
                return cairn__err(w->err, r, "out of memory");
            }
        }
        if (first) {
            archive_entry_set_hardlink(e, first);
            archive_entry_set_size(e, 0);
            r = write_header(w, e, path);
            if (r == 0 && w->entry_fn)
                r = entry_told(w, e, NULL, path);
            archive_entry_free(e);
            return r;
        }
        fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
            archive_entry_free(e);
            return cairn__err(w->err, -errno, "%s: %s: open: %m", w->what, path);
        }
        archive_entry_set_size(e, sb.st_size);
        w->size += (uint64_t)sb.st_size;
    } else if (S_ISDIR(sb.st_mode)) {
        fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            archive_entry_free(e);
            return cairn__err(w->err, -errno, "%s: %s: open: %m", w->what, path);
        }
        archive_entry_set_size(e, 0);
    } else if (S_ISLNK(sb.st_mode)) {
        char target[PATH_MAX + 1];
        ssize_t n = readlinkat(dfd, name, target, sizeof(target) - 1);
        if (n < 0) {
            archive_entry_free(e);
            return cairn__err(w->err, -errno, "%s: %s: readlink: %m", w->what, path);
        }
        target[n] = 0;
        archive_entry_set_symlink(e, target);
        archive_entry_set_size(e, 0);
    } else {
        archive_entry_set_rdev(e, sb.st_rdev);
        archive_entry_set_size(e, 0);
    }
    r = add_xattrs(w, e, fd, dfd, name, path, NULL);
    if (r == 0)
        r = write_header(w, e, path);
    if (r == 0 && S_ISREG(sb.st_mode) && w->entry_fn && !(w->data_hash = cairn__sha256_new()))
        r = cairn__err(w->err, -ENOMEM, "out of memory");
    if (r == 0 && S_ISREG(sb.st_mode))
        r = write_data(w, fd, path, sb.st_size);
    if (r == 0 && w->entry_fn) {
        char dg[CAIRN_DIGEST_LEN + 1];
        if (w->data_hash)
            cairn__sha256_final(w->data_hash, dg);
        r = entry_told(w, e, w->data_hash ? dg : NULL, path);
    }
    cairn__sha256_free(w->data_hash);
    w->data_hash = NULL;
    archive_entry_free(e);
    return r;
}

typedef struct collector {
    tar_walk *w;
    tar_ent *ents;
    size_t n, cap;
} collector;

static int add_ent(collector *c, char *name, int kind)
{
    if (!name)
        return cairn__err(c->w->err, -ENOMEM, "out of memory");
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 1024;
        tar_ent *ne = realloc(c->ents, nc * sizeof(*ne));
        if (!ne) {
            free(name);
            return cairn__err(c->w->err, -ENOMEM, "out of memory");
        }
        c->ents = ne;
        c->cap = nc;
    }
    c->ents[c->n].name = name;
    c->ents[c->n].kind = kind;
    c->n++;
    return 0;
}

static bool dir_opaque(int fd)
{
    char key[64], v[4];
    snprintf(key, sizeof(key), "%sopaque", cairn__ovl_prefix());
    ssize_t n = fgetxattr(fd, key, v, sizeof(v));
    return n == 1 && v[0] == 'y';
}

/* Every entry below directory dfd (whose path in the tar is `prefix`, ""
 * for the root). Takes dfd. */
static int collect(collector *c, int dfd, const char *prefix)
{
    tar_walk *w = c->w;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return cairn__err(w->err, -errno, "%s: %s: %m", w->what, *prefix ? prefix : ".");
    }
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        const char *name = de->d_name;
        if (!strcmp(name, ".") || !strcmp(name, ".."))
            continue;
        struct stat sb;
        if (fstatat(dirfd(d), name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            r = cairn__err(w->err, -errno, "%s: %s%s: %m", w->what, prefix, name);
            break;
        }
        if (S_ISSOCK(sb.st_mode))
            continue;
        char *ent = NULL;
        if (S_ISCHR(sb.st_mode) && sb.st_rdev == 0) {
            if (asprintf(&ent, "%s.wh.%s", prefix, name) < 0)
                ent = NULL;
            r = add_ent(c, ent, ENT_WHITEOUT);
            continue;
        }
        if (asprintf(&ent, "%s%s", prefix, name) < 0)
            ent = NULL;
        if (ent && strlen(ent) > PATH_MAX - 16) {
            /* The cause first: the path alone would fill the message. */
            r = cairn__err(w->err, -ENAMETOOLONG, "%s: a path of %zu bytes is too long: %.200s...",
                           w->what, strlen(ent), ent);
            free(ent);
            break;
        }
        r = add_ent(c, ent, ENT_FILE);
        if (r < 0 || !S_ISDIR(sb.st_mode))
            continue;
        int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            r = cairn__err(w->err, -errno, "%s: %s%s: %m", w->what, prefix, name);
            break;
        }
        char *p2 = NULL;
        if (asprintf(&p2, "%s%s/", prefix, name) < 0) {
            close(sub);
            r = cairn__err(w->err, -ENOMEM, "out of memory");
            break;
        }
        if (dir_opaque(sub)) {
            char *m = NULL;
            if (asprintf(&m, "%s.wh..wh..opq", p2) < 0)
                m = NULL;
            r = add_ent(c, m, ENT_OPAQUE);
        }
        if (r == 0)
            r = collect(c, sub, p2);
        else
            close(sub);
        free(p2);
    }
    closedir(d);
    return r;
}

/* All entries, sorted by name, written in order. Consecutive entries
 * mostly share their directory, which stays open between them. */
static int walk_all(tar_walk *w, int rootfd)
{
    collector c = {.w = w};
    int dfd = dup(rootfd);
    if (dfd < 0)
        return cairn__err(w->err, -errno, "%s: %m", w->what);
    int r = collect(&c, dfd, "");
    if (r == 0 && c.n)
        qsort(c.ents, c.n, sizeof(*c.ents), cmp_ents);
    _cleanup_free_ char *cur = NULL; /* the directory open in curfd */
    int curfd = -1;
    for (size_t i = 0; i < c.n && r == 0; i++) {
        tar_ent *t = &c.ents[i];
        if (t->kind != ENT_FILE) {
            r = write_marker(w, t->name);
            continue;
        }
        char *slash = strrchr(t->name, '/');
        size_t dlen = slash ? (size_t)(slash - t->name) : 0;
        if (!cur || strlen(cur) != dlen || strncmp(cur, t->name, dlen) != 0) {
            if (curfd >= 0)
                close(curfd);
            free(cur);
            cur = strndup(t->name, dlen);
            if (!cur) {
                curfd = -1;
                r = cairn__err(w->err, -ENOMEM, "out of memory");
                break;
            }
            if (dlen == 0) {
                curfd = dup(rootfd);
            } else {
                struct open_how how = {
                    .flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
                };
                curfd = (int)syscall(SYS_openat2, rootfd, cur, &how, sizeof(how));
            }
            if (curfd < 0) {
                r = cairn__err(w->err, -errno, "%s: %s: %m", w->what, cur);
                break;
            }
        }
        r = emit_entry(w, curfd, slash ? slash + 1 : t->name, t->name);
    }
    if (curfd >= 0)
        close(curfd);
    for (size_t i = 0; i < c.n; i++)
        free(c.ents[i].name);
    free(c.ents);
    return r;
}

int cairn__tar_diff(int dirfd, const char *what, unsigned flags, cairn__tar_sink_fn sink,
                    void *ud, uint64_t *out_size, cairn_error *err)
{
    return cairn__tar_diff_each(dirfd, what, flags, sink, ud, NULL, NULL, out_size, err);
}

int cairn__tar_diff_each(int dirfd, const char *what, unsigned flags, cairn__tar_sink_fn sink,
                         void *ud, cairn__tar_entry_fn fn, void *fn_ud, uint64_t *out_size,
                         cairn_error *err)
{
    tar_walk w = {.what = what, .flags = flags, .sink = sink, .ud = ud, .err = err,
                  .entry_fn = fn, .entry_ud = fn_ud};
    /* Names in the tar are bytes of the filesystem, written as UTF-8 PAX
     * records when not ASCII, whatever the caller's locale. */
    locale_t old_locale = cairn__utf8_locale_enter();
    w.bufsize = 1 << 20;
    w.buf = malloc(w.bufsize);
    w.a = archive_write_new();
    int r = 0;
    if (!w.buf || !w.a) {
        r = cairn__err(err, -ENOMEM, "out of memory");
        goto out;
    }
    if (archive_write_set_format_pax_restricted(w.a) != ARCHIVE_OK ||
        archive_write_set_format_option(w.a, "pax", "xattrheader", "SCHILY") != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(w.a, 0) != ARCHIVE_OK ||
        archive_write_open2(w.a, &w, NULL, tw_write, NULL, NULL) != ARCHIVE_OK) {
        r = cairn__err(err, CAIRN_E_FORMAT, "%s: tar writer: %s", what,
                       archive_error_string(w.a));
        goto out;
    }
    r = walk_all(&w, dirfd);
    if (r == 0 && archive_write_close(w.a) != ARCHIVE_OK) {
        if (w.sink_err)
            r = cairn__err(err, w.sink_err, "%s: writing the tar: %m", what);
        else
            r = cairn__err(err, CAIRN_E_FORMAT, "%s: tar writer: %s", what,
                           archive_error_string(w.a));
    }
    if (r == 0 && out_size)
        *out_size = w.size;
out:
    if (w.a)
        archive_write_free(w.a);
    for (size_t i = 0; i < w.caplinks; i++)
        free(w.links[i].path);
    free(w.links);
    free(w.buf);
    cairn__utf8_locale_leave(old_locale);
    return r;
}

static int sink_sha(void *ud, const void *buf, size_t len)
{
    cairn__sha256_update(ud, buf, len);
    return 0;
}

int cairn__tar_digest(int dirfd, const char *what, unsigned flags, char out[CAIRN_DIGEST_LEN + 1],
                      uint64_t *out_size, cairn_error *err)
{
    cairn__sha256 *h = cairn__sha256_new();
    if (!h)
        return cairn__err(err, -ENOMEM, "out of memory");
    int r = cairn__tar_diff(dirfd, what, flags, sink_sha, h, out_size, err);
    if (r == 0)
        cairn__sha256_final(h, out);
    cairn__sha256_free(h);
    return r;
}

void cairn__chain_id(const char *parent, const char *diff_id, char out[CAIRN_DIGEST_LEN + 1])
{
    if (!parent || !*parent) {
        memcpy(out, diff_id, CAIRN_DIGEST_LEN + 1);
        return;
    }
    char buf[2 * CAIRN_DIGEST_LEN + 2];
    int n = snprintf(buf, sizeof(buf), "%s %s", parent, diff_id);
    cairn__sha256_buf(buf, (size_t)n, out);
}
