/* grpc.c: gRPC over HTTP/2 on unix sockets, for containerd's proxy plugins.
 *
 * Owns: the listening socket, the connections (one nghttp2 server session
 * each), and the calls (one HTTP/2 stream each). See grpc.h for the wire
 * form and the handler contract.
 *
 * A call's life: HEADERS (checked: POST, application/grpc, a known path;
 * else answered at once, trailers-only) -> DATA, cut into messages by their
 * 5-byte prefix, each handed to the method as soon as it is whole -> the
 * client's END_STREAM -> end() -> the handler finishes it. Output goes
 * through one data provider per call that drains the call's buffer, asks
 * the producer for more, defers when there is nothing yet, and sends the
 * trailers when the call is finished and its buffer empty.
 *
 * Invariants: a call is freed only from nghttp2's stream-close callback (or
 * with its connection), so a handler's call pointer stays valid until its
 * close(); nothing a client sends (any byte sequence) ends the loop: a bad
 * frame ends that connection, a bad message that call.
 */
#include "containerd/grpc.h"

#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <nghttp2/nghttp2.h>

#define MAX_HEADERS      32
#define MAX_HEADER_BYTES (16u << 10)
#define WINDOW           (16 << 20)

typedef struct conn conn;

typedef struct buf {
    uint8_t *p;
    size_t len, off, cap;
} buf;

struct cairn__grpc_call {
    conn *conn;
    int32_t id;
    const cairn__grpc_method *method;
    char *path;
    char *hdr_name[MAX_HEADERS];
    char *hdr_value[MAX_HEADERS];
    size_t n_hdr, hdr_bytes;
    buf in;            /* request bytes not yet cut into messages */
    buf out;           /* framed response messages not yet sent */
    bool responded;    /* response HEADERS submitted */
    bool deferred;     /* the data provider is waiting for output */
    bool finished;     /* a status is set */
    bool remote_ended; /* the client half-closed */
    bool trailers_sent;
    bool in_handler;
    size_t n_msgs;     /* request messages handed over */
    int status;
    char *message;
    void (*producer)(cairn__grpc_call *c);
    void *data;
    void (*close)(void *data);
    cairn__grpc_call *next, *prev;
};

struct conn {
    cairn__grpc_server *srv;
    int fd;
    nghttp2_session *session;
    cairn__grpc_call *calls;
    bool dead;
    conn *next;
};

struct cairn__grpc_server {
    const cairn__grpc_method *methods;
    void *ud;
    int lfd;
    char *sock_path;
    conn *conns;
    size_t n_conns;
    cairn__grpc_stats stats;
    cairn__grpc_log_fn log;
    void *log_ud;
};

