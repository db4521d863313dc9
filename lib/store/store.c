/* store.c: the content store (cairn/store.h).
 *
 * Invariant: a row in `blobs` names a file blobs/sha256/<hex> in the same
 * state directory whose bytes hash to <hex> and whose size is the row's.
 *
 * Ingest, in order:
 *   1. stage: stream the bytes into tmp/<boot-id>-blob-<random>, hashing as
 *      they go. A blob that fits in one pipeline slot (CAIRN__PIPE_SLOT) is
 *      hashed and written by the caller in one write(). A larger one goes
 *      through the pipeline (ingest.c): the caller fills slots, one thread
 *      hashes them in order, another writes them with O_DIRECT (or, where
 *      the filesystem does not take it, through the page cache with
 *      writeback started at once), so reading, hashing and writing overlap.
 *      In a batch, once a blob is hashed the pipeline finishes its writes
 *      (and those of blobs from ASYNC_MIN bytes up) in the background while
 *      the caller goes on with the next blob;
 *   2. check: compare with the expected digest and size; on mismatch the
 *      staged file is removed and nothing else happened;
 *   3. sync: wait for every write of the file (of the batch), then fsync
 *      the file (one syncfs for a batch); a write that failed fails the
 *      put (the batch's commit) before anything is published;
 *   4. publish the file: renameat2(RENAME_NOREPLACE) into blobs/sha256/;
 *      on EEXIST the file there is proven (a regular file of the size,
 *      hashing to the name: a crash's or a racing writer's copy) and the
 *      staged copy dropped, or it is moved to quarantine/ and the staged
 *      copy renamed in its place; then fsync blobs/sha256/ so the name is
 *      durable;
 *   5. publish the row, in a transaction (one for a batch).
 * Steps 4 and 5 hold the state lock shared, so a concurrent `blob rm` or gc
 * (exclusive) cannot delete the file between the rename and the row.
 * A crash at any point leaves at worst a staged file (swept at the next
 * boot) or an unreferenced blob (reported by fsck, removed by gc).
 */
#include "core/core.h"
#include "core/usage.h"
#include "store/ingest-private.h"
#include "store/store-private.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/syscall.h>


/* ---- lookups ---------------------------------------------------------- */

