#include <errno.h>
#include <stdlib.h>

#include "base/util.h"
#include "t.h"

TEST(durations_format_like_go) {
  char out[40];
  struct {
    int64_t ns;
    const char *want;
  } cases[] = {
      {0, "0s"},
      {1, "1ns"},
      {1100, "1.1\xc2\xb5s"},
      {2200000, "2.2ms"},
      {350000000, "350ms"},
      {1300000000, "1.3s"},
      {1500000000, "1.5s"},
      {603000000000LL, "10m3s"},
      {48LL * 3600 * NS_PER_SEC, "48h0m0s"},
      {-2 * NS_PER_SEC, "-2s"},
      {3723 * NS_PER_SEC + 500000000, "1h2m3.5s"},
  };
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    duration_format(cases[i].ns, out);
    CHECK_STR(out, cases[i].want);
  }
}

/* Found by fuzz_duration: the format of a duration near the int64 limit
 * did not parse back (strtod lost the last digits). */
TEST(durations_parse_back_exactly) {
  int64_t ns, back;
  char out[40];
  CHECK_INT(duration_parse("9223372036854775807", &ns), 0);
  duration_format(ns, out);
  CHECK_STR(out, "2562047h47m16.854775807s");
  CHECK_INT(duration_parse(out, &back), 0);
  CHECK_INT(back, INT64_MAX);
  CHECK_INT(duration_parse("-2562047h47m16.854775808s", &back), 0);
  CHECK_INT(back, INT64_MIN);
  CHECK_INT(duration_parse("2562047h47m16.854775808s", &back), -ERANGE);
  CHECK_INT(duration_parse("1.000000001s", &back), 0);
  CHECK_INT(back, 1000000001);
  CHECK_INT(duration_parse("1.5h", &back), 0);
  CHECK_INT(back, 5400 * NS_PER_SEC);
  CHECK_INT(duration_parse(".5m", &back), 0);
  CHECK_INT(back, 30 * NS_PER_SEC);
  /* Not Go syntax, though strtod took them. */
  CHECK_INT(duration_parse("1e3s", &back), -EINVAL);
  CHECK_INT(duration_parse("0x10s", &back), -EINVAL);
  CHECK_INT(duration_parse("infs", &back), -EINVAL);
  CHECK_INT(duration_parse(".s", &back), -EINVAL);
  CHECK_INT(duration_parse("99999999999999999999h", &back), -ERANGE);
}

TEST(durations_parse_go_syntax_and_days) {
  int64_t ns;
  CHECK_INT(duration_parse("500ms", &ns), 0);
  CHECK_INT(ns, 500 * NS_PER_MS);
  CHECK_INT(duration_parse("1h30m", &ns), 0);
  CHECK_INT(ns, 5400 * NS_PER_SEC);
  CHECK_INT(duration_parse("7d", &ns), 0);
  CHECK_INT(ns, 7 * 86400 * NS_PER_SEC);
  CHECK_INT(duration_parse("1.5s", &ns), 0);
  CHECK_INT(ns, 1500 * NS_PER_MS);
  CHECK_INT(duration_parse("1000", &ns), 0);
  CHECK_INT(ns, 1000);
  CHECK(duration_parse("10x", &ns) != 0);
  CHECK(duration_parse("", &ns) != 0);
  CHECK(duration_parse("s", &ns) != 0);
}

TEST(lag_truncation) {
  CHECK_INT(duration_round_lag(12345 * NS_PER_MS), 12 * NS_PER_SEC);
  CHECK_INT(duration_round_lag(1567 * NS_PER_MS), 1500 * NS_PER_MS);
  CHECK_INT(duration_round_lag(12345678), 12 * NS_PER_MS);
  /* The most negative duration has no positive counterpart. */
  CHECK_INT(duration_round_lag(INT64_MIN), INT64_MIN - INT64_MIN % NS_PER_SEC);
}

TEST(rfc3339_round_trip) {
  int64_t ns;
  char out[32];
  CHECK_INT(time_parse_rfc3339("2026-11-26T14:52:30.724767185Z", &ns), 0);
  time_format_rfc3339(ns, out);
  CHECK_STR(out, "2026-11-26T14:52:30Z");
  CHECK_INT(ns % NS_PER_SEC, 724767185);
  CHECK_INT(time_parse_rfc3339("2000-01-01T02:00:00+02:00", &ns), 0);
  time_format_rfc3339(ns, out);
  CHECK_STR(out, "2000-01-01T00:00:00Z");
  CHECK(time_parse_rfc3339("2000-01-01", &ns) != 0);
  CHECK(time_parse_rfc3339("yesterday", &ns) != 0);
}

/* Past 2262-04-11T23:47:16Z nanoseconds leave int64: -ERANGE, saturated
 * (2611 used to wrap to 1926 through signed overflow). */
TEST(rfc3339_out_of_range_saturates) {
  int64_t ns;
  CHECK_INT(time_parse_rfc3339("2262-04-11T23:47:16.854775807Z", &ns), 0);
  CHECK_INT(ns, INT64_MAX);
  CHECK_INT(time_parse_rfc3339("2262-04-11T23:47:16.854775808Z", &ns), -ERANGE);
  CHECK_INT(ns, INT64_MAX);
  const char *late[] = {"2263-01-01T00:00:00Z", "2299-12-31T23:59:59Z",
                        "2611-06-22T07:43:33Z", "9999-12-31T23:59:59-23:59"};
  for (size_t i = 0; i < sizeof(late) / sizeof(*late); i++) {
    ns = 0;
    CHECK_INT(time_parse_rfc3339(late[i], &ns), -ERANGE);
    CHECK_INT(ns, INT64_MAX);
  }
  CHECK_INT(time_parse_rfc3339("1677-09-21T00:12:43Z", &ns), -ERANGE);
  CHECK_INT(ns, INT64_MIN);
  CHECK_INT(time_parse_rfc3339("0000-01-01T00:00:00+23:59", &ns), -ERANGE);
  CHECK_INT(ns, INT64_MIN);
  CHECK_INT(time_ns_sat(INT64_MAX / 1000, 5), INT64_MAX);
  CHECK_INT(time_ns_sat(-INT64_MAX / 1000, 5), INT64_MIN);
  CHECK_INT(time_ns_sat(2, 5), 2000000005);
}

TEST(paths) {
  char *p = path_join("/a/", "/b");
  CHECK_STR(p, "/a/b");
  free(p);
  p = path_abs("/a/./b/../c//d");
  CHECK_STR(p, "/a/c/d");
  free(p);
  p = path_dir("/data/app.db");
  CHECK_STR(p, "/data");
  free(p);
  CHECK_STR(path_base("/data/app.db"), "app.db");
}

TEST(percent_decoding) {
  char *d = percent_decode("a%2Fb+c%zz%4", 12, 0);
  CHECK_STR(d, "a/b+c%zz%4");
  free(d);
  d = percent_decode("a%2fb+c", 7, 1);
  CHECK_STR(d, "a/b c");
  free(d);
}

int main(void) {
  RUN(durations_format_like_go);
  RUN(durations_parse_go_syntax_and_days);
  RUN(lag_truncation);
  RUN(rfc3339_round_trip);
  RUN(rfc3339_out_of_range_saturates);
  RUN(durations_parse_back_exactly);
  RUN(paths);
  RUN(percent_decoding);
  T_DONE();
}
