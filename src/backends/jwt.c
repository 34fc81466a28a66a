#include "backends/jwt.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#include "backends/base64.h"
#include "base/util.h"

EVP_PKEY *jwt_key_from_pem(const char *pem, size_t len, int public_key) {
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  if (!bio)
    return NULL;
  EVP_PKEY *k = public_key ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)
                           : PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
  BIO_free(bio);
  if (k && EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
    EVP_PKEY_free(k);
    k = NULL;
  }
  return k;
}

char *jwt_sign_rs256(EVP_PKEY *key, const char *header_json,
                     const char *claims_json) {
  char *h = base64url_encode(header_json, strlen(header_json));
  char *c = base64url_encode(claims_json, strlen(claims_json));
  char *input = xasprintf("%s.%s", h, c);
  free(h);
  free(c);
  char *out = NULL;
  unsigned char *sig = NULL;
  size_t siglen = 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
      EVP_DigestSign(ctx, NULL, &siglen, (const unsigned char *)input,
                     strlen(input)) != 1)
    goto done;
  sig = xmalloc(siglen);
  if (EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)input,
                     strlen(input)) != 1)
    goto done;
  char *s = base64url_encode(sig, siglen);
  out = xasprintf("%s.%s", input, s);
  free(s);
done:
  EVP_MD_CTX_free(ctx);
  free(sig);
  free(input);
  return out;
}

int jwt_verify_rs256(EVP_PKEY *key, const char *token, char **claims) {
  const char *d1 = strchr(token, '.');
  const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
  if (!d1 || !d2 || strchr(d2 + 1, '.'))
    return -EINVAL;
  uint8_t *sig = NULL, *hdr = NULL, *cl = NULL;
  size_t siglen, hlen, clen;
  int rc = -EINVAL;
  if (base64_decode(d2 + 1, strlen(d2 + 1), 1, &sig, &siglen) ||
      base64_decode(token, (size_t)(d1 - token), 1, &hdr, &hlen) ||
      base64_decode(d1 + 1, (size_t)(d2 - d1 - 1), 1, &cl, &clen))
    goto done;
  /* Only RS256: never let the token choose another algorithm. */
  json_t *h = json_loads((const char *)hdr, 0, NULL);
  const char *alg = json_string_value(json_object_get(h, "alg"));
  int is_rs256 = alg && !strcmp(alg, "RS256");
  json_decref(h);
  if (!is_rs256)
    goto done;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
      EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)token,
                       (size_t)(d2 - token)) == 1)
    rc = 0;
  EVP_MD_CTX_free(ctx);
  if (!rc && claims) {
    *claims = (char *)cl;
    cl = NULL;
  }
done:
  free(sig);
  free(hdr);
  free(cl);
  return rc;
}
