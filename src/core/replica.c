/*
 * A replica on the loop: decides when to upload (sync-interval bounds how
 * often, not how long a lone commit waits), builds WAL segments on the
 * thread pool and uploads them through the backend, keeps its position only
 * after a successful upload, and retries with backoff when the store fails.
 */
#include "core/replica.h"
#include "format/wal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/db.h"
#include "base/err.h"
#include "core/housekeeping.h"
#include "core/lease.h"
#include "core/validate.h"
#include "base/log.h"
#include "core/codec.h"
#include "core/shadow.h"
#include "base/util.h"
#include "loop/http.h"
#include "loop/loop.h"

/* A segment covers at most this much WAL (more only for one transaction
 * that is larger), so memory stays bounded: a segment build holds the WAL
 * bytes and their compressed copy, and the upload the latter, so about
 * twice this per replica catching up (64 MB segments took a bursting
 * daemon to 250 MB). */
#define MAX_SEGMENT (8LL << 20)
#define MAX_BACKOFF_MS 30000
/* Under a contended request budget (core/budget.h), a round yields after
 * this many PUTs, or one large segment. */
#define TURN_PUTS 4

static void kick(struct replica *r);
static void pos_reset(struct replica *r, const char *why);

const char *replica_state_name(enum replica_state s) {
  static const char *names[] = {"idle",   "resume",  "snapshot",
                                "upload", "backoff", "closed"};
  return names[s];
}

/* An operation is in flight (a listing, a snapshot, a segment build or
 * upload) exactly in these states: its completion moves the state on. */
static int in_flight(const struct replica *r) {
  return r->state == R_RESUME || r->state == R_SNAPSHOT || r->state == R_UPLOAD;
}

static void snap_drop(struct replica *r);

/* Housekeeping and validation, once the replica knows where it stands;
 * never again once it stops (replica_flush, replica_abandon). */
static void side_start(struct replica *r) {
  if (r->hk_started || r->side_stopped || r->flushing || r->state == R_CLOSED)
    return;
  r->hk_started = 1;
  hk_start(r->hk);
  validator_start(r->val);
}

void replica_stop_side(struct replica *r) {
  r->side_stopped = 1;
  r->want_snapshot = 0;
  hk_stop(r->hk);
  validator_stop(r->val);
}

int replica_busy(const struct replica *r) {
  return hk_busy(r->hk) || validator_running(r->val);
}

void replica_side_done(struct replica *r) {
  if (replica_busy(r))
    return;
  if (!r->quiet_cb) {
    db_stub_check(r->db); /* (may go dormant now: daemon.c) */
    return;
  }
  void (*cb)(void *) = r->quiet_cb;
  r->quiet_cb = NULL;
  cb(r->quiet_arg);
}

void replica_quiesce(struct replica *r, void (*cb)(void *arg), void *arg) {
  assert(!r->quiet_cb && !in_flight(r) && !r->job);
  r->quiet_cb = cb;
  r->quiet_arg = arg;
  hk_stop(r->hk);
  validator_stop(r->val);
  /* Only the pass's and the restore's requests are left on this pool (the
   * uploads are done, the lease released): their callbacks run now, with
   * ERR_CANCELED, and end them.  Pool jobs (the file backend's, the
   * restore's) come back by themselves. */
  if (replica_busy(r))
    http_pool_abort(&r->b->pool);
  replica_side_done(r);
}

/* An operation in flight holds one of the process-wide slots
 * (core/budget.h), granted before kick() starts it.  A snapshot waiting
 * for its segments (r->snap) lives only while one is in flight. */
static void set_state(struct replica *r, enum replica_state s) {
  if (r->state == s)
    return;
  db_status_changed(r->db);
  log_debug(r->db->name, r->name, "replica state %s -> %s",
            replica_state_name(r->state), replica_state_name(s));
  int was = in_flight(r);
  r->state = s;
  if (!was && in_flight(r))
    budget_use(&r->bw);
  else if (was && !in_flight(r))
    budget_done(&r->bw);
  if (r->snap && !in_flight(r))
    snap_drop(r); /* its segments could not all go first (snap_waits) */
}

static void on_timer(void *arg) {
  struct replica *r = arg;
  if (r->state == R_BACKOFF)
    set_state(r, R_IDLE);
  kick(r);
}

/* The retry/round timer exists only while it runs: an idle replica keeps
 * none. */
static void timer_start(struct replica *r, uint64_t ms) {
  if (!r->timer)
    r->timer = loop_timer_new(on_timer, r);
  loop_timer_start(r->timer, ms);
}

static void timer_drop(struct replica *r) {
  loop_timer_free(r->timer);
  r->timer = NULL;
}

/* The lease (core/lease.c) was taken or lost.  Taken: list the store
 * again (another owner may have written meanwhile) and go on.  Lost:
 * kick() uploads nothing more and housekeeping stops. */
static void charge_put(struct replica *r);

static void on_lease(void *arg, int held) {
  struct replica *r = arg;
  if (held == LEASE_RENEWED) {
    /* One PUT to an object store, which bills it: paid from the uploads'
     * bucket, so a busy database's PUTs stay at one per sync-interval
     * with the renewals (bench/s3_requests_per_hour.sh).  Not on a file
     * or SFTP path, where it costs nothing and would only delay the
     * next commit's upload; not for a shared lease (lease.c), whose one
     * renewal serves a whole dir entry. */
    if (r->b->ops != &backend_file && r->b->ops != &backend_sftp)
      charge_put(r);
    return;
  }
  if (!held) {
    hk_stop(r->hk);
    r->hk_started = 0;
    if (r->state == R_IDLE)
      kick(r); /* a shutdown waiting for the lease ends if it was refused */
    return;
  }
  hk_lease_ready(r->hk);
  if (held == LEASE_RESUMED) {
    /* Renewed at the TTL after an idle spell: nothing changed hands. */
    if (r->state == R_IDLE)
      kick(r);
    return;
  }
  /* (Not a position from the local state, when no other owner took the
   * path since our own last version of the lease.) */
  if (!in_flight(r) && !(r->local_pos && lease_last_ours(r->lease)))
    pos_reset(r, "lease taken again: listing the store");
  if (r->state == R_IDLE)
    kick(r);
}

