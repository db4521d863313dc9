/* cmd-remote.c: cairn remote add|ls|rm|states|compact|gc, cairn push, cairn pull.
 * A URL works wherever a remote's name does; a state is opened only when a
 * name must be looked up in it (or, for push and pull, always). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Options of every command that talks to a remote. */
#define REMOTE_LONGOPTS CLI_REMOTE_LONGOPTS

/* 1 when handled, 0 when not a remote option, -1 on a bad value. */
int cli_remote_opt(cli *c, int opt, cairn_remote_options *o)
{
    switch (opt) {
    case 'j': {
        char *end;
        unsigned long v = strtoul(optarg, &end, 10);
        if (*end || v == 0 || v > 256) {
            cli_usage_error(c, "--jobs '%s': expected 1 to 256", optarg);
            return -1;
        }
        o->jobs = (unsigned)v;
        return 1;
    }
    case 'I':
        o->insecure = 1;
        return 1;
    case 'R':
        o->region = optarg;
        return 1;
    case 'E':
        o->endpoint = optarg;
        return 1;
    case 'A':
        o->auth_file = optarg;
        return 1;
    }
    return 0;
}

/* The state to resolve a remote name in: none for a URL (NULL, EXIT_OK). */
static int open_for(cli *c, const char *remote, unsigned flags, cairn_state **st)
{
    *st = NULL;
    if (strstr(remote, "://"))
        return EXIT_OK;
    return cli_open(c, flags, st);
}

static json_t *stats_json(const cairn_remote_stats *s)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "states", (json_int_t)s->states,
                     "objects", (json_int_t)s->objects, "objects_moved",
                     (json_int_t)s->objects_moved, "bytes_moved", (json_int_t)s->bytes_moved,
                     "objects_skipped", (json_int_t)s->objects_skipped, "bytes_skipped",
                     (json_int_t)s->bytes_skipped, "meta_bytes", (json_int_t)s->meta_bytes,
                     "rows", (json_int_t)s->rows);
}

static void stats_print(const char *verb, const char *skipped, const cairn_remote_stats *s)
{
    char a[32], b[32], m[32];
    printf("%llu objects: %llu %s (%s), %llu %s (%s); metadata %s\n",
           (unsigned long long)s->objects, (unsigned long long)s->objects_moved, verb,
           cli_human(s->bytes_moved, a, sizeof(a)), (unsigned long long)s->objects_skipped,
           skipped, cli_human(s->bytes_skipped, b, sizeof(b)),
           cli_human(s->meta_bytes, m, sizeof(m)));
}

/* ---- remote add | ls | rm ------------------------------------------------ */

static int cmd_remote_add(cli *c, int argc, char **argv)
{
    int r0 = cli_common_only(c, argc, argv);
    if (r0 >= 0)
        return r0;
    if (argc - optind != 2)
        return cli_usage_error(c, "expected NAME and URL");
    cairn_state *st = NULL;
    int r = cli_open(c, 0, &st);
    if (r)
        return r;
    cairn_error err = {0};
    r = cairn_remote_add(st, argv[optind], argv[optind + 1], &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(json_pack("{s:s, s:s}", "name", argv[optind], "url", argv[optind + 1]));
    else if (!c->quiet)
        printf("added remote %s %s\n", argv[optind], argv[optind + 1]);
    return EXIT_OK;
}

static int ls_one(void *ud, const char *name, const char *url)
{
    json_t *list = ud;
    if (list)
        json_array_append_new(list, json_pack("{s:s, s:s}", "name", name, "url", url));
    else
        printf("%s\t%s\n", name, url);
    return 0;
}

static int cmd_remote_ls(cli *c, int argc, char **argv)
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
    json_t *list = c->json ? json_array() : NULL;
    cairn_error err = {0};
    r = cairn_remote_list(st, ls_one, list, &err);
    cairn_state_free(st);
    if (r < 0) {
        json_decref(list);
        return cli_fail(c, &err);
    }
    if (list)
        cli_json_print(json_pack("{s:o}", "remotes", list));
    return EXIT_OK;
}

