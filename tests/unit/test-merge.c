/* test-merge.c: combining states, as properties over random states.
 *
 * Random states are drawn from a seeded PRNG (CAIRN_TEST_SEED overrides the
 * built-in seeds) over small domains, so that the same names, the same times
 * and the same values meet across states and every merge rule has ties to
 * break. Then:
 *   - merge is commutative, associative and idempotent (the merged tables of
 *     the results are equal, row for row);
 *   - a stack of the states answers every query of the public API exactly
 *     as their eager merge does;
 *   - every table of the schema is either merged or declared local;
 * and the error cases: a corrupt copy is refused (both orders), a newer
 * schema is refused before anything is written, opening a stack opens no
 * lower.
 */
#include "helpers.h"

#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

size_t cairn__merge_tables(const char ***merged, const char *const **local, size_t *n_local);

/* ---- a seeded PRNG ------------------------------------------------------ */

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}
static unsigned pick(unsigned n)
{
    return (unsigned)(rnd() % n);
}

/* ---- random states ------------------------------------------------------ */

static char *path_of(const char *dir, const char *name)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

static void exec_ok(cairn_state *st, const char *sql)
{
    cairn_error t_err = {0};
    T_OK(cairn__exec(st, 0, sql, &t_err));
}

/* A cache key from a small pool: the digest of "key <n>". */
static void key_of(unsigned n, char out[CAIRN_DIGEST_LEN + 1])
{
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "key %u", n);
    cairn__sha256_buf(buf, (size_t)len, out);
}

static const char *const media[] = {"", "application/a", "application/b", "text/plain"};
static const char *const words[] = {"red", "green", "blue", "x", ""};

/* A state at dir/name with random content; frozen into dir/name.f, whose
 * path is returned. */
