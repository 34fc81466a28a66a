/* base/smap.c: the path -> database map of the daemon and discovery. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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

int main(void) {
  RUN(put_get_del);
  RUN(many_with_churn);
  T_DONE();
}
