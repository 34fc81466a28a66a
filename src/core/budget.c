/*
 * The process-wide request budget and bound on operations in flight
 * (budget.h): one token bucket, one queue ordered by last service.
 */
#include "core/budget.h"

#include <assert.h>
#include <stdlib.h>

#include "backends/backend.h"
#include "base/log.h"
#include "base/util.h"
#include "loop/loop.h"

/* Debt from requests that do not wait is kept up to this many seconds of
 * budget: past it they are not charged (and one warning says so). */
#define DEBT_SECONDS 60.0

static struct {
  int64_t rps;
  int64_t max_in_flight, in_flight;
  double tokens, burst;
  int64_t last_ns; /* monotonic time tokens was computed at */
  int64_t prepaid; /* tokens granted whose request has not been seen */
  struct budget_waiter *head, *tail;
  /* The last urgent waiter and the last never served one: the queue holds
   * the urgent ones first, then those never served, then the rest by last
   * service, and the first two classes are appended in O(1) (a start of
   * 100,000 replicas queues each for its first operation while those
   * already served queue at the tail: a walk from the tail was O(n) per
   * arrival, 81 % of the loop's time). */
  struct budget_waiter *last_urgent, *last_new;
  int64_t waiting;
  struct loop_timer *timer;
  int debt_warned;
  int64_t requests, grants, waits;
} g = {.max_in_flight = BUDGET_DEFAULT_IN_FLIGHT};

static void refill(int64_t now) {
  if (g.rps <= 0)
    return;
  if (g.last_ns && now > g.last_ns)
    g.tokens += (double)(now - g.last_ns) * (double)g.rps / 1e9;
  if (g.tokens > g.burst)
    g.tokens = g.burst;
  g.last_ns = now;
}

/* Every request of every backend (backend.h's hook): one token, already
 * taken when an admission paid for it. */
static void on_request(void) {
  g.requests++;
  if (g.rps <= 0)
    return;
  if (g.prepaid > 0) {
    g.prepaid--;
    return;
  }
  refill(time_mono_ns());
  g.tokens -= 1.0;
  double floor = -DEBT_SECONDS * (double)g.rps;
  if (g.tokens < floor) {
    g.tokens = floor;
    if (!g.debt_warned) {
      g.debt_warned = 1;
      log_warn(NULL, NULL,
               "max-requests-per-second %lld: requests that cannot wait "
               "(lease renewals, retention, validation) use the whole "
               "budget; uploads wait for them and lag grows",
               (long long)g.rps);
    }
  }
}

void budget_configure(int64_t rps, int64_t max_in_flight) {
  g.rps = rps > 0 ? rps : 0;
  g.max_in_flight =
      max_in_flight > 0 ? max_in_flight : BUDGET_DEFAULT_IN_FLIGHT;
  /* A tenth of a second's worth: any window of T seconds holds at most
   * rps * T + burst requests paid for by tokens. */
  g.burst = g.rps / 10 > 1 ? (double)(g.rps / 10) : 1.0;
  g.tokens = g.burst;
  g.prepaid = 0;
  g.last_ns = 0;
  g.debt_warned = 0;
  backend_set_request_hook(on_request);
}

void budget_waiter_init(struct budget_waiter *w, void (*cb)(void *arg),
                        void *arg) {
  *w = (struct budget_waiter){.cb = cb, .arg = arg};
}

/* 0: urgent, 1: never served, 2: served (budget_waiter.served_ns). */
static int waiter_class(const struct budget_waiter *w) {
  return w->urgent ? 0 : w->served_ns ? 2 : 1;
}

static void unlink_waiter(struct budget_waiter *w) {
  struct budget_waiter *pv = w->prev;
  if (g.last_urgent == w)
    g.last_urgent = pv; /* (the urgent ones come first: pv is one too) */
  if (g.last_new == w)
    g.last_new = pv && waiter_class(pv) == 1 ? pv : NULL;
  if (w->prev)
    w->prev->next = w->next;
  else
    g.head = w->next;
  if (w->next)
    w->next->prev = w->prev;
  else
    g.tail = w->prev;
  w->prev = w->next = NULL;
  w->queued = 0;
  g.waiting--;
}

/* Least recently served first; urgent (flushing) before all; ties keep
 * their arrival order.  Most arrivals were just served and go last, so
 * the walk from the tail is short. */
static void enqueue(struct budget_waiter *w) {
  int cls = waiter_class(w);
  struct budget_waiter *p;
  if (cls == 0) {
    p = g.last_urgent;
  } else if (cls == 1) {
    p = g.last_new ? g.last_new : g.last_urgent;
  } else {
    p = g.tail;
    while (p && waiter_class(p) == 2 && p->served_ns > w->served_ns)
      p = p->prev;
  }
  if (cls == 0)
    g.last_urgent = w;
  else if (cls == 1)
    g.last_new = w;
  w->prev = p;
  w->next = p ? p->next : g.head;
  if (w->next)
    w->next->prev = w;
  else
    g.tail = w;
  if (p)
    p->next = w;
  else
    g.head = w;
  w->queued = 1;
  w->since_ns = time_mono_ns();
  g.waiting++;
  g.waits++;
}

