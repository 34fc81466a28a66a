/*
 * The storage backend interface: one const vtable per store (curl's TLS
 * backends, SQLite's VFS).  A backend is a flat object store; the replica
 * layout of spec 1.1 is built on top of it by core/store.c.
 *
 * Keys passed to and returned by every operation are relative to the
 * replica root (`path` in the config), '/'-separated, e.g.
 * "generations/0123456789abcdef/wal/00000000_00000000.wal.lz4".
 *
 * Every operation is asynchronous: it returns at once and later calls
 * `cb(arg, status, err)` exactly once on the loop thread.  status is 0 or a
 * negative code (ERR_NOT_FOUND for a missing object on get); `err` is a
 * one-line message naming the operation, the object and the cause (never a
 * secret), valid only during the callback.
 */
#ifndef SLUICE_BACKEND_H
#define SLUICE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "base/util.h"
#include "format/age.h"
#include "loop/http.h"

enum backend_cap {
  BACKEND_CAP_RANGE = 1 << 0,        /* get with offset/length */
  BACKEND_CAP_MULTIPART = 1 << 1,    /* large puts in parallel parts */
  BACKEND_CAP_BATCH_DELETE = 1 << 2, /* del of many keys is one request */
  BACKEND_CAP_COND = 1 << 3,         /* get_tag/put_cond are atomic */
};

/* The version of an object for conditional writes: an S3 or Azure ETag,
 * a GCS generation, a hash of a file's content.  NUL-terminated. */
#define BACKEND_TAG_MAX 128

struct obj_info {
  char *key;        /* relative to the replica root */
  int64_t size;     /* stored bytes */
  int64_t mtime_ns; /* creation / last-modified time, UTC */
};

struct obj_list {
  struct obj_info *objs;
  size_t n;
  char **prefixes; /* common prefixes when listed with a delimiter,
                      relative to the root and ending in '/' */
  size_t n_prefixes;
  size_t cap, cap_prefixes; /* allocated */
  struct strset prefix_set; /* dedupes prefixes in linear time */
};
void obj_list_destroy(struct obj_list *l);
void obj_list_add(struct obj_list *l, const char *key, int64_t size,
                  int64_t mtime_ns);
void obj_list_add_prefix(struct obj_list *l, const char *prefix);
/* Sorts objects by key (and prefixes) in byte order. */
void obj_list_sort(struct obj_list *l);

/* A paged listing's guard against a store that never ends it: a
 * continuation token (S3 NextContinuationToken, Azure NextMarker, GCS
 * nextPageToken) seen before, or more than BACKEND_LIST_MAX_PAGES pages
 * (SLUICE_LIST_MAX_PAGES overrides it, for tests), is an error.
 * Zero-initialised; list_pages_next is called after each page with the
 * next page's token (NULL when the listing is complete): 0 to go on, else
 * ERR_PROTOCOL with the reason in why. */
#define BACKEND_LIST_MAX_PAGES 100000
struct list_pages {
  struct strset tokens;
  int pages;
};
int list_pages_next(struct list_pages *lp, const char *token, char *why,
                    size_t whylen);
void list_pages_destroy(struct list_pages *lp);

/* What to upload: memory (data != NULL) or `len` bytes of fd from `off`. */
struct payload {
  const uint8_t *data;
  int fd;
  int64_t off;
  int64_t len;
};

/* Where a download goes: appended to buf, or written to fd at off. */
struct sink {
  struct buf *buf;
  int fd;
  int64_t off;
};

typedef void (*backend_cb)(void *arg, int status, const char *err);

struct backend;

struct backend_ops {
  const char *name; /* "file", "s3", "gcs", "abs" */
  unsigned caps;
  size_t priv_size;
  /* Reads the replica config (already resolved from URL and keys); may not
   * do I/O that blocks for long.  On failure writes a one-line message. */
  int (*open)(struct backend *b, const struct replica_config *cfg, char *err,
              size_t errlen);
  /* Called with no operation in flight. */
  void (*close)(struct backend *b);
  void (*put)(struct backend *b, const char *key, const struct payload *p,
              backend_cb cb, void *arg);
  /* len < 0 reads to the end of the object. */
  void (*get)(struct backend *b, const char *key, int64_t off, int64_t len,
              const struct sink *s, backend_cb cb, void *arg);
  /* Lists keys under prefix.  With delimiter set, keys below the next '/'
   * after the prefix are folded into `prefixes`. `out` is filled before cb. */
  void (*list)(struct backend *b, const char *prefix, int delimiter,
               struct obj_list *out, backend_cb cb, void *arg);
  /* Deletes keys; missing keys are not an error. */
  void (*del)(struct backend *b, char *const *keys, size_t n, backend_cb cb,
              void *arg);
  /* Optional: removes what interrupted uploads left behind (the file
   * backend's *.tmp files older than min_age_ns that no upload holds);
   * *removed is set before cb. */
  void (*sweep)(struct backend *b, int64_t min_age_ns, size_t *removed,
                backend_cb cb, void *arg);
  /* Conditional writes of small objects (core/lease.c), with
   * BACKEND_CAP_COND.  get_tag appends the whole object to out and writes
   * its version to tag (BACKEND_TAG_MAX bytes); ERR_NOT_FOUND if missing.
   * put_cond stores data only if the object is absent (match NULL: S3 and
   * Azure If-None-Match: *, GCS ifGenerationMatch=0, O_EXCL) or its
   * current version is match (If-Match, ifGenerationMatch=N); otherwise
   * ERR_PRECONDITION.  On success the new version is in tag_out. */
  void (*get_tag)(struct backend *b, const char *key, struct buf *out,
                  char *tag, backend_cb cb, void *arg);
  void (*put_cond)(struct backend *b, const char *key, const uint8_t *data,
                   size_t len, const char *match, char *tag_out, backend_cb cb,
                   void *arg);
};

