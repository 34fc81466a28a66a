/*
 * One replica of a database on the loop: where it stands (its position),
 * when it uploads (sync-interval), snapshots for new generations, resume
 * after a restart (spec 3.4, without the hole: a torn or corrupt last
 * segment is uploaded again instead of blocking replication), and retries.
 *
 * States (replica_set_state logs every change at debug level):
 *   IDLE        caught up, or waiting for the sync interval to pass
 *   RESUME      listing the store to find where it stands
 *   SNAPSHOT    waiting for / uploading a snapshot
 *   UPLOAD      building or uploading a WAL segment
 *   BACKOFF     the last attempt failed; retry after a delay
 *   CLOSED
 */
#ifndef SLUICE_REPLICA_H
#define SLUICE_REPLICA_H

#include <stdint.h>

#include "backends/backend.h"
#include "config/config.h"
#include "format/names.h"
#include "core/budget.h"
#include "core/store.h"

struct db;
struct seg_job;

enum replica_state {
  R_IDLE,
  R_RESUME,
  R_SNAPSHOT,
  R_UPLOAD,
  R_BACKOFF,
  R_CLOSED
};

struct replica {
  struct db *db;
  struct replica_config *cfg; /* borrowed */
  struct backend *b;
  const char *name;
  enum replica_state state;

  struct pos pos;           /* replicated up to here; zero = unknown */
  int64_t pending_since_ns; /* wall time of the oldest change not held */
  int64_t last_sync_ns;     /* wall time of the last successful upload */
  int64_t last_round_ns;    /* monotonic start of the last upload round */
  double tokens;            /* PUTs in hand as of last_round_ns (< 0: owed) */
  int round_puts;           /* PUTs of the current round so far */
  int round_paid;           /* the next round's token taken, waiting a turn */
  int64_t shipped;          /* compressed WAL bytes since the last snapshot */
  struct pos snap_at;       /* generation and index of the last snapshot */
  struct pos snap_due;      /* the factor passed in this index (gen[0]: no) */
  int64_t snap_due_ns;      /* monotonic time it passed */
  int64_t upload_errors;
  int64_t wal_bytes; /* uncompressed WAL bytes uploaded */
  int64_t snapshots; /* snapshots uploaded */
  int64_t validations_ok;
  int64_t validations_failed;
  char *last_err; /* the upload failure last logged (NULL: none) */

  /* internal */
  struct loop_timer *timer;
  int backoff_ms;
  int flushing; /* shutdown: upload now, ignore the interval */
  void (*flush_cb)(void *arg);
  void *flush_arg;
  struct snapshot_list snaps;
  struct segment_list segs;
  struct buf seg; /* compressed segment being uploaded */
  uint32_t seg_index;
  int64_t seg_off, seg_end;
  struct seg_job *job;  /* the segment build on the pool, or NULL */
  uint32_t round_index; /* end of the current round */
  int64_t round_size;
  int64_t round_wall_ns;
  struct db_snapshot *snap; /* taken, uploaded once pos reaches it */
  /* The first segment from here (a new generation's snapshot index at
   * offset 0) reaches at least this offset in one object. */
  struct pos first_seg_end;
  struct housekeeping *hk;
  struct validator *val;
  struct lease *lease;     /* the path's single-writer lease (core/lease.h) */
  struct budget_waiter bw; /* its turn under the process-wide bounds */
  struct pos val_cap;      /* validation: the next round ends exactly here */
  int val_cap_pending;
  int hk_started;
  int side_stopped;            /* replica_stop_side: for good */
  void (*quiet_cb)(void *arg); /* replica_quiesce */
  void *quiet_arg;
  int local_pos;     /* the position came from the local state (start asleep) */
  int want_snapshot; /* take a snapshot when idle (interval, retention) */
  int64_t log_segs, log_bytes; /* uploads since the last progress line */
  int64_t log_last_ns;         /* monotonic time of that line */
};

struct replica *replica_new(struct db *db, struct replica_config *cfg,
                            struct backend *b);
void replica_free(struct replica *r);
/* The database's shadow WAL changed (or its generation). */
void replica_notify(struct replica *r);
/* Shutdown: upload everything now; cb once caught up or failed. */
void replica_flush(struct replica *r, void (*cb)(void *arg), void *arg);
/* The shutdown timeout fired: R_CLOSED, so that the operation in flight
 * (its HTTP request aborted by the daemon) ends without starting another,
 * and nothing else starts (housekeeping, validation, retries).  What was
 * not uploaded stays in the shadow WAL for the next start.  Never waits:
 * replica_free may follow once the loop's jobs are done. */
void replica_abandon(struct replica *r);
/* After the final upload (the database's close job done, or abandoned):
 * stops housekeeping and validation, cancels what of theirs is in flight
 * (a retention pass, a validation restore, their requests on this
 * replica's pool) and calls cb once nothing is (maybe from inside this
 * call); replica_free may follow then.  replica_flush only stops their
 * timers and asks them to end, so that the final uploads go first. */
void replica_quiesce(struct replica *r, void (*cb)(void *arg), void *arg);
/* The database is closing (db_close): housekeeping and validation stop
 * for good (no new pass, no interval or retention snapshot; what is in
 * flight ends at its next step), so the final sync is not held up. */
void replica_stop_side(struct replica *r);
/* A retention pass or a validation restore is in flight. */
int replica_busy(const struct replica *r);
/* housekeeping.c, validate.c: a pass (or a restore) ended. */
void replica_side_done(struct replica *r);
/* Lag: 0 when caught up, else now - oldest change not yet held. */
int64_t replica_lag_ns(const struct replica *r, int64_t now_ns);
const char *replica_state_name(enum replica_state s);
/* A start straight into sleep (db.c): the local state proves this replica
 * holds everything up to p.  No request until the database changes: the
 * lease is taken, and housekeeping started, once there is something to
 * upload (a lease taken from another owner lists the store first). */
void replica_resume_local(struct replica *r, const struct pos *p,
                          int64_t last_sync_ns);
/* Uploads a fresh snapshot of the current generation when idle. */
void replica_snapshot_now(struct replica *r);

#endif
