/*
 * loop/watch.c on a real loop and real inotify in a temp dir: one kernel
 * watch fanned out to every subscriber of a directory, subscribers that
 * remove themselves or others while an event is dispatched, pause and
 * resume (a paused subscriber gets no callback; all paused stops the
 * watch), a directory that cannot be watched, a directory watched
 * again after its last subscriber left, the kernel's event queue
 * overflowing (every subscriber is told: NULL), and a directory deleted
 * or renamed away and created again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "loop/loop.h"
#include "t.h"

static char g_dir[] = "/tmp/sluice-test-watch.XXXXXX";

struct sub {
  struct watch_sub *w;
  int calls;
  char last[64];
  /* From the callback: remove these (NULL-terminated), pause self. */
  struct sub *remove[3];
  int pause_self;
};

static void on_event(void *arg, const char *name) {
  struct sub *s = arg;
  s->calls++;
  snprintf(s->last, sizeof(s->last), "%s", name ? name : "(null)");
  for (int i = 0; i < 3 && s->remove[i]; i++) {
    watch_remove(s->remove[i]->w);
    s->remove[i]->w = NULL;
  }
  memset(s->remove, 0, sizeof(s->remove));
  if (s->pause_self)
    watch_pause(s->w);
}

static volatile int g_timeout;
static void on_deadline(void *arg) {
  (void)arg;
  g_timeout = 1;
}

/* Runs the loop until *count reaches want, or ms pass.  Returns 1 if it
 * did reach it. */
static int run_until_count(int *count, int want, int ms) {
  struct loop_timer *t = loop_timer_new(on_deadline, NULL);
  g_timeout = 0;
  loop_timer_start(t, (uint64_t)ms);
  while (*count < want && !g_timeout)
    loop_run_once();
  loop_timer_free(t);
  return *count >= want;
}

/* Lets the loop deliver whatever is pending for ms (for "nothing came"). */
static void run_for(int ms) {
  int never = 0;
  run_until_count(&never, 1, ms);
}

static void touch(const char *name) {
  char p[256];
  snprintf(p, sizeof(p), "%s/%s", g_dir, name);
  int fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    (void)!write(fd, "x", 1);
    close(fd);
  }
}

TEST(fan_out) {
  struct sub a = {0}, b = {0};
  CHECK_INT(watch_add(g_dir, on_event, &a, &a.w), 0);
  CHECK_INT(watch_add(g_dir, on_event, &b, &b.w), 0);
  touch("one");
  CHECK(run_until_count(&b.calls, 1, 5000));
  CHECK(run_until_count(&a.calls, 1, 5000));
  CHECK_STR(a.last, "one");
  CHECK_STR(b.last, "one");
  watch_remove(a.w);
  int before = b.calls, a_before = a.calls;
  touch("two");
  CHECK(run_until_count(&b.calls, before + 1, 5000));
  CHECK_STR(b.last, "two");
  run_for(50);
  CHECK_INT(a.calls, a_before); /* removed: never called again */
  watch_remove(b.w);
}

/* Subscribers are called newest first: c, b, a.  c removes itself and b
 * while dispatching: b is not called for that event, a still is, and
 * nothing freed is touched (ASan). */
TEST(remove_during_dispatch) {
  struct sub a = {0}, b = {0}, c = {0};
  CHECK_INT(watch_add(g_dir, on_event, &a, &a.w), 0);
  CHECK_INT(watch_add(g_dir, on_event, &b, &b.w), 0);
  CHECK_INT(watch_add(g_dir, on_event, &c, &c.w), 0);
  c.remove[0] = &c;
  c.remove[1] = &b;
  touch("three");
  CHECK(run_until_count(&a.calls, 1, 5000));
  CHECK_INT(c.calls, 1);
  CHECK_INT(b.calls, 0);
  int a_before = a.calls;
  touch("four");
  CHECK(run_until_count(&a.calls, a_before + 1, 5000));
  CHECK_INT(c.calls, 1);
  CHECK_INT(b.calls, 0);
  /* The last subscriber removes itself during dispatch: the directory's
   * watch is released after the dispatch, and watching it again works. */
  a.remove[0] = &a;
  a_before = a.calls;
  touch("five");
  CHECK(run_until_count(&a.calls, a_before + 1, 5000));
  CHECK(a.w == NULL);
  run_for(20);
  struct sub d = {0};
  CHECK_INT(watch_add(g_dir, on_event, &d, &d.w), 0);
  touch("six");
  CHECK(run_until_count(&d.calls, 1, 5000));
  CHECK_STR(d.last, "six");
  watch_remove(d.w);
}

