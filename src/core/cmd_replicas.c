#include <stdio.h>

#include "core/cmd.h"

int cmd_replicas(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "replicas: not implemented yet\n");
  return 1;
}
