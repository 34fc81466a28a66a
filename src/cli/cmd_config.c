/*
 * sluice config check: validates a configuration without replicating.
 *
 * It loads the file (the parser reports a problem as FILE:LINE: KEY: ...),
 * resolves every replica and opens its backend exactly as `replicate`
 * would (backend_open does no network I/O), and looks at what is on the
 * local disk: each database, its directory and meta directory, and the
 * directory of each file replica.  Everything found is printed on stdout,
 * one line per item, with locations redacted as in the logs: no secret
 * ever appears.  A database that does not exist yet is only a warning,
 * since replicate waits for the application to create it.
 *
 * The loader's own warnings (unknown keys: they had no effect) are printed
 * the same way.  Exit status: 0 when there is no problem (warnings
 * allowed), else 1; with -strict every warning is a problem.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backend.h"
#include "cli/cmd.h"
#include "cli/flags.h"
#include "config/url.h"
#include "core/budget.h"
#include "base/util.h"
#include "loop/http.h"
#include "loop/loop.h"

static const char config_usage[] =
    "The config command works with configuration files.\n\n"
    "Usage:\n\n"
    "\tsluice config <subcommand> [arguments]\n\n"
    "The subcommands are:\n\n"
    "\tcheck        validate a configuration file without replicating\n";

static const char check_usage[] =
    "The check subcommand loads a configuration file, resolves every replica\n"
    "and checks each database path, without replicating and without network\n"
    "access.  It prints what it found and exits non-zero on any problem.\n\n"
    "Usage:\n\n"
    "\tsluice config check [arguments]\n\n"
    "Arguments:\n\n"
    "\t-config PATH\n"
    "\t    Specifies the configuration file.\n"
    "\t    Defaults to $SLUICE_CONFIG, $LITESTREAM_CONFIG, /etc/sluice.yml\n"
    "\t    or /etc/litestream.yml.\n\n"
    "\t-no-expand-env\n"
    "\t    Disables environment variable expansion in configuration file.\n\n"
    "\t-strict\n"
    "\t    Treats every warning (an unknown key, a key with no effect, a\n"
    "\t    database that does not exist yet) as an error.\n";

struct check {
  const char *file; /* the config file, for FILE:LINE: prefixes */
  int strict;       /* warnings are problems */
  int problems;
  int warnings;
  int no_effect; /* warnings about keys that had no effect */
};

