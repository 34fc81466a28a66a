/* WAL header and frames: parse the header, then scan every frame that
 * follows (salts and the checksum chain). */
#include "format/wal.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < WAL_HEADER_SIZE)
    return 0;
  struct wal_header h;
  if (wal_header_parse(data, &h))
    return 0;
  FUZZ_ASSERT(h.page_size >= 512 && h.page_size <= 65536);
  FUZZ_ASSERT((h.page_size & (h.page_size - 1)) == 0);
  int64_t fs = wal_frame_size(h.page_size);
  struct wal_scan sc;
  wal_scan_init(&sc, &h);
  int64_t off = WAL_HEADER_SIZE;
  while (off + fs <= (int64_t)size) {
    struct wal_frame_header f;
    wal_frame_header_parse(data + off, &f);
    if (!wal_scan_frame(&sc, data + off))
      break;
    off += fs;
    FUZZ_ASSERT(sc.end == off);
  }
  FUZZ_ASSERT(sc.commit_end <= sc.end);
  FUZZ_ASSERT(wal_frame_align((int64_t)size, h.page_size) <= (int64_t)size);
  return 0;
}
