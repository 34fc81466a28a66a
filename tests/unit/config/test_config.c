#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "config/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "t.h"

#define FILE_NAME "/etc/sluice.yml"
#define SEC NS_PER_SEC

static char errbuf[1024];

/* Parses text (env expansion on), which must succeed. */
static void parse_ok(const char *text, struct config *c) {
  errbuf[0] = '\0';
  int rc = config_parse(FILE_NAME, text, 1, c, errbuf, sizeof(errbuf));
  t_checks++;
  if (rc) {
    t_failures++;
    fprintf(stderr, "%s: config_parse failed (%d): %s\n--\n%s--\n", t_current,
            rc, errbuf, text);
    memset(c, 0, sizeof(*c));
  }
}

/* Parses text, which must fail with ERR_CONFIG and a message containing
 * `want`. */
#define CHECK_BAD(text, want)                                                  \
  do {                                                                         \
    struct config c_;                                                          \
    errbuf[0] = '\0';                                                          \
    int rc_ = config_parse(FILE_NAME, text, 1, &c_, errbuf, sizeof(errbuf));   \
    CHECK_INT(rc_, ERR_CONFIG);                                                \
    if (!rc_)                                                                  \
      config_destroy(&c_);                                                     \
    if (!strstr(errbuf, want)) {                                               \
      t_failures++;                                                            \
      fprintf(stderr, "%s:%d: %s: expected message with \"%s\", got \"%s\"\n", \
              __FILE__, __LINE__, t_current, want, errbuf);                    \
    }                                                                          \
  } while (0)

/* Captures what the logger writes to stderr between begin and end. */
static FILE *cap_file;
static int cap_saved = -1;

static void capture_begin(void) {
  fflush(stderr);
  cap_file = tmpfile();
  cap_saved = dup(2);
  dup2(fileno(cap_file), 2);
}

static char *capture_end(void) {
  fflush(stderr);
  dup2(cap_saved, 2);
  close(cap_saved);
  long n = ftell(cap_file);
  char *s = xcalloc(1, (size_t)(n > 0 ? n : 0) + 1);
  rewind(cap_file);
  if (n > 0 && fread(s, 1, (size_t)n, cap_file) != (size_t)n)
    s[0] = '\0';
  fclose(cap_file);
  return s;
}

/* Parses text capturing warnings; returns them (owned). */
static char *parse_warnings(const char *text, struct config *c) {
  capture_begin();
  int rc = config_parse(FILE_NAME, text, 1, c, errbuf, sizeof(errbuf));
  char *w = capture_end();
  CHECK_INT(rc, 0);
  if (rc)
    memset(c, 0, sizeof(*c));
  return w;
}

#define CHECK_HAS(hay, needle)                                                 \
  do {                                                                         \
    t_checks++;                                                                \
    if (!strstr((hay), (needle))) {                                            \
      t_failures++;                                                            \
      fprintf(stderr, "%s:%d: %s: expected \"%s\" in \"%s\"\n", __FILE__,      \
              __LINE__, t_current, needle, hay);                               \
    }                                                                          \
  } while (0)

TEST(defaults) {
  struct config c;
  parse_ok("dbs:\n"
           "  - path: /data/app.db\n"
           "    replicas:\n"
           "      - url: s3://bkt/app\n",
           &c);
  CHECK_INT(c.n_dbs, 1);
  CHECK_STR(c.path, NULL);
  CHECK_STR(c.addr, NULL);
  CHECK_STR(c.exec, NULL);
  CHECK_INT(c.logging.level, LOG_INFO);
  CHECK_INT(c.logging.json, 0);
  CHECK_INT(c.logging.to_stderr, 0);
  CHECK_INT(c.shutdown_timeout, 30 * SEC);
  CHECK_INT(c.health_max_sync_age, 300 * SEC);
  struct db_config *d = &c.dbs[0];
  CHECK_STR(d->path, "/data/app.db");
  CHECK_STR(d->meta_path, "/data/.app.db-litestream");
  CHECK_INT(d->line, 2);
  CHECK_INT(d->monitor_interval, SEC);
  CHECK_INT(d->checkpoint_interval, 60 * SEC);
  CHECK_INT(d->min_checkpoint_page_count, 1000);
  CHECK_INT(d->max_checkpoint_page_count, 10000);
  CHECK_INT(d->n_replicas, 1);
  struct replica_config *r = &d->replicas[0];
  CHECK_STR(r->type, "s3");
  CHECK_STR(r->name, "s3");
  CHECK_STR(r->url, "s3://bkt/app");
  CHECK_INT(r->line, 4);
  CHECK_INT(r->retention, 24 * 3600 * SEC);
  CHECK_INT(r->retention_check_interval, 3600 * SEC);
  CHECK_INT(r->sync_interval, SEC);
  CHECK_INT(r->snapshot_interval, 0);
  CHECK_INT(r->validation_interval, 0);
  CHECK_STR(r->bucket, "bkt");
  CHECK_STR(r->path, "app");
  CHECK_INT(r->force_path_style, TRI_FALSE);
  CHECK_INT(r->skip_verify, 0);
  CHECK_INT(r->n_age_identities, 0);
  CHECK_STR(r->access_key_id, NULL);
  config_destroy(&c);

  /* An empty file is a valid, empty config. */
  parse_ok("", &c);
  CHECK_INT(c.n_dbs, 0);
  CHECK_INT(c.shutdown_timeout, 30 * SEC);
  config_destroy(&c);
  parse_ok("# nothing\n", &c);
  config_destroy(&c);
}

