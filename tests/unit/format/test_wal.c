/*
 * WAL header/frame parsing and the checksum chain (spec 1.4): Litestream's
 * checksum vectors, and a real WAL written by SQLite, which the scanner must
 * accept frame by frame and reject once a byte is flipped.
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/util.h"
#include "format/wal.h"
#include "t.h"

static void unhex(const char *s, uint8_t *out) {
  for (size_t i = 0; s[2 * i]; i++) {
    unsigned v;
    sscanf(s + 2 * i, "%2x", &v);
    out[i] = (uint8_t)v;
  }
}

/* The 4096-byte page of Litestream's TestChecksum: zeros except these. */
static void litestream_page(uint8_t page[4096]) {
  static const struct {
    int off;
    uint8_t v;
  } nz[] = {
      {0, 0x0d},    {4, 0x08},    {5, 0x0f},    {6, 0xe0},    {8, 0x0f},
      {9, 0xfc},    {10, 0x0f},   {11, 0xf8},   {12, 0x0f},   {13, 0xf4},
      {14, 0x0f},   {15, 0xf0},   {16, 0x0f},   {17, 0xec},   {18, 0x0f},
      {19, 0xe8},   {20, 0x0f},   {21, 0xe4},   {22, 0x0f},   {23, 0xe0},
      {4064, 0x02}, {4065, 0x08}, {4066, 0x02}, {4067, 0x09}, {4068, 0x02},
      {4069, 0x07}, {4070, 0x02}, {4071, 0x09}, {4072, 0x02}, {4073, 0x06},
      {4074, 0x02}, {4075, 0x09}, {4076, 0x02}, {4077, 0x05}, {4078, 0x02},
      {4079, 0x09}, {4080, 0x02}, {4081, 0x04}, {4082, 0x02}, {4083, 0x09},
      {4084, 0x02}, {4085, 0x03}, {4086, 0x02}, {4087, 0x09}, {4088, 0x02},
      {4089, 0x02}, {4090, 0x02}, {4091, 0x09}, {4092, 0x02}, {4093, 0x01},
      {4094, 0x02}, {4095, 0x09},
  };
  memset(page, 0, 4096);
  for (size_t i = 0; i < ARRAY_SIZE(nz); i++)
    page[nz[i].off] = nz[i].v;
}

TEST(checksum_vectors_from_litestream) {
  uint8_t hdr[24], fh[8], page[4096];
  unhex("377f0682002de218000010000000000052382eac857b1a4e", hdr);
  unhex("0000000200000002", fh);
  litestream_page(page);
  uint32_t s0 = 0, s1 = 0;
  wal_checksum(0, hdr, sizeof(hdr), &s0, &s1);
  CHECK_INT(s0, 0x81153b65u);
  CHECK_INT(s1, 0x87178e8fu);
  wal_checksum(0, fh, sizeof(fh), &s0, &s1);
  wal_checksum(0, page, sizeof(page), &s0, &s1);
  CHECK_INT(s0, 0xdc2f3e84u);
  CHECK_INT(s1, 0x540488d3u);
}

static void make_header(uint8_t b[32], uint32_t magic, uint32_t page_size) {
  memset(b, 0, 32);
  put_be32(b, magic);
  put_be32(b + 4, 3007000);
  put_be32(b + 8, page_size);
  put_be32(b + 12, 0);
  put_be32(b + 16, 0x11223344);
  put_be32(b + 20, 0x55667788);
  uint32_t s0 = 0, s1 = 0;
  wal_checksum(magic == WAL_MAGIC_BE, b, 24, &s0, &s1);
  put_be32(b + 24, s0);
  put_be32(b + 28, s1);
}

TEST(header_validation) {
  uint8_t b[32];
  struct wal_header h;
  make_header(b, WAL_MAGIC_LE, 4096);
  CHECK_INT(wal_header_parse(b, &h), 0);
  CHECK_INT(h.page_size, 4096);
  CHECK_INT(h.big_endian, 0);
  CHECK_INT(h.salt1, 0x11223344u);
  make_header(b, WAL_MAGIC_BE, 1); /* 1 means 65536 */
  CHECK_INT(wal_header_parse(b, &h), 0);
  CHECK_INT(h.page_size, 65536);
  CHECK_INT(h.big_endian, 1);
  make_header(b, WAL_MAGIC_LE, 4096);
  b[31] ^= 1; /* header checksum */
  CHECK_INT(wal_header_parse(b, &h), ERR_WAL_HEADER);
  make_header(b, 0x377f0684u, 4096);
  CHECK_INT(wal_header_parse(b, &h), ERR_WAL_HEADER);
  make_header(b, WAL_MAGIC_LE, 1000); /* not a power of two */
  CHECK_INT(wal_header_parse(b, &h), ERR_WAL_HEADER);
  make_header(b, WAL_MAGIC_LE, 256); /* too small */
  CHECK_INT(wal_header_parse(b, &h), ERR_WAL_HEADER);
}

