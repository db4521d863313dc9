/* cmd-blob.c: cairn blob put|get|ls|stat|rm|label. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1u << 20)

/* One input through the streaming writer, drawing progress for large ones. */
static int put_one(cli *c, cairn_state *st, int fd, const char *name,
                   const cairn_blob_put_options *po, char *digest, cairn_error *err)
{
    struct stat sb;
    uint64_t total = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size : 0;
    cairn_blob_writer *w = NULL;
    int r = cairn_blob_writer_new(&w, st, po, err);
    if (r < 0)
        return r;
    cli_progress p;
    cli_progress_init(&p, c, name, true);
    uint64_t done = 0;
    for (;;) {
        /* The library reads straight into its staging buffers. */
        int64_t n = cairn_blob_writer_write_fd(w, fd, 16u << 20, err);
        if (n < 0) {
            r = (int)n;
            char m[sizeof(err->message) + 256];
            int k = snprintf(m, sizeof(m), "%.200s: %s", name, err->message);
            size_t len = k < 0 ? 0 : (size_t)k;
            if (len >= sizeof(err->message))
                len = sizeof(err->message) - 1;
            memcpy(err->message, m, len);
            err->message[len] = 0;
            break;
        }
        if (n == 0)
            break;
        done += (uint64_t)n;
        if (total > (64u << 20))
            cli_progress_cb(&p, done, total);
    }
    if (r == 0)
        r = cairn_blob_writer_commit(w, digest, err);
    cli_progress_done(&p);
    cairn_blob_writer_free(w);
    return r;
}

static int cmd_put(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"digest", required_argument, NULL, 'd'},
                                       {"media-type", required_argument, NULL, 't'},
                                       {"label", required_argument, NULL, 'l'},
                                       {"size", required_argument, NULL, 's'},
                                       {NULL, 0, NULL, 0}};
    cairn_blob_put_options po = CAIRN_BLOB_PUT_OPTIONS_INIT;
    const char **labels = calloc((size_t)argc + 1, sizeof(char *));
    size_t nlabels = 0;
    int opt;
    if (!labels)
        return cli_failf(c, "out of memory");
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        switch (opt) {
        case 'd':
            po.expected = optarg;
            break;
        case 't':
            po.media_type = optarg;
            break;
        case 'l':
            if (!strchr(optarg, '=') || optarg[0] == '=') {
                free(labels);
                return cli_usage_error(c, "--label '%s': expected key=value", optarg);
            }
            labels[nlabels++] = optarg;
            break;
        case 's': {
            char *end;
            errno = 0;
            long long v = strtoll(optarg, &end, 10);
            if (errno || *end || v < 0) {
                free(labels);
                return cli_usage_error(c, "--size '%s': expected a number of bytes", optarg);
            }
            po.expected_size = v;
            break;
        }
        default: {
            int r = cli_opt(c, opt);
            if (r >= 0) {
                free(labels);
                return r;
            }
        }
        }
    }
    if (nlabels)
        po.labels = labels;
    int nfiles = argc - optind;
    char *const *files = argv + optind;
    static char *const stdin_only[] = {"-"};
    if (nfiles == 0) {
        files = stdin_only;
        nfiles = 1;
    }
    if (po.expected && nfiles > 1) {
        free(labels);
        return cli_usage_error(c, "--digest goes with one input only");
    }
    if (po.expected) {
        cairn_error e = {0};
        if (cairn_digest_check(po.expected, &e) < 0) {
            free(labels);
            return cli_fail(c, &e);
        }
    }
    cairn_state *st = NULL;
    int r = cli_open(c, 0, &st);
    if (r) {
        free(labels);
        return r;
    }
    cairn_error err = {0};
    json_t *out = c->json ? json_array() : NULL;
    int rc = EXIT_OK;
    char (*digests)[CAIRN_DIGEST_LEN + 1] = calloc((size_t)nfiles, sizeof(*digests));
    if (!digests) {
        rc = cli_failf(c, "out of memory");
        goto done;
    }
    if (nfiles == 1) {
        int fd = strcmp(files[0], "-") ? open(files[0], O_RDONLY | O_CLOEXEC) : 0;
        if (fd < 0) {
            rc = cli_failf(c, "%s: %s", files[0], strerror(errno));
            goto done;
        }
        r = put_one(c, st, fd, files[0], &po, digests[0], &err);
        if (fd > 0)
            close(fd);
        if (r < 0) {
            rc = cli_fail(c, &err);
            goto done;
        }
    } else {
        /* Many inputs: one batch, one sync, one transaction. */
        cairn_blob_batch *b = NULL;
        if (cairn_blob_batch_new(&b, st, &err) < 0) {
            rc = cli_fail(c, &err);
            goto done;
        }
        cli_progress p;
        cli_progress_init(&p, c, "put", false);
        for (int i = 0; i < nfiles; i++) {
            int fd = strcmp(files[i], "-") ? open(files[i], O_RDONLY | O_CLOEXEC) : 0;
            if (fd < 0) {
                cli_progress_done(&p);
                rc = cli_failf(c, "%s: %s; nothing was stored", files[i], strerror(errno));
                cairn_blob_batch_free(b);
                goto done;
            }
            r = cairn_blob_batch_put_fd(b, fd, &po, digests[i], &err);
            if (fd > 0)
                close(fd);
            if (r < 0) {
                cli_progress_done(&p);
                rc = cli_failf(c, "%s: %s; nothing was stored", files[i], err.message);
                cairn_blob_batch_free(b);
                goto done;
            }
            if (nfiles > 100)
                cli_progress_cb(&p, (uint64_t)i + 1, (uint64_t)nfiles);
        }
        cli_progress_done(&p);
        r = cairn_blob_batch_commit(b, &err);
        cairn_blob_batch_free(b);
        if (r < 0) {
            rc = cli_fail(c, &err);
            goto done;
        }
    }
    for (int i = 0; i < nfiles; i++) {
        if (out)
            json_array_append_new(out, json_pack("{s:s, s:s}", "file", files[i], "digest",
                                                 digests[i]));
        else if (nfiles > 1)
            printf("%s  %s\n", digests[i], files[i]);
        else
            printf("%s\n", digests[i]);
    }
