/*
 * The event loop: the only module (with http.c) that includes <uv.h>.
 * Core code uses this small API: one-shot timers, work on the thread pool,
 * directory watches, signals and child processes.  There is one loop per
 * process, created by loop_init() and destroyed by loop_close().
 */
#ifndef SLUICE_LOOP_H
#define SLUICE_LOOP_H

#include <stddef.h>
#include <stdint.h>

int loop_init(void);
/* Runs until loop_stop() or until nothing is left to do. */
int loop_run(void);
/* Runs the loop until *flag becomes non-zero (for CLI commands; never call
 * from inside a loop callback). */
int loop_run_until(volatile int *flag);
void loop_stop(void);
/* One loop iteration (blocking until something happens); returns non-zero
 * while there is still something to wait for. */
int loop_run_once(void);
/* Closes every remaining handle and the loop; returns 0 if the loop closed
 * cleanly (no leaked handles). */
int loop_close(void);
/* Milliseconds, cached at the start of the loop iteration. */
uint64_t loop_now_ms(void);

/* One-shot timers.  A timer is a heap object owned by its creator. */
struct loop_timer;
typedef void (*loop_timer_cb)(void *arg);
struct loop_timer *loop_timer_new(loop_timer_cb cb, void *arg);
/* (Re)arms the timer to fire once after ms milliseconds. */
void loop_timer_start(struct loop_timer *t, uint64_t ms);
void loop_timer_stop(struct loop_timer *t);
int loop_timer_active(const struct loop_timer *t);
/* Stops and frees the timer (asynchronously; safe inside its callback). */
void loop_timer_free(struct loop_timer *t);

/* Light timers: one-shot as above, but embedded in their owner (a few
 * words, nothing allocated) and all served by one process-wide timer and
 * a min-heap of deadlines, so 100,000 idle databases' periodic work
 * (retention checks, snapshot intervals) costs no timer each.  Millisecond
 * precision; callbacks run in deadline order.  Stop it before its owner
 * is freed (loop_ltimer_stop; safe when not armed, and inside its own
 * callback). */
struct loop_ltimer {
  uint64_t due; /* loop_now_ms() at which it fires */
  size_t slot;  /* 1 + its index in the heap; 0: not armed */
  uint64_t seq; /* arming order: equal deadlines fire first armed first */
  loop_timer_cb cb;
  void *arg;
};
void loop_ltimer_init(struct loop_ltimer *t, loop_timer_cb cb, void *arg);
void loop_ltimer_start(struct loop_ltimer *t, uint64_t ms);
void loop_ltimer_stop(struct loop_ltimer *t);
int loop_ltimer_active(const struct loop_ltimer *t);
/* Light timers armed (every owner's). */
size_t loop_ltimer_count(void);

/* Thread pool.  `work` runs on a pool thread; `done` runs on the loop
 * thread afterwards.  Pool size is bounded (UV_THREADPOOL_SIZE). */
typedef void (*loop_work_fn)(void *arg);
typedef void (*loop_done_fn)(void *arg, int status);
void loop_work_submit(loop_work_fn work, loop_done_fn done, void *arg);
/* Short jobs that must not wait behind the pool's queue: a lease renewal
 * queued behind thousands of database jobs (a stop or a start of 3,000
 * databases) lapsed before it ran.  They run on one thread of their own,
 * in the order submitted, and count in loop_work_pending.  Only for work
 * of a few milliseconds (a lock file written and fsynced), never for work
 * proportional to data size. */
void loop_work_submit_urgent(loop_work_fn work, loop_done_fn done, void *arg);
/* Gives free heap memory back to the system (glibc malloc_trim): for a
 * pool job when a database goes quiet.  Its cost grows with the heap, so
 * never on the loop thread. */
void loop_release_memory(void);
/* Number of jobs submitted (to the pool or the urgent lane) and not yet
 * done. */
int loop_work_pending(void);

/* Directory watches: one inotify watch per directory, shared by every
 * subscriber in it.  The callback gets the name of the entry that changed
 * (NULL if unknown: then check everything). */
