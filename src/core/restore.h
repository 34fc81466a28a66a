/*
 * Restore (spec 4): rebuild a database from a replica's snapshot and WAL
 * segments.  Used by the `restore` command and, later, by validation.
 *
 * Differences from Litestream 0.3.13, on purpose:
 *  - a -timestamp later than the last upload restores the latest state
 *    (Litestream: "no matching backups found");
 *  - stray segments with an index below the chosen snapshot are ignored;
 *  - segments must be contiguous: within an index the first starts at
 *    offset 0 and each next one at the previous offset plus its
 *    decompressed length; every index from the snapshot's to the last one
 *    must be present.  Every frame's salts and checksum chain are verified
 *    and each index must end on a commit frame.  Anything missing, corrupt
 *    or out of place is an error naming the object, never a silently
 *    shorter database;
 *  - the result must pass PRAGMA integrity_check; no -wal/-shm is left
 *    behind; the output is 0600 and appears only when complete (nothing is
 *    left behind on failure).
 *
 * Everything is asynchronous on the loop: downloads through the backend,
 * LZ4 decoding and SQLite work on the thread pool.  Memory stays bounded:
 * large objects stream through a few fixed-size ranges.
 */
#ifndef SLUICE_RESTORE_H
#define SLUICE_RESTORE_H

#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"
#include "format/names.h"

struct restore_opts {
  const char *db;         /* database path for log lines, or NULL */
  const char *generation; /* restrict to one generation, or NULL */
  int has_index;
  uint32_t index; /* last WAL index to apply (with has_index) */
  int has_offset;
  int64_t offset; /* with has_index: stop index `index` at this byte offset
                     (a segment boundary); used by validation */
  int has_timestamp;
  int64_t timestamp_ns; /* point in time (with has_timestamp) */
  int parallelism;      /* WAL indexes downloaded at once; < 1 means 1 */
  int integrity;        /* enum restore_integrity */
  int replay_sqlite;    /* apply each WAL index through SQLite checkpoints,
                           frame by frame (tests: the reference) */
  int64_t memory; /* bytes for the WAL pages of the indexes fetched at once
                     (past it they go to staging files); 0: 64 MiB */
};
#define RESTORE_MEMORY_DEFAULT (64LL << 20)

/* The check of the restored file: AUTO is the full integrity_check up to
 * RESTORE_QUICK_ABOVE bytes and quick_check (no index contents checked
 * against their tables) above, FULL and QUICK force one, OFF skips it. */
enum restore_integrity {
  RESTORE_INTEGRITY_AUTO,
  RESTORE_INTEGRITY_FULL,
  RESTORE_INTEGRITY_QUICK,
  RESTORE_INTEGRITY_OFF
};
#define RESTORE_QUICK_ABOVE (1LL << 30)

/* status is 0 or a negative code; err is a one-line message (valid only
 * during the callback). */
typedef void (*restore_cb)(void *arg, int status, const char *err);

struct restore_target {
  size_t replica; /* index into the backends given to restore_choose */
  char gen[GEN_LEN + 1];
  int64_t start_ns, end_ns; /* the generation's time bounds */
};

/* Chooses the replica and generation to restore (spec 4.1): among the
 * generations (only o->generation if set) whose first upload is not after
 * o->timestamp_ns, the one with the latest last upload; a tie goes to the
 * greater generation name (the later one, for names from gen_new), and
 * then to the earlier replica.  Fails with ERR_NO_BACKUPS ("no matching
 * backups found") when nothing matches.  `out` is written on success. */
void restore_choose(struct backend *const *backends, size_t n,
                    const struct restore_opts *o, struct restore_target *out,
                    restore_cb cb, void *arg);
int restore_choose_sync(struct backend *const *backends, size_t n,
                        const struct restore_opts *o,
                        struct restore_target *out, char *err, size_t errlen);

/* Restores generation `gen` of replica b into out_path, which must not
 * exist (ERR_EXISTS: "cannot restore, output path already exists: PATH").
 * Parent directories are created.  Works in out_path.tmp (and
 * out_path.tmp-<index>-wal staging files) and renames into place at the
 * end.  `o` and the strings are copied; b must outlive the restore.
 * The handle is valid until cb. */
struct restore;
struct restore *restore_run(struct backend *b, const char *gen,
                            const struct restore_opts *o, const char *out_path,
                            restore_cb cb, void *arg);
/* Ends a restore early: cb follows (ERR_CANCELED, its files removed) once
 * what is in flight has come back, never from inside this call.  Only
 * between restore_run and cb (the handle is freed before cb). */
void restore_cancel(struct restore *rs);
int restore_run_sync(struct backend *b, const char *gen,
                     const struct restore_opts *o, const char *out_path,
                     char *err, size_t errlen);

#endif
