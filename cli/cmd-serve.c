/* cmd-serve.c: cairn serve containerd: the state as containerd's proxy
 * snapshotter and content store, until SIGTERM or SIGINT. */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

static void log_line(void *ud, const char *msg)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ cairn serve: %s\n", when, ts.tv_nsec / 1000000, msg);
}

static int cmd_containerd(cli *c, int argc, char **argv)
{
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"socket", required_argument, NULL, 's'},
                                       {"name", required_argument, NULL, 'n'},
                                       {"print-config", no_argument, NULL, 'p'},
                                       {NULL, 0, NULL, 0}};
    const char *sock = NULL, *name = "cairn";
    bool print = false;
    int opt;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, lo, NULL)) != -1) {
        if (opt == 's') {
            sock = optarg;
        } else if (opt == 'n') {
            name = optarg;
        } else if (opt == 'p') {
            print = true;
        } else {
            int r = cli_opt(c, opt);
            if (r >= 0)
                return r;
        }
    }
    if (optind < argc)
        return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
    if (!sock)
        return cli_usage_error(c, "--socket PATH is required");
    if (sock[0] != '/')
        return cli_usage_error(c, "--socket '%s': containerd needs an absolute path", sock);
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return cli_usage_error(c, "--name '%s': use [a-z0-9_-]", name);
    if (print) {
        char *cfg = cairn_containerd_config(sock, name);
        if (!cfg)
            return cli_failf(c, "out of memory");
        fputs(cfg, stdout);
        free(cfg);
        return EXIT_OK;
    }
    cairn_state *st = NULL;
    int r = cli_open(c, 0, &st);
    if (r)
        return r;
    /* SIGTERM and SIGINT become a readable fd: the server stops between calls. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0) {
        cairn_state_free(st);
        return cli_failf(c, "signalfd: %s", strerror(errno));
    }
    cairn_containerd_stats stats = {0};
    cairn_containerd_serve_options o = CAIRN_CONTAINERD_SERVE_OPTIONS_INIT;
    o.socket = sock;
    o.stop_fd = sfd;
    o.log = log_line;
    o.stats = &stats;
    cairn_error err = {0};
    if (!c->quiet)
        log_line(NULL, "serving containerd's snapshots and content on the socket");
    r = cairn_containerd_serve(st, &o, &err);
    close(sfd);
    cairn_state_free(st);
    if (r < 0)
        return cli_fail(c, &err);
    if (!c->quiet) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "stopped: %llu connections, %llu calls (%llu errors), %llu commits, %llu "
                 "adopted, %llu blobs written",
                 (unsigned long long)stats.connections, (unsigned long long)stats.calls,
                 (unsigned long long)stats.errors, (unsigned long long)stats.commits,
                 (unsigned long long)stats.adopted, (unsigned long long)stats.blobs);
        log_line(NULL, msg);
    }
    return EXIT_OK;
}

const cli_command cli_serve_commands[] = {
    {"serve containerd", cmd_containerd, "--socket PATH [--name NAME] [--print-config]",
     "serve the state as containerd's snapshotter and content store (its proxy_plugins) until "
     "SIGTERM; --print-config prints the containerd config that uses it"},
    {NULL, NULL, NULL, NULL},
};
