/* faultshim.c: an LD_PRELOAD library that makes the calls which change a
 * filesystem fail, or kills the process, at a chosen call, so that a driver
 * (crash.sh) can crash a command at every point where it writes, syncs,
 * renames, links or unlinks. Only for the tests; never installed.
 *
 * Environment:
 *   CAIRN_FAULT=SPEC[,SPEC...]   SPEC is OP:N:ACTION, or OP:N+:ACTION to go
 *                                on failing every call from the Nth (a full
 *                                disk stays full). ACTION: EIO, ENOSPC (or
 *                                another errno name the shim knows), or
 *                                kill: SIGKILL the process at the Nth call,
 *                                before the call happens.
 *   CAIRN_FAULT_COUNT=FILE       at exit, append one line "OP COUNT" per op
 *                                that was called, so that a driver can list
 *                                every fault point of a command.
 *   CAIRN_FAULT_LOG=FILE         append "OP N ACTION" when a fault fires (a
 *                                kill is logged before it is sent).
 *
 * OP: write, pwrite (pwrite and pwrite64), fsync, fdatasync, syncfs, rename,
 * renameat, renameat2 (the libc wrapper and syscall(SYS_renameat2, ...),
 * which is what lib/util.c calls), link, linkat, unlink, unlinkat,
 * copy_file_range, ficlone (ioctl FICLONE; other ioctls pass untouched).
 * Calls on file descriptors 0, 1 and 2 (the command's own output) are
 * neither counted nor failed. Counts are per process and taken atomically
 * (the ingest pipeline writes from threads); a forked child neither counts
 * into its parent nor writes a count file.
 *
 * Under AddressSanitizer, which intercepts write and pwrite itself, the shim
 * comes first in the lookup order and finds ASan's interceptor as the next
 * definition (run with ASAN_OPTIONS=verify_asan_link_order=0). */
/* Both pwrite and pwrite64 are defined here: no redirection of one to the
 * other (off_t is 64 bits on the platforms this runs on). */
#undef _FILE_OFFSET_BITS
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>
#include <linux/fs.h>

enum {
    OP_WRITE,
    OP_PWRITE,
    OP_FSYNC,
    OP_FDATASYNC,
    OP_SYNCFS,
    OP_RENAME,
    OP_RENAMEAT,
    OP_RENAMEAT2,
    OP_LINK,
    OP_LINKAT,
    OP_UNLINK,
    OP_UNLINKAT,
    OP_COPY_FILE_RANGE,
    OP_FICLONE,
    OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "write",  "pwrite", "fsync",  "fdatasync", "syncfs",   "rename",          "renameat",
    "renameat2", "link", "linkat", "unlink",   "unlinkat", "copy_file_range", "ficlone",
};

#define MAX_SPECS 16
typedef struct spec {
    int op;
    unsigned long n;
    bool sticky;
    int err; /* 0: kill */
} spec;

static spec specs[MAX_SPECS];
static int nspecs;
static unsigned long counts[OP_COUNT];
static pid_t owner;
static const char *count_file, *log_file;

/* The next definition of each function (libc's, or ASan's interceptor). */
static void *next_fn(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (!p) {
        static const char msg[] = "faultshim: a function is missing\n";
        if (syscall(SYS_write, 2, msg, sizeof(msg) - 1) < 0)
            _exit(127);
        _exit(127);
    }
    return p;
}
#define NEXT(var, name)                                                                            \
    do {                                                                                           \
        if (!var)                                                                                  \
            var = next_fn(name);                                                                   \
    } while (0)

static int errno_by_name(const char *s)
{
    static const struct {
        const char *name;
        int code;
    } t[] = {
        {"EIO", EIO},       {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT}, {"EROFS", EROFS},
        {"EPERM", EPERM},   {"EACCES", EACCES}, {"EXDEV", EXDEV},   {"EMLINK", EMLINK},
        {"ENOMEM", ENOMEM}, {"EINTR", EINTR},   {"EAGAIN", EAGAIN}, {"EBUSY", EBUSY},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (!strcmp(s, t[i].name))
            return t[i].code;
    return -1;
}

/* Raw I/O for the shim's own files, so that it never counts itself. */
static void append_line(const char *path, const char *line)
{
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                          0644);
    if (fd < 0)
        return;
    if (syscall(SYS_write, fd, line, strlen(line)) < 0) {
        /* nothing to do: the driver sees the line missing */
    }
    syscall(SYS_close, fd);
}

static void bad_spec(const char *s)
{
    char msg[300];
    snprintf(msg, sizeof(msg),
             "faultshim: bad CAIRN_FAULT spec '%.200s' (OP:N[+]:EIO|ENOSPC|kill)\n", s);
    if (syscall(SYS_write, 2, msg, strlen(msg)) < 0)
        _exit(127);
    _exit(127);
}

__attribute__((constructor)) static void shim_init(void)
{
    owner = getpid();
    count_file = getenv("CAIRN_FAULT_COUNT");
    log_file = getenv("CAIRN_FAULT_LOG");
    const char *env = getenv("CAIRN_FAULT");
    if (!env || !*env)
        return;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", env);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (nspecs == MAX_SPECS)
            bad_spec(tok);
        char *c1 = strchr(tok, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c1 || !c2)
            bad_spec(tok);
        *c1 = *c2 = 0;
        spec *s = &specs[nspecs];
        s->op = -1;
        for (int i = 0; i < OP_COUNT; i++)
            if (!strcmp(tok, op_names[i]))
                s->op = i;
        if (!strcmp(tok, "ioctl"))
            s->op = OP_FICLONE;
        char *end;
        s->n = strtoul(c1 + 1, &end, 10);
        s->sticky = *end == '+';
        if (s->sticky)
            end++;
        if (s->op < 0 || s->n == 0 || *end)
            bad_spec(env);
        if (!strcmp(c2 + 1, "kill"))
            s->err = 0;
        else if ((s->err = errno_by_name(c2 + 1)) < 0)
            bad_spec(env);
        nspecs++;
    }
}

