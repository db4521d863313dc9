/* cmd-pool.c: cairn pool init|provision|checkin|compact|gc|ls|lease, over
 * cairn/pool.h (docs/POOL.md). The pool is always a URL; no state is opened
 * but the one a command names. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_LONGOPTS                                                                              \
    CLI_REMOTE_LONGOPTS, {"cache", required_argument, NULL, 'c'},                                  \
        {"cache-max", required_argument, NULL, 'M'}, {"lease-ttl", required_argument, NULL, 'T'}

typedef struct pool_args {
    cairn_pool_options o;
    cairn_remote_options ro;
    cli_progress prog;
} pool_args;

/* 1 handled, 0 not a pool option, -1 a bad value (reported). */
static int pool_opt(cli *c, int opt, void *ud)
{
    pool_args *a = ud;
    int64_t d;
    switch (opt) {
    case 'c':
        a->o.cache = optarg;
        return 1;
    case 'M':
        if (cli_parse_size(optarg, 0, &a->o.cache_max) < 0 || a->o.cache_max == 0) {
            cli_usage_error(c, "--cache-max '%s': expected a size (10GiB, 512M)", optarg);
            return -1;
        }
        return 1;
    case 'T':
        if (cli_parse_duration(optarg, &d) < 0 || d <= 0) {
            cli_usage_error(c, "--lease-ttl '%s': expected a duration (30s, 15m, 1h)", optarg);
            return -1;
        }
        a->o.lease_ttl = d;
        return 1;
    }
    return cli_remote_opt(c, opt, &a->ro);
}

static void args_init(pool_args *a, cli *c, const char *label)
{
    *a = (pool_args){.o = CAIRN_POOL_OPTIONS_INIT, .ro = CAIRN_REMOTE_OPTIONS_INIT};
    a->o.remote = &a->ro;
    cli_progress_init(&a->prog, c, label, true);
    a->o.progress = cli_progress_cb;
    a->o.progress_userdata = &a->prog;
}

static int pool_args_parse(cli *c, int argc, char **argv, const struct option *lo, pool_args *a,
                           cli_opt_fn extra, void *ud)
{
    return cli_getopt(c, argc, argv, lo, pool_opt, a, extra, ud);
}

static int cmd_pool_init(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, POOL_LONGOPTS, {NULL, 0, NULL, 0}};
    pool_args a;
    args_init(&a, c, "init");
    int r = pool_args_parse(c, argc, argv, lo, &a, NULL, NULL);
    if (r >= 0)
        return r;
    if (argc - optind != 1)
        return cli_usage_error(c, "expected URL");
    cairn_error err = {0};
    r = cairn_pool_init(argv[optind], &a.o, &err);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(json_pack("{s:s, s:i}", "pool", argv[optind], "format", CAIRN_POOL_FORMAT));
    else if (!c->quiet)
        printf("pool %s (format %d)\n", argv[optind], CAIRN_POOL_FORMAT);
    return EXIT_OK;
}

/* ---- provision ------------------------------------------------------------ */

typedef struct prov_args {
    cairn_pool_provision_options po;
    const char **deps;
    size_t n_deps;
} prov_args;

static int prov_extra(cli *c, int opt, void *ud)
{
    prov_args *p = ud;
    switch (opt) {
    case 'd': {
        const char **nv = realloc(p->deps, (p->n_deps + 1) * sizeof(*nv));
        if (!nv)
            return -1;
        p->deps = nv;
        p->deps[p->n_deps++] = optarg;
        return 1;
    }
    case 'D':
        p->po.deps_file = optarg;
        return 1;
    case 'm':
        if (!strcmp(optarg, "stack"))
            p->po.mode = CAIRN_POOL_STACK;
        else if (!strcmp(optarg, "merge"))
            p->po.mode = CAIRN_POOL_MERGE;
        else if (!strcmp(optarg, "overlay"))
            p->po.mode = CAIRN_POOL_OVERLAY;
        else {
            cli_usage_error(c, "--mode '%s': expected stack, merge or overlay", optarg);
            return -1;
        }
        return 1;
    case 'x': {
        char *end;
        unsigned long v = strtoul(optarg, &end, 10);
        if (*end || v == 0 || v > 500) {
            cli_usage_error(c, "--max-lowers '%s': expected 1 to 500", optarg);
            return -1;
        }
        p->po.max_lowers = (unsigned)v;
        return 1;
    }
    case 'U':
        p->po.mount = 1;
        return 1;
    }
    return 0;
}

