/* cairn/image.h: OCI images: import from an image layout, list, remove, export.
 *
 * An image is a name bound to a manifest. Importing one stores its index,
 * manifests, config and layer blobs in the content store (each checked
 * against the digest and size its descriptor names), applies its layers as
 * snapshots named by their chain ids (each checked against the config's
 * diff id), and only then records the name: a failed import records nothing
 * (the blobs and snapshots it had already made stay, they are valid content).
 *
 * The `images` table is a last-writer-wins register: name -> manifest digest,
 * config digest and the chain id of the top snapshot. Lookups read the
 * state and its lowers and the newest row of a name wins, wherever it is
 * (by its time, then by its digests: the row a merge of the layers would
 * keep); removing a name writes a tombstone in this state, which hides the
 * older rows of the lowers.
 */
#ifndef CAIRN_IMAGE_H
#define CAIRN_IMAGE_H

#include <stdint.h>
#include <cairn/error.h>
#include <cairn/layer.h>
#include <cairn/state.h>
#include <cairn/store.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_IMAGE_NAME_MAX 255

typedef struct cairn_image_info {
    char name[CAIRN_IMAGE_NAME_MAX + 1];
    char manifest[CAIRN_DIGEST_LEN + 1]; /* digest of the manifest blob */
    char config[CAIRN_DIGEST_LEN + 1];   /* digest of the config blob */
    char top[CAIRN_DIGEST_LEN + 1];      /* chain id of the top snapshot; "" for no layers */
    unsigned layers;                     /* number of layers (filled by import and get) */
    uint64_t size;                       /* compressed bytes of the layers (import and get) */
    int64_t updated;                     /* unix seconds of the last write */
    int lower;                           /* 0: this state's row; n > 0: the n-th lower's */
} cairn_image_info;

/* Check an image name: 1..CAIRN_IMAGE_NAME_MAX printable ASCII characters
 * without spaces. Returns 0 or -EINVAL with a message. */
CAIRN_EXPORT int cairn_image_name_check(const char *name, cairn_error *err);

/* Where an import is. `phase`: "blobs" while blobs are copied into the
 * store, "layers" while layers are applied. Bytes are of the input. */
typedef struct cairn_image_import_options {
    unsigned version;        /* CAIRN_IMAGE_IMPORT_OPTIONS_VERSION */
    const char *name;        /* the name to record; NULL: the index's names
                              * (io.containerd.image.name, else
                              * org.opencontainers.image.ref.name) */
    const char *platform;    /* "os/arch[/variant]"; NULL: this machine's */
    unsigned jobs;           /* 1: one thread does everything; more: decompression and the
                              * copy of blobs run in threads beside the applying of layers;
                              * 0: threads when there is more than one CPU */
    /* Bytes of blobs read of the total (copied into the store, and applied),
     * or NULL. With threads it is called from them, one call at a time. */
    cairn_progress_fn progress;
    void *progress_userdata;
} cairn_image_import_options;
#define CAIRN_IMAGE_IMPORT_OPTIONS_VERSION 1
#define CAIRN_IMAGE_IMPORT_OPTIONS_INIT {.version = CAIRN_IMAGE_IMPORT_OPTIONS_VERSION}

