#include "core/snapshot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/util.h"
#include "format/lz4frame.h"

#define SQLITE_HEADER "SQLite format 3"

struct image {
  const struct snapshot_src *src;
  uint32_t ps;
  int64_t pages;     /* of the image */
  int64_t file_size; /* of the database file when the scan began */
  uint32_t *frame;   /* frame[pgno]: 1 + frame number in the shadow, or 0 */
  int64_t nframe;    /* entries in frame[] */
  char *err;
  size_t errlen;
};

/* Latest frame of each page in the shadow file, and the database size of
 * its last commit (the shadow ends on one: shadow.h). */
static int scan_shadow(struct image *im) {
  const struct snapshot_src *s = im->src;
  int64_t fs = wal_frame_size(im->ps);
  int64_t n = (s->shadow_size - WAL_HEADER_SIZE) / fs;
  uint32_t commit = 0;
  for (int64_t k = 0; k < n; k++) {
    uint8_t b[WAL_FRAME_HEADER_SIZE];
    int64_t off = WAL_HEADER_SIZE + k * fs;
    ssize_t r = pread_full(s->shadow_fd, b, sizeof(b), (off_t)off);
    if (r != (ssize_t)sizeof(b)) {
      snprintf(im->err, im->errlen,
               "shadow wal: frame at %lld of %lld unreadable: %s",
               (long long)off, (long long)s->shadow_size,
               r < 0 ? strerror((int)-r) : "short file");
      return r < 0 ? (int)r : ERR_WAL_CORRUPT;
    }
    struct wal_frame_header f;
    wal_frame_header_parse(b, &f);
    if (f.pgno == 0 || f.salt1 != s->hdr.salt1 || f.salt2 != s->hdr.salt2) {
      snprintf(im->err, im->errlen,
               "shadow wal: frame at %lld is not of this lifetime (page %u, "
               "salts %08x %08x, header %08x %08x)",
               (long long)off, f.pgno, f.salt1, f.salt2, s->hdr.salt1,
               s->hdr.salt2);
      return ERR_WAL_CORRUPT;
    }
    if (f.pgno >= im->nframe) {
      int64_t want = MAX((int64_t)f.pgno + 1, 2 * im->nframe);
      im->frame = xrealloc(im->frame, (size_t)want * sizeof(*im->frame));
      memset(im->frame + im->nframe, 0,
             (size_t)(want - im->nframe) * sizeof(*im->frame));
      im->nframe = want;
    }
    im->frame[f.pgno] = (uint32_t)(k + 1);
    commit = f.commit;
  }
  if (!commit) {
    snprintf(im->err, im->errlen,
             "shadow wal: its last frame (of %lld bytes) is not a commit",
             (long long)s->shadow_size);
    return ERR_WAL_CORRUPT;
  }
  im->pages = commit;
  return 0;
}

/* Page 1's in-header database size, if SQLite keeps it valid (its
 * version-valid-for number equals the change counter); 0 otherwise. */
static uint32_t header_pages(const uint8_t *p1) {
  if (get_be32(p1 + 92) != get_be32(p1 + 24))
    return 0;
  return get_be32(p1 + 28);
}

static int fill(void *arg, uint8_t *dst, size_t n, int64_t at) {
  struct image *im = arg;
  const struct snapshot_src *s = im->src;
  size_t have = 0;
  if (at < im->file_size) {
    size_t want = (size_t)MIN((int64_t)n, im->file_size - at);
    ssize_t r = pread_full(s->db_fd, dst, want, (off_t)at);
    if (r < 0) {
      snprintf(im->err, im->errlen, "read: %s", strerror((int)-r));
      return (int)r;
    }
    have = (size_t)r;
  }
  memset(dst + have, 0, n - have);
  int64_t first = at / im->ps + 1, count = (int64_t)n / im->ps;
  int64_t fs = wal_frame_size(im->ps);
  for (int64_t i = 0; i < count; i++) {
    int64_t pgno = first + i;
    uint8_t *page = dst + i * im->ps;
    uint32_t k = pgno < im->nframe ? im->frame[pgno] : 0;
    if (k) {
      int64_t off =
          WAL_HEADER_SIZE + (int64_t)(k - 1) * fs + WAL_FRAME_HEADER_SIZE;
      ssize_t r = pread_full(s->shadow_fd, page, im->ps, (off_t)off);
      if (r != (ssize_t)im->ps) {
        snprintf(im->err, im->errlen, "shadow wal: page %lld unreadable",
                 (long long)pgno);
        return r < 0 ? (int)r : ERR_WAL_CORRUPT;
      }
    } else if ((int64_t)have < (i + 1) * im->ps) {
      /* Neither in the file nor in the WAL: the file is shorter than
       * the last commit says, and no frame holds the page. */
      snprintf(im->err, im->errlen,
               "page %lld of %lld is neither in the database file (%lld "
               "bytes) nor in the shadow wal",
               (long long)pgno, (long long)im->pages, (long long)im->file_size);
      return ERR_CORRUPT;
    }
  }
  if (at == 0) {
    /* The guard: the image's page 1 must describe the image. */
    uint32_t hp = header_pages(dst);
    if (memcmp(dst, SQLITE_HEADER, sizeof(SQLITE_HEADER)) ||
        (hp && hp != im->pages)) {
      snprintf(im->err, im->errlen,
               "the image is not consistent: page 1 says %u pages, the image "
               "has %lld",
               hp, (long long)im->pages);
      return ERR_CORRUPT;
    }
  }
  return 0;
}

int snapshot_write(const struct snapshot_src *src, int out_fd, int64_t *out_len,
                   int64_t *pages, char *err, size_t errlen) {
  struct image im = {.src = src, .err = err, .errlen = errlen};
  err[0] = '\0';
  struct stat sb;
  if (fstat(src->db_fd, &sb)) {
    snprintf(err, errlen, "stat: %s", strerror(errno));
    return -errno;
  }
  im.file_size = sb.st_size;
  int frames = src->shadow_fd >= 0 && src->shadow_size > WAL_HEADER_SIZE;
  im.ps = frames ? src->hdr.page_size : src->page_size;
  int rc = 0;
  if (im.ps < 512 || im.ps > 65536 || (im.ps & (im.ps - 1))) {
    snprintf(err, errlen, "invalid page size %u", im.ps);
    return ERR_CORRUPT;
  }
  if (frames) {
    rc = scan_shadow(&im);
  } else {
    /* Nothing of this lifetime is in the shadow: nothing of it was
     * checkpointed into the file, which then holds one state. */
    uint8_t p1[100];
    ssize_t r = pread_full(src->db_fd, p1, sizeof(p1), 0);
    uint32_t hp = r == (ssize_t)sizeof(p1) ? header_pages(p1) : 0;
    im.pages = hp ? hp : im.file_size / im.ps;
  }
  if (!rc && im.pages <= 0) {
    snprintf(err, errlen, "empty database file");
    rc = ERR_CORRUPT;
  }
  if (!rc)
    rc = lz4_compress_read(fill, &im, im.pages * im.ps, out_fd, out_len);
  if (rc && !err[0])
    snprintf(err, errlen, "%s", err_str(rc));
  if (!rc && pages)
    *pages = im.pages;
  free(im.frame);
  return rc;
}
