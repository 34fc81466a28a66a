/*
 * The text side of age: unpadded base64, bech32 and the key strings
 * ("age1..." recipients, "AGE-SECRET-KEY-1..." identities) as
 * filippo.io/age v1.1.1 reads them.  Layout and rules in age.h.
 */
#include "format/age.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

#define IDENTITY_HRP "AGE-SECRET-KEY-"
#define RECIPIENT_HRP "age"

/* ------------------------------------------------------------------ */
/* base64, unpadded and canonical (Go's RawStdEncoding.Strict()).      */

static const char B64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_val(unsigned char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

int age_b64_decode(const char *s, size_t n, uint8_t *out, size_t cap,
                   size_t *outn) {
  if (n % 4 == 1 || n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0) > cap)
    return ERR_AGE_HEADER;
  uint32_t acc = 0;
  int bits = 0;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64_val((unsigned char)s[i]);
    if (v < 0)
      return ERR_AGE_HEADER;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (uint8_t)(acc >> bits);
    }
  }
  /* Left-over bits must be zero, or two strings would decode alike. */
  if (bits && (acc & ((1u << bits) - 1)))
    return ERR_AGE_HEADER;
  *outn = o;
  return 0;
}

size_t age_b64_encode(const uint8_t *p, size_t n, char *out) {
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    acc = acc << 8 | p[i];
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out[o++] = B64[(acc >> bits) & 63];
    }
  }
  if (bits)
    out[o++] = B64[(acc << (6 - bits)) & 63];
  out[o] = 0;
  return o;
}

/* ------------------------------------------------------------------ */
/* bech32                                                              */

static const char CHARSET[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

static uint32_t polymod_step(uint32_t chk, uint8_t v) {
  static const uint32_t G[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd,
                                0x2a1462b3};
  uint32_t b = chk >> 25;
  chk = (chk & 0x1ffffff) << 5 ^ v;
  for (int i = 0; i < 5; i++)
    if ((b >> i) & 1)
      chk ^= G[i];
  return chk;
}

static char lower(char c) {
  return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* The checksum runs over the lower-case hrp and the 5-bit values. */
static uint32_t polymod_hrp(const char *hrp, size_t n) {
  uint32_t chk = 1;
  for (size_t i = 0; i < n; i++)
    chk = polymod_step(chk, (uint8_t)lower(hrp[i]) >> 5);
  chk = polymod_step(chk, 0);
  for (size_t i = 0; i < n; i++)
    chk = polymod_step(chk, (uint8_t)lower(hrp[i]) & 31);
  return chk;
}

int bech32_decode(const char *s, char *hrp, size_t hrpcap, uint8_t *data,
                  size_t cap, size_t *n) {
  size_t len = strlen(s);
  int has_lower = 0, has_upper = 0;
  for (size_t i = 0; i < len; i++) {
    has_lower |= s[i] >= 'a' && s[i] <= 'z';
    has_upper |= s[i] >= 'A' && s[i] <= 'Z';
  }
  const char *sep = strrchr(s, '1');
  if (has_lower && has_upper)
    return ERR_AGE_KEY;
  if (!sep || sep == s || (size_t)(sep - s) + 7 > len)
    return ERR_AGE_KEY;
  size_t hlen = (size_t)(sep - s);
  if (hlen >= hrpcap)
    return ERR_AGE_KEY;
  for (size_t i = 0; i < hlen; i++)
    if (s[i] < 33 || s[i] > 126)
      return ERR_AGE_KEY;
  uint32_t chk = polymod_hrp(s, hlen);
  uint32_t acc = 0;
  int bits = 0;
  size_t o = 0, nvals = len - hlen - 1;
  for (size_t i = 0; i < nvals; i++) {
    const char *c = strchr(CHARSET, lower(sep[1 + i]));
    if (!c || !*c)
      return ERR_AGE_KEY;
    uint8_t v = (uint8_t)(c - CHARSET);
    chk = polymod_step(chk, v);
    if (i + 6 >= nvals)
      continue; /* the checksum, not data */
    acc = acc << 5 | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      if (o == cap)
        return ERR_AGE_KEY;
      data[o++] = (uint8_t)(acc >> bits);
    }
  }
  /* Padding: fewer than 5 bits, all zero. */
  if (chk != 1 || bits >= 5 || (acc & ((1u << bits) - 1)))
    return ERR_AGE_KEY;
  memcpy(hrp, s, hlen);
  hrp[hlen] = 0;
  *n = o;
  return 0;
}

int bech32_encode(const char *hrp, const uint8_t *data, size_t n, char *out,
                  size_t cap) {
  size_t hlen = strlen(hrp);
  size_t nvals = (n * 8 + 4) / 5;
  if (hlen + 1 + nvals + 6 + 1 > cap)
    return ERR_AGE_KEY;
  int upper = 0;
  for (size_t i = 0; i < hlen; i++)
    upper |= hrp[i] >= 'A' && hrp[i] <= 'Z';
  uint32_t chk = polymod_hrp(hrp, hlen);
  size_t o = hlen + 1;
  memcpy(out, hrp, hlen);
  out[hlen] = '1';
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n || bits > 0;) {
    uint8_t v;
    if (bits < 5 && i < n) {
      acc = acc << 8 | data[i++];
      bits += 8;
      continue;
    }
    if (bits >= 5) {
      bits -= 5;
      v = (uint8_t)((acc >> bits) & 31);
    } else {
      v = (uint8_t)((acc << (5 - bits)) & 31);
      bits = 0;
    }
    chk = polymod_step(chk, v);
    out[o++] = CHARSET[v];
  }
  for (int i = 0; i < 6; i++)
    chk = polymod_step(chk, 0);
  chk ^= 1;
  for (int i = 0; i < 6; i++)
    out[o++] = CHARSET[(chk >> (5 * (5 - i))) & 31];
  out[o] = 0;
  if (upper)
    for (size_t i = hlen + 1; i < o; i++)
      if (out[i] >= 'a' && out[i] <= 'z')
        out[i] = (char)(out[i] - 'a' + 'A');
  return 0;
}

