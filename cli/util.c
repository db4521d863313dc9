/* util.c: parsing and formatting of sizes and durations for the command. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int cli_parse_size(const char *s, uint64_t fs_total, uint64_t *out)
{
    if (!s || !*s)
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0 || !isfinite(v))
        return -EINVAL;
    while (*end == ' ')
        end++;
    double mult = 1;
    if (*end == '%') {
        if (!fs_total || end[1] || v > 100)
            return -EINVAL;
        *out = (uint64_t)(v / 100.0 * (double)fs_total);
        return 0;
    }
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {
        {"", 1},       {"b", 1},         {"k", 1e3},    {"kb", 1e3},    {"kib", 1024.0},
        {"m", 1e6},    {"mb", 1e6},      {"mib", 1048576.0},           {"g", 1e9},
        {"gb", 1e9},   {"gib", 1073741824.0},           {"t", 1e12},   {"tb", 1e12},
        {"tib", 1099511627776.0},
    };
    bool found = false;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (!strcasecmp(end, units[i].suffix)) {
            mult = units[i].mult;
            found = true;
            break;
        }
    if (!found)
        return -EINVAL;
    double bytes = v * mult;
    if (bytes > 1.8e19)
        return -EINVAL;
    *out = (uint64_t)bytes;
    return 0;
}

/* Durations are parsed in integers, not doubles: a double rounds
 * 9223372036854775807 up to 2^63, whose conversion back to int64_t is
 * undefined (it came out negative). A fraction ("1.5h") is kept to the
 * second. -ERANGE: more seconds than an int64_t holds. */
int cli_parse_duration(const char *s, int64_t *out)
{
    if (!s || !*s)
        return -EINVAL;
    const char *p = s;
    int64_t whole = 0;
    bool digits = false, range = false;
    for (; *p >= '0' && *p <= '9'; p++) {
        digits = true;
        if (__builtin_mul_overflow(whole, 10, &whole) ||
            __builtin_add_overflow(whole, *p - '0', &whole))
            range = true;
    }
    /* Up to 9 digits of fraction count; more cannot change whole seconds
     * of any unit here (the largest is a week, 604800 s). */
    int64_t frac = 0, scale = 1;
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            digits = true;
            if (scale < 1000000000) {
                frac = frac * 10 + (*p - '0');
                scale *= 10;
            }
        }
    }
    if (!digits)
        return -EINVAL;
    int64_t mult;
    if (!*p || !strcmp(p, "s"))
        mult = 1;
    else if (!strcmp(p, "m"))
        mult = 60;
    else if (!strcmp(p, "h"))
        mult = 3600;
    else if (!strcmp(p, "d"))
        mult = 86400;
    else if (!strcmp(p, "w"))
        mult = 604800;
    else
        return -EINVAL;
    int64_t v;
    if (range || __builtin_mul_overflow(whole, mult, &v) ||
        __builtin_add_overflow(v, frac * mult / scale, &v))
        return -ERANGE;
    *out = v;
    return 0;
}

const char *cli_human(uint64_t bytes, char *buf, size_t size)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof(unit) / sizeof(unit[0])) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, size, "%.1f %s", v, unit[u]);
    return buf;
}

void cli_rm_init(cli_rm *r, cli *c, const char *kind)
{
    r->c = c;
    r->kind = kind;
    r->list = c->json ? json_array() : NULL;
}

void cli_rm_one(cli_rm *r, const char *name, const char *what, int count)
{
    if (r->list) {
        json_t *o = json_pack("{s:s, s:s}", "kind", r->kind, "name", name);
        if (what)
            json_object_set_new(o, what, json_integer(count));
        json_array_append_new(r->list, o);
    } else if (!r->c->quiet) {
        if (what)
            printf("removed %s %s (%d %s)\n", r->kind, name, count, what);
        else
            printf("removed %s %s\n", r->kind, name);
    }
}

void cli_rm_done(cli_rm *r)
{
    if (r->list)
        cli_json_print(json_pack("{s:o}", "removed", r->list));
    r->list = NULL;
}

int cli_rm_each(cli *c, cairn_state *st, const char *kind, char *const *names, int n,
                int (*rm)(cairn_state *, const char *, cairn_error *))
{
    int rc = EXIT_OK;
    cli_rm r;
    cli_rm_init(&r, c, kind);
    for (int i = 0; i < n; i++) {
        cairn_error err = {0};
        if (rm(st, names[i], &err) < 0)
            rc = cli_fail(c, &err);
        else
            cli_rm_one(&r, names[i], NULL, 0);
    }
    cli_rm_done(&r);
    return rc;
}

int cli_rm_command(cli *c, int argc, char **argv, const char *kind, const char *expected,
                   int (*rm)(cairn_state *, const char *, cairn_error *))
{
    int r = cli_common_only(c, argc, argv);
    if (r >= 0)
        return r;
    if (argc - optind < 1)
        return cli_usage_error(c, "expected %s", expected);
    cairn_state *st = NULL;
    if ((r = cli_open(c, 0, &st)))
        return r;
    r = cli_rm_each(c, st, kind, argv + optind, argc - optind, rm);
    cairn_state_free(st);
    return r;
}
