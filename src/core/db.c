/*
 * A database on the loop.  All engine work happens in jobs on the thread
 * pool, one job per database at a time; the loop only decides what the
 * next job must do (db->pending) and publishes its results.
 */
#include "core/db.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backend.h"
#include "base/err.h"
#include "base/log.h"
#include "core/codec.h"
#include "core/replica.h"
#include "core/shadow.h"
#include "base/util.h"
#include "loop/loop.h"

#define MAX_BACKOFF_MS 30000

struct snap_waiter {
  db_snapshot_cb cb;
  void *arg;
  struct snap_waiter *next;
};

struct val_waiter {
  db_validation_cb cb;
  void *arg;
  struct val_waiter *next;
};

static void submit(struct db *db);
static void close_advance(struct db *db);

/* --- process-wide bounds ---
 *
 * Hot: databases whose engine has its connections open (about 9 fds and
 * 120 KB each).  A job that must open an engine takes a slot first, or
 * queues (FIFO) until one is given back: when a database goes to sleep,
 * finds its file missing, fails, or closes.
 *
 * Light sleepers (DB_LIGHT_FDS fds each) are kept oldest first; the oldest is
 * put in deep sleep (no fd) once it has slept deep_after_ns, or at once when
 * there are more than max_light of them.  One timer for all of them.
 *
 * Snapshots: at most max_snapshots taken or being uploaded at once; the
 * others wait (FIFO), their other work goes on. */
static struct {
  struct db_limits lim;
  size_t hot, light, deep;
  struct list hot_q; /* waiting for a hot slot (db->qlink) */
  size_t queued;
  struct list lru; /* light sleepers, oldest first (db->lru) */
  struct loop_timer *deep_timer;
  size_t snaps;
  struct list snap_q;  /* waiting for a snapshot slot (db->snap_link) */
  struct list start_q; /* waiting for their start check (db->qlink) */
  size_t st_running;   /* start checks on the pool */
  size_t starting;     /* starts not decided yet */
  int abandoned;       /* db_abandon: no job starts any more */
} g = {.lim = {.max_hot = 256,
               .max_light = 8192,
               .deep_after_ns = 600 * NS_PER_SEC,
               .max_snapshots = 4}};

void db_set_limits(const struct db_limits *l) {
  g.lim = *l;
  if (g.lim.max_hot < 1)
    g.lim.max_hot = 1;
  if (g.lim.max_snapshots < 1)
    g.lim.max_snapshots = 1;
}

void db_limits_for(long nofile, size_t n_dbs, int64_t max_hot,
                   int64_t deep_after_ns, struct db_limits *out) {
  memset(out, 0, sizeof(*out));
  long avail = nofile > DB_FD_RESERVE * 2 ? nofile - DB_FD_RESERVE : nofile / 2;
  if (avail < DB_HOT_FDS)
    avail = DB_HOT_FDS;
  /* A quarter of the fds for hot databases, at most 256 of them. */
  size_t hot = max_hot > 0 ? (size_t)max_hot
                           : (size_t)MAX(1, MIN(256, avail / 4 / DB_HOT_FDS));
  if ((long)hot * DB_HOT_FDS > avail)
    hot = (size_t)MAX(1, avail / DB_HOT_FDS);
  out->max_hot = hot;
  long light = avail - (long)hot * DB_HOT_FDS;
  out->max_light = light > 0 ? (size_t)(light / DB_LIGHT_FDS) : 0;
  out->deep_after_ns = deep_after_ns;
  out->max_snapshots = 4;
  (void)n_dbs;
}

void db_get_limits(struct db_limits *out) {
  *out = g.lim;
}

void db_sleep_counts(size_t *hot, size_t *light, size_t *deep, size_t *queued) {
  *hot = g.hot;
  *light = g.light;
  *deep = g.deep;
  *queued = g.queued;
}

static void snap_release(struct db *db);
static void snap_dequeue(struct db *db);

static void hot_release(struct db *db) {
  if (!db->hot)
    return;
  db->hot = 0;
  g.hot--;
  /* A snapshot not yet taken needs the connection: without its hot slot
   * the database gives up its snapshot slot (or its place in that queue)
   * and asks again once it holds a hot slot.  Otherwise 4 databases
   * holding the snapshot slots could wait for hot slots held by databases
   * waiting for snapshot slots (seen: 3,000 databases under ulimit -n
   * 1024 stalled for good). */
  snap_dequeue(db);
  if (db->snap_slot && db->snap_waiters)
    snap_release(db);
  while (!list_empty(&g.hot_q) && g.hot < g.lim.max_hot) {
    struct db *n = container_of(list_pop_head(&g.hot_q), struct db, qlink);
    n->queued = 0;
    g.queued--;
    n->hot = 1; /* its turn: the slot is given, not raced for */
    g.hot++;
    submit(n);
  }
}

static void hot_unqueue(struct db *db);

/* Whether db may open its engine now; else it queues.  One that a replica
 * waits on for a snapshot goes first: that replica holds one of the
 * process-wide upload slots (core/budget.h) meanwhile, and the databases
 * holding the hot slots may be waiting for those.  Queued at the tail, 64
 * of them held every upload slot behind 11,800 databases at a first start
 * of 100,000 (under 20,000 fds), and snapshots stopped for minutes. */
static int hot_acquire(struct db *db) {
  if (db->hot)
    return 1;
  if (g.hot < g.lim.max_hot && list_empty(&g.hot_q)) {
    db->hot = 1;
    g.hot++;
    return 1;
  }
  if (db->snap_waiters && db->queued && g.hot_q.head != &db->qlink)
    hot_unqueue(db); /* (to the front, below) */
  if (!db->queued) {
    db->queued = 1;
    g.queued++;
    assert(!list_linked(&g.start_q, &db->qlink));
    if (db->snap_waiters)
      list_push_head(&g.hot_q, &db->qlink);
    else
      list_push_tail(&g.hot_q, &db->qlink);
  }
  return 0;
}

static void hot_unqueue(struct db *db) {
  if (db->queued) {
    list_remove(&g.hot_q, &db->qlink);
    db->queued = 0;
    g.queued--;
  }
}

static void queue_remove(struct db *db) {
  hot_unqueue(db);
  snap_dequeue(db);
}

static void snap_dequeue(struct db *db) {
  if (db->snap_queued) {
    list_remove(&g.snap_q, &db->snap_link);
    db->snap_queued = 0;
  }
}

static void snap_release(struct db *db) {
  if (!db->snap_slot)
    return;
  db->snap_slot = 0;
  g.snaps--;
  while (!list_empty(&g.snap_q) && g.snaps < g.lim.max_snapshots) {
    struct db *n = container_of(list_pop_head(&g.snap_q), struct db, snap_link);
    n->snap_queued = 0;
    if (!n->hot && !n->opened)
      continue; /* it queues again once it holds a hot slot (hot_release) */
    n->snap_slot = 1;
    g.snaps++;
    submit(n);
  }
}

static int snap_acquire(struct db *db) {
  if (db->snap_slot)
    return 1;
  if (g.snaps < g.lim.max_snapshots && list_empty(&g.snap_q)) {
    db->snap_slot = 1;
    g.snaps++;
    return 1;
  }
  if (!db->snap_queued) {
    db->snap_queued = 1;
    list_push_tail(&g.snap_q, &db->snap_link);
  }
  return 0;
}

