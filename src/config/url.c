/*
 * Replica URL parsing (spec 6.4), a small subset of Go's net/url.Parse plus
 * Litestream's ParseReplicaURL and s3.ParseHost:
 *
 *   SCHEME://[USER[:PASSWORD]@]HOST[:PORT][/PATH][?QUERY][#FRAGMENT]
 *
 * The scheme is lower-cased (as Go does).  User, password and path are
 * percent-decoded; the host is kept as written, port included.  The query
 * is kept raw for the caller to warn about (it may hold a SAS token, so it
 * is never printed); the fragment is dropped.
 *
 * An sftp URL needs a host here; its user may instead come from the
 * replica's `user` key, as in Litestream, so config.c checks that one.
 *
 * Error messages name the URL in its redacted form (password and query
 * replaced by "xxxxx"), so a secret can never reach a log.
 */
#include "config/url.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/util.h"

int url_is_url(const char *s) {
  const char *p = s;
  while (isalnum((unsigned char)*p) || *p == '_')
    p++;
  return p > s && strncmp(p, "://", 3) == 0;
}

/* Go's path.Clean: "" becomes ".", "." and ".." are resolved lexically,
 * repeated slashes collapse, a trailing slash goes.  Returns owned. */
static char *clean_path(const char *path) {
  size_t n = strlen(path);
  if (n == 0)
    return xstrdup(".");
  char *out = xmalloc(n + 3);
  int rooted = path[0] == '/';
  size_t r = 0, w = 0, dotdot = 0;
  if (rooted) {
    out[w++] = '/';
    r = dotdot = 1;
  }
  while (r < n) {
    if (path[r] == '/') {
      r++;
    } else if (path[r] == '.' && (r + 1 == n || path[r + 1] == '/')) {
      r++;
    } else if (path[r] == '.' && path[r + 1] == '.' &&
               (r + 2 == n || path[r + 2] == '/')) {
      r += 2;
      if (w > dotdot) {
        w--;
        while (w > dotdot && out[w] != '/')
          w--;
      } else if (!rooted) {
        if (w > 0)
          out[w++] = '/';
        out[w++] = '.';
        out[w++] = '.';
        dotdot = w;
      }
    } else {
      if ((rooted && w != 1) || (!rooted && w != 0))
        out[w++] = '/';
      while (r < n && path[r] != '/')
        out[w++] = path[r++];
    }
  }
  if (w == 0)
    out[w++] = '.';
  out[w] = '\0';
  return out;
}

/* The redacted form, built piece by piece (no editing in place: the query's
 * replacement may be longer than the query). */
static char *redact(const char *s, int all_userinfo) {
  const char *sep = strstr(s, "://");
  if (!sep)
    return xstrdup(s);
  const char *auth = sep + 3;
  size_t alen = strcspn(auth, "/?#");
  const char *at = NULL;
  for (const char *p = auth; p < auth + alen; p++)
    if (*p == '@')
      at = p;
  struct buf b;
  buf_init(&b, 0);
  const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
  const char *rest = auth;
  if (at && all_userinfo) {
    buf_append(&b, s, (size_t)(auth - s));
    buf_append(&b, "xxxxx", 5);
    rest = at;
  } else if (colon) {
    buf_append(&b, s, (size_t)(colon - s));
    buf_append(&b, ":xxxxx", 6);
    rest = at;
  } else {
    buf_append(&b, s, (size_t)(auth - s));
  }
  const char *q = strchr(rest, '?');
  if (q) {
    buf_append(&b, rest, (size_t)(q - rest));
    buf_append(&b, "?xxxxx", 6);
  } else {
    buf_append(&b, rest, strlen(rest));
  }
  buf_append(&b, "", 1);
  return (char *)buf_steal(&b, NULL);
}

char *url_redact(const char *s) {
  return redact(s, 0);
}

char *url_redact_userinfo(const char *s) {
  return redact(s, 1);
}

static int fail(const char *s, char *err, unsigned errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(const char *s, char *err, unsigned errlen, const char *fmt,
                ...) {
  char reason[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof(reason), fmt, ap);
  va_end(ap);
  char *red = url_redact(s);
  snprintf(err, errlen, "invalid replica URL \"%s\": %s", red, reason);
  free(red);
  return ERR_URL;
}

static int unhex(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Percent-decodes n bytes of s.  Returns NULL on a bad escape. */
static char *unescape(const char *s, size_t n) {
  char *out = xmalloc(n + 1), *w = out;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '%') {
      *w++ = s[i];
      continue;
    }
    int hi = i + 2 < n ? unhex((unsigned char)s[i + 1]) : -1;
    int lo = i + 2 < n ? unhex((unsigned char)s[i + 2]) : -1;
    if (hi >= 0 && lo >= 0) {
      *w++ = (char)(hi << 4 | lo);
      i += 2;
      continue;
    }
    free(out);
    return NULL;
  }
  *w = '\0';
  return out;
}

