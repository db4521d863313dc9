/* s3.c: the s3:// backend of remotes (remote/backend.h): `s3://bucket/prefix`
 * on AWS S3 or any S3-compatible store, the layout of backend.h under the
 * prefix:
 *
 *   <prefix>/oci-layout                    {"imageLayoutVersion": "1.0.0"}
 *   <prefix>/blobs/sha256/<hex>            every object
 *   <prefix>/states/<tag>/<manifest hex>   one key a state (its manifest)
 *
 * Configuration as the AWS tools take it: AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, else the [AWS_PROFILE or
 * default] section of AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials;
 * the region from the conf, AWS_REGION, AWS_DEFAULT_REGION (us-east-1); the
 * endpoint from the conf, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (path-style
 * requests), else https://<bucket>.s3.<region>.amazonaws.com. Every request
 * is signed by remote/sigv4.c and sent by remote/http.c.
 *
 * Invariants:
 * - a blob's key holds the bytes of its name: a single PUT is signed with
 *   the digest's hex as its payload hash (S3 refuses other bytes), a part
 *   with its own SHA-256; a GET is hashed as it streams and retried, then
 *   refused, when the bytes differ;
 * - a blob of CAIRN_S3_MULTIPART_THRESHOLD bytes (64 MiB) or more goes up in
 *   parts of CAIRN_S3_PART_SIZE (16 MiB, more when 10,000 parts would not
 *   do), in parallel; a rerun finds the upload in progress for the key
 *   (ListMultipartUploads), keeps each part already there whose size and MD5
 *   (its ETag) are those of ours (ListParts), and sends only the rest: two
 *   writers of one blob write the same bytes, so sharing an upload is safe;
 * - a state's key is written after its manifest's bytes are checked against
 *   the manifest digest, and only when the caller has stored every object
 *   (publish last; the backend never reads a state it did not verify);
 * - no credential is in a URL, a message or a file this backend writes: the
 *   secret key and the session token are redacted from every error.
 */
#include "remote/backend.h"
#include "remote/http.h"
#include "remote/sigv4.h"

#include <ctype.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>

struct cairn__remote {
    char *bucket, *prefix; /* prefix: "" or "a/b/" (with its slash) */
    char *base;            /* scheme://host[:port][/bucket]: a key follows after "/" */
    char *host;            /* the Host header */
    char *path_base;       /* "/bucket" (path style) or "" */
    char *ak, *sk, *token, *region;
    cairn__http *http;
    unsigned jobs;
    uint64_t threshold, part_size;
    long max_keys;
    bool have_list; /* blobs_have by listing however few (a test's choice) */
    bool have_head; /* by HEAD however many */
};

#define MIB (1024ULL * 1024)

/* ---- requests -------------------------------------------------------------- */

typedef struct s3op {
    cairn__http_req q;
    cairn__remote *r;
    char *url, *path, *what;
    cairn__kv query[4];
    char *qv[4];
    size_t nq;
    char payload[65];
} s3op;

static int op_prepare(void *ud, cairn__http_req *req, cairn__strv *headers, cairn_error *err)
{
    s3op *op = ud;
    cairn__remote *r = op->r;
    cairn__sigv4_key key = {r->ak, r->sk, r->token, r->region, "s3"};
    int e = cairn__sigv4_sign(&key, req->method, r->host, op->path, op->query, op->nq, NULL, 0,
                              op->payload, cairn__now(), headers);
    if (e < 0)
        return cairn__err(err, e, "%s: signing: %m", op->what);
    return 0;
}

/* A request for `key` (under the bucket, the prefix included), with nq
 * query parameters name, value (value NULL: "name="). */
static int op_init(cairn__remote *r, s3op *op, const char *method, const char *key,
                   const char *what, size_t nq, const char *const *q, cairn_error *err)
{
    memset(op, 0, sizeof(*op));
    cairn__http_req_init(&op->q);
    op->r = r;
    strcpy(op->payload, CAIRN_SIGV4_UNSIGNED);
    char *enc = NULL;
    size_t elen = 0;
    _cleanup_free_ char *qs = NULL;
    int e = cairn__uri_encode(&enc, &elen, key, true);
    for (size_t i = 0; i < nq && e == 0; i++) {
        op->qv[i] = q[2 * i + 1] ? strdup(q[2 * i + 1]) : NULL;
        if (q[2 * i + 1] && !op->qv[i])
            e = -ENOMEM;
        op->query[i].name = q[2 * i];
        op->query[i].value = op->qv[i];
        op->nq++;
    }
    if (e == 0)
        e = cairn__sigv4_url_query(op->query, op->nq, &qs);
    /* the bucket itself (a listing): "/bucket" path-style, "/" virtual-hosted */
    const char *slash = *enc || !*r->path_base ? "/" : "";
    if (e == 0 && (asprintf(&op->path, "%s%s%s", r->path_base, slash, enc) < 0 ||
                   asprintf(&op->url, "%s%s%s%s%s", r->base, slash, enc, *qs ? "?" : "", qs) < 0 ||
                   !(op->what = strdup(what))))
        e = -ENOMEM;
    free(enc);
    if (e < 0)
        return cairn__err(err, e, "%s: out of memory", what);
    op->q.method = method;
    op->q.url = op->url;
    op->q.what = op->what;
    op->q.prepare = op_prepare;
    op->q.ud = op;
    return 0;
}

