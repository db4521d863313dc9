/* cmd-combine.c: cairn freeze, stack add|ls|rm, merge, flatten. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static json_t *stats_json(const cairn_merge_stats *s)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "objects",
                     (json_int_t)s->objects, "present", (json_int_t)s->present, "linked",
                     (json_int_t)s->linked, "reflinked", (json_int_t)s->reflinked, "copied",
                     (json_int_t)s->copied, "moved", (json_int_t)s->moved, "bytes_copied",
                     (json_int_t)s->bytes_copied, "refused", (json_int_t)s->refused, "rows",
                     (json_int_t)s->rows);
}

static void stats_print(const char *what, const cairn_merge_stats *s)
{
    char h[32];
    printf("%s: %llu objects (%llu already there, %llu linked, %llu reflinked, %llu copied, "
           "%llu moved; %s copied)",
           what, (unsigned long long)s->objects, (unsigned long long)s->present,
           (unsigned long long)s->linked, (unsigned long long)s->reflinked,
           (unsigned long long)s->copied, (unsigned long long)s->moved,
           cli_human(s->bytes_copied, h, sizeof(h)));
    /* A freeze copies the database whole: no rows are merged one by one. */
    if (strcmp(what, "freeze") != 0)
        printf(", %llu rows changed, %llu refused", (unsigned long long)s->rows,
               (unsigned long long)s->refused);
    putchar('\n');
}

static int cmd_freeze(cli *c, int argc, char **argv)
{
    int r = cli_common_only(c, argc, argv);
    if (r >= 0)
        return r;
    /* cairn -C SRC freeze DEST, or cairn freeze SRC DEST. */
    int want = c->state_given ? 1 : 2;
    if (argc - optind != want)
        return cli_usage_error(c, c->state_given ? "expected DEST (-C names SRC)"
                                                 : "expected SRC and DEST");
    const char *src = c->state_given ? c->state_path : argv[optind];
    const char *dest = argv[argc - 1];
    cairn_error err = {0};
    cairn_merge_stats st = {0};
    char id[CAIRN_STATE_ID_LEN + 1];
    cli_progress p;
    cli_progress_init(&p, c, "freeze", false);
    cli_progress_stoppable(&p);
    cairn_freeze_options fo = CAIRN_FREEZE_OPTIONS_INIT;
    fo.progress = cli_progress_cb;
    fo.progress_userdata = &p;
    r = cairn_freeze_with(src, dest, &fo, &st, id, &err);
    cli_progress_done(&p);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json) {
        json_t *o = stats_json(&st);
        json_object_set_new(o, "id", json_string(id));
        json_object_set_new(o, "path", json_string(dest));
        cli_json_print(o);
    } else if (!c->quiet) {
        printf("froze %s into %s (state %s)\n", src, dest, id);
        stats_print("freeze", &st);
    }
    return EXIT_OK;
}

