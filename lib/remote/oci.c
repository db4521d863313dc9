/* oci.c: the oci:// backend of remotes (remote/backend.h):
 * `oci://host[:port]/repository` on any registry of the OCI distribution
 * spec, through remote/http.c:
 *
 *   blobs        the repository's blob store: HEAD for existence (in
 *                parallel), POST an upload then PUT ?digest= with the bytes
 *                (monolithic) or, from CAIRN_OCI_CHUNK_THRESHOLD bytes
 *                (64 MiB), PATCH chunks of CAIRN_OCI_CHUNK_SIZE (16 MiB)
 *                with Content-Range, then PUT ?digest=; GET (redirects
 *                followed, hashed as it streams)
 *   manifests    a blob whose media type is an OCI manifest or index (the
 *                chunks of a big state) is PUT /manifests/<digest>, so that
 *                the index naming it keeps its layers from the registry's gc
 *   states       each state's manifest under a tag of its own,
 *                "<tag>.<first 16 hex of its digest>"; GET /tags/list (Link
 *                pagination) filtered by the prefix is the set of a tag, HEAD
 *                of each member tag its full digest; DELETE /manifests/<digest>
 *                takes a member out (the registry must allow deletes).
 *
 * https by default; plain http for a loopback host, or any with `insecure`.
 * Credentials: the auths.<host>.auth (base64 "user:password") of the
 * conf's auth_file, else REGISTRY_AUTH_FILE, else $DOCKER_CONFIG/config.json
 * or ~/.docker/config.json. Opening asks GET /v2/ which scheme the registry
 * wants: none, Basic (the credentials checked there), or Bearer (a token
 * from the challenge's realm, for service and scope
 * "repository:<repo>:pull,push", fetched with the credentials when there
 * are some, fetched again when a request is answered 401).
 *
 * Invariants:
 * - no credential is in a URL, a message or a file: the user:password, its
 *   base64 and every token are redacted from every error of the handle, and
 *   only sent in an Authorization header;
 * - a member tag is written only with a manifest whose bytes hash to the
 *   digest the tag is named after, and listed only when the registry says
 *   the tag names such a digest: a foreign tag that looks like a member but
 *   names another manifest is not a state;
 * - a chunked upload that fails midway asks the registry where it stands
 *   (GET of the upload: its Range) and goes on from there; an upload the
 *   registry forgot starts again; nothing is committed (PUT ?digest=) but
 *   every byte of the blob, which the registry checks against the digest;
 * - a registry keeps no listing of blobs: blobs_list lists none, so remote
 *   gc removes states and leaves their objects to the registry's own
 *   garbage collection (it keeps what any manifest names).
 */
#include "remote/backend.h"
#include "remote/http.h"

#include <ctype.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/evp.h>

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_INDEX    "application/vnd.oci.image.index.v1+json"
#define ACCEPT                                                                                     \
    "Accept: " MT_MANIFEST ", " MT_INDEX ", application/vnd.docker.distribution.manifest.v2+json, " \
    "application/vnd.docker.distribution.manifest.list.v2+json"
#define DOC_MAX  (4u << 20)
#define MIB      (1024ULL * 1024)
#define TAG_MAX  110 /* a registry's tag: 128, less ".<16 hex>" */
#define RESUMES  8

enum { AUTH_NONE, AUTH_BASIC, AUTH_BEARER };

struct cairn__remote {
    char *url;  /* oci://host/repo, for messages */
    char *base; /* http[s]://host[:port] */
    char *host; /* host[:port], as auth files name it */
    char *repo;
    cairn__http *http;
    char *basic;  /* base64 of user:password, or NULL */
    char *bearer; /* the token, or NULL */
    int auth;
    uint64_t threshold, chunk;
};

/* ---- requests ------------------------------------------------------------ */

typedef struct ociop {
    cairn__http_req q;
    cairn__remote *r;
    char *url, *what;
    const char *accept; /* a whole header line, or NULL */
    char range[64];     /* Content-Range's value, or "" */
} ociop;

static int op_prepare(void *ud, cairn__http_req *req, cairn__strv *headers, cairn_error *err)
{
    (void)req;
    ociop *op = ud;
    cairn__remote *r = op->r;
    int e = 0;
    _cleanup_free_ char *line = NULL;
    if (r->auth == AUTH_BEARER && r->bearer)
        e = asprintf(&line, "Authorization: Bearer %s", r->bearer) < 0 ? -ENOMEM : 0;
    else if (r->auth == AUTH_BASIC && r->basic)
        e = asprintf(&line, "Authorization: Basic %s", r->basic) < 0 ? -ENOMEM : 0;
    if (e < 0)
        line = NULL;
    if (e == 0 && line)
        e = cairn__strv_push(headers, line);
    if (e == 0 && op->accept)
        e = cairn__strv_push(headers, op->accept);
    free(line);
    line = NULL;
    if (e == 0 && op->range[0])
        e = asprintf(&line, "Content-Range: %s", op->range) < 0 ? (line = NULL, -ENOMEM)
                                                                : cairn__strv_push(headers, line);
    if (e < 0)
        return cairn__err(err, e, "%s: out of memory", op->what);
    return 0;
}

/* A request to `url`: a path under the base when it starts with "/", else
 * a whole URL (an upload's Location). */
