/* driver.c: runs a libFuzzer-style target (LLVMFuzzerTestOneInput) without
 * libFuzzer, so that the suite exercises every parser with hostile input in
 * both of its builds (the ASan+UBSan one catches what goes wrong).
 *
 *   fuzz-NAME FILE...          run the target on each file
 *   fuzz-NAME [-n N] [-s SEED] run N inputs mutated from the target's seeds
 *   fuzz-NAME -d DIR           write the target's seeds into DIR (a corpus
 *                              for the libFuzzer build: scripts/fuzz)
 *
 * Mutations: bit flips, byte changes to boundary values, insertions and
 * deletions, truncation, duplication of a slice, splicing of two seeds. The
 * same seed gives the same inputs, so a failure can be replayed. For deeper
 * runs build the same target with clang -fsanitize=fuzzer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Each target provides its seeds: a NULL-terminated list of (bytes, size). */
typedef struct fuzz_seed {
    const void *data;
    size_t size;
} fuzz_seed;
extern const fuzz_seed fuzz_seeds[] __attribute__((weak));
/* A target whose seeds are built at run time (checksummed tar headers,
 * compressed streams) defines fuzz_seeds_get() instead: a NULL-terminated
 * list, as fuzz_seeds. */
const fuzz_seed *fuzz_seeds_get(void) __attribute__((weak));

static uint64_t rng;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static size_t mutate(uint8_t *buf, size_t len, size_t cap, const fuzz_seed *seeds, size_t nseeds)
{
    static const uint8_t special[] = {0, 1, 0x7f, 0x80, 0xff, '\n', '=', '/', '.', ' ', '0', '9'};
    int rounds = 1 + (int)(next() % 8);
    for (int i = 0; i < rounds; i++) {
        switch (next() % 7) {
        case 0: /* flip a bit */
            if (len)
                buf[next() % len] ^= (uint8_t)(1u << (next() % 8));
            break;
        case 1: /* a special byte */
            if (len)
                buf[next() % len] = special[next() % sizeof(special)];
            break;
        case 2: /* insert bytes */
            if (len < cap) {
                size_t at = len ? next() % (len + 1) : 0, n = 1 + next() % 16;
                if (n > cap - len)
                    n = cap - len;
                memmove(buf + at + n, buf + at, len - at);
                for (size_t k = 0; k < n; k++)
                    buf[at + k] = (uint8_t)next();
                len += n;
            }
            break;
        case 3: /* delete bytes */
            if (len) {
                size_t at = next() % len, n = 1 + next() % 16;
                if (n > len - at)
                    n = len - at;
                memmove(buf + at, buf + at + n, len - at - n);
                len -= n;
            }
            break;
        case 4: /* truncate */
            if (len)
                len = next() % len;
            break;
        case 5: /* duplicate a slice */
            if (len && len < cap) {
                size_t from = next() % len, n = 1 + next() % 64;
                if (n > len - from)
                    n = len - from;
                if (n > cap - len)
                    n = cap - len;
                size_t at = next() % (len + 1);
                memmove(buf + at + n, buf + at, len - at);
                memmove(buf + at, buf + (from >= at ? from + n : from), n);
                len += n;
            }
            break;
        case 6: /* splice another seed's tail */
            if (nseeds) {
                const fuzz_seed *o = &seeds[next() % nseeds];
                if (o->size) {
                    size_t at = len ? next() % len : 0, from = next() % o->size;
                    size_t n = o->size - from;
                    if (at + n > cap)
                        n = cap - at;
                    memcpy(buf + at, (const uint8_t *)o->data + from, n);
                    len = at + n;
                }
            }
            break;
        }
    }
    return len;
}

static int dump_seeds(const char *dir)
{
    const fuzz_seed *seeds = fuzz_seeds_get ? fuzz_seeds_get() : fuzz_seeds;
    for (size_t i = 0; seeds[i].data; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/seed-%zu", dir, i);
        FILE *f = fopen(path, "wb");
        int bad = !f;
        if (f) {
            bad = fwrite(seeds[i].data, 1, seeds[i].size, f) != seeds[i].size;
            bad |= fclose(f) != 0;
        }
        if (bad) {
            perror(path);
            return 2;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    long iterations = 1000;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int files = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc) {
            iterations = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "-s") && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 0);
        } else if (!strcmp(argv[i], "-d") && i + 1 < argc) {
            return dump_seeds(argv[++i]);
        } else {
            FILE *f = fopen(argv[i], "rb");
            if (!f) {
                perror(argv[i]);
                return 2;
            }
            static uint8_t fbuf[1 << 20];
            size_t n = fread(fbuf, 1, sizeof(fbuf), f);
            fclose(f);
            LLVMFuzzerTestOneInput(fbuf, n);
            files++;
        }
    }
    if (files)
        return 0;
    const fuzz_seed *seeds = fuzz_seeds_get ? fuzz_seeds_get() : fuzz_seeds;
    size_t nseeds = 0;
    size_t maxlen = 0;
    while (seeds[nseeds].data) {
        if (seeds[nseeds].size > maxlen)
            maxlen = seeds[nseeds].size;
        nseeds++;
    }
    size_t cap = maxlen * 2 + 256;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return 2;
    rng = seed ? seed : 1;
    for (size_t i = 0; i < nseeds; i++)
        LLVMFuzzerTestOneInput(seeds[i].data, seeds[i].size);
    for (long it = 0; it < iterations; it++) {
        const fuzz_seed *s = &seeds[next() % nseeds];
        memcpy(buf, s->data, s->size);
        size_t len = mutate(buf, s->size, cap, seeds, nseeds);
        LLVMFuzzerTestOneInput(buf, len);
    }
    free(buf);
    printf("%ld inputs from %zu seeds (seed %#llx): no crash\n", iterations, nseeds,
           (unsigned long long)seed);
    return 0;
}