static void lru_remove(struct db *db) {
  if (db->sleep != ENGINE_LIGHT)
    return;
  list_remove(&g.lru, &db->lru);
  g.light--;
}

static void on_deep_timer(void *arg);

/* The oldest light sleeper, or NULL. */
static struct db *lru_oldest(void) {
  return g.lru.head ? container_of(g.lru.head, struct db, lru) : NULL;
}

static void deep_schedule(void) {
  if (!lru_oldest() || g.lim.deep_after_ns <= 0)
    return;
  if (!g.deep_timer)
    g.deep_timer = loop_timer_new(on_deep_timer, NULL);
  int64_t due = lru_oldest()->slept_at_ns + g.lim.deep_after_ns;
  int64_t now = time_mono_ns();
  loop_timer_start(g.deep_timer,
                   due > now ? (uint64_t)((due - now) / NS_PER_MS) + 1 : 0);
}

/* The oldest light sleeper goes deep (its job closes the fds). */
static void deepen_oldest(void) {
  struct db *db = lru_oldest();
  log_debug(db->name, NULL, "asleep (deep): no fd");
  lru_remove(db);
  db->sleep = ENGINE_DEEP; /* as far as the loop is concerned, from now */
  g.deep++;
  db_kick(db, DBJ_DEEP);
}

static void on_deep_timer(void *arg) {
  (void)arg;
  int64_t now = time_mono_ns();
  while (lru_oldest() && g.lim.deep_after_ns > 0 &&
         now - lru_oldest()->slept_at_ns >= g.lim.deep_after_ns)
    deepen_oldest();
  deep_schedule();
}

/* The engine went to sleep (job_done). */
static void slept(struct db *db, int how) {
  log_debug(db->name, NULL, "asleep (%s): no connection, %d fds",
            how == ENGINE_LIGHT ? "light" : "deep",
            how == ENGINE_LIGHT ? 2 : 0);
  /* A sleeper keeps no timer (they are made again on demand). */
  loop_timer_free(db->idle_timer);
  loop_timer_free(db->copy_timer);
  db->idle_timer = db->copy_timer = NULL;
  if (db->status_timer && !loop_timer_active(db->status_timer)) {
    loop_timer_free(db->status_timer);
    db->status_timer = NULL;
  }
  watch_resume(db->watch);
  /* A change seen while it went to sleep may be its own last act (the
   * WAL truncated): wake only if the WAL differs from the record. */
  if (db->pending & DBJ_SYNC)
    db->pending |= DBJ_PROBE;
  if (how == ENGINE_LIGHT) {
    db->sleep = ENGINE_LIGHT;
    db->slept_at_ns = time_mono_ns();
    list_push_tail(&g.lru, &db->lru);
    g.light++;
    while (g.light > g.lim.max_light)
      deepen_oldest();
    if (lru_oldest() == db)
      deep_schedule();
  } else {
    db->sleep = ENGINE_DEEP;
    g.deep++;
  }
}

/* The engine is awake again (or closed): forget it slept. */
static void woke(struct db *db) {
  if (db->sleep == ENGINE_LIGHT)
    lru_remove(db);
  else if (db->sleep == ENGINE_DEEP)
    g.deep--;
  db->sleep = 0;
}

const char *db_state_name(enum db_state s) {
  static const char *names[] = {"init",  "waiting", "ready",
                                "error", "closing", "closed"};
  return names[s];
}

static void db_set_state(struct db *db, enum db_state s) {
  if (db->state == s)
    return;
  log_debug(db->name, NULL, "state %s -> %s", db_state_name(db->state),
            db_state_name(s));
  db->state = s;
}

struct db *db_new(struct db_config *cfg) {
  struct db *db = xcalloc(1, sizeof(*db));
  db->cfg = cfg;
  db->eng = xmalloc(sizeof(*db->eng));
  engine_init_struct(db->eng, cfg);
  db->name = db->eng->db_path;
  db->meta = db->eng->meta;
  db->state = DB_INIT;
  db->retry_timer = NULL;
  return db;
}

int db_add_replicas(struct db *db, char *err, size_t errlen) {
  db->replicas = xcalloc(db->cfg->n_replicas + 1, sizeof(struct replica *));
  for (size_t i = 0; i < db->cfg->n_replicas; i++) {
    struct replica_config *rc = &db->cfg->replicas[i];
    char e[512];
    /* Opened with its own path (the config may be its dir entry's). */
    struct replica_config own;
    config_db_replica(db->cfg, i, &own);
    struct backend *b = backend_open(&own, e, sizeof(e));
    config_replica_destroy(&own);
    if (!b) {
      snprintf(err, errlen, "%s: %s", db->name, e);
      return ERR_CONFIG;
    }
    db->replicas[db->n_replicas++] = replica_new(db, rc, b);
  }
  return 0;
}

/* --- the idle stub ---
 * A deep sleeper with no job keeps its engine packed (engine_pack: a
 * third of its size), unpacked again on the loop before its next job
 * (a wake, a probe, a stop): nothing else touches the engine between
 * jobs.  The loop's own copy of the position (gen, index, shadow_size,
 * wal_hdr) is published by every job and stays. */
static void stub_pack(struct db *db) {
  if (!db->eng || db->job || db->eng->asleep != ENGINE_DEEP ||
      db->state == DB_CLOSING || db->state == DB_CLOSED)
    return;
  size_t len;
  db->stub = engine_pack(db->eng, &len);
  db->eng = NULL;
  log_debug(db->name, NULL, "idle stub: engine packed in %zu bytes", len);
}

static void stub_unpack(struct db *db) {
  if (db->eng)
    return;
  db->eng = engine_unpack(db->stub);
  free(db->stub);
  db->stub = NULL;
  log_debug(db->name, NULL, "idle stub: engine unpacked");
}

/* --- jobs ---
 *
 * A job's inputs and outputs live in a struct db_job handed to the pool
 * thread at submit and back to the loop at done (CONVENTIONS.md
 * "Threads").  The loop fills the inputs, the job only reads them and its
 * engine and writes the outputs, the loop reads the outputs after done. */

struct db_job {
  /* in: owned by the job from submit to done */
  struct db *db;
  struct engine *eng; /* lent: db->eng */
  unsigned todo;      /* DBJ_* */
  uint32_t prune_below;
  char newgen_for[GEN_LEN + 1]; /* DBJ_NEWGEN: only if still current */
  uint32_t release_below;       /* a full disk: every replica has these */
  char release_gen[GEN_LEN + 1];
  char *status_text; /* owned; written to the status file */
  /* out: written by the job, read by the loop at done */
  int rc;
  int new_gen;              /* a new generation was started */
  int grew;                 /* the shadow (or its position) changed */
  int ckpt_busy;            /* its checkpoint found commits coming in */
  int ckpt_ok;              /* a checkpoint ran and succeeded */
  char ckpt_err[512];       /* a checkpoint failed: why */
  struct db_snapshot *snap; /* owned, for the snapshot waiters */
  char *val_path;           /* owned: the validation copy, or NULL */
  int val_rc;
  struct pos val_pos;
  int opened;    /* the engine is open and pinned */
  int asleep;    /* engine->asleep at the end */
  int may_open;  /* in: the database holds a hot slot */
  int want_wake; /* out: a probe found the WAL changed, without a slot */
  int sleep_rc;  /* DBJ_SLEEP: engine_sleep's result */
  char gen[GEN_LEN + 1];
  uint32_t index;
  int64_t shadow_size;
  int64_t shadow_phys;
  uint8_t wal_hdr[WAL_HEADER_SIZE];
  int disk_full;
  int64_t wal_size;
  int64_t db_size;
  uint32_t page_size;
  struct engine_stats stats;
  char err[512];    /* the engine's message of the failure */
  char reason[256]; /* why the new generation was started */
  /* DBJ_START: in, each replica's name and identity (replica_identity);
   * out, its position from the local state when start_ok. */
  struct start_rep *rep;
  size_t n_rep;
  int keep_wal;        /* DBJ_CLOSE of a database going dormant */
  int start_ok;        /* asleep from the start, every replica caught up */
  int start_seen;      /* a clean-stop record was there */
  char start_why[200]; /* not proven: why */
};