/* The budget granted a turn this replica waited for. */
static void on_budget(void *arg) {
  kick(arg);
}

/* A lease subscriber's meta directory (lease_set_meta_of). */
static const char *replica_meta(void *arg) {
  struct replica *r = arg;
  return r->db->meta;
}

struct replica *replica_new(struct db *db, struct replica_config *cfg,
                            struct backend *b) {
  struct replica *r = xcalloc(1, sizeof(*r));
  budget_waiter_init(&r->bw, on_budget, r);
  r->db = db;
  r->cfg = cfg;
  r->b = b;
  r->name = b->name;
  r->state = R_IDLE;
  buf_init(&r->seg, 0);
  r->hk = hk_new(r);
  r->val = validator_new(r);
  if (cfg->lease_root && cfg->lease_ttl > 0) {
    /* A dir entry's database: the entry's one lease at its replica root. */
    char err[512];
    r->lease = lease_join(cfg, db->meta, db->cfg->dir ? db->cfg->dir : db->name,
                          cfg->lease_ttl, cfg->force_takeover, on_lease, r, err,
                          sizeof(err));
    if (r->lease)
      lease_set_meta_of(r->lease, replica_meta);
    else
      log_warn(db->name, r->name,
               "lease at the replica root: %s (leasing this database's path "
               "instead)",
               err);
  }
  if (!r->lease)
    r->lease = lease_new(b, db->meta, db->name, r->name, cfg->lease_ttl,
                         cfg->force_takeover, on_lease, r);
  lease_set_idle_ttl(r->lease, cfg->lease_idle_ttl);
  return r;
}

void replica_free(struct replica *r) {
  assert(!r->job); /* a running build hands itself back to r */
  /* Nor a retention pass or a validation restore: their callbacks would
   * land here (replica_quiesce waits for them). */
  assert(!replica_busy(r));
  if (r->snap)
    db_snapshot_release(r->db, r->snap);
  budget_cancel(&r->bw);
  lease_drop(r->lease, r);
  hk_free(r->hk);
  validator_free(r->val);
  loop_timer_free(r->timer);
  snapshot_list_destroy(&r->snaps);
  segment_list_destroy(&r->segs);
  buf_destroy(&r->seg);
  free(r->last_err);
  free(r);
}

int64_t replica_lag_ns(const struct replica *r, int64_t now_ns) {
  if (!r->pending_since_ns)
    return 0;
  return now_ns > r->pending_since_ns ? now_ns - r->pending_since_ns : 0;
}

static int behind(const struct replica *r) {
  const struct db *db = r->db;
  if (!db->gen[0])
    return 0;
  if (pos_is_zero(&r->pos) || strcmp(r->pos.gen, db->gen))
    return 1;
  return r->pos.index < db->index ||
         (r->pos.index == db->index && r->pos.offset < db->shadow_size);
}

static void flush_done(struct replica *r) {
  if (!r->flushing || !r->flush_cb)
    return;
  void (*cb)(void *) = r->flush_cb;
  r->flush_cb = NULL;
  if (r->db->park && lease_shared(r->lease)) {
    /* Closed to go dormant (db_close_dormant): the entry's lease stays. */
    lease_park(r->lease, r);
    cb(r->flush_arg);
    return;
  }
  lease_leave(r->lease, r, cb, r->flush_arg);
}

static void caught_up(struct replica *r) {
  timer_drop(r);
  set_state(r, R_IDLE);
  r->pending_since_ns = 0;
  flush_done(r);
  db_stub_check(r->db); /* (may go dormant now: daemon.c) */
}

static void fail(struct replica *r, int rc, const char *msg) {
  if (rc == ERR_CANCELED) {
    /* Shutdown canceled it: not a store error (what was not uploaded is
     * said by the flush below, or by the shutdown timeout). */
    log_info(r->db->name, r->name, "%s: canceled by shutdown",
             msg ? msg : "operation");
  } else {
    r->upload_errors++;
  }
  if (rc != ERR_CANCELED && strcmp(str_or_empty(r->last_err), msg ? msg : "")) {
    log_error(r->db->name, r->name, "replica sync error: %s",
              msg ? msg : err_str(rc));
    str_set(&r->last_err, msg);
  }
  if (r->flushing) {
    char p[48];
    pos_format(&r->pos, p);
    log_error(r->db->name, r->name,
              "shutdown: replica stopped at position %s with changes not "
              "uploaded",
              p[0] ? p : "(none)");
    set_state(r, R_IDLE);
    flush_done(r);
    return;
  }
  r->backoff_ms = r->backoff_ms ? MIN(r->backoff_ms * 2, MAX_BACKOFF_MS) : 1000;
  set_state(r, R_BACKOFF);
  timer_start(r, (uint64_t)r->backoff_ms);
}

static void succeeded(struct replica *r) {
  if (r->last_err)
    log_info(r->db->name, r->name, "replica sync recovered");
  str_set(&r->last_err, NULL);
  r->backoff_ms = 0;
  r->last_sync_ns = time_now_ns();
}

/* --- WAL segments --- */

static void upload_next(struct replica *r);

/* The bytes of one index: in the shadow file below phys, in the WAL from
 * there on (a full disk: engine.h); phys < 0: all in the shadow file. */
struct span {
  int sfd, wfd;
  int64_t phys;
};

static ssize_t span_read(const struct span *s, uint8_t *buf, size_t n,
                         int64_t off) {
  size_t done = 0;
  while (done < n) {
    int64_t at = off + (int64_t)done;
    int in_wal = s->phys >= 0 && at >= s->phys;
    size_t want = n - done;
    if (!in_wal && s->phys >= 0 && at + (int64_t)want > s->phys)
      want = (size_t)(s->phys - at);
    ssize_t r =
        pread_full(in_wal ? s->wfd : s->sfd, buf + done, want, (off_t)at);
    if (r < 0)
      return r;
    done += (size_t)r;
    if ((size_t)r < want)
      break;
  }
  return (ssize_t)done;
}

/* Finds the end of the last commit frame in [off, limit) by reading frame
 * headers; if none, the first commit after limit.  Returns the end. */
