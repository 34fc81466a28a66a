/*
 * LZ4 frame encoder (spec 1.2), our own block compressor instead of
 * liblz4's LZ4_compress_fast.
 *
 * Why: liblz4's fast mode keeps a 4096-entry hash table (LZ4_MEMORY_USAGE
 * 14, fixed when the library is built) and probes one position per step;
 * pierrec/lz4 (Litestream 0.3) hashes into 65536 entries and probes three.
 * On database pages of short repeated strings the small table misses
 * matches.  This compressor is the same greedy LZ4 parse with up to 16384
 * entries and two probes per step (more entries fall out of the L2 cache
 * and double the time on incompressible pages for 2 % less output):
 * 205 MB of text rows come out at 128 MB where `lz4 -1` writes 133 MB,
 * 182 MB of random letters at 165.9 MB where `lz4 -1` writes 167.0 MB.
 * It writes the frame liblz4 and pierrec write (FLG 0x64, BD 0x70: 4 MiB
 * independent blocks, content checksum), so every LZ4 reader, Litestream
 * 0.3 included, decodes it.
 * Decoding stays with liblz4.
 *
 * Decode-after-encode: a compressed block is decoded again by liblz4's
 * LZ4_decompress_safe and compared with its input, every block in debug
 * builds (tests, ASan) and one block in LZ4ENC_CHECK_EVERY otherwise (a
 * decode costs about a fifth of the compression).  A block that does not
 * come back is stored uncompressed instead, with an error line: the
 * object stays correct whatever the compressor did.
 */
#ifndef SLUICE_LZ4ENC_H
#define SLUICE_LZ4ENC_H

#include <stddef.h>
#include <stdint.h>

#define LZ4ENC_BLOCK (4u << 20)
#define LZ4ENC_HEADER 7
#define LZ4ENC_TRAILER 8
/* Bytes a block of n input bytes may take in the frame (size word plus
 * either the compressed or the stored form). */
#define LZ4ENC_BLOCK_BOUND(n) ((n) + (n) / 255 + 16 + 4)

struct xxh32 {
  uint32_t v[4];
  uint8_t mem[16];
  size_t memlen;
  uint64_t total;
};

void xxh32_init(struct xxh32 *h);
void xxh32_update(struct xxh32 *h, const uint8_t *p, size_t n);
uint32_t xxh32_digest(const struct xxh32 *h);

#define LZ4ENC_CHECK_EVERY 16

struct lz4_enc {
  uint32_t *table; /* hash table, 1 << 14 entries */
  struct xxh32 sum;
  uint8_t *check; /* decode-after-encode buffer, LZ4ENC_BLOCK, lazily */
};

/* Blocks checked and found wrong so far (process-wide, for tests). */
extern unsigned long lz4enc_checked, lz4enc_check_failed;
/* Tests: check every block (1) or sample (0, the default). */
void lz4enc_check_all(int on);

void lz4_enc_init(struct lz4_enc *e);
void lz4_enc_destroy(struct lz4_enc *e);
/* Each returns the number of bytes written to out. */
size_t lz4_enc_begin(struct lz4_enc *e, uint8_t *out);
/* One block of n <= LZ4ENC_BLOCK bytes; out holds LZ4ENC_BLOCK_BOUND(n). */
size_t lz4_enc_block(struct lz4_enc *e, const uint8_t *src, size_t n,
                     uint8_t *out);
size_t lz4_enc_end(struct lz4_enc *e, uint8_t *out);

/* The block compressor alone: returns the compressed size, or 0 when the
 * result would not be smaller than n (the block is then stored). */
size_t lz4_block_compress(const uint8_t *src, size_t n, uint8_t *dst,
                          size_t cap, uint32_t *table);

#endif
