/* Embedding evloop in a host loop (evl_backend_fd, evl_backend_timeout) and
 * hooking into its iterations (evl_hook_start, evl_hook_stop): every
 * documented error, the order and count of hooks per iteration, hooks that
 * stop themselves and each other, idle hooks, and host loops driven by poll()
 * that must never wait past a due timer nor wake up for nothing. Built with
 * -std=c11 -Wall -Wextra -Werror and run natively and under valgrind
 * memcheck by tests/c_api.rs. */
#define _GNU_SOURCE
#include "evloop.h"
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int open_fds(void) {
    int count = 0;
    DIR *dir = opendir("/proc/self/fd");
    if (!dir) return -1;
    while (readdir(dir)) count++;
    closedir(dir);
    return count;
}

static void no_op_hook(evl_loop *loop, uint64_t id, void *userdata) {
    (void)loop, (void)id, (void)userdata;
}

static void no_op_timer(evl_loop *loop, uint64_t id, void *userdata) {
    (void)loop, (void)id, (void)userdata;
}

static void no_op_task(evl_loop *loop, void *userdata) {
    (void)loop, (void)userdata;
}

/* ---- arguments ---------------------------------------------------------- */

static void test_bad_arguments(void) {
    uint64_t id = 0;
    CHECK_EQ(evl_backend_fd(NULL), -EINVAL);
    CHECK_EQ(evl_backend_timeout(NULL), -EINVAL);
    CHECK_EQ(evl_hook_start(NULL, EVL_HOOK_PREPARE, no_op_hook, NULL, &id), -EINVAL);
    CHECK_EQ(evl_hook_stop(NULL, 1), -EINVAL);

    evl_loop *loop = new_loop();
    CHECK_EQ(evl_hook_start(loop, 0, no_op_hook, NULL, &id), -EINVAL);
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_IDLE + 1, no_op_hook, NULL, &id), -EINVAL);
    CHECK_EQ(evl_hook_start(loop, UINT32_MAX, no_op_hook, NULL, &id), -EINVAL);
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_CHECK, NULL, NULL, &id), -EINVAL);
    CHECK_EQ(id, 0); /* nothing written on error */
    CHECK_EQ(evl_hook_stop(loop, 0), -ENOENT);
    CHECK_EQ(evl_hook_stop(loop, UINT64_MAX), -ENOENT);

    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_CHECK, no_op_hook, NULL, &id), 0);
    CHECK(id != 0);
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_PREPARE, no_op_hook, NULL, NULL), 0); /* NULL id is fine */
    CHECK_EQ(evl_hook_stop(loop, id), 0);
    CHECK_EQ(evl_hook_stop(loop, id), -ENOENT);
    uint64_t again = 0;
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_CHECK, no_op_hook, NULL, &again), 0);
    CHECK(again != id); /* a stopped hook's id never names another */
    CHECK_EQ(evl_hook_stop(loop, id), -ENOENT);
    CHECK_EQ(evl_hook_stop(loop, again ^ ((uint64_t)1 << 40)), -ENOENT);
    CHECK_EQ(evl_loop_free(loop), 0); /* with hooks active: memcheck sees no leak */
}

