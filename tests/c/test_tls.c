/* The TLS functions of the C ABI: argument checks and configurations, a
 * TLS listener and TLS connects driven by callbacks and by the batch
 * interface, certificate errors with their reasons, configurations freed
 * while in use, and loops freed with handshakes under way (memcheck checks
 * the rest). The certificates are made by tests/c_tls.rs, which passes
 * their directory in EVLOOP_TLS_DIR: ca.pem, server.pem/.key,
 * expired.pem/.key, self.pem/.key. */
#define _GNU_SOURCE
#include "evloop.h"
#include "harness.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *cert_path(const char *name) {
    static char paths[8][512];
    static int next;
    char *path = paths[next++ % 8];
    const char *dir = getenv("EVLOOP_TLS_DIR");
    snprintf(path, 512, "%s/%s", dir ? dir : ".", name);
    return path;
}

static evl_tls_config *server_config(const char *stem) {
    evl_tls_config *cfg = NULL;
    char chain[64], key[64];
    snprintf(chain, sizeof chain, "%s.pem", stem);
    snprintf(key, sizeof key, "%s.key", stem);
    CHECK_EQ(evl_tls_config_new_server(&cfg), 0);
    CHECK_EQ(evl_tls_config_set_certificate_files(cfg, cert_path(chain), cert_path(key)), 0);
    const char *alpn[] = {"h2", "http/1.1"};
    CHECK_EQ(evl_tls_config_set_alpn(cfg, alpn, 2), 0);
    return cfg;
}

static evl_tls_config *client_config(void) {
    evl_tls_config *cfg = NULL;
    CHECK_EQ(evl_tls_config_new_client(&cfg), 0);
    CHECK_EQ(evl_tls_config_add_ca_file(cfg, cert_path("ca.pem")), 1);
    const char *alpn[] = {"http/1.1", "h2"};
    CHECK_EQ(evl_tls_config_set_alpn(cfg, alpn, 2), 0);
    return cfg;
}

static void ignore_event(evl_loop *loop, const evl_stream_event *ev) {
    (void)loop;
    (void)ev;
}

