/* test-containerd.c: the gRPC server of `cairn serve containerd`, driven by
 * an nghttp2 client over a socketpair in this thread: framing, the status
 * trailers, bad input of every kind (malformed protobuf, unknown methods,
 * compressed or oversized messages, huge labels, keys of another namespace,
 * a Write cut in the middle, a client that vanishes, bytes that are not
 * HTTP/2), each answered cleanly while the server goes on serving; and one
 * server that takes thousands of calls on one state handle (leaks are
 * ASan's to find), leaving the state fsck-clean. */
#include "helpers.h"
#include "containerd/containerd-private.h"

#include <errno.h>
#include <fcntl.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>
#include <unistd.h>

#define SNAP "/containerd.services.snapshots.v1.Snapshots/"
#define CONTENT "/containerd.services.content.v1.Content/"

typedef struct client {
    int fd;
    nghttp2_session *h2;
    cairn__grpc_server *srv;
    cairn__grpc_method *methods;
    cairn__ctrd x;
} client;

/* One call's request bytes and what came back. */
typedef struct call {
    const uint8_t *req;
    size_t req_len, req_off;
    bool hold;       /* stop sending after req_len, keep the stream open */
    bool done;       /* stream closed */
    int status;      /* grpc-status, -1 when none came */
    char message[512];
    uint8_t *resp;
    size_t resp_len;
    uint32_t rst;    /* the RST_STREAM code, if any */
} call;

static ssize_t c_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    client *c = ud;
    ssize_t n = send(c->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return NGHTTP2_ERR_WOULDBLOCK;
    return n < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : n;
}

static int c_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                    const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    call *k = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!k)
        return 0;
    if (nl == 11 && memcmp(name, "grpc-status", 11) == 0)
        k->status = atoi((const char *)value);
    if (nl == 12 && memcmp(name, "grpc-message", 12) == 0)
        snprintf(k->message, sizeof(k->message), "%.*s", (int)vl, value);
    return 0;
}

static int c_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                  void *ud)
{
    call *k = nghttp2_session_get_stream_user_data(s, id);
    if (!k)
        return 0;
    k->resp = realloc(k->resp, k->resp_len + len);
    memcpy(k->resp + k->resp_len, data, len);
    k->resp_len += len;
    return 0;
}

static int c_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    call *k = nghttp2_session_get_stream_user_data(s, id);
    if (k) {
        k->done = true;
        k->rst = code;
    }
    return 0;
}

static ssize_t c_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                      nghttp2_data_source *src, void *ud)
{
    call *k = src->ptr;
    size_t n = k->req_len - k->req_off;
    if (n > len)
        n = len;
    memcpy(buf, k->req + k->req_off, n);
    k->req_off += n;
    if (k->req_off == k->req_len) {
        if (k->hold)
            return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static void client_open(client *c, cairn_state *st)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    c->fd = sv[1];
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
    if (!c->srv) {
        c->x.st = st;
        size_t ns = 0, nc = 0;
        while (cairn__ctrd_snapshot_methods[ns].path)
            ns++;
        while (cairn__ctrd_content_methods[nc].path)
            nc++;
        c->methods = calloc(ns + nc + 1, sizeof(*c->methods));
        memcpy(c->methods, cairn__ctrd_snapshot_methods, ns * sizeof(*c->methods));
        memcpy(c->methods + ns, cairn__ctrd_content_methods, nc * sizeof(*c->methods));
        assert_int_equal(cairn__grpc_server_new(&c->srv, c->methods, &c->x, NULL), 0);
    }
    assert_int_equal(cairn__grpc_adopt(c->srv, sv[0], NULL), 0);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, c_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, c_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, c_close);
    assert_int_equal(nghttp2_session_client_new(&c->h2, cb, c), 0);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, NULL, 0);
}

static void client_drop(client *c)
{
    nghttp2_session_del(c->h2);
    c->h2 = NULL;
    close(c->fd);
    c->fd = -1;
}

