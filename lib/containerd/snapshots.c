/* snapshots.c: containerd's snapshots service over a cairn state.
 *
 * containerd's metadata layer names the backend's snapshots
 * "<namespace>/<n>/<name>" (n from its own sequence). Those keys live in
 * containerd_snapshots (local to this state, never merged): kind, the cairn
 * object behind it (an active snapshot's id, or a committed snapshot's
 * cairn ChainID), the parent's key, labels. A Commit stores the diff under
 * its cairn ChainID through cairn__snapshot_commit(), and in the same
 * transaction turns the active key into the committed name and records
 * containerd's ChainID (the name past the prefix) -> cairn's ChainID in
 * containerd_names, the table that merges.
 *
 * Adoption: a Prepare labelled containerd.io/snapshot.ref = R, where R names
 * (through containerd_names of any layer, or directly as a cairn ChainID) a
 * snapshot the stack holds whose cairn parent is the Prepare's parent's,
 * gets a committed key "<namespace>/<n>/R" over the same parent key and
 * answers AlreadyExists; containerd then walks with a filter on the ref and
 * the parent, finds that key and unpacks nothing.
 *
 * List shows only this state's keys, so containerd's gc, which removes every
 * backend snapshot its metadata does not name, removes only keys of this
 * state; a key's cairn snapshot is removed with its last key, when it is
 * this state's own (never a lower's).
 */
#include "containerd/containerd-private.h"
#include "snapshot/snapshot-private.h"

#include <fts.h>
#include <sys/stat.h>
#include <jansson.h>

#define REF_LABEL "containerd.io/snapshot.ref"

typedef Containerd__Services__Snapshots__V1__Info SInfo;
typedef Containerd__Types__Mount PMount;

enum { KIND_VIEW = 1, KIND_ACTIVE = 2, KIND_COMMITTED = 3 };

typedef struct krow {
    char *key;
    int kind;
    char *target;
    char *parent;
    char *labels; /* JSON */
    int64_t created, updated;
} krow;

static void krow_clear(krow *k)
{
    free(k->key);
    free(k->target);
    free(k->parent);
    free(k->labels);
    memset(k, 0, sizeof(*k));
}

static cairn__ctrd *ctx(cairn__grpc_call *c)
{
    return cairn__grpc_ud(c);
}

void cairn__ctrd_ts(Google__Protobuf__Timestamp *ts, int64_t ns)
{
    google__protobuf__timestamp__init(ts);
    ts->seconds = ns / 1000000000;
    ts->nanos = (int32_t)(ns % 1000000000);
}

bool cairn__ctrd_labels_ok(cairn__grpc_call *c, const char *what, size_t n, const cairn__kv *kv)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(kv[i].key) + strlen(kv[i].value);
        if (!kv[i].key[0]) {
            cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "%s: a label with an empty key", what);
            return false;
        }
        if (l > CAIRN__CTRD_LABEL_MAX) {
            cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT,
                               "%s: label %.64s...: %zu bytes, more than %d", what, kv[i].key, l,
                               CAIRN__CTRD_LABEL_MAX);
            return false;
        }
        total += l;
    }
    if (total > CAIRN__CTRD_LABELS_MAX) {
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT,
                           "%s: labels of %zu bytes, more than %u in all", what, total,
                           CAIRN__CTRD_LABELS_MAX);
        return false;
    }
    return true;
}

/* Every generated LabelsEntry is {base, key, value}. */
#define KV_OF(arr, n, out)                                                                         \
    do {                                                                                           \
        for (size_t i_ = 0; i_ < (n); i_++)                                                        \
            (out)[i_] = (cairn__kv){(arr)[i_]->key ? (arr)[i_]->key : "",                          \
                                    (arr)[i_]->value ? (arr)[i_]->value : ""};                     \
    } while (0)

static char *labels_json(size_t n, const cairn__kv *kv)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < n; i++)
        json_object_set_new(o, kv[i].key, json_string(kv[i].value));
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return s;
}

/* "<namespace>/<n>/<name>": the namespace's length, or 0 when not a key. */
static size_t key_ns(const char *key)
{
    const char *a = strchr(key, '/');
    if (!a || a == key)
        return 0;
    const char *b = strchr(a + 1, '/');
    if (!b || b == a + 1 || !b[1])
        return 0;
    for (const char *p = a + 1; p < b; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return (size_t)(a - key);
}

static const char *key_name(const char *key)
{
    return strchr(strchr(key, '/') + 1, '/') + 1;
}

/* The key is well formed and in the call's namespace (when the call names
 * one): else finish with InvalidArgument / NotFound. */
static bool key_ok(cairn__grpc_call *c, const char *what, const char *key)
{
    if (!key || !key[0]) {
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "%s: no key", what);
        return false;
    }
    if (strlen(key) > 4096) {
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "%s: a key of %zu bytes", what,
                           strlen(key));
        return false;
    }
    size_t ns = key_ns(key);
    if (!ns) {
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT,
                           "%s: key %.200s is not <namespace>/<n>/<name>", what, key);
        return false;
    }
    const char *hns = cairn__grpc_header(c, "containerd-namespace");
    if (hns && (strlen(hns) != ns || strncmp(hns, key, ns) != 0)) {
        cairn__grpc_finish(c, CAIRN__GRPC_NOT_FOUND,
                           "%s: key %.200s is not in namespace %.100s", what, key, hns);
        return false;
    }
    return true;
}

