/* Go durations: parse, and format(parse(x)) parses back to the same value. */
#include "base/util.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 256)
    return 0;
  char *s = fuzz_str(data, size);
  int64_t ns, back;
  if (!duration_parse(s, &ns)) {
    char out[40];
    duration_format(ns, out);
    FUZZ_ASSERT(!duration_parse(out, &back));
    FUZZ_ASSERT(back == ns);
    (void)duration_round_lag(ns);
  }
  free(s);
  return 0;
}