static int op_init(cairn__remote *r, ociop *op, const char *method, const char *url,
                   const char *what, cairn_error *err)
{
    memset(op, 0, sizeof(*op));
    cairn__http_req_init(&op->q);
    op->r = r;
    bool rel = url[0] == '/';
    if (asprintf(&op->url, "%s%s", rel ? r->base : "", url) < 0) {
        op->url = NULL;
        return cairn__err(err, -ENOMEM, "%s: out of memory", what);
    }
    if (!(op->what = strdup(what))) {
        free(op->url);
        op->url = NULL;
        return cairn__err(err, -ENOMEM, "%s: out of memory", what);
    }
    op->q.method = method;
    op->q.url = op->url;
    op->q.what = op->what;
    op->q.prepare = op_prepare;
    op->q.ud = op;
    return 0;
}

static void op_free(ociop *op)
{
    cairn__http_req_clear(&op->q);
    free(op->url);
    free(op->what);
    memset(op, 0, sizeof(*op));
}

static int auth_challenge(cairn__remote *r, const char *challenge, cairn_error *err);

/* Run n requests; a 401 (a token expired, or a registry that asks only
 * now) is answered once by the challenge it came with, then all run again
 * (every request here may be sent twice: HEAD, GET, PUT of named bytes, an
 * upload's PATCH whose caller asks where the upload stands on failure). */
static int run(cairn__remote *r, cairn__http_req **qs, size_t n, cairn_error *err)
{
    for (int pass = 0;; pass++) {
        int e = cairn__http_run(r->http, qs, n, err);
        if (e == 0 || pass > 0)
            return e;
        const cairn__http_req *denied = NULL;
        for (size_t i = 0; i < n && !denied; i++)
            if (qs[i]->status == 401)
                denied = qs[i];
        if (!denied)
            return e;
        _cleanup_free_ char *ch = cairn__http_header(denied, "WWW-Authenticate");
        if (!ch || (r->auth == AUTH_BASIC && !strncasecmp(ch, "Basic", 5)))
            return e; /* the credentials were refused: the first answer says so */
        cairn_error e2 = {0};
        int a = auth_challenge(r, ch, &e2);
        if (a < 0) {
            if (err)
                *err = e2;
            return a;
        }
        for (size_t i = 0; i < n; i++)
            cairn__http_req_clear(qs[i]);
    }
}

static int run_one(cairn__remote *r, ociop *op, cairn_error *err)
{
    cairn__http_req *q = &op->q;
    return run(r, &q, 1, err);
}

/* ---- configuration and auth -------------------------------------------- */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static uint64_t env_size(const char *name, uint64_t def, uint64_t min)
{
    const char *v = env(name);
    if (!v)
        return def;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    return *end || n < min ? def : (uint64_t)n;
}

static bool loopback(const char *host)
{
    size_t n = strcspn(host, host[0] == '[' ? "]" : ":");
    if (host[0] == '[')
        return n == 4 && !strncmp(host, "[::1", 4);
    return (n == 9 && !strncmp(host, "localhost", 9)) || !strncmp(host, "127.", 4);
}

/* a repository name of the distribution spec: lower-case components
 * [a-z0-9]+([._-][a-z0-9]+)* joined by "/" */
static bool repo_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255)
        return false;
    bool prev_alnum = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (!prev_alnum || !strchr("._-/", c)))
            return false;
        prev_alnum = alnum;
    }
    return prev_alnum;
}

static bool tag_ok(const char *tag)
{
    size_t n = strlen(tag);
    if (n == 0 || n > TAG_MAX || tag[0] == '.' || tag[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)tag[i]) && !strchr("_.-", tag[i]))
            return false;
    return true;
}

/* "host[:port]" of an auths key: "https://host:port/v1/" -> "host:port" */
static bool auth_key_is(const char *key, const char *host)
{
    const char *k = strstr(key, "://");
    k = k ? k + 3 : key;
    size_t n = strcspn(k, "/");
    return n == strlen(host) && !strncmp(k, host, n);
}

/* The credentials for the registry from an auth file: 1 found, 0 none. */
static int read_auth_file(cairn__remote *r, const char *path, bool named, cairn_error *err)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        if (!named && access(path, F_OK) < 0)
            return 0;
        /* je.text may quote the file: say only where */
        return cairn__err(err, CAIRN_E_FORMAT, "remote %s: auth file %s: not JSON (line %d)",
                          r->url, path, je.line);
    }
    json_t *auths = json_object_get(root, "auths");
    const char *key;
    json_t *v;
    int found = 0;
    json_object_foreach(auths, key, v)
    {
        if (!auth_key_is(key, r->host))
            continue;
        const char *a = json_string_value(json_object_get(v, "auth"));
        const char *u = json_string_value(json_object_get(v, "username"));
        const char *p = json_string_value(json_object_get(v, "password"));
        if (a && *a) {
            r->basic = strdup(a);
        } else if (u && p) {
            _cleanup_free_ char *up = NULL;
            if (asprintf(&up, "%s:%s", u, p) >= 0) {
                size_t n = strlen(up);
                r->basic = malloc(4 * ((n + 2) / 3) + 1);
                if (r->basic)
                    EVP_EncodeBlock((unsigned char *)r->basic, (const unsigned char *)up, (int)n);
                explicit_bzero(up, n);
            }
        } else {
            continue;
        }
        found = r->basic ? 1 : -ENOMEM;
        break;
    }
    json_decref(root);
    if (found < 0)
        return cairn__err(err, found, "out of memory");
    if (found) {
        /* the plain user:password too: never in a message */
        size_t n = strlen(r->basic);
        _cleanup_free_ unsigned char *plain = malloc(n + 1);
        int len = plain ? EVP_DecodeBlock(plain, (const unsigned char *)r->basic, (int)n) : -1;
        if (len < 0) {
            free(r->basic);
            r->basic = NULL;
            return cairn__err(err, CAIRN_E_FORMAT, "remote %s: auth file %s: the auth of %s is "
                              "not base64", r->url, path, r->host);
        }
        plain[len] = 0;
        const char *colon = strchr((char *)plain, ':');
        cairn__http_redact(r->http, r->basic);
        if (colon && colon[1])
            cairn__http_redact(r->http, colon + 1);
        explicit_bzero(plain, (size_t)len);
    }
    return found;
}

