/* bench_pipes: the workload of libevent's test/bench.c on evloop.
 *
 * N socketpairs, each with a read registration; A bytes are put in flight
 * and every read callback relays its byte to the next pair, W relays in all.
 * Each run sets the pairs up, relays, and tears them down; it prints the
 * microseconds of the whole run and of the relaying loop alone.
 *
 *   bench_pipes [-n N] [-a A] [-w W] [-r RUNS] [--raw]
 *
 * --raw runs the same workload on a hand-written epoll loop, the floor any
 * event loop is measured against. Instruction counts per operation come from
 * callgrind at two sizes (see c-examples/README.md).
 */
#define _GNU_SOURCE
#include "evloop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int num_pipes = 100, num_active = 1, num_writes = 100;
static int (*pipes)[2];
static int count, writes, fired;

static long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The relay step shared by both loops: take the byte, pass it on. */
static void relay(int idx) {
    char ch;
    if (read(pipes[idx][0], &ch, 1) == 1) count++;
    if (writes > 0) {
        int next = idx + 1 == num_pipes ? 0 : idx + 1;
        if (write(pipes[next][1], "e", 1) == 1) fired++;
        writes--;
    }
}

static void start_relays(void) {
    int space = num_pipes / num_active;
    count = 0;
    fired = 0;
    writes = num_writes;
    for (int i = 0; i < num_active; i++) {
        if (write(pipes[i * space][1], "e", 1) == 1) fired++;
    }
}

static void on_readable(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    (void)loop;
    (void)fd;
    (void)revents;
    relay((int)(intptr_t)userdata);
}

static int make_pipes(void) {
    for (int i = 0; i < num_pipes; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pipes[i]) != 0) {
            perror("socketpair");
            return -1;
        }
    }
    return 0;
}

static void close_pipes(void) {
    for (int i = 0; i < num_pipes; i++) {
        close(pipes[i][0]);
        close(pipes[i][1]);
    }
}

static int run_evloop(evl_loop *loop, long long *loop_us) {
    if (make_pipes() != 0) return -1;
    for (int i = 0; i < num_pipes; i++) {
        int rc = evl_register(loop, pipes[i][0], EVL_READ, on_readable, (void *)(intptr_t)i);
        if (rc != 0) {
            fprintf(stderr, "evl_register: %s\n", evl_strerror(rc));
            return -1;
        }
    }
    long long start = now_us();
    start_relays();
    while (count < fired) {
        int rc = evl_run_once(loop, -1);
        if (rc < 0 && rc != -EINTR) {
            fprintf(stderr, "evl_run_once: %s\n", evl_strerror(rc));
            return -1;
        }
    }
    *loop_us = now_us() - start;
    for (int i = 0; i < num_pipes; i++) evl_unregister(loop, pipes[i][0]);
    close_pipes();
    return 0;
}

static int run_raw(int epfd, long long *loop_us) {
    if (make_pipes() != 0) return -1;
    for (int i = 0; i < num_pipes; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, pipes[i][0], &ev) != 0) return -1;
    }
    long long start = now_us();
    start_relays();
    struct epoll_event events[1024];
    while (count < fired) {
        int n = epoll_wait(epfd, events, 1024, -1);
        for (int i = 0; i < n; i++) relay((int)events[i].data.u32);
    }
    *loop_us = now_us() - start;
    for (int i = 0; i < num_pipes; i++) epoll_ctl(epfd, EPOLL_CTL_DEL, pipes[i][0], NULL);
    close_pipes();
    return 0;
}

int main(int argc, char **argv) {
    int runs = 2, raw = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--raw") == 0) {
            raw = 1;
        } else if (value && strcmp(arg, "-n") == 0) {
            num_pipes = atoi(value), i++;
        } else if (value && strcmp(arg, "-a") == 0) {
            num_active = atoi(value), i++;
        } else if (value && strcmp(arg, "-w") == 0) {
            num_writes = atoi(value), i++;
        } else if (value && strcmp(arg, "-r") == 0) {
            runs = atoi(value), i++;
        } else {
            fprintf(stderr, "usage: %s [-n pipes] [-a active] [-w writes] [-r runs] [--raw]\n", argv[0]);
            return 2;
        }
    }
    if (num_pipes < 1 || num_active < 1 || num_active > num_pipes || num_writes < 0 || runs < 1) {
        fprintf(stderr, "need 1 <= active <= pipes, writes >= 0, runs >= 1\n");
        return 2;
    }
    pipes = calloc((size_t)num_pipes, sizeof *pipes);
    evl_loop *loop = NULL;
    int epfd = -1;
    if (raw) {
        epfd = epoll_create1(EPOLL_CLOEXEC);
    } else if (evl_loop_new(&loop) != 0) {
        fprintf(stderr, "evl_loop_new failed\n");
        return 1;
    }
    int status = 0;
    for (int r = 0; r < runs && status == 0; r++) {
        long long loop_us = 0, start = now_us();
        status = raw ? run_raw(epfd, &loop_us) : run_evloop(loop, &loop_us);
        if (status == 0) printf("%lld %lld\n", now_us() - start, loop_us);
    }
    if (raw) close(epfd); else evl_loop_free(loop);
    free(pipes);
    return status == 0 ? 0 : 1;
}
