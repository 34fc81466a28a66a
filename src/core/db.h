/*
 * One replicated database on the loop: its directory watch, the queue of
 * engine jobs (one at a time, on the thread pool), snapshots shared by its
 * replicas, and shutdown.
 *
 * States (db_set_state logs every change):
 *   INIT     -> first job pending
 *   WAITING  the database file does not exist yet; woken by the directory
 *            watch when it appears
 *   READY    pinned and copying; idle until the -wal changes
 *   ERROR    the last job failed; retried after a backoff
 *   CLOSING  final sync and uploads in progress
 *   CLOSED
 */
#ifndef SLUICE_DB_H
#define SLUICE_DB_H

#include <stdint.h>

#include "base/list.h"
#include "config/config.h"
#include "core/engine.h"

struct replica;
struct db;

enum db_state {
  DB_INIT,
  DB_WAITING,
  DB_READY,
  DB_ERROR,
  DB_CLOSING,
  DB_CLOSED,
  DB__STATES /* how many; keep last (db_state_name names each) */
};

/* Work requested from the next job. */
enum {
  DBJ_SYNC = 1 << 0,
  DBJ_CHECKPOINT = 1 << 1, /* idle checkpoint (checkpoint-interval) */
  DBJ_SNAPSHOT = 1 << 2,
  DBJ_PRUNE = 1 << 3,
  DBJ_NEWGEN = 1 << 4,
  DBJ_CLOSE = 1 << 5,
  DBJ_STATUS = 1 << 6,   /* write the status file read by `sluice replicas` */
  DBJ_VALIDATE = 1 << 7, /* consistent copy for validation */
  DBJ_SLEEP = 1 << 8,    /* quiet: close the connections (engine_sleep) */
  DBJ_DEEP = 1 << 9,     /* asleep long enough: let go of the last fd */
  DBJ_PROBE = 1 << 10,   /* with DBJ_SYNC: only if the WAL changed */
  DBJ_START = 1 << 11,   /* start: straight into sleep if the local state
                            proves it (engine_start_asleep), else DBJ_SYNC */
  DBJ_RESTART = 1 << 12, /* with DBJ_SYNC: end the WAL index soon (a
                            snapshot waits for the next: engine_restart_soon) */
};

/* Process-wide bounds (db_set_limits, from the config and RLIMIT_NOFILE). */
struct db_limits {
  size_t max_hot;        /* databases with connections open at once */
  size_t max_light;      /* databases in light sleep (DB_LIGHT_FDS each) */
  int64_t deep_after_ns; /* light sleep -> deep after this (0: never) */
  size_t max_snapshots;  /* snapshots being taken at once */
};
void db_set_limits(const struct db_limits *l);
/* The bounds that fit `nofile` descriptors (RLIMIT_NOFILE): a hot database
 * uses about DB_HOT_FDS, a light sleeper DB_LIGHT_FDS (its -shm, database
 * file and -wal: engine.h), a deep sleeper 0; max_hot 0 means choose. */
#define DB_HOT_FDS 10
#define DB_LIGHT_FDS 3
#define DB_FD_RESERVE 128 /* sockets, logs, the loop's own */
void db_limits_for(long nofile, size_t n_dbs, int64_t max_hot,
                   int64_t deep_after_ns, struct db_limits *out);
void db_get_limits(struct db_limits *out);
/* Databases by sleep depth, for metrics and status. */
void db_sleep_counts(size_t *hot, size_t *light, size_t *deep, size_t *queued);

/* A compressed snapshot file shared by the replicas that asked for it. */
struct db_snapshot {
  char gen[GEN_LEN + 1];
  uint32_t index;
  int64_t offset; /* the image is the database at gen/index:offset */
  char *path;
  int fd;
  int64_t size;
  int refs;
};

typedef void (*db_snapshot_cb)(void *arg, int status, struct db_snapshot *snap);
/* path: a consistent copy of the database at position *at (owned by the
 * caller once delivered: unlink it when done). */
