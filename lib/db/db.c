/* db.c: the metadata database of a state, as a file: opened, checked,
 * migrated. Nothing here knows of an open state (core/layers.c has that).
 *
 * One SQLite file per state, db/<state-id>.sqlite, in WAL mode while the
 * state is live and in rollback mode (a single self-contained file) once it
 * is frozen. Lowers are opened with immutable=1: SQLite takes no lock and
 * writes nothing, so a lower can sit on a read-only filesystem or an
 * overlayfs lower layer without being copied up.
 *
 * The schema version is PRAGMA user_version. Migrations only go forward:
 * migration i turns version i into i + 1, all in one transaction. A database
 * whose version is newer than CAIRN_SCHEMA_VERSION is refused.
 *
 * Merge rules (docs/DESIGN.md): every table is a set or a register whose
 * union is well defined, so rows can be copied between databases by
 * INSERT ... ON CONFLICT DO UPDATE with a commutative resolution (min of
 * creation times, max of use times and counts, newest wins for registers).
 */
#include "db/db.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL) WITHOUT ROWID;"
    /* blobs: union; created = min, media_type = max (a deterministic pick) */
    "CREATE TABLE blobs ("
    "  digest TEXT PRIMARY KEY,"
    "  size INTEGER NOT NULL,"
    "  media_type TEXT NOT NULL DEFAULT '',"
    "  created INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX blobs_media_type ON blobs(media_type);"
    /* labels: last-writer-wins register per (digest, key); value NULL clears */
    "CREATE TABLE blob_labels ("
    "  digest TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  value TEXT,"
    "  updated INTEGER NOT NULL,"
    "  PRIMARY KEY (digest, key)) WITHOUT ROWID;"
    /* committed snapshots, named by chain id: union, created = min */
    "CREATE TABLE snapshots ("
    "  chain_id TEXT PRIMARY KEY,"
    "  parent TEXT,"
    "  diff_id TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  created INTEGER NOT NULL,"
    /* digest of the canonical tar of the directory: diff_id, unless imported
     * from a tar in another form; a function of the content, so any copy will do */
    "  tar_digest TEXT NOT NULL DEFAULT '') WITHOUT ROWID;"
    "CREATE INDEX snapshots_parent ON snapshots(parent);"
    /* active snapshots and views: local, never merged */
    "CREATE TABLE active ("
    "  id TEXT PRIMARY KEY,"
    "  kind TEXT NOT NULL,"
    "  parent TEXT,"
    "  label TEXT NOT NULL DEFAULT '',"
    "  created INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX active_parent ON active(parent);"
    /* images: name -> manifest, last-writer-wins register */
    "CREATE TABLE images ("
    "  name TEXT PRIMARY KEY,"
    "  manifest TEXT NOT NULL,"
    "  config TEXT NOT NULL DEFAULT '',"
    "  top TEXT NOT NULL DEFAULT '',"
    "  updated INTEGER NOT NULL) WITHOUT ROWID;"
    /* cache results: union of (key, result) */
    "CREATE TABLE cache_results ("
    "  key TEXT NOT NULL,"
    "  result TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  PRIMARY KEY (key, result)) WITHOUT ROWID;"
    "CREATE INDEX cache_results_result ON cache_results(result, kind);"
    /* how many results name each object, and when one last did (wall
     * clock, whatever the rows' own times): kept by the triggers below, so
     * gc reads one row an object instead of one a record; not merged (each
     * database derives its own from its cache_results) */
    "CREATE TABLE cache_result_refs ("
    "  result TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  n INTEGER NOT NULL,"
    "  touched INTEGER NOT NULL,"
    "  PRIMARY KEY (result, kind)) WITHOUT ROWID;"
    "CREATE INDEX cache_result_refs_touched ON cache_result_refs(touched);"
    "CREATE TRIGGER cache_results_ins AFTER INSERT ON cache_results BEGIN"
    "  INSERT INTO cache_result_refs(result, kind, n, touched)"
    "  VALUES (new.result, new.kind, 1, CAST(strftime('%s', 'now') AS INTEGER))"
    "  ON CONFLICT(result, kind) DO UPDATE SET n = n + 1, touched = excluded.touched;"
    "END;"
    "CREATE TRIGGER cache_results_del AFTER DELETE ON cache_results BEGIN"
    "  UPDATE cache_result_refs SET n = n - 1 WHERE result = old.result AND kind = old.kind;"
    "  DELETE FROM cache_result_refs WHERE result = old.result AND kind = old.kind AND n <= 0;"
    "END;"
    "CREATE TRIGGER cache_results_upd AFTER UPDATE OF result, kind ON cache_results BEGIN"
    "  UPDATE cache_result_refs SET n = n - 1 WHERE result = old.result AND kind = old.kind;"
    "  DELETE FROM cache_result_refs WHERE result = old.result AND kind = old.kind AND n <= 0;"
    "  INSERT INTO cache_result_refs(result, kind, n, touched)"
    "  VALUES (new.result, new.kind, 1, CAST(strftime('%s', 'now') AS INTEGER))"
    "  ON CONFLICT(result, kind) DO UPDATE SET n = n + 1, touched = excluded.touched;"
    "END;"
    /* cache links: union */
    "CREATE TABLE cache_links ("
    "  parent TEXT NOT NULL,"
    "  input INTEGER NOT NULL,"
    "  output INTEGER NOT NULL,"
    "  op TEXT NOT NULL,"
    "  selector TEXT NOT NULL,"
    "  child TEXT NOT NULL,"
    "  PRIMARY KEY (parent, input, output, op, selector, child)) WITHOUT ROWID;"
    "CREATE INDEX cache_links_child ON cache_links(child);"
    /* usage per object and per state: max of times, counts per state */
    "CREATE TABLE usage ("
    "  object TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  last_used INTEGER NOT NULL,"
    "  hits INTEGER NOT NULL,"
    "  PRIMARY KEY (object, state)) WITHOUT ROWID;"
    "CREATE INDEX usage_last_used ON usage(last_used);"
    /* volumes: union of versions; current = newest (created, version);
     * created in unix nanoseconds, max on merge */
    "CREATE TABLE volume_versions ("
    "  name TEXT NOT NULL,"
    "  version TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  PRIMARY KEY (name, version)) WITHOUT ROWID;"
    /* leases: local, never merged */
    "CREATE TABLE leases ("
    "  id TEXT PRIMARY KEY,"
    "  created INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE lease_resources ("
    "  lease TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,"
    "  kind TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  PRIMARY KEY (lease, kind, name)) WITHOUT ROWID;",
    /* 1 -> 2: containerd's names (lib/containerd/). containerd_names maps
     * the name containerd gave a committed snapshot, past its
     * "<namespace>/<n>/" prefix (the ChainID as containerd computes it from
     * the image), to the snapshot's cairn ChainID: a union, merged, so that
     * any containerd over any merge of states finds what another unpacked. */
    "CREATE TABLE containerd_names ("
    "  name TEXT NOT NULL,"
    "  chain_id TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  PRIMARY KEY (name, chain_id)) WITHOUT ROWID;"
    "CREATE INDEX containerd_names_chain ON containerd_names(chain_id);"
    /* the snapshots one containerd knows, by its backend key: kind 1 view,
     * 2 active, 3 committed (containerd's Kind); target the active id or the
     * chain id; parent the parent's key; labels a JSON object; times in unix
     * ns. Local, never merged, like active snapshots. */
    "CREATE TABLE containerd_snapshots ("
    "  key TEXT PRIMARY KEY,"
    "  kind INTEGER NOT NULL,"
    "  target TEXT NOT NULL,"
    "  parent TEXT NOT NULL DEFAULT '',"
    "  labels TEXT NOT NULL DEFAULT '{}',"
    "  created INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX containerd_snapshots_target ON containerd_snapshots(target);"
    "CREATE INDEX containerd_snapshots_parent ON containerd_snapshots(parent);"
    /* the blobs a containerd wrote into this state: gc roots until its own
     * gc deletes them; local, never merged */
    "CREATE TABLE containerd_content ("
    "  digest TEXT PRIMARY KEY,"
    "  created INTEGER NOT NULL) WITHOUT ROWID;",
};

