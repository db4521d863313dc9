/* merge.c: the eager merge of states and the flatten of a stack
 * (cairn/merge.h).
 *
 * The metadata merge is table-driven: `merge_tables[]` holds, for each table
 * of the schema that is merged, its columns, its key and its merge rule as
 * the ON CONFLICT clause of an upsert. Every rule is commutative, associative
 * and idempotent (min of creation times, max of use times, newest-wins with
 * a total order for registers), so the order of the sources does not matter.
 * Tables that are local to a state (`active`, `leases`, `lease_resources`,
 * `meta`) are listed in `local_tables[]` and never merged; a unit test
 * checks that every table of the schema is in one list or the other.
 *
 * A merge, in order:
 *   1. open every source and every layer of every source (a source may be a
 *      stack: its whole union is taken); a newer format or schema is refused
 *      here, before anything is written;
 *   2. create the destination when missing (built aside, renamed into place);
 *   3. stage: for each source layer, ATTACH its database read-only (immutable
 *      when frozen) and copy its rows into temp tables of the destination's
 *      connection, tagged with the layer, in one read transaction;
 *   4. objects: for each staged blob and snapshot, place the object into the
 *      destination (link, reflink, copy or move; staged under tmp/ and renamed
 *      without replacing; EEXIST = already there, then checked to be the same
 *      bytes); a snapshot tree that is not all links (copied file by file,
 *      hardlink groups and metadata kept) must tar to its row's digest before
 *      it is renamed, else it is refused; each object that is now present is recorded in a temp set;
 *      then one syncfs makes them durable;
 *   5. rows: one transaction runs each table's upsert from the staged rows;
 *      blob and snapshot rows only for objects in the present set, so no row
 *      ever names a missing object;
 *   6. with MOVE, the consumed sources are removed.
 * Every step is idempotent: a merge killed at any point and run again
 * completes, and the destination passes fsck in between (at worst it holds
 * objects no row names yet, which fsck reports and gc removes).
 *
 * Flatten is the same with the stack's top as destination and its lower
 * layers as sources; the lowers file is rewritten last.
 */
#include "combine/combine.h"
#include "snapshot/snapshot-private.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>

#define CAIRN_PATH_MAX 4096

/* ---- the merge rules, one line a table -------------------------------- */

/* Each rule updates a row only when the result changes (the WHERE of the
 * upsert), so merging what is there already writes nothing. */

typedef struct merge_table {
    const char *name;
    const char *cols;
    const char *key;
    const char *object; /* the column naming an object that must be present, or NULL */
    const char *rule;   /* ON CONFLICT(key) ... */
} merge_table;

static const merge_table merge_tables[] = {
    {"blobs", "digest, size, media_type, created", "digest", "digest",
     "DO UPDATE SET created = min(created, excluded.created), "
     "media_type = max(media_type, excluded.media_type) "
     "WHERE excluded.created < created OR excluded.media_type > media_type"},
    {"blob_labels", "digest, key, value, updated", "digest, key", NULL,
     "DO UPDATE SET value = excluded.value, updated = excluded.updated WHERE "
     "(excluded.updated, excluded.value IS NOT NULL, coalesce(excluded.value, '')) > "
     "(updated, value IS NOT NULL, coalesce(value, ''))"},
    {"snapshots", "chain_id, parent, diff_id, size, created, tar_digest", "chain_id", "chain_id",
     "DO UPDATE SET created = min(created, excluded.created), "
     "tar_digest = max(tar_digest, excluded.tar_digest) "
     "WHERE excluded.created < created OR excluded.tar_digest > tar_digest"},
    {"images", "name, manifest, config, top, updated", "name", NULL,
     "DO UPDATE SET manifest = excluded.manifest, config = excluded.config, top = excluded.top, "
     "updated = excluded.updated WHERE (excluded.updated, excluded.manifest, excluded.config, "
     "excluded.top) > (updated, manifest, config, top)"},
    {"cache_results", "key, result, kind, created", "key, result", NULL,
     "DO UPDATE SET created = min(created, excluded.created), kind = max(kind, excluded.kind) "
     "WHERE excluded.created < created OR excluded.kind > kind"},
    {"cache_links", "parent, input, output, op, selector, child",
     "parent, input, output, op, selector, child", NULL, "DO NOTHING"},
    {"usage", "object, state, last_used, hits", "object, state", NULL,
     "DO UPDATE SET last_used = max(last_used, excluded.last_used), "
     "hits = max(hits, excluded.hits) "
     "WHERE excluded.last_used > last_used OR excluded.hits > hits"},
    {"volume_versions", "name, version, created", "name, version", NULL,
     /* max: the module's own rule (lib/volume.c), the current version is
      * the newest by (created, version) */
     "DO UPDATE SET created = max(created, excluded.created) WHERE excluded.created > created"},
    /* containerd's ChainIDs -> cairn's (lib/containerd/): a union */
    {"containerd_names", "name, chain_id, created", "name, chain_id", "chain_id",
     "DO UPDATE SET created = min(created, excluded.created) WHERE excluded.created < created"},
};

/* Local to one state: never merged, never frozen into a copy (but meta).
 * cache_result_refs is derived from cache_results by triggers: each
 * database keeps its own, and merged rows of cache_results update it. */
static const char *const local_tables[] = {"meta", "active", "leases", "lease_resources",
                                           "cache_result_refs", "containerd_snapshots",
                                           "containerd_content"};

size_t cairn__merge_tables(const char ***merged, const char *const **local, size_t *n_local);
size_t cairn__merge_tables(const char ***merged, const char *const **local, size_t *n_local)
{
    static const char *names[CAIRN_ARRAY_SIZE(merge_tables)];
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(merge_tables); i++)
        names[i] = merge_tables[i].name;
    *merged = names;
    *local = local_tables;
    *n_local = CAIRN_ARRAY_SIZE(local_tables);
    return CAIRN_ARRAY_SIZE(merge_tables);
}

/* ---- helpers ---------------------------------------------------------- */

static int exec_fmt(sqlite3 *db, cairn_error *err, const char *fmt, ...) CAIRN_PRINTF(3, 4);
static int exec_fmt(sqlite3 *db, cairn_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    if (!sql)
        return cairn__err(err, -ENOMEM, "out of memory");
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_free(sql);
    if (rc != SQLITE_OK)
        return cairn__err_db(err, db, rc, "merge");
    return 0;
}

/* The directory name of a snapshot: the hex of its chain id. */
static const char *snap_dirname(const char *chain_id)
{
    if (!strncmp(chain_id, "sha256:", 7))
        return chain_id + 7;
    return chain_id;
}

static bool safe_name(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && strlen(s) < 200;
}

/* Compare two open files byte for byte: 1 equal, 0 different, <0 error. */
static int same_bytes(int a, int b)
{
    enum { N = 1 << 20 };
    _cleanup_free_ char *x = malloc(N), *y = malloc(N);
    if (!x || !y)
        return -ENOMEM;
    off_t off = 0;
    for (;;) {
        ssize_t na = pread(a, x, N, off), nb = pread(b, y, N, off);
        if (na < 0 || nb < 0)
            return -errno;
        if (na != nb || memcmp(x, y, (size_t)na) != 0)
            return 0;
        if (na == 0)
            return 1;
        off += na;
    }
}