static void lower_one(void *ud, const cairn_pool_lower *l)
{
    json_t *list = ud;
    json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:i, s:b}", "module", l->module,
                                          "digest", l->digest, "path", l->path, "distance",
                                          (int)l->distance, "fetched", l->fetched));
}

static int cmd_pool_provision(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       POOL_LONGOPTS,
                                       {"dep", required_argument, NULL, 'd'},
                                       {"deps-file", required_argument, NULL, 'D'},
                                       {"mode", required_argument, NULL, 'm'},
                                       {"max-lowers", required_argument, NULL, 'x'},
                                       {"mount", no_argument, NULL, 'U'},
                                       {NULL, 0, NULL, 0}};
    pool_args a;
    args_init(&a, c, "provision");
    prov_args p = {.po = CAIRN_POOL_PROVISION_OPTIONS_INIT};
    int r = pool_args_parse(c, argc, argv, lo, &a, prov_extra, &p);
    if (r >= 0) {
        free(p.deps);
        return r;
    }
    if (argc - optind != 3) {
        free(p.deps);
        return cli_usage_error(c, "expected URL MODULE DEST");
    }
    if (p.po.mount && p.po.mode != CAIRN_POOL_OVERLAY) {
        free(p.deps);
        return cli_usage_error(c, "--mount goes with --mode overlay");
    }
    p.po.deps = p.deps;
    p.po.n_deps = p.n_deps;
    json_t *lowers = json_array();
    p.po.lower = lower_one;
    p.po.lower_userdata = lowers;
    cairn_pool_provision_result res;
    cairn_error err = {0};
    const char *url = argv[optind], *module = argv[optind + 1], *dest = argv[optind + 2];
    r = cairn_pool_provision(url, module, dest, &a.o, &p.po, &res, &err);
    cli_progress_done(&a.prog);
    free(p.deps);
    if (r < 0) {
        json_decref(lowers);
        cairn_pool_provision_result_clear(&res);
        return cli_fail(c, &err);
    }
    if (res.warning[0])
        fprintf(stderr, "cairn: warning: %s\n", res.warning);
    static const char *const modes[] = {"stack", "merge", "overlay"};
    if (c->json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:b, s:b, s:s, s:s, s:o}",
                              "module", module, "dest", dest, "mode", modes[p.po.mode], "state",
                              res.state_id, "modules", (int)res.modules, "lowers",
                              (int)res.lowers, "fetched", (int)res.fetched, "cached",
                              (int)res.cached, "hit", res.lowers > 0, "offline", res.offline,
                              "lease", res.lease, "warning", res.warning, "stack", lowers);
        if (res.overlay)
            json_object_set_new(j, "mount", json_string(res.overlay));
        cli_json_print(j);
    } else {
        json_decref(lowers);
        if (res.overlay && !p.po.mount)
            printf("%s\n", res.overlay);
        else if (!c->quiet && res.lowers == 0)
            printf("%s: an empty state (module %s has no state in the pool)\n", dest, module);
        else if (!c->quiet)
            printf("%s: %s over %u states of %u modules (%u fetched, %u from the cache)%s\n",
                   dest, modes[p.po.mode], res.lowers, res.modules, res.fetched, res.cached,
                   res.offline ? ", offline" : "");
    }
    cairn_pool_provision_result_clear(&res);
    return EXIT_OK;
}

