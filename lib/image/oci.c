/* oci.c: the JSON documents of an OCI image layout, parsed and checked.
 *
 * Everything here is pure: bytes in, structs out, no state. Each document is
 * checked for what cairn relies on (schema version, media types, digests,
 * sizes, the number of diff ids); fields cairn does not use are ignored, as
 * the image spec asks. Every Docker v2 schema 2 type is accepted beside
 * OCI's (manifest list, manifest, config, layers plain and gzip). Refused,
 * each with its reason in the message: Docker schema 1 manifests (no config,
 * so no diff ids), foreign and non-distributable layers (not shipped with the
 * image), encrypted layers. Messages start with `what`, the caller's name for
 * the document (a path or a blob digest).
 */
#include "image/oci-private.h"

#include <sys/utsname.h>

static int parse_json(const char *buf, size_t len, const char *what, json_t **out,
                      cairn_error *err)
{
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return cairn__err(err, CAIRN_E_FORMAT, "%s: malformed JSON at line %d column %d: %s",
                          what, je.line, je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return cairn__err(err, CAIRN_E_FORMAT, "%s: not a JSON object", what);
    }
    *out = root;
    return 0;
}

/* An optional string member: "" when absent; CAIRN_E_FORMAT when of another type. */
static int get_str(json_t *o, const char *key, const char *what, char *out, size_t size,
                   bool required, cairn_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!v) {
        if (required)
            return cairn__err(err, CAIRN_E_FORMAT, "%s: no \"%s\"", what, key);
        out[0] = 0;
        return 0;
    }
    if (!json_is_string(v))
        return cairn__err(err, CAIRN_E_FORMAT, "%s: \"%s\" is not a string", what, key);
    if (json_string_length(v) >= size)
        return cairn__err(err, CAIRN_E_FORMAT, "%s: \"%s\" is too long (%zu bytes)", what, key,
                          json_string_length(v));
    if (strlen(json_string_value(v)) != json_string_length(v))
        return cairn__err(err, CAIRN_E_FORMAT, "%s: \"%s\" holds a NUL character", what, key);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int check_schema_version(json_t *root, const char *what, cairn_error *err)
{
    json_t *v = json_object_get(root, "schemaVersion");
    if (!v)
        return cairn__err(err, CAIRN_E_FORMAT, "%s: no \"schemaVersion\"", what);
    if (!json_is_integer(v) || json_integer_value(v) != 2)
        return cairn__err(err, CAIRN_E_FORMAT, "%s: \"schemaVersion\" is not 2", what);
    return 0;
}

static int check_digest(const char *digest, const char *what, cairn_error *err)
{
    cairn_error e = {0};
    int r = cairn_digest_check(digest, &e);
    if (r < 0)
        return cairn__err(err, r, "%s: %s", what, e.message);
    return 0;
}

/* A descriptor: mediaType, digest, size, and optionally annotations and platform. */
static int parse_desc(json_t *o, const char *what, cairn__oci_desc *d, cairn_error *err)
{
    memset(d, 0, sizeof(*d));
    if (!json_is_object(o))
        return cairn__err(err, CAIRN_E_FORMAT, "%s: not a JSON object", what);
    int r = get_str(o, "mediaType", what, d->media_type, sizeof(d->media_type), false, err);
    if (r < 0)
        return r;
    json_t *dg = json_object_get(o, "digest");
    if (!json_is_string(dg))
        return cairn__err(err, CAIRN_E_FORMAT, "%s: \"digest\" is %s", what,
                          dg ? "not a string" : "missing");
    r = check_digest(json_string_value(dg), what, err);
    if (r < 0)
        return r;
    memcpy(d->digest, json_string_value(dg), CAIRN_DIGEST_LEN + 1);
    json_t *sz = json_object_get(o, "size");
    if (!sz)
        return cairn__err(err, CAIRN_E_FORMAT, "%s: no \"size\"", what);
    if (!json_is_integer(sz) || json_integer_value(sz) < 0)
        return cairn__err(err, CAIRN_E_FORMAT, "%s: \"size\" is not a non-negative integer",
                          what);
    d->size = (int64_t)json_integer_value(sz);
    json_t *ann = json_object_get(o, "annotations");
    if (ann) {
        if (!json_is_object(ann))
            return cairn__err(err, CAIRN_E_FORMAT, "%s: \"annotations\" is not an object", what);
        r = get_str(ann, CAIRN__ANNOT_REF_NAME, what, d->ref_name, sizeof(d->ref_name), false,
                    err);
        if (r == 0)
            r = get_str(ann, CAIRN__ANNOT_CTR_NAME, what, d->image_name, sizeof(d->image_name),
                        false, err);
        if (r < 0)
            return r;
    }
    json_t *pl = json_object_get(o, "platform");
    if (pl) {
        if (!json_is_object(pl))
            return cairn__err(err, CAIRN_E_FORMAT, "%s: \"platform\" is not an object", what);
        if ((r = get_str(pl, "os", what, d->os, sizeof(d->os), true, err)) < 0 ||
            (r = get_str(pl, "architecture", what, d->arch, sizeof(d->arch), true, err)) < 0 ||
            (r = get_str(pl, "variant", what, d->variant, sizeof(d->variant), false, err)) < 0)
            return r;
        d->has_platform = true;
    }
    return 0;
}

