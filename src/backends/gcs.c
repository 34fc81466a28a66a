/*
 * Google Cloud Storage backend (gcs://, gs://), JSON API on the curl-multi
 * HTTP layer.
 *
 *   put   uploadType=media (one POST) up to GCS_SIMPLE_MAX bytes; above, a
 *         resumable upload: POST ?uploadType=resumable gives a session URI
 *         (Location), then PUTs of GCS_CHUNK bytes (a multiple of 256 KiB)
 *         with "Content-Range: bytes a-b/total"; 308 answers say how much
 *         is persisted ("Range: bytes=0-n") and the next chunk starts
 *         there.  The storage emulator of firebase-tools finalises an
 *         upload on its first PUT whatever Content-Range says, so against
 *         STORAGE_EMULATOR_HOST the data goes in one PUT.
 *   get   GET .../o/NAME?alt=media with Range.
 *   list  GET .../o?prefix=&delimiter=/&pageToken= (items[].name, size,
 *         timeCreated; prefixes[]; nextPageToken).
 *   del   DELETE .../o/NAME, one per object; 404 is success.
 *
 * Credentials and access tokens are gcs_auth.c's; STORAGE_EMULATOR_HOST
 * set: that host, no authorization at all.  A 401 drops the token and
 * retries the request once.
 * Tokens and keys are never logged.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/gcs.h"
#include "backends/common.h"
#include "backends/gcs_auth.h"
#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "loop/loop.h"

#define GCS_SIMPLE_MAX (8LL << 20)
#define GCS_CHUNK (8LL << 20) /* a multiple of 256 KiB */
#define GCS_ERRBODY_MAX (64 << 10)
#define GCS_LISTBODY_MAX (64 << 20)
#define GCS_DELETES_INFLIGHT 8
#define GCS_MAX_STALLS 3
#define GCS_DEFAULT_BASE "https://storage.googleapis.com"

struct gcs;

/* One HTTP exchange with the service; embedded in every operation. */
struct gcall {
  struct http_request req;
  struct gcs *g;
  struct buf body;           /* response body (JSON, or error text) */
  struct gcs_auth_wait wait; /* while waiting for a token */
  int auth_retried;          /* a 401 was retried once with a new token */
  const char *auth_err;      /* why no token came, during the done callback */
  int token_gen;             /* which token prepare put on the request */
};

struct gcs {
  struct backend *b;
  char *base; /* scheme://host[:port], no trailing '/' */
  char *bucket;
  char *root; /* object-name prefix: "" or "path/" */
  int skip_verify;
  int emulator; /* STORAGE_EMULATOR_HOST: single-PUT resumable uploads */
  struct gcs_auth auth;
};

/* --- access tokens --- */

/* Completes a call that never went out because no token came (the token
 * error can be longer than req.errmsg holds). */
static void gcall_fail_waiting(struct gcall *c, int code, const char *msg) {
  c->req.error = code;
  c->req.status = 0;
  snprintf(c->req.errmsg, sizeof(c->req.errmsg), "%s", msg);
  c->auth_err = msg;
  c->req.done(&c->req, c->req.arg);
}

/* Submits a call now, or after the next access token arrives. */
static void on_token_ready(struct gcs_auth_wait *w, int rc, const char *msg) {
  struct gcall *c = container_of(w, struct gcall, wait);
  if (rc)
    gcall_fail_waiting(c, rc, msg);
  else
    http_submit(&c->req);
}

static void gcall_submit(struct gcall *c) {
  if (gcs_auth_ready(&c->g->auth)) {
    http_submit(&c->req);
    return;
  }
  c->wait.ready = on_token_ready;
  gcs_auth_wait(&c->g->auth, &c->wait);
}

/* After a 401, fetches a new token (unless one newer than the rejected one
 * exists) and sends the call again, once.  Returns 1 if it did. */
static int gcall_retry_auth(struct gcall *c) {
  if (c->req.error || c->req.status != 401 || c->auth_retried ||
      !gcs_auth_reject(&c->g->auth, c->token_gen))
    return 0;
  c->auth_retried = 1;
  log_debug(NULL, c->g->b->name,
            "gcs: access token rejected (401), "
            "fetching a new one");
  buf_reset(&c->body);
  gcall_submit(c);
  return 1;
}

