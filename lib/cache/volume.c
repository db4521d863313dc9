/* volume.c: volumes (cairn/volume.h).
 *
 * Table volume_versions(name, version, created): a set, merged by union;
 * `created` is in unix nanoseconds so that two saves in one second are
 * ordered. The current version of a name is the row with the greatest
 * (created, version) over all layers.
 *
 * An open volume is an active snapshot labelled "volume:<name>" over the
 * current version. Save commits it (cairn__snapshot_commit) under the
 * state's lock held shared, with the version row inserted in the commit's
 * last transaction, beside the snapshot row and the active row's deletion:
 * a crash leaves either the open volume (its active snapshot, or its diff
 * moved with an intent that the rerun of save finishes) or the saved
 * version, never a committed snapshot that no version names.
 */
#include "cache/cache-private.h"
#include "snapshot/snapshot-private.h"

#define LABEL_PREFIX "volume:"

static int check_name(const char *name, cairn_error *err)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > CAIRN_VOLUME_NAME_MAX)
        return cairn__err(err, -EINVAL, "volume name '%.140s': must have 1 to %d characters",
                          name ? name : "", CAIRN_VOLUME_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return cairn__err(err, -EINVAL,
                              "volume name '%.140s': only letters, digits and '.-_' are allowed",
                              name);
    }
    return 0;
}

/* All versions of `name` over the layers (a version in several layers once,
 * the topmost), newest first. */
typedef struct vers {
    cairn_volume_version *v;
    size_t n, cap;
} vers;

static int cmp_newest(const void *a, const void *b)
{
    const cairn_volume_version *x = a, *y = b;
    if (x->created != y->created)
        return x->created > y->created ? -1 : 1;
    return strcmp(y->version, x->version);
}

static int load_versions(cairn_state *st, const char *name, vers *out, cairn_error *err)
{
    static const char sql[] =
        "SELECT version, created FROM volume_versions WHERE name = ? ORDER BY version";
    for (size_t li = 0; li < st->n_layers; li++) {
        sqlite3_stmt *s;
        int r = cairn__stmt(st, li, sql, &s, err);
        if (r < 0)
            return r;
        sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            const char *ver = cairn__col(s, 0);
            int64_t c = sqlite3_column_int64(s, 1);
            size_t k = 0;
            while (k < out->n && strcmp(out->v[k].version, ver) != 0)
                k++;
            if (k < out->n) {
                if (c > out->v[k].created)
                    out->v[k].created = c; /* the merge's rule: max */
                continue;
            }
            if (out->n == out->cap) {
                size_t nc = out->cap ? out->cap * 2 : 8;
                cairn_volume_version *nv = realloc(out->v, nc * sizeof(*nv));
                if (!nv) {
                    sqlite3_reset(s);
                    return cairn__err(err, -ENOMEM, "out of memory");
                }
                out->v = nv;
                out->cap = nc;
            }
            cairn_volume_version *v = &out->v[out->n++];
            memset(v, 0, sizeof(*v));
            snprintf(v->version, sizeof(v->version), "%s", ver);
            v->created = c;
            v->lower = (int)li;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return cairn__err_db(err, st->layers[li].db, rc, "volume versions");
    }
    if (out->n > 1)
        qsort(out->v, out->n, sizeof(*out->v), cmp_newest);
    if (out->n)
        out->v[0].current = 1;
    for (size_t k = 0; k < out->n; k++) {
        int p = cairn__object_present(st, "snapshot", out->v[k].version, NULL, err);
        if (p < 0)
            return p;
        out->v[k].present = p;
    }
    return 0;
}

struct size_ctx {
    uint64_t size;
};

static int add_size(void *ud, const cairn_snapshot_info *in)
{
    ((struct size_ctx *)ud)->size += in->size;
    return 0;
}

static int info_of(cairn_state *st, const char *name, const vers *vs, cairn_volume_info *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", name);
    out->versions = vs->n;
    if (!vs->n)
        return 0;
    snprintf(out->current, sizeof(out->current), "%s", vs->v[0].version);
    out->created = vs->v[0].created / 1000000000; /* ns order the versions; the API has seconds */
    out->lower = vs->v[0].lower;
    struct size_ctx c = {0};
    if (vs->v[0].present)
        cairn_snapshot_walk(st, vs->v[0].version, add_size, &c, NULL);
    out->size = c.size;
    return 0;
}

