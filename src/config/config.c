/*
 * Configuration file parser (spec 5.4 and 6).
 *
 * The raw text is first expanded like Go's os.ExpandEnv, then loaded with
 * libyaml's document API, which keeps every node's line.  Each section
 * (top level, logging, dbs[], replicas[], age) is a table of keys with a
 * kind and an offset into the struct it fills, so one function converts
 * and checks values for every section, and a key missing from its table
 * is reported with its line instead of being silently dropped (yaml.v2
 * would drop it).  Merge keys ("<<: *anchor") are honoured as yaml.v2
 * does: the entry's own keys override merged ones.
 *
 * After a replica entry is read, replica_resolve() applies Litestream's
 * per-type constructor rules (main.go newS3ReplicaClientFromConfig and
 * friends; each type's in config_backends.c): the type comes from the URL
 * scheme, else `type`, else "file";
 * explicit keys win over values derived from the URL; required fields are
 * checked.  The same function serves URL-only mode
 * (config_replica_from_url), where messages name the URL instead of a
 * file and line.
 *
 * Values of secret keys (credentials, passwords, SAS tokens, age
 * identities) are never copied into messages.
 */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "base/err.h"
#include "config/config_internal.h"
#include "config/url.h"
#include "format/names.h"
#include "base/util.h"

/* This file's short names for what config_internal.h shares with
 * config_backends.c. */
#define errf config_errf
#define section_line config_section_line
#define set_str config_set_str

#define CONFIG_MAX_SIZE (16u << 20)
#define MAX_MERGE_DEPTH 16

/* ------------------------------------------------------------------ */
/* Config path and environment expansion                               */

char *config_default_path(const char *flag, int *explicit_) {
  const char *p = flag;
  int ex = 1;
  if (!p || !*p)
    p = getenv("SLUICE_CONFIG");
  if (!p || !*p)
    p = getenv("LITESTREAM_CONFIG");
  if (!p || !*p) {
    ex = 0;
    p = access("/etc/sluice.yml", F_OK) == 0 ? "/etc/sluice.yml"
                                             : "/etc/litestream.yml";
  }
  *explicit_ = ex;
  return path_abs(p);
}

static int shell_special(int c) {
  return strchr("*#$@!?-", c) || (c >= '0' && c <= '9');
}

static int shell_alnum(int c) {
  return c == '_' || isalnum(c);
}

/* Go's os.getShellName: the variable name after a '$' in s (at least one
 * byte long) as an offset/length, and the number of bytes consumed.  A
 * zero-length name with w > 0 is bad syntax whose bytes are dropped. */
static void shell_name(const char *s, size_t *off, size_t *len, size_t *w) {
  *off = 0;
  if (s[0] == '{') {
    if (s[1] && shell_special((unsigned char)s[1]) && s[2] == '}') {
      *off = 1, *len = 1, *w = 3;
      return;
    }
    for (size_t i = 1; s[i]; i++) {
      if (s[i] == '}') {
        *off = 1, *len = i - 1, *w = i == 1 ? 2 : i + 1;
        return;
      }
    }
    *len = 0, *w = 1; /* unterminated "${": drop it */
    return;
  }
  if (shell_special((unsigned char)s[0])) {
    *len = *w = 1;
    return;
  }
  size_t i = 0;
  while (shell_alnum((unsigned char)s[i]))
    i++;
  *len = *w = i;
}

char *config_expand_env(const char *text) {
  struct buf b;
  buf_init(&b, 0);
  const char *p = text;
  for (;;) {
    const char *d = strchr(p, '$');
    if (!d || !d[1]) {
      buf_append(&b, p, strlen(p));
      break;
    }
    buf_append(&b, p, (size_t)(d - p));
    size_t off, len, w;
    shell_name(d + 1, &off, &len, &w);
    if (len == 0 && w == 0) {
      buf_append(&b, "$", 1); /* not a name: keep the dollar */
    } else if (len > 0) {
      char *name = xstrndup(d + 1 + off, len);
      const char *v = getenv(name);
      if (v)
        buf_append(&b, v, strlen(v));
      free(name);
    }
    p = d + 1 + w;
  }
  buf_append(&b, "", 1);
  return (char *)buf_steal(&b, NULL);
}

/* ------------------------------------------------------------------ */
/* Parse context, messages and node helpers                            */

struct pctx {
  const char *file; /* name for messages; NULL in URL mode */
  const char *url;  /* URL mode: the URL messages name */
  yaml_document_t *doc;
  char *err;
  size_t errlen;
};

/* Writes "FILE:LINE: KEY: message" (or "message: URL" in URL mode) and
 * returns ERR_CONFIG. */
int config_errf(struct pctx *c, int line, const char *key, const char *fmt,
                ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (c->file) {
    snprintf(c->err, c->errlen, "%s:%d: %s: %s", c->file, line, key, msg);
  } else if (c->url) {
    char *red = url_redact(c->url);
    snprintf(c->err, c->errlen, "%s: %s", msg, red);
    free(red);
  } else {
    snprintf(c->err, c->errlen, "%s", msg);
  }
  return ERR_CONFIG;
}

static config_warn_cb g_warn_cb;
static void *g_warn_arg;

void config_set_warn_hook(config_warn_cb cb, void *arg) {
  g_warn_cb = cb;
  g_warn_arg = arg;
}

/* Keys that only mean something on a replica: written anywhere else (the
 * top level, as some guides show, or a database) they have no effect. */
static int is_replica_key(const char *key) {
  static const char *const keys[] = {"retention",
                                     "retention-check-interval",
                                     "snapshot-interval",
                                     "sync-interval",
                                     "validation-interval",
                                     "lease-ttl",
                                     "lease-idle-ttl",
                                     "force-takeover",
                                     "url",
                                     "bucket",
                                     "endpoint",
                                     "region",
                                     "force-path-style",
                                     "skip-verify",
                                     NULL};
  for (int i = 0; keys[i]; i++)
    if (!strcmp(key, keys[i]))
      return 1;
  return 0;
}

