/* fsck.c: check a state against its invariants (cairn/fsck.h).
 *
 * The whole check holds the state's lock shared: gc deletes (rows, then
 * objects) only under it exclusive, so fsck never sees a row whose object
 * gc removed a moment later.
 *
 * Phases, in order:
 *   0. databases: SQLite's quick_check (integrity_check with full_db) on
 *      every database of the stack, each problem reported with its file;
 *      when one is corrupt the phases below do not run: its rows could be
 *      garbage, and repairs from them would drop good objects;
 *   1. staging: entries of tmp/ that no live process owns (core/state.c
 *      says how they are told apart) are reported; gc removes them;
 *   2. rows -> objects: every blob row of this state names a file that is
 *      there, of the recorded size and (unless no_hash) of the named digest;
 *   3. objects -> rows: every file in blobs/sha256 is named by a row of some
 *      layer (this state's or a lower's found side by side), else it is
 *      reported unreferenced (gc removes it; fsck never does).
 * Repair drops a row whose file is missing, and moves a corrupt file to
 * quarantine/<kind>.<name>.<unix-time> (core/fsck.c) before dropping its row, in one transaction
 * per object, so nothing is ever deleted silently.
 * Later phases (snapshots, records, images, volumes) live beside their
 * modules and are called from here; containerd's rows are checked here (by
 * SQL on the schema: lib/containerd/ is above this folder).
 */
#include "core/core.h"
#include "core/fsck.h"
#include "cache/cache-private.h"

#include <dirent.h>
#include <sys/stat.h>

static int delete_blob_row(cairn_state *st, const char *digest, cairn_error *err)
{
    static const char sql[] = "DELETE FROM blobs WHERE digest = ?";
    return cairn__exec_key(st, sql, digest, err);
}

typedef struct blob_row {
    char digest[CAIRN_DIGEST_LEN + 1];
    uint64_t size;
} blob_row;

static int fsck_blobs(cairn__fsck *f, cairn_error *err)
{
    cairn_state *st = f->st;
    int bfd = cairn__layer_blobfd(st, 0, err);
    if (bfd < 0)
        return bfd;
    /* Read the rows first: repairs write to the table being read. */
    static const char rows_sql[] = "SELECT digest, size FROM blobs ORDER BY digest";
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, rows_sql, &s, err);
    if (r < 0)
        return r;
    blob_row *rows = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            blob_row *nr = realloc(rows, cap * sizeof(*nr));
            if (!nr) {
                free(rows);
                sqlite3_reset(s);
                return cairn__err(err, -ENOMEM, "out of memory");
            }
            rows = nr;
        }
        snprintf(rows[n].digest, sizeof(rows[n].digest), "%s", cairn__col(s, 0));
        rows[n].size = (uint64_t)sqlite3_column_int64(s, 1);
        n++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        free(rows);
        return cairn__err_db(err, st->layers[0].db, rc, "fsck: read blobs");
    }
    f->total += n;
    for (size_t i = 0; i < n && r == 0; i++) {
        const char *d = rows[i].digest;
        if ((r = cairn__fsck_tick(f, err)) < 0)
            break;
        if (cairn_digest_check(d, NULL) < 0) {
            cairn__fsck_report(f, "blob", d, "corrupt", f->opts.repair ? "dropped row" : "",
                               "the row's digest is malformed");
            if (f->opts.repair)
                r = delete_blob_row(st, d, err);
            continue;
        }
        const char *hex = cairn__digest_hex(d);
        _cleanup_close_ int fd = openat(bfd, hex, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
            cairn__fsck_report(f, "blob", d, "missing", f->opts.repair ? "dropped row" : "",
                               "recorded, but %s/blobs/sha256/%s: %s", st->path, hex,
                               cairn_strerror(-errno));
            if (f->opts.repair)
                r = delete_blob_row(st, d, err);
            continue;
        }
        struct stat sb;
        if (fstat(fd, &sb) < 0) {
            r = cairn__err(err, -errno, "blob %s: stat: %m", d);
            break;
        }
        bool bad = false;
        char why[256] = "";
        if ((uint64_t)sb.st_size != rows[i].size) {
            bad = true;
            snprintf(why, sizeof(why), "the file has %lld bytes, the row says %llu",
                     (long long)sb.st_size, (unsigned long long)rows[i].size);
        } else if (!f->opts.no_hash) {
            char got[CAIRN_DIGEST_LEN + 1];
            int64_t m = cairn__sha256_fd(fd, got);
            if (m < 0) {
                bad = true;
                snprintf(why, sizeof(why), "reading it failed: %s", cairn_strerror((int)m));
            } else if (strcmp(got, d) != 0) {
                bad = true;
                snprintf(why, sizeof(why), "its bytes hash to %s", got);
            }
        }
        if (!bad)
            continue;
        cairn__fsck_report(f, "blob", d, "corrupt", f->opts.repair ? "quarantined" : "", "%s",
                           why);
        if (f->opts.repair) {
            r = cairn__fsck_quarantine(f, bfd, hex, "blob", err);
            if (r == 0)
                r = delete_blob_row(st, d, err);
        }
    }
    free(rows);
    if (r < 0)
        return r;

    /* Files no row names. */
    static const char named[] = "SELECT 1 FROM blobs WHERE digest = ?";
    return cairn__fsck_unreferenced(f, bfd, "blobs/sha256", "blob", named, NULL, err);
}