static int cmd_stack_add(cli *c, int argc, char **argv)
{
    int r = cli_common_only(c, argc, argv);
    if (r >= 0)
        return r;
    /* cairn -C DIR stack add LOWER..., or cairn stack add DIR LOWER...; one
     * argument alone is a LOWER of the state ($CAIRN_STATE, else .). */
    const char *dir = c->state_path;
    if (!c->state_given && argc - optind >= 2)
        dir = argv[optind++];
    int n = argc - optind;
    if (n < 1)
        return cli_usage_error(c, "expected at least one LOWER");
    cairn_error err = {0};
    if (cairn_stack_add(dir, (const char *const *)argv + optind, (size_t)n, &err) < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(json_pack("{s:s, s:i}", "path", dir, "added", n));
    else if (!c->quiet)
        printf("%s: %d lower%s added\n", dir, n, n == 1 ? "" : "s");
    return EXIT_OK;
}

struct ls_ctx {
    json_t *list;
    int bad;
};

static int ls_one(void *ud, const cairn_stack_entry *e)
{
    struct ls_ctx *x = ud;
    x->bad += strcmp(e->status, "ok") != 0;
    if (x->list)
        json_array_append_new(x->list, json_pack("{s:s, s:s, s:s, s:s}", "id", e->id, "path",
                                                 e->path, "status", e->status, "detail",
                                                 e->detail));
    else
        printf("%s %-10s %s%s%s\n", e->id, e->status, e->path, e->detail[0] ? "  # " : "",
               e->detail);
    return 0;
}

static int cmd_stack_ls(cli *c, int argc, char **argv)
{
    int r = cli_common_only(c, argc, argv);
    if (r >= 0)
        return r;
    if (argc - optind > 1)
        return cli_usage_error(c, "expected at most one DIR");
    const char *dir = optind < argc ? argv[optind] : c->state_path;
    struct ls_ctx x = {c->json ? json_array() : NULL, 0};
    cairn_error err = {0};
    if (cairn_stack_list(dir, ls_one, &x, &err) < 0) {
        json_decref(x.list);
        return cli_fail(c, &err);
    }
    if (x.list)
        cli_json_print(json_pack("{s:s, s:o}", "path", dir, "lowers", x.list));
    /* A stack with a lower it cannot use does not open: say so in the status. */
    if (x.bad) {
        fprintf(stderr, "cairn %s: %s: %d lower%s not usable\n", c->cmd, dir, x.bad,
                x.bad == 1 ? "" : "s");
        return EXIT_PROBLEMS;
    }
    return EXIT_OK;
}

static int cmd_stack_rm(cli *c, int argc, char **argv)
{
    int r = cli_common_only(c, argc, argv);
    if (r >= 0)
        return r;
    /* cairn -C DIR stack rm LOWER, or cairn stack rm DIR LOWER. */
    const char *dir = c->state_path;
    if (!c->state_given && argc - optind == 2)
        dir = argv[optind++];
    if (argc - optind != 1)
        return cli_usage_error(c, "expected [DIR] LOWER (a path or a state id)");
    const char *lower = argv[optind];
    cairn_error err = {0};
    if (cairn_stack_remove(dir, lower, &err) < 0)
        return cli_fail(c, &err);
    cli_rm rm;
    cli_rm_init(&rm, c, "lower");
    cli_rm_one(&rm, lower, NULL, 0);
    cli_rm_done(&rm);
    return EXIT_OK;
}

struct problems {
    cli *c;
    json_t *list;
};

static void on_problem(void *ud, const cairn_merge_problem *p)
{
    struct problems *x = ud;
    if (x->list)
        json_array_append_new(x->list, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kind",
                                                 p->kind, "name", p->name, "problem", p->problem,
                                                 "path", p->path, "other", p->other, "detail",
                                                 p->detail));
    /* Always on stderr: a refused copy is something a person must see. */
    fprintf(stderr, "cairn %s: %s %s: %s: %s: %s\n", x->c->cmd, p->kind, p->name, p->problem,
            p->path, p->detail);
}

/* --link/--reflink/--copy/--move, --verify, --background. */
static int merge_opt(int opt, cairn_merge_options *mo)
{
    switch (opt) {
    case 'l':
        mo->mode = CAIRN_MERGE_LINK;
        return 1;
    case 'r':
        mo->mode = CAIRN_MERGE_REFLINK;
        return 1;
    case 'c':
        mo->mode = CAIRN_MERGE_COPY;
        return 1;
    case 'm':
        mo->mode = CAIRN_MERGE_MOVE;
        return 1;
    case 'v':
        mo->verify = 1;
        return 1;
    case 'b':
        mo->background = 1;
        return 1;
    }
    return 0;
}

#define MERGE_LONGOPTS                                                                             \
    {"link", no_argument, NULL, 'l'}, {"reflink", no_argument, NULL, 'r'},                         \
        {"copy", no_argument, NULL, 'c'}, {"verify", no_argument, NULL, 'v'}

static int cmd_merge(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, MERGE_LONGOPTS,
                                       {"move", no_argument, NULL, 'm'},
                                       {"drop-local", no_argument, NULL, 'L'},
                                       {NULL, 0, NULL, 0}};
    cairn_merge_options mo = CAIRN_MERGE_OPTIONS_INIT;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        if (merge_opt(opt, &mo))
            continue;
        if (opt == 'L') {
            mo.drop_local = 1;
            continue;
        }
        int r_ = cli_opt(c, opt);
        if (r_ >= 0)
            return r_;
    }
    /* cairn -C DEST merge SRC..., or cairn merge DEST SRC.... */
    const char *dest = c->state_given ? c->state_path : argv[optind++];
    if (argc - optind < 1)
        return cli_usage_error(c, c->state_given ? "expected at least one SRC (-C names DEST)"
                                                 : "expected DEST and at least one SRC");
    struct problems x = {c, c->json ? json_array() : NULL};
    mo.problem = on_problem;
    mo.problem_userdata = &x;
    cli_progress p;
    cli_progress_init(&p, c, "merge", false);
    cli_progress_stoppable(&p);
    mo.progress = cli_progress_cb;
    mo.progress_userdata = &p;
    cairn_error err = {0};
    cairn_merge_stats st = {0};
    int r = cairn_merge(dest, (const char *const *)argv + optind, (size_t)(argc - optind), &mo,
                        &st, &err);
    cli_progress_done(&p);
    if (r < 0) {
        json_decref(x.list);
        return cli_fail(c, &err);
    }
    if (c->json) {
        json_t *o = stats_json(&st);
        json_object_set_new(o, "path", json_string(dest));
        json_object_set_new(o, "problems", x.list);
        cli_json_print(o);
    } else if (!c->quiet) {
        stats_print("merge", &st);
    }
    return EXIT_OK;
}

