/* base/slab: objects of each class are zeroed, distinct, reused once freed,
 * and packed in blocks of their own (not the malloc heap). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/slab.h"
#include "t.h"

TEST(zeroed_distinct_reused) {
  enum { N = 5000 };
  static char *p[N];
  for (int i = 0; i < N; i++) {
    size_t n = 1 + (size_t)(i * 37) % SLAB_MAX;
    p[i] = slab_alloc(n);
    for (size_t k = 0; k < n; k++)
      CHECK(p[i][k] == 0);
    memset(p[i], 0xab, n);
  }
  /* Distinct: each still holds its own bytes after all were written. */
  for (int i = 0; i < N; i++) {
    size_t n = 1 + (size_t)(i * 37) % SLAB_MAX;
    CHECK((unsigned char)p[i][n - 1] == 0xab);
  }
  char *q = p[10];
  size_t n10 = 1 + (size_t)(10 * 37) % SLAB_MAX;
  slab_free(q, n10);
  char *r = slab_alloc(n10);
  CHECK(r[0] == 0 && r[n10 - 1] == 0);
#if !defined(__SANITIZE_ADDRESS__)
  CHECK(r == q); /* the class's free list first */
  CHECK(slab_reserved() >= 64 * 1024);
#endif
  p[10] = r;
  for (int i = 0; i < N; i++)
    slab_free(p[i], 1 + (size_t)(i * 37) % SLAB_MAX);
}

TEST(large_is_malloc) {
  char *p = slab_alloc(SLAB_MAX + 1);
  CHECK(p[SLAB_MAX] == 0);
  slab_free(p, SLAB_MAX + 1);
}

int main(void) {
  RUN(zeroed_distinct_reused);
  RUN(large_is_malloc);
  T_DONE();
}
