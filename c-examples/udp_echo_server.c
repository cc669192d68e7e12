/* udp_echo_server: a UDP echo server on evloop.
 *
 * Datagrams come in batches (one recvmmsg each) as one EVL_STREAM_DATAGRAMS
 * event, an array of evl_udp_datagram with each one's bytes and source
 * address; the whole batch goes back as it came with one
 * evl_udp_send_batch (one sendmmsg). That is the whole service.
 *
 * A datagram longer than --recv-size (default 65536: any UDP datagram) is
 * received truncated, and the library says so (EVL_UDP_TRUNCATED): the
 * server logs it and echoes what it got. A client that cannot be answered
 * (its address refused by the kernel) costs only its own reply, logged.
 *
 *   udp_echo_server [--host H] [--port P] [--recv-size BYTES] [--quiet]
 *
 * --host "::" serves IPv6 and IPv4 on one socket. --port 0 lets the kernel
 * pick a free port, printed alone on the first line. SIGINT or SIGTERM
 * ends it cleanly.
 */
#include "common.h"

static const char usage[] =
    "usage: udp_echo_server [--host H] [--port P (0: any, printed first)] [--recv-size BYTES] [--quiet]\n"
    "UDP echo server, default 127.0.0.1:10000; datagrams over --recv-size (1 to 65536) are\n"
    "received truncated, logged, and echoed as received.\n";

struct udp_server {
    long datagrams, truncated;
};

static COLD void log_datagram(const evl_udp_datagram *d) {
    char from[ADDR_LEN];
    format_addr(d->addr, from);
    if (d->flags & EVL_UDP_TRUNCATED) say("datagram from %s truncated to %zu bytes (--recv-size)", from, d->len);
    else say("datagram of %zu bytes from %s", d->len, from);
}

static void on_udp(evl_loop *loop, const evl_stream_event *ev) {
    struct udp_server *s = ev->userdata;
    if (ev->kind == EVL_STREAM_DATAGRAMS) {
        const evl_udp_datagram *d = (const evl_udp_datagram *)ev->data;
        int count = (int)ev->len;
        s->datagrams += count;
        if (!quiet) { /* a look at each datagram, for the log only */
            for (int i = 0; i < count; i++) {
                if (d[i].flags & EVL_UDP_TRUNCATED) s->truncated++;
                log_datagram(&d[i]);
            }
        }
        /* The batch as it came: each datagram back to its sender. */
        int refused = evl_udp_send_batch(loop, ev->stream, d, count, NULL);
        if (refused != 0) say("%d of %d replies refused", refused, count);
    } else if (ev->kind == EVL_STREAM_UDP_ERROR) {
        say("a reply was dropped: %s", evl_strerror(ev->status));
    }
}

static long size_arg(const char *text) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || *text == '\0' || *end != '\0' || value < 1 || value > 65536) {
        fprintf(stderr, "--recv-size: expected 1 to 65536, got \"%s\"\n", text);
        usage_exit(usage, 2);
    }
    return value;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 10000;
    long recv_size = 65536;
    for (int i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--help") == 0) usage_exit(usage, 0);
        else if (strcmp(argv[i], "--quiet") == 0) quiet = true;
        else if (strcmp(argv[i], "--host") == 0 && value) host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0 && value) port = (int)number_arg(usage, "--port", argv[++i], 0, 65535);
        else if (strcmp(argv[i], "--recv-size") == 0 && value) recv_size = size_arg(argv[++i]);
        else {
            fprintf(stderr, "unknown or incomplete option: %s\n", argv[i]);
            usage_exit(usage, 2);
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    evl_loop *loop;
    int rc = evl_loop_new(&loop);
    if (rc < 0) die("evl_loop_new", rc);
    struct udp_server s = {0};
    uint64_t udp;
    rc = evl_udp_bind(loop, host, port, 0, on_udp, &s, &udp);
    if (rc < 0) die("evl_udp_bind", rc);
    rc = evl_udp_set_recv_size(loop, udp, (size_t)recv_size);
    if (rc < 0) die("evl_udp_set_recv_size", rc);
    int bound = evl_udp_port(loop, udp);
    if (bound < 0) die("evl_udp_port", bound);
    if (port == 0) printf("%d\n", bound);
    port = bound;
    say("UDP echo server on %s port %d, datagrams up to %ld bytes", host, port, recv_size);

    bool stopping = false;
    watch_stop_signals(loop, &stopping);
    rc = evl_run(loop);
    if (rc < 0) die("evl_run", rc);
    say("%s: stopping after %ld datagrams (%ld truncated)", stopping ? "signal" : "done", s.datagrams,
        s.truncated); /* (counted when not --quiet) */
    evl_loop_free(loop); /* closes the socket */
    return 0;
}
