/* state.c: a state directory, its identity file and its stack of databases.
 *
 * The identity file `cairn-state` is a few "key=value" lines after a first
 * line "cairn-state":
 *     format=1            layout version; a newer one is refused
 *     id=<32 hex>         this state's id, never shared by two writable states
 *     database=db/<id>.sqlite
 *     frozen=0|1          a frozen state is read-only and may be used as a lower
 * It is written last when a state is created (publish last), atomically.
 *
 * Layers: opening a state builds the ordered list of databases it reads:
 *   [0]   its own database (writable unless frozen or opened read-only);
 *   then  the other databases found side by side in its db/ (an overlayfs
 *         view of several states shows all of theirs), sorted by id;
 *   then  the states named in its `lowers` file, in order, each expanded the
 *         same way (a lower may itself be a stack).
 * Each id appears once. Lower databases are opened lazily, on first query,
 * so opening a stack costs a read of each lower's identity file, no more.
 *
 * The layout directories of every layer are its own: a symlink among them
 * is refused at open (layout_check), and the object directories are opened
 * beneath the root following no symlink (core/layers.c).
 *
 * Staging: tmp/ entries are named for their boot and their owner (an open
 * state holding an flock); "staging left behind" below says how the
 * staging of dead processes is told from live ones and swept.
 */
#include "core/core.h"

#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>

#ifndef OVERLAYFS_SUPER_MAGIC
#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#endif

#define IDENTITY_FILE "cairn-state"
#define IDENTITY_MAX 4096
#define LOWERS_FILE "lowers"
#define LOWERS_MAX (1 << 20)

typedef struct identity {
    unsigned format;
    char id[CAIRN_STATE_ID_LEN + 1];
    char database[128];
    bool frozen;
} identity;

static bool is_state_id(const char *s, size_t n)
{
    if (n != CAIRN_STATE_ID_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* Read and check dirfd/cairn-state; `path` names the state in messages. */
static int identity_read(int dirfd, const char *path, identity *out, cairn_error *err)
{
    _cleanup_free_ char *buf = NULL;
    int r = cairn__read_file_at(dirfd, IDENTITY_FILE, IDENTITY_MAX, &buf, NULL);
    if (r == -ENOENT)
        return cairn__err(err, CAIRN_E_NOTSTATE,
                          "%s: not a cairn state (no %s file; create one with 'cairn init')",
                          path, IDENTITY_FILE);
    if (r == -EFBIG)
        return cairn__err(err, CAIRN_E_FORMAT, "%s/%s: too large to be an identity file", path,
                          IDENTITY_FILE);
    if (r == CAIRN_E_FORMAT)
        return cairn__err(err, r, "%s/%s: not a regular file", path, IDENTITY_FILE);
    if (r < 0)
        return cairn__err(err, r, "%s/%s: %m", path, IDENTITY_FILE);

    identity id = {0};
    bool have_format = false;
    char *save = NULL;
    char *line = strtok_r(buf, "\n", &save);
    if (!line || strcmp(line, "cairn-state") != 0)
        return cairn__err(err, CAIRN_E_FORMAT,
                          "%s/%s: corrupt identity file (first line is not 'cairn-state')", path,
                          IDENTITY_FILE);
    while ((line = strtok_r(NULL, "\n", &save))) {
        char *eq = strchr(line, '=');
        if (!eq)
            return cairn__err(err, CAIRN_E_FORMAT,
                              "%s/%s: corrupt identity file (line '%.60s' has no '=')", path,
                              IDENTITY_FILE, line);
        *eq = 0;
        const char *k = line, *v = eq + 1;
        if (!strcmp(k, "format")) {
            char *end;
            unsigned long f = strtoul(v, &end, 10);
            if (*end || !*v || f == 0 || f > UINT_MAX)
                return cairn__err(err, CAIRN_E_FORMAT,
                                  "%s/%s: corrupt identity file (format '%.20s')", path,
                                  IDENTITY_FILE, v);
            id.format = (unsigned)f;
            have_format = true;
        } else if (!strcmp(k, "id")) {
            if (!is_state_id(v, strlen(v)))
                return cairn__err(err, CAIRN_E_FORMAT,
                                  "%s/%s: corrupt identity file (id '%.40s' is not 32 hex digits)",
                                  path, IDENTITY_FILE, v);
            memcpy(id.id, v, CAIRN_STATE_ID_LEN + 1);
        } else if (!strcmp(k, "database")) {
            if (strlen(v) >= sizeof(id.database))
                return cairn__err(err, CAIRN_E_FORMAT,
                                  "%s/%s: corrupt identity file (database name too long)", path,
                                  IDENTITY_FILE);
            strcpy(id.database, v);
        } else if (!strcmp(k, "frozen")) {
            /* A value this cairn does not know could mean frozen: reading it
             * as live would let this state be written while stacks read it
             * as an immutable lower. */
            if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
                return cairn__err(err, CAIRN_E_FORMAT,
                                  "%s/%s: corrupt identity file (frozen '%.20s', expected 0 or 1)",
                                  path, IDENTITY_FILE, v);
            id.frozen = v[0] == '1';
        }
        /* Unknown keys are for newer cairns of the same format: ignored. */
    }
    if (!have_format)
        return cairn__err(err, CAIRN_E_FORMAT, "%s/%s: corrupt identity file (no format)", path,
                          IDENTITY_FILE);
    if (id.format > CAIRN_FORMAT_VERSION)
        return cairn__err(err, CAIRN_E_NEWER,
                          "%s/%s: format %u is newer than this cairn's %d; upgrade cairn", path,
                          IDENTITY_FILE, id.format, CAIRN_FORMAT_VERSION);
    if (!id.id[0])
        return cairn__err(err, CAIRN_E_FORMAT, "%s/%s: corrupt identity file (no id)", path,
                          IDENTITY_FILE);
    char expect[128];
    snprintf(expect, sizeof(expect), "db/%s.sqlite", id.id);
    if (strcmp(id.database, expect) != 0)
        return cairn__err(err, CAIRN_E_FORMAT,
                          "%s/%s: corrupt identity file (database '%.100s', expected '%s')", path,
                          IDENTITY_FILE, id.database, expect);
    *out = id;
    return 0;
}

static int identity_write(int dirfd, const identity *id, cairn_error *err, const char *path)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "cairn-state\nformat=%u\nid=%s\ndatabase=%s\nfrozen=%d\n",
                     id->format, id->id, id->database, id->frozen ? 1 : 0);
    int r = cairn__write_file_atomic(dirfd, IDENTITY_FILE, buf, (size_t)n, 0644);
    if (r < 0)
        return cairn__err(err, r, "%s/%s: write: %m", path, IDENTITY_FILE);
    return 0;
}

