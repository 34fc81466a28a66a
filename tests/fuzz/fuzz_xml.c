/* XML responses: the tree builder, and the S3 ListObjectsV2 page parser
 * on top of it. */
#include "backends/backend.h"
#include "backends/s3.h"
#include "backends/xml.h"
#include "fuzz.h"

static void walk(const struct xml_node *n) {
  /* Iterative: the depth limit is what is being tested. */
  int depth = 0;
  while (n) {
    FUZZ_ASSERT(depth <= XML_MAX_DEPTH);
    (void)xml_text(n, "Error/Code");
    if (n->child) {
      n = n->child;
      depth++;
      continue;
    }
    while (n && !n->next) {
      n = n->parent;
      depth--;
    }
    if (n)
      n = n->next;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1 << 20)
    return 0;
  char err[256];
  struct xml_node *x =
      xml_parse_err((const char *)data, size, err, sizeof(err));
  if (x) {
    walk(x);
    for (const struct xml_node *c = xml_child(x, "Contents"); c;
         c = xml_next(c))
      (void)xml_text(c, "Key");
  } else {
    FUZZ_ASSERT(err[0]);
  }
  xml_free(x);
  struct obj_list acc;
  memset(&acc, 0, sizeof(acc));
  char *token = NULL;
  if (!s3_listing_parse((const char *)data, size, "db/", &acc, &token, err,
                        sizeof(err))) {
    for (size_t i = 0; i < acc.n; i++)
      FUZZ_ASSERT(acc.objs[i].size >= 0);
    obj_list_sort(&acc);
  }
  free(token);
  obj_list_destroy(&acc);
  return 0;
}
