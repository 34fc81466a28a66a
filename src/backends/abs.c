/*
 * Azure Blob Storage backend (abs://), on the curl-multi HTTP layer.
 *
 * Blob service REST API, x-ms-version SHAREDKEY_VERSION:
 *   put   Put Blob (PUT .../blob, x-ms-blob-type: BlockBlob) up to
 *         ABS_PUT_BLOB_MAX bytes; above, Put Block (?comp=block&blockid=)
 *         with up to ABS_BLOCKS_INFLIGHT blocks in flight, then Put Block
 *         List (?comp=blocklist).  Block ids are base64 of "blk-%08d", so
 *         every id of a blob has the same length, as Azure requires.
 *   get   Get Blob with x-ms-range.
 *   list  List Blobs (?restype=container&comp=list&prefix=&delimiter=
 *         &marker=), following NextMarker; mtime from Creation-Time, size
 *         from Content-Length.
 *   del   Delete Blob, one request per blob; BlobNotFound is success.
 *
 * Authorization: Shared Key (sharedkey.c), signed again before every
 * attempt with a fresh x-ms-date, or a SAS token appended to the query.
 * Endpoint: https://<account>.blob.core.windows.net by default, or the
 * configured one; a path-style endpoint (Azurite:
 * http://127.0.0.1:10000/devstoreaccount1) carries the account in its path.
 *
 * Errors: one line naming the operation, container, blob, HTTP status and
 * the Azure error code and message from the XML body (or the
 * x-ms-error-code header when there is no body, as for HEAD).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backends/backend.h"
#include "backends/common.h"
#include "backends/base64.h"
#include "backends/sharedkey.h"
#include "backends/xml.h"
#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "loop/loop.h"

#define ABS_PUT_BLOB_MAX (8LL << 20)
#define ABS_BLOCK_SIZE (4LL << 20)
#define ABS_BLOCK_SIZE_MAX (4000LL << 20)
#define ABS_MAX_BLOCKS 50000
#define ABS_BLOCKS_INFLIGHT 4
#define ABS_DELETES_INFLIGHT 8
#define ABS_ERRBODY_MAX (64 << 10)
#define ABS_LISTBODY_MAX (64 << 20)

/* Azurite's published development account (UseDevelopmentStorage=true). */
#define DEV_ACCOUNT "devstoreaccount1"
#define DEV_KEY                                                                \
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOt"   \
  "r/KBHBeksoGMGw=="
#define DEV_ENDPOINT "http://127.0.0.1:10000/" DEV_ACCOUNT

struct abs {
  struct backend *b;
  char *account;
  uint8_t *key; /* decoded account key, or NULL when using a SAS */
  size_t keylen;
  char *sas;      /* SAS query string without '?', or NULL */
  char *endpoint; /* without trailing '/' */
  char *container;
  char *root; /* blob-name prefix: "" or "path/" */
  int skip_verify;
};

/* One HTTP exchange with the service; embedded in every operation. */
struct call {
  struct http_request req;
  struct abs *az;
  struct buf body;        /* response body (listing, or error text) */
  int64_t content_length; /* request body length, for signing */
};

/* --- requests --- */

static int on_prepare(struct http_request *req, void *arg) {
  struct call *c = container_of(req, struct call, req);
  (void)arg;
  struct abs *az = c->az;
  char date[32];
  http_request_del_header(req, "x-ms-date");
  http_request_del_header(req, "Authorization");
  sharedkey_format_date(time_now_ns(), date);
  http_request_add_header(req, "x-ms-date: %s", date);
  if (!az->key)
    return 0;
  char *auth = sharedkey_authorization(req->method, req->url, az->account,
                                       az->key, az->keylen, req->headers,
                                       req->n_headers, c->content_length);
  if (!auth) {
    snprintf(req->errmsg, sizeof(req->errmsg), "cannot sign request");
    return ERR_AUTH;
  }
  http_request_add_header(req, "Authorization: %s", auth);
  free(auth);
  return 0;
}

/* Sets up c->req for METHOD on a blob (or the container when blob is
 * NULL) with an optional query (without '?').  The caller adds headers and
 * a body, then submits. */
