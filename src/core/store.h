/*
 * The replica layout of spec 1.1 on top of a backend: listing generations,
 * snapshots and WAL segments, and the object names to read and write.
 * Listings skip foreign objects silently, sort ascending (generation, index,
 * offset) and take times from the backend's object metadata.
 */
#ifndef SLUICE_STORE_H
#define SLUICE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"
#include "format/names.h"

struct snapshot_info {
  char gen[GEN_LEN + 1];
  uint32_t index;
  int64_t size; /* stored (compressed) bytes */
  int64_t created_ns;
};

struct segment_info {
  char gen[GEN_LEN + 1];
  uint32_t index;
  int64_t offset;
  int64_t size; /* stored (compressed) bytes */
  int64_t created_ns;
};

struct gen_list {
  char (*gens)[GEN_LEN + 1];
  size_t n;
};
struct snapshot_list {
  struct snapshot_info *v;
  size_t n;
};
struct segment_list {
  struct segment_info *v;
  size_t n;
};
void gen_list_destroy(struct gen_list *l);
void snapshot_list_destroy(struct snapshot_list *l);
void segment_list_destroy(struct segment_list *l);

typedef void (*store_cb)(void *arg, int status, const char *err);

/* Asynchronous listings: `out` is filled before cb runs with status 0. */
void store_generations(struct backend *b, struct gen_list *out, store_cb cb,
                       void *arg);
void store_snapshots(struct backend *b, const char *gen,
                     struct snapshot_list *out, store_cb cb, void *arg);
void store_segments(struct backend *b, const char *gen,
                    struct segment_list *out, store_cb cb, void *arg);

/* Time bounds of a generation: min/max created time over its snapshots and
 * segments (spec 4.1).  Fails with ERR_NOT_FOUND if it holds nothing. */
void store_generation_bounds(struct backend *b, const char *gen,
                             int64_t *start_ns, int64_t *end_ns, store_cb cb,
                             void *arg);

/* Synchronous versions for CLI commands (run the loop until done). */
int store_generations_sync(struct backend *b, struct gen_list *out, char *err,
                           size_t errlen);
int store_snapshots_sync(struct backend *b, const char *gen,
                         struct snapshot_list *out, char *err, size_t errlen);
int store_segments_sync(struct backend *b, const char *gen,
                        struct segment_list *out, char *err, size_t errlen);

int store_generation_bounds_sync(struct backend *b, const char *gen,
                                 int64_t *start_ns, int64_t *end_ns, char *err,
                                 size_t errlen);

#endif
