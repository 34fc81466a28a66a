#include <stdlib.h>

#include "base/util.h"
#include "format/names.h"
#include "format/wal.h"
#include "t.h"

TEST(names) {
  char *k = key_wal_segment("0123456789abcdef", 0x3e8, 0x3e9);
  CHECK_STR(k, "generations/0123456789abcdef/wal/000003e8_000003e9.wal.lz4");
  free(k);
  k = key_snapshot("0123456789abcdef", 1000);
  CHECK_STR(k, "generations/0123456789abcdef/snapshots/000003e8.snapshot.lz4");
  free(k);
  uint32_t idx;
  int64_t off;
  CHECK_INT(parse_wal_segment_name("00000001_00001000.wal.lz4", &idx, &off), 0);
  CHECK_INT(idx, 1);
  CHECK_INT(off, 4096);
  /* Offsets past 4 GiB need more than 8 digits: accepted when read. */
  CHECK_INT(parse_wal_segment_name("00000001_100000000.wal.lz4", &idx, &off),
            0);
  CHECK_INT(off, 0x100000000LL);
  CHECK(parse_wal_segment_name("00000001.wal.lz4", &idx, &off) != 0);
  CHECK(parse_wal_segment_name("0000000G_00000000.wal.lz4", &idx, &off) != 0);
  CHECK_INT(parse_snapshot_name("0000000a.snapshot.lz4", &idx), 0);
  CHECK_INT(idx, 10);
  CHECK(parse_snapshot_name("0000000A.snapshot.lz4", &idx) != 0);
  CHECK(gen_is_valid("0123456789abcdef"));
  CHECK(!gen_is_valid("0123456789ABCDEF"));
  CHECK(!gen_is_valid("0123456789abcde"));
  struct pos p = {"9ed130e36a449e5a", 0x14, 0};
  char s[48];
  pos_format(&p, s);
  CHECK_STR(s, "9ed130e36a449e5a/00000014:0");
}

TEST(meta_dir) {
  char *m = meta_dir_path("/data/app.db", NULL);
  CHECK_STR(m, "/data/.app.db-litestream");
  free(m);
  m = meta_dir_path("/app.db", NULL);
  CHECK_STR(m, "/.app.db-litestream");
  free(m);
  m = meta_dir_path("/data/app.db", "/var/lib/meta");
  CHECK_STR(m, "/var/lib/meta");
  free(m);
}

int main(void) {
  RUN(names);
  RUN(meta_dir);
  T_DONE();
}
