/* test-record.c: cache records: results, loads and usage, links, release,
 * misses when an object is gone, fsck of records, and a stack of states. */
#include "cache-fixtures.h"

#include <errno.h>

static int count_result(void *ud, const cairn_record_result *r)
{
    (*(int *)ud)++;
    return 0;
}

static void test_results_and_load(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("record");
    cairn_state *st = t_state(dir, "s");
    char key[CAIRN_DIGEST_LEN + 1], b1[CAIRN_DIGEST_LEN + 1], b2[CAIRN_DIGEST_LEN + 1];
    fx_digest("key one", key);
    fx_blob(st, "first result", NULL, b1);
    fx_blob(st, "second result", NULL, b2);

    /* Nothing recorded: a miss. */
    cairn_record_result res;
    assert_int_equal(cairn_record_load(st, key, NULL, &res, &t_err), -ENOENT);
    assert_non_null(strstr(t_err.message, key));
    assert_int_equal(cairn_record_exists(st, key, &t_err), 0);

    assert_int_equal(cairn_record_add_result(st, key, CAIRN_RESULT_BLOB, b1, 1000, &t_err), 1);
    assert_int_equal(cairn_record_add_result(st, key, CAIRN_RESULT_BLOB, b1, 1000, &t_err), 0);
    assert_int_equal(cairn_record_add_result(st, key, CAIRN_RESULT_BLOB, b2, 2000, &t_err), 1);
    assert_int_equal(cairn_record_exists(st, key, &t_err), 1);

    /* The newest result by default, and marked used: hits count per load. */
    T_OK(cairn_record_load(st, key, NULL, &res, &t_err));
    assert_string_equal(res.result, b2);
    assert_int_equal(res.kind, CAIRN_RESULT_BLOB);
    assert_int_equal(res.created, 2000);
    assert_int_equal(res.hits, 1);
    assert_true(res.last_used > 0);
    T_OK(cairn_record_load(st, key, b1, &res, &t_err));
    assert_string_equal(res.result, b1);
    T_OK(cairn_record_load(st, key, b1, &res, &t_err));
    assert_int_equal(res.hits, 2);
    int n = 0;
    T_OK(cairn_record_results(st, key, count_result, &n, &t_err));
    assert_int_equal(n, 2);

    /* Publish last: a result that is not there is refused, and not recorded. */
    char nothere[CAIRN_DIGEST_LEN + 1];
    fx_digest("never stored", nothere);
    assert_int_equal(cairn_record_add_result(st, key, CAIRN_RESULT_BLOB, nothere, 0, &t_err),
                     -ENOENT);
    assert_non_null(strstr(t_err.message, nothere));
    assert_int_equal(cairn_record_add_result(st, key, CAIRN_RESULT_SNAPSHOT, b1, 0, &t_err),
                     -ENOENT); /* b1 is a blob, not a snapshot */
    n = 0;
    T_OK(cairn_record_results(st, key, count_result, &n, &t_err));
    assert_int_equal(n, 2);

    /* Bad names. */
    assert_int_equal(cairn_record_add_result(st, "sha256:xyz", CAIRN_RESULT_BLOB, b1, 0, &t_err),
                     CAIRN_E_DIGEST);
    assert_non_null(strstr(t_err.message, "cache key"));
    assert_int_equal(cairn_record_load(st, "nope", NULL, &res, &t_err), CAIRN_E_DIGEST);

    /* Read the same way as publish: once the blob is gone, a miss. */
    T_OK(cairn_blob_remove(st, b2, &t_err));
    T_OK(cairn_record_load(st, key, NULL, &res, &t_err));
    assert_string_equal(res.result, b1);
    n = 0;
    T_OK(cairn_record_results(st, key, count_result, &n, &t_err));
    assert_int_equal(n, 1);
    assert_int_equal(cairn_record_load(st, key, b2, &res, &t_err), -ENOENT);

    /* fsck names the record whose result is gone; repair drops the row. */
    cairn_fsck_options fo = CAIRN_FSCK_OPTIONS_INIT;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 1);
    fo.repair = 1;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 1);
    fo.repair = 0;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 0);

    /* The per-object counts gc reads, broken by hand: fsck names the
     * object, repair rebuilds them. */
    fx_sql(st, "UPDATE cache_result_refs SET n = n + 5");
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 1);
    fo.repair = 1;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 1);
    fo.repair = 0;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 0);

    /* A snapshot result. */
    char snap[CAIRN_DIGEST_LEN + 1], key2[CAIRN_DIGEST_LEN + 1];
    fx_snapshot(st, "snap a", NULL, 10, snap);
    fx_digest("key two", key2);
    assert_int_equal(cairn_record_add_result(st, key2, CAIRN_RESULT_SNAPSHOT, snap, 0, &t_err),
                     1);
    T_OK(cairn_record_load(st, key2, NULL, &res, &t_err));
    assert_int_equal(res.kind, CAIRN_RESULT_SNAPSHOT);

    cairn_state_free(st);
    t_scratch_free(dir);
}

