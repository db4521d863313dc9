/* snapshot.c: committed and active snapshots (cairn/snapshot.h).
 *
 * Invariants:
 * - a row of `snapshots` names a directory snapshots/<chainid-hex>/ of the
 *   same state, complete and durable, whose canonical tar digests to the row's
 *   tar_digest (equal to diff_id unless imported from a non-canonical tar);
 * - a snapshot's parent row exists in the state or one of its lowers;
 * - a row of `active` names active/<id>/ with fs/ (the diff) and work/, or,
 *   while its commit is in progress, with the intent active/<id>/commit
 *   naming the chain id whose directory snapshots/<hex> now holds its fs
 *   (gc keeps that directory, fsck explains it, a rerun finishes it);
 * - nothing found under a name that no row gives is trusted: it is proven
 *   (its canonical tar digests to what the name says) or quarantined.
 *
 * Commit, in phases (under the lock held shared from 2 on):
 *   1. the canonical tar of active/<id>/fs into a SHA-256 (no temporary
 *      file): the DiffID; overlayfs' bookkeeping xattrs are stripped on the
 *      way; the ChainID from the parent's;
 *   2. when a row of the stack has the ChainID already: one transaction
 *      deletes the active row (and marks a use); skip to 6;
 *   3. the intent file active/<id>/commit (written and synced atomically);
 *   4. syncfs, then the rename of fs into snapshots/<hex>, never replacing:
 *      a directory there is kept when it proves to be the same diff, else
 *      quarantined and ours renamed in its place; fsync snapshots/;
 *   5. one transaction: the snapshot row, the caller's rows (a volume's
 *      version), the active row deleted;
 *   6. active/<id>/ (work/, the intent, a redundant copy) removed.
 * At every point either the active row with its data (in fs/, or moved and
 * named by the intent) or the committed row exists. A failure or kill in 3-5
 * leaves the active row: committing it again resumes (the moved directory is
 * checked against its name), one after 5 leaves active/<id>/ with no row,
 * which gc removes.
 * Removal goes the other way: row first (in a transaction that checks no
 * kept snapshot or active one names it as parent), then the directory, moved
 * into tmp/ first so that a half-deleted tree never looks like a snapshot.
 */
#include "snapshot/snapshot-private.h"
#include "core/fsck.h"

#include <dirent.h>
#include <sys/stat.h>

/* ---- rows ------------------------------------------------------------- */

static void row_read(sqlite3_stmt *s, size_t layer, cairn__snaprow *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->info.chain_id, sizeof(out->info.chain_id), "%s", cairn__col(s, 0));
    snprintf(out->info.parent, sizeof(out->info.parent), "%s", cairn__col(s, 1));
    snprintf(out->info.diff_id, sizeof(out->info.diff_id), "%s", cairn__col(s, 2));
    out->info.size = (uint64_t)sqlite3_column_int64(s, 3);
    out->info.created = sqlite3_column_int64(s, 4);
    snprintf(out->tar_digest, sizeof(out->tar_digest), "%s", cairn__col(s, 5));
    out->info.lower = (int)layer;
    out->layer = layer;
}

static int64_t last_used(cairn_state *st, const char *object)
{
    static const char sql[] = "SELECT max(last_used) FROM usage WHERE object = ?";
    int64_t best = 0;
    for (size_t i = 0; i < st->n_layers; i++) {
        sqlite3_stmt *s;
        if (cairn__stmt(st, i, sql, &s, NULL) < 0)
            continue;
        sqlite3_bind_text(s, 1, object, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int64(s, 0) > best)
            best = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
    }
    return best;
}

