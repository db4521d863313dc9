/* checkout.c: a committed snapshot or a chain made a plain directory
 * (cairn_snapshot_checkout in cairn/snapshot.h).
 *
 * A checkout merges the chain top down, as overlayfs does: in each directory
 * the topmost layer that names an entry wins. Only a whiteout, an opaque
 * directory or a non-directory hides what is below it; a layer with no
 * entry for a directory leaves it to the layers below (a layer only names
 * the paths it changed). Files are hardlinked from the
 * snapshots when allowed, else copied; directories are created with the
 * topmost layer's metadata, their times set after their contents.
 */
#include "snapshot/snapshot-private.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/xattr.h>

/* ---- checkout --------------------------------------------------------- */

typedef struct checkout {
    cairn_state *st;
    unsigned flags;
    cairn_error *err;
    int copied;
    char *buf;
    /* copied files with several links: (layer dev, ino) -> path in target */
    struct {
        dev_t dev;
        ino_t ino;
        char *path;
    } *links;
    size_t nlinks, caplinks;
    int target;
} checkout;

static bool is_whiteout(const struct stat *sb)
{
    return S_ISCHR(sb->st_mode) && sb->st_rdev == 0;
}

static bool is_opaque(int fd)
{
    char key[64], v[4];
    snprintf(key, sizeof(key), "%sopaque", cairn__ovl_prefix());
    ssize_t n = fgetxattr(fd, key, v, sizeof(v));
    return n == 1 && v[0] == 'y';
}

/* Copy xattrs but overlayfs' own from fd `in` (or path `lin`) to `out`/`lout`. */
static int copy_xattrs(checkout *co, int in, const char *lin, int out, const char *lout,
                       const char *path)
{
    char list[4096];
    ssize_t n = in >= 0 ? flistxattr(in, list, sizeof(list)) : llistxattr(lin, list, sizeof(list));
    if (n < 0)
        return errno == ENOTSUP ? 0 : cairn__err(co->err, -errno, "checkout %s: xattrs: %m", path);
    for (const char *k = list; k < list + n; k += strlen(k) + 1) {
        if (!strncmp(k, "trusted.overlay.", 16) || !strncmp(k, "user.overlay.", 13))
            continue;
        char v[65536];
        ssize_t m = in >= 0 ? fgetxattr(in, k, v, sizeof(v)) : lgetxattr(lin, k, v, sizeof(v));
        if (m < 0)
            return cairn__err(co->err, -errno, "checkout %s: xattr %s: %m", path, k);
        if ((out >= 0 ? fsetxattr(out, k, v, (size_t)m, 0) : lsetxattr(lout, k, v, (size_t)m, 0)) <
                0 &&
            !(errno == EPERM && geteuid() != 0))
            return cairn__err(co->err, -errno, "checkout %s: xattr %s: %m", path, k);
    }
    return 0;
}