static char *random_state(const char *dir, const char *name)
{
    cairn_error t_err = {0};
    cairn_state *st = t_state(dir, name);
    unsigned nblobs = 3 + pick(10);
    char digests[16][CAIRN_DIGEST_LEN + 1];
    char chains[8][CAIRN_DIGEST_LEN + 1];
    unsigned nchains = 0;
    /* Snapshots from a small pool of contents, some over a parent: the same
     * chain ids meet across states. */
    for (unsigned i = pick(4); i > 0; i--) {
        char id[CAIRN_STATE_ID_LEN + 1];
        const char *parent = nchains && pick(2) ? chains[pick(nchains)] : NULL;
        T_OK(cairn_snapshot_prepare(st, parent, NULL, id, &t_err));
        char *f = NULL;
        assert_true(asprintf(&f, "%s/active/%s/fs/file%u", cairn_state_path(st), id, pick(3)) > 0);
        char content[32];
        int clen = snprintf(content, sizeof(content), "snap content %u", pick(4));
        t_write_file(f, content, (size_t)clen);
        free(f);
        char chain[CAIRN_DIGEST_LEN + 1];
        T_OK(cairn_snapshot_commit(st, id, chain, NULL, &t_err));
        bool seen = false;
        for (unsigned k = 0; k < nchains; k++)
            seen |= !strcmp(chains[k], chain);
        if (!seen && nchains < 8)
            memcpy(chains[nchains++], chain, sizeof(chain));
        char sql[256];
        snprintf(sql, sizeof(sql), "UPDATE snapshots SET created = %u WHERE chain_id = '%s'",
                 10 + pick(4), chain);
        exec_ok(st, sql);
    }
    for (unsigned i = 0; i < nblobs; i++) {
        char buf[64];
        int len = snprintf(buf, sizeof(buf), "blob-%u", pick(24));
        cairn_blob_put_options po = CAIRN_BLOB_PUT_OPTIONS_INIT;
        po.media_type = media[pick(4)];
        char d[CAIRN_DIGEST_LEN + 1];
        T_OK(cairn_blob_put_buf(st, buf, (size_t)len, &po, d, &t_err));
        memcpy(digests[i], d, sizeof(d));
        char sql[512];
        snprintf(sql, sizeof(sql), "UPDATE blobs SET created = %u WHERE digest = '%s'",
                 100 + pick(5), d);
        exec_ok(st, sql);
        for (unsigned k = pick(3); k > 0; k--) {
            char key[8];
            snprintf(key, sizeof(key), "k%u", pick(3));
            T_OK(cairn_blob_label_set(st, d, key, pick(4) ? words[pick(5)] : NULL, &t_err));
            snprintf(sql, sizeof(sql),
                     "UPDATE blob_labels SET updated = %u WHERE digest = '%s' AND key = '%s'",
                     pick(4), d, key);
            exec_ok(st, sql);
        }
    }
    /* Records: results naming this state's blobs and snapshots, under keys
     * from a small pool, links between keys, loads (usage). */
    for (unsigned i = pick(6); i > 0; i--) {
        char key[CAIRN_DIGEST_LEN + 1], child[CAIRN_DIGEST_LEN + 1];
        key_of(pick(5), key);
        bool snap = nchains && pick(2);
        const char *res = snap ? chains[pick(nchains)] : digests[pick(nblobs)];
        T_OK(cairn_record_add_result(st, key, snap ? CAIRN_RESULT_SNAPSHOT : CAIRN_RESULT_BLOB, res,
                                     1 + pick(4), &t_err));
        if (pick(2)) {
            cairn_record_link l = {pick(2), 0, "", ""};
            key_of(100 + pick(2), l.op);
            key_of(pick(5), child);
            T_OK(cairn_record_add_link(st, key, &l, child, &t_err));
        }
        if (!pick(3))
            T_OK(cairn_record_load(st, key, NULL, NULL, &t_err));
    }
    /* Volumes: versions from a small pool of contents, so the same version
     * meets across states with other times. */
    for (unsigned i = pick(3); i > 0; i--) {
        char vname[16], id[CAIRN_STATE_ID_LEN + 1], version[CAIRN_DIGEST_LEN + 1];
        snprintf(vname, sizeof(vname), "vol%u", pick(2));
        T_OK(cairn_volume_open(st, vname, id, NULL, &t_err));
        char *f = NULL;
        assert_true(asprintf(&f, "%s/active/%s/fs/cache%u", cairn_state_path(st), id, pick(2)) > 0);
        t_write_file(f, "cached", 6);
        free(f);
        T_OK(cairn_volume_save(st, vname, id, version, &t_err));
        char sql[256];
        snprintf(sql, sizeof(sql), "UPDATE volume_versions SET created = %u WHERE version = '%s'",
                 1000 + pick(3), version);
        exec_ok(st, sql);
    }
    for (unsigned i = pick(5); i > 0; i--) {
        char sql[512];
        /* Images name this state's blobs and snapshots (fsck checks them);
         * a tombstone (manifest '') now and then. */
        unsigned tomb = pick(5) == 0;
        snprintf(sql, sizeof(sql),
                 "INSERT INTO images(name, manifest, config, top, updated) VALUES "
                 "('img%u', '%s', '%s', '%s', %u) ON CONFLICT DO NOTHING",
                 pick(4), tomb ? "" : digests[pick(nblobs)], tomb ? "" : digests[pick(nblobs)],
                 tomb || !nchains || pick(2) ? "" : chains[pick(nchains)], pick(3));
        exec_ok(st, sql);
        snprintf(sql, sizeof(sql),
                 "INSERT INTO usage VALUES ('obj%u', 'st%u', %u, %u) ON CONFLICT DO NOTHING",
                 pick(4), pick(3), pick(9), pick(9));
        exec_ok(st, sql);
    }
    /* Local rows: never merged. */
    exec_ok(st, "INSERT INTO leases VALUES ('lease1', 1, 2)");
    exec_ok(st, "INSERT INTO active VALUES ('act1', 'rw', NULL, '', 1)");
    cairn_state_free(st);
    char *src = path_of(dir, name);
    char *fz = NULL;
    assert_true(asprintf(&fz, "%s/%s.f", dir, name) > 0);
    T_OK(cairn_freeze(src, fz, NULL, NULL, &t_err));
    free(src);
    return fz;
}

/* ---- comparing -------------------------------------------------------- */

static void dump_append(char **buf, size_t *len, const char *s)
{
    size_t n = strlen(s);
    *buf = realloc(*buf, *len + n + 2);
    memcpy(*buf + *len, s, n);
    (*buf)[*len + n] = '\n';
    *len += n + 1;
    (*buf)[*len] = 0;
}

