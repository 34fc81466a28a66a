/* LZ4 frames: decompress whatever arrives (in memory and streamed in
 * pieces), and compress(x) decompresses back to x, for x as given and for
 * x stretched into something with long and far matches (pages that
 * repeat with small changes); the encoder's own decode-after-encode check
 * (every block here) never fires. */
#include <fcntl.h>
#include <unistd.h>

#include "format/lz4enc.h"
#include "format/lz4frame.h"
#include "fuzz.h"

/* data repeated at varying distances with a byte changed here and there,
 * up to 300 KB (matches up to the 64 KiB window and beyond). */
static void stretch(const uint8_t *data, size_t size, struct buf *out) {
  buf_init(out, 0);
  if (!size)
    return;
  size_t want = 1000 + (size_t)data[0] * 1200;
  buf_reserve(out, want);
  for (size_t i = 0; out->len < want; i++) {
    size_t n = MIN(size, want - out->len);
    size_t from = out->len > 70000 && (i & 1) ? out->len - 65536 - (i % 7) : 0;
    if (from && from + n <= out->len)
      memcpy(out->data + out->len, out->data + from, n);
    else
      memcpy(out->data + out->len, data, n);
    out->data[out->len + (i * 131) % n] ^= (uint8_t)i;
    out->len += n;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 1 << 20)
    return 0;
  /* The first byte picks the path (each allocates MiB-sized buffers, which
   * is what bounds the rate under ASan). */
  int which = data[0] % 4;
  data++;
  size--;
  if (which == 0) {
    struct buf out;
    buf_init(&out, 64u << 20);
    lz4_decompress(data, size, &out);
    buf_destroy(&out);
    return 0;
  }
  if (which == 1) {
    static int devnull = -1;
    if (devnull < 0)
      devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    struct lz4_dec *d = lz4_dec_new(devnull, 0);
    size_t step = size ? 1 + data[0] % 97 : 1;
    int rc = 0;
    for (size_t off = 0; off < size && !rc; off += step)
      rc = lz4_dec_feed(d, data + off, size - off < step ? size - off : step);
    int64_t n = 0;
    if (!rc)
      lz4_dec_end(d, &n);
    lz4_dec_free(d);
    return 0;
  }
  struct buf c, back, big = {0};
  buf_init(&c, 0);
  buf_init(&back, 0);
  lz4enc_check_all(1);
  if (which == 3) {
    stretch(data, size, &big);
    data = big.data;
    size = big.len;
  }
  FUZZ_ASSERT(!lz4_compress(data, size, &c));
  FUZZ_ASSERT(lz4enc_check_failed == 0);
  FUZZ_ASSERT(!lz4_decompress(c.data, c.len, &back));
  FUZZ_ASSERT(back.len == size && (!size || !memcmp(back.data, data, size)));
  buf_destroy(&c);
  buf_destroy(&back);
  buf_destroy(&big);
  return 0;
}
