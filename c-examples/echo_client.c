/* echo_client: the articles' echo clients (C1, C2, C3, C4), on evloop.
 *
 * C1 opens 2 sockets; for each of its three messages ("This is the message.
 * ", "It will be sent ", "in parts.") it sends the message on every socket,
 * then reads the reply on every socket. C2 is the same with 10,000 sockets
 * (--conns 10000). C3 (--interactive) sends each line read from stdin and
 * prints the reply. C4 (--hello) sends "PID hello" on one socket and prints
 * the reply, again and again, --rounds times or for --seconds (without
 * either, until SIGINT/SIGTERM); its default port is S8's, 8083.
 *
 * What the original gets wrong, done right: it read one recv(1024) per
 * socket and took that for the whole reply; here every socket reads until
 * its whole reply has come back, and every byte is checked against what the
 * server must answer (upper case with --upper, upper + "_SB" with --sb).
 * Sends and reads are driven by the loop, so a large message (--size) never
 * deadlocks against a server that stops reading until its replies are read.
 * The exit status says whether every reply was right: 0 yes, 1 no (the first
 * difference is reported, or no reply came for --timeout seconds), 2 bad
 * arguments. (C4 read one recv(1024) and printed it, whatever it was, and
 * could only be stopped by killing it.)
 *
 * --tls speaks TLS to the server instead: each socket becomes an evloop
 * stream on which TLS is started (evl_tls_start), checking the server's
 * certificate against --ca FILE (default: the system's roots) and
 * --server-name (default: --host). The stream then does the sending and
 * queueing; replies come as EVL_STREAM_DATA and are checked the same way.
 *
 *   echo_client [--host H] [--port P] [--conns N] [--size BYTES [--independent]]
 *               [--rounds R] [--upper | --sb] [--interactive | --hello [--seconds S]]
 *               [--tls [--ca FILE] [--server-name NAME]] [--timeout S] [--quiet]
 *               [--unix PATH]
 *
 * --unix PATH connects to a Unix-domain socket instead of TCP (a leading
 * '@' names an abstract socket: "@name").
 */
#include "common.h"

#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <sys/un.h>

static const char usage[] =
    "usage: echo_client [--host H] [--port P] [--conns N] [--size BYTES [--independent]]\n"
    "                   [--rounds R] [--upper | --sb] [--interactive | --hello [--seconds S]]\n"
    "                   [--tls [--ca FILE] [--server-name NAME]] [--timeout S] [--quiet]\n"
    "                   [--unix PATH ('@name': abstract)]\n"
    "Sends the articles' three messages (or one of BYTES bytes), R times, on N sockets\n"
    "(default 2) to 127.0.0.1:10000 and checks every reply byte for byte (C1, C2);\n"
    "--interactive sends the lines read from stdin on one socket (C3);\n"
    "--hello sends \"PID hello\" on one socket to 127.0.0.1:8083 and prints each reply,\n"
    "R times, for S seconds, or until stopped (C4). Fails if no reply comes for --timeout S (60).\n"
    "--tls: over TLS, trusting --ca FILE (default: the system's roots), checking --server-name.\n";

static const char *const messages[] = {"This is the message. ", "It will be sent ", "in parts."};

struct client;

struct peer {
    int fd;
    uint64_t stream; /* --tls: the TLS stream over fd (0: none) */
    bool closed;     /* --tls: its EVL_STREAM_CLOSED came */
    uint32_t interest;
    char name[ADDR_LEN];   /* getsockname(), as C1 prints it */
    size_t sent, received; /* progress of the current exchange */
    long repeats_left;     /* --independent: exchanges still to make */
    struct client *client;
};

struct client {
    evl_loop *loop;
    evl_tls_config *tls; /* --tls */
    struct options opt;
    struct peer *peers;
    long peer_count;
    const char *message; /* what every peer sends in this exchange */
    size_t message_len;
    char *expected; /* what every peer must get back */
    size_t expected_len, expected_cap;
    long waiting; /* peers whose reply is not complete yet */
    long replies, replies_at_last_tick; /* complete replies, for the --timeout watchdog */
    bool failed, stopping, time_up;
};