static int64_t commit_boundary(const struct span *sp, int64_t off,
                               int64_t limit, int64_t end, uint32_t page_size) {
  int64_t fs = WAL_FRAME_HEADER_SIZE + (int64_t)page_size;
  int64_t p = off == 0 ? WAL_HEADER_SIZE : off, best = -1;
  uint8_t h[WAL_FRAME_HEADER_SIZE];
  for (; p + fs <= end; p += fs) {
    if (span_read(sp, h, sizeof(h), p) != (ssize_t)sizeof(h))
      break;
    if (get_be32(h + 4)) {
      if (p + fs > limit && best > off)
        break;
      best = p + fs;
      if (p + fs >= limit)
        break;
    }
  }
  return best > off ? best : end;
}

/* A segment build on the pool: the inputs are copied at submit, the
 * outputs read at done; in between only the job touches it. */
struct seg_job {
  struct replica *r; /* for build_done; build_work does not touch it */
  /* in */
  const struct backend *b; /* its age keys (read-only) encrypt the segment */
  char *path;              /* owned: the shadow WAL file */
  char *wal_path;          /* owned: the database's WAL */
  int64_t off;
  int64_t cap;     /* end of the round in this file, or -1: the file's end */
  int64_t phys;    /* from here on in the WAL (full disk), or -1 */
  int64_t min_end; /* one segment reaches at least this (first_seg_end) */
  uint8_t wal_hdr[WAL_HEADER_SIZE]; /* ... whose lifetime this must be */
  uint32_t page_size;
  /* out */
  struct buf seg; /* compressed [off, end) */
  int64_t end;
  int64_t file_size; /* the shadow file's size when read (cap < 0), or -1 */
  int rc;
};

/* Bytes read from the WAL (a full disk) belong to the lifetime of the
 * shadow file: the frames' salts are the header's, and the header read
 * after them is still that lifetime's (a restart writes the header before
 * any frame), so no frame was overwritten while we read it. */
static int wal_part_ok(const struct seg_job *j, int wfd, const uint8_t *data,
                       int64_t from, int64_t end) {
  int64_t fs = WAL_FRAME_HEADER_SIZE + (int64_t)j->page_size;
  int64_t p = MAX(from, (int64_t)WAL_HEADER_SIZE);
  if (from < WAL_HEADER_SIZE &&
      memcmp(data, j->wal_hdr + from, (size_t)(WAL_HEADER_SIZE - from)))
    return 0;
  for (; p + fs <= end; p += fs) {
    const uint8_t *f = data + (p - j->off);
    if (memcmp(f + 8, j->wal_hdr + 16, 8))
      return 0;
  }
  uint8_t h[WAL_HEADER_SIZE];
  return pread_full(wfd, h, sizeof(h), 0) == WAL_HEADER_SIZE &&
         !memcmp(h, j->wal_hdr, sizeof(h));
}

static void build_work(void *arg) {
  struct seg_job *j = arg;
  struct span sp = {-1, -1, j->phys};
  j->end = j->off;
  j->file_size = -1;
  if (sp.phys < 0 || j->off < sp.phys) {
    sp.sfd = open(j->path, O_RDONLY | O_CLOEXEC);
    if (sp.sfd < 0) {
      j->rc = -errno;
      return;
    }
  }
  int64_t end = j->cap;
  struct stat sb;
  if (end < 0) {
    if (fstat(sp.sfd, &sb)) {
      j->rc = -errno;
      goto out;
    }
    end = sb.st_size;
    j->file_size = sb.st_size;
  }
  if (sp.phys >= 0 && end > sp.phys) {
    sp.wfd = open(j->wal_path, O_RDONLY | O_CLOEXEC);
    if (sp.wfd < 0) {
      j->rc = ERR_BUSY; /* gone meanwhile: the next round sees why */
      goto out;
    }
  } else {
    sp.phys = -1;
  }
  if (end - j->off > MAX_SEGMENT)
    end = commit_boundary(&sp, j->off, MAX(j->off + MAX_SEGMENT, j->min_end),
                          end, j->page_size);
  if (end <= j->off)
    goto out;
  size_t n = (size_t)(end - j->off);
  uint8_t *data = xmalloc(n);
  ssize_t got = span_read(&sp, data, n, j->off);
  if (got != (ssize_t)n) {
    j->rc = got < 0 ? (int)got : -EIO;
  } else if (sp.phys >= 0 &&
             !wal_part_ok(j, sp.wfd, data, MAX(j->off, sp.phys), end)) {
    j->rc = ERR_BUSY; /* the WAL moved on: the shadow has it by now */
  } else {
    j->rc = codec_encode(j->b, data, n, &j->seg);
    if (!j->rc)
      j->end = end;
  }
  free(data);
out:
  if (sp.sfd >= 0)
    close(sp.sfd);
  if (sp.wfd >= 0)
    close(sp.wfd);
}

/*
 * Snapshots by size (snapshot-wal-factor): once the WAL shipped since the
 * last snapshot passes factor times the database size, a new snapshot of
 * the current generation bounds what a restore must fetch and replay (the
 * snapshot plus at most factor times the database of WAL), and lets
 * retention drop what is older once it leaves the retention window.
 *
 * A restore replays the snapshot's whole WAL index from offset 0 over it
 * (core/snapshot.h), so a snapshot taken in the middle of an index makes
 * every later restore read the part of that index before it too: under a
 * writer at full speed an index is 16-80 MB of WAL, more than the database
 * itself.  So the snapshot waits for the next index: the engine is asked
 * to end this one (a checkpoint under the write lock if need be, whatever
 * the WAL's length: db_restart_wal), and the snapshot is taken as soon as
 * the next begins.  An index that does not end (an application reader
 * holding the WAL, a database gone quiet) gets it after
 * ENGINE_RESTART_WAIT_NS, where it is.
 */
/* Below this much WAL a restore is quick whatever the database: small
 * databases are not snapshotted again and again. */
#define SNAPSHOT_WAL_MIN (1 << 20)

static void charge_put(struct replica *r);

