/* cmd-record.c: cairn record put|get|ls|rm|links. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int parse_index(const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || !*s || *s == '-' || v > 0x7fffffffUL)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

static json_t *result_json(const cairn_record_result *r)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:i}", "key", r->key, "result", r->result,
                     "kind", cairn_result_kind_name(r->kind), "created", (json_int_t)r->created,
                     "last_used", (json_int_t)r->last_used, "hits", (json_int_t)r->hits, "lower",
                     r->lower);
}

static json_t *link_json(const char *key_name, const char *key, const cairn_record_link *l)
{
    return json_pack("{s:s, s:i, s:i, s:s, s:s}", key_name, key, "input", (int)l->input,
                     "output", (int)l->output, "op", l->op, "selector", l->selector);
}

static int cmd_put(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"kind", required_argument, NULL, 'k'},
                                       {"link-from", required_argument, NULL, 'p'},
                                       {"op", required_argument, NULL, 'o'},
                                       {"input", required_argument, NULL, 'i'},
                                       {"output", required_argument, NULL, 'u'},
                                       {"selector", required_argument, NULL, 's'},
                                       {NULL, 0, NULL, 0}};
    const char *kind = NULL, *parent = NULL, *op = NULL, *sel = NULL;
    unsigned input = 0, output = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        switch (opt) {
        case 'k':
            kind = optarg;
            break;
        case 'p':
            parent = optarg;
            break;
        case 'o':
            op = optarg;
            break;
        case 's':
            sel = optarg;
            break;
        case 'i':
        case 'u':
            if (parse_index(optarg, opt == 'i' ? &input : &output) < 0)
                return cli_usage_error(c, "--%s '%s': expected a non-negative index",
                                       opt == 'i' ? "input" : "output", optarg);
            break;
        default: {
            int r = cli_opt(c, opt);
            if (r >= 0)
                return r;
        }
        }
    }
    int n = argc - optind;
    if (n < 1 || n > 2)
        return cli_usage_error(c, "expected KEY [RESULT]");
    if (n == 1 && !parent)
        return cli_usage_error(c, "expected a RESULT, a --link-from PARENT, or both");
    if (parent && !op)
        return cli_usage_error(c, "--link-from needs --op DIGEST");
    if (!parent && (op || sel))
        return cli_usage_error(c, "--op and --selector go with --link-from");
    cairn_result_kind k = 0;
    if (kind && cairn_result_kind_parse(kind, &k) < 0)
        return cli_usage_error(c, "--kind '%s': expected blob or snapshot", kind);
    const char *key = argv[optind], *result = n == 2 ? argv[optind + 1] : NULL;
    cairn_state *st = NULL;
    int r = cli_open(c, 0, &st);
    if (r)
        return r;
    cairn_error err = {0};
    int added = 0, linked = 0;
    if (result) {
        if (!kind) {
            /* A blob of that digest if there is one, else a snapshot. */
            int b = cairn_blob_exists(st, result, &err);
            if (b < 0)
                goto fail;
            k = b ? CAIRN_RESULT_BLOB : CAIRN_RESULT_SNAPSHOT;
        }
        added = cairn_record_add_result(st, key, k, result, 0, &err);
        if (added < 0)
            goto fail;
    }
    if (parent) {
        cairn_record_link l = {0};
        l.input = input;
        l.output = output;
        snprintf(l.op, sizeof(l.op), "%s", op);
        snprintf(l.selector, sizeof(l.selector), "%s", sel ? sel : "");
        if (strlen(op) > CAIRN_DIGEST_LEN || (sel && strlen(sel) > CAIRN_DIGEST_LEN)) {
            cairn_state_free(st);
            return cli_failf(c, "--op/--selector: not a digest");
        }
        linked = cairn_record_add_link(st, parent, &l, key, &err);
        if (linked < 0)
            goto fail;
    }
    cairn_state_free(st);
    if (c->json)
        cli_json_print(json_pack("{s:s, s:s?, s:s?, s:b, s:b}", "key", key, "result", result,
                                 "kind", result ? cairn_result_kind_name(k) : NULL, "added",
                                 added > 0, "linked", linked > 0));
    else if (!c->quiet) {
        if (result)
            printf("%s %s %s%s\n", key, cairn_result_kind_name(k), result,
                   added ? "" : " (already recorded)");
        if (parent)
            printf("%s -> %s%s\n", parent, key, linked ? "" : " (already linked)");
    }
    return EXIT_OK;
