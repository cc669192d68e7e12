/* select_echo_server: the articles' select() echo server with output queues
 * (S1; S3 with --upper), on evloop.
 *
 * The original keeps three lists (inputs, outputs, exceptional) and calls
 * select() on them every turn. Here the loop keeps the lists: a connection is
 * "in inputs" while it is registered for EVL_READ and "in outputs" while
 * EVL_WRITE is in its interest, which is exactly while its queue is not
 * empty. Each turn prints "waiting for the next event", as the original does.
 *
 * What the original gets wrong, done right: a partial send() leaves the rest
 * of the message at the front of the queue; end-of-file from a client closes
 * it after its queued replies are sent (the original dropped them); writing to a peer that has gone
 * closes that connection instead of killing the server with SIGPIPE; a
 * client that sends and never reads is no longer read from once QUEUE_LIMIT
 * bytes wait for it.
 *
 *   select_echo_server [--host H] [--port P] [--upper] [--quiet]
 */
#include "common.h"

static const char usage[] =
    "usage: select_echo_server [--host H] [--port P (0: any, printed first)] [--upper] [--quiet]\n"
    "Echo server with per-connection output queues (S1; S3 with --upper), default 127.0.0.1:10000.\n";

/* Closes `c`; returns false, meaning "`c` is gone". */
static bool drop(struct conn *c, const char *why) {
    if (why) say("%s for %s", why, c->peer);
    close_conn(c);
    return false;
}

/* Each handler returns whether `c` is still open. */
static bool on_readable(struct conn *c) {
    struct server *s = c->server;
    char data[1024], reply[sizeof data + REPLY_EXTRA];
    ssize_t n = recv(c->fd, data, sizeof data, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (n < 0) return drop(c, "handling exceptional condition");
    if (n == 0) {
        say("closing %s after reading no data", c->peer);
        if (!c->out.head) return drop(c, NULL);
        c->eof = true; /* the original dropped the replies still queued: send them first */
        set_interest(c, queue_interest(c));
        return true;
    }
    say("received \"%s\" from %s", printable(data, (size_t)n, '"'), c->peer);
    if (outq_push(&c->out, reply, make_reply(&s->opt, data, (size_t)n, reply)) < 0)
        return drop(c, "out of memory");
    set_interest(c, queue_interest(c)); /* "add output channel for response" */
    return true;
}

static bool on_writable(struct conn *c) {
    struct chunk *next = c->out.head;
    if (next) { /* one message per writable event, as the original */
        say("sending \"%s\" to %s", printable(next->data + next->sent, next->len - next->sent, '"'), c->peer);
        if (outq_send_front(&c->out, c->fd) < 0) return drop(c, "handling exceptional condition");
    }
    if (!c->out.head) {
        if (c->eof) return drop(c, NULL);
        /* The original learnt this at the next writable event; the queue
         * knows it now, so EVL_WRITE goes at once. */
        say("output queue for %s is empty", c->peer);
    }
    /* Reading resumes once the queue is under the limit again. */
    set_interest(c, queue_interest(c));
    return true;
}

static void on_client(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    struct conn *c = userdata;
    (void)loop;
    (void)fd;
    if ((revents & EVL_ERROR) || ((revents & EVL_HUP) && !(revents & EVL_READ)))
        drop(c, "handling exceptional condition");
    else if (!(revents & EVL_READ) || on_readable(c))
        if (revents & EVL_WRITE) on_writable(c);
}

static void on_listener(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    struct server *s = userdata;
    struct conn *c;
    (void)loop;
    (void)fd;
    (void)revents;
    while ((c = server_accept(s, on_client)) != NULL) say("new connection from %s", c->peer);
}

int main(int argc, char **argv) {
    struct server s;
    server_start(&s, argc, argv, OPT_UPPER, 10000, usage);
    say("starting up on %s port %d", s.opt.host, s.local_port);
    int rc = evl_register(s.loop, s.listen_fd, EVL_READ, on_listener, &s);
    if (rc < 0) die("evl_register", rc);
    while (!s.stopping) {
        say("\nwaiting for the next event");
        rc = evl_run_once(s.loop, -1);
        if (rc < 0 && rc != -EINTR) die("evl_run_once", rc);
    }
    return server_finish(&s);
}