/* Whether the snapshot the factor asked for is to be taken now. */
static int snapshot_due_now(struct replica *r) {
  const struct db *db = r->db;
  if (!r->snap_due.gen[0])
    return 0;
  if (strcmp(r->snap_due.gen, db->gen)) {
    memset(&r->snap_due, 0, sizeof(r->snap_due)); /* a new generation's own */
    return 0;
  }
  int next = db->index > r->snap_due.index;
  if (!next && time_mono_ns() - r->snap_due_ns < ENGINE_RESTART_WAIT_NS)
    return 0;
  log_info(db->name, r->name,
           "snapshot: %lld bytes of WAL shipped since the last one, over %lld "
           "times the database (%lld bytes)%s",
           (long long)r->shipped, (long long)r->cfg->snapshot_wal_factor,
           (long long)db->db_size,
           next ? "" : "; the WAL index did not end, taken within it");
  memset(&r->snap_due, 0, sizeof(r->snap_due));
  return 1;
}

static int shipped_enough(struct replica *r) {
  const struct db *db = r->db;
  int64_t f = r->cfg->snapshot_wal_factor;
  /* (Not while one is taken and waits for its segments: shipped counts
   * from its upload.) */
  if (f <= 0 || db->db_size <= 0 || r->want_snapshot || r->snap ||
      r->flushing || r->shipped <= MAX(f * db->db_size, SNAPSHOT_WAL_MIN))
    return 0;
  /* A snapshot only shortens a restore from a later WAL index than the
   * last one's (restore applies whole indexes). */
  if (!strcmp(r->snap_at.gen, db->gen) && db->index <= r->snap_at.index)
    return 0;
  if (!r->snap_due.gen[0]) {
    memcpy(r->snap_due.gen, db->gen, sizeof(r->snap_due.gen));
    r->snap_due.index = db->index;
    r->snap_due_ns = time_mono_ns();
    log_debug(db->name, r->name,
              "snapshot due (%lld bytes of WAL since the last one): at the "
              "start of the WAL index after %08x",
              (long long)r->shipped, db->index);
    db_restart_wal(r->db);
  }
  return snapshot_due_now(r);
}

/* Positions only advance within a generation; a new generation (or a
 * reset to unknown, pos_reset) starts over. */
static void pos_set(struct replica *r, const char *gen, uint32_t index,
                    int64_t offset) {
  struct pos p;
  memcpy(p.gen, gen, sizeof(p.gen));
  p.index = index;
  p.offset = offset;
  assert(pos_is_zero(&r->pos) || strcmp(r->pos.gen, gen) ||
         pos_cmp(&r->pos, &p) <= 0);
  r->pos = p;
}

/* The one way a position goes back: to unknown (the next round lists the
 * store, or a new generation starts), said in the log with the reason. */
static void pos_reset(struct replica *r, const char *why) {
  if (!pos_is_zero(&r->pos)) {
    char p[48];
    pos_format(&r->pos, p);
    log_debug(r->db->name, r->name, "position %s reset: %s", p, why);
  }
  memset(&r->pos, 0, sizeof(r->pos));
}

/* At the default log level, a sign of life: one line per upload round, at
 * most one per LOG_PROGRESS_NS per replica, summing up the segments since
 * the previous line. */
#define LOG_PROGRESS_NS (10 * NS_PER_SEC)
static void log_progress(struct replica *r, int64_t bytes) {
  r->log_segs++;
  r->log_bytes += bytes;
  int64_t now = time_mono_ns();
  if (r->log_last_ns && now - r->log_last_ns < LOG_PROGRESS_NS)
    return;
  char p[48];
  pos_format(&r->pos, p);
  log_info(r->db->name, r->name,
           "wal segments written: count=%lld size=%lld position=%s",
           (long long)r->log_segs, (long long)r->log_bytes, p);
  r->log_segs = r->log_bytes = 0;
  r->log_last_ns = now;
}

static void on_put(void *arg, int status, const char *err) {
  struct replica *r = arg;
  if (r->state == R_CLOSED)
    return;
  if (status) {
    fail(r, status, err);
    return;
  }
  succeeded(r);
  assert(r->seg_index == r->pos.index && r->seg_off == r->pos.offset);
  int64_t n = r->seg_end - r->seg_off;
  r->wal_bytes += n;
  r->shipped += (int64_t)r->seg.len;
  if (r->round_puts++ > 0)
    charge_put(r);
  pos_set(r, r->pos.gen, r->pos.index, r->seg_end);
  if (log_enabled(LOG_DEBUG)) {
    char p[48];
    pos_format(&r->pos, p);
    log_debug(r->db->name, r->name, "wal segment written: position=%s sz=%lld",
              p, (long long)r->seg.len);
  }
  log_progress(r, r->seg.len);
  /* Give the segment's memory back: an idle replica holds none. */
  buf_destroy(&r->seg);
  buf_init(&r->seg, 0);
  db_replicas_advanced(r->db);
  db_status_changed(r->db);
  int snap = shipped_enough(r);
  upload_next(r);
  if (snap)
    replica_snapshot_now(r);
}

