/* test-state.c: creating, opening and checking state directories. */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_init_open(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("state");
    char *p = NULL;
    assert_true(asprintf(&p, "%s/s", dir) > 0);
    char id[CAIRN_STATE_ID_LEN + 1];
    T_OK(cairn_state_init(p, id, &t_err));
    assert_int_equal(strlen(id), CAIRN_STATE_ID_LEN);

    cairn_state *st = NULL;
    T_OK(cairn_state_open(&st, p, 0, &t_err));
    assert_string_equal(cairn_state_id(st), id);
    cairn_state_info in;
    T_OK(cairn_state_info_get(st, &in, &t_err));
    assert_int_equal(in.format, CAIRN_FORMAT_VERSION);
    assert_int_equal(in.blobs.count, 0);
    assert_int_equal(in.lowers, 0);
    cairn_state_free(st);

    /* A second init of a live state is refused, and the id is unchanged. */
    char id2[CAIRN_STATE_ID_LEN + 1];
    assert_int_equal(cairn_state_init(p, id2, &t_err), -EEXIST);
    assert_non_null(strstr(t_err.message, id));
    T_OK(cairn_state_open(&st, p, 0, &t_err));
    assert_string_equal(cairn_state_id(st), id);
    cairn_state_free(st);

    /* Two states never share an id. */
    char *q = NULL;
    assert_true(asprintf(&q, "%s/t", dir) > 0);
    T_OK(cairn_state_init(q, id2, &t_err));
    assert_string_not_equal(id, id2);
    free(q);
    free(p);
    t_scratch_free(dir);
}

static void test_not_a_state(void **unused)
{
    cairn_error err = {0};
    char *dir = t_scratch("notstate");
    cairn_state *st = NULL;
    assert_int_equal(cairn_state_open(&st, dir, 0, &err), CAIRN_E_NOTSTATE);
    assert_non_null(strstr(err.message, "not a cairn state"));
    assert_null(st);

    /* A non-empty directory that is not a state is not turned into one. */
    char *f = NULL;
    assert_true(asprintf(&f, "%s/precious", dir) > 0);
    t_write_file(f, "x", 1);
    assert_int_equal(cairn_state_init(dir, NULL, &err), -ENOTEMPTY);
    struct stat sb;
    assert_int_equal(stat(f, &sb), 0);
    free(f);
    t_scratch_free(dir);
}

static void rewrite_identity(const char *state, const char *from, const char *to)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/cairn-state", state) > 0);
    FILE *fp = fopen(p, "r");
    assert_non_null(fp);
    char buf[1024] = {0};
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = 0;
    char *at = strstr(buf, from);
    assert_non_null(at);
    char out[1200];
    snprintf(out, sizeof(out), "%.*s%s%s", (int)(at - buf), buf, to, at + strlen(from));
    chmod(p, 0644);
    t_write_file(p, out, strlen(out));
    free(p);
}

static void test_bad_identity(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("ident");
    char *p = NULL;
    assert_true(asprintf(&p, "%s/s", dir) > 0);
    T_OK(cairn_state_init(p, NULL, &t_err));

    /* Newer format: refused, with the file named. */
    rewrite_identity(p, "format=1", "format=99");
    cairn_state *st = NULL;
    assert_int_equal(cairn_state_open(&st, p, 0, &t_err), CAIRN_E_NEWER);
    assert_non_null(strstr(t_err.message, "cairn-state"));
    assert_non_null(strstr(t_err.message, "99"));

    /* Corrupt: refused as a format error. */
    rewrite_identity(p, "format=99", "format=x");
    assert_int_equal(cairn_state_open(&st, p, 0, &t_err), CAIRN_E_FORMAT);
    assert_non_null(strstr(t_err.message, "corrupt identity file"));
    free(p);
    t_scratch_free(dir);
}

static void test_newer_schema(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("schema");
    char *p = NULL;
    assert_true(asprintf(&p, "%s/s", dir) > 0);
    char id[CAIRN_STATE_ID_LEN + 1];
    T_OK(cairn_state_init(p, id, &t_err));
    char *cmd = NULL;
    assert_true(asprintf(&cmd, "sqlite3 '%s/db/%s.sqlite' 'PRAGMA user_version = 77'", p, id) > 0);
    assert_int_equal(system(cmd), 0);
    cairn_state *st = NULL;
    assert_int_equal(cairn_state_open(&st, p, 0, &t_err), CAIRN_E_NEWER);
    assert_non_null(strstr(t_err.message, ".sqlite"));
    assert_non_null(strstr(t_err.message, "77"));
    free(cmd);
    free(p);
    t_scratch_free(dir);
}