struct start_rep {
  const char *name; /* borrowed: the replica's (immutable) */
  uint64_t id;
  struct pos pos;
  int64_t last_sync_ns;
};

static int work_close(struct db_job *j) {
  struct engine *e = j->eng;
  /* Nothing new: no pin, no copy (a WAL left with frames is truncated
   * with one plain connection if no one else has it open:
   * engine_close_asleep).  Measured at 3,000 sleepers: waking each to stop
   * it took 48 s. */
  if (e->asleep && !engine_wal_changed(e))
    return engine_close_asleep(e, j->keep_wal);
  if (e->asleep) {
    /* Written since the last sync: wake to copy it, then stop. */
    int rc = engine_open(e);
    if (rc)
      return rc == ERR_NOT_FOUND ? 0 : rc;
  }
  return e->opened ? engine_close(e) : 0;
}

static int work_open(struct db_job *j) {
  struct engine *e = j->eng;
  /* A database deleted (or renamed away) under us: what was committed
   * before is still readable through our descriptors, so copy it first
   * (for the final sync when discovery stops it, or before reopening). */
  if (e->opened) {
    struct stat st;
    if (stat(e->db_path, &st) && errno == ENOENT) {
      int ng = 0;
      engine_sync(e, &ng);
    }
  }
  if (e->opened && engine_replaced(e))
    log_info(e->name, NULL, "%s: reopening", e->m->reason);
  if (e->opened)
    return 0;
  int rc = engine_open(e);
  if (!rc)
    j->new_gen = e->m->reason[0] != '\0';
  return rc;
}

static int work_sync(struct db_job *j) {
  struct engine *e = j->eng;
  if (j->todo & DBJ_NEWGEN && strcmp(e->gen, j->newgen_for))
    log_debug(e->name, NULL,
              "new generation for %s not needed: generation is now %s",
              j->newgen_for, e->gen);
  else if (j->todo & DBJ_NEWGEN) {
    int rc = engine_new_generation(e, "replica lost continuity");
    if (rc)
      return rc;
    j->new_gen = 1;
  }
  int ng = 0;
  int rc = engine_sync(e, &ng);
  j->new_gen |= ng;
  return rc;
}

/* An idle or size-triggered checkpoint.  Returns an error only when the
 * checkpoint lost the pin (nothing else can go on then). */
static int work_checkpoint(struct db_job *j) {
  struct engine *e = j->eng;
  int64_t now = time_mono_ns();
  if (j->todo & DBJ_RESTART)
    engine_restart_soon(e);
  if (j->todo & DBJ_SNAPSHOT ||
      !engine_should_checkpoint(e, now, (j->todo & DBJ_CHECKPOINT) != 0))
    return 0;
  int crc = engine_checkpoint(e, (j->todo & DBJ_CHECKPOINT) != 0);
  j->ckpt_busy = crc == ERR_BUSY;
  j->ckpt_ok = crc == 0;
  if (crc && crc != ERR_BUSY)
    snprintf(j->ckpt_err, sizeof(j->ckpt_err), "%s",
             e->m->err[0] ? e->m->err : err_str(crc));
  if (!e->opened || e->pin < 0)
    return crc ? crc : ERR_SQLITE;
  return 0;
}

