/*
 * loop.c's thread pool and urgent lane on a real loop: with every pool
 * thread blocked and hundreds of jobs queued behind them (a stop of
 * thousands of databases), an urgent job (a lease renewal) still runs and
 * its done callback comes, in order, before any pool job ends; every job
 * is counted in loop_work_pending until its done callback ran, and the
 * loop closes clean with the lane's thread joined.
 */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/util.h"
#include "loop/loop.h"
#include "t.h"

#define QUEUED 300

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_release;      /* under g_mu: the pool jobs may end */
static int g_pool_done;    /* loop thread */
static int g_urgent_order; /* loop thread: done callbacks in order */
static int g_urgent_done;
static int g_urgent_ran_on_loop; /* a work function ran on the loop thread */
static pthread_t g_loop_thread;

static void blocked_work(void *arg) {
  (void)arg;
  pthread_mutex_lock(&g_mu);
  while (!g_release)
    pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
}

static void pool_done(void *arg, int status) {
  (void)arg;
  (void)status;
  g_pool_done++;
}

static void urgent_work(void *arg) {
  if (pthread_equal(pthread_self(), g_loop_thread))
    g_urgent_ran_on_loop = 1;
  usleep(1000 * (unsigned)(intptr_t)arg);
}

static void urgent_done(void *arg, int status) {
  CHECK_INT(status, 0);
  CHECK_INT((intptr_t)arg, g_urgent_order);
  g_urgent_order++;
  g_urgent_done++;
}

static void on_deadline(void *arg) {
  *(int *)arg = 1;
}

TEST(urgent_jobs_do_not_wait_behind_the_pool) {
  g_loop_thread = pthread_self();
  for (int i = 0; i < QUEUED; i++)
    loop_work_submit(blocked_work, pool_done, NULL);
  for (int i = 0; i < 3; i++)
    loop_work_submit_urgent(urgent_work, urgent_done, (void *)(intptr_t)i);
  CHECK_INT(loop_work_pending(), QUEUED + 3);
  /* Run the loop until the urgent ones are done, at most 10 s. */
  int timed_out = 0;
  struct loop_timer *t = loop_timer_new(on_deadline, &timed_out);
  loop_timer_start(t, 10000);
  while (g_urgent_done < 3 && !timed_out)
    loop_run_once();
  CHECK(!timed_out);
  CHECK_INT(g_urgent_done, 3);
  CHECK_INT(g_pool_done, 0); /* every pool thread is still blocked */
  CHECK(!g_urgent_ran_on_loop);
  CHECK_INT(loop_work_pending(), QUEUED);
  /* Let the pool go; everything drains. */
  pthread_mutex_lock(&g_mu);
  g_release = 1;
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
  while (loop_work_pending() > 0 && !timed_out)
    loop_run_once();
  CHECK_INT(g_pool_done, QUEUED);
  CHECK_INT(loop_work_pending(), 0);
  loop_timer_free(t);
  /* An idle lane keeps nothing alive: the loop ends by itself. */
  CHECK_INT(loop_run(), 0);
  loop_work_submit_urgent(urgent_work, urgent_done, (void *)(intptr_t)3);
  loop_run();
  CHECK_INT(g_urgent_done, 4);
}

int main(void) {
  CHECK_INT(loop_init(), 0);
  RUN(urgent_jobs_do_not_wait_behind_the_pool);
  CHECK_INT(loop_close(), 0);
  T_DONE();
}
