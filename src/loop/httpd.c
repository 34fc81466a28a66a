#include "loop/httpd.h"
#include "loop/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/log.h"

#define MAX_REQUEST 8192

struct httpd {
  uv_tcp_t tcp;
  httpd_handler handler;
  void *arg;
};

struct conn {
  uv_tcp_t tcp;
  struct httpd *srv;
  char req[MAX_REQUEST];
  size_t len;
  uv_write_t w;
  char *resp;
  int responded;
};

static void on_conn_close(uv_handle_t *h) {
  struct conn *c = container_of((uv_tcp_t *)h, struct conn, tcp);
  free(c->resp);
  free(c);
}

static void on_written(uv_write_t *w, int status) {
  (void)status;
  struct conn *c = container_of(w, struct conn, w);
  uv_close((uv_handle_t *)&c->tcp, on_conn_close);
}

static void respond(struct conn *c) {
  char method[8] = "", path[1024] = "";
  int status;
  struct buf body;
  buf_init(&body, 0);
  const char *ctype = "text/plain; charset=utf-8";
  if (sscanf(c->req, "%7s %1023s", method, path) != 2) {
    status = 400;
    buf_appendf(&body, "bad request\n");
  } else if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
    status = 405;
    buf_appendf(&body, "method not allowed\n");
  } else {
    char *q = strchr(path, '?');
    if (q)
      *q = '\0';
    status = c->srv->handler(c->srv->arg, path, &body, &ctype);
  }
  const char *reason = status == 200   ? "OK"
                       : status == 404 ? "Not Found"
                       : status == 503 ? "Service Unavailable"
                                       : "Error";
  struct buf out;
  buf_init(&out, 0);
  buf_appendf(&out,
              "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
              "Connection: close\r\n\r\n",
              status, reason, ctype, body.len);
  if (strcmp(method, "HEAD") && body.len)
    buf_append(&out, body.data, body.len);
  buf_destroy(&body);
  size_t n;
  c->resp = (char *)buf_steal(&out, &n);
  uv_buf_t b = uv_buf_init(c->resp, (unsigned)n);
  c->responded = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (uv_write(&c->w, (uv_stream_t *)&c->tcp, &b, 1, on_written))
    uv_close((uv_handle_t *)&c->tcp, on_conn_close);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)suggested;
  struct conn *c = container_of((uv_tcp_t *)h, struct conn, tcp);
  b->base = c->req + c->len;
  b->len = sizeof(c->req) - 1 - c->len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  struct conn *c = container_of((uv_tcp_t *)s, struct conn, tcp);
  if (n < 0 || c->responded) {
    if (!c->responded)
      uv_close((uv_handle_t *)&c->tcp, on_conn_close);
    return;
  }
  c->len += (size_t)n;
  c->req[c->len] = '\0';
  if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n") ||
      c->len >= sizeof(c->req) - 1)
    respond(c);
}

static void on_connection(uv_stream_t *server, int status) {
  struct httpd *srv = container_of((uv_tcp_t *)server, struct httpd, tcp);
  if (status < 0)
    return;
  struct conn *c = xcalloc(1, sizeof(*c));
  c->srv = srv;
  uv_tcp_init(loop_uv(), &c->tcp);
  if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
    uv_close((uv_handle_t *)&c->tcp, on_conn_close);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int httpd_start(const char *addr, httpd_handler h, void *arg,
                struct httpd **out, char *err, size_t errlen) {
  const char *colon = strrchr(addr, ':');
  if (!colon || !colon[1]) {
    snprintf(err, errlen, "must specify port for bind address: %s", addr);
    return -EINVAL;
  }
  char host[256];
  size_t hl = (size_t)(colon - addr);
  if (hl >= sizeof(host))
    hl = sizeof(host) - 1;
  memcpy(host, addr, hl);
  host[hl] = '\0';
  if (host[0] == '[' && hl > 1 && host[hl - 1] == ']') {
    memmove(host, host + 1, hl - 2);
    host[hl - 2] = '\0';
  }
  int port = atoi(colon + 1);
  struct sockaddr_storage ss;
  int rc;
  if (!host[0])
    rc = uv_ip6_addr("::", port, (struct sockaddr_in6 *)&ss);
  else if (!strcmp(host, "localhost"))
    rc = uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)&ss);
  else if (strchr(host, ':'))
    rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
  else
    rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (rc) {
    snprintf(err, errlen, "invalid bind address %s: %s", addr, uv_strerror(rc));
    return rc;
  }
  struct httpd *s = xcalloc(1, sizeof(*s));
  s->handler = h;
  s->arg = arg;
  uv_tcp_init(loop_uv(), &s->tcp);
  rc = uv_tcp_bind(&s->tcp, (struct sockaddr *)&ss, 0);
  if (rc && !host[0]) {
    /* No IPv6: all IPv4 interfaces. */
    uv_ip4_addr("0.0.0.0", port, (struct sockaddr_in *)&ss);
    rc = uv_tcp_bind(&s->tcp, (struct sockaddr *)&ss, 0);
  }
  if (!rc)
    rc = uv_listen((uv_stream_t *)&s->tcp, 64, on_connection);
  if (rc) {
    snprintf(err, errlen, "cannot listen on %s: %s", addr, uv_strerror(rc));
    uv_close((uv_handle_t *)&s->tcp, (uv_close_cb)free);
    return rc;
  }
  *out = s;
  return 0;
}

void httpd_stop(struct httpd *s) {
  if (s)
    uv_close((uv_handle_t *)&s->tcp, (uv_close_cb)free);
}