static int load_credentials(cairn__remote *r, const char *auth_file, cairn_error *err)
{
    if (auth_file)
        return read_auth_file(r, auth_file, true, err);
    const char *f = env("REGISTRY_AUTH_FILE");
    if (f)
        return read_auth_file(r, f, true, err);
    _cleanup_free_ char *path = NULL;
    const char *dc = env("DOCKER_CONFIG"), *home = env("HOME");
    if (dc ? asprintf(&path, "%s/config.json", dc) < 0
           : !home || asprintf(&path, "%s/.docker/config.json", home) < 0) {
        path = NULL;
        return 0;
    }
    return read_auth_file(r, path, false, err);
}

/* The value of key=... (quoted or not) in a challenge, malloc'd, or NULL. */
static char *challenge_param(const char *ch, const char *key)
{
    size_t kn = strlen(key);
    for (const char *p = ch; (p = strcasestr(p, key)) != NULL; p += kn) {
        if (p > ch && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
            continue;
        const char *v = p + kn;
        while (*v == ' ')
            v++;
        if (*v != '=')
            continue;
        v++;
        while (*v == ' ')
            v++;
        size_t n = *v == '"' ? strcspn(v + 1, "\"") : strcspn(v, ", ");
        return strndup(*v == '"' ? v + 1 : v, n);
    }
    return NULL;
}

static char *url_escape(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(3 * n + 1), *w = o;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || strchr("-._~", c))
            *w++ = (char)c;
        else
            w += sprintf(w, "%%%02X", c);
    }
    *w = 0;
    return o;
}

/* Get a token for the repository from a Bearer challenge's realm. */
static int fetch_token(cairn__remote *r, const char *ch, cairn_error *err)
{
    _cleanup_free_ char *realm = challenge_param(ch, "realm");
    _cleanup_free_ char *service = challenge_param(ch, "service");
    _cleanup_free_ char *scope = challenge_param(ch, "scope");
    if (!realm || strncmp(realm, "http", 4) != 0)
        return cairn__err(err, CAIRN_E_FORMAT, "remote %s: the registry asks for a token but "
                          "names no realm (http[s]://...) to get one", r->url);
    if (!strncmp(realm, "http://", 7) && !loopback(realm + 7) && strncmp(r->base, "http://", 7))
        return cairn__err(err, -EPERM, "remote %s: the token realm %s is plain http: refused "
                          "(credentials would travel in clear)", r->url, realm);
    _cleanup_free_ char *dflt = NULL;
    if (!scope && asprintf(&dflt, "repository:%s:pull,push", r->repo) < 0)
        return cairn__err(err, -ENOMEM, "out of memory");
    _cleanup_free_ char *es = url_escape(service ? service : ""),
                        *esc = url_escape(scope ? scope : dflt), *url = NULL;
    if (!es || !esc ||
        asprintf(&url, "%s%sservice=%s&scope=%s", realm, strchr(realm, '?') ? "&" : "?", es,
                 esc) < 0)
        return cairn__err(err, -ENOMEM, "out of memory");
    char what[512];
    snprintf(what, sizeof(what), "remote %s: token", r->url);
    ociop op;
    int e = op_init(r, &op, "GET", url, what, err);
    if (e < 0)
        return e;
    int saved = r->auth;
    r->auth = r->basic ? AUTH_BASIC : AUTH_NONE; /* the realm takes the credentials */
    op.q.follow = true;
    e = cairn__http_one(r->http, &op.q, err);
    r->auth = saved;
    if (e < 0 && (op.q.status == 401 || op.q.status == 403))
        e = cairn__err(err, -EACCES, "remote %s: the token server %s refused %s (answer %ld)",
                       r->url, realm, r->basic ? "the credentials" : "anonymous access",
                       op.q.status);
    json_t *j = e == 0 ? json_loadb(op.q.resp, op.q.resp_len, 0, NULL) : NULL;
    const char *tok = json_string_value(json_object_get(j, "token"));
    if (!tok)
        tok = json_string_value(json_object_get(j, "access_token"));
    if (e == 0 && (!tok || !*tok))
        e = cairn__err(err, CAIRN_E_FORMAT, "remote %s: the token server %s answered no token",
                       r->url, realm);
    if (e == 0) {
        free(r->bearer);
        r->bearer = strdup(tok);
        if (!r->bearer)
            e = cairn__err(err, -ENOMEM, "out of memory");
        else
            cairn__http_redact(r->http, r->bearer);
        r->auth = AUTH_BEARER;
    }
    json_decref(j);
    op_free(&op);
    return e;
}

static int auth_challenge(cairn__remote *r, const char *ch, cairn_error *err)
{
    if (!strncasecmp(ch, "Bearer", 6))
        return fetch_token(r, ch, err);
    if (!strncasecmp(ch, "Basic", 5)) {
        if (!r->basic)
            return cairn__err(err, -EACCES, "remote %s: the registry asks for credentials "
                              "(Basic) and none are given for %s (auths.\"%s\" of "
                              "REGISTRY_AUTH_FILE or ~/.docker/config.json)",
                              r->url, r->host, r->host);
        r->auth = AUTH_BASIC;
        return 0;
    }
    return cairn__err(err, -EPROTONOSUPPORT, "remote %s: the registry asks for an "
                      "authentication scheme cairn does not speak (Basic and Bearer)", r->url);
}

