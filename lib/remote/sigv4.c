/* sigv4.c: AWS Signature Version 4, the signing of every s3:// request.
 *
 * Owns the canonical request, the string to sign and the signing key; cairn
 * computes them itself with libcrypto (libcurl's CURLOPT_AWS_SIGV4 of
 * Debian 12 signs queries it has not sorted or has encoded twice: listing
 * continuation tokens and multipart uploads fail).
 *
 * Invariants:
 * - the query that is signed is the query that is sent: both are made here
 *   (encoded once, sorted by encoded name, then value; "?uploads" is sent
 *   bare and signed as "uploads=");
 * - the path is signed as given (S3 does not normalise it; the caller
 *   encodes each key once, keeping '/');
 * - header names are signed in lower case, sorted, values trimmed with inner
 *   runs of blanks collapsed, as botocore does (tests/unit/test-sigv4.c
 *   checks the signatures against botocore's on the same requests);
 * - the secret key never leaves this file but as the HMAC it keys.
 */
#include "remote/sigv4.h"

#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

static int put(char **s, size_t *len, const char *in, size_t n)
{
    char *p = realloc(*s, *len + n + 1);
    if (!p)
        return -ENOMEM;
    memcpy(p + *len, in, n);
    *len += n;
    p[*len] = 0;
    *s = p;
    return 0;
}

static int puts_(char **s, size_t *len, const char *in)
{
    return put(s, len, in, strlen(in));
}

int cairn__uri_encode(char **s, size_t *len, const char *in, bool keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        char buf[3];
        size_t n = 1;
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~' || (keep_slash && *p == '/')) {
            buf[0] = (char)*p;
        } else {
            buf[0] = '%';
            buf[1] = digits[*p >> 4];
            buf[2] = digits[*p & 15];
            n = 3;
        }
        if (put(s, len, buf, n) < 0)
            return -ENOMEM;
    }
    if (!*s)
        return put(s, len, "", 0);
    return 0;
}

typedef struct pair {
    char *name, *value;
} pair;

static int pair_cmp(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

/* Was the parameter of this encoded name given a value ("" included)? */
static bool q_value_set(const cairn__kv *q, size_t n, const char *enc_name)
{
    for (size_t i = 0; i < n; i++) {
        char *e = NULL;
        size_t l = 0;
        if (cairn__uri_encode(&e, &l, q[i].name, false) < 0)
            return true;
        bool same = !strcmp(e, enc_name);
        free(e);
        if (same)
            return q[i].value != NULL;
    }
    return true;
}

static int query(const cairn__kv *q, size_t n, bool url, char **out)
{
    pair *v = calloc(n ? n : 1, sizeof(*v));
    char *s = NULL;
    size_t len = 0;
    int r = v ? 0 : -ENOMEM;
    for (size_t i = 0; i < n && r == 0; i++) {
        size_t a = 0, b = 0;
        r = cairn__uri_encode(&v[i].name, &a, q[i].name, false);
        if (r == 0)
            r = cairn__uri_encode(&v[i].value, &b, q[i].value ? q[i].value : "", false);
    }
    if (r == 0) {
        qsort(v, n, sizeof(*v), pair_cmp);
        r = put(&s, &len, "", 0);
    }
    for (size_t i = 0; i < n && r == 0; i++) {
        if (i)
            r = puts_(&s, &len, "&");
        if (r == 0)
            r = puts_(&s, &len, v[i].name);
        if (r == 0 && (!url || v[i].value[0] || q_value_set(q, n, v[i].name)))
            r = puts_(&s, &len, "=");
        if (r == 0)
            r = puts_(&s, &len, v[i].value);
    }
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].name);
        free(v[i].value);
    }
    free(v);
    if (r < 0) {
        free(s);
        return r;
    }
    *out = s;
    return 0;
}

int cairn__sigv4_query(const cairn__kv *q, size_t n, char **out)
{
    return query(q, n, false, out);
}

int cairn__sigv4_url_query(const cairn__kv *q, size_t n, char **out)
{
    return query(q, n, true, out);
}

/* A header's name in lower case and its value trimmed, blanks collapsed. */
static int header_pair(const char *name, const char *value, pair *p)
{
    p->name = strdup(name);
    p->value = malloc(strlen(value) + 1);
    if (!p->name || !p->value)
        return -ENOMEM;
    for (char *c = p->name; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    char *o = p->value;
    bool blank = false;
    for (const char *c = value; *c; c++) {
        if (*c == ' ' || *c == '\t') {
            blank = o != p->value;
            continue;
        }
        if (blank)
            *o++ = ' ';
        blank = false;
        *o++ = *c;
    }
    *o = 0;
    return 0;
}

static int push_fmt(cairn__strv *out, const char *fmt, ...) CAIRN_PRINTF(2, 3);
static int push_fmt(cairn__strv *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line;
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM;
    int r = cairn__strv_push(out, line);
    free(line);
    return r;
}

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int n = 32;
    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &n);
}

