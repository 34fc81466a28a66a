#include "base/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/util.h"

/* Pool jobs log while a SIGHUP's reload may set them on the loop: each
 * field on its own, atomically (a line written across a reload takes the
 * old or the new value of each). */
static _Atomic int g_level = LOG_INFO, g_json = 0, g_to_stderr = 1;

void log_setup(const struct log_config *cfg) {
  atomic_store_explicit(&g_level, (int)cfg->level, memory_order_relaxed);
  atomic_store_explicit(&g_json, cfg->json, memory_order_relaxed);
  atomic_store_explicit(&g_to_stderr, cfg->to_stderr, memory_order_relaxed);
}

void log_get(struct log_config *out) {
  out->level =
      (enum log_level)atomic_load_explicit(&g_level, memory_order_relaxed);
  out->json = atomic_load_explicit(&g_json, memory_order_relaxed);
  out->to_stderr = atomic_load_explicit(&g_to_stderr, memory_order_relaxed);
}

int log_enabled(enum log_level level) {
  return (int)level >= atomic_load_explicit(&g_level, memory_order_relaxed);
}

int log_level_parse(const char *s) {
  if (!strcasecmp(s, "debug"))
    return LOG_DEBUG;
  if (!strcasecmp(s, "info"))
    return LOG_INFO;
  if (!strcasecmp(s, "warn") || !strcasecmp(s, "warning"))
    return LOG_WARN;
  if (!strcasecmp(s, "error"))
    return LOG_ERROR;
  return -1;
}

static const char *level_name(enum log_level l) {
  switch (l) {
  case LOG_DEBUG:
    return "DEBUG";
  case LOG_INFO:
    return "INFO";
  case LOG_WARN:
    return "WARN";
  default:
    return "ERROR";
  }
}

/* Quotes a value for the text format when it needs it (slog's rule:
 * spaces, '=', '"' or control characters). */
static void put_text_value(struct buf *b, const char *v) {
  int quote = *v == '\0';
  for (const char *p = v; *p && !quote; p++)
    if (*p == ' ' || *p == '=' || *p == '"' || (unsigned char)*p < 0x20)
      quote = 1;
  if (!quote) {
    buf_append(b, v, strlen(v));
    return;
  }
  buf_append(b, "\"", 1);
  for (const char *p = v; *p; p++) {
    if (*p == '"' || *p == '\\')
      buf_appendf(b, "\\%c", *p);
    else if (*p == '\n')
      buf_append(b, "\\n", 2);
    else if ((unsigned char)*p < 0x20)
      buf_appendf(b, "\\u%04x", *p);
    else
      buf_append(b, p, 1);
  }
  buf_append(b, "\"", 1);
}

static void put_json_string(struct buf *b, const char *v) {
  buf_append(b, "\"", 1);
  for (const char *p = v; *p; p++) {
    if (*p == '"' || *p == '\\')
      buf_appendf(b, "\\%c", *p);
    else if (*p == '\n')
      buf_append(b, "\\n", 2);
    else if ((unsigned char)*p < 0x20)
      buf_appendf(b, "\\u%04x", *p);
    else
      buf_append(b, p, 1);
  }
  buf_append(b, "\"", 1);
}

void log_vmsg(enum log_level level, const char *db, const char *replica,
              const char *fmt, va_list ap) {
  if (!log_enabled(level))
    return;
  char *msg = xvasprintf(fmt, ap);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[64];
  size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000);

  struct buf b;
  buf_init(&b, 0);
  if (atomic_load_explicit(&g_json, memory_order_relaxed)) {
    buf_appendf(&b, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":", when,
                level_name(level));
    put_json_string(&b, msg);
    if (db) {
      buf_append(&b, ",\"db\":", 6);
      put_json_string(&b, db);
    }
    if (replica) {
      buf_append(&b, ",\"replica\":", 11);
      put_json_string(&b, replica);
    }
    buf_append(&b, "}\n", 2);
  } else {
    buf_appendf(&b, "time=%s level=%s msg=", when, level_name(level));
    put_text_value(&b, msg);
    if (db) {
      buf_append(&b, " db=", 4);
      put_text_value(&b, db);
    }
    if (replica) {
      buf_append(&b, " replica=", 9);
      put_text_value(&b, replica);
    }
    buf_append(&b, "\n", 1);
  }
  FILE *f = atomic_load_explicit(&g_to_stderr, memory_order_relaxed) ? stderr
                                                                     : stdout;
  fwrite(b.data, 1, b.len, f);
  fflush(f);
  buf_destroy(&b);
  free(msg);
}

void log_msg(enum log_level level, const char *db, const char *replica,
             const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_vmsg(level, db, replica, fmt, ap);
  va_end(ap);
}