static void test_backend_timeout_values(void) {
    evl_loop *loop = new_loop();
    CHECK_EQ(evl_backend_timeout(loop), -1); /* nothing but I/O can wake it */

    uint64_t timer;
    int64_t before = now_ns();
    CHECK_EQ(evl_timer_start(loop, 60000, 0, no_op_timer, NULL, &timer), 0);
    int timeout = evl_backend_timeout(loop);
    int64_t elapsed_ms = (now_ns() - before) / 1000000;
    CHECK(timeout <= 60000);                  /* rounded up, never past the deadline */
    CHECK(timeout >= 60000 - elapsed_ms - 1); /* and not much before it */
    CHECK_EQ(evl_timer_start(loop, 0, 0, no_op_timer, NULL, NULL), 0);
    CHECK_EQ(evl_backend_timeout(loop), 0); /* due now */
    CHECK_EQ(evl_run_once(loop, 0), 1);
    CHECK(evl_backend_timeout(loop) > 0);
    CHECK_EQ(evl_timer_stop(loop, timer), 0);
    CHECK_EQ(evl_backend_timeout(loop), -1);

    CHECK_EQ(evl_timer_start(loop, (uint64_t)1 << 40, 0, no_op_timer, NULL, &timer), 0);
    CHECK_EQ(evl_backend_timeout(loop), INT32_MAX); /* far away: clamped */
    CHECK_EQ(evl_timer_stop(loop, timer), 0);

    CHECK_EQ(evl_post(loop, no_op_task, NULL), 0);
    CHECK_EQ(evl_backend_timeout(loop), 0); /* a task waits */
    CHECK_EQ(evl_run_once(loop, 0), 1);
    CHECK_EQ(evl_backend_timeout(loop), -1);

    uint64_t idle;
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_IDLE, no_op_hook, NULL, &idle), 0);
    CHECK_EQ(evl_backend_timeout(loop), 0); /* an idle hook never lets it block */
    CHECK_EQ(evl_hook_stop(loop, idle), 0);
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_PREPARE, no_op_hook, NULL, &idle), 0);
    CHECK_EQ(evl_backend_timeout(loop), -1); /* other hooks do not need it to run */
    CHECK_EQ(evl_loop_free(loop), 0);
}

static void count_stream_event(evl_loop *loop, const evl_stream_event *ev) {
    (void)loop;
    (*(int *)ev->userdata)++;
}

/* Stream events waiting to be handed out (here the CLOSED events of two
 * aborted streams, more than one poll takes), and then the streams' fds to
 * close: the host must come back now. */
static void test_backend_timeout_zero_while_stream_events_wait(void) {
    evl_loop *loop = new_loop();
    int sv[2][2], events = 0;
    uint64_t ids[2];
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
        CHECK_EQ(evl_stream_open(loop, sv[i][0], count_stream_event, &events, &ids[i]), 0);
    }
    CHECK_EQ(evl_backend_timeout(loop), -1);
    for (int i = 0; i < 2; i++) CHECK_EQ(evl_stream_abort(loop, ids[i]), 0);
    CHECK_EQ(evl_backend_timeout(loop), 0);
    evl_stream_event batch[1];
    CHECK_EQ(evl_stream_poll(loop, 1000, batch, 1), 1);
    CHECK_EQ(batch[0].kind, EVL_STREAM_CLOSED);
    CHECK_EQ(evl_backend_timeout(loop), 0);
    CHECK_EQ(evl_stream_poll(loop, 0, batch, 1), 1);
    CHECK_EQ(batch[0].kind, EVL_STREAM_CLOSED);
    /* The streams' fds close at the next poll, once the events were seen. */
    CHECK_EQ(evl_backend_timeout(loop), 0);
    CHECK_EQ(evl_stream_poll(loop, 0, batch, 1), 0);
    CHECK_EQ(evl_backend_timeout(loop), -1);
    CHECK_EQ(events, 0); /* evl_stream_poll hands events out instead of calling back */
    for (int i = 0; i < 2; i++) close(sv[i][1]);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* A loop that is not embedded has no timerfd; asking for the fd makes one. */
