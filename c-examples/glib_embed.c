/* glib_embed: evloop's stream echo server running inside a GLib main loop,
 * for a program that already has one (a GTK application, a GStreamer
 * pipeline...) and cannot give it up.
 *
 * GLib owns the thread. It watches evl_backend_fd() (g_unix_fd_add), which
 * is readable whenever evloop has something to do, and keeps one timeout
 * source at evl_backend_timeout() milliseconds for evloop's timers; when
 * either fires, evl_run_once(loop, 0) runs one iteration without blocking.
 * Beside it a GLib timer ticks every 100 ms, to show that neither loop
 * holds the other up. SIGINT or SIGTERM, which evloop watches (a signalfd in
 * its epoll set, so they wake GLib through the same fd), quits the GLib
 * loop; then the program prints how often the timer ticked and frees
 * everything.
 *
 *   glib_embed [--host H] [--port P] [--idle-timeout MS] [--quiet]
 *
 * Build (GLib's headers: apt-get install libglib2.0-dev):
 *   cc -std=c11 -Wall -Wextra -Werror -O2 -Iinclude c-examples/glib_embed.c \
 *      $(pkg-config --cflags --libs glib-2.0) -Ltarget/release -levloop \
 *      -Wl,-rpath,$PWD/target/release -o target/glib_embed
 */
#include "common.h"

#include <glib-unix.h>
#include <glib.h>

static const char usage[] =
    "usage: glib_embed [--host H] [--port P (0: any, printed first)] [--idle-timeout MS] [--quiet]\n"
    "Echo server on evloop's buffered streams inside a GLib main loop, default 127.0.0.1:10000.\n";

struct embedding {
    evl_loop *loop;
    guint fd_source;
    guint timeout_source; /* 0: none (evloop has no timer) */
};

static gboolean on_evloop_timeout(gpointer userdata);

/* One evloop iteration that does not block, then the timeout source moved
 * to evloop's next deadline. */
static void run_evloop(struct embedding *e) {
    int rc = evl_run_once(e->loop, 0);
    if (rc < 0 && rc != -EINTR) die("evl_run_once", rc);
    if (e->timeout_source) g_source_remove(e->timeout_source);
    int ms = evl_backend_timeout(e->loop);
    e->timeout_source = ms >= 0 ? g_timeout_add((guint)ms, on_evloop_timeout, e) : 0;
}

static gboolean on_evloop_ready(gint fd, GIOCondition condition, gpointer userdata) {
    (void)fd, (void)condition;
    run_evloop(userdata);
    return G_SOURCE_CONTINUE;
}

static gboolean on_evloop_timeout(gpointer userdata) {
    struct embedding *e = userdata;
    e->timeout_source = 0; /* this source ends when it returns */
    run_evloop(e);
    return G_SOURCE_REMOVE;
}

static gboolean on_tick(gpointer userdata) {
    (*(unsigned long *)userdata)++;
    return G_SOURCE_CONTINUE;
}

static void on_stop(evl_loop *loop, int signo, void *userdata) {
    (void)loop, (void)signo;
    g_main_loop_quit(userdata);
}

int main(int argc, char **argv) {
    struct options o;
    parse_options(argc, argv, OPT_IDLE, 10000, usage, &o);

    struct embedding e = {0};
    int rc = evl_loop_new(&e.loop);
    if (rc < 0) die("evl_loop_new", rc);
    uint64_t listener;
    rc = evl_listen(e.loop, o.host, o.port, 0, 0, echo_stream_event, NULL, &listener);
    if (rc < 0) die("evl_listen", rc);
    if (o.idle_ms > 0) evl_stream_set_idle_timeout(e.loop, listener, (uint32_t)o.idle_ms);
    int port = evl_listener_port(e.loop, listener);
    if (o.port == 0) printf("%d\n", port);
    say("glib_embed: stream echo server on %s port %d inside a GLib main loop", o.host, port);

    GMainLoop *main_loop = g_main_loop_new(NULL, FALSE);
    if ((rc = evl_signal_start(e.loop, SIGINT, on_stop, main_loop)) < 0 ||
        (rc = evl_signal_start(e.loop, SIGTERM, on_stop, main_loop)) < 0)
        die("evl_signal_start", rc);
    int fd = evl_backend_fd(e.loop);
    if (fd < 0) die("evl_backend_fd", fd);
    e.fd_source = g_unix_fd_add(fd, G_IO_IN, on_evloop_ready, &e);
    run_evloop(&e); /* the first timeout, if evloop has timers already */
    unsigned long ticks = 0;
    guint tick_source = g_timeout_add(100, on_tick, &ticks);

    g_main_loop_run(main_loop);

    printf("glib timer ticked %lu times\n", ticks);
    g_source_remove(tick_source);
    g_source_remove(e.fd_source);
    if (e.timeout_source) g_source_remove(e.timeout_source);
    g_main_loop_unref(main_loop);
    /* Closes the listener and every stream still open. */
    evl_loop_free(e.loop);
    return 0;
}
