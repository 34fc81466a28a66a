/*
 * The S3 backend: Amazon S3 and S3-compatible stores, over the loop's
 * HTTP layer, signed with SigV4 (sigv4.c), credentials from aws_creds.c.
 *
 * Addressing (spec 6.4): virtual-host style (https://BUCKET.s3.REGION.
 * amazonaws.com/KEY) by default; path style (ENDPOINT/BUCKET/KEY) with
 * force-path-style, or when a custom endpoint is set and force-path-style
 * is not given.  AWS buckets with dots use path style over TLS (their names
 * do not match the wildcard certificate), as the AWS SDK does.
 *
 * Region: from the config; with a custom endpoint and none given,
 * us-east-1; with AWS and none given, discovered before the first request
 * from the x-amz-bucket-region header of a HEAD on the bucket, else
 * GetBucketLocation.
 *
 * Every request carries x-amz-content-sha256 with the real SHA-256 of its
 * body (computed on the thread pool when the body is large or in a file)
 * and is re-signed before each attempt, so a retry has a fresh date.
 *
 * Operations map to: PutObject (up to 16 MiB), multipart upload above
 * that (parts in parallel, aborted on any failure so no parts stay
 * billed), GetObject with Range, ListObjectsV2 with continuation tokens
 * and delimiter, DeleteObjects in batches of 1000 with Content-MD5 and
 * Quiet, every per-key error reported.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>

#include "backends/aws_creds.h"
#include "backends/backend.h"
#include "backends/common.h"
#include "backends/base64.h"
#include "backends/s3.h"
#include "backends/sigv4.h"
#include "backends/xml.h"
#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "config/url.h"
#include "loop/loop.h"

#define MIB (1024 * 1024)
#define PUT_SINGLE_MAX (16LL * MIB)
#define PART_SIZE_MIN (8LL * MIB)
#define PART_SIZE_FLOOR (5LL * MIB) /* S3's minimum for all but the last */
#define MAX_PARTS 10000
#define PART_PARALLEL 4
#define DELETE_BATCH 1000
#define HASH_INLINE_MAX (256 * 1024)
#define XML_BODY_MAX (32 * MIB)

struct call;

/* snprintf for messages: truncation of a long key in a message is fine. */
static void msgf(char *out, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void msgf(char *out, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out, n, fmt, ap);
  va_end(ap);
}

struct s3 {
  struct backend *b;
  char *bucket;
  char *prefix;    /* "" or "a/b": no leading or trailing '/' */
  char *root;      /* prefix + "/", or "" */
  char *region;    /* NULL until known */
  char *scheme;    /* "https" or "http" */
  char *host;      /* endpoint host[:port], NULL for AWS */
  char *base_path; /* endpoint path ("" or "/x"), no trailing '/' */
  int path_style;
  int aws;
  int skip_verify;
  char *sse, *sse_kms_key_id, *storage_class;
  char *ssec_key, *ssec_md5; /* base64 */
  struct aws_creds_provider *creds;
  /* Region discovery. */
  int discovering;
  int discover_step;
  struct call *region_waiters;
  /* Tunables (environment, for tests and benchmarks). */
  int64_t put_single_max;
  int64_t part_size;
  int part_parallel;
};

/* --- one signed request --- */

typedef void (*call_done_fn)(struct call *c);

struct call {
  struct s3 *s;
  const char *op; /* "PutObject", for messages */
  char *key;      /* full object key, or NULL for bucket requests */
  char *about;    /* for messages when key is NULL (a listed prefix) */
  const char *method;
  char *query; /* encoded query or NULL */
  char **hdrs; /* extra "Name: value" headers, signed */
  size_t n_hdrs;
  /* Body. */
  uint8_t *owned_body; /* XML bodies we build; freed with the call */
  const uint8_t *body;
  int64_t body_len;
  int body_fd;
  int64_t body_off;
  char payload_hash[65];
  /* Response. */
  struct buf resp;     /* XML responses */
  struct buf *resp_to; /* caller's buffer (GetObject) */
  int resp_fd;
  int64_t resp_off;
  struct buf err;
  /* Bucket-level requests during region discovery use us-east-1. */
  const char *force_region;
  int global_host; /* discovery: s3.amazonaws.com, path style */
  struct http_request req;
  int creds_retried;
  int status;
  char errmsg[640];
  call_done_fn done;
  void *owner;
  struct call *next_wait;
};

static struct call *call_new(struct s3 *s, const char *op, const char *method,
                             const char *key, call_done_fn done, void *owner) {
  struct call *c = xcalloc(1, sizeof(*c));
  c->s = s;
  c->op = op;
  c->method = method;
  c->key = key ? xstrdup(key) : NULL;
  c->body_fd = -1;
  c->resp_fd = -1;
  c->done = done;
  c->owner = owner;
  buf_init(&c->resp, XML_BODY_MAX);
  buf_init(&c->err, 0);
  memcpy(c->payload_hash, SIGV4_EMPTY_SHA256, 65);
  return c;
}

static void call_free(struct call *c) {
  free(c->about);
  free(c->owned_body);
  free(c->key);
  free(c->query);
  for (size_t i = 0; i < c->n_hdrs; i++)
    free(c->hdrs[i]);
  free(c->hdrs);
  buf_destroy(&c->resp);
  buf_destroy(&c->err);
  http_request_free(&c->req);
  free(c);
}