static int work_snapshot(struct db_job *j) {
  struct engine *e = j->eng;
  struct db_snapshot *s = xcalloc(1, sizeof(*s));
  s->path = xasprintf("%s/snapshot.%d.lz4.tmp", e->meta, (int)getpid());
  s->fd = open(s->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (s->fd < 0) {
    int rc = -errno;
    snprintf(e->m->err, sizeof(e->m->err), "create %s: %s", s->path,
             strerror(errno));
    free(s->path);
    free(s);
    return rc;
  }
  unlink(s->path); /* nothing left behind, whatever happens */
  int rc = engine_snapshot(e, s->fd, &s->size, s->gen, &s->index);
  s->offset = e->shadow_size; /* the image's end (core/snapshot.h) */
  if (rc) {
    close(s->fd);
    free(s->path);
    free(s);
    return rc;
  }
  j->snap = s;
  return 0;
}

static void work_validate(struct db_job *j) {
  struct engine *e = j->eng;
  j->val_path = xasprintf("%s/validate.%d.db.tmp", e->meta, (int)getpid());
  j->val_rc = engine_validation_copy(e, j->val_path, &j->val_pos);
}

static void work_status(struct db_job *j) {
  struct engine *e = j->eng;
  char *path = path_join(e->meta, DB_STATUS_FILE);
  if (access(e->meta, F_OK) == 0)
    file_write_atomic(path, j->status_text, strlen(j->status_text), 0600);
  free(path);
}

/* DBJ_START: every replica's position at the stop (the status file the
 * close job wrote, DB_STATUS_FILE) is the end of the shadow WAL the clean-
 * stop record describes, and the replica is the one configured now (its
 * identity: type, name and location); then the engine proves the rest
 * (engine_start_asleep).  Otherwise nothing changes: a full start. */
static void work_start(struct db_job *j) {
  struct engine *e = j->eng;
  struct shadow_stop rec;
  if (shadow_read_stop(e->meta, &rec)) {
    snprintf(j->start_why, sizeof(j->start_why), "no clean-stop record");
    return;
  }
  j->start_seen = 1;
  char *path = path_join(e->meta, DB_STATUS_FILE);
  struct buf b;
  int rc = file_read_all(path, 1 << 16, &b);
  free(path);
  if (rc) {
    snprintf(j->start_why, sizeof(j->start_why), "no replica positions saved");
    return;
  }
  buf_append(&b, "", 1);
  size_t found = 0;
  for (char *line = (char *)b.data, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    char name[128], gen[GEN_LEN + 2], state[32];
    unsigned index;
    long long off, pend, last, errs;
    unsigned long long id;
    if (sscanf(line, "replica %127s %17s %u %lld %lld %lld %lld %31s %llx",
               name, gen, &index, &off, &pend, &last, &errs, state, &id) != 9)
      continue;
    for (size_t k = 0; k < j->n_rep; k++) {
      struct start_rep *r = &j->rep[k];
      if (strcmp(r->name, name) || r->id != id || r->pos.gen[0])
        continue;
      if (strcmp(gen, rec.gen) || index != rec.index || off != rec.size)
        break; /* behind at the stop (or ahead: another history) */
      memcpy(r->pos.gen, rec.gen, sizeof(r->pos.gen));
      r->pos.index = index;
      r->pos.offset = off;
      r->last_sync_ns = last;
      found++;
      break;
    }
  }
  buf_destroy(&b);
  if (found != j->n_rep) {
    snprintf(j->start_why, sizeof(j->start_why),
             "a replica was not caught up at the stop (or is another one)");
    return;
  }
  if (engine_start_asleep(e, j->start_why, sizeof(j->start_why)))
    return;
  j->start_ok = 1;
}

/* Runs on a pool thread: touches only the job and its engine. */
static void job_work(void *arg) {
  struct db_job *j = arg;
  struct engine *e = j->eng;
  unsigned todo = j->todo;
  int64_t before_size = engine_copied_end(e);
  uint32_t before_index = e->index;
  char before_gen[GEN_LEN + 1];
  memcpy(before_gen, e->gen, sizeof(before_gen));
  int rc = 0;
  engine_keep_msgs(e);

  /* Work that needs no connection: a sleeping engine stays asleep. */
  unsigned wake = todo & ~(unsigned)(DBJ_STATUS | DBJ_PRUNE | DBJ_DEEP |
                                     DBJ_PROBE | DBJ_SLEEP);
  if (e->asleep && (todo & DBJ_PROBE) && wake == DBJ_SYNC) {
    if (!engine_wal_changed(e))
      wake = 0; /* nothing was written since it went to sleep */
    else if (!j->may_open)
      wake = 0, j->want_wake = 1; /* the loop gets a slot first */
  }
  if (todo & DBJ_START)
    work_start(j);
  else if (todo & DBJ_CLOSE)
    rc = work_close(j);
  else if (wake || (e->opened && todo & DBJ_SLEEP)) {
    if (!(rc = work_open(j)) && !(rc = work_sync(j)) &&
        !(rc = work_checkpoint(j)) &&
        !(rc = todo & DBJ_SNAPSHOT ? work_snapshot(j) : 0)) {
      if (todo & DBJ_VALIDATE)
        work_validate(j);
      if (todo & DBJ_PRUNE && j->prune_below > 0)
        shadow_prune(e->meta, e->gen,
                     MIN(j->prune_below, resync_prune_floor(e)));
      if (todo & DBJ_SLEEP && !(todo & (DBJ_SNAPSHOT | DBJ_VALIDATE)) &&
          !j->ckpt_busy && !e->disk_full &&
          engine_copied_end(e) == before_size && e->index == before_index)
        j->sleep_rc = engine_sleep(e, ENGINE_LIGHT);
      else if (todo & DBJ_SLEEP)
        j->sleep_rc = ERR_BUSY;
      if (e->disk_full && j->release_below && !strcmp(e->gen, j->release_gen))
        engine_release_uploaded(e, j->release_below);
    }
  } else {
    if (todo & DBJ_PRUNE && j->prune_below > 0 && e->gen[0])
      shadow_prune(e->meta, e->gen, MIN(j->prune_below, resync_prune_floor(e)));
    if (todo & DBJ_DEEP)
      engine_deepen(e);
  }
  if (todo & DBJ_STATUS && j->status_text)
    work_status(j);
  if (todo & DBJ_CHECKPOINT)
    loop_release_memory(); /* the database went quiet (on_idle) */
  j->grew = engine_copied_end(e) != before_size || e->index != before_index ||
            strcmp(e->gen, before_gen) != 0;
  j->rc = rc;
  j->opened = e->opened;
  j->asleep = e->asleep;
  memcpy(j->gen, e->gen, sizeof(j->gen));
  j->index = e->index;
  j->shadow_size = engine_copied_end(e);
  j->shadow_phys = engine_shadow_phys(e);
  memcpy(j->wal_hdr, e->hdr_raw, sizeof(j->wal_hdr));
  j->disk_full = e->disk_full;
  j->wal_size = e->wal_size;
  j->db_size = e->db_size;
  j->page_size = e->page_size;
  j->stats = e->stats;
  memcpy(j->err, e->m->err, sizeof(j->err));
  snprintf(j->reason, sizeof(j->reason), "%s", e->m->reason);
  if (e->asleep)
    engine_drop_msgs(e); /* a sleeper keeps no message buffers */
}

static void publish(struct db *db, const struct db_job *j) {
  memcpy(db->gen, j->gen, sizeof(db->gen));
  db->index = j->index;
  db->shadow_size = j->shadow_size;
  db->shadow_phys = j->shadow_phys;
  memcpy(db->wal_hdr, j->wal_hdr, sizeof(db->wal_hdr));
  db->disk_full = j->disk_full;
  db->wal_size = j->wal_size;
  db->db_size = j->db_size;
  db->page_size = j->page_size;
  db->stats = j->stats;
}

static void job_free(struct db_job *j) {
  if (j->snap) {
    close(j->snap->fd);
    free(j->snap->path);
    free(j->snap);
  }
  if (j->val_path) {
    unlink(j->val_path);
    free(j->val_path);
  }
  free(j->status_text);
  free(j->rep);
  free(j);
}

static void on_retry(void *arg) {
  db_kick(arg, DBJ_SYNC);
}

static int may_sleep(const struct db *db) {
  return !db->no_sleep && db->state != DB_CLOSING && !db->snap_waiters &&
         !db->val_waiters;
}

/* Whether every replica knows its position in the current generation: one
 * still resuming (or about to ask for a snapshot) needs the connection, and
 * a database that slept meanwhile would queue for a hot slot again behind
 * every other database (a first start of 3,000 under ulimit -n 1024 opened
 * each twice). */
static int replicas_settled(const struct db *db) {
  for (size_t i = 0; i < db->n_replicas; i++) {
    const struct replica *r = db->replicas[i];
    if (r->state == R_RESUME || r->state == R_SNAPSHOT ||
        pos_is_zero(&r->pos) || strcmp(r->pos.gen, db->gen))
      return 0;
  }
  return 1;
}

/* How long a database stays awake for its replicas to settle (a store
 * that fails must not keep the hot slot). */
#define SETTLE_WAIT_NS (5 * NS_PER_SEC)
#define SETTLE_POLL_MS 100

static void on_idle(void *arg) {
  struct db *db = arg;
  int sleep = may_sleep(db);
  if (!db->no_sleep && db->state != DB_CLOSING &&
      (!sleep || !replicas_settled(db)) &&
      time_mono_ns() - db->opened_at_ns < SETTLE_WAIT_NS) {
    loop_timer_start(db->idle_timer, SETTLE_POLL_MS);
    return;
  }
  db_kick(db, DBJ_CHECKPOINT | (sleep ? DBJ_SLEEP : 0));
}

static void fail_snapshot_waiters(struct db *db, int rc) {
  struct snap_waiter *w = db->snap_waiters;
  db->snap_waiters = NULL;
  while (w) {
    struct snap_waiter *next = w->next;
    w->cb(w->arg, rc, NULL);
    free(w);
    w = next;
  }
}

/* Hands the job's validation copy (if any) to the first waiter; the others
 * (rare) ask again. */
static void deliver_validation(struct db *db, struct db_job *j, int rc) {
  struct val_waiter *w = db->val_waiters;
  db->val_waiters = NULL;
  char *path = j ? j->val_path : NULL;
  if (j)
    j->val_path = NULL;
  int first = 1;
  while (w) {
    struct val_waiter *next = w->next;
    if (first && !rc && path) {
      w->cb(w->arg, 0, path, &j->val_pos);
      free(path);
      path = NULL; /* the waiter owns the file now */
    } else {
      w->cb(w->arg, rc ? rc : ERR_BUSY, NULL, NULL);
    }
    first = 0;
    free(w);
    w = next;
  }
  if (path) {
    unlink(path);
    free(path);
  }
}

void db_request_validation(struct db *db, db_validation_cb cb, void *arg) {
  struct val_waiter *v = xcalloc(1, sizeof(*v));
  v->cb = cb;
  v->arg = arg;
  v->next = db->val_waiters;
  db->val_waiters = v;
  db_kick(db, DBJ_VALIDATE);
}

/* Takes ownership of s. */
static void deliver_snapshot(struct db *db, struct db_snapshot *s) {
  struct snap_waiter *w = db->snap_waiters;
  db->snap_waiters = NULL;
  int n = 0;
  for (struct snap_waiter *p = w; p; p = p->next)
    n++;
  s->refs = n;
  if (n == 0) {
    close(s->fd);
    free(s->path);
    free(s);
    snap_release(db);
    return;
  }
  log_info(db->name, NULL, "snapshot taken: generation=%s index=%08x size=%lld",
           s->gen, s->index, (long long)s->size);
  while (w) {
    struct snap_waiter *next = w->next;
    w->cb(w->arg, 0, s);
    free(w);
    w = next;
  }
}

/* close_cb may free the database: from a timer of its own, never from
 * inside a replica's callback (an HTTP abort's, say). */
static void on_quiet(void *arg) {
  struct db *db = arg;
  assert(db->state == DB_CLOSED && !db->quiescing);
  if (db->close_cb)
    db->close_cb(db->close_arg);
}

static void on_replica_quiet(void *arg) {
  struct db *db = arg;
  assert(db->state == DB_CLOSED && db->quiescing > 0);
  if (--db->quiescing > 0)
    return;
  db->quiet_timer = loop_timer_new(on_quiet, db);
  loop_timer_start(db->quiet_timer, 0);
}

static void done_close(struct db *db, struct db_job *j) {
  if (j->rc)
    log_error(db->name, NULL, "close: %s", j->err);
  db_set_state(db, DB_CLOSED);
  /* A retention pass or a validation restore may still be in flight
   * (replica_flush only asked them to end): canceled and waited for, so
   * that db_free after close_cb frees nothing a callback still uses. */
  db->quiescing = (int)db->n_replicas + 1;
  for (size_t i = 0; i < db->n_replicas; i++)
    replica_quiesce(db->replicas[i], on_replica_quiet, db);
  on_replica_quiet(db);
}

/* No database file (yet): nothing to copy, nothing pending.  While closing,
 * that is a finished final sync. */
static void done_waiting(struct db *db, struct db_job *j) {
  if (db->state != DB_CLOSING) {
    if (db->state != DB_WAITING)
      log_info(db->name, NULL, "waiting for database file to be created");
    db_set_state(db, DB_WAITING);
  }
  if (j->todo & DBJ_SNAPSHOT)
    fail_snapshot_waiters(db, ERR_NO_GENERATION);
}

static void done_error(struct db *db, struct db_job *j) {
  if (strcmp(str_or_empty(db->last_err), j->err)) {
    log_error(db->name, NULL, "sync error: %s",
              j->err[0] ? j->err : err_str(j->rc));
    str_set(&db->last_err, j->err);
  }
  if (db->state != DB_CLOSING)
    db_set_state(db, DB_ERROR);
  if (j->todo & DBJ_SNAPSHOT)
    fail_snapshot_waiters(db, j->rc);
  db->backoff_ms =
      db->backoff_ms ? MIN(db->backoff_ms * 2, MAX_BACKOFF_MS) : 250;
  if (!db->retry_timer)
    db->retry_timer = loop_timer_new(on_retry, db);
  if (db->state != DB_CLOSING)
    loop_timer_start(db->retry_timer, (uint64_t)db->backoff_ms);
  else
    loop_timer_free(db->retry_timer), db->retry_timer = NULL;
}

static void done_ok(struct db *db, struct db_job *j) {
  if (db->last_err)
    log_info(db->name, NULL, "sync recovered");
  str_set(&db->last_err, NULL);
  db->backoff_ms = 0;
  if (db->state != DB_CLOSING)
    db_set_state(db, DB_READY);
  if (j->new_gen)
    log_info(db->name, NULL, "sync: new generation: generation=%s reason=%s",
             db->gen, j->reason);
  int sleep_busy = (j->todo & DBJ_SLEEP) && j->sleep_rc == ERR_BUSY;
  if ((j->todo & DBJ_SLEEP) && j->sleep_rc && j->sleep_rc != ERR_BUSY &&
      !db->no_sleep) {
    db->no_sleep = 1;
    log_info(db->name, NULL, "stays awake when idle: %s",
             j->sleep_rc == -ENOTSUP
                 ? "the file system has whole-second timestamps"
                 : err_str(j->sleep_rc));
  }
  if (j->grew || (j->todo & DBJ_CHECKPOINT && j->ckpt_busy) || sleep_busy) {
    if (j->grew)
      db->last_change_ns = time_now_ns();
    /* Checkpoint a database once it goes quiet (after at most 1s, or
     * checkpoint-interval if shorter): the WAL is then fully
     * checkpointed, the next commit restarts it, and an application's
     * own wal_checkpoint(TRUNCATE) at a quiet time succeeds at once.
     * One wakeup per quiet period (again, backing off, if a commit came
     * in the middle of it), none while idle. */
    if (db->cfg->checkpoint_interval > 0 && db->state != DB_CLOSING) {
      if (!db->idle_timer)
        db->idle_timer = loop_timer_new(on_idle, db);
      int64_t quiet = MIN(db->cfg->checkpoint_interval, NS_PER_SEC);
      /* A long application read keeps every checkpoint from completing. */
      db->idle_retries = j->grew ? 0 : MIN(db->idle_retries + 1, 5);
      quiet <<= db->idle_retries;
      if (!list_empty(&g.hot_q) && j->grew && !db->no_sleep)
        quiet = 0; /* others wait for the slot: sleep as soon as quiet */
      loop_timer_start(db->idle_timer, (uint64_t)(quiet / NS_PER_MS));
    }
  } else if (j->opened && may_sleep(db) && db->cfg->checkpoint_interval > 0 &&
             db->state != DB_CLOSING) {
    /* Awake for something else (a snapshot, a validation): sleep again
     * once quiet. */
    if (!db->idle_timer)
      db->idle_timer = loop_timer_new(on_idle, db);
    if (!loop_timer_active(db->idle_timer))
      loop_timer_start(
          db->idle_timer,
          !list_empty(&g.hot_q)
              ? 0
              : (uint64_t)(MIN(db->cfg->checkpoint_interval, NS_PER_SEC) /
                           NS_PER_MS));
  }
  if (j->snap) {
    struct db_snapshot *s = j->snap;
    j->snap = NULL;
    deliver_snapshot(db, s);
    /* The waiters kept it awake (may_sleep above): sleep once quiet, or it
     * would hold its hot slot until the next commit. */
    if (db->opened && may_sleep(db) && db->cfg->checkpoint_interval > 0) {
      if (!db->idle_timer)
        db->idle_timer = loop_timer_new(on_idle, db);
      if (!loop_timer_active(db->idle_timer))
        loop_timer_start(db->idle_timer,
                         !list_empty(&g.hot_q) ? 0 : SETTLE_POLL_MS);
    }
  }
}

/* One line when checkpoints start failing (or fail differently), one when
 * they work again: a full disk fails every attempt, several a second. */
static void note_checkpoint(struct db *db, const struct db_job *j) {
  if (j->ckpt_err[0]) {
    if (str_set(&db->last_ckpt_err, j->ckpt_err))
      log_warn(db->name, NULL, "checkpoint failed: %s", j->ckpt_err);
  } else if (j->ckpt_ok && db->last_ckpt_err) {
    log_info(db->name, NULL, "checkpoint recovered");
    str_set(&db->last_ckpt_err, NULL);
  }
}

/* --- start (DB_START_*) ---
 * Start checks run a few at a time (each a handful of stats and small
 * reads on the pool), so that 100,000 of them queued at once do not sit
 * in front of every other pool job. */
#define START_CHECKS 16

/* Which store a replica is: its status line carries this, so a start
 * trusts a saved position only for the replica it was saved for. */
static uint64_t replica_identity(const struct replica *r) {
  const struct replica_config *c = r->cfg;
  /* The replica's own path (its config may be its dir entry's). */
  size_t ri = 0;
  while (ri < r->db->cfg->n_replicas && &r->db->cfg->replicas[ri] != c)
    ri++;
  char *path = ri < r->db->cfg->n_replicas
                   ? config_db_replica_path(r->db->cfg, ri)
                   : (c->path ? xstrdup(c->path) : NULL);
  const char *parts[] = {r->name,         c->type,   path,    c->bucket,
                         c->endpoint,     c->region, c->host, c->user,
                         c->account_name, r->b->desc};
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
    for (const char *p = parts[i] ? parts[i] : ""; *p; p++)
      h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
  }
  free(path);
  return h;
}

