/*
 * The AWS credential chain (see aws_creds.h).  Static sources resolve at
 * open; STS, container and IMDS credentials are fetched with http_submit
 * on the loop, one fetch at a time, with every caller that needs them
 * waiting on it.
 */
#include "backends/aws_creds.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backends/sigv4.h"
#include "backends/xml.h"
#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "loop/loop.h"

#define REFRESH_EARLY_NS (5 * 60 * NS_PER_SEC) /* start refreshing */
#define REFRESH_MUST_NS (60 * NS_PER_SEC)      /* fetch before a request */
#define REFRESH_LAST_NS (5 * NS_PER_SEC)       /* never sign with older */
/* A source handing out short-lived credentials must not turn every
 * request into a refresh. */
#define REFRESH_SPACING_NS (30 * NS_PER_SEC)
#define FETCH_BODY_MAX (64 * 1024)

enum source {
  SRC_STATIC,
  SRC_WEB_IDENTITY,
  SRC_CONTAINER,
  SRC_IMDS,
};

enum imds_step { IMDS_TOKEN, IMDS_ROLE, IMDS_CREDS };

struct waiter {
  aws_creds_cb cb;
  void *arg;
  struct waiter *next;
};

struct aws_creds_provider {
  enum source src;
  char *source_name;
  struct http_pool *pool;
  struct aws_creds cur;
  int have;
  /* Fetching. */
  int fetching;
  int64_t last_fetch_ns;
  int closing;
  struct http_request req;
  struct buf body;
  struct waiter *waiters;
  char err[320];
  /* Source parameters. */
  char *sts_url, *role_arn, *token_file, *session_name;
  char *container_url, *container_auth, *container_auth_file;
  char *imds_base, *imds_token, *imds_role;
  char *form; /* STS request body (holds the web identity token) */
  enum imds_step imds_step;
  /* Deferred "already fresh" answers. */
  struct loop_timer *defer;
  struct waiter *deferred;
};

static char *env_dup(const char *name) {
  const char *v = getenv(name);
  return v && *v ? xstrdup(v) : NULL;
}

void aws_creds_destroy(struct aws_creds *c) {
  if (c->secret_access_key)
    OPENSSL_cleanse(c->secret_access_key, strlen(c->secret_access_key));
  if (c->session_token)
    OPENSSL_cleanse(c->session_token, strlen(c->session_token));
  free(c->access_key_id);
  free(c->secret_access_key);
  free(c->session_token);
  memset(c, 0, sizeof(*c));
}

static void set_static(struct aws_creds_provider *p, const char *ak,
                       const char *sk, const char *tok, const char *name) {
  p->src = SRC_STATIC;
  p->cur.access_key_id = xstrdup(ak);
  p->cur.secret_access_key = xstrdup(sk);
  p->cur.session_token = tok && *tok ? xstrdup(tok) : NULL;
  p->have = 1;
  p->source_name = xstrdup(name);
}

/* --- shared credentials file --- */

static char *trim(char *s) {
  while (isspace((unsigned char)*s))
    s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1]))
    *--e = '\0';
  return s;
}

