/* chat_server: the articles' chat server (S9), on evloop. 127.0.0.1:8801.
 *
 * Each message a client sends is shown to the operator, who types the reply
 * at the prompt "reply to client #N>>>"; the reply goes to that client. The
 * original calls input() inside its select() loop, so while the operator
 * types, no one else is accepted, read or answered. Here standard input is
 * one more registration in the same loop: the server goes on accepting,
 * reading and sending while the operator thinks. The messages wait in the
 * order they came and the prompt names the oldest; a line "#N text" answers
 * client #N out of turn, so no client waits on another's reply.
 *
 * Like the original, each turn of the loop (at most 5 s when nothing
 * happens) prints how many sources were ready, and after it ">>" and which.
 *
 * What the original gets wrong, done right: a client that leaves (recv()
 * returning b'' or a reset) is closed and forgotten, instead of being asked
 * about and sent to; numbers are given once per client (the original used
 * the index in its list, which shifts when one leaves); an empty reply line
 * sends nothing, so the client would wait forever: it is refused; the end of
 * standard input is not a crash (EOFError): the server goes on serving,
 * without an operator; a partial send() queues the rest; a peer that has gone
 * never raises SIGPIPE; SIGINT/SIGTERM end it cleanly.
 *
 *   chat_server [--host H] [--port P] [--quiet]
 */
#include "common.h"

static const char usage[] =
    "usage: chat_server [--host H] [--port P (0: any, printed first)] [--quiet]\n"
    "Chat server (S9), default 127.0.0.1:8801: the operator answers each message on stdin,\n"
    "at the prompt \"reply to client #N>>>\", or any client with a line \"#N text\".\n";

struct chat {
    struct server server;
    long *number_by_fd; /* each client's number, given once, from 1 */
    size_t numbers_len;
    long next_number;
    long *asking; /* numbers of the clients whose message waits for a reply, oldest first */
    size_t asking_len, asking_cap;
    long prompted; /* the number the prompt on screen names, 0: no prompt */
    char *typed;   /* what the operator typed since the last newline */
    size_t typed_len, typed_cap;
    bool operator_gone;
};

static struct conn *client(struct chat *ch, long number) {
    for (size_t fd = 0; fd < ch->server.table_len && fd < ch->numbers_len; fd++)
        if (ch->server.by_fd[fd] && ch->number_by_fd[fd] == number) return ch->server.by_fd[fd];
    return NULL;
}

/* Forgets the oldest waiting message of client `number`. */
static void answered(struct chat *ch, long number) {
    for (size_t i = 0; i < ch->asking_len; i++) {
        if (ch->asking[i] != number) continue;
        memmove(ch->asking + i, ch->asking + i + 1, (ch->asking_len - i - 1) * sizeof *ch->asking);
        ch->asking_len--;
        return;
    }
}

/* The prompt for the oldest message waiting, if it is not on screen yet.
 * Shown even with --quiet: the operator needs it. */
static void prompt(struct chat *ch) {
    if (ch->operator_gone || !ch->asking_len || ch->prompted == ch->asking[0]) return;
    ch->prompted = ch->asking[0];
    printf("reply to client #%ld>>>", ch->prompted);
    fflush(stdout);
}

/* Ends a prompt line left open, before another line is printed. */
static void interrupt_prompt(struct chat *ch) {
    if (!ch->prompted) return;
    putchar('\n');
    ch->prompted = 0;
}

static void leave(struct chat *ch, struct conn *c) {
    long number = ch->number_by_fd[c->fd];
    interrupt_prompt(ch);
    say("client #%ld left", number);
    size_t kept = 0;
    for (size_t i = 0; i < ch->asking_len; i++)
        if (ch->asking[i] != number) ch->asking[kept++] = ch->asking[i];
    ch->asking_len = kept;
    close_conn(c);
    prompt(ch);
}

static void on_client_readable(struct chat *ch, struct conn *c) {
    char data[1024];
    ssize_t n = recv(c->fd, data, sizeof data, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        leave(ch, c);
        return;
    }
    long number = ch->number_by_fd[c->fd];
    interrupt_prompt(ch);
    say("client #%ld: %s", number, printable(data, (size_t)n, 0));
    if (ch->asking_len == ch->asking_cap) {
        size_t cap = ch->asking_cap ? 2 * ch->asking_cap : 16;
        long *grown = realloc(ch->asking, cap * sizeof *grown);
        if (!grown) die("realloc", -ENOMEM);
        ch->asking = grown;
        ch->asking_cap = cap;
    }
    ch->asking[ch->asking_len++] = number;
    prompt(ch);
}

static void on_client(struct chat *ch, struct conn *c, uint32_t revents) {
    if (revents & EVL_WRITE) {
        if (outq_flush(&c->out, c->fd) < 0) {
            leave(ch, c);
            return;
        }
        set_interest(c, queue_interest(c));
    }
    if (revents & (EVL_READ | EVL_ERROR | EVL_HUP)) on_client_readable(ch, c);
}

/* Sends `text` to client `number` (sent at once; the rest queued). */
static void reply(struct chat *ch, long number, const char *text, size_t len) {
    struct conn *c = client(ch, number);
    if (!c) {
        say("there is no client #%ld", number);
        return;
    }
    answered(ch, number);
    ssize_t sent = c->out.head ? 0 : send(c->fd, text, len, MSG_NOSIGNAL);
    if (sent < 0 && errno != EAGAIN && errno != EINTR) {
        leave(ch, c);
        return;
    }
    if (sent < 0) sent = 0;
    if ((size_t)sent < len && outq_push(&c->out, text + sent, len - (size_t)sent) < 0) {
        leave(ch, c);
        return;
    }
    set_interest(c, queue_interest(c));
}

