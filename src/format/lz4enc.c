#include "format/lz4enc.h"

#include <lz4.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"

/* LZ4 block format rules (lz4_Block_format.md): a match is at least 4
 * bytes, the last 5 bytes of a block are literals, and the last match
 * starts at least 12 bytes before the end. */
#define MINMATCH 4
#define LASTLITERALS 5
#define MFLIMIT 12
#define MAX_OFFSET 65535
#define HLOG_MAX                                                               \
  14 /* 16 KiB of uint32: stays in L2; 16 costs 2x on noise for 2% */
#define SKIP_TRIGGER 6 /* step grows by one every 64 misses */

static inline uint32_t rd32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static inline uint64_t rd64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

static inline uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static inline void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

/* Hash of the 5 bytes at the lowest addresses of v (a little-endian
 * load), Knuth's multiplicative method with a 40-bit prime. */
static inline uint32_t hash5(uint64_t v, int hlog) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v >>= 24;
#else
  v <<= 24;
#endif
  return (uint32_t)((v * 889523592379ull) >> (64 - hlog));
}

static inline size_t match_end(const uint8_t *ip, const uint8_t *ref,
                               const uint8_t *limit) {
  const uint8_t *start = ip;
  while (ip + 8 <= limit) {
    uint64_t x = rd64(ip) ^ rd64(ref);
    if (x) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
      return (size_t)(ip - start) + (size_t)(__builtin_clzll(x) >> 3);
#else
      return (size_t)(ip - start) + (size_t)(__builtin_ctzll(x) >> 3);
#endif
    }
    ip += 8;
    ref += 8;
  }
  while (ip < limit && *ip == *ref) {
    ip++;
    ref++;
  }
  return (size_t)(ip - start);
}

static inline uint8_t *put_len(uint8_t *op, size_t len) {
  for (; len >= 255; len -= 255)
    *op++ = 255;
  *op++ = (uint8_t)len;
  return op;
}

/* One sequence: literals [anchor, ip), then a match of ml bytes at
 * distance off.  NULL when it would not fit before oend. */
static uint8_t *put_seq(uint8_t *op, uint8_t *oend, const uint8_t *anchor,
                        size_t lit, size_t off, size_t ml) {
  if ((size_t)(oend - op) < 1 + lit / 255 + 1 + lit + 2 + ml / 255 + 1)
    return NULL;
  uint8_t *token = op++;
  *token = (uint8_t)((lit >= 15 ? 15 : lit) << 4);
  if (lit >= 15)
    op = put_len(op, lit - 15);
  memcpy(op, anchor, lit);
  op += lit;
  *op++ = (uint8_t)off;
  *op++ = (uint8_t)(off >> 8);
  ml -= MINMATCH;
  *token |= (uint8_t)(ml >= 15 ? 15 : ml);
  if (ml >= 15)
    op = put_len(op, ml - 15);
  return op;
}

static inline int is_match(const uint8_t *ref, const uint8_t *ip) {
  return ref < ip && ip - ref <= MAX_OFFSET && rd32(ref) == rd32(ip);
}