static void test_backend_fd_costs_nothing_until_asked(void) {
    int base = open_fds();
    evl_loop *loop = new_loop();
    /* A first wait with a timeout (without epoll_pwait2, as under valgrind,
     * that makes the wait's own timerfd), then count. */
    CHECK_EQ(evl_run_once(loop, 1), 0);
    int before = open_fds();
    CHECK_EQ(evl_timer_start(loop, 1, 0, no_op_timer, NULL, NULL), 0);
    CHECK_EQ(evl_run_once(loop, 100), 1);
    CHECK_EQ(open_fds(), before);
    int fd = evl_backend_fd(loop);
    CHECK(fd >= 0);
    CHECK_EQ(open_fds(), before + 1);
    CHECK_EQ(evl_backend_fd(loop), fd); /* the same fd, no new timerfd */
    CHECK_EQ(open_fds(), before + 1);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    CHECK_EQ(poll(&pfd, 1, 0), 0); /* nothing to do: not readable */
    CHECK_EQ(evl_post(loop, no_op_task, NULL), 0);
    CHECK_EQ(poll(&pfd, 1, 0), 1); /* a task: readable */
    CHECK_EQ(evl_run_once(loop, 0), 1);
    CHECK_EQ(poll(&pfd, 1, 0), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
    CHECK_EQ(open_fds(), base); /* every fd the loop had is closed */
}

/* ---- hooks in an iteration ---------------------------------------------- */

typedef struct {
    char log[256];
    size_t len;
} trace;

static void note(trace *t, char c) {
    if (t->len + 1 < sizeof t->log) t->log[t->len++] = c;
    t->log[t->len] = '\0';
}

static void reset(trace *t) {
    t->len = 0;
    t->log[0] = '\0';
}

typedef struct {
    trace *trace;
    char mark;
} traced;

static void traced_hook(evl_loop *loop, uint64_t id, void *userdata) {
    (void)loop, (void)id;
    traced *t = userdata;
    note(t->trace, t->mark);
}

static void traced_timer(evl_loop *loop, uint64_t id, void *userdata) {
    (void)loop, (void)id;
    traced *t = userdata;
    note(t->trace, t->mark);
}

static void traced_task(evl_loop *loop, void *userdata) {
    (void)loop;
    traced *t = userdata;
    note(t->trace, t->mark);
}

static void traced_io(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    (void)loop, (void)revents;
    traced *t = userdata;
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    note(t->trace, t->mark);
}

static void test_hook_order_and_counts(void) {
    evl_loop *loop = new_loop();
    trace log = {0};
    traced prepare1 = {&log, 'P'}, prepare2 = {&log, 'p'}, check = {&log, 'C'}, idle = {&log, 'I'},
           timer = {&log, 'T'}, task = {&log, 't'}, io = {&log, 'R'};
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_IDLE, traced_hook, &idle, NULL), 0);
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_CHECK, traced_hook, &check, NULL), 0);
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_PREPARE, traced_hook, &prepare1, NULL), 0);
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_PREPARE, traced_hook, &prepare2, NULL), 0);

    /* Nothing to do: prepare (in start order), check, idle; no callback counted.
     * With an idle hook the wait does not block, even with no timeout. */
    for (int i = 0; i < 3; i++) CHECK_EQ(evl_run_once(loop, -1), 0);
    CHECK(strcmp(log.log, "PpCIPpCIPpCI") == 0);

    /* Work found: the check hooks come before it, and the idle hooks not at all. */
    reset(&log);
    CHECK_EQ(evl_post(loop, traced_task, &task), 0);
    CHECK_EQ(evl_run_once(loop, -1), 1);
    CHECK(strcmp(log.log, "PpCt") == 0);

    reset(&log);
    CHECK_EQ(evl_timer_start(loop, 0, 0, traced_timer, &timer, NULL), 0);
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    CHECK_EQ(evl_register(loop, sv[0], EVL_READ, traced_io, &io), 0);
    CHECK_EQ(write(sv[1], "x", 1), 1);
    CHECK_EQ(evl_run_once(loop, -1), 2);
    CHECK(strcmp(log.log, "PpCTR") == 0);

    /* evl_poll and evl_stream_poll run the hooks too. */
    reset(&log);
    evl_event events[4];
    CHECK_EQ(evl_poll(loop, -1, events, 4), 0);
    evl_stream_event stream_events[4];
    CHECK_EQ(evl_stream_poll(loop, -1, stream_events, 4), 0);
    CHECK(strcmp(log.log, "PpCIPpCI") == 0);
    if (strcmp(log.log, "PpCIPpCI") != 0) fprintf(stderr, "log: %s\n", log.log);

    CHECK_EQ(evl_unregister(loop, sv[0]), 0);
    close(sv[0]);
    close(sv[1]);
    CHECK_EQ(evl_loop_free(loop), 0);
}

