/* cairn/store.h: the content store of blobs.
 *
 * A blob is a sequence of bytes named by the SHA-256 of its content, kept at
 * blobs/sha256/<hex> like an OCI image layout. Ingest is data first,
 * metadata second: the bytes are staged under tmp/, hashed, compared with an
 * expected digest when one is given, made durable and renamed into place
 * before a row names them. Ingesting a blob that is already there writes
 * nothing and succeeds.
 *
 * Digests are strings "sha256:<64 lowercase hex>" (CAIRN_DIGEST_LEN chars).
 * Lookups fall through the state's lower states.
 */
#ifndef CAIRN_STORE_H
#define CAIRN_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <cairn/error.h>
#include <cairn/state.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_DIGEST_LEN 71 /* strlen("sha256:") + 64 */
#define CAIRN_MEDIA_TYPE_MAX 255

/* Check that `digest` is "sha256:" and 64 lowercase hex characters.
 * Returns 0, or CAIRN_E_DIGEST with a message saying what is wrong. */
CAIRN_EXPORT int cairn_digest_check(const char *digest, cairn_error *err);

typedef struct cairn_blob_put_options {
    unsigned version;           /* CAIRN_BLOB_PUT_OPTIONS_VERSION */
    const char *expected;       /* digest the data must have, or NULL */
    const char *media_type;     /* recorded with the blob, or NULL */
    const char *const *labels;  /* NULL-terminated "key=value" strings, or NULL */
    int64_t expected_size;      /* bytes; 0 (or < 0) when unknown; else a shorter stream is
                                 * truncated, a longer one a mismatch */
} cairn_blob_put_options;
#define CAIRN_BLOB_PUT_OPTIONS_VERSION 1
#define CAIRN_BLOB_PUT_OPTIONS_INIT {.version = CAIRN_BLOB_PUT_OPTIONS_VERSION}

/* Ingest `len` bytes. `out_digest` (CAIRN_DIGEST_LEN + 1 bytes, may be NULL)
 * receives the digest. With opts->expected set, data of another digest is
 * refused with CAIRN_E_MISMATCH and nothing is stored. */
CAIRN_EXPORT int cairn_blob_put_buf(cairn_state *st, const void *buf, size_t len,
                                    const cairn_blob_put_options *opts, char *out_digest,
                                    cairn_error *err);

/* Ingest everything readable from `fd` (read to its end; not closed). When
 * opts->expected names a blob that is already there and no labels are given,
 * nothing is read: the content is known by its name. */
CAIRN_EXPORT int cairn_blob_put_fd(cairn_state *st, int fd, const cairn_blob_put_options *opts,
                                   char *out_digest, cairn_error *err);

/* A streaming writer: new, write any number of times, then commit or free.
 * Freeing a writer that was not committed discards the data. */
typedef struct cairn_blob_writer cairn_blob_writer;
CAIRN_EXPORT int cairn_blob_writer_new(cairn_blob_writer **out, cairn_state *st,
                                       const cairn_blob_put_options *opts, cairn_error *err);
CAIRN_EXPORT int cairn_blob_writer_write(cairn_blob_writer *w, const void *buf, size_t len,
                                         cairn_error *err);
/* Read up to `max` bytes (0: no limit) from `fd` into the writer, straight
 * into its staging buffers (no copy through a buffer of the caller's).
 * Returns the number of bytes read, 0 at the end of the input, or < 0. */
CAIRN_EXPORT int64_t cairn_blob_writer_write_fd(cairn_blob_writer *w, int fd, uint64_t max,
                                                cairn_error *err);
/* Give the writer the digest (may be NULL) and size (<= 0: unknown) its
 * data must have, when they are known only at the end (as for containerd's
 * and the OCI distribution's writers): checked at commit like
 * opts->expected. A digest other than one given earlier: CAIRN_E_MISMATCH. */
CAIRN_EXPORT int cairn_blob_writer_expect(cairn_blob_writer *w, const char *expected,
                                          int64_t expected_size, cairn_error *err);