/* --- requests --- */

static int on_prepare(struct http_request *req, void *arg) {
  struct gcall *c = container_of(req, struct gcall, req);
  struct gcs_auth *a = &c->g->auth;
  (void)arg;
  if (a->mode == GCS_AUTH_NONE)
    return 0;
  http_request_del_header(req, "Authorization");
  if (!a->token) {
    snprintf(req->errmsg, sizeof(req->errmsg), "no access token");
    return ERR_AUTH;
  }
  http_request_add_header(req, "Authorization: Bearer %s", a->token);
  c->token_gen = a->gen;
  return 0;
}

/* Sets up c->req for METHOD on url (owned by the request afterwards). */
static void gcall_init(struct gcall *c, struct gcs *g, const char *method,
                       char *url, http_done_cb done, void *arg) {
  memset(c, 0, sizeof(*c));
  c->g = g;
  buf_init(&c->body, GCS_ERRBODY_MAX);
  http_request_init(&c->req);
  c->req.url = url;
  c->req.method = method;
  c->req.pool = &g->b->pool;
  c->req.skip_verify = g->skip_verify;
  c->req.resp_body = &c->body;
  c->req.prepare = on_prepare;
  c->req.done = done;
  c->req.arg = arg;
}

static void gcall_destroy(struct gcall *c) {
  http_request_free(&c->req);
  buf_destroy(&c->body);
}

static char *object_url(struct gcs *g, const char *name, const char *query) {
  char *enc = http_urlencode(name, 0);
  char *u = xasprintf("%s/storage/v1/b/%s/o/%s%s%s", g->base, g->bucket, enc,
                      query ? "?" : "", query ? query : "");
  free(enc);
  return u;
}

static void set_body(struct gcall *c, const struct payload *p, int64_t off,
                     int64_t len) {
  c->req.body_len = (size_t)len;
  if (p->data) {
    c->req.body = p->data + off;
  } else {
    c->req.body_fd = p->fd;
    c->req.body_off = p->off + off;
  }
}

/* Turns a finished exchange into a status and, on failure, a one-line
 * message "gcs OP bucket/object: ...".  JSON API errors look like
 * {"error": {"code": 403, "message": "...", "errors": [{"reason": ...}]}}. */
static int gcall_result(struct gcall *c, const char *op, const char *obj,
                        char *msg, size_t msglen) {
  struct http_request *r = &c->req;
  struct gcs *g = c->g;
  if (r->error) {
    if (c->auth_err)
      snprintf(msg, msglen, "gcs %s %s/%s: %s", op, g->bucket, obj,
               c->auth_err);
    else if (r->error == ERR_AUTH || r->attempts == 0)
      snprintf(msg, msglen, "gcs %s %s/%s: %s", op, g->bucket, obj, r->errmsg);
    else
      snprintf(msg, msglen, "gcs %s %s/%s: %s (after %d attempt%s)", op,
               g->bucket, obj, r->errmsg, r->attempts,
               r->attempts == 1 ? "" : "s");
    return r->error;
  }
  if (r->status >= 200 && r->status < 300)
    return 0;
  char reason[64] = "", text[256] = "";
  json_t *j = json_loadb((const char *)c->body.data, c->body.len, 0, NULL);
  json_t *e = json_object_get(j, "error");
  const char *m = json_string_value(json_object_get(e, "message"));
  json_t *errs = json_object_get(e, "errors");
  const char *rs =
      json_string_value(json_object_get(json_array_get(errs, 0), "reason"));
  if (rs)
    snprintf(reason, sizeof(reason), "%s", rs);
  if (m)
    snprintf(text, sizeof(text), "%.*s", (int)strcspn(m, "\r\n"), m);
  else if (!j && c->body.len)
    snprintf(text, sizeof(text), "%.*s",
             (int)strcspn((const char *)c->body.data, "\r\n"),
             (const char *)c->body.data);
  json_decref(j);
  const char *hint = "";
  if (r->status == 401)
    hint = " (access token rejected)";
  snprintf(msg, msglen, "gcs %s %s/%s: HTTP %d%s%s%s%s%s", op, g->bucket, obj,
           r->status, reason[0] ? " " : "", reason, text[0] ? ": " : "", text,
           hint);
  if (r->status == 401 || r->status == 403)
    return ERR_AUTH;
  if (r->status == 404)
    return strstr(text, "bucket") ? ERR_HTTP_STATUS : ERR_NOT_FOUND;
  return ERR_HTTP_STATUS;
}