static void fail(struct client *cl, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cl->failed = true;
    evl_stop(cl->loop);
}

static void set_peer_interest(struct peer *p, uint32_t interest) {
    if (p->interest == interest) return;
    evl_modify(p->client->loop, p->fd, interest);
    p->interest = interest;
}

/* Sends what the socket takes of the rest of the message; asks for
 * EVL_WRITE while some is left. */
static void send_more(struct peer *p) {
    struct client *cl = p->client;
    if (p->stream) { /* the stream sends, or queues what the socket does not take */
        int rc = evl_stream_write(cl->loop, p->stream, cl->message, cl->message_len);
        if (rc < 0) fail(cl, "%s: evl_stream_write: %s", p->name, evl_strerror(rc));
        p->sent = cl->message_len;
        return;
    }
    while (p->sent < cl->message_len) {
        ssize_t n = send(p->fd, cl->message + p->sent, cl->message_len - p->sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (n < 0) {
            fail(cl, "%s: send: %s", p->name, strerror(errno));
            return;
        }
        p->sent += (size_t)n;
    }
    set_peer_interest(p, EVL_READ | (p->sent < cl->message_len ? EVL_WRITE : 0));
}

/* The first byte of `data` that is not what `expected` says, or `len`. */
static size_t first_difference(const char *data, const char *expected, size_t len) {
    size_t i = 0;
    while (i < len && data[i] == expected[i]) i++;
    return i;
}

static void server_closed(struct peer *p) {
    struct client *cl = p->client;
    say("closing socket %s", p->name);
    fail(cl, "%s: the server closed the connection after %zu of %zu reply bytes", p->name, p->received,
         cl->expected_len);
}

static void got_reply_bytes(struct peer *p, const char *data, size_t n);

static void receive(struct peer *p) {
    static char data[1 << 16];
    struct client *cl = p->client;
    ssize_t n = recv(p->fd, data, sizeof data, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0) {
        fail(cl, "%s: recv: %s", p->name, strerror(errno));
        return;
    }
    if (n == 0) {
        server_closed(p);
        return;
    }
    got_reply_bytes(p, data, (size_t)n);
}

/* Checks the next `n` bytes of a peer's reply. */
static void got_reply_bytes(struct peer *p, const char *data, size_t n) {
    struct client *cl = p->client;
    if (!cl->opt.hello) say("%s: received \"%s\"", p->name, printable(data, (size_t)n, '"'));
    size_t len = (size_t)n, left = cl->expected_len - p->received;
    if (len > left) {
        fail(cl, "%s: %zu bytes more than the reply", p->name, len - left);
        return;
    }
    const char *expected = cl->expected + p->received;
    size_t at = first_difference(data, expected, len);
    if (at < len) {
        fail(cl, "%s: reply byte %zu is 0x%02x, expected 0x%02x", p->name, p->received + at,
             (unsigned char)data[at], (unsigned char)expected[at]);
        return;
    }
    p->received += len;
    if (p->received < cl->expected_len) return;
    cl->replies++;
    if (cl->opt.hello) say("%s", printable(cl->expected, cl->expected_len, 0)); /* C4: print(data.decode()) */
    if (--p->repeats_left > 0 && !cl->time_up) { /* --independent, --hello: the next one at once */
        p->sent = p->received = 0;
        send_more(p);
    } else if (--cl->waiting == 0) {
        evl_stop(cl->loop);
    }
}

static void on_peer(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    struct peer *p = userdata;
    (void)loop;
    (void)fd;
    if (p->client->failed) return; /* the first difference is the one to report */
    if (revents & EVL_WRITE) send_more(p);
    if (revents & (EVL_READ | EVL_ERROR | EVL_HUP)) receive(p); /* recv() reports the error */
}

/* --tls: what happens to a peer's TLS stream. */
static void on_tls_peer(evl_loop *loop, const evl_stream_event *ev) {
    struct peer *p = ev->userdata;
    struct client *cl = p->client;
    char reason[256];
    switch (ev->kind) {
    case EVL_STREAM_CONNECTED: /* the handshake ended */
        if (ev->status == 0) break;
        if (evl_tls_error_reason(loop, ev->stream, reason, sizeof reason) <= 0) reason[0] = '\0';
        fail(cl, "%s: TLS: %s%s%s", p->name, evl_strerror(ev->status), reason[0] ? ": " : "", reason);
        break;
    case EVL_STREAM_DATA:
        if (!cl->failed) got_reply_bytes(p, (const char *)ev->data, ev->len);
        break;
    case EVL_STREAM_EOF:
        if (!cl->failed && !cl->stopping) server_closed(p);
        break;
    case EVL_STREAM_CLOSED:
        p->closed = true;
        if (ev->status < 0 && !cl->failed && !cl->stopping)
            fail(cl, "%s: the connection ended: %s", p->name, evl_strerror(ev->status));
        break;
    }
}

/* --tls: the client's TLS configuration. */
static void setup_tls(struct client *cl) {
    int rc = evl_tls_config_new_client(&cl->tls);
    if (rc < 0) die("evl_tls_config_new_client", rc);
    if (cl->opt.ca && (rc = evl_tls_config_add_ca_file(cl->tls, cl->opt.ca)) < 0) {
        fprintf(stderr, "%s: %s\n", cl->opt.ca, evl_tls_config_last_error(cl->tls));
        exit(1);
    }
}

/* --tls: the peer's socket becomes a stream, with TLS started on it. */
static void start_tls(struct client *cl, struct peer *p) {
    int rc = evl_stream_open(cl->loop, p->fd, on_tls_peer, p, &p->stream);
    if (rc < 0) die("evl_stream_open", rc);
    const char *name = cl->opt.server_name ? cl->opt.server_name : cl->opt.host;
    rc = evl_tls_start(cl->loop, p->stream, cl->tls, name);
    if (rc < 0) {
        fprintf(stderr, "TLS to %s: %s %s\n", name, evl_strerror(rc), evl_tls_config_last_error(cl->tls));
        exit(1);
    }
}

/* --tls: close_notify on every stream, then wait (a little) for the ends. */
static void close_tls_peers(struct client *cl) {
    for (long i = 0; i < cl->peer_count; i++) evl_stream_close(cl->loop, cl->peers[i].stream);
    for (int turn = 0; turn < 100; turn++) {
        long open = 0;
        for (long i = 0; i < cl->peer_count; i++) open += !cl->peers[i].closed;
        if (open == 0 || evl_run_once(cl->loop, 10) < 0) break;
    }
}

/* Every --timeout seconds: fails unless some reply was completed since. */
static void on_watchdog(evl_loop *loop, uint64_t timer_id, void *userdata) {
    struct client *cl = userdata;
    (void)loop;
    (void)timer_id;
    if (cl->replies == cl->replies_at_last_tick)
        fail(cl, "timed out: no reply for %ld s, %ld of %ld replies incomplete", cl->opt.timeout_s, cl->waiting,
             cl->peer_count);
    cl->replies_at_last_tick = cl->replies;
}

/* --seconds: the exchange under way is the last. */
static void on_time_up(evl_loop *loop, uint64_t timer_id, void *userdata) {
    struct client *cl = userdata;
    (void)loop;
    (void)timer_id;
    cl->time_up = true;
}

/* Sends `message` on every socket and waits for the reply, `repeats` times
 * in a row on each socket, independently of the others; returns when every
 * reply is complete. Returns false if something went wrong or a stop signal
 * came. */
static bool exchange(struct client *cl, const char *message, size_t len, long repeats) {
    if (len + REPLY_EXTRA > cl->expected_cap) {
        char *grown = realloc(cl->expected, len + REPLY_EXTRA);
        if (!grown) die("realloc", ENOMEM);
        cl->expected = grown;
        cl->expected_cap = len + REPLY_EXTRA;
    }
    cl->message = message;
    cl->message_len = len;
    cl->expected_len = make_reply(&cl->opt, message, len, cl->expected);
    cl->waiting = cl->peer_count;
    for (long i = 0; i < cl->peer_count && !cl->failed; i++) {
        struct peer *p = &cl->peers[i];
        say("%s: sending \"%s\"", p->name, printable(message, len, '"'));
        p->sent = p->received = 0;
        p->repeats_left = repeats;
        send_more(p);
    }
    while (cl->waiting > 0 && !cl->failed && !cl->stopping) {
        int rc = evl_run(cl->loop);
        if (rc < 0) fail(cl, "evl_run: %s", evl_strerror(rc));
    }
    return cl->waiting == 0;
}

/* Opens one blocking connection and makes it non-blocking once connected
 * (connect() on loopback takes microseconds; waiting for it keeps C1's order). */
static int connect_to(const struct addrinfo *ai) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) return -1;
    int on = 1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    return fd;
}