int cairn__identity_get(int dirfd, const char *path, char out_id[CAIRN_STATE_ID_LEN + 1],
                        bool *frozen, cairn_error *err)
{
    identity id;
    int r = identity_read(dirfd, path, &id, err);
    if (r < 0)
        return r;
    memcpy(out_id, id.id, CAIRN_STATE_ID_LEN + 1);
    if (frozen)
        *frozen = id.frozen;
    return 0;
}

int cairn__identity_new(int dirfd, const char *path, const char *state_id, bool frozen,
                        cairn_error *err)
{
    identity id = {.format = CAIRN_FORMAT_VERSION, .frozen = frozen};
    memcpy(id.id, state_id, CAIRN_STATE_ID_LEN + 1);
    snprintf(id.database, sizeof(id.database), "db/%s.sqlite", id.id);
    return identity_write(dirfd, &id, err, path);
}

/* ---- layout ----------------------------------------------------------- */

/* Parents before children: layout_check stats each with the one before
 * it known not to be a symlink. */
static const char *const layout_dirs[] = {"blobs", "blobs/sha256", "snapshots", "active",
                                          "tmp",   "db",           "quarantine"};

/* The layout's directories are the state's own: through a symlink, gc
 * would delete, checkouts link and mounts offer files outside the state.
 * A missing one is left to the code that needs it (quarantine/ is made on
 * first use). */
static int layout_check(int dirfd, const char *root, cairn_error *err)
{
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(layout_dirs); i++) {
        struct stat sb;
        if (fstatat(dirfd, layout_dirs[i], &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;
            return cairn__err(err, -errno, "%s/%s: %m", root, layout_dirs[i]);
        }
        if (S_ISLNK(sb.st_mode))
            return cairn__err(err, CAIRN_E_UNSAFE,
                              "%s/%s: a symlink; the directories of a state must be its own",
                              root, layout_dirs[i]);
        if (!S_ISDIR(sb.st_mode))
            return cairn__err(err, CAIRN_E_CORRUPT, "%s/%s: not a directory", root,
                              layout_dirs[i]);
    }
    return 0;
}

/* ---- layers ----------------------------------------------------------- */

static void layer_clear(cairn__layer *l)
{
    cairn__lower_release(l);
    for (size_t i = 0; i < l->stmts.cap; i++)
        sqlite3_finalize(l->stmts.slots[i].stmt);
    free(l->stmts.slots);
    if (l->db)
        sqlite3_close(l->db);
    if (l->owns_dirfd && l->dirfd >= 0)
        close(l->dirfd);
    if (l->blobfd >= 0)
        close(l->blobfd);
    if (l->snapfd >= 0)
        close(l->snapfd);
    free(l->root);
    free(l->db_path);
}

void cairn__layers_trim(cairn_state *st, size_t n)
{
    while (st->n_layers > n && st->n_layers > 1)
        layer_clear(&st->layers[--st->n_layers]);
}

static bool has_layer(const cairn_state *st, const char *id)
{
    for (size_t i = 0; i < st->n_layers; i++)
        if (!strcmp(st->layers[i].id, id))
            return true;
    return false;
}

