/*
 * The CLI commands (spec 5).  Each takes argc/argv with argv[0] = command
 * name and returns the process exit code.
 */
#ifndef SLUICE_CMD_H
#define SLUICE_CMD_H

#include "core/config.h"

int cmd_databases(int argc, char **argv);   /* cmd_list.c */
int cmd_generations(int argc, char **argv); /* cmd_list.c */
int cmd_snapshots(int argc, char **argv);   /* cmd_list.c */
int cmd_wal(int argc, char **argv);         /* cmd_list.c */
int cmd_restore(int argc, char **argv);     /* cmd_restore.c */
int cmd_replicate(int argc, char **argv);   /* cmd_replicate.c */
int cmd_replicas(int argc, char **argv);    /* cmd_replicas.c */
int cmd_config(int argc, char **argv);      /* cmd_config.c */

/* Shared by commands (cmd_common.c). */

/* Loads the config named by -config (or the default path, spec 5.4 and
 * issue #2) and applies its logging settings.  Prints a one-line error to
 * stderr and returns non-zero on failure. */
int cmd_load_config(const char *flag_path, int no_expand_env,
                    struct config *out);
/* Logs "failed to run" with the error, like Litestream, and returns 1. */
int cmd_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
