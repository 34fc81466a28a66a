#include "format/names.h"

#include <ctype.h>
#include <stdlib.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/util.h"

int gen_is_valid(const char *s) {
  if (!s || strlen(s) != GEN_LEN)
    return 0;
  for (int i = 0; i < GEN_LEN; i++)
    if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
      return 0;
  return 1;
}

void gen_new(char out[GEN_LEN + 1]) {
  uint8_t b[8];
  random_bytes(b, sizeof(b));
  /* The top 44 bits: milliseconds since the epoch (until the year 2527),
   * so that a later generation has a greater name; the low 20: random. */
  uint64_t ms = (uint64_t)(time_now_ns() / 1000000) & ((1ULL << 44) - 1);
  uint64_t rnd = (uint64_t)b[0] << 16 | (uint64_t)b[1] << 8 | b[2];
  uint64_t v = ms << 20 | (rnd & 0xfffff);
  for (int i = 0; i < 8; i++)
    b[i] = (uint8_t)(v >> (56 - 8 * i));
  hex_encode(b, sizeof(b), out);
}

char *key_generations_dir(void) {
  return xstrdup("generations/");
}

char *key_generation_dir(const char *gen) {
  return xasprintf("generations/%s/", gen);
}

char *key_snapshots_dir(const char *gen) {
  return xasprintf("generations/%s/snapshots/", gen);
}

char *key_wal_dir(const char *gen) {
  return xasprintf("generations/%s/wal/", gen);
}

char *key_snapshot(const char *gen, uint32_t index) {
  return xasprintf("generations/%s/snapshots/%08" PRIx32 ".snapshot.lz4", gen,
                   index);
}

char *key_wal_segment(const char *gen, uint32_t index, int64_t offset) {
  return xasprintf("generations/%s/wal/%08" PRIx32 "_%08" PRIx64 ".wal.lz4",
                   gen, index, (uint64_t)offset);
}

/* Parses exactly n lower-case hex digits (min..max when max > min). */
static int parse_hex(const char **s, int min, int max, uint64_t *out) {
  uint64_t v = 0;
  int n = 0;
  const char *p = *s;
  while (n < max && (isdigit((unsigned char)*p) || (*p >= 'a' && *p <= 'f'))) {
    v = v << 4 |
        (uint64_t)(isdigit((unsigned char)*p) ? *p - '0' : *p - 'a' + 10);
    p++;
    n++;
  }
  if (n < min)
    return -1;
  *s = p;
  *out = v;
  return 0;
}

int parse_snapshot_name(const char *base, uint32_t *index) {
  uint64_t v;
  const char *p = base;
  if (parse_hex(&p, 8, 8, &v) || strcmp(p, ".snapshot.lz4"))
    return -1;
  *index = (uint32_t)v;
  return 0;
}

int parse_wal_segment_name(const char *base, uint32_t *index, int64_t *offset) {
  uint64_t i, o;
  const char *p = base;
  if (parse_hex(&p, 8, 8, &i) || *p++ != '_' || parse_hex(&p, 8, 16, &o) ||
      strcmp(p, ".wal.lz4") || o > INT64_MAX)
    return -1;
  *index = (uint32_t)i;
  *offset = (int64_t)o;
  return 0;
}

int parse_shadow_wal_name(const char *base, uint32_t *index) {
  uint64_t v;
  const char *p = base;
  if (parse_hex(&p, 8, 8, &v) || strcmp(p, ".wal"))
    return -1;
  *index = (uint32_t)v;
  return 0;
}

int parse_generation_key(const char *key, char gen[GEN_LEN + 1]) {
  if (!str_has_prefix(key, "generations/"))
    return -1;
  const char *g = key + strlen("generations/");
  if (strlen(g) < GEN_LEN || (g[GEN_LEN] != '/' && g[GEN_LEN] != '\0'))
    return -1;
  char tmp[GEN_LEN + 1];
  memcpy(tmp, g, GEN_LEN);
  tmp[GEN_LEN] = '\0';
  if (!gen_is_valid(tmp))
    return -1;
  memcpy(gen, tmp, GEN_LEN + 1);
  return 0;
}

void pos_format(const struct pos *p, char *out) {
  if (pos_is_zero(p)) {
    out[0] = '\0';
    return;
  }
  snprintf(out, 48, "%s/%08" PRIx32 ":%" PRId64, p->gen, p->index, p->offset);
}

int pos_is_zero(const struct pos *p) {
  return p->gen[0] == '\0';
}

int pos_cmp(const struct pos *a, const struct pos *b) {
  if (a->index != b->index)
    return a->index < b->index ? -1 : 1;
  if (a->offset != b->offset)
    return a->offset < b->offset ? -1 : 1;
  return 0;
}

char *meta_dir_path(const char *db_path, const char *meta_path) {
  if (meta_path)
    return xstrdup(meta_path);
  char *dir = path_dir(db_path);
  char *meta = xasprintf("%s/.%s-litestream", strcmp(dir, "/") ? dir : "",
                         path_base(db_path));
  free(dir);
  return meta;
}
