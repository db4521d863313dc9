/* cairn/containerd-import.h: adopting an existing containerd root.
 *
 * A containerd root (its `root` directory: io.containerd.content.v1.content,
 * io.containerd.snapshotter.v1.overlayfs, io.containerd.metadata.v1.bolt)
 * is read, never written, with containerd stopped, and what it holds goes
 * into a cairn state:
 *   - every blob of its content store, hardlinked (copied where it cannot
 *     be: another filesystem), each hashed against its name first, with
 *     containerd's labels of it;
 *   - every committed snapshot of the overlayfs snapshotter, its `fs`
 *     hardlinked into snapshots/<chainid>: a layer of an image by the
 *     ChainID of the image config's diff ids, once its tree is proven to
 *     be that layer (the digest of its canonical tar is the DiffID, or the
 *     layer blob, read beside the tree, makes exactly the tree's entries:
 *     type, mode, owner, mtime, size, data, link target, device, xattrs,
 *     whiteouts and opaque directories; a layer that comparison does not
 *     model is applied by cairn in tmp/ and the canonical tars compared);
 *     any other
 *     committed snapshot by a DiffID recomputed from its tree, as cairn's
 *     own commit names it. A snapshot that does not verify is refused and
 *     reported; an image layer so refused is applied from its layer blob
 *     instead when the blob is there (reported, and counted as copied);
 *   - every image, under its name (prefixed "NAMESPACE/" for a namespace
 *     other than "default" unless opts->ns selects one), its labels set on
 *     its manifest blob, once all its blobs and snapshots are in.
 * Active snapshots and views (containers' writable layers) are left out and
 * counted. Data first: a row names only what is in place; a failed or
 * killed import leaves valid objects and no row naming a missing one.
 */
#ifndef CAIRN_CONTAINERD_IMPORT_H
#define CAIRN_CONTAINERD_IMPORT_H

#include <stdint.h>
#include <cairn/error.h>
#include <cairn/state.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Something left out, as it is met: `kind` "blob", "snapshot", "image";
 * `name` its digest, containerd key or image name; `why` a sentence. */
typedef void (*cairn_containerd_report_fn)(void *userdata, const char *kind, const char *name,
                                           const char *why);

typedef struct cairn_containerd_import_options {
    unsigned version;   /* CAIRN_CONTAINERD_IMPORT_OPTIONS_VERSION */
    const char *ns;     /* only this namespace, its images under their own names; NULL: all */
    cairn_containerd_report_fn report; /* or NULL */
    void *report_userdata;
    /* Version 2: objects done (blobs, then committed snapshots, imported or
     * left out) of those the root holds; or NULL. */
    cairn_progress_fn progress;
    void *progress_userdata;
} cairn_containerd_import_options;
#define CAIRN_CONTAINERD_IMPORT_OPTIONS_VERSION 2
#define CAIRN_CONTAINERD_IMPORT_OPTIONS_INIT {.version = CAIRN_CONTAINERD_IMPORT_OPTIONS_VERSION}

typedef struct cairn_containerd_import_stats {
    uint64_t blobs;            /* blobs of the content store */
    uint64_t blobs_present;    /* already in the state (or a lower): nothing done */
    uint64_t blobs_refused;    /* missing, or bytes that do not match their name */
    uint64_t snapshots;        /* committed snapshots met */
    uint64_t snapshots_present;
    uint64_t snapshots_refused;
    uint64_t snapshots_unpacked; /* refused, and applied from their layer blob instead */
    uint64_t snapshots_skipped;  /* active snapshots and views: not imported */
    uint64_t images;           /* recorded */
    uint64_t images_refused;   /* left out (a blob or layer missing or refused) */
    uint64_t files_linked;     /* files hardlinked into the state */
    uint64_t files_copied;     /* files copied (another filesystem) */
    uint64_t bytes_copied;     /* bytes of them, and of layers applied from blobs */
    uint64_t bytes_verified;   /* bytes hashed to prove blobs */
    uint64_t layers_compared;  /* layer blobs read beside a tree to prove it, nothing written */
    uint64_t layers_applied;   /* layer blobs applied in tmp/ to prove a tree (then removed):
                                * those the comparison does not model */
} cairn_containerd_import_stats;

/* Import the containerd root `root` into `st`. Refused with CAIRN_E_BUSY
 * while a containerd holds the root (bbolt's lock on meta.db or on the
 * snapshotter's metadata.db), with CAIRN_E_FORMAT or CAIRN_E_CORRUPT (a
 * message naming the file and page) when its databases cannot be read;
 * nothing is imported then. Objects that do not verify are reported and
 * left out, and the import goes on: the return is then 1 (0: everything
 * was imported). `stats` (may be NULL) is filled either way. */
CAIRN_EXPORT int cairn_containerd_import(cairn_state *st, const char *root,
                                         const cairn_containerd_import_options *opts,
                                         cairn_containerd_import_stats *stats, cairn_error *err);

#ifdef __cplusplus
}
#endif
#endif