int cairn__snapshot_find(cairn_state *st, const char *chain_id, cairn__snaprow *out,
                         cairn_error *err)
{
    static const char sql[] = "SELECT chain_id, coalesce(parent, ''), diff_id, size, created, "
                              "tar_digest FROM snapshots WHERE chain_id = ?";
    for (size_t i = 0; i < st->n_layers; i++) {
        sqlite3_stmt *s;
        int r = cairn__stmt(st, i, sql, &s, err);
        if (r < 0)
            return r;
        sqlite3_bind_text(s, 1, chain_id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            row_read(s, i, out);
            sqlite3_reset(s);
            /* Names from a database become paths (snapshots/<hex>): a row
             * of a damaged or hostile database, in this state or a lower,
             * must not name '../..'. */
            if (cairn_digest_check(out->info.chain_id, NULL) < 0)
                return cairn__err(err, CAIRN_E_CORRUPT,
                                  "snapshot %.80s (in %s): the row's chain id is not a digest",
                                  out->info.chain_id, st->layers[i].db_path);
            if (out->info.parent[0] && cairn_digest_check(out->info.parent, NULL) < 0)
                return cairn__err(err, CAIRN_E_CORRUPT,
                                  "snapshot %s (in %s): its parent '%.80s' is not a digest",
                                  out->info.chain_id, st->layers[i].db_path, out->info.parent);
            /* The rest of the layers, merged by the table's rule (lib/merge.c):
             * the earliest created, the greatest tar digest. The directory is
             * the topmost holder's. */
            for (size_t k = i + 1; k < st->n_layers; k++) {
                sqlite3_stmt *q;
                r = cairn__stmt(st, k, sql, &q, err);
                if (r < 0)
                    return r;
                sqlite3_bind_text(q, 1, chain_id, -1, SQLITE_STATIC);
                rc = sqlite3_step(q);
                if (rc == SQLITE_ROW) {
                    cairn__snaprow more;
                    row_read(q, k, &more);
                    if (more.info.created < out->info.created)
                        out->info.created = more.info.created;
                    if (strcmp(more.tar_digest, out->tar_digest) > 0)
                        memcpy(out->tar_digest, more.tar_digest, sizeof(out->tar_digest));
                }
                sqlite3_reset(q);
                if (rc != SQLITE_DONE && rc != SQLITE_ROW)
                    return cairn__err_db(err, st->layers[k].db, rc, "snapshot lookup");
            }
            return 1;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return cairn__err_db(err, st->layers[i].db, rc, "snapshot lookup");
    }
    return 0;
}

char *cairn__snapshot_path(cairn_state *st, size_t layer, const char *chain_id)
{
    char *p = NULL;
    if (asprintf(&p, "%s/snapshots/%s", st->layers[layer].root, cairn__digest_hex(chain_id)) < 0)
        return NULL;
    return p;
}

void cairn__usage_touch(cairn_state *st, const char *object)
{
    static const char sql[] =
        "INSERT INTO usage(object, state, last_used, hits) VALUES (?, ?, ?, 1) "
        "ON CONFLICT(object, state) DO UPDATE SET last_used = max(last_used, excluded.last_used), "
        "hits = hits + 1";
    if (st->readonly)
        return;
    sqlite3_stmt *s;
    if (cairn__stmt(st, 0, sql, &s, NULL) < 0)
        return;
    sqlite3_bind_text(s, 1, object, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, st->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, cairn__now());
    cairn__step_done(st, 0, s, NULL); /* best effort: a use that is not counted loses nothing */
}

static int insert_row(cairn_state *st, const char *chain, const char *parent, const char *diff_id,
                      const char *tar_digest, uint64_t size, cairn_error *err)
{
    static const char sql[] =
        "INSERT INTO snapshots(chain_id, parent, diff_id, size, created, tar_digest) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(chain_id) DO NOTHING";
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(s, 1, chain, -1, SQLITE_STATIC);
    if (parent && *parent)
        sqlite3_bind_text(s, 2, parent, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 2);
    sqlite3_bind_text(s, 3, diff_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, (int64_t)size);
    sqlite3_bind_int64(s, 5, cairn__now());
    sqlite3_bind_text(s, 6, tar_digest, -1, SQLITE_STATIC);
    return cairn__step_done(st, 0, s, err);
}

static int syncfs_fd(cairn_state *st, int fd, cairn_error *err)
{
    if (syncfs(fd) < 0)
        return cairn__err(err, -errno, "%s: syncfs: %m", st->path);
    return 0;
}

/* Is snapshots/<hex> (in sfd) the snapshot whose canonical tar digests to
 * `want`? 1 yes, 0 no (not a directory, a symlink, other files), -ENOENT
 * when nothing is there, other -errno on error. A directory found under a
 * name that no row gives (a crash's leftover, or planted) is never trusted
 * without this. */
static int dir_is(cairn_state *st, int sfd, const char *chain, const char *want,
                  cairn_error *err)
{
    const char *hex = cairn__digest_hex(chain);
    _cleanup_close_ int dfd = openat(sfd, hex, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        if (errno == ENOENT)
            return -ENOENT;
        if (errno == ENOTDIR || errno == ELOOP)
            return 0;
        return cairn__err(err, -errno, "%s/snapshots/%s: %m", st->path, hex);
    }
    char got[CAIRN_DIGEST_LEN + 1], what[96];
    snprintf(what, sizeof(what), "snapshot %s", chain);
    cairn_error e2 = {0};
    /* A tree that cannot be read as a diff is not the snapshot. */
    if (cairn__tar_digest(dfd, what, 0, got, NULL, &e2) < 0)
        return e2.code == -EIO || e2.code == -ENOMEM ? cairn__err(err, e2.code, "%s", e2.message)
                                                      : 0;
    return !strcmp(got, want);
}

/* Rename a staged diff (whose canonical tar digests to `tar_digest`) into
 * snapshots/<hex>; 0 placed, 1 the same snapshot was there (the staged copy
 * is dropped). Anything else under the name is quarantined, then ours is
 * placed. */
static int place(cairn_state *st, int stagefd, const char *staged, const char *chain,
                 const char *tar_digest, cairn_error *err)
{
    int sfd = cairn__layer_snapfd(st, 0, err);
    if (sfd < 0)
        return sfd;
    const char *hex = cairn__digest_hex(chain);
    int r = cairn__rename_noreplace(stagefd, staged, sfd, hex);
    for (int tries = 0; (r == -EEXIST || r == -ENOTEMPTY) && tries < 4; tries++) {
        int ok = dir_is(st, sfd, chain, tar_digest, err);
        if (ok == 1) {
            cairn__rm_rf_at(stagefd, staged);
            return 1;
        }
        if (ok < 0 && ok != -ENOENT)
            return ok;
        if (ok == 0) {
            ok = cairn__quarantine(st, sfd, hex, "snapshot", err);
            if (ok < 0 && ok != -ENOENT)
                return cairn__err_prefix(err, ok, "snapshot %s: a foreign directory has its name",
                                         chain);
        }
        r = cairn__rename_noreplace(stagefd, staged, sfd, hex);
    }
    if (r < 0)
        return cairn__err(err, r, "snapshot %s: rename into %s/snapshots: %m", chain, st->path);
    r = cairn__fsync_at(sfd, NULL);
    if (r < 0)
        return cairn__err(err, r, "%s/snapshots: fsync: %m", st->path);
    return 0;
}

int cairn__snapshot_publish(cairn_state *st, int stagefd, const char *staged, const char *parent,
                            const char *diff_id, const char *tar_digest, uint64_t size,
                            cairn_error *err)
{
    char chain[CAIRN_DIGEST_LEN + 1];
    cairn__chain_id(parent, diff_id, chain);
    int r = cairn__lock(st, false, err);
    if (r < 0)
        return r;
    /* The parent was checked before the layer was applied, without the
     * lock: a gc may have removed it since. Checked again under the lock,
     * which a gc needs exclusive to delete, and marked used (a gc that has
     * read its roots already keeps what was used during its run), until
     * the row that names it is in. */
    if (parent && *parent) {
        cairn__snaprow pr;
        r = cairn__snapshot_find(st, parent, &pr, err);
        if (r == 0)
            r = cairn__err(err, -ENOENT,
                           "snapshot %s: its parent %s was removed while it was built; "
                           "import it again", chain, parent);
        if (r == 1) {
            r = 0;
            cairn__usage_touch(st, parent);
        }
    }
    if (r == 0)
        r = syncfs_fd(st, stagefd, err);
    if (r == 0)
        r = place(st, stagefd, staged, chain, tar_digest, err);
    if (r >= 0) {
        r = cairn__tx_begin(st, err);
        if (r == 0) {
            r = insert_row(st, chain, parent, diff_id, tar_digest, size, err);
            if (r == 0)
                r = cairn__tx_commit(st, err);
            else
                cairn__tx_rollback(st);
        }
    }
    cairn__unlock(st);
    return r;
}

/* ---- active snapshots -------------------------------------------------- */

static int is_active_id(const char *s)
{
    if (!s || strlen(s) != CAIRN_STATE_ID_LEN)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

static int active_find(cairn_state *st, const char *id, cairn_active_info *out, cairn_error *err)
{
    static const char sql[] =
        "SELECT id, kind, coalesce(parent, ''), label, created FROM active WHERE id = ?";
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        snprintf(out->id, sizeof(out->id), "%s", cairn__col(s, 0));
        out->view = !strcmp(cairn__col(s, 1), "view");
        snprintf(out->parent, sizeof(out->parent), "%s", cairn__col(s, 2));
        snprintf(out->label, sizeof(out->label), "%s", cairn__col(s, 3));
        out->created = sqlite3_column_int64(s, 4);
    }
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc != SQLITE_DONE)
        return cairn__err_db(err, st->layers[0].db, rc, "active lookup");
    return 0;
}

