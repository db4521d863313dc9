/* freeze.c: a consistent, read-only, point-in-time copy of a state
 * (cairn_freeze in cairn/merge.h).
 *
 * The source may be live: an engine may be writing to it during the freeze.
 * In order:
 *   1. build the copy in a sibling directory DEST.cairn-freeze-<pid>,
 *      invisible until step 6;
 *   2. take the source's lock shared (gc, which deletes under the exclusive
 *      lock, waits; writers, which hold it shared, do not);
 *   3. copy the database with SQLite's backup API in one step: a consistent
 *      point in time of the source (a read transaction), written as a
 *      self-contained file (journal_mode=DELETE, no WAL); then drop the
 *      local rows (active snapshots, leases) and give it the new id;
 *   4. objects: every blob and snapshot the copy's rows name, hardlinked
 *      (reflinked or copied across filesystems); every object a row names
 *      was durable before that row was committed (data first), so it is
 *      there; a row whose object is missing all the same is dropped from
 *      the copy. Databases found side by side in db/ (an overlayfs view of
 *      states) are frozen already: hardlinked, and their objects too;
 *   5. the `lowers` file as it is (lowers are frozen, so the copy stacks on
 *      the same states);
 *   6. one syncfs, the identity file (frozen=1), then rename into place.
 * Its cost grows with the number of objects, not with their bytes.
 * Progress counts the objects of step 4; a stop there (the callback, or any
 * failure) removes the side directory: DEST is as it was.
 */
#include "core/core.h"

#include <sys/stat.h>

#define FREEZE_PATH_MAX 4096

static const char *const layout[] = {"blobs", "blobs/sha256", "snapshots", "active",
                                     "tmp",   "db",           "quarantine"};

typedef struct freezer {
    cairn_state *src;
    cairn_freeze_options opts;
    int sidefd;
    int blobfd, snapfd, tmpfd;
    const char *side;
    cairn_merge_stats stats;
    uint64_t done, total; /* objects, for the progress */
} freezer;

static int tick(freezer *f, cairn_error *err)
{
    f->done++;
    if (f->done % 256 == 0 || f->done == f->total)
        return cairn__progress(f->opts.progress, f->opts.progress_userdata, f->done, f->total,
                               "freeze", err);
    return 0;
}

/* The objects the rows of `db` name: blobs and snapshots. */
static int count_objects(sqlite3 *db, uint64_t *n, cairn_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT (SELECT count(*) FROM blobs) + "
                                "(SELECT count(*) FROM snapshots)",
                                -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        *n += (uint64_t)sqlite3_column_int64(s, 0);
        return 0;
    }
    return cairn__err_db(err, db, rc, "freeze: count objects");
}

static int link_blob(freezer *f, size_t layer, const char *digest, cairn_error *err)
{
    if (cairn_digest_check(digest, NULL) < 0)
        return 0;
    int sbfd = cairn__layer_blobfd(f->src, layer, err);
    if (sbfd < 0)
        return sbfd;
    const char *hex = cairn__digest_hex(digest);
    int r = cairn__clone_file_at(sbfd, hex, f->blobfd, hex, 0);
    f->stats.objects++;
    if (r == -EEXIST) {
        f->stats.present++;
        return 0;
    }
    if (r == -ENOENT)
        return 1; /* the caller drops the row */
    if (r < 0)
        return cairn__err(err, r, "blob %s: link %s/blobs/sha256/%s: %m", digest,
                          f->src->layers[layer].root, hex);
    if (r == 0)
        f->stats.linked++;
    else if (r == 1)
        f->stats.reflinked++;
    else {
        struct stat sb;
        f->stats.copied++;
        if (fstatat(f->blobfd, hex, &sb, 0) == 0)
            f->stats.bytes_copied += (uint64_t)sb.st_size;
    }
    return 0;
}