static void call_header(struct call *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void call_header(struct call *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *h = xvasprintf(fmt, ap);
  va_end(ap);
  c->hdrs = xrealloc(c->hdrs, (c->n_hdrs + 1) * sizeof(char *));
  c->hdrs[c->n_hdrs++] = h;
}

/* "s3://bucket/key" for messages. */
static void where(const struct call *c, char *out, size_t n) {
  msgf(out, n, "s3://%s/%s", c->s->bucket,
       c->key     ? c->key
       : c->about ? c->about
                  : "");
}

/* Host and encoded path of a request. */
static void target(const struct call *c, char **host, char **path) {
  const struct s3 *s = c->s;
  const char *region = c->force_region ? c->force_region : s->region;
  char *ekey = sigv4_uri_encode(c->key ? c->key : "", 1);
  int path_style = s->path_style || c->global_host;
  char *h;
  if (s->host)
    h = xstrdup(s->host);
  else if (c->global_host)
    h = xstrdup("s3.amazonaws.com");
  else
    h = xasprintf("s3.%s.amazonaws.com", region);
  if (path_style) {
    *path = c->key ? xasprintf("%s/%s/%s", s->base_path, s->bucket, ekey)
                   : xasprintf("%s/%s", s->base_path, s->bucket);
    *host = h;
  } else {
    *path = xasprintf("%s/%s", s->base_path, ekey);
    *host = xasprintf("%s.%s", s->bucket, h);
    free(h);
  }
  free(ekey);
}

static int on_prepare(struct http_request *req, void *arg) {
  struct call *c = arg;
  struct s3 *s = c->s;
  const struct aws_creds *cr = aws_creds_current(s->creds);
  if (!cr) {
    msgf(req->errmsg, sizeof(req->errmsg), "AWS credentials from %s expired",
         aws_creds_source(s->creds));
    return ERR_AUTH;
  }
  for (size_t i = 0; i < req->n_headers; i++)
    free(req->headers[i]);
  req->n_headers = 0;
  char *host, *path;
  target(c, &host, &path);
  char date[17];
  sigv4_amz_date(time_now_ns() / NS_PER_SEC, date);
  http_request_add_header(req, "Host: %s", host);
  http_request_add_header(req, "x-amz-date: %s", date);
  http_request_add_header(req, "x-amz-content-sha256: %s", c->payload_hash);
  if (cr->session_token)
    http_request_add_header(req, "x-amz-security-token: %s", cr->session_token);
  for (size_t i = 0; i < c->n_hdrs; i++)
    http_request_add_header(req, "%s", c->hdrs[i]);
  struct sigv4_request sr = {
      .method = c->method,
      .path = path,
      .query = c->query,
      .headers = (const char *const *)req->headers,
      .n_headers = req->n_headers,
      .payload_hash = c->payload_hash,
      .region = c->force_region ? c->force_region : s->region,
      .service = "s3",
      .amz_date = date,
  };
  struct sigv4_key k = {cr->access_key_id, cr->secret_access_key};
  char *authz = sigv4_authorization(&sr, &k);
  http_request_add_header(req, "Authorization: %s", authz);
  free(authz);
  free(req->url);
  req->url = xasprintf("%s://%s%s%s%s", s->scheme, host, path,
                       c->query ? "?" : "", c->query ? c->query : "");
  free(host);
  free(path);
  return 0;
}

/* S3 answers some transient conditions with a 400 (RequestTimeout: the
 * connection idled) or with a code in a 200 body; ask for a retry. */
static int on_retry_check(struct http_request *req, void *arg) {
  struct call *c = arg;
  if (req->status != 400 || !c->err.len)
    return 0;
  buf_append(&c->err, "", 1);
  c->err.len--;
  const char *b = (const char *)c->err.data;
  return strstr(b, "<Code>RequestTimeout</Code>") != NULL ||
         strstr(b, "<Code>SlowDown</Code>") != NULL;
}

static void call_start(struct call *c);
static void region_need(struct call *c);

static int is_auth_code(const char *code) {
  static const char *const codes[] = {"AccessDenied",
                                      "SignatureDoesNotMatch",
                                      "InvalidAccessKeyId",
                                      "ExpiredToken",
                                      "InvalidToken",
                                      "TokenRefreshRequired",
                                      "AuthorizationHeaderMalformed",
                                      "AllAccessDisabled",
                                      "InvalidSecurity",
                                      "RequestTimeTooSkewed",
                                      "AccountProblem",
                                      NULL};
  for (int i = 0; codes[i]; i++)
    if (!strcmp(code, codes[i]))
      return 1;
  return 0;
}

/* Turns a failed attempt into c->status and one line in c->errmsg:
 * operation, bucket and key, HTTP status, S3 code and message. */
static void call_fail(struct call *c) {
  char w[512];
  where(c, w, sizeof(w));
  struct http_request *r = &c->req;
  if (r->error) {
    c->status = r->error == ERR_CANCELED  ? ERR_CANCELED
                : r->error == ERR_TOO_BIG ? ERR_TOO_BIG
                : r->error == ERR_AUTH    ? ERR_AUTH
                                          : ERR_HTTP;
    msgf(c->errmsg, sizeof(c->errmsg), "%s %s: %s (after %d attempt%s)", c->op,
         w, r->errmsg, r->attempts, r->attempts == 1 ? "" : "s");
    return;
  }
  struct xml_node *x =
      c->err.len ? xml_parse((const char *)c->err.data, c->err.len) : NULL;
  const char *code = x ? xml_text(x, "Error/Code") : NULL;
  const char *msg = x ? xml_text(x, "Error/Message") : NULL;
  const char *region = http_response_header(r, "x-amz-bucket-region");
  if (!code || !*code) {
    code = r->status == 404   ? "NotFound"
           : r->status == 403 ? "Forbidden"
           : r->status == 301 ? "PermanentRedirect"
                              : "";
  }
  if (r->status == 404 &&
      (!strcmp(code, "NoSuchKey") || !strcmp(code, "NotFound")))
    c->status = ERR_NOT_FOUND;
  else if (r->status == 401 || r->status == 403 || is_auth_code(code))
    c->status = ERR_AUTH;
  else
    c->status = ERR_HTTP_STATUS;
  char hint[200] = "";
  if (!strcmp(code, "SignatureDoesNotMatch") ||
      !strcmp(code, "InvalidAccessKeyId") || !strcmp(code, "AccessDenied") ||
      !strcmp(code, "ExpiredToken") || r->status == 403)
    msgf(hint, sizeof(hint), " (credentials from %s)",
         aws_creds_source(c->s->creds));
  else if (region && c->s->region && strcmp(region, c->s->region))
    msgf(hint, sizeof(hint), " (the bucket is in region %s)", region);
  msgf(c->errmsg, sizeof(c->errmsg), "%s %s: HTTP %d%s%s%s%.200s%s", c->op, w,
       r->status, *code ? " " : "", code, msg && *msg ? ": " : "",
       msg ? msg : "", hint);
  xml_free(x);
}

static void on_creds_for_retry(void *arg, int status, const char *err);

static void on_http_done(struct http_request *req, void *arg) {
  struct call *c = arg;
  (void)req;
  if (!c->req.error && c->req.status / 100 == 2) {
    c->status = 0;
    c->done(c);
    return;
  }
  call_fail(c);
  /* Temporary credentials the server calls expired: fetch new ones once
   * and send again. */
  if (c->status == ERR_AUTH && !c->creds_retried && c->err.len &&
      aws_creds_refreshable(c->s->creds) &&
      (memmem(c->err.data, c->err.len, "ExpiredToken", 12) ||
       memmem(c->err.data, c->err.len, "TokenRefreshRequired", 20))) {
    c->creds_retried = 1;
    http_request_free(&c->req);
    aws_creds_ensure(c->s->creds, 1, on_creds_for_retry, c);
    return;
  }
  c->done(c);
}

static void submit_http(struct call *c) {
  struct http_request *r = &c->req;
  http_request_free(r);
  http_request_init(r);
  r->method = c->method;
  r->pool = &c->s->b->pool;
  r->skip_verify = c->s->skip_verify;
  r->prepare = on_prepare;
  r->retry_check = on_retry_check;
  r->done = on_http_done;
  r->arg = c;
  r->err_body = &c->err;
  if (c->body_fd >= 0) {
    r->body_fd = c->body_fd;
    r->body_off = c->body_off;
    r->body_len = (size_t)c->body_len;
  } else if (c->body) {
    r->body = c->body;
    r->body_len = (size_t)c->body_len;
  } else if (!strcmp(c->method, "PUT") || !strcmp(c->method, "POST")) {
    r->body = (const uint8_t *)"";
    r->body_len = 0;
  }
  if (c->resp_fd >= 0) {
    r->resp_fd = c->resp_fd;
    r->resp_off = c->resp_off;
  } else {
    r->resp_body = c->resp_to ? c->resp_to : &c->resp;
  }
  http_submit(r);
}

static void on_creds(void *arg, int status, const char *err) {
  struct call *c = arg;
  if (status) {
    char w[512];
    where(c, w, sizeof(w));
    c->status = status == ERR_CANCELED ? ERR_CANCELED : ERR_AUTH;
    msgf(c->errmsg, sizeof(c->errmsg), "%s %s: %s", c->op, w,
         err ? err : err_str(status));
    c->done(c);
    return;
  }
  submit_http(c);
}

static void on_creds_for_retry(void *arg, int status, const char *err) {
  struct call *c = arg;
  if (status) {
    on_creds(arg, status, err);
    return;
  }
  c->err.len = 0;
  submit_http(c);
}

/* Starts a call once the region and credentials are known. */
static void call_start(struct call *c) {
  if (!c->s->region && !c->force_region) {
    region_need(c);
    return;
  }
  if (aws_creds_fresh(c->s->creds))
    submit_http(c);
  else
    aws_creds_ensure(c->s->creds, 0, on_creds, c);
}

/* --- region discovery --- */

static void region_done(struct s3 *s, int status, const char *err) {
  struct call *w = s->region_waiters;
  s->region_waiters = NULL;
  s->discovering = 0;
  while (w) {
    struct call *next = w->next_wait;
    w->next_wait = NULL;
    if (status) {
      char where_[512];
      where(w, where_, sizeof(where_));
      w->status = status;
      msgf(w->errmsg, sizeof(w->errmsg), "%s %s: %s", w->op, where_, err);
      w->done(w);
    } else {
      call_start(w);
    }
    w = next;
  }
}

static void discover_step(struct s3 *s);

static void on_discover(struct call *c) {
  struct s3 *s = c->s;
  const char *hdr = http_response_header(&c->req, "x-amz-bucket-region");
  char *region = NULL;
  if (hdr && *hdr) {
    region = xstrdup(hdr);
  } else if (!c->status && !strcmp(c->op, "GetBucketLocation")) {
    struct xml_node *x = xml_parse((const char *)c->resp.data, c->resp.len);
    const char *lc = x ? xml_text(x, "LocationConstraint") : NULL;
    if (x)
      region = xstrdup(!lc || !*lc         ? "us-east-1"
                       : !strcmp(lc, "EU") ? "eu-west-1"
                                           : lc);
    xml_free(x);
  } else if (!c->status && !c->req.error) {
    /* A 2xx HEAD without the header (some S3-compatible stores). */
    region = xstrdup("us-east-1");
  }
  if (region) {
    free(s->region);
    s->region = region;
    log_info(NULL, s->b->name, "bucket %s is in region %s", s->bucket, region);
    call_free(c);
    region_done(s, 0, NULL);
    return;
  }
  if (s->discover_step == 0 && !c->req.error) {
    call_free(c);
    s->discover_step = 1;
    discover_step(s);
    return;
  }
  char msg[700];
  msgf(msg, sizeof(msg),
       "cannot find the bucket's region (set region: in the config): %s",
       c->errmsg[0] ? c->errmsg : "no answer");
  int status = c->status ? c->status : ERR_HTTP;
  call_free(c);
  region_done(s, status, msg);
}

static void discover_step(struct s3 *s) {
  struct call *c;
  if (s->discover_step == 0) {
    c = call_new(s, "HeadBucket", "HEAD", NULL, on_discover, NULL);
  } else {
    c = call_new(s, "GetBucketLocation", "GET", NULL, on_discover, NULL);
    c->query = xstrdup("location=");
  }
  c->force_region = "us-east-1";
  c->global_host = s->host == NULL;
  call_start(c);
}

static void region_need(struct call *c) {
  struct s3 *s = c->s;
  c->next_wait = s->region_waiters;
  s->region_waiters = c;
  if (s->discovering)
    return;
  s->discovering = 1;
  s->discover_step = 0;
  discover_step(s);
}

/* --- payload hashing on the thread pool --- */

struct hash_job {
  const uint8_t *data;
  int fd;
  int64_t off, len;
  char hex[65];
  int err;
  void (*done)(struct hash_job *j);
  void *owner;
};

static void hash_work(void *arg) {
  struct hash_job *j = arg;
  if (j->data) {
    sha256_hex(j->data, (size_t)j->len, j->hex);
    return;
  }
  struct sha256_ctx *h = sha256_new();
  size_t bsz = 1 << 20;
  uint8_t *b = xmalloc(bsz);
  int64_t pos = 0;
  while (pos < j->len) {
    size_t want = (size_t)MIN((int64_t)bsz, j->len - pos);
    ssize_t n = pread_full(j->fd, b, want, (off_t)(j->off + pos));
    if (n < 0) {
      j->err = (int)n;
      break;
    }
    if ((size_t)n < want) {
      j->err = -EIO; /* the file is shorter than the payload says */
      break;
    }
    sha256_update(h, b, (size_t)n);
    pos += n;
  }
  free(b);
  sha256_final_hex(h, j->hex);
}

static void hash_done(void *arg, int status) {
  struct hash_job *j = arg;
  (void)status;
  j->done(j);
}

/* Hashes a body inline when small, else on the pool; calls done. */
static void hash_payload(struct hash_job *j) {
  if (j->data && j->len <= HASH_INLINE_MAX) {
    hash_work(j);
    j->done(j);
    return;
  }
  loop_work_submit(hash_work, hash_done, j);
}

/* --- headers from the config --- */

static void add_sse_headers(struct call *c, int for_create) {
  struct s3 *s = c->s;
  if (for_create) {
    if (s->sse) {
      call_header(c, "x-amz-server-side-encryption: %s", s->sse);
      if (s->sse_kms_key_id)
        call_header(c, "x-amz-server-side-encryption-aws-kms-key-id: %s",
                    s->sse_kms_key_id);
    }
    if (s->storage_class)
      call_header(c, "x-amz-storage-class: %s", s->storage_class);
  }
  if (s->ssec_key) {
    call_header(c, "x-amz-server-side-encryption-customer-algorithm: AES256");
    call_header(c, "x-amz-server-side-encryption-customer-key: %s",
                s->ssec_key);
    call_header(c, "x-amz-server-side-encryption-customer-key-MD5: %s",
                s->ssec_md5);
  }
}

static char *full_key(const struct s3 *s, const char *key) {
  while (*key == '/')
    key++;
  return xasprintf("%s%s", s->root, key);
}

/* --- PutObject --- */

struct put_op {
  struct s3 *s;
  struct call *c;
  struct hash_job hj;
  int cond;      /* put_cond: a failed condition is ERR_PRECONDITION */
  char *tag_out; /* put_cond: the new ETag, BACKEND_TAG_MAX bytes */
  backend_cb cb;
  void *arg;
};

/* The response's ETag (as sent, quotes included) into tag. */
static void copy_etag(struct call *c, char *tag) {
  const char *e = http_response_header(&c->req, "etag");
  snprintf(tag, BACKEND_TAG_MAX, "%s", e ? e : "");
}

static void on_put_done(struct call *c) {
  struct put_op *op = c->owner;
  backend_cb cb = op->cb;
  void *arg = op->arg;
  /* 412 PreconditionFailed; 409 ConditionalRequestConflict (a concurrent
   * conditional write); 404 for If-Match on an object gone. */
  if (op->cond && c->status &&
      (c->req.status == 412 || c->req.status == 409 ||
       c->status == ERR_NOT_FOUND))
    c->status = ERR_PRECONDITION;
  if (op->cond && !c->status)
    copy_etag(c, op->tag_out);
  int status = c->status;
  char *err = status ? xstrdup(c->errmsg) : NULL;
  call_free(c);
  free(op);
  cb(arg, status, err);
  free(err);
}

static void on_put_hashed(struct hash_job *j) {
  struct put_op *op = j->owner;
  struct call *c = op->c;
  if (j->err) {
    char w[512];
    where(c, w, sizeof(w));
    c->status = j->err;
    msgf(c->errmsg, sizeof(c->errmsg), "%s %s: cannot read payload: %s", c->op,
         w, err_str(j->err));
    on_put_done(c);
    return;
  }
  memcpy(c->payload_hash, j->hex, 65);
  call_start(c);
}

static void mpu_start(struct s3 *s, const char *key, const struct payload *p,
                      backend_cb cb, void *arg);

static void s3_put(struct backend *b, const char *key, const struct payload *p,
                   backend_cb cb, void *arg) {
  struct s3 *s = b->priv;
  char *k = full_key(s, key);
  if (p->len > s->put_single_max) {
    mpu_start(s, k, p, cb, arg);
    free(k);
    return;
  }
  struct put_op *op = xcalloc(1, sizeof(*op));
  op->s = s;
  op->cb = cb;
  op->arg = arg;
  struct call *c = call_new(s, "PutObject", "PUT", k, on_put_done, op);
  free(k);
  op->c = c;
  c->body_len = p->len;
  if (p->data) {
    c->body = p->data;
  } else {
    c->body_fd = p->fd;
    c->body_off = p->off;
  }
  add_sse_headers(c, 1);
  op->hj.data = p->data;
  op->hj.fd = p->fd;
  op->hj.off = p->off;
  op->hj.len = p->len;
  op->hj.done = on_put_hashed;
  op->hj.owner = op;
  hash_payload(&op->hj);
}

/* --- multipart upload --- */

struct part {
  int number;
  int64_t off, len;
  char *etag;
  struct hash_job hj;
  struct mpu *m;
};

struct mpu {
  struct s3 *s;
  char *key;
  struct payload p;
  char *upload_id;
  struct part *parts;
  int n_parts;
  int next;     /* next part to start */
  int inflight; /* parts hashing or uploading */
  int done_parts;
  int failed;
  int status;
  char errmsg[640];
  backend_cb cb;
  void *arg;
};

static void mpu_pump(struct mpu *m);

static void mpu_finish(struct mpu *m) {
  backend_cb cb = m->cb;
  void *arg = m->arg;
  int status = m->status;
  char *err = status ? xstrdup(m->errmsg) : NULL;
  for (int i = 0; i < m->n_parts; i++)
    free(m->parts[i].etag);
  free(m->parts);
  free(m->upload_id);
  free(m->key);
  free(m);
  cb(arg, status, err);
  free(err);
}

static void mpu_fail(struct mpu *m, int status, const char *msg) {
  if (!m->failed) {
    m->failed = 1;
    m->status = status;
    msgf(m->errmsg, sizeof(m->errmsg), "%s", msg);
  }
}

static void on_abort(struct call *c) {
  struct mpu *m = c->owner;
  if (c->status)
    log_error(NULL, m->s->b->name,
              "%s (the incomplete upload %s may keep its parts billed until "
              "a lifecycle rule removes it)",
              c->errmsg, m->upload_id);
  call_free(c);
  mpu_finish(m);
}

/* After a failure, once no part is in flight: abort the upload so no parts
 * are left stored and billed. */
static void mpu_abort(struct mpu *m) {
  if (!m->upload_id) {
    mpu_finish(m);
    return;
  }
  struct call *c =
      call_new(m->s, "AbortMultipartUpload", "DELETE", m->key, on_abort, m);
  char *eid = sigv4_uri_encode(m->upload_id, 0);
  c->query = xasprintf("uploadId=%s", eid);
  free(eid);
  call_start(c);
}

static void on_complete(struct call *c) {
  struct mpu *m = c->owner;
  if (!c->status) {
    /* A 200 can still carry an <Error> (the failure came late). */
    struct xml_node *x = xml_parse((const char *)c->resp.data, c->resp.len);
    if (!x || !strcmp(x->name, "Error")) {
      const char *code = x ? xml_text(x, "Error/Code") : NULL;
      const char *msg = x ? xml_text(x, "Error/Message") : NULL;
      char w[512];
      where(c, w, sizeof(w));
      msgf(c->errmsg, sizeof(c->errmsg), "%s %s: HTTP 200 %s%s%.200s", c->op, w,
           code ? code : "unreadable response", msg ? ": " : "",
           msg ? msg : "");
      c->status = ERR_HTTP_STATUS;
    }
    xml_free(x);
  }
  if (c->status) {
    mpu_fail(m, c->status, c->errmsg);
    call_free(c);
    mpu_abort(m);
    return;
  }
  call_free(c);
  free(m->upload_id);
  m->upload_id = NULL;
  mpu_finish(m);
}

static void mpu_complete(struct mpu *m) {
  struct call *c =
      call_new(m->s, "CompleteMultipartUpload", "POST", m->key, on_complete, m);
  char *eid = sigv4_uri_encode(m->upload_id, 0);
  c->query = xasprintf("uploadId=%s", eid);
  free(eid);
  struct buf body;
  buf_init(&body, 0);
  buf_appendf(&body, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws."
                     "com/doc/2006-03-01/\">");
  for (int i = 0; i < m->n_parts; i++)
    buf_appendf(&body,
                "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag>"
                "</Part>",
                m->parts[i].number, m->parts[i].etag);
  buf_appendf(&body, "</CompleteMultipartUpload>");
  size_t len;
  uint8_t *data = buf_steal(&body, &len);
  c->owned_body = data;
  c->body = data;
  c->body_len = (int64_t)len;
  sha256_hex(data, len, c->payload_hash);
  call_header(c, "Content-Type: application/xml");
  call_start(c);
}

static void on_part_done(struct call *c) {
  struct part *pt = c->owner;
  struct mpu *m = pt->m;
  m->inflight--;
  if (!c->status) {
    const char *etag = http_response_header(&c->req, "etag");
    if (!etag || !*etag) {
      char w[512];
      where(c, w, sizeof(w));
      msgf(c->errmsg, sizeof(c->errmsg), "%s %s part %d: no ETag", c->op, w,
           pt->number);
      c->status = ERR_PROTOCOL;
    } else {
      pt->etag = xstrdup(etag);
      m->done_parts++;
    }
  }
  if (c->status)
    mpu_fail(m, c->status, c->errmsg);
  call_free(c);
  mpu_pump(m);
}

static void on_part_hashed(struct hash_job *j) {
  struct part *pt = j->owner;
  struct mpu *m = pt->m;
  if (j->err || m->failed) {
    if (j->err && !m->failed) {
      char msg[600];
      msgf(msg, sizeof(msg),
           "UploadPart s3://%s/%s part %d: cannot read payload: %s",
           m->s->bucket, m->key, pt->number, err_str(j->err));
      mpu_fail(m, j->err, msg);
    }
    m->inflight--;
    mpu_pump(m);
    return;
  }
  struct call *c =
      call_new(m->s, "UploadPart", "PUT", m->key, on_part_done, pt);
  char *eid = sigv4_uri_encode(m->upload_id, 0);
  c->query = xasprintf("partNumber=%d&uploadId=%s", pt->number, eid);
  free(eid);
  memcpy(c->payload_hash, j->hex, 65);
  c->body_len = pt->len;
  if (m->p.data) {
    c->body = m->p.data + pt->off;
  } else {
    c->body_fd = m->p.fd;
    c->body_off = m->p.off + pt->off;
  }
  add_sse_headers(c, 0);
  call_start(c);
}

static void mpu_pump(struct mpu *m) {
  if (m->failed) {
    if (m->inflight == 0)
      mpu_abort(m);
    return;
  }
  while (m->inflight < m->s->part_parallel && m->next < m->n_parts) {
    struct part *pt = &m->parts[m->next++];
    m->inflight++;
    pt->hj.data = m->p.data ? m->p.data + pt->off : NULL;
    pt->hj.fd = m->p.fd;
    pt->hj.off = m->p.off + pt->off;
    pt->hj.len = pt->len;
    pt->hj.done = on_part_hashed;
    pt->hj.owner = pt;
    /* Always on the pool: parts are megabytes. */
    loop_work_submit(hash_work, hash_done, &pt->hj);
  }
  if (m->inflight == 0 && m->done_parts == m->n_parts)
    mpu_complete(m);
}

static void on_create(struct call *c) {
  struct mpu *m = c->owner;
  if (!c->status) {
    struct xml_node *x = xml_parse((const char *)c->resp.data, c->resp.len);
    const char *id =
        x ? xml_text(x, "InitiateMultipartUploadResult/UploadId") : NULL;
    if (id && *id) {
      m->upload_id = xstrdup(id);
    } else {
      char w[512];
      where(c, w, sizeof(w));
      msgf(c->errmsg, sizeof(c->errmsg), "%s %s: no UploadId in response",
           c->op, w);
      c->status = ERR_PROTOCOL;
    }
    xml_free(x);
  }
  if (c->status) {
    mpu_fail(m, c->status, c->errmsg);
    call_free(c);
    mpu_finish(m);
    return;
  }
  call_free(c);
  mpu_pump(m);
}

static void mpu_start(struct s3 *s, const char *key, const struct payload *p,
                      backend_cb cb, void *arg) {
  struct mpu *m = xcalloc(1, sizeof(*m));
  m->s = s;
  m->key = xstrdup(key);
  m->p = *p;
  m->cb = cb;
  m->arg = arg;
  int64_t ps = s->part_size;
  if ((p->len + ps - 1) / ps > MAX_PARTS)
    ps = (p->len + MAX_PARTS - 1) / MAX_PARTS;
  m->n_parts = (int)((p->len + ps - 1) / ps);
  m->parts = xcalloc((size_t)m->n_parts, sizeof(*m->parts));
  for (int i = 0; i < m->n_parts; i++) {
    m->parts[i].number = i + 1;
    m->parts[i].off = (int64_t)i * ps;
    m->parts[i].len = MIN(ps, p->len - (int64_t)i * ps);
    m->parts[i].m = m;
  }
  struct call *c =
      call_new(s, "CreateMultipartUpload", "POST", key, on_create, m);
  c->query = xstrdup("uploads=");
  add_sse_headers(c, 1);
  call_start(c);
}

/* --- GetObject --- */

struct get_op {
  char *tag; /* get_tag: the ETag, BACKEND_TAG_MAX bytes */
  backend_cb cb;
  void *arg;
};

static void on_get_done(struct call *c) {
  struct get_op *op = c->owner;
  backend_cb cb = op->cb;
  void *arg = op->arg;
  if (op->tag && !c->status)
    copy_etag(c, op->tag);
  int status = c->status;
  char *err = status ? xstrdup(c->errmsg) : NULL;
  call_free(c);
  free(op);
  cb(arg, status, err);
  free(err);
}

static void s3_get(struct backend *b, const char *key, int64_t off, int64_t len,
                   const struct sink *sk, backend_cb cb, void *arg) {
  struct s3 *s = b->priv;
  if (len == 0) {
    backend_defer(cb, arg, 0, NULL);
    return;
  }
  struct get_op *op = xcalloc(1, sizeof(*op));
  op->cb = cb;
  op->arg = arg;
  char *k = full_key(s, key);
  struct call *c = call_new(s, "GetObject", "GET", k, on_get_done, op);
  free(k);
  if (off > 0 || len > 0) {
    if (len > 0)
      call_header(c, "Range: bytes=%" PRId64 "-%" PRId64, off, off + len - 1);
    else
      call_header(c, "Range: bytes=%" PRId64 "-", off);
  }
  add_sse_headers(c, 0);
  if (sk->buf) {
    c->resp_to = sk->buf;
  } else {
    c->resp_fd = sk->fd;
    c->resp_off = sk->off;
  }
  call_start(c);
}

/* --- conditional writes (the lease) --- */

static void s3_get_tag(struct backend *b, const char *key, struct buf *out,
                       char *tag, backend_cb cb, void *arg) {
  struct s3 *s = b->priv;
  struct get_op *op = xcalloc(1, sizeof(*op));
  op->tag = tag;
  op->cb = cb;
  op->arg = arg;
  char *k = full_key(s, key);
  struct call *c = call_new(s, "GetObject", "GET", k, on_get_done, op);
  free(k);
  add_sse_headers(c, 0);
  c->resp_to = out;
  call_start(c);
}

/* PutObject with If-None-Match: * (create only) or If-Match: ETag. */
static void s3_put_cond(struct backend *b, const char *key, const uint8_t *data,
                        size_t len, const char *match, char *tag_out,
                        backend_cb cb, void *arg) {
  struct s3 *s = b->priv;
  struct put_op *op = xcalloc(1, sizeof(*op));
  op->s = s;
  op->cond = 1;
  op->tag_out = tag_out;
  op->cb = cb;
  op->arg = arg;
  char *k = full_key(s, key);
  struct call *c = call_new(s, "PutObject", "PUT", k, on_put_done, op);
  free(k);
  op->c = c;
  c->body = data;
  c->body_len = (int64_t)len;
  if (match)
    call_header(c, "If-Match: %s", match);
  else
    call_header(c, "If-None-Match: *");
  add_sse_headers(c, 1);
  op->hj.data = data;
  op->hj.fd = -1;
  op->hj.len = (int64_t)len;
  op->hj.done = on_put_hashed;
  op->hj.owner = op;
  hash_payload(&op->hj);
}

/* --- ListObjectsV2 --- */

struct list_op {
  struct s3 *s;
  char *prefix; /* full prefix */
  int delimiter;
  char *token;
  struct obj_list acc;
  struct obj_list *out;
  int pages;
  struct list_pages guard;
  char why[256]; /* why a page was refused */
  backend_cb cb;
  void *arg;
};

static void list_page(struct list_op *op);

static void list_end(struct list_op *op, int status, const char *err) {
  backend_cb cb = op->cb;
  void *arg = op->arg;
  if (!status) {
    obj_list_sort(&op->acc);
    for (size_t i = 0; i < op->acc.n; i++) {
      obj_list_add(op->out, op->acc.objs[i].key, op->acc.objs[i].size,
                   op->acc.objs[i].mtime_ns);
    }
    for (size_t i = 0; i < op->acc.n_prefixes; i++)
      obj_list_add_prefix(op->out, op->acc.prefixes[i]);
  }
  obj_list_destroy(&op->acc);
  list_pages_destroy(&op->guard);
  free(op->prefix);
  free(op->token);
  free(op);
  cb(arg, status, err);
}

/* Key relative to the replica root, or NULL if outside it. */
static const char *relative(const char *root, const char *key) {
  size_t n = strlen(root);
  return strncmp(key, root, n) ? NULL : key + n;
}

int s3_listing_parse(const char *body, size_t len, const char *root,
                     struct obj_list *acc, char **token, char *why,
                     size_t whylen) {
  why[0] = '\0';
  struct xml_node *x = xml_parse_err(body, len, why, whylen);
  if (!x || strcmp(x->name, "ListBucketResult")) {
    if (x)
      snprintf(why, whylen, "<%.40s> is not ListBucketResult", x->name);
    xml_free(x);
    return ERR_PROTOCOL;
  }
  for (struct xml_node *n = xml_child(x, "Contents"); n; n = xml_next(n)) {
    const char *key = xml_text(n, "Key");
    const char *size = xml_text(n, "Size");
    const char *lm = xml_text(n, "LastModified");
    const char *rel = key ? relative(root, key) : NULL;
    if (!rel || !*rel)
      continue;
    int64_t mtime = 0;
    if (lm)
      time_parse_rfc3339(lm, &mtime);
    long long sz = size ? strtoll(size, NULL, 10) : 0;
    obj_list_add(acc, rel, sz < 0 ? 0 : sz, mtime);
  }
  for (struct xml_node *n = xml_child(x, "CommonPrefixes"); n;
       n = xml_next(n)) {
    const char *p = xml_text(n, "Prefix");
    const char *rel = p ? relative(root, p) : NULL;
    if (rel && *rel)
      obj_list_add_prefix(acc, rel);
  }
  const char *trunc = xml_text(x, "IsTruncated");
  const char *next = xml_text(x, "NextContinuationToken");
  free(*token);
  *token = NULL;
  if (trunc && !strcmp(trunc, "true")) {
    if (!next || !*next) {
      snprintf(why, whylen, "IsTruncated without a NextContinuationToken");
      xml_free(x);
      return ERR_PROTOCOL;
    }
    *token = xstrdup(next);
  }
  xml_free(x);
  return 0;
}

static int parse_list(struct list_op *op, struct call *c) {
  int rc =
      s3_listing_parse((const char *)c->resp.data, c->resp.len, op->s->root,
                       &op->acc, &op->token, op->why, sizeof(op->why));
  return rc ? rc
            : list_pages_next(&op->guard, op->token, op->why, sizeof(op->why));
}

static void on_list_page(struct call *c) {
  struct list_op *op = c->owner;
  if (!c->status) {
    int rc = parse_list(op, c);
    if (rc) {
      char w[512];
      where(c, w, sizeof(w));
      msgf(c->errmsg, sizeof(c->errmsg),
           "%s %s: unreadable listing (page %d): %s", c->op, w, op->pages,
           op->why[0] ? op->why : "malformed");
      c->status = rc;
    }
  }
  if (c->status) {
    char *err = xstrdup(c->errmsg);
    int status = c->status;
    call_free(c);
    list_end(op, status, err);
    free(err);
    return;
  }
  call_free(c);
  if (op->token)
    list_page(op);
  else
    list_end(op, 0, NULL);
}

static void list_page(struct list_op *op) {
  /* The key shown in messages is the prefix listed. */
  struct call *c =
      call_new(op->s, "ListObjectsV2", "GET", NULL, on_list_page, op);
  c->about = xstrdup(op->prefix);
  op->pages++;
  struct buf q;
  buf_init(&q, 0);
  /* Written in canonical (sorted) order; the signer sorts anyway. */
  if (op->token) {
    char *t = sigv4_uri_encode(op->token, 0);
    buf_appendf(&q, "continuation-token=%s&", t);
    free(t);
  }
  if (op->delimiter)
    buf_appendf(&q, "delimiter=%%2F&");
  char *p = sigv4_uri_encode(op->prefix, 0);
  buf_appendf(&q, "list-type=2&max-keys=1000&prefix=%s", p);
  free(p);
  c->query = (char *)buf_steal(&q, NULL);
  call_start(c);
}

static void s3_list(struct backend *b, const char *prefix, int delimiter,
                    struct obj_list *out, backend_cb cb, void *arg) {
  struct s3 *s = b->priv;
  struct list_op *op = xcalloc(1, sizeof(*op));
  op->s = s;
  op->prefix = full_key(s, prefix ? prefix : "");
  op->delimiter = delimiter;
  op->out = out;
  op->cb = cb;
  op->arg = arg;
  list_page(op);
}

/* --- DeleteObjects --- */

struct del_op {
  struct s3 *s;
  int batches;
  int pending;
  size_t n_keys;
  size_t n_failed;
  int status;
  struct buf errs; /* "key (Code: Message), ..." */
  char first_err[640];
  backend_cb cb;
  void *arg;
};

static void xml_escape(struct buf *b, const char *s) {
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    switch (ch) {
    case '&':
      buf_appendf(b, "&amp;");
      break;
    case '<':
      buf_appendf(b, "&lt;");
      break;
    case '>':
      buf_appendf(b, "&gt;");
      break;
    case '"':
      buf_appendf(b, "&quot;");
      break;
    case '\'':
      buf_appendf(b, "&apos;");
      break;
    default:
      /* Tab and newline stay literal (XML keeps them in text); a CR would
       * be normalised away, so it and other controls become references. */
      if (ch < 0x20 && ch != '\t' && ch != '\n')
        buf_appendf(b, "&#x%X;", ch);
      else
        buf_append(b, s, 1);
    }
  }
}