/* Every merged table of a state's own database, sorted, as text. */
static char *dump(const char *path)
{
    cairn_error t_err = {0};
    cairn_state *st = NULL;
    T_OK(cairn_state_open(&st, path, CAIRN_OPEN_READONLY, &t_err));
    const char **merged;
    const char *const *local;
    size_t n_local;
    size_t n = cairn__merge_tables(&merged, &local, &n_local);
    char *buf = calloc(1, 1);
    size_t len = 0;
    for (size_t t = 0; t < n; t++) {
        char sql[256];
        snprintf(sql, sizeof(sql), "SELECT * FROM %s ORDER BY 1, 2, 3", merged[t]);
        dump_append(&buf, &len, merged[t]);
        sqlite3_stmt *s = NULL;
        assert_int_equal(sqlite3_prepare_v2(st->layers[0].db, sql, -1, &s, NULL), SQLITE_OK);
        while (sqlite3_step(s) == SQLITE_ROW) {
            char row[2048] = "";
            for (int c = 0; c < sqlite3_column_count(s); c++) {
                const unsigned char *v = sqlite3_column_text(s, c);
                size_t o = strlen(row);
                snprintf(row + o, sizeof(row) - o, "%s|", v ? (const char *)v : "<null>");
            }
            dump_append(&buf, &len, row);
        }
        sqlite3_finalize(s);
    }
    cairn_state_free(st);
    return buf;
}

static void merge_ok(const char *dest, const char *const *srcs, size_t n)
{
    cairn_error t_err = {0};
    cairn_merge_stats stats;
    T_OK(cairn_merge(dest, srcs, n, NULL, &stats, &t_err));
    assert_int_equal(stats.refused, 0);
}

/* Fail naming the first line where two texts differ. */
static void assert_same_text(const char *what, const char *x, const char *y)
{
    if (!strcmp(x, y))
        return;
    size_t i = 0, line = 0, start = 0;
    for (; x[i] && x[i] == y[i]; i++)
        if (x[i] == '\n') {
            line++;
            start = i + 1;
        }
    fail_msg("%s differ at line %zu:\n  %.200s\nvs\n  %.200s", what, line + 1, x + start,
             y + start);
}

static void assert_same_dump(const char *a, const char *b)
{
    char *x = dump(a), *y = dump(b);
    char what[2200];
    snprintf(what, sizeof(what), "the merged tables of %s and %s", a, b);
    assert_same_text(what, x, y);
    free(x);
    free(y);
}

/* What the public API answers about a state, as text. */
static int api_label(void *ud, const char *k, const char *v)
{
    char line[512];
    snprintf(line, sizeof(line), "  label %s=%s", k, v);
    struct {
        char **buf;
        size_t *len;
    } *o = ud;
    dump_append(o->buf, o->len, line);
    return 0;
}

struct api_ctx {
    cairn_state *st;
    char **buf;
    size_t *len;
};

static int api_blob(void *ud, const cairn_blob_info *in)
{
    struct api_ctx *c = ud;
    cairn_error t_err = {0};
    char line[512];
    snprintf(line, sizeof(line), "blob %s %llu %s %lld", in->digest,
             (unsigned long long)in->size, in->media_type, (long long)in->created);
    dump_append(c->buf, c->len, line);
    cairn_blob_info st;
    T_OK(cairn_blob_stat(c->st, in->digest, &st, &t_err));
    snprintf(line, sizeof(line), "stat %s %llu %s %lld", st.digest, (unsigned long long)st.size,
             st.media_type, (long long)st.created);
    dump_append(c->buf, c->len, line);
    void *data = NULL;
    size_t dlen = 0;
    T_OK(cairn_blob_read(c->st, in->digest, &data, &dlen, &t_err));
    free(data);
    struct {
        char **buf;
        size_t *len;
    } o = {c->buf, c->len};
    T_OK(cairn_blob_label_list(c->st, in->digest, api_label, &o, &t_err));
    return 0;
}

static int api_snapshot(void *ud, const cairn_snapshot_info *in)
{
    struct api_ctx *c = ud;
    cairn_error t_err = {0};
    char line[512];
    snprintf(line, sizeof(line), "snapshot %s parent %s diff %s %llu %lld", in->chain_id,
             in->parent, in->diff_id, (unsigned long long)in->size, (long long)in->created);
    dump_append(c->buf, c->len, line);
    cairn_snapshot_info st;
    T_OK(cairn_snapshot_stat(c->st, in->chain_id, &st, &t_err));
    snprintf(line, sizeof(line), "stat %s parent %s diff %s %llu %lld", st.chain_id, st.parent,
             st.diff_id, (unsigned long long)st.size, (long long)st.created);
    dump_append(c->buf, c->len, line);
    return 0;
}

static int api_image(void *ud, const cairn_image_info *in)
{
    struct api_ctx *c = ud;
    char line[512];
    snprintf(line, sizeof(line), "image %s %s %s %s %lld", in->name, in->manifest, in->config,
             in->top, (long long)in->updated);
    dump_append(c->buf, c->len, line);
    return 0;
}

