#include <stdlib.h>
#include <unistd.h>

#include "base/err.h"
#include "config/url.h"
#include "base/util.h"
#include "t.h"

static char errbuf[512];

/* Parses s, which must succeed. */
static struct replica_url parse_ok(const char *s) {
  struct replica_url u;
  memset(&u, 0, sizeof(u));
  errbuf[0] = '\0';
  int rc = url_parse(s, &u, errbuf, sizeof(errbuf));
  if (rc) {
    t_failures++;
    fprintf(stderr, "%s: url_parse(%s) failed: %s\n", t_current, s, errbuf);
  }
  return u;
}

/* Parses s, which must fail with ERR_URL; the message is left in errbuf. */
static void parse_bad(const char *s) {
  struct replica_url u;
  memset(&u, 0, sizeof(u));
  errbuf[0] = '\0';
  int rc = url_parse(s, &u, errbuf, sizeof(errbuf));
  t_checks++;
  if (rc != ERR_URL) {
    t_failures++;
    fprintf(stderr, "%s: url_parse(%s): expected ERR_URL, got %d\n", t_current,
            s, rc);
    url_destroy(&u);
  }
}

TEST(is_url) {
  CHECK(url_is_url("s3://bucket/path"));
  CHECK(url_is_url("file:///a/b"));
  CHECK(url_is_url("my_scheme2://x"));
  CHECK(!url_is_url("/var/lib/db"));
  CHECK(!url_is_url("s3:/bucket"));
  CHECK(!url_is_url("://x"));
  CHECK(!url_is_url("s-3://x")); /* '-' is not \w */
  CHECK(!url_is_url(""));
}

/* The three expectations of Litestream's cmd/litestream/main_test.go. */
TEST(s3_litestream_expectations) {
  struct replica_url u = parse_ok("s3://foo/bar");
  CHECK_STR(u.scheme, "s3");
  CHECK_STR(u.host, "foo");
  CHECK_STR(u.bucket, "foo");
  CHECK_STR(u.path, "bar");
  CHECK_STR(u.region, NULL);
  CHECK_STR(u.endpoint, NULL);
  CHECK_INT(u.force_path_style, 0);
  url_destroy(&u);

  u = parse_ok("s3://foo.localhost:9000/bar");
  CHECK_STR(u.host, "foo.localhost:9000");
  CHECK_STR(u.bucket, "foo");
  CHECK_STR(u.path, "bar");
  CHECK_STR(u.region, "us-east-1");
  CHECK_STR(u.endpoint, "http://localhost:9000");
  CHECK_INT(u.force_path_style, 1);
  url_destroy(&u);

  u = parse_ok("s3://foo.s3.us-west-000.backblazeb2.com/bar");
  CHECK_STR(u.bucket, "foo");
  CHECK_STR(u.path, "bar");
  CHECK_STR(u.region, "us-west-000");
  CHECK_STR(u.endpoint, "https://s3.us-west-000.backblazeb2.com");
  CHECK_INT(u.force_path_style, 1);
  url_destroy(&u);
}

