/* http.c: the HTTP of the remote backends (remote/http.h): libcurl's multi
 * interface running a batch of requests `jobs` at a time, with retries.
 *
 * Invariants:
 * - a request is retried only when another attempt may succeed: a transport
 *   failure (connect, reset, timeout, a body cut short), a 5xx but 501, a 429, or a
 *   2xx body that does not hash to the digest expected; never another 4xx,
 *   never after our own write failed (a full disk);
 * - each attempt starts clean: the answer's buffers emptied, an output fd
 *   cut back to where the first attempt began (a fd that cannot seek is not
 *   retried once bytes went into it), the headers prepared (signed) again;
 * - the backoff doubles from CAIRN_HTTP_BACKOFF_MS up to 10 s, each delay
 *   drawn between half and all of it (jitter), so writers that failed
 *   together do not retry together; a 429 or 503 with a Retry-After
 *   (seconds or an HTTP date) waits at least that long (at most
 *   CAIRN_HTTP_RETRY_AFTER_MAX_S), as the server asked;
 * - an error names the object, the method and URL (without its query), the
 *   status and the body's error code and message (S3's XML, a registry's
 *   JSON), and never a string given to cairn__http_redact();
 * - only http and https, no redirect unless asked for.
 */
#include "remote/http.h"

#include <pthread.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

enum { Q_PENDING, Q_ACTIVE, Q_DONE };

struct cairn__http {
    CURLM *multi;
    unsigned jobs;
    unsigned retries;
    int64_t backoff_ms, stall_s, retry_after_max_s;
    uint64_t rng;
    cairn__strv secrets;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t env_num(const char *name, int64_t def, int64_t max)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end || v < 0)
        return def;
    return v > max ? max : v;
}

int cairn__http_new(unsigned jobs, cairn__http **out, cairn_error *err)
{
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return cairn__err(err, -EIO, "libcurl: %s", curl_easy_strerror(global_rc));
    cairn__http *h = calloc(1, sizeof(*h));
    if (!h || !(h->multi = curl_multi_init())) {
        free(h);
        return cairn__err(err, -ENOMEM, "libcurl: out of memory");
    }
    h->jobs = jobs ? jobs : 8;
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)h->jobs);
    h->retries = (unsigned)env_num("CAIRN_HTTP_RETRIES", 5, 100);
    h->backoff_ms = env_num("CAIRN_HTTP_BACKOFF_MS", 200, 60000);
    h->stall_s = env_num("CAIRN_HTTP_STALL_S", 60, 3600);
    h->retry_after_max_s = env_num("CAIRN_HTTP_RETRY_AFTER_MAX_S", 300, 86400);
    if (h->stall_s == 0)
        h->stall_s = 1;
    h->rng = (uint64_t)cairn__now_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)h;
    *out = h;
    return 0;
}

void cairn__http_free(cairn__http *h)
{
    if (!h)
        return;
    curl_multi_cleanup(h->multi);
    for (size_t i = 0; i < h->secrets.n; i++)
        memset(h->secrets.v[i], 0, strlen(h->secrets.v[i]));
    cairn__strv_free(&h->secrets);
    free(h);
}

int cairn__http_redact(cairn__http *h, const char *secret)
{
    if (!secret || strlen(secret) < 4)
        return 0;
    return cairn__strv_push(&h->secrets, secret);
}

void cairn__http_req_init(cairn__http_req *q)
{
    memset(q, 0, sizeof(*q));
    q->body_fd = -1;
    q->out_fd = -1;
}

void cairn__http_req_clear(cairn__http_req *q)
{
    free(q->resp);
    free(q->hdrs);
    q->resp = q->hdrs = NULL;
    q->resp_len = q->hdrs_len = 0;
}

static uint64_t rnd(cairn__http *h)
{
    /* xorshift64*: jitter only, not a secret */
    h->rng ^= h->rng >> 12;
    h->rng ^= h->rng << 25;
    h->rng ^= h->rng >> 27;
    return h->rng * 0x2545F4914F6CDD1DULL;
}