static char *dupcol(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return strdup(t ? (const char *)t : "");
}

/* 1 found, 0 not, < 0 error. */
static int krow_get(cairn_state *st, const char *key, krow *out, cairn_error *err)
{
    static const char sql[] = "SELECT key, kind, target, parent, labels, created, updated "
                              "FROM containerd_snapshots WHERE key = ?";
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->key = dupcol(s, 0);
        out->kind = sqlite3_column_int(s, 1);
        out->target = dupcol(s, 2);
        out->parent = dupcol(s, 3);
        out->labels = dupcol(s, 4);
        out->created = sqlite3_column_int64(s, 5);
        out->updated = sqlite3_column_int64(s, 6);
        sqlite3_reset(s);
        if (!out->key || !out->target || !out->parent || !out->labels) {
            krow_clear(out);
            return cairn__err(err, -ENOMEM, "out of memory");
        }
        return 1;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return cairn__err_db(err, st->layers[0].db, rc, "containerd snapshots");
    return 0;
}

static int krow_put(cairn_state *st, const krow *k, cairn_error *err)
{
    static const char sql[] =
        "INSERT INTO containerd_snapshots(key, kind, target, parent, labels, created, updated) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET kind = excluded.kind, "
        "target = excluded.target, parent = excluded.parent, labels = excluded.labels, "
        "updated = excluded.updated";
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(s, 1, k->key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 2, k->kind);
    sqlite3_bind_text(s, 3, k->target, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 4, k->parent ? k->parent : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 5, k->labels ? k->labels : "{}", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 6, k->created);
    sqlite3_bind_int64(s, 7, k->updated);
    return cairn__step_done(st, 0, s, err);
}

static int exec1(cairn_state *st, const char *sql, const char *a, const char *b, cairn_error *err)
{
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(s, 1, a, -1, SQLITE_TRANSIENT);
    if (b)
        sqlite3_bind_text(s, 2, b, -1, SQLITE_TRANSIENT);
    return cairn__step_done(st, 0, s, err);
}

/* How many keys name `col` = v (a target, a parent). */
static int count_where(cairn_state *st, const char *sql, const char *v, cairn_error *err)
{
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(s, 1, v, -1, SQLITE_TRANSIENT);
    int n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    sqlite3_reset(s);
    return n;
}

/* The cairn ChainID that containerd's name `name` stands for, through the
 * layers (lowers of an older schema have no such table): 1 found, 0 not. A
 * row whose snapshot is gone is a miss. */
static int name_lookup(cairn_state *st, const char *name, char out[CAIRN_DIGEST_LEN + 1])
{
    static const char sql[] = "SELECT chain_id FROM containerd_names WHERE name = ?";
    for (size_t i = 0; i < st->n_layers; i++) {
        if (cairn__layer_open(st, i, NULL) < 0 || cairn__db_schema(st->layers[i].db) < 2)
            continue;
        sqlite3_stmt *s;
        if (cairn__stmt(st, i, sql, &s, NULL) < 0)
            continue;
        sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(s) == SQLITE_ROW) {
            const char *c = (const char *)sqlite3_column_text(s, 0);
            cairn__snaprow row;
            if (c && strlen(c) == CAIRN_DIGEST_LEN && cairn__snapshot_find(st, c, &row, NULL) == 1) {
                memcpy(out, c, CAIRN_DIGEST_LEN + 1);
                sqlite3_reset(s);
                return 1;
            }
        }
        sqlite3_reset(s);
    }
    cairn__snaprow row;
    if (cairn_digest_check(name, NULL) == 0 && cairn__snapshot_find(st, name, &row, NULL) == 1) {
        memcpy(out, name, CAIRN_DIGEST_LEN + 1);
        return 1;
    }
    return 0;
}

/* Answer with the mounts of cairn name `name` (an active id or a chain id). */
static void reply_mounts(cairn__grpc_call *c, const char *name, int which)
{
    cairn__ctrd *x = ctx(c);
    cairn_error e = {0};
    cairn_mount *m = NULL;
    int r = cairn_snapshot_mounts(x->st, name, &m, &e);
    if (r < 0) {
        cairn__grpc_fail(c, r, &e);
        return;
    }
    PMount pm;
    containerd__types__mount__init(&pm);
    pm.type = m->type;
    pm.source = m->source;
    pm.n_options = m->n_options;
    pm.options = m->options;
    PMount *pms[] = {&pm};
    if (which == 0) {
        Containerd__Services__Snapshots__V1__PrepareSnapshotResponse o =
            CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_RESPONSE__INIT;
        o.n_mounts = 1;
        o.mounts = pms;
        cairn__grpc_send(c, &o.base);
    } else if (which == 1) {
        Containerd__Services__Snapshots__V1__ViewSnapshotResponse o =
            CONTAINERD__SERVICES__SNAPSHOTS__V1__VIEW_SNAPSHOT_RESPONSE__INIT;
        o.n_mounts = 1;
        o.mounts = pms;
        cairn__grpc_send(c, &o.base);
    } else {
        Containerd__Services__Snapshots__V1__MountsResponse o =
            CONTAINERD__SERVICES__SNAPSHOTS__V1__MOUNTS_RESPONSE__INIT;
        o.n_mounts = 1;
        o.mounts = pms;
        cairn__grpc_send(c, &o.base);
    }
    cairn_mount_free(m);
    cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
}

