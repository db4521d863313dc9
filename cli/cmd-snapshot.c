/* cmd-snapshot.c: cairn snapshot prepare|view|mounts|commit|rm|ls|stat|checkout,
 * cairn layer import|export, cairn mount and cairn umount. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { OPT_LABEL = 256, OPT_PARENT, OPT_DIFF_ID, OPT_COMPRESSION, OPT_OUTPUT, OPT_COPY,
       OPT_ACTIVE };

typedef struct opts {
    const char *label, *parent, *diff_id, *output;
    int compression;
    bool copy, active;
} opts;

/* Parse options; returns -1 to go on, else an exit code. Positional
 * arguments are left at argv[optind..]. */
static int parse(cli *c, int argc, char **argv, const struct option *extra, size_t nextra,
                 opts *o)
{
    struct option lo[16] = {CLI_COMMON_LONGOPTS};
    size_t n = 4;
    bool output = false; /* -o only where the command writes a file */
    for (size_t i = 0; i < nextra && n < 15; i++) {
        lo[n++] = extra[i];
        output |= extra[i].val == OPT_OUTPUT;
    }
    memset(&lo[n], 0, sizeof(lo[n]));
    const char *shortopts = output ? CLI_COMMON_SHORTOPTS "o:" : CLI_COMMON_SHORTOPTS;
    int opt;
    while ((opt = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        switch (opt) {
        case OPT_LABEL:
            o->label = optarg;
            break;
        case OPT_PARENT:
            o->parent = optarg;
            break;
        case OPT_DIFF_ID:
            o->diff_id = optarg;
            break;
        case 'o':
        case OPT_OUTPUT:
            o->output = optarg;
            break;
        case OPT_COPY:
            o->copy = true;
            break;
        case OPT_ACTIVE:
            o->active = true;
            break;
        case OPT_COMPRESSION:
            if (!strcmp(optarg, "none"))
                o->compression = CAIRN_COMPRESSION_NONE;
            else if (!strcmp(optarg, "gzip"))
                o->compression = CAIRN_COMPRESSION_GZIP;
            else if (!strcmp(optarg, "zstd"))
                o->compression = CAIRN_COMPRESSION_ZSTD;
            else
                return cli_usage_error(c, "--compression '%s': expected none, gzip or zstd",
                                       optarg);
            break;
        default: {
            int r = cli_opt(c, opt);
            if (r >= 0)
                return r;
        }
        }
    }
    return -1;
}

#define PARSE(extra, npos_min, npos_max)                                                           \
    opts o = {.compression = CAIRN_COMPRESSION_NONE}; /* a layer export is a plain tar */        \
    {                                                                                              \
        int pr_ = parse(c, argc, argv, extra, sizeof(extra) / sizeof(extra[0]), &o);               \
        if (pr_ >= 0)                                                                              \
            return pr_;                                                                            \
        int np_ = argc - optind;                                                                   \
        if (np_ < (npos_min) || np_ > (npos_max))                                                  \
            return cli_usage_error(c, "expected %s", current_args(c));                             \
    }                                                                                              \
    char **pos = argv + optind;                                                                    \
    (void)pos;                                                                                     \
    (void)o

static const char *current_args(cli *c)
{
    extern const cli_command cli_snapshot_commands[];
    for (const cli_command *k = cli_snapshot_commands; k->name; k++)
        if (!strcmp(k->name, c->cmd))
            return k->args;
    return "other arguments";
}

static const struct option no_opts[] = {{"json", no_argument, NULL, 'J'}};
static const struct option label_opts[] = {{"label", required_argument, NULL, OPT_LABEL}};

static int print_id(cli *c, const char *key, const char *id)
{
    if (c->json)
        cli_json_print(json_pack("{s:s}", key, id));
    else
        printf("%s\n", id);
    return EXIT_OK;
}

static int cmd_prepare(cli *c, int argc, char **argv)
{
    PARSE(label_opts, 0, 1);
    cairn_state *st;
    int r = cli_open(c, 0, &st);
    if (r)
        return r;
    cairn_error err = {0};
    char id[CAIRN_STATE_ID_LEN + 1];
    r = cairn_snapshot_prepare(st, argc > optind ? pos[0] : NULL, o.label, id, &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    return print_id(c, "id", id);
}

static int cmd_view(cli *c, int argc, char **argv)
{
    PARSE(label_opts, 1, 1);
    cairn_state *st;
    int r = cli_open(c, 0, &st);
    if (r)
        return r;
    cairn_error err = {0};
    char id[CAIRN_STATE_ID_LEN + 1];
    r = cairn_snapshot_view(st, pos[0], o.label, id, &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    return print_id(c, "id", id);
}

static int cmd_mounts(cli *c, int argc, char **argv)
{
    PARSE(no_opts, 1, 1);
    cairn_state *st;
    int r = cli_open(c, 0, &st);
    if (r)
        return r;
    cairn_error err = {0};
    cairn_mount *m = NULL;
    r = cairn_snapshot_mounts(st, pos[0], &m, &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json) {
        char *s = cairn_mount_json(m);
        json_t *v = s ? json_loads(s, 0, NULL) : NULL;
        free(s);
        if (!v) {
            cairn_mount_free(m);
            return cli_failf(c, "out of memory");
        }
        cli_json_print(json_pack("[o]", v));
    } else {
        printf("mount -t %s %s", m->type, m->source);
        for (size_t i = 0; i < m->n_options; i++)
            printf("%s%s", i ? "," : " -o ", m->options[i]);
        printf(" TARGET\n");
    }
    cairn_mount_free(m);
    return EXIT_OK;
}

static int cmd_commit(cli *c, int argc, char **argv)
{
    PARSE(no_opts, 1, 1);
    cairn_state *st;
    int r = cli_open(c, 0, &st);
    if (r)
        return r;
    cairn_error err = {0};
    char chain[CAIRN_DIGEST_LEN + 1], diff[CAIRN_DIGEST_LEN + 1];
    r = cairn_snapshot_commit(st, pos[0], chain, diff, &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(json_pack("{s:s, s:s}", "chain_id", chain, "diff_id", diff));
    else
        printf("%s\n", chain);
    return EXIT_OK;
}

static int cmd_rm(cli *c, int argc, char **argv)
{
    PARSE(no_opts, 1, 1 << 20);
    cairn_state *st;
    int r = cli_open(c, 0, &st);
    if (r)
        return r;
    int rc = cli_rm_each(c, st, "snapshot", pos, argc - optind, cairn_snapshot_remove);
    cairn_state_free(st);
    return rc;
}

static json_t *snap_json(const cairn_snapshot_info *i)
{
    return json_pack("{s:s, s:s?, s:s, s:I, s:I, s:I, s:i}", "chain_id", i->chain_id, "parent",
                     i->parent[0] ? i->parent : NULL, "diff_id", i->diff_id, "size",
                     (json_int_t)i->size, "created", (json_int_t)i->created, "last_used",
                     (json_int_t)i->last_used, "lower", i->lower);
}

static json_t *active_json(const cairn_active_info *a)
{
    return json_pack("{s:s, s:s, s:s?, s:s, s:I}", "id", a->id, "kind", a->view ? "view" : "active",
                     "parent", a->parent[0] ? a->parent : NULL, "label", a->label, "created",
                     (json_int_t)a->created);
}

static int ls_snap(void *ud, const cairn_snapshot_info *i)
{
    if (ud) {
        json_array_append_new(ud, snap_json(i));
        return 0;
    }
    char h[32];
    printf("%s %10s %s\n", i->chain_id, cli_human(i->size, h, sizeof(h)),
           i->parent[0] ? i->parent : "-");
    return 0;
}

static int ls_active(void *ud, const cairn_active_info *a)
{
    if (ud) {
        json_array_append_new(ud, active_json(a));
        return 0;
    }
    printf("%s %-6s %s %s\n", a->id, a->view ? "view" : "active", a->parent[0] ? a->parent : "-",
           a->label);
    return 0;
}

static int cmd_ls(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {{"active", no_argument, NULL, OPT_ACTIVE}};
    PARSE(lo, 0, 0);
    cairn_state *st;
    int r = cli_open(c, CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    cairn_error err = {0};
    json_t *out = c->json ? json_array() : NULL;
    r = o.active ? cairn_snapshot_active_list(st, ls_active, out, &err)
                 : cairn_snapshot_list(st, ls_snap, out, &err);
    cairn_state_free(st);
    if (r < 0) {
        json_decref(out);
        return cli_fail(c, &err);
    }
    if (out)
        cli_json_print(out);
    return EXIT_OK;
}

static void print_time(const char *k, int64_t t)
{
    char buf[64] = "never";
    if (t) {
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    printf("%-10s %s\n", k, buf);
}

static int cmd_stat(cli *c, int argc, char **argv)
{
    PARSE(no_opts, 1, 1);
    cairn_state *st;
    int r = cli_open(c, CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    cairn_error err = {0};
    if (strncmp(pos[0], "sha256:", 7) != 0) {
        cairn_active_info a;
        r = cairn_snapshot_active_stat(st, pos[0], &a, &err);
        cairn_state_free(st);
        if (r < 0)
            return cli_fail(c, &err);
        if (c->json) {
            cli_json_print(active_json(&a));
            return EXIT_OK;
        }
        printf("id         %s\nkind       %s\nparent     %s\nlabel      %s\n", a.id,
               a.view ? "view" : "active", a.parent[0] ? a.parent : "-", a.label);
        print_time("created", a.created);
        return EXIT_OK;
    }
    cairn_snapshot_info i;
    r = cairn_snapshot_stat(st, pos[0], &i, &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json) {
        cli_json_print(snap_json(&i));
        return EXIT_OK;
    }
    char h[32];
    printf("chain_id   %s\nparent     %s\ndiff_id    %s\nsize       %s (%llu bytes)\n", i.chain_id,
           i.parent[0] ? i.parent : "-", i.diff_id, cli_human(i.size, h, sizeof(h)),
           (unsigned long long)i.size);
    print_time("created", i.created);
    print_time("last_used", i.last_used);
    if (i.lower)
        printf("lower      %d\n", i.lower);
    return EXIT_OK;
}

static int cmd_checkout(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {{"copy", no_argument, NULL, OPT_COPY}};
    PARSE(lo, 2, 2);
    cairn_state *st;
    int r = cli_open(c, CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    cairn_error err = {0};
    r = cairn_snapshot_checkout(st, pos[0], pos[1], o.copy ? CAIRN_CHECKOUT_COPY : 0, &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(json_pack("{s:s, s:s, s:i}", "chain_id", pos[0], "target", pos[1],
                                 "copied", r));
    else if (!c->quiet)
        fprintf(stderr, "checked out %s into %s (%d files copied, the rest linked)\n", pos[0],
                pos[1], r);
    return EXIT_OK;
}

static int cmd_import(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {{"parent", required_argument, NULL, OPT_PARENT},
                                       {"diff-id", required_argument, NULL, OPT_DIFF_ID}};
    PARSE(lo, 0, 1);
    const char *file = argc > optind ? pos[0] : "-";
    int fd = strcmp(file, "-") ? open(file, O_RDONLY | O_CLOEXEC) : 0;
    if (fd < 0)
        return cli_failf(c, "%s: %s", file, strerror(errno));
    cairn_state *st;
    int r = cli_open(c, 0, &st);
    if (r) {
        if (fd)
            close(fd);
        return r;
    }
    struct stat sb;
    cli_progress p;
    cli_progress_init(&p, c, file, true);
    cairn_layer_import_options io = CAIRN_LAYER_IMPORT_OPTIONS_INIT;
    io.expected_diff_id = o.diff_id;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > (64 << 20)) {
        io.progress = cli_progress_cb;
        io.progress_userdata = &p;
        cli_progress_stoppable(&p);
    }
    cairn_error err = {0};
    char chain[CAIRN_DIGEST_LEN + 1], diff[CAIRN_DIGEST_LEN + 1];
    r = cairn_layer_import(st, o.parent, fd, &io, chain, diff, &err);
    cli_progress_done(&p);
    cairn_state_free(st);
    if (fd)
        close(fd);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(json_pack("{s:s, s:s}", "chain_id", chain, "diff_id", diff));
    else
        printf("%s\n", chain);
    return EXIT_OK;
}

static int cmd_export(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {{"output", required_argument, NULL, OPT_OUTPUT},
                                       {"compression", required_argument, NULL, OPT_COMPRESSION}};
    PARSE(lo, 1, 1);
    if (!o.output && isatty(1))
        return cli_usage_error(c, "refusing to write a tar to a terminal; use -o FILE");
    if (o.output && !strcmp(o.output, "-"))
        o.output = NULL;
    if (!o.output && c->json)
        return cli_usage_error(c, "--json needs -o FILE (the tar would go to standard output)");
    cli_out out;
    if (cli_out_open(c, &out, o.output) < 0)
        return EXIT_FAIL;
    cairn_state *st;
    int r = cli_open(c, CAIRN_OPEN_READONLY, &st);
    if (r) {
        cli_out_close(c, &out, false);
        return r;
    }
    cairn_error err = {0};
    char digest[CAIRN_DIGEST_LEN + 1];
    uint64_t size = 0;
    r = cairn_layer_export(st, pos[0], out.fd, o.compression, digest, &size, &err);
    cairn_state_free(st);
    if (r < 0) {
        cli_out_close(c, &out, false);
        return cli_fail(c, &err);
    }
    if (cli_out_close(c, &out, true) < 0)
        return EXIT_FAIL;
    if (c->json)
        cli_json_print(json_pack("{s:s, s:s, s:I}", "chain_id", pos[0], "digest", digest, "size",
                                 (json_int_t)size));
    else if (o.output)
        printf("%s\n", digest);
    return EXIT_OK;
}

static int cmd_mount(cli *c, int argc, char **argv)
{
    PARSE(no_opts, 2, 2);
    cairn_state *st;
    int r = cli_open(c, 0, &st);
    if (r)
        return r;
    cairn_error err = {0};
    r = cairn_snapshot_mount(st, pos[0], pos[1], &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(json_pack("{s:s, s:s}", "snapshot", pos[0], "target", pos[1]));
    return EXIT_OK;
}

static int cmd_umount(cli *c, int argc, char **argv)
{
    PARSE(no_opts, 1, 1);
    cairn_error err = {0};
    if (cairn_snapshot_umount(pos[0], &err) < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(json_pack("{s:s}", "target", pos[0]));
    return EXIT_OK;
}

const cli_command cli_snapshot_commands[] = {
    {"snapshot prepare", cmd_prepare, "[PARENT] [--label L]",
     "create a writable snapshot over PARENT (a chain id) or nothing; prints its id"},
    {"snapshot view", cmd_view, "CHAIN_ID [--label L]",
     "create a read-only view of a committed snapshot; prints its id"},
    {"snapshot mounts", cmd_mounts, "ID|CHAIN_ID",
     "print the mount of a snapshot (--json: an OCI runtime spec mounts list)"},
    {"snapshot commit", cmd_commit, "ID",
     "commit an active snapshot (unmounted); prints its chain id"},
    {"snapshot rm", cmd_rm, "ID|CHAIN_ID...",
     "remove snapshots of this state (not one that is another's parent)"},
    {"snapshot ls", cmd_ls, "[--active]",
     "list committed snapshots (with the lowers'), or active ones and views"},
    {"snapshot stat", cmd_stat, "ID|CHAIN_ID", "print a snapshot's parent, size and times"},
    {"snapshot checkout", cmd_checkout, "CHAIN_ID DIR [--copy]",
     "materialise a snapshot's whole chain into a plain directory"},
    {"layer import", cmd_import, "[FILE|-] [--parent CHAIN_ID] [--diff-id D]",
     "apply a layer tarball (plain, gzip or zstd) as a new snapshot; prints its chain id"},
    {"layer export", cmd_export, "CHAIN_ID [-o FILE] [--compression none|gzip|zstd]",
     "write a snapshot's diff as a layer tarball; prints the digest of what was written"},
    {"mount", cmd_mount, "ID|CHAIN_ID TARGET", "mount a snapshot with overlayfs on TARGET"},
    {"umount", cmd_umount, "TARGET", "unmount TARGET"},
    {NULL, NULL, NULL, NULL},
};