/* ---- XML and error bodies ------------------------------------------------ */

static void xml_decode(char *s)
{
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    char *o = s;
    for (char *p = s; *p;) {
        if (*p == '&') {
            bool done = false;
            for (size_t i = 0; i < CAIRN_ARRAY_SIZE(ents) && !done; i++) {
                size_t n = strlen(ents[i].ent);
                if (!strncmp(p, ents[i].ent, n)) {
                    *o++ = ents[i].c;
                    p += n;
                    done = true;
                }
            }
            if (!done && p[1] == '#') {
                char *end;
                long c = p[2] == 'x' ? strtol(p + 3, &end, 16) : strtol(p + 2, &end, 10);
                if (*end == ';' && c > 0 && c < 128) {
                    *o++ = (char)c;
                    p = end + 1;
                    done = true;
                }
            }
            if (done)
                continue;
        }
        *o++ = *p++;
    }
    *o = 0;
}

char *cairn__xml_next(const char **pos, const char *end, const char *tag)
{
    char open[128], close[130];
    if (snprintf(open, sizeof(open), "<%s>", tag) >= (int)sizeof(open))
        return NULL;
    snprintf(close, sizeof(close), "</%s>", tag);
    size_t on = strlen(open), cn = strlen(close);
    for (const char *p = *pos; p + on <= end; p++) {
        if (memcmp(p, open, on) != 0)
            continue;
        const char *v = p + on;
        for (const char *e = v; e + cn <= end; e++) {
            if (memcmp(e, close, cn) != 0)
                continue;
            char *s = strndup(v, (size_t)(e - v));
            if (!s)
                return NULL;
            xml_decode(s);
            *pos = e + cn;
            return s;
        }
        return NULL;
    }
    return NULL;
}

int cairn__xml_block(const char **pos, const char *end, const char *tag, const char **start,
                     const char **stop)
{
    char open[128], close[130];
    if (snprintf(open, sizeof(open), "<%s>", tag) >= (int)sizeof(open))
        return 0;
    snprintf(close, sizeof(close), "</%s>", tag);
    size_t on = strlen(open), cn = strlen(close);
    const char *p = memmem(*pos, (size_t)(end - *pos), open, on);
    if (!p)
        return 0;
    const char *e = memmem(p + on, (size_t)(end - p - on), close, cn);
    if (!e)
        return 0;
    *start = p + on;
    *stop = e;
    *pos = e + cn;
    return 1;
}

/* "Code: message" from an error body (S3 XML or a registry's JSON), or NULL. */
static char *body_error(const cairn__http_req *q)
{
    if (!q->resp || !q->resp_len)
        return NULL;
    const char *b = q->resp, *end = q->resp + q->resp_len;
    while (b < end && (*b == ' ' || *b == '\n' || *b == '\r' || *b == '\t'))
        b++;
    char *out = NULL;
    if (b < end && *b == '<') {
        const char *p = b;
        _cleanup_free_ char *code = cairn__xml_next(&p, end, "Code");
        p = b;
        _cleanup_free_ char *msg = cairn__xml_next(&p, end, "Message");
        if (code && asprintf(&out, "%s%s%s", code, msg ? ": " : "", msg ? msg : "") < 0)
            out = NULL;
    } else if (b < end && *b == '{') {
        json_t *j = json_loadb(b, (size_t)(end - b), 0, NULL);
        json_t *e = json_array_get(json_object_get(j, "errors"), 0);
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        if (code && asprintf(&out, "%s%s%s", code, msg ? ": " : "", msg ? msg : "") < 0)
            out = NULL;
        json_decref(j);
    }
    if (out && strlen(out) > 300)
        strcpy(out + 297, "...");
    return out;
}

