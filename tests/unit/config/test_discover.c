/* Directory entries: parsing of dir/pattern/recursive/watch/replica, the
 * replica path join, and the expansion into databases (a real directory). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "config/config.h"
#include "t.h"

#define FILE_NAME "/etc/sluice.yml"

static char errbuf[1024];
static int n_warn;
static char last_warn[512];

static void on_warn(void *arg, int line, const char *key, const char *msg) {
  (void)arg;
  n_warn++;
  snprintf(last_warn, sizeof(last_warn), "%d: %s: %s", line, key, msg);
}

static int parse(const char *text, struct config *c) {
  errbuf[0] = '\0';
  int rc = config_parse(FILE_NAME, text, 0, c, errbuf, sizeof(errbuf));
  if (rc)
    memset(c, 0, sizeof(*c));
  return rc;
}

#define CHECK_BAD(text, want)                                                  \
  do {                                                                         \
    struct config c_;                                                          \
    CHECK_INT(parse(text, &c_), ERR_CONFIG);                                   \
    config_destroy(&c_);                                                       \
    if (!strstr(errbuf, want)) {                                               \
      t_failures++;                                                            \
      fprintf(stderr, "%s: error \"%s\" lacks \"%s\"\n", t_current, errbuf,    \
              want);                                                           \
    }                                                                          \
  } while (0)

TEST(join) {
  char *p = config_join_replica_path("tenants", "acme/app.db");
  CHECK_STR(p, "tenants/acme/app.db");
  free(p);
  p = config_join_replica_path("tenants/", "acme/app.db");
  CHECK_STR(p, "tenants/acme/app.db");
  free(p);
  p = config_join_replica_path("", "app.db");
  CHECK_STR(p, "app.db");
  free(p);
  p = config_join_replica_path("/backups/t", "x/y.db");
  CHECK_STR(p, "/backups/t/x/y.db");
  free(p);
}

TEST(parse_dir_entry) {
  struct config c;
  n_warn = 0;
  CHECK_INT(parse("dbs:\n"
                  "  - dir: /srv/tenants\n"
                  "    pattern: \"*.db\"\n"
                  "    recursive: true\n"
                  "    monitor-interval: 5s\n"
                  "    replica:\n"
                  "      url: s3://bkt/tenants\n"
                  "  - path: /a.db\n"
                  "    replica:\n"
                  "      path: /bk/a\n",
                  &c),
            0);
  CHECK_INT((int)c.n_dirs, 1);
  CHECK_INT((int)c.n_dbs, 1);
  CHECK_INT(n_warn, 0);
  if (c.n_dirs == 1) {
    CHECK_STR(c.dirs[0].dir, "/srv/tenants");
    CHECK_STR(c.dirs[0].pattern, "*.db");
    CHECK_INT(c.dirs[0].recursive, 1);
    CHECK_INT(c.dirs[0].watch, 0);
    CHECK(c.dirs[0].monitor_interval == 5 * NS_PER_SEC);
    CHECK_INT((int)c.dirs[0].n_replicas, 1);
    CHECK_STR(c.dirs[0].replicas[0].type, "s3");
    CHECK_STR(c.dirs[0].replicas[0].bucket, "bkt");
    CHECK_STR(c.dirs[0].replicas[0].path, "tenants");
    CHECK_INT(c.dirs[0].line, 2);
  }
  if (c.n_dbs == 1) {
    CHECK_STR(c.dbs[0].path, "/a.db");
    CHECK_INT((int)c.dbs[0].n_replicas, 1);
    CHECK_STR(c.dbs[0].replicas[0].path, "/bk/a");
  }
  config_destroy(&c);

  /* recursive defaults to false; watch parses. */
  n_warn = 0;
  CHECK_INT(parse("dbs:\n"
                  "  - dir: /srv/t\n"
                  "    pattern: \"*.sqlite\"\n"
                  "    watch: true\n",
                  &c),
            0);
  CHECK_INT(n_warn, 0);
  if (c.n_dirs == 1) {
    CHECK_INT(c.dirs[0].recursive, 0);
    CHECK_INT(c.dirs[0].watch, 1);
  }
  config_destroy(&c);
}