static void op_free(s3op *op)
{
    cairn__http_req_clear(&op->q);
    for (size_t i = 0; i < op->nq; i++)
        free(op->qv[i]);
    free(op->url);
    free(op->path);
    free(op->what);
    memset(op, 0, sizeof(*op));
}

static char *blob_key(cairn__remote *r, const char *digest)
{
    char *k;
    return asprintf(&k, "%sblobs/sha256/%s", r->prefix, cairn__digest_hex(digest)) < 0 ? NULL : k;
}

/* ---- configuration --------------------------------------------------------- */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static uint64_t env_size(const char *name, uint64_t def, uint64_t min)
{
    const char *s = env(name);
    if (!s)
        return def;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v < min)
        return def;
    return v;
}

static void trim(char *s)
{
    char *b = s;
    while (*b == ' ' || *b == '\t')
        b++;
    memmove(s, b, strlen(b) + 1);
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = 0;
}

/* The keys of the profile's section of the shared credentials file. */
static int read_credentials_file(cairn__remote *r, cairn_error *err)
{
    _cleanup_free_ char *path = NULL;
    const char *f = env("AWS_SHARED_CREDENTIALS_FILE");
    const char *home = env("HOME");
    if (f)
        path = strdup(f);
    else if (home && asprintf(&path, "%s/.aws/credentials", home) < 0)
        path = NULL;
    if (!path)
        return 0;
    const char *profile = env("AWS_PROFILE");
    if (!profile)
        profile = "default";
    _cleanup_fclose_ FILE *fp = fopen(path, "re");
    if (!fp)
        return errno == ENOENT ? 0 : cairn__err(err, -errno, "s3: %s: %m", path);
    char line[4096];
    bool in = false, found = false;
    while (fgets(line, sizeof(line), fp)) {
        trim(line);
        if (line[0] == '#' || line[0] == ';' || !line[0])
            continue;
        if (line[0] == '[') {
            char *e = strchr(line, ']');
            if (e)
                *e = 0;
            char *name = line + 1;
            trim(name);
            in = !strcmp(name, profile);
            found |= in;
            continue;
        }
        char *eq = strchr(line, '=');
        if (!in || !eq)
            continue;
        *eq = 0;
        char *k = line, *v = eq + 1;
        trim(k);
        trim(v);
        char **dst = !strcmp(k, "aws_access_key_id")       ? &r->ak
                     : !strcmp(k, "aws_secret_access_key") ? &r->sk
                     : !strcmp(k, "aws_session_token")     ? &r->token
                     : !strcmp(k, "region")                ? &r->region
                                                           : NULL;
        if (dst && !*dst && !(*dst = strdup(v)))
            return cairn__err(err, -ENOMEM, "out of memory");
    }
    if (!found && env("AWS_PROFILE"))
        return cairn__err(err, -ENOENT, "s3: profile %s: not in %s", profile, path);
    return 0;
}

static bool bucket_ok(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63)
        return false;
    for (const char *p = b; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' || *p == '.' ||
              *p == '_'))
            return false;
    return true;
}

static void s3_close(cairn__remote *r)
{
    if (!r)
        return;
    cairn__http_free(r->http);
    if (r->sk)
        memset(r->sk, 0, strlen(r->sk));
    if (r->token)
        memset(r->token, 0, strlen(r->token));
    free(r->bucket);
    free(r->prefix);
    free(r->base);
    free(r->host);
    free(r->path_base);
    free(r->ak);
    free(r->sk);
    free(r->token);
    free(r->region);
    free(r);
}

