/*
 * LZ4 frames (spec 1.2): round trips, Litestream's exact header bytes,
 * frames made by the lz4 CLI with other options, the empty uncompressed
 * last block pierrec/lz4 writes, and truncated or corrupt frames.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "format/lz4enc.h"
#include "format/lz4frame.h"
#include "base/util.h"
#include "t.h"

static char g_dir[] = "/tmp/sluice-lz4.XXXXXX";

/* Half compressible text, half noise, so blocks take both encodings. */
static uint8_t *sample(size_t n) {
  uint8_t *p = xmalloc(n ? n : 1);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = (i / 4096) % 2 ? (uint8_t)x : (uint8_t)("sluice "[i % 7]);
  }
  return p;
}

static int decode(const uint8_t *src, size_t n, struct buf *out) {
  buf_init(out, 0);
  return lz4_decompress(src, n, out);
}

TEST(round_trip_sizes) {
  size_t sizes[] = {0, 1, 100, 65536, 4u << 20, (4u << 20) + 1, 9u << 20};
  for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
    uint8_t *in = sample(sizes[i]);
    struct buf c, d;
    buf_init(&c, 0);
    CHECK_INT(lz4_compress(in, sizes[i], &c), 0);
    CHECK_INT(decode(c.data, c.len, &d), 0);
    CHECK_INT(d.len, sizes[i]);
    CHECK(sizes[i] == 0 || !memcmp(d.data, in, sizes[i]));
    buf_destroy(&c);
    buf_destroy(&d);
    free(in);
  }
}

TEST(litestream_header_bytes) {
  static const uint8_t want[7] = {0x04, 0x22, 0x4D, 0x18, 0x64, 0x70, 0xB9};
  struct buf c;
  buf_init(&c, 0);
  CHECK_INT(lz4_compress((const uint8_t *)"hello", 5, &c), 0);
  CHECK(c.len > 7 && !memcmp(c.data, want, 7));
  buf_destroy(&c);
  /* The fd compressor writes the same header. */
  char *in = xasprintf("%s/hdr.in", g_dir),
       *out = xasprintf("%s/hdr.lz4", g_dir);
  int ifd = open(in, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int ofd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
  CHECK_INT(write_full(ifd, "hello", 5), 0);
  int64_t olen = 0;
  CHECK_INT(lz4_compress_fd(ifd, 0, 5, ofd, &olen), 0);
  uint8_t got[7];
  CHECK_INT(pread(ofd, got, 7, 0), 7);
  CHECK(!memcmp(got, want, 7));
  close(ifd);
  close(ofd);
  free(in);
  free(out);
}

/* Compresses a sample with the lz4 CLI and the given options. */
static int cli_frame(const char *opts, const uint8_t *in, size_t n,
                     struct buf *out) {
  char *src = xasprintf("%s/cli.in", g_dir);
  char *dst = xasprintf("%s/cli.lz4", g_dir);
  int rc = -1;
  int fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd >= 0 && !write_full(fd, in, n)) {
    close(fd);
    char *cmd = xasprintf("lz4 -q -f %s %s %s", opts, src, dst);
    if (system(cmd) == 0)
      rc = file_read_all(dst, 0, out);
    free(cmd);
  }
  free(src);
  free(dst);
  return rc;
}

/* Inputs shaped to hit the block format's edge rules: runs, repeats at
 * every distance up to and past 64 KiB, and matches ending near the last
 * literals, at every small size.  liblz4 decodes each one. */
static uint8_t *shaped(size_t n, uint32_t seed) {
  uint8_t *p = xmalloc(n ? n : 1);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    x = x * 1103515245u + 12345u;
    unsigned mode = (x >> 28) & 3;
    if (mode == 0 && i >= 70000)
      p[i] = p[i - 70000]; /* out of the window */
    else if (mode == 1 && i >= 5)
      p[i] = p[i - 1 - (x >> 16) % 5];
    else if (mode == 2)
      p[i] = 'a';
    else
      p[i] = (uint8_t)(x >> 16);
  }
  return p;
}

