/*
 * Socket readiness watches on the loop (uv_poll), for protocol libraries
 * that do their own non-blocking I/O on a socket (libssh2).
 */
#include <stdlib.h>
#include <uv.h>

#include "base/util.h"
#include "loop/loop.h"

uv_loop_t *loop_uv(void);

struct loop_poll {
  uv_poll_t h;
  loop_poll_cb cb;
  void *arg;
};

static void on_poll(uv_poll_t *h, int status, int events) {
  struct loop_poll *p = container_of(h, struct loop_poll, h);
  int ev = (events & UV_READABLE ? LOOP_POLL_READ : 0) |
           (events & (UV_WRITABLE | UV_DISCONNECT) ? LOOP_POLL_WRITE : 0);
  if (events & UV_DISCONNECT)
    ev |= LOOP_POLL_READ;
  p->cb(p->arg, status < 0 ? status : 0, ev);
}

int loop_poll_new(int fd, loop_poll_cb cb, void *arg, struct loop_poll **out) {
  struct loop_poll *p = xcalloc(1, sizeof(*p));
  int rc = uv_poll_init_socket(loop_uv(), &p->h, fd);
  if (rc) {
    free(p);
    return rc;
  }
  p->cb = cb;
  p->arg = arg;
  *out = p;
  return 0;
}

int loop_poll_start(struct loop_poll *p, int events) {
  int ev = (events & LOOP_POLL_READ ? UV_READABLE : 0) |
           (events & LOOP_POLL_WRITE ? UV_WRITABLE : 0);
  return uv_poll_start(&p->h, ev, on_poll);
}

void loop_poll_stop(struct loop_poll *p) {
  uv_poll_stop(&p->h);
}

static void on_poll_close(uv_handle_t *h) {
  free(container_of((uv_poll_t *)h, struct loop_poll, h));
}

void loop_poll_free(struct loop_poll *p) {
  if (!p)
    return;
  uv_poll_stop(&p->h);
  uv_close((uv_handle_t *)&p->h, on_poll_close);
}
