/*
 * S3 backend pieces that need no server: addressing (virtual host, path
 * style, dotted buckets, custom endpoints), region from AWS endpoints,
 * config validation, the shared credentials file parser, and that no
 * secret reaches a description or a message.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backends/aws_creds.h"
#include "backends/backend.h"
#include "backends/s3.h"
#include "base/err.h"
#include "base/log.h"
#include "loop/loop.h"
#include "t.h"

static struct backend *open_cfg(const char *bucket, const char *path,
                                const char *endpoint, const char *region,
                                int path_style, char *err, size_t errlen) {
  struct replica_config rc;
  memset(&rc, 0, sizeof(rc));
  rc.type = "s3";
  rc.name = "t";
  rc.bucket = (char *)bucket;
  rc.path = (char *)path;
  rc.endpoint = (char *)endpoint;
  rc.region = (char *)region;
  rc.force_path_style = path_style;
  rc.access_key_id = "AKIDEXAMPLE";
  rc.secret_access_key = "very-secret-key";
  return backend_open(&rc, err, errlen);
}

static void check_url(const char *bucket, const char *path,
                      const char *endpoint, const char *region, int ps,
                      const char *key, const char *want) {
  char err[256];
  struct backend *b =
      open_cfg(bucket, path, endpoint, region, ps, err, sizeof(err));
  CHECK(b != NULL);
  if (!b)
    return;
  char *url = s3_object_url(b, key);
  CHECK_STR(url, want);
  free(url);
  backend_close(b);
}

TEST(addressing) {
  check_url("bkt", "db", NULL, "eu-west-1", TRI_UNSET, "generations/x",
            "https://bkt.s3.eu-west-1.amazonaws.com/db/generations/x");
  check_url("my.bucket", "db", NULL, "eu-west-1", TRI_UNSET, "k",
            "https://s3.eu-west-1.amazonaws.com/my.bucket/db/k");
  check_url("bkt", "db", NULL, "us-east-1", TRI_TRUE, "k",
            "https://s3.us-east-1.amazonaws.com/bkt/db/k");
  check_url("bkt", "db", "http://localhost:9000", NULL, TRI_UNSET, "k",
            "http://localhost:9000/bkt/db/k");
  check_url("bkt", "db", "http://localhost:9000", NULL, TRI_FALSE, "k",
            "http://bkt.localhost:9000/db/k");
  check_url("bkt", "", "minio.local:9000", NULL, TRI_UNSET, "k",
            "https://minio.local:9000/bkt/k");
  check_url("bkt", "/a/b/", "https://gw.example.com/s3/", NULL, TRI_UNSET, "k",
            "https://gw.example.com/s3/bkt/a/b/k");
  check_url(
      "bkt", ".", "https://s3.us-west-000.backblazeb2.com", "us-west-000",
      TRI_TRUE, "a b/\xc3\xbc+&.lz4",
      "https://s3.us-west-000.backblazeb2.com/bkt/a%20b/%C3%BC%2B%26.lz4");
  char err[256];
  struct backend *b = open_cfg("bkt", "db",
                               "https://s3.eu-central-1."
                               "amazonaws.com",
                               NULL, TRI_FALSE, err, sizeof(err));
  CHECK_STR(s3_region(b), "eu-central-1");
  backend_close(b);
  /* Custom endpoint, no region: us-east-1 (spec 8.1). */
  b = open_cfg("bkt", "db", "http://127.0.0.1:4568", NULL, TRI_UNSET, err,
               sizeof(err));
  CHECK_STR(s3_region(b), "us-east-1");
  backend_close(b);
  /* AWS without a region: discovered at the first request. */
  b = open_cfg("bkt", "db", NULL, NULL, TRI_UNSET, err, sizeof(err));
  CHECK(s3_region(b) == NULL);
  CHECK(s3_object_url(b, "k") == NULL);
  backend_close(b);
}

TEST(desc_and_validation_without_secrets) {
  char err[512];
  struct backend *b =
      open_cfg("bkt", "/db/", NULL, "us-east-1", TRI_UNSET, err, sizeof(err));
  CHECK_STR(b->desc, "s3://bkt/db");
  CHECK(b->ops->caps & BACKEND_CAP_RANGE);
  CHECK(b->ops->caps & BACKEND_CAP_MULTIPART);
  CHECK(b->ops->caps & BACKEND_CAP_BATCH_DELETE);
  backend_close(b);
  b = open_cfg("bkt", ".", NULL, "us-east-1", TRI_UNSET, err, sizeof(err));
  CHECK_STR(b->desc, "s3://bkt");
  backend_close(b);
  CHECK(open_cfg(NULL, "db", NULL, NULL, TRI_UNSET, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "bucket required") != NULL);
  CHECK(open_cfg("bkt", "db", "ftp://x", NULL, TRI_UNSET, err, sizeof(err)) ==
        NULL);
  CHECK(strstr(err, "scheme") != NULL);
  CHECK(strstr(err, "very-secret-key") == NULL);

  struct replica_config rc;
  memset(&rc, 0, sizeof(rc));
  rc.type = "s3";
  rc.bucket = "bkt";
  rc.access_key_id = "AKID";
  rc.secret_access_key = "very-secret-key";
  rc.sse_c_key = "c2hvcnQ="; /* "short": not 256 bits */
  CHECK(backend_open(&rc, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "sse-c-key") != NULL);
  CHECK(strstr(err, "c2hvcnQ") == NULL);
  rc.sse_c_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
  b = backend_open(&rc, err, sizeof(err));
  CHECK(b != NULL);
  backend_close(b);
  rc.sse = "aws:kms";
  CHECK(backend_open(&rc, err, sizeof(err)) == NULL); /* SSE-C + SSE */
  rc.sse_c_key = NULL;
  rc.sse_kms_key_id = "arn:aws:kms:us-east-1:1:key/abc";
  b = backend_open(&rc, err, sizeof(err));
  CHECK(b != NULL);
  backend_close(b);
  rc.sse = "AES256"; /* a KMS key id with AES256 makes no sense */
  CHECK(backend_open(&rc, err, sizeof(err)) == NULL);
}

TEST(shared_credentials_file) {
  const char *text = "# comment\n[default]\naws_access_key_id = AK1\n"
                     "aws_secret_access_key=SK1\n\n[profile prod]\n"
                     "  aws_access_key_id = AK2  \n"
                     "aws_secret_access_key = SK2\naws_session_token = T2\n"
                     "[half]\naws_access_key_id = AK3\n";
  struct aws_creds c;
  CHECK_INT(aws_creds_parse_shared(text, "default", &c), 0);
  CHECK_STR(c.access_key_id, "AK1");
  CHECK_STR(c.secret_access_key, "SK1");
  CHECK(c.session_token == NULL);
  aws_creds_destroy(&c);
  CHECK_INT(aws_creds_parse_shared(text, "prod", &c), 0);
  CHECK_STR(c.access_key_id, "AK2");
  CHECK_STR(c.session_token, "T2");
  aws_creds_destroy(&c);
  CHECK_INT(aws_creds_parse_shared(text, "half", &c), ERR_CONFIG);
  CHECK_INT(aws_creds_parse_shared(text, "nope", &c), -ENOENT);
}

int main(void) {
  struct log_config lc = {.level = LOG_ERROR, .to_stderr = 1};
  log_setup(&lc);
  loop_init();
  RUN(addressing);
  RUN(desc_and_validation_without_secrets);
  RUN(shared_credentials_file);
  CHECK_INT(loop_close(), 0);
  T_DONE();
}
