#include "backends/sharedkey.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backends/base64.h"
#include "base/err.h"
#include "base/util.h"

/* The value of header `name` in "Name: value" lines, trimmed; NULL if
 * absent.  Returns a pointer into the line. */
static const char *find_header(char *const *headers, size_t n, const char *name,
                               size_t *vlen) {
  size_t nl = strlen(name);
  for (size_t i = 0; i < n; i++) {
    const char *h = headers[i];
    if (strncasecmp(h, name, nl) || h[nl] != ':')
      continue;
    const char *v = h + nl + 1;
    while (*v == ' ' || *v == '\t')
      v++;
    size_t len = strlen(v);
    while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
      len--;
    *vlen = len;
    return v;
  }
  return NULL;
}

static void append_header_field(struct buf *b, char *const *headers, size_t n,
                                const char *name) {
  size_t len = 0;
  const char *v = find_header(headers, n, name, &len);
  if (v)
    buf_append(b, v, len);
  buf_append(b, "\n", 1);
}

struct kv {
  char *k;
  char *v;
};

static int cmp_kv(const void *a, const void *b) {
  const struct kv *x = a, *y = b;
  int c = strcmp(x->k, y->k);
  return c ? c : strcmp(x->v, y->v);
}

/* Appends the x-ms-* headers: names lower-cased, sorted, values trimmed
 * with runs of whitespace folded to one space, repeated names joined. */
static void append_canonical_headers(struct buf *b, char *const *headers,
                                     size_t n) {
  struct kv *kvs = xcalloc(n ? n : 1, sizeof(*kvs));
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    const char *h = headers[i], *colon = strchr(h, ':');
    if (!colon || strncasecmp(h, "x-ms-", 5))
      continue;
    size_t nl = (size_t)(colon - h);
    while (nl && (h[nl - 1] == ' ' || h[nl - 1] == '\t'))
      nl--;
    char *k = xstrndup(h, nl);
    for (char *p = k; *p; p++)
      *p = (char)tolower((unsigned char)*p);
    char *v = xmalloc(strlen(colon) + 1), *o = v;
    int space = 0;
    for (const char *p = colon + 1; *p; p++) {
      if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
        space = o != v;
        continue;
      }
      if (space)
        *o++ = ' ';
      space = 0;
      *o++ = *p;
    }
    *o = '\0';
    kvs[m].k = k;
    kvs[m].v = v;
    m++;
  }
  /* Stable order for equal names: by value, as the values are joined. */
  qsort(kvs, m, sizeof(*kvs), cmp_kv);
  for (size_t i = 0; i < m; i++) {
    if (i > 0 && !strcmp(kvs[i].k, kvs[i - 1].k)) {
      buf_appendf(b, ",%s", kvs[i].v);
      continue;
    }
    if (i > 0)
      buf_append(b, "\n", 1);
    buf_appendf(b, "%s:%s", kvs[i].k, kvs[i].v);
  }
  if (m)
    buf_append(b, "\n", 1);
  for (size_t i = 0; i < m; i++) {
    free(kvs[i].k);
    free(kvs[i].v);
  }
  free(kvs);
}

static void append_canonical_query(struct buf *b, const char *query) {
  if (!query || !*query)
    return;
  size_t cap = 1;
  for (const char *p = query; *p; p++)
    cap += *p == '&';
  struct kv *kvs = xcalloc(cap, sizeof(*kvs));
  size_t m = 0;
  const char *p = query;
  while (*p) {
    const char *amp = strchr(p, '&');
    size_t len = amp ? (size_t)(amp - p) : strlen(p);
    if (len) {
      const char *eq = memchr(p, '=', len);
      size_t kl = eq ? (size_t)(eq - p) : len;
      kvs[m].k = percent_decode(p, kl, 1);
      for (char *c = kvs[m].k; *c; c++)
        *c = (char)tolower((unsigned char)*c);
      kvs[m].v = eq ? percent_decode(eq + 1, len - kl - 1, 1) : xstrdup("");
      m++;
    }
    p += len;
    if (*p == '&')
      p++;
  }
  qsort(kvs, m, sizeof(*kvs), cmp_kv);
  for (size_t i = 0; i < m; i++) {
    if (i > 0 && !strcmp(kvs[i].k, kvs[i - 1].k))
      buf_appendf(b, ",%s", kvs[i].v);
    else
      buf_appendf(b, "\n%s:%s", kvs[i].k, kvs[i].v);
  }
  for (size_t i = 0; i < m; i++) {
    free(kvs[i].k);
    free(kvs[i].v);
  }
  free(kvs);
}

