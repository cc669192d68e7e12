/* libevent_tls_echo: the TLS echo server on libevent's OpenSSL
 * bufferevents, what bench/tls_bench.py sets beside evloop's
 * c-examples/tls_echo_server. The same service: echo every byte, close
 * when the client ends. One thread, one event base.
 *
 *   libevent_tls_echo --cert FILE --key FILE [--port P (0: printed first)] [--quiet]
 *
 * Needs libevent-dev and libssl-dev (the bench installs nothing: see
 * tls_bench.py); build:
 *   cc -O2 bench/tls/libevent_tls_echo.c $(pkg-config --cflags --libs libevent_openssl openssl) -o ...
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static SSL_CTX *ctx;

static void on_read(struct bufferevent *bev, void *arg) {
    (void)arg;
    bufferevent_write_buffer(bev, bufferevent_get_input(bev));
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
    (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) bufferevent_free(bev);
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg) {
    (void)sa;
    (void)len;
    (void)arg;
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    struct event_base *base = evconnlistener_get_base(listener);
    SSL *ssl = SSL_new(ctx);
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        evutil_closesocket(fd);
        return;
    }
    bufferevent_setcb(bev, on_read, NULL, on_event, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv) {
    const char *cert = NULL, *key = NULL;
    int port = 10443;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--cert") == 0 && i + 1 < argc) cert = argv[++i];
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) key = argv[++i];
        else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--quiet") == 0) {}
        else {
            fprintf(stderr, "usage: libevent_tls_echo --cert FILE --key FILE [--port P] [--quiet]\n");
            return 2;
        }
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (!cert || !key || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    struct event_base *base = event_base_new();
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct evconnlistener *listener = evconnlistener_new_bind(
        base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1, (struct sockaddr *)&sin, sizeof sin);
    if (!listener) {
        perror("listen");
        return 1;
    }
    struct sockaddr_in bound;
    socklen_t len = sizeof bound;
    getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&bound, &len);
    printf("%d\n", ntohs(bound.sin_port));
    fflush(stdout);
    struct event *term = evsignal_new(base, SIGTERM, on_signal, base);
    struct event *intr = evsignal_new(base, SIGINT, on_signal, base);
    event_add(term, NULL);
    event_add(intr, NULL);
    event_base_dispatch(base);
    event_free(term);
    event_free(intr);
    evconnlistener_free(listener);
    event_base_free(base);
    SSL_CTX_free(ctx);
    return 0;
}
