/* images.c: the images table (cairn/image.h: get, list, remove) and its
 * fsck checker.
 *
 * Invariant: a live row of `images` (manifest != '') names a manifest blob,
 * a config blob and a top snapshot that all exist in the state or its
 * lowers. A row with manifest = '' is a tombstone: it hides a lower's row of
 * the same name (the register's last write was a removal).
 */
#include "image/image-private.h"
#include "cache/cache-private.h"
#include "core/fsck.h"

#include "cairn/image.h"

int cairn_image_name_check(const char *name, cairn_error *err)
{
    if (!name || !*name)
        return cairn__err(err, -EINVAL, "image name: empty");
    size_t n = strlen(name);
    if (n > CAIRN_IMAGE_NAME_MAX)
        return cairn__err(err, -EINVAL, "image name '%.40s...': longer than %d characters", name,
                          CAIRN_IMAGE_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= ' ' || c >= 127)
            return cairn__err(err, -EINVAL,
                              "image name '%.80s': character %zu is a space or not printable ASCII",
                              name, i + 1);
    }
    return 0;
}

int cairn__image_snapshot_exists(cairn_state *st, const char *chain_id, cairn_error *err)
{
    static const char sql[] = "SELECT 1 FROM snapshots WHERE chain_id = ?";
    return cairn__layers_have(st, sql, chain_id, NULL, err);
}

/* ---- the images table ------------------------------------------------- */

static int record_locked(cairn_state *st, const char *name, const char *manifest,
                         const char *config, const char *top, cairn_error *err);

/* Publish last, under the state's lock held shared: what the row names is
 * checked to be there and counted as used, so a gc (which deletes under the
 * lock held exclusive, and keeps what was used during its run) cannot take
 * it between the check and the row. */
int cairn__image_record(cairn_state *st, const char *name, const char *manifest, const char *config,
                  const char *top, cairn_error *err)
{
    int r = cairn__lock(st, false, err);
    if (r < 0)
        return r;
    const char *blobs[] = {manifest, config};
    for (size_t i = 0; r == 0 && i < 2; i++) {
        if (!blobs[i][0])
            continue;
        int p = cairn__object_present(st, "blob", blobs[i], NULL, err);
        if (p == 0)
            r = cairn__err(err, -ENOENT, "image %s: blob %s was removed while importing; import again",
                           name, blobs[i]);
        else if (p < 0)
            r = p;
        else
            cairn__usage_mark(st, "blob", blobs[i], 0, NULL);
    }
    if (r == 0 && top[0]) {
        int p = cairn__object_present(st, "snapshot", top, NULL, err);
        if (p == 0)
            r = cairn__err(err, -ENOENT,
                           "image %s: snapshot %s was removed while importing; import again", name,
                           top);
        else if (p < 0)
            r = p;
        else
            cairn__usage_mark(st, "snapshot", top, 0, NULL);
    }
    if (r == 0)
        r = record_locked(st, name, manifest, config, top, err);
    cairn__unlock(st);
    return r;
}

static int record_locked(cairn_state *st, const char *name, const char *manifest,
                         const char *config, const char *top, cairn_error *err)
{
    static const char sql[] =
        "INSERT INTO images(name, manifest, config, top, updated) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET manifest = excluded.manifest, config = excluded.config, "
        "top = excluded.top, updated = max(excluded.updated, images.updated + 1)";
    int r = cairn__exec_args(st, err, sql, "ssssi", name, manifest, config, top,
                             (int64_t)cairn__now_ns());
    return r < 0 ? r : 0;
}

static void row_info(sqlite3_stmt *s, size_t layer, cairn_image_info *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", cairn__col(s, 0));
    snprintf(out->manifest, sizeof(out->manifest), "%s", cairn__col(s, 1));
    snprintf(out->config, sizeof(out->config), "%s", cairn__col(s, 2));
    snprintf(out->top, sizeof(out->top), "%s", cairn__col(s, 3));
    out->updated = sqlite3_column_int64(s, 4);
    out->lower = (int)layer;
}