TEST(paths_made_absolute) {
  char cwd[4096];
  CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
  char *old_home = getenv("HOME") ? xstrdup(getenv("HOME")) : NULL;
  setenv("HOME", "/home/tester", 1);
  struct config c;
  parse_ok("dbs:\n"
           "  - path: app.db\n"
           "    replicas:\n"
           "      - path: backup\n"
           "  - path: ~/x/../y.db\n"
           "    meta-path: ~/meta\n"
           "    replicas:\n"
           "      - type: file\n"
           "        path: ~/bk\n"
           "      - url: file:///srv/./bk2\n"
           "        name: two\n",
           &c);
  char *want = xasprintf("%s/app.db", cwd);
  CHECK_STR(c.dbs[0].path, want);
  free(want);
  want = xasprintf("%s/.app.db-litestream", cwd);
  CHECK_STR(c.dbs[0].meta_path, want);
  free(want);
  want = xasprintf("%s/backup", cwd);
  CHECK_STR(c.dbs[0].replicas[0].path, want);
  CHECK_STR(c.dbs[0].replicas[0].type, "file");
  CHECK_STR(c.dbs[0].replicas[0].name, "file");
  free(want);
  CHECK_STR(c.dbs[1].path, "/home/tester/y.db");
  CHECK_STR(c.dbs[1].meta_path, "/home/tester/meta");
  CHECK_STR(c.dbs[1].replicas[0].path, "/home/tester/bk");
  CHECK_STR(c.dbs[1].replicas[1].path, "/srv/bk2");

  /* config_find_db compares absolute forms. */
  CHECK(config_find_db(&c, "app.db") == &c.dbs[0]);
  CHECK(config_find_db(&c, "./sub/../app.db") == &c.dbs[0]);
  CHECK(config_find_db(&c, "~/y.db") == &c.dbs[1]);
  CHECK(config_find_db(&c, "/home/tester/y.db") == &c.dbs[1]);
  CHECK(config_find_db(&c, "/nope.db") == NULL);
  config_destroy(&c);

  struct db_config d;
  config_db_init(&d, "~/a/b.db");
  CHECK_STR(d.path, "/home/tester/a/b.db");
  CHECK_STR(d.meta_path, "/home/tester/a/.b.db-litestream");
  CHECK_INT(d.monitor_interval, SEC);
  CHECK_INT(d.min_checkpoint_page_count, 1000);
  CHECK_INT(d.n_replicas, 0);
  config_db_destroy(&d);
  config_db_init(&d, "/top.db");
  CHECK_STR(d.meta_path, "/.top.db-litestream");
  config_db_destroy(&d);

  if (old_home)
    setenv("HOME", old_home, 1);
  else
    unsetenv("HOME");
  free(old_home);
}

TEST(every_key) {
  struct config c;
  parse_ok("addr: \":9090\"\n"
           "exec: /usr/bin/app serve\n"
           "access-key-id: GLOBALID\n"
           "secret-access-key: GLOBALSECRET\n"
           "shutdown-timeout: 45s\n"
           "health-max-sync-age: 10m\n"
           "logging:\n"
           "  level: DEBUG\n"
           "  type: json\n"
           "  stderr: true\n"
           "dbs:\n"
           "  - path: /d/a.db\n"
           "    meta-path: /m/a\n"
           "    monitor-interval: 2s\n"
           "    checkpoint-interval: 0\n"
           "    min-checkpoint-page-count: 50\n"
           "    max-checkpoint-page-count: 0\n"
           "    replicas:\n"
           "      - type: s3\n"
           "        name: primary\n"
           "        bucket: bkt\n"
           "        path: pre/fix\n"
           "        region: eu-west-1\n"
           "        endpoint: https://minio:9000\n"
           "        force-path-style: false\n"
           "        skip-verify: yes\n"
           "        access-key-id: AKID\n"
           "        secret-access-key: SAK\n"
           "        sse: aws:kms\n"
           "        sse-kms-key-id: key-1\n"
           "        storage-class: STANDARD_IA\n"
           "        retention: 72h\n"
           "        retention-check-interval: 30m\n"
           "        sync-interval: 10s\n"
           "        snapshot-interval: 1d\n"
           "        validation-interval: 12h\n"
           "        age:\n"
           "          identities: [AGE-SECRET-KEY-1AAA]\n"
           "          recipients:\n"
           "            - age1xyz\n"
           "            - age1abc\n",
           &c);
  CHECK_STR(c.addr, ":9090");
  CHECK_STR(c.exec, "/usr/bin/app serve");
  CHECK_STR(c.access_key_id, "GLOBALID");
  CHECK_STR(c.secret_access_key, "GLOBALSECRET");
  CHECK_INT(c.shutdown_timeout, 45 * SEC);
  CHECK_INT(c.health_max_sync_age, 600 * SEC);
  CHECK_INT(c.logging.level, LOG_DEBUG);
  CHECK_INT(c.logging.json, 1);
  CHECK_INT(c.logging.to_stderr, 1);
  struct db_config *d = &c.dbs[0];
  CHECK_STR(d->meta_path, "/m/a");
  CHECK_INT(d->monitor_interval, 2 * SEC);
  CHECK_INT(d->checkpoint_interval, 0);
  CHECK_INT(d->min_checkpoint_page_count, 50);
  CHECK_INT(d->max_checkpoint_page_count, 0);
  struct replica_config *r = &d->replicas[0];
  CHECK_STR(r->type, "s3");
  CHECK_STR(r->name, "primary");
  CHECK_STR(r->url, NULL);
  CHECK_STR(r->bucket, "bkt");
  CHECK_STR(r->path, "pre/fix");
  CHECK_STR(r->region, "eu-west-1");
  CHECK_STR(r->endpoint, "https://minio:9000");
  CHECK_INT(r->force_path_style, TRI_FALSE);
  CHECK_INT(r->skip_verify, 1);
  CHECK_STR(r->access_key_id, "AKID");
  CHECK_STR(r->secret_access_key, "SAK");
  CHECK_STR(r->sse, "aws:kms");
  CHECK_STR(r->sse_kms_key_id, "key-1");
  CHECK_STR(r->storage_class, "STANDARD_IA");
  CHECK_INT(r->retention, 72 * 3600 * SEC);
  CHECK_INT(r->retention_check_interval, 1800 * SEC);
  CHECK_INT(r->sync_interval, 10 * SEC);
  CHECK_INT(r->snapshot_interval, 86400 * SEC);
  CHECK_INT(r->validation_interval, 12 * 3600 * SEC);
  CHECK_INT(r->n_age_identities, 1);
  CHECK_STR(r->age_identities[0], "AGE-SECRET-KEY-1AAA");
  CHECK_INT(r->n_age_recipients, 2);
  CHECK_STR(r->age_recipients[1], "age1abc");
  config_destroy(&c);
}

