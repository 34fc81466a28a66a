/*
 * curl's multi interface wired into the libuv loop.
 *
 * curl tells us which sockets to watch (socket_cb) and when to call it back
 * (timer_cb); we translate that into uv_poll handles and one uv_timer.  Every
 * time libuv reports activity we call curl_multi_socket_action() and then
 * read all completion messages (check_done), also after a timeout fires,
 * so a transfer that ends on a timeout is never left unread.
 */
#include "loop/http.h"
#include "loop/internal.h"

#include <assert.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <uv.h>

#include "base/err.h"
#include "base/log.h"
#include "loop/loop.h"

#define CONNECT_TIMEOUT_MS 10000L
#define STALL_SEC 60L

struct sock_ctx {
  uv_poll_t poll;
  curl_socket_t fd;
  struct sock_ctx *prev, *next;
};

static CURLM *g_multi;
static uv_timer_t g_timeout;
static int g_ready;
static int g_max_inflight = 64;
static int g_inflight;
static struct http_pool g_default_pool = {.name = "default",
                                          .max_inflight = 64};
/* FIFO of pools that have queued requests and a free slot. */
static struct http_pool *g_ring_head, *g_ring_tail;
/* Requests waiting for a retry timer. */
struct retry_wait {
  struct http_request *req;
  struct retry_wait *next;
};
static struct retry_wait *g_retrying;
/* Started and not finished, for http_abort_all(). */
static struct http_request *g_active;
/* Every uv_poll handle we opened, so shutdown can close leftovers. */
static struct sock_ctx *g_socks;
static CURLSH *g_share;
static struct http_stats g_stats;
static uint64_t g_retry_base_ms = 250;
static int g_pending; /* submitted and not finished */
/* Shutdown drain. */
static void (*g_drain_cb)(void *);
static void *g_drain_arg;
static struct loop_timer *g_drain_timer;
/* Requests that could not start (prepare or curl setup failed), finished
 * from g_fail_timer so that `done` never runs inside http_submit() or
 * inside another request's completion (linked through `next`). */
static struct http_request *g_failed;
static struct loop_timer *g_fail_timer;

static void schedule(void);
static void check_done(void);

/* One transfer: owned by this module, not by the request, so shutdown can
 * free transfers whose requests' owners are already gone. */
struct xfer {
  CURL *e;
  struct curl_slist *sl;
  struct http_request *req;
  struct xfer *prev, *next;
};
static struct xfer *g_xfers;

static void xfer_free(struct xfer *x) {
  if (x->prev)
    x->prev->next = x->next;
  else
    g_xfers = x->next;
  if (x->next)
    x->next->prev = x->prev;
  curl_multi_remove_handle(g_multi, x->e);
  curl_easy_cleanup(x->e);
  curl_slist_free_all(x->sl);
  free(x);
}

/* --- socket and timer glue --- */

static void on_sock_close(uv_handle_t *h) {
  free(container_of((uv_poll_t *)h, struct sock_ctx, poll));
}

static void sock_unlink(struct sock_ctx *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    g_socks = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

static void on_poll(uv_poll_t *h, int status, int events) {
  struct sock_ctx *c = container_of(h, struct sock_ctx, poll);
  int flags = 0;
  int running;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;
  } else {
    if (events & UV_READABLE)
      flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
      flags |= CURL_CSELECT_OUT;
  }
  curl_multi_socket_action(g_multi, c->fd, flags, &running);
  check_done();
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
                     void *socketp) {
  (void)easy;
  (void)userp;
  struct sock_ctx *c = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (c) {
      uv_poll_stop(&c->poll);
      sock_unlink(c);
      uv_close((uv_handle_t *)&c->poll, on_sock_close);
      curl_multi_assign(g_multi, s, NULL);
    }
    return 0;
  }
  if (!c) {
    c = xcalloc(1, sizeof(*c));
    c->fd = s;
    if (uv_poll_init_socket(loop_uv(), &c->poll, s)) {
      free(c);
      return -1;
    }
    c->next = g_socks;
    if (g_socks)
      g_socks->prev = c;
    g_socks = c;
    curl_multi_assign(g_multi, s, c);
  }
  int events = 0;
  if (what & CURL_POLL_IN)
    events |= UV_READABLE;
  if (what & CURL_POLL_OUT)
    events |= UV_WRITABLE;
  uv_poll_start(&c->poll, events, on_poll);
  return 0;
}

