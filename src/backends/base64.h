/*
 * Base64 (RFC 4648 section 4) and base64url without padding (section 5, as
 * JWTs use it).  Azure keys, block ids and SharedKey signatures are
 * standard base64; JWT segments are base64url.
 */
#ifndef SLUICE_BASE64_H
#define SLUICE_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Length of the padded base64 text for n bytes, without the NUL. */
#define BASE64_LEN(n) ((((n) + 2) / 3) * 4)

/* Writes padded base64 of in[0..n) and a NUL to out (BASE64_LEN(n) + 1
 * bytes).  Returns the text length. */
size_t base64_encode(const uint8_t *in, size_t n, char *out);
/* Same for base64url without padding.  Returns owned string. */
char *base64url_encode(const void *in, size_t n);

/* Decodes standard base64 (padding required when the length is not a
 * multiple of 4, no whitespace), or base64url when url is set (padding
 * optional).  Returns 0 and an owned buffer in *out / *outlen (NUL
 * terminated for convenience), or -EINVAL on malformed input. */
int base64_decode(const char *in, size_t n, int url, uint8_t **out,
                  size_t *outlen);

#endif
