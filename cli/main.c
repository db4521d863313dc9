/* main.c: the `cairn` command: global options and dispatch. */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const cli_command *const tables[] = {
    cli_state_commands,
    cli_blob_commands,
    cli_snapshot_commands,
    cli_image_commands,
    cli_record_commands,
    cli_lease_commands,
    cli_gc_commands,
    cli_volume_commands,
    cli_combine_commands,
    cli_remote_commands,
    cli_serve_commands,
    cli_import_commands,
    cli_pool_commands,
};

static const cli_command *current;

static void help(FILE *f)
{
    fprintf(f,
            "usage: cairn [-C DIR] COMMAND [ARGS...]\n"
            "\n"
            "Keep a container build engine's cache state in a directory that can be\n"
            "snapshotted, stacked, merged, shipped and pruned.\n"
            "\n"
            "Options:\n"
            "  -C, --state DIR  the state directory (default: $CAIRN_STATE, else .)\n"
            "      --json       machine-readable output, where a command prints any\n"
            "  -q, --quiet      no progress, fewer messages\n"
            "  -h, --help       this help; 'cairn COMMAND --help' for a command's\n"
            "      --version    the version\n"
            "\n"
            "Commands:\n");
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
        for (const cli_command *c = tables[t]; c->name; c++) {
            /* Wrap the help text at 80 columns, under its own column. */
            fprintf(f, "  %-18s", c->name);
            int col = 20;
            for (const char *w = c->help; *w;) {
                size_t n = strcspn(w, " ");
                if (col + 1 + (int)n > 80 && col > 20) {
                    fprintf(f, "\n%20s", "");
                    col = 20;
                }
                fprintf(f, " %.*s", (int)n, w);
                col += 1 + (int)n;
                w += n;
                while (*w == ' ')
                    w++;
            }
            fputc('\n', f);
        }
    fprintf(f, "\n"
               "Exit status: 0 success, 1 failure (the message names the object and the\n"
               "cause), 2 bad command line, 3 problems found and left (fsck: not repaired;\n"
               "stack ls: a lower not usable).\n");
}

int cli_common_opt(cli *c, int opt, const char *arg)
{
    switch (opt) {
    case 'J':
        c->json = true;
        return 1;
    case 'q':
        c->quiet = true;
        return 1;
    case 'C':
        c->state_path = arg;
        c->state_given = true;
        return 1;
    case 'h':
        cli_usage(c, stdout);
        return -1;
    default:
        return 0;
    }
}

int cli_opt(cli *c, int opt)
{
    int h = cli_common_opt(c, opt, optarg);
    if (h < 0)
        return EXIT_OK;
    if (h == 0)
        return cli_usage_error(c, "unknown option");
    return -1;
}

int cli_common_only(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        int r = cli_opt(c, opt);
        if (r >= 0)
            return r;
    }
    return -1;
}

int cli_getopt(cli *c, int argc, char **argv, const struct option *lo, cli_opt_fn own,
               void *own_ud, cli_opt_fn extra, void *extra_ud)
{
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        int h = own ? own(c, opt, own_ud) : 0;
        if (!h && extra)
            h = extra(c, opt, extra_ud);
        if (h < 0)
            return EXIT_USAGE;
        if (h)
            continue;
        int r = cli_opt(c, opt);
        if (r >= 0)
            return r;
    }
    return -1;
}

void cli_usage(cli *c, FILE *f)
{
    if (!current) {
        help(f);
        return;
    }
    fprintf(f, "usage: cairn %s %s\n\n%s\n", current->name, current->args, current->help);
    fprintf(f, "\nCommon options: -C/--state DIR, --json, -q/--quiet, -h/--help\n");
    if (strstr(current->args, "REMOTE") || !strncmp(current->name, "pool ", 5))
        fprintf(f, "Remote options: --jobs N (objects moved at once, 8), --insecure (oci: plain "
                   "http to a host not loopback), --region R and --endpoint URL (s3), "
                   "--auth-file F (oci)\n");
}

int cli_usage_error(cli *c, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "cairn %s: ", c->cmd ? c->cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'cairn %s --help'.\n", c->cmd ? c->cmd : "");
    return EXIT_USAGE;
}

int cli_fail(cli *c, const cairn_error *err)
{
    fprintf(stderr, "cairn %s: %s%s\n", c->cmd ? c->cmd : "",
            err->code == CAIRN_E_USER ? "interrupted: " : "",
            err->message[0] ? err->message : cairn_strerror(err->code));
    if (err->code == CAIRN_E_USER)
        return EXIT_INTERRUPTED;
    return err->code == CAIRN_E_BUSY ? EXIT_BUSY : EXIT_FAIL;
}

int cli_failf(cli *c, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "cairn %s: ", c->cmd ? c->cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_FAIL;
}

int cli_open(cli *c, unsigned flags, cairn_state **out)
{
    cairn_error err = {0};
    if (cairn_state_open(out, c->state_path, flags, &err) < 0)
        return cli_fail(c, &err);
    /* CAIRN_WAIT: seconds to wait for a busy state (the library's default
     * otherwise), then fail naming what holds it. */
    const char *wait = getenv("CAIRN_WAIT");
    if (wait && *wait) {
        char *end;
        unsigned long s = strtoul(wait, &end, 10);
        if (*end || s > 86400) {
            cairn_state_free(*out);
            *out = NULL;
            return cli_usage_error(c, "CAIRN_WAIT '%s': expected seconds (0 to 86400)", wait);
        }
        cairn_state_set_timeout(*out, (unsigned)s * 1000);
    }
    /* The flatten policy of a stack opened to write (the library's open
     * never flattens by itself). */
    if (!(flags & CAIRN_OPEN_READONLY) && cairn_flatten_on_open(*out, NULL, NULL, &err) < 0) {
        cairn_state_free(*out);
        *out = NULL;
        return cli_fail(c, &err);
    }
    return EXIT_OK;
}