int cairn__db_schema(sqlite3 *db)
{
    sqlite3_stmt *s = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

int cairn__db_exec(sqlite3 *db, const char *sql, cairn_error *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    sqlite3_free(msg);
    if (rc != SQLITE_OK)
        return cairn__err_db(err, db, rc, NULL);
    return 0;
}

int cairn__db_migrate(sqlite3 *db, const char *path, bool create, cairn_error *err)
{
    /* The common case, an up-to-date database, takes no write lock. */
    if (cairn__db_schema(db) == CAIRN_SCHEMA_VERSION)
        return 0;
    int r = cairn__db_exec(db, "BEGIN IMMEDIATE", err);
    if (r < 0)
        return r;
    int v = cairn__db_schema(db);
    if (v < 0) {
        r = cairn__err_db(err, db, sqlite3_errcode(db), "reading the schema version");
        goto fail;
    }
    if (v > CAIRN_SCHEMA_VERSION) {
        r = cairn__err(err, CAIRN_E_NEWER,
                       "%s: schema version %d is newer than this cairn's %d; upgrade cairn", path,
                       v, CAIRN_SCHEMA_VERSION);
        goto fail;
    }
    if (v == 0 && !create) {
        /* Checked at open; checked again under the write lock, since a
         * schema made here would stand for rows that are lost. */
        r = cairn__err(err, CAIRN_E_CORRUPT,
                       "%s: not a cairn database (no schema); only 'cairn init' creates one",
                       path);
        goto fail;
    }
    for (int i = v; i < CAIRN_SCHEMA_VERSION; i++) {
        r = cairn__db_exec(db, migrations[i], err);
        if (r < 0)
            goto fail;
    }
    if (v < CAIRN_SCHEMA_VERSION) {
        char sql[64];
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", CAIRN_SCHEMA_VERSION);
        r = cairn__db_exec(db, sql, err);
        if (r < 0)
            goto fail;
    }
    return cairn__db_exec(db, "COMMIT", err);
fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

/* The first read of a database failed: say why in its own words. A full
 * file system (SQLite could not grow the -shm WAL index or write the WAL)
 * is -ENOSPC, an I/O error -EIO; only what SQLite reads as not a database
 * is CAIRN_E_CORRUPT. */
static int open_failed(sqlite3 *db, const char *path, cairn_error *err)
{
    int ext = sqlite3_extended_errcode(db);
    int prim = ext & 0xff;
    if (prim == SQLITE_FULL || prim == SQLITE_IOERR) {
        _cleanup_free_ char *dir = strdup(path);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash)
            *slash = 0;
        struct statvfs vfs;
        bool full = prim == SQLITE_FULL || sqlite3_system_errno(db) == ENOSPC ||
                    (dir && statvfs(slash ? dir : ".", &vfs) == 0 && vfs.f_bavail == 0);
        if (full)
            return cairn__err(err, -ENOSPC,
                              "%s: the file system is full: the database cannot be opened (%s); "
                              "free space, or run 'cairn gc', which frees the state's reserve",
                              path, sqlite3_errmsg(db));
        return cairn__err(err, -EIO, "%s: I/O error opening the database (%s, code %d)", path,
                          sqlite3_errmsg(db), ext);
    }
    return cairn__err(err, CAIRN_E_CORRUPT, "%s: not a cairn database (%s)", path,
                      sqlite3_errmsg(db));
}

static int db_open(const char *path, int mode, sqlite3 **out, cairn_error *err);

/* Does db hold no table at all (a 0-byte file, or a fresh one)? */
static bool db_is_empty(sqlite3 *db)
{
    sqlite3_stmt *s = NULL;
    bool empty = false;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        empty = sqlite3_column_int(s, 0) == 0;
    sqlite3_finalize(s);
    return empty;
}

/* Is db a cairn database this cairn can use? Returns its schema version.
 * SQLite opens an empty (0-byte) file, or any other program's database, as a
 * valid database of version 0; migrating it would make a fresh, empty schema
 * under the state's identity, and the next gc would delete every object its
 * lost rows named. So version 0 is a cairn database only while `cairn init`
 * creates it (allow_empty), and any other needs the meta row init writes. */
static int db_check(sqlite3 *db, const char *path, bool allow_empty, cairn_error *err)
{
    int v = cairn__db_schema(db);
    if (v < 0)
        return open_failed(db, path, err);
    if (v > CAIRN_SCHEMA_VERSION)
        return cairn__err(err, CAIRN_E_NEWER,
                          "%s: schema version %d is newer than this cairn's %d; upgrade cairn",
                          path, v, CAIRN_SCHEMA_VERSION);
    if (v == 0 && allow_empty)
        return 0;
    if (v == 0)
        return cairn__err(err, CAIRN_E_CORRUPT,
                          "%s: not a cairn database (%s); only 'cairn init' creates one, and "
                          "the state's rows are not in it: restore the file from a copy",
                          path, db_is_empty(db) ? "it is empty" : "it has no cairn schema");
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT 1 FROM meta WHERE key = 'state_id'", -1, &s, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW)
        return cairn__err(err, CAIRN_E_CORRUPT,
                          "%s: not a cairn database (no state id in its meta table%s%s)", path,
                          rc == SQLITE_DONE ? "" : ": ",
                          rc == SQLITE_DONE ? "" : sqlite3_errmsg(db));
    return v;
}

int cairn__db_open(const char *path, int mode, sqlite3 **out, cairn_error *err)
{
    int r = db_open(path, mode, out, err);
    if (r != -ENOSPC || mode != CAIRN__DB_RO)
        return r;
    /* A reader of a live state needs room for the -shm WAL index; on a full
     * file system there is none. With no WAL left (the last writer
     * checkpointed and removed it: the database file holds everything), the
     * file can be read as immutable, which needs no -shm. */
    _cleanup_free_ char *wal = NULL;
    struct stat sb;
    if (asprintf(&wal, "%s-wal", path) < 0)
        return r;
    if (stat(wal, &sb) == 0 && sb.st_size > 0)
        return r;
    cairn_error e2 = {0};
    if (db_open(path, CAIRN__DB_IMMUTABLE, out, &e2) < 0)
        return r;
    return 0;
}

int cairn__db_copy(sqlite3 *src, const char *path, sqlite3 **out, cairn_error *err)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_EXCLUSIVE,
                             NULL);
    if (rc != SQLITE_OK) {
        int r = cairn__err_db(err, db, rc, "create the copy's database");
        sqlite3_close(db);
        return r;
    }
    sqlite3_backup *b = sqlite3_backup_init(db, "main", src, "main");
    if (!b) {
        int r = cairn__err_db(err, db, sqlite3_errcode(db), "backup");
        sqlite3_close(db);
        return r;
    }
    rc = sqlite3_backup_step(b, -1);
    int rc2 = sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE || rc2 != SQLITE_OK) {
        int r = cairn__err_db(err, db, rc != SQLITE_DONE ? rc : rc2, "copy the database");
        sqlite3_close(db);
        return r;
    }
    *out = db;
    return 0;
}