static void warn_unknown(struct pctx *c, int line, const char *key) {
  char msg[256];
  if (is_replica_key(key))
    snprintf(msg, sizeof(msg),
             "unknown key \"%s\" ignored: it had no effect here (it is a "
             "replica setting: put it under each replica)",
             key);
  else
    snprintf(msg, sizeof(msg), "unknown key \"%s\" ignored: it had no effect",
             key);
  if (g_warn_cb)
    g_warn_cb(g_warn_arg, line, key, msg);
  else
    log_warn(NULL, NULL, "%s:%d: %s", c->file, line, msg);
}

static yaml_node_t *node_at(struct pctx *c, int index) {
  return yaml_document_get_node(c->doc, index);
}

static int node_line(const yaml_node_t *n) {
  return (int)n->start_mark.line + 1;
}

static const char *scalar(const yaml_node_t *n) {
  return (const char *)n->data.scalar.value;
}

static int is_plain(const yaml_node_t *n) {
  return n->type == YAML_SCALAR_NODE &&
         n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* YAML 1.1 null: an empty or "~"/"null" plain scalar. */
static int is_null(const yaml_node_t *n) {
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
  if (!is_plain(n))
    return 0;
  for (size_t i = 0; i < ARRAY_SIZE(nulls); i++)
    if (!strcmp(scalar(n), nulls[i]))
      return 1;
  return 0;
}

/* How a bad value reads in a message: quoted and shortened, or its shape.
 * Secret values are never shown. */
static void describe(const yaml_node_t *n, int secret, char *out, size_t len) {
  if (n->type == YAML_MAPPING_NODE) {
    snprintf(out, len, "a mapping");
    return;
  }
  if (n->type == YAML_SEQUENCE_NODE || secret) {
    snprintf(out, len, n->type == YAML_SEQUENCE_NODE ? "a list" : "a string");
    return;
  }
  /* A URL may carry a password: show its redacted form. */
  char *red = url_is_url(scalar(n)) ? url_redact(scalar(n)) : NULL;
  const char *text = red ? red : scalar(n);
  size_t w = 0;
  out[w++] = '"';
  for (const char *p = text; *p && w + 8 < len; p++) {
    if (p - text >= 60) {
      w += (size_t)snprintf(out + w, len - w, "...");
      break;
    }
    unsigned char ch = (unsigned char)*p;
    if (ch == '"' || ch == '\\')
      out[w++] = '\\', out[w++] = (char)ch;
    else if (ch < 0x20)
      w += (size_t)snprintf(out + w, len - w, "\\x%02x", ch);
    else
      out[w++] = (char)ch;
  }
  out[w++] = '"';
  out[w] = '\0';
  free(red);
}

static int type_err(struct pctx *c, const char *key, const yaml_node_t *v,
                    const char *expected, int secret) {
  char got[96];
  describe(v, secret, got, sizeof(got));
  return errf(c, node_line(v), key, "expected %s, got %s", expected, got);
}

/* ------------------------------------------------------------------ */
/* Scalar conversions                                                  */

static int parse_bool(const char *s, int *out) {
  static const char *const yes[] = {"true", "yes", "on", "y"};
  static const char *const no[] = {"false", "no", "off", "n"};
  for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
    if (!strcasecmp(s, yes[i]))
      return *out = 1, 0;
    if (!strcasecmp(s, no[i]))
      return *out = 0, 0;
  }
  return -EINVAL;
}

static int parse_int(const char *s, int64_t *out) {
  char *end;
  if (!*s || isspace((unsigned char)*s))
    return -EINVAL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end)
    return -EINVAL;
  *out = v;
  return 0;
}

/* "host:port", ":port" or "[v6]:port" with a non-empty port, the check
 * Litestream makes with net.SplitHostPort before serving metrics. */
static int addr_has_port(const char *a) {
  const char *colon;
  if (a[0] == '[') {
    const char *close = strchr(a, ']');
    if (!close || close[1] != ':')
      return 0;
    colon = close + 1;
  } else {
    colon = strchr(a, ':');
    if (!colon || strchr(colon + 1, ':'))
      return 0;
  }
  return colon[1] != '\0';
}

void config_set_str(char **dst, const char *v) {
  free(*dst);
  *dst = v && *v ? xstrdup(v) : NULL;
}

/* ------------------------------------------------------------------ */
/* Key tables                                                          */

enum kind {
  K_STR,     /* any scalar, kept as text; empty means unset */
  K_SECRET,  /* same, never shown in messages */
  K_DUR,     /* Go duration string, or bare integer nanoseconds */
  K_COUNT,   /* non-negative integer */
  K_BOOL,    /* YAML 1.1 boolean */
  K_TRI,     /* boolean, remembering whether it was given */
  K_STRS,    /* list of scalars */
  K_SECRETS, /* same, never shown */
  K_SUB,     /* nested section handled by `sub` */
};

struct pctx;
struct field {
  const char *key;
  enum kind kind;
  size_t off;   /* into the section's struct */
  size_t off_n; /* K_STRS: the count */
  int (*sub)(struct pctx *c, yaml_node_t *v, void *base);
};

/* One mapping being read: its table, the struct it fills, and the line
 * each key was found on (0 when absent), for later validation messages. */
struct section {
  const struct field *tab;
  size_t n;
  void *base;
  int *lines;
  int line; /* of the mapping itself */
};

int config_section_line(const struct section *s, const char *key) {
  for (size_t i = 0; s && i < s->n; i++)
    if (!strcmp(s->tab[i].key, key))
      return s->lines[i] ? s->lines[i] : s->line;
  return s ? s->line : 0;
}

static int section_has(const struct section *s, const char *key) {
  for (size_t i = 0; i < s->n; i++)
    if (!strcmp(s->tab[i].key, key))
      return s->lines[i] != 0;
  return 0;
}

