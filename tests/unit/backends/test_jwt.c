/*
 * RS256 JWTs: a known answer computed independently with the openssl CLI
 * (RSASSA-PKCS1-v1_5 is deterministic), for a throwaway key made with
 *   openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048
 * and
 *   printf %s "$B64URL_HEADER.$B64URL_CLAIMS" |
 *   openssl dgst -sha256 -sign key.pem -binary | base64url
 * plus sign/verify round trips and tampering.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backends/base64.h"
#include "backends/jwt.h"

#include <openssl/rsa.h>
#include "base/util.h"
#include "t.h"

static const char key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDEDT1iaDx+P0B2\n"
    "LdZEmQXJKo57YeWEfwNisVSN6SVKY2ldeHc08bHosokUZf5o2rnvcQNjSsIV3n2h\n"
    "1O60D8b9n9DLwpM9/q0pWnru+wBSR+f2MY6oJmvn1v6uF1jsdZ0PWpxwwWWa88Ac\n"
    "ZSnN071d5R6CzeGX2vXHiUKEk059npU2t0h97WluEQKtGQ1+NMzrvRbsUDkKf5AL\n"
    "92m8uDgRFBEGO6iWM5oRZxU72UHxT3BSpIwdjT4L4OMIZfvlPKG7wzfbNGfEyBew\n"
    "AlzDO2DsXsSxFIeFDqCd+FbCfUcmXX2t3WTYgInN+a8Ut0lAw++uyCsZtyj6rgMp\n"
    "5A7fSHTvAgMBAAECggEAKwKCkHewqbujnymQI610ZP0GlA/Wg9o/emPP2nAnA6pK\n"
    "f7yBXmaVsqiURRrZFNTDTMG8zgglCxor8phdo7gAXjy02DbACa44++UDKjF7kRGA\n"
    "VHTryHzhWFPEvJmXowxsX+Vvg5cR/Mvzveb9pE+K8DHnHygekStylwtIQgB1DD6f\n"
    "TpTLcPsPJbr1fOZc8JVBaqY/SqTHIudbDSZO89Yt6v6k1ear1wFq5Y074x5iNfDK\n"
    "Iyl9KNGCixcdGsN3zcydWNWyT+Sg3Z5MiSOQ0b/d+0Ut6r+UoS64hwjL6dQjteQL\n"
    "jv4hxrTKpulXddKChbWNIEo1kLSb/bzKfYIHUaPEHQKBgQDgO0ydfjpo7QjRoD5O\n"
    "E3gSbiqtQ3JhZL1SAIRRYudV1ry8XboNXnln5ln92kHQEeed+AvRFZFbXpEgBndx\n"
    "7qBXFhaUI/SAsv3SmArg4hLw7qoJu2h9we11uHyscuQ2woiD2vTUF4dXVcv+VgEn\n"
    "H4Z8mcw1LByMzXSs3XBfaj9hlQKBgQDf0+ClwAtQwfMGmGQF2RM11OM+B2m+sJEg\n"
    "XNmytHrOkUIQn0qwhyB2070y3eWEOXddVht688fMMhXKynB5XR5pjLgTtiEBWuWg\n"
    "HfBPGgskpOpdyMQvSGg52TxnJV74+Z3y1aEbVnD6Wfr0pMl7W9P7IytYDCMvNYi+\n"
    "+zjwWwdjcwKBgHIp3uUkumpnnKDV/ELWKMEBdBsJBvhNSRKyDqw9Ndj/XtJsyeg6\n"
    "nIdowZK8h9t+8jT8cE/AsmQZrrvmbvQD8YDFTzOXZsoL161cGdXLZKdkbBBOaXH1\n"
    "xYe1KUzHpie3PbgcR6CgZhjyJs1UTnvz0g4oY88CqXqKtIe6qpb5ylFNAoGAMLj0\n"
    "e+A0Fl5BwrvFeihosB0pYkVG1YWl8b+EfAwhd3nTQb8LCSZBANzSoJIA9il0PFMU\n"
    "JE2QvnhgmgY7OY/1oNBK+a95u8vHlHUv7Ggk6NMlWUjsu8YtOfp51ZIi/FuJ8GRk\n"
    "b4j/it+vazW7ziiNGmvrcX0i45HptHkHSfrmvtUCgYEAqdjOuXv2Isd4ALiruqqS\n"
    "fx569z9fUtENKzhWqaCJ2oUVfRslUztPV4/khROj/JKtjUWutM8ehi4PVA7n2eEM\n"
    "rnXG1kbOWEKSWXWy5Unc+FnmeEVGxRBeltitwbcUpPSDZnllxmJ1kXLTrNY8IB0p\n"
    "8qtxvOFkuu6ZJgK5BUVsq6E=\n"
    "-----END PRIVATE KEY-----\n";

static const char pub_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAxA09Ymg8fj9Adi3WRJkF\n"
    "ySqOe2HlhH8DYrFUjeklSmNpXXh3NPGx6LKJFGX+aNq573EDY0rCFd59odTutA/G\n"
    "/Z/Qy8KTPf6tKVp67vsAUkfn9jGOqCZr59b+rhdY7HWdD1qccMFlmvPAHGUpzdO9\n"
    "XeUegs3hl9r1x4lChJNOfZ6VNrdIfe1pbhECrRkNfjTM670W7FA5Cn+QC/dpvLg4\n"
    "ERQRBjuoljOaEWcVO9lB8U9wUqSMHY0+C+DjCGX75Tyhu8M32zRnxMgXsAJcwztg\n"
    "7F7EsRSHhQ6gnfhWwn1HJl19rd1k2ICJzfmvFLdJQMPvrsgrGbco+q4DKeQO30h0\n"
    "7wIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

static const char header[] =
    "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"0123abcd\"}";
static const char claims[] =
    "{\"iss\":\"sluice-test@example.iam.gserviceaccount.com\",\"scope\":"
    "\"https://www.googleapis.com/auth/devstorage.read_write\",\"aud\":"
    "\"https://oauth2.googleapis.com/token\",\"iat\":1700000000,\"exp\":"
    "1700003600}";

static const char want_jwt[] =
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjAxMjNhYmNkIn0.eyJp"
    "c3MiOiJzbHVpY2UtdGVzdEBleGFtcGxlLmlhbS5nc2VydmljZWFjY291bnQuY29t"
    "Iiwic2NvcGUiOiJodHRwczovL3d3dy5nb29nbGVhcGlzLmNvbS9hdXRoL2RldnN0"
    "b3JhZ2UucmVhZF93cml0ZSIsImF1ZCI6Imh0dHBzOi8vb2F1dGgyLmdvb2dsZWFw"
    "aXMuY29tL3Rva2VuIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDM2MDB9"
    ".brZCQHVcOtDQctb5EW4Q8USkQHpVALpeucS71DXB0dRompC1ObnEn5W90hLG2vU"
    "dbT5YP6H8LGq9ZFusJDL4m3xeSbKUpWqfDk2KJClqi2UFo3dHBhiADncKOTogbWN"
    "u3AN8plrtYctCjyIZIktAtWLfWqytosw1yFgyqflKkTVGVfOfADaOKwPDZ0gRwNK"
    "YeHXpdsADyx5gHhoPFO4d3xy2pPEfN2KRoc9lo1myQ1oBw5GiVDAE3v8JsIQ-H-c"
    "S8uFN2w8Ujn4HgUREQWYquTo6Zk5G-l_1Ktj_gHYTJNXJwu2bwbWZyWuXekfD2Dv"
    "aDXzqxWzKCojXVPz1fFCY-A";

TEST(known_answer_from_openssl_cli) {
  EVP_PKEY *k = jwt_key_from_pem(key_pem, strlen(key_pem), 0);
  CHECK(k != NULL);
  if (!k)
    return;
  char *jwt = jwt_sign_rs256(k, header, claims);
  CHECK_STR(jwt, want_jwt);
  free(jwt);
  EVP_PKEY_free(k);
}

TEST(verify_with_public_key) {
  EVP_PKEY *pub = jwt_key_from_pem(pub_pem, strlen(pub_pem), 1);
  CHECK(pub != NULL);
  if (!pub)
    return;
  char *got = NULL;
  CHECK_INT(jwt_verify_rs256(pub, want_jwt, &got), 0);
  CHECK_STR(got, claims);
  free(got);
  /* One changed claim byte breaks the signature. */
  char *bad = xstrdup(want_jwt);
  char *dot = strchr(bad, '.');
  dot[5] = dot[5] == 'A' ? 'B' : 'A';
  CHECK_INT(jwt_verify_rs256(pub, bad, NULL), -EINVAL);
  free(bad);
  /* alg "none" or HS256 headers are refused whatever the signature. */
  char *h = base64url_encode("{\"alg\":\"none\"}", 15);
  char *none = xasprintf("%s%s", h, strchr(want_jwt, '.'));
  CHECK_INT(jwt_verify_rs256(pub, none, NULL), -EINVAL);
  free(none);
  free(h);
  CHECK_INT(jwt_verify_rs256(pub, "a.b", NULL), -EINVAL);
  CHECK_INT(jwt_verify_rs256(pub, "a.b.c.d", NULL), -EINVAL);
  EVP_PKEY_free(pub);
}

TEST(round_trip_with_fresh_key) {
  EVP_PKEY *k = EVP_RSA_gen(2048);
  CHECK(k != NULL);
  char *jwt = jwt_sign_rs256(k, header, claims);
  CHECK(jwt != NULL);
  CHECK_INT(jwt_verify_rs256(k, jwt, NULL), 0);
  /* Another key does not verify it. */
  EVP_PKEY *pub = jwt_key_from_pem(pub_pem, strlen(pub_pem), 1);
  CHECK_INT(jwt_verify_rs256(pub, jwt, NULL), -EINVAL);
  EVP_PKEY_free(pub);
  free(jwt);
  EVP_PKEY_free(k);
}

TEST(bad_pem) {
  CHECK(jwt_key_from_pem("nope", 4, 0) == NULL);
  CHECK(jwt_key_from_pem(pub_pem, strlen(pub_pem), 0) == NULL);
  CHECK(jwt_key_from_pem(key_pem, 100, 0) == NULL);
}

int main(void) {
  RUN(known_answer_from_openssl_cli);
  RUN(verify_with_public_key);
  RUN(round_trip_with_fresh_key);
  RUN(bad_pem);
  T_DONE();
}