TEST(every_backend_key) {
  struct config c;
  struct replica_config *r;
  parse_ok("dbs:\n"
           "  - path: /d/a.db\n"
           "    replicas:\n"
           "      - type: abs\n"
           "        account-name: acct\n"
           "        account-key: KEY==\n"
           "        sas-token: sv=2020&sig=x\n"
           "        bucket: cont\n"
           "        endpoint: http://azurite:10000\n"
           "      - type: sftp\n"
           "        host: h:22\n"
           "        user: bob\n"
           "        password: pw\n"
           "        key-path: /k/id\n"
           "        path: /bk\n"
           "      - type: gcs\n"
           "        bucket: g\n"
           "        path: p\n"
           "      - type: s3\n"
           "        name: enc\n"
           "        bucket: b\n"
           "        sse-c-key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n",
           &c);
  r = c.dbs[0].replicas;
  CHECK_STR(r[0].type, "abs");
  CHECK_STR(r[0].account_name, "acct");
  CHECK_STR(r[0].account_key, "KEY==");
  CHECK_STR(r[0].sas_token, "sv=2020&sig=x");
  CHECK_STR(r[0].bucket, "cont");
  CHECK_STR(r[0].path, "");
  CHECK_STR(r[0].endpoint, "http://azurite:10000");
  CHECK_STR(r[1].type, "sftp");
  CHECK_STR(r[1].host, "h:22");
  CHECK_STR(r[1].user, "bob");
  CHECK_STR(r[1].password, "pw");
  CHECK_STR(r[1].key_path, "/k/id");
  CHECK_STR(r[1].path, "/bk");
  CHECK_STR(r[2].type, "gcs");
  CHECK_STR(r[2].bucket, "g");
  CHECK_STR(r[2].path, "p");
  CHECK_STR(r[3].sse_c_key, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
  CHECK_STR(r[3].sse, NULL);
  config_destroy(&c);
}

TEST(durations) {
  struct {
    const char *text;
    int64_t ns;
  } cases[] = {
      {"10s", 10 * SEC},
      {"1h30m", 5400 * SEC},
      {"7d", 7 * 86400 * SEC},
      {"500ms", SEC / 2},
      {"1000", 1000},
      {"\"2m\"", 120 * SEC},
      {"1.5s", 1500 * NS_PER_MS},
      {"1000000000", SEC},
  };
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    char *text = xasprintf("dbs:\n"
                           "  - path: /a.db\n"
                           "    replicas:\n"
                           "      - path: /b\n"
                           "        sync-interval: %s\n",
                           cases[i].text);
    struct config c;
    parse_ok(text, &c);
    if (c.n_dbs)
      CHECK_INT(c.dbs[0].replicas[0].sync_interval, cases[i].ns);
    config_destroy(&c);
    free(text);
  }
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    replicas:\n"
            "      - path: /b\n"
            "        sync-interval: fast\n",
            FILE_NAME ":5: sync-interval: expected a duration like 10s or "
                      "1h30m, got \"fast\"");
  CHECK_STR(errbuf, FILE_NAME ":5: sync-interval: expected a duration like "
                              "10s or 1h30m, got \"fast\"");
  CHECK_BAD("shutdown-timeout: [1]\n",
            FILE_NAME ":1: shutdown-timeout: expected a duration like 10s "
                      "or 1h30m, got a list");
  CHECK_BAD("dbs:\n  - path: /a.db\n    monitor-interval: 1.5\n",
            FILE_NAME ":3: monitor-interval: expected a duration");
  CHECK_BAD("health-max-sync-age: -1s\n",
            FILE_NAME ":1: health-max-sync-age: must not be negative");
}

TEST(booleans_and_integers) {
  const char *yes[] = {"true", "True", "TRUE", "yes", "Yes", "on", "ON", "y"};
  const char *no[] = {"false", "FALSE", "no", "No", "off", "Off", "n"};
  for (size_t i = 0; i < ARRAY_SIZE(yes) + ARRAY_SIZE(no); i++) {
    int want = i < ARRAY_SIZE(yes);
    const char *v = want ? yes[i] : no[i - ARRAY_SIZE(yes)];
    char *text = xasprintf("logging:\n  stderr: %s\n", v);
    struct config c;
    parse_ok(text, &c);
    CHECK_INT(c.logging.to_stderr, want);
    config_destroy(&c);
    free(text);
  }
  CHECK_BAD("logging:\n  stderr: maybe\n",
            FILE_NAME ":2: stderr: expected a boolean (true or false), got "
                      "\"maybe\"");
  CHECK_BAD("dbs:\n  - path: /a.db\n    min-checkpoint-page-count: lots\n",
            FILE_NAME ":3: min-checkpoint-page-count: expected a non-negative "
                      "integer, got \"lots\"");
  CHECK_BAD("dbs:\n  - path: /a.db\n    max-checkpoint-page-count: -5\n",
            FILE_NAME ":3: max-checkpoint-page-count: expected a non-negative "
                      "integer, got \"-5\"");
  CHECK_BAD("dbs:\n  - path: /a.db\n    max-checkpoint-page-count: 1e3\n",
            "max-checkpoint-page-count: expected a non-negative integer");
}

