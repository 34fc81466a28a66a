/*
 * Azure Shared Key signing: strings-to-sign built by hand from the
 * documented format ("Authorize with Shared Key", Blob service), and
 * signatures computed independently with
 *   printf "$STS" | openssl dgst -sha256 -mac HMAC -macopt hexkey:$KEY |
 *   base64
 * using Azurite's published development key; one case is copied from
 * Azurite's debug log.  test_abs_live checks the same code against Azurite
 * itself.
 */
#include <stdlib.h>
#include <string.h>

#include "backends/base64.h"
#include "backends/sharedkey.h"
#include "base/util.h"
#include "t.h"

static const char dev_key_b64[] =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
    "K1SZFPTOtr/KBHBeksoGMGw==";

static const char date[] = "Fri, 26 Jun 2015 23:39:12 GMT";

struct sk_case {
  const char *method;
  const char *url;
  const char *account;
  const char *headers[6];
  int64_t content_length;
  const char *sts;
  const char *sig;
};

static const struct sk_case cases[] = {
    /* Get Blob with a range, path style (Azurite): account twice. */
    {"GET",
     "http://127.0.0.1:10000/devstoreaccount1/mycontainer/dir/hello.txt",
     "devstoreaccount1",
     {"x-ms-date: Fri, 26 Jun 2015 23:39:12 GMT", "x-ms-version: 2021-08-06",
      "x-ms-range: bytes=0-9"},
     0,
     "GET\n\n\n\n\n\n\n\n\n\n\n\n"
     "x-ms-date:Fri, 26 Jun 2015 23:39:12 GMT\n"
     "x-ms-range:bytes=0-9\n"
     "x-ms-version:2021-08-06\n"
     "/devstoreaccount1/devstoreaccount1/mycontainer/dir/hello.txt",
     "s6Gye7kRP5rylkCoV+Ayrea7ydK32bMDma1Kda22PAw="},
    /* Put Blob: Content-Length and Content-Type are fields 4 and 6. */
    {"PUT",
     "http://127.0.0.1:10000/devstoreaccount1/mycontainer/db/generations/"
     "0123456789abcdef/wal/00000000_00000000.wal.lz4",
     "devstoreaccount1",
     {"Content-Type: application/octet-stream", "x-ms-blob-type: BlockBlob",
      "x-ms-version: 2021-08-06", "x-ms-date: Fri, 26 Jun 2015 23:39:12 GMT"},
     13,
     "PUT\n\n\n13\n\napplication/octet-stream\n\n\n\n\n\n\n"
     "x-ms-blob-type:BlockBlob\n"
     "x-ms-date:Fri, 26 Jun 2015 23:39:12 GMT\n"
     "x-ms-version:2021-08-06\n"
     "/devstoreaccount1/devstoreaccount1/mycontainer/db/generations/"
     "0123456789abcdef/wal/00000000_00000000.wal.lz4",
     "shtj3/0IO/NYsCbxVHGdNze1GbnyzebkpVCzn1g5K6M="},
    /* List Blobs: query names sorted, values decoded. */
    {"GET",
     "http://127.0.0.1:10000/devstoreaccount1/mycontainer?restype=container&"
     "comp=list&prefix=db%2Fgenerations%2F&delimiter=%2F&marker=2%2188%21abc",
     "devstoreaccount1",
     {"x-ms-date: Fri, 26 Jun 2015 23:39:12 GMT", "x-ms-version: 2021-08-06"},
     0,
     "GET\n\n\n\n\n\n\n\n\n\n\n\n"
     "x-ms-date:Fri, 26 Jun 2015 23:39:12 GMT\n"
     "x-ms-version:2021-08-06\n"
     "/devstoreaccount1/devstoreaccount1/mycontainer\n"
     "comp:list\ndelimiter:/\nmarker:2!88!abc\nprefix:db/generations/\n"
     "restype:container",
     "xbXcUagSL8gVY4mrgyHUe6k3UMOq4KXwCdynoHhp1gY="},
    /* The example of the Microsoft documentation (Get Container Metadata,
     * path style), signed here with the dev key. */
    {"GET",
     "http://127.0.0.1:10000/myaccount/mycontainer?restype=container&comp="
     "metadata&timeout=20",
     "myaccount",
     {"x-ms-date: Sun, 11 Oct 2009 21:49:13 GMT", "x-ms-version: 2009-09-19"},
     0,
     "GET\n\n\n\n\n\n\n\n\n\n\n\n"
     "x-ms-date:Sun, 11 Oct 2009 21:49:13 GMT\n"
     "x-ms-version:2009-09-19\n"
     "/myaccount/myaccount/mycontainer\ncomp:metadata\nrestype:container\n"
     "timeout:20",
     "Su5rvibNeMxB7A4I87rOtEgCDtdICsL8v5H+yJs0W+M="},
    /* Taken from Azurite's own debug log (-d): its string to sign and
     * "Calculated authentication header based on key1" for a Put Blob of
     * a name that needs percent-encoding. */
    {"PUT",
     "http://127.0.0.1:10200/devstoreaccount1/sluice-test-18240-e77a0beb/db/"
     "one/odd/a%20b%2Bc%25d%26e%3Df%3Fg%23h~%21%27%28%29%2A%2C%3B%3A%40%24.txt",
     "devstoreaccount1",
     {"x-ms-version: 2021-08-06", "x-ms-blob-type: BlockBlob",
      "Content-Type: application/octet-stream",
      "x-ms-date: Thu, 26 Nov 2026 15:51:45 GMT"},
     1,
     "PUT\n\n\n1\n\napplication/octet-stream\n\n\n\n\n\n\nx-ms-blob-type:"
     "BlockBlob\nx-ms-date:Thu, 26 Nov 2026 15:51:45 GMT\nx-ms-version:2021-"
     "08-06\n/devstoreaccount1/devstoreaccount1/sluice-test-18240-e77a0beb/db/"
     "one/odd/a%20b%2Bc%25d%26e%3Df%3Fg%23h~%21%27%28%29%2A%2C%3B%3A%40%24.txt",
     "bNyWtQtN40RzqnSKRg3MfnZBcd9b5iFQiPFWeOOgCaE="},
    /* Host style (real Azure): path kept encoded; header names lower-cased
     * and values folded; repeated (case-insensitive) query names joined in
     * sorted order; a zero Content-Length is the empty field; non-x-ms
     * headers other than the standard ones are not signed. */
    {"DELETE",
     "https://myaccount.blob.core.windows.net/mycontainer/a%20b.txt?a=2&A=1",
     "myaccount",
     {"X-MS-Meta-Foo:   a  \t b  ", "User-Agent: sluice",
      "x-ms-version: 2021-08-06", "x-ms-date: Fri, 26 Jun 2015 23:39:12 GMT"},
     0,
     "DELETE\n\n\n\n\n\n\n\n\n\n\n\n"
     "x-ms-date:Fri, 26 Jun 2015 23:39:12 GMT\n"
     "x-ms-meta-foo:a b\n"
     "x-ms-version:2021-08-06\n"
     "/myaccount/mycontainer/a%20b.txt\na:1,2",
     "W9sJErV9b8bQtR525uRlG9EDD1yTpPNKTFnlp2bEmM0="},
};