struct links_seen {
    char keys[8][CAIRN_DIGEST_LEN + 1];
    cairn_record_link l[8];
    int n;
};

static int collect_link(void *ud, const char *key, const cairn_record_link *l)
{
    struct links_seen *s = ud;
    assert_true(s->n < 8);
    snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
    s->l[s->n++] = *l;
    return 0;
}

static int collect_key(void *ud, const char *key)
{
    (*(int *)ud)++;
    return 0;
}

static void test_links_and_release(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("links");
    cairn_state *st = t_state(dir, "s");
    char a[CAIRN_DIGEST_LEN + 1], b[CAIRN_DIGEST_LEN + 1], c[CAIRN_DIGEST_LEN + 1],
        d[CAIRN_DIGEST_LEN + 1], blob_a[CAIRN_DIGEST_LEN + 1], blob_c[CAIRN_DIGEST_LEN + 1];
    fx_digest("A", a);
    fx_digest("B", b);
    fx_digest("C", c);
    fx_digest("D", d);
    fx_blob(st, "result of A", NULL, blob_a);
    fx_blob(st, "result of C", NULL, blob_c);
    cairn_record_link l1 = {0, 0, "", ""}, l2 = {1, 0, "", ""};
    fx_digest("op exec", l1.op);
    fx_digest("op copy", l2.op);
    fx_digest("selector /src", l2.selector);

    /* A -> B -> C, A -> D; results on A and C. */
    T_OK(cairn_record_add_result(st, a, CAIRN_RESULT_BLOB, blob_a, 0, &t_err));
    T_OK(cairn_record_add_result(st, c, CAIRN_RESULT_BLOB, blob_c, 0, &t_err));
    assert_int_equal(cairn_record_add_link(st, a, &l1, b, &t_err), 1);
    assert_int_equal(cairn_record_add_link(st, a, &l1, b, &t_err), 0);
    assert_int_equal(cairn_record_add_link(st, b, &l2, c, &t_err), 1);
    assert_int_equal(cairn_record_add_link(st, a, &l2, d, &t_err), 1);

    assert_int_equal(cairn_record_has_link(st, a, &l1, b, &t_err), 1);
    assert_int_equal(cairn_record_has_link(st, a, &l2, b, &t_err), 0);
    struct links_seen s = {0};
    T_OK(cairn_record_links(st, a, NULL, collect_link, &s, &t_err));
    assert_int_equal(s.n, 2);
    memset(&s, 0, sizeof(s));
    T_OK(cairn_record_links(st, a, &l2, collect_link, &s, &t_err));
    assert_int_equal(s.n, 1);
    assert_string_equal(s.keys[0], d);
    assert_string_equal(s.l[0].selector, l2.selector);
    assert_int_equal(s.l[0].input, 1);
    memset(&s, 0, sizeof(s));
    T_OK(cairn_record_backlinks(st, c, collect_link, &s, &t_err));
    assert_int_equal(s.n, 1);
    assert_string_equal(s.keys[0], b);
    assert_int_equal(cairn_record_exists(st, b, &t_err), 1); /* a link to a child */
    assert_int_equal(cairn_record_exists(st, d, &t_err), 0); /* nothing of its own */
    int n = 0;
    T_OK(cairn_record_keys_by_result(st, blob_c, collect_key, &n, &t_err));
    assert_int_equal(n, 1);
    n = 0;
    T_OK(cairn_record_walk_keys(st, collect_key, &n, &t_err));
    assert_int_equal(n, 3); /* A, B, C (D has neither a result nor a child) */

    /* Release C's result: C is left empty, so B -> C goes; B is then empty,
     * so A -> B goes; A keeps its result and its link to D. */
    assert_int_equal(cairn_record_release(st, blob_c, &t_err), 1);
    assert_int_equal(cairn_record_exists(st, c, &t_err), 0);
    assert_int_equal(cairn_record_exists(st, b, &t_err), 0);
    assert_int_equal(cairn_record_has_link(st, a, &l1, b, &t_err), 0);
    assert_int_equal(cairn_record_has_link(st, a, &l2, d, &t_err), 1);
    assert_int_equal(cairn_record_exists(st, a, &t_err), 1);
    /* The blob itself is left to gc. */
    assert_int_equal(cairn_blob_exists(st, blob_c, &t_err), 1);

    /* Remove a key: its results and links both ways. */
    assert_true(cairn_record_remove(st, a, &t_err) >= 2);
    assert_int_equal(cairn_record_exists(st, a, &t_err), 0);
    assert_int_equal(cairn_record_remove(st, a, &t_err), -ENOENT);

    /* Bad links. */
    cairn_record_link bad = {0, 0, "not a digest", ""};
    assert_int_equal(cairn_record_add_link(st, a, &bad, b, &t_err), CAIRN_E_DIGEST);
    assert_non_null(strstr(t_err.message, "link op"));
    cairn_state_free(st);
    t_scratch_free(dir);
}