size_t lz4_block_compress(const uint8_t *src, size_t n, uint8_t *dst,
                          size_t cap, uint32_t *table) {
  /* A smaller table for small inputs (WAL segments of a few pages), so
   * clearing it does not cost more than compressing. */
  int hlog = n <= (1u << 14) ? 12 : n <= (1u << 16) ? 14 : HLOG_MAX;
  memset(table, 0, sizeof(*table) << hlog);
  const uint8_t *ip = src, *anchor = src, *end = src + n;
  uint8_t *op = dst, *oend = dst + cap;
  if (n < MFLIMIT + 1)
    goto last;
  const uint8_t *mflimit = end - MFLIMIT, *matchlimit = end - LASTLITERALS;
  ip++;
  for (;;) {
    /* Find a match: hash the bytes at ip and at ip+1, keep the first
     * candidate that holds, and skip ahead faster the longer nothing
     * matches (incompressible pages cost little). */
    const uint8_t *ref;
    unsigned search = 1u << SKIP_TRIGGER;
    for (;;) {
      if (ip + 1 > mflimit)
        goto last;
      uint64_t v = rd64(ip);
      uint32_t h = hash5(v, hlog), h1 = hash5(v >> 8, hlog);
      ref = src + table[h];
      const uint8_t *ref1 = src + table[h1];
      table[h] = (uint32_t)(ip - src);
      table[h1] = (uint32_t)(ip + 1 - src);
      if (is_match(ref, ip))
        break;
      if (is_match(ref1, ip + 1)) {
        ip++;
        ref = ref1;
        break;
      }
      ip += 1 + (search++ >> SKIP_TRIGGER);
    }
    while (ip > anchor && ref > src && ip[-1] == ref[-1]) {
      ip--;
      ref--;
    }
    for (;;) {
      size_t ml =
          MINMATCH + match_end(ip + MINMATCH, ref + MINMATCH, matchlimit);
      op = put_seq(op, oend, anchor, (size_t)(ip - anchor), (size_t)(ip - ref),
                   ml);
      if (!op)
        return 0;
      ip += ml;
      anchor = ip;
      if (ip > mflimit)
        goto last;
      table[hash5(rd64(ip - 2), hlog)] = (uint32_t)(ip - 2 - src);
      uint32_t h = hash5(rd64(ip), hlog);
      ref = src + table[h];
      table[h] = (uint32_t)(ip - src);
      if (!is_match(ref, ip))
        break;
    }
    ip++;
  }
last:;
  size_t lit = (size_t)(end - anchor);
  if ((size_t)(oend - op) < 1 + lit / 255 + 1 + lit)
    return 0;
  *op++ = (uint8_t)((lit >= 15 ? 15 : lit) << 4);
  if (lit >= 15)
    op = put_len(op, lit - 15);
  memcpy(op, anchor, lit);
  op += lit;
  size_t size = (size_t)(op - dst);
  return size < n ? size : 0;
}

/* xxHash32 (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md),
 * seed 0: the LZ4 frame's content checksum. */
#define P1 2654435761u
#define P2 2246822519u
#define P3 3266489917u
#define P4 668265263u
#define P5 374761393u

static inline uint32_t rotl(uint32_t x, int r) {
  return (x << r) | (x >> (32 - r));
}

static inline uint32_t xround(uint32_t acc, uint32_t in) {
  return rotl(acc + in * P2, 13) * P1;
}

void xxh32_init(struct xxh32 *h) {
  memset(h, 0, sizeof(*h));
  h->v[0] = P1 + P2;
  h->v[1] = P2;
  h->v[2] = 0;
  h->v[3] = 0u - P1;
}

static inline void stripe(struct xxh32 *h, const uint8_t *p) {
  h->v[0] = xround(h->v[0], le32(p));
  h->v[1] = xround(h->v[1], le32(p + 4));
  h->v[2] = xround(h->v[2], le32(p + 8));
  h->v[3] = xround(h->v[3], le32(p + 12));
}

void xxh32_update(struct xxh32 *h, const uint8_t *p, size_t n) {
  h->total += n;
  if (h->memlen + n < 16) {
    memcpy(h->mem + h->memlen, p, n);
    h->memlen += n;
    return;
  }
  if (h->memlen) {
    size_t fill = 16 - h->memlen;
    memcpy(h->mem + h->memlen, p, fill);
    stripe(h, h->mem);
    p += fill;
    n -= fill;
    h->memlen = 0;
  }
  /* The lanes in locals (stored through h each stripe, they would be
   * reloaded after every read of p, a byte pointer that may alias them),
   * each kept in a general register: vectorized, the four lanes take
   * SSE multiplies of three times the latency (3.0 against 0.8-2.3 GB/s
   * for the other two forms, measured). */
  uint32_t v0 = h->v[0], v1 = h->v[1], v2 = h->v[2], v3 = h->v[3];
  for (; n >= 16; p += 16, n -= 16) {
    v0 = xround(v0, le32(p));
    v1 = xround(v1, le32(p + 4));
    v2 = xround(v2, le32(p + 8));
    v3 = xround(v3, le32(p + 12));
    __asm__("" : "+r"(v0), "+r"(v1), "+r"(v2), "+r"(v3));
  }
  h->v[0] = v0;
  h->v[1] = v1;
  h->v[2] = v2;
  h->v[3] = v3;
  memcpy(h->mem, p, n);
  h->memlen = n;
}

