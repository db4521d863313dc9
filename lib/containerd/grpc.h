/* containerd/grpc.h: a small gRPC server over HTTP/2 (libnghttp2) on a unix
 * socket, enough for containerd's proxy plugins.
 *
 * gRPC on the wire: a POST to /<package>.<Service>/<Method> with
 * content-type application/grpc; each message in the DATA frames is
 * prefixed by one byte (1: compressed, which this server refuses) and a
 * 4-byte big-endian length; the answer ends with trailers carrying
 * grpc-status (0 OK, else a code of cairn__grpc_code) and grpc-message. An
 * error before any message goes out as one "trailers-only" HEADERS frame.
 *
 * One thread runs everything: the loop polls the listening socket, the
 * connections and a stop fd, and calls the handlers in turn, so handlers
 * may use the one cairn_state of the server without a lock.
 *
 * A method's handler gets each request message of its call as it is
 * complete (unary and server-streaming: one; client- and bidi-streaming:
 * each), then, once the client has half-closed, end(); it answers with
 * cairn__grpc_send() any number of times and finishes the call with
 * cairn__grpc_finish(). A producer, set by a handler, is called whenever
 * the call's output has drained, to send the next piece of a long answer
 * (a blob's bytes) without holding it all. close() is called once when the
 * stream goes, finished or not (a client cut mid-stream, a lost connection).
 */
#ifndef CAIRN_CONTAINERD_GRPC_H
#define CAIRN_CONTAINERD_GRPC_H

#include "core/core.h"

#include <protobuf-c/protobuf-c.h>

/* gRPC status codes (the ones this server sends). */
enum {
    CAIRN__GRPC_OK = 0,
    CAIRN__GRPC_CANCELLED = 1,
    CAIRN__GRPC_UNKNOWN = 2,
    CAIRN__GRPC_INVALID_ARGUMENT = 3,
    CAIRN__GRPC_NOT_FOUND = 5,
    CAIRN__GRPC_ALREADY_EXISTS = 6,
    CAIRN__GRPC_RESOURCE_EXHAUSTED = 8,
    CAIRN__GRPC_FAILED_PRECONDITION = 9,
    CAIRN__GRPC_ABORTED = 10,
    CAIRN__GRPC_OUT_OF_RANGE = 11,
    CAIRN__GRPC_UNIMPLEMENTED = 12,
    CAIRN__GRPC_INTERNAL = 13,
    CAIRN__GRPC_UNAVAILABLE = 14,
};

/* The largest request message accepted (containerd's own default). */
#define CAIRN__GRPC_MAX_MESSAGE (16u << 20)

typedef struct cairn__grpc_call cairn__grpc_call;
typedef struct cairn__grpc_server cairn__grpc_server;

typedef struct cairn__grpc_method {
    const char *path; /* "/containerd.services.content.v1.Content/Read" */
    /* Each complete request message (len bytes, may be 0). Return 0 to go on. */
    void (*message)(cairn__grpc_call *c, const uint8_t *msg, size_t len);
    /* The client half-closed (NULL: finish OK if not finished yet). */
    void (*end)(cairn__grpc_call *c);
} cairn__grpc_method;

typedef struct cairn__grpc_stats {
    uint64_t connections; /* accepted */
    uint64_t calls;       /* streams opened */
    uint64_t errors;      /* calls finished with a status other than OK */
    uint64_t open_calls;  /* calls alive now */
} cairn__grpc_stats;

/* The methods (ended by a NULL path) and the userdata their calls carry. */
CAIRN_INTERNAL int cairn__grpc_server_new(cairn__grpc_server **out, const cairn__grpc_method *methods,
                                          void *ud, cairn_error *err);
CAIRN_INTERNAL void cairn__grpc_server_free(cairn__grpc_server *s);
/* Listen on a unix socket at path (a stale socket there, one nobody
 * answers on, is replaced; a live one is -EADDRINUSE). */
CAIRN_INTERNAL int cairn__grpc_listen(cairn__grpc_server *s, const char *path, cairn_error *err);
/* Serve a connected socket (tests: one end of a socketpair). Takes fd. */
CAIRN_INTERNAL int cairn__grpc_adopt(cairn__grpc_server *s, int fd, cairn_error *err);
/* Run until stop_fd (-1: none) is readable, or, with `idle`, until no
 * connection is left. Closes the connections, removes the socket. */
CAIRN_INTERNAL int cairn__grpc_run(cairn__grpc_server *s, int stop_fd, bool idle, cairn_error *err);
/* One round of the loop, waiting up to timeout_ms (tests). */
CAIRN_INTERNAL int cairn__grpc_step(cairn__grpc_server *s, int timeout_ms, cairn_error *err);
CAIRN_INTERNAL void cairn__grpc_stats_get(cairn__grpc_server *s, cairn__grpc_stats *out);
/* A log line for the server's user (may be NULL). */
typedef void (*cairn__grpc_log_fn)(void *ud, const char *msg);
CAIRN_INTERNAL void cairn__grpc_set_log(cairn__grpc_server *s, cairn__grpc_log_fn fn, void *ud);

/* ---- in a handler ---- */
CAIRN_INTERNAL void *cairn__grpc_ud(cairn__grpc_call *c);
CAIRN_INTERNAL const char *cairn__grpc_path(cairn__grpc_call *c);
/* The call's own state for its handler (freed by the handler's close). */
CAIRN_INTERNAL void cairn__grpc_set_data(cairn__grpc_call *c, void *data, void (*close)(void *data));
CAIRN_INTERNAL void *cairn__grpc_data(cairn__grpc_call *c);
/* Queue a response message. 0, or -ENOMEM (the call is then failed). */
CAIRN_INTERNAL int cairn__grpc_send(cairn__grpc_call *c, const ProtobufCMessage *m);
/* End the call with a status (0 OK) and a message (may be NULL). Later
 * messages of the client are dropped. Idempotent: the first status wins. */
CAIRN_INTERNAL void cairn__grpc_finish(cairn__grpc_call *c, int code, const char *fmt, ...)
    CAIRN_PRINTF(3, 4);
CAIRN_INTERNAL bool cairn__grpc_finished(cairn__grpc_call *c);
/* Called when the output drained: send more (cairn__grpc_send) or finish. */
CAIRN_INTERNAL void cairn__grpc_set_producer(cairn__grpc_call *c, void (*fn)(cairn__grpc_call *c));
/* The gRPC code for a cairn return code. */
CAIRN_INTERNAL int cairn__grpc_code(int r);
/* Finish with the code and message of a cairn error. */
CAIRN_INTERNAL void cairn__grpc_fail(cairn__grpc_call *c, int r, const cairn_error *e);
/* The metadata value of a request header (NULL when absent). */
CAIRN_INTERNAL const char *cairn__grpc_header(cairn__grpc_call *c, const char *name);

/* Frame one message (tests): 5-byte prefix + body. malloc'd. */
CAIRN_INTERNAL uint8_t *cairn__grpc_frame(const ProtobufCMessage *m, size_t *out_len);

#endif
