/* cairn/layer.h: layer tarballs in and out of snapshots.
 *
 * A layer is a filesystem diff as a tar stream in the OCI form: whiteouts are
 * empty files `.wh.NAME`, an opaque directory holds `.wh..wh..opq`. Its
 * DiffID is the sha256 of the uncompressed tar. Importing one applies it over
 * a parent snapshot as a new committed snapshot named by its ChainID (see
 * cairn/snapshot.h); exporting one writes a snapshot's own diff (not its
 * parents') as the canonical tar cairn computes DiffIDs from, optionally
 * compressed.
 *
 * Hostile layers (paths escaping the root, links out of the layer, device
 * nodes when not privileged, malformed or truncated streams, a digest other
 * than the expected one) are refused with CAIRN_E_UNSAFE, CAIRN_E_FORMAT,
 * CAIRN_E_TRUNCATED or CAIRN_E_MISMATCH; the state is then as it was.
 */
#ifndef CAIRN_LAYER_H
#define CAIRN_LAYER_H

#include <stdint.h>
#include <cairn/error.h>
#include <cairn/state.h>
#include <cairn/store.h>

#ifdef __cplusplus
extern "C" {
#endif

/* DEFAULT (0, what a zeroed options struct says) is gzip. */
enum {
    CAIRN_COMPRESSION_DEFAULT = 0,
    CAIRN_COMPRESSION_NONE = 1,
    CAIRN_COMPRESSION_GZIP = 2,
    CAIRN_COMPRESSION_ZSTD = 3,
};

typedef struct cairn_layer_import_options {
    unsigned version;             /* CAIRN_LAYER_IMPORT_OPTIONS_VERSION */
    const char *expected_diff_id; /* refuse (CAIRN_E_MISMATCH) when the uncompressed digest
                                   * differs, or NULL */
    cairn_progress_fn progress;   /* bytes of input read (total 0: unknown) */
    void *progress_userdata;
} cairn_layer_import_options;
#define CAIRN_LAYER_IMPORT_OPTIONS_VERSION 1
#define CAIRN_LAYER_IMPORT_OPTIONS_INIT {.version = CAIRN_LAYER_IMPORT_OPTIONS_VERSION}

/* Apply a layer tarball (uncompressed, gzip or zstd, detected) read from fd
 * over `parent` (a chain id, or NULL for a base) as a new committed snapshot.
 * out_chain_id and out_diff_id (CAIRN_DIGEST_LEN + 1 each, may be NULL)
 * receive its names. If the snapshot exists already (in this state or a
 * lower) nothing is written and it succeeds. The fd is read to the end of the
 * stream and not closed. -ENOENT when the parent is not there. */
CAIRN_EXPORT int cairn_layer_import(cairn_state *st, const char *parent, int fd,
                                    const cairn_layer_import_options *opts, char *out_chain_id,
                                    char *out_diff_id, cairn_error *err);

/* Write a snapshot's diff (not its parents) as a layer tarball to fd. Its
 * uncompressed digest equals the snapshot's DiffID. out_digest
 * (CAIRN_DIGEST_LEN + 1, may be NULL) receives the digest of the bytes
 * written (compressed), out_size their count (may be NULL).
 * A snapshot imported from a tar that was not in cairn's canonical form (its
 * DiffID is the digest of bytes cairn cannot reproduce) is refused with
 * CAIRN_E_FORMAT before anything is written: export the original layer blob. */
CAIRN_EXPORT int cairn_layer_export(cairn_state *st, const char *chain_id, int fd, int compression,
                                    char *out_digest, uint64_t *out_size, cairn_error *err);

#ifdef __cplusplus
}
#endif
#endif
