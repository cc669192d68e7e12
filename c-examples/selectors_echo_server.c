/* selectors_echo_server: the articles' selectors echo server (S5; S6 with
 * --sb), on evloop. This is the one to copy.
 *
 * The original registers the listener with an `accept` callback and every
 * connection with a `read` callback (`key.data`), and its main loop calls
 * them: that is evloop's model as it is, so here the callbacks are evloop
 * callbacks with the connection as userdata, and evl_run is the main loop.
 *
 * Why copy this one rather than epoll_echo_server: a reply is sent straight
 * from the read callback, and only what the socket does not take is queued
 * (then, and only then, EVL_WRITE is asked for). An exchange costs one
 * recv() and one send(), no epoll_ctl at all. S7's pattern (modify to
 * EPOLLOUT after every read, back to EPOLLIN after every send) costs two
 * more syscalls per message and a trip around the loop in between.
 *
 * What the original gets wrong, done right: a partial send() no longer loses
 * the rest (it is queued and sent when the socket is writable); writing to a
 * peer that has gone closes that connection instead of killing the server
 * with SIGPIPE; while QUEUE_LIMIT bytes wait for a client that does not read,
 * the server stops reading from it.
 *
 *   selectors_echo_server [--host H] [--port P] [--sb] [--quiet]
 */
#include "common.h"

static const char usage[] =
    "usage: selectors_echo_server [--host H] [--port P (0: any, printed first)] [--sb] [--quiet]\n"
    "Echo server with accept/read callbacks (S5), default 127.0.0.1:10000;\n"
    "--sb replies upper + \"_SB\" on port 8088 (S6).\n";

/* How the original prints a connection (Python's socket repr, shortened). */
static const char *repr(const struct conn *c) {
    static char text[3 * ADDR_LEN];
    snprintf(text, sizeof text, "<socket fd=%d, laddr=%s, raddr=%s>", c->fd, c->server->local, c->peer);
    return text;
}

static void close_client(struct conn *c) {
    say("closing %s", repr(c));
    close_conn(c);
}

/* Sends `reply`, or queues it behind what is queued already. What the socket
 * does not take now waits for EVL_WRITE. Returns false if `c` was closed. */
static bool reply(struct conn *c, const char *data, size_t len) {
    if (!c->out.head) {
        ssize_t sent = send(c->fd, data, len, MSG_NOSIGNAL);
        if (sent == (ssize_t)len) return true; /* the usual case: all of it */
        if (sent < 0 && errno != EAGAIN && errno != EINTR) {
            close_client(c);
            return false;
        }
        if (sent > 0) {
            data += sent;
            len -= (size_t)sent;
        }
    }
    if (outq_push(&c->out, data, len) < 0) {
        close_client(c);
        return false;
    }
    set_interest(c, queue_interest(c));
    return true;
}

static void read_client(struct conn *c) {
    struct server *s = c->server;
    char data[1024], upper[sizeof data + REPLY_EXTRA];
    ssize_t n = recv(c->fd, data, sizeof data, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n == 0 && c->out.head) { /* end of stream: send what is queued, then close */
        c->eof = true;
        set_interest(c, queue_interest(c));
        return;
    }
    if (n <= 0) { /* end of stream, or reset: S6 closes on any error */
        close_client(c);
        return;
    }
    say("echoing b'%s' to %s", printable(data, (size_t)n, '\''), repr(c));
    if (s->opt.upper) reply(c, upper, make_reply(&s->opt, data, (size_t)n, upper));
    else reply(c, data, (size_t)n);
}

static void on_client(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    struct conn *c = userdata;
    (void)loop;
    (void)fd;
    if (revents & EVL_WRITE) {
        if (outq_flush(&c->out, c->fd) < 0 || (c->eof && !c->out.head)) {
            close_client(c);
            return;
        }
        set_interest(c, queue_interest(c));
    }
    if (revents & (EVL_READ | EVL_ERROR | EVL_HUP)) read_client(c); /* recv() reports the error */
}

static void on_accept(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    struct server *s = userdata;
    struct conn *c;
    (void)loop;
    (void)fd;
    (void)revents;
    while ((c = server_accept(s, on_client)) != NULL) say("accepted %s from %s", repr(c), c->peer);
}

int main(int argc, char **argv) {
    bool sb = false;
    for (int i = 1; i < argc; i++) sb = sb || strcmp(argv[i], "--sb") == 0;
    struct server s;
    server_start(&s, argc, argv, OPT_SB, sb ? 8088 : 10000, usage);
    int rc = evl_register(s.loop, s.listen_fd, EVL_READ, on_accept, &s);
    if (rc < 0) die("evl_register", rc);
    rc = evl_run(s.loop);
    if (rc < 0) die("evl_run", rc);
    return server_finish(&s);
}
