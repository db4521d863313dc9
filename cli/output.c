/* output.c: the files the command writes at a path the user names (-o FILE).
 *
 * Only a regular file (or nothing) at FILE is replaced, and then whole: the
 * output is staged under a new name beside it (O_EXCL, so a planted name or
 * symlink there is never followed), synced and renamed onto FILE at the end.
 * Anything else is written in place, as a shell's `>` would: renaming over
 * /dev/null or a FIFO would replace the device for every other user of the
 * machine. A symlink is judged by what it points to: to a device or a FIFO it
 * is written through; to a regular file, or dangling, the link itself is
 * replaced and its target is left alone.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(cli *c, const char *path, int e)
{
    cli_failf(c, "%s: %s", path, strerror(e));
    return -e;
}

int cli_out_open(cli *c, cli_out *o, const char *path)
{
    o->fd = -1;
    o->tmp = NULL;
    o->path = path;
    if (!path || !strcmp(path, "-")) {
        o->fd = 1;
        o->path = "stdout";
        return 0;
    }
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode))
            return fail(c, path, EISDIR);
        if (!S_ISREG(sb.st_mode)) {
            /* A FIFO's open waits for its reader, as the shell's does. */
            int fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
            if (fd < 0)
                return fail(c, path, errno);
            if (fstat(fd, &sb) == 0 && !S_ISREG(sb.st_mode)) {
                o->fd = fd;
                return 0;
            }
            close(fd); /* a regular file by now: staged as one */
        }
    } else if (errno != ENOENT) {
        return fail(c, path, errno);
    }
    if (asprintf(&o->tmp, "%s.cairn-XXXXXX", path) < 0) {
        o->tmp = NULL;
        return fail(c, path, ENOMEM);
    }
    int fd = mkostemp(o->tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        free(o->tmp);
        o->tmp = NULL;
        return fail(c, path, e);
    }
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0644 & ~mask) < 0) {
        int e = errno;
        close(fd);
        unlink(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
        return fail(c, path, e);
    }
    o->fd = fd;
    return 0;
}

int cli_out_close(cli *c, cli_out *o, bool ok)
{
    if (o->fd < 0 || o->fd == 1) {
        o->fd = -1;
        return 0;
    }
    int r = 0;
    if (o->tmp && ok) {
        struct stat sb;
        if (fsync(o->fd) < 0)
            r = fail(c, o->path, errno);
        /* What is there now is what gets replaced: still only a regular file,
         * a symlink to one or to nothing, or nothing. */
        else if (stat(o->path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
            cli_failf(c, "%s: no longer a regular file: not replaced", o->path);
            r = -EEXIST;
        } else if (rename(o->tmp, o->path) < 0)
            r = fail(c, o->path, errno);
    }
    if (close(o->fd) < 0 && ok && r == 0 && !o->tmp)
        r = fail(c, o->path, errno);
    o->fd = -1;
    if (o->tmp) {
        if (!ok || r < 0)
            unlink(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
    }
    return r;
}
