/* test-gc.c: garbage collection: roots, grace, snapshots and orphans, the
 * LRU policy, lowers, du, a writer racing the collector (fork), staging of
 * a dead writer, and fsck beside gc. */
#include "cache-fixtures.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>

static void gc_ok(cairn_state *st, const cairn_gc_options *o, cairn_gc_stats *s)
{
    cairn_error t_err = {0};
    T_OK(cairn_gc(st, o, NULL, NULL, s, &t_err));
}

static void test_roots(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("gcroots");
    cairn_state *st = t_state(dir, "s");
    const char *sp = cairn_state_path(st);
    char g[72], r[72], l[72], cfg[72], layer[72], m[72], e[72], y[72], key[72], mf[512];
    fx_blob(st, "garbage", NULL, g);
    fx_blob(st, "recorded", NULL, r);
    fx_blob(st, "leased", NULL, l);
    fx_blob(st, "{\"config\":1}", NULL, cfg);
    fx_blob(st, "layer bytes", NULL, layer);
    fx_blob(st, "expired lease's", NULL, e);
    snprintf(mf, sizeof(mf),
             "{\"schemaVersion\":2,\"config\":{\"digest\":\"%s\",\"size\":1},"
             "\"layers\":[{\"digest\":\"%s\",\"size\":11}]}",
             cfg, layer);
    fx_blob(st, mf, "application/vnd.oci.image.manifest.v1+json", m);
    char *sql = NULL;
    assert_true(asprintf(&sql,
                         "INSERT INTO images(name, manifest, config, top, updated) "
                         "VALUES ('demo:latest', '%s', '%s', '', 0)",
                         m, cfg) > 0);
    fx_sql(st, sql);
    free(sql);
    fx_digest("k", key);
    T_OK(cairn_record_add_result(st, key, CAIRN_RESULT_BLOB, r, 0, &t_err));
    T_OK(cairn_lease_create(st, "keep", 0, NULL, &t_err));
    T_OK(cairn_lease_resource_add(st, "keep", "blob", l, &t_err));
    T_OK(cairn_lease_create(st, "old", 60, NULL, &t_err));
    T_OK(cairn_lease_resource_add(st, "old", "blob", e, &t_err));
    fx_sql(st, "UPDATE leases SET expires = 1 WHERE id = 'old'");
    fx_age(st);
    fx_blob(st, "young", NULL, y); /* within the grace period */

    /* Dry run: says what would go, removes nothing. */
    cairn_gc_options o = CAIRN_GC_OPTIONS_INIT;
    cairn_gc_stats s;
    o.dry_run = 1;
    gc_ok(st, &o, &s);
    assert_int_equal(s.blobs, 2);
    assert_int_equal(s.leases, 1);
    assert_true(fx_exists(sp, "blobs/sha256", g));

    o.dry_run = 0;
    gc_ok(st, &o, &s);
    assert_int_equal(s.blobs, 2);
    assert_int_equal(s.leases, 1);
    assert_int_equal(s.bytes_freed, strlen("garbage") + strlen("expired lease's"));
    assert_false(fx_exists(sp, "blobs/sha256", g));
    assert_false(fx_exists(sp, "blobs/sha256", e));
    assert_int_equal(cairn_blob_exists(st, g, &t_err), 0);
    const char *kept[] = {r, l, cfg, layer, m, y};
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(cairn_blob_exists(st, kept[i], &t_err), 1);
        assert_true(fx_exists(sp, "blobs/sha256", kept[i]));
    }
    cairn_lease_info in;
    assert_int_equal(cairn_lease_get(st, "old", &in, &t_err), -ENOENT);
    /* A second run finds nothing; the state checks out. */
    gc_ok(st, &o, &s);
    assert_int_equal(s.blobs + s.snapshots + s.records + s.files, 0);
    cairn_fsck_options fo = CAIRN_FSCK_OPTIONS_INIT;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 0);

    /* The lease removed: what it kept goes; the image removed: its blobs go. */
    T_OK(cairn_lease_remove(st, "keep", &t_err));
    fx_sql(st, "DELETE FROM images");
    fx_age(st);
    gc_ok(st, &o, &s);
    assert_int_equal(s.blobs, 5); /* l, cfg, layer, m, y */
    assert_int_equal(cairn_blob_exists(st, r, &t_err), 1);
    cairn_state_free(st);
    t_scratch_free(dir);
}

