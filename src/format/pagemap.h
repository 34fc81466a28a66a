/*
 * The page map: one 64-bit hash per page of the database as a restore of
 * the replica would produce it at one position (generation, index,
 * offset) of the shadow WAL.  sluice keeps it in the meta directory so
 * that, when continuity of the WAL cannot be proven after a restart (the
 * application checkpointed and restarted the WAL while sluice was down),
 * it can find the pages that changed since that position by hashing the
 * database file, and ship only those (core/resync.c).
 *
 * File <meta>/sluice-pagemap, every integer big-endian:
 *
 *    0  8   magic        "sluicepm"
 *    8  u32 version      1
 *   12  u32 page size    512..65536
 *   16  u32 page count   n: the database size in pages at the position
 *   20  u32 index        shadow WAL index of the position
 *   24  u64 offset       byte offset in that shadow WAL file: the end of a
 *                        commit frame, or 32 (just the header)
 *   32  16  generation   the generation's name, 16 lower-case hex digits
 *   48  u64 inode        of the database file the map was taken from
 *   56  u64 checksum     pagemap_hash(bytes 64.., seed = pagemap_hash(
 *                        bytes 0..55, seed 0))
 *   64  n x u64          hash of page 1, 2, ... n
 *
 * A page hash is XXH64 of the page with seed 0, except that 0 is stored
 * as 1: the value 0 means "unknown" (a page never seen, or one grown into
 * without being written) and never matches a page, so such a page is
 * always shipped.  Invariant relied on: a map is trusted only at exactly
 * the position it names; the map describes the pages there, never a state
 * the replica may not have (core/resync.c saves it only after the shadow
 * WAL is durable up to that position).
 */
#ifndef SLUICE_PAGEMAP_H
#define SLUICE_PAGEMAP_H

#include <stddef.h>
#include <stdint.h>

#include "format/names.h"

#define PAGEMAP_MAGIC "sluicepm"
#define PAGEMAP_VERSION 1
#define PAGEMAP_HEADER_SIZE 64
/* Hard maximum: 2^28 pages (1 TiB at 4 KiB pages, 2 GiB of map). */
#define PAGEMAP_MAX_PAGES (1u << 28)

struct pagemap {
  uint32_t page_size;
  uint32_t n;   /* database size in pages */
  uint32_t cap; /* allocated entries (>= n) */
  uint32_t len; /* entries in use during a transaction (>= n) */
  uint64_t *h;  /* h[p - 1]: hash of page p, 0 if unknown */
  char gen[GEN_LEN + 1];
  uint32_t index;
  int64_t offset;
  uint64_t ino;
};

/* XXH64 (https://github.com/Cyan4973/xxHash, XXH64 specification). */
uint64_t pagemap_xxh64(const void *p, size_t len, uint64_t seed);
/* The hash stored for one page: never 0. */
uint64_t pagemap_hash(const uint8_t *page, uint32_t page_size);

void pagemap_init(struct pagemap *m, uint32_t page_size);
void pagemap_destroy(struct pagemap *m);
/* Drops every entry: the database is empty / unknown. */
void pagemap_clear(struct pagemap *m);
/* Records that page pgno (1-based) now has hash h.  Returns 0 or
 * ERR_TOO_BIG beyond PAGEMAP_MAX_PAGES. */
int pagemap_set(struct pagemap *m, uint32_t pgno, uint64_t h);
/* A commit frame: the database now has npages pages; entries beyond are
 * dropped and pages grown into without a write are unknown. */
int pagemap_commit(struct pagemap *m, uint32_t npages);

/* Serializes into a new buffer of *len bytes (returns owned memory). */
uint8_t *pagemap_encode(const struct pagemap *m, size_t *len);
/* Parses a file's contents into m (initialized or not; replaced).  Returns
 * 0, or ERR_CORRUPT with a one-line reason in err. */
int pagemap_decode(const uint8_t *data, size_t len, struct pagemap *m,
                   char *err, size_t errlen);

#endif