static int set_list(struct pctx *c, const struct field *f, yaml_node_t *v,
                    void *base) {
  char ***arr = (char ***)((char *)base + f->off);
  size_t *n = (size_t *)((char *)base + f->off_n);
  int secret = f->kind == K_SECRETS;
  if (v->type != YAML_SEQUENCE_NODE && !is_null(v))
    return type_err(c, f->key, v, "a list of strings", secret);
  /* A later occurrence (after a merge) replaces the list, as yaml.v2. */
  for (size_t i = 0; i < *n; i++)
    free((*arr)[i]);
  free(*arr);
  *arr = NULL;
  *n = 0;
  if (is_null(v))
    return 0;
  for (yaml_node_item_t *it = v->data.sequence.items.start;
       it < v->data.sequence.items.top; it++) {
    yaml_node_t *item = node_at(c, *it);
    if (item->type != YAML_SCALAR_NODE)
      return type_err(c, f->key, item, "a list of strings", secret);
    *arr = xrealloc(*arr, (*n + 1) * sizeof(**arr));
    (*arr)[(*n)++] = xstrdup(scalar(item));
  }
  return 0;
}

static int set_scalar(struct pctx *c, const struct field *f, yaml_node_t *v,
                      void *base) {
  void *dst = (char *)base + f->off;
  int b;
  if (v->type != YAML_SCALAR_NODE)
    return type_err(c, f->key, v,
                    f->kind == K_DUR      ? "a duration like 10s or 1h30m"
                    : f->kind == K_COUNT  ? "a non-negative integer"
                    : f->kind <= K_SECRET ? "a string"
                                          : "a boolean (true or false)",
                    f->kind == K_SECRET);
  const char *s = scalar(v);
  switch (f->kind) {
  case K_STR:
  case K_SECRET:
    set_str(dst, is_null(v) ? NULL : s);
    return 0;
  case K_DUR:
    if (!is_null(v) && duration_parse(s, dst))
      return type_err(c, f->key, v, "a duration like 10s or 1h30m", 0);
    return 0;
  case K_COUNT:
    if (!is_null(v) && (parse_int(s, dst) || *(int64_t *)dst < 0))
      return type_err(c, f->key, v, "a non-negative integer", 0);
    return 0;
  case K_BOOL:
  case K_TRI:
    if (is_null(v))
      return 0;
    if (parse_bool(s, &b))
      return type_err(c, f->key, v, "a boolean (true or false)", 0);
    if (f->kind == K_BOOL)
      *(int *)dst = b;
    else
      *(enum tristate *)dst = b ? TRI_TRUE : TRI_FALSE;
    return 0;
  default:
    return 0;
  }
}

/* Stores one key's value.  Returns 1 if the key is not in the table. */
static int field_set(struct pctx *c, struct section *s, yaml_node_t *k,
                     yaml_node_t *v) {
  for (size_t i = 0; i < s->n; i++) {
    const struct field *f = &s->tab[i];
    if (strcmp(f->key, scalar(k)) != 0)
      continue;
    s->lines[i] = node_line(k);
    if (f->kind == K_SUB)
      return f->sub(c, v, s->base);
    if (f->kind == K_STRS || f->kind == K_SECRETS)
      return set_list(c, f, v, s->base);
    return set_scalar(c, f, v, s->base);
  }
  return 1;
}

static int map_each(struct pctx *c, yaml_node_t *map, struct section *s,
                    int depth);

/* "<<: *anchor" or "<<: [*a, *b]": earlier mappings of a list win, so
 * they are applied last. */
static int merge_into(struct pctx *c, yaml_node_t *v, struct section *s,
                      int depth) {
  if (v->type == YAML_MAPPING_NODE)
    return map_each(c, v, s, depth + 1);
  if (v->type != YAML_SEQUENCE_NODE)
    return type_err(c, "<<", v, "a mapping or a list of mappings", 0);
  yaml_node_item_t *start = v->data.sequence.items.start;
  for (yaml_node_item_t *it = v->data.sequence.items.top; it > start;) {
    yaml_node_t *m = node_at(c, *--it);
    if (m->type != YAML_MAPPING_NODE)
      return type_err(c, "<<", m, "a mapping or a list of mappings", 0);
    int rc = map_each(c, m, s, depth + 1);
    if (rc)
      return rc;
  }
  return 0;
}

/* Feeds every key of a mapping to its section: merged keys first, so the
 * mapping's own keys override them. */
static int map_each(struct pctx *c, yaml_node_t *map, struct section *s,
                    int depth) {
  if (depth > MAX_MERGE_DEPTH)
    return errf(c, node_line(map), "<<", "merge keys nested too deeply");
  for (int pass = 0; pass < 2; pass++) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
      yaml_node_t *k = node_at(c, p->key), *v = node_at(c, p->value);
      int merge = is_plain(k) && !strcmp(scalar(k), "<<");
      if (merge != (pass == 0))
        continue;
      int rc;
      if (merge)
        rc = merge_into(c, v, s, depth);
      else if (k->type != YAML_SCALAR_NODE)
        rc = type_err(c, "key", k, "a string", 0);
      else if ((rc = field_set(c, s, k, v)) == 1)
        warn_unknown(c, node_line(k), scalar(k)), rc = 0;
      if (rc)
        return rc;
    }
  }
  return 0;
}

/* Reads a mapping (or a null, which leaves every default) into s. */
static int section_read(struct pctx *c, const char *key, yaml_node_t *v,
                        struct section *s) {
  s->line = node_line(v);
  if (is_null(v))
    return 0;
  if (v->type != YAML_MAPPING_NODE)
    return type_err(c, key, v, "a mapping", 0);
  return map_each(c, v, s, 0);
}

/* ------------------------------------------------------------------ */
/* Replicas                                                            */

static void warnf(struct pctx *c, int line, const char *key, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));

static void warnf(struct pctx *c, int line, const char *key, const char *fmt,
                  ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (g_warn_cb) {
    g_warn_cb(g_warn_arg, c->file ? line : 0, key, msg);
  } else if (c->file) {
    log_warn(NULL, NULL, "%s:%d: %s: %s", c->file, line, key, msg);
  } else {
    char *red = url_redact(c->url ? c->url : "");
    log_warn(NULL, NULL, "%s: %s", msg, red);
    free(red);
  }
}

static int is_type(const struct replica_config *r, const char *t) {
  return !strcmp(r->type, t);
}