static char *object_name(struct gcs *g, const char *key) {
  return xasprintf("%s%s", g->root, key);
}

/* --- put --- */

enum put_stage { PUT_SIMPLE, PUT_START, PUT_CHUNK };

struct put_op {
  struct gcall call;
  struct gcs *g;
  char *name;
  struct payload p;
  enum put_stage stage;
  char *session; /* resumable session URI */
  int64_t sent;  /* bytes the server has persisted */
  int stalls;
  backend_cb cb;
  void *arg;
  char msg[512];
};

static void put_finish(struct put_op *op, int rc) {
  op->cb(op->arg, rc, rc ? op->msg : NULL);
  free(op->session);
  free(op->name);
  free(op);
}

static void on_put_done(struct http_request *req, void *arg);

static void put_chunk(struct put_op *op) {
  gcall_init(&op->call, op->g, "PUT", xstrdup(op->session), on_put_done, op);
  int64_t len = op->p.len - op->sent;
  if (!op->g->emulator) {
    len = MIN(len, GCS_CHUNK);
    http_request_add_header(
        &op->call.req, "Content-Range: bytes %" PRId64 "-%" PRId64 "/%" PRId64,
        op->sent, op->sent + len - 1, op->p.len);
  }
  set_body(&op->call, &op->p, op->sent, len);
  op->stage = PUT_CHUNK;
  gcall_submit(&op->call);
}

/* A 308 during a resumable upload: "Range: bytes=0-N" is what the server
 * holds (no Range: nothing yet). */
static int put_resume_point(struct put_op *op) {
  const char *range = http_response_header(&op->call.req, "range");
  int64_t next = 0;
  if (range) {
    const char *dash = strchr(range, '-');
    if (!dash)
      return ERR_PROTOCOL;
    next = strtoll(dash + 1, NULL, 10) + 1;
  }
  if (next < 0 || next > op->p.len)
    return ERR_PROTOCOL;
  op->stalls = next > op->sent ? 0 : op->stalls + 1;
  op->sent = next;
  return 0;
}

static void on_put_done(struct http_request *req, void *arg) {
  struct put_op *op = arg;
  struct gcall *c = &op->call;
  if (gcall_retry_auth(c))
    return;
  int rc = 0;
  if (op->stage == PUT_CHUNK && !req->error && req->status == 308) {
    rc = put_resume_point(op);
    if (rc)
      snprintf(op->msg, sizeof(op->msg),
               "gcs put %s/%s: bad Range in a resumable upload answer",
               op->g->bucket, op->name);
    else if (op->stalls >= GCS_MAX_STALLS) {
      rc = ERR_PROTOCOL;
      snprintf(op->msg, sizeof(op->msg),
               "gcs put %s/%s: resumable upload makes no progress at byte "
               "%" PRId64,
               op->g->bucket, op->name, op->sent);
    }
    gcall_destroy(c);
    if (rc)
      put_finish(op, rc);
    else
      put_chunk(op);
    return;
  }
  rc = gcall_result(c, op->stage == PUT_CHUNK ? "put (resumable)" : "put",
                    op->name, op->msg, sizeof(op->msg));
  if (!rc && op->stage == PUT_START) {
    const char *loc = http_response_header(req, "location");
    if (!loc || !*loc) {
      snprintf(op->msg, sizeof(op->msg),
               "gcs put %s/%s: no session URI in the resumable upload answer",
               op->g->bucket, op->name);
      rc = ERR_PROTOCOL;
    } else {
      op->session = xstrdup(loc);
      gcall_destroy(c);
      put_chunk(op);
      return;
    }
  }
  gcall_destroy(c);
  put_finish(op, rc);
}