static void test_snapshots_and_orphans(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("gcsnap");
    cairn_state *st = t_state(dir, "s");
    const char *sp = cairn_state_path(st);
    char s1[72], s2[72], s3[72], s4[72], s5[72], key[72];
    fx_snapshot(st, "s1", NULL, 100, s1);
    fx_snapshot(st, "s2", s1, 100, s2);
    fx_snapshot(st, "s3", s2, 100, s3);
    fx_snapshot(st, "s4", s1, 100, s4);
    fx_snapshot(st, "s5", NULL, 100, s5);
    fx_digest("key", key);
    T_OK(cairn_record_add_result(st, key, CAIRN_RESULT_SNAPSHOT, s3, 0, &t_err));
    char act[CAIRN_STATE_ID_LEN + 1];
    T_OK(cairn_snapshot_prepare(st, s5, "session", act, &t_err));
    fx_age(st);
    cairn_gc_options o = CAIRN_GC_OPTIONS_INIT;
    cairn_gc_stats s;
    gc_ok(st, &o, &s);
    assert_int_equal(s.snapshots, 1);
    assert_int_equal(s.bytes_freed, 100);
    assert_false(fx_exists(sp, "snapshots", s4));
    const char *kept[] = {s1, s2, s3, s5};
    for (size_t i = 0; i < 4; i++)
        assert_true(fx_exists(sp, "snapshots", kept[i]));

    /* Orphans: a file and a directory no row names (a crash between the
     * rename and the row). Kept within the grace period, removed after. */
    char orphan[72], odir[72];
    fx_digest("orphan file", orphan);
    fx_digest("orphan dir", odir);
    char *p = NULL;
    assert_true(asprintf(&p, "%s/blobs/sha256/%s", sp, orphan + 7) > 0);
    t_write_file(p, "lost", 4);
    free(p);
    assert_true(asprintf(&p, "%s/snapshots/%s/fs/f", sp, odir + 7) > 0);
    t_write_file(p, "lost", 4);
    free(p);
    gc_ok(st, &o, &s);
    assert_int_equal(s.files, 0);
    assert_true(fx_exists(sp, "blobs/sha256", orphan));
    o.grace = CAIRN_GC_GRACE_NONE;
    gc_ok(st, &o, &s);
    assert_int_equal(s.files, 2);
    assert_false(fx_exists(sp, "blobs/sha256", orphan));
    assert_false(fx_exists(sp, "snapshots", odir));
    cairn_fsck_options fo = CAIRN_FSCK_OPTIONS_INIT;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 0);
    cairn_state_free(st);
    t_scratch_free(dir);
}

static size_t tmp_entries(const char *sp)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/tmp", sp) > 0);
    DIR *d = opendir(p);
    free(p);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

struct gc_seen {
    int staging;
};

static void on_gc_item(void *ud, const cairn_gc_item *it)
{
    struct gc_seen *g = ud;
    if (!strcmp(it->kind, "file") && !strncmp(it->name, "tmp/", 4) &&
        !strcmp(it->reason, "staging of a process that is gone"))
        g->staging++;
}

/* Staging of a process that died, found by the gc of a state that was open
 * before it died (a server: it opens once and collects often), and left
 * alone while that process lives. */
