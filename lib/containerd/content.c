/* content.c: containerd's content service over a cairn state's blobs.
 *
 * Reads (Info, Read) fall through the lowers, so containerd's metadata
 * layer, which asks Info before it writes, takes a blob the stack holds as
 * written: a pull moves only what is missing. List shows only this state's
 * own blobs, and Delete removes only those: containerd's gc removes every
 * backend blob its metadata does not name, and a lower is never touched.
 *
 * Writes: an ingest is a cairn_blob_writer kept by its ref across Write
 * calls (containerd resumes an ingest by ref: Status gives the offset), so a
 * stream cut mid-Write leaves the ingest for a later call to go on with or
 * for Abort. Data goes only to the writer's staging file; a row names the
 * blob only once the commit has checked its size and digest.
 */
#include "containerd/containerd-private.h"

#include <jansson.h>

/* Bound on the ingests kept at once, so that clients that vanish cannot
 * make the server hold staging files without end. */
#define MAX_INGESTS 1024
#define READ_CHUNK  (1u << 20)

typedef Containerd__Services__Content__V1__Info CInfo;
typedef Containerd__Services__Content__V1__Status CStatus;

struct cairn__ingest {
    char *ref;
    cairn_blob_writer *w;
    int64_t offset, total;
    char expected[CAIRN_DIGEST_LEN + 1];
    int64_t started, updated;
    bool busy; /* a Write call has it */
    cairn__ingest *next;
};

static cairn__ctrd *ctx(cairn__grpc_call *c)
{
    return cairn__grpc_ud(c);
}

static void ingest_free(cairn__ingest *g)
{
    if (!g)
        return;
    cairn_blob_writer_free(g->w);
    free(g->ref);
    free(g);
}

static cairn__ingest *ingest_find(cairn__ctrd *x, const char *ref)
{
    for (cairn__ingest *g = x->ingests; g; g = g->next)
        if (strcmp(g->ref, ref) == 0)
            return g;
    return NULL;
}

static void ingest_drop(cairn__ctrd *x, cairn__ingest *g)
{
    for (cairn__ingest **p = &x->ingests; *p; p = &(*p)->next)
        if (*p == g) {
            *p = g->next;
            x->n_ingests--;
            ingest_free(g);
            return;
        }
}

void cairn__ctrd_content_free(cairn__ctrd *x)
{
    while (x->ingests) {
        cairn__ingest *g = x->ingests;
        x->ingests = g->next;
        ingest_free(g);
    }
    x->n_ingests = 0;
}

#define DECODE(type, lower, c, msg, len)                                                           \
    Containerd__Services__Content__V1__##type *req =                                               \
        containerd__services__content__v1__##lower##__unpack(NULL, len, msg);                      \
    if (!req) {                                                                                    \
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "%s: a malformed request message",     \
                           cairn__grpc_path(c));                                                   \
        return;                                                                                    \
    }

static bool digest_ok(cairn__grpc_call *c, const char *what, const char *d)
{
    cairn_error e = {0};
    if (!d || !d[0]) {
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "%s: no digest", what);
        return false;
    }
    if (cairn_digest_check(d, &e) < 0) {
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "%s: %s", what, e.message);
        return false;
    }
    return true;
}

/* ---- Info, Update, List, Delete ------------------------------------------ */

typedef struct labels_acc {
    Containerd__Services__Content__V1__Info__LabelsEntry **v;
    size_t n, cap;
} labels_acc;

static int label_fn(void *ud, const char *key, const char *value)
{
    labels_acc *a = ud;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 8;
        void *q = realloc(a->v, cap * sizeof(*a->v));
        if (!q)
            return -ENOMEM;
        a->v = q;
        a->cap = cap;
    }
    Containerd__Services__Content__V1__Info__LabelsEntry *e = malloc(sizeof(*e));
    if (!e)
        return -ENOMEM;
    containerd__services__content__v1__info__labels_entry__init(e);
    e->key = strdup(key);
    e->value = strdup(value);
    if (!e->key || !e->value) {
        free(e->key);
        free(e->value);
        free(e);
        return -ENOMEM;
    }
    a->v[a->n++] = e;
    return 0;
}

