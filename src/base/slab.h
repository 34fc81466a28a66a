/*
 * Small long-lived objects packed together, off the malloc heap: the
 * records of dormant databases and the directory watches' subscriptions,
 * up to 100,000 each in one process.  Allocated one by one from malloc
 * they land in the holes of what a database freed when it went dormant,
 * one or two per page, and keep those pages resident (a heap trim cannot
 * give back a page that holds one live chunk).  Here they are carved from
 * 64 KiB blocks of their own, by size class (16 bytes apart, up to
 * SLAB_MAX), and a freed one is reused by the next of its class.  Blocks
 * are never given back.  Loop thread only (no locking).  Under
 * AddressSanitizer these are plain malloc and free, so that its checks
 * still see every object.
 */
#ifndef SLUICE_SLAB_H
#define SLUICE_SLAB_H

#include <stddef.h>

#define SLAB_MAX 512
/* n bytes, zeroed (malloc'd when n > SLAB_MAX).  Never NULL. */
void *slab_alloc(size_t n);
/* p from slab_alloc(n), with the same n. */
void slab_free(void *p, size_t n);
/* Bytes in blocks (for tests and benchmarks). */
size_t slab_reserved(void);

#endif
