/* ingest.c: the staging pipeline for large blobs (ingest-private.h).
 *
 * Slots go round a ring: the caller fills slot `fill`, then submits it; the
 * hashing thread takes slots in ring order (the digest needs the bytes in
 * order), the writing thread too (pwrite at the slot's offset). A slot is
 * free again when both are done with it. Everything shared is under `mu`;
 * the slot's bytes are only read by the threads, and only written by the
 * caller while the slot is free or being filled, so they need no lock.
 *
 * Writes: whole blocks with O_DIRECT while the stream asked for it and the
 * filesystem takes it (fcntl or the first write says EINVAL otherwise: then
 * the rest of the stream goes through the page cache, with writeback started
 * at once by sync_file_range); the unaligned tail of the last slot always
 * goes through the page cache. Why O_DIRECT: the bytes must reach the disk
 * before the blob is published anyway, and on machines where fresh
 * page-cache pages are expensive (a VM whose free memory is handed back to
 * the host) the copy into the page cache costs more than the disk write.
 *
 * Streams follow one another: the caller may start the next one once the
 * previous one is hashed, while its writes are still in flight; a stream
 * handed off carries its fd, which the writing thread closes after the
 * stream's last write. Write errors are kept (the first one, with its
 * stream) until drain reports them; after one, later writes are skipped.
 *
 * Without threads (pthread_create failed) submit does the work inline.
 */
#include "store/ingest-private.h"

#include <pthread.h>
#include <signal.h>

enum { NEED_HASH = 1, NEED_WRITE = 2, FILLING = 4 };

typedef struct slot {
    char *buf;
    size_t len;
    uint64_t off;
    int fd;
    cairn__sha256 *h;
    bool direct;
    bool first;    /* the stream's first slot: the fd's flags are unknown */
    bool close_fd; /* the stream's last: close fd after writing */
    unsigned stream;
    unsigned state; /* 0 free, else FILLING or NEED_* bits */
} slot;

struct cairn__pipe {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* any state change */
    slot slots[CAIRN__PIPE_SLOTS];
    unsigned fill, hash_next, write_next; /* ring positions */
    bool stop;
    bool threads;   /* started */
    bool nothreads; /* could not start: work inline */
    pthread_t hasher, writer;
    /* the stream being filled */
    int fd;
    cairn__sha256 *h;
    bool direct;
    bool first;
    unsigned stream;
    /* the writing side */
    int wfd;            /* the fd whose flags wfd_direct tells */
    bool wfd_direct;
    bool no_direct;     /* the filesystem refused O_DIRECT: stop asking */
    bool did_direct;    /* an O_DIRECT write went through */
    int err;            /* first write error: sticky, later writes are skipped */
    unsigned err_stream;
};

cairn__pipe *cairn__pipe_new(void)
{
    cairn__pipe *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    p->fd = -1;
    p->wfd = -1;
    return p;
}

static bool set_direct(cairn__pipe *p, int fd, bool on)
{
    if (p->wfd != fd) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0)
            return false;
        p->wfd = fd;
        p->wfd_direct = (fl & O_DIRECT) != 0;
    }
    if (p->wfd_direct == on)
        return true;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, on ? (fl | O_DIRECT) : (fl & ~O_DIRECT)) < 0)
        return false;
    p->wfd_direct = on;
    return true;
}

static bool aligned(const char *buf, size_t len, uint64_t off)
{
    return ((uintptr_t)buf | len | off) % CAIRN__DIO_ALIGN == 0;
}

/* Write one slot's bytes at their offset; 0 or -errno. Runs in the writing
 * thread (or inline); only this touches the fds' flags. */
