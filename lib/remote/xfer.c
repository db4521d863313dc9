/* remote/xfer.c: a pool of transfer threads (xfer.h). One mutex guards the
 * queue, the done list and the first failure; the bytes moved are an
 * atomic counter the workers add to and the calling thread reads. */
#include "remote/xfer.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct worker {
    struct cairn__xpool *p;
    cairn__remote *r;
    pthread_t th;
    bool started;
} worker;

struct cairn__xpool {
    const cairn__remote_ops *ops;
    char *url;
    worker *w;
    unsigned n;
    unsigned window; /* jobs out at once: queued or running */
    cairn__xjob_done_fn done_fn;
    cairn__xpool_tick_fn tick_fn;
    void *ud;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    cairn__xjob *head, *tail; /* queued */
    cairn__xjob *finished;    /* run, for done_fn */
    unsigned out;             /* submitted, not yet on finished */
    bool closing, failed, cancelled, joined;
    int r;
    cairn_error err;
    _Atomic uint64_t bytes;
};

int cairn__xfer_verify(const char *url, const char *digest, int64_t size, int fd, cairn_error *err)
{
    if (lseek(fd, 0, SEEK_SET) < 0)
        return cairn__err(err, -errno, "remote %s: blob %s: seek: %m", url, digest);
    char got[CAIRN_DIGEST_LEN + 1];
    int64_t n = cairn__sha256_fd(fd, got);
    if (n < 0)
        return cairn__err(err, (int)n, "remote %s: blob %s: read: %m", url, digest);
    if (strcmp(got, digest) != 0 || (size >= 0 && n != size)) {
        if (size >= 0 && n != size && !strcmp(got, digest))
            return cairn__err(err, CAIRN_E_MISMATCH, "remote %s: blob %s: %lld bytes, its "
                              "descriptor says %lld; refused, nothing stored", url, digest,
                              (long long)n, (long long)size);
        return cairn__err(err, CAIRN_E_MISMATCH, "remote %s: blob %s: the bytes fetched (%lld) "
                          "hash to %s; refused, nothing stored", url, digest, (long long)n, got);
    }
    if (lseek(fd, 0, SEEK_SET) < 0)
        return cairn__err(err, -errno, "remote %s: blob %s: seek: %m", url, digest);
    return 0;
}

/* What one transfer has added to the pool's bytes (a retry starts over:
 * the counter never goes back). */
typedef struct jprog {
    cairn__xpool *p;
    uint64_t last;
} jprog;

static void jprog_cb(void *ud, uint64_t done)
{
    jprog *g = ud;
    if (done > g->last) {
        atomic_fetch_add(&g->p->bytes, done - g->last);
        g->last = done;
    }
}

static void run(cairn__xpool *p, cairn__remote *r, cairn__xjob *j)
{
    jprog g = {p, 0};
    if (j->put) {
        if (j->verify) {
            char got[CAIRN_DIGEST_LEN + 1];
            int64_t n = lseek(j->fd, 0, SEEK_SET) < 0 ? -errno : cairn__sha256_fd(j->fd, got);
            if (n < 0) {
                j->r = cairn__err(&j->err, (int)n, "blob %s: read: %m", j->digest);
                return;
            }
            if (strcmp(got, j->digest) != 0 || (uint64_t)n != j->size) {
                j->r = cairn__err(&j->err, CAIRN_E_CORRUPT, "blob %s: corrupt in the state: its "
                                  "bytes hash to %s (%lld bytes, its row says %llu); not sent "
                                  "(run 'cairn fsck')", j->digest, got, (long long)n,
                                  (unsigned long long)j->size);
                return;
            }
        }
        j->r = p->ops->blob_put(r, j->digest, j->fd, j->size, j->media_type, jprog_cb, &g,
                                &j->err);
    } else {
        j->r = p->ops->blob_get(r, j->digest, j->fd, jprog_cb, &g, &j->err);
        if (j->r == 0)
            j->r = cairn__xfer_verify(p->url, j->digest,
                                      j->size == UINT64_MAX ? -1 : (int64_t)j->size, j->fd,
                                      &j->err);
    }
    if (j->r == 0 && j->size != UINT64_MAX && j->size > g.last)
        atomic_fetch_add(&p->bytes, j->size - g.last);
}

static void *work(void *arg)
{
    worker *w = arg;
    cairn__xpool *p = w->p;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->closing)
            pthread_cond_wait(&p->work, &p->mu);
        cairn__xjob *j = p->head;
        if (!j)
            break;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        bool skip = p->failed || p->cancelled;
        pthread_mutex_unlock(&p->mu);
        if (skip)
            j->r = cairn__err(&j->err, -ECANCELED, "blob %s: not %s: an earlier transfer failed",
                              j->digest, j->put ? "sent" : "fetched");
        else
            run(p, w->r, j);
        pthread_mutex_lock(&p->mu);
        if (j->r < 0 && !p->failed) {
            p->failed = true;
            p->r = j->r;
            p->err = j->err;
        }
        j->next = p->finished;
        p->finished = j;
        p->out--;
        pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* On the calling thread: hand what finished to done_fn, report progress. */