static void on_timeout(uv_timer_t *t) {
  (void)t;
  int running;
  curl_multi_socket_action(g_multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done();
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  (void)userp;
  if (timeout_ms < 0)
    uv_timer_stop(&g_timeout);
  else
    uv_timer_start(&g_timeout, on_timeout, (uint64_t)timeout_ms, 0);
  return 0;
}

int http_init(void) {
  if (g_ready)
    return 0;
  if (curl_global_init(CURL_GLOBAL_DEFAULT))
    return ERR_HTTP;
  g_multi = curl_multi_init();
  if (!g_multi)
    return ERR_HTTP;
  curl_multi_setopt(g_multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(g_multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(g_multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                    (long)g_max_inflight);
  curl_multi_setopt(g_multi, CURLMOPT_MAXCONNECTS, (long)g_max_inflight);
  /* The multi handle already shares connections and the DNS cache among
   * its transfers; the share adds TLS session resumption for new
   * connections to a host we talked to before. */
  g_share = curl_share_init();
  if (g_share) {
    curl_share_setopt(g_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(g_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  }
  uv_timer_init(loop_uv(), &g_timeout);
  g_ready = 1;
  return 0;
}

void http_set_retry_base_ms(uint64_t ms) {
  g_retry_base_ms = ms ? ms : 1;
}

void http_get_stats(struct http_stats *out) {
  *out = g_stats;
}

int http_pending(void) {
  return g_pending;
}

void http_set_max_inflight(int n) {
  if (n < 1)
    n = 1;
  g_max_inflight = n;
  g_default_pool.max_inflight = n;
  if (g_multi) {
    curl_multi_setopt(g_multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)n);
    curl_multi_setopt(g_multi, CURLMOPT_MAXCONNECTS, (long)n);
  }
}

int http_inflight(void) {
  return g_inflight;
}

void http_shutdown(void) {
  if (!g_ready)
    return;
  /* Queued and retry-waiting requests get their callbacks, as from
   * http_cancel_all().  Transfers still in flight are dropped without
   * touching their requests: their owners may be freed by now (call
   * http_abort_all() earlier to have their callbacks run). */
  http_cancel_all();
  int abandoned = 0;
  while (g_xfers) {
    xfer_free(g_xfers);
    abandoned++;
  }
  if (abandoned)
    log_debug(NULL, NULL, "shutdown: %d HTTP transfer%s abandoned", abandoned,
              abandoned == 1 ? "" : "s");
  g_active = NULL;
  g_failed = NULL;
  if (g_fail_timer) {
    loop_timer_free(g_fail_timer);
    g_fail_timer = NULL;
  }
  g_inflight = 0;
  g_pending = 0;
  if (g_drain_timer) {
    loop_timer_free(g_drain_timer);
    g_drain_timer = NULL;
  }
  g_drain_cb = NULL;
  curl_multi_cleanup(g_multi);
  g_multi = NULL;
  if (g_share) {
    curl_share_cleanup(g_share);
    g_share = NULL;
  }
  /* Sockets curl did not report removed before cleanup. */
  while (g_socks) {
    struct sock_ctx *c = g_socks;
    sock_unlink(c);
    uv_poll_stop(&c->poll);
    uv_close((uv_handle_t *)&c->poll, on_sock_close);
  }
  uv_timer_stop(&g_timeout);
  uv_close((uv_handle_t *)&g_timeout, NULL);
  g_ready = 0;
}

/* --- requests --- */

void http_request_init(struct http_request *req) {
  memset(req, 0, sizeof(*req));
  req->body_fd = -1;
  req->resp_fd = -1;
  req->max_retries = 4;
}

static void free_resp_headers(struct http_request *req) {
  for (size_t i = 0; i < req->n_resp_headers; i++) {
    free(req->resp_headers[i].name);
    free(req->resp_headers[i].value);
  }
  free(req->resp_headers);
  req->resp_headers = NULL;
  req->n_resp_headers = 0;
}

void http_request_free(struct http_request *req) {
  free(req->url);
  req->url = NULL;
  for (size_t i = 0; i < req->n_headers; i++)
    free(req->headers[i]);
  free(req->headers);
  req->headers = NULL;
  req->n_headers = 0;
  free_resp_headers(req);
}

void http_request_add_header(struct http_request *req, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *h = xvasprintf(fmt, ap);
  va_end(ap);
  req->headers = xrealloc(req->headers, (req->n_headers + 1) * sizeof(char *));
  req->headers[req->n_headers++] = h;
}

void http_request_del_header(struct http_request *req, const char *name) {
  size_t n = strlen(name), j = 0;
  for (size_t i = 0; i < req->n_headers; i++) {
    const char *h = req->headers[i];
    if (!strncasecmp(h, name, n) && h[n] == ':')
      free(req->headers[i]);
    else
      req->headers[j++] = req->headers[i];
  }
  req->n_headers = j;
}

const char *http_response_header(const struct http_request *req,
                                 const char *name) {
  for (size_t i = 0; i < req->n_resp_headers; i++)
    if (!strcasecmp(req->resp_headers[i].name, name))
      return req->resp_headers[i].value;
  return NULL;
}

char *http_urlencode(const char *s, int keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s);
  char *out = xmalloc(3 * n + 1), *o = out;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
        (keep_slash && *p == '/')) {
      *o++ = (char)*p;
    } else {
      *o++ = '%';
      *o++ = hex[*p >> 4];
      *o++ = hex[*p & 15];
    }
  }
  *o = '\0';
  return out;
}

static size_t on_read(char *ptr, size_t size, size_t nmemb, void *userp) {
  struct http_request *req = userp;
  size_t want = size * nmemb;
  int64_t left = (int64_t)req->body_len - req->body_pos;
  if (left <= 0)
    return 0;
  if ((int64_t)want > left)
    want = (size_t)left;
  if (req->body_fd >= 0) {
    ssize_t n = pread_full(req->body_fd, ptr, want,
                           (off_t)(req->body_off + req->body_pos));
    if (n <= 0)
      return CURL_READFUNC_ABORT;
    want = (size_t)n;
  } else {
    memcpy(ptr, req->body + req->body_pos, want);
  }
  req->body_pos += (int64_t)want;
  return want;
}

static int on_seek(void *userp, curl_off_t offset, int origin) {
  struct http_request *req = userp;
  if (origin != SEEK_SET || offset < 0 || offset > (curl_off_t)req->body_len)
    return CURL_SEEKFUNC_CANTSEEK;
  req->body_pos = offset;
  return CURL_SEEKFUNC_OK;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userp) {
  struct http_request *req = userp;
  size_t n = size * nmemb;
  req->bytes_received += (int64_t)n;
  int ok = req->status / 100 == 2;
  if (!ok && req->err_body) {
    /* Error bodies are small XML/JSON; keep the first 64 KiB. */
    if (req->err_body->len < 65536)
      buf_append(req->err_body, ptr, MIN(n, 65536 - req->err_body->len));
    return n;
  }
  /* Only keep the body of the final response (not of 100 Continue). */
  if (req->resp_fd >= 0 && ok) {
    if (pwrite_full(req->resp_fd, ptr, n,
                    (off_t)(req->resp_off + req->resp_pos))) {
      snprintf(req->errmsg, sizeof(req->errmsg), "cannot write response: %s",
               strerror(errno));
      return 0;
    }
    req->resp_pos += (int64_t)n;
    return n;
  }
  if (req->resp_body) {
    if (buf_append(req->resp_body, ptr, n)) {
      snprintf(req->errmsg, sizeof(req->errmsg),
               "response larger than %zu bytes", req->resp_body->max);
      req->error = ERR_TOO_BIG;
      return 0;
    }
  }
  return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userp) {
  struct http_request *req = userp;
  size_t n = size * nmemb;
  if (n >= 5 && !strncmp(ptr, "HTTP/", 5)) {
    /* A new response (e.g. after 100 Continue) replaces the headers. */
    free_resp_headers(req);
    const char *sp = memchr(ptr, ' ', n);
    if (sp)
      req->status = atoi(sp + 1);
    return n;
  }
  const char *colon = memchr(ptr, ':', n);
  if (!colon)
    return n;
  size_t nl = (size_t)(colon - ptr);
  const char *v = colon + 1, *end = ptr + n;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
    end--;
  struct http_header h;
  h.name = xstrndup(ptr, nl);
  for (char *p = h.name; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  h.value = xstrndup(v, (size_t)(end - v));
  req->resp_headers =
      xrealloc(req->resp_headers,
               (req->n_resp_headers + 1) * sizeof(*req->resp_headers));
  req->resp_headers[req->n_resp_headers++] = h;
  return n;
}

static int64_t g_deadline_ns; /* CLOCK_MONOTONIC; 0 = none */
static int64_t g_deadline_ms;
static char g_deadline_hint[64];

void http_set_deadline(int64_t ms, const char *hint) {
  g_deadline_ms = ms > 0 ? ms : 0;
  g_deadline_ns = ms > 0 ? time_mono_ns() + ms * NS_PER_MS : 0;
  snprintf(g_deadline_hint, sizeof(g_deadline_hint), "%s", hint ? hint : "");
}

/* Milliseconds left before the deadline (at least 1), or 0 if none. */
static long deadline_left_ms(void) {
  if (!g_deadline_ns)
    return 0;
  int64_t left = (g_deadline_ns - time_mono_ns()) / NS_PER_MS;
  return left < 1 ? 1 : (long)MIN(left, (int64_t)LONG_MAX);
}

static int deadline_passed(int64_t in_ms) {
  return g_deadline_ns && time_mono_ns() + in_ms * NS_PER_MS >= g_deadline_ns;
}

static void deadline_msg(struct http_request *req) {
  char d[40];
  duration_format(g_deadline_ms * NS_PER_MS, d);
  snprintf(req->errmsg, sizeof(req->errmsg),
           "no answer within the %s deadline%s%s%s", d,
           g_deadline_hint[0] ? " (" : "", g_deadline_hint,
           g_deadline_hint[0] ? ")" : "");
}

static int setup_easy(struct http_request *req) {
  CURL *e = curl_easy_init();
  if (!e)
    return ERR_HTTP;
  struct xfer *x = xcalloc(1, sizeof(*x));
  x->e = e;
  x->req = req;
  x->next = g_xfers;
  if (g_xfers)
    g_xfers->prev = x;
  g_xfers = x;
  req->easy = x;
  curl_easy_setopt(e, CURLOPT_URL, req->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, x);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  /* URLs are built and signed by the backends: send the path as written
   * (no squashing of "/./" or "/../" inside object keys). */
  curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
  if (g_share)
    curl_easy_setopt(e, CURLOPT_SHARE, g_share);
  long connect_ms = req->connect_timeout_ms > 0 ? req->connect_timeout_ms
                                                : CONNECT_TIMEOUT_MS;
  long total_ms = req->timeout_ms > 0 ? req->timeout_ms : 0;
  long left = deadline_left_ms();
  if (left) {
    connect_ms = MIN(connect_ms, left);
    total_ms = total_ms ? MIN(total_ms, left) : left;
  }
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
  if (total_ms > 0)
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, total_ms);
  /* A transfer that moves less than 1 byte/s for STALL_SEC is dead (a
   * dropped connection without RST); a large upload may take long. */
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, STALL_SEC);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, req);
  /* TLS verification is curl's default; only skip-verify turns it off, for
   * that replica's requests alone. */
  if (req->skip_verify) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  int has_body = req->body_len > 0 || req->body != NULL || req->body_fd >= 0;
  const char *m = req->method ? req->method : "GET";
  if (!strcmp(m, "HEAD")) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (!strcmp(m, "PUT")) {
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->body_len);
  } else if (!strcmp(m, "POST")) {
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
  } else if (strcmp(m, "GET")) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    if (has_body) {
      curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->body_len);
    }
  }
  if (has_body || !strcmp(m, "PUT") || !strcmp(m, "POST")) {
    curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(e, CURLOPT_READDATA, req);
    curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(e, CURLOPT_SEEKDATA, req);
  }
  struct curl_slist *sl = NULL;
  for (size_t i = 0; i < req->n_headers; i++)
    sl = curl_slist_append(sl, req->headers[i]);
  /* No "Expect: 100-continue" round trip, and no curl default type. */
  sl = curl_slist_append(sl, "Expect:");
  if (!strcmp(m, "POST"))
    sl = curl_slist_append(sl, "Content-Type:");
  x->sl = sl;
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, sl);
  return 0;
}

