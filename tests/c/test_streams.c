/* The stream functions of the C ABI: argument checks, a listener and a
 * connection driven by callbacks, the same driven by the batch interface
 * (evl_stream_poll and evl_stream_submit), re-entry from stream callbacks,
 * and freeing a loop with streams still open (memcheck checks the rest). */
#define _GNU_SOURCE
#include "evloop.h"
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void ignore_event(evl_loop *loop, const evl_stream_event *ev) {
    (void)loop;
    (void)ev;
}

static void test_stream_arguments(void) {
    uint64_t id = 0;
    size_t queued;
    evl_stream_event events[1];
    evl_stream_op op = {.stream = 1, .op = EVL_OP_WRITE};
    CHECK_EQ(evl_listen(NULL, "127.0.0.1", 0, 0, 0, ignore_event, NULL, &id), -EINVAL);
    CHECK_EQ(evl_listener_port(NULL, 1), -EINVAL);
    CHECK_EQ(evl_listener_set_max_conns(NULL, 1, 1), -EINVAL);
    CHECK_EQ(evl_listener_close(NULL, 1), -EINVAL);
    CHECK_EQ(evl_connect(NULL, "127.0.0.1", 1, ignore_event, NULL, &id), -EINVAL);
    CHECK_EQ(evl_stream_open(NULL, 0, ignore_event, NULL, &id), -EINVAL);
    CHECK_EQ(evl_stream_write(NULL, 1, "x", 1), -EINVAL);
    CHECK_EQ(evl_stream_shutdown(NULL, 1), -EINVAL);
    CHECK_EQ(evl_stream_close(NULL, 1), -EINVAL);
    CHECK_EQ(evl_stream_abort(NULL, 1), -EINVAL);
    CHECK_EQ(evl_stream_pause(NULL, 1), -EINVAL);
    CHECK_EQ(evl_stream_resume(NULL, 1), -EINVAL);
    CHECK_EQ(evl_stream_set_watermarks(NULL, 1, 2, 1), -EINVAL);
    CHECK_EQ(evl_stream_set_idle_timeout(NULL, 1, 1), -EINVAL);
    CHECK_EQ(evl_stream_set_callback(NULL, 1, ignore_event, NULL), -EINVAL);
    CHECK_EQ(evl_stream_fd(NULL, 1), -EINVAL);
    CHECK_EQ(evl_stream_queued(NULL, 1, &queued), -EINVAL);
    CHECK_EQ(evl_stream_poll(NULL, 0, events, 1), -EINVAL);
    CHECK_EQ(evl_stream_submit(NULL, &op, 1), -EINVAL);

    evl_loop *loop = new_loop();
    CHECK_EQ(evl_listen(loop, "127.0.0.1", 0, 0, 0, ignore_event, NULL, NULL), -EINVAL);
    CHECK_EQ(evl_listen(loop, "127.0.0.1", -1, 0, 0, ignore_event, NULL, &id), -EINVAL);
    CHECK_EQ(evl_listen(loop, "127.0.0.1", 65536, 0, 0, ignore_event, NULL, &id), -EINVAL);
    CHECK_EQ(evl_listen(loop, "127.0.0.1", 0, 0, 0x80, ignore_event, NULL, &id), -EINVAL);
    CHECK_EQ(evl_connect(loop, NULL, 1, ignore_event, NULL, &id), -EINVAL);
    CHECK_EQ(evl_connect(loop, "127.0.0.1", 1, ignore_event, NULL, NULL), -EINVAL);
    CHECK_EQ(evl_stream_open(loop, -1, ignore_event, NULL, &id), -EINVAL);
    CHECK_EQ(evl_stream_open(loop, 0, ignore_event, NULL, NULL), -EINVAL);
    CHECK_EQ(evl_stream_poll(loop, 0, NULL, 1), -EINVAL);
    CHECK_EQ(evl_stream_poll(loop, 0, events, 0), -EINVAL);
    CHECK_EQ(evl_stream_submit(loop, NULL, 1), -EINVAL);
    CHECK_EQ(evl_stream_submit(loop, &op, -1), -EINVAL);

    /* Unknown ids, and ids of the wrong kind, are refused. */
    uint64_t listener;
    CHECK_EQ(evl_listen(loop, "::1", 0, 0, EVL_LISTEN_REUSEPORT, ignore_event, NULL, &listener), 0);
    CHECK(evl_listener_port(loop, listener) > 0);
    CHECK_EQ(evl_stream_write(loop, listener, "x", 1), -ENOENT);
    CHECK_EQ(evl_stream_fd(loop, listener), -ENOENT);
    CHECK_EQ(evl_listener_set_max_conns(loop, listener, -1), -EINVAL);
    CHECK_EQ(evl_listener_set_max_conns(loop, listener, 3), 0);
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    uint64_t stream;
    CHECK_EQ(evl_stream_open(loop, fds[1], ignore_event, NULL, &stream), 0);
    CHECK_EQ(evl_listener_port(loop, stream), -ENOENT);
    CHECK_EQ(evl_listener_close(loop, stream), -ENOENT);
    CHECK_EQ(evl_stream_write(loop, stream, NULL, 1), -EINVAL);
    CHECK_EQ(evl_stream_write(loop, stream, NULL, 0), 0);
    CHECK_EQ(evl_stream_queued(loop, stream, NULL), -EINVAL);
    CHECK_EQ(evl_stream_set_watermarks(loop, stream, 10, 20), -EINVAL);
    CHECK_EQ(evl_stream_set_watermarks(loop, listener, 100, 20), 0);
    CHECK_EQ(evl_stream_set_idle_timeout(loop, listener, 1000), 0);
    CHECK_EQ(evl_stream_fd(loop, stream), fds[1]);
    /* The stream's fd is not the application's registration to change. */
    CHECK_EQ(evl_modify(loop, fds[1], EVL_WRITE), -EBUSY);
    CHECK_EQ(evl_unregister(loop, fds[1]), -EBUSY);
    CHECK_EQ(evl_set_callback(loop, fds[1], NULL, NULL), -EBUSY);
    CHECK_EQ(evl_stream_write(loop, 0, "x", 1), -ENOENT);
    CHECK_EQ(evl_stream_write(loop, stream + 1, "x", 1), -ENOENT);
    CHECK_EQ(evl_stream_write(loop, stream ^ (1ull << 32), "x", 1), -ENOENT);
    CHECK_EQ(evl_stream_abort(loop, stream), 0);
    /* The id lives until its EVL_STREAM_CLOSED is delivered, then dies. */
    CHECK_EQ(evl_stream_abort(loop, stream), 0);
    CHECK_EQ(evl_run_once(loop, 0), 1);
    CHECK_EQ(evl_stream_abort(loop, stream), -ENOENT);
    CHECK_EQ(evl_listener_close(loop, listener), 0);
    CHECK_EQ(evl_listener_close(loop, listener), -ENOENT);
    close(fds[0]);
    CHECK_EQ(evl_loop_free(loop), 0);
}

typedef struct {
    int calls, closed, status;
    void *userdata;
} closed_log;

static void log_closed(evl_loop *loop, const evl_stream_event *ev) {
    (void)loop;
    closed_log *log = ev->userdata;
    log->calls++;
    if (ev->kind == EVL_STREAM_CLOSED) {
        log->closed++;
        log->status = ev->status;
    }
}

/* A stream the library closed itself (here: a write to a peer that has
 * gone) keeps its id until its EVL_STREAM_CLOSED is delivered: calls answer
 * as for a closed stream, not -ENOENT; the CLOSED goes to the callback set
 * last; then the id is dead. (It used to die at once.) */