uint32_t xxh32_digest(const struct xxh32 *h) {
  uint32_t acc = h->total >= 16 ? rotl(h->v[0], 1) + rotl(h->v[1], 7) +
                                      rotl(h->v[2], 12) + rotl(h->v[3], 18)
                                : P5;
  acc += (uint32_t)h->total;
  const uint8_t *p = h->mem;
  size_t n = h->memlen;
  for (; n >= 4; p += 4, n -= 4)
    acc = rotl(acc + le32(p) * P3, 17) * P4;
  for (; n; p++, n--)
    acc = rotl(acc + *p * P5, 11) * P1;
  acc ^= acc >> 15;
  acc *= P2;
  acc ^= acc >> 13;
  acc *= P3;
  acc ^= acc >> 16;
  return acc;
}

void lz4_enc_init(struct lz4_enc *e) {
  e->table = xmalloc(sizeof(*e->table) << HLOG_MAX);
  e->check = NULL;
  xxh32_init(&e->sum);
}

void lz4_enc_destroy(struct lz4_enc *e) {
  free(e->table);
  free(e->check);
  e->table = NULL;
  e->check = NULL;
}

unsigned long lz4enc_checked, lz4enc_check_failed;
static atomic_ulong g_blocks;
#ifdef NDEBUG
static atomic_int g_check_all;
#else
static atomic_int g_check_all = 1;
#endif

void lz4enc_check_all(int on) {
  atomic_store(&g_check_all, on);
}

/* 1 if the c compressed bytes at comp decode back to the n at src. */
static int decodes_back(struct lz4_enc *e, const uint8_t *comp, size_t c,
                        const uint8_t *src, size_t n) {
  if (!e->check)
    e->check = xmalloc(LZ4ENC_BLOCK);
  int r = LZ4_decompress_safe((const char *)comp, (char *)e->check, (int)c,
                              (int)LZ4ENC_BLOCK);
  __atomic_add_fetch(&lz4enc_checked, 1, __ATOMIC_RELAXED);
  if (r == (int)n && !memcmp(e->check, src, n))
    return 1;
  __atomic_add_fetch(&lz4enc_check_failed, 1, __ATOMIC_RELAXED);
  log_error(NULL, NULL,
            "lz4: a compressed block of %zu bytes did not decode back "
            "(encoder bug): stored uncompressed",
            n);
  return 0;
}

size_t lz4_enc_begin(struct lz4_enc *e, uint8_t *out) {
  /* Magic, FLG 0x64 (version 1, independent blocks, content checksum),
   * BD 0x70 (4 MiB blocks), HC = second byte of xxh32(FLG BD). */
  static const uint8_t hdr[LZ4ENC_HEADER] = {0x04, 0x22, 0x4D, 0x18,
                                             0x64, 0x70, 0xB9};
  xxh32_init(&e->sum);
  memcpy(out, hdr, sizeof(hdr));
  return sizeof(hdr);
}

size_t lz4_enc_block(struct lz4_enc *e, const uint8_t *src, size_t n,
                     uint8_t *out) {
  if (!n)
    return 0;
  xxh32_update(&e->sum, src, n);
  size_t c = lz4_block_compress(src, n, out + 4, n - 1, e->table);
  if (c &&
      (atomic_load(&g_check_all) ||
       atomic_fetch_add(&g_blocks, 1) % LZ4ENC_CHECK_EVERY == 0) &&
      !decodes_back(e, out + 4, c, src, n))
    c = 0;
  if (c) {
    put_le32(out, (uint32_t)c);
    return 4 + c;
  }
  put_le32(out, (uint32_t)n | 0x80000000u);
  memcpy(out + 4, src, n);
  return 4 + n;
}

size_t lz4_enc_end(struct lz4_enc *e, uint8_t *out) {
  put_le32(out, 0);
  put_le32(out + 4, xxh32_digest(&e->sum));
  return LZ4ENC_TRAILER;
}
