/*
 * loop.c's light timers on a real loop: deadlines fire in order (equal
 * ones first armed first), never early; a stopped or re-armed timer fires
 * once at its last deadline; a callback may re-arm itself and stop
 * others; 100,000 armed at once (idle databases' retention checks) cost
 * one uv timer, and stopping half of them from the middle of the heap
 * leaves the rest firing in order.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "loop/loop.h"
#include "t.h"

struct rec {
  struct loop_ltimer t;
  int id;
  uint64_t armed_at, want_ms, fired_at;
  int fired;
};

static int g_order[16], g_n_order;
static struct rec *g_stop_me; /* stopped by the first callback */

static void on_fire(void *arg) {
  struct rec *r = arg;
  r->fired++;
  r->fired_at = loop_now_ms();
  if (g_n_order < 16)
    g_order[g_n_order++] = r->id;
  if (g_stop_me) {
    loop_ltimer_stop(&g_stop_me->t);
    g_stop_me = NULL;
  }
}

static void arm(struct rec *r, int id, uint64_t ms) {
  loop_ltimer_init(&r->t, on_fire, r);
  r->id = id;
  r->armed_at = loop_now_ms();
  r->want_ms = ms;
  loop_ltimer_start(&r->t, ms);
}

TEST(order_stop_rearm) {
  struct rec r[6];
  memset(r, 0, sizeof(r));
  arm(&r[0], 0, 60);
  arm(&r[1], 1, 20);
  arm(&r[2], 2, 40);
  arm(&r[3], 3, 40); /* same deadline as 2, armed after it */
  arm(&r[4], 4, 30);
  arm(&r[5], 5, 50);
  loop_ltimer_start(&r[0].t, 10); /* re-armed earlier: fires once, first */
  r[0].want_ms = 10;
  loop_ltimer_stop(&r[4].t); /* never fires */
  loop_ltimer_stop(&r[4].t); /* (twice: nothing) */
  g_stop_me = &r[5];         /* stopped by the first callback */
  CHECK_INT((int)loop_ltimer_count(), 4 + 1);
  CHECK_INT(loop_run(), 0);
  int want[] = {0, 1, 2, 3};
  CHECK_INT(g_n_order, 4);
  for (int i = 0; i < 4 && i < g_n_order; i++)
    CHECK_INT(g_order[i], want[i]);
  for (int i = 0; i < 6; i++) {
    CHECK_INT(r[i].fired, i == 4 || i == 5 ? 0 : 1);
    if (r[i].fired)
      CHECK(r[i].fired_at >= r[i].armed_at + r[i].want_ms);
    CHECK(!loop_ltimer_active(&r[i].t));
  }
  CHECK_INT((int)loop_ltimer_count(), 0);
}

static int g_ticks;
static struct loop_ltimer g_tick;
static void on_tick(void *arg) {
  (void)arg;
  if (++g_ticks < 5)
    loop_ltimer_start(&g_tick, 1); /* periodic: re-arms itself */
}

TEST(callback_rearms_itself) {
  loop_ltimer_init(&g_tick, on_tick, NULL);
  loop_ltimer_start(&g_tick, 1);
  CHECK_INT(loop_run(), 0);
  CHECK_INT(g_ticks, 5);
  CHECK(!loop_ltimer_active(&g_tick));
}

static uint64_t g_last_due;
static int g_many_fired, g_many_bad;
static void on_many(void *arg) {
  struct loop_ltimer *t = arg;
  if (t->due < g_last_due)
    g_many_bad++;
  g_last_due = t->due;
  g_many_fired++;
}

TEST(many_armed_half_stopped) {
  enum { N = 100000 };
  struct loop_ltimer *t = xcalloc(N, sizeof(*t));
  for (int i = 0; i < N; i++) {
    loop_ltimer_init(&t[i], on_many, &t[i]);
    loop_ltimer_start(&t[i], (uint64_t)((i * 7919) % 50));
  }
  CHECK_INT((int)loop_ltimer_count(), N);
  for (int i = 1; i < N; i += 2)
    loop_ltimer_stop(&t[i]);
  CHECK_INT((int)loop_ltimer_count(), N / 2);
  CHECK_INT(loop_run(), 0);
  CHECK_INT(g_many_fired, N / 2);
  CHECK_INT(g_many_bad, 0);
  free(t);
}

int main(void) {
  CHECK_INT(loop_init(), 0);
  RUN(order_stop_rearm);
  RUN(callback_rearms_itself);
  RUN(many_armed_half_stopped);
  CHECK_INT(loop_close(), 0);
  T_DONE();
}