/* The register's order (the merge rule of `images`, lib/merge.c): the newest
 * write wins, ties broken by (manifest, config, top). > 0 when a beats b. */
static int row_newer(const cairn_image_info *a, const cairn_image_info *b)
{
    if (a->updated != b->updated)
        return a->updated > b->updated ? 1 : -1;
    int c = strcmp(a->manifest, b->manifest);
    if (!c)
        c = strcmp(a->config, b->config);
    if (!c)
        c = strcmp(a->top, b->top);
    return c;
}

/* The winning row of `name` over layers `from`.. (newest across the layers,
 * as a merge would keep): its layer, or -ENOENT. A tombstone is returned as
 * a row (manifest ""). */
static int find_row(cairn_state *st, const char *name, size_t from, cairn_image_info *out,
                    cairn_error *err)
{
    static const char sql[] =
        "SELECT name, manifest, config, top, updated FROM images WHERE name = ?";
    int found = -ENOENT;
    cairn_image_info best, cur;
    for (size_t i = from; i < st->n_layers; i++) {
        sqlite3_stmt *s;
        int r = cairn__stmt(st, i, sql, &s, err);
        if (r < 0)
            return r;
        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            row_info(s, i, &cur);
            if (found < 0 || row_newer(&cur, &best) > 0) {
                best = cur;
                found = (int)i;
            }
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            return cairn__err_db(err, st->layers[i].db, rc, "image lookup");
    }
    if (found >= 0 && out)
        *out = best;
    return found;
}

/* Layers and their size, from the manifest blob (left 0 when it cannot be read). */
static void fill_manifest_info(cairn_state *st, cairn_image_info *info)
{
    void *buf = NULL;
    size_t len = 0;
    if (cairn_blob_read(st, info->manifest, &buf, &len, NULL) < 0)
        return;
    cairn__oci_manifest m = {0};
    if (cairn__oci_parse_manifest(buf, len, info->manifest, &m, NULL) == 0) {
        info->layers = (unsigned)m.n_layers;
        for (size_t i = 0; i < m.n_layers; i++)
            info->size += (uint64_t)m.layers[i].size;
        cairn__oci_manifest_clear(&m);
    }
    free(buf);
}

int cairn_image_get(cairn_state *st, const char *name, cairn_image_info *out, cairn_error *err)
{
    int r = cairn_image_name_check(name, err);
    if (r < 0)
        return r;
    cairn_image_info info;
    r = find_row(st, name, 0, &info, err);
    if (r == -ENOENT || (r >= 0 && !info.manifest[0]))
        return cairn__err(err, -ENOENT, "image '%s': not found", name);
    if (r < 0)
        return r;
    fill_manifest_info(st, &info);
    info.updated /= 1000000000; /* the row's nanoseconds order writes; the API's unit is seconds */
    if (out)
        *out = info;
    return 0;
}

struct list_ctx {
    cairn_image_fn fn;
    void *ud;
    cairn_image_info best; /* the winning row of the name being read */
};

static int list_row(void *ud, size_t layer, sqlite3_stmt *s, bool first)
{
    struct list_ctx *c = ud;
    cairn_image_info info;
    row_info(s, layer, &info);
    if (first || row_newer(&info, &c->best) > 0)
        c->best = info;
    return 0;
}

static int list_emit(void *ud)
{
    struct list_ctx *c = ud;
    if (!c->best.manifest[0])
        return 0; /* tombstone */
    cairn_image_info out = c->best;
    out.updated /= 1000000000;
    return c->fn(c->ud, &out);
}

int cairn_image_list(cairn_state *st, cairn_image_fn fn, void *userdata, cairn_error *err)
{
    static const char sql[] =
        "SELECT name, manifest, config, top, updated FROM images ORDER BY name";
    struct list_ctx c = {.fn = fn, .ud = userdata};
    return cairn__union_walk_all(st, sql, NULL, list_row, list_emit, &c, err);
}

