/* test-lease.c: leases: create, resources, renew, expiry, remove, bad input. */
#include "cache-fixtures.h"

#include <errno.h>

static int count_res(void *ud, const char *kind, const char *name)
{
    (*(int *)ud)++;
    return 0;
}

static int count_lease(void *ud, const cairn_lease_info *in)
{
    (*(int *)ud)++;
    return 0;
}

static void test_leases(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("lease");
    cairn_state *st = t_state(dir, "s");
    char id[CAIRN_LEASE_ID_MAX + 1], d[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_lease_create(st, NULL, 0, id, &t_err));
    assert_int_equal(strlen(id), 32);
    T_OK(cairn_lease_create(st, "session-1", 3600, NULL, &t_err));
    assert_int_equal(cairn_lease_create(st, "session-1", 0, NULL, &t_err), -EEXIST);
    assert_int_equal(cairn_lease_create(st, "bad id!", 0, NULL, &t_err), -EINVAL);
    assert_int_equal(cairn_lease_create(st, "x", -5, NULL, &t_err), -EINVAL);

    fx_digest("some blob", d);
    /* A resource may be named before its object exists. */
    assert_int_equal(cairn_lease_resource_add(st, "session-1", "blob", d, &t_err), 1);
    assert_int_equal(cairn_lease_resource_add(st, "session-1", "blob", d, &t_err), 0);
    assert_int_equal(cairn_lease_resource_add(st, "session-1", "volume", "apt-cache", &t_err), 1);
    assert_int_equal(cairn_lease_resource_add(st, "session-1", "record", d, &t_err), 1);
    assert_int_equal(cairn_lease_resource_add(st, "session-1", "thing", d, &t_err), -EINVAL);
    assert_int_equal(cairn_lease_resource_add(st, "session-1", "blob", "sha256:12", &t_err),
                     CAIRN_E_DIGEST);
    assert_int_equal(cairn_lease_resource_add(st, "nope", "blob", d, &t_err), -ENOENT);
    assert_non_null(strstr(t_err.message, "nope"));
    int n = 0;
    T_OK(cairn_lease_resource_list(st, "session-1", count_res, &n, &t_err));
    assert_int_equal(n, 3);
    cairn_lease_info in;
    T_OK(cairn_lease_get(st, "session-1", &in, &t_err));
    assert_int_equal(in.resources, 3);
    assert_true(in.expires >= in.created + 3600);
    T_OK(cairn_lease_renew(st, "session-1", 0, &t_err));
    T_OK(cairn_lease_get(st, "session-1", &in, &t_err));
    assert_int_equal(in.expires, 0);
    assert_int_equal(cairn_lease_resource_remove(st, "session-1", "volume", "apt-cache", &t_err),
                     1);
    assert_int_equal(cairn_lease_resource_remove(st, "session-1", "volume", "apt-cache", &t_err),
                     0);
    n = 0;
    T_OK(cairn_lease_list(st, count_lease, &n, &t_err));
    assert_int_equal(n, 2);
    T_OK(cairn_lease_remove(st, "session-1", &t_err));
    assert_int_equal(cairn_lease_remove(st, "session-1", &t_err), -ENOENT);
    assert_int_equal(cairn_lease_renew(st, "session-1", 10, &t_err), -ENOENT);
    /* Its resources went with it. */
    cairn_fsck_options fo = CAIRN_FSCK_OPTIONS_INIT;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 0);

    /* A resource row whose lease is gone (written with foreign keys off):
     * fsck names it, repair drops it. */
    fx_sql(st, "PRAGMA foreign_keys = OFF;"
               "INSERT INTO lease_resources(lease, kind, name) VALUES ('ghost', 'blob', 'x');"
               "PRAGMA foreign_keys = ON;");
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 1);
    fo.repair = 1;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 1);
    fo.repair = 0;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 0);
    cairn_state_free(st);
    t_scratch_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