#define DECODE(type, lower, c, msg, len)                                                           \
    Containerd__Services__Snapshots__V1__##type *req =                                             \
        containerd__services__snapshots__v1__##lower##__unpack(NULL, len, msg);                    \
    if (!req) {                                                                                    \
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "%s: a malformed request message",     \
                           cairn__grpc_path(c));                                                   \
        return;                                                                                    \
    }

/* Prepare and View. */
static void create(cairn__grpc_call *c, bool view, const char *key, const char *parent,
                   size_t n_labels, const cairn__kv *kv)
{
    cairn__ctrd *x = ctx(c);
    cairn_state *st = x->st;
    const char *what = view ? "View" : "Prepare";
    if (!key_ok(c, what, key) || !cairn__ctrd_labels_ok(c, what, n_labels, kv))
        return;
    cairn_error e = {0};
    krow k = {0}, p = {0};
    int r = krow_get(st, key, &k, &e);
    if (r != 0) {
        if (r > 0)
            cairn__grpc_finish(c, CAIRN__GRPC_ALREADY_EXISTS, "%s: snapshot %s exists", what, key);
        else
            cairn__grpc_fail(c, r, &e);
        krow_clear(&k);
        return;
    }
    const char *pchain = NULL;
    if (parent && parent[0]) {
        if (key_ns(parent) != key_ns(key) || strncmp(parent, key, key_ns(key)) != 0) {
            cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT,
                               "%s %s: parent %.200s is in another namespace", what, key, parent);
            return;
        }
        r = krow_get(st, parent, &p, &e);
        if (r <= 0) {
            if (r == 0)
                cairn__grpc_finish(c, CAIRN__GRPC_NOT_FOUND, "%s %s: parent %s does not exist",
                                   what, key, parent);
            else
                cairn__grpc_fail(c, r, &e);
            return;
        }
        if (p.kind != KIND_COMMITTED) {
            cairn__grpc_finish(c, CAIRN__GRPC_FAILED_PRECONDITION,
                               "%s %s: parent %s is not committed", what, key, parent);
            krow_clear(&p);
            return;
        }
        pchain = p.target;
    }
    _cleanup_free_ char *labels = labels_json(n_labels, kv);
    if (!labels) {
        krow_clear(&p);
        cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    /* Adoption of what the stack holds. */
    const char *ref = NULL;
    for (size_t i = 0; i < n_labels; i++)
        if (strcmp(kv[i].key, REF_LABEL) == 0)
            ref = kv[i].value;
    char chain[CAIRN_DIGEST_LEN + 1];
    cairn__snaprow row;
    if (!view && ref && name_lookup(st, ref, chain) == 1 &&
        cairn__snapshot_find(st, chain, &row, NULL) == 1 &&
        strcmp(row.info.parent, pchain ? pchain : "") == 0) {
        size_t ns = key_ns(key);
        const char *n0 = key + ns + 1;
        size_t nn = (size_t)(strchr(n0, '/') - n0);
        _cleanup_free_ char *akey = NULL;
        if (asprintf(&akey, "%.*s/%.*s/%s", (int)ns, key, (int)nn, n0, ref) < 0)
            akey = NULL;
        int64_t now = cairn__now_ns();
        krow a = {.key = akey, .kind = KIND_COMMITTED, .target = chain,
                  .parent = (char *)(parent ? parent : ""), .labels = labels,
                  .created = now, .updated = now};
        r = akey ? krow_put(st, &a, &e) : cairn__err(&e, -ENOMEM, "out of memory");
        krow_clear(&p);
        if (r < 0) {
            cairn__grpc_fail(c, r, &e);
            return;
        }
        x->stats.adopted++;
        cairn__grpc_finish(c, CAIRN__GRPC_ALREADY_EXISTS,
                           "target snapshot %s: the state holds it as %s", ref, chain);
        return;
    }
    char id[CAIRN_STATE_ID_LEN + 1];
    /* The label marks it containerd's, for Cleanup to find if its key is lost. */
    char label[CAIRN_LABEL_MAX + 1];
    snprintf(label, sizeof(label), "containerd %s", key);
    r = view ? cairn_snapshot_view(st, pchain, label, id, &e)
             : cairn_snapshot_prepare(st, pchain, label, id, &e);
    if (r < 0) {
        krow_clear(&p);
        cairn__grpc_fail(c, r, &e);
        return;
    }
    int64_t now = cairn__now_ns();
    krow a = {.key = (char *)key, .kind = view ? KIND_VIEW : KIND_ACTIVE, .target = id,
              .parent = (char *)(parent ? parent : ""), .labels = labels,
              .created = now, .updated = now};
    r = krow_put(st, &a, &e);
    krow_clear(&p);
    if (r < 0) {
        cairn_snapshot_remove(st, id, NULL);
        cairn__grpc_fail(c, r, &e);
        return;
    }
    reply_mounts(c, id, view ? 1 : 0);
}