static int valid_userinfo_char(int c) {
  return isalnum(c) || strchr("-._:~!$&'()*+,;=%@", c);
}

static int valid_host_char(int c) {
  return isalnum(c) || strchr("-._~!$&'()*+,;=", c);
}

/* Splits "[USER[:PASSWORD]@]HOST[:PORT]" (n bytes at a) into u. */
static int parse_authority(const char *s, const char *a, size_t n,
                           struct replica_url *u, char *err, unsigned errlen) {
  const char *at = NULL;
  for (const char *p = a; p < a + n; p++)
    if (*p == '@')
      at = p;
  if (at) {
    for (const char *p = a; p < at; p++)
      if (!valid_userinfo_char((unsigned char)*p))
        return fail(s, err, errlen, "invalid userinfo");
    const char *colon = memchr(a, ':', (size_t)(at - a));
    const char *uend = colon ? colon : at;
    u->user = unescape(a, (size_t)(uend - a));
    if (colon)
      u->password = unescape(colon + 1, (size_t)(at - colon - 1));
    if (!u->user || (colon && !u->password))
      return fail(s, err, errlen, "invalid escape in userinfo");
    n -= (size_t)(at + 1 - a);
    a = at + 1;
  }
  const char *port = NULL;
  if (n && a[0] == '[') {
    const char *close = memchr(a, ']', n);
    if (!close)
      return fail(s, err, errlen, "missing ']' in host");
    if (close + 1 < a + n) {
      if (close[1] != ':')
        return fail(s, err, errlen, "invalid character after ']' in host");
      port = close + 1;
    }
  } else {
    for (const char *p = a; p < a + n; p++)
      if (*p == ':')
        port = p;
    for (const char *p = a; p < (port ? port : a + n); p++)
      if (!valid_host_char((unsigned char)*p))
        return fail(s, err, errlen, "invalid character \"%c\" in host name",
                    *p);
  }
  if (port) {
    long v = 0;
    for (const char *p = port + 1; p < a + n; p++) {
      if (!isdigit((unsigned char)*p))
        return fail(s, err, errlen, "invalid port \"%.*s\" after host",
                    (int)(a + n - port), port);
      if (v <= 65535)
        v = v * 10 + (*p - '0');
    }
    /* Empty (host:) is allowed, as in Go; else 1-65535. */
    if (port + 1 < a + n && (v < 1 || v > 65535))
      return fail(s, err, errlen, "port %.*s out of range (1-65535)",
                  (int)(a + n - port - 1), port + 1);
  }
  u->host = xstrndup(a, n);
  return 0;
}

/* The path of every scheme but file and sftp: cleaned, without its leading
 * '/', and "" rather than Go's "." when empty. */
static char *key_prefix(const char *path) {
  char *c = clean_path(path);
  if (!strcmp(c, ".") || !strcmp(c, "/")) {
    c[0] = '\0';
    return c;
  }
  if (c[0] == '/')
    memmove(c, c + 1, strlen(c));
  return c;
}

/* file://: the authority is the first path element, as in Go where the
 * URL is re-serialised without its scheme and cleaned.  Escapes are kept
 * as written (Litestream never decodes them either). */
static int parse_file(const char *s, const char *rest, size_t n,
                      struct replica_url *u, char *err, unsigned errlen) {
  if (n == 0)
    return fail(s, err, errlen, "file URL has no path");
  /* file://a/b is /a/b to Go and Litestream, a trap for anyone who meant
   * the relative path a/b: refuse it. */
  if (rest[0] != '/')
    return fail(s, err, errlen,
                "a file URL needs an absolute path after file:// (three "
                "slashes: file:///%.*s)",
                (int)n, rest);
  char *raw = xasprintf("/%.*s", (int)n, rest);
  char *c = clean_path(raw);
  u->path = path_abs(c);
  free(c);
  free(raw);
  return 0;
}

