/*
 * A map from strings to pointers (open addressing, linear probing, keys
 * copied unless borrowed).  Zero-initialised is empty.  Used where a linear
 * search would grow with the number of databases (100,000 in one process).
 */
#ifndef SLUICE_SMAP_H
#define SLUICE_SMAP_H

#include <stddef.h>

struct smap_slot {
  char *key; /* NULL: empty; SMAP_TOMB: deleted */
  void *val;
};
struct smap {
  struct smap_slot *slots;
  size_t cap, n, used; /* used counts tombstones too */
  /* Set before use: keys are borrowed, not copied (each must outlive its
   * entry; a put of a key already there takes the new pointer).  For a
   * map keyed by a string its value holds (100,000 database paths). */
  int borrow;
};
/* The value for key, or NULL. */
void *smap_get(const struct smap *m, const char *key);
/* Sets key to val (replacing any value). */
void smap_put(struct smap *m, const char *key, void *val);
/* Removes key; returns its value or NULL. */
void *smap_del(struct smap *m, const char *key);
/* Iteration: for (size_t i = 0; (i = smap_next(m, i, &k, &v)); ) ...
 * Start at 0; returns 0 at the end.  Deleting the current key is safe. */
size_t smap_next(const struct smap *m, size_t i, const char **key, void **val);
void smap_destroy(struct smap *m);

#endif
