#include "core/engine.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "format/lz4frame.h"
#include "core/shadow.h"
#include "core/snapshot.h"
#include "base/util.h"

#define BUSY_TIMEOUT_MS 1000
/* How long the checkpoint waits for the write lock before trying later. */
#define WRITE_LOCK_WAIT_MS 250
/* How long engine_open waits for an application's checkpoint to finish
 * before taking the pin without the checkpoint lock. */
#define OPEN_CKPT_LOCK_WAIT_MS 2000

static void ckpt_lock(struct engine *e, int hold);
static int dms_lock(struct engine *e, int hold);
static int db_shared_lock(struct engine *e, int hold);

/* Rounds of a quiet (lock-free) checkpoint: each round's PASSIVE has less
 * to copy, so the window a commit must miss shrinks. */
#define CKPT_QUIET_ROUNDS 8
/* The write lock is taken only once the WAL holds this many times
 * min-checkpoint-page-count frames (or max-checkpoint-page-count): quiet
 * checkpoints kept failing for that long. */
#define CKPT_LOCK_FACTOR 4

void engine_global_init(void) {
  static int done;
  if (done)
    return;
  done = 1;
  sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
  sqlite3_config(SQLITE_CONFIG_LOOKASIDE, 0, 0);
  sqlite3_initialize();
}

void engine_init_struct(struct engine *e, const struct db_config *cfg) {
  memset(e, 0, sizeof(*e));
  /* Borrowed from cfg, which outlives the engine (db.h), as its meta
   * directory when set (a dir entry's database always has one). */
  e->db_path = (char *)cfg->path;
  e->wal_path = xasprintf("%s-wal", cfg->path);
  e->own_meta = !cfg->meta_path;
  e->meta =
      e->own_meta ? meta_dir_path(cfg->path, NULL) : (char *)cfg->meta_path;
  e->name = e->db_path;
  e->min_ckpt_pages = cfg->min_checkpoint_page_count > 0
                          ? cfg->min_checkpoint_page_count
                          : DEFAULT_MIN_CHECKPOINT_PAGES;
  e->max_ckpt_pages = cfg->max_checkpoint_page_count;
  e->ckpt_min_interval_ns = 250 * NS_PER_MS;
  e->pin = -1;
  e->pin_state = PIN_NONE;
  e->wal_fd = -1;
  e->db_fd = -1;
  e->shm_fd = -1;
  e->shadow_fd = -1;
  resync_init(&e->rs);
  engine_keep_msgs(e);
}

/* --- the idle stub ---
 * A deep sleeper's engine, packed: every byte of the struct XORed with a
 * fresh engine's defaults (so an fd of -1 is a zero), then its zero runs
 * encoded as (zeros, literals, the literal bytes), one byte each count.
 * Byte-exact: engine_unpack gives back the very same struct (its pointers
 * too: the paths stay where they are), so the wake proves continuity from
 * the same sleep record, positions and WAL header as if it never left. */
static void stub_template(struct engine *t) {
  memset(t, 0, sizeof(*t));
  t->pin = -1;
  t->wal_fd = t->db_fd = t->shm_fd = t->shadow_fd = -1;
}

uint8_t *engine_pack(struct engine *e, size_t *len) {
  assert(e->asleep == ENGINE_DEEP && !e->opened && !e->m);
  assert(e->wal_fd < 0 && e->db_fd < 0 && e->shm_fd < 0 && e->shadow_fd < 0);
  struct engine t;
  stub_template(&t);
  const uint8_t *a = (const uint8_t *)e, *b = (const uint8_t *)&t;
  uint8_t out[2 * sizeof(*e) + 2];
  size_t o = 0, i = 0, n = sizeof(*e);
  while (i < n) {
    size_t z = 0;
    while (i + z < n && z < 255 && a[i + z] == b[i + z])
      z++;
    i += z;
    /* Literals up to the next run of two equal bytes (a lone zero costs
     * less as a literal than as a run). */
    size_t l = 0;
    while (i + l < n && l < 255 &&
           !(a[i + l] == b[i + l] &&
             (i + l + 1 >= n || a[i + l + 1] == b[i + l + 1])))
      l++;
    out[o++] = (uint8_t)z;
    out[o++] = (uint8_t)l;
    for (size_t k = 0; k < l; k++)
      out[o++] = a[i + k] ^ b[i + k];
    i += l;
  }
  uint8_t *p = xmalloc(o);
  memcpy(p, out, o);
  *len = o;
  free(e);
  return p;
}

struct engine *engine_unpack(const uint8_t *p) {
  struct engine *e = xmalloc(sizeof(*e));
  stub_template(e);
  uint8_t *a = (uint8_t *)e;
  size_t i = 0, n = sizeof(*e);
  while (i < n) {
    size_t z = *p++, l = *p++;
    i += z;
    assert(i + l <= n);
    for (size_t k = 0; k < l; k++)
      a[i + k] ^= *p++;
    i += l;
  }
  return e;
}

void engine_keep_msgs(struct engine *e) {
  if (!e->m)
    e->m = xcalloc(1, sizeof(*e->m));
}

void engine_drop_msgs(struct engine *e) {
  free(e->m);
  e->m = NULL;
}

#define set_err engine_set_err

void engine_set_err(struct engine *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->m->err, sizeof(e->m->err), fmt, ap);
  va_end(ap);
}

/* SQLite's default busy handler sleeps 1, 2, 5, 10... ms between tries, so
 * against a writer committing tens of thousands of times a second it rarely
 * finds the write lock free.  Ours retries every 100us until a deadline. */
struct busy_wait {
  int64_t deadline_ns;
};
static _Thread_local struct busy_wait t_busy;

static int on_busy(void *arg, int n) {
  (void)arg;
  (void)n;
  int64_t now = time_mono_ns();
  int64_t deadline = t_busy.deadline_ns ? t_busy.deadline_ns
                                        : now + BUSY_TIMEOUT_MS * NS_PER_MS;
  if (!t_busy.deadline_ns)
    t_busy.deadline_ns = deadline;
  if (now >= deadline)
    return 0;
  usleep(100);
  return 1;
}

static int sql_exec(struct engine *e, sqlite3 *c, const char *sql) {
  char *msg = NULL;
  t_busy.deadline_ns = 0;
  int rc = sqlite3_exec(c, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    set_err(e, "%s: %s", sql, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return (rc & 0xff) == SQLITE_BUSY ? ERR_BUSY : ERR_SQLITE;
  }
  return 0;
}

/* A cleanup statement (ROLLBACK): its failure is reported only when
 * nothing failed before it, so the first (real) error is the one logged. */
static void sql_cleanup(struct engine *e, sqlite3 *c, const char *sql) {
  char first[sizeof(e->m->err)];
  memcpy(first, e->m->err, sizeof(first));
  if (sql_exec(e, c, sql) && first[0])
    memcpy(e->m->err, first, sizeof(first));
}

/* Runs a statement returning one row; copies up to 3 integer columns. */
static int sql_row(struct engine *e, sqlite3 *c, const char *sql,
                   int64_t out[3], char *text, size_t textlen) {
  sqlite3_stmt *st;
  t_busy.deadline_ns = 0;
  int rc = sqlite3_prepare_v2(c, sql, -1, &st, NULL);
  if (rc != SQLITE_OK) {
    set_err(e, "%s: %s", sql, sqlite3_errmsg(c));
    return ERR_SQLITE;
  }
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    int n = sqlite3_column_count(st);
    for (int i = 0; i < 3 && i < n && out; i++)
      out[i] = sqlite3_column_int64(st, i);
    if (text && textlen) {
      const unsigned char *t = sqlite3_column_text(st, 0);
      snprintf(text, textlen, "%s", t ? (const char *)t : "");
    }
    rc = SQLITE_DONE;
  }
  if (rc != SQLITE_DONE) {
    set_err(e, "%s: %s", sql, sqlite3_errmsg(c));
    sqlite3_finalize(st);
    return (rc & 0xff) == SQLITE_BUSY ? ERR_BUSY : ERR_SQLITE;
  }
  sqlite3_finalize(st);
  return 0;
}