CAIRN_EXPORT int cairn_blob_writer_commit(cairn_blob_writer *w, char *out_digest,
                                          cairn_error *err);
CAIRN_EXPORT void cairn_blob_writer_free(cairn_blob_writer *w);

/* A batch: many blobs staged, then made durable with one filesystem sync and
 * recorded in one transaction by cairn_blob_batch_commit(). Digests returned
 * by cairn_blob_batch_put_fd() are valid, but the blobs are visible only once
 * the batch commits. Freeing an uncommitted batch discards what it staged. */
typedef struct cairn_blob_batch cairn_blob_batch;
CAIRN_EXPORT int cairn_blob_batch_new(cairn_blob_batch **out, cairn_state *st, cairn_error *err);
CAIRN_EXPORT int cairn_blob_batch_put_fd(cairn_blob_batch *b, int fd,
                                         const cairn_blob_put_options *opts, char *out_digest,
                                         cairn_error *err);
CAIRN_EXPORT int cairn_blob_batch_put_buf(cairn_blob_batch *b, const void *buf, size_t len,
                                          const cairn_blob_put_options *opts, char *out_digest,
                                          cairn_error *err);
/* Returns the number of blobs that were new to the state. */
CAIRN_EXPORT int cairn_blob_batch_commit(cairn_blob_batch *b, cairn_error *err);
CAIRN_EXPORT void cairn_blob_batch_free(cairn_blob_batch *b);

typedef struct cairn_blob_info {
    char digest[CAIRN_DIGEST_LEN + 1];
    char media_type[CAIRN_MEDIA_TYPE_MAX + 1]; /* "" when none */
    uint64_t size;
    int64_t created; /* unix seconds */
    int lower;       /* 0: in this state; n > 0: found in the n-th lower */
} cairn_blob_info;

/* 1 when the blob is there (here or in a lower), 0 when not, < 0 on error. */
CAIRN_EXPORT int cairn_blob_exists(cairn_state *st, const char *digest, cairn_error *err);

/* -ENOENT when the blob is not there. */
CAIRN_EXPORT int cairn_blob_stat(cairn_state *st, const char *digest, cairn_blob_info *out,
                                 cairn_error *err);

/* Open the blob read-only; *out_fd is the caller's to close. With `verify`,
 * the bytes are hashed first and a mismatch fails with CAIRN_E_CORRUPT. */
CAIRN_EXPORT int cairn_blob_open(cairn_state *st, const char *digest, int verify, int *out_fd,
                                 cairn_error *err);

/* Read the whole blob into a malloc'd buffer (the caller frees it),
 * verifying its digest. */
CAIRN_EXPORT int cairn_blob_read(cairn_state *st, const char *digest, void **out_buf,
                                 size_t *out_len, cairn_error *err);

/* Call `fn` for each blob, optionally only those of one media type, sorted
 * by digest, the union over the lowers. A non-zero return from `fn` stops the
 * walk and is returned. */
typedef int (*cairn_blob_fn)(void *userdata, const cairn_blob_info *info);
CAIRN_EXPORT int cairn_blob_list(cairn_state *st, const char *media_type, cairn_blob_fn fn,
                                 void *userdata, cairn_error *err);

/* Remove a blob of this state (row first, then file). A blob that only a
 * lower holds cannot be removed: -EROFS. -ENOENT when it is not there. */
CAIRN_EXPORT int cairn_blob_remove(cairn_state *st, const char *digest, cairn_error *err);

/* Set (value != NULL) or clear (value == NULL) a label on a blob. */
CAIRN_EXPORT int cairn_blob_label_set(cairn_state *st, const char *digest, const char *key,
                                      const char *value, cairn_error *err);
typedef int (*cairn_label_fn)(void *userdata, const char *key, const char *value);
CAIRN_EXPORT int cairn_blob_label_list(cairn_state *st, const char *digest, cairn_label_fn fn,
                                       void *userdata, cairn_error *err);

#ifdef __cplusplus
}
#endif
#endif
