#include <stdio.h>

#include "core/cmd.h"

int cmd_config(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "config: not implemented yet\n");
  return 1;
}