static void cleanup_easy(struct http_request *req) {
  if (req->easy) {
    xfer_free(req->easy);
    req->easy = NULL;
  }
}

static void ring_push(struct http_pool *p) {
  if (p->in_ring)
    return;
  p->in_ring = 1;
  p->rr_next = NULL;
  if (g_ring_tail)
    g_ring_tail->rr_next = p;
  else
    g_ring_head = p;
  g_ring_tail = p;
}

static struct http_pool *ring_pop(void) {
  struct http_pool *p = g_ring_head;
  if (!p)
    return NULL;
  g_ring_head = p->rr_next;
  if (!g_ring_head)
    g_ring_tail = NULL;
  p->in_ring = 0;
  p->rr_next = NULL;
  return p;
}

static void active_add(struct http_request *req) {
  req->active = 1;
  req->act_prev = NULL;
  req->act_next = g_active;
  if (g_active)
    g_active->act_prev = req;
  g_active = req;
}

static void active_del(struct http_request *req) {
  if (!req->active)
    return;
  if (req->act_prev)
    req->act_prev->act_next = req->act_next;
  else
    g_active = req->act_next;
  if (req->act_next)
    req->act_next->act_prev = req->act_prev;
  req->act_prev = req->act_next = NULL;
  req->active = 0;
}

