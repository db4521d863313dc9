/* cmd-import.c: `cairn import containerd ROOT`: adopt a containerd root. */
#include "cli.h"

#include <errno.h>
#include <string.h>

typedef struct left_out {
    cli *c;
    json_t *list;
    cli_progress *p;
} left_out;

static void on_report(void *ud, const char *kind, const char *name, const char *why)
{
    left_out *l = ud;
    if (l->list)
        json_array_append_new(l->list, json_pack("{s:s, s:s, s:s}", "kind", kind, "name", name,
                                                 "why", why));
    else {
        cli_progress_done(l->p); /* the bar is drawn again by the next step */
        fprintf(stderr, "cairn %s: %s %s: %s\n", l->c->cmd, kind, name, why);
    }
}

static int cmd_import_containerd(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"namespace", required_argument, NULL, 'n'},
                                       {NULL, 0, NULL, 0}};
    cairn_containerd_import_options o = CAIRN_CONTAINERD_IMPORT_OPTIONS_INIT;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "n:", lo, NULL)) != -1) {
        if (opt == 'n') {
            o.ns = optarg;
            continue;
        }
        int r_ = cli_opt(c, opt);
        if (r_ >= 0)
            return r_;
    }
    if (argc - optind != 1)
        return cli_usage_error(c, "expected the containerd root (its `root` directory)");
    const char *root = argv[optind];
    cairn_state *st = NULL;
    if (cli_open(c, 0, &st))
        return EXIT_FAIL;
    cli_progress p;
    cli_progress_init(&p, c, "import", false);
    left_out l = {c, c->json ? json_array() : NULL, &p};
    o.report = on_report;
    o.report_userdata = &l;
    o.progress = cli_progress_cb;
    o.progress_userdata = &p;
    cairn_containerd_import_stats s = {0};
    cairn_error err = {0};
    int r = cairn_containerd_import(st, root, &o, &s, &err);
    cli_progress_done(&p);
    cairn_state_free(st);
    if (r < 0) {
        json_decref(l.list);
        return cli_fail(c, &err);
    }
    if (c->json) {
        json_t *j = json_pack(
            "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
            "root", root, "blobs", (json_int_t)s.blobs, "blobs_present",
            (json_int_t)s.blobs_present, "blobs_refused", (json_int_t)s.blobs_refused, "snapshots",
            (json_int_t)s.snapshots, "snapshots_present", (json_int_t)s.snapshots_present,
            "snapshots_refused", (json_int_t)s.snapshots_refused, "snapshots_unpacked",
            (json_int_t)s.snapshots_unpacked, "snapshots_skipped",
            (json_int_t)s.snapshots_skipped, "images", (json_int_t)s.images, "images_refused",
            (json_int_t)s.images_refused, "files_linked", (json_int_t)s.files_linked,
            "files_copied", (json_int_t)s.files_copied, "bytes_copied",
            (json_int_t)s.bytes_copied, "bytes_verified", (json_int_t)s.bytes_verified,
            "layers_compared", (json_int_t)s.layers_compared, "layers_applied",
            (json_int_t)s.layers_applied);
        json_object_set_new(j, "left_out", l.list);
        cli_json_print(j);
    } else if (!c->quiet) {
        char h1[32], h2[32];
        printf("imported %s: %llu images (%llu left out), %llu blobs (%llu already there, %llu "
               "left out), %llu snapshots (%llu already there, %llu left out, %llu applied from "
               "their layer blob; %llu active ones not imported)\n",
               root, (unsigned long long)s.images, (unsigned long long)s.images_refused,
               (unsigned long long)s.blobs, (unsigned long long)s.blobs_present,
               (unsigned long long)s.blobs_refused, (unsigned long long)s.snapshots,
               (unsigned long long)s.snapshots_present, (unsigned long long)s.snapshots_refused,
               (unsigned long long)s.snapshots_unpacked, (unsigned long long)s.snapshots_skipped);
        printf("%llu files linked, %llu copied (%s copied), %s read to verify, %llu layers "
               "read beside their tree to prove it, %llu applied in tmp/ to prove it\n",
               (unsigned long long)s.files_linked, (unsigned long long)s.files_copied,
               cli_human(s.bytes_copied, h1, sizeof(h1)), cli_human(s.bytes_verified, h2, sizeof(h2)),
               (unsigned long long)s.layers_compared, (unsigned long long)s.layers_applied);
    }
    return r == 1 ? EXIT_PROBLEMS : EXIT_OK;
}

const cli_command cli_import_commands[] = {
    {"import containerd", cmd_import_containerd, "[--namespace NS] ROOT",
     "adopt a stopped containerd's root: blobs and snapshots linked, images kept"},
    {NULL, NULL, NULL, NULL},
};
