#include <stdio.h>

#include "core/cmd.h"

int cmd_restore(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "restore: not implemented yet\n");
  return 1;
}