/* ---- checkin, lease -------------------------------------------------------- */

static int cmd_pool_checkin(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, POOL_LONGOPTS, {NULL, 0, NULL, 0}};
    pool_args a;
    args_init(&a, c, "checkin");
    int r = pool_args_parse(c, argc, argv, lo, &a, NULL, NULL);
    if (r >= 0)
        return r;
    if (argc - optind != 3)
        return cli_usage_error(c, "expected URL MODULE STATE");
    cairn_error err = {0};
    cairn_remote_stats s = {0};
    char digest[CAIRN_DIGEST_LEN + 1] = "";
    r = cairn_pool_checkin(argv[optind], argv[optind + 1], argv[optind + 2], &a.o, &s, digest,
                           &err);
    cli_progress_done(&a.prog);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json) {
        cli_json_print(json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "module",
                                 argv[optind + 1], "digest", digest, "objects",
                                 (json_int_t)s.objects, "objects_sent",
                                 (json_int_t)s.objects_moved, "bytes_sent",
                                 (json_int_t)s.bytes_moved, "objects_skipped",
                                 (json_int_t)s.objects_skipped, "bytes_skipped",
                                 (json_int_t)s.bytes_skipped, "meta_bytes",
                                 (json_int_t)s.meta_bytes));
    } else if (!c->quiet) {
        char a1[32], b1[32], m1[32];
        printf("checked in %s as %s: %llu objects, %llu sent (%s), %llu the pool had (%s); "
               "metadata %s\n", argv[optind + 2], digest, (unsigned long long)s.objects,
               (unsigned long long)s.objects_moved, cli_human(s.bytes_moved, a1, sizeof(a1)),
               (unsigned long long)s.objects_skipped, cli_human(s.bytes_skipped, b1, sizeof(b1)),
               cli_human(s.meta_bytes, m1, sizeof(m1)));
    }
    return EXIT_OK;
}

static int cmd_pool_lease(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, POOL_LONGOPTS, {NULL, 0, NULL, 0}};
    pool_args a;
    args_init(&a, c, "lease");
    int r = pool_args_parse(c, argc, argv, lo, &a, NULL, NULL);
    if (r >= 0)
        return r;
    if (argc - optind != 3)
        return cli_usage_error(c, "expected renew|release URL STATE");
    const char *verb = argv[optind];
    bool renew = !strcmp(verb, "renew");
    if (!renew && strcmp(verb, "release") != 0)
        return cli_usage_error(c, "'%s': expected renew or release", verb);
    cairn_error err = {0};
    r = renew ? cairn_pool_lease_renew(argv[optind + 1], argv[optind + 2], &a.o, &err)
              : cairn_pool_lease_release(argv[optind + 1], argv[optind + 2], &a.o, &err);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(json_pack("{s:s, s:s}", "state", argv[optind + 2], "lease",
                                 renew ? "renewed" : "released"));
    else if (!c->quiet)
        printf("%s: lease %s\n", argv[optind + 2], renew ? "renewed" : "released");
    return EXIT_OK;
}

/* ---- compact, gc, ls ------------------------------------------------------- */

static int compact_extra(cli *c, int opt, void *ud)
{
    cairn_pool_options *o = ud;
    int64_t d;
    if (opt != 'g')
        return 0;
    if (cli_parse_duration(optarg, &d) < 0) {
        cli_usage_error(c, "--grace '%s': expected a duration (0, 30s, 15m, 1h)", optarg);
        return -1;
    }
    o->retire_grace = d > 0 ? d : -1;
    return 1;
}

