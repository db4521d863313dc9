/* remote/sigv4.h: AWS Signature Version 4 for the s3:// backend, computed
 * by cairn (HMAC-SHA256 from libcrypto), never by libcurl. Private to
 * lib/remote/.
 */
#ifndef CAIRN_REMOTE_SIGV4_H
#define CAIRN_REMOTE_SIGV4_H

#include "util/util.h"

/* A name and a value: a query parameter (raw, unencoded) or a header. */
typedef struct cairn__kv {
    const char *name;
    const char *value;
} cairn__kv;

typedef struct cairn__sigv4_key {
    const char *access_key;
    const char *secret_key;
    const char *session_token; /* NULL or "": none */
    const char *region;
    const char *service; /* "s3" */
} cairn__sigv4_key;

#define CAIRN_SIGV4_UNSIGNED "UNSIGNED-PAYLOAD"
#define CAIRN_SIGV4_EMPTY    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* Append to `s` the RFC 3986 encoding AWS wants: every byte but
 * A-Z a-z 0-9 - _ . ~ as %XX (upper case); '/' kept when keep_slash.
 * 0 or -ENOMEM. */
CAIRN_INTERNAL int cairn__uri_encode(char **s, size_t *len, const char *in, bool keep_slash);

/* The canonical query string of n raw parameters: each name and value
 * encoded, sorted by encoded name then value, "a=1&b=" (a parameter with a
 * NULL value is "name="). malloc'd into *out ("" for none). */
CAIRN_INTERNAL int cairn__sigv4_query(const cairn__kv *q, size_t n, char **out);

/* The same parameters as sent in a URL: the same order and encoding, but a
 * parameter with a NULL value is "name" alone ("?uploads"). */
CAIRN_INTERNAL int cairn__sigv4_url_query(const cairn__kv *q, size_t n, char **out);

/* Sign a request. `host` as sent in the Host header (with ":port" when not
 * the scheme's default), `path` the encoded canonical URI ("/bucket/key"),
 * `query` n raw parameters, `headers` nh more headers to sign (any case;
 * values trimmed), `payload` the hex SHA-256 of the body or
 * CAIRN_SIGV4_UNSIGNED, `t` unix seconds. Adds to `out` the header lines to
 * send ("Authorization: ...", "x-amz-date: ...", "x-amz-content-sha256: ...",
 * and "x-amz-security-token: ..." with a session token). 0 or -ENOMEM. */
CAIRN_INTERNAL int cairn__sigv4_sign(const cairn__sigv4_key *key, const char *method,
                                     const char *host, const char *path, const cairn__kv *query,
                                     size_t nq, const cairn__kv *headers, size_t nh,
                                     const char *payload, int64_t t, cairn__strv *out);

#endif
