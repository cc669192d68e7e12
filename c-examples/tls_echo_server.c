/* tls_echo_server: the stream echo server over TLS.
 *
 * The same service as stream_echo_server (echo_stream_event() in common.h:
 * echo the bytes, close when the client has finished sending), on a
 * listener whose streams are TLS streams: two more calls, one to make the
 * server's TLS configuration from a certificate and its key, one to give
 * it to the listener. Each accepted stream is announced once its handshake
 * is done; one whose handshake fails (a client that sends garbage, stalls,
 * or refuses the certificate) is closed without bothering the program,
 * and --idle-timeout bounds a client that stalls the handshake.
 * Handshakes never block the loop. The client's end of input comes as its
 * close_notify; the close sends ours.
 *
 *   tls_echo_server --cert FILE --key FILE [--alpn P1,P2...] [--host H] [--port P]
 *                   [--idle-timeout MS] [--max-conns N] [--quiet]
 *
 * --alpn: the ALPN protocols it agrees to, in its order of preference (a
 * client that offers none of them is refused).
 *
 * A certificate for a try (openssl on the command line; the tests make
 * theirs with rcgen):
 *   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
 *     -keyout key.pem -out cert.pem -days 30 -subj /CN=localhost \
 *     -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
 *     -addext basicConstraints=critical,CA:FALSE
 *   tls_echo_server --cert cert.pem --key key.pem --port 0 &
 *   echo_client --tls --ca cert.pem --server-name localhost --port PORT
 */
#include "common.h"

static const char usage[] =
    "usage: tls_echo_server --cert FILE --key FILE [--alpn P1,P2...] [--host H]\n"
    "                       [--port P (0: any, printed first)]\n"
    "                       [--idle-timeout MS] [--max-conns N] [--quiet]\n"
    "Echo server over TLS on evloop's streams, default 127.0.0.1:10443;\n"
    "FILEs: the certificate chain and its private key, PEM.\n";

/* "h2,http/1.1" as the configuration's ALPN protocols. */
static void set_alpn(evl_tls_config *tls, const char *list) {
    char *copy = strdup(list), *names[16], *save = NULL;
    int count = 0;
    if (!copy) die("strdup", -ENOMEM);
    for (char *name = strtok_r(copy, ",", &save); name && count < 16; name = strtok_r(NULL, ",", &save))
        names[count++] = name;
    int rc = evl_tls_config_set_alpn(tls, (const char *const *)names, count);
    free(copy);
    if (rc < 0) {
        fprintf(stderr, "--alpn %s: %s\n", list, evl_tls_config_last_error(tls));
        exit(2);
    }
}

int main(int argc, char **argv) {
    struct options o;
    parse_options(argc, argv, OPT_IDLE | OPT_MAX_CONNS | OPT_TLS_SERVER, 10443, usage, &o);
    if (!o.cert) {
        fputs("--cert and --key are needed\n", stderr);
        usage_exit(usage, 2);
    }
    evl_tls_config *tls;
    int rc = evl_tls_config_new_server(&tls);
    if (rc < 0) die("evl_tls_config_new_server", rc);
    if (evl_tls_config_set_certificate_files(tls, o.cert, o.key) < 0) {
        fprintf(stderr, "%s\n", evl_tls_config_last_error(tls));
        return 1;
    }
    if (o.alpn) set_alpn(tls, o.alpn);

    evl_loop *loop;
    if ((rc = evl_loop_new(&loop)) < 0) die("evl_loop_new", rc);
    uint64_t listener;
    rc = evl_listen(loop, o.host, o.port, 0, 0, echo_stream_event, NULL, &listener);
    if (rc < 0) die("evl_listen", rc);
    if ((rc = evl_listener_set_tls(loop, listener, tls)) < 0) {
        fprintf(stderr, "%s: %s\n", evl_strerror(rc), evl_tls_config_last_error(tls));
        return 1;
    }
    evl_tls_config_free(tls); /* the listener keeps what it needs */
    if (o.idle_ms > 0) evl_stream_set_idle_timeout(loop, listener, (uint32_t)o.idle_ms);
    if (o.max_conns > 0) evl_listener_set_max_conns(loop, listener, (int)o.max_conns);
    int port = evl_listener_port(loop, listener);
    if (o.port == 0) printf("%d\n", port);
    say("TLS echo server on %s port %d", o.host, port);

    bool stopping = false;
    watch_stop_signals(loop, &stopping);
    if ((rc = evl_run(loop)) < 0) die("evl_run", rc);
    say("stopping");
    /* Closes the listener and every stream still open. */
    evl_loop_free(loop);
    return 0;
}
