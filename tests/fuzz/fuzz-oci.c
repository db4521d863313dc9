/* fuzz-oci.c: the JSON documents of an OCI image layout, through the
 * parsers and through cairn_image_import(). The input is split at NUL bytes
 * into index.json, a manifest and a config. Each goes through its parser;
 * then a layout is written with them and imported. So that a mutated
 * document stays reachable, the target fills in placeholders before writing:
 * "@M" and "@MS" in the index become the manifest's digest and size, "@C"
 * and "@CS" in the manifest the config's, "@L"/"@LS" a small layer blob's,
 * "@D" in the config that layer's DiffID. The import must fail with a
 * message or succeed; a success records an image whose objects are there. */
#include <cairn/cairn.h>

#include "image/oci-private.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fuzz_seed {
    const void *data;
    size_t size;
} fuzz_seed;

#define MT_I "\"application/vnd.oci.image.index.v1+json\""
#define MT_M "\"application/vnd.oci.image.manifest.v1+json\""
#define MT_C "\"application/vnd.oci.image.config.v1+json\""
#define MT_L "\"application/vnd.oci.image.layer.v1.tar\""
#define INDEX(extra)                                                                           \
    "{\"schemaVersion\":2,\"mediaType\":" MT_I ",\"manifests\":[{\"mediaType\":" MT_M        \
    ",\"digest\":\"@M\",\"size\":@MS,\"annotations\":{\"org.opencontainers.image.ref.name\":" \
    "\"t\"},\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}" extra "]}"
#define MANIFEST                                                                               \
    "{\"schemaVersion\":2,\"mediaType\":" MT_M ",\"config\":{\"mediaType\":" MT_C            \
    ",\"digest\":\"@C\",\"size\":@CS},\"layers\":[{\"mediaType\":" MT_L                      \
    ",\"digest\":\"@L\",\"size\":@LS}]}"
#define CONFIG                                                                                 \
    "{\"os\":\"linux\",\"architecture\":\"amd64\",\"rootfs\":{\"type\":\"layers\","          \
    "\"diff_ids\":[\"@D\"]},\"config\":{\"Env\":[\"A=1\"]}}"
#define S(lit) {lit, sizeof(lit) - 1}
const fuzz_seed fuzz_seeds[] = {
    S(INDEX("") "\0" MANIFEST "\0" CONFIG),
    S(INDEX(",{\"mediaType\":" MT_M ",\"digest\":\"@M\",\"size\":@MS,\"platform\":{\"os\":"
            "\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}}") "\0" MANIFEST "\0" CONFIG),
    S("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":" MT_I ",\"digest\":\"@M\",\"size\":"
      "@MS}]}\0" INDEX("") "\0" CONFIG),
    S("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
      "\"config\":{\"digest\":\"@C\",\"size\":@CS},\"layers\":[]}"),
    S("{\"schemaVersion\":2,\"manifests\":[]}\0{}\0{\"rootfs\":{\"diff_ids\":[1e400,-1,"
      "9223372036854775808,\"sha256:../../x\",\"sha512:00\",null,[],{}]}}"),
    {NULL, 0},
};

static char *root;
static char layout[4200], state_dir[4200];
static cairn_state *st;
static char layer_digest[CAIRN_DIGEST_LEN + 1];
static size_t layer_size;

static void cleanup(void)
{
    cairn_state_free(st);
    char cmd[4300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    free(root);
}

static void digest_of(const void *d, size_t n, char out[CAIRN_DIGEST_LEN + 1])
{
    cairn__sha256_buf(d, n, out);
}

static void write_at(const char *dir, const char *name, const void *d, size_t n)
{
    char p[4400];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || (n && write(fd, d, n) != (ssize_t)n))
        abort();
    close(fd);
}

static void put_blob(const void *d, size_t n, char out[CAIRN_DIGEST_LEN + 1])
{
    char dir[4300];
    digest_of(d, n, out);
    snprintf(dir, sizeof(dir), "%s/blobs/sha256", layout);
    write_at(dir, out + 7, d, n);
}

