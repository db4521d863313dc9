/* test-image.c: OCI image layouts: parsing and checking, platform choice,
 * the images register through lowers, and import of real images made with
 * umoci (layers applied as snapshots, chain ids as OCI defines them). */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "image/oci-private.h"

/* ---- making layouts by hand ------------------------------------------- */

static void put_blob(const char *layout, const char *data, char digest[CAIRN_DIGEST_LEN + 1])
{
    cairn__sha256_buf(data, strlen(data), digest);
    char *p = NULL;
    assert_true(asprintf(&p, "%s/blobs/sha256/%s", layout, digest + 7) > 0);
    t_write_file(p, data, strlen(data));
    free(p);
}

static void put_file(const char *layout, const char *name, const char *data)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", layout, name) > 0);
    t_write_file(p, data, strlen(data));
    free(p);
}

/* A layerless image for a platform: its manifest's descriptor JSON goes in
 * `desc` (with the platform and ref name when given). */
static void make_image(const char *layout, const char *os, const char *arch, const char *ref,
                       bool with_platform, char *desc, size_t size, char mdigest[CAIRN_DIGEST_LEN + 1])
{
    char cfg[512], man[1024], cd[CAIRN_DIGEST_LEN + 1];
    snprintf(cfg, sizeof(cfg),
             "{\"architecture\":\"%s\",\"os\":\"%s\",\"rootfs\":{\"type\":\"layers\","
             "\"diff_ids\":[]},\"config\":{}}",
             arch, os);
    put_blob(layout, cfg, cd);
    snprintf(man, sizeof(man),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
             "\"digest\":\"%s\",\"size\":%zu},\"layers\":[]}",
             CAIRN__MT_OCI_MANIFEST, CAIRN__MT_OCI_CONFIG, cd, strlen(cfg));
    put_blob(layout, man, mdigest);
    char plat[128] = "", ann[300] = "";
    if (with_platform)
        snprintf(plat, sizeof(plat), ",\"platform\":{\"os\":\"%s\",\"architecture\":\"%s\"}", os,
                 arch);
    if (ref)
        snprintf(ann, sizeof(ann), ",\"annotations\":{\"%s\":\"%s\"}", CAIRN__ANNOT_REF_NAME, ref);
    snprintf(desc, size, "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu%s%s}",
             CAIRN__MT_OCI_MANIFEST, mdigest, strlen(man), plat, ann);
}