TEST(s3_host_table) {
  struct {
    const char *url, *bucket, *region, *endpoint;
    int path_style;
  } cases[] = {
      {"s3://bkt.s3.filebase.com/db", "bkt", NULL, "https://s3.filebase.com",
       1},
      {"s3://bkt.nyc3.digitaloceanspaces.com/db", "bkt", "nyc3",
       "https://nyc3.digitaloceanspaces.com", 1},
      {"s3://bkt.s3.fr-par.scw.cloud/db", "bkt", "fr-par",
       "https://s3.fr-par.scw.cloud", 1},
      {"s3://bkt.us-east-1.linodeobjects.com/db", "bkt", "us-east-1",
       "https://us-east-1.linodeobjects.com", 1},
      /* Dotted bucket names: the bucket part is greedy. */
      {"s3://my.bkt.s3.eu-central-003.backblazeb2.com/db", "my.bkt",
       "eu-central-003", "https://s3.eu-central-003.backblazeb2.com", 1},
      {"s3://a.b.ams3.digitaloceanspaces.com/db", "a.b", "ams3",
       "https://ams3.digitaloceanspaces.com", 1},
      /* No bucket in the host: an empty bucket (config then requires one). */
      {"s3://localhost:9000/db", "", "us-east-1", "http://localhost:9000", 1},
      {"s3://nyc3.digitaloceanspaces.com/db", "", "nyc3",
       "https://nyc3.digitaloceanspaces.com", 1},
      /* Ports are split off first and re-attached only to an endpoint. */
      {"s3://bkt.nyc3.digitaloceanspaces.com:8443/db", "bkt", "nyc3",
       "https://nyc3.digitaloceanspaces.com:8443", 1},
      {"s3://bkt:9000/db", "bkt", NULL, NULL, 0},
      {"s3://bkt.s3.filebase.com:444/db", "bkt", NULL,
       "https://s3.filebase.com:444", 1},
      /* Anything else is AWS, virtual-host style, whole host as bucket. */
      {"s3://bkt.r2.cloudflarestorage.com/db", "bkt.r2.cloudflarestorage.com",
       NULL, NULL, 0},
      {"s3://xlocalhost/db", "xlocalhost", NULL, NULL, 0},
  };
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    struct replica_url u = parse_ok(cases[i].url);
    CHECK_STR(u.bucket, cases[i].bucket);
    CHECK_STR(u.region, cases[i].region);
    CHECK_STR(u.endpoint, cases[i].endpoint);
    CHECK_INT(u.force_path_style, cases[i].path_style);
    CHECK_STR(u.path, "db");
    url_destroy(&u);
  }
}

TEST(s3_parse_host_alone) {
  struct replica_url u;
  memset(&u, 0, sizeof(u));
  url_s3_parse_host("foo.localhost", &u);
  CHECK_STR(u.bucket, "foo");
  CHECK_STR(u.endpoint, "http://localhost");
  /* Called again, it replaces what it filled. */
  url_s3_parse_host("bar", &u);
  CHECK_STR(u.bucket, "bar");
  CHECK_STR(u.region, NULL);
  CHECK_STR(u.endpoint, NULL);
  CHECK_INT(u.force_path_style, 0);
  url_destroy(&u);
}

TEST(key_prefix_paths) {
  struct {
    const char *url, *path;
  } cases[] = {
      {"s3://bkt", ""}, /* Litestream: "." */
      {"s3://bkt/", ""},          {"s3://bkt/a/b/", "a/b"},
      {"s3://bkt//a/./b", "a/b"}, {"s3://bkt/a/../../b", "b"},
      {"s3://bkt/a%20b", "a b"},  {"s3://bkt/p?x=1#frag", "p"},
  };
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    struct replica_url u = parse_ok(cases[i].url);
    CHECK_STR(u.path, cases[i].path);
    url_destroy(&u);
  }
  struct replica_url u = parse_ok("S3://BKT/x");
  CHECK_STR(u.scheme, "s3");
  CHECK_STR(u.bucket, "BKT");
  url_destroy(&u);
}

TEST(query_kept_raw) {
  struct replica_url u = parse_ok("s3://bkt/db?endpoint=http://m:9000#x");
  CHECK_STR(u.query, "endpoint=http://m:9000");
  CHECK_STR(u.path, "db");
  url_destroy(&u);
  u = parse_ok("s3://bkt/db");
  CHECK_STR(u.query, NULL);
  url_destroy(&u);
}

TEST(gcs_and_gs) {
  struct replica_url u = parse_ok("gcs://bucket/some/path");
  CHECK_STR(u.scheme, "gcs");
  CHECK_STR(u.host, "bucket");
  CHECK_STR(u.path, "some/path");
  CHECK_STR(u.bucket, NULL); /* the s3 host table is for s3 only */
  url_destroy(&u);
  u = parse_ok("gs://bucket/p");
  CHECK_STR(u.scheme, "gcs");
  CHECK_STR(u.host, "bucket");
  CHECK_STR(u.path, "p");
  url_destroy(&u);
}

