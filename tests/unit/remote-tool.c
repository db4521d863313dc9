/* remote-tool.c: a remote backend's vtable (lib/remote/backend.h) as a
 * command, for the tests that run it against real servers:
 *   remote-tool URL put FILE...          store each (digest checked first), print digests
 *   remote-tool URL get DIGEST OUT       fetch, hash against the name, refuse wrong bytes
 *   remote-tool URL have DIGEST...       "DIGEST 1" or "DIGEST 0" a line
 *   remote-tool URL ls                   "DIGEST SIZE MTIME_NS" a line
 *   remote-tool URL rm DIGEST...
 *   remote-tool URL state-put TAG FILE   publish FILE (a manifest) under TAG
 *   remote-tool URL states [TAG]         "TAG DIGEST MTIME_NS" a line
 *   remote-tool URL state-get TAG DIGEST OUT
 *   remote-tool URL state-rm TAG DIGEST
 * REMOTE_JOBS sets conf.jobs. Errors: the backend's message on stderr, exit 1.
 */
#include <inttypes.h>
#include <sys/stat.h>

#include "remote/backend.h"

static const cairn__remote_ops *const ops_all[] = {&cairn__remote_file, &cairn__remote_s3,
                                                   &cairn__remote_oci};

static int print_blob(void *ud, const char *digest, uint64_t size, int64_t mtime)
{
    (void)ud;
    printf("%s %" PRIu64 " %" PRId64 "\n", digest, size, mtime);
    return 0;
}

static int print_state(void *ud, const char *tag, const char *digest, int64_t mtime)
{
    (void)ud;
    printf("%s %s %" PRId64 "\n", tag, digest, mtime);
    return 0;
}

static int fail(const cairn_error *err)
{
    fprintf(stderr, "remote-tool: %s\n", err->message);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: remote-tool URL CMD ARGS...\n");
        return 2;
    }
    const char *url = argv[1], *cmd = argv[2];
    const cairn__remote_ops *ops = NULL;
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(ops_all); i++) {
        size_t n = strlen(ops_all[i]->scheme);
        if (!strncmp(url, ops_all[i]->scheme, n) && !strncmp(url + n, "://", 3))
            ops = ops_all[i];
    }
    if (!ops) {
        fprintf(stderr, "remote-tool: %s: no backend for that scheme\n", url);
        return 2;
    }
    cairn__remote_conf conf = {.url = url};
    const char *jobs = getenv("REMOTE_JOBS");
    conf.jobs = jobs ? (unsigned)atoi(jobs) : 0;
    cairn_error err = {0};
    cairn__remote *r;
    if (ops->open(&conf, &r, &err) < 0)
        return fail(&err);
    int rc = 0;
    if (!strcmp(cmd, "put")) {
        for (int i = 3; i < argc && rc == 0; i++) {
            int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
            struct stat sb;
            if (fd < 0 || fstat(fd, &sb) < 0) {
                perror(argv[i]);
                rc = 1;
                break;
            }
            char d[CAIRN_DIGEST_LEN + 1];
            if (cairn__sha256_fd(fd, d) < 0) {
                perror(argv[i]);
                rc = 1;
            } else if (ops->blob_put(r, d, fd, (uint64_t)sb.st_size, "", NULL, NULL, &err) < 0) {
                rc = fail(&err);
            } else {
                printf("%s\n", d);
            }
            close(fd);
        }
    } else if (!strcmp(cmd, "get") && argc == 5) {
        int fd = open(argv[4], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            perror(argv[4]);
            rc = 1;
        } else if (ops->blob_get(r, argv[3], fd, NULL, NULL, &err) < 0) {
            rc = fail(&err);
        } else {
            /* as the core does: hash what came against its name */
            char d[CAIRN_DIGEST_LEN + 1];
            if (lseek(fd, 0, SEEK_SET) < 0 || cairn__sha256_fd(fd, d) < 0 ||
                strcmp(d, argv[3]) != 0) {
                fprintf(stderr, "remote-tool: blob %s: the bytes fetched hash to %s\n", argv[3], d);
                rc = 1;
            }
        }
        if (fd >= 0)
            close(fd);
        if (rc)
            unlink(argv[4]);
    } else if (!strcmp(cmd, "have")) {
        size_t n = (size_t)(argc - 3);
        uint8_t *present = calloc(n ? n : 1, 1);
        if (ops->blobs_have(r, (const char *const *)argv + 3, n, present, &err) < 0)
            rc = fail(&err);
        for (size_t i = 0; i < n && rc == 0; i++)
            printf("%s %d\n", argv[3 + i], present[i]);
        free(present);
    } else if (!strcmp(cmd, "ls")) {
        if (ops->blobs_list(r, print_blob, NULL, &err) < 0)
            rc = fail(&err);
    } else if (!strcmp(cmd, "rm")) {
        for (int i = 3; i < argc && rc == 0; i++)
            if (ops->blob_delete(r, argv[i], &err) < 0)
                rc = fail(&err);
    } else if (!strcmp(cmd, "state-put") && argc == 5) {
        char *buf = NULL;
        size_t len = 0;
        if (cairn__read_file_at(AT_FDCWD, argv[4], 8u << 20, &buf, &len) < 0) {
            perror(argv[4]);
            rc = 1;
        } else {
            char d[CAIRN_DIGEST_LEN + 1];
            cairn__sha256_buf(buf, len, d);
            if (ops->state_put(r, argv[3], d, buf, len, &err) < 0)
                rc = fail(&err);
            else
                printf("%s\n", d);
        }
        free(buf);
    } else if (!strcmp(cmd, "states") && argc <= 4) {
        if (ops->states_list(r, argc == 4 ? argv[3] : NULL, print_state, NULL, &err) < 0)
            rc = fail(&err);
    } else if (!strcmp(cmd, "state-get") && argc == 6) {
        _cleanup_fclose_ FILE *f = NULL;
        char *buf = NULL;
        size_t len = 0;
        if (ops->state_get(r, argv[3], argv[4], &buf, &len, &err) < 0) {
            rc = fail(&err);
        } else {
            char d[CAIRN_DIGEST_LEN + 1];
            cairn__sha256_buf(buf, len, d);
            if (strcmp(d, argv[4]) != 0) {
                fprintf(stderr, "remote-tool: state %s: its bytes hash to %s\n", argv[4], d);
                rc = 1;
            } else if (!(f = fopen(argv[5], "we")) || fwrite(buf, 1, len, f) != len ||
                       fclose(steal_pointer(&f)) != 0) {
                perror(argv[5]);
                rc = 1;
            }
        }
        free(buf);
    } else if (!strcmp(cmd, "state-rm") && argc == 5) {
        if (ops->state_delete(r, argv[3], argv[4], &err) < 0)
            rc = fail(&err);
    } else {
        fprintf(stderr, "remote-tool: %s: unknown command or wrong arguments\n", cmd);
        rc = 2;
    }
    ops->close(r);
    return rc;
}
