/*
 * Google access tokens for gcs.c: credential discovery, the token cache
 * and its refresh, and the calls waiting for a token.
 */
#ifndef SLUICE_BACKENDS_GCS_AUTH_H
#define SLUICE_BACKENDS_GCS_AUTH_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "loop/http.h"

enum gcs_auth_mode {
  GCS_AUTH_NONE, /* an emulator: no Authorization header */
  GCS_AUTH_SERVICE_ACCOUNT,
  GCS_AUTH_USER,
  GCS_AUTH_METADATA
};

/* A call waiting for a token: ready(w, 0, NULL) when one came, else
 * ready(w, code, message).  Embedded in the caller's struct. */
struct gcs_auth_wait {
  struct gcs_auth_wait *next;
  void (*ready)(struct gcs_auth_wait *w, int rc, const char *msg);
};

struct gcs_auth {
  enum gcs_auth_mode mode;
  char *source;    /* for messages: where credentials come from */
  char *token_uri; /* token endpoint (or metadata URL) */
  char *email, *key_id;
  EVP_PKEY *key;
  char *client_id, *client_secret, *refresh_token;
  char *token;        /* current access token, never logged */
  int gen;            /* bumped for every new token */
  int64_t refresh_ns; /* monotonic time from which a new one is needed */
  int64_t expiry_ns;  /* monotonic time at which the token stops working */
  int64_t grace_ns;   /* how long before expiry a failed refresh is fatal */
  int fetching;
  struct http_request req;
  struct buf resp;
  char *form; /* POST body of the token request */
  struct gcs_auth_wait *wait_head, *wait_tail;
  /* set by the owner */
  struct http_pool *pool; /* token requests go through the replica's pool */
  int skip_verify;
  const char *log_name; /* borrowed */
};

/* Finds the credentials (zeroed `a`; mode GCS_AUTH_NONE stays for
 * emulators, which the caller handles).  On error writes a line naming the
 * replica and the credentials file. */
int gcs_auth_init(struct gcs_auth *a, const char *name, char *err,
                  size_t errlen);
void gcs_auth_destroy(struct gcs_auth *a);
/* 1 if a request can go out now (a fresh token, or no auth at all). */
int gcs_auth_ready(const struct gcs_auth *a);
/* Queues w until the next token arrives, fetching one if none is on the
 * way.  w->ready is always called later, never from here. */
void gcs_auth_wait(struct gcs_auth *a, struct gcs_auth_wait *w);
/* A 401 for a request sent with token generation token_gen: that token
 * is bad.  Returns 1 if a new token can help (auth is in use). */
int gcs_auth_reject(struct gcs_auth *a, int token_gen);

#endif