/* Is active/<id>/fs in use by a mount (as an overlayfs upperdir or bound)?
 * The id is 128 random bits, so finding "active/<id>/" in the mount table
 * means it. */
static int active_mounted(cairn_state *st, const char *id, cairn_error *err)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return 0; /* no /proc: cannot tell */
    char needle[64];
    snprintf(needle, sizeof(needle), "active/%s/", id);
    while (getline(&buf, &len, f) > 0)
        if (strstr(buf, needle))
            return cairn__err(err, CAIRN_E_INUSE,
                              "active snapshot %s is mounted (%s/active/%s); unmount it first",
                              id, st->path, id);
    return 0;
}

static int active_insert(cairn_state *st, const cairn_active_info *a, cairn_error *err)
{
    static const char sql[] =
        "INSERT INTO active(id, kind, parent, label, created) VALUES (?, ?, ?, ?, ?)";
    int r = cairn__tx_begin(st, err);
    if (r < 0)
        return r;
    sqlite3_stmt *s;
    r = cairn__stmt(st, 0, sql, &s, err);
    if (r == 0) {
        sqlite3_bind_text(s, 1, a->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, a->view ? "view" : "active", -1, SQLITE_STATIC);
        if (a->parent[0])
            sqlite3_bind_text(s, 3, a->parent, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 3);
        sqlite3_bind_text(s, 4, a->label, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, a->created);
        r = cairn__step_done(st, 0, s, err);
    }
    if (r == 0 && a->parent[0])
        cairn__usage_touch(st, a->parent);
    if (r == 0)
        return cairn__tx_commit(st, err);
    cairn__tx_rollback(st);
    return r;
}

static int active_delete(cairn_state *st, const char *id, cairn_error *err)
{
    static const char sql[] = "DELETE FROM active WHERE id = ?";
    return cairn__exec_key(st, sql, id, err);
}

static int new_active_locked(cairn_state *st, const char *parent, const char *label, bool view,
                             char *out_id, cairn_error *err);

/* The parent is checked and the row that names it written under the state's
 * lock held shared, so a gc (exclusive) cannot remove the parent between. */
static int new_active(cairn_state *st, const char *parent, const char *label, bool view,
                      char *out_id, cairn_error *err)
{
    int r = cairn__lock(st, false, err);
    if (r < 0)
        return r;
    r = new_active_locked(st, parent, label, view, out_id, err);
    cairn__unlock(st);
    return r;
}

static int new_active_locked(cairn_state *st, const char *parent, const char *label, bool view,
                             char *out_id, cairn_error *err)
{
    int r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    if (label && strlen(label) > CAIRN_LABEL_MAX)
        return cairn__err(err, -EINVAL, "label longer than %d bytes", CAIRN_LABEL_MAX);
    if (parent && !*parent)
        parent = NULL;
    if (view && !parent)
        return cairn__err(err, -EINVAL, "a view needs a snapshot");
    if (parent) {
        r = cairn_digest_check(parent, err);
        if (r < 0)
            return r;
        cairn__snaprow row;
        r = cairn__snapshot_find(st, parent, &row, err);
        if (r < 0)
            return r;
        if (r == 0)
            return cairn__err(err, -ENOENT, "snapshot %s is not there", parent);
    }
    char id[CAIRN_STATE_ID_LEN + 1];
    r = cairn__random_id(id);
    if (r < 0)
        return cairn__err(err, r, "random id: %m");
    _cleanup_close_ int afd = openat(st->dirfd, "active", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (afd < 0)
        return cairn__err(err, -errno, "%s/active: %m", st->path);
    if (mkdirat(afd, id, 0711) < 0)
        return cairn__err(err, -errno, "%s/active/%s: %m", st->path, id);
    _cleanup_close_ int idfd = openat(afd, id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (idfd < 0 || mkdirat(idfd, "fs", 0755) < 0 || mkdirat(idfd, "work", 0700) < 0) {
        r = cairn__err(err, -errno, "%s/active/%s: %m", st->path, id);
        cairn__rm_rf_at(afd, id);
        return r;
    }
    cairn_active_info a = {.view = view, .created = cairn__now()};
    memcpy(a.id, id, sizeof(a.id));
    snprintf(a.parent, sizeof(a.parent), "%s", parent ? parent : "");
    snprintf(a.label, sizeof(a.label), "%s", label ? label : "");
    r = active_insert(st, &a, err);
    if (r < 0) {
        cairn__rm_rf_at(afd, id);
        return r;
    }
    if (out_id)
        memcpy(out_id, id, sizeof(id));
    return 0;
}

int cairn_snapshot_prepare(cairn_state *st, const char *parent, const char *label, char *out_id,
                           cairn_error *err)
{
    return new_active(st, parent, label, false, out_id, err);
}

int cairn_snapshot_view(cairn_state *st, const char *chain_id, const char *label, char *out_id,
                        cairn_error *err)
{
    if (!chain_id || !*chain_id)
        return cairn__err(err, -EINVAL, "a view needs a snapshot");
    return new_active(st, chain_id, label, true, out_id, err);
}

int cairn_snapshot_active_stat(cairn_state *st, const char *id, cairn_active_info *out,
                               cairn_error *err)
{
    if (!is_active_id(id))
        return cairn__err(err, -EINVAL, "'%.80s' is not an active snapshot id", id ? id : "");
    cairn_active_info a;
    int r = active_find(st, id, &a, err);
    if (r < 0)
        return r;
    if (r == 0)
        return cairn__err(err, -ENOENT, "active snapshot %s is not there", id);
    *out = a;
    return 0;
}

/* ---- commit ----------------------------------------------------------- */

#define COMMIT_INTENT "commit"

/* The intent, active/<id>/commit: the chain id the commit moves fs to, a
 * line, then the committer's owner token (cairn__owner_token), a line, so
 * that fsck tells a commit in progress from one a crash stopped. */

/* The chain id a pending commit of active/<id> (idfd) moves its fs to: 1
 * read, 0 none, <0 error. */
static int intent_read(cairn_state *st, int idfd, const char *id, char out[CAIRN_DIGEST_LEN + 1],
                       cairn_error *err)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    int r = cairn__read_file_at(idfd, COMMIT_INTENT, 256, &buf, &len);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return cairn__err(err, r == CAIRN_E_FORMAT ? CAIRN_E_CORRUPT : r,
                          "active snapshot %s: %s/active/%s/%s: %s", id, st->path, id,
                          COMMIT_INTENT, r == CAIRN_E_FORMAT ? "not a regular file" : cairn_strerror(r));
    char *nl = memchr(buf, '\n', len);
    if (nl)
        *nl = 0;
    if (cairn_digest_check(buf, NULL) < 0)
        return cairn__err(err, CAIRN_E_CORRUPT,
                          "active snapshot %s: %s/active/%s/%s does not hold a chain id", id,
                          st->path, id, COMMIT_INTENT);
    memcpy(out, buf, CAIRN_DIGEST_LEN + 1);
    return 1;
}

/* Is the process that wrote the intent of active/<id> (idfd) at work on
 * it still (its commit in progress, not stopped)? */
static bool intent_live(cairn_state *st, int idfd)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    if (cairn__read_file_at(idfd, COMMIT_INTENT, 256, &buf, &len) < 0)
        return false;
    char *owner = memchr(buf, '\n', len);
    if (!owner)
        return false;
    owner++;
    owner[strcspn(owner, "\n")] = 0;
    return cairn__owner_live(st, owner);
}

