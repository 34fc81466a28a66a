/*
 * S3 backend internals exposed for tests and diagnostics.  The backend
 * itself is used through backend.h (backend_s3).
 */
#ifndef SLUICE_S3_H
#define SLUICE_S3_H

#include <stddef.h>

struct backend;
struct obj_list;

/* The URL an object request for `key` (relative to the replica root) goes
 * to, e.g. "https://bkt.s3.eu-west-1.amazonaws.com/db/k".  Returns owned
 * string, or NULL while the region is still to be discovered. */
char *s3_object_url(struct backend *b, const char *key);
/* The region requests are signed for, or NULL if not known yet. */
const char *s3_region(struct backend *b);

/* One page of a ListObjectsV2 response: keys and common prefixes below
 * root added to acc (relative to it), *token replaced by the next page's
 * token (NULL on the last page).  Returns 0, or ERR_PROTOCOL with the
 * reason in why. */
int s3_listing_parse(const char *body, size_t len, const char *root,
                     struct obj_list *acc, char **token, char *why,
                     size_t whylen);

#endif