static void setup(void)
{
    char tmpl[] = "/tmp/cairn-fuzz-oci-XXXXXX";
    root = mkdtemp(tmpl) ? strdup(tmpl) : NULL;
    if (!root)
        abort();
    atexit(cleanup);
    snprintf(layout, sizeof(layout), "%s/layout", root);
    snprintf(state_dir, sizeof(state_dir), "%s/s", root);
    char p[4400];
    cairn_error err;
    char id[CAIRN_STATE_ID_LEN + 1];
    if (mkdir(layout, 0755) < 0)
        abort();
    snprintf(p, sizeof(p), "%s/blobs", layout);
    if (mkdir(p, 0755) < 0)
        abort();
    snprintf(p, sizeof(p), "%s/blobs/sha256", layout);
    if (mkdir(p, 0755) < 0 || cairn_state_init(state_dir, id, &err) < 0 ||
        cairn_state_open(&st, state_dir, 0, &err) < 0)
        abort();
    static const char lay[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
    write_at(layout, "oci-layout", lay, sizeof(lay) - 1);
    /* The layer: one file in a ustar tar, built by hand (a header, a data
     * block, the two zero blocks that end it). */
    static char tar[4 * 512];
    memset(tar, 0, sizeof(tar));
    strcpy(tar, "hello");
    memcpy(tar + 100, "0000644", 8);
    memcpy(tar + 108, "0000000", 8);
    memcpy(tar + 116, "0000000", 8);
    memcpy(tar + 124, "00000000002", 12);
    memcpy(tar + 136, "14527147500", 12);
    tar[156] = '0';
    memcpy(tar + 257, "ustar", 6);
    memcpy(tar + 263, "00", 2);
    memset(tar + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += (unsigned char)tar[i];
    snprintf(tar + 148, 8, "%06o", sum);
    memcpy(tar + 512, "hi", 2);
    put_blob(tar, sizeof(tar), layer_digest);
    layer_size = sizeof(tar);
}

/* Replace the placeholders of `in` (n bytes) into a malloc'd string. */
static char *fill(const char *in, size_t n, const char *m, size_t ms, const char *c, size_t cs,
                  size_t *out_n)
{
    size_t cap = n * 2 + 1024, o = 0;
    char *out = malloc(cap);
    if (!out)
        abort();
    char dl[CAIRN_DIGEST_LEN + 1];
    snprintf(dl, sizeof(dl), "%s", layer_digest);
    for (size_t i = 0; i < n;) {
        char num[32];
        const char *rep = NULL;
        size_t skip = 0;
        if (in[i] == '@' && i + 2 < n && in[i + 2] == 'S' &&
            (in[i + 1] == 'M' || in[i + 1] == 'C' || in[i + 1] == 'L')) {
            snprintf(num, sizeof(num), "%zu",
                     in[i + 1] == 'M' ? ms : in[i + 1] == 'C' ? cs : layer_size);
            rep = num;
            skip = 3;
        } else if (in[i] == '@' && i + 1 < n &&
                   (in[i + 1] == 'M' || in[i + 1] == 'C' || in[i + 1] == 'L' || in[i + 1] == 'D')) {
            rep = in[i + 1] == 'M' ? m : in[i + 1] == 'C' ? c : dl;
            skip = 2;
        }
        if (rep) {
            size_t l = strlen(rep);
            if (o + l >= cap)
                break;
            memcpy(out + o, rep, l);
            o += l;
            i += skip;
        } else {
            if (o + 1 >= cap)
                break;
            out[o++] = in[i++];
        }
    }
    out[o] = 0;
    *out_n = o;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root)
        setup();
    /* Split at NUL: index, manifest, config (missing parts are empty). */
    const char *part[3] = {"", "", ""};
    size_t plen[3] = {0, 0, 0};
    const char *p = (const char *)data, *end = p + size;
    for (int k = 0; k < 3 && p <= end; k++) {
        const char *z = memchr(p, 0, (size_t)(end - p));
        part[k] = p;
        plen[k] = z ? (size_t)(z - p) : (size_t)(end - p);
        p += plen[k] + 1;
    }
    /* The config first (it names the layer), then the manifest (it names
     * the config), then the index (it names the manifest). */
    char cd[CAIRN_DIGEST_LEN + 1], md[CAIRN_DIGEST_LEN + 1];
    size_t cn, mn, in;
    char *cfg = fill(part[2], plen[2], "", 0, "", 0, &cn);
    put_blob(cfg, cn, cd);
    char *man = fill(part[1], plen[1], "", 0, cd, cn, &mn);
    put_blob(man, mn, md);
    char *idx = fill(part[0], plen[0], md, mn, cd, cn, &in);
    write_at(layout, "index.json", idx, in);

    /* The parsers alone, on each document. */
    cairn_error err = {0};
    cairn__oci_desc *ds = NULL;
    size_t nd = 0;
    if (cairn__oci_parse_index(idx, in, "index", &ds, &nd, &err) == 0)
        free(ds);
    else if (!err.message[0])
        abort();
    cairn__oci_manifest m;
    err.message[0] = 0;
    if (cairn__oci_parse_manifest(man, mn, "manifest", &m, &err) == 0)
        cairn__oci_manifest_clear(&m);
    else if (!err.message[0])
        abort();
    cairn__oci_config c;
    err.message[0] = 0;
    if (cairn__oci_parse_config(cfg, cn, "config", &c, &err) == 0)
        cairn__oci_config_clear(&c);
    else if (!err.message[0])
        abort();

    /* The whole import. */
    cairn_image_import_options o = CAIRN_IMAGE_IMPORT_OPTIONS_INIT;
    o.name = "fuzz";
    o.platform = "linux/amd64";
    o.jobs = 1;
    cairn_image_info info;
    err.message[0] = 0;
    int r = cairn_image_import(st, layout, &o, &info, &err);
    if (getenv("FUZZ_VERBOSE"))
        fprintf(stderr, "%d %s\n", r, r < 0 ? err.message : info.manifest);
    if (r < 0 && !err.message[0])
        abort(); /* a failure must say why */
    if (r > 0)
        abort();
    if (r == 0) {
        /* Publish last: what the row names is there. */
        if (cairn_blob_exists(st, info.manifest, &err) != 1 ||
            cairn_blob_exists(st, info.config, &err) != 1)
            abort();
        if (info.top[0]) {
            cairn_snapshot_info si;
            if (cairn_snapshot_stat(st, info.top, &si, &err) < 0)
                abort();
        }
        if (cairn_image_remove(st, "fuzz", &err) < 0)
            abort();
    }
    free(cfg);
    free(man);
    free(idx);
    return 0;
}
