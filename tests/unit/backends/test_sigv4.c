/*
 * SigV4 against AWS's published vectors: the generic signature test suite
 * (AKIDEXAMPLE, 2015-08-30T12:36:00Z, service "service") and the worked
 * examples of the S3 SigV4 documentation (AKIAIOSFODNN7EXAMPLE,
 * 2013-05-24).  Only the inputs and expected values come from AWS.
 */
#include <stdlib.h>
#include <string.h>

#include "backends/sigv4.h"
#include "base/util.h"
#include "t.h"

#define SUITE_DATE "20150830T123600Z"
#define SUITE_HOST "Host:example.amazonaws.com"
#define SUITE_XDATE "X-Amz-Date:" SUITE_DATE
#define S3_DATE "20130524T000000Z"
#define S3_HOST "Host:examplebucket.s3.amazonaws.com"

static const struct sigv4_key suite_key = {
    "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"};
static const struct sigv4_key s3_key = {
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"};

/* Returns the Signature= part of the Authorization header (static). */
static const char *sig_of(const char *authz) {
  static char out[80];
  const char *p = strstr(authz, "Signature=");
  snprintf(out, sizeof(out), "%s", p ? p + 10 : "(none)");
  return out;
}

static char *suite_sign(const char *method, const char *path, const char *query,
                        const char *const *hdrs, size_t n,
                        const char *payload_hash) {
  struct sigv4_request r = {
      .method = method,
      .path = path,
      .query = query,
      .headers = hdrs,
      .n_headers = n,
      .payload_hash = payload_hash,
      .region = "us-east-1",
      .service = "service",
      .amz_date = SUITE_DATE,
  };
  return sigv4_authorization(&r, &suite_key);
}

TEST(suite_get_vanilla) {
  const char *h[] = {SUITE_HOST, SUITE_XDATE};
  char *a = suite_sign("GET", "/", NULL, h, 2, NULL);
  CHECK_STR(a, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/"
               "service/aws4_request, SignedHeaders=host;x-amz-date, "
               "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b"
               "8aae1d763fbf31");
  free(a);
}

TEST(suite_get_vanilla_query_order_key_case) {
  const char *h[] = {SUITE_HOST, SUITE_XDATE};
  char *a = suite_sign("GET", "/", "Param2=value2&Param1=value1", h, 2, NULL);
  CHECK_STR(sig_of(a), "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d32"
                       "19ec94cdf2500");
  free(a);
}

TEST(suite_get_vanilla_empty_query_key) {
  const char *h[] = {SUITE_HOST, SUITE_XDATE};
  char *a = suite_sign("GET", "/", "Param1=value1", h, 2, NULL);
  CHECK_STR(sig_of(a), "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45"
                       "aec72011b9aeb");
  free(a);
}

TEST(suite_get_vanilla_query_unreserved) {
  const char *h[] = {SUITE_HOST, SUITE_XDATE};
  char *a = suite_sign("GET", "/",
                       "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm"
                       "nopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXY"
                       "Zabcdefghijklmnopqrstuvwxyz",
                       h, 2, NULL);
  CHECK_STR(sig_of(a), "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc08840271"
                       "67c21bb143a40197");
  free(a);
}

TEST(suite_get_utf8_path_and_query) {
  const char *h[] = {SUITE_HOST, SUITE_XDATE};
  char *path = sigv4_uri_encode("/\xe1\x88\xb4", 1);
  CHECK_STR(path, "/%E1%88%B4");
  char *a = suite_sign("GET", path, NULL, h, 2, NULL);
  CHECK_STR(sig_of(a), "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891"
                       "fd03141be5d85");
  free(a);
  free(path);
  /* get-vanilla-utf8-query: the raw UTF-8 name is encoded by the signer. */
  a = suite_sign("GET", "/", "\xe1\x88\xb4=bar", h, 2, NULL);
  CHECK_STR(sig_of(a), "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e1"
                       "2c9027818dd04");
  free(a);
}

TEST(suite_post_vanilla) {
  const char *h[] = {SUITE_HOST, SUITE_XDATE};
  char *a = suite_sign("POST", "/", NULL, h, 2, NULL);
  CHECK_STR(sig_of(a), "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb"
                       "68e92efbe5d6b");
  free(a);
}

TEST(suite_post_x_www_form_urlencoded) {
  const char *body = "Param1=value1";
  char hash[65];
  sha256_hex(body, strlen(body), hash);
  CHECK_STR(hash, "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b"
                  "24d0b6e");
  const char *h[] = {"Content-Type:application/x-www-form-urlencoded",
                     SUITE_HOST, SUITE_XDATE};
  struct sigv4_request r = {"POST", "/",         NULL,      h,         3,
                            hash,   "us-east-1", "service", SUITE_DATE};
  char *sh = NULL;
  char *cr = sigv4_canonical_request(&r, &sh);
  CHECK_STR(cr, "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\n"
                "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                "content-type;host;x-amz-date\n"
                "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d"
                "0b6e");
  CHECK_STR(sh, "content-type;host;x-amz-date");
  char *sts = sigv4_string_to_sign(&r, cr);
  CHECK_STR(sts, "AWS4-HMAC-SHA256\n20150830T123600Z\n"
                 "20150830/us-east-1/service/aws4_request\n"
                 "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c21540"
                 "21281");
  char *a = sigv4_authorization(&r, &suite_key);
  CHECK_STR(sig_of(a), "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d"
                       "196a0fe09473a");
  free(a);
  free(sts);
  free(cr);
  free(sh);
}

TEST(suite_get_header_value_trim) {
  const char *h[] = {SUITE_HOST, "My-Header1: value1",
                     "My-Header2: \"a   b   c\"", SUITE_XDATE};
  struct sigv4_request r = {"GET", "/",         NULL,      h,         4,
                            NULL,  "us-east-1", "service", SUITE_DATE};
  char *sh = NULL;
  char *cr = sigv4_canonical_request(&r, &sh);
  CHECK(strstr(cr, "\nmy-header2:\"a b c\"\n") != NULL);
  CHECK_STR(sh, "host;my-header1;my-header2;x-amz-date");
  char *a = sigv4_authorization(&r, &suite_key);
  CHECK_STR(sig_of(a), "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055de"
                       "e359757a9c736");
  free(a);
  free(cr);
  free(sh);
}

TEST(suite_get_vanilla_with_session_token) {
  const char *h[] = {SUITE_HOST, SUITE_XDATE,
                     "X-Amz-Security-Token:6e86291e8372ff2a2260956d9b8aae1d76"
                     "3fbf315fa00fa31553b73ebf194267"};
  char *a = suite_sign("GET", "/", NULL, h, 3, NULL);
  CHECK(strstr(a, "SignedHeaders=host;x-amz-date;x-amz-security-token,"));
  CHECK_STR(sig_of(a), "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044"
                       "c66dd9f74e7f8");
  free(a);
}

TEST(suite_duplicate_header_joined_in_order) {
  const char *h[] = {SUITE_HOST, "My-Header1:value2", "My-Header1:value2",
                     "My-Header1:value1", SUITE_XDATE};
  struct sigv4_request r = {"GET", "/",         NULL,      h,         5,
                            NULL,  "us-east-1", "service", SUITE_DATE};
  char *sh = NULL;
  char *cr = sigv4_canonical_request(&r, &sh);
  CHECK(strstr(cr, "\nmy-header1:value2,value2,value1\n") != NULL);
  CHECK_STR(sh, "host;my-header1;x-amz-date");
  free(cr);
  free(sh);
}

static char *s3_sign(const char *method, const char *path, const char *query,
                     const char *const *h, size_t n, const char *hash,
                     char **cr_out) {
  struct sigv4_request r = {method, path,        query, h,      n,
                            hash,   "us-east-1", "s3",  S3_DATE};
  if (cr_out)
    *cr_out = sigv4_canonical_request(&r, NULL);
  return sigv4_authorization(&r, &s3_key);
}

TEST(s3_get_object_with_range) {
  const char *h[] = {S3_HOST, "Range: bytes=0-9",
                     "x-amz-content-sha256:" SIGV4_EMPTY_SHA256,
                     "x-amz-date: " S3_DATE};
  char *cr = NULL;
  char *a = s3_sign("GET", "/test.txt", NULL, h, 4, SIGV4_EMPTY_SHA256, &cr);
  CHECK_STR(cr,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\n"
            "range:bytes=0-9\nx-amz-content-sha256:" SIGV4_EMPTY_SHA256
            "\nx-amz-date:20130524T000000Z\n\n"
            "host;range;x-amz-content-sha256;x-amz-date\n" SIGV4_EMPTY_SHA256);
  CHECK_STR(a, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/"
               "us-east-1/s3/aws4_request, SignedHeaders=host;range;"
               "x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e"
               "857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  free(a);
  free(cr);
}

TEST(s3_put_object) {
  const char *body = "Welcome to Amazon S3.";
  char hash[65];
  sha256_hex(body, strlen(body), hash);
  CHECK_STR(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b80"
                  "3f8b072");
  char *key = sigv4_uri_encode("test$file.text", 0);
  char *path = xasprintf("/%s", key);
  CHECK_STR(path, "/test%24file.text");
  char *hh = xasprintf("x-amz-content-sha256:%s", hash);
  const char *h[] = {S3_HOST, "Date: Fri, 24 May 2013 00:00:00 GMT", hh,
                     "x-amz-date:" S3_DATE,
                     "x-amz-storage-class:REDUCED_REDUNDANCY"};
  char *a = s3_sign("PUT", path, NULL, h, 5, hash, NULL);
  CHECK(strstr(a, "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
                  "x-amz-storage-class,"));
  CHECK_STR(sig_of(a), "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b59"
                       "71af0ece108bd");
  free(a);
  free(hh);
  free(path);
  free(key);
}

TEST(s3_get_bucket_lifecycle_valueless_param) {
  const char *h[] = {S3_HOST, "x-amz-content-sha256:" SIGV4_EMPTY_SHA256,
                     "x-amz-date:" S3_DATE};
  char *cr = NULL;
  char *a = s3_sign("GET", "/", "lifecycle", h, 3, SIGV4_EMPTY_SHA256, &cr);
  CHECK(str_has_prefix(cr, "GET\n/\nlifecycle=\n"));
  char hash[65];
  sha256_hex(cr, strlen(cr), hash);
  CHECK_STR(hash, "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c"
                  "77395ca");
  CHECK_STR(sig_of(a), "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a2"
                       "00a0136783543");
  free(a);
  free(cr);
}

TEST(s3_list_objects_sorted_query) {
  const char *h[] = {S3_HOST, "x-amz-content-sha256:" SIGV4_EMPTY_SHA256,
                     "x-amz-date:" S3_DATE};
  /* Written out of order: the signer sorts. */
  char *a = s3_sign("GET", "/", "prefix=J&max-keys=2", h, 3, SIGV4_EMPTY_SHA256,
                    NULL);
  CHECK_STR(sig_of(a), "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed"
                       "5711ef69dc6f7");
  free(a);
}

TEST(canonical_query_encoding) {
  char *q = sigv4_canonical_query("prefix=db%2Fgen%2F&list-type=2&delete");
  CHECK_STR(q, "delete=&list-type=2&prefix=db%2Fgen%2F");
  free(q);
  q = sigv4_canonical_query("a=x y+z&b=%7e");
  CHECK_STR(q, "a=x%20y%2Bz&b=~");
  free(q);
  q = sigv4_canonical_query(NULL);
  CHECK_STR(q, "");
  free(q);
  char *e = sigv4_uri_encode("a b/c~d+%\xc3\xa9", 1);
  CHECK_STR(e, "a%20b/c~d%2B%25%C3%A9");
  free(e);
}

TEST(amz_date_and_encodings) {
  char d[17];
  sigv4_amz_date(1369353600, d);
  CHECK_STR(d, "20130524T000000Z");
  sigv4_amz_date(1440938160, d);
  CHECK_STR(d, SUITE_DATE);
  char md5[25];
  /* RFC 1321's "abc" digest, base64-encoded. */
  md5_base64("abc", 3, md5);
  CHECK_STR(md5, "kAFQmDzST7DWlj99KOF/cg==");
  struct sha256_ctx *c = sha256_new();
  sha256_update(c, "Welcome to ", 11);
  sha256_update(c, "Amazon S3.", 10);
  char h[65];
  sha256_final_hex(c, h);
  CHECK_STR(h, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8"
               "b072");
}

int main(void) {
  RUN(suite_get_vanilla);
  RUN(suite_get_vanilla_query_order_key_case);
  RUN(suite_get_vanilla_empty_query_key);
  RUN(suite_get_vanilla_query_unreserved);
  RUN(suite_get_utf8_path_and_query);
  RUN(suite_post_vanilla);
  RUN(suite_post_x_www_form_urlencoded);
  RUN(suite_get_header_value_trim);
  RUN(suite_get_vanilla_with_session_token);
  RUN(suite_duplicate_header_joined_in_order);
  RUN(s3_get_object_with_range);
  RUN(s3_put_object);
  RUN(s3_get_bucket_lifecycle_valueless_param);
  RUN(s3_list_objects_sorted_query);
  RUN(canonical_query_encoding);
  RUN(amz_date_and_encodings);
  T_DONE();
}