static void check_drained(void);

/* Ends a started request: frees its slot and calls done. */
static void finish(struct http_request *req) {
  struct http_pool *p = req->pool;
  active_del(req);
  p->inflight--;
  g_inflight--;
  g_pending--;
  if (req->error || req->status / 100 != 2) {
    p->n_failed++;
    g_stats.failed++;
  }
  if (p->queue_head && p->inflight < p->max_inflight)
    ring_push(p);
  req->done(req, req->arg);
  schedule();
  check_drained();
}

static void on_fail_timer(void *arg) {
  (void)arg;
  /* Take the list: done callbacks may submit requests that fail again. */
  struct http_request *req = g_failed;
  g_failed = NULL;
  while (req) {
    struct http_request *next = req->next;
    req->next = NULL;
    finish(req);
    req = next;
  }
}

static void fail_later(struct http_request *req) {
  if (!g_fail_timer)
    g_fail_timer = loop_timer_new(on_fail_timer, NULL);
  req->next = g_failed;
  g_failed = req;
  loop_timer_start(g_fail_timer, 0);
}

/* Takes req off the failed list if it is there (http_abort_all finishes
 * it itself). */
static void unfail(struct http_request *req) {
  for (struct http_request **pp = &g_failed; *pp; pp = &(*pp)->next)
    if (*pp == req) {
      *pp = req->next;
      req->next = NULL;
      return;
    }
}

