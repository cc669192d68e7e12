/* common.h: what the echo examples share, so that each program shows only its
 * own I/O model. Option parsing, the listening socket, a table of connections
 * with their output queues, the log formatting of the original Python
 * scripts, and a clean exit on SIGINT/SIGTERM.
 *
 * Header-only (static functions), so every example still builds with a single
 * cc command. Include it before any system header: it selects the POSIX and
 * GNU interfaces (accept4, getaddrinfo) that -std=c11 hides. */
#ifndef EVLOOP_EXAMPLES_COMMON_H
#define EVLOOP_EXAMPLES_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "evloop.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Marks a function off the usual path, so the compiler keeps it out of line
 * and the usual path stays short (fewer registers saved, fewer jumps). */
#define COLD __attribute__((cold, noinline))

/* ---- options ------------------------------------------------------------ */

/* Flags a program accepts besides --host, --port, --quiet and --help. */
enum {
    OPT_UPPER = 1 << 0,       /* --upper: reply in upper case (S3) */
    OPT_SB = 1 << 1,          /* --sb: reply upper + "_SB" (S6) */
    OPT_CONNS = 1 << 2,       /* --conns N */
    OPT_SIZE = 1 << 3,        /* --size BYTES */
    OPT_ROUNDS = 1 << 4,      /* --rounds R */
    OPT_INTERACTIVE = 1 << 5, /* --interactive */
    OPT_TIMEOUT = 1 << 6,     /* --timeout SECONDS */
    OPT_INDEPENDENT = 1 << 7, /* --independent */
    OPT_WORKERS = 1 << 8,     /* --workers N */
    OPT_IDLE = 1 << 9,        /* --idle-timeout MS */
    OPT_MAX_CONNS = 1 << 10,  /* --max-conns N */
    OPT_SIMPLE = 1 << 11,     /* --simple: S2, replies sent at once, no output queues */
    OPT_DICT = 1 << 12,       /* --dict: S4, a dict of queues, outputs dropped once sent */
    OPT_EVLOOP = 1 << 13,     /* --evloop: the same service on evloop (S8's twin) */
    OPT_SECONDS = 1 << 14,    /* --seconds S: stop after S seconds */
    OPT_MAX_IDLE = 1 << 15,   /* --max-idle S: stop after S seconds with nothing to do */
    OPT_HELLO = 1 << 16,      /* --hello: C4, "PID hello" in a loop on one socket */
    OPT_TLS_CLIENT = 1 << 17, /* --tls, --ca FILE, --server-name NAME: TLS to the server */
    OPT_TLS_SERVER = 1 << 18, /* --cert FILE, --key FILE, --alpn P1,P2: TLS to the clients */
};

/* --quiet: no log lines (see say()). */
static bool quiet;

struct options {
    const char *host;
    int port;
    bool quiet, upper, sb, interactive, independent, simple, dict, evloop, hello;
    bool rounds_given; /* --rounds was on the command line */
    long conns, rounds, timeout_s; /* timeout_s 0: the program's default */
    long seconds, max_idle_s;      /* 0: no limit */
    size_t size; /* 0: the three messages of the articles */
    long workers, idle_ms, max_conns; /* 1, 0 (none), 0 (no limit) */
    bool tls;                              /* --tls (a server with --cert is TLS too) */
    const char *ca, *server_name;          /* NULL: the system's roots; --host */
    const char *cert, *key;                /* PEM files */
    const char *alpn;                      /* "h2,http/1.1" (NULL: no ALPN) */
};

static inline void usage_exit(const char *usage, int status) {
    fputs(usage, status == 0 ? stdout : stderr);
    exit(status);
}

static inline long number_arg(const char *usage, const char *name, const char *text, long min, long max) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || *text == '\0' || *end != '\0' || value < min || value > max) {
        fprintf(stderr, "%s: expected a number from %ld to %ld, got \"%s\"\n", name, min, max, text);
        usage_exit(usage, 2);
    }
    return value;
}

/* Whether `flag` is on the command line: for a default (the port) that
 * depends on a flag, before parse_options. */
static inline bool has_flag(int argc, char **argv, const char *flag) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], flag) == 0) return true;
    return false;
}

