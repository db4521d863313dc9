/* cmd-gc.c: cairn gc, cairn du. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

struct gc_out {
    cli *c;
    json_t *list;
    bool dry;
    cli_progress *p;
};

static void gc_item(void *ud, const cairn_gc_item *it)
{
    struct gc_out *o = ud;
    if (o->list) {
        json_array_append_new(o->list, json_pack("{s:s, s:s, s:I, s:s}", "kind", it->kind, "name",
                                                 it->name, "size", (json_int_t)it->size, "reason",
                                                 it->reason));
        return;
    }
    if (o->c->quiet)
        return;
    cli_progress_clear(o->p);
    char h[32];
    printf("%s %s %s %s (%s)\n", o->dry ? "would remove" : "removed", it->kind, it->name,
           it->size ? cli_human(it->size, h, sizeof(h)) : "-", it->reason);
}

/* The grace period as the options take it: 10m, 48h, 30s. */
static const char *gc_duration(int64_t s, char *buf, size_t size)
{
    static const struct {
        int64_t unit;
        char c;
    } u[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}};
    for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++)
        if (s > 0 && s % u[i].unit == 0) {
            snprintf(buf, size, "%lld%c", (long long)(s / u[i].unit), u[i].c);
            return buf;
        }
    snprintf(buf, size, "%llds", (long long)s);
    return buf;
}

/* A run that removed nothing says why: what nothing keeps is young (du counts
 * its bytes without a grace period; a dry run with no grace period counts the
 * objects older than this second), or everything is kept. */
static void gc_why_nothing(cairn_state *st, const cairn_gc_options *go)
{
    int64_t grace = go->grace == 0 ? CAIRN_GC_GRACE_DEFAULT : go->grace < 0 ? 0 : go->grace;
    cairn_gc_stats y = {0};
    cairn_gc_options dry = *go;
    dry.dry_run = 1;
    dry.grace = CAIRN_GC_GRACE_NONE;
    dry.progress = NULL;
    if (cairn_gc(st, &dry, NULL, NULL, &y, NULL) < 0)
        memset(&y, 0, sizeof(y));
    cairn_du_totals t = {0};
    if (cairn_du(st, 0, &t, NULL, NULL, NULL) < 0)
        t.unreferenced = 0;
    uint64_t young = y.blobs + y.snapshots + y.records + y.volume_versions + y.files;
    const char *what = go->dry_run ? "would remove nothing" : "nothing removed";
    char g[32], h[32], n[48] = "";
    if (young)
        snprintf(n, sizeof(n), "%llu object%s, ", (unsigned long long)young, young == 1 ? "" : "s");
    if (young || t.unreferenced)
        printf("%s: what nothing keeps (%s%s) is younger than the grace period (%s; --grace 0 "
               "takes what is older than a second)\n",
               what, n,
               cli_human(y.bytes_freed > t.unreferenced ? y.bytes_freed : t.unreferenced, h,
                         sizeof(h)),
               gc_duration(grace, g, sizeof(g)));
    else if (!t.own_blobs.count && !t.own_snapshots.count)
        printf("%s: this state holds no blob or snapshot of its own\n", what);
    else
        printf("%s: an image, volume, lease, record or lower keeps every object%s\n", what,
               t.records && go->keep_duration < 0 && go->max_used < 0 && go->min_free < 0
                   ? " (--keep-duration, --max-used or --min-free remove records)"
                   : "");
}

_Static_assert(CAIRN_GC_GRACE_DEFAULT == 600, "gc --help says the grace period is 10m");

