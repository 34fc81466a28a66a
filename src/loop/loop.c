/*
 * The process's libuv loop and the small primitives core code uses on it:
 * timers, thread-pool work, signals and child processes.
 */
#include "loop/loop.h"
#include "loop/internal.h"

#include <errno.h>
#include <pthread.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "base/log.h"
#include "base/util.h"

static uv_loop_t g_loop;
static int g_loop_ready;
static int g_work_pending;
static void lane_stop(void);

uv_loop_t *loop_uv(void) {
  return &g_loop;
}

/* Light timers (loop_ltimer_*, below). */
static struct {
  struct loop_ltimer **h;
  size_t n, cap;
  uint64_t seq;
  uv_timer_t timer;
  int timer_init;
} g_lt;

int loop_init(void) {
  if (g_loop_ready)
    return 0;
  /* More pool threads than cores: pool jobs include fsync and SQLite busy
   * waits, which sleep rather than compute. */
  if (!getenv("UV_THREADPOOL_SIZE"))
    setenv("UV_THREADPOOL_SIZE", "8", 0);
#ifdef __GLIBC__
  /* glibc gives each pool thread an arena of its own, and memory freed in
   * one is seldom returned to the system: a 60s burst left the daemon at
   * 250 MB instead of ~15 (bench/RESULTS.md).  Two arenas are plenty for
   * threads that mostly wait on I/O.  (MALLOC_ARENA_MAX still wins.) */
  if (!getenv("MALLOC_ARENA_MAX"))
    mallopt(M_ARENA_MAX, 2);
#endif
  int rc = uv_loop_init(&g_loop);
  if (rc)
    return rc;
  g_loop_ready = 1;
  return 0;
}

int loop_run(void) {
  return uv_run(&g_loop, UV_RUN_DEFAULT);
}

int loop_run_until(volatile int *flag) {
  while (!*flag) {
    if (!uv_run(&g_loop, UV_RUN_ONCE) && !*flag)
      return -EDEADLK; /* nothing left that could set the flag */
  }
  return 0;
}

int loop_run_once(void) {
  return uv_run(&g_loop, UV_RUN_ONCE);
}

void loop_stop(void) {
  uv_stop(&g_loop);
}

static void close_walk_cb(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

int loop_close(void) {
  if (!g_loop_ready)
    return 0;
  lane_stop();
  if (g_lt.timer_init) {
    uv_close((uv_handle_t *)&g_lt.timer, NULL);
    g_lt.timer_init = 0;
  }
  for (size_t i = 0; i < g_lt.n; i++)
    g_lt.h[i]->slot = 0; /* (still armed: stopping it later is a no-op) */
  free(g_lt.h);
  g_lt.h = NULL;
  g_lt.n = g_lt.cap = 0;
  ino_close();
  /* Let pending close callbacks run first. */
  uv_run(&g_loop, UV_RUN_NOWAIT);
  int rc = uv_loop_close(&g_loop);
  if (rc == UV_EBUSY) {
    uv_walk(&g_loop, close_walk_cb, NULL);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&g_loop);
  }
  if (rc == 0)
    g_loop_ready = 0;
  return rc;
}

uint64_t loop_now_ms(void) {
  return uv_now(&g_loop);
}

/* --- timers --- */

struct loop_timer {
  uv_timer_t h;
  loop_timer_cb cb;
  void *arg;
};

static void on_timer(uv_timer_t *h) {
  struct loop_timer *t = container_of(h, struct loop_timer, h);
  t->cb(t->arg);
}

struct loop_timer *loop_timer_new(loop_timer_cb cb, void *arg) {
  struct loop_timer *t = xcalloc(1, sizeof(*t));
  uv_timer_init(&g_loop, &t->h);
  t->cb = cb;
  t->arg = arg;
  return t;
}

void loop_timer_start(struct loop_timer *t, uint64_t ms) {
  uv_timer_start(&t->h, on_timer, ms, 0);
}

