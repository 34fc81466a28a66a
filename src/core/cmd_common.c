#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cmd.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"

int cmd_load_config(const char *flag_path, int no_expand_env,
                    struct config *out) {
  int explicit_ = 0;
  char *path = config_default_path(flag_path, &explicit_);
  char err[1024];
  int rc = config_load(path, !no_expand_env, out, err, sizeof(err));
  free(path);
  if (rc) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  log_setup(&out->logging);
  return 0;
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