static int cmd_flatten(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, MERGE_LONGOPTS,
                                       {"background", no_argument, NULL, 'b'},
                                       {"policy", required_argument, NULL, 'P'},
                                       {"if-due", no_argument, NULL, 'D'},
                                       {NULL, 0, NULL, 0}};
    cairn_merge_options mo = CAIRN_MERGE_OPTIONS_INIT;
    const char *policy = NULL;
    bool if_due = false;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        if (merge_opt(opt, &mo))
            continue;
        if (opt == 'P') {
            policy = optarg;
            continue;
        }
        if (opt == 'D') {
            if_due = true;
            continue;
        }
        int r_ = cli_opt(c, opt);
        if (r_ >= 0)
            return r_;
    }
    if (argc - optind > 1)
        return cli_usage_error(c, "expected at most one DIR");
    const char *dir = optind < argc ? argv[optind] : c->state_path;
    cairn_error err = {0};
    if (policy) {
        cairn_state *st = NULL;
        c->state_path = dir;
        if (cli_open(c, 0, &st))
            return EXIT_FAIL;
        int r = strcmp(policy, "show") ? cairn_flatten_policy_set(st, policy, &err) : 0;
        char cur[64] = "";
        if (r == 0)
            r = cairn_flatten_policy_get(st, cur, sizeof(cur), &err);
        cairn_state_free(st);
        if (r < 0)
            return err.code == -EINVAL ? cli_usage_error(c, "%s", err.message) : cli_fail(c, &err);
        if (c->json)
            cli_json_print(json_pack("{s:s, s:s}", "path", dir, "policy", cur));
        else if (!c->quiet)
            printf("%s: flatten policy %s\n", dir, cur);
        return EXIT_OK;
    }
    if (if_due) {
        cairn_state *st = NULL;
        if (cairn_state_open(&st, dir, 0, &err) < 0)
            return cli_fail(c, &err);
        int due = cairn_flatten_due(st, &err);
        cairn_state_free(st);
        if (due < 0)
            return cli_fail(c, &err);
        if (!due) {
            if (c->json)
                cli_json_print(json_pack("{s:s, s:b}", "path", dir, "flattened", 0));
            else if (!c->quiet)
                printf("%s: no flatten due by its policy\n", dir);
            return EXIT_OK;
        }
    }
    struct problems x = {c, c->json ? json_array() : NULL};
    mo.problem = on_problem;
    mo.problem_userdata = &x;
    cairn_merge_stats st = {0};
    cli_progress p;
    cli_progress_init(&p, c, "flatten", false);
    cli_progress_stoppable(&p);
    mo.progress = cli_progress_cb;
    mo.progress_userdata = &p;
    int r = cairn_flatten(dir, &mo, &st, &err);
    cli_progress_done(&p);
    if (r < 0) {
        json_decref(x.list);
        return cli_fail(c, &err);
    }
    if (c->json) {
        json_t *o = stats_json(&st);
        json_object_set_new(o, "path", json_string(dir));
        json_object_set_new(o, "flattened", json_true());
        json_object_set_new(o, "problems", x.list);
        cli_json_print(o);
    } else if (!c->quiet) {
        stats_print("flatten", &st);
    }
    return EXIT_OK;
}

const cli_command cli_combine_commands[] = {
    {"freeze", cmd_freeze, "SRC DEST | -C SRC freeze DEST",
     "a consistent read-only copy of a state (even one being written to), usable as a lower"},
    {"stack add", cmd_stack_add, "[DIR] LOWER... (DIR: -C, else the first of two or more)", "stack DIR on frozen states (read through, "
                                                 "writes to DIR only)"},
    {"stack ls", cmd_stack_ls, "[DIR]", "list the lowers of a stack and whether each is usable"},
    {"stack rm", cmd_stack_rm, "[DIR] LOWER",
     "remove a lower (a path or an id), even one that has vanished or been replaced"},
    {"merge", cmd_merge,
     "[--link|--reflink|--copy|--move [--drop-local]] [--verify] DEST SRC... (or -C DEST ... SRC...)",
     "write the union of states into DEST (created when missing), objects linked, not copied"},
    {"flatten", cmd_flatten,
     "[--background] [--if-due] [--link|--reflink|--copy] [--policy never|on-open|lowers>N|"
     "background|show] [DIR]",
     "merge a stack's lowers into it and drop them; or set when that happens (--policy)"},
    {NULL, NULL, NULL, NULL},
};
