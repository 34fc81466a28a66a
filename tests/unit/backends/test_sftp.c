/*
 * The SFTP backend without a server: what open() accepts and refuses
 * (host forms, credentials, key and host-key files), the location shown
 * in logs (never the password), an invalid key answered asynchronously,
 * and a refused connection retried with backoff, then reported once with
 * the host named.  The server side is tested in tests/e2e/sftp_*.sh.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "base/err.h"
#include "base/util.h"
#include "config/config.h"
#include "loop/loop.h"
#include "t.h"

static char g_err[1024];

static const char *g_host; /* replaces the URL's host when set */

static struct backend *open_url(const char *url, const char *key_path,
                                const char *host_key_path) {
  struct replica_config r;
  char err[512];
  if (config_replica_from_url(url, &r, err, sizeof(err))) {
    snprintf(g_err, sizeof(g_err), "%s", err);
    return NULL;
  }
  if (g_host) {
    free(r.host);
    r.host = xstrdup(g_host);
  }
  if (key_path)
    r.key_path = xstrdup(key_path);
  if (host_key_path)
    r.host_key_path = xstrdup(host_key_path);
  g_err[0] = '\0';
  struct backend *b = backend_open(&r, g_err, sizeof(g_err));
  config_replica_destroy(&r);
  return b;
}

TEST(host_forms) {
  static const struct {
    const char *url, *desc;
  } cases[] = {
      {"sftp://bob:pw@example.com/backups/db",
       "sftp://bob@example.com/backups/db"},
      {"sftp://bob:pw@example.com:2222/b", "sftp://bob@example.com:2222/b"},
      {"sftp://bob:pw@example.com:22/b/", "sftp://bob@example.com/b"},
      {"sftp://bob:pw@[::1]:2200/b", "sftp://bob@[::1]:2200/b"},
      {"sftp://bob:pw@10.0.0.1", "sftp://bob@10.0.0.1/"},
  };
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    struct backend *b = open_url(cases[i].url, NULL, NULL);
    CHECK(b != NULL);
    if (!b) {
      fprintf(stderr, "%s: %s\n", cases[i].url, g_err);
      continue;
    }
    CHECK_STR(b->desc, cases[i].desc);
    CHECK(strstr(b->desc, "pw") == NULL);
    CHECK_STR(b->ops->name, "sftp");
    backend_close(b);
  }
}

TEST(refusals) {
  CHECK(open_url("sftp://bob@h/b", NULL, NULL) == NULL);
  CHECK_STR(g_err, "replica sftp: sftp replica needs a password or a key-path");
  CHECK(open_url("sftp://bob:pw@h:0/b", NULL, NULL) == NULL);
  /* The URL parser refuses the port, and never echoes the password. */
  CHECK_STR(g_err, "invalid replica URL \"sftp://bob:xxxxx@h:0/b\": port 0 "
                   "out of range (1-65535)");
  /* `host: h:0` as a key (the URL parser refuses such a port itself). */
  g_host = "h:0";
  CHECK(open_url("sftp://bob:pw@h/b", NULL, NULL) == NULL);
  CHECK_STR(g_err, "replica sftp: invalid sftp host \"h:0\"");
  g_host = "[::1";
  CHECK(open_url("sftp://bob:pw@h/b", NULL, NULL) == NULL);
  CHECK_STR(g_err, "replica sftp: invalid sftp host \"[::1\"");
  g_host = NULL;
  CHECK(open_url("sftp://bob@h/b", "/nonexistent/id_ed25519", NULL) == NULL);
  CHECK_STR(g_err, "replica sftp: key-path /nonexistent/id_ed25519: "
                   "No such file or directory");
  CHECK(open_url("sftp://bob:pw@h/b", NULL, "/nonexistent/known_hosts") ==
        NULL);
  CHECK_STR(g_err, "replica sftp: host-key-path /nonexistent/known_hosts: "
                   "No such file or directory");
  /* A passphrase-protected PEM key is refused up front. */
  char path[] = "/tmp/sluice-test-key.XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  const char *pem = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
                    "DEK-Info: AES-128-CBC,00\n\nAAAA\n"
                    "-----END RSA PRIVATE KEY-----\n";
  CHECK_INT(write(fd, pem, strlen(pem)), (long long)strlen(pem));
  close(fd);
  CHECK(open_url("sftp://bob@h/b", path, NULL) == NULL);
  CHECK(strstr(g_err, "protected by a passphrase") != NULL);
  unlink(path);
}

struct result {
  int done, status;
  char err[768];
};

static void on_done(void *arg, int status, const char *err) {
  struct result *r = arg;
  r->done = 1;
  r->status = status;
  snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
}

TEST(invalid_key_async) {
  struct backend *b = open_url("sftp://bob:pw@127.0.0.1:1/b", NULL, NULL);
  CHECK(b != NULL);
  struct result r = {0};
  static const uint8_t data[] = "x";
  struct payload p = {.data = data, .fd = -1, .len = 1};
  backend_put(b, "../escape", &p, on_done, &r);
  CHECK_INT(r.done, 0); /* never inside the call */
  CHECK_INT(loop_run_until(&r.done), 0);
  CHECK_INT(r.status, -EINVAL);
  CHECK_STR(r.err, "sftp: put sftp://bob@127.0.0.1:1/b/../escape: invalid key");
  backend_close(b);
}

TEST(refused_connection_retried) {
  /* Port 1 on loopback: nothing listens, every connect is refused. */
  struct backend *b = open_url("sftp://bob:hunter2@127.0.0.1:1/b", NULL, NULL);
  CHECK(b != NULL);
  struct result r = {0};
  struct obj_list out = {0};
  int64_t t0 = time_mono_ns();
  backend_list(b, "generations/", '/', &out, on_done, &r);
  CHECK_INT(loop_run_until(&r.done), 0);
  int64_t ms = (time_mono_ns() - t0) / NS_PER_MS;
  CHECK_INT(r.status, -ECONNREFUSED);
  CHECK_STR(r.err, "sftp: list sftp://bob@127.0.0.1:1/b/generations/: cannot "
                   "connect to 127.0.0.1:1: Connection refused (after 5 "
                   "attempts)");
  CHECK(strstr(r.err, "hunter2") == NULL);
  /* Four backoffs: 250 + 500 + 1000 + 2000 ms. */
  CHECK(ms >= 3700);
  CHECK(ms < 20000);
  obj_list_destroy(&out);
  backend_close(b);
}

int main(void) {
  loop_init();
  RUN(host_forms);
  RUN(refusals);
  RUN(invalid_key_async);
  RUN(refused_connection_retried);
  CHECK_INT(loop_close(), 0);
  T_DONE();
}
