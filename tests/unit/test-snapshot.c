/* test-snapshot.c: committed and active snapshots through the library. */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "snapshot/snapshot-private.h"

static char *fs_path(const char *dir, const char *state, const char *id, const char *rel)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s/active/%s/fs/%s", dir, state, id, rel) > 0);
    return p;
}

static void put(const char *dir, const char *state, const char *id, const char *rel,
                const char *content)
{
    char *p = fs_path(dir, state, id, rel);
    t_write_file(p, content, strlen(content));
    struct timespec t[2] = {{1600000000, 0}, {1600000000, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, t, AT_SYMLINK_NOFOLLOW), 0);
    free(p);
}

/* A tree of one file and one directory, with fixed times. */
static void fill(const char *dir, const char *state, const char *id)
{
    put(dir, state, id, "d/file", "same content");
    char *p = fs_path(dir, state, id, "d");
    struct timespec t[2] = {{1600000000, 0}, {1600000000, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, t, 0), 0);
    free(p);
}

typedef struct walk_acc {
    char ids[8][CAIRN_DIGEST_LEN + 1];
    int n;
} walk_acc;

static int walk_cb(void *ud, const cairn_snapshot_info *i)
{
    walk_acc *w = ud;
    if (w->n < 8)
        strcpy(w->ids[w->n], i->chain_id);
    w->n++;
    return 0;
}

static void test_commit_chain(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("snap");
    cairn_state *a = t_state(dir, "a"), *b = t_state(dir, "b");
    char id[CAIRN_STATE_ID_LEN + 1], c1[CAIRN_DIGEST_LEN + 1], d1[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_snapshot_prepare(a, NULL, "base", id, &t_err));
    cairn_active_info ai;
    T_OK(cairn_snapshot_active_stat(a, id, &ai, &t_err));
    assert_string_equal(ai.label, "base");
    assert_int_equal(ai.view, 0);
    fill(dir, "a", id);
    T_OK(cairn_snapshot_commit(a, id, c1, d1, &t_err));
    assert_string_equal(c1, d1);
    assert_int_equal(cairn_snapshot_active_stat(a, id, &ai, &t_err), -ENOENT);

    /* The DiffID is the digest of the canonical tar of the directory. */
    char *sp = NULL;
    assert_true(asprintf(&sp, "%s/a/snapshots/%s", dir, c1 + 7) > 0);
    int dfd = open(sp, O_RDONLY | O_DIRECTORY);
    char again[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn__tar_digest(dfd, "test", 0, again, NULL, &t_err));
    assert_string_equal(again, d1);
    close(dfd);
    free(sp);

    /* The same diff in another state: the same name. */
    char c1b[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_snapshot_prepare(b, NULL, NULL, id, &t_err));
    fill(dir, "b", id);
    T_OK(cairn_snapshot_commit(b, id, c1b, NULL, &t_err));
    assert_string_equal(c1, c1b);

    /* A child: ChainID = sha256(parent + " " + DiffID). */
    char c2[CAIRN_DIGEST_LEN + 1], d2[CAIRN_DIGEST_LEN + 1], expect[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_snapshot_prepare(a, c1, NULL, id, &t_err));
    put(dir, "a", id, "child", "child");
    T_OK(cairn_snapshot_commit(a, id, c2, d2, &t_err));
    char buf[2 * CAIRN_DIGEST_LEN + 2];
    snprintf(buf, sizeof(buf), "%s %s", c1, d2);
    cairn__sha256_buf(buf, strlen(buf), expect);
    assert_string_equal(c2, expect);

    walk_acc w = {0};
    T_OK(cairn_snapshot_walk(a, c2, walk_cb, &w, &t_err));
    assert_int_equal(w.n, 2);
    assert_string_equal(w.ids[0], c2);
    assert_string_equal(w.ids[1], c1);

    cairn_snapshot_info si;
    T_OK(cairn_snapshot_stat(a, c2, &si, &t_err));
    assert_string_equal(si.parent, c1);
    assert_int_equal(si.size, 5);
    assert_true(si.created > 0);

    /* Remove: the parent of a kept snapshot is refused; lowers are not ours. */
    assert_int_equal(cairn_snapshot_remove(a, c1, &t_err), CAIRN_E_INUSE);
    assert_non_null(strstr(t_err.message, c2));
    T_OK(cairn_snapshot_remove(a, c2, &t_err));
    T_OK(cairn_snapshot_remove(a, c1, &t_err));
    assert_int_equal(cairn_snapshot_stat(a, c1, &si, &t_err), -ENOENT);
    assert_int_equal(cairn_snapshot_remove(a, c1, &t_err), -ENOENT);
    cairn_state_free(a);
    cairn_state_free(b);
    t_scratch_free(dir);
}

