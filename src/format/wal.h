/*
 * SQLite WAL format (https://sqlite.org/fileformat.html#the_write_ahead_log)
 *
 * Header, 32 bytes, every field a big-endian u32:
 *    0  magic        0x377f0682 (checksums over little-endian words) or
 *                    0x377f0683 (big-endian words)
 *    4  version      3007000
 *    8  page size    512..32768, or 1 meaning 65536
 *   12  checkpoint sequence number (incremented on every WAL restart)
 *   16  salt-1       incremented on every restart
 *   20  salt-2       random on every restart
 *   24  checksum-1   over bytes 0..23
 *   28  checksum-2
 *
 * Frame = 24-byte header + one page:
 *    0  page number
 *    4  database size in pages after commit; non-zero only on the last
 *       frame of a transaction (a "commit frame")
 *    8  salt-1, 12 salt-2   copied from the WAL header
 *   16  checksum-1, 20 checksum-2: cumulative over the WAL header and every
 *       earlier frame, then this frame's bytes 0..7 and its page
 *
 * Invariants relied on: a frame is valid only if its salts equal the
 * header's and its checksum continues the chain; a WAL restart changes the
 * salts, so stale frames from an earlier lifetime never validate; only
 * frames up to the last commit frame belong to committed transactions.
 */
#ifndef SLUICE_WAL_H
#define SLUICE_WAL_H

#include <stddef.h>
#include <stdint.h>

#define WAL_HEADER_SIZE 32
#define WAL_FRAME_HEADER_SIZE 24
#define WAL_MAGIC_LE 0x377f0682u
#define WAL_MAGIC_BE 0x377f0683u

struct wal_header {
  uint32_t magic;
  uint32_t version;
  uint32_t page_size; /* decoded: 65536 for the value 1 */
  uint32_t ckpt_seq;
  uint32_t salt1;
  uint32_t salt2;
  uint32_t cksum1;
  uint32_t cksum2;
  int big_endian; /* checksum word order */
};

struct wal_frame_header {
  uint32_t pgno;
  uint32_t commit; /* db size after commit, 0 if not a commit frame */
  uint32_t salt1;
  uint32_t salt2;
  uint32_t cksum1;
  uint32_t cksum2;
};

/* Parses and validates a header (magic, page size, header checksum).
 * Returns 0 or ERR_WAL_HEADER. */
int wal_header_parse(const uint8_t b[WAL_HEADER_SIZE], struct wal_header *h);
void wal_frame_header_parse(const uint8_t b[WAL_FRAME_HEADER_SIZE],
                            struct wal_frame_header *f);

/* SQLite's WAL checksum: continues (*s0, *s1) over n bytes (n % 8 == 0). */
void wal_checksum(int big_endian, const uint8_t *p, size_t n, uint32_t *s0,
                  uint32_t *s1);

static inline int64_t wal_frame_size(uint32_t page_size) {
  return WAL_FRAME_HEADER_SIZE + (int64_t)page_size;
}
/* Size of a WAL with n frames. */
static inline int64_t wal_size_for(uint32_t page_size, int64_t n) {
  return WAL_HEADER_SIZE + n * wal_frame_size(page_size);
}
/* Rounds a size down to a frame boundary (spec 1.4 frameAlign). */
int64_t wal_frame_align(int64_t size, uint32_t page_size);

/* Incremental validation of a stream of frames belonging to one WAL
 * lifetime.  Feed frames in order; the scanner verifies salts and the
 * checksum chain and remembers the end of the last commit frame. */
struct wal_scan {
  struct wal_header hdr;
  uint32_t s0, s1;    /* running checksum after the last valid frame */
  int64_t end;        /* byte offset after the last valid frame */
  int64_t commit_end; /* byte offset after the last valid commit frame */
  uint32_t commit_s0, commit_s1; /* checksum as of commit_end */
  uint32_t db_pages;             /* database size from the last commit frame */
};
/* Starts a scan at the header (end = 32). */
void wal_scan_init(struct wal_scan *s, const struct wal_header *h);
/* Starts a scan that resumes after `offset` bytes whose last frame carried
 * checksum (s0, s1). */
void wal_scan_resume(struct wal_scan *s, const struct wal_header *h,
                     int64_t offset, uint32_t s0, uint32_t s1);
/* Checks one frame (header + page, wal_frame_size bytes).  Returns 1 if it
 * is valid and was consumed, 0 if it is not part of this lifetime (salt or
 * checksum mismatch: the scan stops there). */
int wal_scan_frame(struct wal_scan *s, const uint8_t *frame);

#endif