/* Make a state a valid lower by hand: self-contained database, frozen=1. */
static void freeze_by_hand(const char *p, const char *id)
{
    char *cmd = NULL;
    assert_true(asprintf(&cmd,
                         "sqlite3 '%s/db/%s.sqlite' 'PRAGMA journal_mode=DELETE' >/dev/null && "
                         "sed -i 's/^frozen=0$/frozen=1/' '%s/cairn-state'",
                         p, id, p) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

static int collect_digest(void *ud, const cairn_blob_info *b)
{
    char *out = ud;
    strcat(out, b->digest + 7 + 60); /* the last 4 hex digits */
    strcat(out, b->lower ? "L " : "T ");
    return 0;
}

static void test_lowers(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("lowers");
    char *a = NULL, *b = NULL, *lf = NULL, *line = NULL;
    assert_true(asprintf(&a, "%s/a", dir) > 0 && asprintf(&b, "%s/b", dir) > 0);
    char ida[CAIRN_STATE_ID_LEN + 1], idb[CAIRN_STATE_ID_LEN + 1];
    T_OK(cairn_state_init(a, ida, &t_err));
    cairn_state *st = NULL;
    T_OK(cairn_state_open(&st, a, 0, &t_err));
    char d1[CAIRN_DIGEST_LEN + 1], d2[CAIRN_DIGEST_LEN + 1], d3[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_put_buf(st, "one", 3, NULL, d1, &t_err));
    T_OK(cairn_blob_put_buf(st, "two", 3, NULL, d2, &t_err));
    cairn_state_free(st);

    /* A live state is not a lower. */
    T_OK(cairn_state_init(b, idb, &t_err));
    assert_true(asprintf(&lf, "%s/lowers", b) > 0);
    assert_true(asprintf(&line, "%s %s\n", ida, a) > 0);
    t_write_file(lf, line, strlen(line));
    assert_int_equal(cairn_state_open(&st, b, 0, &t_err), CAIRN_E_LOWER);
    assert_non_null(strstr(t_err.message, "is not frozen"));

    freeze_by_hand(a, ida);
    T_OK(cairn_state_open(&st, b, 0, &t_err));
    cairn_state_info in;
    T_OK(cairn_state_info_get(st, &in, &t_err));
    assert_int_equal(in.lowers, 1);
    assert_int_equal(in.blobs.count, 2);
    /* Known content in a lower is not stored again in the top. */
    T_OK(cairn_blob_put_buf(st, "one", 3, NULL, d1, &t_err));
    T_OK(cairn_blob_put_buf(st, "three", 5, NULL, d3, &t_err));
    cairn_blob_info bi;
    T_OK(cairn_blob_stat(st, d1, &bi, &t_err));
    assert_int_equal(bi.lower, 1);
    T_OK(cairn_blob_stat(st, d3, &bi, &t_err));
    assert_int_equal(bi.lower, 0);
    T_OK(cairn_state_info_get(st, &in, &t_err));
    assert_int_equal(in.blobs.count, 3);
    /* The union, sorted, each once. */
    char got[128] = "", want[128] = "";
    const char *ds[] = {d1, d2, d3};
    const char *sorted[3] = {d1, d2, d3};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (strcmp(sorted[j], sorted[i]) < 0) {
                const char *t = sorted[i];
                sorted[i] = sorted[j];
                sorted[j] = t;
            }
    for (int i = 0; i < 3; i++) {
        strcat(want, sorted[i] + 67);
        strcat(want, sorted[i] == ds[2] ? "T " : "L ");
    }
    T_OK(cairn_blob_list(st, NULL, collect_digest, got, &t_err));
    assert_string_equal(got, want);
    /* Reads fall through; the lower is never written. */
    void *buf = NULL;
    size_t len = 0;
    T_OK(cairn_blob_read(st, d2, &buf, &len, &t_err));
    assert_memory_equal(buf, "two", 3);
    free(buf);
    assert_int_equal(cairn_blob_remove(st, d2, &t_err), -EROFS);
    assert_non_null(strstr(t_err.message, a));
    cairn_state_free(st);

    /* A frozen state refuses writes. */
    T_OK(cairn_state_open(&st, a, 0, &t_err));
    assert_int_equal(cairn_blob_put_buf(st, "x", 1, NULL, NULL, &t_err), CAIRN_E_FROZEN);
    cairn_state_free(st);

    /* A vanished lower: a clear error naming it. */
    char *moved = NULL;
    assert_true(asprintf(&moved, "%s/a-moved", dir) > 0);
    assert_int_equal(rename(a, moved), 0);
    assert_int_equal(cairn_state_open(&st, b, 0, &t_err), CAIRN_E_LOWER);
    assert_non_null(strstr(t_err.message, a));
    assert_non_null(strstr(t_err.message, ida));

    /* A lower replaced by another state at the same path. */
    char idx[CAIRN_STATE_ID_LEN + 1];
    T_OK(cairn_state_init(a, idx, &t_err));
    freeze_by_hand(a, idx);
    assert_int_equal(cairn_state_open(&st, b, 0, &t_err), CAIRN_E_LOWER);
    assert_non_null(strstr(t_err.message, "was replaced"));
    assert_non_null(strstr(t_err.message, idx));

    /* A malformed lowers file names its line. */
    t_write_file(lf, "not a lower\n", 12);
    assert_int_equal(cairn_state_open(&st, b, 0, &t_err), CAIRN_E_FORMAT);
    assert_non_null(strstr(t_err.message, "lowers:1"));
    free(moved);
    free(a);
    free(b);
    free(lf);
    free(line);
    t_scratch_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_open),
        cmocka_unit_test(test_not_a_state),
        cmocka_unit_test(test_bad_identity),
        cmocka_unit_test(test_newer_schema),
        cmocka_unit_test(test_lowers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