static int cmd_remote_rm(cli *c, int argc, char **argv)
{
    return cli_rm_command(c, argc, argv, "remote", "at least one NAME", cairn_remote_remove);
}

/* ---- push, pull ------------------------------------------------------- */

static int cmd_push(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, REMOTE_LONGOPTS,
                                       {"own", no_argument, NULL, 'o'},
                                       {"compression", required_argument, NULL, 'Z'},
                                       {"objects-per-manifest", required_argument, NULL, 'M'},
                                       {NULL, 0, NULL, 0}};
    cairn_remote_options o = CAIRN_REMOTE_OPTIONS_INIT;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        int h = cli_remote_opt(c, opt, &o);
        if (h < 0)
            return EXIT_USAGE;
        if (h)
            continue;
        if (opt == 'o') {
            o.own = 1;
            continue;
        }
        if (opt == 'Z') {
            if (!strcmp(optarg, "zstd"))
                o.compression = CAIRN_COMPRESSION_ZSTD;
            else if (!strcmp(optarg, "gzip"))
                o.compression = CAIRN_COMPRESSION_GZIP;
            else if (!strcmp(optarg, "none"))
                o.compression = CAIRN_COMPRESSION_NONE;
            else
                return cli_usage_error(c, "--compression '%s': expected zstd, gzip or none",
                                       optarg);
            continue;
        }
        if (opt == 'M') {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v == 0 || v > 1000000)
                return cli_usage_error(c, "--objects-per-manifest '%s': expected 1 to 1000000",
                                       optarg);
            o.objects_per_manifest = (unsigned)v;
            continue;
        }
        int r_ = cli_opt(c, opt);
        if (r_ >= 0)
            return r_;
    }
    if (argc - optind != 2)
        return cli_usage_error(c, "expected REMOTE and TAG");
    cairn_state *st = NULL;
    int r = cli_open(c, CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    cli_progress p;
    cli_progress_init(&p, c, "push", true);
    o.progress = cli_progress_cb;
    o.progress_userdata = &p;
    cairn_error err = {0};
    cairn_remote_stats s = {0};
    char digest[CAIRN_DIGEST_LEN + 1];
    r = cairn_remote_push(st, argv[optind], argv[optind + 1], &o, &s, digest, &err);
    cli_progress_done(&p);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json) {
        json_t *j = stats_json(&s);
        json_object_set_new(j, "tag", json_string(argv[optind + 1]));
        json_object_set_new(j, "digest", json_string(digest));
        cli_json_print(j);
    } else if (!c->quiet) {
        printf("pushed %s as %s\n", argv[optind + 1], digest);
        stats_print("sent", "already there", &s);
    }
    return EXIT_OK;
}

static int cmd_pull(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, REMOTE_LONGOPTS,
                                       {"lazy", no_argument, NULL, 'L'},
                                       {"cache", required_argument, NULL, 'K'},
                                       {NULL, 0, NULL, 0}};
    cairn_remote_options o = CAIRN_REMOTE_OPTIONS_INIT;
    int opt;
    bool lazy = false;
    const char *cache = NULL;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        int h = cli_remote_opt(c, opt, &o);
        if (h < 0)
            return EXIT_USAGE;
        if (h)
            continue;
        if (opt == 'L') {
            lazy = true;
            continue;
        }
        if (opt == 'K') {
            cache = optarg;
            continue;
        }
        int r_ = cli_opt(c, opt);
        if (r_ >= 0)
            return r_;
    }
    if (argc - optind != 2)
        return cli_usage_error(c, "expected REMOTE and TAG");
    if (cache && !lazy)
        return cli_usage_error(c, "--cache is for --lazy");
    cairn_state *st = NULL;
    int r = cli_open(c, 0, &st);
    if (r)
        return r;
    cli_progress p;
    cli_progress_init(&p, c, "pull", true);
    o.progress = cli_progress_cb;
    o.progress_userdata = &p;
    cairn_error err = {0};
    cairn_remote_stats s = {0};
    r = lazy ? cairn_remote_pull_lazy(st, argv[optind], argv[optind + 1], &o, cache, &s, &err)
             : cairn_remote_pull(st, argv[optind], argv[optind + 1], &o, &s, &err);
    cli_progress_done(&p);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json) {
        json_t *j = stats_json(&s);
        json_object_set_new(j, "tag", json_string(argv[optind + 1]));
        json_object_set_new(j, "lazy", json_boolean(lazy));
        cli_json_print(j);
    } else if (lazy && !c->quiet) {
        char h[32];
        printf("stacked %s lazily: %llu state%s naming %llu objects (metadata %s; objects "
               "fetched on first use)\n", argv[optind + 1], (unsigned long long)s.states,
               s.states == 1 ? "" : "s", (unsigned long long)s.objects,
               cli_human(s.meta_bytes, h, sizeof(h)));
    } else if (!c->quiet) {
        printf("pulled %s: %llu state%s merged, %llu rows\n", argv[optind + 1],
               (unsigned long long)s.states, s.states == 1 ? "" : "s",
               (unsigned long long)s.rows);
        stats_print("fetched", "already here", &s);
    }
    return EXIT_OK;
}