static void replica_defaults(struct replica_config *r) {
  memset(r, 0, sizeof(*r));
  r->retention = DEFAULT_RETENTION;
  r->retention_check_interval = DEFAULT_RETENTION_CHECK;
  r->sync_interval = DEFAULT_SYNC_INTERVAL;
  r->snapshot_wal_factor = DEFAULT_SNAPSHOT_WAL_FACTOR;
  r->lease_ttl = DEFAULT_LEASE_TTL;
  r->lease_idle_ttl = DEFAULT_LEASE_IDLE_TTL;
  r->force_path_style = TRI_UNSET;
}

/* Spec 6.3: the URL's scheme, else `type`, else "file"; "gs" is taken as
 * Litestream 0.3's "gcs". */
static int replica_type(struct pctx *c, struct replica_config *r,
                        const struct section *s, const struct replica_url *u) {
  static const char *const types[] = {"file", "s3", "gcs", "abs", "sftp"};
  const char *key = r->url ? "url" : "type";
  const char *t = r->url ? u->scheme : r->type ? r->type : "file";
  if (!strcmp(t, "gs"))
    t = "gcs";
  size_t i = 0;
  while (i < ARRAY_SIZE(types) && strcmp(types[i], t))
    i++;
  if (i == ARRAY_SIZE(types))
    return errf(c, section_line(s, key), key,
                "unknown replica type in config: \"%s\"", t);
  if (r->url && r->type &&
      strcmp(!strcmp(r->type, "gs") ? "gcs" : r->type, types[i]))
    warnf(c, section_line(s, "type"), "type",
          "type \"%s\" ignored: the url scheme gives \"%s\"", r->type,
          types[i]);
  set_str(&r->type, types[i]);
  return 0;
}

static int replica_conflicts(struct pctx *c, struct replica_config *r,
                             const struct section *s) {
  if (!r->url)
    return 0;
  if (r->path)
    return errf(c, section_line(s, "path"), "path",
                "cannot specify url & path for %s replica", r->type);
  if (r->bucket && (is_type(r, "s3") || is_type(r, "gcs") || is_type(r, "abs")))
    return errf(c, section_line(s, "bucket"), "bucket",
                "cannot specify url & bucket for %s replica", r->type);
  if (r->host && is_type(r, "sftp"))
    return errf(c, section_line(s, "host"), "host",
                "cannot specify url & host for sftp replica");
  return 0;
}

static int check_intervals(struct pctx *c, struct replica_config *r,
                           const struct section *s) {
  char d[40];
  if (r->sync_interval <= 0) {
    duration_format(r->sync_interval, d);
    return errf(c, section_line(s, "sync-interval"), "sync-interval",
                "must be greater than zero, got %s", d);
  }
  if (r->retention > 0 && r->retention_check_interval <= 0) {
    duration_format(r->retention_check_interval, d);
    return errf(c, section_line(s, "retention-check-interval"),
                "retention-check-interval",
                "must be greater than zero while retention is on, got %s", d);
  }
  if (r->lease_ttl != 0 && r->lease_ttl < NS_PER_SEC) {
    duration_format(r->lease_ttl, d);
    return errf(c, section_line(s, "lease-ttl"), "lease-ttl",
                "must be 0 (no lease) or at least 1s, got %s", d);
  }
  if (r->lease_idle_ttl < 0 || (r->lease_idle_ttl > 0 && r->lease_ttl > 0 &&
                                r->lease_idle_ttl < r->lease_ttl)) {
    char t[40];
    duration_format(r->lease_idle_ttl, d);
    duration_format(r->lease_ttl, t);
    return errf(c, section_line(s, "lease-idle-ttl"), "lease-idle-ttl",
                "must be 0 (renew idle leases at lease-ttl) or at least "
                "lease-ttl (%s), got %s",
                t, d);
  }
  return 0;
}

static int replica_resolve(struct pctx *c, struct replica_config *r,
                           const struct section *s) {
  struct replica_url u;
  char msg[512];
  int rc;
  memset(&u, 0, sizeof(u));
  if (r->path && url_is_url(r->path))
    return errf(c, section_line(s, "path"), "path",
                "replica path cannot be a url, please use the 'url' field "
                "instead");
  if (r->url && url_parse(r->url, &u, msg, sizeof(msg))) {
    if (!c->file)
      return snprintf(c->err, c->errlen, "%s", msg), ERR_CONFIG;
    return errf(c, section_line(s, "url"), "url", "%s", msg);
  }
  if ((rc = replica_type(c, r, s, &u)) || (rc = replica_conflicts(c, r, s)))
    goto done;
  if (r->endpoint && *r->endpoint &&
      url_check_endpoint(r->endpoint, msg, sizeof(msg))) {
    rc = errf(c, section_line(s, "endpoint"), "endpoint", "%s", msg);
    goto done;
  }
  if ((rc = config_backend_apply(c, r, s, &u)))
    goto done;
  if (!r->path)
    r->path = xstrdup("");
  if (!r->name)
    r->name = xstrdup(r->type);
  if ((rc = check_intervals(c, r, s)) || (rc = config_check_sse(c, r, s)))
    goto done;
  if (u.query)
    warnf(c, section_line(s, "url"), "url",
          "query parameters in a replica URL are ignored");
done:
  url_destroy(&u);
  return rc;
}

static int parse_age(struct pctx *c, yaml_node_t *v, void *base) {
#define RF(x) offsetof(struct replica_config, x)
  static const struct field fields[] = {
      {"identities", K_SECRETS, RF(age_identities), RF(n_age_identities), NULL},
      {"recipients", K_STRS, RF(age_recipients), RF(n_age_recipients), NULL},
  };
  int lines[ARRAY_SIZE(fields)] = {0};
  struct section s = {fields, ARRAY_SIZE(fields), base, lines, 0};
  return section_read(c, "age", v, &s);
}

