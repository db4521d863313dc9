/* stack.c: the lowers of a stack (cairn_stack_* in cairn/merge.h).
 *
 * A stack is a state whose `lowers` file lists frozen states to read
 * through, one "<state-id> <absolute path>" a line, topmost first (state.c
 * reads it at open). This file edits that list:
 *   add     checks each new lower (a frozen state, not the stack itself nor
 *           stacked on it), then rewrites the file atomically;
 *   add_new the lowers of a state just made (the pool's provisions): each
 *           checked frozen by its identity file alone, no database opened
 *           (nothing can be stacked on a state that new);
 *   remove  edits the file without opening any lower, so a lower that has
 *           vanished or been replaced can always be taken out;
 *   list    reports each lower with its status, never failing on a bad one.
 * Writes go to the top only; nothing here touches a lower.
 */
#include "combine/combine.h"

#include <sys/stat.h>

#define LOWERS_MAX (1 << 20)

typedef struct lower_line {
    char id[CAIRN_STATE_ID_LEN + 1];
    char *path;
} lower_line;

typedef struct lowers_list {
    lower_line *v;
    size_t n;
} lowers_list;

static void list_free(lowers_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].path);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int list_push(lowers_list *l, const char *id, const char *path)
{
    lower_line *nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    l->v = nv;
    memcpy(nv[l->n].id, id, CAIRN_STATE_ID_LEN + 1);
    nv[l->n].path = strdup(path);
    if (!nv[l->n].path)
        return -ENOMEM;
    l->n++;
    return 0;
}

static int push_cb(void *ud, const char *id, const char *path)
{
    return list_push(ud, id, path);
}

static int list_read(int dirfd, const char *dir, lowers_list *out, cairn_error *err)
{
    _cleanup_free_ char *buf = NULL;
    int r = cairn__read_file_at(dirfd, "lowers", LOWERS_MAX, &buf, NULL);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return cairn__err(err, r, "%s/lowers: %m", dir);
    r = cairn__lowers_parse(buf, dir, push_cb, out, err);
    if (r == -ENOMEM)
        return cairn__err(err, r, "out of memory");
    return r;
}

static int list_write(int dirfd, const char *dir, const lowers_list *l, cairn_error *err)
{
    if (l->n == 0) {
        if (unlinkat(dirfd, "lowers", 0) < 0 && errno != ENOENT)
            return cairn__err(err, -errno, "%s/lowers: remove: %m", dir);
        cairn__fsync_at(dirfd, NULL);
        return 0;
    }
    size_t cap = 64;
    for (size_t i = 0; i < l->n; i++)
        cap += strlen(l->v[i].path) + CAIRN_STATE_ID_LEN + 2;
    _cleanup_free_ char *buf = malloc(cap);
    if (!buf)
        return cairn__err(err, -ENOMEM, "out of memory");
    char *o = buf;
    for (size_t i = 0; i < l->n; i++)
        o += sprintf(o, "%s %s\n", l->v[i].id, l->v[i].path);
    int r = cairn__write_file_atomic(dirfd, "lowers", buf, (size_t)(o - buf), 0644);
    if (r < 0)
        return cairn__err(err, r, "%s/lowers: write: %m", dir);
    return 0;
}

/* The stack's directory and identity, without opening any lower. */
static int open_top(const char *dir, int *out_fd, char id[CAIRN_STATE_ID_LEN + 1], bool *frozen,
                    cairn_error *err)
{
    if (!dir || !*dir)
        return cairn__err(err, -EINVAL, "no state directory given");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return cairn__err(err, errno == ENOENT ? CAIRN_E_NOTSTATE : -errno, "%s: %s", dir,
                          cairn_strerror(-errno));
    int r = cairn__identity_get(fd, dir, id, frozen, err);
    if (r < 0) {
        close(fd);
        return r;
    }
    *out_fd = fd;
    return 0;
}

int cairn_stack_add(const char *dir, const char *const *lowers, size_t n, cairn_error *err)
{
    _cleanup_close_ int fd = -1;
    char top[CAIRN_STATE_ID_LEN + 1];
    bool frozen = false;
    int r = open_top(dir, &fd, top, &frozen, err);
    if (r < 0)
        return r;
    if (frozen)
        return cairn__err(err, CAIRN_E_FROZEN,
                          "%s: the state is frozen; stack a new state over it instead", dir);
    lowers_list l = {0};
    r = list_read(fd, dir, &l, err);
    for (size_t i = 0; i < n && r == 0; i++) {
        cairn_state *lo = NULL;
        r = cairn_state_open(&lo, lowers[i], CAIRN_OPEN_READONLY, err);
        if (r < 0) {
            r = cairn__err_prefix(err, r, "lower %s", lowers[i]);
            break;
        }
        if (!lo->frozen) {
            r = cairn__err(err, CAIRN_E_LOWER,
                           "lower %s (id %s) is not frozen; only frozen states can be lowers "
                           "(make one with 'cairn freeze')",
                           lo->path, lo->id);
        }
        for (size_t k = 0; r == 0 && k < lo->n_layers; k++)
            if (!strcmp(lo->layers[k].id, top))
                r = cairn__err(err, -ELOOP, "lower %s: it is %s itself or stacked on it",
                               lo->path, dir);
        bool listed = false;
        for (size_t k = 0; r == 0 && k < l.n; k++)
            if (!strcmp(l.v[k].id, lo->id))
                listed = true;
        if (r == 0 && !listed && list_push(&l, lo->id, lo->path) < 0)
            r = cairn__err(err, -ENOMEM, "out of memory");
        cairn_state_free(lo);
    }
    if (r == 0)
        r = list_write(fd, dir, &l, err);
    list_free(&l);
    return r;
}

