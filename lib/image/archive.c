/* archive.c: the source of an image import: an OCI image layout directory,
 * or an oci-archive read once for its small files (oci-layout, index.json,
 * JSON blobs), whose members are then found by name (image-private.h).
 *
 * A docker-archive (`docker save`, skopeo's and podman's docker-archive:),
 * as a tar or as a directory, is a source too: one without an oci-layout,
 * with a manifest.json listing, per image, its config file, its RepoTags and
 * its layer files, at any path (the legacy <id>/layer.tar, skopeo's
 * <diffid>.tar behind <id>/layer.tar symlinks, or blobs/sha256/<hex> as
 * Docker 25 writes; a Docker 25 archive also has an oci-layout and is read
 * as the OCI layout it is). It is read as a layout of Docker schema 2
 * documents cairn makes of it: an index naming one manifest per RepoTag, a
 * manifest per entry (the config by its digest, each layer by its digest:
 * the diff id for a plain tar, which the store checks as it ingests it, the
 * digest of the bytes for a compressed one), and the map from those digests
 * to the files. Links are followed inside the source only: in a directory
 * through openat2(RESOLVE_IN_ROOT), in a tar by the members' paths.
 */
#include "image/image-private.h"

#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <archive.h>
#include <archive_entry.h>

#define CHUNK (1u << 20)
/* An oci-archive's small blobs kept in memory by its first read. */
#define ARCHIVE_CACHE_MAX (256u << 20)

/* ---- the source: a layout directory or an oci-archive ------------------ */

void cairn__source_clear(source *s)
{
    if (s->rootfd >= 0)
        close(s->rootfd);
    if (s->blobfd >= 0)
        close(s->blobfd);
    for (size_t i = 0; i < s->n_ents; i++) {
        free(s->ents[i].data);
        free(s->ents[i].path);
        free(s->ents[i].link);
    }
    free(s->ents);
    free(s->docker_index);
    for (size_t i = 0; i < s->n_ddocs; i++)
        free(s->ddocs[i].data);
    free(s->ddocs);
    for (size_t i = 0; i < s->n_dlayers; i++)
        free(s->dlayers[i].path);
    free(s->dlayers);
}

/* A path inside the source, normalised: relative to `dir` (a member's
 * directory, for a link's target; NULL for the root), '.' and '..' resolved,
 * never above the root (a leading '/' is the root). NULL when it leaves it
 * or is empty; malloc'd. */
static char *norm_path(const char *dir, const char *path)
{
    size_t cap = (dir ? strlen(dir) : 0) + strlen(path) + 2;
    char *out = malloc(cap), *tmp = malloc(cap);
    if (!out || !tmp) {
        free(out);
        free(tmp);
        return NULL;
    }
    snprintf(tmp, cap, "%s%s%s", path[0] != '/' && dir && *dir ? dir : "",
             path[0] != '/' && dir && *dir ? "/" : "", path);
    size_t n = 0;
    for (char *save = NULL, *c = strtok_r(tmp, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!strcmp(c, "."))
            continue;
        if (!strcmp(c, "..")) {
            if (n == 0) {
                free(out);
                free(tmp);
                return NULL;
            }
            while (n > 0 && out[n - 1] != '/')
                n--;
            if (n > 0)
                n--;
            continue;
        }
        if (n)
            out[n++] = '/';
        size_t l = strlen(c);
        memcpy(out + n, c, l);
        n += l;
    }
    out[n] = 0;
    free(tmp);
    if (!n) {
        free(out);
        return NULL;
    }
    return out;
}

/* The compression a file's first bytes say. */
static int magic_comp(const unsigned char *b, size_t n)
{
    if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b)
        return CAIRN__COMP_GZIP;
    if (n >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd)
        return CAIRN__COMP_ZSTD;
    if ((n >= 3 && !memcmp(b, "BZh", 3)) || (n >= 6 && !memcmp(b, "\xfd" "7zXZ\0", 6)))
        return ARC_COMP_OTHER;
    return CAIRN__COMP_NONE;
}

/* The name of an archive member in the layout: "index.json", "oci-layout",
 * "sha256:<hex>" for blobs/sha256/<hex>; NULL for anything else. */
