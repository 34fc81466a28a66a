/*
 * Names of the replica layout (spec 1.1) and replication positions (3.9).
 *
 *   generations/<GEN>/snapshots/<IDX>.snapshot.lz4
 *   generations/<GEN>/wal/<IDX>_<OFF>.wal.lz4
 *
 * GEN: 16 lower-case hex digits.  IDX: %08x.  OFF: %08x when written; 8 to
 * 16 hex digits accepted when read (an offset past 4 GiB needs 9+).
 * Local shadow WAL files are named <IDX>.wal.
 */
#ifndef SLUICE_NAMES_H
#define SLUICE_NAMES_H

#include <stdint.h>

#define GEN_LEN 16
#define MAX_WAL_INDEX 0x7FFFFFFFu

/* A replication position: generation, WAL index, byte offset in that
 * index.  gen[0] == '\0' is the zero (unknown) position. */
struct pos {
  char gen[GEN_LEN + 1];
  uint32_t index;
  int64_t offset;
};

int gen_is_valid(const char *s);

/* The local meta directory of a database (spec 1.3): `meta_path` when set,
 * else "<dir>/.<file>-litestream" beside it ("/.<file>-litestream" for a
 * database in "/").  Returns owned; free it. */
char *meta_dir_path(const char *db_path, const char *meta_path);
/* A new generation name: 16 hex digits, as Litestream's (which are 8
 * random bytes), but the first 11 are the time in milliseconds and the last
 * 5 random, so a later generation sorts after an earlier one.  restore
 * breaks a tie of last-upload times (stores that list them to the second)
 * with it. */
void gen_new(char out[GEN_LEN + 1]);

/* Keys relative to the replica root; return owned strings. */
char *key_generations_dir(void); /* "generations/" */
char *key_generation_dir(const char *gen);
char *key_snapshots_dir(const char *gen);
char *key_wal_dir(const char *gen);
char *key_snapshot(const char *gen, uint32_t index);
char *key_wal_segment(const char *gen, uint32_t index, int64_t offset);

/* Parse base names; return 0 on match. */
int parse_snapshot_name(const char *base, uint32_t *index);
int parse_wal_segment_name(const char *base, uint32_t *index, int64_t *offset);
int parse_shadow_wal_name(const char *base, uint32_t *index);
/* Extracts the generation from "generations/<gen>/..." or
 * "generations/<gen>/"; returns 0 and fills gen when valid. */
int parse_generation_key(const char *key, char gen[GEN_LEN + 1]);

/* "<gen>/<index %08x>:<offset>", or "" for the zero position.
 * out must hold 48 bytes. */
void pos_format(const struct pos *p, char *out);
int pos_is_zero(const struct pos *p);
/* Compares index then offset (generations must be equal). */
int pos_cmp(const struct pos *a, const struct pos *b);

#endif