TEST(env_expansion_rules) {
  setenv("SL_A", "x", 1);
  setenv("SL_DIR", "/srv/data", 1);
  unsetenv("SL_UNSET");
  unsetenv("1");
  struct {
    const char *in, *out;
  } cases[] = {
      {"$SL_A", "x"},
      {"${SL_A}", "x"},
      {"a${SL_A}b", "axb"},
      {"$SL_Ab", ""},       /* the name runs on: SL_Ab is unset */
      {"$SL_A-b", "x-b"},   /* '-' ends a name */
      {"$SL_UNSET|", "|"},  /* unset expands to nothing */
      {"$$", ""},           /* the variable named "$" */
      {"a$$b", "ab"},       /* ... so a literal $$ disappears */
      {"${}", ""},          /* bad syntax, dropped */
      {"a${}b", "ab"},      /* ... */
      {"x${", "x"},         /* unterminated: "${" dropped */
      {"x${SL_A", "xSL_A"}, /* ... and the rest kept */
      {"$", "$"},           /* at the end: kept */
      {"a$", "a$"},         /* ... */
      {"$ x", "$ x"},       /* followed by a non-name char: kept */
      {"$/p", "$/p"},       /* ... */
      {"$%", "$%"},         /* ... */
      {"$1x", "x"},         /* digits are single-char special names */
      {"${1}", ""},         /* ... also braced */
      {"$-", ""},           /* special: - */
      {"$@$*$#$!$?", ""},   /* specials */
      {"${SL_A}${SL_A}", "xx"},
      {"${weird name}", ""}, /* anything inside braces is a name */
      {"$SL_DIR/app.db", "/srv/data/app.db"},
      {"no dollars", "no dollars"},
      {"", ""},
  };
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    char *out = config_expand_env(cases[i].in);
    CHECK_STR(out, cases[i].out);
    free(out);
  }

  /* In a config: expanded by default, kept verbatim with -no-expand-env. */
  const char *text = "access-key-id: $SL_A\n"
                     "secret-access-key: ab$cd$$ef\n"
                     "dbs:\n"
                     "  - path: $SL_DIR/app.db\n";
  struct config c;
  parse_ok(text, &c);
  CHECK_STR(c.access_key_id, "x");
  CHECK_STR(c.secret_access_key, "abef"); /* secrets with $ get mangled */
  CHECK_STR(c.dbs[0].path, "/srv/data/app.db");
  config_destroy(&c);
  CHECK_INT(config_parse(FILE_NAME, text, 0, &c, errbuf, sizeof(errbuf)), 0);
  CHECK_STR(c.access_key_id, "$SL_A");
  CHECK_STR(c.secret_access_key, "ab$cd$$ef");
  CHECK(strstr(c.dbs[0].path, "/$SL_DIR/app.db") != NULL);
  config_destroy(&c);
  unsetenv("SL_A");
  unsetenv("SL_DIR");
}

TEST(unknown_keys_warn) {
  struct config c;
  char *w = parse_warnings("bogus: 1\n"
                           "logging:\n"
                           "  colour: red\n"
                           "dbs:\n"
                           "  - path: /a.db\n"
                           "    replica-set:\n"
                           "      url: s3://b/p\n"
                           "    replicas:\n"
                           "      - path: /b\n"
                           "        retain: 1h\n"
                           "        age:\n"
                           "          identity: x\n",
                           &c);
  CHECK_HAS(w, FILE_NAME ":1: unknown key \\\"bogus\\\" ignored");
  CHECK_HAS(w, FILE_NAME ":3: unknown key \\\"colour\\\" ignored");
  CHECK_HAS(w, FILE_NAME ":6: unknown key \\\"replica-set\\\" ignored");
  CHECK_HAS(w, FILE_NAME ":10: unknown key \\\"retain\\\" ignored");
  CHECK_HAS(w, FILE_NAME ":12: unknown key \\\"identity\\\" ignored");
  CHECK_HAS(w, "level=WARN");
  CHECK_INT(c.n_dbs, 1);
  CHECK_INT(c.dbs[0].n_replicas, 1);
  free(w);
  config_destroy(&c);

  w = parse_warnings("logging:\n  level: verbose\n", &c);
  CHECK_HAS(w, FILE_NAME ":2: logging.level: unknown level");
  CHECK_INT(c.logging.level, LOG_INFO);
  free(w);
  config_destroy(&c);
  w = parse_warnings("logging:\n  level: Warning\n", &c);
  CHECK_STR(w, "");
  CHECK_INT(c.logging.level, LOG_WARN);
  free(w);
  config_destroy(&c);
}

TEST(validation_errors) {
  CHECK_BAD("dbs:\n  - meta-path: /m\n",
            FILE_NAME ":2: path: database path required");
  CHECK_BAD("dbs:\n  - path: /a.db\n  - path: /b/../a.db\n",
            FILE_NAME ":3: path: duplicate database path \"/a.db\"");
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    replicas:\n"
            "      - path: /b\n"
            "        sync-interval: 0s\n",
            FILE_NAME ":5: sync-interval: must be greater than zero");
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    replicas:\n"
            "      - path: /b\n"
            "        retention-check-interval: 0\n",
            FILE_NAME ":5: retention-check-interval: must be greater than");
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    replicas:\n"
            "      - path: /b\n"
            "        lease-idle-ttl: 10s\n",
            FILE_NAME ":5: lease-idle-ttl: must be 0 (renew idle leases at "
                      "lease-ttl) or at least lease-ttl (30s), got 10s");
  {
    struct config c;
    parse_ok("dbs:\n  - path: /a.db\n    replicas:\n      - path: /b\n"
             "      - path: /c\n        name: c\n        lease-idle-ttl: 0\n",
             &c);
    CHECK(c.dbs[0].replicas[0].lease_idle_ttl == 3600 * NS_PER_SEC);
    CHECK(c.dbs[0].replicas[1].lease_idle_ttl == 0);
    config_destroy(&c);
  }
  CHECK_BAD("dbs:\n  - path: /a.db\n    min-checkpoint-page-count: 0\n",
            FILE_NAME ":3: min-checkpoint-page-count: must be greater than "
                      "zero");
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    replicas:\n"
            "      - path: /b\n"
            "      - path: /c\n",
            FILE_NAME ":5: name: duplicate replica name \"file\"");
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    replicas:\n"
            "      - url: s3://b/x\n"
            "        name: r\n"
            "      - url: gcs://b/x\n"
            "        name: r\n",
            FILE_NAME ":6: name: duplicate replica name \"r\"");
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    replicas:\n"
            "      - type: s3\n"
            "        path: s3://bkt/db\n",
            FILE_NAME ":5: path: replica path cannot be a url, please use "
                      "the 'url' field instead");
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    replicas:\n"
            "      - url: s3://bkt/db\n"
            "        path: db\n",
            FILE_NAME ":5: path: cannot specify url & path for s3 replica");
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    replicas:\n"
            "      - url: file:///b\n"
            "        path: /c\n",
            FILE_NAME ":5: path: cannot specify url & path for file replica");
  const char *types[] = {"s3", "gcs", "abs"};
  for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
    char *text = xasprintf("dbs:\n"
                           "  - path: /a.db\n"
                           "    replicas:\n"
                           "      - url: %s://bkt/db\n"
                           "        bucket: other\n",
                           types[i]);
    char *want = xasprintf(FILE_NAME ":5: bucket: cannot specify url & "
                                     "bucket for %s replica",
                           types[i]);
    CHECK_BAD(text, want);
    free(text);
    free(want);
  }
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    replicas:\n"
            "      - url: sftp://u@h/db\n"
            "        host: other\n",
            FILE_NAME ":5: host: cannot specify url & host for sftp replica");
}