void loop_timer_stop(struct loop_timer *t) {
  uv_timer_stop(&t->h);
}

int loop_timer_active(const struct loop_timer *t) {
  return uv_is_active((const uv_handle_t *)&t->h);
}

static void on_timer_close(uv_handle_t *h) {
  free(container_of((uv_timer_t *)h, struct loop_timer, h));
}

void loop_timer_free(struct loop_timer *t) {
  if (!t)
    return;
  uv_timer_stop(&t->h);
  uv_close((uv_handle_t *)&t->h, on_timer_close);
}

/* --- light timers: a binary min-heap of deadlines, one uv timer --- */

static int lt_less(const struct loop_ltimer *a, const struct loop_ltimer *b) {
  return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void lt_set(size_t i, struct loop_ltimer *t) {
  g_lt.h[i] = t;
  t->slot = i + 1;
}

static void lt_up(size_t i) {
  struct loop_ltimer *t = g_lt.h[i];
  while (i > 0 && lt_less(t, g_lt.h[(i - 1) / 2])) {
    lt_set(i, g_lt.h[(i - 1) / 2]);
    i = (i - 1) / 2;
  }
  lt_set(i, t);
}

static void lt_down(size_t i) {
  struct loop_ltimer *t = g_lt.h[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= g_lt.n)
      break;
    if (c + 1 < g_lt.n && lt_less(g_lt.h[c + 1], g_lt.h[c]))
      c++;
    if (!lt_less(g_lt.h[c], t))
      break;
    lt_set(i, g_lt.h[c]);
    i = c;
  }
  lt_set(i, t);
}

static void on_ltimer(uv_timer_t *h);

static void lt_arm(void) {
  if (!g_lt.timer_init) {
    uv_timer_init(&g_loop, &g_lt.timer);
    g_lt.timer_init = 1;
  }
  if (!g_lt.n) {
    uv_timer_stop(&g_lt.timer);
    return;
  }
  uint64_t now = uv_now(&g_loop), due = g_lt.h[0]->due;
  uv_timer_start(&g_lt.timer, on_ltimer, due > now ? due - now : 0, 0);
}

static void lt_remove(struct loop_ltimer *t) {
  size_t i = t->slot - 1;
  t->slot = 0;
  struct loop_ltimer *last = g_lt.h[--g_lt.n];
  if (i < g_lt.n) {
    lt_set(i, last);
    lt_down(i);
    lt_up(last->slot - 1);
  }
}

static void on_ltimer(uv_timer_t *h) {
  (void)h;
  uint64_t now = uv_now(&g_loop);
  /* Each callback may arm or stop any timer: take the head each time. */
  while (g_lt.n && g_lt.h[0]->due <= now) {
    struct loop_ltimer *t = g_lt.h[0];
    lt_remove(t);
    t->cb(t->arg);
  }
  lt_arm();
}

void loop_ltimer_init(struct loop_ltimer *t, loop_timer_cb cb, void *arg) {
  memset(t, 0, sizeof(*t));
  t->cb = cb;
  t->arg = arg;
}

void loop_ltimer_start(struct loop_ltimer *t, uint64_t ms) {
  if (t->slot)
    lt_remove(t);
  if (g_lt.n == g_lt.cap) {
    g_lt.cap = g_lt.cap ? g_lt.cap * 2 : 64;
    g_lt.h = xrealloc(g_lt.h, g_lt.cap * sizeof(*g_lt.h));
  }
  t->due = uv_now(&g_loop) + ms;
  t->seq = ++g_lt.seq;
  g_lt.n++;
  lt_set(g_lt.n - 1, t);
  lt_up(g_lt.n - 1);
  if (g_lt.h[0] == t || g_lt.n == 1)
    lt_arm();
}

void loop_ltimer_stop(struct loop_ltimer *t) {
  if (!t->slot)
    return;
  int head = t->slot == 1;
  lt_remove(t);
  if (head)
    lt_arm();
}

