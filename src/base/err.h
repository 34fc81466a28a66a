/*
 * Error codes.  Functions return 0 on success and a negative value on
 * failure: -errno for system errors, or one of the project codes below
 * (libuv's UV_ERRNO_MAP style).  Project codes start well above any errno.
 */
#ifndef SLUICE_ERR_H
#define SLUICE_ERR_H

#define ERR_MAP(X)                                                             \
  X(CONFIG, "invalid configuration")                                           \
  X(URL, "invalid replica URL")                                                \
  X(WAL_CORRUPT, "corrupt WAL")                                                \
  X(WAL_HEADER, "invalid WAL header")                                          \
  X(LZ4, "corrupt LZ4 frame")                                                  \
  X(NOT_FOUND, "not found")                                                    \
  X(HTTP, "HTTP transfer failed")                                              \
  X(HTTP_STATUS, "unexpected HTTP status")                                     \
  X(AUTH, "authentication failed")                                             \
  X(SQLITE, "SQLite error")                                                    \
  X(BUSY, "database is busy")                                                  \
  X(NO_GENERATION, "no generation")                                            \
  X(NO_SNAPSHOT, "no snapshots available")                                     \
  X(NO_BACKUPS, "no matching backups found")                                   \
  X(SEGMENT_GAP, "missing or non-contiguous WAL segment")                      \
  X(CORRUPT, "corrupt object")                                                 \
  X(BACKEND, "backend not available")                                          \
  X(CANCELED, "canceled")                                                      \
  X(TOO_BIG, "object too large")                                               \
  X(INTEGRITY, "integrity check failed")                                       \
  X(PROTOCOL, "protocol error")                                                \
  X(EXISTS, "already exists")                                                  \
  X(AGE_KEY, "invalid age key")                                                \
  X(AGE_HEADER, "not a valid age file (malformed age header)")                 \
  X(AGE_NO_MATCH, "the age identity does not match: the configured key "       \
                  "cannot open this object (encrypted to other recipients)")   \
  X(AGE_HMAC, "age header MAC mismatch (corrupt header)")                      \
  X(AGE_PAYLOAD, "corrupt or truncated age payload")                           \
  X(AGE_NO_IDENTITY, "object is age-encrypted and no age identity is "         \
                     "configured for this replica")                            \
  X(PRECONDITION, "condition not met: the object changed or exists")

enum {
  ERR_BASE_ = -10000,
#define ERR_ENUM(name, msg) ERR_##name,
  ERR_MAP(ERR_ENUM)
#undef ERR_ENUM
      ERR_LAST_
};

/* Returns a static description for 0, -errno or an ERR_* code. */
const char *err_str(int code);

#endif