static void call_init(struct call *c, struct abs *az, const char *method,
                      const char *blob, const char *query, http_done_cb done,
                      void *arg) {
  c->az = az;
  buf_init(&c->body, ABS_ERRBODY_MAX);
  http_request_init(&c->req);
  struct buf u;
  buf_init(&u, 0);
  buf_appendf(&u, "%s/%s", az->endpoint, az->container);
  if (blob) {
    char *enc = http_urlencode(blob, 1);
    buf_appendf(&u, "/%s", enc);
    free(enc);
  }
  char sep = '?';
  if (query && *query) {
    buf_appendf(&u, "?%s", query);
    sep = '&';
  }
  if (az->sas)
    buf_appendf(&u, "%c%s", sep, az->sas);
  buf_append(&u, "", 1);
  size_t len;
  c->req.url = (char *)buf_steal(&u, &len);
  c->req.method = method;
  c->req.pool = &az->b->pool;
  c->req.skip_verify = az->skip_verify;
  c->req.resp_body = &c->body;
  c->req.prepare = on_prepare;
  c->req.done = done;
  c->req.arg = arg;
  http_request_add_header(&c->req, "x-ms-version: %s", SHAREDKEY_VERSION);
}

static void call_destroy(struct call *c) {
  http_request_free(&c->req);
  buf_destroy(&c->body);
}

static void set_body(struct call *c, const struct payload *p, int64_t off,
                     int64_t len) {
  c->content_length = len;
  c->req.body_len = (size_t)len;
  if (p->data) {
    c->req.body = p->data + off;
  } else {
    c->req.body_fd = p->fd;
    c->req.body_off = p->off + off;
  }
}

/* The first line of s, at most max bytes, into out. */
static void first_line(const char *s, char *out, size_t max) {
  size_t n = strcspn(s, "\r\n");
  if (n >= max)
    n = max - 1;
  memcpy(out, s, n);
  out[n] = '\0';
}

/* Turns a finished exchange into a status and, on failure, a one-line
 * message "abs OP container/blob: ...".  Writes *code (the Azure error
 * code, "" if none) when code is set. */
static int call_result(struct call *c, const char *op, const char *blob,
                       char *msg, size_t msglen, char *code, size_t codelen) {
  struct http_request *r = &c->req;
  struct abs *az = c->az;
  if (code)
    code[0] = '\0';
  if (r->error) {
    snprintf(msg, msglen, "abs %s %s/%s: %s (after %d attempt%s)", op,
             az->container, blob ? blob : "", r->errmsg, r->attempts,
             r->attempts == 1 ? "" : "s");
    return r->error == ERR_CANCELED ? ERR_CANCELED : ERR_HTTP;
  }
  if (r->status >= 200 && r->status < 300)
    return 0;
  char ecode[128] = "", emsg[256] = "";
  struct xml_node *x =
      c->body.len ? xml_parse((const char *)c->body.data, c->body.len) : NULL;
  const char *t;
  if (x && (t = xml_text(x, "Error/Code")))
    snprintf(ecode, sizeof(ecode), "%s", t);
  if (x && (t = xml_text(x, "Error/Message")))
    first_line(t, emsg, sizeof(emsg));
  xml_free(x);
  if (!ecode[0] && (t = http_response_header(r, "x-ms-error-code")))
    snprintf(ecode, sizeof(ecode), "%s", t);
  if (code)
    snprintf(code, codelen, "%s", ecode);
  const char *hint = "";
  /* Azure says AuthenticationFailed for a bad signature, Azurite
   * AuthorizationFailure. */
  if (!strcmp(ecode, "AuthenticationFailed") ||
      !strcmp(ecode, "AuthorizationFailure"))
    hint = az->key ? " (check the account name and account-key)"
                   : " (check the SAS token)";
  snprintf(msg, msglen, "abs %s %s/%s: HTTP %d%s%s%s%s%s", op, az->container,
           blob ? blob : "", r->status, ecode[0] ? " " : "", ecode,
           emsg[0] ? ": " : "", emsg, hint);
  if (r->status == 401 || r->status == 403)
    return ERR_AUTH;
  if (r->status == 404)
    return ERR_NOT_FOUND;
  return ERR_HTTP_STATUS;
}

static char *blob_name(struct abs *az, const char *key) {
  return xasprintf("%s%s", az->root, key);
}

/* --- put --- */

struct block {
  struct call call;
  struct put_op *op;
  int index;
};