TEST(frame_align_and_sizes) {
  CHECK_INT(wal_frame_size(4096), 4120);
  CHECK_INT(wal_size_for(4096, 0), 32);
  CHECK_INT(wal_size_for(4096, 4), 32 + 4 * 4120);
  CHECK_INT(wal_frame_align(0, 4096), 0);
  CHECK_INT(wal_frame_align(31, 4096), 0);
  CHECK_INT(wal_frame_align(32, 4096), 32);
  CHECK_INT(wal_frame_align(32 + 4119, 4096), 32);
  CHECK_INT(wal_frame_align(32 + 4120, 4096), 32 + 4120);
  CHECK_INT(wal_frame_align(32 + 2 * 4120 + 7, 4096), 32 + 2 * 4120);
  CHECK_INT(wal_frame_align(32 + 1048, 1024), 32 + 1048);
}

/* Writes a WAL with SQLite and returns it (the connection stays open with
 * checkpoints off, so the -wal file is complete). */
static int real_wal(const char *dir, int page_size, struct buf *out) {
  char *path = xasprintf("%s/w.db", dir);
  char *walp = xasprintf("%s/w.db-wal", dir);
  sqlite3 *db;
  int rc = sqlite3_open(path, &db);
  char sql[256];
  snprintf(sql, sizeof(sql),
           "PRAGMA page_size=%d; PRAGMA journal_mode=WAL;"
           "PRAGMA wal_autocheckpoint=0;"
           "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
           page_size);
  if (!rc)
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  for (int i = 0; i < 20 && !rc; i++)
    rc = sqlite3_exec(db,
                      "INSERT INTO t(v) SELECT hex(randomblob(300)) FROM "
                      "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT "
                      "x+1 FROM c WHERE x<10) SELECT x FROM c)",
                      NULL, NULL, NULL);
  if (!rc)
    rc = file_read_all(walp, 0, out);
  sqlite3_close(db);
  free(path);
  free(walp);
  return rc;
}

TEST(scan_accepts_real_wal_and_rejects_flipped_byte) {
  char dir[] = "/tmp/sluice-wal.XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  int sizes[] = {1024, 4096, 65536};
  for (size_t k = 0; k < ARRAY_SIZE(sizes); k++) {
    struct buf w;
    char *sub = xasprintf("%s/%d", dir, sizes[k]);
    mkdir(sub, 0700);
    CHECK_INT(real_wal(sub, sizes[k], &w), 0);
    struct wal_header h;
    CHECK_INT(wal_header_parse(w.data, &h), 0);
    CHECK_INT(h.page_size, sizes[k]);
    int64_t fs = wal_frame_size(h.page_size);
    CHECK_INT((w.len - 32) % fs, 0);
    int64_t nframes = (int64_t)(w.len - 32) / fs;
    CHECK(nframes >= 21);
    struct wal_scan s;
    wal_scan_init(&s, &h);
    int64_t accepted = 0;
    for (int64_t i = 0; i < nframes; i++)
      accepted += wal_scan_frame(&s, w.data + 32 + i * fs);
    CHECK_INT(accepted, nframes);
    CHECK_INT(s.end, (int64_t)w.len);
    CHECK_INT(s.commit_end, (int64_t)w.len);
    CHECK(s.db_pages > 0);

    /* Flip one byte of the page of frame 5: frames 0..4 pass, 5 fails. */
    w.data[32 + 5 * fs + 24 + 100] ^= 0x40;
    wal_scan_init(&s, &h);
    int64_t i = 0;
    while (i < nframes && wal_scan_frame(&s, w.data + 32 + i * fs))
      i++;
    CHECK_INT(i, 5);
    CHECK_INT(s.end, 32 + 5 * fs);
    w.data[32 + 5 * fs + 24 + 100] ^= 0x40;

    /* A frame header with other salts is not part of this lifetime. */
    w.data[32 + 2 * fs + 8] ^= 1;
    wal_scan_init(&s, &h);
    i = 0;
    while (i < nframes && wal_scan_frame(&s, w.data + 32 + i * fs))
      i++;
    CHECK_INT(i, 2);
    w.data[32 + 2 * fs + 8] ^= 1;

    /* Resuming after frame 3 with its checksum continues the chain. */
    wal_scan_init(&s, &h);
    for (i = 0; i < 3; i++)
      wal_scan_frame(&s, w.data + 32 + i * fs);
    struct wal_scan r;
    wal_scan_resume(&r, &h, s.end, s.s0, s.s1);
    CHECK_INT(wal_scan_frame(&r, w.data + 32 + 3 * fs), 1);
    buf_destroy(&w);
    free(sub);
  }
  rm_rf(dir);
}

int main(void) {
  RUN(checksum_vectors_from_litestream);
  RUN(header_validation);
  RUN(frame_align_and_sizes);
  RUN(scan_accepts_real_wal_and_rejects_flipped_byte);
  T_DONE();
}