TEST(abs_forms) {
  struct replica_url u = parse_ok("abs://acct@container/db/app");
  CHECK_STR(u.scheme, "abs");
  CHECK_STR(u.user, "acct");
  CHECK_STR(u.host, "container");
  CHECK_STR(u.path, "db/app");
  url_destroy(&u);
  u = parse_ok("abs://container/db");
  CHECK_STR(u.user, NULL);
  CHECK_STR(u.host, "container");
  CHECK_STR(u.path, "db");
  url_destroy(&u);
}

TEST(sftp_forms) {
  struct replica_url u = parse_ok("sftp://bob:pa%24%24w0rd@example.com:2222"
                                  "/backups//app/");
  CHECK_STR(u.scheme, "sftp");
  CHECK_STR(u.user, "bob");
  CHECK_STR(u.password, "pa$$w0rd");
  CHECK_STR(u.host, "example.com:2222");
  CHECK_STR(u.path, "/backups/app");
  url_destroy(&u);
  u = parse_ok("sftp://bob@host");
  CHECK_STR(u.password, NULL);
  CHECK_STR(u.host, "host");
  CHECK_STR(u.path, "");
  url_destroy(&u);
  /* The last '@' ends the userinfo, as in Go. */
  u = parse_ok("sftp://bob@corp:x@y@host/p");
  CHECK_STR(u.user, "bob@corp");
  CHECK_STR(u.password, "x@y");
  CHECK_STR(u.host, "host");
  url_destroy(&u);

  /* The user may come from the config's `user` key: config checks it. */
  u = parse_ok("sftp://host/path");
  CHECK_STR(u.user, NULL);
  CHECK_STR(u.path, "/path");
  url_destroy(&u);
  parse_bad("sftp://bob:hunter2@/path");
  CHECK(strstr(errbuf, "host required") != NULL);
  CHECK(strstr(errbuf, "hunter2") == NULL);
  CHECK(strstr(errbuf, "bob:xxxxx@") != NULL);
}

TEST(file_forms) {
  char cwd[4096];
  CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
  struct {
    const char *url, *path;
  } cases[] = {
      {"file:///a/b", "/a/b"},
      {"file:///a/./b/../c/", "/a/c"},
      {"file:////x//y", "/x/y"},
  };
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    struct replica_url u = parse_ok(cases[i].url);
    CHECK_STR(u.scheme, "file");
    CHECK_STR(u.path, cases[i].path);
    CHECK_STR(u.host, NULL);
    url_destroy(&u);
  }
  parse_bad("file://");
  /* Go reads file://relative/x as /relative/x: refused, with the fix. */
  parse_bad("file://relative/x");
  CHECK(strstr(errbuf, "file:///relative/x") != NULL);
  parse_bad("file://a");
  CHECK(strstr(errbuf, "file:///a") != NULL);
}

TEST(port_range) {
  struct replica_url u = parse_ok("sftp://h:65535/x");
  url_destroy(&u);
  u = parse_ok("sftp://h:/x");
  url_destroy(&u);
  parse_bad("sftp://h:99999999/x");
  CHECK(strstr(errbuf, "out of range") != NULL);
  parse_bad("sftp://h:0/x");
  parse_bad("s3://bkt.localhost:65536/x");
  parse_bad("sftp://h:99999999999999999999999999/x");
}

TEST(endpoints) {
  char e[256];
  const char *good[] = {"http://localhost:9000", "https://s3.example.com",
                        "minio:9000",            "http://[::1]:9000/base",
                        "http://u:p@h:1",        "HTTPS://h/"};
  for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
    e[0] = 0;
    CHECK_INT(url_check_endpoint(good[i], e, sizeof(e)), 0);
    if (e[0])
      fprintf(stderr, "%s: %s\n", good[i], e);
  }
  const char *bad[] = {"http://[zz",         "http://[zz]",
                       "http://h:99999999",  "http://h:0",
                       "http://",            "ftp://SECRET@x",
                       "http://h:",          "http://h x",
                       "http://SECRET@h:1x", "http://h:9000:9000"};
  for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
    e[0] = 0;
    CHECK_INT(url_check_endpoint(bad[i], e, sizeof(e)), ERR_URL);
    CHECK(strstr(e, "invalid endpoint") != NULL);
    CHECK(strstr(e, "SECRET") == NULL);
  }
  url_check_endpoint("ftp://SECRET@x", e, sizeof(e));
  CHECK_STR(e, "invalid endpoint \"ftp://xxxxx@x\": scheme must be http or "
               "https");
}

