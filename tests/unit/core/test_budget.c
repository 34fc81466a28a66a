/*
 * core/budget.c on a real loop: the request rate it grants, the bound on
 * operations in flight, least recently served first, unused grants given
 * back, requests that do not wait charged (backend.h's hook).
 */
#include "core/budget.h"

#include "backends/backend.h"
#include "base/util.h"
#include "loop/loop.h"
#include "t.h"

#include <stdlib.h>

#define NW 8

struct w {
  struct budget_waiter bw;
  int grants;
  int64_t last_ns;
};
static struct w ws[NW];
static int order[256], n_order;

static void on_grant(void *arg) {
  struct w *w = arg;
  w->grants++;
  w->last_ns = time_mono_ns();
  if (n_order < (int)ARRAY_SIZE(order))
    order[n_order++] = (int)(w - ws);
}

static void reset(void) {
  for (int i = 0; i < NW; i++) {
    budget_cancel(&ws[i].bw);
    budget_waiter_init(&ws[i].bw, on_grant, &ws[i]);
    ws[i].grants = 0;
  }
  n_order = 0;
}

static void noop(void *arg) {
  (void)arg;
}

static void run_ms(int ms) {
  int64_t end = time_mono_ns() + (int64_t)ms * NS_PER_MS;
  struct loop_timer *t = loop_timer_new(noop, NULL);
  while (time_mono_ns() < end) {
    loop_timer_start(t, 5);
    loop_run_once();
  }
  loop_timer_free(t);
}

/* Without a budget: granted at once up to the slots, then queued until a
 * slot is given back, in arrival order. */
TEST(slots) {
  budget_configure(0, 3);
  reset();
  for (int i = 0; i < 3; i++) {
    CHECK_INT(budget_admit(&ws[i].bw, 0), 1);
    budget_use(&ws[i].bw);
  }
  CHECK_INT(budget_admit(&ws[3].bw, 0), 0);
  CHECK_INT(budget_admit(&ws[4].bw, 0), 0);
  CHECK_INT(budget_admit(&ws[3].bw, 0), 0); /* already queued: once */
  struct budget_stats st;
  budget_get_stats(&st);
  CHECK_INT(st.in_flight, 3);
  CHECK_INT(st.waiting, 2);
  run_ms(30);
  CHECK_INT(ws[3].grants, 0); /* no slot yet */
  budget_done(&ws[0].bw);
  run_ms(30);
  CHECK_INT(ws[3].grants, 1);
  CHECK_INT(ws[4].grants, 0);
  /* An unused grant comes back: the next one gets its slot. */
  budget_cancel(&ws[3].bw);
  run_ms(30);
  CHECK_INT(ws[4].grants, 1);
  budget_get_stats(&st);
  CHECK_INT(st.in_flight, 3); /* 1, 2 in use; 4 granted */
  CHECK_INT(st.waiting, 0);
  for (int i = 0; i < NW; i++)
    budget_cancel(&ws[i].bw);
  budget_get_stats(&st);
  CHECK_INT(st.in_flight, 0);
}

/* With a budget of 50/s, 8 waiters always wanting a turn get about 50
 * turns a second together, each about an eighth: least recently served
 * first. */
TEST(rate_and_fairness) {
  budget_configure(50, 64);
  reset();
  int64_t t0 = time_mono_ns();
  int64_t end = t0 + 1000 * NS_PER_MS;
  struct loop_timer *t = loop_timer_new(noop, NULL);
  while (time_mono_ns() < end) {
    for (int i = 0; i < NW; i++) {
      struct budget_waiter *b = &ws[i].bw;
      if (b->granted) { /* use it: a request, done at once */
        budget_use(b);
        budget_done(b);
      }
      if (!b->queued && !b->granted && budget_admit(b, 0))
        on_grant(&ws[i]);
    }
    loop_timer_start(t, 2);
    loop_run_once();
  }
  loop_timer_free(t);
  int total = 0, lo = 1 << 30, hi = 0;
  for (int i = 0; i < NW; i++) {
    total += ws[i].grants;
    lo = MIN(lo, ws[i].grants);
    hi = MAX(hi, ws[i].grants);
  }
  printf("rate: %d turns in 1 s at 50/s (burst 5); per waiter %d..%d\n", total,
         lo, hi);
  CHECK(total >= 40 && total <= 50 + 5 + 1);
  CHECK(hi - lo <= 1); /* least recently served first: round robin */
  /* Served in turns: no waiter twice before every other once. */
  int ok = 1;
  for (int k = NW; k < n_order && k < 5 * NW; k++)
    ok &= order[k] == order[k - NW];
  CHECK(ok);
  for (int i = 0; i < NW; i++)
    budget_cancel(&ws[i].bw);
}

