/*
 * The replication engine of one database: SQLite connections, the WAL
 * ownership protocol, copying committed frames to the shadow WAL, the
 * checkpoints that let the WAL restart, and generations.  Every function
 * here blocks (file I/O, fsync, SQLite busy waits): db.c runs them on the
 * thread pool, one job per database at a time.
 *
 * WAL ownership.  SQLite restarts the WAL (overwriting it from the start)
 * once every frame has been checkpointed and no reader uses the WAL.  A
 * frame we have not copied yet must never be lost that way.  We hold a read
 * transaction (the "pin") at all times, and keep this invariant:
 *
 *   after a pin begins, and before the previous pin (if any) is released,
 *   every committed frame then present in the WAL is copied.
 *
 * A pin on read-mark slot 1..4 blocks every WAL restart.  A pin on slot 0
 * (taken when the WAL was fully checkpointed) blocks every checkpoint; then
 * a restart can only happen while the current lifetime holds no
 * un-checkpointed frame, i.e. only frames we already copied are discarded.
 * Either way a WAL header change seen under the pin is a genuine restart and
 * the previous lifetime is complete in the shadow WAL, whatever the new
 * header's salts and checkpoint sequence (SQLite keeps the latter per
 * connection: the sqlite3 CLI, a PHP request or a cron job each writes its
 * own), so the generation continues at the next index.
 *
 * To let the WAL restart we checkpoint it.  First without the write lock
 * (checkpoint_quiet): move the pin to the end (copying everything), PASSIVE
 * checkpoint up to it; if no commit came in meanwhile the whole WAL is
 * checkpointed and a pin begun now sits on slot 0, so the application's
 * next commit restarts the WAL.  An application without a busy timeout
 * never sees "database is locked" because of that.  Only a WAL that keeps
 * growing under a continuous writer is checkpointed "with the write lock"
 * (engine_checkpoint): BEGIN IMMEDIATE on the free connection (no commit
 * can happen now), copy the last frames, release the old pin, run a
 * PASSIVE checkpoint (everything is checkpointed up to our own read mark =
 * the end of the WAL), take a new pin (slot 0), release the write lock.
 * Litestream's holes are closed: a restart between its copy and its write
 * lock (spec 2.9) cannot happen here.
 *
 * Across a stop.  A clean stop checkpoints everything and records the
 * database file's identity and times (shadow.h, "sluice-stopped"); if they
 * are unchanged at the next start, nothing was checkpointed into the file
 * meanwhile, so whatever became of the WAL (restarted, truncated, deleted
 * by the application's last connection) no frame was lost and the
 * generation continues at the next index.  Otherwise, when the WAL is
 * another lifetime than the last shadow file's, frames may have been lost:
 * a new generation, and e->reason says why.
 */
#ifndef SLUICE_ENGINE_H
#define SLUICE_ENGINE_H

#include <sqlite3.h>
#include <stdint.h>

#include "config/config.h"
#include "core/resync.h"
#include "core/shadow.h"
#include "format/names.h"
#include "format/wal.h"

struct engine_stats {
  int64_t total_wal_bytes; /* bytes appended to shadow WALs */
  int64_t checkpoints;     /* checkpoints run */
  int64_t checkpoint_errors;
  int64_t checkpoint_ns;
  int64_t restarts;    /* WAL restarts observed */
  int64_t generations; /* generations started */
  int64_t sync_count;
  int64_t sync_errors;
  int64_t sync_ns;
  int64_t resyncs;      /* continuity lost, pages shipped (core/resync.h) */
  int64_t resync_pages; /* pages shipped by resyncs */
  int64_t resync_bytes; /* bytes of the resync WAL segments */
};

/* The pin (see above).  REGAINED: we were unpinned for a moment (a
 * checkpoint or validation could not re-pin at once), so a WAL restart
 * seen now may have discarded frames we never copied; it becomes HELD once
 * a sync finds the same WAL lifetime still there. */
enum engine_pin { PIN_NONE, PIN_HELD, PIN_REGAINED };

/* What a job reports (db.c copies it out at the end of each job): on the
 * heap only while the engine is awake, not per sleeping database. */
struct engine_msgs {
  char reason[256]; /* why the last new generation was started */
  char err[512];    /* message of the last failure */
};