int cairn__stack_add_new(const char *dir, const char *const *lowers, size_t n, cairn_error *err)
{
    _cleanup_close_ int fd = -1;
    char top[CAIRN_STATE_ID_LEN + 1];
    bool frozen = false;
    int r = open_top(dir, &fd, top, &frozen, err);
    if (r < 0)
        return r;
    lowers_list l = {0};
    r = list_read(fd, dir, &l, err);
    if (r == 0 && (frozen || l.n))
        r = cairn__err(err, -EINVAL, "%s: not a new state", dir);
    for (size_t i = 0; i < n && r == 0; i++) {
        _cleanup_close_ int lfd = open(lowers[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char id[CAIRN_STATE_ID_LEN + 1];
        bool lf = false;
        if (lfd < 0)
            r = cairn__err(err, errno == ENOENT ? CAIRN_E_NOTSTATE : -errno, "lower %s: %s",
                           lowers[i], cairn_strerror(-errno));
        else
            r = cairn__identity_get(lfd, lowers[i], id, &lf, err);
        if (r == 0 && !lf)
            r = cairn__err(err, CAIRN_E_LOWER, "lower %s (id %s) is not frozen", lowers[i], id);
        _cleanup_free_ char *abs = r == 0 ? realpath(lowers[i], NULL) : NULL;
        if (r == 0 && !abs)
            r = cairn__err(err, -errno, "lower %s: %m", lowers[i]);
        if (r == 0 && list_push(&l, id, abs) < 0)
            r = cairn__err(err, -ENOMEM, "out of memory");
    }
    if (r == 0)
        r = list_write(fd, dir, &l, err);
    list_free(&l);
    return r;
}

int cairn_stack_remove(const char *dir, const char *lower, cairn_error *err)
{
    _cleanup_close_ int fd = -1;
    char top[CAIRN_STATE_ID_LEN + 1];
    bool frozen = false;
    int r = open_top(dir, &fd, top, &frozen, err);
    if (r < 0)
        return r;
    if (frozen)
        return cairn__err(err, CAIRN_E_FROZEN, "%s: the state is frozen", dir);
    if (!lower || !*lower)
        return cairn__err(err, -EINVAL, "no lower given");
    /* By id, by the path as recorded, or by the path resolved (when it is
     * still there). */
    _cleanup_free_ char *real = realpath(lower, NULL);
    lowers_list l = {0};
    r = list_read(fd, dir, &l, err);
    size_t kept = 0, removed = 0;
    for (size_t i = 0; r == 0 && i < l.n; i++) {
        const char *p = l.v[i].path;
        bool match = !strcmp(l.v[i].id, lower) || !strcmp(p, lower) || (real && !strcmp(p, real));
        if (match) {
            free(l.v[i].path);
            removed++;
            continue;
        }
        l.v[kept++] = l.v[i];
    }
    if (r == 0) {
        l.n = kept;
        if (!removed)
            r = cairn__err(err, -ENOENT, "%s: '%s' is not one of its lowers", dir, lower);
        else
            r = list_write(fd, dir, &l, err);
    }
    list_free(&l);
    return r;
}

int cairn_stack_list(const char *dir, cairn_stack_fn fn, void *userdata, cairn_error *err)
{
    _cleanup_close_ int fd = -1;
    char top[CAIRN_STATE_ID_LEN + 1];
    int r = open_top(dir, &fd, top, NULL, err);
    if (r < 0)
        return r;
    lowers_list l = {0};
    r = list_read(fd, dir, &l, err);
    for (size_t i = 0; r == 0 && i < l.n; i++) {
        const char *status = "ok";
        char detail[CAIRN_ERROR_MESSAGE_MAX + 64] = "";
        int lfd = open(l.v[i].path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (lfd < 0) {
            status = "missing";
            snprintf(detail, sizeof(detail), "%s: %s", l.v[i].path, cairn_strerror(-errno));
        } else {
            char id[CAIRN_STATE_ID_LEN + 1];
            bool frozen = false;
            cairn_error e = {0};
            if (cairn__identity_get(lfd, l.v[i].path, id, &frozen, &e) < 0) {
                status = "unreadable";
                snprintf(detail, sizeof(detail), "%s", e.message);
            } else if (strcmp(id, l.v[i].id) != 0) {
                status = "replaced";
                snprintf(detail, sizeof(detail), "%s now holds state %s", l.v[i].path, id);
            } else if (!frozen) {
                status = "not-frozen";
                snprintf(detail, sizeof(detail), "%s is not frozen", l.v[i].path);
            }
            close(lfd);
        }
        cairn_stack_entry e = {l.v[i].id, l.v[i].path, status, detail};
        r = fn(userdata, &e);
    }
    list_free(&l);
    return r;
}
