/*
 * Replica housekeeping: snapshot-interval (spec 3.6) and retention (3.7).
 *
 * Idle databases cost no requests: the replica remembers the snapshots it
 * knows of (those it wrote, those it listed when it resumed, and those of
 * other generations, listed once), so a retention check is a computation;
 * the store is listed and deleted from only when something has expired.
 * An unchanged database is not snapshotted again by snapshot-interval.
 */
#include "core/housekeeping.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/db.h"
#include "base/err.h"
#include "base/log.h"
#include "core/lease.h"
#include "core/replica.h"
#include "core/store.h"
#include "loop/loop.h"

struct hk_task {
  int kind; /* 0 = delete a generation, 1 = delete below an index */
  char gen[GEN_LEN + 1];
  uint32_t below;     /* snapshots below this index go */
  uint32_t seg_below; /* segments below this index go (<= below) */
  struct hk_task *next;
};

struct housekeeping {
  struct replica *r;
  /* Light timers (loop.h): one process-wide timer serves every
   * replica's, so an idle database keeps no timer of its own. */
  struct loop_ltimer retention_timer;
  struct loop_ltimer snapshot_timer;
  struct known_snapshot *known;
  size_t n_known;
  int loaded; /* other generations listed */
  /* A sweep or a pass is in flight (its callbacks are due), or a pass
   * waits for the lease (lease_wait): hk_busy.  hk_stop ends either at
   * its next step; replica_side_done says it has. */
  int running;
  int stopping;         /* hk_stop: no next step (hk_start clears it) */
  struct hk_pass *pass; /* the retention pass in flight, or NULL */
  /* position at the last snapshot-interval snapshot */
  struct pos snap_pos;
  size_t swept; /* leftover temporary files removed by the last sweep */
  /* Segments still to delete below owed_below in owed_gen: a pass that
   * had to stop at the replica's position (evaluate) leaves the rest to
   * the next one, even when no older snapshot is left to remind it. */
  char owed_gen[GEN_LEN + 1];
  uint32_t owed_below;
  int lease_wait; /* deletions found, waiting for lease_use (hk_lease_ready) */
};

/* What a retention pass works on, from hk_retention_check to done_run:
 * allocated for the pass only (an idle replica, 100,000 in a process,
 * keeps none). */
struct hk_pass {
  struct hk_task *tasks;
  struct gen_list gens;
  size_t gen_i;
  struct snapshot_list snaps;
  struct obj_list objs;
  struct segment_list segs;
  char **keys;
  size_t n_keys;
};

/* A leftover *.tmp must be this old (and held by no upload) to go. */
#define HK_TMP_MIN_AGE_NS (30 * NS_PER_SEC)

static void run_next(struct housekeeping *h);

void hk_add_known(struct housekeeping *h, const char *gen, uint32_t index,
                  int64_t created_ns) {
  for (size_t i = 0; i < h->n_known; i++) {
    struct known_snapshot *k = &h->known[i];
    if (!strcmp(k->gen, gen) && k->index == index) {
      k->created_ns = created_ns;
      return;
    }
  }
  h->known = xrealloc(h->known, (h->n_known + 1) * sizeof(*h->known));
  struct known_snapshot *k = &h->known[h->n_known++];
  memcpy(k->gen, gen, GEN_LEN + 1);
  k->index = index;
  k->created_ns = created_ns;
}

int hk_has_snapshot(const struct housekeeping *h, const char *gen,
                    uint32_t index) {
  for (size_t i = 0; i < h->n_known; i++)
    if (h->known[i].index == index && !strcmp(h->known[i].gen, gen))
      return 1;
  return 0;
}

static void forget(struct housekeeping *h, const char *gen, uint32_t below,
                   int whole_gen) {
  size_t j = 0;
  for (size_t i = 0; i < h->n_known; i++) {
    struct known_snapshot *k = &h->known[i];
    if (!strcmp(k->gen, gen) && (whole_gen || k->index < below))
      continue;
    h->known[j++] = *k;
  }
  h->n_known = j;
}

