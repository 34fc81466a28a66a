/*
 * What the live backend tests (test_abs_live, test_gcs_live) share: a
 * reachability probe for their server, opening a backend from a config,
 * test data, and synchronous put/get of memory through the backend API.
 */
#ifndef SLUICE_T_LIVE_H
#define SLUICE_T_LIVE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backends/backend.h"
#include "base/util.h"

static char errbuf[1024]; /* the last backend_*_sync message */

static inline int reachable(int p) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  close(fd);
  return ok;
}

static inline struct backend *open_cfg(const struct replica_config *c) {
  char err[512];
  struct backend *b = backend_open(c, err, sizeof(err));
  if (!b)
    fprintf(stderr, "backend_open: %s\n", err);
  return b;
}

static inline uint8_t *pattern(size_t n, unsigned seed) {
  uint8_t *p = xmalloc(n);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p[i] = (uint8_t)x;
  }
  return p;
}

static inline int put_mem(struct backend *b, const char *key, const void *data,
                          size_t n) {
  struct payload p = {.data = data, .fd = -1, .len = (int64_t)n};
  return backend_put_sync(b, key, &p, errbuf, sizeof(errbuf));
}

static inline int get_mem(struct backend *b, const char *key, int64_t off,
                          int64_t len, struct buf *out) {
  buf_init(out, 0);
  struct sink s = {.buf = out, .fd = -1};
  return backend_get_sync(b, key, off, len, &s, errbuf, sizeof(errbuf));
}

static inline int tmpfile_with(const void *data, size_t n) {
  char path[] = "/tmp/sluice-live-XXXXXX";
  int fd = mkstemp(path);
  unlink(path);
  if (n)
    write_full(fd, data, n);
  return fd;
}

#endif