typedef void (*db_validation_cb)(void *arg, int status, const char *path,
                                 const struct pos *at);

/* Shutdown, after db_close: a final sync job copies the last commits,
 * then every replica uploads what it lacks, then the close job releases
 * the pin and closes the connections.  Only ever advances. */
enum db_close_phase {
  DB_CLOSE_NONE,
  DB_CLOSE_SYNC,  /* the final sync job */
  DB_CLOSE_FLUSH, /* replicas uploading */
  DB_CLOSE_FINAL  /* the close job */
};

struct db_job; /* a job's inputs and outputs (db.c) */

struct db {
  struct db_config *cfg; /* borrowed; outlives the db */
  const char *name;      /* the database path, for logs */
  const char *meta;      /* the meta directory; immutable */
  /* Lent to the running job (db_job.eng) from submit to done; the loop
   * never touches it then (only its immutable paths, through name and
   * meta).  A deep sleeper between jobs keeps it packed in `stub` (the
   * idle stub, engine_pack); the strings name and meta point to stay. */
  struct engine *eng; /* NULL while packed in the idle stub (db.c) */
  uint8_t *stub;
  enum db_state state;

  /* Published by the loop after every job; safe to read on the loop. */
  char gen[GEN_LEN + 1];
  uint32_t index;
  int64_t shadow_size; /* what is copied (engine_copied_end) */
  int64_t shadow_phys; /* ... of which in the shadow file; the rest is
                          read from the WAL (a full disk) */
  uint8_t wal_hdr[WAL_HEADER_SIZE]; /* the current WAL lifetime's header */
  int disk_full;                    /* engine.h: disk_full */
  int64_t wal_size;
  int64_t db_size;
  uint32_t page_size;
  int64_t last_change_ns; /* wall time the shadow last grew */
  struct engine_stats stats;
  int opened; /* the engine has its connections open */
  int sleep;  /* 0 awake, ENGINE_LIGHT (1 fd), ENGINE_DEEP (0 fds) */

  struct replica **replicas;
  size_t n_replicas;

  /* internal (loop thread only) */
  struct db_job *job; /* the running job, NULL if none: one per database */
  unsigned pending;   /* DBJ_* for the next job */
  int idle_retries;   /* idle checkpoints retried since the last change */
  uint32_t prune_below;
  char newgen_for[GEN_LEN + 1]; /* DBJ_NEWGEN: the generation it replaces */
  struct watch_sub *watch;
  struct loop_timer *retry_timer;
  struct loop_timer *idle_timer;
  struct loop_timer *poll_timer;
  int backoff_ms;
  char *last_err;      /* the sync failure last logged (NULL: none) */
  char *last_ckpt_err; /* the checkpoint failure last logged */
  struct snap_waiter *snap_waiters;
  void (*close_cb)(void *arg);
  void *close_arg;
  int closing_replicas;
  enum db_close_phase close_phase; /* set by close_set (db.c) */
  int quiescing; /* closed: replicas (+1) still ending a pass (done_close) */
  struct loop_timer *quiet_timer; /* then close_cb, from the loop */
  struct loop_timer *status_timer;
  struct loop_timer *copy_timer;
  uint64_t last_copy_ms;
  struct val_waiter *val_waiters;
  char *status_text; /* formatted on the loop, handed to the next job */
  /* sleep bookkeeping (db.c) */
  int no_sleep;           /* engine_sleep cannot prove anything */
  int hot;                /* holds a hot slot */
  int queued;             /* waits for one */
  struct list_node qlink; /* in the start queue, later (never at
                             once) in the hot queue */
  struct list_node lru;   /* light sleepers, oldest first */
  int64_t slept_at_ns;    /* monotonic */
  int64_t opened_at_ns;   /* monotonic: the engine last opened */
  int start;              /* DB_START_* (db_start) */
  int snap_slot;          /* holds a snapshot slot */
  int snap_queued;
  struct list_node snap_link; /* in the snapshot queue */
  int park;                   /* closing to go dormant (db_close_dormant) */
  int revived; /* started again after dormancy: its start logs quietly */
};