typedef struct {
    uint64_t self, other, started;
    int calls, stop_self_after;
    trace *trace;
    char mark;
    traced child; /* what the hook it starts notes */
} actor;

/* Stops `other` on its first call, starts a prepare hook on its second, and
 * stops itself after `stop_self_after` calls. */
static void actor_hook(evl_loop *loop, uint64_t id, void *userdata) {
    actor *a = userdata;
    CHECK_EQ(id, a->self);
    a->calls++;
    note(a->trace, a->mark);
    if (a->calls == 1 && a->other) CHECK_EQ(evl_hook_stop(loop, a->other), 0);
    if (a->calls == 2) CHECK_EQ(evl_hook_start(loop, EVL_HOOK_PREPARE, traced_hook, &a->child, &a->started), 0);
    if (a->calls == a->stop_self_after) CHECK_EQ(evl_hook_stop(loop, id), 0);
}

static void test_hooks_stop_themselves_and_each_other(void) {
    evl_loop *loop = new_loop();
    trace log = {0};
    actor first = {.stop_self_after = 3, .trace = &log, .mark = 'A', .child = {&log, 'N'}};
    actor second = {.stop_self_after = 1000, .trace = &log, .mark = 'B', .child = {&log, 'n'}};
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_PREPARE, actor_hook, &first, &first.self), 0);
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_PREPARE, actor_hook, &second, &second.self), 0);
    first.other = second.self;
    /* Iteration 1: A stops B, which comes later in the same run: B is not called.
     * Iteration 2: A starts N, which waits for the next iteration.
     * Iteration 3: A, which stops itself, then N. Iteration 4: N alone. */
    for (int i = 0; i < 4; i++) CHECK_EQ(evl_run_once(loop, 0), 0);
    CHECK_EQ(first.calls, 3);
    CHECK_EQ(second.calls, 0);
    CHECK_EQ(evl_hook_stop(loop, second.self), -ENOENT);
    CHECK_EQ(evl_hook_stop(loop, first.self), -ENOENT);
    CHECK(strcmp(log.log, "AAANN") == 0);
    if (strcmp(log.log, "AAANN") != 0) fprintf(stderr, "log: %s\n", log.log);
    CHECK_EQ(evl_hook_stop(loop, first.started), 0);
    CHECK_EQ(evl_backend_timeout(loop), -1);
    CHECK_EQ(evl_loop_free(loop), 0);
}

typedef struct {
    int calls, limit, fd;
    uint64_t id;
} idler;

static void idle_until_limit(evl_loop *loop, uint64_t id, void *userdata) {
    idler *i = userdata;
    if (++i->calls == i->limit) {
        CHECK_EQ(evl_hook_stop(loop, id), 0);
        CHECK_EQ(evl_unregister(loop, i->fd), 0);
    }
}

static void test_idle_hooks_keep_run_from_blocking(void) {
    evl_loop *loop = new_loop();
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    /* A registration nothing will ever make ready: without the idle hook,
     * evl_run would block forever. */
    CHECK_EQ(evl_register(loop, sv[0], EVL_READ, NULL, NULL), 0);
    idler i = {.limit = 100, .fd = sv[0]};
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_IDLE, idle_until_limit, &i, &i.id), 0);
    CHECK_EQ(evl_run(loop), 0); /* returns once the hook stopped itself and the fd */
    CHECK_EQ(i.calls, 100);
    CHECK_EQ(evl_hook_stop(loop, i.id), -ENOENT);
    close(sv[0]);
    close(sv[1]);
    CHECK_EQ(evl_loop_free(loop), 0);
}