typedef struct cinfo {
    CInfo info;
    Google__Protobuf__Timestamp ts[2];
    char digest[CAIRN_DIGEST_LEN + 1];
    labels_acc labels;
} cinfo;

static void cinfo_clear(cinfo *i)
{
    for (size_t j = 0; j < i->labels.n; j++) {
        free(i->labels.v[j]->key);
        free(i->labels.v[j]->value);
        free(i->labels.v[j]);
    }
    free(i->labels.v);
    memset(&i->labels, 0, sizeof(i->labels));
}

static int cinfo_fill(cairn_state *st, const cairn_blob_info *b, cinfo *i, cairn_error *err)
{
    containerd__services__content__v1__info__init(&i->info);
    memcpy(i->digest, b->digest, sizeof(i->digest));
    i->info.digest = i->digest;
    i->info.size = (int64_t)b->size;
    cairn__ctrd_ts(&i->ts[0], b->created * 1000000000);
    cairn__ctrd_ts(&i->ts[1], b->created * 1000000000);
    i->info.created_at = &i->ts[0];
    i->info.updated_at = &i->ts[1];
    int r = cairn_blob_label_list(st, b->digest, label_fn, &i->labels, err);
    if (r < 0)
        return r;
    i->info.n_labels = i->labels.n;
    i->info.labels = i->labels.v;
    return 0;
}

static void reply_info(cairn__grpc_call *c, const char *digest, bool update)
{
    cairn_state *st = ctx(c)->st;
    cairn_error e = {0};
    cairn_blob_info b;
    int r = cairn_blob_stat(st, digest, &b, &e);
    if (r == -ENOENT) {
        cairn__grpc_finish(c, CAIRN__GRPC_NOT_FOUND, "content %s: not found", digest);
        return;
    }
    cinfo i = {0};
    if (r == 0)
        r = cinfo_fill(st, &b, &i, &e);
    if (r < 0) {
        cinfo_clear(&i);
        cairn__grpc_fail(c, r, &e);
        return;
    }
    if (update) {
        Containerd__Services__Content__V1__UpdateResponse o =
            CONTAINERD__SERVICES__CONTENT__V1__UPDATE_RESPONSE__INIT;
        o.info = &i.info;
        cairn__grpc_send(c, &o.base);
    } else {
        Containerd__Services__Content__V1__InfoResponse o =
            CONTAINERD__SERVICES__CONTENT__V1__INFO_RESPONSE__INIT;
        o.info = &i.info;
        cairn__grpc_send(c, &o.base);
    }
    cinfo_clear(&i);
    cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
}

static void m_info(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(InfoRequest, info_request, c, msg, len);
    if (digest_ok(c, "Info", req->digest))
        reply_info(c, req->digest, false);
    containerd__services__content__v1__info_request__free_unpacked(req, NULL);
}

typedef struct label_names {
    cairn__strv keys;
} label_names;

static int label_name_fn(void *ud, const char *key, const char *value)
{
    (void)value;
    return cairn__strv_push(&((label_names *)ud)->keys, key);
}

