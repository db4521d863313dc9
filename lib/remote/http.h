/* remote/http.h: HTTP for the backends of remotes (s3://, oci://), through
 * libcurl: requests run N at a time on one multi handle, retried with
 * exponential backoff and jitter on 5xx, 429, resets and timeouts (never on
 * another 4xx), bodies streamed from and to fds. Private to lib/remote/.
 *
 * Tuning from the environment (the tests make them small):
 *   CAIRN_HTTP_RETRIES     retries after the first attempt (default 5)
 *   CAIRN_HTTP_BACKOFF_MS  the first backoff (default 200; doubles, to 10 s)
 *   CAIRN_HTTP_STALL_S     a transfer moving no byte this long is a timeout
 *                          (default 60); connecting: 10 s
 *   CAIRN_HTTP_RETRY_AFTER_MAX_S  the longest Retry-After honoured (default
 *                          300): a 429 or 503 that says when to come back
 *                          is retried no sooner, nor later than this
 */
#ifndef CAIRN_REMOTE_HTTP_H
#define CAIRN_REMOTE_HTTP_H

#include "util/util.h"

typedef struct cairn__http cairn__http;
typedef struct cairn__http_req cairn__http_req;

/* Headers for one attempt (signing happens here, once an attempt): lines
 * "Name: value" pushed to `headers`. 0 or a negative code with err set. */
typedef int (*cairn__http_prepare)(void *ud, cairn__http_req *req, cairn__strv *headers,
                                   cairn_error *err);

struct cairn__http_req {
    /* set by the caller (cairn__http_req_init() first) */
    const char *method; /* GET HEAD PUT PATCH POST DELETE */
    const char *url;    /* never with a credential in it */
    const char *what;   /* the object, for messages ("blob sha256:...") */
    const void *body;   /* a body in memory of body_size bytes, or */
    int body_fd;        /* body_size bytes of body_fd from body_off (-1: none) */
    uint64_t body_off, body_size;
    int out_fd;               /* a 2xx body streamed into it from its offset (-1: into resp) */
    size_t resp_max;          /* most bytes kept in resp (0: 16 MiB) */
    const char *expect;       /* a 2xx body must hash to this digest (retried, then
                               * CAIRN_E_MISMATCH) */
    long allow;               /* a status that is an answer, not an error (404 for HEAD) */
    bool follow;              /* follow redirects */
    const char *content_type; /* of the body (NULL: none; a POST is never sent as a form) */
    cairn__http_prepare prepare;
    void *ud;
    void (*progress)(void *ud, uint64_t done);
    void *progress_ud;

    /* the answer */
    int rc;      /* 0: 2xx or `allow`; else the code of `err` */
    long status; /* the last status, 0 when none came */
    char *resp;  /* the body (an error's body with out_fd too), NUL-terminated */
    size_t resp_len;
    char *hdrs; /* the response's header lines */
    size_t hdrs_len;
    uint64_t got; /* body bytes of the last attempt */
    unsigned attempts;
    cairn_error err;

    /* private to http.c */
    int state_;
    int64_t not_before_;
    int64_t retry_after_ms_; /* the server's Retry-After of the last attempt, -1: none */
    off_t out_start_;
    uint64_t read_pos_;
    bool werr_;
    void *easy_, *slist_;
    cairn__sha256 *hash_;
};

CAIRN_INTERNAL void cairn__http_req_init(cairn__http_req *q);
/* Free what the answer holds (resp, hdrs); the request may be run again. */
CAIRN_INTERNAL void cairn__http_req_clear(cairn__http_req *q);

/* jobs: parallel requests (0: 8). */
CAIRN_INTERNAL int cairn__http_new(unsigned jobs, cairn__http **out, cairn_error *err);
CAIRN_INTERNAL void cairn__http_free(cairn__http *h);
/* A string that no message may show (a secret key, a token): replaced by
 * "***" in every error this handle reports. */
CAIRN_INTERNAL int cairn__http_redact(cairn__http *h, const char *secret);

/* Run n requests, `jobs` at a time, each retried as the header says. Each
 * gets its rc and answer; returns 0 when every rc is 0, else the first
 * failure's code with err set to its message (the object, the method and
 * URL, the server's status and the error code and message of its body). After
 * a failure no new request starts (those get rc -ECANCELED). */
CAIRN_INTERNAL int cairn__http_run(cairn__http *h, cairn__http_req **reqs, size_t n,
                                   cairn_error *err);
/* One request. */
CAIRN_INTERNAL int cairn__http_one(cairn__http *h, cairn__http_req *q, cairn_error *err);

/* A response header's value (first of that name, any case), malloc'd, or NULL. */
CAIRN_INTERNAL char *cairn__http_header(const cairn__http_req *q, const char *name);

/* XML, as S3 answers: the text of the first <tag> element at or after *pos
 * within [*pos, end), entities decoded, malloc'd; *pos moves past its end
 * tag. NULL when there is none (or no memory). */
CAIRN_INTERNAL char *cairn__xml_next(const char **pos, const char *end, const char *tag);

/* The raw inside of the next <tag> element in [*pos, end): 1 and
 * [*start, *stop) set, *pos past it; 0 when there is none. */
CAIRN_INTERNAL int cairn__xml_block(const char **pos, const char *end, const char *tag,
                                    const char **start, const char **stop);

#endif