TEST(bad_urls) {
  parse_bad("/var/lib/backup");
  CHECK(strstr(errbuf, "scheme required") != NULL);
  CHECK(strstr(errbuf, "/var/lib/backup") != NULL);
  parse_bad("1s3://bucket/x");
  CHECK(strstr(errbuf, "invalid scheme") != NULL);
  parse_bad("s3://bkt:abc/x");
  CHECK(strstr(errbuf, "invalid port \":abc\"") != NULL);
  parse_bad("s3://b k/x");
  CHECK(strstr(errbuf, "invalid character \" \" in host") != NULL);
  parse_bad("s3://bkt/a%zzb");
  CHECK(strstr(errbuf, "escape") != NULL);
  parse_bad("s3://bkt/a%2");
  parse_bad("s3://[::1/x");
  parse_bad("s3://bkt/a\nb");
  parse_bad("s3://u ser@bkt/x");
  CHECK(strstr(errbuf, "userinfo") != NULL);
  /* IPv6 literals are fine. */
  struct replica_url u = parse_ok("s3://[::1]:9000/x");
  CHECK_STR(u.host, "[::1]:9000");
  CHECK_STR(u.bucket, "::1");
  url_destroy(&u);
}

TEST(redaction) {
  char *r = url_redact("sftp://u:secret@h:22/x?sig=abc#f");
  CHECK_STR(r, "sftp://u:xxxxx@h:22/x?xxxxx");
  free(r);
  r = url_redact("s3://bkt/p");
  CHECK_STR(r, "s3://bkt/p");
  free(r);
  r = url_redact("abs://acct@c/p");
  CHECK_STR(r, "abs://acct@c/p");
  free(r);
  parse_bad("sftp://u:secret@h/%zz?sig=topsecret");
  CHECK(strstr(errbuf, "secret") == NULL);
  r = url_redact_userinfo("ftp://SECRET@x/p?q");
  CHECK_STR(r, "ftp://xxxxx@x/p?xxxxx");
  free(r);
  r = url_redact_userinfo("http://u:SECRET@x");
  CHECK_STR(r, "http://xxxxx@x");
  free(r);
}

/* A 252-254 byte URL with a short query: the "?xxxxx" used to be copied
 * over the query in place, past the end of the buffer (heap overflow found
 * by libFuzzer; ASan reports it). */
TEST(redaction_long_url_short_query) {
  for (size_t len = 240; len < 270; len++) {
    for (size_t ql = 0; ql < 6; ql++) {
      char s[300];
      size_t pre = len - ql - 1;
      memcpy(s, "s3://b/", 7);
      memset(s + 7, 'a', pre - 7);
      s[pre] = '?';
      memset(s + pre + 1, 'q', ql);
      s[len] = '\0';
      char *r = url_redact(s);
      CHECK_INT(strlen(r), pre + 6);
      CHECK(!strncmp(r, s, pre) && !strcmp(r + pre, "?xxxxx"));
      free(r);
    }
  }
}

int main(void) {
  RUN(is_url);
  RUN(s3_litestream_expectations);
  RUN(s3_host_table);
  RUN(s3_parse_host_alone);
  RUN(key_prefix_paths);
  RUN(query_kept_raw);
  RUN(gcs_and_gs);
  RUN(abs_forms);
  RUN(sftp_forms);
  RUN(file_forms);
  RUN(bad_urls);
  RUN(redaction);
  RUN(redaction_long_url_short_query);
  RUN(port_range);
  RUN(endpoints);
  T_DONE();
}
