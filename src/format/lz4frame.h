/*
 * LZ4 frames (https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md),
 * through liblz4's frame API.
 *
 * Writing (lz4enc.c) uses Litestream's options: 4 MiB independent blocks,
 * content checksum, no block checksum, no content size, so every object starts
 * 04 22 4D 18 64 70 B9.  Reading accepts any valid frame: other block
 * sizes, linked blocks, block checksums, content size, skippable frames,
 * and an empty uncompressed last block (00 00 00 80), which pierrec/lz4
 * emits when the input is a multiple of 4 MiB.
 */
#ifndef SLUICE_LZ4FRAME_H
#define SLUICE_LZ4FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

/* Appends one frame holding src to out. */
int lz4_compress(const uint8_t *src, size_t n, struct buf *out);
/* Decompresses every frame in src and appends the content to out (whose
 * max bounds the result).  Returns 0 or ERR_LZ4 (or -EFBIG). */
int lz4_decompress(const uint8_t *src, size_t n, struct buf *out);

/* Streaming compression of len bytes of in_fd (from in_off) into out_fd
 * (from its current position), 4 MiB at a time.  *out_len gets the
 * compressed size. */
int lz4_compress_fd(int in_fd, int64_t in_off, int64_t len, int out_fd,
                    int64_t *out_len);
/* The same from a reader: fill(arg, dst, n, at) puts the n content bytes
 * at offset `at` into dst (0 or a negative errno / err.h code, returned
 * as is).  Called in order, 4 MiB at a time. */
typedef int (*lz4_fill_fn)(void *arg, uint8_t *dst, size_t n, int64_t at);
int lz4_compress_read(lz4_fill_fn fill, void *arg, int64_t len, int out_fd,
                      int64_t *out_len);
/* Streaming decompression of a whole file of frames to out_fd (written
 * from offset 0).  *out_len gets the decompressed size. */
int lz4_decompress_fd(int in_fd, int out_fd, int64_t *out_len);
/* Streaming decompression of memory to out_fd at out_off. */
int lz4_decompress_to_fd(const uint8_t *src, size_t n, int out_fd,
                         int64_t out_off, int64_t *out_len);

/* Incremental decompression for objects that arrive in pieces (ranged
 * downloads): feed the compressed bytes in order, possibly from different
 * threads one after the other (never concurrently); the content is written
 * to out_fd from out_off.  lz4_dec_end fails with ERR_LZ4 when the input
 * stopped inside a frame or held no frame at all. */
struct lz4_dec;
/* Returns owned; free with lz4_dec_free. */
struct lz4_dec *lz4_dec_new(int out_fd, int64_t out_off);
/* The same, the content given to fn in order instead (pieces of up to one
 * block; fn's non-zero return ends the decoding with that code). */
typedef int (*lz4_sink_fn)(void *arg, const uint8_t *p, size_t n);
struct lz4_dec *lz4_dec_new_sink(lz4_sink_fn fn, void *arg);
int lz4_dec_feed(struct lz4_dec *d, const uint8_t *src, size_t n);
/* *out_len gets the number of content bytes written. */
int lz4_dec_end(struct lz4_dec *d, int64_t *out_len);
void lz4_dec_free(struct lz4_dec *d);

/* Block-level access to frames, for decoding independent blocks in
 * parallel (core/restore_fetch.c).  A frame is its header, blocks (a
 * little-endian size word, bit 31 set for a stored block, 0 for the end
 * mark; then the data and, with block checksums, an XXH32 of it), and
 * after the end mark the content's XXH32 when the header asks for one. */
#define LZ4_FRAME_MAGIC 0x184D2204u
#define LZ4_SKIP_MAGIC 0x184D2A50u /* low 4 bits free */
#define LZ4_FRAME_HEADER_MAX 19

struct lz4_frame_info {
  int indep, block_sum, content_sum, has_size, has_dict;
  uint32_t block_max;
  uint64_t content_size;
};

/* Parses the frame header in the n bytes at p (starting at the magic):
 * returns its length, 0 when n is too short to tell (the full header
 * is at most LZ4_FRAME_HEADER_MAX bytes), or ERR_LZ4. */
int lz4_frame_header(const uint8_t *p, size_t n, struct lz4_frame_info *fi);
/* Decodes one block of n bytes (stored: copied) into dst (cap bytes);
 * *out_len gets its size.  0 or ERR_LZ4. */
int lz4_block_decode(const uint8_t *src, size_t n, int stored, uint8_t *dst,
                     size_t cap, size_t *out_len);

#endif
