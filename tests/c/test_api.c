/* Every function of the C API, every documented error, and the callback
 * re-entrancy rules. Built with -std=c11 -Wall -Wextra -Werror and run both
 * natively and under valgrind memcheck by tests/c_api.rs. */
#define _GNU_SOURCE
#include "evloop.h"
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static void pair(int sv[2]) {
    int rc = socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv);
    CHECK_EQ(rc, 0);
}

/* Makes `fd` (a new fd) take the number `number`; returns `number`. */
static int move_to(int fd, int number) {
    if (fd != number) {
        CHECK_EQ(dup2(fd, number), number);
        close(fd);
    }
    return number;
}

static void drain(int fd) {
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0) {}
}

static void put(int fd, const char *s) { CHECK_EQ(write(fd, s, strlen(s)), (ssize_t)strlen(s)); }

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A record of I/O callbacks: which fds fired, with what. */
typedef struct {
    int calls;
    int last_fd;
    uint32_t last_revents;
    void *last_userdata;
} io_log;

static void log_io(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    (void)loop;
    io_log *log = userdata;
    log->calls++;
    log->last_fd = fd;
    log->last_revents = revents;
    log->last_userdata = userdata;
}

static void count_task(evl_loop *loop, void *userdata) {
    (void)loop;
    (*(int *)userdata)++;
}

static void count_timer(evl_loop *loop, uint64_t id, void *userdata) {
    (void)loop;
    (void)id;
    (*(int *)userdata)++;
}

static void on_signal_noop(evl_loop *loop, int signo, void *userdata) {
    (void)loop;
    (void)signo;
    (void)userdata;
}

/* ---- versions and errors ------------------------------------------------- */

static void test_versions(void) {
    char expected[64];
    snprintf(expected, sizeof expected, "%d.%d.%d", EVL_VERSION_MAJOR, EVL_VERSION_MINOR, EVL_VERSION_PATCH);
    CHECK(strcmp(evl_version(), expected) == 0);
    CHECK_EQ(evl_abi_version(), EVL_ABI_VERSION);
}

static void test_strerror(void) {
    CHECK(strcmp(evl_strerror(-EINVAL), "Invalid argument") == 0);
    CHECK(strcmp(evl_strerror(-ENOENT), "No such file or directory") == 0);
    CHECK(strcmp(evl_strerror(EBADF), "Bad file descriptor") == 0);
    CHECK(strstr(evl_strerror(EVL_EPANIC), "panic") != NULL);
    int odd[] = {0, 1, -1, INT_MIN, INT_MAX, 4096, -4096, -134, 134};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        const char *s = evl_strerror(odd[i]);
        CHECK(s != NULL && strlen(s) > 0);
    }
}

/* ---- bad input ----------------------------------------------------------- */

static void test_null_pointers(void) {
    evl_event ev[1];
    uint64_t id;
    CHECK_EQ(evl_loop_new(NULL), -EINVAL);
    CHECK_EQ(evl_loop_free(NULL), -EINVAL);
    CHECK_EQ(evl_register(NULL, 0, EVL_READ, NULL, NULL), -EINVAL);
    CHECK_EQ(evl_modify(NULL, 0, EVL_READ), -EINVAL);
    CHECK_EQ(evl_set_callback(NULL, 0, NULL, NULL), -EINVAL);
    CHECK_EQ(evl_unregister(NULL, 0), -EINVAL);
    CHECK_EQ(evl_run(NULL), -EINVAL);
    CHECK_EQ(evl_run_once(NULL, 0), -EINVAL);
    CHECK_EQ(evl_poll(NULL, 0, ev, 1), -EINVAL);
    CHECK_EQ(evl_stop(NULL), -EINVAL);
    CHECK_EQ(evl_timer_start(NULL, 1, 0, count_timer, NULL, &id), -EINVAL);
    CHECK_EQ(evl_timer_stop(NULL, 1), -EINVAL);
    CHECK_EQ(evl_wake(NULL), -EINVAL);
    CHECK_EQ(evl_post(NULL, count_task, NULL), -EINVAL);
    CHECK_EQ(evl_signal_start(NULL, SIGUSR1, on_signal_noop, NULL), -EINVAL);
    CHECK_EQ(evl_signal_stop(NULL, SIGUSR1), -EINVAL);
    CHECK_EQ(evl_loop_fork(NULL), -EINVAL);

    evl_loop *loop = new_loop();
    CHECK_EQ(evl_poll(loop, 0, NULL, 1), -EINVAL);
    CHECK_EQ(evl_poll(loop, 0, ev, 0), -EINVAL);
    CHECK_EQ(evl_poll(loop, 0, ev, -5), -EINVAL);
    CHECK_EQ(evl_timer_start(loop, 1, 0, NULL, NULL, &id), -EINVAL);
    CHECK_EQ(evl_post(loop, NULL, NULL), -EINVAL);
    CHECK_EQ(evl_signal_start(loop, SIGUSR1, NULL, NULL), -EINVAL);
    CHECK_EQ(evl_loop_free(loop), 0);
}

static void test_bad_fds_and_bits(void) {
    evl_loop *loop = new_loop();
    int sv[2];
    pair(sv);
    io_log log = {0};

    CHECK_EQ(evl_register(loop, -1, EVL_READ, log_io, &log), -EINVAL);
    CHECK_EQ(evl_register(loop, sv[0], 0x40, log_io, &log), -EINVAL);
    CHECK_EQ(evl_register(loop, sv[0], EVL_READ | 0x20000000u, log_io, &log), -EINVAL); /* EPOLLWAKEUP: not ours */
    CHECK_EQ(evl_modify(loop, -3, EVL_READ), -EINVAL);
    CHECK_EQ(evl_unregister(loop, -3), -EINVAL);
    CHECK_EQ(evl_set_callback(loop, -3, NULL, NULL), -EINVAL);

    /* Unknown fds. */
    CHECK_EQ(evl_modify(loop, sv[0], EVL_READ), -ENOENT);
    CHECK_EQ(evl_set_callback(loop, sv[0], log_io, &log), -ENOENT);
    CHECK_EQ(evl_unregister(loop, sv[0]), -ENOENT);
    CHECK_EQ(evl_unregister(loop, 100000), -ENOENT);
    CHECK_EQ(evl_timer_stop(loop, 0), -ENOENT);
    CHECK_EQ(evl_timer_stop(loop, 12345), -ENOENT);
    CHECK_EQ(evl_timer_stop(loop, UINT64_MAX), -ENOENT);

    /* Registered twice; then bad bits on modify leave it unchanged. */
    CHECK_EQ(evl_register(loop, sv[0], EVL_READ, log_io, &log), 0);
    CHECK_EQ(evl_register(loop, sv[0], EVL_WRITE, log_io, &log), -EEXIST);
    CHECK_EQ(evl_modify(loop, sv[0], 0x1000), -EINVAL);
    CHECK_EQ(evl_unregister(loop, sv[0]), 0);
    CHECK_EQ(evl_unregister(loop, sv[0]), -ENOENT);

    /* A closed fd. */
    int closed = dup(sv[0]);
    close(closed);
    CHECK_EQ(evl_register(loop, closed, EVL_READ, log_io, &log), -EBADF);
    CHECK_EQ(evl_modify(loop, closed, EVL_READ), -ENOENT);

    /* A regular file: -EPERM and nothing left registered. */
    char path[] = "/tmp/evloop-test-XXXXXX";
    int file = mkstemp(path);
    CHECK(file >= 0);
    unlink(path);
    CHECK_EQ(evl_register(loop, file, EVL_READ, log_io, &log), -EPERM);
    CHECK_EQ(evl_unregister(loop, file), -ENOENT);
    CHECK_EQ(evl_register(loop, file, EVL_READ, log_io, &log), -EPERM);
    close(file);

    /* Signals. */
    CHECK_EQ(evl_signal_start(loop, SIGKILL, on_signal_noop, NULL), -EINVAL);
    CHECK_EQ(evl_signal_start(loop, SIGSTOP, on_signal_noop, NULL), -EINVAL);
    CHECK_EQ(evl_signal_start(loop, 0, on_signal_noop, NULL), -EINVAL);
    CHECK_EQ(evl_signal_start(loop, 65, on_signal_noop, NULL), -EINVAL);
    CHECK_EQ(evl_signal_start(loop, -1, on_signal_noop, NULL), -EINVAL);
    CHECK_EQ(evl_signal_stop(loop, SIGUSR2), -ENOENT);
    CHECK_EQ(evl_signal_stop(loop, 0), -EINVAL);
    CHECK_EQ(evl_signal_stop(loop, 1000), -EINVAL);

    /* Nothing left: evl_run returns at once. */
    CHECK_EQ(evl_run(loop), 0);
    CHECK_EQ(log.calls, 0);
    CHECK_EQ(evl_loop_free(loop), 0);
    close(sv[0]);
    close(sv[1]);
}

