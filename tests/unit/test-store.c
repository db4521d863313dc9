/* test-store.c: the content store: ingest, read, list, remove, labels,
 * batches, and the invariants a crash or bad input must not break. */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* sha256("hello\n") */
static const char HELLO[] = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

typedef struct fixture {
    char *dir;
    cairn_state *st;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    f->dir = t_scratch("store");
    f->st = t_state(f->dir, "s");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cairn_state_free(f->st);
    t_scratch_free(f->dir);
    free(f);
    return 0;
}

static char *blob_path(fixture *f, const char *digest)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/s/blobs/sha256/%s", f->dir, digest + 7) > 0);
    return p;
}

static int count_tmp(fixture *f)
{
    char *cmd = NULL;
    assert_true(asprintf(&cmd, "test -z \"$(ls -A '%s/s/tmp')\"", f->dir) > 0);
    int r = system(cmd);
    free(cmd);
    return r == 0 ? 0 : 1;
}

static void test_put_get(void **state)
{
    fixture *f = *state;
    cairn_error t_err = {0};
    char d[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_put_buf(f->st, "hello\n", 6, NULL, d, &t_err));
    assert_string_equal(d, HELLO);
    assert_int_equal(cairn_blob_exists(f->st, HELLO, &t_err), 1);

    void *buf = NULL;
    size_t len = 0;
    T_OK(cairn_blob_read(f->st, HELLO, &buf, &len, &t_err));
    assert_int_equal(len, 6);
    assert_memory_equal(buf, "hello\n", 6);
    free(buf);

    cairn_blob_info in;
    T_OK(cairn_blob_stat(f->st, HELLO, &in, &t_err));
    assert_int_equal(in.size, 6);
    assert_int_equal(in.lower, 0);

    /* The file is read-only and named by its digest. */
    char *p = blob_path(f, HELLO);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0444);
    free(p);
    assert_int_equal(count_tmp(f), 0);
}

static void test_put_again_writes_nothing(void **state)
{
    fixture *f = *state;
    cairn_error t_err = {0};
    char d[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_put_buf(f->st, "hello\n", 6, NULL, d, &t_err));
    char *p = blob_path(f, HELLO);
    struct stat a, b;
    assert_int_equal(stat(p, &a), 0);
    T_OK(cairn_blob_put_buf(f->st, "hello\n", 6, NULL, d, &t_err));
    assert_int_equal(stat(p, &b), 0);
    assert_int_equal(a.st_ino, b.st_ino); /* the same file, not a new copy */
    free(p);
    cairn_state_info in;
    T_OK(cairn_state_info_get(f->st, &in, &t_err));
    assert_int_equal(in.blobs.count, 1);
    assert_int_equal(count_tmp(f), 0);
}

static void test_expected_digest(void **state)
{
    fixture *f = *state;
    cairn_error err = {0};
    cairn_blob_put_options o = CAIRN_BLOB_PUT_OPTIONS_INIT;
    o.expected = HELLO;
    char d[CAIRN_DIGEST_LEN + 1] = "untouched";
    assert_int_equal(cairn_blob_put_buf(f->st, "hellO\n", 6, &o, d, &err), CAIRN_E_MISMATCH);
    assert_non_null(strstr(err.message, HELLO));
    assert_string_equal(d, "untouched"); /* no output on failure */
    assert_int_equal(cairn_blob_exists(f->st, HELLO, &err), 0);
    assert_int_equal(count_tmp(f), 0);

    /* Other algorithms and malformed digests are refused before reading. */
    o.expected = "sha512:abcd";
    assert_int_equal(cairn_blob_put_buf(f->st, "x", 1, &o, d, &err), CAIRN_E_DIGEST);
    assert_non_null(strstr(err.message, "sha512"));
    o.expected = "sha256:XYZ";
    assert_int_equal(cairn_blob_put_buf(f->st, "x", 1, &o, d, &err), CAIRN_E_DIGEST);

    /* A short stream with a size to expect: truncated, nothing stored. */
    o.expected = NULL;
    o.expected_size = 10;
    assert_int_equal(cairn_blob_put_buf(f->st, "hello\n", 6, &o, d, &err), CAIRN_E_TRUNCATED);
    assert_int_equal(cairn_blob_exists(f->st, HELLO, &err), 0);
    assert_int_equal(count_tmp(f), 0);
}

