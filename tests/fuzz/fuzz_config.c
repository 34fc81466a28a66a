/* The YAML config parser (with and without ${VAR} expansion). */
#include "base/log.h"
#include "config/config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1 << 16)
    return 0;
  static int quiet;
  if (!quiet) { /* warnings about unknown keys: not what is tested */
    struct log_config lc = {LOG_ERROR, 0, 1};
    log_setup(&lc);
    quiet = 1;
  }
  char *text = fuzz_str(data, size);
  char err[1024];
  struct config cfg;
  for (int expand = 0; expand < 2; expand++) {
    if (!config_parse("fuzz.yml", text, expand, &cfg, err, sizeof(err))) {
      for (size_t i = 0; i < cfg.n_dbs; i++)
        free(config_db_fingerprint(&cfg.dbs[i]));
      config_destroy(&cfg);
    } else {
      FUZZ_ASSERT(err[0]);
    }
  }
  free(config_expand_env(text));
  free(text);
  return 0;
}
