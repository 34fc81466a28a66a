/*
 * The listing commands' table format: Go's text/tabwriter with padding 2
 * (spec 5.2), widths in code points.
 */
#include <stdlib.h>

#include "cli/table.h"
#include "base/util.h"
#include "t.h"

static char *render(const struct table *t) {
  char *out = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&out, &n);
  table_print(t, f);
  fclose(f);
  return out;
}

TEST(pads_every_column_but_the_last) {
  struct table t;
  table_init(&t, 5);
  table_addv(&t, "name", "generation", "lag", "start", "end");
  table_addv(&t, "file", "6c0f537145dc1153", "1s", "2026-11-26T14:52:03Z",
             "2026-11-26T14:52:06Z");
  char *s = render(&t);
  CHECK_STR(s, "name  generation        lag  start                 end\n"
               "file  6c0f537145dc1153  1s   2026-11-26T14:52:03Z  "
               "2026-11-26T14:52:06Z\n");
  free(s);
  table_destroy(&t);
}

TEST(widths_count_code_points) {
  struct table t;
  table_init(&t, 3);
  table_addv(&t, "lag", "x", "y");
  table_addv(&t, "1.5\xc2\xb5s", "xx", "");
  char *s = render(&t);
  /* "1.5µs" is 5 wide: "lag" pads to 7, the empty last cell keeps the
   * preceding padding. */
  CHECK_STR(s, "lag    x   y\n"
               "1.5\xc2\xb5s  xx  \n");
  free(s);
  table_destroy(&t);
}

TEST(header_only) {
  struct table t;
  table_init(&t, 2);
  table_addv(&t, "path", "replicas");
  char *s = render(&t);
  CHECK_STR(s, "path  replicas\n");
  free(s);
  table_destroy(&t);
}

int main(void) {
  RUN(pads_every_column_but_the_last);
  RUN(widths_count_code_points);
  RUN(header_only);
  T_DONE();
}