static const struct field replica_fields[] = {
    {"type", K_STR, RF(type), 0, NULL},
    {"name", K_STR, RF(name), 0, NULL},
    {"url", K_STR, RF(url), 0, NULL},
    {"path", K_STR, RF(path), 0, NULL},
    {"retention", K_DUR, RF(retention), 0, NULL},
    {"retention-check-interval", K_DUR, RF(retention_check_interval), 0, NULL},
    {"sync-interval", K_DUR, RF(sync_interval), 0, NULL},
    {"snapshot-interval", K_DUR, RF(snapshot_interval), 0, NULL},
    {"snapshot-wal-factor", K_COUNT, RF(snapshot_wal_factor), 0, NULL},
    {"validation-interval", K_DUR, RF(validation_interval), 0, NULL},
    {"lease-ttl", K_DUR, RF(lease_ttl), 0, NULL},
    {"lease-idle-ttl", K_DUR, RF(lease_idle_ttl), 0, NULL},
    {"force-takeover", K_BOOL, RF(force_takeover), 0, NULL},
    {"age", K_SUB, 0, 0, parse_age},
    {"bucket", K_STR, RF(bucket), 0, NULL},
    {"region", K_STR, RF(region), 0, NULL},
    {"endpoint", K_STR, RF(endpoint), 0, NULL},
    {"force-path-style", K_TRI, RF(force_path_style), 0, NULL},
    {"skip-verify", K_BOOL, RF(skip_verify), 0, NULL},
    {"access-key-id", K_SECRET, RF(access_key_id), 0, NULL},
    {"secret-access-key", K_SECRET, RF(secret_access_key), 0, NULL},
    {"sse", K_STR, RF(sse), 0, NULL},
    {"sse-kms-key-id", K_STR, RF(sse_kms_key_id), 0, NULL},
    {"sse-c-key", K_SECRET, RF(sse_c_key), 0, NULL},
    {"storage-class", K_STR, RF(storage_class), 0, NULL},
    {"account-name", K_STR, RF(account_name), 0, NULL},
    {"account-key", K_SECRET, RF(account_key), 0, NULL},
    {"sas-token", K_SECRET, RF(sas_token), 0, NULL},
    {"host", K_STR, RF(host), 0, NULL},
    {"user", K_STR, RF(user), 0, NULL},
    {"password", K_SECRET, RF(password), 0, NULL},
    {"key-path", K_STR, RF(key_path), 0, NULL},
    {"host-key-path", K_STR, RF(host_key_path), 0, NULL},
#undef RF
};

static int parse_replica(struct pctx *c, yaml_node_t *v,
                         struct replica_config *r) {
  int lines[ARRAY_SIZE(replica_fields)] = {0};
  struct section s = {replica_fields, ARRAY_SIZE(replica_fields), r, lines, 0};
  r->line = node_line(v);
  int rc = section_read(c, "replicas", v, &s);
  return rc ? rc : replica_resolve(c, r, &s);
}

static int parse_replicas(struct pctx *c, yaml_node_t *v, void *base) {
  struct db_config *d = base;
  for (size_t i = 0; i < d->n_replicas; i++)
    config_replica_destroy(&d->replicas[i]);
  free(d->replicas);
  d->replicas = NULL;
  d->n_replicas = 0;
  if (is_null(v))
    return 0;
  if (v->type != YAML_SEQUENCE_NODE)
    return type_err(c, "replicas", v, "a list of replicas", 0);
  for (yaml_node_item_t *it = v->data.sequence.items.start;
       it < v->data.sequence.items.top; it++) {
    d->replicas =
        xrealloc(d->replicas, (d->n_replicas + 1) * sizeof(*d->replicas));
    struct replica_config *r = &d->replicas[d->n_replicas++];
    replica_defaults(r);
    int rc = parse_replica(c, node_at(c, *it), r);
    if (rc)
      return rc;
  }
  return 0;
}

/* `replica:` (Litestream 0.5): one replica, added to the list. */
static int parse_one_replica(struct pctx *c, yaml_node_t *v, void *base) {
  struct db_config *d = base;
  if (is_null(v))
    return 0;
  if (v->type != YAML_MAPPING_NODE)
    return type_err(c, "replica", v, "a mapping", 0);
  d->replicas =
      xrealloc(d->replicas, (d->n_replicas + 1) * sizeof(*d->replicas));
  struct replica_config *r = &d->replicas[d->n_replicas++];
  replica_defaults(r);
  return parse_replica(c, v, r);
}

/* ------------------------------------------------------------------ */
/* Databases                                                           */

static void db_defaults(struct db_config *d) {
  memset(d, 0, sizeof(*d));
  d->monitor_interval = DEFAULT_MONITOR_INTERVAL;
  d->checkpoint_interval = DEFAULT_CHECKPOINT_INTERVAL;
  d->min_checkpoint_page_count = DEFAULT_MIN_CHECKPOINT_PAGES;
  d->max_checkpoint_page_count = DEFAULT_MAX_CHECKPOINT_PAGES;
}

void config_db_init(struct db_config *d, const char *path) {
  db_defaults(d);
  d->path = path_abs(path);
  d->meta_path = meta_dir_path(d->path, NULL);
}

static int db_finish(struct pctx *c, struct db_config *d,
                     const struct section *s) {
  if (section_has(s, "replica") && section_has(s, "replicas"))
    return errf(c, section_line(s, "replica"), "replica",
                "cannot specify both replica and replicas");
  if (d->path && d->dir)
    return errf(c, section_line(s, "dir"), "dir",
                "cannot specify both path and dir");
  if (!d->path && !d->dir)
    return errf(c, s->line, "path",
                "database path required (or dir and pattern)");
  if (d->dir) {
    if (!d->pattern)
      return errf(c, section_line(s, "dir"), "pattern",
                  "pattern required with dir");
    if (d->meta_path)
      return errf(c, section_line(s, "meta-path"), "meta-path",
                  "cannot be used with dir");
    char why[128];
    if (config_pattern_check(d->pattern, why, sizeof(why)))
      warnf(c, section_line(s, "pattern"), "pattern",
            "invalid pattern %s (%s): this entry replicates nothing",
            d->pattern, why);
    char *p = path_abs(d->dir);
    free(d->dir);
    d->dir = p;
  } else {
    if (d->pattern || d->recursive || d->watch)
      return errf(c,
                  section_line(s, d->pattern     ? "pattern"
                                  : d->recursive ? "recursive"
                                                 : "watch"),
                  d->pattern     ? "pattern"
                  : d->recursive ? "recursive"
                                 : "watch",
                  "only valid with dir");
  }
  if (d->min_checkpoint_page_count <= 0)
    return errf(c, section_line(s, "min-checkpoint-page-count"),
                "min-checkpoint-page-count", "must be greater than zero");
  for (size_t i = 0; i < d->n_replicas; i++)
    for (size_t j = 0; j < i; j++)
      if (!strcmp(d->replicas[i].name, d->replicas[j].name))
        return errf(c, d->replicas[i].line, "name",
                    "duplicate replica name \"%s\"", d->replicas[i].name);
  if (d->dir)
    return 0;
  char *p = path_abs(d->path);
  free(d->path);
  d->path = p;
  p = d->meta_path ? path_abs(d->meta_path) : meta_dir_path(d->path, NULL);
  free(d->meta_path);
  d->meta_path = p;
  return 0;
}

