/* test-volume.c: volumes: open, save, two sessions at once, the current
 * version in a stack, gc of old versions, leases, fsck. */
#include "cache-fixtures.h"

#include <errno.h>

static void write_in(cairn_state *st, const char *id, const char *name, const char *content)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/active/%s/fs/%s", cairn_state_path(st), id, name) > 0);
    t_write_file(p, content, strlen(content));
    free(p);
}

static int count_v(void *ud, const cairn_volume_version *v)
{
    (*(int *)ud)++;
    return 0;
}

static void test_sessions(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("volume");
    cairn_state *st = t_state(dir, "s");
    char id[CAIRN_STATE_ID_LEN + 1], id2[CAIRN_STATE_ID_LEN + 1], parent[72];
    char v1[72], v2[72], v3[72];
    cairn_volume_info in;
    assert_int_equal(cairn_volume_current(st, "apt", &in, &t_err), -ENOENT);
    assert_int_equal(cairn_volume_open(st, "bad/name", id, NULL, &t_err), -EINVAL);

    T_OK(cairn_volume_open(st, "apt", id, parent, &t_err));
    assert_string_equal(parent, "");
    write_in(st, id, "pkg1.deb", "package one");
    T_OK(cairn_volume_save(st, "apt", NULL, v1, &t_err));
    T_OK(cairn_volume_current(st, "apt", &in, &t_err));
    assert_string_equal(in.current, v1);
    assert_int_equal(in.size, strlen("package one"));
    /* Saving again: nothing open. */
    assert_int_equal(cairn_volume_save(st, "apt", NULL, NULL, &t_err), -ENOENT);

    /* Two sessions at once, both over v1. */
    T_OK(cairn_volume_open(st, "apt", id, parent, &t_err));
    assert_string_equal(parent, v1);
    T_OK(cairn_volume_open(st, "apt", id2, NULL, &t_err));
    write_in(st, id, "pkg2.deb", "package two");
    write_in(st, id2, "pkg3.deb", "package three");
    assert_int_equal(cairn_volume_save(st, "apt", NULL, NULL, &t_err), -EBUSY);
    assert_int_equal(cairn_volume_save(st, "other", id, NULL, &t_err), -EINVAL);
    T_OK(cairn_volume_save(st, "apt", id, v2, &t_err));
    T_OK(cairn_volume_save(st, "apt", id2, v3, &t_err));
    /* The later save is current; the other stays listed. */
    T_OK(cairn_volume_current(st, "apt", &in, &t_err));
    assert_string_equal(in.current, v3);
    assert_int_equal(in.versions, 3);
    int n = 0;
    T_OK(cairn_volume_versions(st, "apt", count_v, &n, &t_err));
    assert_int_equal(n, 3);

    /* gc: old versions go (v2 and its snapshot; v1 stays as v3's parent). */
    fx_age(st);
    cairn_gc_options o = CAIRN_GC_OPTIONS_INIT;
    cairn_gc_stats s;
    T_OK(cairn_gc(st, &o, NULL, NULL, &s, &t_err));
    assert_int_equal(s.volume_versions, 2);
    assert_int_equal(s.snapshots, 1);
    assert_true(fx_exists(cairn_state_path(st), "snapshots", v1));
    assert_false(fx_exists(cairn_state_path(st), "snapshots", v2));
    T_OK(cairn_volume_current(st, "apt", &in, &t_err));
    assert_string_equal(in.current, v3);
    assert_int_equal(in.versions, 1);

    /* A leased volume keeps every version. */
    T_OK(cairn_volume_open(st, "apt", id, NULL, &t_err));
    write_in(st, id, "pkg4.deb", "package four");
    char v4[72];
    T_OK(cairn_volume_save(st, "apt", NULL, v4, &t_err));
    T_OK(cairn_lease_create(st, "l", 0, NULL, &t_err));
    T_OK(cairn_lease_resource_add(st, "l", "volume", "apt", &t_err));
    fx_age(st);
    T_OK(cairn_gc(st, &o, NULL, NULL, &s, &t_err));
    assert_int_equal(s.volume_versions, 0);
    T_OK(cairn_lease_remove(st, "l", &t_err));
    T_OK(cairn_gc(st, &o, NULL, NULL, &s, &t_err));
    assert_int_equal(s.volume_versions, 1);

    /* An open session keeps its parent even when the volume is removed. */
    T_OK(cairn_volume_open(st, "apt", id, parent, &t_err));
    assert_int_equal(cairn_volume_remove(st, "apt", &t_err), 1);
    assert_int_equal(cairn_volume_remove(st, "apt", &t_err), -ENOENT);
    fx_age(st);
    T_OK(cairn_gc(st, &o, NULL, NULL, &s, &t_err));
    assert_true(fx_exists(cairn_state_path(st), "snapshots", parent));
    cairn_fsck_options fo = CAIRN_FSCK_OPTIONS_INIT;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 0);

    /* A version row naming a missing snapshot: fsck names it; repair drops it. */
    char *sql = NULL;
    char ghost[72];
    fx_digest("ghost", ghost);
    assert_true(asprintf(&sql,
                         "INSERT INTO volume_versions(name, version, created) "
                         "VALUES ('pip', '%s', 1)",
                         ghost) > 0);
    fx_sql(st, sql);
    free(sql);
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 1);
    fo.repair = 1;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 1);
    fo.repair = 0;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 0);
    cairn_state_free(st);
    t_scratch_free(dir);
}