/* ---- remote states | compact | gc ------------------------------------- */

static int states_one(void *ud, const cairn_remote_state *s)
{
    json_t *list = ud;
    if (list) {
        json_array_append_new(
            list, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:i, s:s}", "tag", s->tag, "digest",
                            s->digest, "state", s->state_id, "time", (json_int_t)s->time,
                            "objects", (json_int_t)s->objects, "bytes", (json_int_t)s->bytes,
                            "manifests", (int)s->chunks, "parents", s->parents));
        return 0;
    }
    char when[32], h[32];
    time_t t = (time_t)s->time;
    struct tm tm;
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", gmtime_r(&t, &tm));
    printf("%-20s %.19s  %s  %8llu %10s  %s\n", s->tag, s->digest, when,
           (unsigned long long)s->objects, cli_human(s->bytes, h, sizeof(h)), s->state_id);
    return 0;
}

static int remote_opt(cli *c, int opt, void *o)
{
    return cli_remote_opt(c, opt, o);
}

static int remote_args(cli *c, int argc, char **argv, const struct option *lo,
                       cairn_remote_options *o, cli_opt_fn extra, void *ud)
{
    return cli_getopt(c, argc, argv, lo, remote_opt, o, extra, ud);
}

static int cmd_remote_states(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, REMOTE_LONGOPTS, {NULL, 0, NULL, 0}};
    cairn_remote_options o = CAIRN_REMOTE_OPTIONS_INIT;
    int r = remote_args(c, argc, argv, lo, &o, NULL, NULL);
    if (r >= 0)
        return r;
    if (argc - optind < 1 || argc - optind > 2)
        return cli_usage_error(c, "expected REMOTE [TAG]");
    const char *remote = argv[optind], *tag = argc - optind == 2 ? argv[optind + 1] : NULL;
    cairn_state *st = NULL;
    r = open_for(c, remote, CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    json_t *list = c->json ? json_array() : NULL;
    if (!list)
        printf("%-20s %-19s  %-19s  %8s %10s  %s\n", "TAG", "DIGEST", "PUSHED (UTC)", "OBJECTS",
               "BYTES", "STATE");
    cairn_error err = {0};
    r = cairn_remote_states(st, remote, tag, &o, states_one, list, &err);
    cairn_state_free(st);
    if (r < 0) {
        json_decref(list);
        return cli_fail(c, &err);
    }
    if (list)
        cli_json_print(json_pack("{s:o}", "states", list));
    return EXIT_OK;
}

