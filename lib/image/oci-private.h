/* oci-private.h: parsing and checking the JSON documents of an OCI image
 * layout (lib/oci.c): oci-layout, index (and Docker manifest lists),
 * manifests (OCI and Docker schema 2) and image configs. */
#ifndef CAIRN_OCI_PRIVATE_H
#define CAIRN_OCI_PRIVATE_H

#include <jansson.h>

#include "core/core.h"

#define CAIRN__MT_OCI_INDEX     "application/vnd.oci.image.index.v1+json"
#define CAIRN__MT_OCI_MANIFEST  "application/vnd.oci.image.manifest.v1+json"
#define CAIRN__MT_OCI_CONFIG    "application/vnd.oci.image.config.v1+json"
#define CAIRN__MT_OCI_LAYER     "application/vnd.oci.image.layer.v1.tar"
#define CAIRN__MT_OCI_LAYER_GZ  "application/vnd.oci.image.layer.v1.tar+gzip"
#define CAIRN__MT_OCI_LAYER_ZST "application/vnd.oci.image.layer.v1.tar+zstd"
#define CAIRN__MT_DOCKER_LIST   "application/vnd.docker.distribution.manifest.list.v2+json"
#define CAIRN__MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define CAIRN__MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define CAIRN__MT_DOCKER_LAYER  "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define CAIRN__MT_DOCKER_LAYER_TAR "application/vnd.docker.image.rootfs.diff.tar"
/* Docker schema 1: refused (no config, so no diff ids to name snapshots by). */
#define CAIRN__MT_DOCKER_V1       "application/vnd.docker.distribution.manifest.v1+json"
#define CAIRN__MT_DOCKER_V1_JWS   "application/vnd.docker.distribution.manifest.v1+prettyjws"

#define CAIRN__ANNOT_REF_NAME "org.opencontainers.image.ref.name"
/* containerd's full image name (`ctr images export`, Docker 25's save). */
#define CAIRN__ANNOT_CTR_NAME "io.containerd.image.name"

/* The largest JSON document (index, manifest, config) read into memory. */
#define CAIRN__OCI_JSON_MAX (4u << 20)

typedef struct cairn__oci_desc {
    char media_type[CAIRN_MEDIA_TYPE_MAX + 1];
    char digest[CAIRN_DIGEST_LEN + 1];
    int64_t size;
    char ref_name[256];   /* the ref.name annotation, or "" */
    char image_name[256]; /* the io.containerd.image.name annotation, or "" */
    bool has_platform;
    char os[32], arch[32], variant[32];
} cairn__oci_desc;

enum { CAIRN__DESC_INDEX, CAIRN__DESC_MANIFEST, CAIRN__DESC_SCHEMA1, CAIRN__DESC_OTHER };
/* What a descriptor of an index points to, by its media type. */
CAIRN_INTERNAL int cairn__oci_desc_kind(const cairn__oci_desc *d);

/* oci-layout: {"imageLayoutVersion": "1.0.0"}. `what` names the file. */
CAIRN_INTERNAL int cairn__oci_check_layout(const char *buf, size_t len, const char *what,
                                           cairn_error *err);

/* An index (or Docker manifest list): its descriptors, malloc'd. */
CAIRN_INTERNAL int cairn__oci_parse_index(const char *buf, size_t len, const char *what,
                                          cairn__oci_desc **out, size_t *out_n, cairn_error *err);

typedef struct cairn__oci_manifest {
    json_t *root;              /* the parsed document (owned) */
    bool docker;               /* Docker schema 2 */
    cairn__oci_desc config;
    cairn__oci_desc *layers;   /* owned */
    size_t n_layers;
} cairn__oci_manifest;
CAIRN_INTERNAL int cairn__oci_parse_manifest(const char *buf, size_t len, const char *what,
                                             cairn__oci_manifest *out, cairn_error *err);
CAIRN_INTERNAL void cairn__oci_manifest_clear(cairn__oci_manifest *m);

typedef struct cairn__oci_config {
    char os[32], arch[32], variant[32];
    char (*diff_ids)[CAIRN_DIGEST_LEN + 1]; /* owned */
    size_t n_diff_ids;
} cairn__oci_config;
CAIRN_INTERNAL int cairn__oci_parse_config(const char *buf, size_t len, const char *what,
                                           cairn__oci_config *out, cairn_error *err);
CAIRN_INTERNAL void cairn__oci_config_clear(cairn__oci_config *c);

/* Compression of a layer blob (cairn/layer.h). */
#include "cairn/layer.h"
#define CAIRN__COMP_NONE CAIRN_COMPRESSION_NONE
#define CAIRN__COMP_GZIP CAIRN_COMPRESSION_GZIP
#define CAIRN__COMP_ZSTD CAIRN_COMPRESSION_ZSTD
/* A layer media type cairn can apply: returns 0 and sets *compression
 * (CAIRN__COMP_*), or CAIRN_E_FORMAT. */
CAIRN_INTERNAL int cairn__oci_layer_type(const char *media_type, int *compression);
/* Why a layer media type is refused, for a message: "" when cairn does not
 * know the type at all. */
CAIRN_INTERNAL const char *cairn__oci_layer_refusal(const char *media_type);
/* Why a Docker schema 1 manifest is refused, for a message. */
#define CAIRN__SCHEMA1_WHY                                                                         \
    "a Docker schema 1 manifest is not supported (it has no image config, so no diff ids to "     \
    "name the layers' snapshots by; Docker deprecated it in 2017): convert it with "               \
    "'skopeo copy --format v2s2'"

/* Chain ids: chain[0] = diff[0], chain[i] = sha256(chain[i-1] + " " + diff[i]). */
CAIRN_INTERNAL void cairn__oci_chain_id(const char *parent, const char *diff_id,
                                        char out[CAIRN_DIGEST_LEN + 1]);

/* This machine's platform, as OCI names it ("linux", "amd64", ""). */
CAIRN_INTERNAL void cairn__oci_host_platform(char os[32], char arch[32], char variant[32]);
/* Parse "os/arch[/variant]". */
CAIRN_INTERNAL int cairn__oci_parse_platform(const char *s, char os[32], char arch[32],
                                             char variant[32], cairn_error *err);

#endif