int cairn__snapshot_pending(cairn_state *st, cairn__strset *out, cairn_error *err)
{
    static const char sql[] = "SELECT id FROM active WHERE kind = 'active'";
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    cairn__strv ids = {0};
    int rc;
    while (r == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW)
        if (is_active_id(cairn__col(s, 0)) && cairn__strv_push(&ids, cairn__col(s, 0)) < 0)
            r = cairn__err(err, -ENOMEM, "out of memory");
    sqlite3_reset(s);
    if (r == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        r = cairn__err_db(err, st->layers[0].db, rc, "pending commits");
    _cleanup_close_ int afd = r == 0 ? openat(st->dirfd, "active", O_RDONLY | O_DIRECTORY |
                                                                       O_CLOEXEC | O_NOFOLLOW)
                                     : -1;
    if (r == 0 && afd < 0)
        r = cairn__err(err, -errno, "%s/active: %m", st->path);
    for (size_t i = 0; r == 0 && i < ids.n; i++) {
        _cleanup_close_ int idfd =
            openat(afd, ids.v[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (idfd < 0)
            continue;
        char chain[CAIRN_DIGEST_LEN + 1];
        cairn_error e2 = {0};
        if (intent_read(st, idfd, ids.v[i], chain, &e2) == 1 &&
            cairn__strset_add(out, chain) < 0)
            r = cairn__err(err, -ENOMEM, "out of memory");
    }
    cairn__strv_free(&ids);
    return r;
}

/* The last step of a commit, one transaction: the snapshot row (unless one
 * is there), the caller's rows (a volume's version), the active row gone.
 * Until it commits the active row stays, and names where its diff is. */
static int commit_rows(cairn_state *st, const char *id, const cairn_active_info *a,
                       const char *chain, const char *diff_id, uint64_t size, bool insert,
                       cairn__commit_fn fn, void *ud, cairn_error *err)
{
    int r = cairn__tx_begin(st, err);
    if (r < 0)
        return r;
    if (insert)
        r = insert_row(st, chain, a->parent, diff_id, diff_id, size, err);
    if (r == 0 && fn)
        r = fn(st, ud, chain, err);
    if (r == 0)
        r = active_delete(st, id, err);
    if (r == 0 && !insert)
        cairn__usage_touch(st, chain); /* a use: a gc running now keeps it */
    if (r == 0)
        return cairn__tx_commit(st, err);
    cairn__tx_rollback(st);
    return r;
}

/* Finish a commit that was stopped after its fs moved to snapshots/<hex>
 * (killed, or a failed fsync or transaction): the directory there must
 * tar to a diff whose chain id over the parent is the name, then the rows
 * go in as the first run would have written them. */
static int commit_resume(cairn_state *st, const char *id, const cairn_active_info *a,
                         const char *chain, char *out_diff, cairn__commit_fn fn, void *ud,
                         cairn_error *err)
{
    cairn__snaprow row;
    int found = cairn__snapshot_find(st, chain, &row, err);
    if (found < 0)
        return found;
    if (found) {
        memcpy(out_diff, row.info.diff_id, CAIRN_DIGEST_LEN + 1);
        return commit_rows(st, id, a, chain, row.info.diff_id, 0, false, fn, ud, err);
    }
    int sfd = cairn__layer_snapfd(st, 0, err);
    if (sfd < 0)
        return sfd;
    const char *hex = cairn__digest_hex(chain);
    _cleanup_close_ int dfd = openat(sfd, hex, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return cairn__err(err, CAIRN_E_CORRUPT,
                          "active snapshot %s: its commit to %s was interrupted and %s/snapshots/%s "
                          "is %s; the diff is lost (remove it with 'cairn snapshot rm %s')",
                          id, chain, st->path, hex, cairn_strerror(-errno), id);
    char diff_id[CAIRN_DIGEST_LEN + 1], got[CAIRN_DIGEST_LEN + 1];
    uint64_t size = 0;
    char what[96];
    snprintf(what, sizeof(what), "snapshot %s", chain);
    int r = cairn__tar_digest(dfd, what, 0, diff_id, &size, err);
    if (r < 0)
        return r;
    cairn__chain_id(a->parent, diff_id, got);
    if (strcmp(got, chain) != 0)
        return cairn__err(err, CAIRN_E_CORRUPT,
                          "active snapshot %s: its commit to %s was interrupted and %s/snapshots/%s "
                          "no longer holds its diff (it makes the chain id %s)",
                          id, chain, st->path, hex, got);
    memcpy(out_diff, diff_id, sizeof(diff_id));
    return commit_rows(st, id, a, chain, diff_id, size, true, fn, ud, err);
}

int cairn__snapshot_commit(cairn_state *st, const char *id, cairn__commit_fn fn, void *ud,
                           char *out_chain_id, char *out_diff_id, cairn_error *err)
{
    int r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    cairn_active_info a;
    r = cairn_snapshot_active_stat(st, id, &a, err);
    if (r < 0)
        return r;
    if (a.view)
        return cairn__err(err, -EINVAL, "%s is a view: there is nothing to commit", id);
    r = active_mounted(st, id, err);
    if (r < 0)
        return r;
    _cleanup_close_ int idfd = -1;
    {
        char p[64];
        snprintf(p, sizeof(p), "active/%s", id);
        idfd = openat(st->dirfd, p, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (idfd < 0)
            return cairn__err(err, CAIRN_E_CORRUPT, "active snapshot %s: %s/%s: %s", id,
                              st->path, p, cairn_strerror(-errno));
    }
    char diff_id[CAIRN_DIGEST_LEN + 1], chain[CAIRN_DIGEST_LEN + 1];
    _cleanup_close_ int fsfd = openat(idfd, "fs", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fsfd < 0) {
        int e = errno;
        r = e == ENOENT ? intent_read(st, idfd, id, chain, err) : 0;
        if (r < 0)
            return r;
        if (r == 0)
            return cairn__err(err, CAIRN_E_CORRUPT, "active snapshot %s: fs: %s", id,
                              cairn_strerror(-e));
        /* The fs moved to snapshots/<hex> by a commit that did not finish. */
        r = cairn__lock(st, false, err);
        if (r < 0)
            return r;
        r = commit_resume(st, id, &a, chain, diff_id, fn, ud, err);
        cairn__unlock(st);
        goto done;
    }
    uint64_t size = 0;
    char what[96];
    snprintf(what, sizeof(what), "active snapshot %s", id);
    r = cairn__tar_digest(fsfd, what, CAIRN__TAR_STRIP, diff_id, &size, err);
    if (r < 0)
        return r;
    cairn__chain_id(a.parent, diff_id, chain);
    r = cairn__lock(st, false, err);
    if (r < 0)
        return r;
    cairn__snaprow row;
    int found = cairn__snapshot_find(st, chain, &row, err);
    r = found < 0 ? found : 0;
    if (r == 0 && found == 0) {
        /* The intent first, durable: from the rename on, the active row
         * names where its diff went, so a rerun finishes the commit and
         * gc keeps the directory (cairn__snapshot_pending). */
        char line[CAIRN_DIGEST_LEN + 128], owner[96];
        r = cairn__owner_token(st, owner, sizeof(owner));
        if (r < 0)
            r = cairn__err(err, r, "active snapshot %s: the lock of %s: %m", id, st->path);
        snprintf(line, sizeof(line), "%s\n%s\n", chain, r == 0 ? owner : "");
        if (r == 0)
            r = cairn__write_file_atomic(idfd, COMMIT_INTENT, line, strlen(line), 0600);
        if (r < 0)
            r = cairn__err(err, r, "active snapshot %s: write %s: %m", id, COMMIT_INTENT);
        if (r == 0)
            r = syncfs_fd(st, fsfd, err);
        if (r == 0)
            r = place(st, idfd, "fs", chain, diff_id, err);
        /* Placed, or the same snapshot was there (ours dropped): either way
         * the diff is at snapshots/<hex> and the rows make it committed. A
         * failure from here leaves the active row and its intent: the
         * rerun resumes. */
        if (r >= 0)
            r = commit_rows(st, id, &a, chain, diff_id, size, true, fn, ud, err);
    } else if (r == 0) {
        r = commit_rows(st, id, &a, chain, diff_id, 0, false, fn, ud, err);
    }
    cairn__unlock(st);
done:
    if (r < 0)
        return r;
    /* Committed: what is left of active/<id> (work/, the intent, our copy
     * of a diff that was there already) is no longer named by any row. */
    _cleanup_close_ int afd = openat(st->dirfd, "active", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (afd >= 0)
        cairn__rm_rf_at(afd, id);
    if (out_chain_id)
        memcpy(out_chain_id, chain, sizeof(chain));
    if (out_diff_id)
        memcpy(out_diff_id, diff_id, sizeof(diff_id));
    return 0;
}

int cairn_snapshot_commit(cairn_state *st, const char *id, char *out_chain_id, char *out_diff_id,
                          cairn_error *err)
{
    return cairn__snapshot_commit(st, id, NULL, NULL, out_chain_id, out_diff_id, err);
}

/* ---- remove ----------------------------------------------------------- */

static int first_child(cairn_state *st, const char *chain, char *out, size_t size,
                       cairn_error *err)
{
    static const char snap_sql[] = "SELECT chain_id FROM snapshots WHERE parent = ? LIMIT 1";
    static const char act_sql[] = "SELECT id FROM active WHERE parent = ? LIMIT 1";
    for (size_t i = 0; i < st->n_layers; i++) {
        for (int k = 0; k < 2; k++) {
            if (k == 1 && i > 0)
                continue; /* active snapshots are local */
            sqlite3_stmt *s;
            int r = cairn__stmt(st, i, k ? act_sql : snap_sql, &s, err);
            if (r < 0)
                return r;
            sqlite3_bind_text(s, 1, chain, -1, SQLITE_STATIC);
            int rc = sqlite3_step(s);
            if (rc == SQLITE_ROW)
                snprintf(out, size, "%s %s", k ? "active snapshot" : "snapshot", cairn__col(s, 0));
            sqlite3_reset(s);
            if (rc == SQLITE_ROW)
                return 1;
            if (rc != SQLITE_DONE)
                return cairn__err_db(err, st->layers[i].db, rc, "snapshot children");
        }
    }
    return 0;
}

/* Move dirfd/name into tmp/ and delete it there. */
static int discard_dir(cairn_state *st, int dirfd, const char *name, cairn_error *err)
{
    int tfd = cairn__tmpfd(st, err);
    if (tfd < 0)
        return tfd;
    char t[160];
    int r = cairn__tmp_name(st, t, sizeof(t), "rm");
    if (r < 0)
        return cairn__err(err, r, "staging name: %m");
    r = renameat(dirfd, name, tfd, t) < 0 ? -errno : 0;
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return cairn__err(err, r, "%s: move aside: %m", name);
    r = cairn__rm_rf_at(tfd, t);
    if (r < 0)
        return cairn__err(err, r, "%s/tmp/%s: remove: %m", st->path, t);
    return 0;
}

static int remove_active(cairn_state *st, const char *id, cairn_error *err)
{
    cairn_active_info a;
    int r = cairn_snapshot_active_stat(st, id, &a, err);
    if (r < 0)
        return r;
    r = active_mounted(st, id, err);
    if (r < 0)
        return r;
    r = active_delete(st, id, err);
    if (r < 0)
        return r;
    _cleanup_close_ int afd = openat(st->dirfd, "active", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (afd < 0)
        return cairn__err(err, -errno, "%s/active: %m", st->path);
    return discard_dir(st, afd, id, err);
}

int cairn_snapshot_remove(cairn_state *st, const char *name, cairn_error *err)
{
    int r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    if (is_active_id(name))
        return remove_active(st, name, err);
    r = cairn_digest_check(name, err);
    if (r < 0)
        return cairn__err_prefix(err, r, "'%.80s' is neither a chain id nor an active id",
                                 name ? name : "");
    cairn__snaprow row;
    r = cairn__snapshot_find(st, name, &row, err);
    if (r < 0)
        return r;
    if (r == 0)
        return cairn__err(err, -ENOENT, "snapshot %s is not there", name);
    if (row.layer != 0)
        return cairn__err(err, -EROFS, "snapshot %s is held by lower state %s; lowers are read-only",
                          name, st->layers[row.layer].root);
    r = cairn__lock(st, true, err);
    if (r < 0)
        return r;
    r = cairn__tx_begin(st, err);
    if (r == 0) {
        char child[160];
        r = first_child(st, name, child, sizeof(child), err);
        if (r == 1)
            r = cairn__err(err, CAIRN_E_INUSE, "snapshot %s is the parent of %s; remove that first",
                           name, child);
        static const char sql[] = "DELETE FROM snapshots WHERE chain_id = ?";
        sqlite3_stmt *s = NULL;
        if (r == 0)
            r = cairn__stmt(st, 0, sql, &s, err);
        if (r == 0) {
            sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
            r = cairn__step_done(st, 0, s, err);
        }
        if (r == 0)
            r = cairn__tx_commit(st, err);
        else
            cairn__tx_rollback(st);
    }
    if (r == 0) {
        /* A lower may hold the same snapshot: its own copy stays, ours goes. */
        int sfd = cairn__layer_snapfd(st, 0, err);
        r = sfd < 0 ? sfd : discard_dir(st, sfd, cairn__digest_hex(name), err);
    }
    cairn__unlock(st);
    return r;
}

/* ---- stat, list, walk -------------------------------------------------- */

int cairn_snapshot_stat(cairn_state *st, const char *chain_id, cairn_snapshot_info *out,
                        cairn_error *err)
{
    int r = cairn_digest_check(chain_id, err);
    if (r < 0)
        return r;
    cairn__snaprow row;
    r = cairn__snapshot_find(st, chain_id, &row, err);
    if (r < 0)
        return r;
    if (r == 0)
        return cairn__err(err, -ENOENT, "snapshot %s is not there", chain_id);
    row.info.last_used = last_used(st, chain_id);
    *out = row.info;
    return 0;
}

typedef struct list_ctx {
    cairn_state *st;
    cairn_snapshot_fn fn;
    void *ud;
    cairn__snaprow row; /* the chain id being read across layers */
} list_ctx;

/* Every layer's row of a chain id, topmost first, merged as the merge rule
 * says (earliest created); then emitted once. */
static int list_cb(void *ud, size_t layer, sqlite3_stmt *s, bool first)
{
    list_ctx *c = ud;
    if (first) {
        row_read(s, layer, &c->row);
        return 0;
    }
    if (sqlite3_column_int64(s, 4) < c->row.info.created)
        c->row.info.created = sqlite3_column_int64(s, 4);
    return 0;
}

static int list_emit(void *ud)
{
    list_ctx *c = ud;
    c->row.info.last_used = last_used(c->st, c->row.info.chain_id);
    return c->fn(c->ud, &c->row.info);
}

int cairn_snapshot_list(cairn_state *st, cairn_snapshot_fn fn, void *userdata, cairn_error *err)
{
    static const char sql[] = "SELECT chain_id, coalesce(parent, ''), diff_id, size, created, "
                              "tar_digest FROM snapshots ORDER BY chain_id";
    list_ctx c = {.st = st, .fn = fn, .ud = userdata};
    return cairn__union_walk_all(st, sql, NULL, list_cb, list_emit, &c, err);
}

int cairn_snapshot_active_list(cairn_state *st, cairn_active_fn fn, void *userdata,
                               cairn_error *err)
{
    static const char sql[] =
        "SELECT id, kind, coalesce(parent, ''), label, created FROM active ORDER BY id";
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        cairn_active_info a = {0};
        snprintf(a.id, sizeof(a.id), "%s", cairn__col(s, 0));
        a.view = !strcmp(cairn__col(s, 1), "view");
        snprintf(a.parent, sizeof(a.parent), "%s", cairn__col(s, 2));
        snprintf(a.label, sizeof(a.label), "%s", cairn__col(s, 3));
        a.created = sqlite3_column_int64(s, 4);
        r = fn(userdata, &a);
        if (r != 0)
            break;
    }
    sqlite3_reset(s);
    if (r == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        return cairn__err_db(err, st->layers[0].db, rc, "active list");
    return r;
}

int cairn_snapshot_walk(cairn_state *st, const char *chain_id, cairn_snapshot_fn fn,
                        void *userdata, cairn_error *err)
{
    int r = cairn_digest_check(chain_id, err);
    if (r < 0)
        return r;
    char cur[CAIRN_DIGEST_LEN + 1];
    snprintf(cur, sizeof(cur), "%s", chain_id);
    for (unsigned depth = 0;; depth++) {
        if (depth > 100000)
            return cairn__err(err, CAIRN_E_CORRUPT, "snapshot %s: the parent chain loops",
                              chain_id);
        cairn__snaprow row;
        r = cairn__snapshot_find(st, cur, &row, err);
        if (r < 0)
            return r;
        if (r == 0)
            return depth == 0 ? cairn__err(err, -ENOENT, "snapshot %s is not there", cur)
                              : cairn__err(err, CAIRN_E_CORRUPT,
                                           "snapshot %s: its ancestor %s is missing", chain_id,
                                           cur);
        r = fn(userdata, &row.info);
        if (r != 0)
            return r;
        if (!row.info.parent[0])
            return 0;
        memcpy(cur, row.info.parent, sizeof(cur));
    }
}

/* ---- fsck ------------------------------------------------------------- */

static int delete_snapshot_row(cairn_state *st, const char *chain, cairn_error *err)
{
    static const char sql[] = "DELETE FROM snapshots WHERE chain_id = ?";
    return cairn__exec_key(st, sql, chain, err);
}

/* Is the active row still there, read now? fsck beside a commit read the
 * rows a moment ago: a commit that ended since (its row deleted, then
 * active/<id> removed, then its owner's lock dropped) is no problem. */
static bool active_row_now(cairn_state *st, const char *id)
{
    static const char sql[] = "SELECT 1 FROM active WHERE id = ?";
    sqlite3_stmt *s;
    if (cairn__stmt(st, 0, sql, &s, NULL) < 0)
        return true; /* cannot tell: report */
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    bool there = sqlite3_step(s) != SQLITE_DONE;
    sqlite3_reset(s);
    return there;
}

/* Active snapshots: each row names active/<id>/fs; each directory of
 * active/ is named by a row. */
static int fsck_active(cairn__fsck *f, cairn_error *err)
{
    cairn_state *st = f->st;
    _cleanup_close_ int afd = openat(st->dirfd, "active", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (afd < 0)
        return cairn__err(err, -errno, "%s/active: %m", st->path);
    static const char sql[] = "SELECT id FROM active ORDER BY id";
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    cairn__strset *ids = cairn__strset_new();
    if (!ids)
        return cairn__err(err, -ENOMEM, "out of memory");
    cairn__strv gone = {0};
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (cairn__strset_add(ids, cairn__col(s, 0)) < 0)
            r = cairn__err(err, -ENOMEM, "out of memory");
    sqlite3_reset(s);
    if (r == 0 && rc != SQLITE_DONE)
        r = cairn__err_db(err, st->layers[0].db, rc, "fsck: read active");
    /* Rows whose directory is gone are reported, not dropped: an active
     * snapshot is a user's work in progress, removed with snapshot rm. */
    while (r == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *id = cairn__col(s, 0);
        char p[80];
        snprintf(p, sizeof(p), "%.40s/fs", id);
        struct stat sb;
        if (fstatat(afd, p, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode))
            continue;
        if (is_active_id(id) && cairn__strv_push(&gone, id) < 0)
            r = cairn__err(err, -ENOMEM, "out of memory");
    }
    sqlite3_reset(s);
    /* A row whose fs is gone: a commit stopped after the diff moved (its
     * intent names where: a rerun, or repair, finishes it), or lost work. */
    for (size_t i = 0; r == 0 && i < gone.n; i++) {
        const char *id = gone.v[i];
        char chain[CAIRN_DIGEST_LEN + 1];
        cairn_error e2 = {0};
        _cleanup_close_ int idfd = openat(afd, id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (idfd < 0 || intent_read(st, idfd, id, chain, &e2) != 1) {
            if (active_row_now(st, id))
                cairn__fsck_report(f, "active", id, "missing", "",
                                   "recorded, but %s/active/%s/fs is not a directory", st->path,
                                   id);
            continue;
        }
        /* A commit at work now (beside this fsck) is no problem: its rows
         * come next. Its owner's lock is dropped after its row is gone, so
         * a row read after the lock is seen free tells a stopped commit. */
        if (intent_live(st, idfd) || !active_row_now(st, id))
            continue;
        bool fixed = false;
        if (f->opts.repair) {
            e2 = (cairn_error){0};
            fixed = cairn__snapshot_commit(st, id, NULL, NULL, NULL, NULL, &e2) == 0;
        }
        cairn__fsck_report(f, "active", id, "interrupted", fixed ? "committed" : "",
                           "its commit to %s stopped after the diff moved to snapshots/; "
                           "'cairn snapshot commit %s' finishes it%s%s", chain, id,
                           !fixed && e2.message[0] ? ": " : "", !fixed ? e2.message : "");
    }
    cairn__strv_free(&gone);
    int d2 = r == 0 ? dup(afd) : -1;
    DIR *d = d2 >= 0 ? fdopendir(d2) : NULL;
    if (r == 0 && !d) {
        if (d2 >= 0)
            close(d2);
        r = cairn__err(err, -errno, "%s/active: %m", st->path);
    }
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' && !cairn__strset_has(ids, de->d_name))
            cairn__fsck_report(f, "active", de->d_name, "unreferenced", "",
                               "%s/active/%s is named by no row (gc removes it)", st->path,
                               de->d_name);
    if (d)
        closedir(d);
    cairn__strset_free(ids);
    return r;
}

int cairn__fsck_snapshots(cairn__fsck *f, cairn_error *err)
{
    int ra = fsck_active(f, err);
    if (ra < 0)
        return ra;
    cairn_state *st = f->st;
    int sfd = cairn__layer_snapfd(st, 0, err);
    if (sfd < 0)
        return sfd;
    static const char sql[] = "SELECT chain_id, coalesce(parent, ''), diff_id, size, created, "
                              "tar_digest FROM snapshots ORDER BY chain_id";
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    cairn__snaprow *rows = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            cairn__snaprow *nr = realloc(rows, cap * sizeof(*nr));
            if (!nr) {
                free(rows);
                sqlite3_reset(s);
                return cairn__err(err, -ENOMEM, "out of memory");
            }
            rows = nr;
        }
        row_read(s, 0, &rows[n++]);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        free(rows);
        return cairn__err_db(err, st->layers[0].db, rc, "fsck: read snapshots");
    }
    f->total += n;
    for (size_t i = 0; i < n && r == 0; i++) {
        cairn__snaprow *w = &rows[i];
        const char *c = w->info.chain_id;
        if ((r = cairn__fsck_tick(f, err)) < 0)
            break;
        if (cairn_digest_check(c, NULL) < 0) {
            cairn__fsck_report(f, "snapshot", c, "corrupt", f->opts.repair ? "dropped row" : "",
                               "the row's chain id is malformed");
            if (f->opts.repair)
                r = delete_snapshot_row(st, c, err);
            continue;
        }
        char expect[CAIRN_DIGEST_LEN + 1];
        cairn__chain_id(w->info.parent, w->info.diff_id, expect);
        const char *hex = cairn__digest_hex(c);
        _cleanup_close_ int dfd = openat(sfd, hex, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0) {
            int e = errno;
            struct stat lsb;
            bool link = e == ELOOP || (fstatat(sfd, hex, &lsb, AT_SYMLINK_NOFOLLOW) == 0 &&
                                       S_ISLNK(lsb.st_mode));
            cairn__fsck_report(f, "snapshot", c, "missing", f->opts.repair ? "dropped row" : "",
                               "recorded, but %s/snapshots/%s is %s", st->path, hex,
                               link ? "a symlink, not a directory of the state" : cairn_strerror(-e));
            if (f->opts.repair)
                r = delete_snapshot_row(st, c, err);
            continue;
        }
        if (w->info.parent[0] && cairn_digest_check(w->info.parent, NULL) < 0) {
            cairn__fsck_report(f, "snapshot", c, "corrupt", f->opts.repair ? "dropped row" : "",
                               "its parent '%.80s' is not a digest", w->info.parent);
            if (f->opts.repair)
                r = delete_snapshot_row(st, c, err);
            continue;
        }
        if (w->info.parent[0]) {
            cairn__snaprow pr;
            int q = cairn__snapshot_find(st, w->info.parent, &pr, err);
            if (q < 0) {
                r = q;
                break;
            }
            if (q == 0)
                cairn__fsck_report(f, "snapshot", c, "dangling", "", "its parent %s is missing",
                                   w->info.parent);
        }
        char why[1200] = "";
        if (strcmp(expect, c) != 0)
            snprintf(why, sizeof(why), "its parent and DiffID make the chain id %s", expect);
        else if (!f->opts.no_hash) {
            char got[CAIRN_DIGEST_LEN + 1];
            const char *want = w->tar_digest[0] ? w->tar_digest : w->info.diff_id;
            cairn_error e2 = {0};
            int q = cairn__tar_digest(dfd, c, 0, got, NULL, &e2);
            if (q < 0)
                snprintf(why, sizeof(why), "reading it failed: %s", e2.message);
            else if (strcmp(got, want) != 0)
                snprintf(why, sizeof(why), "its files tar to %s, the row says %s", got, want);
        }
        if (!why[0])
            continue;
        cairn__fsck_report(f, "snapshot", c, "corrupt", f->opts.repair ? "quarantined" : "", "%s",
                           why);
        if (f->opts.repair) {
            r = cairn__fsck_quarantine(f, sfd, hex, "snapshot", err);
            if (r == 0)
                r = delete_snapshot_row(st, c, err);
        }
    }
    free(rows);
    if (r < 0)
        return r;

    /* Directories no row names, but those of commits in progress (the
     * active checker reported each of those). */
    static const char named[] = "SELECT 1 FROM snapshots WHERE chain_id = ?";
    cairn__strset *pending = cairn__strset_new();
    if (!pending)
        return cairn__err(err, -ENOMEM, "out of memory");
    r = cairn__snapshot_pending(st, pending, err);
    if (r == 0)
        r = cairn__fsck_unreferenced(f, sfd, "snapshots", "snapshot", named, pending, err);
    cairn__strset_free(pending);
    return r;
}

/* ---- the directories of a chain --------------------------------------- */

void cairn__chain_free(cairn__chain *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->dirs[i]);
    free(c->dirs);
    c->dirs = NULL;
    c->n = 0;
}

typedef struct chain_ctx {
    cairn_state *st;
    cairn__chain *c;
    cairn_error *err;
} chain_ctx;

int cairn__snapshot_dir_check(cairn_state *st, size_t layer, const char *chain_id,
                              cairn_error *err)
{
    int sfd = cairn__layer_snapfd(st, layer, err);
    if (sfd < 0)
        return sfd;
    const char *hex = cairn__digest_hex(chain_id);
    struct stat sb;
    if (fstatat(sfd, hex, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : cairn__err(err, -errno, "snapshot %s: %s/snapshots/%s: %m",
                                                chain_id, st->layers[layer].root, hex);
    if (S_ISLNK(sb.st_mode))
        return cairn__err(err, CAIRN_E_UNSAFE,
                          "snapshot %s: %s/snapshots/%s is a symlink, not a directory of the state",
                          chain_id, st->layers[layer].root, hex);
    if (!S_ISDIR(sb.st_mode))
        return cairn__err(err, CAIRN_E_CORRUPT, "snapshot %s: %s/snapshots/%s is not a directory",
                          chain_id, st->layers[layer].root, hex);
    return 0;
}

int cairn__snapshot_ensure(cairn_state *st, size_t layer, const char *chain_id,
                           cairn_error *err)
{
    if (!st->layers[layer].lazy)
        return 0;
    int sfd = cairn__layer_snapfd(st, layer, err);
    if (sfd < 0)
        return sfd;
    struct stat sb;
    if (fstatat(sfd, cairn__digest_hex(chain_id), &sb, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    if (errno != ENOENT)
        return cairn__err(err, -errno, "snapshot %s: %s/snapshots/%s: %m", chain_id,
                          st->layers[layer].root, cairn__digest_hex(chain_id));
    return cairn__lower_fetch(st, layer, CAIRN__LOWER_SNAPSHOT, chain_id, err);
}

static int chain_cb(void *ud, const cairn_snapshot_info *info)
{
    chain_ctx *x = ud;
    int e = cairn__snapshot_ensure(x->st, (size_t)info->lower, info->chain_id, x->err);
    if (e < 0)
        return e;
    /* The paths go to overlayfs and to checkouts, which follow symlinks:
     * each must be a directory of its layer's snapshots/. */
    int r = cairn__snapshot_dir_check(x->st, (size_t)info->lower, info->chain_id, x->err);
    if (r < 0)
        return r;
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

int cairn__chain_get(cairn_state *st, const char *chain_id, cairn__chain *out, cairn_error *err)
{
    chain_ctx x = {st, out, err};
    int r = cairn_snapshot_walk(st, chain_id, chain_cb, &x, err);
    if (r < 0)
        cairn__chain_free(out);
    return r;
}
