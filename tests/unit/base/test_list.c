/* base/list.h: the intrusive doubly linked list of db.c's queues. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/list.h"
#include "base/util.h"
#include "t.h"

struct item {
  int id;
  struct list_node node;
};

static int id_of(struct list_node *n) {
  return container_of(n, struct item, node)->id;
}

/* FIFO order, removal from the head, the middle and the tail, a removal
 * of a node not on the list (nothing happens), re-insertion. */
TEST(fifo_and_remove_anywhere) {
  struct list l = {0};
  struct item it[5] = {{0}};
  for (int i = 0; i < 5; i++) {
    it[i].id = i;
    CHECK(!list_linked(&l, &it[i].node));
    list_push_tail(&l, &it[i].node);
    CHECK(list_linked(&l, &it[i].node));
  }
  CHECK_INT((int)l.n, 5);
  list_remove(&l, &it[2].node); /* middle */
  list_remove(&l, &it[0].node); /* head */
  list_remove(&l, &it[4].node); /* tail */
  list_remove(&l, &it[4].node); /* again: not linked, nothing */
  CHECK_INT((int)l.n, 2);
  CHECK(!list_linked(&l, &it[2].node));
  CHECK_INT(id_of(l.head), 1);
  CHECK_INT(id_of(l.tail), 3);
  list_push_tail(&l, &it[0].node);
  int want[] = {1, 3, 0};
  for (int i = 0; i < 3; i++) {
    struct list_node *n = list_pop_head(&l);
    CHECK(n != NULL);
    if (n)
      CHECK_INT(id_of(n), want[i]);
  }
  CHECK(list_pop_head(&l) == NULL);
  CHECK(list_empty(&l));
  CHECK(l.tail == NULL);
  CHECK_INT((int)l.n, 0);
  /* A list of one: its node is linked although prev and next are NULL. */
  list_push_tail(&l, &it[3].node);
  CHECK(list_linked(&l, &it[3].node));
  list_remove(&l, &it[3].node);
  CHECK(list_empty(&l) && l.tail == NULL);
}

/* 100,000 queued objects (databases waiting for a hot slot), every other
 * one removed from the middle, then the rest popped in order: linear, not
 * quadratic (a scan per removal took minutes at this size), and the order
 * and count stay right. */
TEST(many_removed_from_the_middle) {
  enum { N = 100000 };
  struct item *it = xcalloc(N, sizeof(*it));
  struct list l = {0};
  for (int i = 0; i < N; i++) {
    it[i].id = i;
    list_push_tail(&l, &it[i].node);
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = N - 1; i >= 0; i -= 2) /* from the tail end: worst for a scan */
    list_remove(&l, &it[i].node);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
              (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  CHECK(ms < 1000); /* about 1 ms; a scan per removal: ~10 s */
  CHECK_INT((int)l.n, N / 2);
  int bad = 0, k = 0;
  for (struct list_node *n; (n = list_pop_head(&l)); k += 2)
    bad += id_of(n) != k;
  CHECK_INT(bad, 0);
  CHECK_INT(k, N);
  CHECK(list_empty(&l));
  free(it);
}

int main(void) {
  RUN(fifo_and_remove_anywhere);
  RUN(many_removed_from_the_middle);
  T_DONE();
}
