/* The XML tree of S3/Azure responses against hostile bodies: a 7 MB
 * document nested 2 million deep used to overflow the stack in the
 * recursive xml_free (SIGSEGV); a wide one was quadratic to build. */
#include <stdlib.h>
#include <time.h>

#include "backends/xml.h"
#include "base/util.h"
#include "t.h"

static char *repeat(const char *open, const char *close, size_t n,
                    size_t *len) {
  size_t lo = strlen(open), lc = strlen(close);
  char *s = malloc(n * (lo + lc) + 1), *w = s;
  for (size_t i = 0; i < n; i++, w += lo)
    memcpy(w, open, lo);
  for (size_t i = 0; i < n; i++, w += lc)
    memcpy(w, close, lc);
  *w = '\0';
  *len = (size_t)(w - s);
  return s;
}

TEST(deep_nesting_is_refused) {
  size_t len;
  char err[256] = "";
  /* 7 MB: 1.75 million levels of <a>, most of them never closed. */
  char *s = repeat("<a>", "", 7 * 1024 * 1024 / 3, &len);
  CHECK(xml_parse_err(s, len, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "nested deeper than 64") != NULL);
  free(s);
  /* Closed too (well-formed, 2.3 MB deep). */
  s = repeat("<a>", "</a>", 300000, &len);
  CHECK(xml_parse_err(s, len, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "nested deeper") != NULL);
  free(s);
  /* At the limit it parses. */
  s = repeat("<a>", "</a>", XML_MAX_DEPTH, &len);
  struct xml_node *x = xml_parse_err(s, len, err, sizeof(err));
  CHECK(x != NULL);
  int depth = 0;
  for (struct xml_node *n = x; n; n = n->child)
    depth++;
  CHECK_INT(depth, XML_MAX_DEPTH);
  xml_free(x);
  free(s);
  s = repeat("<a>", "</a>", XML_MAX_DEPTH + 1, &len);
  CHECK(xml_parse(s, len) == NULL);
  free(s);
}

/* The iterative free on a tree both deep and wide (ASan: no leak). */
TEST(free_deep_and_wide) {
  struct buf b;
  buf_init(&b, 0);
  buf_appendf(&b, "<r>");
  for (int i = 0; i < 1000; i++)
    buf_appendf(&b, "<c><d><e>%d</e><e/></d></c>", i);
  buf_appendf(&b, "</r>");
  struct xml_node *x = xml_parse((const char *)b.data, b.len);
  CHECK(x != NULL);
  int n = 0;
  for (struct xml_node *c = xml_child(x, "c"); c; c = xml_next(c))
    n++;
  CHECK_INT(n, 1000);
  CHECK_STR(xml_text(xml_child(x, "c"), "d/e"), "0");
  xml_free(x);
  buf_destroy(&b);
}

TEST(wide_listing_is_linear) {
  size_t n = 1000000;
  struct buf b;
  buf_init(&b, 0);
  buf_appendf(&b, "<ListBucketResult>");
  for (size_t i = 0; i < n; i++)
    buf_append(&b, "<Contents/>", 11);
  buf_appendf(&b, "</ListBucketResult>");
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  struct xml_node *x = xml_parse((const char *)b.data, b.len);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  CHECK(x != NULL);
  size_t k = 0;
  for (struct xml_node *c = x->child; c; c = c->next)
    k++;
  CHECK_INT(k, n);
  double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  CHECK(s < 20); /* quadratic: hours */
  xml_free(x);
  buf_destroy(&b);
}

TEST(errors_say_why) {
  char err[256];
  CHECK(xml_parse_err("<a><b></a>", 10, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "not well-formed XML") != NULL);
  CHECK(xml_parse_err("", 0, err, sizeof(err)) == NULL);
  struct xml_node *x = xml_parse("<a:Error><Code>X</Code></a:Error>", 33);
  CHECK(x != NULL);
  CHECK_STR(xml_text(x, "Error/Code"), "X");
  xml_free(x);
}

int main(void) {
  RUN(deep_nesting_is_refused);
  RUN(free_deep_and_wide);
  RUN(wide_listing_is_linear);
  RUN(errors_say_why);
  T_DONE();
}
