/* spawn CMD [ARG...]: runs a command as a child of an evloop loop, streams
 * its output as it comes (its stdout to ours, its stderr to ours), and
 * prints how it ended. The exit status is the child's (128 + the signal
 * if a signal ended it; 127 if the command could not be started). SIGINT
 * and SIGTERM are passed on to the child.
 *
 *   spawn sh -c 'echo hello; sleep 1; echo bye >&2; exit 3'
 *
 * What it shows: evl_spawn with two pipes given back as streams, the
 * child's exit read from its pidfd (no SIGCHLD handler, no waitpid), a
 * signal watcher forwarding to the child with evl_process_kill, and a
 * loop that ends by itself once the child has exited and both pipes
 * reached end-of-file. */
#define _POSIX_C_SOURCE 200809L
#include "evloop.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    uint64_t process;
    int exited;
    evl_process_exit exit;
} child;

/* Writes all of `len` bytes to `fd` (our stdout or stderr). */
static void write_all(int fd, const uint8_t *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return; /* our reader has gone: drop the rest */
        }
        data += n;
        len -= (size_t)n;
    }
}

/* The child's stdout and stderr: copied out as they come. */
static void on_output(evl_loop *loop, const evl_stream_event *ev) {
    int out = (int)(intptr_t)ev->userdata; /* 1 or 2: where this pipe goes */
    switch (ev->kind) {
    case EVL_STREAM_DATA:
        write_all(out, ev->data, ev->len);
        break;
    case EVL_STREAM_EOF:
        evl_stream_close(loop, ev->stream); /* the child closed its end */
        break;
    default:
        break;
    }
}

static void on_exit_cb(evl_loop *loop, const evl_process_exit *exit) {
    (void)loop;
    child *c = exit->userdata;
    c->exited = 1;
    c->exit = *exit;
}

static void on_signal(evl_loop *loop, int signo, void *userdata) {
    child *c = userdata;
    if (!c->exited) evl_process_kill(loop, c->process, signo);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: spawn CMD [ARG...]\n");
        return 2;
    }
    evl_loop *loop;
    int rc = evl_loop_new(&loop);
    if (rc != 0) {
        fprintf(stderr, "evl_loop_new: %s\n", evl_strerror(rc));
        return 1;
    }
    child c = {0};
    /* The pipes' streams take one callback; their userdata says where
     * their bytes go, so spawn the two with the same callback and set each
     * stream's own userdata afterwards. */
    evl_spawn_options options = {
        .argv = (const char *const *)&argv[1],
        .stdio = {EVL_STDIO_INHERIT, EVL_STDIO_PIPE, EVL_STDIO_PIPE},
        .exit_cb = on_exit_cb,
        .stream_cb = on_output,
        .userdata = &c,
    };
    evl_spawned spawned;
    rc = evl_spawn(loop, &options, &spawned);
    if (rc != 0) {
        fprintf(stderr, "spawn: %s: %s\n", argv[1], evl_strerror(rc));
        evl_loop_free(loop);
        return 127;
    }
    c.process = spawned.process;
    evl_stream_set_callback(loop, spawned.stdio[1], on_output, (void *)(intptr_t)1);
    evl_stream_set_callback(loop, spawned.stdio[2], on_output, (void *)(intptr_t)2);
    evl_signal_start(loop, SIGINT, on_signal, &c);
    evl_signal_start(loop, SIGTERM, on_signal, &c);

    /* Until the child has exited and both pipes are closed. The signal
     * watchers would keep evl_run going: stop them once the child is gone. */
    while (!c.exited) {
        rc = evl_run_once(loop, -1);
        if (rc < 0 && rc != -EINTR) break;
    }
    evl_signal_stop(loop, SIGINT);
    evl_signal_stop(loop, SIGTERM);
    evl_run(loop); /* the rest of the output, then both pipes' end */
    evl_loop_free(loop);

    fflush(stdout);
    int status;
    if (c.exit.term_signal != 0) {
        printf("[%s: pid %d killed by signal %d (%s)%s]\n", argv[1], c.exit.pid,
               c.exit.term_signal, strsignal(c.exit.term_signal),
               c.exit.core_dumped ? ", core dumped" : "");
        status = 128 + c.exit.term_signal;
    } else {
        printf("[%s: pid %d exited with status %d]\n", argv[1], c.exit.pid, c.exit.exit_code);
        status = c.exit.exit_code;
    }
    return status;
}