typedef struct {
    int calls, fired;
    uint64_t hook;
} keeper;

static void fire_and_count(evl_loop *loop, uint64_t id, void *userdata) {
    (void)loop, (void)id;
    ((keeper *)userdata)->fired++;
}

/* A prepare hook alone keeps evl_run going; when it stops itself (and
 * nothing else is left) the run ends instead of blocking forever. */
static void stop_after_timers(evl_loop *loop, uint64_t id, void *userdata) {
    keeper *k = userdata;
    k->calls++;
    if (k->fired == 3) CHECK_EQ(evl_hook_stop(loop, id), 0);
}

static void test_an_active_hook_is_work_for_run(void) {
    evl_loop *loop = new_loop();
    keeper k = {0};
    for (uint64_t ms = 1; ms <= 3; ms++) CHECK_EQ(evl_timer_start(loop, ms, 0, fire_and_count, &k, NULL), 0);
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_PREPARE, stop_after_timers, &k, &k.hook), 0);
    CHECK_EQ(evl_run(loop), 0);
    CHECK_EQ(k.fired, 3);
    CHECK(k.calls >= 2); /* at least one iteration per distinct deadline seen */
    CHECK_EQ(evl_hook_stop(loop, k.hook), -ENOENT);
    CHECK_EQ(evl_loop_free(loop), 0);
}

static void stop_loop_hook(evl_loop *loop, uint64_t id, void *userdata) {
    (void)id;
    (*(int *)userdata)++;
    CHECK_EQ(evl_stop(loop), 0);
}

static void test_a_hook_stops_the_loop(void) {
    evl_loop *loop = new_loop();
    int calls = 0;
    CHECK_EQ(evl_timer_start(loop, 60000, 0, no_op_timer, NULL, NULL), 0);
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_PREPARE, stop_loop_hook, &calls, NULL), 0);
    CHECK_EQ(evl_run(loop), 0); /* stopped before its first wait, which then does not block */
    CHECK_EQ(calls, 1);
    CHECK_EQ(evl_loop_free(loop), 0);
}

static void hook_reenters(evl_loop *loop, uint64_t id, void *userdata) {
    (void)id;
    int *results = userdata;
    results[0] = evl_run_once(loop, 0);
    results[1] = evl_loop_free(loop);
}

static void test_hook_reentry_is_busy(void) {
    evl_loop *loop = new_loop();
    int results[2] = {0, 0};
    uint64_t id;
    CHECK_EQ(evl_hook_start(loop, EVL_HOOK_PREPARE, hook_reenters, results, &id), 0);
    CHECK_EQ(evl_run_once(loop, 0), 0);
    CHECK_EQ(results[0], -EBUSY);
    CHECK_EQ(results[1], -EBUSY);
    CHECK_EQ(evl_loop_free(loop), 0);
}

/* ---- a host loop driven by poll() ---------------------------------------- */

#define HOST_TIMERS 8

typedef struct host host;

typedef struct {
    host *host;
    int64_t earliest; /* no sooner than this: the time just before it was started + delay */
    int64_t latest;   /* the deadline at the latest: the time just after + delay */
    int fired;
    int writes; /* bytes its callback writes to the host's socket */
} host_timer;

struct host {
    host_timer timers[HOST_TIMERS];
    int sv[2];
    int timer_fires, io_calls, pending_timers;
    bool io_ran;
};

static void host_on_timer(evl_loop *loop, uint64_t id, void *userdata) {
    (void)loop, (void)id;
    host_timer *t = userdata;
    CHECK(now_ns() >= t->earliest); /* never early */
    t->fired++;
    t->host->timer_fires++;
    t->host->pending_timers--;
    for (int i = 0; i < t->writes; i++) CHECK_EQ(write(t->host->sv[1], "x", 1), 1);
}

