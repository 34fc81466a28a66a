/*
 * Object bodies as a replica stores them (spec 1.2): an LZ4 frame, inside
 * an age file when the replica's config has age recipients.  Every object
 * sluice writes or reads goes through here, so replication, resume,
 * restore and validation encrypt and decrypt alike; listings only see
 * names and sizes and need nothing.
 *
 * Reading looks at the first bytes: an object that starts with
 * "age-encryption.org/" is decrypted with the replica's identities
 * (ERR_AGE_NO_IDENTITY without any, ERR_AGE_NO_MATCH when none opens it);
 * anything else is read as a plain LZ4 frame, so a replica whose
 * encryption was turned on (or off) part way still restores.
 *
 * Decryption streams: memory is one 64 KiB age chunk (plus LZ4's block
 * buffer), whatever the object's size.  The functions that do work
 * proportional to the object run on pool threads.
 */
#ifndef SLUICE_CODEC_H
#define SLUICE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"
#include "format/lz4frame.h"

/* 1 if objects written to b are age-encrypted. */
int codec_encrypts(const struct backend *b);

/* 1 for the errors that mean the object itself cannot be read (corrupt
 * LZ4, not age, wrong or missing key, corrupt payload), as opposed to
 * I/O errors; err_str() says which, and never names a key. */
int codec_bad_object(int rc);

/* Pool: appends the stored form of src (LZ4, then age in place) to out. */
int codec_encode(const struct backend *b, const uint8_t *src, size_t n,
                 struct buf *out);
/* Pool: decodes a whole stored object in memory, appending to out. */
int codec_decode(const struct backend *b, const uint8_t *src, size_t n,
                 struct buf *out);

/* Pool: incremental decoding of an object arriving in order (ranged
 * GETs), written to out_fd from out_off; the lz4_dec API plus the age
 * layer.  Returns owned; free with codec_dec_free. */
struct codec_dec;
struct codec_dec *codec_dec_new(const struct backend *b, int out_fd,
                                int64_t out_off);
/* The same, the decoded content given to fn in order (lz4_dec_new_sink). */
struct codec_dec *codec_dec_new_sink(const struct backend *b, lz4_sink_fn fn,
                                     void *arg);
int codec_dec_feed(struct codec_dec *d, const uint8_t *src, size_t n);
int codec_dec_end(struct codec_dec *d, int64_t *out_len);
void codec_dec_free(struct codec_dec *d);

/* Loop: uploads len bytes of fd (an LZ4 file, e.g. a snapshot) as key.
 * When b encrypts, a pool job first encrypts them into an unnamed
 * temporary file in tmpdir (O_TMPFILE), which is uploaded and closed.
 * fd is borrowed and only read.  cb as for backend_put. */
void codec_put_fd(struct backend *b, const char *key, int fd, int64_t len,
                  const char *tmpdir, backend_cb cb, void *arg);

#endif