int cairn_image_remove(cairn_state *st, const char *name, cairn_error *err)
{
    int r = cairn_image_name_check(name, err);
    if (r < 0)
        return r;
    r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    r = cairn__tx_begin(st, err);
    if (r < 0)
        return r;
    cairn_image_info top, below;
    r = find_row(st, name, 0, &top, err);
    if (r == -ENOENT || (r >= 0 && !top.manifest[0])) {
        r = cairn__err(err, -ENOENT, "image '%s': not found", name);
        goto fail;
    }
    if (r < 0)
        goto fail;
    /* A live row in a lower would show through: hide it with a tombstone. */
    int lr = find_row(st, name, 1, &below, err);
    if (lr < 0 && lr != -ENOENT) {
        r = lr;
        goto fail;
    }
    if (lr > 0 && below.manifest[0]) {
        /* A tombstone names nothing: no object to check, so no state lock,
         * which would come after this open transaction (gc takes them the
         * other way round). */
        r = record_locked(st, name, "", "", "", err);
    } else {
        static const char del[] = "DELETE FROM images WHERE name = ?";
        sqlite3_stmt *q;
        r = cairn__stmt(st, 0, del, &q, err);
        if (r < 0)
            goto fail;
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
        r = cairn__step_done(st, 0, q, err);
    }
    if (r < 0)
        goto fail;
    return cairn__tx_commit(st, err);
fail:
    cairn__tx_rollback(st);
    return r;
}

/* ---- fsck ------------------------------------------------------------- */

static int drop_row(cairn_state *st, const char *name, cairn_error *err)
{
    static const char del[] = "DELETE FROM images WHERE name = ?";
    return cairn__exec_key(st, del, name, err);
}

/* Every live image row of this state names a manifest blob, a config blob
 * and a top snapshot that are there (here or in a lower). Repair drops a
 * row that does not (the name is lost, not the content). */
int cairn__fsck_images(cairn__fsck *f, cairn_error *err)
{
    cairn_state *st = f->st;
    static const char sql[] =
        "SELECT name, manifest, config, top, updated FROM images WHERE manifest != '' "
        "ORDER BY name";
    /* Collect first: repair writes to the table being read. */
    cairn_image_info *rows = NULL;
    size_t n = 0;
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        cairn_image_info *nr = realloc(rows, (n + 1) * sizeof(*nr));
        if (!nr) {
            sqlite3_reset(s);
            free(rows);
            return cairn__err(err, -ENOMEM, "out of memory");
        }
        rows = nr;
        row_info(s, 0, &rows[n++]);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        free(rows);
        return cairn__err_db(err, st->layers[0].db, rc, "images");
    }
    f->total += n;
    for (size_t i = 0; i < n && r == 0; i++) {
        const cairn_image_info *in = &rows[i];
        const char *what = NULL, *obj = NULL;
        int e = cairn_blob_exists(st, in->manifest, NULL);
        if (e <= 0) {
            what = "manifest blob";
            obj = in->manifest;
        } else if ((e = cairn_blob_exists(st, in->config, NULL)) <= 0) {
            what = "config blob";
            obj = in->config;
        } else if (in->top[0] && (e = cairn__image_snapshot_exists(st, in->top, err)) <= 0) {
            if (e < 0)
                break;
            what = "top snapshot";
            obj = in->top;
        }
        if (what) {
            cairn__fsck_report(f, "image", in->name, "dangling",
                               f->opts.repair ? "dropped row" : "", "its %s %s is not there",
                               what, obj);
            if (f->opts.repair)
                r = drop_row(st, in->name, err);
        }
        (void)cairn__fsck_tick(f, err); /* a stop: at the end of the checker */
    }
    free(rows);
    return r;
}