static void test_staging(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("gcstage");
    cairn_state *st = t_state(dir, "s");
    const char *sp = cairn_state_path(st);
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A writer that stages 4 MiB, says so, and waits to be killed. */
        cairn_state *cs = NULL;
        cairn_blob_writer *w = NULL;
        static char buf[1 << 20];
        if (cairn_state_open(&cs, sp, 0, NULL) < 0 || cairn_blob_writer_new(&w, cs, NULL, NULL) < 0)
            _exit(1);
        for (int i = 0; i < 4; i++) /* past what the writer buffers */
            if (cairn_blob_writer_write(w, buf, sizeof(buf), NULL) < 0)
                _exit(1);
        if (write(up[1], "x", 1) != 1)
            _exit(1);
        char c;
        while (read(down[0], &c, 1) < 0)
            ;
        _exit(0);
    }
    char c;
    assert_int_equal(read(up[0], &c, 1), 1);
    size_t staged = tmp_entries(sp);
    assert_int_equal(staged, 1); /* the staged file, and nothing else */

    cairn_gc_options o = CAIRN_GC_OPTIONS_INIT;
    o.grace = 0;
    cairn_gc_stats gs;
    struct gc_seen seen = {0};
    T_OK(cairn_gc(st, &o, on_gc_item, &seen, &gs, &t_err));
    assert_int_equal(seen.staging, 0);
    assert_int_equal(tmp_entries(sp), staged); /* alive: left alone */

    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    o.dry_run = 1;
    T_OK(cairn_gc(st, &o, on_gc_item, &seen, &gs, &t_err));
    assert_int_equal(seen.staging, 1);
    assert_int_equal(tmp_entries(sp), staged); /* a dry run removes nothing */
    seen.staging = 0;
    o.dry_run = 0;
    T_OK(cairn_gc(st, &o, on_gc_item, &seen, &gs, &t_err));
    assert_int_equal(seen.staging, 1);
    assert_int_equal(tmp_entries(sp), 0);
    close(up[0]);
    close(up[1]);
    close(down[0]);
    close(down[1]);
    cairn_state_free(st);
    t_scratch_free(dir);
}

/* fsck beside gc: gc deletes rows and then objects under the state's lock
 * held exclusive; fsck holds it shared from its first read to its last, so
 * no deletion falls between a row it read and the look at the object. The
 * probe takes the lock as gc would, from the fsck's progress callback. */
struct probe {
    const char *sp;
    int calls, free_to_delete;
};

static int fsck_probe(void *ud, uint64_t done, uint64_t total)
{
    struct probe *p = ud;
    char *lk = NULL;
    assert_true(asprintf(&lk, "%s/lock", p->sp) > 0);
    int fd = open(lk, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    free(lk);
    assert_true(fd >= 0);
    p->calls++;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        p->free_to_delete++;
    close(fd);
    return 0;
}

static void test_fsck_beside_gc(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("gcfsck");
    cairn_state *st = t_state(dir, "s");
    char d[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_put_buf(st, "one", 3, NULL, d, &t_err));
    cairn_state_free(st);
    char *sp = NULL;
    assert_true(asprintf(&sp, "%s/s", dir) > 0);
    /* read-only, as the command's fsck opens it */
    T_OK(cairn_state_open(&st, sp, CAIRN_OPEN_READONLY, &t_err));
    struct probe p = {cairn_state_path(st), 0, 0};
    cairn_fsck_options fo = CAIRN_FSCK_OPTIONS_INIT;
    fo.progress = fsck_probe;
    fo.progress_userdata = &p;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 0);
    assert_true(p.calls > 0);
    assert_int_equal(p.free_to_delete, 0);
    cairn_state_free(st);
    free(sp);
    t_scratch_free(dir);
}

static void set_used(cairn_state *st, const char *kind, const char *d, int64_t ago)
{
    char *sql = NULL;
    assert_true(asprintf(&sql,
                         "UPDATE usage SET last_used = strftime('%%s','now') - %lld "
                         "WHERE object = '%s'",
                         (long long)ago, d) > 0);
    fx_sql(st, sql);
    free(sql);
}