static void test_library_closed_stream_id_lives_until_closed(void) {
    evl_loop *loop = new_loop();
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    closed_log first = {0}, second = {0};
    uint64_t stream;
    CHECK_EQ(evl_stream_open(loop, sv[0], log_closed, &first, &stream), 0);
    close(sv[1]);
    int rc = evl_stream_write(loop, stream, "x", 1);
    CHECK(rc == -EPIPE || rc == -ECONNRESET);
    CHECK_EQ(first.calls, 0); /* CLOSED not delivered yet */
    CHECK_EQ(evl_stream_write(loop, stream, "y", 1), -EPIPE);
    CHECK_EQ(evl_stream_shutdown(loop, stream), 0);
    CHECK_EQ(evl_stream_pause(loop, stream), 0);
    CHECK_EQ(evl_stream_resume(loop, stream), 0);
    CHECK_EQ(evl_stream_set_watermarks(loop, stream, 100, 10), 0);
    CHECK_EQ(evl_stream_set_idle_timeout(loop, stream, 5), 0);
    size_t queued = 99;
    CHECK_EQ(evl_stream_queued(loop, stream, &queued), 0);
    CHECK_EQ(queued, 0);
    CHECK_EQ(evl_stream_fd(loop, stream), -EBADF);
    CHECK_EQ(evl_stream_set_callback(loop, stream, log_closed, &second), 0);
    CHECK_EQ(evl_stream_close(loop, stream), 0);
    CHECK_EQ(evl_stream_abort(loop, stream), 0);
    CHECK_EQ(evl_run_once(loop, 0), 1);
    CHECK_EQ(first.calls, 0);
    CHECK_EQ(second.calls, 1);
    CHECK_EQ(second.closed, 1);
    CHECK_EQ(second.status, rc);
    /* Delivered: the id is dead. */
    CHECK_EQ(evl_stream_write(loop, stream, "z", 1), -ENOENT);
    CHECK_EQ(evl_stream_close(loop, stream), -ENOENT);
    CHECK_EQ(evl_stream_fd(loop, stream), -ENOENT);
    CHECK_EQ(evl_stream_set_callback(loop, stream, log_closed, &first), -ENOENT);
    CHECK_EQ(evl_run_once(loop, 0), 0);
    CHECK_EQ(second.calls, 1);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* Reads what is readable (the fd is non-blocking). */
static void drain_fd(int fd) {
    static char sink[65536];
    while (read(fd, sink, sizeof sink) > 0) {}
}

static int all_bytes_are(const evl_stream_event *ev, char c) {
    for (size_t i = 0; i < ev->len; i++)
        if (((const char *)ev->data)[i] != c) return 0;
    return 1;
}

/* Found by the model tests (FOUND-BUGS M4): a DATA event read behind a
 * DRAINED waited in the loop's queue when max_events cut the batch; the next
 * evl_stream_poll released the read buffer first, so reads in that call
 * wrote over the bytes the held-over DATA event pointed at: a stream handed
 * out another stream's bytes. Two streams each drain their write queue and
 * read in the same wakeup, so each gives DRAINED then DATA. */
/* Two streams over socket pairs (their peers in `peers`) that each drain
 * their write queue and read 1000 bytes of `pattern[i]` in the same
 * wakeup, so that each gives DRAINED, then DATA. */
static const char pattern[2] = {'a', 'b'};

static void drained_then_data(evl_loop *loop, uint64_t streams[2], int peers[2]) {
    static char big[300000];
    memset(big, '.', sizeof big);
    for (int i = 0; i < 2; i++) {
        int sv[2];
        CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        CHECK_EQ(evl_stream_open(loop, sv[0], NULL, NULL, &streams[i]), 0);
        peers[i] = sv[1];
        CHECK_EQ(evl_stream_set_watermarks(loop, streams[i], 0, 0), 0); /* never pause */
        CHECK_EQ(evl_stream_write(loop, streams[i], big, sizeof big), 0);
        size_t queued = 0;
        CHECK_EQ(evl_stream_queued(loop, streams[i], &queued), 0);
        CHECK(queued > 0 && queued < 100000); /* the kernel took the rest */
        drain_fd(peers[i]); /* room for the whole queue now */
        char msg[1000];
        memset(msg, pattern[i], sizeof msg);
        CHECK_EQ(write(peers[i], msg, sizeof msg), (ssize_t)sizeof msg);
    }
}

/* drained_then_data, then a poll of one event (DRAINED) leaves a DATA for
 * the next, and the stream it is of is paused: returns which (0 or 1). */
static int pause_with_data_waiting(evl_loop *loop, uint64_t streams[2], int peers[2]) {
    drained_then_data(loop, streams, peers);
    evl_stream_event ev[1];
    CHECK_EQ(evl_stream_poll(loop, 1000, ev, 1), 1);
    CHECK_EQ(ev[0].kind, EVL_STREAM_DRAINED);
    int held = ev[0].stream == streams[1];
    CHECK_EQ(evl_stream_pause(loop, streams[held]), 0);
    return held;
}

static void free_loop_and_peers(evl_loop *loop, int peers[2]) {
    CHECK_EQ(evl_loop_free(loop), 0);
    close(peers[0]);
    close(peers[1]);
}

static void test_held_over_data_keeps_its_bytes(void) {
    evl_loop *loop = new_loop();
    uint64_t streams[2];
    int peers[2];
    drained_then_data(loop, streams, peers);
    evl_stream_event ev[16];
    int drained = 0, data = 0, wrong = 0;
    for (int round = 0; round < 20 && data < 2; round++) {
        /* One event per call first, so that a DATA is held over. */
        int n = evl_stream_poll(loop, 100, ev, round == 0 ? 1 : 16);
        CHECK(n >= 0);
        for (int i = 0; i < n; i++) {
            int which = ev[i].stream == streams[1];
            if (ev[i].kind == EVL_STREAM_DRAINED) drained++;
            if (ev[i].kind == EVL_STREAM_DATA) {
                data++;
                if (!all_bytes_are(&ev[i], pattern[which])) wrong++;
            }
        }
    }
    CHECK_EQ(drained, 2);
    CHECK_EQ(data, 2);
    CHECK_EQ(wrong, 0);
    free_loop_and_peers(loop, peers);
}

/* Found by the model tests (FOUND-BUGS M3): a stream over a pipe's write end
 * read from it at its first readiness, got EBADF and closed itself. */
static void test_stream_over_a_pipes_write_end(void) {
    evl_loop *loop = new_loop();
    int fds[2];
    CHECK_EQ(pipe2(fds, O_NONBLOCK), 0);
    uint64_t stream;
    CHECK_EQ(evl_stream_open(loop, fds[1], NULL, NULL, &stream), 0);
    enum { SIZE = 200000 };
    static char sent[SIZE], got[SIZE];
    for (int i = 0; i < SIZE; i++) sent[i] = (char)(i * 7);
    CHECK_EQ(evl_stream_write(loop, stream, sent, SIZE), 0);
    CHECK_EQ(evl_stream_shutdown(loop, stream), 0); /* closes once all is sent */
    size_t have = 0;
    int closed = 0, status = 1, eof = 0;
    evl_stream_event ev[8];
    for (int round = 0; round < 1000 && !(closed && eof); round++) {
        ssize_t n;
        while ((n = read(fds[0], got + have, SIZE - have)) > 0) have += (size_t)n;
        if (n == 0) eof = 1;
        int count = evl_stream_poll(loop, 10, ev, 8);
        CHECK(count >= 0);
        for (int i = 0; i < count; i++) {
            CHECK(ev[i].kind != EVL_STREAM_DATA && ev[i].kind != EVL_STREAM_EOF);
            if (ev[i].kind == EVL_STREAM_CLOSED) {
                closed++;
                status = ev[i].status;
            }
        }
    }
    CHECK_EQ(have, SIZE);
    CHECK(memcmp(sent, got, SIZE) == 0);
    CHECK_EQ(closed, 1);
    CHECK_EQ(status, 0);
    CHECK(eof);
    close(fds[0]);

    /* A reader that has gone: -EPIPE, not an error about sockets. */
    CHECK_EQ(pipe2(fds, O_NONBLOCK), 0);
    CHECK_EQ(evl_stream_open(loop, fds[1], NULL, NULL, &stream), 0);
    close(fds[0]);
    CHECK_EQ(evl_stream_write(loop, stream, "x", 1), -EPIPE);
    CHECK_EQ(evl_stream_poll(loop, 10, ev, 8), 1);
    CHECK_EQ(ev[0].kind, EVL_STREAM_CLOSED);
    CHECK_EQ(ev[0].status, -EPIPE);
    /* The same with nothing written: epoll reports an error. */
    CHECK_EQ(pipe2(fds, O_NONBLOCK), 0);
    CHECK_EQ(evl_stream_open(loop, fds[1], NULL, NULL, &stream), 0);
    close(fds[0]);
    CHECK_EQ(evl_stream_poll(loop, 1000, ev, 8), 1);
    CHECK_EQ(ev[0].kind, EVL_STREAM_CLOSED);
    CHECK_EQ(ev[0].status, -EPIPE);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* A connected TCP pair on loopback: fds[0] accepted, fds[1] the client. */
static void tcp_pair(int fds[2]) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    CHECK_EQ(bind(listener, (struct sockaddr *)&addr, sizeof addr), 0);
    CHECK_EQ(listen(listener, 1), 0);
    CHECK_EQ(getsockname(listener, (struct sockaddr *)&addr, &len), 0);
    fds[1] = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_EQ(connect(fds[1], (struct sockaddr *)&addr, sizeof addr), 0);
    fds[0] = accept(listener, NULL, NULL);
    CHECK(fds[0] >= 0);
    close(listener);
}

/* Found by the model tests (FOUND-BUGS M2): a graceful close of a socket
 * with unread input made close(2) send RST, which threw away what the
 * kernel still had to send: the peer got a prefix and ECONNRESET, while
 * EVL_STREAM_CLOSED said 0. */
static void test_graceful_close_with_unread_input_sends_everything(void) {
    evl_loop *loop = new_loop();
    int fds[2];
    tcp_pair(fds);
    uint64_t stream;
    CHECK_EQ(evl_stream_open(loop, fds[0], NULL, NULL, &stream), 0);
    CHECK_EQ(evl_stream_pause(loop, stream), 0);
    CHECK_EQ(write(fds[1], "unread request", 14), 14);
    enum { SIZE = 3000000 };
    static char sent[SIZE], got[SIZE];
    for (int i = 0; i < SIZE; i++) sent[i] = (char)(i * 13);
    CHECK_EQ(evl_stream_set_watermarks(loop, stream, 0, 0), 0);
    CHECK_EQ(evl_stream_write(loop, stream, sent, SIZE), 0);
    CHECK_EQ(evl_stream_close(loop, stream), 0);
    CHECK_EQ(fcntl(fds[1], F_SETFL, O_NONBLOCK), 0);
    size_t have = 0;
    int closed = 0, status = 1, eof = 0, reset = 0;
    evl_stream_event ev[8];
    for (int round = 0; round < 5000 && !eof && !reset; round++) {
        ssize_t n;
        while ((n = read(fds[1], got + have, SIZE - have)) > 0) have += (size_t)n;
        if (n == 0) eof = 1;
        if (n < 0 && errno == ECONNRESET) reset = 1;
        int count = evl_stream_poll(loop, 1, ev, 8);
        for (int i = 0; i < count; i++) {
            if (ev[i].kind == EVL_STREAM_CLOSED) {
                closed++;
                status = ev[i].status;
            }
        }
    }
    CHECK_EQ(reset, 0);
    CHECK(eof);
    CHECK_EQ(have, SIZE);
    CHECK(memcmp(sent, got, SIZE) == 0);
    CHECK_EQ(closed, 1);
    CHECK_EQ(status, 0);
    close(fds[1]);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* ---- lingering closes (evl_stream_set_linger) ----------------------------- */

/* The fds this process has open. */
static int count_fds(void) {
    /* (Under valgrind, whose epoll_pwait2 is missing, the loop makes a
     * timerfd at its first timed wait: counts are taken after one.) */
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL) return -1;
    int n = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL)
        if (entry->d_name[0] != '.') n++;
    closedir(dir);
    return n - 1; /* the directory's own */
}

/* The peer of a closing stream: it reads what it can and sends on. */
struct peer {
    int fd;
    char *got;
    size_t have, size;
    int eof, reset, send_failed;
    size_t sent;
};

