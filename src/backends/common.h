/*
 * What every HTTP backend repeats: completing an operation from the loop
 * when its outcome is known before any request, and deleting many keys
 * with one request each, a few at a time.
 */
#ifndef SLUICE_BACKENDS_COMMON_H
#define SLUICE_BACKENDS_COMMON_H

#include <stddef.h>

#include "backends/backend.h"

/* Calls cb(arg, status, msg) from the loop, never before returning: every
 * operation completes asynchronously, as backend.h promises.  msg is
 * copied. */
void backend_defer(backend_cb cb, void *arg, int status, const char *msg);

/* A delete of n keys as n requests, at most max_inflight at once.  The
 * backend's start function sends the request for one key and, when it
 * completes, calls del_fanout_done with its result (0 for a key that did
 * not exist).  The first error stops further starts; cb runs once, after
 * every started request completed, with that error. */
struct del_fanout;
typedef void (*del_fanout_start_fn)(struct del_fanout *f, void *ctx,
                                    const char *key);
void del_fanout(char *const *keys, size_t n, int max_inflight,
                del_fanout_start_fn start, void *ctx, backend_cb cb, void *arg);
void del_fanout_done(struct del_fanout *f, int rc, const char *msg);

#endif
