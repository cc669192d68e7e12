/* Spawns PROGRAM (default /bin/true) N times, one after the other, with
 * evl_spawn, each child's exit awaited on the loop before the next spawn;
 * prints the seconds the N spawns took. `--pipe`: the child's stdout is a
 * pipe read to end-of-file (as asyncio's subprocess with stdout=PIPE).
 * Part of bench/spawn_bench.py. */
#define _POSIX_C_SOURCE 200809L
#include "evloop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int exited, pipe_open;

static void on_exit_cb(evl_loop *loop, const evl_process_exit *exit) {
    (void)loop;
    if (exit->exit_code != 0) abort();
    exited = 1;
}

static void on_stdout(evl_loop *loop, const evl_stream_event *ev) {
    if (ev->kind == EVL_STREAM_EOF) evl_stream_close(loop, ev->stream);
    if (ev->kind == EVL_STREAM_CLOSED) pipe_open = 0;
}

int main(int argc, char **argv) {
    int n = 1000, piped = 0;
    const char *program = "/bin/true";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--pipe") == 0) piped = 1;
        else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) n = atoi(argv[++i]);
        else program = argv[i];
    }
    evl_loop *loop;
    if (evl_loop_new(&loop) != 0) return 1;
    const char *args[] = {program, NULL};
    evl_spawn_options options = {
        .argv = args,
        .stdio = {EVL_STDIO_INHERIT, piped ? EVL_STDIO_PIPE : EVL_STDIO_INHERIT, EVL_STDIO_INHERIT},
        .exit_cb = on_exit_cb,
        .stream_cb = on_stdout,
    };
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        exited = 0;
        pipe_open = piped;
        int rc = evl_spawn(loop, &options, NULL);
        if (rc != 0) {
            fprintf(stderr, "evl_spawn: %s\n", evl_strerror(rc));
            return 1;
        }
        while (!exited || pipe_open) evl_run_once(loop, -1);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.6f\n", (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
    evl_loop_free(loop);
    return 0;
}
