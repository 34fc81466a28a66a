#include "base/slab.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/util.h"

#if defined(__SANITIZE_ADDRESS__)
#define SLAB_PLAIN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLAB_PLAIN 1
#endif
#endif

#ifndef SLAB_PLAIN
#define SLAB_STEP 16
#define SLAB_CLASSES (SLAB_MAX / SLAB_STEP)
#define SLAB_BLOCK (64 * 1024)

struct slab_free_obj {
  struct slab_free_obj *next;
};

static struct slab_free_obj *g_free[SLAB_CLASSES];
static char *g_cur;      /* the block being carved */
static size_t g_cur_off; /* its next free byte */
static size_t g_reserved;

static size_t class_of(size_t n) {
  return (n + SLAB_STEP - 1) / SLAB_STEP - 1; /* n >= 1 */
}
#else
static size_t g_reserved;
#endif

void *slab_alloc(size_t n) {
  if (n == 0)
    n = 1;
#ifdef SLAB_PLAIN
  return xcalloc(1, n);
#else
  if (n > SLAB_MAX)
    return xcalloc(1, n);
  size_t c = class_of(n), sz = (c + 1) * SLAB_STEP;
  struct slab_free_obj *o = g_free[c];
  if (o) {
    g_free[c] = o->next;
    memset(o, 0, sz);
    return o;
  }
  if (!g_cur || g_cur_off + sz > SLAB_BLOCK) {
    void *b = mmap(NULL, SLAB_BLOCK, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED)
      return xcalloc(1, n); /* (slab_free may list it: it stays valid) */
    g_cur = b;
    g_cur_off = 0;
    g_reserved += SLAB_BLOCK;
  }
  void *p = g_cur + g_cur_off;
  g_cur_off += sz;
  return p; /* fresh mmap memory is zero */
#endif
}

void slab_free(void *p, size_t n) {
  if (!p)
    return;
  if (n == 0)
    n = 1;
#ifdef SLAB_PLAIN
  free(p);
#else
  if (n > SLAB_MAX) {
    free(p);
    return;
  }
  struct slab_free_obj *o = p;
  size_t c = class_of(n);
  o->next = g_free[c];
  g_free[c] = o;
#endif
}

size_t slab_reserved(void) {
  return g_reserved;
}