static void redact(cairn__http *h, cairn_error *err)
{
    if (!err)
        return;
    for (size_t i = 0; i < h->secrets.n; i++) {
        const char *s = h->secrets.v[i];
        size_t n = strlen(s);
        char *p;
        while ((p = strstr(err->message, s))) {
            memmove(p + 3, p + n, strlen(p + n) + 1);
            memcpy(p, "***", 3);
        }
    }
}

/* ---- callbacks ----------------------------------------------------------- */

static bool is_2xx(long s)
{
    return s >= 200 && s < 300;
}

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
    cairn__http_req *q = ud;
    size_t len = size * n;
    if (len >= 5 && !memcmp(buf, "HTTP/", 5))
        q->hdrs_len = 0; /* a new answer (after a 100, a redirect) */
    if (q->hdrs_len + len > 256 * 1024)
        return len; /* ignore a flood of headers */
    char *p = realloc(q->hdrs, q->hdrs_len + len + 1);
    if (!p)
        return 0;
    memcpy(p + q->hdrs_len, buf, len);
    q->hdrs_len += len;
    p[q->hdrs_len] = 0;
    q->hdrs = p;
    return len;
}

static size_t on_write(char *buf, size_t size, size_t n, void *ud)
{
    cairn__http_req *q = ud;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(q->easy_, CURLINFO_RESPONSE_CODE, &status);
    if (q->out_fd >= 0 && is_2xx(status)) {
        if (cairn__write_all(q->out_fd, buf, len) < 0) {
            q->werr_ = true;
            return 0;
        }
    } else {
        size_t max = q->resp_max ? q->resp_max : 16u << 20;
        if (q->resp_len + len > max) {
            q->werr_ = true;
            return 0;
        }
        char *p = realloc(q->resp, q->resp_len + len + 1);
        if (!p) {
            q->werr_ = true;
            return 0;
        }
        memcpy(p + q->resp_len, buf, len);
        q->resp_len += len;
        p[q->resp_len] = 0;
        q->resp = p;
    }
    if (q->hash_ && is_2xx(status))
        cairn__sha256_update(q->hash_, buf, len);
    q->got += len;
    if (q->progress && (q->out_fd >= 0 || q->body_size == 0))
        q->progress(q->progress_ud, q->got);
    return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
    cairn__http_req *q = ud;
    size_t want = size * n;
    uint64_t left = q->body_size - q->read_pos_;
    if (want > left)
        want = (size_t)left;
    if (want == 0)
        return 0;
    if (q->body_fd >= 0) {
        ssize_t r = pread(q->body_fd, buf, want, (off_t)(q->body_off + q->read_pos_));
        if (r <= 0)
            return CURL_READFUNC_ABORT;
        want = (size_t)r;
    } else {
        memcpy(buf, (const char *)q->body + q->read_pos_, want);
    }
    q->read_pos_ += want;
    if (q->progress)
        q->progress(q->progress_ud, q->read_pos_);
    return want;
}

static int on_seek(void *ud, curl_off_t off, int origin)
{
    cairn__http_req *q = ud;
    if (origin != SEEK_SET || off < 0 || (uint64_t)off > q->body_size)
        return CURL_SEEKFUNC_CANTSEEK;
    q->read_pos_ = (uint64_t)off;
    return CURL_SEEKFUNC_OK;
}

/* ---- one attempt --------------------------------------------------------- */

static void attempt_end(cairn__http_req *q)
{
    if (q->easy_)
        curl_easy_cleanup(q->easy_);
    curl_slist_free_all(q->slist_);
    q->easy_ = q->slist_ = NULL;
    cairn__sha256_free(q->hash_);
    q->hash_ = NULL;
}