static void m_prepare(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(PrepareSnapshotRequest, prepare_snapshot_request, c, msg, len);
    cairn__kv *kv = calloc(req->n_labels + 1, sizeof(*kv));
    if (kv) {
        KV_OF(req->labels, req->n_labels, kv);
        create(c, false, req->key, req->parent, req->n_labels, kv);
    } else {
        cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    free(kv);
    containerd__services__snapshots__v1__prepare_snapshot_request__free_unpacked(req, NULL);
}

static void m_view(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(ViewSnapshotRequest, view_snapshot_request, c, msg, len);
    cairn__kv *kv = calloc(req->n_labels + 1, sizeof(*kv));
    if (kv) {
        KV_OF(req->labels, req->n_labels, kv);
        create(c, true, req->key, req->parent, req->n_labels, kv);
    } else {
        cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    free(kv);
    containerd__services__snapshots__v1__view_snapshot_request__free_unpacked(req, NULL);
}

/* The key's row, or finish the call with NotFound. */
static bool get_or_fail(cairn__grpc_call *c, const char *what, const char *key, krow *k)
{
    if (!key_ok(c, what, key))
        return false;
    cairn_error e = {0};
    int r = krow_get(ctx(c)->st, key, k, &e);
    if (r == 0)
        cairn__grpc_finish(c, CAIRN__GRPC_NOT_FOUND, "%s: snapshot %s does not exist", what, key);
    else if (r < 0)
        cairn__grpc_fail(c, r, &e);
    return r > 0;
}

static void m_mounts(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(MountsRequest, mounts_request, c, msg, len);
    krow k = {0};
    if (get_or_fail(c, "Mounts", req->key, &k))
        reply_mounts(c, k.target, 2);
    krow_clear(&k);
    containerd__services__snapshots__v1__mounts_request__free_unpacked(req, NULL);
}

typedef struct commit_ud {
    const krow *active;
    const char *name;
    const char *labels;
} commit_ud;

/* Inside the commit's last transaction: the key becomes the name. */
static int commit_rows(cairn_state *st, void *ud, const char *chain, cairn_error *err)
{
    commit_ud *u = ud;
    int64_t now = cairn__now_ns();
    krow k = {.key = (char *)u->name, .kind = KIND_COMMITTED, .target = (char *)chain,
              .parent = u->active->parent, .labels = (char *)u->labels,
              .created = now, .updated = now};
    int r = krow_put(st, &k, err);
    if (r == 0)
        r = exec1(st, "DELETE FROM containerd_snapshots WHERE key = ?", u->active->key, NULL, err);
    const char *n = key_name(u->name);
    if (r == 0 && cairn_digest_check(n, NULL) == 0 && strcmp(n, chain) != 0) {
        static const char sql[] = "INSERT INTO containerd_names(name, chain_id, created) "
                                  "VALUES (?, ?, ?) ON CONFLICT DO NOTHING";
        sqlite3_stmt *s;
        r = cairn__stmt(st, 0, sql, &s, err);
        if (r == 0) {
            sqlite3_bind_text(s, 1, n, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(s, 2, chain, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(s, 3, cairn__now());
            r = cairn__step_done(st, 0, s, err);
        }
    }
    return r;
}

static void m_commit(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(CommitSnapshotRequest, commit_snapshot_request, c, msg, len);
    cairn__ctrd *x = ctx(c);
    krow k = {0}, other = {0};
    char *labels = NULL;
    cairn__kv *kv = calloc(req->n_labels + 1, sizeof(*kv));
    if (!kv) {
        cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    KV_OF(req->labels, req->n_labels, kv);
    if (!key_ok(c, "Commit", req->name) || !cairn__ctrd_labels_ok(c, "Commit", req->n_labels, kv) ||
        !get_or_fail(c, "Commit", req->key, &k))
        goto out;
    if (key_ns(req->name) != key_ns(req->key) || strncmp(req->name, req->key, key_ns(req->key))) {
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT,
                           "Commit %s: name %.200s is in another namespace", req->key, req->name);
        goto out;
    }
    if (k.kind != KIND_ACTIVE) {
        cairn__grpc_finish(c, CAIRN__GRPC_FAILED_PRECONDITION,
                           "Commit: snapshot %s is not active", req->key);
        goto out;
    }
    cairn_error e = {0};
    int r = krow_get(x->st, req->name, &other, &e);
    if (r != 0) {
        if (r > 0)
            cairn__grpc_finish(c, CAIRN__GRPC_ALREADY_EXISTS, "Commit: snapshot %s exists",
                               req->name);
        else
            cairn__grpc_fail(c, r, &e);
        goto out;
    }
    /* Labels: the active's, with the commit's over them. */
    json_t *o = json_loads(k.labels, 0, NULL);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        o = json_object();
    }
    for (size_t i = 0; o && i < req->n_labels; i++)
        json_object_set_new(o, kv[i].key, json_string(kv[i].value));
    labels = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!labels) {
        cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    commit_ud u = {.active = &k, .name = req->name, .labels = labels};
    r = cairn__snapshot_commit(x->st, k.target, commit_rows, &u, NULL, NULL, &e);
    if (r < 0) {
        cairn__grpc_fail(c, r, &e);
        goto out;
    }
    x->stats.commits++;
    Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
    cairn__grpc_send(c, &empty.base);
    cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
out:
    free(labels);
    free(kv);
    krow_clear(&k);
    krow_clear(&other);
    containerd__services__snapshots__v1__commit_snapshot_request__free_unpacked(req, NULL);
}

/* The cairn snapshot `chain` lost its last key: remove it when it is this
 * state's own and nothing else builds on it. Its names go first (no row
 * names a missing object), and come back when it stays. */
static void release_chain(cairn_state *st, const char *chain)
{
    cairn_snapshot_info info;
    if (cairn_snapshot_stat(st, chain, &info, NULL) < 0 || info.lower != 0)
        return;
    if (cairn__tx_begin(st, NULL) < 0)
        return;
    /* Keep the names aside in case the snapshot stays. */
    cairn__strv names = {0};
    sqlite3_stmt *s;
    if (cairn__stmt(st, 0, "SELECT name FROM containerd_names WHERE chain_id = ?", &s, NULL) == 0) {
        sqlite3_bind_text(s, 1, chain, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(s) == SQLITE_ROW)
            cairn__strv_push(&names, (const char *)sqlite3_column_text(s, 0));
        sqlite3_reset(s);
    }
    if (exec1(st, "DELETE FROM containerd_names WHERE chain_id = ?", chain, NULL, NULL) < 0 ||
        cairn__tx_commit(st, NULL) < 0) {
        cairn__tx_rollback(st);
        cairn__strv_free(&names);
        return;
    }
    if (cairn_snapshot_remove(st, chain, NULL) < 0) {
        for (size_t i = 0; i < names.n; i++) {
            static const char sql[] = "INSERT INTO containerd_names(name, chain_id, created) "
                                      "VALUES (?, ?, ?) ON CONFLICT DO NOTHING";
            if (cairn__stmt(st, 0, sql, &s, NULL) == 0) {
                sqlite3_bind_text(s, 1, names.v[i], -1, SQLITE_TRANSIENT);
                sqlite3_bind_text(s, 2, chain, -1, SQLITE_TRANSIENT);
                sqlite3_bind_int64(s, 3, cairn__now());
                cairn__step_done(st, 0, s, NULL);
            }
        }
    }
    cairn__strv_free(&names);
}

static void m_remove(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(RemoveSnapshotRequest, remove_snapshot_request, c, msg, len);
    cairn__ctrd *x = ctx(c);
    krow k = {0};
    cairn_error e = {0};
    if (!get_or_fail(c, "Remove", req->key, &k))
        goto out;
    int n = count_where(x->st, "SELECT count(*) FROM containerd_snapshots WHERE parent = ?",
                        req->key, &e);
    if (n != 0) {
        if (n > 0)
            cairn__grpc_finish(c, CAIRN__GRPC_FAILED_PRECONDITION,
                               "Remove: snapshot %s has %d children", req->key, n);
        else
            cairn__grpc_fail(c, n, &e);
        goto out;
    }
    /* Row first, then the object. */
    int r = exec1(x->st, "DELETE FROM containerd_snapshots WHERE key = ?", req->key, NULL, &e);
    if (r < 0) {
        cairn__grpc_fail(c, r, &e);
        goto out;
    }
    if (k.kind == KIND_COMMITTED) {
        if (count_where(x->st, "SELECT count(*) FROM containerd_snapshots WHERE target = ?",
                        k.target, NULL) == 0)
            release_chain(x->st, k.target);
    } else {
        r = cairn_snapshot_remove(x->st, k.target, &e);
        if (r < 0 && r != -ENOENT) {
            /* The key is gone; what is left is Cleanup's. */
            cairn__grpc_fail(c, r, &e);
            goto out;
        }
    }
    Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
    cairn__grpc_send(c, &empty.base);
    cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
out:
    krow_clear(&k);
    containerd__services__snapshots__v1__remove_snapshot_request__free_unpacked(req, NULL);
}

/* An Info of a row; free with info_clear. */
static int info_of(const krow *k, SInfo *i, Google__Protobuf__Timestamp *ts)
{
    containerd__services__snapshots__v1__info__init(i);
    i->name = k->key;
    i->parent = k->parent;
    i->kind = (Containerd__Services__Snapshots__V1__Kind)k->kind;
    cairn__ctrd_ts(&ts[0], k->created);
    cairn__ctrd_ts(&ts[1], k->updated);
    i->created_at = &ts[0];
    i->updated_at = &ts[1];
    json_t *o = json_loads(k->labels, 0, NULL);
    size_t n = o && json_is_object(o) ? json_object_size(o) : 0;
    if (n) {
        i->labels = calloc(n, sizeof(*i->labels));
        if (!i->labels) {
            json_decref(o);
            return -ENOMEM;
        }
        const char *key;
        json_t *v;
        json_object_foreach(o, key, v)
        {
            Containerd__Services__Snapshots__V1__Info__LabelsEntry *le = malloc(sizeof(*le));
            if (!le)
                break;
            containerd__services__snapshots__v1__info__labels_entry__init(le);
            le->key = strdup(key);
            le->value = strdup(json_is_string(v) ? json_string_value(v) : "");
            i->labels[i->n_labels++] = le;
        }
    }
    json_decref(o);
    return 0;
}

static void info_clear(SInfo *i)
{
    for (size_t j = 0; j < i->n_labels; j++) {
        free(i->labels[j]->key);
        free(i->labels[j]->value);
        free(i->labels[j]);
    }
    free(i->labels);
    i->labels = NULL;
    i->n_labels = 0;
}

static void m_stat(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(StatSnapshotRequest, stat_snapshot_request, c, msg, len);
    krow k = {0};
    if (get_or_fail(c, "Stat", req->key, &k)) {
        SInfo i;
        Google__Protobuf__Timestamp ts[2];
        Containerd__Services__Snapshots__V1__StatSnapshotResponse o =
            CONTAINERD__SERVICES__SNAPSHOTS__V1__STAT_SNAPSHOT_RESPONSE__INIT;
        if (info_of(&k, &i, ts) == 0) {
            o.info = &i;
            cairn__grpc_send(c, &o.base);
            cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
        } else {
            cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
        }
        info_clear(&i);
    }
    krow_clear(&k);
    containerd__services__snapshots__v1__stat_snapshot_request__free_unpacked(req, NULL);
}

static void m_update(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(UpdateSnapshotRequest, update_snapshot_request, c, msg, len);
    krow k = {0};
    json_t *o = NULL;
    if (!req->info) {
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "Update: no info");
        goto out;
    }
    cairn__kv *kv = calloc(req->info->n_labels + 1, sizeof(*kv));
    if (!kv) {
        cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    KV_OF(req->info->labels, req->info->n_labels, kv);
    bool ok = cairn__ctrd_labels_ok(c, "Update", req->info->n_labels, kv);
    free(kv);
    if (!ok || !get_or_fail(c, "Update", req->info->name, &k))
        goto out;
    o = json_loads(k.labels, 0, NULL);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        o = json_object();
    }
    size_t np = req->update_mask ? req->update_mask->n_paths : 0;
    bool all = np == 0;
    for (size_t j = 0; j < np; j++) {
        const char *p = req->update_mask->paths[j];
        if (strcmp(p, "labels") == 0) {
            all = true;
        } else if (strncmp(p, "labels.", 7) == 0) {
            const char *lk = p + 7, *v = NULL;
            for (size_t i = 0; i < req->info->n_labels; i++)
                if (strcmp(req->info->labels[i]->key, lk) == 0)
                    v = req->info->labels[i]->value;
            if (v)
                json_object_set_new(o, lk, json_string(v));
            else
                json_object_del(o, lk);
        } else {
            cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT,
                               "Update %s: cannot update field %.100s", k.key, p);
            goto out;
        }
    }
    if (all) {
        json_object_clear(o);
        for (size_t i = 0; i < req->info->n_labels; i++)
            json_object_set_new(o, req->info->labels[i]->key,
                                json_string(req->info->labels[i]->value));
    }
    char *labels = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    if (!labels) {
        cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    if (strlen(labels) > CAIRN__CTRD_LABELS_MAX * 2) {
        free(labels);
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "Update %s: labels too large", k.key);
        goto out;
    }
    free(k.labels);
    k.labels = labels;
    k.updated = cairn__now_ns();
    cairn_error e = {0};
    int r = krow_put(ctx(c)->st, &k, &e);
    if (r < 0) {
        cairn__grpc_fail(c, r, &e);
        goto out;
    }
    SInfo i;
    Google__Protobuf__Timestamp ts[2];
    Containerd__Services__Snapshots__V1__UpdateSnapshotResponse resp =
        CONTAINERD__SERVICES__SNAPSHOTS__V1__UPDATE_SNAPSHOT_RESPONSE__INIT;
    if (info_of(&k, &i, ts) == 0) {
        resp.info = &i;
        cairn__grpc_send(c, &resp.base);
        cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
    } else {
        cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    info_clear(&i);
out:
    json_decref(o);
    krow_clear(&k);
    containerd__services__snapshots__v1__update_snapshot_request__free_unpacked(req, NULL);
}

/* ---- List: filters -------------------------------------------------------- */

/* containerd's filter syntax, the part its clients send to a snapshotter:
 * terms joined by ',' (and), each `field==value`, `field!=value` or
 * `field`; a field is name, parent, kind or labels.<key>; keys and values
 * may be "quoted". Returns the terms parsed, -1 when malformed. */
typedef struct term {
    char field[512];
    char value[4200];
    int op; /* 0 present, 1 ==, 2 != */
} term;

static const char *unquote(const char *p, char *out, size_t size, const char *stop)
{
    size_t n = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1])
                p++;
            if (n + 1 >= size)
                return NULL;
            out[n++] = *p;
        }
        if (*p != '"')
            return NULL;
        p++;
    } else {
        while (*p && !strchr(stop, *p)) {
            if (n + 1 >= size)
                return NULL;
            out[n++] = *p++;
        }
    }
    out[n] = 0;
    return p;
}