static void test_policy(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("gcpolicy");
    cairn_state *st = t_state(dir, "s");
    char b[4][72], k[4][72];
    for (int i = 0; i < 4; i++) {
        char content[1001], name[16];
        memset(content, 'a' + i, 1000);
        content[1000] = 0;
        fx_blob(st, content, NULL, b[i]);
        snprintf(name, sizeof(name), "key%d", i);
        fx_digest(name, k[i]);
        T_OK(cairn_record_add_result(st, k[i], CAIRN_RESULT_BLOB, b[i], 0, &t_err));
    }
    fx_age_by(st, 30 * 86400);
    /* Used 4, 3, 2 and 1 days ago. */
    for (int i = 0; i < 4; i++)
        set_used(st, "blob", b[i], (4 - i) * 86400);
    cairn_gc_options o = CAIRN_GC_OPTIONS_INIT;
    cairn_gc_stats s;
    /* No policy: records keep their results. */
    gc_ok(st, &o, &s);
    assert_int_equal(s.blobs + s.records, 0);
    /* A budget of 2500 bytes: the two least recently used go. */
    o.max_used = 2500;
    gc_ok(st, &o, &s);
    assert_int_equal(s.blobs, 2);
    assert_int_equal(s.records, 2);
    assert_int_equal(s.used_after, 2000);
    cairn_record_result res;
    assert_int_equal(cairn_record_load(st, k[0], NULL, &res, &t_err), -ENOENT);
    assert_int_equal(cairn_record_load(st, k[1], NULL, &res, &t_err), -ENOENT);
    assert_int_equal(cairn_blob_exists(st, b[1], &t_err), 0);
    set_used(st, "blob", b[2], 2 * 86400);
    set_used(st, "blob", b[3], 1 * 86400);
    /* Reserved space: never below 1000 bytes. */
    o.max_used = 1;
    o.reserved = 1000;
    gc_ok(st, &o, &s);
    assert_int_equal(s.records, 1);
    assert_int_equal(cairn_blob_exists(st, b[3], &t_err), 1);
    assert_int_equal(cairn_blob_exists(st, b[2], &t_err), 0);
    /* Keep duration: used within 2 days stays; a leased key stays. */
    char b5[72], k5[72];
    fx_blob(st, "leased result", NULL, b5);
    fx_digest("key5", k5);
    T_OK(cairn_record_add_result(st, k5, CAIRN_RESULT_BLOB, b5, 0, &t_err));
    T_OK(cairn_lease_create(st, "s", 0, NULL, &t_err));
    T_OK(cairn_lease_resource_add(st, "s", "record", k5, &t_err));
    fx_age_by(st, 30 * 86400);
    set_used(st, "blob", b5, 10 * 86400);
    set_used(st, "blob", b[3], 86400);
    o = (cairn_gc_options)CAIRN_GC_OPTIONS_INIT;
    o.keep_duration = 2 * 86400;
    gc_ok(st, &o, &s);
    assert_int_equal(s.records, 0);
    o.keep_duration = 3600;
    gc_ok(st, &o, &s);
    assert_int_equal(s.records, 1); /* key3; key5 is leased */
    assert_int_equal(cairn_blob_exists(st, b5, &t_err), 1);
    T_OK(cairn_record_load(st, k5, NULL, &res, &t_err));

    /* Shared parents are counted once: p <- c1, p <- c2. */
    char p[72], c1[72], c2[72], kc1[72], kc2[72];
    fx_snapshot(st, "p", NULL, 1000, p);
    fx_snapshot(st, "c1", p, 100, c1);
    fx_snapshot(st, "c2", p, 100, c2);
    fx_digest("kc1", kc1);
    fx_digest("kc2", kc2);
    T_OK(cairn_record_add_result(st, kc1, CAIRN_RESULT_SNAPSHOT, c1, 0, &t_err));
    T_OK(cairn_record_add_result(st, kc2, CAIRN_RESULT_SNAPSHOT, c2, 0, &t_err));
    T_OK(cairn_lease_remove(st, "s", &t_err));
    T_OK(cairn_record_release(st, b5, &t_err));
    fx_age_by(st, 30 * 86400);
    set_used(st, "snapshot", c1, 5 * 86400);
    set_used(st, "snapshot", c2, 4 * 86400);
    /* Now: b5 (garbage, 13 bytes), p 1000 + c1 100 + c2 100 kept by records. */
    o = (cairn_gc_options)CAIRN_GC_OPTIONS_INIT;
    o.max_used = 1150;
    gc_ok(st, &o, &s);
    assert_int_equal(s.blobs, 1);
    assert_int_equal(s.snapshots, 1); /* c1 only: p is still c2's parent */
    assert_int_equal(s.used_after, 1100);
    o.max_used = 500;
    gc_ok(st, &o, &s);
    assert_int_equal(s.snapshots, 2); /* c2, then p */
    assert_int_equal(s.bytes_freed, 1100);
    cairn_fsck_options fo = CAIRN_FSCK_OPTIONS_INIT;
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 0);
    cairn_state_free(st);
    t_scratch_free(dir);
}