done:
    if (out && rc == EXIT_OK)
        cli_json_print(out);
    else
        json_decref(out);
    free(digests);
    free(labels);
    cairn_state_free(st);
    return rc;
}

static int cmd_get(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"output", required_argument, NULL, 'o'},
                                       {"verify", no_argument, NULL, 'v'},
                                       {NULL, 0, NULL, 0}};
    const char *output = NULL;
    int verify = 0, opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "o:", lo, NULL)) != -1) {
        if (opt == 'o')
            output = optarg;
        else if (opt == 'v')
            verify = 1;
        else {
            int r = cli_opt(c, opt);
            if (r >= 0)
                return r;
        }
    }
    if (argc - optind != 1)
        return cli_usage_error(c, "expected one digest");
    cairn_state *st = NULL;
    int r = cli_open(c, CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    cairn_error err = {0};
    int fd = -1;
    if (cairn_blob_open(st, argv[optind], verify, &fd, &err) < 0) {
        cairn_state_free(st);
        return cli_fail(c, &err);
    }
    cairn_state_free(st);
    cli_out out;
    if (cli_out_open(c, &out, output) < 0) {
        close(fd);
        return EXIT_FAIL;
    }
    char *buf = malloc(CHUNK);
    int rc = EXIT_OK;
    for (;;) {
        ssize_t n = buf ? read(fd, buf, CHUNK) : -1;
        if (n < 0) {
            if (buf && errno == EINTR)
                continue;
            rc = cli_failf(c, "blob %s: read: %s", argv[optind], strerror(errno));
            break;
        }
        if (n == 0)
            break;
        for (ssize_t o = 0; o < n;) {
            ssize_t w = write(out.fd, buf + o, (size_t)(n - o));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                rc = cli_failf(c, "%s: write: %s", out.path, strerror(errno));
                break;
            }
            o += w;
        }
        if (rc)
            break;
    }
    free(buf);
    close(fd);
    if (cli_out_close(c, &out, rc == EXIT_OK) < 0)
        rc = EXIT_FAIL;
    return rc;
}

struct ls_ctx {
    json_t *list;
};

static int ls_row(void *ud, const cairn_blob_info *b)
{
    struct ls_ctx *x = ud;
    if (x->list)
        json_array_append_new(x->list, json_pack("{s:s, s:I, s:s, s:I, s:i}", "digest", b->digest,
                                                 "size", (json_int_t)b->size, "media_type",
                                                 b->media_type, "created", (json_int_t)b->created,
                                                 "lower", b->lower));
    else
        printf("%s %12llu %s\n", b->digest, (unsigned long long)b->size,
               b->media_type[0] ? b->media_type : "-");
    return 0;
}

