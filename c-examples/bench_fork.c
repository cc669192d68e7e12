/* bench_fork: what a loop costs each fork() of its process, and the
 * child's evl_loop_fork.
 *
 *   bench_fork [--regs N] [--forks F]
 *   bench_fork --register R
 *
 * With a loop of N registrations (dups of one socket), forks F children
 * that exit at once, and prints the wall time and the parent's CPU time
 * (user + system) per fork, medians of F; then the median time of the
 * child's evl_loop_fork over 5 children. fork()'s handler lists each loop's
 * epoll set for the child (see evl_loop_fork): that is what grows with N.
 * --register R makes R evl_register/evl_unregister pairs and nothing else,
 * for bench/callgrind_delta.py (the register path the handler spares).
 */
#define _GNU_SOURCE
#include "evloop.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double cpu_us(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 + u.ru_utime.tv_usec + u.ru_stime.tv_usec;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, int n) {
    qsort(values, (size_t)n, sizeof *values, compare);
    return values[n / 2];
}

static void on_io(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    (void)loop;
    (void)fd;
    (void)revents;
    (void)userdata;
}

int main(int argc, char **argv) {
    long regs = 1000, forks = 50, register_pairs = 0;
    for (int i = 1; i < argc; i += 2) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (value && strcmp(argv[i], "--regs") == 0) regs = atol(value);
        else if (value && strcmp(argv[i], "--forks") == 0) forks = atol(value);
        else if (value && strcmp(argv[i], "--register") == 0) register_pairs = atol(value);
        else regs = -1;
    }
    if (regs < 0 || forks < 1) {
        fprintf(stderr, "usage: bench_fork [--regs N] [--forks F] | --register R\n");
        return 2;
    }
    evl_loop *loop;
    int sv[2];
    if (evl_loop_new(&loop) != 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) return 1;
    if (register_pairs > 0) {
        for (long i = 0; i < register_pairs; i++) {
            if (evl_register(loop, sv[0], EVL_READ, on_io, NULL) != 0) return 1;
            if (evl_unregister(loop, sv[0]) != 0) return 1;
        }
        printf("%ld register/unregister pairs\n", register_pairs);
        return 0;
    }
    for (long i = 0; i < regs; i++) {
        int fd = dup(sv[0]);
        if (fd < 0 || evl_register(loop, fd, EVL_READ, on_io, NULL) != 0) {
            perror("dup or evl_register");
            return 1;
        }
    }
    double *wall = calloc((size_t)forks, sizeof *wall), *cpu = calloc((size_t)forks, sizeof *cpu);
    for (long i = 0; i < forks; i++) {
        double t = now_us(), c = cpu_us();
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        if (pid < 0) return 1;
        /* The parent's cost ends when fork() returns; the child's exit is not counted. */
        wall[i] = now_us() - t;
        cpu[i] = cpu_us() - c;
        waitpid(pid, NULL, 0);
    }
    double reinit[5];
    for (int i = 0; i < 5; i++) {
        int p[2];
        if (pipe(p) != 0) return 1;
        pid_t pid = fork();
        if (pid == 0) {
            double t = now_us();
            int rc = evl_loop_fork(loop);
            double took = now_us() - t;
            _exit(write(p[1], &took, sizeof took) == sizeof took && rc == 0 ? 0 : 1);
        }
        int status = 0;
        if (read(p[0], &reinit[i], sizeof reinit[i]) != sizeof reinit[i] || waitpid(pid, &status, 0) != pid ||
            status != 0)
            return 1;
        close(p[0]);
        close(p[1]);
    }
    printf("%ld registrations: fork() %.1f us wall, %.1f us of the parent's CPU; the child's evl_loop_fork %.1f us\n",
           regs, median(wall, (int)forks), median(cpu, (int)forks), median(reinit, 5));
    free(wall);
    free(cpu);
    evl_loop_free(loop);
    return 0;
}