/* GET /v2/: which authentication the registry wants, and whether it takes
 * the credentials. */
static int ping(cairn__remote *r, cairn_error *err)
{
    char what[512];
    snprintf(what, sizeof(what), "remote %s", r->url);
    for (int pass = 0; pass < 2; pass++) {
        ociop op;
        int e = op_init(r, &op, "GET", "/v2/", what, err);
        if (e < 0)
            return e;
        op.q.allow = 401;
        e = cairn__http_one(r->http, &op.q, err);
        if (e == 0 && op.q.status == 401) {
            _cleanup_free_ char *ch = cairn__http_header(&op.q, "WWW-Authenticate");
            if (pass > 0)
                e = cairn__err(err, -EACCES, "remote %s: the registry refused the credentials "
                               "for %s (answer 401)", r->url, r->host);
            else if (!ch)
                e = cairn__err(err, -EACCES, "remote %s: the registry answered 401 without a "
                               "challenge (WWW-Authenticate)", r->url);
            else
                e = auth_challenge(r, ch, err);
            op_free(&op);
            if (e < 0)
                return e;
            continue; /* once more, with what the challenge asked */
        }
        if (e == 0 && op.q.status != 200 && op.q.status != 204)
            e = cairn__err(err, -EPROTO, "remote %s: GET /v2/ answered %ld: not a registry of "
                           "the distribution spec", r->url, op.q.status);
        op_free(&op);
        return e;
    }
    return 0;
}

static void oci_close(cairn__remote *r)
{
    if (!r)
        return;
    cairn__http_free(r->http);
    if (r->basic)
        explicit_bzero(r->basic, strlen(r->basic));
    if (r->bearer)
        explicit_bzero(r->bearer, strlen(r->bearer));
    free(r->basic);
    free(r->bearer);
    free(r->url);
    free(r->base);
    free(r->host);
    free(r->repo);
    free(r);
}

static int oci_open(const cairn__remote_conf *conf, cairn__remote **out, cairn_error *err)
{
    const char *url = conf->url;
    if (strncmp(url, "oci://", 6) != 0)
        return cairn__err(err, -EINVAL, "remote %s: not an oci:// URL", url);
    const char *host = url + 6;
    size_t hn = strcspn(host, "/");
    if (hn == 0 || !host[hn] || !host[hn + 1])
        return cairn__err(err, -EINVAL, "remote %s: expected oci://host[:port]/repository", url);
    if (memchr(host, '@', hn) || strpbrk(host, "?#"))
        return cairn__err(err, -EINVAL, "remote %s: expected oci://host[:port]/repository (no "
                          "credentials, query or fragment)", url);
    cairn__remote *r = calloc(1, sizeof(*r));
    if (!r)
        return cairn__err(err, -ENOMEM, "out of memory");
    r->host = strndup(host, hn);
    r->repo = strdup(host + hn + 1);
    r->url = strdup(url);
    size_t rl = r->repo ? strlen(r->repo) : 0;
    if (rl && r->repo[rl - 1] == '/')
        r->repo[rl - 1] = 0;
    if (!r->host || !r->repo || !r->url) {
        oci_close(r);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    if (!repo_ok(r->repo)) {
        int e = cairn__err(err, -EINVAL, "remote %s: repository '%s': expected lower-case "
                           "[a-z0-9]+([._-][a-z0-9]+)* components joined by '/'", url, r->repo);
        oci_close(r);
        return e;
    }
    bool plain = conf->insecure || loopback(r->host);
    if (asprintf(&r->base, "%s://%s", plain ? "http" : "https", r->host) < 0) {
        r->base = NULL;
        oci_close(r);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    r->threshold = env_size("CAIRN_OCI_CHUNK_THRESHOLD", 64 * MIB, 1);
    r->chunk = env_size("CAIRN_OCI_CHUNK_SIZE", 16 * MIB, 1024);
    int e = cairn__http_new(conf->jobs, &r->http, err);
    if (e == 0)
        e = load_credentials(r, conf->auth_file, err);
    if (e >= 0)
        e = ping(r, err);
    if (e < 0) {
        oci_close(r);
        return e;
    }
    *out = r;
    return 0;
}

/* ---- blobs ------------------------------------------------------------- */

static bool digest_ok(const char *d)
{
    if (strncmp(d, "sha256:", 7) != 0 || strlen(d) != CAIRN_DIGEST_LEN)
        return false;
    for (const char *p = d + 7; *p; p++)
        if (!isxdigit((unsigned char)*p) || isupper((unsigned char)*p))
            return false;
    return true;
}

static int bad_digest(cairn__remote *r, const char *d, cairn_error *err)
{
    return cairn__err(err, -EINVAL, "remote %s: '%s' is not a sha256 digest", r->url, d);
}

static int oci_blobs_have(cairn__remote *r, const char *const *digests, size_t n,
                          uint8_t *present, cairn_error *err)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!digest_ok(digests[i]))
            return bad_digest(r, digests[i], err);
    ociop *ops = calloc(n, sizeof(*ops));
    cairn__http_req **qs = calloc(n, sizeof(*qs));
    int e = ops && qs ? 0 : cairn__err(err, -ENOMEM, "out of memory");
    size_t made = 0;
    for (; made < n && e == 0; made++) {
        char path[1024], what[1024];
        snprintf(path, sizeof(path), "/v2/%s/blobs/%s", r->repo, digests[made]);
        snprintf(what, sizeof(what), "remote %s: blob %s", r->url, digests[made]);
        e = op_init(r, &ops[made], "HEAD", path, what, err);
        if (e < 0)
            break;
        ops[made].q.allow = 404;
        qs[made] = &ops[made].q;
    }
    if (e == 0)
        e = run(r, qs, n, err);
    for (size_t i = 0; i < n && e == 0; i++)
        present[i] = ops[i].q.status == 404 ? 0 : 1;
    for (size_t i = 0; i < made && ops; i++)
        op_free(&ops[i]);
    free(ops);
    free(qs);
    return e;
}

