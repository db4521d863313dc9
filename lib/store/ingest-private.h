/* ingest-private.h: the pipeline that stages large blobs (lib/ingest.c).
 *
 * A stream of bytes is cut into slots of CAIRN__PIPE_SLOT bytes. The caller
 * fills a slot and submits it; one thread hashes the slots in order while
 * another writes them to the staging file at their offsets, with O_DIRECT
 * when the filesystem allows it. Reading the input, hashing and writing then
 * overlap, and the written data does not pass through the page cache.
 *
 * A stream: begin, (acquire, fill, submit)..., then drain, or wait_hashed
 * and handoff to let its writes finish in the background while the next
 * stream starts (a batch keeps one pipeline for all its blobs). The hash
 * context passed to begin is the hashing thread's until wait_hashed/drain.
 *
 * Durability is the caller's business: the pipeline writes, it never syncs
 * (O_DIRECT puts the bytes on the device, not necessarily past its cache).
 */
#ifndef CAIRN_INGEST_PRIVATE_H
#define CAIRN_INGEST_PRIVATE_H

#include "core/core.h"

#define CAIRN__PIPE_SLOT  (4u << 20)
#define CAIRN__PIPE_SLOTS 4
/* Offsets, lengths and buffers of O_DIRECT writes are multiples of this. */
#define CAIRN__DIO_ALIGN 4096u

typedef struct cairn__pipe cairn__pipe;

/* A pipeline; its memory and threads come on first use. NULL: no memory. */
CAIRN_INTERNAL cairn__pipe *cairn__pipe_new(void);
/* Waits for what is in flight, stops the threads. NULL is fine. */
CAIRN_INTERNAL void cairn__pipe_free(cairn__pipe *p);

/* Start a stream into fd, hashed into h (NULL: the caller hashes). With
 * `direct`, whole aligned blocks go to the file with O_DIRECT. The previous
 * stream must be hashed (and handed off, or drained). Returns its id. */
CAIRN_INTERNAL unsigned cairn__pipe_begin(cairn__pipe *p, int fd, cairn__sha256 *h, bool direct);
/* A free slot of CAIRN__PIPE_SLOT bytes (aligned) for the caller to fill,
 * waiting for one if need be; NULL when out of memory. */
CAIRN_INTERNAL char *cairn__pipe_acquire(cairn__pipe *p);
/* Hand the acquired slot over: hash its `len` bytes and write them at `off`.
 * 0 releases the slot unused. */
CAIRN_INTERNAL void cairn__pipe_submit(cairn__pipe *p, size_t len, uint64_t off);
/* Submit the acquired slot as the stream's last and hand off the fd, as
 * cairn__pipe_handoff() does (len 0: only the hand-off). */
CAIRN_INTERNAL void cairn__pipe_submit_last(cairn__pipe *p, size_t len, uint64_t off);
/* Wait until every submitted slot is hashed: the hash context is the
 * caller's again. Writes may still be in flight. */
CAIRN_INTERNAL void cairn__pipe_wait_hashed(cairn__pipe *p);
/* Give the stream's fd to the pipeline, which closes it after the stream's
 * last write. The caller must not use the fd any more. */
CAIRN_INTERNAL void cairn__pipe_handoff(cairn__pipe *p);
/* Wait until every submitted slot is hashed and written (handed-off fds
 * closed). Returns 0 or the first write error (-errno), which stays: the
 * writes after it were skipped. *stream (may be NULL): the failed stream. */
CAIRN_INTERNAL int cairn__pipe_drain(cairn__pipe *p, unsigned *stream);
/* The write error of `stream` so far (-errno) or 0, without waiting. */
CAIRN_INTERNAL int cairn__pipe_error(cairn__pipe *p, unsigned stream);
/* Whether an O_DIRECT write went through (the filesystem takes them). */
CAIRN_INTERNAL bool cairn__pipe_direct_used(cairn__pipe *p);

#endif