static size_t n_headers(const struct sk_case *c) {
  size_t n = 0;
  while (n < ARRAY_SIZE(c->headers) && c->headers[n])
    n++;
  return n;
}

TEST(strings_to_sign_follow_the_documented_format) {
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    const struct sk_case *c = &cases[i];
    char *path, *query;
    CHECK_INT(sharedkey_split_url(c->url, &path, &query), 0);
    char *sts = sharedkey_string_to_sign(c->method, c->account, path, query,
                                         (char *const *)c->headers,
                                         n_headers(c), c->content_length);
    CHECK_STR(sts, c->sts);
    free(sts);
    free(path);
    free(query);
  }
}

TEST(signatures_match_openssl_cli) {
  uint8_t *key;
  size_t keylen;
  CHECK_INT(base64_decode(dev_key_b64, strlen(dev_key_b64), 0, &key, &keylen),
            0);
  CHECK_INT(keylen, 64);
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    const struct sk_case *c = &cases[i];
    char sig[45];
    CHECK_INT(sharedkey_signature(key, keylen, c->sts, sig), 0);
    CHECK_STR(sig, c->sig);
    char *auth = sharedkey_authorization(c->method, c->url, c->account, key,
                                         keylen, (char *const *)c->headers,
                                         n_headers(c), c->content_length);
    char *want = xasprintf("SharedKey %s:%s", c->account, c->sig);
    CHECK_STR(auth, want);
    free(auth);
    free(want);
  }
  free(key);
}