static int api_record(void *ud, const cairn_record_result *r, int present)
{
    struct api_ctx *c = ud;
    char line[512];
    snprintf(line, sizeof(line), "record %s %s %s %lld used %lld hits %llu present %d", r->key,
             r->result, cairn_result_kind_name(r->kind), (long long)r->created,
             (long long)r->last_used, (unsigned long long)r->hits, present);
    dump_append(c->buf, c->len, line);
    return 0;
}

static int api_result(void *ud, const cairn_record_result *r)
{
    return api_record(ud, r, -1);
}

static int api_link(void *ud, const char *key, const cairn_record_link *l)
{
    struct api_ctx *c = ud;
    char line[512];
    snprintf(line, sizeof(line), "  link %s %u %u %s %s", key, l->input, l->output, l->op,
             l->selector);
    dump_append(c->buf, c->len, line);
    return 0;
}

static int api_key(void *ud, const char *key)
{
    struct api_ctx *c = ud;
    char line[128];
    snprintf(line, sizeof(line), "  key %s", key);
    dump_append(c->buf, c->len, line);
    return 0;
}

static int api_volume(void *ud, const cairn_volume_info *v)
{
    struct api_ctx *c = ud;
    char line[512];
    snprintf(line, sizeof(line), "volume %s current %s %lld versions %llu size %llu", v->name,
             v->current, (long long)v->created, (unsigned long long)v->versions,
             (unsigned long long)v->size);
    dump_append(c->buf, c->len, line);
    return 0;
}

static int api_version(void *ud, const cairn_volume_version *v)
{
    struct api_ctx *c = ud;
    char line[512];
    snprintf(line, sizeof(line), "  version %s %lld current %d present %d", v->version,
             (long long)v->created, v->current, v->present);
    dump_append(c->buf, c->len, line);
    return 0;
}

/* The build cache's answers: records, links, keys, volumes. */
static void api_cache(struct api_ctx *c)
{
    cairn_error t_err = {0};
    T_OK(cairn_record_list(c->st, api_record, c, &t_err));
    T_OK(cairn_record_walk_keys(c->st, api_key, c, &t_err));
    for (unsigned i = 0; i < 5; i++) {
        char key[CAIRN_DIGEST_LEN + 1], line[128];
        key_of(i, key);
        int e = cairn_record_exists(c->st, key, &t_err);
        snprintf(line, sizeof(line), "key %s exists %d", key, e);
        dump_append(c->buf, c->len, line);
        T_OK(cairn_record_results(c->st, key, api_result, c, &t_err));
        T_OK(cairn_record_links(c->st, key, NULL, api_link, c, &t_err));
        T_OK(cairn_record_backlinks(c->st, key, api_link, c, &t_err));
    }
    T_OK(cairn_volume_list(c->st, api_volume, c, &t_err));
    for (unsigned i = 0; i < 2; i++) {
        char name[16], line[256];
        snprintf(name, sizeof(name), "vol%u", i);
        cairn_volume_info v;
        int r = cairn_volume_current(c->st, name, &v, NULL);
        snprintf(line, sizeof(line), "current %s: %d %s", name, r, r == 0 ? v.current : "");
        dump_append(c->buf, c->len, line);
        if (r == 0)
            T_OK(cairn_volume_versions(c->st, name, api_version, c, &t_err));
    }
}

static char *api_view(const char *path)
{
    cairn_error t_err = {0};
    cairn_state *st = NULL;
    T_OK(cairn_state_open(&st, path, CAIRN_OPEN_READONLY, &t_err));
    char *buf = calloc(1, 1);
    size_t len = 0;
    struct api_ctx c = {st, &buf, &len};
    T_OK(cairn_blob_list(st, NULL, api_blob, &c, &t_err));
    for (size_t m = 0; m < 4; m++) {
        char line[64];
        snprintf(line, sizeof(line), "type %s", media[m]);
        dump_append(&buf, &len, line);
        T_OK(cairn_blob_list(st, media[m], api_blob, &c, &t_err));
    }
    T_OK(cairn_snapshot_list(st, api_snapshot, &c, &t_err));
    api_cache(&c);
    T_OK(cairn_image_list(st, api_image, &c, &t_err));
    for (unsigned i = 0; i < 4; i++) {
        char name[16], line[512];
        snprintf(name, sizeof(name), "img%u", i);
        cairn_image_info in;
        int r = cairn_image_get(st, name, &in, NULL);
        snprintf(line, sizeof(line), "get %s: %d %s %s %s %lld", name, r, r == 0 ? in.manifest : "",
                 r == 0 ? in.config : "", r == 0 ? in.top : "", r == 0 ? (long long)in.updated : 0);
        dump_append(&buf, &len, line);
    }
    cairn_state_info in;
    T_OK(cairn_state_info_get(st, &in, &t_err));
    char line[512];
    snprintf(line, sizeof(line), "info blobs %llu/%llu snapshots %llu images %llu records %llu "
             "volumes %llu",
             (unsigned long long)in.blobs.count, (unsigned long long)in.blobs.bytes,
             (unsigned long long)in.snapshots.count, (unsigned long long)in.images.count,
             (unsigned long long)in.records.count, (unsigned long long)in.volumes.count);
    dump_append(&buf, &len, line);
    cairn_state_free(st);
    return buf;
}

