/* info.c: counts and bytes per object kind over a state and its lowers. */
#include "core/core.h"

struct count_ctx {
    cairn_count *c;
};

static int count_row(void *ud, size_t layer, sqlite3_stmt *s)
{
    struct count_ctx *c = ud;
    c->c->count++;
    c->c->bytes += (uint64_t)sqlite3_column_int64(s, 1);
    return 0;
}

/* `walk`: "SELECT key, bytes FROM ... ORDER BY key"; `agg`: the same as
 * "SELECT count(*), sum(bytes)", used when there is one layer (no union). */
static int count_union(cairn_state *st, const char *walk, const char *agg, cairn_count *out,
                       cairn_error *err)
{
    memset(out, 0, sizeof(*out));
    if (st->n_layers == 1) {
        sqlite3_stmt *s;
        int r = cairn__stmt(st, 0, agg, &s, err);
        if (r < 0)
            return r;
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            out->count = (uint64_t)sqlite3_column_int64(s, 0);
            out->bytes = (uint64_t)sqlite3_column_int64(s, 1);
        }
        sqlite3_reset(s);
        if (rc != SQLITE_ROW)
            return cairn__err_db(err, st->layers[0].db, rc, "count");
        return 0;
    }
    struct count_ctx c = {out};
    return cairn__union_walk(st, walk, NULL, count_row, &c, err);
}

static int count_image(void *ud, const cairn_image_info *in)
{
    cairn_count *c = ud;
    c->count++;
    return 0;
}

int cairn_state_info_get(cairn_state *st, cairn_state_info *out, cairn_error *err)
{
    cairn_state_info info = {0};
    memcpy(info.id, st->id, sizeof(info.id));
    info.format = st->format;
    info.schema = (unsigned)cairn__db_schema(st->layers[0].db);
    info.frozen = st->frozen;
    info.lowers = (unsigned)(st->n_layers - 1);
    int r;
#define COUNT(field, walk, agg)                                                                    \
    do {                                                                                           \
        static const char w_[] = walk, a_[] = agg;                                                 \
        r = count_union(st, w_, a_, &info.field, err);                                             \
        if (r < 0)                                                                                 \
            return r;                                                                              \
    } while (0)
    COUNT(blobs, "SELECT digest, size FROM blobs ORDER BY digest",
          "SELECT count(*), coalesce(sum(size), 0) FROM blobs");
    COUNT(snapshots, "SELECT chain_id, size FROM snapshots ORDER BY chain_id",
          "SELECT count(*), coalesce(sum(size), 0) FROM snapshots");
    COUNT(records, "SELECT key || ' ' || result, 0 FROM cache_results ORDER BY 1",
          "SELECT count(*), 0 FROM cache_results");
    COUNT(volumes, "SELECT DISTINCT name, 0 FROM volume_versions ORDER BY name",
          "SELECT count(DISTINCT name), 0 FROM volume_versions");
#undef COUNT
    /* Images by the image module's own reading of the register, so a name
     * removed over a lower (a tombstone row) is not counted. */
    r = cairn_image_list(st, count_image, &info.images, err);
    if (r < 0)
        return r;
    /* Active snapshots and leases are local to this state: no union. */
    static const char act[] = "SELECT count(*) FROM active";
    static const char lea[] = "SELECT count(*) FROM leases";
    const char *local[] = {act, lea};
    cairn_count *dst[] = {&info.active, &info.leases};
    for (size_t i = 0; i < 2; i++) {
        sqlite3_stmt *s;
        r = cairn__stmt(st, 0, local[i], &s, err);
        if (r < 0)
            return r;
        if (sqlite3_step(s) == SQLITE_ROW)
            dst[i]->count = (uint64_t)sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
    }
    *out = info;
    return 0;
}
