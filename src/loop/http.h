/*
 * Non-blocking HTTP on the event loop: one CURLM per process, driven by
 * uv_poll + uv_timer (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION).
 *
 * A request is a caller-owned struct that lives until its `done` callback.
 * Concurrency is bounded per pool (one pool per replica) and per process;
 * queued requests are served round-robin across pools, so one busy
 * database cannot starve the others.
 *
 * Retries: transport failures (connect, timeout, reset, stall) and
 * statuses 500, 502, 503, 504 and 429 are retried with exponential backoff
 * and jitter (honouring Retry-After), up to `max_retries` times; a
 * `retry_check` hook can ask for more (S3's 400 RequestTimeout), nothing
 * else is retried (never a 403).  `prepare` runs before every attempt, so
 * a backend can (re)sign the request with a fresh date or token.
 *
 * Connections are reused through the multi handle's connection cache
 * (keep-alive); TLS sessions and DNS are shared.  TLS is verified unless a
 * request sets skip_verify.  Shutdown: http_drain() waits for what is in
 * flight up to a deadline and then aborts the rest (their done callbacks
 * run once, with ERR_CANCELED); http_shutdown() releases everything.
 */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

struct http_pool {
  const char *name; /* for logs: the replica name */
  int max_inflight;
  /* Statistics: requests submitted, attempts made (first tries plus
   * retries), retries, requests that ended in an error or a non-2xx. */
  int64_t n_requests;
  int64_t n_attempts;
  int64_t n_retries;
  int64_t n_failed;
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
/* Called when an attempt ended with a status the default policy would not
 * retry (e.g. a 400 whose body says RequestTimeout); return 1 to retry. */
typedef int (*http_retry_cb)(struct http_request *req, void *arg);

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
  /* Response body: appended to resp_body (if set; its max is honoured;
   * a retry truncates it back to its length at submit time), or written to
   * resp_fd at resp_off (if >= 0). */
  struct buf *resp_body;
  int resp_fd;
  int64_t resp_off;
  /* If set, bodies of non-2xx responses go here instead (error XML), so
   * an error never lands in the caller's file or buffer. */
  struct buf *err_body;
  int skip_verify;
  long timeout_ms;         /* whole transfer; 0 = none (a stall detector
                              aborts transfers that move nothing for 60 s) */
  long connect_timeout_ms; /* 0 = default (10 s) */
  int max_retries;         /* default set by http_request_init: 4 */
  struct http_pool *pool;
  http_prepare_cb prepare;   /* optional, before each attempt */
  http_retry_cb retry_check; /* optional */
  http_done_cb done;
  void *arg;

  /* --- results, valid in `done` --- */
  int status;       /* HTTP status, 0 if none */
  int error;        /* 0, or ERR_HTTP (transport) / ERR_CANCELED */
  char errmsg[256]; /* transport error text (no secrets) */
  struct http_header *resp_headers;
  size_t n_resp_headers;
  int attempts;
  int64_t bytes_sent;
  int64_t bytes_received;

  /* --- internal --- */
  void *easy; /* the transfer (owned by http.c) */
  struct http_request *next;
  struct http_request *act_prev, *act_next; /* started and not finished */
  int active;
  size_t resp_base;
  struct loop_timer *retry_timer;
  int64_t body_pos;
  int64_t resp_pos;
};

int http_init(void);
/* Cancels queued requests and those waiting to retry (their done callbacks
 * run with ERR_CANCELED) and lets in-flight ones finish. */
void http_cancel_all(void);
/* Cancels everything, in-flight transfers too: every done callback runs
 * (with ERR_CANCELED) before this returns. */
void http_abort_all(void);
/* Cancels every request of pool p, in flight too (the replica whose
 * database is being freed): their done callbacks run (ERR_CANCELED)
 * before this returns; other pools' requests go on.  The pool is then
 * idle and out of the round-robin ring (it may be freed). */
void http_pool_abort(struct http_pool *p);
/* Requests started and not finished (in flight or waiting to retry). */
int http_inflight(void);
/* Requests submitted and not finished (queued or started). */
int http_pending(void);
/* Shutdown drain: calls cb once nothing is pending, or after timeout_ms
 * (then aborts whatever is left first).  New requests may still be
 * submitted meanwhile; they are waited for too. */
void http_drain(uint64_t timeout_ms, void (*cb)(void *arg), void *arg);
/* Ends the HTTP layer: queued and retry-waiting requests get their
 * callbacks (ERR_CANCELED); transfers still in flight are dropped without
 * touching their request structs (whose owners may be freed already: call
 * http_abort_all() first to have their callbacks run).  Closes every
 * socket and the multi handle, so the loop can close cleanly. */
void http_shutdown(void);

/* Process-wide statistics (all pools). */
struct http_stats {
  int64_t requests, attempts, retries, failed;
};
void http_get_stats(struct http_stats *out);
/* An overall deadline for every request from now on (interactive
 * commands; the daemon sets none and retries patiently): attempts are cut
 * at it, retries that would start after it are not made, and requests
 * started after it fail at once, each with "no answer within the Ns
 * deadline (hint)" in errmsg.  ms <= 0 removes it. */
void http_set_deadline(int64_t ms, const char *hint);
/* First retry delay (default 250 ms, doubling, jittered); for tests. */
void http_set_retry_base_ms(uint64_t ms);

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
