/*
 * Azure Storage "Shared Key" authorization for the Blob service
 * (learn.microsoft.com, "Authorize with Shared Key"), version 2009-09-19
 * and later:
 *
 *   StringToSign = VERB "\n"
 *                  Content-Encoding "\n" Content-Language "\n"
 *                  Content-Length "\n"      (empty when 0, since 2015-02-21)
 *                  Content-MD5 "\n" Content-Type "\n" Date "\n"
 *                  If-Modified-Since "\n" If-Match "\n" If-None-Match "\n"
 *                  If-Unmodified-Since "\n" Range "\n"
 *                  CanonicalizedHeaders       (x-ms-* lower-cased, sorted,
 *                                              "name:value\n" each)
 *                  CanonicalizedResource      ("/" account URL-path, then
 *                                              "\nname:value" per query
 *                                              parameter, names lower-cased
 *                                              and sorted, values decoded,
 *                                              repeated values joined by ",")
 *   Authorization: SharedKey <account>:<base64(HMAC-SHA256(key, STS))>
 *
 * The URL path is taken exactly as sent (percent-encoded).  With a
 * path-style endpoint such as Azurite's http://127.0.0.1:10000/devstoreaccount1
 * the path already starts with the account, so the resource carries it
 * twice: "/devstoreaccount1/devstoreaccount1/container/blob".
 */
#ifndef SLUICE_SHAREDKEY_H
#define SLUICE_SHAREDKEY_H

#include <stddef.h>
#include <stdint.h>

/* The service version sluice speaks (Azurite 3.35 accepts it). */
#define SHAREDKEY_VERSION "2021-08-06"

/* Builds the string to sign.  `path` is the URL path as sent (starting with
 * '/'), `query` the raw query string without '?' (NULL or "" if none).
 * `headers` are "Name: value" lines as sent; standard headers are looked up
 * there by name, case-insensitively.  `content_length` is the body length
 * (0 gives the empty field).  Returns owned string. */
char *sharedkey_string_to_sign(const char *method, const char *account,
                               const char *path, const char *query,
                               char *const *headers, size_t n_headers,
                               int64_t content_length);

/* base64(HMAC-SHA256(key, sts)) into out (45 bytes).  Returns 0 or
 * ERR_AUTH if OpenSSL fails. */
int sharedkey_signature(const uint8_t *key, size_t keylen, const char *sts,
                        char out[45]);

/* Splits an absolute URL into its path ("/" if empty) and raw query (NULL
 * if none), both owned.  Returns 0 or ERR_URL. */
int sharedkey_split_url(const char *url, char **path, char **query);

/* Returns the complete Authorization value "SharedKey account:signature"
 * for a request (owned), or NULL if the URL cannot be parsed. */
char *sharedkey_authorization(const char *method, const char *url,
                              const char *account, const uint8_t *key,
                              size_t keylen, char *const *headers,
                              size_t n_headers, int64_t content_length);

/* RFC 1123 date in GMT, e.g. "Sun, 06 Nov 1994 08:49:37 GMT", independent
 * of the locale.  out must hold 32 bytes. */
void sharedkey_format_date(int64_t ns, char out[32]);
/* Parses the same format; returns 0 and writes *ns, or -EINVAL. */
int sharedkey_parse_date(const char *s, int64_t *ns);

#endif