static void test_views_mounts_checkout(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("snap-mnt");
    cairn_state *st = t_state(dir, "s");
    char id[CAIRN_STATE_ID_LEN + 1], c1[CAIRN_DIGEST_LEN + 1], c2[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_snapshot_prepare(st, NULL, NULL, id, &t_err));
    cairn_mount *m = NULL;
    T_OK(cairn_snapshot_mounts(st, id, &m, &t_err));
    assert_string_equal(m->type, "bind"); /* nothing to stack */
    cairn_mount_free(m);
    put(dir, "s", id, "keep", "keep");
    put(dir, "s", id, "gone", "gone");
    T_OK(cairn_snapshot_commit(st, id, c1, NULL, &t_err));

    T_OK(cairn_snapshot_prepare(st, c1, NULL, id, &t_err));
    T_OK(cairn_snapshot_mounts(st, id, &m, &t_err));
    assert_string_equal(m->type, "overlay");
    char *json = cairn_mount_json(m);
    assert_non_null(strstr(json, "\"lowerdir="));
    assert_non_null(strstr(json, "\"upperdir="));
    assert_non_null(strstr(json, "\"workdir="));
    assert_non_null(strstr(json, c1 + 7));
    free(json);
    cairn_mount_free(m);
    /* A whiteout made by hand, as overlayfs makes them. */
    char *wh = fs_path(dir, "s", id, "gone");
    assert_int_equal(mknod(wh, S_IFCHR | 0, 0), 0);
    free(wh);
    put(dir, "s", id, "new", "new");
    T_OK(cairn_snapshot_commit(st, id, c2, NULL, &t_err));

    char vid[CAIRN_STATE_ID_LEN + 1];
    T_OK(cairn_snapshot_view(st, c2, "look", vid, &t_err));
    T_OK(cairn_snapshot_mounts(st, vid, &m, &t_err));
    bool ro = false;
    for (size_t i = 0; i < m->n_options; i++)
        ro |= !strcmp(m->options[i], "ro");
    assert_true(ro);
    cairn_mount_free(m);
    assert_int_equal(cairn_snapshot_commit(st, vid, NULL, NULL, &t_err), -EINVAL);
    assert_int_equal(cairn_snapshot_remove(st, c2, &t_err), CAIRN_E_INUSE);
    T_OK(cairn_snapshot_remove(st, vid, &t_err));

    char *co = NULL;
    assert_true(asprintf(&co, "%s/co", dir) > 0);
    int copied = cairn_snapshot_checkout(st, c2, co, CAIRN_CHECKOUT_COPY, &t_err);
    assert_int_equal(copied, 2);
    char *p = NULL;
    struct stat sb;
    assert_true(asprintf(&p, "%s/gone", co) > 0);
    assert_int_equal(lstat(p, &sb), -1); /* hidden by the whiteout */
    free(p);
    assert_true(asprintf(&p, "%s/keep", co) > 0);
    assert_int_equal(lstat(p, &sb), 0);
    assert_int_equal(sb.st_mtime, 1600000000);
    free(p);
    /* A checkout into a non-empty directory is refused. */
    assert_int_equal(cairn_snapshot_checkout(st, c2, co, 0, &t_err), -ENOTEMPTY);
    free(co);
    assert_true(asprintf(&co, "%s/co2", dir) > 0);
    assert_int_equal(cairn_snapshot_checkout(st, c2, co, 0, &t_err), 0); /* all linked */
    free(co);
    cairn_state_free(st);
    t_scratch_free(dir);
}

