#include "backends/base64.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static const char std_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t encode(const uint8_t *in, size_t n, char *out, const char *alpha,
                     int pad) {
  char *o = out;
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    *o++ = alpha[v >> 18 & 63];
    *o++ = alpha[v >> 12 & 63];
    *o++ = alpha[v >> 6 & 63];
    *o++ = alpha[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)in[i + 1] << 8;
    *o++ = alpha[v >> 18 & 63];
    *o++ = alpha[v >> 12 & 63];
    if (i + 1 < n)
      *o++ = alpha[v >> 6 & 63];
    else if (pad)
      *o++ = '=';
    if (pad)
      *o++ = '=';
  }
  *o = '\0';
  return (size_t)(o - out);
}

size_t base64_encode(const uint8_t *in, size_t n, char *out) {
  return encode(in, n, out, std_alpha, 1);
}

char *base64url_encode(const void *in, size_t n) {
  char *out = xmalloc(BASE64_LEN(n) + 1);
  encode(in, n, out, url_alpha, 0);
  return out;
}

static int value_of(char c, int url) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == (url ? '-' : '+'))
    return 62;
  if (c == (url ? '_' : '/'))
    return 63;
  return -1;
}

int base64_decode(const char *in, size_t n, int url, uint8_t **out,
                  size_t *outlen) {
  size_t pad = 0;
  while (pad < 2 && n > pad && in[n - 1 - pad] == '=')
    pad++;
  if (!url && (n % 4 != 0))
    return -EINVAL;
  size_t len = n - pad;
  if (len % 4 == 1)
    return -EINVAL;
  uint8_t *buf = xmalloc(len / 4 * 3 + 3);
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len; i++) {
    int v = value_of(in[i], url);
    if (v < 0) {
      free(buf);
      return -EINVAL;
    }
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      buf[o++] = (uint8_t)(acc >> bits);
    }
  }
  /* Leftover bits must be zero (canonical encoding). */
  if (bits && (acc & ((1u << bits) - 1))) {
    free(buf);
    return -EINVAL;
  }
  buf[o] = '\0';
  *out = buf;
  *outlen = o;
  return 0;
}