static void gcs_put(struct backend *b, const char *key, const struct payload *p,
                    backend_cb cb, void *arg) {
  struct gcs *g = b->priv;
  struct put_op *op = xcalloc(1, sizeof(*op));
  op->g = g;
  op->name = object_name(g, key);
  op->p = *p;
  op->cb = cb;
  op->arg = arg;
  char *enc = http_urlencode(op->name, 0);
  int simple = p->len <= GCS_SIMPLE_MAX;
  char *url =
      xasprintf("%s/upload/storage/v1/b/%s/o?uploadType=%s&name=%s", g->base,
                g->bucket, simple ? "media" : "resumable", enc);
  free(enc);
  gcall_init(&op->call, g, "POST", url, on_put_done, op);
  if (simple) {
    op->stage = PUT_SIMPLE;
    http_request_add_header(&op->call.req,
                            "Content-Type: application/octet-stream");
    set_body(&op->call, p, 0, p->len);
  } else {
    op->stage = PUT_START;
    http_request_add_header(&op->call.req,
                            "X-Upload-Content-Type: application/octet-stream");
    http_request_add_header(&op->call.req, "X-Upload-Content-Length: %" PRId64,
                            p->len);
  }
  gcall_submit(&op->call);
}

/* --- get --- */

struct get_op {
  struct gcall call;
  char *tag; /* get_tag: the generation, BACKEND_TAG_MAX bytes */
  char *name;
  struct sink sink;
  struct buf data; /* memory sink: the body lands here, then is appended */
  backend_cb cb;
  void *arg;
  char msg[512];
};

static void on_get_done(struct http_request *req, void *arg) {
  struct get_op *op = arg;
  struct gcall *c = &op->call;
  if (op->sink.buf && !req->error && req->status / 100 != 2) {
    /* The error body went to the data buffer. */
    buf_reset(&c->body);
    buf_append(&c->body, op->data.data, MIN(op->data.len, 4096));
    buf_reset(&op->data);
  }
  if (gcall_retry_auth(c))
    return;
  int rc = gcall_result(c, "get", op->name, op->msg, sizeof(op->msg));
  if (!rc && op->sink.buf && op->data.len &&
      buf_append(op->sink.buf, op->data.data, op->data.len)) {
    snprintf(op->msg, sizeof(op->msg), "gcs get %s/%s: larger than %zu bytes",
             c->g->bucket, op->name, op->sink.buf->max);
    rc = ERR_TOO_BIG;
  }
  if (!rc && op->tag) {
    const char *gen = http_response_header(req, "x-goog-generation");
    snprintf(op->tag, BACKEND_TAG_MAX, "%s", gen ? gen : "");
    if (!gen || !*gen) {
      snprintf(op->msg, sizeof(op->msg),
               "gcs get %s/%s: no x-goog-generation in the answer",
               c->g->bucket, op->name);
      rc = ERR_PROTOCOL;
    }
  }
  gcall_destroy(c);
  buf_destroy(&op->data);
  op->cb(op->arg, rc, rc ? op->msg : NULL);
  free(op->name);
  free(op);
}

/* --- conditional writes (the lease) --- */

static void gcs_get_tag(struct backend *b, const char *key, struct buf *out,
                        char *tag, backend_cb cb, void *arg) {
  struct gcs *g = b->priv;
  struct get_op *op = xcalloc(1, sizeof(*op));
  op->name = object_name(g, key);
  op->sink.buf = out;
  op->sink.fd = -1;
  op->tag = tag;
  op->cb = cb;
  op->arg = arg;
  buf_init(&op->data, out->max);
  gcall_init(&op->call, g, "GET", object_url(g, op->name, "alt=media"),
             on_get_done, op);
  op->call.req.resp_body = &op->data;
  gcall_submit(&op->call);
}

struct cond_op {
  struct gcall call;
  char *name;
  char *tag_out;
  backend_cb cb;
  void *arg;
  char msg[512];
};