/* Fills `o` from the command line; exits with status 2 (and the usage text)
 * on anything this program does not accept. Makes stdout line-buffered so
 * that log lines come out as they happen even into a pipe. */
static inline void parse_options(int argc, char **argv, unsigned accepted, int default_port,
                                 const char *usage, struct options *o) {
    *o = (struct options){.host = "127.0.0.1", .port = default_port, .conns = 2, .rounds = 1, .workers = 1};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
#define FLAG(name, bit) (strcmp(arg, name) == 0 && (accepted & (bit)) == (bit))
#define VALUE(name, bit) (FLAG(name, bit) && value && (i++, 1))
        if (strcmp(arg, "--help") == 0) usage_exit(usage, 0);
        else if (strcmp(arg, "--quiet") == 0) o->quiet = true;
        else if (VALUE("--host", 0)) o->host = value;
        else if (VALUE("--port", 0)) o->port = (int)number_arg(usage, arg, value, 0, 65535);
        else if (FLAG("--upper", OPT_UPPER)) o->upper = true;
        else if (FLAG("--sb", OPT_SB)) o->sb = true;
        else if (FLAG("--interactive", OPT_INTERACTIVE)) o->interactive = true;
        else if (FLAG("--independent", OPT_INDEPENDENT)) o->independent = true;
        else if (VALUE("--conns", OPT_CONNS)) o->conns = number_arg(usage, arg, value, 1, 100000);
        else if (VALUE("--size", OPT_SIZE)) o->size = (size_t)number_arg(usage, arg, value, 1, 1L << 30);
        else if (VALUE("--rounds", OPT_ROUNDS)) {
            o->rounds = number_arg(usage, arg, value, 1, 1L << 40);
            o->rounds_given = true;
        }
        else if (VALUE("--timeout", OPT_TIMEOUT)) o->timeout_s = number_arg(usage, arg, value, 1, 1L << 20);
        else if (VALUE("--workers", OPT_WORKERS)) o->workers = number_arg(usage, arg, value, 1, 64);
        else if (VALUE("--idle-timeout", OPT_IDLE)) o->idle_ms = number_arg(usage, arg, value, 0, UINT32_MAX);
        else if (VALUE("--max-conns", OPT_MAX_CONNS)) o->max_conns = number_arg(usage, arg, value, 0, INT32_MAX);
        else if (FLAG("--simple", OPT_SIMPLE)) o->simple = true;
        else if (FLAG("--dict", OPT_DICT)) o->dict = true;
        else if (FLAG("--evloop", OPT_EVLOOP)) o->evloop = true;
        else if (FLAG("--hello", OPT_HELLO)) o->hello = true;
        else if (VALUE("--seconds", OPT_SECONDS)) o->seconds = number_arg(usage, arg, value, 1, 1L << 20);
        else if (VALUE("--max-idle", OPT_MAX_IDLE)) o->max_idle_s = number_arg(usage, arg, value, 1, 1L << 20);
        else if (FLAG("--tls", OPT_TLS_CLIENT)) o->tls = true;
        else if (VALUE("--ca", OPT_TLS_CLIENT)) o->ca = value;
        else if (VALUE("--server-name", OPT_TLS_CLIENT)) o->server_name = value;
        else if (VALUE("--cert", OPT_TLS_SERVER)) o->cert = value;
        else if (VALUE("--key", OPT_TLS_SERVER)) o->key = value;
        else if (VALUE("--alpn", OPT_TLS_SERVER)) o->alpn = value;
        else {
            fprintf(stderr, "unknown or incomplete option: %s\n", arg);
            usage_exit(usage, 2);
        }
#undef FLAG
#undef VALUE
    }
    if (o->sb) o->upper = true;
    if ((o->ca || o->server_name) && !o->tls) {
        fputs("--ca and --server-name are for --tls\n", stderr);
        usage_exit(usage, 2);
    }
    if (!o->cert != !o->key) {
        fputs("--cert and --key go together\n", stderr);
        usage_exit(usage, 2);
    }
    quiet = o->quiet;
    setvbuf(stdout, NULL, _IOLBF, 0);
}

/* ---- formatting --------------------------------------------------------- */

/* Room for "('ffff:ffff:...:255.255.255.255', 65535)". */
#define ADDR_LEN 80