static int attempt_start(cairn__http *h, cairn__http_req *q, cairn_error *err)
{
    cairn__http_req_clear(q);
    q->status = 0;
    q->got = 0;
    q->read_pos_ = 0;
    q->werr_ = false;
    if (q->out_fd >= 0) {
        if (q->attempts == 0)
            q->out_start_ = lseek(q->out_fd, 0, SEEK_CUR);
        else if (q->out_start_ >= 0 && (lseek(q->out_fd, q->out_start_, SEEK_SET) < 0 ||
                                        ftruncate(q->out_fd, q->out_start_) < 0))
            return cairn__err(err, -errno, "%s: a retry cannot rewind its output: %m", q->what);
    }
    q->attempts++;
    cairn__strv hv = {0};
    int r = q->prepare ? q->prepare(q->ud, q, &hv, err) : 0;
    if (r < 0) {
        cairn__strv_free(&hv);
        return r;
    }
    CURL *e = curl_easy_init();
    struct curl_slist *sl = NULL;
    bool oom = !e;
    for (size_t i = 0; i < hv.n && !oom; i++) {
        struct curl_slist *n = curl_slist_append(sl, hv.v[i]);
        oom = !n;
        sl = n ? n : sl;
    }
    const char *fixed[] = {"Expect:", "Accept:"};
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(fixed) && !oom; i++) {
        struct curl_slist *n = curl_slist_append(sl, fixed[i]);
        oom = !n;
        sl = n ? n : sl;
    }
    cairn__strv_free(&hv);
    _cleanup_free_ char *ct = NULL;
    if (!oom && asprintf(&ct, "Content-Type:%s%s", q->content_type ? " " : "",
                         q->content_type ? q->content_type : "") < 0) {
        ct = NULL;
        oom = true;
    }
    if (!oom) {
        struct curl_slist *n = curl_slist_append(sl, ct);
        oom = !n;
        sl = n ? n : sl;
    }
    if (q->expect && !oom)
        oom = !(q->hash_ = cairn__sha256_new());
    q->easy_ = e;
    q->slist_ = sl;
    if (oom) {
        attempt_end(q);
        return cairn__err(err, -ENOMEM, "%s: out of memory", q->what);
    }
    curl_easy_setopt(e, CURLOPT_URL, q->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)h->stall_s);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, q->follow ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "cairn/" CAIRN_VERSION_STRING);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, sl);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, q);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(e, CURLOPT_PRIVATE, q);
    bool has_body = q->body || q->body_fd >= 0;
    if (has_body) {
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, q);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, q);
    }
    if (!strcmp(q->method, "HEAD")) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(q->method, "PUT") || !strcmp(q->method, "PATCH")) {
        /* PATCH (a registry's upload chunk) sends its body as PUT does */
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        if (q->method[1] == 'A')
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PATCH");
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(has_body ? q->body_size : 0));
        if (!has_body) {
            curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(e, CURLOPT_READDATA, q);
        }
    } else if (!strcmp(q->method, "POST")) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(has_body ? q->body_size : 0));
        if (!has_body)
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    } else if (strcmp(q->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, q->method);
    }
    return 0;
}

/* The URL without its query, for messages. */
static void url_short(const char *url, char *out, size_t n)
{
    size_t len = strcspn(url, "?");
    snprintf(out, n, "%.*s%s", (int)(len > 200 ? 200 : len), url, len > 200 ? "..." : "");
}

static bool transient(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
        return true;
    default:
        return false;
    }
}

static int curl_code_errno(CURLcode c)
{
    switch (c) {
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
        return -EHOSTUNREACH;
    case CURLE_PARTIAL_FILE:
        return CAIRN_E_TRUNCATED;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        return -ECONNRESET;
    default:
        return -EIO;
    }
}

static int status_errno(long s)
{
    if (s == 404)
        return -ENOENT;
    if (s == 401 || s == 403)
        return -EACCES;
    if (s == 409 || s == 412)
        return -EEXIST;
    if (s == 416)
        return -ERANGE;
    return -EIO;
}

/* Retry-After of the answer: delta-seconds or an HTTP date; -1 when none
 * or unreadable. */
