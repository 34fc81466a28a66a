/*
 * Directory watches.  One uv_fs_event (one inotify watch) per directory,
 * fanned out to every subscriber in it: with hundreds of databases in one
 * directory the kernel still holds a single watch.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/util.h"
#include "loop/loop.h"
#include "loop/internal.h"

struct watch_dir;

struct watch_sub {
  struct watch_dir *dir;
  watch_cb cb;
  void *arg;
  int removed;
  int paused;
  struct watch_sub *next;
};

struct watch_dir {
  uv_fs_event_t h;
  char *path;
  struct watch_sub *subs;
  int dispatching;
  int nsubs;
  int npaused;
  int stopped; /* every subscriber paused: the inotify watch is off */
  struct watch_dir *next;
};

static struct watch_dir *g_dirs;

static void free_removed(struct watch_dir *d) {
  struct watch_sub **pp = &d->subs;
  while (*pp) {
    struct watch_sub *s = *pp;
    if (s->removed) {
      *pp = s->next;
      free(s);
    } else {
      pp = &s->next;
    }
  }
}

static void on_dir_close(uv_handle_t *h) {
  struct watch_dir *d = container_of((uv_fs_event_t *)h, struct watch_dir, h);
  free_removed(d);
  free(d->path);
  free(d);
}

static void dir_release(struct watch_dir *d) {
  if (d->nsubs > 0 || d->dispatching)
    return;
  struct watch_dir **pp = &g_dirs;
  while (*pp && *pp != d)
    pp = &(*pp)->next;
  if (*pp)
    *pp = d->next;
  uv_fs_event_stop(&d->h);
  uv_close((uv_handle_t *)&d->h, on_dir_close);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events,
                        int status);

/* Stops the kernel watch while every subscriber is paused. */
static void stop_if_all_paused(struct watch_dir *d) {
  if (d->nsubs > 0 && d->npaused == d->nsubs && !d->stopped &&
      !d->dispatching) {
    uv_fs_event_stop(&d->h);
    d->stopped = 1;
  }
}

/* Starts it again for a subscriber that wants events. */
static void restart(struct watch_dir *d) {
  if (d->stopped) {
    d->stopped = 0;
    if (uv_fs_event_start(&d->h, on_fs_event, d->path, 0))
      d->stopped = 1; /* cannot watch again: subscribers poll */
  }
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events,
                        int status) {
  struct watch_dir *d = container_of(h, struct watch_dir, h);
  (void)events;
  /* Subscribers may remove themselves (or others) from their callback:
   * removal only marks them while we iterate. */
  d->dispatching++;
  for (struct watch_sub *s = d->subs; s; s = s->next) {
    if (!s->removed && !s->paused)
      s->cb(s->arg, status < 0 ? NULL : filename);
  }
  d->dispatching--;
  if (!d->dispatching) {
    free_removed(d);
    stop_if_all_paused(d); /* some paused themselves in their callback */
    dir_release(d);
  }
}

int watch_add(const char *path, watch_cb cb, void *arg,
              struct watch_sub **out) {
  struct watch_dir *d;
  for (d = g_dirs; d; d = d->next)
    if (!strcmp(d->path, path))
      break;
  if (!d) {
    d = xcalloc(1, sizeof(*d));
    d->path = xstrdup(path);
    uv_fs_event_init(loop_uv(), &d->h);
    int rc = uv_fs_event_start(&d->h, on_fs_event, path, 0);
    if (rc) {
      uv_close((uv_handle_t *)&d->h, on_dir_close);
      return rc;
    }
    d->next = g_dirs;
    g_dirs = d;
  }
  struct watch_sub *s = xcalloc(1, sizeof(*s));
  s->dir = d;
  s->cb = cb;
  s->arg = arg;
  s->next = d->subs;
  d->subs = s;
  d->nsubs++;
  restart(d); /* every other subscriber was paused */
  *out = s;
  return 0;
}

/* While every subscriber of a directory is paused, the watch is off:
 * a database that will copy at the end of its batch window anyway does not
 * need the tens of thousands of events per second a busy writer causes. */
void watch_pause(struct watch_sub *s) {
  if (!s || s->paused)
    return;
  s->paused = 1;
  s->dir->npaused++;
  stop_if_all_paused(s->dir);
}

void watch_resume(struct watch_sub *s) {
  if (!s || !s->paused)
    return;
  s->paused = 0;
  s->dir->npaused--;
  restart(s->dir);
}

void watch_remove(struct watch_sub *s) {
  if (!s)
    return;
  struct watch_dir *d = s->dir;
  if (s->paused) {
    s->paused = 0;
    d->npaused--;
  }
  s->removed = 1;
  d->nsubs--;
  if (!d->dispatching) {
    free_removed(d);
    stop_if_all_paused(d);
    dir_release(d);
  }
}