static void host_on_readable(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    (void)loop, (void)revents;
    host *h = userdata;
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    h->io_calls++;
    h->io_ran = true;
}

/* The latest deadline of the next timer still to fire (INT64_MAX: none). */
static int64_t next_latest(const host *h) {
    int64_t next = INT64_MAX;
    for (int i = 0; i < HOST_TIMERS; i++)
        if (!h->timers[i].fired && h->timers[i].latest < next) next = h->timers[i].latest;
    return next;
}

static void start_host(evl_loop *loop, host *h) {
    static const uint64_t delays_ms[HOST_TIMERS] = {5, 12, 12, 20, 33, 34, 50, 80};
    memset(h, 0, sizeof *h);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, h->sv), 0);
    CHECK_EQ(evl_register(loop, h->sv[0], EVL_READ, host_on_readable, h), 0);
    for (int i = 0; i < HOST_TIMERS; i++) {
        host_timer *t = &h->timers[i];
        t->host = h;
        t->writes = i % 3 == 0 ? 1 + i : 0; /* some timers make I/O for the next wakeup */
        t->earliest = now_ns() + (int64_t)delays_ms[i] * 1000000;
        CHECK_EQ(evl_timer_start(loop, delays_ms[i], 0, host_on_timer, t, NULL), 0);
        t->latest = now_ns() + (int64_t)delays_ms[i] * 1000000;
    }
    h->pending_timers = HOST_TIMERS;
}

static void stop_host(evl_loop *loop, host *h) {
    CHECK_EQ(evl_unregister(loop, h->sv[0]), 0);
    close(h->sv[0]);
    close(h->sv[1]);
}

/* The host waits in poll() on evl_backend_fd, for at most
 * evl_backend_timeout, then runs one iteration that does not block.
 * `use_timeout` false: it waits on the fd alone (-1), so timers must make
 * the fd readable by themselves. Returns the number of wakeups. */
static int drive_host(evl_loop *loop, host *h, bool use_timeout, int *io_batches) {
    int fd = evl_backend_fd(loop);
    CHECK(fd >= 0);
    int wakeups = 0;
    *io_batches = 0;
    while (h->pending_timers > 0 && wakeups < 1000) {
        int64_t before = now_ns();
        int timeout = evl_backend_timeout(loop);
        int64_t next = next_latest(h);
        /* Never past a due timer: at most the time to the latest deadline
         * the next timer can have, rounded up. */
        CHECK(timeout >= 0);
        if (next != INT64_MAX) {
            int64_t bound = next > before ? (next - before + 999999) / 1000000 : 0;
            CHECK(timeout <= bound);
            if (timeout > bound) fprintf(stderr, "timeout %d, bound %lld\n", timeout, (long long)bound);
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        /* 10 s: only a broken fd gets there; the check below catches it. */
        int ready = poll(&pfd, 1, use_timeout ? timeout : 10000);
        CHECK(ready >= 0);
        if (!use_timeout) CHECK_EQ(ready, 1);
        wakeups++;
        h->io_ran = false;
        int ran = evl_run_once(loop, 0);
        CHECK(ran >= 0);
        if (h->io_ran) (*io_batches)++;
    }
    CHECK_EQ(h->timer_fires, HOST_TIMERS);
    for (int i = 0; i < HOST_TIMERS; i++) CHECK_EQ(h->timers[i].fired, 1);
    /* The I/O the last timers made is still to read: the fd says so. */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 0) == 1) {
        wakeups++;
        h->io_ran = false;
        CHECK(evl_run_once(loop, 0) > 0);
        if (h->io_ran) (*io_batches)++;
    }
    /* Nothing left: no timeout, and the fd is quiet (a host would sleep). */
    CHECK_EQ(evl_backend_timeout(loop), -1);
    CHECK_EQ(poll(&pfd, 1, 20), 0);
    return wakeups;
}

