/*
 * Listings of the replica layout (spec 1.1) on top of a backend.
 *
 * Generations come from listing "generations/" with a delimiter; snapshots
 * and segments from listing one generation's snapshots/ or wal/ directory
 * with a delimiter (so nested objects, such as the 0.4 layout's
 * wal/<index>/<offset> files, are never mistaken for v0.3 names).  Foreign
 * objects and invalid generation names are skipped silently, as Litestream
 * does.
 */
#include "core/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/util.h"
#include "loop/loop.h"

void gen_list_destroy(struct gen_list *l) {
  free(l->gens);
  memset(l, 0, sizeof(*l));
}

void snapshot_list_destroy(struct snapshot_list *l) {
  free(l->v);
  memset(l, 0, sizeof(*l));
}

void segment_list_destroy(struct segment_list *l) {
  free(l->v);
  memset(l, 0, sizeof(*l));
}

static int cmp_gen(const void *a, const void *b) {
  return strcmp((const char *)a, (const char *)b);
}

static int cmp_snapshot(const void *a, const void *b) {
  const struct snapshot_info *x = a, *y = b;
  int c = strcmp(x->gen, y->gen);
  if (c)
    return c;
  return x->index < y->index ? -1 : x->index > y->index;
}

static int cmp_segment(const void *a, const void *b) {
  const struct segment_info *x = a, *y = b;
  int c = strcmp(x->gen, y->gen);
  if (c)
    return c;
  if (x->index != y->index)
    return x->index < y->index ? -1 : 1;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

enum list_kind { LK_GENS, LK_SNAPSHOTS, LK_SEGMENTS };

struct list_req {
  enum list_kind kind;
  char gen[GEN_LEN + 1];
  struct obj_list objs;
  void *out;
  store_cb cb;
  void *arg;
};

static void fill_gens(struct list_req *r) {
  struct gen_list *out = r->out;
  struct obj_list *l = &r->objs;
  for (size_t i = 0; i < l->n_prefixes; i++) {
    char gen[GEN_LEN + 1];
    /* Only "generations/<gen>/", not deeper prefixes. */
    if (strlen(l->prefixes[i]) != strlen("generations/") + GEN_LEN + 1 ||
        parse_generation_key(l->prefixes[i], gen))
      continue;
    out->gens = xrealloc(out->gens, (out->n + 1) * sizeof(*out->gens));
    memcpy(out->gens[out->n++], gen, GEN_LEN + 1);
  }
  if (out->n > 1)
    qsort(out->gens, out->n, sizeof(*out->gens), cmp_gen);
}

static void fill_snapshots(struct list_req *r) {
  struct snapshot_list *out = r->out;
  struct obj_list *l = &r->objs;
  size_t start = out->n;
  out->v = xrealloc(out->v, (out->n + l->n + 1) * sizeof(*out->v));
  for (size_t i = 0; i < l->n; i++) {
    uint32_t index;
    if (parse_snapshot_name(path_base(l->objs[i].key), &index))
      continue;
    struct snapshot_info *s = &out->v[out->n++];
    memcpy(s->gen, r->gen, GEN_LEN + 1);
    s->index = index;
    s->size = l->objs[i].size;
    s->created_ns = l->objs[i].mtime_ns;
  }
  qsort(out->v + start, out->n - start, sizeof(*out->v), cmp_snapshot);
}

static void fill_segments(struct list_req *r) {
  struct segment_list *out = r->out;
  struct obj_list *l = &r->objs;
  size_t start = out->n;
  out->v = xrealloc(out->v, (out->n + l->n + 1) * sizeof(*out->v));
  for (size_t i = 0; i < l->n; i++) {
    uint32_t index;
    int64_t offset;
    if (parse_wal_segment_name(path_base(l->objs[i].key), &index, &offset))
      continue;
    struct segment_info *s = &out->v[out->n++];
    memcpy(s->gen, r->gen, GEN_LEN + 1);
    s->index = index;
    s->offset = offset;
    s->size = l->objs[i].size;
    s->created_ns = l->objs[i].mtime_ns;
  }
  qsort(out->v + start, out->n - start, sizeof(*out->v), cmp_segment);
}

static void on_listed(void *arg, int status, const char *err) {
  struct list_req *r = arg;
  if (!status) {
    switch (r->kind) {
    case LK_GENS:
      fill_gens(r);
      break;
    case LK_SNAPSHOTS:
      fill_snapshots(r);
      break;
    case LK_SEGMENTS:
      fill_segments(r);
      break;
    }
  }
  store_cb cb = r->cb;
  void *cbarg = r->arg;
  obj_list_destroy(&r->objs);
  free(r);
  cb(cbarg, status, err);
}

static void list_start(struct backend *b, enum list_kind kind, const char *gen,
                       void *out, store_cb cb, void *arg) {
  struct list_req *r = xcalloc(1, sizeof(*r));
  r->kind = kind;
  r->out = out;
  r->cb = cb;
  r->arg = arg;
  char *prefix;
  if (kind == LK_GENS) {
    prefix = key_generations_dir();
  } else {
    snprintf(r->gen, sizeof(r->gen), "%s", gen);
    prefix = kind == LK_SNAPSHOTS ? key_snapshots_dir(gen) : key_wal_dir(gen);
  }
  backend_list(b, prefix, '/', &r->objs, on_listed, r);
  free(prefix);
}

void store_generations(struct backend *b, struct gen_list *out, store_cb cb,
                       void *arg) {
  list_start(b, LK_GENS, NULL, out, cb, arg);
}

void store_snapshots(struct backend *b, const char *gen,
                     struct snapshot_list *out, store_cb cb, void *arg) {
  list_start(b, LK_SNAPSHOTS, gen, out, cb, arg);
}

void store_segments(struct backend *b, const char *gen,
                    struct segment_list *out, store_cb cb, void *arg) {
  list_start(b, LK_SEGMENTS, gen, out, cb, arg);
}

/* --- generation time bounds --- */

struct bounds_req {
  struct backend *b;
  char gen[GEN_LEN + 1];
  struct snapshot_list snaps;
  struct segment_list segs;
  int64_t *start_ns, *end_ns;
  store_cb cb;
  void *arg;
};

static void bounds_finish(struct bounds_req *r, int status, const char *err) {
  store_cb cb = r->cb;
  void *arg = r->arg;
  snapshot_list_destroy(&r->snaps);
  segment_list_destroy(&r->segs);
  free(r);
  cb(arg, status, err);
}

static void on_bounds_segments(void *arg, int status, const char *err) {
  struct bounds_req *r = arg;
  if (status) {
    bounds_finish(r, status, err);
    return;
  }
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  for (size_t i = 0; i < r->snaps.n; i++) {
    lo = MIN(lo, r->snaps.v[i].created_ns);
    hi = MAX(hi, r->snaps.v[i].created_ns);
  }
  for (size_t i = 0; i < r->segs.n; i++) {
    lo = MIN(lo, r->segs.v[i].created_ns);
    hi = MAX(hi, r->segs.v[i].created_ns);
  }
  if (!r->snaps.n && !r->segs.n) {
    char msg[128];
    snprintf(msg, sizeof(msg), "generations/%s/: generation is empty", r->gen);
    bounds_finish(r, ERR_NOT_FOUND, msg);
    return;
  }
  *r->start_ns = lo;
  *r->end_ns = hi;
  bounds_finish(r, 0, NULL);
}

static void on_bounds_snapshots(void *arg, int status, const char *err) {
  struct bounds_req *r = arg;
  if (status) {
    bounds_finish(r, status, err);
    return;
  }
  store_segments(r->b, r->gen, &r->segs, on_bounds_segments, r);
}

void store_generation_bounds(struct backend *b, const char *gen,
                             int64_t *start_ns, int64_t *end_ns, store_cb cb,
                             void *arg) {
  struct bounds_req *r = xcalloc(1, sizeof(*r));
  r->b = b;
  snprintf(r->gen, sizeof(r->gen), "%s", gen);
  r->start_ns = start_ns;
  r->end_ns = end_ns;
  r->cb = cb;
  r->arg = arg;
  store_snapshots(b, gen, &r->snaps, on_bounds_snapshots, r);
}

/* --- synchronous versions --- */

int store_generations_sync(struct backend *b, struct gen_list *out, char *err,
                           size_t errlen) {
  struct sync_wait w;
  sync_wait_init(&w, err, errlen);
  store_generations(b, out, sync_wait_cb, &w);
  return sync_wait_run(&w);
}

int store_snapshots_sync(struct backend *b, const char *gen,
                         struct snapshot_list *out, char *err, size_t errlen) {
  struct sync_wait w;
  sync_wait_init(&w, err, errlen);
  store_snapshots(b, gen, out, sync_wait_cb, &w);
  return sync_wait_run(&w);
}

int store_segments_sync(struct backend *b, const char *gen,
                        struct segment_list *out, char *err, size_t errlen) {
  struct sync_wait w;
  sync_wait_init(&w, err, errlen);
  store_segments(b, gen, out, sync_wait_cb, &w);
  return sync_wait_run(&w);
}

int store_generation_bounds_sync(struct backend *b, const char *gen,
                                 int64_t *start_ns, int64_t *end_ns, char *err,
                                 size_t errlen) {
  struct sync_wait w;
  sync_wait_init(&w, err, errlen);
  store_generation_bounds(b, gen, start_ns, end_ns, sync_wait_cb, &w);
  return sync_wait_run(&w);
}