static int open_conn(struct engine *e, sqlite3 **out) {
  sqlite3 *c = NULL;
  int rc = sqlite3_open_v2(e->db_path, &c,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    set_err(e, "open %s: %s", e->db_path,
            c ? sqlite3_errmsg(c) : sqlite3_errstr(rc));
    sqlite3_close(c);
    return ERR_SQLITE;
  }
  /* Never delete the -wal on close: it is the application's. */
  int on = 1;
  sqlite3_file_control(c, "main", SQLITE_FCNTL_PERSIST_WAL, &on);
  /* Nor checkpoint it when ours is the last connection to close: the
   * database file then keeps exactly the state of our clean-stop record
   * (shadow.h). */
  sqlite3_db_config(c, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
  sqlite3_busy_handler(c, on_busy, NULL);
  sqlite3_extended_result_codes(c, 1);
  /* Our connections never checkpoint on their own and read little. */
  if ((rc = sql_exec(e, c, "PRAGMA wal_autocheckpoint = 0")) ||
      (rc = sql_exec(e, c, "PRAGMA cache_size = 8")) ||
      (rc = sql_exec(e, c, "PRAGMA synchronous = NORMAL"))) {
    sqlite3_close(c);
    return rc;
  }
  *out = c;
  return 0;
}

/* --- the pin --- */

static int pin_begin(struct engine *e, int i) {
  int rc = sql_exec(e, e->conn[i], "BEGIN");
  if (!rc)
    rc = sql_row(e, e->conn[i], "SELECT COUNT(1) FROM _litestream_seq", NULL,
                 NULL, 0);
  if (rc)
    sqlite3_exec(e->conn[i], "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

static void pin_end(struct engine *e, int i) {
  if (sqlite3_get_autocommit(e->conn[i]) == 0)
    sql_cleanup(e, e->conn[i], "ROLLBACK");
}

static const char *pin_state_name(enum engine_pin s) {
  static const char *names[] = {"none", "held", "regained"};
  return names[s];
}

/* The one setter of the pin: which connection holds it (-1: none) and
 * whether a WAL restart seen under it is genuine. */
static void pin_set(struct engine *e, int i, enum engine_pin s) {
  assert((i < 0) == (s == PIN_NONE));
  assert(i < 2);
  if (e->pin_state != s)
    log_debug(e->name, NULL, "pin %s -> %s", pin_state_name(e->pin_state),
              pin_state_name(s));
  e->pin = i;
  e->pin_state = s;
}

/* --- WAL reading and shadow appends --- */

static int wal_open(struct engine *e) {
  if (e->wal_fd >= 0)
    return 0;
  e->wal_fd = open(e->wal_path, O_RDONLY | O_CLOEXEC);
  if (e->wal_fd < 0) {
    int err = -errno;
    set_err(e, "open %s: %s", e->wal_path, strerror(errno));
    return err;
  }
  return 0;
}

static int read_wal_header(struct engine *e, uint8_t raw[WAL_HEADER_SIZE],
                           struct wal_header *h) {
  ssize_t n = pread_full(e->wal_fd, raw, WAL_HEADER_SIZE, 0);
  if (n < 0) {
    set_err(e, "read %s: %s", e->wal_path, strerror((int)-n));
    return (int)n;
  }
  if (n < WAL_HEADER_SIZE)
    return ERR_NOT_FOUND; /* empty (e.g. truncated by a checkpoint) */
  return wal_header_parse(raw, h) ? ERR_WAL_HEADER : 0;
}

/* Makes SQLite write a WAL header: Litestream's _litestream_seq upsert. */
static int force_wal_write(struct engine *e, int conn) {
  return sql_exec(e, e->conn[conn],
                  "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) "
                  "ON CONFLICT (id) DO UPDATE SET seq = seq + 1");
}

/* Reads the WAL header; a WAL with none yet (missing, deleted by the last
 * connection to close, or truncated by a checkpoint) is made to write one
 * first: our pin sees an empty WAL, so nothing is lost. */
static int read_or_start_wal(struct engine *e, uint8_t raw[WAL_HEADER_SIZE],
                             struct wal_header *h) {
  int rc = read_wal_header(e, raw, h);
  if (rc == ERR_NOT_FOUND || rc == ERR_WAL_HEADER) {
    rc = force_wal_write(e, 1 - e->pin);
    if (!rc)
      rc = read_wal_header(e, raw, h);
  }
  return rc;
}

/* read_or_start_wal, naming the WAL in e->m->err on failure. */
static int start_wal_header(struct engine *e, uint8_t raw[WAL_HEADER_SIZE],
                            struct wal_header *h) {
  int rc = read_or_start_wal(e, raw, h);
  if (rc && !e->m->err[0])
    set_err(e, "cannot read WAL header of %s: %s", e->wal_path, err_str(rc));
  return rc;
}

int engine_new_generation(struct engine *e, const char *reason) {
  snprintf(e->m->reason, sizeof(e->m->reason), "%s", reason);
  resync_forget(e);
  uint8_t raw[WAL_HEADER_SIZE];
  struct wal_header h;
  int rc = start_wal_header(e, raw, &h);
  if (rc)
    return rc;
  char gen[GEN_LEN + 1];
  gen_new(gen);
  memcpy(e->gen, gen, sizeof(gen));
  memcpy(e->hdr_raw, raw, WAL_HEADER_SIZE);
  e->hdr = h;
  e->page_size = h.page_size;
  e->index = 0;
  if ((rc = shadow_start_index(e)) || (rc = shadow_copy_frames(e)) ||
      (rc = shadow_fsync(e)))
    return rc;
  if ((rc = shadow_write_generation(e->meta, gen))) {
    set_err(e, "write %s/generation: %s", e->meta, strerror(-rc));
    return rc;
  }
  shadow_clean(e->meta, gen);
  e->stats.generations++;
  return 0;
}

/* After shadow_start_index failed with rc: on a full disk, the new
 * lifetime's frames stay in the WAL (our pin keeps them there) until its
 * shadow file can be written (e->no_file); returns 1 then, else 0. */
static int start_index_full(struct engine *e, int rc) {
  if (rc != -ENOSPC && rc != -EDQUOT)
    return 0;
  char *path = shadow_wal_path(e->meta, e->gen, e->index);
  unlink(path);
  free(path);
  if (e->shadow_fd >= 0)
    close(e->shadow_fd);
  e->shadow_fd = -1;
  e->shadow_size = WAL_HEADER_SIZE;
  e->s0 = e->hdr.cksum1;
  e->s1 = e->hdr.cksum2;
  memset(e->last_frame_hdr, 0, sizeof(e->last_frame_hdr));
  e->no_file = 1;
  shadow_disk_full(e);
  e->wal_end = WAL_HEADER_SIZE;
  e->w_s0 = e->s0;
  e->w_s1 = e->s1;
  return 1;
}

/* What try_continue found. */
enum cont {
  CONT_OK,          /* the WAL continues the meta dir's generation */
  CONT_NO_STATE,    /* no (usable) generation in the meta dir */
  CONT_WAL_CHANGED, /* the WAL is another lifetime than the last shadow's */
  CONT_WAL_DAMAGED  /* same lifetime, but shorter or overwritten */
};

/* Checks whether the meta dir's generation continues in the current WAL
 * (spec 2.2 step 10 and 2.4).  Returns CONT_OK and loads the state when it
 * does; otherwise writes the reason. */
static enum cont try_continue(struct engine *e, char *reason, size_t rlen) {
  char gen[GEN_LEN + 1];
  uint32_t index;
  if (shadow_read_generation(e->meta, gen)) {
    snprintf(reason, rlen, "no generation exists");
    return CONT_NO_STATE;
  }
  if (shadow_max_index(e->meta, gen, &index)) {
    snprintf(reason, rlen, "no shadow wal");
    return CONT_NO_STATE;
  }
  char *path = shadow_wal_path(e->meta, gen, index);
  struct shadow_state st;
  uint8_t sraw[WAL_HEADER_SIZE], wraw[WAL_HEADER_SIZE];
  struct wal_header wh;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  int ok =
      fd >= 0 && pread_full(fd, sraw, WAL_HEADER_SIZE, 0) == WAL_HEADER_SIZE;
  if (fd >= 0)
    close(fd);
  if (!ok || shadow_load(path, &st)) {
    free(path);
    snprintf(reason, rlen, "short shadow wal");
    return CONT_NO_STATE;
  }
  free(path);
  if (read_wal_header(e, wraw, &wh) || memcmp(sraw, wraw, WAL_HEADER_SIZE)) {
    snprintf(reason, rlen, "wal header mismatch");
    return CONT_WAL_CHANGED;
  }
  struct stat sb;
  if (fstat(e->wal_fd, &sb) || sb.st_size < st.size) {
    snprintf(reason, rlen, "wal truncated by another process");
    return CONT_WAL_DAMAGED;
  }
  if (st.size > WAL_HEADER_SIZE) {
    uint8_t fh[WAL_FRAME_HEADER_SIZE];
    int64_t at = st.size - wal_frame_size(st.hdr.page_size);
    if (pread_full(e->wal_fd, fh, sizeof(fh), (off_t)at) !=
            (ssize_t)sizeof(fh) ||
        memcmp(fh, st.last_frame_hdr, sizeof(fh))) {
      snprintf(reason, rlen, "wal overwritten by another process");
      return CONT_WAL_DAMAGED;
    }
  }
  memcpy(e->gen, gen, sizeof(gen));
  e->index = index;
  memcpy(e->hdr_raw, wraw, WAL_HEADER_SIZE);
  e->hdr = st.hdr;
  e->page_size = st.hdr.page_size;
  e->shadow_size = st.size;
  e->s0 = st.s0;
  e->s1 = st.s1;
  memcpy(e->last_frame_hdr, st.last_frame_hdr, sizeof(st.last_frame_hdr));
  return CONT_OK;
}

static int64_t ts_ns(const struct timespec *t) {
  return (int64_t)t->tv_sec * NS_PER_SEC + t->tv_nsec;
}

/* Whether the database file is still exactly as the clean-stop record saw
 * it (shadow.h), and the meta dir still ends where the record says. */
static int stop_record_holds(struct engine *e, const struct shadow_stop *r,
                             char *why, size_t wlen) {
  char gen[GEN_LEN + 1];
  uint32_t index;
  struct shadow_state st;
  struct stat sb;
  if (shadow_read_generation(e->meta, gen) || strcmp(gen, r->gen) ||
      shadow_max_index(e->meta, gen, &index) || index != r->index) {
    snprintf(why, wlen, "meta directory changed since sluice stopped");
    return 0;
  }
  char *path = shadow_wal_path(e->meta, gen, index);
  int rc = shadow_load(path, &st);
  free(path);
  if (rc || st.size != r->size) {
    snprintf(why, wlen, "shadow wal changed since sluice stopped");
    return 0;
  }
  if (fstat(e->db_fd, &sb) || (uint64_t)sb.st_dev != r->dev ||
      (uint64_t)sb.st_ino != r->ino || sb.st_size != r->db_size ||
      ts_ns(&sb.st_mtim) != r->mtime_ns || ts_ns(&sb.st_ctim) != r->ctime_ns) {
    snprintf(why, wlen, "database file written while sluice was stopped");
    return 0;
  }
  return 1;
}

/* The WAL is another lifetime than the last shadow file's, but the clean-
 * stop record proves the database file still holds the shadow's final
 * state: nothing was lost, the generation continues at the next index with
 * whatever the WAL holds now. */
static int continue_after_stop(struct engine *e, const struct shadow_stop *r) {
  uint8_t raw[WAL_HEADER_SIZE];
  struct wal_header h;
  int rc = read_or_start_wal(e, raw, &h);
  if (rc)
    return rc;
  if (h.page_size != e->page_size)
    return ERR_WAL_HEADER;
  memcpy(e->gen, r->gen, sizeof(e->gen));
  e->index = r->index + 1;
  memcpy(e->hdr_raw, raw, WAL_HEADER_SIZE);
  e->hdr = h;
  e->stats.restarts++;
  /* (A full disk, as at a restart while running: woken from sleep, the WAL
   * this record truncated restarts into the next index.) */
  if ((rc = shadow_start_index(e)) && !start_index_full(e, rc))
    return rc;
  resync_load(e); /* the map saved at the stop, brought to this index */
  if ((rc = shadow_copy_frames(e)) || (rc = shadow_fsync(e)))
    return rc;
  shadow_clean(e->meta, e->gen);
  if (e->asleep)
    log_debug(e->name, NULL,
              "wake: continuing generation %s at index %08x: the database "
              "file is unchanged since it went to sleep",
              e->gen, e->index);
  else
    log_info(e->name, NULL,
             "continuing generation %s at index %08x: the database is "
             "unchanged since sluice stopped",
             e->gen, e->index);
  return 0;
}

/* The WAL lifetime found at start follows the last shadow file as the
 * next index, copied from its first frame. */
static int start_next_lifetime(struct engine *e) {
  uint8_t raw[WAL_HEADER_SIZE];
  struct wal_header h;
  int rc = start_wal_header(e, raw, &h);
  if (rc)
    return rc;
  e->index++;
  memcpy(e->hdr_raw, raw, WAL_HEADER_SIZE);
  e->hdr = h;
  if ((rc = shadow_start_index(e)) || (rc = shadow_copy_frames(e)) ||
      (rc = shadow_fsync(e)))
    return rc;
  shadow_clean(e->meta, e->gen);
  return 0;
}

/* Continuity is lost: ship the changed pages in the same generation when
 * the local state allows (core/resync.h), else start a new one. */
static int resync_or_new_generation(struct engine *e, const char *reason) {
  char why[256];
  int rc = resync_run(e, reason, why, sizeof(why));
  if (rc < 0)
    return rc;
  if (rc == 0)
    return start_next_lifetime(e);
  char full[400];
  snprintf(full, sizeof(full), "%s%s%s", reason, why[0] ? "; " : "", why);
  return engine_new_generation(e, full);
}

/* Establishes the generation at start-up: continue the meta dir's when the
 * WAL still holds its last lifetime, or when a clean stop proves nothing
 * was lost since; otherwise a new generation, with the reason.  (The
 * CONT_WAL_CHANGED case without such proof is where a resync of the
 * changed pages keeps the generation: core/resync.h.) */
static int open_generation(struct engine *e, const struct shadow_stop *stop) {
  char reason[128];
  if (e->next_reason[0]) {
    snprintf(reason, sizeof(reason), "%s", e->next_reason);
    e->next_reason[0] = '\0';
    return engine_new_generation(e, reason);
  }
  enum cont c = try_continue(e, reason, sizeof(reason));
  if (c == CONT_OK) {
    resync_load(e);
    int rc = shadow_open_current(e, 0);
    if (!rc)
      rc = shadow_copy_frames(e);
    if (!rc)
      shadow_clean(e->meta, e->gen);
    return rc;
  }
  if (c == CONT_WAL_CHANGED && stop) {
    char why[96];
    if (stop_record_holds(e, stop, why, sizeof(why))) {
      int rc = continue_after_stop(e, stop);
      if (rc != ERR_WAL_HEADER)
        return rc;
      snprintf(why, sizeof(why), "page size changed");
    }
    size_t n = strlen(reason);
    snprintf(reason + n, sizeof(reason) - n, " (%s)", why);
  }
  if (c == CONT_WAL_CHANGED || c == CONT_WAL_DAMAGED)
    return resync_or_new_generation(e, reason);
  return engine_new_generation(e, reason);
}

static void close_all(struct engine *e) {
  for (int i = 0; i < 2; i++) {
    if (e->conn[i]) {
      pin_end(e, i);
      sqlite3_close(e->conn[i]);
      e->conn[i] = NULL;
    }
  }
  pin_set(e, -1, PIN_NONE);
  if (e->wal_fd >= 0)
    close(e->wal_fd);
  if (e->shadow_fd >= 0)
    close(e->shadow_fd);
  /* Only now that SQLite's connections are closed: closing any fd of the
   * database or -shm file drops the POSIX locks SQLite holds on it. */
  if (e->db_fd >= 0)
    close(e->db_fd);
  if (e->shm_fd >= 0)
    close(e->shm_fd);
  e->wal_fd = e->shadow_fd = e->db_fd = e->shm_fd = -1;
  e->ckpt_held = 0;
  e->opened = 0;
}

/* Whether fd is the file at path now. */
static int same_file(int fd, const char *path) {
  struct stat a, b;
  return stat(path, &a) == 0 && fstat(fd, &b) == 0 && a.st_ino == b.st_ino &&
         a.st_dev == b.st_dev;
}

static int sync_copy(struct engine *e, int *new_gen);

/* A light sleeper whose database file is gone (deleted, or renamed away):
 * what the application committed while it slept is still readable through
 * the fds it kept, the WAL's included, and no frame can have been
 * backfilled meanwhile (the checkpoint lock, and the shared lock that
 * keeps the last connection from checkpointing at close).  Copy it now:
 * the final sync of a deleted database, which the replicas then upload.
 * An unchanged database file (size, mtime: an unlink changes the ctime)
 * proves it; otherwise the rows only in the WAL are reported lost. */
static void sync_gone_asleep(struct engine *e) {
  if (e->asleep != ENGINE_LIGHT || e->wal_fd < 0 || e->db_fd < 0 ||
      !e->ckpt_held)
    return;
  struct stat sb;
  if (fstat(e->db_fd, &sb))
    return;
  if (sb.st_size != e->sleep_rec.db_size ||
      ts_ns(&sb.st_mtim) != e->sleep_rec.mtime_ns) {
    log_warn(e->name, NULL,
             "deleted while asleep, and the database file changed meanwhile: "
             "what was committed after the last sync is not replicated");
    return;
  }
  /* Nothing was lost while asleep: a restart of the WAL is a successor,
   * as under our pin. */
  e->pin_state = PIN_HELD;
  engine_keep_msgs(e); /* an asleep engine keeps none */
  int ng = 0;
  uint32_t index0 = e->index;
  int64_t size0 = e->shadow_size;
  int rc = sync_copy(e, &ng);
  if (!rc)
    rc = shadow_fsync(e);
  e->pin_state = PIN_NONE;
  if (e->shadow_fd >= 0)
    close(e->shadow_fd);
  e->shadow_fd = -1;
  if (rc)
    log_warn(e->name, NULL, "final sync of the deleted database: %s",
             e->m->err[0] ? e->m->err : err_str(rc));
  else if (e->index != index0 || e->shadow_size != size0)
    log_info(e->name, NULL,
             "deleted while asleep: final sync from the kept descriptors "
             "(generation=%s index=%08x size=%lld)",
             e->gen, e->index, (long long)e->shadow_size);
}

int engine_open(struct engine *e) {
  struct stat sb;
  e->m->err[0] = '\0';
  e->m->reason[0] = '\0';
  e->disk_full = e->no_file = 0;
  if (stat(e->db_path, &sb)) {
    if (errno == ENOENT)
      sync_gone_asleep(e);
    engine_deepen(e); /* its fds protect nothing now */
    return ERR_NOT_FOUND;
  }
  int rc;
  /* Before any SQLite connection: never closed while they are open.
   * Light sleep kept it (with its lock): keep it if it is still the file. */
  if (e->db_fd >= 0) {
    struct stat b;
    if (fstat(e->db_fd, &b) || b.st_ino != sb.st_ino || b.st_dev != sb.st_dev) {
      close(e->db_fd);
      e->db_fd = -1;
    }
  }
  if (e->db_fd < 0)
    e->db_fd = open(e->db_path, O_RDONLY | O_CLOEXEC);
  if (e->db_fd < 0) {
    set_err(e, "open %s: %s", e->db_path, strerror(errno));
    return errno == ENOENT ? ERR_NOT_FOUND : -errno;
  }
  if (fstat(e->db_fd, &sb) == 0) {
    e->db_dev = (uint64_t)sb.st_dev;
    e->db_ino = (uint64_t)sb.st_ino;
  }
  char mode[32];
  if ((rc = open_conn(e, &e->conn[0])) || (rc = open_conn(e, &e->conn[1])))
    goto fail;
  if ((rc = sql_row(e, e->conn[0], "PRAGMA journal_mode = wal", NULL, mode,
                    sizeof(mode))))
    goto fail;
  if (strcmp(mode, "wal")) {
    set_err(e, "enable wal failed: journal_mode is %s", mode);
    rc = ERR_SQLITE;
    goto fail;
  }
  if ((rc = sql_exec(e, e->conn[0],
                     "CREATE TABLE IF NOT EXISTS _litestream_seq "
                     "(id INTEGER PRIMARY KEY, seq INTEGER);"
                     "CREATE TABLE IF NOT EXISTS _litestream_lock "
                     "(id INTEGER);")))
    goto fail;
  int64_t ps[3] = {0};
  if ((rc = sql_row(e, e->conn[0], "PRAGMA page_size", ps, NULL, 0)))
    goto fail;
  e->page_size = (uint32_t)ps[0];
  if ((rc = mkdir_p(e->meta, 0700))) {
    set_err(e, "create meta directory %s: %s", e->meta, strerror(-rc));
    goto fail;
  }
  /* Taken (read and removed) now: it describes only the stop just before
   * this start. */
  struct shadow_stop stop;
  int have_stop = shadow_take_stop(e->meta, &stop) == 0;
  if (e->asleep) {
    /* Waking: the record taken when it went to sleep. */
    stop = e->sleep_rec;
    have_stop = 1;
    if (stop.dev != e->db_dev || stop.ino != e->db_ino)
      snprintf(e->next_reason, sizeof(e->next_reason),
               "database file replaced");
  }
  /* Kept open until the connections are closed (see close_all).  The
   * checkpoint lock is taken before the pin: an application checkpoint
   * starting in between would otherwise wait for our pin while holding
   * it, and a resync must read the database file with no checkpoint
   * running (core/resync.h). */
  char *shm = xasprintf("%s-shm", e->db_path);
  if (e->shm_fd >= 0) {
    /* Light sleep: keep its fd (and checkpoint lock) if it is still the
     * -shm; the application's last connection may have deleted it. */
    struct stat a, b;
    if (stat(shm, &a) || fstat(e->shm_fd, &b) || a.st_ino != b.st_ino ||
        a.st_dev != b.st_dev) {
      close(e->shm_fd);
      e->shm_fd = -1;
      e->ckpt_held = 0;
    }
  }
  if (e->shm_fd < 0)
    e->shm_fd = open(shm, O_RDWR | O_CLOEXEC);
  free(shm);
  engine_wait_checkpoint_lock(e, OPEN_CKPT_LOCK_WAIT_MS);
  if ((rc = pin_begin(e, 0)) && e->asleep && e->ckpt_held) {
    /* Our own connection may need to recover the wal-index, which needs
     * the checkpoint lock we kept while asleep: let go of it and retry
     * (a restart in that gap would show in the checks below). */
    ckpt_lock(e, 0);
    rc = pin_begin(e, 0);
  }
  if (rc)
    goto fail;
  pin_set(e, 0, PIN_HELD);
  /* The WAL exists once journal_mode=wal has run and the tables exist; if
   * it is empty, write a header. */
  if (access(e->wal_path, F_OK) && (rc = force_wal_write(e, 1)))
    goto fail;
  if (e->wal_fd >= 0 && !same_file(e->wal_fd, e->wal_path)) {
    close(e->wal_fd); /* light sleep kept it: another file now */
    e->wal_fd = -1;
  }
  if ((rc = wal_open(e)))
    goto fail;
  if ((rc = open_generation(e, have_stop ? &stop : NULL)))
    goto fail;
  e->opened = 1;
  e->prealloc_size = 0; /* (a sleep or a stop may have truncated it) */
  e->no_prealloc = 0;
  e->restart_asked = 0;
  ckpt_lock(e, 1);
  if (e->asleep) {
    dms_lock(e, 0); /* our connections hold both now */
    db_shared_lock(e, 0);
    e->asleep = 0;
  }
  return 0;
fail:
  close_all(e);
  return rc ? rc : ERR_SQLITE;
}

/* A new WAL header under our pin is a genuine restart (see engine.h): the
 * previous lifetime is complete in the shadow WAL, whatever the new salts.
 * Only the format must carry over.  The checkpoint sequence number and
 * salt-1 say nothing more: SQLite keeps the sequence number per connection
 * (a connection that never restarted the WAL before writes 1, whatever the
 * WAL held), and a connection that had not restarted one writes random
 * salts into a WAL left empty by a TRUNCATE checkpoint.  Short-lived
 * connections (the sqlite3 CLI, a PHP request, a cron job) do both. */
static int is_successor(const struct wal_header *old,
                        const struct wal_header *h) {
  return h->magic == old->magic && h->page_size == old->page_size;
}

static int pin_advance(struct engine *e);

/* Copies what is new in the WAL, following a restart, without moving the
 * pin: for pin_advance, and under the write lock (the pin moves right
 * after; and a pin_advance there would BEGIN on the connection holding the
 * write lock: "cannot start a transaction within a transaction"). */
static int sync_copy(struct engine *e, int *new_gen) {
  *new_gen = 0;
  e->m->err[0] = '\0';
  int64_t t0 = time_mono_ns();
  uint8_t raw[WAL_HEADER_SIZE];
  struct wal_header h;
  int rc = read_wal_header(e, raw, &h);
  struct stat sb;
  if (rc == ERR_NOT_FOUND || rc == ERR_WAL_HEADER) {
    rc = 0; /* empty or being written: nothing to copy yet */
    goto out;
  }
  if (rc)
    goto out;
  if (!memcmp(raw, e->hdr_raw, WAL_HEADER_SIZE)) {
    /* Same lifetime: the last frame we copied must still be there. */
    if (e->shadow_size > WAL_HEADER_SIZE) {
      uint8_t fh[WAL_FRAME_HEADER_SIZE];
      int64_t at = e->shadow_size - wal_frame_size(e->hdr.page_size);
      ssize_t n = pread_full(e->wal_fd, fh, sizeof(fh), (off_t)at);
      if (n != (ssize_t)sizeof(fh) ||
          memcmp(fh, e->last_frame_hdr, sizeof(fh))) {
        rc = engine_new_generation(e, "wal overwritten by another process");
        *new_gen = !rc;
        goto out;
      }
    }
    if (e->pin_state == PIN_REGAINED)
      pin_set(e, e->pin, PIN_HELD); /* nothing was lost meanwhile */
    rc = shadow_copy_frames(e);
    goto out;
  }
  if (e->disk_full && (e->no_file || e->wal_end > e->shadow_size)) {
    /* Cannot happen while our pin stays put (engine.h): say so. */
    rc = engine_new_generation(e, "wal restarted before the frames kept in it "
                                  "during a full disk were copied");
    *new_gen = !rc;
    goto out;
  }
  if (e->pin_state != PIN_HELD || !is_successor(&e->hdr, &h)) {
    int gap = e->pin_state != PIN_HELD;
    rc = engine_new_generation(e, gap ? "wal restarted while not pinned"
                                      : "wal format changed (page size or "
                                        "checksum byte order)");
    if (gap)
      pin_set(e, e->pin, PIN_HELD);
    *new_gen = !rc;
    goto out;
  }
  if (e->index >= MAX_WAL_INDEX) {
    rc = engine_new_generation(e, "max index exceeded");
    *new_gen = !rc;
    goto out;
  }
  /* The previous lifetime is complete in the shadow: make it durable before
   * the next one starts, then follow the restart. */
  if ((rc = shadow_fsync(e)))
    goto out;
  uint8_t old_raw[WAL_HEADER_SIZE];
  memcpy(old_raw, e->hdr_raw, WAL_HEADER_SIZE);
  struct wal_header old_hdr = e->hdr;
  e->index++;
  memcpy(e->hdr_raw, raw, WAL_HEADER_SIZE);
  e->hdr = h;
  if ((rc = shadow_start_index(e)) && start_index_full(e, rc)) {
    e->stats.restarts++;
    rc = shadow_copy_frames(e);
    goto out;
  }
  if (rc) {
    /* Stay on the previous index, so the next sync sees
     * the restart again instead of taking the new WAL for the old one
     * overwritten (which started a new generation). */
    char *path = shadow_wal_path(e->meta, e->gen, e->index);
    unlink(path);
    free(path);
    e->index--;
    memcpy(e->hdr_raw, old_raw, WAL_HEADER_SIZE);
    e->hdr = old_hdr;
    char first[sizeof(e->m->err)];
    memcpy(first, e->m->err, sizeof(first));
    shadow_open_current(e, 0); /* if this fails too, the next sync does */
    memcpy(e->m->err, first, sizeof(first));
    goto out;
  }
  e->stats.restarts++;
  rc = shadow_copy_frames(e);
out:
  if (!fstat(e->wal_fd, &sb))
    e->wal_size = sb.st_size;
  if (!fstat(e->db_fd, &sb))
    e->db_size = sb.st_size;
  e->stats.sync_count++;
  e->stats.sync_ns += time_mono_ns() - t0;
  if (rc)
    e->stats.sync_errors++;
  return rc;
}

int engine_sync(struct engine *e, int *new_gen) {
  uint32_t index0 = e->index;
  if (e->opened && e->pin < 0) {
    /* A checkpoint or validation lost the pin: take it again; a restart
     * meanwhile may have hidden frames (PIN_REGAINED). */
    int prc = pin_begin(e, 0);
    if (prc) {
      *new_gen = 0;
      return prc;
    }
    pin_set(e, 0, PIN_REGAINED);
  }
  int rc = sync_copy(e, new_gen);
  /* After a restart our pin may sit on read-mark 0, which blocks every
   * checkpoint: the application's autocheckpoint would then scan the whole
   * WAL on each commit.  Move it onto the new lifetime (a slot >= 1). */
  if (!rc && !*new_gen && e->index != index0 && e->pin >= 0) {
    int arc = pin_advance(e);
    if (arc && arc != ERR_BUSY)
      rc = arc;
  }
  if (!rc && !e->checkpointing && e->pin >= 0)
    resync_maintain(e);
  return rc;
}

int64_t engine_copied_end(const struct engine *e) {
  return e->disk_full ? MAX(e->wal_end, e->shadow_size) : e->shadow_size;
}

int64_t engine_shadow_phys(const struct engine *e) {
  return e->no_file ? 0 : e->shadow_size;
}

void engine_release_uploaded(struct engine *e, uint32_t below) {
  below = MIN(below, e->index);
  if (!e->disk_full || below == 0)
    return;
  if (resync_prune_floor(e) < below) {
    resync_save(e); /* (small, but may not fit either) */
    if (resync_prune_floor(e) < below)
      resync_drop_saved(e);
  }
  int freed = shadow_release(e->meta, e->gen, below);
  if (freed > 0)
    log_info(e->name, NULL,
             "disk full: freed %d bytes of shadow wal every replica has",
             freed);
}

static int restart_wanted(const struct engine *e, int64_t now_ns) {
  return e->restart_asked &&
         now_ns - e->restart_asked_ns < ENGINE_RESTART_WAIT_NS;
}

void engine_restart_soon(struct engine *e) {
  int64_t now = time_mono_ns();
  if (e->opened && !restart_wanted(e, now)) { /* (not renewed by asking) */
    e->restart_asked = 1;
    e->restart_asked_ns = now;
  }
}

int engine_should_checkpoint(const struct engine *e, int64_t now_ns, int idle) {
  /* A full disk: the frames only in the WAL must stay there (engine.h). */
  if (!e->opened || e->shadow_size <= WAL_HEADER_SIZE || e->disk_full)
    return 0;
  int64_t frames =
      (e->shadow_size - WAL_HEADER_SIZE) / wal_frame_size(e->hdr.page_size);
  if (idle)
    return frames > 0;
  if (restart_wanted(e, now_ns))
    return frames > 0 && now_ns - e->last_ckpt_ns >= e->ckpt_min_interval_ns;
  if (e->max_ckpt_pages > 0 && frames >= e->max_ckpt_pages)
    return 1;
  return frames >= e->min_ckpt_pages &&
         now_ns - e->last_ckpt_ns >= e->ckpt_min_interval_ns;
}

/* Holding SQLite's checkpoint lock (byte 121 of the -shm, an OFD lock so
 * it belongs to this descriptor only) for as long as we hold the pin: the
 * pin already makes every application checkpoint useless, and with the
 * lock held an application's autocheckpoint gives up after one fcntl
 * instead of scanning lock slots on every commit (measured: the writer kept
 * ~0.35 of its throughput without this, ~0.5 with it), and its
 * wal_checkpoint(RESTART|TRUNCATE) returns SQLITE_BUSY at once instead of
 * stalling its writers for its whole busy timeout.  Released only while we
 * checkpoint ourselves.  (SQLite's recovery of a wal-index left torn by a
 * writer killed in the middle of writing its 48-byte header also needs this
 * lock; it then waits for our next checkpoint, at most a second away while
 * anything is written.) */
#define SHM_CKPT_BYTE 121

static void ckpt_lock(struct engine *e, int hold) {
  if (e->shm_fd < 0 || e->ckpt_held == hold || (hold && e->checkpointing))
    return;
  struct flock fl;
  memset(&fl, 0, sizeof(fl));
  fl.l_type = hold ? F_WRLCK : F_UNLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = SHM_CKPT_BYTE;
  fl.l_len = 1;
  if (fcntl(e->shm_fd, F_OFD_SETLK, &fl) == 0)
    e->ckpt_held = hold;
}

void engine_hold_checkpoints(struct engine *e, int hold) {
  ckpt_lock(e, hold);
}

int engine_wait_checkpoint_lock(struct engine *e, int ms) {
  int64_t deadline = time_mono_ns() + ms * NS_PER_MS;
  for (;;) {
    ckpt_lock(e, 1);
    if (e->ckpt_held)
      return 0;
    if (e->shm_fd < 0 || time_mono_ns() >= deadline)
      return ERR_BUSY;
    usleep(5000);
  }
}

/* Whether the last checkpoint covered everything and nothing was committed
 * since (same index, same size). */
static int ckpt_is_full(const struct engine *e) {
  return e->ckpt_full_index == e->index + 1 &&
         e->ckpt_full_size == e->shadow_size;
}

/* Frames at which a checkpoint stops waiting for a quiet moment and takes
 * the write lock (ck_quiet). */
static int64_t lock_frames(const struct engine *e) {
  int64_t n = CKPT_LOCK_FACTOR * e->min_ckpt_pages;
  if (e->max_ckpt_pages > 0 && e->max_ckpt_pages < n)
    n = e->max_ckpt_pages;
  return n;
}

/* The WAL file keeps the size of its longest lifetime.  When that is far
 * beyond the checkpoint thresholds, restart the WAL ourselves (our pin is
 * on read-mark 0 now, everything is checkpointed): the connection that
 * restarts it truncates it to journal_size_limit (spec 2.6's TRUNCATE, in
 * a form that never blocks on readers).  An idle checkpoint gives the space
 * back down to the checkpoint threshold.  A busy one does not: the
 * application's next lifetime grows the file to about lock_frames again,
 * and every commit that runs past the file's end also commits a size
 * change, which under synchronous=FULL costs each such commit a metadata
 * write (bench/RESULTS.md, "the WAL grows and every commit extends it").
 * So a busy checkpoint only trims a WAL far past that size (an earlier
 * stall), and to that size. */
static void shrink_wal(struct engine *e, int f, int idle) {
  int64_t limit =
      wal_size_for(e->hdr.page_size, MAX(e->max_ckpt_pages, e->min_ckpt_pages));
  if (!idle)
    limit = MAX(limit, wal_size_for(e->hdr.page_size, 2 * lock_frames(e)));
  if (e->wal_size <= 2 * limit || !ckpt_is_full(e))
    return;
  char sql[64];
  snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit = %lld",
           (long long)limit);
  if (sql_exec(e, e->conn[f], sql))
    return;
  t_busy.deadline_ns = time_mono_ns() + 50 * NS_PER_MS;
  if (sqlite3_exec(e->conn[f], "BEGIN IMMEDIATE", NULL, NULL, NULL) ==
      SQLITE_OK) {
    force_wal_write(e, f);
    sql_exec(e, e->conn[f], "COMMIT");
    e->prealloc_size = 0; /* our own cut */
  }
}

/* The size a busy writer's WAL file is given: twice lock_frames, as a
 * lifetime runs past lock_frames by what commits while the checkpoint
 * waits for the write lock (up to WRITE_LOCK_WAIT_MS), rounded to 1 MiB. */
static int64_t wal_busy_size(const struct engine *e) {
  int64_t sz = wal_size_for(e->hdr.page_size, 2 * lock_frames(e));
  return (sz + (1 << 20) - 1) & ~(int64_t)((1 << 20) - 1);
}

/* Under the write lock (no commit can append meanwhile), grows a WAL file
 * shorter than wal_busy_size with zeros written past its end, so that the
 * application's next lifetimes overwrite the file in place.  A commit that
 * runs past the file's end also commits the size change, which under
 * synchronous=FULL costs it a metadata write (the inode, or a journal commit):
 * a writer whose WAL lifetimes are longer than its file commits that way for
 * the whole first lifetime and whenever a lifetime runs past the longest before
 * it (bench/RESULTS.md, "WAL file preallocation").  Zeros past the last frame
 * are no frame to SQLite, whose WAL files hold stale frames past their end
 * anyway (the salt and the checksums end a lifetime), nor to us.  Not
 * fallocate: a write into an unwritten extent also commits metadata.  Returns
 * the fd to flush once the lock is released (-1: none). */
static int wal_preallocate(struct engine *e) {
  static const uint8_t zeros[64 * 1024];
  int64_t want = wal_busy_size(e);
  struct stat sb;
  if (e->no_prealloc || e->wal_size >= want || fstat(e->wal_fd, &sb) ||
      sb.st_size >= want || sb.st_size < WAL_HEADER_SIZE)
    return -1;
  if (e->prealloc_size > sb.st_size) {
    /* Grown before and cut again by the application (a journal_size_limit
     * below our size): growing it after every cut would only churn. */
    e->no_prealloc = 1;
    log_debug(e->name, NULL,
              "wal cut to %lld bytes after we grew it to %lld: another "
              "process limits its size; not growing it again",
              (long long)sb.st_size, (long long)e->prealloc_size);
    return -1;
  }
  int fd = open(e->wal_path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  struct stat fb;
  if (fstat(fd, &fb) || fb.st_ino != sb.st_ino || fb.st_dev != sb.st_dev ||
      fb.st_size != sb.st_size) {
    close(fd);
    return -1;
  }
  for (int64_t at = sb.st_size; at < want;) {
    size_t n = (size_t)MIN((int64_t)sizeof(zeros), want - at);
    ssize_t w = pwrite(fd, zeros, n, (off_t)at);
    if (w <= 0) {
      /* A full disk: give back what was written, nothing else changed. */
      log_debug(e->name, NULL, "wal preallocation stopped at %lld: %s",
                (long long)at, w < 0 ? strerror(errno) : "short write");
      if (ftruncate(fd, sb.st_size))
        log_debug(e->name, NULL, "ftruncate %s: %s", e->wal_path,
                  strerror(errno));
      close(fd);
      e->no_prealloc = 1; /* not at every lifetime: until we reopen */
      return -1;
    }
    at += w;
  }
  log_debug(e->name, NULL,
            "wal file grown from %lld to %lld bytes under the write lock",
            (long long)sb.st_size, (long long)want);
  e->wal_size = e->prealloc_size = want;
  return fd;
}

/* Moves the pin to the free connection without a gap: the new pin begins,
 * everything present is copied, then the old pin ends. */
static int pin_advance(struct engine *e) {
  if (e->disk_full)
    return ERR_BUSY; /* the pin keeps the frames not in the shadow */
  int f = 1 - e->pin;
  int rc = pin_begin(e, f);
  if (rc)
    return rc;
  int ng = 0;
  rc = sync_copy(e, &ng);
  if (rc || ng || e->disk_full) {
    /* Keep the old pin; drop the new one (a disk found full: the new pin
     * would let the frames the shadow lacks be checkpointed). */
    pin_end(e, f);
    return rc ? rc : ERR_BUSY;
  }
  pin_end(e, e->pin);
  pin_set(e, f, e->pin_state);
  return 0;
}

/* A PASSIVE checkpoint on conn[i] (res: busy, WAL frames, checkpointed).
 * While we checkpoint, our hold on the checkpoint lock is released, and an
 * application's autocheckpoint may be running (it backfills no further
 * than our pin either): wait for it a little rather than fail. */
static int passive_checkpoint(struct engine *e, int i, int64_t res[3]) {
  int64_t deadline = time_mono_ns() + 20 * NS_PER_MS;
  for (;;) {
    res[0] = res[1] = res[2] = 0;
    int rc =
        sql_row(e, e->conn[i], "PRAGMA wal_checkpoint(PASSIVE)", res, NULL, 0);
    if (rc || res[0] == 0 || time_mono_ns() > deadline)
      return rc;
    usleep(200);
  }
}

/* Checkpoints without the write lock, so that no application commit can
 * ever fail or wait because of us (an application without a busy timeout
 * gets "database is locked" the moment it finds the write lock taken).  The
 * pin moves to the end of the WAL (everything copied and fsynced), a
 * PASSIVE checkpoint copies up to it; if that covered the whole WAL (no
 * commit came in meanwhile), a pin begun now sits on read-mark 0 and the
 * application's next commit restarts the WAL.  Returns 0 when it did,
 * ERR_BUSY when commits kept coming in between. */
static int checkpoint_quiet(struct engine *e, int rounds) {
  for (int round = 0; round < rounds; round++) {
    int rc = pin_advance(e);
    if (!rc)
      rc = shadow_fsync(e);
    if (rc)
      return rc;
    uint32_t index = e->index;
    int64_t size = e->shadow_size;
    int64_t res[3];
    if ((rc = passive_checkpoint(e, 1 - e->pin, res)))
      return rc;
    if (res[0] != 0 || res[1] != res[2])
      continue; /* commits after the pin, or an application reader */
    if ((rc = pin_advance(e)))
      return rc;
    if (e->index == index && e->shadow_size == size) {
      e->ckpt_full_index = index + 1;
      e->ckpt_full_size = size;
      return 0;
    }
  }
  return ERR_BUSY;
}

/* --- engine_checkpoint: one state per step ---
 *
 *   START -> QUIET -> LOCK -> SWAP -> DONE
 *     |        |        |       \-> REPIN -> DONE
 *     \--------+--------+---------> DONE
 *
 * START   nothing to do if the last checkpoint was full and nothing came
 *         since
 * QUIET   checkpoint without the write lock (checkpoint_quiet)
 * LOCK    take the write lock (BEGIN IMMEDIATE on the free connection)
 * SWAP    copy the tail, move the pin to the locked connection, PASSIVE
 *         checkpoint, pin again on the other (read-mark 0), unlock
 * REPIN   that last pin failed: keep a pin on the locked connection as a
 *         plain reader (PIN_REGAINED)
 */
enum ckpt_state { CK_START, CK_QUIET, CK_LOCK, CK_SWAP, CK_REPIN, CK_DONE };

struct ckpt {
  enum ckpt_state state;
  int idle;
  int rc;
  int f; /* the free connection, write-locked in LOCK */
  int64_t t0, t_lock, t_acq;
  int64_t frames_before;
  int swapped; /* the write-locked checkpoint ran to its end */
};

static const char *ckpt_state_name(enum ckpt_state s) {
  static const char *names[] = {"start", "quiet", "lock",
                                "swap",  "repin", "done"};
  return names[s];
}

static void ckpt_set(struct engine *e, struct ckpt *c, enum ckpt_state s) {
  static const unsigned allowed[] = {
      [CK_START] = 1u << CK_QUIET | 1u << CK_DONE,
      [CK_QUIET] = 1u << CK_LOCK | 1u << CK_DONE,
      [CK_LOCK] = 1u << CK_SWAP | 1u << CK_DONE,
      [CK_SWAP] = 1u << CK_REPIN | 1u << CK_DONE,
      [CK_REPIN] = 1u << CK_DONE,
      [CK_DONE] = 0,
  };
  assert(allowed[c->state] & (1u << s));
  (void)allowed;
  if (log_enabled(LOG_DEBUG) && s != CK_DONE)
    log_debug(e->name, NULL, "checkpoint %s -> %s", ckpt_state_name(c->state),
              ckpt_state_name(s));
  c->state = s;
}

static void ck_start(struct engine *e, struct ckpt *c) {
  /* Everything was checkpointed and nothing was committed since: nothing
   * to do but give back the space a busy time left (shrink_wal). */
  if (ckpt_is_full(e)) {
    if (c->idle)
      shrink_wal(e, 1 - e->pin, 1);
    ckpt_set(e, c, CK_DONE);
    return;
  }
  ckpt_set(e, c, CK_QUIET);
}

static void ck_quiet(struct engine *e, struct ckpt *c) {
  c->rc = checkpoint_quiet(e, c->idle ? 2 : CKPT_QUIET_ROUNDS);
  if (c->rc == 0) {
    e->ckpt_busy = 0;
    e->lock_held_ns = 0;
    shrink_wal(e, 1 - e->pin, c->idle);
    log_debug(e->name, NULL,
              "checkpoint: %lld frames without the write lock, %.1fms",
              (long long)c->frames_before, (time_mono_ns() - c->t0) / 1e6);
    ckpt_set(e, c, CK_DONE);
    return;
  }
  /* Commits kept coming in between.  An idle checkpoint tries again at the
   * next quiet moment, so does a growing WAL until it is several times the
   * checkpoint threshold (or max-checkpoint-page-count): only a writer
   * that never leaves a quiet moment is checkpointed under the write lock
   * (an application writing like that from several connections needs a
   * busy timeout anyway). */
  if (c->rc == ERR_BUSY)
    e->ckpt_busy++;
  /* A WAL file still shorter than a busy lifetime is write-locked at the
   * plain threshold, once, to be preallocated (wal_preallocate). */
  int64_t at = !e->no_prealloc && e->wal_size < wal_busy_size(e)
                   ? e->min_ckpt_pages
                   : lock_frames(e);
  if (c->rc != ERR_BUSY || c->idle ||
      (c->frames_before < at && !restart_wanted(e, time_mono_ns())))
    ckpt_set(e, c, CK_DONE);
  else
    ckpt_set(e, c, CK_LOCK);
}

static void ck_lock(struct engine *e, struct ckpt *c) {
  if ((c->rc = shadow_fsync(e))) {
    ckpt_set(e, c, CK_DONE);
    return;
  }
  c->t_lock = time_mono_ns();
  c->f = 1 - e->pin;
  char *msg = NULL;
  t_busy.deadline_ns = time_mono_ns() + WRITE_LOCK_WAIT_MS * NS_PER_MS;
  int src = sqlite3_exec(e->conn[c->f], "BEGIN IMMEDIATE", NULL, NULL, &msg);
  sqlite3_free(msg);
  if (src != SQLITE_OK) {
    c->rc = (src & 0xff) == SQLITE_BUSY ? ERR_BUSY : ERR_SQLITE;
    if (c->rc != ERR_BUSY)
      set_err(e, "BEGIN IMMEDIATE: %s", sqlite3_errstr(src));
    else
      log_debug(e->name, NULL,
                "checkpoint: write lock busy for %dms, trying later",
                WRITE_LOCK_WAIT_MS);
    ckpt_set(e, c, CK_DONE); /* ERR_BUSY: the application is writing */
    return;
  }
  c->t_acq = time_mono_ns();
  ckpt_set(e, c, CK_SWAP);
}

static void ck_swap(struct engine *e, struct ckpt *c) {
  int f = c->f;
  /* No commit can happen now: copy the tail, then swap the pin.  (The
   * tail is not fsynced here: after a power loss a shadow shorter than the
   * WAL it copied only means a new generation, never a gap.) */
  int ng = 0;
  c->rc = sync_copy(e, &ng);
  if (!c->rc && e->disk_full)
    c->rc = ERR_BUSY; /* keep the pin: engine.h, disk_full */
  if (c->rc || ng) {
    sql_cleanup(e, e->conn[f], "ROLLBACK");
    ckpt_set(e, c, CK_DONE);
    return;
  }
  int old = e->pin;
  pin_end(e, old);
  pin_set(e, f, e->pin_state); /* f's read transaction is the pin now */
  int64_t res[3] = {0};
  c->rc = passive_checkpoint(e, old, res);
  if (!c->rc && res[0] == 0 && res[1] == res[2]) {
    e->ckpt_full_index = e->index + 1;
    e->ckpt_full_size = e->shadow_size;
  }
  /* New pin on the old connection: with everything checkpointed it sits on
   * read-mark 0 and lets the next writer restart the WAL. */
  if (pin_begin(e, old)) {
    ckpt_set(e, c, CK_REPIN);
    return;
  }
  int pfd = wal_preallocate(e);
  sql_cleanup(e, e->conn[f], "ROLLBACK");
  pin_set(e, old, e->pin_state);
  e->lock_held_ns = time_mono_ns() - c->t_acq;
  if (pfd >= 0) {
    /* The zeros' flush, ours rather than the application's next commit's. */
    if (fdatasync(pfd))
      log_debug(e->name, NULL, "fdatasync %s: %s", e->wal_path,
                strerror(errno));
    close(pfd);
  }
  shrink_wal(e, f, 0);
  if (c->rc == ERR_BUSY)
    c->rc = 0; /* another checkpointer was running: fine */
  c->swapped = 1;
  ckpt_set(e, c, CK_DONE);
}

static void ck_repin(struct engine *e, struct ckpt *c) {
  int f = c->f;
  /* Keep f's read transaction as the pin; we hold the write lock in it,
   * so end it and re-pin f as a plain reader.  A restart in this gap could
   * hide frames. */
  sql_cleanup(e, e->conn[f], "ROLLBACK");
  int prc = pin_begin(e, f);
  if (prc) {
    pin_set(e, -1, PIN_NONE);
    c->rc = prc;
    ckpt_set(e, c, CK_DONE);
    return;
  }
  pin_set(e, f, PIN_REGAINED);
  int ng = 0;
  int src = engine_sync(e, &ng);
  if (src)
    log_debug(e->name, NULL, "checkpoint: sync after re-pin: %s", e->m->err);
  if (c->rc == ERR_BUSY)
    c->rc = 0; /* another checkpointer was running: fine */
  c->swapped = 1;
  ckpt_set(e, c, CK_DONE);
}

int engine_checkpoint(struct engine *e, int idle) {
  assert(e->opened && e->pin >= 0); /* only with the pin held */
  if (e->disk_full)
    return ERR_BUSY;
  struct ckpt c = {.state = CK_START, .idle = idle, .t0 = time_mono_ns()};
  c.frames_before =
      (e->shadow_size - WAL_HEADER_SIZE) / wal_frame_size(e->hdr.page_size);
  ckpt_lock(e, 0);
  e->checkpointing = 1; /* our own checkpoints need the lock free */
  e->m->err[0] = '\0';
  while (c.state != CK_DONE) {
    switch (c.state) {
    case CK_START:
      ck_start(e, &c);
      break;
    case CK_QUIET:
      ck_quiet(e, &c);
      break;
    case CK_LOCK:
      ck_lock(e, &c);
      break;
    case CK_SWAP:
      ck_swap(e, &c);
      break;
    case CK_REPIN:
      ck_repin(e, &c);
      break;
    case CK_DONE:
      break;
    }
  }
  int rc = c.rc;
  if (ckpt_is_full(e))
    e->restart_asked = 0; /* the next commit restarts the WAL */
  if (c.swapped && log_enabled(LOG_DEBUG))
    log_debug(e->name, NULL,
              "checkpoint: %lld frames, waited %.1fms for the write lock, "
              "held it %.1fms, total %.1fms",
              (long long)c.frames_before, (c.t_acq - c.t_lock) / 1e6,
              e->lock_held_ns / 1e6, (time_mono_ns() - c.t0) / 1e6);
  e->checkpointing = 0;
  ckpt_lock(e, 1);
  e->last_ckpt_ns = time_mono_ns();
  if (rc && rc != ERR_BUSY)
    e->stats.checkpoint_errors++;
  else if (!rc)
    e->stats.checkpoints++;
  e->stats.checkpoint_ns += time_mono_ns() - c.t0;
  return rc;
}

int engine_snapshot(struct engine *e, int out_fd, int64_t *out_len,
                    char gen[GEN_LEN + 1], uint32_t *index) {
  /* The image is the database at the shadow's end (core/snapshot.h): the
   * file with the shadow's frames laid over it.  Read through the fd held
   * for the process lifetime: opening and closing another one would
   * release SQLite's locks (POSIX semantics).  With the checkpoint lock
   * held no application checkpoint writes the file meanwhile (each page it
   * could write is laid over anyway, but a checkpoint reaching the WAL's
   * end also truncates the file). */
  if (e->disk_full) {
    set_err(e, "snapshot of %s waits: the disk is full", e->db_path);
    return ERR_BUSY;
  }
  if (engine_wait_checkpoint_lock(e, OPEN_CKPT_LOCK_WAIT_MS)) {
    set_err(e,
            "snapshot of %s waits: the checkpoint lock of %s-shm is held by "
            "another process",
            e->db_path, e->db_path);
    return ERR_BUSY;
  }
  struct snapshot_src src = {
      .db_fd = e->db_fd,
      .shadow_fd = e->shadow_fd,
      .shadow_size = e->shadow_size,
      .hdr = e->hdr,
      .page_size = e->page_size,
  };
  char err[256];
  int64_t pages = 0;
  int rc = snapshot_write(&src, out_fd, out_len, &pages, err, sizeof(err));
  if (rc) {
    set_err(e, "snapshot of %s (generation %s index %08x at %lld): %s",
            e->db_path, e->gen, e->index, (long long)e->shadow_size, err);
    return rc;
  }
  log_debug(e->name, NULL, "snapshot image: %lld pages, at %s/%08x:%lld",
            (long long)pages, e->gen, e->index, (long long)e->shadow_size);
  memcpy(gen, e->gen, GEN_LEN + 1);
  *index = e->index;
  return 0;
}

static int validation_copy(struct engine *e, const char *out_path,
                           struct pos *at) {
  if (e->disk_full)
    return ERR_BUSY; /* it would move the pin (engine.h: disk_full) */
  int f = 1 - e->pin;
  t_busy.deadline_ns = time_mono_ns() + WRITE_LOCK_WAIT_MS * NS_PER_MS;
  int src = sqlite3_exec(e->conn[f], "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (src != SQLITE_OK)
    return (src & 0xff) == SQLITE_BUSY ? ERR_BUSY : ERR_SQLITE;
  int ng = 0;
  int rc = sync_copy(e, &ng);
  if (rc || ng || e->disk_full) {
    sql_cleanup(e, e->conn[f], "ROLLBACK");
    return rc ? rc : ERR_BUSY;
  }
  /* Nothing can commit: a pin begun now sees exactly the shadow's end. */
  int old = e->pin;
  pin_end(e, old);
  rc = pin_begin(e, old);
  sql_cleanup(e, e->conn[f], "ROLLBACK");
  if (rc) {
    /* Keep a pin whatever happens. */
    if (pin_begin(e, f) == 0)
      pin_set(e, f, PIN_REGAINED);
    else
      pin_set(e, -1, PIN_NONE);
    return rc;
  }
  memcpy(at->gen, e->gen, sizeof(at->gen));
  at->index = e->index;
  at->offset = e->shadow_size;
  sqlite3 *dst = NULL;
  unlink(out_path);
  rc = sqlite3_open(out_path, &dst) == SQLITE_OK ? 0 : ERR_SQLITE;
  if (!rc) {
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", e->conn[old], "main");
    if (!b) {
      rc = ERR_SQLITE;
    } else {
      int step = sqlite3_backup_step(b, -1);
      if (step != SQLITE_DONE)
        rc = ERR_SQLITE;
      sqlite3_backup_finish(b);
    }
    if (rc)
      set_err(e, "validation copy of %s: %s", e->db_path, sqlite3_errmsg(dst));
  }
  sqlite3_close(dst);
  return rc;
}

int engine_validation_copy(struct engine *e, const char *out_path,
                           struct pos *at) {
  ckpt_lock(e, 0);
  e->checkpointing = 1;
  int rc = validation_copy(e, out_path, at);
  e->checkpointing = 0;
  ckpt_lock(e, 1);
  return rc;
}

/* Whether another process has the database open: every SQLite connection
 * holds a shared lock on the -shm's "DMS" byte (unix VFS: byte 128).
 * F_GETLK never reports our own process's POSIX locks. */
#define SHM_DMS_BYTE 128
static int others_have_db_open(const struct engine *e) {
  struct flock fl;
  memset(&fl, 0, sizeof(fl));
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = SHM_DMS_BYTE;
  fl.l_len = 1;
  if (e->shm_fd < 0 || fcntl(e->shm_fd, F_GETLK, &fl))
    return 1;
  return fl.l_type != F_UNLCK;
}

/* Fills the record of the database file as sb saw it, once the clock has
 * passed its times (so that any later write changes them).  Returns 0, or
 * ERR_BUSY if the clock did not get there in time. */
static int take_record(struct engine *e, const struct stat *sb,
                       struct shadow_stop *r) {
  int64_t t = MAX(ts_ns(&sb->st_mtim), ts_ns(&sb->st_ctim));
  int64_t deadline = time_mono_ns() + 100 * NS_PER_MS;
  for (;;) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    if (ts_ns(&now) > t)
      break;
    if (time_mono_ns() > deadline)
      return ERR_BUSY;
    usleep(1000);
  }
  memset(r, 0, sizeof(*r));
  memcpy(r->gen, e->gen, sizeof(r->gen));
  r->index = e->index;
  r->size = e->shadow_size;
  r->dev = (uint64_t)sb->st_dev;
  r->ino = (uint64_t)sb->st_ino;
  r->db_size = sb->st_size;
  r->mtime_ns = ts_ns(&sb->st_mtim);
  r->ctime_ns = ts_ns(&sb->st_ctim);
  return 0;
}

/* If ours are the last connections, the next one to open would recover
 * the WAL and checkpoint its frames into the database file again (same
 * pages, new mtime): truncate the WAL first (everything is checkpointed,
 * so the database file is not touched).  Returns 0, or -1 if the database
 * file changed after all. */
static int truncate_if_alone(struct engine *e, const struct stat *sb) {
  if (others_have_db_open(e))
    return 0;
  ckpt_lock(e, 0);
  e->checkpointing = 1;
  /* Checked: a WAL left with frames is recovered and checkpointed again by
   * the next opener (a busy moment on a loaded machine: try again). */
  int64_t until = time_mono_ns() + 100 * NS_PER_MS;
  struct stat wb;
  for (;;) {
    t_busy.deadline_ns = time_mono_ns() + 20 * NS_PER_MS;
    int crc = sqlite3_wal_checkpoint_v2(e->conn[1 - e->pin], NULL,
                                        SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    if (crc == SQLITE_OK && !fstat(e->wal_fd, &wb) && wb.st_size == 0)
      break;
    if (time_mono_ns() > until) {
      log_debug(e->name, NULL, "wal not truncated: %s",
                crc == SQLITE_OK ? "frames left" : sqlite3_errstr(crc));
      break;
    }
    usleep(5000);
  }
  e->checkpointing = 0;
  ckpt_lock(e, 1);
  struct stat sb2;
  if (fstat(e->db_fd, &sb2) || ts_ns(&sb2.st_mtim) != ts_ns(&sb->st_mtim) ||
      sb2.st_size != sb->st_size)
    return -1;
  return 0;
}

/* The clean-stop record (shadow.h).  Our pin sits on read-mark 0 of a fully
 * checkpointed WAL (ckpt_is_full), so nothing can write the database file
 * until we close.  The WAL is truncated first when we are alone
 * (truncate_if_alone).  Then wait until the clock has passed the file's
 * times, so that any later write changes them. */
static void write_stop_record(struct engine *e) {
  struct stat sb;
  if (fstat(e->db_fd, &sb) || sb.st_mtim.tv_nsec == 0)
    return; /* whole-second timestamps prove nothing */
  if (truncate_if_alone(e, &sb))
    return;
  struct shadow_stop r;
  if (take_record(e, &sb, &r))
    return;
  int rc = shadow_write_stop(e->meta, &r);
  if (rc)
    log_warn(e->name, NULL, "write %s/%s: %s", e->meta, SHADOW_STOP_FILE,
             strerror(-rc));
}

int engine_close(struct engine *e) {
  int rc = 0;
  if (e->opened) {
    int ng = 0;
    rc = engine_sync(e, &ng);
    int full = 0;
    if (!rc && !ng && e->pin >= 0 && !e->disk_full) {
      /* Checkpoint everything (without the write lock: stopping must not
       * fail an application's commit), so that the WAL may restart, be
       * truncated or deleted while we are gone without losing anything. */
      ckpt_lock(e, 0);
      e->checkpointing = 1;
      full = ckpt_is_full(e) || checkpoint_quiet(e, 3) == 0;
      e->checkpointing = 0;
      ckpt_lock(e, 1);
      full = full && ckpt_is_full(e);
    } else if (e->disk_full) {
      log_warn(e->name, NULL,
               "stopping with a full disk: %lld bytes of committed frames are "
               "only in the WAL (and the replicas that uploaded them)",
               (long long)(engine_copied_end(e) - engine_shadow_phys(e)));
    }
    int r2 = shadow_fsync(e);
    if (!rc)
      rc = r2;
    if (!rc)
      resync_save(e);
    if (!rc && full)
      write_stop_record(e);
  }
  close_all(e);
  return rc;
}

/* The DMS byte of the -shm (unix VFS), held shared while asleep. */
static int dms_lock(struct engine *e, int hold) {
  struct flock fl;
  memset(&fl, 0, sizeof(fl));
  fl.l_type = hold ? F_RDLCK : F_UNLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = SHM_DMS_BYTE;
  fl.l_len = 1;
  return e->shm_fd >= 0 && fcntl(e->shm_fd, F_OFD_SETLK, &fl) == 0 ? 0
                                                                   : ERR_BUSY;
}

/* A shared OFD lock on the first byte of SQLite's SHARED range of the
 * database file (unix VFS: PENDING_BYTE 0x40000000 + 2): no connection can
 * then take the EXCLUSIVE lock, so the application's last connection to
 * close neither checkpoints nor deletes the WAL. */
#define DB_SHARED_BYTE 0x40000002LL
static int db_shared_lock(struct engine *e, int hold) {
  struct flock fl;
  memset(&fl, 0, sizeof(fl));
  fl.l_type = hold ? F_RDLCK : F_UNLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = DB_SHARED_BYTE;
  fl.l_len = 1;
  return e->db_fd >= 0 && fcntl(e->db_fd, F_OFD_SETLK, &fl) == 0 ? 0 : ERR_BUSY;
}

/* The WAL header and the frame header after the last committed frame
 * (zeros past the end of the file). */
static void wal_probe(int fd, int64_t end, uint8_t *out) {
  memset(out, 0, SLEEP_PROBE_SIZE);
  ssize_t n = pread(fd, out, WAL_HEADER_SIZE, 0);
  (void)n;
  n = pread(fd, out + WAL_HEADER_SIZE, WAL_FRAME_HEADER_SIZE, end);
  (void)n;
}

int engine_sleep(struct engine *e, int how) {
  if (!e->opened || e->pin < 0 || e->disk_full)
    return ERR_BUSY; /* (a full disk: the frames live in the pinned WAL) */
  int ng = 0;
  int64_t size0 = e->shadow_size;
  uint32_t index0 = e->index;
  int rc = engine_sync(e, &ng);
  if (rc || ng)
    return rc ? rc : ERR_BUSY;
  if (e->pin < 0 || e->shadow_size != size0 || e->index != index0)
    return ERR_BUSY; /* commits are coming in: stay awake */
  /* Everything checkpointed: our pin is then on read-mark 0 and nothing
   * can write the database file until we let go. */
  ckpt_lock(e, 0);
  e->checkpointing = 1;
  int full = ckpt_is_full(e) || checkpoint_quiet(e, 2) == 0;
  e->checkpointing = 0;
  ckpt_lock(e, 1);
  if (!full || !ckpt_is_full(e) || e->pin < 0)
    return ERR_BUSY;
  if ((rc = shadow_fsync(e)))
    return rc;
  struct stat sb;
  if (fstat(e->db_fd, &sb))
    return -errno;
  if (sb.st_mtim.tv_nsec == 0)
    return -ENOTSUP; /* whole-second timestamps prove nothing */
  /* No wal_checkpoint(TRUNCATE) here (unlike engine_close): it takes the
   * WAL write lock, and an application opening the database just after
   * any "no one else has it open" check would find its first write
   * SQLITE_BUSY (at once, with no busy timeout).  The WAL stays fully
   * checkpointed at its size; the next commit restarts it (or appends to
   * it), which engine_wal_changed sees in the bytes of sleep_probe. */
  struct shadow_stop r;
  if ((rc = take_record(e, &sb, &r)))
    return rc;
  resync_save(e);
  if (e->test_sleep_hook) /* (tests: a commit lands here) */
    e->test_sleep_hook(e->test_sleep_arg);
  struct stat wb;
  if (fstat(e->wal_fd, &wb) == 0) {
    e->sleep_wal_size = wb.st_size;
    e->sleep_wal_mtime_ns = ts_ns(&wb.st_mtim);
    e->sleep_wal_ino = (uint64_t)wb.st_ino;
    e->sleep_probe_off = e->shadow_size;
    wal_probe(e->wal_fd, e->shadow_size, e->sleep_probe);
    /* Our pin is on read-mark 0, which lets a writer append to the WAL or
     * restart it: a commit that landed after the last copy, before the
     * stat and probe above, would be in the bytes the wake check compares
     * against and never seen.  Sleep only if the WAL still holds exactly
     * what was copied: the same header, and no frame of this lifetime at
     * the copied end.  A write after the probe changes those bytes (or the
     * size or mtime), which the wake check sees. */
    const uint8_t *fh = e->sleep_probe + WAL_HEADER_SIZE;
    if (wb.st_size >= WAL_HEADER_SIZE &&
        (memcmp(e->sleep_probe, e->hdr_raw, WAL_HEADER_SIZE) ||
         (wb.st_size >= e->shadow_size + WAL_FRAME_HEADER_SIZE &&
          !memcmp(fh + 8, e->hdr_raw + 16, 8))))
      return ERR_BUSY; /* a commit is coming in: stay awake */
  } else {
    e->sleep_wal_size = -1;
  }
  if (how == ENGINE_LIGHT &&
      (!e->ckpt_held || dms_lock(e, 1) || db_shared_lock(e, 1))) {
    dms_lock(e, 0);
    how = ENGINE_DEEP;
  }
  /* Keep the -shm and database fds (and their locks) through close_all,
   * and the WAL's: a database deleted while asleep still has its last
   * commits there (sync_gone_asleep). */
  int shm = how == ENGINE_LIGHT ? e->shm_fd : -1;
  int dbfd = how == ENGINE_LIGHT ? e->db_fd : -1;
  int walfd = how == ENGINE_LIGHT ? e->wal_fd : -1;
  if (shm >= 0)
    e->shm_fd = e->db_fd = e->wal_fd = -1;
  close_all(e);
  e->shm_fd = shm;
  e->db_fd = dbfd;
  e->wal_fd = walfd;
  e->ckpt_held = shm >= 0;
  /* The page map is on disk (resync_save): free it; a wake loads it. */
  struct resync kept = e->rs;
  resync_destroy(&e->rs);
  resync_init(&e->rs);
  e->rs.saved = kept.saved;
  e->rs.saved_index = kept.saved_index;
  e->rs.synced = kept.synced;
  e->rs.saved_ns = kept.saved_ns;
  e->rs.save_period_ns = kept.save_period_ns;
  e->sleep_rec = r;
  e->asleep = how;
  return 0;
}

/* A sleeper's fds (and with them its locks). */
static void close_sleep_fds(struct engine *e) {
  if (e->shm_fd >= 0)
    close(e->shm_fd);
  if (e->db_fd >= 0)
    close(e->db_fd);
  if (e->wal_fd >= 0)
    close(e->wal_fd);
  e->shm_fd = e->db_fd = e->wal_fd = -1;
  e->ckpt_held = 0;
}

void engine_deepen(struct engine *e) {
  if (e->asleep != ENGINE_LIGHT)
    return;
  close_sleep_fds(e);
  e->asleep = ENGINE_DEEP;
}

int engine_wal_changed(const struct engine *e) {
  struct stat sb;
  if (e->wal_fd >= 0) {
    /* Light sleep: the WAL we kept.  Another file at its path, or none (a
     * database deleted, maybe recreated by a connection that closed last
     * and deleted its WAL), is a change: the wake finds out which (and a
     * deleted one's final sync reads the kept fds). */
    struct stat pb;
    if (fstat(e->wal_fd, &sb) || stat(e->wal_path, &pb) ||
        pb.st_ino != sb.st_ino || pb.st_dev != sb.st_dev)
      return 1;
    if (e->sleep_wal_size < 0 || sb.st_size != e->sleep_wal_size ||
        ts_ns(&sb.st_mtim) != e->sleep_wal_mtime_ns ||
        (uint64_t)sb.st_ino != e->sleep_wal_ino)
      return 1;
    uint8_t now[SLEEP_PROBE_SIZE];
    wal_probe(e->wal_fd, e->sleep_probe_off, now);
    return memcmp(now, e->sleep_probe, sizeof(now)) != 0;
  }
  /* No fd: the application may have checkpointed into the database file
   * and deleted the WAL since (its last connection closing), leaving no
   * -wal to compare; the database file then differs from the record. */
  if (stat(e->db_path, &sb) == 0 &&
      ((uint64_t)sb.st_ino != e->sleep_rec.ino ||
       sb.st_size != e->sleep_rec.db_size ||
       ts_ns(&sb.st_mtim) != e->sleep_rec.mtime_ns))
    return 1;
  if (stat(e->wal_path, &sb))
    return e->sleep_wal_size >= 0;
  if (e->sleep_wal_size < 0 || sb.st_size != e->sleep_wal_size ||
      ts_ns(&sb.st_mtim) != e->sleep_wal_mtime_ns ||
      (uint64_t)sb.st_ino != e->sleep_wal_ino)
    return 1;
  /* Same size and (coarse) mtime: a commit in the same clock tick that
   * restarted the WAL or wrote the next frame within its old size. */
  int fd = open(e->wal_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 1;
  uint8_t now[SLEEP_PROBE_SIZE];
  wal_probe(fd, e->sleep_probe_off, now);
  close(fd);
  return memcmp(now, e->sleep_probe, sizeof(now)) != 0;
}

/* Whether another process has the database open, seen through the -shm
 * fd a sleeper holds with its own OFD lock on the DMS byte (which a
 * POSIX F_GETLK would report as another owner's). */
static int others_have_it_asleep(const struct engine *e) {
  struct flock fl;
  memset(&fl, 0, sizeof(fl));
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = SHM_DMS_BYTE;
  fl.l_len = 1;
  if (fcntl(e->shm_fd, F_OFD_GETLK, &fl))
    return 1;
  return fl.l_type != F_UNLCK;
}

/* A deep sleeper's fds again, with the locks a light sleeper keeps, if the
 * files are still the ones it slept on.  0, or ERR_BUSY. */
static int relock_deep(struct engine *e) {
  char *shm = xasprintf("%s-shm", e->db_path);
  e->shm_fd = open(shm, O_RDWR | O_CLOEXEC);
  free(shm);
  e->db_fd = open(e->db_path, O_RDONLY | O_CLOEXEC);
  e->wal_fd = open(e->wal_path, O_RDONLY | O_CLOEXEC);
  struct stat sb, wb;
  if (e->shm_fd < 0 || e->db_fd < 0 || e->wal_fd < 0 || fstat(e->db_fd, &sb) ||
      fstat(e->wal_fd, &wb) || (uint64_t)sb.st_ino != e->sleep_rec.ino ||
      (uint64_t)sb.st_dev != e->sleep_rec.dev ||
      (uint64_t)wb.st_ino != e->sleep_wal_ino ||
      wb.st_size != e->sleep_wal_size)
    return ERR_BUSY;
  return dms_lock(e, 1) || db_shared_lock(e, 1) ? ERR_BUSY : 0;
}

/* The stop of a sleeper whose WAL is unchanged since it went to sleep
 * (the caller checked): every frame is copied and checkpointed, but the
 * WAL is not empty (engine_sleep does not truncate it).  If no one else
 * has the database open, truncate it, for the reason truncate_if_alone
 * gives, with one plain connection and no pin, copy or checkpoint of our
 * own.  The DMS byte held shared (a deep sleeper takes it again first)
 * makes that connection use the wal-index as it is (everything
 * backfilled) instead of recovering it, which would checkpoint every
 * frame into the database file again; the SHARED byte keeps its close
 * from checkpointing.  A commit landing meanwhile would be checkpointed
 * by our TRUNCATE: the database file then differs from the record, and
 * the next start resyncs (stop_record_holds).  Best effort: the record is
 * checked at the next start whatever happens here. */
static void truncate_asleep(struct engine *e) {
  if (e->asleep == ENGINE_DEEP && relock_deep(e))
    return;
  if (e->shm_fd < 0 || e->wal_fd < 0 || others_have_it_asleep(e))
    return;
  ckpt_lock(e, 0); /* our connection's checkpoint takes it */
  sqlite3 *c = NULL;
  if (open_conn(e, &c))
    return;
  int64_t v[3];
  int crc = SQLITE_ERROR;
  /* A read first: a fresh connection has no WAL open to checkpoint. */
  if (!sql_row(e, c, "PRAGMA schema_version", v, NULL, 0)) {
    t_busy.deadline_ns = time_mono_ns() + 20 * NS_PER_MS;
    crc = sqlite3_wal_checkpoint_v2(c, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL,
                                    NULL);
  }
  sqlite3_close(c);
  struct stat wb;
  if (crc != SQLITE_OK || fstat(e->wal_fd, &wb) || wb.st_size != 0)
    log_debug(e->name, NULL, "stop asleep: wal not truncated: %s",
              crc == SQLITE_OK ? "frames left" : sqlite3_errstr(crc));
}

static int stop_same(const struct shadow_stop *a, const struct shadow_stop *b) {
  return !strcmp(a->gen, b->gen) && a->index == b->index &&
         a->size == b->size && a->dev == b->dev && a->ino == b->ino &&
         a->db_size == b->db_size && a->mtime_ns == b->mtime_ns &&
         a->ctime_ns == b->ctime_ns;
}

int engine_close_asleep(struct engine *e, int keep_wal) {
  if (!e->asleep)
    return 0;
  int truncated = !keep_wal && e->sleep_wal_size > WAL_HEADER_SIZE;
  if (truncated)
    truncate_asleep(e);
  /* A record on disk that says the same already (a sleeper that has not
   * woken since a start or a dormancy that wrote it) stays: no write, no
   * fsync. */
  struct shadow_stop on_disk;
  if (!truncated && !shadow_read_stop(e->meta, &on_disk) &&
      stop_same(&on_disk, &e->sleep_rec)) {
    close_sleep_fds(e);
    e->asleep = ENGINE_DEEP;
    return 0;
  }
  int rc = shadow_write_stop(e->meta, &e->sleep_rec);
  if (rc)
    log_warn(e->name, NULL, "write %s/%s: %s", e->meta, SHADOW_STOP_FILE,
             strerror(-rc));
  close_sleep_fds(e);
  e->asleep = ENGINE_DEEP;
  return 0;
}

/* Start straight into sleep (engine.h).  The order of the checks matters:
 * the WAL is looked at (stat, then its bytes) before the database file,
 * so that a commit landing after the WAL check is seen by the wake check
 * (it compares against what was read here) and a checkpoint into the
 * database file before the file check fails it. */
int engine_start_asleep(struct engine *e, char *why, size_t wlen) {
  struct shadow_stop r;
  if (shadow_read_stop(e->meta, &r)) {
    snprintf(why, wlen, "no clean-stop record");
    return 1;
  }
  char gen[GEN_LEN + 1];
  uint32_t index;
  if (shadow_read_generation(e->meta, gen) || strcmp(gen, r.gen) ||
      shadow_max_index(e->meta, gen, &index) || index != r.index) {
    snprintf(why, wlen, "meta directory changed since sluice stopped");
    return 1;
  }
  /* The last shadow file ends where the record says (a clean stop fsynced
   * it there), and its header is the WAL lifetime the record is in. */
  char *path = shadow_wal_path(e->meta, gen, index);
  uint8_t shdr[WAL_HEADER_SIZE];
  struct wal_header h;
  struct stat sb;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  free(path);
  int ok = fd >= 0 && fstat(fd, &sb) == 0 && sb.st_size == r.size &&
           pread_full(fd, shdr, WAL_HEADER_SIZE, 0) == WAL_HEADER_SIZE &&
           wal_header_parse(shdr, &h) == 0;
  if (fd >= 0)
    close(fd);
  if (!ok) {
    snprintf(why, wlen, "shadow wal changed since sluice stopped");
    return 1;
  }
  /* The WAL: absent, empty, or the shadow's lifetime with no frame at
   * the copied end (engine_sleep's check). */
  int64_t wsize = -1, wmtime = 0;
  uint64_t wino = 0;
  uint8_t probe[SLEEP_PROBE_SIZE];
  memset(probe, 0, sizeof(probe));
  int wfd = open(e->wal_path, O_RDONLY | O_CLOEXEC);
  if (wfd < 0 && errno != ENOENT) {
    snprintf(why, wlen, "open %s: %s", e->wal_path, strerror(errno));
    return 1;
  }
  if (wfd >= 0) {
    struct stat wb;
    ok = fstat(wfd, &wb) == 0;
    if (ok) {
      wsize = wb.st_size;
      wmtime = ts_ns(&wb.st_mtim);
      wino = (uint64_t)wb.st_ino;
      wal_probe(wfd, r.size, probe);
    }
    close(wfd);
    const uint8_t *fh = probe + WAL_HEADER_SIZE;
    if (!ok || (wsize > 0 && (wsize < WAL_HEADER_SIZE ||
                              memcmp(probe, shdr, WAL_HEADER_SIZE) ||
                              (wsize >= r.size + WAL_FRAME_HEADER_SIZE &&
                               !memcmp(fh + 8, shdr + 16, 8))))) {
      snprintf(why, wlen, "wal written while sluice was stopped");
      return 1;
    }
  }
  if (stat(e->db_path, &sb)) {
    snprintf(why, wlen, "database file %s", strerror(errno));
    return 1;
  }
  if (sb.st_mtim.tv_nsec == 0 || (uint64_t)sb.st_dev != r.dev ||
      (uint64_t)sb.st_ino != r.ino || sb.st_size != r.db_size ||
      ts_ns(&sb.st_mtim) != r.mtime_ns || ts_ns(&sb.st_ctim) != r.ctime_ns) {
    snprintf(why, wlen, "database file written while sluice was stopped");
    return 1;
  }
  /* Proven: a deep sleeper, as engine_sleep leaves one, with the stop's
   * record as its sleep record (the record stays on disk: a stop while
   * still asleep writes the same one again, engine_close_asleep). */
  memcpy(e->gen, r.gen, sizeof(e->gen));
  e->index = r.index;
  e->shadow_size = r.size;
  memcpy(e->hdr_raw, shdr, WAL_HEADER_SIZE);
  e->hdr = h;
  e->page_size = h.page_size;
  e->db_size = sb.st_size;
  e->wal_size = wsize > 0 ? wsize : 0;
  e->db_dev = (uint64_t)sb.st_dev;
  e->db_ino = (uint64_t)sb.st_ino;
  e->sleep_rec = r;
  e->sleep_wal_size = wsize;
  e->sleep_wal_mtime_ns = wmtime;
  e->sleep_wal_ino = wino;
  e->sleep_probe_off = r.size;
  memcpy(e->sleep_probe, probe, sizeof(probe));
  /* Shadow files are pruned only below the saved page map's index, which
   * the wake loads (resync_load): prune nothing until then. */
  e->rs.saved = 1;
  e->rs.saved_index = 0;
  e->asleep = ENGINE_DEEP;
  return 0;
}

int engine_replaced(struct engine *e) {
  struct stat sb;
  if (!e->opened)
    return 0;
  int gone = stat(e->db_path, &sb) != 0;
  if (!gone && (uint64_t)sb.st_dev == e->db_dev &&
      (uint64_t)sb.st_ino == e->db_ino)
    return 0;
  snprintf(e->next_reason, sizeof(e->next_reason), "database file %s",
           gone ? "deleted" : "replaced");
  snprintf(e->m->reason, sizeof(e->m->reason), "%s", e->next_reason);
  shadow_fsync(e);
  close_all(e);
  return 1;
}

void engine_destroy(struct engine *e) {
  engine_keep_msgs(e); /* close_all may say why it failed */
  close_all(e);
  free(e->wal_path);
  if (e->own_meta)
    free(e->meta);
  resync_destroy(&e->rs);
  engine_drop_msgs(e);
  e->db_path = e->wal_path = e->meta = NULL;
}
