/* helpers.c: scratch directories and states for the unit tests. */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *t_scratch(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *p = NULL;
    assert_true(asprintf(&p, "%s/cairn-test-%s-XXXXXX", base && *base ? base : "/tmp", tag) > 0);
    assert_non_null(mkdtemp(p));
    return p;
}

void t_scratch_free(char *path)
{
    if (!path)
        return;
    char *cmd = NULL;
    /* Snapshots may hold read-only directories: make them writable first. */
    assert_true(asprintf(&cmd, "chmod -R u+w '%s' 2>/dev/null; rm -rf '%s'", path, path) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(path);
}

cairn_state *t_state(const char *dir, const char *name)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    cairn_error err = {0};
    if (cairn_state_init(p, NULL, &err) < 0)
        fail_msg("init %s: %s", p, err.message);
    cairn_state *st = NULL;
    if (cairn_state_open(&st, p, 0, &err) < 0)
        fail_msg("open %s: %s", p, err.message);
    free(p);
    return st;
}

void t_write_file(const char *path, const void *buf, size_t len)
{
    char *dir = strdup(path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        char *cmd = NULL;
        assert_true(asprintf(&cmd, "mkdir -p '%s'", dir) > 0);
        assert_int_equal(system(cmd), 0);
        free(cmd);
    }
    free(dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
}
