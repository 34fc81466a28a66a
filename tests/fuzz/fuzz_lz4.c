/* LZ4 frames: decompress whatever arrives (in memory and streamed in
 * pieces), and compress(x) decompresses back to x. */
#include <fcntl.h>
#include <unistd.h>

#include "format/lz4frame.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 1 << 20)
    return 0;
  /* The first byte picks the path (each allocates MiB-sized buffers, which
   * is what bounds the rate under ASan). */
  int which = data[0] % 3;
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
  struct buf c, back;
  buf_init(&c, 0);
  buf_init(&back, 0);
  FUZZ_ASSERT(!lz4_compress(data, size, &c));
  FUZZ_ASSERT(!lz4_decompress(c.data, c.len, &back));
  FUZZ_ASSERT(back.len == size && (!size || !memcmp(back.data, data, size)));
  buf_destroy(&c);
  buf_destroy(&back);
  return 0;
}
