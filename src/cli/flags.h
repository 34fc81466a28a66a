/*
 * Command-line flags with Go's `flag` package semantics (spec 5.1): one or
 * two leading dashes, "-name value" or "-name=value", booleans as "-name" or
 * "-name=false", parsing stops at the first non-flag argument or "--".
 */
#ifndef SLUICE_FLAGS_H
#define SLUICE_FLAGS_H

#include <stdint.h>

enum flag_type { FLAG_BOOL, FLAG_STRING, FLAG_INT, FLAG_DURATION };

struct flag {
  const char *name;
  enum flag_type type;
  void *ptr; /* int*, char** (owned copy stored), long*, int64_t* */
  int set;   /* set by flags_parse when given */
};

#define FLAGS_HELP (-2)

/* Parses argv[1..]; on success returns the index of the first positional
 * argument.  On error prints "flag provided but not defined: -x" (or the
 * value error) to stderr and the usage text to stdout, and returns -1; for
 * -h/-help prints the usage and returns FLAGS_HELP. */
int flags_parse(struct flag *flags, int nflags, int argc, char **argv,
                const char *usage);
/* Frees strings stored by FLAG_STRING flags. */
void flags_free(struct flag *flags, int nflags);

#endif