static int cmd_remote_compact(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, REMOTE_LONGOPTS, {NULL, 0, NULL, 0}};
    cairn_remote_options o = CAIRN_REMOTE_OPTIONS_INIT;
    int r = remote_args(c, argc, argv, lo, &o, NULL, NULL);
    if (r >= 0)
        return r;
    if (argc - optind != 2)
        return cli_usage_error(c, "expected REMOTE and TAG");
    cairn_state *st = NULL;
    r = open_for(c, argv[optind], CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    cairn_error err = {0};
    cairn_remote_stats s = {0};
    char digest[CAIRN_DIGEST_LEN + 1] = "";
    r = cairn_remote_compact(st, argv[optind], argv[optind + 1], &o, &s, digest, &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json) {
        json_t *j = stats_json(&s);
        json_object_set_new(j, "digest", json_string(digest));
        cli_json_print(j);
    } else if (!c->quiet) {
        char m[32];
        if (s.states)
            printf("compacted %llu states of %s into %s: %llu objects, none moved; metadata %s\n",
                   (unsigned long long)s.states, argv[optind + 1], digest,
                   (unsigned long long)s.objects, cli_human(s.meta_bytes, m, sizeof(m)));
        else
            printf("%s: nothing to compact\n", argv[optind + 1]);
    }
    return EXIT_OK;
}

static int gc_extra(cli *c, int opt, void *ud)
{
    cairn_remote_gc_options *g = ud;
    int64_t d;
    switch (opt) {
    case 'k': {
        char *end;
        long v = strtol(optarg, &end, 10);
        if (*end || v < 0 || v > 1000000) {
            cli_usage_error(c, "--keep '%s': expected a count", optarg);
            return -1;
        }
        g->keep = (int)v;
        return 1;
    }
    case 'o':
    case 'g':
        if (cli_parse_duration(optarg, &d) < 0) {
            cli_usage_error(c, "--%s '%s': expected a duration (30s, 15m, 48h, 7d)",
                            opt == 'o' ? "older-than" : "grace", optarg);
            return -1;
        }
        if (opt == 'o')
            g->older_than = d;
        else
            g->grace = d;
        return 1;
    case 'n':
        g->dry_run = 1;
        return 1;
    }
    return 0;
}

static int cmd_remote_gc(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       REMOTE_LONGOPTS,
                                       {"keep", required_argument, NULL, 'k'},
                                       {"older-than", required_argument, NULL, 'o'},
                                       {"grace", required_argument, NULL, 'g'},
                                       {"dry-run", no_argument, NULL, 'n'},
                                       {NULL, 0, NULL, 0}};
    cairn_remote_options o = CAIRN_REMOTE_OPTIONS_INIT;
    cairn_remote_gc_options g = CAIRN_REMOTE_GC_OPTIONS_INIT;
    int r = remote_args(c, argc, argv, lo, &o, gc_extra, &g);
    if (r >= 0)
        return r;
    if (argc - optind != 1)
        return cli_usage_error(c, "expected REMOTE");
    cairn_state *st = NULL;
    r = open_for(c, argv[optind], CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    cairn_error err = {0};
    cairn_remote_stats s = {0};
    r = cairn_remote_gc(st, argv[optind], &o, &g, &s, &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json) {
        json_t *j = json_pack("{s:I, s:I, s:I, s:b}", "states_removed", (json_int_t)s.states,
                              "blobs_removed", (json_int_t)s.objects_moved, "bytes_removed",
                              (json_int_t)s.bytes_moved, "dry_run", g.dry_run);
        cli_json_print(j);
    } else if (!c->quiet) {
        char h[32];
        printf("%s%llu states, %llu blobs (%s)\n", g.dry_run ? "would remove " : "removed ",
               (unsigned long long)s.states, (unsigned long long)s.objects_moved,
               cli_human(s.bytes_moved, h, sizeof(h)));
    }
    return EXIT_OK;
}

