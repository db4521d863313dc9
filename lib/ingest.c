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
 * Without threads (pthread_create failed) submit does the work inline.
 */
#include "ingest-private.h"

#include <pthread.h>
#include <signal.h>

enum { NEED_HASH = 1, NEED_WRITE = 2, FILLING = 4 };

typedef struct slot {
    char *buf;
    size_t len;
    uint64_t off;
    unsigned state; /* 0 free, else FILLING or NEED_* bits */
} slot;

struct cairn__pipe {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* any state change */
    slot slots[CAIRN__PIPE_SLOTS];
    unsigned fill, hash_next, write_next; /* ring positions */
    bool stop;
    bool threads; /* started */
    bool nothreads; /* could not start: work inline */
    pthread_t hasher, writer;
    /* the stream */
    int fd;
    cairn__sha256 *h;
    bool direct;     /* O_DIRECT still wanted */
    bool fd_direct;  /* fd has O_DIRECT set */
    bool did_direct; /* an O_DIRECT write went through */
    int err;
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
    return p;
}

static bool set_direct(cairn__pipe *p, bool on)
{
    if (p->fd_direct == on)
        return true;
    int fl = fcntl(p->fd, F_GETFL);
    if (fl < 0 || fcntl(p->fd, F_SETFL, on ? (fl | O_DIRECT) : (fl & ~O_DIRECT)) < 0)
        return false;
    p->fd_direct = on;
    return true;
}

static bool aligned(const char *buf, size_t len, uint64_t off)
{
    return ((uintptr_t)buf | len | off) % CAIRN__DIO_ALIGN == 0;
}

/* Write one slot's bytes at their offset; 0 or -errno. Runs in the writing
 * thread (or inline); only this touches the fd's flags during a stream. */
static int slot_write(cairn__pipe *p, const char *buf, size_t len, uint64_t off)
{
    size_t whole = len - len % CAIRN__DIO_ALIGN;
    if (p->direct && whole && aligned(buf, whole, off)) {
        if (!set_direct(p, true)) {
            p->direct = false; /* the filesystem does not do O_DIRECT */
        } else {
            while (whole) {
                ssize_t n = pwrite(p->fd, buf, whole, (off_t)off);
                if (n < 0 && errno == EINTR)
                    continue;
                if (n < 0 && errno == EINVAL && !p->did_direct) {
                    p->direct = false; /* alignment the device does not take */
                    break;
                }
                if (n < 0)
                    return -errno;
                if (n == 0)
                    return -EIO;
                p->did_direct = true;
                buf += n, len -= (size_t)n, off += (uint64_t)n, whole -= (size_t)n;
                if (whole && !aligned(buf, whole, off))
                    break; /* a short write left us unaligned: the rest buffered */
            }
        }
    }
    if (!len)
        return 0;
    if (!set_direct(p, false))
        return -errno;
    uint64_t start = off;
    while (len) {
        ssize_t n = pwrite(p->fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        buf += n, len -= (size_t)n, off += (uint64_t)n;
    }
    /* Start writeback now so that the final sync has little left to do. */
    sync_file_range(p->fd, (off_t)start, (off_t)(off - start), SYNC_FILE_RANGE_WRITE);
    return 0;
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
        cairn__sha256 *h = p->h;
        pthread_mutex_unlock(&p->mu);
        if (h)
            cairn__sha256_update(h, s->buf, s->len);
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
        int r = skip ? 0 : slot_write(p, s->buf, s->len, s->off);
        pthread_mutex_lock(&p->mu);
        if (r < 0 && !p->err)
            p->err = r;
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

void cairn__pipe_begin(cairn__pipe *p, int fd, cairn__sha256 *h, bool direct)
{
    pthread_mutex_lock(&p->mu);
    p->fd = fd;
    p->h = h;
    p->direct = direct;
    int fl = fcntl(fd, F_GETFL);
    p->fd_direct = fl >= 0 && (fl & O_DIRECT);
    p->did_direct = false;
    p->err = 0;
    pthread_mutex_unlock(&p->mu);
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

void cairn__pipe_submit(cairn__pipe *p, size_t len, uint64_t off)
{
    slot *s = &p->slots[p->fill];
    if (len == 0) {
        pthread_mutex_lock(&p->mu);
        s->state = 0;
        pthread_mutex_unlock(&p->mu);
        return;
    }
    if (!p->threads && !p->nothreads)
        start_threads(p);
    if (p->nothreads) {
        if (p->h)
            cairn__sha256_update(p->h, s->buf, len);
        int r = p->err ? 0 : slot_write(p, s->buf, len, off);
        pthread_mutex_lock(&p->mu);
        if (r < 0 && !p->err)
            p->err = r;
        s->state = 0;
        pthread_mutex_unlock(&p->mu);
        return;
    }
    pthread_mutex_lock(&p->mu);
    s->len = len;
    s->off = off;
    s->state = NEED_HASH | NEED_WRITE;
    p->fill = (p->fill + 1) % CAIRN__PIPE_SLOTS;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int cairn__pipe_drain(cairn__pipe *p, bool *direct)
{
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < CAIRN__PIPE_SLOTS; i++)
        while (p->slots[i].state & (NEED_HASH | NEED_WRITE))
            pthread_cond_wait(&p->cv, &p->mu);
    int r = p->err;
    if (direct)
        *direct = p->did_direct;
    p->h = NULL;
    pthread_mutex_unlock(&p->mu);
    return r;
}

int cairn__pipe_error(cairn__pipe *p)
{
    pthread_mutex_lock(&p->mu);
    int r = p->err;
    pthread_mutex_unlock(&p->mu);
    return r;
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
