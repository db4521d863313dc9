/* fsck.c: what every module's fsck checker uses (core/fsck.h): reporting
 * a problem, progress, quarantine of a corrupt object (also used by the
 * writers that find a bad object under the name they publish), and the scan
 * for objects no row names. gc/fsck.c runs the checkers in order.
 */
#include "core/fsck.h"

#include <dirent.h>
#include <sys/stat.h>

void cairn__fsck_report(cairn__fsck *f, const char *kind, const char *name, const char *problem,
                        const char *action, const char *fmt, ...)
{
    char detail[512] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        vsnprintf(detail, sizeof(detail), fmt, ap);
#pragma GCC diagnostic pop
        va_end(ap);
    }
    cairn_fsck_problem p = {kind, name, problem, detail, action ? action : ""};
    f->problems++;
    if (f->fn)
        f->fn(f->ud, &p);
}

int cairn__fsck_tick(cairn__fsck *f, cairn_error *err)
{
    f->done++;
    if (!f->stopped && (f->done % 256 == 0 || f->done == f->total))
        f->stopped = cairn__progress(f->opts.progress, f->opts.progress_userdata, f->done, f->total,
                                     "fsck", err);
    return f->stopped;
}

int cairn__quarantine(cairn_state *st, int dirfd, const char *name, const char *tag,
                      cairn_error *err)
{
    char dst[256];
    snprintf(dst, sizeof(dst), "%s.%s.%lld", tag, name, (long long)cairn__now());
    int qfd = openat(st->dirfd, "quarantine", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (qfd < 0 && errno == ENOENT) {
        cairn__mkdir_at(st->dirfd, "quarantine", 0700);
        qfd = openat(st->dirfd, "quarantine", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (qfd < 0)
        return cairn__err(err, -errno, "%s/quarantine: %m", st->path);
    int r = cairn__rename_noreplace(dirfd, name, qfd, dst);
    /* Two in one second: a second name, never a replaced one. */
    for (int k = 1; r == -EEXIST && k < 100; k++) {
        snprintf(dst, sizeof(dst), "%s.%s.%lld.%d", tag, name, (long long)cairn__now(), k);
        r = cairn__rename_noreplace(dirfd, name, qfd, dst);
    }
    close(qfd);
    if (r < 0)
        return cairn__err(err, r, "quarantine %s: %m", name);
    return 0;
}

int cairn__fsck_quarantine(cairn__fsck *f, int dirfd, const char *name, const char *tag,
                           cairn_error *err)
{
    return cairn__quarantine(f->st, dirfd, name, tag, err);
}

int cairn__fsck_unreferenced(cairn__fsck *f, int dirfd, const char *dirname, const char *kind,
                             const char *named_sql, const cairn__strset *skip, cairn_error *err)
{
    cairn_state *st = f->st;
    int dfd = dup(dirfd);
    if (dfd < 0)
        return cairn__err(err, -errno, "%s/%s: %m", st->path, dirname);
    DIR *dir = fdopendir(dfd);
    if (!dir) {
        close(dfd);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    rewinddir(dir);
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(dir))) {
        if (de->d_name[0] == '.')
            continue;
        char d[CAIRN_DIGEST_LEN + 8];
        snprintf(d, sizeof(d), "sha256:%.64s", de->d_name);
        if (strlen(de->d_name) != 64 || cairn_digest_check(d, NULL) < 0) {
            cairn__fsck_report(f, "file", de->d_name, "unreferenced", "",
                               "%s/%s/%s is not named like a %s", st->path, dirname, de->d_name,
                               kind);
            continue;
        }
        /* Rows of the layers whose objects live in this directory (this
         * state's, and those found side by side in db/); a lower in another
         * directory holds its own objects. */
        bool found = skip && cairn__strset_has(skip, d);
        for (size_t l = 0; l < st->n_layers && !found; l++) {
            if (st->layers[l].dirfd != st->dirfd)
                continue;
            sqlite3_stmt *qs;
            r = cairn__stmt(st, l, named_sql, &qs, err);
            if (r < 0)
                break;
            sqlite3_bind_text(qs, 1, d, -1, SQLITE_STATIC);
            found = sqlite3_step(qs) == SQLITE_ROW;
            sqlite3_reset(qs);
        }
        if (r == 0 && !found)
            cairn__fsck_report(f, kind, d, "unreferenced", "",
                               "%s/%s/%s is named by no row (gc removes it)", st->path, dirname,
                               de->d_name);
    }
    closedir(dir);
    return r;
}