int db_start_decided(const struct db *db) {
  /* A full start that can open now (a hot slot free) has opened; only
   * those beyond the process-wide bound are left queued. */
  return db->start == DB_START_ASLEEP || db->state != DB_INIT ||
         (db->start == DB_START_FULL && db->queued);
}

size_t db_starting(void) {
  return g.starting;
}

static void start_decided(struct db *db, int how) {
  if (db->start != DB_START_ASLEEP && db->start != DB_START_FULL && g.starting)
    g.starting--;
  db->start = how;
}

static void start_check(struct db *db) {
  db->start = DB_START_CHECK;
  g.st_running++;
  db->pending |= DBJ_START;
  submit(db);
}

static void start_next(void) {
  while (!list_empty(&g.start_q) && g.st_running < START_CHECKS) {
    struct db *n = container_of(list_pop_head(&g.start_q), struct db, qlink);
    start_check(n);
  }
}

static void start_unqueue(struct db *db) {
  if (db->start != DB_START_QUEUED)
    return;
  list_remove(&g.start_q, &db->qlink);
  start_decided(db, DB_START_FULL);
}

/* A start's lines: quiet for a dormant database starting again. */
static enum log_level start_level(const struct db *db) {
  return db->revived ? LOG_DEBUG : LOG_INFO;
}

