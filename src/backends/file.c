/* Placeholder until the file backend lands (issue #2). */
#include "backends/backend.h"
#include <stdio.h>

#include "core/err.h"

static int file_open(struct backend *b, const struct replica_config *cfg,
                     char *err, size_t errlen) {
  (void)b;
  (void)cfg;
  snprintf(err, errlen, "file backend not implemented yet");
  return ERR_BACKEND;
}

const struct backend_ops backend_file = {
    .name = "file",
    .open = file_open,
};
