#include "format/wal.h"

#include "base/err.h"
#include "base/util.h"

void wal_checksum(int big_endian, const uint8_t *p, size_t n, uint32_t *s0,
                  uint32_t *s1) {
  uint32_t a = *s0, b = *s1;
  if (big_endian) {
    for (size_t i = 0; i + 8 <= n; i += 8) {
      a += get_be32(p + i) + b;
      b += get_be32(p + i + 4) + a;
    }
  } else {
    for (size_t i = 0; i + 8 <= n; i += 8) {
      a += get_le32(p + i) + b;
      b += get_le32(p + i + 4) + a;
    }
  }
  *s0 = a;
  *s1 = b;
}

int wal_header_parse(const uint8_t b[WAL_HEADER_SIZE], struct wal_header *h) {
  struct wal_header t;
  t.magic = get_be32(b);
  if (t.magic != WAL_MAGIC_LE && t.magic != WAL_MAGIC_BE)
    return ERR_WAL_HEADER;
  t.big_endian = t.magic == WAL_MAGIC_BE;
  t.version = get_be32(b + 4);
  t.page_size = get_be32(b + 8);
  if (t.page_size == 1)
    t.page_size = 65536;
  if (t.page_size < 512 || t.page_size > 65536 ||
      (t.page_size & (t.page_size - 1)))
    return ERR_WAL_HEADER;
  t.ckpt_seq = get_be32(b + 12);
  t.salt1 = get_be32(b + 16);
  t.salt2 = get_be32(b + 20);
  t.cksum1 = get_be32(b + 24);
  t.cksum2 = get_be32(b + 28);
  uint32_t s0 = 0, s1 = 0;
  wal_checksum(t.big_endian, b, 24, &s0, &s1);
  if (s0 != t.cksum1 || s1 != t.cksum2)
    return ERR_WAL_HEADER;
  *h = t;
  return 0;
}

void wal_frame_header_parse(const uint8_t b[WAL_FRAME_HEADER_SIZE],
                            struct wal_frame_header *f) {
  f->pgno = get_be32(b);
  f->commit = get_be32(b + 4);
  f->salt1 = get_be32(b + 8);
  f->salt2 = get_be32(b + 12);
  f->cksum1 = get_be32(b + 16);
  f->cksum2 = get_be32(b + 20);
}

int64_t wal_frame_align(int64_t size, uint32_t page_size) {
  if (size < WAL_HEADER_SIZE)
    return 0;
  int64_t fs = wal_frame_size(page_size);
  return WAL_HEADER_SIZE + ((size - WAL_HEADER_SIZE) / fs) * fs;
}

void wal_scan_init(struct wal_scan *s, const struct wal_header *h) {
  wal_scan_resume(s, h, WAL_HEADER_SIZE, h->cksum1, h->cksum2);
}

void wal_scan_resume(struct wal_scan *s, const struct wal_header *h,
                     int64_t offset, uint32_t s0, uint32_t s1) {
  s->hdr = *h;
  s->s0 = s->commit_s0 = s0;
  s->s1 = s->commit_s1 = s1;
  s->end = s->commit_end = offset;
  s->db_pages = 0;
}

int wal_scan_frame(struct wal_scan *s, const uint8_t *frame) {
  struct wal_frame_header f;
  wal_frame_header_parse(frame, &f);
  if (f.salt1 != s->hdr.salt1 || f.salt2 != s->hdr.salt2 || f.pgno == 0)
    return 0;
  uint32_t a = s->s0, b = s->s1;
  wal_checksum(s->hdr.big_endian, frame, 8, &a, &b);
  wal_checksum(s->hdr.big_endian, frame + WAL_FRAME_HEADER_SIZE,
               s->hdr.page_size, &a, &b);
  if (a != f.cksum1 || b != f.cksum2)
    return 0;
  s->s0 = a;
  s->s1 = b;
  s->end += wal_frame_size(s->hdr.page_size);
  if (f.commit) {
    s->commit_end = s->end;
    s->commit_s0 = a;
    s->commit_s1 = b;
    s->db_pages = f.commit;
  }
  return 1;
}