static void logf_(cairn__grpc_server *s, const char *fmt, ...) CAIRN_PRINTF(2, 3);
static void logf_(cairn__grpc_server *s, const char *fmt, ...)
{
    if (!s->log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    s->log(s->log_ud, msg);
}

static int buf_add(buf *b, const void *p, size_t n)
{
    if (b->off && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + n > b->cap) {
        if (b->off) {
            memmove(b->p, b->p + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        if (b->len + n > b->cap) {
            size_t cap = b->cap ? b->cap : 4096;
            while (cap < b->len + n)
                cap *= 2;
            uint8_t *q = realloc(b->p, cap);
            if (!q)
                return -ENOMEM;
            b->p = q;
            b->cap = cap;
        }
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static size_t buf_avail(const buf *b)
{
    return b->len - b->off;
}

/* ---- calls ------------------------------------------------------------ */

static void call_free(cairn__grpc_call *c)
{
    if (c->close)
        c->close(c->data);
    free(c->path);
    for (size_t i = 0; i < c->n_hdr; i++) {
        free(c->hdr_name[i]);
        free(c->hdr_value[i]);
    }
    free(c->in.p);
    free(c->out.p);
    free(c->message);
    free(c);
}

void *cairn__grpc_ud(cairn__grpc_call *c)
{
    return c->conn->srv->ud;
}

const char *cairn__grpc_path(cairn__grpc_call *c)
{
    return c->path ? c->path : "";
}

void cairn__grpc_set_data(cairn__grpc_call *c, void *data, void (*close)(void *data))
{
    c->data = data;
    c->close = close;
}

void *cairn__grpc_data(cairn__grpc_call *c)
{
    return c->data;
}

const char *cairn__grpc_header(cairn__grpc_call *c, const char *name)
{
    for (size_t i = 0; i < c->n_hdr; i++)
        if (strcmp(c->hdr_name[i], name) == 0)
            return c->hdr_value[i];
    return NULL;
}

bool cairn__grpc_finished(cairn__grpc_call *c)
{
    return c->finished;
}

void cairn__grpc_set_producer(cairn__grpc_call *c, void (*fn)(cairn__grpc_call *c))
{
    c->producer = fn;
}

static ssize_t data_read(nghttp2_session *session, int32_t stream_id, uint8_t *out, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user_data);

/* Submit the response headers (first output), or resume a deferred provider. */
static void call_kick(cairn__grpc_call *c)
{
    if (c->conn->dead)
        return;
    if (!c->responded) {
        c->responded = true;
        nghttp2_data_provider dp = {.source.ptr = c, .read_callback = data_read};
        const nghttp2_nv hdrs[] = {
            {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
        };
        if (nghttp2_submit_response(c->conn->session, c->id, hdrs, CAIRN_ARRAY_SIZE(hdrs), &dp) != 0)
            c->conn->dead = true;
        return;
    }
    if (c->deferred) {
        c->deferred = false;
        nghttp2_session_resume_data(c->conn->session, c->id);
    }
}

int cairn__grpc_send(cairn__grpc_call *c, const ProtobufCMessage *m)
{
    if (c->finished)
        return 0;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t hdr[5] = {0, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    int r = buf_add(&c->out, hdr, sizeof(hdr));
    if (r == 0 && n) {
        uint8_t *p = malloc(n);
        if (!p) {
            r = -ENOMEM;
        } else {
            protobuf_c_message_pack(m, p);
            r = buf_add(&c->out, p, n);
            free(p);
        }
    }
    if (r < 0) {
        cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return r;
    }
    call_kick(c);
    return 0;
}

/* grpc-message is percent-encoded (RFC 3986 unreserved and space kept). */
static char *pct_encode(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(3 * n + 1), *q = o;
    if (!o)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= 0x20 && *p < 0x7f && *p != '%')
            *q++ = (char)*p;
        else
            q += sprintf(q, "%%%02X", *p);
    }
    *q = 0;
    return o;
}

void cairn__grpc_finish(cairn__grpc_call *c, int code, const char *fmt, ...)
{
    if (c->finished)
        return;
    c->finished = true;
    c->status = code;
    c->producer = NULL;
    if (code != CAIRN__GRPC_OK) {
        c->conn->srv->stats.errors++;
        /* What was queued of a failed answer is not sent: the client gets
         * the status, not half an answer. */
        c->out.off = c->out.len = 0;
    }
    if (fmt) {
        char msg[CAIRN_ERROR_MESSAGE_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        c->message = pct_encode(msg);
        if (code != CAIRN__GRPC_OK)
            logf_(c->conn->srv, "%s: status %d: %s", cairn__grpc_path(c), code, msg);
    }
    if (c->conn->dead)
        return;
    if (!c->responded && code != CAIRN__GRPC_OK) {
        /* Trailers-only: one HEADERS frame that ends the stream. */
        c->responded = true;
        c->trailers_sent = true;
        char st[16];
        int sl = snprintf(st, sizeof(st), "%d", code);
        const char *msg = c->message ? c->message : "";
        const nghttp2_nv hdrs[] = {
            {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)"grpc-status", (uint8_t *)st, 11, (size_t)sl, NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)"grpc-message", (uint8_t *)msg, 12, strlen(msg), NGHTTP2_NV_FLAG_NONE},
        };
        /* No RST_STREAM after it, even when the client has more to send:
         * nghttp2 would send the RST first, and the client would see a
         * reset instead of the status. What it sends later is dropped. */
        if (nghttp2_submit_response(c->conn->session, c->id, hdrs, CAIRN_ARRAY_SIZE(hdrs), NULL) != 0)
            c->conn->dead = true;
        return;
    }
    call_kick(c);
}

static void send_trailers(cairn__grpc_call *c)
{
    char st[16];
    int sl = snprintf(st, sizeof(st), "%d", c->status);
    const char *msg = c->message ? c->message : "";
    const nghttp2_nv tr[] = {
        {(uint8_t *)"grpc-status", (uint8_t *)st, 11, (size_t)sl, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-message", (uint8_t *)msg, 12, strlen(msg), NGHTTP2_NV_FLAG_NONE},
    };
    c->trailers_sent = true;
    if (nghttp2_submit_trailer(c->conn->session, c->id, tr, c->message ? 2 : 1) != 0)
        c->conn->dead = true;
}

static ssize_t data_read(nghttp2_session *session, int32_t stream_id, uint8_t *out, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user_data)
{
    (void)session, (void)stream_id, (void)user_data;
    cairn__grpc_call *c = source->ptr;
    if (!buf_avail(&c->out) && c->producer && !c->finished) {
        c->in_handler = true;
        c->producer(c);
        c->in_handler = false;
        /* The producer's send kicked nothing: we are inside the provider. */
        c->deferred = false;
    }
    size_t n = buf_avail(&c->out);
    if (n) {
        if (n > length)
            n = length;
        memcpy(out, c->out.p + c->out.off, n);
        c->out.off += n;
        return (ssize_t)n;
    }
    if (c->finished) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        send_trailers(c);
        return 0;
    }
    c->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
}

int cairn__grpc_code(int r)
{
    switch (r) {
    case 0:
        return CAIRN__GRPC_OK;
    case -ENOENT:
        return CAIRN__GRPC_NOT_FOUND;
    case -EEXIST:
        return CAIRN__GRPC_ALREADY_EXISTS;
    case -EINVAL:
    case -ENAMETOOLONG:
    case CAIRN_E_DIGEST:
    case CAIRN_E_UNSAFE:
    case CAIRN_E_FORMAT:
        return CAIRN__GRPC_INVALID_ARGUMENT;
    case CAIRN_E_MISMATCH:
    case CAIRN_E_INUSE:
    case CAIRN_E_FROZEN:
    case -EROFS:
    case -ENOTEMPTY:
        return CAIRN__GRPC_FAILED_PRECONDITION;
    case -ENOSPC:
    case -EDQUOT:
    case -ENOMEM:
        return CAIRN__GRPC_RESOURCE_EXHAUSTED;
    case CAIRN_E_BUSY:
        return CAIRN__GRPC_UNAVAILABLE;
    case CAIRN_E_TRUNCATED:
        return CAIRN__GRPC_OUT_OF_RANGE;
    case -ENOSYS:
    case -EOPNOTSUPP:
        return CAIRN__GRPC_UNIMPLEMENTED;
    default:
        return CAIRN__GRPC_UNKNOWN;
    }
}

void cairn__grpc_fail(cairn__grpc_call *c, int r, const cairn_error *e)
{
    cairn__grpc_finish(c, cairn__grpc_code(r), "%s", e && e->message[0] ? e->message : cairn_strerror(r));
}

/* Cut the call's input into messages and hand them over. */
static void call_feed(cairn__grpc_call *c)
{
    while (!c->finished && buf_avail(&c->in) >= 5) {
        const uint8_t *p = c->in.p + c->in.off;
        uint32_t n = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
        if (p[0] != 0) {
            cairn__grpc_finish(c, CAIRN__GRPC_UNIMPLEMENTED,
                               p[0] == 1 ? "compressed messages are not supported"
                                         : "bad message flags");
            return;
        }
        if (n > CAIRN__GRPC_MAX_MESSAGE) {
            cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED,
                               "message of %u bytes: more than the %u this server takes", n,
                               CAIRN__GRPC_MAX_MESSAGE);
            return;
        }
        if (buf_avail(&c->in) < 5 + (size_t)n)
            return;
        c->in.off += 5 + (size_t)n;
        c->n_msgs++;
        c->in_handler = true;
        c->method->message(c, p + 5, n);
        c->in_handler = false;
    }
}

/* ---- nghttp2 callbacks ---------------------------------------------------- */

static cairn__grpc_call *call_of(conn *k, int32_t id)
{
    return nghttp2_session_get_stream_user_data(k->session, id);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    conn *k = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    cairn__grpc_call *c = calloc(1, sizeof(*c));
    if (!c)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    c->conn = k;
    c->id = frame->hd.stream_id;
    c->next = k->calls;
    if (k->calls)
        k->calls->prev = c;
    k->calls = c;
    nghttp2_session_set_stream_user_data(session, c->id, c);
    k->srv->stats.calls++;
    k->srv->stats.open_calls++;
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)session, (void)flags;
    conn *k = ud;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    cairn__grpc_call *c = call_of(k, frame->hd.stream_id);
    if (!c || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers of a request: nothing in them matters */
    c->hdr_bytes += namelen + valuelen;
    if (c->n_hdr == MAX_HEADERS || c->hdr_bytes > MAX_HEADER_BYTES)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    char *n = strndup((const char *)name, namelen), *v = strndup((const char *)value, valuelen);
    if (!n || !v) {
        free(n);
        free(v);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    c->hdr_name[c->n_hdr] = n;
    c->hdr_value[c->n_hdr++] = v;
    return 0;
}

static void call_start(cairn__grpc_call *c)
{
    const char *method = cairn__grpc_header(c, ":method");
    const char *path = cairn__grpc_header(c, ":path");
    const char *ct = cairn__grpc_header(c, "content-type");
    if (!path || !(c->path = strdup(path))) {
        cairn__grpc_finish(c, CAIRN__GRPC_INTERNAL, "a request without a path");
        return;
    }
    if (!method || strcmp(method, "POST") != 0) {
        cairn__grpc_finish(c, CAIRN__GRPC_UNIMPLEMENTED, "%s: method %s: gRPC calls are POSTs",
                           path, method ? method : "(none)");
        return;
    }
    if (!ct || strncmp(ct, "application/grpc", 16) != 0 || (ct[16] && ct[16] != '+' && ct[16] != ';')) {
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "%s: content-type %s is not gRPC",
                           path, ct ? ct : "(none)");
        return;
    }
    const char *enc = cairn__grpc_header(c, "grpc-encoding");
    if (enc && strcmp(enc, "identity") != 0) {
        cairn__grpc_finish(c, CAIRN__GRPC_UNIMPLEMENTED, "%s: grpc-encoding %s is not supported",
                           path, enc);
        return;
    }
    for (const cairn__grpc_method *m = c->conn->srv->methods; m->path; m++)
        if (strcmp(m->path, path) == 0) {
            c->method = m;
            return;
        }
    cairn__grpc_finish(c, CAIRN__GRPC_UNIMPLEMENTED, "unknown method %s", path);
}

static void call_end(cairn__grpc_call *c)
{
    c->remote_ended = true;
    if (c->finished || !c->method)
        return;
    if (buf_avail(&c->in)) {
        cairn__grpc_finish(c, CAIRN__GRPC_INTERNAL,
                           "%s: the request ended inside a message (%zu bytes left over)",
                           c->path, buf_avail(&c->in));
        return;
    }
    if (c->method->end) {
        c->in_handler = true;
        c->method->end(c);
        c->in_handler = false;
    } else if (!c->n_msgs) {
        cairn__grpc_finish(c, CAIRN__GRPC_INVALID_ARGUMENT, "%s: the call sent no request",
                           c->path);
    }
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    (void)session;
    conn *k = ud;
    cairn__grpc_call *c = call_of(k, frame->hd.stream_id);
    if (!c)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        call_start(c);
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        call_end(c);
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *ud)
{
    (void)session, (void)flags;
    conn *k = ud;
    cairn__grpc_call *c = call_of(k, stream_id);
    if (!c || c->finished || !c->method)
        return 0;
    if (buf_add(&c->in, data, len) < 0) {
        cairn__grpc_finish(c, CAIRN__GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return 0;
    }
    call_feed(c);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *ud)
{
    conn *k = ud;
    cairn__grpc_call *c = call_of(k, stream_id);
    if (!c)
        return 0;
    if (!c->finished && error_code != NGHTTP2_NO_ERROR)
        logf_(k->srv, "%s: the client cut the call (HTTP/2 error %u)", cairn__grpc_path(c),
              error_code);
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    if (c->prev)
        c->prev->next = c->next;
    else
        k->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    k->srv->stats.open_calls--;
    call_free(c);
    return 0;
}

static ssize_t on_send(nghttp2_session *session, const uint8_t *data, size_t length, int flags,
                       void *ud)
{
    (void)session, (void)flags;
    conn *k = ud;
    ssize_t n = send(k->fd, data, length, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return NGHTTP2_ERR_WOULDBLOCK;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return n;
}

/* ---- connections -------------------------------------------------------- */

static void conn_free(conn *k)
{
    /* Closing the session closes its streams: their calls go through
     * on_stream_close, which frees them. */
    if (k->session)
        nghttp2_session_del(k->session);
    while (k->calls) {
        cairn__grpc_call *c = k->calls;
        k->calls = c->next;
        k->srv->stats.open_calls--;
        call_free(c);
    }
    if (k->fd >= 0)
        close(k->fd);
    free(k);
}

static int conn_new(cairn__grpc_server *s, int fd, cairn_error *err)
{
    conn *k = calloc(1, sizeof(*k));
    if (!k) {
        close(fd);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    k->srv = s;
    k->fd = fd;
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        conn_free(k);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    int rv = nghttp2_session_server_new(&k->session, cb, k);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) {
        k->session = NULL;
        conn_free(k);
        return cairn__err(err, -ENOMEM, "HTTP/2 session: %s", nghttp2_strerror(rv));
    }
    const nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 << 10},
    };
    nghttp2_submit_settings(k->session, NGHTTP2_FLAG_NONE, iv, CAIRN_ARRAY_SIZE(iv));
    nghttp2_session_set_local_window_size(k->session, NGHTTP2_FLAG_NONE, 0, WINDOW);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    k->next = s->conns;
    s->conns = k;
    s->n_conns++;
    s->stats.connections++;
    return 0;
}

/* Read what the connection has, feed it to nghttp2. */
static void conn_read(conn *k)
{
    uint8_t b[64 << 10];
    for (;;) {
        ssize_t n = recv(k->fd, b, sizeof(b), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            k->dead = true;
            return;
        }
        ssize_t rv = nghttp2_session_mem_recv(k->session, b, (size_t)n);
        if (rv < 0) {
            logf_(k->srv, "a connection sent bad HTTP/2: %s", nghttp2_strerror((int)rv));
            /* Tell the peer why (GOAWAY is queued by nghttp2), then drop it. */
            nghttp2_session_send(k->session);
            k->dead = true;
            return;
        }
        if ((size_t)n < sizeof(b))
            return;
    }
}

static void conn_write(conn *k)
{
    if (k->dead)
        return;
    int rv = nghttp2_session_send(k->session);
    if (rv != 0)
        k->dead = true;
}

/* ---- server ----------------------------------------------------------- */

int cairn__grpc_server_new(cairn__grpc_server **out, const cairn__grpc_method *methods, void *ud,
                           cairn_error *err)
{
    cairn__grpc_server *s = calloc(1, sizeof(*s));
    if (!s)
        return cairn__err(err, -ENOMEM, "out of memory");
    s->methods = methods;
    s->ud = ud;
    s->lfd = -1;
    *out = s;
    return 0;
}

void cairn__grpc_set_log(cairn__grpc_server *s, cairn__grpc_log_fn fn, void *ud)
{
    s->log = fn;
    s->log_ud = ud;
}

void cairn__grpc_stats_get(cairn__grpc_server *s, cairn__grpc_stats *out)
{
    *out = s->stats;
}

void cairn__grpc_server_free(cairn__grpc_server *s)
{
    if (!s)
        return;
    while (s->conns) {
        conn *k = s->conns;
        s->conns = k->next;
        conn_free(k);
    }
    if (s->lfd >= 0) {
        close(s->lfd);
        if (s->sock_path)
            unlink(s->sock_path);
    }
    free(s->sock_path);
    free(s);
}

int cairn__grpc_listen(cairn__grpc_server *s, const char *path, cairn_error *err)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(a.sun_path))
        return cairn__err(err, -ENAMETOOLONG, "socket %s: the path is longer than %zu bytes", path,
                          sizeof(a.sun_path) - 1);
    strcpy(a.sun_path, path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return cairn__err(err, -errno, "socket: %m");
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        if (errno != EADDRINUSE)
            return cairn__err(err, -errno, "socket %s: bind: %m", path);
        /* Something is there: a live server keeps it; a socket nobody
         * answers on is a leftover of a server that died, and is replaced.
         * Anything that is not a socket is never removed. */
        struct stat sb;
        if (lstat(path, &sb) < 0 || !S_ISSOCK(sb.st_mode))
            return cairn__err(err, -EEXIST, "%s exists and is not a socket; not replacing it",
                              path);
        _cleanup_close_ int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof(a)) == 0)
            return cairn__err(err, -EADDRINUSE, "socket %s: another server is listening on it",
                              path);
        if (unlink(path) < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
            return cairn__err(err, -errno, "socket %s: bind: %m", path);
    }
    if (listen(fd, 64) < 0)
        return cairn__err(err, -errno, "socket %s: listen: %m", path);
    if (!(s->sock_path = strdup(path))) {
        unlink(path);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    s->lfd = steal_fd(&fd);
    return 0;
}

int cairn__grpc_adopt(cairn__grpc_server *s, int fd, cairn_error *err)
{
    int r = conn_new(s, fd, err);
    if (r == 0)
        conn_write(s->conns);
    return r;
}

/* One round: poll, read, run handlers, write, drop dead connections.
 * Returns 1 when stop_fd is readable, 0 otherwise, < 0 on a loop error. */
static int run_once(cairn__grpc_server *s, int stop_fd, int timeout_ms, cairn_error *err)
{
    size_t n = s->n_conns + 2, i = 0;
    struct pollfd *pf = calloc(n, sizeof(*pf));
    conn **ks = calloc(n, sizeof(*ks));
    if (!pf || !ks) {
        free(pf);
        free(ks);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    if (stop_fd >= 0)
        pf[i++] = (struct pollfd){.fd = stop_fd, .events = POLLIN};
    size_t first = i;
    if (s->lfd >= 0)
        pf[i++] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
    size_t kfirst = i;
    for (conn *k = s->conns; k; k = k->next) {
        short ev = 0;
        if (nghttp2_session_want_read(k->session))
            ev |= POLLIN;
        if (nghttp2_session_want_write(k->session))
            ev |= POLLOUT;
        ks[i] = k;
        pf[i++] = (struct pollfd){.fd = k->fd, .events = ev};
    }
    int rv = poll(pf, i, timeout_ms);
    int r = 0;
    if (rv < 0) {
        if (errno != EINTR)
            r = cairn__err(err, -errno, "poll: %m");
        goto out;
    }
    if (stop_fd >= 0 && pf[0].revents) {
        r = 1;
        goto out;
    }
    if (s->lfd >= 0 && first < kfirst && (pf[first].revents & POLLIN)) {
        for (int a = 0; a < 16; a++) {
            int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd < 0)
                break;
            cairn_error e = {0};
            if (conn_new(s, fd, &e) < 0)
                logf_(s, "accept: %s", e.message);
        }
    }
    for (size_t j = kfirst; j < i; j++) {
        conn *k = ks[j];
        if (pf[j].revents & (POLLIN | POLLHUP | POLLERR))
            conn_read(k);
    }
out:
    /* Write what every connection has to say, new ones included. */
    for (conn *k = s->conns; k; k = k->next)
        conn_write(k);
    for (conn **kp = &s->conns; *kp;) {
        conn *k = *kp;
        if (k->dead || (!nghttp2_session_want_read(k->session) &&
                        !nghttp2_session_want_write(k->session))) {
            *kp = k->next;
            s->n_conns--;
            conn_free(k);
        } else {
            kp = &k->next;
        }
    }
    free(pf);
    free(ks);
    return r;
}

int cairn__grpc_step(cairn__grpc_server *s, int timeout_ms, cairn_error *err)
{
    int r = run_once(s, -1, timeout_ms, err);
    return r < 0 ? r : 0;
}

int cairn__grpc_run(cairn__grpc_server *s, int stop_fd, bool idle, cairn_error *err)
{
    for (;;) {
        int r = run_once(s, stop_fd, -1, err);
        if (r < 0)
            return r;
        if (r == 1 || (idle && !s->conns))
            break;
    }
    /* Stop: tell every client to go away, give it what is queued, close. */
    for (conn *k = s->conns; k; k = k->next) {
        nghttp2_submit_goaway(k->session, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(k->session),
                              NGHTTP2_NO_ERROR, NULL, 0);
        int fl = fcntl(k->fd, F_GETFL);
        if (fl >= 0)
            fcntl(k->fd, F_SETFL, fl & ~O_NONBLOCK);
        conn_write(k);
    }
    while (s->conns) {
        conn *k = s->conns;
        s->conns = k->next;
        s->n_conns--;
        conn_free(k);
    }
    if (s->lfd >= 0) {
        close(s->lfd);
        s->lfd = -1;
        if (s->sock_path)
            unlink(s->sock_path);
    }
    return 0;
}

uint8_t *cairn__grpc_frame(const ProtobufCMessage *m, size_t *out_len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *p = malloc(n + 5);
    if (!p)
        return NULL;
    p[0] = 0;
    p[1] = (uint8_t)(n >> 24);
    p[2] = (uint8_t)(n >> 16);
    p[3] = (uint8_t)(n >> 8);
    p[4] = (uint8_t)n;
    protobuf_c_message_pack(m, p + 5);
    *out_len = n + 5;
    return p;
}
