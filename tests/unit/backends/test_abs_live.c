/*
 * The Azure Blob Storage backend against Azurite (started by
 * tests/servers/test-servers.sh; port $AZ_PORT, default 10000), through the
 * backend API on the real loop.  Exits 77 (skipped) when Azurite cannot be
 * reached.  Every run works in its own container.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/base64.h"
#include "backends/sharedkey.h"
#include "backends/xml.h"
#include "base/err.h"
#include "base/util.h"
#include "loop/http.h"
#include "loop/loop.h"
#include "t.h"
#include "t_live.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define ACCOUNT "devstoreaccount1"
#define DEV_KEY                                                                \
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOt"   \
  "r/KBHBeksoGMGw=="

static int port;
static char endpoint[128]; /* http://127.0.0.1:PORT/devstoreaccount1 */
static char container[64];

/* --- raw signed requests, for fixtures and for checks the backend API
 * does not expose --- */

struct raw {
  struct http_request req;
  struct buf body;
  volatile int done;
};

static int on_raw_prepare(struct http_request *req, void *arg) {
  struct raw *r = arg;
  char date[32];
  http_request_del_header(req, "x-ms-date");
  http_request_del_header(req, "Authorization");
  sharedkey_format_date(time_now_ns(), date);
  http_request_add_header(req, "x-ms-date: %s", date);
  uint8_t *key;
  size_t keylen;
  base64_decode(DEV_KEY, strlen(DEV_KEY), 0, &key, &keylen);
  char *auth =
      sharedkey_authorization(req->method, req->url, ACCOUNT, key, keylen,
                              req->headers, req->n_headers, req->body_len);
  free(key);
  http_request_add_header(req, "Authorization: %s", auth);
  free(auth);
  (void)r;
  return 0;
}

static void on_raw_done(struct http_request *req, void *arg) {
  struct raw *r = arg;
  (void)req;
  r->done = 1;
}

/* METHOD endpoint/path; returns the status; body in r->body. */
static int raw(struct raw *r, const char *method, const char *path) {
  memset(r, 0, sizeof(*r));
  http_request_init(&r->req);
  buf_init(&r->body, 0);
  r->req.method = method;
  r->req.url = xasprintf("%s/%s", endpoint, path);
  http_request_add_header(&r->req, "x-ms-version: %s", SHAREDKEY_VERSION);
  r->req.resp_body = &r->body;
  r->req.prepare = on_raw_prepare;
  r->req.done = on_raw_done;
  r->req.arg = r;
  r->req.max_retries = 0;
  http_submit(&r->req);
  loop_run_until(&r->done);
  return r->req.status;
}

static void raw_free(struct raw *r) {
  http_request_free(&r->req);
  buf_destroy(&r->body);
}

static int create_container(const char *name) {
  struct raw r;
  char *p = xasprintf("%s?restype=container", name);
  int st = raw(&r, "PUT", p);
  free(p);
  raw_free(&r);
  return st;
}

/* --- helpers --- */

static struct replica_config base_cfg(void) {
  struct replica_config c;
  memset(&c, 0, sizeof(c));
  c.type = "abs";
  c.name = "abs";
  c.bucket = container;
  c.path = "db/one";
  c.endpoint = endpoint;
  c.account_name = ACCOUNT;
  c.account_key = DEV_KEY;
  return c;
}

/* --- tests --- */

