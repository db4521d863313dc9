/* test-remote.c: remotes through the library: their configuration, the
 * file backend's contract (remote/backend.h), and what a push carries and
 * leaves behind (local rows never travel). */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "remote/backend.h"

#include <jansson.h>

static int count_remote(void *ud, const char *name, const char *url)
{
    (void)name;
    (void)url;
    (*(int *)ud)++;
    return 0;
}

static void test_config(void **state)
{
    (void)state;
    cairn_error t_err = {0};
    char *dir = t_scratch("remote-config");
    cairn_state *st = t_state(dir, "s");
    T_OK(cairn_remote_add(st, "origin", "file:///srv/cache", &t_err));
    T_OK(cairn_remote_add(st, "origin", "file:///srv/cache", &t_err)); /* the same: fine */
    assert_int_equal(cairn_remote_add(st, "origin", "file:///other", &t_err), -EEXIST);
    assert_int_equal(cairn_remote_add(st, "Bad Name", "file:///x", &t_err), -EINVAL);
    assert_int_equal(cairn_remote_add(st, "s", "s3://AKIA:secret@bucket/p", &t_err), -EINVAL);
    assert_null(strstr(t_err.message, "secret"));
    assert_int_equal(cairn_remote_add(st, "s", "gopher://x/y", &t_err), -EPROTONOSUPPORT);
    T_OK(cairn_remote_add(st, "bucket", "s3://bucket/prefix", &t_err));
    char url[CAIRN_REMOTE_URL_MAX + 1];
    T_OK(cairn_remote_url(st, "origin", url, sizeof(url), &t_err));
    assert_string_equal(url, "file:///srv/cache");
    T_OK(cairn_remote_url(NULL, "file:///direct", url, sizeof(url), &t_err));
    assert_string_equal(url, "file:///direct");
    assert_int_equal(cairn_remote_url(st, "nosuch", url, sizeof(url), &t_err), -ENOENT);
    int n = 0;
    T_OK(cairn_remote_list(st, count_remote, &n, &t_err));
    assert_int_equal(n, 2);
    T_OK(cairn_remote_remove(st, "bucket", &t_err));
    assert_int_equal(cairn_remote_remove(st, "bucket", &t_err), -ENOENT);
    /* a remote is local: a freeze or a merge of the state does not carry it */
    cairn_state_free(st);
    t_scratch_free(dir);
}

static int count_state(void *ud, const char *tag, const char *digest, int64_t mtime)
{
    (void)tag;
    (void)digest;
    assert_true(mtime > 0);
    (*(int *)ud)++;
    return 0;
}

/* Entries of the OCI index at path (naming digest, when not NULL); -1 when
 * it does not parse. */
static int index_count(const char *path, const char *digest)
{
    json_t *idx = json_load_file(path, 0, NULL);
    json_t *mv = json_object_get(idx, "manifests");
    int n = json_is_array(mv) ? 0 : -1;
    size_t i;
    json_t *e;
    json_array_foreach(mv, i, e)
    {
        const char *d = json_string_value(json_object_get(e, "digest"));
        n += !digest || (d && !strcmp(d, digest));
    }
    json_decref(idx);
    return n;
}

/* The file backend: names by digest, a tag a set of members, an index for
 * OCI tools rebuilt from the members. */