static void del_end(struct del_op *op) {
  backend_cb cb = op->cb;
  void *arg = op->arg;
  int status = op->status;
  char *err = NULL;
  if (op->n_failed)
    err = xasprintf("DeleteObjects s3://%s/%s: %zu of %zu keys not deleted: "
                    "%.*s",
                    op->s->bucket, op->s->prefix, op->n_failed, op->n_keys,
                    (int)MIN(op->errs.len, 1500),
                    op->errs.data ? (char *)op->errs.data : "");
  else if (status)
    err = xstrdup(op->first_err);
  buf_destroy(&op->errs);
  free(op);
  cb(arg, status, err);
  free(err);
}

static void on_del_batch(struct call *c) {
  struct del_op *op = c->owner;
  if (!c->status) {
    struct xml_node *x = xml_parse((const char *)c->resp.data, c->resp.len);
    if (!x || strcmp(x->name, "DeleteResult")) {
      const char *code = x ? xml_text(x, "Error/Code") : NULL;
      char w[512];
      where(c, w, sizeof(w));
      msgf(c->errmsg, sizeof(c->errmsg), "%s %s: HTTP 200 %s", c->op, w,
           code ? code : "unreadable response");
      c->status = ERR_HTTP_STATUS;
    } else {
      for (struct xml_node *e = xml_child(x, "Error"); e; e = xml_next(e)) {
        const char *k = xml_text(e, "Key"), *code = xml_text(e, "Code");
        const char *msg = xml_text(e, "Message");
        log_error(NULL, op->s->b->name, "DeleteObjects s3://%s/%s: %s: %s",
                  op->s->bucket, k ? k : "?", code ? code : "error",
                  msg ? msg : "");
        op->n_failed++;
        if (op->errs.len < 4096)
          buf_appendf(&op->errs, "%s%s (%s%s%s)", op->errs.len ? ", " : "",
                      k ? k : "?", code ? code : "error",
                      msg && *msg ? ": " : "", msg ? msg : "");
        if (!op->status)
          op->status = code && is_auth_code(code) ? ERR_AUTH : ERR_HTTP_STATUS;
      }
    }
    xml_free(x);
  }
  if (c->status && !op->status) {
    op->status = c->status;
    msgf(op->first_err, sizeof(op->first_err), "%s", c->errmsg);
  } else if (c->status && !op->first_err[0]) {
    msgf(op->first_err, sizeof(op->first_err), "%s", c->errmsg);
  }
  call_free(c);
  if (--op->pending == 0)
    del_end(op);
}

