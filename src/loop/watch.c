/*
 * Directory watches.  One inotify watch (inotify.c) per directory,
 * fanned out to its subscribers: with 100,000 databases in one directory
 * the kernel still holds a single watch.  Directories are found by a hash
 * of their path, and a subscriber to one file (watch_add_file) by a hash of
 * its name in its directory, so an event costs O(1) whatever the number of
 * databases (an event for "x.db-wal", "x.db-shm" or "x.db-journal" also
 * reaches the subscriber of "x.db").  Subscribers to the whole directory
 * (watch_add) get every event.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>

#include "base/slab.h"
#include "base/util.h"
#include "loop/loop.h"
#include "loop/internal.h"

struct watch_dir;

struct watch_sub {
  struct watch_dir *dir;
  watch_cb cb;
  void *arg;
  char *name; /* the file subscribed to, or NULL: every event */
  uint32_t hash;
  int removed;
  int paused;
  struct watch_sub *next; /* in its bucket (or the directory's all-list) */
};

struct watch_dir {
  struct ino_watch *ino; /* NULL while stopped */
  char *path;
  uint32_t hash;
  struct watch_sub **buckets; /* file subscribers by name */
  size_t nbuckets;
  size_t nfiles;
  struct watch_sub *all; /* whole-directory subscribers */
  int dispatching;
  int nremoved; /* marked while dispatching, freed after */
  int nsubs;
  int npaused;
  int stopped;            /* every subscriber paused, or the directory gone: no
                           * inotify watch */
  struct watch_dir *next; /* in its bucket of g_dirs */
};

static struct watch_dir **g_dirs;
static size_t g_ndirs_buckets, g_ndirs;

static uint32_t hash_str(const char *s, size_t n) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < n; i++) {
    h ^= (uint8_t)s[i];
    h *= 16777619u;
  }
  return h;
}

/* --- the directory table --- */

static void dirs_grow(void) {
  size_t n = g_ndirs_buckets ? g_ndirs_buckets * 2 : 64;
  struct watch_dir **b = xcalloc(n, sizeof(*b));
  for (size_t i = 0; i < g_ndirs_buckets; i++) {
    struct watch_dir *d = g_dirs[i];
    while (d) {
      struct watch_dir *next = d->next;
      d->next = b[d->hash & (n - 1)];
      b[d->hash & (n - 1)] = d;
      d = next;
    }
  }
  free(g_dirs);
  g_dirs = b;
  g_ndirs_buckets = n;
}

static struct watch_dir *dir_find(const char *path, uint32_t h) {
  if (!g_ndirs_buckets)
    return NULL;
  for (struct watch_dir *d = g_dirs[h & (g_ndirs_buckets - 1)]; d; d = d->next)
    if (d->hash == h && !strcmp(d->path, path))
      return d;
  return NULL;
}

static void dir_unlink(struct watch_dir *d) {
  struct watch_dir **pp = &g_dirs[d->hash & (g_ndirs_buckets - 1)];
  while (*pp && *pp != d)
    pp = &(*pp)->next;
  if (*pp) {
    *pp = d->next;
    g_ndirs--;
  }
}

/* --- subscribers of one directory --- */

static void files_grow(struct watch_dir *d) {
  size_t n = d->nbuckets ? d->nbuckets * 2 : 4;
  struct watch_sub **b = xcalloc(n, sizeof(*b));
  for (size_t i = 0; i < d->nbuckets; i++) {
    struct watch_sub *s = d->buckets[i];
    while (s) {
      struct watch_sub *next = s->next;
      s->next = b[s->hash & (n - 1)];
      b[s->hash & (n - 1)] = s;
      s = next;
    }
  }
  free(d->buckets);
  d->buckets = b;
  d->nbuckets = n;
}

/* A subscriber and its file name are one slab object (base/slab.h):
 * 100,000 of them stay packed. */
static size_t sub_size(const char *file) {
  return sizeof(struct watch_sub) + (file ? strlen(file) + 1 : 0);
}

static void sub_free(struct watch_sub *s) {
  slab_free(s, sub_size(s->name));
}

static void free_list(struct watch_sub **pp, int all) {
  while (*pp) {
    struct watch_sub *s = *pp;
    if (all || s->removed) {
      *pp = s->next;
      sub_free(s);
    } else {
      pp = &s->next;
    }
  }
}

/* Frees the subscribers marked removed (all of them if all). */
static void free_removed(struct watch_dir *d, int all) {
  if (!all && !d->nremoved)
    return;
  free_list(&d->all, all);
  for (size_t i = 0; i < d->nbuckets; i++)
    free_list(&d->buckets[i], all);
  d->nremoved = 0;
}

static void dir_free(struct watch_dir *d) {
  free_removed(d, 1);
  free(d->buckets);
  free(d->path);
  free(d);
}

static void dir_release(struct watch_dir *d) {
  if (d->nsubs > 0 || d->dispatching)
    return;
  dir_unlink(d);
  ino_remove(d->ino);
  dir_free(d);
}

static void dir_stop(struct watch_dir *d) {
  ino_remove(d->ino);
  d->ino = NULL;
  d->stopped = 1;
}