static void start_done(struct db *db, struct db_job *j) {
  g.st_running--;
  start_next();
  if (j->start_ok) {
    start_decided(db, DB_START_ASLEEP);
    for (size_t k = 0; k < db->n_replicas && k < j->n_rep; k++)
      replica_resume_local(db->replicas[k], &j->rep[k].pos,
                           j->rep[k].last_sync_ns);
    if (db->state != DB_CLOSING)
      db_set_state(db, DB_READY);
    log_msg(start_level(db), db->name, NULL,
            "asleep from the start: generation %s index %08x offset %lld is "
            "replicated and unchanged since sluice stopped (no connection, "
            "no request)",
            db->gen, db->index, (long long)db->shadow_size);
    return;
  }
  start_decided(db, DB_START_FULL);
  if (j->start_seen)
    log_info(db->name, NULL, "full start: %s", j->start_why);
  else
    log_debug(db->name, NULL, "full start: %s", j->start_why);
  db->pending |= DBJ_SYNC;
}

/* On the loop: the job is handed back; publish and act on its outputs. */
/* A job that leaves nothing else to do: the next one, or the close's
 * next step. */
static void job_end(struct db *db, struct db_job *j) {
  job_free(j);
  if (db->pending)
    submit(db);
  if (db->state == DB_CLOSING)
    close_advance(db);
}

static void job_done_inner(void *arg, int status) {
  struct db_job *j = arg;
  struct db *db = j->db;
  (void)status;
  assert(db->job == j);
  db->job = NULL;
  publish(db, j);
  note_checkpoint(db, j);
  unsigned todo = j->todo;
  if (j->opened && !db->opened)
    db->opened_at_ns = time_mono_ns();
  if (j->opened && db->start == DB_START_ASLEEP)
    db->start = DB_START_FULL; /* woken: asleep from the start no more */
  db->opened = j->opened;
  if (j->opened && db->sleep)
    woke(db);
  if (j->asleep && !db->sleep)
    slept(db, j->asleep);
  else if (!j->asleep && !j->opened && db->sleep)
    woke(db); /* closed, or its file is gone */
  if (!j->opened)
    hot_release(db);
  if (j->want_wake)
    db->pending |= DBJ_SYNC; /* written while asleep: wake, with a slot */
  if ((todo & DBJ_SNAPSHOT) && !j->snap)
    snap_release(db);

  if (todo & DBJ_START) {
    start_done(db, j);
    job_end(db, j);
    return;
  }
  if (todo == DBJ_STATUS) {
    job_end(db, j);
    return;
  }
  if (todo & DBJ_CLOSE) {
    done_close(db, j);
    job_free(j);
    return;
  }
  if (j->rc == ERR_NOT_FOUND && !j->opened)
    done_waiting(db, j);
  else if (j->rc)
    done_error(db, j);
  else
    done_ok(db, j);
  if (todo & DBJ_VALIDATE)
    deliver_validation(db, j, j->rc ? j->rc : j->val_rc);
  if (j->grew || j->new_gen || (todo & DBJ_SNAPSHOT) == 0) {
    for (size_t i = 0; i < db->n_replicas; i++)
      replica_notify(db->replicas[i]);
  }
  job_free(j);
  if (db->pending && (db->state != DB_ERROR || db->close_phase))
    submit(db);
  if (db->state == DB_CLOSING)
    close_advance(db);
}

static void (*g_stub_hook)(struct db *db);

void db_set_stub_hook(void (*fn)(struct db *db)) {
  g_stub_hook = fn;
}

void db_stub_check(struct db *db) {
  if (g_stub_hook && db_is_stub(db))
    g_stub_hook(db);
}

int db_is_stub(const struct db *db) {
  return db->stub && !db->job && !db->pending && db->state == DB_READY &&
         db->close_phase == DB_CLOSE_NONE;
}

static void job_done(void *arg, int status) {
  struct db_job *j = arg;
  struct db *db = j->db;
  int closed = (j->todo & DBJ_CLOSE) != 0; /* db may be freed by its cb */
  job_done_inner(arg, status);
  if (!closed) {
    stub_pack(db);
    db_stub_check(db);
  }
}

