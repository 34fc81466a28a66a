/*
 * sluice status: asks the running daemon, over its metrics server (addr),
 * for every database's state and each replica's lag and last error.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "cli/cmd.h"
#include "cli/flags.h"

static const char status_usage[] =
    "The status command shows every database of the running daemon: its\n"
    "state (replicating, idle, waiting, error, or starting/closing), each\n"
    "replica's lag and the last error. It asks the daemon's metrics server,\n"
    "so the configuration must set addr (or give -addr).\n"
    "\n"
    "Usage:\n"
    "\n"
    "\tsluice status [arguments]\n"
    "\n"
    "Arguments:\n"
    "\n"
    "\t-config PATH\n"
    "\t    Specifies the configuration file.\n"
    "\t    Defaults to $SLUICE_CONFIG, $LITESTREAM_CONFIG, /etc/sluice.yml\n"
    "\t    or /etc/litestream.yml.\n"
    "\n"
    "\t-no-expand-env\n"
    "\t    Disables environment variable expansion in configuration file.\n"
    "\n"
    "\t-addr HOST:PORT\n"
    "\t    The daemon's metrics server, instead of the configuration's addr.\n"
    "\n"
    "\t-json\n"
    "\t    Prints one JSON object: {\"databases\": [{\"database\", \"state\",\n"
    "\t    \"generation\", \"error\", \"replicas\": [{\"name\", \"state\",\n"
    "\t    \"lease\", \"lag_seconds\", \"error\"}]}]}.\n"
    "\n"
    "\t-timeout DURATION\n"
    "\t    Gives up when the daemon has not answered within this time.\n"
    "\t    Defaults to 30s.\n"
    "\n";

/* GETs path from addr ("host:port", ":port" = this host) into *body.
 * Returns the HTTP status, or -1 with a message in err. */
static int http_get(const char *addr, const char *path, int64_t timeout_ns,
                    struct buf *body, char *err, size_t errlen) {
  const char *colon = strrchr(addr, ':');
  if (!colon) {
    snprintf(err, errlen, "addr %s: must be HOST:PORT", addr);
    return -1;
  }
  char host[256];
  snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
  if (host[0] == '[' && host[strlen(host) - 1] == ']') {
    memmove(host, host + 1, strlen(host));
    host[strlen(host) - 1] = '\0';
  }
  if (!host[0] || !strcmp(host, "0.0.0.0"))
    snprintf(host, sizeof(host), "127.0.0.1");
  else if (!strcmp(host, "::"))
    snprintf(host, sizeof(host), "::1");
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_socktype = SOCK_STREAM;
  int g = getaddrinfo(host, colon + 1, &hints, &ai);
  if (g) {
    snprintf(err, errlen, "addr %s: %s", addr, gai_strerror(g));
    return -1;
  }
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct timeval tv = {(time_t)(timeout_ns / 1000000000),
                       (suseconds_t)(timeout_ns % 1000000000 / 1000)};
  if (fd >= 0 && timeout_ns > 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen)) {
    snprintf(err, errlen,
             "cannot reach the daemon's metrics server at %s: %s (is sluice "
             "replicate running with addr: set?)",
             addr, strerror(errno));
    if (fd >= 0)
      close(fd);
    freeaddrinfo(ai);
    return -1;
  }
  freeaddrinfo(ai);
  char req[512];
  int rn = snprintf(req, sizeof(req),
                    "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                    path, addr);
  struct buf resp;
  buf_init(&resp, 1 << 16);
  int rc = write_full(fd, req, (size_t)rn);
  char chunk[65536];
  ssize_t n = 0;
  while (!rc && (n = read(fd, chunk, sizeof(chunk))) > 0)
    buf_append(&resp, chunk, (size_t)n);
  if (rc || n < 0) {
    snprintf(err, errlen, "reading from the daemon at %s: %s", addr,
             strerror(rc ? -rc : errno));
    close(fd);
    buf_destroy(&resp);
    return -1;
  }
  close(fd);
  buf_append(&resp, "", 1);
  const char *s = (const char *)resp.data;
  const char *sep = strstr(s, "\r\n\r\n");
  int code = 0;
  if (!sep || sscanf(s, "HTTP/1.%*d %d", &code) != 1) {
    snprintf(err, errlen, "addr %s: not an HTTP answer", addr);
    buf_destroy(&resp);
    return -1;
  }
  buf_append(body, sep + 4, resp.len - 1 - (size_t)(sep + 4 - s));
  buf_destroy(&resp);
  return code;
}

int cmd_status(int argc, char **argv) {
  char *config = NULL, *addr = NULL;
  int no_expand_env = 0, json = 0;
  int64_t timeout = CMD_TIMEOUT_DEFAULT_NS;
  struct flag flags[] = {
      {"config", FLAG_STRING, &config, 0},
      {"no-expand-env", FLAG_BOOL, &no_expand_env, 0},
      {"addr", FLAG_STRING, &addr, 0},
      {"json", FLAG_BOOL, &json, 0},
      {"timeout", FLAG_DURATION, &timeout, 0},
  };
  int nf = (int)ARRAY_SIZE(flags);
  int i = flags_parse(flags, nf, argc, argv, status_usage);
  if (i < 0) {
    flags_free(flags, nf);
    return i == FLAGS_HELP ? 0 : 1;
  }
  if (i < argc) {
    flags_free(flags, nf);
    return cmd_fail("too many arguments");
  }
  char err[1024];
  struct config cfg;
  int have_cfg = 0;
  if (!addr) {
    int explicit_ = 0;
    char *path = config_default_path(config, &explicit_);
    int rc = config_load(path, !no_expand_env, &cfg, err, sizeof(err));
    free(path);
    if (rc) {
      flags_free(flags, nf);
      return cmd_fail("%s", err);
    }
    have_cfg = 1;
    if (!cfg.addr || !cfg.addr[0]) {
      config_destroy(&cfg);
      flags_free(flags, nf);
      return cmd_fail("status asks the daemon's metrics server: set addr in "
                      "the configuration, or give -addr");
    }
  }
  const char *a = addr ? addr : cfg.addr;
  struct buf body;
  buf_init(&body, 0);
  int code = http_get(a, json ? "/status.json" : "/status", timeout, &body, err,
                      sizeof(err));
  int ret = 0;
  if (code < 0) {
    ret = cmd_fail("%s", err);
  } else if (code != 200) {
    ret = cmd_fail("the daemon at %s answered %d (an older sluice without "
                   "/status?)",
                   a, code);
  } else {
    fwrite(body.data, 1, body.len, stdout);
    fflush(stdout);
  }
  buf_destroy(&body);
  if (have_cfg)
    config_destroy(&cfg);
  flags_free(flags, nf);
  return ret;
}
