/*
 * The file backend through the loop (put, ranged get, list with and
 * without a delimiter, delete with directory pruning, error messages) and
 * the store listings on top of it (foreign objects, invalid generation
 * names, ordering, time bounds).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "backends/backend.h"
#include "base/err.h"
#include "core/store.h"
#include "base/util.h"
#include "loop/loop.h"
#include "t.h"

#define GEN "0123456789abcdef"
#define GEN2 "fedcba9876543210"

static char g_dir[] = "/tmp/sluice-store.XXXXXX";
static char g_err[1024];

static struct backend *open_file_backend(const char *path) {
  struct replica_config rc = {0};
  rc.type = "file";
  rc.name = "file";
  rc.path = (char *)path;
  return backend_open(&rc, g_err, sizeof(g_err));
}

static int put_str(struct backend *b, const char *key, const char *s) {
  struct payload p = {(const uint8_t *)s, -1, 0, (int64_t)strlen(s)};
  return backend_put_sync(b, key, &p, g_err, sizeof(g_err));
}

static char *root_path(const char *key) {
  return xasprintf("%s/root/%s", g_dir, key);
}

static int exists(const char *key) {
  char *p = root_path(key);
  struct stat st;
  int r = stat(p, &st) == 0;
  free(p);
  return r;
}

static void set_mtime(const char *key, int64_t sec) {
  char *p = root_path(key);
  struct timeval tv[2] = {{sec, 0}, {sec, 500000}};
  utimes(p, tv);
  free(p);
}

TEST(open_requires_path_and_sets_desc) {
  struct replica_config rc = {0};
  rc.type = "file";
  rc.name = "x";
  CHECK(backend_open(&rc, g_err, sizeof(g_err)) == NULL);
  CHECK(strstr(g_err, "path required") != NULL);
  char *root = xasprintf("%s/root", g_dir);
  struct backend *b = open_file_backend(root);
  CHECK(b != NULL);
  char *want = xasprintf("file://%s", root);
  CHECK_STR(b->desc, want);
  CHECK(b->ops->caps & BACKEND_CAP_RANGE);
  free(want);
  free(root);
  backend_close(b);
}

TEST(put_get_ranges) {
  char *root = xasprintf("%s/root", g_dir);
  struct backend *b = open_file_backend(root);
  const char *key = "generations/" GEN "/wal/00000000_00000000.wal.lz4";
  CHECK_INT(put_str(b, key, "0123456789abcdef"), 0);
  CHECK(exists(key));
  CHECK(!exists("generations/" GEN "/wal/00000000_00000000.wal.lz4.tmp"));
  char *path = root_path(key);
  struct stat st;
  CHECK_INT(stat(path, &st), 0);
  CHECK_INT(st.st_mode & 0777, 0600);
  free(path);
  path = root_path("generations/" GEN "/wal");
  CHECK_INT(stat(path, &st), 0);
  CHECK_INT(st.st_mode & 0777, 0700);
  free(path);

  struct buf buf;
  buf_init(&buf, 0);
  struct sink s = {&buf, -1, 0};
  CHECK_INT(backend_get_sync(b, key, 0, -1, &s, g_err, sizeof(g_err)), 0);
  CHECK_INT(buf.len, 16);
  CHECK(!memcmp(buf.data, "0123456789abcdef", 16));
  buf_reset(&buf);
  CHECK_INT(backend_get_sync(b, key, 4, 3, &s, g_err, sizeof(g_err)), 0);
  CHECK_INT(buf.len, 3);
  CHECK(!memcmp(buf.data, "456", 3));
  buf_reset(&buf);
  /* A range past the end is cut at the end. */
  CHECK_INT(backend_get_sync(b, key, 10, 100, &s, g_err, sizeof(g_err)), 0);
  CHECK_INT(buf.len, 6);
  buf_reset(&buf);
  /* A buffer cap is honoured. */
  buf.max = 8;
  CHECK_INT(backend_get_sync(b, key, 0, -1, &s, g_err, sizeof(g_err)), -EFBIG);
  buf.max = 0;
  buf_destroy(&buf);

  /* Into an fd at an offset; and a put from an fd range. */
  char *tmp = xasprintf("%s/sinkfile", g_dir);
  int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0600);
  struct sink fs = {NULL, fd, 100};
  CHECK_INT(backend_get_sync(b, key, 2, 5, &fs, g_err, sizeof(g_err)), 0);
  char got[8] = {0};
  CHECK_INT(pread(fd, got, 5, 100), 5);
  CHECK_STR(got, "23456");
  struct payload p = {NULL, fd, 101, 3};
  CHECK_INT(backend_put_sync(b, "other/x", &p, g_err, sizeof(g_err)), 0);
  buf_init(&buf, 0);
  CHECK_INT(backend_get_sync(b, "other/x", 0, -1, &s, g_err, sizeof(g_err)), 0);
  CHECK(buf.len == 3 && !memcmp(buf.data, "345", 3));
  buf_destroy(&buf);
  close(fd);
  free(tmp);

  /* Missing object: ERR_NOT_FOUND, message names operation and path. */
  buf_init(&buf, 0);
  int rc = backend_get_sync(b, "generations/" GEN "/nope", 0, -1, &s, g_err,
                            sizeof(g_err));
  CHECK_INT(rc, ERR_NOT_FOUND);
  char *want = xasprintf("file: get %s/generations/" GEN "/nope: ", root);
  CHECK(str_has_prefix(g_err, want));
  free(want);
  buf_destroy(&buf);

  /* Keys may not leave the root. */
  CHECK(put_str(b, "../escape", "x") != 0);
  CHECK(strstr(g_err, "invalid key") != NULL);
  CHECK(b->op_count[BOP_PUT] >= 3);
  backend_close(b);
  free(root);
}