static void peer_step(struct peer *p, int send) {
    static char junk[1024];
    if (send && !p->send_failed) {
        ssize_t n = write(p->fd, junk, sizeof junk);
        if (n > 0) p->sent += (size_t)n;
        if (n < 0 && errno != EAGAIN) p->send_failed = errno;
    }
    if (p->eof || p->reset) return;
    /* A slow reader, one read a step. (`got` has a byte more than is
     * expected, so that too much shows.) */
    size_t room = p->size + 1 - p->have;
    ssize_t n = read(p->fd, p->got + p->have, room < 16384 ? room : 16384);
    if (n > 0) p->have += (size_t)n;
    else if (n == 0) p->eof = 1;
    else if (errno == ECONNRESET) p->reset = 1;
}

/* Polls once, counting CLOSED events and keeping the last status. */
static void poll_counting_closed(evl_loop *loop, int timeout_ms, int *closed, int *status) {
    evl_stream_event ev[8];
    int count = evl_stream_poll(loop, timeout_ms, ev, 8);
    CHECK(count >= 0);
    for (int i = 0; i < count; i++) {
        CHECK(ev[i].kind == EVL_STREAM_CLOSED || ev[i].kind == EVL_STREAM_DRAINED);
        if (ev[i].kind == EVL_STREAM_CLOSED) {
            (*closed)++;
            *status = ev[i].status;
        }
    }
}

/* Polls (for at most 20 s) until this process has `fds` fds open; returns
 * whether it came to that. */
static int poll_until_fds(evl_loop *loop, int fds, struct peer *p) {
    int closed = 0, status = 0;
    for (int round = 0; round < 2000; round++) {
        if (count_fds() == fds) return 1;
        if (p != NULL) peer_step(p, 0);
        poll_counting_closed(loop, 10, &closed, &status);
    }
    CHECK_EQ(closed, 0);
    return count_fds() == fds;
}

/* Issue 25 (M2's remainder): a peer that goes on sending after the server's
 * evl_stream_close (a pipelined request, an upload the server refused)
 * used to get a reset once its bytes reached the closed socket, which threw
 * away the part of the reply the kernel had not sent yet. Now the socket
 * shuts down its writing side and lingers, dropping what comes: the peer
 * reads the whole reply, then end-of-file, and may go on sending; the
 * socket closes at the peer's end, not before. */
static void test_lingering_close_keeps_the_reply_from_a_peer_still_sending(void) {
    int before = count_fds();
    evl_loop *loop = new_loop();
    int fds[2];
    tcp_pair(fds);
    CHECK_EQ(fcntl(fds[1], F_SETFL, O_NONBLOCK), 0);
    evl_stream_event none[1];
    CHECK_EQ(evl_stream_poll(loop, 1, none, 1), 0); /* (a timed wait makes what it needs: see below) */
    int with_stream = count_fds();
    uint64_t stream;
    CHECK_EQ(evl_stream_open(loop, fds[0], NULL, NULL, &stream), 0);
    /* Only the peer's end may end the lingering here, not the time. */
    CHECK_EQ(evl_stream_set_linger(loop, stream, EVL_LINGER_DEFAULT_BYTES * 8, 60000), 0);
    CHECK_EQ(evl_stream_set_watermarks(loop, stream, 0, 0), 0);
    enum { SIZE = 3000000 };
    static char sent[SIZE], got[SIZE + 1];
    for (int i = 0; i < SIZE; i++) sent[i] = (char)(i * 13);
    CHECK_EQ(write(fds[1], "request", 7), 7);
    CHECK_EQ(evl_stream_write(loop, stream, sent, SIZE), 0);
    CHECK_EQ(evl_stream_close(loop, stream), 0);
    struct peer p = {.fd = fds[1], .got = got, .size = SIZE};
    int closed = 0, status = 1;
    for (int round = 0; round < 20000 && !p.eof && !p.reset; round++) {
        peer_step(&p, 1);
        poll_counting_closed(loop, 1, &closed, &status);
    }
    CHECK_EQ(p.reset, 0);
    CHECK_EQ(p.send_failed, 0);
    CHECK(p.eof);
    CHECK_EQ(p.have, SIZE);
    CHECK(memcmp(sent, got, SIZE) == 0);
    CHECK(p.sent > 0);
    CHECK_EQ(closed, 1);
    CHECK_EQ(status, 0);
    /* It lingers while the peer keeps sending: the fd stays open. */
    for (int round = 0; round < 50; round++) {
        peer_step(&p, 1);
        poll_counting_closed(loop, 1, &closed, &status);
    }
    CHECK_EQ(p.send_failed, 0);
    CHECK_EQ(count_fds(), with_stream);
    /* The peer's end ends it. */
    CHECK_EQ(shutdown(fds[1], SHUT_WR), 0);
    CHECK(poll_until_fds(loop, with_stream - 1, NULL));
    CHECK_EQ(closed, 1);
    close(fds[1]);
    CHECK_EQ(evl_loop_free(loop), 0);
    CHECK_EQ(count_fds(), before);
}

/* Sets up a stream over a TCP pair whose peer (fds[1], non-blocking)
 * wrote `unread` bytes the stream has not read (it is paused), and closes
 * the stream with the linger bounds given. */
static uint64_t closed_with_linger(evl_loop *loop, int fds[2], size_t max_bytes, uint32_t max_ms, size_t unread) {
    tcp_pair(fds);
    CHECK_EQ(fcntl(fds[1], F_SETFL, O_NONBLOCK), 0);
    uint64_t stream;
    CHECK_EQ(evl_stream_open(loop, fds[0], NULL, NULL, &stream), 0);
    CHECK_EQ(evl_stream_pause(loop, stream), 0);
    static char junk[4096];
    for (size_t done = 0; done < unread; done += sizeof junk) CHECK_EQ(write(fds[1], junk, sizeof junk), (ssize_t)sizeof junk);
    CHECK_EQ(evl_stream_set_linger(loop, stream, max_bytes, max_ms), 0);
    CHECK_EQ(evl_stream_write(loop, stream, "reply", 5), 0);
    CHECK_EQ(evl_stream_close(loop, stream), 0);
    return stream;
}

/* The peer's next read (waiting up to 1 s for it): the bytes' count, 0 at
 * end-of-file, -errno. */
static ssize_t peer_read(int fd, char *buf, size_t len) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    poll(&pfd, 1, 1000);
    ssize_t n = read(fd, buf, len);
    return n < 0 ? -errno : n;
}

/* The bounds end a lingering: more bytes than allowed, or the time. */
static void test_linger_bounds_end_it(void) {
    int before = count_fds();
    evl_loop *loop = new_loop();
    int fds[2], closed = 0, status = 1;
    char buf[64];
    poll_counting_closed(loop, 1, &closed, &status);
    int with_loop = count_fds();

    /* Bytes: 1000 allowed, 8192 sent after the close. */
    closed_with_linger(loop, fds, 1000, 60000, 0);
    poll_counting_closed(loop, 10, &closed, &status);
    CHECK_EQ(closed, 1);
    CHECK_EQ(status, 0);
    CHECK_EQ(peer_read(fds[1], buf, sizeof buf), 5);
    CHECK_EQ(peer_read(fds[1], buf, sizeof buf), 0); /* the reply, then FIN */
    CHECK_EQ(count_fds(), with_loop + 2);            /* it lingers */
    static char junk[8192];
    CHECK_EQ(write(fds[1], junk, 500), 500);
    for (int i = 0; i < 5; i++) poll_counting_closed(loop, 10, &closed, &status);
    CHECK_EQ(count_fds(), with_loop + 2); /* 500 bytes: within the bound */
    CHECK_EQ(write(fds[1], junk, sizeof junk), (ssize_t)sizeof junk);
    CHECK(poll_until_fds(loop, with_loop + 1, NULL));
    close(fds[1]);

    /* Time: 200 ms; never before. */
    closed = 0;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    closed_with_linger(loop, fds, EVL_LINGER_DEFAULT_BYTES, 200, 0);
    poll_counting_closed(loop, 10, &closed, &status);
    CHECK_EQ(closed, 1);
    CHECK_EQ(peer_read(fds[1], buf, sizeof buf), 5);
    CHECK_EQ(peer_read(fds[1], buf, sizeof buf), 0);
    CHECK(poll_until_fds(loop, with_loop + 1, NULL));
    clock_gettime(CLOCK_MONOTONIC, &end);
    long ms = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000;
    CHECK(ms >= 200);
    close(fds[1]);

    /* No lingering (max_ms 0): input that came is read and dropped, the
     * peer gets the reply and end-of-file, and the fd closes at once. */
    closed = 0;
    closed_with_linger(loop, fds, EVL_LINGER_DEFAULT_BYTES, 0, 100000);
    poll_counting_closed(loop, 10, &closed, &status);
    CHECK_EQ(closed, 1);
    CHECK_EQ(count_fds(), with_loop + 2); /* open until the next poll */
    poll_counting_closed(loop, 0, &closed, &status);
    CHECK_EQ(count_fds(), with_loop + 1);
    CHECK_EQ(peer_read(fds[1], buf, sizeof buf), 5);
    CHECK_EQ(peer_read(fds[1], buf, sizeof buf), 0);
    close(fds[1]);

    /* Nothing discarded (max_bytes 0): close(2) as it is, and with input
     * unread TCP resets. */
    closed = 0;
    closed_with_linger(loop, fds, 0, 60000, 4096);
    poll_counting_closed(loop, 10, &closed, &status);
    poll_counting_closed(loop, 0, &closed, &status);
    CHECK_EQ(closed, 1);
    CHECK_EQ(count_fds(), with_loop + 1);
    ssize_t n = peer_read(fds[1], buf, sizeof buf);
    if (n == 5) n = peer_read(fds[1], buf, sizeof buf);
    CHECK_EQ(n, -ECONNRESET);
    close(fds[1]);

    CHECK_EQ(evl_loop_free(loop), 0);
    CHECK_EQ(count_fds(), before);
}

