/*
 * age v1 with X25519 recipients; the layout is in age.h.  OpenSSL 3 gives
 * X25519, HKDF-SHA256, HMAC-SHA256 and ChaCha20-Poly1305; the header and
 * the STREAM chunking are written here (keys, bech32 and base64 in
 * age_keys.c).
 */
#include "format/age.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

#define ENC_CHUNK (AGE_CHUNK + AGE_TAG_LEN)
#define BODY_COLS 64  /* base64 characters per body line */
#define BODY_BYTES 48 /* bytes per full body line */
#define X25519_LABEL "age-encryption.org/v1/X25519"

/* ------------------------------------------------------------------ */
/* OpenSSL primitives                                                  */

static int hkdf(const uint8_t *ikm, size_t ikmlen, const uint8_t *salt,
                size_t saltlen, const char *info, uint8_t *out, size_t outlen) {
  EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
  EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
  OSSL_PARAM params[5], *p = params;
  *p++ = OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0);
  *p++ = OSSL_PARAM_construct_octet_string("key", (void *)ikm, ikmlen);
  if (saltlen)
    *p++ = OSSL_PARAM_construct_octet_string("salt", (void *)salt, saltlen);
  *p++ = OSSL_PARAM_construct_octet_string("info", (void *)info, strlen(info));
  *p = OSSL_PARAM_construct_end();
  int ok = ctx && EVP_KDF_derive(ctx, out, outlen, params) == 1;
  EVP_KDF_CTX_free(ctx);
  EVP_KDF_free(kdf);
  return ok ? 0 : ERR_AGE_KEY;
}

static EVP_PKEY *x25519_key(const uint8_t secret[32]) {
  return EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, secret, 32);
}

/* X25519(secret, point); fails on the all-zero result of a low-order
 * point, as age requires. */
static int x25519(const uint8_t secret[32], const uint8_t point[32],
                  uint8_t out[32]) {
  EVP_PKEY *k = x25519_key(secret);
  EVP_PKEY *peer =
      EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, point, 32);
  EVP_PKEY_CTX *ctx = k && peer ? EVP_PKEY_CTX_new(k, NULL) : NULL;
  size_t len = 32;
  int ok = ctx && EVP_PKEY_derive_init(ctx) == 1 &&
           EVP_PKEY_derive_set_peer(ctx, peer) == 1 &&
           EVP_PKEY_derive(ctx, out, &len) == 1 && len == 32;
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(peer);
  EVP_PKEY_free(k);
  static const uint8_t zero[32];
  if (ok && CRYPTO_memcmp(out, zero, 32) == 0)
    ok = 0;
  return ok ? 0 : ERR_AGE_HEADER;
}

/* Sets key and nonce; the cipher is looked up only on a fresh context
 * (a lookup per 64 KiB chunk would cost a few percent). */
static int aead_init(EVP_CIPHER_CTX *ctx, int enc, const uint8_t key[32],
                     const uint8_t nonce[12]) {
  const EVP_CIPHER *c =
      EVP_CIPHER_CTX_get0_cipher(ctx) ? NULL : EVP_chacha20_poly1305();
  return EVP_CipherInit_ex(ctx, c, NULL, key, nonce, enc) == 1 ? 0 : -1;
}

/* ChaCha20-Poly1305 with a 12-byte nonce; out holds n + 16 bytes (seal)
 * or n - 16 (open).  ctx is reused across chunks. */
static int aead_seal(EVP_CIPHER_CTX *ctx, const uint8_t key[32],
                     const uint8_t nonce[12], const uint8_t *in, size_t n,
                     uint8_t *out) {
  int len = 0, fin = 0;
  if (aead_init(ctx, 1, key, nonce) ||
      (n && EVP_EncryptUpdate(ctx, out, &len, in, (int)n) != 1) ||
      EVP_EncryptFinal_ex(ctx, out + len, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, AGE_TAG_LEN, out + n) !=
          1)
    return ERR_AGE_KEY;
  return 0;
}

