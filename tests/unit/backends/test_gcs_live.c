/*
 * The Google Cloud Storage backend against the storage emulator (started by
 * tests/servers/test-servers.sh; port $GCS_PORT, default 9199) through the
 * backend API on the real loop, and its OAuth2 code against
 * tests/tools/gcs_auth_server.py: a token endpoint that verifies the RS256
 * JWT with the openssl CLI and a proxy that lets only its own, unexpired
 * tokens through to the emulator (and does chunked resumable uploads the
 * way real GCS does).  Exits 77 (skipped) when the emulator cannot be
 * reached; the OAuth2 part is skipped when python3 or openssl is missing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backends/backend.h"
#include "base/err.h"
#include "base/util.h"
#include "loop/http.h"
#include "loop/loop.h"
#include "t.h"
#include "t_live.h"

static int gcs_port;
static char emu_host[64]; /* http://127.0.0.1:PORT */
static char bucket[64];
static char tmpdir[] = "/tmp/sluice-gcs-XXXXXX";

static void clear_google_env(void) {
  unsetenv("STORAGE_EMULATOR_HOST");
  unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
  unsetenv("GCE_METADATA_HOST");
  unsetenv("CLOUDSDK_CONFIG");
  setenv("HOME", tmpdir, 1); /* no gcloud ADC file */
}

static struct replica_config base_cfg(const char *path) {
  struct replica_config c;
  memset(&c, 0, sizeof(c));
  c.type = "gcs";
  c.name = "gcs";
  c.bucket = bucket;
  c.path = (char *)path;
  return c;
}

/* --- against the emulator --- */