/* The status file in the meta directory, one line per replica, read by
 * `sluice replicas` (and only written when something changed):
 *   pid PID
 *   replica NAME GEN|- INDEX OFFSET PENDING_SINCE_NS LAST_SYNC_NS ERRORS STATE
 */
#define DB_STATUS_FILE "sluice-status"
/* Something a replica reports changed: write the status file soon. */
void db_status_changed(struct db *db);

/* db->start: how the start is going.  A database whose local state may
 * prove it caught up (a clean-stop record, replicas) is checked first, a
 * few at a time (no connection, no request: engine_start_asleep); proven,
 * it sleeps at once, else it queues for its full start (a hot slot). */
enum {
  DB_START_NONE,   /* not started */
  DB_START_QUEUED, /* waiting for its check */
  DB_START_CHECK,  /* being checked */
  DB_START_ASLEEP, /* proven caught up: asleep without having opened */
  DB_START_FULL    /* opened as usual (or queued for a hot slot to) */
};
/* Whether its start is decided: asleep and proven, or opened (or found
 * missing, or failed), or queued for a hot slot to open (beyond the
 * process-wide bound).  READY=1 once every database's is. */
int db_start_decided(const struct db *db);
/* Databases whose start is not decided yet. */
size_t db_starting(void);

struct db *db_new(struct db_config *cfg);
/* Opens the replicas' backends; on failure writes a message. */
int db_add_replicas(struct db *db, char *err, size_t errlen);
void db_start(struct db *db);
/* Final sync, final uploads, then closes everything; cb when done: by then
 * nothing of the database is in flight (its replicas' retention passes
 * and validation restores were canceled and have come back), so cb may
 * db_free it. */
void db_close(struct db *db, void (*cb)(void *arg), void *arg);
/* db_close for a database going dormant (the daemon frees it and keeps
 * only its path until its files change): the same final sync and close,
 * but a dir entry's shared lease stays held for it (lease_park). */
void db_close_dormant(struct db *db, void (*cb)(void *arg), void *arg);
/* Called on the loop each time a database becomes an idle stub (a deep
 * sleeper with no job): the daemon's chance to make it dormant. */
void db_set_stub_hook(void (*fn)(struct db *db));
/* Calls that hook if db is an idle stub now: also when a replica of a
 * stub catches up or ends a housekeeping pass (replica.c), since a stub
 * whose upload was still waiting for its interval was not eligible yet. */
void db_stub_check(struct db *db);
/* Whether db is an idle stub now: deep asleep, packed, no job, nothing
 * pending, not closing. */
int db_is_stub(const struct db *db);
/* The shutdown timeout fired: from now on no database starts a job (a
 * process-wide switch) and its replicas start nothing (replica_abandon);
 * the jobs in flight end, their results kept (what is copied stays in the
 * shadow WAL).  db_free may follow once loop_work_pending() is 0. */
void db_abandon(struct db *db);
void db_free(struct db *db);

/* For replicas. */
void db_kick(struct db *db, unsigned what);
/* A replica lost continuity in generation gen: start a new generation,
 * unless the current one is already another (the request is then stale:
 * the replica saw the end of a generation the engine has already left).
 * Returns 1 if requested, 0 if stale (the replica just resumes). */
int db_request_new_generation(struct db *db, const char *gen);
void db_request_snapshot(struct db *db, db_snapshot_cb cb, void *arg);
void db_snapshot_release(struct db *db, struct db_snapshot *snap);
void db_request_validation(struct db *db, db_validation_cb cb, void *arg);
/* Replicas moved: prune shadow files no replica needs any more. */
void db_replicas_advanced(struct db *db);
/* A replica's snapshot is due: have the WAL restart soon, so that it is
 * taken at the start of a WAL index (core/replica.c, snapshot_due_now). */
void db_restart_wal(struct db *db);
const char *db_state_name(enum db_state s);

#endif
