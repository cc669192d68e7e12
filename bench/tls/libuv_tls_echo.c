/* libuv_tls_echo: the TLS echo server on libuv with OpenSSL through memory
 * BIOs (libuv has no TLS of its own: this is what its users write, or take
 * from a wrapper), what bench/tls_bench.py sets beside evloop's
 * c-examples/tls_echo_server. The same service: echo every byte, close
 * when the client ends. One thread, one uv loop.
 *
 * Reads go into the read BIO; the handshake or SSL_read takes them; each
 * plaintext chunk is given back to SSL_write; what the write BIO then
 * holds goes out in one uv_write.
 *
 *   libuv_tls_echo --cert FILE --key FILE [--port P (0: printed first)] [--quiet]
 *
 * Needs libuv1-dev and libssl-dev; build:
 *   cc -O2 bench/tls/libuv_tls_echo.c $(pkg-config --cflags --libs libuv openssl) -o ...
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static SSL_CTX *ctx;

typedef struct {
    uv_tcp_t tcp;
    SSL *ssl;
    BIO *in, *out;
} conn;

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
} write_req;

static void on_closed(uv_handle_t *h) {
    conn *c = (conn *)h;
    SSL_free(c->ssl); /* frees both BIOs */
    free(c);
}

static void on_written(uv_write_t *req, int status) {
    (void)status;
    write_req *w = (write_req *)req;
    free(w->buf.base);
    free(w);
}

/* Sends what OpenSSL wrote into the write BIO. */
static void flush_out(conn *c) {
    size_t pending = BIO_ctrl_pending(c->out);
    if (pending == 0) return;
    write_req *w = malloc(sizeof *w);
    w->buf = uv_buf_init(malloc(pending), (unsigned)pending);
    BIO_read(c->out, w->buf.base, (int)pending);
    uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_written);
}

static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    static char slab[65536];
    (void)suggested;
    *buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    conn *c = (conn *)s;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_closed);
        return;
    }
    BIO_write(c->in, buf->base, (int)n);
    if (!SSL_is_init_finished(c->ssl)) {
        int rc = SSL_do_handshake(c->ssl);
        flush_out(c);
        if (rc <= 0) {
            int err = SSL_get_error(c->ssl, rc);
            if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) uv_close((uv_handle_t *)s, on_closed);
            return;
        }
    }
    static char plain[65536];
    for (;;) {
        int got = SSL_read(c->ssl, plain, sizeof plain);
        if (got <= 0) {
            int err = SSL_get_error(c->ssl, got);
            if (err != SSL_ERROR_WANT_READ) {
                flush_out(c);
                uv_close((uv_handle_t *)s, on_closed);
                return;
            }
            break;
        }
        SSL_write(c->ssl, plain, got);
    }
    flush_out(c);
}

static void on_connection(uv_stream_t *server, int status) {
    if (status < 0) return;
    conn *c = calloc(1, sizeof *c);
    uv_tcp_init(server->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, NULL);
        free(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->ssl = SSL_new(ctx);
    c->in = BIO_new(BIO_s_mem());
    c->out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c->in, -1);
    SSL_set_bio(c->ssl, c->in, c->out);
    SSL_set_accept_state(c->ssl);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_buf, on_read);
}

static void on_signal(uv_signal_t *sig, int signum) {
    (void)signum;
    uv_stop(sig->loop);
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
            fprintf(stderr, "usage: libuv_tls_echo --cert FILE --key FILE [--port P] [--quiet]\n");
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
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    if (uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection) != 0) {
        perror("listen");
        return 1;
    }
    struct sockaddr_in bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
    printf("%d\n", ntohs(bound.sin_port));
    fflush(stdout);
    uv_signal_t term, intr;
    uv_signal_init(loop, &term);
    uv_signal_init(loop, &intr);
    uv_signal_start(&term, on_signal, SIGTERM);
    uv_signal_start(&intr, on_signal, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    SSL_CTX_free(ctx);
    return 0;
}
