/*
 * A small command-line client for the S3 backend, for cross-checks with
 * real S3 clients (tests/e2e/s3_cli_crosscheck.sh) and benchmarks.
 *
 *   core_s3obj [options] put KEY FILE        upload FILE as is
 *   core_s3obj [options] put-lz4 KEY FILE    LZ4-frame FILE (as sluice
 *                                            writes snapshots), upload
 *   core_s3obj [options] get KEY OUT [OFF LEN]
 *   core_s3obj [options] list PREFIX [delim] one "key size mtime" a line
 *   core_s3obj [options] del KEY...
 * Options: --endpoint URL --bucket B --path PREFIX --path-style 0|1
 *          --region R --sse AES256|aws:kms --storage-class C -v
 * Credentials come from the environment chain (AWS_ACCESS_KEY_ID, ...).
 * Prints requests/attempts/retries to stderr with -v.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backend.h"
#include "base/log.h"
#include "format/lz4frame.h"
#include "base/util.h"
#include "loop/http.h"
#include "loop/loop.h"

static int usage(void) {
  fprintf(stderr, "usage: core_s3obj [--endpoint URL] [--bucket B] "
                  "[--path P] [--path-style 0|1] [--region R] [--sse S] "
                  "[--storage-class C] [-v] put|put-lz4|get|list|del ...\n");
  return 2;
}

int main(int argc, char **argv) {
  struct replica_config rc;
  memset(&rc, 0, sizeof(rc));
  rc.type = "s3";
  rc.name = "s3obj";
  rc.bucket = "testbucket";
  rc.force_path_style = TRI_UNSET;
  int verbose = 0, i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *o = argv[i];
    if (!strcmp(o, "-v")) {
      verbose = 1;
      continue;
    }
    if (i + 1 >= argc)
      return usage();
    const char *v = argv[++i];
    if (!strcmp(o, "--endpoint"))
      rc.endpoint = (char *)v;
    else if (!strcmp(o, "--bucket"))
      rc.bucket = (char *)v;
    else if (!strcmp(o, "--path"))
      rc.path = (char *)v;
    else if (!strcmp(o, "--path-style"))
      rc.force_path_style = atoi(v) ? TRI_TRUE : TRI_FALSE;
    else if (!strcmp(o, "--region"))
      rc.region = (char *)v;
    else if (!strcmp(o, "--sse"))
      rc.sse = (char *)v;
    else if (!strcmp(o, "--storage-class"))
      rc.storage_class = (char *)v;
    else
      return usage();
  }
  if (i >= argc)
    return usage();
  const char *cmd = argv[i++];
  struct log_config lc = {.level = verbose ? LOG_DEBUG : LOG_WARN,
                          .to_stderr = 1};
  log_setup(&lc);
  loop_init();
  http_init();
  char err[1024] = "";
  struct backend *b = backend_open(&rc, err, sizeof(err));
  if (!b) {
    fprintf(stderr, "core_s3obj: %s\n", err);
    return 1;
  }
  int rc_ = 0;
  if (!strcmp(cmd, "put") && argc - i == 2) {
    /* Streamed from the file (large snapshots never sit in memory). */
    int fd = open(argv[i + 1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
      snprintf(err, sizeof(err), "cannot open %s", argv[i + 1]);
      rc_ = -1;
    } else {
      struct payload p = {.fd = fd, .off = 0, .len = (int64_t)st.st_size};
      rc_ = backend_put_sync(b, argv[i], &p, err, sizeof(err));
    }
    if (fd >= 0)
      close(fd);
  } else if (!strcmp(cmd, "put-lz4") && argc - i == 2) {
    struct buf in, z;
    rc_ = file_read_all(argv[i + 1], 0, &in);
    if (!rc_) {
      buf_init(&z, 0);
      rc_ = lz4_compress(in.data ? in.data : (const uint8_t *)"", in.len, &z);
      struct payload p = {.data = z.data ? z.data : (const uint8_t *)"",
                          .fd = -1,
                          .len = (int64_t)z.len};
      if (!rc_)
        rc_ = backend_put_sync(b, argv[i], &p, err, sizeof(err));
      buf_destroy(&z);
      buf_destroy(&in);
    } else {
      snprintf(err, sizeof(err), "cannot read %s", argv[i + 1]);
    }
  } else if (!strcmp(cmd, "get") && (argc - i == 2 || argc - i == 4)) {
    int fd = open(argv[i + 1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    struct sink s = {.fd = fd, .off = 0};
    int64_t off = argc - i == 4 ? atoll(argv[i + 2]) : 0;
    int64_t len = argc - i == 4 ? atoll(argv[i + 3]) : -1;
    rc_ = fd < 0 ? -1
                 : backend_get_sync(b, argv[i], off, len, &s, err, sizeof(err));
    if (fd >= 0)
      close(fd);
  } else if (!strcmp(cmd, "list") && (argc - i == 1 || argc - i == 2)) {
    struct obj_list l = {0};
    rc_ = backend_list_sync(b, argv[i], argc - i == 2, &l, err, sizeof(err));
    for (size_t k = 0; !rc_ && k < l.n_prefixes; k++)
      printf("%s\n", l.prefixes[k]);
    for (size_t k = 0; !rc_ && k < l.n; k++) {
      char when[32];
      time_format_rfc3339(l.objs[k].mtime_ns, when);
      printf("%s %lld %s\n", l.objs[k].key, (long long)l.objs[k].size, when);
    }
    obj_list_destroy(&l);
  } else if (!strcmp(cmd, "del") && argc - i >= 1) {
    rc_ = backend_del_sync(b, argv + i, (size_t)(argc - i), err, sizeof(err));
  } else {
    backend_close(b);
    return usage();
  }
  if (rc_)
    fprintf(stderr, "core_s3obj: %s\n", err);
  if (verbose)
    fprintf(stderr, "requests=%lld attempts=%lld retries=%lld\n",
            (long long)b->pool.n_requests, (long long)b->pool.n_attempts,
            (long long)b->pool.n_retries);
  backend_close(b);
  http_shutdown();
  loop_close();
  return rc_ ? 1 : 0;
}
