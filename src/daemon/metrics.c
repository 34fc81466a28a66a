#include "daemon/metrics.h"

#include <stdio.h>
#include <string.h>

#include "backends/backend.h"
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
                      double v) {
  buf_appendf(b, "%s{db=\"", name);
  label(b, db->name);
  buf_appendf(b, "\"} %.17g\n", v);
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

void metrics_render(struct db *const *dbs, size_t n, struct buf *out) {
  static const struct {
    const char *name, *type, *help;
    int which;
  } dbm[] = {
      {"litestream_db_size", "gauge", "The current size of the real DB", 0},
      {"litestream_wal_size", "gauge", "The current size of the real WAL", 1},
      {"litestream_total_wal_bytes", "counter",
       "Total number of bytes written to shadow WAL", 2},
      {"litestream_shadow_wal_index", "gauge",
       "The current index of the shadow WAL", 3},
      {"litestream_shadow_wal_size", "gauge",
       "Current size of shadow WAL, in bytes", 4},
      {"litestream_sync_count", "counter", "Number of sync operations", 5},
      {"litestream_sync_error_count", "counter",
       "Number of sync errors that have occurred", 6},
      {"litestream_sync_seconds", "counter",
       "Time spent syncing shadow WAL, in seconds", 7},
      {"sluice_resyncs_total", "counter",
       "WAL continuity lost and the changed pages shipped instead of a "
       "snapshot",
       8},
      {"sluice_resync_bytes_total", "counter",
       "Bytes of the WAL segments the resyncs wrote", 9},
      {"sluice_disk_full", "gauge",
       "1 while the shadow WAL cannot grow (its filesystem is full): frames "
       "are kept in the WAL and uploaded from there, no checkpoint",
       10},
  };
  for (size_t k = 0; k < ARRAY_SIZE(dbm); k++) {
    head(out, dbm[k].name, dbm[k].type, dbm[k].help);
    FOR_DB(i) {
      const struct db *db = dbs[i];
      double v = 0;
      switch (dbm[k].which) {
      case 0:
        v = (double)db->db_size;
        break;
      case 1:
        v = (double)db->wal_size;
        break;
      case 2:
        v = (double)db->stats.total_wal_bytes;
        break;
      case 3:
        v = db->index;
        break;
      case 4:
        v = (double)db->shadow_size;
        break;
      case 5:
        v = (double)db->stats.sync_count;
        break;
      case 6:
        v = (double)db->stats.sync_errors;
        break;
      case 7:
        v = (double)db->stats.sync_ns / 1e9;
        break;
      case 8:
        v = (double)db->stats.resyncs;
        break;
      case 9:
        v = (double)db->stats.resync_bytes;
        break;
      case 10:
        v = db->disk_full;
        break;
      }
      db_sample(out, dbm[k].name, db, v);
    }
  }
  /* sluice checkpoints with the write lock, in PASSIVE mode. */
  head(out, "litestream_checkpoint_count", "counter",
       "Number of checkpoint operations");
  FOR_DB(i) {
    buf_appendf(out, "litestream_checkpoint_count{db=\"");
    label(out, dbs[i]->name);
    buf_appendf(out, "\",mode=\"PASSIVE\"} %lld\n",
                (long long)dbs[i]->stats.checkpoints);
  }
  head(out, "litestream_checkpoint_error_count", "counter",
       "Number of checkpoint errors that have occurred");
  FOR_DB(i) {
    buf_appendf(out, "litestream_checkpoint_error_count{db=\"");
    label(out, dbs[i]->name);
    buf_appendf(out, "\",mode=\"PASSIVE\"} %lld\n",
                (long long)dbs[i]->stats.checkpoint_errors);
  }
  head(out, "litestream_checkpoint_seconds", "counter",
       "Time spent checkpointing WAL, in seconds");
  FOR_DB(i) {
    buf_appendf(out, "litestream_checkpoint_seconds{db=\"");
    label(out, dbs[i]->name);
    buf_appendf(out, "\",mode=\"PASSIVE\"} %.9f\n",
                (double)dbs[i]->stats.checkpoint_ns / 1e9);
  }

  head(out, "litestream_replica_wal_bytes", "counter",
       "The number wal bytes written");
  FOR_REP(i, j) {
    const struct replica *r = dbs[i]->replicas[j];
    rep_sample(out, "litestream_replica_wal_bytes", dbs[i], r, NULL,
               (double)r->wal_bytes);
  }
  head(out, "litestream_replica_wal_index", "gauge", "The current WAL index");
  FOR_REP(i, j) {
    const struct replica *r = dbs[i]->replicas[j];
    rep_sample(out, "litestream_replica_wal_index", dbs[i], r, NULL,
               r->pos.index);
  }
  head(out, "litestream_replica_wal_offset", "gauge", "The current WAL offset");
  FOR_REP(i, j) {
    const struct replica *r = dbs[i]->replicas[j];
    rep_sample(out, "litestream_replica_wal_offset", dbs[i], r, NULL,
               (double)r->pos.offset);
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

  /* Backend operations, summed per replica type (spec 7). */
  static const char *ops[] = {"GET", "PUT", "LIST", "DELETE"};
  const char *types[] = {"file", "s3", "gcs", "abs", "sftp"};
  head(out, "litestream_replica_operation_total", "counter",
       "The number of replica operations performed");
  for (size_t t = 0; t < ARRAY_SIZE(types); t++)
    for (int o = 0; o < BOP__COUNT; o++) {
      int64_t v = 0, seen = 0;
      FOR_REP(i, j) {
        const struct backend *b = dbs[i]->replicas[j]->b;
        if (!strcmp(b->ops->name, types[t])) {
          v += b->op_count[o];
          seen = 1;
        }
      }
      if (seen)
        buf_appendf(out,
                    "litestream_replica_operation_total{operation=\"%s\","
                    "replica_type=\"%s\"} %lld\n",
                    ops[o], types[t], (long long)v);
    }
  head(out, "litestream_replica_operation_bytes", "counter",
       "The number of bytes used by replica operations");
  for (size_t t = 0; t < ARRAY_SIZE(types); t++)
    for (int o = 0; o < 2; o++) {
      int64_t v = 0, seen = 0;
      FOR_REP(i, j) {
        const struct backend *b = dbs[i]->replicas[j]->b;
        if (!strcmp(b->ops->name, types[t])) {
          v += b->op_bytes[o];
          seen = 1;
        }
      }
      if (seen)
        buf_appendf(out,
                    "litestream_replica_operation_bytes{operation=\"%s\","
                    "replica_type=\"%s\"} %lld\n",
                    ops[o], types[t], (long long)v);
    }

  /* sluice's own, named by Prometheus conventions. */
  int64_t now = time_now_ns();
  head(out, "sluice_replica_lag_seconds", "gauge",
       "Seconds since the oldest change the replica does not hold yet "
       "(0 when caught up)");
  FOR_REP(i, j) {
    const struct replica *r = dbs[i]->replicas[j];
    rep_sample(out, "sluice_replica_lag_seconds", dbs[i], r, NULL,
               (double)replica_lag_ns(r, now) / 1e9);
  }
  head(out, "sluice_replica_last_sync_timestamp_seconds", "gauge",
       "Unix time of the last successful upload");
  FOR_REP(i, j) {
    const struct replica *r = dbs[i]->replicas[j];
    rep_sample(out, "sluice_replica_last_sync_timestamp_seconds", dbs[i], r,
               NULL, (double)r->last_sync_ns / 1e9);
  }
  head(out, "sluice_replica_upload_errors_total", "counter",
       "Failed uploads (each retried until it succeeds)");
  FOR_REP(i, j) {
    const struct replica *r = dbs[i]->replicas[j];
    rep_sample(out, "sluice_replica_upload_errors_total", dbs[i], r, NULL,
               (double)r->upload_errors);
  }
  head(out, "sluice_replica_requests_total", "counter",
       "Storage requests by operation");
  FOR_REP(i, j) {
    const struct replica *r = dbs[i]->replicas[j];
    for (int o = 0; o < BOP__COUNT; o++) {
      char extra[64];
      snprintf(extra, sizeof(extra), ",operation=\"%s\"", ops[o]);
      rep_sample(out, "sluice_replica_requests_total", dbs[i], r, extra,
                 (double)r->b->op_count[o]);
    }
  }
  head(out, "sluice_replica_bytes_total", "counter",
       "Bytes transferred to and from storage by operation");
  FOR_REP(i, j) {
    const struct replica *r = dbs[i]->replicas[j];
    for (int o = 0; o < 2; o++) {
      char extra[64];
      snprintf(extra, sizeof(extra), ",operation=\"%s\"", ops[o]);
      rep_sample(out, "sluice_replica_bytes_total", dbs[i], r, extra,
                 (double)r->b->op_bytes[o]);
    }
  }
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
