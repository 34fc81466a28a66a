/* RFC 3339 times (and Azure's RFC 1123 dates): no overflow, and a parsed
 * time formats and parses back to the same second. */
#include <errno.h>

#include "backends/sharedkey.h"
#include "base/util.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 256)
    return 0;
  char *s = fuzz_str(data, size);
  int64_t ns;
  int rc = time_parse_rfc3339(s, &ns);
  FUZZ_ASSERT(rc == 0 || rc == -EINVAL || rc == -ERANGE);
  if (rc == -ERANGE)
    FUZZ_ASSERT(ns == INT64_MAX || ns == INT64_MIN);
  if (rc == 0) {
    char out[32], again[40];
    time_format_rfc3339(ns, out);
    int64_t back;
    FUZZ_ASSERT(!time_parse_rfc3339(out, &back));
    int64_t sec = ns / NS_PER_SEC - (ns < 0 && ns % NS_PER_SEC ? 1 : 0);
    FUZZ_ASSERT(back == sec * NS_PER_SEC);
    memcpy(again, out, sizeof(out));
  }
  if (!sharedkey_parse_date(s, &ns))
    FUZZ_ASSERT(ns >= 0);
  free(s);
  return 0;
}
