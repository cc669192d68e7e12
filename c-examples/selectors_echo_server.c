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

/* Queues what send() did not take of `reply` (`sent` bytes of it went, or
 * -1), and asks for EVL_WRITE. Closes `c` if the peer has gone. */
COLD static void queue_rest(struct conn *c, const char *reply, size_t len, ssize_t sent) {
    if (sent < 0 && errno != EAGAIN && errno != EINTR) {
        close_client(c);
        return;
    }
    if (sent > 0) {
        reply += sent;
        len -= (size_t)sent;
    }
    if (outq_push(&c->out, reply, len) < 0) {
        close_client(c);
        return;
    }
    set_interest(c, queue_interest(c));
}

/* recv() returned 0 or failed. */
COLD static void end_of_input(struct conn *c, ssize_t n) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0 || !c->out.head) { /* S6 closes on any error */
        close_client(c);
        return;
    }
    c->eof = true; /* end of stream: send what is queued, then close */
    set_interest(c, queue_interest(c));
}

/* Anything but plain readability: sends what is queued if the socket is
 * writable. Returns whether to read now (errors are read, from recv()). */
COLD static bool before_reading(struct conn *c, uint32_t revents) {
    if (revents & EVL_WRITE) {
        if (outq_flush(&c->out, c->fd) < 0 || (c->eof && !c->out.head)) {
            close_client(c);
            return false;
        }
        set_interest(c, queue_interest(c));
    }
    return revents & (EVL_READ | EVL_ERROR | EVL_HUP);
}

/* The reply when it is logged, transformed (--sb), or has to wait behind
 * queued bytes. */
COLD static void reply_slowly(struct conn *c, const char *data, size_t len) {
    char upper[1024 + REPLY_EXTRA];
    say("echoing b'%s' to %s", printable(data, len, '\''), repr(c));
    if (c->server->opt.upper) {
        len = make_reply(&c->server->opt, data, len, upper);
        data = upper;
    }
    ssize_t sent = c->out.head ? 0 : send(c->fd, data, len, MSG_NOSIGNAL);
    if (sent != (ssize_t)len) queue_rest(c, data, len, sent);
}

/* Set when a reply is the request as it is and nothing is logged: then the
 * usual exchange is one recv() and one send(), and nothing else. */
static bool plain_echo;

static void on_client(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    struct conn *c = userdata;
    char data[1024];
    (void)loop;
    if (revents != EVL_READ && !before_reading(c, revents)) return;
    ssize_t n = recv(fd, data, sizeof data, 0);
    if (n <= 0) {
        end_of_input(c, n);
        return;
    }
    if (!plain_echo || c->out.head) {
        reply_slowly(c, data, (size_t)n);
        return;
    }
    ssize_t sent = send(fd, data, (size_t)n, MSG_NOSIGNAL);
    if (sent != n) queue_rest(c, data, (size_t)n, sent);
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
    struct server s;
    server_start(&s, argc, argv, OPT_SB, has_flag(argc, argv, "--sb") ? 8088 : 10000, usage);
    plain_echo = quiet && !s.opt.upper;
    int rc = evl_register(s.loop, s.listen_fd, EVL_READ, on_accept, &s);
    if (rc < 0) die("evl_register", rc);
    rc = evl_run(s.loop);
    if (rc < 0) die("evl_run", rc);
    return server_finish(&s);
}