static void s3_del(struct backend *b, char *const *keys, size_t n,
                   backend_cb cb, void *arg) {
  struct s3 *s = b->priv;
  if (n == 0) {
    backend_defer(cb, arg, 0, NULL);
    return;
  }
  struct del_op *op = xcalloc(1, sizeof(*op));
  op->s = s;
  op->cb = cb;
  op->arg = arg;
  op->n_keys = n;
  buf_init(&op->errs, 0);
  op->batches = (int)((n + DELETE_BATCH - 1) / DELETE_BATCH);
  op->pending = op->batches;
  for (size_t i = 0; i < n; i += DELETE_BATCH) {
    struct buf body;
    buf_init(&body, 0);
    buf_appendf(&body, "<Delete xmlns=\"http://s3.amazonaws.com/doc/"
                       "2006-03-01/\"><Quiet>true</Quiet>");
    for (size_t j = i; j < n && j < i + DELETE_BATCH; j++) {
      char *k = full_key(s, keys[j]);
      buf_appendf(&body, "<Object><Key>");
      xml_escape(&body, k);
      buf_appendf(&body, "</Key></Object>");
      free(k);
    }
    buf_appendf(&body, "</Delete>");
    size_t len;
    uint8_t *data = buf_steal(&body, &len);
    struct call *c =
        call_new(s, "DeleteObjects", "POST", NULL, on_del_batch, op);
    c->query = xstrdup("delete=");
    c->about = xstrdup(s->root);
    c->owned_body = data;
    c->body = data;
    c->body_len = (int64_t)len;
    sha256_hex(data, len, c->payload_hash);
    char md5[25];
    md5_base64(data, len, md5);
    call_header(c, "Content-MD5: %s", md5);
    call_header(c, "Content-Type: application/xml");
    call_start(c);
  }
}

