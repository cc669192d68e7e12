/* udp_echo_client: the client of udp_echo_server, on evloop's UDP sockets.
 *
 * N clients (--conns, each a UDP socket connected to the server) each send
 * a datagram of --size bytes and wait for its echo, --rounds times in a
 * row, each at its own pace: the load of the benchmarks. Every reply is
 * checked byte for byte against what was sent (each round's bytes differ,
 * so a reply to another round or another client is caught). With
 * --truncated-to N, the server is expected to receive only N bytes of each
 * datagram (its --recv-size) and echo those: the reply must be exactly the
 * first N bytes sent.
 *
 * Exit status: 0 when every reply was right, 1 otherwise (the first
 * difference is reported, or that no reply came for --timeout seconds, 10
 * by default: UDP has no retransmission, so a datagram lost means a
 * client waits), 2 for bad arguments.
 *
 *   udp_echo_client [--host H] [--port P] [--conns N] [--size BYTES] [--rounds R]
 *                   [--truncated-to N] [--timeout S] [--quiet]
 */
#include "common.h"

static const char usage[] =
    "usage: udp_echo_client [--host H] [--port P] [--conns N] [--size BYTES (0 to 65507)] [--rounds R]\n"
    "                       [--truncated-to N] [--timeout S] [--quiet]\n"
    "N UDP clients (default 1) each send R datagrams of BYTES bytes (default 64) to 127.0.0.1:10000,\n"
    "one at a time, and check every echo byte for byte (--truncated-to N: its first N bytes only).\n";

struct client;

struct peer {
    uint64_t udp;
    long rounds_left;
    size_t round; /* the round under way, which the bytes sent depend on */
    struct client *client;
    int index;
};

struct client {
    evl_loop *loop;
    struct peer *peers;
    long conns, rounds, waiting, replies, replies_at_last_tick;
    size_t size, expected_len;
    char *message; /* room for `size` bytes */
    bool failed, stopping;
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

/* The bytes peer `p` sends in round `round`. */
static void fill(char *out, size_t len, int p, size_t round) {
    uint32_t x = (uint32_t)p * 2654435761u + (uint32_t)round * 40503u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        out[i] = (char)(x >> 16);
    }
}

static void send_round(struct peer *p) {
    struct client *cl = p->client;
    fill(cl->message, cl->size, p->index, p->round);
    int rc = evl_udp_send(cl->loop, p->udp, cl->message, cl->size, NULL, 0);
    if (rc < 0) fail(cl, "client %d: send: %s", p->index, evl_strerror(rc));
}

static void check_reply(struct peer *p, const evl_udp_datagram *d) {
    struct client *cl = p->client;
    if (d->len != cl->expected_len) {
        fail(cl, "client %d: a reply of %zu bytes%s, expected %zu", p->index, d->len,
             d->flags & EVL_UDP_TRUNCATED ? " (truncated: a datagram over our receive size)" : "",
             cl->expected_len);
        return;
    }
    fill(cl->message, cl->size, p->index, p->round);
    for (size_t i = 0; i < d->len; i++) {
        if (d->data[i] != (uint8_t)cl->message[i]) {
            fail(cl, "client %d: reply byte %zu of round %zu is 0x%02x, expected 0x%02x", p->index, i, p->round,
                 d->data[i], (uint8_t)cl->message[i]);
            return;
        }
    }
    cl->replies++;
    p->round++;
    if (--p->rounds_left > 0) send_round(p);
    else if (--cl->waiting == 0) evl_stop(cl->loop);
}

static void on_udp(evl_loop *loop, const evl_stream_event *ev) {
    struct peer *p = ev->userdata;
    (void)loop;
    if (p->client->failed) return;
    if (ev->kind == EVL_STREAM_DATAGRAMS) {
        const evl_udp_datagram *d = (const evl_udp_datagram *)ev->data;
        for (size_t i = 0; i < ev->len && !p->client->failed; i++) {
            if (p->rounds_left == 0) {
                fail(p->client, "client %d: a reply more than it sent", p->index);
                return;
            }
            check_reply(p, &d[i]);
        }
    } else if (ev->kind == EVL_STREAM_UDP_ERROR) {
        fail(p->client, "client %d: %s (is the server running?)", p->index, evl_strerror(ev->status));
    }
}