static int slot_write(cairn__pipe *p, const slot *s)
{
    const char *buf = s->buf;
    size_t len = s->len;
    uint64_t off = s->off;
    size_t whole = len - len % CAIRN__DIO_ALIGN;
    if (s->first)
        p->wfd = -1; /* a new stream: its fd may reuse an old number */
    if (s->direct && !p->no_direct && whole && aligned(buf, whole, off)) {
        if (!set_direct(p, s->fd, true)) {
            p->no_direct = true; /* the filesystem does not do O_DIRECT */
        } else {
            while (whole) {
                ssize_t n = pwrite(s->fd, buf, whole, (off_t)off);
                if (n < 0 && errno == EINTR)
                    continue;
                if (n < 0 && errno == EINVAL && !__atomic_load_n(&p->did_direct, __ATOMIC_RELAXED)) {
                    p->no_direct = true; /* alignment the device does not take */
                    break;
                }
                if (n < 0)
                    return -errno;
                if (n == 0)
                    return -EIO;
                __atomic_store_n(&p->did_direct, true, __ATOMIC_RELAXED);
                buf += n, len -= (size_t)n, off += (uint64_t)n, whole -= (size_t)n;
                if (whole && !aligned(buf, whole, off))
                    break; /* a short write left us unaligned: the rest buffered */
            }
        }
    }
    if (!len)
        return 0;
    if (!set_direct(p, s->fd, false))
        return -errno;
    uint64_t start = off;
    while (len) {
        ssize_t n = pwrite(s->fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        buf += n, len -= (size_t)n, off += (uint64_t)n;
    }
    /* A large stream without O_DIRECT: start writeback now, so that the
     * final sync has little left to do. Not for the small blobs of a batch:
     * one syncfs writes them back together, merged, far cheaper than
     * thousands of small writebacks started one by one. */
    if (s->direct)
        sync_file_range(s->fd, (off_t)start, (off_t)(off - start), SYNC_FILE_RANGE_WRITE);
    return 0;
}

/* The writing side of one slot: write it (unless an earlier write failed)
 * or, for a marker, close its fd. Called without the lock. */
static int slot_do_write(cairn__pipe *p, const slot *s, bool skip)
{
    int r = skip || !s->len ? 0 : slot_write(p, s);
    if (s->close_fd) {
        if (p->wfd == s->fd)
            p->wfd = -1;
        close(s->fd);
    }
    return r;
}

static void *hash_main(void *arg)
{
    cairn__pipe *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        slot *s = &p->slots[p->hash_next];
        while (!p->stop && !(s->state & NEED_HASH))
            pthread_cond_wait(&p->cv, &p->mu);
        if (!(s->state & NEED_HASH))
            break; /* stopping, and nothing left */
        pthread_mutex_unlock(&p->mu);
        if (s->h && s->len)
            cairn__sha256_update(s->h, s->buf, s->len);
        pthread_mutex_lock(&p->mu);
        s->state &= ~(unsigned)NEED_HASH;
        p->hash_next = (p->hash_next + 1) % CAIRN__PIPE_SLOTS;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void *write_main(void *arg)
{
    cairn__pipe *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        slot *s = &p->slots[p->write_next];
        while (!p->stop && !(s->state & NEED_WRITE))
            pthread_cond_wait(&p->cv, &p->mu);
        if (!(s->state & NEED_WRITE))
            break;
        bool skip = p->err != 0;
        pthread_mutex_unlock(&p->mu);
        int r = slot_do_write(p, s, skip);
        pthread_mutex_lock(&p->mu);
        if (r < 0 && !p->err) {
            p->err = r;
            p->err_stream = s->stream;
        }
        s->state &= ~(unsigned)NEED_WRITE;
        p->write_next = (p->write_next + 1) % CAIRN__PIPE_SLOTS;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Start both threads with every signal blocked (signals are the
 * application's, for its own threads). */
static void start_threads(cairn__pipe *p)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    bool ok = pthread_create(&p->hasher, NULL, hash_main, p) == 0;
    if (ok && pthread_create(&p->writer, NULL, write_main, p) != 0) {
        pthread_mutex_lock(&p->mu);
        p->stop = true;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->hasher, NULL);
        p->stop = false;
        ok = false;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    p->threads = ok;
    p->nothreads = !ok;
}

unsigned cairn__pipe_begin(cairn__pipe *p, int fd, cairn__sha256 *h, bool direct)
{
    p->fd = fd;
    p->h = h;
    p->direct = direct;
    p->first = true;
    if (++p->stream == 0)
        p->stream = 1;
    return p->stream;
}

char *cairn__pipe_acquire(cairn__pipe *p)
{
    pthread_mutex_lock(&p->mu);
    slot *s = &p->slots[p->fill];
    while (s->state != 0)
        pthread_cond_wait(&p->cv, &p->mu);
    s->state = FILLING;
    pthread_mutex_unlock(&p->mu);
    if (!s->buf && !(s->buf = aligned_alloc(CAIRN__DIO_ALIGN, CAIRN__PIPE_SLOT))) {
        pthread_mutex_lock(&p->mu);
        s->state = 0;
        pthread_mutex_unlock(&p->mu);
        return NULL;
    }
    return s->buf;
}

/* Hand slot `fill` (acquired, or free for a marker) to the threads. */
static void submit(cairn__pipe *p, size_t len, uint64_t off, bool close_fd)
{
    slot *s = &p->slots[p->fill];
    if (!p->threads && !p->nothreads)
        start_threads(p);
    if (p->nothreads) {
        slot tmp = {.buf = s->buf, .len = len, .off = off, .fd = p->fd, .h = p->h,
                    .direct = p->direct, .first = p->first, .close_fd = close_fd,
                    .stream = p->stream};
        p->first = false;
        if (tmp.h && len)
            cairn__sha256_update(tmp.h, tmp.buf, len);
        int r = slot_do_write(p, &tmp, p->err != 0);
        pthread_mutex_lock(&p->mu);
        if (r < 0 && !p->err) {
            p->err = r;
            p->err_stream = p->stream;
        }
        s->state = 0;
        pthread_mutex_unlock(&p->mu);
        return;
    }
    pthread_mutex_lock(&p->mu);
    s->len = len;
    s->off = off;
    s->fd = p->fd;
    s->h = p->h;
    s->direct = p->direct;
    s->first = p->first;
    p->first = false;
    s->close_fd = close_fd;
    s->stream = p->stream;
    s->state = NEED_HASH | NEED_WRITE;
    p->fill = (p->fill + 1) % CAIRN__PIPE_SLOTS;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void cairn__pipe_submit(cairn__pipe *p, size_t len, uint64_t off)
{
    if (len == 0) {
        pthread_mutex_lock(&p->mu);
        p->slots[p->fill].state = 0;
        pthread_mutex_unlock(&p->mu);
        return;
    }
    submit(p, len, off, false);
}

void cairn__pipe_submit_last(cairn__pipe *p, size_t len, uint64_t off)
{
    if (len == 0) {
        cairn__pipe_submit(p, 0, 0);
        cairn__pipe_handoff(p);
        return;
    }
    submit(p, len, off, true);
    p->fd = -1;
}

void cairn__pipe_handoff(cairn__pipe *p)
{
    /* The marker takes a slot of its own: wait for it to be free. */
    pthread_mutex_lock(&p->mu);
    slot *s = &p->slots[p->fill];
    while (s->state != 0)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    submit(p, 0, 0, true);
    p->fd = -1;
}

void cairn__pipe_wait_hashed(cairn__pipe *p)
{
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < CAIRN__PIPE_SLOTS; i++)
        while (p->slots[i].state & NEED_HASH)
            pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    p->h = NULL;
}

int cairn__pipe_drain(cairn__pipe *p, unsigned *stream)
{
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < CAIRN__PIPE_SLOTS; i++)
        while (p->slots[i].state & (NEED_HASH | NEED_WRITE))
            pthread_cond_wait(&p->cv, &p->mu);
    int r = p->err;
    if (stream)
        *stream = p->err_stream;
    pthread_mutex_unlock(&p->mu);
    p->h = NULL;
    return r;
}

int cairn__pipe_error(cairn__pipe *p, unsigned stream)
{
    pthread_mutex_lock(&p->mu);
    int r = p->err_stream == stream ? p->err : 0;
    pthread_mutex_unlock(&p->mu);
    return r;
}

bool cairn__pipe_direct_used(cairn__pipe *p)
{
    return __atomic_load_n(&p->did_direct, __ATOMIC_RELAXED);
}

void cairn__pipe_free(cairn__pipe *p)
{
    if (!p)
        return;
    cairn__pipe_drain(p, NULL);
    if (p->threads) {
        pthread_mutex_lock(&p->mu);
        p->stop = true;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->hasher, NULL);
        pthread_join(p->writer, NULL);
    }
    for (size_t i = 0; i < CAIRN__PIPE_SLOTS; i++)
        free(p->slots[i].buf);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
