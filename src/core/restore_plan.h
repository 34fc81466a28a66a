/*
 * Restore, part 2 of 3 (restore_plan.c): choosing what to restore.
 * Private to src/core/restore*.c; restore_choose is public in restore.h.
 */
#ifndef SLUICE_RESTORE_PLAN_H
#define SLUICE_RESTORE_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "core/restore.h"
#include "core/store.h"

/* One WAL index to apply: its segments, in offset order (borrowed from
 * the segment listing). */
struct plan_index {
  uint32_t index;
  const struct segment_info *segs;
  size_t n;
};

struct restore_plan {
  struct snapshot_info snap;
  struct plan_index *idx; /* snap.index, snap.index + 1, ... */
  size_t n_idx;
};

/* The snapshot (the latest at or below o->index, or created at or before
 * o->timestamp_ns, or the latest) and every segment after it up to the
 * target.  Returns 0, or ERR_NO_SNAPSHOT / ERR_SEGMENT_GAP with a line
 * naming the object in err.  `out` borrows from segs. */
int restore_plan_make(const struct snapshot_list *snaps,
                      const struct segment_list *segs,
                      const struct restore_opts *o, const char *gen,
                      struct restore_plan *out, char *err, size_t errlen);
void restore_plan_destroy(struct restore_plan *p);

#endif
