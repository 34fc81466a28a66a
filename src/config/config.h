/*
 * Configuration: the YAML file of spec 6 (plus sluice's own keys), parsed
 * with libyaml into the structs below.  Durations are nanoseconds.
 *
 * Rules (issue #2):
 *  - environment expansion on the raw text exactly as Go's os.ExpandEnv
 *    (spec 5.4) unless disabled;
 *  - unknown keys produce a warning naming the key and its line;
 *  - a wrong type or value is an error naming file, line, key and what was
 *    expected;
 *  - global access-key-id / secret-access-key flow into replicas that have
 *    none.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "base/log.h"

#define DEFAULT_MONITOR_INTERVAL (1000LL * 1000 * 1000)         /* 1s */
#define DEFAULT_CHECKPOINT_INTERVAL (60LL * 1000 * 1000 * 1000) /* 1m */
#define DEFAULT_MIN_CHECKPOINT_PAGES 1000
#define DEFAULT_MAX_CHECKPOINT_PAGES 10000
#define DEFAULT_SYNC_INTERVAL (1000LL * 1000 * 1000) /* 1s */
#define DEFAULT_SNAPSHOT_WAL_FACTOR 1
#define DEFAULT_LEASE_TTL (30LL * 1000 * 1000 * 1000)            /* 30s */
#define DEFAULT_LEASE_IDLE_TTL (3600LL * 1000 * 1000 * 1000)     /* 1h */
#define DEFAULT_RETENTION (24LL * 3600 * 1000 * 1000 * 1000)     /* 24h */
#define DEFAULT_RETENTION_CHECK (3600LL * 1000 * 1000 * 1000)    /* 1h */
#define DEFAULT_SHUTDOWN_TIMEOUT (30LL * 1000 * 1000 * 1000)     /* 30s */
#define DEFAULT_HEALTH_MAX_SYNC_AGE (300LL * 1000 * 1000 * 1000) /* 5m */
#define DEFAULT_DEEP_SLEEP_AFTER (600LL * 1000 * 1000 * 1000)    /* 10m */
#define DEFAULT_METRICS_PER_DATABASE_MAX 1000

enum tristate { TRI_UNSET = -1, TRI_FALSE = 0, TRI_TRUE = 1 };

struct replica_config {
  char *type; /* resolved: "file", "s3", "gcs", "abs", "sftp" */
  char *name; /* defaults to type */
  char *url;  /* as written, or NULL */
  int line;   /* line of the replica entry, for error messages */

  int64_t retention; /* <= 0 disables */
  int64_t retention_check_interval;
  int64_t sync_interval;
  int64_t snapshot_interval; /* 0 = disabled */
  /* A new snapshot when the compressed WAL shipped since the last one
   * passes this many times the database size; 0 = disabled. */
  int64_t snapshot_wal_factor;
  int64_t validation_interval; /* 0 = disabled */
  /* The single-writer lease of the path (core/lease.h): its TTL (0 = no
   * lease), and whether to take it from a live owner at start. */
  int64_t lease_ttl;
  /* While nothing uploads for a whole lease_ttl: the lease is renewed with
   * this TTL instead (0 = always lease_ttl; core/lease.h "Idle leases"). */
  int64_t lease_idle_ttl;
  int force_takeover;
  /* A database of a dir entry: the entry's replica path (its root), where
   * one lease covers every database under it; NULL otherwise. */
  char *lease_root;

  char **age_identities;
  size_t n_age_identities;
  char **age_recipients;
  size_t n_age_recipients;

  /* Location: filled from the URL and/or explicit keys (explicit wins). */
  char *path;   /* file: absolute; s3/gcs/abs: key prefix (no leading '/') */
  char *bucket; /* s3/gcs bucket, abs container */
  char *region;
  char *endpoint;
  enum tristate force_path_style;
  int skip_verify;

  /* S3 */
  char *access_key_id;
  char *secret_access_key;
  char *sse; /* "AES256" or "aws:kms" or NULL */
  char *sse_kms_key_id;
  char *sse_c_key; /* base64 of a 256-bit key, or NULL */
  char *storage_class;

  /* ABS */
  char *account_name;
  char *account_key;
  char *sas_token;

