/*
 * Access tokens for Google Cloud Storage (Application Default
 * Credentials, as Google's clients find them), beside gcs.c as aws_creds.c
 * is beside s3.c:
 *   GOOGLE_APPLICATION_CREDENTIALS, else gcloud's
 *   application_default_credentials.json: a service account (an RS256 JWT
 *   {iss, scope, aud = token_uri, iat, exp = iat + 1h} exchanged at
 *   token_uri with grant_type jwt-bearer) or an authorized user (refresh
 *   token);
 *   otherwise the GCE/GKE metadata server (GCE_METADATA_HOST overrides
 *   metadata.google.internal).
 * The token is cached and fetched again shortly before it expires (a
 * quarter of its lifetime, at most 5 minutes, ahead); calls that need one
 * wait for the fetch, which goes through http_submit like any other
 * request.  If that early fetch fails, the old token keeps serving until
 * shortly before it expires.  Tokens and keys are never logged.
 */
#include "backends/gcs_auth.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/jwt.h"
#include "base/err.h"
#include "base/log.h"
#include "base/util.h"

#define GCS_SCOPE "https://www.googleapis.com/auth/devstorage.read_write"
#define GOOGLE_TOKEN_URI "https://oauth2.googleapis.com/token"
#define METADATA_HOST "metadata.google.internal"
#define METADATA_PATH                                                          \
  "/computeMetadata/v1/instance/service-accounts/default/token"
#define JWT_LIFETIME 3600
#define CREDS_FILE_MAX (256 << 10)
#define TOKEN_BODY_MAX (64 << 10)
/* After a failed early refresh the old token is used for up to this long
 * (or half the refresh margin) before the next attempt. */
#define TOKEN_GRACE_NS (10 * NS_PER_SEC)

static const char *env_nonempty(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

/* A JWT assertion for the service-account flow (RFC 7523). */
static char *sa_assertion(struct gcs_auth *a) {
  int64_t now = time_now_ns() / NS_PER_SEC;
  json_t *h = json_pack("{s:s, s:s}", "alg", "RS256", "typ", "JWT");
  if (a->key_id)
    json_object_set_new(h, "kid", json_string(a->key_id));
  json_t *c = json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", a->email, "scope",
                        GCS_SCOPE, "aud", a->token_uri, "iat", (json_int_t)now,
                        "exp", (json_int_t)(now + JWT_LIFETIME));
  char *hs = json_dumps(h, JSON_COMPACT);
  char *cs = json_dumps(c, JSON_COMPACT);
  char *jwt = hs && cs ? jwt_sign_rs256(a->key, hs, cs) : NULL;
  free(hs);
  free(cs);
  json_decref(h);
  json_decref(c);
  return jwt;
}

/* Builds the token request body afresh before every attempt, so a retried
 * assertion carries a current iat. */
static int on_auth_prepare(struct http_request *req, void *arg) {
  struct gcs_auth *a = arg;
  free(a->form);
  a->form = NULL;
  if (a->mode == GCS_AUTH_SERVICE_ACCOUNT) {
    char *jwt = sa_assertion(a);
    if (!jwt) {
      snprintf(req->errmsg, sizeof(req->errmsg),
               "cannot sign the JWT with the service account key");
      return ERR_AUTH;
    }
    a->form = xasprintf("grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-"
                        "type%%3Ajwt-bearer&assertion=%s",
                        jwt);
    free(jwt);
  } else if (a->mode == GCS_AUTH_USER) {
    char *id = http_urlencode(a->client_id, 0);
    char *secret = http_urlencode(a->client_secret, 0);
    char *rt = http_urlencode(a->refresh_token, 0);
    a->form = xasprintf("grant_type=refresh_token&client_id=%s&client_secret="
                        "%s&refresh_token=%s",
                        id, secret, rt);
    free(id);
    free(secret);
    free(rt);
  }
  if (a->form) {
    req->body = (const uint8_t *)a->form;
    req->body_len = strlen(a->form);
  }
  return 0;
}

/* Reads {"access_token", "expires_in"}; returns 0 or a message. */
static int parse_token(struct gcs_auth *a, const struct buf *body, char *msg,
                       size_t len) {
  json_t *j = json_loadb((const char *)body->data, body->len, 0, NULL);
  const char *tok = json_string_value(json_object_get(j, "access_token"));
  json_t *exp = json_object_get(j, "expires_in");
  int64_t secs =
      json_is_integer(exp) ? (int64_t)json_integer_value(exp)
      : json_is_real(exp)
          ? (json_real_value(exp) >= 1e9 ? (int64_t)1e9
             : json_real_value(exp) > 0  ? (int64_t)json_real_value(exp)
                                         : 0)
      : json_is_string(exp) ? atoll(json_string_value(exp))
                            : 3600;
  if (!tok || !*tok) {
    snprintf(msg, len, "no access_token in the token response");
    json_decref(j);
    return ERR_PROTOCOL;
  }
  if (secs <= 0)
    secs = 1;
  if (secs > 86400 * 365)
    secs = 86400 * 365; /* no overflow below, whatever the server says */
  free(a->token);
  a->token = xstrdup(tok);
  a->gen++;
  int64_t margin = MIN(300 * NS_PER_SEC, secs * NS_PER_SEC / 4);
  a->expiry_ns = time_mono_ns() + secs * NS_PER_SEC;
  a->refresh_ns = a->expiry_ns - margin;
  a->grace_ns = MIN(TOKEN_GRACE_NS, margin / 2);
  json_decref(j);
  return 0;
}

