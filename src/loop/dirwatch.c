/*
 * Directory-level subscribers (live discovery of databases): every entry
 * created, deleted, renamed or modified in one directory, with its name.
 * Separate from watch.c's per-database fan-out: each subscriber has its own
 * watch (inotify.c), which shares the kernel's inotify watch of the
 * directory with the others, so this costs no extra inotify watch.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/inotify.h>

#include "base/util.h"
#include "loop/internal.h"
#include "loop/loop.h"

struct loop_dirwatch {
  struct ino_watch *ino;
  loop_dirwatch_cb cb;
  void *arg;
};

static void on_event(void *arg, const char *name, uint32_t mask) {
  struct loop_dirwatch *w = arg;
  int ev = 0;
  if (mask & (IN_ATTRIB | IN_MODIFY))
    ev |= LOOP_DIR_CHANGE;
  if (!name || (mask & ~(uint32_t)(IN_ATTRIB | IN_MODIFY)))
    ev |= LOOP_DIR_RENAME;
  w->cb(w->arg, name, ev);
}

int loop_dirwatch_new(const char *dir, loop_dirwatch_cb cb, void *arg,
                      struct loop_dirwatch **out) {
  struct loop_dirwatch *w = xcalloc(1, sizeof(*w));
  w->cb = cb;
  w->arg = arg;
  int rc = ino_add(dir, on_event, w, &w->ino);
  if (rc) {
    free(w);
    return rc;
  }
  *out = w;
  return 0;
}

void loop_dirwatch_free(struct loop_dirwatch *w) {
  if (!w)
    return;
  ino_remove(w->ino);
  free(w);
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