static void start(struct http_request *req) {
  req->attempts++;
  req->pool->n_attempts++;
  g_stats.attempts++;
  req->status = 0;
  req->error = 0;
  req->errmsg[0] = '\0';
  req->body_pos = 0;
  req->resp_pos = 0;
  free_resp_headers(req);
  if (req->resp_body && req->resp_body->len > req->resp_base)
    req->resp_body->len = req->resp_base;
  if (req->err_body)
    buf_reset(req->err_body);
  if (deadline_passed(0)) {
    req->error = ERR_HTTP;
    deadline_msg(req);
    finish(req);
    return;
  }
  if (req->prepare) {
    int rc = req->prepare(req, req->arg);
    if (rc) {
      req->error = rc;
      if (!req->errmsg[0])
        snprintf(req->errmsg, sizeof(req->errmsg), "%s", err_str(rc));
      fail_later(req);
      return;
    }
  }
  int rc = setup_easy(req);
  if (!rc &&
      curl_multi_add_handle(g_multi, ((struct xfer *)req->easy)->e) != CURLM_OK)
    rc = ERR_HTTP;
  if (rc) {
    cleanup_easy(req);
    req->error = ERR_HTTP;
    snprintf(req->errmsg, sizeof(req->errmsg), "cannot start transfer");
    fail_later(req);
  }
}

static void schedule(void) {
  while (g_inflight < g_max_inflight) {
    struct http_pool *p = ring_pop();
    if (!p)
      return;
    struct http_request *req = p->queue_head;
    if (!req)
      continue;
    p->queue_head = req->next;
    if (!p->queue_head)
      p->queue_tail = NULL;
    req->next = NULL;
    p->inflight++;
    g_inflight++;
    /* Back of the ring: the other pools get their turn first. */
    if (p->queue_head && p->inflight < p->max_inflight)
      ring_push(p);
    active_add(req);
    start(req);
  }
}

void http_submit(struct http_request *req) {
  if (!g_ready)
    http_init();
  if (!req->pool)
    req->pool = &g_default_pool;
  if (req->pool->max_inflight < 1)
    req->pool->max_inflight = 1;
  req->next = NULL;
  req->attempts = 0;
  req->resp_base = req->resp_body ? req->resp_body->len : 0;
  req->pool->n_requests++;
  g_stats.requests++;
  g_pending++;
  struct http_pool *p = req->pool;
  if (p->queue_tail)
    p->queue_tail->next = req;
  else
    p->queue_head = req;
  p->queue_tail = req;
  if (p->inflight < p->max_inflight)
    ring_push(p);
  schedule();
}

