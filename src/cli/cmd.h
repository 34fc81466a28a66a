/*
 * The CLI commands (spec 5).  Each takes argc/argv with argv[0] = command
 * name and returns the process exit code.
 */
#ifndef SLUICE_CMD_H
#define SLUICE_CMD_H

#include "config/config.h"

int cmd_databases(int argc, char **argv);   /* cmd_list.c */
int cmd_generations(int argc, char **argv); /* cmd_list.c */
int cmd_snapshots(int argc, char **argv);   /* cmd_list.c */
int cmd_wal(int argc, char **argv);         /* cmd_list.c */
int cmd_restore(int argc, char **argv);     /* cmd_restore.c */
int cmd_replicate(int argc, char **argv);   /* cmd_replicate.c */
int cmd_replicas(int argc, char **argv);    /* cmd_replicas.c */
int cmd_config(int argc, char **argv);      /* cmd_config.c */
int cmd_status(int argc, char **argv);      /* cmd_status.c */

struct restore_opts;
/* restore -o OUTDIR DIR (cmd_restore_dir.c): every database of dir entry e
 * the store holds, `parallel` at once.  Returns the exit code. */
int cmd_restore_dir(struct config *cfg, const struct db_config *e,
                    const char *outdir, const struct restore_opts *o,
                    const char *replica, int parallel, int64_t timeout);

/* Shared by commands (cmd_common.c). */

/* Loads the config named by -config (or the default path, spec 5.4 and
 * issue #2) and applies its logging settings.  Prints a one-line error to
 * stderr and returns non-zero on failure. */
int cmd_load_config(const char *flag_path, int no_expand_env,
                    struct config *out);
struct backend;

/* What the DB_PATH|REPLICA_URL argument of a command names (spec 5.1): a
 * database of the config file, or a single replica given by URL. */
struct cmd_target {
  int url_mode;
  struct config cfg;         /* config mode */
  struct db_config *db;      /* config mode: borrowed from cfg */
  struct replica_config url; /* URL mode */
  char *db_path;             /* config mode: the database path, or NULL */
  struct backend **backends; /* the selected replicas, opened */
  size_t n_backends;
};
/* Resolves `arg`: a URL (then -config must not be given) or a DB path that
 * must be in the config.  Opens every replica of the database, or only the
 * one named `replica` (config mode; "replica %q not found for database %q"
 * unless missing_replica_ok, then none is opened).  On failure writes a
 * one-line message to err and returns non-zero. */
int cmd_target_open(struct cmd_target *t, const char *arg,
                    const char *config_flag, int no_expand_env,
                    const char *replica, int missing_replica_ok, char *err,
                    size_t errlen);
void cmd_target_close(struct cmd_target *t);

/* Interactive commands give up on a store that does not answer: every
 * request they make ends by this deadline (-timeout; 0 = none, then the
 * daemon's patient retries apply: 60 s stall detection, 4 retries). */
#define CMD_TIMEOUT_DEFAULT_NS (30 * 1000000000LL)
#define CMD_TIMEOUT_USAGE                                                      \
  "\t-timeout DURATION\n"                                                      \
  "\t    Gives up when the replicas have not answered within this time\n"      \
  "\t    (e.g. 2m). Defaults to 30s; 0 waits with the daemon's retries.\n"     \
  "\n"
/* Starts the deadline (ns from now; <= 0: none). */
void cmd_set_deadline(int64_t ns);

/* Logs "failed to run" with the error, like Litestream, and returns 1. */
int cmd_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