static int cmd_ls(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"media-type", required_argument, NULL, 't'},
                                       {NULL, 0, NULL, 0}};
    const char *mt = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        if (opt == 't')
            mt = optarg;
        else {
            int r = cli_opt(c, opt);
            if (r >= 0)
                return r;
        }
    }
    if (optind < argc)
        return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
    cairn_state *st = NULL;
    int r = cli_open(c, CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    struct ls_ctx x = {c->json ? json_array() : NULL};
    cairn_error err = {0};
    r = cairn_blob_list(st, mt, ls_row, &x, &err);
    cairn_state_free(st);
    if (r < 0) {
        json_decref(x.list);
        return cli_fail(c, &err);
    }
    if (x.list)
        cli_json_print(x.list);
    return EXIT_OK;
}

static int label_row(void *ud, const char *k, const char *v)
{
    json_t *o = ud;
    if (o)
        json_object_set_new(o, k, json_string(v));
    else
        printf("label:      %s=%s\n", k, v);
    return 0;
}

static int cmd_stat(cli *c, int argc, char **argv)
{
    int r0 = cli_common_only(c, argc, argv);
    if (r0 >= 0)
        return r0;
    if (argc - optind != 1)
        return cli_usage_error(c, "expected one digest");
    cairn_state *st = NULL;
    int r = cli_open(c, CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    cairn_error err = {0};
    cairn_blob_info b;
    if (cairn_blob_stat(st, argv[optind], &b, &err) < 0) {
        cairn_state_free(st);
        return cli_fail(c, &err);
    }
    json_t *labels = c->json ? json_object() : NULL;
    time_t t = (time_t)b.created; /* printed as image ls prints its dates; --json keeps seconds */
    struct tm tm;
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", gmtime_r(&t, &tm));
    if (!c->json)
        printf("digest:     %s\nsize:       %llu\nmedia type: %s\ncreated:    %s\nlayer:      "
               "%s\n",
               b.digest, (unsigned long long)b.size, b.media_type[0] ? b.media_type : "-", when,
               b.lower ? "lower" : "this state");
    r = cairn_blob_label_list(st, b.digest, label_row, labels, &err);
    cairn_state_free(st);
    if (r < 0) {
        json_decref(labels);
        return cli_fail(c, &err);
    }
    if (c->json)
        cli_json_print(json_pack("{s:s, s:I, s:s, s:I, s:i, s:o}", "digest", b.digest, "size",
                                 (json_int_t)b.size, "media_type", b.media_type, "created",
                                 (json_int_t)b.created, "lower", b.lower, "labels", labels));
    return EXIT_OK;
}

static int cmd_rm(cli *c, int argc, char **argv)
{
    return cli_rm_command(c, argc, argv, "blob", "one or more digests", cairn_blob_remove);
}

static int cmd_label(cli *c, int argc, char **argv)
{
    int r0 = cli_common_only(c, argc, argv);
    if (r0 >= 0)
        return r0;
    if (argc - optind < 2)
        return cli_usage_error(c, "expected a digest and KEY=VALUE or KEY- to clear");
    cairn_state *st = NULL;
    int r = cli_open(c, 0, &st);
    if (r)
        return r;
    int rc = EXIT_OK;
    for (int i = optind + 1; i < argc && rc == EXIT_OK; i++) {
        cairn_error err = {0};
        char *kv = argv[i];
        char *eq = strchr(kv, '=');
        size_t n = strlen(kv);
        if (eq) {
            *eq = 0;
            r = cairn_blob_label_set(st, argv[optind], kv, eq + 1, &err);
        } else if (n > 1 && kv[n - 1] == '-') {
            kv[n - 1] = 0;
            r = cairn_blob_label_set(st, argv[optind], kv, NULL, &err);
        } else {
            cairn_state_free(st);
            return cli_usage_error(c, "'%s': expected KEY=VALUE or KEY-", kv);
        }
        if (r < 0)
            rc = cli_fail(c, &err);
    }
    cairn_state_free(st);
    return rc;
}

const cli_command cli_blob_commands[] = {
    {"blob put", cmd_put,
     "[FILE...|-] [--digest D] [--media-type T] [--label K=V]... [--size N]",
     "store files (or standard input) as blobs and print their digests; several files are "
     "stored in one batch"},
    {"blob get", cmd_get, "DIGEST [-o FILE] [--verify]",
     "write a blob to standard output or FILE; --verify hashes it first"},
    {"blob ls", cmd_ls, "[--media-type T]", "list blobs (with the lowers') sorted by digest"},
    {"blob stat", cmd_stat, "DIGEST", "print a blob's size, media type, creation time and labels"},
    {"blob rm", cmd_rm, "DIGEST...", "remove blobs of this state"},
    {"blob label", cmd_label, "DIGEST KEY=VALUE|KEY-...", "set or clear labels on a blob"},
    {NULL, NULL, NULL, NULL},
};