/* --unix PATH: the Unix-domain socket to connect to instead (NULL: TCP). */
static const char *unix_path;

/* Takes --unix PATH out of argv (the common options know nothing of it). */
static void take_unix_option(int *argc, char **argv) {
    int kept = 1;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--unix") == 0 && i + 1 < *argc) unix_path = argv[++i];
        else argv[kept++] = argv[i];
    }
    *argc = kept;
}

/* One blocking connection to unix_path, made non-blocking once connected. */
static int connect_unix(void) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(unix_path);
    if (len >= sizeof addr.sun_path) die(unix_path, -ENAMETOOLONG);
    memcpy(addr.sun_path, unix_path, len);
    if (unix_path[0] == '@') addr.sun_path[0] = '\0'; /* abstract: the name after the NUL */
    socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (unix_path[0] != '@'));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, addr_len) < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
        int err = errno;
        if (fd >= 0) close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static void open_peers(struct client *cl) {
    if (unix_path) {
        say("connecting to %s", unix_path);
        for (long i = 0; i < cl->peer_count; i++) {
            struct peer *p = &cl->peers[i];
            p->client = cl;
            if ((p->fd = connect_unix()) < 0) die("connect", errno);
            int rc = evl_register(cl->loop, p->fd, EVL_READ, on_peer, p);
            if (rc < 0) die("evl_register", rc);
            p->interest = EVL_READ;
            snprintf(p->name, sizeof p->name, "(unix %ld)", i);
        }
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
    char port[8];
    snprintf(port, sizeof port, "%d", cl->opt.port);
    int rc = getaddrinfo(cl->opt.host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", cl->opt.host, gai_strerror(rc));
        exit(1);
    }
    say("connecting to %s port %d", cl->opt.host, cl->opt.port);
    for (long i = 0; i < cl->peer_count; i++) {
        struct peer *p = &cl->peers[i];
        p->client = cl;
        p->fd = connect_to(ai);
        if (p->fd < 0) die("connect", errno);
        local_addr(p->fd, p->name);
        if (cl->tls) {
            start_tls(cl, p);
            continue;
        }
        rc = evl_register(cl->loop, p->fd, EVL_READ, on_peer, p);
        if (rc < 0) die("evl_register", rc);
        p->interest = EVL_READ;
    }
    freeaddrinfo(ai);
}

/* C1 and C2: the three messages (or one of --size bytes), --rounds times,
 * in lockstep: every socket sends, then every socket waits for its reply.
 * With --independent (and --size), each socket makes its --rounds exchanges
 * at its own pace: the steady load of the benchmarks. */
static void send_messages(struct client *cl) {
    char *sized = NULL;
    if (cl->opt.size) {
        sized = malloc(cl->opt.size);
        if (!sized) die("malloc", ENOMEM);
        for (size_t i = 0; i < cl->opt.size; i++) sized[i] = (char)('a' + i % 26);
    }
    if (sized && cl->opt.independent) {
        exchange(cl, sized, cl->opt.size, cl->opt.rounds);
        free(sized);
        return;
    }
    for (long round = 0; round < cl->opt.rounds; round++) {
        if (sized) {
            if (!exchange(cl, sized, cl->opt.size, 1)) break;
            continue;
        }
        for (size_t m = 0; m < sizeof messages / sizeof *messages; m++)
            if (!exchange(cl, messages[m], strlen(messages[m]), 1)) goto done;
    }
done:
    free(sized);
}

/* C4: "PID hello", --rounds times or until --seconds are up or a stop
 * signal, on one socket. */
static void send_hellos(struct client *cl) {
    char hello[32];
    int len = snprintf(hello, sizeof hello, "%ld hello", (long)getpid());
    if (cl->opt.seconds) {
        int rc = evl_timer_start(cl->loop, (uint64_t)cl->opt.seconds * 1000, 0, on_time_up, cl, NULL);
        if (rc < 0) die("evl_timer_start", rc);
    }
    exchange(cl, hello, (size_t)len, cl->opt.rounds_given ? cl->opt.rounds : LONG_MAX);
}

/* C3: each line of stdin (without its newline) is one message. */
static void send_lines(struct client *cl) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    for (;;) {
        if (!quiet) {
            fputs("please input: ", stdout);
            fflush(stdout);
        }
        if ((len = getline(&line, &cap, stdin)) < 0) break;
        if (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
        if (len == 0) continue; /* nothing to send, so no reply would come */
        if (!exchange(cl, line, (size_t)len, 1)) break;
    }
    if (!quiet && len < 0) putchar('\n');
    free(line);
}

int main(int argc, char **argv) {
    struct client cl = {0};
    take_unix_option(&argc, argv);
    parse_options(argc, argv,
                  OPT_CONNS | OPT_SIZE | OPT_ROUNDS | OPT_UPPER | OPT_SB | OPT_INTERACTIVE | OPT_INDEPENDENT | OPT_TIMEOUT |
                      OPT_HELLO | OPT_SECONDS | OPT_TLS_CLIENT,
                  has_flag(argc, argv, "--hello") ? 8083 : 10000, usage, &cl.opt);
    if (cl.opt.independent && !cl.opt.size) {
        fputs("--independent needs --size\n", stderr);
        usage_exit(usage, 2);
    }
    if (cl.opt.hello && (cl.opt.interactive || cl.opt.size)) {
        fputs("--hello sends its own message: no --interactive, no --size\n", stderr);
        usage_exit(usage, 2);
    }
    if (cl.opt.seconds && !cl.opt.hello) {
        fputs("--seconds is for --hello\n", stderr);
        usage_exit(usage, 2);
    }
    if (!cl.opt.timeout_s) cl.opt.timeout_s = 60;
    cl.peer_count = cl.opt.interactive || cl.opt.hello ? 1 : cl.opt.conns;
    cl.peers = calloc((size_t)cl.peer_count, sizeof *cl.peers);
    if (!cl.peers) die("calloc", ENOMEM);
    int rc = evl_loop_new(&cl.loop);
    if (rc < 0) die("evl_loop_new", rc);
    watch_stop_signals(cl.loop, &cl.stopping);
    if (!cl.opt.interactive) { /* a person at the keyboard takes the time they need */
        uint64_t every_ms = (uint64_t)cl.opt.timeout_s * 1000;
        rc = evl_timer_start(cl.loop, every_ms, every_ms, on_watchdog, &cl, NULL);
        if (rc < 0) die("evl_timer_start", rc);
    }
    if (cl.opt.tls) setup_tls(&cl);
    open_peers(&cl);

    if (cl.opt.interactive) send_lines(&cl);
    else if (cl.opt.hello) send_hellos(&cl);
    else send_messages(&cl);

    for (long i = 0; i < cl.peer_count; i++) {
        if (!cl.failed) say("closing socket %s", cl.peers[i].name);
        if (cl.tls) continue; /* the stream owns the fd */
        evl_unregister(cl.loop, cl.peers[i].fd);
        close(cl.peers[i].fd);
    }
    if (cl.tls) {
        close_tls_peers(&cl);
        evl_tls_config_free(cl.tls);
    }
    evl_loop_free(cl.loop);
    free(cl.peers);
    free(cl.expected);
    return cl.failed ? 1 : 0;
}
