/*
 * Restore, part 2 of 3: what to restore.  Which replica and generation
 * (spec 4.1), then within it which snapshot and which WAL segments
 * (spec 4.2, 4.3).  Pure decisions over listings; restore.c fetches and
 * applies what the plan names.
 */
#include "core/restore_plan.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/util.h"

/* --- the snapshot and the segments after it (spec 4.2, 4.3) --- */

static int plan_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int plan_fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return code;
}

static int choose_snapshot(const struct snapshot_list *snaps,
                           const struct restore_opts *o, const char *gen,
                           struct snapshot_info *out, char *err,
                           size_t errlen) {
  const struct snapshot_info *best = NULL;
  for (size_t i = 0; i < snaps->n; i++) {
    const struct snapshot_info *s = &snaps->v[i];
    if (o->has_index) {
      if (s->index <= o->index)
        best = s; /* listing is ascending: the highest index wins */
      continue;
    }
    if (o->has_timestamp && s->created_ns > o->timestamp_ns)
      continue;
    if (!best || s->created_ns >= best->created_ns)
      best = s;
  }
  if (best) {
    *out = *best;
    return 0;
  }
  char when[32];
  if (o->has_index)
    return plan_fail(err, errlen, ERR_NO_SNAPSHOT,
                     "generations/%s/snapshots/: no snapshot at or below "
                     "index %08" PRIx32,
                     gen, o->index);
  if (o->has_timestamp) {
    time_format_rfc3339(o->timestamp_ns, when);
    return plan_fail(err, errlen, ERR_NO_SNAPSHOT,
                     "generations/%s/snapshots/: no snapshot created at or "
                     "before %s",
                     gen, when);
  }
  return plan_fail(err, errlen, ERR_NO_SNAPSHOT,
                   "generations/%s/snapshots/: no snapshots available", gen);
}

/* The segments to apply: from the snapshot's index up to the target.  The
 * indexes must follow each other without a hole; the first missing one is
 * named (checked before anything is allocated per index, so a listing
 * that jumps far ahead costs nothing). */
static int plan_segments(const struct segment_list *segs,
                         const struct restore_opts *o, const char *gen,
                         struct restore_plan *p, char *err, size_t errlen) {
  size_t first = segs->n, last = segs->n;
  for (size_t i = 0; i < segs->n; i++) {
    const struct segment_info *s = &segs->v[i];
    if (s->index < p->snap.index)
      continue; /* older than the snapshot: not needed */
    if ((o->has_timestamp && s->created_ns > o->timestamp_ns) ||
        (o->has_index && s->index > o->index) ||
        (o->has_index && o->has_offset && s->index == o->index &&
         s->offset >= o->offset))
      break;
    if (first == segs->n)
      first = i;
    last = i + 1;
  }
  if (first == segs->n)
    return 0; /* snapshot only */
  uint32_t want = p->snap.index;
  size_t n = 0;
  for (size_t i = first; i < last; i++) {
    uint32_t idx = segs->v[i].index;
    if (i > first && idx == segs->v[i - 1].index)
      continue;
    if (idx != want) {
      char *key = key_wal_segment(gen, want, 0);
      int rc = plan_fail(err, errlen, ERR_SEGMENT_GAP,
                         "%s: missing: WAL index %08" PRIx32 " has no segments",
                         key, want);
      free(key);
      return rc;
    }
    want++;
    n++;
  }
  p->idx = xcalloc(n, sizeof(*p->idx));
  p->n_idx = n;
  for (size_t i = first, k = 0; i < last; i++) {
    if (i > first && segs->v[i].index != segs->v[i - 1].index)
      k++;
    struct plan_index *w = &p->idx[k];
    if (!w->n) {
      w->index = segs->v[i].index;
      w->segs = &segs->v[i];
    }
    w->n++;
  }
  return 0;
}

int restore_plan_make(const struct snapshot_list *snaps,
                      const struct segment_list *segs,
                      const struct restore_opts *o, const char *gen,
                      struct restore_plan *out, char *err, size_t errlen) {
  struct restore_plan p;
  memset(&p, 0, sizeof(p));
  int rc = choose_snapshot(snaps, o, gen, &p.snap, err, errlen);
  if (!rc)
    rc = plan_segments(segs, o, gen, &p, err, errlen);
  if (rc) {
    restore_plan_destroy(&p);
    return rc;
  }
  *out = p;
  return 0;
}