/* --- open / close --- */

static int parse_endpoint(struct s3 *s, const char *ep, char *err,
                          size_t errlen) {
  const char *p = strstr(ep, "://");
  if (p) {
    s->scheme = xstrndup(ep, (size_t)(p - ep));
    for (char *c = s->scheme; *c; c++)
      *c = (char)tolower((unsigned char)*c);
    p += 3;
  } else {
    s->scheme = xstrdup("https");
    p = ep;
  }
  if (url_check_endpoint(ep, err, (unsigned)errlen))
    return ERR_CONFIG;
  const char *slash = strchr(p, '/');
  s->host = slash ? xstrndup(p, (size_t)(slash - p)) : xstrdup(p);
  char *at = strchr(s->host, '@'); /* userinfo: not sent, never shown */
  if (at)
    memmove(s->host, at + 1, strlen(at));
  char *bp = xstrdup(slash ? slash : "");
  size_t n = strlen(bp);
  while (n && bp[n - 1] == '/')
    bp[--n] = '\0';
  s->base_path = bp;
  return 0;
}

static int host_is_aws(const char *host) {
  char *h = xstrdup(host);
  char *colon = strrchr(h, ':');
  if (colon)
    *colon = '\0';
  int aws = str_has_suffix(h, ".amazonaws.com") ||
            str_has_suffix(h, ".amazonaws.com.cn");
  free(h);
  return aws;
}

