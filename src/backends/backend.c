/*
 * Backend registry, metric-counting wrappers and synchronous helpers.
 */
#include "backends/backend.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "loop/loop.h"

/* Every store sluice can talk to, by `type` (the URL scheme).  A backend is
 * added here and nowhere else. */
const struct backend_ops *const backend_registry[] = {
    &backend_file, &backend_s3,   &backend_gcs,
    &backend_abs,  &backend_sftp, NULL};

/* Types Litestream 0.3 knows that this build has no backend for. */
static int type_is_planned(const char *type) {
  return !strcmp(type, "sftp");
}

const struct backend_ops *backend_find(const char *type) {
  if (!type)
    return NULL;
  if (!strcmp(type, "gs"))
    type = "gcs";
  for (const struct backend_ops *const *o = backend_registry; *o; o++)
    if (!strcmp((*o)->name, type))
      return *o;
  return NULL;
}

/* The replica's age section: each string is parsed like a key file
 * (Litestream calls age.ParseRecipients/ParseIdentities once per string).
 * Messages name the replica, the key and the line, never the key. */
static int open_age(struct backend *b, const struct replica_config *cfg,
                    char *err, size_t errlen) {
  char why[256];
  for (size_t i = 0; i < cfg->n_age_recipients; i++)
    if (age_keys_add_recipients(&b->age, cfg->age_recipients[i], why,
                                sizeof(why))) {
      snprintf(err, errlen, "replica %s: age.recipients[%zu]: %s", b->name, i,
               why);
      return ERR_AGE_KEY;
    }
  for (size_t i = 0; i < cfg->n_age_identities; i++)
    if (age_keys_add_identities(&b->age, cfg->age_identities[i], why,
                                sizeof(why))) {
      snprintf(err, errlen, "replica %s: age.identities[%zu]: %s", b->name, i,
               why);
      return ERR_AGE_KEY;
    }
  return 0;
}

struct backend *backend_open(const struct replica_config *cfg, char *err,
                             size_t errlen) {
  const char *type = cfg->type ? cfg->type : "file";
  const struct backend_ops *ops = backend_find(type);
  if (!ops) {
    snprintf(err, errlen,
             type_is_planned(type) ? "replica %s: %s backend not available yet"
                                   : "replica %s: unknown replica type %s",
             cfg->name ? cfg->name : type, type);
    return NULL;
  }
  struct backend *b = xcalloc(1, sizeof(*b));
  b->ops = ops;
  b->name = xstrdup(cfg->name ? cfg->name : ops->name);
  b->pool.name = b->name;
  b->pool.max_inflight = 8;
  if (ops->priv_size)
    b->priv = xcalloc(1, ops->priv_size);
  int rc = open_age(b, cfg, err, errlen);
  if (!rc)
    rc = ops->open(b, cfg, err, errlen);
  if (rc) {
    age_keys_destroy(&b->age);
    free(b->priv);
    free(b->name);
    free(b->desc);
    free(b);
    return NULL;
  }
  if (!b->desc)
    b->desc = xstrdup(ops->name);
  return b;
}

void backend_close(struct backend *b) {
  if (!b)
    return;
  /* A request of its pool still due would finish into freed memory. */
  assert(!b->pool.inflight && !b->pool.queue_head && !b->pool.in_ring);
  if (b->ops->close)
    b->ops->close(b);
  age_keys_destroy(&b->age);
  free(b->priv);
  free(b->name);
  free(b->desc);
  free(b);
}

/* --- counting wrappers --- */

struct counted {
  struct backend *b;
  enum backend_op op;
  int64_t bytes;
  const struct sink *sink_copy_src;
  struct buf *sink_buf;
  size_t sink_buf_before;
  backend_cb cb;
  void *arg;
};

static void on_counted(void *arg, int status, const char *err) {
  struct counted *c = arg;
  if (status)
    c->b->op_errors++;
  else if (c->op == BOP_GET && c->sink_buf)
    c->b->op_bytes[BOP_GET] += (int64_t)(c->sink_buf->len - c->sink_buf_before);
  else
    c->b->op_bytes[c->op] += c->bytes;
  backend_cb cb = c->cb;
  void *cbarg = c->arg;
  free(c);
  cb(cbarg, status, err);
}

static void (*request_hook)(void);

void backend_set_request_hook(void (*fn)(void)) {
  request_hook = fn;
}

static struct counted *counted_new(struct backend *b, enum backend_op op,
                                   backend_cb cb, void *arg) {
  struct counted *c = xcalloc(1, sizeof(*c));
  c->b = b;
  c->op = op;
  c->cb = cb;
  c->arg = arg;
  b->op_count[op]++;
  if (request_hook)
    request_hook();
  return c;
}

void backend_put(struct backend *b, const char *key, const struct payload *p,
                 backend_cb cb, void *arg) {
  struct counted *c = counted_new(b, BOP_PUT, cb, arg);
  c->bytes = p->len;
  b->ops->put(b, key, p, on_counted, c);
}