const char *cairn__arc_member(const char *path, char buf[80])
{
    while (path[0] == '.' && path[1] == '/')
        path += 2;
    while (*path == '/')
        path++;
    if (!strcmp(path, "index.json") || !strcmp(path, "oci-layout"))
        return path;
    if (strncmp(path, "blobs/sha256/", 13) != 0)
        return NULL;
    snprintf(buf, 80, "sha256:%.70s", path + 13);
    if (cairn_digest_check(buf, NULL) < 0)
        return NULL;
    return buf;
}

struct archive *cairn__arc_open(const char *path, cairn_error *err)
{
    struct archive *a = archive_read_new();
    if (!a) {
        cairn__err(err, -ENOMEM, "out of memory");
        return NULL;
    }
    archive_read_support_format_tar(a);
    /* The compressions libarchive decodes in process, not all it knows:
     * for lrzip, grzip, lzop and others it runs a program from PATH,
     * chosen by the first bytes of the file. */
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_bzip2(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_zstd(a);
    if (archive_read_open_filename(a, path, CHUNK) != ARCHIVE_OK) {
        int e = archive_errno(a);
        cairn__err(err, e > 0 ? -e : CAIRN_E_FORMAT, "%s: %s", path, archive_error_string(a));
        archive_read_free(a);
        return NULL;
    }
    return a;
}

int cairn__arc_fail(struct archive *a, const char *path, const char *what, cairn_error *err)
{
    const char *msg = archive_error_string(a);
    int e = archive_errno(a);
    int code = CAIRN_E_FORMAT;
    if (msg && (strstr(msg, "runcated") || strstr(msg, "remature")))
        code = CAIRN_E_TRUNCATED;
    else if (e == EIO || e == EACCES || e == ENOENT || e == ENOMEM || e == EISDIR)
        code = -e;
    return cairn__err(err, code, "%s: %s%s%s%s%s", path, what, what[0] ? ": " : "",
                      code == CAIRN_E_TRUNCATED ? "the archive ends early (" : "",
                      msg ? msg : "unreadable archive", code == CAIRN_E_TRUNCATED ? ")" : "");
}

/* Read a member's data from where the reader is, up to `want` bytes. */
static int arc_read(struct archive *a, source *s, const char *what, char *buf, int64_t want,
                    int64_t *got, cairn_error *err)
{
    *got = 0;
    while (*got < want) {
        la_ssize_t n = archive_read_data(a, buf + *got, (size_t)(want - *got));
        if (n < 0)
            return cairn__arc_fail(a, s->path, what, err);
        if (n == 0)
            break;
        *got += n;
    }
    return 0;
}

/* A docker-archive's small documents: its manifest.json, its configs. */
static bool docker_doc_path(const char *path)
{
    size_t n = strlen(path);
    return !strcmp(path, "manifest.json") || (n > 5 && !strcmp(path + n - 5, ".json"));
}

/* First read of an archive: every member by its path; the layout's small
 * files and a docker-archive's JSON files cached; of the others, the first
 * bytes (their compression), and for a compressed one outside blobs/ (a
 * docker-archive's layer file, named by no digest) the digest of its bytes. */
static int arc_scan(source *s, cairn_error *err)
{
    struct archive *a = cairn__arc_open(s->path, err);
    if (!a)
        return err ? err->code : CAIRN_E_FORMAT;
    size_t cached = 0, cap = 0;
    int r = 0;
    struct archive_entry *e;
    cairn__sha256 *h = NULL;
    char *buf = malloc(CHUNK);
    if (!buf) {
        r = cairn__err(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (;;) {
        int rc = archive_read_next_header(a, &e);
        if (rc == ARCHIVE_EOF)
            break;
        if (rc < ARCHIVE_WARN) {
            r = cairn__arc_fail(a, s->path, "", err);
            goto out;
        }
        int type = archive_entry_filetype(e);
        const char *hl = archive_entry_hardlink(e);
        if (type != AE_IFREG && type != AE_IFLNK && !hl)
            continue;
        char *path = norm_path(NULL, archive_entry_pathname(e));
        if (!path)
            continue; /* the root, or outside it: no member of a layout */
        if (s->n_ents == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            arc_entry *ne = realloc(s->ents, ncap * sizeof(*ne));
            if (!ne) {
                free(path);
                r = cairn__err(err, -ENOMEM, "out of memory");
                goto out;
            }
            s->ents = ne;
            cap = ncap;
        }
        arc_entry *ae = &s->ents[s->n_ents++];
        memset(ae, 0, sizeof(*ae));
        ae->path = path;
        ae->comp = ARC_COMP_UNREAD;
        if (hl || type == AE_IFLNK) {
            /* A hardlink names a member from the root; a symlink is
             * relative to its own directory. */
            const char *slash = strrchr(path, '/');
            _cleanup_free_ char *dir = slash ? strndup(path, (size_t)(slash - path)) : NULL;
            ae->link = hl ? norm_path(NULL, hl) : norm_path(dir, archive_entry_symlink(e));
            continue;
        }
        char nbuf[80];
        const char *m = cairn__arc_member(path, nbuf);
        snprintf(ae->name, sizeof(ae->name), "%s", m ? m : "");
        ae->size = archive_entry_size(e);
        if (ae->size < 0)
            continue;
        bool small = (uint64_t)ae->size <= CAIRN__OCI_JSON_MAX &&
                     cached + (size_t)ae->size <= ARCHIVE_CACHE_MAX;
        if (small && (m || docker_doc_path(path))) {
            ae->data = malloc((size_t)ae->size + 1);
            if (!ae->data) {
                r = cairn__err(err, -ENOMEM, "out of memory");
                goto out;
            }
            int64_t got;
            if ((r = arc_read(a, s, path, ae->data, ae->size, &got, err)) < 0)
                goto out;
            if (got != ae->size) {
                r = cairn__err(err, CAIRN_E_TRUNCATED, "%s: %s: %lld of %lld bytes", s->path,
                               path, (long long)got, (long long)ae->size);
                goto out;
            }
            ae->data[got] = 0;
            cached += (size_t)ae->size;
            ae->comp = magic_comp((unsigned char *)ae->data, (size_t)got);
            continue;
        }
        int64_t got;
        if ((r = arc_read(a, s, path, buf, ae->size < 8 ? ae->size : 8, &got, err)) < 0)
            goto out;
        ae->comp = magic_comp((unsigned char *)buf, (size_t)got);
        if (m || ae->comp == CAIRN__COMP_NONE || ae->comp == ARC_COMP_OTHER)
            continue; /* read in the second pass, if needed */
        if (!(h = cairn__sha256_new())) {
            r = cairn__err(err, -ENOMEM, "out of memory");
            goto out;
        }
        cairn__sha256_update(h, buf, (size_t)got);
        for (;;) {
            la_ssize_t n = archive_read_data(a, buf, CHUNK);
            if (n < 0) {
                r = cairn__arc_fail(a, s->path, path, err);
                goto out;
            }
            if (n == 0)
                break;
            cairn__sha256_update(h, buf, (size_t)n);
        }
        cairn__sha256_final(h, ae->digest);
        cairn__sha256_free(steal_pointer(&h));
    }
out:
    cairn__sha256_free(h);
    free(buf);
    archive_read_free(a);
    return r;
}

/* An archive's member by its path, its links followed: a regular file. */
static arc_entry *arc_find_path(source *s, const char *path)
{
    _cleanup_free_ char *p = norm_path(NULL, path);
    for (int hops = 0; p && hops < 16; hops++) {
        arc_entry *hit = NULL;
        for (size_t i = s->n_ents; i-- > 0 && !hit;)
            if (!strcmp(s->ents[i].path, p))
                hit = &s->ents[i];
        if (!hit || !hit->link)
            return hit;
        free(p);
        p = hit->link ? strdup(hit->link) : NULL;
    }
    return NULL;
}

arc_entry *cairn__arc_find(source *s, const char *name)
{
    /* The last member of a name wins, as when a tar is extracted. */
    for (size_t i = s->n_ents; i-- > 0;)
        if (!strcmp(s->ents[i].name, name))
            return &s->ents[i];
    return NULL;
}

/* ---- a docker-archive ------------------------------------------------- */

/* A file of a directory source, its symlinks followed inside it only; opened
 * without blocking (a FIFO there must not hang the import). */
static int open_in_root(int rootfd, const char *path)
{
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
    if (fd < 0 && errno == ENOSYS) /* before Linux 5.6: no links at all */
        fd = openat(rootfd, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW);
    return fd < 0 ? -errno : fd;
}

/* A small file of the docker-archive (manifest.json, a config), by its path. */
static int docker_read_doc(source *s, const char *path, char **out, size_t *len,
                           cairn_error *err)
{
    if (s->archive) {
        arc_entry *e = arc_find_path(s, path);
        if (!e)
            return cairn__err(err, CAIRN_E_FORMAT, "%s: no %s in the archive", s->path, path);
        if (!e->data)
            return cairn__err(err, CAIRN_E_FORMAT, "%s: %s: larger than %u bytes", s->path, path,
                              CAIRN__OCI_JSON_MAX);
        if (!(*out = malloc((size_t)e->size + 1)))
            return cairn__err(err, -ENOMEM, "out of memory");
        memcpy(*out, e->data, (size_t)e->size + 1);
        *len = (size_t)e->size;
        return 0;
    }
    _cleanup_close_ int fd = open_in_root(s->rootfd, path);
    if (fd < 0)
        return cairn__err(err, fd == -ENOENT ? CAIRN_E_FORMAT : fd, "%s/%s: %s", s->path, path,
                          cairn_strerror(fd));
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return cairn__err(err, -errno, "%s/%s: %m", s->path, path);
    if (!S_ISREG(sb.st_mode))
        return cairn__err(err, CAIRN_E_FORMAT, "%s/%s: not a regular file", s->path, path);
    if ((uint64_t)sb.st_size > CAIRN__OCI_JSON_MAX)
        return cairn__err(err, CAIRN_E_FORMAT, "%s/%s: larger than %u bytes", s->path, path,
                          CAIRN__OCI_JSON_MAX);
    char *b = malloc((size_t)sb.st_size + 1);
    if (!b)
        return cairn__err(err, -ENOMEM, "out of memory");
    ssize_t n = cairn__read_all(fd, b, (size_t)sb.st_size);
    if (n != sb.st_size) {
        free(b);
        return cairn__err(err, n < 0 ? (int)n : CAIRN_E_TRUNCATED, "%s/%s: read: %s", s->path,
                          path, n < 0 ? cairn_strerror((int)n) : "short");
    }
    b[n] = 0;
    *out = b;
    *len = (size_t)n;
    return 0;
}

/* A layer file of the docker-archive: where it is, its size, compression
 * and digest (see the top of the file). */
static int docker_layer_file(source *s, const char *path, const char *diff_id, docker_layer *l,
                             int *comp, int64_t *size, cairn_error *err)
{
    memset(l, 0, sizeof(*l));
    if (s->archive) {
        arc_entry *e = arc_find_path(s, path);
        if (!e)
            return cairn__err(err, -ENOENT, "%s: layer %s: not in the archive", s->path, path);
        *comp = e->comp;
        *size = e->size;
        snprintf(l->digest, sizeof(l->digest), "%.71s",
                 e->name[0] == 's'           ? e->name
                 : *comp == CAIRN__COMP_NONE ? diff_id
                                             : e->digest);
        l->path = strdup(e->path);
    } else {
        _cleanup_close_ int fd = open_in_root(s->rootfd, path);
        if (fd < 0)
            return cairn__err(err, fd, "%s/%s: layer: %s", s->path, path, cairn_strerror(fd));
        struct stat sb;
        if (fstat(fd, &sb) < 0)
            return cairn__err(err, -errno, "%s/%s: %m", s->path, path);
        if (!S_ISREG(sb.st_mode))
            return cairn__err(err, CAIRN_E_FORMAT, "%s/%s: layer: not a regular file", s->path,
                              path);
        unsigned char m[8];
        ssize_t n = pread(fd, m, sizeof(m), 0);
        if (n < 0)
            return cairn__err(err, -errno, "%s/%s: read: %m", s->path, path);
        *comp = magic_comp(m, (size_t)n);
        *size = sb.st_size;
        char nbuf[80];
        _cleanup_free_ char *np = norm_path(NULL, path);
        const char *name = np ? cairn__arc_member(np, nbuf) : NULL;
        if (name && name[0] == 's')
            snprintf(l->digest, sizeof(l->digest), "%.71s", name);
        else if (*comp == CAIRN__COMP_NONE)
            snprintf(l->digest, sizeof(l->digest), "%s", diff_id);
        else if (*comp != ARC_COMP_OTHER && cairn__sha256_fd(fd, l->digest) < 0)
            return cairn__err(err, -errno, "%s/%s: read: %m", s->path, path);
        l->path = np ? strdup(np) : NULL;
    }
    if (*comp == ARC_COMP_OTHER)
        return cairn__err(err, CAIRN_E_FORMAT,
                          "%s: layer %s: compressed with bzip2 or xz, which no layer media type "
                          "names",
                          s->path, path);
    if (!l->path)
        return cairn__err(err, -ENOMEM, "out of memory");
    if (!l->digest[0]) /* a compressed member the first read did not hash */
        return cairn__err(err, CAIRN_E_FORMAT, "%s: layer %s: not a layer file", s->path, path);
    return 0;
}

static int docker_add_doc(source *s, const char *data, size_t len, char *digest_out,
                          cairn_error *err)
{
    docker_doc *nd = realloc(s->ddocs, (s->n_ddocs + 1) * sizeof(*nd));
    if (!nd)
        return cairn__err(err, -ENOMEM, "out of memory");
    s->ddocs = nd;
    docker_doc *d = &s->ddocs[s->n_ddocs];
    if (!(d->data = malloc(len + 1)))
        return cairn__err(err, -ENOMEM, "out of memory");
    memcpy(d->data, data, len);
    d->data[len] = 0;
    d->len = len;
    cairn__sha256_buf(data, len, d->digest);
    s->n_ddocs++;
    if (digest_out)
        memcpy(digest_out, d->digest, CAIRN_DIGEST_LEN + 1);
    return 0;
}

static int docker_add_layer(source *s, docker_layer *l, cairn_error *err)
{
    for (size_t i = 0; i < s->n_dlayers; i++)
        if (!strcmp(s->dlayers[i].digest, l->digest)) {
            free(l->path);
            return 0;
        }
    docker_layer *nl = realloc(s->dlayers, (s->n_dlayers + 1) * sizeof(*nl));
    if (!nl) {
        free(l->path);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    s->dlayers = nl;
    s->dlayers[s->n_dlayers++] = *l;
    return 0;
}

/* One entry of manifest.json: its config and manifest made documents, its
 * layers mapped, its descriptors (one per RepoTag) appended to `index`. */
static int docker_entry(source *s, json_t *ent, size_t k, json_t *index, cairn_error *err)
{
    char w[64];
    snprintf(w, sizeof(w), "manifest.json[%zu]", k);
    json_t *cp = json_object_get(ent, "Config"), *ls = json_object_get(ent, "Layers");
    json_t *tags = json_object_get(ent, "RepoTags"), *srcs = json_object_get(ent, "LayerSources");
    if (!json_is_object(ent) || !json_is_string(cp) || !json_is_array(ls) ||
        (tags && !json_is_null(tags) && !json_is_array(tags)))
        return cairn__err(err, CAIRN_E_FORMAT,
                          "%s: %s: expected {\"Config\": PATH, \"RepoTags\": [...], \"Layers\": "
                          "[PATH...]}",
                          s->path, w);
    _cleanup_free_ char *cbuf = NULL;
    size_t clen = 0;
    int r = docker_read_doc(s, json_string_value(cp), &cbuf, &clen, err);
    if (r < 0)
        return r;
    char what[4200], cdigest[CAIRN_DIGEST_LEN + 1];
    snprintf(what, sizeof(what), "%s: %s", s->path, json_string_value(cp));
    cairn__oci_config cfg = {0};
    if ((r = cairn__oci_parse_config(cbuf, clen, what, &cfg, err)) < 0)
        return r;
    json_t *layers = json_array();
    bool oci = false;
    if (cfg.n_diff_ids != json_array_size(ls))
        r = cairn__err(err, CAIRN_E_FORMAT, "%s: %s: %zu layers for the %zu diff ids of its config",
                       s->path, w, json_array_size(ls), cfg.n_diff_ids);
    for (size_t j = 0; r == 0 && j < cfg.n_diff_ids; j++) {
        json_t *lp = json_array_get(ls, j);
        json_t *src = json_is_object(srcs) ? json_object_get(srcs, cfg.diff_ids[j]) : NULL;
        const char *smt = src ? json_string_value(json_object_get(src, "mediaType")) : NULL;
        const char *why = smt ? cairn__oci_layer_refusal(smt) : "";
        if (why[0]) {
            r = cairn__err(err, CAIRN_E_FORMAT, "%s: %s: layer %zu (%s) is of type \"%s\": %s",
                           s->path, w, j, cfg.diff_ids[j], smt, why);
            break;
        }
        if (!json_is_string(lp)) {
            r = cairn__err(err, CAIRN_E_FORMAT, "%s: %s: Layers[%zu] is not a path", s->path, w, j);
            break;
        }
        docker_layer l;
        int comp = CAIRN__COMP_NONE;
        int64_t size = 0;
        if ((r = docker_layer_file(s, json_string_value(lp), cfg.diff_ids[j], &l, &comp, &size,
                                   err)) < 0)
            break;
        oci |= comp == CAIRN__COMP_ZSTD;
        json_array_append_new(
            layers, json_pack("{s:s, s:I, s:s}", "mediaType",
                              comp == CAIRN__COMP_GZIP   ? CAIRN__MT_DOCKER_LAYER
                              : comp == CAIRN__COMP_ZSTD ? CAIRN__MT_OCI_LAYER_ZST
                                                         : CAIRN__MT_DOCKER_LAYER_TAR,
                              "size", (json_int_t)size, "digest", l.digest));
        r = docker_add_layer(s, &l, err);
    }
    cairn__oci_config_clear(&cfg);
    if (r == 0)
        r = docker_add_doc(s, cbuf, clen, cdigest, err);
    if (r < 0) {
        json_decref(layers);
        return r;
    }
    /* Docker schema 2 has no zstd type: a manifest with such a layer is OCI's. */
    if (oci) {
        size_t i;
        json_t *l;
        json_array_foreach(layers, i, l) {
            const char *mt = json_string_value(json_object_get(l, "mediaType"));
            if (!strcmp(mt, CAIRN__MT_DOCKER_LAYER))
                json_object_set_new(l, "mediaType", json_string(CAIRN__MT_OCI_LAYER_GZ));
            else if (!strcmp(mt, CAIRN__MT_DOCKER_LAYER_TAR))
                json_object_set_new(l, "mediaType", json_string(CAIRN__MT_OCI_LAYER));
        }
    }
    const char *mmt = oci ? CAIRN__MT_OCI_MANIFEST : CAIRN__MT_DOCKER_MANIFEST;
    json_t *man = json_pack("{s:i, s:s, s:{s:s, s:I, s:s}, s:o}", "schemaVersion", 2,
                            "mediaType", mmt, "config", "mediaType",
                            oci ? CAIRN__MT_OCI_CONFIG : CAIRN__MT_DOCKER_CONFIG, "size",
                            (json_int_t)clen, "digest", cdigest, "layers", layers);
    _cleanup_free_ char *mjson = man ? json_dumps(man, JSON_COMPACT) : NULL;
    json_decref(man);
    char mdigest[CAIRN_DIGEST_LEN + 1];
    if (!mjson)
        return cairn__err(err, -ENOMEM, "out of memory");
    if ((r = docker_add_doc(s, mjson, strlen(mjson), mdigest, err)) < 0)
        return r;
    size_t n_tags = json_is_array(tags) ? json_array_size(tags) : 0;
    for (size_t t = 0; t < (n_tags ? n_tags : 1); t++) {
        json_t *d = json_pack("{s:s, s:s, s:I}", "mediaType", mmt, "digest", mdigest, "size",
                              (json_int_t)strlen(mjson));
        json_t *tag = n_tags ? json_array_get(tags, t) : NULL;
        if (d && json_is_string(tag))
            json_object_set_new(d, "annotations",
                                json_pack("{s:O}", CAIRN__ANNOT_REF_NAME, tag));
        if (!d || json_array_append_new(index, d) < 0)
            return cairn__err(err, -ENOMEM, "out of memory");
    }
    return 0;
}

static int docker_prepare(source *s, cairn_error *err)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    int r = docker_read_doc(s, "manifest.json", &buf, &len, err);
    if (r < 0)
        return r;
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return cairn__err(err, CAIRN_E_FORMAT, "%s: manifest.json: malformed JSON at line %d: %s",
                          s->path, je.line, je.text);
    json_t *ms = json_array();
    if (!json_is_array(root) || !json_array_size(root))
        r = cairn__err(err, CAIRN_E_FORMAT, "%s: manifest.json: not a list of images", s->path);
    for (size_t k = 0; r == 0 && k < json_array_size(root); k++)
        r = docker_entry(s, json_array_get(root, k), k, ms, err);
    json_decref(root);
    json_t *idx = r == 0 ? json_pack("{s:i, s:s, s:o}", "schemaVersion", 2, "mediaType",
                                     CAIRN__MT_OCI_INDEX, "manifests", ms)
                         : (json_decref(ms), NULL);
    if (r < 0)
        return r;
    s->docker_index = idx ? json_dumps(idx, JSON_COMPACT) : NULL;
    json_decref(idx);
    if (!s->docker_index)
        return cairn__err(err, -ENOMEM, "out of memory");
    s->docker_index_len = strlen(s->docker_index);
    s->docker = true;
    return 0;
}

int cairn__source_open(source *s, const char *path, cairn_error *err)
{
    memset(s, 0, sizeof(*s));
    s->path = path;
    s->rootfd = -1;
    s->blobfd = -1;
    struct stat sb;
    if (stat(path, &sb) < 0)
        return cairn__err(err, -errno, "%s: %m", path);
    if (S_ISDIR(sb.st_mode)) {
        s->rootfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->rootfd < 0)
            return cairn__err(err, -errno, "%s: %m", path);
        s->blobfd = openat(s->rootfd, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->blobfd < 0 && errno != ENOENT)
            return cairn__err(err, -errno, "%s/blobs/sha256: %m", path);
        /* An OCI layout first (Docker 25's archive is both). */
        if (faccessat(s->rootfd, "oci-layout", F_OK, AT_SYMLINK_NOFOLLOW) < 0 &&
            faccessat(s->rootfd, "manifest.json", F_OK, AT_SYMLINK_NOFOLLOW) == 0)
            return docker_prepare(s, err);
        return 0;
    }
    if (!S_ISREG(sb.st_mode))
        return cairn__err(err, CAIRN_E_FORMAT,
                          "%s: neither an image layout directory nor an oci-archive file", path);
    s->archive = true;
    int r = arc_scan(s, err);
    if (r == 0 && !cairn__arc_find(s, "oci-layout") && arc_find_path(s, "manifest.json"))
        r = docker_prepare(s, err);
    return r;
}

int cairn__source_open_blob(source *s, const char *digest)
{
    if (s->docker)
        for (size_t i = 0; i < s->n_dlayers; i++)
            if (!strcmp(s->dlayers[i].digest, digest))
                return open_in_root(s->rootfd, s->dlayers[i].path);
    if (s->blobfd < 0)
        return -ENOENT;
    int fd = openat(s->blobfd, cairn__digest_hex(digest),
                    O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    return fd < 0 ? -errno : fd;
}

const char *cairn__source_member(source *s, const char *path, char buf[80])
{
    if (!s->docker)
        return cairn__arc_member(path, buf);
    _cleanup_free_ char *p = norm_path(NULL, path);
    for (size_t i = 0; p && i < s->n_dlayers; i++)
        if (!strcmp(s->dlayers[i].path, p)) {
            snprintf(buf, 80, "%s", s->dlayers[i].digest);
            return buf;
        }
    return NULL;
}

bool cairn__source_has_blob(source *s, const char *digest)
{
    if (s->docker)
        for (size_t i = 0; i < s->n_dlayers; i++)
            if (!strcmp(s->dlayers[i].digest, digest))
                return true;
    return cairn__arc_find(s, digest) != NULL;
}

const char *cairn__source_blobs_where(source *s, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s", s->path, s->archive || s->docker ? "" : "/blobs/sha256");
    return buf;
}

/* A top-level file of the layout (oci-layout, index.json), NUL-terminated. */
int cairn__source_read_file(source *s, const char *name, char **out, size_t *len,
                            cairn_error *err)
{
    if (s->docker && !strcmp(name, "index.json")) {
        if (!(*out = strdup(s->docker_index)))
            return cairn__err(err, -ENOMEM, "out of memory");
        *len = s->docker_index_len;
        return 0;
    }
    if (s->archive) {
        arc_entry *e = cairn__arc_find(s, name);
        if (!e)
            return cairn__err(err, CAIRN_E_FORMAT,
                              "%s: no %s in the archive: neither an oci-archive nor a "
                              "docker-archive (no manifest.json)",
                              s->path, name);
        if (!e->data)
            return cairn__err(err, CAIRN_E_FORMAT, "%s: %s: larger than %u bytes", s->path, name,
                              CAIRN__OCI_JSON_MAX);
        char *d = malloc((size_t)e->size + 1);
        if (!d)
            return cairn__err(err, -ENOMEM, "out of memory");
        memcpy(d, e->data, (size_t)e->size + 1);
        *out = d;
        *len = (size_t)e->size;
        return 0;
    }
    int r = cairn__read_file_at(s->rootfd, name, CAIRN__OCI_JSON_MAX, out, len);
    if (r == -ENOENT)
        return cairn__err(err, CAIRN_E_FORMAT,
                          "%s: no %s file: neither an OCI image layout nor a docker-archive (no "
                          "manifest.json)",
                          s->path, name);
    if (r == -EFBIG)
        return cairn__err(err, CAIRN_E_FORMAT, "%s/%s: larger than %u bytes", s->path, name,
                          CAIRN__OCI_JSON_MAX);
    if (r == CAIRN_E_FORMAT)
        return cairn__err(err, r, "%s/%s: not a regular file", s->path, name);
    if (r < 0)
        return cairn__err(err, r, "%s/%s: %m", s->path, name);
    return 0;
}

/* A JSON blob named by a descriptor, checked against its digest and size. */
int cairn__source_read_blob(source *s, const cairn__oci_desc *d, const char *role, char **out,
                            size_t *len, cairn_error *err)
{
    if ((uint64_t)d->size > CAIRN__OCI_JSON_MAX)
        return cairn__err(err, CAIRN_E_FORMAT, "%s %s: %lld bytes, larger than %u", role,
                          d->digest, (long long)d->size, CAIRN__OCI_JSON_MAX);
    _cleanup_free_ char *buf = NULL;
    size_t n = 0;
    const docker_doc *dd = NULL;
    for (size_t i = 0; s->docker && i < s->n_ddocs && !dd; i++)
        if (!strcmp(s->ddocs[i].digest, d->digest))
            dd = &s->ddocs[i];
    if (dd) {
        if (!(buf = malloc(dd->len + 1)))
            return cairn__err(err, -ENOMEM, "out of memory");
        memcpy(buf, dd->data, dd->len + 1);
        n = dd->len;
    } else if (s->archive) {
        arc_entry *e = cairn__arc_find(s, d->digest);
        if (!e)
            return cairn__err(err, -ENOENT, "%s %s: missing from %s", role, d->digest, s->path);
        if (!e->data || e->size != d->size)
            return cairn__err(err, CAIRN_E_MISMATCH,
                              "%s %s: %lld bytes in %s, the descriptor says %lld", role, d->digest,
                              (long long)e->size, s->path, (long long)d->size);
        buf = malloc((size_t)e->size + 1);
        if (!buf)
            return cairn__err(err, -ENOMEM, "out of memory");
        memcpy(buf, e->data, (size_t)e->size + 1);
        n = (size_t)e->size;
    } else {
        int r = s->blobfd < 0 ? -ENOENT
                              : cairn__read_file_at(s->blobfd, cairn__digest_hex(d->digest),
                                                    (size_t)d->size, &buf, &n);
        if (r == -ENOENT)
            return cairn__err(err, -ENOENT, "%s %s: missing from %s/blobs/sha256", role,
                              d->digest, s->path);
        if (r == -EFBIG)
            return cairn__err(err, CAIRN_E_MISMATCH,
                              "%s %s: larger than the %lld bytes its descriptor says", role,
                              d->digest, (long long)d->size);
        if (r == CAIRN_E_FORMAT)
            return cairn__err(err, r, "%s %s: %s/blobs/sha256: not a regular file", role,
                              d->digest, s->path);
        if (r < 0)
            return cairn__err(err, r, "%s %s: %s/blobs/sha256: %m", role, d->digest, s->path);
        if ((int64_t)n != d->size)
            return cairn__err(err, n < (size_t)d->size ? CAIRN_E_TRUNCATED : CAIRN_E_MISMATCH,
                              "%s %s: %zu bytes, the descriptor says %lld", role, d->digest, n,
                              (long long)d->size);
    }
    char got[CAIRN_DIGEST_LEN + 1];
    cairn__sha256_buf(buf, n, got);
    if (strcmp(got, d->digest) != 0)
        return cairn__err(err, CAIRN_E_MISMATCH, "%s %s: the data's digest is %s", role,
                          d->digest, got);
    *out = steal_pointer(&buf);
    *len = n;
    return 0;
}
