#include <stdio.h>

#include "core/cmd.h"

int cmd_databases(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "databases: not implemented yet\n");
  return 1;
}

int cmd_generations(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "generations: not implemented yet\n");
  return 1;
}

int cmd_snapshots(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "snapshots: not implemented yet\n");
  return 1;
}

int cmd_wal(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "wal: not implemented yet\n");
  return 1;
}