static int parse_filter(const char *f, term *t, int max)
{
    int n = 0;
    const char *p = f;
    while (*p) {
        if (n == max)
            return -1;
        term *x = &t[n++];
        memset(x, 0, sizeof(*x));
        size_t fl = 0;
        /* field: segments separated by '.', each maybe quoted */
        for (;;) {
            char seg[512];
            p = unquote(p, seg, sizeof(seg), ".=!,");
            if (!p || fl + strlen(seg) + 2 > sizeof(x->field))
                return -1;
            fl += (size_t)sprintf(x->field + fl, "%s%s", fl ? "." : "", seg);
            if (*p != '.')
                break;
            p++;
        }
        if (p[0] == '=' && p[1] == '=') {
            x->op = 1;
            p += 2;
        } else if (p[0] == '!' && p[1] == '=') {
            x->op = 2;
            p += 2;
        }
        if (x->op) {
            p = unquote(p, x->value, sizeof(x->value), ",");
            if (!p)
                return -1;
        }
        if (*p == ',')
            p++;
        else if (*p)
            return -1;
    }
    return n;
}

static bool term_match(const term *t, const krow *k, json_t *labels)
{
    const char *v = NULL;
    char kind[4];
    if (strcmp(t->field, "name") == 0) {
        v = k->key;
    } else if (strcmp(t->field, "parent") == 0) {
        v = k->parent;
    } else if (strcmp(t->field, "kind") == 0) {
        static const char *const names[] = {"unknown", "view", "active", "committed"};
        v = k->kind >= 0 && k->kind < 4 ? names[k->kind] : kind;
    } else if (strncmp(t->field, "labels.", 7) == 0) {
        json_t *j = json_object_get(labels, t->field + 7);
        v = j && json_is_string(j) ? json_string_value(j) : NULL;
    }
    if (t->op == 0)
        return v != NULL;
    if (t->op == 1)
        return v && strcmp(v, t->value) == 0;
    return !v || strcmp(v, t->value) != 0;
}