static int cmd_gc(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"dry-run", no_argument, NULL, 'n'},
                                       {"keep-duration", required_argument, NULL, 'k'},
                                       {"max-used", required_argument, NULL, 'm'},
                                       {"min-free", required_argument, NULL, 'f'},
                                       {"reserved", required_argument, NULL, 'r'},
                                       {"grace", required_argument, NULL, 'g'},
                                       {NULL, 0, NULL, 0}};
    cairn_gc_options go = CAIRN_GC_OPTIONS_INIT;
    const char *sizes[3] = {NULL, NULL, NULL}; /* max-used, min-free, reserved */
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "n", lo, NULL)) != -1) {
        switch (opt) {
        case 'n':
            go.dry_run = 1;
            break;
        case 'k':
        case 'g': {
            int64_t d;
            int r = cli_parse_duration(optarg, &d);
            if (r == -ERANGE)
                return cli_usage_error(c, "--%s '%s': too long (at most 9223372036854775807s)",
                                       opt == 'k' ? "keep-duration" : "grace", optarg);
            if (r < 0)
                return cli_usage_error(c, "--%s '%s': expected a duration (30s, 15m, 48h, 7d)",
                                       opt == 'k' ? "keep-duration" : "grace", optarg);
            /* 0 in the options means the default: a grace of 0 is
             * none, a keep-duration of 0 the shortest there is. */
            if (opt == 'k')
                go.keep_duration = d > 0 ? d : 1;
            else
                go.grace = d > 0 ? d : CAIRN_GC_GRACE_NONE;
            break;
        }
        case 'm':
            sizes[0] = optarg;
            break;
        case 'f':
            sizes[1] = optarg;
            break;
        case 'r':
            sizes[2] = optarg;
            break;
        default: {
            int r = cli_opt(c, opt);
            if (r >= 0)
                return r;
        }
        }
    }
    if (optind < argc)
        return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
    uint64_t fs_total = 0;
    struct statvfs sv;
    if (statvfs(c->state_path, &sv) == 0)
        fs_total = (uint64_t)sv.f_blocks * sv.f_frsize;
    static const char *const names[] = {"max-used", "min-free", "reserved"};
    int64_t *dst[] = {&go.max_used, &go.min_free, &go.reserved};
    for (int i = 0; i < 3; i++) {
        if (!sizes[i])
            continue;
        uint64_t v;
        if (cli_parse_size(sizes[i], fs_total, &v) < 0 || v > INT64_MAX)
            return cli_usage_error(c, "--%s '%s': expected a size (10GB, 512MiB, 10%%)",
                                   names[i], sizes[i]);
        /* 0 in the options means not set: a budget of 0 is 1 byte. */
        *dst[i] = v > 0 ? (int64_t)v : i == 0 ? 1 : 0;
    }
    cairn_state *st = NULL;
    int r = cli_open(c, go.dry_run ? CAIRN_OPEN_READONLY : CAIRN_OPEN_FREE_RESERVE, &st);
    if (r)
        return r;
    cli_progress p;
    cli_progress_init(&p, c, "gc", false);
    cli_progress_stoppable(&p);
    go.progress = cli_progress_cb;
    go.progress_userdata = &p;
    struct gc_out o = {c, c->json ? json_array() : NULL, go.dry_run != 0, &p};
    cairn_gc_stats s;
    cairn_error err = {0};
    r = cairn_gc(st, &go, gc_item, &o, &s, &err);
    cli_progress_done(&p);
    bool none = r >= 0 && !(s.blobs + s.snapshots + s.records + s.links + s.volume_versions +
                            s.leases + s.files);
    if (r < 0) {
        cairn_state_free(st);
        json_decref(o.list);
        return cli_fail(c, &err);
    }
    if (c->json) {
        cli_json_print(json_pack(
            "{s:o, s:b, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:I, s:I, s:I}", "removed", o.list,
            "dry_run", go.dry_run, "counts", "blobs", (json_int_t)s.blobs, "snapshots",
            (json_int_t)s.snapshots, "records", (json_int_t)s.records, "links",
            (json_int_t)s.links, "volume_versions", (json_int_t)s.volume_versions, "leases",
            (json_int_t)s.leases, "files", (json_int_t)s.files, "bytes_freed",
            (json_int_t)s.bytes_freed, "used_before", (json_int_t)s.used_before, "used_after",
            (json_int_t)s.used_after));
    } else {
        char a[32], b[32], d[32];
        printf("%s %llu blobs, %llu snapshots, %llu records, %llu links, %llu volume versions, "
               "%llu leases, %llu files: %s freed (%s -> %s)\n",
               go.dry_run ? "would remove" : "removed", (unsigned long long)s.blobs,
               (unsigned long long)s.snapshots, (unsigned long long)s.records,
               (unsigned long long)s.links, (unsigned long long)s.volume_versions,
               (unsigned long long)s.leases, (unsigned long long)s.files,
               cli_human(s.bytes_freed, a, sizeof(a)), cli_human(s.used_before, b, sizeof(b)),
               cli_human(s.used_after, d, sizeof(d)));
        if (none && !c->quiet)
            gc_why_nothing(st, &go);
    }
    cairn_state_free(st);
    return EXIT_OK;
}

struct du_out {
    json_t *lists[3];
    const char *last_kind;
};

/* Entries are collected (the totals come first in the text output). */
static int du_row(void *ud, const cairn_du_entry *e)
{
    struct du_out *o = ud;
    int k = !strcmp(e->kind, "image") ? 0 : !strcmp(e->kind, "volume") ? 1 : 2;
    json_array_append_new(o->lists[k], json_pack("{s:s, s:I, s:I, s:I}", "name", e->name, "size",
                                                 (json_int_t)e->size, "unique",
                                                 (json_int_t)e->unique, "objects",
                                                 (json_int_t)e->objects));
    return 0;
}

static void du_print(struct du_out *o)
{
    static const char *const kinds[] = {"image", "volume", "record"};
    for (int k = 0; k < 3; k++) {
        size_t i;
        json_t *e;
        if (!json_array_size(o->lists[k]))
            continue;
        printf("\n%-8s %-72s %11s %11s %8s\n", "KIND", "NAME", "SIZE", "UNIQUE", "OBJECTS");
        json_array_foreach(o->lists[k], i, e)
        {
            char a[32], b[32];
            printf("%-8s %-72s %11s %11s %8lld\n", kinds[k],
                   json_string_value(json_object_get(e, "name")),
                   cli_human((uint64_t)json_integer_value(json_object_get(e, "size")), a, sizeof(a)),
                   cli_human((uint64_t)json_integer_value(json_object_get(e, "unique")), b,
                             sizeof(b)),
                   (long long)json_integer_value(json_object_get(e, "objects")));
        }
    }
}

