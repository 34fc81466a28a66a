/* age (format/age.c, age_keys.c): the first byte picks a path.
 *   0  decrypt whatever arrives with the test-kit identity, streamed in
 *      pieces; plaintext is released only for an authenticated file
 *   1  a header that parses formats back to a header that parses alike
 *   2  key text (identities, recipients) never crashes, never echoes
 *   3  encrypt(x) to that identity decrypts back to x */
#include "base/err.h"
#include "format/age.h"
#include "fuzz.h"

#define ID1                                                                    \
  "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0"

static int collect(void *arg, const uint8_t *p, size_t n) {
  return buf_append(arg, p, n);
}

static struct age_keys *keys(void) {
  static struct age_keys k;
  if (!k.n_identities) {
    char err[256], r[AGE_KEY_TEXT_MAX];
    FUZZ_ASSERT(!age_keys_add_identities(&k, ID1, err, sizeof(err)));
    FUZZ_ASSERT(!age_recipient_string(k.identities[0].pub, r, sizeof(r)));
    FUZZ_ASSERT(!age_keys_add_recipients(&k, r, err, sizeof(err)));
  }
  return &k;
}

static void decrypt(const uint8_t *data, size_t size) {
  struct buf out;
  buf_init(&out, 0);
  struct age_dec *d = age_dec_new(keys(), collect, &out);
  size_t step = size ? 1 + data[0] % 251 : 1;
  int rc = 0;
  for (size_t off = 0; off < size && !rc; off += step)
    rc = age_dec_feed(d, data + off, size - off < step ? size - off : step);
  if (!rc)
    rc = age_dec_end(d);
  age_dec_free(d);
  /* Released bytes never exceed the input (each chunk has its tag). */
  FUZZ_ASSERT(out.len <= size);
  buf_destroy(&out);
}

static void reformat(const uint8_t *data, size_t size) {
  struct age_header h, h2;
  if (age_header_parse(data, size, &h))
    return;
  static const uint8_t key[AGE_FILE_KEY_LEN] = {1, 2, 3};
  struct buf out;
  buf_init(&out, 0);
  FUZZ_ASSERT(!age_header_format(&h, key, &out));
  FUZZ_ASSERT(out.len == size && !memcmp(out.data, data, size - 44));
  FUZZ_ASSERT(!age_header_parse(out.data, out.len, &h2));
  FUZZ_ASSERT(h2.n == h.n && !age_header_verify(out.data, &h2, key));
  age_header_destroy(&h2);
  age_header_destroy(&h);
  buf_destroy(&out);
}

/* A key error is one of these, after "line N: ": nothing from the input. */
static const char *const whys[] = {
    "malformed key",
    "malformed recipient: not a valid bech32 string",
    "this is a secret key (AGE-SECRET-KEY-1...), not a recipient: secret "
    "keys go under identities",
    "unsupported recipient type (only X25519 \"age1...\" recipients)",
    "malformed recipient: wrong length",
    "malformed secret key: not a valid bech32 string",
    "this is a recipient (public key \"age1...\"), not a secret key: "
    "recipients go under recipients",
    "unsupported identity type (only X25519 \"AGE-SECRET-KEY-1...\" "
    "identities)",
    "malformed secret key: wrong length",
    "malformed secret key",
};

static int fixed_message(const char *err) {
  if (!strcmp(err, "no recipients found") ||
      !strcmp(err, "no secret keys found"))
    return 1;
  if (strncmp(err, "line ", 5))
    return 0;
  const char *p = err + 5;
  while (*p >= '0' && *p <= '9')
    p++;
  if (p == err + 5 || strncmp(p, ": ", 2))
    return 0;
  for (size_t i = 0; i < sizeof(whys) / sizeof(*whys); i++)
    if (!strcmp(p + 2, whys[i]))
      return 1;
  return 0;
}

static void key_text(const uint8_t *data, size_t size) {
  char *s = fuzz_str(data, size);
  struct age_keys k = {0};
  char err[256];
  if (age_keys_add_identities(&k, s, err, sizeof(err)))
    FUZZ_ASSERT(fixed_message(err));
  if (age_keys_add_recipients(&k, s, err, sizeof(err)))
    FUZZ_ASSERT(fixed_message(err));
  age_keys_destroy(&k);
  free(s);
}

static void round_trip(const uint8_t *data, size_t size) {
  struct buf enc, out;
  buf_init(&enc, 0);
  buf_init(&out, 0);
  buf_append(&enc, data, size);
  FUZZ_ASSERT(!age_encrypt_inplace(keys(), &enc, 0));
  struct age_dec *d = age_dec_new(keys(), collect, &out);
  FUZZ_ASSERT(!age_dec_feed(d, enc.data, enc.len) && !age_dec_end(d));
  age_dec_free(d);
  FUZZ_ASSERT(out.len == size && (!size || !memcmp(out.data, data, size)));
  buf_destroy(&enc);
  buf_destroy(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 1 << 20)
    return 0;
  int which = data[0] % 4;
  data++;
  size--;
  if (which == 0)
    decrypt(data, size);
  else if (which == 1)
    reformat(data, size);
  else if (which == 2)
    key_text(data, size);
  else
    round_trip(data, size);
  return 0;
}
