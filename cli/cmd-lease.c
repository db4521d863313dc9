/* cmd-lease.c: cairn lease create|ls|rm|add|remove|renew. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Options: --ttl D (create, renew). Returns -1 to go on, or an exit code. */
static int parse(cli *c, int argc, char **argv, bool want_ttl, int64_t *ttl)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"ttl", required_argument, NULL, 't'},
                                       {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        if (opt == 't' && want_ttl) {
            int r = cli_parse_duration(optarg, ttl);
            if (r == -ERANGE)
                return cli_usage_error(c, "--ttl '%s': too long (at most 9223372036854775807s)",
                                       optarg);
            if (r < 0)
                return cli_usage_error(c, "--ttl '%s': expected a duration (30s, 15m, 2h, 7d)",
                                       optarg);
            continue;
        }
        if (opt == 't')
            return cli_usage_error(c, "--ttl does not apply here");
        int r = cli_opt(c, opt);
        if (r >= 0)
            return r;
    }
    return -1;
}

static int cmd_create(cli *c, int argc, char **argv)
{
    int64_t ttl = 0;
    int r = parse(c, argc, argv, true, &ttl);
    if (r >= 0)
        return r;
    if (argc - optind > 1)
        return cli_usage_error(c, "expected at most one ID");
    cairn_state *st = NULL;
    if ((r = cli_open(c, 0, &st)))
        return r;
    cairn_error err = {0};
    char id[CAIRN_LEASE_ID_MAX + 1];
    r = cairn_lease_create(st, optind < argc ? argv[optind] : NULL, ttl, id, &err);
    cairn_lease_info in = {0};
    if (r == 0)
        r = cairn_lease_get(st, id, &in, &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(json_pack("{s:s, s:I, s:I}", "id", id, "created", (json_int_t)in.created,
                                 "expires", (json_int_t)in.expires));
    else
        printf("%s\n", id);
    return EXIT_OK;
}

static int cmd_renew(cli *c, int argc, char **argv)
{
    int64_t ttl = 0;
    int r = parse(c, argc, argv, true, &ttl);
    if (r >= 0)
        return r;
    if (argc - optind != 1)
        return cli_usage_error(c, "expected one ID");
    cairn_state *st = NULL;
    if ((r = cli_open(c, 0, &st)))
        return r;
    cairn_error err = {0};
    r = cairn_lease_renew(st, argv[optind], ttl, &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(json_pack("{s:s, s:b}", "id", argv[optind], "renewed", 1));
    return EXIT_OK;
}

struct ls_ctx {
    json_t *list;
    cairn_state *st;
    int64_t now;
};

static int res_row(void *ud, const char *kind, const char *name)
{
    json_t *a = ud;
    if (a)
        json_array_append_new(a, json_pack("{s:s, s:s}", "kind", kind, "name", name));
    else
        printf("  %s %s\n", kind, name);
    return 0;
}

static int ls_row(void *ud, const cairn_lease_info *in)
{
    struct ls_ctx *x = ud;
    bool expired = in->expires && in->expires <= x->now;
    if (x->list) {
        json_t *res = json_array();
        cairn_lease_resource_list(x->st, in->id, res_row, res, NULL);
        json_array_append_new(x->list,
                              json_pack("{s:s, s:I, s:I, s:b, s:o}", "id", in->id, "created",
                                        (json_int_t)in->created, "expires", (json_int_t)in->expires,
                                        "expired", expired, "resources", res));
        return 0;
    }
    char exp[64];
    if (!in->expires)
        snprintf(exp, sizeof(exp), "never expires");
    else
        snprintf(exp, sizeof(exp), "%s %lld", expired ? "expired at" : "expires at",
                 (long long)in->expires);
    printf("%s created %lld, %s, %llu resource%s\n", in->id, (long long)in->created, exp,
           (unsigned long long)in->resources, in->resources == 1 ? "" : "s");
    return cairn_lease_resource_list(x->st, in->id, res_row, NULL, NULL);
}

static int cmd_ls(cli *c, int argc, char **argv)
{
    int r = parse(c, argc, argv, false, NULL);
    if (r >= 0)
        return r;
    if (optind < argc)
        return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
    cairn_state *st = NULL;
    if ((r = cli_open(c, CAIRN_OPEN_READONLY, &st)))
        return r;
    struct ls_ctx x = {c->json ? json_array() : NULL, st, (int64_t)time(NULL)};
    cairn_error err = {0};
    r = cairn_lease_list(st, ls_row, &x, &err);
    cairn_state_free(st);
    if (r < 0) {
        json_decref(x.list);
        return cli_fail(c, &err);
    }
    if (x.list)
        cli_json_print(x.list);
    return EXIT_OK;
}

static int cmd_rm(cli *c, int argc, char **argv)
{
    int r = parse(c, argc, argv, false, NULL);
    if (r >= 0)
        return r;
    if (optind >= argc)
        return cli_usage_error(c, "expected ID...");
    cairn_state *st = NULL;
    if ((r = cli_open(c, 0, &st)))
        return r;
    int rc = cli_rm_each(c, st, "lease", argv + optind, argc - optind, cairn_lease_remove);
    cairn_state_free(st);
    return rc;
}

/* add / remove: ID KIND NAME... */
static int resources(cli *c, int argc, char **argv, bool add)
{
    int r = parse(c, argc, argv, false, NULL);
    if (r >= 0)
        return r;
    if (argc - optind < 3)
        return cli_usage_error(c, "expected ID KIND NAME... (KIND: blob, snapshot, record, "
                                  "volume)");
    const char *id = argv[optind], *kind = argv[optind + 1];
    cairn_state *st = NULL;
    if ((r = cli_open(c, 0, &st)))
        return r;
    int rc = EXIT_OK;
    json_t *out = c->json ? json_array() : NULL;
    for (int i = optind + 2; i < argc; i++) {
        cairn_error err = {0};
        r = add ? cairn_lease_resource_add(st, id, kind, argv[i], &err)
                : cairn_lease_resource_remove(st, id, kind, argv[i], &err);
        if (r < 0) {
            rc = cli_fail(c, &err);
            if (err.code == -ENOENT || err.code == -EINVAL || err.code == CAIRN_E_DIGEST)
                break;
            continue;
        }
        if (out)
            json_array_append_new(out, json_pack("{s:s, s:s, s:b}", "kind", kind, "name",
                                                 argv[i], "changed", r > 0));
    }
    cairn_state_free(st);
    if (out)
        cli_json_print(out);
    return rc;
}

static int cmd_add(cli *c, int argc, char **argv)
{
    return resources(c, argc, argv, true);
}

static int cmd_remove(cli *c, int argc, char **argv)
{
    return resources(c, argc, argv, false);
}

const cli_command cli_lease_commands[] = {
    {"lease create", cmd_create, "[ID] [--ttl DURATION]",
     "take a lease (random ID unless given) that keeps what it names from gc; no --ttl: it "
     "never expires"},
    {"lease renew", cmd_renew, "ID [--ttl DURATION]", "push a lease's expiry to now + DURATION"},
    {"lease ls", cmd_ls, "", "list leases and what they keep"},
    {"lease rm", cmd_rm, "ID...", "remove leases (what they kept becomes collectable)"},
    {"lease add", cmd_add, "ID KIND NAME...",
     "add resources to a lease: blob DIGEST, snapshot CHAINID, record KEY, volume NAME"},
    {"lease drop", cmd_remove, "ID KIND NAME...", "drop resources from a lease (the lease stays)"},
    {NULL, NULL, NULL, NULL},
};