static int hash_is(int fd, const char *hex)
{
    char got[CAIRN_DIGEST_LEN + 1];
    if (lseek(fd, 0, SEEK_SET) < 0)
        return -errno;
    int64_t n = cairn__sha256_fd(fd, got);
    if (n < 0)
        return (int)n;
    return !strcmp(got + 7, hex);
}

/* ---- rows of a database file, without a state ------------------------- */

int cairn__merge_db_rows(sqlite3 *db, const char *src_path, cairn_error *err)
{
    _cleanup_free_ char *uri = cairn__db_uri(src_path, true);
    if (!uri)
        return cairn__err(err, -ENOMEM, "out of memory");
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "ATTACH ? AS cairn_rows", -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, 1, uri, -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_OK) {
        int r = cairn__err_db(err, db, rc, NULL);
        return cairn__err_prefix(err, r, "%s: attach", src_path);
    }
    int before = sqlite3_total_changes(db);
    int r = exec_fmt(db, err, "BEGIN IMMEDIATE");
    for (size_t i = 0; r == 0 && i < CAIRN_ARRAY_SIZE(merge_tables); i++) {
        const merge_table *t = &merge_tables[i];
        r = exec_fmt(db, err,
                     "INSERT INTO main.%s(%s) SELECT %s FROM cairn_rows.%s WHERE true "
                     "ON CONFLICT(%s) %s",
                     t->name, t->cols, t->cols, t->name, t->key, t->rule);
        if (r < 0)
            cairn__err_prefix(err, r, "%s: merge %s", src_path, t->name);
    }
    if (r == 0)
        r = exec_fmt(db, err, "COMMIT");
    else
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    int changed = sqlite3_total_changes(db) - before;
    sqlite3_exec(db, "DETACH cairn_rows", NULL, NULL, NULL);
    return r < 0 ? r : changed;
}

/* ---- side directories --------------------------------------------------- */

char *cairn__side_name(const char *path, const char *tag)
{
    char *p = NULL;
    if (asprintf(&p, "%s.%s-%ld", path, tag, (long)getpid()) < 0)
        return NULL;
    return p;
}

void cairn__side_sweep(const char *path, const char *tag)
{
    _cleanup_free_ char *dir = strdup(path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : dir;
    const char *parent = slash ? (slash == dir ? "/" : dir) : ".";
    if (slash)
        *slash = 0;
    char prefix[512];
    snprintf(prefix, sizeof(prefix), "%s.%s-", base, tag);
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
            continue;
        char *end;
        long pid = strtol(de->d_name + strlen(prefix), &end, 10);
        if (*end || pid <= 0)
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* its process may still be at work */
        cairn__rm_rf_at(dirfd(d), de->d_name);
    }
    closedir(d);
}

/* ---- a merge in progress ---------------------------------------------- */

typedef struct src_layer {
    cairn_state *st; /* the source state holding the layer (borrowed) */
    size_t li;       /* the layer's index in st */
    bool consume;    /* MOVE: objects are renamed out of it */
} src_layer;

typedef struct merger {
    cairn_state *dst;
    cairn_merge_options opts;
    cairn_merge_stats stats;
    src_layer *layers;
    size_t n_layers;
    uint64_t total, done;
    sqlite3_stmt *refuse_ins, *refuse_del;
    cairn__strset *refused; /* names left out so far (rare) */
} merger;

static void report(merger *m, const char *kind, const char *name, const char *problem,
                   const char *path, const char *other, const char *fmt, ...) CAIRN_PRINTF(7, 8);
static void report(merger *m, const char *kind, const char *name, const char *problem,
                   const char *path, const char *other, const char *fmt, ...)
{
    char detail[512] = "";
    va_list ap;
    va_start(ap, fmt);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    vsnprintf(detail, sizeof(detail), fmt, ap);
#pragma GCC diagnostic pop
    va_end(ap);
    m->stats.refused++;
    if (m->opts.problem) {
        cairn_merge_problem p = {kind, name, problem, path, other ? other : "", detail};
        m->opts.problem(m->opts.problem_userdata, &p);
    }
}

/* Objects are placed before any row names them: a stop here leaves
 * unnamed objects only, which a rerun takes and gc removes. */
static int tick(merger *m, cairn_error *err)
{
    m->done++;
    if (m->done % 1024 == 0 || m->done == m->total)
        return cairn__progress(m->opts.progress, m->opts.progress_userdata, m->done, m->total,
                               "merge", err);
    return 0;
}