/* The Location of an upload's answer as a URL (relative: under the base). */
static char *location(cairn__remote *r, const cairn__http_req *q)
{
    _cleanup_free_ char *loc = cairn__http_header(q, "Location");
    if (!loc || !*loc)
        return NULL;
    char *u;
    if (!strncmp(loc, "http://", 7) || !strncmp(loc, "https://", 8))
        return steal_pointer(&loc);
    if (asprintf(&u, "%s%s%s", r->base, loc[0] == '/' ? "" : "/", loc) < 0)
        return NULL;
    return u;
}

/* POST .../blobs/uploads/: a new upload's URL. */
static int upload_start(cairn__remote *r, const char *what, char **loc, cairn_error *err)
{
    char path[1024];
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", r->repo);
    ociop op;
    int e = op_init(r, &op, "POST", path, what, err);
    if (e < 0)
        return e;
    e = run_one(r, &op, err);
    if (e == 0 && !(*loc = location(r, &op.q)))
        e = cairn__err(err, -EPROTO, "%s: POST %s%s: the registry answered %ld without a "
                       "Location", what, r->base, path, op.q.status);
    op_free(&op);
    return e;
}

/* Where an upload stands: *off the bytes it holds, *loc its URL now.
 * -ENOENT when the registry forgot it. */
static int upload_status(cairn__remote *r, char **loc, const char *what, uint64_t *off,
                         cairn_error *err)
{
    ociop op;
    int e = op_init(r, &op, "GET", *loc, what, err);
    if (e < 0)
        return e;
    op.q.allow = 404;
    e = run_one(r, &op, err);
    if (e == 0 && op.q.status == 404)
        e = -ENOENT;
    if (e == 0) {
        _cleanup_free_ char *range = cairn__http_header(&op.q, "Range");
        unsigned long long a, b;
        /* "0-<last>": 0-0 is one byte or none; none is the safe answer */
        if (!range || sscanf(range, "%llu-%llu", &a, &b) != 2 || a != 0)
            *off = 0;
        else
            *off = b == 0 ? 0 : b + 1;
        char *nl = location(r, &op.q);
        if (nl) {
            free(*loc);
            *loc = nl;
        }
    }
    op_free(&op);
    return e;
}

/* The URL that commits an upload: its Location with digest= added. */
static char *commit_url(const char *loc, const char *digest)
{
    char *u;
    const char *colon = strchr(digest, ':');
    if (asprintf(&u, "%s%sdigest=%.*s%%3A%s", loc, strchr(loc, '?') ? "&" : "?",
                 (int)(colon - digest), digest, colon + 1) < 0)
        return NULL;
    return u;
}

typedef struct upload_progress {
    cairn__remote_progress fn;
    void *ud;
    uint64_t base;
} upload_progress;

static void chunk_progress(void *ud, uint64_t done)
{
    upload_progress *p = ud;
    if (p->fn)
        p->fn(p->ud, p->base + done);
}

/* Upload bytes [0, size) of fd under digest: one PUT, or PATCHes of
 * r->chunk bytes then a PUT, resumed where the registry stands after a
 * failure. */
static int upload(cairn__remote *r, const char *digest, int fd, uint64_t size, const char *what,
                  cairn__remote_progress fn, void *ud, cairn_error *err)
{
    _cleanup_free_ char *loc = NULL;
    int e = upload_start(r, what, &loc, err);
    if (e < 0)
        return e;
    uint64_t off = 0;
    upload_progress up = {fn, ud, 0};
    if (size >= r->threshold) {
        unsigned resumes = 0;
        while (off < size) {
            uint64_t len = size - off < r->chunk ? size - off : r->chunk;
            ociop op;
            e = op_init(r, &op, "PATCH", loc, what, err);
            if (e < 0)
                return e;
            op.q.content_type = "application/octet-stream";
            snprintf(op.range, sizeof(op.range), "%llu-%llu", (unsigned long long)off,
                     (unsigned long long)(off + len - 1));
            op.q.body_fd = fd;
            op.q.body_off = off;
            op.q.body_size = len;
            up.base = off;
            op.q.progress = chunk_progress;
            op.q.progress_ud = &up;
            e = run_one(r, &op, err);
            char *nl = e == 0 ? location(r, &op.q) : NULL;
            bool client_error = e < 0 && op.q.status >= 400 && op.q.status < 500 &&
                                op.q.status != 416 && op.q.status != 404 &&
                                op.q.status != 429;
            op_free(&op);
            if (e == 0) {
                if (!nl)
                    return cairn__err(err, -EPROTO, "%s: PATCH: the registry answered "
                                      "without a Location", what);
                free(loc);
                loc = nl;
                off += len;
                continue;
            }
            if (client_error || ++resumes > RESUMES)
                return e;
            /* where does it stand? go on from there, or start again */
            cairn_error e2 = {0};
            int s = upload_status(r, &loc, what, &off, &e2);
            if (s == -ENOENT) {
                free(loc);
                loc = NULL;
                off = 0;
                s = upload_start(r, what, &loc, &e2);
            }
            if (s < 0) {
                if (err)
                    *err = e2;
                return s;
            }
            if (off > size)
                off = 0;
        }
    }
    _cleanup_free_ char *cu = commit_url(loc, digest);
    if (!cu)
        return cairn__err(err, -ENOMEM, "out of memory");
    ociop op;
    e = op_init(r, &op, "PUT", cu, what, err);
    if (e < 0)
        return e;
    op.q.content_type = "application/octet-stream";
    if (off < size) { /* monolithic: the whole blob in the PUT */
        op.q.body_fd = fd;
        op.q.body_off = 0;
        op.q.body_size = size;
        op.q.progress = fn;
        op.q.progress_ud = ud;
    }
    e = run_one(r, &op, err);
    op_free(&op);
    if (e == 0 && fn)
        fn(ud, size);
    return e;
}