/* Formats an address the way Python prints a socket address tuple; returns
 * its port. */
static inline int format_addr(const struct sockaddr *sa, char out[ADDR_LEN]) {
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, ADDR_LEN, "('%s', %d)", host, port);
    return port;
}

/* The local address of a socket, Python-style; returns its port. */
static inline int local_addr(int fd, char out[ADDR_LEN]) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) ss.ss_family = AF_UNSPEC;
    return format_addr((const struct sockaddr *)&ss, out);
}

/* Log lines show at most this much of a message, then "...". */
#define SHOWN_BYTES 1024

/* `data` made printable: backslash escapes for anything that is not, and for
 * `quote` itself (0: none). Returns a static buffer, overwritten by the next call. */
static inline const char *printable(const void *data, size_t len, char quote) {
    static char text[SHOWN_BYTES * 4 + 8];
    const unsigned char *bytes = data;
    size_t shown = len < SHOWN_BYTES ? len : SHOWN_BYTES, at = 0;
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = bytes[i];
        if (c == '\\' || (quote && c == (unsigned char)quote)) at += (size_t)sprintf(text + at, "\\%c", c);
        else if (c == '\n') at += (size_t)sprintf(text + at, "\\n");
        else if (c == '\r') at += (size_t)sprintf(text + at, "\\r");
        else if (c == '\t') at += (size_t)sprintf(text + at, "\\t");
        else if (c < 0x20 || c >= 0x7f) at += (size_t)sprintf(text + at, "\\x%02x", c);
        else text[at++] = (char)c;
    }
    if (shown < len) at += (size_t)sprintf(text + at, "...");
    text[at] = '\0';
    return text;
}

/* ---- replies ------------------------------------------------------------ */

/* The longest reply to `len` bytes: S6 appends "_SB". */
#define REPLY_EXTRA 3

/* Writes into `out` (room for len + REPLY_EXTRA) what the server answers to
 * `data`: the same bytes, in upper case for --upper, plus "_SB" for --sb. */
static inline size_t make_reply(const struct options *o, const char *data, size_t len, char *out) {
    if (!o->upper) {
        memcpy(out, data, len);
        return len;
    }
    for (size_t i = 0; i < len; i++) out[i] = (char)toupper((unsigned char)data[i]);
    if (!o->sb) return len;
    memcpy(out + len, "_SB", REPLY_EXTRA);
    return len + REPLY_EXTRA;
}

/* ---- output queue ------------------------------------------------------- */

/* Bytes waiting to be sent to one peer, as a list of messages. The servers
 * that mirror S1 and S7 send one message per writable event, like the
 * originals' Queue.get_nowait(); a partial send leaves the rest in front. */
struct chunk {
    struct chunk *next;
    size_t len, sent;
    char data[];
};

struct outq {
    struct chunk *head, *tail;
    size_t bytes; /* not yet sent */
};

/* Above this many queued bytes a server stops reading from that client, so
 * a client that sends and never reads cannot grow the server's memory. */
#define QUEUE_LIMIT ((size_t)1 << 20)

/* Appends a copy of `data`. Returns 0, or -1 when out of memory. */
static inline int outq_push(struct outq *q, const char *data, size_t len) {
    struct chunk *c = malloc(sizeof *c + len);
    if (!c) return -1;
    c->next = NULL;
    c->len = len;
    c->sent = 0;
    memcpy(c->data, data, len);
    if (q->tail) q->tail->next = c;
    else q->head = c;
    q->tail = c;
    q->bytes += len;
    return 0;
}

static inline void outq_clear(struct outq *q) {
    while (q->head) {
        struct chunk *next = q->head->next;
        free(q->head);
        q->head = next;
    }
    *q = (struct outq){0};
}

/* One send() of what is left of the front message. Returns the bytes sent,
 * 0 if the socket is full (or nothing is queued), -1 on error (errno). */
