/*
 * validation-interval (spec 3.8) without its false mismatches.
 *
 * Litestream compares a CRC of the live database file with a restore at
 * "the same" position, but the file is not at that position when its
 * checkpoint could not complete, hence the false mismatches.  Here:
 *
 *  1. the database job copies every frame while holding the write lock for
 *     a moment, pins a read transaction at exactly that position P and
 *     writes a consistent copy of the database as of P (backup API through
 *     the pin), with the application writing on;
 *  2. the replica's next upload round stops exactly at P, so a segment ends
 *     there;
 *  3. once the replica holds P, it is restored up to P into a temporary
 *     file and compared page by page with the copy (page 1's change counter
 *     and version fields excepted).
 */
#include "core/validate.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/codec.h"
#include "core/db.h"
#include "base/err.h"
#include "base/log.h"
#include "core/replica.h"
#include "core/restore.h"
#include "loop/loop.h"

#define WAIT_FOR_REPLICA_MS 30000

/* What is in flight (validator_running: anything but V_IDLE).  One pass:
 * IDLE -> COPY (the database job's copy) -> WAIT (the replica reaching
 * the copy's position; a timer) -> RESTORE (restore_run) -> CMP (a pool
 * job) -> IDLE; any of them may end the pass (-> IDLE, finish). */
enum val_phase { V_IDLE, V_COPY, V_WAIT, V_RESTORE, V_CMP };

struct validator {
  struct replica *r;
  struct loop_timer *timer;
  struct loop_timer *poll;
  enum val_phase phase;
  int stopping;       /* validator_stop: the pass ends at its next step */
  struct restore *rs; /* V_RESTORE: the restore, to cancel it */
  int rs_back;        /* its callback ran (maybe inside restore_run) */
  struct pos at;
  char *truth;    /* copy of the database at `at` */
  char *restored; /* the replica restored to `at` */
  int64_t wait_until;
  int cmp_rc;
  char cmp_msg[256];
};

static void schedule(struct validator *v, uint64_t ms) {
  loop_timer_start(v->timer, ms);
}

/* The one setter: a pass only moves forward, or ends. */
static void set_phase(struct validator *v, enum val_phase p) {
  assert(p == V_IDLE ? v->phase != V_IDLE : p == v->phase + 1);
  assert(p != V_COPY || !v->stopping);
  v->phase = p;
}

static void finish(struct validator *v, int ok, const char *msg) {
  struct replica *r = v->r;
  char p[48];
  pos_format(&v->at, p);
  if (ok == 1) {
    r->validations_ok++;
    log_info(r->db->name, r->name, "validation ok at position %s", p);
  } else if (ok == 0) {
    r->validations_failed++;
    log_error(r->db->name, r->name, "validation mismatch at position %s: %s", p,
              msg);
  } else {
    log_warn(r->db->name, r->name, "validation skipped: %s", msg);
  }
  if (ok == 0 && getenv("SLUICE_KEEP_VALIDATION")) {
    log_info(r->db->name, r->name, "kept %s and %s", v->truth, v->restored);
  } else {
    if (v->truth)
      unlink(v->truth);
    if (v->restored)
      unlink(v->restored);
  }
  free(v->truth);
  free(v->restored);
  v->truth = v->restored = NULL;
  r->val_cap_pending = 0;
  set_phase(v, V_IDLE);
  if (!v->stopping)
    schedule(v, (uint64_t)(r->cfg->validation_interval / NS_PER_MS));
  replica_side_done(r); /* a stop may be waiting for this pass */
}

/* Compares two database files page by page, skipping the page-1 fields a
 * copy may legitimately change: the change counter (24..27), the schema
 * cookie (40..43, which the backup API bumps in its copy) and
 * version-valid-for + SQLite version (92..99). */
static int compare_files(const char *a, const char *b, char *msg,
                         size_t msglen) {
  struct buf x, y;
  int rc = file_read_all(a, 0, &x);
  if (rc) {
    snprintf(msg, msglen, "read %s: %s", a, err_str(rc));
    return -1;
  }
  rc = file_read_all(b, 0, &y);
  if (rc) {
    buf_destroy(&x);
    snprintf(msg, msglen, "read %s: %s", b, err_str(rc));
    return -1;
  }
  int same = 1;
  if (x.len != y.len || x.len < 100) {
    snprintf(msg, msglen, "database is %zu bytes, replica restores %zu", x.len,
             y.len);
    same = 0;
  } else {
    uint32_t ps = (uint32_t)x.data[16] << 8 | x.data[17];
    if (ps == 1)
      ps = 65536;
    for (size_t off = 0; off < x.len && same; off += ps) {
      size_t n = MIN((size_t)ps, x.len - off);
      if (off == 0) {
        same = !memcmp(x.data, y.data, 24) &&
               !memcmp(x.data + 28, y.data + 28, 40 - 28) &&
               !memcmp(x.data + 44, y.data + 44, 92 - 44) &&
               !memcmp(x.data + 100, y.data + 100, n - 100);
      } else {
        same = !memcmp(x.data + off, y.data + off, n);
      }
      if (!same)
        snprintf(msg, msglen, "page %zu differs", off / ps + 1);
    }
  }
  buf_destroy(&x);
  buf_destroy(&y);
  return same;
}

static void cmp_work(void *arg) {
  struct validator *v = arg;
  v->cmp_rc =
      compare_files(v->truth, v->restored, v->cmp_msg, sizeof(v->cmp_msg));
}