static void build_done(void *arg, int status) {
  struct seg_job *j = arg;
  struct replica *r = j->r;
  struct db *db = r->db;
  (void)status;
  assert(r->job == j);
  r->job = NULL;
  int rc = j->rc;
  buf_destroy(&r->seg);
  r->seg = j->seg; /* the segment is the replica's now */
  r->seg_end = j->end;
  uint32_t j_index = r->seg_index;
  int64_t file_size = j->file_size;
  free(j->path);
  free(j->wal_path);
  free(j);
  if (r->state == R_CLOSED)
    return;
  if (rc == -ENOENT) {
    /* The local shadow no longer has what this replica needs: only a new
     * generation can restore continuity. */
    char gen[GEN_LEN + 1];
    memcpy(gen, r->pos.gen, sizeof(gen));
    pos_reset(r, "shadow wal missing locally");
    set_state(r, R_IDLE);
    if (db_request_new_generation(db, gen)) {
      /* (The engine logs the new generation, or skips it if it has left
       * this one meanwhile: the replica's request is then stale.) */
      log_warn(db->name, r->name,
               "shadow wal %s/%08x missing locally: continuity lost", gen,
               j_index);
    } else {
      kick(r); /* the engine has started another generation already */
    }
    return;
  }
  if (rc == ERR_BUSY) {
    /* Read from the WAL while it moved on (a full disk ending): again in a
     * moment, from what the shadow holds by then. */
    set_state(r, R_IDLE);
    timer_start(r, 50);
    return;
  }
  if (rc) {
    char msg[256];
    snprintf(msg, sizeof(msg), "read shadow wal %s/%08x: %s", r->pos.gen,
             r->seg_index, err_str(rc));
    fail(r, rc, msg);
    return;
  }
  if (r->seg_end == r->seg_off) {
    if (r->seg_index < db->index && !strcmp(r->pos.gen, db->gen)) {
      /* The next index only from the end of this one: a shadow file
       * shorter than the position is not this replica's history any
       * more (its frames would be skipped). */
      if (file_size >= 0 && file_size < r->seg_off) {
        char gen[GEN_LEN + 1];
        memcpy(gen, r->pos.gen, sizeof(gen));
        log_error(db->name, r->name,
                  "shadow wal %s/%08x is %lld bytes, not this replica's "
                  "position %lld: continuity lost",
                  gen, j_index, (long long)file_size, (long long)r->seg_off);
        pos_reset(r, "shadow wal shorter than the position");
        set_state(r, R_IDLE);
        if (!db_request_new_generation(db, gen))
          kick(r);
        return;
      }
      /* (A build capped at the size the index had when it started read
       * nothing: again, uncapped now.) */
      if (file_size == r->seg_off)
        pos_set(r, r->pos.gen, r->pos.index + 1, 0);
    }
    upload_next(r);
    return;
  }
  char *key = key_wal_segment(r->pos.gen, r->seg_index, r->seg_off);
  struct payload p = {r->seg.data, -1, 0, (int64_t)r->seg.len};
  backend_put(r->b, key, &p, on_put, r);
  free(key);
}

/* A round uploads what the shadow held when it started; what arrives
 * meanwhile waits for the next round (one round per sync-interval). */
static int past_round_end(const struct replica *r) {
  return r->pos.index > r->round_index ||
         (r->pos.index == r->round_index && r->pos.offset >= r->round_size);
}

static void put_snapshot(struct replica *r);
static int snap_waits(const struct replica *r);

static void upload_next(struct replica *r) {
  struct db *db = r->db;
  if (r->snap) {
    if (r->flushing || pos_is_zero(&r->pos) ||
        strcmp(r->pos.gen, r->snap->gen) || strcmp(db->gen, r->snap->gen)) {
      snap_drop(r);
    } else if (!snap_waits(r)) {
      put_snapshot(r); /* every segment up to it is in the store */
      return;
    }
  }
  if (!behind(r)) {
    caught_up(r);
    return;
  }
  /* (Uploading towards a snapshot: no round end, no yield, until it
   * goes.) */
  if (!r->flushing && !r->snap && past_round_end(r)) {
    set_state(r, R_IDLE);
    r->pending_since_ns = r->round_wall_ns;
    kick(r);
    return;
  }
  if (!r->flushing && !r->snap && budget_contended() &&
      (r->round_puts >= TURN_PUTS ||
       (r->round_puts > 0 && r->seg_end - r->seg_off >= MAX_SEGMENT / 2))) {
    /* Others wait for a turn: the rest of this round waits behind them
     * (a burst of 8 MB segments, or of many WAL indexes, would otherwise
     * spend their tokens). */
    set_state(r, R_IDLE);
    kick(r);
    return;
  }
  if (pos_is_zero(&r->pos) || strcmp(r->pos.gen, db->gen)) {
    set_state(r, R_IDLE);
    kick(r);
    return;
  }
  set_state(r, R_UPLOAD);
  r->seg_index = r->pos.index;
  r->seg_off = r->pos.offset;
  struct seg_job *j = xcalloc(1, sizeof(*j));
  j->r = r;
  j->b = r->b;
  j->path = shadow_wal_path(db->meta, r->pos.gen, r->seg_index);
  j->off = r->seg_off;
  j->cap = r->pos.index == db->index ? db->shadow_size : -1;
  j->phys = r->pos.index == db->index && db->shadow_phys < db->shadow_size
                ? db->shadow_phys
                : -1;
  j->wal_path = xasprintf("%s-wal", db->name);
  memcpy(j->wal_hdr, db->wal_hdr, sizeof(j->wal_hdr));
  /* Only below the validation position: once there, capping again would
   * build an empty segment, which skipped the rest of the index when the
   * WAL had restarted meanwhile (lost frames) and spun forever when
   * flushing at shutdown. */
  if (r->val_cap_pending && r->pos.index == r->val_cap.index &&
      r->pos.offset < r->val_cap.offset && !strcmp(r->pos.gen, r->val_cap.gen))
    j->cap = r->val_cap.offset;
  j->min_end = -1;
  if (!strcmp(r->pos.gen, r->first_seg_end.gen) &&
      r->pos.index == r->first_seg_end.index &&
      r->pos.offset < r->first_seg_end.offset) {
    j->min_end = r->first_seg_end.offset;
    if (j->cap >= 0 && j->cap < j->min_end)
      j->cap = r->pos.index == db->index ? db->shadow_size : -1;
  }
  j->page_size = db->page_size;
  buf_init(&j->seg, 0);
  assert(!r->job); /* one build per replica */
  r->job = j;
  loop_work_submit(build_work, build_done, j);
}

/* --- snapshots --- */

/*
 * A snapshot of index N is the database at a shadow position N:S, and a
 * restore replays index N from offset 0 over it (core/snapshot.h).  So
 * the snapshot object may appear only once the segments of N up to S are
 * in the store: a restore (the latest, or -timestamp between the two
 * uploads, or after a crash between them) that found the snapshot with
 * only part of [0, S) would lay older versions of the pages changed
 * there over the image's newer ones, and keep the image's version of the
 * pages changed after: a database that never existed.  A replica placed
 * in the snapshot's generation therefore uploads up to S first, then the
 * snapshot (object times follow: no -timestamp sees the snapshot without
 * them).  A replica not yet placed there (a new generation) has no
 * segments of N: the snapshot goes first, alone it restores to S, and the
 * first segment of N then reaches S in one object (first_seg_end).
 */

/* The snapshot waits for segments (r->snap's generation is the
 * position's). */
