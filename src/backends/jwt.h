/*
 * JSON Web Tokens signed with RS256 (RFC 7515 / 7518: RSASSA-PKCS1-v1_5
 * with SHA-256), as Google's OAuth2 service-account flow wants them:
 *
 *   base64url(header) "." base64url(claims) "." base64url(signature)
 *
 * where the signature covers the ASCII text before the second dot.  Keys
 * come from PEM text (the "private_key" of a service-account JSON file is
 * PKCS#8 "BEGIN PRIVATE KEY").
 */
#ifndef SLUICE_JWT_H
#define SLUICE_JWT_H

#include <openssl/evp.h>
#include <stddef.h>

/* Parses a PEM private key (PKCS#8 or PKCS#1) or, with public set, a PEM
 * public key.  Returns NULL if it is not one; free with EVP_PKEY_free. */
EVP_PKEY *jwt_key_from_pem(const char *pem, size_t len, int public_key);

/* Signs header and claims (JSON text, used byte for byte) with an RSA key.
 * Returns the compact token (owned), or NULL if signing fails. */
char *jwt_sign_rs256(EVP_PKEY *key, const char *header_json,
                     const char *claims_json);

/* Verifies a compact RS256 token with a public (or private) RSA key.
 * Returns 0 if the signature is valid, -EINVAL otherwise.  On success, when
 * claims is set, writes the decoded claims JSON (owned). */
int jwt_verify_rs256(EVP_PKEY *key, const char *token, char **claims);

#endif
