/* Unix-domain sockets through the C ABI: argument checks (NULL pointers,
 * bad flags, paths too long, closed ids), listeners and connects on a path
 * and on an abstract name giving ordinary streams, the stale-file flag,
 * failed connects, peer credentials, and passing fds: sent at once or
 * queued, received, taken, closed when not taken or not accepted, none
 * left open (counted in /proc/self/fd). */
#define _GNU_SOURCE
#include "evloop.h"
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* A fresh directory for socket files, and a path in it. */
static char dir[64];

static void make_dir(void) {
    strcpy(dir, "/tmp/evl_test_unix_XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
}

static void remove_dir(void) {
    CHECK_EQ(rmdir(dir), 0); /* empty: every socket file was removed */
}

static const char *path_in_dir(const char *name) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

/* What a callback saw, per stream. */
typedef struct {
    int accepted, connected, connected_status, closed, closed_status, eof;
    int fds_events, fds_count;
    uint64_t accepted_stream;
    char data[4096];
    size_t len;
    int taken[16];
    int ntaken;
    int take_in_callback; /* evl_stream_take_fds up to this many in the FDS callback */
} seen;

static void record(evl_loop *loop, const evl_stream_event *ev) {
    seen *s = ev->userdata;
    switch (ev->kind) {
    case EVL_STREAM_ACCEPTED:
        s->accepted++;
        s->accepted_stream = ev->stream;
        break;
    case EVL_STREAM_CONNECTED:
        s->connected++;
        s->connected_status = ev->status;
        break;
    case EVL_STREAM_DATA:
        CHECK(ev->data != NULL);
        if (s->len + ev->len <= sizeof s->data) memcpy(s->data + s->len, ev->data, ev->len);
        s->len += ev->len;
        break;
    case EVL_STREAM_EOF:
        s->eof++;
        break;
    case EVL_STREAM_FDS:
        CHECK(ev->data == NULL);
        s->fds_events++;
        s->fds_count += (int)ev->len;
        if (s->take_in_callback > 0) {
            int n = evl_stream_take_fds(loop, ev->stream, s->taken + s->ntaken, s->take_in_callback);
            CHECK(n >= 0);
            if (n > 0) s->ntaken += n;
        }
        break;
    case EVL_STREAM_CLOSED:
        s->closed++;
        s->closed_status = ev->status;
        break;
    }
}

static void run_until(evl_loop *loop, const int *flag, int value) {
    for (int i = 0; i < 500 && *flag < value; i++) CHECK(evl_run_once(loop, 10) >= 0);
    CHECK(*flag >= value);
}

static void run_until_len(evl_loop *loop, const seen *s, size_t len) {
    for (int i = 0; i < 500 && s->len < len; i++) CHECK(evl_run_once(loop, 10) >= 0);
    CHECK_EQ(s->len, len);
}

static void test_unix_arguments(void) {
    uint64_t id = 0;
    int fd = 3;
    CHECK_EQ(evl_listen_unix(NULL, "/tmp/x", 0, 0, record, NULL, &id), -EINVAL);
    CHECK_EQ(evl_connect_unix(NULL, "/tmp/x", 0, record, NULL, &id), -EINVAL);
    CHECK_EQ(evl_stream_peer_cred(NULL, 1, NULL, NULL, NULL), -EINVAL);
    CHECK_EQ(evl_stream_write_fds(NULL, 1, "x", 1, &fd, 1), -EINVAL);
    CHECK_EQ(evl_stream_accept_fds(NULL, 1, 1), -EINVAL);
    CHECK_EQ(evl_stream_take_fds(NULL, 1, &fd, 1), -EINVAL);

    evl_loop *loop = new_loop();
    make_dir();
    CHECK_EQ(evl_listen_unix(loop, NULL, 0, 0, record, NULL, &id), -EINVAL);
    CHECK_EQ(evl_listen_unix(loop, path_in_dir("a"), 0, 0, record, NULL, NULL), -EINVAL);
    CHECK_EQ(evl_listen_unix(loop, path_in_dir("a"), 0, 0x80, record, NULL, &id), -EINVAL);
    CHECK_EQ(evl_listen_unix(loop, "", 0, 0, record, NULL, &id), -EINVAL);
    CHECK_EQ(evl_listen_unix(loop, "", 0, EVL_UNIX_ABSTRACT, record, NULL, &id), -EINVAL);
    CHECK_EQ(evl_connect_unix(loop, NULL, 0, record, NULL, &id), -EINVAL);
    CHECK_EQ(evl_connect_unix(loop, path_in_dir("a"), 0, record, NULL, NULL), -EINVAL);
    CHECK_EQ(evl_connect_unix(loop, path_in_dir("a"), EVL_UNIX_REMOVE_STALE, record, NULL, &id), -EINVAL);
    /* 107 bytes fit (sun_path less its NUL); 108 do not. */
    char name[200];
    memset(name, 'n', sizeof name);
    name[108] = '\0';
    CHECK_EQ(evl_listen_unix(loop, name, 0, 0, record, NULL, &id), -ENAMETOOLONG);
    CHECK_EQ(evl_listen_unix(loop, name, 0, EVL_UNIX_ABSTRACT, record, NULL, &id), -ENAMETOOLONG);
    CHECK_EQ(evl_connect_unix(loop, name, 0, record, NULL, &id), -ENAMETOOLONG);
    snprintf(name, sizeof name, "evl-test-%d-", (int)getpid());
    size_t len = strlen(name);
    memset(name + len, 'a', 107 - len);
    name[107] = '\0';
    uint64_t listener;
    CHECK_EQ(evl_listen_unix(loop, name, 0, EVL_UNIX_ABSTRACT, record, NULL, &listener), 0);
    CHECK_EQ(evl_listener_close(loop, listener), 0);
    CHECK_EQ(evl_listen_unix(loop, path_in_dir("no/such/dir"), 0, 0, record, NULL, &id), -ENOENT);

    /* Unknown and closed ids, ids of other kinds. */
    int fds[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    uint64_t stream;
    CHECK_EQ(evl_stream_open(loop, fds[0], NULL, NULL, &stream), 0);
    CHECK_EQ(evl_stream_peer_cred(loop, stream + 1, NULL, NULL, NULL), -ENOENT);
    CHECK_EQ(evl_stream_write_fds(loop, stream + 1, "x", 1, &fds[1], 1), -ENOENT);
    CHECK_EQ(evl_stream_accept_fds(loop, stream + 1, 1), -ENOENT);
    CHECK_EQ(evl_stream_take_fds(loop, stream + 1, &fd, 1), 0);
    /* Bad counts and lengths. */
    CHECK_EQ(evl_stream_write_fds(loop, stream, "x", 0, &fds[1], 1), -EINVAL);
    CHECK_EQ(evl_stream_write_fds(loop, stream, NULL, 1, &fds[1], 1), -EINVAL);
    CHECK_EQ(evl_stream_write_fds(loop, stream, "x", 1, NULL, 1), -EINVAL);
    CHECK_EQ(evl_stream_write_fds(loop, stream, "x", 1, &fds[1], 0), -EINVAL);
    CHECK_EQ(evl_stream_write_fds(loop, stream, "x", 1, &fds[1], -1), -EINVAL);
    CHECK_EQ(evl_stream_write_fds(loop, stream, "x", 1, &fds[1], EVL_MAX_FDS + 1), -EINVAL);
    CHECK_EQ(evl_stream_write_fds(loop, stream, "x", 1, &fds[1], 1 << 30), -EINVAL);
    int bad = 1 << 20;
    CHECK_EQ(evl_stream_write_fds(loop, stream, "x", 1, &bad, 1), -EBADF);
    CHECK_EQ(evl_stream_accept_fds(loop, stream, -1), -EINVAL);
    CHECK_EQ(evl_stream_accept_fds(loop, stream, EVL_MAX_FDS + 1), -EINVAL);
    CHECK_EQ(evl_stream_accept_fds(loop, stream, EVL_MAX_FDS), 0);
    CHECK_EQ(evl_stream_take_fds(loop, stream, NULL, 1), -EINVAL);
    CHECK_EQ(evl_stream_take_fds(loop, stream, NULL, 0), 0);
    CHECK_EQ(evl_stream_take_fds(loop, stream, &fd, -1), -EINVAL);
    CHECK_EQ(evl_stream_take_fds(loop, stream, &fd, 1 << 30), 0); /* none waits: nothing written */
    /* The peer's credentials are ours: it is this process. */
    int pid = 0;
    uint32_t uid = 1, gid = 1;
    CHECK_EQ(evl_stream_peer_cred(loop, stream, &pid, &uid, &gid), 0);
    CHECK_EQ(pid, getpid());
    CHECK_EQ(uid, getuid());
    CHECK_EQ(gid, getgid());
    CHECK_EQ(evl_stream_peer_cred(loop, stream, NULL, NULL, NULL), 0);
    /* A pipe and a TCP socket are no Unix-domain sockets. */
    int p[2];
    CHECK_EQ(pipe(p), 0);
    uint64_t pipe_stream;
    CHECK_EQ(evl_stream_open(loop, p[0], NULL, NULL, &pipe_stream), 0);
    CHECK_EQ(evl_stream_peer_cred(loop, pipe_stream, &pid, NULL, NULL), -ENOTSOCK);
    CHECK_EQ(evl_stream_accept_fds(loop, pipe_stream, 1), -ENOTSOCK);
    CHECK_EQ(evl_stream_write_fds(loop, pipe_stream, "x", 1, &fds[1], 1), -ENOTSOCK);
    uint64_t tcp_listener;
    CHECK_EQ(evl_listen(loop, "127.0.0.1", 0, 0, 0, NULL, NULL, &tcp_listener), 0);
    uint64_t tcp;
    CHECK_EQ(evl_connect(loop, "127.0.0.1", evl_listener_port(loop, tcp_listener), NULL, NULL, &tcp), 0);
    CHECK_EQ(evl_stream_peer_cred(loop, tcp, &pid, NULL, NULL), -EOPNOTSUPP);
    CHECK_EQ(evl_stream_accept_fds(loop, tcp, 1), -EOPNOTSUPP);
    CHECK_EQ(evl_stream_write_fds(loop, tcp, "x", 1, &fds[1], 1), -EOPNOTSUPP);
    /* A listener's id is not a stream's. */
    CHECK_EQ(evl_stream_peer_cred(loop, tcp_listener, &pid, NULL, NULL), -ENOENT);
    CHECK_EQ(evl_stream_write_fds(loop, tcp_listener, "x", 1, &fds[1], 1), -ENOENT);
    /* Closed, CLOSED not delivered yet: as a closed stream; then -ENOENT. */
    CHECK_EQ(evl_stream_abort(loop, stream), 0);
    CHECK_EQ(evl_stream_write_fds(loop, stream, "x", 1, &fds[1], 1), -EPIPE);
    CHECK_EQ(evl_stream_accept_fds(loop, stream, 1), 0);
    CHECK_EQ(evl_stream_peer_cred(loop, stream, &pid, NULL, NULL), -EBADF);
    evl_stream_event ev[8];
    while (evl_stream_poll(loop, 0, ev, 8) > 0) {}
    CHECK_EQ(evl_stream_write_fds(loop, stream, "x", 1, &fds[1], 1), -ENOENT);
    CHECK_EQ(evl_stream_accept_fds(loop, stream, 1), -ENOENT);
    CHECK_EQ(evl_stream_peer_cred(loop, stream, &pid, NULL, NULL), -ENOENT);
    close(fds[1]);
    close(p[1]);
    CHECK_EQ(evl_loop_free(loop), 0);
    remove_dir();
}

/* A listener on a path and one on an abstract name: a connect to each is
 * an ordinary stream both ways (write, shutdown, EOF, close); the socket
 * file goes with the listener, the abstract name leaves no file. */
static void test_unix_listen_and_connect(void) {
    evl_loop *loop = new_loop();
    make_dir();
    for (int abstract = 0; abstract < 2; abstract++) {
        char name[100];
        if (abstract) snprintf(name, sizeof name, "evl-test-%d-%s", (int)getpid(), dir + 5);
        else snprintf(name, sizeof name, "%s", path_in_dir("server.sock"));
        uint32_t flags = abstract ? EVL_UNIX_ABSTRACT : 0;
        seen server = {0}, client = {0}, accepted = {0};
        uint64_t listener, stream;
        CHECK_EQ(evl_listen_unix(loop, name, 0, flags, record, &server, &listener), 0);
        CHECK_EQ(exists(name), !abstract);
        CHECK_EQ(evl_connect_unix(loop, name, flags, record, &client, &stream), 0);
        /* Open at once: what is written now goes out now. */
        CHECK_EQ(evl_stream_write(loop, stream, "hello", 5), 0);
        CHECK_EQ(client.connected, 0); /* delivered by the loop, not here */
        run_until(loop, &server.accepted, 1);
        CHECK_EQ(client.connected, 1);
        CHECK_EQ(client.connected_status, 0);
        uint64_t peer = server.accepted_stream;
        CHECK_EQ(evl_stream_set_callback(loop, peer, record, &accepted), 0);
        run_until_len(loop, &accepted, 5);
        CHECK(memcmp(accepted.data, "hello", 5) == 0);
        int pid = 0;
        uint32_t uid = 99;
        CHECK_EQ(evl_stream_peer_cred(loop, peer, &pid, &uid, NULL), 0);
        CHECK_EQ(pid, getpid());
        CHECK_EQ(uid, getuid());
        CHECK_EQ(evl_stream_peer_cred(loop, stream, &pid, NULL, NULL), 0);
        CHECK_EQ(pid, getpid());
        /* Back, then half-close, then both ends close. */
        CHECK_EQ(evl_stream_write(loop, peer, "world!", 6), 0);
        CHECK_EQ(evl_stream_shutdown(loop, peer), 0);
        run_until(loop, &client.eof, 1);
        CHECK_EQ(client.len, 6);
        CHECK(memcmp(client.data, "world!", 6) == 0);
        CHECK_EQ(evl_stream_close(loop, stream), 0);
        run_until(loop, &accepted.closed, 1);
        CHECK_EQ(accepted.closed_status, 0);
        CHECK_EQ(accepted.eof, 1);
        run_until(loop, &client.closed, 1);
        CHECK_EQ(evl_listener_close(loop, listener), 0);
        CHECK(!exists(name));
        /* Nobody listens now. */
        seen refused = {0};
        CHECK_EQ(evl_connect_unix(loop, name, flags, record, &refused, &stream), 0);
        run_until(loop, &refused.closed, 1);
        CHECK_EQ(refused.connected, 1);
        CHECK_EQ(refused.connected_status, abstract ? -ECONNREFUSED : -ENOENT);
        CHECK_EQ(refused.closed_status, refused.connected_status);
    }
    CHECK_EQ(evl_loop_free(loop), 0);
    remove_dir();
}

/* A socket file left by a listener that has gone: refused without the
 * flag, removed with it. A live socket and a file that is no socket are
 * never removed. Freeing the loop removes a listener's file. */
static void test_unix_stale_socket_file(void) {
    evl_loop *loop = new_loop();
    make_dir();
    const char *path = path_in_dir("stale.sock");
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strcpy(addr.sun_path, path);
    CHECK_EQ(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    close(fd); /* the file stays: stale */
    uint64_t listener, other;
    CHECK_EQ(evl_listen_unix(loop, path, 0, 0, NULL, NULL, &listener), -EADDRINUSE);
    seen refused = {0};
    uint64_t stream;
    CHECK_EQ(evl_connect_unix(loop, path, 0, record, &refused, &stream), 0);
    run_until(loop, &refused.closed, 1);
    CHECK_EQ(refused.connected_status, -ECONNREFUSED);
    CHECK_EQ(evl_listen_unix(loop, path, 0, EVL_UNIX_REMOVE_STALE, NULL, NULL, &listener), 0);
    /* Live now: the flag removes nothing. */
    CHECK_EQ(evl_listen_unix(loop, path, 0, EVL_UNIX_REMOVE_STALE, NULL, NULL, &other), -EADDRINUSE);
    CHECK(exists(path));
    seen client = {0};
    CHECK_EQ(evl_connect_unix(loop, path, 0, record, &client, &stream), 0);
    run_until(loop, &client.connected, 1);
    CHECK_EQ(client.connected_status, 0);
    /* A regular file is never removed. */
    const char *plain = path_in_dir("plain");
    int file = open(plain, O_CREAT | O_WRONLY, 0600);
    CHECK(file >= 0);
    close(file);
    CHECK_EQ(evl_listen_unix(loop, plain, 0, EVL_UNIX_REMOVE_STALE, NULL, NULL, &other), -EADDRINUSE);
    CHECK(exists(plain));
    CHECK_EQ(unlink(plain), 0);
    /* Freeing the loop closes the listener and removes its file. */
    CHECK_EQ(evl_loop_free(loop), 0);
    CHECK(!exists(path));
    remove_dir();
}

/* The read end's view of a pipe: 1 if its write end is still open
 * somewhere (nothing to read yet), 0 once every copy was closed (EOF). */
static int writer_alive(int read_end) {
    char c;
    ssize_t n = read(read_end, &c, 1);
    return n < 0 && errno == EAGAIN;
}

/* Two streams over a socket pair, both the loop's. */
static void stream_pair(evl_loop *loop, seen *a, seen *b, uint64_t *sa, uint64_t *sb) {
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    CHECK_EQ(evl_stream_open(loop, sv[0], record, a, sa), 0);
    CHECK_EQ(evl_stream_open(loop, sv[1], record, b, sb), 0);
}

/* Pipes' write ends passed over a stream: taken in the FDS callback (and
 * then working), up to the number accepted (the rest closed), those not
 * taken closed after the callback, and those sent to a stream that does
 * not accept fds closed by the kernel. Each check is whether a pipe's
 * write end is still open anywhere; at the end no fd is left over. */
static void test_pass_fds(void) {
    int before = open_fds();
    evl_loop *loop = new_loop();
    seen a = {0}, b = {0};
    uint64_t sa, sb;
    stream_pair(loop, &a, &b, &sa, &sb);
    CHECK_EQ(evl_stream_accept_fds(loop, sb, 2), 0);
    b.take_in_callback = 1; /* of 2 received: one taken, one closed after the callback */
    int p1[2], p2[2], p3[2];
    CHECK_EQ(pipe2(p1, O_NONBLOCK), 0);
    CHECK_EQ(pipe2(p2, O_NONBLOCK), 0);
    CHECK_EQ(pipe2(p3, O_NONBLOCK), 0);
    int send[3] = {p1[1], p2[1], p3[1]};
    CHECK_EQ(evl_stream_write_fds(loop, sa, "abc", 3, send, 3), 0);
    for (int i = 0; i < 3; i++) close(send[i]); /* the kernel holds its own references */
    run_until_len(loop, &b, 3);
    CHECK(memcmp(b.data, "abc", 3) == 0);
    CHECK_EQ(b.fds_events, 1);
    CHECK_EQ(b.fds_count, 2); /* the third was past the number accepted */
    CHECK_EQ(b.ntaken, 1);
    CHECK(!writer_alive(p3[0])); /* closed at once */
    CHECK(!writer_alive(p2[0])); /* not taken: closed after the callback */
    CHECK(writer_alive(p1[0]));  /* taken: ours */
    CHECK_EQ(write(b.taken[0], "!", 1), 1);
    char c = 0;
    CHECK_EQ(read(p1[0], &c, 1), 1);
    CHECK_EQ(c, '!');
    CHECK_EQ(fcntl(b.taken[0], F_GETFD), FD_CLOEXEC);
    CHECK_EQ(evl_stream_take_fds(loop, sb, b.taken + 1, 4), 0); /* gone: nothing to take twice */
    close(b.taken[0]);
    CHECK(!writer_alive(p1[0]));

    /* Not accepted (back to 0): the kernel closes what comes. */
    CHECK_EQ(evl_stream_accept_fds(loop, sb, 0), 0);
    int p4[2];
    CHECK_EQ(pipe2(p4, O_NONBLOCK), 0);
    CHECK_EQ(evl_stream_write_fds(loop, sa, "d", 1, &p4[1], 1), 0);
    close(p4[1]);
    run_until_len(loop, &b, 4);
    CHECK_EQ(b.fds_events, 1);
    CHECK(!writer_alive(p4[0]));
    int rd[] = {p1[0], p2[0], p3[0], p4[0]};
    for (int i = 0; i < 4; i++) close(rd[i]);
    CHECK_EQ(evl_loop_free(loop), 0);
    CHECK_EQ(open_fds(), before);
}

/* Fds attached to bytes that wait in the queue: the stream keeps
 * duplicates (the caller closes its own at once), and the fds arrive with
 * the read that has their byte.
 * Freeing the loop with fds queued and fds received untaken leaks none. */
static void test_pass_fds_behind_a_queue(void) {
    int before = open_fds();
    evl_loop *loop = new_loop();
    seen a = {0};
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    uint64_t sa;
    CHECK_EQ(evl_stream_open(loop, sv[0], record, &a, &sa), 0);
    CHECK_EQ(evl_stream_set_watermarks(loop, sa, 0, 0), 0);
    static char big[1 << 20];
    memset(big, 'x', sizeof big);
    CHECK_EQ(evl_stream_write(loop, sa, big, sizeof big), 0);
    size_t queued = 0;
    CHECK_EQ(evl_stream_queued(loop, sa, &queued), 0);
    CHECK(queued > 0); /* the kernel did not take it all */
    int p[2];
    CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
    CHECK_EQ(evl_stream_write_fds(loop, sa, "F", 1, &p[1], 1), 0);
    CHECK_EQ(evl_stream_write(loop, sa, "G", 1), 0);
    close(p[1]);
    CHECK(writer_alive(p[0])); /* the stream's duplicate */
    /* The peer reads with recvmsg: the fd comes with the 'F' byte. */
    size_t got = 0;
    int received = -1, received_at = -1;
    char buf[65536];
    for (int round = 0; round < 2000 && got < sizeof big + 2; round++) {
        CHECK(evl_run_once(loop, 0) >= 0);
        union {
            struct cmsghdr h;
            char space[CMSG_SPACE(sizeof(int))];
        } control;
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof control};
        ssize_t n = recvmsg(sv[1], &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n <= 0) continue;
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&msg); h; h = CMSG_NXTHDR(&msg, h)) {
            if (h->cmsg_type == SCM_RIGHTS) {
                CHECK_EQ(received, -1);
                memcpy(&received, CMSG_DATA(h), sizeof(int));
                /* With the read that has the 'F' (the kernel may glue
                 * bytes sent before it to that read, never bytes after). */
                CHECK(got <= sizeof big && sizeof big < got + (size_t)n);
                received_at = (int)got;
            }
        }
        for (ssize_t i = 0; i < n; i++) {
            char expected = got + (size_t)i < sizeof big ? 'x' : (got + (size_t)i == sizeof big ? 'F' : 'G');
            if (buf[i] != expected) {
                CHECK_EQ(buf[i], expected);
                break;
            }
        }
        got += (size_t)n;
    }
    CHECK_EQ(got, sizeof big + 2);
    CHECK(received_at >= 0);
    CHECK(received >= 0);
    CHECK(writer_alive(p[0])); /* the received copy */
    close(received);
    CHECK(!writer_alive(p[0])); /* and the stream's duplicate was closed once sent */
    close(p[0]);

    /* Freed with a duplicate queued and a received fd untaken. */
    seen b = {0};
    uint64_t sb;
    CHECK_EQ(evl_stream_open(loop, sv[1], record, &b, &sb), 0);
    CHECK_EQ(evl_stream_accept_fds(loop, sb, 1), 0);
    CHECK_EQ(evl_stream_pause(loop, sb), 0);
    CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
    CHECK_EQ(evl_stream_write(loop, sa, big, sizeof big), 0);
    CHECK_EQ(evl_stream_write_fds(loop, sa, "F", 1, &p[1], 1), 0);
    evl_stream_event ev[4];
    CHECK_EQ(evl_stream_resume(loop, sb), 0);
    for (int i = 0; i < 3; i++) CHECK(evl_stream_poll(loop, 0, ev, 4) >= 0);
    close(p[1]);
    CHECK_EQ(evl_loop_free(loop), 0);
    CHECK(!writer_alive(p[0]));
    close(p[0]);
    CHECK_EQ(open_fds(), before);
}

