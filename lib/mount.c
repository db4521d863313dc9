/* mount.c: overlayfs mounts of snapshots, and checkouts into plain
 * directories (cairn/snapshot.h).
 *
 * A mount stacks the parent chain as lowerdirs, nearest parent first, with
 * the active snapshot's fs/ as upperdir and work/ as workdir. A view or a
 * committed snapshot mounts read-only (lowerdirs only; overlayfs wants two
 * of them without an upper, so a view of one layer gets its own empty fs/
 * below it, and a single committed layer is bound read-only instead). The kernel limits the options string of mount(2) to a page, which
 * a chain of a few dozen layers exceeds; the new mount API (fsopen and
 * fsconfig "lowerdir+", one layer a call, kernel >= 6.8) has no such limit,
 * and mount(2) is the fallback for older kernels: past a page, with paths
 * relative to their common directory, as containerd does.
 *
 * A checkout merges the chain top down: in each directory the topmost layer
 * that names an entry wins, a whiteout hides the name below, an opaque
 * directory hides everything below it. Files are hardlinked from the
 * snapshots when allowed, else copied; directories are created with the
 * topmost layer's metadata, their times set after their contents.
 */
#include "snapshot-private.h"

#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include <jansson.h>

typedef struct chain {
    char **dirs; /* absolute paths, nearest first */
    size_t n;
} chain;

static void chain_free(chain *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->dirs[i]);
    free(c->dirs);
    c->dirs = NULL;
    c->n = 0;
}

typedef struct chain_ctx {
    cairn_state *st;
    chain *c;
    cairn_error *err;
} chain_ctx;

static int chain_cb(void *ud, const cairn_snapshot_info *info)
{
    chain_ctx *x = ud;
    char **nd = realloc(x->c->dirs, (x->c->n + 1) * sizeof(char *));
    if (!nd)
        return cairn__err(x->err, -ENOMEM, "out of memory");
    x->c->dirs = nd;
    nd[x->c->n] = cairn__snapshot_path(x->st, (size_t)info->lower, info->chain_id);
    if (!nd[x->c->n])
        return cairn__err(x->err, -ENOMEM, "out of memory");
    x->c->n++;
    return 0;
}

static int chain_get(cairn_state *st, const char *chain_id, chain *out, cairn_error *err)
{
    chain_ctx x = {st, out, err};
    int r = cairn_snapshot_walk(st, chain_id, chain_cb, &x, err);
    if (r < 0)
        chain_free(out);
    return r;
}

/* What `name` mounts as: the chain of lowers, and for an active snapshot its
 * upper and work directories. */
typedef struct mount_plan {
    chain lowers;
    char *upper, *work;
    char *empty; /* an empty lower for a single-layer read-only mount */
    bool readonly;
    bool bind_ro;
} mount_plan;

static void plan_free(mount_plan *p)
{
    chain_free(&p->lowers);
    free(p->upper);
    free(p->work);
    free(p->empty);
}

static int plan_get(cairn_state *st, const char *name, mount_plan *p, cairn_error *err)
{
    memset(p, 0, sizeof(*p));
    if (!name || !*name)
        return cairn__err(err, -EINVAL, "no snapshot given");
    const char *parent = NULL;
    cairn_active_info a;
    bool active = false;
    if (strncmp(name, "sha256:", 7) != 0) {
        int r = cairn_snapshot_active_stat(st, name, &a, err);
        if (r < 0)
            return r;
        active = true;
        parent = a.parent[0] ? a.parent : NULL;
        p->readonly = a.view;
    } else {
        parent = name;
        p->readonly = true;
    }
    if (parent) {
        int r = chain_get(st, parent, &p->lowers, err);
        if (r < 0)
            return r;
        cairn__usage_touch(st, parent);
    }
    if (active && !p->readonly) {
        if (asprintf(&p->upper, "%s/active/%s/fs", st->path, name) < 0 ||
            asprintf(&p->work, "%s/active/%s/work", st->path, name) < 0) {
            plan_free(p);
            return cairn__err(err, -ENOMEM, "out of memory");
        }
    } else if (p->lowers.n == 1 && active) {
        /* A view's own fs/ stays empty: the second lower overlayfs wants. */
        if (asprintf(&p->empty, "%s/active/%s/fs", st->path, name) < 0) {
            plan_free(p);
            return cairn__err(err, -ENOMEM, "out of memory");
        }
    } else if (p->lowers.n == 1) {
        p->bind_ro = true; /* one committed layer: bound read-only */
    }
    return 0;
}