TEST(replica_type_and_required_keys) {
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    replicas:\n"
            "      - type: ftp\n",
            FILE_NAME ":4: type: unknown replica type in config");
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    replicas:\n"
            "      - url: ftp://h/x\n",
            FILE_NAME ":4: url: unknown replica type in config: \"ftp\"");
  CHECK_BAD("dbs:\n"
            "  - path: /a.db\n"
            "    replicas:\n"
            "      - url: /not/a/url\n",
            FILE_NAME ":4: url: invalid replica URL \"/not/a/url\": replica "
                      "url scheme required");
  CHECK_BAD("dbs:\n  - path: /a.db\n    replicas:\n      - type: s3\n",
            FILE_NAME ":4: bucket: bucket required for s3 replica");
  CHECK_BAD("dbs:\n  - path: /a.db\n    replicas:\n      - url: s3:///p\n",
            FILE_NAME ":4: url: bucket required for s3 replica");
  CHECK_BAD("dbs:\n  - path: /a.db\n    replicas:\n      - type: gcs\n",
            FILE_NAME ":4: bucket: bucket required for gcs replica");
  CHECK_BAD("dbs:\n  - path: /a.db\n    replicas:\n      - type: abs\n",
            FILE_NAME ":4: bucket: container (bucket) required for abs "
                      "replica");
  CHECK_BAD("dbs:\n  - path: /a.db\n    replicas:\n      - type: file\n",
            FILE_NAME ":4: path: file replica path required");
  CHECK_BAD("dbs:\n  - path: /a.db\n    replicas:\n      - type: sftp\n",
            FILE_NAME ":4: host: host required for sftp replica");
  CHECK_BAD("dbs:\n  - path: /a.db\n    replicas:\n      - url: sftp://h/p\n",
            FILE_NAME ":4: url: user required for sftp replica");
}

TEST(logging_addr_and_sse_errors) {
  CHECK_BAD("logging:\n  type: xml\n",
            FILE_NAME ":2: logging.type: expected \"text\" or \"json\", got "
                      "\"xml\"");
  CHECK_BAD("addr: localhost\n",
            FILE_NAME ":1: addr: must specify port for bind address");
  CHECK_BAD("addr: \"host:\"\n", "must specify port for bind address");
  CHECK_BAD("addr: \"::1\"\n", "must specify port for bind address");
  const char *good_addrs[] = {":9090", "127.0.0.1:9090", "[::1]:9090",
                              "metrics.local:80"};
  for (size_t i = 0; i < ARRAY_SIZE(good_addrs); i++) {
    char *text = xasprintf("addr: \"%s\"\n", good_addrs[i]);
    struct config c;
    parse_ok(text, &c);
    CHECK_STR(c.addr, good_addrs[i]);
    config_destroy(&c);
    free(text);
  }
  CHECK_BAD("dbs:\n  - path: /a.db\n    replicas:\n      - type: s3\n"
            "        bucket: b\n        sse: des\n",
            FILE_NAME ":6: sse: expected \"AES256\" or \"aws:kms\"");
  CHECK_BAD("dbs:\n  - path: /a.db\n    replicas:\n      - type: s3\n"
            "        bucket: b\n        sse-c-key: c2hvcnQ=\n",
            FILE_NAME ":6: sse-c-key: expected the base64 encoding");
  CHECK(strstr(errbuf, "c2hvcnQ") == NULL);
}

TEST(syntax_and_shape_errors) {
  CHECK_BAD("dbs:\n  - path: /a.db\n    replicas: [\n",
            FILE_NAME ":4: invalid YAML: ");
  CHECK_BAD("a: b\n c: d\n", FILE_NAME ":2: invalid YAML: ");
  CHECK_BAD("- a\n- b\n", FILE_NAME ":1: config: expected a mapping at the "
                                    "top level, got a list");
  CHECK_BAD("dbs: /a.db\n",
            FILE_NAME ":1: dbs: expected a list of databases, got \"/a.db\"");
  CHECK_BAD("dbs:\n  - /a.db\n",
            FILE_NAME ":2: dbs: expected a mapping, got \"/a.db\"");
  CHECK_BAD("dbs:\n  - path: /a.db\n    replicas:\n      retention: [1]\n",
            FILE_NAME ":4: replicas: expected a list of replicas, got a "
                      "mapping");
  CHECK_BAD("dbs:\n  - path: [a]\n",
            FILE_NAME ":2: path: expected a string, got a list");
  CHECK_BAD("logging: loud\n",
            FILE_NAME ":1: logging: expected a mapping, got \"loud\"");
  /* A replica written as a URL string: the password never shows. */
  CHECK_BAD("dbs:\n  - path: /a.db\n    replicas:\n"
            "      - sftp://u:hunter2@h/p\n",
            FILE_NAME ":4: replicas: expected a mapping, got "
                      "\"sftp://u:xxxxx@h/p\"");
  CHECK(strstr(errbuf, "hunter2") == NULL);
  /* Secrets are never echoed, even when mis-typed. */
  CHECK_BAD("dbs:\n  - path: /a.db\n    replicas:\n      - path: /b\n"
            "        age:\n          identities: AGE-SECRET-KEY-1XYZ\n",
            FILE_NAME ":6: identities: expected a list of strings, got a "
                      "string");
  CHECK(strstr(errbuf, "AGE-SECRET") == NULL);
  CHECK_BAD("dbs:\n  - path: /a.db\n    replicas:\n      - url: "
            "sftp://u:hunter2@h/%zz\n",
            "url: invalid replica URL \"sftp://u:xxxxx@h/%zz\"");
  CHECK(strstr(errbuf, "hunter2") == NULL);
}

