/* Listing pages from hostile stores: a continuation token seen before (S3
 * NextContinuationToken, Azure NextMarker, GCS nextPageToken) or too many
 * pages end the listing with an error instead of a hang; the S3 and GCS
 * page parsers say why a page is refused. */
#include <stdlib.h>

#include "backends/backend.h"
#include "backends/gcs.h"
#include "backends/s3.h"
#include "base/err.h"
#include "t.h"

TEST(repeated_and_cycling_tokens) {
  char why[256];
  struct list_pages lp = {0};
  CHECK_INT(list_pages_next(&lp, "A", why, sizeof(why)), 0);
  CHECK_INT(list_pages_next(&lp, "A", why, sizeof(why)), ERR_PROTOCOL);
  CHECK(strstr(why, "page 2 repeats an earlier continuation token") != NULL);
  list_pages_destroy(&lp);
  CHECK_INT(list_pages_next(&lp, "A", why, sizeof(why)), 0);
  CHECK_INT(list_pages_next(&lp, "B", why, sizeof(why)), 0);
  CHECK_INT(list_pages_next(&lp, "A", why, sizeof(why)), ERR_PROTOCOL);
  list_pages_destroy(&lp);
  /* The last page (no token) is always fine. */
  CHECK_INT(list_pages_next(&lp, NULL, why, sizeof(why)), 0);
  list_pages_destroy(&lp);
}

TEST(page_bound) {
  char why[256], tok[32];
  struct list_pages lp = {0};
  int rc = 0, pages = 0;
  while (!rc && pages < BACKEND_LIST_MAX_PAGES + 5) {
    snprintf(tok, sizeof(tok), "t%d", pages++);
    rc = list_pages_next(&lp, tok, why, sizeof(why));
  }
  CHECK_INT(rc, ERR_PROTOCOL);
  CHECK_INT(pages, BACKEND_LIST_MAX_PAGES);
  CHECK(strstr(why, "listing not finished after 100000 pages") != NULL);
  list_pages_destroy(&lp);
}

TEST(s3_pages) {
  const char *page =
      "<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>true</IsTruncated>"
      "<NextContinuationToken>n1</NextContinuationToken><Contents><Key>db/a"
      "</Key><Size>-5</Size><LastModified>9999-01-01T00:00:00Z</LastModified>"
      "</Contents><Contents><Key>other/b</Key></Contents></ListBucketResult>";
  struct obj_list l = {0};
  char *token = NULL, why[256];
  CHECK_INT(
      s3_listing_parse(page, strlen(page), "db/", &l, &token, why, sizeof(why)),
      0);
  CHECK_STR(token, "n1");
  CHECK_INT(l.n, 1);
  CHECK_STR(l.objs[0].key, "a");
  CHECK_INT(l.objs[0].size, 0); /* a negative size is not believed */
  CHECK_INT(l.objs[0].mtime_ns, INT64_MAX);
  const char *bad = "<ListBucketResult><IsTruncated>true</IsTruncated>"
                    "</ListBucketResult>";
  CHECK_INT(
      s3_listing_parse(bad, strlen(bad), "db/", &l, &token, why, sizeof(why)),
      ERR_PROTOCOL);
  CHECK(strstr(why, "IsTruncated without a NextContinuationToken") != NULL);
  CHECK_INT(
      s3_listing_parse("<Error/>", 8, "db/", &l, &token, why, sizeof(why)),
      ERR_PROTOCOL);
  CHECK(strstr(why, "<Error> is not ListBucketResult") != NULL);
  free(token);
  obj_list_destroy(&l);
}

TEST(gcs_pages) {
  const char *page = "{\"nextPageToken\":\"p2\",\"prefixes\":[\"db/g/\"],"
                     "\"items\":[{\"name\":\"db/x\",\"size\":\"7\"}]}";
  struct obj_list l = {0};
  char *token = NULL, why[256];
  CHECK_INT(gcs_listing_parse(page, strlen(page), "db/", &l, &token, why,
                              sizeof(why)),
            0);
  CHECK_STR(token, "p2");
  CHECK_INT(l.n, 1);
  CHECK_INT(l.objs[0].size, 7);
  CHECK_INT(l.n_prefixes, 1);
  CHECK_INT(gcs_listing_parse("{", 1, "db/", &l, &token, why, sizeof(why)),
            ERR_PROTOCOL);
  CHECK(why[0] != '\0');
  /* 100,000 distinct prefixes: deduplicated in linear time. */
  for (int i = 0; i < 100000; i++) {
    char p[32];
    snprintf(p, sizeof(p), "g%d/", i);
    obj_list_add_prefix(&l, p);
    obj_list_add_prefix(&l, p);
  }
  CHECK_INT(l.n_prefixes, 100001);
  free(token);
  obj_list_destroy(&l);
}

int main(void) {
  RUN(repeated_and_cycling_tokens);
  RUN(page_bound);
  RUN(s3_pages);
  RUN(gcs_pages);
  T_DONE();
}
