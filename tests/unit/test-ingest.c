/* test-ingest.c: ingest of blobs larger than a pipeline slot (hashed in one
 * thread, written in another, O_DIRECT where the filesystem takes it), the
 * slot boundaries, batches that mix small and large blobs, and the failures
 * in the middle of a stream: a wrong digest, a short input, a full disk, a
 * writer dropped before commit. */
#include "helpers.h"

#include "core/core.h"
#include "store/ingest-private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SLOT ((size_t)CAIRN__PIPE_SLOT)

/* Incompressible bytes, different for each seed. */
static unsigned char *data(size_t len, uint64_t seed)
{
    unsigned char *b = malloc(len ? len : 1);
    assert_non_null(b);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        b[i] = (unsigned char)(x >> 24);
    }
    return b;
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static size_t count_tmp(const char *root)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/tmp", root) > 0);
    size_t n = count_entries(p);
    free(p);
    return n;
}

/* The blob's file holds exactly buf, and the store reads it back verified. */
static void assert_blob(cairn_state *st, const char *root, const char *digest,
                        const unsigned char *buf, size_t len)
{
    cairn_error t_err = {0};
    char want[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(buf, len, want);
    assert_string_equal(digest, want);
    char *p = NULL;
    assert_true(asprintf(&p, "%s/blobs/sha256/%s", root, digest + 7) > 0);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal((size_t)sb.st_size, len);
    free(p);
    void *got = NULL;
    size_t n = 0;
    T_OK(cairn_blob_read(st, digest, &got, &n, &t_err));
    assert_int_equal(n, len);
    assert_memory_equal(got, buf, len);
    free(got);
    cairn_blob_info info;
    T_OK(cairn_blob_stat(st, digest, &info, &t_err));
    assert_int_equal(info.size, len);
}

typedef struct fixture {
    char *dir, *root;
    cairn_state *st;
} fixture;

static void fx_open(fixture *f, const char *tag)
{
    f->dir = t_scratch(tag);
    f->st = t_state(f->dir, "s");
    assert_true(asprintf(&f->root, "%s/s", f->dir) > 0);
}

static void fx_close(fixture *f)
{
    cairn_state_free(f->st);
    free(f->root);
    t_scratch_free(f->dir);
}

/* Sizes on both sides of the slot boundaries, written in pieces that do not
 * line up with the slots, through the streaming writer. */
static void test_writer_sizes(void **unused)
{
    cairn_error t_err = {0};
    fixture f;
    fx_open(&f, "ingest-sizes");
    const size_t sizes[] = {0,        1,        4095,     4096,         SLOT - 1, SLOT,
                            SLOT + 1, SLOT + 4096, 2 * SLOT, 3 * SLOT + 12345, 9 * SLOT + 7};
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(sizes); i++) {
        size_t len = sizes[i];
        unsigned char *buf = data(len, i + 1);
        cairn_blob_writer *w = NULL;
        T_OK(cairn_blob_writer_new(&w, f.st, NULL, &t_err));
        size_t piece = (1u << 20) + 4097; /* straddles slots and blocks */
        for (size_t o = 0; o < len; o += piece)
            T_OK(cairn_blob_writer_write(w, buf + o, len - o < piece ? len - o : piece, &t_err));
        char digest[CAIRN_DIGEST_LEN + 1];
        T_OK(cairn_blob_writer_commit(w, digest, &t_err));
        cairn_blob_writer_free(w);
        assert_blob(f.st, f.root, digest, buf, len);
        free(buf);
    }
    assert_int_equal(count_tmp(f.root), 0);
    fx_close(&f);
}

/* cairn_blob_put_fd reads straight into the slots: from a regular file and
 * from a pipe (short reads that leave slots part full between reads). */