static void free_keys(struct housekeeping *h) {
  for (size_t i = 0; i < h->pass->n_keys; i++)
    free(h->pass->keys[i]);
  free(h->pass->keys);
  h->pass->keys = NULL;
  h->pass->n_keys = 0;
}

static void add_key(struct housekeeping *h, char *key) {
  h->pass->keys =
      xrealloc(h->pass->keys, (h->pass->n_keys + 1) * sizeof(char *));
  h->pass->keys[h->pass->n_keys++] = key;
}

static void pass_free(struct housekeeping *h) {
  struct hk_pass *p = h->pass;
  if (!p)
    return;
  while (p->tasks) {
    struct hk_task *t = p->tasks;
    p->tasks = t->next;
    free(t);
  }
  free_keys(h);
  gen_list_destroy(&p->gens);
  snapshot_list_destroy(&p->snaps);
  obj_list_destroy(&p->objs);
  segment_list_destroy(&p->segs);
  free(p);
  h->pass = NULL;
}

static void done_run(struct housekeeping *h) {
  assert(h->running && !h->lease_wait && h->pass);
  h->running = 0;
  pass_free(h);
  replica_side_done(h->r); /* a stop may be waiting for this pass */
}

static void fail_run(struct housekeeping *h, int status, const char *err) {
  if (status == ERR_CANCELED) /* shutting down */
    log_debug(h->r->db->name, h->r->name, "retention: %s", err);
  else
    log_error(h->r->db->name, h->r->name, "retention: %s", err);
  done_run(h); /* (its tasks go with the pass) */
}

/* A step of a pass came back: 1 if the pass ended there (a failure, or
 * hk_stop meanwhile). */
static int ended(struct housekeeping *h, int status, const char *err) {
  assert(h->running);
  if (status) {
    fail_run(h, status, err);
    return 1;
  }
  if (h->stopping) {
    fail_run(h, ERR_CANCELED, "pass stopped");
    return 1;
  }
  return 0;
}

/* --- deleting --- */

static void on_deleted(void *arg, int status, const char *err) {
  struct housekeeping *h = arg;
  if (ended(h, status, err))
    return;
  struct hk_task *t = h->pass->tasks;
  h->pass->tasks = t->next;
  if (t->kind == 0 || h->pass->n_keys > 0)
    log_info(h->r->db->name, h->r->name,
             t->kind == 0
                 ? "retention: generation %s deleted (%zu objects)"
                 : "retention: %s: %zu objects below index %08x deleted",
             t->gen, h->pass->n_keys, t->below);
  forget(h, t->gen, t->below, t->kind == 0);
  if (!strcmp(h->owed_gen, t->gen) &&
      (t->kind == 0 || t->seg_below >= h->owed_below))
    h->owed_gen[0] = '\0';
  free(t);
  free_keys(h);
  run_next(h);
}

static void delete_keys(struct housekeeping *h) {
  if (!h->pass->n_keys) {
    on_deleted(h, 0, NULL);
    return;
  }
  backend_del(h->r->b, h->pass->keys, h->pass->n_keys, on_deleted, h);
}

static void on_gen_listed(void *arg, int status, const char *err) {
  struct housekeeping *h = arg;
  if (ended(h, status, err))
    return;
  for (size_t i = 0; i < h->pass->objs.n; i++)
    add_key(h, xstrdup(h->pass->objs.objs[i].key));
  obj_list_destroy(&h->pass->objs);
  delete_keys(h);
}

static void on_below_listed(void *arg, int status, const char *err) {
  struct housekeeping *h = arg;
  if (ended(h, status, err))
    return;
  struct hk_task *t = h->pass->tasks;
  for (size_t i = 0; i < h->pass->segs.n; i++)
    if (h->pass->segs.v[i].index < t->seg_below)
      add_key(h, key_wal_segment(t->gen, h->pass->segs.v[i].index,
                                 h->pass->segs.v[i].offset));
  for (size_t i = 0; i < h->n_known; i++)
    if (!strcmp(h->known[i].gen, t->gen) && h->known[i].index < t->below)
      add_key(h, key_snapshot(t->gen, h->known[i].index));
  segment_list_destroy(&h->pass->segs);
  delete_keys(h);
}

