/*
 * AWS Signature Version 4.  See sigv4.h for the shapes of the canonical
 * request and the string to sign.
 */
#include "backends/sigv4.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"

/* --- hashes and encodings --- */

void sha256_hex(const void *data, size_t n, char out[65]) {
  uint8_t md[32];
  unsigned int len = 0;
  EVP_Digest(data, n, md, &len, EVP_sha256(), NULL);
  hex_encode(md, 32, out);
}

struct sha256_ctx {
  EVP_MD_CTX *md;
};

struct sha256_ctx *sha256_new(void) {
  struct sha256_ctx *c = xcalloc(1, sizeof(*c));
  c->md = EVP_MD_CTX_new();
  if (!c->md || !EVP_DigestInit_ex(c->md, EVP_sha256(), NULL)) {
    /* Only fails when OpenSSL cannot allocate: treat as out of memory. */
    abort();
  }
  return c;
}

void sha256_update(struct sha256_ctx *c, const void *data, size_t n) {
  EVP_DigestUpdate(c->md, data, n);
}

void sha256_final_hex(struct sha256_ctx *c, char out[65]) {
  uint8_t md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(c->md, md, &len);
  hex_encode(md, 32, out);
  EVP_MD_CTX_free(c->md);
  free(c);
}

void hmac_sha256(const void *key, size_t klen, const void *data, size_t n,
                 uint8_t out[32]) {
  /* out may alias key (the signing-key chain reuses one buffer). */
  uint8_t md[32];
  unsigned int len = 32;
  HMAC(EVP_sha256(), key, (int)klen, data, n, md, &len);
  memcpy(out, md, 32);
  OPENSSL_cleanse(md, sizeof(md));
}

void md5_base64(const void *data, size_t n, char out[25]) {
  uint8_t md[16];
  unsigned int len = 0;
  EVP_Digest(data, n, md, &len, EVP_md5(), NULL);
  EVP_EncodeBlock((unsigned char *)out, md, 16);
}

char *sigv4_uri_encode(const char *s, int keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  char *out = xmalloc(3 * strlen(s) + 1), *o = out;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
        (keep_slash && *p == '/')) {
      *o++ = (char)*p;
    } else {
      *o++ = '%';
      *o++ = hex[*p >> 4];
      *o++ = hex[*p & 15];
    }
  }
  *o = '\0';
  return out;
}

void sigv4_amz_date(int64_t unix_sec, char out[17]) {
  time_t t = (time_t)unix_sec;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* --- canonical query --- */

struct qparam {
  char *name;
  char *value;
};

static int cmp_qparam(const void *a, const void *b) {
  const struct qparam *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : strcmp(x->value, y->value);
}

char *sigv4_canonical_query(const char *query) {
  if (!query || !*query)
    return xstrdup("");
  struct qparam *v = NULL;
  size_t n = 0;
  const char *p = query;
  while (*p) {
    const char *amp = strchr(p, '&');
    size_t len = amp ? (size_t)(amp - p) : strlen(p);
    if (len) {
      const char *eq = memchr(p, '=', len);
      size_t nl = eq ? (size_t)(eq - p) : len;
      char *name = percent_decode(p, nl, 0);
      char *value = eq ? percent_decode(eq + 1, len - nl - 1, 0) : xstrdup("");
      v = xrealloc(v, (n + 1) * sizeof(*v));
      v[n].name = sigv4_uri_encode(name, 0);
      v[n].value = sigv4_uri_encode(value, 0);
      n++;
      free(name);
      free(value);
    }
    p += len;
    if (*p == '&')
      p++;
  }
  qsort(v, n, sizeof(*v), cmp_qparam);
  struct buf b;
  buf_init(&b, 0);
  for (size_t i = 0; i < n; i++) {
    buf_appendf(&b, "%s%s=%s", i ? "&" : "", v[i].name, v[i].value);
    free(v[i].name);
    free(v[i].value);
  }
  free(v);
  if (!b.data)
    return xstrdup("");
  return (char *)buf_steal(&b, NULL);
}

/* --- canonical headers --- */

struct hdr {
  char *name;
  char *value;
  size_t order;
};

static int cmp_hdr(const void *a, const void *b) {
  const struct hdr *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c)
    return c;
  return x->order < y->order ? -1 : x->order > y->order;
}

