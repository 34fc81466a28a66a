/*
 * The curl-multi-on-libuv glue without any server: a listening socket that
 * never answers (timeouts), a closed port (refused connections), and the
 * order in which queued requests start (fairness across pools, limits per
 * pool and per process), aborts and drains at shutdown.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "loop/http.h"
#include "loop/loop.h"
#include "t.h"

/* A socket that listens but never accepts: connects succeed (backlog),
 * requests get no answer. */
static int listen_silent(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(0x7f000001);
  bind(fd, (struct sockaddr *)&a, sizeof(a));
  listen(fd, 64);
  socklen_t l = sizeof(a);
  getsockname(fd, (struct sockaddr *)&a, &l);
  *port = ntohs(a.sin_port);
  return fd;
}

static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(0x7f000001);
  bind(fd, (struct sockaddr *)&a, sizeof(a));
  socklen_t l = sizeof(a);
  getsockname(fd, (struct sockaddr *)&a, &l);
  close(fd);
  return ntohs(a.sin_port);
}

struct rec {
  struct http_request req;
  char tag;
  int done_calls;
};

static char g_order[64];
static int g_norder;
static int g_max_pool_inflight;
static int g_done;
static volatile int g_all_done;
static int g_expect;

static int on_prepare(struct http_request *req, void *arg) {
  struct rec *r = arg;
  if (g_norder < (int)sizeof(g_order) - 1 && req->attempts == 1)
    g_order[g_norder++] = r->tag;
  if (req->pool->inflight > g_max_pool_inflight)
    g_max_pool_inflight = req->pool->inflight;
  return 0;
}

static void on_done(struct http_request *req, void *arg) {
  struct rec *r = arg;
  (void)req;
  r->done_calls++;
  if (++g_done == g_expect)
    g_all_done = 1;
}

static void rec_init(struct rec *r, char tag, const char *url,
                     struct http_pool *pool) {
  memset(r, 0, sizeof(*r));
  http_request_init(&r->req);
  r->tag = tag;
  r->req.url = xstrdup(url);
  r->req.pool = pool;
  r->req.prepare = on_prepare;
  r->req.done = on_done;
  r->req.arg = r;
}

static void reset(int expect) {
  memset(g_order, 0, sizeof(g_order));
  g_norder = 0;
  g_max_pool_inflight = 0;
  g_done = 0;
  g_all_done = 0;
  g_expect = expect;
}

TEST(timeout_completes_and_is_retried) {
  int port;
  int fd = listen_silent(&port);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);
  struct rec r;
  reset(1);
  rec_init(&r, 'a', url, NULL);
  r.req.timeout_ms = 200;
  r.req.max_retries = 1;
  http_submit(&r.req);
  loop_run_until(&g_all_done);
  CHECK_INT(r.done_calls, 1);
  CHECK_INT(r.req.error, ERR_HTTP);
  CHECK_INT(r.req.attempts, 2);
  CHECK(strstr(r.req.errmsg, "imeout") || strstr(r.req.errmsg, "timed out"));
  http_request_free(&r.req);
  close(fd);
}

TEST(refused_retried_with_backoff_then_reported) {
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", closed_port());
  struct rec r;
  reset(1);
  rec_init(&r, 'a', url, NULL);
  r.req.max_retries = 3;
  int64_t t0 = time_mono_ns();
  http_submit(&r.req);
  loop_run_until(&g_all_done);
  int64_t ms = (time_mono_ns() - t0) / NS_PER_MS;
  CHECK_INT(r.req.attempts, 4);
  CHECK_INT(r.req.error, ERR_HTTP);
  /* Backoff from 20 ms doubling, jittered in [base/2, base]: 30..140 ms. */
  CHECK(ms >= 30);
  http_request_free(&r.req);
}

