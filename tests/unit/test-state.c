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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_open),
        cmocka_unit_test(test_not_a_state),
        cmocka_unit_test(test_bad_identity),
        cmocka_unit_test(test_newer_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