/* s3.REGION.amazonaws.com, s3-REGION.amazonaws.com, s3.dualstack.R... */
static char *region_from_aws_host(const char *host) {
  const char *p = host;
  if (str_has_prefix(p, "s3.dualstack."))
    p += 13;
  else if (str_has_prefix(p, "s3.") || str_has_prefix(p, "s3-"))
    p += 3;
  else
    return NULL;
  const char *dot = strchr(p, '.');
  if (!dot || !str_has_prefix(dot, ".amazonaws.com"))
    return NULL;
  return xstrndup(p, (size_t)(dot - p));
}

static int64_t env_int(const char *name, int64_t def) {
  const char *v = getenv(name);
  if (!v || !*v)
    return def;
  char *end;
  long long n = strtoll(v, &end, 10);
  return *end || n <= 0 ? def : (int64_t)n;
}

static int open_sse(struct s3 *s, const struct replica_config *cfg, char *err,
                    size_t errlen) {
  const char *name = cfg->name ? cfg->name : "s3";
  if (cfg->sse && *cfg->sse) {
    if (strcmp(cfg->sse, "AES256") && strcmp(cfg->sse, "aws:kms")) {
      msgf(err, errlen, "replica %s: sse must be AES256 or aws:kms, not %s",
           name, cfg->sse);
      return ERR_CONFIG;
    }
    s->sse = xstrdup(cfg->sse);
  }
  if (cfg->sse_kms_key_id && *cfg->sse_kms_key_id) {
    if (!s->sse)
      s->sse = xstrdup("aws:kms");
    if (strcmp(s->sse, "aws:kms")) {
      msgf(err, errlen, "replica %s: sse-kms-key-id needs sse: aws:kms", name);
      return ERR_CONFIG;
    }
    s->sse_kms_key_id = xstrdup(cfg->sse_kms_key_id);
  }
  if (cfg->sse_c_key && *cfg->sse_c_key) {
    uint8_t *raw = NULL;
    size_t n = 0;
    int bad = base64_decode(cfg->sse_c_key, strlen(cfg->sse_c_key), 0, &raw,
                            &n) != 0 ||
              n != 32;
    char md5[25];
    if (!bad)
      md5_base64(raw, 32, md5);
    if (raw) {
      OPENSSL_cleanse(raw, n);
      free(raw);
    }
    if (bad) {
      msgf(err, errlen,
           "replica %s: sse-c-key must be the base64 of a 256-bit key", name);
      return ERR_CONFIG;
    }
    if (s->sse) {
      msgf(err, errlen, "replica %s: sse-c-key cannot be combined with sse",
           name);
      return ERR_CONFIG;
    }
    s->ssec_key = xstrdup(cfg->sse_c_key);
    s->ssec_md5 = xstrdup(md5);
  }
  if (cfg->storage_class && *cfg->storage_class)
    s->storage_class = xstrdup(cfg->storage_class);
  return 0;
}