static int aead_open(EVP_CIPHER_CTX *ctx, const uint8_t key[32],
                     const uint8_t nonce[12], const uint8_t *in, size_t n,
                     uint8_t *out) {
  if (n < AGE_TAG_LEN)
    return ERR_AGE_PAYLOAD;
  size_t m = n - AGE_TAG_LEN;
  int len = 0, fin = 0;
  if (aead_init(ctx, 0, key, nonce) ||
      (m && EVP_DecryptUpdate(ctx, out, &len, in, (int)m) != 1) ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, AGE_TAG_LEN,
                          (void *)(in + m)) != 1 ||
      EVP_DecryptFinal_ex(ctx, out + len, &fin) != 1)
    return ERR_AGE_PAYLOAD;
  return 0;
}

static EVP_CIPHER_CTX *cipher_ctx(void) {
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  if (!c) {
    fprintf(stderr, "age: out of memory\n");
    abort();
  }
  return c;
}

/* ------------------------------------------------------------------ */
/* Header                                                              */

static void stanza_destroy(struct age_stanza *s) {
  for (size_t i = 0; i < s->n_args; i++)
    free(s->args[i]);
  free(s->args);
  if (s->body)
    OPENSSL_cleanse(s->body, s->body_len);
  free(s->body);
  memset(s, 0, sizeof(*s));
}

void age_header_destroy(struct age_header *h) {
  for (size_t i = 0; i < h->n; i++)
    stanza_destroy(&h->stanzas[i]);
  free(h->stanzas);
  memset(h, 0, sizeof(*h));
}

/* Splits "PREFIX ARG ARG..." on single spaces; every argument must be a
 * non-empty run of VCHARs. */
static int split_args(const char *line, size_t n, const char *prefix,
                      struct age_stanza *s) {
  size_t plen = strlen(prefix);
  if (n < plen || memcmp(line, prefix, plen))
    return ERR_AGE_HEADER;
  size_t i = plen;
  while (i < n) {
    if (line[i] != ' ')
      return ERR_AGE_HEADER; /* e.g. "->x" or "---x" */
    size_t start = ++i;
    while (i < n && line[i] > 32 && line[i] < 127)
      i++;
    if (i == start || (i < n && line[i] != ' '))
      return ERR_AGE_HEADER; /* empty argument, or a control byte */
    s->args = xrealloc(s->args, (s->n_args + 1) * sizeof(*s->args));
    s->args[s->n_args++] = xstrndup(line + start, i - start);
  }
  return s->n_args ? 0 : ERR_AGE_HEADER;
}

/* The next line of p[*pos..n), without its '\n'; ERR_AGE_HEADER if there
 * is no complete line. */
static int next_line(const uint8_t *p, size_t n, size_t *pos, const char **l,
                     size_t *len) {
  const uint8_t *nl = memchr(p + *pos, '\n', n - *pos);
  if (!nl)
    return ERR_AGE_HEADER;
  *l = (const char *)p + *pos;
  *len = (size_t)(nl - (p + *pos));
  *pos += *len + 1;
  return 0;
}

static int parse_body(const uint8_t *p, size_t n, size_t *pos,
                      struct age_stanza *s) {
  for (;;) {
    const char *l;
    size_t len, got;
    uint8_t tmp[BODY_BYTES + 3];
    if (next_line(p, n, pos, &l, &len) || len > BODY_COLS ||
        age_b64_decode(l, len, tmp, sizeof(tmp), &got))
      return ERR_AGE_HEADER;
    s->body = xrealloc(s->body, s->body_len + got + 1);
    memcpy(s->body + s->body_len, tmp, got);
    s->body_len += got;
    if (got < BODY_BYTES)
      return 0; /* a body always ends with a short line */
  }
}

int age_header_parse(const uint8_t *p, size_t n, struct age_header *h) {
  memset(h, 0, sizeof(*h));
  size_t intro = strlen(AGE_INTRO), pos = intro;
  if (n < intro || memcmp(p, AGE_INTRO, intro))
    return ERR_AGE_HEADER;
  int rc = 0;
  for (;;) {
    size_t start = pos;
    const char *l;
    size_t len;
    if ((rc = next_line(p, n, &pos, &l, &len)))
      break;
    if (len >= 3 && !memcmp(l, "---", 3)) {
      struct age_stanza mac = {0};
      size_t got = 0;
      rc = split_args(l, len, "---", &mac);
      if (!rc && (mac.n_args != 1 ||
                  age_b64_decode(mac.args[0], strlen(mac.args[0]), h->mac,
                                 sizeof(h->mac), &got) ||
                  got != 32))
        rc = ERR_AGE_HEADER;
      stanza_destroy(&mac);
      h->mac_len = start + 3;
      h->len = pos;
      if (!rc && pos != n)
        rc = ERR_AGE_HEADER;
      break;
    }
    h->stanzas = xrealloc(h->stanzas, (h->n + 1) * sizeof(*h->stanzas));
    struct age_stanza *s = &h->stanzas[h->n++];
    memset(s, 0, sizeof(*s));
    if ((rc = split_args(l, len, "->", s)) || (rc = parse_body(p, n, &pos, s)))
      break;
  }
  if (rc)
    age_header_destroy(h);
  return rc;
}