TEST(pause_resume) {
  struct sub a = {0}, b = {0};
  CHECK_INT(watch_add(g_dir, on_event, &a, &a.w), 0);
  CHECK_INT(watch_add(g_dir, on_event, &b, &b.w), 0);
  /* One paused: only the other is called. */
  watch_pause(a.w);
  touch("p1");
  CHECK(run_until_count(&b.calls, 1, 5000));
  run_for(50);
  CHECK_INT(a.calls, 0);
  /* Both paused: the watch is off, nobody is called. */
  watch_pause(b.w);
  watch_pause(b.w); /* twice is once */
  int b_before = b.calls;
  touch("p2");
  run_for(100);
  CHECK_INT(a.calls, 0);
  CHECK_INT(b.calls, b_before);
  /* Resumed: events after the resume arrive (those in between are lost,
   * as loop.h says). */
  watch_resume(a.w);
  watch_resume(a.w);
  touch("p3");
  CHECK(run_until_count(&a.calls, 1, 5000));
  CHECK_STR(a.last, "p3");
  CHECK_INT(b.calls, b_before);
  /* A paused subscriber removed: the others' count of paused stays right,
   * so pausing the last one left stops the watch and resuming restarts
   * it. */
  watch_remove(b.w);
  watch_pause(a.w);
  int a_before = a.calls;
  touch("p4");
  run_for(100);
  CHECK_INT(a.calls, a_before);
  watch_resume(a.w);
  touch("p5");
  CHECK(run_until_count(&a.calls, a_before + 1, 5000));
  CHECK_STR(a.last, "p5");
  watch_remove(a.w);
}

/* Every subscriber paused, then a new one subscribes: it is not paused,
 * so it must get events (the kernel watch comes back). */
TEST(add_while_all_paused) {
  struct sub a = {0}, b = {0};
  CHECK_INT(watch_add(g_dir, on_event, &a, &a.w), 0);
  watch_pause(a.w);
  CHECK_INT(watch_add(g_dir, on_event, &b, &b.w), 0);
  touch("q1");
  CHECK(run_until_count(&b.calls, 1, 5000));
  CHECK_STR(b.last, "q1");
  CHECK_INT(a.calls, 0);
  watch_remove(a.w);
  watch_remove(b.w);
}

/* A subscriber pausing itself from its callback, as db.c does when a
 * burst begins: no more callbacks until it resumes. */
TEST(pause_in_callback) {
  struct sub a = {0};
  CHECK_INT(watch_add(g_dir, on_event, &a, &a.w), 0);
  a.pause_self = 1;
  touch("r1");
  CHECK(run_until_count(&a.calls, 1, 5000));
  a.pause_self = 0;
  run_for(50);
  int calls = a.calls;
  touch("r2");
  touch("r3");
  run_for(100);
  CHECK_INT(a.calls, calls);
  watch_resume(a.w);
  touch("r4");
  CHECK(run_until_count(&a.calls, calls + 1, 5000));
  CHECK_STR(a.last, "r4");
  watch_remove(a.w);
}

TEST(cannot_watch) {
  struct sub a = {0};
  char p[256];
  snprintf(p, sizeof(p), "%s/missing/dir", g_dir);
  a.w = (struct watch_sub *)&a; /* must not be taken for a subscription */
  CHECK_INT(watch_add(p, on_event, &a, &a.w), -ENOENT);
  /* NULL is accepted by every call (db.c polls without a watch). */
  watch_pause(NULL);
  watch_resume(NULL);
  watch_remove(NULL);
}

/* dirwatch.c's callback, for the overflow test. */
struct dsub {
  int calls, nulls;
};
static void on_dir_event(void *arg, const char *name, int events) {
  struct dsub *d = arg;
  d->calls++;
  if (!name && (events & LOOP_DIR_RENAME))
    d->nulls++;
}

static void append(const char *dir, const char *name) {
  char p[300];
  snprintf(p, sizeof(p), "%s/%s", dir, name);
  int fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    (void)!write(fd, "x", 1);
    close(fd);
  }
}

static long read_proc_long(const char *path) {
  FILE *f = fopen(path, "r");
  long v = -1;
  if (f) {
    if (fscanf(f, "%ld", &v) != 1)
      v = -1;
    fclose(f);
  }
  return v;
}

/* More events than fs.inotify.max_queued_events while the loop does not
 * read them: the kernel drops the rest, the write to x.db among them, and
 * queues IN_Q_OVERFLOW.  Every subscriber, of a file or of the whole
 * directory, and a directory-level watch, is then called with NULL (libuv's
 * uv_fs_event dropped the overflow: nobody heard of x.db's write). */
