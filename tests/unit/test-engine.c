/* test-engine.c: libcairn as an engine embeds it: one handle opened once
 * and held, the whole public API called on it round after round, in one
 * process. Then the same on a stack (a state over frozen lowers) with a
 * flatten between rounds. Only the public API is used, as an engine would. */
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"

#define ROUNDS 12

static int count_cb(void *ud)
{
    (*(int *)ud)++;
    return 0;
}
static int blob_cb(void *ud, const cairn_blob_info *in)
{
    (void)in;
    return count_cb(ud);
}
static int label_cb(void *ud, const char *k, const char *v)
{
    (void)k, (void)v;
    return count_cb(ud);
}
static int snap_cb(void *ud, const cairn_snapshot_info *in)
{
    (void)in;
    return count_cb(ud);
}
static int active_cb(void *ud, const cairn_active_info *in)
{
    (void)in;
    return count_cb(ud);
}
static int result_cb(void *ud, const cairn_record_result *in)
{
    (void)in;
    return count_cb(ud);
}
static int rlist_cb(void *ud, const cairn_record_result *in, int present)
{
    (void)in, (void)present;
    return count_cb(ud);
}
static int link_cb(void *ud, const char *key, const cairn_record_link *l)
{
    (void)key, (void)l;
    return count_cb(ud);
}
static int key_cb(void *ud, const char *key)
{
    (void)key;
    return count_cb(ud);
}
static int lease_cb(void *ud, const cairn_lease_info *in)
{
    (void)in;
    return count_cb(ud);
}
static int res_cb(void *ud, const char *kind, const char *name)
{
    (void)kind, (void)name;
    return count_cb(ud);
}
static int vol_cb(void *ud, const cairn_volume_info *in)
{
    (void)in;
    return count_cb(ud);
}
static int ver_cb(void *ud, const cairn_volume_version *v)
{
    (void)v;
    return count_cb(ud);
}
static int image_cb(void *ud, const cairn_image_info *in)
{
    (void)in;
    return count_cb(ud);
}
static int du_cb(void *ud, const cairn_du_entry *e)
{
    (void)e;
    return count_cb(ud);
}
static void fsck_cb(void *ud, const cairn_fsck_problem *p)
{
    fprintf(stderr, "fsck: %s %s: %s %s\n", p->kind, p->name, p->problem, p->detail);
    (*(int *)ud)++;
}

static void sha256_str(cairn_state *st, const char *s, char out[CAIRN_DIGEST_LEN + 1])
{
    /* A digest of a string, through the store itself (the blob stays). */
    cairn_error t_err = {0};
    cairn_blob_put_options o = CAIRN_BLOB_PUT_OPTIONS_INIT;
    T_OK(cairn_blob_put_buf(st, s, strlen(s), &o, out, &t_err));
}

/* A committed snapshot holding one file `name` with `content`, over parent. */
static void snapshot(cairn_state *st, const char *parent, const char *name, const char *content,
                     char chain[CAIRN_DIGEST_LEN + 1], char diff[CAIRN_DIGEST_LEN + 1])
{
    cairn_error t_err = {0};
    char id[CAIRN_STATE_ID_LEN + 1];
    T_OK(cairn_snapshot_prepare(st, parent, "engine", id, &t_err));
    char *p = NULL;
    assert_true(asprintf(&p, "%s/active/%s/fs/%s", cairn_state_path(st), id, name) > 0);
    t_write_file(p, content, strlen(content));
    free(p);
    T_OK(cairn_snapshot_commit(st, id, chain, diff, &t_err));
}

static void put_file(const char *dir, const char *name, const char *data)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    t_write_file(p, data, strlen(data));
    free(p);
}