static int s3_open(const cairn__remote_conf *conf, cairn__remote **out, cairn_error *err)
{
    const char *u = conf->url;
    if (strncmp(u, "s3://", 5) != 0)
        return cairn__err(err, -EINVAL, "remote %s: not an s3:// URL", u);
    const char *b = u + 5;
    size_t bl = strcspn(b, "/");
    cairn__remote *r = calloc(1, sizeof(*r));
    if (!r)
        return cairn__err(err, -ENOMEM, "out of memory");
    int e = 0;
    if (!(r->bucket = strndup(b, bl)))
        e = -ENOMEM;
    else if (!bucket_ok(r->bucket))
        e = cairn__err(err, -EINVAL, "remote %s: not a bucket name: %s", u, r->bucket);
    if (e == 0) {
        /* the prefix, without empty components, with its trailing slash */
        const char *p = b + bl;
        size_t cap = strlen(p) + 2, n = 0;
        r->prefix = malloc(cap);
        if (!r->prefix)
            e = -ENOMEM;
        while (e == 0 && *p) {
            while (*p == '/')
                p++;
            size_t c = strcspn(p, "/");
            if (!c)
                break;
            if ((c == 1 && p[0] == '.') || (c == 2 && p[0] == '.' && p[1] == '.'))
                e = cairn__err(err, -EINVAL, "remote %s: '.' or '..' in the prefix", u);
            memcpy(r->prefix + n, p, c);
            n += c;
            r->prefix[n++] = '/';
            p += c;
        }
        if (r->prefix)
            r->prefix[n] = 0;
    }
    if (e == 0) {
        const char *ak = env("AWS_ACCESS_KEY_ID"), *sk = env("AWS_SECRET_ACCESS_KEY");
        if (ak && sk) {
            const char *tok = env("AWS_SESSION_TOKEN");
            if (!(r->ak = strdup(ak)) || !(r->sk = strdup(sk)) ||
                (tok && !(r->token = strdup(tok))))
                e = -ENOMEM;
        } else {
            e = read_credentials_file(r, err);
        }
    }
    if (e == 0 && (!r->ak || !r->sk))
        e = cairn__err(err, -EACCES,
                       "remote %s: no credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                       "or ~/.aws/credentials)",
                       u);
    if (e == 0) {
        const char *reg = conf->region ? conf->region : env("AWS_REGION");
        if (!reg)
            reg = env("AWS_DEFAULT_REGION");
        if (reg) {
            free(r->region);
            r->region = strdup(reg);
        } else if (!r->region) {
            r->region = strdup("us-east-1");
        }
        if (!r->region)
            e = -ENOMEM;
    }
    if (e == 0) {
        const char *ep = conf->endpoint ? conf->endpoint : env("AWS_ENDPOINT_URL_S3");
        if (!ep)
            ep = env("AWS_ENDPOINT_URL");
        if (ep) {
            bool https = !strncmp(ep, "https://", 8);
            if (!https && strncmp(ep, "http://", 7) != 0)
                e = cairn__err(err, -EINVAL, "remote %s: endpoint %s: not http:// or https://", u,
                               ep);
            const char *h = ep + (https ? 8 : 7);
            size_t hl = strcspn(h, "/?#");
            if (e == 0 && (hl == 0 || memchr(h, '@', hl)))
                e = cairn__err(err, -EINVAL, "remote %s: endpoint: a host, without credentials", u);
            if (e == 0 && !https && !conf->insecure) {
                /* plain http only to this machine */
                bool loop = !strncmp(h, "127.", 4) || !strncmp(h, "localhost", 9) ||
                            !strncmp(h, "[::1]", 5);
                if (!loop)
                    e = cairn__err(err, -EPERM,
                                   "remote %s: endpoint %.*s is plain http to another host "
                                   "(--insecure to allow it)",
                                   u, (int)hl, h);
            }
            if (e == 0 && (!(r->host = strndup(h, hl)) ||
                           asprintf(&r->base, "%.*s/%s", (int)(h - ep + hl), ep, r->bucket) < 0 ||
                           asprintf(&r->path_base, "/%s", r->bucket) < 0))
                e = -ENOMEM;
        } else if (asprintf(&r->host, "%s.s3.%s.amazonaws.com", r->bucket, r->region) < 0 ||
                   asprintf(&r->base, "https://%s", r->host) < 0 || !(r->path_base = strdup(""))) {
            e = -ENOMEM;
        }
    }
    if (e == 0)
        e = cairn__http_new(conf->jobs, &r->http, err);
    if (e == 0 && (cairn__http_redact(r->http, r->sk) < 0 ||
                   (r->token && cairn__http_redact(r->http, r->token) < 0)))
        e = -ENOMEM;
    if (e < 0) {
        if (e == -ENOMEM)
            cairn__err(err, e, "out of memory");
        s3_close(r);
        return e;
    }
    r->jobs = conf->jobs ? conf->jobs : 8;
    r->threshold = env_size("CAIRN_S3_MULTIPART_THRESHOLD", 64 * MIB, 1);
    r->part_size = env_size("CAIRN_S3_PART_SIZE", 16 * MIB, 1024);
    r->max_keys = (long)env_size("CAIRN_S3_MAX_KEYS", 1000, 1);
    const char *hv = env("CAIRN_S3_HAVE");
    r->have_list = hv && !strcmp(hv, "list");
    r->have_head = hv && !strcmp(hv, "head");
    *out = r;
    return 0;
}

/* ---- listing ---------------------------------------------------------------- */

static int64_t parse_time(const char *s)
{
    struct tm tm = {0};
    const char *p = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!p)
        return 0;
    int64_t ns = 0;
    if (*p == '.') {
        int64_t scale = 100000000;
        for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
            ns += (*p - '0') * scale;
    }
    return (int64_t)timegm(&tm) * 1000000000 + ns;
}

typedef int (*list_fn)(void *ud, const char *key, uint64_t size, int64_t mtime);

/* ListObjectsV2 of every key under `prefix` (pages followed through their
 * continuation tokens): fn(key after the prefix, size, mtime). */
