/* demo: a timer sends five pings over a socketpair, a read callback answers
 * each one, and the loop ends by itself once nothing is left to wait for.
 * Ctrl-C stops it early, through a signal watcher. */
#include "evloop.h"

#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int ends[2];     /* ends[0]: the pinger's side, ends[1]: the answerer's */
    int pings_left;
    uint64_t timer;
} demo;

static void on_tick(evl_loop *loop, uint64_t timer_id, void *userdata) {
    demo *d = userdata;
    char msg[32];
    int len = snprintf(msg, sizeof msg, "ping %d", 6 - d->pings_left);
    if (write(d->ends[0], msg, (size_t)len) != len) perror("write");
    if (--d->pings_left == 0) evl_timer_stop(loop, timer_id);
}

static void on_readable(evl_loop *loop, int fd, uint32_t revents, void *userdata) {
    demo *d = userdata;
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n <= 0 || (revents & EVL_HUP)) {        /* the peer closed: we are done */
        evl_unregister(loop, fd);
        return;
    }
    buf[n] = '\0';
    printf("answerer got \"%s\"\n", buf);
    if (d->pings_left == 0) {
        evl_unregister(loop, fd);               /* last one: nothing left to wait for */
        evl_signal_stop(loop, SIGINT);
    }
}

static void on_sigint(evl_loop *loop, int signo, void *userdata) {
    (void)signo;
    (void)userdata;
    printf("interrupted\n");
    evl_stop(loop);
}

int main(void) {
    demo d = {.pings_left = 5};
    evl_loop *loop;
    int rc = evl_loop_new(&loop);
    if (rc != 0) {
        fprintf(stderr, "evl_loop_new: %s\n", evl_strerror(rc));
        return 1;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, d.ends) != 0) return 1;
    printf("evloop %s\n", evl_version());
    evl_register(loop, d.ends[1], EVL_READ, on_readable, &d);
    evl_timer_start(loop, 100, 100, on_tick, &d, &d.timer);   /* every 100 ms */
    evl_signal_start(loop, SIGINT, on_sigint, NULL);
    rc = evl_run(loop);                                       /* until nothing is left */
    printf("loop ended: %s\n", evl_strerror(rc));
    evl_loop_free(loop);
    close(d.ends[0]);
    close(d.ends[1]);
    return rc == 0 ? 0 : 1;
}
