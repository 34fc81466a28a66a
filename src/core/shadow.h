/*
 * The local meta directory (spec 1.3), identical to Litestream 0.3's so a
 * host can swap binaries and carry on in the same generation:
 *
 *   <dir>/.<db>-litestream/generation                 "<gen>\n"
 *   <dir>/.<db>-litestream/generations/<gen>/wal/<IDX>.wal
 *   <dir>/.<db>-litestream/sluice-stopped                (sluice only)
 *   <dir>/.<db>-litestream/sluice-pagemap                (sluice only,
 * resync.h)
 *
 * A shadow WAL file is a byte copy of one lifetime of the real -wal
 * (between two WAL restarts): the 32-byte header SQLite wrote for that
 * lifetime, then whole frames of committed transactions only, so its
 * checksum chain is valid and it always ends on a commit boundary.  A
 * resync's file (resync.h) is a lifetime sluice wrote itself, in the same
 * format: SQLite's header and frames, just not a copy of a real -wal.
 * These functions do blocking I/O: call them off the loop thread.
 */
#ifndef SLUICE_SHADOW_H
#define SLUICE_SHADOW_H

#include <stdint.h>

#include "format/names.h"
#include "format/wal.h"

/* Reads the generation file; returns 0 and fills gen if it holds a valid
 * generation name, ERR_NO_GENERATION otherwise. */
int shadow_read_generation(const char *meta, char gen[GEN_LEN + 1]);
int shadow_write_generation(const char *meta, const char *gen);
int shadow_remove_generation_file(const char *meta);

/* Owned path strings. */
char *shadow_gen_dir(const char *meta, const char *gen);
char *shadow_wal_dir(const char *meta, const char *gen);
char *shadow_wal_path(const char *meta, const char *gen, uint32_t index);

/* Highest shadow WAL index of a generation; ERR_NOT_FOUND if none. */
int shadow_max_index(const char *meta, const char *gen, uint32_t *index);
/* Deletes every generations/<g> except `keep`, and every *.tmp file. */
int shadow_clean(const char *meta, const char *keep);
/* Deletes shadow files of `gen` with index < below. */
int shadow_prune(const char *meta, const char *gen, uint32_t below);
/* A full disk: frees the blocks of the shadow files of `gen` with index <
 * below (every replica has them), keeping their size, which is all that a
 * replica resuming at their end checks.  Returns the bytes freed. */
int shadow_release(const char *meta, const char *gen, uint32_t below);

/* State of a shadow file after validating it end to end. */
struct shadow_state {
  struct wal_header hdr;
  int64_t size;    /* bytes up to the last commit frame */
  uint32_t s0, s1; /* checksum chain at `size` */
  uint8_t last_frame_hdr[WAL_FRAME_HEADER_SIZE]; /* valid if size > 32 */
};
/* Scans a shadow file: header, checksum chain, commit boundary.  A torn
 * tail (a kill -9 during an append) is cut back to the last commit frame.
 * Returns 0, or an error if the header is unreadable or invalid. */
int shadow_load(const char *path, struct shadow_state *out);

/* The record of a clean stop ("sluice-stopped", one line of text):
 *   v1 GEN INDEX SIZE DEV INO DB_SIZE MTIME_NS CTIME_NS
 * Written by the last act of a clean stop, when the database file held
 * exactly the state at the end of shadow file INDEX (SIZE bytes): the WAL
 * was fully checkpointed and nothing could write the database file while
 * the record was taken (the pin on read-mark 0 and the checkpoint lock were
 * held) and until the clock had moved past its mtime.  If at the next start
 * the database file has the same identity, size and times, nothing was
 * checkpointed into it meanwhile, so no committed frame was lost whatever
 * became of the WAL (restarted, truncated, or deleted by the last
 * connection to close): the generation continues at INDEX + 1.  Removed at
 * start-up, so a record never outlives the stop it describes. */
struct shadow_stop {
  char gen[GEN_LEN + 1];
  uint32_t index;
  int64_t size;
  uint64_t dev, ino;
  int64_t db_size, mtime_ns, ctime_ns;
};
#define SHADOW_STOP_FILE "sluice-stopped"
int shadow_write_stop(const char *meta, const struct shadow_stop *st);
/* Reads the record and removes it; ERR_NOT_FOUND when there is none (or it
 * cannot be parsed). */
int shadow_take_stop(const char *meta, struct shadow_stop *out);
/* The same without removing it (a start straight into sleep keeps it: it
 * still describes the state the sleeper relies on, engine.h). */
int shadow_read_stop(const char *meta, struct shadow_stop *out);

/* The shadow WAL writer.  These take the engine (engine.h) of the running
 * job and write its shadow file: e->shadow_fd, e->shadow_size and the
 * checksum chain at it (s0, s1, last_frame_hdr) advance only here, and only
 * to a commit boundary.  Errors go to e->err. */
struct engine;
/* Appends committed frames from the real WAL, starting at shadow_size,
 * checking salts and the checksum chain.  With a full disk, only scans
 * them (engine.h: disk_full) and tries writing again once a second. */
int shadow_copy_frames(struct engine *e);
/* A shadow write failed with ENOSPC or EDQUOT: enter (or stay in) the
 * full-disk state of engine.h (logs once when entering). */
void shadow_disk_full(struct engine *e);
/* Opens shadow file e->index of e->gen (creating it when create). */
int shadow_open_current(struct engine *e, int create);
/* Starts shadow file e->index with the header in e->hdr_raw. */
int shadow_start_index(struct engine *e);
/* fdatasync of the shadow file if anything was appended since. */
int shadow_fsync(struct engine *e);

#endif
