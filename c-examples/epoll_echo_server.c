/* epoll_echo_server: the articles' select.epoll echo server (S7), on evloop.
 *
 * Written the way S7 is: one loop that polls (evl_poll, like epoll.poll with
 * a 10 s timeout) and looks at each (fd, events) pair itself, with no
 * callbacks. A connection is registered for EVL_READ; after every read its
 * interest is modified to EVL_WRITE, and after the queue is found empty, back
 * to EVL_READ, exactly as in the original.
 *
 * That modify-per-message pattern is what S7 teaches, so it stays, but it
 * costs two epoll_ctl calls and an extra trip around the loop per message.
 * To write a server, copy selectors_echo_server.c instead: it sends the reply
 * from the read callback and asks for EVL_WRITE only when the socket is full.
 *
 * What the original gets wrong, done right: recv() returning 0 closes the
 * connection (S7 waited for EPOLLHUP, which a peer that only shuts down its
 * write side never raises, so such a connection stayed readable forever); a
 * partial send() keeps the rest in front of the queue; "sending" logs the
 * message sent (the original printed the last one received); writing to a
 * peer that has gone closes that connection instead of killing the server
 * with SIGPIPE; SIGINT/SIGTERM end the loop and the original's clean-up code
 * (unregister the listener, close epoll, close the listener) runs.
 *
 *   epoll_echo_server [--host H] [--port P] [--timeout S] [--quiet]
 */
#include "common.h"

static const char usage[] =
    "usage: epoll_echo_server [--host H] [--port P (0: any, printed first)] [--timeout S] [--quiet]\n"
    "Echo server on a level-triggered poll loop (S7), default 127.0.0.1:8888;\n"
    "reports \"no active connections\" after S seconds idle (default 10).\n";

static void client_closed(struct conn *c) {
    say("client closed");
    close_conn(c);
}

static void on_readable(struct conn *c) {
    char data[1024];
    ssize_t n = recv(c->fd, data, sizeof data, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        client_closed(c);
        return;
    }
    say("received %s from %s", printable(data, (size_t)n, 0), c->peer);
    if (outq_push(&c->out, data, (size_t)n) < 0) {
        client_closed(c);
        return;
    }
    set_interest(c, EVL_WRITE); /* epoll.modify(fd, select.EPOLLOUT) */
}

static void on_writable(struct conn *c) {
    struct chunk *msg = c->out.head;
    if (!msg) {
        say("%s queue empty", c->peer);
        set_interest(c, EVL_READ); /* epoll.modify(fd, select.EPOLLIN) */
        return;
    }
    say("sending %s to %s", printable(msg->data + msg->sent, msg->len - msg->sent, 0), c->peer);
    if (outq_send_front(&c->out, c->fd) < 0) client_closed(c);
}

static void handle(struct server *s, const evl_event *ev) {
    if (ev->fd == s->listen_fd) {
        struct conn *c;
        while ((c = server_accept(s, NULL)) != NULL) say("new connection %s", c->peer);
        return;
    }
    struct conn *c = ev->userdata;
    if (ev->revents & EVL_ERROR) client_closed(c);
    else if (ev->revents & EVL_READ) on_readable(c); /* before HUP: data first */
    else if (ev->revents & EVL_HUP) client_closed(c);
    else if (ev->revents & EVL_WRITE) on_writable(c);
}

int main(int argc, char **argv) {
    struct server s;
    server_start(&s, argc, argv, OPT_TIMEOUT, 8888, usage);
    int timeout_ms = (int)(s.opt.timeout_s ? s.opt.timeout_s : 10) * 1000;
    say("server started, listening on %s", s.local);
    int rc = evl_register(s.loop, s.listen_fd, EVL_READ, NULL, NULL);
    if (rc < 0) die("evl_register", rc);
    evl_event events[64];
    while (!s.stopping) {
        say("waiting for active connections");
        int n = evl_poll(s.loop, timeout_ms, events, 64);
        if (n == -EINTR || s.stopping) continue;
        if (n < 0) die("evl_poll", n);
        if (n == 0) {
            say("epoll timed out, no active connections, polling again");
            continue;
        }
        say("%d new events", n);
        /* Handling an event closes at most its own connection, never another
         * one of the batch, so every event here is for an open connection. */
        for (int i = 0; i < n; i++) handle(&s, &events[i]);
    }
    return server_finish(&s);
}
