#include "backends/common.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/util.h"
#include "loop/loop.h"

struct deferred {
  struct loop_timer *t;
  backend_cb cb;
  void *arg;
  int status;
  char *msg;
};

static void on_deferred(void *arg) {
  struct deferred *d = arg;
  d->cb(d->arg, d->status, d->msg);
  loop_timer_free(d->t);
  free(d->msg);
  free(d);
}

void backend_defer(backend_cb cb, void *arg, int status, const char *msg) {
  struct deferred *d = xcalloc(1, sizeof(*d));
  d->cb = cb;
  d->arg = arg;
  d->status = status;
  d->msg = msg ? xstrdup(msg) : NULL;
  d->t = loop_timer_new(on_deferred, d);
  loop_timer_start(d->t, 0);
}

struct del_fanout {
  char **keys;
  size_t n, next;
  int inflight, max_inflight;
  int status;
  del_fanout_start_fn start;
  void *ctx;
  backend_cb cb;
  void *arg;
  char msg[512];
};

static void fanout_fill(struct del_fanout *f) {
  while (!f->status && f->inflight < f->max_inflight && f->next < f->n) {
    f->inflight++;
    f->start(f, f->ctx, f->keys[f->next++]);
  }
}

void del_fanout(char *const *keys, size_t n, int max_inflight,
                del_fanout_start_fn start, void *ctx, backend_cb cb,
                void *arg) {
  if (!n) {
    backend_defer(cb, arg, 0, NULL);
    return;
  }
  struct del_fanout *f = xcalloc(1, sizeof(*f));
  f->keys = xcalloc(n, sizeof(char *));
  for (size_t i = 0; i < n; i++)
    f->keys[i] = xstrdup(keys[i]);
  f->n = n;
  f->max_inflight = max_inflight > 0 ? max_inflight : 1;
  f->start = start;
  f->ctx = ctx;
  f->cb = cb;
  f->arg = arg;
  fanout_fill(f);
}

void del_fanout_done(struct del_fanout *f, int rc, const char *msg) {
  f->inflight--;
  if (rc && !f->status) {
    f->status = rc;
    snprintf(f->msg, sizeof(f->msg), "%s", msg ? msg : "delete failed");
  }
  fanout_fill(f);
  if (f->inflight)
    return;
  f->cb(f->arg, f->status, f->status ? f->msg : NULL);
  for (size_t i = 0; i < f->n; i++)
    free(f->keys[i]);
  free(f->keys);
  free(f);
}
