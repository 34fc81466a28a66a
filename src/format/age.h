/*
 * age v1 files (https://age-encryption.org/v1) with X25519 recipients: the
 * encryption Litestream 0.3 wraps its objects in (spec 1.2, "age
 * encryption").  Binary files only (no ASCII armor), no passphrases.
 *
 *   header   "age-encryption.org/v1\n"
 *            stanzas, each "-> TYPE ARG...\n" (arguments of VCHARs joined
 *              by single spaces) and a body in unpadded standard base64,
 *              64 columns a line, ended by a shorter (possibly empty) line
 *            "--- MAC\n": HMAC-SHA256 of the header bytes up to and
 *              including "---", keyed by HKDF-SHA256(file key, salt "",
 *              info "header"); MAC in unpadded base64
 *   nonce    16 random bytes
 *   payload  STREAM: ChaCha20-Poly1305 under HKDF-SHA256(file key, salt
 *            nonce, info "payload"), chunks of 64 KiB of plaintext + a
 *            16-byte tag; chunk nonce = 11-byte big-endian counter from 0,
 *            then 1 on the last chunk, else 0.  The last chunk may be full
 *            and is empty only when the whole plaintext is.
 *
 *   X25519 stanza "-> X25519 SHARE", SHARE = base64 of an ephemeral public
 *   key; body (32 bytes) = the 16-byte file key sealed with
 *   ChaCha20-Poly1305, zero nonce, key HKDF-SHA256(X25519(eph, recipient),
 *   salt SHARE || recipient, info "age-encryption.org/v1/X25519").
 *   A recipient is bech32 "age1..." of the 32-byte public key, an identity
 *   bech32 "AGE-SECRET-KEY-1..." of the 32-byte scalar.
 *
 * Crypto comes from OpenSSL 3; the bech32, base64, header and STREAM code
 * is here.  Decryption follows filippo.io/age v1.1.1 (the library
 * Litestream 0.3.13 uses): identities are tried in order, each over every
 * X25519 stanza; a malformed X25519 stanza is a header error, a stanza
 * that does not open is "not this identity"; an scrypt stanza must be
 * alone.  Plaintext is released a chunk at a time, only once authenticated.
 *
 * Secrets (identities, file keys) are wiped when freed and never appear in
 * an error message.
 */
#ifndef SLUICE_AGE_H
#define SLUICE_AGE_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

#define AGE_INTRO "age-encryption.org/v1\n"
#define AGE_MAGIC "age-encryption.org/" /* any version: "this is age" */
#define AGE_FILE_KEY_LEN 16
#define AGE_NONCE_LEN 16
#define AGE_CHUNK 65536
#define AGE_TAG_LEN 16
#define AGE_HEADER_MAX (256 << 10) /* longer headers are refused */
#define AGE_KEY_TEXT_MAX 128       /* an encoded recipient fits */

struct age_identity {
  uint8_t secret[32];
  uint8_t pub[32];
};

struct age_keys {
  uint8_t (*recipients)[32];
  size_t n_recipients;
  struct age_identity *identities;
  size_t n_identities;
};

/* Adds the keys in text, which has the syntax of an age key file (and of
 * filippo.io/age's ParseRecipients/ParseIdentities, which Litestream calls
 * once per config string): one key a line, empty lines and lines starting
 * with '#' ignored, at least one key.  On failure writes a message naming
 * the line and the problem, never the key, and adds nothing. */
int age_keys_add_recipients(struct age_keys *k, const char *text, char *err,
                            size_t errlen);
int age_keys_add_identities(struct age_keys *k, const char *text, char *err,
                            size_t errlen);
/* Wipes and frees everything; k is left empty. */
void age_keys_destroy(struct age_keys *k);

/* bech32 (BIP 173, no length limit, as age uses it).  decode: mixed case
 * is an error; hrp is returned in the string's case; data is 8-bit (the
 * 5-bit groups converted, padding checked).  Returns 0 or ERR_AGE_KEY. */
int bech32_decode(const char *s, char *hrp, size_t hrpcap, uint8_t *data,
                  size_t cap, size_t *n);
/* Writes hrp "1" data checksum, upper-case if hrp is. */
int bech32_encode(const char *hrp, const uint8_t *data, size_t n, char *out,
                  size_t cap);
