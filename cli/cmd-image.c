/* cmd-image.c: cairn image import|ls|show|rm|export. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static json_t *info_json(const cairn_image_info *in, bool full)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:i}", "name", in->name, "manifest",
                          in->manifest, "config", in->config, "top", in->top, "updated",
                          (json_int_t)in->updated, "lower", in->lower);
    if (o && full) {
        json_object_set_new(o, "layers", json_integer(in->layers));
        json_object_set_new(o, "size", json_integer((json_int_t)in->size));
    }
    return o;
}

static int cmd_import(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"name", required_argument, NULL, 'n'},
                                       {"platform", required_argument, NULL, 'p'},
                                       {"jobs", required_argument, NULL, 'j'},
                                       {NULL, 0, NULL, 0}};
    cairn_image_import_options io = CAIRN_IMAGE_IMPORT_OPTIONS_INIT;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "j:", lo, NULL)) != -1) {
        switch (opt) {
        case 'n':
            io.name = optarg;
            break;
        case 'p': {
            /* os/arch[/variant], each part non-empty */
            const char *a = strchr(optarg, '/');
            const char *v = a ? strchr(a + 1, '/') : NULL;
            if (!a || a == optarg || !a[1] || a[1] == '/' || (v && (!v[1] || strchr(v + 1, '/'))))
                return cli_usage_error(c, "--platform '%s': expected os/arch[/variant]", optarg);
            io.platform = optarg;
            break;
        }
        case 'j': {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || *end || v < 1 || v > 256)
                return cli_usage_error(c, "--jobs '%s': expected a number from 1 to 256", optarg);
            io.jobs = (unsigned)v;
            break;
        }
        default: {
            int r = cli_opt(c, opt);
            if (r >= 0)
                return r;
        }
        }
    }
    if (argc - optind != 1)
        return cli_usage_error(c, "expected one image layout (directory or oci-archive)");
    cairn_error err = {0};
    if (io.name && cairn_image_name_check(io.name, &err) < 0)
        return cli_usage_error(c, "--name: %s", err.message);
    cairn_state *st = NULL;
    int r = cli_open(c, 0, &st);
    if (r)
        return r;
    cli_progress p;
    cli_progress_init(&p, c, "import", true);
    cli_progress_stoppable(&p);
    io.progress = cli_progress_cb;
    io.progress_userdata = &p;
    cairn_image_info in;
    r = cairn_image_import(st, argv[optind], &io, &in, &err);
    cli_progress_done(&p);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json) {
        cli_json_print(info_json(&in, true));
    } else if (!c->quiet) {
        char h[32];
        printf("imported %s: manifest %s, %u layer%s (%s)\n", in.name, in.manifest, in.layers,
               in.layers == 1 ? "" : "s", cli_human(in.size, h, sizeof(h)));
    }
    return EXIT_OK;
}

static int ls_row(void *ud, const cairn_image_info *in)
{
    json_t *list = ud;
    if (list) {
        json_array_append_new(list, info_json(in, false));
        return 0;
    }
    time_t t = (time_t)in->updated;
    struct tm tm;
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", gmtime_r(&t, &tm));
    printf("%-30s %.19s %.19s %s%s\n", in->name, in->manifest, in->top[0] ? in->top : "-", when,
           in->lower ? " (lower)" : "");
    return 0;
}

static int cmd_ls(cli *c, int argc, char **argv)
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
    /* -q: rows only, as `blob ls` and `snapshot ls` print them, for scripts. */
    if (!c->json && !c->quiet)
        printf("%-30s %-19s %-19s %s\n", "NAME", "MANIFEST", "TOP", "UPDATED (UTC)");
    cairn_error err = {0};
    r = cairn_image_list(st, ls_row, list, &err);
    cairn_state_free(st);
    if (r < 0) {
        json_decref(list);
        return cli_fail(c, &err);
    }
    if (list)
        cli_json_print(list);
    return EXIT_OK;
}