static void test_tls_arguments(void) {
    evl_tls_config *cfg = NULL;
    uint64_t id;
    char buf[8];
    const char *alpn[] = {"h2", ""};
    CHECK_EQ(evl_tls_config_new_server(NULL), -EINVAL);
    CHECK_EQ(evl_tls_config_new_client(NULL), -EINVAL);
    CHECK_EQ(evl_tls_config_free(NULL), -EINVAL);
    CHECK(strcmp(evl_tls_config_last_error(NULL), "") == 0);
    CHECK_EQ(evl_tls_config_set_certificate_pem(NULL, "x", 1, "y", 1), -EINVAL);
    CHECK_EQ(evl_tls_config_set_certificate_files(NULL, "a", "b"), -EINVAL);
    CHECK_EQ(evl_tls_config_add_ca_pem(NULL, "x", 1), -EINVAL);
    CHECK_EQ(evl_tls_config_add_ca_file(NULL, "a"), -EINVAL);
    CHECK_EQ(evl_tls_config_add_system_roots(NULL), -EINVAL);
    CHECK_EQ(evl_tls_config_set_alpn(NULL, alpn, 1), -EINVAL);
    CHECK_EQ(evl_tls_config_set_verify(NULL, EVL_TLS_VERIFY_PEER), -EINVAL);
    CHECK_EQ(evl_tls_config_set_versions(NULL, 0, 0), -EINVAL);
    CHECK_EQ(evl_listener_set_tls(NULL, 1, NULL), -EINVAL);
    CHECK_EQ(evl_tls_connect(NULL, "127.0.0.1", 1, NULL, NULL, ignore_event, NULL, &id), -EINVAL);
    CHECK_EQ(evl_tls_start(NULL, 1, NULL, NULL), -EINVAL);
    CHECK_EQ(evl_tls_handshaking(NULL, 1), -EINVAL);
    CHECK_EQ(evl_tls_version(NULL, 1), -EINVAL);
    CHECK_EQ(evl_tls_cipher_suite(NULL, 1), -EINVAL);
    CHECK_EQ(evl_tls_alpn(NULL, 1, buf, sizeof buf), -EINVAL);
    CHECK_EQ(evl_tls_server_name(NULL, 1, buf, sizeof buf), -EINVAL);
    CHECK_EQ(evl_tls_peer_certificate(NULL, 1, 0, (uint8_t *)buf, sizeof buf), -EINVAL);
    CHECK_EQ(evl_tls_error_reason(NULL, 1, buf, sizeof buf), -EINVAL);

    CHECK_EQ(evl_tls_config_new_server(&cfg), 0);
    CHECK_EQ(evl_tls_config_set_certificate_pem(cfg, NULL, 5, "y", 1), -EINVAL);
    CHECK_EQ(evl_tls_config_set_certificate_pem(cfg, "junk", 4, "junk", 4), EVL_ETLS_CONFIG);
    CHECK(strstr(evl_tls_config_last_error(cfg), "CERTIFICATE") != NULL);
    CHECK_EQ(evl_tls_config_set_certificate_files(cfg, NULL, "b"), -EINVAL);
    CHECK_EQ(evl_tls_config_set_certificate_files(cfg, "/nonexistent/a.pem", "/nonexistent/a.key"), -ENOENT);
    CHECK(strstr(evl_tls_config_last_error(cfg), "/nonexistent/a.pem") != NULL);
    CHECK_EQ(evl_tls_config_add_ca_file(cfg, "/nonexistent/ca.pem"), -ENOENT);
    CHECK_EQ(evl_tls_config_set_alpn(cfg, NULL, 1), -EINVAL);
    CHECK_EQ(evl_tls_config_set_alpn(cfg, alpn, -1), -EINVAL);
    CHECK_EQ(evl_tls_config_set_alpn(cfg, alpn, 2), -EINVAL); /* an empty name */
    CHECK_EQ(evl_tls_config_set_alpn(cfg, NULL, 0), 0);
    CHECK_EQ(evl_tls_config_set_verify(cfg, 99), -EINVAL);
    CHECK_EQ(evl_tls_config_set_versions(cfg, EVL_TLS_1_3, EVL_TLS_1_2), -EINVAL);
    CHECK_EQ(evl_tls_config_set_versions(cfg, 0x0302, 0), -EINVAL);

    evl_loop *loop = new_loop();
    uint64_t listener;
    CHECK_EQ(evl_listen(loop, "127.0.0.1", 0, 0, 0, ignore_event, NULL, &listener), 0);
    /* No certificate yet: it cannot be built. */
    CHECK_EQ(evl_listener_set_tls(loop, listener, cfg), EVL_ETLS_CONFIG);
    CHECK(strstr(evl_tls_config_last_error(cfg), "certificate") != NULL);
    CHECK_EQ(evl_tls_config_set_certificate_files(cfg, cert_path("server.pem"), cert_path("server.key")), 0);
    CHECK_EQ(evl_listener_set_tls(loop, 12345, cfg), -ENOENT);
    CHECK_EQ(evl_listener_set_tls(loop, listener, cfg), 0);
    /* In use: frozen. */
    CHECK_EQ(evl_tls_config_set_alpn(cfg, NULL, 0), -EBUSY);
    CHECK_EQ(evl_tls_config_set_verify(cfg, EVL_TLS_VERIFY_PEER), -EBUSY);
    CHECK_EQ(evl_listener_set_tls(loop, listener, NULL), 0);
    /* A server's configuration cannot connect; a client's cannot listen. */
    CHECK_EQ(evl_tls_connect(loop, "127.0.0.1", 1, cfg, NULL, ignore_event, NULL, &id), -EINVAL);
    evl_tls_config *client = client_config();
    CHECK_EQ(evl_listener_set_tls(loop, listener, client), -EINVAL);
    CHECK_EQ(evl_tls_connect(loop, NULL, 1, client, NULL, ignore_event, NULL, &id), -EINVAL);
    CHECK_EQ(evl_tls_connect(loop, "127.0.0.1", 1, client, NULL, ignore_event, NULL, NULL), -EINVAL);
    CHECK_EQ(evl_tls_connect(loop, "127.0.0.1", 1, NULL, NULL, ignore_event, NULL, &id), -EINVAL);
    CHECK_EQ(evl_tls_connect(loop, "127.0.0.1", 1, client, "bad name!", ignore_event, NULL, &id), -EINVAL);
    CHECK(strstr(evl_tls_config_last_error(client), "bad name!") != NULL);
    /* Queries on what is not a TLS stream. */
    uint64_t plain;
    CHECK_EQ(evl_connect(loop, "127.0.0.1", evl_listener_port(loop, listener), ignore_event, NULL, &plain), 0);
    CHECK_EQ(evl_tls_version(loop, plain), -EINVAL);
    CHECK_EQ(evl_tls_alpn(loop, plain, buf, sizeof buf), -EINVAL);
    CHECK_EQ(evl_tls_version(loop, 777), -ENOENT);
    CHECK_EQ(evl_tls_start(loop, 777, client, "localhost"), -ENOENT);
    CHECK_EQ(evl_tls_start(loop, plain, client, NULL), -EINVAL); /* a client needs a name */
    CHECK_EQ(evl_tls_start(loop, plain, client, "localhost"), 0);
    CHECK_EQ(evl_tls_start(loop, plain, client, "localhost"), -EALREADY);
    CHECK_EQ(evl_tls_handshaking(loop, plain), 1);
    CHECK_EQ(evl_tls_version(loop, plain), 0);
    CHECK_EQ(evl_tls_alpn(loop, plain, NULL, 4), -EINVAL);
    CHECK_EQ(evl_tls_server_name(loop, plain, buf, sizeof buf), 9);
    CHECK(strncmp(buf, "localhos", 8) == 0 && buf[7] == 's'); /* cut to fit, no NUL */
    CHECK_EQ(evl_tls_server_name(loop, plain, NULL, 0), 9);
    CHECK_EQ(evl_tls_error_reason(loop, plain, buf, sizeof buf), 0);
    CHECK_EQ(evl_tls_config_free(cfg), 0);
    CHECK_EQ(evl_tls_config_free(client), 0);
    CHECK(strcmp(evl_strerror(EVL_ETLS_CERT), "TLS certificate verification failed") == 0);
    CHECK(strcmp(evl_strerror(EVL_ETLS_HANDSHAKE), "TLS handshake failed") == 0);
    CHECK(strcmp(evl_strerror(EVL_ETLS_PROTOCOL), "TLS protocol error") == 0);
    CHECK(strcmp(evl_strerror(EVL_ETLS_CONFIG), "TLS configuration refused") == 0);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* ---- an echo over TLS, through callbacks --------------------------------- */

typedef struct {
    uint64_t client, server;
    int connected, accepted, server_eof, client_eof, closed, closed_status[2];
    size_t echoed;
    char got[256];
    size_t got_len;
    char alpn[16];
    int version, cert_len;
} echo_state;

static void on_echo(evl_loop *loop, const evl_stream_event *ev) {
    echo_state *st = ev->userdata;
    switch (ev->kind) {
    case EVL_STREAM_ACCEPTED:
        st->accepted++;
        st->server = ev->stream;
        /* Announced after the handshake: what it agreed on is known. */
        CHECK_EQ(evl_tls_handshaking(loop, ev->stream), 0);
        CHECK_EQ(evl_tls_alpn(loop, ev->stream, st->alpn, sizeof st->alpn), 2);
        break;
    case EVL_STREAM_CONNECTED:
        CHECK_EQ(ev->status, 0);
        st->connected++;
        st->version = evl_tls_version(loop, ev->stream);
        st->cert_len = evl_tls_peer_certificate(loop, ev->stream, 0, NULL, 0);
        break;
    case EVL_STREAM_DATA:
        if (ev->stream == st->server) {
            CHECK_EQ(evl_stream_write(loop, ev->stream, ev->data, ev->len), 0);
            st->echoed += ev->len;
        } else {
            CHECK(st->got_len + ev->len <= sizeof st->got);
            memcpy(st->got + st->got_len, ev->data, ev->len);
            st->got_len += ev->len;
            if (st->got_len == 10) CHECK_EQ(evl_stream_shutdown(loop, st->client), 0);
        }
        break;
    case EVL_STREAM_EOF:
        if (ev->stream == st->server) {
            st->server_eof++;
            CHECK_EQ(evl_stream_close(loop, ev->stream), 0);
        } else {
            st->client_eof++;
        }
        break;
    case EVL_STREAM_CLOSED:
        st->closed_status[st->closed++ % 2] = ev->status;
        break;
    default:
        break;
    }
}

static void test_tls_echo_callbacks(void) {
    echo_state st = {0};
    evl_loop *loop = new_loop();
    evl_tls_config *server = server_config("server"), *client = client_config();
    uint64_t listener;
    CHECK_EQ(evl_listen(loop, "127.0.0.1", 0, 0, 0, on_echo, &st, &listener), 0);
    CHECK_EQ(evl_listener_set_tls(loop, listener, server), 0);
    int port = evl_listener_port(loop, listener);
    CHECK_EQ(evl_tls_connect(loop, "localhost", port, client, NULL, on_echo, &st, &st.client), 0);
    /* Both configurations may go now: the listener and stream keep theirs. */
    CHECK_EQ(evl_tls_config_free(server), 0);
    CHECK_EQ(evl_tls_config_free(client), 0);
    CHECK_EQ(evl_stream_write(loop, st.client, "hello", 5), 0);
    CHECK_EQ(evl_stream_write(loop, st.client, "world", 5), 0);
    for (int i = 0; i < 2000 && st.closed < 2; i++) evl_run_once(loop, 10);
    CHECK_EQ(st.accepted, 1);
    CHECK_EQ(st.connected, 1);
    CHECK(strcmp(st.alpn, "h2") == 0);
    CHECK_EQ(st.version, EVL_TLS_1_3);
    CHECK(st.cert_len > 100);
    CHECK_EQ(st.got_len, 10);
    CHECK(memcmp(st.got, "helloworld", 10) == 0);
    CHECK_EQ(st.server_eof, 1);
    CHECK_EQ(st.client_eof, 1);
    CHECK_EQ(st.closed, 2);
    CHECK_EQ(st.closed_status[0], 0);
    CHECK_EQ(st.closed_status[1], 0);
    CHECK_EQ(evl_listener_close(loop, listener), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* ---- the same through the batch interface -------------------------------- */

static void test_tls_echo_batch(void) {
    evl_loop *loop = new_loop();
    evl_tls_config *server = server_config("server"), *client = client_config();
    uint64_t listener, cl, sv = 0;
    CHECK_EQ(evl_listen(loop, "127.0.0.1", 0, 0, 0, NULL, NULL, &listener), 0);
    CHECK_EQ(evl_listener_set_tls(loop, listener, server), 0);
    CHECK_EQ(evl_tls_connect(loop, "127.0.0.1", evl_listener_port(loop, listener), client, NULL, NULL, NULL, &cl), 0);
    static char big[200000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7);
    evl_stream_op op = {.stream = cl, .op = EVL_OP_WRITE, .data = big, .len = sizeof big};
    CHECK_EQ(evl_stream_submit(loop, &op, 1), 0);
    static char echoed[200000];
    size_t back = 0;
    int closed = 0;
    evl_stream_event events[16];
    for (int i = 0; i < 3000 && closed < 2; i++) {
        int n = evl_stream_poll(loop, 10, events, 16);
        CHECK(n >= 0);
        for (int k = 0; k < n; k++) {
            const evl_stream_event *ev = &events[k];
            if (ev->kind == EVL_STREAM_ACCEPTED) sv = ev->stream;
            if (ev->kind == EVL_STREAM_DATA && ev->stream == sv) {
                evl_stream_op echo = {.stream = sv, .op = EVL_OP_WRITE, .data = ev->data, .len = ev->len};
                CHECK_EQ(evl_stream_submit(loop, &echo, 1), 0);
            }
            if (ev->kind == EVL_STREAM_DATA && ev->stream == cl) {
                CHECK(back + ev->len <= sizeof echoed);
                memcpy(echoed + back, ev->data, ev->len);
                back += ev->len;
                if (back == sizeof big) {
                    evl_stream_op end[2] = {{.stream = cl, .op = EVL_OP_CLOSE}, {.stream = sv, .op = EVL_OP_CLOSE}};
                    CHECK_EQ(evl_stream_submit(loop, end, 2), 0);
                }
            }
            if (ev->kind == EVL_STREAM_CLOSED) {
                CHECK_EQ(ev->status, 0);
                closed++;
            }
        }
    }
    CHECK_EQ(back, sizeof big);
    CHECK(memcmp(big, echoed, sizeof big) == 0);
    CHECK_EQ(closed, 2);
    CHECK_EQ(evl_tls_config_free(server), 0);
    CHECK_EQ(evl_tls_config_free(client), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* ---- certificate errors ---------------------------------------------------- */

typedef struct {
    int connected_status, closed_status, closed, accepted;
    char reason[256];
} failure_state;

static void on_failure(evl_loop *loop, const evl_stream_event *ev) {
    failure_state *st = ev->userdata;
    if (ev->kind == EVL_STREAM_ACCEPTED) st->accepted++;
    if (ev->kind == EVL_STREAM_CONNECTED) {
        st->connected_status = ev->status;
        /* The reason is known from here on. */
        CHECK(evl_tls_error_reason(loop, ev->stream, st->reason, sizeof st->reason) > 0);
    }
    if (ev->kind == EVL_STREAM_CLOSED) {
        st->closed_status = ev->status;
        st->closed++;
    }
}

static void expect_failure(const char *stem, const char *name, int status, const char *words) {
    failure_state st = {0};
    evl_loop *loop = new_loop();
    evl_tls_config *server = server_config(stem), *client = client_config();
    uint64_t listener, id;
    CHECK_EQ(evl_listen(loop, "127.0.0.1", 0, 0, 0, on_failure, &st, &listener), 0);
    CHECK_EQ(evl_listener_set_tls(loop, listener, server), 0);
    CHECK_EQ(evl_tls_connect(loop, "127.0.0.1", evl_listener_port(loop, listener), client, name, on_failure, &st, &id), 0);
    for (int i = 0; i < 1000 && st.closed < 1; i++) evl_run_once(loop, 10);
    CHECK_EQ(st.connected_status, status);
    CHECK_EQ(st.closed_status, status);
    CHECK_EQ(st.closed, 1);
    CHECK_EQ(st.accepted, 0);
    if (strstr(st.reason, words) == NULL) {
        fprintf(stderr, "reason \"%s\" lacks \"%s\"\n", st.reason, words);
        CHECK(0);
    }
    /* Still known once the id is dead. */
    char again[256];
    CHECK_EQ(evl_tls_error_reason(loop, id, again, sizeof again), (int)strlen(st.reason));
    CHECK_EQ(evl_stream_close(loop, id), -ENOENT);
    CHECK_EQ(evl_tls_config_free(server), 0);
    CHECK_EQ(evl_tls_config_free(client), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
}

static void test_tls_certificate_errors(void) {
    expect_failure("server", "example.com", EVL_ETLS_CERT, "not valid for name \"example.com\"");
    expect_failure("expired", "localhost", EVL_ETLS_CERT, "certificate expired");
    expect_failure("self", "localhost", EVL_ETLS_CERT, "UnknownIssuer");
}

/* ---- loops freed with handshakes under way ------------------------------- */

static void test_tls_free_loop_mid_handshake(void) {
    evl_loop *loop = new_loop();
    evl_tls_config *server = server_config("server"), *client = client_config();
    uint64_t listener, id;
    CHECK_EQ(evl_listen(loop, "127.0.0.1", 0, 0, 0, ignore_event, NULL, &listener), 0);
    CHECK_EQ(evl_listener_set_tls(loop, listener, server), 0);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(evl_tls_connect(loop, "localhost", evl_listener_port(loop, listener), client, NULL, ignore_event, NULL, &id), 0);
        CHECK_EQ(evl_stream_write(loop, id, "early", 5), 0);
    }
    for (int i = 0; i < 3; i++) evl_run_once(loop, 5);
    CHECK_EQ(evl_loop_free(loop), 0);
    CHECK_EQ(evl_tls_config_free(server), 0);
    CHECK_EQ(evl_tls_config_free(client), 0);
}

int main(int argc, char **argv) {
    static const harness_test tests[] = {
        {"test_tls_arguments", test_tls_arguments},
        {"test_tls_echo_callbacks", test_tls_echo_callbacks},
        {"test_tls_echo_batch", test_tls_echo_batch},
        {"test_tls_certificate_errors", test_tls_certificate_errors},
        {"test_tls_free_loop_mid_handshake", test_tls_free_loop_mid_handshake},
    };
    return harness_main(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
