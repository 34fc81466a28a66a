/* base/smap.c: the path -> database map of the daemon and discovery. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/smap.h"
#include "t.h"

TEST(put_get_del) {
  struct smap m = {0};
  CHECK(smap_get(&m, "a") == NULL);
  CHECK(smap_del(&m, "a") == NULL);
  smap_put(&m, "a", (void *)1);
  smap_put(&m, "b", (void *)2);
  smap_put(&m, "a", (void *)3); /* replaces */
  CHECK_INT((int)m.n, 2);
  CHECK((intptr_t)smap_get(&m, "a") == 3);
  CHECK((intptr_t)smap_del(&m, "a") == 3);
  CHECK(smap_get(&m, "a") == NULL);
  CHECK((intptr_t)smap_get(&m, "b") == 2);
  CHECK_INT((int)m.n, 1);
  smap_destroy(&m);
  CHECK_INT((int)m.n, 0);
}

/* 100,000 keys (a host's databases), half deleted, re-added: every lookup
 * right, tombstones never fill the table, iteration sees each live key
 * once (deleting while iterating included). */
TEST(many_with_churn) {
  struct smap m = {0};
  char k[32];
  int bad = 0;
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 100000; i++) {
      snprintf(k, sizeof(k), "/srv/t/%d.db", i);
      smap_put(&m, k, (void *)(intptr_t)(i + 1));
    }
    for (int i = 0; i < 100000; i += 2) {
      snprintf(k, sizeof(k), "/srv/t/%d.db", i);
      if ((intptr_t)smap_del(&m, k) != i + 1)
        bad++;
    }
  }
  CHECK_INT((int)m.n, 50000);
  CHECK(m.used * 4 <= m.cap * 3);
  for (int i = 0; i < 100000; i++) {
    snprintf(k, sizeof(k), "/srv/t/%d.db", i);
    intptr_t v = (intptr_t)smap_get(&m, k);
    if (v != (i % 2 ? i + 1 : 0))
      bad++;
  }
  CHECK_INT(bad, 0);
  size_t seen = 0;
  const char *key;
  void *val;
  for (size_t i = 0; (i = smap_next(&m, i, &key, &val));) {
    seen++;
    smap_del(&m, key);
  }
  CHECK_INT((int)seen, 50000);
  CHECK_INT((int)m.n, 0);
  smap_destroy(&m);
}

/* Borrowed keys: the map keeps the caller's pointer (no copy, none freed:
 * ASan reports a double free or a leak otherwise), a put of a key already
 * there takes the new pointer, and a destroyed map still borrows. */
TEST(borrowed_keys) {
  struct smap m = {.borrow = 1};
  char *a1 = strdup("/d/a.db"), *a2 = strdup("/d/a.db"), *b = strdup("/d/b");
  smap_put(&m, a1, (void *)1);
  smap_put(&m, b, (void *)2);
  const char *k;
  void *v;
  for (size_t i = 0; (i = smap_next(&m, i, &k, &v));)
    CHECK(k == ((intptr_t)v == 1 ? a1 : b));
  smap_put(&m, a2, (void *)3); /* a new instance of the same path */
  free(a1);                    /* the old one's key may go now */
  CHECK((intptr_t)smap_get(&m, "/d/a.db") == 3);
  for (size_t i = 0; (i = smap_next(&m, i, &k, &v));)
    CHECK(k == ((intptr_t)v == 3 ? a2 : b));
  CHECK((intptr_t)smap_del(&m, "/d/b") == 2);
  free(b);
  CHECK_INT((int)m.n, 1);
  smap_destroy(&m);
  CHECK_INT(m.borrow, 1);
  char *c = strdup("/d/c");
  smap_put(&m, c, (void *)4);
  CHECK((intptr_t)smap_get(&m, "/d/c") == 4);
  smap_destroy(&m);
  free(a2);
  free(c);
}

int main(void) {
  RUN(put_get_del);
  RUN(borrowed_keys);
  RUN(many_with_churn);
  T_DONE();
}
