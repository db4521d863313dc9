/* image-private.h: what the image files share: the source of an import
 * (archive.c: an image layout directory or an archive of one, or a
 * docker-archive of either kind) and the images table (images.c). */
#ifndef CAIRN_IMAGE_PRIVATE_H
#define CAIRN_IMAGE_PRIVATE_H

#include "core/core.h"
#include "image/oci-private.h"

#include <archive.h>

typedef struct arc_entry {
    char name[80];   /* its layout name ("index.json", "oci-layout", "sha256:<hex>"), or "" */
    char *path;      /* the member's path, normalised */
    char *link;      /* a symlink's or hardlink's target as a member path, or NULL */
    int64_t size;
    char *data;      /* cached bytes, or NULL */
    int comp;        /* CAIRN__COMP_* by its first bytes; ARC_COMP_OTHER; ARC_COMP_UNREAD */
    char digest[CAIRN_DIGEST_LEN + 1]; /* a compressed member's outside blobs/: its digest */
} arc_entry;
#define ARC_COMP_OTHER  (-1) /* bzip2, xz: compressed, but no layer type names it */
#define ARC_COMP_UNREAD (-2)

/* A docker-archive (manifest.json) read as a layout: the documents cairn
 * makes of it (a Docker schema 2 manifest per entry, the configs) and where
 * each layer blob is. */
typedef struct docker_doc {
    char digest[CAIRN_DIGEST_LEN + 1];
    char *data;
    size_t len;
} docker_doc;
typedef struct docker_layer {
    char digest[CAIRN_DIGEST_LEN + 1];
    char *path; /* directory: relative to it (its symlinks followed inside it);
                 * archive: the member's path, its links followed */
} docker_layer;

typedef struct source {
    const char *path;
    bool archive;
    int rootfd;      /* layout */
    int blobfd;      /* layout: blobs/sha256, or -1 when missing */
    arc_entry *ents; /* archive */
    size_t n_ents;
    bool docker;     /* a docker-archive, no oci-layout */
    char *docker_index; /* the index.json made of its manifest.json */
    size_t docker_index_len;
    docker_doc *ddocs;
    size_t n_ddocs;
    docker_layer *dlayers;
    size_t n_dlayers;
} source;

CAIRN_INTERNAL void cairn__source_clear(source *s);
CAIRN_INTERNAL const char *cairn__arc_member(const char *path, char buf[80]);
CAIRN_INTERNAL struct archive *cairn__arc_open(const char *path, cairn_error *err);
CAIRN_INTERNAL int cairn__arc_fail(struct archive *a, const char *path, const char *what,
                                   cairn_error *err);
CAIRN_INTERNAL arc_entry *cairn__arc_find(source *s, const char *name);
CAIRN_INTERNAL int cairn__source_open(source *s, const char *path, cairn_error *err);
CAIRN_INTERNAL int cairn__source_read_file(source *s, const char *name, char **out, size_t *len,
                                           cairn_error *err);
CAIRN_INTERNAL int cairn__source_read_blob(source *s, const cairn__oci_desc *d, const char *role,
                                           char **out, size_t *len, cairn_error *err);
/* A layer blob of a directory source, opened without blocking: an fd, or
 * -ENOENT when the source has no such blob, or -errno. */
CAIRN_INTERNAL int cairn__source_open_blob(source *s, const char *digest);
/* Archive: the digest a member stands for (into buf), or NULL. */
CAIRN_INTERNAL const char *cairn__source_member(source *s, const char *path, char buf[80]);
/* Archive: whether it holds the blob. */
CAIRN_INTERNAL bool cairn__source_has_blob(source *s, const char *digest);
/* Where the source's blobs are, for messages: "DIR/blobs/sha256" or the path. */
CAIRN_INTERNAL const char *cairn__source_blobs_where(source *s, char *buf, size_t size);

CAIRN_INTERNAL int cairn__image_snapshot_exists(cairn_state *st, const char *chain_id,
                                                cairn_error *err);
CAIRN_INTERNAL int cairn__image_record(cairn_state *st, const char *name, const char *manifest,
                                       const char *config, const char *top, cairn_error *err);

#endif