  /* SFTP */
  char *host;
  char *user;
  char *password;
  char *key_path;
  char *host_key_path; /* known_hosts file or one public key; default
                         ~/.ssh/known_hosts */
};

struct db_config {
  char *path;      /* absolute; NULL for a dir entry */
  char *meta_path; /* absolute; default <dir>/.<file>-litestream */
  int line;
  /* A database of a dir entry made while config_share_dir_replicas is on
   * (the daemon): dir, pattern and the replicas are its entry's, borrowed
   * (the entry outlives it), instead of a copy per database.  A replica's
   * own path and URL (the entry's joined with the database's path
   * relative to dir) are then derived: config_db_replica. */
  int shared;
  int64_t monitor_interval;
  int64_t checkpoint_interval;
  int64_t min_checkpoint_page_count;
  int64_t max_checkpoint_page_count;
  struct replica_config *replicas;
  size_t n_replicas;
  /* A directory entry (Litestream 0.5): every SQLite file under dir whose
   * name matches pattern; expanded by config_expand_dirs.  An expanded
   * database keeps dir/pattern of its entry (and its line). */
  char *dir; /* absolute */
  char *pattern;
  int recursive;
  int watch;
};

struct config {
  char *path; /* the file it was read from, or NULL */
  char *addr;
  char *exec;
  char *access_key_id;
  char *secret_access_key;
  struct log_config logging;
  int64_t shutdown_timeout;
  int64_t health_max_sync_age;
  /* Idle databases (core/db.h): light sleep -> deep after this (0: never);
   * at most this many with connections open (0: from the fd limit). */
  int64_t deep_sleep_after;
  int64_t max_hot_databases;
  /* Process-wide bounds on what goes to the stores (core/budget.h):
   * requests per second (0: no budget), operations in flight at once (0:
   * the default). */
  int64_t max_requests_per_second;
  int64_t max_uploads_in_flight;
  /* /metrics has the per-database series while there are at most this
   * many databases (0: never); the aggregates are always there. */
  int64_t metrics_per_database_max;
  struct db_config *dbs;
  size_t n_dbs;
  struct db_config *dirs; /* dir entries, not yet expanded */
  size_t n_dirs;
};

/* Chooses the config path: explicit, else $SLUICE_CONFIG, else
 * $LITESTREAM_CONFIG, else /etc/sluice.yml if it exists, else
 * /etc/litestream.yml.  Sets *explicit to 1 when the user named it
 * (flag or environment).  Returns owned string. */
char *config_default_path(const char *flag, int *explicit_);

/* Where the loader's warnings go (unknown keys, keys with no effect): the
 * log by default; `config check` collects them instead.  line is 0 when
 * unknown (URL mode); msg names the problem without the location. */
typedef void (*config_warn_cb)(void *arg, int line, const char *key,
                               const char *msg);
void config_set_warn_hook(config_warn_cb cb, void *arg);

/* Loads and validates a config file.  On failure returns ERR_CONFIG (or
 * -ENOENT: "config file not found: PATH") and writes a one-line message
 * naming file, line and key into err.  Warnings (unknown keys) are logged. */
int config_load(const char *path, int expand_env, struct config *out, char *err,
                size_t errlen);
/* Same, from a string (tests); `name` is used in messages. */
int config_parse(const char *name, const char *text, int expand_env,
                 struct config *out, char *err, size_t errlen);
void config_destroy(struct config *c);

/* Initialises one replica config with every default, then fills it from a
 * replica URL (used by `replicate DB URL...` and by URL-mode commands). */
int config_replica_from_url(const char *url, struct replica_config *out,
                            char *err, size_t errlen);
void config_replica_destroy(struct replica_config *r);
/* Deep copy of a replica config. */
void config_replica_copy(struct replica_config *dst,
                         const struct replica_config *src);
/* Initialises one db config with defaults for `path` (made absolute). */
void config_db_init(struct db_config *d, const char *path);
void config_db_destroy(struct db_config *d);

/* Directory entries (src/config/discover.c).  Appends one database per
 * SQLite file found under each dir entry to c->dbs, each with the entry's
 * options and its replica paths joined with the file's path relative to dir.
 * A dir that does not exist is logged (one line) and skipped.  Returns 0, or
 * ERR_CONFIG with a message when two entries match one file. */