/* Every --timeout seconds: fails unless some reply came since. */
static void on_watchdog(evl_loop *loop, uint64_t timer_id, void *userdata) {
    struct client *cl = userdata;
    (void)loop;
    (void)timer_id;
    if (cl->replies == cl->replies_at_last_tick)
        fail(cl, "timed out: no reply for a while, %ld of %ld clients not done", cl->waiting, cl->conns);
    cl->replies_at_last_tick = cl->replies;
}

int main(int argc, char **argv) {
    struct client cl = {.conns = 1, .rounds = 1, .size = 64};
    const char *host = "127.0.0.1";
    int port = 10000;
    long truncated_to = -1, timeout_s = 10;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0) usage_exit(usage, 0);
        else if (strcmp(arg, "--quiet") == 0) quiet = true;
        else if (strcmp(arg, "--host") == 0 && value) host = argv[++i];
        else if (strcmp(arg, "--port") == 0 && value) port = (int)number_arg(usage, arg, argv[++i], 1, 65535);
        else if (strcmp(arg, "--conns") == 0 && value) cl.conns = number_arg(usage, arg, argv[++i], 1, 10000);
        else if (strcmp(arg, "--size") == 0 && value) cl.size = (size_t)number_arg(usage, arg, argv[++i], 0, 65507);
        else if (strcmp(arg, "--rounds") == 0 && value) cl.rounds = number_arg(usage, arg, argv[++i], 1, 1L << 40);
        else if (strcmp(arg, "--truncated-to") == 0 && value) truncated_to = number_arg(usage, arg, argv[++i], 1, 65536);
        else if (strcmp(arg, "--timeout") == 0 && value) timeout_s = number_arg(usage, arg, argv[++i], 1, 1L << 20);
        else {
            fprintf(stderr, "unknown or incomplete option: %s\n", arg);
            usage_exit(usage, 2);
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    cl.expected_len = truncated_to >= 0 && (size_t)truncated_to < cl.size ? (size_t)truncated_to : cl.size;
    cl.message = malloc(cl.size ? cl.size : 1);
    cl.peers = calloc((size_t)cl.conns, sizeof *cl.peers);
    if (!cl.message || !cl.peers) die("malloc", -ENOMEM);
    int rc = evl_loop_new(&cl.loop);
    if (rc < 0) die("evl_loop_new", rc);
    watch_stop_signals(cl.loop, &cl.stopping);
    uint64_t every_ms = (uint64_t)timeout_s * 1000;
    rc = evl_timer_start(cl.loop, every_ms, every_ms, on_watchdog, &cl, NULL);
    if (rc < 0) die("evl_timer_start", rc);
    /* Each client: a socket of the server's family on any port, connected
     * to the server, so replies from anyone else never reach it. */
    const char *any = strchr(host, ':') ? "::" : "0.0.0.0";
    for (long i = 0; i < cl.conns; i++) {
        struct peer *p = &cl.peers[i];
        *p = (struct peer){.rounds_left = cl.rounds, .client = &cl, .index = (int)i};
        if ((rc = evl_udp_bind(cl.loop, any, 0, 0, on_udp, p, &p->udp)) < 0) die("evl_udp_bind", rc);
        if ((rc = evl_udp_connect(cl.loop, p->udp, host, port)) < 0) die("evl_udp_connect", rc);
    }
    say("%ld UDP clients to %s port %d: %ld datagrams of %zu bytes each", cl.conns, host, port, cl.rounds, cl.size);
    cl.waiting = cl.conns;
    for (long i = 0; i < cl.conns; i++) send_round(&cl.peers[i]);
    while (cl.waiting > 0 && !cl.failed && !cl.stopping) {
        rc = evl_run(cl.loop);
        if (rc < 0) fail(&cl, "evl_run: %s", evl_strerror(rc));
    }
    if (!cl.failed && !cl.stopping)
        say("%ld round trips, every reply right%s", cl.replies, cl.expected_len < cl.size ? " (as truncated)" : "");
    evl_loop_free(cl.loop);
    free(cl.peers);
    free(cl.message);
    return cl.failed || cl.stopping ? 1 : 0;
}