TEST(parse_errors) {
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    dir: /srv\n"
            "    pattern: '*.db'\n",
            FILE_NAME ":3: dir: cannot specify both path and dir");
  CHECK_BAD("dbs:\n"
            "  - monitor-interval: 1s\n",
            FILE_NAME ":2: path: database path required");
  CHECK_BAD("dbs:\n"
            "  - dir: /srv\n",
            FILE_NAME ":2: pattern: pattern required with dir");
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    pattern: '*.db'\n",
            FILE_NAME ":3: pattern: only valid with dir");
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    replica:\n"
            "      path: /b\n"
            "    replicas:\n"
            "      - path: /c\n",
            FILE_NAME ":3: replica: cannot specify both replica and replicas");
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    replica: [1]\n",
            FILE_NAME ":3: replica: expected a mapping");
  CHECK_BAD("dbs:\n"
            "  - dir: /srv\n"
            "    pattern: '*.db'\n"
            "    recursive: maybe\n",
            FILE_NAME ":4: recursive: expected a boolean");
}

static void write_file(const char *path, const char *data, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0);
  if (fd >= 0) {
    CHECK(write(fd, data, n) == (ssize_t)n);
    close(fd);
  }
}

static const char HDR[] = "SQLite format 3\0rest of page";

static struct db_config *find(struct config *c, const char *dir,
                              const char *rel) {
  char *p = path_join(dir, rel);
  struct db_config *d = config_find_db(c, p);
  free(p);
  return d;
}

