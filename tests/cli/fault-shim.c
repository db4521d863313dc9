/* fault-shim.c: a small LD_PRELOAD library for the commit and volume tests
 * (test-commit-crash.sh): at the Nth call of one operation it fails the
 * call with EIO or kills the process (SIGKILL, before the call happens), so
 * that a test can stop a command at each point where it syncs or renames.
 * Never installed.
 *
 * CAIRN_TEST_FAULT=OP:N:ACTION   OP: syncfs, fsync, fdatasync (SQLite's
 *                                commits), rename (renameat, renameat2 and
 *                                syscall(SYS_renameat2), which is what
 *                                lib/util/util.c calls); ACTION: EIO, kill,
 *                                or int (a Ctrl-C: SIGINT, then the call
 *                                goes on).
 * CAIRN_TEST_FAULT_LOG=FILE      "OP N ACTION" is appended when it fires,
 *                                so the test knows the point was reached.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static unsigned long counts[4];
static const char *const names[4] = {"syncfs", "fsync", "rename", "fdatasync"};

/* 0 to go on with the call, -1 (errno set) to fail it. */
static int fault(int op)
{
    const char *spec = getenv("CAIRN_TEST_FAULT");
    unsigned long n = __atomic_add_fetch(&counts[op], 1, __ATOMIC_SEQ_CST);
    if (!spec)
        return 0;
    size_t len = strlen(names[op]);
    if (strncmp(spec, names[op], len) != 0 || spec[len] != ':')
        return 0;
    char *end;
    unsigned long want = strtoul(spec + len + 1, &end, 10);
    if (want != n || *end != ':')
        return 0;
    const char *action = end + 1;
    const char *log = getenv("CAIRN_TEST_FAULT_LOG");
    if (log) {
        int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dprintf(fd, "%s %lu %s\n", names[op], n, action);
            close(fd);
        }
    }
    if (!strcmp(action, "kill"))
        raise(SIGKILL);
    if (!strcmp(action, "int")) {
        raise(SIGINT);
        return 0;
    }
    errno = EIO;
    return -1;
}

#define NEXT(name, type) ((type)dlsym(RTLD_NEXT, name))

int syncfs(int fd)
{
    if (fault(0) < 0)
        return -1;
    return NEXT("syncfs", int (*)(int))(fd);
}

int fsync(int fd)
{
    if (fault(1) < 0)
        return -1;
    return NEXT("fsync", int (*)(int))(fd);
}

int fdatasync(int fd)
{
    if (fault(3) < 0)
        return -1;
    return NEXT("fdatasync", int (*)(int))(fd);
}

int renameat(int a, const char *b, int c, const char *d)
{
    if (fault(2) < 0)
        return -1;
    return NEXT("renameat", int (*)(int, const char *, int, const char *))(a, b, c, d);
}

int renameat2(int a, const char *b, int c, const char *d, unsigned flags)
{
    if (fault(2) < 0)
        return -1;
    return NEXT("renameat2", int (*)(int, const char *, int, const char *, unsigned))(a, b, c, d,
                                                                                       flags);
}

long syscall(long nr, ...)
{
    va_list ap;
    va_start(ap, nr);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (nr == SYS_renameat2 && fault(2) < 0)
        return -1;
    return NEXT("syscall", long (*)(long, ...))(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
