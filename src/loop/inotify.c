/*
 * The process's one inotify instance, read on the loop (uv_poll on its
 * fd), under watch.c and dirwatch.c.  Not libuv's uv_fs_event: libuv drops
 * IN_Q_OVERFLOW (its watch descriptor is -1, no handle's), so a burst of
 * more events than fs.inotify.max_queued_events lost every change after
 * it without a word, and a dormant database written then was not
 * replicated until its next write.  Here an overflow reaches every watch
 * (name NULL: anything may have changed).
 *
 * One kernel watch per directory inode: inotify_add_watch returns the same
 * descriptor for an inode watched already, so the watches (struct
 * ino_watch) of one descriptor share an entry (struct ino_wd), and the
 * kernel watch goes when the last of them does.  Callbacks may add and
 * remove watches, their own or others': while events are delivered a
 * removal only marks, and the marked are freed once delivery ends.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "loop/internal.h"
#include "loop/loop.h"

#define INO_MASK                                                               \
  (IN_ATTRIB | IN_CREATE | IN_MODIFY | IN_DELETE | IN_DELETE_SELF |            \
   IN_MOVE_SELF | IN_MOVED_FROM | IN_MOVED_TO)

struct ino_wd;

struct ino_watch {
  struct ino_wd *w;
  ino_cb cb;
  void *arg;
  int removed;
  struct ino_watch *next;
};

struct ino_wd {
  int wd;
  int dead;   /* the kernel watch is gone (removed, or IN_IGNORED) */
  int listed; /* in the table (not once dead) */
  int dirty;  /* on the sweep list */
  int nsubs;  /* live watches */
  struct ino_watch *subs;
  struct ino_wd *next;       /* in its bucket */
  struct ino_wd *dirty_next; /* on the sweep list */
};

static struct {
  int fd; /* -1 until the first watch */
  uv_poll_t poll;
  struct ino_wd **b;
  size_t nb, n;
  int delivering;
  struct ino_wd *dirty;
  size_t live; /* watches not removed: the loop is kept alive while any is */
  uint64_t warned_ms; /* the last overflow's line (one a minute) */
  uint64_t overflows;
} g = {.fd = -1};

static size_t slot(int wd) {
  return (size_t)(uint32_t)wd & (g.nb - 1);
}

static struct ino_wd *wd_find(int wd) {
  if (!g.nb)
    return NULL;
  for (struct ino_wd *w = g.b[slot(wd)]; w; w = w->next)
    if (w->wd == wd)
      return w;
  return NULL;
}

static void table_grow(void) {
  size_t n = g.nb ? g.nb * 2 : 64;
  struct ino_wd **b = xcalloc(n, sizeof(*b));
  for (size_t i = 0; i < g.nb; i++) {
    for (struct ino_wd *w = g.b[i], *next; w; w = next) {
      next = w->next;
      w->next = b[(size_t)(uint32_t)w->wd & (n - 1)];
      b[(size_t)(uint32_t)w->wd & (n - 1)] = w;
    }
  }
  free(g.b);
  g.b = b;
  g.nb = n;
}

static void unlist(struct ino_wd *w) {
  if (!w->listed)
    return;
  struct ino_wd **pp = &g.b[slot(w->wd)];
  while (*pp && *pp != w)
    pp = &(*pp)->next;
  if (*pp)
    *pp = w->next;
  w->listed = 0;
  g.n--;
}

/* Frees the marked watches of w, and w once it has none. */
static void sweep(struct ino_wd *w) {
  for (struct ino_watch **pp = &w->subs; *pp;) {
    struct ino_watch *s = *pp;
    if (s->removed) {
      *pp = s->next;
      free(s);
    } else {
      pp = &s->next;
    }
  }
  if (!w->subs) {
    unlist(w);
    free(w);
  }
}

static void mark_dirty(struct ino_wd *w) {
  if (w->dirty)
    return;
  w->dirty = 1;
  w->dirty_next = g.dirty;
  g.dirty = w;
}

static void sweep_dirty(void) {
  while (g.dirty) {
    struct ino_wd *w = g.dirty;
    g.dirty = w->dirty_next;
    w->dirty = 0;
    sweep(w);
  }
}

static void deliver(struct ino_wd *w, const char *name, uint32_t mask) {
  for (struct ino_watch *s = w->subs; s; s = s->next)
    if (!s->removed)
      s->cb(s->arg, name, mask);
}

/* Every watch, once: the queue overflowed.  (A snapshot of the table: a
 * callback may add watches and grow it.) */
static void deliver_all(uint32_t mask) {
  size_t n = 0;
  struct ino_wd **v = xcalloc(g.n + 1, sizeof(*v));
  for (size_t i = 0; i < g.nb; i++)
    for (struct ino_wd *w = g.b[i]; w; w = w->next)
      if (n < g.n)
        v[n++] = w;
  /* (None is freed before the sweep below, even if a callback removes
   * every watch of it: it is marked dirty first.) */
  for (size_t i = 0; i < n; i++)
    mark_dirty(v[i]);
  for (size_t i = 0; i < n; i++)
    deliver(v[i], NULL, mask);
  free(v);
}

