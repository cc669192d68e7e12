/* UDP through the C ABI: argument checks (NULL pointers, bad lengths and
 * addresses, unknown and closed ids, ids of other kinds), an echo driven
 * by callbacks and one by the batch interface (the received batch sent
 * back as it is), dual-stack and IPv6-only sockets, truncation reported,
 * connected sockets and their ICMP errors, broadcast and multicast,
 * SO_REUSEPORT, closing, and re-entry from callbacks. */
#define _GNU_SOURCE
#include "evloop.h"
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in v4(const char *ip, int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

/* What a callback saw. */
typedef struct {
    int batches, datagrams, truncated, errors, last_error, drained, closed, closed_status;
    int echo;         /* send every batch back as it came */
    int close_itself; /* evl_udp_close from the DATAGRAMS callback */
    int reentry;      /* evl_run_once's answer from inside the callback */
    char data[64][2048];
    size_t len[64];
    struct sockaddr_in6 from[64];
    uint32_t from_len[64];
} seen;

static void record(evl_loop *loop, const evl_stream_event *ev) {
    seen *s = ev->userdata;
    switch (ev->kind) {
    case EVL_STREAM_DATAGRAMS: {
        const evl_udp_datagram *d = (const evl_udp_datagram *)ev->data;
        CHECK(ev->len >= 1 && ev->len <= 32);
        CHECK(ev->fd == evl_udp_fd(loop, ev->stream));
        s->batches++;
        for (size_t i = 0; i < ev->len; i++) {
            int k = s->datagrams++;
            if (d[i].flags & EVL_UDP_TRUNCATED) s->truncated++;
            if (k < 64) {
                s->len[k] = d[i].len;
                if (d[i].len <= sizeof s->data[k]) memcpy(s->data[k], d[i].data, d[i].len);
                CHECK(d[i].addr_len <= sizeof s->from[k]);
                memcpy(&s->from[k], d[i].addr, d[i].addr_len);
                s->from_len[k] = d[i].addr_len;
            }
        }
        if (s->echo) CHECK_EQ(evl_udp_send_batch(loop, ev->stream, d, (int)ev->len, NULL), 0);
        if (s->close_itself) CHECK_EQ(evl_udp_close(loop, ev->stream), 0);
        s->reentry = evl_run_once(loop, 0);
        break;
    }
    case EVL_STREAM_UDP_ERROR:
        s->errors++;
        s->last_error = ev->status;
        break;
    case EVL_STREAM_DRAINED:
        s->drained++;
        break;
    case EVL_STREAM_CLOSED:
        s->closed++;
        s->closed_status = ev->status;
        break;
    default:
        CHECK(!"an event of another kind");
    }
}

/* A socket bound to `host` (any port) whose events `record` counts into
 * *s, reset first; `echo`: it sends every batch back. */
static uint64_t bind_recorder(evl_loop *loop, const char *host, seen *s, int echo) {
    memset(s, 0, sizeof *s);
    s->echo = echo;
    uint64_t id = 0;
    CHECK_EQ(evl_udp_bind(loop, host, 0, 0, record, s, &id), 0);
    return id;
}

static void run_until(evl_loop *loop, const int *count, int value) {
    for (int i = 0; i < 500 && *count < value; i++) CHECK(evl_run_once(loop, 10) >= 0);
    CHECK(*count >= value);
}

static void test_udp_arguments(void) {
    uint64_t id = 0;
    size_t queued;
    struct sockaddr_in to = v4("127.0.0.1", 9);
    evl_udp_datagram d = {.data = (const uint8_t *)"x", .len = 1, .addr = &to, .addr_len = sizeof to};
    CHECK_EQ(evl_udp_bind(NULL, "127.0.0.1", 0, 0, record, NULL, &id), -EINVAL);
    CHECK_EQ(evl_udp_connect(NULL, 1, "127.0.0.1", 1), -EINVAL);
    CHECK_EQ(evl_udp_send(NULL, 1, "x", 1, &to, sizeof to), -EINVAL);
    CHECK_EQ(evl_udp_send_batch(NULL, 1, &d, 1, NULL), -EINVAL);
    CHECK_EQ(evl_udp_close(NULL, 1), -EINVAL);
    CHECK_EQ(evl_udp_port(NULL, 1), -EINVAL);
    CHECK_EQ(evl_udp_fd(NULL, 1), -EINVAL);
    CHECK_EQ(evl_udp_queued(NULL, 1, &queued), -EINVAL);
    CHECK_EQ(evl_udp_set_watermarks(NULL, 1, 2, 1), -EINVAL);
    CHECK_EQ(evl_udp_set_recv_size(NULL, 1, 100), -EINVAL);
    CHECK_EQ(evl_udp_pause(NULL, 1), -EINVAL);
    CHECK_EQ(evl_udp_resume(NULL, 1), -EINVAL);
    CHECK_EQ(evl_udp_set_callback(NULL, 1, record, NULL), -EINVAL);
    CHECK_EQ(evl_udp_set_option(NULL, 1, EVL_UDP_OPT_TTL, 5), -EINVAL);
    CHECK_EQ(evl_udp_set_multicast_interface(NULL, 1, NULL), -EINVAL);
    CHECK_EQ(evl_udp_membership(NULL, 1, "239.1.1.1", NULL, 1), -EINVAL);

    evl_loop *loop = new_loop();
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", 0, 0, record, NULL, NULL), -EINVAL);
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", -1, 0, record, NULL, &id), -EINVAL);
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", 65536, 0, record, NULL, &id), -EINVAL);
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", 0, 0x100, record, NULL, &id), -EINVAL);
    CHECK_EQ(evl_udp_bind(loop, "no such host.invalid", 0, 0, record, NULL, &id), -EADDRNOTAVAIL);
    uint64_t udp;
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", 0, 0, record, NULL, &udp), 0);
    CHECK(evl_udp_port(loop, udp) > 0);
    CHECK_EQ(evl_udp_connect(loop, udp, "127.0.0.1", 70000), -EINVAL);
    CHECK_EQ(evl_udp_connect(loop, udp, "::1", 9), -EAFNOSUPPORT);
    /* Bad lengths and addresses: refused, nothing sent, nothing copied. */
    CHECK_EQ(evl_udp_send(loop, udp, NULL, 1, &to, sizeof to), -EFAULT);
    CHECK_EQ(evl_udp_send(loop, udp, "x", 1, NULL, sizeof to), -EINVAL);
    CHECK_EQ(evl_udp_send(loop, udp, "x", 1, &to, 1000), -EINVAL);
    CHECK_EQ(evl_udp_send(loop, udp, "x", 1, &to, 1), -EINVAL);
    CHECK_EQ(evl_udp_send(loop, udp, "x", 1, NULL, 0), -EDESTADDRREQ); /* not connected */
    struct sockaddr_in6 six = {.sin6_family = AF_INET6, .sin6_port = htons(9)};
    CHECK_EQ(evl_udp_send(loop, udp, "x", 1, &six, sizeof six), -EAFNOSUPPORT);
    static char huge[70000];
    CHECK_EQ(evl_udp_send(loop, udp, huge, sizeof huge, &to, sizeof to), -EMSGSIZE);
    CHECK_EQ(evl_udp_send(loop, udp, NULL, 0, &to, sizeof to), 0); /* an empty datagram */
    /* A batch: each datagram's own answer, the others sent. */
    evl_udp_datagram batch[5] = {d, d, d, d, d};
    batch[1].data = NULL;
    batch[2].addr_len = 1000;
    batch[3].addr = NULL;
    int status[5] = {1, 1, 1, 1, 1};
    CHECK_EQ(evl_udp_send_batch(loop, udp, batch, 5, status), 3);
    CHECK_EQ(status[0], 0);
    CHECK_EQ(status[1], -EFAULT);
    CHECK_EQ(status[2], -EINVAL);
    CHECK_EQ(status[3], -EINVAL);
    CHECK_EQ(status[4], 0);
    CHECK_EQ(evl_udp_send_batch(loop, udp, batch, 5, NULL), 3);
    CHECK_EQ(evl_udp_send_batch(loop, udp, NULL, 1, NULL), -EINVAL);
    CHECK_EQ(evl_udp_send_batch(loop, udp, batch, -1, NULL), -EINVAL);
    CHECK_EQ(evl_udp_send_batch(loop, udp, NULL, 0, NULL), 0);
    CHECK_EQ(evl_udp_queued(loop, udp, NULL), -EINVAL);
    CHECK_EQ(evl_udp_queued(loop, udp, &queued), 0);
    CHECK_EQ(queued, 0);
    CHECK_EQ(evl_udp_set_watermarks(loop, udp, 10, 20), -EINVAL);
    CHECK_EQ(evl_udp_set_watermarks(loop, udp, 0, 20), 0);
    CHECK_EQ(evl_udp_set_recv_size(loop, udp, 0), -EINVAL);
    CHECK_EQ(evl_udp_set_recv_size(loop, udp, 65537), -EINVAL);
    CHECK_EQ(evl_udp_set_recv_size(loop, udp, (size_t)-1), -EINVAL);
    CHECK_EQ(evl_udp_set_recv_size(loop, udp, 65536), 0);
    CHECK_EQ(evl_udp_set_option(loop, udp, 99, 1), -EINVAL);
    CHECK_EQ(evl_udp_set_option(loop, udp, EVL_UDP_OPT_TTL, 0), -EINVAL);
    CHECK_EQ(evl_udp_set_option(loop, udp, EVL_UDP_OPT_TTL, 256), -EINVAL);
    CHECK_EQ(evl_udp_set_option(loop, udp, EVL_UDP_OPT_TTL, 64), 0);
    CHECK_EQ(evl_udp_set_option(loop, udp, EVL_UDP_OPT_BROADCAST, 2), -EINVAL);
    CHECK_EQ(evl_udp_set_option(loop, udp, EVL_UDP_OPT_MULTICAST_LOOP, -1), -EINVAL);
    CHECK_EQ(evl_udp_set_option(loop, udp, EVL_UDP_OPT_MULTICAST_TTL, 0), 0);
    CHECK_EQ(evl_udp_set_multicast_interface(loop, udp, "no-such-if0"), -ENODEV);
    CHECK_EQ(evl_udp_set_multicast_interface(loop, udp, "99999"), -ENODEV);
    CHECK_EQ(evl_udp_set_multicast_interface(loop, udp, "127.0.0.1"), 0);
    CHECK_EQ(evl_udp_set_multicast_interface(loop, udp, NULL), 0);
    CHECK_EQ(evl_udp_membership(loop, udp, NULL, NULL, 1), -EINVAL);
    CHECK_EQ(evl_udp_membership(loop, udp, "239.1.2.3", NULL, 2), -EINVAL);
    CHECK_EQ(evl_udp_membership(loop, udp, "127.0.0.1", "127.0.0.1", 1), -EINVAL);
    CHECK_EQ(evl_udp_membership(loop, udp, "239.1.2.3", "no-such-if0", 1), -ENODEV);
    CHECK_EQ(evl_udp_membership(loop, udp, "239.1.2.3", "127.0.0.1", 0), -EADDRNOTAVAIL);

    /* Ids of other kinds, and unknown ones. */
    uint64_t listener;
    CHECK_EQ(evl_listen(loop, "127.0.0.1", 0, 0, 0, NULL, NULL, &listener), 0);
    int fds[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    uint64_t stream;
    CHECK_EQ(evl_stream_open(loop, fds[0], NULL, NULL, &stream), 0);
    uint64_t others[] = {0, listener, stream, udp + 1, udp ^ (1ull << 32)};
    for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
        CHECK_EQ(evl_udp_send(loop, others[i], "x", 1, &to, sizeof to), -ENOENT);
        CHECK_EQ(evl_udp_send_batch(loop, others[i], &d, 1, NULL), -ENOENT);
        CHECK_EQ(evl_udp_close(loop, others[i]), -ENOENT);
        CHECK_EQ(evl_udp_port(loop, others[i]), -ENOENT);
        CHECK_EQ(evl_udp_fd(loop, others[i]), -ENOENT);
        CHECK_EQ(evl_udp_queued(loop, others[i], &queued), -ENOENT);
        CHECK_EQ(evl_udp_pause(loop, others[i]), -ENOENT);
        CHECK_EQ(evl_udp_set_callback(loop, others[i], record, NULL), -ENOENT);
        CHECK_EQ(evl_udp_set_option(loop, others[i], EVL_UDP_OPT_TTL, 5), -ENOENT);
        CHECK_EQ(evl_udp_connect(loop, others[i], NULL, 0), -ENOENT);
    }
    CHECK_EQ(evl_stream_write(loop, udp, "x", 1), -ENOENT);
    CHECK_EQ(evl_stream_close(loop, udp), -ENOENT);
    CHECK_EQ(evl_stream_set_callback(loop, udp, record, NULL), -ENOENT);
    CHECK_EQ(evl_stream_fd(loop, udp), -ENOENT);
    CHECK_EQ(evl_listener_close(loop, udp), -ENOENT);
    CHECK_EQ(evl_listener_port(loop, udp), -ENOENT);
    CHECK_EQ(evl_timer_stop(loop, udp), -ENOENT);
    /* The socket's fd is the library's registration. */
    CHECK_EQ(evl_unregister(loop, evl_udp_fd(loop, udp)), -EBUSY);
    close(fds[1]);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* A server echoes each batch as it came (one evl_udp_send_batch per
 * event); a client sends 40 datagrams of 0 to 1,950 bytes and gets every
 * one back exactly once, from the server's address. */
static void test_udp_echo_callbacks(void) {
    evl_loop *loop = new_loop();
    static seen server, client;
    uint64_t s, c;
    s = bind_recorder(loop, "127.0.0.1", &server, 1);
    c = bind_recorder(loop, NULL, &client, 0);
    int port = evl_udp_port(loop, s);
    struct sockaddr_in to = v4("127.0.0.1", port);
    char msg[2048];
    for (int i = 0; i < 40; i++) {
        size_t len = (size_t)i * 50;
        memset(msg, 'a' + i % 26, len);
        if (len) msg[0] = (char)i;
        CHECK_EQ(evl_udp_send(loop, c, msg, len, &to, sizeof to), 0);
    }
    run_until(loop, &client.datagrams, 40);
    CHECK_EQ(server.datagrams, 40);
    CHECK_EQ(client.datagrams, 40);
    CHECK_EQ(server.truncated + client.truncated, 0);
    int got[40] = {0};
    for (int k = 0; k < 40; k++) {
        size_t len = client.len[k];
        CHECK(len % 50 == 0 && len < 2000);
        int i = (int)(len / 50);
        got[i]++;
        for (size_t j = 1; j < len; j++) CHECK(client.data[k][j] == 'a' + i % 26);
        if (len) CHECK_EQ(client.data[k][0], i);
        const struct sockaddr_in *from = (const struct sockaddr_in *)&client.from[k];
        CHECK_EQ(client.from_len[k], sizeof(struct sockaddr_in));
        CHECK_EQ(from->sin_family, AF_INET);
        CHECK_EQ(ntohs(from->sin_port), port);
    }
    for (int i = 0; i < 40; i++) CHECK_EQ(got[i], 1);
    CHECK_EQ(server.reentry, -EBUSY);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* The same through evl_stream_poll: one DATAGRAMS event per batch, its
 * datagrams valid until the next poll, echoed from the event array. */
static void test_udp_echo_batch(void) {
    evl_loop *loop = new_loop();
    uint64_t s, c;
    CHECK_EQ(evl_udp_bind(loop, "::1", 0, 0, NULL, (void *)1, &s), 0);
    CHECK_EQ(evl_udp_bind(loop, "::1", 0, 0, NULL, (void *)2, &c), 0);
    struct sockaddr_in6 to = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)evl_udp_port(loop, s))};
    inet_pton(AF_INET6, "::1", &to.sin6_addr);
    for (int i = 0; i < 20; i++) CHECK_EQ(evl_udp_send(loop, c, &i, sizeof i, &to, sizeof to), 0);
    evl_stream_event ev[4];
    int echoed = 0, back[20] = {0}, received = 0;
    for (int round = 0; round < 500 && received < 20; round++) {
        int n = evl_stream_poll(loop, 10, ev, 4);
        CHECK(n >= 0);
        for (int i = 0; i < n; i++) {
            CHECK_EQ(ev[i].kind, EVL_STREAM_DATAGRAMS);
            const evl_udp_datagram *d = (const evl_udp_datagram *)ev[i].data;
            if (ev[i].stream == s) {
                CHECK(ev[i].userdata == (void *)1);
                CHECK_EQ(evl_udp_send_batch(loop, s, d, (int)ev[i].len, NULL), 0);
                echoed += (int)ev[i].len;
            } else {
                CHECK_EQ(ev[i].stream, c);
                for (size_t j = 0; j < ev[i].len; j++) {
                    int k;
                    CHECK_EQ(d[j].len, sizeof k);
                    CHECK_EQ(d[j].addr_len, sizeof(struct sockaddr_in6));
                    memcpy(&k, d[j].data, sizeof k);
                    CHECK(k >= 0 && k < 20);
                    if (k >= 0 && k < 20) back[k]++;
                    received++;
                }
            }
        }
    }
    CHECK_EQ(echoed, 20);
    for (int i = 0; i < 20; i++) CHECK_EQ(back[i], 1);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* "::" is dual-stack: an IPv4 peer appears as ::ffff:127.0.0.1 and gets
 * its echo; EVL_UDP_IPV6_ONLY leaves the IPv4 port to others. */
static void test_udp_dual_stack(void) {
    evl_loop *loop = new_loop();
    static seen server, client;
    uint64_t s, c, v4only;
    s = bind_recorder(loop, "::", &server, 1);
    int port = evl_udp_port(loop, s);
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", port, 0, NULL, NULL, &v4only), -EADDRINUSE);
    c = bind_recorder(loop, "127.0.0.1", &client, 0);
    struct sockaddr_in to = v4("127.0.0.1", port);
    CHECK_EQ(evl_udp_send(loop, c, "hi", 2, &to, sizeof to), 0);
    run_until(loop, &client.datagrams, 1);
    CHECK_EQ(server.from_len[0], sizeof(struct sockaddr_in6));
    CHECK_EQ(server.from[0].sin6_family, AF_INET6);
    CHECK(IN6_IS_ADDR_V4MAPPED(&server.from[0].sin6_addr));
    CHECK_EQ(client.len[0], 2);
    CHECK(memcmp(client.data[0], "hi", 2) == 0);
    CHECK_EQ(evl_udp_close(loop, s), 0);
    CHECK_EQ(evl_udp_bind(loop, "::", 0, EVL_UDP_IPV6_ONLY, NULL, NULL, &s), 0);
    port = evl_udp_port(loop, s);
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", port, 0, NULL, NULL, &v4only), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* A datagram longer than the receive size comes cut to it, flagged; one
 * that fits (and an empty one) comes whole, unflagged. */
static void test_udp_truncation_is_reported(void) {
    evl_loop *loop = new_loop();
    static seen server;
    uint64_t s, c;
    s = bind_recorder(loop, "127.0.0.1", &server, 0);
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", 0, 0, NULL, NULL, &c), 0);
    CHECK_EQ(evl_udp_set_recv_size(loop, s, 16), 0);
    struct sockaddr_in to = v4("127.0.0.1", evl_udp_port(loop, s));
    char msg[100];
    for (int i = 0; i < 100; i++) msg[i] = (char)i;
    CHECK_EQ(evl_udp_send(loop, c, msg, 100, &to, sizeof to), 0);
    CHECK_EQ(evl_udp_send(loop, c, msg, 16, &to, sizeof to), 0);
    CHECK_EQ(evl_udp_send(loop, c, msg, 0, &to, sizeof to), 0);
    CHECK_EQ(evl_udp_send(loop, c, msg, 17, &to, sizeof to), 0);
    run_until(loop, &server.datagrams, 4);
    CHECK_EQ(server.truncated, 2);
    CHECK_EQ(server.len[0], 16);
    CHECK_EQ(server.len[1], 16);
    CHECK_EQ(server.len[2], 0);
    CHECK_EQ(server.len[3], 16);
    CHECK(memcmp(server.data[0], msg, 16) == 0);
    CHECK(memcmp(server.data[3], msg, 16) == 0);
    /* Every datagram's bytes and address lie in the regions the loop shows. */
    const uint8_t *data, *addrs;
    size_t data_len, addrs_len;
    CHECK_EQ(evl_udp_read_buffer(NULL, &data, &data_len, &addrs, &addrs_len), -EINVAL);
    CHECK_EQ(evl_udp_read_buffer(loop, NULL, &data_len, &addrs, &addrs_len), -EINVAL);
    CHECK_EQ(evl_udp_read_buffer(loop, &data, &data_len, &addrs, NULL), -EINVAL);
    CHECK_EQ(evl_udp_read_buffer(loop, &data, &data_len, &addrs, &addrs_len), 0);
    CHECK(data_len >= 64 * 65536 && addrs_len >= 64 * sizeof(struct sockaddr_in6));
    CHECK_EQ(evl_udp_send(loop, c, msg, 20, &to, sizeof to), 0);
    evl_stream_event ev[2];
    CHECK_EQ(evl_udp_set_callback(loop, s, NULL, NULL), 0);
    int n = 0;
    for (int i = 0; i < 100 && n == 0; i++) n = evl_stream_poll(loop, 10, ev, 2);
    CHECK_EQ(n, 1);
    const evl_udp_datagram *d = (const evl_udp_datagram *)ev[0].data;
    CHECK(d->data >= data && d->data + d->len <= data + data_len);
    CHECK((const uint8_t *)d->addr >= addrs && (const uint8_t *)d->addr + d->addr_len <= addrs + addrs_len);
    CHECK_EQ(evl_udp_set_callback(loop, s, record, &server), 0);
    /* Back to the default: nothing is cut. */
    CHECK_EQ(evl_udp_set_recv_size(loop, s, 65536), 0);
    static char big[65507];
    memset(big, 'b', sizeof big);
    CHECK_EQ(evl_udp_send(loop, c, big, sizeof big, &to, sizeof to), 0);
    run_until(loop, &server.datagrams, 5);
    CHECK_EQ(server.truncated, 2);
    CHECK_EQ(server.len[4], sizeof big);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* A connected socket sends without an address and hears ICMP errors. */
static void test_udp_connected(void) {
    evl_loop *loop = new_loop();
    static seen server, client;
    uint64_t s, c, gone;
    s = bind_recorder(loop, "127.0.0.1", &server, 1);
    c = bind_recorder(loop, "127.0.0.1", &client, 0);
    CHECK_EQ(evl_udp_connect(loop, c, "127.0.0.1", evl_udp_port(loop, s)), 0);
    CHECK_EQ(evl_udp_send(loop, c, "abc", 3, NULL, 0), 0);
    run_until(loop, &client.datagrams, 1);
    CHECK_EQ(client.len[0], 3);
    /* A port nobody listens on: the next receive reports the ICMP error.
     * A closed socket's fd (and so its port) stays open until its CLOSED
     * was delivered, as a stream's does. */
    static seen ended;
    gone = bind_recorder(loop, "127.0.0.1", &ended, 0);
    int port = evl_udp_port(loop, gone);
    int gone_fd = evl_udp_fd(loop, gone);
    CHECK(gone_fd >= 0);
    CHECK_EQ(evl_udp_close(loop, gone), 0);
    CHECK(fcntl(gone_fd, F_GETFD) != -1);
    run_until(loop, &ended.closed, 1);
    CHECK_EQ(ended.closed_status, 0);
    CHECK(fcntl(gone_fd, F_GETFD) == -1 && errno == EBADF);
    CHECK_EQ(evl_udp_connect(loop, c, "127.0.0.1", port), 0);
    CHECK_EQ(evl_udp_send(loop, c, "abc", 3, NULL, 0), 0);
    run_until(loop, &client.errors, 1);
    CHECK_EQ(client.last_error, -ECONNREFUSED);
    /* Dissolved: an address is needed again. */
    CHECK_EQ(evl_udp_connect(loop, c, NULL, 0), 0);
    CHECK_EQ(evl_udp_send(loop, c, "abc", 3, NULL, 0), -EDESTADDRREQ);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* Broadcast needs the option; multicast on the loopback interface: a
 * member gets what is sent to the group, and none once it left. */
static void test_udp_broadcast_and_multicast(void) {
    evl_loop *loop = new_loop();
    static seen member;
    uint64_t sender, m;
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", 0, 0, record, NULL, &sender), 0);
    struct sockaddr_in bcast = v4("127.255.255.255", 9);
    CHECK_EQ(evl_udp_send(loop, sender, "b", 1, &bcast, sizeof bcast), -EACCES);
    CHECK_EQ(evl_udp_set_option(loop, sender, EVL_UDP_OPT_BROADCAST, 1), 0);
    CHECK_EQ(evl_udp_send(loop, sender, "b", 1, &bcast, sizeof bcast), 0);
    uint64_t flagged;
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", 0, EVL_UDP_BROADCAST, NULL, NULL, &flagged), 0);
    CHECK_EQ(evl_udp_send(loop, flagged, "b", 1, &bcast, sizeof bcast), 0);

    m = bind_recorder(loop, "0.0.0.0", &member, 0);
    CHECK_EQ(evl_udp_membership(loop, m, "239.255.10.11", "127.0.0.1", 1), 0);
    CHECK_EQ(evl_udp_membership(loop, m, "239.255.10.11", "127.0.0.1", 1), -EADDRINUSE);
    CHECK_EQ(evl_udp_set_multicast_interface(loop, sender, "127.0.0.1"), 0);
    CHECK_EQ(evl_udp_set_option(loop, sender, EVL_UDP_OPT_MULTICAST_LOOP, 1), 0);
    CHECK_EQ(evl_udp_set_option(loop, sender, EVL_UDP_OPT_MULTICAST_TTL, 1), 0);
    struct sockaddr_in group = v4("239.255.10.11", evl_udp_port(loop, m));
    CHECK_EQ(evl_udp_send(loop, sender, "group", 5, &group, sizeof group), 0);
    run_until(loop, &member.datagrams, 1);
    CHECK_EQ(member.len[0], 5);
    CHECK(memcmp(member.data[0], "group", 5) == 0);
    CHECK_EQ(evl_udp_membership(loop, m, "239.255.10.11", "127.0.0.1", 0), 0);
    CHECK_EQ(evl_udp_membership(loop, m, "239.255.10.11", "127.0.0.1", 0), -EADDRNOTAVAIL);
    /* An IPv6 group on an IPv6 socket, by interface name. */
    uint64_t six;
    CHECK_EQ(evl_udp_bind(loop, "::", 0, 0, NULL, NULL, &six), 0);
    CHECK_EQ(evl_udp_membership(loop, six, "ff02::1:3", "lo", 1), 0);
    CHECK_EQ(evl_udp_membership(loop, six, "ff02::1:3", "127.0.0.1", 1), -EINVAL);
    CHECK_EQ(evl_udp_membership(loop, six, "ff02::1:3", "lo", 0), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
}

static void test_udp_reuseport(void) {
    evl_loop *loop = new_loop();
    uint64_t a, b, c;
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", 0, EVL_UDP_REUSEPORT, NULL, NULL, &a), 0);
    int port = evl_udp_port(loop, a);
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", port, EVL_UDP_REUSEPORT, NULL, NULL, &b), 0);
    CHECK_EQ(evl_udp_port(loop, b), port);
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", port, 0, NULL, NULL, &c), -EADDRINUSE);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* Closing: queued events dropped, exactly one CLOSED (0), the id answering
 * as a closed socket until it is delivered, then -ENOENT. A callback may
 * close its own socket; its later datagrams are never delivered. */
static void test_udp_close(void) {
    evl_loop *loop = new_loop();
    static seen server;
    uint64_t s, c;
    s = bind_recorder(loop, "127.0.0.1", &server, 0);
    server.close_itself = 1;
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", 0, 0, NULL, NULL, &c), 0);
    struct sockaddr_in to = v4("127.0.0.1", evl_udp_port(loop, s));
    for (int i = 0; i < 5; i++) CHECK_EQ(evl_udp_send(loop, c, "x", 1, &to, sizeof to), 0);
    run_until(loop, &server.closed, 1);
    CHECK_EQ(server.batches, 1);
    CHECK_EQ(server.closed_status, 0);
    CHECK_EQ(evl_udp_close(loop, s), -ENOENT);
    CHECK_EQ(evl_udp_send(loop, s, "x", 1, &to, sizeof to), -ENOENT);

    static seen other;
    s = bind_recorder(loop, "127.0.0.1", &other, 0);
    CHECK_EQ(evl_udp_close(loop, s), 0);
    /* Closed, CLOSED not delivered: as a closed socket. */
    size_t queued = 9;
    CHECK_EQ(evl_udp_send(loop, s, "x", 1, &to, sizeof to), -EPIPE);
    CHECK_EQ(evl_udp_send_batch(loop, s, NULL, 0, NULL), -EPIPE);
    CHECK_EQ(evl_udp_close(loop, s), 0);
    CHECK_EQ(evl_udp_pause(loop, s), 0);
    CHECK_EQ(evl_udp_set_watermarks(loop, s, 10, 1), 0);
    CHECK_EQ(evl_udp_queued(loop, s, &queued), 0);
    CHECK_EQ(queued, 0);
    CHECK_EQ(evl_udp_port(loop, s), -EBADF);
    CHECK_EQ(evl_udp_fd(loop, s), -EBADF);
    static seen moved;
    memset(&moved, 0, sizeof moved);
    CHECK_EQ(evl_udp_set_callback(loop, s, record, &moved), 0);
    CHECK_EQ(evl_run_once(loop, 0), 1);
    CHECK_EQ(other.closed, 0);
    CHECK_EQ(moved.closed, 1);
    CHECK_EQ(evl_udp_close(loop, s), -ENOENT);
    CHECK_EQ(evl_udp_set_callback(loop, s, record, &moved), -ENOENT);
    CHECK_EQ(evl_run_once(loop, 0), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* Paused, a socket receives nothing; resumed, what waited comes. Freeing
 * the loop with sockets open (memcheck checks the rest). */
static void test_udp_pause_and_free(void) {
    evl_loop *loop = new_loop();
    static seen server;
    uint64_t s, c;
    s = bind_recorder(loop, "127.0.0.1", &server, 0);
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", 0, 0, NULL, NULL, &c), 0);
    CHECK_EQ(evl_udp_pause(loop, s), 0);
    struct sockaddr_in to = v4("127.0.0.1", evl_udp_port(loop, s));
    CHECK_EQ(evl_udp_send(loop, c, "p", 1, &to, sizeof to), 0);
    for (int i = 0; i < 3; i++) CHECK(evl_run_once(loop, 10) >= 0);
    CHECK_EQ(server.datagrams, 0);
    CHECK_EQ(evl_udp_resume(loop, s), 0);
    run_until(loop, &server.datagrams, 1);
    CHECK_EQ(evl_udp_send(loop, c, "q", 1, &to, sizeof to), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* A socket the caller made, handed over: it echoes like one bound by the
 * library, and is closed with it. Stream sockets, Unix-domain sockets and
 * non-sockets are refused, and stay the caller's. */
static void test_udp_open_an_fd(void) {
    evl_loop *loop = new_loop();
    static seen server;
    memset(&server, 0, sizeof server);
    server.echo = 1;
    uint64_t s, c;
    CHECK_EQ(evl_udp_open(NULL, 0, record, NULL, &s), -EINVAL);
    CHECK_EQ(evl_udp_open(loop, -1, record, NULL, &s), -EINVAL);
    CHECK_EQ(evl_udp_open(loop, 0, record, NULL, NULL), -EINVAL);
    CHECK_EQ(evl_udp_open(loop, 1 << 20, record, NULL, &s), -EBADF);
    int p[2];
    CHECK_EQ(pipe(p), 0);
    CHECK_EQ(evl_udp_open(loop, p[0], record, NULL, &s), -ENOTSOCK);
    int tcp = socket(AF_INET, SOCK_STREAM, 0), local = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK_EQ(evl_udp_open(loop, tcp, record, NULL, &s), -EPROTOTYPE);
    CHECK_EQ(evl_udp_open(loop, local, record, NULL, &s), -EAFNOSUPPORT);
    int refused[] = {p[0], p[1], tcp, local};
    for (int i = 0; i < 4; i++) CHECK_EQ(close(refused[i]), 0); /* still the caller's */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = v4("127.0.0.1", 0);
    CHECK_EQ(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    CHECK_EQ(evl_udp_open(loop, fd, record, &server, &s), 0);
    CHECK_EQ(evl_udp_fd(loop, s), fd);
    CHECK_EQ(evl_udp_open(loop, fd, record, &server, &c), -EEXIST);
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", 0, 0, NULL, NULL, &c), 0);
    struct sockaddr_in to = v4("127.0.0.1", evl_udp_port(loop, s));
    CHECK_EQ(evl_udp_send(loop, c, "opened", 6, &to, sizeof to), 0);
    run_until(loop, &server.datagrams, 1);
    CHECK_EQ(server.len[0], 6);
    CHECK_EQ(evl_loop_free(loop), 0);
    CHECK_EQ(close(fd), -1); /* the library closed it */
}

/* A socket without a callback under evl_run_once: its events are dropped,
 * and what they pointed to released with them. (The library used to keep
 * a dropped event's bytes until a callback ran: with no callback at all,
 * the receive buffer filled after 64 datagrams and the socket was never
 * read again.) */
static void test_udp_without_callback_keeps_receiving(void) {
    evl_loop *loop = new_loop();
    static seen late;
    memset(&late, 0, sizeof late);
    uint64_t s, c;
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", 0, 0, NULL, NULL, &s), 0);
    CHECK_EQ(evl_udp_bind(loop, "127.0.0.1", 0, 0, NULL, NULL, &c), 0);
    struct sockaddr_in to = v4("127.0.0.1", evl_udp_port(loop, s));
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 20; i++) CHECK_EQ(evl_udp_send(loop, c, "x", 1, &to, sizeof to), 0);
        for (int i = 0; i < 3; i++) CHECK(evl_run_once(loop, 0) >= 0);
    }
    CHECK_EQ(evl_udp_set_callback(loop, s, record, &late), 0);
    CHECK_EQ(evl_udp_send(loop, c, "y", 1, &to, sizeof to), 0);
    run_until(loop, &late.datagrams, 1);
    CHECK_EQ(late.len[late.datagrams - 1], 1);
    CHECK_EQ(late.data[late.datagrams - 1][0], 'y');
    CHECK_EQ(evl_loop_free(loop), 0);
}

int main(int argc, char **argv) {
    static const harness_test tests[] = {
        TEST(test_udp_arguments),
        TEST(test_udp_echo_callbacks),
        TEST(test_udp_echo_batch),
        TEST(test_udp_dual_stack),
        TEST(test_udp_truncation_is_reported),
        TEST(test_udp_connected),
        TEST(test_udp_broadcast_and_multicast),
        TEST(test_udp_reuseport),
        TEST(test_udp_close),
        TEST(test_udp_pause_and_free),
        TEST(test_udp_without_callback_keeps_receiving),
        TEST(test_udp_open_an_fd),
    };
    return harness_main(argc, argv, tests, sizeof tests / sizeof *tests);
}
