/*
 * `sluice status`: every database of the running daemon, its state and
 * each replica's lag and last error, served on the metrics server as
 * /status (an aligned table) and /status.json.  Built in one pass over the
 * databases (two for the table's column widths): O(databases + replicas).
 */
#ifndef SLUICE_STATUS_H
#define SLUICE_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "format/names.h"

struct db;
struct db_config;

/* A dormant database (daemon.c): closed while idle, caught up; shown as
 * idle, sleep "dormant", its entry's replicas with no lag. */
struct status_dormant {
  const char *path;
  const struct db_config *entry; /* its replicas are the database's */
  char gen[GEN_LEN + 1];
};

/* What `sluice status` shows: "error" (the database or one of its
 * replicas failed and is retrying), "waiting" (no file yet, or a replica
 * does not hold its single-writer lease),
 * "replicating" (a replica lags or is uploading), "idle" (every replica
 * holds everything), else db_state_name() of the database's state. */
const char *status_state(const struct db *db, int64_t now_ns);

void status_render(struct db *const *dbs, size_t n,
                   const struct status_dormant *const *dor, size_t n_dor,
                   int json, struct buf *out);

#endif
