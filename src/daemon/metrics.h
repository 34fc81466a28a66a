/*
 * Prometheus text exposition of every litestream_* metric of spec 7 (same
 * names and labels, so existing dashboards keep working) plus sluice's own
 * per-replica metrics, and the /healthz verdict.
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

struct db;

/* per_db: also the series with a db label (one or more per database);
 * the aggregates (databases by state, lag maximum and histogram, errors)
 * are always there. */
/* Dormant databases (daemon.c): closed while idle, every replica caught
 * up; counted in the aggregates only (as ready, lag 0). */
struct metrics_dormant {
  size_t dbs, replicas;
};
void metrics_render(struct db *const *dbs, size_t n,
                    const struct metrics_dormant *dormant, int per_db,
                    struct buf *out);
/* 200 if every replica synced within max_age (or has nothing to upload),
 * else 503; the body lists each replica. */
int metrics_health(struct db *const *dbs, size_t n, int64_t max_age_ns,
                   struct buf *out);

#endif
