#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "cli/cmd.h"
#include "base/err.h"
#include "base/log.h"
#include "config/url.h"
#include "base/util.h"
#include "loop/http.h"

int cmd_load_config(const char *flag_path, int no_expand_env,
                    struct config *out) {
  int explicit_ = 0;
  char *path = config_default_path(flag_path, &explicit_);
  char err[1024];
  int rc = config_load(path, !no_expand_env, out, err, sizeof(err));
  free(path);
  if (!rc) {
    log_setup(&out->logging);
    if ((rc = config_expand_dirs(out, err, sizeof(err))))
      config_destroy(out);
  }
  if (rc) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  return 0;
}

void cmd_set_deadline(int64_t ns) {
  http_set_deadline(ns > 0 ? MAX(ns / NS_PER_MS, 1) : 0,
                    "raise it with -timeout");
}

int cmd_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = xvasprintf(fmt, ap);
  va_end(ap);
  log_error(NULL, NULL, "failed to run: %s", msg);
  free(msg);
  return 1;
}

static void add_backend(struct cmd_target *t, struct backend *b) {
  t->backends =
      xrealloc(t->backends, (t->n_backends + 1) * sizeof(*t->backends));
  t->backends[t->n_backends++] = b;
}

static int open_url(struct cmd_target *t, const char *arg, char *err,
                    size_t errlen) {
  t->url_mode = 1;
  if (config_replica_from_url(arg, &t->url, err, errlen))
    return 1;
  struct backend *b = backend_open(&t->url, err, errlen);
  if (!b)
    return 1;
  add_backend(t, b);
  return 0;
}

int cmd_target_open(struct cmd_target *t, const char *arg,
                    const char *config_flag, int no_expand_env,
                    const char *replica, int missing_replica_ok, char *err,
                    size_t errlen) {
  memset(t, 0, sizeof(*t));
  if (url_is_url(arg)) {
    if (config_flag) {
      snprintf(err, errlen,
               "cannot specify a replica URL and the -config flag");
      return 1;
    }
    return open_url(t, arg, err, errlen);
  }
  int explicit_ = 0;
  char *path = config_default_path(config_flag, &explicit_);
  int rc = config_load(path, !no_expand_env, &t->cfg, err, errlen);
  free(path);
  if (rc)
    return 1;
  log_setup(&t->cfg.logging);
  if (config_expand_dirs(&t->cfg, err, errlen))
    return 1;
  t->db_path = path_abs(arg);
  t->db = config_find_db(&t->cfg, t->db_path);
  if (!t->db) /* under a dir entry, though not (or no longer) on disk */
    t->db = config_dir_db(&t->cfg, t->db_path);
  if (!t->db) {
    snprintf(err, errlen, "database not found in config: %s", t->db_path);
    return 1;
  }
  int found = 0;
  for (size_t i = 0; i < t->db->n_replicas; i++) {
    struct replica_config *rc_ = &t->db->replicas[i];
    const char *name = rc_->name ? rc_->name : rc_->type;
    if (replica && strcmp(replica, name ? name : ""))
      continue;
    found = 1;
    struct backend *b = backend_open(rc_, err, errlen);
    if (!b)
      return 1;
    add_backend(t, b);
  }
  if (replica && !found && !missing_replica_ok) {
    snprintf(err, errlen, "replica \"%s\" not found for database \"%s\"",
             replica, t->db_path);
    return 1;
  }
  return 0;
}

void cmd_target_close(struct cmd_target *t) {
  for (size_t i = 0; i < t->n_backends; i++)
    backend_close(t->backends[i]);
  free(t->backends);
  if (t->url_mode)
    config_replica_destroy(&t->url);
  else
    config_destroy(&t->cfg);
  free(t->db_path);
  memset(t, 0, sizeof(*t));
}
