/* A tiny test harness for the C tests: CHECK records a failure and goes on;
 * harness_main() runs the tests (all, or those a name filter selects),
 * reports each by name and exits non-zero on any failure. new_loop() is
 * the one helper every test program needs. */
#ifndef EVL_TEST_HARNESS_H
#define EVL_TEST_HARNESS_H

#include "evloop.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int harness_failures;
static int harness_checks;

#define CHECK(cond)                                                              \
    do {                                                                         \
        harness_checks++;                                                        \
        if (!(cond)) {                                                           \
            harness_failures++;                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

#define CHECK_EQ(actual, expected)                                                    \
    do {                                                                              \
        long long a_ = (long long)(actual), e_ = (long long)(expected);               \
        harness_checks++;                                                             \
        if (a_ != e_) {                                                               \
            harness_failures++;                                                       \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, \
                    #actual, a_, #expected, e_);                                      \
        }                                                                             \
    } while (0)

typedef struct { const char *name; void (*run)(void); } harness_test;

/* Whether `name` is to run: no filter given, or it contains one of them
 * (like `cargo test NAME`), or with --exact first, it is one of them. */
static int harness_selected(const char *name, int argc, char **argv) {
    int exact = argc > 1 && strcmp(argv[1], "--exact") == 0;
    if (argc <= 1 + exact) return 1;
    for (int i = 1 + exact; i < argc; i++) {
        if (exact ? strcmp(name, argv[i]) == 0 : strstr(name, argv[i]) != NULL) return 1;
    }
    return 0;
}

/* PROGRAM --list: the test names, one a line.
 * PROGRAM [--exact] [NAME...]: runs the tests whose name contains one of
 * the NAMEs (is one of them, with --exact; all without any NAME), each reported as "ok NAME" or "FAILED NAME" on stdout,
 * then "N passed, M failed"; exits non-zero on any failure, and with 2 when
 * the filter matches no test. */
static int harness_main(int argc, char **argv, const harness_test *tests, size_t count) {
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < count; i++) printf("%s\n", tests[i].name);
        return 0;
    }
    int passed = 0, failed = 0;
    for (size_t i = 0; i < count; i++) {
        if (!harness_selected(tests[i].name, argc, argv)) continue;
        int before = harness_failures;
        tests[i].run();
        if (harness_failures == before) {
            passed++;
            printf("ok %s\n", tests[i].name);
        } else {
            failed++;
            printf("FAILED %s\n", tests[i].name);
            fprintf(stderr, "FAILED: %s\n", tests[i].name);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    if (passed + failed == 0) {
        fprintf(stderr, "no test matches the filter\n");
        return 2;
    }
    return failed == 0 ? 0 : 1;
}

#define TEST(fn) { #fn, fn }

/* A field of /proc/self/status in KiB ("VmRSS", "VmHWM"); -1 if absent. */
static inline long status_kib(const char *field) {
    char line[256];
    long kib = -1;
    size_t len = strlen(field);
    FILE *status = fopen("/proc/self/status", "r");
    while (status && fgets(line, sizeof line, status)) {
        if (strncmp(line, field, len) == 0 && line[len] == ':') kib = strtol(line + len + 1, NULL, 10);
    }
    if (status) fclose(status);
    return kib;
}

/* How much the process grew (resident KiB) since `before` (a VmRSS reading). */
static inline long grown_kib(long before) { return status_kib("VmRSS") - before; }

/* A new loop (checked; NULL if that failed). */
static inline evl_loop *new_loop(void) {
    evl_loop *loop = NULL;
    CHECK_EQ(evl_loop_new(&loop), 0);
    CHECK(loop != NULL);
    return loop;
}

/* Waits up to `ms` for `pid` to exit; kills and reaps it if it has not by
 * then. Returns its exit status, or -1 if it was killed or died of a signal. */
static inline int reap_within(pid_t pid, int ms) {
    int status = 0;
    for (int waited = 0;; waited++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (r < 0 || waited >= ms) break;
        usleep(1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    fprintf(stderr, "child %d did not end within %d ms: killed\n", (int)pid, ms);
    return -1;
}

#endif
