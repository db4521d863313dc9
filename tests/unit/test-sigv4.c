/* test-sigv4.c: cairn's AWS Signature V4 against botocore's signer
 * (tests/unit/sigv4-botocore.py) on the same requests: listings with
 * continuation tokens holding '=' '/' '+', multipart, payload hashes, HEAD,
 * DELETE, a session token. Skipped (77) when botocore is not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>

#include "remote/sigv4.h"

typedef struct tcase {
    const char *method, *path, *body;
    const char *q[8]; /* name, value pairs; value NULL: "name" alone */
    size_t nq;
    bool signed_payload;
    const char *token;
    const char *headers[4]; /* name, value pairs, signed too */
    size_t nh;
} tcase;

static const char AK[] = "AKIAIOSFODNN7EXAMPLE";
static const char SK[] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
static const int64_t T = 1715000000; /* 2024-05-06 */
static const char HOST[] = "127.0.0.1:9000";

static const tcase cases[] = {
    {"GET",
     "/bucket/",
     "",
     {"list-type", "2", "prefix", "p/blobs/sha256/", "max-keys", "2"},
     3,
     false,
     NULL,
     {0},
     0},
    {"GET",
     "/bucket/",
     "",
     {"list-type", "2", "prefix", "p/blobs/sha256/", "continuation-token", "1a+b/c=d==e/f+g",
      "max-keys", "1000"},
     4,
     false,
     NULL,
     {0},
     0},
    {"PUT", "/bucket/p/blobs/sha256/abc", "hello world", {0}, 0, true, NULL, {0}, 0},
    {"POST", "/bucket/p/blobs/sha256/abc", "", {"uploads", NULL}, 1, false, NULL, {0}, 0},
    {"PUT",
     "/bucket/p/blobs/sha256/abc",
     "part one",
     {"uploadId", "2~Xq/Ab+Cd=", "partNumber", "12"},
     2,
     true,
     NULL,
     {0},
     0},
    {"GET",
     "/bucket/",
     "",
     {"uploads", NULL, "prefix", "p/blobs/sha256/abc"},
     2,
     false,
     NULL,
     {0},
     0},
    {"HEAD", "/bucket/p/blobs/sha256/abc", "", {0}, 0, false, NULL, {0}, 0},
    {"DELETE", "/bucket/p/states/t/abc", "", {0}, 0, false, NULL, {0}, 0},
    {"GET",
     "/bucket/p/states/t/abc",
     "",
     {0},
     0,
     false,
     "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+token==",
     {0},
     0},
    {"PUT",
     "/bucket/p/states/t/abc",
     "{\"a\": 1}",
     {0},
     0,
     true,
     "FQoGZXIvYXdzEJr/session+token=",
     {"Content-Type", "application/json", "x-amz-meta-note", "  two   words  "},
     2},
};

static void signatures_match_botocore(void **unused)
{
    (void)unused;
    const char *root = getenv("SOURCE_ROOT");
    if (!root)
        root = ".";
    char spec[] = "/tmp/cairn-sigv4-XXXXXX";
    int fd = mkstemp(spec);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    char *ours[CAIRN_ARRAY_SIZE(cases)];
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(cases); i++) {
        const tcase *c = &cases[i];
        cairn__kv q[4], h[2];
        json_t *params = json_object(), *headers = json_object();
        for (size_t j = 0; j < c->nq; j++) {
            q[j] = (cairn__kv){c->q[2 * j], c->q[2 * j + 1]};
            json_object_set_new(params, c->q[2 * j],
                                json_string(c->q[2 * j + 1] ? c->q[2 * j + 1] : ""));
        }
        for (size_t j = 0; j < c->nh; j++) {
            h[j] = (cairn__kv){c->headers[2 * j], c->headers[2 * j + 1]};
            json_object_set_new(headers, c->headers[2 * j], json_string(c->headers[2 * j + 1]));
        }
        char payload[CAIRN_DIGEST_LEN + 1] = "";
        if (c->signed_payload)
            cairn__sha256_buf(c->body, strlen(c->body), payload);
        cairn__sigv4_key key = {AK, SK, c->token, "us-east-1", "s3"};
        cairn__strv out = {0};
        assert_int_equal(
            cairn__sigv4_sign(&key, c->method, HOST, c->path, q, c->nq, h, c->nh,
                              c->signed_payload ? cairn__digest_hex(payload) : CAIRN_SIGV4_UNSIGNED,
                              T, &out),
            0);
        assert_true(out.n >= 3);
        assert_true(!strncmp(out.v[0], "Authorization: ", 15));
        ours[i] = strdup(out.v[0] + 15);
        assert_int_equal(out.n, c->token ? 4u : 3u);
        cairn__strv_free(&out);

        char url[512];
        snprintf(url, sizeof(url), "http://%s%s", HOST, c->path);
        json_t *j = json_pack("{s:s, s:s, s:o, s:s, s:b, s:s, s:s, s:s, s:I, s:o}", "method",
                              c->method, "url", url, "params", params, "body", c->body, "signed",
                              c->signed_payload, "access_key", AK, "secret_key", SK, "region",
                              "us-east-1", "time", (json_int_t)T, "headers", headers);
        assert_non_null(j);
        if (c->token)
            json_object_set_new(j, "token", json_string(c->token));
        char *line = json_dumps(j, JSON_COMPACT);
        fprintf(f, "%s\n", line);
        free(line);
        json_decref(j);
    }
    assert_int_equal(fclose(f), 0);

    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "python3 '%s/tests/unit/sigv4-botocore.py' '%s'", root, spec);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[2048];
    size_t n = 0;
    while (fgets(line, sizeof(line), p)) {
        line[strcspn(line, "\n")] = 0;
        assert_true(n < CAIRN_ARRAY_SIZE(cases));
        if (strcmp(line, ours[n]) != 0)
            fail_msg("request %zu (%s %s): botocore signs\n  %s\ncairn signs\n  %s", n,
                     cases[n].method, cases[n].path, line, ours[n]);
        n++;
    }
    int st = pclose(p);
    unlink(spec);
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(cases); i++)
        free(ours[i]);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
        skip();
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(n, CAIRN_ARRAY_SIZE(cases));
}

/* The query sent is the query signed: sorted, encoded once, "uploads" bare. */
static void query_sorted_and_encoded(void **unused)
{
    (void)unused;
    cairn__kv q[] = {{"uploadId", "a+b/c="}, {"partNumber", "3"}, {"uploads", NULL}};
    char *s = NULL;
    assert_int_equal(cairn__sigv4_query(q, 3, &s), 0);
    assert_string_equal(s, "partNumber=3&uploadId=a%2Bb%2Fc%3D&uploads=");
    free(s);
    assert_int_equal(cairn__sigv4_url_query(q, 3, &s), 0);
    assert_string_equal(s, "partNumber=3&uploadId=a%2Bb%2Fc%3D&uploads");
    free(s);
    char *e = NULL;
    size_t len = 0;
    assert_int_equal(cairn__uri_encode(&e, &len, "a b/c~d_e.f-g%", true), 0);
    assert_string_equal(e, "a%20b/c~d_e.f-g%25");
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(query_sorted_and_encoded),
        cmocka_unit_test(signatures_match_botocore),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