static void test_lower(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("gclower");
    cairn_state *lo = t_state(dir, "lower");
    char lower_path[4096], lower_id[CAIRN_STATE_ID_LEN + 1], lb[72], lg[72];
    snprintf(lower_path, sizeof(lower_path), "%s", cairn_state_path(lo));
    snprintf(lower_id, sizeof(lower_id), "%s", cairn_state_id(lo));
    fx_blob(lo, "lower garbage", NULL, lg);
    fx_blob(lo, "lower kept", NULL, lb);
    fx_age(lo);
    cairn_state_free(lo);
    cairn_state *top = t_state(dir, "top");
    char top_path[4096], tg[72];
    snprintf(top_path, sizeof(top_path), "%s", cairn_state_path(top));
    cairn_state_free(top);
    fx_stack(lower_path, lower_id, top_path);
    T_OK(cairn_state_open(&top, top_path, 0, &t_err));
    fx_blob(top, "top garbage", NULL, tg);
    fx_age(top);
    cairn_gc_options o = CAIRN_GC_OPTIONS_INIT;
    cairn_gc_stats s;
    gc_ok(top, &o, &s);
    assert_int_equal(s.blobs, 1);
    assert_false(fx_exists(top_path, "blobs/sha256", tg));
    /* The lower's unreferenced blob is the lower's: never touched. */
    assert_true(fx_exists(lower_path, "blobs/sha256", lg));
    assert_int_equal(cairn_blob_exists(top, lg, &t_err), 1);
    cairn_du_totals t;
    T_OK(cairn_du(top, 0, &t, NULL, NULL, &t_err));
    assert_int_equal(t.blobs.count, 2);
    assert_int_equal(t.own_blobs.count, 0);
    cairn_state_free(top);
    t_scratch_free(dir);
}

struct du_seen {
    char name[8][80];
    uint64_t size[8], unique[8];
    int n;
};

static int du_cb(void *ud, const cairn_du_entry *e)
{
    struct du_seen *d = ud;
    assert_true(d->n < 8);
    snprintf(d->name[d->n], sizeof(d->name[0]), "%s %s", e->kind, e->name);
    d->size[d->n] = e->size;
    d->unique[d->n] = e->unique;
    d->n++;
    return 0;
}

static void test_du(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("du");
    cairn_state *st = t_state(dir, "s");
    char p[72], c1[72], c2[72], k1[72], k2[72], g[72];
    fx_snapshot(st, "p", NULL, 1000, p);
    fx_snapshot(st, "c1", p, 100, c1);
    fx_snapshot(st, "c2", p, 300, c2);
    fx_blob(st, "garbage", NULL, g);
    fx_digest("k1", k1);
    fx_digest("k2", k2);
    T_OK(cairn_record_add_result(st, k1, CAIRN_RESULT_SNAPSHOT, c1, 0, &t_err));
    T_OK(cairn_record_add_result(st, k2, CAIRN_RESULT_SNAPSHOT, c2, 0, &t_err));
    cairn_du_totals t;
    struct du_seen d = {0};
    T_OK(cairn_du(st, 0, &t, du_cb, &d, &t_err));
    assert_int_equal(t.total, 1400 + 7);
    assert_int_equal(t.snapshots.count, 3);
    assert_int_equal(t.records, 2);
    assert_int_equal(t.unreferenced, 7);
    assert_int_equal(t.reclaimable, 1407);
    assert_int_equal(d.n, 2);
    /* Largest first; the shared parent counted in both sizes, in no unique. */
    assert_string_equal(d.name[0] + 7, k2);
    assert_int_equal(d.size[0], 1300);
    assert_int_equal(d.unique[0], 300);
    assert_int_equal(d.size[1], 1100);
    assert_int_equal(d.unique[1], 100);
    memset(&d, 0, sizeof(d));
    T_OK(cairn_du(st, 1, NULL, du_cb, &d, &t_err));
    assert_int_equal(d.n, 1);
    cairn_state_free(st);
    t_scratch_free(dir);
}