static void drain(cairn__xpool *p)
{
    pthread_mutex_lock(&p->mu);
    cairn__xjob *j = p->finished;
    p->finished = NULL;
    pthread_mutex_unlock(&p->mu);
    while (j) {
        cairn__xjob *next = j->next;
        p->done_fn(p->ud, j);
        j = next;
    }
    if (p->tick_fn)
        p->tick_fn(p->ud, atomic_load(&p->bytes));
}

/* Wait (mu held) for a job to finish, or a tenth of a second: the caller's
 * progress is reported between. Returns with mu held. */
static void wait_some(cairn__xpool *p)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_nsec += 100000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&p->done, &p->mu, &t);
    pthread_mutex_unlock(&p->mu);
    drain(p);
    pthread_mutex_lock(&p->mu);
}

int cairn__xpool_new(cairn__xpool **out, const cairn__remote_ops *ops,
                     const cairn__remote_conf *conf, unsigned workers, cairn__xjob_done_fn done,
                     cairn__xpool_tick_fn tick, void *ud, cairn_error *err)
{
    *out = NULL;
    if (!workers)
        workers = 1;
    cairn__xpool *p = calloc(1, sizeof(*p));
    if (!p || !(p->w = calloc(workers, sizeof(*p->w))) || !(p->url = strdup(conf->url))) {
        if (p)
            free(p->w);
        free(p);
        return cairn__err(err, -ENOMEM, "out of memory");
    }
    p->ops = ops;
    p->window = workers * 2;
    p->done_fn = done;
    p->tick_fn = tick;
    p->ud = ud;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->done, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&p->work, NULL);
    /* each its own handle (connections and tokens are not shared), with
     * its share of the jobs for what it runs in parallel itself (the parts
     * of one big blob): jobs in all, not jobs squared */
    cairn__remote_conf wc = *conf;
    unsigned total = conf->jobs ? conf->jobs : 8;
    wc.jobs = (total + workers - 1) / workers;
    int r = 0;
    for (unsigned i = 0; r == 0 && i < workers; i++) {
        r = ops->open(&wc, &p->w[i].r, err);
        if (r == 0)
            p->n++;
    }
    /* The workers take no signal: the calling thread's handlers see them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (unsigned i = 0; r == 0 && i < p->n; i++) {
        p->w[i].p = p;
        int e = pthread_create(&p->w[i].th, NULL, work, &p->w[i]);
        if (e)
            r = cairn__err(err, -e, "remote %s: a transfer thread: %s", conf->url,
                           cairn_strerror(-e));
        else
            p->w[i].started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r < 0) {
        cairn__xpool_free(p);
        return r;
    }
    *out = p;
    return 0;
}

int cairn__xpool_submit(cairn__xpool *p, cairn__xjob *j, cairn_error *err)
{
    drain(p);
    pthread_mutex_lock(&p->mu);
    while (p->out >= p->window && !p->failed)
        wait_some(p);
    if (p->failed || p->cancelled) {
        int r = p->failed ? p->r : -ECANCELED;
        if (err && p->failed)
            *err = p->err;
        else if (!p->failed)
            cairn__err(err, r, "remote %s: transfers stopped", p->url);
        pthread_mutex_unlock(&p->mu);
        j->r = cairn__err(&j->err, -ECANCELED, "blob %s: not %s: an earlier transfer failed",
                          j->digest, j->put ? "sent" : "fetched");
        p->done_fn(p->ud, j);
        return r;
    }
    j->next = NULL;
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->out++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

static void join(cairn__xpool *p)
{
    pthread_mutex_lock(&p->mu);
    p->closing = true;
    pthread_cond_broadcast(&p->work);
    while (p->out > 0)
        wait_some(p);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n; i++)
        if (p->w[i].started)
            pthread_join(p->w[i].th, NULL);
    p->joined = true;
    drain(p);
}

void cairn__xpool_cancel(cairn__xpool *p)
{
    pthread_mutex_lock(&p->mu);
    p->cancelled = true;
    pthread_mutex_unlock(&p->mu);
}

int cairn__xpool_wait_all(cairn__xpool *p, cairn_error *err)
{
    pthread_mutex_lock(&p->mu);
    while (p->out > 0)
        wait_some(p);
    pthread_mutex_unlock(&p->mu);
    drain(p);
    if (p->failed) {
        if (err)
            *err = p->err;
        return p->r;
    }
    return 0;
}

int cairn__xpool_finish(cairn__xpool *p, cairn_error *err)
{
    if (!p->joined)
        join(p);
    /* what each handle holds back (file: blobs synced together) stored,
     * before the caller publishes anything naming it */
    for (unsigned i = 0; !p->failed && !p->cancelled && i < p->n; i++) {
        if (!p->ops->flush)
            break;
        int r = p->ops->flush(p->w[i].r, &p->err);
        if (r < 0) {
            p->failed = true;
            p->r = r;
        }
    }
    if (p->failed) {
        if (err)
            *err = p->err;
        return p->r;
    }
    return 0;
}

void cairn__xpool_free(cairn__xpool *p)
{
    if (!p)
        return;
    if (!p->joined)
        join(p);
    for (unsigned i = 0; i < p->n; i++)
        p->ops->close(p->w[i].r);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->w);
    free(p->url);
    free(p);
}