static void test_lower(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("snap-lower");
    char *a = NULL, *b = NULL;
    assert_true(asprintf(&a, "%s/a", dir) > 0 && asprintf(&b, "%s/b", dir) > 0);
    cairn_state *st = t_state(dir, "a");
    char ida[CAIRN_STATE_ID_LEN + 1], id[CAIRN_STATE_ID_LEN + 1], c1[CAIRN_DIGEST_LEN + 1];
    strcpy(ida, cairn_state_id(st));
    T_OK(cairn_snapshot_prepare(st, NULL, NULL, id, &t_err));
    fill(dir, "a", id);
    T_OK(cairn_snapshot_commit(st, id, c1, NULL, &t_err));
    cairn_state_free(st);
    char *cmd = NULL;
    assert_true(asprintf(&cmd,
                         "sqlite3 '%s/db/%s.sqlite' 'PRAGMA journal_mode=DELETE' >/dev/null && "
                         "sed -i 's/^frozen=0$/frozen=1/' '%s/cairn-state'",
                         a, ida, a) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    st = t_state(dir, "b");
    char *lf = NULL, *line = NULL;
    assert_true(asprintf(&lf, "%s/lowers", b) > 0 && asprintf(&line, "%s %s\n", ida, a) > 0);
    t_write_file(lf, line, strlen(line));
    cairn_state_free(st);
    T_OK(cairn_state_open(&st, b, 0, &t_err));

    /* Found through the lower; a child over it; its mount names the lower's dir. */
    cairn_snapshot_info si;
    T_OK(cairn_snapshot_stat(st, c1, &si, &t_err));
    assert_int_equal(si.lower, 1);
    assert_int_equal(cairn_snapshot_remove(st, c1, &t_err), -EROFS);
    T_OK(cairn_snapshot_prepare(st, c1, NULL, id, &t_err));
    cairn_mount *m = NULL;
    T_OK(cairn_snapshot_mounts(st, id, &m, &t_err));
    char *want = NULL;
    assert_true(asprintf(&want, "lowerdir=%s/snapshots/%s", a, c1 + 7) > 0);
    assert_string_equal(m->options[0], want);
    free(want);
    cairn_mount_free(m);
    /* Committing a diff the lower already has adds no row here. */
    T_OK(cairn_snapshot_remove(st, id, &t_err));
    T_OK(cairn_snapshot_prepare(st, NULL, NULL, id, &t_err));
    fill(dir, "b", id);
    char c1b[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_snapshot_commit(st, id, c1b, NULL, &t_err));
    assert_string_equal(c1, c1b);
    T_OK(cairn_snapshot_stat(st, c1, &si, &t_err));
    assert_int_equal(si.lower, 1);
    cairn_state_free(st);
    free(lf);
    free(line);
    free(a);
    free(b);
    t_scratch_free(dir);
}

/* Kernels before 6.8 have no lowerdir+: mount(2) takes one options page.
 * A chain whose absolute lowerdirs pass a page still mounts there, with
 * paths relative to their common directory. */
static void test_legacy_mount(void **unused)
{
    cairn_error t_err = {0};
    if (geteuid() != 0)
        skip();
    char *dir = t_scratch("snap-legacy");
    cairn_state *st = t_state(dir, "s");
    char id[CAIRN_STATE_ID_LEN + 1], chain[CAIRN_DIGEST_LEN + 1] = "";
    for (int i = 0; i < 50; i++) {
        T_OK(cairn_snapshot_prepare(st, chain[0] ? chain : NULL, NULL, id, &t_err));
        char name[32], content[32];
        snprintf(name, sizeof(name), "f%02d", i);
        snprintf(content, sizeof(content), "%d", i);
        put(dir, "s", id, name, content);
        put(dir, "s", id, "top", content);
        T_OK(cairn_snapshot_commit(st, id, chain, NULL, &t_err));
    }
    T_OK(cairn_snapshot_prepare(st, chain, NULL, id, &t_err));
    cairn_mount *m = NULL;
    T_OK(cairn_snapshot_mounts(st, id, &m, &t_err));
    size_t len = 0;
    for (size_t i = 0; i < m->n_options; i++)
        len += strlen(m->options[i]) + 1;
    assert_true(len > (size_t)sysconf(_SC_PAGESIZE)); /* one page would not do */
    cairn_mount_free(m);
    char *mnt = NULL, *p = NULL;
    assert_true(asprintf(&mnt, "%s/mnt", dir) > 0);
    assert_int_equal(mkdir(mnt, 0755), 0);
    T_OK(cairn__snapshot_mount_legacy(st, id, mnt, &t_err));
    char buf[16] = "";
    assert_true(asprintf(&p, "%s/top", mnt) > 0);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    assert_string_equal(buf, "49"); /* the nearest layer wins */
    free(p);
    assert_true(asprintf(&p, "%s/f00", mnt) > 0);
    assert_int_equal(access(p, F_OK), 0); /* the base shows through */
    free(p);
    assert_true(asprintf(&p, "%s/new", mnt) > 0);
    t_write_file(p, "x", 1); /* the upper is writable */
    free(p);
    T_OK(cairn_snapshot_umount(mnt, &t_err));
    free(mnt);
    cairn_state_free(st);
    t_scratch_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_chain),
        cmocka_unit_test(test_views_mounts_checkout),
        cmocka_unit_test(test_lower),
        cmocka_unit_test(test_legacy_mount),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
