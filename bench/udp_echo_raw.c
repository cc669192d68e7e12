/* udp_echo_raw: the floor of bench/udp_echo_bench.py, a UDP echo server
 * on bare syscalls (no evloop): what an event loop's UDP echo cannot do
 * with fewer instructions or syscalls.
 *
 * Default: epoll_wait, then one recvmmsg of up to 32 datagrams into fixed
 * 64 KiB slots, then one sendmmsg of them back to their senders: the same
 * syscalls an event loop makes. --blocking: no epoll, a blocking recvmmsg
 * (MSG_WAITFORONE) then the sendmmsg: the least any server can do.
 *
 *   udp_echo_raw [--port P] [--blocking] [--quiet]
 *
 * --port 0 (the default) prints the port chosen on the first line;
 * SIGINT or SIGTERM ends it with status 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

enum { WIDTH = 32, SLOT = 65536 };

static char slots[WIDTH][SLOT];
static struct sockaddr_in6 addrs[WIDTH];
static struct iovec recv_iov[WIDTH], send_iov[WIDTH];
static struct mmsghdr recv_msgs[WIDTH], send_msgs[WIDTH];
static volatile sig_atomic_t stopping;

static void on_signal(int signo) {
    (void)signo;
    stopping = 1;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* One batch: receive, then send each datagram back to where it came from. */
static int echo_batch(int fd, int flags) {
    int n = recvmmsg(fd, recv_msgs, WIDTH, flags, NULL);
    if (n <= 0) return n;
    for (int i = 0; i < n; i++) {
        send_iov[i].iov_len = recv_msgs[i].msg_len;
        send_msgs[i].msg_hdr.msg_namelen = recv_msgs[i].msg_hdr.msg_namelen;
        recv_msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
    }
    for (int sent = 0; sent < n;) {
        int m = sendmmsg(fd, send_msgs + sent, (unsigned)(n - sent), 0);
        if (m < 0) {
            if (errno == EINTR) continue;
            sent++; /* dropped, as UDP may */
            continue;
        }
        sent += m;
    }
    return n;
}

int main(int argc, char **argv) {
    int port = 0, blocking = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--blocking") == 0) blocking = 1;
        else if (strcmp(argv[i], "--quiet") == 0) {}
        else {
            fprintf(stderr, "usage: udp_echo_raw [--port P] [--blocking] [--quiet]\n");
            return 2;
        }
    }
    for (int i = 0; i < WIDTH; i++) {
        recv_iov[i] = (struct iovec){.iov_base = slots[i], .iov_len = SLOT};
        recv_msgs[i].msg_hdr = (struct msghdr){.msg_name = &addrs[i], .msg_namelen = sizeof addrs[i],
                                               .msg_iov = &recv_iov[i], .msg_iovlen = 1};
        send_iov[i] = (struct iovec){.iov_base = slots[i]};
        send_msgs[i].msg_hdr = (struct msghdr){.msg_name = &addrs[i], .msg_iov = &send_iov[i], .msg_iovlen = 1};
    }
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK), 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0) die("getsockname");
    if (port == 0) printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    if (blocking) {
        /* No SA_RESTART: a signal ends the blocking receive with EINTR; and
         * a receive gives up after a second (EAGAIN), for valgrind, under
         * which a signal does not end it. */
        struct sigaction sa = {.sa_handler = on_signal};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        struct timeval second = {.tv_sec = 1};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &second, sizeof second);
        while (!stopping)
            if (echo_batch(fd, MSG_WAITFORONE) < 0 && errno != EINTR && errno != EAGAIN) die("recvmmsg");
        return 0;
    }
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    int sfd = signalfd(-1, &stop, SFD_CLOEXEC);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (sfd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll");
    ev.data.fd = sfd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) < 0) die("epoll_ctl");
    for (;;) {
        struct epoll_event ready[2];
        int n = epoll_wait(ep, ready, 2, -1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            if (ready[i].data.fd == sfd) return 0;
            if (echo_batch(fd, 0) < 0 && errno != EAGAIN) die("recvmmsg");
        }
    }
}