struct put_op {
  struct abs *az;
  char *blob;
  struct payload p;
  backend_cb cb;
  void *arg;
  struct call call; /* Put Blob or Put Block List */
  /* Block upload state. */
  int64_t block_size;
  int n_blocks, next, inflight, done_blocks;
  int status;
  char *blocklist; /* XML body of Put Block List */
  char msg[512];
};

static void put_finish(struct put_op *op, int status) {
  op->cb(op->arg, status, status ? op->msg : NULL);
  free(op->blocklist);
  free(op->blob);
  free(op);
}

static void on_put_done(struct http_request *req, void *arg) {
  struct put_op *op = arg;
  int rc = call_result(&op->call, "put", op->blob, op->msg, sizeof(op->msg),
                       NULL, 0);
  (void)req;
  call_destroy(&op->call);
  put_finish(op, rc);
}

static void block_id(int index, char out[24]) {
  char raw[16];
  snprintf(raw, sizeof(raw), "blk-%08d", index);
  base64_encode((const uint8_t *)raw, strlen(raw), out);
}

static void put_block_list(struct put_op *op) {
  struct buf x;
  buf_init(&x, 0);
  buf_appendf(&x, "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
  for (int i = 0; i < op->n_blocks; i++) {
    char id[24];
    block_id(i, id);
    buf_appendf(&x, "<Latest>%s</Latest>", id);
  }
  buf_appendf(&x, "</BlockList>");
  size_t len = x.len;
  buf_append(&x, "", 1);
  op->blocklist = (char *)buf_steal(&x, &(size_t){0});
  call_init(&op->call, op->az, "PUT", op->blob, "comp=blocklist", on_put_done,
            op);
  http_request_add_header(&op->call.req,
                          "x-ms-blob-content-type: application/octet-stream");
  op->call.req.body = (const uint8_t *)op->blocklist;
  op->call.req.body_len = len;
  op->call.content_length = (int64_t)len;
  http_submit(&op->call.req);
}

static void start_blocks(struct put_op *op);

static void on_block_done(struct http_request *req, void *arg) {
  struct block *bl = arg;
  struct put_op *op = bl->op;
  (void)req;
  op->inflight--;
  char msg[400];
  int rc =
      call_result(&bl->call, "put block", op->blob, msg, sizeof(msg), NULL, 0);
  if (rc && !op->status) {
    op->status = rc;
    snprintf(op->msg, sizeof(op->msg), "%s (block %d of %d)", msg, bl->index,
             op->n_blocks);
  }
  call_destroy(&bl->call);
  free(bl);
  if (!rc)
    op->done_blocks++;
  if (op->status) {
    if (!op->inflight)
      put_finish(op, op->status);
    return;
  }
  if (op->done_blocks == op->n_blocks) {
    put_block_list(op);
    return;
  }
  start_blocks(op);
}

static void start_blocks(struct put_op *op) {
  while (op->inflight < ABS_BLOCKS_INFLIGHT && op->next < op->n_blocks) {
    struct block *bl = xcalloc(1, sizeof(*bl));
    bl->op = op;
    bl->index = op->next++;
    char id[24], query[96];
    block_id(bl->index, id);
    char *enc = http_urlencode(id, 0);
    snprintf(query, sizeof(query), "comp=block&blockid=%s", enc);
    free(enc);
    call_init(&bl->call, op->az, "PUT", op->blob, query, on_block_done, bl);
    int64_t off = (int64_t)bl->index * op->block_size;
    set_body(&bl->call, &op->p, off, MIN(op->block_size, op->p.len - off));
    op->inflight++;
    http_submit(&bl->call.req);
  }
}

static void abs_put(struct backend *b, const char *key, const struct payload *p,
                    backend_cb cb, void *arg) {
  struct abs *az = b->priv;
  struct put_op *op = xcalloc(1, sizeof(*op));
  op->az = az;
  op->blob = blob_name(az, key);
  op->p = *p;
  op->cb = cb;
  op->arg = arg;
  if (p->len <= ABS_PUT_BLOB_MAX) {
    call_init(&op->call, az, "PUT", op->blob, NULL, on_put_done, op);
    http_request_add_header(&op->call.req, "x-ms-blob-type: BlockBlob");
    http_request_add_header(&op->call.req,
                            "Content-Type: application/octet-stream");
    set_body(&op->call, p, 0, p->len);
    http_submit(&op->call.req);
    return;
  }
  /* Blocks of ABS_BLOCK_SIZE, or larger ones (whole MiB) when the blob
   * would need more than Azure's 50,000 blocks. */
  int64_t bs = ABS_BLOCK_SIZE;
  if ((p->len + bs - 1) / bs > ABS_MAX_BLOCKS)
    bs = ((p->len + ABS_MAX_BLOCKS - 1) / ABS_MAX_BLOCKS + (1 << 20) - 1) &
         ~((int64_t)(1 << 20) - 1);
  if (bs > ABS_BLOCK_SIZE_MAX) {
    snprintf(op->msg, sizeof(op->msg),
             "abs put %s/%s: %" PRId64 " bytes is larger than a block blob",
             az->container, op->blob, p->len);
    backend_defer(cb, arg, ERR_TOO_BIG, op->msg);
    free(op->blob);
    free(op);
    return;
  }
  op->block_size = bs;
  op->n_blocks = (int)((p->len + bs - 1) / bs);
  start_blocks(op);
}

/* --- get --- */

struct get_op {
  struct call call;
  char *tag; /* get_tag: the ETag, BACKEND_TAG_MAX bytes */
  char *blob;
  struct sink sink;
  struct buf data; /* memory sink: the body lands here, then is appended */
  backend_cb cb;
  void *arg;
  char msg[512];
};

static void on_get_done(struct http_request *req, void *arg) {
  struct get_op *op = arg;
  char code[64];
  if (op->sink.buf && req->status / 100 != 2) {
    /* The error body went to the data buffer. */
    buf_reset(&op->call.body);
    buf_append(&op->call.body, op->data.data, MIN(op->data.len, 4096));
  }
  int rc = call_result(&op->call, "get", op->blob, op->msg, sizeof(op->msg),
                       code, sizeof(code));
  if (rc == ERR_NOT_FOUND && code[0] && strcmp(code, "BlobNotFound"))
    rc = ERR_HTTP_STATUS; /* e.g. ContainerNotFound: a config problem */
  if (!rc && op->sink.buf && op->data.len &&
      buf_append(op->sink.buf, op->data.data, op->data.len)) {
    snprintf(op->msg, sizeof(op->msg), "abs get %s/%s: larger than %zu bytes",
             op->call.az->container, op->blob, op->sink.buf->max);
    rc = ERR_TOO_BIG;
  }
  if (!rc && op->tag) {
    const char *e = http_response_header(req, "etag");
    snprintf(op->tag, BACKEND_TAG_MAX, "%s", e ? e : "");
  }
  call_destroy(&op->call);
  buf_destroy(&op->data);
  op->cb(op->arg, rc, rc ? op->msg : NULL);
  free(op->blob);
  free(op);
}

/* Memory sinks collect the body in op->data: the HTTP layer empties its
 * response buffer before every attempt, and the caller's buffer may
 * already hold data.  Error bodies of fd sinks go to call.body. */
static void abs_get(struct backend *b, const char *key, int64_t off,
                    int64_t len, const struct sink *s, backend_cb cb,
                    void *arg) {
  struct abs *az = b->priv;
  struct get_op *op = xcalloc(1, sizeof(*op));
  op->blob = blob_name(az, key);
  op->sink = *s;
  op->cb = cb;
  op->arg = arg;
  buf_init(&op->data, s->buf ? s->buf->max : 0);
  call_init(&op->call, az, len == 0 ? "HEAD" : "GET", op->blob, NULL,
            on_get_done, op);
  if (len > 0)
    http_request_add_header(&op->call.req,
                            "x-ms-range: bytes=%" PRId64 "-%" PRId64, off,
                            off + len - 1);
  else if (off > 0 && len < 0)
    http_request_add_header(&op->call.req, "x-ms-range: bytes=%" PRId64 "-",
                            off);
  if (s->buf) {
    op->call.req.resp_body = &op->data;
  } else {
    op->call.req.resp_fd = s->fd;
    op->call.req.resp_off = s->off;
  }
  http_submit(&op->call.req);
}

/* --- conditional writes (the lease) --- */

static void abs_get_tag(struct backend *b, const char *key, struct buf *out,
                        char *tag, backend_cb cb, void *arg) {
  struct abs *az = b->priv;
  struct get_op *op = xcalloc(1, sizeof(*op));
  op->blob = blob_name(az, key);
  op->sink.buf = out;
  op->sink.fd = -1;
  op->tag = tag;
  op->cb = cb;
  op->arg = arg;
  buf_init(&op->data, out->max);
  call_init(&op->call, az, "GET", op->blob, NULL, on_get_done, op);
  op->call.req.resp_body = &op->data;
  http_submit(&op->call.req);
}

struct cond_op {
  struct call call;
  char *blob;
  char *tag_out;
  backend_cb cb;
  void *arg;
  char msg[512];
};

static void on_cond_done(struct http_request *req, void *arg) {
  struct cond_op *op = arg;
  char code[64];
  int rc = call_result(&op->call, "put", op->blob, op->msg, sizeof(op->msg),
                       code, sizeof(code));
  /* 412 ConditionNotMet (If-Match), 409 BlobAlreadyExists (If-None-Match:
   * *), 404 BlobNotFound (If-Match on a blob gone). */
  if (rc && !req->error &&
      (req->status == 412 || req->status == 409 ||
       (req->status == 404 && !strcmp(code, "BlobNotFound"))))
    rc = ERR_PRECONDITION;
  if (!rc) {
    const char *e = http_response_header(req, "etag");
    snprintf(op->tag_out, BACKEND_TAG_MAX, "%s", e ? e : "");
  }
  call_destroy(&op->call);
  op->cb(op->arg, rc, rc ? op->msg : NULL);
  free(op->blob);
  free(op);
}

/* Put Blob with If-None-Match: * (create only) or If-Match: ETag. */
static void abs_put_cond(struct backend *b, const char *key,
                         const uint8_t *data, size_t len, const char *match,
                         char *tag_out, backend_cb cb, void *arg) {
  struct abs *az = b->priv;
  struct cond_op *op = xcalloc(1, sizeof(*op));
  op->blob = blob_name(az, key);
  op->tag_out = tag_out;
  op->cb = cb;
  op->arg = arg;
  call_init(&op->call, az, "PUT", op->blob, NULL, on_cond_done, op);
  http_request_add_header(&op->call.req, "x-ms-blob-type: BlockBlob");
  http_request_add_header(&op->call.req,
                          "Content-Type: application/octet-stream");
  if (match)
    http_request_add_header(&op->call.req, "If-Match: %s", match);
  else
    http_request_add_header(&op->call.req, "If-None-Match: *");
  struct payload p = {.data = data, .fd = -1, .len = (int64_t)len};
  set_body(&op->call, &p, 0, (int64_t)len);
  http_submit(&op->call.req);
}

/* --- list --- */

struct list_op {
  struct call call;
  struct abs *az;
  char *prefix; /* full blob-name prefix */
  int delimiter;
  char *marker;
  struct obj_list *out;
  backend_cb cb;
  void *arg;
  int pages;
  struct list_pages guard;
  char msg[512];
};

static void list_page(struct list_op *op);

static void list_finish(struct list_op *op, int rc) {
  if (!rc)
    obj_list_sort(op->out);
  op->cb(op->arg, rc, rc ? op->msg : NULL);
  list_pages_destroy(&op->guard);
  free(op->prefix);
  free(op->marker);
  free(op);
}

/* Adds one page of EnumerationResults to the listing; returns 0 or
 * ERR_PROTOCOL.  Names outside the root cannot occur (the prefix includes
 * it) and are skipped. */
static int list_parse(struct list_op *op, const struct xml_node *root) {
  size_t rl = strlen(op->az->root);
  const struct xml_node *blobs = xml_child(root, "Blobs");
  if (!root || strcmp(root->name, "EnumerationResults"))
    return ERR_PROTOCOL;
  for (struct xml_node *n = blobs ? blobs->child : NULL; n; n = n->next) {
    const char *name = xml_text(n, "Name");
    if (!name || strncmp(name, op->az->root, rl))
      continue;
    if (!strcmp(n->name, "BlobPrefix")) {
      obj_list_add_prefix(op->out, name + rl);
      continue;
    }
    if (strcmp(n->name, "Blob"))
      continue;
    const char *ct = xml_text(n, "Properties/Creation-Time");
    const char *lm = xml_text(n, "Properties/Last-Modified");
    const char *cl = xml_text(n, "Properties/Content-Length");
    int64_t mtime = 0;
    if (!ct || sharedkey_parse_date(ct, &mtime))
      if (!lm || sharedkey_parse_date(lm, &mtime))
        mtime = 0;
    char *end = NULL;
    long long size = cl ? strtoll(cl, &end, 10) : -1;
    if (!cl || end == cl || *end || size < 0)
      return ERR_PROTOCOL;
    obj_list_add(op->out, name + rl, size, mtime);
  }
  const char *next = xml_text(root, "NextMarker");
  free(op->marker);
  op->marker = next && *next ? xstrdup(next) : NULL;
  return 0;
}

static void on_list_done(struct http_request *req, void *arg) {
  struct list_op *op = arg;
  (void)req;
  int rc = call_result(&op->call, "list", op->prefix, op->msg, sizeof(op->msg),
                       NULL, 0);
  if (rc == ERR_NOT_FOUND)
    rc = ERR_HTTP_STATUS; /* a listing of a container that is not there */
  if (!rc) {
    char why[256] = "";
    struct xml_node *x =
        xml_parse_err((const char *)op->call.body.data, op->call.body.len,
                      why + 2, sizeof(why) - 2);
    rc = list_parse(op, x);
    xml_free(x);
    if (!rc)
      rc = list_pages_next(&op->guard, op->marker, why + 2, sizeof(why) - 2);
    if (rc && why[2])
      memcpy(why, ": ", 2);
    if (rc)
      snprintf(op->msg, sizeof(op->msg),
               "abs list %s/%s: malformed List Blobs response (page %d)%s",
               op->az->container, op->prefix, op->pages + 1, why[2] ? why : "");
  }
  call_destroy(&op->call);
  op->pages++;
  if (!rc && op->marker) {
    list_page(op);
    return;
  }
  list_finish(op, rc);
}

static void list_page(struct list_op *op) {
  struct buf q;
  buf_init(&q, 0);
  char *p = http_urlencode(op->prefix, 0);
  buf_appendf(&q, "restype=container&comp=list&prefix=%s", p);
  free(p);
  if (op->delimiter)
    buf_appendf(&q, "&delimiter=%%2F");
  if (op->marker) {
    char *m = http_urlencode(op->marker, 0);
    buf_appendf(&q, "&marker=%s", m);
    free(m);
  }
  buf_append(&q, "", 1);
  call_init(&op->call, op->az, "GET", NULL, (const char *)q.data, on_list_done,
            op);
  buf_destroy(&q);
  op->call.body.max = ABS_LISTBODY_MAX;
  http_submit(&op->call.req);
}

static void abs_list(struct backend *b, const char *prefix, int delimiter,
                     struct obj_list *out, backend_cb cb, void *arg) {
  struct abs *az = b->priv;
  struct list_op *op = xcalloc(1, sizeof(*op));
  op->az = az;
  op->prefix = blob_name(az, prefix ? prefix : "");
  op->delimiter = delimiter;
  op->out = out;
  op->cb = cb;
  op->arg = arg;
  list_page(op);
}

/* --- delete --- */

struct del_one {
  struct call call;
  struct del_fanout *f;
  char *blob;
};

static void on_del_done(struct http_request *req, void *arg) {
  struct del_one *d = arg;
  (void)req;
  char msg[512], code[64];
  int rc = call_result(&d->call, "delete", d->blob, msg, sizeof(msg), code,
                       sizeof(code));
  if (rc == ERR_NOT_FOUND && (!code[0] || !strcmp(code, "BlobNotFound")))
    rc = 0;
  struct del_fanout *f = d->f;
  call_destroy(&d->call);
  free(d->blob);
  free(d);
  del_fanout_done(f, rc, msg);
}

static void del_start(struct del_fanout *f, void *ctx, const char *key) {
  struct abs *az = ctx;
  struct del_one *d = xcalloc(1, sizeof(*d));
  d->f = f;
  d->blob = blob_name(az, key);
  call_init(&d->call, az, "DELETE", d->blob, NULL, on_del_done, d);
  http_submit(&d->call.req);
}

static void abs_del(struct backend *b, char *const *keys, size_t n,
                    backend_cb cb, void *arg) {
  del_fanout(keys, n, ABS_DELETES_INFLIGHT, del_start, b->priv, cb, arg);
}

/* --- open / close --- */

/* The value of `name` in an Azure connection string ("K=V;K=V"), owned,
 * or NULL. */
static char *connstr_get(const char *cs, const char *name) {
  size_t nl = strlen(name);
  const char *p = cs;
  while (p && *p) {
    while (*p == ';' || *p == ' ')
      p++;
    const char *end = strchr(p, ';');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > nl && !strncasecmp(p, name, nl) && p[nl] == '=')
      return xstrndup(p + nl + 1, len - nl - 1);
    p = end;
  }
  return NULL;
}