/* ---- the properties ---------------------------------------------------- */

static void one_seed(uint64_t seed)
{
    cairn_error t_err = {0};
    rng_state = seed ? seed : 1;
    char *dir = t_scratch("merge-prop");
    char *a = random_state(dir, "a"), *b = random_state(dir, "b"), *c = random_state(dir, "c");

    /* Commutative. */
    char *ab = path_of(dir, "ab"), *ba = path_of(dir, "ba");
    merge_ok(ab, (const char *const[]){a, b}, 2);
    merge_ok(ba, (const char *const[]){b, a}, 2);
    assert_same_dump(ab, ba);

    /* Associative: (a b) c == a (b c). */
    char *bc = path_of(dir, "bc"), *l = path_of(dir, "l"), *r = path_of(dir, "r");
    merge_ok(bc, (const char *const[]){b, c}, 2);
    merge_ok(l, (const char *const[]){ab, c}, 2);
    merge_ok(r, (const char *const[]){a, bc}, 2);
    assert_same_dump(l, r);

    /* Idempotent: merging what is there changes nothing; a alone gives a. */
    char *aa = path_of(dir, "aa");
    merge_ok(aa, (const char *const[]){a}, 1);
    assert_same_dump(aa, a);
    merge_ok(aa, (const char *const[]){a}, 1);
    assert_same_dump(aa, a);
    char *before = dump(l);
    merge_ok(l, (const char *const[]){a, b}, 2);
    char *after = dump(l);
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* The stacked view answers as the eager merge: a stack over frozen
     * a, b, c and the merge of the three. */
    char *abc = path_of(dir, "abc"), *top = path_of(dir, "top");
    merge_ok(abc, (const char *const[]){a, b, c}, 3);
    assert_same_dump(abc, l);
    T_OK(cairn_state_init(top, NULL, &t_err));
    T_OK(cairn_stack_add(top, (const char *const[]){c, a, b}, 3, &t_err));
    char *x = api_view(abc), *y = api_view(top);
    assert_same_text("the answers of the merge and of the stack", x, y);
    free(x);
    free(y);

    /* Flattening the stack gives the merge, and the same answers. */
    T_OK(cairn_flatten(top, NULL, NULL, &t_err));
    assert_same_dump(top, abc);
    x = api_view(abc);
    y = api_view(top);
    assert_string_equal(x, y);
    free(x);
    free(y);

    /* The merges pass fsck. */
    const char *all[] = {ab, ba, l, r, aa, abc, top};
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(all); i++) {
        cairn_state *st = NULL;
        T_OK(cairn_state_open(&st, all[i], CAIRN_OPEN_READONLY, &t_err));
        int problems = cairn_fsck(st, NULL, NULL, NULL, &t_err);
        cairn_state_free(st);
        if (problems != 0)
            fail_msg("fsck of %s: %d problems", all[i], problems);
    }
    free(a), free(b), free(c), free(ab), free(ba), free(bc), free(l), free(r), free(aa);
    free(abc), free(top);
    t_scratch_free(dir);
}

static void test_properties(void **unused)
{
    const char *env = getenv("CAIRN_TEST_SEED");
    if (env && *env) {
        one_seed(strtoull(env, NULL, 0));
        return;
    }
    static const uint64_t seeds[] = {1, 42, 0x9e3779b97f4a7c15ull, 7777, 123456789, 31337};
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(seeds); i++)
        one_seed(seeds[i]);
}

/* Every table is merged or declared local: a new table without a merge rule
 * fails here. */
