/* bench_timers: how late a 7 ms evloop timer fires, next to a bare
 * epoll_pwait2 wait for the same deadline, interleaved in one run.
 *
 *   bench_timers [--rounds N] [--pending P] [--delay-ms D]
 *
 * --pending P starts P other timers (an hour away) first, to show the cost
 * does not grow with the number of timers. Prints the median and the 99th
 * percentile lateness of each, in microseconds.
 */
#define _GNU_SOURCE
#include "evloop.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int compare(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void report(const char *name, int64_t *late, int n) {
    qsort(late, (size_t)n, sizeof *late, compare);
    printf("%-8s median %7.1f us   p99 %7.1f us   min %7.1f us\n", name, late[n / 2] / 1000.0,
           late[(n * 99) / 100] / 1000.0, late[0] / 1000.0);
}

static void on_timer(evl_loop *loop, uint64_t id, void *userdata) {
    (void)loop;
    (void)id;
    *(int64_t *)userdata = now_ns();
}

static void never(evl_loop *loop, uint64_t id, void *userdata) {
    (void)loop;
    (void)id;
    (void)userdata;
}

int main(int argc, char **argv) {
    int rounds = 300, pending = 0;
    int64_t delay_ms = 7;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--rounds") == 0) rounds = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--pending") == 0) pending = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--delay-ms") == 0) delay_ms = atoi(argv[i + 1]);
    }
    if (rounds < 1 || pending < 0 || delay_ms < 1) {
        fprintf(stderr, "usage: %s [--rounds N] [--pending P] [--delay-ms D]\n", argv[0]);
        return 2;
    }
    int64_t *bare = calloc((size_t)rounds, sizeof *bare);
    int64_t *timer = calloc((size_t)rounds, sizeof *timer);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    evl_loop *loop = NULL;
    if (evl_loop_new(&loop) != 0) return 1;
    for (int i = 0; i < pending; i++) evl_timer_start(loop, 3600 * 1000, 0, never, NULL, NULL);
    struct epoll_event ev;
    int64_t delay = delay_ms * 1000000;
    for (int r = 0; r < rounds; r++) {
        /* Bare: one epoll_pwait2 on an empty set for the whole delay. */
        int64_t start = now_ns();
        struct timespec ts = {(time_t)(delay / 1000000000), (long)(delay % 1000000000)};
        long rc = syscall(SYS_epoll_pwait2, epfd, &ev, 1, &ts, NULL, 0);
        if (rc < 0) {
            perror("epoll_pwait2 (the kernel needs 5.11)");
            return 1;
        }
        bare[r] = now_ns() - (start + delay);

        /* evloop: a one-shot timer, run until it fired. */
        int64_t fired = 0;
        start = now_ns();
        evl_timer_start(loop, (uint64_t)delay_ms, 0, on_timer, &fired, NULL);
        while (fired == 0) evl_run_once(loop, -1);
        timer[r] = fired - (start + delay);
    }
    printf("%d rounds of %lld ms, %d other timers pending\n", rounds, (long long)delay_ms, pending);
    report("bare", bare, rounds);
    report("evloop", timer, rounds);
    evl_loop_free(loop);
    close(epfd);
    free(bare);
    free(timer);
    return 0;
}