TEST(split_url) {
  char *path, *query;
  CHECK_INT(
      sharedkey_split_url("https://a.blob.core.windows.net", &path, &query), 0);
  CHECK_STR(path, "/");
  CHECK(query == NULL);
  free(path);
  CHECK_INT(sharedkey_split_url("http://h:1/x/y?z=1#f", &path, &query), 0);
  CHECK_STR(path, "/x/y");
  CHECK_STR(query, "z=1");
  free(path);
  free(query);
  CHECK(sharedkey_split_url("no-scheme", &path, &query) != 0);
}

TEST(dates_rfc1123) {
  char out[32];
  sharedkey_format_date(1435361952LL * NS_PER_SEC + 999, out);
  CHECK_STR(out, date);
  int64_t ns = 0;
  CHECK_INT(sharedkey_parse_date(date, &ns), 0);
  CHECK_INT(ns, 1435361952LL * NS_PER_SEC);
  CHECK_INT(sharedkey_parse_date("Thu, 01 Jan 1970 00:00:00 GMT", &ns), 0);
  CHECK_INT(ns, 0);
  CHECK(sharedkey_parse_date("2015-06-26T23:39:12Z", &ns) != 0);
  CHECK(sharedkey_parse_date("Fri, 26 Foo 2015 23:39:12 GMT", &ns) != 0);
  CHECK(sharedkey_parse_date("Fri, 26 Jun 2015 23:39:12 GMT junk", &ns) != 0);
  /* Found by fuzz_time: an hour that overflowed int came out negative. */
  CHECK(sharedkey_parse_date("Tue,1 Dec6026 033333333333:38:2 GMT", &ns) != 0);
  CHECK(sharedkey_parse_date("Tue, 01 Dec 2026 -1:38:02 GMT", &ns) != 0);
  CHECK(sharedkey_parse_date("Tue, 01 Dec 99999 01:38:02 GMT", &ns) != 0);
}

TEST(base64_rfc4648_vectors) {
  static const char *const plain[] = {"",     "f",     "fo",    "foo",
                                      "foob", "fooba", "foobar"};
  static const char *const enc[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                    "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  static const char *const url[] = {"",       "Zg",      "Zm8",     "Zm9v",
                                    "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
  for (size_t i = 0; i < ARRAY_SIZE(plain); i++) {
    char out[16];
    base64_encode((const uint8_t *)plain[i], strlen(plain[i]), out);
    CHECK_STR(out, enc[i]);
    char *u = base64url_encode(plain[i], strlen(plain[i]));
    CHECK_STR(u, url[i]);
    free(u);
    uint8_t *dec;
    size_t n;
    CHECK_INT(base64_decode(enc[i], strlen(enc[i]), 0, &dec, &n), 0);
    CHECK_STR((char *)dec, plain[i]);
    free(dec);
    CHECK_INT(base64_decode(url[i], strlen(url[i]), 1, &dec, &n), 0);
    CHECK_INT(n, strlen(plain[i]));
    CHECK_STR((char *)dec, plain[i]);
    free(dec);
  }
  const uint8_t bin[] = {0xfb, 0xff, 0xbf};
  char out[8];
  base64_encode(bin, 3, out);
  CHECK_STR(out, "+/+/");
  char *u = base64url_encode(bin, 3);
  CHECK_STR(u, "-_-_");
  free(u);
  uint8_t *dec;
  size_t n;
  CHECK(base64_decode("Zm9", 3, 0, &dec, &n) != 0);   /* needs padding */
  CHECK(base64_decode("Zm9v!", 5, 0, &dec, &n) != 0); /* bad char */
  CHECK(base64_decode("Zh==", 4, 0, &dec, &n) != 0);  /* non-zero bits */
  CHECK(base64_decode("-_-_", 4, 0, &dec, &n) != 0);  /* url chars */
  CHECK(base64_decode("Z", 1, 1, &dec, &n) != 0);     /* impossible len */
}

int main(void) {
  RUN(strings_to_sign_follow_the_documented_format);
  RUN(signatures_match_openssl_cli);
  RUN(split_url);
  RUN(dates_rfc1123);
  RUN(base64_rfc4648_vectors);
  T_DONE();
}