void backend_get(struct backend *b, const char *key, int64_t off, int64_t len,
                 const struct sink *s, backend_cb cb, void *arg) {
  struct counted *c = counted_new(b, BOP_GET, cb, arg);
  if (s->buf) {
    c->sink_buf = s->buf;
    c->sink_buf_before = s->buf->len;
  } else if (len > 0) {
    c->bytes = len;
  }
  b->ops->get(b, key, off, len, s, on_counted, c);
}

void backend_list(struct backend *b, const char *prefix, int delimiter,
                  struct obj_list *out, backend_cb cb, void *arg) {
  struct counted *c = counted_new(b, BOP_LIST, cb, arg);
  b->ops->list(b, prefix, delimiter, out, on_counted, c);
}

void backend_sweep(struct backend *b, int64_t min_age_ns, size_t *removed,
                   backend_cb cb, void *arg) {
  *removed = 0;
  if (!b->ops->sweep) {
    cb(arg, 0, NULL);
    return;
  }
  b->ops->sweep(b, min_age_ns, removed, cb, arg);
}

void backend_del(struct backend *b, char *const *keys, size_t n, backend_cb cb,
                 void *arg) {
  struct counted *c = counted_new(b, BOP_DELETE, cb, arg);
  b->ops->del(b, keys, n, on_counted, c);
}

/* --- conditional writes (core/lease.c) --- */

void backend_content_tag(const uint8_t *data, size_t len, char *tag) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < len; i++) {
    h ^= data[i];
    h *= 0x100000001b3ULL;
  }
  snprintf(tag, BACKEND_TAG_MAX, "%016llx-%zu", (unsigned long long)h, len);
}

/* The emulation for stores without conditional writes. */
struct emu_op {
  struct backend *b;
  char *key;
  struct buf cur;
  struct buf *out; /* get_tag */
  char *tag;       /* get_tag: out */
  const uint8_t *data;
  size_t len;
  char *match; /* put_cond: NULL = only if absent */
  char *tag_out;
  backend_cb cb;
  void *arg;
};

static void emu_end(struct emu_op *op, int status, const char *err) {
  backend_cb cb = op->cb;
  void *arg = op->arg;
  buf_destroy(&op->cur);
  free(op->key);
  free(op->match);
  free(op);
  cb(arg, status, err);
}

static void on_emu_get(void *arg, int status, const char *err) {
  struct emu_op *op = arg;
  if (!status)
    backend_content_tag(op->out->data, op->out->len, op->tag);
  emu_end(op, status, err);
}

static void on_emu_put(void *arg, int status, const char *err) {
  struct emu_op *op = arg;
  if (!status)
    backend_content_tag(op->data, op->len, op->tag_out);
  emu_end(op, status, err);
}

static void on_emu_read(void *arg, int status, const char *err) {
  struct emu_op *op = arg;
  char cur[BACKEND_TAG_MAX];
  if (status && status != ERR_NOT_FOUND) {
    emu_end(op, status, err);
    return;
  }
  int ok;
  if (status == ERR_NOT_FOUND) {
    ok = op->match == NULL;
  } else {
    backend_content_tag(op->cur.data, op->cur.len, cur);
    ok = op->match && !strcmp(cur, op->match);
  }
  if (!ok) {
    char msg[512];
    snprintf(msg, sizeof(msg), "conditional put %s/%s: %s", op->b->desc,
             op->key, err_str(ERR_PRECONDITION));
    emu_end(op, ERR_PRECONDITION, msg);
    return;
  }
  struct payload p = {.data = op->data, .fd = -1, .len = (int64_t)op->len};
  backend_put(op->b, op->key, &p, on_emu_put, op);
}

static struct emu_op *emu_new(struct backend *b, const char *key, backend_cb cb,
                              void *arg) {
  struct emu_op *op = xcalloc(1, sizeof(*op));
  op->b = b;
  op->key = xstrdup(key);
  buf_init(&op->cur, 1 << 20);
  op->cb = cb;
  op->arg = arg;
  return op;
}

void backend_get_tag(struct backend *b, const char *key, struct buf *out,
                     char *tag, backend_cb cb, void *arg) {
  if (b->ops->get_tag) {
    struct counted *c = counted_new(b, BOP_GET, cb, arg);
    c->sink_buf = out;
    c->sink_buf_before = out->len;
    b->ops->get_tag(b, key, out, tag, on_counted, c);
    return;
  }
  struct emu_op *op = emu_new(b, key, cb, arg);
  op->out = out;
  op->tag = tag;
  struct sink s = {.buf = out, .fd = -1};
  backend_get(b, key, 0, -1, &s, on_emu_get, op);
}

