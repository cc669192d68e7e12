/* select_echo_server: the articles' select() echo servers, on evloop:
 *   S1 (default), output queues, 127.0.0.1:10000; S3 with --upper;
 *   S2 (--simple), replies sent straight back, no output queues, 127.0.0.1:9990;
 *   S4 (--dict), a dict of queues, a socket leaves "outputs" as soon as a
 *      message is sent, 127.0.0.1:9000.
 *
 * The originals keep three lists (inputs, outputs, exceptional) and call
 * select() on them every turn. Here the loop keeps the lists: a connection is
 * "in inputs" while it is registered for EVL_READ and "in outputs" while
 * EVL_WRITE is in its interest, which is exactly while its queue is not
 * empty. Each turn is one evl_poll: S1 prints "waiting for the next event"
 * before it, S2 and S4 print the three lists it returned, as the originals do.
 *
 * What the originals get wrong, done right: a partial send() leaves the rest
 * of the message at the front of the queue (S2 queues it: the only queue it
 * has); S2 replied on the last accepted socket, not the one that sent: the
 * reply goes to the sender; end-of-file closes the connection after its
 * queued replies are sent (S1 dropped them, S2 and S4 never noticed it and
 * spun on a socket that reads b'' forever); a reset or an error closes that
 * connection only (S4 forgot to close it, and failed with KeyError when a
 * socket was both readable and exceptional); writing to a peer that has gone
 * closes that connection instead of killing the server with SIGPIPE; a client
 * that sends and never reads is no longer read from once QUEUE_LIMIT bytes
 * wait for it.
 *
 *   select_echo_server [--host H] [--port P] [--upper] [--simple | --dict] [--quiet]
 */
#include "common.h"

static const char usage[] =
    "usage: select_echo_server [--host H] [--port P (0: any, printed first)] [--upper] [--simple | --dict] [--quiet]\n"
    "Echo server with per-connection output queues (S1; S3 with --upper), default 127.0.0.1:10000;\n"
    "--simple: replies sent at once, no output queues (S2), port 9990;\n"
    "--dict: a dict of queues, outputs left once sent (S4), port 9000.\n";

/* Which of the articles' scripts this run mirrors. */
static enum { S1, S2, S4 } script;

/* S2 and S4 say this of a reset or an error; S1 its own line. */
static const char *exceptional(void) {
    return script == S1 ? "handling exceptional condition" : "client disconnected";
}

/* Closes `c`; returns false, meaning "`c` is gone". */
static bool drop(struct conn *c, const char *why) {
    if (why && script == S1) say("%s for %s", why, c->peer);
    else if (why) say("%s %s", why, c->peer);
    close_conn(c);
    return false;
}

