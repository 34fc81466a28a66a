/*
 * GCS backend internals exposed for tests and fuzzing.  The backend itself
 * is used through backend.h (backend_gcs).
 */
#ifndef SLUICE_GCS_H
#define SLUICE_GCS_H

#include <stddef.h>

struct obj_list;

/* One page of a JSON object listing: items and prefixes below root added
 * to out (relative to it), *token replaced by nextPageToken (NULL on the
 * last page).  Returns 0, or ERR_PROTOCOL with the reason in why. */
int gcs_listing_parse(const char *body, size_t len, const char *root,
                      struct obj_list *out, char **token, char *why,
                      size_t whylen);

#endif