TEST(null_values_keep_defaults) {
  struct config c;
  parse_ok("logging:\n"
           "addr:\n"
           "dbs:\n"
           "  - path: /a.db\n"
           "    monitor-interval: ~\n"
           "    replicas:\n"
           "  - path: /b.db\n"
           "    replicas:\n"
           "      - path: /bk\n"
           "        force-path-style: null\n"
           "        age:\n",
           &c);
  CHECK_STR(c.addr, NULL);
  CHECK_INT(c.logging.level, LOG_INFO);
  CHECK_INT(c.n_dbs, 2);
  CHECK_INT(c.dbs[0].monitor_interval, SEC);
  CHECK_INT(c.dbs[0].n_replicas, 0);
  CHECK_INT(c.dbs[1].replicas[0].force_path_style, TRI_UNSET);
  config_destroy(&c);
}

TEST(global_credentials_flow_into_replicas) {
  struct config c;
  parse_ok("dbs:\n"
           "  - path: /a.db\n"
           "    replicas:\n"
           "      - url: s3://b1/x\n"
           "      - url: s3://b2/x\n"
           "        name: own\n"
           "        access-key-id: OWNID\n"
           "      - url: s3://b3/x\n"
           "        name: half\n"
           "        secret-access-key: OWNSECRET\n"
           "access-key-id: GID\n"
           "secret-access-key: GSECRET\n",
           &c);
  struct replica_config *r = c.dbs[0].replicas;
  CHECK_STR(r[0].access_key_id, "GID");
  CHECK_STR(r[0].secret_access_key, "GSECRET");
  CHECK_STR(r[1].access_key_id, "OWNID");
  CHECK_STR(r[1].secret_access_key, "GSECRET");
  CHECK_STR(r[2].access_key_id, "GID");
  CHECK_STR(r[2].secret_access_key, "OWNSECRET");
  config_destroy(&c);
}

/* Spec 6.4: explicit keys win over URL-derived values. */
TEST(url_and_explicit_keys) {
  struct config c;
  parse_ok("dbs:\n"
           "  - path: /a.db\n"
           "    replicas:\n"
           "      - url: s3://foo.localhost:9000/bar\n"
           "        region: eu-west-1\n"
           "        endpoint: http://minio:9000\n"
           "      - url: s3://foo.s3.us-west-000.backblazeb2.com/bar\n"
           "        name: b2\n"
           "      - url: S3://plain/deep/er/\n"
           "        name: aws\n"
           "        type: s3\n",
           &c);
  struct replica_config *r = c.dbs[0].replicas;
  CHECK_STR(r[0].bucket, "foo");
  CHECK_STR(r[0].path, "bar");
  CHECK_STR(r[0].region, "eu-west-1");
  CHECK_STR(r[0].endpoint, "http://minio:9000");
  CHECK_INT(r[0].force_path_style, TRI_TRUE);
  CHECK_STR(r[1].bucket, "foo");
  CHECK_STR(r[1].region, "us-west-000");
  CHECK_STR(r[1].endpoint, "https://s3.us-west-000.backblazeb2.com");
  CHECK_INT(r[1].force_path_style, TRI_TRUE);
  CHECK_STR(r[2].bucket, "plain");
  CHECK_STR(r[2].path, "deep/er");
  CHECK_STR(r[2].region, NULL);
  CHECK_STR(r[2].endpoint, NULL);
  CHECK_INT(r[2].force_path_style, TRI_FALSE);
  config_destroy(&c);

  /* The URL scheme decides the type; a different `type` is warned about. */
  char *w = parse_warnings("dbs:\n"
                           "  - path: /a.db\n"
                           "    replicas:\n"
                           "      - url: gs://g/p\n"
                           "        type: s3\n"
                           "      - url: s3://b/p?endpoint=x\n",
                           &c);
  CHECK_STR(c.dbs[0].replicas[0].type, "gcs");
  CHECK_STR(c.dbs[0].replicas[0].name, "gcs");
  CHECK_STR(c.dbs[0].replicas[0].bucket, "g");
  CHECK_HAS(w, FILE_NAME ":5: type: type \\\"s3\\\" ignored");
  CHECK_HAS(w, FILE_NAME ":6: url: query parameters in a replica URL are "
                         "ignored");
  free(w);
  config_destroy(&c);

  /* type: gs is accepted and normalised. */
  parse_ok("dbs:\n  - path: /a.db\n    replicas:\n"
           "      - type: gs\n        bucket: g\n",
           &c);
  CHECK_STR(c.dbs[0].replicas[0].type, "gcs");
  CHECK_STR(c.dbs[0].replicas[0].path, "");
  config_destroy(&c);

  /* sftp: user and password from the URL unless given as keys. */
  parse_ok("dbs:\n  - path: /a.db\n    replicas:\n"
           "      - url: sftp://bob:pw@h:2222/bk\n"
           "      - url: sftp://h/bk\n"
           "        name: keyed\n"
           "        user: alice\n"
           "        key-path: /id\n"
           "        host-key-path: ~/.ssh/sluice_hosts\n",
           &c);
  struct replica_config *s = c.dbs[0].replicas;
  CHECK_STR(s[0].host, "h:2222");
  CHECK_STR(s[0].user, "bob");
  CHECK_STR(s[0].password, "pw");
  CHECK_STR(s[0].path, "/bk");
  CHECK_STR(s[1].user, "alice");
  CHECK_STR(s[1].password, NULL);
  CHECK_STR(s[1].key_path, "/id");
  CHECK_STR(s[1].host_key_path, "~/.ssh/sluice_hosts");
  CHECK_STR(s[0].host_key_path, NULL);
  config_destroy(&c);
}

