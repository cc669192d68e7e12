/* nonblocking_echo_server: the articles' counter-example (S8), and beside it
 * the same service on evloop (--evloop). 127.0.0.1:8083, replies in upper case.
 *
 * S8 has no multiplexer: its sockets are non-blocking and it asks each of
 * them, over and over, whether it has something: accept() on the listener,
 * recv() on every connection, send() of every pending reply, catching EAGAIN
 * (Python's BlockingIOError), and in between "doing other work" and the
 * sizes of its two lists. It answers, but it never waits, so it burns a
 * whole core even with nothing to do. Mirrored faithfully, as the baseline
 * it is; --seconds and --max-idle bound it, so that it cannot spin forever
 * in a test.
 *
 * --evloop serves the same replies from evloop callbacks and does its
 * "other work" on a timer, once a second: the process sleeps in epoll_wait
 * until a socket or the timer needs it.
 *
 * What the original gets wrong, done right: a second message that came
 * before the first reply was sent replaced that reply (w_list is a dict
 * keyed by socket): replies queue up; a partial send() lost the rest: it is
 * kept; a connection closed after reading b'' or a reset stayed in w_list and
 * the next send() on the closed socket killed the server: closing forgets it
 * everywhere, after its pending replies are sent; a reset or an error while
 * sending closes that connection only, and writing to a peer that has gone
 * never raises SIGPIPE; a successful accept() skipped the polling of every
 * other socket for that turn: every turn polls them all; a client that sends
 * and never reads is no longer read from while QUEUE_LIMIT bytes wait for it;
 * SIGINT/SIGTERM end it cleanly.
 *
 *   nonblocking_echo_server [--host H] [--port P] [--evloop] [--seconds S] [--max-idle S] [--quiet]
 */
#include "common.h"

#include <time.h>

static const char usage[] =
    "usage: nonblocking_echo_server [--host H] [--port P (0: any, printed first)] [--evloop]\n"
    "                               [--seconds S] [--max-idle S] [--quiet]\n"
    "Upper-case echo server polling non-blocking sockets in a loop, no multiplexer (S8),\n"
    "default 127.0.0.1:8083; --evloop: the same service on evloop. Stops after --seconds S,\n"
    "or after --max-idle S seconds with no connection open and no byte moved.\n";

static volatile sig_atomic_t stop_signal;

static void on_stop(int signo) {
    stop_signal = signo;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* When to stop, from --seconds and --max-idle; shared by both modes. */
struct bounds {
    double started, last_activity;
};

static bool out_of_time(const struct options *o, const struct bounds *b, size_t open) {
    double now = now_s();
    if (o->seconds && now - b->started >= (double)o->seconds) return true;
    return o->max_idle_s && open == 0 && now - b->last_activity >= (double)o->max_idle_s;
}

static void print_lists(size_t readers, size_t writers) {
    say("doing other work");
    say("rlist: %zu", readers);
    say("wlist: %zu", writers);
}

/* ---- S8: the busy loop ---------------------------------------------------- */

/* A connection of the busy loop: it is in r_list while open, and "in
 * w_list" while replies wait in `out`. */
struct polled {
    int fd;
    bool eof; /* recv() returned 0: close once `out` is sent */
    struct outq out;
};

/* recv() on one connection; upper-cased data is queued. Returns false when
 * the connection is to be closed now. */
static bool poll_read(struct polled *p, bool *moved) {
    char data[1024];
    if (p->eof || p->out.bytes >= QUEUE_LIMIT) return true;
    ssize_t n = recv(p->fd, data, sizeof data, 0);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR; /* "BlockingIOError: next socket" */
    *moved = true;
    if (n == 0) {
        p->eof = true;
        return p->out.head != NULL;
    }
    for (ssize_t i = 0; i < n; i++) data[i] = (char)toupper((unsigned char)data[i]);
    return outq_push(&p->out, data, (size_t)n) == 0;
}

/* send() of what waits. Returns false when the connection is to be closed. */
static bool poll_write(struct polled *p, bool *moved) {
    if (!p->out.head) return !p->eof;
    size_t before = p->out.bytes;
    if (outq_flush(&p->out, p->fd) < 0) return false;
    *moved = *moved || p->out.bytes != before;
    return p->out.head || !p->eof;
}

static int run_busy(const struct options *o, int listen_fd) {
    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct polled *conns = NULL;
    size_t len = 0, cap = 0;
    struct bounds b = {.started = now_s(), .last_activity = now_s()};
    while (!stop_signal && !out_of_time(o, &b, len)) {
        bool moved = false;
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            if (len == cap) {
                size_t grown_cap = cap ? 2 * cap : 16;
                struct polled *grown = realloc(conns, grown_cap * sizeof *grown);
                if (!grown) {
                    close(fd);
                    continue;
                }
                conns = grown;
                cap = grown_cap;
            }
            conns[len++] = (struct polled){.fd = fd};
            moved = true;
        } else {
            size_t writers = 0;
            for (size_t i = 0; i < len; i++) writers += conns[i].out.head != NULL;
            print_lists(len, writers);
        }
        size_t kept = 0;
        for (size_t i = 0; i < len; i++) {
            struct polled *p = &conns[i];
            if (poll_read(p, &moved) && poll_write(p, &moved)) {
                conns[kept++] = *p;
                continue;
            }
            close(p->fd);
            outq_clear(&p->out);
        }
        len = kept;
        if (moved) b.last_activity = now_s();
    }
    for (size_t i = 0; i < len; i++) {
        close(conns[i].fd);
        outq_clear(&conns[i].out);
    }
    free(conns);
    return 0;
}