/* Formats a failed token exchange: OAuth errors are
 * {"error": "invalid_grant", "error_description": "..."}. */
static void token_error(struct gcs_auth *a, char *msg, size_t len) {
  struct http_request *r = &a->req;
  if (r->error) {
    snprintf(msg, len, "cannot get an access token (%s) from %s: %s%s",
             a->source, a->token_uri, r->errmsg,
             a->mode == GCS_AUTH_METADATA && r->error != ERR_CANCELED
                 ? " (not on GCE/GKE? set GOOGLE_APPLICATION_CREDENTIALS to "
                   "a service-account key file)"
                 : "");
    return;
  }
  char detail[256] = "";
  json_t *j = json_loadb((const char *)a->resp.data, a->resp.len, 0, NULL);
  json_t *e = json_object_get(j, "error");
  const char *code = json_string_value(e);
  const char *desc = json_string_value(json_object_get(j, "error_description"));
  if (!code && json_is_object(e)) {
    code = json_string_value(json_object_get(e, "status"));
    desc = json_string_value(json_object_get(e, "message"));
  }
  if (code || desc)
    snprintf(detail, sizeof(detail), " %s%s%s", code ? code : "",
             code && desc ? ": " : "", desc ? desc : "");
  else if (a->resp.len)
    snprintf(detail, sizeof(detail), " %.*s",
             (int)strcspn((const char *)a->resp.data, "\r\n"),
             (const char *)a->resp.data);
  json_decref(j);
  snprintf(msg, len, "cannot get an access token (%s) from %s: HTTP %d%s",
           a->source, a->token_uri, r->status, detail);
}

static void on_auth_done(struct http_request *req, void *arg) {
  struct gcs_auth *a = arg;
  char msg[512] = "";
  int rc = 0;
  if (req->error || req->status != 200) {
    token_error(a, msg, sizeof(msg));
    rc = req->error == ERR_CANCELED ? ERR_CANCELED : ERR_AUTH;
  } else if ((rc = parse_token(a, &a->resp, msg, sizeof(msg)))) {
    char m2[512];
    snprintf(m2, sizeof(m2), "token from %.200s: %.280s", a->token_uri, msg);
    memcpy(msg, m2, sizeof(msg));
    rc = ERR_AUTH;
  }
  /* A failed early refresh is not fatal while the old token still has a
   * while to live: keep using it and try again in a little while. */
  int64_t now = time_mono_ns();
  if (rc && rc != ERR_CANCELED && a->token &&
      now + a->grace_ns < a->expiry_ns) {
    log_warn(NULL, a->log_name, "gcs: %s; the current token is still valid",
             msg);
    a->refresh_ns = MIN(now + a->grace_ns, a->expiry_ns - a->grace_ns);
    rc = 0;
  } else if (!rc) {
    log_debug(NULL, a->log_name, "gcs: new access token from %s", a->token_uri);
  }
  /* Other failures are not logged here: every waiting call reports them. */
  http_request_free(&a->req);
  buf_destroy(&a->resp);
  free(a->form);
  a->form = NULL;
  a->fetching = 0;
  /* Callbacks may queue new calls (and start a new fetch): detach first. */
  struct gcs_auth_wait *w = a->wait_head;
  a->wait_head = a->wait_tail = NULL;
  while (w) {
    struct gcs_auth_wait *next = w->next;
    w->next = NULL;
    w->ready(w, rc, msg);
    w = next;
  }
}

static void auth_fetch(struct gcs_auth *a) {
  a->fetching = 1;
  http_request_init(&a->req);
  buf_init(&a->resp, TOKEN_BODY_MAX);
  a->req.url = xstrdup(a->token_uri);
  a->req.pool = a->pool;
  a->req.skip_verify = a->skip_verify;
  a->req.resp_body = &a->resp;
  a->req.timeout_ms = 30000;
  a->req.prepare = on_auth_prepare;
  a->req.done = on_auth_done;
  a->req.arg = a;
  if (a->mode == GCS_AUTH_METADATA) {
    a->req.method = "GET";
    a->req.max_retries = 2;
    http_request_add_header(&a->req, "Metadata-Flavor: Google");
  } else {
    a->req.method = "POST";
    http_request_add_header(&a->req,
                            "Content-Type: application/x-www-form-urlencoded");
  }
  http_submit(&a->req);
}

static const char *json_str(json_t *j, const char *key) {
  const char *v = json_string_value(json_object_get(j, key));
  return v && *v ? v : NULL;
}

