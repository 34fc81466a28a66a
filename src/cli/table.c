#include "cli/table.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

void table_init(struct table *t, size_t ncols) {
  memset(t, 0, sizeof(*t));
  t->ncols = ncols;
}

void table_destroy(struct table *t) {
  for (size_t i = 0; i < t->nrows * t->ncols; i++)
    free(t->cells[i]);
  free(t->cells);
  memset(t, 0, sizeof(*t));
}

void table_add(struct table *t, const char *const *row) {
  t->cells = xrealloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(char *));
  for (size_t c = 0; c < t->ncols; c++)
    t->cells[t->nrows * t->ncols + c] = xstrdup(row[c] ? row[c] : "");
  t->nrows++;
}

void table_addv(struct table *t, ...) {
  const char **row = xcalloc(t->ncols, sizeof(char *));
  va_list ap;
  va_start(ap, t);
  for (size_t c = 0; c < t->ncols; c++)
    row[c] = va_arg(ap, const char *);
  va_end(ap);
  table_add(t, row);
  free(row);
}

/* Code points, as tabwriter counts runes. */
static size_t width(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80)
      n++;
  return n;
}

void table_print(const struct table *t, FILE *f) {
  size_t *w = xcalloc(t->ncols ? t->ncols : 1, sizeof(size_t));
  for (size_t r = 0; r < t->nrows; r++)
    for (size_t c = 0; c < t->ncols; c++)
      w[c] = MAX(w[c], width(t->cells[r * t->ncols + c]));
  for (size_t r = 0; r < t->nrows; r++) {
    for (size_t c = 0; c < t->ncols; c++) {
      const char *cell = t->cells[r * t->ncols + c];
      fputs(cell, f);
      if (c + 1 < t->ncols)
        fprintf(f, "%*s", (int)(w[c] - width(cell) + 2), "");
    }
    fputc('\n', f);
  }
  free(w);
}
