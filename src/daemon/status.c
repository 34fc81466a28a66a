#include "daemon/status.h"

#include <stdio.h>
#include <string.h>

#include "core/budget.h"
#include "core/db.h"
#include "core/lease.h"
#include "core/replica.h"
#include "config/config.h"

static const char *dor_rep_name(const struct status_dormant *d, size_t j) {
  const struct replica_config *rc = &d->entry->replicas[j];
  return rc->name ? rc->name : rc->type ? rc->type : "file";
}

static size_t dor_reps(const struct status_dormant *d) {
  return d->entry->n_replicas;
}

/* A replica that does not hold its single-writer lease uploads nothing. */
static int lease_missing(const struct replica *r) {
  return r->lease && !lease_held(r->lease) && r->state != R_CLOSED;
}

const char *status_state(const struct db *db, int64_t now_ns) {
  int busy = 0, no_lease = 0;
  for (size_t j = 0; j < db->n_replicas; j++) {
    const struct replica *r = db->replicas[j];
    if (r->state == R_BACKOFF)
      return "error";
    no_lease |= lease_missing(r);
    busy |= r->state != R_IDLE || replica_lag_ns(r, now_ns) > 0;
  }
  if (no_lease && db->state == DB_READY)
    return "waiting";
  switch (db->state) {
  case DB_INIT:
    return "starting"; /* queued for its start (or its start check) */
  case DB_ERROR:
    return "error";
  case DB_WAITING:
    return "waiting";
  case DB_READY:
    return busy ? "replicating" : "idle";
  default:
    return db_state_name(db->state);
  }
}

static void json_str(struct buf *b, const char *v) {
  buf_append(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
    if (*p == '"' || *p == '\\')
      buf_appendf(b, "\\%c", *p);
    else if (*p < 0x20)
      buf_appendf(b, "\\u%04x", *p);
    else
      buf_append(b, p, 1);
  }
  buf_append(b, "\"", 1);
}

static void render_json(struct db *const *dbs, size_t n,
                        const struct status_dormant *const *dor, size_t n_dor,
                        int64_t now, struct buf *out) {
  buf_appendf(out, "{\"databases\":[");
  for (size_t i = 0; i < n; i++) {
    const struct db *db = dbs[i];
    buf_appendf(out, "%s\n{\"database\":", i ? "," : "");
    json_str(out, db->name);
    buf_appendf(out, ",\"state\":");
    json_str(out, status_state(db, now));
    buf_appendf(out, ",\"generation\":");
    json_str(out, db->gen);
    /* Asleep (light: its -shm and database file locked; deep: no fd), and
     * whether it has not opened since a start that found it caught up. */
    buf_appendf(out, ",\"sleep\":");
    json_str(out, db->sleep == ENGINE_LIGHT  ? "light"
                  : db->sleep == ENGINE_DEEP ? "deep"
                                             : "");
    buf_appendf(out, ",\"started_asleep\":%s",
                db->start == DB_START_ASLEEP ? "true" : "false");
    buf_appendf(out, ",\"error\":");
    json_str(out, str_or_empty(db->last_err));
    buf_appendf(out, ",\"replicas\":[");
    for (size_t j = 0; j < db->n_replicas; j++) {
      const struct replica *r = db->replicas[j];
      buf_appendf(out, "%s{\"name\":", j ? "," : "");
      json_str(out, r->name);
      buf_appendf(out, ",\"state\":");
      json_str(out, replica_state_name(r->state));
      buf_appendf(out, ",\"lease\":");
      json_str(out, r->lease ? lease_state_name(lease_state(r->lease)) : "");
      buf_appendf(out, ",\"lag_seconds\":%.3f,\"error\":",
                  (double)replica_lag_ns(r, now) / 1e9);
      json_str(out, str_or_empty(r->last_err));
      buf_appendf(out, ",\"budget_wait\":%s}", r->bw.queued ? "true" : "false");
    }
    buf_appendf(out, "]}");
  }
  for (size_t i = 0; i < n_dor; i++) {
    const struct status_dormant *d = dor[i];
    buf_appendf(out, "%s\n{\"database\":", i + n ? "," : "");
    json_str(out, d->path);
    buf_appendf(out, ",\"state\":\"idle\",\"generation\":");
    json_str(out, d->gen);
    buf_appendf(out, ",\"sleep\":\"dormant\",\"started_asleep\":false,"
                     "\"error\":\"\",\"replicas\":[");
    for (size_t j = 0; j < dor_reps(d); j++) {
      buf_appendf(out, "%s{\"name\":", j ? "," : "");
      json_str(out, dor_rep_name(d, j));
      buf_appendf(out, ",\"state\":\"idle\",\"lease\":\"\",\"lag_seconds\":0,"
                       "\"error\":\"\",\"budget_wait\":false}");
    }
    buf_appendf(out, "]}");
  }
  struct budget_stats st;
  budget_get_stats(&st);
  buf_appendf(out,
              "\n],\"budget\":{\"requests_per_second\":%lld,\"waiting\":%lld,"
              "\"wait_max_seconds\":%.3f,\"uploads_in_flight\":%lld,"
              "\"uploads_in_flight_max\":%lld}}\n",
              (long long)st.rps, (long long)st.waiting, st.oldest_wait_ns / 1e9,
              (long long)st.in_flight, (long long)st.max_in_flight);
}

