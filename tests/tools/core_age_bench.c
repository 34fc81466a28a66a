/*
 * Throughput of the object codec with and without age (core/codec.c):
 *
 *   core_age_bench [MB]
 *
 * Encodes MB of data (default 64; half SQLite-like text pages, half
 * random) as one object, plain LZ4 and LZ4 + age (in place, as WAL
 * segments are), and decodes it back through the streaming decoder into
 * /dev/null in 8 MiB pieces (as restore's ranged GETs arrive); also the
 * age layer alone.  Prints MB/s of plaintext; best of 3 runs.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "core/codec.h"
#include "format/age.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fill(uint8_t *p, size_t n) {
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = (i / 4096) % 2 ? (uint8_t)x : (uint8_t)("row 42|sluice|"[i % 14]);
  }
}

static int discard(void *arg, const uint8_t *p, size_t n) {
  (void)arg;
  (void)p;
  (void)n;
  return 0;
}

/* Seconds to decode obj through the codec into fd, fed in 8 MiB pieces. */
static double decode(const struct backend *b, const struct buf *obj, int fd) {
  double t = now();
  struct codec_dec *d = codec_dec_new(b, fd, 0);
  size_t step = 8 << 20;
  int rc = 0;
  for (size_t off = 0; !rc && off < obj->len; off += step)
    rc = codec_dec_feed(d, obj->data + off, MIN(step, obj->len - off));
  int64_t out = 0;
  if (!rc)
    rc = codec_dec_end(d, &out);
  codec_dec_free(d);
  if (rc) {
    fprintf(stderr, "decode failed: %d\n", rc);
    exit(1);
  }
  return now() - t;
}

int main(int argc, char **argv) {
  size_t mb = argc > 1 ? (size_t)atoi(argv[1]) : 64;
  size_t n = mb << 20;
  uint8_t *data = xmalloc(n);
  fill(data, n);
  int fd = open("/dev/null", O_WRONLY);

  struct backend plain, enc;
  memset(&plain, 0, sizeof(plain));
  memset(&enc, 0, sizeof(enc));
  char err[256], sk[128], r[128];
  uint8_t secret[32];
  for (int i = 0; i < 32; i++)
    secret[i] = (uint8_t)(i * 7 + 1);
  bech32_encode("AGE-SECRET-KEY-", secret, 32, sk, sizeof(sk));
  if (age_keys_add_identities(&enc.age, sk, err, sizeof(err)))
    return 1;
  age_recipient_string(enc.age.identities[0].pub, r, sizeof(r));
  if (age_keys_add_recipients(&enc.age, r, err, sizeof(err)))
    return 1;

  double best[6] = {1e9, 1e9, 1e9, 1e9, 1e9, 1e9};
  struct buf po, eo, ao;
  buf_init(&po, 0);
  buf_init(&eo, 0);
  buf_init(&ao, 0);
  for (int run = 0; run < 3; run++) {
    buf_reset(&po);
    buf_reset(&eo);
    buf_reset(&ao);
    double t = now();
    codec_encode(&plain, data, n, &po);
    best[0] = MIN(best[0], now() - t);
    t = now();
    codec_encode(&enc, data, n, &eo);
    best[1] = MIN(best[1], now() - t);
    best[2] = MIN(best[2], decode(&plain, &po, fd));
    best[3] = MIN(best[3], decode(&enc, &eo, fd));
    /* The age layer alone, on incompressible bytes of the same size. */
    buf_append(&ao, data, n);
    t = now();
    age_encrypt_inplace(&enc.age, &ao, 0);
    best[4] = MIN(best[4], now() - t);
    t = now();
    struct age_dec *d = age_dec_new(&enc.age, discard, NULL);
    size_t step = 8 << 20;
    for (size_t off = 0; off < ao.len; off += step)
      age_dec_feed(d, ao.data + off, MIN(step, ao.len - off));
    if (age_dec_end(d))
      return 1;
    age_dec_free(d);
    best[5] = MIN(best[5], now() - t);
  }
  printf("%zu MiB object, LZ4 %.1f%% of the input; MB/s of plaintext "
         "(best of 3)\n",
         mb, 100.0 * (double)po.len / (double)n);
  printf("| step | plain LZ4 | LZ4 + age | ratio |\n|---|---|---|---|\n");
  printf("| encode (LZ4, then age in place) | %.0f | %.0f | %.2f |\n",
         mb / best[0], mb / best[1], best[0] / best[1]);
  printf("| decode (streamed, 8 MiB pieces) | %.0f | %.0f | %.2f |\n",
         mb / best[2], mb / best[3], best[2] / best[3]);
  printf("| age alone: encrypt in place | - | %.0f | - |\n", mb / best[4]);
  printf("| age alone: decrypt streamed | - | %.0f | - |\n", mb / best[5]);
  buf_destroy(&po);
  buf_destroy(&eo);
  buf_destroy(&ao);
  age_keys_destroy(&enc.age);
  free(data);
  close(fd);
  return 0;
}
