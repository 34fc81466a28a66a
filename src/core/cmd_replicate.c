#include <stdio.h>

#include "core/cmd.h"

int cmd_replicate(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "replicate: not implemented yet\n");
  return 1;
}