/* ---- a writer racing the collector ----------------------------------- */

#define RACE_ROUNDS 4
#define RACE_N 30

static void content(char *buf, size_t size, const char *what, int round, int i)
{
    snprintf(buf, size, "%s round %d item %d", what, round, i);
}

/* The child: re-put old garbage and record it; lease, put and record new
 * blobs; renew the lease. Every call must succeed. */
static int writer(const char *path, int round)
{
    cairn_error err = {0};
    cairn_state *st = NULL;
    if (cairn_state_open(&st, path, 0, &err) < 0)
        goto fail;
    char lease[32];
    snprintf(lease, sizeof(lease), "w%d", round);
    if (cairn_lease_create(st, lease, 60, NULL, &err) < 0)
        goto fail;
    struct timespec ts = {0, 15 * 1000 * 1000};
    for (int i = 0; i < RACE_N; i++) {
        char buf[128], d[72], key[72], kname[64];
        nanosleep(&ts, NULL);
        content(buf, sizeof(buf), "garbage", round, i);
        if (cairn_blob_put_buf(st, buf, strlen(buf), NULL, d, &err) < 0)
            goto fail;
        snprintf(kname, sizeof(kname), "old key %d %d", round, i);
        fx_digest(kname, key);
        if (cairn_record_add_result(st, key, CAIRN_RESULT_BLOB, d, 0, &err) < 0)
            goto fail;
        content(buf, sizeof(buf), "new", round, i);
        cairn__sha256_buf(buf, strlen(buf), d);
        if (cairn_lease_resource_add(st, lease, "blob", d, &err) < 0 ||
            cairn_blob_put_buf(st, buf, strlen(buf), NULL, d, &err) < 0)
            goto fail;
        snprintf(kname, sizeof(kname), "new key %d %d", round, i);
        fx_digest(kname, key);
        if (cairn_record_add_result(st, key, CAIRN_RESULT_BLOB, d, 0, &err) < 0 ||
            cairn_lease_renew(st, lease, 60, &err) < 0)
            goto fail;
    }
    cairn_state_free(st);
    return 0;
fail:
    fprintf(stderr, "writer: %s\n", err.message);
    return 1;
}

