/* test-layer.c: layer import and export through the library. */
#include "helpers.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

/* A tar in a memfd from entries "f:path:content", "d:path", "l:path:target",
 * "h:path:target"; compressed with `filter` (ARCHIVE_FILTER_*). */
static int make_tar(int filter, const char *const *specs)
{
    int fd = memfd_create("layer", 0);
    assert_true(fd >= 0);
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (filter == ARCHIVE_FILTER_GZIP)
        archive_write_add_filter_gzip(a);
    else if (filter == ARCHIVE_FILTER_ZSTD)
        archive_write_add_filter_zstd(a);
    assert_int_equal(archive_write_open_fd(a, fd), ARCHIVE_OK);
    for (; *specs; specs++) {
        char *s = strdup(*specs);
        char kind = s[0];
        char *path = s + 2, *arg = strchr(path, ':');
        if (arg)
            *arg++ = 0;
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, path);
        archive_entry_set_mtime(e, 1700000000, 0);
        archive_entry_set_perm(e, 0644);
        switch (kind) {
        case 'f':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, (la_int64_t)strlen(arg));
            break;
        case 'd':
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_perm(e, 0755);
            break;
        case 'l':
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, arg);
            break;
        case 'h':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, arg);
            break;
        }
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        if (kind == 'f')
            assert_int_equal(archive_write_data(a, arg, strlen(arg)), (la_ssize_t)strlen(arg));
        archive_entry_free(e);
        free(s);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

static int count_snaps(void *ud, const cairn_snapshot_info *i)
{
    (*(int *)ud)++;
    return 0;
}

static int n_snapshots(cairn_state *st)
{
    int n = 0;
    cairn_error e = {0};
    assert_int_equal(cairn_snapshot_list(st, count_snaps, &n, &e), 0);
    return n;
}

static bool dir_empty(const char *state, const char *sub)
{
    char *cmd = NULL;
    assert_true(asprintf(&cmd, "[ -z \"$(ls -A '%s/%s')\" ]", state, sub) > 0);
    int r = system(cmd);
    free(cmd);
    return r == 0;
}

static void test_round_trip(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("layer");
    cairn_state *a = t_state(dir, "a"), *b = t_state(dir, "b");
    static const char *const specs[] = {"d:etc", "f:etc/hello:hello world", "l:etc/link:hello",
                                        "h:etc/hard:etc/hello", "f:./top:top", NULL};
    int fd = make_tar(ARCHIVE_FILTER_GZIP, specs);
    char chain[CAIRN_DIGEST_LEN + 1], diff[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_layer_import(a, NULL, fd, NULL, chain, diff, &t_err));
    close(fd);
    assert_string_equal(chain, diff); /* a base */
    char *p = NULL;
    assert_true(asprintf(&p, "%s/a/snapshots/%s/etc/hard", dir, chain + 7) > 0);
    struct stat s1, s2;
    assert_int_equal(lstat(p, &s1), 0);
    free(p);
    assert_true(asprintf(&p, "%s/a/snapshots/%s/etc/hello", dir, chain + 7) > 0);
    assert_int_equal(lstat(p, &s2), 0);
    assert_int_equal(s1.st_ino, s2.st_ino); /* the hardlink is kept */
    assert_int_equal(s1.st_mtime, 1700000000);
    free(p);

    /* That tar was not canonical: its export is refused before writing. */
    int out = memfd_create("out", 0);
    assert_int_equal(cairn_layer_export(a, chain, out, CAIRN_COMPRESSION_NONE, NULL, NULL, &t_err),
                     CAIRN_E_FORMAT);
    assert_non_null(strstr(t_err.message, "canonical"));
    assert_int_equal(lseek(out, 0, SEEK_END), 0);
    close(out);

    /* A canonical tar (what export writes) round-trips to the same name,
     * plain, gzip or zstd. */
    char id[CAIRN_STATE_ID_LEN + 1], c1[CAIRN_DIGEST_LEN + 1], d1[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_snapshot_prepare(a, NULL, NULL, id, &t_err));
    assert_true(asprintf(&p, "%s/a/active/%s/fs/file", dir, id) > 0);
    t_write_file(p, "content", 7);
    free(p);
    T_OK(cairn_snapshot_commit(a, id, c1, d1, &t_err));
    for (int comp = CAIRN_COMPRESSION_NONE; comp <= CAIRN_COMPRESSION_ZSTD; comp++) {
        out = memfd_create("out", 0);
        char dg[CAIRN_DIGEST_LEN + 1], c2[CAIRN_DIGEST_LEN + 1], d2[CAIRN_DIGEST_LEN + 1];
        uint64_t size = 0;
        T_OK(cairn_layer_export(a, c1, out, comp, dg, &size, &t_err));
        assert_int_equal(lseek(out, 0, SEEK_CUR), (off_t)size);
        if (comp == CAIRN_COMPRESSION_NONE)
            assert_string_equal(dg, d1); /* the plain export's digest is the DiffID */
        lseek(out, 0, SEEK_SET);
        cairn_layer_import_options o = CAIRN_LAYER_IMPORT_OPTIONS_INIT;
        o.expected_diff_id = d1;
        T_OK(cairn_layer_import(b, NULL, out, &o, c2, d2, &t_err));
        assert_string_equal(c2, c1);
        assert_string_equal(d2, d1);
        close(out);
    }
    assert_int_equal(n_snapshots(b), 1);
    cairn_state_free(a);
    cairn_state_free(b);
    t_scratch_free(dir);
}