static int header_mac(const uint8_t *p, size_t n,
                      const uint8_t file_key[AGE_FILE_KEY_LEN],
                      uint8_t mac[32]) {
  uint8_t key[32];
  unsigned len = 32;
  int rc = hkdf(file_key, AGE_FILE_KEY_LEN, NULL, 0, "header", key, 32);
  if (!rc && !HMAC(EVP_sha256(), key, 32, p, n, mac, &len))
    rc = ERR_AGE_KEY;
  OPENSSL_cleanse(key, sizeof(key));
  return rc;
}

int age_header_verify(const uint8_t *p, const struct age_header *h,
                      const uint8_t file_key[AGE_FILE_KEY_LEN]) {
  uint8_t mac[32];
  int rc = header_mac(p, h->mac_len, file_key, mac);
  if (!rc && CRYPTO_memcmp(mac, h->mac, 32))
    rc = ERR_AGE_HMAC;
  return rc;
}

int age_header_format(const struct age_header *h,
                      const uint8_t file_key[AGE_FILE_KEY_LEN],
                      struct buf *out) {
  size_t start = out->len;
  int rc = buf_append(out, AGE_INTRO, strlen(AGE_INTRO));
  for (size_t i = 0; !rc && i < h->n; i++) {
    const struct age_stanza *s = &h->stanzas[i];
    rc = buf_append(out, "->", 2);
    for (size_t j = 0; !rc && j < s->n_args; j++)
      rc = buf_appendf(out, " %s", s->args[j]);
    char *b64 = xmalloc(s->body_len / 3 * 4 + 8);
    size_t len = age_b64_encode(s->body, s->body_len, b64);
    for (size_t off = 0; !rc; off += BODY_COLS) {
      size_t k = len - off < BODY_COLS ? len - off : BODY_COLS;
      rc = buf_append(out, "\n", 1);
      if (!rc)
        rc = buf_append(out, b64 + off, k);
      if (k < BODY_COLS)
        break;
    }
    free(b64);
    if (!rc)
      rc = buf_append(out, "\n", 1);
  }
  if (!rc)
    rc = buf_append(out, "---", 3);
  uint8_t mac[32];
  if (!rc)
    rc = header_mac(out->data + start, out->len - start, file_key, mac);
  if (!rc) {
    char m[48];
    age_b64_encode(mac, 32, m);
    rc = buf_appendf(out, " %s\n", m);
  }
  if (rc)
    out->len = start;
  return rc;
}

/* One identity over one stanza: 0 with the file key, 1 when it is not
 * this identity's, or ERR_AGE_HEADER. */
static int x25519_unwrap(EVP_CIPHER_CTX *ctx, const struct age_identity *id,
                         const struct age_stanza *s,
                         uint8_t file_key[AGE_FILE_KEY_LEN]) {
  if (strcmp(s->args[0], "X25519"))
    return 1;
  uint8_t share[33], shared[32], salt[64], key[32];
  size_t n = 0;
  if (s->n_args != 2 ||
      age_b64_decode(s->args[1], strlen(s->args[1]), share, sizeof(share),
                     &n) ||
      n != 32)
    return ERR_AGE_HEADER;
  int rc = x25519(id->secret, share, shared);
  if (!rc) {
    memcpy(salt, share, 32);
    memcpy(salt + 32, id->pub, 32);
    rc = hkdf(shared, 32, salt, 64, X25519_LABEL, key, 32) ? ERR_AGE_HEADER : 0;
  }
  if (!rc && s->body_len != AGE_FILE_KEY_LEN + AGE_TAG_LEN)
    rc = ERR_AGE_HEADER;
  if (!rc) {
    static const uint8_t zero[12];
    uint8_t fk[AGE_FILE_KEY_LEN];
    rc = aead_open(ctx, key, zero, s->body, s->body_len, fk) ? 1 : 0;
    if (!rc)
      memcpy(file_key, fk, AGE_FILE_KEY_LEN);
    OPENSSL_cleanse(fk, sizeof(fk));
  }
  OPENSSL_cleanse(shared, sizeof(shared));
  OPENSSL_cleanse(key, sizeof(key));
  return rc;
}