struct engine {
  /* set by engine_init_struct; immutable afterwards */
  char *db_path; /* borrowed: the config's */
  char *wal_path;
  char *meta; /* the config's meta_path if set (borrowed), else owned */
  int own_meta;
  const char *name; /* for logs: the database path */
  int64_t min_ckpt_pages;
  int64_t max_ckpt_pages;
  int64_t ckpt_min_interval_ns; /* no more than one checkpoint per this */

  /* state */
  sqlite3 *conn[2];
  int pin; /* index in conn[] of the connection holding the pin, or -1 */
  int wal_fd;
  int db_fd; /* held open for the process lifetime: closing any fd of the
               database file would drop SQLite's POSIX locks on it */
  int shadow_fd;
  int shm_fd; /* OFD lock on the checkpoint byte; same lifetime rule */
  int ckpt_held;
  int checkpointing; /* inside engine_checkpoint */
  int opened;        /* connections open and pinned */
  char gen[GEN_LEN + 1];
  uint32_t index; /* current shadow WAL index */
  uint8_t hdr_raw[WAL_HEADER_SIZE];
  struct wal_header hdr;
  int64_t shadow_size; /* committed bytes in the current shadow file */
  uint32_t s0, s1;     /* checksum chain at shadow_size */
  uint8_t last_frame_hdr[WAL_FRAME_HEADER_SIZE];
  uint32_t page_size;
  int64_t wal_size; /* real -wal size seen at the last sync */
  /* wal_preallocate: the size we grew the -wal to since we opened (0: not
   * grown, or given back by shrink_wal); no_prealloc once another process
   * truncated it below that (its journal_size_limit), or a write failed:
   * not again until we open again. */
  int64_t prealloc_size;
  int no_prealloc;
  /* engine_restart_soon: checkpoint under the write lock at the next
   * chance, whatever the WAL's length, so that the WAL restarts; for
   * ENGINE_RESTART_WAIT_NS from restart_asked_ns at most. */
  int restart_asked;
  int64_t restart_asked_ns;
  int64_t db_size;
  int64_t last_ckpt_ns;
  int shadow_dirty;          /* appended since the last fsync */
  int64_t shadow_unstarted;  /* ... bytes whose writeback is not started */
  enum engine_pin pin_state; /* set with pin (pin_set in engine.c) */
  int64_t lock_held_ns;      /* write lock hold time of the last checkpoint */
  int ckpt_busy;             /* quiet checkpoints failed in a row */
  uint32_t ckpt_full_index;  /* index+1 fully checkpointed, 0 if none */
  int64_t ckpt_full_size;    /* ... at this shadow size */

  /* A full disk (shadow_copy_frames): the shadow cannot grow, so the
   * committed frames past shadow_size are only scanned and left in the WAL,
   * up to wal_end, and the replicas upload them from there.  Our pin stays
   * where it is meanwhile (no checkpoint, no pin move: engine.c), so those
   * frames stay in the pinned WAL until the shadow has them.  no_file: the
   * WAL restarted, but the current index's shadow file could not even be
   * created (shadow_size is then WAL_HEADER_SIZE, virtually). */
  int disk_full;
  int no_file;
  int64_t wal_end;       /* committed end in the WAL, while disk_full */
  uint32_t w_s0, w_s1;   /* checksum chain at wal_end */
  int64_t full_retry_ns; /* next attempt to write the shadow again */

  struct resync rs; /* the page map (core/resync.h) */

  /* Asleep (engine_sleep): no connection; sleep_rec proves continuity at
   * the next engine_open. */
  int asleep; /* 0, ENGINE_LIGHT or ENGINE_DEEP */
  struct shadow_stop sleep_rec;
  int64_t sleep_wal_size, sleep_wal_mtime_ns; /* the -wal then (-1: none) */
  uint64_t sleep_wal_ino;
#define SLEEP_PROBE_SIZE (WAL_HEADER_SIZE + WAL_FRAME_HEADER_SIZE)
  uint8_t sleep_probe[SLEEP_PROBE_SIZE]; /* engine.c wal_probe */
  int64_t sleep_probe_off;
  /* Tests: called inside engine_sleep between the checkpoint and the
   * probe of the -wal (a commit landing there); NULL otherwise. */
  void (*test_sleep_hook)(void *arg);
  void *test_sleep_arg;

  struct engine_stats stats;
  uint64_t db_dev, db_ino; /* identity of the open database file */
  char next_reason[64];    /* set: the next open starts a new generation */
  struct engine_msgs *m;   /* engine_keep_msgs */
};

