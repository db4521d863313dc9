/* image-private.h: what the image files share: the source of an import
 * (archive.c: an image layout directory or an archive of one) and the images
 * table (images.c). */
#ifndef CAIRN_IMAGE_PRIVATE_H
#define CAIRN_IMAGE_PRIVATE_H

#include "core/core.h"
#include "image/oci-private.h"

#include <archive.h>

typedef struct arc_entry {
    char name[80]; /* "index.json", "oci-layout" or a digest */
    int64_t size;
    char *data; /* cached bytes, or NULL */
} arc_entry;

typedef struct source {
    const char *path;
    bool archive;
    int rootfd;      /* layout */
    int blobfd;      /* layout: blobs/sha256, or -1 when missing */
    arc_entry *ents; /* archive */
    size_t n_ents;
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

CAIRN_INTERNAL int cairn__image_snapshot_exists(cairn_state *st, const char *chain_id,
                                                cairn_error *err);
CAIRN_INTERNAL int cairn__image_record(cairn_state *st, const char *name, const char *manifest,
                                       const char *config, const char *top, cairn_error *err);

#endif