static int snap_waits(const struct replica *r) {
  const struct db_snapshot *s = r->snap;
  return r->pos.index < s->index ||
         (r->pos.index == s->index && r->pos.offset < s->offset);
}

/* A snapshot taken but not uploaded (its segments could not go first:
 * a failure, a new generation, a shutdown): given back, and taken again
 * (at the position then) unless shutting down. */
static void snap_drop(struct replica *r) {
  struct db_snapshot *s = r->snap;
  r->snap = NULL;
  log_debug(r->db->name, r->name,
            "snapshot at %s/%08x:%lld dropped before its upload", s->gen,
            s->index, (long long)s->offset);
  db_snapshot_release(r->db, s);
  if (!r->flushing)
    r->want_snapshot = 1;
}

static void on_snapshot_put(void *arg, int status, const char *err) {
  struct replica *r = arg;
  struct db_snapshot *s = r->snap;
  r->snap = NULL;
  if (r->state == R_CLOSED) {
    db_snapshot_release(r->db, s);
    return;
  }
  if (status) {
    db_snapshot_release(r->db, s);
    fail(r, status, err);
    return;
  }
  succeeded(r);
  r->snapshots++;
  r->shipped = 0;
  memset(&r->snap_due, 0, sizeof(r->snap_due));
  charge_put(r);
  memcpy(r->snap_at.gen, s->gen, sizeof(r->snap_at.gen));
  r->snap_at.index = s->index;
  hk_add_known(r->hk, s->gen, s->index, time_now_ns());
  /* A replica already placed in this generation is at or past the
   * snapshot (its segments continue); one that was not starts at the
   * snapshot, with one segment up to its end. */
  if (pos_is_zero(&r->pos) || strcmp(r->pos.gen, s->gen)) {
    pos_set(r, s->gen, s->index, 0);
    memcpy(r->first_seg_end.gen, s->gen, sizeof(r->first_seg_end.gen));
    r->first_seg_end.index = s->index;
    r->first_seg_end.offset = s->offset;
  }
  log_info(r->db->name, r->name,
           "snapshot written: generation=%s index=%08x size=%lld "
           "wal_offset=%lld",
           s->gen, s->index, (long long)s->size, (long long)s->offset);
  db_snapshot_release(r->db, s);
  side_start(r);
  set_state(r, R_IDLE);
  kick(r);
}

static void on_snapshot(void *arg, int status, struct db_snapshot *s) {
  struct replica *r = arg;
  if (r->state == R_CLOSED) {
    if (!status)
      db_snapshot_release(r->db, s);
    return;
  }
  if (status) {
    fail(r, status, "snapshot failed");
    return;
  }
  /* A second snapshot of an index restores nothing sooner (restore
   * replays the whole index either way), and overwriting the first would
   * move its time later: a -timestamp between the two would lose it. */
  int again = hk_has_snapshot(r->hk, s->gen, s->index);
  if (strcmp(s->gen, r->db->gen) || again) {
    if (again)
      log_debug(r->db->name, r->name,
                "snapshot: index %08x has one already, skipped", s->index);
    db_snapshot_release(r->db, s);
    set_state(r, R_IDLE);
    kick(r);
    return;
  }
  r->snap = s;
  if (!pos_is_zero(&r->pos) && !strcmp(r->pos.gen, s->gen) && snap_waits(r)) {
    upload_next(r); /* the segments up to it first */
    return;
  }
  put_snapshot(r);
}

static void put_snapshot(struct replica *r) {
  struct db_snapshot *s = r->snap;
  set_state(r, R_SNAPSHOT);
  char *key = key_snapshot(s->gen, s->index);
  codec_put_fd(r->b, key, s->fd, s->size, r->db->meta, on_snapshot_put, r);
  free(key);
}

static void take_snapshot(struct replica *r) {
  set_state(r, R_SNAPSHOT);
  db_request_snapshot(r->db, on_snapshot, r);
}

/* --- resume after a restart (spec 3.4) --- */

/* Sets the position, checking it against the local shadow WAL: a replica
 * ahead of us, or needing a shadow file we no longer have, can only be
 * served by a new generation. */
static void resume_at(struct replica *r, uint32_t index, int64_t offset) {
  struct db *db = r->db;
  int ok =
      index < db->index || (index == db->index && offset <= db->shadow_size);
  if (ok && index < db->index) {
    char *path = shadow_wal_path(db->meta, db->gen, index);
    struct stat sb;
    ok = stat(path, &sb) == 0 && sb.st_size >= offset;
    free(path);
  }
  if (!ok) {
    log_warn(db->name, r->name,
             "replica position %08x:%lld does not match the local shadow wal; "
             "starting a new generation",
             index, (long long)offset);
    pos_reset(r, "position not in the local shadow wal");
    set_state(r, R_IDLE);
    db_request_new_generation(db, db->gen);
    return;
  }
  pos_set(r, db->gen, index, offset);
  char p[48];
  pos_format(&r->pos, p);
  log_info(db->name, r->name, "resuming replication at position %s", p);
  side_start(r);
  set_state(r, R_IDLE);
  kick(r);
}

struct resume_get {
  struct replica *r;
  const struct backend *b; /* for the pool job: its age keys */
  struct buf data;
  struct buf out;
  int rc;
  uint32_t index;
  int64_t offset;
  char key[160];
};

static void resume_decode_work(void *arg) {
  struct resume_get *g = arg;
  buf_init(&g->out, 1LL << 30);
  g->rc = codec_decode(g->b, g->data.data, g->data.len, &g->out);
}

static void resume_decode_done(void *arg, int status) {
  struct resume_get *g = arg;
  struct replica *r = g->r;
  (void)status;
  int64_t len = (int64_t)g->out.len;
  int rc = g->rc;
  if (rc)
    log_warn(r->db->name, r->name,
             "last segment %s is unreadable (%s); uploading it again", g->key,
             err_str(rc));
  buf_destroy(&g->data);
  buf_destroy(&g->out);
  uint32_t index = g->index;
  int64_t offset = g->offset + (rc ? 0 : len);
  free(g);
  if (r->state == R_CLOSED)
    return;
  resume_at(r, index, offset);
}