void cli_json_print(json_t *v)
{
    json_dumpf(v, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
    fputc('\n', stdout);
    json_decref(v);
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void cli_progress_init(cli_progress *p, cli *c, const char *label, bool bytes)
{
    memset(p, 0, sizeof(*p));
    p->c = c;
    p->label = label;
    p->bytes = bytes;
}

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    interrupted = sig;
}

void cli_progress_stoppable(cli_progress *p)
{
    /* SA_RESETHAND: a second Ctrl-C kills. SA_RESTART: a call blocked in
     * the library goes on; the next progress report stops it. */
    struct sigaction sa = {.sa_handler = on_interrupt, .sa_flags = SA_RESETHAND | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    interrupted = 0;
    sigaction(SIGINT, &sa, NULL);
    p->stoppable = true;
}

int cli_progress_cb(void *ud, uint64_t done, uint64_t total)
{
    cli_progress *p = ud;
    int stop = p->stoppable && interrupted;
    if (!p->c->tty || p->c->quiet || stop)
        return stop;
    int64_t now = mono_ns();
    if (p->drawn && now - p->last_ns < 100000000 && done != total)
        return 0;
    p->last_ns = now;
    p->drawn = true;
    char a[32], b[32];
    if (p->bytes) {
        cli_human(done, a, sizeof(a));
        cli_human(total, b, sizeof(b));
    } else {
        snprintf(a, sizeof(a), "%llu", (unsigned long long)done);
        snprintf(b, sizeof(b), "%llu", (unsigned long long)total);
    }
    if (total) {
        int width = 30, fill = (int)(done * (uint64_t)width / (total ? total : 1));
        if (fill > width)
            fill = width;
        fprintf(stderr, "\r%s [%.*s%*s] %3d%% %s/%s ", p->label, fill,
                "##############################", width - fill, "",
                (int)(done * 100 / total), a, b);
    } else {
        fprintf(stderr, "\r%s %s ", p->label, a);
    }
    fflush(stderr);
    return 0;
}

void cli_progress_clear(cli_progress *p)
{
    if (p->drawn)
        fprintf(stderr, "\r\033[K");
}

void cli_progress_done(cli_progress *p)
{
    cli_progress_clear(p);
    if (p->stoppable)
        signal(SIGINT, SIG_DFL);
    p->stoppable = false;
}

int main(int argc, char **argv)
{
    cli c = {0};
    c.state_path = getenv("CAIRN_STATE");
    if (!c.state_path || !*c.state_path)
        c.state_path = ".";
    c.tty = isatty(2);

    static const struct option longopts[] = {CLI_COMMON_LONGOPTS,
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "+" CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (opt == 'V') {
            printf("cairn %s\n", CAIRN_VERSION_STRING);
            return EXIT_OK;
        }
        int h = cli_common_opt(&c, opt, optarg);
        if (h < 0)
            return EXIT_OK;
        if (h == 0) {
            fprintf(stderr, "Try 'cairn --help'.\n");
            return EXIT_USAGE;
        }
    }
    argc -= optind;
    argv += optind;
    if (argc == 0) {
        help(stderr);
        return EXIT_USAGE;
    }
    /* Longest match: "blob put" before "blob". */
    const cli_command *best = NULL;
    int words = 0;
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
        for (const cli_command *cmd = tables[t]; cmd->name; cmd++) {
            const char *sp = strchr(cmd->name, ' ');
            if (sp) {
                size_t n = (size_t)(sp - cmd->name);
                if (argc >= 2 && strlen(argv[0]) == n && !strncmp(argv[0], cmd->name, n) &&
                    !strcmp(argv[1], sp + 1)) {
                    best = cmd;
                    words = 2;
                }
            } else if (!strcmp(argv[0], cmd->name) && words < 2) {
                best = cmd;
                words = 1;
            }
        }
    }
    if (!best) {
        /* A group name alone ("cairn blob"): list its commands, on stderr
         * with exit 2; asked for ("cairn blob --help"), on stdout, exit 0. */
        bool asked = argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"));
        FILE *f = asked ? stdout : stderr;
        bool group = false;
        for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
            for (const cli_command *cmd = tables[t]; cmd->name; cmd++) {
                size_t n = strlen(argv[0]);
                if (!strncmp(cmd->name, argv[0], n) && cmd->name[n] == ' ') {
                    if (!group)
                        fprintf(f, "usage:\n");
                    group = true;
                    fprintf(f, "  cairn %s %s\n", cmd->name, cmd->args);
                }
            }
        if (!group) {
            fprintf(stderr, "cairn: '%s' is not a command. See 'cairn --help'.\n", argv[0]);
            return EXIT_USAGE;
        }
        fprintf(f, "\n'cairn %s COMMAND --help' for a command's options.\n", argv[0]);
        return asked ? EXIT_OK : EXIT_USAGE;
    }
    current = best;
    c.cmd = best->name;
    /* The command sees its own name as argv[0]. */
    argc -= words - 1;
    argv += words - 1;
    optind = 0; /* GNU getopt: a full re-initialisation, permuting again */
    return best->run(&c, argc, argv);
}