static int cmd_pool_compact(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, POOL_LONGOPTS,
                                       {"grace", required_argument, NULL, 'g'},
                                       {NULL, 0, NULL, 0}};
    pool_args a;
    args_init(&a, c, "compact");
    int r = pool_args_parse(c, argc, argv, lo, &a, compact_extra, &a.o);
    if (r >= 0)
        return r;
    if (argc - optind < 1 || argc - optind > 2)
        return cli_usage_error(c, "expected URL [MODULE]");
    cairn_error err = {0};
    cairn_remote_stats s = {0};
    uint64_t retired = 0;
    r = cairn_pool_compact(argv[optind], argc - optind == 2 ? argv[optind + 1] : NULL, &a.o, &s,
                           &retired, &err);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json) {
        cli_json_print(json_pack("{s:i, s:I, s:I, s:I, s:I, s:I}", "modules", r, "states",
                                 (json_int_t)s.states, "objects", (json_int_t)s.objects,
                                 "bytes_moved", (json_int_t)s.bytes_moved, "meta_bytes",
                                 (json_int_t)s.meta_bytes, "retired", (json_int_t)retired));
    } else if (!c->quiet) {
        char m[32];
        printf("compacted %d modules: %llu states folded, %llu objects, none moved; metadata "
               "%s; %llu folded states retired\n", r, (unsigned long long)s.states,
               (unsigned long long)s.objects, cli_human(s.meta_bytes, m, sizeof(m)),
               (unsigned long long)retired);
    }
    return EXIT_OK;
}

typedef struct gc_args {
    cairn_pool_gc_options g;
    bool size_given;
} gc_args;

static int gc_extra(cli *c, int opt, void *ud)
{
    gc_args *g = ud;
    switch (opt) {
    case 's':
        if (cli_parse_size(optarg, 0, &g->g.max_size) < 0) {
            cli_usage_error(c, "--max-size '%s': expected a size (10GiB, 512M, 0)", optarg);
            return -1;
        }
        g->size_given = true;
        return 1;
    case 'g':
        if (cli_parse_duration(optarg, &g->g.grace) < 0) {
            cli_usage_error(c, "--grace '%s': expected a duration (30s, 15m, 1h)", optarg);
            return -1;
        }
        return 1;
    case 'n':
        g->g.dry_run = 1;
        return 1;
    }
    return 0;
}

static int cmd_pool_gc(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       POOL_LONGOPTS,
                                       {"max-size", required_argument, NULL, 's'},
                                       {"grace", required_argument, NULL, 'g'},
                                       {"dry-run", no_argument, NULL, 'n'},
                                       {NULL, 0, NULL, 0}};
    pool_args a;
    args_init(&a, c, "gc");
    gc_args g = {.g = CAIRN_POOL_GC_OPTIONS_INIT};
    int r = pool_args_parse(c, argc, argv, lo, &a, gc_extra, &g);
    if (r >= 0)
        return r;
    if (argc - optind != 1)
        return cli_usage_error(c, "expected URL");
    if (!g.size_given)
        return cli_usage_error(c, "--max-size SIZE is needed (what the pool may keep)");
    cairn_error err = {0};
    cairn_pool_gc_stats s = {0};
    r = cairn_pool_gc(argv[optind], &a.o, &g.g, &s, &err);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json) {
        cli_json_print(json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "states",
                                 (json_int_t)s.states, "retired", (json_int_t)s.retired,
                                 "kept_leased", (json_int_t)s.kept_leased, "size_before",
                                 (json_int_t)s.size_before, "size_after",
                                 (json_int_t)s.size_after, "objects_removed",
                                 (json_int_t)s.objects_removed, "bytes_removed",
                                 (json_int_t)s.bytes_removed, "leases_folded",
                                 (json_int_t)s.leases_folded, "folded_retired",
                                 (json_int_t)s.folded_retired, "dry_run", g.g.dry_run));
    } else if (!c->quiet) {
        char b[32], af[32], rm[32];
        printf("%s%llu of %llu states (%llu kept: leased), %s -> %s; %llu objects (%s)\n",
               g.g.dry_run ? "would retire " : "retired ", (unsigned long long)s.retired,
               (unsigned long long)s.states, (unsigned long long)s.kept_leased,
               cli_human(s.size_before, b, sizeof(b)), cli_human(s.size_after, af, sizeof(af)),
               (unsigned long long)s.objects_removed, cli_human(s.bytes_removed, rm, sizeof(rm)));
    }
    return EXIT_OK;
}