/* SQLite's own check of each database of the stack. Returns the number of
 * problems found, or < 0 when the check could not run. */
static int fsck_databases(cairn__fsck *f, cairn_error *err)
{
    cairn_state *st = f->st;
    int found = 0;
    for (size_t i = 0; i < st->n_layers; i++) {
        int r = cairn__layer_open(st, i, err);
        if (r < 0)
            return r;
        cairn__layer *l = &st->layers[i];
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(l->db, f->opts.full_db ? "PRAGMA integrity_check"
                                                           : "PRAGMA quick_check",
                                    -1, &s, NULL);
        if (rc != SQLITE_OK) {
            /* A database too broken to prepare a statement on is corrupt. */
            cairn__fsck_report(f, "database", l->db_path, "corrupt", "",
                               "the integrity check cannot run: %s", sqlite3_errmsg(l->db));
            found++;
            continue;
        }
        int here = 0;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            const char *msg = (const char *)sqlite3_column_text(s, 0);
            if (msg && !strcmp(msg, "ok"))
                continue;
            /* One line a problem: SQLite's first row starts with a header
             * line ("*** in database main ***"). */
            char line[400];
            snprintf(line, sizeof(line), "%s", msg ? msg : "(no message)");
            for (char *c = line; *c; c++)
                if (*c == '\n')
                    *c = ' ';
            cairn__fsck_report(f, "database", l->db_path, "corrupt", "", "%s", line);
            here++;
        }
        found += here;
        /* The check may give up on a page it cannot read after reporting
         * it; when it said nothing, the stop is the problem to report. */
        if (rc != SQLITE_DONE && !here) {
            cairn__fsck_report(f, "database", l->db_path, "corrupt", "",
                               "the integrity check stopped: %s", sqlite3_errmsg(l->db));
            found++;
        }
        sqlite3_finalize(s);
    }
    return found;
}

static void staging_found(void *ud, const char *name, uint64_t bytes, const char *why)
{
    cairn__fsck *f = ud;
    char path[128];
    snprintf(path, sizeof(path), "tmp/%s", name);
    cairn__fsck_report(f, "file", path, "unreferenced", "", "%s/%s: %s, %llu bytes (gc removes it)",
                       f->st->path, path, why, (unsigned long long)bytes);
}

/* Staging left by a process that is gone (or an earlier boot): reported,
 * never removed here (gc and a writable open remove it). */
static int fsck_staging(cairn__fsck *f, cairn_error *err)
{
    int r = cairn__tmp_sweep(f->st, true, staging_found, f, err);
    return r < 0 ? r : 0;
}

/* Checkers, in order. Modules add theirs here. */
/* containerd's rows (lib/containerd/): a key names an active snapshot or a
 * committed one that is there, a held blob is this state's. Repair drops
 * the row (containerd then sees the key gone, as after a Remove). */
