/*
 * What config.c shares with config_backends.c, and nothing else includes:
 * the parse context and a mapping being read stay opaque here.
 */
#ifndef SLUICE_CONFIG_INTERNAL_H
#define SLUICE_CONFIG_INTERNAL_H

#include "config/config.h"
#include "config/url.h"

struct pctx;    /* the file (or URL) being read, and where errors go */
struct section; /* one mapping being read, with each key's line */

/* Writes "FILE:LINE: KEY: message" (or "message: URL" in URL mode) and
 * returns ERR_CONFIG. */
int config_errf(struct pctx *c, int line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The line of `key` in s (the mapping's own line when absent; 0 without
 * a section, in URL mode). */
int config_section_line(const struct section *s, const char *key);
/* Replaces *dst by a copy of v (NULL or "" clear it). */
void config_set_str(char **dst, const char *v);

/* config_backends.c: the rules of r's type (r->type already resolved):
 * fields taken from the parsed URL u, required ones checked. */
int config_backend_apply(struct pctx *c, struct replica_config *r,
                         const struct section *s, struct replica_url *u);
/* The S3 server-side encryption keys (sse, sse-kms-key-id, sse-c-key). */
int config_check_sse(struct pctx *c, struct replica_config *r,
                     const struct section *s);

#endif