/* The rows that match, read at once (a statement kept across rounds of the
 * loop would hold a read transaction under the writes of other calls). */
typedef struct list_state {
    krow *rows;
    size_t n, sent;
} list_state;

static void list_close(void *p)
{
    list_state *l = p;
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        krow_clear(&l->rows[i]);
    free(l->rows);
    free(l);
}

static void list_produce(cairn__grpc_call *c)
{
    list_state *l = cairn__grpc_data(c);
    SInfo infos[64];
    SInfo *ptrs[64];
    Google__Protobuf__Timestamp ts[64][2];
    size_t n = 0;
    while (n < 64 && l->sent < l->n) {
        info_of(&l->rows[l->sent++], &infos[n], ts[n]);
        ptrs[n] = &infos[n];
        n++;
    }
    if (n) {
        Containerd__Services__Snapshots__V1__ListSnapshotsResponse o =
            CONTAINERD__SERVICES__SNAPSHOTS__V1__LIST_SNAPSHOTS_RESPONSE__INIT;
        o.n_info = n;
        o.info = ptrs;
        cairn__grpc_send(c, &o.base);
        for (size_t i = 0; i < n; i++)
            info_clear(&infos[i]);
    }
    if (l->sent == l->n)
        cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
}

static void m_list(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(ListSnapshotsRequest, list_snapshots_request, c, msg, len);
    cairn_state *st = ctx(c)->st;
    term(*terms)[8] = req->n_filters ? calloc(req->n_filters, sizeof(*terms)) : NULL;
    int *n_terms = req->n_filters ? calloc(req->n_filters, sizeof(int)) : NULL;
    list_state *l = calloc(1, sizeof(*l));
    sqlite3_stmt *s = NULL;
    if (!l || (req->n_filters && (!terms || !n_terms))) {
        cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t f = 0; f < req->n_filters; f++) {
        n_terms[f] = parse_filter(req->filters[f], terms[f], 8);
        if (n_terms[f] < 0) {
            cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "List: bad filter %.200s",
                               req->filters[f]);
            goto out;
        }
    }
    static const char sql[] = "SELECT key, kind, target, parent, labels, created, updated "
                              "FROM containerd_snapshots ORDER BY key";
    cairn_error e = {0};
    int r = cairn__stmt(st, 0, sql, &s, &e);
    if (r < 0) {
        cairn__grpc_fail(c, r, &e);
        s = NULL;
        goto out;
    }
    int rc;
    size_t cap = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        krow k = {.key = dupcol(s, 0), .kind = sqlite3_column_int(s, 1), .target = dupcol(s, 2),
                  .parent = dupcol(s, 3), .labels = dupcol(s, 4),
                  .created = sqlite3_column_int64(s, 5), .updated = sqlite3_column_int64(s, 6)};
        bool match = req->n_filters == 0;
        if (!match && k.labels) {
            json_t *o = json_loads(k.labels, 0, NULL);
            for (size_t f = 0; !match && f < req->n_filters; f++) {
                bool all = true;
                for (int t = 0; all && t < n_terms[f]; t++)
                    all = term_match(&terms[f][t], &k, o);
                match = all;
            }
            json_decref(o);
        }
        if (!match || !k.key || !k.target || !k.parent || !k.labels) {
            krow_clear(&k);
            continue;
        }
        if (l->n == cap) {
            cap = cap ? 2 * cap : 64;
            krow *q = realloc(l->rows, cap * sizeof(*q));
            if (!q) {
                krow_clear(&k);
                cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
            }
            l->rows = q;
        }
        l->rows[l->n++] = k;
    }
    if (rc != SQLITE_DONE) {
        cairn__grpc_finish(c, CAIRN__GRPC_INTERNAL, "List: %s", sqlite3_errmsg(st->layers[0].db));
        goto out;
    }
    cairn__grpc_set_data(c, steal_pointer(&l), list_close);
    cairn__grpc_set_producer(c, list_produce);
    list_produce(c);