static int copy_meta_at(checkout *co, int sdfd, const char *name, const struct stat *sb, int ddfd,
                        const char *path)
{
    char lin[PATH_MAX], lout[PATH_MAX];
    snprintf(lin, sizeof(lin), "/proc/self/fd/%d/%s", sdfd, name);
    snprintf(lout, sizeof(lout), "/proc/self/fd/%d/%s", ddfd, name);
    /* chown first: it drops security.capability and the setuid bits. */
    if (geteuid() == 0 && fchownat(ddfd, name, sb->st_uid, sb->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
        return cairn__err(co->err, -errno, "checkout %s: chown: %m", path);
    if (!S_ISLNK(sb->st_mode)) {
        int r = copy_xattrs(co, -1, lin, -1, lout, path);
        if (r < 0)
            return r;
    }
    if (!S_ISLNK(sb->st_mode) && fchmodat(ddfd, name, sb->st_mode & 07777, 0) < 0)
        return cairn__err(co->err, -errno, "checkout %s: chmod: %m", path);
    struct timespec t[2] = {sb->st_atim, sb->st_mtim};
    if (utimensat(ddfd, name, t, AT_SYMLINK_NOFOLLOW) < 0)
        return cairn__err(co->err, -errno, "checkout %s: times: %m", path);
    return 0;
}

static int copy_file(checkout *co, int sdfd, const char *name, const struct stat *sb, int ddfd,
                     const char *path)
{
    /* A file with several links in its snapshot keeps them in the copy. */
    if (sb->st_nlink > 1) {
        for (size_t i = 0; i < co->nlinks; i++)
            if (co->links[i].dev == sb->st_dev && co->links[i].ino == sb->st_ino) {
                if (linkat(co->target, co->links[i].path, ddfd, name, 0) == 0)
                    return 0;
                break;
            }
    }
    _cleanup_close_ int in = openat(sdfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return cairn__err(co->err, -errno, "checkout %s: open: %m", path);
    _cleanup_close_ int out =
        openat(ddfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0)
        return cairn__err(co->err, -errno, "checkout %s: create: %m", path);
    off_t left = sb->st_size;
    while (left > 0) {
        ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            break;
        }
        left -= n;
    }
    while (left > 0) {
        ssize_t n = read(in, co->buf, 1 << 20);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            return cairn__err(co->err, n < 0 ? -errno : CAIRN_E_CORRUPT, "checkout %s: read: %s",
                              path, n < 0 ? cairn_strerror(-errno) : "shrank while copied");
        }
        int r = cairn__write_all(out, co->buf, (size_t)n);
        if (r < 0)
            return cairn__err(co->err, r, "checkout %s: write: %m", path);
        left -= n;
    }
    co->copied++;
    if (sb->st_nlink > 1) {
        if (co->nlinks == co->caplinks) {
            size_t nc = co->caplinks ? co->caplinks * 2 : 64;
            void *nl = realloc(co->links, nc * sizeof(*co->links));
            if (!nl)
                return cairn__err(co->err, -ENOMEM, "out of memory");
            co->links = nl;
            co->caplinks = nc;
        }
        co->links[co->nlinks].dev = sb->st_dev;
        co->links[co->nlinks].ino = sb->st_ino;
        co->links[co->nlinks].path = strdup(path);
        if (!co->links[co->nlinks].path)
            return cairn__err(co->err, -ENOMEM, "out of memory");
        co->nlinks++;
    }
    return copy_meta_at(co, sdfd, name, sb, ddfd, path);
}

/* Merge directory `path` of layers fds[0..n) (topmost first) into ddfd. */
static int merge_dir(checkout *co, int *fds, size_t n, int ddfd, char *path, size_t plen)
{
    cairn__strset *seen = cairn__strset_new();
    if (!seen)
        return cairn__err(co->err, -ENOMEM, "out of memory");
    int r = 0;
    for (size_t l = 0; l < n && r == 0; l++) {
        int d2 = dup(fds[l]);
        DIR *d = d2 >= 0 ? fdopendir(d2) : NULL;
        if (!d) {
            if (d2 >= 0)
                close(d2);
            r = cairn__err(co->err, -errno, "checkout %s: %m", plen ? path : "/");
            break;
        }
        rewinddir(d);
        struct dirent *de;
        while (r == 0 && (de = readdir(d))) {
            const char *name = de->d_name;
            if (!strcmp(name, ".") || !strcmp(name, ".."))
                continue;
            int added = cairn__strset_add(seen, name);
            if (added < 0) {
                r = cairn__err(co->err, -ENOMEM, "out of memory");
                break;
            }
            if (added == 0)
                continue; /* an upper layer decided */
            size_t nlen = strlen(name);
            if (plen + nlen + 2 > PATH_MAX) {
                r = cairn__err(co->err, -ENAMETOOLONG, "checkout: path too long");
                break;
            }
            path[plen] = '/';
            memcpy(path + plen + 1, name, nlen + 1);
            struct stat sb;
            if (fstatat(fds[l], name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
                r = cairn__err(co->err, -errno, "checkout %s: %m", path);
            } else if (is_whiteout(&sb)) {
                /* hidden */
            } else if (S_ISDIR(sb.st_mode)) {
                int *sub = calloc(n - l, sizeof(int));
                size_t m = 0;
                if (!sub) {
                    r = cairn__err(co->err, -ENOMEM, "out of memory");
                } else {
                    for (size_t k = l; k < n; k++) {
                        struct stat kb;
                        if (k > l && fstatat(fds[k], name, &kb, AT_SYMLINK_NOFOLLOW) < 0) {
                            if (errno == ENOENT)
                                continue; /* this layer did not touch it: look further down */
                            r = cairn__err(co->err, -errno, "checkout %s: %m", path);
                            break;
                        }
                        if (k > l && !S_ISDIR(kb.st_mode))
                            break; /* a whiteout or a non-directory: nothing below shows */
                        int fd = openat(fds[k], name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (fd < 0) {
                            r = cairn__err(co->err, -errno, "checkout %s: %m", path);
                            break;
                        }
                        sub[m++] = fd;
                        if (is_opaque(fd))
                            break;
                    }
                    if (r == 0 && mkdirat(ddfd, name, 0700) < 0)
                        r = cairn__err(co->err, -errno, "checkout %s: mkdir: %m", path);
                    int nd = r == 0 ? openat(ddfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
                    if (r == 0 && nd < 0)
                        r = cairn__err(co->err, -errno, "checkout %s: %m", path);
                    if (r == 0)
                        r = merge_dir(co, sub, m, nd, path, plen + 1 + nlen);
                    if (nd >= 0)
                        close(nd);
                    if (r == 0)
                        r = copy_meta_at(co, fds[l], name, &sb, ddfd, path);
                    for (size_t k = 0; k < m; k++)
                        close(sub[k]);
                    free(sub);
                }
            } else if (S_ISREG(sb.st_mode)) {
                bool linked = false;
                if (!(co->flags & CAIRN_CHECKOUT_COPY)) {
                    if (linkat(fds[l], name, ddfd, name, 0) == 0)
                        linked = true;
                    else if (!(errno == EXDEV || errno == EMLINK || errno == EPERM ||
                               errno == EACCES))
                        r = cairn__err(co->err, -errno, "checkout %s: link: %m", path);
                }
                if (r == 0 && !linked)
                    r = copy_file(co, fds[l], name, &sb, ddfd, path + 1);
            } else if (S_ISLNK(sb.st_mode)) {
                char t[PATH_MAX + 1];
                ssize_t k = readlinkat(fds[l], name, t, sizeof(t) - 1);
                if (k < 0)
                    r = cairn__err(co->err, -errno, "checkout %s: readlink: %m", path);
                else {
                    t[k] = 0;
                    if (symlinkat(t, ddfd, name) < 0)
                        r = cairn__err(co->err, -errno, "checkout %s: symlink: %m", path);
                    else
                        r = copy_meta_at(co, fds[l], name, &sb, ddfd, path);
                }
            } else if (!S_ISSOCK(sb.st_mode)) {
                if (mknodat(ddfd, name, (sb.st_mode & S_IFMT) | 0600, sb.st_rdev) < 0)
                    r = cairn__err(co->err, -errno, "checkout %s: mknod: %m", path);
                else
                    r = copy_meta_at(co, fds[l], name, &sb, ddfd, path);
            }
            path[plen] = 0;
        }
        closedir(d);
        if (r == 0 && is_opaque(fds[l]))
            break; /* nothing below an opaque directory shows */
    }
    cairn__strset_free(seen);
    return r;
}

int cairn_snapshot_checkout(cairn_state *st, const char *chain_id, const char *target,
                            unsigned flags, cairn_error *err)
{
    cairn__chain c = {0};
    int r = cairn__chain_get(st, chain_id, &c, err);
    if (r < 0)
        return r;
    checkout co = {.st = st, .flags = flags, .err = err, .target = -1};
    int *fds = calloc(c.n, sizeof(int));
    co.buf = malloc(1 << 20);
    if (!fds || !co.buf) {
        r = cairn__err(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < c.n; i++)
        fds[i] = -1;
    if (mkdir(target, 0755) < 0 && errno != EEXIST) {
        r = cairn__err(err, -errno, "checkout: %s: %m", target);
        goto out;
    }
    co.target = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (co.target < 0) {
        r = cairn__err(err, -errno, "checkout: %s: %m", target);
        goto out;
    }
    {
        int d2 = dup(co.target);
        DIR *d = d2 >= 0 ? fdopendir(d2) : NULL;
        bool empty = true;
        struct dirent *de;
        while (d && (de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                empty = false;
        if (d)
            closedir(d);
        if (!empty) {
            r = cairn__err(err, -ENOTEMPTY, "checkout: %s is not empty", target);
            goto out;
        }
    }
    size_t n = 0;
    for (; n < c.n; n++) {
        fds[n] = open(c.dirs[n], O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fds[n] < 0) {
            r = cairn__err(err, CAIRN_E_CORRUPT, "checkout: %s: %s", c.dirs[n], cairn_strerror(-errno));
            goto out;
        }
        if (is_opaque(fds[n])) {
            n++;
            break;
        }
    }
    char path[PATH_MAX + 2] = "";
    r = merge_dir(&co, fds, n, co.target, path, 0);
    if (r == 0)
        cairn__usage_touch(st, chain_id);
out:
    for (size_t i = 0; fds && i < c.n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    for (size_t i = 0; i < co.nlinks; i++)
        free(co.links[i].path);
    free(co.links);
    free(co.buf);
    if (co.target >= 0)
        close(co.target);
    cairn__chain_free(&c);
    return r < 0 ? r : co.copied;
}