/* One line the operator typed: "#N text" answers client N, anything else the
 * oldest message waiting. */
static void on_line(struct chat *ch, char *line, size_t len) {
    long number = ch->asking_len ? ch->asking[0] : 0;
    if (len > 1 && line[0] == '#') {
        char *end;
        long given = strtol(line + 1, &end, 10);
        if (end > line + 1 && *end == ' ') {
            number = given;
            len -= (size_t)(end + 1 - line);
            line = end + 1;
        }
    }
    ch->prompted = 0; /* the operator's newline ended the prompt line */
    if (len == 0) say("an empty reply would send nothing: type some text");
    else if (number == 0) say("no message waits for a reply (\"#N text\" writes to client N)");
    else reply(ch, number, line, len);
    prompt(ch);
}

static void on_stdin(struct chat *ch) {
    if (ch->typed_cap - ch->typed_len < 4096) {
        size_t cap = ch->typed_cap ? 2 * ch->typed_cap : 8192;
        char *grown = realloc(ch->typed, cap);
        if (!grown) die("realloc", -ENOMEM);
        ch->typed = grown;
        ch->typed_cap = cap;
    }
    ssize_t n = read(STDIN_FILENO, ch->typed + ch->typed_len, 4096);
    if (n < 0 && errno == EINTR) return;
    if (n <= 0) { /* the end of input; a last line without its newline counts */
        if (ch->typed_len) on_line(ch, ch->typed, ch->typed_len);
        interrupt_prompt(ch);
        say("end of standard input: no more replies; still serving");
        evl_unregister(ch->server.loop, STDIN_FILENO);
        ch->operator_gone = true;
        return;
    }
    ch->typed_len += (size_t)n;
    char *start = ch->typed, *newline, *end = ch->typed + ch->typed_len;
    while ((newline = memchr(start, '\n', (size_t)(end - start))) != NULL) {
        size_t len = (size_t)(newline - start);
        if (len && start[len - 1] == '\r') len--;
        on_line(ch, start, len);
        start = newline + 1;
    }
    ch->typed_len = (size_t)(end - start);
    memmove(ch->typed, start, ch->typed_len);
}

static void on_accept(struct chat *ch) {
    struct server *s = &ch->server;
    struct conn *c;
    while ((c = server_accept(s, NULL)) != NULL) {
        if ((size_t)c->fd >= ch->numbers_len) {
            size_t len = s->table_len;
            long *grown = realloc(ch->number_by_fd, len * sizeof *grown);
            if (!grown) {
                close_conn(c);
                continue;
            }
            ch->number_by_fd = grown;
            ch->numbers_len = len;
        }
        ch->number_by_fd[c->fd] = ++ch->next_number;
        interrupt_prompt(ch);
        say("client #%ld: <socket fd=%d, laddr=%s, raddr=%s>", ch->next_number, c->fd, s->local, c->peer);
        prompt(ch);
    }
}

/* The original's print('>>', r): what is ready this turn (printed before
 * the events are handled, while every connection named is still open). */
static void print_ready(struct chat *ch, const evl_event *events, int n) {
    char line[2048];
    size_t at = (size_t)snprintf(line, sizeof line, ">> [");
    for (int i = 0; i < n && at < sizeof line - ADDR_LEN - 8; i++) {
        const struct conn *c = events[i].userdata;
        const char *name = events[i].fd == STDIN_FILENO ? "<stdin>" : c ? c->peer : ch->server.local;
        at += (size_t)snprintf(line + at, sizeof line - at, "%s%s", i ? ", " : "", name);
    }
    snprintf(line + at, sizeof line - at, "]");
    say("%s", line);
}

int main(int argc, char **argv) {
    struct chat ch = {0};
    struct server *s = &ch.server;
    server_start(s, argc, argv, 0, 8801, usage);
    int rc = evl_register(s->loop, s->listen_fd, EVL_READ, NULL, NULL);
    if (rc < 0) die("evl_register", rc);
    rc = evl_register(s->loop, STDIN_FILENO, EVL_READ, NULL, NULL);
    if (rc < 0) { /* a regular file or /dev/null: epoll cannot watch it */
        say("standard input cannot be watched (%s): no operator, no replies", evl_strerror(rc));
        ch.operator_gone = true;
    }
    evl_event events[64];
    while (!s->stopping) {
        int n = evl_poll(s->loop, 5000, events, 64); /* select(inputs, [], [], 5) */
        if (n == -EINTR || s->stopping) continue;
        if (n < 0) die("evl_poll", n);
        if (!ch.prompted) { /* print(len(r)), unless it would break the operator's line */
            say("%d", n);
            print_ready(&ch, events, n);
        }
        /* Handling an event closes at most its own connection, never another
         * one of the batch, so every event here is for an open connection. */
        for (int i = 0; i < n; i++) {
            if (events[i].fd == s->listen_fd) on_accept(&ch);
            else if (events[i].fd == STDIN_FILENO) on_stdin(&ch);
            else on_client(&ch, events[i].userdata, events[i].revents);
        }
    }
    interrupt_prompt(&ch);
    if (!ch.operator_gone) evl_unregister(s->loop, STDIN_FILENO);
    free(ch.number_by_fd);
    free(ch.asking);
    free(ch.typed);
    return server_finish(s);
}