static void test_race(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("gcrace");
    cairn_state *st = t_state(dir, "s");
    char path[4096];
    snprintf(path, sizeof(path), "%s", cairn_state_path(st));
    uint64_t collected = 0;
    for (int round = 0; round < RACE_ROUNDS; round++) {
        /* Old garbage: some the writer will re-put and record, held by a
         * lease that expires while the writer runs; some left alone. */
        char hold[32];
        snprintf(hold, sizeof(hold), "hold%d", round);
        T_OK(cairn_lease_create(st, hold, 1, NULL, &t_err));
        for (int i = 0; i < RACE_N; i++) {
            char buf[128], d[72];
            content(buf, sizeof(buf), "garbage", round, i);
            fx_blob(st, buf, NULL, d);
            T_OK(cairn_lease_resource_add(st, hold, "blob", d, &t_err));
            content(buf, sizeof(buf), "untouched", round, i);
            fx_blob(st, buf, NULL, d);
        }
        fx_age(st);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            _exit(writer(path, round));
        cairn_gc_options o = CAIRN_GC_OPTIONS_INIT;
        o.grace = 30;
        int status = 0, runs = 0;
        for (;;) {
            cairn_gc_stats s;
            T_OK(cairn_gc(st, &o, NULL, NULL, &s, &t_err));
            collected += s.blobs;
            runs++;
            pid_t w = waitpid(pid, &status, WNOHANG);
            assert_true(w >= 0);
            if (w == pid)
                break;
        }
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_true(runs >= 1);
        /* Everything the writer recorded is there. */
        for (int i = 0; i < RACE_N; i++) {
            char kname[64], key[72];
            cairn_record_result res;
            snprintf(kname, sizeof(kname), "old key %d %d", round, i);
            fx_digest(kname, key);
            T_OK(cairn_record_load(st, key, NULL, &res, &t_err));
            snprintf(kname, sizeof(kname), "new key %d %d", round, i);
            fx_digest(kname, key);
            T_OK(cairn_record_load(st, key, NULL, &res, &t_err));
        }
        cairn_fsck_options fo = CAIRN_FSCK_OPTIONS_INIT;
        assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), 0);
    }
    /* And the untouched garbage did go. */
    assert_true(collected >= RACE_ROUNDS * RACE_N);
    cairn_state_free(st);
    t_scratch_free(dir);
}

/* Has process `pid` opened the state's lock file to take the lock? The
 * library opens it read-write on the first cairn__lock(); a collector does so
 * only once it has marked, to take the lock exclusive, and then waits
 * (polling) while we hold it. (The sweep of staging at open reads the file's
 * byte locks through a read-only open of its own.) */
static bool lock_waiter(pid_t pid, const char *lock)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool w = false;
    struct dirent *de;
    while (!w && (de = readdir(d))) {
        char p[PATH_MAX], target[PATH_MAX];
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        ssize_t n = readlink(p, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = 0;
        if (strcmp(target, lock) != 0)
            continue;
        char info[400], buf[512];
        snprintf(info, sizeof(info), "/proc/%d/fdinfo/%s", (int)pid, de->d_name);
        FILE *f = fopen(info, "r");
        unsigned flags = 0;
        while (f && fgets(buf, sizeof(buf), f))
            if (sscanf(buf, "flags: %o", &flags) == 1)
                break;
        if (f)
            fclose(f);
        w = (flags & O_ACCMODE) == O_RDWR;
    }
    closedir(d);
    return w;
}

/* Deterministic interleaving: the collector has marked and waits for the
 * lock (we hold it shared, like a writer); meanwhile a writer re-puts an
 * old unreferenced blob and records it, and takes a lease on another. The
 * delta under the lock must keep both. */