int age_unwrap(const struct age_keys *k, const struct age_header *h,
               uint8_t file_key[AGE_FILE_KEY_LEN]) {
  for (size_t i = 0; i < h->n; i++)
    if (!strcmp(h->stanzas[i].args[0], "scrypt") && h->n != 1)
      return ERR_AGE_HEADER; /* an scrypt stanza must be alone */
  EVP_CIPHER_CTX *ctx = cipher_ctx();
  int rc = ERR_AGE_NO_MATCH;
  for (size_t i = 0; k && i < k->n_identities && rc == ERR_AGE_NO_MATCH; i++)
    for (size_t j = 0; j < h->n; j++) {
      int r = x25519_unwrap(ctx, &k->identities[i], &h->stanzas[j], file_key);
      if (r == 1)
        continue;
      rc = r;
      break;
    }
  EVP_CIPHER_CTX_free(ctx);
  return rc;
}

int age_x25519_wrap(const uint8_t recipient[32],
                    const uint8_t file_key[AGE_FILE_KEY_LEN],
                    struct age_stanza *s) {
  uint8_t eph[32], share[32], shared[32], salt[64], key[32];
  int rc = RAND_bytes(eph, 32) == 1 ? 0 : ERR_AGE_KEY;
  if (!rc)
    rc = age_public_key(eph, share);
  if (!rc)
    rc = x25519(eph, recipient, shared) ? ERR_AGE_KEY : 0;
  if (!rc) {
    memcpy(salt, share, 32);
    memcpy(salt + 32, recipient, 32);
    rc = hkdf(shared, 32, salt, 64, X25519_LABEL, key, 32);
  }
  if (!rc) {
    static const uint8_t zero[12];
    memset(s, 0, sizeof(*s));
    s->body_len = AGE_FILE_KEY_LEN + AGE_TAG_LEN;
    s->body = xmalloc(s->body_len);
    EVP_CIPHER_CTX *ctx = cipher_ctx();
    rc = aead_seal(ctx, key, zero, file_key, AGE_FILE_KEY_LEN, s->body);
    EVP_CIPHER_CTX_free(ctx);
    char b64[48];
    age_b64_encode(share, 32, b64);
    s->n_args = 2;
    s->args = xmalloc(2 * sizeof(*s->args));
    s->args[0] = xstrdup("X25519");
    s->args[1] = xstrdup(b64);
    if (rc)
      stanza_destroy(s);
  }
  OPENSSL_cleanse(eph, sizeof(eph));
  OPENSSL_cleanse(shared, sizeof(shared));
  OPENSSL_cleanse(key, sizeof(key));
  return rc;
}

/* ------------------------------------------------------------------ */
/* STREAM                                                              */

static int payload_key(const uint8_t file_key[AGE_FILE_KEY_LEN],
                       const uint8_t nonce[AGE_NONCE_LEN], uint8_t key[32]) {
  return hkdf(file_key, AGE_FILE_KEY_LEN, nonce, AGE_NONCE_LEN, "payload", key,
              32);
}

static void chunk_nonce(uint64_t counter, int last, uint8_t n[12]) {
  memset(n, 0, 12);
  for (int i = 0; i < 8; i++)
    n[10 - i] = (uint8_t)(counter >> (8 * i));
  n[11] = last ? 1 : 0;
}

enum dec_state { D_HEADER, D_NONCE, D_PAYLOAD };

struct age_dec {
  const struct age_keys *keys; /* borrowed; NULL with a given file key */
  age_out_fn out;
  void *arg;
  enum dec_state state;
  struct buf hdr;
  size_t line_start;
  uint8_t file_key[AGE_FILE_KEY_LEN];
  int have_file_key;
  uint8_t nonce[AGE_NONCE_LEN];
  size_t nonce_len;
  uint8_t key[32];
  uint64_t counter;
  int last_seen;
  uint8_t *chunk; /* ciphertext being gathered */
  size_t chunk_len;
  uint8_t *plain;
  EVP_CIPHER_CTX *ctx;
  int err;
};