static int retryable(const struct http_request *req, CURLcode cc) {
  if (req->error == ERR_CANCELED || req->error == ERR_TOO_BIG)
    return 0;
  switch (cc) {
  case CURLE_OK:
    break;
  case CURLE_COULDNT_CONNECT:
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_SSL_CONNECT_ERROR:
    return 1;
  default:
    return 0;
  }
  return req->status == 500 || req->status == 502 || req->status == 503 ||
         req->status == 504 || req->status == 429;
}

static void on_retry_timer(void *arg) {
  struct http_request *req = arg;
  struct retry_wait **pp = &g_retrying;
  while (*pp && (*pp)->req != req)
    pp = &(*pp)->next;
  if (*pp) {
    struct retry_wait *w = *pp;
    *pp = w->next;
    free(w);
  }
  loop_timer_free(req->retry_timer);
  req->retry_timer = NULL;
  start(req);
}

/* Exponential backoff with full jitter in [base/2, base], base doubling
 * from g_retry_base_ms up to 20 s; a server's Retry-After (seconds) is
 * honoured up to the same cap. */
static uint64_t retry_delay(const struct http_request *req) {
  int shift = req->attempts - 1 < 10 ? req->attempts - 1 : 10;
  uint64_t base = g_retry_base_ms << shift;
  if (base > 20000)
    base = 20000;
  uint32_t r;
  random_bytes(&r, sizeof(r));
  uint64_t delay = base / 2 + r % (base / 2 + 1);
  const char *ra = http_response_header(req, "retry-after");
  if (ra && isdigit((unsigned char)*ra)) {
    uint64_t s = strtoull(ra, NULL, 10) * 1000;
    if (s > delay)
      delay = s < 20000 ? s : 20000;
  }
  return delay;
}

static void check_done(void) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(g_multi, &left))) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    CURL *e = msg->easy_handle;
    CURLcode cc = msg->data.result;
    struct xfer *x = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
    struct http_request *req = x->req;
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_off_t up = 0;
    curl_easy_getinfo(e, CURLINFO_SIZE_UPLOAD_T, &up);
    req->bytes_sent += (int64_t)up;
    req->status = (int)code;
    if (cc != CURLE_OK) {
      if (req->error != ERR_TOO_BIG)
        req->error = ERR_HTTP;
      if (cc != CURLE_WRITE_ERROR || !req->errmsg[0])
        snprintf(req->errmsg, sizeof(req->errmsg), "%s",
                 curl_easy_strerror(cc));
    }
    cleanup_easy(req);
    int again = retryable(req, cc);
    if (!again && cc == CURLE_OK && req->status / 100 != 2 && req->retry_check)
      again = req->retry_check(req, req->arg);
    uint64_t delay = again ? retry_delay(req) : 0;
    /* A timeout at the deadline is the deadline's; any other error is
     * kept as it is, just not retried past the deadline. */
    if (cc == CURLE_OPERATION_TIMEDOUT && deadline_passed(100))
      deadline_msg(req);
    if (again && deadline_passed((int64_t)delay))
      again = 0;
    if (again && req->attempts <= req->max_retries) {
      req->pool->n_retries++;
      g_stats.retries++;
      if (log_enabled(LOG_DEBUG))
        log_debug(NULL, req->pool->name,
                  "retrying %s after %s (attempt %d, in %llums)",
                  req->method ? req->method : "GET",
                  req->status ? "HTTP error" : req->errmsg, req->attempts,
                  (unsigned long long)delay);
      struct retry_wait *w = xcalloc(1, sizeof(*w));
      w->req = req;
      w->next = g_retrying;
      g_retrying = w;
      req->retry_timer = loop_timer_new(on_retry_timer, req);
      loop_timer_start(req->retry_timer, delay);
      continue;
    }
    finish(req);
  }
}

static void cancel(struct http_request *req) {
  req->error = ERR_CANCELED;
  snprintf(req->errmsg, sizeof(req->errmsg), "canceled");
}