/* The sleep column: "start" is a deep sleeper that has not opened since a
 * start that found its local state caught up (db.h, DB_START_ASLEEP). */
static const char *sleep_name(const struct db *db) {
  if (db->start == DB_START_ASLEEP)
    return "start";
  return db->sleep == ENGINE_LIGHT  ? "light"
         : db->sleep == ENGINE_DEEP ? "deep"
                                    : "-";
}

static size_t max_sz(size_t a, size_t b) {
  return a > b ? a : b;
}

/* One line per replica (one with "-" for a database without), columns
 * aligned: database, state, replica, lag, error. */
static void render_text(struct db *const *dbs, size_t n,
                        const struct status_dormant *const *dor, size_t n_dor,
                        int64_t now, struct buf *out) {
  size_t wd = strlen("database"), ws = strlen("state"), wr = strlen("replica");
  for (size_t i = 0; i < n_dor; i++) {
    wd = max_sz(wd, strlen(dor[i]->path));
    for (size_t j = 0; j < dor_reps(dor[i]); j++)
      wr = max_sz(wr, strlen(dor_rep_name(dor[i], j)));
  }
  for (size_t i = 0; i < n; i++) {
    wd = max_sz(wd, strlen(dbs[i]->name));
    ws = max_sz(ws, strlen(status_state(dbs[i], now)));
    for (size_t j = 0; j < dbs[i]->n_replicas; j++)
      wr = max_sz(wr, strlen(dbs[i]->replicas[j]->name));
  }
  buf_appendf(out, "%-*s  %-*s  %-7s  %-*s  %-8s  %s\n", (int)wd, "database",
              (int)ws, "state", "sleep", (int)wr, "replica", "lag", "error");
  for (size_t i = 0; i < n; i++) {
    const struct db *db = dbs[i];
    const char *st = status_state(db, now);
    const char *sl = sleep_name(db);
    if (!db->n_replicas)
      buf_appendf(out, "%-*s  %-*s  %-7s  %-*s  %-8s  %s\n", (int)wd, db->name,
                  (int)ws, st, sl, (int)wr, "-", "-",
                  db->last_err ? db->last_err : "-");
    for (size_t j = 0; j < db->n_replicas; j++) {
      const struct replica *r = db->replicas[j];
      /* Whole seconds rounded up, as `sluice replicas` prints them. */
      int64_t ns = replica_lag_ns(r, now);
      char lag[32];
      snprintf(lag, sizeof(lag), "%llds",
               (long long)(ns > 0 ? (ns + NS_PER_SEC - 1) / NS_PER_SEC : 0));
      char wait[64];
      const char *e = r->last_err ? r->last_err : str_or_empty(db->last_err);
      if (!e[0] && lease_missing(r)) {
        snprintf(wait, sizeof(wait), "waiting for the lease (%s)",
                 lease_state_name(lease_state(r->lease)));
        e = wait;
      } else if (!e[0] && r->bw.queued) {
        e = "waiting for its turn (max-requests-per-second)";
      }
      buf_appendf(out, "%-*s  %-*s  %-7s  %-*s  %-8s  %s\n", (int)wd, db->name,
                  (int)ws, st, sl, (int)wr, r->name, lag, e[0] ? e : "-");
    }
  }
  for (size_t i = 0; i < n_dor; i++) {
    const struct status_dormant *d = dor[i];
    for (size_t j = 0; j < dor_reps(d) || j == 0; j++)
      buf_appendf(out, "%-*s  %-*s  %-7s  %-*s  %-8s  %s\n", (int)wd, d->path,
                  (int)ws, "idle", "dormant", (int)wr,
                  j < dor_reps(d) ? dor_rep_name(d, j) : "-", "0s", "-");
  }
}

void status_render(struct db *const *dbs, size_t n,
                   const struct status_dormant *const *dor, size_t n_dor,
                   int json, struct buf *out) {
  int64_t now = time_now_ns();
  if (json) {
    render_json(dbs, n, dor, n_dor, now, out);
    return;
  }
  render_text(dbs, n, dor, n_dor, now, out);
  struct budget_stats st;
  budget_get_stats(&st);
  if (st.rps > 0)
    buf_appendf(out,
                "budget: %lld requests/s; %lld replicas waiting their turn "
                "(longest %.1f s); %lld of %lld uploads in flight\n",
                (long long)st.rps, (long long)st.waiting,
                st.oldest_wait_ns / 1e9, (long long)st.in_flight,
                (long long)st.max_in_flight);
}
