/* udp_echo_libuv: libuv's UDP echo server, for bench/udp_echo_bench.py.
 *
 * uv_udp_recv_start; each datagram goes back with uv_udp_try_send (one
 * sendmsg, no request, no copy: libuv's cheapest way), and only when the
 * socket is full with uv_udp_send (a request and a copy). The receive
 * buffer is a static one, so no malloc per datagram either: libuv at its
 * best. --recvmmsg makes the socket with UV_UDP_RECVMMSG: libuv then
 * receives up to 20 datagrams per recvmmsg into one buffer of 20 slots of
 * 64 KiB, and calls the callback once per datagram.
 *
 *   udp_echo_libuv [--port P] [--recvmmsg] [--quiet]
 *
 * Needs libuv1-dev (for the benchmark only): cc ... $(pkg-config --cflags
 * --libs libuv). --port 0 (the default) prints the port chosen on the
 * first line; SIGINT or SIGTERM ends it with status 0.
 */
#define _GNU_SOURCE /* uv.h needs POSIX's threads and sockets, which -std=c11 hides */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

enum { SLOT = 64 * 1024, WIDTH = 20 };

static char buffer[SLOT * WIDTH];
static int recvmmsg_mode;

typedef struct {
    uv_udp_send_t req;
    char data[];
} copied_send;

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(buffer, recvmmsg_mode ? sizeof buffer : SLOT);
}

static void on_sent(uv_udp_send_t *req, int status) {
    (void)status;
    free(req);
}

static void on_recv(uv_udp_t *udp, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags) {
    if (nread < 0 || addr == NULL) return; /* nothing, or the end of a recvmmsg batch */
    (void)flags;
    uv_buf_t reply = uv_buf_init(buf->base, (unsigned)nread);
    int rc = uv_udp_try_send(udp, &reply, 1, addr);
    if (rc == UV_EAGAIN) {
        copied_send *s = malloc(sizeof *s + (size_t)nread);
        if (!s) return;
        memcpy(s->data, buf->base, (size_t)nread);
        reply = uv_buf_init(s->data, (unsigned)nread);
        if (uv_udp_send(&s->req, udp, &reply, 1, addr, on_sent) < 0) free(s);
    }
}

static void on_signal(uv_signal_t *signal, int signo) {
    (void)signo;
    uv_stop(signal->loop);
}

static void close_handle(uv_handle_t *handle, void *arg) {
    (void)arg;
    if (!uv_is_closing(handle)) uv_close(handle, NULL);
}

int main(int argc, char **argv) {
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--recvmmsg") == 0) recvmmsg_mode = 1;
        else if (strcmp(argv[i], "--quiet") == 0) {}
        else {
            fprintf(stderr, "usage: udp_echo_libuv [--port P] [--recvmmsg] [--quiet]\n");
            return 2;
        }
    }
    uv_loop_t *loop = uv_default_loop();
    uv_udp_t udp;
    int rc = uv_udp_init_ex(loop, &udp, AF_INET | (recvmmsg_mode ? UV_UDP_RECVMMSG : 0));
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    if (rc == 0) rc = uv_udp_bind(&udp, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_udp_recv_start(&udp, on_alloc, on_recv);
    if (rc != 0) {
        fprintf(stderr, "udp: %s\n", uv_strerror(rc));
        return 1;
    }
    if (recvmmsg_mode && !uv_udp_using_recvmmsg(&udp)) {
        fprintf(stderr, "libuv did not turn recvmmsg on\n");
        return 1;
    }
    struct sockaddr_in bound;
    int len = sizeof bound;
    uv_udp_getsockname(&udp, (struct sockaddr *)&bound, &len);
    if (port == 0) printf("%d\n", ntohs(bound.sin_port));
    fflush(stdout);
    uv_signal_t sigint, sigterm;
    uv_signal_init(loop, &sigint);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_walk(loop, close_handle, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
