/* https_get: fetches a URL over HTTPS with evloop's TLS streams and writes
 * the response (status line, headers, body) to stdout.
 *
 * One TLS connect (evl_tls_connect: the TCP connect, the handshake and the
 * certificate check against the host name never block the loop), one
 * write (the request, queued until the handshake is done), then the
 * response as it comes, until the server ends it ("Connection: close").
 * A failed handshake or certificate check says why.
 *
 *   https_get [--ca FILE] [--insecure] https://HOST[:PORT][/PATH]
 *
 * --ca FILE trusts the CA certificates in FILE (PEM) instead of the
 * system's roots; --insecure checks nothing (for tests only). The exit
 * status is 0 once the server closed after a response, 1 otherwise.
 */
#define _GNU_SOURCE
#include "evloop.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] = "usage: https_get [--ca FILE] [--insecure] https://HOST[:PORT][/PATH]\n";

struct fetch {
    size_t received;
    bool done, failed;
};

static void on_stream(evl_loop *loop, const evl_stream_event *ev) {
    struct fetch *f = ev->userdata;
    char reason[512];
    switch (ev->kind) {
    case EVL_STREAM_CONNECTED: /* TCP connected and TLS handshake done, or why not */
        if (ev->status == 0) {
            char alpn[32];
            if (evl_tls_alpn(loop, ev->stream, alpn, sizeof alpn) > 0)
                fprintf(stderr, "TLS 1.%d, ALPN %s\n", evl_tls_version(loop, ev->stream) - 0x0301, alpn);
            break;
        }
        if (evl_tls_error_reason(loop, ev->stream, reason, sizeof reason) <= 0) reason[0] = '\0';
        fprintf(stderr, "https_get: %s%s%s\n", evl_strerror(ev->status), reason[0] ? ": " : "", reason);
        f->failed = true;
        break;
    case EVL_STREAM_DATA:
        fwrite(ev->data, 1, ev->len, stdout);
        f->received += ev->len;
        break;
    case EVL_STREAM_EOF: /* the server's close_notify: the response is whole */
        f->done = f->received > 0;
        evl_stream_close(loop, ev->stream);
        break;
    case EVL_STREAM_CLOSED:
        if (ev->status < 0 && !f->failed) {
            fprintf(stderr, "https_get: %s\n", evl_strerror(ev->status));
            f->failed = true;
        }
        break;
    }
}

int main(int argc, char **argv) {
    const char *ca = NULL, *url = NULL;
    bool insecure = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ca") == 0 && i + 1 < argc) ca = argv[++i];
        else if (strcmp(argv[i], "--insecure") == 0) insecure = true;
        else if (strncmp(argv[i], "https://", 8) == 0 && !url) url = argv[i];
        else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (!url) {
        fputs(usage, stderr);
        return 2;
    }
    /* https://HOST[:PORT][/PATH] */
    char host[256];
    const char *start = url + 8, *path = strchr(start, '/');
    size_t authority = path ? (size_t)(path - start) : strlen(start);
    if (!path) path = "/";
    if (authority == 0 || authority >= sizeof host) {
        fputs(usage, stderr);
        return 2;
    }
    memcpy(host, start, authority);
    host[authority] = '\0';
    int port = 443;
    char *colon = strrchr(host, ':');
    if (colon) {
        *colon = '\0';
        port = atoi(colon + 1);
    }

    evl_tls_config *tls;
    int rc = evl_tls_config_new_client(&tls);
    if (rc == 0 && ca) rc = evl_tls_config_add_ca_file(tls, ca);
    if (rc >= 0 && insecure) rc = evl_tls_config_set_verify(tls, EVL_TLS_VERIFY_NONE_DANGEROUS);
    const char *alpn[] = {"http/1.1"};
    if (rc >= 0) rc = evl_tls_config_set_alpn(tls, alpn, 1);
    if (rc < 0) {
        fprintf(stderr, "https_get: %s %s\n", evl_strerror(rc), evl_tls_config_last_error(tls));
        return 1;
    }

    evl_loop *loop;
    if ((rc = evl_loop_new(&loop)) < 0) {
        fprintf(stderr, "evl_loop_new: %s\n", evl_strerror(rc));
        return 1;
    }
    struct fetch f = {0};
    uint64_t stream;
    rc = evl_tls_connect(loop, host, port, tls, NULL, on_stream, &f, &stream);
    if (rc < 0) {
        fprintf(stderr, "https_get: %s: %s %s\n", host, evl_strerror(rc), evl_tls_config_last_error(tls));
        return 1;
    }
    evl_tls_config_free(tls);
    char request[1024];
    int len = snprintf(request, sizeof request,
                       "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: evloop-https_get\r\nConnection: close\r\n\r\n",
                       path, host);
    if (len < 0 || (size_t)len >= sizeof request) {
        fputs("https_get: URL too long\n", stderr);
        return 2;
    }
    evl_stream_write(loop, stream, request, (size_t)len); /* sent once the handshake is done */
    rc = evl_run(loop); /* until the stream is closed: nothing is left then */
    if (rc < 0) fprintf(stderr, "evl_run: %s\n", evl_strerror(rc));
    evl_loop_free(loop);
    fflush(stdout);
    return f.done && !f.failed ? 0 : 1;
}