/* A stack: the lower's records are read through; writes go to the top; the
 * lower's cannot be removed. */
static void test_stack(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("rstack");
    cairn_state *lo = t_state(dir, "lower");
    char lower_path[4096], lower_id[CAIRN_STATE_ID_LEN + 1];
    snprintf(lower_path, sizeof(lower_path), "%s", cairn_state_path(lo));
    snprintf(lower_id, sizeof(lower_id), "%s", cairn_state_id(lo));
    char key[CAIRN_DIGEST_LEN + 1], blob[CAIRN_DIGEST_LEN + 1], top_blob[CAIRN_DIGEST_LEN + 1];
    fx_digest("lower key", key);
    fx_blob(lo, "lower result", NULL, blob);
    T_OK(cairn_record_add_result(lo, key, CAIRN_RESULT_BLOB, blob, 0, &t_err));
    cairn_state_free(lo);

    cairn_state *top = t_state(dir, "top");
    char top_path[4096];
    snprintf(top_path, sizeof(top_path), "%s", cairn_state_path(top));
    cairn_state_free(top);
    fx_stack(lower_path, lower_id, top_path);
    T_OK(cairn_state_open(&top, top_path, 0, &t_err));

    cairn_record_result res;
    T_OK(cairn_record_load(top, key, NULL, &res, &t_err));
    assert_string_equal(res.result, blob);
    assert_int_equal(res.lower, 1);
    assert_int_equal(res.hits, 1); /* counted in the top */
    fx_blob(top, "top result", NULL, top_blob);
    T_OK(cairn_record_add_result(top, key, CAIRN_RESULT_BLOB, top_blob, 0, &t_err));
    int n = 0;
    T_OK(cairn_record_results(top, key, count_result, &n, &t_err));
    assert_int_equal(n, 2);
    /* Release in the top forgets the top's row only. */
    assert_int_equal(cairn_record_release(top, blob, &t_err), 0);
    T_OK(cairn_record_load(top, key, blob, &res, &t_err));
    char only_lower[CAIRN_DIGEST_LEN + 1];
    fx_digest("another", only_lower);
    cairn_state_free(top);

    /* A key only the lower holds cannot be removed. */
    T_OK(cairn_state_open(&lo, lower_path, 0, &t_err));
    cairn_state_free(lo);
    T_OK(cairn_state_open(&top, top_path, 0, &t_err));
    T_OK(cairn_record_release(top, top_blob, &t_err));
    assert_int_equal(cairn_record_remove(top, key, &t_err), -EROFS);
    cairn_state_free(top);
    t_scratch_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_results_and_load),
        cmocka_unit_test(test_links_and_release),
        cmocka_unit_test(test_stack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