static int ls_one(void *ud, const cairn_pool_entry *e)
{
    json_t *list = ud;
    if (list) {
        json_array_append_new(
            list, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:s}", "module",
                            e->module, "digest", e->digest, "state", e->state_id, "published",
                            (json_int_t)e->published, "last_use", (json_int_t)e->last_use, "hits",
                            (json_int_t)e->hits, "objects", (json_int_t)e->objects, "bytes",
                            (json_int_t)e->bytes, "leased", e->leased, "cached", e->cached,
                            "folded", e->folded));
        return 0;
    }
    char when[32] = "-", h[32];
    if (e->last_use) {
        time_t t = (time_t)e->last_use;
        struct tm tm;
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", gmtime_r(&t, &tm));
    }
    printf("%-20s %.19s  %-19s %6llu %8llu %10s  %s%s\n", e->module, e->digest, when,
           (unsigned long long)e->hits, (unsigned long long)e->objects,
           cli_human(e->bytes, h, sizeof(h)), e->leased ? "leased" : "-",
           e->cached ? ",cached" : "");
    return 0;
}

static int cmd_pool_ls(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, POOL_LONGOPTS, {NULL, 0, NULL, 0}};
    pool_args a;
    args_init(&a, c, "ls");
    int r = pool_args_parse(c, argc, argv, lo, &a, NULL, NULL);
    if (r >= 0)
        return r;
    if (argc - optind < 1 || argc - optind > 2)
        return cli_usage_error(c, "expected URL [MODULE]");
    json_t *list = c->json ? json_array() : NULL;
    if (!list)
        printf("%-20s %-19s  %-19s %6s %8s %10s  %s\n", "MODULE", "DIGEST", "LAST USE (UTC)",
               "HITS", "OBJECTS", "BYTES", "");
    cairn_error err = {0};
    r = cairn_pool_ls(argv[optind], argc - optind == 2 ? argv[optind + 1] : NULL, &a.o, ls_one,
                      list, &err);
    if (r < 0) {
        json_decref(list);
        return cli_fail(c, &err);
    }
    if (list)
        cli_json_print(json_pack("{s:o}", "states", list));
    return EXIT_OK;
}

const cli_command cli_pool_commands[] = {
    {"pool init", cmd_pool_init, "URL", "make a pool of states per module in a remote"},
    {"pool provision", cmd_pool_provision,
     "[--dep MODULE]... [--deps-file F] [--mode stack|merge|overlay [--mount]] [--max-lowers N] "
     "[--cache DIR] [--cache-max SIZE] URL MODULE DEST",
     "make DEST a writable state over the states of MODULE and its dependencies, ranked, "
     "fetched once into this host's cache"},
    {"pool checkin", cmd_pool_checkin, "[--cache DIR] URL MODULE STATE",
     "push what a provisioned session added as a new state of MODULE (its cost: the delta)"},
    {"pool lease", cmd_pool_lease, "[--cache DIR] [--lease-ttl D] renew|release URL STATE",
     "renew the lease of a provision (gc keeps what it stacks on), or release it"},
    {"pool compact", cmd_pool_compact, "[--grace D] URL [MODULE]",
     "merge each module's states into one, in the remote: no object moves"},
    {"pool gc", cmd_pool_gc, "--max-size SIZE [--grace D] [--dry-run] URL",
     "retire states least recently used first (not leased ones), then unreferenced objects"},
    {"pool ls", cmd_pool_ls, "URL [MODULE]", "modules and their states: sizes, last use, hits"},
    {NULL, NULL, NULL, NULL},
};