static int64_t fps_of(const char *extra, const char *url) {
  char *text = xasprintf("dbs:\n  - path: /a.db\n    replicas:\n"
                         "      - %s\n%s",
                         url, extra);
  struct config c;
  parse_ok(text, &c);
  free(text);
  int64_t v = c.n_dbs ? c.dbs[0].replicas[0].force_path_style : -2;
  config_destroy(&c);
  return v;
}

TEST(force_path_style_rules) {
  /* No key, no endpoint: false (AWS virtual-host style). */
  CHECK_INT(fps_of("", "url: s3://bkt/p"), TRI_FALSE);
  /* An endpoint implies path style. */
  CHECK_INT(fps_of("        endpoint: http://m:9000\n", "url: s3://bkt/p"),
            TRI_TRUE);
  /* ... unless the key says otherwise. */
  CHECK_INT(fps_of("        endpoint: http://m:9000\n"
                   "        force-path-style: false\n",
                   "url: s3://bkt/p"),
            TRI_FALSE);
  /* The key alone. */
  CHECK_INT(
      fps_of("        bucket: b\n        force-path-style: true\n", "type: s3"),
      TRI_TRUE);
  CHECK_INT(fps_of("        bucket: b\n", "type: s3"), TRI_FALSE);
  /* A URL that implies path style turns a false on, even an explicit one
   * (Litestream's `if !forcePathStyle`). */
  CHECK_INT(fps_of("        force-path-style: false\n",
                   "url: s3://foo.localhost:9000/p"),
            TRI_TRUE);
  CHECK_INT(fps_of("", "url: s3://b.nyc3.digitaloceanspaces.com/p"), TRI_TRUE);
}

TEST(azure_url_forms) {
  unsetenv("AZURE_STORAGE_ACCOUNT");
  struct config c;
  parse_ok("dbs:\n  - path: /a.db\n    replicas:\n"
           "      - url: abs://acct@cont/db/app\n"
           "        name: r0\n"
           "      - url: abs://cont/db\n"
           "        name: r1\n"
           "        account-name: other\n"
           "      - url: abs://myacct/cont/a/b\n"
           "        name: r2\n"
           "        account-name: myacct\n"
           "      - url: abs://myacct\n"
           "        name: r3\n"
           "        account-name: myacct\n"
           "      - url: abs://fromurl@cont/p\n"
           "        name: r4\n"
           "        account-name: real\n"
           "      - url: abs://myacct/cont\n"
           "        name: r5\n"
           "        account-name: myacct\n",
           &c);
  struct replica_config *r = c.dbs[0].replicas;
  CHECK_STR(r[0].type, "abs");
  CHECK_STR(r[0].account_name, "acct");
  CHECK_STR(r[0].bucket, "cont");
  CHECK_STR(r[0].path, "db/app");
  CHECK_STR(r[1].account_name, "other");
  CHECK_STR(r[1].bucket, "cont");
  CHECK_STR(r[1].path, "db");
  CHECK_STR(r[2].account_name, "myacct");
  CHECK_STR(r[2].bucket, "cont");
  CHECK_STR(r[2].path, "a/b");
  CHECK_STR(r[3].bucket, "myacct"); /* no path: Litestream's form */
  CHECK_STR(r[3].path, "");
  CHECK_STR(r[4].account_name, "real");
  CHECK_STR(r[4].bucket, "cont");
  CHECK_STR(r[5].bucket, "cont");
  CHECK_STR(r[5].path, "");
  config_destroy(&c);

  /* Without account-name, $AZURE_STORAGE_ACCOUNT names the account. */
  setenv("AZURE_STORAGE_ACCOUNT", "envacct", 1);
  parse_ok("dbs:\n  - path: /a.db\n    replicas:\n"
           "      - url: abs://envacct/cont/p\n"
           "      - url: abs://cont2/p\n"
           "        name: other\n",
           &c);
  r = c.dbs[0].replicas;
  CHECK_STR(r[0].account_name, "envacct");
  CHECK_STR(r[0].bucket, "cont");
  CHECK_STR(r[0].path, "p");
  CHECK_STR(r[1].account_name, NULL);
  CHECK_STR(r[1].bucket, "cont2");
  CHECK_STR(r[1].path, "p");
  config_destroy(&c);

  struct replica_config one;
  CHECK_INT(config_replica_from_url("abs://envacct/c/x/y", &one, errbuf,
                                    sizeof(errbuf)),
            0);
  CHECK_STR(one.bucket, "c");
  CHECK_STR(one.path, "x/y");
  CHECK_STR(one.account_name, "envacct");
  config_replica_destroy(&one);
  unsetenv("AZURE_STORAGE_ACCOUNT");
}

TEST(merge_keys) {
  struct config c;
  parse_ok("dbs:\n"
           "  - path: /a.db\n"
           "    replicas:\n"
           "      - &s3base\n"
           "        type: s3\n"
           "        bucket: shared\n"
           "        path: a\n"
           "        sync-interval: 5s\n"
           "  - path: /b.db\n"
           "    replicas:\n"
           "      - <<: *s3base\n"
           "        path: b\n",
           &c);
  struct replica_config *r = &c.dbs[1].replicas[0];
  CHECK_STR(r->type, "s3");
  CHECK_STR(r->bucket, "shared");
  CHECK_STR(r->path, "b");
  CHECK_INT(r->sync_interval, 5 * SEC);
  config_destroy(&c);
  /* A self-referencing merge cannot loop forever. */
  CHECK_BAD("dbs:\n  - &d\n    path: /a.db\n    <<: *d\n",
            "merge keys nested too deeply");
}