TEST(put_error_names_path_and_cause) {
  char *root = xasprintf("%s/afile", g_dir);
  int fd = open(root, O_RDWR | O_CREAT | O_TRUNC, 0600);
  close(fd);
  struct backend *b = open_file_backend(root);
  CHECK(put_str(b, "generations/" GEN "/x", "data") != 0);
  char *want = xasprintf("file: put %s/generations/" GEN "/x: ", root);
  CHECK(str_has_prefix(g_err, want));
  CHECK(strstr(g_err, "Not a directory") != NULL);
  free(want);
  backend_close(b);
  free(root);
}

static void list(struct backend *b, const char *prefix, int delim,
                 struct obj_list *l) {
  memset(l, 0, sizeof(*l));
  CHECK_INT(backend_list_sync(b, prefix, delim, l, g_err, sizeof(g_err)), 0);
}

TEST(list_with_and_without_delimiter) {
  char *root = xasprintf("%s/list", g_dir);
  struct backend *b = open_file_backend(root);
  const char *keys[] = {
      "generations/" GEN2 "/snapshots/00000001.snapshot.lz4",
      "generations/" GEN "/wal/00000001_00000000.wal.lz4",
      "generations/" GEN "/wal/00000000_00001000.wal.lz4",
      "generations/" GEN "/wal/00000000_00000000.wal.lz4",
      "generations/" GEN "/snapshots/00000000.snapshot.lz4",
      "generations/readme.txt",
      "top.txt",
  };
  for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
    CHECK_INT(put_str(b, keys[i], "abc"), 0);
  /* An in-flight upload and an empty directory are not listed. */
  char *p = root_path("../list/generations/" GEN "/wal/00000002_00000000.wal."
                      "lz4.tmp");
  int fd = open(p, O_WRONLY | O_CREAT, 0600);
  close(fd);
  free(p);
  p = xasprintf("%s/generations/aaaaaaaaaaaaaaaa/wal", root);
  mkdir_p(p, 0700);
  free(p);

  struct obj_list l;
  list(b, "", 0, &l);
  CHECK_INT(l.n, ARRAY_SIZE(keys));
  CHECK_INT(l.n_prefixes, 0);
  CHECK_STR(l.objs[0].key,
            "generations/" GEN "/snapshots/00000000.snapshot.lz4");
  CHECK_STR(l.objs[1].key, "generations/" GEN "/wal/00000000_00000000.wal.lz4");
  CHECK_STR(l.objs[2].key, "generations/" GEN "/wal/00000000_00001000.wal.lz4");
  CHECK_STR(l.objs[6].key, "top.txt");
  CHECK_INT(l.objs[0].size, 3);
  CHECK(l.objs[0].mtime_ns > 1600000000LL * NS_PER_SEC);
  obj_list_destroy(&l);

  list(b, "generations/", '/', &l);
  CHECK_INT(l.n, 1);
  CHECK_STR(l.objs[0].key, "generations/readme.txt");
  CHECK_INT(l.n_prefixes, 2);
  CHECK_STR(l.prefixes[0], "generations/" GEN "/");
  CHECK_STR(l.prefixes[1], "generations/" GEN2 "/");
  obj_list_destroy(&l);

  list(b, "generations/" GEN "/wal/00000000", 0, &l);
  CHECK_INT(l.n, 2);
  obj_list_destroy(&l);

  list(b, "generations/" GEN "/", '/', &l);
  CHECK_INT(l.n, 0);
  CHECK_INT(l.n_prefixes, 2);
  CHECK_STR(l.prefixes[0], "generations/" GEN "/snapshots/");
  CHECK_STR(l.prefixes[1], "generations/" GEN "/wal/");
  obj_list_destroy(&l);

  list(b, "t", '/', &l);
  CHECK_INT(l.n, 1);
  CHECK_INT(l.n_prefixes, 0);
  obj_list_destroy(&l);

  /* Missing directories list empty. */
  list(b, "generations/ffffffffffffffff/wal/", '/', &l);
  CHECK_INT(l.n + l.n_prefixes, 0);
  obj_list_destroy(&l);
  struct backend *none = open_file_backend("/nonexistent/sluice/replica");
  list(none, "generations/", '/', &l);
  CHECK_INT(l.n + l.n_prefixes, 0);
  obj_list_destroy(&l);
  backend_close(none);
  backend_close(b);
  free(root);
}