/* Can w have a slot and (unless urgent or no budget) a token now? */
static int can_grant(const struct budget_waiter *w, int64_t now) {
  if (g.in_flight >= g.max_in_flight)
    return 0;
  if (g.rps <= 0 || w->urgent)
    return 1;
  refill(now);
  return g.tokens >= 1.0;
}

static void grant(struct budget_waiter *w, int64_t now) {
  g.in_flight++;
  if (g.rps > 0) {
    g.tokens -= 1.0;
    g.prepaid++;
  }
  w->granted = 1;
  w->prev_served_ns = w->served_ns;
  w->served_ns = now;
  g.grants++;
}

static void on_timer(void *arg);

static void timer_in(uint64_t ms) {
  if (!g.timer)
    g.timer = loop_timer_new(on_timer, NULL);
  loop_timer_start(g.timer, ms);
}

/* The head goes when it can; with no slot free nothing goes (a slot given
 * back pokes), with no token the timer comes back when one is.  Runs from
 * the timer only, so a grant never calls a replica back from inside that
 * replica's (or another's) own call into this file. */
static void dispatch(void) {
  while (g.head) {
    int64_t now = time_mono_ns();
    struct budget_waiter *w = g.head;
    if (!can_grant(w, now)) {
      if (g.in_flight < g.max_in_flight && g.rps > 0)
        timer_in((uint64_t)((1.0 - g.tokens) * 1000.0 / (double)g.rps) + 1);
      return;
    }
    unlink_waiter(w);
    grant(w, now);
    w->cb(w->arg);
  }
}

static void on_timer(void *arg) {
  (void)arg;
  dispatch();
}

/* Something changed (a slot back, a new waiter): look again soon. */
static void poke(void) {
  if (g.head)
    timer_in(0);
}

int budget_admit(struct budget_waiter *w, int urgent) {
  if (w->granted)
    return 1;
  assert(!w->holding);
  if (w->queued)
    return 0;
  w->urgent = urgent;
  int64_t now = time_mono_ns();
  /* Nobody waiting ahead of it (or it goes before them all). */
  if ((!g.head || urgent) && can_grant(w, now)) {
    grant(w, now);
    return 1;
  }
  enqueue(w);
  poke();
  return 0;
}

void budget_use(struct budget_waiter *w) {
  assert(w->granted && !w->holding);
  if (!w->granted) /* (a path that skipped admission: count it anyway) */
    g.in_flight++;
  w->granted = 0;
  w->holding = 1;
}

void budget_done(struct budget_waiter *w) {
  if (!w->holding)
    return;
  w->holding = 0;
  assert(g.in_flight > 0);
  g.in_flight--;
  /* A token is paid for the first request of each operation in flight;
   * one that ended without a request (an empty segment) takes its token
   * away, so later requests are charged. */
  if (g.prepaid > g.in_flight)
    g.prepaid = g.in_flight;
  poke();
}

void budget_cancel(struct budget_waiter *w) {
  if (w->queued)
    unlink_waiter(w);
  if (w->granted) {
    /* Unused: the slot and the token come back. */
    w->granted = 0;
    w->served_ns = w->prev_served_ns;
    g.in_flight--;
    if (g.rps > 0 && g.prepaid > 0) {
      g.prepaid--;
      g.tokens += 1.0;
    }
  }
  if (w->holding) {
    w->holding = 0;
    g.in_flight--;
  }
  if (g.prepaid > g.in_flight)
    g.prepaid = g.in_flight;
  poke();
}

int budget_contended(void) {
  if (g.head)
    return 1;
  if (g.rps <= 0)
    return 0;
  refill(time_mono_ns());
  return g.tokens < 1.0;
}

void budget_get_stats(struct budget_stats *out) {
  int64_t now = time_mono_ns();
  refill(now);
  *out = (struct budget_stats){
      .rps = g.rps,
      .max_in_flight = g.max_in_flight,
      .in_flight = g.in_flight,
      .waiting = g.waiting,
      .oldest_wait_ns = 0,
      .requests = g.requests,
      .grants = g.grants,
      .waits = g.waits,
      .tokens = g.rps > 0 ? g.tokens : 0,
  };
  /* The queue is ordered by last service, not by arrival: look at all. */
  for (struct budget_waiter *w = g.head; w; w = w->next)
    if (now - w->since_ns > out->oldest_wait_ns)
      out->oldest_wait_ns = now - w->since_ns;
}

void budget_shutdown(void) {
  loop_timer_free(g.timer);
  g.timer = NULL;
}
