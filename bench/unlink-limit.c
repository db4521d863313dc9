/* unlink-limit.c: the physical limit of a collection: one unlink per file
 * (and one rmdir per directory) of the paths read from stdin, one a line,
 * deepest first as given. Prints the seconds it took. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    char line[4096];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    long n = 0;
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (unlink(line) < 0 && rmdir(line) < 0) {
            perror(line);
            return 1;
        }
        n++;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f\n", (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    fprintf(stderr, "unlink-limit: %ld paths\n", n);
    return 0;
}
