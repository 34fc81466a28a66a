/*
 * The page map (format/pagemap.h): XXH64 against published vectors, the
 * in-memory rules (a commit sets the size, pages grown into unwritten are
 * unknown), and the file format: a round trip, then every kind of damage
 * (truncated, trailing bytes, bad magic, other version, flipped byte in
 * the header or in an entry) rejected with a reason naming it.
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/util.h"
#include "format/pagemap.h"
#include "t.h"

TEST(xxh64_vectors) {
  CHECK(pagemap_xxh64("", 0, 0) == 0xEF46DB3751D8E999ULL);
  CHECK(pagemap_xxh64("a", 1, 0) == 0xD24EC4F1A98C6E5BULL);
  CHECK(pagemap_xxh64("abc", 3, 0) == 0x44BC2CF5AD770999ULL);
  const char *s = "Nobody inspects the spammish repetition";
  CHECK(pagemap_xxh64(s, strlen(s), 0) == 0xFBCEA83C8A378BF1ULL);
  uint8_t page[4096] = {0};
  CHECK(pagemap_hash(page, sizeof(page)) != 0);
  uint64_t a = pagemap_hash(page, sizeof(page));
  page[4095] = 1;
  CHECK(pagemap_hash(page, sizeof(page)) != a);
}

TEST(set_and_commit) {
  struct pagemap m;
  pagemap_init(&m, 4096);
  CHECK_INT(pagemap_set(&m, 0, 5), ERR_CORRUPT);
  CHECK_INT(pagemap_set(&m, 3, 33), 0);
  CHECK_INT(pagemap_set(&m, 9, 99), 0); /* dropped by the commit below */
  CHECK_INT(pagemap_commit(&m, 5), 0);
  CHECK_INT(m.n, 5);
  CHECK(m.h[2] == 33);
  CHECK(m.h[0] == 0 && m.h[3] == 0 && m.h[4] == 0); /* unknown */
  /* Growing again: page 9's old hash must not come back. */
  CHECK_INT(pagemap_commit(&m, 10), 0);
  CHECK(m.h[8] == 0);
  CHECK_INT(pagemap_set(&m, PAGEMAP_MAX_PAGES + 1, 1), ERR_TOO_BIG);
  pagemap_destroy(&m);
}

static void sample(struct pagemap *m) {
  pagemap_init(m, 4096);
  for (uint32_t p = 1; p <= 300; p++)
    pagemap_set(m, p, pagemap_xxh64(&p, sizeof(p), 7) | 1);
  pagemap_commit(m, 300);
  memcpy(m->gen, "0123456789abcdef", GEN_LEN + 1);
  m->index = 0x2a;
  m->offset = 32 + 3 * (24 + 4096);
  m->ino = 123456;
}

TEST(round_trip) {
  struct pagemap m, d;
  sample(&m);
  size_t len;
  uint8_t *b = pagemap_encode(&m, &len);
  CHECK_INT(len, 64 + 300 * 8);
  CHECK(!memcmp(b, "sluicepm", 8));
  CHECK_INT(get_be32(b + 8), 1);
  CHECK_INT(get_be32(b + 12), 4096);
  CHECK_INT(get_be32(b + 16), 300);
  CHECK_INT(get_be32(b + 20), 0x2a);
  char err[160] = "";
  pagemap_init(&d, 0);
  CHECK_INT(pagemap_decode(b, len, &d, err, sizeof(err)), 0);
  CHECK_INT(d.n, 300);
  CHECK_INT(d.page_size, 4096);
  CHECK_INT(d.index, 0x2a);
  CHECK_INT(d.offset, m.offset);
  CHECK(d.ino == 123456);
  CHECK_STR(d.gen, "0123456789abcdef");
  CHECK(!memcmp(d.h, m.h, 300 * 8));
  free(b);
  pagemap_destroy(&m);
  pagemap_destroy(&d);
}

static void expect_reject(const uint8_t *b, size_t len, const char *reason) {
  struct pagemap d;
  pagemap_init(&d, 0);
  char err[160] = "";
  CHECK_INT(pagemap_decode(b, len, &d, err, sizeof(err)), ERR_CORRUPT);
  if (!strstr(err, reason)) {
    t_failures++;
    fprintf(stderr, "%s: expected a reason containing \"%s\", got \"%s\"\n",
            t_current, reason, err);
  }
  pagemap_destroy(&d);
}

TEST(damage_is_rejected) {
  struct pagemap m;
  sample(&m);
  size_t len;
  uint8_t *b = pagemap_encode(&m, &len);
  uint8_t *c = xmalloc(len + 8);
  expect_reject(b, 10, "truncated");
  expect_reject(b, len - 8, "truncated");
  memcpy(c, b, len);
  memset(c + len, 0, 8);
  expect_reject(c, len + 8, "trailing bytes");
  memcpy(c, b, len);
  c[0] = 'X';
  expect_reject(c, len, "bad magic");
  memcpy(c, b, len);
  put_be32(c + 8, 2);
  expect_reject(c, len, "unsupported version 2");
  memcpy(c, b, len);
  put_be32(c + 12, 1000);
  expect_reject(c, len, "invalid page size 1000");
  memcpy(c, b, len);
  c[64 + 8 * 150 + 3] ^= 0x10; /* one entry */
  expect_reject(c, len, "checksum mismatch");
  memcpy(c, b, len);
  c[27] ^= 1; /* the offset */
  expect_reject(c, len, "checksum mismatch");
  free(c);
  free(b);
  pagemap_destroy(&m);
}

int main(void) {
  RUN(xxh64_vectors);
  RUN(set_and_commit);
  RUN(round_trip);
  RUN(damage_is_rejected);
  T_DONE();
}