out:
    if (s)
        sqlite3_reset(s);
    list_close(l);
    free(terms);
    free(n_terms);
    containerd__services__snapshots__v1__list_snapshots_request__free_unpacked(req, NULL);
}

/* Disk usage of a directory tree: bytes of blocks and inodes, hardlinks once. */
static int du(const char *path, int64_t *size, int64_t *inodes)
{
    char *const paths[] = {(char *)path, NULL};
    FTS *f = fts_open(paths, FTS_PHYSICAL | FTS_NOCHDIR | FTS_XDEV, NULL);
    if (!f)
        return -errno;
    cairn__strset *seen = cairn__strset_new();
    FTSENT *e;
    while ((e = fts_read(f))) {
        if (e->fts_info == FTS_DP || e->fts_info == FTS_DNR || e->fts_info == FTS_ERR ||
            e->fts_info == FTS_NS)
            continue;
        if (e->fts_statp->st_nlink > 1 && !S_ISDIR(e->fts_statp->st_mode) && seen) {
            char id[64];
            snprintf(id, sizeof(id), "%llu:%llu", (unsigned long long)e->fts_statp->st_dev,
                     (unsigned long long)e->fts_statp->st_ino);
            if (cairn__strset_add(seen, id) == 0)
                continue;
        }
        (*inodes)++;
        *size += (int64_t)e->fts_statp->st_blocks * 512;
    }
    cairn__strset_free(seen);
    fts_close(f);
    return 0;
}