/* Once per process, before any other SQLite call: no up-front page cache
 * per connection (131 KB -> ~58 KB per connection). */
void engine_global_init(void);

/* cfg->path (and cfg->meta_path) must outlive the engine: borrowed. */
void engine_init_struct(struct engine *e, const struct db_config *cfg);
void engine_destroy(struct engine *e);
/* e->m exists from engine_init_struct on; a job drops it once the engine
 * sleeps (engine_drop_msgs) and the next job makes it again. */
void engine_keep_msgs(struct engine *e);
void engine_drop_msgs(struct engine *e);

/* Opens the connections, takes the pin and establishes the generation
 * (continuing the one in the meta dir when the WAL still matches it).
 * Returns 0, ERR_NOT_FOUND while the database file does not exist, or an
 * error (message in e->err). */
int engine_open(struct engine *e);

/* Copies new committed frames to the shadow WAL.  Returns 0 or an error.
 * Starts a new generation when continuity is lost (reason in e->reason,
 * *new_gen set). */
int engine_sync(struct engine *e, int *new_gen);

/* The end of what is copied: the shadow's end, or with a full disk the
 * end of the frames scanned in the WAL (uploaded from there). */
int64_t engine_copied_end(const struct engine *e);
/* Bytes of the current index in the shadow file itself. */
int64_t engine_shadow_phys(const struct engine *e);

/* A full disk: frees the shadow files below index `below` (every replica
 * holds them), even if the saved page map still needs them (it is saved
 * anew, or dropped: core/resync.h). */
void engine_release_uploaded(struct engine *e, uint32_t below);

/* Whether the WAL is big enough (or old enough) to checkpoint now. */
int engine_should_checkpoint(const struct engine *e, int64_t now_ns, int idle);
/* Asks the next checkpoints to end the WAL's lifetime (a full checkpoint,
 * under the write lock if commits keep coming), however short it is: the
 * next commit then starts a new index.  Until one has, or for
 * ENGINE_RESTART_WAIT_NS (an application reader holding the WAL would have
 * us take the write lock four times a second for as long as it reads). */
#define ENGINE_RESTART_WAIT_NS (10 * NS_PER_SEC)
void engine_restart_soon(struct engine *e);

/* Checkpoints so the WAL can restart: without the write lock when a quiet
 * moment allows it (always so when idle), else with it (see above).
 * Returns 0, ERR_BUSY if commits kept coming or the write lock could not
 * be taken in time (try again later), or an error. */
int engine_checkpoint(struct engine *e, int idle);

/* Writes the database as of the end of the shadow file (core/snapshot.h:
 * the file with the shadow's frames laid over it, consistent on its own),
 * LZ4-compressed, to out_fd, as the snapshot of the current (generation,
 * index).  Must run with no concurrent engine_checkpoint (the job queue
 * guarantees it). */
int engine_snapshot(struct engine *e, int out_fd, int64_t *out_len,
                    char gen[GEN_LEN + 1], uint32_t *index);

/* Validation (spec 3.8, without its false mismatches): with the write lock
 * held for a moment, copies everything and pins a read transaction at that
 * exact position, then writes a consistent copy of the database as of that
 * position to out_path (SQLite's backup API reading through the pin).
 * *at gets the position. */
int engine_validation_copy(struct engine *e, const char *out_path,
                           struct pos *at);

/* Holds or releases SQLite's checkpoint lock (see engine.c). */
void engine_hold_checkpoints(struct engine *e, int hold);
/* Takes the checkpoint lock, waiting up to ms for an application's
 * checkpoint to end.  Returns 0 or ERR_BUSY. */
int engine_wait_checkpoint_lock(struct engine *e, int ms);

/* Whether the database path now names another file than the one open (or
 * none): then closes everything and returns 1; the next engine_open starts
 * a new generation (reason in e->reason) or finds no file. */
int engine_replaced(struct engine *e);

/* Final copy and fsync; after a full checkpoint, writes the clean-stop
 * record (shadow.h); releases the pin and closes everything. */
int engine_close(struct engine *e);

