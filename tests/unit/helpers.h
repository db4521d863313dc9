/* helpers.h: what the unit tests share: scratch directories and states. */
#ifndef CAIRN_TEST_HELPERS_H
#define CAIRN_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cairn/cairn.h>

/* A fresh scratch directory under $TMPDIR (malloc'd path). */
char *t_scratch(const char *tag);
/* rm -rf of a scratch directory, then free(path). */
void t_scratch_free(char *path);
/* Init a state at dir/name and open it; returns the open state. */
cairn_state *t_state(const char *dir, const char *name);
/* Write a file with given contents (creating directories as needed). */
void t_write_file(const char *path, const void *buf, size_t len);
/* Assert a call succeeded, printing the error message when not. */
#define T_OK(call)                                                                                 \
    do {                                                                                           \
        int t_r_ = (call);                                                                         \
        if (t_r_ < 0)                                                                              \
            fail_msg("%s -> %d (%s): %s", #call, t_r_, cairn_strerror(t_r_), t_err.message);     \
    } while (0)
/* Each test function declares `cairn_error t_err = {0};` to use T_OK. */

#endif