static int list_keys(cairn__remote *r, const char *prefix, const char *what, list_fn fn, void *ud,
                     cairn_error *err)
{
    _cleanup_free_ char *token = NULL;
    char maxk[24];
    snprintf(maxk, sizeof(maxk), "%ld", r->max_keys);
    size_t plen = strlen(prefix);
    for (;;) {
        const char *q[] = {"list-type",          "2",  "prefix", prefix, "max-keys", maxk,
                           "continuation-token", token};
        s3op op;
        int e = op_init(r, &op, "GET", "", what, token ? 4 : 3, q, err);
        if (e < 0)
            return e;
        e = cairn__http_one(r->http, &op.q, err);
        if (e < 0) {
            op_free(&op);
            return e;
        }
        const char *p = op.q.resp ? op.q.resp : "", *end = p + op.q.resp_len, *bs, *be;
        while (e == 0 && cairn__xml_block(&p, end, "Contents", &bs, &be)) {
            const char *c = bs;
            _cleanup_free_ char *key = cairn__xml_next(&c, be, "Key");
            c = bs;
            _cleanup_free_ char *size = cairn__xml_next(&c, be, "Size");
            c = bs;
            _cleanup_free_ char *mod = cairn__xml_next(&c, be, "LastModified");
            if (!key || strncmp(key, prefix, plen) != 0)
                continue;
            e = fn(ud, key + plen, size ? strtoull(size, NULL, 10) : 0, parse_time(mod));
        }
        p = op.q.resp ? op.q.resp : "";
        _cleanup_free_ char *trunc = cairn__xml_next(&p, end, "IsTruncated");
        p = op.q.resp ? op.q.resp : "";
        free(token);
        token = cairn__xml_next(&p, end, "NextContinuationToken");
        bool more = trunc && !strcmp(trunc, "true");
        if (e == 0 && !op.q.resp)
            e = cairn__err(err, -EIO, "%s: an empty listing from %s", what, r->host);
        else if (e == 0 && !strstr(op.q.resp, "ListBucketResult"))
            e = cairn__err(err, -EIO, "%s: %s answered a listing with something else", what,
                           r->host);
        else if (e == 0 && more && !token)
            e = cairn__err(err, -EIO, "%s: %s: a truncated listing without a continuation token",
                           what, r->host);
        op_free(&op);
        if (e != 0 || !more)
            return e < 0 ? e : 0;
    }
}