static void on_event(const struct inotify_event *e) {
  if (e->mask & IN_Q_OVERFLOW) {
    g.overflows++;
    uint64_t now = loop_now_ms();
    if (!g.warned_ms || now - g.warned_ms >= 60000) {
      g.warned_ms = now;
      FILE *f = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
      long max = -1;
      if (f) {
        if (fscanf(f, "%ld", &max) != 1)
          max = -1;
        fclose(f);
      }
      log_warn(NULL, NULL,
               "file change events were lost (the inotify queue of %ld "
               "events overflowed; %llu time(s) so far): checking every "
               "watched database and directory; raise "
               "fs.inotify.max_queued_events if it recurs",
               max, (unsigned long long)g.overflows);
    }
    deliver_all(IN_Q_OVERFLOW);
    return;
  }
  struct ino_wd *w = wd_find(e->wd);
  if (!w)
    return; /* a watch removed since (its IN_IGNORED, say) */
  const char *name = e->len ? e->name : NULL;
  if (!name && !(e->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)))
    return; /* the directory's own attributes: nothing in it changed */
  if (e->mask & IN_IGNORED) {
    /* The kernel dropped the watch (the directory is gone): its number
     * may be handed out again, to a new watch. */
    w->dead = 1;
    unlist(w);
  }
  mark_dirty(w);
  deliver(w, name, e->mask);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)h;
  (void)events;
  if (status < 0)
    return;
  /* Aligned for struct inotify_event; a whole number of events each read. */
  union {
    struct inotify_event e;
    char b[64 * 1024];
  } buf;
  g.delivering++;
  for (int reads = 0; reads < 16; reads++) {
    ssize_t got = read(g.fd, buf.b, sizeof(buf.b));
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break; /* EAGAIN: all read (level-triggered: more comes back here) */
    for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= got;) {
      const struct inotify_event *e =
          (const struct inotify_event *)(buf.b + off);
      on_event(e);
      off += (ssize_t)sizeof(*e) + e->len;
    }
  }
  if (--g.delivering == 0)
    sweep_dirty();
}

static int ino_open(void) {
  if (g.fd >= 0)
    return 0;
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = uv_poll_init(loop_uv(), &g.poll, fd);
  if (!rc)
    rc = uv_poll_start(&g.poll, UV_READABLE, on_readable);
  if (rc) {
    close(fd);
    return rc;
  }
  uv_unref((uv_handle_t *)&g.poll); /* (referenced while watches exist) */
  g.fd = fd;
  return 0;
}

int ino_add(const char *path, ino_cb cb, void *arg, struct ino_watch **out) {
  int rc = ino_open();
  if (rc)
    return rc;
  int wd = inotify_add_watch(g.fd, path, INO_MASK);
  if (wd < 0)
    return -errno;
  struct ino_wd *w = wd_find(wd);
  if (!w) {
    w = xcalloc(1, sizeof(*w));
    w->wd = wd;
    if (g.n + 1 > g.nb)
      table_grow();
    w->next = g.b[slot(wd)];
    g.b[slot(wd)] = w;
    w->listed = 1;
    g.n++;
  }
  struct ino_watch *s = xcalloc(1, sizeof(*s));
  s->w = w;
  s->cb = cb;
  s->arg = arg;
  s->next = w->subs;
  w->subs = s;
  w->nsubs++;
  if (g.live++ == 0)
    uv_ref((uv_handle_t *)&g.poll); /* as an active uv_fs_event was */
  *out = s;
  return 0;
}

void ino_remove(struct ino_watch *s) {
  if (!s || s->removed)
    return;
  struct ino_wd *w = s->w;
  s->removed = 1;
  if (g.fd >= 0 && --g.live == 0)
    uv_unref((uv_handle_t *)&g.poll);
  if (--w->nsubs == 0 && !w->dead) {
    /* The last one: the kernel watch goes now (a new watch of the same
     * directory gets a new number), the memory once delivery ends. */
    inotify_rm_watch(g.fd, w->wd);
    w->dead = 1;
    unlist(w);
  }
  if (g.delivering || w->dirty)
    mark_dirty(w);
  else
    sweep(w);
}

static void on_poll_close(uv_handle_t *h) {
  (void)h;
}

void ino_close(void) {
  if (g.fd < 0)
    return;
  uv_poll_stop(&g.poll);
  uv_close((uv_handle_t *)&g.poll, on_poll_close);
  close(g.fd);
  g.fd = -1;
  g.live = 0;
  /* (What a caller never removed stays reachable from its owner.) */
  for (size_t i = 0; i < g.nb; i++)
    for (struct ino_wd *w = g.b[i]; w; w = w->next)
      w->listed = 0, w->dead = 1;
  free(g.b);
  g.b = NULL;
  g.nb = g.n = 0;
}
