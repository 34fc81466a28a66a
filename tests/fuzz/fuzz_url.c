/* Replica URLs, endpoints, redaction and percent-decoding. */
#include "base/err.h"
#include "base/util.h"
#include "config/config.h"
#include "config/url.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096)
    return 0;
  char *s = fuzz_str(data, size);
  char err[512];
  struct replica_url u;
  memset(&u, 0, sizeof(u));
  if (!url_parse(s, &u, err, sizeof(err)))
    FUZZ_ASSERT(u.scheme != NULL);
  url_destroy(&u);
  struct replica_config r;
  memset(&r, 0, sizeof(r));
  if (!config_replica_from_url(s, &r, err, sizeof(err)))
    config_replica_destroy(&r);
  char *red = url_redact(s);
  FUZZ_ASSERT(red != NULL);
  free(red);
  red = url_redact_userinfo(s);
  free(red);
  url_check_endpoint(s, err, sizeof(err));
  memset(&u, 0, sizeof(u));
  url_s3_parse_host(s, &u);
  url_destroy(&u);
  free(percent_decode(s, size, 0));
  free(percent_decode(s, size, 1));
  free(s);
  return 0;
}