static void test_writer_stream(void **state)
{
    fixture *f = *state;
    cairn_error t_err = {0};
    cairn_blob_writer *w = NULL;
    T_OK(cairn_blob_writer_new(&w, f->st, NULL, &t_err));
    T_OK(cairn_blob_writer_write(w, "hel", 3, &t_err));
    T_OK(cairn_blob_writer_write(w, "lo\n", 3, &t_err));
    char d[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_writer_commit(w, d, &t_err));
    cairn_blob_writer_free(w);
    assert_string_equal(d, HELLO);

    /* A writer freed without commit leaves nothing behind. */
    T_OK(cairn_blob_writer_new(&w, f->st, NULL, &t_err));
    T_OK(cairn_blob_writer_write(w, "abandoned", 9, &t_err));
    cairn_blob_writer_free(w);
    assert_int_equal(count_tmp(f), 0);
    cairn_state_info in;
    T_OK(cairn_state_info_get(f->st, &in, &t_err));
    assert_int_equal(in.blobs.count, 1);
}

static int collect(void *ud, const cairn_blob_info *b)
{
    int *n = ud;
    (*n)++;
    return 0;
}

static void test_batch(void **state)
{
    fixture *f = *state;
    cairn_error t_err = {0};
    cairn_blob_batch *b = NULL;
    T_OK(cairn_blob_batch_new(&b, f->st, &t_err));
    char d[CAIRN_DIGEST_LEN + 1];
    char buf[64];
    for (int i = 0; i < 500; i++) {
        int n = snprintf(buf, sizeof(buf), "blob number %d", i % 400); /* 100 duplicates */
        T_OK(cairn_blob_batch_put_buf(b, buf, (size_t)n, NULL, d, &t_err));
    }
    /* Not visible before the commit. */
    int count = 0;
    T_OK(cairn_blob_list(f->st, NULL, collect, &count, &t_err));
    assert_int_equal(count, 0);
    int added = cairn_blob_batch_commit(b, &t_err);
    T_OK(added);
    assert_int_equal(added, 400);
    cairn_blob_batch_free(b);
    T_OK(cairn_blob_list(f->st, NULL, collect, &count, &t_err));
    assert_int_equal(count, 400);
    assert_int_equal(count_tmp(f), 0);

    /* An abandoned batch leaves nothing. */
    T_OK(cairn_blob_batch_new(&b, f->st, &t_err));
    T_OK(cairn_blob_batch_put_buf(b, "gone", 4, NULL, d, &t_err));
    cairn_blob_batch_free(b);
    assert_int_equal(cairn_blob_exists(f->st, d, &t_err), 0);
    assert_int_equal(count_tmp(f), 0);
}

struct mt {
    const char *want;
    int seen, other;
};

static int by_type(void *ud, const cairn_blob_info *b)
{
    struct mt *m = ud;
    if (!strcmp(b->media_type, m->want))
        m->seen++;
    else
        m->other++;
    return 0;
}

static int label_cb(void *ud, const char *k, const char *v)
{
    char *out = ud;
    strcat(out, k);
    strcat(out, "=");
    strcat(out, v);
    strcat(out, ";");
    return 0;
}

