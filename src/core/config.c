/* Placeholder until the config parser lands (issue #2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/err.h"
#include "core/util.h"

char *config_default_path(const char *flag, int *explicit_) {
  *explicit_ = flag != NULL;
  return xstrdup(flag ? flag : "/etc/litestream.yml");
}

int config_load(const char *path, int expand_env, struct config *out,
                char *err, size_t errlen) {
  (void)expand_env;
  memset(out, 0, sizeof(*out));
  snprintf(err, errlen, "%s: config parser not implemented yet", path);
  return ERR_CONFIG;
}

void config_destroy(struct config *c) {
  (void)c;
}

void config_db_init(struct db_config *d, const char *path) {
  memset(d, 0, sizeof(*d));
  d->path = xstrdup(path);
}

int config_replica_from_url(const char *url, struct replica_config *out,
                            char *err, size_t errlen) {
  (void)out;
  snprintf(err, errlen, "%s: URL parser not implemented yet", url);
  return ERR_CONFIG;
}