static int s3_open(struct backend *b, const struct replica_config *cfg,
                   char *err, size_t errlen) {
  struct s3 *s = b->priv;
  const char *name = cfg->name ? cfg->name : "s3";
  int rc;
  s->b = b;
  if (!cfg->bucket || !*cfg->bucket) {
    msgf(err, errlen, "replica %s: bucket required for s3 replica", name);
    return ERR_CONFIG;
  }
  s->bucket = xstrdup(cfg->bucket);
  /* Key prefix: no leading or trailing '/', "." (from s3://bkt) is none. */
  const char *pp = cfg->path ? cfg->path : "";
  while (*pp == '/')
    pp++;
  s->prefix = xstrdup(!strcmp(pp, ".") ? "" : pp);
  size_t n = strlen(s->prefix);
  while (n && s->prefix[n - 1] == '/')
    s->prefix[--n] = '\0';
  s->root = *s->prefix ? xasprintf("%s/", s->prefix) : xstrdup("");
  if (cfg->endpoint && *cfg->endpoint) {
    rc = parse_endpoint(s, cfg->endpoint, err, errlen);
    if (rc)
      goto fail;
    s->aws = host_is_aws(s->host);
    s->path_style = cfg->force_path_style != TRI_FALSE;
  } else {
    s->scheme = xstrdup("https");
    s->base_path = xstrdup("");
    s->aws = 1;
    /* A dotted bucket name does not match *.s3.amazonaws.com's
     * certificate: path style, as the AWS SDK does. */
    s->path_style =
        cfg->force_path_style == TRI_TRUE || strchr(s->bucket, '.') != NULL;
  }
  if (cfg->region && *cfg->region)
    s->region = xstrdup(cfg->region);
  else if (s->host && s->aws)
    s->region = region_from_aws_host(s->host);
  if (!s->region && s->host && !getenv("SLUICE_S3_DISCOVER_REGION"))
    s->region = xstrdup("us-east-1");
  /* else: discovered before the first request. */
  s->skip_verify = cfg->skip_verify;
  if (s->skip_verify)
    log_warn(NULL, name,
             "skip-verify is set: TLS certificates of %s are not verified "
             "for this replica",
             s->host ? s->host : "s3.amazonaws.com");
  rc = open_sse(s, cfg, err, errlen);
  if (rc)
    goto fail;
  rc = aws_creds_provider_new(cfg, &b->pool, &s->creds, err, errlen);
  if (rc)
    goto fail;
  s->put_single_max = env_int("SLUICE_S3_MULTIPART_THRESHOLD", PUT_SINGLE_MAX);
  s->part_size =
      MAX(env_int("SLUICE_S3_PART_SIZE", PART_SIZE_MIN), PART_SIZE_FLOOR);
  s->part_parallel = (int)env_int("SLUICE_S3_PART_PARALLEL", PART_PARALLEL);
  b->desc = *s->prefix ? xasprintf("s3://%s/%s", s->bucket, s->prefix)
                       : xasprintf("s3://%s", s->bucket);
  return 0;
fail:
  b->ops->close(b);
  return rc;
}