TEST(delete_prunes_empty_directories) {
  char *root = xasprintf("%s/del", g_dir);
  struct backend *b = open_file_backend(root);
  char *k1 = xasprintf("generations/%s/wal/00000000_00000000.wal.lz4", GEN);
  char *k2 = xasprintf("generations/%s/snapshots/00000000.snapshot.lz4", GEN);
  char *k3 = xasprintf("generations/%s/wal/00000000_00000000.wal.lz4", GEN2);
  CHECK_INT(put_str(b, k1, "a"), 0);
  CHECK_INT(put_str(b, k2, "b"), 0);
  CHECK_INT(put_str(b, k3, "c"), 0);
  char *del1[] = {k1, "generations/" GEN "/wal/missing.wal.lz4"};
  CHECK_INT(backend_del_sync(b, del1, 2, g_err, sizeof(g_err)), 0);
  CHECK(!exists("../del/generations/" GEN "/wal"));
  CHECK(exists("../del/generations/" GEN "/snapshots/00000000.snapshot.lz4"));
  char *del2[] = {k2, k3};
  CHECK_INT(backend_del_sync(b, del2, 2, g_err, sizeof(g_err)), 0);
  CHECK(!exists("../del/generations/" GEN));
  CHECK(!exists("../del/generations/" GEN2));
  CHECK(exists("../del/generations"));
  /* Deleting what is already gone is fine. */
  CHECK_INT(backend_del_sync(b, del2, 2, g_err, sizeof(g_err)), 0);
  free(k1);
  free(k2);
  free(k3);
  backend_close(b);
  free(root);
}

