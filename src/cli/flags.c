#include "cli/flags.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"

static struct flag *find(struct flag *flags, int n, const char *name,
                         size_t len) {
  for (int i = 0; i < n; i++)
    if (strlen(flags[i].name) == len && !strncmp(flags[i].name, name, len))
      return &flags[i];
  return NULL;
}

static int set_value(struct flag *f, const char *v) {
  switch (f->type) {
  case FLAG_BOOL:
    if (!strcmp(v, "1") || !strcasecmp(v, "t") || !strcasecmp(v, "true"))
      *(int *)f->ptr = 1;
    else if (!strcmp(v, "0") || !strcasecmp(v, "f") || !strcasecmp(v, "false"))
      *(int *)f->ptr = 0;
    else
      return -1;
    break;
  case FLAG_STRING:
    free(*(char **)f->ptr);
    *(char **)f->ptr = xstrdup(v);
    break;
  case FLAG_INT: {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 0);
    if (errno || *end || !*v)
      return -1;
    *(long *)f->ptr = x;
    break;
  }
  case FLAG_DURATION:
    if (duration_parse(v, (int64_t *)f->ptr))
      return -1;
    break;
  }
  f->set = 1;
  return 0;
}

int flags_parse(struct flag *flags, int nflags, int argc, char **argv,
                const char *usage) {
  int i = 1;
  while (i < argc) {
    const char *a = argv[i];
    if (a[0] != '-' || a[1] == '\0')
      break;
    if (!strcmp(a, "--")) {
      i++;
      break;
    }
    const char *name = a + 1;
    if (*name == '-')
      name++;
    if (*name == '-' || *name == '=') {
      fprintf(stderr, "bad flag syntax: %s\n", a);
      fputs(usage, stdout);
      return -1;
    }
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    struct flag *f = find(flags, nflags, name, len);
    if (!f) {
      if ((len == 1 && name[0] == 'h') ||
          (len == 4 && !strncmp(name, "help", 4))) {
        fputs(usage, stdout);
        return FLAGS_HELP;
      }
      fprintf(stderr, "flag provided but not defined: -%.*s\n", (int)len, name);
      fputs(usage, stdout);
      return -1;
    }
    const char *value = eq ? eq + 1 : NULL;
    i++;
    if (!value) {
      if (f->type == FLAG_BOOL) {
        value = "true";
      } else {
        if (i >= argc) {
          fprintf(stderr, "flag needs an argument: -%s\n", f->name);
          fputs(usage, stdout);
          return -1;
        }
        value = argv[i++];
      }
    }
    if (set_value(f, value)) {
      fprintf(stderr, "invalid value \"%s\" for flag -%s\n", value, f->name);
      fputs(usage, stdout);
      return -1;
    }
  }
  return i;
}

void flags_free(struct flag *flags, int nflags) {
  for (int i = 0; i < nflags; i++) {
    if (flags[i].type == FLAG_STRING) {
      free(*(char **)flags[i].ptr);
      *(char **)flags[i].ptr = NULL;
    }
  }
}