static void cmp_done(void *arg, int status) {
  struct validator *v = arg;
  (void)status;
  assert(v->phase == V_CMP);
  if (v->cmp_rc < 0)
    finish(v, -1, v->cmp_msg);
  else
    finish(v, v->cmp_rc, v->cmp_msg);
}

static void on_restored(void *arg, int status, const char *err) {
  struct validator *v = arg;
  assert(v->phase == V_RESTORE);
  v->rs = NULL;
  v->rs_back = 1;
  if (status == ERR_CANCELED || v->stopping) {
    finish(v, -1, "canceled by shutdown");
    return;
  }
  if (status) {
    /* A replica that cannot be restored to a position it holds is exactly
     * what validation is for. */
    finish(v, 0, err ? err : err_str(status));
    return;
  }
  set_phase(v, V_CMP);
  loop_work_submit(cmp_work, cmp_done, v);
}

static void restore_now(struct validator *v) {
  struct replica *r = v->r;
  struct restore_opts o;
  memset(&o, 0, sizeof(o));
  o.db = r->db->name;
  o.generation = v->at.gen;
  o.has_index = 1;
  o.index = v->at.index;
  o.has_offset = 1;
  o.offset = v->at.offset;
  o.parallelism = 4;
  v->restored =
      xasprintf("%s/validate-%s.%d.db", r->db->meta, r->name, (int)getpid());
  unlink(v->restored);
  set_phase(v, V_RESTORE);
  v->rs_back = 0;
  struct restore *rs =
      restore_run(r->b, v->at.gen, &o, v->restored, on_restored, v);
  if (!v->rs_back)
    v->rs = rs;
}

static void on_poll(void *arg) {
  struct validator *v = arg;
  struct replica *r = v->r;
  assert(v->phase == V_WAIT && !v->stopping);
  int same_gen = !strcmp(r->pos.gen, v->at.gen);
  if (same_gen && pos_cmp(&r->pos, &v->at) >= 0 && r->state != R_UPLOAD) {
    restore_now(v);
    return;
  }
  if (!same_gen && !pos_is_zero(&r->pos)) {
    finish(v, -1, "the generation changed");
    return;
  }
  if (time_mono_ns() > v->wait_until) {
    finish(v, -1, "the replica did not reach the position in time");
    return;
  }
  loop_timer_start(v->poll, 100);
}

static void on_copy(void *arg, int status, const char *path,
                    const struct pos *at) {
  struct validator *v = arg;
  struct replica *r = v->r;
  assert(v->phase == V_COPY);
  if (status) {
    finish(v, -1,
           status == ERR_BUSY       ? "database busy"
           : status == ERR_CANCELED ? "canceled by shutdown"
                                    : err_str(status));
    return;
  }
  v->truth = xstrdup(path); /* ours now: finish removes it */
  if (v->stopping) {
    finish(v, -1, "canceled by shutdown");
    return;
  }
  v->at = *at;
  /* The next round ends exactly at `at` (see replica.c). */
  r->val_cap = *at;
  r->val_cap_pending = 1;
  r->last_round_ns = 0; /* upload now, not at the next interval */
  replica_notify(r);
  v->wait_until = time_mono_ns() + WAIT_FOR_REPLICA_MS * NS_PER_MS;
  set_phase(v, V_WAIT);
  on_poll(v);
}

static void on_timer(void *arg) {
  struct validator *v = arg;
  struct replica *r = v->r;
  if (v->phase != V_IDLE || v->stopping)
    return;
  if (!r->db->gen[0] || r->db->state != DB_READY) {
    schedule(v, 1000);
    return;
  }
  set_phase(v, V_COPY);
  db_request_validation(r->db, on_copy, v);
}

struct validator *validator_new(struct replica *r) {
  if (r->cfg->validation_interval <= 0)
    return NULL;
  if (codec_encrypts(r->b) && !r->b->age.n_identities) {
    log_warn(r->db->name, r->name,
             "validation-interval ignored: the replica is age-encrypted and "
             "no age identity is configured to read it back");
    return NULL;
  }
  struct validator *v = xcalloc(1, sizeof(*v));
  v->r = r;
  v->timer = loop_timer_new(on_timer, v);
  v->poll = loop_timer_new(on_poll, v);
  return v;
}

void validator_start(struct validator *v) {
  if (!v)
    return;
  v->stopping = 0;
  if (v->phase == V_IDLE && !loop_timer_active(v->timer))
    schedule(v, (uint64_t)(v->r->cfg->validation_interval / NS_PER_MS));
}

void validator_stop(struct validator *v) {
  if (!v)
    return;
  loop_timer_stop(v->timer);
  loop_timer_stop(v->poll);
  v->stopping = 1;
  switch (v->phase) {
  case V_WAIT: /* only a timer: ends now */
    finish(v, -1, "canceled by shutdown");
    break;
  case V_RESTORE: /* on_restored follows, once its requests and jobs are back */
    restore_cancel(v->rs);
    break;
  case V_COPY: /* the database answers (db_close cancels it) */
  case V_CMP:  /* a pool job reading two local files: back soon */
  case V_IDLE:
    break;
  }
}

int validator_running(const struct validator *v) {
  return v && v->phase != V_IDLE;
}

void validator_free(struct validator *v) {
  if (!v)
    return;
  /* A callback still due would land on freed memory: the replica's stop
   * waits for the pass (replica_quiesce). */
  assert(v->phase == V_IDLE);
  loop_timer_free(v->timer);
  loop_timer_free(v->poll);
  if (v->truth)
    unlink(v->truth);
  if (v->restored)
    unlink(v->restored);
  free(v->truth);
  free(v->restored);
  free(v);
}
