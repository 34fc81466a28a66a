#include "base/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void oom(size_t n) {
  fprintf(stderr, "sluice: out of memory allocating %zu bytes\n", n);
  abort();
}

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p)
    oom(n);
  return p;
}

void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p)
    oom(n * size);
  return p;
}

void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q)
    oom(n);
  return q;
}

char *xstrdup(const char *s) {
  return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n) {
  char *p = xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *xvasprintf(const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0)
    oom(0);
  char *p = xmalloc((size_t)n + 1);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  return p;
}

char *xasprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *p = xvasprintf(fmt, ap);
  va_end(ap);
  return p;
}

void buf_init(struct buf *b, size_t max) {
  memset(b, 0, sizeof(*b));
  b->max = max;
}

void buf_destroy(struct buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void buf_reset(struct buf *b) {
  b->len = 0;
}

int buf_reserve(struct buf *b, size_t extra) {
  if (b->max && (extra > b->max || b->len > b->max - extra))
    return -EFBIG;
  size_t need = b->len + extra;
  if (need <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap = cap < SIZE_MAX / 2 ? cap * 2 : need;
  if (b->max && cap > b->max)
    cap = b->max;
  b->data = xrealloc(b->data, cap);
  b->cap = cap;
  return 0;
}

int buf_append(struct buf *b, const void *p, size_t n) {
  int rc = buf_reserve(b, n + 1);
  if (rc == -EFBIG && b->max && b->len + n == b->max)
    rc = buf_reserve(b, n);
  if (rc)
    return rc;
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  if (b->len < b->cap)
    b->data[b->len] = 0; /* keeps text buffers NUL-terminated */
  return 0;
}

int buf_appendf(struct buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = xvasprintf(fmt, ap);
  va_end(ap);
  int rc = buf_append(b, s, strlen(s));
  free(s);
  return rc;
}

uint8_t *buf_steal(struct buf *b, size_t *len) {
  uint8_t *p = b->data;
  if (len)
    *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}

int str_set(char **p, const char *s) {
  if (!s || !s[0]) {
    int changed = *p != NULL;
    free(*p);
    *p = NULL;
    return changed;
  }
  if (*p && !strcmp(*p, s))
    return 0;
  free(*p);
  *p = xstrdup(s);
  return 1;
}

int str_has_prefix(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

int str_has_suffix(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

char *path_join(const char *a, const char *b) {
  if (!a || !*a)
    return xstrdup(b ? b : "");
  if (!b || !*b)
    return xstrdup(a);
  size_t la = strlen(a);
  while (la > 1 && a[la - 1] == '/')
    la--;
  while (*b == '/')
    b++;
  if (la == 1 && a[0] == '/')
    return xasprintf("/%s", b);
  return xasprintf("%.*s/%s", (int)la, a, b);
}

char *path_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash)
    return xstrdup(".");
  if (slash == path)
    return xstrdup("/");
  return xstrndup(path, (size_t)(slash - path));
}

const char *path_base(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

/* Cleans an absolute path in place: collapses "//", removes "." and
 * resolves ".." lexically (Go's filepath.Clean). */
static void path_clean(char *p) {
  char *out = p;
  const char *in = p;
  size_t root = 1;
  *out++ = '/';
  while (*in) {
    while (*in == '/')
      in++;
    if (!*in)
      break;
    const char *end = strchr(in, '/');
    size_t n = end ? (size_t)(end - in) : strlen(in);
    if (n == 1 && in[0] == '.') {
      /* skip */
    } else if (n == 2 && in[0] == '.' && in[1] == '.') {
      if ((size_t)(out - p) > root) {
        out--;
        while ((size_t)(out - p) > root && out[-1] != '/')
          out--;
        if ((size_t)(out - p) > root)
          out--;
      }
    } else {
      if ((size_t)(out - p) > root)
        *out++ = '/';
      memmove(out, in, n);
      out += n;
    }
    in += n;
  }
  *out = '\0';
}

char *path_abs(const char *path) {
  char *full;
  if (path[0] == '~' && (path[1] == '\0' || path[1] == '/')) {
    const char *home = getenv("HOME");
    if (!home || !*home) {
      struct passwd *pw = getpwuid(getuid());
      home = pw ? pw->pw_dir : "/";
    }
    full = path_join(home, path + 1);
  } else if (path[0] == '/') {
    full = xstrdup(path);
  } else {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
      strcpy(cwd, "/");
    full = path_join(cwd, path);
  }
  if (full[0] != '/') {
    char *t = xasprintf("/%s", full);
    free(full);
    full = t;
  }
  path_clean(full);
  return full;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = tolower(c);
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

char *percent_decode(const char *s, size_t n, int plus_is_space) {
  char *out = xmalloc(n + 1), *o = out;
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (plus_is_space && s[i] == '+') {
      *o++ = ' ';
    } else if (s[i] == '%' && i + 2 < n &&
               (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
               (lo = hexval((unsigned char)s[i + 2])) >= 0) {
      *o++ = (char)(hi << 4 | lo);
      i += 2;
    } else {
      *o++ = s[i];
    }
  }
  *o = '\0';
  return out;
}

void hex_encode(const uint8_t *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

static uint64_t str_hash(const char *s) {
  uint64_t h = 14695981039346656037ULL; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static size_t strset_slot(char **slots, size_t cap, const char *s) {
  size_t k = (size_t)str_hash(s) & (cap - 1);
  while (slots[k] && strcmp(slots[k], s))
    k = (k + 1) & (cap - 1);
  return k;
}

int strset_add(struct strset *set, const char *s) {
  if (2 * (set->n + 1) > set->cap) {
    size_t cap = set->cap ? 2 * set->cap : 16;
    char **slots = xcalloc(cap, sizeof(*slots));
    for (size_t i = 0; i < set->cap; i++)
      if (set->slots[i])
        slots[strset_slot(slots, cap, set->slots[i])] = set->slots[i];
    free(set->slots);
    set->slots = slots;
    set->cap = cap;
  }
  size_t k = strset_slot(set->slots, set->cap, s);
  if (set->slots[k])
    return 0;
  set->slots[k] = xstrdup(s);
  set->n++;
  return 1;
}

void strset_destroy(struct strset *set) {
  for (size_t i = 0; i < set->cap; i++)
    free(set->slots[i]);
  free(set->slots);
  memset(set, 0, sizeof(*set));
}

int64_t time_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

int64_t time_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

int64_t time_ns_sat(int64_t sec, int64_t nsec) {
  int64_t ns;
  if (__builtin_mul_overflow(sec, NS_PER_SEC, &ns) ||
      __builtin_add_overflow(ns, nsec, &ns))
    return sec < 0 ? INT64_MIN : INT64_MAX;
  return ns;
}

void time_format_rfc3339(int64_t ns, char *out) {
  time_t secs = (time_t)(ns / NS_PER_SEC);
  if (ns < 0 && ns % NS_PER_SEC)
    secs--;
  struct tm tm;
  gmtime_r(&secs, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int parse_digits(const char **s, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)(*s)[i]))
      return -1;
    v = v * 10 + ((*s)[i] - '0');
  }
  *s += n;
  *out = v;
  return 0;
}

int time_parse_rfc3339(const char *s, int64_t *ns) {
  struct tm tm;
  int year, mon, day, hour, min, sec;
  memset(&tm, 0, sizeof(tm));
  if (parse_digits(&s, 4, &year) || *s++ != '-' || parse_digits(&s, 2, &mon) ||
      *s++ != '-' || parse_digits(&s, 2, &day) || (*s != 'T' && *s != 't'))
    return -EINVAL;
  s++;
  if (parse_digits(&s, 2, &hour) || *s++ != ':' || parse_digits(&s, 2, &min) ||
      *s++ != ':' || parse_digits(&s, 2, &sec))
    return -EINVAL;
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
      sec > 60)
    return -EINVAL;
  int64_t frac = 0;
  if (*s == '.' || *s == ',') {
    s++;
    int digits = 0;
    if (!isdigit((unsigned char)*s))
      return -EINVAL;
    while (isdigit((unsigned char)*s)) {
      if (digits < 9) {
        frac = frac * 10 + (*s - '0');
        digits++;
      }
      s++;
    }
    while (digits++ < 9)
      frac *= 10;
  }
  int64_t offset = 0;
  if (*s == 'Z' || *s == 'z') {
    s++;
  } else if (*s == '+' || *s == '-') {
    int sign = *s++ == '-' ? -1 : 1, oh, om;
    if (parse_digits(&s, 2, &oh) || *s++ != ':' || parse_digits(&s, 2, &om))
      return -EINVAL;
    offset = sign * (oh * 3600 + om * 60);
  } else {
    return -EINVAL;
  }
  if (*s)
    return -EINVAL;
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  int64_t t = (int64_t)timegm(&tm) - offset; /* years 0-9999: no overflow */
  int64_t v;
  if (__builtin_mul_overflow(t, NS_PER_SEC, &v) ||
      __builtin_add_overflow(v, frac, &v)) {
    *ns = t < 0 ? INT64_MIN : INT64_MAX;
    return -ERANGE;
  }
  *ns = v;
  return 0;
}

int duration_parse(const char *s, int64_t *out) {
  static const struct {
    const char *name;
    int64_t ns;
  } units[] = {
      {"ns", 1},
      {"us", 1000},
      {"\xc2\xb5s", 1000}, /* U+00B5 micro sign */
      {"\xce\xbcs", 1000}, /* U+03BC Greek mu */
      {"ms", NS_PER_MS},
      {"s", NS_PER_SEC},
      {"m", 60 * NS_PER_SEC},
      {"h", 3600 * NS_PER_SEC},
      {"d", 86400 * NS_PER_SEC},
  };
  const char *p = s;
  int neg = 0;
  if (*p == '-' || *p == '+')
    neg = *p++ == '-';
  if (!*p)
    return -EINVAL;
  /* A bare integer is nanoseconds, as yaml.v2 decodes one. */
  const char *q = p;
  while (isdigit((unsigned char)*q))
    q++;
  if (!*q) {
    errno = 0;
    long long v = strtoll(p, NULL, 10);
    if (errno)
      return -ERANGE;
    *out = neg ? -v : v;
    return 0;
  }
  /* Integer arithmetic, as Go's ParseDuration (strtod took "1e3s" and
   * "0x10s", and lost precision near the int64 limit, so the format of a
   * long duration did not parse back). */
  const uint64_t limit = (uint64_t)1 << 63; /* -limit is INT64_MIN */
  uint64_t total = 0;
  while (*p) {
    uint64_t v = 0, f = 0, scale = 1;
    int digits = 0;
    for (; isdigit((unsigned char)*p); p++, digits++) {
      if (v > (limit - 9) / 10)
        return -ERANGE;
      v = v * 10 + (uint64_t)(*p - '0');
    }
    if (*p == '.') {
      for (p++; isdigit((unsigned char)*p); p++, digits++)
        if (scale < 1000000000000000000ULL) { /* further digits: below 1ns */
          f = f * 10 + (uint64_t)(*p - '0');
          scale *= 10;
        }
    }
    if (!digits)
      return -EINVAL;
    size_t best = 0;
    int found = -1;
    for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
      size_t n = strlen(units[i].name);
      if (strncmp(p, units[i].name, n) == 0 && n > best) {
        best = n;
        found = (int)i;
      }
    }
    if (found < 0)
      return -EINVAL;
    /* "m" must not swallow the "m" of "ms". */
    p += best;
    uint64_t unit = (uint64_t)units[found].ns;
    if (v > limit / unit)
      return -ERANGE;
    v = v * unit + (uint64_t)((unsigned __int128)f * unit / scale);
    if (v > limit || total > limit - v)
      return -ERANGE;
    total += v;
  }
  if (!neg && total == limit)
    return -ERANGE;
  *out = neg ? (int64_t)(0 - total) : (int64_t)total;
  return 0;
}

static size_t fmt_frac(char *buf, size_t w, uint64_t *v, int prec) {
  int print = 0;
  for (int i = 0; i < prec; i++) {
    int digit = (int)(*v % 10);
    print = print || digit != 0;
    if (print)
      buf[--w] = (char)('0' + digit);
    *v /= 10;
  }
  if (print)
    buf[--w] = '.';
  return w;
}

static size_t fmt_int(char *buf, size_t w, uint64_t v) {
  if (v == 0) {
    buf[--w] = '0';
    return w;
  }
  while (v > 0) {
    buf[--w] = (char)('0' + v % 10);
    v /= 10;
  }
  return w;
}

void duration_format(int64_t d, char *out) {
  char buf[40];
  size_t w = sizeof(buf);
  uint64_t u = d < 0 ? (uint64_t)0 - (uint64_t)d : (uint64_t)d;
  if (u < (uint64_t)NS_PER_SEC) {
    int prec = 0;
    buf[--w] = 's';
    if (u == 0) {
      strcpy(out, "0s");
      return;
    } else if (u < 1000) {
      prec = 0;
      buf[--w] = 'n';
    } else if (u < (uint64_t)NS_PER_MS) {
      prec = 3;
      buf[--w] = (char)0xb5;
      buf[--w] = (char)0xc2;
    } else {
      prec = 6;
      buf[--w] = 'm';
    }
    w = fmt_frac(buf, w, &u, prec);
    w = fmt_int(buf, w, u);
  } else {
    buf[--w] = 's';
    w = fmt_frac(buf, w, &u, 9);
    w = fmt_int(buf, w, u % 60);
    u /= 60;
    if (u > 0) {
      buf[--w] = 'm';
      w = fmt_int(buf, w, u % 60);
      u /= 60;
      if (u > 0) {
        buf[--w] = 'h';
        w = fmt_int(buf, w, u);
      }
    }
  }
  if (d < 0)
    buf[--w] = '-';
  memcpy(out, buf + w, sizeof(buf) - w);
  out[sizeof(buf) - w] = '\0';
}

static int64_t trunc_to(int64_t d, int64_t m) {
  return d - d % m;
}

int64_t duration_round_lag(int64_t d) {
  /* |INT64_MIN| does not fit: a magnitude as unsigned. */
  uint64_t a = d < 0 ? 0 - (uint64_t)d : (uint64_t)d;
  if (a > 10 * NS_PER_SEC)
    return trunc_to(d, NS_PER_SEC);
  if (a > NS_PER_SEC)
    return trunc_to(d, 100 * NS_PER_MS);
  if (a > NS_PER_MS)
    return trunc_to(d, NS_PER_MS);
  if (a > 1000)
    return trunc_to(d, 1000);
  return d;
}

int file_read_all(const char *path, size_t max, struct buf *out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  buf_init(out, max);
  for (;;) {
    int rc = buf_reserve(out, 65536);
    if (rc == -EFBIG && out->len < out->max)
      rc = buf_reserve(out, out->max - out->len);
    if (rc) {
      close(fd);
      buf_destroy(out);
      return rc;
    }
    ssize_t n = read(fd, out->data + out->len, out->cap - out->len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = -errno;
      close(fd);
      buf_destroy(out);
      return e;
    }
    if (n == 0)
      break;
    out->len += (size_t)n;
  }
  close(fd);
  return 0;
}

int write_full(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -errno;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

int pwrite_full(int fd, const void *p, size_t n, off_t off) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = pwrite(fd, b, n, off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -errno;
    b += w;
    n -= (size_t)w;
    off += w;
  }
  return 0;
}

ssize_t pread_full(int fd, void *p, size_t n, off_t off) {
  uint8_t *b = p;
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, b + got, n - got, off + (off_t)got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -errno;
    if (r == 0)
      break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = fsync(fd) ? -errno : 0;
  close(fd);
  return rc;
}

int file_write_atomic(const char *path, const void *data, size_t len,
                      mode_t mode) {
  return file_write_atomic_dir(path, data, len, mode, 1);
}

int file_write_atomic_dir(const char *path, const void *data, size_t len,
                          mode_t mode, int sync_dir) {
  char *tmp = xasprintf("%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  int rc = 0;
  if (fd < 0) {
    rc = -errno;
    goto out;
  }
  rc = write_full(fd, data, len);
  if (!rc && fsync(fd))
    rc = -errno;
  if (close(fd) && !rc)
    rc = -errno;
  if (!rc && rename(tmp, path))
    rc = -errno;
  if (!rc && sync_dir) {
    char *dir = path_dir(path);
    fsync_dir(dir);
    free(dir);
  } else if (rc) {
    unlink(tmp);
  }
out:
  free(tmp);
  return rc;
}

int mkdir_p(const char *path, mode_t mode) {
  char *p = xstrdup(path);
  int rc = 0;
  for (char *s = p + 1;; s++) {
    if (*s == '/' || *s == '\0') {
      char c = *s;
      *s = '\0';
      if (mkdir(p, mode) && errno != EEXIST) {
        rc = -errno;
        break;
      }
      *s = c;
      if (!c)
        break;
    }
  }
  if (!rc) {
    struct stat st;
    if (stat(path, &st))
      rc = -errno;
    else if (!S_ISDIR(st.st_mode))
      rc = -ENOTDIR;
  }
  free(p);
  return rc;
}

int rm_rf(const char *path) {
  struct stat st;
  if (lstat(path, &st))
    return errno == ENOENT ? 0 : -errno;
  if (!S_ISDIR(st.st_mode))
    return unlink(path) && errno != ENOENT ? -errno : 0;
  DIR *d = opendir(path);
  if (!d)
    return -errno;
  struct dirent *de;
  int rc = 0;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    char *child = path_join(path, de->d_name);
    int r = rm_rf(child);
    if (r && !rc)
      rc = r;
    free(child);
  }
  closedir(d);
  if (rmdir(path) && errno != ENOENT && !rc)
    rc = -errno;
  return rc;
}

void random_bytes(void *out, size_t n) {
  uint8_t *p = out;
  while (n > 0) {
    ssize_t r = getrandom(p, n, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      /* No entropy syscall: fall back to time-seeded bytes. */
      uint64_t x = (uint64_t)time_now_ns() ^ (uint64_t)getpid() << 32;
      for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
      }
      return;
    }
    p += r;
    n -= (size_t)r;
  }
}