void http_cancel_all(void) {
  /* Queued requests: fail them now. */
  struct http_pool *p;
  while ((p = ring_pop())) {
    struct http_request *req;
    while ((req = p->queue_head)) {
      p->queue_head = req->next;
      if (!p->queue_head)
        p->queue_tail = NULL;
      cancel(req);
      g_pending--;
      p->n_failed++;
      g_stats.failed++;
      req->done(req, req->arg);
    }
  }
  /* Requests waiting for a retry: fail them too (they hold a slot). */
  while (g_retrying) {
    struct retry_wait *w = g_retrying;
    g_retrying = w->next;
    struct http_request *req = w->req;
    free(w);
    loop_timer_free(req->retry_timer);
    req->retry_timer = NULL;
    cancel(req);
    finish(req);
  }
  check_drained();
}

/* Ends an active request as canceled: its transfer is torn down and
 * its done callback runs (once). */
static void abort_active(struct http_request *req) {
  unfail(req);
  if (req->easy) {
    cleanup_easy(req);
    req->status = 0;
  }
  cancel(req);
  finish(req);
}

void http_abort_all(void) {
  if (!g_ready)
    return;
  http_cancel_all();
  /* finish() may start queued requests (freed slots) and done callbacks
   * may submit more: cancel again after each abort. */
  while (g_active) {
    struct http_request *req = g_active;
    abort_active(req);
    http_cancel_all();
  }
}

static void ring_remove(struct http_pool *p) {
  struct http_pool *prev = NULL;
  for (struct http_pool *q = g_ring_head; q; prev = q, q = q->rr_next) {
    if (q != p)
      continue;
    if (prev)
      prev->rr_next = q->rr_next;
    else
      g_ring_head = q->rr_next;
    if (g_ring_tail == q)
      g_ring_tail = prev;
    q->in_ring = 0;
    q->rr_next = NULL;
    return;
  }
}

void http_pool_abort(struct http_pool *p) {
  if (!g_ready)
    return;
  /* One request at a time: a done callback may submit more (to this pool
   * or another) or finish others. */
  for (;;) {
    struct http_request *req = p->queue_head;
    if (req) {
      p->queue_head = req->next;
      if (!p->queue_head)
        p->queue_tail = NULL;
      req->next = NULL;
      cancel(req);
      g_pending--;
      p->n_failed++;
      g_stats.failed++;
      req->done(req, req->arg);
      continue;
    }
    struct retry_wait **wp = &g_retrying;
    while (*wp && (*wp)->req->pool != p)
      wp = &(*wp)->next;
    if (*wp) {
      struct retry_wait *w = *wp;
      *wp = w->next;
      req = w->req;
      free(w);
      loop_timer_free(req->retry_timer);
      req->retry_timer = NULL;
      cancel(req);
      finish(req);
      continue;
    }
    for (req = g_active; req && req->pool != p; req = req->act_next)
      ;
    if (!req)
      break;
    abort_active(req);
  }
  ring_remove(p);
  assert(!p->inflight && !p->queue_head && !p->in_ring);
  check_drained();
}

/* --- drain --- */

static void drain_fire(void) {
  void (*cb)(void *) = g_drain_cb;
  void *arg = g_drain_arg;
  g_drain_cb = NULL;
  g_drain_arg = NULL;
  if (g_drain_timer) {
    loop_timer_free(g_drain_timer);
    g_drain_timer = NULL;
  }
  if (cb)
    cb(arg);
}

static void check_drained(void) {
  if (g_drain_cb && g_pending == 0)
    drain_fire();
}

static void on_drain_timeout(void *arg) {
  (void)arg;
  if (g_pending)
    log_warn(NULL, NULL, "shutdown: aborting %d HTTP request%s still in flight",
             g_pending, g_pending == 1 ? "" : "s");
  void (*cb)(void *) = g_drain_cb;
  g_drain_cb = NULL; /* abort without firing from check_drained */
  http_abort_all();
  g_drain_cb = cb;
  drain_fire();
}

void http_drain(uint64_t timeout_ms, void (*cb)(void *arg), void *arg) {
  g_drain_cb = cb;
  g_drain_arg = arg;
  if (g_pending == 0) {
    /* Still asynchronous for the caller: fire from the loop. */
    g_drain_timer = loop_timer_new(on_drain_timeout, NULL);
    loop_timer_start(g_drain_timer, 0);
    return;
  }
  g_drain_timer = loop_timer_new(on_drain_timeout, NULL);
  loop_timer_start(g_drain_timer, timeout_ms);
}