TEST(fair_round_robin_across_pools_and_limits) {
  int port;
  int fd = listen_silent(&port);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);
  struct http_pool a = {.name = "a", .max_inflight = 8};
  struct http_pool b = {.name = "b", .max_inflight = 8};
  struct rec ra[10], rb[3];
  http_set_max_inflight(1);
  reset(13);
  for (int i = 0; i < 10; i++) {
    rec_init(&ra[i], 'a', url, &a);
    ra[i].req.timeout_ms = 30;
    ra[i].req.max_retries = 0;
    http_submit(&ra[i].req);
  }
  for (int i = 0; i < 3; i++) {
    rec_init(&rb[i], 'b', url, &b);
    rb[i].req.timeout_ms = 30;
    rb[i].req.max_retries = 0;
    http_submit(&rb[i].req);
  }
  loop_run_until(&g_all_done);
  printf("  start order with one slot: %s\n", g_order);
  /* The busy pool does not starve the other: b's three requests start
   * within the first seven, not after a's ten. */
  const char *last_b = strrchr(g_order, 'b');
  CHECK(last_b && last_b - g_order < 7);
  for (int i = 0; i < 10; i++)
    http_request_free(&ra[i].req);
  for (int i = 0; i < 3; i++)
    http_request_free(&rb[i].req);

  /* Per-pool bound with a large process bound. */
  http_set_max_inflight(64);
  struct http_pool small = {.name = "small", .max_inflight = 2};
  struct rec rs[6];
  reset(6);
  for (int i = 0; i < 6; i++) {
    rec_init(&rs[i], 's', url, &small);
    rs[i].req.timeout_ms = 50;
    rs[i].req.max_retries = 0;
    http_submit(&rs[i].req);
  }
  CHECK_INT(small.inflight, 2);
  CHECK_INT(http_pending(), 6);
  loop_run_until(&g_all_done);
  CHECK(g_max_pool_inflight <= 2);
  CHECK_INT(small.n_requests, 6);
  CHECK_INT(small.n_failed, 6);
  for (int i = 0; i < 6; i++)
    http_request_free(&rs[i].req);
  close(fd);
}

static void set_flag(void *arg) {
  *(volatile int *)arg = 1;
}

TEST(abort_all_calls_every_done_once) {
  int port;
  int fd = listen_silent(&port);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);
  struct http_pool p = {.name = "p", .max_inflight = 2};
  struct rec r[5];
  reset(5);
  for (int i = 0; i < 5; i++) {
    rec_init(&r[i], 'x', url, &p);
    http_submit(&r[i].req);
  }
  /* Let the two in flight connect and send. */
  volatile int later = 0;
  struct loop_timer *t = loop_timer_new(set_flag, (void *)&later);
  loop_timer_start(t, 50);
  loop_run_until(&later);
  loop_timer_free(t);
  CHECK_INT(p.inflight, 2);
  http_abort_all();
  CHECK_INT(g_done, 5);
  for (int i = 0; i < 5; i++) {
    CHECK_INT(r[i].done_calls, 1);
    CHECK_INT(r[i].req.error, ERR_CANCELED);
    http_request_free(&r[i].req);
  }
  CHECK_INT(http_pending(), 0);
  CHECK_INT(http_inflight(), 0);
  close(fd);
}

/* A replica's stop (core/replica.c replica_quiesce): its pool's requests
 * end now, in flight, queued and waiting to retry alike, each done once;
 * another pool's go on; the pool is left idle and out of the ring, so it
 * may be freed. */