static int step_name(merger *m, sqlite3_stmt **sp, const char *sql, const char *name,
                     cairn_error *err)
{
    sqlite3 *db = m->dst->layers[0].db;
    if (!*sp) {
        int rc = sqlite3_prepare_v2(db, sql, -1, sp, NULL);
        if (rc != SQLITE_OK)
            return cairn__err_db(err, db, rc, "merge");
    }
    sqlite3_bind_text(*sp, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(*sp);
    sqlite3_reset(*sp);
    if (rc != SQLITE_DONE)
        return cairn__err_db(err, db, rc, "merge");
    return 0;
}

/* An object is left out: no row may name it, unless another copy of it is
 * placed later. Refusals are rare: the common path touches no table. */
static int refuse(merger *m, const char *name, cairn_error *err)
{
    if (!m->refused && !(m->refused = cairn__strset_new()))
        return cairn__err(err, -ENOMEM, "out of memory");
    if (cairn__strset_add(m->refused, name) < 0)
        return cairn__err(err, -ENOMEM, "out of memory");
    return step_name(m, &m->refuse_ins,
                     "INSERT OR IGNORE INTO temp.cairn_merge_refused(name) VALUES (?)", name, err);
}

/* The object is in the destination now. */
static int have_add(merger *m, const char *name, cairn_error *err)
{
    if (!m->refused || !cairn__strset_has(m->refused, name))
        return 0;
    return step_name(m, &m->refuse_del, "DELETE FROM temp.cairn_merge_refused WHERE name = ?",
                     name, err);
}

static int clone_how(const merger *m)
{
    switch (m->opts.mode) {
    case CAIRN_MERGE_LINK:
        return 'l';
    case CAIRN_MERGE_REFLINK:
        return 'r';
    case CAIRN_MERGE_COPY:
        return 'c';
    default:
        return 0;
    }
}

static void count_clone(merger *m, int kind, uint64_t size)
{
    if (kind == 0)
        m->stats.linked++;
    else if (kind == 1)
        m->stats.reflinked++;
    else {
        m->stats.copied++;
        m->stats.bytes_copied += size;
    }
}

/* ---- blobs ------------------------------------------------------------- */

/* Two different files claim the same name: keep the one whose bytes hash to
 * it. Returns 1 when the destination's copy stays, 0 when the source's must
 * replace it (the bad copy was quarantined), <0 on error. */
static int resolve_conflict(merger *m, const char *digest, int sfd, int dfd, int dbfd,
                            const char *spath, const char *dpath, cairn_error *err)
{
    const char *hex = cairn__digest_hex(digest);
    int sgood = hash_is(sfd, hex), dgood = hash_is(dfd, hex);
    if (sgood < 0)
        return cairn__err(err, sgood, "blob %s: read %s: %m", digest, spath);
    if (dgood < 0)
        return cairn__err(err, dgood, "blob %s: read %s: %m", digest, dpath);
    if (dgood) {
        report(m, "blob", digest, "corrupt", spath, dpath,
               "two copies differ; %s does not hash to its name and was left out, %s is kept",
               spath, dpath);
        return 1;
    }
    if (!sgood) {
        report(m, "blob", digest, "corrupt", spath, dpath,
               "two copies differ and neither %s nor %s hashes to its name", spath, dpath);
        return 1;
    }
    report(m, "blob", digest, "corrupt", dpath, spath,
           "two copies differ; %s does not hash to its name and was quarantined, %s replaces it",
           dpath, spath);
    int r = cairn__quarantine(m->dst, dbfd, hex, "blob", err);
    return r < 0 ? cairn__err_prefix(err, r, "blob %s: %s", digest, dpath) : 0;
}

static int place_blob(merger *m, src_layer *sl, const char *digest, uint64_t size,
                      cairn_error *err)
{
    if (cairn_digest_check(digest, NULL) < 0) {
        report(m, "blob", digest, "corrupt", sl->st->layers[sl->li].root, NULL,
               "a row names a malformed digest");
        return refuse(m, digest, err);
    }
    cairn_state *s = sl->st;
    cairn__layer *L = &s->layers[sl->li];
    const char *hex = cairn__digest_hex(digest);
    int sbfd = cairn__layer_blobfd(s, sl->li, NULL);
    int dbfd = cairn__layer_blobfd(m->dst, 0, err);
    if (dbfd < 0)
        return dbfd;
    char spath[CAIRN_PATH_MAX], dpath[CAIRN_PATH_MAX];
    snprintf(spath, sizeof(spath), "%s/blobs/sha256/%s", L->root, hex);
    snprintf(dpath, sizeof(dpath), "%s/blobs/sha256/%s", m->dst->path, hex);

    /* One stat of the source and one link in the common case (what cp -al
     * costs); the destination is looked at only when the name is taken. */
    bool fetched = false;
    for (int attempt = 0; attempt < 3; attempt++) {
        struct stat ssb, dsb;
        bool shave = sbfd >= 0 && fstatat(sbfd, hex, &ssb, AT_SYMLINK_NOFOLLOW) == 0 &&
                     S_ISREG(ssb.st_mode);
        bool sgood = shave && (uint64_t)ssb.st_size == size;
        if (!sgood) {
            bool dhave = fstatat(dbfd, hex, &dsb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(dsb.st_mode);
            if (!shave && !dhave && L->lazy && !fetched) {
                /* A lazy lower's object is there to be fetched (core.h):
                 * the union holds it. A fetch that fails fails the merge:
                 * an unreachable remote is not a damaged source. */
                int r = cairn__lower_fetch(s, sl->li, CAIRN__LOWER_BLOB, digest, err);
                if (r < 0)
                    return r;
                fetched = true;
                if (sbfd < 0 && (sbfd = cairn__layer_blobfd(s, sl->li, err)) < 0)
                    return sbfd;
                continue;
            }
            if (shave && !(dhave && ssb.st_dev == dsb.st_dev && ssb.st_ino == dsb.st_ino))
                report(m, "blob", digest, "corrupt", spath, dhave ? dpath : NULL,
                       "the file has %lld bytes, its row says %llu; left out%s",
                       (long long)ssb.st_size, (unsigned long long)size,
                       dhave ? ", the destination's copy is kept" : "");
            else if (!shave && !dhave)
                report(m, "blob", digest, "missing", spath, NULL,
                       "recorded in %s but its file is missing; left out", L->root);
            if (!dhave)
                return refuse(m, digest, err);
            m->stats.present++;
            return have_add(m, digest, err);
        }
        if (m->opts.verify) {
            _cleanup_close_ int sfd = openat(sbfd, hex, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            int ok = sfd < 0 ? -errno : hash_is(sfd, hex);
            if (ok < 0)
                return cairn__err(err, ok, "blob %s: read %s: %m", digest, spath);
            if (!ok) {
                report(m, "blob", digest, "corrupt", spath, NULL,
                       "its bytes do not hash to its name; left out");
                struct stat d2;
                if (fstatat(dbfd, hex, &d2, AT_SYMLINK_NOFOLLOW) == 0)
                    return 0; /* the destination holds it already */
                return refuse(m, digest, err);
            }
        }
        int r = -EXDEV;
        if (sl->consume) {
            r = cairn__rename_noreplace(sbfd, hex, dbfd, hex);
            if (r == 0) {
                m->stats.moved++;
                return have_add(m, digest, err);
            }
            if (r != -EEXIST && r != -EXDEV)
                return cairn__err(err, r, "blob %s: move %s to %s: %m", digest, spath, dpath);
        }
        if (r != -EEXIST) {
            r = cairn__clone_file_at(sbfd, hex, dbfd, hex, clone_how(m));
            if (r >= 0) {
                count_clone(m, r, size);
                return have_add(m, digest, err);
            }
            if (r == -ENOENT)
                continue; /* moved under us: look again */
            if (r != -EEXIST)
                return cairn__err(err, r, "blob %s: %s %s to %s: %m", digest,
                                  m->opts.mode == CAIRN_MERGE_LINK ? "link" : "copy", spath,
                                  dpath);
        }
        /* The name is taken: the same file, the same bytes, or a conflict. */
        if (fstatat(dbfd, hex, &dsb, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (ssb.st_dev == dsb.st_dev && ssb.st_ino == dsb.st_ino) {
            m->stats.present++;
            return have_add(m, digest, err);
        }
        _cleanup_close_ int sfd = openat(sbfd, hex, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        _cleanup_close_ int dfd = openat(dbfd, hex, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (sfd < 0 || dfd < 0)
            continue;
        int same = ssb.st_size == dsb.st_size ? same_bytes(sfd, dfd) : 0;
        if (same < 0)
            return cairn__err(err, same, "blob %s: compare %s and %s: %m", digest, spath, dpath);
        if (same) {
            m->stats.present++;
            return have_add(m, digest, err);
        }
        int keep = resolve_conflict(m, digest, sfd, dfd, dbfd, spath, dpath, err);
        if (keep < 0)
            return keep;
        if (keep)
            return have_add(m, digest, err);
        /* the destination's bad copy is gone: place the source's */
    }
    return cairn__err(err, -EAGAIN, "blob %s: %s keeps changing", digest, dpath);
}

/* ---- snapshot trees ----------------------------------------------------- */

/* Copy every xattr of the source entry (fd, or the path of a symlink, a
 * device or a fifo: those cannot be opened for xattrs) onto the copy, of
 * any size. The DiffID covers them (overlayfs' opaque markers among them). */
static int copy_xattrs(int sfd, const char *spath, int dfd, const char *dpath)
{
    ssize_t n = sfd >= 0 ? flistxattr(sfd, NULL, 0) : llistxattr(spath, NULL, 0);
    if (n < 0)
        return errno == ENOTSUP ? 0 : -errno;
    if (n == 0)
        return 0;
    _cleanup_free_ char *names = malloc((size_t)n);
    if (!names)
        return -ENOMEM;
    n = sfd >= 0 ? flistxattr(sfd, names, (size_t)n) : llistxattr(spath, names, (size_t)n);
    if (n < 0)
        return -errno;
    for (char *k = names; k < names + n; k += strlen(k) + 1) {
        ssize_t v = sfd >= 0 ? fgetxattr(sfd, k, NULL, 0) : lgetxattr(spath, k, NULL, 0);
        if (v < 0)
            return -errno;
        _cleanup_free_ char *val = malloc(v ? (size_t)v : 1);
        if (!val)
            return -ENOMEM;
        v = sfd >= 0 ? fgetxattr(sfd, k, val, (size_t)v) : lgetxattr(spath, k, val, (size_t)v);
        if (v < 0)
            return -errno;
        /* One the destination cannot hold (ENOTSUP, EPERM) is left out:
         * the check of the copy's tar digest then refuses it. */
        if ((dfd >= 0 ? fsetxattr(dfd, k, val, (size_t)v, 0)
                      : lsetxattr(dpath, k, val, (size_t)v, 0)) < 0 &&
            errno != ENOTSUP && errno != EPERM)
            return -errno;
    }
    return 0;
}

/* A tree being copied: its root (for the hardlinks of a group, made in the
 * copy to the group's first copied name) and the groups seen so far. */
typedef struct clone_ctx {
    int how;
    int rootfd;       /* the copy's root */
    uint64_t *bytes; /* grows by the bytes copied (not linked, not reflinked) */
    bool cloned;     /* some file was reflinked or copied, not linked */
    struct hl {
        dev_t dev;
        ino_t ino;
        char *path;   /* of its first name in the copy, from the root */
    } *hl;
    size_t n_hl, cap_hl;
} clone_ctx;

static int clone_tree(clone_ctx *c, int sfd, int dfd, const char *rel);

/* "/proc/self/fd/<fd>/<name>": a path for the l*xattr calls. */
static void fd_path(char *out, size_t size, int fd, const char *name)
{
    snprintf(out, size, "/proc/self/fd/%d/%s", fd, name);
}

/* Owner, then mode (chown clears set-id bits), then xattrs (chown clears
 * security.capability), then times: what a link would have kept. */
static int clone_meta(int sfd, const char *sname, int dfd, const char *name,
                      const struct stat *sb, int s2, int d2)
{
    char sp[CAIRN_PATH_MAX], dp[CAIRN_PATH_MAX];
    fd_path(sp, sizeof(sp), sfd, sname);
    fd_path(dp, sizeof(dp), dfd, name);
    if (fchownat(dfd, name, sb->st_uid, sb->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (!S_ISLNK(sb->st_mode) && fchmodat(dfd, name, sb->st_mode & 07777, 0) < 0)
        return -errno;
    int r = copy_xattrs(s2, sp, d2, dp);
    if (r < 0)
        return r;
    struct timespec ts[2] = {sb->st_atim, sb->st_mtim};
    if (utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    return 0;
}

static int clone_entry(clone_ctx *c, int sfd, int dfd, const char *rel, const char *name)
{
    struct stat sb;
    if (fstatat(sfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    char path[CAIRN_PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s%s%s", rel, *rel ? "/" : "", name) >= sizeof(path))
        return -ENAMETOOLONG;
    if (S_ISDIR(sb.st_mode)) {
        if (mkdirat(dfd, name, 0700) < 0)
            return -errno;
        _cleanup_close_ int s2 = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_close_ int d2 = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (s2 < 0 || d2 < 0)
            return -errno;
        int r = clone_tree(c, s2, d2, path);
        return r < 0 ? r : clone_meta(sfd, name, dfd, name, &sb, s2, d2);
    }
    if (S_ISREG(sb.st_mode)) {
        /* A second name of a group copied already: a link to the copy, so
         * the group stays one group (the canonical tar has a link entry). */
        if (sb.st_nlink > 1) {
            for (size_t i = 0; i < c->n_hl; i++)
                if (c->hl[i].dev == sb.st_dev && c->hl[i].ino == sb.st_ino)
                    return linkat(c->rootfd, c->hl[i].path, dfd, name, 0) < 0 ? -errno : 0;
        }
        int r = cairn__clone_file_at(sfd, name, dfd, name, c->how);
        if (r < 0)
            return r;
        if (r > 0) {
            _cleanup_close_ int s2 = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            _cleanup_close_ int d2 = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (s2 < 0 || d2 < 0)
                return -errno;
            int k = r;
            r = clone_meta(sfd, name, dfd, name, &sb, s2, d2);
            if (r < 0)
                return r;
            c->cloned = true;
            if (k == 2)
                *c->bytes += (uint64_t)sb.st_size;
        }
        if (sb.st_nlink > 1) {
            if (c->n_hl == c->cap_hl) {
                size_t nc = c->cap_hl ? c->cap_hl * 2 : 16;
                struct hl *nh = realloc(c->hl, nc * sizeof(*nh));
                if (!nh)
                    return -ENOMEM;
                c->hl = nh;
                c->cap_hl = nc;
            }
            char *p = strdup(path);
            if (!p)
                return -ENOMEM;
            c->hl[c->n_hl++] = (struct hl){sb.st_dev, sb.st_ino, p};
        }
        return 0;
    }
    if (S_ISLNK(sb.st_mode)) {
        char target[CAIRN_PATH_MAX];
        ssize_t n = readlinkat(sfd, name, target, sizeof(target) - 1);
        if (n < 0)
            return -errno;
        target[n] = 0;
        if (symlinkat(target, dfd, name) < 0)
            return -errno;
        return clone_meta(sfd, name, dfd, name, &sb, -1, -1);
    }
    /* Devices (overlayfs whiteouts are 0/0 character devices), fifos, sockets. */
    if (mknodat(dfd, name, sb.st_mode, sb.st_rdev) < 0)
        return -errno;
    return clone_meta(sfd, name, dfd, name, &sb, -1, -1);
}

static int clone_tree(clone_ctx *c, int sfd, int dfd, const char *rel)
{
    int fd = dup(sfd);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    rewinddir(d);
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        r = clone_entry(c, sfd, dfd, rel, de->d_name);
    }
    closedir(d);
    return r;
}

int cairn__snapshot_clone(cairn_state *owner, int ssfd, const char *name, int tfd, int dsfd,
                          int how, const char *expect, uint64_t *bytes, char *got)
{
    struct stat sb;
    if (fstatat(ssfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    char tmp[128];
    int r = owner ? cairn__tmp_name(owner, tmp, sizeof(tmp), "snap")
                  : cairn__tmp_name_unowned(tmp, sizeof(tmp), "snap");
    if (r < 0)
        return r;
    if (mkdirat(tfd, tmp, 0700) < 0)
        return -errno;
    uint64_t copied = 0;
    {
        _cleanup_close_ int s2 = openat(ssfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_close_ int d2 = openat(tfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        clone_ctx c = {.how = how, .rootfd = d2, .bytes = &copied};
        bool cloned = false;
        r = s2 < 0 || d2 < 0 ? -errno : clone_tree(&c, s2, d2, "");
        for (size_t i = 0; i < c.n_hl; i++)
            free(c.hl[i].path);
        free(c.hl);
        cloned = c.cloned;
        if (r == 0)
            r = clone_meta(ssfd, name, tfd, tmp, &sb, s2, d2);
        /* A copy is made by this code, file by file: before anything names
         * it, it must tar to the digest its name stands for. (A tree of
         * links shares the source's inodes.) */
        if (r == 0 && cloned && expect && *expect) {
            char dg[CAIRN_DIGEST_LEN + 1];
            r = cairn__tar_digest(d2, name, 0, dg, NULL, NULL);
            if (r == 0 && strcmp(dg, expect) != 0) {
                if (got)
                    memcpy(got, dg, sizeof(dg));
                r = CAIRN_E_MISMATCH;
            }
        }
    }
    if (r == 0)
        r = cairn__rename_noreplace(tfd, tmp, dsfd, name);
    if (r < 0)
        cairn__rm_rf_at(tfd, tmp);
    else
        *bytes += copied;
    return r;
}

static int place_snapshot(merger *m, src_layer *sl, const char *chain_id, const char *tar_digest,
                          cairn_error *err)
{
    const char *name = snap_dirname(chain_id);
    cairn_state *s = sl->st;
    cairn__layer *L = &s->layers[sl->li];
    if (!safe_name(name)) {
        report(m, "snapshot", chain_id, "corrupt", L->root, NULL, "a row names an unsafe id");
        return refuse(m, chain_id, err);
    }
    int ssfd = cairn__layer_snapfd(s, sl->li, NULL);
    int dsfd = cairn__layer_snapfd(m->dst, 0, err);
    if (dsfd < 0)
        return dsfd;
    char spath[CAIRN_PATH_MAX];
    snprintf(spath, sizeof(spath), "%s/snapshots/%s", L->root, name);
    struct stat sb, db;
    bool shave = ssfd >= 0 && fstatat(ssfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
                 S_ISDIR(sb.st_mode);
    if (fstatat(dsfd, name, &db, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(db.st_mode)) {
        m->stats.present++;
        return have_add(m, chain_id, err);
    }
    if (!shave && L->lazy) { /* fetched, as a blob above */
        int r = cairn__lower_fetch(s, sl->li, CAIRN__LOWER_SNAPSHOT, chain_id, err);
        if (r < 0)
            return r;
        if (ssfd < 0 && (ssfd = cairn__layer_snapfd(s, sl->li, err)) < 0)
            return ssfd;
        shave = fstatat(ssfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode);
    }
    if (!shave) {
        report(m, "snapshot", chain_id, "missing", spath, NULL,
               "recorded in %s but its directory is missing; left out", L->root);
        return refuse(m, chain_id, err);
    }
    if (sl->consume) {
        int r = cairn__rename_noreplace(ssfd, name, dsfd, name);
        if (r == 0 || r == -EEXIST) {
            m->stats.moved += r == 0;
            m->stats.present += r == -EEXIST;
            return have_add(m, chain_id, err);
        }
        if (r != -EXDEV)
            return cairn__err(err, r, "snapshot %s: move %s: %m", chain_id, spath);
    }
    int tfd = cairn__tmpfd(m->dst, err);
    if (tfd < 0)
        return tfd;
    uint64_t bytes = 0;
    char got[CAIRN_DIGEST_LEN + 1] = "";
    int r = cairn__snapshot_clone(m->dst, ssfd, name, tfd, dsfd, clone_how(m), tar_digest, &bytes,
                                  got);
    if (r == -EEXIST) {
        m->stats.present++;
        return have_add(m, chain_id, err);
    }
    if (r == CAIRN_E_MISMATCH) {
        report(m, "snapshot", chain_id, "corrupt", spath, NULL,
               "its copy tars to %s, its name stands for %s; left out", got, tar_digest);
        return refuse(m, chain_id, err);
    }
    if (r < 0)
        return cairn__err(err, r, "snapshot %s: %s %s into %s: %m", chain_id,
                          m->opts.mode == CAIRN_MERGE_LINK ? "link" : "copy", spath,
                          m->dst->path);
    if (bytes) {
        m->stats.copied++;
        m->stats.bytes_copied += bytes;
    } else {
        m->stats.linked++;
    }
    return have_add(m, chain_id, err);
}

/* ---- staging rows ------------------------------------------------------ */

static int stage_create(sqlite3 *db, cairn_error *err)
{
    int r = exec_fmt(db, err,
                     "CREATE TEMP TABLE IF NOT EXISTS cairn_merge_refused(name TEXT PRIMARY KEY) "
                     "WITHOUT ROWID; DELETE FROM temp.cairn_merge_refused;");
    for (size_t i = 0; r == 0 && i < CAIRN_ARRAY_SIZE(merge_tables); i++) {
        const merge_table *t = &merge_tables[i];
        r = exec_fmt(db, err,
                     "CREATE TEMP TABLE IF NOT EXISTS cairn_stage_%s AS "
                     "SELECT 0 AS src, %s FROM main.%s WHERE 0; DELETE FROM temp.cairn_stage_%s;",
                     t->name, t->cols, t->name, t->name);
    }
    return r;
}

static int stage_drop(sqlite3 *db)
{
    sqlite3_exec(db, "DROP TABLE IF EXISTS temp.cairn_merge_refused", NULL, NULL, NULL);
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(merge_tables); i++) {
        char *sql = sqlite3_mprintf("DROP TABLE IF EXISTS temp.cairn_stage_%s",
                                    merge_tables[i].name);
        if (sql)
            sqlite3_exec(db, sql, NULL, NULL, NULL);
        sqlite3_free(sql);
    }
    return 0;
}

/* Copy the rows of source layer k into the staging tables, in one read
 * transaction of that layer (a consistent point in time of a live source). */
static int stage_layer(merger *m, size_t k, cairn_error *err)
{
    sqlite3 *db = m->dst->layers[0].db;
    cairn__layer *L = &m->layers[k].st->layers[m->layers[k].li];
    bool immutable = m->layers[k].li > 0 || m->layers[k].st->frozen;
    _cleanup_free_ char *uri = cairn__db_uri(L->db_path, immutable);
    if (!uri)
        return cairn__err(err, -ENOMEM, "out of memory");
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "ATTACH ? AS cairn_src", -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, 1, uri, -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_OK) {
        int r = cairn__err_db(err, db, rc, NULL);
        return cairn__err_prefix(err, r, "%s: attach", L->db_path);
    }
    int r = exec_fmt(db, err, "BEGIN");
    for (size_t i = 0; r == 0 && i < CAIRN_ARRAY_SIZE(merge_tables); i++) {
        const merge_table *t = &merge_tables[i];
        /* A source of an older schema lacks the newer tables: none of their rows. */
        sqlite3_stmt *q = NULL;
        bool has = false;
        if (sqlite3_prepare_v2(db, "SELECT 1 FROM cairn_src.sqlite_master WHERE type = 'table' "
                                   "AND name = ?", -1, &q, NULL) == SQLITE_OK) {
            sqlite3_bind_text(q, 1, t->name, -1, SQLITE_STATIC);
            has = sqlite3_step(q) == SQLITE_ROW;
        }
        sqlite3_finalize(q);
        if (!has)
            continue;
        r = exec_fmt(db, err,
                     "INSERT INTO temp.cairn_stage_%s(src, %s) SELECT %lld, %s FROM cairn_src.%s",
                     t->name, t->cols, (long long)k, t->cols, t->name);
        if (r < 0)
            cairn__err_prefix(err, r, "%s: read %s", L->db_path, t->name);
    }
    if (r == 0)
        r = exec_fmt(db, err, "COMMIT");
    else
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_exec(db, "DETACH cairn_src", NULL, NULL, NULL);
    return r;
}

/* ---- objects ----------------------------------------------------------- */

static int place_objects(merger *m, cairn_error *err)
{
    sqlite3 *db = m->dst->layers[0].db;
    sqlite3_stmt *c = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT (SELECT count(*) FROM temp.cairn_stage_blobs) + "
                                "(SELECT count(*) FROM temp.cairn_stage_snapshots)",
                                -1, &c, NULL);
    if (rc == SQLITE_OK && sqlite3_step(c) == SQLITE_ROW)
        m->total = (uint64_t)sqlite3_column_int64(c, 0);
    sqlite3_finalize(c);
    static const char *const q[] = {
        /* in the order staged: layer by layer, each in its key order */
        "SELECT src, digest, size FROM temp.cairn_stage_blobs",
        "SELECT src, chain_id, coalesce(nullif(tar_digest, ''), diff_id) "
        "FROM temp.cairn_stage_snapshots",
    };
    for (size_t k = 0; k < 2; k++) {
        sqlite3_stmt *s = NULL;
        rc = sqlite3_prepare_v2(db, q[k], -1, &s, NULL);
        if (rc != SQLITE_OK)
            return cairn__err_db(err, db, rc, "merge");
        int r = 0;
        while (r == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            size_t li = (size_t)sqlite3_column_int64(s, 0);
            const char *name = cairn__col(s, 1);
            m->stats.objects++;
            if (k == 0)
                r = place_blob(m, &m->layers[li], name, (uint64_t)sqlite3_column_int64(s, 2), err);
            else
                r = place_snapshot(m, &m->layers[li], name, cairn__col(s, 2), err);
            if (r == 0)
                r = tick(m, err);
        }
        sqlite3_finalize(s);
        if (r < 0)
            return r;
        if (rc != SQLITE_DONE)
            return cairn__err_db(err, db, rc, "merge");
    }
    /* One sync for every object placed, before any row names them. */
    if (syncfs(m->dst->dirfd) < 0)
        return cairn__err(err, -errno, "%s: syncfs: %m", m->dst->path);
    return 0;
}

/* ---- rows -------------------------------------------------------------- */

static int upsert_table(merger *m, const merge_table *t, const char *range, cairn_error *err)
{
    sqlite3 *db = m->dst->layers[0].db;
    char filter[256] = "1";
    if (t->object)
        snprintf(filter, sizeof(filter), "%s NOT IN (SELECT name FROM temp.cairn_merge_refused)",
                 t->object);
    int before = sqlite3_total_changes(db);
    int r = exec_fmt(db, err,
                     "INSERT INTO main.%s(%s) SELECT %s FROM temp.cairn_stage_%s WHERE %s%s "
                     "ORDER BY rowid ON CONFLICT(%s) %s",
                     t->name, t->cols, t->cols, t->name, filter, range ? range : "", t->key,
                     t->rule);
    if (r < 0)
        return cairn__err_prefix(err, r, "%s: merge %s", m->dst->path, t->name);
    m->stats.rows += (uint64_t)(sqlite3_total_changes(db) - before);
    return 0;
}

static int merge_rows(merger *m, cairn_error *err)
{
    if (!m->opts.background) {
        int r = cairn__tx_begin(m->dst, err);
        if (r < 0)
            return r;
        for (size_t i = 0; r == 0 && i < CAIRN_ARRAY_SIZE(merge_tables); i++)
            r = upsert_table(m, &merge_tables[i], NULL, err);
        if (r < 0) {
            cairn__tx_rollback(m->dst);
            return r;
        }
        return cairn__tx_commit(m->dst, err);
    }
    /* Background: short transactions of a bounded number of rows, so that a
     * writer waiting on the database lock never waits long. */
    enum { BATCH = 512 };
    sqlite3 *db = m->dst->layers[0].db;
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(merge_tables); i++) {
        const merge_table *t = &merge_tables[i];
        char *sql = sqlite3_mprintf("SELECT coalesce(max(rowid), 0) FROM temp.cairn_stage_%s",
                                    t->name);
        sqlite3_stmt *s = NULL;
        int64_t maxid = 0;
        if (sql && sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK &&
            sqlite3_step(s) == SQLITE_ROW)
            maxid = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
        sqlite3_free(sql);
        for (int64_t lo = 0; lo < maxid; lo += BATCH) {
            char range[96];
            snprintf(range, sizeof(range), " AND rowid > %lld AND rowid <= %lld", (long long)lo,
                     (long long)(lo + BATCH));
            int r = cairn__tx_begin(m->dst, err);
            if (r == 0)
                r = upsert_table(m, t, range, err);
            if (r < 0) {
                cairn__tx_rollback(m->dst);
                return r;
            }
            r = cairn__tx_commit(m->dst, err);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

/* Hold the lock of every live source shared, as its writers do, from
 * before its rows are staged until its objects are placed: its gc deletes
 * (rows, then files) only with the lock exclusive, so an object whose row
 * was staged is still there when it is linked or copied. A frozen source
 * has no gc; one whose lock file cannot be opened (a source only read) is
 * read without. Returns how many are held (into held[]), or < 0. */
static int lock_sources(merger *m, cairn_state **held, cairn_error *err)
{
    int n = 0;
    for (size_t k = 0; k < m->n_layers; k++) {
        cairn_state *s = m->layers[k].st;
        bool seen = s->frozen || s->rofs || s == m->dst;
        for (int i = 0; i < n && !seen; i++)
            seen = held[i] == s;
        if (seen)
            continue;
        cairn_error e2 = {0};
        int r = cairn__lock(s, false, &e2);
        if (r == -EACCES || r == -EPERM || r == -EROFS)
            continue;
        if (r < 0) {
            for (int i = 0; i < n; i++)
                cairn__unlock(held[i]);
            if (err)
                *err = e2;
            return r;
        }
        held[n++] = s;
    }
    return n;
}

/* Stage every source layer, place the objects, merge the rows. */
static int merge_run(merger *m, cairn_error *err)
{
    sqlite3 *db = m->dst->layers[0].db;
    cairn_state **held = calloc(m->n_layers ? m->n_layers : 1, sizeof(*held));
    if (!held)
        return cairn__err(err, -ENOMEM, "out of memory");
    int n_held = lock_sources(m, held, err);
    if (n_held < 0) {
        free(held);
        return n_held;
    }
    int r = stage_create(db, err);
    for (size_t k = 0; r == 0 && k < m->n_layers; k++)
        r = stage_layer(m, k, err);
    if (r == 0) {
        r = cairn__lock(m->dst, false, err);
        if (r == 0) {
            r = place_objects(m, err);
            if (r == 0)
                r = merge_rows(m, err);
            cairn__unlock(m->dst);
        }
    }
    for (int i = 0; i < n_held; i++)
        cairn__unlock(held[i]);
    free(held);
    sqlite3_finalize(m->refuse_ins);
    sqlite3_finalize(m->refuse_del);
    m->refuse_ins = m->refuse_del = NULL;
    cairn__strset_free(m->refused);
    m->refused = NULL;
    stage_drop(db);
    return r;
}

/* ---- opening sources --------------------------------------------------- */

static bool layer_seen(const merger *m, const char *id)
{
    for (size_t i = 0; i < m->n_layers; i++)
        if (!strcmp(m->layers[i].st->layers[m->layers[i].li].id, id))
            return true;
    return false;
}

static int add_source_layers(merger *m, cairn_state *s, size_t from, bool consume,
                             cairn_error *err)
{
    for (size_t i = from; i < s->n_layers; i++) {
        /* Open every database now: a newer schema is refused before any write. */
        int r = cairn__layer_open(s, i, err);
        if (r < 0)
            return r;
        if (!strcmp(s->layers[i].id, m->dst->id) || layer_seen(m, s->layers[i].id))
            continue;
        src_layer *nl = realloc(m->layers, (m->n_layers + 1) * sizeof(*nl));
        if (!nl)
            return cairn__err(err, -ENOMEM, "out of memory");
        m->layers = nl;
        nl[m->n_layers++] = (src_layer){s, i, consume && s->layers[i].dirfd == s->dirfd};
    }
    return 0;
}

static int opts_get(const cairn_merge_options *in, cairn_merge_options *out, cairn_error *err)
{
    cairn_merge_options def = CAIRN_MERGE_OPTIONS_INIT;
    *out = def;
    if (in) {
        int r = cairn__opts_version(in->version, CAIRN_MERGE_OPTIONS_VERSION, "merge", err);
        if (r < 0)
            return r;
        /* Version 1 ended before drop_local: copy what it has. */
        if (in->version == 1)
            memcpy(out, in, offsetof(cairn_merge_options, drop_local));
        else
            *out = *in;
    }
    if (out->mode < CAIRN_MERGE_AUTO || out->mode > CAIRN_MERGE_MOVE)
        return cairn__err(err, -EINVAL, "merge: unknown mode %d", out->mode);
    return 0;
}

/* Create a state at `path` when there is none: built in a sibling directory
 * and renamed into place, so an interrupted creation leaves no half state. */
static int ensure_state(const char *path, cairn_error *err)
{
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            return cairn__err(err, -ENOTDIR, "%s: not a directory", path);
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            return cairn__err(err, -errno, "%s: %m", path);
        char id[CAIRN_STATE_ID_LEN + 1];
        cairn_error tmp = {0};
        int r = cairn__identity_get(fd, path, id, NULL, &tmp);
        close(fd);
        if (r == 0)
            return 0;
        if (r != CAIRN_E_NOTSTATE) {
            if (err)
                *err = tmp;
            return r;
        }
        if (rmdir(path) < 0)
            return cairn__err(err, errno == ENOTEMPTY || errno == EEXIST ? -ENOTEMPTY : -errno,
                              "%s: not empty and not a cairn state; refusing to merge into it",
                              path);
    }
    cairn__side_sweep(path, "cairn-new");
    _cleanup_free_ char *side = cairn__side_name(path, "cairn-new");
    if (!side)
        return cairn__err(err, -ENOMEM, "out of memory");
    cairn__rm_rf_at(AT_FDCWD, side); /* ours, from a pid reused after a crash */
    int r = cairn_state_init(side, NULL, err);
    if (r == 0 && rename(side, path) < 0) {
        r = -errno;
        char id[CAIRN_STATE_ID_LEN + 1];
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if ((r == -ENOTEMPTY || r == -EEXIST) && fd >= 0 &&
            cairn__identity_get(fd, path, id, NULL, NULL) == 0)
            r = 0; /* made meanwhile by another merge: use it */
        else
            cairn__err(err, r, "%s: rename into place: %m", path);
        if (fd >= 0)
            close(fd);
        if (r == 0)
            cairn__rm_rf_at(AT_FDCWD, side);
    }
    if (r < 0)
        cairn__rm_rf_at(AT_FDCWD, side);
    return r;
}

/* A source holding active snapshots or leases (local, never merged): -EBUSY
 * naming the counts, because a move would remove them with the source. */
static int refuse_local(cairn_state *s, cairn_error *err)
{
    static const char sql[] = "SELECT (SELECT count(*) FROM active), (SELECT count(*) FROM leases)";
    sqlite3_stmt *q;
    int r = cairn__stmt(s, 0, sql, &q, err);
    if (r < 0)
        return r;
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(q);
        return cairn__err_db(err, s->layers[0].db, rc, NULL);
    }
    int64_t active = sqlite3_column_int64(q, 0), leases = sqlite3_column_int64(q, 1);
    sqlite3_reset(q);
    if (active || leases)
        return cairn__err(err, -EBUSY,
                          "merge --move: source %s holds %lld active snapshot%s and %lld "
                          "lease%s, which are never merged and would be removed with it; "
                          "commit or remove them, or drop them with --drop-local",
                          s->path, (long long)active, active == 1 ? "" : "s", (long long)leases,
                          leases == 1 ? "" : "s");
    return 0;
}

int cairn_merge(const char *dest, const char *const *srcs, size_t n,
                const cairn_merge_options *opts, cairn_merge_stats *stats, cairn_error *err)
{
    merger m = {0};
    int r = opts_get(opts, &m.opts, err);
    if (r < 0)
        return r;
    if (!dest || !*dest)
        return cairn__err(err, -EINVAL, "merge: no destination given");
    cairn_state **ss = calloc(n ? n : 1, sizeof(*ss));
    if (!ss)
        return cairn__err(err, -ENOMEM, "out of memory");
    /* 1. every source, every layer, before anything is written */
    for (size_t i = 0; i < n && r == 0; i++) {
        r = cairn_state_open(&ss[i], srcs[i], CAIRN_OPEN_READONLY, err);
        if (r < 0) {
            cairn__err_prefix(err, r, "source %s", srcs[i]);
            break;
        }
        for (size_t l = 1; l < ss[i]->n_layers && r == 0; l++)
            r = cairn__layer_open(ss[i], l, err);
    }
    /* A move removes the sources, and with them what is never merged:
     * say so before anything is written, unless asked to drop it. */
    if (m.opts.mode == CAIRN_MERGE_MOVE && !m.opts.drop_local)
        for (size_t i = 0; i < n && r == 0; i++)
            r = refuse_local(ss[i], err);
    /* 2. the destination */
    if (r == 0)
        r = ensure_state(dest, err);
    if (r == 0)
        r = cairn_state_open(&m.dst, dest, 0, err);
    for (size_t i = 0; i < n && r == 0; i++)
        if (!strcmp(ss[i]->id, m.dst->id))
            r = cairn__err(err, -EINVAL, "merge: %s is the destination itself", srcs[i]);
    for (size_t i = 0; i < n && r == 0; i++)
        r = add_source_layers(&m, ss[i], 0, m.opts.mode == CAIRN_MERGE_MOVE, err);
    /* 3-5 */
    if (r == 0)
        r = merge_run(&m, err);
    /* 6. consumed sources go, once everything they held is in dest */
    if (r == 0 && m.opts.mode == CAIRN_MERGE_MOVE) {
        for (size_t i = 0; i < n && r == 0; i++) {
            _cleanup_free_ char *p = strdup(ss[i]->path);
            cairn_state_free(ss[i]);
            ss[i] = NULL;
            if (p && (r = cairn__rm_rf_at(AT_FDCWD, p)) < 0)
                cairn__err(err, r, "%s: remove the consumed source: %m", p);
        }
    }
    if (r == 0 && stats)
        *stats = m.stats;
    free(m.layers);
    cairn_state_free(m.dst);
    for (size_t i = 0; i < n; i++)
        cairn_state_free(ss[i]);
    free(ss);
    return r;
}

/* ---- flatten ----------------------------------------------------------- */

/* Flatten an open, writable state in place: its layers 1.. into layer 0. */
static int flatten_open(cairn_state *st, const cairn_merge_options *o, cairn_merge_stats *stats,
                        cairn_error *err)
{
    if (st->n_layers <= 1)
        return 0;
    int r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    merger m = {.dst = st, .opts = *o};
    if (m.opts.mode == CAIRN_MERGE_MOVE)
        return cairn__err(err, -EINVAL, "flatten: lowers are never modified; MOVE is refused");
    r = add_source_layers(&m, st, 1, false, err);
    if (r == 0)
        r = merge_run(&m, err);
    free(m.layers);
    if (r < 0)
        return r;
    /* Drop the lowers, last: the lowers file, then the databases that sat
     * side by side in db/ (their objects are in this directory already). */
    if (unlinkat(st->dirfd, "lowers", 0) < 0 && errno != ENOENT)
        return cairn__err(err, -errno, "%s/lowers: remove: %m", st->path);
    for (size_t i = 1; i < st->n_layers; i++) {
        if (st->layers[i].dirfd != st->dirfd)
            continue;
        char name[64];
        snprintf(name, sizeof(name), "db/%s.sqlite", st->layers[i].id);
        if (unlinkat(st->dirfd, name, 0) < 0 && errno != ENOENT)
            return cairn__err(err, -errno, "%s/%s: remove: %m", st->path, name);
    }
    cairn__fsync_at(st->dirfd, "db");
    cairn__layers_trim(st, 1);
    if (stats)
        *stats = m.stats;
    return 0;
}

int cairn_flatten(const char *dir, const cairn_merge_options *opts, cairn_merge_stats *stats,
                  cairn_error *err)
{
    cairn_merge_options o;
    int r = opts_get(opts, &o, err);
    if (r < 0)
        return r;
    cairn_state *st = NULL;
    r = cairn_state_open(&st, dir, 0, err);
    if (r < 0)
        return r;
    cairn_merge_stats s = {0};
    r = flatten_open(st, &o, &s, err);
    if (r == 0 && stats)
        *stats = s;
    cairn_state_free(st);
    return r;
}

/* ---- the flatten policy ------------------------------------------------ */

typedef struct policy {
    enum { P_NEVER, P_ON_OPEN, P_LOWERS, P_BACKGROUND } kind;
    unsigned n;
} policy;

static int policy_parse(const char *s, policy *p)
{
    if (!strcmp(s, "never"))
        *p = (policy){P_NEVER, 0};
    else if (!strcmp(s, "on-open"))
        *p = (policy){P_ON_OPEN, 0};
    else if (!strcmp(s, "background"))
        *p = (policy){P_BACKGROUND, 0};
    else if (!strncmp(s, "lowers>", 7) && s[7]) {
        char *end;
        unsigned long v = strtoul(s + 7, &end, 10);
        if (*end || v > 100000)
            return -EINVAL;
        *p = (policy){P_LOWERS, (unsigned)v};
    } else
        return -EINVAL;
    return 0;
}

static int policy_read(cairn_state *st, char *buf, size_t size, cairn_error *err)
{
    static const char sql[] = "SELECT value FROM meta WHERE key = 'flatten_policy'";
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    int rc = sqlite3_step(s);
    snprintf(buf, size, "%s", rc == SQLITE_ROW ? cairn__col(s, 0) : "never");
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return cairn__err_db(err, st->layers[0].db, rc, "read the flatten policy");
    return 0;
}

int cairn_flatten_policy_get(cairn_state *st, char *buf, size_t size, cairn_error *err)
{
    return policy_read(st, buf, size, err);
}

int cairn_flatten_policy_set(cairn_state *st, const char *value, cairn_error *err)
{
    policy p;
    if (!value || policy_parse(value, &p) < 0)
        return cairn__err(err, -EINVAL,
                          "flatten policy '%s': expected never, on-open, lowers>N or background",
                          value ? value : "");
    static const char sql[] = "INSERT INTO meta(key, value) VALUES ('flatten_policy', ?) "
                              "ON CONFLICT(key) DO UPDATE SET value = excluded.value";
    int r = cairn__tx_begin(st, err);
    if (r < 0)
        return r;
    sqlite3_stmt *s;
    r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0) {
        cairn__tx_rollback(st);
        return r;
    }
    sqlite3_bind_text(s, 1, value, -1, SQLITE_STATIC);
    r = cairn__step_done(st, 0, s, err);
    if (r < 0) {
        cairn__tx_rollback(st);
        return r;
    }
    return cairn__tx_commit(st, err);
}

static int policy_due(cairn_state *st, bool on_open, cairn_error *err)
{
    char buf[64];
    int r = policy_read(st, buf, sizeof(buf), err);
    if (r < 0)
        return r;
    policy p;
    if (policy_parse(buf, &p) < 0)
        return cairn__err(err, CAIRN_E_FORMAT, "%s: flatten policy '%s' is not understood",
                          st->path, buf);
    size_t lowers = st->n_layers - 1;
    if (!lowers)
        return 0;
    switch (p.kind) {
    case P_NEVER:
        return 0;
    case P_ON_OPEN:
        return 1;
    case P_LOWERS:
        return lowers > p.n;
    case P_BACKGROUND:
        return on_open ? 0 : 1;
    }
    return 0;
}

int cairn_flatten_due(cairn_state *st, cairn_error *err)
{
    return policy_due(st, false, err);
}

int cairn_flatten_on_open(cairn_state *st, const cairn_merge_options *opts,
                          cairn_merge_stats *stats, cairn_error *err)
{
    if (st->readonly)
        return 0;
    int due = policy_due(st, true, err);
    if (due <= 0)
        return due;
    cairn_merge_options o = CAIRN_MERGE_OPTIONS_INIT;
    int r = flatten_open(st, opts ? opts : &o, stats, err);
    if (r < 0)
        return cairn__err_prefix(err, r, "%s: flatten on open (policy)", st->path);
    return 1;
}