/* ---- the same service on evloop -------------------------------------------- */

struct twin {
    struct server server;
    struct bounds bounds;
    size_t open;
};

static void twin_close(struct twin *t, struct conn *c) {
    close_conn(c);
    t->open--;
}

static void on_twin_client(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    struct conn *c = userdata;
    struct twin *t = (struct twin *)c->server; /* server is the twin's first member */
    (void)loop;
    t->bounds.last_activity = now_s();
    if ((revents & EVL_WRITE) && outq_flush(&c->out, fd) < 0) {
        twin_close(t, c);
        return;
    }
    if (revents & (EVL_READ | EVL_ERROR | EVL_HUP) && !c->eof) {
        char data[1024];
        ssize_t n = recv(fd, data, sizeof data, 0);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            twin_close(t, c);
            return;
        }
        if (n == 0) c->eof = true;
        if (n > 0) {
            for (ssize_t i = 0; i < n; i++) data[i] = (char)toupper((unsigned char)data[i]);
            ssize_t sent = c->out.head ? 0 : send(fd, data, (size_t)n, MSG_NOSIGNAL);
            if (sent < 0 && errno != EAGAIN && errno != EINTR) {
                twin_close(t, c);
                return;
            }
            if (sent < 0) sent = 0;
            if (sent < n && outq_push(&c->out, data + sent, (size_t)(n - sent)) < 0) {
                twin_close(t, c);
                return;
            }
        }
    }
    if (c->eof && !c->out.head) twin_close(t, c);
    else set_interest(c, queue_interest(c));
}

static void on_twin_accept(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    struct twin *t = userdata;
    (void)loop;
    (void)fd;
    (void)revents;
    while (server_accept(&t->server, on_twin_client)) t->open++;
    t->bounds.last_activity = now_s();
}

/* The original's "other work", once a second instead of without end; and
 * the check of --seconds and --max-idle. */
static void on_other_work(evl_loop *loop, uint64_t timer_id, void *userdata) {
    struct twin *t = userdata;
    (void)timer_id;
    size_t writers = 0;
    for (size_t fd = 0; fd < t->server.table_len; fd++)
        writers += t->server.by_fd[fd] && t->server.by_fd[fd]->out.head;
    print_lists(t->open, writers);
    if (out_of_time(&t->server.opt, &t->bounds, t->open)) evl_stop(loop);
}

static int run_twin(struct twin *t) {
    struct server *s = &t->server;
    int rc = evl_loop_new(&s->loop);
    if (rc < 0) die("evl_loop_new", rc);
    watch_stop_signals(s->loop, &s->stopping);
    t->bounds = (struct bounds){.started = now_s(), .last_activity = now_s()};
    if ((rc = evl_register(s->loop, s->listen_fd, EVL_READ, on_twin_accept, t)) < 0) die("evl_register", rc);
    if ((rc = evl_timer_start(s->loop, 1000, 1000, on_other_work, t, NULL)) < 0) die("evl_timer_start", rc);
    rc = evl_run(s->loop);
    if (rc < 0) die("evl_run", rc);
    return server_finish(s);
}

int main(int argc, char **argv) {
    struct twin t = {.server = {.listen_fd = -1}};
    struct server *s = &t.server;
    parse_options(argc, argv, OPT_EVLOOP | OPT_SECONDS | OPT_MAX_IDLE, 8083, usage, &s->opt);
    s->listen_fd = open_listener(&s->opt, s->local, &s->local_port);
    if (s->opt.evloop) return run_twin(&t);
    int status = run_busy(&s->opt, s->listen_fd);
    close(s->listen_fd);
    return status;
}