static void on_cond_done(struct http_request *req, void *arg) {
  struct cond_op *op = arg;
  struct gcall *c = &op->call;
  if (gcall_retry_auth(c))
    return;
  int rc = gcall_result(c, "put", op->name, op->msg, sizeof(op->msg));
  /* 412 conditionNotMet: the generation is not the one asked for (0: the
   * object exists). */
  if (rc && !req->error && req->status == 412)
    rc = ERR_PRECONDITION;
  if (!rc) {
    /* The object resource: {"generation": "1700000000000000", ...}. */
    json_t *j = json_loadb((const char *)c->body.data, c->body.len, 0, NULL);
    const char *gen = json_string_value(json_object_get(j, "generation"));
    snprintf(op->tag_out, BACKEND_TAG_MAX, "%s", gen ? gen : "");
    if (!gen || !*gen) {
      snprintf(op->msg, sizeof(op->msg),
               "gcs put %s/%s: no generation in the answer", c->g->bucket,
               op->name);
      rc = ERR_PROTOCOL;
    }
    json_decref(j);
  }
  gcall_destroy(c);
  op->cb(op->arg, rc, rc ? op->msg : NULL);
  free(op->name);
  free(op);
}

/* A simple upload with ifGenerationMatch=0 (create only) or =N. */
static void gcs_put_cond(struct backend *b, const char *key,
                         const uint8_t *data, size_t len, const char *match,
                         char *tag_out, backend_cb cb, void *arg) {
  struct gcs *g = b->priv;
  struct cond_op *op = xcalloc(1, sizeof(*op));
  op->name = object_name(g, key);
  op->tag_out = tag_out;
  op->cb = cb;
  op->arg = arg;
  char *enc = http_urlencode(op->name, 0);
  char *m = http_urlencode(match ? match : "0", 0);
  char *url = xasprintf("%s/upload/storage/v1/b/%s/"
                        "o?uploadType=media&name=%s&ifGenerationMatch=%s",
                        g->base, g->bucket, enc, m);
  free(m);
  free(enc);
  gcall_init(&op->call, g, "POST", url, on_cond_done, op);
  http_request_add_header(&op->call.req,
                          "Content-Type: application/octet-stream");
  struct payload p = {.data = data, .fd = -1, .len = (int64_t)len};
  set_body(&op->call, &p, 0, (int64_t)len);
  gcall_submit(&op->call);
}

static void gcs_get(struct backend *b, const char *key, int64_t off,
                    int64_t len, const struct sink *s, backend_cb cb,
                    void *arg) {
  struct gcs *g = b->priv;
  struct get_op *op = xcalloc(1, sizeof(*op));
  op->name = object_name(g, key);
  op->sink = *s;
  op->cb = cb;
  op->arg = arg;
  buf_init(&op->data, s->buf ? s->buf->max : 0);
  /* len == 0 only checks that the object exists (metadata GET). */
  gcall_init(&op->call, g, "GET",
             object_url(g, op->name, len == 0 ? NULL : "alt=media"),
             on_get_done, op);
  if (len > 0)
    http_request_add_header(&op->call.req, "Range: bytes=%" PRId64 "-%" PRId64,
                            off, off + len - 1);
  else if (off > 0 && len < 0)
    http_request_add_header(&op->call.req, "Range: bytes=%" PRId64 "-", off);
  if (len == 0) {
    /* Keep the metadata JSON out of the caller's sink. */
  } else if (s->buf) {
    op->call.req.resp_body = &op->data;
  } else {
    op->call.req.resp_fd = s->fd;
    op->call.req.resp_off = s->off;
  }
  gcall_submit(&op->call);
}

/* --- list --- */

struct list_op {
  struct gcall call;
  struct gcs *g;
  char *prefix; /* full object-name prefix */
  int delimiter;
  char *token;
  struct obj_list *out;
  backend_cb cb;
  void *arg;
  int pages;
  struct list_pages guard;
  char msg[512];
};

static void list_page(struct list_op *op);

static int list_items(json_t *j, const char *root, struct obj_list *out,
                      char **token) {
  size_t rl = strlen(root);
  if (!json_is_object(j))
    return ERR_PROTOCOL;
  json_t *items = json_object_get(j, "items"), *it;
  size_t i;
  json_array_foreach(items, i, it) {
    const char *name = json_string_value(json_object_get(it, "name"));
    json_t *sz = json_object_get(it, "size");
    const char *tc = json_string_value(json_object_get(it, "timeCreated"));
    if (!name)
      return ERR_PROTOCOL;
    if (strncmp(name, root, rl))
      continue;
    int64_t size = json_is_string(sz)    ? atoll(json_string_value(sz))
                   : json_is_integer(sz) ? (int64_t)json_integer_value(sz)
                                         : -1;
    if (size < 0)
      return ERR_PROTOCOL;
    int64_t mtime = 0;
    if (!tc || time_parse_rfc3339(tc, &mtime) == -EINVAL)
      mtime = 0;
    obj_list_add(out, name + rl, size, mtime);
  }
  json_t *prefixes = json_object_get(j, "prefixes");
  json_array_foreach(prefixes, i, it) {
    const char *p = json_string_value(it);
    if (p && !strncmp(p, root, rl))
      obj_list_add_prefix(out, p + rl);
  }
  const char *next = json_string_value(json_object_get(j, "nextPageToken"));
  free(*token);
  *token = next && *next ? xstrdup(next) : NULL;
  return 0;
}