static void test_file_backend(void **state)
{
    (void)state;
    cairn_error t_err = {0};
    char *dir = t_scratch("remote-file");
    char *url = NULL;
    assert_true(asprintf(&url, "file://%s/r", dir) > 0);
    cairn__remote_conf conf = {.url = url};
    cairn__remote *r = NULL;
    T_OK(cairn__remote_file.open(&conf, &r, &t_err));

    static const char blob[] = "some bytes";
    char digest[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(blob, sizeof(blob) - 1, digest);
    const char *dv[] = {digest};
    uint8_t have = 9;
    T_OK(cairn__remote_file.blobs_have(r, dv, 1, &have, &t_err)); /* nothing there yet */
    assert_int_equal(have, 0);
    int tfd = memfd_create("t", 0);
    assert_int_equal(write(tfd, blob, sizeof(blob) - 1), (ssize_t)sizeof(blob) - 1);
    T_OK(cairn__remote_file.blob_put(r, digest, tfd, sizeof(blob) - 1, "", NULL, NULL, &t_err));
    T_OK(cairn__remote_file.blob_put(r, digest, tfd, sizeof(blob) - 1, "", NULL, NULL, &t_err));
    close(tfd);
    T_OK(cairn__remote_file.blobs_have(r, dv, 1, &have, &t_err));
    assert_int_equal(have, 1);
    char missing[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf("x", 1, missing);
    int out = memfd_create("o", 0);
    assert_int_equal(cairn__remote_file.blob_get(r, missing, out, NULL, NULL, &t_err), -ENOENT);
    T_OK(cairn__remote_file.blob_get(r, digest, out, NULL, NULL, &t_err));
    char back[64] = "";
    assert_int_equal(pread(out, back, sizeof(back), 0), (ssize_t)sizeof(blob) - 1);
    assert_string_equal(back, blob);
    close(out);

    /* two members under one tag: both listed, both in index.json */
    static const char m1[] = "{\"a\":1}", m2[] = "{\"a\":2}";
    char d1[CAIRN_DIGEST_LEN + 1], d2[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(m1, sizeof(m1) - 1, d1);
    cairn__sha256_buf(m2, sizeof(m2) - 1, d2);
    T_OK(cairn__remote_file.state_put(r, "main", d1, m1, sizeof(m1) - 1, &t_err));
    T_OK(cairn__remote_file.state_put(r, "main", d2, m2, sizeof(m2) - 1, &t_err));
    T_OK(cairn__remote_file.state_put(r, "main", d2, m2, sizeof(m2) - 1, &t_err)); /* idempotent */
    assert_int_equal(cairn__remote_file.state_put(r, "../up", d1, m1, 7, &t_err), -EINVAL);
    int n = 0;
    T_OK(cairn__remote_file.states_list(r, "main", count_state, &n, &t_err));
    assert_int_equal(n, 2);
    char *buf = NULL;
    size_t len = 0;
    T_OK(cairn__remote_file.state_get(r, "main", d2, &buf, &len, &t_err));
    assert_int_equal(len, sizeof(m2) - 1);
    free(buf);
    char *idx = NULL;
    assert_true(asprintf(&idx, "%s/r/index.json", dir) > 0);
    FILE *f = fopen(idx, "r");
    assert_non_null(f);
    char text[4096] = "";
    assert_true(fread(text, 1, sizeof(text) - 1, f) > 0);
    fclose(f);
    assert_non_null(strstr(text, d1));
    assert_non_null(strstr(text, d2));
    assert_int_equal(index_count(idx, NULL), 2); /* the same state again: no second entry */
    T_OK(cairn__remote_file.state_delete(r, "main", d1, &t_err));
    n = 0;
    T_OK(cairn__remote_file.states_list(r, NULL, count_state, &n, &t_err));
    assert_int_equal(n, 1);
    assert_int_equal(index_count(idx, d1), 0);
    assert_int_equal(index_count(idx, d2), 1);
    /* a publish adds its entry to the index as it is; an index of another
     * shape (or none) is rebuilt from the states */
    static const char m3[] = "{\"a\":3}";
    char d3[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(m3, sizeof(m3) - 1, d3);
    T_OK(cairn__remote_file.state_put(r, "other", d3, m3, sizeof(m3) - 1, &t_err));
    assert_int_equal(index_count(idx, NULL), 2);
    assert_int_equal(index_count(idx, d3), 1);
    f = fopen(idx, "w");
    assert_non_null(f);
    fputs("{\"schemaVersion\":2,\"manifests\":[{\"cut", f);
    fclose(f);
    T_OK(cairn__remote_file.state_delete(r, "other", d3, &t_err));
    assert_int_equal(index_count(idx, NULL), 1);
    assert_int_equal(index_count(idx, d2), 1);
    unlink(idx);
    T_OK(cairn__remote_file.state_put(r, "other", d3, m3, sizeof(m3) - 1, &t_err));
    assert_int_equal(index_count(idx, NULL), 2);
    /* the manifest's blob stays: removing objects is gc's */
    T_OK(cairn__remote_file.blob_delete(r, digest, &t_err));
    T_OK(cairn__remote_file.blob_delete(r, digest, &t_err)); /* missing is not an error */
    cairn__remote_file.close(r);
    free(idx);
    free(url);
    t_scratch_free(dir);
}

static int count_lease(void *ud, const cairn_lease_info *l)
{
    (void)l;
    (*(int *)ud)++;
    return 0;
}

/* A push carries the shared rows and objects, never the local ones (leases,
 * active snapshots, remotes); a pull brings them back verified. */
static void test_push_pull(void **state)
{
    (void)state;
    cairn_error t_err = {0};
    char *dir = t_scratch("remote-push");
    cairn_state *a = t_state(dir, "a");
    cairn_state *b = t_state(dir, "b");
    char *url = NULL;
    assert_true(asprintf(&url, "file://%s/remote", dir) > 0);
    T_OK(cairn_remote_add(a, "origin", url, &t_err));
    char d[CAIRN_DIGEST_LEN + 1];
    cairn_blob_put_options po = CAIRN_BLOB_PUT_OPTIONS_INIT;
    po.media_type = "application/vnd.example+json";
    T_OK(cairn_blob_put_buf(a, "{}", 2, &po, d, &t_err));
    T_OK(cairn_lease_create(a, "session", 3600, NULL, &t_err));
    cairn_remote_stats s = {0};
    char m[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_remote_push(a, "origin", "t", NULL, &s, m, &t_err));
    assert_int_equal(s.objects, 1);
    assert_int_equal(s.objects_moved, 1);
    assert_int_equal(s.bytes_moved, 2);
    assert_int_equal(cairn_remote_pull(b, "origin", "t", NULL, &s, &t_err), -ENOENT);
    T_OK(cairn_remote_pull(b, url, "t", NULL, &s, &t_err));
    assert_int_equal(s.objects_moved, 1);
    cairn_blob_info bi;
    T_OK(cairn_blob_stat(b, d, &bi, &t_err));
    assert_string_equal(bi.media_type, "application/vnd.example+json");
    int n = 0;
    T_OK(cairn_remote_list(b, count_remote, &n, &t_err));
    assert_int_equal(n, 0);
    T_OK(cairn_lease_list(b, count_lease, &n, &t_err));
    assert_int_equal(n, 0);
    assert_int_equal(cairn_remote_pull(b, url, "nosuch", NULL, &s, &t_err), -ENOENT);
    assert_non_null(strstr(t_err.message, "no state under tag nosuch"));
    cairn_state_free(a);
    cairn_state_free(b);
    free(url);
    t_scratch_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_file_backend),
        cmocka_unit_test(test_push_pull),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
