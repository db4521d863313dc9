/* mount.c: overlayfs mounts of snapshots (cairn/snapshot.h); checkout.c
 * makes plain directories of them.
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
 */
#include "snapshot/snapshot-private.h"

#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include <jansson.h>

/* What `name` mounts as: the chain of lowers, and for an active snapshot its
 * upper and work directories. */
typedef struct mount_plan {
    cairn__chain lowers;
    char *upper, *work;
    char *empty; /* an empty lower for a single-layer read-only mount */
    bool readonly;
    bool bind_ro;
} mount_plan;

static void plan_free(mount_plan *p)
{
    cairn__chain_free(&p->lowers);
    free(p->upper);
    free(p->work);
    free(p->empty);
}

/* active/<id>/fs (and work/ when written) become the upper and work
 * directories overlayfs writes through by path: each step must be a
 * directory of the state, not a symlink out of it. */
static int active_dirs_check(cairn_state *st, const char *id, bool work, cairn_error *err)
{
    const char *const subs[] = {"fs", "work"};
    for (size_t i = 0; i < (work ? 2u : 1u); i++) {
        char rel[512];
        if ((size_t)snprintf(rel, sizeof(rel), "active/%s/%s", id, subs[i]) >= sizeof(rel))
            return cairn__err(err, -ENAMETOOLONG, "active snapshot %s: name too long", id);
        int fd = cairn__open_beneath(st->dirfd, rel, O_RDONLY | O_DIRECTORY, 0);
        if (fd == -ELOOP || fd == -EXDEV)
            return cairn__err(err, CAIRN_E_UNSAFE,
                              "active snapshot %s: %s/%s goes through a symlink; its "
                              "directories must be the state's own",
                              id, st->path, rel);
        if (fd < 0)
            return cairn__err(err, fd, "active snapshot %s: %s/%s: %m", id, st->path, rel);
        close(fd);
    }
    return 0;
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
        int r = cairn__chain_get(st, parent, &p->lowers, err);
        if (r < 0)
            return r;
        cairn__usage_touch(st, parent);
    }
    if (active) {
        int r = active_dirs_check(st, name, !p->readonly, err);
        if (r < 0) {
            plan_free(p);
            return r;
        }
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

int cairn_snapshot_umount(const char *target, cairn_error *err)
{
    if (umount2(target, UMOUNT_NOFOLLOW) < 0)
        return cairn__err(err, -errno, "umount %s: %m", target);
    return 0;
}