static int64_t retry_after_ms(const cairn__http_req *q)
{
    _cleanup_free_ char *v = cairn__http_header(q, "Retry-After");
    if (!v || !*v)
        return -1;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!*end && !errno && end != v)
        return n < 0 ? -1 : n > INT64_MAX / 1000 ? INT64_MAX / 1000 : n * 1000;
    struct tm tm = {0};
    const char *e = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!e || *e)
        return -1;
    int64_t at = (int64_t)timegm(&tm) * 1000, now = cairn__now_ns() / 1000000;
    return at > now ? at - now : 0;
}

/* An attempt ended with curl's code c: 1 to retry, 0 when final (rc, err set). */
static int attempt_done(cairn__http *h, cairn__http_req *q, CURLcode c)
{
    char u[256];
    url_short(q->url, u, sizeof(u));
    long status = 0;
    curl_easy_getinfo(q->easy_, CURLINFO_RESPONSE_CODE, &status);
    q->status = status;
    bool can_retry = q->attempts <= h->retries;
    if (can_retry && q->out_fd >= 0 && q->out_start_ < 0 && q->got > 0)
        can_retry = false; /* the bytes went into a pipe */
    q->retry_after_ms_ = (status == 429 || status == 503) ? retry_after_ms(q) : -1;
    char digest[CAIRN_DIGEST_LEN + 1] = "";
    if (c == CURLE_OK && q->hash_ && is_2xx(status))
        cairn__sha256_final(q->hash_, digest);
    attempt_end(q);

    if (c != CURLE_OK) {
        if (q->werr_) {
            q->rc = cairn__err(&q->err, q->out_fd >= 0 && is_2xx(status) ? -EIO : -EFBIG,
                               "%s: %s %s: %s", q->what, q->method, u,
                               q->out_fd >= 0 && is_2xx(status) ? "cannot write what it sent"
                                                                : "the answer is too big");
            return 0;
        }
        if (transient(c) && can_retry)
            return 1;
        q->rc = cairn__err(&q->err, curl_code_errno(c), "%s: %s %s: %s (%u attempts)", q->what,
                           q->method, u, curl_easy_strerror(c), q->attempts);
        return 0;
    }
    if (is_2xx(status)) {
        if (q->expect && strcmp(digest, q->expect) != 0) {
            if (can_retry)
                return 1;
            q->rc = cairn__err(&q->err, CAIRN_E_MISMATCH,
                               "%s: %s %s: the server sent bytes that hash to %s (%u attempts)",
                               q->what, q->method, u, digest, q->attempts);
            return 0;
        }
        q->rc = 0;
        return 0;
    }
    if (q->allow && status == q->allow) {
        q->rc = 0;
        return 0;
    }
    /* 501: the server does not do it, however often asked */
    bool again = (status >= 500 && status != 501) || status == 429;
    if (again && can_retry)
        return 1;
    _cleanup_free_ char *be = body_error(q);
    if (!be && (status == 401 || status == 403)) /* a HEAD's answer has no body to say why */
        be = strdup(status == 401 ? "Unauthorized: credentials missing or not accepted"
                                  : "Forbidden: wrong or expired credentials, or no permission");
    char tries[32] = "";
    if (q->attempts > 1)
        snprintf(tries, sizeof(tries), " (%u attempts)", q->attempts);
    q->rc = cairn__err(&q->err, status == 501 ? -EOPNOTSUPP : status_errno(status),
                       "%s: %s %s: the server answered %ld%s%s%s%s", q->what, q->method, u, status,
                       be ? " (" : "", be ? be : "", be ? ")" : "", tries);
    return 0;
}