static int parse_scheme(const char *s, struct replica_url *u, char *err,
                        unsigned errlen, const char **rest) {
  const char *p = s;
  if (isalpha((unsigned char)*p)) {
    while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')
      p++;
  }
  if (strncmp(p, "://", 3) != 0) {
    if (url_is_url(s))
      return fail(s, err, errlen, "invalid scheme");
    return fail(s, err, errlen, "replica url scheme required");
  }
  u->scheme = xstrndup(s, (size_t)(p - s));
  for (char *q = u->scheme; *q; q++)
    *q = (char)tolower((unsigned char)*q);
  if (!strcmp(u->scheme, "gs")) {
    free(u->scheme);
    u->scheme = xstrdup("gcs");
  }
  *rest = p + 3;
  return 0;
}

static int parse_rest(const char *s, const char *rest, struct replica_url *u,
                      char *err, unsigned errlen) {
  for (const char *p = rest; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return fail(s, err, errlen, "invalid control character in URL");
  size_t end = strcspn(rest, "?#");
  if (rest[end] == '?')
    u->query = xstrndup(rest + end + 1, strcspn(rest + end + 1, "#"));
  if (!strcmp(u->scheme, "file"))
    return parse_file(s, rest, end, u, err, errlen);

  size_t alen = strcspn(rest, "/?#");
  int rc = parse_authority(s, rest, alen, u, err, errlen);
  if (rc)
    return rc;
  char *path = unescape(rest + alen, end - alen);
  if (!path)
    return fail(s, err, errlen, "invalid URL escape in path");
  if (!strcmp(u->scheme, "sftp")) {
    if (*path) {
      u->path = clean_path(path);
      free(path);
    } else {
      u->path = path;
    }
    if (!*u->host)
      return fail(s, err, errlen, "host required for sftp URL");
    return 0;
  }
  u->path = key_prefix(path);
  free(path);
  if (!strcmp(u->scheme, "s3"))
    url_s3_parse_host(u->host, u);
  return 0;
}

int url_parse(const char *s, struct replica_url *out, char *err,
              unsigned errlen) {
  struct replica_url u;
  memset(&u, 0, sizeof(u));
  const char *rest = NULL;
  int rc = parse_scheme(s, &u, err, errlen, &rest);
  if (!rc)
    rc = parse_rest(s, rest, &u, err, errlen);
  if (rc) {
    url_destroy(&u);
    return rc;
  }
  *out = u;
  return 0;
}

void url_destroy(struct replica_url *u) {
  free(u->scheme);
  free(u->host);
  free(u->path);
  free(u->user);
  free(u->password);
  free(u->query);
  free(u->bucket);
  free(u->region);
  free(u->endpoint);
  memset(u, 0, sizeof(*u));
}

/* Go's net.SplitHostPort, reduced to what ParseHost needs: on failure the
 * whole string is the host and there is no port. */
static void split_host_port(const char *s, char **host, char **port) {
  const char *colon = strrchr(s, ':');
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (close && close[1] == ':') {
      *host = xstrndup(s + 1, (size_t)(close - s - 1));
      *port = xstrdup(close + 2);
      return;
    }
  } else if (colon && strchr(s, ':') == colon) {
    *host = xstrndup(s, (size_t)(colon - s));
    *port = xstrdup(colon + 1);
    return;
  }
  *host = xstrdup(s);
  *port = NULL;
}

/* Matches "[B.]PRE" + "R" + "SUF" (with a region label R when `region` is
 * non-NULL; R holds no dot) or "[B.]NAME" (region NULL, NAME = pre).  The
 * bucket B is greedy, as in Litestream's regexes, so R is the last label
 * before the suffix. */
static int match_host(const char *host, const char *pre, const char *suf,
                      char **bucket, char **region) {
  size_t hn = strlen(host), sn = strlen(suf), pn = strlen(pre);
  if (hn < sn || strcmp(host + hn - sn, suf) != 0)
    return 0;
  size_t rest = hn - sn; /* host[0, rest) is "[B.]PRE[R]" */
  size_t rstart = rest;
  if (region) {
    while (rstart > 0 && host[rstart - 1] != '.')
      rstart--;
    if (rstart == rest)
      return 0;
  }
  /* host[0, rstart) must be PRE or "B." PRE. */
  if (rstart < pn || strncmp(host + rstart - pn, pre, pn) != 0)
    return 0;
  size_t bend = rstart - pn;
  if (bend == 1 || (bend > 1 && host[bend - 1] != '.'))
    return 0;
  *bucket = bend ? xstrndup(host, bend - 1) : xstrdup("");
  if (region)
    *region = xstrndup(host + rstart, rest - rstart);
  return 1;
}

