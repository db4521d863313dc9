/* cmd-state.c: cairn init, info, fsck. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static int cmd_init(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"over-frozen", no_argument, NULL, 'F'},
                                       {NULL, 0, NULL, 0}};
    unsigned flags = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        if (opt == 'F') {
            flags |= CAIRN_INIT_OVER_FROZEN;
            continue;
        }
        int r_ = cli_opt(c, opt);
        if (r_ >= 0)
            return r_;
    }
    if (argc - optind > 1)
        return cli_usage_error(c, "expected at most one directory");
    const char *dir = optind < argc ? argv[optind] : c->state_path;
    cairn_error err = {0};
    char id[CAIRN_STATE_ID_LEN + 1];
    if (cairn_state_init_with(dir, flags, id, &err) < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(json_pack("{s:s, s:s}", "id", id, "path", dir));
    else if (!c->quiet)
        printf("initialized state %s in %s\n", id, dir);
    return EXIT_OK;
}

static json_t *count_json(const cairn_count *k)
{
    return json_pack("{s:I, s:I}", "count", (json_int_t)k->count, "bytes", (json_int_t)k->bytes);
}

static int cmd_info(cli *c, int argc, char **argv)
{
    int r0 = cli_common_only(c, argc, argv);
    if (r0 >= 0)
        return r0;
    if (optind < argc)
        return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
    cairn_state *st = NULL;
    int r = cli_open(c, CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    cairn_state_info in;
    cairn_error err = {0};
    if (cairn_state_info_get(st, &in, &err) < 0) {
        cairn_state_free(st);
        return cli_fail(c, &err);
    }
    const struct {
        const char *name;
        const cairn_count *k;
    } kinds[] = {{"blobs", &in.blobs},   {"snapshots", &in.snapshots}, {"active", &in.active},
                 {"images", &in.images}, {"records", &in.records},     {"volumes", &in.volumes},
                 {"leases", &in.leases}};
    if (c->json) {
        json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:b, s:i}", "id", in.id, "path",
                              cairn_state_path(st), "format", (int)in.format, "schema",
                              (int)in.schema, "frozen", in.frozen, "lowers", (int)in.lowers);
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
            json_object_set_new(o, kinds[i].name, count_json(kinds[i].k));
        cli_json_print(o);
    } else {
        printf("state:   %s\npath:    %s\nformat:  %u (schema %u)%s\nlowers:  %u\n", in.id,
               cairn_state_path(st), in.format, in.schema, in.frozen ? ", frozen" : "",
               in.lowers);
        printf("%-10s %10s %12s\n", "KIND", "COUNT", "BYTES");
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
            char h[32];
            printf("%-10s %10llu %12s\n", kinds[i].name, (unsigned long long)kinds[i].k->count,
                   kinds[i].k->bytes ? cli_human(kinds[i].k->bytes, h, sizeof(h)) : "-");
        }
    }
    cairn_state_free(st);
    return EXIT_OK;
}

struct fsck_out {
    cli *c;
    json_t *list;
    cli_progress *p;
    int left;
};

static void fsck_problem(void *ud, const cairn_fsck_problem *p)
{
    struct fsck_out *o = ud;
    o->left += !p->action[0]; /* what repair did not mend (or no repair) */
    if (o->list) {
        json_array_append_new(o->list,
                              json_pack("{s:s, s:s, s:s, s:s, s:s}", "kind", p->kind, "name",
                                        p->name, "problem", p->problem, "detail", p->detail,
                                        "action", p->action));
        return;
    }
    cli_progress_clear(o->p);
    printf("%s %s: %s%s%s%s%s\n", p->kind, p->name, p->problem, p->detail[0] ? ": " : "",
           p->detail, p->action[0] ? " -> " : "", p->action);
}

static int cmd_fsck(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"repair", no_argument, NULL, 'r'},
                                       {"no-hash", no_argument, NULL, 'n'},
                                       {"full-db", no_argument, NULL, 'D'},
                                       {NULL, 0, NULL, 0}};
    cairn_fsck_options fo = CAIRN_FSCK_OPTIONS_INIT;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        if (opt == 'r') {
            fo.repair = 1;
            continue;
        }
        if (opt == 'n') {
            fo.no_hash = 1;
            continue;
        }
        if (opt == 'D') {
            fo.full_db = 1;
            continue;
        }
        int r_ = cli_opt(c, opt);
        if (r_ >= 0)
            return r_;
    }
    if (optind < argc)
        return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
    cairn_state *st = NULL;
    int r = cli_open(c, fo.repair ? 0 : CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    cli_progress p;
    cli_progress_init(&p, c, "fsck", false);
    cli_progress_stoppable(&p);
    fo.progress = cli_progress_cb;
    fo.progress_userdata = &p;
    struct fsck_out o = {c, c->json ? json_array() : NULL, &p, 0};
    cairn_error err = {0};
    int n = cairn_fsck(st, &fo, fsck_problem, &o, &err);
    cli_progress_done(&p);
    cairn_state_free(st);
    if (n < 0) {
        json_decref(o.list);
        return cli_fail(c, &err);
    }
    if (c->json)
        cli_json_print(json_pack("{s:o, s:i, s:b, s:i}", "problems", o.list, "count", n,
                                 "repaired", fo.repair, "left", o.left));
    else if (!c->quiet && fo.repair && n)
        printf("%d problem%s: %d repaired, %d left\n", n, n == 1 ? "" : "s", n - o.left, o.left);
    else if (!c->quiet)
        printf("%d problem%s\n", n, n == 1 ? "" : "s");
    /* 3 while any problem is left, repaired or not asked to be. */
    return o.left > 0 ? EXIT_PROBLEMS : EXIT_OK;
}

const cli_command cli_state_commands[] = {
    {"init", cmd_init, "[DIR] [--over-frozen]",
     "create a state directory (DIR or -C); over an overlayfs view of states, give it a writable "
     "identity of its own (over a frozen directory in place, breaking the stacks that read it, "
     "only with --over-frozen)"},
    {"info", cmd_info, "", "print the state's id, format and count and bytes per object kind"},
    {"fsck", cmd_fsck, "[--repair] [--no-hash] [--full-db]",
     "check every database of the stack (SQLite's quick_check; integrity_check with --full-db), "
     "every object against its name and every row against its object"},
    {NULL, NULL, NULL, NULL},
};