static void test_media_type_and_labels(void **state)
{
    fixture *f = *state;
    cairn_error t_err = {0};
    const char *labels[] = {"a=1", "b=two", NULL};
    cairn_blob_put_options o = CAIRN_BLOB_PUT_OPTIONS_INIT;
    o.media_type = "application/vnd.oci.image.manifest.v1+json";
    o.labels = labels;
    char d1[CAIRN_DIGEST_LEN + 1], d2[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_put_buf(f->st, "{}", 2, &o, d1, &t_err));
    T_OK(cairn_blob_put_buf(f->st, "plain", 5, NULL, d2, &t_err));
    struct mt m = {o.media_type, 0, 0};
    T_OK(cairn_blob_list(f->st, o.media_type, by_type, &m, &t_err));
    assert_int_equal(m.seen, 1);
    assert_int_equal(m.other, 0);

    char out[256] = "";
    T_OK(cairn_blob_label_list(f->st, d1, label_cb, out, &t_err));
    assert_string_equal(out, "a=1;b=two;");
    T_OK(cairn_blob_label_set(f->st, d1, "a", NULL, &t_err));
    T_OK(cairn_blob_label_set(f->st, d1, "c", "3", &t_err));
    out[0] = 0;
    T_OK(cairn_blob_label_list(f->st, d1, label_cb, out, &t_err));
    assert_string_equal(out, "b=two;c=3;");
    assert_int_equal(cairn_blob_label_set(f->st, d2, "bad=key", "x", &t_err), -EINVAL);
}

static void test_remove(void **state)
{
    fixture *f = *state;
    cairn_error t_err = {0};
    char d[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_put_buf(f->st, "hello\n", 6, NULL, d, &t_err));
    T_OK(cairn_blob_remove(f->st, d, &t_err));
    assert_int_equal(cairn_blob_exists(f->st, d, &t_err), 0);
    char *p = blob_path(f, d);
    struct stat sb;
    assert_int_equal(stat(p, &sb), -1);
    free(p);
    assert_int_equal(cairn_blob_remove(f->st, d, &t_err), -ENOENT);
    assert_non_null(strstr(t_err.message, "not found"));
    int fd = -1;
    assert_int_equal(cairn_blob_open(f->st, d, 0, &fd, &t_err), -ENOENT);
}

static void test_corrupt_detected(void **state)
{
    fixture *f = *state;
    cairn_error t_err = {0};
    char d[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_put_buf(f->st, "hello\n", 6, NULL, d, &t_err));
    char *p = blob_path(f, d);
    chmod(p, 0644);
    t_write_file(p, "jello\n", 6);
    int fd = -1;
    assert_int_equal(cairn_blob_open(f->st, d, 1, &fd, &t_err), CAIRN_E_CORRUPT);
    assert_non_null(strstr(t_err.message, d));
    void *buf = NULL;
    size_t len;
    assert_int_equal(cairn_blob_read(f->st, d, &buf, &len, &t_err), CAIRN_E_CORRUPT);
    assert_null(buf);

    /* fsck finds it; repair quarantines it and drops the row. */
    int problems = cairn_fsck(f->st, NULL, NULL, NULL, &t_err);
    assert_int_equal(problems, 1);
    cairn_fsck_options fo = CAIRN_FSCK_OPTIONS_INIT;
    fo.repair = 1;
    assert_int_equal(cairn_fsck(f->st, &fo, NULL, NULL, &t_err), 1);
    assert_int_equal(cairn_fsck(f->st, NULL, NULL, NULL, &t_err), 0);
    assert_int_equal(cairn_blob_exists(f->st, d, &t_err), 0);
    char *q = NULL;
    assert_true(asprintf(&q, "ls '%s/s/quarantine' | grep -q '%s'", f->dir, d + 7) > 0);
    assert_int_equal(system(q), 0); /* the bytes were kept, not deleted */
    free(q);
    free(p);
}

static void test_readonly(void **state)
{
    fixture *f = *state;
    cairn_error t_err = {0};
    char d[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_put_buf(f->st, "hello\n", 6, NULL, d, &t_err));
    cairn_state *ro = NULL;
    T_OK(cairn_state_open(&ro, cairn_state_path(f->st), CAIRN_OPEN_READONLY, &t_err));
    assert_int_equal(cairn_blob_exists(ro, d, &t_err), 1);
    assert_int_equal(cairn_blob_put_buf(ro, "x", 1, NULL, d, &t_err), -EROFS);
    assert_int_equal(cairn_blob_remove(ro, HELLO, &t_err), -EROFS);
    cairn_state_free(ro);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_again_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expected_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_media_type_and_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
