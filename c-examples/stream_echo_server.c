/* stream_echo_server: an echo server on evloop's buffered streams, the
 * fastest way to serve TCP with evloop.
 *
 * The library accepts, reads into its own buffer, writes, queues what the
 * kernel does not take, and calls one function with what happened. So the
 * whole server is echo_stream_event() (common.h): echo the bytes, close
 * when the client has finished sending (what is queued still goes out
 * first). A client that sends without reading is stopped being read from
 * once 1 MiB waits for it (the default high watermark); a silent one is
 * dropped after --idle-timeout milliseconds; a reset closes only its own
 * stream.
 *
 * --workers N runs N threads, each with its own loop and its own listening
 * socket on the same port (SO_REUSEPORT): the kernel spreads connections
 * over them. The main thread waits for SIGINT or SIGTERM, then stops the
 * loops and frees everything.
 *
 *   stream_echo_server [--host H] [--port P] [--workers N] [--idle-timeout MS]
 *                      [--max-conns N] [--quiet]
 */
#include "common.h"

#include <pthread.h>

static const char usage[] =
    "usage: stream_echo_server [--host H] [--port P (0: any, printed first)] [--workers N]\n"
    "                          [--idle-timeout MS] [--max-conns N (per worker)] [--quiet]\n"
    "Echo server on evloop's buffered streams, default 127.0.0.1:10000.\n";

struct worker {
    evl_loop *loop;
    uint64_t listener;
    pthread_t thread;
};

static void *run_worker(void *arg) {
    struct worker *w = arg;
    int rc = evl_run(w->loop);
    if (rc < 0) die("evl_run", rc);
    return NULL;
}

/* One loop with its listener. The first binds the port (perhaps port 0),
 * the others the same one. */
static int start_worker(struct worker *w, const struct options *o, int port) {
    int rc = evl_loop_new(&w->loop);
    if (rc < 0) die("evl_loop_new", rc);
    uint32_t flags = o->workers > 1 ? EVL_LISTEN_REUSEPORT : 0;
    rc = evl_listen(w->loop, o->host, port, 0, flags, echo_stream_event, NULL, &w->listener);
    if (rc < 0) die("evl_listen", rc);
    if (o->idle_ms > 0) evl_stream_set_idle_timeout(w->loop, w->listener, (uint32_t)o->idle_ms);
    if (o->max_conns > 0) evl_listener_set_max_conns(w->loop, w->listener, (int)o->max_conns);
    return evl_listener_port(w->loop, w->listener);
}

/* Blocks SIGINT and SIGTERM in this thread and in the workers it starts, so
 * that only sigwait() below sees them. */
static sigset_t block_stop_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    return set;
}

int main(int argc, char **argv) {
    struct options o;
    parse_options(argc, argv, OPT_WORKERS | OPT_IDLE | OPT_MAX_CONNS, 10000, usage, &o);
    sigset_t stop_signals = block_stop_signals();

    struct worker *workers = calloc((size_t)o.workers, sizeof *workers);
    if (!workers) die("calloc", -ENOMEM);
    int port = start_worker(&workers[0], &o, o.port);
    for (long i = 1; i < o.workers; i++) start_worker(&workers[i], &o, port);
    if (o.port == 0) printf("%d\n", port);
    say("stream echo server on %s port %d, %ld worker%s", o.host, port, o.workers, o.workers > 1 ? "s" : "");

    for (long i = 0; i < o.workers; i++) {
        int rc = pthread_create(&workers[i].thread, NULL, run_worker, &workers[i]);
        if (rc != 0) die("pthread_create", -rc);
    }
    int signo;
    sigwait(&stop_signals, &signo);
    say("%s: stopping", signo == SIGINT ? "SIGINT" : "SIGTERM");
    for (long i = 0; i < o.workers; i++) evl_stop(workers[i].loop);
    for (long i = 0; i < o.workers; i++) {
        pthread_join(workers[i].thread, NULL);
        /* Closes the listener and every stream still open. */
        evl_loop_free(workers[i].loop);
    }
    free(workers);
    return 0;
}