static void test_delta(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("gcdelta");
    cairn_state *st = t_state(dir, "s");
    char path[4096], g[72], h[72], u[72], key[72], k[72];
    snprintf(path, sizeof(path), "%s", cairn_state_path(st));
    fx_blob(st, "old garbage, put again in a batch during the run", NULL, k);
    fx_blob(st, "old garbage, recorded during the run", NULL, g);
    fx_blob(st, "old garbage, leased during the run", NULL, h);
    fx_blob(st, "old garbage, left alone", NULL, u);
    fx_age(st);
    char *lp = NULL;
    assert_true(asprintf(&lp, "%s/lock", path) > 0);
    int lfd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    char lock[PATH_MAX];
    assert_non_null(realpath(lp, lock));
    free(lp);
    assert_true(lfd >= 0);
    assert_int_equal(flock(lfd, LOCK_SH), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        cairn_state *c = NULL;
        cairn_error e = {0};
        cairn_gc_stats s;
        if (cairn_state_open(&c, path, 0, &e) < 0 || cairn_gc(c, NULL, NULL, NULL, &s, &e) < 0) {
            fprintf(stderr, "gc: %s\n", e.message);
            _exit(2);
        }
        _exit(s.blobs == 1 ? 0 : 3);
    }
    /* Wait (bounded) until the collector blocks on the lock. */
    struct timespec ts = {0, 10 * 1000 * 1000};
    int waited = 0;
    while (!lock_waiter(pid, lock) && waited++ < 500)
        nanosleep(&ts, NULL);
    assert_true(lock_waiter(pid, lock));
    cairn_state *w = NULL;
    T_OK(cairn_state_open(&w, path, 0, &t_err));
    char d[72];
    const char *gs = "old garbage, recorded during the run";
    T_OK(cairn_blob_put_buf(w, gs, strlen(gs), NULL, d, &t_err));
    fx_digest("recorded during the run", key);
    T_OK(cairn_record_add_result(w, key, CAIRN_RESULT_BLOB, g, 0, &t_err));
    T_OK(cairn_lease_create(w, "late", 0, NULL, &t_err));
    T_OK(cairn_lease_resource_add(w, "late", "blob", h, &t_err));
    cairn_blob_batch *b = NULL;
    const char *ks = "old garbage, put again in a batch during the run";
    T_OK(cairn_blob_batch_new(&b, w, &t_err));
    T_OK(cairn_blob_batch_put_buf(b, ks, strlen(ks), NULL, d, &t_err));
    T_OK(cairn_blob_batch_commit(b, &t_err));
    cairn_blob_batch_free(b);
    cairn_state_free(w);
    assert_int_equal(flock(lfd, LOCK_UN), 0);
    close(lfd);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0); /* it removed u, and only u */
    cairn_record_result res;
    T_OK(cairn_record_load(st, key, NULL, &res, &t_err));
    assert_true(fx_exists(path, "blobs/sha256", g));
    assert_true(fx_exists(path, "blobs/sha256", h));
    assert_true(fx_exists(path, "blobs/sha256", k));
    assert_int_equal(cairn_blob_exists(st, k, &t_err), 1);
    assert_false(fx_exists(path, "blobs/sha256", u));
    cairn_state_free(st);
    t_scratch_free(dir);
}

/* Options with only `version` set are the defaults: a grace period, and
 * records kept (no policy); versions 1 up to the library's are accepted. */
static void test_options_defaults(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("gcopts");
    cairn_state *st = t_state(dir, "s");
    char old[72], young[72], key[72];
    fx_blob(st, "an old recorded blob", NULL, old);
    fx_digest("k", key);
    T_OK(cairn_record_add_result(st, key, CAIRN_RESULT_BLOB, old, 0, &t_err));
    fx_age_by(st, 30 * 86400); /* a month old, never used */
    fx_blob(st, "a young unreferenced blob", NULL, young);

    cairn_gc_options o;
    memset(&o, 0, sizeof(o));
    o.version = CAIRN_GC_OPTIONS_VERSION;
    cairn_gc_stats s;
    T_OK(cairn_gc(st, &o, NULL, NULL, &s, &t_err));
    assert_int_equal(s.records + s.blobs, 0);
    assert_int_equal(cairn_blob_exists(st, young, &t_err), 1);
    cairn_record_result res;
    T_OK(cairn_record_load(st, key, NULL, &res, &t_err));

    o.version = 0;
    assert_int_equal(cairn_gc(st, &o, NULL, NULL, &s, &t_err), -EINVAL);
    o.version = CAIRN_GC_OPTIONS_VERSION + 1;
    assert_int_equal(cairn_gc(st, &o, NULL, NULL, &s, &t_err), -EINVAL);
    cairn_fsck_options fo = {.version = CAIRN_FSCK_OPTIONS_VERSION + 1};
    assert_int_equal(cairn_fsck(st, &fo, NULL, NULL, &t_err), -EINVAL);
    cairn_state_free(st);
    t_scratch_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roots),   cmocka_unit_test(test_snapshots_and_orphans),
        cmocka_unit_test(test_policy),  cmocka_unit_test(test_lower),
        cmocka_unit_test(test_du),      cmocka_unit_test(test_delta),
        cmocka_unit_test(test_race),    cmocka_unit_test(test_staging),
        cmocka_unit_test(test_fsck_beside_gc), cmocka_unit_test(test_options_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
