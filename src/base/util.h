/*
 * Small helpers shared by every module: allocation that aborts on failure,
 * growable byte buffers with a hard cap, string and path helpers, clocks and
 * file utilities.  Nothing here touches libuv.
 */
#ifndef SLUICE_UTIL_H
#define SLUICE_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member)                                        \
  ((type *)((char *)(ptr)-offsetof(type, member)))
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

/* Out of memory is fatal (Redis, tmux): these never return NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);

/* A growable byte buffer.  `max` (0 = unlimited) is a hard cap: appending
 * past it fails with -EFBIG instead of letting one runaway object starve the
 * process. */
struct buf {
  uint8_t *data;
  size_t len;
  size_t cap;
  size_t max;
};
void buf_init(struct buf *b, size_t max);
void buf_destroy(struct buf *b);
void buf_reset(struct buf *b);
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_appendf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Moves the contents out; the buffer is left empty. Returns owned memory. */
uint8_t *buf_steal(struct buf *b, size_t *len);

/* Big-endian integer access (WAL and frame headers are big-endian). */
static inline uint32_t get_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}
static inline void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static inline uint32_t get_le32(const uint8_t *p) {
  return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 |
         (uint32_t)p[0];
}

/* A set of strings (open addressing), e.g. the continuation tokens a
 * listing has seen.  Zero-initialised is empty. */
struct strset {
  char **slots;
  size_t cap, n;
};
/* Adds a copy of s: returns 1 if added, 0 if it was already there. */
int strset_add(struct strset *set, const char *s);
void strset_destroy(struct strset *set);

/* Strings. */
/* A message an object rarely has, kept on the heap only while set: *p is
 * NULL for "" (no fixed buffer per database for an error it may never
 * see).  Returns 1 if the text changed. */
int str_set(char **p, const char *s);
static inline const char *str_or_empty(const char *s) {
  return s ? s : "";
}
int str_has_prefix(const char *s, const char *prefix);
int str_has_suffix(const char *s, const char *suffix);
/* Joins path elements with single '/' separators; empty elements skipped. */
char *path_join(const char *a, const char *b);
/* Directory part of a path ("." if none); returns owned string. */
char *path_dir(const char *path);
/* Last element of a path; returns a pointer into `path`. */
const char *path_base(const char *path);
/* Expands "~" and "~/..." and makes the path absolute against the current
 * directory, removing "." and ".." elements.  Returns owned string. */
char *path_abs(const char *path);
/* Percent-decodes s[0..n); a '%' not followed by two hex digits is kept as
 * is, and '+' becomes a space when plus_is_space (query strings, as Go's
 * url.ParseQuery).  Returns owned string. */
char *percent_decode(const char *s, size_t n, int plus_is_space);
/* Lower-case hex encoding of n bytes into out (2n+1 bytes). */
void hex_encode(const uint8_t *in, size_t n, char *out);

/* Clocks, in nanoseconds. */
int64_t time_now_ns(void);  /* CLOCK_REALTIME */
int64_t time_mono_ns(void); /* CLOCK_MONOTONIC */
#define NS_PER_MS 1000000LL
#define NS_PER_SEC 1000000000LL

/* sec * NS_PER_SEC + nsec, saturated to INT64_MIN / INT64_MAX (times
 * before 1677-09-21 or after 2262-04-11 do not fit in int64 nanoseconds). */
int64_t time_ns_sat(int64_t sec, int64_t nsec);

/* RFC 3339 in UTC without fractional seconds: "2006-01-02T15:04:05Z".
 * out must hold 32 bytes. */
void time_format_rfc3339(int64_t ns, char *out);
/* Parses RFC 3339 / ISO 8601 ("2006-01-02T15:04:05Z", "...05.123Z",
 * "...05+02:00").  Returns 0 and writes *ns on success; -EINVAL for bad
 * syntax; -ERANGE for a valid time outside int64 nanoseconds (1677-09-21 to
 * 2262-04-11), with *ns saturated to INT64_MIN or INT64_MAX. */
int time_parse_rfc3339(const char *s, int64_t *ns);

/* Go duration syntax.  Parsing accepts "ns us µs ms s m h" and also "d"
 * (24h); a bare integer is nanoseconds (as yaml.v2 decodes one).
 * Formatting matches Go's time.Duration.String(): "0s", "1.5s", "350ms",
 * "1h2m3s", "-2s".  out must hold 40 bytes. */
int duration_parse(const char *s, int64_t *ns);
void duration_format(int64_t ns, char *out);
/* Truncation used by the listing commands' lag column (spec 5.3). */
int64_t duration_round_lag(int64_t ns);

/* Files. */
/* Reads a whole file (at most max bytes, 0 = unlimited). */
int file_read_all(const char *path, size_t max, struct buf *out);
/* Writes data to path via path.tmp + fsync + rename (+ fsync of the
 * directory).  mode is used for a new file. */
int file_write_atomic(const char *path, const void *data, size_t len,
                      mode_t mode);
/* The same; the directory is fsynced only if sync_dir (without it, after
 * a crash of the machine path may still hold its previous contents, whole:
 * the new file's data is durable, its rename may not be). */
int file_write_atomic_dir(const char *path, const void *data, size_t len,
                          mode_t mode, int sync_dir);
/* mkdir -p with the given mode for directories it creates. */
int mkdir_p(const char *path, mode_t mode);
/* Removes a directory tree; missing is not an error. */
int rm_rf(const char *path);
int fsync_dir(const char *dir);
/* pread/pwrite loops that handle short transfers and EINTR. */
ssize_t pread_full(int fd, void *buf, size_t n, off_t off);
int pwrite_full(int fd, const void *buf, size_t n, off_t off);
int write_full(int fd, const void *buf, size_t n);

/* Random bytes from the OS (getrandom), used for generation names. */
void random_bytes(void *out, size_t n);

#endif