static void test_every_table_has_a_rule(void **unused)
{
    char *dir = t_scratch("merge-tables");
    cairn_state *st = t_state(dir, "s");
    const char **merged;
    const char *const *local;
    size_t n_local;
    size_t n = cairn__merge_tables(&merged, &local, &n_local);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(st->layers[0].db,
                                        "SELECT name FROM sqlite_master WHERE type = 'table' "
                                        "AND name NOT LIKE 'sqlite_%'",
                                        -1, &s, NULL),
                     SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        bool found = false;
        for (size_t i = 0; i < n; i++)
            found |= !strcmp(merged[i], t);
        for (size_t i = 0; i < n_local; i++)
            found |= !strcmp(local[i], t);
        if (!found)
            fail_msg("table %s has no merge rule in lib/combine/merge.c and is not declared local", t);
    }
    sqlite3_finalize(s);
    cairn_state_free(st);
    t_scratch_free(dir);
}

struct seen {
    int n;
    char paths[4][1024];
};
static void on_problem(void *ud, const cairn_merge_problem *p)
{
    struct seen *s = ud;
    if (s->n < 4)
        snprintf(s->paths[s->n], sizeof(s->paths[0]), "%s %s %s", p->problem, p->path, p->other);
    s->n++;
}

/* A name held by two states with different bytes: the corrupt copy is
 * refused, in either order, with both paths named; the merge completes. */
static void test_corrupt_copy(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("merge-corrupt");
    cairn_state *a = t_state(dir, "a"), *b = t_state(dir, "b");
    char d[CAIRN_DIGEST_LEN + 1], d2[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_put_buf(a, "the same bytes", 14, NULL, d, &t_err));
    T_OK(cairn_blob_put_buf(b, "the same bytes", 14, NULL, d, &t_err));
    T_OK(cairn_blob_put_buf(b, "only in b", 9, NULL, d2, &t_err));
    char *bad = NULL;
    assert_true(asprintf(&bad, "%s/b/blobs/sha256/%s", dir, d + 7) > 0);
    chmod(bad, 0644);
    t_write_file(bad, "the SAME bytes", 14); /* same size, other bytes */
    cairn_state_free(a);
    cairn_state_free(b);
    char *pa = path_of(dir, "a"), *pb = path_of(dir, "b");
    for (int order = 0; order < 2; order++) {
        char *m = path_of(dir, order ? "m1" : "m0");
        struct seen seen = {0};
        cairn_merge_options mo = CAIRN_MERGE_OPTIONS_INIT;
        mo.problem = on_problem;
        mo.problem_userdata = &seen;
        cairn_merge_stats stats;
        const char *srcs[2] = {order ? pb : pa, order ? pa : pb};
        T_OK(cairn_merge(m, srcs, 2, &mo, &stats, &t_err));
        assert_int_equal(seen.n, 1);
        assert_int_equal(stats.refused, 1);
        assert_non_null(strstr(seen.paths[0], "corrupt"));
        /* Both copies named: a's first, b's copy is refused; b's first, it
         * was taken, then found bad against a's and quarantined. */
        char want_bad[1200], want_good[1200];
        if (order == 0) {
            snprintf(want_bad, sizeof(want_bad), "%s", bad);
            snprintf(want_good, sizeof(want_good), "%s/blobs/sha256/%s", m, d + 7);
        } else {
            snprintf(want_bad, sizeof(want_bad), "%s/blobs/sha256/%s", m, d + 7);
            snprintf(want_good, sizeof(want_good), "%s/a/blobs/sha256/%s", dir, d + 7);
        }
        if (!strstr(seen.paths[0], want_bad) || !strstr(seen.paths[0], want_good))
            fail_msg("order %d: expected %s refused and %s kept, got: %s", order, want_bad,
                     want_good, seen.paths[0]);
        cairn_state *st = NULL;
        T_OK(cairn_state_open(&st, m, 0, &t_err));
        void *buf = NULL;
        size_t len = 0;
        T_OK(cairn_blob_read(st, d, &buf, &len, &t_err)); /* verifies the digest */
        assert_memory_equal(buf, "the same bytes", 14);
        free(buf);
        assert_int_equal(cairn_blob_exists(st, d2, &t_err), 1);
        assert_int_equal(cairn_fsck(st, NULL, NULL, NULL, &t_err), 0);
        cairn_state_free(st);
        free(m);
    }
    free(bad);
    free(pa);
    free(pb);
    t_scratch_free(dir);
}