TEST(small_put_get_roundtrip) {
  struct replica_config c = base_cfg("db/one");
  struct backend *b = open_cfg(&c);
  CHECK(b != NULL);
  if (!b)
    return;
  const char *msg = "hello gcs emulator";
  const char *key = "generations/0123456789abcdef/wal/x.wal.lz4";
  CHECK_INT(put_mem(b, key, msg, strlen(msg)), 0);
  struct buf out;
  CHECK_INT(get_mem(b, key, 0, -1, &out), 0);
  CHECK(out.len == strlen(msg) && !memcmp(out.data, msg, out.len));
  struct sink s = {.buf = &out, .fd = -1};
  CHECK_INT(backend_get_sync(b, key, 6, 3, &s, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(out.len, strlen(msg) + 3);
  CHECK(out.len >= 3 && !memcmp(out.data + out.len - 3, "gcs", 3));
  buf_reset(&out);
  CHECK_INT(backend_get_sync(b, key, 6, -1, &s, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(out.len, strlen(msg) - 6);
  buf_destroy(&out);
  CHECK_INT(get_mem(b, "nope", 0, -1, &out), ERR_NOT_FOUND);
  CHECK(strstr(errbuf, "HTTP 404") != NULL);
  CHECK(strstr(errbuf, "db/one/nope") != NULL);
  buf_destroy(&out);
  CHECK_INT(get_mem(b, "nope", 0, 0, &out), ERR_NOT_FOUND);
  buf_destroy(&out);
  CHECK_INT(get_mem(b, key, 0, 0, &out), 0); /* exists, nothing read */
  CHECK_INT(out.len, 0);
  buf_destroy(&out);
  CHECK_INT(put_mem(b, "empty", "", 0), 0);
  CHECK_INT(get_mem(b, "empty", 0, -1, &out), 0);
  CHECK_INT(out.len, 0);
  buf_destroy(&out);
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

TEST(large_put_resumable_fd_and_memory) {
  struct replica_config c = base_cfg("db/one");
  struct backend *b = open_cfg(&c);
  if (!b)
    return;
  size_t n = (20u << 20) + 12345;
  uint8_t *data = pattern(n, 3);
  CHECK_INT(put_mem(b, "snap/large.mem", data, n), 0);
  int fd = tmpfile_with(data, n);
  struct payload p = {.fd = fd, .off = 1000, .len = (int64_t)(n - 1000)};
  CHECK_INT(backend_put_sync(b, "snap/large.fd", &p, errbuf, sizeof(errbuf)),
            0);
  struct buf out;
  CHECK_INT(get_mem(b, "snap/large.mem", 0, -1, &out), 0);
  CHECK(out.len == n && !memcmp(out.data, data, n));
  buf_destroy(&out);
  CHECK_INT(get_mem(b, "snap/large.fd", (8 << 20) - 77, 5000, &out), 0);
  CHECK(out.len == 5000 &&
        !memcmp(out.data, data + 1000 + (8 << 20) - 77, 5000));
  buf_destroy(&out);
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
  struct obj_list l = {0};
  CHECK_INT(backend_list_sync(b, "snap/", 0, &l, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(l.n, 2);
  if (l.n == 2) {
    CHECK_STR(l.objs[0].key, "snap/large.fd");
    CHECK_INT(l.objs[0].size, (long long)(n - 1000));
    CHECK_INT(l.objs[1].size, (long long)n);
  }
  obj_list_destroy(&l);
  free(data);
  backend_close(b);
}

TEST(list_with_and_without_delimiter) {
  struct replica_config c = base_cfg("db/list/");
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
  for (size_t i = 0; i < l.n && i < ARRAY_SIZE(keys); i++) {
    CHECK_STR(l.objs[i].key, keys[i]);
    CHECK_INT(l.objs[i].size, (long long)strlen(keys[i]));
    CHECK(l.objs[i].mtime_ns >= t0 - 2 * NS_PER_SEC &&
          l.objs[i].mtime_ns <= time_now_ns() + 2 * NS_PER_SEC);
  }
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
      fprintf(stderr, "op failed: %s\n", err);
    m->failed++;
  }
  if (--m->pending == 0)
    m->done = 1;
}

TEST(list_pages_past_1000) {
  struct replica_config c = base_cfg("db/many");
  struct backend *b = open_cfg(&c);
  if (!b)
    return;
  enum { N = 2503 }; /* the emulator, like GCS, pages at 1000 */
  char **keys = xcalloc(N, sizeof(char *));
  struct many m = {.pending = N};
  struct payload p = {.data = (const uint8_t *)"x", .fd = -1, .len = 1};
  for (int i = 0; i < N; i++) {
    keys[i] = xasprintf("wal/%08x.wal.lz4", i);
    backend_put(b, keys[i], &p, on_many, &m);
  }
  loop_run_until(&m.done);
  CHECK_INT(m.failed, 0);
  struct obj_list l = {0};
  CHECK_INT(backend_list_sync(b, "wal/", 0, &l, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(l.n, N);
  int in_order = 1;
  for (size_t i = 0; i < l.n && i < N; i++)
    in_order &= !strcmp(l.objs[i].key, keys[i]);
  CHECK(in_order);
  obj_list_destroy(&l);
  /* With a delimiter, over several pages: prefixes are not repeated. */
  CHECK_INT(backend_list_sync(b, "", 1, &l, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(l.n_prefixes, 1);
  obj_list_destroy(&l);
  CHECK_INT(backend_del_sync(b, keys, N, errbuf, sizeof(errbuf)), 0);
  char *missing[] = {"wal/never-1", "wal/never-2"};
  CHECK_INT(backend_del_sync(b, missing, 2, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(backend_del_sync(b, missing, 0, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(backend_list_sync(b, "wal/", 0, &l, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(l.n, 0);
  obj_list_destroy(&l);
  for (int i = 0; i < N; i++)
    free(keys[i]);
  free(keys);
  CHECK_INT(b->op_count[BOP_PUT], N);
  CHECK_INT(b->op_count[BOP_DELETE], 3);
  CHECK_INT(b->op_errors, 0);
  backend_close(b);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

TEST(open_errors) {
  char err[512], path[256];
  struct replica_config c = base_cfg("x");
  c.bucket = NULL;
  CHECK(backend_open(&c, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "bucket required") != NULL);
  clear_google_env();
  c = base_cfg("x");
  setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/sa.json", 1);
  CHECK(backend_open(&c, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "/nonexistent/sa.json") != NULL);
  snprintf(path, sizeof(path), "%s/bad.json", tmpdir);
  setenv("GOOGLE_APPLICATION_CREDENTIALS", path, 1);
  write_text(path, "{not json");
  CHECK(backend_open(&c, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "invalid JSON") != NULL);
  write_text(path, "{\"type\":\"external_account\"}");
  CHECK(backend_open(&c, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "unsupported type \"external_account\"") != NULL);
  write_text(path, "{\"type\":\"service_account\",\"client_email\":\"a@b\","
                   "\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nAAAA\\n"
                   "-----END PRIVATE KEY-----\\n\"}");
  CHECK(backend_open(&c, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "not a PEM RSA private key") != NULL);
  CHECK(strstr(err, "AAAA") == NULL);
  clear_google_env();
  /* gs:// is an alias; description without secrets. */
  c.type = "gs";
  c.path = "/a/b/";
  setenv("STORAGE_EMULATOR_HOST", emu_host, 1);
  struct backend *b = backend_open(&c, err, sizeof(err));
  CHECK(b != NULL);
  if (b) {
    char want[128];
    snprintf(want, sizeof(want), "gcs://%s/a/b", bucket);
    CHECK_STR(b->desc, want);
    backend_close(b);
  }
}

/* --- OAuth2 against gcs_auth_server.py --- */

static pid_t server_pid = -1;
static int server_port;

static int start_auth_server(const char *pub, const char *email,
                             const char *expires_in) {
  char portfile[256];
  snprintf(portfile, sizeof(portfile), "%s/port", tmpdir);
  unlink(portfile);
  const char *script = "../../tools/gcs_auth_server.py";
  if (access(script, R_OK))
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    execlp("python3", "python3", script, "--port-file", portfile, "--pubkey",
           pub, "--email", email, "--expires-in", expires_in, "--upstream",
           emu_host, "--chunked", "--partial", (char *)NULL);
    _exit(127);
  }
  server_pid = pid;
  for (int i = 0; i < 200; i++) {
    FILE *f = fopen(portfile, "r");
    if (f) {
      int ok = fscanf(f, "%d", &server_port) == 1;
      fclose(f);
      if (ok)
        return 0;
    }
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      server_pid = -1;
      return -1;
    }
    usleep(50000);
  }
  return -1;
}

static void stop_auth_server(void) {
  if (server_pid > 0) {
    kill(server_pid, SIGTERM);
    waitpid(server_pid, NULL, 0);
    server_pid = -1;
  }
}

struct raw {
  struct http_request req;
  struct buf body;
  volatile int done;
};

static void on_raw_done(struct http_request *req, void *arg) {
  struct raw *r = arg;
  (void)req;
  r->done = 1;
}

/* GET or POST http://127.0.0.1:server_port/path; returns the JSON body. */
static json_t *server_call(const char *method, const char *path) {
  struct raw r;
  memset(&r, 0, sizeof(r));
  http_request_init(&r.req);
  buf_init(&r.body, 0);
  r.req.method = method;
  r.req.url = xasprintf("http://127.0.0.1:%d%s", server_port, path);
  r.req.resp_body = &r.body;
  r.req.done = on_raw_done;
  r.req.arg = &r;
  http_submit(&r.req);
  loop_run_until(&r.done);
  json_t *j = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
  http_request_free(&r.req);
  buf_destroy(&r.body);
  return j;
}

static long long stat_int(const char *key) {
  json_t *j = server_call("GET", "/_stats");
  long long v = (long long)json_integer_value(json_object_get(j, key));
  json_decref(j);
  return v;
}

static size_t stat_len(const char *key) {
  json_t *j = server_call("GET", "/_stats");
  size_t n = json_is_array(json_object_get(j, key))
                 ? json_array_size(json_object_get(j, key))
                 : json_object_size(json_object_get(j, key));
  json_decref(j);
  return n;
}

static void print_stats(void) {
  json_t *j = server_call("GET", "/_stats");
  json_object_del(j, "used");
  char *s = json_dumps(j, JSON_COMPACT);
  fprintf(stderr, "  (auth server: %.600s)\n", s ? s : "?");
  free(s);
  json_decref(j);
}

static int write_sa_json(const char *path, const char *email,
                         const char *key_pem_path, int port) {
  struct buf pem;
  buf_init(&pem, 0);
  if (file_read_all(key_pem_path, 0, &pem))
    return -1;
  buf_append(&pem, "", 1);
  char *uri = xasprintf("http://127.0.0.1:%d/token", port);
  json_t *j = json_pack(
      "{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "service_account", "project_id",
      "sluice-test", "private_key_id", "0123456789abcdef", "private_key",
      (const char *)pem.data, "client_email", email, "token_uri", uri);
  int rc = json_dump_file(j, path, JSON_INDENT(2));
  json_decref(j);
  free(uri);
  buf_destroy(&pem);
  return rc;
}

static const char email[] = "sluice-test@sluice-test.iam.gserviceaccount.com";
static char sa_path[256], sa_wrong_path[256];

TEST(oauth_service_account_tokens_used_and_refreshed) {
  clear_google_env();
  setenv("GOOGLE_APPLICATION_CREDENTIALS", sa_path, 1);
  char ep[64];
  snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", server_port);
  struct replica_config c = base_cfg("db/oauth");
  c.endpoint = ep;
  struct backend *b = open_cfg(&c);
  CHECK(b != NULL);
  if (!b)
    return;
  /* Several operations at once: one token fetch serves them all. */
  struct many m = {.pending = 6};
  struct payload p = {.data = (const uint8_t *)"abc", .fd = -1, .len = 3};
  const char *keys[] = {"k1", "k2", "k3", "k4", "k5", "k6"};
  int64_t t_token = time_mono_ns();
  for (int i = 0; i < 6; i++)
    backend_put(b, keys[i], &p, on_many, &m);
  loop_run_until(&m.done);
  CHECK_INT(m.failed, 0);
  CHECK_INT(stat_int("tokens"), 1);
  CHECK_INT(stat_int("jwt_ok"), 1);
  CHECK_INT(stat_len("jwt_fail"), 0);
  CHECK_INT(stat_len("rejected"), 0);
  json_t *st = server_call("GET", "/_stats");
  json_t *claims = json_object_get(st, "claims");
  CHECK_STR(json_string_value(json_object_get(claims, "iss")), email);
  CHECK_STR(json_string_value(json_object_get(claims, "scope")),
            "https://www.googleapis.com/auth/devstorage.read_write");
  json_decref(st);
  /* A large upload in chunks (multiples of 256 KiB) that resumes from the
   * Range the server reports: the first chunk is only half kept. */
  size_t n = (20u << 20) + 99;
  uint8_t *data = pattern(n, 9);
  CHECK_INT(put_mem(b, "snap/big", data, n), 0);
  struct buf out;
  CHECK_INT(get_mem(b, "snap/big", 0, -1, &out), 0);
  CHECK(out.len == n && !memcmp(out.data, data, n));
  buf_destroy(&out);
  st = server_call("GET", "/_stats");
  json_t *chunks = json_object_get(st, "chunks");
  const char *want[] = {
      "bytes 0-8388607/20971619", "bytes 4194304-12582911/20971619",
      "bytes 12582912-20971519/20971619", "bytes 20971520-20971618/20971619"};
  CHECK_INT(json_array_size(chunks), 4);
  for (size_t i = 0; i < 4 && i < json_array_size(chunks); i++)
    CHECK_STR(json_string_value(json_array_get(chunks, i)), want[i]);
  json_decref(st);
  free(data);
  /* Still the first token; every request carried it. */
  CHECK_INT(stat_int("tokens"), 1);
  CHECK_INT(stat_len("used"), 1);
  /* Tokens live 12 s here and are replaced a quarter of that (3 s) before
   * they expire.  At 9.2 s the next operation wants a new one; the token
   * endpoint refuses, and the old token, still good, serves. */
  int64_t wait = t_token + 9200 * NS_PER_MS - time_mono_ns();
  CHECK(wait > 0);
  if (wait > 0)
    usleep((useconds_t)(wait / 1000));
  json_decref(server_call("POST", "/_fail_tokens?n=1"));
  struct obj_list l = {0};
  CHECK_INT(backend_list_sync(b, "", 0, &l, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(l.n, 7);
  obj_list_destroy(&l);
  CHECK_INT(stat_int("failed_on_purpose"), 1);
  CHECK_INT(stat_int("tokens"), 1);
  /* 1.5 s later (half the margin) it tries again, and gets one. */
  wait = t_token + 10800 * NS_PER_MS - time_mono_ns();
  CHECK(wait > 0);
  if (wait > 0)
    usleep((useconds_t)(wait / 1000));
  CHECK_INT(backend_list_sync(b, "", 0, &l, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(l.n, 7);
  obj_list_destroy(&l);
  CHECK_INT(stat_int("tokens"), 2);
  CHECK_INT(stat_len("used"), 2);
  CHECK_INT(stat_len("rejected"), 0);
  /* A token the server stops accepting: one 401, a new token, success. */
  json_decref(server_call("POST", "/_revoke"));
  CHECK_INT(get_mem(b, "k1", 0, -1, &out), 0);
  CHECK(out.len == 3 && !memcmp(out.data, "abc", 3));
  buf_destroy(&out);
  CHECK_INT(stat_int("tokens"), 3);
  CHECK_INT(stat_len("rejected"), 1);
  char *dk[] = {"k1", "k2", "k3", "k4", "k5", "k6", "snap/big"};
  CHECK_INT(backend_del_sync(b, dk, 7, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(backend_list_sync(b, "", 0, &l, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(l.n, 0);
  obj_list_destroy(&l);
  CHECK_INT(stat_len("jwt_fail"), 0);
  print_stats();
  backend_close(b);
}

TEST(oauth_wrong_key_is_refused) {
  clear_google_env();
  setenv("GOOGLE_APPLICATION_CREDENTIALS", sa_wrong_path, 1);
  char ep[64];
  snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", server_port);
  struct replica_config c = base_cfg("db/oauth-wrong");
  c.endpoint = ep;
  struct backend *b = open_cfg(&c);
  if (!b)
    return;
  long long fails = (long long)stat_len("jwt_fail");
  int64_t t0 = time_mono_ns();
  CHECK_INT(put_mem(b, "x", "x", 1), ERR_AUTH);
  fprintf(stderr, "  (wrong key -> %s)\n", errbuf);
  CHECK(strstr(errbuf, "invalid_grant") != NULL);
  CHECK(strstr(errbuf, "Invalid JWT Signature") != NULL);
  CHECK(strstr(errbuf, sa_wrong_path) != NULL);
  CHECK(strstr(errbuf, "gcs put") != NULL);
  CHECK(strstr(errbuf, "ya29") == NULL);
  /* A 400 is not retried. */
  CHECK_INT(stat_len("jwt_fail"), fails + 1);
  CHECK(time_mono_ns() - t0 < 2 * NS_PER_SEC);
  /* Every waiting operation gets the error. */
  struct many m = {.pending = 3};
  struct obj_list l = {0};
  struct buf out;
  buf_init(&out, 0);
  struct sink s = {.buf = &out, .fd = -1};
  char *k[] = {"x"};
  backend_list(b, "", 0, &l, on_many, &m);
  backend_get(b, "x", 0, -1, &s, on_many, &m);
  backend_del(b, k, 1, on_many, &m);
  loop_run_until(&m.done);
  CHECK_INT(m.failed, 3);
  buf_destroy(&out);
  obj_list_destroy(&l);
  backend_close(b);
}

TEST(oauth_metadata_server) {
  clear_google_env();
  char host[64];
  snprintf(host, sizeof(host), "127.0.0.1:%d", server_port);
  setenv("GCE_METADATA_HOST", host, 1);
  char ep[64];
  snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", server_port);
  struct replica_config c = base_cfg("db/metadata");
  c.endpoint = ep;
  struct backend *b = open_cfg(&c);
  if (!b)
    return;
  long long before = stat_int("metadata");
  CHECK_INT(put_mem(b, "m", "meta", 4), 0);
  struct buf out;
  CHECK_INT(get_mem(b, "m", 0, -1, &out), 0);
  CHECK(out.len == 4 && !memcmp(out.data, "meta", 4));
  buf_destroy(&out);
  char *k[] = {"m"};
  CHECK_INT(backend_del_sync(b, k, 1, errbuf, sizeof(errbuf)), 0);
  CHECK_INT(stat_int("metadata"), before + 1);
  backend_close(b);
  /* No metadata server: a clear error, after a couple of quick retries. */
  setenv("GCE_METADATA_HOST", "127.0.0.1:1", 1);
  b = open_cfg(&c);
  if (!b)
    return;
  int64_t t0 = time_mono_ns();
  CHECK_INT(put_mem(b, "m", "meta", 4), ERR_AUTH);
  fprintf(stderr, "  (no metadata server -> %s)\n", errbuf);
  CHECK(strstr(errbuf, "metadata server 127.0.0.1:1") != NULL);
  CHECK(time_mono_ns() - t0 < 5 * NS_PER_SEC);
  backend_close(b);
  clear_google_env();
}

static int run(const char *cmd) {
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void oauth_tests(void) {
  char cmd[2048], key[128], pub[128], wrong[128];
  snprintf(key, sizeof(key), "%s/key.pem", tmpdir);
  snprintf(pub, sizeof(pub), "%s/pub.pem", tmpdir);
  snprintf(wrong, sizeof(wrong), "%s/wrong.pem", tmpdir);
  snprintf(cmd, sizeof(cmd),
           "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
           "-out %s 2>/dev/null && openssl pkey -in %s -pubout -out %s && "
           "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
           "-out %s 2>/dev/null && command -v python3 >/dev/null",
           key, key, pub, wrong);
  if (run(cmd)) {
    printf("SKIP oauth tests: openssl or python3 missing\n");
    return;
  }
  if (start_auth_server(pub, email, "12")) {
    printf("SKIP oauth tests: cannot start gcs_auth_server.py\n");
    return;
  }
  snprintf(sa_path, sizeof(sa_path), "%s/sa.json", tmpdir);
  snprintf(sa_wrong_path, sizeof(sa_wrong_path), "%s/sa-wrong.json", tmpdir);
  CHECK_INT(write_sa_json(sa_path, email, key, server_port), 0);
  CHECK_INT(write_sa_json(sa_wrong_path, email, wrong, server_port), 0);
  RUN(oauth_service_account_tokens_used_and_refreshed);
  RUN(oauth_wrong_key_is_refused);
  RUN(oauth_metadata_server);
  stop_auth_server();
}

int main(void) {
  const char *p = getenv("GCS_PORT");
  gcs_port = p ? atoi(p) : 9199;
  if (!reachable(gcs_port)) {
    printf("SKIP: GCS emulator not reachable on 127.0.0.1:%d\n", gcs_port);
    return 77;
  }
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(emu_host, sizeof(emu_host), "http://127.0.0.1:%d", gcs_port);
  uint32_t r;
  random_bytes(&r, sizeof(r));
  snprintf(bucket, sizeof(bucket), "sluice-test-%d-%08x", (int)getpid(), r);
  loop_init();
  http_init();
  clear_google_env();
  setenv("STORAGE_EMULATOR_HOST", emu_host, 1);
  RUN(small_put_get_roundtrip);
  RUN(large_put_resumable_fd_and_memory);
  RUN(list_with_and_without_delimiter);
  RUN(list_pages_past_1000);
  RUN(open_errors);
  oauth_tests();
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
  run(cmd);
  http_shutdown();
  CHECK_INT(loop_close(), 0);
  T_DONE();
}