static int cmd_cache_gc(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"cache", required_argument, NULL, 'K'},
                                       {"max-bytes", required_argument, NULL, 'B'},
                                       {"dry-run", no_argument, NULL, 'n'},
                                       {NULL, 0, NULL, 0}};
    const char *cache = NULL;
    uint64_t max = 0;
    bool have_max = false;
    int dry = 0, opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        if (opt == 'K') {
            cache = optarg;
        } else if (opt == 'n') {
            dry = 1;
        } else if (opt == 'B') {
            if (cli_parse_size(optarg, 0, &max) < 0)
                return cli_usage_error(c, "--max-bytes '%s': expected a size (N, NK, NM, NG)",
                                       optarg);
            have_max = true;
        } else {
            int r_ = cli_opt(c, opt);
            if (r_ >= 0)
                return r_;
        }
    }
    if (argc != optind)
        return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
    if (!have_max)
        return cli_usage_error(c, "--max-bytes is needed (0 removes every fetched object)");
    cairn_error err = {0};
    cairn_remote_stats s = {0};
    int r = cairn_remote_cache_gc(cache, max, dry, &s, &err);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json) {
        cli_json_print(json_pack("{s:I, s:I, s:I, s:I, s:I, s:b}", "lowers", (json_int_t)s.states,
                                 "objects", (json_int_t)s.objects, "objects_removed",
                                 (json_int_t)s.objects_moved, "bytes_removed",
                                 (json_int_t)s.bytes_moved, "bytes_kept",
                                 (json_int_t)s.bytes_skipped, "dry_run", dry));
    } else if (!c->quiet) {
        char h[32], k[32];
        printf("%s%llu of %llu fetched objects (%s); %s kept\n", dry ? "would remove " : "removed ",
               (unsigned long long)s.objects_moved, (unsigned long long)s.objects,
               cli_human(s.bytes_moved, h, sizeof(h)), cli_human(s.bytes_skipped, k, sizeof(k)));
    }
    return EXIT_OK;
}

static int cmd_cache_bound(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"cache", required_argument, NULL, 'K'},
                                       {NULL, 0, NULL, 0}};
    const char *cache = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        if (opt == 'K') {
            cache = optarg;
        } else {
            int r_ = cli_opt(c, opt);
            if (r_ >= 0)
                return r_;
        }
    }
    if (argc - optind != 1)
        return cli_usage_error(c, argc > optind ? "unexpected argument '%s'" : "a size is needed%s",
                               argc > optind ? argv[optind + 1] : "");
    uint64_t max = 0;
    if (strcmp(argv[optind], "none") && (cli_parse_size(argv[optind], 0, &max) < 0 || !max))
        return cli_usage_error(c, "'%s': expected a size (N, NK, NM, NG, NT, NGiB) or none",
                               argv[optind]);
    cairn_error err = {0};
    if (cairn_remote_cache_bound(cache, max, &err) < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(json_pack("{s:I}", "max_bytes", (json_int_t)max));
    return EXIT_OK;
}

const cli_command cli_remote_commands[] = {
    {"remote add", cmd_remote_add, "NAME URL",
     "name a remote (file:///dir; no credentials in it: they come from the environment)"},
    {"remote ls", cmd_remote_ls, "", "list the remotes of the state"},
    {"remote rm", cmd_remote_rm, "NAME...", "forget a remote (nothing in it is touched)"},
    {"push", cmd_push,
     "[--own] [--compression zstd|gzip|none] [--objects-per-manifest N] REMOTE TAG",
     "publish the state (with its lowers' union, or --own alone) under TAG, sending only what "
     "the remote lacks"},
    {"pull", cmd_pull, "[--lazy [--cache DIR]] REMOTE TAG",
     "fetch every state under TAG into the state (only what it lacks, verified) and merge them; "
     "--lazy: stack them as lowers, objects fetched on first use into a cache"},
    {"cache gc", cmd_cache_gc, "[--cache DIR] [--dry-run] --max-bytes N[K|M|G]",
     "bound the cache of lazy lowers: the objects fetched longest ago go first"},
    {"cache bound", cmd_cache_bound, "[--cache DIR] SIZE|none",
     "keep the cache of lazy lowers under SIZE from now on: each fetch collects it as cache gc"},
    {"remote states", cmd_remote_states, "REMOTE [TAG]",
     "the states of a remote, with their objects, sizes and times"},
    {"remote compact", cmd_remote_compact, "REMOTE TAG",
     "merge the states under TAG into one, in the remote: metadata only, no object moved"},
    {"remote gc", cmd_remote_gc, "[--keep N] [--older-than D] [--grace D] [--dry-run] REMOTE",
     "remove states by the policy, then objects no state names (older than the grace, 1h)"},
    {NULL, NULL, NULL, NULL},
};
