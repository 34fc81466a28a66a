/*
 * Logging.  One line per event, text or JSON (logging.type), to stdout or
 * stderr (logging.stderr), with the database and replica it concerns.
 * Text lines look like Go's slog text handler so existing log parsing keeps
 * working:  time=... level=INFO msg="..." db=/data/app.db replica=s3 k=v
 * Never pass secrets to these functions.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdarg.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

struct log_config {
  enum log_level level;
  int json;
  int to_stderr;
};

void log_setup(const struct log_config *cfg);
void log_get(struct log_config *out);
int log_enabled(enum log_level level);

/* `db` and `replica` may be NULL.  `fmt` formats the message; extra key=value
 * attributes can follow as a pre-formatted string via log_kv(). */
void log_msg(enum log_level level, const char *db, const char *replica,
             const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void log_vmsg(enum log_level level, const char *db, const char *replica,
              const char *fmt, va_list ap);

#define log_debug(db, rep, ...) log_msg(LOG_DEBUG, db, rep, __VA_ARGS__)
#define log_info(db, rep, ...) log_msg(LOG_INFO, db, rep, __VA_ARGS__)
#define log_warn(db, rep, ...) log_msg(LOG_WARN, db, rep, __VA_ARGS__)
#define log_error(db, rep, ...) log_msg(LOG_ERROR, db, rep, __VA_ARGS__)

/* Parses "debug", "info", "warn", "warning", "error" (any case).
 * Returns -1 if unknown. */
int log_level_parse(const char *s);

#endif
