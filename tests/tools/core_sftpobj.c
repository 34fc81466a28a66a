/*
 * A small command-line client for the SFTP backend, for benchmarks
 * (bench/sftp_throughput.sh) and manual checks.
 *
 *   core_sftpobj URL KEY_PATH HOST_KEY_PATH put KEY FILE
 *   core_sftpobj URL KEY_PATH HOST_KEY_PATH get KEY OUT
 * Prints "BYTES SECONDS" on stdout (time of the operation alone, the
 * connection included, as the first upload of a replica pays it).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backend.h"
#include "base/util.h"
#include "config/config.h"
#include "loop/loop.h"

int main(int argc, char **argv) {
  if (argc != 7 || (strcmp(argv[4], "put") && strcmp(argv[4], "get"))) {
    fprintf(stderr, "usage: core_sftpobj URL KEY_PATH HOST_KEY_PATH "
                    "put|get KEY FILE\n");
    return 2;
  }
  struct replica_config rc;
  char err[1024];
  if (config_replica_from_url(argv[1], &rc, err, sizeof(err))) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  rc.key_path = xstrdup(argv[2]);
  rc.host_key_path = xstrdup(argv[3]);
  loop_init();
  struct backend *b = backend_open(&rc, err, sizeof(err));
  if (!b) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  int put = !strcmp(argv[4], "put");
  int fd = put ? open(argv[6], O_RDONLY | O_CLOEXEC)
               : open(argv[6], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    perror(argv[6]);
    return 1;
  }
  int64_t t0 = time_mono_ns(), bytes = 0;
  int rc2;
  if (put) {
    struct stat st;
    fstat(fd, &st);
    struct payload p = {.fd = fd, .off = 0, .len = st.st_size};
    bytes = st.st_size;
    rc2 = backend_put_sync(b, argv[5], &p, err, sizeof(err));
  } else {
    struct sink s = {.fd = fd, .off = 0};
    rc2 = backend_get_sync(b, argv[5], 0, -1, &s, err, sizeof(err));
    struct stat st;
    fstat(fd, &st);
    bytes = st.st_size;
  }
  double secs = (double)(time_mono_ns() - t0) / 1e9;
  close(fd);
  if (rc2) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  printf("%lld %.3f\n", (long long)bytes, secs);
  backend_close(b);
  config_replica_destroy(&rc);
  loop_close();
  return 0;
}