/* A waiter that was not served for long goes before those just served. */
TEST(least_recently_served) {
  budget_configure(10, 64);
  reset();
  ws[0].bw.served_ns = 1; /* long ago */
  ws[1].bw.served_ns = time_mono_ns();
  ws[2].bw.served_ns = time_mono_ns() - NS_PER_SEC;
  CHECK_INT(budget_admit(&ws[6].bw, 0), 1); /* the burst's one token */
  CHECK_INT(budget_admit(&ws[1].bw, 0), 0);
  CHECK_INT(budget_admit(&ws[2].bw, 0), 0);
  CHECK_INT(budget_admit(&ws[0].bw, 0), 0);
  n_order = 0;
  run_ms(400);
  CHECK(n_order >= 3);
  CHECK_INT(order[0], 0);
  CHECK_INT(order[1], 2);
  CHECK_INT(order[2], 1);
  for (int i = 0; i < NW; i++)
    budget_cancel(&ws[i].bw);
}

/* The queue's three classes: urgent (flushing) first, then those never
 * served, each in arrival order, then the rest by last service; one leaving
 * from the middle of a class keeps the others' order (the class ends are
 * kept for O(1) arrivals: at a start of 100,000 replicas the walk from the
 * tail was O(n) per arrival). */
#define NQ 20000
static struct w qs[NQ];
static int qorder[NQ + 8], n_qorder;
static void on_qgrant(void *arg) {
  struct w *w = arg;
  if (n_qorder < (int)ARRAY_SIZE(qorder))
    qorder[n_qorder++] = (int)(w - qs);
}

TEST(queue_classes) {
  budget_configure(0, 1);
  reset();
  for (int i = 0; i < NQ; i++)
    budget_waiter_init(&qs[i].bw, on_qgrant, &qs[i]);
  CHECK_INT(budget_admit(&ws[0].bw, 0), 1); /* holds the only slot */
  budget_use(&ws[0].bw);
  /* 0..7: served at 8-i (7 longest ago); 8..: a mix of the others. */
  for (int i = 0; i < 8; i++) {
    qs[i].bw.served_ns = 8 - i;
    CHECK_INT(budget_admit(&qs[i].bw, 0), 0);
  }
  CHECK_INT(budget_admit(&qs[8].bw, 0), 0);  /* new */
  CHECK_INT(budget_admit(&qs[9].bw, 1), 0);  /* urgent */
  CHECK_INT(budget_admit(&qs[10].bw, 0), 0); /* new */
  CHECK_INT(budget_admit(&qs[11].bw, 1), 0); /* urgent */
  CHECK_INT(budget_admit(&qs[12].bw, 0), 0); /* new */
  budget_cancel(&qs[12].bw);                 /* the last new leaves */
  budget_cancel(&qs[11].bw);                 /* the last urgent leaves */
  CHECK_INT(budget_admit(&qs[13].bw, 0), 0); /* new, after 10 */
  CHECK_INT(budget_admit(&qs[14].bw, 1), 0); /* urgent, after 9 */
  qs[15].bw.served_ns = 5; /* served: after 3 (5 too, came first) */
  CHECK_INT(budget_admit(&qs[15].bw, 0), 0);
  budget_cancel(&qs[8].bw); /* the first new leaves */
  /* Many more never served ones behind them all (the slow case). */
  for (int i = 16; i < NQ; i++)
    CHECK_INT(budget_admit(&qs[i].bw, 0), 0);
  int want[] = {9, 14, 10, 13};
  n_qorder = 0;
  budget_done(&ws[0].bw);
  for (int k = 0; k < NQ - 3; k++) {
    while (n_qorder <= k && loop_run_once())
      ;
    if (n_qorder <= k)
      break;
    budget_cancel(&qs[qorder[k]].bw); /* unused: the slot comes back */
  }
  CHECK_INT(n_qorder, NQ - 3);
  for (int k = 0; k < 4; k++)
    CHECK_INT(qorder[k], want[k]);
  int in_order = 1;
  for (int i = 16; i < NQ; i++)
    in_order &= qorder[4 + i - 16] == i;
  CHECK(in_order);
  int served[] = {7, 6, 5, 4, 3, 15, 2, 1, 0};
  for (int k = 0; k < 9; k++)
    CHECK_INT(qorder[4 + NQ - 16 + k], served[k]);
  struct budget_stats st;
  budget_get_stats(&st);
  CHECK_INT(st.waiting, 0);
  CHECK_INT(st.in_flight, 0);
}