/* An OCI layout of one image of one layer (exported from a snapshot of st). */
static void make_layout(cairn_state *st, const char *layout)
{
    cairn_error t_err = {0};
    char chain[CAIRN_DIGEST_LEN + 1], diff[CAIRN_DIGEST_LEN + 1];
    snapshot(st, NULL, "hello", "hello from the image layer\n", chain, diff);
    char *tmp = NULL;
    assert_true(asprintf(&tmp, "%s.layer", layout) > 0);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    char ld[CAIRN_DIGEST_LEN + 1];
    uint64_t lsize;
    T_OK(cairn_layer_export(st, chain, fd, CAIRN_COMPRESSION_GZIP, ld, &lsize, &t_err));
    close(fd);
    char *blob = NULL;
    assert_true(asprintf(&blob, "%s/blobs/sha256/%s", layout, ld + 7) > 0);
    t_write_file(blob, "", 0); /* makes the directories */
    assert_int_equal(rename(tmp, blob), 0);
    free(blob);
    free(tmp);

    char cfg[1024], man[2048], cd[CAIRN_DIGEST_LEN + 1], md[CAIRN_DIGEST_LEN + 1], idx[1024];
    snprintf(cfg, sizeof(cfg),
             "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\","
             "\"diff_ids\":[\"%s\"]},\"config\":{}}",
             diff);
    sha256_str(st, cfg, cd);
    char name[128];
    snprintf(name, sizeof(name), "blobs/sha256/%s", cd + 7);
    put_file(layout, name, cfg);
    snprintf(man, sizeof(man),
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
             "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
             "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":"
             "\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"%s\",\"size\":%llu}]}",
             cd, strlen(cfg), ld, (unsigned long long)lsize);
    sha256_str(st, man, md);
    snprintf(name, sizeof(name), "blobs/sha256/%s", md + 7);
    put_file(layout, name, man);
    snprintf(idx, sizeof(idx),
             "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":"
             "\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"%s\",\"size\":%zu,"
             "\"annotations\":{\"org.opencontainers.image.ref.name\":\"engine:base\"}}]}",
             md, strlen(man));
    put_file(layout, "index.json", idx);
    put_file(layout, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
}

/* One round of an engine's work: every call of the public API on `st`. */
static void one_round(cairn_state *st, const char *scratch, const char *layout, int k)
{
    cairn_error t_err = {0};
    char buf[128], d[CAIRN_DIGEST_LEN + 1], d2[CAIRN_DIGEST_LEN + 1], d3[CAIRN_DIGEST_LEN + 1];
    int n;

    /* ---- the content store */
    snprintf(buf, sizeof(buf), "round %d: a blob", k);
    cairn_blob_put_options po = CAIRN_BLOB_PUT_OPTIONS_INIT;
    po.media_type = "application/octet-stream";
    T_OK(cairn_blob_put_buf(st, buf, strlen(buf), &po, d, &t_err));
    assert_int_equal(cairn_blob_exists(st, d, &t_err), 1);
    T_OK(cairn_digest_check(d, &t_err));
    cairn_blob_info bi;
    T_OK(cairn_blob_stat(st, d, &bi, &t_err));
    assert_int_equal(bi.size, strlen(buf));
    void *data = NULL;
    size_t len = 0;
    T_OK(cairn_blob_read(st, d, &data, &len, &t_err));
    assert_memory_equal(data, buf, len);
    free(data);
    int fd = -1;
    T_OK(cairn_blob_open(st, d, 1, &fd, &t_err));
    close(fd);
    T_OK(cairn_blob_label_set(st, d, "engine.round", "yes", &t_err));
    n = 0;
    T_OK(cairn_blob_label_list(st, d, label_cb, &n, &t_err));
    assert_int_equal(n, 1);
    n = 0;
    T_OK(cairn_blob_list(st, NULL, blob_cb, &n, &t_err));
    assert_true(n >= 1);
    n = 0;
    T_OK(cairn_blob_list(st, "application/octet-stream", blob_cb, &n, &t_err));
    assert_true(n >= 1);

    cairn_blob_writer *w = NULL;
    T_OK(cairn_blob_writer_new(&w, st, NULL, &t_err));
    snprintf(buf, sizeof(buf), "round %d: streamed", k);
    T_OK(cairn_blob_writer_write(w, buf, strlen(buf), &t_err));
    T_OK(cairn_blob_writer_commit(w, d2, &t_err));
    cairn_blob_writer_free(w);

    cairn_blob_batch *b = NULL;
    T_OK(cairn_blob_batch_new(&b, st, &t_err));
    snprintf(buf, sizeof(buf), "round %d: batched", k);
    T_OK(cairn_blob_batch_put_buf(b, buf, strlen(buf), NULL, d3, &t_err));
    snprintf(buf, sizeof(buf), "round %d: batched too", k);
    T_OK(cairn_blob_batch_put_buf(b, buf, strlen(buf), NULL, NULL, &t_err));
    T_OK(cairn_blob_batch_commit(b, &t_err));
    cairn_blob_batch_free(b);
    T_OK(cairn_blob_label_set(st, d3, "engine.round", NULL, &t_err));
    T_OK(cairn_blob_remove(st, d3, &t_err));
    assert_int_equal(cairn_blob_exists(st, d3, &t_err), 0);

    /* ---- snapshots, layers, mounts */
    char chain[CAIRN_DIGEST_LEN + 1], diff[CAIRN_DIGEST_LEN + 1], top[CAIRN_DIGEST_LEN + 1];
    snprintf(buf, sizeof(buf), "round %d\n", k);
    snapshot(st, NULL, "base", buf, chain, diff);
    snapshot(st, chain, "top", buf, top, diff);
    cairn_snapshot_info si;
    T_OK(cairn_snapshot_stat(st, top, &si, &t_err));
    assert_string_equal(si.parent, chain);
    n = 0;
    T_OK(cairn_snapshot_walk(st, top, snap_cb, &n, &t_err));
    assert_int_equal(n, 2);
    n = 0;
    T_OK(cairn_snapshot_list(st, snap_cb, &n, &t_err));
    assert_true(n >= 2);
    char view[CAIRN_STATE_ID_LEN + 1];
    T_OK(cairn_snapshot_view(st, top, "look", view, &t_err));
    cairn_active_info ai;
    T_OK(cairn_snapshot_active_stat(st, view, &ai, &t_err));
    assert_int_equal(ai.view, 1);
    n = 0;
    T_OK(cairn_snapshot_active_list(st, active_cb, &n, &t_err));
    assert_true(n >= 1);
    cairn_mount *m = NULL;
    T_OK(cairn_snapshot_mounts(st, view, &m, &t_err));
    char *js = cairn_mount_json(m);
    assert_non_null(js);
    free(js);
    cairn_mount_free(m);
    T_OK(cairn_snapshot_remove(st, view, &t_err));
    char *co = NULL;
    assert_true(asprintf(&co, "%s/checkout-%d", scratch, k) > 0);
    T_OK(cairn_snapshot_checkout(st, top, co, 0, &t_err));
    free(co);

    char *lp = NULL;
    assert_true(asprintf(&lp, "%s/layer-%d.tar", scratch, k) > 0);
    fd = open(lp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    T_OK(cairn_layer_export(st, top, fd, CAIRN_COMPRESSION_ZSTD, NULL, NULL, &t_err));
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    char ichain[CAIRN_DIGEST_LEN + 1];
    cairn_layer_import_options lo = CAIRN_LAYER_IMPORT_OPTIONS_INIT;
    T_OK(cairn_layer_import(st, NULL, fd, &lo, ichain, NULL, &t_err));
    close(fd);
    unlink(lp);
    free(lp);
    T_OK(cairn_snapshot_remove(st, ichain, &t_err));

    /* ---- the build cache */
    char key[CAIRN_DIGEST_LEN + 1], child[CAIRN_DIGEST_LEN + 1];
    snprintf(buf, sizeof(buf), "key %d", k);
    sha256_str(st, buf, key);
    snprintf(buf, sizeof(buf), "child %d", k);
    sha256_str(st, buf, child);
    T_OK(cairn_record_add_result(st, key, CAIRN_RESULT_SNAPSHOT, top, 0, &t_err));
    T_OK(cairn_record_add_result(st, key, CAIRN_RESULT_BLOB, d, 0, &t_err));
    T_OK(cairn_record_add_result(st, child, CAIRN_RESULT_BLOB, d2, 0, &t_err));
    cairn_record_link link = {.input = 0, .output = 0};
    memcpy(link.op, key, sizeof(link.op));
    T_OK(cairn_record_add_link(st, key, &link, child, &t_err));
    assert_int_equal(cairn_record_has_link(st, key, &link, child, &t_err), 1);
    n = 0;
    T_OK(cairn_record_links(st, key, NULL, link_cb, &n, &t_err));
    assert_int_equal(n, 1);
    n = 0;
    T_OK(cairn_record_backlinks(st, child, link_cb, &n, &t_err));
    assert_int_equal(n, 1);
    n = 0;
    T_OK(cairn_record_results(st, key, result_cb, &n, &t_err));
    assert_int_equal(n, 2);
    cairn_record_result rr;
    T_OK(cairn_record_load(st, key, NULL, &rr, &t_err));
    T_OK(cairn_record_load(st, key, d, &rr, &t_err));
    n = 0;
    T_OK(cairn_record_keys_by_result(st, d, key_cb, &n, &t_err));
    assert_true(n >= 1);
    n = 0;
    T_OK(cairn_record_walk_keys(st, key_cb, &n, &t_err));
    assert_true(n >= 2);
    assert_int_equal(cairn_record_exists(st, key, &t_err), 1);
    n = 0;
    T_OK(cairn_record_list(st, rlist_cb, &n, &t_err));
    assert_true(n >= 3);
    assert_string_equal(cairn_result_kind_name(CAIRN_RESULT_BLOB), "blob");
    cairn_result_kind rk;
    T_OK(cairn_result_kind_parse("snapshot", &rk));
    T_OK(cairn_record_release(st, d2, &t_err));
    if (k % 3 == 2)
        T_OK(cairn_record_remove(st, key, &t_err));

    /* ---- leases */
    char lid[CAIRN_LEASE_ID_MAX + 1];
    T_OK(cairn_lease_create(st, NULL, 3600, lid, &t_err));
    T_OK(cairn_lease_resource_add(st, lid, "blob", d, &t_err));
    T_OK(cairn_lease_resource_add(st, lid, "snapshot", top, &t_err));
    n = 0;
    T_OK(cairn_lease_resource_list(st, lid, res_cb, &n, &t_err));
    assert_int_equal(n, 2);
    cairn_lease_info li;
    T_OK(cairn_lease_get(st, lid, &li, &t_err));
    assert_int_equal(li.resources, 2);
    T_OK(cairn_lease_renew(st, lid, 7200, &t_err));
    n = 0;
    T_OK(cairn_lease_list(st, lease_cb, &n, &t_err));
    assert_true(n >= 1);
    T_OK(cairn_lease_resource_remove(st, lid, "snapshot", top, &t_err));
    if (k % 2)
        T_OK(cairn_lease_remove(st, lid, &t_err));

    /* ---- volumes */
    char vid[CAIRN_STATE_ID_LEN + 1], ver[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_volume_open(st, "engine-vol", vid, NULL, &t_err));
    char *vp = NULL;
    assert_true(asprintf(&vp, "%s/active/%s/fs/round-%d", cairn_state_path(st), vid, k) > 0);
    t_write_file(vp, buf, strlen(buf));
    free(vp);
    T_OK(cairn_volume_save(st, "engine-vol", vid, ver, &t_err));
    cairn_volume_info vi;
    T_OK(cairn_volume_current(st, "engine-vol", &vi, &t_err));
    n = 0;
    T_OK(cairn_volume_list(st, vol_cb, &n, &t_err));
    assert_true(n >= 1);
    n = 0;
    T_OK(cairn_volume_versions(st, "engine-vol", ver_cb, &n, &t_err));
    assert_true(n >= 1);
    T_OK(cairn_volume_open(st, "engine-scratch", vid, NULL, &t_err));
    T_OK(cairn_volume_save(st, "engine-scratch", NULL, NULL, &t_err));
    T_OK(cairn_volume_remove(st, "engine-scratch", &t_err));

    /* ---- images: import, export, import the export, remove */
    cairn_image_import_options io = CAIRN_IMAGE_IMPORT_OPTIONS_INIT;
    char name[64], exp[64];
    snprintf(name, sizeof(name), "engine:r%d", k);
    io.name = name;
    io.platform = "linux/amd64";
    io.jobs = 1 + (unsigned)(k % 2);
    cairn_image_info ii;
    T_OK(cairn_image_import(st, layout, &io, &ii, &t_err));
    T_OK(cairn_image_get(st, name, &ii, &t_err));
    T_OK(cairn_image_name_check(name, &t_err));
    char *ep = NULL;
    assert_true(asprintf(&ep, "%s/export-%d", scratch, k) > 0);
    cairn_image_export_options eo = CAIRN_IMAGE_EXPORT_OPTIONS_INIT;
    T_OK(cairn_image_export(st, name, ep, &eo, &t_err));
    snprintf(exp, sizeof(exp), "engine:x%d", k);
    io.name = exp;
    T_OK(cairn_image_import(st, ep, &io, NULL, &t_err));
    free(ep);
    n = 0;
    T_OK(cairn_image_list(st, image_cb, &n, &t_err));
    assert_true(n >= 2);
    T_OK(cairn_image_remove(st, exp, &t_err));

    /* ---- the whole state: info, du, fsck, gc */
    cairn_state_info info;
    T_OK(cairn_state_info_get(st, &info, &t_err));
    assert_true(info.blobs.count > 0);
    cairn_du_totals tot;
    n = 0;
    T_OK(cairn_du(st, 0, &tot, du_cb, &n, &t_err));
    int problems = 0;
    cairn_fsck_options fo = CAIRN_FSCK_OPTIONS_INIT;
    assert_int_equal(cairn_fsck(st, &fo, fsck_cb, &problems, &t_err), 0);
    cairn_gc_options go = CAIRN_GC_OPTIONS_INIT;
    cairn_gc_stats gs;
    go.dry_run = k % 2;
    T_OK(cairn_gc(st, &go, NULL, NULL, &gs, &t_err));
    char pol[64];
    T_OK(cairn_flatten_policy_get(st, pol, sizeof(pol), &t_err));
    T_OK(cairn_flatten_due(st, &t_err));
    assert_string_equal(cairn_state_id(st), info.id);
}

static void test_one_handle(void **unused)
{
    char *dir = t_scratch("engine");
    cairn_state *st = t_state(dir, "s");
    char *layout = NULL;
    assert_true(asprintf(&layout, "%s/layout", dir) > 0);
    make_layout(st, layout);
    for (int k = 0; k < ROUNDS; k++)
        one_round(st, dir, layout, k);
    cairn_state_free(st);
    free(layout);
    t_scratch_free(dir);
}

/* The same over frozen lowers, and a flatten of the stack between rounds
 * while the engine's handle stays open. */
static void test_stack(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("engine-stack");
    char *layout = NULL, *lower = NULL, *frozen = NULL, *top = NULL;
    assert_true(asprintf(&layout, "%s/layout", dir) > 0);
    assert_true(asprintf(&lower, "%s/lower", dir) > 0);
    assert_true(asprintf(&frozen, "%s/frozen", dir) > 0);
    assert_true(asprintf(&top, "%s/top", dir) > 0);
    cairn_state *lo = t_state(dir, "lower");
    make_layout(lo, layout);
    one_round(lo, dir, layout, 100);
    cairn_state_free(lo);
    T_OK(cairn_freeze(lower, frozen, NULL, NULL, &t_err));
    T_OK(cairn_state_init(top, NULL, &t_err));
    T_OK(cairn_stack_add(top, (const char *const[]){frozen}, 1, &t_err));

    cairn_state *st = NULL;
    T_OK(cairn_state_open(&st, top, 0, &t_err));
    for (int k = 0; k < ROUNDS; k++) {
        one_round(st, dir, layout, k);
        if (k == ROUNDS / 2)
            T_OK(cairn_flatten(top, NULL, NULL, &t_err));
    }
    cairn_state_free(st);
    /* Reopened after the flatten: a plain state that checks out. */
    T_OK(cairn_state_open(&st, top, 0, &t_err));
    one_round(st, dir, layout, ROUNDS);
    cairn_state_free(st);
    free(layout);
    free(lower);
    free(frozen);
    free(top);
    t_scratch_free(dir);
}

/* ---- threads (cairn/state.h): a handle per thread, or one handed over -- */

#define THREADS 4
#define THREAD_ROUNDS 25

typedef struct worker {
    const char *path;
    int no;
    cairn_state *shared; /* used under shared_lock by every worker */
    pthread_mutex_t *shared_lock;
    char failure[1400];
} worker;

#define WK_OK(call)                                                                                 \
    do {                                                                                           \
        int w_r_ = (call);                                                                         \
        if (w_r_ < 0) {                                                                            \
            snprintf(w->failure, sizeof(w->failure), "%.200s -> %d: %.1024s", #call, w_r_, e.message); \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

static void *work(void *ud)
{
    worker *w = ud;
    cairn_error e = {0};
    cairn_state *st = NULL;
    WK_OK(cairn_state_open(&st, w->path, 0, &e));
    for (int k = 0; k < THREAD_ROUNDS; k++) {
        char buf[96], d[CAIRN_DIGEST_LEN + 1], key[CAIRN_DIGEST_LEN + 1];
        char lid[CAIRN_LEASE_ID_MAX + 1], id[CAIRN_STATE_ID_LEN + 1], chain[CAIRN_DIGEST_LEN + 1];
        snprintf(buf, sizeof(buf), "thread %d round %d", w->no, k);
        WK_OK(cairn_blob_put_buf(st, buf, strlen(buf), NULL, d, &e));
        snprintf(buf, sizeof(buf), "key of thread %d round %d", w->no, k);
        WK_OK(cairn_blob_put_buf(st, buf, strlen(buf), NULL, key, &e));
        WK_OK(cairn_record_add_result(st, key, CAIRN_RESULT_BLOB, d, 0, &e));
        cairn_record_result rr;
        WK_OK(cairn_record_load(st, key, NULL, &rr, &e));
        WK_OK(cairn_lease_create(st, NULL, 60, lid, &e));
        WK_OK(cairn_lease_resource_add(st, lid, "blob", d, &e));
        WK_OK(cairn_lease_remove(st, lid, &e));
        WK_OK(cairn_snapshot_prepare(st, NULL, "thread", id, &e));
        WK_OK(cairn_snapshot_commit(st, id, chain, NULL, &e));
        int n = 0;
        WK_OK(cairn_blob_list(st, NULL, blob_cb, &n, &e));
        cairn_state_info info;
        WK_OK(cairn_state_info_get(st, &info, &e));
        if (k % 10 == 9) {
            cairn_gc_options go = CAIRN_GC_OPTIONS_INIT;
            WK_OK(cairn_gc(st, &go, NULL, NULL, NULL, &e));
        }
        /* The shared handle: one thread at a time, whichever it is. */
        pthread_mutex_lock(w->shared_lock);
        snprintf(buf, sizeof(buf), "shared handle, thread %d round %d", w->no, k);
        int r = cairn_blob_put_buf(w->shared, buf, strlen(buf), NULL, d, &e);
        if (r >= 0)
            r = cairn_blob_stat(w->shared, d, &(cairn_blob_info){0}, &e);
        pthread_mutex_unlock(w->shared_lock);
        WK_OK(r);
    }
out:
    cairn_state_free(st);
    return NULL;
}

static void test_threads(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("engine-threads");
    cairn_state *shared = t_state(dir, "s");
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    worker w[THREADS];
    pthread_t tid[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.path = cairn_state_path(shared), .no = i, .shared = shared,
                        .shared_lock = &lock};
        assert_int_equal(pthread_create(&tid[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(tid[i], NULL), 0);
        if (w[i].failure[0])
            fail_msg("thread %d: %s", i, w[i].failure);
    }
    cairn_state_info info;
    T_OK(cairn_state_info_get(shared, &info, &t_err));
    assert_int_equal(info.blobs.count, 3 * THREADS * THREAD_ROUNDS);
    assert_int_equal(info.records.count, THREADS * THREAD_ROUNDS);
    assert_int_equal(info.leases.count, 0);
    cairn_fsck_options fo = CAIRN_FSCK_OPTIONS_INIT;
    int problems = 0;
    assert_int_equal(cairn_fsck(shared, &fo, fsck_cb, &problems, &t_err), 0);
    cairn_state_free(shared);
    t_scratch_free(dir);
}

/* ---- the invariants the library asserts (builds without NDEBUG) ------- */

/* Run fn(st) in a child; it must die of SIGABRT (a failed assert). */
static void aborts(cairn_state *st, void (*fn)(cairn_state *st))
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fclose(stderr); /* the assert's message is expected */
        fn(st);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void stmt_not_literal(cairn_state *st)
{
    char *sql = strdup("SELECT 1");
    sqlite3_stmt *s;
    cairn__stmt(st, 0, sql, &s, NULL);
}

static void stmt_text_changed(cairn_state *st)
{
    static char sql[] = "SELECT 1";
    sqlite3_stmt *s;
    cairn__stmt(st, 0, sql, &s, NULL);
    sql[7] = '2';
    cairn__stmt(st, 0, sql, &s, NULL);
}

static void write_to_lower(cairn_state *st)
{
    static const char sql[] = "DELETE FROM blobs";
    sqlite3_stmt *s;
    cairn__stmt(st, 1, sql, &s, NULL);
}

static void commit_without_begin(cairn_state *st)
{
    cairn__tx_commit(st, NULL);
}

/* ---- stopping a long call ---------------------------------------------- */

struct stopper {
    uint64_t calls, last, total;
    uint64_t stop_at; /* the call that says stop (1: the first); 0: never */
    bool backwards;
};

static int stopper_cb(void *ud, uint64_t done, uint64_t total)
{
    struct stopper *s = ud;
    s->backwards |= done < s->last;
    s->last = done;
    s->total = total;
    return ++s->calls == s->stop_at;
}

static int dir_entries(const char *path)
{
    int n = 0;
    DIR *d = opendir(path);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void assert_fsck_clean(const char *path)
{
    cairn_error t_err = {0};
    cairn_state *st = NULL;
    T_OK(cairn_state_open(&st, path, CAIRN_OPEN_READONLY, &t_err));
    cairn_fsck_options fo = CAIRN_FSCK_OPTIONS_INIT;
    int problems = 0;
    assert_int_equal(cairn_fsck(st, &fo, fsck_cb, &problems, &t_err), 0);
    assert_int_equal(problems, 0);
    cairn_state_free(st);
}

/* Every long call an engine makes stops when its progress callback says so:
 * CAIRN_E_USER, and the state stays valid. 600 blobs: more than one report
 * (every 256 objects and at the end). */
static void test_stop(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("engine-stop");
    char *src = NULL, *fz = NULL, *merged = NULL, *ep = NULL, *layout = NULL;
    assert_true(asprintf(&src, "%s/s", dir) > 0);
    assert_true(asprintf(&fz, "%s/frozen", dir) > 0);
    assert_true(asprintf(&merged, "%s/merged", dir) > 0);
    assert_true(asprintf(&ep, "%s/export", dir) > 0);
    assert_true(asprintf(&layout, "%s/layout", dir) > 0);
    cairn_state *st = t_state(dir, "s");
    make_layout(st, layout);
    cairn_blob_batch *b = NULL;
    T_OK(cairn_blob_batch_new(&b, st, &t_err));
    for (int i = 0; i < 600; i++) {
        char buf[64];
        snprintf(buf, sizeof(buf), "blob %d of the engine", i);
        T_OK(cairn_blob_batch_put_buf(b, buf, strlen(buf), NULL, NULL, &t_err));
    }
    T_OK(cairn_blob_batch_commit(b, &t_err));
    cairn_blob_batch_free(b);
    int entries = dir_entries(dir);

    /* freeze: stopped, nothing at DEST and nothing beside it */
    struct stopper sp = {.stop_at = 1};
    cairn_freeze_options fo = CAIRN_FREEZE_OPTIONS_INIT;
    fo.progress = stopper_cb;
    fo.progress_userdata = &sp;
    assert_int_equal(cairn_freeze_with(src, fz, &fo, NULL, NULL, &t_err), CAIRN_E_USER);
    assert_int_equal(t_err.code, CAIRN_E_USER);
    assert_int_equal(access(fz, F_OK), -1);
    assert_int_equal(dir_entries(dir), entries);
    /* not stopped: every object counted, up to the total */
    sp = (struct stopper){0};
    cairn_merge_stats ms;
    T_OK(cairn_freeze_with(src, fz, &fo, &ms, NULL, &t_err));
    assert_true(sp.calls >= 3);
    assert_false(sp.backwards);
    assert_int_equal(sp.last, sp.total);
    assert_int_equal(sp.total, ms.objects);
    assert_fsck_clean(fz);
    /* a version the library does not know is refused */
    fo.version = CAIRN_FREEZE_OPTIONS_VERSION + 1;
    assert_int_equal(cairn_freeze_with(src, merged, &fo, NULL, NULL, &t_err), -EINVAL);
    fo.version = CAIRN_FREEZE_OPTIONS_VERSION;

    /* merge: stopped before any row; a rerun completes */
    cairn_merge_options mo = CAIRN_MERGE_OPTIONS_INIT;
    mo.progress = stopper_cb;
    mo.progress_userdata = &sp;
    sp = (struct stopper){.stop_at = 1};
    assert_int_equal(cairn_merge(merged, (const char *const[]){fz}, 1, &mo, NULL, &t_err),
                     CAIRN_E_USER);
    mo.progress = NULL;
    T_OK(cairn_merge(merged, (const char *const[]){fz}, 1, &mo, NULL, &t_err));
    assert_fsck_clean(merged);

    /* fsck */
    cairn_fsck_options ko = CAIRN_FSCK_OPTIONS_INIT;
    ko.progress = stopper_cb;
    ko.progress_userdata = &sp;
    sp = (struct stopper){.stop_at = 1};
    assert_int_equal(cairn_fsck(st, &ko, NULL, NULL, &t_err), CAIRN_E_USER);

    /* image export: stopped, no DEST */
    cairn_image_export_options eo = CAIRN_IMAGE_EXPORT_OPTIONS_INIT;
    cairn_image_import_options io = CAIRN_IMAGE_IMPORT_OPTIONS_INIT;
    T_OK(cairn_image_import(st, layout, &io, NULL, &t_err));
    eo.progress = stopper_cb;
    eo.progress_userdata = &sp;
    sp = (struct stopper){.stop_at = 1};
    assert_int_equal(cairn_image_export(st, "engine:base", ep, &eo, &t_err), CAIRN_E_USER);
    assert_int_equal(access(ep, F_OK), -1);

    /* image import (and its layer import): stopped, no image recorded */
    cairn_state *st2 = t_state(dir, "s2");
    io.progress = stopper_cb;
    io.progress_userdata = &sp;
    sp = (struct stopper){.stop_at = 1};
    assert_int_equal(cairn_image_import(st2, layout, &io, NULL, &t_err), CAIRN_E_USER);
    int n = 0;
    T_OK(cairn_image_list(st2, image_cb, &n, &t_err));
    assert_int_equal(n, 0);
    n = 0;
    T_OK(cairn_snapshot_active_list(st2, active_cb, &n, &t_err));
    assert_int_equal(n, 0);
    cairn_state_free(st2);
    char *s2 = NULL;
    assert_true(asprintf(&s2, "%s/s2", dir) > 0);
    assert_fsck_clean(s2);
    free(s2);

    /* gc: 600 unnamed blobs to remove; stopped, then a second run ends it.
     * Made a day old: gc keeps what was used in the seconds before it. */
    T_OK(cairn_image_remove(st, "engine:base", &t_err));
    assert_int_equal(sqlite3_exec(st->layers[0].db,
                                  "UPDATE blobs SET created = created - 86400;"
                                  "UPDATE usage SET last_used = last_used - 86400",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    cairn_gc_options go = CAIRN_GC_OPTIONS_INIT;
    go.grace = -1;
    go.progress = stopper_cb;
    go.progress_userdata = &sp;
    sp = (struct stopper){.stop_at = 1};
    assert_int_equal(cairn_gc(st, &go, NULL, NULL, NULL, &t_err), CAIRN_E_USER);
    go.progress = NULL;
    cairn_gc_stats gs;
    T_OK(cairn_gc(st, &go, NULL, NULL, &gs, &t_err));
    assert_true(gs.blobs + gs.files > 0);
    cairn_state_free(st);
    assert_fsck_clean(src);

    free(src);
    free(fz);
    free(merged);
    free(ep);
    free(layout);
    t_scratch_free(dir);
}

static void test_asserts(void **unused)
{
#ifdef NDEBUG
    skip();
#else
    cairn_error t_err = {0};
    char *dir = t_scratch("engine-asserts");
    char *lower = NULL, *frozen = NULL, *top = NULL;
    assert_true(asprintf(&lower, "%s/lower", dir) > 0);
    assert_true(asprintf(&frozen, "%s/frozen", dir) > 0);
    assert_true(asprintf(&top, "%s/top", dir) > 0);
    cairn_state_free(t_state(dir, "lower"));
    T_OK(cairn_freeze(lower, frozen, NULL, NULL, &t_err));
    T_OK(cairn_state_init(top, NULL, &t_err));
    T_OK(cairn_stack_add(top, (const char *const[]){frozen}, 1, &t_err));
    cairn_state *st = NULL;
    T_OK(cairn_state_open(&st, top, 0, &t_err));
    aborts(st, stmt_not_literal);
    aborts(st, stmt_text_changed);
    aborts(st, write_to_lower);
    aborts(st, commit_without_begin);
    /* The same calls done right pass. */
    static const char ok[] = "SELECT count(*) FROM blobs";
    sqlite3_stmt *s;
    T_OK(cairn__stmt(st, 1, ok, &s, &t_err));
    T_OK(cairn__tx_begin(st, &t_err));
    T_OK(cairn__tx_commit(st, &t_err));
    cairn_state_free(st);
    free(lower);
    free(frozen);
    free(top);
    t_scratch_free(dir);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_handle),
        cmocka_unit_test(test_stack),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_asserts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