int cairn_volume_current(cairn_state *st, const char *name, cairn_volume_info *out,
                         cairn_error *err)
{
    int r = check_name(name, err);
    if (r < 0)
        return r;
    vers vs = {0};
    r = load_versions(st, name, &vs, err);
    if (r == 0 && vs.n == 0)
        r = cairn__err(err, -ENOENT, "volume %s: not found", name);
    if (r == 0)
        r = info_of(st, name, &vs, out);
    free(vs.v);
    return r;
}

int cairn_volume_open(cairn_state *st, const char *name, char *out_id, char *out_parent,
                      cairn_error *err)
{
    int r = check_name(name, err);
    if (r < 0)
        return r;
    r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    char label[sizeof(LABEL_PREFIX) + CAIRN_VOLUME_NAME_MAX];
    snprintf(label, sizeof(label), LABEL_PREFIX "%s", name);
    /* Shared lock: the current version stays while the active snapshot over
     * it is made (which then keeps it). */
    r = cairn__lock(st, false, err);
    if (r < 0)
        return r;
    vers vs = {0};
    r = load_versions(st, name, &vs, err);
    const char *parent = NULL;
    if (r == 0 && vs.n) {
        if (!vs.v[0].present)
            r = cairn__err(err, CAIRN_E_CORRUPT,
                           "volume %s: its current version %s is missing (run 'cairn fsck')",
                           name, vs.v[0].version);
        parent = vs.v[0].version;
    }
    char id[CAIRN_STATE_ID_LEN + 1];
    if (r == 0)
        r = cairn_snapshot_prepare(st, parent, label, id, err);
    if (r == 0)
        cairn__usage_mark(st, "volume", name, 1, NULL);
    cairn__unlock(st);
    if (r == 0) {
        memcpy(out_id, id, sizeof(id));
        if (out_parent)
            snprintf(out_parent, CAIRN_DIGEST_LEN + 1, "%s", parent ? parent : "");
    }
    free(vs.v);
    return r;
}

struct find_open {
    const char *label;
    char id[CAIRN_STATE_ID_LEN + 1];
    int n;
};

static int find_open_cb(void *ud, const cairn_active_info *a)
{
    struct find_open *f = ud;
    if (!a->view && !strcmp(a->label, f->label)) {
        if (!f->n)
            snprintf(f->id, sizeof(f->id), "%s", a->id);
        f->n++;
    }
    return 0;
}