/* A source of a newer schema is refused before anything is written. */
static void test_newer_source(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("merge-newer");
    cairn_state *a = t_state(dir, "a");
    T_OK(cairn_blob_put_buf(a, "x", 1, NULL, NULL, &t_err));
    char *cmd = NULL;
    assert_true(asprintf(&cmd, "sqlite3 '%s' 'PRAGMA user_version = 99'",
                         a->layers[0].db_path) > 0);
    cairn_state_free(a);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    char *pa = path_of(dir, "a"), *m = path_of(dir, "m");
    assert_int_equal(cairn_merge(m, (const char *const[]){pa}, 1, NULL, NULL, &t_err),
                     CAIRN_E_NEWER);
    assert_non_null(strstr(t_err.message, "99"));
    struct stat sb;
    assert_int_equal(stat(m, &sb), -1); /* nothing written */
    free(pa);
    free(m);
    t_scratch_free(dir);
}

/* Opening a stack opens no lower database and no lower object directory;
 * a lookup opens only what it reads. */
static void test_stack_open_is_lazy(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("merge-lazy");
    const char *names[] = {"l1", "l2", "l3"};
    char *fz[3];
    char d[CAIRN_DIGEST_LEN + 1];
    for (int i = 0; i < 3; i++) {
        cairn_state *s = t_state(dir, names[i]);
        T_OK(cairn_blob_put_buf(s, names[i], 2, NULL, d, &t_err));
        cairn_state_free(s);
        char *p = path_of(dir, names[i]);
        assert_true(asprintf(&fz[i], "%s.f", p) > 0);
        T_OK(cairn_freeze(p, fz[i], NULL, NULL, &t_err));
        free(p);
    }
    char *top = path_of(dir, "top");
    T_OK(cairn_state_init(top, NULL, &t_err));
    T_OK(cairn_stack_add(top, (const char *const *)fz, 3, &t_err));
    cairn_state *st = NULL;
    T_OK(cairn_state_open(&st, top, 0, &t_err));
    assert_int_equal(st->n_layers, 4);
    for (size_t i = 1; i < st->n_layers; i++) {
        assert_null(st->layers[i].db);
        assert_int_equal(st->layers[i].blobfd, -1);
    }
    /* d is in the last lower: read through. */
    void *buf = NULL;
    size_t len = 0;
    T_OK(cairn_blob_read(st, d, &buf, &len, &t_err));
    assert_memory_equal(buf, "l3", 2);
    free(buf);
    /* Writes go to the top. */
    char nd[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_put_buf(st, "new", 3, NULL, nd, &t_err));
    cairn_blob_info in;
    T_OK(cairn_blob_stat(st, nd, &in, &t_err));
    assert_int_equal(in.lower, 0);
    cairn_state_free(st);
    for (int i = 0; i < 3; i++)
        free(fz[i]);
    free(top);
    t_scratch_free(dir);
}

/* A stacked label reads newest-wins across layers, as the merge does, even
 * when a lower holds a newer write than the top. */
static void test_label_newest_across_layers(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("merge-label");
    cairn_state *lo = t_state(dir, "lo");
    char d[CAIRN_DIGEST_LEN + 1];
    T_OK(cairn_blob_put_buf(lo, "x", 1, NULL, d, &t_err));
    T_OK(cairn_blob_label_set(lo, d, "k", "lower-newer", &t_err));
    exec_ok(lo, "UPDATE blob_labels SET updated = 200");
    cairn_state_free(lo);
    char *plo = path_of(dir, "lo"), *flo = path_of(dir, "lo.f"), *top = path_of(dir, "top");
    T_OK(cairn_freeze(plo, flo, NULL, NULL, &t_err));
    cairn_state *t = t_state(dir, "top");
    T_OK(cairn_stack_add(top, (const char *const[]){flo}, 1, &t_err));
    cairn_state_free(t);
    T_OK(cairn_state_open(&t, top, 0, &t_err));
    T_OK(cairn_blob_label_set(t, d, "k", "top-older", &t_err));
    exec_ok(t, "UPDATE blob_labels SET updated = 100");
    struct {
        char **buf;
        size_t *len;
    } o;
    char *buf = calloc(1, 1);
    size_t len = 0;
    o.buf = &buf;
    o.len = &len;
    T_OK(cairn_blob_label_list(t, d, api_label, &o, &t_err));
    assert_string_equal(buf, "  label k=lower-newer\n");
    cairn_state_free(t);
    free(buf);
    free(plo), free(flo), free(top);
    t_scratch_free(dir);
}

/* A background flatten moves rows in short batches: more rows than a batch
 * end up exactly as an eager merge of the same states. */