static void client_free(client *c)
{
    if (c->h2)
        client_drop(c);
    cairn__grpc_server_free(c->srv);
    cairn__ctrd_content_free(&c->x);
    free(c->methods);
    c->srv = NULL;
}

/* One round: client writes, server serves, client reads. */
static void pump(client *c)
{
    if (c->h2)
        nghttp2_session_send(c->h2);
    assert_int_equal(cairn__grpc_step(c->srv, 5, NULL), 0);
    uint8_t b[65536];
    ssize_t n;
    while (c->h2 && (n = recv(c->fd, b, sizeof(b), MSG_DONTWAIT)) > 0)
        assert_true(nghttp2_session_mem_recv(c->h2, b, (size_t)n) >= 0);
}

static int32_t start(client *c, call *k, const char *path, const char *ns)
{
    nghttp2_nv h[6];
    size_t n = 0;
#define NV(a, b) h[n++] = (nghttp2_nv){(uint8_t *)(a), (uint8_t *)(b), strlen(a), strlen(b), 0}
    NV(":method", "POST");
    NV(":scheme", "http");
    NV(":path", path);
    NV(":authority", "localhost");
    NV("content-type", "application/grpc");
    if (ns)
        NV("containerd-namespace", ns);
    k->status = -1;
    nghttp2_data_provider dp = {.source.ptr = k, .read_callback = c_read};
    int32_t id = nghttp2_submit_request(c->h2, NULL, h, n, &dp, k);
    assert_true(id > 0);
    return id;
}

/* A whole call: request bytes in, until the stream closes. */
static void run(client *c, call *k, const char *path, const char *ns)
{
    start(c, k, path, ns);
    for (int i = 0; i < 1000 && !k->done; i++)
        pump(c);
    assert_true(k->done);
    /* Every call ends with a status, never a reset in its place. */
    assert_int_not_equal(k->status, -1);
    assert_int_equal(k->rst, NGHTTP2_NO_ERROR);
}

static void call_clear(call *k)
{
    free((void *)k->req);
    free(k->resp);
    memset(k, 0, sizeof(*k));
}

/* The i-th response message of a call (its 5-byte frame stripped). */
static const uint8_t *resp_msg(const call *k, size_t i, size_t *len)
{
    size_t off = 0;
    for (;;) {
        if (off + 5 > k->resp_len)
            return NULL;
        const uint8_t *p = k->resp + off;
        size_t n = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
        if (i-- == 0) {
            *len = n;
            return p + 5;
        }
        off += 5 + n;
    }
}

static uint8_t *frame(const ProtobufCMessage *m, size_t *len)
{
    return cairn__grpc_frame(m, len);
}

typedef Containerd__Services__Snapshots__V1__PrepareSnapshotRequest Prep;
typedef Containerd__Services__Snapshots__V1__PrepareSnapshotRequest__LabelsEntry PrepLabel;

static int prepare(client *c, const char *key, const char *parent, const char *lk,
                   const char *lv, char *msg)
{
    Prep p = CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__INIT;
    p.key = (char *)key;
    p.parent = (char *)(parent ? parent : "");
    PrepLabel l = CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__LABELS_ENTRY__INIT;
    PrepLabel *ls[] = {&l};
    if (lk) {
        l.key = (char *)lk;
        l.value = (char *)lv;
        p.n_labels = 1;
        p.labels = ls;
    }
    call k = {0};
    k.req = frame(&p.base, &k.req_len);
    run(c, &k, SNAP "Prepare", NULL);
    int st = k.status;
    if (msg)
        strcpy(msg, k.message);
    call_clear(&k);
    return st;
}

static int key_call(client *c, const char *method, const char *key, const char *ns)
{
    Containerd__Services__Snapshots__V1__StatSnapshotRequest r =
        CONTAINERD__SERVICES__SNAPSHOTS__V1__STAT_SNAPSHOT_REQUEST__INIT;
    r.key = (char *)key; /* Stat, Remove, Mounts, Usage share {1 snapshotter, 2 key} */
    call k = {0};
    k.req = frame(&r.base, &k.req_len);
    char path[128];
    snprintf(path, sizeof(path), SNAP "%s", method);
    run(c, &k, path, ns);
    int st = k.status;
    call_clear(&k);
    return st;
}