static int fsck_containerd(cairn__fsck *f, cairn_error *err)
{
    cairn_state *st = f->st;
    static const char keys[] =
        "SELECT k.key, k.target, k.kind FROM containerd_snapshots k WHERE CASE k.kind "
        "WHEN 3 THEN NOT EXISTS (SELECT 1 FROM snapshots WHERE chain_id = k.target) "
        "ELSE NOT EXISTS (SELECT 1 FROM active WHERE id = k.target) END ORDER BY k.key";
    static const char held[] = "SELECT c.digest, c.digest, 0 FROM containerd_content c WHERE "
                               "NOT EXISTS (SELECT 1 FROM blobs WHERE digest = c.digest) "
                               "ORDER BY c.digest";
    static const char *const del[] = {"DELETE FROM containerd_snapshots WHERE key = ?1",
                                      "DELETE FROM containerd_content WHERE digest = ?1"};
    for (int q = 0; q < 2; q++) {
        sqlite3_stmt *s;
        int r = cairn__stmt(st, 0, q ? held : keys, &s, err);
        if (r < 0)
            return r;
        cairn__strv names = {0}, targets = {0};
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            const char *t = cairn__col(s, 1);
            /* A committed snapshot of a lower is there too. */
            cairn_snapshot_info info;
            if (q == 0 && sqlite3_column_int(s, 2) == 3 && cairn_snapshot_stat(st, t, &info, NULL) == 0)
                continue;
            if (cairn__strv_push(&names, cairn__col(s, 0)) < 0 || cairn__strv_push(&targets, t) < 0) {
                sqlite3_reset(s);
                cairn__strv_free(&names);
                cairn__strv_free(&targets);
                return cairn__err(err, -ENOMEM, "out of memory");
            }
        }
        sqlite3_reset(s);
        for (size_t i = 0; r == 0 && i < names.n; i++) {
            const char *action = "";
            if (f->opts.repair) {
                r = cairn__exec_key(st, del[q], names.v[i], err);
                action = "dropped row";
            }
            cairn__fsck_report(f, "containerd", names.v[i], "dangling", action,
                               q ? "a blob held for containerd is not in the state"
                                 : "containerd's key names %s, which is not in the state",
                               targets.v[i]);
        }
        cairn__strv_free(&names);
        cairn__strv_free(&targets);
        if (r < 0)
            return r;
        if (rc != SQLITE_DONE)
            return cairn__err_db(err, st->layers[0].db, rc, "fsck: containerd");
    }
    return 0;
}

static int (*const checkers[])(cairn__fsck *, cairn_error *) = {
    fsck_staging,
    fsck_blobs,
    cairn__fsck_snapshots,
    cairn__fsck_images,
    cairn__fsck_records,
    cairn__fsck_leases,
    cairn__fsck_volumes,
    fsck_containerd,
};

int cairn_fsck(cairn_state *st, const cairn_fsck_options *opts, cairn_fsck_fn fn, void *userdata,
               cairn_error *err)
{
    cairn__fsck f = {.st = st, .fn = fn, .ud = userdata};
    cairn_fsck_options def = CAIRN_FSCK_OPTIONS_INIT;
    f.opts = def;
    if (opts) {
        int r0 = cairn__opts_version(opts->version, CAIRN_FSCK_OPTIONS_VERSION, "fsck", err);
        if (r0 < 0)
            return r0;
        /* Version 1 ended before full_db: copy what it has. */
        if (opts->version == 1)
            memcpy(&f.opts, opts, offsetof(cairn_fsck_options, full_db));
        else
            f.opts = *opts;
    }
    if (f.opts.repair) {
        int r = cairn__check_writable(st, err);
        if (r < 0)
            return r;
    }
    /* The state's lock, shared, for the whole check: gc and blob rm delete
     * rows and then objects under it exclusive, so no deletion falls
     * between a row read here and the look at its object (which made rows
     * gc was removing read as "missing"). Best effort when read-only (a
     * frozen state, a read-only mount: nothing deletes there). */
    bool locked = cairn__lock(st, false, f.opts.repair ? err : NULL) == 0;
    if (f.opts.repair && !locked)
        return err ? err->code : -EIO;
    int r = fsck_databases(&f, err);
    for (size_t i = 0; r == 0 && !f.stopped && i < CAIRN_ARRAY_SIZE(checkers); i++)
        r = checkers[i](&f, err);
    if (r == 0 && f.stopped)
        r = f.stopped;
    if (locked)
        cairn__unlock(st);
    if (r < 0)
        return r;
    return (int)(f.problems > INT32_MAX ? INT32_MAX : f.problems);
}