/* A server that answers one request and closes. */
static void answer_and_close(evl_loop *loop, const evl_stream_event *ev) {
    if (ev->kind == EVL_STREAM_DATA) {
        CHECK_EQ(evl_stream_write(loop, ev->stream, "answer", 6), 0);
        CHECK_EQ(evl_stream_set_linger(loop, ev->stream, EVL_LINGER_DEFAULT_BYTES, 60000), 0);
        CHECK_EQ(evl_stream_close(loop, ev->stream), 0);
    }
    if (ev->kind == EVL_STREAM_CLOSED) {
        CHECK_EQ(ev->status, 0);
        (*(int *)ev->userdata)++;
        if (((int *)ev->userdata)[1]) evl_stop(loop);
    }
}

/* Lingering sockets do not keep evl_run running: with nothing else left it
 * closes them and returns (long before their 60 s). After evl_stop they are
 * kept; evl_loop_free closes them. No fd is left behind either way. */
static void test_run_returns_with_only_lingering_sockets(void) {
    int before = count_fds();
    for (int stop = 0; stop < 2; stop++) {
        evl_loop *loop = new_loop();
        CHECK_EQ(evl_run_once(loop, 1), 0);
        int with_loop = count_fds();
        int fds[2], state[2] = {0, stop};
        tcp_pair(fds);
        uint64_t stream;
        CHECK_EQ(evl_stream_open(loop, fds[0], answer_and_close, state, &stream), 0);
        CHECK_EQ(write(fds[1], "question", 8), 8);
        struct timespec start, end;
        clock_gettime(CLOCK_MONOTONIC, &start);
        CHECK_EQ(evl_run(loop), 0);
        clock_gettime(CLOCK_MONOTONIC, &end);
        CHECK(end.tv_sec - start.tv_sec < 30);
        CHECK_EQ(state[0], 1);
        /* evl_run closed it, or after evl_stop it still lingers. */
        CHECK_EQ(count_fds(), with_loop + 1 + stop);
        char buf[16];
        CHECK_EQ(peer_read(fds[1], buf, sizeof buf), 6);
        CHECK(memcmp(buf, "answer", 6) == 0);
        CHECK_EQ(peer_read(fds[1], buf, sizeof buf), 0);
        CHECK_EQ(evl_run(loop), 0); /* the same again: nothing left */
        CHECK_EQ(count_fds(), with_loop + 1);
        close(fds[1]);
        CHECK_EQ(evl_loop_free(loop), 0);
    }
    CHECK_EQ(count_fds(), before);
    /* evl_loop_free closes a socket still lingering. */
    evl_loop *loop = new_loop();
    int fds[2];
    closed_with_linger(loop, fds, EVL_LINGER_DEFAULT_BYTES, 60000, 0);
    int closed = 0, status = 1;
    poll_counting_closed(loop, 10, &closed, &status);
    CHECK_EQ(closed, 1);
    CHECK_EQ(evl_loop_free(loop), 0);
    CHECK_EQ(count_fds(), before + 1);
    char buf[16];
    CHECK_EQ(peer_read(fds[1], buf, sizeof buf), 5);
    CHECK_EQ(peer_read(fds[1], buf, sizeof buf), 0);
    close(fds[1]);
    CHECK_EQ(count_fds(), before);
}

/* evl_loop_fork: a socket lingering in the parent is the parent's to end.
 * The child closes its copy (were it kept, the connection would stay open
 * after the parent's close, for as long as the child lingers); the
 * parent's lingering goes on and ends at the peer's end. */
static void test_fork_leaves_lingering_to_the_parent(void) {
    evl_loop *loop = new_loop();
    int fds[2], closed = 0, status = 1;
    poll_counting_closed(loop, 1, &closed, &status);
    closed_with_linger(loop, fds, EVL_LINGER_DEFAULT_BYTES, 60000, 0);
    poll_counting_closed(loop, 10, &closed, &status);
    CHECK_EQ(closed, 1);
    int lingering = fds[0];
    CHECK(fcntl(lingering, F_GETFD) >= 0);
    int with_lingering = count_fds();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int bad = 0;
        if (evl_loop_fork(loop) != 0) bad |= 1;
        if (fcntl(lingering, F_GETFD) != -1 || errno != EBADF) bad |= 2;
        if (evl_run(loop) != 0) bad |= 4;
        if (evl_loop_free(loop) != 0) bad |= 8;
        exit(bad);
    }
    int wait_status = 0;
    CHECK_EQ(waitpid(pid, &wait_status, 0), pid);
    CHECK(WIFEXITED(wait_status));
    CHECK_EQ(WEXITSTATUS(wait_status), 0);
    /* The parent's socket lingers on: it takes what the peer sends. */
    static char junk[4096];
    CHECK_EQ(write(fds[1], junk, sizeof junk), (ssize_t)sizeof junk);
    for (int i = 0; i < 5; i++) poll_counting_closed(loop, 10, &closed, &status);
    CHECK_EQ(count_fds(), with_lingering);
    char buf[16];
    CHECK_EQ(peer_read(fds[1], buf, sizeof buf), 5);
    CHECK_EQ(peer_read(fds[1], buf, sizeof buf), 0);
    CHECK_EQ(shutdown(fds[1], SHUT_WR), 0);
    CHECK(poll_until_fds(loop, with_lingering - 1, NULL));
    CHECK_EQ(closed, 1);
    close(fds[1]);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* Issue 25 (the flush-closes-fd item): a stream the library ended (a write
 * failed) kept its fd number only until then: before its EVL_STREAM_CLOSED
 * was delivered a new socket could take the number, which an application
 * still holding it as the stream's (asyncio's map of fds) took for the
 * stream's. Now the fd stays open until the event was delivered. */
