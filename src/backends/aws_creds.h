/*
 * AWS credentials for the S3 backend.  The source is chosen once, when the
 * replica opens, first found wins:
 *
 *   1. the replica's access-key-id / secret-access-key (the config parser
 *      copies the global keys into replicas that have none);
 *   2. LITESTREAM_ACCESS_KEY_ID / LITESTREAM_SECRET_ACCESS_KEY;
 *   3. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
 *   4. the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, else
 *      ~/.aws/credentials), profile AWS_PROFILE (else "default");
 *   5. web identity: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN through STS
 *      AssumeRoleWithWebIdentity (Kubernetes IRSA); STS at
 *      AWS_ENDPOINT_URL_STS if set;
 *   6. the container endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or
 *      _FULL_URI, with AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]);
 *   7. the EC2 instance metadata service, IMDSv2 (a session token first);
 *      AWS_EC2_METADATA_SERVICE_ENDPOINT overrides its address and
 *      AWS_EC2_METADATA_DISABLED=true turns it off.
 *
 * Sources 5-7 are fetched over HTTP on the loop (http_submit), never
 * blocking it, and refreshed five minutes before they expire.  No secret
 * ever appears in a message this module writes.
 */
#ifndef SLUICE_AWS_CREDS_H
#define SLUICE_AWS_CREDS_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "loop/http.h"

struct aws_creds {
  char *access_key_id;
  char *secret_access_key;
  char *session_token; /* NULL if none */
  int64_t expires_ns;  /* 0: does not expire */
};

typedef void (*aws_creds_cb)(void *arg, int status, const char *err);

struct aws_creds_provider;

/* Chooses the source (no network I/O; reads the shared file if that is the
 * source).  `pool` (borrowed) bounds the credential requests.  On failure
 * writes a one-line message. */
int aws_creds_provider_new(const struct replica_config *cfg,
                           struct http_pool *pool,
                           struct aws_creds_provider **out, char *err,
                           size_t errlen);
/* Frees now, or when a fetch still in flight completes. */
void aws_creds_provider_free(struct aws_creds_provider *p);

/* Where the credentials come from, for messages ("environment
 * AWS_ACCESS_KEY_ID", "instance metadata (IMDSv2)", ...). */
const char *aws_creds_source(const struct aws_creds_provider *p);
/* 1 if the source can issue new credentials (STS, container, IMDS). */
int aws_creds_refreshable(const struct aws_creds_provider *p);

/* The current credentials if they are valid for a few more seconds, else
 * NULL.  When they expire within five minutes a background refresh starts
 * (at most every 30 s); the pointer stays valid until the next fetch
 * completes, so copy what you need at once (e.g. while signing). */
const struct aws_creds *aws_creds_current(struct aws_creds_provider *p);
/* 1 if a request can start with the current credentials; 0 if it should
 * wait for aws_creds_ensure (none yet, or they expire within a minute). */
int aws_creds_fresh(struct aws_creds_provider *p);
/* Fetches credentials when missing, nearly expired or `force`d (e.g. after
 * an ExpiredToken answer); calls cb on the loop, never synchronously.
 * Concurrent calls share one fetch. */
void aws_creds_ensure(struct aws_creds_provider *p, int force, aws_creds_cb cb,
                      void *arg);

/* Parses an INI-style shared credentials file for a profile (exposed for
 * tests).  Returns 0 and fills out, or -ENOENT / ERR_CONFIG. */
int aws_creds_parse_shared(const char *text, const char *profile,
                           struct aws_creds *out);
void aws_creds_destroy(struct aws_creds *c);

#endif