int cairn__sigv4_sign(const cairn__sigv4_key *key, const char *method, const char *host,
                      const char *path, const cairn__kv *query, size_t nq, const cairn__kv *headers,
                      size_t nh, const char *payload, int64_t t, cairn__strv *out)
{
    char amzdate[17], date[9];
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(amzdate, sizeof(amzdate), "%Y%m%dT%H%M%SZ", &tm);
    memcpy(date, amzdate, 8);
    date[8] = 0;
    bool token = key->session_token && key->session_token[0];

    size_t np = nh + 3 + (token ? 1 : 0);
    pair *h = calloc(np, sizeof(*h));
    _cleanup_free_ char *q = NULL, *creq = NULL, *signed_h = NULL, *sts = NULL, *k = NULL;
    size_t clen = 0, slen = 0, stslen = 0, klen = 0;
    int r = h ? 0 : -ENOMEM;
    size_t i = 0;
    for (; r == 0 && i < nh; i++)
        r = header_pair(headers[i].name, headers[i].value, &h[i]);
    if (r == 0)
        r = header_pair("host", host, &h[i++]);
    if (r == 0)
        r = header_pair("x-amz-content-sha256", payload, &h[i++]);
    if (r == 0)
        r = header_pair("x-amz-date", amzdate, &h[i++]);
    if (r == 0 && token)
        r = header_pair("x-amz-security-token", key->session_token, &h[i++]);
    if (r == 0)
        r = cairn__sigv4_query(query, nq, &q);
    if (r < 0)
        goto out;
    qsort(h, np, sizeof(*h), pair_cmp);

    /* the canonical request */
    r = puts_(&creq, &clen, method);
    r = r ?: puts_(&creq, &clen, "\n");
    r = r ?: puts_(&creq, &clen, path);
    r = r ?: puts_(&creq, &clen, "\n");
    r = r ?: puts_(&creq, &clen, q);
    r = r ?: puts_(&creq, &clen, "\n");
    for (size_t j = 0; j < np && r == 0; j++) {
        r = puts_(&creq, &clen, h[j].name);
        r = r ?: puts_(&creq, &clen, ":");
        r = r ?: puts_(&creq, &clen, h[j].value);
        r = r ?: puts_(&creq, &clen, "\n");
        r = r ?: (j ? puts_(&signed_h, &slen, ";") : 0);
        r = r ?: puts_(&signed_h, &slen, h[j].name);
    }
    r = r ?: puts_(&creq, &clen, "\n");
    r = r ?: puts_(&creq, &clen, signed_h);
    r = r ?: puts_(&creq, &clen, "\n");
    r = r ?: puts_(&creq, &clen, payload);
    if (r < 0)
        goto out;

    /* the string to sign */
    char digest[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(creq, clen, digest);
    char scope[256];
    snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, key->region, key->service);
    r = puts_(&sts, &stslen, "AWS4-HMAC-SHA256\n");
    r = r ?: puts_(&sts, &stslen, amzdate);
    r = r ?: puts_(&sts, &stslen, "\n");
    r = r ?: puts_(&sts, &stslen, scope);
    r = r ?: puts_(&sts, &stslen, "\n");
    r = r ?: puts_(&sts, &stslen, cairn__digest_hex(digest));
    if (r < 0)
        goto out;

    /* the signing key, then the signature */
    r = puts_(&k, &klen, "AWS4");
    r = r ?: puts_(&k, &klen, key->secret_key);
    if (r < 0)
        goto out;
    unsigned char m[32];
    hmac(k, klen, date, m);
    OPENSSL_cleanse(k, klen);
    hmac(m, 32, key->region, m);
    hmac(m, 32, key->service, m);
    hmac(m, 32, "aws4_request", m);
    hmac(m, 32, sts, m);
    char sig[65];
    cairn__hex(sig, m, 32);
    OPENSSL_cleanse(m, sizeof(m));

    r = push_fmt(out,
                 "Authorization: AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                 "Signature=%s",
                 key->access_key, scope, signed_h, sig);
    r = r ?: push_fmt(out, "x-amz-date: %s", amzdate);
    r = r ?: push_fmt(out, "x-amz-content-sha256: %s", payload);
    if (token)
        r = r ?: push_fmt(out, "x-amz-security-token: %s", key->session_token);
out:
    for (size_t j = 0; h && j < np; j++) {
        free(h[j].name);
        free(h[j].value);
    }
    free(h);
    return r;
}