/* The layer holding the row of `digest`, or -ENOENT. */
static int find_layer(cairn_state *st, const char *digest, cairn_blob_info *info,
                      cairn_error *err)
{
    static const char sql[] = "SELECT size, media_type, created FROM blobs WHERE digest = ?";
    for (size_t i = 0; i < st->n_layers; i++) {
        sqlite3_stmt *s;
        int r = cairn__stmt(st, i, sql, &s, err);
        if (r < 0)
            return r;
        sqlite3_bind_text(s, 1, digest, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            if (info) {
                memset(info, 0, sizeof(*info));
                memcpy(info->digest, digest, CAIRN_DIGEST_LEN + 1);
                info->size = (uint64_t)sqlite3_column_int64(s, 0);
                snprintf(info->media_type, sizeof(info->media_type), "%s", cairn__col(s, 1));
                info->created = sqlite3_column_int64(s, 2);
                info->lower = (int)i;
            }
            sqlite3_reset(s);
            return (int)i;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return cairn__err_db(err, st->layers[i].db, rc, "blob lookup");
    }
    return -ENOENT;
}

int cairn_blob_exists(cairn_state *st, const char *digest, cairn_error *err)
{
    int r = cairn_digest_check(digest, err);
    if (r < 0)
        return r;
    r = find_layer(st, digest, NULL, err);
    if (r == -ENOENT)
        return 0;
    return r < 0 ? r : 1;
}

int cairn_blob_stat(cairn_state *st, const char *digest, cairn_blob_info *out, cairn_error *err)
{
    int r = cairn_digest_check(digest, err);
    if (r < 0)
        return r;
    cairn_blob_info info;
    r = find_layer(st, digest, &info, err);
    if (r == -ENOENT)
        return cairn__err(err, r, "blob %s: not found", digest);
    if (r < 0)
        return r;
    /* The stacked view answers as the merge would (lib/db.c): created is the
     * earliest of the layers', media_type the greatest. */
    static const char sql[] = "SELECT media_type, created FROM blobs WHERE digest = ?";
    for (size_t i = (size_t)r + 1; i < st->n_layers; i++) {
        sqlite3_stmt *s;
        r = cairn__stmt(st, i, sql, &s, err);
        if (r < 0)
            return r;
        sqlite3_bind_text(s, 1, digest, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            if (strcmp(cairn__col(s, 0), info.media_type) > 0)
                snprintf(info.media_type, sizeof(info.media_type), "%s", cairn__col(s, 0));
            if (sqlite3_column_int64(s, 1) < info.created)
                info.created = sqlite3_column_int64(s, 1);
        }
        sqlite3_reset(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return cairn__err_db(err, st->layers[i].db, rc, "blob lookup");
    }
    *out = info;
    return 0;
}

int cairn_blob_open(cairn_state *st, const char *digest, int verify, int *out_fd,
                    cairn_error *err)
{
    int r = cairn_digest_check(digest, err);
    if (r < 0)
        return r;
    cairn_blob_info info;
    int layer = find_layer(st, digest, &info, err);
    if (layer == -ENOENT)
        return cairn__err(err, -ENOENT, "blob %s: not found", digest);
    if (layer < 0)
        return layer;
    int bfd = cairn__layer_blobfd(st, (size_t)layer, err);
    if (bfd < 0)
        return bfd;
    _cleanup_close_ int fd = openat(bfd, cairn__digest_hex(digest), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT && st->layers[layer].lazy) {
        /* a lazy lower: fetched (and verified) on this first read */
        r = cairn__lower_fetch(st, (size_t)layer, CAIRN__LOWER_BLOB, digest, err);
        if (r < 0)
            return r;
        fd = openat(bfd, cairn__digest_hex(digest), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0) {
        if (errno == ENOENT)
            return cairn__err(err, CAIRN_E_CORRUPT,
                              "blob %s: recorded but its file %s/blobs/sha256/%s is missing "
                              "(run 'cairn fsck')",
                              digest, st->layers[layer].root, cairn__digest_hex(digest));
        return cairn__err(err, -errno, "blob %s: open: %m", digest);
    }
    if (verify) {
        char got[CAIRN_DIGEST_LEN + 1];
        int64_t n = cairn__sha256_fd(fd, got);
        if (n < 0)
            return cairn__err(err, (int)n, "blob %s: read: %m", digest);
        if (strcmp(got, digest) != 0 || (uint64_t)n != info.size)
            return cairn__err(err, CAIRN_E_CORRUPT,
                              "blob %s: corrupt: its file %s/blobs/sha256/%s hashes to %s "
                              "(%lld bytes, expected %llu)",
                              digest, st->layers[layer].root, cairn__digest_hex(digest), got,
                              (long long)n, (unsigned long long)info.size);
        if (lseek(fd, 0, SEEK_SET) < 0)
            return cairn__err(err, -errno, "blob %s: seek: %m", digest);
    }
    *out_fd = steal_fd(&fd);
    return 0;
}

int cairn_blob_read(cairn_state *st, const char *digest, void **out_buf, size_t *out_len,
                    cairn_error *err)
{
    _cleanup_close_ int fd = -1;
    int r = cairn_blob_open(st, digest, 0, &fd, err);
    if (r < 0)
        return r;
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return cairn__err(err, -errno, "blob %s: stat: %m", digest);
    size_t len = (size_t)sb.st_size;
    _cleanup_free_ char *buf = malloc(len ? len + 1 : 1);
    if (!buf)
        return cairn__err(err, -ENOMEM, "blob %s: out of memory for %zu bytes", digest, len);
    ssize_t n = cairn__read_all(fd, buf, len);
    if (n < 0)
        return cairn__err(err, (int)n, "blob %s: read: %m", digest);
    char got[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(buf, (size_t)n, got);
    if ((size_t)n != len || strcmp(got, digest) != 0)
        return cairn__err(err, CAIRN_E_CORRUPT, "blob %s: corrupt: its bytes hash to %s", digest,
                          got);
    buf[n] = 0; /* convenient for JSON and text blobs */
    *out_buf = steal_pointer(&buf);
    *out_len = (size_t)n;
    return 0;
}

struct list_ctx {
    const char *media_type;
    cairn_blob_fn fn;
    void *ud;
    cairn_blob_info info; /* the key being merged across layers */
};

static int list_bind(void *ud, sqlite3_stmt *s)
{
    struct list_ctx *c = ud;
    if (c->media_type)
        sqlite3_bind_text(s, 1, c->media_type, -1, SQLITE_STATIC);
    return 0;
}

/* Rows of one digest, topmost first: merged as the merge rule says. */
static int list_row(void *ud, size_t layer, sqlite3_stmt *s, bool first)
{
    struct list_ctx *c = ud;
    cairn_blob_info *info = &c->info;
    if (first) {
        memset(info, 0, sizeof(*info));
        snprintf(info->digest, sizeof(info->digest), "%s", cairn__col(s, 0));
        info->size = (uint64_t)sqlite3_column_int64(s, 1);
        snprintf(info->media_type, sizeof(info->media_type), "%s", cairn__col(s, 2));
        info->created = sqlite3_column_int64(s, 3);
        info->lower = (int)layer;
        return 0;
    }
    if (strcmp(cairn__col(s, 2), info->media_type) > 0)
        snprintf(info->media_type, sizeof(info->media_type), "%s", cairn__col(s, 2));
    if (sqlite3_column_int64(s, 3) < info->created)
        info->created = sqlite3_column_int64(s, 3);
    return 0;
}

static int list_emit(void *ud)
{
    struct list_ctx *c = ud;
    /* The media type is filtered on the merged row: a lower's row without a
     * type does not list a blob whose union has one. */
    if (c->media_type && strcmp(c->info.media_type, c->media_type) != 0)
        return 0;
    return c->fn(c->ud, &c->info);
}

int cairn_blob_list(cairn_state *st, const char *media_type, cairn_blob_fn fn, void *userdata,
                    cairn_error *err)
{
    static const char all[] =
        "SELECT digest, size, media_type, created FROM blobs ORDER BY digest";
    static const char by_type[] = "SELECT digest, size, media_type, created FROM blobs "
                                  "WHERE media_type = ? ORDER BY digest";
    struct list_ctx c = {.media_type = media_type, .fn = fn, .ud = userdata};
    /* One layer: SQL filters (by the index). Several: filter the merged rows. */
    bool by_sql = media_type && st->n_layers == 1;
    return cairn__union_walk_all(st, by_sql ? by_type : all, by_sql ? list_bind : NULL, list_row,
                                 list_emit, &c, err);
}

/* ---- staging ---------------------------------------------------------- */

/* In a batch, blobs from this size up are written by the pipeline's thread
 * while the caller goes on with the next one. */
#define ASYNC_MIN (64u << 10)

typedef struct staged {
    char tmpname[96];
    char digest[CAIRN_DIGEST_LEN + 1];
    uint64_t size;
    char *media_type;
    char **labels;
    bool present; /* already in the state: nothing to publish but labels */
    bool synced;  /* the staged file's data is durable */
    unsigned stream; /* its stream in the batch's pipeline, 0 if none */
} staged;

static void unstage(cairn_state *st, staged *s)
{
    if (s->tmpname[0] && st->tmpfd >= 0)
        unlinkat(st->tmpfd, s->tmpname, 0);
    s->tmpname[0] = 0;
}

static void staged_clear(staged *s)
{
    free(s->media_type);
    if (s->labels)
        for (char **l = s->labels; *l; l++)
            free(*l);
    free(s->labels);
    memset(s, 0, sizeof(*s));
}

struct cairn_blob_writer {
    cairn_state *st;
    int fd;
    cairn__sha256 *h;
    uint64_t size;
    cairn__pipe *pipe; /* the batch's or its own (own_pipe), made on first write */
    bool own_pipe;
    bool streaming;    /* a slot went into the pipeline: it hashes and writes */
    char *slot;        /* the slot being filled, or NULL */
    size_t fill;       /* bytes in it */
    char expected[CAIRN_DIGEST_LEN + 1];
    int64_t expected_size;
    int failed;       /* an earlier write failed: commit refuses */
    staged s;
};

static int check_label(const char *l, cairn_error *err)
{
    const char *eq = strchr(l, '=');
    if (!eq || eq == l)
        return cairn__err(err, -EINVAL, "label '%.100s': expected key=value", l);
    return 0;
}

static int opts_check(const cairn_blob_put_options *o, cairn_error *err)
{
    if (!o)
        return 0;
    int r0 = cairn__opts_version(o->version, CAIRN_BLOB_PUT_OPTIONS_VERSION, "blob put", err);
    if (r0 < 0)
        return r0;
    if (o->expected) {
        int r = cairn_digest_check(o->expected, err);
        if (r < 0)
            return r;
    }
    if (o->media_type && strlen(o->media_type) > CAIRN_MEDIA_TYPE_MAX)
        return cairn__err(err, -EINVAL, "media type longer than %d characters",
                          CAIRN_MEDIA_TYPE_MAX);
    if (o->labels)
        for (const char *const *l = o->labels; *l; l++) {
            int r = check_label(*l, err);
            if (r < 0)
                return r;
        }
    return 0;
}

static int writer_new(cairn_blob_writer **out, cairn_state *st, cairn__pipe *pipe,
                      const cairn_blob_put_options *opts, cairn_error *err)
{
    int r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    r = opts_check(opts, err);
    if (r < 0)
        return r;
    int tfd = cairn__tmpfd(st, err);
    if (tfd < 0)
        return tfd;
    cairn_blob_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return cairn__err(err, -ENOMEM, "out of memory");
    w->st = st;
    w->fd = -1;
    w->pipe = pipe;
    w->expected_size = opts && opts->expected_size > 0 ? opts->expected_size : -1;
    if (opts && opts->expected)
        memcpy(w->expected, opts->expected, CAIRN_DIGEST_LEN + 1);
    w->h = cairn__sha256_new();
    if (!w->h) {
        cairn_blob_writer_free(w);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    if (opts && opts->media_type && !(w->s.media_type = strdup(opts->media_type))) {
        cairn_blob_writer_free(w);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    if (opts && opts->labels) {
        size_t n = 0;
        while (opts->labels[n])
            n++;
        w->s.labels = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; w->s.labels && i < n; i++)
            if (!(w->s.labels[i] = strdup(opts->labels[i]))) {
                cairn_blob_writer_free(w);
                return cairn__err(err, -ENOMEM, "out of memory");
            }
        if (!w->s.labels) {
            cairn_blob_writer_free(w);
            return cairn__err(err, -ENOMEM, "out of memory");
        }
    }
    r = cairn__tmp_name(st, w->s.tmpname, sizeof(w->s.tmpname), "blob");
    if (r == 0) {
        w->fd = openat(tfd, w->s.tmpname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        if (w->fd < 0)
            r = -errno;
    }
    if (r < 0) {
        w->s.tmpname[0] = 0;
        cairn_blob_writer_free(w);
        return cairn__err(err, r, "%s/tmp: create a staging file: %m", st->path);
    }
    *out = w;
    return 0;
}

int cairn_blob_writer_new(cairn_blob_writer **out, cairn_state *st,
                          const cairn_blob_put_options *opts, cairn_error *err)
{
    return writer_new(out, st, NULL, opts, err);
}

static int write_failed(cairn_blob_writer *w, int r, cairn_error *err)
{
    w->failed = r;
    return cairn__err(err, r, "%s/tmp/%s: write: %m", w->st->path, w->s.tmpname);
}

/* The slot to fill next, acquired when there is none. */
static int writer_slot(cairn_blob_writer *w, cairn_error *err)
{
    if (w->slot)
        return 0;
    if (!w->pipe) {
        if (!(w->pipe = cairn__pipe_new()))
            return cairn__err(err, -ENOMEM, "out of memory");
        w->own_pipe = true;
    }
    if (w->streaming) {
        int r = cairn__pipe_error(w->pipe, w->s.stream);
        if (r < 0)
            return write_failed(w, r, err);
    }
    if (!(w->slot = cairn__pipe_acquire(w->pipe)))
        return cairn__err(err, -ENOMEM, "out of memory for a %u-byte staging buffer",
                          CAIRN__PIPE_SLOT);
    w->fill = 0;
    return 0;
}

/* A full slot goes into the pipeline; the first one starts the stream. */
static void writer_submit(cairn_blob_writer *w)
{
    if (!w->streaming) {
        w->s.stream = cairn__pipe_begin(w->pipe, w->fd, w->h, true);
        w->streaming = true;
    }
    cairn__pipe_submit(w->pipe, w->fill, w->size - w->fill);
    w->slot = NULL;
    w->fill = 0;
}

/* Write out what is staged in memory; afterwards w->h has hashed all the
 * bytes. A writer of its own waits for the writes (the file is synced
 * next). A batch's writer hands its fd to the pipeline instead, which
 * finishes the writes in the background while the next blob is read and
 * closes the fd; the batch waits for them before its sync. */
static int writer_flush(cairn_blob_writer *w, cairn_error *err)
{
    int r = 0;
    bool batch = !w->own_pipe;
    if (w->streaming) {
        w->streaming = false;
        if (batch) {
            if (w->slot)
                cairn__pipe_submit_last(w->pipe, w->fill, w->size - w->fill);
            else
                cairn__pipe_handoff(w->pipe);
            w->slot = NULL;
            w->fill = 0;
            w->fd = -1;
            cairn__pipe_wait_hashed(w->pipe);
            r = cairn__pipe_error(w->pipe, w->s.stream);
        } else {
            if (w->slot)
                writer_submit(w);
            r = cairn__pipe_drain(w->pipe, NULL);
        }
    } else if (w->slot) {
        /* A blob smaller than a slot: hashed here. */
        cairn__sha256_update(w->h, w->slot, w->fill);
        if (batch && w->fill >= ASYNC_MIN) {
            /* Written in the background (through the page cache: for blobs
             * this small O_DIRECT writes one after the other are slower). */
            w->s.stream = cairn__pipe_begin(w->pipe, w->fd, NULL, false);
            cairn__pipe_submit_last(w->pipe, w->fill, 0);
            w->fd = -1;
        } else {
            /* Smaller still: one write() here beats a hand-over. */
            r = cairn__write_all(w->fd, w->slot, w->fill);
            cairn__pipe_submit(w->pipe, 0, 0); /* release the slot */
        }
        w->slot = NULL;
        w->fill = 0;
    }
    return r < 0 ? write_failed(w, r, err) : 0;
}

int cairn_blob_writer_write(cairn_blob_writer *w, const void *buf, size_t len, cairn_error *err)
{
    if (w->failed)
        return cairn__err(err, w->failed, "blob writer: an earlier write failed");
    const char *p = buf;
    while (len) {
        int r = writer_slot(w, err);
        if (r < 0)
            return r;
        size_t n = CAIRN__PIPE_SLOT - w->fill;
        if (n > len)
            n = len;
        memcpy(w->slot + w->fill, p, n);
        w->fill += n;
        w->size += n;
        p += n;
        len -= n;
        if (w->fill == CAIRN__PIPE_SLOT)
            writer_submit(w);
    }
    return 0;
}

int64_t cairn_blob_writer_write_fd(cairn_blob_writer *w, int fd, uint64_t max, cairn_error *err)
{
    if (w->failed)
        return cairn__err(err, w->failed, "blob writer: an earlier write failed");
    uint64_t done = 0;
    while (!max || done < max) {
        int r = writer_slot(w, err);
        if (r < 0)
            return r;
        size_t room = CAIRN__PIPE_SLOT - w->fill;
        if (max && max - done < room)
            room = (size_t)(max - done);
        ssize_t n = read(fd, w->slot + w->fill, room);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return cairn__err(err, -errno, "read the input: %m");
        }
        if (n == 0)
            break;
        w->fill += (size_t)n;
        w->size += (uint64_t)n;
        done += (uint64_t)n;
        if (w->fill == CAIRN__PIPE_SLOT)
            writer_submit(w);
    }
    return (int64_t)done;
}

/* Read fd to its end straight into the writer's slots. */
static int writer_read_fd(cairn_blob_writer *w, int fd, cairn_error *err)
{
    int64_t n = cairn_blob_writer_write_fd(w, fd, 0, err);
    return n < 0 ? (int)n : 0;
}

/* Finish the staged file: digest, checks. On success the staged entry in
 * w->s is ready to publish (or marked present) and w->fd is still open. */
static int writer_finish(cairn_blob_writer *w, cairn_error *err)
{
    if (w->failed)
        return cairn__err(err, w->failed, "blob writer: an earlier write failed");
    int r = writer_flush(w, err);
    if (r < 0)
        return r;
    cairn__sha256_final(w->h, w->s.digest);
    w->s.size = w->size;
    if (w->expected_size >= 0 && w->size != (uint64_t)w->expected_size)
        return cairn__err(err, w->size < (uint64_t)w->expected_size ? CAIRN_E_TRUNCATED
                                                                     : CAIRN_E_MISMATCH,
                          "blob%s%s: got %llu bytes, expected %lld; nothing was stored",
                          w->expected[0] ? " " : "", w->expected,
                          (unsigned long long)w->size, (long long)w->expected_size);
    if (w->expected[0] && strcmp(w->expected, w->s.digest) != 0)
        return cairn__err(err, CAIRN_E_MISMATCH,
                          "blob %s: the data's digest is %s (%llu bytes); nothing was stored",
                          w->expected, w->s.digest, (unsigned long long)w->size);
    r = find_layer(w->st, w->s.digest, NULL, err);
    if (r >= 0)
        w->s.present = true;
    else if (r != -ENOENT)
        return r;
    return 0;
}

static int insert_rows(cairn_state *st, staged *s, size_t n, cairn_error *err)
{
    static const char ins[] = "INSERT INTO blobs(digest, size, media_type, created) "
                              "VALUES (?, ?, ?, ?) ON CONFLICT(digest) DO NOTHING";
    static const char ins_label[] =
        "INSERT INTO blob_labels(digest, key, value, updated) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(digest, key) DO UPDATE SET value = excluded.value, updated = excluded.updated";
    int64_t now = cairn__now();
    int added = 0;
    int r = cairn__tx_begin(st, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        if (!s[i].present) {
            sqlite3_stmt *q;
            r = cairn__stmt(st, 0, ins, &q, err);
            if (r < 0)
                goto fail;
            sqlite3_bind_text(q, 1, s[i].digest, -1, SQLITE_STATIC);
            sqlite3_bind_int64(q, 2, (sqlite3_int64)s[i].size);
            sqlite3_bind_text(q, 3, s[i].media_type ? s[i].media_type : "", -1, SQLITE_STATIC);
            sqlite3_bind_int64(q, 4, now);
            r = cairn__step_done(st, 0, q, err);
            if (r < 0)
                goto fail;
            added += sqlite3_changes(st->layers[0].db) > 0;
        }
        if (!s[i].labels)
            continue;
        for (char **l = s[i].labels; *l; l++) {
            char *eq = strchr(*l, '=');
            sqlite3_stmt *q;
            r = cairn__stmt(st, 0, ins_label, &q, err);
            if (r < 0)
                goto fail;
            sqlite3_bind_text(q, 1, s[i].digest, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 2, *l, (int)(eq - *l), SQLITE_STATIC);
            sqlite3_bind_text(q, 3, eq + 1, -1, SQLITE_STATIC);
            sqlite3_bind_int64(q, 4, cairn__now_ns());
            r = cairn__step_done(st, 0, q, err);
            if (r < 0)
                goto fail;
        }
    }
    r = cairn__tx_commit(st, err);
    if (r < 0)
        return r;
    return added;
fail:
    cairn__tx_rollback(st);
    return r;
}

/* Publish staged files; called with the state lock held shared, so that no
 * deleter runs between the presence check, the rename and the row. A blob
 * already there (here or in a lower) is not published again: its staged copy
 * is dropped. One that was not there is made durable (when not yet synced)
 * and renamed into blobs/sha256; on EEXIST the file there is kept only when
 * it proves to be the blob (left by a crash or a racing writer), else it is
 * quarantined and replaced. */
static int publish_files(cairn_state *st, staged *s, size_t n, cairn_error *err)
{
    int tfd = cairn__tmpfd(st, err);
    if (tfd < 0)
        return tfd;
    int bfd = cairn__layer_blobfd(st, 0, err);
    if (bfd < 0)
        return bfd;
    bool renamed = false;
    for (size_t i = 0; i < n; i++) {
        if (!s[i].tmpname[0])
            continue;
        int r = find_layer(st, s[i].digest, NULL, err);
        if (r < 0 && r != -ENOENT)
            return r;
        s[i].present = r >= 0;
        if (s[i].present) {
            unstage(st, &s[i]);
            continue;
        }
        if (!s[i].synced) {
            r = cairn__fsync_at(tfd, s[i].tmpname);
            if (r < 0)
                return cairn__err(err, r, "blob %s: fsync: %m", s[i].digest);
            s[i].synced = true;
        }
        const char *hex = cairn__digest_hex(s[i].digest);
        r = cairn__rename_noreplace(tfd, s[i].tmpname, bfd, hex);
        /* A file under the name and no row: a crash's leftover (good), a
         * racing writer's (good), or garbage. Trust only what proves
         * itself; a bad one goes to quarantine/ and ours takes its place. */
        for (int tries = 0; r == -EEXIST && tries < 4; tries++) {
            int ok = cairn__file_is(bfd, hex, s[i].size, s[i].digest);
            if (ok == 1)
                break;
            if (ok < 0 && ok != -ENOENT)
                return cairn__err(err, ok, "blob %s: check the file already in %s/blobs/sha256: %m",
                                  s[i].digest, st->path);
            if (ok == 0) {
                ok = cairn__quarantine(st, bfd, hex, "blob", err);
                if (ok < 0 && ok != -ENOENT)
                    return cairn__err_prefix(err, ok, "blob %s: a different file has its name",
                                             s[i].digest);
            }
            r = cairn__rename_noreplace(tfd, s[i].tmpname, bfd, hex);
        }
        if (r == -EEXIST) {
            unlinkat(tfd, s[i].tmpname, 0);
        } else if (r < 0) {
            return cairn__err(err, r, "blob %s: rename into %s/blobs/sha256: %m", s[i].digest,
                              st->path);
        } else {
            renamed = true;
        }
        s[i].tmpname[0] = 0;
    }
    if (renamed && fsync(bfd) < 0)
        return cairn__err(err, -errno, "%s/blobs/sha256: fsync: %m", st->path);
    return 0;
}

int cairn_blob_writer_expect(cairn_blob_writer *w, const char *expected, int64_t expected_size,
                             cairn_error *err)
{
    if (expected) {
        int r = cairn_digest_check(expected, err);
        if (r < 0)
            return r;
        if (w->expected[0] && strcmp(w->expected, expected) != 0)
            return cairn__err(err, CAIRN_E_MISMATCH, "blob writer: expected %s, then %s",
                              w->expected, expected);
        memcpy(w->expected, expected, CAIRN_DIGEST_LEN + 1);
    }
    if (expected_size > 0)
        w->expected_size = expected_size;
    return 0;
}

int cairn_blob_writer_commit(cairn_blob_writer *w, char *out_digest, cairn_error *err)
{
    cairn_state *st = w->st;
    int r = writer_finish(w, err);
    if (r < 0)
        goto out;
    /* Sync outside the lock; a blob that seemed present is synced under it
     * only if it vanished in between (a racing remove). */
    if (!w->s.present) {
        if (fsync(w->fd) < 0) {
            r = cairn__err(err, -errno, "blob %s: fsync: %m", w->s.digest);
            goto out;
        }
        w->s.synced = true;
    }
    r = cairn__lock(st, false, err);
    if (r < 0)
        goto out;
    r = publish_files(st, &w->s, 1, err);
    /* A put of a blob that is there counts as a use, so that a gc running
     * now (which marks recent uses under its lock) keeps it. */
    if (r == 0 && w->s.present)
        r = cairn__usage_mark(st, "blob", w->s.digest, 0, err);
    if (r == 0 && (!w->s.present || w->s.labels))
        r = insert_rows(st, &w->s, 1, err);
    cairn__unlock(st);
    if (r >= 0) {
        r = 0;
        if (out_digest)
            memcpy(out_digest, w->s.digest, CAIRN_DIGEST_LEN + 1);
    }
out:
    w->failed = r < 0 ? r : -EALREADY;
    return r;
}

void cairn_blob_writer_free(cairn_blob_writer *w)
{
    if (!w)
        return;
    if (w->pipe) {
        /* The threads must be done with the hash context before it goes,
         * and with the fd before it is closed (or they close it). */
        if (w->slot)
            cairn__pipe_submit(w->pipe, 0, 0);
        if (w->streaming && w->own_pipe) {
            cairn__pipe_drain(w->pipe, NULL);
        } else if (w->streaming) {
            cairn__pipe_wait_hashed(w->pipe);
            cairn__pipe_handoff(w->pipe);
            w->fd = -1;
        }
        if (w->own_pipe)
            cairn__pipe_free(w->pipe);
    }
    if (w->fd >= 0)
        close(w->fd);
    unstage(w->st, &w->s);
    staged_clear(&w->s);
    cairn__sha256_free(w->h);
    free(w);
}

/* With an expected digest that is already there (and no labels to add), a
 * put need not read or write anything. */
static int already_there(cairn_state *st, const cairn_blob_put_options *opts, char *out_digest,
                         cairn_error *err)
{
    if (!opts || !opts->expected || opts->labels || opts_check(opts, err) < 0)
        return 0;
    int r = find_layer(st, opts->expected, NULL, err);
    if (r < 0)
        return r == -ENOENT ? 0 : r;
    if (out_digest)
        memcpy(out_digest, opts->expected, CAIRN_DIGEST_LEN + 1);
    return 1;
}

int cairn_blob_put_fd(cairn_state *st, int fd, const cairn_blob_put_options *opts,
                      char *out_digest, cairn_error *err)
{
    int r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    r = already_there(st, opts, out_digest, err);
    if (r != 0)
        return r < 0 ? r : 0;
    cairn_blob_writer *w = NULL;
    r = cairn_blob_writer_new(&w, st, opts, err);
    if (r < 0)
        return r;
    r = writer_read_fd(w, fd, err);
    if (r == 0)
        r = cairn_blob_writer_commit(w, out_digest, err);
    cairn_blob_writer_free(w);
    return r;
}

int cairn_blob_put_buf(cairn_state *st, const void *buf, size_t len,
                       const cairn_blob_put_options *opts, char *out_digest, cairn_error *err)
{
    cairn_blob_writer *w = NULL;
    int r = cairn_blob_writer_new(&w, st, opts, err);
    if (r < 0)
        return r;
    r = cairn_blob_writer_write(w, buf, len, err);
    if (r == 0)
        r = cairn_blob_writer_commit(w, out_digest, err);
    cairn_blob_writer_free(w);
    return r;
}

/* ---- batches ---------------------------------------------------------- */

struct cairn_blob_batch {
    cairn_state *st;
    cairn__pipe *pipe; /* shared by its writers, one after the other */
    staged *items;
    size_t n, cap;
};

int cairn_blob_batch_new(cairn_blob_batch **out, cairn_state *st, cairn_error *err)
{
    int r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    cairn_blob_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return cairn__err(err, -ENOMEM, "out of memory");
    b->st = st;
    if (!(b->pipe = cairn__pipe_new())) {
        free(b);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    *out = b;
    return 0;
}

/* Room for one more staged item. */
static int batch_grow(cairn_blob_batch *b, cairn_error *err)
{
    if (b->n < b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap * 2 : 64;
    staged *ni = realloc(b->items, ncap * sizeof(*ni));
    if (!ni)
        return cairn__err(err, -ENOMEM, "out of memory");
    b->items = ni;
    b->cap = ncap;
    return 0;
}

/* Move a finished writer's staged entry into the batch (fd closed, no sync:
 * the batch syncs once). Blobs that seem present keep their staged copy
 * until the commit checks again under the lock. */
static int batch_take(cairn_blob_batch *b, cairn_blob_writer *w, char *out_digest,
                      cairn_error *err)
{
    int r = writer_finish(w, err);
    if (r < 0)
        return r;
    if (batch_grow(b, err) < 0)
        return -ENOMEM;
    b->items[b->n++] = w->s;
    memset(&w->s, 0, sizeof(w->s));
    if (out_digest)
        memcpy(out_digest, b->items[b->n - 1].digest, CAIRN_DIGEST_LEN + 1);
    return 0;
}

int cairn_blob_batch_put_fd(cairn_blob_batch *b, int fd, const cairn_blob_put_options *opts,
                            char *out_digest, cairn_error *err)
{
    cairn_blob_writer *w = NULL;
    int r = writer_new(&w, b->st, b->pipe, opts, err);
    if (r < 0)
        return r;
    r = writer_read_fd(w, fd, err);
    if (r == 0)
        r = batch_take(b, w, out_digest, err);
    cairn_blob_writer_free(w);
    return r;
}

int cairn__blob_batch_adopt(cairn_blob_batch *b, int dirfd, const char *name, int fd,
                            const char *digest, uint64_t size, const char *media_type,
                            cairn_error *err)
{
    cairn_state *st = b->st;
    int r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    if ((r = cairn_digest_check(digest, err)) < 0)
        return r;
    int tfd = cairn__tmpfd(st, err);
    if (tfd < 0)
        return tfd;
    if (batch_grow(b, err) < 0)
        return -ENOMEM;
    staged s = {0};
    if (media_type && !(s.media_type = strdup(media_type)))
        return cairn__err(err, -ENOMEM, "out of memory");
    r = cairn__tmp_name(st, s.tmpname, sizeof(s.tmpname), "blob");
    if (r == 0 && fchmod(fd, 0444) < 0)
        r = -errno;
    if (r == 0 && renameat(dirfd, name, tfd, s.tmpname) < 0)
        r = -errno;
    if (r < 0) {
        free(s.media_type);
        return cairn__err(err, r, "blob %s: stage %s in %s/tmp: %m", digest, name, st->path);
    }
    memcpy(s.digest, digest, CAIRN_DIGEST_LEN + 1);
    s.size = size;
    b->items[b->n++] = s;
    return 0;
}

int cairn_blob_batch_put_buf(cairn_blob_batch *b, const void *buf, size_t len,
                             const cairn_blob_put_options *opts, char *out_digest,
                             cairn_error *err)
{
    cairn_blob_writer *w = NULL;
    int r = writer_new(&w, b->st, b->pipe, opts, err);
    if (r < 0)
        return r;
    r = cairn_blob_writer_write(w, buf, len, err);
    if (r == 0)
        r = batch_take(b, w, out_digest, err);
    cairn_blob_writer_free(w);
    return r;
}

int cairn_blob_batch_commit(cairn_blob_batch *b, cairn_error *err)
{
    cairn_state *st = b->st;
    if (b->n == 0)
        return 0;
    /* The writes still in flight, then one sync for all the staged data,
     * before any of it gets its name. */
    unsigned bad = 0;
    int r = cairn__pipe_drain(b->pipe, &bad);
    if (r < 0) {
        for (size_t i = 0; i < b->n; i++)
            if (b->items[i].stream == bad)
                return cairn__err(err, r, "blob %s: write %s/tmp/%s: %m; nothing was stored",
                                  b->items[i].digest, st->path, b->items[i].tmpname);
        return cairn__err(err, r, "%s/tmp: a write of this batch failed: %m; nothing was stored",
                          st->path);
    }
    int tfd = cairn__tmpfd(st, err);
    if (tfd < 0)
        return tfd;
    if (syncfs(tfd) < 0)
        return cairn__err(err, -errno, "%s: syncfs: %m", st->path);
    for (size_t i = 0; i < b->n; i++)
        b->items[i].synced = true;
    r = cairn__lock(st, false, err);
    if (r < 0)
        return r;
    r = publish_files(st, b->items, b->n, err);
    /* Blobs that were there count as used (one transaction), so that a gc
     * running now keeps them, as for a single put. */
    bool any_present = false;
    for (size_t i = 0; r == 0 && i < b->n; i++)
        any_present |= b->items[i].present;
    if (r == 0 && any_present && (r = cairn__tx_begin(st, err)) == 0) {
        for (size_t i = 0; r == 0 && i < b->n; i++)
            if (b->items[i].present)
                r = cairn__usage_mark(st, "blob", b->items[i].digest, 0, err);
        if (r == 0)
            r = cairn__tx_commit(st, err);
        else
            cairn__tx_rollback(st);
    }
    if (r == 0)
        r = insert_rows(st, b->items, b->n, err);
    cairn__unlock(st);
    if (r >= 0) {
        for (size_t i = 0; i < b->n; i++)
            staged_clear(&b->items[i]);
        b->n = 0;
    }
    return r;
}

void cairn_blob_batch_free(cairn_blob_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        unstage(b->st, &b->items[i]);
        staged_clear(&b->items[i]);
    }
    free(b->items);
    cairn__pipe_free(b->pipe);
    free(b);
}

/* ---- remove and labels ------------------------------------------------ */

int cairn_blob_remove(cairn_state *st, const char *digest, cairn_error *err)
{
    int r = cairn_digest_check(digest, err);
    if (r < 0)
        return r;
    r = cairn__check_writable(st, err);
    if (r < 0)
        return r;
    r = find_layer(st, digest, NULL, err);
    if (r == -ENOENT)
        return cairn__err(err, r, "blob %s: not found", digest);
    if (r < 0)
        return r;
    if (r > 0)
        return cairn__err(err, -EROFS, "blob %s: held by lower state %s, which is read-only",
                          digest, st->layers[r].root);
    int bfd = cairn__layer_blobfd(st, 0, err);
    if (bfd < 0)
        return bfd;
    static const char del[] = "DELETE FROM blobs WHERE digest = ?";
    static const char del_labels[] = "DELETE FROM blob_labels WHERE digest = ?";
    r = cairn__lock(st, true, err);
    if (r < 0)
        return r;
    /* Row first, then the file: a crash in between leaves an unreferenced
     * file (gc removes it), never a row naming a missing file. */
    r = cairn__tx_begin(st, err);
    if (r == 0) {
        sqlite3_stmt *q;
        r = cairn__stmt(st, 0, del, &q, err);
        if (r == 0) {
            sqlite3_bind_text(q, 1, digest, -1, SQLITE_STATIC);
            r = cairn__step_done(st, 0, q, err);
        }
        if (r == 0)
            r = cairn__stmt(st, 0, del_labels, &q, err);
        if (r == 0) {
            sqlite3_bind_text(q, 1, digest, -1, SQLITE_STATIC);
            r = cairn__step_done(st, 0, q, err);
        }
        if (r == 0)
            r = cairn__tx_commit(st, err);
        else
            cairn__tx_rollback(st);
    }
    if (r == 0 && unlinkat(bfd, cairn__digest_hex(digest), 0) < 0 && errno != ENOENT)
        r = cairn__err(err, -errno, "blob %s: unlink: %m", digest);
    cairn__unlock(st);
    return r;
}

int cairn_blob_label_set(cairn_state *st, const char *digest, const char *key, const char *value,
                         cairn_error *err)
{
    int r = cairn_digest_check(digest, err);
    if (r < 0)
        return r;
    if (!key || !*key || strchr(key, '='))
        return cairn__err(err, -EINVAL, "label key '%s': must be non-empty, without '='",
                          key ? key : "");
    r = find_layer(st, digest, NULL, err);
    if (r == -ENOENT)
        return cairn__err(err, r, "blob %s: not found", digest);
    if (r < 0)
        return r;
    static const char sql[] =
        "INSERT INTO blob_labels(digest, key, value, updated) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(digest, key) DO UPDATE SET value = excluded.value, updated = excluded.updated";
    r = cairn__exec_args(st, err, sql, "sssi", digest, key, value, (int64_t)cairn__now_ns());
    return r < 0 ? r : 0;
}

struct labels_ctx {
    cairn_label_fn fn;
    void *ud;
    const char *digest;
    /* the newest row of the key being read across layers */
    char *key, *value;
    bool has_value;
    int64_t updated;
};

static int labels_bind(void *ud, sqlite3_stmt *s)
{
    struct labels_ctx *c = ud;
    sqlite3_bind_text(s, 1, c->digest, -1, SQLITE_STATIC);
    return 0;
}

/* The merge rule of blob_labels (lib/merge.c): the newest write wins, ties
 * broken by (value set, value), so a stack reads what a merge would hold. */
static int labels_row(void *ud, size_t layer, sqlite3_stmt *s, bool first)
{
    struct labels_ctx *c = ud;
    bool has = sqlite3_column_type(s, 1) != SQLITE_NULL;
    int64_t upd = sqlite3_column_int64(s, 2);
    const char *v = cairn__col(s, 1);
    if (!first) {
        if (upd < c->updated)
            return 0;
        if (upd == c->updated && (has < c->has_value ||
                                  (has == c->has_value && strcmp(v, c->value) <= 0)))
            return 0;
    }
    free(c->key);
    free(c->value);
    c->key = strdup(cairn__col(s, 0));
    c->value = strdup(v);
    if (!c->key || !c->value)
        return -ENOMEM;
    c->has_value = has;
    c->updated = upd;
    return 0;
}

static int labels_emit(void *ud)
{
    struct labels_ctx *c = ud;
    if (!c->has_value)
        return 0; /* cleared */
    return c->fn(c->ud, c->key, c->value);
}

int cairn_blob_label_list(cairn_state *st, const char *digest, cairn_label_fn fn, void *userdata,
                          cairn_error *err)
{
    int r = cairn_digest_check(digest, err);
    if (r < 0)
        return r;
    /* Newest across the layers per key, as the merge rule says (a lower can
     * hold a newer write than the top when states are stacked afterwards). */
    static const char sql[] =
        "SELECT key, value, updated FROM blob_labels WHERE digest = ? ORDER BY key";
    struct labels_ctx c = {fn, userdata, digest, NULL, NULL, false, 0};
    r = cairn__union_walk_all(st, sql, labels_bind, labels_row, labels_emit, &c, err);
    free(c.key);
    free(c.value);
    if (r == -ENOMEM)
        return cairn__err(err, r, "out of memory");
    return r;
}
