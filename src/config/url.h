/*
 * Replica URL parsing (spec 6.4): file, s3, gcs/gs, abs, sftp.
 * Pure code; unit-tested in tests/unit/config/test_url.c.
 */
#ifndef SLUICE_URL_H
#define SLUICE_URL_H

struct replica_url {
  char *scheme;   /* "file", "s3", "gcs" (also for gs://), "abs", "sftp" */
  char *host;     /* with port, as written (NULL for file) */
  char *path;     /* file: absolute cleaned path; sftp: keeps leading '/';
                     others: cleaned, no leading '/', "" when empty */
  char *user;     /* userinfo user (abs account name, sftp user) or NULL */
  char *password; /* sftp password or NULL */
  char *query;    /* raw query string without '?', or NULL; ignored by
                     Litestream 0.3; may hold a SAS token: never print */
  /* s3 only, derived from the host table of spec 6.4 (ParseHost): */
  char *bucket;
  char *region;   /* NULL when not derivable */
  char *endpoint; /* NULL when AWS */
  int force_path_style;
};

/* Returns 1 if s looks like a URL (matches ^\w+://). */
int url_is_url(const char *s);

/* Parses a replica URL into *out (owned strings; free with url_destroy).
 * On failure returns ERR_URL and writes a one-line reason to err. */
int url_parse(const char *s, struct replica_url *out, char *err,
              unsigned errlen);
void url_destroy(struct replica_url *u);

/* The URL with any password and query replaced by "xxxxx", for messages.
 * Returns owned string. */
char *url_redact(const char *s);
/* The same with any userinfo, password or not, replaced by "xxxxx" (an
 * endpoint has no user worth showing; it may be a token). */
char *url_redact_userinfo(const char *s);

/* Checks an endpoint ("[http[s]://]HOST[:PORT][/PATH]"): scheme http or
 * https, a host name or [IPv6] address, a port 1-65535.  Returns 0, or
 * ERR_URL with a message naming the endpoint without its userinfo. */
int url_check_endpoint(const char *ep, char *err, unsigned errlen);

/* The s3 host table alone: fills bucket/region/endpoint/force_path_style
 * from a host[:port]. */
void url_s3_parse_host(const char *host, struct replica_url *out);

#endif