/* Reads a credentials JSON file: service_account or authorized_user. */
static int auth_from_file(struct gcs_auth *a, const char *path,
                          const char *name, char *err, size_t errlen) {
  struct buf f;
  buf_init(&f, 0);
  int rc = file_read_all(path, CREDS_FILE_MAX, &f);
  if (rc) {
    snprintf(err, errlen, "replica %s: cannot read Google credentials %s: %s",
             name, path, err_str(rc));
    buf_destroy(&f);
    return ERR_CONFIG;
  }
  json_error_t je;
  json_t *j = json_loadb((const char *)f.data, f.len, 0, &je);
  buf_destroy(&f);
  const char *type = json_str(j, "type");
  rc = ERR_CONFIG;
  if (!j) {
    snprintf(err, errlen,
             "replica %s: Google credentials %s: invalid JSON at line %d", name,
             path, je.line);
  } else if (type && !strcmp(type, "service_account")) {
    const char *email = json_str(j, "client_email");
    const char *pem = json_str(j, "private_key");
    const char *uri = json_str(j, "token_uri");
    const char *kid = json_str(j, "private_key_id");
    if (!email || !pem) {
      snprintf(err, errlen,
               "replica %s: Google credentials %s: client_email and "
               "private_key required",
               name, path);
    } else if (!(a->key = jwt_key_from_pem(pem, strlen(pem), 0))) {
      snprintf(err, errlen,
               "replica %s: Google credentials %s: private_key is not a PEM "
               "RSA private key",
               name, path);
    } else {
      a->mode = GCS_AUTH_SERVICE_ACCOUNT;
      a->email = xstrdup(email);
      a->key_id = kid ? xstrdup(kid) : NULL;
      a->token_uri = xstrdup(uri ? uri : GOOGLE_TOKEN_URI);
      a->source = xasprintf("service account %s from %s", email, path);
      rc = 0;
    }
  } else if (type && !strcmp(type, "authorized_user")) {
    const char *id = json_str(j, "client_id");
    const char *secret = json_str(j, "client_secret");
    const char *rt = json_str(j, "refresh_token");
    const char *uri = json_str(j, "token_uri");
    if (!id || !secret || !rt) {
      snprintf(err, errlen,
               "replica %s: Google credentials %s: client_id, client_secret "
               "and refresh_token required",
               name, path);
    } else {
      a->mode = GCS_AUTH_USER;
      a->client_id = xstrdup(id);
      a->client_secret = xstrdup(secret);
      a->refresh_token = xstrdup(rt);
      a->token_uri = xstrdup(uri ? uri : GOOGLE_TOKEN_URI);
      a->source = xasprintf("user credentials from %s", path);
      rc = 0;
    }
  } else {
    snprintf(err, errlen,
             "replica %s: Google credentials %s: unsupported type \"%s\" "
             "(service_account and authorized_user are)",
             name, path, type ? type : "");
  }
  json_decref(j);
  return rc;
}

/* gcloud's well-known ADC file, if it exists.  Returns owned path. */
static char *adc_well_known(void) {
  const char *dir = env_nonempty("CLOUDSDK_CONFIG");
  char *p = NULL;
  if (dir) {
    p = xasprintf("%s/application_default_credentials.json", dir);
  } else if (env_nonempty("HOME")) {
    p = xasprintf("%s/.config/gcloud/application_default_credentials.json",
                  getenv("HOME"));
  }
  if (p && access(p, R_OK)) {
    free(p);
    p = NULL;
  }
  return p;
}

void gcs_auth_destroy(struct gcs_auth *a) {
  free(a->source);
  free(a->token_uri);
  free(a->email);
  free(a->key_id);
  EVP_PKEY_free(a->key);
  free(a->client_id);
  free(a->client_secret);
  free(a->refresh_token);
  free(a->token);
  free(a->form);
}

void gcs_auth_wait(struct gcs_auth *a, struct gcs_auth_wait *w) {
  w->next = NULL;
  if (a->wait_tail)
    a->wait_tail->next = w;
  else
    a->wait_head = w;
  a->wait_tail = w;
  if (!a->fetching)
    auth_fetch(a);
}

int gcs_auth_ready(const struct gcs_auth *a) {
  return a->mode == GCS_AUTH_NONE ||
         (a->token && time_mono_ns() < a->refresh_ns);
}

int gcs_auth_reject(struct gcs_auth *a, int token_gen) {
  if (a->mode == GCS_AUTH_NONE)
    return 0;
  if (token_gen == a->gen)
    a->refresh_ns = a->expiry_ns = 0; /* known bad: no grace */
  return 1;
}

int gcs_auth_init(struct gcs_auth *a, const char *name, char *err,
                  size_t errlen) {
  const char *file = env_nonempty("GOOGLE_APPLICATION_CREDENTIALS");
  char *wk = file ? NULL : adc_well_known();
  if (file || wk) {
    int rc = auth_from_file(a, file ? file : wk, name, err, errlen);
    free(wk);
    return rc;
  }
  const char *host = env_nonempty("GCE_METADATA_HOST");
  a->mode = GCS_AUTH_METADATA;
  a->token_uri =
      xasprintf("http://%s" METADATA_PATH, host ? host : METADATA_HOST);
  a->source = xasprintf("metadata server %s", host ? host : METADATA_HOST);
  return 0;
}