/* Each handler returns whether `c` is still open. */
static bool on_readable(struct conn *c) {
    struct server *s = c->server;
    char data[1024], reply[sizeof data + REPLY_EXTRA];
    ssize_t n = recv(c->fd, data, sizeof data, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (n < 0) return drop(c, exceptional());
    if (n == 0) {
        if (script == S1) say("closing %s after reading no data", c->peer);
        if (!c->out.head) return drop(c, script == S1 ? NULL : "client disconnected");
        c->eof = true; /* S1 dropped the replies still queued: send them first */
        set_interest(c, queue_interest(c));
        return true;
    }
    if (script == S1) say("received \"%s\" from %s", printable(data, (size_t)n, '"'), c->peer);
    else say("received data b'%s'", printable(data, (size_t)n, '\''));
    size_t len = make_reply(&s->opt, data, (size_t)n, reply);
    ssize_t sent = 0;
    /* S2 sends at once (to the sender: the original used the last accepted
     * socket), and queues only what the socket does not take. */
    if (script == S2 && !c->out.head) {
        sent = send(c->fd, reply, len, MSG_NOSIGNAL);
        if (sent < 0 && errno != EAGAIN && errno != EINTR) return drop(c, exceptional());
        if (sent < 0) sent = 0;
    }
    if ((size_t)sent < len && outq_push(&c->out, reply + sent, len - (size_t)sent) < 0)
        return drop(c, "out of memory");
    set_interest(c, queue_interest(c)); /* "add output channel for response" */
    return true;
}

static bool on_writable(struct conn *c) {
    struct chunk *next = c->out.head;
    if (next) { /* one message per writable event, as S1 and S4; S2 sends all it can */
        if (script == S1)
            say("sending \"%s\" to %s", printable(next->data + next->sent, next->len - next->sent, '"'), c->peer);
        if ((script == S2 ? outq_flush(&c->out, c->fd) : outq_send_front(&c->out, c->fd)) < 0)
            return drop(c, exceptional());
    }
    if (!c->out.head) {
        if (c->eof) return drop(c, script == S1 ? NULL : "client disconnected");
        /* S1 learnt this at the next writable event; the queue knows it
         * now, so EVL_WRITE goes at once. S4 "removes it from outputs". */
        if (script == S1) say("output queue for %s is empty", c->peer);
    }
    /* Reading resumes once the queue is under the limit again. */
    set_interest(c, queue_interest(c));
    return true;
}

static void on_client(struct conn *c, uint32_t revents) {
    if ((revents & EVL_ERROR) || ((revents & EVL_HUP) && !(revents & EVL_READ)))
        drop(c, exceptional());
    else if (!(revents & EVL_READ) || on_readable(c))
        if (revents & EVL_WRITE) on_writable(c);
}

static void on_listener(struct server *s) {
    struct conn *c;
    while ((c = server_accept(s, NULL)) != NULL) say(script == S1 ? "new connection from %s" : "new connection %s", c->peer);
}

/* S2 and S4 print what select() returned: the readable, writable and
 * exceptional sockets, here by address (the listener by its own). */
static void print_lists(const struct server *s, const evl_event *events, int n) {
    static const uint32_t kinds[3] = {EVL_READ, EVL_WRITE, EVL_ERROR | EVL_HUP};
    char line[4096];
    size_t at = 0;
    for (int k = 0; k < 3; k++) {
        at += (size_t)snprintf(line + at, sizeof line - at, k ? " [" : "[");
        const char *sep = "";
        for (int i = 0; i < n && at < sizeof line - ADDR_LEN - 8; i++) {
            if (!(events[i].revents & kinds[k])) continue;
            const struct conn *c = events[i].userdata;
            at += (size_t)snprintf(line + at, sizeof line - at, "%s%s", sep, c ? c->peer : s->local);
            sep = ", ";
        }
        at += (size_t)snprintf(line + at, sizeof line - at, "]");
    }
    say("%s", line);
}

int main(int argc, char **argv) {
    script = has_flag(argc, argv, "--simple") ? S2 : has_flag(argc, argv, "--dict") ? S4 : S1;
    struct server s;
    server_start(&s, argc, argv, OPT_UPPER | OPT_SIMPLE | OPT_DICT, script == S2 ? 9990 : script == S4 ? 9000 : 10000,
                 usage);
    if (s.opt.simple && s.opt.dict) {
        fputs("--simple and --dict are two different servers: pick one\n", stderr);
        usage_exit(usage, 2);
    }
    if (script == S1) say("starting up on %s port %d", s.opt.host, s.local_port);
    int rc = evl_register(s.loop, s.listen_fd, EVL_READ, NULL, NULL);
    if (rc < 0) die("evl_register", rc);
    evl_event events[64];
    while (!s.stopping) {
        if (script == S1) say("\nwaiting for the next event");
        int n = evl_poll(s.loop, -1, events, 64);
        if (n == -EINTR || s.stopping) continue;
        if (n < 0) die("evl_poll", n);
        if (script != S1) print_lists(&s, events, n);
        /* Handling an event closes at most its own connection, never another
         * one of the batch, so every event here is for an open connection. */
        for (int i = 0; i < n; i++) {
            if (events[i].fd == s.listen_fd) on_listener(&s);
            else on_client(events[i].userdata, events[i].revents);
        }
    }
    return server_finish(&s);
}
