/*
 * A tiny unit-test harness: TEST(name) functions registered in main() with
 * RUN(name); CHECK* macros report file:line, what was expected and what was
 * got, and the program exits non-zero if any check failed.
 */
#ifndef SLUICE_T_H
#define SLUICE_T_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int t_failures;
static int t_checks;
static const char *t_current;

#define TEST(name) static void name(void)
#define RUN(name)                                                              \
  do {                                                                         \
    t_current = #name;                                                         \
    int before_ = t_failures;                                                  \
    name();                                                                    \
    printf("%s %s\n", t_failures == before_ ? "ok  " : "FAIL", #name);         \
  } while (0)

#define CHECK(cond)                                                            \
  do {                                                                         \
    t_checks++;                                                                \
    if (!(cond)) {                                                             \
      t_failures++;                                                            \
      fprintf(stderr, "%s:%d: %s: expected %s\n", __FILE__, __LINE__,          \
              t_current, #cond);                                               \
    }                                                                          \
  } while (0)

#define CHECK_INT(got, want)                                                   \
  do {                                                                         \
    long long g_ = (long long)(got), w_ = (long long)(want);                   \
    t_checks++;                                                                \
    if (g_ != w_) {                                                            \
      t_failures++;                                                            \
      fprintf(stderr, "%s:%d: %s: %s: expected %lld, got %lld\n", __FILE__,    \
              __LINE__, t_current, #got, w_, g_);                              \
    }                                                                          \
  } while (0)

#define CHECK_STR(got, want)                                                   \
  do {                                                                         \
    const char *g_ = (got), *w_ = (want);                                      \
    t_checks++;                                                                \
    if ((g_ == NULL) != (w_ == NULL) || (g_ && strcmp(g_, w_))) {              \
      t_failures++;                                                            \
      fprintf(stderr, "%s:%d: %s: %s: expected \"%s\", got \"%s\"\n",          \
              __FILE__, __LINE__, t_current, #got, w_ ? w_ : "(null)",         \
              g_ ? g_ : "(null)");                                             \
    }                                                                          \
  } while (0)

#define T_DONE()                                                               \
  do {                                                                         \
    printf("%d checks, %d failed\n", t_checks, t_failures);                    \
    return t_failures ? 1 : 0;                                                 \
  } while (0)

#endif
