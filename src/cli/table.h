/*
 * Column output of the listing commands, as Go's text/tabwriter prints it
 * with minwidth 0, tabwidth 8, padding 2, pad character ' ' and no flags
 * (spec 5.2): every column but the last is padded with spaces to the width
 * of its widest cell plus 2; the last cell is printed as is.  Widths count
 * UTF-8 code points (the lag column may hold "µs").
 */
#ifndef SLUICE_TABLE_H
#define SLUICE_TABLE_H

#include <stddef.h>
#include <stdio.h>

struct table {
  size_t ncols;
  char **cells; /* rows * ncols owned strings */
  size_t nrows;
};

void table_init(struct table *t, size_t ncols);
void table_destroy(struct table *t);
/* Adds one row of exactly ncols strings (copied). */
void table_add(struct table *t, const char *const *row);
/* Same, from ncols string arguments. */
void table_addv(struct table *t, ...);
void table_print(const struct table *t, FILE *f);

#endif