static int link_snapshot(freezer *f, size_t layer, const char *chain_id, const char *tar_digest,
                         cairn_error *err)
{
    const char *name = !strncmp(chain_id, "sha256:", 7) ? chain_id + 7 : chain_id;
    if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return 1;
    int ssfd = cairn__layer_snapfd(f->src, layer, err);
    if (ssfd < 0)
        return ssfd;
    uint64_t bytes = 0;
    f->stats.objects++;
    char got[CAIRN_DIGEST_LEN + 1] = "";
    int r = cairn__snapshot_clone(NULL, ssfd, name, f->tmpfd, f->snapfd, 0, tar_digest, &bytes,
                                  got);
    if (r == CAIRN_E_MISMATCH)
        return cairn__err(err, r, "snapshot %s: its copy of %s/snapshots/%s tars to %s, its name "
                          "stands for %s; not frozen", chain_id, f->src->layers[layer].root, name,
                          got, tar_digest);
    if (r == -EEXIST) {
        f->stats.present++;
        return 0;
    }
    if (r == -ENOENT)
        return 1;
    if (r < 0)
        return cairn__err(err, r, "snapshot %s: link %s/snapshots/%s: %m", chain_id,
                          f->src->layers[layer].root, name);
    if (bytes) {
        f->stats.copied++;
        f->stats.bytes_copied += bytes;
    } else {
        f->stats.linked++;
    }
    return 0;
}

/* The objects named by the rows of `db` (the copy, or a sibling database of
 * the source), found in the source's directory through `layer`. With `prune`,
 * rows whose object is missing are deleted from `db` (the copy). */
static int link_objects(freezer *f, sqlite3 *db, size_t layer, bool prune, cairn_error *err)
{
    static const struct {
        const char *list, *del;
        bool blob;
    } kinds[] = {
        {"SELECT digest FROM blobs", "DELETE FROM blobs WHERE digest = ?", true},
        {"SELECT chain_id, coalesce(nullif(tar_digest, ''), diff_id) FROM snapshots",
         "DELETE FROM snapshots WHERE chain_id = ?", false},
    };
    for (size_t k = 0; k < CAIRN_ARRAY_SIZE(kinds); k++) {
        _cleanup_stmt_ sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(db, kinds[k].list, -1, &s, NULL);
        if (rc != SQLITE_OK)
            return cairn__err_db(err, db, rc, "freeze");
        cairn__strv gone = {0}; /* rows whose object is missing */
        int r = 0;
        while (r == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            const char *name = cairn__col(s, 0);
            r = kinds[k].blob ? link_blob(f, layer, name, err)
                              : link_snapshot(f, layer, name, cairn__col(s, 1), err);
            if (r >= 0) {
                int t = tick(f, err);
                r = t < 0 ? t : r;
            }
            if (r == 1 && (r = cairn__strv_push(&gone, name)) < 0)
                r = cairn__err(err, r, "out of memory");
        }
        if (r == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
            r = cairn__err_db(err, db, rc, "freeze");
        _cleanup_stmt_ sqlite3_stmt *d = NULL;
        if (r == 0 && gone.n && prune) {
            rc = sqlite3_prepare_v2(db, kinds[k].del, -1, &d, NULL);
            for (size_t i = 0; rc == SQLITE_OK && i < gone.n; i++) {
                sqlite3_bind_text(d, 1, gone.v[i], -1, SQLITE_STATIC);
                rc = sqlite3_step(d) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
                sqlite3_reset(d);
            }
            if (rc != SQLITE_OK)
                r = cairn__err_db(err, db, rc, "freeze: drop rows of missing objects");
        }
        cairn__strv_free(&gone);
        if (r < 0)
            return r;
    }
    return 0;
}

static int exec_db(sqlite3 *db, const char *sql, cairn_error *err)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return cairn__err_db(err, db, rc, "freeze");
    return 0;
}