static void test_refused(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("layer-bad");
    cairn_state *st = t_state(dir, "s");
    char *sp = NULL;
    assert_true(asprintf(&sp, "%s/s", dir) > 0);
    struct {
        const char *const specs[4];
        int code;
        const char *msg;
    } cases[] = {
        {{"f:../evil:x", NULL}, CAIRN_E_UNSAFE, "'..'"},
        {{"f:/evil:x", NULL}, CAIRN_E_UNSAFE, "absolute"},
        {{"l:up:/", "f:up/tmp/evil:x", NULL}, CAIRN_E_UNSAFE, "outside the layer"},
        {{"h:pw:../../etc/passwd", NULL}, CAIRN_E_UNSAFE, "outside the layer"},
        {{"h:pw:etc/passwd", NULL}, CAIRN_E_UNSAFE, "not in the layer"},
        {{"l:d:/tmp", "d:d", NULL}, CAIRN_E_UNSAFE, "directory over a symlink"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int fd = make_tar(ARCHIVE_FILTER_NONE, cases[i].specs);
        cairn_error e = {0};
        assert_int_equal(cairn_layer_import(st, NULL, fd, NULL, NULL, NULL, &e), cases[i].code);
        assert_non_null(strstr(e.message, cases[i].msg));
        close(fd);
        assert_int_equal(n_snapshots(st), 0);
        assert_true(dir_empty(sp, "tmp"));
        assert_true(dir_empty(sp, "snapshots"));
    }

    /* Truncated gzip; a DiffID other than the expected one. */
    static const char *const ok[] = {"f:a:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL};
    int fd = make_tar(ARCHIVE_FILTER_GZIP, ok);
    off_t len = lseek(fd, 0, SEEK_END);
    assert_int_equal(ftruncate(fd, len - 12), 0);
    lseek(fd, 0, SEEK_SET);
    assert_int_equal(cairn_layer_import(st, NULL, fd, NULL, NULL, NULL, &t_err),
                     CAIRN_E_TRUNCATED);
    close(fd);
    fd = make_tar(ARCHIVE_FILTER_NONE, ok);
    cairn_layer_import_options o = CAIRN_LAYER_IMPORT_OPTIONS_INIT;
    o.expected_diff_id = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(cairn_layer_import(st, NULL, fd, &o, NULL, NULL, &t_err), CAIRN_E_MISMATCH);
    assert_non_null(strstr(t_err.message, o.expected_diff_id));
    assert_int_equal(n_snapshots(st), 0);
    assert_true(dir_empty(sp, "tmp"));
    /* An unknown parent. */
    lseek(fd, 0, SEEK_SET);
    assert_int_equal(cairn_layer_import(st, o.expected_diff_id, fd, NULL, NULL, NULL, &t_err),
                     -ENOENT);
    /* The same stream imports fine, and a second import with the expected
     * DiffID reads nothing. */
    lseek(fd, 0, SEEK_SET);
    char c[CAIRN_DIGEST_LEN + 1], d[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_layer_import(st, NULL, fd, NULL, c, d, &t_err));
    o.expected_diff_id = d;
    int devnull = open("/dev/null", O_RDONLY);
    char c2[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_layer_import(st, NULL, devnull, &o, c2, NULL, &t_err));
    assert_string_equal(c, c2);
    close(devnull);
    close(fd);
    free(sp);
    cairn_state_free(st);
    t_scratch_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