int cairn__oci_desc_kind(const cairn__oci_desc *d)
{
    if (!strcmp(d->media_type, CAIRN__MT_OCI_INDEX) || !strcmp(d->media_type, CAIRN__MT_DOCKER_LIST))
        return CAIRN__DESC_INDEX;
    if (!strcmp(d->media_type, CAIRN__MT_OCI_MANIFEST) ||
        !strcmp(d->media_type, CAIRN__MT_DOCKER_MANIFEST))
        return CAIRN__DESC_MANIFEST;
    if (!strcmp(d->media_type, CAIRN__MT_DOCKER_V1) || !strcmp(d->media_type, CAIRN__MT_DOCKER_V1_JWS))
        return CAIRN__DESC_SCHEMA1;
    return CAIRN__DESC_OTHER;
}

int cairn__oci_check_layout(const char *buf, size_t len, const char *what, cairn_error *err)
{
    json_t *root = NULL;
    int r = parse_json(buf, len, what, &root, err);
    if (r < 0)
        return r;
    char v[32];
    r = get_str(root, "imageLayoutVersion", what, v, sizeof(v), true, err);
    json_decref(root);
    if (r < 0)
        return r;
    /* 1.x is this layout; a later major version may lay blobs out otherwise. */
    if (strncmp(v, "1.", 2) != 0)
        return cairn__err(err, CAIRN_E_FORMAT,
                          "%s: image layout version \"%s\" is not supported (only 1.x)", what, v);
    return 0;
}