TEST(store_listings_skip_foreign_objects) {
  char *root = xasprintf("%s/store", g_dir);
  struct backend *b = open_file_backend(root);
  const char *keys[] = {
      "generations/" GEN "/snapshots/00000002.snapshot.lz4",
      "generations/" GEN "/snapshots/00000000.snapshot.lz4",
      "generations/" GEN "/snapshots/0000000A.snapshot.lz4", /* upper case */
      "generations/" GEN "/snapshots/00000001.snapshot.lz4.bak",
      "generations/" GEN "/snapshots/nested/00000003.snapshot.lz4",
      "generations/" GEN "/wal/00000001_00000000.wal.lz4",
      "generations/" GEN "/wal/00000000_00001038.wal.lz4",
      "generations/" GEN "/wal/00000000_00000000.wal.lz4",
      "generations/" GEN "/wal/00000000_100000000.wal.lz4", /* > 4 GiB */
      "generations/" GEN "/wal/00000000.wal",
      "generations/" GEN "/wal/0000000000000001/0000000000000000.wal.lz4",
      "generations/" GEN "/wal/notes.txt",
      "generations/" GEN2 "/wal/00000000_00000000.wal.lz4",
      "generations/0123456789ABCDEF/wal/00000000_00000000.wal.lz4",
      "generations/0123456789abcde/wal/00000000_00000000.wal.lz4",
      "generations/0123456789abcdef0/wal/00000000_00000000.wal.lz4",
      "generations/xyz.txt",
  };
  for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
    CHECK_INT(put_str(b, keys[i], "0123456789"), 0);

  struct gen_list g = {0};
  CHECK_INT(store_generations_sync(b, &g, g_err, sizeof(g_err)), 0);
  CHECK_INT(g.n, 2);
  CHECK_STR(g.gens[0], GEN);
  CHECK_STR(g.gens[1], GEN2);
  gen_list_destroy(&g);

  struct snapshot_list s = {0};
  CHECK_INT(store_snapshots_sync(b, GEN, &s, g_err, sizeof(g_err)), 0);
  CHECK_INT(s.n, 2);
  CHECK_INT(s.v[0].index, 0);
  CHECK_INT(s.v[1].index, 2);
  CHECK_STR(s.v[1].gen, GEN);
  CHECK_INT(s.v[1].size, 10);
  snapshot_list_destroy(&s);

  struct segment_list w = {0};
  CHECK_INT(store_segments_sync(b, GEN, &w, g_err, sizeof(g_err)), 0);
  CHECK_INT(w.n, 4);
  CHECK_INT(w.v[0].index, 0);
  CHECK_INT(w.v[0].offset, 0);
  CHECK_INT(w.v[1].offset, 0x1038);
  CHECK_INT(w.v[2].offset, 0x100000000LL);
  CHECK_INT(w.v[3].index, 1);
  segment_list_destroy(&w);

  /* Bounds: min and max over snapshots and segments. */
  set_mtime("../store/generations/" GEN "/snapshots/00000000.snapshot.lz4",
            2000000000);
  set_mtime("../store/generations/" GEN "/wal/00000001_00000000.wal.lz4",
            2000000100);
  set_mtime("../store/generations/" GEN "/wal/00000000_00000000.wal.lz4",
            1999999990);
  set_mtime("../store/generations/" GEN "/snapshots/00000002.snapshot.lz4",
            2000000010);
  set_mtime("../store/generations/" GEN "/wal/00000000_00001038.wal.lz4",
            2000000020);
  set_mtime("../store/generations/" GEN "/wal/00000000_100000000.wal.lz4",
            2000000030);
  int64_t lo, hi;
  CHECK_INT(
      store_generation_bounds_sync(b, GEN, &lo, &hi, g_err, sizeof(g_err)), 0);
  CHECK_INT(lo, 1999999990LL * NS_PER_SEC + 500000000);
  CHECK_INT(hi, 2000000100LL * NS_PER_SEC + 500000000);
  CHECK_INT(store_generation_bounds_sync(b, "aaaaaaaaaaaaaaaa", &lo, &hi, g_err,
                                         sizeof(g_err)),
            ERR_NOT_FOUND);
  backend_close(b);
  free(root);
}

int main(void) {
  if (!mkdtemp(g_dir) || loop_init()) {
    perror("setup");
    return 1;
  }
  RUN(open_requires_path_and_sets_desc);
  RUN(put_get_ranges);
  RUN(put_error_names_path_and_cause);
  RUN(list_with_and_without_delimiter);
  RUN(delete_prunes_empty_directories);
  RUN(store_listings_skip_foreign_objects);
  CHECK_INT(loop_close(), 0);
  rm_rf(g_dir);
  T_DONE();
}
