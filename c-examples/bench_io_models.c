/* bench_io_models: the same echo server on select(), poll() and a raw
 * epoll loop, with no evloop in between, for bench/io_models.py to set
 * beside evloop's servers. What the articles teach, made measurable: select
 * and poll hand the kernel every watched fd on every call and the kernel
 * scans them all, epoll is told once (epoll_ctl) and returns only what is
 * ready.
 *
 * A benchmark server, not an example to copy: a reply that the socket does
 * not take whole is cut short (the benchmark's 64-byte messages always go
 * whole on loopback); there are no log lines. select() cannot watch an fd
 * from FD_SETSIZE (1024) on: such connections are closed at once, and said so.
 *
 *   bench_io_models --model select|poll|epoll [--host H] [--port P] [--quiet]
 */
#include "common.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>

static const char usage[] =
    "usage: bench_io_models --model select|poll|epoll [--host H] [--port P (0: any, printed first)] [--quiet]\n"
    "Echo server on bare select(), poll() or epoll, default 127.0.0.1:10000.\n";

static volatile sig_atomic_t stopping;

static void on_stop(int signo) {
    (void)signo;
    stopping = 1;
}

/* SIGINT/SIGTERM interrupt the wait (no SA_RESTART) and end the loop. */
static void stop_on_signals(void) {
    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Echoes what `fd` has. Returns false when the connection is over. */
static bool echo(int fd) {
    char data[4096];
    ssize_t n = recv(fd, data, sizeof data, 0);
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    return n > 0 && send(fd, data, (size_t)n, MSG_NOSIGNAL) >= 0;
}

/* The next connection waiting on `listener`, or -1. */
static int accept_one(int listener) {
    return accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

static void run_select(int listener) {
    fd_set watched;
    FD_ZERO(&watched);
    FD_SET(listener, &watched);
    int max_fd = listener;
    while (!stopping) {
        fd_set ready = watched; /* copied in and out of the kernel every call */
        int n = select(max_fd + 1, &ready, NULL, NULL, NULL);
        if (n < 0) continue; /* EINTR */
        for (int fd = 0; fd <= max_fd && n > 0; fd++) {
            if (!FD_ISSET(fd, &ready)) continue;
            n--;
            if (fd != listener) {
                if (!echo(fd)) {
                    FD_CLR(fd, &watched);
                    close(fd);
                }
                continue;
            }
            int conn;
            while ((conn = accept_one(listener)) >= 0) {
                if (conn >= FD_SETSIZE) {
                    fprintf(stderr, "select: fd %d is over FD_SETSIZE (%d): connection closed\n", conn, FD_SETSIZE);
                    close(conn);
                    continue;
                }
                FD_SET(conn, &watched);
                if (conn > max_fd) max_fd = conn;
            }
        }
    }
    for (int fd = 0; fd <= max_fd; fd++)
        if (fd != listener && FD_ISSET(fd, &watched)) close(fd);
}

static void run_poll(int listener) {
    size_t len = 1, cap = 64;
    struct pollfd *fds = malloc(cap * sizeof *fds);
    if (!fds) die("malloc", -ENOMEM);
    fds[0] = (struct pollfd){.fd = listener, .events = POLLIN};
    while (!stopping) {
        int n = poll(fds, len, -1); /* the whole array, every call */
        if (n < 0) continue;
        size_t count = len; /* connections accepted now are polled next time */
        for (size_t i = 1; i < count && n > 0; i++) {
            if (!fds[i].revents) continue;
            n--;
            if (!echo(fds[i].fd)) {
                close(fds[i].fd);
                fds[i].fd = -1; /* poll() skips it; compacted below */
            }
        }
        if (fds[0].revents) {
            int conn;
            while ((conn = accept_one(listener)) >= 0) {
                if (len == cap) {
                    struct pollfd *grown = realloc(fds, 2 * cap * sizeof *fds);
                    if (!grown) {
                        close(conn);
                        break;
                    }
                    fds = grown;
                    cap *= 2;
                }
                fds[len++] = (struct pollfd){.fd = conn, .events = POLLIN};
            }
        }
        size_t kept = 1;
        for (size_t i = 1; i < len; i++)
            if (fds[i].fd >= 0) fds[kept++] = fds[i];
        len = kept;
    }
    for (size_t i = 1; i < len; i++) close(fds[i].fd);
    free(fds);
}

static void run_epoll(int listener) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1", -errno);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener}, ready[64];
    epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev); /* told once; then only what is ready comes back */
    while (!stopping) {
        int n = epoll_wait(ep, ready, 64, -1);
        for (int i = 0; i < n; i++) {
            int fd = ready[i].data.fd;
            if (fd != listener) {
                if (!echo(fd)) close(fd); /* closing removes it from the epoll set */
                continue;
            }
            int conn;
            while ((conn = accept_one(listener)) >= 0) {
                ev = (struct epoll_event){.events = EPOLLIN, .data.fd = conn};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, conn, &ev) < 0) close(conn);
            }
        }
    }
    /* The connections still open end with the process: the kernel has the
     * only list of them, and exit closes every fd. */
    close(ep);
}

int main(int argc, char **argv) {
    /* --model is this program's own; the rest are the examples' options. */
    const char *model = NULL;
    char *rest[64];
    int rest_len = 0;
    for (int i = 0; i < argc && rest_len < 64; i++) {
        if (i > 0 && strcmp(argv[i], "--model") == 0 && i + 1 < argc) model = argv[++i];
        else rest[rest_len++] = argv[i];
    }
    struct options o;
    parse_options(rest_len, rest, 0, 10000, usage, &o);
    void (*run)(int) = !model                     ? NULL
                       : strcmp(model, "select") == 0 ? run_select
                       : strcmp(model, "poll") == 0   ? run_poll
                       : strcmp(model, "epoll") == 0  ? run_epoll
                                                      : NULL;
    if (!run) {
        fprintf(stderr, "--model select, poll or epoll is needed\n");
        usage_exit(usage, 2);
    }
    char local[ADDR_LEN];
    int port;
    int listener = open_listener(&o, local, &port);
    stop_on_signals();
    run(listener);
    close(listener);
    return 0;
}