static void on_put(void *arg, int status, const char *err) {
  (void)arg, (void)status, (void)err;
}

/* Requests that do not wait (here: puts to a file store, the hook counts
 * them) are charged: the next turn waits until the debt is paid; a
 * flushing waiter does not wait for tokens. */
TEST(charged_requests) {
  budget_configure(20, 64);
  reset();
  struct replica_config rc = {0};
  rc.type = xstrdup("file");
  char dir[] = "/tmp/test_budget.XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  rc.path = xstrdup(dir);
  char err[256];
  struct backend *b = backend_open(&rc, err, sizeof(err));
  CHECK(b != NULL);
  if (!b)
    return;
  struct budget_stats st;
  budget_get_stats(&st);
  int64_t before = st.requests;
  int64_t p0 = time_mono_ns();
  for (int i = 0; i < 10; i++) { /* 10 requests: half a second of budget */
    char key[32];
    snprintf(key, sizeof(key), "k%d", i);
    struct payload p = {(const uint8_t *)"x", -1, 0, 1};
    backend_put(b, key, &p, on_put, NULL);
  }
  while (loop_work_pending() > 0 && loop_run_once())
    ;
  budget_get_stats(&st);
  CHECK_INT(st.requests - before, 10);
  /* The burst (2) less 10, plus what came back while they ran. */
  double back = (double)(time_mono_ns() - p0) * 20 / 1e9;
  CHECK(st.tokens <= 2 - 10 + back + 0.01);
  int64_t t0 = time_mono_ns();
  double owed = 1.0 - st.tokens; /* before the next turn */
  CHECK_INT(budget_admit(&ws[0].bw, 0), owed > 0 ? 0 : 1);
  CHECK_INT(budget_admit(&ws[1].bw, 1), 1); /* flushing: a slot only */
  while (!ws[0].grants && time_mono_ns() - t0 < 3 * NS_PER_SEC)
    run_ms(10);
  int64_t waited = (ws[0].last_ns - t0) / NS_PER_MS;
  printf("charged: %.1f tokens owed after 10 requests at 20/s; the next "
         "turn came after %lld ms\n",
         owed, (long long)waited);
  CHECK(owed > 2.0); /* the requests were charged */
  CHECK(ws[0].grants == 1 && waited >= (int64_t)(owed * 1000 / 20) - 60);
  for (int i = 0; i < NW; i++)
    budget_cancel(&ws[i].bw);
  backend_close(b);
  free(rc.type);
  free(rc.path);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  CHECK_INT(system(cmd), 0);
}

int main(void) {
  if (loop_init())
    return 1;
  RUN(slots);
  RUN(rate_and_fairness);
  RUN(least_recently_served);
  RUN(queue_classes);
  RUN(charged_requests);
  budget_shutdown();
  loop_close();
  T_DONE();
}