int gcs_listing_parse(const char *body, size_t len, const char *root,
                      struct obj_list *out, char **token, char *why,
                      size_t whylen) {
  json_error_t je;
  why[0] = '\0';
  json_t *j = json_loadb(body, len, 0, &je);
  if (!j) {
    snprintf(why, whylen, "%s", je.text);
    return ERR_PROTOCOL;
  }
  int rc = list_items(j, root, out, token);
  json_decref(j);
  if (rc)
    snprintf(why, whylen, "unexpected JSON");
  return rc;
}

static void on_list_done(struct http_request *req, void *arg) {
  struct list_op *op = arg;
  (void)req;
  if (gcall_retry_auth(&op->call))
    return;
  int rc =
      gcall_result(&op->call, "list", op->prefix, op->msg, sizeof(op->msg));
  if (rc == ERR_NOT_FOUND)
    rc = ERR_HTTP_STATUS; /* the bucket itself is missing */
  if (!rc) {
    char why[256] = ": ";
    rc = gcs_listing_parse((const char *)op->call.body.data, op->call.body.len,
                           op->g->root, op->out, &op->token, why + 2,
                           sizeof(why) - 2);
    if (!rc)
      rc = list_pages_next(&op->guard, op->token, why + 2, sizeof(why) - 2);
    if (rc)
      snprintf(op->msg, sizeof(op->msg),
               "gcs list %s/%s: malformed listing (page %d)%s", op->g->bucket,
               op->prefix, op->pages + 1, why);
  }
  gcall_destroy(&op->call);
  op->pages++;
  if (!rc && op->token) {
    list_page(op);
    return;
  }
  if (!rc)
    obj_list_sort(op->out);
  op->cb(op->arg, rc, rc ? op->msg : NULL);
  list_pages_destroy(&op->guard);
  free(op->prefix);
  free(op->token);
  free(op);
}

static void list_page(struct list_op *op) {
  struct buf u;
  buf_init(&u, 0);
  char *p = http_urlencode(op->prefix, 0);
  buf_appendf(&u, "%s/storage/v1/b/%s/o?prefix=%s", op->g->base, op->g->bucket,
              p);
  free(p);
  if (op->delimiter)
    buf_appendf(&u, "&delimiter=%%2F");
  if (op->token) {
    char *t = http_urlencode(op->token, 0);
    buf_appendf(&u, "&pageToken=%s", t);
    free(t);
  }
  buf_append(&u, "", 1);
  size_t len;
  gcall_init(&op->call, op->g, "GET", (char *)buf_steal(&u, &len), on_list_done,
             op);
  op->call.body.max = GCS_LISTBODY_MAX;
  gcall_submit(&op->call);
}

static void gcs_list(struct backend *b, const char *prefix, int delimiter,
                     struct obj_list *out, backend_cb cb, void *arg) {
  struct gcs *g = b->priv;
  struct list_op *op = xcalloc(1, sizeof(*op));
  op->g = g;
  op->prefix = object_name(g, prefix ? prefix : "");
  op->delimiter = delimiter;
  op->out = out;
  op->cb = cb;
  op->arg = arg;
  list_page(op);
}

/* --- delete --- */

struct del_one {
  struct gcall call;
  struct del_fanout *f;
  char *name;
};

static void on_del_done(struct http_request *req, void *arg) {
  struct del_one *d = arg;
  (void)req;
  if (gcall_retry_auth(&d->call))
    return;
  char msg[512];
  int rc = gcall_result(&d->call, "delete", d->name, msg, sizeof(msg));
  if (rc == ERR_NOT_FOUND)
    rc = 0;
  struct del_fanout *f = d->f;
  gcall_destroy(&d->call);
  free(d->name);
  free(d);
  del_fanout_done(f, rc, msg);
}