static int cmd_du(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"limit", required_argument, NULL, 'l'},
                                       {NULL, 0, NULL, 0}};
    unsigned limit = 20;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        if (opt == 'l') {
            char *end;
            errno = 0;
            unsigned long v = strtoul(optarg, &end, 10);
            if (errno || *end || !*optarg || *optarg == '-' || v > 0xffffffffUL)
                return cli_usage_error(c, "--limit '%s': expected a number (0: all)", optarg);
            limit = (unsigned)v;
            continue;
        }
        int r = cli_opt(c, opt);
        if (r >= 0)
            return r;
    }
    if (optind < argc)
        return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
    cairn_state *st = NULL;
    int r = cli_open(c, CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    struct du_out o = {{json_array(), json_array(), json_array()}, NULL};
    cairn_du_totals t;
    cairn_error err = {0};
    r = cairn_du(st, limit, &t, du_row, &o, &err);
    if (r == 0 && !c->json) {
        char a[32], b[32], d[32], e[32], f[32];
        printf("%-12s %10s %11s   %s\n", "KIND", "COUNT", "SIZE", "(this state's own)");
        printf("%-12s %10llu %11s   %llu, %s\n", "blobs", (unsigned long long)t.blobs.count,
               cli_human(t.blobs.bytes, a, sizeof(a)), (unsigned long long)t.own_blobs.count,
               cli_human(t.own_blobs.bytes, b, sizeof(b)));
        printf("%-12s %10llu %11s   %llu, %s\n", "snapshots",
               (unsigned long long)t.snapshots.count, cli_human(t.snapshots.bytes, d, sizeof(d)),
               (unsigned long long)t.own_snapshots.count,
               cli_human(t.own_snapshots.bytes, e, sizeof(e)));
        printf("%-12s %10llu\n%-12s %10llu\n%-12s %10llu\n%-12s %10llu\n%-12s %10llu\n",
               "records", (unsigned long long)t.records, "links", (unsigned long long)t.links,
               "images", (unsigned long long)t.images, "volumes", (unsigned long long)t.volumes,
               "leases", (unsigned long long)t.leases);
        printf("total %s; reclaimable %s (kept only by records or by nothing), "
               "unreferenced %s\n",
               cli_human(t.total, a, sizeof(a)), cli_human(t.reclaimable, b, sizeof(b)),
               cli_human(t.unreferenced, f, sizeof(f)));
        du_print(&o);
    }
    cairn_state_free(st);
    if (r < 0) {
        for (int i = 0; i < 3; i++)
            json_decref(o.lists[i]);
        return cli_fail(c, &err);
    }
    if (!c->json) {
        for (int i = 0; i < 3; i++)
            json_decref(o.lists[i]);
    } else {
        json_t *tot = json_pack(
            "{s:{s:I, s:I}, s:{s:I, s:I}, s:{s:I, s:I}, s:{s:I, s:I}, s:I, s:I, s:I, s:I, s:I, "
            "s:I, s:I, s:I}",
            "blobs", "count", (json_int_t)t.blobs.count, "bytes", (json_int_t)t.blobs.bytes,
            "snapshots", "count", (json_int_t)t.snapshots.count, "bytes",
            (json_int_t)t.snapshots.bytes, "own_blobs", "count", (json_int_t)t.own_blobs.count,
            "bytes", (json_int_t)t.own_blobs.bytes, "own_snapshots", "count",
            (json_int_t)t.own_snapshots.count, "bytes", (json_int_t)t.own_snapshots.bytes,
            "records", (json_int_t)t.records, "links", (json_int_t)t.links, "images",
            (json_int_t)t.images, "volumes", (json_int_t)t.volumes, "leases",
            (json_int_t)t.leases, "total", (json_int_t)t.total, "reclaimable",
            (json_int_t)t.reclaimable, "unreferenced", (json_int_t)t.unreferenced);
        cli_json_print(json_pack("{s:o, s:o, s:o, s:o}", "totals", tot, "images", o.lists[0],
                                 "volumes", o.lists[1], "records", o.lists[2]));
    }
    return EXIT_OK;
}

const cli_command cli_gc_commands[] = {
    {"gc", cmd_gc,
     "[--dry-run] [--keep-duration D] [--max-used SIZE] [--min-free SIZE] [--reserved SIZE] "
     "[--grace D]",
     "remove what nothing keeps (leases, images, volumes, records, lowers); with a policy, also "
     "the least recently used cache records over budget. SIZE: 10GB, 512MiB, 10%; D: 30s, 15m, "
     "48h, 7d. --grace D: keep what was created or used within D (default 10m), so that a "
     "writer racing gc loses nothing"},
    {"du", cmd_du, "[--limit N]",
     "disk usage by kind, and by image, volume and record, largest first (shared bytes counted "
     "once; UNIQUE: bytes only that one keeps)"},
    {NULL, NULL, NULL, NULL},
};
