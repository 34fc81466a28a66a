/*
 * sluice: continuous replication of SQLite databases, a drop-in replacement
 * for Litestream 0.3.  This file only dispatches to the commands.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"

static int cmd_version(int argc, char **argv) {
  (void)argc;
  (void)argv;
  printf("v%s\n", SLUICE_VERSION);
  return 0;
}

static const struct {
  const char *name;
  int (*fn)(int, char **);
  const char *summary;
} commands[] = {
    {"config", cmd_config, "check a configuration file"},
    {"databases", cmd_databases, "list databases specified in config file"},
    {"generations", cmd_generations,
     "list available generations for a database"},
    {"replicas", cmd_replicas,
     "show each replica's generation, lag and position"},
    {"replicate", cmd_replicate, "runs a server to replicate databases"},
    {"restore", cmd_restore, "recovers database backup from a replica"},
    {"snapshots", cmd_snapshots, "list available snapshots for a database"},
    {"status", cmd_status,
     "show every database of the running daemon, its state and lag"},
    {"version", cmd_version, "prints the binary version"},
    {"wal", cmd_wal, "list available WAL files for a database"},
};

static void usage(void) {
  printf("sluice is a tool for replicating SQLite databases (compatible with "
         "Litestream 0.3).\n\n"
         "Usage:\n\n\tsluice <command> [arguments]\n\nThe commands are:\n\n");
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    printf("\t%-12s %s\n", commands[i].name, commands[i].summary);
  printf("\nRun 'sluice <command> -h' for a command's flags.\n");
}

/* LITESTREAM_ACCESS_KEY_ID / _SECRET_ACCESS_KEY fill the AWS variables
 * when those are unset (spec 5.1). */
static void apply_litestream_env(void) {
  const char *v;
  if ((v = getenv("LITESTREAM_ACCESS_KEY_ID")) && *v &&
      !getenv("AWS_ACCESS_KEY_ID"))
    setenv("AWS_ACCESS_KEY_ID", v, 1);
  if ((v = getenv("LITESTREAM_SECRET_ACCESS_KEY")) && *v &&
      !getenv("AWS_SECRET_ACCESS_KEY"))
    setenv("AWS_SECRET_ACCESS_KEY", v, 1);
}

int main(int argc, char **argv) {
  apply_litestream_env();
  if (argc < 2 || argv[1][0] == '-' || !strcmp(argv[1], "help")) {
    usage();
    return 1;
  }
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    if (!strcmp(argv[1], commands[i].name))
      return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "sluice %s: unknown command\n", argv[1]);
  return 1;
}