/* ------------------------------------------------------------------ */
/* Keys                                                                */

int age_public_key(const uint8_t secret[32], uint8_t pub[32]) {
  EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, secret, 32);
  size_t len = 32;
  int ok = k && EVP_PKEY_get_raw_public_key(k, pub, &len) == 1 && len == 32;
  EVP_PKEY_free(k);
  return ok ? 0 : ERR_AGE_KEY;
}

/* Calls fn on each key line of text; returns its error with the line
 * number in err, or counts the keys in *found. */
typedef int (*key_line_fn)(struct age_keys *k, const char *line,
                           const char **why);

static int each_key_line(struct age_keys *k, const char *text, key_line_fn fn,
                         const char *what, char *err, size_t errlen) {
  int lineno = 0, found = 0;
  const char *p = text;
  while (*p) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    lineno++;
    if (n && p[n - 1] == '\r')
      n--; /* as Go's line scanner does */
    if (n && p[0] != '#') {
      char line[512];
      const char *why = "malformed key";
      int rc = n < sizeof(line) ? 0 : ERR_AGE_KEY;
      if (!rc) {
        memcpy(line, p, n);
        line[n] = 0;
        rc = fn(k, line, &why);
        OPENSSL_cleanse(line, sizeof(line));
      }
      if (rc) {
        snprintf(err, errlen, "line %d: %s", lineno, why);
        return ERR_AGE_KEY;
      }
      found++;
    }
    p += nl ? (size_t)(nl - p) + 1 : strlen(p);
  }
  if (!found) {
    snprintf(err, errlen, "no %s found", what);
    return ERR_AGE_KEY;
  }
  return 0;
}

static int add_recipient(struct age_keys *k, const char *line,
                         const char **why) {
  char hrp[64];
  uint8_t pub[64];
  size_t n;
  if (bech32_decode(line, hrp, sizeof(hrp), pub, sizeof(pub), &n)) {
    *why = "malformed recipient: not a valid bech32 string";
    return ERR_AGE_KEY;
  }
  if (!strcmp(hrp, IDENTITY_HRP)) {
    *why = "this is a secret key (AGE-SECRET-KEY-1...), not a recipient: "
           "secret keys go under identities";
    return ERR_AGE_KEY;
  }
  if (strcmp(hrp, RECIPIENT_HRP)) {
    *why = "unsupported recipient type (only X25519 \"age1...\" recipients)";
    return ERR_AGE_KEY;
  }
  if (n != 32) {
    *why = "malformed recipient: wrong length";
    return ERR_AGE_KEY;
  }
  k->recipients =
      xrealloc(k->recipients, (k->n_recipients + 1) * sizeof(*k->recipients));
  memcpy(k->recipients[k->n_recipients++], pub, 32);
  return 0;
}

static int add_identity(struct age_keys *k, const char *line,
                        const char **why) {
  char hrp[64];
  uint8_t sk[64];
  size_t n;
  int rc = bech32_decode(line, hrp, sizeof(hrp), sk, sizeof(sk), &n);
  if (rc) {
    *why = "malformed secret key: not a valid bech32 string";
  } else if (!strcmp(hrp, RECIPIENT_HRP)) {
    *why = "this is a recipient (public key \"age1...\"), not a secret key: "
           "recipients go under recipients";
    rc = ERR_AGE_KEY;
  } else if (strcmp(hrp, IDENTITY_HRP)) {
    *why = "unsupported identity type (only X25519 \"AGE-SECRET-KEY-1...\" "
           "identities)";
    rc = ERR_AGE_KEY;
  } else if (n != 32) {
    *why = "malformed secret key: wrong length";
    rc = ERR_AGE_KEY;
  }
  struct age_identity id;
  if (!rc) {
    memcpy(id.secret, sk, 32);
    if ((rc = age_public_key(id.secret, id.pub)))
      *why = "malformed secret key";
  }
  if (!rc) {
    k->identities =
        xrealloc(k->identities, (k->n_identities + 1) * sizeof(*k->identities));
    k->identities[k->n_identities++] = id;
  }
  OPENSSL_cleanse(sk, sizeof(sk));
  OPENSSL_cleanse(&id, sizeof(id));
  return rc;
}

int age_keys_add_recipients(struct age_keys *k, const char *text, char *err,
                            size_t errlen) {
  size_t before = k->n_recipients;
  int rc = each_key_line(k, text, add_recipient, "recipients", err, errlen);
  if (rc)
    k->n_recipients = before;
  return rc;
}

int age_keys_add_identities(struct age_keys *k, const char *text, char *err,
                            size_t errlen) {
  size_t before = k->n_identities;
  int rc = each_key_line(k, text, add_identity, "secret keys", err, errlen);
  if (rc && k->n_identities > before) {
    OPENSSL_cleanse(k->identities + before,
                    (k->n_identities - before) * sizeof(*k->identities));
  }
  if (rc)
    k->n_identities = before;
  return rc;
}

void age_keys_destroy(struct age_keys *k) {
  if (k->identities)
    OPENSSL_cleanse(k->identities, k->n_identities * sizeof(*k->identities));
  free(k->identities);
  free(k->recipients);
  memset(k, 0, sizeof(*k));
}

int age_recipient_string(const uint8_t pub[32], char *out, size_t cap) {
  return bech32_encode(RECIPIENT_HRP, pub, 32, out, cap);
}
