/*
 * Directory-level subscribers (live discovery of databases): every entry
 * created, deleted, renamed or modified in one directory, with its name.
 * Separate from watch.c's per-database fan-out: each subscriber has its own
 * uv_fs_event, and libuv shares the kernel's inotify watch between handles
 * on the same directory, so this costs no extra inotify watch.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "base/util.h"
#include "loop/internal.h"
#include "loop/loop.h"

struct loop_dirwatch {
  uv_fs_event_t h;
  loop_dirwatch_cb cb;
  void *arg;
};

static void on_event(uv_fs_event_t *h, const char *name, int events,
                     int status) {
  struct loop_dirwatch *w = container_of(h, struct loop_dirwatch, h);
  int ev = 0;
  if (events & UV_RENAME)
    ev |= LOOP_DIR_RENAME;
  if (events & UV_CHANGE)
    ev |= LOOP_DIR_CHANGE;
  w->cb(w->arg, status < 0 ? NULL : name, status < 0 ? LOOP_DIR_RENAME : ev);
}

static void on_close(uv_handle_t *h) {
  free(container_of((uv_fs_event_t *)h, struct loop_dirwatch, h));
}

int loop_dirwatch_new(const char *dir, loop_dirwatch_cb cb, void *arg,
                      struct loop_dirwatch **out) {
  struct loop_dirwatch *w = xcalloc(1, sizeof(*w));
  w->cb = cb;
  w->arg = arg;
  uv_fs_event_init(loop_uv(), &w->h);
  int rc = uv_fs_event_start(&w->h, on_event, dir, 0);
  if (rc) {
    uv_close((uv_handle_t *)&w->h, on_close);
    return rc;
  }
  *out = w;
  return 0;
}

void loop_dirwatch_free(struct loop_dirwatch *w) {
  if (!w)
    return;
  uv_fs_event_stop(&w->h);
  uv_close((uv_handle_t *)&w->h, on_close);
}

static long read_long(const char *path) {
  FILE *f = fopen(path, "r");
  long v = -1;
  if (f) {
    if (fscanf(f, "%ld", &v) != 1)
      v = -1;
    fclose(f);
  }
  return v;
}

/* The smaller of the system's limit and the user namespace's (a
 * container's own limit is the latter). */
long loop_inotify_max_watches(void) {
  long sys = read_long("/proc/sys/fs/inotify/max_user_watches");
  long ns = read_long("/proc/sys/user/max_inotify_watches");
  if (sys < 0 || (ns >= 0 && ns < sys))
    return ns;
  return sys;
}