/* Sleep.  An idle database needs no SQLite connection: engine_sleep copies
 * everything, checkpoints the whole WAL and records the database file's
 * identity, size and times, as a clean stop does (shadow.h), then closes
 * every connection and fd.
 *
 * ENGINE_LIGHT keeps three fds, two with OFD locks (they belong to the
 * descriptor, so SQLite closing its own fds of the file in this process
 * cannot drop them).  On the -shm: the checkpoint lock (byte 121) and a
 * shared lock on the DMS byte (128).  With the checkpoint lock held nothing can
 * backfill a frame into the database file: an application's
 * autocheckpoint gives up at once, its wal_checkpoint(TRUNCATE) returns
 * SQLITE_BUSY at once, and the WAL can restart only while every frame in
 * it is backfilled, i.e. only frames we copied are discarded (all of them
 * were copied when we went to sleep, and no later frame can be backfilled).
 * The DMS lock makes the next process to open the database keep the
 * wal-index instead of truncating it and running recovery, which would
 * need the checkpoint lock.  One thing no -shm lock can stop: the last
 * connection of the application to close takes an EXCLUSIVE lock on the
 * database file and then checkpoints in exclusive mode, ignoring every
 * wal-index lock, and deletes the WAL (sqlite3WalClose).  Hence the second
 * fd, the database file's, with a shared lock on the first byte of
 * SQLite's SHARED range: that EXCLUSIVE lock is never granted, the closing
 * connection leaves the WAL alone (as it does while our connections are
 * open).  The third fd is the -wal's, without a lock: a database deleted
 * (or renamed away) while asleep still has what was committed since in
 * it, and engine_open copies that from the kept fds for the final sync
 * (the wake after the write and the delete come together; once the path
 * is gone, only a kept fd still reaches those frames).
 *
 * ENGINE_DEEP holds nothing at all: the application may checkpoint freely.
 *
 * Waking is engine_open, with the record instead of a clean stop's: the
 * same WAL lifetime continues in place; another lifetime with the database
 * file unchanged continues at the next index (nothing was checkpointed into
 * the file, so nothing uncopied was discarded); a changed file is resynced
 * (core/resync.h: only the changed pages, same generation).  Returns 0, or
 * ERR_BUSY (commits came in, or the checkpoint could not complete: try
 * later), or -ENOTSUP when the file system's timestamps cannot prove
 * anything (whole seconds). */
#define ENGINE_LIGHT 1
#define ENGINE_DEEP 2
int engine_sleep(struct engine *e, int how);
/* The idle stub: a deep sleeper's engine (no fd, no message buffers)
 * packed into *len bytes (typically a third of the struct), and e freed;
 * engine_unpack gives back a byte-identical engine to wake or stop.  The
 * strings it points to (its paths) stay allocated meanwhile. */
uint8_t *engine_pack(struct engine *e, size_t *len);
struct engine *engine_unpack(const uint8_t *stub);
/* Light sleep -> deep: closes the last three fds. */
void engine_deepen(struct engine *e);
/* Asleep: whether the -wal is not as it was when the engine went to
 * sleep (a stat). */
int engine_wal_changed(const struct engine *e);
/* Asleep, stopping, the -wal unchanged (engine_wal_changed): a WAL left
 * with frames is truncated if no one else has the database open (one
 * plain connection, no pin: every frame is copied), the sleep record
 * becomes the clean-stop record (shadow.h) and every fd is closed.
 * keep_wal (a database going dormant): no truncation.  That checkpoint
 * may write frames the application left unbackfilled into the database
 * file, after which the record no longer describes the file: the next
 * start (the dormant database's wake) would be a full start with a
 * listing instead of asleep from the start. */
int engine_close_asleep(struct engine *e, int keep_wal);

/* Start straight into sleep, before any connection: whether the local
 * state proves that nothing changed since a clean stop, so the engine can
 * sleep at once (ENGINE_DEEP, no fd) without SQLite.  Proof: the clean-stop
 * record (shadow.h) is there; the meta directory's generation, last shadow
 * index and its size are the record's; the -wal is absent, empty, or the
 * last shadow file's lifetime with no frame at the copied end (as
 * engine_sleep checks); and the database file has the record's identity,
 * size and times (nothing was checkpointed into it).  Returns 0 asleep
 * (gen, index, shadow_size, the sleep record and probe set: the wake is
 * that of any deep sleeper), or 1 and why when not proven (the caller
 * opens the engine as usual; nothing was changed). */
int engine_start_asleep(struct engine *e, char *why, size_t wlen);

/* Sets e->err (for shadow.c, which writes the engine's shadow file). */
void engine_set_err(struct engine *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Starts a new generation now (e.g. after the replica lost continuity). */
int engine_new_generation(struct engine *e, const char *reason);

#endif