static void test_flatten_background_batches(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("merge-bg");
    cairn_state *lo = t_state(dir, "lo");
    cairn_blob_batch *b = NULL;
    T_OK(cairn_blob_batch_new(&b, lo, &t_err));
    for (int i = 0; i < 1300; i++) {
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "bg %d", i);
        T_OK(cairn_blob_batch_put_buf(b, buf, (size_t)n, NULL, NULL, &t_err));
    }
    T_OK(cairn_blob_batch_commit(b, &t_err));
    cairn_blob_batch_free(b);
    cairn_state_free(lo);
    char *plo = path_of(dir, "lo"), *flo = path_of(dir, "lo.f"), *top = path_of(dir, "top");
    char *eager = path_of(dir, "eager");
    T_OK(cairn_freeze(plo, flo, NULL, NULL, &t_err));
    cairn_state *t = t_state(dir, "top");
    T_OK(cairn_blob_put_buf(t, "top", 3, NULL, NULL, &t_err));
    cairn_state_free(t);
    T_OK(cairn_stack_add(top, (const char *const[]){flo}, 1, &t_err));
    merge_ok(eager, (const char *const[]){top}, 1);
    cairn_merge_options mo = CAIRN_MERGE_OPTIONS_INIT;
    mo.background = 1;
    cairn_merge_stats st;
    T_OK(cairn_flatten(top, &mo, &st, &t_err));
    assert_int_equal(st.objects, 1300);
    assert_true(st.rows >= 1300);
    assert_same_dump(top, eager);
    cairn_state *s = NULL;
    T_OK(cairn_state_open(&s, top, 0, &t_err));
    assert_int_equal(s->n_layers, 1);
    char pol[32];
    T_OK(cairn_flatten_policy_get(s, pol, sizeof(pol), &t_err));
    assert_string_equal(pol, "never");
    assert_int_equal(cairn_flatten_policy_set(s, "lowers>x", &t_err), -EINVAL);
    T_OK(cairn_flatten_policy_set(s, "lowers>3", &t_err));
    T_OK(cairn_flatten_policy_get(s, pol, sizeof(pol), &t_err));
    assert_string_equal(pol, "lowers>3");
    assert_int_equal(cairn_flatten_due(s, &t_err), 0); /* no lowers */
    assert_int_equal(cairn_fsck(s, NULL, NULL, NULL, &t_err), 0);
    cairn_state_free(s);
    free(plo), free(flo), free(top), free(eager);
    t_scratch_free(dir);
}

/* Opening a stack never flattens it, whatever its policy: the caller
 * applies the policy with cairn_flatten_on_open(), as the command does. */
static void test_open_never_flattens(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("merge-open");
    cairn_state *lo = t_state(dir, "lo");
    T_OK(cairn_blob_put_buf(lo, "lower", 5, NULL, NULL, &t_err));
    cairn_state_free(lo);
    char *plo = path_of(dir, "lo"), *flo = path_of(dir, "lo.f"), *top = path_of(dir, "top");
    T_OK(cairn_freeze(plo, flo, NULL, NULL, &t_err));
    cairn_state *t = t_state(dir, "top");
    cairn_state_free(t);
    T_OK(cairn_stack_add(top, (const char *const[]){flo}, 1, &t_err));
    cairn_state *s = NULL;
    T_OK(cairn_state_open(&s, top, 0, &t_err));
    T_OK(cairn_flatten_policy_set(s, "on-open", &t_err));
    cairn_state_free(s);
    T_OK(cairn_state_open(&s, top, 0, &t_err));
    assert_int_equal(s->n_layers, 2); /* the open left the stack as it is */
    assert_int_equal(cairn_flatten_due(s, &t_err), 1);
    cairn_merge_stats st = {0};
    assert_int_equal(cairn_flatten_on_open(s, NULL, &st, &t_err), 1);
    assert_int_equal(s->n_layers, 1);
    assert_int_equal(st.objects, 1);
    assert_int_equal(cairn_flatten_on_open(s, NULL, NULL, &t_err), 0); /* nothing left */
    assert_int_equal(cairn_fsck(s, NULL, NULL, NULL, &t_err), 0);
    cairn_state_free(s);
    free(plo), free(flo), free(top);
    t_scratch_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_table_has_a_rule),
        cmocka_unit_test(test_properties),
        cmocka_unit_test(test_corrupt_copy),
        cmocka_unit_test(test_newer_source),
        cmocka_unit_test(test_stack_open_is_lazy),
        cmocka_unit_test(test_label_newest_across_layers),
        cmocka_unit_test(test_flatten_background_batches),
        cmocka_unit_test(test_open_never_flattens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
