/*
 * Non-blocking HTTP on the event loop: one CURLM per process, driven by
 * uv_poll + uv_timer (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION).
 *
 * A request is a caller-owned struct that lives until its `done` callback.
 * Concurrency is bounded per pool (one pool per replica) and per process;
 * queued requests are served round-robin across pools, so one busy
 * database cannot starve the others.
 *
 * Retries: transport failures (connect, timeout, reset) and statuses 500,
 * 502, 503, 504 and 429 are retried with exponential backoff and jitter,
 * up to `max_retries` times.  `prepare` runs before every attempt, so a
 * backend can (re)sign the request with a fresh date or token.
 */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

struct http_pool {
  const char *name; /* for logs: the replica name */
  int max_inflight;
  /* internal */
  int inflight;
  struct http_request *queue_head, *queue_tail;
  struct http_pool *rr_next; /* round-robin ring of pools with a queue */
  int in_ring;
};

struct http_header {
  char *name;  /* lower-cased */
  char *value; /* trimmed */
};

struct http_request;
typedef void (*http_done_cb)(struct http_request *req, void *arg);
typedef int (*http_prepare_cb)(struct http_request *req, void *arg);

struct http_request {
  /* --- set by the caller --- */
  const char *method; /* "GET", "PUT", ... (static string) */
  char *url;          /* owned by the request (freed by http_request_free) */
  char **headers;     /* "Name: value", owned */
  size_t n_headers;
  /* Request body: memory (borrowed; must outlive the request) or a file
   * range when body_fd >= 0. */
  const uint8_t *body;
  size_t body_len;
  int body_fd;
  int64_t body_off;
  /* Response body: collected into resp_body (if set; its max is honoured),
   * or written to resp_fd at resp_off (if >= 0). */
  struct buf *resp_body;
  int resp_fd;
  int64_t resp_off;
  int skip_verify;
  long timeout_ms;     /* whole transfer; 0 = default (10 min) */
  int max_retries;     /* default set by http_request_init: 4 */
  struct http_pool *pool;
  http_prepare_cb prepare; /* optional, before each attempt */
  http_done_cb done;
  void *arg;

  /* --- results, valid in `done` --- */
  int status;            /* HTTP status, 0 if none */
  int error;             /* 0, or ERR_HTTP (transport) / ERR_CANCELED */
  char errmsg[256];      /* transport error text (no secrets) */
  struct http_header *resp_headers;
  size_t n_resp_headers;
  int attempts;
  int64_t bytes_sent;
  int64_t bytes_received;

  /* --- internal --- */
  void *easy;
  struct http_request *next;
  struct loop_timer *retry_timer;
  int64_t body_pos;
  int64_t resp_pos;
  struct curl_slist *slist;
};

int http_init(void);
/* Cancels queued requests (their done callbacks run with ERR_CANCELED)
 * and lets in-flight ones finish. */
void http_cancel_all(void);
int http_inflight(void);
void http_shutdown(void);

void http_request_init(struct http_request *req);
/* Frees url, headers and response headers (not the struct itself). */
void http_request_free(struct http_request *req);
void http_request_add_header(struct http_request *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Removes every header with this name (case-insensitive). */
void http_request_del_header(struct http_request *req, const char *name);
const char *http_response_header(const struct http_request *req,
                                 const char *name);
/* Queues the request.  `done` is always called, exactly once, later. */
void http_submit(struct http_request *req);

/* Limits for the whole process (default 64 in flight). */
void http_set_max_inflight(int n);

/* Percent-encoding per RFC 3986 (unreserved kept); if keep_slash, '/' is
 * kept.  Returns owned string. */
char *http_urlencode(const char *s, int keep_slash);

#endif