static void run_next(struct housekeeping *h) {
  struct hk_task *t = h->pass->tasks;
  if (!t) {
    done_run(h);
    return;
  }
  /* Deleting is writing: an idle lease renews first (a fenced owner
   * deletes nothing). */
  if (!lease_use(h->r->lease)) {
    h->lease_wait = 1;
    return;
  }
  if (t->kind == 0) {
    char *prefix = key_generation_dir(t->gen);
    backend_list(h->r->b, prefix, 0, &h->pass->objs, on_gen_listed, h);
    free(prefix);
  } else {
    store_segments(h->r->b, t->gen, &h->pass->segs, on_below_listed, h);
  }
}

static void push_task(struct housekeeping *h, int kind, const char *gen,
                      uint32_t below, uint32_t seg_below) {
  struct hk_task *t = xcalloc(1, sizeof(*t));
  t->kind = kind;
  memcpy(t->gen, gen, GEN_LEN + 1);
  t->below = below;
  t->seg_below = seg_below;
  struct hk_task **pp = &h->pass->tasks;
  while (*pp)
    pp = &(*pp)->next;
  *pp = t;
}

/* --- the retention decision (spec 3.7) --- */

static void evaluate(struct housekeeping *h) {
  struct replica *r = h->r;
  int64_t cutoff = time_now_ns() - r->cfg->retention;
  int any = 0, covers = 0;
  for (size_t i = 0; i < h->n_known; i++) {
    any |= h->known[i].created_ns >= cutoff;
    covers |= h->known[i].created_ns <= cutoff &&
              !strcmp(h->known[i].gen, r->db->gen);
  }
  /* None within the window: a fresh one, so that a later pass can delete
   * what is below it (not taken if the current WAL index has one: the
   * newest snapshot is then the one everything in the window restores
   * from, and what is below it goes now). */
  if (!any)
    replica_snapshot_now(r);
  /* In every generation, everything below the newest snapshot at or before
   * the cutoff goes (a -timestamp just inside the window restores from
   * it), or below the oldest retained snapshot when there is none that
   * old.  A generation other than the current one with no retained
   * snapshot goes whole, but only once the current one has a snapshot at
   * or before the cutoff: restore then chooses the current generation for
   * every time in the window (spec 4.1: a generation started by then, the
   * latest end).  Until then a time between the cutoff and the current
   * generation's start restores from an older generation. */
  char(*gens)[GEN_LEN + 1] = xcalloc(h->n_known + 1, GEN_LEN + 1);
  size_t ng = 0;
  for (size_t i = 0; i < h->n_known; i++) {
    size_t g;
    for (g = 0; g < ng && strcmp(gens[g], h->known[i].gen); g++)
      ;
    if (g == ng)
      memcpy(gens[ng++], h->known[i].gen, GEN_LEN + 1);
  }
  for (size_t g = 0; g < ng; g++) {
    int kept = 0;
    uint32_t min = UINT32_MAX;
    const struct known_snapshot *anchor = NULL;
    for (size_t i = 0; i < h->n_known; i++) {
      const struct known_snapshot *k = &h->known[i];
      if (strcmp(k->gen, gens[g]))
        continue;
      if (k->created_ns < cutoff) {
        /* (the one restore picks: on a tie, the higher index) */
        if (!anchor || k->created_ns > anchor->created_ns ||
            (k->created_ns == anchor->created_ns && k->index > anchor->index))
          anchor = k;
        continue;
      }
      kept = 1;
      min = MIN(min, k->index);
    }
    int current = !strcmp(gens[g], r->db->gen);
    if (!kept && !current && covers) {
      push_task(h, 0, gens[g], 0, 0);
      continue;
    }
    if (anchor) {
      min = MIN(min, anchor->index);
      kept = 1;
    }
    int older = 0;
    for (size_t i = 0; i < h->n_known; i++)
      older |= !strcmp(h->known[i].gen, gens[g]) && h->known[i].index < min;
    /* A replica still uploading below the oldest kept snapshot would add a
     * segment after the listing, left below it for ever (Litestream 0.3.13
     * restore fails on such a stray segment: "missing initial wal
     * segment").  Delete segments only below its position now and owe the
     * rest to a later pass.  Positions only advance, so no upload below
     * it is in flight. */
    int owed = !strcmp(h->owed_gen, gens[g]);
    uint32_t seg_below = min;
    if (!pos_is_zero(&r->pos) && !strcmp(r->pos.gen, gens[g]))
      seg_below = MIN(seg_below, r->pos.index);
    if (kept && (older || owed)) {
      if (seg_below < min) {
        memcpy(h->owed_gen, gens[g], GEN_LEN + 1);
        h->owed_below = min;
      }
      push_task(h, 1, gens[g], min, seg_below);
    }
  }
  free(gens);
  run_next(h);
}