static void del_start(struct del_fanout *f, void *ctx, const char *key) {
  struct gcs *g = ctx;
  struct del_one *d = xcalloc(1, sizeof(*d));
  d->f = f;
  d->name = object_name(g, key);
  gcall_init(&d->call, g, "DELETE", object_url(g, d->name, NULL), on_del_done,
             d);
  gcall_submit(&d->call);
}

static void gcs_del(struct backend *b, char *const *keys, size_t n,
                    backend_cb cb, void *arg) {
  del_fanout(keys, n, GCS_DELETES_INFLIGHT, del_start, b->priv, cb, arg);
}

/* --- open / close --- */

static const char *env_nonempty(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

static char *with_scheme(const char *host) {
  char *s = strstr(host, "://") ? xstrdup(host) : xasprintf("http://%s", host);
  size_t n = strlen(s);
  while (n && s[n - 1] == '/')
    s[--n] = '\0';
  return s;
}

static void gcs_free_priv(struct gcs *g) {
  gcs_auth_destroy(&g->auth);
  free(g->base);
  free(g->bucket);
  free(g->root);
}

static int gcs_open(struct backend *b, const struct replica_config *cfg,
                    char *err, size_t errlen) {
  struct gcs *g = b->priv;
  const char *name = cfg->name ? cfg->name : "gcs";
  g->b = b;
  if (!cfg->bucket || !*cfg->bucket) {
    snprintf(err, errlen, "replica %s: bucket required for gcs replica", name);
    return ERR_CONFIG;
  }
  const char *emu = env_nonempty("STORAGE_EMULATOR_HOST");
  if (emu) {
    g->base = with_scheme(emu);
    g->emulator = 1;
    g->auth.mode = GCS_AUTH_NONE;
  } else {
    const char *ep = cfg->endpoint && *cfg->endpoint ? cfg->endpoint : NULL;
    g->base =
        ep ? (strstr(ep, "://") ? with_scheme(ep) : xasprintf("https://%s", ep))
           : xstrdup(GCS_DEFAULT_BASE);
    size_t n = strlen(g->base);
    while (n && g->base[n - 1] == '/')
      g->base[--n] = '\0';
    int rc = gcs_auth_init(&g->auth, name, err, errlen);
    if (rc) {
      gcs_free_priv(g);
      return rc;
    }
  }
  g->bucket = xstrdup(cfg->bucket);
  const char *p = cfg->path ? cfg->path : "";
  while (*p == '/')
    p++;
  size_t pl = strlen(p);
  while (pl && p[pl - 1] == '/')
    pl--;
  if (pl == 1 && p[0] == '.')
    pl = 0;
  g->root = pl ? xasprintf("%.*s/", (int)pl, p) : xstrdup("");
  g->skip_verify = cfg->skip_verify;
  g->auth.pool = &b->pool;
  g->auth.skip_verify = g->skip_verify;
  g->auth.log_name = b->name;
  b->desc = xasprintf("gcs://%s/%.*s", g->bucket, (int)pl, p);
  log_debug(NULL, b->name, "gcs %s bucket %s, credentials: %s", g->base,
            g->bucket, g->auth.source ? g->auth.source : "none (emulator)");
  return 0;
}

static void gcs_close(struct backend *b) {
  struct gcs *g = b->priv;
  /* A token fetch only runs while some call waits for it, and close comes
   * with no operation in flight. */
  if (g->auth.fetching)
    log_error(NULL, b->name, "gcs: closed while fetching a token");
  gcs_free_priv(g);
}

const struct backend_ops backend_gcs = {
    .name = "gcs",
    .caps = BACKEND_CAP_RANGE | BACKEND_CAP_MULTIPART | BACKEND_CAP_COND,
    .priv_size = sizeof(struct gcs),
    .open = gcs_open,
    .close = gcs_close,
    .put = gcs_put,
    .get = gcs_get,
    .list = gcs_list,
    .del = gcs_del,
    .get_tag = gcs_get_tag,
    .put_cond = gcs_put_cond,
};
