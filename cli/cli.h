/* cli.h: what the commands of `cairn` share. The command is a thin face over
 * libcairn: it parses arguments, calls the public API and prints. */
#ifndef CAIRN_CLI_H
#define CAIRN_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <cairn/cairn.h>

/* Exit codes, documented in `cairn --help`. */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,     /* the operation failed; the message says why */
    EXIT_USAGE = 2,    /* bad command line */
    EXIT_PROBLEMS = 3, /* problems found and left: fsck, stack ls */
    EXIT_BUSY = 4,     /* another process held the state past CAIRN_WAIT; the message names it */
    EXIT_INTERRUPTED = 130, /* stopped by Ctrl-C (128 + SIGINT, as a shell says) */
};

typedef struct cli {
    const char *state_path; /* -C DIR, CAIRN_STATE, or "." */
    bool state_given;       /* -C on the command line: positionals name no state */
    bool json;
    bool quiet;
    bool tty;               /* stderr is a terminal: draw progress */
    const char *cmd;        /* "blob put", for messages */
} cli;

typedef struct cli_command {
    const char *name;  /* "init", "blob put" */
    int (*run)(cli *c, int argc, char **argv);
    const char *args;  /* usage after the name */
    const char *help;  /* one line */
} cli_command;

/* Options every command accepts: --json, --help, -C/--state. */
#define CLI_COMMON_LONGOPTS                                                                        \
    {"json", no_argument, NULL, 'J'}, {"help", no_argument, NULL, 'h'},                            \
        {"state", required_argument, NULL, 'C'}, {"quiet", no_argument, NULL, 'q'}
#define CLI_COMMON_SHORTOPTS "hC:q"

/* Handle a common option; returns 1 when handled, -1 after printing help
 * (the caller returns EXIT_OK), 0 when not a common option. */
int cli_common_opt(cli *c, int opt, const char *arg);
/* cli_common_opt() for a getopt loop: -1 to go on, else the exit code
 * (EXIT_OK after --help, EXIT_USAGE for an unknown option). */
int cli_opt(cli *c, int opt);
/* Parse a command line that takes only the common options: -1 to go on,
 * else the exit code. */
int cli_common_only(cli *c, int argc, char **argv);
/* An option handler: 1 handled, 0 not its option, -1 a bad value (reported). */
typedef int (*cli_opt_fn)(cli *c, int opt, void *ud);
/* getopt_long over lo: each option to own, then extra (either may be NULL),
 * then the common options. -1 when all are parsed (optind at the operands),
 * else the exit code (EXIT_USAGE, or EXIT_OK after --help). */
int cli_getopt(cli *c, int argc, char **argv, const struct option *lo, cli_opt_fn own,
               void *own_ud, cli_opt_fn extra, void *extra_ud);
/* The options of a remote (cmd-remote.c), for the commands that reach one. */
#define CLI_REMOTE_LONGOPTS                                                                        \
    {"jobs", required_argument, NULL, 'j'}, {"insecure", no_argument, NULL, 'I'},                  \
        {"region", required_argument, NULL, 'R'}, {"endpoint", required_argument, NULL, 'E'},      \
        {"auth-file", required_argument, NULL, 'A'}
