/*
 * snapshot-interval and retention for one replica (see housekeeping.c).
 */
#ifndef SLUICE_HOUSEKEEPING_H
#define SLUICE_HOUSEKEEPING_H

#include <stdint.h>

#include "format/names.h"

struct replica;
struct housekeeping;

struct known_snapshot {
  char gen[GEN_LEN + 1];
  uint32_t index;
  int64_t created_ns;
};

struct housekeeping *hk_new(struct replica *r);
void hk_free(struct housekeeping *h);
/* Arms the timers; called once the replica knows where it stands. */
void hk_start(struct housekeeping *h);
/* A snapshot exists (written or listed). */
void hk_add_known(struct housekeeping *h, const char *gen, uint32_t index,
                  int64_t created_ns);
/* A snapshot of gen at index is known to exist. */
int hk_has_snapshot(const struct housekeeping *h, const char *gen,
                    uint32_t index);
/* Runs a retention check now (also called by its timer). */
void hk_retention_check(struct housekeeping *h);
int hk_busy(const struct housekeeping *h);
/* The lease is usable again: a pass waiting for it goes on. */
void hk_lease_ready(struct housekeeping *h);
/* Stops the timers (shutdown). */
void hk_stop(struct housekeeping *h);

#endif