static int commit(client *c, const char *name, const char *key)
{
    Containerd__Services__Snapshots__V1__CommitSnapshotRequest r =
        CONTAINERD__SERVICES__SNAPSHOTS__V1__COMMIT_SNAPSHOT_REQUEST__INIT;
    r.name = (char *)name;
    r.key = (char *)key;
    call k = {0};
    k.req = frame(&r.base, &k.req_len);
    run(c, &k, SNAP "Commit", NULL);
    int st = k.status;
    call_clear(&k);
    return st;
}

static int list_count(client *c)
{
    Containerd__Services__Snapshots__V1__ListSnapshotsRequest r =
        CONTAINERD__SERVICES__SNAPSHOTS__V1__LIST_SNAPSHOTS_REQUEST__INIT;
    call k = {0};
    k.req = frame(&r.base, &k.req_len);
    run(c, &k, SNAP "List", NULL);
    assert_int_equal(k.status, 0);
    int n = 0;
    size_t len = 0;
    const uint8_t *m;
    for (size_t i = 0; (m = resp_msg(&k, i, &len)); i++) {
        Containerd__Services__Snapshots__V1__ListSnapshotsResponse *o =
            containerd__services__snapshots__v1__list_snapshots_response__unpack(NULL, len, m);
        assert_non_null(o);
        n += (int)o->n_info;
        containerd__services__snapshots__v1__list_snapshots_response__free_unpacked(o, NULL);
    }
    call_clear(&k);
    return n;
}

typedef Containerd__Services__Content__V1__WriteContentRequest WReq;

/* Frames of a Write: STAT, WRITE of data, then COMMIT (when commit). */
static uint8_t *write_frames(const char *ref, const void *data, size_t n, bool commit,
                             const char *expected, size_t *len)
{
    uint8_t *out = NULL;
    *len = 0;
    for (int a = 0; a < (commit ? 3 : 2); a++) {
        WReq w = CONTAINERD__SERVICES__CONTENT__V1__WRITE_CONTENT_REQUEST__INIT;
        w.action = (Containerd__Services__Content__V1__WriteAction)a;
        w.ref = (char *)(a == 0 ? ref : "");
        if (a == 1) {
            w.data.data = (uint8_t *)data;
            w.data.len = n;
        }
        if (a == 2) {
            w.offset = (int64_t)n;
            w.total = (int64_t)n;
            w.expected = (char *)(expected ? expected : "");
        }
        size_t fl;
        uint8_t *f = frame(&w.base, &fl);
        out = realloc(out, *len + fl);
        memcpy(out + *len, f, fl);
        *len += fl;
        free(f);
    }
    return out;
}

static int status_of_ref(client *c, const char *ref, int64_t *offset)
{
    Containerd__Services__Content__V1__StatusRequest r =
        CONTAINERD__SERVICES__CONTENT__V1__STATUS_REQUEST__INIT;
    r.ref = (char *)ref;
    call k = {0};
    k.req = frame(&r.base, &k.req_len);
    run(c, &k, CONTENT "Status", NULL);
    int st = k.status;
    size_t len = 0;
    const uint8_t *m = resp_msg(&k, 0, &len);
    if (st == 0 && m) {
        Containerd__Services__Content__V1__StatusResponse *o =
            containerd__services__content__v1__status_response__unpack(NULL, len, m);
        assert_non_null(o);
        *offset = o->status->offset;
        containerd__services__content__v1__status_response__free_unpacked(o, NULL);
    }
    call_clear(&k);
    return st;
}

static int simple(client *c, const char *path, const ProtobufCMessage *m)
{
    call k = {0};
    k.req = frame(m, &k.req_len);
    run(c, &k, path, NULL);
    int st = k.status;
    call_clear(&k);
    return st;
}