int loop_ltimer_active(const struct loop_ltimer *t) {
  return t->slot != 0;
}

size_t loop_ltimer_count(void) {
  return g_lt.n;
}

/* --- thread pool --- */

struct work {
  uv_work_t req;
  loop_work_fn work;
  loop_done_fn done;
  void *arg;
};

static void on_work(uv_work_t *req) {
  struct work *w = container_of(req, struct work, req);
  w->work(w->arg);
}

static void on_work_done(uv_work_t *req, int status) {
  struct work *w = container_of(req, struct work, req);
  g_work_pending--;
  if (w->done)
    w->done(w->arg, status);
  free(w);
}

void loop_work_submit(loop_work_fn work, loop_done_fn done, void *arg) {
  struct work *w = xcalloc(1, sizeof(*w));
  w->work = work;
  w->done = done;
  w->arg = arg;
  g_work_pending++;
  int rc = uv_queue_work(&g_loop, &w->req, on_work, on_work_done);
  if (rc) {
    /* Cannot happen with a valid loop; run inline rather than lose it. */
    work(arg);
    on_work_done(&w->req, 0);
  }
}

void loop_release_memory(void) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

int loop_work_pending(void) {
  return g_work_pending;
}

/* --- the urgent lane ---
 *
 * One thread started on first use.  Jobs go in through `todo` and come
 * back through `done` (both under mu); the async handle wakes the loop,
 * which runs the done callbacks.  The handle keeps the loop alive only
 * while a job is out (ref/unref), like a pending uv_work_t. */

struct lane_job {
  loop_work_fn work;
  loop_done_fn done;
  void *arg;
  struct lane_job *next;
};

static struct {
  int started, quit;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct lane_job *todo, **todo_tail;
  struct lane_job *done, **done_tail;
  uv_async_t async;
  int out; /* submitted, done callback not run yet (loop thread) */
} g_lane = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *lane_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&g_lane.mu);
  for (;;) {
    while (!g_lane.todo && !g_lane.quit)
      pthread_cond_wait(&g_lane.cv, &g_lane.mu);
    if (!g_lane.todo)
      break;
    struct lane_job *j = g_lane.todo;
    g_lane.todo = j->next;
    if (!g_lane.todo)
      g_lane.todo_tail = &g_lane.todo;
    pthread_mutex_unlock(&g_lane.mu);
    j->work(j->arg);
    pthread_mutex_lock(&g_lane.mu);
    j->next = NULL;
    *g_lane.done_tail = j;
    g_lane.done_tail = &j->next;
    uv_async_send(&g_lane.async);
  }
  pthread_mutex_unlock(&g_lane.mu);
  return NULL;
}

static void on_lane_done(uv_async_t *h) {
  (void)h;
  pthread_mutex_lock(&g_lane.mu);
  struct lane_job *j = g_lane.done;
  g_lane.done = NULL;
  g_lane.done_tail = &g_lane.done;
  pthread_mutex_unlock(&g_lane.mu);
  while (j) {
    struct lane_job *next = j->next;
    g_work_pending--;
    if (--g_lane.out == 0)
      uv_unref((uv_handle_t *)&g_lane.async);
    if (j->done)
      j->done(j->arg, 0);
    free(j);
    j = next;
  }
}

void loop_work_submit_urgent(loop_work_fn work, loop_done_fn done, void *arg) {
  if (!g_lane.started) {
    g_lane.todo_tail = &g_lane.todo;
    g_lane.done_tail = &g_lane.done;
    g_lane.quit = 0;
    if (uv_async_init(&g_loop, &g_lane.async, on_lane_done) ||
        pthread_create(&g_lane.th, NULL, lane_main, NULL)) {
      loop_work_submit(work, done, arg); /* cannot happen; the pool then */
      return;
    }
    uv_unref((uv_handle_t *)&g_lane.async);
    g_lane.started = 1;
  }
  struct lane_job *j = xcalloc(1, sizeof(*j));
  j->work = work;
  j->done = done;
  j->arg = arg;
  g_work_pending++;
  if (g_lane.out++ == 0)
    uv_ref((uv_handle_t *)&g_lane.async);
  pthread_mutex_lock(&g_lane.mu);
  *g_lane.todo_tail = j;
  g_lane.todo_tail = &j->next;
  pthread_cond_signal(&g_lane.cv);
  pthread_mutex_unlock(&g_lane.mu);
}