struct age_dec *age_dec_new(const struct age_keys *k, age_out_fn out,
                            void *arg) {
  struct age_dec *d = xcalloc(1, sizeof(*d));
  d->keys = k;
  d->out = out;
  d->arg = arg;
  buf_init(&d->hdr, AGE_HEADER_MAX);
  d->ctx = cipher_ctx();
  return d;
}

struct age_dec *age_dec_new_key(const uint8_t file_key[AGE_FILE_KEY_LEN],
                                age_out_fn out, void *arg) {
  struct age_dec *d = age_dec_new(NULL, out, arg);
  memcpy(d->file_key, file_key, AGE_FILE_KEY_LEN);
  d->have_file_key = 1;
  return d;
}

void age_dec_free(struct age_dec *d) {
  if (!d)
    return;
  buf_destroy(&d->hdr);
  if (d->plain)
    OPENSSL_cleanse(d->plain, AGE_CHUNK);
  free(d->plain);
  free(d->chunk);
  EVP_CIPHER_CTX_free(d->ctx);
  OPENSSL_cleanse(d, sizeof(*d));
  free(d);
}

/* The header is complete: parse it, find the file key, check the MAC. */
static int header_done(struct age_dec *d) {
  struct age_header h;
  int rc = age_header_parse(d->hdr.data, d->hdr.len, &h);
  if (rc)
    return rc;
  if (!d->have_file_key)
    rc = age_unwrap(d->keys, &h, d->file_key);
  if (!rc)
    rc = age_header_verify(d->hdr.data, &h, d->file_key);
  age_header_destroy(&h);
  buf_destroy(&d->hdr);
  d->state = D_NONCE;
  return rc;
}

/* Takes header bytes from p; returns how many were used, or an error. */
static int64_t feed_header(struct age_dec *d, const uint8_t *p, size_t n) {
  size_t intro = strlen(AGE_INTRO);
  const uint8_t *nl = memchr(p, '\n', n);
  size_t take = nl ? (size_t)(nl - p) + 1 : n;
  if (buf_append(&d->hdr, p, take))
    return ERR_AGE_HEADER; /* longer than AGE_HEADER_MAX */
  /* Not even the intro: say so now rather than after AGE_HEADER_MAX. */
  size_t k = d->hdr.len < intro ? d->hdr.len : intro;
  if (memcmp(d->hdr.data, AGE_INTRO, k))
    return ERR_AGE_HEADER;
  if (!nl)
    return (int64_t)take;
  const uint8_t *line = d->hdr.data + d->line_start;
  size_t len = d->hdr.len - d->line_start;
  d->line_start = d->hdr.len;
  if (line != d->hdr.data && len >= 3 && !memcmp(line, "---", 3)) {
    int rc = header_done(d);
    if (rc)
      return rc;
  }
  return (int64_t)take;
}

/* Opens one whole chunk of ciphertext (at most ENC_CHUNK bytes) and
 * releases its plaintext.  A full chunk may be the last one: it is tried
 * as a middle chunk, then as the last, as filippo.io/age does. */
static int open_chunk(struct age_dec *d, const uint8_t *c, size_t n,
                      int at_end) {
  if (d->last_seen)
    return ERR_AGE_PAYLOAD; /* data after the last chunk */
  if (!d->plain)
    d->plain = xmalloc(AGE_CHUNK);
  uint8_t nonce[12];
  int last = at_end, rc;
  chunk_nonce(d->counter, last, nonce);
  rc = aead_open(d->ctx, d->key, nonce, c, n, d->plain);
  if (rc && !last && n == ENC_CHUNK) {
    last = 1;
    chunk_nonce(d->counter, last, nonce);
    rc = aead_open(d->ctx, d->key, nonce, c, n, d->plain);
  }
  if (rc)
    return ERR_AGE_PAYLOAD;
  if (last && n == AGE_TAG_LEN && d->counter > 0)
    return ERR_AGE_PAYLOAD; /* only an empty file ends with an empty chunk */
  d->counter++;
  d->last_seen = last;
  return d->out(d->arg, d->plain, n - AGE_TAG_LEN);
}

