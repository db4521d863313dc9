/* cache-fixtures.h: what the build cache's unit tests share: digests from
 * strings, blobs, hand-made snapshots and lowers, and backdating rows. */
#ifndef CAIRN_TEST_CACHE_FIXTURES_H
#define CAIRN_TEST_CACHE_FIXTURES_H

#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

/* The digest of a string (for keys and ops). */
static inline void fx_digest(const char *s, char out[CAIRN_DIGEST_LEN + 1])
{
    cairn__sha256_buf(s, strlen(s), out);
}

/* Store a blob with the given contents; out receives its digest. */
static inline void fx_blob(cairn_state *st, const char *content, const char *media_type,
                           char out[CAIRN_DIGEST_LEN + 1])
{
    cairn_error t_err = {0};
    cairn_blob_put_options o = CAIRN_BLOB_PUT_OPTIONS_INIT;
    o.media_type = media_type;
    T_OK(cairn_blob_put_buf(st, content, strlen(content), &o, out, &t_err));
}

/* A committed snapshot over `parent`: one file of `size` bytes whose
 * content starts with `tag` (so each tag gives another chain id). */
static inline void fx_snapshot(cairn_state *st, const char *tag, const char *parent,
                               uint64_t size, char out[CAIRN_DIGEST_LEN + 1])
{
    cairn_error t_err = {0};
    char id[CAIRN_STATE_ID_LEN + 1];
    T_OK(cairn_snapshot_prepare(st, parent, tag, id, &t_err));
    char *p = NULL;
    assert_true(asprintf(&p, "%s/active/%s/fs/data", cairn_state_path(st), id) > 0);
    char *content = calloc(1, size + 1);
    memset(content, 'x', size);
    memcpy(content, tag, strlen(tag) < size ? strlen(tag) : size);
    t_write_file(p, content, size);
    free(content);
    free(p);
    T_OK(cairn_snapshot_commit(st, id, out, NULL, &t_err));
}

/* Run SQL on the state's own database (backdating, images, volumes). */
static inline void fx_sql(cairn_state *st, const char *sql)
{
    cairn_error e = {0};
    if (cairn__exec(st, 0, sql, &e) < 0)
        fail_msg("%s: %s", sql, e.message);
}

/* Make every row look `secs` older. */
static inline void fx_age_by(cairn_state *st, long secs)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "UPDATE blobs SET created = created - %ld;"
             "UPDATE snapshots SET created = created - %ld;"
             "UPDATE cache_results SET created = created - %ld;"
             "UPDATE usage SET last_used = last_used - %ld;"
             "UPDATE cache_result_refs SET touched = touched - %ld;",
             secs, secs, secs, secs, secs);
    fx_sql(st, sql);
}

/* An hour older: past the grace period. */
static inline void fx_age(cairn_state *st)
{
    fx_age_by(st, 3600);
}

static inline bool fx_exists(const char *state, const char *sub, const char *digest)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s/%s", state, sub, digest + 7) > 0);
    struct stat sb;
    bool r = lstat(p, &sb) == 0;
    free(p);
    return r;
}

/* Freeze a closed state by hand (identity frozen=1) and name it as the
 * lower of `top` (a path). */
static inline void fx_stack(const char *lower, const char *lower_id, const char *top)
{
    char *cmd = NULL;
    assert_true(asprintf(&cmd,
                         "sed -i 's/^frozen=0$/frozen=1/' '%s/cairn-state' && "
                         "printf '%%s %%s\\n' '%s' '%s' > '%s/lowers'",
                         lower, lower_id, lower, top) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

#endif