void restore_plan_destroy(struct restore_plan *p) {
  free(p->idx);
  memset(p, 0, sizeof(*p));
}

/* ------------------------------------------------------------------ */
/* Choosing the replica and generation (spec 4.1).                     */

struct choose {
  struct backend *const *bs;
  size_t n, r, g;
  int listed;
  struct restore_opts o;
  struct gen_list gens;
  int64_t start, end;
  int found;
  struct restore_target best;
  struct restore_target *out;
  restore_cb cb;
  void *arg;
};

static void choose_next(struct choose *c);

static void choose_done(struct choose *c, int status, const char *err) {
  if (!status && !c->found) {
    status = ERR_NO_BACKUPS;
    err = "no matching backups found";
  }
  if (!status)
    *c->out = c->best;
  restore_cb cb = c->cb;
  void *arg = c->arg;
  char *msg = err ? xstrdup(err) : NULL;
  gen_list_destroy(&c->gens);
  free((char *)c->o.generation);
  free(c);
  cb(arg, status, msg);
  free(msg);
}

static void on_bounds(void *arg, int status, const char *err) {
  struct choose *c = arg;
  if (status && status != ERR_NOT_FOUND) {
    char *msg = xasprintf("replica %s: %s", c->bs[c->r]->name,
                          err ? err : err_str(status));
    choose_done(c, status, msg);
    free(msg);
    return;
  }
  /* An empty generation, or one that started after the timestamp, does
   * not match; a timestamp after its end still does (latest state).  S3
   * and Azure list times to the second: a generation started and ended in
   * the second of another's last upload ties with it, and the greater
   * name is the later one for the generations sluice names (gen_new);
   * Litestream keeps the earlier name, an arbitrary pick for its random
   * names.  The same generation on two replicas keeps the earlier. */
  const char *gen = c->gens.gens[c->g];
  if (!status && !(c->o.has_timestamp && c->o.timestamp_ns < c->start) &&
      (!c->found || c->end > c->best.end_ns ||
       (c->end == c->best.end_ns && strcmp(gen, c->best.gen) > 0))) {
    c->found = 1;
    c->best.replica = c->r;
    memcpy(c->best.gen, gen, GEN_LEN + 1);
    c->best.start_ns = c->start;
    c->best.end_ns = c->end;
  }
  c->g++;
  choose_next(c);
}

static void on_gens(void *arg, int status, const char *err) {
  struct choose *c = arg;
  if (status) {
    char *msg = xasprintf("replica %s: %s", c->bs[c->r]->name,
                          err ? err : err_str(status));
    choose_done(c, status, msg);
    free(msg);
    return;
  }
  c->g = 0;
  choose_next(c);
}

static void choose_next(struct choose *c) {
  while (c->r < c->n) {
    if (!c->listed) {
      c->listed = 1;
      store_generations(c->bs[c->r], &c->gens, on_gens, c);
      return;
    }
    for (; c->g < c->gens.n; c->g++) {
      if (c->o.generation && strcmp(c->o.generation, c->gens.gens[c->g]))
        continue;
      store_generation_bounds(c->bs[c->r], c->gens.gens[c->g], &c->start,
                              &c->end, on_bounds, c);
      return;
    }
    gen_list_destroy(&c->gens);
    c->r++;
    c->g = 0;
    c->listed = 0;
  }
  choose_done(c, 0, NULL);
}

void restore_choose(struct backend *const *backends, size_t n,
                    const struct restore_opts *o, struct restore_target *out,
                    restore_cb cb, void *arg) {
  struct choose *c = xcalloc(1, sizeof(*c));
  c->bs = backends;
  c->n = n;
  c->o = *o;
  c->o.generation = o->generation ? xstrdup(o->generation) : NULL;
  c->out = out;
  c->cb = cb;
  c->arg = arg;
  choose_next(c);
}

/* ------------------------------------------------------------------ */

int restore_choose_sync(struct backend *const *backends, size_t n,
                        const struct restore_opts *o,
                        struct restore_target *out, char *err, size_t errlen) {
  struct sync_wait w;
  sync_wait_init(&w, err, errlen);
  restore_choose(backends, n, o, out, sync_wait_cb, &w);
  return sync_wait_run(&w);
}