static void m_usage(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(UsageRequest, usage_request, c, msg, len);
    cairn__ctrd *x = ctx(c);
    krow k = {0};
    char *path = NULL;
    if (!get_or_fail(c, "Usage", req->key, &k))
        goto out;
    if (k.kind == KIND_COMMITTED) {
        cairn__snaprow row;
        if (cairn__snapshot_find(x->st, k.target, &row, NULL) == 1)
            path = cairn__snapshot_path(x->st, row.layer, k.target);
    } else if (asprintf(&path, "%s/active/%s/fs", x->st->path, k.target) < 0) {
        path = NULL;
    }
    int64_t size = 0, inodes = 0;
    int r = path ? du(path, &size, &inodes) : -ENOENT;
    if (r < 0) {
        cairn__grpc_finish(c, CAIRN__GRPC_NOT_FOUND, "Usage %s: its files are missing", k.key);
        goto out;
    }
    Containerd__Services__Snapshots__V1__UsageResponse o =
        CONTAINERD__SERVICES__SNAPSHOTS__V1__USAGE_RESPONSE__INIT;
    o.size = size;
    o.inodes = inodes;
    cairn__grpc_send(c, &o.base);
    cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
out:
    free(path);
    krow_clear(&k);
    containerd__services__snapshots__v1__usage_request__free_unpacked(req, NULL);
}

/* containerd's active snapshots whose key is gone (a crash between the two
 * writes of a Prepare or a Remove) are removed. */
typedef struct orphans {
    cairn_state *st;
    cairn__strv ids;
} orphans;

static int orphan_fn(void *ud, const cairn_active_info *a)
{
    orphans *o = ud;
    if (strncmp(a->label, "containerd ", 11) != 0)
        return 0;
    if (count_where(o->st, "SELECT count(*) FROM containerd_snapshots WHERE target = ?", a->id,
                    NULL) == 0)
        cairn__strv_push(&o->ids, a->id);
    return 0;
}

static void m_cleanup(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(CleanupRequest, cleanup_request, c, msg, len);
    cairn__ctrd *x = ctx(c);
    orphans o = {.st = x->st};
    cairn_error e = {0};
    int r = cairn_snapshot_active_list(x->st, orphan_fn, &o, &e);
    for (size_t i = 0; r >= 0 && i < o.ids.n; i++)
        cairn_snapshot_remove(x->st, o.ids.v[i], NULL);
    cairn__strv_free(&o.ids);
    if (r < 0) {
        cairn__grpc_fail(c, r, &e);
    } else {
        Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
        cairn__grpc_send(c, &empty.base);
        cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
    }
    containerd__services__snapshots__v1__cleanup_request__free_unpacked(req, NULL);
}

#define SNAP "/containerd.services.snapshots.v1.Snapshots/"
const cairn__grpc_method cairn__ctrd_snapshot_methods[] = {
    {SNAP "Prepare", m_prepare, NULL}, {SNAP "View", m_view, NULL},
    {SNAP "Mounts", m_mounts, NULL},   {SNAP "Commit", m_commit, NULL},
    {SNAP "Remove", m_remove, NULL},   {SNAP "Stat", m_stat, NULL},
    {SNAP "Update", m_update, NULL},   {SNAP "List", m_list, NULL},
    {SNAP "Usage", m_usage, NULL},     {SNAP "Cleanup", m_cleanup, NULL},
    {NULL, NULL, NULL},
};