static int feed_payload(struct age_dec *d, const uint8_t *p, size_t n) {
  while (n > 0) {
    if (d->last_seen)
      return ERR_AGE_PAYLOAD;
    if (d->chunk_len == 0 && n >= ENC_CHUNK) {
      int rc = open_chunk(d, p, ENC_CHUNK, 0);
      if (rc)
        return rc;
      p += ENC_CHUNK;
      n -= ENC_CHUNK;
      continue;
    }
    if (!d->chunk)
      d->chunk = xmalloc(ENC_CHUNK);
    size_t k = MIN(n, ENC_CHUNK - d->chunk_len);
    memcpy(d->chunk + d->chunk_len, p, k);
    d->chunk_len += k;
    p += k;
    n -= k;
    if (d->chunk_len == ENC_CHUNK) {
      d->chunk_len = 0;
      int rc = open_chunk(d, d->chunk, ENC_CHUNK, 0);
      if (rc)
        return rc;
    }
  }
  return 0;
}

int age_dec_feed(struct age_dec *d, const uint8_t *p, size_t n) {
  while (!d->err && n > 0) {
    if (d->state == D_HEADER) {
      int64_t used = feed_header(d, p, n);
      if (used < 0) {
        d->err = (int)used;
        break;
      }
      p += used;
      n -= (size_t)used;
    } else if (d->state == D_NONCE) {
      size_t k = MIN(n, AGE_NONCE_LEN - d->nonce_len);
      memcpy(d->nonce + d->nonce_len, p, k);
      d->nonce_len += k;
      p += k;
      n -= k;
      if (d->nonce_len == AGE_NONCE_LEN) {
        d->err = payload_key(d->file_key, d->nonce, d->key);
        d->state = D_PAYLOAD;
      }
    } else {
      d->err = feed_payload(d, p, n);
      break;
    }
  }
  return d->err;
}

int age_dec_end(struct age_dec *d) {
  if (d->err)
    return d->err;
  if (d->state != D_PAYLOAD)
    d->err = ERR_AGE_HEADER; /* the header or nonce is cut short */
  else if (d->chunk_len > 0)
    d->err = open_chunk(d, d->chunk, d->chunk_len, 1);
  else if (!d->last_seen)
    d->err = ERR_AGE_PAYLOAD; /* no chunks, or no final chunk */
  d->chunk_len = 0;
  return d->err;
}

struct age_enc {
  age_out_fn out;
  void *arg;
  uint8_t key[32];
  uint64_t counter;
  uint8_t *plain;
  size_t len;
  uint8_t *sealed;
  EVP_CIPHER_CTX *ctx;
  int err;
};

int age_enc_new_raw(const uint8_t file_key[AGE_FILE_KEY_LEN],
                    const uint8_t nonce[AGE_NONCE_LEN],
                    const struct age_header *h, age_out_fn out, void *arg,
                    struct age_enc **ep) {
  struct buf hb;
  buf_init(&hb, 0);
  int rc = age_header_format(h, file_key, &hb);
  if (!rc)
    rc = buf_append(&hb, nonce, AGE_NONCE_LEN);
  struct age_enc *e = xcalloc(1, sizeof(*e));
  e->out = out;
  e->arg = arg;
  e->ctx = cipher_ctx();
  e->plain = xmalloc(AGE_CHUNK);
  e->sealed = xmalloc(ENC_CHUNK);
  if (!rc)
    rc = payload_key(file_key, nonce, e->key);
  if (!rc)
    rc = out(arg, hb.data, hb.len);
  buf_destroy(&hb);
  if (rc) {
    age_enc_free(e);
    return rc;
  }
  *ep = e;
  return 0;
}

/* A fresh file key wrapped for every recipient. */
static int new_header(const struct age_keys *k,
                      uint8_t file_key[AGE_FILE_KEY_LEN],
                      uint8_t nonce[AGE_NONCE_LEN], struct age_header *h) {
  memset(h, 0, sizeof(*h));
  if (!k || !k->n_recipients)
    return ERR_AGE_KEY;
  if (RAND_bytes(file_key, AGE_FILE_KEY_LEN) != 1 ||
      RAND_bytes(nonce, AGE_NONCE_LEN) != 1)
    return ERR_AGE_KEY;
  h->stanzas = xcalloc(k->n_recipients, sizeof(*h->stanzas));
  for (size_t i = 0; i < k->n_recipients; i++) {
    int rc = age_x25519_wrap(k->recipients[i], file_key, &h->stanzas[i]);
    if (rc) {
      age_header_destroy(h);
      return rc;
    }
    h->n++;
  }
  return 0;
}

