/* resolve NAME...: looks up every NAME at once, on the loop's thread pool,
 * and prints each one's addresses (or getaddrinfo's error) as it comes.
 * resolve --connect HOST PORT: connects to HOST with Happy Eyeballs (the
 * addresses of both families tried 250 ms apart, the first to answer
 * wins) and says which address answered.
 *
 *   resolve localhost ::1 127.0.0.1 bad..name
 *   resolve --connect localhost 8080
 *
 * Exit status: 0 if every name resolved (or the connection was made), 1
 * otherwise, 2 for bad arguments.
 *
 * What it shows: evl_getaddrinfo (no thread of your own, no blocking
 * call on the loop's thread), the addresses as struct sockaddr, the error
 * text of a failed lookup, and evl_connect_host's one CONNECTED. */
#define _POSIX_C_SOURCE 200809L
#include "evloop.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int failures;

/* "127.0.0.1 port 80" or "::1 port 80" for any sockaddr_in/in6. */
static void format_address(const struct sockaddr *sa, char *out, size_t size) {
    char text[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
        port = ntohs(sin->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
        port = ntohs(sin6->sin6_port);
    }
    snprintf(out, size, "%s port %d", text, port);
}

static void on_resolved(evl_loop *loop, const evl_resolve_result *result) {
    (void)loop;
    const char *name = result->userdata;
    if (result->status != 0) {
        printf("%s: %s\n", name, result->message);
        failures++;
        return;
    }
    for (size_t i = 0; i < result->count; i++) {
        const evl_addrinfo *ai = &result->addrs[i];
        char text[INET6_ADDRSTRLEN + 16];
        format_address((const struct sockaddr *)ai->addr, text, sizeof text);
        printf("%s: %s (%s)\n", name, text, ai->family == AF_INET6 ? "IPv6" : "IPv4");
    }
}

static void on_connection(evl_loop *loop, const evl_stream_event *ev) {
    const char *host = ev->userdata;
    if (ev->kind == EVL_STREAM_CONNECTED) {
        if (ev->status != 0) {
            printf("%s: could not connect: %s\n", host, evl_strerror(ev->status));
            failures++;
            return; /* EVL_STREAM_CLOSED follows */
        }
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        char text[INET6_ADDRSTRLEN + 16] = "?";
        if (getpeername(evl_stream_fd(loop, ev->stream), (struct sockaddr *)&peer, &len) == 0)
            format_address((const struct sockaddr *)&peer, text, sizeof text);
        printf("%s: connected to %s\n", host, text);
        evl_stream_close(loop, ev->stream);
    }
}

static int usage(void) {
    fprintf(stderr, "usage: resolve NAME...\n       resolve --connect HOST PORT\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    int connect = strcmp(argv[1], "--connect") == 0;
    if (connect && argc != 4) return usage();
    evl_loop *loop;
    int rc = evl_loop_new(&loop);
    if (rc != 0) {
        fprintf(stderr, "evl_loop_new: %s\n", evl_strerror(rc));
        return 1;
    }
    if (connect) {
        uint64_t stream;
        rc = evl_connect_host(loop, argv[2], atoi(argv[3]), on_connection, argv[2], &stream);
    } else {
        /* TCP addresses only: one line per address, not one per socket type. */
        evl_addrinfo_hints hints = {.socktype = SOCK_STREAM};
        for (int i = 1; i < argc && rc == 0; i++)
            rc = evl_getaddrinfo(loop, argv[i], NULL, &hints, on_resolved, argv[i], NULL);
    }
    if (rc != 0) {
        fprintf(stderr, "resolve: %s\n", evl_strerror(rc));
        evl_loop_free(loop);
        return 2;
    }
    rc = evl_run(loop); /* until every answer has come */
    evl_loop_free(loop);
    return rc == 0 && failures == 0 ? 0 : 1;
}