int cairn__oci_parse_index(const char *buf, size_t len, const char *what, cairn__oci_desc **out,
                           size_t *out_n, cairn_error *err)
{
    json_t *root = NULL;
    int r = parse_json(buf, len, what, &root, err);
    if (r < 0)
        return r;
    char mt[CAIRN_MEDIA_TYPE_MAX + 1];
    cairn__oci_desc *ds = NULL;
    size_t n = 0;
    if ((r = check_schema_version(root, what, err)) < 0 ||
        (r = get_str(root, "mediaType", what, mt, sizeof(mt), false, err)) < 0)
        goto out;
    if (mt[0] && strcmp(mt, CAIRN__MT_OCI_INDEX) && strcmp(mt, CAIRN__MT_DOCKER_LIST)) {
        r = cairn__err(err, CAIRN_E_FORMAT, "%s: media type \"%s\" is not an image index", what,
                       mt);
        goto out;
    }
    json_t *ms = json_object_get(root, "manifests");
    if (!json_is_array(ms)) {
        r = cairn__err(err, CAIRN_E_FORMAT, "%s: \"manifests\" is %s", what,
                       ms ? "not an array" : "missing");
        goto out;
    }
    n = json_array_size(ms);
    ds = calloc(n ? n : 1, sizeof(*ds));
    if (!ds) {
        r = cairn__err(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char w[512];
        snprintf(w, sizeof(w), "%s: manifests[%zu]", what, i);
        r = parse_desc(json_array_get(ms, i), w, &ds[i], err);
        if (r < 0)
            goto out;
    }
    *out = steal_pointer(&ds);
    *out_n = n;
    r = 0;
out:
    free(ds);
    json_decref(root);
    return r;
}

void cairn__oci_manifest_clear(cairn__oci_manifest *m)
{
    json_decref(m->root);
    free(m->layers);
    memset(m, 0, sizeof(*m));
}

int cairn__oci_parse_manifest(const char *buf, size_t len, const char *what,
                              cairn__oci_manifest *out, cairn_error *err)
{
    cairn__oci_manifest m = {0};
    int r = parse_json(buf, len, what, &m.root, err);
    if (r < 0)
        return r;
    char mt[CAIRN_MEDIA_TYPE_MAX + 1];
    json_t *sv = json_object_get(m.root, "schemaVersion");
    if (json_is_integer(sv) && json_integer_value(sv) == 1) {
        r = cairn__err(err, CAIRN_E_FORMAT, "%s: %s", what, CAIRN__SCHEMA1_WHY);
        goto fail;
    }
    if ((r = check_schema_version(m.root, what, err)) < 0 ||
        (r = get_str(m.root, "mediaType", what, mt, sizeof(mt), false, err)) < 0)
        goto fail;
    if (!strcmp(mt, CAIRN__MT_DOCKER_MANIFEST)) {
        m.docker = true;
    } else if (mt[0] && strcmp(mt, CAIRN__MT_OCI_MANIFEST)) {
        r = cairn__err(err, CAIRN_E_FORMAT, "%s: media type \"%s\" is not an image manifest",
                       what, mt);
        goto fail;
    }
    char w[512];
    snprintf(w, sizeof(w), "%s: config", what);
    json_t *cfg = json_object_get(m.root, "config");
    if (!cfg) {
        r = cairn__err(err, CAIRN_E_FORMAT, "%s: no \"config\"", what);
        goto fail;
    }
    r = parse_desc(cfg, w, &m.config, err);
    if (r < 0)
        goto fail;
    if (m.config.media_type[0] && strcmp(m.config.media_type, CAIRN__MT_OCI_CONFIG) &&
        strcmp(m.config.media_type, CAIRN__MT_DOCKER_CONFIG)) {
        r = cairn__err(err, CAIRN_E_FORMAT,
                       "%s: config media type \"%s\" is not an image config (an artifact?)", what,
                       m.config.media_type);
        goto fail;
    }
    json_t *ls = json_object_get(m.root, "layers");
    if (!json_is_array(ls)) {
        r = cairn__err(err, CAIRN_E_FORMAT, "%s: \"layers\" is %s", what,
                       ls ? "not an array" : "missing");
        goto fail;
    }
    m.n_layers = json_array_size(ls);
    m.layers = calloc(m.n_layers ? m.n_layers : 1, sizeof(*m.layers));
    if (!m.layers) {
        r = cairn__err(err, -ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < m.n_layers; i++) {
        snprintf(w, sizeof(w), "%s: layers[%zu]", what, i);
        r = parse_desc(json_array_get(ls, i), w, &m.layers[i], err);
        if (r < 0)
            goto fail;
        int comp;
        if (!m.layers[i].media_type[0]) {
            r = cairn__err(err, CAIRN_E_FORMAT, "%s: no \"mediaType\"", w);
            goto fail;
        }
        r = cairn__oci_layer_type(m.layers[i].media_type, &comp);
        if (r < 0) {
            const char *why = cairn__oci_layer_refusal(m.layers[i].media_type);
            r = cairn__err(err, r, "%s: layer media type \"%s\" is not supported%s%s", w,
                           m.layers[i].media_type, why[0] ? ": " : "", why);
            goto fail;
        }
    }
    *out = m;
    return 0;
fail:
    cairn__oci_manifest_clear(&m);
    return r;
}

void cairn__oci_config_clear(cairn__oci_config *c)
{
    free(c->diff_ids);
    memset(c, 0, sizeof(*c));
}

int cairn__oci_parse_config(const char *buf, size_t len, const char *what, cairn__oci_config *out,
                            cairn_error *err)
{
    json_t *root = NULL;
    cairn__oci_config c = {0};
    int r = parse_json(buf, len, what, &root, err);
    if (r < 0)
        return r;
    if ((r = get_str(root, "os", what, c.os, sizeof(c.os), true, err)) < 0 ||
        (r = get_str(root, "architecture", what, c.arch, sizeof(c.arch), true, err)) < 0 ||
        (r = get_str(root, "variant", what, c.variant, sizeof(c.variant), false, err)) < 0)
        goto out;
    json_t *rootfs = json_object_get(root, "rootfs");
    if (!json_is_object(rootfs)) {
        r = cairn__err(err, CAIRN_E_FORMAT, "%s: \"rootfs\" is %s", what,
                       rootfs ? "not an object" : "missing");
        goto out;
    }
    char type[32];
    if ((r = get_str(rootfs, "type", what, type, sizeof(type), true, err)) < 0)
        goto out;
    if (strcmp(type, "layers")) {
        r = cairn__err(err, CAIRN_E_FORMAT, "%s: rootfs type \"%s\" is not \"layers\"", what,
                       type);
        goto out;
    }
    json_t *ids = json_object_get(rootfs, "diff_ids");
    if (!json_is_array(ids)) {
        r = cairn__err(err, CAIRN_E_FORMAT, "%s: rootfs \"diff_ids\" is %s", what,
                       ids ? "not an array" : "missing");
        goto out;
    }
    c.n_diff_ids = json_array_size(ids);
    c.diff_ids = calloc(c.n_diff_ids ? c.n_diff_ids : 1, sizeof(*c.diff_ids));
    if (!c.diff_ids) {
        r = cairn__err(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < c.n_diff_ids; i++) {
        json_t *v = json_array_get(ids, i);
        char w[512];
        snprintf(w, sizeof(w), "%s: rootfs.diff_ids[%zu]", what, i);
        if (!json_is_string(v)) {
            r = cairn__err(err, CAIRN_E_FORMAT, "%s: not a string", w);
            goto out;
        }
        r = check_digest(json_string_value(v), w, err);
        if (r < 0)
            goto out;
        memcpy(c.diff_ids[i], json_string_value(v), CAIRN_DIGEST_LEN + 1);
    }
    *out = c;
    memset(&c, 0, sizeof(c));
    r = 0;
out:
    cairn__oci_config_clear(&c);
    json_decref(root);
    return r;
}

int cairn__oci_layer_type(const char *mt, int *compression)
{
    static const struct {
        const char *type;
        int comp;
    } types[] = {
        {CAIRN__MT_OCI_LAYER, CAIRN__COMP_NONE},
        {CAIRN__MT_OCI_LAYER_GZ, CAIRN__COMP_GZIP},
        {CAIRN__MT_OCI_LAYER_ZST, CAIRN__COMP_ZSTD},
        {CAIRN__MT_DOCKER_LAYER, CAIRN__COMP_GZIP},
        {CAIRN__MT_DOCKER_LAYER_TAR, CAIRN__COMP_NONE},
    };
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(types); i++)
        if (!strcmp(mt, types[i].type)) {
            *compression = types[i].comp;
            return 0;
        }
    return CAIRN_E_FORMAT;
}

const char *cairn__oci_layer_refusal(const char *mt)
{
    /* Foreign (Docker) and non-distributable (OCI) layers are, by their
     * type, not shipped with the image: the descriptor names URLs to fetch
     * them from, under their owner's terms. cairn never fetches, and an
     * image it holds must hold all its layers. */
    if (!strncmp(mt, "application/vnd.docker.image.rootfs.foreign.diff.tar", 52) ||
        !strncmp(mt, "application/vnd.oci.image.layer.nondistributable.v1.tar", 55))
        return "a foreign (non-distributable) layer is not shipped with the image but fetched "
               "from the URLs its descriptor names, and cairn does not fetch layers";
    if (!strcmp(mt, CAIRN__MT_DOCKER_V1) || !strcmp(mt, CAIRN__MT_DOCKER_V1_JWS))
        return CAIRN__SCHEMA1_WHY;
    if (strstr(mt, "+encrypted"))
        return "an encrypted layer: cairn does not decrypt";
    return "";
}

void cairn__oci_chain_id(const char *parent, const char *diff_id, char out[CAIRN_DIGEST_LEN + 1])
{
    if (!parent || !*parent) {
        memcpy(out, diff_id, CAIRN_DIGEST_LEN + 1);
        return;
    }
    char buf[2 * CAIRN_DIGEST_LEN + 2];
    int n = snprintf(buf, sizeof(buf), "%s %s", parent, diff_id);
    cairn__sha256_buf(buf, (size_t)n, out);
}

void cairn__oci_host_platform(char os[32], char arch[32], char variant[32])
{
    struct utsname u;
    strcpy(os, "linux");
    variant[0] = 0;
    if (uname(&u) < 0) {
        strcpy(arch, "amd64");
        return;
    }
    static const struct {
        const char *machine, *arch, *variant;
    } map[] = {
        {"x86_64", "amd64", ""},   {"aarch64", "arm64", ""},  {"armv7l", "arm", "v7"},
        {"armv6l", "arm", "v6"},   {"i686", "386", ""},       {"i386", "386", ""},
        {"ppc64le", "ppc64le", ""}, {"s390x", "s390x", ""},    {"riscv64", "riscv64", ""},
    };
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(map); i++)
        if (!strcmp(u.machine, map[i].machine)) {
            strcpy(arch, map[i].arch);
            strcpy(variant, map[i].variant);
            return;
        }
    snprintf(arch, 32, "%.31s", u.machine);
}

int cairn__oci_parse_platform(const char *s, char os[32], char arch[32], char variant[32],
                              cairn_error *err)
{
    const char *a = strchr(s, '/');
    const char *v = a ? strchr(a + 1, '/') : NULL;
    size_t nos = a ? (size_t)(a - s) : 0;
    size_t narch = a ? (v ? (size_t)(v - a - 1) : strlen(a + 1)) : 0;
    size_t nvar = v ? strlen(v + 1) : 0;
    if (!a || nos == 0 || nos >= 32 || narch == 0 || narch >= 32 || (v && nvar == 0) ||
        nvar >= 32 || (v && strchr(v + 1, '/')))
        return cairn__err(err, -EINVAL, "platform '%.80s': expected os/arch[/variant]", s);
    memcpy(os, s, nos);
    os[nos] = 0;
    memcpy(arch, a + 1, narch);
    arch[narch] = 0;
    if (v)
        memcpy(variant, v + 1, nvar + 1);
    else
        variant[0] = 0;
    return 0;
}