static void write_index(const char *layout, const char *descs)
{
    char *idx = NULL;
    assert_true(asprintf(&idx, "{\"schemaVersion\":2,\"manifests\":[%s]}", descs) > 0);
    put_file(layout, "index.json", idx);
    put_file(layout, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
    free(idx);
}

static int count_cb(void *ud, const cairn_image_info *in)
{
    (*(int *)ud)++;
    return 0;
}

static int n_images(cairn_state *st)
{
    int n = 0;
    cairn_error e = {0};
    assert_int_equal(cairn_image_list(st, count_cb, &n, &e), 0);
    return n;
}

/* ---- parsing ---------------------------------------------------------- */

static void test_parse(void **unused)
{
    cairn_error err = {0};
    cairn__oci_desc *ds = NULL;
    size_t n = 0;
    static const char bad_json[] = "{\"schemaVersion\":2,\"manifests\":[";
    assert_int_equal(cairn__oci_parse_index(bad_json, strlen(bad_json), "idx", &ds, &n, &err),
                     CAIRN_E_FORMAT);
    assert_non_null(strstr(err.message, "idx: malformed JSON at line 1"));

    static const char v1[] = "{\"schemaVersion\":1,\"manifests\":[]}";
    assert_int_equal(cairn__oci_parse_index(v1, strlen(v1), "idx", &ds, &n, &err),
                     CAIRN_E_FORMAT);
    assert_non_null(strstr(err.message, "\"schemaVersion\" is not 2"));

    static const char sha512[] =
        "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"x\",\"digest\":\"sha512:abc\","
        "\"size\":1}]}";
    assert_int_equal(cairn__oci_parse_index(sha512, strlen(sha512), "idx", &ds, &n, &err),
                     CAIRN_E_DIGEST);
    assert_non_null(strstr(err.message, "idx: manifests[0]: digest 'sha512:abc'"));

    static const char negsize[] =
        "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"x\",\"digest\":\"sha256:"
        "0000000000000000000000000000000000000000000000000000000000000000\",\"size\":-1}]}";
    assert_int_equal(cairn__oci_parse_index(negsize, strlen(negsize), "idx", &ds, &n, &err),
                     CAIRN_E_FORMAT);
    assert_non_null(strstr(err.message, "\"size\" is not a non-negative integer"));

    static const char dup[] = "{\"schemaVersion\":2,\"schemaVersion\":2,\"manifests\":[]}";
    assert_int_equal(cairn__oci_parse_index(dup, strlen(dup), "idx", &ds, &n, &err),
                     CAIRN_E_FORMAT);

    static const char ok[] =
        "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" CAIRN__MT_OCI_MANIFEST
        "\",\"digest\":\"sha256:0000000000000000000000000000000000000000000000000000000000000000"
        "\",\"size\":7,\"annotations\":{\"org.opencontainers.image.ref.name\":\"v1\"},"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v7\"}}]}";
    assert_int_equal(cairn__oci_parse_index(ok, strlen(ok), "idx", &ds, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ds[0].ref_name, "v1");
    assert_int_equal(ds[0].size, 7);
    assert_true(ds[0].has_platform);
    assert_string_equal(ds[0].variant, "v7");
    assert_int_equal(cairn__oci_desc_kind(&ds[0]), CAIRN__DESC_MANIFEST);
    free(ds);

    cairn__oci_manifest m;
    static const char enc[] =
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" CAIRN__MT_OCI_CONFIG
        "\",\"digest\":\"sha256:0000000000000000000000000000000000000000000000000000000000000000"
        "\",\"size\":2},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+"
        "gzip+encrypted\",\"digest\":\"sha256:000000000000000000000000000000000000000000000000000"
        "0000000000000\",\"size\":2}]}";
    assert_int_equal(cairn__oci_parse_manifest(enc, strlen(enc), "m", &m, &err), CAIRN_E_FORMAT);
    assert_non_null(strstr(err.message, "m: layers[0]: layer media type"));
    assert_non_null(strstr(err.message, "encrypted\" is not supported"));

    cairn__oci_config c;
    static const char nodiff[] = "{\"os\":\"linux\",\"architecture\":\"amd64\",\"rootfs\":{"
                                 "\"type\":\"layers\"}}";
    assert_int_equal(cairn__oci_parse_config(nodiff, strlen(nodiff), "c", &c, &err),
                     CAIRN_E_FORMAT);
    assert_non_null(strstr(err.message, "c: rootfs \"diff_ids\" is missing"));
    static const char badid[] = "{\"os\":\"linux\",\"architecture\":\"amd64\",\"rootfs\":{"
                                "\"type\":\"layers\",\"diff_ids\":[\"sha256:12\"]}}";
    assert_int_equal(cairn__oci_parse_config(badid, strlen(badid), "c", &c, &err),
                     CAIRN_E_DIGEST);
    assert_non_null(strstr(err.message, "c: rootfs.diff_ids[0]"));

    char os[32], arch[32], var[32];
    assert_int_equal(cairn__oci_parse_platform("linux/arm64/v8", os, arch, var, &err), 0);
    assert_string_equal(arch, "arm64");
    assert_string_equal(var, "v8");
    assert_int_equal(cairn__oci_parse_platform("linux", os, arch, var, &err), -EINVAL);
    assert_int_equal(cairn__oci_parse_platform("linux/", os, arch, var, &err), -EINVAL);
    assert_int_equal(cairn__oci_parse_platform("a/b/c/d", os, arch, var, &err), -EINVAL);
}

/* Chain ids as the image spec defines them, checked on a worked example. */
static void test_chain_id(void **unused)
{
    const char *a = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4";
    char c0[CAIRN_DIGEST_LEN + 1], c1[CAIRN_DIGEST_LEN + 1];
    cairn__oci_chain_id(NULL, a, c0);
    assert_string_equal(c0, a);
    cairn__oci_chain_id(c0, a, c1);
    /* printf 'sha256:a3ed...d4 sha256:a3ed...d4' | sha256sum */
    assert_string_equal(c1,
                        "sha256:4c7048f6aa2475cea003298d6f2dd9b9e1295d787015684fc26a77739498dce3");
}

/* ---- layouts made by hand (images without layers) ---------------------- */

static void test_platforms(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("image-plat");
    cairn_state *st = t_state(dir, "s");
    char *lay = NULL;
    assert_true(asprintf(&lay, "%s/layout", dir) > 0);
    char d1[512], d2[512], d3[512], m1[CAIRN_DIGEST_LEN + 1], m2[CAIRN_DIGEST_LEN + 1],
        m3[CAIRN_DIGEST_LEN + 1];
    make_image(lay, "linux", "amd64", "multi", true, d1, sizeof(d1), m1);
    make_image(lay, "linux", "arm64", "multi", true, d2, sizeof(d2), m2);
    make_image(lay, "windows", "amd64", "multi", true, d3, sizeof(d3), m3);
    char descs[2048];
    snprintf(descs, sizeof(descs), "%s,%s,%s", d3, d2, d1);
    write_index(lay, descs);

    cairn_image_info in;
    cairn_image_import_options o = CAIRN_IMAGE_IMPORT_OPTIONS_INIT;
    o.platform = "linux/arm64";
    T_OK(cairn_image_import(st, lay, &o, &in, &t_err));
    assert_string_equal(in.name, "multi");
    assert_string_equal(in.manifest, m2);
    assert_string_equal(in.top, "");
    o.platform = "linux/amd64";
    o.name = "x86";
    T_OK(cairn_image_import(st, lay, &o, &in, &t_err));
    assert_string_equal(in.manifest, m1);
    o.platform = "linux/s390x";
    o.name = "none";
    assert_int_equal(cairn_image_import(st, lay, &o, &in, &t_err), -ENOENT);
    assert_non_null(strstr(t_err.message, "no manifest for platform linux/s390x"));
    assert_non_null(strstr(t_err.message, "windows/amd64, linux/arm64, linux/amd64"));
    assert_int_equal(cairn_image_get(st, "none", &in, &t_err), -ENOENT);
    T_OK(cairn_image_get(st, "multi", &in, &t_err));
    assert_string_equal(in.manifest, m2);
    assert_int_equal(in.layers, 0);
    /* The index, manifest and config went into the store. */
    assert_int_equal(cairn_blob_exists(st, m2, &t_err), 1);
    assert_int_equal(n_images(st), 2);

    /* A nested index: the outer one names an index that names the manifests. */
    char *nest = NULL;
    assert_true(asprintf(&nest, "%s/nested", dir) > 0);
    make_image(nest, "linux", "amd64", NULL, true, d1, sizeof(d1), m1);
    make_image(nest, "linux", "arm64", NULL, true, d2, sizeof(d2), m2);
    char inner[2048], idig[CAIRN_DIGEST_LEN + 1];
    snprintf(inner, sizeof(inner),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[%s,%s]}",
             CAIRN__MT_OCI_INDEX, d2, d1);
    put_blob(nest, inner, idig);
    snprintf(descs, sizeof(descs),
             "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,\"annotations\":{\"%s\":"
             "\"nested:1\"}}",
             CAIRN__MT_OCI_INDEX, idig, strlen(inner), CAIRN__ANNOT_REF_NAME);
    write_index(nest, descs);
    o.platform = NULL; /* this machine's */
    o.name = NULL;
    T_OK(cairn_image_import(st, nest, &o, &in, &t_err));
    assert_string_equal(in.name, "nested:1");
    char os[32], arch[32], var[32];
    cairn__oci_host_platform(os, arch, var);
    assert_string_equal(in.manifest, !strcmp(arch, "arm64") ? m2 : m1);
    assert_int_equal(cairn_blob_exists(st, idig, &t_err), 1);

    /* A layout with two images under two names and no choice: refused,
     * naming both. */
    char *two = NULL;
    assert_true(asprintf(&two, "%s/two", dir) > 0);
    make_image(two, "linux", arch, "a", false, d1, sizeof(d1), m1);
    make_image(two, "linux", "mips64le", "b", false, d2, sizeof(d2), m2);
    snprintf(descs, sizeof(descs), "%s,%s", d1, d2);
    write_index(two, descs);
    assert_int_equal(cairn_image_import(st, two, &o, &in, &t_err), -EINVAL);
    assert_non_null(strstr(t_err.message, "several images ('a', 'b')"));
    char *tworef = NULL;
    assert_true(asprintf(&tworef, "%s:a", two) > 0);
    T_OK(cairn_image_import(st, tworef, &o, &in, &t_err));
    assert_string_equal(in.name, "a");
    assert_string_equal(in.manifest, m1);
    /* One manifest under two names is no choice to make: both are recorded. */
    char *same = NULL;
    assert_true(asprintf(&same, "%s/same", dir) > 0);
    make_image(same, "linux", arch, "same:1", false, d1, sizeof(d1), m1);
    make_image(same, "linux", arch, "same:latest", false, d2, sizeof(d2), m2);
    assert_string_equal(m1, m2);
    snprintf(descs, sizeof(descs), "%s,%s", d1, d2);
    write_index(same, descs);
    T_OK(cairn_image_import(st, same, &o, &in, &t_err));
    assert_string_equal(in.name, "same:1");
    T_OK(cairn_image_get(st, "same:latest", &in, &t_err));
    assert_string_equal(in.manifest, m1);
    free(same);

    /* No ref name and no --name: refused. A foreign platform without a
     * platform in the index: refused unless asked for. */
    char *anon = NULL;
    assert_true(asprintf(&anon, "%s/anon", dir) > 0);
    make_image(anon, "linux", "mips64le", NULL, false, d1, sizeof(d1), m1);
    write_index(anon, d1);
    assert_int_equal(cairn_image_import(st, anon, &o, &in, &t_err), -ENOENT);
    assert_non_null(strstr(t_err.message, "the image is for linux/mips64le"));
    o.platform = "linux/arm64";
    assert_int_equal(cairn_image_import(st, anon, &o, &in, &t_err), -ENOENT);
    assert_non_null(strstr(t_err.message, "no manifest for platform linux/arm64"));
    o.platform = "linux/mips64le";
    assert_int_equal(cairn_image_import(st, anon, &o, &in, &t_err), -ENOENT);
    assert_non_null(strstr(t_err.message, "give it a name"));
    o.name = "anon";
    T_OK(cairn_image_import(st, anon, &o, &in, &t_err));
    assert_int_equal(n_images(st), 7);

    cairn_state_free(st);
    free(lay);
    free(nest);
    free(two);
    free(tworef);
    free(anon);
    t_scratch_free(dir);
}

/* Bad documents: each refused naming the object, nothing recorded. */
static void test_bad_layouts(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("image-bad");
    cairn_state *st = t_state(dir, "s");
    char *lay = NULL;
    assert_true(asprintf(&lay, "%s/layout", dir) > 0);
    char d[512], m[CAIRN_DIGEST_LEN + 1];
    cairn_image_import_options o = CAIRN_IMAGE_IMPORT_OPTIONS_INIT;
    o.name = "bad";
    cairn_image_info in;

    /* Not a layout at all. */
    assert_int_equal(cairn_image_import(st, dir, &o, &in, &t_err), CAIRN_E_FORMAT);
    assert_non_null(strstr(t_err.message, "no oci-layout file"));

    make_image(lay, "linux", "amd64", "t", true, d, sizeof(d), m);
    write_index(lay, d);
    put_file(lay, "oci-layout", "{\"imageLayoutVersion\":\"2.0.0\"}");
    assert_int_equal(cairn_image_import(st, lay, &o, &in, &t_err), CAIRN_E_FORMAT);
    assert_non_null(strstr(t_err.message, "oci-layout: image layout version \"2.0.0\""));
    write_index(lay, d);

    /* A manifest whose bytes are not what the index says. */
    char *mp = NULL;
    assert_true(asprintf(&mp, "%s/blobs/sha256/%s", lay, m + 7) > 0);
    struct stat sb;
    assert_int_equal(stat(mp, &sb), 0);
    char *junk = calloc(1, (size_t)sb.st_size + 1);
    memset(junk, ' ', (size_t)sb.st_size);
    t_write_file(mp, junk, (size_t)sb.st_size);
    assert_int_equal(cairn_image_import(st, lay, &o, &in, &t_err), CAIRN_E_MISMATCH);
    assert_non_null(strstr(t_err.message, "manifest "));
    assert_non_null(strstr(t_err.message, m));
    assert_non_null(strstr(t_err.message, "the data's digest is"));
    /* Shorter than its descriptor. */
    t_write_file(mp, "{}", 2);
    assert_int_equal(cairn_image_import(st, lay, &o, &in, &t_err), CAIRN_E_TRUNCATED);
    assert_non_null(strstr(t_err.message, "2 bytes, the descriptor says"));
    unlink(mp);
    assert_int_equal(cairn_image_import(st, lay, &o, &in, &t_err), -ENOENT);
    assert_non_null(strstr(t_err.message, "missing from"));
    assert_non_null(strstr(t_err.message, m));

    /* Malformed manifest JSON under its right digest. */
    put_blob(lay, "{\"schemaVersion\":2,", m);
    snprintf(d, sizeof(d), "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu}",
             CAIRN__MT_OCI_MANIFEST, m, strlen("{\"schemaVersion\":2,"));
    write_index(lay, d);
    assert_int_equal(cairn_image_import(st, lay, &o, &in, &t_err), CAIRN_E_FORMAT);
    assert_non_null(strstr(t_err.message, m));
    assert_non_null(strstr(t_err.message, "malformed JSON"));

    /* Malformed index.json. */
    put_file(lay, "index.json", "{\"schemaVersion\":2,\"manifests\":[{]}");
    assert_int_equal(cairn_image_import(st, lay, &o, &in, &t_err), CAIRN_E_FORMAT);
    assert_non_null(strstr(t_err.message, "index.json: malformed JSON"));

    /* A config whose diff ids do not match the layers. */
    char cfg[] = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\","
                 "\"diff_ids\":[\"sha256:0000000000000000000000000000000000000000000000000000000000"
                 "000000\"]}}";
    char cd[CAIRN_DIGEST_LEN + 1], man[1024];
    put_blob(lay, cfg, cd);
    snprintf(man, sizeof(man),
             "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu},"
             "\"layers\":[]}",
             CAIRN__MT_OCI_CONFIG, cd, strlen(cfg));
    put_blob(lay, man, m);
    snprintf(d, sizeof(d), "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu}",
             CAIRN__MT_OCI_MANIFEST, m, strlen(man));
    write_index(lay, d);
    assert_int_equal(cairn_image_import(st, lay, &o, &in, &t_err), CAIRN_E_FORMAT);
    assert_non_null(strstr(t_err.message, "1 diff ids for the 0 layers"));

    assert_int_equal(n_images(st), 0);
    cairn_state_free(st);
    free(junk);
    free(mp);
    free(lay);
    t_scratch_free(dir);
}

/* The register through a lower: visible, shadowed, removed by a tombstone. */
static void freeze_by_hand(const char *p, const char *id)
{
    char *cmd = NULL;
    assert_true(asprintf(&cmd,
                         "sqlite3 '%s/db/%s.sqlite' 'PRAGMA journal_mode=DELETE' >/dev/null && "
                         "sed -i 's/^frozen=0$/frozen=1/' '%s/cairn-state'",
                         p, id, p) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

static void test_lowers(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("image-lowers");
    char *a = NULL, *b = NULL, *lay = NULL, *lf = NULL, *line = NULL;
    assert_true(asprintf(&a, "%s/a", dir) > 0 && asprintf(&b, "%s/b", dir) > 0 &&
                asprintf(&lay, "%s/layout", dir) > 0);
    char d1[512], d2[512], m1[CAIRN_DIGEST_LEN + 1], m2[CAIRN_DIGEST_LEN + 1];
    make_image(lay, "linux", "amd64", "one", false, d1, sizeof(d1), m1);
    make_image(lay, "linux", "amd64", "two", false, d2, sizeof(d2), m2);
    char descs[1100];
    snprintf(descs, sizeof(descs), "%s,%s", d1, d2);
    write_index(lay, descs);
    char ida[CAIRN_STATE_ID_LEN + 1];
    T_OK(cairn_state_init(a, ida, &t_err));
    cairn_state *st = NULL;
    T_OK(cairn_state_open(&st, a, 0, &t_err));
    cairn_image_import_options o = CAIRN_IMAGE_IMPORT_OPTIONS_INIT;
    o.platform = "linux/amd64";
    char *ref = NULL;
    assert_true(asprintf(&ref, "%s:one", lay) > 0);
    T_OK(cairn_image_import(st, ref, &o, NULL, &t_err));
    ref[strlen(ref) - 3] = 0;
    strcat(ref, "two");
    T_OK(cairn_image_import(st, ref, &o, NULL, &t_err));
    cairn_state_free(st);
    freeze_by_hand(a, ida);

    T_OK(cairn_state_init(b, NULL, &t_err));
    assert_true(asprintf(&lf, "%s/lowers", b) > 0);
    assert_true(asprintf(&line, "%s %s\n", ida, a) > 0);
    t_write_file(lf, line, strlen(line));
    T_OK(cairn_state_open(&st, b, 0, &t_err));
    cairn_image_info in;
    T_OK(cairn_image_get(st, "one", &in, &t_err));
    assert_int_equal(in.lower, 1);
    assert_string_equal(in.manifest, m1);
    assert_int_equal(n_images(st), 2);
    /* Rebinding a name in the top shadows the lower's row. */
    o.name = "one";
    T_OK(cairn_image_import(st, ref, &o, NULL, &t_err));
    T_OK(cairn_image_get(st, "one", &in, &t_err));
    assert_int_equal(in.lower, 0);
    assert_string_equal(in.manifest, m2);
    assert_int_equal(n_images(st), 2);
    /* Removing a name the lower holds leaves a tombstone; the lower is untouched. */
    T_OK(cairn_image_remove(st, "two", &t_err));
    assert_int_equal(cairn_image_get(st, "two", &in, &t_err), -ENOENT);
    assert_int_equal(cairn_image_remove(st, "two", &t_err), -ENOENT);
    assert_int_equal(n_images(st), 1);
    T_OK(cairn_image_remove(st, "one", &t_err));
    assert_int_equal(n_images(st), 0);
    /* info agrees with the listing: tombstones are not images. */
    cairn_state_info si;
    T_OK(cairn_state_info_get(st, &si, &t_err));
    assert_int_equal(si.images.count, 0);
    cairn_state_free(st);
    T_OK(cairn_state_open(&st, a, 0, &t_err));
    assert_int_equal(n_images(st), 2);
    cairn_state_free(st);
    free(a);
    free(b);
    free(lay);
    free(lf);
    free(line);
    free(ref);
    t_scratch_free(dir);
}

static void fsck_cb(void *ud, const cairn_fsck_problem *p)
{
    if (!strcmp(p->kind, "image"))
        snprintf(ud, 512, "%s %s %s %s", p->name, p->problem, p->detail, p->action);
}

/* fsck: an image row naming a blob that is gone is reported, and dropped by repair. */
static void test_fsck(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("image-fsck");
    cairn_state *st = t_state(dir, "s");
    char *lay = NULL;
    assert_true(asprintf(&lay, "%s/layout", dir) > 0);
    char d[512], m[CAIRN_DIGEST_LEN + 1];
    make_image(lay, "linux", "amd64", "f", false, d, sizeof(d), m);
    write_index(lay, d);
    cairn_image_import_options o = CAIRN_IMAGE_IMPORT_OPTIONS_INIT;
    o.platform = "linux/amd64";
    cairn_image_info in;
    T_OK(cairn_image_import(st, lay, &o, &in, &t_err));
    char got[512] = "";
    assert_int_equal(cairn_fsck(st, NULL, fsck_cb, got, &t_err), 0);
    T_OK(cairn_blob_remove(st, in.config, &t_err));
    assert_int_equal(cairn_fsck(st, NULL, fsck_cb, got, &t_err), 1);
    assert_non_null(strstr(got, "f dangling its config blob"));
    assert_non_null(strstr(got, in.config));
    T_OK(cairn_image_get(st, "f", NULL, &t_err));
    cairn_fsck_options fo = CAIRN_FSCK_OPTIONS_INIT;
    fo.repair = 1;
    assert_int_equal(cairn_fsck(st, &fo, fsck_cb, got, &t_err), 1);
    assert_non_null(strstr(got, "dropped row"));
    assert_int_equal(cairn_image_get(st, "f", NULL, &t_err), -ENOENT);
    assert_int_equal(cairn_fsck(st, NULL, fsck_cb, got, &t_err), 0);
    cairn_state_free(st);
    free(lay);
    t_scratch_free(dir);
}

/* ---- real images, made with umoci -------------------------------------- */

struct prog {
    uint64_t last, total, calls;
    bool backwards;
};

static int prog_cb(void *ud, uint64_t done, uint64_t total)
{
    struct prog *p = ud;
    if (done < p->last)
        p->backwards = true;
    p->last = done;
    p->total = total;
    p->calls++;
    return 0;
}

/* Run `body` in directory `dir` with the shell. */
static void sh(const char *dir, const char *body)
{
    char *cmd = NULL;
    assert_true(asprintf(&cmd, "cd '%s' && %s", dir, body) > 0);
    if (system(cmd) != 0)
        fail_msg("failed: %s", cmd);
    free(cmd);
}

/* Three layers (the last deletes files), imported with and without threads:
 * the same chain ids, progress that only goes forward to its total, and a
 * layer whose compressed stream is corrupt refused without a row. */
static void test_umoci_layers(void **unused)
{
    cairn_error t_err = {0};
    char *dir = t_scratch("image-umoci");
    sh(dir, "umoci init --layout lay && umoci new --image lay:u && "
       "umoci unpack --image lay:u b >/dev/null && mkdir -p b/rootfs/d && "
       "head -c 3000000 /dev/urandom > b/rootfs/d/big && echo a > b/rootfs/d/a && "
       "umoci repack --refresh-bundle --image lay:u b >/dev/null && "
       "seq 1 200000 > b/rootfs/d/seq && umoci repack --refresh-bundle --image lay:u b >/dev/null && "
       "rm b/rootfs/d/a && umoci repack --refresh-bundle --image lay:u b >/dev/null");
    char *lay = NULL;
    assert_true(asprintf(&lay, "%s/lay", dir) > 0);
    char tops[2][CAIRN_DIGEST_LEN + 1];
    for (unsigned jobs = 1; jobs <= 2; jobs++) {
        cairn_state *st = t_state(dir, jobs == 1 ? "one" : "two");
        cairn_image_import_options o = CAIRN_IMAGE_IMPORT_OPTIONS_INIT;
        struct prog p = {0};
        o.jobs = jobs;
        o.progress = prog_cb;
        o.progress_userdata = &p;
        cairn_image_info in;
        T_OK(cairn_image_import(st, lay, &o, &in, &t_err));
        assert_int_equal(in.layers, 3);
        assert_false(p.backwards);
        assert_true(p.calls > 0);
        /* Each layer blob is counted twice: copied into the store, and applied. */
        assert_int_equal(p.total, 2 * in.size);
        assert_int_equal(p.last, p.total);
        memcpy(tops[jobs - 1], in.top, sizeof(tops[0]));
        cairn_snapshot_info si;
        T_OK(cairn_snapshot_stat(st, in.top, &si, &t_err));
        cairn_state_free(st);
    }
    assert_string_equal(tops[0], tops[1]);

    /* A corrupt gzip stream in the middle layer, under its own (right) digest:
     * the blob is valid content, its diff is not. */
    sh(dir, "python3 - <<'PY'\n"
       "import hashlib, json, os, zlib\n"
       "B = 'lay/blobs/sha256/'\n"
       "def load(d): return json.load(open(B + d[7:]))\n"
       "def put(b):\n"
       "    d = 'sha256:' + hashlib.sha256(b).hexdigest(); open(B + d[7:], 'wb').write(b); return d\n"
       "idx = json.load(open('lay/index.json'))\n"
       "man = load(idx['manifests'][0]['digest'])\n"
       "raw = bytearray(open(B + man['layers'][1]['digest'][7:], 'rb').read())\n"
       "for i in range(len(raw) // 2, len(raw) // 2 + 64): raw[i] ^= 0x55\n"
       "man['layers'][1]['digest'] = put(bytes(raw)); man['layers'][1]['size'] = len(raw)\n"
       "m = json.dumps(man).encode()\n"
       "idx['manifests'][0]['digest'] = put(m); idx['manifests'][0]['size'] = len(m)\n"
       "json.dump(idx, open('lay/index.json', 'w'))\n"
       "PY");
    for (unsigned jobs = 1; jobs <= 2; jobs++) {
        cairn_state *st = t_state(dir, jobs == 1 ? "bad1" : "bad2");
        cairn_image_import_options o = CAIRN_IMAGE_IMPORT_OPTIONS_INIT;
        o.jobs = jobs;
        o.name = "bad";
        int r = cairn_image_import(st, lay, &o, NULL, &t_err);
        assert_true(r == CAIRN_E_FORMAT || r == CAIRN_E_MISMATCH || r == CAIRN_E_TRUNCATED);
        print_message("jobs %u: %s\n", jobs, t_err.message);
        assert_non_null(strstr(t_err.message, "layer 1 ("));
        assert_int_equal(n_images(st), 0);
        /* The base layer was applied; nothing was left staged. */
        cairn_state_free(st);
    }
    free(lay);
    t_scratch_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_chain_id),
        cmocka_unit_test(test_platforms),
        cmocka_unit_test(test_bad_layouts),
        cmocka_unit_test(test_lowers),
        cmocka_unit_test(test_fsck),
        cmocka_unit_test(test_umoci_layers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