static void test_fd_stays_open_until_closed_is_delivered(void) {
    evl_loop *loop = new_loop();
    int fds[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    uint64_t stream;
    CHECK_EQ(evl_stream_open(loop, fds[0], NULL, NULL, &stream), 0);
    int fd = evl_stream_fd(loop, stream);
    CHECK_EQ(fd, fds[0]);
    close(fds[1]);
    CHECK_EQ(evl_stream_write(loop, stream, "x", 1), -EPIPE); /* ends it */
    struct stat st;
    CHECK_EQ(fstat(fd, &st), 0); /* still ours: no new file may take it */
    evl_stream_event ev[4];
    CHECK_EQ(evl_stream_poll(loop, 0, ev, 4), 1);
    CHECK_EQ(ev[0].kind, EVL_STREAM_CLOSED);
    CHECK_EQ(ev[0].status, -EPIPE);
    CHECK_EQ(ev[0].fd, fd);
    CHECK_EQ(fstat(fd, &st), 0); /* until the next poll */
    CHECK_EQ(evl_stream_poll(loop, 0, ev, 4), 0);
    CHECK_EQ(fstat(fd, &st), -1);
    CHECK_EQ(errno, EBADF);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* Issue 25 (left from stop 20): evl_stream_pause after the library had read
 * a stream's bytes but not delivered them (a poll whose array was full
 * leaves its events for the next) still delivered them. Now no DATA comes
 * until evl_stream_resume, and then those bytes come first, nothing lost;
 * meanwhile the other streams read on (the held bytes do not take the
 * read buffer). */
static void test_pause_holds_data_read_before_it(void) {
    evl_loop *loop = new_loop();
    uint64_t streams[2];
    int peers[2];
    int held = pause_with_data_waiting(loop, streams, peers);
    int other = !held;
    evl_stream_event ev[16];
    /* While paused: nothing of it, and the other stream reads 2 MB. */
    size_t other_got = 0, held_got = 0;
    int wrong = 0;
    static char chunk[65536];
    memset(chunk, pattern[other], sizeof chunk);
    size_t other_sent = 0;
    for (int round = 0; round < 5000 && (other_sent < 2000000 || other_got < other_sent + 1000); round++) {
        ssize_t n = other_sent < 2000000 ? write(peers[other], chunk, sizeof chunk) : 0;
        if (n > 0) other_sent += (size_t)n;
        if (round == 10) CHECK_EQ(write(peers[held], pattern[held] == 'a' ? "aaaaa" : "bbbbb", 5), 5);
        int count = evl_stream_poll(loop, 10, ev, 16);
        CHECK(count >= 0);
        for (int i = 0; i < count; i++) {
            if (ev[i].kind != EVL_STREAM_DATA) continue;
            if (ev[i].stream == streams[held]) held_got += ev[i].len;
            else other_got += ev[i].len;
            if (!all_bytes_are(&ev[i], ev[i].stream == streams[held] ? pattern[held] : pattern[other])) wrong++;
        }
    }
    CHECK_EQ(held_got, 0);
    CHECK_EQ(other_got, other_sent + 1000);
    /* Resumed: the 1000 bytes read before the pause, then the 5 sent since. */
    CHECK_EQ(evl_stream_resume(loop, streams[held]), 0);
    for (int round = 0; round < 100 && held_got < 1005; round++) {
        int count = evl_stream_poll(loop, 10, ev, 16);
        for (int i = 0; i < count; i++) {
            if (ev[i].kind != EVL_STREAM_DATA) continue;
            CHECK_EQ(ev[i].stream, streams[held]);
            held_got += ev[i].len;
            if (!all_bytes_are(&ev[i], pattern[held])) wrong++;
        }
    }
    CHECK_EQ(held_got, 1005);
    CHECK_EQ(wrong, 0);
    free_loop_and_peers(loop, peers);
}

/* What a pause held is the stream's events too: evl_stream_close drops it.
 * A resume while the close waits for the queue to drain brought it back
 * as DATA after the close. */
static void test_close_drops_what_pause_held(void) {
    evl_loop *loop = new_loop();
    uint64_t streams[2];
    int peers[2];
    int held = pause_with_data_waiting(loop, streams, peers);
    evl_stream_event ev[16];
    /* Something queued, so that the close waits for it to drain. */
    static char big[300000];
    memset(big, '.', sizeof big);
    CHECK_EQ(evl_stream_write(loop, streams[held], big, sizeof big), 0);
    size_t queued = 0;
    CHECK_EQ(evl_stream_queued(loop, streams[held], &queued), 0);
    CHECK(queued > 0);
    CHECK_EQ(evl_stream_close(loop, streams[held]), 0);
    CHECK_EQ(evl_stream_resume(loop, streams[held]), 0);
    int data_after_close = 0, closed = 0;
    for (int round = 0; round < 500 && !closed; round++) {
        drain_fd(peers[held]);
        int count = evl_stream_poll(loop, 10, ev, 16);
        CHECK(count >= 0);
        for (int i = 0; i < count; i++) {
            if (ev[i].stream != streams[held]) continue;
            if (ev[i].kind == EVL_STREAM_DATA) data_after_close++;
            if (ev[i].kind == EVL_STREAM_CLOSED) {
                CHECK_EQ(ev[i].status, 0);
                closed++;
            }
        }
    }
    CHECK_EQ(closed, 1);
    CHECK_EQ(data_after_close, 0);
    free_loop_and_peers(loop, peers);
}

/* A stream without a callback under evl_run_once (its events dropped)
 * kept the bytes it read in the loop's read buffer: after 256 KiB no
 * stream read anything any more, and the loop spun. */
static int counted_bytes;

static void count_bytes(evl_loop *loop, const evl_stream_event *ev) {
    (void)loop;
    if (ev->kind == EVL_STREAM_DATA) counted_bytes += (int)ev->len;
}

static void test_stream_without_callback_does_not_stall_the_others(void) {
    evl_loop *loop = new_loop();
    int a[2], b[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
    uint64_t silent, counted;
    CHECK_EQ(evl_stream_open(loop, a[0], NULL, NULL, &silent), 0);
    CHECK_EQ(evl_stream_open(loop, b[0], count_bytes, NULL, &counted), 0);
    static char chunk[65536];
    counted_bytes = 0;
    for (int round = 0; round < 8; round++) { /* 512 KiB for the silent one */
        CHECK(write(a[1], chunk, sizeof chunk) > 0);
        CHECK(evl_run_once(loop, 100) >= 0);
    }
    for (int round = 0; round < 10; round++) {
        CHECK_EQ(write(b[1], chunk, 100), 100);
        CHECK(evl_run_once(loop, 100) >= 0);
    }
    CHECK_EQ(counted_bytes, 1000);
    CHECK_EQ(evl_loop_free(loop), 0);
    close(a[1]);
    close(b[1]);
}

/* ---- a listener and a connection driven by callbacks ---------------------- */

struct session {
    uint64_t server, client;
    char received[64];
    size_t received_len;
    int closed, server_eof, connected_status, client_closed_status;
};

static void on_server(evl_loop *loop, const evl_stream_event *ev) {
    struct session *s = ev->userdata;
    switch (ev->kind) {
    case EVL_STREAM_ACCEPTED:
        s->server = ev->stream;
        break;
    case EVL_STREAM_DATA:
        CHECK_EQ(evl_stream_write(loop, ev->stream, ev->data, ev->len), 0);
        break;
    case EVL_STREAM_EOF:
        s->server_eof = 1;
        CHECK_EQ(evl_stream_close(loop, ev->stream), 0);
        break;
    case EVL_STREAM_CLOSED:
        s->closed++;
        break;
    }
}

static void on_client(evl_loop *loop, const evl_stream_event *ev) {
    struct session *s = ev->userdata;
    switch (ev->kind) {
    case EVL_STREAM_CONNECTED:
        s->connected_status = ev->status;
        break;
    case EVL_STREAM_DATA:
        memcpy(s->received + s->received_len, ev->data, ev->len);
        s->received_len += ev->len;
        if (s->received_len == 4) CHECK_EQ(evl_stream_shutdown(loop, ev->stream), 0);
        break;
    case EVL_STREAM_CLOSED:
        s->client_closed_status = ev->status;
        s->closed++;
        break;
    }
}

static void test_stream_callbacks(void) {
    evl_loop *loop = new_loop();
    struct session s = {.connected_status = 1, .client_closed_status = 1};
    uint64_t listener;
    CHECK_EQ(evl_listen(loop, "127.0.0.1", 0, 0, 0, on_server, &s, &listener), 0);
    int port = evl_listener_port(loop, listener);
    CHECK_EQ(evl_connect(loop, "127.0.0.1", port, on_client, &s, &s.client), 0);
    CHECK_EQ(evl_stream_write(loop, s.client, "ping", 4), 0);
    for (int i = 0; i < 100 && s.closed < 2; i++) CHECK(evl_run_once(loop, 100) >= 0);
    CHECK_EQ(s.connected_status, 0);
    CHECK_EQ(s.received_len, 4);
    CHECK(memcmp(s.received, "ping", 4) == 0);
    CHECK_EQ(s.server_eof, 1);
    CHECK_EQ(s.closed, 2);
    CHECK_EQ(s.client_closed_status, 0);
    CHECK_EQ(evl_stream_write(loop, s.server, "x", 1), -ENOENT);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* ---- the same with the batch interface ------------------------------------- */

static void test_stream_batches(void) {
    evl_loop *loop = new_loop();
    uint64_t listener, client, server = 0;
    int listener_tag, client_tag, pipe_tag;
    CHECK_EQ(evl_listen(loop, "127.0.0.1", 0, 0, 0, NULL, &listener_tag, &listener), 0);
    CHECK_EQ(evl_connect(loop, "127.0.0.1", evl_listener_port(loop, listener), NULL, &client_tag, &client), 0);
    /* A raw registration in the same loop is reported as EVL_STREAM_IO. */
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    CHECK_EQ(write(fds[1], "!", 1), 1);
    CHECK_EQ(evl_register(loop, fds[0], EVL_READ, NULL, &pipe_tag), 0);

    evl_stream_op ops[3] = {
        {.stream = client, .op = EVL_OP_WRITE, .data = "one ", .len = 4},
        {.stream = client, .op = EVL_OP_WRITE, .data = "two", .len = 3},
        {.stream = client, .op = 99},
    };
    CHECK_EQ(evl_stream_submit(loop, ops, 3), 1);
    CHECK_EQ(ops[0].status, 0);
    CHECK_EQ(ops[1].status, 0);
    CHECK_EQ(ops[2].status, -EINVAL);

    char echoed[16] = {0}, got[16] = {0};
    size_t echoed_len = 0, got_len = 0;
    int io_seen = 0, connected = 0, closed = 0, eofs = 0;
    evl_stream_event events[8];
    for (int round = 0; round < 200 && closed < 2; round++) {
        int n = evl_stream_poll(loop, 50, events, 8);
        CHECK(n >= 0);
        evl_stream_op replies[8];
        int count = 0;
        for (int i = 0; i < n; i++) {
            const evl_stream_event *ev = &events[i];
            switch (ev->kind) {
            case EVL_STREAM_IO:
                CHECK(ev->userdata == &pipe_tag);
                CHECK_EQ(ev->fd, fds[0]);
                CHECK(ev->revents & EVL_READ);
                io_seen++;
                CHECK_EQ(evl_unregister(loop, fds[0]), 0);
                break;
            case EVL_STREAM_ACCEPTED:
                CHECK(ev->userdata == &listener_tag);
                server = ev->stream;
                break;
            case EVL_STREAM_CONNECTED:
                CHECK(ev->userdata == &client_tag);
                CHECK_EQ(ev->status, 0);
                connected++;
                break;
            case EVL_STREAM_DATA:
                if (ev->stream == server) {
                    /* Echo from the batch: the bytes stay valid until the next poll. */
                    replies[count++] = (evl_stream_op){.stream = server, .op = EVL_OP_WRITE,
                                                       .data = ev->data, .len = ev->len};
                    memcpy(got + got_len, ev->data, ev->len);
                    got_len += ev->len;
                } else {
                    memcpy(echoed + echoed_len, ev->data, ev->len);
                    echoed_len += ev->len;
                    if (echoed_len == 7)
                        replies[count++] = (evl_stream_op){.stream = client, .op = EVL_OP_SHUTDOWN};
                }
                break;
            case EVL_STREAM_EOF:
                /* The server closes at the client's end-of-file; the
                 * client, shut down already, then closes by itself. */
                if (ev->stream == server)
                    replies[count++] = (evl_stream_op){.stream = server, .op = EVL_OP_CLOSE};
                eofs++;
                break;
            case EVL_STREAM_CLOSED:
                CHECK_EQ(ev->status, 0);
                closed++;
                break;
            }
        }
        CHECK_EQ(evl_stream_submit(loop, replies, count), 0);
    }
    CHECK_EQ(io_seen, 1);
    CHECK_EQ(connected, 1);
    CHECK_EQ(closed, 2);
    CHECK_EQ(eofs, 2);
    CHECK_EQ(got_len, 7);
    CHECK(strcmp(got, "one two") == 0);
    CHECK(strcmp(echoed, "one two") == 0);
    close(fds[0]);
    close(fds[1]);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* ---- re-entry ---------------------------------------------------------------- */

static int reentry_checked;

static void reenter(evl_loop *loop, const evl_stream_event *ev) {
    evl_stream_event events[1];
    if (ev->kind != EVL_STREAM_DATA) return;
    CHECK_EQ(evl_stream_poll(loop, 0, events, 1), -EBUSY);
    CHECK_EQ(evl_run(loop), -EBUSY);
    CHECK_EQ(evl_run_once(loop, 0), -EBUSY);
    CHECK_EQ(evl_loop_free(loop), -EBUSY);
    CHECK_EQ(evl_loop_fork(loop), -EBUSY);
    CHECK_EQ(evl_stream_abort(loop, ev->stream), 0);
    reentry_checked++;
}

static void test_stream_reentry_is_busy(void) {
    evl_loop *loop = new_loop();
    int fds[2];
    uint64_t stream;
    CHECK_EQ(pipe(fds), 0);
    CHECK_EQ(evl_stream_open(loop, fds[0], reenter, NULL, &stream), 0);
    CHECK_EQ(write(fds[1], "hi", 2), 2);
    for (int i = 0; i < 10 && !reentry_checked; i++) CHECK(evl_run_once(loop, 100) >= 0);
    CHECK_EQ(reentry_checked, 1);
    close(fds[1]);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* Streams, listeners and queued bytes still there when the loop is freed:
 * their fds are closed and their memory freed (memcheck watches). */
static void test_free_with_streams_open(void) {
    evl_loop *loop = new_loop();
    uint64_t listener, client, stream;
    CHECK_EQ(evl_listen(loop, "127.0.0.1", 0, 0, 0, ignore_event, NULL, &listener), 0);
    CHECK_EQ(evl_connect(loop, "127.0.0.1", evl_listener_port(loop, listener), ignore_event, NULL, &client), 0);
    static char big[1 << 20];
    CHECK_EQ(evl_stream_write(loop, client, big, sizeof big), 0);
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    CHECK_EQ(evl_stream_open(loop, fds[1], ignore_event, NULL, &stream), 0);
    CHECK_EQ(evl_stream_write(loop, stream, big, sizeof big), 0);
    size_t queued = 0;
    CHECK_EQ(evl_stream_queued(loop, stream, &queued), 0);
    CHECK(queued > 0);
    CHECK(evl_run_once(loop, 50) >= 0);
    CHECK_EQ(evl_loop_free(loop), 0);
    /* The stream closed fds[1]: the read end sees end-of-file after the data. */
    char buf[65536];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0) {
    }
    CHECK_EQ(n, 0);
    close(fds[0]);
}

/* The two calls made for bindings that pay per call: the read buffer that
 * every EVL_STREAM_DATA event points into, and many writes in one call. */
static void test_read_buffer_and_write_batch(void) {
    const uint8_t *start = NULL;
    size_t len = 0;
    CHECK_EQ(evl_stream_read_buffer(NULL, &start, &len), -EINVAL);
    evl_loop *loop = new_loop();
    CHECK_EQ(evl_stream_read_buffer(loop, NULL, &len), -EINVAL);
    CHECK_EQ(evl_stream_read_buffer(loop, &start, NULL), -EINVAL);
    CHECK_EQ(evl_stream_read_buffer(loop, &start, &len), 0);
    CHECK(start != NULL && len >= 65536);

    uint64_t ids[2];
    size_t lens[2] = {3, 4};
    CHECK_EQ(evl_stream_write_batch(NULL, ids, lens, 2, "abcdefg"), -EINVAL);
    CHECK_EQ(evl_stream_write_batch(loop, ids, lens, -1, "abcdefg"), -EINVAL);
    CHECK_EQ(evl_stream_write_batch(loop, NULL, lens, 2, "abcdefg"), -EINVAL);
    CHECK_EQ(evl_stream_write_batch(loop, ids, NULL, 2, "abcdefg"), -EINVAL);
    CHECK_EQ(evl_stream_write_batch(loop, ids, lens, 2, NULL), -EINVAL);
    CHECK_EQ(evl_stream_write_batch(loop, NULL, NULL, 0, NULL), 0);

    /* Two pipes: "abc" to the first, "defg" to the second; a stale id fails alone. */
    int a[2], b[2];
    CHECK_EQ(pipe(a), 0);
    CHECK_EQ(pipe(b), 0);
    CHECK_EQ(evl_stream_open(loop, a[1], NULL, NULL, &ids[0]), 0);
    CHECK_EQ(evl_stream_open(loop, b[1], NULL, NULL, &ids[1]), 0);
    CHECK_EQ(evl_stream_write_batch(loop, ids, lens, 2, "abcdefg"), 0);
    char got[8] = {0};
    CHECK_EQ(read(a[0], got, sizeof got), 3);
    CHECK(memcmp(got, "abc", 3) == 0);
    CHECK_EQ(read(b[0], got, sizeof got), 4);
    CHECK(memcmp(got, "defg", 4) == 0);
    uint64_t stale[2] = {ids[0] + (1ull << 32), ids[1]};
    CHECK_EQ(evl_stream_write_batch(loop, stale, lens, 2, "abcdefg"), 1);
    CHECK_EQ(read(b[0], got, sizeof got), 4);

    /* Data read by a stream lies inside the read buffer. */
    uint64_t reader;
    CHECK_EQ(evl_stream_open(loop, a[0], NULL, NULL, &reader), 0);
    CHECK_EQ(evl_stream_write(loop, ids[0], "hello", 5), 0);
    evl_stream_event events[8];
    int seen = 0;
    for (int i = 0; i < 20 && !seen; i++) {
        int n = evl_stream_poll(loop, 50, events, 8);
        CHECK(n >= 0);
        for (int k = 0; k < n; k++) {
            if (events[k].kind != EVL_STREAM_DATA) continue;
            CHECK(events[k].data >= start && events[k].data + events[k].len <= start + len);
            CHECK(memcmp(events[k].data, "hello", 5) == 0);
            seen = 1;
        }
    }
    CHECK(seen);
    CHECK_EQ(evl_loop_free(loop), 0);
    close(b[0]);
}

/* Checks what evl_stream_exchange says of a batch: the first data_events
 * events are DATA lying end to end, data_len long, and the next is not. */
static void check_data_run(const evl_stream_exchange_args *x, const evl_stream_event *events, int n) {
    CHECK(x->data_events >= 0 && x->data_events <= n);
    size_t len = 0;
    for (int k = 0; k < x->data_events; k++) {
        CHECK_EQ(events[k].kind, EVL_STREAM_DATA);
        if (k > 0) CHECK(events[k].data == events[k - 1].data + events[k - 1].len);
        len += events[k].len;
    }
    CHECK_EQ(x->data_len, len);
    if (x->data_events < n) { /* the run ends at a non-DATA event or a gap */
        const evl_stream_event *next = &events[x->data_events];
        CHECK(next->kind != EVL_STREAM_DATA || (x->data_events > 0 && next->data != next[-1].data + next[-1].len));
    }
}

static void test_exchange(void) {
    evl_stream_event events[8];
    uint64_t ids[2];
    size_t lens[2] = {3, 4};
    evl_stream_exchange_args x = {
        .write_streams = ids, .write_lens = lens, .write_data = "abcdefg",
        .events = events, .write_count = 2, .timeout_ms = 0, .max_events = 8,
    };
    CHECK_EQ(evl_stream_exchange(NULL, &x), -EINVAL);
    evl_loop *loop = new_loop();
    CHECK_EQ(evl_stream_exchange(loop, NULL), -EINVAL);
    evl_stream_exchange_args bad = x;
    bad.events = NULL;
    CHECK_EQ(evl_stream_exchange(loop, &bad), -EINVAL);
    bad = x, bad.max_events = 0;
    CHECK_EQ(evl_stream_exchange(loop, &bad), -EINVAL);
    bad = x, bad.write_count = -1;
    CHECK_EQ(evl_stream_exchange(loop, &bad), -EINVAL);
    bad = x, bad.write_lens = NULL;
    CHECK_EQ(evl_stream_exchange(loop, &bad), -EINVAL);
    CHECK_EQ(bad.write_count, 2); /* refused: nothing was written */

    /* Writers on two pipes, and a stream reading each. */
    int a[2], b[2];
    CHECK_EQ(pipe(a), 0);
    CHECK_EQ(pipe(b), 0);
    uint64_t readers[2];
    CHECK_EQ(evl_stream_open(loop, a[1], NULL, NULL, &ids[0]), 0);
    CHECK_EQ(evl_stream_open(loop, b[1], NULL, NULL, &ids[1]), 0);
    CHECK_EQ(evl_stream_open(loop, a[0], NULL, NULL, &readers[0]), 0);
    CHECK_EQ(evl_stream_open(loop, b[0], NULL, NULL, &readers[1]), 0);

    /* The writes are made once (write_count goes back to 0), then polled:
     * "abc" comes to the first reader and "defg" to the second. */
    char got[2][8] = {{0}};
    size_t have[2] = {0, 0};
    for (int i = 0; i < 20 && have[0] + have[1] < 7; i++) {
        x.timeout_ms = 50;
        int n = evl_stream_exchange(loop, &x);
        CHECK(n >= 0);
        CHECK_EQ(x.write_count, 0);
        CHECK_EQ(x.write_failed, 0);
        check_data_run(&x, events, n);
        for (int k = 0; k < n; k++) {
            if (events[k].kind != EVL_STREAM_DATA) continue;
            int which = events[k].stream == readers[1];
            CHECK(have[which] + events[k].len <= 4);
            memcpy(got[which] + have[which], events[k].data, events[k].len);
            have[which] += events[k].len;
        }
    }
    CHECK(memcmp(got[0], "abc", 4) == 0 && memcmp(got[1], "defg", 5) == 0);

    /* A stale id fails alone, and is counted. */
    uint64_t stale[2] = {ids[0] + (1ull << 32), ids[1]};
    x.write_streams = stale, x.write_count = 2, x.timeout_ms = 0;
    CHECK(evl_stream_exchange(loop, &x) >= 0);
    CHECK_EQ(x.write_failed, 1);
    CHECK_EQ(x.write_count, 0);

    /* The writer ends: "defg" and then EOF reach the reader; every batch
     * still describes its run of DATA events. */
    x.write_streams = ids;
    CHECK_EQ(evl_stream_close(loop, ids[1]), 0);
    int eof = 0;
    for (int i = 0; i < 20 && !eof; i++) {
        x.timeout_ms = 50;
        int n = evl_stream_exchange(loop, &x);
        CHECK(n >= 0);
        check_data_run(&x, events, n);
        for (int k = 0; k < n; k++) eof |= events[k].kind == EVL_STREAM_EOF && events[k].stream == readers[1];
    }
    CHECK(eof);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* evl_stream_exchange_writes: an exchange's writes, made at once, with no
 * poll: the events of the exchange before (and their bytes) stay valid,
 * and the fields of x that are not the writes' are left alone. */
static void test_exchange_writes(void) {
    evl_stream_event events[4];
    uint64_t ids[2];
    size_t lens[2] = {3, 4};
    evl_stream_exchange_args x = {
        .write_streams = ids, .write_lens = lens, .write_data = "abcdefg",
        .events = events, .write_count = 2, .timeout_ms = 0, .max_events = 4,
    };
    CHECK_EQ(evl_stream_exchange_writes(NULL, &x), -EINVAL);
    evl_loop *loop = new_loop();
    CHECK_EQ(evl_stream_exchange_writes(loop, NULL), -EINVAL);
    evl_stream_exchange_args bad = x;
    bad.write_count = -1;
    CHECK_EQ(evl_stream_exchange_writes(loop, &bad), -EINVAL);
    CHECK_EQ(bad.write_count, -1);
    bad = x, bad.write_streams = NULL;
    CHECK_EQ(evl_stream_exchange_writes(loop, &bad), -EINVAL);
    CHECK_EQ(bad.write_count, 2); /* refused: nothing was written */

    /* Two pipes: a stream writing to each, read here with read(2); and a
     * stream reading a third, whose DATA event is polled first. */
    int a[2], b[2], c[2];
    CHECK_EQ(pipe(a), 0);
    CHECK_EQ(pipe(b), 0);
    CHECK_EQ(pipe(c), 0);
    CHECK_EQ(evl_stream_open(loop, a[1], NULL, NULL, &ids[0]), 0);
    CHECK_EQ(evl_stream_open(loop, b[1], NULL, NULL, &ids[1]), 0);
    uint64_t reader;
    CHECK_EQ(evl_stream_open(loop, c[0], NULL, NULL, &reader), 0);
    CHECK_EQ(write(c[1], "xyz", 3), 3);
    x.write_count = 0, x.timeout_ms = 1000;
    int n = 0;
    for (int i = 0; i < 20 && n == 0; i++) n = evl_stream_exchange(loop, &x);
    CHECK_EQ(n, 1);
    CHECK_EQ(events[0].kind, EVL_STREAM_DATA);
    CHECK_EQ(x.data_events, 1);

    /* The writes go out in the call: the pipes hold them when it returns.
     * More input waits for the reader: a poll would read it over "xyz". */
    CHECK_EQ(write(c[1], "XYZ", 3), 3);
    x.write_count = 2;
    CHECK_EQ(evl_stream_exchange_writes(loop, &x), 0);
    CHECK_EQ(x.write_count, 0);
    CHECK_EQ(x.write_failed, 0);
    CHECK_EQ(x.timeout_ms, 1000);
    CHECK_EQ(x.data_events, 1);
    CHECK_EQ(x.data_len, 3);
    char got[8] = {0};
    CHECK_EQ(read(a[0], got, sizeof got), 3);
    CHECK(memcmp(got, "abc", 3) == 0);
    CHECK_EQ(read(b[0], got, sizeof got), 4);
    CHECK(memcmp(got, "defg", 4) == 0);
    CHECK_EQ(events[0].len, 3);
    CHECK(memcmp(events[0].data, "xyz", 3) == 0); /* no poll reused the buffer */
    /* ... and the waiting input is the next exchange's, whole. */
    n = 0;
    for (int i = 0; i < 20 && n == 0; i++) n = evl_stream_exchange(loop, &x);
    CHECK_EQ(n, 1);
    CHECK_EQ(events[0].len, 3);
    CHECK(memcmp(events[0].data, "XYZ", 3) == 0);

    /* Made once: a second call with write_count 0 writes nothing. */
    CHECK_EQ(evl_stream_exchange_writes(loop, &x), 0);
    CHECK_EQ(fcntl(a[0], F_SETFL, O_NONBLOCK), 0);
    CHECK_EQ(read(a[0], got, sizeof got), -1);
    CHECK_EQ(errno, EAGAIN);

    /* A stale id fails alone, and is counted, returned and stored. */
    uint64_t stale[2] = {ids[0] + (1ull << 32), ids[1]};
    x.write_streams = stale, x.write_count = 2;
    CHECK_EQ(evl_stream_exchange_writes(loop, &x), 1);
    CHECK_EQ(x.write_failed, 1);
    CHECK_EQ(x.write_count, 0);
    CHECK_EQ(read(b[0], got, sizeof got), 4);
    CHECK(memcmp(got, "defg", 4) == 0);
    CHECK_EQ(evl_loop_free(loop), 0);
    int fds[] = {a[0], b[0], c[1]};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) CHECK_EQ(close(fds[i]), 0);
}

/* ---- numbers that name nothing, or too much ---------------------------------- */

/* The sweep of issue 25 over the stream API: fds that are not open, huge
 * and negative ports, backlogs, limits, watermarks, timeouts, counts,
 * lengths and ids give the documented error or a bounded cost, never an
 * abort, a hang or memory in proportion to the number. */
static void test_huge_and_negative_numbers_cost_nothing(void) {
    evl_loop *loop = new_loop();
    long before = status_kib("VmRSS");
    uint64_t id = 0;

    /* fds: not open (any number), negative. */
    struct rlimit limit;
    CHECK_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
    int last = limit.rlim_cur > (rlim_t)INT_MAX ? INT_MAX - 1 : (int)limit.rlim_cur - 1;
    const int closed[] = {INT_MAX, 1000000, last, INT_MAX - 1};
    for (size_t i = 0; i < sizeof closed / sizeof closed[0]; i++) {
        if (fcntl(closed[i], F_GETFD) >= 0) continue; /* valgrind's own, at the limit */
        CHECK_EQ(evl_stream_open(loop, closed[i], ignore_event, NULL, &id), -EBADF);
    }
    CHECK_EQ(evl_stream_open(loop, INT_MIN, ignore_event, NULL, &id), -EINVAL);
    CHECK_EQ(evl_stream_open(loop, -1, ignore_event, NULL, &id), -EINVAL);

    /* Ports outside 0..65535; flags nobody knows. */
    const int ports[] = {INT_MAX, INT_MIN, 65536, -1};
    for (size_t i = 0; i < sizeof ports / sizeof ports[0]; i++) {
        CHECK_EQ(evl_listen(loop, "127.0.0.1", ports[i], 0, 0, ignore_event, NULL, &id), -EINVAL);
        CHECK_EQ(evl_connect(loop, "127.0.0.1", ports[i], ignore_event, NULL, &id), -EINVAL);
    }
    CHECK_EQ(evl_listen(loop, "127.0.0.1", 0, 0, UINT32_MAX, ignore_event, NULL, &id), -EINVAL);

    /* Backlogs: the kernel's own bound for a huge one, SOMAXCONN for <= 0;
     * a limit of INT_MAX connections is no limit, a negative one refused. */
    const int backlogs[] = {INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof backlogs / sizeof backlogs[0]; i++) {
        uint64_t listener;
        CHECK_EQ(evl_listen(loop, "127.0.0.1", 0, backlogs[i], 0, NULL, NULL, &listener), 0);
        CHECK_EQ(evl_listener_set_max_conns(loop, listener, INT_MAX), 0);
        CHECK_EQ(evl_listener_set_max_conns(loop, listener, INT_MIN), -EINVAL);
        CHECK_EQ(evl_stream_set_watermarks(loop, listener, SIZE_MAX, SIZE_MAX), 0);
        CHECK_EQ(evl_stream_set_idle_timeout(loop, listener, UINT32_MAX), 0);
        uint64_t client;
        CHECK_EQ(evl_connect(loop, "127.0.0.1", evl_listener_port(loop, listener), NULL, NULL, &client), 0);
        uint64_t accepted = 0;
        evl_stream_event ev[4];
        for (int round = 0; round < 200 && accepted == 0; round++) {
            int count = evl_stream_poll(loop, 10, ev, 4);
            for (int e = 0; e < count; e++) {
                if (ev[e].kind == EVL_STREAM_ACCEPTED) accepted = ev[e].stream;
            }
        }
        CHECK(accepted != 0);
        CHECK_EQ(evl_stream_abort(loop, client), 0);
        CHECK_EQ(evl_stream_abort(loop, accepted), 0);
        CHECK_EQ(evl_listener_close(loop, listener), 0);
        while (evl_stream_poll(loop, 0, ev, 4) > 0) {}
    }

    /* Watermarks and idle timeouts at their extremes; a stream that moves
     * no byte with the longest idle timeout is not closed for it. */
    int fds[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    uint64_t stream;
    CHECK_EQ(evl_stream_open(loop, fds[0], NULL, NULL, &stream), 0);
    CHECK_EQ(evl_stream_set_watermarks(loop, stream, SIZE_MAX, SIZE_MAX), 0);
    CHECK_EQ(evl_stream_set_watermarks(loop, stream, 0, SIZE_MAX), 0); /* never pause */
    CHECK_EQ(evl_stream_set_watermarks(loop, stream, 1, SIZE_MAX), -EINVAL);
    CHECK_EQ(evl_stream_set_idle_timeout(loop, stream, UINT32_MAX), 0);
    evl_stream_event ev[4];
    CHECK_EQ(evl_stream_poll(loop, 20, ev, 4), 0);
    CHECK_EQ(evl_stream_write(loop, stream, "x", 1), 0);
    CHECK_EQ(evl_stream_write(loop, stream, "x", SIZE_MAX), -EINVAL);
    CHECK_EQ(evl_stream_write(loop, stream, "x", (size_t)PTRDIFF_MAX + 1), -EINVAL);

    /* Counts and lengths: negative, or summing past what memory can hold. */
    uint64_t streams[2] = {stream, stream};
    size_t lens[2] = {SIZE_MAX, 2};
    CHECK_EQ(evl_stream_write_batch(loop, streams, lens, 2, "xy"), -EINVAL);
    CHECK_EQ(evl_stream_write_batch(loop, streams, lens, INT_MIN, "xy"), -EINVAL);
    CHECK_EQ(evl_stream_write_batch(loop, NULL, NULL, INT_MAX, "xy"), -EINVAL);
    evl_stream_op op = {.stream = stream, .op = EVL_OP_PAUSE};
    CHECK_EQ(evl_stream_submit(loop, &op, INT_MIN), -EINVAL);
    CHECK_EQ(evl_stream_poll(loop, 0, ev, INT_MIN), -EINVAL);
    evl_stream_exchange_args x = {.events = ev, .max_events = INT_MIN};
    CHECK_EQ(evl_stream_exchange(loop, &x), -EINVAL);
    x.max_events = 4;
    x.write_count = INT_MIN;
    CHECK_EQ(evl_stream_exchange(loop, &x), -EINVAL);
    CHECK_EQ(evl_stream_exchange_writes(loop, &x), -EINVAL);
    x.write_streams = streams, x.write_lens = lens, x.write_data = "xy", x.write_count = 2;
    CHECK_EQ(evl_stream_exchange_writes(loop, &x), -EINVAL);

    /* evl_stream_poll with room for INT_MAX events (address space only;
     * valgrind has not that much to give: 2^24 there): nothing is made for
     * the room, only what is ready is written. */
    int max = INT_MAX;
    size_t room = (size_t)max * sizeof(evl_stream_event);
    const int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    evl_stream_event *many = mmap(NULL, room, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (many == MAP_FAILED) {
        max = 1 << 24;
        room = (size_t)max * sizeof(evl_stream_event);
        fprintf(stderr, "no address space for INT_MAX events: %d\n", max);
        many = mmap(NULL, room, PROT_READ | PROT_WRITE, flags, -1, 0);
    }
    CHECK(many != MAP_FAILED);
    if (many != MAP_FAILED) {
        CHECK_EQ(write(fds[1], "y", 1), 1);
        int count = 0;
        for (int round = 0; round < 100 && count == 0; round++) count = evl_stream_poll(loop, 10, many, max);
        CHECK_EQ(count, 1);
        CHECK_EQ(many[0].kind, EVL_STREAM_DATA);
        munmap(many, room);
    }

    /* Ids that name nothing. */
    CHECK_EQ(evl_stream_write(loop, UINT64_MAX, "x", 1), -ENOENT);
    CHECK_EQ(evl_stream_close(loop, UINT64_MAX), -ENOENT);
    CHECK_EQ(evl_stream_set_watermarks(loop, UINT64_MAX, 2, 1), -ENOENT);
    CHECK_EQ(evl_stream_set_idle_timeout(loop, UINT64_MAX, 1), -ENOENT);
    CHECK_EQ(evl_stream_fd(loop, UINT64_MAX), -ENOENT);
    CHECK_EQ(evl_listener_port(loop, UINT64_MAX), -ENOENT);
    CHECK_EQ(evl_listener_set_max_conns(loop, UINT64_MAX, 1), -ENOENT);
    CHECK_EQ(evl_listener_close(loop, UINT64_MAX), -ENOENT);

    long grown = grown_kib(before);
    if (grown >= 2048) fprintf(stderr, "grew by %ld KiB\n", grown);
    CHECK(grown < 2048); /* the stream's read buffer is the most it may make */
    CHECK_EQ(evl_stream_abort(loop, stream), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
    close(fds[1]);
}

/* ---- the pre-fork server ---------------------------------------------------- */

enum { PREFORK_CONNS = 2 };

typedef struct {
    uint64_t streams[PREFORK_CONNS];
    int accepted, closed, bad;
} prefork;

/* The server's one callback, in the parent (which only accepts) and in the
 * child (which echoes, and closes at the client's end-of-file). */
static void on_prefork(evl_loop *loop, const evl_stream_event *ev) {
    prefork *p = ev->userdata;
    switch (ev->kind) {
    case EVL_STREAM_ACCEPTED:
        if (p->accepted < PREFORK_CONNS) p->streams[p->accepted] = ev->stream;
        p->accepted++;
        break;
    case EVL_STREAM_DATA:
        if (evl_stream_write(loop, ev->stream, ev->data, ev->len) != 0) p->bad |= 1;
        break;
    case EVL_STREAM_EOF:
        if (evl_stream_close(loop, ev->stream) != 0) p->bad |= 2;
        break;
    case EVL_STREAM_CLOSED:
        p->closed++;
        break;
    }
}

/* Sends `size` bytes of a pattern on the non-blocking socket `fd` while
 * reading the echo; 0 if exactly those bytes came back within 20 s. */
static int echo_exchange(int fd, size_t size, unsigned seed) {
    static char sent[1 << 20], got[1 << 20];
    if (size > sizeof sent) return -1;
    for (size_t i = 0; i < size; i++) sent[i] = (char)(i * 31 + seed);
    size_t out = 0, in = 0;
    for (int round = 0; in < size && round < 20000; round++) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN | (out < size ? POLLOUT : 0)};
        if (poll(&pfd, 1, 1) < 0) return -1;
        if (out < size) {
            ssize_t n = send(fd, sent + out, size - out, MSG_NOSIGNAL);
            if (n > 0) out += (size_t)n;
            else if (n < 0 && errno != EAGAIN) return -1;
        }
        ssize_t n = recv(fd, got + in, size - in, 0);
        if (n > 0) in += (size_t)n;
        else if (n == 0 || errno != EAGAIN) return -1;
    }
    return in == size && memcmp(sent, got, size) == 0 ? 0 : -1;
}

static int prefork_child(evl_loop *loop, uint64_t listener, prefork *p, int go, const int *clients) {
    /* The clients' ends are the parent's: its closing them must end the streams. */
    for (int i = 0; i < PREFORK_CONNS; i++) close(clients[i]);
    struct pollfd wait_go = {.fd = go, .events = POLLIN};
    char c;
    if (poll(&wait_go, 1, 10000) != 1 || read(go, &c, 1) != 1) return 4;
    if (evl_loop_fork(loop) != 0) return 8;
    /* The parent accepts; this child serves what it was handed. */
    if (evl_listener_close(loop, listener) != 0) return 16;
    p->closed = 0;
    if (evl_run(loop) != 0) p->bad |= 32; /* until both streams closed */
    if (p->closed != PREFORK_CONNS) p->bad |= 64;
    evl_loop_free(loop);
    return p->bad;
}

/* The classic pre-fork server (issue 25): the parent accepts, forks, and
 * lets its copies go (evl_stream_abort closes them, touching nothing the
 * child shares) before the child calls evl_loop_fork; the child serves the
 * connections, byte-exact, at every size. It used to lose them: the child
 * took what the parent had let go for closed. */
static void test_prefork_server_child_serves_what_the_parent_let_go(void) {
    evl_loop *loop = new_loop();
    prefork p = {0};
    uint64_t listener;
    CHECK_EQ(evl_listen(loop, "127.0.0.1", 0, 0, 0, on_prefork, &p, &listener), 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    addr.sin_port = htons((uint16_t)evl_listener_port(loop, listener));
    int clients[PREFORK_CONNS];
    for (int i = 0; i < PREFORK_CONNS; i++) {
        clients[i] = socket(AF_INET, SOCK_STREAM, 0);
        CHECK_EQ(connect(clients[i], (struct sockaddr *)&addr, sizeof addr), 0);
        CHECK_EQ(fcntl(clients[i], F_SETFL, O_NONBLOCK), 0);
    }
    for (int i = 0; i < 100 && p.accepted < PREFORK_CONNS; i++) CHECK(evl_run_once(loop, 100) >= 0);
    CHECK_EQ(p.accepted, PREFORK_CONNS);
    int go[2];
    CHECK_EQ(pipe(go), 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(prefork_child(loop, listener, &p, go[0], clients));
    for (int i = 0; i < PREFORK_CONNS; i++) CHECK_EQ(evl_stream_abort(loop, p.streams[i]), 0);
    CHECK_EQ(evl_run_once(loop, 0), PREFORK_CONNS); /* their CLOSED */
    CHECK_EQ(p.closed, PREFORK_CONNS);
    CHECK_EQ(write(go[1], "g", 1), 1);
    const size_t sizes[] = {1, 1000, 65536, 300001, 1 << 20};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int i = 0; i < PREFORK_CONNS; i++) {
            int rc = echo_exchange(clients[i], sizes[s], (unsigned)(s * 7 + i));
            if (rc != 0) fprintf(stderr, "connection %d: %zu bytes not echoed\n", i, sizes[s]);
            CHECK_EQ(rc, 0);
        }
    }
    for (int i = 0; i < PREFORK_CONNS; i++) close(clients[i]);
    CHECK_EQ(reap_within(pid, 20000), 0);
    CHECK_EQ(evl_listener_close(loop, listener), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
    close(go[0]);
    close(go[1]);
}

int main(int argc, char **argv) {
    static const harness_test tests[] = {
        TEST(test_read_buffer_and_write_batch),
        TEST(test_exchange),
        TEST(test_exchange_writes),
        TEST(test_stream_arguments),
        TEST(test_held_over_data_keeps_its_bytes),
        TEST(test_stream_over_a_pipes_write_end),
        TEST(test_graceful_close_with_unread_input_sends_everything),
        TEST(test_lingering_close_keeps_the_reply_from_a_peer_still_sending),
        TEST(test_linger_bounds_end_it),
        TEST(test_run_returns_with_only_lingering_sockets),
        TEST(test_fork_leaves_lingering_to_the_parent),
        TEST(test_fd_stays_open_until_closed_is_delivered),
        TEST(test_pause_holds_data_read_before_it),
        TEST(test_close_drops_what_pause_held),
        TEST(test_stream_without_callback_does_not_stall_the_others),
        TEST(test_library_closed_stream_id_lives_until_closed),
        TEST(test_stream_callbacks),
        TEST(test_stream_batches),
        TEST(test_stream_reentry_is_busy),
        TEST(test_free_with_streams_open),
        TEST(test_huge_and_negative_numbers_cost_nothing),
        TEST(test_prefork_server_child_serves_what_the_parent_let_go),
    };
    return harness_main(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