static bool is_manifest_type(const char *mt)
{
    return mt && (!strcmp(mt, MT_MANIFEST) || !strcmp(mt, MT_INDEX));
}

/* PUT /manifests/<ref> with the bytes of fd or buf. */
static int put_manifest(cairn__remote *r, const char *ref, const char *media_type, int fd,
                        const void *buf, uint64_t size, const char *what, cairn_error *err)
{
    char path[1024];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", r->repo, ref);
    ociop op;
    int e = op_init(r, &op, "PUT", path, what, err);
    if (e < 0)
        return e;
    op.q.content_type = media_type;
    op.q.body = buf;
    op.q.body_fd = buf ? -1 : fd;
    op.q.body_size = size;
    e = run_one(r, &op, err);
    op_free(&op);
    return e;
}

static int oci_blob_put(cairn__remote *r, const char *digest, int fd, uint64_t size,
                        const char *media_type, cairn__remote_progress fn, void *ud,
                        cairn_error *err)
{
    if (!digest_ok(digest))
        return bad_digest(r, digest, err);
    char what[1024];
    snprintf(what, sizeof(what), "remote %s: blob %s", r->url, digest);
    if (is_manifest_type(media_type)) {
        if (size > DOC_MAX)
            return cairn__err(err, -EFBIG, "%s: a manifest over 4 MiB", what);
        int e = put_manifest(r, digest, media_type, fd, NULL, size, what, err);
        if (e == 0 && fn)
            fn(ud, size);
        return e;
    }
    uint8_t have = 0;
    const char *d = digest;
    int e = oci_blobs_have(r, &d, 1, &have, err);
    if (e < 0)
        return e;
    if (have) {
        if (fn)
            fn(ud, size);
        return 0;
    }
    return upload(r, digest, fd, size, what, fn, ud, err);
}

/* GET of a blob, else of a manifest by digest (the chunks of a state):
 * into fd, hashed as it streams. */
static int oci_blob_get(cairn__remote *r, const char *digest, int fd, cairn__remote_progress fn,
                        void *ud, cairn_error *err)
{
    if (!digest_ok(digest))
        return bad_digest(r, digest, err);
    char what[1024];
    snprintf(what, sizeof(what), "remote %s: blob %s", r->url, digest);
    static const char *const kinds[] = {"blobs", "manifests"};
    for (size_t k = 0; k < CAIRN_ARRAY_SIZE(kinds); k++) {
        char path[1024];
        snprintf(path, sizeof(path), "/v2/%s/%s/%s", r->repo, kinds[k], digest);
        ociop op;
        int e = op_init(r, &op, "GET", path, what, err);
        if (e < 0)
            return e;
        if (k == 1)
            op.accept = ACCEPT;
        op.q.allow = 404;
        op.q.follow = true;
        op.q.out_fd = fd;
        op.q.expect = digest;
        op.q.progress = fn;
        op.q.progress_ud = ud;
        e = run_one(r, &op, err);
        long status = op.q.status;
        op_free(&op);
        if (e < 0 || status != 404)
            return e;
    }
    return cairn__err(err, -ENOENT, "%s: not stored", what);
}

static int not_deletable(cairn__remote *r, const char *what, cairn_error *err)
{
    return cairn__err(err, -EOPNOTSUPP, "%s: the registry at %s does not allow deletes "
                      "(distribution: storage.delete.enabled, REGISTRY_STORAGE_DELETE_ENABLED="
                      "true)", what, r->host);
}

static int delete_ref(cairn__remote *r, const char *kind, const char *digest, const char *what,
                      cairn_error *err)
{
    char path[1024];
    snprintf(path, sizeof(path), "/v2/%s/%s/%s", r->repo, kind, digest);
    ociop op;
    int e = op_init(r, &op, "DELETE", path, what, err);
    if (e < 0)
        return e;
    op.q.allow = 404;
    e = run_one(r, &op, err);
    long status = op.q.status;
    _cleanup_free_ char *body = op.q.resp ? strdup(op.q.resp) : NULL;
    op_free(&op);
    if (e < 0 && (status == 405 || (body && strstr(body, "UNSUPPORTED"))))
        return not_deletable(r, what, err);
    return e;
}

static int oci_blob_delete(cairn__remote *r, const char *digest, cairn_error *err)
{
    if (!digest_ok(digest))
        return bad_digest(r, digest, err);
    char what[1024];
    snprintf(what, sizeof(what), "remote %s: blob %s", r->url, digest);
    return delete_ref(r, "blobs", digest, what, err);
}

static int oci_blobs_list(cairn__remote *r,
                          int (*fn)(void *ud, const char *digest, uint64_t size, int64_t mtime),
                          void *ud, cairn_error *err)
{
    /* the distribution spec lists no blobs: see the invariants */
    (void)r;
    (void)fn;
    (void)ud;
    (void)err;
    return 0;
}