int age_enc_new(const struct age_keys *k, age_out_fn out, void *arg,
                struct age_enc **e) {
  uint8_t file_key[AGE_FILE_KEY_LEN], nonce[AGE_NONCE_LEN];
  struct age_header h;
  int rc = new_header(k, file_key, nonce, &h);
  if (!rc)
    rc = age_enc_new_raw(file_key, nonce, &h, out, arg, e);
  age_header_destroy(&h);
  OPENSSL_cleanse(file_key, sizeof(file_key));
  return rc;
}

static int seal_chunk(struct age_enc *e, int last) {
  uint8_t nonce[12];
  chunk_nonce(e->counter++, last, nonce);
  int rc = aead_seal(e->ctx, e->key, nonce, e->plain, e->len, e->sealed);
  if (!rc)
    rc = e->out(e->arg, e->sealed, e->len + AGE_TAG_LEN);
  e->len = 0;
  return rc;
}

int age_enc_write(struct age_enc *e, const uint8_t *p, size_t n) {
  while (!e->err && n > 0) {
    /* A full chunk is sealed only once more data shows it is not the
     * last one. */
    if (e->len == AGE_CHUNK && (e->err = seal_chunk(e, 0)))
      break;
    size_t k = MIN(n, AGE_CHUNK - e->len);
    memcpy(e->plain + e->len, p, k);
    e->len += k;
    p += k;
    n -= k;
  }
  return e->err;
}

int age_enc_end(struct age_enc *e) {
  if (!e->err)
    e->err = seal_chunk(e, 1);
  return e->err;
}

void age_enc_free(struct age_enc *e) {
  if (!e)
    return;
  OPENSSL_cleanse(e->plain, AGE_CHUNK);
  free(e->plain);
  free(e->sealed);
  EVP_CIPHER_CTX_free(e->ctx);
  OPENSSL_cleanse(e, sizeof(*e));
  free(e);
}

int64_t age_encrypted_size(size_t hdr_len, int64_t n) {
  int64_t chunks = n == 0 ? 1 : (n + AGE_CHUNK - 1) / AGE_CHUNK;
  return (int64_t)hdr_len + AGE_NONCE_LEN + n + chunks * AGE_TAG_LEN;
}

int age_encrypt_inplace(const struct age_keys *k, struct buf *b, size_t start) {
  uint8_t file_key[AGE_FILE_KEY_LEN], nonce[AGE_NONCE_LEN], key[32];
  struct age_header h;
  struct buf hb;
  buf_init(&hb, 0);
  int rc = new_header(k, file_key, nonce, &h);
  if (!rc)
    rc = age_header_format(&h, file_key, &hb);
  if (!rc)
    rc = buf_append(&hb, nonce, AGE_NONCE_LEN);
  if (!rc)
    rc = payload_key(file_key, nonce, key);
  age_header_destroy(&h);
  OPENSSL_cleanse(file_key, sizeof(file_key));
  size_t n = b->len - start;
  size_t chunks = n == 0 ? 1 : (n + AGE_CHUNK - 1) / AGE_CHUNK;
  size_t total = hb.len + n + chunks * AGE_TAG_LEN;
  if (!rc)
    rc = buf_reserve(b, total - n);
  if (!rc) {
    /* From the last chunk back: chunk i moves forward to its sealed place,
     * past the plaintext of every chunk before it, then is sealed in
     * place (OpenSSL allows in == out). */
    EVP_CIPHER_CTX *ctx = cipher_ctx();
    uint8_t *base = b->data + start;
    for (size_t i = chunks; !rc && i-- > 0;) {
      size_t off = i * AGE_CHUNK, len = MIN(n - off, (size_t)AGE_CHUNK);
      uint8_t *dst = base + hb.len + i * ENC_CHUNK;
      memmove(dst, base + off, len);
      uint8_t cn[12];
      chunk_nonce(i, i == chunks - 1, cn);
      rc = aead_seal(ctx, key, cn, dst, len, dst);
    }
    EVP_CIPHER_CTX_free(ctx);
    memcpy(base, hb.data, hb.len);
    b->len = start + total;
  }
  OPENSSL_cleanse(key, sizeof(key));
  buf_destroy(&hb);
  return rc;
}