static char *lowerdir_opt(const mount_plan *p)
{
    size_t len = 16;
    for (size_t i = 0; i < p->lowers.n; i++)
        len += strlen(p->lowers.dirs[i]) + 1;
    if (p->empty)
        len += strlen(p->empty) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    char *o = stpcpy(s, "lowerdir=");
    for (size_t i = 0; i < p->lowers.n; i++) {
        if (i)
            *o++ = ':';
        o = stpcpy(o, p->lowers.dirs[i]);
    }
    if (p->empty) {
        *o++ = ':';
        o = stpcpy(o, p->empty);
    }
    return s;
}

void cairn_mount_free(cairn_mount *m)
{
    if (!m)
        return;
    free(m->type);
    free(m->source);
    for (size_t i = 0; i < m->n_options; i++)
        free(m->options[i]);
    free(m->options);
    free(m);
}

int cairn_snapshot_mounts(cairn_state *st, const char *name, cairn_mount **out, cairn_error *err)
{
    mount_plan p;
    int r = plan_get(st, name, &p, err);
    if (r < 0)
        return r;
    cairn_mount *m = calloc(1, sizeof(*m));
    if (!m) {
        plan_free(&p);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    m->options = calloc(8, sizeof(char *));
    bool ok = m->options != NULL;
    if (ok && (p.lowers.n == 0 || p.bind_ro)) {
        /* Over nothing: the diff itself, bound. */
        m->type = strdup("bind");
        m->source = strdup(p.bind_ro ? p.lowers.dirs[0] : p.upper);
        m->options[m->n_options++] = strdup("rbind");
        m->options[m->n_options++] = strdup(p.bind_ro ? "ro" : "rw");
    } else if (ok) {
        m->type = strdup("overlay");
        m->source = strdup("overlay");
        if (p.readonly)
            m->options[m->n_options++] = strdup("ro");
        m->options[m->n_options++] = lowerdir_opt(&p);
        if (p.upper) {
            char *u = NULL, *w = NULL;
            if (asprintf(&u, "upperdir=%s", p.upper) < 0)
                u = NULL;
            if (asprintf(&w, "workdir=%s", p.work) < 0)
                w = NULL;
            m->options[m->n_options++] = u;
            m->options[m->n_options++] = w;
        }
        if (geteuid() != 0)
            m->options[m->n_options++] = strdup("userxattr");
    }
    for (size_t i = 0; ok && i < m->n_options; i++)
        ok = m->options[i] != NULL;
    ok = ok && m->type && m->source;
    plan_free(&p);
    if (!ok) {
        cairn_mount_free(m);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    *out = m;
    return 0;
}

char *cairn_mount_json(const cairn_mount *m)
{
    json_t *o = json_object();
    json_t *opts = json_array();
    if (!o || !opts) {
        json_decref(o);
        json_decref(opts);
        return NULL;
    }
    json_object_set_new(o, "type", json_string(m->type));
    json_object_set_new(o, "source", json_string(m->source));
    for (size_t i = 0; i < m->n_options; i++)
        json_array_append_new(opts, json_string(m->options[i]));
    json_object_set_new(o, "options", opts);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* The new mount API: no limit on the number of layers. -ENOSYS/-EINVAL
 * when the kernel lacks it or "lowerdir+" (before 6.8). */
static int mount_fsconfig(const mount_plan *p, const char *target, char *why, size_t whysize)
{
    int fs = fsopen("overlay", FSOPEN_CLOEXEC);
    if (fs < 0)
        return -errno;
    int r = 0;
    for (size_t i = 0; i < p->lowers.n && r == 0; i++)
        if (fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", p->lowers.dirs[i], 0) < 0)
            r = -errno;
    if (r == 0 && p->empty && fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", p->empty, 0) < 0)
        r = -errno;
    if (r == 0 && p->upper &&
        (fsconfig(fs, FSCONFIG_SET_STRING, "upperdir", p->upper, 0) < 0 ||
         fsconfig(fs, FSCONFIG_SET_STRING, "workdir", p->work, 0) < 0))
        r = -errno;
    if (r == 0 && geteuid() != 0 && fsconfig(fs, FSCONFIG_SET_FLAG, "userxattr", NULL, 0) < 0)
        r = -errno;
    if (r == 0 && fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        r = -errno;
    if (r < 0) {
        /* The kernel explains itself through the fs context's log. */
        char msg[256];
        ssize_t n;
        while ((n = read(fs, msg, sizeof(msg) - 1)) > 0) {
            msg[n] = 0;
            snprintf(why, whysize, "%s", msg);
        }
        close(fs);
        return r;
    }
    int mnt = fsmount(fs, FSMOUNT_CLOEXEC, p->readonly ? MOUNT_ATTR_RDONLY : 0);
    close(fs);
    if (mnt < 0)
        return -errno;
    r = move_mount(mnt, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0 ? -errno : 0;
    close(mnt);
    return r;
}

/* The options string for mount(2), each path without `strip` bytes of
 * prefix. */
static char *legacy_opts(const mount_plan *p, size_t strip)
{
    size_t len = 64 + (p->upper ? strlen(p->upper) + strlen(p->work) : 0) +
                 (p->empty ? strlen(p->empty) + 1 : 0);
    for (size_t i = 0; i < p->lowers.n; i++)
        len += strlen(p->lowers.dirs[i]) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    char *o = stpcpy(s, "lowerdir=");
    for (size_t i = 0; i < p->lowers.n; i++)
        o = stpcpy(stpcpy(o, i ? ":" : ""), p->lowers.dirs[i] + strip);
    if (p->empty)
        o = stpcpy(stpcpy(o, ":"), p->empty + strip);
    if (p->upper) {
        o = stpcpy(stpcpy(o, ",upperdir="), p->upper + strip);
        o = stpcpy(stpcpy(o, ",workdir="), p->work + strip);
    }
    if (geteuid() != 0)
        stpcpy(o, ",userxattr");
    return s;
}

/* mount(2) with one options string, which the kernel limits to a page.
 * Past it, the paths are given relative to their longest common directory,
 * from a child process that changes into it (as containerd does): that
 * fits about twice as many layers. -E2BIG when even that does not fit. */
static int mount_legacy(const mount_plan *p, const char *target, cairn_error *err)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned long flags = p->readonly ? MS_RDONLY : 0;
    _cleanup_free_ char *opts = legacy_opts(p, 0);
    if (!opts)
        return cairn__err(err, -ENOMEM, "out of memory");
    if (strlen(opts) < page)
        return mount("overlay", target, "overlay", flags, opts) < 0 ? -errno : 0;
    /* The longest common directory of every path. */
    const char *first = p->lowers.dirs[0];
    size_t common = strlen(first);
    const char *all[3] = {p->empty, p->upper, p->work};
    for (size_t i = 0; i < p->lowers.n + 3; i++) {
        const char *q = i < p->lowers.n ? p->lowers.dirs[i] : all[i - p->lowers.n];
        if (!q)
            continue;
        size_t k = 0;
        while (k < common && q[k] == first[k])
            k++;
        common = k;
    }
    while (common > 0 && first[common - 1] != '/')
        common--;
    if (common <= 1)
        return -E2BIG;
    free(opts);
    opts = legacy_opts(p, common);
    if (!opts)
        return cairn__err(err, -ENOMEM, "out of memory");
    if (strlen(opts) >= page)
        return -E2BIG;
    _cleanup_free_ char *dir = strndup(first, common);
    _cleanup_free_ char *abs_target = realpath(target, NULL);
    if (!dir)
        return cairn__err(err, -ENOMEM, "out of memory");
    if (!abs_target)
        return cairn__err(err, -errno, "%s: %m", target);
    pid_t pid = fork();
    if (pid < 0)
        return cairn__err(err, -errno, "fork: %m");
    if (pid == 0) {
        if (chdir(dir) < 0)
            _exit(errno & 0xff);
        _exit(mount("overlay", abs_target, "overlay", flags, opts) < 0 ? errno & 0xff : 0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return cairn__err(err, -errno, "waitpid: %m");
    if (!WIFEXITED(status))
        return cairn__err(err, -EIO, "the mount helper process died");
    return -WEXITSTATUS(status);
}

static int snapshot_mount(cairn_state *st, const char *name, const char *target, bool legacy,
                          cairn_error *err)
{
    mount_plan p;
    int r = plan_get(st, name, &p, err);
    if (r < 0)
        return r;
    if (p.lowers.n == 0 || p.bind_ro) {
        const char *src = p.bind_ro ? p.lowers.dirs[0] : p.upper;
        r = mount(src, target, NULL, MS_BIND | MS_REC, NULL) < 0 ? -errno : 0;
        if (r == 0 && p.bind_ro &&
            mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0) {
            r = -errno;
            umount2(target, MNT_DETACH);
        }
        plan_free(&p);
        if (r < 0)
            return cairn__err(err, r, "mount %s on %s: %m", name, target);
        return 0;
    }
    char why[256] = "";
    r = legacy ? -ENOSYS : mount_fsconfig(&p, target, why, sizeof(why));
    if (r == -ENOSYS || (r == -EINVAL && strstr(why, "lowerdir+"))) {
        why[0] = 0;
        r = mount_legacy(&p, target, err);
        if (r == -E2BIG) {
            plan_free(&p);
            return cairn__err(err, r,
                              "mount %s: %zu layers do not fit a mount options page and this "
                              "kernel lacks overlayfs' lowerdir+ (Linux >= 6.8)",
                              name, p.lowers.n);
        }
        if (r < 0 && err && err->code == r && err->message[0]) {
            plan_free(&p);
            return cairn__err_prefix(err, r, "mount %s on %s", name, target);
        }
    }
    plan_free(&p);
    if (r < 0)
        return cairn__err(err, r, "mount %s on %s: %m%s%s", name, target, why[0] ? ": " : "", why);
    return 0;
}

int cairn_snapshot_mount(cairn_state *st, const char *name, const char *target, cairn_error *err)
{
    return snapshot_mount(st, name, target, false, err);
}

int cairn__snapshot_mount_legacy(cairn_state *st, const char *name, const char *target,
                                 cairn_error *err)
{
    return snapshot_mount(st, name, target, true, err);
}

int cairn_umount(const char *target, cairn_error *err)
{
    if (umount2(target, UMOUNT_NOFOLLOW) < 0)
        return cairn__err(err, -errno, "umount %s: %m", target);
    return 0;
}

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
                              path, n < 0 ? strerror(errno) : "shrank while copied");
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
                        if (k > l && (fstatat(fds[k], name, &kb, AT_SYMLINK_NOFOLLOW) < 0 ||
                                      !S_ISDIR(kb.st_mode)))
                            break; /* missing, a whiteout or a file: nothing below shows */
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
    chain c = {0};
    int r = chain_get(st, chain_id, &c, err);
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
        fds[n] = open(c.dirs[n], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fds[n] < 0) {
            r = cairn__err(err, CAIRN_E_CORRUPT, "checkout: %s: %s", c.dirs[n], strerror(errno));
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
    chain_free(&c);
    return r < 0 ? r : co.copied;
}