__attribute__((destructor)) static void shim_fini(void)
{
    if (!count_file || getpid() != owner)
        return;
    char line[4096];
    size_t len = 0;
    line[0] = 0;
    for (int i = 0; i < OP_COUNT; i++) {
        unsigned long c = __atomic_load_n(&counts[i], __ATOMIC_SEQ_CST);
        if (c && len < sizeof(line) - 64)
            len += (size_t)snprintf(line + len, sizeof(line) - len, "%s %lu\n", op_names[i], c);
    }
    append_line(count_file, line);
}

/* Count a call; 0 to let it through, else the errno to fail it with. A kill
 * does not return. */
static int fault(int op)
{
    if (getpid() != owner)
        return 0;
    unsigned long n = __atomic_add_fetch(&counts[op], 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < nspecs; i++) {
        const spec *s = &specs[i];
        if (s->op != op || n < s->n || (!s->sticky && n != s->n))
            continue;
        if (log_file) {
            char line[128];
            snprintf(line, sizeof(line), "%s %lu %s\n", op_names[op], n,
                     s->err ? strerrorname_np(s->err) : "kill");
            append_line(log_file, line);
        }
        if (!s->err) {
            kill(getpid(), SIGKILL);
            for (;;)
                pause();
        }
        return s->err;
    }
    return 0;
}

#define FAIL_IF(op)                                                                                \
    do {                                                                                           \
        int e_ = fault(op);                                                                        \
        if (e_) {                                                                                  \
            errno = e_;                                                                            \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

ssize_t write(int fd, const void *buf, size_t len)
{
    static ssize_t (*next)(int, const void *, size_t);
    NEXT(next, "write");
    if (fd > 2)
        FAIL_IF(OP_WRITE);
    return next(fd, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    static ssize_t (*next)(int, const void *, size_t, off_t);
    NEXT(next, "pwrite");
    if (fd > 2)
        FAIL_IF(OP_PWRITE);
    return next(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
    static ssize_t (*next)(int, const void *, size_t, off64_t);
    NEXT(next, "pwrite64");
    if (fd > 2)
        FAIL_IF(OP_PWRITE);
    return next(fd, buf, len, off);
}

int fsync(int fd)
{
    static int (*next)(int);
    NEXT(next, "fsync");
    if (fd > 2)
        FAIL_IF(OP_FSYNC);
    return next(fd);
}

int fdatasync(int fd)
{
    static int (*next)(int);
    NEXT(next, "fdatasync");
    if (fd > 2)
        FAIL_IF(OP_FDATASYNC);
    return next(fd);
}

int syncfs(int fd)
{
    static int (*next)(int);
    NEXT(next, "syncfs");
    FAIL_IF(OP_SYNCFS);
    return next(fd);
}

int rename(const char *old, const char *new)
{
    static int (*next)(const char *, const char *);
    NEXT(next, "rename");
    FAIL_IF(OP_RENAME);
    return next(old, new);
}

int renameat(int olddirfd, const char *old, int newdirfd, const char *new)
{
    static int (*next)(int, const char *, int, const char *);
    NEXT(next, "renameat");
    FAIL_IF(OP_RENAMEAT);
    return next(olddirfd, old, newdirfd, new);
}

int renameat2(int olddirfd, const char *old, int newdirfd, const char *new, unsigned int flags)
{
    static int (*next)(int, const char *, int, const char *, unsigned int);
    NEXT(next, "renameat2");
    FAIL_IF(OP_RENAMEAT2);
    return next(olddirfd, old, newdirfd, new, flags);
}

int link(const char *old, const char *new)
{
    static int (*next)(const char *, const char *);
    NEXT(next, "link");
    FAIL_IF(OP_LINK);
    return next(old, new);
}

int linkat(int olddirfd, const char *old, int newdirfd, const char *new, int flags)
{
    static int (*next)(int, const char *, int, const char *, int);
    NEXT(next, "linkat");
    FAIL_IF(OP_LINKAT);
    return next(olddirfd, old, newdirfd, new, flags);
}

int unlink(const char *path)
{
    static int (*next)(const char *);
    NEXT(next, "unlink");
    FAIL_IF(OP_UNLINK);
    return next(path);
}

int unlinkat(int dirfd, const char *path, int flags)
{
    static int (*next)(int, const char *, int);
    NEXT(next, "unlinkat");
    FAIL_IF(OP_UNLINKAT);
    return next(dirfd, path, flags);
}

ssize_t copy_file_range(int in, off64_t *inoff, int out, off64_t *outoff, size_t len,
                        unsigned int flags)
{
    static ssize_t (*next)(int, off64_t *, int, off64_t *, size_t, unsigned int);
    NEXT(next, "copy_file_range");
    FAIL_IF(OP_COPY_FILE_RANGE);
    return next(in, inoff, out, outoff, len, flags);
}

int ioctl(int fd, unsigned long request, ...)
{
    static int (*next)(int, unsigned long, ...);
    NEXT(next, "ioctl");
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (request == FICLONE)
        FAIL_IF(OP_FICLONE);
    return next(fd, request, arg);
}

/* lib/util.c calls renameat2 through syscall(): count that one, pass every
 * other system call through with its six argument registers. */
long syscall(long nr, ...)
{
    static long (*next)(long, ...);
    NEXT(next, "syscall");
    va_list ap;
    va_start(ap, nr);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (nr == SYS_renameat2)
        FAIL_IF(OP_RENAMEAT2);
    return next(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