enum backend_op { BOP_GET, BOP_PUT, BOP_LIST, BOP_DELETE, BOP__COUNT };

struct backend {
  const struct backend_ops *ops;
  char *name; /* replica name, for logs */
  char *desc; /* printable location without secrets, e.g. s3://bkt/path */
  struct http_pool pool; /* bounds this replica's concurrent requests */
  /* Counters for litestream_replica_operation_total/_bytes. */
  int64_t op_count[BOP__COUNT];
  int64_t op_bytes[BOP__COUNT];
  int64_t op_errors;
  void *priv; /* ops->priv_size bytes, zeroed, owned by the core */
  /* The config's age section, parsed (empty without one): objects are
   * encrypted for its recipients and read with its identities by
   * core/codec.c.  Read-only once open, so pool jobs may use it. */
  struct age_keys age;
};

/* The registry: NULL-terminated. */
extern const struct backend_ops *const backend_registry[];
extern const struct backend_ops backend_file, backend_s3, backend_gcs,
    backend_abs, backend_sftp;

/* Finds ops by type name ("gs" is an alias of "gcs"); NULL if unknown. */
const struct backend_ops *backend_find(const char *type);
/* Creates and opens a backend for a replica config.  On failure returns NULL
 * and writes a one-line error (e.g. "backend not available yet"). */
struct backend *backend_open(const struct replica_config *cfg, char *err,
                             size_t errlen);
void backend_close(struct backend *b);

/* Called once for every request any backend is asked to make (the
 * process-wide request budget, core/budget.h); NULL: none.  Loop thread. */
void backend_set_request_hook(void (*fn)(void));

/* Wrappers that count operations for metrics, then call the ops. */
void backend_put(struct backend *b, const char *key, const struct payload *p,
                 backend_cb cb, void *arg);
void backend_get(struct backend *b, const char *key, int64_t off, int64_t len,
                 const struct sink *s, backend_cb cb, void *arg);
void backend_list(struct backend *b, const char *prefix, int delimiter,
                  struct obj_list *out, backend_cb cb, void *arg);
/* ops->sweep, or an immediate cb(arg, 0, NULL) with *removed = 0. */
void backend_sweep(struct backend *b, int64_t min_age_ns, size_t *removed,
                   backend_cb cb, void *arg);
void backend_del(struct backend *b, char *const *keys, size_t n, backend_cb cb,
                 void *arg);
/* ops->get_tag / ops->put_cond; a store without them (no BACKEND_CAP_COND)
 * gets a best-effort emulation: the tag is a hash of the content, and
 * put_cond reads, compares and then puts (not atomic: two writers in the
 * same moment can both succeed). */
void backend_get_tag(struct backend *b, const char *key, struct buf *out,
                     char *tag, backend_cb cb, void *arg);
void backend_put_cond(struct backend *b, const char *key, const uint8_t *data,
                      size_t len, const char *match, char *tag_out,
                      backend_cb cb, void *arg);
/* The tag of content for stores that have no version of their own (file,
 * the emulation): a hex 64-bit FNV-1a of the bytes and their length. */
void backend_content_tag(const uint8_t *data, size_t len, char *tag);

/* Waiting for one asynchronous operation from a CLI command: pass
 * sync_wait_cb and the struct as (cb, arg), then sync_wait_run() runs the
 * loop until it is done and returns its status (message in err).  Never
 * from inside a loop callback. */
struct sync_wait {
  volatile int done;
  int status;
  char *err;
  size_t errlen;
};
void sync_wait_init(struct sync_wait *w, char *err, size_t errlen);
void sync_wait_cb(void *arg, int status, const char *err);
int sync_wait_run(struct sync_wait *w);

/* Synchronous versions for CLI commands: run the loop until done.  Never
 * call them from inside a loop callback.  err gets the message on failure. */
int backend_put_sync(struct backend *b, const char *key,
                     const struct payload *p, char *err, size_t errlen);
int backend_get_sync(struct backend *b, const char *key, int64_t off,
                     int64_t len, const struct sink *s, char *err,
                     size_t errlen);
int backend_list_sync(struct backend *b, const char *prefix, int delimiter,
                      struct obj_list *out, char *err, size_t errlen);
int backend_del_sync(struct backend *b, char *const *keys, size_t n, char *err,
                     size_t errlen);

#endif