TEST(pool_abort_ends_only_that_pool) {
  int port;
  int fd = listen_silent(&port);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);
  struct http_pool *p = xcalloc(1, sizeof(*p));
  p->name = "p";
  struct http_pool q = {.name = "q", .max_inflight = 2};
  struct rec rp[4], rq[2], rr;
  http_set_max_inflight(6);
  reset(4);
  /* One of p's retrying (a refused connection, retried for long), two in
   * flight, two queued behind p's bound; q's two in flight. */
  p->max_inflight = 3;
  char refused[64];
  snprintf(refused, sizeof(refused), "http://127.0.0.1:%d/x", closed_port());
  rec_init(&rr, 'r', refused, p);
  rr.req.max_retries = 100;
  http_submit(&rr.req);
  for (int i = 0; i < 4; i++) {
    rec_init(&rp[i], 'p', url, p);
    http_submit(&rp[i].req);
  }
  for (int i = 0; i < 2; i++) {
    rec_init(&rq[i], 'q', url, &q);
    rq[i].req.timeout_ms = 300;
    rq[i].req.max_retries = 0;
    http_submit(&rq[i].req);
  }
  volatile int later = 0;
  struct loop_timer *t = loop_timer_new(set_flag, (void *)&later);
  loop_timer_start(t, 50);
  loop_run_until(&later);
  loop_timer_free(t);
  CHECK_INT(p->inflight, 3);
  CHECK(p->queue_head != NULL);
  CHECK_INT(q.inflight, 2);
  http_pool_abort(p);
  for (int i = 0; i < 4; i++) {
    CHECK_INT(rp[i].done_calls, 1);
    CHECK_INT(rp[i].req.error, ERR_CANCELED);
  }
  CHECK_INT(rr.done_calls, 1);
  CHECK_INT(rr.req.error, ERR_CANCELED);
  CHECK_INT(p->inflight, 0);
  CHECK(!p->queue_head && !p->in_ring);
  free(p); /* (ASan: nothing of http.c points to it now) */
  for (int i = 0; i < 2; i++)
    CHECK_INT(rq[i].done_calls, 0);
  g_done = 0;
  g_all_done = 0;
  g_expect = 2;
  loop_run_until(&g_all_done);
  for (int i = 0; i < 2; i++) {
    CHECK_INT(rq[i].done_calls, 1);
    CHECK(rq[i].req.error != ERR_CANCELED);
    http_request_free(&rq[i].req);
  }
  for (int i = 0; i < 4; i++)
    http_request_free(&rp[i].req);
  http_request_free(&rr.req);
  CHECK_INT(http_pending(), 0);
  http_set_max_inflight(64);
  close(fd);
}

static int fail_prepare(struct http_request *req, void *arg) {
  (void)req;
  (void)arg;
  return ERR_AUTH;
}

/* http.h: `done` is called exactly once, later, even when the request
 * cannot start: never inside http_submit (a caller submitting in a loop
 * may be freed by its own callback), and also not when it is aborted
 * before that later comes. */
TEST(failed_prepare_completes_later_once) {
  struct http_pool p = {.name = "p", .max_inflight = 4};
  struct rec r[3];
  reset(3);
  for (int i = 0; i < 3; i++) {
    rec_init(&r[i], 'f', "http://127.0.0.1:1/x", &p);
    r[i].req.prepare = fail_prepare;
    http_submit(&r[i].req);
    CHECK_INT(r[i].done_calls, 0);
  }
  loop_run_until(&g_all_done);
  for (int i = 0; i < 3; i++) {
    CHECK_INT(r[i].done_calls, 1);
    CHECK_INT(r[i].req.error, ERR_AUTH);
    http_request_free(&r[i].req);
  }
  reset(2);
  for (int i = 0; i < 2; i++) {
    rec_init(&r[i], 'f', "http://127.0.0.1:1/x", &p);
    r[i].req.prepare = fail_prepare;
    http_submit(&r[i].req);
  }
  http_abort_all();
  CHECK_INT(g_done, 2);
  /* The deferred completion must not run them a second time. */
  volatile int later = 0;
  struct loop_timer *t = loop_timer_new(set_flag, (void *)&later);
  loop_timer_start(t, 20);
  loop_run_until(&later);
  loop_timer_free(t);
  for (int i = 0; i < 2; i++) {
    CHECK_INT(r[i].done_calls, 1);
    http_request_free(&r[i].req);
  }
  CHECK_INT(http_pending(), 0);
}

static void on_drained(void *arg) {
  (*(volatile int *)arg)++;
}

TEST(drain_with_nothing_pending_is_async) {
  volatile int n = 0;
  http_drain(1000, on_drained, (void *)&n);
  CHECK_INT(n, 0);
  loop_run_until(&n);
  CHECK_INT(n, 1);
}

int main(void) {
  struct log_config lc = {.level = LOG_ERROR, .to_stderr = 1};
  log_setup(&lc);
  loop_init();
  http_init();
  http_set_retry_base_ms(20);
  RUN(timeout_completes_and_is_retried);
  RUN(refused_retried_with_backoff_then_reported);
  RUN(fair_round_robin_across_pools_and_limits);
  RUN(abort_all_calls_every_done_once);
  RUN(pool_abort_ends_only_that_pool);
  RUN(drain_with_nothing_pending_is_async);
  RUN(failed_prepare_completes_later_once);
  http_shutdown();
  CHECK_INT(loop_close(), 0);
  T_DONE();
}