static int parse_db(struct pctx *c, yaml_node_t *v, struct db_config *d) {
#define DF(x) offsetof(struct db_config, x)
  static const struct field fields[] = {
      {"path", K_STR, DF(path), 0, NULL},
      {"meta-path", K_STR, DF(meta_path), 0, NULL},
      {"monitor-interval", K_DUR, DF(monitor_interval), 0, NULL},
      {"checkpoint-interval", K_DUR, DF(checkpoint_interval), 0, NULL},
      {"min-checkpoint-page-count", K_COUNT, DF(min_checkpoint_page_count), 0,
       NULL},
      {"max-checkpoint-page-count", K_COUNT, DF(max_checkpoint_page_count), 0,
       NULL},
      {"replicas", K_SUB, 0, 0, parse_replicas},
      {"replica", K_SUB, 0, 0, parse_one_replica},
      {"dir", K_STR, DF(dir), 0, NULL},
      {"pattern", K_STR, DF(pattern), 0, NULL},
      {"recursive", K_BOOL, DF(recursive), 0, NULL},
      {"watch", K_BOOL, DF(watch), 0, NULL},
  };
#undef DF
  int lines[ARRAY_SIZE(fields)] = {0};
  struct section s = {fields, ARRAY_SIZE(fields), d, lines, 0};
  d->line = node_line(v);
  int rc = section_read(c, "dbs", v, &s);
  return rc ? rc : db_finish(c, d, &s);
}

static void dbs_clear(struct config *cfg) {
  for (size_t i = 0; i < cfg->n_dbs; i++)
    config_db_destroy(&cfg->dbs[i]);
  free(cfg->dbs);
  cfg->dbs = NULL;
  cfg->n_dbs = 0;
  for (size_t i = 0; i < cfg->n_dirs; i++)
    config_db_destroy(&cfg->dirs[i]);
  free(cfg->dirs);
  cfg->dirs = NULL;
  cfg->n_dirs = 0;
}