/* Lists other generations' snapshots once, so retention knows them. */
static void list_next_gen(struct housekeeping *h);

static void on_gen_snaps(void *arg, int status, const char *err) {
  struct housekeeping *h = arg;
  if (ended(h, status, err))
    return;
  for (size_t i = 0; i < h->pass->snaps.n; i++)
    hk_add_known(h, h->pass->snaps.v[i].gen, h->pass->snaps.v[i].index,
                 h->pass->snaps.v[i].created_ns);
  snapshot_list_destroy(&h->pass->snaps);
  h->pass->gen_i++;
  list_next_gen(h);
}

static void list_next_gen(struct housekeeping *h) {
  if (h->pass->gen_i >= h->pass->gens.n) {
    gen_list_destroy(&h->pass->gens);
    h->loaded = 1;
    evaluate(h);
    return;
  }
  store_snapshots(h->r->b, h->pass->gens.gens[h->pass->gen_i], &h->pass->snaps,
                  on_gen_snaps, h);
}

static void on_gens(void *arg, int status, const char *err) {
  struct housekeeping *h = arg;
  if (ended(h, status, err))
    return;
  h->pass->gen_i = 0;
  list_next_gen(h);
}

static void log_swept(struct housekeeping *h, int status, const char *err) {
  if (status && status != ERR_CANCELED)
    log_warn(h->r->db->name, h->r->name,
             "removing leftover temporary files: %s",
             err ? err : err_str(status));
  else if (h->swept)
    log_info(h->r->db->name, h->r->name,
             "removed %zu temporary file%s left by interrupted uploads",
             h->swept, h->swept == 1 ? "" : "s");
}

/* At start: leftovers of a daemon that was killed mid-upload. */
static void on_start_sweep(void *arg, int status, const char *err) {
  struct housekeeping *h = arg;
  assert(h->running);
  log_swept(h, status, err);
  h->running = 0;
  replica_side_done(h->r);
}

static void on_retention_sweep(void *arg, int status, const char *err) {
  struct housekeeping *h = arg;
  struct replica *r = h->r;
  log_swept(h, status, err);
  if (ended(h, 0, NULL))
    return;
  if (!h->loaded) {
    store_generations(r->b, &h->pass->gens, on_gens, h);
    return;
  }
  evaluate(h);
}

void hk_lease_ready(struct housekeeping *h) {
  if (!h->lease_wait)
    return;
  h->lease_wait = 0;
  run_next(h);
}

void hk_retention_check(struct housekeeping *h) {
  struct replica *r = h->r;
  if (h->lease_wait) { /* asks again (a renewal may end without a change) */
    hk_lease_ready(h);
    return;
  }
  if (h->running || h->stopping || r->cfg->retention <= 0 || !r->db->gen[0])
    return;
  h->running = 1;
  assert(!h->pass);
  h->pass = xcalloc(1, sizeof(*h->pass));
  backend_sweep(r->b, HK_TMP_MIN_AGE_NS, &h->swept, on_retention_sweep, h);
}

