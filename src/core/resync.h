/*
 * Resync: continuing a generation when WAL continuity cannot be proven.
 *
 * After a kill -9 of sluice, the application's own TRUNCATE checkpoint can
 * complete while sluice is down; the frames committed since sluice's last
 * copy then exist only in the database file, and the WAL sluice finds on
 * start is not the one its shadow WAL continues.  Instead of a new
 * generation (a full snapshot), sluice compares the database file against
 * the page map (format/pagemap.h) of the replicated state and ships the
 * pages that differ as one ordinary WAL lifetime of the same generation,
 * at the next index: a valid WAL header (salt-1 and checkpoint sequence one
 * past the previous index's), frames chained by SQLite's checksum, the
 * last one a commit frame carrying the database size.  Any WAL reader (a
 * Litestream 0.3 restore, SQLite itself) applies it.  The application's
 * current WAL lifetime follows at the index after, copied from its first
 * frame, so "segment + that lifetime" rebuilds the database exactly as a
 * snapshot + that lifetime would.
 *
 * The map in memory describes the state at the shadow WAL's end, (gen,
 * index, shadow_size): copy_frames hashes each frame it copies (on the
 * pool thread that copies it) and applies a transaction's frames only once
 * its commit frame is copied.  It is saved to the meta directory now and
 * then, only after the shadow WAL is fsynced up to the position it names,
 * so a saved map is never ahead of the shadow; on start a saved map behind
 * the shadow is brought forward by replaying the shadow WAL files from its
 * position (which are kept until then: resync_prune_floor).  A map that
 * cannot be placed exactly at the shadow's end is not used.
 *
 * Every function runs in an engine job (thread pool), like engine.c.
 */
#ifndef SLUICE_RESYNC_H
#define SLUICE_RESYNC_H

#include <stddef.h>
#include <stdint.h>

#include "format/pagemap.h"

#define RESYNC_MAP_FILE "sluice-pagemap"
/* The periodic save (resync_maintain) runs at most once per this period,
 * when enough has been copied since the last one.  A save is three flushes
 * (the shadow, the map, the meta directory) on the device the
 * application's commits wait for; a map saved less often is still correct
 * (never ahead of the durable shadow), it only leaves more shadow WAL to
 * replay after a kill -9 and keeps shadow files a little longer
 * (resync_prune_floor).  Every other save (stop, sleep, resync, rebuild,
 * full disk) is unconditional. */
#define RESYNC_SAVE_PERIOD_NS (1000 * 1000 * 1000LL)

struct engine;

struct resync_frame {
  uint32_t pgno;
  uint32_t commit;
  uint64_t h;
};

struct resync {
  struct pagemap map; /* valid: the pages at the shadow's end */
  int valid;
  int rebuild_failed;     /* don't retry a failed rebuild every sync */
  int saved;              /* a map of this generation is in the meta dir */
  uint32_t saved_index;   /* ... at this index (shadow files kept from it) */
  int synced;             /* ... and its name is durable (resync_save) */
  int64_t unsaved;        /* shadow bytes copied since the last save */
  int64_t saved_ns;       /* time_mono_ns of the last save, 0 if none */
  int64_t save_period_ns; /* RESYNC_SAVE_PERIOD_NS (tests change it) */
  /* Frames of the copy round in progress, applied at its end. */
  struct resync_frame *round;
  size_t round_n, round_cap;
};

void resync_init(struct resync *r);
void resync_destroy(struct resync *r);

/* The copy path: one valid frame copied to the shadow... */
void resync_note_frame(struct engine *e, const uint8_t *frame);
/* ...and the end of the round: the first `frames` noted frames were
 * committed to the shadow (0 on failure); the rest are dropped. */
void resync_round_end(struct engine *e, int64_t frames);

/* A new generation: the map is unknown until rebuilt. */
void resync_forget(struct engine *e);
/* Continuity was proven (e->gen/index/shadow_size set, before copying):
 * loads the saved map and brings it to the shadow's end, or schedules a
 * rebuild. */
void resync_load(struct engine *e);
/* After a sync, outside the write lock: rebuilds a missing map, saves it
 * when due (enough bytes copied, and not within save_period_ns of the last
 * save). */
void resync_maintain(struct engine *e);
/* Saves the map now (after an fsync of the shadow WAL). */
void resync_save(struct engine *e);
/* Removes the saved map (a full disk needs its shadow files freed): the
 * next start rebuilds it.  The map in memory stays. */
void resync_drop_saved(struct engine *e);
/* Shadow files from this index on must be kept (UINT32_MAX: no limit). */
uint32_t resync_prune_floor(const struct engine *e);

/* Continuity was lost for `why`.  Tries a resync: returns 0 when done
 * (e->gen and e->index name the last shadow file, the resync segment if
 * one was written; the caller starts the current WAL at e->index + 1);
 * 1 when the local state cannot support one (the reason in unusable, ""
 * when there is no generation at all); or a negative error (e->err). */
int resync_run(struct engine *e, const char *why, char *unusable, size_t ulen);

#endif