TEST(small_put_get_roundtrip) {
  struct replica_config c = base_cfg();
  struct backend *b = open_cfg(&c);
  CHECK(b != NULL);
  if (!b)
    return;
  const char *msg = "hello azurite";
  CHECK_INT(put_mem(b, "generations/0123456789abcdef/wal/x.wal.lz4", msg,
                    strlen(msg)),
            0);
  struct buf out;
  CHECK_INT(
      get_mem(b, "generations/0123456789abcdef/wal/x.wal.lz4", 0, -1, &out), 0);
  CHECK_INT(out.len, strlen(msg));
  CHECK(out.len == strlen(msg) && !memcmp(out.data, msg, out.len));
  /* Appends to what the buffer holds; ranges. */
  struct sink s = {.buf = &out, .fd = -1};
  CHECK_INT(backend_get_sync(b, "generations/0123456789abcdef/wal/x.wal.lz4", 6,
                             3, &s, errbuf, sizeof(errbuf)),
            0);
  CHECK_INT(out.len, strlen(msg) + 3);
  CHECK(out.len >= 3 && !memcmp(out.data + out.len - 3, "azu", 3));
  buf_reset(&out);
  CHECK_INT(backend_get_sync(b, "generations/0123456789abcdef/wal/x.wal.lz4", 6,
                             -1, &s, errbuf, sizeof(errbuf)),
            0);
  CHECK_INT(out.len, strlen(msg) - 6);
  buf_destroy(&out);
  /* Missing blob: ERR_NOT_FOUND, for GET and for a zero-length get. */
  CHECK_INT(get_mem(b, "nope", 0, -1, &out), ERR_NOT_FOUND);
  CHECK(strstr(errbuf, "BlobNotFound") != NULL);
  buf_destroy(&out);
  CHECK_INT(get_mem(b, "nope", 0, 0, &out), ERR_NOT_FOUND);
  buf_destroy(&out);
  /* Empty object. */
  CHECK_INT(put_mem(b, "empty", "", 0), 0);
  CHECK_INT(get_mem(b, "empty", 0, -1, &out), 0);
  CHECK_INT(out.len, 0);
  buf_destroy(&out);
  /* Names that need encoding: signed on the encoded path. */
  const char *odd = "odd/a b+c%d&e=f?g#h~!'()*,;:@$.txt";
  CHECK_INT(put_mem(b, odd, "x", 1), 0);
  CHECK_INT(get_mem(b, odd, 0, -1, &out), 0);
  CHECK_INT(out.len, 1);
  buf_destroy(&out);
  struct obj_list l = {0};
  CHECK_INT(backend_list_sync(b, "odd/", 1, &l, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(l.n, 1);
  if (l.n == 1)
    CHECK_STR(l.objs[0].key, odd);
  obj_list_destroy(&l);
  backend_close(b);
}

TEST(large_put_uses_blocks_fd_and_memory) {
  struct replica_config c = base_cfg();
  struct backend *b = open_cfg(&c);
  if (!b)
    return;
  size_t n = (20u << 20) + 12345; /* 6 blocks of 4 MiB */
  uint8_t *data = pattern(n, 7);
  CHECK_INT(put_mem(b, "snap/large.mem", data, n), 0);
  int fd = tmpfile_with(data, n);
  /* From an fd, starting at an offset. */
  struct payload p = {.fd = fd, .off = 1000, .len = (int64_t)(n - 1000)};
  CHECK_INT(backend_put_sync(b, "snap/large.fd", &p, errbuf, sizeof(errbuf)),
            0);
  struct buf out;
  CHECK_INT(get_mem(b, "snap/large.mem", 0, -1, &out), 0);
  CHECK(out.len == n && !memcmp(out.data, data, n));
  buf_destroy(&out);
  /* A range across a block boundary. */
  CHECK_INT(get_mem(b, "snap/large.fd", (4 << 20) - 77, 5000, &out), 0);
  CHECK(out.len == 5000 &&
        !memcmp(out.data, data + 1000 + (4 << 20) - 77, 5000));
  buf_destroy(&out);
  /* Into an fd at an offset. */
  int ofd = tmpfile_with(NULL, 0);
  struct sink s = {.fd = ofd, .off = 10};
  CHECK_INT(
      backend_get_sync(b, "snap/large.fd", 0, -1, &s, errbuf, sizeof(errbuf)),
      0);
  uint8_t *back = xmalloc(n);
  CHECK_INT(pread_full(ofd, back, n - 1000, 10), (long long)(n - 1000));
  CHECK(!memcmp(back, data + 1000, n - 1000));
  free(back);
  close(ofd);
  close(fd);
  /* The blob really is made of committed blocks. */
  struct raw r;
  char *path = xasprintf("%s/db/one/snap/large.mem?comp=blocklist&"
                         "blocklisttype=committed",
                         container);
  CHECK_INT(raw(&r, "GET", path), 200);
  struct xml_node *x = xml_parse((char *)r.body.data, r.body.len);
  int blocks = 0;
  struct xml_node *cb = xml_child(x, "CommittedBlocks");
  for (struct xml_node *k = cb ? cb->child : NULL; k; k = k->next)
    blocks++;
  CHECK_INT(blocks, 6);
  xml_free(x);
  raw_free(&r);
  free(path);
  /* A small one is a single Put Blob: no committed blocks listed. */
  struct obj_list l = {0};
  CHECK_INT(backend_list_sync(b, "snap/", 0, &l, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(l.n, 2);
  if (l.n == 2) {
    CHECK_STR(l.objs[0].key, "snap/large.fd");
    CHECK_INT(l.objs[0].size, (long long)(n - 1000));
    CHECK_STR(l.objs[1].key, "snap/large.mem");
    CHECK_INT(l.objs[1].size, (long long)n);
  }
  obj_list_destroy(&l);
  free(data);
  backend_close(b);
}

TEST(list_with_and_without_delimiter) {
  struct replica_config c = base_cfg();
  c.path = "db/list";
  struct backend *b = open_cfg(&c);
  if (!b)
    return;
  const char *keys[] = {"generations/aaaa/snapshots/00000000.snapshot.lz4",
                        "generations/aaaa/wal/00000000_00000000.wal.lz4",
                        "generations/bbbb/wal/00000000_00000000.wal.lz4",
                        "generations/top.txt", "other"};
  int64_t t0 = time_now_ns();
  for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
    CHECK_INT(put_mem(b, keys[i], keys[i], strlen(keys[i])), 0);
  struct obj_list l = {0};
  CHECK_INT(backend_list_sync(b, "generations/", 1, &l, errbuf, sizeof(errbuf)),
            0);
  CHECK_INT(l.n, 1);
  CHECK_INT(l.n_prefixes, 2);
  if (l.n == 1)
    CHECK_STR(l.objs[0].key, "generations/top.txt");
  if (l.n_prefixes == 2) {
    CHECK_STR(l.prefixes[0], "generations/aaaa/");
    CHECK_STR(l.prefixes[1], "generations/bbbb/");
  }
  obj_list_destroy(&l);
  CHECK_INT(backend_list_sync(b, "", 0, &l, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(l.n, 5);
  CHECK_INT(l.n_prefixes, 0);
  for (size_t i = 0; i < l.n && i < ARRAY_SIZE(keys); i++) {
    CHECK_STR(l.objs[i].key, keys[i]);
    CHECK_INT(l.objs[i].size, (long long)strlen(keys[i]));
    /* Creation-Time has one-second precision; same machine clock. */
    CHECK(l.objs[i].mtime_ns >= t0 - 2 * NS_PER_SEC &&
          l.objs[i].mtime_ns <= time_now_ns() + 2 * NS_PER_SEC);
  }
  obj_list_destroy(&l);
  /* A prefix that matches nothing. */
  CHECK_INT(
      backend_list_sync(b, "generations/zzzz/", 0, &l, errbuf, sizeof(errbuf)),
      0);
  CHECK_INT(l.n, 0);
  obj_list_destroy(&l);
  backend_close(b);
}

struct many {
  int pending;
  int failed;
  volatile int done;
};

static void on_many(void *arg, int status, const char *err) {
  struct many *m = arg;
  if (status) {
    if (!m->failed)
      fprintf(stderr, "put failed: %s\n", err);
    m->failed++;
  }
  if (--m->pending == 0)
    m->done = 1;
}

TEST(list_pages_past_5000) {
  struct replica_config c = base_cfg();
  c.path = "db/many";
  struct backend *b = open_cfg(&c);
  if (!b)
    return;
  enum { N = 5003 };
  char **keys = xcalloc(N, sizeof(char *));
  struct many m = {.pending = N};
  struct payload p = {.data = (const uint8_t *)"x", .fd = -1, .len = 1};
  for (int i = 0; i < N; i++) {
    keys[i] = xasprintf("wal/%08x.wal.lz4", i);
    backend_put(b, keys[i], &p, on_many, &m);
  }
  int64_t t0 = time_mono_ns();
  loop_run_until(&m.done);
  CHECK_INT(m.failed, 0);
  fprintf(stderr, "  (%d puts in %.1fs)\n", N, (time_mono_ns() - t0) / 1e9);
  t0 = time_mono_ns();
  struct obj_list l = {0};
  CHECK_INT(backend_list_sync(b, "wal/", 0, &l, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(l.n, N);
  int in_order = 1;
  for (size_t i = 0; i < l.n && i < N; i++)
    in_order &= !strcmp(l.objs[i].key, keys[i]);
  CHECK(in_order);
  obj_list_destroy(&l);
  fprintf(stderr, "  (list in %.1fs)\n", (time_mono_ns() - t0) / 1e9);
  t0 = time_mono_ns();
  /* Delete some (parallel single deletes; Azurite takes ~5 ms per delete,
   * so the rest go with the container), plus keys never written. */
  CHECK_INT(backend_del_sync(b, keys + 1000, 100, errbuf, sizeof(errbuf)), 0);
  fprintf(stderr, "  (100 deletes in %.1fs)\n", (time_mono_ns() - t0) / 1e9);
  char *missing[] = {"wal/never-1", "wal/never-2"};
  CHECK_INT(backend_del_sync(b, missing, 2, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(backend_del_sync(b, missing, 0, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(backend_list_sync(b, "wal/", 0, &l, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(l.n, N - 100);
  if (l.n == N - 100) {
    CHECK_STR(l.objs[999].key, keys[999]);
    CHECK_STR(l.objs[1000].key, keys[1100]);
  }
  obj_list_destroy(&l);
  for (int i = 0; i < N; i++)
    free(keys[i]);
  free(keys);
  /* Operation counters for the metrics. */
  CHECK_INT(b->op_count[BOP_PUT], N);
  CHECK_INT(b->op_count[BOP_LIST], 2);
  CHECK_INT(b->op_bytes[BOP_PUT], N);
  CHECK_INT(b->op_count[BOP_DELETE], 3);
  CHECK_INT(b->op_errors, 0);
  backend_close(b);
}

TEST(wrong_key_is_one_clear_error_without_retries) {
  struct replica_config c = base_cfg();
  uint8_t zero[64] = {0};
  char badkey[BASE64_LEN(64) + 1];
  base64_encode(zero, sizeof(zero), badkey);
  c.account_key = badkey;
  struct backend *b = open_cfg(&c);
  if (!b)
    return;
  struct http_stats s0, s1;
  http_get_stats(&s0);
  CHECK_INT(put_mem(b, "x", "x", 1), ERR_AUTH);
  fprintf(stderr, "  (wrong key -> %s)\n", errbuf);
  /* Azure: AuthenticationFailed; Azurite: AuthorizationFailure. */
  CHECK(strstr(errbuf, "AuthenticationFailed") != NULL ||
        strstr(errbuf, "AuthorizationFailure") != NULL);
  CHECK(strstr(errbuf, "Server failed to authenticate") != NULL);
  CHECK(strstr(errbuf, "HTTP 403") != NULL);
  CHECK(strstr(errbuf, container) != NULL);
  CHECK(strstr(errbuf, "db/one/x") != NULL);
  CHECK(strstr(errbuf, "account-key") != NULL);
  CHECK(strchr(errbuf, '\n') == NULL);
  CHECK(strstr(errbuf, badkey) == NULL);
  struct obj_list l = {0};
  CHECK_INT(backend_list_sync(b, "", 0, &l, errbuf, sizeof(errbuf)), ERR_AUTH);
  struct buf out;
  CHECK_INT(get_mem(b, "x", 0, -1, &out), ERR_AUTH);
  buf_destroy(&out);
  /* Three failed operations, one request each, none retried (counted,
   * not timed: a loaded machine's Azurite may take longer than the first
   * backoff to answer). */
  http_get_stats(&s1);
  CHECK_INT(s1.requests - s0.requests, 3);
  CHECK_INT(s1.attempts - s0.attempts, 3);
  CHECK_INT(s1.retries - s0.retries, 0);
  CHECK_INT(b->op_errors, 3);
  backend_close(b);
}

TEST(container_not_found) {
  struct replica_config c = base_cfg();
  c.bucket = "sluice-no-such-container";
  struct backend *b = open_cfg(&c);
  if (!b)
    return;
  CHECK_INT(put_mem(b, "x", "x", 1), ERR_NOT_FOUND);
  CHECK(strstr(errbuf, "ContainerNotFound") != NULL);
  struct obj_list l = {0};
  CHECK(backend_list_sync(b, "", 1, &l, errbuf, sizeof(errbuf)) != 0);
  CHECK(strstr(errbuf, "ContainerNotFound") != NULL);
  fprintf(stderr, "  (missing container -> %s)\n", errbuf);
  /* A get must not look like a missing object. */
  struct buf out;
  int rc = get_mem(b, "x", 0, -1, &out);
  CHECK(rc != 0 && rc != ERR_NOT_FOUND);
  buf_destroy(&out);
  char *k[] = {"x"};
  CHECK(backend_del_sync(b, k, 1, errbuf, sizeof(errbuf)) != 0);
  backend_close(b);
}

/* Account SAS (version 2020-12-06 and later string-to-sign). */
static char *account_sas(const char *perm, const char *key_b64) {
  char expiry[32];
  time_format_rfc3339(time_now_ns() + 3600 * NS_PER_SEC, expiry);
  const char *sv = SHAREDKEY_VERSION;
  char *sts = xasprintf("%s\n%s\nb\nsco\n\n%s\n\nhttps,http\n%s\n\n", ACCOUNT,
                        perm, expiry, sv);
  uint8_t *key;
  size_t keylen;
  base64_decode(key_b64, strlen(key_b64), 0, &key, &keylen);
  char sig[45];
  sharedkey_signature(key, keylen, sts, sig);
  free(key);
  free(sts);
  char *esig = http_urlencode(sig, 0);
  char *eexp = http_urlencode(expiry, 0);
  char *sas = xasprintf("sv=%s&ss=b&srt=sco&sp=%s&se=%s&spr=https,http&sig=%s",
                        sv, perm, eexp, esig);
  free(esig);
  free(eexp);
  return sas;
}

TEST(sas_token_instead_of_key) {
  struct replica_config c = base_cfg();
  char *sas = account_sas("rwdlac", DEV_KEY);
  c.account_key = NULL;
  c.sas_token = sas;
  struct backend *b = open_cfg(&c);
  if (!b) {
    free(sas);
    return;
  }
  CHECK_INT(put_mem(b, "sas/one", "via sas", 7), 0);
  struct buf out;
  CHECK_INT(get_mem(b, "sas/one", 0, -1, &out), 0);
  CHECK(out.len == 7 && !memcmp(out.data, "via sas", 7));
  buf_destroy(&out);
  struct obj_list l = {0};
  CHECK_INT(backend_list_sync(b, "sas/", 0, &l, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(l.n, 1);
  obj_list_destroy(&l);
  char *k[] = {"sas/one"};
  CHECK_INT(backend_del_sync(b, k, 1, errbuf, sizeof(errbuf)), 0);
  backend_close(b);
  free(sas);
  /* A SAS signed with another key is refused, naming the SAS. */
  uint8_t zero[64] = {0};
  char badkey[BASE64_LEN(64) + 1];
  base64_encode(zero, sizeof(zero), badkey);
  sas = account_sas("rwdlac", badkey);
  c.sas_token = sas;
  b = open_cfg(&c);
  if (b) {
    CHECK_INT(put_mem(b, "sas/two", "x", 1), ERR_AUTH);
    fprintf(stderr, "  (bad SAS -> %s)\n", errbuf);
    CHECK(strstr(errbuf, "SAS") != NULL);
    backend_close(b);
  }
  free(sas);
  /* A read-only SAS cannot write. */
  sas = account_sas("rl", DEV_KEY);
  c.sas_token = sas;
  b = open_cfg(&c);
  if (b) {
    CHECK_INT(put_mem(b, "sas/three", "x", 1), ERR_AUTH);
    CHECK_INT(backend_list_sync(b, "sas/", 0, &l, errbuf, sizeof(errbuf)), 0);
    obj_list_destroy(&l);
    backend_close(b);
  }
  free(sas);
}

TEST(credentials_from_environment) {
  char cs[512];
  /* A connection string alone (no account, key or endpoint in config). */
  snprintf(cs, sizeof(cs),
           "DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;"
           "BlobEndpoint=%s;",
           ACCOUNT, DEV_KEY, endpoint);
  setenv("AZURE_STORAGE_CONNECTION_STRING", cs, 1);
  struct replica_config c = base_cfg();
  c.account_name = NULL;
  c.account_key = NULL;
  c.endpoint = NULL;
  struct backend *b = open_cfg(&c);
  CHECK(b != NULL);
  if (b) {
    CHECK_INT(put_mem(b, "env/cs", "cs", 2), 0);
    backend_close(b);
  }
  unsetenv("AZURE_STORAGE_CONNECTION_STRING");
  /* Litestream's variable, with the account and endpoint in config; the
   * endpoint given without the account path (IP style gets it added). */
  char short_ep[64];
  snprintf(short_ep, sizeof(short_ep), "http://127.0.0.1:%d/", port);
  setenv("LITESTREAM_AZURE_ACCOUNT_KEY", DEV_KEY, 1);
  c = base_cfg();
  c.account_key = NULL;
  c.endpoint = short_ep;
  b = open_cfg(&c);
  CHECK(b != NULL);
  if (b) {
    CHECK_INT(put_mem(b, "env/ls", "ls", 2), 0);
    backend_close(b);
  }
  unsetenv("LITESTREAM_AZURE_ACCOUNT_KEY");
  /* AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY. */
  setenv("AZURE_STORAGE_ACCOUNT", ACCOUNT, 1);
  setenv("AZURE_STORAGE_KEY", DEV_KEY, 1);
  c = base_cfg();
  c.account_name = NULL;
  c.account_key = NULL;
  b = open_cfg(&c);
  CHECK(b != NULL);
  if (b) {
    struct obj_list l = {0};
    CHECK_INT(backend_list_sync(b, "env/", 0, &l, errbuf, sizeof(errbuf)), 0);
    CHECK_INT(l.n, 2);
    obj_list_destroy(&l);
    backend_close(b);
  }
  unsetenv("AZURE_STORAGE_ACCOUNT");
  unsetenv("AZURE_STORAGE_KEY");
}

TEST(open_errors) {
  char err[512];
  struct replica_config c = base_cfg();
  c.account_key = NULL;
  CHECK(backend_open(&c, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "no Azure credentials") != NULL);
  c = base_cfg();
  c.account_key = "not base64!";
  CHECK(backend_open(&c, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "not valid base64") != NULL);
  CHECK(strstr(err, "not base64!") == NULL);
  c = base_cfg();
  c.bucket = NULL;
  CHECK(backend_open(&c, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "container required") != NULL);
  c = base_cfg();
  c.account_name = NULL;
  c.endpoint = NULL;
  CHECK(backend_open(&c, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "account name required") != NULL);
  /* Description without secrets; path "." and slashes normalised. */
  c = base_cfg();
  c.path = "/a/b/";
  struct backend *b = backend_open(&c, err, sizeof(err));
  CHECK(b != NULL);
  if (b) {
    char want[128];
    snprintf(want, sizeof(want), "abs://%s@%s/a/b", ACCOUNT, container);
    CHECK_STR(b->desc, want);
    backend_close(b);
  }
}

TEST(root_of_container) {
  struct replica_config c = base_cfg();
  c.path = ".";
  struct backend *b = open_cfg(&c);
  if (!b)
    return;
  CHECK_INT(put_mem(b, "rootkey", "r", 1), 0);
  struct obj_list l = {0};
  CHECK_INT(backend_list_sync(b, "", 1, &l, errbuf, sizeof(errbuf)), 0);
  int found = 0, has_db = 0;
  for (size_t i = 0; i < l.n; i++)
    found |= !strcmp(l.objs[i].key, "rootkey");
  for (size_t i = 0; i < l.n_prefixes; i++)
    has_db |= !strcmp(l.prefixes[i], "db/");
  CHECK(found);
  CHECK(has_db);
  obj_list_destroy(&l);
  backend_close(b);
}

int main(void) {
  const char *p = getenv("AZ_PORT");
  port = p ? atoi(p) : 10000;
  if (!reachable(port)) {
    printf("SKIP: Azurite not reachable on 127.0.0.1:%d\n", port);
    return 77;
  }
  snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d/%s", port, ACCOUNT);
  uint32_t r;
  random_bytes(&r, sizeof(r));
  snprintf(container, sizeof(container), "sluice-test-%d-%08x", (int)getpid(),
           r);
  unsetenv("AZURE_STORAGE_CONNECTION_STRING");
  unsetenv("AZURE_STORAGE_ACCOUNT");
  unsetenv("AZURE_STORAGE_KEY");
  unsetenv("LITESTREAM_AZURE_ACCOUNT_KEY");
  unsetenv("AZURE_STORAGE_SAS_TOKEN");
  loop_init();
  http_init();
  int st = create_container(container);
  if (st != 201) {
    printf("cannot create container %s: HTTP %d\n", container, st);
    return 1;
  }
  RUN(small_put_get_roundtrip);
  RUN(large_put_uses_blocks_fd_and_memory);
  RUN(list_with_and_without_delimiter);
  RUN(list_pages_past_5000);
  RUN(wrong_key_is_one_clear_error_without_retries);
  RUN(container_not_found);
  RUN(sas_token_instead_of_key);
  RUN(credentials_from_environment);
  RUN(open_errors);
  RUN(root_of_container);
  struct raw rr;
  char *del = xasprintf("%s?restype=container", container);
  CHECK_INT(raw(&rr, "DELETE", del), 202);
  raw_free(&rr);
  free(del);
  http_shutdown();
  CHECK_INT(loop_close(), 0);
  T_DONE();
}