static void on_last_segment(void *arg, int status, const char *err) {
  struct resume_get *g = arg;
  struct replica *r = g->r;
  if (r->state == R_CLOSED) {
    buf_destroy(&g->data);
    free(g);
    return;
  }
  if (status == ERR_NOT_FOUND) {
    /* Vanished between list and get: resume at its offset. */
    uint32_t index = g->index;
    int64_t offset = g->offset;
    buf_destroy(&g->data);
    free(g);
    resume_at(r, index, offset);
    return;
  }
  if (status) {
    buf_destroy(&g->data);
    free(g);
    fail(r, status, err);
    return;
  }
  loop_work_submit(resume_decode_work, resume_decode_done, g);
}

static void on_segments(void *arg, int status, const char *err) {
  struct replica *r = arg;
  if (r->state == R_CLOSED)
    return;
  if (status) {
    fail(r, status, err);
    return;
  }
  uint32_t snap_index = 0;
  for (size_t i = 0; i < r->snaps.n; i++)
    snap_index = MAX(snap_index, r->snaps.v[i].index);
  const struct segment_info *last = NULL;
  for (size_t i = 0; i < r->segs.n; i++) {
    const struct segment_info *s = &r->segs.v[i];
    if (!last || s->index > last->index ||
        (s->index == last->index && s->offset > last->offset))
      last = s;
  }
  if (!last || last->index < snap_index) {
    snapshot_list_destroy(&r->snaps);
    segment_list_destroy(&r->segs);
    /* The snapshot is there without any segment of its index (written
     * first in a new generation, then stopped): its end is unknown, at
     * most the shadow file's, which the first segment then reaches. */
    struct db *db = r->db;
    int64_t end = db->shadow_size;
    if (snap_index != db->index) {
      char *path = shadow_wal_path(db->meta, db->gen, snap_index);
      struct stat sb;
      end = stat(path, &sb) == 0 ? sb.st_size : 0;
      free(path);
    }
    memcpy(r->first_seg_end.gen, db->gen, sizeof(r->first_seg_end.gen));
    r->first_seg_end.index = snap_index;
    r->first_seg_end.offset = end;
    resume_at(r, snap_index, 0);
    return;
  }
  struct resume_get *g = xcalloc(1, sizeof(*g));
  g->r = r;
  g->b = r->b;
  g->index = last->index;
  g->offset = last->offset;
  buf_init(&g->data, 1LL << 30);
  char *key = key_wal_segment(r->db->gen, last->index, last->offset);
  snprintf(g->key, sizeof(g->key), "%s", key);
  snapshot_list_destroy(&r->snaps);
  segment_list_destroy(&r->segs);
  struct sink s = {&g->data, -1, 0};
  backend_get(r->b, key, 0, -1, &s, on_last_segment, g);
  free(key);
}

static void on_snapshots(void *arg, int status, const char *err) {
  struct replica *r = arg;
  if (r->state == R_CLOSED)
    return;
  if (status) {
    fail(r, status, err);
    return;
  }
  for (size_t i = 0; i < r->snaps.n; i++)
    hk_add_known(r->hk, r->snaps.v[i].gen, r->snaps.v[i].index,
                 r->snaps.v[i].created_ns);
  if (r->snaps.n == 0) {
    take_snapshot(r);
    return;
  }
  store_segments(r->b, r->db->gen, &r->segs, on_segments, r);
}

static void start_resume(struct replica *r) {
  set_state(r, R_RESUME);
  pos_reset(r, "listing the store");
  snapshot_list_destroy(&r->snaps);
  segment_list_destroy(&r->segs);
  store_snapshots(r->b, r->db->gen, &r->snaps, on_snapshots, r);
}

/* --- scheduling --- */

/*
 * sync-interval as an average, not a fixed gap: a token bucket.  Every PUT
 * costs one token (the first segment of a round, each further segment of
 * the same round, each snapshot); tokens come back at one per interval, up
 * to SYNC_BURST.  A round starts when a token is in hand.  A lone commit
 * after a pause finds one and goes at once; sustained writes drain the
 * bucket and then go together once per interval, so the PUT rate stays at
 * one per interval (at most 1.5 + 60 in any minute at 1s, where a fixed
 * gap allows 61 rounds and more PUTs).  A round that costs more than one
 * PUT, or a flush that goes without a token, leaves a debt (at most
 * SYNC_DEBT) that delays the next round.  A WAL restart's bare header goes
 * at once and free (or every quiet checkpoint would delay the next commit
 * by an interval).
 * Returns 0 and takes a token when a round may start now, else the
 * nanoseconds until one is back.
 */
#define SYNC_BURST 1.5
#define SYNC_DEBT 3.0

static double tokens_now(const struct replica *r, int64_t now) {
  int64_t iv = r->cfg->sync_interval;
  double t = SYNC_BURST; /* last_round_ns 0: a full bucket */
  if (r->last_round_ns && iv > 0)
    t = r->tokens + (double)(now - r->last_round_ns) / (double)iv;
  return t > SYNC_BURST ? SYNC_BURST : t;
}

/* One more PUT than the round's token paid for. */
static void charge_put(struct replica *r) {
  if (!r->last_round_ns)
    return; /* before the first round: the bucket is full anyway */
  r->tokens -= 1.0;
  if (r->tokens < -SYNC_DEBT)
    r->tokens = -SYNC_DEBT;
}

static int64_t round_wait(struct replica *r, int64_t now) {
  const struct db *db = r->db;
  int64_t iv = r->cfg->sync_interval;
  double t = tokens_now(r, now);
  /* What a checkpoint's WAL restart leaves is the next index's bare
   * header. */
  if (r->pos.index + 1 == db->index && db->shadow_size <= WAL_HEADER_SIZE) {
    r->round_puts = -1; /* its PUT is not charged: no delay after it */
    return 0;
  }
  if (t < 1.0 && !r->flushing)
    return (int64_t)((1.0 - t) * (double)iv) + 1;
  r->tokens = t - 1.0 < -SYNC_DEBT ? -SYNC_DEBT : t - 1.0;
  return 0;
}

/* A turn from the process-wide budget (a token and a slot) before an
 * operation starts: 0 when queued for one (on_budget kicks again). */
static int admitted(struct replica *r) {
  return budget_admit(&r->bw, r->flushing);
}

static void kick_once(struct replica *r);

