/* stack-lookup: open time of a stack and lookup latency through its lowers.
 *
 * Usage: bench-stack-lookup DIR [LOWERS...]   (default 1 8 64)
 * For each count N, builds in DIR N frozen states of 200 blobs each, a top
 * stacked on them, then measures, warm (page cache hot):
 *   open      cairn_state_open + cairn_state_free of the stack
 *   first     the first lookup after an open (opens the lower databases it
 *             walks through)
 *   hit       cairn_blob_exists of a blob held by the bottom lower (every
 *             layer is walked)
 *   miss      cairn_blob_exists of a digest nobody holds
 *   stat      cairn_blob_stat of the bottom blob (merges all layers' rows)
 *   record    cairn_record_results of a key recorded in the bottom lower
 * and prints a table in microseconds (medians).
 */
#include <cairn/cairn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>


static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmpd);
    return v[n / 2];
}

static int count_result(void *ud, const cairn_record_result *r)
{
    (void)r;
    (*(int *)ud)++;
    return 0;
}

static void die(const char *what, const cairn_error *e)
{
    fprintf(stderr, "bench-stack-lookup: %s: %s\n", what, e ? e->message : "");
    exit(1);
}

/* A live state with 200 blobs, each the result of a cache record, frozen
 * into `frozen`. */
static void make_lower(const char *dir, int i, char *frozen, size_t size, char *last_digest)
{
    char live[4096];
    snprintf(live, sizeof(live), "%s/live%d", dir, i);
    snprintf(frozen, size, "%s/lower%d", dir, i);
    cairn_error e = {0};
    if (cairn_state_init(live, NULL, &e) < 0)
        die("init", &e);
    cairn_state *st = NULL;
    if (cairn_state_open(&st, live, 0, &e) < 0)
        die("open", &e);
    cairn_blob_batch *b = NULL;
    if (cairn_blob_batch_new(&b, st, &e) < 0)
        die("batch", &e);
    for (int k = 0; k < 200; k++) {
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "lower %d blob %d", i, k);
        if (cairn_blob_batch_put_buf(b, buf, (size_t)n, NULL, last_digest, &e) < 0)
            die("put", &e);
    }
    if (cairn_blob_batch_commit(b, &e) < 0)
        die("commit", &e);
    cairn_blob_batch_free(b);
    cairn_state_free(st);
    /* Records: each blob is the result of a cache key (the blob's own
     * digest serves as the key). */
    if (cairn_state_open(&st, live, 0, &e) < 0)
        die("open", &e);
    for (int k = 0; k < 200; k++) {
        char buf[64], d[80];
        int n = snprintf(buf, sizeof(buf), "lower %d blob %d", i, k);
        if (cairn_blob_put_buf(st, buf, (size_t)n, NULL, d, &e) < 0 ||
            cairn_record_add_result(st, d, CAIRN_RESULT_BLOB, d, 0, &e) < 0)
            die("record", &e);
    }
    cairn_state_free(st);
    if (cairn_freeze(live, frozen, NULL, NULL, &e) < 0)
        die("freeze", &e);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench-stack-lookup DIR [LOWERS...]\n");
        return 2;
    }
    const char *dir = argv[1];
    int counts[16] = {1, 8, 64}, nc = 3;
    if (argc > 2) {
        nc = 0;
        for (int i = 2; i < argc && nc < 16; i++)
            counts[nc++] = atoi(argv[i]);
    }
    printf("%-8s %10s %10s %10s %10s %10s %10s\n", "lowers", "open_us", "first_us", "hit_us",
           "miss_us", "stat_us", "record_us");
    for (int c = 0; c < nc; c++) {
        int n = counts[c];
        char base[4096];
        snprintf(base, sizeof(base), "%s/n%d", dir, n);
        mkdir(base, 0755);
        char **lowers = calloc((size_t)n, sizeof(char *));
        char bottom[80] = "";
        for (int i = 0; i < n; i++) {
            lowers[i] = malloc(4096);
            make_lower(base, i, lowers[i], 4096, bottom);
        }
        char top[4200];
        snprintf(top, sizeof(top), "%s/top", base);
        cairn_error e = {0};
        if (cairn_state_init(top, NULL, &e) < 0 ||
            cairn_stack_add(top, (const char *const *)lowers, (size_t)n, &e) < 0)
            die("stack", &e);
        enum { R = 201 };
        static double t_open[R], t_first[R];
        for (int r = 0; r < R; r++) {
            cairn_state *st = NULL;
            double t0 = now_us();
            if (cairn_state_open(&st, top, CAIRN_OPEN_READONLY, &e) < 0)
                die("open stack", &e);
            double t1 = now_us();
            if (cairn_blob_exists(st, bottom, &e) != 1)
                die("lookup", &e);
            double t2 = now_us();
            cairn_state_free(st);
            t_open[r] = t1 - t0;
            t_first[r] = t2 - t1;
        }
        cairn_state *st = NULL;
        if (cairn_state_open(&st, top, CAIRN_OPEN_READONLY, &e) < 0)
            die("open stack", &e);
        const char *missing =
            "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        enum { L = 2001 };
        static double hit[L], miss[L], stat[L], rec[L];
        cairn_blob_info info;
        for (int r = 0; r < L; r++) {
            double t0 = now_us();
            if (cairn_blob_exists(st, bottom, &e) != 1)
                die("hit", &e);
            double t1 = now_us();
            if (cairn_blob_exists(st, missing, &e) != 0)
                die("miss", &e);
            double t2 = now_us();
            if (cairn_blob_stat(st, bottom, &info, &e) < 0)
                die("stat", &e);
            double t3 = now_us();
            hit[r] = t1 - t0;
            miss[r] = t2 - t1;
            stat[r] = t3 - t2;
            rec[r] = 0;
        }
        cairn_state_free(st);
        /* Records: the results of a key held by the bottom lower. */
        {
            cairn_state *rs = NULL;
            if (cairn_state_open(&rs, top, CAIRN_OPEN_READONLY, &e) < 0)
                die("open stack", &e);
            for (int r = 0; r < L; r++) {
                int found = 0;
                double t0 = now_us();
                if (cairn_record_results(rs, bottom, count_result, &found, &e) < 0)
                    die("record lookup", &e);
                rec[r] = now_us() - t0;
                if (found != 1)
                    die("record lookup: not found", NULL);
            }
            cairn_state_free(rs);
        }
        printf("%-8d %10.1f %10.1f %10.2f %10.2f %10.2f %10.2f\n", n, median(t_open, R),
               median(t_first, R), median(hit, L), median(miss, L), median(stat, L),
               median(rec, L));
        fflush(stdout);
        for (int i = 0; i < n; i++)
            free(lowers[i]);
        free(lowers);
    }
    return 0;
}