struct watch_sub;
typedef void (*watch_cb)(void *arg, const char *name);
/* Subscribes to changes in `dir`.  Returns 0, or a negative error when the
 * directory cannot be watched (e.g. -ENOSPC when the inotify watch limit is
 * reached): the caller then falls back to polling. */
int watch_add(const char *dir, watch_cb cb, void *arg, struct watch_sub **out);
/* Subscribes to the changes of one file of `dir` (and of its -wal, -shm and
 * -journal): found by a hash of its name, O(1) per event whatever the
 * number of subscribers in the directory. */
int watch_add_file(const char *dir, const char *name, watch_cb cb, void *arg,
                   struct watch_sub **out);
void watch_remove(struct watch_sub *sub);
/* A paused subscriber wants no callbacks for now; when all subscribers of
 * a directory are paused the kernel watch is stopped.  After resuming, the
 * subscriber must check for changes itself (events in between are lost). */
void watch_pause(struct watch_sub *sub);
void watch_resume(struct watch_sub *sub);

/* Directory-level subscribers (live discovery): the name of every entry
 * created, deleted or renamed (LOOP_DIR_RENAME) or modified
 * (LOOP_DIR_CHANGE) in `dir`; name NULL if unknown (then rescan).  Returns
 * 0, or a negative error (-ENOSPC: the inotify watch limit is reached;
 * -EACCES...): the caller then polls. */
enum { LOOP_DIR_RENAME = 1, LOOP_DIR_CHANGE = 2 };
struct loop_dirwatch;
typedef void (*loop_dirwatch_cb)(void *arg, const char *name, int events);
int loop_dirwatch_new(const char *dir, loop_dirwatch_cb cb, void *arg,
                      struct loop_dirwatch **out);
/* Stops and frees (asynchronously; safe inside its callback). */
void loop_dirwatch_free(struct loop_dirwatch *w);
/* fs.inotify.max_user_watches, or -1 if unknown (for warnings). */
long loop_inotify_max_watches(void);

/* Signals: SIGINT, SIGTERM, SIGHUP, SIGCHLD... delivered on the loop. */
struct loop_signal;
typedef void (*loop_signal_cb)(void *arg, int signum);
struct loop_signal *loop_signal_new(int signum, loop_signal_cb cb, void *arg);
void loop_signal_free(struct loop_signal *s);

/* Child processes (replicate -exec).  argv[0] is looked up in PATH; the
 * child inherits the environment, stdout and stderr; stdin is /dev/null.
 * `exit_cb` gets the exit status, or 128+signal when killed by a signal. */
struct loop_child;
typedef void (*loop_child_cb)(void *arg, int exit_code, int term_signal);
int loop_child_spawn(char *const argv[], loop_child_cb cb, void *arg,
                     struct loop_child **out);
int loop_child_kill(struct loop_child *c, int signum);
int loop_child_pid(const struct loop_child *c);

/* Raises RLIMIT_NOFILE to its hard limit; returns the new soft limit. */
long loop_raise_nofile(void);

/* Socket readiness (the SFTP backend's SSH session, as curl's sockets are
 * in http.c): a level-triggered watch on a caller-owned fd.  The callback
 * gets the events that are ready, or status < 0 (-errno) on a poll error.
 * Stop or free the watch before closing the fd. */
enum { LOOP_POLL_READ = 1, LOOP_POLL_WRITE = 2 };
struct loop_poll;
typedef void (*loop_poll_cb)(void *arg, int status, int events);
/* Returns 0 and *out, or a negative error (e.g. the fd cannot be polled). */
int loop_poll_new(int fd, loop_poll_cb cb, void *arg, struct loop_poll **out);
/* (Re)starts watching for `events` (LOOP_POLL_READ | LOOP_POLL_WRITE). */
int loop_poll_start(struct loop_poll *p, int events);
void loop_poll_stop(struct loop_poll *p);
/* Stops and frees the watch (asynchronously; safe inside its callback). */
void loop_poll_free(struct loop_poll *p);

#endif