static void m_update(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(UpdateRequest, update_request, c, msg, len);
    cairn_state *st = ctx(c)->st;
    cairn__kv *kv = NULL;
    label_names old = {0};
    if (!req->info) {
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "Update: no info");
        goto out;
    }
    if (!digest_ok(c, "Update", req->info->digest))
        goto out;
    kv = calloc(req->info->n_labels + 1, sizeof(*kv));
    if (!kv) {
        cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < req->info->n_labels; i++)
        kv[i] = (cairn__kv){req->info->labels[i]->key ? req->info->labels[i]->key : "",
                            req->info->labels[i]->value ? req->info->labels[i]->value : ""};
    if (!cairn__ctrd_labels_ok(c, "Update", req->info->n_labels, kv))
        goto out;
    cairn_error e = {0};
    const char *d = req->info->digest;
    int r = cairn_blob_exists(st, d, &e);
    if (r <= 0) {
        if (r == 0)
            cairn__grpc_finish(c, CAIRN__GRPC_NOT_FOUND, "content %s: not found", d);
        else
            cairn__grpc_fail(c, r, &e);
        goto out;
    }
    size_t np = req->update_mask ? req->update_mask->n_paths : 0;
    bool all = np == 0;
    for (size_t j = 0; r >= 0 && j < np; j++) {
        const char *p = req->update_mask->paths[j];
        if (strcmp(p, "labels") == 0) {
            all = true;
        } else if (strncmp(p, "labels.", 7) == 0) {
            const char *v = NULL;
            for (size_t i = 0; i < req->info->n_labels; i++)
                if (strcmp(kv[i].key, p + 7) == 0)
                    v = kv[i].value;
            r = cairn_blob_label_set(st, d, p + 7, v, &e);
        } else {
            cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT,
                               "Update %s: cannot update field %.100s", d, p);
            goto out;
        }
    }
    if (r >= 0 && all) {
        r = cairn_blob_label_list(st, d, label_name_fn, &old, &e);
        for (size_t i = 0; r >= 0 && i < old.keys.n; i++)
            r = cairn_blob_label_set(st, d, old.keys.v[i], NULL, &e);
        for (size_t i = 0; r >= 0 && i < req->info->n_labels; i++)
            r = cairn_blob_label_set(st, d, kv[i].key, kv[i].value, &e);
    }
    if (r < 0) {
        cairn__grpc_fail(c, r, &e);
        goto out;
    }
    reply_info(c, d, true);
out:
    cairn__strv_free(&old.keys);
    free(kv);
    containerd__services__content__v1__update_request__free_unpacked(req, NULL);
}

typedef struct list_acc {
    cairn_blob_info *v;
    size_t n, cap, sent;
} list_acc;

static int list_fn(void *ud, const cairn_blob_info *b)
{
    list_acc *a = ud;
    if (b->lower != 0)
        return 0; /* a lower's blob is not containerd's to see listed, nor to collect */
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        void *q = realloc(a->v, cap * sizeof(*a->v));
        if (!q)
            return -ENOMEM;
        a->v = q;
        a->cap = cap;
    }
    a->v[a->n++] = *b;
    return 0;
}

static void list_close(void *p)
{
    list_acc *a = p;
    if (a)
        free(a->v);
    free(a);
}

static void list_produce(cairn__grpc_call *c)
{
    list_acc *a = cairn__grpc_data(c);
    cairn_state *st = ctx(c)->st;
    cinfo infos[64];
    CInfo *ptrs[64];
    size_t n = 0;
    while (n < 64 && a->sent < a->n) {
        memset(&infos[n], 0, sizeof(infos[n]));
        if (cinfo_fill(st, &a->v[a->sent++], &infos[n], NULL) < 0) {
            cinfo_clear(&infos[n]);
            continue;
        }
        ptrs[n] = &infos[n].info;
        n++;
    }
    if (n) {
        Containerd__Services__Content__V1__ListContentResponse o =
            CONTAINERD__SERVICES__CONTENT__V1__LIST_CONTENT_RESPONSE__INIT;
        o.n_info = n;
        o.info = ptrs;
        cairn__grpc_send(c, &o.base);
        for (size_t i = 0; i < n; i++)
            cinfo_clear(&infos[i]);
    }
    if (a->sent == a->n)
        cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
}

static void m_list(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(ListContentRequest, list_content_request, c, msg, len);
    list_acc *a = calloc(1, sizeof(*a));
    cairn_error e = {0};
    int r = a ? cairn_blob_list(ctx(c)->st, NULL, list_fn, a, &e) : -ENOMEM;
    if (r < 0) {
        list_close(a);
        cairn__grpc_fail(c, r, &e);
    } else {
        cairn__grpc_set_data(c, a, list_close);
        cairn__grpc_set_producer(c, list_produce);
        list_produce(c);
    }
    containerd__services__content__v1__list_content_request__free_unpacked(req, NULL);
}