/* Trims and collapses runs of whitespace to one space. */
static char *trim_value(const char *s) {
  char *out = xmalloc(strlen(s) + 1), *o = out;
  while (*s == ' ' || *s == '\t')
    s++;
  int space = 0;
  for (; *s; s++) {
    if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') {
      space = 1;
      continue;
    }
    if (space && o > out)
      *o++ = ' ';
    space = 0;
    *o++ = *s;
  }
  *o = '\0';
  return out;
}

char *sigv4_canonical_request(const struct sigv4_request *r,
                              char **signed_headers) {
  struct hdr *h = xcalloc(r->n_headers + 1, sizeof(*h));
  size_t n = 0;
  for (size_t i = 0; i < r->n_headers; i++) {
    const char *line = r->headers[i];
    const char *colon = strchr(line, ':');
    if (!colon)
      continue;
    h[n].name = xstrndup(line, (size_t)(colon - line));
    for (char *c = h[n].name; *c; c++)
      *c = (char)tolower((unsigned char)*c);
    h[n].value = trim_value(colon + 1);
    h[n].order = i;
    n++;
  }
  qsort(h, n, sizeof(*h), cmp_hdr);

  struct buf cr, sh;
  buf_init(&cr, 0);
  buf_init(&sh, 0);
  char *q = sigv4_canonical_query(r->query);
  buf_appendf(&cr, "%s\n%s\n%s\n", r->method,
              r->path && *r->path ? r->path : "/", q);
  free(q);
  for (size_t i = 0; i < n; i++) {
    if (i && !strcmp(h[i].name, h[i - 1].name)) {
      buf_appendf(&cr, ",%s", h[i].value);
      continue;
    }
    buf_appendf(&cr, "%s%s:%s", i ? "\n" : "", h[i].name, h[i].value);
    buf_appendf(&sh, "%s%s", sh.len ? ";" : "", h[i].name);
  }
  buf_appendf(&cr, "\n\n%s\n%s", sh.data ? (char *)sh.data : "",
              r->payload_hash ? r->payload_hash : SIGV4_EMPTY_SHA256);
  for (size_t i = 0; i < n; i++) {
    free(h[i].name);
    free(h[i].value);
  }
  free(h);
  if (signed_headers)
    *signed_headers = sh.data ? (char *)buf_steal(&sh, NULL) : xstrdup("");
  buf_destroy(&sh);
  return (char *)buf_steal(&cr, NULL);
}

char *sigv4_string_to_sign(const struct sigv4_request *r,
                           const char *canonical_request) {
  char hash[65];
  sha256_hex(canonical_request, strlen(canonical_request), hash);
  return xasprintf("AWS4-HMAC-SHA256\n%s\n%.8s/%s/%s/aws4_request\n%s",
                   r->amz_date, r->amz_date, r->region, r->service, hash);
}

char *sigv4_authorization(const struct sigv4_request *r,
                          const struct sigv4_key *k) {
  char *signed_headers = NULL;
  char *cr = sigv4_canonical_request(r, &signed_headers);
  char *sts = sigv4_string_to_sign(r, cr);

  size_t slen = strlen(k->secret_access_key);
  char *kstr = xmalloc(slen + 5);
  memcpy(kstr, "AWS4", 4);
  memcpy(kstr + 4, k->secret_access_key, slen + 1);
  uint8_t key[32], sig[32];
  hmac_sha256(kstr, slen + 4, r->amz_date, 8, key);
  OPENSSL_cleanse(kstr, slen + 4);
  free(kstr);
  hmac_sha256(key, 32, r->region, strlen(r->region), key);
  hmac_sha256(key, 32, r->service, strlen(r->service), key);
  hmac_sha256(key, 32, "aws4_request", 12, key);
  hmac_sha256(key, 32, sts, strlen(sts), sig);
  OPENSSL_cleanse(key, sizeof(key));
  char hex[65];
  hex_encode(sig, 32, hex);

  char *out = xasprintf("AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/"
                        "aws4_request, SignedHeaders=%s, Signature=%s",
                        k->access_key_id, r->amz_date, r->region, r->service,
                        signed_headers, hex);
  free(signed_headers);
  free(cr);
  free(sts);
  return out;
}