char *sharedkey_string_to_sign(const char *method, const char *account,
                               const char *path, const char *query,
                               char *const *headers, size_t n_headers,
                               int64_t content_length) {
  struct buf b;
  buf_init(&b, 0);
  buf_appendf(&b, "%s\n", method);
  append_header_field(&b, headers, n_headers, "Content-Encoding");
  append_header_field(&b, headers, n_headers, "Content-Language");
  if (content_length > 0)
    buf_appendf(&b, "%lld", (long long)content_length);
  buf_append(&b, "\n", 1);
  static const char *const rest[] = {
      "Content-MD5",         "Content-Type", "Date",
      "If-Modified-Since",   "If-Match",     "If-None-Match",
      "If-Unmodified-Since", "Range",
  };
  for (size_t i = 0; i < ARRAY_SIZE(rest); i++)
    append_header_field(&b, headers, n_headers, rest[i]);
  append_canonical_headers(&b, headers, n_headers);
  buf_appendf(&b, "/%s%s", account, path && *path ? path : "/");
  append_canonical_query(&b, query);
  buf_append(&b, "", 1);
  size_t len;
  return (char *)buf_steal(&b, &len);
}

int sharedkey_signature(const uint8_t *key, size_t keylen, const char *sts,
                        char out[45]) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int maclen = 0;
  if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)sts,
            strlen(sts), mac, &maclen) ||
      maclen != 32)
    return ERR_AUTH;
  base64_encode(mac, maclen, out);
  return 0;
}

int sharedkey_split_url(const char *url, char **path, char **query) {
  const char *p = strstr(url, "://");
  if (!p)
    return ERR_URL;
  p += 3;
  size_t hostlen = strcspn(p, "/?#");
  p += hostlen;
  size_t plen = strcspn(p, "?#");
  *path = plen ? xstrndup(p, plen) : xstrdup("/");
  p += plen;
  if (*p == '?') {
    p++;
    *query = xstrndup(p, strcspn(p, "#"));
  } else {
    *query = NULL;
  }
  return 0;
}

char *sharedkey_authorization(const char *method, const char *url,
                              const char *account, const uint8_t *key,
                              size_t keylen, char *const *headers,
                              size_t n_headers, int64_t content_length) {
  char *path, *query;
  if (sharedkey_split_url(url, &path, &query))
    return NULL;
  char *sts = sharedkey_string_to_sign(method, account, path, query, headers,
                                       n_headers, content_length);
  char sig[45];
  int rc = sharedkey_signature(key, keylen, sts, sig);
  free(sts);
  free(path);
  free(query);
  return rc ? NULL : xasprintf("SharedKey %s:%s", account, sig);
}

static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void sharedkey_format_date(int64_t ns, char out[32]) {
  time_t t = (time_t)(ns / NS_PER_SEC);
  struct tm tm;
  gmtime_r(&t, &tm);
  /* Fields reduced to their ranges so the compiler can see it fits. */
  snprintf(out, 32, "%s, %02u %s %04u %02u:%02u:%02u GMT",
           days[(unsigned)tm.tm_wday % 7], (unsigned)tm.tm_mday % 32u,
           months[(unsigned)tm.tm_mon % 12],
           (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)tm.tm_hour % 24u,
           (unsigned)tm.tm_min % 60u, (unsigned)tm.tm_sec % 61u);
}

int sharedkey_parse_date(const char *s, int64_t *ns) {
  char wd[4], mon[4], zone[4];
  int day, year, h, m, sec, used = 0;
  if (sscanf(s, "%3s, %2d %3s %4d %2d:%2d:%2d %3s%n", wd, &day, mon, &year, &h,
             &m, &sec, zone, &used) != 8 ||
      s[used] != '\0' || strcmp(zone, "GMT"))
    return -EINVAL;
  int mi = -1;
  for (int i = 0; i < 12; i++)
    if (!strcmp(mon, months[i]))
      mi = i;
  if (mi < 0 || day < 1 || day > 31 || h < 0 || h > 23 || m < 0 || m > 59 ||
      sec < 0 || sec > 60 || year < 1970 || year > 9999)
    return -EINVAL;
  struct tm tm = {0};
  tm.tm_year = year - 1900;
  tm.tm_mon = mi;
  tm.tm_mday = day;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = sec;
  *ns = time_ns_sat((int64_t)timegm(&tm), 0);
  return 0;
}