TEST(replica_from_url) {
  struct replica_config r;
  CHECK_INT(config_replica_from_url("s3://bkt.localhost:9000/db", &r, errbuf,
                                    sizeof(errbuf)),
            0);
  CHECK_STR(r.type, "s3");
  CHECK_STR(r.name, "s3");
  CHECK_STR(r.bucket, "bkt");
  CHECK_STR(r.path, "db");
  CHECK_STR(r.endpoint, "http://localhost:9000");
  CHECK_INT(r.force_path_style, TRI_TRUE);
  CHECK_INT(r.sync_interval, SEC);
  CHECK_INT(r.retention, 24 * 3600 * SEC);
  config_replica_destroy(&r);

  CHECK_INT(
      config_replica_from_url("file:///tmp/bk", &r, errbuf, sizeof(errbuf)), 0);
  CHECK_STR(r.type, "file");
  CHECK_STR(r.path, "/tmp/bk");
  config_replica_destroy(&r);

  CHECK_INT(config_replica_from_url("s3://localhost:9000/db", &r, errbuf,
                                    sizeof(errbuf)),
            ERR_CONFIG);
  CHECK_STR(errbuf, "bucket required for s3 replica: s3://localhost:9000/db");
  CHECK_INT(config_replica_from_url("sftp://:hunter2@h/p", &r, errbuf,
                                    sizeof(errbuf)),
            ERR_CONFIG);
  CHECK_STR(errbuf, "user required for sftp replica: sftp://:xxxxx@h/p");
  CHECK_INT(config_replica_from_url("ftp://h/p", &r, errbuf, sizeof(errbuf)),
            ERR_CONFIG);
  CHECK_STR(errbuf, "unknown replica type in config: \"ftp\": ftp://h/p");
  CHECK_INT(config_replica_from_url("s3://b:x/p", &r, errbuf, sizeof(errbuf)),
            ERR_CONFIG);
  CHECK_STR(errbuf, "invalid replica URL \"s3://b:x/p\": invalid port \":x\" "
                    "after host");
}

TEST(default_path_order) {
  char *old_home = getenv("HOME") ? xstrdup(getenv("HOME")) : NULL;
  setenv("HOME", "/home/tester", 1);
  setenv("SLUICE_CONFIG", "/s/sluice.yml", 1);
  setenv("LITESTREAM_CONFIG", "/l/litestream.yml", 1);
  int ex = -1;
  char *p = config_default_path("~/flag.yml", &ex);
  CHECK_STR(p, "/home/tester/flag.yml");
  CHECK_INT(ex, 1);
  free(p);
  p = config_default_path(NULL, &ex);
  CHECK_STR(p, "/s/sluice.yml");
  CHECK_INT(ex, 1);
  free(p);
  unsetenv("SLUICE_CONFIG");
  p = config_default_path("", &ex);
  CHECK_STR(p, "/l/litestream.yml");
  CHECK_INT(ex, 1);
  free(p);
  setenv("LITESTREAM_CONFIG", "", 1); /* empty counts as unset */
  setenv("SLUICE_CONFIG", "~/s.yml", 1);
  p = config_default_path(NULL, &ex);
  CHECK_STR(p, "/home/tester/s.yml");
  free(p);
  unsetenv("SLUICE_CONFIG");
  p = config_default_path(NULL, &ex);
  CHECK_STR(p, access("/etc/sluice.yml", F_OK) == 0 ? "/etc/sluice.yml"
                                                    : "/etc/litestream.yml");
  CHECK_INT(ex, 0);
  free(p);
  unsetenv("LITESTREAM_CONFIG");
  if (old_home)
    setenv("HOME", old_home, 1);
  else
    unsetenv("HOME");
  free(old_home);
}

TEST(load_from_file) {
  struct config c;
  CHECK_INT(
      config_load("/nonexistent/dir/x.yml", 1, &c, errbuf, sizeof(errbuf)),
      -ENOENT);
  CHECK_STR(errbuf, "config file not found: /nonexistent/dir/x.yml");

  char path[] = "/tmp/sluice-test-config-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  const char *text = "dbs:\n"
                     "  - path: /a.db\n"
                     "    replicas:\n"
                     "      - url: s3://b/p\n"
                     "        retention: soon\n";
  CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
  close(fd);
  CHECK_INT(config_load(path, 1, &c, errbuf, sizeof(errbuf)), ERR_CONFIG);
  char *want = xasprintf("%s:5: retention: expected a duration like 10s or "
                         "1h30m, got \"soon\"",
                         path);
  CHECK_STR(errbuf, want);
  free(want);

  text = "dbs:\n  - path: /a.db\n";
  fd = open(path, O_WRONLY | O_TRUNC);
  CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
  close(fd);
  CHECK_INT(config_load(path, 1, &c, errbuf, sizeof(errbuf)), 0);
  CHECK_STR(c.path, path);
  CHECK_INT(c.n_dbs, 1);
  CHECK_INT(c.logging.to_stderr, 0);
  config_destroy(&c);
  unlink(path);
}

int main(void) {
  struct log_config lc = {LOG_INFO, 0, 1};
  log_setup(&lc);
  RUN(defaults);
  RUN(paths_made_absolute);
  RUN(every_key);
  RUN(every_backend_key);
  RUN(durations);
  RUN(booleans_and_integers);
  RUN(env_expansion_rules);
  RUN(unknown_keys_warn);
  RUN(validation_errors);
  RUN(replica_type_and_required_keys);
  RUN(logging_addr_and_sse_errors);
  RUN(syntax_and_shape_errors);
  RUN(null_values_keep_defaults);
  RUN(global_credentials_flow_into_replicas);
  RUN(url_and_explicit_keys);
  RUN(force_path_style_rules);
  RUN(azure_url_forms);
  RUN(merge_keys);
  RUN(replica_from_url);
  RUN(default_path_order);
  RUN(load_from_file);
  T_DONE();
}