static inline ssize_t outq_send_front(struct outq *q, int fd) {
    struct chunk *c = q->head;
    if (!c) return 0;
    /* MSG_NOSIGNAL: a peer that has gone gives EPIPE, not a SIGPIPE that
     * would kill the whole server. */
    ssize_t n = send(fd, c->data + c->sent, c->len - c->sent, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    c->sent += (size_t)n;
    q->bytes -= (size_t)n;
    if (c->sent == c->len) {
        q->head = c->next;
        if (!q->head) q->tail = NULL;
        free(c);
    }
    return n;
}

/* Sends until the queue is empty or the socket is full. 0, or -1 (errno). */
static inline int outq_flush(struct outq *q, int fd) {
    while (q->head) {
        ssize_t n = outq_send_front(q, fd);
        if (n < 0) return -1;
        if (n == 0) break;
    }
    return 0;
}

/* ---- server ------------------------------------------------------------- */

struct server;

struct conn {
    int fd;
    uint32_t interest; /* what the loop watches now */
    bool eof;          /* the peer shut down its side: close once `out` is sent */
    struct outq out;
    char peer[ADDR_LEN];
    struct server *server;
};

struct server {
    evl_loop *loop;
    struct options opt;
    int listen_fd;
    char local[ADDR_LEN];
    int local_port;
    struct conn **by_fd; /* open connections, indexed by fd */
    size_t table_len;
    bool stopping; /* SIGINT or SIGTERM arrived */
};

static inline void say_line(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* Prints a log line unless --quiet (and then does not even evaluate the
 * arguments, so quiet runs pay nothing for formatting). */
#define say(...)                                  \
    do {                                          \
        if (!quiet) say_line(__VA_ARGS__);        \
    } while (0)

static inline void die(const char *what, int err) {
    fprintf(stderr, "%s: %s\n", what, evl_strerror(err));
    exit(1);
}

static inline void on_stop_signal(evl_loop *loop, int signo, void *userdata) {
    bool *stopping = userdata;
    (void)signo;
    *stopping = true;
    evl_stop(loop);
}

/* Watches SIGINT and SIGTERM: either sets `*stopping` and stops the loop, so
 * that the program finishes cleanly. */
static inline void watch_stop_signals(evl_loop *loop, bool *stopping) {
    int rc;
    if ((rc = evl_signal_start(loop, SIGINT, on_stop_signal, stopping)) < 0 ||
        (rc = evl_signal_start(loop, SIGTERM, on_stop_signal, stopping)) < 0)
        die("evl_signal_start", rc);
}

/* Opens a non-blocking listening socket on o->host:o->port. With --port 0
 * the kernel picks a free port, printed alone on the first line. The
 * originals' backlogs (5, 10, 100) make the C10K client (C2) wait for SYN
 * retransmissions, so every server asks for SOMAXCONN. */
static inline int open_listener(const struct options *o, char local[ADDR_LEN], int *local_port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *found;
    char port[8];
    snprintf(port, sizeof port, "%d", o->port);
    int rc = getaddrinfo(o->host, port, &hints, &found);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", o->host, gai_strerror(rc));
        exit(1);
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = found; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int on = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(found);
    if (fd < 0) die("listen", err);
    *local_port = local_addr(fd, local);
    if (o->port == 0) printf("%d\n", *local_port);
    return fd;
}

/* Parses the options, creates the loop, opens the listener (not yet
 * registered: each program does that its own way) and watches the stop
 * signals. Exits on failure. */
static inline void server_start(struct server *s, int argc, char **argv, unsigned accepted, int default_port,
                                const char *usage) {
    *s = (struct server){.listen_fd = -1};
    parse_options(argc, argv, accepted, default_port, usage, &s->opt);
    int rc = evl_loop_new(&s->loop);
    if (rc < 0) die("evl_loop_new", rc);
    s->listen_fd = open_listener(&s->opt, s->local, &s->local_port);
    watch_stop_signals(s->loop, &s->stopping);
}

static inline void resume_accepting(evl_loop *loop, uint64_t timer_id, void *userdata) {
    struct server *s = userdata;
    (void)timer_id;
    evl_modify(loop, s->listen_fd, EVL_READ);
}

/* Out of fds, accept() fails while the connection stays in the backlog, so a
 * level-triggered listener would be reported ready again at once: the loop
 * would spin. Stop watching the listener for a moment instead; the open
 * connections go on being served. */
static inline void pause_accepting(struct server *s) {
    fprintf(stderr, "accept: %s; pausing for 100 ms\n", strerror(errno));
    evl_modify(s->loop, s->listen_fd, 0);
    evl_timer_start(s->loop, 100, 0, resume_accepting, s, NULL);
}

static inline bool table_fit(struct server *s, int fd) {
    if ((size_t)fd < s->table_len) return true;
    size_t len = s->table_len ? s->table_len : 64;
    while (len <= (size_t)fd) len *= 2;
    struct conn **grown = realloc(s->by_fd, len * sizeof *grown);
    if (!grown) return false;
    memset(grown + s->table_len, 0, (len - s->table_len) * sizeof *grown);
    s->by_fd = grown;
    s->table_len = len;
    return true;
}

/* Accepts one connection and registers it for EVL_READ with `cb` (NULL: the
 * program polls for it) and the new conn as userdata. Returns NULL when
 * there is nothing to accept or the attempt failed: the server goes on. */
static inline struct conn *server_accept(struct server *s, evl_io_cb cb) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(s->listen_fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) pause_accepting(s);
        return NULL; /* EAGAIN, or a connection reset before we took it */
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c || !table_fit(s, fd) || evl_register(s->loop, fd, EVL_READ, cb, c) < 0) {
        free(c);
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->interest = EVL_READ;
    c->server = s;
    format_addr((struct sockaddr *)&ss, c->peer);
    s->by_fd[fd] = c;
    return c;
}

/* Points the loop at what `c` needs now, with one epoll_ctl, and only when
 * that differs from what it watches already. */
static inline void set_interest(struct conn *c, uint32_t interest) {
    if (c->interest == interest) return;
    evl_modify(c->server->loop, c->fd, interest);
    c->interest = interest;
}

/* Read until end-of-file while the output queue is under QUEUE_LIMIT;
 * write while it is not empty. */
static inline uint32_t queue_interest(const struct conn *c) {
    return (!c->eof && c->out.bytes < QUEUE_LIMIT ? EVL_READ : 0) | (c->out.bytes ? EVL_WRITE : 0);
}

/* Unregisters, closes and frees one connection. */
static inline void close_conn(struct conn *c) {
    struct server *s = c->server;
    evl_unregister(s->loop, c->fd);
    close(c->fd);
    s->by_fd[c->fd] = NULL;
    outq_clear(&c->out);
    free(c);
}

/* Closes every connection and the listener, frees the loop. Returns the
 * exit status: 0. */
static inline int server_finish(struct server *s) {
    for (size_t fd = 0; fd < s->table_len; fd++)
        if (s->by_fd[fd]) close_conn(s->by_fd[fd]);
    free(s->by_fd);
    evl_unregister(s->loop, s->listen_fd);
    close(s->listen_fd);
    evl_loop_free(s->loop);
    return 0;
}

/* ---- streams ------------------------------------------------------------ */

static COLD void log_stream_accepted(evl_loop *loop, const evl_stream_event *ev) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char peer[ADDR_LEN];
    if (getpeername(evl_stream_fd(loop, ev->stream), (struct sockaddr *)&ss, &len) < 0) ss.ss_family = AF_UNSPEC;
    format_addr((const struct sockaddr *)&ss, peer);
    say("new connection from %s on fd %d", peer, ev->fd);
}

static COLD void log_stream_closed(const evl_stream_event *ev) {
    say("connection on fd %d closed: %s", ev->fd, evl_strerror(ev->status));
}

/* The whole echo service on buffered streams: echo the bytes, close when the
 * client has finished sending (what is queued still goes out first). */
static inline void echo_stream_event(evl_loop *loop, const evl_stream_event *ev) {
    switch (ev->kind) {
    case EVL_STREAM_DATA:
        /* A write that fails closes the stream; EVL_STREAM_CLOSED says why. */
        evl_stream_write(loop, ev->stream, ev->data, ev->len);
        break;
    case EVL_STREAM_EOF:
        /* The client has sent everything: close once its echo is out. */
        evl_stream_close(loop, ev->stream);
        break;
    case EVL_STREAM_ACCEPTED:
        if (!quiet) log_stream_accepted(loop, ev);
        break;
    case EVL_STREAM_CLOSED:
        if (!quiet) log_stream_closed(ev);
        break;
    }
}

#endif /* EVLOOP_EXAMPLES_COMMON_H */