TEST(encoder_edge_sizes_decode_with_liblz4) {
  for (size_t n = 0; n < 300; n++) {
    for (uint32_t seed = 0; seed < 4; seed++) {
      uint8_t *in = seed == 3 ? sample(n) : shaped(n, seed);
      struct buf c, d;
      buf_init(&c, 0);
      CHECK_INT(lz4_compress(in, n, &c), 0);
      CHECK_INT(decode(c.data, c.len, &d), 0);
      CHECK_INT(d.len, n);
      CHECK(n == 0 || !memcmp(d.data, in, n));
      buf_destroy(&c);
      buf_destroy(&d);
      free(in);
    }
  }
  size_t big[] = {65535, 65536, 70001, 200000, (4u << 20) - 1, 5u << 20};
  for (size_t i = 0; i < ARRAY_SIZE(big); i++) {
    uint8_t *in = shaped(big[i], (uint32_t)i);
    struct buf c, d;
    buf_init(&c, 0);
    CHECK_INT(lz4_compress(in, big[i], &c), 0);
    CHECK_INT(decode(c.data, c.len, &d), 0);
    CHECK_INT(d.len, big[i]);
    CHECK(!memcmp(d.data, in, big[i]));
    buf_destroy(&c);
    buf_destroy(&d);
    free(in);
  }
}

/* Database-like pages: rows of words and numbers.  The frame must not be
 * larger than liblz4's fast mode (`lz4 -1`) makes it, and the lz4 CLI
 * must accept it (its content checksum included). */
TEST(encoder_not_larger_than_lz4_fast) {
  static const char *words[] = {"alpha", "bravo", "charlie", "delta",
                                "echo",  "golf",  "hotel",   "user@"};
  size_t n = 6u << 20;
  uint8_t *in = xmalloc(n);
  uint32_t x = 7;
  for (size_t i = 0; i < n;) {
    x = x * 1103515245u + 12345u;
    const char *w = words[(x >> 16) % ARRAY_SIZE(words)];
    char tmp[32];
    int k = snprintf(tmp, sizeof(tmp), "%s%u ", w, (x >> 8) % 1000);
    for (int j = 0; j < k && i < n; j++)
      in[i++] = (uint8_t)tmp[j];
  }
  struct buf c;
  buf_init(&c, 0);
  CHECK_INT(lz4_compress(in, n, &c), 0);
  struct buf cli;
  CHECK_INT(cli_frame("-1", in, n, &cli), 0);
  fprintf(stderr, "text sample: sluice %zu, lz4 -1 %zu\n", c.len, cli.len);
  CHECK(c.len <= cli.len);
  char *path = xasprintf("%s/ours.lz4", g_dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0);
  CHECK_INT(write_full(fd, c.data, c.len), 0);
  close(fd);
  char *cmd = xasprintf("lz4 -q -t %s", path);
  CHECK_INT(system(cmd), 0);
  free(cmd);
  free(path);
  buf_destroy(&cli);
  buf_destroy(&c);
  free(in);
}

TEST(frames_from_lz4_cli) {
  if (access("/usr/bin/lz4", X_OK)) {
    printf("skip: no /usr/bin/lz4\n");
    return;
  }
  const char *opts[] = {"",        "-B4",
                        "-B5",     "-B6",
                        "-BD",     "-BD -B4",
                        "-BX",     "--content-size",
                        "-BX -B4", "--no-frame-crc",
                        "-9"};
  size_t n = (6u << 20) + 12345;
  uint8_t *in = sample(n);
  for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
    struct buf c, d;
    CHECK_INT(cli_frame(opts[i], in, n, &c), 0);
    int rc = decode(c.data, c.len, &d);
    if (rc || d.len != n || memcmp(d.data, in, n))
      fprintf(stderr, "lz4 %s: rc=%d len=%zu\n", opts[i], rc, d.len);
    CHECK_INT(rc, 0);
    CHECK_INT(d.len, n);
    CHECK(d.len == n && !memcmp(d.data, in, n));
    buf_destroy(&c);
    buf_destroy(&d);
  }
  free(in);
}