/* A turn kick_once did not use (caught up, the interval not passed) goes
 * back at once. */
static void kick(struct replica *r) {
  kick_once(r);
  if (r->bw.granted && !in_flight(r))
    budget_cancel(&r->bw);
}

static void kick_once(struct replica *r) {
  struct db *db = r->db;
  if (in_flight(r) || r->state == R_CLOSED)
    return;
  /* Flushed for a stop (its lease released): what the final close job
   * copies after that stays in the shadow WAL for the next start. */
  if (r->flushing && !r->flush_cb)
    return;
  if (r->state == R_BACKOFF && !r->flushing)
    return;
  if (!db->gen[0]) {
    caught_up(r);
    return;
  }
  /* Started asleep with a position from the local state: nothing to do
   * (no lease, no request) until there is something to upload. */
  if (r->local_pos && !r->want_snapshot && !behind(r)) {
    caught_up(r);
    return;
  }
  lease_start(r->lease); /* before anything goes to the path */
  /* Something to upload asks the lease for it (an idle lease renews at
   * its TTL first); nothing to upload only needs it held. */
  int work = pos_is_zero(&r->pos) || strcmp(r->pos.gen, db->gen) ||
             r->want_snapshot || behind(r);
  if (work ? !lease_use(r->lease) : !lease_held(r->lease)) {
    /* Not ours: nothing goes to this path, and the lag grows.  A store
     * failing the lease is a replica error (backoff, retries); a shutdown
     * still waits for a lease being taken (its final sync), not for one
     * another host holds. */
    if (!r->pending_since_ns && behind(r))
      r->pending_since_ns =
          db->last_change_ns ? db->last_change_ns : time_now_ns();
    if (lease_failing(r->lease)) {
      fail(r, ERR_BACKEND, lease_error(r->lease));
    } else if (lease_state(r->lease) != L_ACQUIRE && !lease_waking(r->lease)) {
      if (r->flushing && behind(r))
        log_error(r->db->name, r->name,
                  "shutdown: changes not uploaded: the lease on %s is not "
                  "ours (%s)",
                  r->b->desc, lease_state_name(lease_state(r->lease)));
      flush_done(r);
    }
    return;
  }
  if (r->local_pos) {
    /* The lease is ours: the housekeeping a resume starts (resume_at). */
    r->local_pos = 0;
    if (!pos_is_zero(&r->pos))
      side_start(r);
  }
  if (pos_is_zero(&r->pos) || strcmp(r->pos.gen, db->gen)) {
    if (!r->pending_since_ns)
      r->pending_since_ns =
          db->last_change_ns ? db->last_change_ns : time_now_ns();
    if (admitted(r))
      start_resume(r);
    return;
  }
  /* (A new index tells us here when no upload is in flight.) */
  if (!r->want_snapshot && !r->flushing && snapshot_due_now(r))
    r->want_snapshot = 1;
  /* (Not with a full disk: it is written to the meta directory first.) */
  if (r->want_snapshot && hk_has_snapshot(r->hk, db->gen, db->index)) {
    r->want_snapshot = 0; /* (on_snapshot says why) */
    log_debug(db->name, r->name,
              "snapshot: index %08x has one already, skipped", db->index);
  }
  if (r->want_snapshot && !r->flushing && !db->disk_full) {
    if (!admitted(r))
      return;
    r->want_snapshot = 0;
    take_snapshot(r);
    return;
  }
  if (!behind(r)) {
    caught_up(r);
    return;
  }
  if (!r->pending_since_ns)
    r->pending_since_ns =
        db->last_change_ns ? db->last_change_ns : time_now_ns();
  int64_t now = time_mono_ns();
  if (!r->round_paid) {
    r->round_puts = 0;
    int64_t wait = round_wait(r, now);
    if (wait > 0) {
      if (!r->timer || !loop_timer_active(r->timer))
        timer_start(r, (uint64_t)(wait / NS_PER_MS) + 1);
      return;
    }
    r->round_paid = 1; /* its own token is in hand; now the process's */
  }
  if (!admitted(r))
    return; /* the lag grows, reported, while it waits its turn */
  r->round_paid = 0;
  timer_drop(r);
  r->last_round_ns = now;
  r->round_wall_ns = time_now_ns();
  r->round_index = db->index;
  r->round_size = db->shadow_size;
  if (r->val_cap_pending && !strcmp(r->val_cap.gen, r->pos.gen) &&
      pos_cmp(&r->pos, &r->val_cap) < 0) {
    /* Validation needs a segment that ends exactly at its position. */
    r->round_index = r->val_cap.index;
    r->round_size = r->val_cap.offset;
  }
  upload_next(r);
}

void replica_notify(struct replica *r) {
  if (r->state == R_IDLE)
    kick(r);
}

void replica_flush(struct replica *r, void (*cb)(void *arg), void *arg) {
  hk_stop(r->hk);
  validator_stop(r->val);
  r->want_snapshot = 0;
  r->flushing = 1;
  r->flush_cb = cb;
  r->flush_arg = arg;
  if (r->bw.queued && !r->bw.urgent)
    budget_cancel(&r->bw); /* to wait again, for a slot only */
  if (r->state == R_BACKOFF) {
    timer_drop(r);
    set_state(r, R_IDLE);
  }
  if (r->state == R_IDLE) {
    timer_drop(r);
    kick(r);
  }
  /* Otherwise the operation in flight continues and calls flush_done. */
}

void replica_resume_local(struct replica *r, const struct pos *p,
                          int64_t last_sync_ns) {
  pos_set(r, p->gen, p->index, p->offset);
  r->last_sync_ns = last_sync_ns;
  r->local_pos = 1;
  char s[48];
  pos_format(&r->pos, s);
  log_debug(r->db->name, r->name, "position %s from the local state", s);
}

void replica_abandon(struct replica *r) {
  hk_stop(r->hk);
  validator_stop(r->val);
  timer_drop(r);
  budget_cancel(&r->bw);
  r->want_snapshot = 0;
  r->flush_cb = NULL;
  set_state(r, R_CLOSED);
}

void replica_snapshot_now(struct replica *r) {
  r->want_snapshot = 1;
  if (r->state == R_IDLE)
    kick(r);
}