static bool is_hex64(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

typedef struct blob_list_ctx {
    int (*fn)(void *ud, const char *digest, uint64_t size, int64_t mtime);
    void *ud;
} blob_list_ctx;

static int blob_list_cb(void *ud, const char *key, uint64_t size, int64_t mtime)
{
    blob_list_ctx *c = ud;
    if (!is_hex64(key))
        return 0;
    char d[CAIRN_DIGEST_LEN + 1];
    snprintf(d, sizeof(d), "sha256:%s", key);
    return c->fn(c->ud, d, size, mtime);
}

static int s3_blobs_list(cairn__remote *r,
                         int (*fn)(void *ud, const char *digest, uint64_t size, int64_t mtime),
                         void *ud, cairn_error *err)
{
    _cleanup_free_ char *prefix = NULL;
    if (asprintf(&prefix, "%sblobs/sha256/", r->prefix) < 0)
        return cairn__err(err, -ENOMEM, "out of memory");
    blob_list_ctx c = {fn, ud};
    return list_keys(r, prefix, "remote blobs", blob_list_cb, &c, err);
}

/* ---- blobs -------------------------------------------------------------- */

static int have_cb(void *ud, const char *digest, uint64_t size, int64_t mtime)
{
    (void)size;
    (void)mtime;
    return cairn__strset_add(ud, digest) < 0 ? -ENOMEM : 0;
}

static int s3_blobs_have(cairn__remote *r, const char *const *digests, size_t n, uint8_t *present,
                         cairn_error *err)
{
    if (n == 0)
        return 0;
    if (r->have_list || (!r->have_head && n > 64)) {
        /* a listing answers a thousand a request */
        cairn__strset *set = cairn__strset_new();
        if (!set)
            return cairn__err(err, -ENOMEM, "out of memory");
        int e = s3_blobs_list(r, have_cb, set, err);
        for (size_t i = 0; i < n && e == 0; i++)
            present[i] = cairn__strset_has(set, digests[i]) ? 1 : 0;
        cairn__strset_free(set);
        return e;
    }
    s3op *ops = calloc(n, sizeof(*ops));
    cairn__http_req **qs = calloc(n, sizeof(*qs));
    int e = ops && qs ? 0 : cairn__err(err, -ENOMEM, "out of memory");
    size_t made = 0;
    for (; made < n && e == 0; made++) {
        _cleanup_free_ char *key = blob_key(r, digests[made]), *what = NULL;
        if (!key || asprintf(&what, "remote blob %s", digests[made]) < 0) {
            what = NULL;
            e = cairn__err(err, -ENOMEM, "out of memory");
            break;
        }
        e = op_init(r, &ops[made], "HEAD", key, what, 0, NULL, err);
        ops[made].q.allow = 404;
        qs[made] = &ops[made].q;
    }
    if (e == 0)
        e = cairn__http_run(r->http, qs, n, err);
    for (size_t i = 0; i < n && e == 0; i++)
        present[i] = ops[i].q.status == 404 ? 0 : 1;
    for (size_t i = 0; i < made && ops; i++)
        op_free(&ops[i]);
    free(ops);
    free(qs);
    return e;
}

/* HEAD of a key: 1 with its size, 0 when missing. */
static int head_key(cairn__remote *r, const char *key, const char *what, uint64_t *size,
                    cairn_error *err)
{
    s3op op;
    int e = op_init(r, &op, "HEAD", key, what, 0, NULL, err);
    if (e < 0)
        return e;
    op.q.allow = 404;
    e = cairn__http_one(r->http, &op.q, err);
    if (e == 0 && op.q.status != 404) {
        _cleanup_free_ char *cl = cairn__http_header(&op.q, "Content-Length");
        *size = cl ? strtoull(cl, NULL, 10) : 0;
        e = 1;
    }
    op_free(&op);
    return e;
}

/* SHA-256 and MD5 of `len` bytes of fd from off. */
static int hash_range(int fd, uint64_t off, uint64_t len, char sha[65], char md5[33])
{
    EVP_MD_CTX *s = EVP_MD_CTX_new(), *m = EVP_MD_CTX_new();
    int e =
        s && m && EVP_DigestInit_ex(s, EVP_sha256(), NULL) && EVP_DigestInit_ex(m, EVP_md5(), NULL)
            ? 0
            : -ENOMEM;
    _cleanup_free_ unsigned char *buf = e ? NULL : malloc(1 << 20);
    if (!buf && e == 0)
        e = -ENOMEM;
    while (e == 0 && len > 0) {
        ssize_t n = pread(fd, buf, len < (1 << 20) ? (size_t)len : (1 << 20), (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            e = n < 0 ? -errno : CAIRN_E_TRUNCATED;
            break;
        }
        EVP_DigestUpdate(s, buf, (size_t)n);
        EVP_DigestUpdate(m, buf, (size_t)n);
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    if (e == 0) {
        unsigned char d[32], d5[16];
        EVP_DigestFinal_ex(s, d, NULL);
        EVP_DigestFinal_ex(m, d5, NULL);
        cairn__hex(sha, d, 32);
        cairn__hex(md5, d5, 16);
    }
    EVP_MD_CTX_free(s);
    EVP_MD_CTX_free(m);
    return e;
}

/* The id of an upload in progress for key (malloc'd), or NULL. */
static int find_upload(cairn__remote *r, const char *key, const char *what, char **id,
                       cairn_error *err)
{
    const char *q[] = {"uploads", NULL, "prefix", key};
    s3op op;
    int e = op_init(r, &op, "GET", "", what, 2, q, err);
    if (e < 0)
        return e;
    e = cairn__http_one(r->http, &op.q, err);
    *id = NULL;
    const char *p = op.q.resp ? op.q.resp : "", *end = p + op.q.resp_len, *bs, *be;
    while (e == 0 && !*id && cairn__xml_block(&p, end, "Upload", &bs, &be)) {
        const char *c = bs;
        _cleanup_free_ char *k = cairn__xml_next(&c, be, "Key");
        c = bs;
        _cleanup_free_ char *u = cairn__xml_next(&c, be, "UploadId");
        if (k && u && !strcmp(k, key))
            *id = steal_pointer(&u);
    }
    op_free(&op);
    return e;
}

typedef struct part {
    uint64_t off, len;
    char sha[65], md5[33];
    char *etag; /* what the server holds, NULL: to send */
} part;

/* The parts the server holds of upload id: their ETags into parts[]
 * where their size is ours (ListParts, pages followed). */
static int list_parts(cairn__remote *r, const char *key, const char *id, const char *what,
                      part *parts, size_t np, cairn_error *err)
{
    _cleanup_free_ char *marker = NULL;
    for (;;) {
        const char *q[] = {"uploadId", id, "part-number-marker", marker};
        s3op op;
        int e = op_init(r, &op, "GET", key, what, marker ? 2 : 1, q, err);
        if (e < 0)
            return e;
        op.q.allow = 404; /* the upload completed or was aborted meanwhile */
        e = cairn__http_one(r->http, &op.q, err);
        if (e == 0 && op.q.status == 404) {
            op_free(&op);
            return -ENOENT;
        }
        const char *p = op.q.resp ? op.q.resp : "", *end = p + op.q.resp_len, *bs, *be;
        while (e == 0 && cairn__xml_block(&p, end, "Part", &bs, &be)) {
            const char *c = bs;
            _cleanup_free_ char *num = cairn__xml_next(&c, be, "PartNumber");
            c = bs;
            _cleanup_free_ char *etag = cairn__xml_next(&c, be, "ETag");
            c = bs;
            _cleanup_free_ char *size = cairn__xml_next(&c, be, "Size");
            unsigned long k = num ? strtoul(num, NULL, 10) : 0;
            if (k >= 1 && k <= np && etag && size && strtoull(size, NULL, 10) == parts[k - 1].len) {
                free(parts[k - 1].etag);
                parts[k - 1].etag = steal_pointer(&etag);
            }
        }
        p = op.q.resp ? op.q.resp : "";
        _cleanup_free_ char *trunc = cairn__xml_next(&p, end, "IsTruncated");
        p = op.q.resp ? op.q.resp : "";
        free(marker);
        marker = cairn__xml_next(&p, end, "NextPartNumberMarker");
        op_free(&op);
        if (e < 0)
            return e;
        if (!trunc || strcmp(trunc, "true") != 0 || !marker)
            return 0;
    }
}

/* "abc" or "\"abc\"" is the MD5 hex md5. */
static bool etag_is(const char *etag, const char *md5)
{
    size_t n = strlen(etag);
    if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"')
        return n - 2 == 32 && !strncasecmp(etag + 1, md5, 32);
    return n == 32 && !strncasecmp(etag, md5, 32);
}

static int put_multipart(cairn__remote *r, const char *digest, const char *key, int fd,
                         uint64_t size, cairn__remote_progress fn, void *ud, cairn_error *err)
{
    _cleanup_free_ char *what = NULL;
    if (asprintf(&what, "remote blob %s", digest) < 0)
        return cairn__err(err, -ENOMEM, "out of memory");
    uint64_t ps = r->part_size;
    if ((size + ps - 1) / ps > 10000)
        ps = (size + 9999) / 10000;
    size_t np = (size_t)((size + ps - 1) / ps);
    part *parts = calloc(np, sizeof(*parts));
    if (!parts)
        return cairn__err(err, -ENOMEM, "out of memory");
    int e = 0;
    for (size_t i = 0; i < np && e == 0; i++) {
        parts[i].off = i * ps;
        parts[i].len = i + 1 < np ? ps : size - i * ps;
        e = hash_range(fd, parts[i].off, parts[i].len, parts[i].sha, parts[i].md5);
        if (e < 0)
            cairn__err(err, e, "%s: reading part %zu: %m", what, i + 1);
    }
    _cleanup_free_ char *id = NULL;
    if (e == 0) {
        e = find_upload(r, key, what, &id, err);
        if (e == -EOPNOTSUPP) /* a store without ListMultipartUploads: no resuming */
            e = 0;
    }
    if (e == 0 && id) {
        e = list_parts(r, key, id, what, parts, np, err);
        if (e == -ENOENT) {
            free(id);
            id = NULL;
            e = 0;
        }
    }
    if (e == 0 && !id) {
        const char *q[] = {"uploads", NULL};
        s3op op;
        e = op_init(r, &op, "POST", key, what, 1, q, err);
        if (e == 0)
            e = cairn__http_one(r->http, &op.q, err);
        if (e == 0) {
            const char *p = op.q.resp ? op.q.resp : "";
            id = cairn__xml_next(&p, p + op.q.resp_len, "UploadId");
            if (!id)
                e = cairn__err(err, -EIO, "%s: %s started an upload without an UploadId", what,
                               r->host);
        }
        op_free(&op);
    }
    /* the parts not there (or not ours), in parallel */
    s3op *ops = e == 0 ? calloc(np, sizeof(*ops)) : NULL;
    cairn__http_req **qs = e == 0 ? calloc(np, sizeof(*qs)) : NULL;
    if (e == 0 && (!ops || !qs))
        e = cairn__err(err, -ENOMEM, "out of memory");
    size_t nsend = 0;
    uint64_t kept = 0;
    for (size_t i = 0; i < np && e == 0; i++) {
        if (parts[i].etag && etag_is(parts[i].etag, parts[i].md5)) {
            kept += parts[i].len;
            continue;
        }
        free(parts[i].etag);
        parts[i].etag = NULL;
        char num[24];
        snprintf(num, sizeof(num), "%zu", i + 1);
        const char *q[] = {"partNumber", num, "uploadId", id};
        s3op *op = &ops[nsend];
        e = op_init(r, op, "PUT", key, what, 2, q, err);
        if (e < 0)
            break;
        strcpy(op->payload, parts[i].sha);
        op->q.body_fd = fd;
        op->q.body_off = parts[i].off;
        op->q.body_size = parts[i].len;
        qs[nsend++] = &op->q;
    }
    if (e == 0 && fn)
        fn(ud, kept);
    if (e == 0 && nsend)
        e = cairn__http_run(r->http, qs, nsend, err);
    for (size_t j = 0, i = 0; e == 0 && i < np; i++) {
        if (parts[i].etag)
            continue;
        _cleanup_free_ char *etag = cairn__http_header(&ops[j].q, "ETag");
        j++;
        if (!etag || !etag_is(etag, parts[i].md5))
            e = cairn__err(err, CAIRN_E_MISMATCH,
                           "%s: part %zu: %s holds other bytes than were sent (ETag %s)", what,
                           i + 1, r->host, etag ? etag : "missing");
        else
            parts[i].etag = steal_pointer(&etag);
    }
    for (size_t i = 0; ops && i < nsend; i++)
        op_free(&ops[i]);
    free(ops);
    free(qs);
    if (e == 0 && fn)
        fn(ud, size);
    /* complete: the parts in order */
    _cleanup_free_ char *xml = NULL;
    size_t xlen = 0;
    FILE *mf = e == 0 ? open_memstream(&xml, &xlen) : NULL;
    if (e == 0 && !mf)
        e = cairn__err(err, -ENOMEM, "out of memory");
    if (mf) {
        fputs("<CompleteMultipartUpload>", mf);
        for (size_t i = 0; i < np; i++)
            fprintf(mf, "<Part><PartNumber>%zu</PartNumber><ETag>\"%s\"</ETag></Part>", i + 1,
                    parts[i].md5);
        fputs("</CompleteMultipartUpload>", mf);
        if (fclose(mf) != 0)
            e = cairn__err(err, -ENOMEM, "out of memory");
    }
    if (e == 0) {
        const char *q[] = {"uploadId", id};
        s3op op;
        e = op_init(r, &op, "POST", key, what, 1, q, err);
        if (e == 0) {
            op.q.body = xml;
            op.q.body_size = xlen;
            op.q.content_type = "application/xml";
            char d[CAIRN_DIGEST_LEN + 1];
            cairn__sha256_buf(xml, xlen, d);
            strcpy(op.payload, cairn__digest_hex(d));
            e = cairn__http_one(r->http, &op.q, err);
        }
        /* S3 may answer 200 and an error in the body */
        if (e == 0 && op.q.resp && strstr(op.q.resp, "<Error>")) {
            const char *p = op.q.resp, *end = p + op.q.resp_len;
            _cleanup_free_ char *code = cairn__xml_next(&p, end, "Code");
            e = cairn__err(err, -EIO, "%s: completing the upload: %s answered %s", what, r->host,
                           code ? code : "an error");
        }
        op_free(&op);
    }
    for (size_t i = 0; i < np; i++)
        free(parts[i].etag);
    free(parts);
    if (e == 0) {
        uint64_t got = 0;
        int h = head_key(r, key, what, &got, err);
        if (h < 0)
            e = h;
        else if (h == 0 || got != size)
            e = cairn__err(err, -EIO,
                           "%s: %s holds %" PRIu64 " bytes after the upload, not %" PRIu64, what,
                           r->host, h ? got : 0, size);
    }
    return e;
}

static int s3_blob_put(cairn__remote *r, const char *digest, int fd, uint64_t size,
                       const char *media_type, cairn__remote_progress fn, void *ud,
                       cairn_error *err)
{
    (void)media_type;
    _cleanup_free_ char *key = blob_key(r, digest), *what = NULL;
    if (!key || asprintf(&what, "remote blob %s", digest) < 0)
        return cairn__err(err, -ENOMEM, "out of memory");
    uint64_t have = 0;
    int e = head_key(r, key, what, &have, err);
    if (e < 0)
        return e;
    if (e == 1 && have == size) {
        if (fn)
            fn(ud, size);
        return 0;
    }
    if (size >= r->threshold)
        return put_multipart(r, digest, key, fd, size, fn, ud, err);
    s3op op;
    e = op_init(r, &op, "PUT", key, what, 0, NULL, err);
    if (e < 0)
        return e;
    strcpy(op.payload, cairn__digest_hex(digest));
    op.q.body_fd = fd;
    op.q.body_size = size;
    op.q.progress = fn;
    op.q.progress_ud = ud;
    e = cairn__http_one(r->http, &op.q, err);
    op_free(&op);
    return e;
}

static int s3_blob_get(cairn__remote *r, const char *digest, int fd, cairn__remote_progress fn,
                       void *ud, cairn_error *err)
{
    _cleanup_free_ char *key = blob_key(r, digest), *what = NULL;
    if (!key || asprintf(&what, "remote blob %s", digest) < 0)
        return cairn__err(err, -ENOMEM, "out of memory");
    s3op op;
    int e = op_init(r, &op, "GET", key, what, 0, NULL, err);
    if (e < 0)
        return e;
    op.q.out_fd = fd;
    op.q.expect = digest;
    op.q.progress = fn;
    op.q.progress_ud = ud;
    e = cairn__http_one(r->http, &op.q, err);
    op_free(&op);
    return e;
}

static int delete_key(cairn__remote *r, const char *key, const char *what, cairn_error *err)
{
    s3op op;
    int e = op_init(r, &op, "DELETE", key, what, 0, NULL, err);
    if (e < 0)
        return e;
    op.q.allow = 404;
    e = cairn__http_one(r->http, &op.q, err);
    op_free(&op);
    return e;
}

static int s3_blob_delete(cairn__remote *r, const char *digest, cairn_error *err)
{
    _cleanup_free_ char *key = blob_key(r, digest), *what = NULL;
    if (!key || asprintf(&what, "remote blob %s", digest) < 0)
        return cairn__err(err, -ENOMEM, "out of memory");
    return delete_key(r, key, what, err);
}

/* ---- states --------------------------------------------------------------- */

static bool tag_ok(const char *tag)
{
    /* as the file:// backend's: a path component anywhere, a tag in a registry */
    if (!tag || !*tag || strlen(tag) > 110 || tag[0] == '.' || tag[0] == '-')
        return false;
    for (const char *p = tag; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.'))
            return false;
    return true;
}

static int state_key(cairn__remote *r, const char *tag, const char *manifest_digest, char **key,
                     char **what, cairn_error *err)
{
    if (!tag_ok(tag))
        return cairn__err(err, -EINVAL, "remote state: not a tag: %s", tag ? tag : "(null)");
    if (strncmp(manifest_digest, "sha256:", 7) != 0 || !is_hex64(manifest_digest + 7))
        return cairn__err(err, CAIRN_E_DIGEST, "remote state %s: not a digest: %s", tag,
                          manifest_digest);
    if (asprintf(key, "%sstates/%s/%s", r->prefix, tag, manifest_digest + 7) < 0) {
        *key = NULL;
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    if (asprintf(what, "remote state %s %s", tag, manifest_digest) < 0) {
        free(*key);
        *key = *what = NULL;
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    return 0;
}

static int put_small(cairn__remote *r, const char *key, const char *what, const void *buf,
                     size_t len, cairn_error *err)
{
    s3op op;
    int e = op_init(r, &op, "PUT", key, what, 0, NULL, err);
    if (e < 0)
        return e;
    char d[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(buf, len, d);
    strcpy(op.payload, cairn__digest_hex(d));
    op.q.body = buf;
    op.q.body_size = len;
    e = cairn__http_one(r->http, &op.q, err);
    op_free(&op);
    return e;
}

static int s3_state_put(cairn__remote *r, const char *tag, const char *manifest_digest,
                        const void *buf, size_t len, cairn_error *err)
{
    _cleanup_free_ char *key = NULL, *what = NULL, *layout = NULL;
    int e = state_key(r, tag, manifest_digest, &key, &what, err);
    if (e < 0)
        return e;
    if (len > 4 * MIB)
        return cairn__err(err, -EFBIG, "%s: a manifest of %zu bytes (at most 4 MiB)", what, len);
    char d[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(buf, len, d);
    if (strcmp(d, manifest_digest) != 0)
        return cairn__err(err, CAIRN_E_MISMATCH, "%s: the manifest's bytes hash to %s", what, d);
    static const char oci_layout[] = "{\"imageLayoutVersion\": \"1.0.0\"}";
    if (asprintf(&layout, "%soci-layout", r->prefix) < 0) {
        layout = NULL;
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    e = put_small(r, layout, "remote oci-layout", oci_layout, strlen(oci_layout), err);
    if (e == 0)
        e = put_small(r, key, what, buf, len, err);
    return e;
}

typedef struct states_ctx {
    int (*fn)(void *ud, const char *tag, const char *manifest_digest, int64_t mtime);
    void *ud;
    const char *tag;
} states_ctx;

static int states_cb(void *ud, const char *key, uint64_t size, int64_t mtime)
{
    (void)size;
    states_ctx *c = ud;
    /* key: "<tag>/<hex>" (every tag) or "<hex>" (one) */
    const char *slash = strrchr(key, '/');
    const char *hex = slash ? slash + 1 : key;
    if (!is_hex64(hex) || (c->tag && slash) || (!c->tag && !slash))
        return 0;
    char tag[160];
    if (!c->tag) {
        size_t tl = (size_t)(slash - key);
        if (tl >= sizeof(tag) || memchr(key, '/', tl))
            return 0;
        memcpy(tag, key, tl);
        tag[tl] = 0;
        if (!tag_ok(tag))
            return 0;
    }
    char d[CAIRN_DIGEST_LEN + 1];
    snprintf(d, sizeof(d), "sha256:%s", hex);
    return c->fn(c->ud, c->tag ? c->tag : tag, d, mtime);
}

static int s3_states_list(cairn__remote *r, const char *tag,
                          int (*fn)(void *ud, const char *tag, const char *manifest_digest,
                                    int64_t mtime),
                          void *ud, cairn_error *err)
{
    if (tag && !tag_ok(tag))
        return cairn__err(err, -EINVAL, "remote state: not a tag: %s", tag);
    _cleanup_free_ char *prefix = NULL;
    if (asprintf(&prefix, "%sstates/%s%s", r->prefix, tag ? tag : "", tag ? "/" : "") < 0) {
        prefix = NULL;
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    states_ctx c = {fn, ud, tag};
    return list_keys(r, prefix, "remote states", states_cb, &c, err);
}

static int s3_state_get(cairn__remote *r, const char *tag, const char *manifest_digest, char **buf,
                        size_t *len, cairn_error *err)
{
    _cleanup_free_ char *key = NULL, *what = NULL;
    int e = state_key(r, tag, manifest_digest, &key, &what, err);
    if (e < 0)
        return e;
    s3op op;
    e = op_init(r, &op, "GET", key, what, 0, NULL, err);
    if (e < 0)
        return e;
    op.q.expect = manifest_digest;
    op.q.resp_max = 4 * MIB + 1;
    e = cairn__http_one(r->http, &op.q, err);
    if (e == 0) {
        if (!op.q.resp && !(op.q.resp = strdup(""))) {
            op_free(&op);
            return cairn__err(err, -ENOMEM, "out of memory");
        }
        *len = op.q.resp_len;
        *buf = steal_pointer(&op.q.resp);
    }
    op_free(&op);
    return e;
}

static int s3_state_delete(cairn__remote *r, const char *tag, const char *manifest_digest,
                           cairn_error *err)
{
    _cleanup_free_ char *key = NULL, *what = NULL;
    int e = state_key(r, tag, manifest_digest, &key, &what, err);
    if (e < 0)
        return e;
    return delete_key(r, key, what, err);
}

const cairn__remote_ops cairn__remote_s3 = {
    .scheme = "s3",
    .open = s3_open,
    .close = s3_close,
    .blobs_have = s3_blobs_have,
    .blob_put = s3_blob_put,
    .blob_get = s3_blob_get,
    .blob_delete = s3_blob_delete,
    .blobs_list = s3_blobs_list,
    .state_put = s3_state_put,
    .states_list = s3_states_list,
    .state_get = s3_state_get,
    .state_delete = s3_state_delete,
};