static void on_retention_timer(void *arg) {
  struct housekeeping *h = arg;
  struct replica *r = h->r;
  int64_t period = MIN(r->cfg->retention_check_interval, r->cfg->retention);
  if (period <= 0)
    period = r->cfg->retention;
  loop_ltimer_start(&h->retention_timer, (uint64_t)(period / NS_PER_MS));
  hk_retention_check(h);
}

/* --- snapshot interval (spec 3.6) --- */

static void on_snapshot_timer(void *arg) {
  struct housekeeping *h = arg;
  struct replica *r = h->r;
  loop_ltimer_start(&h->snapshot_timer,
                    (uint64_t)(r->cfg->snapshot_interval / NS_PER_MS));
  struct db *db = r->db;
  struct pos now = {"", db->index, db->shadow_size};
  memcpy(now.gen, db->gen, sizeof(now.gen));
  if (!db->gen[0])
    return;
  if (!strcmp(h->snap_pos.gen, now.gen) && !pos_cmp(&h->snap_pos, &now)) {
    log_debug(db->name, r->name, "snapshot interval: unchanged, skipped");
    return;
  }
  h->snap_pos = now;
  replica_snapshot_now(r);
}

struct housekeeping *hk_new(struct replica *r) {
  struct housekeeping *h = xcalloc(1, sizeof(*h));
  h->r = r;
  loop_ltimer_init(&h->retention_timer, on_retention_timer, h);
  loop_ltimer_init(&h->snapshot_timer, on_snapshot_timer, h);
  return h;
}

void hk_start(struct housekeeping *h) {
  struct replica *r = h->r;
  h->stopping = 0;
  assert(!loop_ltimer_active(&h->retention_timer) &&
         !loop_ltimer_active(&h->snapshot_timer));
  if (!h->running) {
    h->running = 1;
    backend_sweep(r->b, HK_TMP_MIN_AGE_NS, &h->swept, on_start_sweep, h);
  }
  if (r->cfg->retention > 0) {
    int64_t period =
        r->cfg->retention_check_interval > 0
            ? MIN(r->cfg->retention_check_interval, r->cfg->retention)
            : r->cfg->retention;
    loop_ltimer_start(&h->retention_timer, (uint64_t)(period / NS_PER_MS));
  }
  if (r->cfg->snapshot_interval > 0) {
    /* Continue the previous schedule across restarts (spec 3.6): the
     * first run comes interval - age of the newest known snapshot. */
    int64_t newest = 0;
    for (size_t i = 0; i < h->n_known; i++)
      newest = MAX(newest, h->known[i].created_ns);
    int64_t wait = r->cfg->snapshot_interval;
    if (newest) {
      int64_t age = time_now_ns() - newest;
      wait = age >= wait ? 0 : wait - age;
    }
    loop_ltimer_start(&h->snapshot_timer, (uint64_t)(wait / NS_PER_MS));
  }
}

void hk_free(struct housekeeping *h) {
  if (!h)
    return;
  /* A callback still due would land on freed memory: the replica's stop
   * waits for the pass (replica_quiesce). */
  assert(!h->running);
  loop_ltimer_stop(&h->retention_timer);
  loop_ltimer_stop(&h->snapshot_timer);
  pass_free(h);
  free(h->known);
  free(h);
}

int hk_busy(const struct housekeeping *h) {
  return h && h->running;
}

void hk_stop(struct housekeeping *h) {
  if (!h)
    return;
  h->stopping = 1; /* a pass in flight ends at its next step (ended) */
  if (h->lease_wait) {
    h->lease_wait = 0;
    fail_run(h, ERR_CANCELED, "pass dropped: the lease is not ours now");
  }
  loop_ltimer_stop(&h->retention_timer);
  loop_ltimer_stop(&h->snapshot_timer);
}