TEST(queue_overflow) {
  long max = read_proc_long("/proc/sys/fs/inotify/max_queued_events");
  if (max <= 0 || max > 1000000) {
    printf("skip queue_overflow: max_queued_events %ld\n", max);
    return;
  }
  char dir[300];
  snprintf(dir, sizeof(dir), "%s/flood", g_dir);
  CHECK_INT(mkdir(dir, 0755), 0);
  struct sub f = {0}, all = {0};
  struct dsub dw = {0};
  struct loop_dirwatch *w = NULL;
  CHECK_INT(watch_add_file(dir, "x.db", on_event, &f, &f.w), 0);
  CHECK_INT(watch_add(dir, on_event, &all, &all.w), 0);
  CHECK_INT(loop_dirwatch_new(dir, on_dir_event, &dw, &w), 0);
  /* Alternating names: the kernel merges an event only with an identical
   * one queued just before it. */
  for (long i = 0; i < max + 64; i++)
    append(dir, i % 2 ? "n1" : "n2");
  append(dir, "x.db");
  CHECK(run_until_count(&f.calls, 1, 10000));
  CHECK_STR(f.last, "(null)");
  CHECK(run_until_count(&dw.nulls, 1, 5000));
  CHECK(all.calls > 0);
  CHECK_STR(all.last, "(null)");
  /* And the watch still works after it. */
  int before = f.calls;
  append(dir, "x.db-wal");
  CHECK(run_until_count(&f.calls, before + 1, 5000));
  CHECK_STR(f.last, "x.db-wal");
  watch_remove(f.w);
  watch_remove(all.w);
  loop_dirwatch_free(w);
}

/* A watched directory deleted: its subscribers are told (NULL).  Created
 * again, it is watched again as soon as someone subscribes, and the old
 * subscriber hears of its file again too. */
TEST(dir_deleted_and_back) {
  char dir[300], cmd[400];
  snprintf(dir, sizeof(dir), "%s/gone", g_dir);
  CHECK_INT(mkdir(dir, 0755), 0);
  struct sub old = {0};
  CHECK_INT(watch_add_file(dir, "x.db", on_event, &old, &old.w), 0);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  CHECK_INT(system(cmd), 0);
  CHECK(run_until_count(&old.calls, 1, 5000));
  CHECK_STR(old.last, "(null)");
  run_for(20);
  CHECK_INT(mkdir(dir, 0755), 0);
  struct sub nu = {0};
  CHECK_INT(watch_add_file(dir, "y.db", on_event, &nu, &nu.w), 0);
  append(dir, "y.db");
  CHECK(run_until_count(&nu.calls, 1, 5000));
  CHECK_STR(nu.last, "y.db");
  int before = old.calls;
  append(dir, "x.db");
  CHECK(run_until_count(&old.calls, before + 1, 5000));
  CHECK_STR(old.last, "x.db");
  watch_remove(old.w);
  watch_remove(nu.w);
}

/* A watched directory renamed away: the watch does not follow it (its
 * path names another directory, or none); a new directory at the path
 * is watched for the old subscriber and a new one. */
TEST(dir_renamed_away) {
  char dir[300], away[300];
  snprintf(dir, sizeof(dir), "%s/moved", g_dir);
  snprintf(away, sizeof(away), "%s/moved-away", g_dir);
  CHECK_INT(mkdir(dir, 0755), 0);
  struct sub old = {0};
  CHECK_INT(watch_add_file(dir, "x.db", on_event, &old, &old.w), 0);
  CHECK_INT(rename(dir, away), 0);
  CHECK(run_until_count(&old.calls, 1, 5000));
  CHECK_STR(old.last, "(null)");
  run_for(20);
  int before = old.calls;
  append(away, "x.db"); /* the moved directory: not the path watched */
  run_for(100);
  CHECK_INT(old.calls, before);
  CHECK_INT(mkdir(dir, 0755), 0);
  struct sub nu = {0};
  CHECK_INT(watch_add_file(dir, "y.db", on_event, &nu, &nu.w), 0);
  append(dir, "x.db");
  CHECK(run_until_count(&old.calls, before + 1, 5000));
  CHECK_STR(old.last, "x.db");
  watch_remove(old.w);
  watch_remove(nu.w);
}

int main(void) {
  if (!mkdtemp(g_dir) || loop_init())
    return 1;
  RUN(fan_out);
  RUN(remove_during_dispatch);
  RUN(pause_resume);
  RUN(add_while_all_paused);
  RUN(pause_in_callback);
  RUN(cannot_watch);
  RUN(queue_overflow);
  RUN(dir_deleted_and_back);
  RUN(dir_renamed_away);
  run_for(20);
  loop_close();
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
  (void)!system(cmd);
  T_DONE();
}