/* In a stack, the current version is the newest over both states. */
static void test_stack(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("vstack");
    cairn_state *lo = t_state(dir, "lower");
    char lower_path[4096], lower_id[CAIRN_STATE_ID_LEN + 1], id[CAIRN_STATE_ID_LEN + 1];
    char lv[72], tv[72], parent[72];
    snprintf(lower_path, sizeof(lower_path), "%s", cairn_state_path(lo));
    snprintf(lower_id, sizeof(lower_id), "%s", cairn_state_id(lo));
    T_OK(cairn_volume_open(lo, "go", id, NULL, &t_err));
    write_in(lo, id, "mod", "module cache");
    T_OK(cairn_volume_save(lo, "go", NULL, lv, &t_err));
    cairn_state_free(lo);
    cairn_state *top = t_state(dir, "top");
    char top_path[4096];
    snprintf(top_path, sizeof(top_path), "%s", cairn_state_path(top));
    cairn_state_free(top);
    fx_stack(lower_path, lower_id, top_path);
    T_OK(cairn_state_open(&top, top_path, 0, &t_err));
    cairn_volume_info in;
    T_OK(cairn_volume_current(top, "go", &in, &t_err));
    assert_string_equal(in.current, lv);
    assert_int_equal(in.lower, 1);
    T_OK(cairn_volume_open(top, "go", id, parent, &t_err));
    assert_string_equal(parent, lv);
    write_in(top, id, "mod2", "more");
    T_OK(cairn_volume_save(top, "go", NULL, tv, &t_err));
    T_OK(cairn_volume_current(top, "go", &in, &t_err));
    assert_string_equal(in.current, tv);
    assert_int_equal(in.versions, 2);
    fx_age(top);
    cairn_gc_options o = CAIRN_GC_OPTIONS_INIT;
    cairn_gc_stats s;
    T_OK(cairn_gc(top, &o, NULL, NULL, &s, &t_err));
    assert_int_equal(s.volume_versions + s.snapshots, 0); /* the old version is the lower's */
    assert_int_equal(cairn_volume_remove(top, "go", &t_err), 1);
    assert_int_equal(cairn_volume_remove(top, "go", &t_err), -EROFS);
    cairn_state_free(top);
    t_scratch_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sessions),
        cmocka_unit_test(test_stack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
