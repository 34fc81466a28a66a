#include "daemon/metrics.h"

#include <stdio.h>
#include <string.h>

#include "backends/backend.h"
#include "core/budget.h"
#include "core/db.h"
#include "core/replica.h"

static void label(struct buf *b, const char *v) {
  for (const char *p = v; *p; p++) {
    if (*p == '\\' || *p == '"')
      buf_appendf(b, "\\%c", *p);
    else if (*p == '\n')
      buf_append(b, "\\n", 2);
    else
      buf_append(b, p, 1);
  }
}

static void head(struct buf *b, const char *name, const char *type,
                 const char *help) {
  buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void db_sample(struct buf *b, const char *name, const struct db *db,
                      const char *extra, double v) {
  buf_appendf(b, "%s{db=\"", name);
  label(b, db->name);
  buf_appendf(b, "\"%s} %.17g\n", extra ? extra : "", v);
}

static void rep_sample(struct buf *b, const char *name, const struct db *db,
                       const struct replica *r, const char *extra, double v) {
  buf_appendf(b, "%s{db=\"", name);
  label(b, db->name);
  buf_append(b, "\",name=\"", 8);
  label(b, r->name);
  buf_appendf(b, "\"%s} %.17g\n", extra ? extra : "", v);
}

#define FOR_DB(i) for (size_t i = 0; i < n; i++)
#define FOR_REP(i, j)                                                          \
  for (size_t i = 0; i < n; i++)                                               \
    for (size_t j = 0; j < dbs[i]->n_replicas; j++)

/* One series per database: name, type, help, labels after db, value. */
struct db_metric {
  const char *name, *type, *help, *extra;
  double (*value)(const struct db *db);
};
/* One series per replica. */
struct rep_metric {
  const char *name, *type, *help;
  double (*value)(const struct replica *r, int64_t now);
};

#define DBV(fn, expr)                                                          \
  static double fn(const struct db *db) {                                      \
    return (double)(expr);                                                     \
  }
DBV(v_db_size, db->db_size)
DBV(v_wal_size, db->wal_size)
DBV(v_total_wal_bytes, db->stats.total_wal_bytes)
DBV(v_index, db->index)
DBV(v_shadow_size, db->shadow_size)
DBV(v_sync_count, db->stats.sync_count)
DBV(v_sync_errors, db->stats.sync_errors)
DBV(v_sync_seconds, db->stats.sync_ns / 1e9)
DBV(v_resyncs, db->stats.resyncs)
DBV(v_resync_bytes, db->stats.resync_bytes)
DBV(v_checkpoints, db->stats.checkpoints)
DBV(v_checkpoint_errors, db->stats.checkpoint_errors)
DBV(v_checkpoint_seconds, db->stats.checkpoint_ns / 1e9)
DBV(v_disk_full, db->disk_full)
#undef DBV
#define REPV(fn, expr)                                                         \
  static double fn(const struct replica *r, int64_t now) {                     \
    (void)now;                                                                 \
    return (double)(expr);                                                     \
  }
REPV(v_rep_wal_bytes, r->wal_bytes)
REPV(v_rep_index, r->pos.index)
REPV(v_rep_offset, r->pos.offset)
REPV(v_rep_lag, replica_lag_ns(r, now) / 1e9)
REPV(v_rep_last_sync, r->last_sync_ns / 1e9)
REPV(v_rep_upload_errors, r->upload_errors)
#undef REPV

static const char *const ops[] = {"GET", "PUT", "LIST", "DELETE"};

static void per_database(struct db *const *dbs, size_t n, int64_t now,
                         struct buf *out) {
  /* sluice checkpoints with the write lock, in PASSIVE mode. */
  static const struct db_metric dbm[] = {
      {"litestream_db_size", "gauge", "The current size of the real DB", NULL,
       v_db_size},
      {"litestream_wal_size", "gauge", "The current size of the real WAL", NULL,
       v_wal_size},
      {"litestream_total_wal_bytes", "counter",
       "Total number of bytes written to shadow WAL", NULL, v_total_wal_bytes},
      {"litestream_shadow_wal_index", "gauge",
       "The current index of the shadow WAL", NULL, v_index},
      {"litestream_shadow_wal_size", "gauge",
       "Current size of shadow WAL, in bytes", NULL, v_shadow_size},
      {"litestream_sync_count", "counter", "Number of sync operations", NULL,
       v_sync_count},
      {"litestream_sync_error_count", "counter",
       "Number of sync errors that have occurred", NULL, v_sync_errors},
      {"litestream_sync_seconds", "counter",
       "Time spent syncing shadow WAL, in seconds", NULL, v_sync_seconds},
      {"sluice_resyncs_total", "counter",
       "WAL continuity lost and the changed pages shipped instead of a "
       "snapshot",
       NULL, v_resyncs},
      {"sluice_resync_bytes_total", "counter",
       "Bytes of the WAL segments the resyncs wrote", NULL, v_resync_bytes},
      {"litestream_checkpoint_count", "counter",
       "Number of checkpoint operations", ",mode=\"PASSIVE\"", v_checkpoints},
      {"litestream_checkpoint_error_count", "counter",
       "Number of checkpoint errors that have occurred", ",mode=\"PASSIVE\"",
       v_checkpoint_errors},
      {"litestream_checkpoint_seconds", "counter",
       "Time spent checkpointing WAL, in seconds", ",mode=\"PASSIVE\"",
       v_checkpoint_seconds},
      {"sluice_disk_full", "gauge",
       "1 while the shadow WAL cannot grow (its filesystem is full): frames "
       "are kept in the WAL and uploaded from there, no checkpoint",
       NULL, v_disk_full},
  };
  for (size_t k = 0; k < ARRAY_SIZE(dbm); k++) {
    head(out, dbm[k].name, dbm[k].type, dbm[k].help);
    FOR_DB(i)
    db_sample(out, dbm[k].name, dbs[i], dbm[k].extra, dbm[k].value(dbs[i]));
  }

  static const struct rep_metric rm[] = {
      {"litestream_replica_wal_bytes", "counter",
       "The number wal bytes written", v_rep_wal_bytes},
      {"litestream_replica_wal_index", "gauge", "The current WAL index",
       v_rep_index},
      {"litestream_replica_wal_offset", "gauge", "The current WAL offset",
       v_rep_offset},
  };
  for (size_t k = 0; k < ARRAY_SIZE(rm); k++) {
    head(out, rm[k].name, rm[k].type, rm[k].help);
    FOR_REP(i, j)
    rep_sample(out, rm[k].name, dbs[i], dbs[i]->replicas[j], NULL,
               rm[k].value(dbs[i]->replicas[j], now));
  }
  head(out, "litestream_replica_validation_total", "counter",
       "The number of validations performed");
  FOR_REP(i, j) {
    const struct replica *r = dbs[i]->replicas[j];
    rep_sample(out, "litestream_replica_validation_total", dbs[i], r,
               ",status=\"ok\"", (double)r->validations_ok);
    rep_sample(out, "litestream_replica_validation_total", dbs[i], r,
               ",status=\"error\"", (double)r->validations_failed);
  }
}

/* Backend operations, summed per replica type (spec 7): ops [0, n_ops). */
static void per_type(struct db *const *dbs, size_t n, const char *name,
                     const char *help, int bytes, struct buf *out) {
  static const char *const types[] = {"file", "s3", "gcs", "abs", "sftp"};
  head(out, name, "counter", help);
  for (size_t t = 0; t < ARRAY_SIZE(types); t++)
    for (int o = 0; o < (bytes ? 2 : BOP__COUNT); o++) {
      int64_t v = 0, seen = 0;
      FOR_REP(i, j) {
        const struct backend *b = dbs[i]->replicas[j]->b;
        if (!strcmp(b->ops->name, types[t])) {
          v += bytes ? b->op_bytes[o] : b->op_count[o];
          seen = 1;
        }
      }
      if (seen)
        buf_appendf(out, "%s{operation=\"%s\",replica_type=\"%s\"} %lld\n",
                    name, ops[o], types[t], (long long)v);
    }
}

/* sluice's own per-replica series, named by Prometheus conventions. */
static void per_replica(struct db *const *dbs, size_t n, int64_t now,
                        struct buf *out) {
  static const struct rep_metric rm[] = {
      {"sluice_replica_lag_seconds", "gauge",
       "Seconds since the oldest change the replica does not hold yet "
       "(0 when caught up)",
       v_rep_lag},
      {"sluice_replica_last_sync_timestamp_seconds", "gauge",
       "Unix time of the last successful upload", v_rep_last_sync},
      {"sluice_replica_upload_errors_total", "counter",
       "Failed uploads (each retried until it succeeds)", v_rep_upload_errors},
  };
  for (size_t k = 0; k < ARRAY_SIZE(rm); k++) {
    head(out, rm[k].name, rm[k].type, rm[k].help);
    FOR_REP(i, j)
    rep_sample(out, rm[k].name, dbs[i], dbs[i]->replicas[j], NULL,
               rm[k].value(dbs[i]->replicas[j], now));
  }
  for (int bytes = 0; bytes < 2; bytes++) {
    const char *name =
        bytes ? "sluice_replica_bytes_total" : "sluice_replica_requests_total";
    head(out, name, "counter",
         bytes ? "Bytes transferred to and from storage by operation"
               : "Storage requests by operation");
    FOR_REP(i, j) {
      const struct replica *r = dbs[i]->replicas[j];
      for (int o = 0; o < (bytes ? 2 : BOP__COUNT); o++) {
        char extra[64];
        snprintf(extra, sizeof(extra), ",operation=\"%s\"", ops[o]);
        rep_sample(out, name, dbs[i], r, extra,
                   (double)(bytes ? r->b->op_bytes[o] : r->b->op_count[o]));
      }
    }
  }
}

/* The process-wide request budget and bound on uploads (core/budget.h). */
static void budget_series(struct buf *out) {
  struct budget_stats st;
  budget_get_stats(&st);
  static const struct {
    const char *name, *type, *help;
  } m[] = {
      {"sluice_budget_requests_per_second", "gauge",
       "max-requests-per-second (0: no budget)"},
      {"sluice_budget_waiting", "gauge",
       "Replicas waiting for their turn (a request token or an upload slot)"},
      {"sluice_budget_wait_max_seconds", "gauge",
       "How long the replica waiting longest has waited for its turn"},
      {"sluice_budget_waits_total", "counter",
       "Turns a replica had to wait for"},
      {"sluice_uploads_in_flight", "gauge",
       "Replicas with an upload, snapshot or listing in flight"},
      {"sluice_uploads_in_flight_max", "gauge", "max-uploads-in-flight"},
      {"sluice_store_requests_total", "counter",
       "Requests made to every store, by every replica"},
  };
  double v[] = {(double)st.rps,          (double)st.waiting,
                st.oldest_wait_ns / 1e9, (double)st.waits,
                (double)st.in_flight,    (double)st.max_in_flight,
                (double)st.requests};
  for (size_t i = 0; i < ARRAY_SIZE(m); i++) {
    head(out, m[i].name, m[i].type, m[i].help);
    buf_appendf(out, "%s %.17g\n", m[i].name, v[i]);
  }
}

/* Upper bounds (seconds) of the lag histogram's buckets. */
static const double lag_le[] = {0, 1, 5, 10, 30, 60, 300, 900, 3600};

/* Series whose count does not grow with the number of databases. */
static void aggregates(struct db *const *dbs, size_t n,
                       const struct metrics_dormant *dor, int64_t now,
                       struct buf *out) {
  size_t by_state[DB__STATES] = {0};
  int64_t sync_err = 0, ckpt_err = 0, upload_err = 0, in_backoff = 0;
  int64_t replicas = 0, buckets[ARRAY_SIZE(lag_le)] = {0};
  double lag_max = 0, lag_sum = 0;
  FOR_DB(i) {
    if ((unsigned)dbs[i]->state < DB__STATES)
      by_state[dbs[i]->state]++;
    sync_err += dbs[i]->stats.sync_errors;
    ckpt_err += dbs[i]->stats.checkpoint_errors;
  }
  FOR_REP(i, j) {
    const struct replica *r = dbs[i]->replicas[j];
    double lag = (double)replica_lag_ns(r, now) / 1e9;
    replicas++;
    lag_sum += lag;
    if (lag > lag_max)
      lag_max = lag;
    for (size_t k = 0; k < ARRAY_SIZE(lag_le); k++)
      buckets[k] += lag <= lag_le[k];
    upload_err += r->upload_errors;
    in_backoff += r->state == R_BACKOFF;
  }
  if (dor) {
    by_state[DB_READY] += dor->dbs;
    replicas += (int64_t)dor->replicas;
    for (size_t k = 0; k < ARRAY_SIZE(lag_le); k++)
      buckets[k] += (int64_t)dor->replicas;
  }
  head(out, "sluice_databases", "gauge", "Databases by state");
  for (int s = 0; s < DB__STATES; s++)
    buf_appendf(out, "sluice_databases{state=\"%s\"} %zu\n",
                db_state_name((enum db_state)s), by_state[s]);
  head(out, "sluice_databases_dormant", "gauge",
       "Idle databases closed until their files change (no fd, no memory "
       "but their path); counted as ready above");
  buf_appendf(out, "sluice_databases_dormant %zu\n", dor ? dor->dbs : 0);
  head(out, "sluice_replicas_failing", "gauge",
       "Replicas whose last upload failed (retrying with backoff)");
  buf_appendf(out, "sluice_replicas_failing %lld\n", (long long)in_backoff);
  head(out, "sluice_replica_lag_max_seconds", "gauge",
       "The largest sluice_replica_lag_seconds of any replica");
  buf_appendf(out, "sluice_replica_lag_max_seconds %.17g\n", lag_max);
  head(out, "sluice_replica_lag_distribution_seconds", "histogram",
       "Replicas by current lag, in seconds (a snapshot at scrape time)");
  for (size_t k = 0; k < ARRAY_SIZE(lag_le); k++)
    buf_appendf(out,
                "sluice_replica_lag_distribution_seconds_bucket{le=\"%g\"} "
                "%lld\n",
                lag_le[k], (long long)buckets[k]);
  buf_appendf(out,
              "sluice_replica_lag_distribution_seconds_bucket{le=\"+Inf\"} "
              "%lld\n"
              "sluice_replica_lag_distribution_seconds_sum %.17g\n"
              "sluice_replica_lag_distribution_seconds_count %lld\n",
              (long long)replicas, lag_sum, (long long)replicas);
  head(out, "sluice_errors_total", "counter",
       "Errors of every database and replica, by kind");
  buf_appendf(out,
              "sluice_errors_total{kind=\"sync\"} %lld\n"
              "sluice_errors_total{kind=\"checkpoint\"} %lld\n"
              "sluice_errors_total{kind=\"upload\"} %lld\n",
              (long long)sync_err, (long long)ckpt_err, (long long)upload_err);
  budget_series(out);
}

void metrics_render(struct db *const *dbs, size_t n,
                    const struct metrics_dormant *dormant, int per_db,
                    struct buf *out) {
  int64_t now = time_now_ns();
  if (per_db)
    per_database(dbs, n, now, out);
  per_type(dbs, n, "litestream_replica_operation_total",
           "The number of replica operations performed", 0, out);
  per_type(dbs, n, "litestream_replica_operation_bytes",
           "The number of bytes used by replica operations", 1, out);
  if (per_db)
    per_replica(dbs, n, now, out);
  aggregates(dbs, n, dormant, now, out);
}

int metrics_health(struct db *const *dbs, size_t n, int64_t max_age_ns,
                   struct buf *out) {
  int64_t now = time_now_ns();
  int ok = 1;
  FOR_REP(i, j) {
    const struct replica *r = dbs[i]->replicas[j];
    int64_t lag = replica_lag_ns(r, now);
    int good = lag <= max_age_ns;
    ok &= good;
    char d[40];
    duration_format(duration_round_lag(lag), d);
    buf_appendf(out, "%s %s %s lag=%s\n", good ? "ok" : "behind", dbs[i]->name,
                r->name, d);
  }
  if (ok && out->len == 0)
    buf_appendf(out, "ok\n");
  return ok ? 200 : 503;
}