/* ---- states ------------------------------------------------------------ */

static int member_tag(const char *tag, const char *digest, char out[TAG_MAX + 18])
{
    return snprintf(out, TAG_MAX + 18, "%s.%.16s", tag, cairn__digest_hex(digest));
}

static int oci_state_put(cairn__remote *r, const char *tag, const char *manifest_digest,
                         const void *buf, size_t len, cairn_error *err)
{
    if (!tag_ok(tag))
        return cairn__err(err, -EINVAL, "remote tag '%s': expected [A-Za-z0-9_.-], at most %d",
                          tag, TAG_MAX);
    if (!digest_ok(manifest_digest))
        return bad_digest(r, manifest_digest, err);
    char got[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(buf, len, got);
    if (strcmp(got, manifest_digest) != 0)
        return cairn__err(err, CAIRN_E_MISMATCH, "remote %s: state %s of %s: its bytes hash "
                          "to %s; not published", r->url, manifest_digest, tag, got);
    if (len > DOC_MAX)
        return cairn__err(err, -EFBIG, "remote %s: state %s: a manifest over 4 MiB", r->url,
                          manifest_digest);
    json_t *j = json_loadb(buf, len, 0, NULL);
    const char *mt = json_string_value(json_object_get(j, "mediaType"));
    char type[128];
    snprintf(type, sizeof(type), "%s", is_manifest_type(mt) ? mt : "");
    json_decref(j);
    if (!type[0])
        return cairn__err(err, CAIRN_E_FORMAT, "remote %s: state %s: not an OCI image manifest "
                          "or index", r->url, manifest_digest);
    char mtag[TAG_MAX + 18], what[1024];
    member_tag(tag, manifest_digest, mtag);
    snprintf(what, sizeof(what), "remote %s: state %s of %s", r->url, manifest_digest, tag);
    return put_manifest(r, mtag, type, -1, buf, len, what, err);
}

typedef int (*state_fn)(void *ud, const char *tag, const char *manifest_digest, int64_t mtime);

/* "<tag>.<16 hex>": the tag's length, 0 when not a member's name */
static size_t member_split(const char *name)
{
    size_t n = strlen(name);
    if (n < 18 || name[n - 17] != '.')
        return 0;
    for (size_t i = n - 16; i < n; i++)
        if (!isxdigit((unsigned char)name[i]) || isupper((unsigned char)name[i]))
            return 0;
    return n - 17;
}

/* The registry's tags, every page (Link: <...>; rel="next"); with a
 * prefix ("<tag>."), from just before it (`last`, the distribution spec's
 * pagination: tags in lexical order after it) and no further than its
 * last: a registry that honours `last` lists a tag's members, not the
 * repository. One that does not (the first page starts before the prefix,
 * or a page is out of order) is read to the end; the caller filters. */
static int tags_all(cairn__remote *r, const char *prefix, cairn__strv *out, cairn_error *err)
{
    char what[1024];
    snprintf(what, sizeof(what), "remote %s: tags", r->url);
    _cleanup_free_ char *next = NULL;
    if ((prefix ? asprintf(&next, "/v2/%s/tags/list?n=1000&last=%s", r->repo, prefix)
                : asprintf(&next, "/v2/%s/tags/list?n=1000", r->repo)) < 0) {
        next = NULL;
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    size_t plen = prefix ? strlen(prefix) : 0;
    bool ordered = prefix != NULL, past = false;
    for (unsigned page = 0; next && !past; page++) {
        if (page > 100000)
            return cairn__err(err, -ELOOP, "%s: the listing does not end", what);
        ociop op;
        int e = op_init(r, &op, "GET", next, what, err);
        if (e < 0)
            return e;
        op.q.allow = 404; /* no repository yet: no tag */
        e = run_one(r, &op, err);
        free(next);
        next = NULL;
        if (e == 0 && op.q.status == 200) {
            json_t *j = json_loadb(op.q.resp, op.q.resp_len, 0, NULL);
            json_t *tags = json_object_get(j, "tags");
            if (!j || (tags && !json_is_array(tags) && !json_is_null(tags)))
                e = cairn__err(err, CAIRN_E_FORMAT, "%s: the registry's answer is not a tag "
                               "list", what);
            size_t i;
            json_t *t;
            /* the whole page in order after the prefix (and the last page),
             * or the registry ignored `last` (distribution 2.8 does, and
             * lists in no order): then every tag is kept */
            const char *prev = out->n ? out->v[out->n - 1] : prefix;
            json_array_foreach(tags, i, t)
            {
                const char *v = json_string_value(t);
                if (ordered && (!v || (prev && strcmp(v, prev) <= 0)))
                    ordered = false;
                prev = v;
            }
            json_array_foreach(tags, i, t)
            {
                const char *v = json_string_value(t);
                if (e < 0 || !v)
                    continue;
                if (ordered && strncmp(v, prefix, plen) != 0) {
                    past = true; /* the tags after the prefix's last */
                    break;
                }
                if (cairn__strv_push(out, v) < 0)
                    e = cairn__err(err, -ENOMEM, "out of memory");
            }
            json_decref(j);
            _cleanup_free_ char *link = cairn__http_header(&op.q, "Link");
            const char *lt = link ? strchr(link, '<') : NULL;
            const char *gt = lt ? strchr(lt, '>') : NULL;
            if (e == 0 && !past && gt && strstr(gt, "rel=\"next\"") && gt > lt + 1) {
                next = strndup(lt + 1, (size_t)(gt - lt - 1));
                if (!next)
                    e = cairn__err(err, -ENOMEM, "out of memory");
            }
        }
        op_free(&op);
        if (e < 0)
            return e;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int oci_states_list(cairn__remote *r, const char *tag, state_fn fn, void *ud,
                           cairn_error *err)
{
    if (tag && !tag_ok(tag))
        return cairn__err(err, -EINVAL, "remote tag '%s': expected [A-Za-z0-9_.-], at most %d",
                          tag, TAG_MAX);
    cairn__strv all = {0}, names = {0};
    char prefix[TAG_MAX + 2];
    if (tag)
        snprintf(prefix, sizeof(prefix), "%s.", tag);
    int e = tags_all(r, tag ? prefix : NULL, &all, err);
    for (size_t i = 0; e == 0 && i < all.n; i++) {
        size_t tn = member_split(all.v[i]);
        char t[TAG_MAX + 1];
        if (tn == 0 || tn > TAG_MAX)
            continue;
        snprintf(t, sizeof(t), "%.*s", (int)tn, all.v[i]);
        if ((tag ? strcmp(t, tag) != 0 : !tag_ok(t)))
            continue;
        if (cairn__strv_push(&names, all.v[i]) < 0)
            e = cairn__err(err, -ENOMEM, "out of memory");
    }
    cairn__strv_free(&all);
    if (names.n > 1)
        qsort(names.v, names.n, sizeof(*names.v), cmp_str);
    /* each member's digest: HEAD of its tag, in parallel */
    size_t n = names.n;
    ociop *ops = n ? calloc(n, sizeof(*ops)) : NULL;
    cairn__http_req **qs = n ? calloc(n, sizeof(*qs)) : NULL;
    if (e == 0 && n && (!ops || !qs))
        e = cairn__err(err, -ENOMEM, "out of memory");
    size_t made = 0;
    for (; e == 0 && made < n; made++) {
        char path[1024], what[1024];
        snprintf(path, sizeof(path), "/v2/%s/manifests/%s", r->repo, names.v[made]);
        snprintf(what, sizeof(what), "remote %s: state %s", r->url, names.v[made]);
        e = op_init(r, &ops[made], "HEAD", path, what, err);
        if (e < 0)
            break;
        ops[made].accept = ACCEPT;
        ops[made].q.allow = 404; /* taken out since the listing */
        qs[made] = &ops[made].q;
    }
    if (e == 0 && n)
        e = run(r, qs, n, err);
    for (size_t i = 0; e == 0 && i < n; i++) {
        if (ops[i].q.status == 404)
            continue;
        _cleanup_free_ char *d = cairn__http_header(&ops[i].q, "Docker-Content-Digest");
        size_t tn = member_split(names.v[i]);
        if (!d || !digest_ok(d) || strncmp(cairn__digest_hex(d), names.v[i] + tn + 1, 16) != 0)
            continue; /* not a state's member: see the invariants */
        char t[TAG_MAX + 1];
        snprintf(t, sizeof(t), "%.*s", (int)tn, names.v[i]);
        /* the registry keeps no time a tag: 0, unknown */
        int rv = fn(ud, t, d, 0);
        if (rv < 0)
            e = rv == -ENOMEM ? cairn__err(err, rv, "out of memory") : rv;
    }
    for (size_t i = 0; i < made && ops; i++)
        op_free(&ops[i]);
    free(ops);
    free(qs);
    cairn__strv_free(&names);
    return e;
}

static int oci_state_get(cairn__remote *r, const char *tag, const char *manifest_digest,
                         char **buf, size_t *len, cairn_error *err)
{
    if (!digest_ok(manifest_digest))
        return bad_digest(r, manifest_digest, err);
    char path[1024], what[1024];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", r->repo, manifest_digest);
    snprintf(what, sizeof(what), "remote %s: state %s of %s", r->url, manifest_digest,
             tag ? tag : "");
    ociop op;
    int e = op_init(r, &op, "GET", path, what, err);
    if (e < 0)
        return e;
    op.accept = ACCEPT;
    op.q.resp_max = DOC_MAX + 1;
    op.q.expect = manifest_digest;
    op.q.allow = 404;
    e = run_one(r, &op, err);
    if (e == 0 && op.q.status == 404)
        e = cairn__err(err, -ENOENT, "%s: not stored", what);
    if (e == 0) {
        *buf = op.q.resp ? op.q.resp : strdup("");
        *len = op.q.resp_len;
        op.q.resp = NULL;
        if (!*buf)
            e = cairn__err(err, -ENOMEM, "out of memory");
    }
    op_free(&op);
    return e;
}

static int oci_state_delete(cairn__remote *r, const char *tag, const char *manifest_digest,
                            cairn_error *err)
{
    if (!digest_ok(manifest_digest))
        return bad_digest(r, manifest_digest, err);
    char what[1024];
    snprintf(what, sizeof(what), "remote %s: state %s of %s", r->url, manifest_digest, tag);
    /* by digest (distribution 2.8 deletes no tag alone): it takes the
     * member's tag with it, and no other, a state's manifest naming its tag */
    return delete_ref(r, "manifests", manifest_digest, what, err);
}

const cairn__remote_ops cairn__remote_oci = {
    .scheme = "oci",
    .open = oci_open,
    .close = oci_close,
    .blobs_have = oci_blobs_have,
    .blob_put = oci_blob_put,
    .blob_get = oci_blob_get,
    .blob_delete = oci_blob_delete,
    .blobs_list = oci_blobs_list,
    .state_put = oci_state_put,
    .states_list = oci_states_list,
    .state_get = oci_state_get,
    .state_delete = oci_state_delete,
};