static void s3_close(struct backend *b) {
  struct s3 *s = b->priv;
  if (!s)
    return;
  aws_creds_provider_free(s->creds);
  s->creds = NULL;
  free(s->bucket);
  free(s->prefix);
  free(s->root);
  free(s->region);
  free(s->scheme);
  free(s->host);
  free(s->base_path);
  free(s->sse);
  free(s->sse_kms_key_id);
  free(s->storage_class);
  if (s->ssec_key)
    OPENSSL_cleanse(s->ssec_key, strlen(s->ssec_key));
  free(s->ssec_key);
  free(s->ssec_md5);
  memset(s, 0, sizeof(*s));
}

char *s3_object_url(struct backend *b, const char *key) {
  struct s3 *s = b->priv;
  if (!s->region)
    return NULL;
  struct call *c = call_new(s, "", "GET", NULL, NULL, NULL);
  c->key = full_key(s, key);
  char *host, *path;
  target(c, &host, &path);
  char *url = xasprintf("%s://%s%s", s->scheme, host, path);
  free(host);
  free(path);
  call_free(c);
  return url;
}

const char *s3_region(struct backend *b) {
  return ((struct s3 *)b->priv)->region;
}

const struct backend_ops backend_s3 = {
    .name = "s3",
    .caps = BACKEND_CAP_RANGE | BACKEND_CAP_MULTIPART |
            BACKEND_CAP_BATCH_DELETE | BACKEND_CAP_COND,
    .priv_size = sizeof(struct s3),
    .open = s3_open,
    .close = s3_close,
    .put = s3_put,
    .get = s3_get,
    .list = s3_list,
    .del = s3_del,
    .get_tag = s3_get_tag,
    .put_cond = s3_put_cond,
};
