/*
 * Process-wide bounds on what the replicas send to their stores (issue 9),
 * so a host's request cost grows with time, not with its number of tenants:
 *
 *  - a request budget (`max-requests-per-second`, 0: none): a token bucket
 *    that every request of every backend draws from (backend.h's request
 *    hook counts them).  An upload round, a snapshot and a resume listing
 *    start only with a token in hand; a round uploads everything its
 *    database committed meanwhile, so waiting batches commits instead of
 *    skipping them.  Requests that cannot wait (lease renewals, retention,
 *    validation) are charged as they go and delay the uploads after them.
 *  - operations in flight (`max-uploads-in-flight`): at most this many
 *    replicas with a round, a snapshot or a listing in flight at once,
 *    which also bounds the segment builds on the thread pool.
 *
 * Replicas waiting for either are served least recently served first: a
 * replica just served waits behind every replica that was waiting, so one
 * tenant writing flat out takes at most its share.  A replica flushing at
 * shutdown does not wait for tokens (it is charged), only for a slot.
 *
 * Each replica embeds a budget_waiter.  Loop thread only.
 */
#ifndef SLUICE_BUDGET_H
#define SLUICE_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#define BUDGET_DEFAULT_IN_FLIGHT 64

struct budget_waiter {
  struct budget_waiter *prev,
      *next;              /* the queue, least recently served first */
  int64_t served_ns;      /* monotonic time of its last grant; 0: never */
  int64_t prev_served_ns; /* before it: back when a grant goes unused */
  int64_t since_ns;       /* monotonic time it started waiting */
  int queued;
  int urgent;            /* flushing: needs a slot, not a token */
  int granted;           /* a slot and a token, not used yet */
  int holding;           /* a slot in use */
  void (*cb)(void *arg); /* granted while queued: w->granted is set */
  void *arg;
};

/* rps 0: no request budget; max_in_flight 0: BUDGET_DEFAULT_IN_FLIGHT. */
void budget_configure(int64_t rps, int64_t max_in_flight);
void budget_waiter_init(struct budget_waiter *w, void (*cb)(void *arg),
                        void *arg);
/* 1: granted now (w->granted); 0: queued (or already queued: to become
 * urgent, budget_cancel first), cb once granted. */
int budget_admit(struct budget_waiter *w, int urgent);
/* The grant is used: its slot is held until budget_done. */
void budget_use(struct budget_waiter *w);
void budget_done(struct budget_waiter *w);
/* Gives back what w has (a grant unused, a slot, its place in the queue). */
void budget_cancel(struct budget_waiter *w);

/* Replicas are waiting for a turn, or no token is left: a long round
 * should yield (its further PUTs would be paid from the others' tokens). */
int budget_contended(void);

struct budget_stats {
  int64_t rps;           /* the budget, 0: none */
  int64_t max_in_flight; /* slots */
  int64_t in_flight;     /* slots in use */
  int64_t waiting;       /* replicas queued */
  int64_t oldest_wait_ns;
  int64_t requests; /* every request counted by the hook */
  int64_t grants;
  int64_t waits; /* admissions that had to queue */
  double tokens; /* < 0: owed */
};
void budget_get_stats(struct budget_stats *out);
/* Frees the timer (end of the daemon; the queue must be empty). */
void budget_shutdown(void);

#endif