TEST(expand) {
  char tmpl[] = "/tmp/sluice-discover-XXXXXX";
  char *root = mkdtemp(tmpl);
  CHECK(root != NULL);
  if (!root)
    return;
  char *p;
#define MK(rel, data, n)                                                       \
  (p = path_join(root, rel), write_file(p, data, n), free(p))
#define MKDIR(rel) (p = path_join(root, rel), mkdir(p, 0755), free(p))
  MKDIR("acme");
  MKDIR("acme/deep");
  MKDIR(".top.db-litestream");
  MK("top.db", HDR, sizeof(HDR));
  MK("top.db-wal", HDR, sizeof(HDR));
  MK("top.db-shm", HDR, sizeof(HDR));
  MK("top.db-journal", HDR, sizeof(HDR));
  MK(".top.db-litestream/x.db", HDR, sizeof(HDR));
  MK("notsqlite.db", "hello, this is not sqlite", 25);
  MK("short.db", "SQLite", 6);
  MK("other.txt", HDR, sizeof(HDR));
  MK("acme/app.db", HDR, sizeof(HDR));
  MK("acme/deep/z.db", HDR, sizeof(HDR));

  char *yml = xasprintf("dbs:\n"
                        "  - dir: %s\n"
                        "    pattern: '*.db'\n"
                        "    recursive: true\n"
                        "    checkpoint-interval: 7s\n"
                        "    replica:\n"
                        "      url: s3://bkt/tenants?endpoint=http://h:1\n"
                        "    replicas: ~\n"
                        "  - path: /elsewhere.db\n",
                        root);
  struct config c;
  /* replica + null replicas: the null still counts as given. */
  CHECK_INT(parse(yml, &c), ERR_CONFIG);
  free(yml);
  yml = xasprintf("dbs:\n"
                  "  - dir: %s\n"
                  "    pattern: '*.db'\n"
                  "    recursive: true\n"
                  "    checkpoint-interval: 7s\n"
                  "    replica:\n"
                  "      url: s3://bkt/tenants?endpoint=http://h:1\n"
                  "  - path: /elsewhere.db\n"
                  "    replicas:\n"
                  "      - path: /bk\n",
                  root);
  CHECK_INT(parse(yml, &c), 0);
  CHECK_INT(config_expand_dirs(&c, errbuf, sizeof(errbuf)), 0);
  CHECK_INT((int)c.n_dbs, 4);
  CHECK(find(&c, root, "notsqlite.db") == NULL);
  CHECK(find(&c, root, "short.db") == NULL);
  CHECK(find(&c, root, ".top.db-litestream/x.db") == NULL);
  struct db_config *d = find(&c, root, "acme/app.db");
  CHECK(d != NULL);
  if (d) {
    CHECK(d->checkpoint_interval == 7 * NS_PER_SEC);
    CHECK_INT((int)d->n_replicas, 1);
    CHECK_STR(d->replicas[0].path, "tenants/acme/app.db");
    CHECK_STR(d->replicas[0].bucket, "bkt");
    CHECK_STR(d->replicas[0].url,
              "s3://bkt/tenants/acme/app.db?endpoint=http://h:1");
    char *m = path_join(root, "acme/.app.db-litestream");
    CHECK_STR(d->meta_path, m);
    free(m);
  }
  d = find(&c, root, "top.db");
  CHECK(d != NULL);
  if (d)
    CHECK_STR(d->replicas[0].path, "tenants/top.db");
  CHECK(find(&c, root, "acme/deep/z.db") != NULL);
  /* A path under the dir not on disk (restore onto a lost host). */
  p = path_join(root, "acme/gone.db");
  d = config_dir_db(&c, p);
  CHECK(d != NULL);
  if (d)
    CHECK_STR(d->replicas[0].path, "tenants/acme/gone.db");
  free(p);
  p = path_join(root, "acme/gone.db-wal");
  CHECK(config_dir_db(&c, p) == NULL);
  free(p);
  config_destroy(&c);
  free(yml);

  /* Not recursive: only the top level; file replica joined. */
  yml = xasprintf("dbs:\n"
                  "  - dir: %s\n"
                  "    pattern: '*.db'\n"
                  "    replicas:\n"
                  "      - path: /bk/t\n",
                  root);
  CHECK_INT(parse(yml, &c), 0);
  free(yml);
  CHECK_INT(config_expand_dirs(&c, errbuf, sizeof(errbuf)), 0);
  CHECK_INT((int)c.n_dbs, 1);
  d = find(&c, root, "top.db");
  CHECK(d != NULL);
  if (d)
    CHECK_STR(d->replicas[0].path, "/bk/t/top.db");
  p = path_join(root, "acme/app.db");
  CHECK(config_dir_db(&c, p) == NULL);
  free(p);
  config_destroy(&c);

  /* Two entries matching one file: an error naming both lines. */
  yml = xasprintf("dbs:\n"
                  "  - dir: %s\n"
                  "    pattern: '*.db'\n"
                  "  - path: %s/top.db\n",
                  root, root);
  CHECK_INT(parse(yml, &c), 0);
  free(yml);
  CHECK_INT(config_expand_dirs(&c, errbuf, sizeof(errbuf)), ERR_CONFIG);
  CHECK(strstr(errbuf, "top.db is matched by two entries (lines 2 and 4)") !=
        NULL);
  config_destroy(&c);

  /* A dir that does not exist: no database, no error. */
  CHECK_INT(
      parse("dbs:\n  - dir: /nonexistent/sluice-x\n    pattern: '*'\n", &c), 0);
  CHECK_INT(config_expand_dirs(&c, errbuf, sizeof(errbuf)), 0);
  CHECK_INT((int)c.n_dbs, 0);
  config_destroy(&c);

  char *cmd = xasprintf("rm -rf '%s'", root);
  CHECK_INT(system(cmd), 0);
  free(cmd);
}

