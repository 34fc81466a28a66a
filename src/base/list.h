/*
 * An intrusive doubly linked list (FIFO queues of objects that may leave
 * from the middle): the node lives in the object, push, pop and remove
 * are O(1), nothing is allocated.  container_of (base/util.h) turns a node
 * back into its object.  A node is on at most one list at a time; an
 * unlinked node has prev == next == NULL and is not the head of its list.
 */
#ifndef SLUICE_LIST_H
#define SLUICE_LIST_H

#include <stddef.h>

struct list_node {
  struct list_node *prev, *next;
};

struct list {
  struct list_node *head, *tail;
  size_t n;
};

static inline int list_empty(const struct list *l) {
  return l->head == NULL;
}

/* Whether n is on l (n is on l or on no list). */
static inline int list_linked(const struct list *l, const struct list_node *n) {
  return n->prev || n->next || l->head == n;
}

static inline void list_push_tail(struct list *l, struct list_node *n) {
  n->next = NULL;
  n->prev = l->tail;
  if (l->tail)
    l->tail->next = n;
  else
    l->head = n;
  l->tail = n;
  l->n++;
}

static inline void list_push_head(struct list *l, struct list_node *n) {
  n->prev = NULL;
  n->next = l->head;
  if (l->head)
    l->head->prev = n;
  else
    l->tail = n;
  l->head = n;
  l->n++;
}

/* Unlinks n if it is on l (else nothing). */
static inline void list_remove(struct list *l, struct list_node *n) {
  if (!list_linked(l, n))
    return;
  if (n->prev)
    n->prev->next = n->next;
  else
    l->head = n->next;
  if (n->next)
    n->next->prev = n->prev;
  else
    l->tail = n->prev;
  n->prev = n->next = NULL;
  l->n--;
}

/* The first node, unlinked; NULL if empty. */
static inline struct list_node *list_pop_head(struct list *l) {
  struct list_node *n = l->head;
  if (n)
    list_remove(l, n);
  return n;
}

#endif