static void test_put_fd_file_and_pipe(void **unused)
{
    cairn_error t_err = {0};
    fixture f;
    fx_open(&f, "ingest-fd");
    size_t len = 2 * SLOT + 777;
    unsigned char *buf = data(len, 42);
    char *path = NULL;
    assert_true(asprintf(&path, "%s/input", f.dir) > 0);
    t_write_file(path, buf, len);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    char digest[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_put_fd(f.st, fd, NULL, digest, &t_err));
    close(fd);
    assert_blob(f.st, f.root, digest, buf, len);

    /* The same bytes again through a pipe: already there, nothing staged. */
    unsigned char *buf2 = data(len, 43);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        for (size_t o = 0; o < len;) {
            size_t n = len - o < 65536 ? len - o : 65536;
            ssize_t k = write(pfd[1], buf2 + o, n);
            if (k <= 0)
                _exit(1);
            o += (size_t)k;
        }
        _exit(0);
    }
    close(pfd[1]);
    char digest2[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_put_fd(f.st, pfd[0], NULL, digest2, &t_err));
    close(pfd[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_blob(f.st, f.root, digest2, buf2, len);
    assert_string_not_equal(digest, digest2);
    assert_int_equal(count_tmp(f.root), 0);
    free(buf);
    free(buf2);
    free(path);
    fx_close(&f);
}

/* A batch shares one pipeline among its writers: small, empty, large and
 * duplicate blobs, one after the other, all land and the count is right. */
static void test_batch_mixed(void **unused)
{
    cairn_error t_err = {0};
    fixture f;
    fx_open(&f, "ingest-batch");
    /* Small ones written by the caller, ones from 64 KiB written in the
     * background, ones over a slot streamed, and a repeat. */
    const size_t sizes[] = {4096,   0,     3 * SLOT + 5,    100,        SLOT,
                            100000, 65536, 2 * SLOT + 4096, 3 * SLOT + 5, 300001};
    const uint64_t seeds[] = {1, 2, 3, 4, 5, 6, 7, 8, 3, 10}; /* the 9th repeats the 3rd */
    unsigned char *bufs[CAIRN_ARRAY_SIZE(sizes)];
    char digests[CAIRN_ARRAY_SIZE(sizes)][CAIRN_DIGEST_LEN + 1];
    cairn_blob_batch *b = NULL;
    T_OK(cairn_blob_batch_new(&b, f.st, &t_err));
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(sizes); i++) {
        bufs[i] = data(sizes[i], seeds[i]);
        if (i % 2) {
            T_OK(cairn_blob_batch_put_buf(b, bufs[i], sizes[i], NULL, digests[i], &t_err));
        } else {
            char *path = NULL;
            assert_true(asprintf(&path, "%s/in%zu", f.dir, i) > 0);
            t_write_file(path, bufs[i], sizes[i]);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            assert_true(fd >= 0);
            T_OK(cairn_blob_batch_put_fd(b, fd, NULL, digests[i], &t_err));
            close(fd);
            free(path);
        }
        /* Nothing is visible before the batch commits. */
        assert_int_equal(cairn_blob_exists(f.st, digests[i], &t_err), 0);
    }
    int added = cairn_blob_batch_commit(b, &t_err);
    T_OK(added);
    assert_int_equal(added, 9);
    cairn_blob_batch_free(b);
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(sizes); i++) {
        assert_blob(f.st, f.root, digests[i], bufs[i], sizes[i]);
        free(bufs[i]);
    }
    assert_int_equal(count_tmp(f.root), 0);
    fx_close(&f);
}

/* A large blob whose digest or size is not the expected one is refused
 * after the pipeline has written it: nothing stored, nothing left staged. */