fail:
    cairn_state_free(st);
    return cli_fail(c, &err);
}

struct get_ctx {
    json_t *list;
    int n;
};

static int get_row(void *ud, const cairn_record_result *r)
{
    struct get_ctx *x = ud;
    x->n++;
    if (x->list)
        json_array_append_new(x->list, result_json(r));
    else
        printf("%s %s\n", cairn_result_kind_name(r->kind), r->result);
    return 0;
}

static int cmd_get(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"all", no_argument, NULL, 'a'},
                                       {NULL, 0, NULL, 0}};
    bool all = false;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "a", lo, NULL)) != -1) {
        if (opt == 'a')
            all = true;
        else {
            int r = cli_opt(c, opt);
            if (r >= 0)
                return r;
        }
    }
    int n = argc - optind;
    if (n < 1 || n > 2 || (all && n != 1))
        return cli_usage_error(c, "expected KEY [RESULT] (or KEY --all)");
    const char *key = argv[optind], *result = n == 2 ? argv[optind + 1] : NULL;
    cairn_state *st = NULL;
    /* A lookup marks the result used: open writable (a frozen state opens
     * read-only and is only read). */
    cairn_error err = {0};
    int r = cli_open(c, 0, &st);
    if (r)
        return r;
    if (all) {
        struct get_ctx x = {c->json ? json_array() : NULL, 0};
        r = cairn_record_results(st, key, get_row, &x, &err);
        cairn_state_free(st);
        if (r < 0) {
            json_decref(x.list);
            return cli_fail(c, &err);
        }
        if (x.list)
            cli_json_print(x.list);
        if (x.n == 0)
            return cli_failf(c, "record %s: no present result (a miss)", key);
        return EXIT_OK;
    }
    cairn_record_result res;
    r = cairn_record_load(st, key, result, &res, &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(result_json(&res));
    else
        printf("%s %s\n", cairn_result_kind_name(res.kind), res.result);
    return EXIT_OK;
}

struct ls_ctx {
    json_t *list;
    bool missing_too;
};

static int ls_row(void *ud, const cairn_record_result *r, int present)
{
    struct ls_ctx *x = ud;
    if (x->list) {
        json_t *o = result_json(r);
        json_object_set_new(o, "present", json_boolean(present));
        json_array_append_new(x->list, o);
    } else {
        printf("%s %-8s %s %10lld %10lld %6llu%s\n", r->key, cairn_result_kind_name(r->kind),
               r->result, (long long)r->created, (long long)r->last_used,
               (unsigned long long)r->hits, present ? "" : " (missing)");
    }
    return 0;
}

static int ls_key_row(void *ud, const cairn_record_result *r)
{
    return ls_row(ud, r, 1);
}

static int ls_bykey(void *ud, const char *key)
{
    struct ls_ctx *x = ud;
    if (x->list)
        json_array_append_new(x->list, json_string(key));
    else
        printf("%s\n", key);
    return 0;
}