int cairn__http_run(cairn__http *h, cairn__http_req **reqs, size_t n, cairn_error *err)
{
    for (size_t i = 0; i < n; i++) {
        reqs[i]->state_ = Q_PENDING;
        reqs[i]->not_before_ = 0;
        reqs[i]->attempts = 0;
        reqs[i]->rc = 0;
        reqs[i]->err.code = 0;
        reqs[i]->err.message[0] = 0;
    }
    size_t left = n, active = 0;
    int first = 0;
    size_t first_i = 0;
    while (left > 0) {
        int64_t now = mono_ms();
        int64_t wake = now + 1000;
        /* start what may start: the queue in order, retries when due */
        for (size_t i = 0; i < n && active < h->jobs; i++) {
            cairn__http_req *q = reqs[i];
            if (q->state_ != Q_PENDING)
                continue;
            if (first) {
                q->state_ = Q_DONE;
                q->rc = cairn__err(&q->err, -ECANCELED, "%s: not sent", q->what);
                left--;
                continue;
            }
            if (q->not_before_ > now) {
                if (q->not_before_ < wake)
                    wake = q->not_before_;
                continue;
            }
            int r = attempt_start(h, q, &q->err);
            if (r == 0 && curl_multi_add_handle(h->multi, q->easy_) != CURLM_OK) {
                attempt_end(q);
                r = cairn__err(&q->err, -ENOMEM, "%s: libcurl: cannot add the transfer", q->what);
            }
            if (r < 0) {
                q->rc = r;
                q->state_ = Q_DONE;
                left--;
                if (!first) {
                    first = r;
                    first_i = i;
                }
                continue;
            }
            q->state_ = Q_ACTIVE;
            active++;
        }
        if (left == 0)
            break;
        int running = 0;
        if (active > 0)
            curl_multi_perform(h->multi, &running);
        CURLMsg *m;
        int msgs;
        while ((m = curl_multi_info_read(h->multi, &msgs))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            CURL *e = m->easy_handle;
            CURLcode c = m->data.result;
            cairn__http_req *q = NULL;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&q);
            curl_multi_remove_handle(h->multi, e);
            active--;
            size_t qi = 0;
            while (qi < n && reqs[qi] != q)
                qi++;
            if (attempt_done(h, q, c) == 1) {
                unsigned k = q->attempts - 1;
                int64_t d = h->backoff_ms << (k > 10 ? 10 : k);
                if (d > 10000)
                    d = 10000;
                d = d / 2 + (d > 1 ? (int64_t)(rnd(h) % (uint64_t)(d / 2 + 1)) : 0);
                /* the server said when: no sooner (and not past our bound) */
                if (q->retry_after_ms_ >= 0) {
                    int64_t ra = q->retry_after_ms_;
                    if (ra > h->retry_after_max_s * 1000)
                        ra = h->retry_after_max_s * 1000;
                    if (ra > d)
                        d = ra;
                }
                q->not_before_ = mono_ms() + d;
                q->state_ = Q_PENDING;
                /* wake for it: the wait below would otherwise sleep out the
                 * loop's full second (found by the Retry-After test) */
                if (q->not_before_ < wake)
                    wake = q->not_before_;
                continue;
            }
            q->state_ = Q_DONE;
            left--;
            if (q->rc < 0 && !first) {
                first = q->rc;
                first_i = qi;
            }
        }
        if (left == 0)
            break;
        now = mono_ms();
        int64_t t = wake - now;
        if (t < 0)
            t = 0;
        if (active > 0)
            curl_multi_poll(h->multi, NULL, 0, (int)(t > 1000 ? 1000 : t), NULL);
        else if (t > 0) {
            struct timespec ts = {t / 1000, (t % 1000) * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    if (!first)
        return 0;
    for (size_t i = 0; i < n; i++)
        redact(h, &reqs[i]->err);
    if (err)
        *err = reqs[first_i]->err;
    return first;
}

int cairn__http_one(cairn__http *h, cairn__http_req *q, cairn_error *err)
{
    return cairn__http_run(h, &q, 1, err);
}

char *cairn__http_header(const cairn__http_req *q, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = q->hdrs; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (!eol)
            eol = p + strlen(p);
        if ((size_t)(eol - p) > n && !strncasecmp(p, name, n) && p[n] == ':') {
            const char *v = p + n + 1, *e = eol;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                e--;
            return strndup(v, (size_t)(e - v));
        }
        p = *eol ? eol + 1 : eol;
    }
    return NULL;
}