static const char *env_nonempty(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

/* True for hosts where Azure clients use path-style URLs: IP addresses
 * and localhost (emulators). */
static int ip_style_host(const char *host, size_t len) {
  if (len >= 9 && !strncasecmp(host, "localhost", 9) &&
      (len == 9 || host[9] == ':'))
    return 1;
  if (len && host[0] == '[')
    return 1; /* IPv6 literal */
  int dots = 0;
  for (size_t i = 0; i < len && host[i] != ':'; i++) {
    if (host[i] == '.')
      dots++;
    else if (host[i] < '0' || host[i] > '9')
      return 0;
  }
  return dots == 3;
}

/* Normalises an endpoint: a scheme (https) if none, no trailing '/', and
 * for an IP-style host without a path, the account as the first path
 * element (as Azurite and the Azure SDKs expect). */
static char *endpoint_normalize(const char *ep, const char *account) {
  char *s = strstr(ep, "://") ? xstrdup(ep) : xasprintf("https://%s", ep);
  size_t n = strlen(s);
  while (n && s[n - 1] == '/')
    s[--n] = '\0';
  const char *host = strstr(s, "://") + 3;
  size_t hl = strcspn(host, "/?#");
  if (!host[hl] && account && ip_style_host(host, hl)) {
    char *t = xasprintf("%s/%s", s, account);
    free(s);
    s = t;
  }
  return s;
}

struct abs_creds {
  char *account, *key, *sas, *endpoint;
  const char *key_src;
};

static void creds_destroy(struct abs_creds *c) {
  free(c->account);
  free(c->key);
  free(c->sas);
  free(c->endpoint);
}

/* Resolves credentials: config first, then the environment
 * (LITESTREAM_AZURE_ACCOUNT_KEY as Litestream, AZURE_STORAGE_ACCOUNT/KEY,
 * AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_CONNECTION_STRING). */
static void creds_resolve(const struct replica_config *cfg,
                          struct abs_creds *c) {
  memset(c, 0, sizeof(*c));
  const char *cs = env_nonempty("AZURE_STORAGE_CONNECTION_STRING");
  char *cs_account = cs ? connstr_get(cs, "AccountName") : NULL;
  char *dev = cs ? connstr_get(cs, "UseDevelopmentStorage") : NULL;
  if (dev && !strcasecmp(dev, "true") && !cs_account)
    cs_account = xstrdup(DEV_ACCOUNT);
  if (cfg->account_name && *cfg->account_name)
    c->account = xstrdup(cfg->account_name);
  else if (env_nonempty("AZURE_STORAGE_ACCOUNT"))
    c->account = xstrdup(getenv("AZURE_STORAGE_ACCOUNT"));
  else if (cs_account)
    c->account = xstrdup(cs_account);
  /* The connection string only applies to its own account. */
  int cs_ok =
      cs && (!cs_account || !c->account || !strcmp(cs_account, c->account));
  const char *v;
  if (cfg->account_key && *cfg->account_key) {
    c->key = xstrdup(cfg->account_key);
    c->key_src = "account-key";
  } else if (cfg->sas_token && *cfg->sas_token) {
    c->sas = xstrdup(cfg->sas_token);
  } else if ((v = env_nonempty("LITESTREAM_AZURE_ACCOUNT_KEY"))) {
    c->key = xstrdup(v);
    c->key_src = "LITESTREAM_AZURE_ACCOUNT_KEY";
  } else if ((v = env_nonempty("AZURE_STORAGE_KEY"))) {
    c->key = xstrdup(v);
    c->key_src = "AZURE_STORAGE_KEY";
  } else if (cs_ok && (c->key = connstr_get(cs, "AccountKey"))) {
    c->key_src = "AZURE_STORAGE_CONNECTION_STRING";
  } else if (cs_ok && (c->sas = connstr_get(cs, "SharedAccessSignature"))) {
  } else if ((v = env_nonempty("AZURE_STORAGE_SAS_TOKEN"))) {
    c->sas = xstrdup(v);
  } else if (cs_ok && dev && !strcasecmp(dev, "true")) {
    c->key = xstrdup(DEV_KEY);
    c->key_src = "UseDevelopmentStorage";
  }
  if (cfg->endpoint && *cfg->endpoint) {
    c->endpoint = xstrdup(cfg->endpoint);
  } else if (cs_ok && (c->endpoint = connstr_get(cs, "BlobEndpoint"))) {
  } else if (cs_ok && dev && !strcasecmp(dev, "true")) {
    c->endpoint = xstrdup(DEV_ENDPOINT);
  } else if (c->account) {
    char *proto = cs_ok ? connstr_get(cs, "DefaultEndpointsProtocol") : NULL;
    char *suffix = cs_ok ? connstr_get(cs, "EndpointSuffix") : NULL;
    c->endpoint = xasprintf("%s://%s.blob.%s", proto ? proto : "https",
                            c->account, suffix ? suffix : "core.windows.net");
    free(proto);
    free(suffix);
  }
  free(cs_account);
  free(dev);
}

static void abs_free_priv(struct abs *az) {
  free(az->account);
  if (az->key)
    memset(az->key, 0, az->keylen);
  free(az->key);
  free(az->sas);
  free(az->endpoint);
  free(az->container);
  free(az->root);
}

static int abs_open(struct backend *b, const struct replica_config *cfg,
                    char *err, size_t errlen) {
  struct abs *az = b->priv;
  const char *name = cfg->name ? cfg->name : "abs";
  az->b = b;
  if (!cfg->bucket || !*cfg->bucket) {
    snprintf(err, errlen, "replica %s: container required for abs replica",
             name);
    return ERR_CONFIG;
  }
  struct abs_creds c;
  creds_resolve(cfg, &c);
  int rc = ERR_CONFIG;
  if (!c.key && !c.sas) {
    snprintf(err, errlen,
             "replica %s: no Azure credentials: set account-key or sas-token, "
             "or LITESTREAM_AZURE_ACCOUNT_KEY, AZURE_STORAGE_KEY or "
             "AZURE_STORAGE_CONNECTION_STRING",
             name);
    goto out;
  }
  if (!c.account && (c.key || !c.endpoint)) {
    snprintf(err, errlen,
             "replica %s: account name required for abs replica (account-name, "
             "abs://ACCOUNT@CONTAINER/PATH or AZURE_STORAGE_ACCOUNT)",
             name);
    goto out;
  }
  if (c.key && base64_decode(c.key, strlen(c.key), 0, &az->key, &az->keylen)) {
    snprintf(err, errlen,
             "replica %s: Azure account key from %s is not valid "
             "base64",
             name, c.key_src);
    goto out;
  }
  if (c.sas) {
    const char *s = c.sas[0] == '?' ? c.sas + 1 : c.sas;
    az->sas = xstrdup(s);
  }
  az->account = c.account ? xstrdup(c.account) : NULL;
  az->endpoint = endpoint_normalize(c.endpoint, c.account);
  az->container = xstrdup(cfg->bucket);
  const char *p = cfg->path ? cfg->path : "";
  while (*p == '/')
    p++;
  size_t pl = strlen(p);
  while (pl && p[pl - 1] == '/')
    pl--;
  if (pl == 1 && p[0] == '.')
    pl = 0;
  az->root = pl ? xasprintf("%.*s/", (int)pl, p) : xstrdup("");
  az->skip_verify = cfg->skip_verify;
  b->desc = xasprintf("abs://%s%s%s/%.*s", az->account ? az->account : "",
                      az->account ? "@" : "", az->container, (int)pl, p);
  log_debug(NULL, b->name, "abs endpoint %s container %s auth %s", az->endpoint,
            az->container, az->key ? "shared key" : "SAS");
  rc = 0;
out:
  creds_destroy(&c);
  if (rc)
    abs_free_priv(az);
  return rc;
}

static void abs_close(struct backend *b) {
  abs_free_priv(b->priv);
}

const struct backend_ops backend_abs = {
    .name = "abs",
    .caps = BACKEND_CAP_RANGE | BACKEND_CAP_MULTIPART | BACKEND_CAP_COND,
    .priv_size = sizeof(struct abs),
    .open = abs_open,
    .close = abs_close,
    .put = abs_put,
    .get = abs_get,
    .list = abs_list,
    .del = abs_del,
    .get_tag = abs_get_tag,
    .put_cond = abs_put_cond,
};