/* loop_close: the thread ends once its queue is empty (nothing should be
 * left: the daemon waits for loop_work_pending() to reach 0). */
static void lane_stop(void) {
  if (!g_lane.started)
    return;
  pthread_mutex_lock(&g_lane.mu);
  g_lane.quit = 1;
  pthread_cond_signal(&g_lane.cv);
  pthread_mutex_unlock(&g_lane.mu);
  pthread_join(g_lane.th, NULL);
  on_lane_done(&g_lane.async); /* what finished meanwhile */
  uv_close((uv_handle_t *)&g_lane.async, NULL);
  g_lane.started = 0;
}

/* --- signals --- */

struct loop_signal {
  uv_signal_t h;
  loop_signal_cb cb;
  void *arg;
};

static void on_signal(uv_signal_t *h, int signum) {
  struct loop_signal *s = container_of(h, struct loop_signal, h);
  s->cb(s->arg, signum);
}

struct loop_signal *loop_signal_new(int signum, loop_signal_cb cb, void *arg) {
  struct loop_signal *s = xcalloc(1, sizeof(*s));
  uv_signal_init(&g_loop, &s->h);
  s->cb = cb;
  s->arg = arg;
  /* Signal watchers keep the loop alive: a daemon with nothing else to
   * do (no database yet) must still wait for SIGTERM. */
  uv_signal_start(&s->h, on_signal, signum);
  return s;
}

static void on_signal_close(uv_handle_t *h) {
  free(container_of((uv_signal_t *)h, struct loop_signal, h));
}

void loop_signal_free(struct loop_signal *s) {
  if (!s)
    return;
  uv_signal_stop(&s->h);
  uv_close((uv_handle_t *)&s->h, on_signal_close);
}

/* --- child processes --- */

struct loop_child {
  uv_process_t h;
  loop_child_cb cb;
  void *arg;
  int pid;
};

static void on_child_close(uv_handle_t *h) {
  free(container_of((uv_process_t *)h, struct loop_child, h));
}

static void on_child_exit(uv_process_t *h, int64_t status, int term_signal) {
  struct loop_child *c = container_of(h, struct loop_child, h);
  loop_child_cb cb = c->cb;
  void *arg = c->arg;
  uv_close((uv_handle_t *)h, on_child_close);
  cb(arg, (int)status, term_signal);
}

int loop_child_spawn(char *const argv[], loop_child_cb cb, void *arg,
                     struct loop_child **out) {
  struct loop_child *c = xcalloc(1, sizeof(*c));
  uv_process_options_t opts;
  uv_stdio_container_t stdio[3];
  memset(&opts, 0, sizeof(opts));
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 1;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  opts.file = argv[0];
  opts.args = (char **)argv;
  opts.exit_cb = on_child_exit;
  opts.stdio = stdio;
  opts.stdio_count = 3;
  c->cb = cb;
  c->arg = arg;
  int rc = uv_spawn(&g_loop, &c->h, &opts);
  if (rc) {
    uv_close((uv_handle_t *)&c->h, on_child_close);
    return rc;
  }
  c->pid = c->h.pid;
  *out = c;
  return 0;
}

int loop_child_kill(struct loop_child *c, int signum) {
  return uv_process_kill(&c->h, signum);
}

int loop_child_pid(const struct loop_child *c) {
  return c->pid;
}

long loop_raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl))
    return -errno;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return (long)rl.rlim_cur;
}