/* The batch interface: an FDS event's fds may be taken until the next
 * evl_stream_poll, which closes what is left. */
static void test_pass_fds_batch(void) {
    int before = open_fds();
    evl_loop *loop = new_loop();
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    uint64_t sa, sb;
    CHECK_EQ(evl_stream_open(loop, sv[0], NULL, NULL, &sa), 0);
    CHECK_EQ(evl_stream_open(loop, sv[1], NULL, NULL, &sb), 0);
    CHECK_EQ(evl_stream_accept_fds(loop, sb, 4), 0);
    int p[2], q[2];
    CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
    CHECK_EQ(pipe2(q, O_NONBLOCK), 0);
    int send[2] = {p[1], q[1]};
    CHECK_EQ(evl_stream_write_fds(loop, sa, "xy", 2, send, 2), 0);
    close(p[1]);
    close(q[1]);
    evl_stream_event ev[8];
    int fds_at = -1, data_at = -1;
    for (int round = 0; round < 100 && data_at < 0; round++) {
        int n = evl_stream_poll(loop, 10, ev, 8);
        CHECK(n >= 0);
        for (int i = 0; i < n; i++) {
            if (ev[i].kind == EVL_STREAM_FDS) {
                fds_at = i;
                CHECK_EQ(ev[i].stream, sb);
                CHECK_EQ(ev[i].len, 2);
            }
            if (ev[i].kind == EVL_STREAM_DATA) data_at = i;
        }
    }
    CHECK(fds_at >= 0 && data_at == fds_at + 1); /* FDS just before its DATA */
    int taken = -1;
    CHECK_EQ(evl_stream_take_fds(loop, sb, &taken, 1), 1);
    CHECK(taken >= 0);
    CHECK_EQ(evl_stream_take_fds(loop, sa, &taken, 1), 0); /* not that stream's */
    CHECK(writer_alive(q[0]));                              /* waits to be taken */
    CHECK_EQ(evl_stream_poll(loop, 0, ev, 8), 0);
    CHECK(!writer_alive(q[0])); /* not taken by the next poll: closed */
    CHECK(writer_alive(p[0]));
    close(taken);
    CHECK(!writer_alive(p[0]));
    close(p[0]);
    close(q[0]);
    CHECK_EQ(evl_loop_free(loop), 0);
    CHECK_EQ(open_fds(), before);
}

int main(int argc, char **argv) {
    static const harness_test tests[] = {
        TEST(test_unix_arguments),
        TEST(test_unix_listen_and_connect),
        TEST(test_unix_stale_socket_file),
        TEST(test_pass_fds),
        TEST(test_pass_fds_behind_a_queue),
        TEST(test_pass_fds_batch),
    };
    return harness_main(argc, argv, tests, sizeof tests / sizeof *tests);
}