static int hold(cairn_state *st, const char *digest, cairn_error *err)
{
    static const char sql[] = "INSERT INTO containerd_content(digest, created) VALUES (?, ?) "
                              "ON CONFLICT DO NOTHING";
    sqlite3_stmt *s;
    int r = cairn__stmt(st, 0, sql, &s, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(s, 1, digest, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, cairn__now());
    return cairn__step_done(st, 0, s, err);
}

static void m_delete(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(DeleteContentRequest, delete_content_request, c, msg, len);
    cairn_error e = {0};
    if (digest_ok(c, "Delete", req->digest)) {
        /* containerd's hold first, then the blob. */
        int r = cairn__exec_key(ctx(c)->st, "DELETE FROM containerd_content WHERE digest = ?1",
                                req->digest, &e);
        if (r == 0)
            r = cairn_blob_remove(ctx(c)->st, req->digest, &e);
        if (r == -EROFS) {
            /* Only a lower holds it: not this state's to delete. */
            cairn__grpc_finish(c, CAIRN__GRPC_NOT_FOUND, "content %s: not in this state (a lower's)",
                               req->digest);
        } else if (r < 0) {
            cairn__grpc_fail(c, r, &e);
        } else {
            Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
            cairn__grpc_send(c, &empty.base);
            cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
        }
    }
    containerd__services__content__v1__delete_content_request__free_unpacked(req, NULL);
}

/* ---- Read ------------------------------------------------------------------ */

typedef struct reader {
    int fd;
    int64_t off, end;
    uint8_t *buf;
} reader;

static void reader_close(void *p)
{
    reader *rd = p;
    if (!rd)
        return;
    if (rd->fd >= 0)
        close(rd->fd);
    free(rd->buf);
    free(rd);
}

static void read_produce(cairn__grpc_call *c)
{
    reader *rd = cairn__grpc_data(c);
    if (rd->off >= rd->end) {
        cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
        return;
    }
    size_t want = (size_t)(rd->end - rd->off < READ_CHUNK ? rd->end - rd->off : READ_CHUNK);
    ssize_t n = pread(rd->fd, rd->buf, want, rd->off);
    if (n <= 0) {
        cairn__grpc_finish(c, CAIRN__GRPC_INTERNAL, "Read: %s",
                           n < 0 ? strerror(errno) : "the blob is shorter than its size");
        return;
    }
    Containerd__Services__Content__V1__ReadContentResponse o =
        CONTAINERD__SERVICES__CONTENT__V1__READ_CONTENT_RESPONSE__INIT;
    o.offset = rd->off;
    o.data.data = rd->buf;
    o.data.len = (size_t)n;
    rd->off += n;
    cairn__grpc_send(c, &o.base);
}

static void m_read(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(ReadContentRequest, read_content_request, c, msg, len);
    cairn_state *st = ctx(c)->st;
    cairn_error e = {0};
    cairn_blob_info b;
    if (!digest_ok(c, "Read", req->digest))
        goto out;
    int r = cairn_blob_stat(st, req->digest, &b, &e);
    if (r < 0) {
        if (r == -ENOENT)
            cairn__grpc_finish(c, CAIRN__GRPC_NOT_FOUND, "content %s: not found", req->digest);
        else
            cairn__grpc_fail(c, r, &e);
        goto out;
    }
    if (req->offset < 0 || req->size < 0 || (uint64_t)req->offset > b.size) {
        cairn__grpc_finish(c, CAIRN__GRPC_OUT_OF_RANGE,
                           "Read %s: offset %lld, size %lld of a blob of %llu bytes", req->digest,
                           (long long)req->offset, (long long)req->size,
                           (unsigned long long)b.size);
        goto out;
    }
    reader *rd = calloc(1, sizeof(*rd));
    if (!rd || !(rd->buf = malloc(READ_CHUNK))) {
        if (rd)
            free(rd);
        cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    rd->fd = -1;
    r = cairn_blob_open(st, req->digest, 0, &rd->fd, &e);
    if (r < 0) {
        reader_close(rd);
        cairn__grpc_fail(c, r, &e);
        goto out;
    }
    rd->off = req->offset;
    rd->end = (int64_t)b.size;
    if (req->size > 0 && req->offset + req->size < rd->end)
        rd->end = req->offset + req->size;
    cairn__grpc_set_data(c, rd, reader_close);
    cairn__grpc_set_producer(c, read_produce);
    read_produce(c);
out:
    containerd__services__content__v1__read_content_request__free_unpacked(req, NULL);
}

/* ---- Status, ListStatuses, Abort -------------------------------------------- */

static void status_of(const cairn__ingest *g, CStatus *s, Google__Protobuf__Timestamp *ts)
{
    containerd__services__content__v1__status__init(s);
    cairn__ctrd_ts(&ts[0], g->started);
    cairn__ctrd_ts(&ts[1], g->updated);
    s->started_at = &ts[0];
    s->updated_at = &ts[1];
    s->ref = g->ref;
    s->offset = g->offset;
    s->total = g->total;
    s->expected = (char *)g->expected;
}

static void m_status(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(StatusRequest, status_request, c, msg, len);
    cairn__ingest *g = ingest_find(ctx(c), req->ref);
    if (!g) {
        cairn__grpc_finish(c, CAIRN__GRPC_NOT_FOUND, "ingest %.200s: not found", req->ref);
    } else {
        CStatus s;
        Google__Protobuf__Timestamp ts[2];
        status_of(g, &s, ts);
        Containerd__Services__Content__V1__StatusResponse o =
            CONTAINERD__SERVICES__CONTENT__V1__STATUS_RESPONSE__INIT;
        o.status = &s;
        cairn__grpc_send(c, &o.base);
        cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
    }
    containerd__services__content__v1__status_request__free_unpacked(req, NULL);
}

static void m_list_statuses(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(ListStatusesRequest, list_statuses_request, c, msg, len);
    cairn__ctrd *x = ctx(c);
    size_t n = x->n_ingests;
    CStatus *ss = calloc(n + 1, sizeof(*ss));
    CStatus **ps = calloc(n + 1, sizeof(*ps));
    Google__Protobuf__Timestamp *ts = calloc(2 * n + 2, sizeof(*ts));
    if (!ss || !ps || !ts) {
        cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        size_t i = 0;
        for (cairn__ingest *g = x->ingests; g && i < n; g = g->next, i++) {
            status_of(g, &ss[i], &ts[2 * i]);
            ps[i] = &ss[i];
        }
        Containerd__Services__Content__V1__ListStatusesResponse o =
            CONTAINERD__SERVICES__CONTENT__V1__LIST_STATUSES_RESPONSE__INIT;
        o.n_statuses = i;
        o.statuses = ps;
        cairn__grpc_send(c, &o.base);
        cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
    }
    free(ss);
    free(ps);
    free(ts);
    containerd__services__content__v1__list_statuses_request__free_unpacked(req, NULL);
}

static void m_abort(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(AbortRequest, abort_request, c, msg, len);
    cairn__ctrd *x = ctx(c);
    cairn__ingest *g = ingest_find(x, req->ref);
    if (!g) {
        cairn__grpc_finish(c, CAIRN__GRPC_NOT_FOUND, "ingest %.200s: not found", req->ref);
    } else if (g->busy) {
        cairn__grpc_finish(c, CAIRN__GRPC_FAILED_PRECONDITION, "ingest %.200s: being written",
                           req->ref);
    } else {
        ingest_drop(x, g);
        Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
        cairn__grpc_send(c, &empty.base);
        cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
    }
    containerd__services__content__v1__abort_request__free_unpacked(req, NULL);
}

/* ---- Write ---------------------------------------------------------------- */

/* A Write call's own state: the ingest it holds (by ref: the ingest may be
 * dropped, by Abort of another call no, since it is busy). */
typedef struct wcall {
    cairn__ctrd *x;
    cairn__ingest *g;
} wcall;

static void wcall_close(void *p)
{
    wcall *w = p;
    if (!w)
        return;
    /* A call that goes, finished or cut, leaves its ingest to be resumed
     * or aborted. */
    if (w->g)
        w->g->busy = false;
    free(w);
}

static void write_reply(cairn__grpc_call *c, cairn__ingest *g, int action, const char *digest)
{
    Google__Protobuf__Timestamp ts[2];
    Containerd__Services__Content__V1__WriteContentResponse o =
        CONTAINERD__SERVICES__CONTENT__V1__WRITE_CONTENT_RESPONSE__INIT;
    o.action = (Containerd__Services__Content__V1__WriteAction)action;
    cairn__ctrd_ts(&ts[0], g->started);
    cairn__ctrd_ts(&ts[1], g->updated);
    o.started_at = &ts[0];
    o.updated_at = &ts[1];
    o.offset = g->offset;
    o.total = g->total;
    o.digest = (char *)(digest ? digest : "");
    cairn__grpc_send(c, &o.base);
}

static void m_write(cairn__grpc_call *c, const uint8_t *msg, size_t len)
{
    DECODE(WriteContentRequest, write_content_request, c, msg, len);
    cairn__ctrd *x = ctx(c);
    cairn_state *st = x->st;
    cairn_error e = {0};
    wcall *w = cairn__grpc_data(c);
    if (!w) {
        if (!(w = calloc(1, sizeof(*w)))) {
            cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        w->x = x;
        cairn__grpc_set_data(c, w, wcall_close);
    }
    cairn__ingest *g = w->g;
    if (!g) {
        /* The first message names the ingest. */
        if (!req->ref || !req->ref[0]) {
            cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "Write: the first message has no ref");
            goto out;
        }
        if (strlen(req->ref) > 4096) {
            cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "Write: a ref of %zu bytes",
                               strlen(req->ref));
            goto out;
        }
        if (req->expected && req->expected[0] && !digest_ok(c, "Write", req->expected))
            goto out;
        g = ingest_find(x, req->ref);
        if (g && g->busy) {
            cairn__grpc_finish(c, CAIRN__GRPC_UNAVAILABLE, "ref %.200s is locked by another write",
                               req->ref);
            goto out;
        }
        cairn_blob_info have;
        if (!g && req->expected && req->expected[0] &&
            cairn_blob_stat(st, req->expected, &have, NULL) == 0) {
            /* Already there (here or in a lower): nothing to write; one of
             * this state's is held for containerd from now on. */
            if (have.lower == 0 && hold(st, req->expected, &e) < 0) {
                cairn__grpc_fail(c, e.code, &e);
                goto out;
            }
            cairn__grpc_finish(c, CAIRN__GRPC_ALREADY_EXISTS, "content %s: already exists",
                               req->expected);
            goto out;
        }
        if (!g) {
            if (x->n_ingests >= MAX_INGESTS) {
                cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED,
                                   "Write: %d ingests in progress; abort some", MAX_INGESTS);
                goto out;
            }
            g = calloc(1, sizeof(*g));
            if (!g || !(g->ref = strdup(req->ref))) {
                free(g);
                cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
            }
            int r = cairn_blob_writer_new(&g->w, st, NULL, &e);
            if (r < 0) {
                ingest_free(g);
                cairn__grpc_fail(c, r, &e);
                goto out;
            }
            g->started = g->updated = cairn__now_ns();
            g->next = x->ingests;
            x->ingests = g;
            x->n_ingests++;
        }
        g->busy = true;
        w->g = g;
    } else if (req->ref && req->ref[0] && strcmp(req->ref, g->ref) != 0) {
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "Write: ref %.200s, then %.200s",
                           g->ref, req->ref);
        goto out;
    }
    if (req->total > 0)
        g->total = req->total;
    if (req->expected && req->expected[0]) {
        if (!digest_ok(c, "Write", req->expected))
            goto out;
        memcpy(g->expected, req->expected, sizeof(g->expected) - 1);
    }
    if (req->action == CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__STAT) {
        write_reply(c, g, req->action, NULL);
        goto out;
    }
    if (req->action != CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__WRITE &&
        req->action != CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__COMMIT) {
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "Write: unknown action %d",
                           (int)req->action);
        goto out;
    }
    if (req->data.len) {
        if (req->offset == 0 && g->offset > 0) {
            /* Truncated to 0 by the client: start over. */
            cairn_blob_writer *nw;
            int r = cairn_blob_writer_new(&nw, st, NULL, &e);
            if (r < 0) {
                cairn__grpc_fail(c, r, &e);
                goto out;
            }
            cairn_blob_writer_free(g->w);
            g->w = nw;
            g->offset = 0;
        }
        if (req->offset != g->offset) {
            cairn__grpc_finish(c, CAIRN__GRPC_OUT_OF_RANGE,
                               "Write %.200s: offset %lld, but the ingest is at %lld", g->ref,
                               (long long)req->offset, (long long)g->offset);
            goto out;
        }
        if (g->total > 0 && g->offset + (int64_t)req->data.len > g->total) {
            cairn__grpc_finish(c, CAIRN__GRPC_OUT_OF_RANGE,
                               "Write %.200s: %zu bytes at %lld go past the total of %lld",
                               g->ref, req->data.len, (long long)g->offset, (long long)g->total);
            goto out;
        }
        int r = cairn_blob_writer_write(g->w, req->data.data, req->data.len, &e);
        if (r < 0) {
            cairn__grpc_fail(c, r, &e);
            goto out;
        }
        g->offset += (int64_t)req->data.len;
        g->updated = cairn__now_ns();
    }
    if (req->action == CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__WRITE) {
        write_reply(c, g, req->action, NULL);
        goto out;
    }
    /* Commit: the size and digest are checked by the writer before any row
     * names the blob; a failed commit loses the ingest (its data is bad). */
    if (g->total > 0 && g->offset != g->total) {
        cairn__grpc_finish(c, CAIRN__GRPC_FAILED_PRECONDITION,
                           "Commit %.200s: %lld bytes written of %lld", g->ref,
                           (long long)g->offset, (long long)g->total);
        goto out;
    }
    char digest[CAIRN_DIGEST_LEN + 1];
    int r = cairn_blob_writer_expect(g->w, g->expected[0] ? g->expected : NULL, g->offset, &e);
    if (r == 0)
        r = cairn_blob_writer_commit(g->w, digest, &e);
    /* Labels given at commit go on the blob. */
    for (size_t i = 0; r == 0 && i < req->n_labels; i++)
        if (req->labels[i]->key && req->labels[i]->key[0] && req->labels[i]->value &&
            strlen(req->labels[i]->key) + strlen(req->labels[i]->value) <= CAIRN__CTRD_LABEL_MAX)
            cairn_blob_label_set(st, digest, req->labels[i]->key, req->labels[i]->value, NULL);
    if (r < 0) {
        w->g = NULL;
        ingest_drop(x, g);
        cairn__grpc_fail(c, r, &e);
        goto out;
    }
    /* Held for containerd (a gc root of cairn's) until its gc deletes it. */
    r = hold(st, digest, &e);
    if (r < 0) {
        w->g = NULL;
        ingest_drop(x, g);
        cairn__grpc_fail(c, r, &e);
        goto out;
    }
    x->stats.blobs++;
    write_reply(c, g, req->action, digest);
    w->g = NULL;
    ingest_drop(x, g);
    cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
out:
    containerd__services__content__v1__write_content_request__free_unpacked(req, NULL);
}

static void write_end(cairn__grpc_call *c)
{
    /* The client closed its side: the call ends; an uncommitted ingest stays. */
    cairn__grpc_finish(c, CAIRN__GRPC_OK, NULL);
}

#define CONTENT "/containerd.services.content.v1.Content/"
const cairn__grpc_method cairn__ctrd_content_methods[] = {
    {CONTENT "Info", m_info, NULL},
    {CONTENT "Update", m_update, NULL},
    {CONTENT "List", m_list, NULL},
    {CONTENT "Delete", m_delete, NULL},
    {CONTENT "Read", m_read, NULL},
    {CONTENT "Status", m_status, NULL},
    {CONTENT "ListStatuses", m_list_statuses, NULL},
    {CONTENT "Write", m_write, write_end},
    {CONTENT "Abort", m_abort, NULL},
    {NULL, NULL, NULL},
};