/* The X25519 public key of a secret scalar. */
int age_public_key(const uint8_t secret[32], uint8_t pub[32]);
/* "age1..." for a public key. */
int age_recipient_string(const uint8_t pub[32], char *out, size_t cap);

/* Unpadded, canonical base64 (standard alphabet), as age writes it. */
int age_b64_decode(const char *s, size_t n, uint8_t *out, size_t cap,
                   size_t *outn);
size_t age_b64_encode(const uint8_t *p, size_t n, char *out);

/* --- the header --- */

struct age_stanza {
  char **args; /* args[0] is the type */
  size_t n_args;
  uint8_t *body;
  size_t body_len;
};

struct age_header {
  struct age_stanza *stanzas;
  size_t n;
  uint8_t mac[32];
  size_t mac_len; /* header bytes the MAC covers (through "---") */
  size_t len;     /* whole header, through the MAC line's newline */
};

/* Parses a whole header (p[0..n) ends with the MAC line).  ERR_AGE_HEADER
 * if it is not a well-formed age v1 header. */
int age_header_parse(const uint8_t *p, size_t n, struct age_header *h);
/* Writes the header, its MAC computed with file_key; h->mac is not used. */
int age_header_format(const struct age_header *h,
                      const uint8_t file_key[AGE_FILE_KEY_LEN],
                      struct buf *out);
void age_header_destroy(struct age_header *h);
/* Finds the file key: ERR_AGE_NO_MATCH when no identity opens any stanza,
 * ERR_AGE_HEADER for a malformed X25519 stanza (or scrypt with others). */
int age_unwrap(const struct age_keys *k, const struct age_header *h,
               uint8_t file_key[AGE_FILE_KEY_LEN]);
/* Checks the header's MAC (p is the header as parsed): ERR_AGE_HMAC. */
int age_header_verify(const uint8_t *p, const struct age_header *h,
                      const uint8_t file_key[AGE_FILE_KEY_LEN]);
/* One X25519 stanza wrapping file_key for a recipient (fresh ephemeral). */
int age_x25519_wrap(const uint8_t recipient[32],
                    const uint8_t file_key[AGE_FILE_KEY_LEN],
                    struct age_stanza *s);

/* --- streaming --- */

/* Where released bytes go; returns 0 or a negative code (which stops the
 * stream and is returned by the feed/write call). */
typedef int (*age_out_fn)(void *arg, const uint8_t *p, size_t n);

struct age_dec;
struct age_enc;

/* Decryption: feed the file in order, in pieces of any size, then end.
 * Returns owned; free with age_dec_free.  k is borrowed. */
struct age_dec *age_dec_new(const struct age_keys *k, age_out_fn out,
                            void *arg);
/* The same with a known file key (tests): no stanza is opened, the MAC is
 * checked with this key. */
struct age_dec *age_dec_new_key(const uint8_t file_key[AGE_FILE_KEY_LEN],
                                age_out_fn out, void *arg);
/* 0 or ERR_AGE_HEADER, ERR_AGE_NO_MATCH, ERR_AGE_HMAC, ERR_AGE_PAYLOAD, or
 * the output's error.  The first error sticks. */
int age_dec_feed(struct age_dec *d, const uint8_t *p, size_t n);
int age_dec_end(struct age_dec *d);
void age_dec_free(struct age_dec *d);

/* Encryption to every recipient of k (at least one), fresh file key and
 * nonce; the header is written by age_enc_new. */
int age_enc_new(const struct age_keys *k, age_out_fn out, void *arg,
                struct age_enc **e);
/* The same with a given file key, nonce and header (tests). */
int age_enc_new_raw(const uint8_t file_key[AGE_FILE_KEY_LEN],
                    const uint8_t nonce[AGE_NONCE_LEN],
                    const struct age_header *h, age_out_fn out, void *arg,
                    struct age_enc **e);
int age_enc_write(struct age_enc *e, const uint8_t *p, size_t n);
int age_enc_end(struct age_enc *e);
void age_enc_free(struct age_enc *e);

/* Encrypts b->data[start..len) in place for k's recipients: the buffer
 * grows by the header and 16 bytes a chunk, never by a second copy. */
int age_encrypt_inplace(const struct age_keys *k, struct buf *b, size_t start);
/* Size of the age file holding n bytes whose header is hdr_len bytes. */
int64_t age_encrypted_size(size_t hdr_len, int64_t n);

#endif
