/* Object names: snapshot, WAL segment, shadow WAL and generation keys; a
 * parsed name formats back to the same key. */
#include <inttypes.h>
#include <stdio.h>

#include "format/names.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 512)
    return 0;
  char *s = fuzz_str(data, size);
  uint32_t index;
  int64_t offset;
  if (!parse_snapshot_name(s, &index)) {
    char *k = key_snapshot("0123456789abcdef", index);
    FUZZ_ASSERT(strstr(k, "/snapshots/") != NULL);
    free(k);
  }
  if (!parse_wal_segment_name(s, &index, &offset)) {
    FUZZ_ASSERT(offset >= 0);
    char *k = key_wal_segment("0123456789abcdef", index, offset);
    const char *base = strrchr(k, '/') + 1;
    uint32_t i2;
    int64_t o2;
    FUZZ_ASSERT(!parse_wal_segment_name(base, &i2, &o2));
    FUZZ_ASSERT(i2 == index && o2 == offset);
    free(k);
  }
  parse_shadow_wal_name(s, &index);
  char gen[GEN_LEN + 1];
  if (!parse_generation_key(s, gen))
    FUZZ_ASSERT(gen_is_valid(gen));
  gen_is_valid(s);
  free(meta_dir_path(size ? s : "x.db", size > 3 && s[0] == '/' ? s : NULL));
  free(s);
  return 0;
}
