/* remote/xfer.h: transfers of objects, N at a time. A pool of worker
 * threads, each with a backend handle of its own (a connection, a token),
 * sends or fetches whole objects while the calling thread, the only one
 * that touches the state, prepares the next (opens a blob, exports a layer)
 * and takes in what was fetched. Bytes fetched are hashed against their
 * name in the worker, before the caller sees them; bytes sent can be
 * hashed there first too.
 *
 *   cairn__xpool_new(&p, ...);
 *   for each object: cairn__xpool_submit(p, job);   (blocks while N*2 are out)
 *   cairn__xpool_finish(p);                          (waits for the rest)
 *   cairn__xpool_free(p);
 *
 * `done` is called for every submitted job exactly once, on the calling
 * thread, inside submit, wait_all, finish or free; it owns the job then (its
 * fd, its memory). After the first failure no further job is run (each is
 * done with -ECANCELED) and submit and finish return that failure; a failure
 * of the caller's own cancels the pool the same way.
 */
#ifndef CAIRN_REMOTE_XFER_H
#define CAIRN_REMOTE_XFER_H

#include "remote/backend.h"

typedef struct cairn__xjob {
    bool put;    /* send `size` bytes of fd under digest; else fetch digest into fd */
    bool verify; /* put: hash fd's bytes against digest (and size) before sending */
    char digest[CAIRN_DIGEST_LEN + 1];
    char media_type[CAIRN_MEDIA_TYPE_MAX + 1];
    uint64_t size; /* get: the size its descriptor says (UINT64_MAX: any) */
    int fd;        /* get: empty, read-write; left at offset 0 once verified */
    void *ud;      /* the caller's */
    int r;         /* 0, or the failure (err) */
    cairn_error err;
    struct cairn__xjob *next;
} cairn__xjob;

typedef struct cairn__xpool cairn__xpool;
typedef void (*cairn__xjob_done_fn)(void *ud, cairn__xjob *j);
/* bytes the pool moved so far (progress), on the calling thread */
typedef void (*cairn__xpool_tick_fn)(void *ud, uint64_t bytes);

/* `workers` threads (at least 1), each with a handle opened by ops->open(conf). */
CAIRN_INTERNAL int cairn__xpool_new(cairn__xpool **out, const cairn__remote_ops *ops,
                                    const cairn__remote_conf *conf, unsigned workers,
                                    cairn__xjob_done_fn done, cairn__xpool_tick_fn tick, void *ud,
                                    cairn_error *err);
CAIRN_INTERNAL int cairn__xpool_submit(cairn__xpool *p, cairn__xjob *j, cairn_error *err);
/* Wait for every job submitted so far (a barrier: what is submitted next
 * starts after); the first failure, if any. */
CAIRN_INTERNAL int cairn__xpool_wait_all(cairn__xpool *p, cairn_error *err);
/* The caller failed on its side: nothing queued is run any more (each is
 * done with -ECANCELED); what runs finishes. */
CAIRN_INTERNAL void cairn__xpool_cancel(cairn__xpool *p);
/* Wait for the rest, then flush each handle (backend.h: flush); the first
 * failure, if any. */
CAIRN_INTERNAL int cairn__xpool_finish(cairn__xpool *p, cairn_error *err);
CAIRN_INTERNAL void cairn__xpool_free(cairn__xpool *p);

/* Hash what fd holds (from offset 0) against digest and size (negative:
 * any), leaving fd at 0: CAIRN_E_MISMATCH naming the remote when not. */
CAIRN_INTERNAL int cairn__xfer_verify(const char *url, const char *digest, int64_t size, int fd,
                                      cairn_error *err);

#endif
