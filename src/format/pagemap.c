#include "format/pagemap.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/util.h"

/* --- XXH64 --- */

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static inline uint64_t rotl(uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}

/* Little-endian loads (XXH64 is defined over little-endian words). */
static inline uint64_t rd64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

static inline uint32_t rd32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap32(v);
#endif
  return v;
}

static inline uint64_t xround(uint64_t acc, uint64_t in) {
  acc += in * P2;
  acc = rotl(acc, 31);
  return acc * P1;
}

static inline uint64_t xmerge(uint64_t acc, uint64_t v) {
  acc ^= xround(0, v);
  return acc * P1 + P4;
}

uint64_t pagemap_xxh64(const void *in, size_t len, uint64_t seed) {
  const uint8_t *p = in, *end = p + len;
  uint64_t h;
  if (len >= 32) {
    const uint8_t *limit = end - 32;
    uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
    do {
      v1 = xround(v1, rd64(p));
      v2 = xround(v2, rd64(p + 8));
      v3 = xround(v3, rd64(p + 16));
      v4 = xround(v4, rd64(p + 24));
      p += 32;
    } while (p <= limit);
    h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
    h = xmerge(h, v1);
    h = xmerge(h, v2);
    h = xmerge(h, v3);
    h = xmerge(h, v4);
  } else {
    h = seed + P5;
  }
  h += (uint64_t)len;
  for (; p + 8 <= end; p += 8) {
    h ^= xround(0, rd64(p));
    h = rotl(h, 27) * P1 + P4;
  }
  if (p + 4 <= end) {
    h ^= (uint64_t)rd32(p) * P1;
    h = rotl(h, 23) * P2 + P3;
    p += 4;
  }
  for (; p < end; p++) {
    h ^= (uint64_t)*p * P5;
    h = rotl(h, 11) * P1;
  }
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

uint64_t pagemap_hash(const uint8_t *page, uint32_t page_size) {
  uint64_t h = pagemap_xxh64(page, page_size, 0);
  return h ? h : 1;
}

/* --- the map in memory --- */

void pagemap_init(struct pagemap *m, uint32_t page_size) {
  memset(m, 0, sizeof(*m));
  m->page_size = page_size;
}

void pagemap_destroy(struct pagemap *m) {
  free(m->h);
  memset(m, 0, sizeof(*m));
}

void pagemap_clear(struct pagemap *m) {
  if (m->h)
    memset(m->h, 0, (size_t)m->len * sizeof(uint64_t));
  m->n = m->len = 0;
}

static int grow(struct pagemap *m, uint32_t want) {
  if (want > PAGEMAP_MAX_PAGES)
    return ERR_TOO_BIG;
  if (want > m->cap) {
    uint32_t cap = m->cap ? m->cap : 1024;
    while (cap < want)
      cap = cap > PAGEMAP_MAX_PAGES / 2 ? PAGEMAP_MAX_PAGES : cap * 2;
    m->h = xrealloc(m->h, (size_t)cap * sizeof(uint64_t));
    memset(m->h + m->cap, 0, (size_t)(cap - m->cap) * sizeof(uint64_t));
    m->cap = cap;
  }
  if (want > m->len)
    m->len = want;
  return 0;
}

int pagemap_set(struct pagemap *m, uint32_t pgno, uint64_t h) {
  if (pgno == 0)
    return ERR_CORRUPT;
  int rc = grow(m, pgno);
  if (rc)
    return rc;
  m->h[pgno - 1] = h;
  return 0;
}

int pagemap_commit(struct pagemap *m, uint32_t npages) {
  if (npages < m->len) {
    memset(m->h + npages, 0, (size_t)(m->len - npages) * sizeof(uint64_t));
    m->len = npages;
  } else {
    int rc = grow(m, npages);
    if (rc)
      return rc;
  }
  m->n = npages;
  return 0;
}

/* --- the file --- */

static void put_be64(uint8_t *p, uint64_t v) {
  put_be32(p, (uint32_t)(v >> 32));
  put_be32(p + 4, (uint32_t)v);
}

static uint64_t get_be64(const uint8_t *p) {
  return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static uint64_t file_checksum(const uint8_t *data, size_t len) {
  uint64_t seed = pagemap_xxh64(data, 56, 0);
  return pagemap_xxh64(data + PAGEMAP_HEADER_SIZE, len - PAGEMAP_HEADER_SIZE,
                       seed);
}

uint8_t *pagemap_encode(const struct pagemap *m, size_t *len) {
  size_t n = PAGEMAP_HEADER_SIZE + (size_t)m->n * 8;
  uint8_t *b = xcalloc(1, n);
  memcpy(b, PAGEMAP_MAGIC, 8);
  put_be32(b + 8, PAGEMAP_VERSION);
  put_be32(b + 12, m->page_size);
  put_be32(b + 16, m->n);
  put_be32(b + 20, m->index);
  put_be64(b + 24, (uint64_t)m->offset);
  memcpy(b + 32, m->gen, GEN_LEN);
  put_be64(b + 48, m->ino);
  for (uint32_t i = 0; i < m->n; i++)
    put_be64(b + PAGEMAP_HEADER_SIZE + (size_t)i * 8, m->h[i]);
  put_be64(b + 56, file_checksum(b, n));
  *len = n;
  return b;
}

static int bad(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return ERR_CORRUPT;
}

int pagemap_decode(const uint8_t *d, size_t len, struct pagemap *m, char *err,
                   size_t errlen) {
  if (len < PAGEMAP_HEADER_SIZE)
    return bad(err, errlen, "truncated: %zu bytes, the header alone is %d", len,
               PAGEMAP_HEADER_SIZE);
  if (memcmp(d, PAGEMAP_MAGIC, 8))
    return bad(err, errlen, "not a page map (bad magic)");
  uint32_t version = get_be32(d + 8);
  if (version != PAGEMAP_VERSION)
    return bad(err, errlen, "unsupported version %u (this sluice reads %d)",
               version, PAGEMAP_VERSION);
  uint32_t ps = get_be32(d + 12), n = get_be32(d + 16);
  if (ps < 512 || ps > 65536 || (ps & (ps - 1)))
    return bad(err, errlen, "invalid page size %u", ps);
  if (n > PAGEMAP_MAX_PAGES)
    return bad(err, errlen, "page count %u beyond the maximum %u", n,
               PAGEMAP_MAX_PAGES);
  size_t want = PAGEMAP_HEADER_SIZE + (size_t)n * 8;
  if (len != want)
    return bad(err, errlen, "%s: %zu bytes, %u pages need %zu",
               len < want ? "truncated" : "trailing bytes", len, n, want);
  if (get_be64(d + 56) != file_checksum(d, len))
    return bad(err, errlen, "checksum mismatch");
  char gen[GEN_LEN + 1];
  memcpy(gen, d + 32, GEN_LEN);
  gen[GEN_LEN] = '\0';
  if (!gen_is_valid(gen))
    return bad(err, errlen, "invalid generation name");
  int64_t off = (int64_t)get_be64(d + 24);
  if (off < 32)
    return bad(err, errlen, "invalid offset %lld", (long long)off);
  pagemap_destroy(m);
  pagemap_init(m, ps);
  if (n && grow(m, n))
    return bad(err, errlen, "page count %u too large", n);
  for (uint32_t i = 0; i < n; i++)
    m->h[i] = get_be64(d + PAGEMAP_HEADER_SIZE + (size_t)i * 8);
  m->n = n;
  memcpy(m->gen, gen, sizeof(gen));
  m->index = get_be32(d + 20);
  m->offset = off;
  m->ino = get_be64(d + 48);
  return 0;
}