static void test_large_mismatch(void **unused)
{
    cairn_error t_err = {0}, err = {0};
    fixture f;
    fx_open(&f, "ingest-mismatch");
    size_t len = 2 * SLOT + 99;
    unsigned char *buf = data(len, 7);
    char real[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(buf, len, real);
    char wrong[CAIRN_DIGEST_LEN + 1];
    memcpy(wrong, real, sizeof(wrong));
    wrong[10] = wrong[10] == 'a' ? 'b' : 'a';

    cairn_blob_put_options o = CAIRN_BLOB_PUT_OPTIONS_INIT;
    o.expected = wrong;
    assert_int_equal(cairn_blob_put_buf(f.st, buf, len, &o, NULL, &err), CAIRN_E_MISMATCH);
    assert_non_null(strstr(err.message, wrong));
    assert_non_null(strstr(err.message, real));
    assert_int_equal(cairn_blob_exists(f.st, real, &t_err), 0);

    /* The right digest, but the stream stops short of the announced size. */
    cairn_blob_put_options o2 = CAIRN_BLOB_PUT_OPTIONS_INIT;
    o2.expected_size = (int64_t)len + 1;
    assert_int_equal(cairn_blob_put_buf(f.st, buf, len, &o2, NULL, &err), CAIRN_E_TRUNCATED);
    assert_non_null(strstr(err.message, "expected"));
    assert_int_equal(cairn_blob_exists(f.st, real, &t_err), 0);

    char *p = NULL;
    assert_true(asprintf(&p, "%s/blobs/sha256", f.root) > 0);
    assert_int_equal(count_entries(p), 0);
    free(p);
    assert_int_equal(count_tmp(f.root), 0);
    free(buf);
    fx_close(&f);
}

/* A writer dropped with slots still in flight: the threads finish before
 * the file goes, and nothing is left. A batch dropped the same way too. */
static void test_drop_mid_stream(void **unused)
{
    cairn_error t_err = {0};
    fixture f;
    fx_open(&f, "ingest-drop");
    size_t len = 5 * SLOT + 3;
    unsigned char *buf = data(len, 9);
    cairn_blob_writer *w = NULL;
    T_OK(cairn_blob_writer_new(&w, f.st, NULL, &t_err));
    T_OK(cairn_blob_writer_write(w, buf, len, &t_err));
    cairn_blob_writer_free(w);
    assert_int_equal(count_tmp(f.root), 0);

    cairn_blob_batch *b = NULL;
    T_OK(cairn_blob_batch_new(&b, f.st, &t_err));
    T_OK(cairn_blob_batch_put_buf(b, buf, len, NULL, NULL, &t_err));
    T_OK(cairn_blob_batch_put_buf(b, buf, 10, NULL, NULL, &t_err));
    assert_int_equal(count_tmp(f.root), 2);
    cairn_blob_batch_free(b);
    assert_int_equal(count_tmp(f.root), 0);
    char digest[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(buf, len, digest);
    assert_int_equal(cairn_blob_exists(f.st, digest, &t_err), 0);
    free(buf);
    fx_close(&f);
}

/* The pipeline on its own: a write error (here: the fd is a pipe, which has
 * no offsets) comes back from drain with the stream it hit, and stays; the
 * hash covers every submitted byte in order; streams handed off have their
 * fds closed by the pipeline once written. */
static void test_pipe_errors_and_order(void **unused)
{
    cairn__pipe *p = cairn__pipe_new();
    assert_non_null(p);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    unsigned bad = cairn__pipe_begin(p, pfd[1], NULL, true);
    for (int i = 0; i < 3; i++) {
        char *s = cairn__pipe_acquire(p);
        assert_non_null(s);
        memset(s, 'x', SLOT);
        cairn__pipe_submit(p, SLOT, (uint64_t)i * SLOT);
    }
    unsigned which = 0;
    assert_int_equal(cairn__pipe_drain(p, &which), -ESPIPE);
    assert_int_equal(which, bad);
    assert_int_equal(cairn__pipe_error(p, bad), -ESPIPE);
    assert_int_equal(cairn__pipe_error(p, bad + 1), 0);
    assert_int_equal(cairn__pipe_drain(p, NULL), -ESPIPE); /* it stays */
    close(pfd[0]);
    close(pfd[1]);
    cairn__pipe_free(p);
    p = cairn__pipe_new();
    assert_non_null(p);

    char *dir = t_scratch("ingest-pipe");
    char *path = NULL;
    assert_true(asprintf(&path, "%s/f", dir) > 0);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    cairn__sha256 *h = cairn__sha256_new();
    assert_non_null(h);
    size_t len = 6 * SLOT + 1000;
    unsigned char *buf = data(len, 11);
    cairn__pipe_begin(p, fd, h, true);
    for (size_t o = 0; o < len; o += SLOT) {
        size_t n = len - o < SLOT ? len - o : SLOT;
        char *s = cairn__pipe_acquire(p);
        assert_non_null(s);
        memcpy(s, buf + o, n);
        cairn__pipe_submit(p, n, o);
    }
    assert_int_equal(cairn__pipe_drain(p, NULL), 0);
    bool direct = cairn__pipe_direct_used(p);
    char got[CAIRN_DIGEST_LEN + 1], want[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_final(h, got);
    cairn__sha256_buf(buf, len, want);
    assert_string_equal(got, want);
    unsigned char *back = malloc(len);
    assert_non_null(back);
    assert_int_equal(pread(fd, back, len, 0), (ssize_t)len);
    assert_memory_equal(back, buf, len);
    print_message("ingest pipeline: O_DIRECT %s on %s\n", direct ? "used" : "not available", dir);

    /* Three streams one after the other, each handed off right after it is
     * hashed: each file gets its bytes and its fd is closed by the pipeline. */
    int fds[3];
    for (int k = 0; k < 3; k++) {
        char *q = NULL;
        assert_true(asprintf(&q, "%s/g%d", dir, k) > 0);
        fds[k] = open(q, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        assert_true(fds[k] >= 0);
        free(q);
        cairn__sha256 *hk = cairn__sha256_new();
        assert_non_null(hk);
        size_t n = (size_t)k * SLOT + 5000; /* 5000 bytes, then 1 and 2 slots and a bit */
        cairn__pipe_begin(p, fds[k], hk, k != 1);
        for (size_t o = 0; o < n; o += SLOT) {
            char *s = cairn__pipe_acquire(p);
            assert_non_null(s);
            size_t m = n - o < SLOT ? n - o : SLOT;
            memcpy(s, buf + o, m);
            cairn__pipe_submit(p, m, o);
        }
        cairn__pipe_wait_hashed(p);
        cairn__pipe_handoff(p);
        cairn__sha256_final(hk, got);
        cairn__sha256_buf(buf, n, want);
        assert_string_equal(got, want);
        cairn__sha256_free(hk);
    }
    assert_int_equal(cairn__pipe_drain(p, NULL), 0);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(fcntl(fds[k], F_GETFD), -1); /* closed by the pipeline */
        char *q = NULL;
        assert_true(asprintf(&q, "%s/g%d", dir, k) > 0);
        int rfd = open(q, O_RDONLY | O_CLOEXEC);
        assert_true(rfd >= 0);
        size_t n = (size_t)k * SLOT + 5000;
        assert_int_equal(pread(rfd, back, len, 0), (ssize_t)n);
        assert_memory_equal(back, buf, n);
        close(rfd);
        free(q);
    }
    free(back);
    free(buf);
    cairn__sha256_free(h);
    close(fd);
    cairn__pipe_free(p);
    free(path);
    t_scratch_free(dir);
}

/* A full disk in the middle of a large blob: a clear error naming the
 * staging file and the cause, nothing stored, the staged file removed, and
 * the state still takes blobs once there is room. Needs root for a small
 * tmpfs; skipped otherwise. */
static void test_disk_full(void **unused)
{
    cairn_error t_err = {0}, err = {0};
    char *dir = t_scratch("ingest-full");
    if (mount("cairn-test", dir, "tmpfs", 0, "size=12m") != 0) {
        print_message("skipped: mount tmpfs: %s\n", strerror(errno));
        t_scratch_free(dir);
        skip();
    }
    cairn_state *st = t_state(dir, "s");
    char *root = NULL;
    assert_true(asprintf(&root, "%s/s", dir) > 0);
    size_t len = 4 * SLOT; /* 16 MiB into 12 */
    unsigned char *buf = data(len, 13);
    int r = cairn_blob_put_buf(st, buf, len, NULL, NULL, &err);
    assert_int_equal(r, -ENOSPC);
    assert_non_null(strstr(err.message, "/tmp/"));
    assert_non_null(strstr(err.message, "write"));
    assert_int_equal(count_tmp(root), 0);
    char digest[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(buf, len, digest);
    assert_int_equal(cairn_blob_exists(st, digest, &t_err), 0);

    /* The same in a batch, whose writes finish in the background: the
     * failure shows at the put or at the latest at the commit, which then
     * stores nothing, naming the blob and its staging file. */
    cairn_blob_batch *b = NULL;
    T_OK(cairn_blob_batch_new(&b, st, &t_err));
    char small[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_batch_put_buf(b, buf, 100000, NULL, small, &t_err));
    r = cairn_blob_batch_put_buf(b, buf, len, NULL, NULL, &err);
    if (r == 0) {
        r = cairn_blob_batch_commit(b, &err);
        assert_non_null(strstr(err.message, digest));
        assert_non_null(strstr(err.message, "nothing was stored"));
    }
    assert_int_equal(r, -ENOSPC);
    assert_non_null(strstr(err.message, "/tmp/"));
    cairn_blob_batch_free(b);
    assert_int_equal(cairn_blob_exists(st, small, &t_err), 0);
    assert_int_equal(cairn_blob_exists(st, digest, &t_err), 0);
    assert_int_equal(count_tmp(root), 0);

    /* With room again, a new batch stores what the failed one could not. */
    T_OK(cairn_blob_batch_new(&b, st, &t_err));
    T_OK(cairn_blob_batch_put_buf(b, buf, 100000, NULL, small, &t_err));
    char mid[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_batch_put_buf(b, buf, SLOT + 1, NULL, mid, &t_err));
    assert_int_equal(cairn_blob_batch_commit(b, &t_err), 2);
    cairn_blob_batch_free(b);
    assert_blob(st, root, small, buf, 100000);
    assert_blob(st, root, mid, buf, SLOT + 1);
    assert_int_equal(count_tmp(root), 0);

    free(buf);
    cairn_state_free(st);
    assert_int_equal(umount2(dir, MNT_DETACH), 0);
    free(root);
    t_scratch_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_sizes),
        cmocka_unit_test(test_put_fd_file_and_pipe),
        cmocka_unit_test(test_batch_mixed),
        cmocka_unit_test(test_large_mismatch),
        cmocka_unit_test(test_drop_mid_stream),
        cmocka_unit_test(test_pipe_errors_and_order),
        cmocka_unit_test(test_disk_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
