/*
 * AWS Signature Version 4 (header-based), with OpenSSL's HMAC-SHA256.
 *
 *   CanonicalRequest = Method \n CanonicalURI \n CanonicalQuery \n
 *                      CanonicalHeaders \n SignedHeaders \n PayloadHash
 *   StringToSign     = "AWS4-HMAC-SHA256" \n AmzDate \n Scope \n
 *                      hex(SHA256(CanonicalRequest))
 *   Scope            = YYYYMMDD/region/service/aws4_request
 *   SigningKey       = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region),
 *                      service), "aws4_request")
 *
 * The canonical URI is taken as given (S3 wants the path encoded once and
 * never normalised: callers encode keys with sigv4_uri_encode(key, 0)).
 * The query is canonicalised here: split on '&', each name and value
 * percent-decoded then re-encoded per RFC 3986, "name" without '=' becomes
 * "name=", and pairs sorted by name then value.  Header names are
 * lower-cased, values trimmed with inner runs of spaces collapsed, and
 * repeated names joined with ','.  Every header passed in is signed.
 *
 * Tested against AWS's published vectors in tests/unit/backends/test_sigv4.c.
 */
#ifndef SLUICE_SIGV4_H
#define SLUICE_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#define SIGV4_EMPTY_SHA256                                                     \
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct sigv4_request {
  const char *method;
  const char *path;  /* canonical URI, already encoded, e.g. "/b/k%20x" */
  const char *query; /* raw query without '?', or NULL */
  /* Headers to sign, "Name: value" or "Name:value"; must include Host and
   * X-Amz-Date (and x-amz-content-sha256 for S3). */
  const char *const *headers;
  size_t n_headers;
  const char *payload_hash; /* hex SHA-256 or "UNSIGNED-PAYLOAD" */
  const char *region;
  const char *service;
  const char *amz_date; /* "YYYYMMDDTHHMMSSZ" */
};

struct sigv4_key {
  const char *access_key_id;
  const char *secret_access_key; /* borrowed; never copied into output */
};

/* Returns the value of the Authorization header (owned). */
char *sigv4_authorization(const struct sigv4_request *r,
                          const struct sigv4_key *k);

/* The pieces, for tests and debugging.  All return owned strings. */
char *sigv4_canonical_request(const struct sigv4_request *r,
                              char **signed_headers);
char *sigv4_string_to_sign(const struct sigv4_request *r,
                           const char *canonical_request);
char *sigv4_canonical_query(const char *query);
/* Percent-encodes everything but A-Z a-z 0-9 - . _ ~ (and '/' when
 * keep_slash).  Returns owned string. */
char *sigv4_uri_encode(const char *s, int keep_slash);

/* "YYYYMMDDTHHMMSSZ" for a UNIX time; out holds 17 bytes. */
void sigv4_amz_date(int64_t unix_sec, char out[17]);

/* Hex SHA-256 (65 bytes with NUL). */
void sha256_hex(const void *data, size_t n, char out[65]);
void hmac_sha256(const void *key, size_t klen, const void *data, size_t n,
                 uint8_t out[32]);
/* Incremental SHA-256, for large or file-backed payloads. */
struct sha256_ctx;
struct sha256_ctx *sha256_new(void);
void sha256_update(struct sha256_ctx *c, const void *data, size_t n);
/* Writes the hex digest and frees the context. */
void sha256_final_hex(struct sha256_ctx *c, char out[65]);

/* Base64 of MD5 (Content-MD5 header); out holds 25 bytes. */
void md5_base64(const void *data, size_t n, char out[25]);

#endif