/* Import the image at `path`: an OCI image layout directory, or an
 * oci-archive (a tar of one, uncompressed), or a docker-archive as a tar or
 * a directory (`docker save`, skopeo's and podman's docker-archive:; its
 * layers at any path manifest.json names, the images named by its
 * RepoTags), read as the Docker schema 2 manifests cairn makes of it. `path` may be PATH:REF, read as
 * skopeo's oci: transport reads it: split at the first colon (REF may hold
 * colons and slashes, example.com/team/app:1.0; PATH may not hold a colon,
 * unless it exists as a whole and takes no REF). REF names the image by its
 * org.opencontainers.image.ref.name or io.containerd.image.name annotation.
 * The image is recorded under opts->name, else under every name the index
 * gives its manifest (containerd's full name in preference to ref.name);
 * `out` names the first. Multi-platform indexes: the manifest for
 * opts->platform is picked. Blobs already present are not read
 * again, layers whose snapshot exists are not applied again. On success
 * `out` (may be NULL) describes the recorded image. Errors name the object
 * at fault (file, blob digest, layer) and record no image:
 *   CAIRN_E_FORMAT     malformed or unsupported layout, index, manifest, config
 *                      (the message says why: Docker schema 1, a foreign or
 *                      non-distributable layer, an unknown media type)
 *   CAIRN_E_MISMATCH   a blob's digest or size, or a layer's diff id, differs
 *   CAIRN_E_TRUNCATED  the archive or a blob ends early
 *   -ENOENT            a blob the image needs is missing; no manifest for
 *                      the platform; no name given and none annotated */
CAIRN_EXPORT int cairn_image_import(cairn_state *st, const char *path,
                                    const cairn_image_import_options *opts, cairn_image_info *out,
                                    cairn_error *err);

/* Look an image up by name. -ENOENT when there is none. */
CAIRN_EXPORT int cairn_image_get(cairn_state *st, const char *name, cairn_image_info *out,
                                 cairn_error *err);

/* Call `fn` for each image, sorted by name, the union over the lowers (the
 * newest row of a name wins, as in cairn_image_get). A non-zero return from fn stops the walk and
 * is returned. `layers` and `size` are not filled (0). */
typedef int (*cairn_image_fn)(void *userdata, const cairn_image_info *info);
CAIRN_EXPORT int cairn_image_list(cairn_state *st, cairn_image_fn fn, void *userdata,
                                  cairn_error *err);

/* Remove the name (its blobs and snapshots stay until garbage collection).
 * -ENOENT when there is no such image. */
CAIRN_EXPORT int cairn_image_remove(cairn_state *st, const char *name, cairn_error *err);

enum {
    CAIRN_IMAGE_FORMAT_OCI = 0,         /* an OCI image layout directory */
    CAIRN_IMAGE_FORMAT_OCI_ARCHIVE = 1, /* a tar of one */
};

typedef struct cairn_image_export_options {
    unsigned version;  /* CAIRN_IMAGE_EXPORT_OPTIONS_VERSION (1 is still taken) */
    int format;        /* CAIRN_IMAGE_FORMAT_* */
    int compression;   /* layers made anew: CAIRN_COMPRESSION_* (0: gzip) */
    const char *ref;   /* the ref.name annotation in index.json; NULL: the image's name */
    cairn_progress_fn progress; /* bytes written of the total, or NULL */
    void *progress_userdata;
    /* version 2: */
    int recompress;    /* non-zero: also make anew the layers whose blob is in another
                        * compression than `compression` */
} cairn_image_export_options;
#define CAIRN_IMAGE_EXPORT_OPTIONS_VERSION 2
#define CAIRN_IMAGE_EXPORT_OPTIONS_INIT {.version = CAIRN_IMAGE_EXPORT_OPTIONS_VERSION}

/* Write the image as an OCI image layout at `dest`: a directory that must be
 * missing or an empty directory (replaced), or with
 * CAIRN_IMAGE_FORMAT_OCI_ARCHIVE a tar file that must not exist, holding a
 * manifest.json for `docker load` too. It is built beside `dest` and renamed
 * into place when complete: a failed export leaves nothing there. Layers
 * are the original blobs when the store still has them (with `recompress`,
 * only those already in `compression`; the others are decompressed and
 * compressed as asked); a layer whose blob is gone is made again from its
 * snapshot. Either way the diff ids stay, and the manifest is rewritten to
 * name the new blobs (a Docker manifest with zstd layers becomes an OCI
 * one). */
CAIRN_EXPORT int cairn_image_export(cairn_state *st, const char *name, const char *dest,
                                    const cairn_image_export_options *opts, cairn_error *err);

#ifdef __cplusplus
}
#endif
#endif
