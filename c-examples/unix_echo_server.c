/* unix_echo_server: stream_echo_server's service on a Unix-domain socket.
 *
 * evl_listen_unix gives ordinary streams, so the echo is the same
 * echo_stream_event() (common.h): echo the bytes, close once the client has
 * finished sending. Each connection is logged with the peer's process,
 * user and group (SO_PEERCRED), which a Unix-domain server can trust: the
 * kernel fills them in.
 *
 *   unix_echo_server [--path PATH] [--abstract] [--remove-stale] [--quiet]
 *
 * --path is a filesystem path (default /tmp/evloop-echo.sock), or with
 * --abstract a name in Linux's abstract namespace (no file). The path is
 * printed alone on the first line once the server listens. A socket file
 * left by a server that crashed is refused, unless --remove-stale: then it
 * is removed if nobody listens on it (a live server's, or anything that is
 * not a socket, never is). The server removes its socket file when it
 * ends (SIGINT or SIGTERM).
 */
#include "common.h"

static const char usage[] =
    "usage: unix_echo_server [--path PATH] [--abstract] [--remove-stale] [--quiet]\n"
    "Echo server on a Unix-domain socket, default /tmp/evloop-echo.sock; the path is printed first.\n";

static COLD void log_accepted(evl_loop *loop, const evl_stream_event *ev) {
    int pid = 0;
    uint32_t uid = 0, gid = 0;
    int rc = evl_stream_peer_cred(loop, ev->stream, &pid, &uid, &gid);
    if (rc == 0) say("new connection on fd %d from pid %d, uid %u, gid %u", ev->fd, pid, uid, gid);
    else say("new connection on fd %d (credentials: %s)", ev->fd, evl_strerror(rc));
}

static void on_stream(evl_loop *loop, const evl_stream_event *ev) {
    if (ev->kind == EVL_STREAM_ACCEPTED && !quiet) log_accepted(loop, ev);
    else echo_stream_event(loop, ev);
}

int main(int argc, char **argv) {
    const char *path = "/tmp/evloop-echo.sock";
    uint32_t flags = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) usage_exit(usage, 0);
        else if (strcmp(argv[i], "--quiet") == 0) quiet = true;
        else if (strcmp(argv[i], "--path") == 0 && i + 1 < argc) path = argv[++i];
        else if (strcmp(argv[i], "--abstract") == 0) flags |= EVL_UNIX_ABSTRACT;
        else if (strcmp(argv[i], "--remove-stale") == 0) flags |= EVL_UNIX_REMOVE_STALE;
        else {
            fprintf(stderr, "unknown or incomplete option: %s\n", argv[i]);
            usage_exit(usage, 2);
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    evl_loop *loop;
    int rc = evl_loop_new(&loop);
    if (rc < 0) die("evl_loop_new", rc);
    uint64_t listener;
    rc = evl_listen_unix(loop, path, 0, flags, on_stream, NULL, &listener);
    if (rc < 0) die(path, rc);
    printf("%s\n", path);
    say("echo server on %s%s", flags & EVL_UNIX_ABSTRACT ? "the abstract name " : "", path);

    bool stopping = false;
    watch_stop_signals(loop, &stopping);
    rc = evl_run(loop);
    if (rc < 0) die("evl_run", rc);
    say("stopping");
    /* Closes the listener (removing its socket file) and every stream. */
    evl_loop_free(loop);
    return 0;
}
