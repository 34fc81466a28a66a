/*
 * For unit tests that drive real code on the real loop: run it until a
 * condition holds, with a deadline (never a sleep tuned to an idle
 * machine).
 */
#ifndef SLUICE_T_LOOP_H
#define SLUICE_T_LOOP_H

#include "loop/loop.h"

static volatile int t_loop_timeout;
static inline void t_loop_deadline(void *arg) {
  (void)arg;
  t_loop_timeout = 1;
}

/* Runs the loop until pred(arg) is true or ms pass; returns pred's last
 * value. */
static inline int t_run_until(int (*pred)(void *arg), void *arg, int ms) {
  struct loop_timer *t = loop_timer_new(t_loop_deadline, NULL);
  t_loop_timeout = 0;
  loop_timer_start(t, (uint64_t)ms);
  while (!pred(arg) && !t_loop_timeout)
    loop_run_once();
  loop_timer_free(t);
  return pred(arg);
}

static inline int t_never(void *arg) {
  (void)arg;
  return 0;
}

/* Lets the loop run for ms (to see that something does not happen). */
static inline void t_run_for(int ms) {
  t_run_until(t_never, NULL, ms);
}

#endif