/* In the commit's last transaction: the new version of the volume `ud`. */
static int version_row(cairn_state *st, void *ud, const char *chain, cairn_error *err)
{
    static const char ins[] = "INSERT INTO volume_versions(name, version, created) "
                              "VALUES (?, ?, ?) ON CONFLICT(name, version) DO UPDATE SET "
                              "created = max(created, excluded.created)";
    sqlite3_stmt *q;
    int r = cairn__stmt(st, 0, ins, &q, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(q, 1, (const char *)ud, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, chain, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, cairn__now_ns());
    return cairn__step_done(st, 0, q, err);
}

int cairn_volume_save(cairn_state *st, const char *name, const char *id, char *out_version,
                      cairn_error *err)
{
    int r = check_name(name, err);
    if (r < 0)
        return r;
    r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    char label[sizeof(LABEL_PREFIX) + CAIRN_VOLUME_NAME_MAX];
    snprintf(label, sizeof(label), LABEL_PREFIX "%s", name);
    struct find_open f = {label, "", 0};
    if (!id) {
        r = cairn_snapshot_active_list(st, find_open_cb, &f, err);
        if (r < 0)
            return r;
        if (f.n == 0)
            return cairn__err(err, -ENOENT, "volume %s: not open (open it first)", name);
        if (f.n > 1)
            return cairn__err(err, -EBUSY,
                              "volume %s: open %d times; say which active snapshot to save",
                              name, f.n);
        id = f.id;
    } else {
        cairn_active_info a;
        r = cairn_snapshot_active_stat(st, id, &a, err);
        if (r < 0)
            return r;
        if (a.view || strcmp(a.label, label) != 0)
            return cairn__err(err, -EINVAL, "active snapshot %s: not an open volume %s", id,
                              name);
    }
    char version[CAIRN_DIGEST_LEN + 1];
    r = cairn__lock(st, false, err);
    if (r < 0)
        return r;
    /* The version row goes in with the snapshot row, in one transaction. */
    r = cairn__snapshot_commit(st, id, version_row, (void *)name, version, NULL, err);
    cairn__unlock(st);
    if (r == 0 && out_version)
        memcpy(out_version, version, sizeof(version));
    return r;
}

static int names_row(void *ud, size_t layer, sqlite3_stmt *s)
{
    return cairn__strv_push(ud, cairn__col(s, 0));
}

int cairn_volume_list(cairn_state *st, cairn_volume_fn fn, void *userdata, cairn_error *err)
{
    static const char sql[] = "SELECT DISTINCT name FROM volume_versions ORDER BY name";
    cairn__strv c = {0};
    int r = cairn__union_walk(st, sql, NULL, names_row, &c, err);
    if (r == -ENOMEM)
        r = cairn__err(err, r, "out of memory");
    for (size_t i = 0; r == 0 && i < c.n; i++) {
        vers vs = {0};
        cairn_volume_info in;
        r = load_versions(st, c.v[i], &vs, err);
        if (r == 0)
            r = info_of(st, c.v[i], &vs, &in);
        if (r == 0)
            r = fn(userdata, &in);
        free(vs.v);
    }
    cairn__strv_free(&c);
    return r;
}

int cairn_volume_versions(cairn_state *st, const char *name, cairn_volume_version_fn fn,
                          void *userdata, cairn_error *err)
{
    int r = check_name(name, err);
    if (r < 0)
        return r;
    vers vs = {0};
    r = load_versions(st, name, &vs, err);
    if (r == 0 && vs.n == 0)
        r = cairn__err(err, -ENOENT, "volume %s: not found", name);
    for (size_t i = 0; r == 0 && i < vs.n; i++) {
        cairn_volume_version v = vs.v[i];
        v.created /= 1000000000;
        r = fn(userdata, &v);
    }
    free(vs.v);
    return r;
}

int cairn_volume_remove(cairn_state *st, const char *name, cairn_error *err)
{
    int r = check_name(name, err);
    if (r < 0)
        return r;
    r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    static const char del[] = "DELETE FROM volume_versions WHERE name = ?";
    int n = cairn__exec_args(st, err, del, "s", name);
    if (n < 0)
        return n;
    if (n == 0) {
        vers vs = {0};
        r = load_versions(st, name, &vs, err);
        size_t have = vs.n;
        free(vs.v);
        if (r < 0)
            return r;
        if (have)
            return cairn__err(err, -EROFS, "volume %s: held by a lower state, which is read-only",
                              name);
        return cairn__err(err, -ENOENT, "volume %s: not found", name);
    }
    return n;
}

/* ---- fsck ------------------------------------------------------------- */

/* Volumes: every version row of this state names a snapshot that is there;
 * repair drops the rows that do not (the current version is then the newest
 * of the others). */
int cairn__fsck_volumes(cairn__fsck *f, cairn_error *err)
{
    cairn_state *st = f->st;
    static const char sql[] = "SELECT name, version FROM volume_versions ORDER BY name, version";
    static const char del[] = "DELETE FROM volume_versions WHERE name = ? AND version = ?";
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    cairn__strv bad = {0};
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        f->total++;
        (void)cairn__fsck_tick(f, err); /* a stop: at the end of the checker */
        const char *nm = cairn__col(s, 0), *ver = cairn__col(s, 1);
        int p = cairn__object_present(st, "snapshot", ver, NULL, err);
        if (p < 0) {
            r = p;
            break;
        }
        if (p && check_name(nm, NULL) == 0)
            continue;
        char name[CAIRN_VOLUME_NAME_MAX + CAIRN_DIGEST_LEN + 8];
        snprintf(name, sizeof(name), "%.128s %.71s", nm, ver);
        cairn__fsck_report(f, "volume", name, p ? "corrupt" : "missing",
                           f->opts.repair ? "dropped row" : "",
                           p ? "the volume's name is not valid"
                             : "the version's snapshot is not in the state");
        if (cairn__strv_push(&bad, nm) < 0 || cairn__strv_push(&bad, ver) < 0) {
            r = cairn__err(err, -ENOMEM, "out of memory");
            break;
        }
    }
    sqlite3_reset(s);
    if (r == 0 && rc != SQLITE_DONE)
        r = cairn__err_db(err, st->layers[0].db, rc, "fsck: volumes");
    for (size_t i = 0; r == 0 && f->opts.repair && i + 1 < bad.n; i += 2) {
        r = cairn__tx_begin(st, err);
        if (r < 0)
            break;
        sqlite3_stmt *q;
        r = cairn__stmt(st, 0, del, &q, err);
        if (r < 0) {
            cairn__tx_rollback(st);
            break;
        }
        sqlite3_bind_text(q, 1, bad.v[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, bad.v[i + 1], -1, SQLITE_STATIC);
        r = cairn__step_done(st, 0, q, err);
        if (r == 0)
            r = cairn__tx_commit(st, err);
        else
            cairn__tx_rollback(st);
    }
    cairn__strv_free(&bad);
    return r;
}