static void test_host_loop_wakes_once_per_timer_or_batch(void) {
    for (int use_timeout = 1; use_timeout >= 0; use_timeout--) {
        evl_loop *loop = new_loop();
        host h;
        start_host(loop, &h);
        int io_batches;
        int wakeups = drive_host(loop, &h, use_timeout, &io_batches);
        /* Never spins: every wakeup had a due timer or a batch of I/O. */
        CHECK(wakeups <= h.timer_fires + io_batches);
        CHECK(io_batches >= 1);
        CHECK(io_batches <= h.io_calls);
        printf("host loop (%s): %d wakeups for %d timers and %d I/O batches\n",
               use_timeout ? "fd + timeout" : "fd alone", wakeups, h.timer_fires, io_batches);
        stop_host(loop, &h);
        CHECK_EQ(evl_loop_free(loop), 0);
    }
}

/* A timer started, or stopped, while the host sleeps moves the deadline the
 * fd follows. */
static void test_host_follows_timers_started_and_stopped_outside(void) {
    evl_loop *loop = new_loop();
    int fd = evl_backend_fd(loop);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    keeper k = {0};
    uint64_t late, soon;
    CHECK_EQ(evl_timer_start(loop, 60000, 0, fire_and_count, &k, &late), 0);
    CHECK_EQ(evl_timer_start(loop, 10, 0, fire_and_count, &k, &soon), 0);
    CHECK_EQ(poll(&pfd, 1, 10000), 1); /* the 10 ms one, not the minute */
    CHECK_EQ(evl_run_once(loop, 0), 1);
    CHECK_EQ(k.fired, 1);
    CHECK_EQ(evl_timer_start(loop, 10, 0, fire_and_count, &k, &soon), 0);
    CHECK_EQ(evl_timer_stop(loop, soon), 0);
    CHECK_EQ(poll(&pfd, 1, 40), 0); /* stopped: no wakeup for it */
    CHECK_EQ(evl_timer_stop(loop, late), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
}

static void *post_later(void *arg) {
    evl_loop *loop = arg;
    struct timespec pause = {.tv_nsec = 20 * 1000000};
    nanosleep(&pause, NULL);
    evl_post(loop, no_op_task, NULL);
    return NULL;
}

static void test_host_wakes_for_a_task_from_another_thread(void) {
    evl_loop *loop = new_loop();
    int fd = evl_backend_fd(loop);
    /* Asked before the thread starts: on a loaded machine its post may
     * come before this thread runs again (then the timeout is 0). */
    CHECK_EQ(evl_backend_timeout(loop), -1);
    pthread_t thread;
    CHECK_EQ(pthread_create(&thread, NULL, post_later, loop), 0);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    CHECK_EQ(poll(&pfd, 1, 10000), 1);
    CHECK_EQ(evl_run_once(loop, 0), 1);
    pthread_join(thread, NULL);
    CHECK_EQ(poll(&pfd, 1, 0), 0);
    CHECK_EQ(evl_loop_free(loop), 0);
}

int main(int argc, char **argv) {
    static const harness_test tests[] = {
        TEST(test_bad_arguments),
        TEST(test_backend_timeout_values),
        TEST(test_backend_timeout_zero_while_stream_events_wait),
        TEST(test_backend_fd_costs_nothing_until_asked),
        TEST(test_hook_order_and_counts),
        TEST(test_hooks_stop_themselves_and_each_other),
        TEST(test_idle_hooks_keep_run_from_blocking),
        TEST(test_an_active_hook_is_work_for_run),
        TEST(test_a_hook_stops_the_loop),
        TEST(test_hook_reentry_is_busy),
        TEST(test_host_loop_wakes_once_per_timer_or_batch),
        TEST(test_host_follows_timers_started_and_stopped_outside),
        TEST(test_host_wakes_for_a_task_from_another_thread),
    };
    return harness_main(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