/* Stops the kernel watch while every subscriber is paused. */
static void stop_if_all_paused(struct watch_dir *d) {
  if (d->nsubs > 0 && d->npaused == d->nsubs && !d->stopped && !d->dispatching)
    dir_stop(d);
}

static void on_ino(void *arg, const char *name, uint32_t mask);

/* Watches again (a new subscriber, one resumed): 0 or a negative errno. */
static int dir_start(struct watch_dir *d) {
  if (!d->stopped)
    return 0;
  int rc = ino_add(d->path, on_ino, d, &d->ino);
  if (!rc)
    d->stopped = 0;
  return rc;
}

static void deliver(struct watch_sub *s, const char *name) {
  if (!s->removed && !s->paused)
    s->cb(s->arg, name);
}

/* The subscribers of file `name` (n bytes of it). */
static void deliver_file(struct watch_dir *d, const char *name, size_t n,
                         const char *full) {
  if (!d->nbuckets)
    return;
  uint32_t h = hash_str(name, n);
  for (struct watch_sub *s = d->buckets[h & (d->nbuckets - 1)]; s; s = s->next)
    if (s->hash == h && !strncmp(s->name, name, n) && s->name[n] == '\0')
      deliver(s, full);
}

static const char *const suffixes[] = {"-wal", "-shm", "-journal"};

static void on_ino(void *arg, const char *filename, uint32_t mask) {
  struct watch_dir *d = arg;
  /* Gone (deleted, renamed away, its file system unmounted): watched
   * again, at its path, by the next subscriber once it exists again;
   * meanwhile its subscribers are told (NULL: check everything). */
  if (mask & (IN_IGNORED | IN_MOVE_SELF))
    dir_stop(d);
  const char *name = filename;
  /* Subscribers may remove themselves (or others) from their callback:
   * removal only marks them while we iterate. */
  d->dispatching++;
  for (struct watch_sub *s = d->all; s; s = s->next)
    deliver(s, name);
  if (!name) {
    for (size_t i = 0; i < d->nbuckets; i++)
      for (struct watch_sub *s = d->buckets[i]; s; s = s->next)
        deliver(s, NULL);
  } else {
    size_t n = strlen(name);
    deliver_file(d, name, n, name);
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
      size_t k = strlen(suffixes[i]);
      if (n > k && !strcmp(name + n - k, suffixes[i]))
        deliver_file(d, name, n - k, name);
    }
  }
  d->dispatching--;
  if (!d->dispatching) {
    free_removed(d, 0);
    stop_if_all_paused(d); /* some paused themselves in their callback */
    dir_release(d);
  }
}

static int subscribe(const char *path, const char *file, watch_cb cb, void *arg,
                     struct watch_sub **out) {
  uint32_t dh = hash_str(path, strlen(path));
  struct watch_dir *d = dir_find(path, dh);
  if (!d) {
    d = xcalloc(1, sizeof(*d));
    d->path = xstrdup(path);
    d->hash = dh;
    d->stopped = 1;
    int rc = dir_start(d);
    if (rc) {
      dir_free(d);
      return rc;
    }
    if (g_ndirs + 1 > g_ndirs_buckets)
      dirs_grow();
    d->next = g_dirs[dh & (g_ndirs_buckets - 1)];
    g_dirs[dh & (g_ndirs_buckets - 1)] = d;
    g_ndirs++;
  }
  struct watch_sub *s = slab_alloc(sub_size(file));
  s->dir = d;
  s->cb = cb;
  s->arg = arg;
  if (file) {
    s->name = (char *)(s + 1);
    memcpy(s->name, file, strlen(file) + 1);
    s->hash = hash_str(file, strlen(file));
    if (d->nfiles + 1 > d->nbuckets)
      files_grow(d);
    struct watch_sub **b = &d->buckets[s->hash & (d->nbuckets - 1)];
    s->next = *b;
    *b = s;
    d->nfiles++;
  } else {
    s->next = d->all;
    d->all = s;
  }
  d->nsubs++;
  dir_start(d); /* a new subscriber is not paused: watch again */
  *out = s;
  return 0;
}

int watch_add(const char *path, watch_cb cb, void *arg,
              struct watch_sub **out) {
  return subscribe(path, NULL, cb, arg, out);
}

int watch_add_file(const char *dir, const char *name, watch_cb cb, void *arg,
                   struct watch_sub **out) {
  return subscribe(dir, name, cb, arg, out);
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
  struct watch_dir *d = s->dir;
  d->npaused--;
  dir_start(d); /* (if it cannot watch again, subscribers poll) */
}

void watch_remove(struct watch_sub *s) {
  if (!s)
    return;
  struct watch_dir *d = s->dir;
  if (s->paused) {
    s->paused = 0;
    d->npaused--;
  }
  d->nsubs--;
  if (s->name)
    d->nfiles--;
  if (d->dispatching) {
    s->removed = 1; /* freed once the dispatch ends */
    d->nremoved++;
    return;
  }
  struct watch_sub **pp =
      s->name ? &d->buckets[s->hash & (d->nbuckets - 1)] : &d->all;
  while (*pp && *pp != s)
    pp = &(*pp)->next;
  if (*pp)
    *pp = s->next;
  sub_free(s);
  stop_if_all_paused(d);
  dir_release(d);
}