char *cairn__db_uri(const char *path, bool immutable)
{
    size_t n = strlen(path);
    char *u = malloc(n * 3 + 64);
    if (!u)
        return NULL;
    char *o = stpcpy(u, "file:");
    for (const char *p = path; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '%' || c == '?' || c == '#' || c < 32 || c >= 127)
            o += sprintf(o, "%%%02X", c);
        else
            *o++ = (char)c;
    }
    strcpy(o, immutable ? "?mode=ro&immutable=1" : "?mode=ro");
    return u;
}

static int db_open(const char *path, int mode, sqlite3 **out, cairn_error *err)
{
    sqlite3 *db = NULL;
    int rc;
    bool writable = mode == CAIRN__DB_RW || mode == CAIRN__DB_CREATE;
    if (writable) {
        rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI,
                             NULL); /* URI: ATTACH of immutable lowers (merge.c) */
    } else {
        /* A live state read by another process: read-only, with locks. A
         * frozen one: immutable, no locks, nothing written beside it. */
        _cleanup_free_ char *u = cairn__db_uri(path, mode == CAIRN__DB_IMMUTABLE);
        if (!u)
            return cairn__err(err, -ENOMEM, "%s: out of memory", path);
        rc = sqlite3_open_v2(u, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                             NULL);
    }
    if (rc != SQLITE_OK) {
        int r = cairn__err_db(err, db, rc, "open");
        if (!db || (rc & 0xff) == SQLITE_CANTOPEN)
            r = cairn__err(err, -ENOENT, "%s: cannot open the database", path);
        sqlite3_close(db);
        return r;
    }
    sqlite3_extended_result_codes(db, 1);
    /* A reader of a live state may meet a writer's lock or the recovery of
     * a WAL left by a killed process: wait a little rather than fail. */
    if (mode == CAIRN__DB_RO)
        sqlite3_busy_timeout(db, 10000);
    if (writable) {
        sqlite3_busy_timeout(db, 60000);
        /* Check it is a cairn database before switching modes: a corrupt,
         * empty or foreign file must fail here, unchanged. */
        int r = db_check(db, path, mode == CAIRN__DB_CREATE, err);
        if (r < 0) {
            sqlite3_close(db);
            return r;
        }
        r = cairn__db_exec(db,
                    "PRAGMA journal_mode = WAL;"
                    "PRAGMA synchronous = FULL;"
                    "PRAGMA foreign_keys = ON;"
                    "PRAGMA cache_size = -16384;",
                    err);
        if (r < 0) {
            sqlite3_close(db);
            return r;
        }
    } else {
        int v = db_check(db, path, false, err);
        if (v < 0) {
            sqlite3_close(db);
            return v;
        }
        if (v < CAIRN_SCHEMA_VERSION) {
            sqlite3_close(db);
            return cairn__err(err, CAIRN_E_FORMAT,
                              "%s: schema version %d is older than %d and the database is "
                              "read-only; open its state writable once to migrate it",
                              path, v, CAIRN_SCHEMA_VERSION);
        }
    }
    *out = db;
    return 0;
}