int aws_creds_parse_shared(const char *text, const char *profile,
                           struct aws_creds *out) {
  char *copy = xstrdup(text), *save = NULL;
  int in = 0, found = 0;
  struct aws_creds c = {0};
  for (char *line = strtok_r(copy, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    char *l = trim(line);
    if (!*l || *l == '#' || *l == ';')
      continue;
    if (*l == '[') {
      char *e = strchr(l, ']');
      if (!e)
        continue;
      *e = '\0';
      char *name = trim(l + 1);
      /* ~/.aws/config style "[profile x]" is accepted too. */
      if (str_has_prefix(name, "profile "))
        name = trim(name + 8);
      in = !strcmp(name, profile);
      found |= in;
      continue;
    }
    if (!in)
      continue;
    char *eq = strchr(l, '=');
    if (!eq)
      continue;
    *eq = '\0';
    char *k = trim(l), *v = trim(eq + 1);
    char **dst = NULL;
    if (!strcasecmp(k, "aws_access_key_id"))
      dst = &c.access_key_id;
    else if (!strcasecmp(k, "aws_secret_access_key"))
      dst = &c.secret_access_key;
    else if (!strcasecmp(k, "aws_session_token"))
      dst = &c.session_token;
    if (dst) {
      free(*dst);
      *dst = xstrdup(v);
    }
  }
  OPENSSL_cleanse(copy, strlen(text));
  free(copy);
  if (!found || !c.access_key_id || !c.secret_access_key) {
    aws_creds_destroy(&c);
    return found ? ERR_CONFIG : -ENOENT;
  }
  *out = c;
  return 0;
}

static int try_shared_file(struct aws_creds_provider *p, char *err,
                           size_t errlen) {
  char *path = env_dup("AWS_SHARED_CREDENTIALS_FILE");
  if (!path) {
    const char *home = getenv("HOME");
    if (!home || !*home)
      return -ENOENT;
    path = xasprintf("%s/.aws/credentials", home);
  }
  const char *profile = getenv("AWS_PROFILE");
  if (!profile || !*profile)
    profile = getenv("AWS_DEFAULT_PROFILE");
  if (!profile || !*profile)
    profile = "default";
  struct buf b;
  int rc = file_read_all(path, 1 << 20, &b);
  if (rc) {
    free(path);
    return -ENOENT;
  }
  buf_append(&b, "", 1);
  struct aws_creds c;
  rc = aws_creds_parse_shared((const char *)b.data, profile, &c);
  OPENSSL_cleanse(b.data, b.len);
  buf_destroy(&b);
  if (rc == ERR_CONFIG) {
    snprintf(err, errlen,
             "shared credentials file %s: profile %s lacks "
             "aws_access_key_id or aws_secret_access_key",
             path, profile);
    free(path);
    return rc;
  }
  if (rc) {
    free(path);
    return -ENOENT;
  }
  char *name = xasprintf("shared credentials file %s [%s]", path, profile);
  set_static(p, c.access_key_id, c.secret_access_key, c.session_token, name);
  free(name);
  aws_creds_destroy(&c);
  free(path);
  return 0;
}

/* --- choosing a source --- */

int aws_creds_provider_new(const struct replica_config *cfg,
                           struct http_pool *pool,
                           struct aws_creds_provider **out, char *err,
                           size_t errlen) {
  struct aws_creds_provider *p = xcalloc(1, sizeof(*p));
  p->pool = pool;
  buf_init(&p->body, FETCH_BODY_MAX);
  const char *ak = cfg->access_key_id, *sk = cfg->secret_access_key;
  int rc = 0;
  if ((ak && *ak) || (sk && *sk)) {
    if (!ak || !*ak || !sk || !*sk) {
      snprintf(err, errlen, "replica %s: %s is set but %s is empty",
               cfg->name ? cfg->name : "s3",
               ak && *ak ? "access-key-id" : "secret-access-key",
               ak && *ak ? "secret-access-key" : "access-key-id");
      rc = ERR_CONFIG;
      goto fail;
    }
    set_static(p, ak, sk, NULL, "config access-key-id");
    goto done;
  }
  const char *lak = getenv("LITESTREAM_ACCESS_KEY_ID");
  const char *lsk = getenv("LITESTREAM_SECRET_ACCESS_KEY");
  if (lak && *lak && lsk && *lsk) {
    set_static(p, lak, lsk, NULL, "environment LITESTREAM_ACCESS_KEY_ID");
    goto done;
  }
  const char *eak = getenv("AWS_ACCESS_KEY_ID");
  const char *esk = getenv("AWS_SECRET_ACCESS_KEY");
  if (eak && *eak && esk && *esk) {
    set_static(p, eak, esk, getenv("AWS_SESSION_TOKEN"),
               "environment AWS_ACCESS_KEY_ID");
    goto done;
  }
  rc = try_shared_file(p, err, errlen);
  if (rc == 0)
    goto done;
  if (rc != -ENOENT)
    goto fail;
  rc = 0;
  p->token_file = env_dup("AWS_WEB_IDENTITY_TOKEN_FILE");
  p->role_arn = env_dup("AWS_ROLE_ARN");
  if (p->token_file && p->role_arn) {
    p->src = SRC_WEB_IDENTITY;
    p->session_name = env_dup("AWS_ROLE_SESSION_NAME");
    if (!p->session_name)
      p->session_name = xasprintf("sluice-%lld", (long long)time_now_ns());
    p->sts_url = env_dup("AWS_ENDPOINT_URL_STS");
    if (!p->sts_url) {
      const char *region = getenv("AWS_REGION");
      if (!region || !*region)
        region = getenv("AWS_DEFAULT_REGION");
      const char *mode = getenv("AWS_STS_REGIONAL_ENDPOINTS");
      if (region && *region && mode && !strcmp(mode, "regional"))
        p->sts_url = xasprintf("https://sts.%s.amazonaws.com/", region);
      else
        p->sts_url = xstrdup("https://sts.amazonaws.com/");
    }
    p->source_name = xasprintf("web identity (STS AssumeRoleWithWebIdentity "
                               "for %s)",
                               p->role_arn);
    goto done;
  }
  const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
  const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
  if ((rel && *rel) || (full && *full)) {
    p->src = SRC_CONTAINER;
    p->container_url =
        rel && *rel ? xasprintf("http://169.254.170.2%s", rel) : xstrdup(full);
    p->container_auth = env_dup("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    p->container_auth_file = env_dup("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    p->source_name = xstrdup("container credentials endpoint");
    goto done;
  }
  const char *off = getenv("AWS_EC2_METADATA_DISABLED");
  if (off && !strcasecmp(off, "true")) {
    snprintf(err, errlen,
             "replica %s: no AWS credentials: set access-key-id and "
             "secret-access-key, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
             "a shared credentials file, or a web identity / container / "
             "instance role (instance metadata is disabled)",
             cfg->name ? cfg->name : "s3");
    rc = ERR_AUTH;
    goto fail;
  }
  p->src = SRC_IMDS;
  p->imds_base = env_dup("AWS_EC2_METADATA_SERVICE_ENDPOINT");
  if (!p->imds_base)
    p->imds_base = xstrdup("http://169.254.169.254");
  size_t bl = strlen(p->imds_base);
  if (bl && p->imds_base[bl - 1] == '/')
    p->imds_base[bl - 1] = '\0';
  p->source_name = xstrdup("instance metadata (IMDSv2)");
done:
  *out = p;
  return 0;
fail:
  aws_creds_provider_free(p);
  return rc;
}

static void free_form(struct aws_creds_provider *p) {
  if (p->form) {
    OPENSSL_cleanse(p->form, strlen(p->form));
    free(p->form);
    p->form = NULL;
  }
}

static void provider_destroy(struct aws_creds_provider *p) {
  free_form(p);
  aws_creds_destroy(&p->cur);
  free(p->source_name);
  free(p->sts_url);
  free(p->role_arn);
  free(p->token_file);
  free(p->session_name);
  free(p->container_url);
  if (p->container_auth)
    OPENSSL_cleanse(p->container_auth, strlen(p->container_auth));
  free(p->container_auth);
  free(p->container_auth_file);
  free(p->imds_base);
  if (p->imds_token)
    OPENSSL_cleanse(p->imds_token, strlen(p->imds_token));
  free(p->imds_token);
  free(p->imds_role);
  buf_destroy(&p->body);
  free(p);
}

void aws_creds_provider_free(struct aws_creds_provider *p) {
  if (!p)
    return;
  if (p->defer) {
    loop_timer_free(p->defer);
    p->defer = NULL;
  }
  if (p->fetching) {
    p->closing = 1; /* on_fetch_done frees it */
    return;
  }
  provider_destroy(p);
}

const char *aws_creds_source(const struct aws_creds_provider *p) {
  return p->source_name;
}

int aws_creds_refreshable(const struct aws_creds_provider *p) {
  return p->src != SRC_STATIC;
}

/* --- fetching --- */

static void start_fetch(struct aws_creds_provider *p);

static void notify(struct aws_creds_provider *p, struct waiter *w, int status,
                   const char *err) {
  while (w) {
    struct waiter *next = w->next;
    w->cb(w->arg, status, err);
    free(w);
    w = next;
  }
  (void)p;
}

static void fetch_end(struct aws_creds_provider *p, int status) {
  p->fetching = 0;
  http_request_free(&p->req);
  free_form(p);
  if (status && p->have && p->cur.expires_ns > time_now_ns()) {
    /* The old credentials still work: keep them, say why we could not
     * refresh, and try again on a later request. */
    log_warn(NULL, NULL, "cannot refresh AWS credentials from %s: %s",
             p->source_name, p->err);
    status = 0;
  }
  struct waiter *w = p->waiters;
  p->waiters = NULL;
  if (p->closing) {
    notify(p, w, ERR_CANCELED, "canceled");
    provider_destroy(p);
    return;
  }
  notify(p, w, status, status ? p->err : NULL);
}

static int install(struct aws_creds_provider *p, const char *ak, const char *sk,
                   const char *tok, const char *expiration) {
  if (!ak || !*ak || !sk || !*sk) {
    snprintf(p->err, sizeof(p->err),
             "AWS credentials from %s: response lacks AccessKeyId or "
             "SecretAccessKey",
             p->source_name);
    return ERR_PROTOCOL;
  }
  int64_t exp = 0;
  if (expiration && *expiration &&
      time_parse_rfc3339(expiration, &exp) == -EINVAL) {
    snprintf(p->err, sizeof(p->err), "AWS credentials from %s: bad Expiration",
             p->source_name);
    return ERR_PROTOCOL;
  }
  aws_creds_destroy(&p->cur);
  p->cur.access_key_id = xstrdup(ak);
  p->cur.secret_access_key = xstrdup(sk);
  p->cur.session_token = tok && *tok ? xstrdup(tok) : NULL;
  p->cur.expires_ns = exp;
  p->have = 1;
  if (log_enabled(LOG_DEBUG)) {
    char when[32] = "never";
    if (exp)
      time_format_rfc3339(exp, when);
    log_debug(NULL, NULL, "AWS credentials from %s (key %s, expire %s)",
              p->source_name, ak, when);
  }
  return 0;
}

static int parse_json_creds(struct aws_creds_provider *p) {
  json_error_t jerr;
  json_t *j = json_loadb((const char *)p->body.data, p->body.len, 0, &jerr);
  if (!j || !json_is_object(j)) {
    json_decref(j);
    snprintf(p->err, sizeof(p->err),
             "AWS credentials from %s: response is not JSON", p->source_name);
    return ERR_PROTOCOL;
  }
  const char *code = json_string_value(json_object_get(j, "Code"));
  if (code && strcmp(code, "Success")) {
    snprintf(p->err, sizeof(p->err), "AWS credentials from %s: Code %.60s",
             p->source_name, code);
    json_decref(j);
    return ERR_AUTH;
  }
  int rc = install(p, json_string_value(json_object_get(j, "AccessKeyId")),
                   json_string_value(json_object_get(j, "SecretAccessKey")),
                   json_string_value(json_object_get(j, "Token")),
                   json_string_value(json_object_get(j, "Expiration")));
  json_decref(j);
  return rc;
}

static int parse_sts(struct aws_creds_provider *p) {
  struct xml_node *x = xml_parse((const char *)p->body.data, p->body.len);
  if (!x) {
    snprintf(p->err, sizeof(p->err),
             "AWS credentials from %s: response is not XML", p->source_name);
    return ERR_PROTOCOL;
  }
  const char *base = "AssumeRoleWithWebIdentityResponse/"
                     "AssumeRoleWithWebIdentityResult/Credentials/";
  char path[160];
  const char *v[4];
  const char *names[4] = {"AccessKeyId", "SecretAccessKey", "SessionToken",
                          "Expiration"};
  for (int i = 0; i < 4; i++) {
    snprintf(path, sizeof(path), "%s%s", base, names[i]);
    v[i] = xml_text(x, path);
  }
  int rc = install(p, v[0], v[1], v[2], v[3]);
  xml_free(x);
  return rc;
}

/* One-line reason for a failed credential request (never a secret: the
 * bodies of these errors carry codes and messages only). */
static void describe_failure(struct aws_creds_provider *p) {
  struct http_request *r = &p->req;
  if (r->error) {
    snprintf(p->err, sizeof(p->err),
             "cannot get AWS credentials from %s: %s (after %d attempt%s)",
             p->source_name, r->errmsg, r->attempts,
             r->attempts == 1 ? "" : "s");
    return;
  }
  const char *code = NULL, *msg = NULL;
  struct xml_node *x =
      p->body.len ? xml_parse((const char *)p->body.data, p->body.len) : NULL;
  if (x) {
    code = xml_text(x, "ErrorResponse/Error/Code");
    msg = xml_text(x, "ErrorResponse/Error/Message");
  }
  snprintf(p->err, sizeof(p->err),
           "cannot get AWS credentials from %s: HTTP %d%s%s%s%.120s",
           p->source_name, r->status, code ? " " : "", code ? code : "",
           msg ? ": " : "", msg ? msg : "");
  xml_free(x);
}

static void on_fetch_done(struct http_request *req, void *arg) {
  struct aws_creds_provider *p = arg;
  (void)req;
  if (p->closing) {
    fetch_end(p, ERR_CANCELED);
    return;
  }
  int ok = !p->req.error && p->req.status / 100 == 2;
  if (p->src == SRC_IMDS && p->imds_step == IMDS_TOKEN && !ok &&
      !p->req.error &&
      (p->req.status == 403 || p->req.status == 404 || p->req.status == 405)) {
    /* No IMDSv2 here (or blocked): fall back to IMDSv1 requests. */
    ok = 1;
    buf_reset(&p->body);
  }
  if (!ok) {
    describe_failure(p);
    fetch_end(p, p->req.error ? ERR_HTTP : ERR_AUTH);
    return;
  }
  int rc = 0;
  switch (p->src) {
  case SRC_WEB_IDENTITY:
    rc = parse_sts(p);
    break;
  case SRC_CONTAINER:
    rc = parse_json_creds(p);
    break;
  case SRC_IMDS:
    if (p->imds_step == IMDS_TOKEN) {
      free(p->imds_token);
      p->imds_token = p->body.len
                          ? xstrndup((const char *)p->body.data, p->body.len)
                          : NULL;
      p->imds_step = IMDS_ROLE;
      http_request_free(&p->req);
      start_fetch(p);
      return;
    }
    if (p->imds_step == IMDS_ROLE) {
      char *role = xstrndup((const char *)p->body.data, p->body.len);
      char *nl = strpbrk(role, "\r\n");
      if (nl)
        *nl = '\0';
      free(p->imds_role);
      p->imds_role = xstrdup(trim(role));
      free(role);
      if (!*p->imds_role) {
        snprintf(p->err, sizeof(p->err),
                 "cannot get AWS credentials from %s: no IAM role attached "
                 "to this instance",
                 p->source_name);
        fetch_end(p, ERR_AUTH);
        return;
      }
      p->imds_step = IMDS_CREDS;
      http_request_free(&p->req);
      start_fetch(p);
      return;
    }
    rc = parse_json_creds(p);
    break;
  case SRC_STATIC:
    break;
  }
  fetch_end(p, rc);
}

static char *read_token_file(const char *path, char *err, size_t errlen,
                             const char *what) {
  struct buf b;
  int rc = file_read_all(path, 1 << 20, &b);
  if (rc) {
    snprintf(err, errlen, "cannot read %s %s: %s", what, path, err_str(rc));
    return NULL;
  }
  char *s = xstrndup((const char *)b.data, b.len);
  OPENSSL_cleanse(b.data, b.len);
  buf_destroy(&b);
  char *t = trim(s);
  char *out = xstrdup(t);
  OPENSSL_cleanse(s, strlen(s));
  free(s);
  return out;
}

static void start_fetch(struct aws_creds_provider *p) {
  struct http_request *r = &p->req;
  http_request_init(r);
  buf_reset(&p->body);
  r->resp_body = &p->body;
  r->err_body = &p->body;
  r->pool = p->pool;
  r->done = on_fetch_done;
  r->arg = p;
  r->max_retries = 3;
  switch (p->src) {
  case SRC_WEB_IDENTITY: {
    char *tok = read_token_file(p->token_file, p->err, sizeof(p->err),
                                "web identity token file");
    if (!tok) {
      fetch_end(p, ERR_AUTH);
      return;
    }
    char *e_role = sigv4_uri_encode(p->role_arn, 0);
    char *e_name = sigv4_uri_encode(p->session_name, 0);
    char *e_tok = sigv4_uri_encode(tok, 0);
    OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
    char *form = xasprintf("Action=AssumeRoleWithWebIdentity"
                           "&DurationSeconds=3600&RoleArn=%s"
                           "&RoleSessionName=%s&Version=2011-06-15"
                           "&WebIdentityToken=%s",
                           e_role, e_name, e_tok);
    OPENSSL_cleanse(e_tok, strlen(e_tok));
    free(e_role);
    free(e_name);
    free(e_tok);
    /* The body must outlive the request: the provider owns it. */
    free_form(p);
    p->form = form;
    r->method = "POST";
    r->url = xstrdup(p->sts_url);
    r->body = (const uint8_t *)form;
    r->body_len = strlen(form);
    http_request_add_header(r,
                            "Content-Type: application/x-www-form-urlencoded");
    http_request_add_header(r, "Accept: application/xml");
    break;
  }
  case SRC_CONTAINER: {
    r->method = "GET";
    r->url = xstrdup(p->container_url);
    r->connect_timeout_ms = 2000;
    char *auth = NULL;
    if (p->container_auth_file) {
      auth = read_token_file(p->container_auth_file, p->err, sizeof(p->err),
                             "container authorization token file");
      if (!auth) {
        http_request_free(r);
        fetch_end(p, ERR_AUTH);
        return;
      }
    } else if (p->container_auth) {
      auth = xstrdup(p->container_auth);
    }
    if (auth) {
      http_request_add_header(r, "Authorization: %s", auth);
      OPENSSL_cleanse(auth, strlen(auth));
      free(auth);
    }
    break;
  }
  case SRC_IMDS:
    r->connect_timeout_ms = 1000;
    r->timeout_ms = 5000;
    r->max_retries = 2;
    if (p->imds_step == IMDS_TOKEN) {
      r->method = "PUT";
      r->url = xasprintf("%s/latest/api/token", p->imds_base);
      r->body = (const uint8_t *)"";
      r->body_len = 0;
      http_request_add_header(r, "X-aws-ec2-metadata-token-ttl-seconds: 21600");
    } else {
      r->method = "GET";
      r->url = p->imds_step == IMDS_ROLE
                   ? xasprintf("%s/latest/meta-data/iam/security-credentials/",
                               p->imds_base)
                   : xasprintf("%s/latest/meta-data/iam/security-credentials/"
                               "%s",
                               p->imds_base, p->imds_role);
      if (p->imds_token)
        http_request_add_header(r, "X-aws-ec2-metadata-token: %s",
                                p->imds_token);
    }
    break;
  case SRC_STATIC:
    break;
  }
  http_submit(r);
}

/* --- the public entry points --- */

static int usable(const struct aws_creds_provider *p, int64_t margin) {
  return p->have &&
         (!p->cur.expires_ns || p->cur.expires_ns > time_now_ns() + margin);
}

const struct aws_creds *aws_creds_current(struct aws_creds_provider *p) {
  if (!usable(p, REFRESH_LAST_NS))
    return NULL;
  if (!usable(p, REFRESH_EARLY_NS) && !p->fetching && p->src != SRC_STATIC &&
      time_now_ns() - p->last_fetch_ns > REFRESH_SPACING_NS) {
    /* Refresh in the background; requests keep using these meanwhile. */
    p->fetching = 1;
    p->last_fetch_ns = time_now_ns();
    p->imds_step = IMDS_TOKEN;
    start_fetch(p);
  }
  return &p->cur;
}

int aws_creds_fresh(struct aws_creds_provider *p) {
  return usable(p, REFRESH_MUST_NS) && aws_creds_current(p) != NULL;
}

static void on_defer(void *arg) {
  struct aws_creds_provider *p = arg;
  loop_timer_free(p->defer);
  p->defer = NULL;
  struct waiter *w = p->deferred;
  p->deferred = NULL;
  notify(p, w, 0, NULL);
}

void aws_creds_ensure(struct aws_creds_provider *p, int force, aws_creds_cb cb,
                      void *arg) {
  struct waiter *w = xcalloc(1, sizeof(*w));
  w->cb = cb;
  w->arg = arg;
  if ((!force || p->src == SRC_STATIC) && !p->fetching &&
      usable(p, REFRESH_MUST_NS)) {
    w->next = p->deferred;
    p->deferred = w;
    if (!p->defer) {
      p->defer = loop_timer_new(on_defer, p);
      loop_timer_start(p->defer, 0);
    }
    return;
  }
  w->next = p->waiters;
  p->waiters = w;
  if (p->fetching)
    return;
  p->fetching = 1;
  p->last_fetch_ns = time_now_ns();
  p->imds_step = IMDS_TOKEN;
  if (force && p->src != SRC_STATIC)
    p->cur.expires_ns = p->have ? 1 : 0; /* do not fall back to them */
  start_fetch(p);
}
