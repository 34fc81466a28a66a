/* WAL header and frames: parse the header, then scan every frame that
 * follows (salts and the checksum chain).  When the first byte is odd the
 * input is "repaired" first (magic, header checksum, then salts and
 * checksums of a prefix of its frames), so the fuzzer reaches the frame
 * scanner past checks it could not satisfy by chance. */
#include "base/util.h"
#include "format/wal.h"
#include "fuzz.h"

static void repair(uint8_t *p, size_t size, unsigned good_frames) {
  int be = p[3] & 1;
  put_be32(p, be ? WAL_MAGIC_BE : WAL_MAGIC_LE);
  put_be32(p + 4, 3007000);
  uint32_t ps = 512u << (p[9] % 8);
  put_be32(p + 8, ps == 65536 ? 1 : ps);
  uint32_t s0 = 0, s1 = 0;
  wal_checksum(be, p, 24, &s0, &s1);
  put_be32(p + 24, s0);
  put_be32(p + 28, s1);
  int64_t fs = wal_frame_size(ps);
  for (int64_t off = WAL_HEADER_SIZE; off + fs <= (int64_t)size && good_frames;
       off += fs, good_frames--) {
    uint8_t *f = p + off;
    if (!get_be32(f))
      put_be32(f, 1);         /* page 0 does not exist */
    memcpy(f + 8, p + 16, 8); /* salts */
    wal_checksum(be, f, 8, &s0, &s1);
    wal_checksum(be, f + WAL_FRAME_HEADER_SIZE, ps, &s0, &s1);
    put_be32(f + 16, s0);
    put_be32(f + 20, s1);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 + WAL_HEADER_SIZE || size > (1 << 20))
    return 0;
  int fix = data[0] & 1;
  unsigned good = data[0] >> 1;
  data++;
  size--;
  uint8_t *p = malloc(size);
  memcpy(p, data, size);
  if (fix)
    repair(p, size, good);
  struct wal_header h;
  if (wal_header_parse(p, &h)) {
    FUZZ_ASSERT(!fix);
    free(p);
    return 0;
  }
  FUZZ_ASSERT(h.page_size >= 512 && h.page_size <= 65536);
  FUZZ_ASSERT((h.page_size & (h.page_size - 1)) == 0);
  int64_t fs = wal_frame_size(h.page_size);
  struct wal_scan sc;
  wal_scan_init(&sc, &h);
  int64_t off = WAL_HEADER_SIZE;
  unsigned n = 0;
  while (off + fs <= (int64_t)size) {
    struct wal_frame_header f;
    wal_frame_header_parse(p + off, &f);
    if (!wal_scan_frame(&sc, p + off))
      break;
    off += fs;
    n++;
    FUZZ_ASSERT(sc.end == off);
  }
  if (fix)
    FUZZ_ASSERT(n >= MIN(good, (unsigned)((size - WAL_HEADER_SIZE) / fs)));
  FUZZ_ASSERT(sc.commit_end <= sc.end);
  FUZZ_ASSERT(wal_frame_align((int64_t)size, h.page_size) <= (int64_t)size);
  free(p);
  return 0;
}