static char *format_status(struct db *db) {
  struct buf b;
  buf_init(&b, 0);
  buf_appendf(&b, "pid %d\n", (int)getpid());
  for (size_t i = 0; i < db->n_replicas; i++) {
    struct replica *r = db->replicas[i];
    buf_appendf(&b, "replica %s %s %u %lld %lld %lld %lld %s %016llx\n",
                r->name, r->pos.gen[0] ? r->pos.gen : "-", r->pos.index,
                (long long)r->pos.offset, (long long)r->pending_since_ns,
                (long long)r->last_sync_ns, (long long)r->upload_errors,
                replica_state_name(r->state),
                (unsigned long long)replica_identity(r));
  }
  char *s = (char *)buf_steal(&b, NULL);
  return s ? s : xstrdup("");
}

static void on_status_timer(void *arg) {
  struct db *db = arg;
  /* Made again by the next change: an idle database keeps no timer. */
  loop_timer_free(db->status_timer);
  db->status_timer = NULL;
  free(db->status_text);
  db->status_text = format_status(db);
  db_kick(db, DBJ_STATUS);
}

void db_status_changed(struct db *db) {
  if (db->state == DB_CLOSED)
    return;
  if (!db->status_timer)
    db->status_timer = loop_timer_new(on_status_timer, db);
  if (!loop_timer_active(db->status_timer))
    loop_timer_start(db->status_timer, 200);
}

/* Whether a job doing `todo` opens the engine. */
static int opens(const struct db *db, unsigned todo) {
  if (db->opened || todo & (DBJ_CLOSE | DBJ_START))
    return 0; /* (a start check opens nothing: engine_start_asleep) */
  unsigned wake = todo & ~(unsigned)(DBJ_STATUS | DBJ_PRUNE | DBJ_DEEP |
                                     DBJ_PROBE | DBJ_SLEEP);
  if (db->sleep && (todo & DBJ_PROBE) && wake == DBJ_SYNC)
    return 0; /* a probe (a stat) first: no slot for a spurious event */
  return wake != 0;
}

/* The index below which every replica holds the current generation's
 * shadow files, 0 if unknown. */
static uint32_t replicas_hold_below(const struct db *db) {
  uint32_t min = UINT32_MAX;
  for (size_t i = 0; i < db->n_replicas; i++) {
    const struct replica *r = db->replicas[i];
    if (pos_is_zero(&r->pos) || strcmp(r->pos.gen, db->gen))
      return 0;
    min = MIN(min, r->pos.index);
  }
  return min == UINT32_MAX ? 0 : min;
}

static void submit(struct db *db) {
  if (db->job || !db->pending || db->state == DB_CLOSED || g.abandoned ||
      db->start == DB_START_QUEUED)
    return; /* (a start check first: everything else waits for it) */
  if (db->close_phase == DB_CLOSE_FINAL)
    db->pending &= DBJ_CLOSE | DBJ_STATUS;
  unsigned todo = db->pending;
  if (todo & DBJ_START)
    todo = DBJ_START; /* alone: the rest follows once it is decided */
  /* The hot slot first: a database waiting for one never holds a snapshot
   * slot (those holding hot slots could wait for it forever). */
  if (opens(db, todo) && !hot_acquire(db)) {
    /* Without a slot, only what needs no connection runs now. */
    todo &= DBJ_STATUS | DBJ_PRUNE | DBJ_DEEP;
    if (!todo)
      return;
  }
  if ((todo & DBJ_SNAPSHOT) && !snap_acquire(db)) {
    todo &= ~(unsigned)DBJ_SNAPSHOT; /* the rest goes on meanwhile */
    if (!todo)
      return;
  }
  struct db_job *j = xcalloc(1, sizeof(*j));
  stub_unpack(db);
  j->db = db;
  j->eng = db->eng;
  j->todo = todo;
  j->may_open = db->hot || db->opened;
  j->prune_below = db->prune_below;
  j->keep_wal = db->park;
  j->release_below = db->disk_full ? replicas_hold_below(db) : 0;
  memcpy(j->release_gen, db->gen, sizeof(j->release_gen));
  memcpy(j->newgen_for, db->newgen_for, sizeof(j->newgen_for));
  if (j->todo & DBJ_STATUS) {
    j->status_text = db->status_text; /* the job owns it now */
    db->status_text = NULL;
  }
  if (todo & DBJ_START) {
    j->rep = xcalloc(db->n_replicas + 1, sizeof(*j->rep));
    j->n_rep = db->n_replicas;
    for (size_t k = 0; k < db->n_replicas; k++) {
      j->rep[k].name = db->replicas[k]->name;
      j->rep[k].id = replica_identity(db->replicas[k]);
    }
  }
  db->pending &= ~todo;
  db->job = j;
  loop_work_submit(job_work, job_done, j);
}

void db_kick(struct db *db, unsigned what) {
  if (db->state == DB_CLOSED)
    return;
  db->pending |= what;
  if (db->state == DB_ERROR && !(what & DBJ_CLOSE) && db->retry_timer &&
      loop_timer_active(db->retry_timer))
    return; /* wait for the backoff */
  submit(db);
}

int db_request_new_generation(struct db *db, const char *gen) {
  if (!gen[0] || strcmp(gen, db->gen))
    return 0; /* stale: the engine has moved on already */
  snprintf(db->newgen_for, sizeof(db->newgen_for), "%s", gen);
  db_kick(db, DBJ_NEWGEN);
  return 1;
}

/* --- watching --- */

#define COPY_BATCH_MS 50

static void on_copy_timer(void *arg) {
  struct db *db = arg;
  db->last_copy_ms = loop_now_ms();
  watch_resume(db->watch);
  db_kick(db, DBJ_SYNC);
}

static void on_dir_change(void *arg, const char *name) {
  struct db *db = arg;
  const char *base = path_base(db->name);
  size_t n = strlen(base);
  if (name) {
    /* Only our database's -wal (or the database itself appearing). */
    if (strncmp(name, base, n))
      return;
    const char *rest = name + n;
    if (strcmp(rest, "-wal") && !(rest[0] == '\0' && db->state == DB_WAITING))
      return;
  }
  /* The first change after a quiet moment is copied at once; a burst is
   * copied in batches, at most one copy per COPY_BATCH_MS (the frames are
   * safe in the pinned WAL meanwhile): far fewer jobs and larger appends
   * to the shadow WAL.  Measured: an application fsyncing every commit
   * kept 0.64-0.68 of its throughput instead of 0.35-0.46. */
  if (db->sleep) {
    /* Asleep: wake if the -wal really changed (a stat on the pool). */
    db_kick(db, DBJ_SYNC | DBJ_PROBE);
    return;
  }
  uint64_t now = loop_now_ms();
  uint64_t batch = COPY_BATCH_MS;
  if (db->last_copy_ms && now - db->last_copy_ms < batch) {
    if (!db->copy_timer)
      db->copy_timer = loop_timer_new(on_copy_timer, db);
    if (!loop_timer_active(db->copy_timer))
      loop_timer_start(db->copy_timer, batch - (now - db->last_copy_ms));
    watch_pause(db->watch); /* the timer copies whatever comes meanwhile */
    return;
  }
  db->last_copy_ms = now;
  db_kick(db, DBJ_SYNC);
}