int cli_remote_opt(cli *c, int opt, cairn_remote_options *o);
/* Print the usage of the current command (to stdout for --help). */
void cli_usage(cli *c, FILE *f);
/* Report a usage error and return EXIT_USAGE. */
int cli_usage_error(cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Report a failure ("cairn: message") and return EXIT_FAIL. */
int cli_fail(cli *c, const cairn_error *err);
int cli_failf(cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Open the selected state (flags: CAIRN_OPEN_*); prints the error itself. */
int cli_open(cli *c, unsigned flags, cairn_state **out);

/* Print a JSON value to stdout, then free it. */
void cli_json_print(json_t *v);

/* Progress: a bar on stderr when it is a terminal, nothing otherwise. */
typedef struct cli_progress {
    cli *c;
    const char *label;
    bool bytes;
    int64_t last_ns;
    bool drawn;
    bool stoppable;
} cli_progress;
void cli_progress_init(cli_progress *p, cli *c, const char *label, bool bytes);
/* For an operation that stops when its progress callback says so: from now
 * to cli_progress_done(), the first Ctrl-C makes cli_progress_cb() return
 * non-zero (the library then fails with CAIRN_E_USER, cli_fail() exits
 * EXIT_INTERRUPTED); a second one kills as usual. */
void cli_progress_stoppable(cli_progress *p);
int cli_progress_cb(void *ud, uint64_t done, uint64_t total);
/* Clear the bar (before printing a line); it is drawn again by the next report. */
void cli_progress_clear(cli_progress *p);
/* The operation is over: clear the bar, Ctrl-C kills again. */
void cli_progress_done(cli_progress *p);

/* Sizes: "10GB", "512MiB", "1.5G", "1024"; percentages ("10%") of `fs_total`
 * when it is non-zero. Returns 0 or -EINVAL. */
int cli_parse_size(const char *s, uint64_t fs_total, uint64_t *out);
/* Durations: "30s", "15m", "48h", "7d", "1w"; plain numbers are seconds. */
int cli_parse_duration(const char *s, int64_t *out);
/* Human size into buf ("1.5 GiB"). */
const char *cli_human(uint64_t bytes, char *buf, size_t size);

/* An output file named by the user (-o FILE). A regular file, a missing
 * name or a symlink to either is written beside under a new name, synced
 * and renamed onto FILE when complete, so a failure leaves FILE as it was
 * (a symlink is replaced, its target is left alone). Anything else (a
 * device, a FIFO, a terminal, a symlink to one) is written in place: never
 * renamed over. A directory is refused. NULL or "-" is standard output. */
typedef struct cli_out {
    int fd;
    const char *path; /* for messages: FILE or "stdout" */
    char *tmp;        /* the staged name, or NULL when written in place */
} cli_out;
/* Open it; 0 or -errno, with a message printed ("cairn: FILE: cause"). */
int cli_out_open(cli *c, cli_out *o, const char *path);
/* Close it: when `ok`, publish a staged file (0, or -errno with a message
 * printed); otherwise drop it. */
int cli_out_close(cli *c, cli_out *o, bool ok);

/* Command tables of each file, NULL-name terminated. */
extern const cli_command cli_state_commands[];
extern const cli_command cli_blob_commands[];
extern const cli_command cli_snapshot_commands[];
extern const cli_command cli_image_commands[];
extern const cli_command cli_record_commands[];
extern const cli_command cli_lease_commands[];
extern const cli_command cli_gc_commands[];
extern const cli_command cli_volume_commands[];
extern const cli_command cli_combine_commands[];
extern const cli_command cli_remote_commands[];
extern const cli_command cli_serve_commands[];
extern const cli_command cli_import_commands[];
extern const cli_command cli_pool_commands[];

/* What every `rm` prints: a line "removed KIND NAME[ (N WHAT)]" for each
 * item, or with --json, once at the end, {"removed": [{"kind", "name"[,
 * WHAT: N]}...]}. Failures are reported on stderr as they happen. */
typedef struct cli_rm {
    cli *c;
    const char *kind;
    json_t *list;
} cli_rm;
void cli_rm_init(cli_rm *r, cli *c, const char *kind);
/* One item removed; `what` names the count (NULL: none). */
void cli_rm_one(cli_rm *r, const char *name, const char *what, int count);
void cli_rm_done(cli_rm *r);
/* `rm` of each of names[0..n) by `rm` (cairn_blob_remove, ...), reported as
 * above; EXIT_OK, or the exit code of the last failure. */
int cli_rm_each(cli *c, cairn_state *st, const char *kind, char *const *names, int n,
                int (*rm)(cairn_state *, const char *, cairn_error *));
/* A whole `KIND rm NAME...` that takes only the common options: `expected`
 * says what the names are when there is none ("one or more digests"). */
int cli_rm_command(cli *c, int argc, char **argv, const char *kind, const char *expected,
                   int (*rm)(cairn_state *, const char *, cairn_error *));

#endif