void backend_put_cond(struct backend *b, const char *key, const uint8_t *data,
                      size_t len, const char *match, char *tag_out,
                      backend_cb cb, void *arg) {
  if (b->ops->put_cond) {
    struct counted *c = counted_new(b, BOP_PUT, cb, arg);
    c->bytes = (int64_t)len;
    b->ops->put_cond(b, key, data, len, match, tag_out, on_counted, c);
    return;
  }
  struct emu_op *op = emu_new(b, key, cb, arg);
  op->data = data;
  op->len = len;
  op->match = match ? xstrdup(match) : NULL;
  op->tag_out = tag_out;
  struct sink s = {.buf = &op->cur, .fd = -1};
  backend_get(b, key, 0, -1, &s, on_emu_read, op);
}

/* --- synchronous helpers --- */

void sync_wait_init(struct sync_wait *w, char *err, size_t errlen) {
  w->done = 0;
  w->status = 0;
  w->err = err;
  w->errlen = errlen;
}

void sync_wait_cb(void *arg, int status, const char *err) {
  struct sync_wait *w = arg;
  w->status = status;
  if (status && w->err && w->errlen)
    snprintf(w->err, w->errlen, "%s", err ? err : err_str(status));
  w->done = 1;
}

int sync_wait_run(struct sync_wait *w) {
  int rc = loop_run_until(&w->done);
  if (rc && w->err && w->errlen)
    snprintf(w->err, w->errlen, "%s", err_str(rc));
  return rc ? rc : w->status;
}

int backend_put_sync(struct backend *b, const char *key,
                     const struct payload *p, char *err, size_t errlen) {
  struct sync_wait w;
  sync_wait_init(&w, err, errlen);
  backend_put(b, key, p, sync_wait_cb, &w);
  return sync_wait_run(&w);
}

int backend_get_sync(struct backend *b, const char *key, int64_t off,
                     int64_t len, const struct sink *s, char *err,
                     size_t errlen) {
  struct sync_wait w;
  sync_wait_init(&w, err, errlen);
  backend_get(b, key, off, len, s, sync_wait_cb, &w);
  return sync_wait_run(&w);
}

int backend_list_sync(struct backend *b, const char *prefix, int delimiter,
                      struct obj_list *out, char *err, size_t errlen) {
  struct sync_wait w;
  sync_wait_init(&w, err, errlen);
  backend_list(b, prefix, delimiter, out, sync_wait_cb, &w);
  return sync_wait_run(&w);
}

int backend_del_sync(struct backend *b, char *const *keys, size_t n, char *err,
                     size_t errlen) {
  struct sync_wait w;
  sync_wait_init(&w, err, errlen);
  backend_del(b, keys, n, sync_wait_cb, &w);
  return sync_wait_run(&w);
}

/* --- listings --- */

void obj_list_destroy(struct obj_list *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->objs[i].key);
  free(l->objs);
  for (size_t i = 0; i < l->n_prefixes; i++)
    free(l->prefixes[i]);
  free(l->prefixes);
  strset_destroy(&l->prefix_set);
  memset(l, 0, sizeof(*l));
}

void obj_list_add(struct obj_list *l, const char *key, int64_t size,
                  int64_t mtime_ns) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 64;
    l->objs = xrealloc(l->objs, l->cap * sizeof(*l->objs));
  }
  l->objs[l->n].key = xstrdup(key);
  l->objs[l->n].size = size;
  l->objs[l->n].mtime_ns = mtime_ns;
  l->n++;
}

void obj_list_add_prefix(struct obj_list *l, const char *prefix) {
  if (!strset_add(&l->prefix_set, prefix))
    return;
  if (l->n_prefixes == l->cap_prefixes) {
    l->cap_prefixes = l->cap_prefixes ? 2 * l->cap_prefixes : 16;
    l->prefixes = xrealloc(l->prefixes, l->cap_prefixes * sizeof(char *));
  }
  l->prefixes[l->n_prefixes++] = xstrdup(prefix);
}

static int cmp_obj(const void *a, const void *b) {
  return strcmp(((const struct obj_info *)a)->key,
                ((const struct obj_info *)b)->key);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void obj_list_sort(struct obj_list *l) {
  if (l->n > 1)
    qsort(l->objs, l->n, sizeof(*l->objs), cmp_obj);
  if (l->n_prefixes > 1)
    qsort(l->prefixes, l->n_prefixes, sizeof(char *), cmp_str);
}

int list_pages_next(struct list_pages *lp, const char *token, char *why,
                    size_t whylen) {
  static int max_pages;
  if (!max_pages) {
    const char *e = getenv("SLUICE_LIST_MAX_PAGES");
    max_pages = e && atoi(e) > 0 ? atoi(e) : BACKEND_LIST_MAX_PAGES;
  }
  lp->pages++;
  if (!token)
    return 0;
  if (lp->pages >= max_pages) {
    snprintf(why, whylen, "listing not finished after %d pages", lp->pages);
    return ERR_PROTOCOL;
  }
  if (!strset_add(&lp->tokens, token)) {
    snprintf(why, whylen,
             "page %d repeats an earlier continuation token: the listing "
             "would never end",
             lp->pages);
    return ERR_PROTOCOL;
  }
  return 0;
}

void list_pages_destroy(struct list_pages *lp) {
  strset_destroy(&lp->tokens);
  lp->pages = 0;
}