static int cmd_show(cli *c, int argc, char **argv)
{
    int r0 = cli_common_only(c, argc, argv);
    if (r0 >= 0)
        return r0;
    if (argc - optind != 1)
        return cli_usage_error(c, "expected one image name");
    cairn_state *st = NULL;
    int r = cli_open(c, CAIRN_OPEN_READONLY, &st);
    if (r)
        return r;
    cairn_error err = {0};
    cairn_image_info in;
    r = cairn_image_get(st, argv[optind], &in, &err);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json) {
        cli_json_print(info_json(&in, true));
    } else {
        char h[32];
        printf("name:     %s\nmanifest: %s\nconfig:   %s\ntop:      %s\nlayers:   %u (%s)\n"
               "layer:    %s\n",
               in.name, in.manifest, in.config, in.top[0] ? in.top : "-", in.layers,
               cli_human(in.size, h, sizeof(h)), in.lower ? "lower" : "this state");
    }
    return EXIT_OK;
}

static int cmd_rm(cli *c, int argc, char **argv)
{
    return cli_rm_command(c, argc, argv, "image", "one or more image names", cairn_image_remove);
}

static int cmd_export(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"format", required_argument, NULL, 'f'},
                                       {"ref", required_argument, NULL, 'r'},
                                       {"compression", required_argument, NULL, 'z'},
                                       {NULL, 0, NULL, 0}};
    cairn_image_export_options eo = CAIRN_IMAGE_EXPORT_OPTIONS_INIT;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        switch (opt) {
        case 'f':
            if (!strcmp(optarg, "oci"))
                eo.format = CAIRN_IMAGE_FORMAT_OCI;
            else if (!strcmp(optarg, "oci-archive"))
                eo.format = CAIRN_IMAGE_FORMAT_OCI_ARCHIVE;
            else
                return cli_usage_error(c, "--format '%s': expected oci or oci-archive", optarg);
            break;
        case 'r':
            eo.ref = optarg;
            break;
        case 'z':
            if (!strcmp(optarg, "none"))
                eo.compression = CAIRN_COMPRESSION_NONE;
            else if (!strcmp(optarg, "gzip"))
                eo.compression = CAIRN_COMPRESSION_GZIP;
            else if (!strcmp(optarg, "zstd"))
                eo.compression = CAIRN_COMPRESSION_ZSTD;
            else
                return cli_usage_error(c, "--compression '%s': expected gzip, zstd or none",
                                       optarg);
            eo.recompress = 1; /* asked for: every layer is in it */
            break;
        default: {
            int r = cli_opt(c, opt);
            if (r >= 0)
                return r;
        }
        }
    }
    if (argc - optind != 2)
        return cli_usage_error(c, "expected an image name and a destination");
    cairn_state *st = NULL;
    int r = cli_open(c, 0, &st);
    if (r)
        return r;
    cli_progress p;
    cli_progress_init(&p, c, "export", true);
    cli_progress_stoppable(&p);
    eo.progress = cli_progress_cb;
    eo.progress_userdata = &p;
    cairn_error err = {0};
    r = cairn_image_export(st, argv[optind], argv[optind + 1], &eo, &err);
    cli_progress_done(&p);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (c->json)
        cli_json_print(json_pack("{s:s, s:s, s:s}", "name", argv[optind], "dest",
                                 argv[optind + 1], "format",
                                 eo.format == CAIRN_IMAGE_FORMAT_OCI ? "oci" : "oci-archive"));
    else if (!c->quiet)
        printf("exported %s to %s\n", argv[optind], argv[optind + 1]);
    return EXIT_OK;
}

const cli_command cli_image_commands[] = {
    {"image import", cmd_import, "PATH[:REF] [--name NAME] [--platform OS/ARCH[/VARIANT]] [--jobs N]",
     "import an OCI image layout or a docker-archive (a directory or a tar of one): blobs "
     "into the store, layers as snapshots, then the names (REF: after the first colon)"},
    {"image ls", cmd_ls, "", "list images (with the lowers') sorted by name"},
    {"image show", cmd_show, "NAME", "print an image's manifest, config, top snapshot and size"},
    {"image rm", cmd_rm, "NAME...", "remove image names (blobs and snapshots stay until gc)"},
    {"image export", cmd_export,
     "NAME DEST [--format oci|oci-archive] [--ref REF] [--compression gzip|zstd|none]",
     "write an image as an OCI image layout directory (or a tar of one, with a manifest.json "
     "for docker load); layers as stored unless --compression is given"},
    {NULL, NULL, NULL, NULL},
};