static void on_poll(void *arg) {
  struct db *db = arg;
  db_kick(db, DBJ_SYNC);
  loop_timer_start(db->poll_timer,
                   (uint64_t)(db->cfg->monitor_interval / NS_PER_MS));
}

void db_start(struct db *db) {
  char *dir = path_dir(db->name);
  int rc =
      watch_add_file(dir, path_base(db->name), on_dir_change, db, &db->watch);
  if (rc) {
    log_warn(db->name, NULL,
             "cannot watch %s (%s): polling every monitor-interval instead",
             dir, strerror(-rc));
    db->watch = NULL;
    if (db->cfg->monitor_interval > 0) {
      db->poll_timer = loop_timer_new(on_poll, db);
      loop_timer_start(db->poll_timer,
                       (uint64_t)(db->cfg->monitor_interval / NS_PER_MS));
    }
  }
  free(dir);
  log_msg(start_level(db), db->name, NULL, "initialized db");
  for (size_t i = 0; i < db->n_replicas; i++) {
    struct replica *r = db->replicas[i];
    log_msg(start_level(db), db->name, r->name, "replicating to %s%s",
            r->b->desc, codec_encrypts(r->b) ? " (age-encrypted)" : "");
    if (!codec_encrypts(r->b) && r->b->age.n_identities)
      log_warn(db->name, r->name,
               "age identities but no recipients: new objects are uploaded "
               "unencrypted");
  }
  /* Only a database that may sleep, with replicas whose positions a clean
   * stop saved, can start asleep; the others start as usual. */
  if (db->n_replicas && db->cfg->checkpoint_interval > 0 && !db->no_sleep) {
    g.starting++;
    db->start = DB_START_QUEUED;
    assert(!db->queued);
    list_push_tail(&g.start_q, &db->qlink);
    start_next();
    return;
  }
  db->start = DB_START_FULL;
  db_kick(db, DBJ_SYNC);
}

/* --- snapshots --- */

void db_request_snapshot(struct db *db, db_snapshot_cb cb, void *arg) {
  struct snap_waiter *w = xcalloc(1, sizeof(*w));
  w->cb = cb;
  w->arg = arg;
  w->next = db->snap_waiters;
  db->snap_waiters = w;
  db_kick(db, DBJ_SNAPSHOT);
}

void db_snapshot_release(struct db *db, struct db_snapshot *s) {
  if (--s->refs > 0)
    return;
  close(s->fd);
  free(s->path);
  free(s);
  snap_release(db);
}

void db_restart_wal(struct db *db) {
  db_kick(db, DBJ_SYNC | DBJ_RESTART);
}

void db_replicas_advanced(struct db *db) {
  /* Keep the shadow files every replica still needs, plus one (spec 2.7). */
  uint32_t min = UINT32_MAX;
  for (size_t i = 0; i < db->n_replicas; i++) {
    struct replica *r = db->replicas[i];
    if (pos_is_zero(&r->pos) || strcmp(r->pos.gen, db->gen))
      return;
    if (r->pos.index < min)
      min = r->pos.index;
  }
  if (min == UINT32_MAX || min < 2 || min - 1 <= db->prune_below)
    return;
  db->prune_below = min - 1;
  db_kick(db, DBJ_PRUNE);
}

/* --- shutdown (enum db_close_phase) --- */

static const char *close_phase_name(enum db_close_phase p) {
  static const char *names[] = {"none", "sync", "flush", "final"};
  return names[p];
}

/* The one setter: phases only advance, one step at a time. */
static void close_set(struct db *db, enum db_close_phase p) {
  assert(p == db->close_phase + 1);
  assert(db->state == DB_CLOSING);
  log_debug(db->name, NULL, "close %s -> %s", close_phase_name(db->close_phase),
            close_phase_name(p));
  db->close_phase = p;
}

static void on_replica_flushed(void *arg) {
  struct db *db = arg;
  assert(db->close_phase == DB_CLOSE_FLUSH);
  if (--db->closing_replicas > 0)
    return;
  close_set(db, DB_CLOSE_FINAL);
  loop_timer_free(db->status_timer);
  db->status_timer = NULL;
  free(db->status_text);
  db->status_text = format_status(db);
  db_kick(db, DBJ_CLOSE | DBJ_STATUS);
}

/* DB_CLOSE_SYNC ends once no job runs and none is pending. */
static void close_advance(struct db *db) {
  if (db->close_phase != DB_CLOSE_SYNC || db->job || db->pending || g.abandoned)
    return;
  close_set(db, DB_CLOSE_FLUSH);
  db->closing_replicas = (int)db->n_replicas + 1;
  for (size_t i = 0; i < db->n_replicas; i++)
    replica_flush(db->replicas[i], on_replica_flushed, db);
  on_replica_flushed(db);
}

void db_close(struct db *db, void (*cb)(void *arg), void *arg) {
  db->close_cb = cb;
  db->close_arg = arg;
  db_set_state(db, DB_CLOSING);
  watch_remove(db->watch);
  db->watch = NULL;
  loop_timer_free(db->poll_timer);
  loop_timer_free(db->idle_timer);
  loop_timer_free(db->retry_timer);
  db->poll_timer = db->idle_timer = db->retry_timer = NULL;
  fail_snapshot_waiters(db, ERR_CANCELED);
  /* A validation job still running keeps its copy; job_done removes it. */
  deliver_validation(db, NULL, ERR_CANCELED);
  for (size_t i = 0; i < db->n_replicas; i++)
    replica_stop_side(db->replicas[i]);
  close_set(db, DB_CLOSE_SYNC);
  /* Asleep: the final sync wakes it only if something was written. */
  db_kick(db, DBJ_SYNC | (db->sleep ? DBJ_PROBE : 0));
}

void db_close_dormant(struct db *db, void (*cb)(void *arg), void *arg) {
  db->park = 1;
  db_close(db, cb, arg);
}

void db_abandon(struct db *db) {
  g.abandoned = 1;
  db->pending = 0;
  db->close_cb = NULL; /* it never closes now: the daemon frees it */
  for (size_t i = 0; i < db->n_replicas; i++)
    replica_abandon(db->replicas[i]);
}

void db_free(struct db *db) {
  assert(!db->job); /* a running job points into the db */
  /* (Abandoned before its close: a validation waiting for a job that
   * never ran ends now.) */
  deliver_validation(db, NULL, ERR_CANCELED);
  start_unqueue(db);
  queue_remove(db);
  woke(db);
  hot_release(db);
  snap_release(db);
  for (size_t i = 0; i < db->n_replicas; i++) {
    struct backend *b = db->replicas[i]->b;
    replica_free(db->replicas[i]);
    backend_close(b);
  }
  free(db->replicas);
  loop_timer_free(db->poll_timer);
  loop_timer_free(db->idle_timer);
  loop_timer_free(db->retry_timer);
  loop_timer_free(db->status_timer);
  loop_timer_free(db->copy_timer);
  loop_timer_free(db->quiet_timer);
  free(db->status_text);
  free(db->last_err);
  free(db->last_ckpt_err);
  stub_unpack(db);
  engine_destroy(db->eng);
  free(db->eng);
  db->eng = NULL;
  free(db);
}