/* ---- I/O ----------------------------------------------------------------- */

static void test_read_callback(void) {
    evl_loop *loop = new_loop();
    int sv[2];
    pair(sv);
    io_log log = {0};
    CHECK_EQ(evl_register(loop, sv[0], EVL_READ, log_io, &log), 0);
    CHECK_EQ(evl_run_once(loop, 0), 0);
    put(sv[1], "x");
    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK_EQ(log.calls, 1);
    CHECK_EQ(log.last_fd, sv[0]);
    CHECK_EQ(log.last_revents, EVL_READ);
    CHECK(log.last_userdata == &log);

    /* Write interest: a socket with room is writable at once. */
    CHECK_EQ(evl_modify(loop, sv[0], EVL_READ | EVL_WRITE), 0);
    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK_EQ(log.last_revents, EVL_READ | EVL_WRITE);

    /* set_callback swaps callback and userdata. */
    io_log other = {0};
    CHECK_EQ(evl_set_callback(loop, sv[0], log_io, &other), 0);
    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK_EQ(other.calls, 1);
    CHECK_EQ(log.calls, 2);

    /* A NULL callback: run_once runs nothing, poll reports it. */
    CHECK_EQ(evl_set_callback(loop, sv[0], NULL, &other), 0);
    CHECK_EQ(evl_run_once(loop, 0), 0);
    evl_event ev[4];
    CHECK_EQ(evl_poll(loop, 1000, ev, 4), 1);
    CHECK_EQ(ev[0].fd, sv[0]);
    CHECK_EQ(ev[0].revents, EVL_READ | EVL_WRITE);
    CHECK(ev[0].userdata == &other);
    CHECK_EQ(other.calls, 1);

    CHECK_EQ(evl_unregister(loop, sv[0]), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
    close(sv[0]);
    close(sv[1]);
}

static void test_poll_reports_all_and_limits(void) {
    evl_loop *loop = new_loop();
    int a[2], b[2], c[2];
    pair(a);
    pair(b);
    pair(c);
    io_log log = {0};
    int fired = 0, tasks = 0;
    CHECK_EQ(evl_register(loop, a[0], EVL_READ, log_io, (void *)1), 0);
    CHECK_EQ(evl_register(loop, b[0], EVL_READ, NULL, (void *)2), 0);
    CHECK_EQ(evl_register(loop, c[0], EVL_READ, log_io, &log), 0);
    put(a[1], "a");
    put(b[1], "b");
    put(c[1], "c");
    /* Due timers and tasks run their callbacks inside poll; I/O callbacks do not. */
    CHECK_EQ(evl_timer_start(loop, 0, 0, count_timer, &fired, NULL), 0);
    CHECK_EQ(evl_post(loop, count_task, &tasks), 0);
    evl_event ev[8];
    int n = evl_poll(loop, 1000, ev, 8);
    int seen = 0;
    for (int i = 0; i < n; i++) {
        if (ev[i].fd == a[0]) { CHECK(ev[i].userdata == (void *)1); seen |= 1; }
        if (ev[i].fd == b[0]) { CHECK(ev[i].userdata == (void *)2); seen |= 2; }
        if (ev[i].fd == c[0]) { CHECK(ev[i].userdata == &log); seen |= 4; }
    }
    CHECK_EQ(n, 3);
    CHECK_EQ(seen, 7);
    CHECK_EQ(log.calls, 0);
    CHECK_EQ(tasks, 1);
    /* The timer is due at once; it may need a second iteration on a slow machine. */
    for (int i = 0; i < 10 && fired == 0; i++) evl_poll(loop, 10, ev, 8);
    CHECK_EQ(fired, 1);

    /* max_events caps what is written; the rest comes next time (level-triggered). */
    CHECK_EQ(evl_poll(loop, 1000, ev, 1), 1);
    CHECK_EQ(evl_poll(loop, 1000, ev, 2), 2);

    CHECK_EQ(evl_loop_free(loop), 0);
    int *fds[] = {a, b, c};
    for (int i = 0; i < 3; i++) { close(fds[i][0]); close(fds[i][1]); }
}

static void test_hup_rdhup_error(void) {
    evl_loop *loop = new_loop();
    int sv[2];
    pair(sv);
    io_log log = {0};
    /* Half-close: READ and RDHUP, no HUP. */
    CHECK_EQ(evl_register(loop, sv[0], EVL_READ, log_io, &log), 0);
    CHECK_EQ(shutdown(sv[1], SHUT_WR), 0);
    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK_EQ(log.last_revents, EVL_READ | EVL_RDHUP);
    /* Dead peer: HUP is reported even with no interest at all. */
    CHECK_EQ(evl_modify(loop, sv[0], 0), 0);
    close(sv[1]);
    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK(log.last_revents & EVL_HUP);
    CHECK_EQ(log.last_revents & (EVL_READ | EVL_WRITE), 0);
    CHECK_EQ(evl_unregister(loop, sv[0]), 0);
    close(sv[0]);

    /* A refused connect: ERROR (and HUP) whatever the interest. */
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    CHECK_EQ(bind(listener, (struct sockaddr *)&addr, sizeof addr), 0);
    CHECK_EQ(getsockname(listener, (struct sockaddr *)&addr, &len), 0);
    close(listener); /* nobody listens on that port now */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int rc = connect(s, (struct sockaddr *)&addr, sizeof addr);
    CHECK(rc == 0 || errno == EINPROGRESS || errno == ECONNREFUSED);
    CHECK_EQ(evl_register(loop, s, EVL_READ, log_io, &log), 0);
    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK(log.last_revents & EVL_ERROR);
    CHECK(log.last_revents & EVL_HUP);
    CHECK_EQ(evl_unregister(loop, s), 0);
    close(s);
    CHECK_EQ(evl_loop_free(loop), 0);
}

static void test_edge_and_oneshot(void) {
    evl_loop *loop = new_loop();
    int sv[2];
    pair(sv);
    io_log log = {0};
    CHECK_EQ(evl_register(loop, sv[0], EVL_READ | EVL_EDGE, log_io, &log), 0);
    put(sv[1], "1");
    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK_EQ(evl_run_once(loop, 0), 0); /* not drained, but no new edge */
    put(sv[1], "2");
    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK_EQ(log.calls, 2);

    /* ONESHOT: one report, then silence until modify re-arms it. */
    CHECK_EQ(evl_modify(loop, sv[0], EVL_READ | EVL_ONESHOT), 0);
    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK_EQ(evl_run_once(loop, 0), 0);
    put(sv[1], "3");
    CHECK_EQ(evl_run_once(loop, 0), 0);
    CHECK_EQ(evl_modify(loop, sv[0], EVL_READ | EVL_ONESHOT), 0);
    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK_EQ(log.calls, 4);
    CHECK_EQ(evl_unregister(loop, sv[0]), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
    close(sv[0]);
    close(sv[1]);
}

typedef struct {
    int fds[2];
    int calls[2];
    int rearmed; /* index of the fd the first callback re-armed, or -1 */
} rearm_state;

/* The first callback re-arms the other fd, whose event is already in the batch. */
static void rearm_other(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    (void)revents;
    rearm_state *s = userdata;
    int me = fd == s->fds[1];
    s->calls[me]++;
    if (s->rearmed < 0) {
        s->rearmed = !me;
        CHECK_EQ(evl_modify(loop, s->fds[!me], EVL_WRITE | EVL_ONESHOT), 0);
    }
}

/* Bug: an EVL_ONESHOT registration re-armed by evl_modify while an event of
 * its previous arm was in the batch was reported for that stale event and
 * then again for the kernel's fresh one: two reports for one arm. */
static void test_oneshot_rearmed_during_its_batch_reports_once(void) {
    evl_loop *loop = new_loop();
    int a[2], b[2];
    pair(a);
    pair(b);
    rearm_state s = {.fds = {a[0], b[0]}, .rearmed = -1};
    /* Both always writable: both events come in the first batch. */
    CHECK_EQ(evl_register(loop, a[0], EVL_WRITE | EVL_ONESHOT, rearm_other, &s), 0);
    CHECK_EQ(evl_register(loop, b[0], EVL_WRITE | EVL_ONESHOT, rearm_other, &s), 0);
    int total = 0;
    for (int i = 0; i < 4; i++) total += evl_run_once(loop, 50);
    CHECK(s.rearmed >= 0);
    CHECK_EQ(total, 2);
    CHECK_EQ(s.calls[0], 1);
    CHECK_EQ(s.calls[1], 1);
    CHECK_EQ(evl_unregister(loop, a[0]), 0);
    CHECK_EQ(evl_unregister(loop, b[0]), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
    close(a[0]); close(a[1]); close(b[0]); close(b[1]);
}

typedef struct {
    int fds[2];
    uint32_t interest[2];
    int calls, outside; /* callbacks, and those reporting bits beyond the interest */
} interest_state;

/* The first callback of the batch takes read interest away from the other fd,
 * whose EPOLLIN|EPOLLRDHUP event is already in the batch. */
static void drop_others_read(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    interest_state *s = userdata;
    int me = fd == s->fds[1];
    uint32_t allowed = s->interest[me] | EVL_ERROR | EVL_HUP;
    if (s->interest[me] & EVL_READ) allowed |= EVL_RDHUP;
    if (revents & ~allowed) s->outside++;
    if (s->calls++ == 0) {
        s->interest[!me] = EVL_WRITE;
        CHECK_EQ(evl_modify(loop, s->fds[!me], EVL_WRITE), 0);
    }
}

/* Found by the model tests (FOUND-BUGS M1): EVL_RDHUP was in every
 * registration's filter, so after evl_modify(fd, EVL_WRITE) an event fetched
 * under read interest reached the callback as a bare EVL_RDHUP. */
static void test_rdhup_only_with_read_interest(void) {
    evl_loop *loop = new_loop();
    int a[2], b[2];
    pair(a);
    pair(b);
    shutdown(a[1], SHUT_WR); /* both readable, with RDHUP */
    shutdown(b[1], SHUT_WR);
    interest_state s = {.fds = {a[0], b[0]}, .interest = {EVL_READ, EVL_READ}};
    CHECK_EQ(evl_register(loop, a[0], EVL_READ, drop_others_read, &s), 0);
    CHECK_EQ(evl_register(loop, b[0], EVL_READ, drop_others_read, &s), 0);
    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK_EQ(s.outside, 0);
    /* The modified one reports what it now asks for: writability. */
    CHECK_EQ(evl_run_once(loop, 1000), 2);
    CHECK_EQ(s.outside, 0);
    CHECK_EQ(evl_unregister(loop, a[0]), 0);
    CHECK_EQ(evl_unregister(loop, b[0]), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
    close(a[0]); close(a[1]); close(b[0]); close(b[1]);
}

/* ---- callbacks that change the loop ---------------------------------------- */

typedef struct {
    int pairs[3][2];
    int calls[3];
    int ended;       /* index whose registration the first callback ended */
} chaos;

static int index_of(chaos *c, int fd) {
    for (int i = 0; i < 3; i++)
        if (c->pairs[i][0] == fd) return i;
    return -1;
}

/* The first callback to run unregisters and closes the other two fds. */
static void end_others(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    (void)revents;
    chaos *c = userdata;
    int me = index_of(c, fd);
    CHECK(me >= 0);
    if (me < 0) return;
    c->calls[me]++;
    for (int i = 0; i < 3; i++) {
        if (i == me || c->pairs[i][0] < 0) continue;
        CHECK_EQ(evl_unregister(loop, c->pairs[i][0]), 0);
        close(c->pairs[i][0]);
        c->pairs[i][0] = -1;
    }
}

static void test_callback_ends_other_registrations(void) {
    evl_loop *loop = new_loop();
    chaos c = {0};
    for (int i = 0; i < 3; i++) {
        pair(c.pairs[i]);
        CHECK_EQ(evl_register(loop, c.pairs[i][0], EVL_READ, end_others, &c), 0);
        put(c.pairs[i][1], "x");
    }
    /* All three are ready in one batch; only the first may run. */
    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK_EQ(c.calls[0] + c.calls[1] + c.calls[2], 1);
    for (int i = 0; i < 3; i++) {
        if (c.pairs[i][0] >= 0) {
            CHECK_EQ(evl_unregister(loop, c.pairs[i][0]), 0);
            close(c.pairs[i][0]);
        }
        close(c.pairs[i][1]);
    }
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* Unregisters and closes the other fd, then makes a new ready fd with the
 * very same number and registers it: the already-fetched event of the old
 * registration must not reach the new one. */
typedef struct {
    int a[2], b[2];
    int a_calls, b_calls, new_calls;
    int new_peer;
} reuse_state;

static void on_new(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    (void)loop; (void)revents;
    drain(fd);
    ((reuse_state *)userdata)->new_calls++;
}

static void reuse_other(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    (void)revents;
    reuse_state *s = userdata;
    int other = (fd == s->a[0]) ? s->b[0] : s->a[0];
    if (fd == s->a[0]) s->a_calls++; else s->b_calls++;
    drain(fd);
    if (s->new_peer >= 0) return;
    CHECK_EQ(evl_unregister(loop, other), 0);
    close(other);
    int fresh[2];
    pair(fresh);
    move_to(fresh[0], other); /* same number as the old fd */
    s->new_peer = fresh[1];
    put(fresh[1], "new");
    CHECK_EQ(evl_register(loop, other, EVL_READ, on_new, s), 0);
}

static void test_fd_number_reused_in_batch(void) {
    evl_loop *loop = new_loop();
    reuse_state s = {.new_peer = -1};
    pair(s.a);
    pair(s.b);
    CHECK_EQ(evl_register(loop, s.a[0], EVL_READ, reuse_other, &s), 0);
    CHECK_EQ(evl_register(loop, s.b[0], EVL_READ, reuse_other, &s), 0);
    put(s.a[1], "a");
    put(s.b[1], "b");
    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK_EQ(s.a_calls + s.b_calls, 1);
    CHECK_EQ(s.new_calls, 0);
    /* The new registration works from the next iteration on. */
    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK_EQ(s.new_calls, 1);
    CHECK_EQ(s.a_calls + s.b_calls, 1);
    CHECK_EQ(evl_unregister(loop, s.a[0]), 0);
    CHECK_EQ(evl_unregister(loop, s.b[0]), 0);
    close(s.a[0]); close(s.a[1]); close(s.b[0]); close(s.b[1]); close(s.new_peer);
    CHECK_EQ(evl_loop_free(loop), 0);
}

static void test_closed_without_unregister(void) {
    evl_loop *loop = new_loop();
    int old[2], fresh[2];
    io_log old_log = {0}, new_log = {0};
    pair(old);
    CHECK_EQ(evl_register(loop, old[0], EVL_READ, log_io, &old_log), 0);
    int number = old[0];
    close(old[0]); /* never unregistered */
    pair(fresh);
    move_to(fresh[0], number);
    CHECK_EQ(evl_register(loop, number, EVL_READ, log_io, &new_log), 0);
    put(fresh[1], "n");

    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK_EQ(new_log.calls, 1);
    CHECK_EQ(old_log.calls, 0);
    /* Unregistering an fd that was already closed succeeds. */
    close(number);
    CHECK_EQ(evl_unregister(loop, number), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
    close(old[1]);
    close(fresh[1]);
}

typedef struct {
    int peer;
    int calls;
    uint64_t timer;
    int timer_calls;
} self_state;

/* Reads, switches to write interest, then on write unregisters and closes itself. */
static void self_modifying(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    self_state *s = userdata;
    s->calls++;
    if (revents & EVL_READ) {
        char buf[16];
        CHECK(read(fd, buf, sizeof buf) > 0);
        CHECK_EQ(evl_modify(loop, fd, EVL_WRITE), 0);
    } else if (revents & EVL_WRITE) {
        CHECK_EQ(evl_unregister(loop, fd), 0);
        CHECK_EQ(evl_unregister(loop, fd), -ENOENT);
        close(fd);
        CHECK_EQ(evl_timer_stop(loop, s->timer), 0);
        CHECK_EQ(evl_stop(loop), 0);
    }
}

static void test_callback_changes_itself(void) {
    evl_loop *loop = new_loop();
    int sv[2];
    pair(sv);
    self_state s = {.peer = sv[1]};
    CHECK_EQ(evl_register(loop, sv[0], EVL_READ, self_modifying, &s), 0);
    CHECK_EQ(evl_timer_start(loop, 60000, 0, count_timer, &s.timer_calls, &s.timer), 0);
    put(sv[1], "hello");
    CHECK_EQ(evl_run(loop), 0);
    CHECK_EQ(s.calls, 2);
    CHECK_EQ(s.timer_calls, 0);
    close(sv[1]);
    CHECK_EQ(evl_loop_free(loop), 0);
}

typedef struct {
    int run, run_once, poll, free_, fork_;
} busy_result;

static void try_reentry(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    (void)fd; (void)revents;
    busy_result *r = userdata;
    evl_event ev[1];
    r->run = evl_run(loop);
    r->run_once = evl_run_once(loop, 0);
    r->poll = evl_poll(loop, 0, ev, 1);
    r->free_ = evl_loop_free(loop);
    r->fork_ = evl_loop_fork(loop);
    evl_stop(loop);
}

static void reentry_timer(evl_loop *loop, uint64_t id, void *userdata) {
    (void)id;
    try_reentry(loop, -1, 0, userdata);
}

static void test_reentry_is_busy(void) {
    evl_loop *loop = new_loop();
    int sv[2];
    pair(sv);
    busy_result r = {0};
    CHECK_EQ(evl_register(loop, sv[0], EVL_WRITE, try_reentry, &r), 0);
    CHECK_EQ(evl_run(loop), 0);
    CHECK_EQ(r.run, -EBUSY);
    CHECK_EQ(r.run_once, -EBUSY);
    CHECK_EQ(r.poll, -EBUSY);
    CHECK_EQ(r.free_, -EBUSY);
    CHECK_EQ(r.fork_, -EBUSY);
    CHECK_EQ(evl_unregister(loop, sv[0]), 0);

    /* The same from a timer callback inside evl_poll. */
    busy_result t = {0};
    evl_event ev[1];
    CHECK_EQ(evl_timer_start(loop, 0, 0, reentry_timer, &t, NULL), 0);
    for (int i = 0; i < 10 && t.run == 0; i++) CHECK(evl_poll(loop, 100, ev, 1) >= 0);
    CHECK_EQ(t.run, -EBUSY);
    CHECK_EQ(t.free_, -EBUSY);
    CHECK_EQ(evl_loop_free(loop), 0);
    close(sv[0]);
    close(sv[1]);
}

/* ---- timers -------------------------------------------------------------- */

typedef struct {
    int order[16];
    int count;
    uint64_t ids[16];
    int repeat_left;
    evl_loop *loop;
} timer_log;

typedef struct { timer_log *log; int tag; uint64_t fired_at; } timer_tag;

static void record_timer(evl_loop *loop, uint64_t id, void *userdata) {
    (void)loop; (void)id;
    timer_tag *t = userdata;
    t->fired_at = now_us();
    if (t->log->count < 16) t->log->order[t->log->count++] = t->tag;
}

/* A timer's deadline is its start time plus its delay: timers fire in
 * deadline order (equal deadlines in start order), never early. On a loaded
 * machine starting them takes time, so the order of the delays alone is not
 * promised: a pair is checked only when the clock readings around the starts
 * prove which deadline comes first. */
static void test_timer_order(void) {
    evl_loop *loop = new_loop();
    timer_log log = {0};
    enum { N = 5 };
    timer_tag tags[N] = {{&log, 0, 0}, {&log, 1, 0}, {&log, 2, 0}, {&log, 3, 0}, {&log, 4, 0}};
    uint64_t delays[N] = {30, 10, 20, 10, 0};
    uint64_t before[N], after[N];
    for (int i = 0; i < N; i++) {
        before[i] = now_us();
        CHECK_EQ(evl_timer_start(loop, delays[i], 0, record_timer, &tags[i], NULL), 0);
        after[i] = now_us();
    }
    CHECK_EQ(evl_run(loop), 0); /* ends when the last one-shot timer has fired */
    CHECK_EQ(log.count, N);
    int position[N] = {0};
    for (int k = 0; k < log.count && k < N; k++) position[log.order[k]] = k;
    for (int i = 0; i < N; i++) {
        CHECK(tags[i].fired_at >= before[i] + delays[i] * 1000); /* never early */
        for (int j = i + 1; j < N; j++) { /* i started before j */
            if (after[i] + delays[i] * 1000 < before[j] + delays[j] * 1000) CHECK(position[i] < position[j]);
            if (after[j] + delays[j] * 1000 < before[i] + delays[i] * 1000) CHECK(position[j] < position[i]);
        }
    }
    CHECK_EQ(evl_loop_free(loop), 0);
}

typedef struct {
    uint64_t self, other;
    int fired, other_fired;
    int stop_rc, other_rc;
} stopper;

static void repeat_then_stop(evl_loop *loop, uint64_t id, void *userdata) {
    stopper *s = userdata;
    CHECK_EQ(id, s->self);
    if (++s->fired == 3) s->stop_rc = evl_timer_stop(loop, id);
}

static void oneshot_stops_itself(evl_loop *loop, uint64_t id, void *userdata) {
    stopper *s = userdata;
    s->fired++;
    s->stop_rc = evl_timer_stop(loop, id);
    s->other_rc = evl_timer_stop(loop, s->other);
}

static void test_timer_stop_rules(void) {
    evl_loop *loop = new_loop();
    stopper rep = {0};
    CHECK_EQ(evl_timer_start(loop, 1, 1, repeat_then_stop, &rep, &rep.self), 0);
    CHECK(rep.self != 0);
    CHECK_EQ(evl_run(loop), 0);
    CHECK_EQ(rep.fired, 3);
    CHECK_EQ(rep.stop_rc, 0);
    CHECK_EQ(evl_timer_stop(loop, rep.self), -ENOENT);

    /* A one-shot timer is over once its callback starts; it can stop another
     * timer due at the same moment, which then never fires. */
    stopper one = {0};
    int other_calls = 0;
    CHECK_EQ(evl_timer_start(loop, 5, 0, oneshot_stops_itself, &one, &one.self), 0);
    CHECK_EQ(evl_timer_start(loop, 5, 0, count_timer, &other_calls, &one.other), 0);
    CHECK_EQ(evl_run(loop), 0);
    CHECK_EQ(one.fired, 1);
    CHECK_EQ(one.stop_rc, -ENOENT);
    CHECK_EQ(one.other_rc, 0);
    CHECK_EQ(other_calls, 0);

    /* Ids are not reused for a stopped timer's slot. */
    uint64_t a, b;
    CHECK_EQ(evl_timer_start(loop, 1000, 0, count_timer, &other_calls, &a), 0);
    CHECK_EQ(evl_timer_stop(loop, a), 0);
    CHECK_EQ(evl_timer_start(loop, 1000, 0, count_timer, &other_calls, &b), 0);
    CHECK(a != b);
    CHECK_EQ(evl_timer_stop(loop, a), -ENOENT);
    CHECK_EQ(evl_timer_stop(loop, b), 0);
    /* timer_id may be NULL. */
    CHECK_EQ(evl_timer_start(loop, 0, 0, count_timer, &other_calls, NULL), 0);
    CHECK_EQ(evl_run(loop), 0);
    CHECK_EQ(other_calls, 1);
    CHECK_EQ(evl_loop_free(loop), 0);
}

typedef struct { uint64_t started; uint64_t fired; } lateness;

static void note_time(evl_loop *loop, uint64_t id, void *userdata) {
    (void)loop; (void)id;
    ((lateness *)userdata)->fired = now_us();
}

static void test_timer_never_early(void) {
    evl_loop *loop = new_loop();
    for (int i = 0; i < 5; i++) {
        lateness l = {now_us(), 0};
        CHECK_EQ(evl_timer_start(loop, 7, 0, note_time, &l, NULL), 0);
        CHECK_EQ(evl_run(loop), 0);
        CHECK(l.fired >= l.started + 7000);
    }
    CHECK_EQ(evl_loop_free(loop), 0);
}

static void test_many_timers_stopped(void) {
    enum { N = 2000 };
    evl_loop *loop = new_loop();
    static uint64_t ids[N];
    int calls = 0;
    for (int i = 0; i < N; i++) CHECK_EQ(evl_timer_start(loop, 1 + (uint64_t)(i % 7), 0, count_timer, &calls, &ids[i]), 0);
    for (int i = 0; i < N; i += 2) CHECK_EQ(evl_timer_stop(loop, ids[i]), 0);
    CHECK_EQ(evl_run(loop), 0);
    CHECK_EQ(calls, N / 2);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* ---- tasks, threads, stop, wake ------------------------------------------- */

typedef struct { evl_loop *loop; int posts; } poster_args;

static int thread_tasks;
static void count_thread_task(evl_loop *loop, void *userdata) {
    (void)loop; (void)userdata;
    thread_tasks++;
}

static void *post_many(void *arg) {
    poster_args *p = arg;
    for (int i = 0; i < p->posts; i++) CHECK_EQ(evl_post(p->loop, count_thread_task, NULL), 0);
    return NULL;
}

static void *stop_later(void *arg) {
    usleep(50000);
    CHECK_EQ(evl_stop((evl_loop *)arg), 0);
    return NULL;
}

static void *wake_later(void *arg) {
    usleep(50000);
    CHECK_EQ(evl_wake((evl_loop *)arg), 0);
    return NULL;
}

static void test_threads_post_wake_stop(void) {
    evl_loop *loop = new_loop();
    poster_args args = {loop, 1000};
    pthread_t t1, t2;
    thread_tasks = 0;
    pthread_create(&t1, NULL, post_many, &args);
    pthread_create(&t2, NULL, post_many, &args);
    uint64_t deadline = now_us() + 10000000;
    while (thread_tasks < 2000 && now_us() < deadline) CHECK(evl_run_once(loop, 100) >= 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    while (evl_run_once(loop, 0) > 0) {}
    CHECK_EQ(thread_tasks, 2000);

    /* evl_wake from another thread ends a wait with no limit. */
    pthread_t w;
    pthread_create(&w, NULL, wake_later, loop);
    CHECK_EQ(evl_run_once(loop, -1), 0);
    pthread_join(w, NULL);

    /* evl_stop from another thread ends evl_run. */
    int sv[2];
    pair(sv);
    CHECK_EQ(evl_register(loop, sv[0], EVL_READ, log_io, NULL), 0);
    pthread_t s;
    pthread_create(&s, NULL, stop_later, loop);
    CHECK_EQ(evl_run(loop), 0);
    pthread_join(s, NULL);

    /* A stop before evl_run makes it return at once. */
    CHECK_EQ(evl_stop(loop), 0);
    CHECK_EQ(evl_run(loop), 0);

    /* Tasks still queued at free are dropped without leaking. */
    int never = 0;
    CHECK_EQ(evl_post(loop, count_task, &never), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
    CHECK_EQ(never, 0);
    close(sv[0]);
    close(sv[1]);
}

static void post_again(evl_loop *loop, void *userdata) {
    int *n = userdata;
    if (++*n < 5) CHECK_EQ(evl_post(loop, post_again, n), 0);
}

static void test_task_posted_from_task_runs_next_iteration(void) {
    evl_loop *loop = new_loop();
    int n = 0;
    CHECK_EQ(evl_post(loop, post_again, &n), 0);
    CHECK_EQ(evl_run_once(loop, 0), 1);
    CHECK_EQ(n, 1);
    CHECK_EQ(evl_run(loop), 0); /* a queued task keeps evl_run going */
    CHECK_EQ(n, 5);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* ---- signals ------------------------------------------------------------- */

typedef struct { int count; int signo; } signal_log;

static void log_signal(evl_loop *loop, int signo, void *userdata) {
    signal_log *s = userdata;
    s->count++;
    s->signo = signo;
    CHECK_EQ(evl_signal_stop(loop, signo), 0);
}

static void test_signals(void) {
    evl_loop *loop = new_loop();
    signal_log log = {0};
    CHECK_EQ(evl_signal_start(loop, SIGUSR1, log_signal, &log), 0);
    CHECK_EQ(evl_signal_start(loop, SIGUSR1, log_signal, &log), -EEXIST);
    CHECK_EQ(raise(SIGUSR1), 0);
    CHECK_EQ(evl_run(loop), 0); /* the watcher stops itself; then nothing is left */
    CHECK_EQ(log.count, 1);
    CHECK_EQ(log.signo, SIGUSR1);
    CHECK_EQ(evl_signal_stop(loop, SIGUSR1), -ENOENT);

    /* The loop restores the mask: SIGUSR1 is unblocked again. */
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    CHECK(!sigismember(&mask, SIGUSR1));

    /* Freeing a loop with a watcher also unblocks it. */
    CHECK_EQ(evl_signal_start(loop, SIGUSR2, on_signal_noop, NULL), 0);
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    CHECK(sigismember(&mask, SIGUSR2));
    CHECK_EQ(evl_loop_free(loop), 0);
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    CHECK(!sigismember(&mask, SIGUSR2));
}

static volatile sig_atomic_t alarms;
static void on_alarm(int signo) { (void)signo; alarms++; }

static void stop_after_alarms(evl_loop *loop, uint64_t id, void *userdata) {
    (void)id; (void)userdata;
    if (alarms >= 3) evl_stop(loop);
}

static void test_eintr(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: the wait is interrupted */
    sigaction(SIGALRM, &sa, NULL);
    evl_loop *loop = new_loop();
    struct itimerval every = {{0, 20000}, {0, 20000}};
    alarms = 0;
    setitimer(ITIMER_REAL, &every, NULL);
    CHECK_EQ(evl_run_once(loop, 5000), -EINTR);
    evl_event ev[1];
    CHECK_EQ(evl_poll(loop, 5000, ev, 1), -EINTR);
    /* evl_run carries on through interruptions. */
    CHECK_EQ(evl_timer_start(loop, 10, 10, stop_after_alarms, NULL, NULL), 0);
    CHECK_EQ(evl_run(loop), 0);
    CHECK(alarms >= 3);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_DFL);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* ---- fork ---------------------------------------------------------------- */

static void test_fork(void) {
    evl_loop *loop = new_loop();
    int sv[2];
    pair(sv);
    io_log log = {0};
    int fired = 0;
    CHECK_EQ(evl_register(loop, sv[0], EVL_READ, log_io, &log), 0);
    CHECK_EQ(evl_timer_start(loop, 5, 0, count_timer, &fired, NULL), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int bad = 0;
        if (evl_loop_fork(loop) != 0) bad |= 1;
        /* The child's set is its own: dropping the fd here leaves the parent's. */
        if (evl_unregister(loop, sv[0]) != 0) bad |= 2;
        if (evl_run(loop) != 0 || fired != 1) bad |= 4; /* timer kept */
        int again[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, again) != 0) bad |= 8;
        io_log child_log = {0};
        if (evl_register(loop, again[0], EVL_READ, log_io, &child_log) != 0) bad |= 16;
        if (write(again[1], "c", 1) != 1) bad |= 32;
        if (evl_run_once(loop, 1000) != 1 || child_log.calls != 1) bad |= 64;
        evl_unregister(loop, again[0]);
        close(again[0]);
        close(again[1]);
        evl_loop_free(loop);
        close(sv[0]);
        close(sv[1]);
        exit(bad);
    }
    CHECK_EQ(reap_within(pid, 20000), 0);
    /* The parent still gets its events. */
    put(sv[1], "p");
    int total = 0;
    for (int i = 0; i < 10 && log.calls == 0; i++) total += evl_run_once(loop, 1000);
    CHECK_EQ(log.calls, 1);
    CHECK(total >= 1);
    CHECK_EQ(evl_unregister(loop, sv[0]), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
    close(sv[0]);
    close(sv[1]);
}

/* Forks; the child runs `child` (which returns a bit set of failures) and
 * exits with it; the parent checks that it exited with 0 (within 20 s, or
 * kills it). */
static void in_child(evl_loop *loop, int (*child)(evl_loop *, void *), void *arg) {
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(child(loop, arg));
    CHECK_EQ(reap_within(pid, 20000), 0);
}

static int fork_over_closed_numbers(evl_loop *loop, void *arg) {
    int *closed = arg;
    int bad = 0, ran = 0;
    if (evl_loop_fork(loop) != 0) bad |= 1;
    /* Both closed registrations were dropped: their numbers now belong to
     * the child's own epoll set and doorbell. */
    if (evl_unregister(loop, closed[0]) != -ENOENT) bad |= 2;
    if (evl_unregister(loop, closed[1]) != -ENOENT) bad |= 4;
    if (evl_post(loop, count_task, &ran) != 0) bad |= 8;
    if (evl_run_once(loop, 1000) != 1 || ran != 1) bad |= 16;
    if (evl_run_once(loop, 0) != 0) bad |= 32; /* and the doorbell was drained */
    evl_loop_free(loop);
    return bad;
}

/* Bug: registrations closed without evl_unregister freed the numbers that
 * the child's new epoll fd and eventfd then took; evl_loop_fork tried to
 * add the new epoll fd to itself (-EINVAL) and the child kept sharing the
 * parent's set. */
static void test_fork_after_registered_fds_were_closed(void) {
    evl_loop *loop = new_loop();
    int sv[2];
    pair(sv);
    io_log log = {0};
    CHECK_EQ(evl_register(loop, sv[0], EVL_READ, log_io, &log), 0);
    CHECK_EQ(evl_register(loop, sv[1], EVL_WRITE, log_io, &log), 0);
    close(sv[0]); /* never unregistered */
    close(sv[1]);
    /* The lowest free numbers: the child's new kernel objects take them. */
    int probe = dup(0);
    CHECK_EQ(probe, sv[0]);
    close(probe);
    in_child(loop, fork_over_closed_numbers, sv);
    CHECK_EQ(evl_run_once(loop, 0), 0); /* the child's post never reached us */
    CHECK_EQ(log.calls, 0);
    CHECK_EQ(evl_loop_free(loop), 0);
}

typedef struct {
    int pipe[2];
    io_log *old_log;
} reused_number;

static int fork_over_reused_number(evl_loop *loop, void *arg) {
    reused_number *r = arg;
    int bad = 0;
    if (evl_loop_fork(loop) != 0) bad |= 1;
    if (write(r->pipe[1], "x", 1) != 1) bad |= 2;
    if (evl_run_once(loop, 50) != 0) bad |= 4;
    if (r->old_log->calls != 0) bad |= 8;
    /* The old registration is gone: the number is free to register. */
    if (evl_unregister(loop, r->pipe[0]) != -ENOENT) bad |= 16;
    io_log fresh = {0};
    if (evl_register(loop, r->pipe[0], EVL_READ, log_io, &fresh) != 0) bad |= 32;
    if (evl_run_once(loop, 1000) != 1 || fresh.calls != 1) bad |= 64;
    evl_loop_free(loop);
    return bad;
}

/* Bug: a registration whose fd was closed without evl_unregister, its number
 * since reused by an unrelated unregistered pipe, came back to life in the
 * child, calling the old callback for the pipe. */
static void test_fork_never_revives_a_closed_registration(void) {
    evl_loop *loop = new_loop();
    int sv[2];
    pair(sv);
    io_log log = {0};
    CHECK_EQ(evl_register(loop, sv[0], EVL_READ, log_io, &log), 0);
    close(sv[0]); /* never unregistered */
    reused_number r = {.old_log = &log};
    CHECK_EQ(pipe(r.pipe), 0);
    move_to(r.pipe[0], sv[0]);
    r.pipe[0] = sv[0];
    in_child(loop, fork_over_reused_number, &r);
    /* Nor in the parent. */
    CHECK_EQ(write(r.pipe[1], "y", 1), 1);
    CHECK_EQ(evl_run_once(loop, 50), 0);
    CHECK_EQ(log.calls, 0);
    CHECK_EQ(evl_loop_free(loop), 0);
    close(r.pipe[0]);
    close(r.pipe[1]);
    close(sv[1]);
}

/* Blocks (at most `ms`) until `fd` has a byte, and reads it. */
static int await_byte(int fd, int ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c;
    return poll(&p, 1, ms) == 1 && read(fd, &c, 1) == 1 ? 0 : -1;
}

/* What a stream's callback saw: the bytes of its DATA events. */
typedef struct {
    char bytes[64];
    size_t len;
    int closed;
} stream_log;

static void log_stream(evl_loop *loop, const evl_stream_event *ev) {
    (void)loop;
    stream_log *log = ev->userdata;
    if (ev->kind == EVL_STREAM_DATA) {
        size_t room = sizeof log->bytes - log->len;
        size_t n = ev->len < room ? ev->len : room;
        memcpy(log->bytes + log->len, ev->data, n);
        log->len += n;
    } else if (ev->kind == EVL_STREAM_CLOSED) {
        log->closed++;
    }
}

typedef struct {
    int pipe[2], pair[2], go[2];
    io_log *pipe_log;
    stream_log *stream;
    int delay_ms;
} handed_over;

static int child_after_the_parent_let_go(evl_loop *loop, void *arg) {
    handed_over *h = arg;
    int bad = 0;
    /* The parent ends its own copies first. */
    if (await_byte(h->go[0], 10000) != 0) bad |= 1;
    usleep((useconds_t)h->delay_ms * 1000);
    if (evl_loop_fork(loop) != 0) bad |= 2;
    if (write(h->pipe[1], "p", 1) != 1) bad |= 4;
    if (write(h->pair[1], "hello", 5) != 5) bad |= 8;
    for (int i = 0; i < 100 && (h->pipe_log->calls == 0 || h->stream->len < 5); i++) {
        evl_run_once(loop, 100);
    }
    if (h->pipe_log->calls == 0 || h->pipe_log->last_fd != h->pipe[0]) bad |= 16;
    if (h->stream->len != 5 || memcmp(h->stream->bytes, "hello", 5) != 0) bad |= 32;
    if (h->stream->closed != 0) bad |= 64;
    evl_loop_free(loop);
    return bad;
}

/* Bug (issue 25): after fork(), the parent unregistered a pipe and aborted a
 * stream (the pre-fork server's hand-over) before the child called
 * evl_loop_fork; the child then took both for closed and dropped them: the
 * pipe's callback and the stream's DATA never came. What the child keeps is
 * what was registered at the fork, whatever the parent does afterwards. */
static void test_fork_keeps_what_the_parent_lets_go_after_the_fork(void) {
    const int delays[] = {0, 50};
    for (size_t d = 0; d < sizeof delays / sizeof delays[0]; d++) {
        evl_loop *loop = new_loop();
        io_log pipe_log = {0};
        stream_log stream = {0};
        handed_over h = {.pipe_log = &pipe_log, .stream = &stream, .delay_ms = delays[d]};
        CHECK_EQ(pipe(h.pipe), 0);
        pair(h.pair);
        CHECK_EQ(pipe(h.go), 0);
        CHECK_EQ(evl_register(loop, h.pipe[0], EVL_READ, log_io, &pipe_log), 0);
        uint64_t id = 0;
        CHECK_EQ(evl_stream_open(loop, h.pair[0], log_stream, &stream, &id), 0);
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) _exit(child_after_the_parent_let_go(loop, &h));
        /* The parent lets both go, and closes its copies. */
        CHECK_EQ(evl_unregister(loop, h.pipe[0]), 0);
        close(h.pipe[0]);
        CHECK_EQ(evl_stream_abort(loop, id), 0);
        CHECK_EQ(evl_run_once(loop, 0), 1); /* the stream's CLOSED */
        CHECK_EQ(stream.closed, 1);
        CHECK_EQ(write(h.go[1], "g", 1), 1);
        CHECK_EQ(reap_within(pid, 20000), 0);
        CHECK_EQ(pipe_log.calls, 0);
        CHECK_EQ(evl_loop_free(loop), 0);
        close(h.pipe[1]);
        close(h.pair[1]);
        close(h.go[0]);
        close(h.go[1]);
    }
}

/* ---- the loop's own fds and stale registrations ------------------------- */

/* Takes `signo` if it is pending (blocked and never read by the loop), so
 * that unblocking it afterwards cannot kill the test program. */
static void discard_pending(int signo) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&set, NULL, &zero) == signo) {}
}

/* Registers one end of a new socket pair and closes it without
 * evl_unregister; returns its number, the lowest free one, which the next
 * fd made (by the loop, say) takes. The other end is closed too. */
static int stale_registration(evl_loop *loop, io_log *log) {
    int sv[2];
    pair(sv);
    CHECK_EQ(evl_register(loop, sv[0], EVL_READ, log_io, log), 0);
    close(sv[0]); /* never unregistered */
    close(sv[1]);
    int probe = dup(0);
    CHECK_EQ(probe, sv[0]);
    close(probe);
    return sv[0];
}

/* Bug: the signalfd took the number of a registration whose fd had been
 * closed without evl_unregister, and evl_unregister of that registration
 * then took the signalfd out of the epoll set: no signal came through. */
static void test_signalfd_never_takes_a_registered_number(void) {
    evl_loop *loop = new_loop();
    io_log log = {0};
    int number = stale_registration(loop, &log);
    signal_log sig = {0};
    CHECK_EQ(evl_signal_start(loop, SIGUSR1, log_signal, &sig), 0);
    /* Ends the stale registration only. */
    CHECK_EQ(evl_unregister(loop, number), 0);
    CHECK_EQ(evl_unregister(loop, number), -ENOENT);
    CHECK_EQ(raise(SIGUSR1), 0);
    for (int i = 0; i < 10 && sig.count == 0; i++) CHECK(evl_run_once(loop, 100) >= 0);
    CHECK_EQ(sig.count, 1);
    CHECK_EQ(sig.signo, SIGUSR1);
    CHECK_EQ(log.calls, 0);
    if (sig.count == 0) {
        discard_pending(SIGUSR1);
        CHECK_EQ(evl_signal_stop(loop, SIGUSR1), 0);
    }
    CHECK_EQ(evl_loop_free(loop), 0);
}

typedef struct {
    int number;
    signal_log *sig;
} stale_signal;

static int fork_with_stale_registration(evl_loop *loop, void *arg) {
    stale_signal *s = arg;
    int bad = 0;
    if (evl_loop_fork(loop) != 0) bad |= 1;
    /* The stale registration was dropped at the fork. */
    if (evl_unregister(loop, s->number) != -ENOENT) bad |= 2;
    if (raise(SIGUSR2) != 0) bad |= 4;
    for (int i = 0; i < 10 && s->sig->count == 0; i++) evl_run_once(loop, 100);
    if (s->sig->count != 1) bad |= 8;
    discard_pending(SIGUSR2);
    evl_loop_free(loop);
    return bad;
}

/* Bug: as above, the parent's signalfd had the stale registration's
 * number; evl_loop_fork in the child took the old signalfd's epoll entry
 * for the registration's, kept it, and failed re-adding it (-EBADF) once
 * it had closed the old signalfd. */
static void test_fork_with_signalfd_after_a_stale_registration(void) {
    evl_loop *loop = new_loop();
    io_log log = {0};
    signal_log sig = {0};
    stale_signal s = {.number = stale_registration(loop, &log), .sig = &sig};
    CHECK_EQ(evl_signal_start(loop, SIGUSR2, log_signal, &sig), 0);
    in_child(loop, fork_with_stale_registration, &s);
    /* The parent's watcher still works too. */
    CHECK_EQ(evl_unregister(loop, s.number), 0);
    CHECK_EQ(raise(SIGUSR2), 0);
    for (int i = 0; i < 10 && sig.count == 0; i++) CHECK(evl_run_once(loop, 100) >= 0);
    CHECK_EQ(sig.count, 1);
    CHECK_EQ(log.calls, 0);
    if (sig.count == 0) {
        discard_pending(SIGUSR2);
        CHECK_EQ(evl_signal_stop(loop, SIGUSR2), 0);
    }
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* The numbers an fd argument may be that name no open fd: the largest int,
 * one of millions, the first RLIMIT_NOFILE does not allow and the last it
 * does (closed here). Under valgrind the numbers at the limit are its own
 * (it lowers the limit the program sees): those are left out. */
static int closed_numbers(int out[8]) {
    struct rlimit limit;
    CHECK_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
    int first_not_allowed = limit.rlim_cur > (rlim_t)INT_MAX ? INT_MAX : (int)limit.rlim_cur;
    const int candidates[] = {INT_MAX, 1000000, first_not_allowed, first_not_allowed - 1, INT_MAX - 1};
    int n = 0;
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        int fd = candidates[i];
        if (fcntl(fd, F_GETFD) >= 0) close(fd);
        if (fcntl(fd, F_GETFD) < 0) out[n++] = fd;
    }
    CHECK(n >= 3);
    return n;
}

/* Bug (issue 25): evl_register of a number that is not open grew the
 * registration table to that number before asking the kernel: INT_MAX
 * aborted the process (an allocation of 80 GiB), 1,000,000 cost 40 MiB.
 * Now every fd argument of the core API answers at once, with the error
 * the header documents, and the process does not grow. */
static void test_fd_numbers_that_are_not_open_cost_nothing(void) {
    evl_loop *loop = new_loop();
    io_log log = {0};
    int numbers[8];
    int n = closed_numbers(numbers);
    long before = status_kib("VmRSS");
    CHECK(before > 0);
    for (int i = 0; i < n; i++) {
        int fd = numbers[i];
        CHECK_EQ(evl_register(loop, fd, EVL_READ, log_io, &log), -EBADF);
        CHECK_EQ(evl_register(loop, fd, EVL_WRITE | EVL_ONESHOT, NULL, NULL), -EBADF);
        CHECK_EQ(evl_modify(loop, fd, EVL_READ), -ENOENT);
        CHECK_EQ(evl_set_callback(loop, fd, log_io, &log), -ENOENT);
        CHECK_EQ(evl_unregister(loop, fd), -ENOENT);
    }
    const int negative[] = {-1, -2, INT_MIN, INT_MIN + 1};
    for (size_t i = 0; i < sizeof negative / sizeof negative[0]; i++) {
        int fd = negative[i];
        CHECK_EQ(evl_register(loop, fd, EVL_READ, log_io, &log), -EINVAL);
        CHECK_EQ(evl_modify(loop, fd, EVL_READ), -EINVAL);
        CHECK_EQ(evl_set_callback(loop, fd, log_io, &log), -EINVAL);
        CHECK_EQ(evl_unregister(loop, fd), -EINVAL);
    }
    long grown = grown_kib(before);
    if (grown >= 256) fprintf(stderr, "grew by %ld KiB\n", grown);
    CHECK(grown < 256); /* the table for the limit's number alone is ~1 MiB */
    /* Nothing was registered: evl_run has nothing to wait for. */
    CHECK_EQ(evl_run(loop), 0);
    CHECK_EQ(log.calls, 0);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* An fd that is open at the last number RLIMIT_NOFILE allows works like any
 * other (the table grows to hold it, as far as the limit). */
static void test_fd_at_the_last_number_the_limit_allows(void) {
    struct rlimit limit;
    CHECK_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
    if (limit.rlim_cur > 1u << 20) {
        /* Not a bound this test can reach with a table it would want to
         * allocate: say so rather than pass silently. */
        fprintf(stderr, "RLIMIT_NOFILE %llu: testing the fd at 1048575 instead\n",
                (unsigned long long)limit.rlim_cur);
        limit.rlim_cur = 1u << 20;
    }
    int last = (int)limit.rlim_cur - 1;
    evl_loop *loop = new_loop();
    int sv[2];
    pair(sv);
    int fd = move_to(sv[0], last);
    io_log log = {0};
    CHECK_EQ(evl_register(loop, fd, EVL_READ, log_io, &log), 0);
    CHECK_EQ(evl_register(loop, fd, EVL_READ, log_io, &log), -EEXIST);
    put(sv[1], "x");
    CHECK_EQ(evl_run_once(loop, 1000), 1);
    CHECK_EQ(log.last_fd, fd);
    CHECK_EQ(evl_unregister(loop, fd), 0);
    CHECK_EQ(evl_unregister(loop, fd), -ENOENT);
    CHECK_EQ(evl_loop_free(loop), 0);
    close(fd);
    close(sv[1]);
}

/* An array of `count` events that costs nothing until written: address
 * space only (MAP_NORESERVE). */
static void *untouched_array(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(p != MAP_FAILED);
    return p == MAP_FAILED ? NULL : p;
}

/* The sweep of issue 25 over the core API's other numbers: huge or
 * negative counts, delays, timeouts and signal numbers give the documented
 * error or a bounded cost, never an abort, a hang or memory in proportion
 * to the number. */
static void test_huge_and_negative_numbers_cost_nothing(void) {
    evl_loop *loop = new_loop();
    long before = status_kib("VmRSS");

    /* evl_poll with room for INT_MAX events: the loop never makes room
     * for more than it has registrations, and writes only what is ready. */
    size_t size = (size_t)INT_MAX * sizeof(evl_event);
    evl_event *events = untouched_array(size);
    int sv[2];
    pair(sv);
    CHECK_EQ(evl_register(loop, sv[0], EVL_WRITE, NULL, (void *)7), 0);
    if (events) {
        CHECK_EQ(evl_poll(loop, 1000, events, INT_MAX), 1);
        CHECK_EQ(events[0].fd, sv[0]);
        CHECK_EQ(evl_poll(loop, 0, events, INT_MIN), -EINVAL);
    }
    CHECK_EQ(evl_unregister(loop, sv[0]), 0);

    /* Timers: the longest delays and periods never fire and never wrap. */
    int fired = 0;
    uint64_t far = 0, every_age = 0;
    CHECK_EQ(evl_timer_start(loop, UINT64_MAX, UINT64_MAX, count_timer, &fired, &far), 0);
    CHECK_EQ(evl_timer_start(loop, 0, UINT64_MAX, count_timer, &fired, &every_age), 0);
    CHECK(evl_backend_fd(loop) >= 0); /* its timerfd follows the deadlines too */
    for (int i = 0; i < 100 && fired == 0; i++) CHECK(evl_run_once(loop, 10) >= 0);
    CHECK_EQ(fired, 1); /* the second, once */
    CHECK_EQ(evl_run_once(loop, 0), 0);
    CHECK_EQ(evl_backend_timeout(loop), INT_MAX);
    CHECK_EQ(evl_timer_stop(loop, far), 0);
    CHECK_EQ(evl_timer_stop(loop, every_age), 0);
    CHECK_EQ(evl_timer_stop(loop, UINT64_MAX), -ENOENT);
    /* A negative timeout is no limit: a due timer still ends the wait. */
    CHECK_EQ(evl_timer_start(loop, 0, 0, count_timer, &fired, NULL), 0);
    CHECK_EQ(evl_run_once(loop, INT_MIN), 1);
    CHECK_EQ(fired, 2);

    /* Signal numbers out of range. */
    const int signos[] = {INT_MAX, INT_MIN, 65, 1000, -1};
    for (size_t i = 0; i < sizeof signos / sizeof signos[0]; i++) {
        CHECK_EQ(evl_signal_start(loop, signos[i], on_signal_noop, NULL), -EINVAL);
        CHECK_EQ(evl_signal_stop(loop, signos[i]), -EINVAL);
    }

    long grown = grown_kib(before);
    if (grown >= 1024) fprintf(stderr, "grew by %ld KiB\n", grown);
    CHECK(grown < 1024);
    if (events) munmap(events, size);
    CHECK_EQ(evl_loop_free(loop), 0);
    close(sv[0]);
    close(sv[1]);
}

static void test_many_fds(void) {
    enum { N = 500 };
    evl_loop *loop = new_loop();
    static int fds[N][2];
    io_log log = {0};
    for (int i = 0; i < N; i++) {
        pair(fds[i]);
        CHECK_EQ(evl_register(loop, fds[i][0], EVL_READ, log_io, &log), 0);
        put(fds[i][1], "z");
    }
    int ran = 0;
    for (int i = 0; i < 5 && ran < N; i++) ran += evl_run_once(loop, 1000);
    CHECK_EQ(ran, N);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(evl_unregister(loop, fds[i][0]), 0);
        close(fds[i][0]);
        close(fds[i][1]);
    }
    CHECK_EQ(evl_loop_free(loop), 0);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    static const harness_test tests[] = {
        TEST(test_versions),
        TEST(test_strerror),
        TEST(test_null_pointers),
        TEST(test_bad_fds_and_bits),
        TEST(test_read_callback),
        TEST(test_poll_reports_all_and_limits),
        TEST(test_hup_rdhup_error),
        TEST(test_edge_and_oneshot),
        TEST(test_oneshot_rearmed_during_its_batch_reports_once),
        TEST(test_rdhup_only_with_read_interest),
        TEST(test_callback_ends_other_registrations),
        TEST(test_fd_number_reused_in_batch),
        TEST(test_closed_without_unregister),
        TEST(test_callback_changes_itself),
        TEST(test_reentry_is_busy),
        TEST(test_timer_order),
        TEST(test_timer_stop_rules),
        TEST(test_timer_never_early),
        TEST(test_many_timers_stopped),
        TEST(test_threads_post_wake_stop),
        TEST(test_task_posted_from_task_runs_next_iteration),
        TEST(test_signals),
        TEST(test_eintr),
        TEST(test_fork),
        TEST(test_fork_after_registered_fds_were_closed),
        TEST(test_fork_never_revives_a_closed_registration),
        TEST(test_fork_keeps_what_the_parent_lets_go_after_the_fork),
        TEST(test_signalfd_never_takes_a_registered_number),
        TEST(test_fork_with_signalfd_after_a_stale_registration),
        TEST(test_many_fds),
        TEST(test_fd_numbers_that_are_not_open_cost_nothing),
        TEST(test_fd_at_the_last_number_the_limit_allows),
        TEST(test_huge_and_negative_numbers_cost_nothing),
    };
    return harness_main(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