static int add_layer(cairn_state *st, const char *id, const char *root, int dirfd,
                     bool owns_dirfd, cairn_error *err)
{
    cairn__layer *nl = realloc(st->layers, (st->n_layers + 1) * sizeof(*nl));
    if (!nl)
        return cairn__err(err, -ENOMEM, "out of memory");
    st->layers = nl;
    cairn__layer *l = &nl[st->n_layers];
    memset(l, 0, sizeof(*l));
    l->dirfd = dirfd;
    l->owns_dirfd = owns_dirfd;
    l->blobfd = -1;
    l->snapfd = -1;
    memcpy(l->id, id, CAIRN_STATE_ID_LEN + 1);
    l->root = strdup(root);
    if (asprintf(&l->db_path, "%s/db/%s.sqlite", root, id) < 0)
        l->db_path = NULL;
    if (!l->root || !l->db_path) {
        free(l->root);
        free(l->db_path);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    st->n_layers++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Databases side by side in root/db/ other than `self`, sorted. */
static int add_sibling_layers(cairn_state *st, const char *root, int dirfd, const char *self,
                              cairn_error *err)
{
    int fd = openat(dirfd, "db", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return cairn__err(err, -errno, "%s/db: %m", root);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return cairn__err(err, -ENOMEM, "%s/db: out of memory", root);
    }
    char **ids = NULL;
    size_t n = 0;
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len != CAIRN_STATE_ID_LEN + 7 || strcmp(de->d_name + CAIRN_STATE_ID_LEN, ".sqlite"))
            continue;
        if (!is_state_id(de->d_name, CAIRN_STATE_ID_LEN))
            continue;
        if (!strncmp(de->d_name, self, CAIRN_STATE_ID_LEN))
            continue;
        char **ni = realloc(ids, (n + 1) * sizeof(*ids));
        if (!ni) {
            r = -ENOMEM;
            break;
        }
        ids = ni;
        ids[n] = strndup(de->d_name, CAIRN_STATE_ID_LEN);
        if (!ids[n]) {
            r = -ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (r == 0 && n)
        qsort(ids, n, sizeof(*ids), cmp_str);
    for (size_t i = 0; i < n && r == 0; i++)
        if (!has_layer(st, ids[i]))
            r = add_layer(st, ids[i], root, dirfd, false, err);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    if (r == -ENOMEM)
        return cairn__err(err, r, "out of memory");
    return r;
}

static int add_lowers_of(cairn_state *st, const char *root, int dirfd, int depth,
                         cairn_error *err);

/* A lower named in a lowers file: check it is there, is the state recorded,
 * and is frozen; then add it and, recursively, what it stacks. */
static int add_lower_state(cairn_state *st, const char *path, const char *want_id, int depth,
                           cairn_error *err)
{
    if (depth > 32)
        return cairn__err(err, CAIRN_E_LOWER, "%s: lowers nested more than 32 deep", path);
    /* The lower's own path, symlinks resolved once here: paths of its
     * objects (mounts, its database) are built from it and must resolve
     * beneath it without following any. */
    _cleanup_free_ char *real = realpath(path, NULL);
    int fd = real ? open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd < 0)
        return cairn__err(err, CAIRN_E_LOWER, "lower state %s (id %s): %s; remove it with 'cairn stack rm'",
                          path, want_id, cairn_strerror(-errno));
    path = real;
    identity id;
    int r = layout_check(fd, path, err);
    if (r < 0) {
        close(fd);
        return cairn__err_prefix(err, CAIRN_E_LOWER, "lower state %s", path);
    }
    r = identity_read(fd, path, &id, err);
    if (r < 0) {
        close(fd);
        return cairn__err_prefix(err, CAIRN_E_LOWER, "lower state %s", path);
    }
    if (strcmp(id.id, want_id) != 0) {
        close(fd);
        return cairn__err(err, CAIRN_E_LOWER,
                          "lower state %s was replaced: its id is %s, the stack expects %s; "
                          "remove it with 'cairn stack rm'",
                          path, id.id, want_id);
    }
    if (!id.frozen) {
        close(fd);
        return cairn__err(err, CAIRN_E_LOWER,
                          "lower state %s (id %s) is not frozen; only frozen states can be lowers",
                          path, id.id);
    }
    if (has_layer(st, id.id)) {
        close(fd);
        return 0;
    }
    r = add_layer(st, id.id, path, fd, true, err);
    if (r < 0) {
        close(fd);
        return r;
    }
    st->layers[st->n_layers - 1].lazy = faccessat(fd, "remote", F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    r = add_sibling_layers(st, path, fd, id.id, err);
    if (r < 0)
        return r;
    return add_lowers_of(st, path, fd, depth + 1, err);
}

/* The lowers file: one lower a line, "<state-id> <path>". Blank lines and
 * lines starting with '#' are skipped. */
int cairn__lowers_parse(char *buf, const char *path, int (*fn)(void *, const char *, const char *),
                        void *ud, cairn_error *err)
{
    unsigned lineno = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        if (!*line || *line == '#')
            continue;
        if (strlen(line) < CAIRN_STATE_ID_LEN + 2 || line[CAIRN_STATE_ID_LEN] != ' ' ||
            !is_state_id(line, CAIRN_STATE_ID_LEN) || line[CAIRN_STATE_ID_LEN + 1] != '/')
            return cairn__err(err, CAIRN_E_FORMAT,
                              "%s/%s:%u: expected '<state-id> <absolute path>'", path, LOWERS_FILE,
                              lineno);
        line[CAIRN_STATE_ID_LEN] = 0;
        int r = fn(ud, line, line + CAIRN_STATE_ID_LEN + 1);
        if (r < 0)
            return r;
    }
    return 0;
}

struct lowers_ctx {
    cairn_state *st;
    int depth;
    cairn_error *err;
};

static int lowers_add_cb(void *ud, const char *id, const char *p)
{
    struct lowers_ctx *c = ud;
    return add_lower_state(c->st, p, id, c->depth, c->err);
}

static int add_lowers_of(cairn_state *st, const char *root, int dirfd, int depth,
                         cairn_error *err)
{
    _cleanup_free_ char *buf = NULL;
    int r = cairn__read_file_at(dirfd, LOWERS_FILE, LOWERS_MAX, &buf, NULL);
    if (r == -ENOENT)
        return 0;
    if (r == CAIRN_E_FORMAT)
        return cairn__err(err, r, "%s/%s: not a regular file", root, LOWERS_FILE);
    if (r < 0)
        return cairn__err(err, r, "%s/%s: %m", root, LOWERS_FILE);
    struct lowers_ctx c = {st, depth, err};
    return cairn__lowers_parse(buf, root, lowers_add_cb, &c, err);
}

int cairn__tmpfd(cairn_state *st, cairn_error *err)
{
    if (st->tmpfd >= 0)
        return st->tmpfd;
    /* Not through a symlink: staging (where layers are applied) and its
     * sweep stay inside the state. */
    int fd = openat(st->dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    struct stat sb;
    if (fd < 0 && (errno == ELOOP || errno == ENOTDIR) &&
        fstatat(st->dirfd, "tmp", &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(sb.st_mode))
        return cairn__err(err, CAIRN_E_UNSAFE, "%s/tmp: a symlink; staging must be a directory "
                          "of the state", st->path);
    if (fd < 0)
        return cairn__err(err, -errno, "%s/tmp: %m", st->path);
    st->tmpfd = fd;
    return fd;
}

int cairn__check_writable(cairn_state *st, cairn_error *err)
{
    if (st->frozen)
        return cairn__err(err, CAIRN_E_FROZEN,
                          "%s: the state is frozen (read-only); stack a new state over it to write",
                          st->path);
    if (st->rofs)
        return cairn__err(err, -EROFS, "%s: the state is on a read-only file system", st->path);
    if (st->readonly)
        return cairn__err(err, -EROFS, "%s: the state was opened read-only", st->path);
    return 0;
}

/* ---- staging left behind ---------------------------------------------- */

/* Entries of tmp/ are named "<boot-id>-...". Those of an earlier boot may
 * hold unsynced data and are removed. Those of this boot are named
 * "<boot-id>-<owner>-..." by the open state that staged them (owner: 10 hex
 * digits, a random 40-bit number), which holds an open-file-description
 * write lock (F_OFD_SETLK) on byte 2^40 + owner of the state's `lock` file
 * for as long as it is open; the kernel drops it when the process dies,
 * however it dies (and in any pid namespace). A byte nobody holds is a dead
 * owner's, and its entries are removed. The lock is taken before any entry
 * is named. The gc lock is an flock of the same file: the two kinds of lock
 * do not interact. Names of this boot in no such form (an older cairn's)
 * cannot be told live from dead: left. Nothing but staging is in tmp/. */

#define OWNER_LEN 10
#define OWNER_BASE ((off_t)1 << 40)

static bool hex_n(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static off_t owner_offset(const char *owner)
{
    char buf[OWNER_LEN + 1];
    memcpy(buf, owner, OWNER_LEN);
    buf[OWNER_LEN] = 0;
    return OWNER_BASE + (off_t)strtoull(buf, NULL, 16);
}

/* Bytes below at/name (a file's size, a tree's sum), best effort. */
static uint64_t tree_bytes_at(int at, const char *name, bool allocated, int depth)
{
    struct stat sb;
    if (fstatat(at, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        return 0;
    if (!S_ISDIR(sb.st_mode))
        return !S_ISREG(sb.st_mode) ? 0
               : allocated          ? (uint64_t)sb.st_blocks * 512
                                    : (uint64_t)sb.st_size;
    if (depth >= 64)
        return 0;
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    uint64_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n += tree_bytes_at(dirfd(d), de->d_name, allocated, depth + 1);
    closedir(d);
    return n;
}

uint64_t cairn__tree_bytes(int at, const char *name, bool allocated)
{
    return tree_bytes_at(at, name, allocated, 0);
}

typedef struct owner_state {
    char owner[OWNER_LEN + 1];
    bool gone;
} owner_state;

/* Is this owner's byte of the lock file held by nobody? lockfd < 0: there
 * is no lock file, so nobody holds anything. */
static bool owner_gone(int lockfd, const char *owner)
{
    if (lockfd < 0)
        return true;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = owner_offset(owner),
                       .l_len = 1};
    if (fcntl(lockfd, F_OFD_GETLK, &fl) < 0)
        return false; /* cannot tell: keep it */
    return fl.l_type == F_UNLCK;
}

int cairn__tmp_sweep(cairn_state *st, bool dry, cairn__tmp_fn fn, void *ud, cairn_error *err)
{
    char boot[40];
    if (cairn__boot_id(boot) < 0)
        return 0;
    size_t blen = strlen(boot);
    int tfd = cairn__tmpfd(st, err);
    if (tfd < 0)
        return tfd == -ENOENT ? 0 : tfd;
    int dfd = dup(tfd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return cairn__err(err, -ENOMEM, "%s/tmp: out of memory", st->path);
    }
    /* The dup shares st->tmpfd's offset, which an earlier sweep left at
     * the end. Names first: entries are removed below, not while reading. */
    rewinddir(d);
    cairn__strv names = {0};
    struct dirent *de;
    int r = 0;
    while (r == 0 && (de = readdir(d)))
        if (de->d_name[0] != '.')
            r = cairn__strv_push(&names, de->d_name);
    closedir(d);
    owner_state *owners = NULL;
    size_t n_owners = 0;
    int count = 0;
    int lockfd = openat(st->dirfd, "lock", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    for (size_t i = 0; r == 0 && i < names.n; i++) {
        const char *name = names.v[i];
        const char *why;
        owner_state *o = NULL;
        if (strncmp(name, boot, blen) != 0) {
            why = "staging of an earlier boot";
        } else {
            const char *own = name + blen + 1;
            if (name[blen] != '-' || strlen(own) < OWNER_LEN + 1 || !hex_n(own, OWNER_LEN) ||
                own[OWNER_LEN] != '-')
                continue;
            for (size_t k = 0; k < n_owners && !o; k++)
                if (!strncmp(owners[k].owner, own, OWNER_LEN))
                    o = &owners[k];
            if (!o) {
                owner_state *no = realloc(owners, (n_owners + 1) * sizeof(*no));
                if (!no) {
                    r = -ENOMEM;
                    break;
                }
                owners = no;
                o = &owners[n_owners++];
                memcpy(o->owner, own, OWNER_LEN);
                o->owner[OWNER_LEN] = 0;
                o->gone = owner_gone(lockfd, o->owner);
            }
            if (!o->gone)
                continue;
            why = "staging of a process that is gone";
        }
        if (fn)
            fn(ud, name, cairn__tree_bytes(tfd, name, false), why);
        count++;
        if (!dry)
            cairn__rm_rf_at(tfd, name);
    }
    if (lockfd >= 0)
        close(lockfd);
    free(owners);
    cairn__strv_free(&names);
    if (r < 0)
        return cairn__err(err, r, "%s/tmp: %m", st->path);
    return count;
}

/* This state's byte of the lock file, taken before it names any staging. */
static int stage_owner(cairn_state *st)
{
    if (st->stagefd >= 0)
        return 0;
    /* Its own open of the file: OFD locks belong to the open, and the gc
     * flock on st->lockfd is another kind, apart. */
    int fd = openat(st->dirfd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    for (int attempt = 0; attempt < 16; attempt++) {
        char rnd[CAIRN_STATE_ID_LEN + 1];
        int r = cairn__random_id(rnd);
        if (r < 0) {
            close(fd);
            return r;
        }
        rnd[OWNER_LEN] = 0;
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                           .l_start = owner_offset(rnd), .l_len = 1};
        if (fcntl(fd, F_OFD_SETLK, &fl) == 0) {
            st->stagefd = fd;
            memcpy(st->stage_owner, rnd, OWNER_LEN + 1);
            return 0;
        }
        if (errno != EAGAIN && errno != EACCES) {
            r = -errno;
            close(fd);
            return r;
        }
        /* held: another live owner drew the same number */
    }
    close(fd);
    return -EAGAIN;
}

static void stage_owner_drop(cairn_state *st)
{
    /* Closing the open releases the byte: what staging of ours is left
     * over is then a dead owner's. */
    if (st->stagefd >= 0)
        close(st->stagefd);
    st->stagefd = -1;
}

/* Read once per process (every staged file's name starts with it): two
 * threads may both read it first, which is harmless, the value is the same. */
static char boot_id_cache[40];
static int boot_id_cached;

static int boot_id_read(char out[40]);

int cairn__boot_id(char out[40])
{
    if (__atomic_load_n(&boot_id_cached, __ATOMIC_ACQUIRE) == 1) {
        memcpy(out, boot_id_cache, sizeof(boot_id_cache));
        return 0;
    }
    char id[40];
    int r = boot_id_read(id);
    if (r < 0)
        return r;
    memcpy(out, id, sizeof(id));
    int unset = 0; /* 0 unset, 2 being filled, 1 ready */
    if (__atomic_compare_exchange_n(&boot_id_cached, &unset, 2, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_RELAXED)) {
        memcpy(boot_id_cache, id, sizeof(id));
        __atomic_store_n(&boot_id_cached, 1, __ATOMIC_RELEASE);
    }
    return 0;
}

static int boot_id_read(char out[40])
{
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char raw[64];
    ssize_t n = cairn__read_all(fd, raw, sizeof(raw) - 1);
    close(fd);
    if (n < 8)
        return -EIO;
    size_t o = 0;
    for (ssize_t i = 0; i < n && o < 39; i++)
        if (raw[i] != '-' && raw[i] != '\n')
            out[o++] = raw[i];
    out[o] = 0;
    return 0;
}

/* ---- the reserve ------------------------------------------------------- */

/* db/<id>.reserve: space held on the state's file system so that gc can run
 * when it is full (SQLite needs room for the -shm WAL index and the WAL to
 * delete rows, before gc can free anything). Freed by an open with
 * CAIRN_OPEN_FREE_RESERVE that fails for want of space; made again, when
 * there is room for it twice over, by writable opens and after gc. */
#define RESERVE_BYTES (4u << 20)

static void reserve_name(const cairn_state *st, char *out, size_t size)
{
    snprintf(out, size, "db/%s.reserve", st->id);
}

void cairn__reserve_ensure(cairn_state *st)
{
    char name[CAIRN_STATE_ID_LEN + 16];
    reserve_name(st, name, sizeof(name));
    struct stat sb;
    struct statvfs vfs;
    if (st->readonly || fstatat(st->dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 ||
        fstatvfs(st->dirfd, &vfs) < 0 ||
        (uint64_t)vfs.f_bavail * vfs.f_frsize < 2ull * RESERVE_BYTES)
        return;
    int fd = openat(st->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    /* Blocks allocated, not a sparse file: a hole frees nothing. */
    if (posix_fallocate(fd, 0, RESERVE_BYTES) != 0 || fsync(fd) < 0)
        unlinkat(st->dirfd, name, 0);
    close(fd);
}

static bool reserve_free(cairn_state *st)
{
    char name[CAIRN_STATE_ID_LEN + 16];
    reserve_name(st, name, sizeof(name));
    return unlinkat(st->dirfd, name, 0) == 0;
}

/* ---- open / init / free ----------------------------------------------- */


int cairn_state_open(cairn_state **out, const char *path, unsigned flags, cairn_error *err)
{
    if (!path || !*path)
        return cairn__err(err, -EINVAL, "no state directory given");
    cairn_state *st = calloc(1, sizeof(*st));
    if (!st)
        return cairn__err(err, -ENOMEM, "out of memory");
    st->dirfd = -1;
    st->tmpfd = -1;
    st->lockfd = -1;
    st->timeout_ms = CAIRN_TIMEOUT_DEFAULT;
    st->stagefd = -1;
    st->flags = flags;
    int r;
    st->path = realpath(path, NULL);
    if (!st->path) {
        r = -errno;
        if (r == -ENOENT)
            cairn__err(err, CAIRN_E_NOTSTATE, "%s: no such directory", path);
        else
            cairn__err(err, r, "%s: %m", path);
        r = r == -ENOENT ? CAIRN_E_NOTSTATE : r;
        goto fail;
    }
    st->dirfd = open(st->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->dirfd < 0) {
        r = cairn__err(err, errno == ENOTDIR ? CAIRN_E_NOTSTATE : -errno, "%s: %s", path,
                       errno == ENOTDIR ? "not a directory" : cairn_strerror(-errno));
        goto fail;
    }
    identity id;
    r = identity_read(st->dirfd, st->path, &id, err);
    if (r < 0)
        goto fail;
    r = layout_check(st->dirfd, st->path, err);
    if (r < 0)
        goto fail;
    memcpy(st->id, id.id, sizeof(st->id));
    st->format = id.format;
    st->frozen = id.frozen;
    st->readonly = id.frozen || (flags & CAIRN_OPEN_READONLY);
    /* On a read-only filesystem SQLite cannot create the WAL index, and
     * nothing can change the database through this mount: read it as an
     * immutable file, and refuse writes with a message saying why. */
    struct statvfs vfs;
    if (fstatvfs(st->dirfd, &vfs) == 0 && (vfs.f_flag & ST_RDONLY)) {
        st->rofs = true;
        st->readonly = true;
    }

    struct stat sb;
    if (fstatat(st->dirfd, id.database, &sb, 0) < 0) {
        r = cairn__err(err, CAIRN_E_CORRUPT, "%s/%s: the state's database is missing (%s)",
                       st->path, id.database, cairn_strerror(-errno));
        goto fail;
    }
    r = add_layer(st, id.id, st->path, st->dirfd, false, err);
    if (r < 0)
        goto fail;
    r = cairn__layer_open(st, 0, err);
    if (r == -ENOSPC && !st->readonly && (flags & CAIRN_OPEN_FREE_RESERVE) && reserve_free(st))
        r = cairn__layer_open(st, 0, err);
    if (r < 0)
        goto fail;
    if (!st->readonly) {
        r = cairn__db_migrate(st->layers[0].db, st->layers[0].db_path, false, err);
        if (r < 0)
            goto fail;
        cairn__reserve_ensure(st);
    }
    r = add_sibling_layers(st, st->path, st->dirfd, st->id, err);
    if (r < 0)
        goto fail;
    r = add_lowers_of(st, st->path, st->dirfd, 0, err);
    if (r < 0)
        goto fail;
    if (!st->readonly)
        cairn__tmp_sweep(st, false, NULL, NULL, NULL);
    *out = st;
    return 0;
fail:
    cairn_state_free(st);
    return r;
}

void cairn_state_free(cairn_state *st)
{
    if (!st)
        return;
    cairn__tx_rollback(st);
    for (size_t i = 0; i < st->n_layers; i++)
        layer_clear(&st->layers[i]);
    free(st->layers);
    stage_owner_drop(st);
    if (st->tmpfd >= 0)
        close(st->tmpfd);
    if (st->lockfd >= 0)
        close(st->lockfd);
    if (st->dirfd >= 0)
        close(st->dirfd);
    free(st->path);
    free(st);
}

const char *cairn_state_id(const cairn_state *st)
{
    return st->id;
}

const char *cairn_state_path(const cairn_state *st)
{
    return st->path;
}

/* Init builds its database as db/<id>.sqlite.init, which no open reads
 * (add_sibling_layers takes "<id>.sqlite" only), and renames it to
 * db/<id>.sqlite once complete. */
#define INIT_STAGE ".sqlite.init"

/* A name init writes before it publishes the identity: the identity's
 * temporary (".cairn-state.<rnd>.tmp", cairn__write_file_atomic) at the
 * top, or one database's files ("<id>.sqlite" or "<id>.sqlite.init", and
 * their -journal, -wal, -shm) in db/. */
static bool init_leftover_top(const char *name)
{
    size_t n = strlen(name);
    return !strncmp(name, "." IDENTITY_FILE ".", sizeof(IDENTITY_FILE) + 1) && n > 4 &&
           !strcmp(name + n - 4, ".tmp") && !strchr(name, '/');
}

static bool init_leftover_db(const char *name, char id[CAIRN_STATE_ID_LEN + 1])
{
    for (size_t i = 0; i < CAIRN_STATE_ID_LEN; i++)
        if (!isxdigit((unsigned char)name[i]))
            return false;
    const char *rest = name + CAIRN_STATE_ID_LEN;
    if (!strncmp(rest, INIT_STAGE, strlen(INIT_STAGE)))
        rest += strlen(INIT_STAGE);
    else if (!strncmp(rest, ".sqlite", 7))
        rest += 7;
    else
        return false;
    if (*rest && strcmp(rest, "-journal") && strcmp(rest, "-wal") && strcmp(rest, "-shm"))
        return false;
    if (*id && strncmp(id, name, CAIRN_STATE_ID_LEN))
        return false; /* a second database: more than one init's */
    memcpy(id, name, CAIRN_STATE_ID_LEN);
    id[CAIRN_STATE_ID_LEN] = 0;
    return true;
}

/* Remove the staged databases of inits killed before they published
 * (db/<id>.sqlite.init*): over a frozen state, where db/ holds other
 * databases than the init's own. */
static void remove_init_stages(int dirfd)
{
    int fd = openat(dirfd, "db", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)))
        if (strlen(de->d_name) > CAIRN_STATE_ID_LEN &&
            is_state_id(de->d_name, CAIRN_STATE_ID_LEN) &&
            !strncmp(de->d_name + CAIRN_STATE_ID_LEN, INIT_STAGE, strlen(INIT_STAGE)))
            unlinkat(fd, de->d_name, 0);
    closedir(d);
}

/* Is the directory, which has no identity, empty but for the layout's own
 * folders and what an init killed before it published left (its database,
 * the identity's temporary)? Such an init never named its database
 * anywhere, so a rerun removes them (removing is true) rather than refuse
 * the directory: a killed `cairn init` is finished by running it again.
 * A db/ holding anything else (another state's database) is not fresh. */
static int dir_is_fresh(int dirfd, bool removing, bool *fresh)
{
    int fd = dup(dirfd);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    *fresh = true;
    int r = 0;
    struct dirent *de;
    while (*fresh && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (init_leftover_top(de->d_name)) {
            if (removing && unlinkat(dirfd, de->d_name, 0) < 0 && errno != ENOENT)
                r = -errno;
            continue;
        }
        bool known = false;
        for (size_t i = 0; i < CAIRN_ARRAY_SIZE(layout_dirs); i++)
            if (!strcmp(de->d_name, layout_dirs[i]))
                known = true;
        if (!known)
            *fresh = false;
    }
    closedir(d);
    if (r < 0 || !*fresh)
        return r;

    _cleanup_close_ int dbfd = openat(dirfd, "db", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dbfd < 0)
        return errno == ENOENT ? 0 : -errno;
    fd = dup(dbfd);
    if (fd < 0)
        return -errno;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    char id[CAIRN_STATE_ID_LEN + 1] = "";
    while (*fresh && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (!init_leftover_db(de->d_name, id))
            *fresh = false;
    }
    if (*fresh && removing) {
        rewinddir(d);
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
                unlinkat(dbfd, de->d_name, 0) < 0 && errno != ENOENT)
                r = -errno;
    }
    closedir(d);
    return r;
}

int cairn_state_init(const char *path, char *out_id, cairn_error *err)
{
    return cairn_state_init_with(path, 0, out_id, err);
}

int cairn_state_init_with(const char *path, unsigned flags, char *out_id, cairn_error *err)
{
    if (!path || !*path)
        return cairn__err(err, -EINVAL, "no state directory given");
    int r = cairn__mkdir_p(path, 0755);
    if (r < 0)
        return cairn__err(r == -EEXIST ? err : err, r == -EEXIST ? -ENOTDIR : r, "%s: %s", path,
                          r == -EEXIST ? "not a directory" : cairn_strerror(r));
    _cleanup_close_ int dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return cairn__err(err, -errno, "%s: %m", path);

    /* An existing identity: a live state is never re-initialised; a frozen
     * one (or an overlayfs view whose top lower is frozen) gets a writable
     * identity of its own, and the databases in db/ become its lowers. */
    identity old;
    cairn_error tmp = {0};
    r = identity_read(dirfd, path, &old, &tmp);
    bool had_old = r == 0;
    if (r == 0 && !old.frozen)
        return cairn__err(err, -EEXIST, "%s: already a cairn state (id %s)", path, old.id);
    /* On overlayfs the new identity goes to the upper layer and the frozen
     * lower stays as it was. A frozen directory itself would be
     * re-identified in place, and every stack that reads it as a lower
     * (by its id) would break: only when asked. */
    struct statfs fs;
    if (r == 0 && !(flags & CAIRN_INIT_OVER_FROZEN) &&
        !(fstatfs(dirfd, &fs) == 0 && fs.f_type == OVERLAYFS_SUPER_MAGIC))
        return cairn__err(err, -EEXIST,
                          "%s: a frozen state (id %s), perhaps a lower of other stacks; stack a "
                          "new state over it, or give it a writable identity in place with "
                          "--over-frozen (stacks that read it then break)",
                          path, old.id);
    if (r < 0 && r != CAIRN_E_NOTSTATE) {
        if (err)
            *err = tmp;
        return r;
    }
    if (r == CAIRN_E_NOTSTATE) {
        bool fresh = false;
        r = dir_is_fresh(dirfd, false, &fresh);
        if (r < 0)
            return cairn__err(err, r, "%s: %m", path);
        if (!fresh)
            return cairn__err(err, -ENOTEMPTY,
                              "%s: the directory is not empty and not a cairn state; "
                              "refusing to create a state in it",
                              path);
        /* What a killed init left goes before this one writes anything:
         * its database would otherwise be read as a lower of this state. */
        r = dir_is_fresh(dirfd, true, &fresh);
        if (r < 0)
            return cairn__err(err, r, "%s: removing what an earlier init left: %m", path);
    } else {
        remove_init_stages(dirfd);
    }

    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(layout_dirs); i++) {
        /* Snapshots hold layers' files as they are (setuid root, device
         * nodes): like the directories that stage and remove them, they
         * are reachable by the owner only, or any local user could run a
         * hostile layer's setuid binary. Blobs and databases are data. */
        bool private = !strcmp(layout_dirs[i], "snapshots") ||
                       !strcmp(layout_dirs[i], "active") || !strcmp(layout_dirs[i], "tmp") ||
                       !strcmp(layout_dirs[i], "quarantine");
        r = cairn__mkdir_at(dirfd, layout_dirs[i], private ? 0700 : 0755);
        if (r < 0)
            return cairn__err(err, r, "%s/%s: %m", path, layout_dirs[i]);
    }

    identity id = {.format = CAIRN_FORMAT_VERSION};
    r = cairn__random_id(id.id);
    if (r < 0)
        return cairn__err(err, r, "random id: %m");
    snprintf(id.database, sizeof(id.database), "db/%s.sqlite", id.id);

    /* Built under a name no open reads, renamed into place once complete,
     * then named by the identity: a killed init leaves no database that a
     * state would read as a lower, and the rerun removes what it left. */
    char stage[160];
    snprintf(stage, sizeof(stage), "db/%s" INIT_STAGE, id.id);
    _cleanup_free_ char *dbpath = NULL;
    if (asprintf(&dbpath, "%s/%s", path, stage) < 0)
        return cairn__err(err, -ENOMEM, "out of memory");
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(dbpath, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_EXCLUSIVE,
                             NULL);
    if (rc != SQLITE_OK) {
        r = cairn__err_db(err, db, rc, "create");
        sqlite3_close(db);
        return r;
    }
    sqlite3_close(db);
    r = cairn__db_open(dbpath, CAIRN__DB_CREATE, &db, err);
    if (r < 0)
        goto fail;
    r = cairn__db_migrate(db, dbpath, true, err);
    if (r == 0) {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "INSERT INTO meta(key, value) VALUES ('state_id', '%s'), ('created', '%lld')",
                 id.id, (long long)cairn__now());
        char *msg = NULL;
        rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
        sqlite3_free(msg);
        if (rc != SQLITE_OK)
            r = cairn__err_db(err, db, rc, "init");
    }
    if (sqlite3_close(db) != SQLITE_OK && r == 0)
        r = cairn__err(err, -EIO, "%s/%s: close", path, stage);
    if (r < 0)
        goto fail;
    /* The last connection's close checkpoints the WAL into the file and
     * removes it: the file alone is the database. */
    char side[192];
    snprintf(side, sizeof(side), "%s-wal", stage);
    struct stat sb;
    if (fstatat(dirfd, side, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
        r = cairn__err(err, -EIO, "%s/%s: left behind by its close", path, side);
        goto fail;
    }
    r = cairn__fsync_at(dirfd, stage);
    if (r == 0)
        r = cairn__rename_noreplace(dirfd, stage, dirfd, id.database);
    if (r == 0)
        r = cairn__fsync_at(dirfd, "db");
    if (r < 0) {
        cairn__err(err, r, "%s/%s: publish: %m", path, id.database);
        goto fail;
    }
    /* Publish last: the identity names a database that exists. */
    r = identity_write(dirfd, &id, err, path);
    if (r < 0)
        goto fail;
    if (out_id)
        memcpy(out_id, id.id, CAIRN_STATE_ID_LEN + 1);
    return 0;
fail:
    /* The identity may be in place though its write failed (at the fsync of
     * the directory after its rename): it goes first, or it would name the
     * database removed below. */
    {
        identity now;
        cairn_error ignored = {0};
        if (identity_read(dirfd, path, &now, &ignored) == 0 && !strcmp(now.id, id.id)) {
            /* Over a frozen state, its own identity goes back; if even
             * that fails, the new one stays with the database it names. */
            if (!had_old)
                unlinkat(dirfd, IDENTITY_FILE, 0);
            else if (identity_write(dirfd, &old, &ignored, path) < 0)
                return r;
        }
    }
    unlinkat(dirfd, id.database, 0);
    {
        static const char *const sides[] = {"", "-journal", "-wal", "-shm"};
        char name[192];
        for (size_t i = 0; i < CAIRN_ARRAY_SIZE(sides); i++) {
            snprintf(name, sizeof(name), "%s%s", id.database, sides[i]);
            unlinkat(dirfd, name, 0);
            snprintf(name, sizeof(name), "%s%s", stage, sides[i]);
            unlinkat(dirfd, name, 0);
        }
    }
    return r;
}

int cairn__tmp_name_unowned(char *out, size_t size, const char *tag)
{
    char boot[40], rnd[CAIRN_STATE_ID_LEN + 1];
    int r = cairn__boot_id(boot);
    if (r < 0)
        strcpy(boot, "noboot");
    r = cairn__random_id(rnd);
    if (r < 0)
        return r;
    if ((size_t)snprintf(out, size, "%s-%s-%.16s", boot, tag, rnd) >= size)
        return -ENAMETOOLONG;
    return 0;
}

void cairn_state_set_timeout(cairn_state *st, unsigned ms)
{
    st->timeout_ms = ms;
    for (size_t i = 0; i < st->n_layers; i++)
        if (st->layers[i].db)
            sqlite3_busy_timeout(st->layers[i].db, (int)(ms > INT_MAX ? INT_MAX : ms));
}

/* Who holds the lock file open on fd: the pid of a flock on its inode in
 * /proc/locks (one of them; the kernel names the process that took it), or
 * 0 when none is listed. */
static long lock_holder(int fd)
{
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return 0;
    FILE *f = fopen("/proc/locks", "re");
    if (!f)
        return 0;
    char line[256];
    long pid = 0;
    while (!pid && fgets(line, sizeof(line), f)) {
        long p;
        unsigned maj, min;
        unsigned long long ino;
        char kind[16];
        if (sscanf(line, "%*[^:]: %15s %*s %*s %ld %x:%x:%llu", kind, &p, &maj, &min, &ino) == 5 &&
            !strcmp(kind, "FLOCK") && ino == (unsigned long long)sb.st_ino &&
            maj == major(sb.st_dev) && min == minor(sb.st_dev) && p != getpid())
            pid = p;
    }
    fclose(f);
    return pid;
}

int cairn__tmp_name(cairn_state *st, char *out, size_t size, const char *tag)
{
    int r = stage_owner(st);
    if (r < 0)
        return r;
    char boot[40], rnd[CAIRN_STATE_ID_LEN + 1];
    if (cairn__boot_id(boot) < 0)
        strcpy(boot, "noboot");
    r = cairn__random_id(rnd);
    if (r < 0)
        return r;
    if ((size_t)snprintf(out, size, "%s-%s-%s-%.16s", boot, st->stage_owner, tag, rnd) >= size)
        return -ENAMETOOLONG;
    return 0;
}

int cairn__owner_token(cairn_state *st, char *out, size_t size)
{
    int r = stage_owner(st);
    if (r < 0)
        return r;
    char boot[40];
    if (cairn__boot_id(boot) < 0)
        strcpy(boot, "noboot");
    if ((size_t)snprintf(out, size, "%s-%s", boot, st->stage_owner) >= size)
        return -ENAMETOOLONG;
    return 0;
}

bool cairn__owner_live(cairn_state *st, const char *token)
{
    char boot[40];
    if (cairn__boot_id(boot) < 0)
        return false;
    size_t blen = strlen(boot);
    if (strncmp(token, boot, blen) != 0 || token[blen] != '-' ||
        strlen(token + blen + 1) != OWNER_LEN || !hex_n(token + blen + 1, OWNER_LEN))
        return false;
    int lockfd = openat(st->dirfd, "lock", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    bool live = lockfd >= 0 && !owner_gone(lockfd, token + blen + 1);
    if (lockfd >= 0)
        close(lockfd);
    return live;
}

int cairn__lock(cairn_state *st, bool exclusive, cairn_error *err)
{
    if (st->lockdepth > 0 && !exclusive) {
        st->lockdepth++;
        return 0;
    }
    if (st->lockfd < 0) {
        int fd = openat(st->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
            return cairn__err(err, -errno, "%s/lock: %m", st->path);
        st->lockfd = fd;
    }
    /* Poll rather than block: a holder that never lets go (a hung engine)
     * must be a CAIRN_E_BUSY naming it, not a call that never returns. */
    uint64_t waited = 0, step = 1; /* ms */
    while (flock(st->lockfd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK)
            return cairn__err(err, -errno, "%s/lock: %m", st->path);
        if (waited >= st->timeout_ms) {
            long pid = lock_holder(st->lockfd);
            if (pid > 0)
                return cairn__err(err, CAIRN_E_BUSY, "%s/lock: held by process %ld (waited %llu ms)",
                                  st->path, pid, (unsigned long long)waited);
            return cairn__err(err, CAIRN_E_BUSY, "%s/lock: held by another process (waited %llu ms)",
                              st->path, (unsigned long long)waited);
        }
        if (step > st->timeout_ms - waited)
            step = st->timeout_ms - waited;
        struct timespec ts = {(time_t)(step / 1000), (long)(step % 1000) * 1000000};
        nanosleep(&ts, NULL);
        waited += step;
        step = step < 64 ? step * 2 : 100;
    }
    st->lockdepth++;
    return 0;
}

void cairn__unlock(cairn_state *st)
{
    if (st->lockdepth <= 0)
        return;
    if (--st->lockdepth == 0)
        flock(st->lockfd, LOCK_UN);
}
