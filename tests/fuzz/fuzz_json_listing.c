/* GCS JSON object listings. */
#include "backends/backend.h"
#include "backends/gcs.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1 << 20)
    return 0;
  struct obj_list out;
  memset(&out, 0, sizeof(out));
  char *token = NULL;
  char why[256];
  if (!gcs_listing_parse((const char *)data, size, "db/", &out, &token, why,
                         sizeof(why))) {
    for (size_t i = 0; i < out.n; i++)
      FUZZ_ASSERT(out.objs[i].size >= 0);
    obj_list_sort(&out);
  }
  free(token);
  obj_list_destroy(&out);
  return 0;
}
