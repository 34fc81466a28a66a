/*
 * The snapshot image: the database as of the end of the current shadow
 * WAL file, written LZ4-compressed.
 *
 * The database file alone is not a consistent database in the middle of a
 * WAL lifetime.  A PASSIVE checkpoint stopped by a reader (our pin or an
 * application's read transaction) copies, for each page, its latest frame
 * only if that frame is below the reader: a page rewritten after the
 * reader is left at its older version while the other pages of the same
 * transaction are copied.  The file then mixes two states, e.g. page 1
 * saying the database has 48 pages while page 48 (written by the same
 * transaction, and again by a later one) is not in the file yet: 47 pages,
 * failing integrity_check, though SQLite itself never notices (it reads
 * those pages from the WAL).
 *
 * Every frame that any checkpoint of the current lifetime may have copied
 * into the file lies at or below our pin, and every frame below the pin is
 * in the shadow file (engine.h).  So the file with, for each page, its
 * latest frame of the shadow file laid over it, cut to the size of the
 * last commit, is exactly the database at the shadow's end: consistent on
 * its own, and replaying the index's WAL from offset 0 onto it (spec: a
 * snapshot of index N is restored by replaying WAL index N from 0) still
 * ends at every later position.
 *
 * Blocking I/O, proportional to the database: a pool thread only.
 */
#ifndef SLUICE_SNAPSHOT_H
#define SLUICE_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "format/wal.h"

struct snapshot_src {
  int db_fd;
  int shadow_fd;         /* the current shadow file, or -1 (no frames) */
  int64_t shadow_size;   /* committed bytes in it (a commit boundary) */
  struct wal_header hdr; /* its header (salts, page size) */
  uint32_t page_size;    /* the database's, when there are no frames */
};

/* Writes the image to out_fd; *out_len gets the compressed size and
 * *pages the page count.  Errors (the file shorter than a page the image
 * needs, a frame of another lifetime, the in-header database size not
 * matching the image) go to err. */
int snapshot_write(const struct snapshot_src *src, int out_fd, int64_t *out_len,
                   int64_t *pages, char *err, size_t errlen);

#endif