static int cmd_ls(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"result", required_argument, NULL, 'r'},
                                       {"keys", no_argument, NULL, 'k'},
                                       {NULL, 0, NULL, 0}};
    const char *result = NULL;
    bool keys = false;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        if (opt == 'r')
            result = optarg;
        else if (opt == 'k')
            keys = true;
        else {
            int r = cli_opt(c, opt);
            if (r >= 0)
                return r;
        }
    }
    int n = argc - optind;
    if (n > 1 || (n == 1 && (result || keys)) || (result && keys))
        return cli_usage_error(c, "expected [KEY], --result RESULT or --keys");
    cairn_state *st = NULL;
    int r = cli_open(c, CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    struct ls_ctx x = {c->json ? json_array() : NULL, true};
    cairn_error err = {0};
    if (result)
        r = cairn_record_keys_by_result(st, result, ls_bykey, &x, &err);
    else if (keys)
        r = cairn_record_walk_keys(st, ls_bykey, &x, &err);
    else if (n == 1)
        r = cairn_record_results(st, argv[optind], ls_key_row, &x, &err);
    else
        r = cairn_record_list(st, ls_row, &x, &err);
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
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"result", no_argument, NULL, 'r'},
                                       {NULL, 0, NULL, 0}};
    bool by_result = false;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        if (opt == 'r')
            by_result = true;
        else {
            int r = cli_opt(c, opt);
            if (r >= 0)
                return r;
        }
    }
    if (optind >= argc)
        return cli_usage_error(c, "expected KEY... (or --result RESULT...)");
    cairn_state *st = NULL;
    int r = cli_open(c, 0, &st);
    if (r)
        return r;
    cli_rm rm;
    cli_rm_init(&rm, c, by_result ? "result" : "record");
    int rc = EXIT_OK;
    for (int i = optind; i < argc; i++) {
        cairn_error err = {0};
        r = by_result ? cairn_record_release(st, argv[i], &err)
                      : cairn_record_remove(st, argv[i], &err);
        if (r < 0) {
            rc = cli_fail(c, &err);
            continue;
        }
        cli_rm_one(&rm, argv[i], "rows", r);
    }
    cairn_state_free(st);
    cli_rm_done(&rm);
    return rc;
}

struct links_ctx {
    json_t *list;
    const char *name;
};

static int links_row(void *ud, const char *key, const cairn_record_link *l)
{
    struct links_ctx *x = ud;
    if (x->list)
        json_array_append_new(x->list, link_json(x->name, key, l));
    else
        printf("%s input=%u output=%u op=%s selector=%s\n", key, l->input, l->output, l->op,
               l->selector[0] ? l->selector : "-");
    return 0;
}

static int cmd_links(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"back", no_argument, NULL, 'b'},
                                       {NULL, 0, NULL, 0}};
    bool back = false;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        if (opt == 'b')
            back = true;
        else {
            int r = cli_opt(c, opt);
            if (r >= 0)
                return r;
        }
    }
    if (argc - optind != 1)
        return cli_usage_error(c, "expected one KEY");
    cairn_state *st = NULL;
    int r = cli_open(c, CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    struct links_ctx x = {c->json ? json_array() : NULL, back ? "parent" : "child"};
    cairn_error err = {0};
    r = back ? cairn_record_backlinks(st, argv[optind], links_row, &x, &err)
             : cairn_record_links(st, argv[optind], NULL, links_row, &x, &err);
    cairn_state_free(st);
    if (r < 0) {
        json_decref(x.list);
        return cli_fail(c, &err);
    }
    if (x.list)
        cli_json_print(x.list);
    return EXIT_OK;
}

const cli_command cli_record_commands[] = {
    {"record put", cmd_put,
     "KEY [RESULT] [--kind blob|snapshot] [--link-from PARENT --op DIGEST [--input N] "
     "[--output N] [--selector DIGEST]]",
     "record a cache result for KEY (a blob or a committed snapshot that is there; a blob when "
     "one has that digest, unless --kind says), and/or a link PARENT -> KEY"},
    {"record get", cmd_get, "KEY [RESULT] [--all]",
     "look KEY up: print its newest present result and mark it used; exit 1 on a miss"},
    {"record ls", cmd_ls, "[KEY | --result RESULT | --keys]",
     "list records (key, kind, result, created, last used, hits), a key's results, the keys "
     "naming a result, or all keys"},
    {"record rm", cmd_rm, "KEY... | --result RESULT...",
     "forget keys (results and links), or forget results under every key"},
    {"record links", cmd_links, "KEY [--back]", "list the links from KEY to child keys (--back: "
                                                "from parent keys to KEY)"},
    {NULL, NULL, NULL, NULL},
};
