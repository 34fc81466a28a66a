/*
 * Each replica type's configuration rules, moved out of config.c: which
 * fields the URL gives (explicit keys win), which are required, and the
 * S3 encryption keys.  Messages are those of Litestream 0.3 (main.go
 * newS3ReplicaClientFromConfig and friends).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"
#include "config/config_internal.h"

static char *take(char **p) {
  char *v = *p;
  *p = NULL;
  return v;
}

static int need_bucket(struct pctx *c, struct replica_config *r,
                       const struct section *s, const char *what) {
  if (r->bucket && *r->bucket)
    return 0;
  const char *key = r->url ? "url" : "bucket";
  return config_errf(c, config_section_line(s, key), key,
                     "%s required for %s replica", what, r->type);
}

static int apply_file(struct pctx *c, struct replica_config *r,
                      const struct section *s, struct replica_url *u) {
  char *p = r->url ? take(&u->path) : take(&r->path);
  if (!p || !*p) {
    free(p);
    return config_errf(c, config_section_line(s, "path"), "path",
                       "file replica path required");
  }
  r->path = path_abs(p);
  free(p);
  return 0;
}

/* Spec 6.4: path-style is the explicit key if given, else "an endpoint is
 * set"; a URL that implies path-style turns a false into true. */
static int apply_s3(struct pctx *c, struct replica_config *r,
                    const struct section *s, struct replica_url *u) {
  int fps = r->force_path_style != TRI_UNSET ? r->force_path_style == TRI_TRUE
                                             : r->endpoint != NULL;
  if (r->url) {
    r->path = take(&u->path);
    r->bucket = take(&u->bucket);
    if (!r->region)
      r->region = take(&u->region);
    if (!r->endpoint)
      r->endpoint = take(&u->endpoint);
    if (!fps)
      fps = u->force_path_style;
  }
  r->force_path_style = fps ? TRI_TRUE : TRI_FALSE;
  return need_bucket(c, r, s, "bucket");
}

static int apply_gcs(struct pctx *c, struct replica_config *r,
                     const struct section *s, struct replica_url *u) {
  if (r->url) {
    r->bucket = take(&u->host);
    r->path = take(&u->path);
  }
  return need_bucket(c, r, s, "bucket");
}

/*
 * Azure accepts two URL forms:
 *  - Litestream's abs://[ACCOUNT@]CONTAINER/PATH: the container is the URL
 *    host, the account comes from the userinfo when `account-name` is
 *    unset;
 *  - the form operators write, abs://ACCOUNT/CONTAINER/PATH, recognised
 *    when the URL has no userinfo, its host equals the account name
 *    (`account-name`, else $AZURE_STORAGE_ACCOUNT) and its path is not
 *    empty: the container is then the first path element and the path the
 *    rest.  abs://ACCOUNT alone keeps Litestream's meaning (a container
 *    named like the account).
 */
static int apply_abs(struct pctx *c, struct replica_config *r,
                     const struct section *s, struct replica_url *u) {
  if (r->url) {
    const char *acct = r->account_name;
    if (!acct)
      acct = getenv("AZURE_STORAGE_ACCOUNT");
    if (!u->user && acct && *acct && !strcmp(u->host, acct) && *u->path) {
      char *slash = strchr(u->path, '/');
      r->bucket = slash ? xstrndup(u->path, (size_t)(slash - u->path))
                        : xstrdup(u->path);
      r->path = xstrdup(slash ? slash + 1 : "");
      if (!r->account_name)
        r->account_name = xstrdup(u->host);
    } else {
      if (!r->account_name && u->user && *u->user)
        r->account_name = take(&u->user);
      r->bucket = take(&u->host);
      r->path = take(&u->path);
    }
  }
  return need_bucket(c, r, s, "container (bucket)");
}

static int apply_sftp(struct pctx *c, struct replica_config *r,
                      const struct section *s, struct replica_url *u) {
  if (r->url) {
    r->host = take(&u->host);
    if (!r->user && u->user && *u->user)
      r->user = take(&u->user);
    if (!r->password && u->password && *u->password)
      r->password = take(&u->password);
    r->path = take(&u->path);
  }
  const char *key = r->url ? "url" : "host";
  if (!r->host || !*r->host)
    return config_errf(c, config_section_line(s, key), key,
                       "host required for sftp replica");
  key = r->url ? "url" : "user";
  if (!r->user)
    return config_errf(c, config_section_line(s, key), key,
                       "user required for sftp replica");
  return 0;
}

/* Base64 of exactly 32 bytes: 43 symbols and one '='. */
static int is_sse_c_key(const char *k) {
  static const char b64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  return strlen(k) == 44 && strspn(k, b64) == 43 && k[43] == '=';
}

int config_check_sse(struct pctx *c, struct replica_config *r,
                     const struct section *s) {
  if (r->sse) {
    const char *canon = !strcasecmp(r->sse, "AES256")    ? "AES256"
                        : !strcasecmp(r->sse, "aws:kms") ? "aws:kms"
                                                         : NULL;
    if (!canon)
      return config_errf(c, config_section_line(s, "sse"), "sse",
                         "expected \"AES256\" or \"aws:kms\", got \"%.60s\"",
                         r->sse);
    config_set_str(&r->sse, canon);
  }
  if (r->sse_kms_key_id) {
    if (r->sse && strcmp(r->sse, "aws:kms"))
      return config_errf(c, config_section_line(s, "sse-kms-key-id"),
                         "sse-kms-key-id", "requires sse: aws:kms");
    config_set_str(&r->sse, "aws:kms");
  }
  if (r->sse_c_key) {
    if (!is_sse_c_key(r->sse_c_key))
      return config_errf(c, config_section_line(s, "sse-c-key"), "sse-c-key",
                         "expected the base64 encoding of a 256-bit key");
    if (r->sse)
      return config_errf(c, config_section_line(s, "sse-c-key"), "sse-c-key",
                         "cannot be combined with sse");
  }
  return 0;
}

int config_backend_apply(struct pctx *c, struct replica_config *r,
                         const struct section *s, struct replica_url *u) {
  static const struct {
    const char *type;
    int (*apply)(struct pctx *, struct replica_config *, const struct section *,
                 struct replica_url *);
  } types[] = {{"file", apply_file},
               {"s3", apply_s3},
               {"gcs", apply_gcs},
               {"abs", apply_abs},
               {"sftp", apply_sftp}};
  for (size_t i = 0; i < ARRAY_SIZE(types); i++)
    if (!strcmp(r->type, types[i].type))
      return types[i].apply(c, r, s, u);
  return 0;
}