static void report(struct check *c, int is_error, int line, const char *key,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Prints "error: FILE:LINE: KEY: message" (or "warning: ..."), the shape
 * of the parser's own messages; line <= 0 when the key has none. */
static void report(struct check *c, int is_error, int line, const char *key,
                   const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = xvasprintf(fmt, ap);
  va_end(ap);
  is_error |= c->strict;
  const char *kind = is_error ? "error" : "warning";
  if (line > 0)
    printf("%s: %s:%d: %s: %s\n", kind, c->file, line, key, msg);
  else
    printf("%s: %s: %s: %s\n", kind, c->file, key, msg);
  free(msg);
  if (is_error)
    c->problems++;
  else
    c->warnings++;
}

/* The nearest existing ancestor of path (path itself if it exists), with
 * its stat; under a regular file (ENOTDIR) that file is the answer, so the
 * caller can name it.  Returns owned string, or NULL with errno set when a
 * component cannot be looked at (EACCES, ELOOP...). */
static char *existing_ancestor(const char *path, struct stat *st) {
  char *p = xstrdup(path);
  for (;;) {
    if (stat(p, st) == 0)
      return p;
    if ((errno != ENOENT && errno != ENOTDIR) || !strcmp(p, "/")) {
      int e = errno;
      free(p);
      errno = e;
      return NULL;
    }
    char *up = path_dir(p);
    free(p);
    p = up;
  }
}

/* A directory sluice must create entries in (the database's directory,
 * the meta dir, a file replica): it must be a directory and writable, or
 * not exist yet under a writable directory.  Returns 1 if usable, 0 if it
 * does not exist yet, -1 after reporting a problem. */
static int check_dir(struct check *c, int line, const char *key,
                     const char *what, const char *dir) {
  struct stat st;
  char *anc = existing_ancestor(dir, &st);
  if (!anc) {
    report(c, 1, line, key, "%s %s cannot be looked at: %s", what, dir,
           strerror(errno));
    return -1;
  }
  int exists = !strcmp(anc, dir);
  int rc = exists ? 1 : 0;
  if (!S_ISDIR(st.st_mode)) {
    report(c, 1, line, key, "%s %s: %s is not a directory", what, dir, anc);
    rc = -1;
  } else if (access(anc, W_OK | X_OK) != 0) {
    report(c, 1, line, key, "%s %s: %s is not writable: %s", what, dir, anc,
           strerror(errno));
    rc = -1;
  }
  free(anc);
  return rc;
}

/* The database file: a SQLite database in WAL mode, or one replicate can
 * switch to WAL mode, or missing (replicate waits for it). */
static void check_db_file(struct check *c, const struct db_config *d) {
  struct stat st;
  if (stat(d->path, &st) != 0) {
    if (errno == ENOENT)
      report(c, 0, d->line, "path",
             "database %s does not exist yet: replicate waits for the "
             "application to create it",
             d->path);
    else
      report(c, 1, d->line, "path", "database %s: %s", d->path,
             strerror(errno));
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    report(c, 1, d->line, "path", "database %s is not a regular file", d->path);
    return;
  }
  if (access(d->path, R_OK | W_OK) != 0) {
    report(c, 1, d->line, "path",
           "database %s is not readable and writable: "
           "%s",
           d->path, strerror(errno));
    return;
  }
  if (st.st_size == 0) {
    printf("  database: empty file; replicate sets WAL mode when it opens "
           "it\n");
    return;
  }
  /* The 100-byte header: magic, page size (offset 16, big-endian, 1 means
   * 65536), write/read versions (offsets 18/19: 1 rollback, 2 WAL).  A
   * plain read takes no lock and leaves no -wal or -shm behind. */
  uint8_t h[100];
  int fd = open(d->path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : pread_full(fd, h, sizeof(h), 0);
  if (fd >= 0)
    close(fd);
  if (n < 0) {
    report(c, 1, d->line, "path", "database %s cannot be read: %s", d->path,
           strerror(errno));
    return;
  }
  if ((size_t)n < sizeof(h) || memcmp(h, "SQLite format 3", 16)) {
    report(c, 1, d->line, "path", "%s is not a SQLite database", d->path);
    return;
  }
  unsigned ps = (unsigned)h[16] << 8 | h[17];
  if (ps == 1)
    ps = 65536;
  if (h[18] == 2 && h[19] == 2)
    printf("  database: WAL mode, page size %u\n", ps);
  else if (h[18] == 1 && h[19] == 1)
    printf("  database: rollback-journal mode, page size %u; replicate "
           "switches it to WAL mode\n",
           ps);
  else
    report(c, 1, d->line, "path",
           "database %s has unknown file format versions %u/%u", d->path, h[18],
           h[19]);
}

/* The database's directory (sluice creates -wal, -shm and, by default,
 * the meta directory there), the file, and the meta directory. */
static void check_db(struct check *c, const struct db_config *d) {
  char *dir = path_dir(d->path);
  int dir_ok = check_dir(c, d->line, "path", "database directory", dir);
  free(dir);
  if (dir_ok < 0)
    return;
  check_db_file(c, d);
  /* The parser fills in the default, <dir>/.<file>-litestream. */
  const char *meta = d->meta_path;
  if (meta) {
    printf("  meta-path: %s\n", meta);
    check_dir(c, d->line, "meta-path", "meta directory", meta);
  }
}

/* Where a replica is, without secrets: the backend's description when it
 * opened, else the redacted URL, else its keys. */
static char *replica_where(const struct replica_config *r,
                           const struct backend *b) {
  if (b && b->desc)
    return xstrdup(b->desc);
  if (r->url)
    return url_redact(r->url);
  if (r->bucket)
    return xasprintf("bucket=%s path=%s", r->bucket, r->path ? r->path : "");
  return xstrdup(r->path ? r->path : "-");
}

/* Whether the replica is encrypted, and how many keys it has: never the
 * keys themselves (not even the public ones). */
static void print_age(const struct backend *b) {
  const struct age_keys *k = &b->age;
  if (!k->n_recipients && !k->n_identities)
    return;
  printf(" age: %s", k->n_recipients ? "encrypted" : "not encrypted");
  if (k->n_recipients)
    printf(" for %zu recipient%s", k->n_recipients,
           k->n_recipients == 1 ? "" : "s");
  printf(", %zu identit%s to read it (keys not shown)", k->n_identities,
         k->n_identities == 1 ? "y" : "ies");
}

static int identity_matches(const struct age_keys *k) {
  for (size_t i = 0; i < k->n_identities; i++)
    for (size_t j = 0; j < k->n_recipients; j++)
      if (!memcmp(k->identities[i].pub, k->recipients[j], 32))
        return 1;
  return 0;
}

static void check_age(struct check *c, const struct replica_config *r,
                      const struct backend *b) {
  const struct age_keys *k = &b->age;
  if (!k->n_recipients && k->n_identities)
    report(c, 0, r->line, "age",
           "identities but no recipients: objects are uploaded unencrypted "
           "(add age.recipients to encrypt them)");
  else if (k->n_recipients && !k->n_identities)
    report(c, 0, r->line, "age",
           "recipients but no identities: this host can write the replica "
           "but not read it back (restore and validation need "
           "age.identities)");
  else if (k->n_recipients && !identity_matches(k))
    report(c, 0, r->line, "age",
           "no identity belongs to a recipient: objects written here cannot "
           "be read back with these identities");
}

/* The host keys an sftp replica trusts: without them every connection is
 * refused. */
static void check_host_keys(struct check *c, const struct replica_config *r) {
  char *file;
  if (r->host_key_path && *r->host_key_path) {
    file = path_abs(r->host_key_path);
  } else {
    const char *home = getenv("HOME");
    file = path_join(home && *home ? home : "/", ".ssh/known_hosts");
  }
  printf("  host keys: %s\n", file);
  if (access(file, R_OK))
    report(c, 0, r->line, r->host_key_path ? "host-key-path" : "url",
           "host keys file %s: %s: connections to %s will be refused until "
           "it holds the server's key",
           file, strerror(errno), r->host);
  free(file);
}

static void check_replica(struct check *c, const struct replica_config *r) {
  const char *type = r->type ? r->type : "file";
  const char *name = r->name ? r->name : type;
  char err[1024] = "";
  struct backend *b = backend_open(r, err, sizeof(err));
  char *where = replica_where(r, b);
  printf("  replica %s: %s %s", name, type, where);
  free(where);
  if (r->endpoint && *r->endpoint) {
    char *ep = url_redact_userinfo(r->endpoint);
    printf(" endpoint=%s", ep);
    free(ep);
  }
  if (r->region && *r->region)
    printf(" region=%s", r->region);
  if (b)
    print_age(b);
  if (!strcmp(type, "sftp"))
    printf(" auth=%s%s%s", r->key_path && *r->key_path ? "key" : "",
           r->key_path && *r->key_path && r->password && *r->password ? "+"
                                                                      : "",
           r->password && *r->password ? "password" : "");
  printf("\n");
  if (!b) {
    report(c, 1, r->line, r->url ? "url" : "type", "%s", err);
    return;
  }
  check_age(c, r, b);
  if (!strcmp(type, "file") && r->path)
    check_dir(c, r->line, r->url ? "url" : "path", "file replica", r->path);
  if (!strcmp(type, "sftp"))
    check_host_keys(c, r);
  backend_close(b);
}

/* The program `exec` names, when its first word is plain (no quotes or
 * escapes): a missing program is worth a warning. */
static void check_exec(struct check *c, const char *exec) {
  const char *p = exec + strspn(exec, " \t\n");
  size_t n = strcspn(p, " \t\n");
  if (!n || memchr(p, '\'', n) || memchr(p, '"', n) || memchr(p, '\\', n))
    return;
  char *prog = xstrndup(p, n);
  int found = 0;
  if (strchr(prog, '/')) {
    found = access(prog, X_OK) == 0;
  } else {
    const char *path = getenv("PATH");
    char *dirs = xstrdup(path ? path : "/usr/local/bin:/usr/bin:/bin");
    for (char *sp, *dir = strtok_r(dirs, ":", &sp); dir && !found;
         dir = strtok_r(NULL, ":", &sp)) {
      char *full = path_join(*dir ? dir : ".", prog);
      found = access(full, X_OK) == 0;
      free(full);
    }
    free(dirs);
  }
  printf("exec: %s ...\n", prog);
  if (!found)
    report(c, 0, 0, "exec", "%s not found in PATH here", prog);
  free(prog);
}

static void on_config_warning(void *arg, int line, const char *key,
                              const char *msg) {
  struct check *c = arg;
  if (strstr(msg, "no effect"))
    c->no_effect++;
  report(c, 0, line, key, "%s", msg);
}

/* The process-wide request budget: what it is, and whether the requests
 * that cannot wait (lease renewals, every TTL/3 per replica) leave any of
 * it to the uploads. */
static void check_budget(struct check *c, const struct config *cfg) {
  int64_t inflight = cfg->max_uploads_in_flight > 0 ? cfg->max_uploads_in_flight
                                                    : BUDGET_DEFAULT_IN_FLIGHT;
  if (cfg->max_requests_per_second <= 0) {
    if (cfg->max_uploads_in_flight > 0)
      printf("uploads: at most %lld in flight\n", (long long)inflight);
    return;
  }
  printf("budget: %lld requests/s for every replica together, at most %lld "
         "uploads in flight (uploads wait their turn, least recently served "
         "first)\n",
         (long long)cfg->max_requests_per_second, (long long)inflight);
  double renewals = 0;
  for (size_t i = 0; i < cfg->n_dbs; i++)
    for (size_t j = 0; j < cfg->dbs[i].n_replicas; j++) {
      int64_t ttl = cfg->dbs[i].replicas[j].lease_ttl;
      if (ttl > 0)
        renewals += 3.0 * NS_PER_SEC / (double)ttl;
    }
  if (renewals >= (double)cfg->max_requests_per_second / 2)
    report(c, 0, 0, "max-requests-per-second",
           "lease renewals alone need %.1f requests/s of the %lld (every "
           "lease-ttl/3 per replica): uploads get little or none of it; "
           "raise the budget or lease-ttl, or set lease-ttl: 0",
           renewals, (long long)cfg->max_requests_per_second);
}

static int run_check(const char *config_flag, int no_expand, int strict) {
  int explicit_ = 0;
  char *path = config_default_path(config_flag, &explicit_);
  struct check c = {path, strict, 0, 0, 0};
  struct config cfg;
  char err[1024];
  printf("config: %s\n", path);
  config_set_warn_hook(on_config_warning, &c);
  int lrc = config_load(path, !no_expand, &cfg, err, sizeof(err));
  if (!lrc && (lrc = config_expand_dirs(&cfg, err, sizeof(err))))
    config_destroy(&cfg);
  config_set_warn_hook(NULL, NULL);
  if (lrc) {
    printf("error: %s\n1 problem\n", err);
    free(path);
    return 1;
  }
  if (cfg.addr && *cfg.addr)
    printf("addr: %s (/metrics, /healthz)\n", cfg.addr);
  if (cfg.exec && *cfg.exec)
    check_exec(&c, cfg.exec);
  check_budget(&c, &cfg);
  if (cfg.n_dbs == 0 && cfg.n_dirs == 0)
    report(&c, 1, 1, "dbs", "no databases specified in configuration");
  for (size_t i = 0; i < cfg.n_dirs; i++)
    printf("dir: %s (pattern %s%s)\n", cfg.dirs[i].dir, cfg.dirs[i].pattern,
           cfg.dirs[i].recursive ? ", recursive" : "");
  for (size_t i = 0; i < cfg.n_dbs; i++) {
    const struct db_config *d = &cfg.dbs[i];
    printf("db: %s\n", d->path);
    check_db(&c, d);
    if (d->n_replicas == 0)
      report(&c, 0, d->line, "replicas",
             "no replicas: %s is not replicated anywhere", d->path);
    for (size_t j = 0; j < d->n_replicas; j++)
      check_replica(&c, &d->replicas[j]);
  }
  config_destroy(&cfg);
  free(path);
  if (c.problems)
    printf("%d problem%s\n", c.problems, c.problems == 1 ? "" : "s");
  else if (c.no_effect)
    printf("config ok (%d warning%s; %d key%s had no effect)\n", c.warnings,
           c.warnings == 1 ? "" : "s", c.no_effect,
           c.no_effect == 1 ? "" : "s");
  else if (c.warnings)
    printf("config ok (%d warning%s)\n", c.warnings,
           c.warnings == 1 ? "" : "s");
  else
    printf("config ok\n");
  return c.problems ? 1 : 0;
}

static int cmd_config_check(int argc, char **argv) {
  char *config = NULL;
  int no_expand = 0, strict = 0;
  struct flag flags[] = {
      {"config", FLAG_STRING, &config, 0},
      {"no-expand-env", FLAG_BOOL, &no_expand, 0},
      {"strict", FLAG_BOOL, &strict, 0},
  };
  int nf = (int)ARRAY_SIZE(flags);
  int i = flags_parse(flags, nf, argc, argv, check_usage);
  int rc = 1;
  if (i < 0)
    goto out;
  if (i < argc) {
    fprintf(stderr, "too many arguments\n");
    goto out;
  }
  /* Backends may set up their HTTP pools when they open. */
  if (loop_init() || http_init()) {
    fprintf(stderr, "cannot initialise the event loop\n");
    goto out;
  }
  rc = run_check(config, no_expand, strict);
  http_shutdown();
  loop_close();
out:
  flags_free(flags, nf);
  return rc;
}

int cmd_config(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "-help") ||
      !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
    printf("%s", config_usage);
    return 1;
  }
  if (!strcmp(argv[1], "check"))
    return cmd_config_check(argc - 1, argv + 1);
  fprintf(stderr, "sluice config %s: unknown subcommand\n", argv[1]);
  printf("%s", config_usage);
  return 1;
}