static uint64_t str_hash(const char *s) {
  uint64_t h = 14695981039346656037ULL; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static int parse_dbs(struct pctx *c, yaml_node_t *v, void *base) {
  struct config *cfg = base;
  dbs_clear(cfg);
  if (is_null(v))
    return 0;
  if (v->type != YAML_SEQUENCE_NODE)
    return type_err(c, "dbs", v, "a list of databases", 0);
  size_t n =
      (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
  if (n == 0)
    return 0;
  cfg->dbs = xcalloc(n, sizeof(*cfg->dbs));
  /* Paths seen so far, in an open-addressed table of indexes + 1: linear in
   * the number of databases (100,000 of them are a real configuration). */
  size_t cap = 16;
  while (cap < 2 * n)
    cap *= 2;
  size_t *seen = xcalloc(cap, sizeof(*seen));
  int rc = 0;
  for (yaml_node_item_t *it = v->data.sequence.items.start;
       !rc && it < v->data.sequence.items.top; it++) {
    struct db_config *d = &cfg->dbs[cfg->n_dbs++];
    db_defaults(d);
    if ((rc = parse_db(c, node_at(c, *it), d)))
      break;
    if (d->dir) {
      cfg->dirs = xrealloc(cfg->dirs, (cfg->n_dirs + 1) * sizeof(*cfg->dirs));
      cfg->dirs[cfg->n_dirs++] = *d;
      memset(d, 0, sizeof(*d));
      cfg->n_dbs--;
      continue;
    }
    size_t k = (size_t)str_hash(d->path) & (cap - 1);
    for (; seen[k]; k = (k + 1) & (cap - 1))
      if (!strcmp(cfg->dbs[seen[k] - 1].path, d->path)) {
        rc =
            errf(c, d->line, "path", "duplicate database path \"%s\"", d->path);
        break;
      }
    seen[k] = cfg->n_dbs;
  }
  free(seen);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Top level                                                           */

struct raw_logging {
  char *level;
  char *type;
  int to_stderr;
};

static int parse_logging(struct pctx *c, yaml_node_t *v, void *base) {
#define LF(x) offsetof(struct raw_logging, x)
  static const struct field fields[] = {
      {"level", K_STR, LF(level), 0, NULL},
      {"type", K_STR, LF(type), 0, NULL},
      {"stderr", K_BOOL, LF(to_stderr), 0, NULL},
  };
#undef LF
  struct log_config *out = &((struct config *)base)->logging;
  struct raw_logging raw = {NULL, NULL, out->to_stderr};
  int lines[ARRAY_SIZE(fields)] = {0};
  struct section s = {fields, ARRAY_SIZE(fields), &raw, lines, 0};
  int rc = section_read(c, "logging", v, &s);
  if (rc)
    goto done;
  /* Litestream's slog constructor panics on any other type; we say so. */
  if (raw.type && strcmp(raw.type, "text") && strcmp(raw.type, "json")) {
    rc = errf(c, lines[1], "logging.type",
              "expected \"text\" or \"json\", got \"%.60s\"", raw.type);
    goto done;
  }
  int level = raw.level ? log_level_parse(raw.level) : LOG_INFO;
  if (level < 0)
    warnf(c, lines[0], "logging.level", "unknown level \"%.60s\", using info",
          raw.level);
  out->level = level < 0 ? LOG_INFO : (enum log_level)level;
  out->json = raw.type && !strcmp(raw.type, "json");
  out->to_stderr = raw.to_stderr;
done:
  free(raw.level);
  free(raw.type);
  return rc;
}

static const struct field top_fields[] = {
#define CF(x) offsetof(struct config, x)
    {"addr", K_STR, CF(addr), 0, NULL},
    {"exec", K_STR, CF(exec), 0, NULL},
    {"access-key-id", K_SECRET, CF(access_key_id), 0, NULL},
    {"secret-access-key", K_SECRET, CF(secret_access_key), 0, NULL},
    {"shutdown-timeout", K_DUR, CF(shutdown_timeout), 0, NULL},
    {"health-max-sync-age", K_DUR, CF(health_max_sync_age), 0, NULL},
    {"deep-sleep-after", K_DUR, CF(deep_sleep_after), 0, NULL},
    {"max-hot-databases", K_COUNT, CF(max_hot_databases), 0, NULL},
    {"max-requests-per-second", K_COUNT, CF(max_requests_per_second), 0, NULL},
    {"max-uploads-in-flight", K_COUNT, CF(max_uploads_in_flight), 0, NULL},
    {"metrics-per-database-max", K_COUNT, CF(metrics_per_database_max), 0,
     NULL},
    {"logging", K_SUB, 0, 0, parse_logging},
    {"dbs", K_SUB, 0, 0, parse_dbs},
#undef CF
};

static int top_finish(struct pctx *c, struct config *cfg,
                      const struct section *s) {
  if (cfg->addr && !addr_has_port(cfg->addr))
    return errf(c, section_line(s, "addr"), "addr",
                "must specify port for bind address, got \"%.60s\"", cfg->addr);
  if (cfg->shutdown_timeout < 0)
    return errf(c, section_line(s, "shutdown-timeout"), "shutdown-timeout",
                "must not be negative");
  if (cfg->health_max_sync_age < 0)
    return errf(c, section_line(s, "health-max-sync-age"),
                "health-max-sync-age", "must not be negative");
  if (cfg->deep_sleep_after < 0)
    return errf(c, section_line(s, "deep-sleep-after"), "deep-sleep-after",
                "must not be negative");
  /* Litestream's propagateGlobalSettings. */
  for (size_t i = 0; i < cfg->n_dbs + cfg->n_dirs; i++) {
    struct db_config *d =
        i < cfg->n_dbs ? &cfg->dbs[i] : &cfg->dirs[i - cfg->n_dbs];
    for (size_t j = 0; j < d->n_replicas; j++) {
      struct replica_config *r = &d->replicas[j];
      if (!r->access_key_id && cfg->access_key_id)
        r->access_key_id = xstrdup(cfg->access_key_id);
      if (!r->secret_access_key && cfg->secret_access_key)
        r->secret_access_key = xstrdup(cfg->secret_access_key);
    }
  }
  return 0;
}

static void config_defaults(struct config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->logging.level = LOG_INFO;
  cfg->logging.json = 0;
  cfg->logging.to_stderr = 0; /* Litestream logs to stdout by default */
  cfg->shutdown_timeout = DEFAULT_SHUTDOWN_TIMEOUT;
  cfg->health_max_sync_age = DEFAULT_HEALTH_MAX_SYNC_AGE;
  cfg->deep_sleep_after = DEFAULT_DEEP_SLEEP_AFTER;
  cfg->metrics_per_database_max = DEFAULT_METRICS_PER_DATABASE_MAX;
}

static int parse_root(struct pctx *c, struct config *cfg) {
  yaml_node_t *root = yaml_document_get_root_node(c->doc);
  int lines[ARRAY_SIZE(top_fields)] = {0};
  struct section s = {top_fields, ARRAY_SIZE(top_fields), cfg, lines, 1};
  if (root && !is_null(root)) {
    if (root->type != YAML_MAPPING_NODE)
      return type_err(c, "config", root, "a mapping at the top level", 0);
    int rc = map_each(c, root, &s, 0);
    if (rc)
      return rc;
  }
  return top_finish(c, cfg, &s);
}

static void yaml_error(const char *name, const yaml_parser_t *p, char *err,
                       size_t errlen) {
  int n = snprintf(err, errlen, "%s:%d: invalid YAML: %s", name,
                   (int)p->problem_mark.line + 1,
                   p->problem ? p->problem : "parse error");
  if (p->context && n >= 0 && (size_t)n < errlen)
    snprintf(err + n, errlen - (size_t)n, " (%s started on line %d)",
             p->context, (int)p->context_mark.line + 1);
}

int config_parse(const char *name, const char *text, int expand_env,
                 struct config *out, char *err, size_t errlen) {
  char *expanded = expand_env ? config_expand_env(text) : NULL;
  const char *src = expanded ? expanded : text;
  yaml_parser_t parser;
  yaml_document_t doc;
  struct config cfg;
  struct pctx c = {name, NULL, &doc, err, errlen};
  int rc;

  config_defaults(&cfg);
  if (!yaml_parser_initialize(&parser)) {
    fprintf(stderr, "fatal: out of memory\n");
    abort();
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)src,
                               strlen(src));
  if (!yaml_parser_load(&parser, &doc)) {
    yaml_error(name, &parser, err, errlen);
    rc = ERR_CONFIG;
    goto fail_parser;
  }
  rc = parse_root(&c, &cfg);
  yaml_document_delete(&doc);
  if (rc)
    goto fail_parser;
  yaml_parser_delete(&parser);
  free(expanded);
  *out = cfg;
  return 0;

fail_parser:
  yaml_parser_delete(&parser);
  free(expanded);
  config_destroy(&cfg);
  return rc;
}

int config_load(const char *path, int expand_env, struct config *out, char *err,
                size_t errlen) {
  struct buf b;
  int rc = file_read_all(path, CONFIG_MAX_SIZE, &b);
  if (rc == -ENOENT) {
    snprintf(err, errlen, "config file not found: %s", path);
    return rc;
  }
  if (rc) {
    snprintf(err, errlen, "cannot read config file %s: %s", path,
             rc == -EFBIG ? "file too large" : strerror(-rc));
    return ERR_CONFIG;
  }
  buf_append(&b, "", 1);
  rc = config_parse(path, (const char *)b.data, expand_env, out, err, errlen);
  buf_destroy(&b);
  if (!rc)
    out->path = xstrdup(path);
  return rc;
}

/* ------------------------------------------------------------------ */
/* URL mode, lookup and teardown                                       */

int config_replica_from_url(const char *url, struct replica_config *out,
                            char *err, size_t errlen) {
  struct pctx c = {NULL, url, NULL, err, errlen};
  struct replica_config r;
  replica_defaults(&r);
  r.url = xstrdup(url);
  int rc = replica_resolve(&c, &r, NULL);
  if (rc) {
    config_replica_destroy(&r);
    return rc;
  }
  *out = r;
  return 0;
}

static void free_strs(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

void config_replica_destroy(struct replica_config *r) {
  char **strs[] = {
      &r->type,          &r->name,           &r->url,
      &r->path,          &r->bucket,         &r->region,
      &r->endpoint,      &r->access_key_id,  &r->secret_access_key,
      &r->sse,           &r->sse_kms_key_id, &r->sse_c_key,
      &r->storage_class, &r->account_name,   &r->account_key,
      &r->sas_token,     &r->host,           &r->user,
      &r->password,      &r->key_path,       &r->host_key_path,
      &r->lease_root,
  };
  for (size_t i = 0; i < ARRAY_SIZE(strs); i++)
    free(*strs[i]);
  free_strs(r->age_identities, r->n_age_identities);
  free_strs(r->age_recipients, r->n_age_recipients);
  memset(r, 0, sizeof(*r));
}

void config_replica_copy(struct replica_config *dst,
                         const struct replica_config *src) {
  *dst = *src;
  char **strs[] = {
      &dst->type,          &dst->name,           &dst->url,
      &dst->path,          &dst->bucket,         &dst->region,
      &dst->endpoint,      &dst->access_key_id,  &dst->secret_access_key,
      &dst->sse,           &dst->sse_kms_key_id, &dst->sse_c_key,
      &dst->storage_class, &dst->account_name,   &dst->account_key,
      &dst->sas_token,     &dst->host,           &dst->user,
      &dst->password,      &dst->key_path,       &dst->host_key_path,
      &dst->lease_root,
  };
  for (size_t i = 0; i < ARRAY_SIZE(strs); i++)
    if (*strs[i])
      *strs[i] = xstrdup(*strs[i]);
  char ***lists[] = {&dst->age_identities, &dst->age_recipients};
  size_t ns[] = {src->n_age_identities, src->n_age_recipients};
  for (size_t l = 0; l < 2; l++) {
    if (!*lists[l])
      continue;
    char **v = xcalloc(ns[l] + 1, sizeof(*v));
    for (size_t i = 0; i < ns[l]; i++)
      v[i] = xstrdup((*lists[l])[i]);
    *lists[l] = v;
  }
}

void config_db_destroy(struct db_config *d) {
  free(d->path);
  free(d->meta_path);
  if (d->shared) { /* the rest is its entry's */
    memset(d, 0, sizeof(*d));
    return;
  }
  free(d->dir);
  free(d->pattern);
  for (size_t i = 0; i < d->n_replicas; i++)
    config_replica_destroy(&d->replicas[i]);
  free(d->replicas);
  memset(d, 0, sizeof(*d));
}

void config_destroy(struct config *c) {
  dbs_clear(c);
  free(c->path);
  free(c->addr);
  free(c->exec);
  free(c->access_key_id);
  free(c->secret_access_key);
  memset(c, 0, sizeof(*c));
}

struct db_config *config_find_db(struct config *c, const char *path) {
  char *abs = path_abs(path);
  struct db_config *found = NULL;
  for (size_t i = 0; i < c->n_dbs && !found; i++)
    if (!strcmp(c->dbs[i].path, abs))
      found = &c->dbs[i];
  free(abs);
  return found;
}

/* A canonical text of everything that configures one database and its
 * replicas (secrets included: never log it).  Two configs with the same
 * fingerprint replicate the same way, so a reload keeps that database
 * running untouched. */
char *config_db_fingerprint(const struct db_config *d) {
  struct buf b;
  buf_init(&b, 0);
#define S(x) ((x) ? (x) : "\x01")
  buf_appendf(&b, "%s|%s|%lld|%lld|%lld|%lld|%zu\n", S(d->path),
              S(d->meta_path), (long long)d->monitor_interval,
              (long long)d->checkpoint_interval,
              (long long)d->min_checkpoint_page_count,
              (long long)d->max_checkpoint_page_count, d->n_replicas);
  for (size_t i = 0; i < d->n_replicas; i++) {
    /* (Each as the database's own: shared with its entry or not.) */
    struct replica_config own;
    config_db_replica(d, i, &own);
    const struct replica_config *r = &own;
    buf_appendf(&b,
                "%s|%s|%s|%lld|%lld|%lld|%lld|%lld|%s|%s|%s|%s|%d|%d|%s|%s|"
                "%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%lld",
                S(r->type), S(r->name), S(r->url), (long long)r->retention,
                (long long)r->retention_check_interval,
                (long long)r->sync_interval, (long long)r->snapshot_interval,
                (long long)r->validation_interval, S(r->path), S(r->bucket),
                S(r->region), S(r->endpoint), (int)r->force_path_style,
                r->skip_verify, S(r->access_key_id), S(r->secret_access_key),
                S(r->sse), S(r->sse_kms_key_id), S(r->sse_c_key),
                S(r->storage_class), S(r->account_name), S(r->account_key),
                S(r->sas_token), S(r->host), S(r->user), S(r->password),
                S(r->key_path), S(r->host_key_path),
                (long long)r->snapshot_wal_factor);
    for (size_t j = 0; j < r->n_age_identities; j++)
      buf_appendf(&b, "|i:%s", r->age_identities[j]);
    for (size_t j = 0; j < r->n_age_recipients; j++)
      buf_appendf(&b, "|r:%s", r->age_recipients[j]);
    buf_append(&b, "\n", 1);
    config_replica_destroy(&own);
  }
#undef S
  return (char *)buf_steal(&b, NULL);
}