/* Steps 3-5 into f->side. */
static int freeze_into(freezer *f, const char *new_id, cairn_error *err)
{
    cairn_state *src = f->src;
    int r;
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(layout); i++)
        if ((r = cairn__mkdir_at(f->sidefd, layout[i], 0755)) < 0)
            return cairn__err(err, r, "%s/%s: %m", f->side, layout[i]);
    f->blobfd = openat(f->sidefd, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    f->snapfd = openat(f->sidefd, "snapshots", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    f->tmpfd = openat(f->sidefd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (f->blobfd < 0 || f->snapfd < 0 || f->tmpfd < 0)
        return cairn__err(err, -errno, "%s: %m", f->side);

    /* 3. the database, at one point in time */
    _cleanup_free_ char *dbpath = NULL;
    if (asprintf(&dbpath, "%s/db/%s.sqlite", f->side, new_id) < 0)
        return cairn__err(err, -ENOMEM, "out of memory");
    sqlite3 *db = NULL;
    r = cairn__db_copy(src->layers[0].db, dbpath, &db, err);
    if (r < 0)
        return cairn__err_prefix(err, r, "freeze %s", src->path);
    char *sql = sqlite3_mprintf(
        "PRAGMA journal_mode = DELETE;"
        "BEGIN;"
        "DELETE FROM lease_resources; DELETE FROM leases; DELETE FROM active;"
        "INSERT INTO meta(key, value) VALUES ('state_id', %Q), ('frozen_from', %Q), "
        "('frozen_at', '%lld') ON CONFLICT(key) DO UPDATE SET value = excluded.value;"
        "DELETE FROM meta WHERE key = 'flatten_policy';",
        new_id, src->id, (long long)cairn__now());
    r = sql ? exec_db(db, sql, err) : cairn__err(err, -ENOMEM, "out of memory");
    sqlite3_free(sql);

    /* 4. the objects its rows name, and those of the databases side by
     * side (an overlayfs view), counted first for the progress */
    if (r == 0)
        r = count_objects(db, &f->total, err);
    for (size_t i = 1; r == 0 && i < src->n_layers; i++) {
        if (src->layers[i].dirfd != src->dirfd)
            continue;
        r = cairn__layer_open(src, i, err);
        if (r == 0)
            r = count_objects(src->layers[i].db, &f->total, err);
    }
    if (r == 0)
        r = link_objects(f, db, 0, true, err);
    if (r == 0)
        r = exec_db(db, "COMMIT", err);
    else
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    if (r == 0)
        r = exec_db(db, "PRAGMA journal_mode = DELETE", err);
    if (sqlite3_close(db) != SQLITE_OK && r == 0)
        r = cairn__err(err, CAIRN_E_DB, "%s: close", dbpath);
    if (r < 0)
        return r;

    /* Databases side by side (an overlayfs view): frozen, linked as they are. */
    for (size_t i = 1; i < src->n_layers; i++) {
        if (src->layers[i].dirfd != src->dirfd)
            continue;
        r = cairn__layer_open(src, i, err);
        if (r < 0)
            return r;
        r = link_objects(f, src->layers[i].db, i, false, err);
        if (r < 0)
            return r;
        char name[64];
        snprintf(name, sizeof(name), "db/%s.sqlite", src->layers[i].id);
        r = cairn__clone_file_at(src->dirfd, name, f->sidefd, name, 0);
        if (r < 0 && r != -EEXIST)
            return cairn__err(err, r, "%s/%s: link: %m", src->path, name);
    }

    /* 5. the lowers, as they are */
    _cleanup_free_ char *lowers = NULL;
    size_t len = 0;
    r = cairn__read_file_at(src->dirfd, "lowers", 1 << 20, &lowers, &len);
    if (r == 0) {
        r = cairn__write_file_atomic(f->sidefd, "lowers", lowers, len, 0644);
        if (r < 0)
            return cairn__err(err, r, "%s/lowers: %m", f->side);
    } else if (r != -ENOENT) {
        return cairn__err(err, r, "%s/lowers: %m", src->path);
    }
    return 0;
}

int cairn_freeze(const char *src_path, const char *dest, cairn_merge_stats *stats, char *out_id,
                 cairn_error *err)
{
    return cairn_freeze_with(src_path, dest, NULL, stats, out_id, err);
}

int cairn_freeze_with(const char *src_path, const char *dest, const cairn_freeze_options *opts,
                      cairn_merge_stats *stats, char *out_id, cairn_error *err)
{
    if (!src_path || !dest || !*dest)
        return cairn__err(err, -EINVAL, "freeze: a source and a destination are needed");
    cairn_freeze_options o = CAIRN_FREEZE_OPTIONS_INIT;
    if (opts) {
        int r =
            cairn__opts_version(opts->version, CAIRN_FREEZE_OPTIONS_VERSION, "freeze options", err);
        if (r < 0)
            return r;
        o = *opts;
    }
    struct stat sb;
    bool dest_exists = stat(dest, &sb) == 0;
    if (dest_exists) {
        if (!S_ISDIR(sb.st_mode))
            return cairn__err(err, -EEXIST, "%s: exists and is not a directory", dest);
        /* An empty directory is taken (replaced at the end); anything else is refused. */
        int fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            return cairn__err(err, -errno, "%s: %m", dest);
        char idb[CAIRN_STATE_ID_LEN + 1];
        int is_state = cairn__identity_get(fd, dest, idb, NULL, NULL) == 0;
        close(fd);
        if (is_state)
            return cairn__err(err, -EEXIST, "%s: already a cairn state (id %s); freeze into a "
                              "new directory", dest, idb);
    }
    cairn_state *src = NULL;
    int r = cairn_state_open(&src, src_path, CAIRN_OPEN_READONLY, err);
    if (r < 0)
        return r;
    freezer f = {.src = src, .opts = o, .sidefd = -1, .blobfd = -1, .snapfd = -1, .tmpfd = -1};
    char id[CAIRN_STATE_ID_LEN + 1];
    r = cairn__random_id(id);
    if (r < 0) {
        cairn_state_free(src);
        return cairn__err(err, r, "random id: %m");
    }
    cairn__side_sweep(dest, "cairn-freeze");
    _cleanup_free_ char *side = cairn__side_name(dest, "cairn-freeze");
    if (!side) {
        cairn_state_free(src);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    f.side = side;
    cairn__rm_rf_at(AT_FDCWD, side); /* ours, from a pid reused after a crash */
    if (mkdir(side, 0755) < 0 || (f.sidefd = open(side, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        r = cairn__err(err, -errno, "%s: %m", side);
        cairn_state_free(src);
        return r;
    }
    /* 2. gc waits; writers do not. A source on a read-only filesystem has
     * no writers and no lock file: go on without. */
    bool locked = cairn__lock(src, false, NULL) == 0;
    r = freeze_into(&f, id, err);
    if (locked)
        cairn__unlock(src);
    /* 6. durable, identity, into place */
    if (r == 0 && syncfs(f.sidefd) < 0)
        r = cairn__err(err, -errno, "%s: syncfs: %m", side);
    if (r == 0)
        r = cairn__identity_new(f.sidefd, side, id, true, err);
    if (r == 0 && dest_exists && rmdir(dest) < 0)
        r = cairn__err(err, -errno, "%s: not empty; freeze into a new directory", dest);
    if (r == 0 && rename(side, dest) < 0)
        r = cairn__err(err, -errno, "%s: rename into place: %m", dest);
    int fds[] = {f.sidefd, f.blobfd, f.snapfd, f.tmpfd};
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(fds); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (r < 0)
        cairn__rm_rf_at(AT_FDCWD, side);
    cairn_state_free(src);
    if (r == 0) {
        if (stats)
            *stats = f.stats;
        if (out_id)
            memcpy(out_id, id, sizeof(id));
    }
    return r;
}