void url_s3_parse_host(const char *hostport, struct replica_url *out) {
  static const struct {
    const char *pre, *suf, *endpoint; /* endpoint: printf with region */
    int has_region;
  } table[] = {
      {"localhost", "", "localhost", 0},
      {"s3.", ".backblazeb2.com", "s3.%s.backblazeb2.com", 1},
      {"s3.filebase.com", "", "s3.filebase.com", 0},
      {"", ".digitaloceanspaces.com", "%s.digitaloceanspaces.com", 1},
      {"s3.", ".scw.cloud", "s3.%s.scw.cloud", 1},
      {"", ".linodeobjects.com", "%s.linodeobjects.com", 1},
  };
  char *host, *port;
  split_host_port(hostport, &host, &port);
  free(out->bucket);
  free(out->region);
  free(out->endpoint);
  out->bucket = out->region = out->endpoint = NULL;
  out->force_path_style = 0;
  for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
    char *bucket = NULL, *region = NULL;
    if (!match_host(host, table[i].pre, table[i].suf, &bucket,
                    table[i].has_region ? &region : NULL))
      continue;
    int local = i == 0;
    char *ep = table[i].has_region ? xasprintf(table[i].endpoint, region)
                                   : xstrdup(table[i].endpoint);
    out->bucket = bucket;
    out->region = local ? xstrdup("us-east-1") : region;
    if (local)
      free(region);
    out->endpoint = xasprintf("%s://%s%s%s", local ? "http" : "https", ep,
                              port && *port ? ":" : "", port ? port : "");
    out->force_path_style = 1;
    free(ep);
    break;
  }
  if (!out->bucket)
    out->bucket = xstrdup(host);
  free(host);
  free(port);
}

/* A host[:port] or [v6][:port] authority, as an endpoint needs it. */
static int check_endpoint_host(const char *h, size_t n, char *why,
                               size_t whylen) {
  const char *end = h + n, *port = NULL;
  if (n == 0)
    return snprintf(why, whylen, "no host"), -1;
  if (h[0] == '[') {
    const char *close = memchr(h, ']', n);
    if (!close)
      return snprintf(why, whylen, "missing ']' in host"), -1;
    if (close == h + 1)
      return snprintf(why, whylen, "empty IPv6 address"), -1;
    for (const char *p = h + 1; p < close; p++)
      if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.' && *p != '%')
        return snprintf(why, whylen, "invalid IPv6 address"), -1;
    if (close + 1 < end && close[1] != ':')
      return snprintf(why, whylen, "invalid character after ']' in host"), -1;
    if (close + 1 < end)
      port = close + 1;
  } else {
    port = memchr(h, ':', n);
    for (const char *p = h; p < (port ? port : end); p++)
      if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_')
        return snprintf(why, whylen, "invalid character in host name"), -1;
    if (port == h)
      return snprintf(why, whylen, "no host"), -1;
  }
  if (port) {
    long v = 0;
    if (port + 1 == end)
      return snprintf(why, whylen, "empty port"), -1;
    for (const char *p = port + 1; p < end; p++) {
      if (!isdigit((unsigned char)*p))
        return snprintf(why, whylen, "invalid port"), -1;
      if (v <= 65535)
        v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > 65535)
      return snprintf(why, whylen, "port %.*s out of range (1-65535)",
                      (int)(end - port - 1), port + 1),
             -1;
  }
  return 0;
}

int url_check_endpoint(const char *ep, char *err, unsigned errlen) {
  char why[128];
  const char *h = ep, *sep = strstr(ep, "://");
  int bad = 0;
  for (const char *p = ep; *p && !bad; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f)
      bad = snprintf(why, sizeof(why), "invalid character in URL");
  if (!bad && sep) {
    size_t sl = (size_t)(sep - ep);
    if (!((sl == 4 && !strncasecmp(ep, "http", 4)) ||
          (sl == 5 && !strncasecmp(ep, "https", 5))))
      bad = snprintf(why, sizeof(why), "scheme must be http or https");
    h = sep + 3;
  }
  if (!bad) {
    size_t n = strcspn(h, "/?#");
    const char *at = memchr(h, '@', n);
    if (at) {
      n -= (size_t)(at + 1 - h);
      h = at + 1;
    }
    bad = check_endpoint_host(h, n, why, sizeof(why)) != 0;
  }
  if (!bad)
    return 0;
  char *red = url_redact_userinfo(ep);
  snprintf(err, errlen, "invalid endpoint \"%s\": %s", red, why);
  free(red);
  return ERR_URL;
}
