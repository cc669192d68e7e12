/* The same as evl_spawn_true.c with libuv's uv_spawn: PROGRAM N times,
 * one after the other, each exit awaited in uv_run; `--pipe`: stdout is a
 * uv_pipe_t read to end-of-file. Part of bench/spawn_bench.py (needs
 * libuv1-dev, for the benchmark only). */
#define _POSIX_C_SOURCE 200809L
#include <uv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char buffer[65536];

static void on_exit_cb(uv_process_t *process, int64_t status, int signo) {
    if (status != 0 || signo != 0) abort();
    uv_close((uv_handle_t *)process, NULL);
}

static void on_alloc(uv_handle_t *handle, size_t size, uv_buf_t *buf) {
    (void)handle;
    (void)size;
    *buf = uv_buf_init(buffer, sizeof buffer);
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
    (void)buf;
    if (n < 0) uv_close((uv_handle_t *)stream, NULL);
}

int main(int argc, char **argv) {
    int n = 1000, piped = 0;
    char *program = "/bin/true";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--pipe") == 0) piped = 1;
        else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) n = atoi(argv[++i]);
        else program = argv[i];
    }
    uv_loop_t *loop = uv_default_loop();
    char *args[] = {program, NULL};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        uv_process_t process;
        uv_pipe_t out;
        uv_stdio_container_t stdio[3] = {
            {.flags = UV_INHERIT_FD, .data.fd = 0},
            {.flags = UV_INHERIT_FD, .data.fd = 1},
            {.flags = UV_INHERIT_FD, .data.fd = 2},
        };
        if (piped) {
            uv_pipe_init(loop, &out, 0);
            stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
            stdio[1].data.stream = (uv_stream_t *)&out;
        }
        uv_process_options_t options = {
            .file = program,
            .args = args,
            .exit_cb = on_exit_cb,
            .stdio_count = 3,
            .stdio = stdio,
        };
        int rc = uv_spawn(loop, &process, &options);
        if (rc != 0) {
            fprintf(stderr, "uv_spawn: %s\n", uv_strerror(rc));
            return 1;
        }
        if (piped) uv_read_start((uv_stream_t *)&out, on_alloc, on_read);
        uv_run(loop, UV_RUN_DEFAULT);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.6f\n", (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
    uv_loop_close(loop);
    return 0;
}