/* The daemon's databases share their entry's replica configs: each
 * replica, made its own (config_db_replica), is what the copy per database
 * is (path, URL, lease root), and so is the fingerprint a reload compares. */
TEST(shared_replicas_same_as_copies) {
  char tmpl[] = "/tmp/sluice-discover-XXXXXX";
  char *root = mkdtemp(tmpl);
  CHECK(root != NULL);
  if (!root)
    return;
  char *p;
  MKDIR("acme");
  MK("top.db", HDR, sizeof(HDR));
  MK("acme/app.db", HDR, sizeof(HDR));
  char *yml = xasprintf("dbs:\n"
                        "  - dir: %s\n"
                        "    pattern: '*.db'\n"
                        "    recursive: true\n"
                        "    replicas:\n"
                        "      - url: s3://bkt/tenants?endpoint=http://h:1\n"
                        "        lease-ttl: 30s\n"
                        "      - path: /bk/t\n",
                        root);
  struct config a, b;
  CHECK_INT(parse(yml, &a), 0);
  CHECK_INT(config_expand_dirs(&a, errbuf, sizeof(errbuf)), 0);
  config_share_dir_replicas(1);
  CHECK_INT(parse(yml, &b), 0);
  CHECK_INT(config_expand_dirs(&b, errbuf, sizeof(errbuf)), 0);
  config_share_dir_replicas(0);
  free(yml);
  CHECK_INT((int)a.n_dbs, 2);
  CHECK_INT((int)b.n_dbs, 2);
  for (size_t i = 0; i < a.n_dbs && i < b.n_dbs; i++) {
    const struct db_config *x = &a.dbs[i], *y = &b.dbs[i];
    CHECK(!x->shared && y->shared);
    CHECK_STR(y->path, x->path);
    CHECK_STR(y->meta_path, x->meta_path);
    CHECK_STR(y->dir, x->dir);
    CHECK(y->replicas == b.dirs[0].replicas); /* not a copy */
    CHECK(y->dir == b.dirs[0].dir);
    CHECK_STR(config_db_rel(y), config_db_rel(x));
    CHECK_INT((int)y->n_replicas, 2);
    for (size_t j = 0; j < x->n_replicas && j < y->n_replicas; j++) {
      struct replica_config own;
      config_db_replica(y, j, &own);
      CHECK_STR(str_or_empty(own.path), str_or_empty(x->replicas[j].path));
      CHECK_STR(str_or_empty(own.url), str_or_empty(x->replicas[j].url));
      CHECK_STR(str_or_empty(own.lease_root),
                str_or_empty(x->replicas[j].lease_root));
      CHECK(own.lease_ttl == x->replicas[j].lease_ttl);
      config_replica_destroy(&own);
      char *rp = config_db_replica_path(y, j);
      CHECK_STR(str_or_empty(rp), str_or_empty(x->replicas[j].path));
      free(rp);
    }
    char *fx = config_db_fingerprint(x), *fy = config_db_fingerprint(y);
    CHECK_STR(fy, fx);
    free(fx);
    free(fy);
  }
  struct db_config *d = find(&b, root, "acme/app.db");
  CHECK(d != NULL);
  if (d) {
    CHECK_STR(config_db_rel(d), "acme/app.db");
    char *rp = config_db_replica_path(d, 0);
    CHECK_STR(rp, "tenants/acme/app.db");
    free(rp);
  }
  config_destroy(&a);
  config_destroy(&b); /* (ASan: the shared configs freed once) */
  char *cmd = xasprintf("rm -rf '%s'", root);
  CHECK_INT(system(cmd), 0);
  free(cmd);
}

int main(void) {
  struct log_config lc = {LOG_INFO, 0, 1};
  log_setup(&lc);
  config_set_warn_hook(on_warn, NULL);
  RUN(join);
  RUN(parse_dir_entry);
  RUN(parse_errors);
  RUN(expand);
  RUN(shared_replicas_same_as_copies);
  T_DONE();
}