int config_expand_dirs(struct config *c, char *err, size_t errlen);
/* The database for `path` (absolute) if it lies under a dir entry and
 * matches its pattern, whether or not the file exists (restore onto a lost
 * host): appended to c->dbs and returned, else NULL. */
struct db_config *config_dir_db(struct config *c, const char *path);
/* Live discovery (the daemon's watched dirs). */
/* Whether `path` (absolute) lies under entry e and matches it by name. */
int config_dir_match(const struct db_config *e, const char *path);
/* Whether a file name matches e's pattern and is no -wal/-shm/-journal. */
int config_dir_name_matches(const struct db_config *e, const char *name);
/* Whether a subdirectory is skipped (a .<db>-litestream meta dir). */
int config_dir_skip_subdir(const char *name);
/* The database of entry e for the file at rel (relative to e->dir). */
void config_dir_make_db(const struct db_config *e, const char *rel,
                        struct db_config *out);
/* From now on config_expand_dirs and config_dir_make_db make databases
 * that share their entry's replica configs (db_config.shared), and give
 * each entry's replicas their lease root.  The daemon only: a shared
 * replica config's path and URL are the entry's, not the database's. */
void config_share_dir_replicas(int on);
/* A database's path relative to its entry's dir ("" for other entries). */
const char *config_db_rel(const struct db_config *d);
/* Replica i of database d as if copied for it alone (its own path and
 * URL, shared or not): owned by the caller (config_replica_destroy). */
void config_db_replica(const struct db_config *d, size_t i,
                       struct replica_config *out);
/* Its replica path alone (owned; NULL when the replica has none). */
char *config_db_replica_path(const struct db_config *d, size_t i);
/* 0, or -1 with the reason when a pattern is invalid (Go's filepath.Match
 * rules: unterminated [, trailing backslash; no '/'). */
int config_pattern_check(const char *pattern, char *why, size_t n);
/* What is at path now (stat and the first 16 bytes). */
enum {
  CONFIG_PROBE_GONE,
  CONFIG_PROBE_DB,       /* a regular file beginning with the header */
  CONFIG_PROBE_SHORT,    /* a regular file shorter than the header */
  CONFIG_PROBE_SETTLING, /* SQLite, not in WAL mode, changed just now */
  CONFIG_PROBE_NOTDB,    /* a regular file that is not SQLite */
  CONFIG_PROBE_DIR,
  CONFIG_PROBE_OTHER,      /* socket, fifo... */
  CONFIG_PROBE_UNREADABLE, /* permission denied, I/O error */
};
int config_dir_probe(const char *path);
/* How long a SQLite file not in WAL mode must be quiet before it is taken
 * (an application creating a database switches it to WAL right away:
 * opening it in between races the creation). */
#define CONFIG_PROBE_SETTLE_MS 2000
/* A process replicating databases must never open and close a file whose
 * database it has open: closing any fd of a file drops every POSIX lock the
 * process holds on it (SQLite's, the pin).  When set, every header read of
 * the scans asks begin(path) first: 1 means "a database of this process"
 * (not opened, taken as SQLite); 0 means go ahead, and end() follows the
 * read (a lock may be held in between). */
struct config_probe_guard {
  int (*begin)(void *arg, const char *path);
  void (*end)(void *arg);
  void *arg;
};
void config_set_probe_guard(const struct config_probe_guard *g);
/* Whether config_expand_dirs warns about matching files that are not
 * SQLite or cannot be read (the daemon: yes; the commands: no).  Watched
 * entries are left to the daemon's discovery, which warns once. */
void config_dir_warnings(int on);
/* A replica location joined with a relative database path: file paths with
 * '/', key prefixes without a leading '/' (`tenants` + `a/b.db` ->
 * `tenants/a/b.db`, `` + `a.db` -> `a.db`).  Owned string. */
char *config_join_replica_path(const char *base, const char *rel);

/* Go's os.ExpandEnv on text (spec 5.4).  Returns owned string. */
char *config_expand_env(const char *text);

/* Finds a db by path (expanded and made absolute first). */
struct db_config *config_find_db(struct config *c, const char *path);

/* Canonical text of a database's whole configuration, for comparing two
 * configs on reload.  Holds secrets: never log it.  Owned string. */
char *config_db_fingerprint(const struct db_config *d);

#endif
