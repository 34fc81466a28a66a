/*
 * A tiny HTTP/1.1 server on the loop for /metrics and /healthz.  One
 * request per connection; anything else gets 404.  No debug endpoints.
 */
#ifndef SLUICE_HTTPD_H
#define SLUICE_HTTPD_H

#include "base/util.h"

/* Fills `body` and returns the status code for a GET of `path`; sets
 * *content_type to a static string. */
typedef int (*httpd_handler)(void *arg, const char *path, struct buf *body,
                             const char **content_type);

struct httpd;
/* addr is "host:port" or ":port" (all interfaces).  Returns 0 or a
 * negative error with a message in err. */
int httpd_start(const char *addr, httpd_handler h, void *arg,
                struct httpd **out, char *err, size_t errlen);
void httpd_stop(struct httpd *s);

#endif