static void fsck_clean(cairn_state *st)
{
    cairn_error t_err = {0};
    cairn_fsck_options o = CAIRN_FSCK_OPTIONS_INIT;
    int r = cairn_fsck(st, &o, NULL, NULL, &t_err);
    T_OK(r);
    assert_int_equal(r, 0);
}

static void test_bad_input(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("ctrd-bad");
    cairn_state *st = t_state(dir, "s");
    client c = {0};
    client_open(&c, st);

    /* A good call first: an empty List ends OK with no message. */
    assert_int_equal(list_count(&c), 0);

    /* An unknown method: UNIMPLEMENTED, naming it. */
    call k = {0};
    k.req = frame(&(Google__Protobuf__Empty)GOOGLE__PROTOBUF__EMPTY__INIT.base, &k.req_len);
    run(&c, &k, "/containerd.services.snapshots.v1.Snapshots/Explode", NULL);
    assert_int_equal(k.status, CAIRN__GRPC_UNIMPLEMENTED);
    assert_non_null(strstr(k.message, "Explode"));
    call_clear(&k);

    /* Malformed protobuf: a field tag with a truncated varint. */
    static const uint8_t junk[] = {0, 0, 0, 0, 3, 0x12, 0xff, 0xff};
    k.req = malloc(sizeof(junk));
    memcpy((void *)k.req, junk, sizeof(junk));
    k.req_len = sizeof(junk);
    run(&c, &k, SNAP "Prepare", NULL);
    assert_int_equal(k.status, CAIRN__GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(k.message, "malformed"));
    call_clear(&k);

    /* A compressed message, and one that claims 1 GiB. */
    static const uint8_t comp[] = {1, 0, 0, 0, 0};
    static const uint8_t huge[] = {0, 0x40, 0, 0, 0, 1, 2, 3};
    k.req = malloc(sizeof(comp));
    memcpy((void *)k.req, comp, sizeof(comp));
    k.req_len = sizeof(comp);
    run(&c, &k, CONTENT "Info", NULL);
    assert_int_equal(k.status, CAIRN__GRPC_UNIMPLEMENTED);
    call_clear(&k);
    k.req = malloc(sizeof(huge));
    memcpy((void *)k.req, huge, sizeof(huge));
    k.req_len = sizeof(huge);
    run(&c, &k, CONTENT "Info", NULL);
    assert_int_equal(k.status, CAIRN__GRPC_RESOURCE_EXHAUSTED);
    call_clear(&k);

    /* A request cut inside its message, and a unary call with none. */
    static const uint8_t cut[] = {0, 0, 0, 0, 9, 0x0a, 1};
    k.req = malloc(sizeof(cut));
    memcpy((void *)k.req, cut, sizeof(cut));
    k.req_len = sizeof(cut);
    run(&c, &k, CONTENT "Info", NULL);
    assert_int_not_equal(k.status, 0);
    assert_int_not_equal(k.status, -1);
    call_clear(&k);
    k.req = calloc(1, 1);
    run(&c, &k, CONTENT "Info", NULL);
    assert_int_equal(k.status, CAIRN__GRPC_INVALID_ARGUMENT);
    call_clear(&k);

    /* Bad keys, huge labels, another namespace's parent and key. */
    char msg[512];
    assert_int_equal(prepare(&c, "no-slashes", NULL, NULL, NULL, msg), CAIRN__GRPC_INVALID_ARGUMENT);
    char *big = malloc(5001);
    memset(big, 'v', 5000);
    big[5000] = 0;
    assert_int_equal(prepare(&c, "default/1/a", NULL, "k", big, msg), CAIRN__GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "label"));
    free(big);
    assert_int_equal(prepare(&c, "default/1/a", NULL, NULL, NULL, msg), 0);
    assert_int_equal(commit(&c, "default/2/base", "default/1/a"), 0);
    assert_int_equal(prepare(&c, "other/3/b", "default/2/base", NULL, NULL, msg),
                     CAIRN__GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "namespace"));
    assert_int_equal(key_call(&c, "Stat", "default/2/base", "other"), CAIRN__GRPC_NOT_FOUND);
    assert_int_equal(key_call(&c, "Remove", "default/2/base", "other"), CAIRN__GRPC_NOT_FOUND);
    assert_int_equal(key_call(&c, "Stat", "default/2/base", "default"), 0);
    assert_int_equal(key_call(&c, "Stat", "default/9/none", NULL), CAIRN__GRPC_NOT_FOUND);
    /* The key is free again after its commit; taken, it is AlreadyExists. */
    assert_int_equal(prepare(&c, "default/1/a", "default/2/base", NULL, NULL, msg), 0);
    assert_int_equal(prepare(&c, "default/1/a", NULL, NULL, NULL, msg), CAIRN__GRPC_ALREADY_EXISTS);
    assert_int_equal(commit(&c, "default/2/base", "default/1/a"), CAIRN__GRPC_ALREADY_EXISTS);
    /* A parent is not removed under a child. */
    assert_int_equal(key_call(&c, "Remove", "default/2/base", NULL), CAIRN__GRPC_FAILED_PRECONDITION);
    assert_int_equal(key_call(&c, "Remove", "default/1/a", NULL), 0);

    /* A Write cut mid-stream: the ingest stays at its offset, resumable;
     * Abort drops it. */
    static const char data[] = "some bytes of a blob that never gets committed";
    k.req = write_frames("ref-cut", data, sizeof(data), false, NULL, &k.req_len);
    k.hold = true;
    int32_t id = start(&c, &k, CONTENT "Write", NULL);
    for (int i = 0; i < 20; i++)
        pump(&c);
    assert_false(k.done);
    nghttp2_submit_rst_stream(c.h2, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    for (int i = 0; i < 20 && !k.done; i++)
        pump(&c);
    assert_true(k.done);
    call_clear(&k);
    int64_t off = -1;
    assert_int_equal(status_of_ref(&c, "ref-cut", &off), 0);
    assert_int_equal(off, (int64_t)sizeof(data));
    Containerd__Services__Content__V1__AbortRequest ab =
        CONTAINERD__SERVICES__CONTENT__V1__ABORT_REQUEST__INIT;
    ab.ref = "ref-cut";
    assert_int_equal(simple(&c, CONTENT "Abort", &ab.base), 0);
    assert_int_equal(status_of_ref(&c, "ref-cut", &off), CAIRN__GRPC_NOT_FOUND);

    /* A commit with the wrong digest stores nothing. */
    char d[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_put_buf(st, "x", 1, NULL, d, &t_err));
    k.req = write_frames("ref-bad", data, sizeof(data), true, d, &k.req_len);
    run(&c, &k, CONTENT "Write", NULL);
    assert_int_equal(k.status, CAIRN__GRPC_FAILED_PRECONDITION);
    call_clear(&k);

    /* A client that vanishes mid-call, and one that sends no HTTP/2 at all:
     * the server drops them and serves the next. */
    k.req = write_frames("ref-gone", data, sizeof(data), false, NULL, &k.req_len);
    k.hold = true;
    start(&c, &k, CONTENT "Write", NULL);
    for (int i = 0; i < 10; i++)
        pump(&c);
    client_drop(&c);
    for (int i = 0; i < 10; i++)
        pump(&c);
    call_clear(&k);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(cairn__grpc_adopt(c.srv, sv[0], NULL), 0);
    assert_int_equal(write(sv[1], "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27), 27);
    for (int i = 0; i < 10; i++)
        pump(&c);
    close(sv[1]);
    for (int i = 0; i < 10; i++)
        pump(&c);
    client_open(&c, st);
    assert_int_equal(list_count(&c), 1); /* default/2/base */
    cairn__grpc_stats gs;
    cairn__grpc_stats_get(c.srv, &gs);
    assert_true(gs.errors >= 10);
    client_free(&c);
    fsck_clean(st);

    /* fsck finds containerd's rows that name nothing, and repair drops them. */
    assert_int_equal(sqlite3_exec(st->layers[0].db,
                                  "INSERT INTO containerd_snapshots(key, kind, target, created, updated) "
                                  "VALUES ('default/7/gone', 3, 'sha256:"
                                  "0000000000000000000000000000000000000000000000000000000000000000', 0, 0);"
                                  "INSERT INTO containerd_content(digest, created) VALUES ('sha256:"
                                  "1111111111111111111111111111111111111111111111111111111111111111', 0)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    cairn_fsck_options fo = CAIRN_FSCK_OPTIONS_INIT;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 2);
    fo.repair = 1;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 2);
    fsck_clean(st);
    cairn_state_free(st);
    t_scratch_free(dir);
}

/* One server, one state handle, thousands of calls of every kind. */
static void test_long_lived(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("ctrd-long");
    cairn_state *st = t_state(dir, "s");
    client c = {0};
    client_open(&c, st);
    char key[64], name[64], parent[64] = "", msg[512];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "default/%d/extract %d", 2 * i + 1, i);
        snprintf(name, sizeof(name), "default/%d/layer-%d", 2 * i + 2, i);
        assert_int_equal(prepare(&c, key, parent[0] ? parent : NULL, NULL, NULL, msg), 0);
        assert_int_equal(key_call(&c, "Mounts", key, NULL), 0);
        assert_int_equal(key_call(&c, "Usage", key, NULL), 0);
        assert_int_equal(commit(&c, name, key), 0);
        assert_int_equal(key_call(&c, "Stat", name, "default"), 0);
        snprintf(parent, sizeof(parent), "%s", name);
        /* A blob each round, read back. */
        char data[64], ref[32], d[CAIRN_DIGEST_LEN + 1];
        int n = snprintf(data, sizeof(data), "blob number %d", i);
        snprintf(ref, sizeof(ref), "ref-%d", i);
        call k = {0};
        k.req = write_frames(ref, data, (size_t)n, true, NULL, &k.req_len);
        run(&c, &k, CONTENT "Write", NULL);
        assert_int_equal(k.status, 0);
        call_clear(&k);
        cairn__sha256_buf(data, (size_t)n, d);
        Containerd__Services__Content__V1__ReadContentRequest rr =
            CONTAINERD__SERVICES__CONTENT__V1__READ_CONTENT_REQUEST__INIT;
        rr.digest = d;
        k.req = frame(&rr.base, &k.req_len);
        run(&c, &k, CONTENT "Read", NULL);
        assert_int_equal(k.status, 0);
        size_t len = 0;
        const uint8_t *m = resp_msg(&k, 0, &len);
        assert_non_null(m);
        Containerd__Services__Content__V1__ReadContentResponse *o =
            containerd__services__content__v1__read_content_response__unpack(NULL, len, m);
        assert_int_equal(o->data.len, (size_t)n);
        assert_memory_equal(o->data.data, data, (size_t)n);
        containerd__services__content__v1__read_content_response__free_unpacked(o, NULL);
        call_clear(&k);
        if (i % 50 == 49) {
            /* Now and then a new connection, the old one dropped. */
            client_drop(&c);
            client_open(&c, st);
        }
    }
    /* List goes over several messages (64 Infos a message). */
    assert_int_equal(list_count(&c), 200);
    /* Remove from the top down: each parent only when free. */
    for (int i = 199; i >= 0; i--) {
        snprintf(name, sizeof(name), "default/%d/layer-%d", 2 * i + 2, i);
        if (i > 0) {
            char below[64];
            snprintf(below, sizeof(below), "default/%d/layer-%d", 2 * i, i - 1);
            assert_int_equal(key_call(&c, "Remove", below, NULL), CAIRN__GRPC_FAILED_PRECONDITION);
        }
        assert_int_equal(key_call(&c, "Remove", name, NULL), 0);
    }
    assert_int_equal(list_count(&c), 0);
    cairn_state_info in;
    T_OK(cairn_state_info_get(st, &in, &t_err));
    assert_int_equal(in.snapshots.count, 0);
    assert_int_equal(in.active.count, 0);
    assert_int_equal(in.blobs.count, 200);
    client_free(&c);
    fsck_clean(st);
    cairn_state_free(st);
    t_scratch_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_long_lived),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
