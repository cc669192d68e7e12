/* A tiny test harness for the C tests: CHECK records a failure and goes on;
 * main() prints "N passed, M failed" and exits non-zero on any failure. */
#ifndef EVL_TEST_HARNESS_H
#define EVL_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>

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

static int harness_main(const harness_test *tests, size_t count) {
    int passed = 0, failed = 0;
    for (size_t i = 0; i < count; i++) {
        int before = harness_failures;
        tests[i].run();
        if (harness_failures == before) {
            passed++;
        } else {
            failed++;
            fprintf(stderr, "FAILED: %s\n", tests[i].name);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

#define TEST(fn) { #fn, fn }

#endif
