#include "base/smap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static char tomb;
#define SMAP_TOMB (&tomb)

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static struct smap_slot *find(const struct smap *m, const char *key) {
  if (!m->cap)
    return NULL;
  size_t mask = m->cap - 1;
  for (size_t i = hash(key) & mask;; i = (i + 1) & mask) {
    struct smap_slot *s = &m->slots[i];
    if (!s->key)
      return NULL;
    if (s->key != SMAP_TOMB && !strcmp(s->key, key))
      return s;
  }
}

void *smap_get(const struct smap *m, const char *key) {
  struct smap_slot *s = find(m, key);
  return s ? s->val : NULL;
}

static void grow(struct smap *m) {
  size_t cap = m->cap ? m->cap : 16;
  while ((m->n + 1) * 2 > cap)
    cap *= 2;
  struct smap_slot *old = m->slots;
  size_t old_cap = m->cap;
  m->slots = xcalloc(cap, sizeof(*m->slots));
  m->cap = cap;
  m->used = m->n;
  for (size_t i = 0; i < old_cap; i++) {
    char *k = old[i].key;
    if (!k || k == SMAP_TOMB)
      continue;
    size_t j = hash(k) & (cap - 1);
    while (m->slots[j].key)
      j = (j + 1) & (cap - 1);
    m->slots[j] = old[i];
  }
  free(old);
}

void smap_put(struct smap *m, const char *key, void *val) {
  struct smap_slot *s = find(m, key);
  if (s) {
    if (m->borrow)
      s->key = (char *)key;
    s->val = val;
    return;
  }
  if ((m->used + 1) * 4 > m->cap * 3)
    grow(m);
  size_t mask = m->cap - 1;
  size_t i = hash(key) & mask;
  while (m->slots[i].key && m->slots[i].key != SMAP_TOMB)
    i = (i + 1) & mask;
  if (!m->slots[i].key)
    m->used++;
  m->slots[i].key = m->borrow ? (char *)key : xstrdup(key);
  m->slots[i].val = val;
  m->n++;
}

void *smap_del(struct smap *m, const char *key) {
  struct smap_slot *s = find(m, key);
  if (!s)
    return NULL;
  void *v = s->val;
  if (!m->borrow)
    free(s->key);
  s->key = SMAP_TOMB;
  s->val = NULL;
  m->n--;
  return v;
}

size_t smap_next(const struct smap *m, size_t i, const char **key, void **val) {
  for (; i < m->cap; i++) {
    struct smap_slot *s = &m->slots[i];
    if (s->key && s->key != SMAP_TOMB) {
      *key = s->key;
      *val = s->val;
      return i + 1;
    }
  }
  return 0;
}

void smap_destroy(struct smap *m) {
  int borrow = m->borrow;
  for (size_t i = 0; i < m->cap && !borrow; i++)
    if (m->slots[i].key && m->slots[i].key != SMAP_TOMB)
      free(m->slots[i].key);
  free(m->slots);
  memset(m, 0, sizeof(*m));
  m->borrow = borrow; /* (empty, still borrowing) */
}