TEST(empty_uncompressed_last_block) {
  /* pierrec/lz4 ends a snapshot that is a multiple of 4 MiB with an empty
   * uncompressed block: splice 00 00 00 80 before the end mark. */
  size_t n = 4u << 20;
  uint8_t *in = sample(n);
  struct buf c, d;
  buf_init(&c, 0);
  CHECK_INT(lz4_compress(in, n, &c), 0);
  /* ... <end mark 00 00 00 00> <content checksum 4 bytes> */
  size_t endmark = c.len - 8;
  CHECK(!memcmp(c.data + endmark, "\0\0\0\0", 4));
  struct buf s;
  buf_init(&s, 0);
  buf_append(&s, c.data, endmark);
  buf_append(&s, "\x00\x00\x00\x80", 4);
  buf_append(&s, c.data + endmark, 8);
  CHECK_INT(decode(s.data, s.len, &d), 0);
  CHECK_INT(d.len, n);
  CHECK(d.len == n && !memcmp(d.data, in, n));
  buf_destroy(&d);
  /* The same frame through the incremental decoder, one byte at a time at
   * the splice. */
  char *path = xasprintf("%s/splice.out", g_dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  struct lz4_dec *dec = lz4_dec_new(fd, 0);
  int rc = lz4_dec_feed(dec, s.data, endmark - 3);
  for (size_t i = endmark - 3; i < s.len && !rc; i++)
    rc = lz4_dec_feed(dec, s.data + i, 1);
  int64_t olen = -1;
  CHECK_INT(rc, 0);
  CHECK_INT(lz4_dec_end(dec, &olen), 0);
  CHECK_INT(olen, (int64_t)n);
  lz4_dec_free(dec);
  close(fd);
  free(path);
  buf_destroy(&s);
  buf_destroy(&c);
  free(in);
}

TEST(truncated_and_corrupt_frames_rejected) {
  size_t n = 300000;
  uint8_t *in = sample(n);
  struct buf c, d;
  buf_init(&c, 0);
  CHECK_INT(lz4_compress(in, n, &c), 0);
  size_t cuts[] = {0,  3,         4,         6,         7,
                   11, c.len / 2, c.len - 8, c.len - 5, c.len - 1};
  for (size_t i = 0; i < ARRAY_SIZE(cuts); i++) {
    int rc = decode(c.data, cuts[i], &d);
    if (rc != ERR_LZ4)
      fprintf(stderr, "cut at %zu: rc=%d\n", cuts[i], rc);
    CHECK_INT(rc, ERR_LZ4);
    CHECK_INT(d.len, 0); /* nothing left behind on failure */
    buf_destroy(&d);
  }
  /* Flipped bytes: in the header checksum, a block size, block data, the
   * content checksum. */
  size_t flips[] = {6, 7, 100, c.len / 2, c.len - 1};
  for (size_t i = 0; i < ARRAY_SIZE(flips); i++) {
    c.data[flips[i]] ^= 0x5a;
    int rc = decode(c.data, c.len, &d);
    if (rc != ERR_LZ4)
      fprintf(stderr, "flip at %zu: rc=%d\n", flips[i], rc);
    CHECK_INT(rc, ERR_LZ4);
    buf_destroy(&d);
    c.data[flips[i]] ^= 0x5a;
  }
  /* Garbage after a complete frame. */
  buf_append(&c, "junk", 4);
  CHECK_INT(decode(c.data, c.len, &d), ERR_LZ4);
  buf_destroy(&d);
  buf_destroy(&c);
  free(in);
}

TEST(concatenated_and_skippable_frames) {
  struct buf c, d;
  buf_init(&c, 0);
  CHECK_INT(lz4_compress((const uint8_t *)"abc", 3, &c), 0);
  /* Skippable frame: magic 0x184D2A50, 4-byte size, payload. */
  buf_append(&c, "\x50\x2A\x4D\x18\x03\x00\x00\x00xyz", 11);
  CHECK_INT(lz4_compress((const uint8_t *)"def", 3, &c), 0);
  CHECK_INT(decode(c.data, c.len, &d), 0);
  CHECK_INT(d.len, 6);
  CHECK(d.len == 6 && !memcmp(d.data, "abcdef", 6));
  buf_destroy(&d);
  buf_destroy(&c);
}

TEST(fd_streaming) {
  size_t n = (9u << 20) + 77;
  uint8_t *in = sample(n);
  char *src = xasprintf("%s/s.in", g_dir), *lz = xasprintf("%s/s.lz4", g_dir),
       *dst = xasprintf("%s/s.out", g_dir);
  int ifd = open(src, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int cfd = open(lz, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int ofd = open(dst, O_RDWR | O_CREAT | O_TRUNC, 0600);
  CHECK_INT(pwrite_full(ifd, "0123456789", 10, 0), 0);
  CHECK_INT(pwrite_full(ifd, in, n, 10), 0);
  int64_t clen = 0, dlen = 0;
  /* Compress from an offset: the 10 leading bytes are not part of it. */
  CHECK_INT(lz4_compress_fd(ifd, 10, (int64_t)n, cfd, &clen), 0);
  struct stat st;
  fstat(cfd, &st);
  CHECK_INT(st.st_size, clen);
  CHECK_INT(lz4_decompress_fd(cfd, ofd, &dlen), 0);
  CHECK_INT(dlen, (int64_t)n);
  struct buf got;
  CHECK_INT(file_read_all(dst, 0, &got), 0);
  CHECK(got.len == n && !memcmp(got.data, in, n));
  buf_destroy(&got);

  /* Memory to fd at an offset. */
  struct buf c;
  CHECK_INT(file_read_all(lz, 0, &c), 0);
  CHECK_INT(ftruncate(ofd, 0), 0);
  CHECK_INT(lz4_decompress_to_fd(c.data, c.len, ofd, 1000, &dlen), 0);
  CHECK_INT(dlen, (int64_t)n);
  CHECK_INT(file_read_all(dst, 0, &got), 0);
  CHECK(got.len == n + 1000 && !memcmp(got.data + 1000, in, n));
  buf_destroy(&got);

  /* Incremental decoder fed in odd-sized pieces, at an offset. */
  CHECK_INT(ftruncate(ofd, 0), 0);
  struct lz4_dec *dec = lz4_dec_new(ofd, 5);
  size_t piece = 1, pos = 0;
  int rc = 0;
  while (pos < c.len && !rc) {
    size_t k = MIN(piece, c.len - pos);
    rc = lz4_dec_feed(dec, c.data + pos, k);
    pos += k;
    piece = piece * 3 + 1;
  }
  CHECK_INT(rc, 0);
  CHECK_INT(lz4_dec_end(dec, &dlen), 0);
  CHECK_INT(dlen, (int64_t)n);
  lz4_dec_free(dec);
  CHECK_INT(file_read_all(dst, 0, &got), 0);
  CHECK(got.len == n + 5 && !memcmp(got.data + 5, in, n));
  buf_destroy(&got);

  /* Truncated input: the incremental decoder and the fd decoder fail. */
  dec = lz4_dec_new(ofd, 0);
  CHECK_INT(lz4_dec_feed(dec, c.data, c.len - 2), 0);
  CHECK_INT(lz4_dec_end(dec, &dlen), ERR_LZ4);
  lz4_dec_free(dec);
  dec = lz4_dec_new(ofd, 0);
  CHECK_INT(lz4_dec_end(dec, &dlen), ERR_LZ4); /* no input at all */
  lz4_dec_free(dec);
  CHECK_INT(ftruncate(cfd, clen - 2), 0);
  CHECK_INT(lz4_decompress_fd(cfd, ofd, &dlen), ERR_LZ4);
  CHECK_INT(ftruncate(cfd, 0), 0);
  CHECK_INT(lz4_decompress_fd(cfd, ofd, &dlen), ERR_LZ4);

  buf_destroy(&c);
  close(ifd);
  close(cfd);
  close(ofd);
  free(src);
  free(lz);
  free(dst);
  free(in);
}

/* Decode-after-encode: every compressed block when asked, one in
 * LZ4ENC_CHECK_EVERY by default; none of ours ever fails it. */
TEST(decode_after_encode_check) {
  size_t n = 40u << 20; /* 10 blocks */
  uint8_t *src = xmalloc(n);
  for (size_t i = 0; i < n; i++)
    src[i] = (uint8_t)("sqlite page "[i % 12] + (i >> 16) % 3);
  struct buf c;
  buf_init(&c, 0);
  lz4enc_check_all(1);
  unsigned long before = lz4enc_checked;
  CHECK_INT(lz4_compress(src, n, &c), 0);
  CHECK_INT(lz4enc_checked - before, 10);
  lz4enc_check_all(0);
  before = lz4enc_checked;
  for (int k = 0; k < 4; k++) {
    c.len = 0;
    CHECK_INT(lz4_compress(src, n, &c), 0);
  }
  /* 40 blocks, sampled: 2 or 3 of them. */
  CHECK(lz4enc_checked - before >= 40 / LZ4ENC_CHECK_EVERY);
  CHECK(lz4enc_checked - before <= 40 / LZ4ENC_CHECK_EVERY + 1);
  CHECK_INT(lz4enc_check_failed, 0);
  struct buf back;
  buf_init(&back, 0);
  CHECK_INT(lz4_decompress(c.data, c.len, &back), 0);
  CHECK(back.len == n && !memcmp(back.data, src, n));
  lz4enc_check_all(1);
  buf_destroy(&back);
  buf_destroy(&c);
  free(src);
}

int main(void) {
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  RUN(round_trip_sizes);
  RUN(litestream_header_bytes);
  RUN(encoder_edge_sizes_decode_with_liblz4);
  RUN(encoder_not_larger_than_lz4_fast);
  RUN(frames_from_lz4_cli);
  RUN(empty_uncompressed_last_block);
  RUN(truncated_and_corrupt_frames_rejected);
  RUN(concatenated_and_skippable_frames);
  RUN(fd_streaming);
  RUN(decode_after_encode_check);
  rm_rf(g_dir);
  T_DONE();
}
