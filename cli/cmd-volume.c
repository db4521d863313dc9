/* cmd-volume.c: cairn volume open|save|ls|versions|rm. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static int parse_plain(cli *c, int argc, char **argv)
{
    int r0 = cli_common_only(c, argc, argv);
    if (r0 >= 0)
        return r0;
    return -1;
}

static int cmd_open(cli *c, int argc, char **argv)
{
    int r = parse_plain(c, argc, argv);
    if (r >= 0)
        return r;
    if (argc - optind != 1)
        return cli_usage_error(c, "expected one NAME");
    cairn_state *st = NULL;
    if ((r = cli_open(c, 0, &st)))
        return r;
    cairn_error err = {0};
    char id[CAIRN_STATE_ID_LEN + 1], parent[CAIRN_DIGEST_LEN + 1];
    r = cairn_volume_open(st, argv[optind], id, parent, &err);
    cairn_mount *m = NULL;
    if (r == 0)
        r = cairn_snapshot_mounts(st, id, &m, &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json) {
        char *mj = cairn_mount_json(m);
        json_t *mount = mj ? json_loads(mj, 0, NULL) : NULL;
        free(mj);
        cli_json_print(json_pack("{s:s, s:s, s:s, s:o*}", "volume", argv[optind], "id", id,
                                 "parent", parent, "mount", mount));
    } else {
        printf("%s\n", id);
    }
    cairn_mount_free(m);
    return EXIT_OK;
}

static int cmd_save(cli *c, int argc, char **argv)
{
    int r = parse_plain(c, argc, argv);
    if (r >= 0)
        return r;
    int n = argc - optind;
    if (n < 1 || n > 2)
        return cli_usage_error(c, "expected NAME [ID]");
    cairn_state *st = NULL;
    if ((r = cli_open(c, 0, &st)))
        return r;
    cairn_error err = {0};
    char version[CAIRN_DIGEST_LEN + 1];
    r = cairn_volume_save(st, argv[optind], n == 2 ? argv[optind + 1] : NULL, version, &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(json_pack("{s:s, s:s}", "volume", argv[optind], "version", version));
    else
        printf("%s\n", version);
    return EXIT_OK;
}

static int ls_row(void *ud, const cairn_volume_info *in)
{
    json_t *a = ud;
    if (a) {
        json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:I, s:I, s:i}", "name", in->name,
                                           "current", in->current, "created",
                                           (json_int_t)in->created, "versions",
                                           (json_int_t)in->versions, "size",
                                           (json_int_t)in->size, "lower", in->lower));
        return 0;
    }
    char h[32];
    printf("%-24s %s %3llu version%s %10s\n", in->name, in->current,
           (unsigned long long)in->versions, in->versions == 1 ? " " : "s",
           cli_human(in->size, h, sizeof(h)));
    return 0;
}

static int cmd_ls(cli *c, int argc, char **argv)
{
    int r = parse_plain(c, argc, argv);
    if (r >= 0)
        return r;
    if (optind < argc)
        return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
    cairn_state *st = NULL;
    if ((r = cli_open(c, CAIRN_OPEN_READONLY, &st)))
        return r;
    json_t *a = c->json ? json_array() : NULL;
    cairn_error err = {0};
    r = cairn_volume_list(st, ls_row, a, &err);
    cairn_state_free(st);
    if (r < 0) {
        json_decref(a);
        return cli_fail(c, &err);
    }
    if (a)
        cli_json_print(a);
    return EXIT_OK;
}

static int ver_row(void *ud, const cairn_volume_version *v)
{
    json_t *a = ud;
    if (a)
        json_array_append_new(a, json_pack("{s:s, s:I, s:b, s:b, s:i}", "version", v->version,
                                           "created", (json_int_t)v->created, "current",
                                           v->current, "present", v->present, "lower",
                                           v->lower));
    else
        printf("%s %lld%s%s\n", v->version, (long long)v->created, v->current ? " current" : "",
               v->present ? "" : " (missing)");
    return 0;
}

static int cmd_versions(cli *c, int argc, char **argv)
{
    int r = parse_plain(c, argc, argv);
    if (r >= 0)
        return r;
    if (argc - optind != 1)
        return cli_usage_error(c, "expected one NAME");
    cairn_state *st = NULL;
    if ((r = cli_open(c, CAIRN_OPEN_READONLY, &st)))
        return r;
    json_t *a = c->json ? json_array() : NULL;
    cairn_error err = {0};
    r = cairn_volume_versions(st, argv[optind], ver_row, a, &err);
    cairn_state_free(st);
    if (r < 0) {
        json_decref(a);
        return cli_fail(c, &err);
    }
    if (a)
        cli_json_print(a);
    return EXIT_OK;
}

static int cmd_rm(cli *c, int argc, char **argv)
{
    int r = parse_plain(c, argc, argv);
    if (r >= 0)
        return r;
    if (optind >= argc)
        return cli_usage_error(c, "expected NAME...");
    cairn_state *st = NULL;
    if ((r = cli_open(c, 0, &st)))
        return r;
    int rc = EXIT_OK;
    cli_rm rm;
    cli_rm_init(&rm, c, "volume");
    for (int i = optind; i < argc; i++) {
        cairn_error err = {0};
        r = cairn_volume_remove(st, argv[i], &err);
        if (r < 0) {
            rc = cli_fail(c, &err);
            continue;
        }
        cli_rm_one(&rm, argv[i], "versions", r);
    }
    cairn_state_free(st);
    cli_rm_done(&rm);
    return rc;
}

const cli_command cli_volume_commands[] = {
    {"volume open", cmd_open, "NAME",
     "open a volume: print the id of a new active snapshot over its current version (mount it "
     "with 'cairn snapshot mounts ID'; --json includes the mount)"},
    {"volume save", cmd_save, "NAME [ID]",
     "commit an open volume's active snapshot (ID, or the only one open) as its newest version"},
    {"volume ls", cmd_ls, "", "list volumes: current version, number of versions, size"},
    {"volume versions", cmd_versions, "NAME",
     "list a volume's versions, newest first; the first is current"},
    {"volume rm", cmd_rm, "NAME...", "forget volumes (their snapshots are left to gc)"},
    {NULL, NULL, NULL, NULL},
};
