/*
 * age v1 (format/age.c) against the C2SP CCTV test vectors copied into
 * tests/fixtures/age-testkit/ (see its NOTES.md), plus bech32, key
 * parsing, streaming and in-place round trips, truncation and tampering.
 *
 * Every x25519_*, stanza_*, hmac_*, header_*, stream_*, version_* and
 * empty case must give its expected result (and, where given, the SHA-256
 * of the plaintext released before the end or the failure), fed whole and
 * in small pieces; decrypting with the given file key must agree; every
 * success case is re-made byte for byte from its file key and nonce.
 *
 * Out of scope, because Litestream 0.3 uses X25519 recipients in binary
 * files only: scrypt_* (passphrases), hybrid_* (post-quantum
 * mlkem768x25519 recipients) and armor_* (ASCII armor).  Each of these
 * must be rejected cleanly: hybrid identities are refused by the key
 * parser with a message naming no key, and the file, tried with the X25519
 * identities given (or an unrelated one), fails with an age error before
 * releasing a single byte.
 */
#include <dirent.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/err.h"
#include "base/util.h"
#include "format/age.h"
#include "t.h"

#define KIT "../../fixtures/age-testkit"
#define ID1                                                                    \
  "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0"
#define RCPT1 "age1xmwwc06ly3ee5rytxm9mflaz2u56jjj36s0mypdrwsvlul66mv4q47ryef"

/* ------------------------------------------------------------------ */
/* Reading one vector                                                  */

struct vec {
  char name[128];
  char expect[32];
  char payload[65]; /* hex SHA-256, or "" */
  char file_key[33];
  char *identities[4];
  int n_identities;
  int armored, compressed, passphrase, unknown_key;
  struct buf age; /* the age file (inflated) */
};

static void vec_destroy(struct vec *v) {
  for (int i = 0; i < v->n_identities; i++)
    free(v->identities[i]);
  buf_destroy(&v->age);
}

static int inflate_all(const uint8_t *p, size_t n, struct buf *out) {
  z_stream z;
  memset(&z, 0, sizeof(z));
  if (inflateInit(&z) != Z_OK)
    return -1;
  z.next_in = (Bytef *)p;
  z.avail_in = (uInt)n;
  int rc;
  do {
    buf_reserve(out, 1 << 16);
    z.next_out = out->data + out->len;
    z.avail_out = 1 << 16;
    rc = inflate(&z, Z_NO_FLUSH);
    out->len = (size_t)(z.next_out - out->data);
  } while (rc == Z_OK);
  inflateEnd(&z);
  return rc == Z_STREAM_END ? 0 : -1;
}

static int vec_load(const char *name, struct vec *v) {
  memset(v, 0, sizeof(*v));
  snprintf(v->name, sizeof(v->name), "%s", name);
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", KIT, name);
  struct buf f;
  buf_init(&f, 0);
  if (file_read_all(path, 16 << 20, &f)) {
    fprintf(stderr, "cannot read %s\n", path);
    return -1;
  }
  size_t pos = 0;
  for (;;) {
    uint8_t *nl = memchr(f.data + pos, '\n', f.len - pos);
    if (!nl)
      return -1;
    size_t len = (size_t)(nl - (f.data + pos));
    char line[512];
    snprintf(line, sizeof(line), "%.*s", (int)len, (char *)f.data + pos);
    pos += len + 1;
    if (!len)
      break;
    char *colon = strstr(line, ": ");
    if (!colon)
      return -1;
    *colon = 0;
    const char *val = colon + 2;
    if (!strcmp(line, "expect"))
      snprintf(v->expect, sizeof(v->expect), "%s", val);
    else if (!strcmp(line, "payload"))
      snprintf(v->payload, sizeof(v->payload), "%s", val);
    else if (!strcmp(line, "file key"))
      snprintf(v->file_key, sizeof(v->file_key), "%s", val);
    else if (!strcmp(line, "identity") && v->n_identities < 4)
      v->identities[v->n_identities++] = xstrdup(val);
    else if (!strcmp(line, "passphrase"))
      v->passphrase = 1;
    else if (!strcmp(line, "armored"))
      v->armored = !strcmp(val, "yes");
    else if (!strcmp(line, "compressed"))
      v->compressed = !strcmp(val, "zlib");
    else if (strcmp(line, "comment"))
      v->unknown_key = 1;
  }
  buf_init(&v->age, 0);
  int rc = 0;
  if (v->compressed)
    rc = inflate_all(f.data + pos, f.len - pos, &v->age);
  else
    rc = buf_append(&v->age, f.data + pos, f.len - pos);
  buf_destroy(&f);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Decrypting, with the released plaintext hashed and kept             */

struct sink {
  EVP_MD_CTX *md;
  struct buf plain;
  size_t released;
};

static int sink_out(void *arg, const uint8_t *p, size_t n) {
  struct sink *s = arg;
  EVP_DigestUpdate(s->md, p, n);
  s->released += n;
  return buf_append(&s->plain, p, n);
}

static void sink_init(struct sink *s) {
  memset(s, 0, sizeof(*s));
  s->md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(s->md, EVP_sha256(), NULL);
  buf_init(&s->plain, 0);
}

static void sink_hex(struct sink *s, char hex[65]) {
  uint8_t h[32];
  unsigned n = 32;
  EVP_DigestFinal_ex(s->md, h, &n);
  for (int i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", h[i]);
}

static void sink_destroy(struct sink *s) {
  EVP_MD_CTX_free(s->md);
  buf_destroy(&s->plain);
}

/* Feeds the file in pieces of `step` bytes (0: whole). */
static int run_dec(struct age_dec *d, const struct buf *in, size_t step) {
  int rc = 0;
  if (!step)
    step = in->len ? in->len : 1;
  for (size_t off = 0; !rc && off < in->len; off += step)
    rc = age_dec_feed(d, in->data + off, MIN(step, in->len - off));
  if (!rc)
    rc = age_dec_end(d);
  age_dec_free(d);
  return rc;
}

static const char *outcome(int rc) {
  switch (rc) {
  case 0:
    return "success";
  case ERR_AGE_NO_MATCH:
    return "no match";
  case ERR_AGE_HMAC:
    return "HMAC failure";
  case ERR_AGE_HEADER:
    return "header failure";
  case ERR_AGE_PAYLOAD:
    return "payload failure";
  default:
    return err_str(rc);
  }
}

static void hex_decode(const char *hex, uint8_t *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned x;
    sscanf(hex + 2 * i, "%2x", &x);
    out[i] = (uint8_t)x;
  }
}

/* ------------------------------------------------------------------ */
/* The vectors                                                         */

static int starts(const char *s, const char *p) {
  return !strncmp(s, p, strlen(p));
}

static int out_of_scope(const struct vec *v) {
  return starts(v->name, "armor_") || starts(v->name, "scrypt") ||
         starts(v->name, "hybrid") || v->armored;
}

static int collect(void *arg, const uint8_t *p, size_t n) {
  return buf_append(arg, p, n);
}

/* A success case made again from its file key and nonce must be the same
 * bytes: header (stanzas, line wrapping, MAC) and STREAM. */
static void check_remake(const struct vec *v, const struct buf *plain) {
  const uint8_t *p = v->age.data;
  const uint8_t *mac = NULL;
  for (size_t i = 0; i + 4 < v->age.len; i++)
    if ((i == 0 || p[i - 1] == '\n') && !memcmp(p + i, "--- ", 4)) {
      mac = p + i;
      break;
    }
  CHECK(mac != NULL);
  if (!mac)
    return;
  const uint8_t *nl = memchr(mac, '\n', v->age.len - (size_t)(mac - p));
  size_t hlen = (size_t)(nl - p) + 1;
  struct age_header h;
  CHECK_INT(age_header_parse(p, hlen, &h), 0);
  uint8_t fk[16];
  hex_decode(v->file_key, fk, 16);
  struct buf out;
  buf_init(&out, 0);
  CHECK_INT(age_header_format(&h, fk, &out), 0);
  CHECK(out.len == hlen && !memcmp(out.data, p, hlen));
  buf_reset(&out);
  struct age_enc *e = NULL;
  CHECK_INT(age_enc_new_raw(fk, p + hlen, &h, collect, &out, &e), 0);
  if (e) {
    CHECK_INT(age_enc_write(e, plain->data, plain->len), 0);
    CHECK_INT(age_enc_end(e), 0);
    age_enc_free(e);
  }
  if (out.len != v->age.len || memcmp(out.data, v->age.data, out.len)) {
    fprintf(stderr, "%s: re-encryption differs (%zu vs %zu bytes)\n", v->name,
            out.len, v->age.len);
    CHECK(0);
  }
  buf_destroy(&out);
  age_header_destroy(&h);
}

static int parse_ids(const struct vec *v, struct age_keys *k) {
  for (int i = 0; i < v->n_identities; i++) {
    char err[256] = "";
    int rc = age_keys_add_identities(k, v->identities[i], err, sizeof(err));
    if (rc) {
      /* Never the key in a message. */
      const char *id = v->identities[i];
      CHECK(strstr(err, id + strlen(id) - 24) == NULL);
      if (!starts(v->identities[i], "AGE-SECRET-KEY-PQ-")) {
        fprintf(stderr, "%s: identity refused: %s\n", v->name, err);
        return -1;
      }
    }
  }
  return 0;
}

static int n_pass, n_oos, n_skipped;

static void check_in_scope(struct vec *v) {
  struct age_keys k = {0};
  CHECK_INT(parse_ids(v, &k), 0);
  static const size_t steps[] = {0, 1, 7, 4096, 65552};
  int ok = 1;
  struct buf plain;
  buf_init(&plain, 0);
  for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
    if (steps[i] == 1 && v->age.len > (256 << 10))
      continue; /* byte by byte only for the small files (time) */
    struct sink s;
    sink_init(&s);
    int rc = run_dec(age_dec_new(&k, sink_out, &s), &v->age, steps[i]);
    char hex[65];
    sink_hex(&s, hex);
    if (strcmp(outcome(rc), v->expect)) {
      fprintf(stderr, "%s (pieces of %zu): expected %s, got %s\n", v->name,
              steps[i], v->expect, outcome(rc));
      ok = 0;
    } else if (v->payload[0] && strcmp(hex, v->payload)) {
      fprintf(stderr, "%s (pieces of %zu): released plaintext %s, want %s\n",
              v->name, steps[i], hex, v->payload);
      ok = 0;
    } else if (!v->payload[0] && s.released) {
      fprintf(stderr, "%s: released %zu bytes on %s\n", v->name, s.released,
              v->expect);
      ok = 0;
    }
    if (i == 0) {
      buf_append(&plain, s.plain.data, s.plain.len);
    }
    sink_destroy(&s);
  }
  /* The file key alone gives the same payload (no stanza opened). */
  if (v->file_key[0] &&
      (!strcmp(v->expect, "success") || !strcmp(v->expect, "payload failure") ||
       !strcmp(v->expect, "HMAC failure"))) {
    uint8_t fk[16];
    hex_decode(v->file_key, fk, 16);
    struct sink s;
    sink_init(&s);
    int rc = run_dec(age_dec_new_key(fk, sink_out, &s), &v->age, 0);
    char hex[65];
    sink_hex(&s, hex);
    if (strcmp(outcome(rc), v->expect) ||
        (v->payload[0] && strcmp(hex, v->payload))) {
      fprintf(stderr, "%s: with the file key: got %s\n", v->name, outcome(rc));
      ok = 0;
    }
    sink_destroy(&s);
  }
  if (ok && !strcmp(v->expect, "success"))
    check_remake(v, &plain);
  buf_destroy(&plain);
  CHECK(ok);
  n_pass += ok;
  age_keys_destroy(&k);
}

static void check_out_of_scope(struct vec *v) {
  struct age_keys k = {0};
  CHECK_INT(parse_ids(v, &k), 0);
  for (int i = 0; i < v->n_identities; i++)
    if (starts(v->identities[i], "AGE-SECRET-KEY-PQ-")) {
      struct age_keys one = {0};
      char err[256];
      CHECK_INT(
          age_keys_add_identities(&one, v->identities[i], err, sizeof(err)),
          ERR_AGE_KEY);
      CHECK(strstr(err, "unsupported identity type") != NULL);
    }
  if (!k.n_identities) {
    char err[256];
    CHECK_INT(age_keys_add_identities(&k, ID1, err, sizeof(err)), 0);
  }
  struct sink s;
  sink_init(&s);
  int rc = run_dec(age_dec_new(&k, sink_out, &s), &v->age, 0);
  int clean =
      rc == ERR_AGE_HEADER || rc == ERR_AGE_NO_MATCH || rc == ERR_AGE_HMAC;
  /* With an X25519 identity, a failure outside armor is ours to get
   * exactly (scrypt_and_x25519, hybrid_x25519_arg). */
  int has_x25519 = 0;
  for (int i = 0; i < v->n_identities; i++)
    has_x25519 |= starts(v->identities[i], "AGE-SECRET-KEY-1");
  if (has_x25519 && !v->armored && !starts(v->name, "armor_") &&
      strcmp(v->expect, "success") && strcmp(outcome(rc), v->expect)) {
    fprintf(stderr, "%s: expected %s, got %s\n", v->name, v->expect,
            outcome(rc));
    CHECK(0);
  }
  if (!clean || s.released) {
    fprintf(stderr,
            "%s: out of scope, expected a clean rejection, got %s "
            "after %zu bytes\n",
            v->name, outcome(rc), s.released);
    CHECK(0);
  }
  sink_destroy(&s);
  age_keys_destroy(&k);
  n_oos++;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

TEST(testkit) {
  DIR *dir = opendir(KIT);
  CHECK(dir != NULL);
  if (!dir)
    return;
  char **names = NULL;
  size_t n = 0;
  for (struct dirent *e; (e = readdir(dir));) {
    if (e->d_name[0] == '.' || !strcmp(e->d_name, "NOTES.md"))
      continue;
    names = xrealloc(names, (n + 1) * sizeof(*names));
    names[n++] = xstrdup(e->d_name);
  }
  closedir(dir);
  qsort(names, n, sizeof(*names), cmp_name);
  int in_scope = 0;
  for (size_t i = 0; i < n; i++) {
    struct vec v;
    int rc = vec_load(names[i], &v);
    CHECK_INT(rc, 0);
    if (!rc && v.unknown_key) {
      fprintf(stderr, "%s: unknown key, skipped\n", names[i]);
      n_skipped++;
    } else if (!rc && out_of_scope(&v)) {
      check_out_of_scope(&v);
    } else if (!rc) {
      in_scope++;
      check_in_scope(&v);
    }
    vec_destroy(&v);
    free(names[i]);
  }
  free(names);
  printf("testkit: %d of %d in-scope vectors pass; %d out of scope "
         "(scrypt, hybrid, armor) rejected cleanly; %d skipped\n",
         n_pass, in_scope, n_oos, n_skipped);
  CHECK_INT(n_pass, in_scope);
  CHECK(in_scope >= 60); /* the folder was really read */
  CHECK_INT(n_skipped, 0);
}

/* ------------------------------------------------------------------ */
/* Keys and bech32                                                     */

TEST(bech32_vectors) {
  /* BIP 173's valid strings. */
  static const char *valid[] = {
      "A12UEL5L",
      "a12uel5l",
      "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedch"
      "aractersbio1tt5tgs",
      "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
      "11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"
      "qqqqqqqqqqqqc8247j",
      "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w"};
  for (size_t i = 0; i < ARRAY_SIZE(valid); i++) {
    char hrp[100], again[200];
    uint8_t data[100];
    size_t n = 0;
    CHECK_INT(bech32_decode(valid[i], hrp, sizeof(hrp), data, sizeof(data), &n),
              0);
    CHECK_INT(bech32_encode(hrp, data, n, again, sizeof(again)), 0);
    CHECK_STR(again, valid[i]);
  }
  char hrp[16];
  uint8_t data[64];
  size_t n;
  CHECK_INT(bech32_decode("A12UEL5L", hrp, sizeof(hrp), data, sizeof(data), &n),
            0);
  CHECK_STR(hrp, "A");
  CHECK_INT(n, 0);
  /* Invalid: mixed case, bad checksum, no separator, empty hrp, bad
   * character, too short a checksum. */
  static const char *invalid[] = {
      "A12uEL5L", "a12uel5m", "pzry9x0s0muk", "1pzry9x0s0muk", "x1b4n0q5v",
      "li1dgmt3", "a1"};
  for (size_t i = 0; i < ARRAY_SIZE(invalid); i++)
    CHECK_INT(
        bech32_decode(invalid[i], hrp, sizeof(hrp), data, sizeof(data), &n),
        ERR_AGE_KEY);
}

TEST(keys) {
  struct age_keys k = {0};
  char err[256] = "";
  CHECK_INT(age_keys_add_identities(&k, ID1, err, sizeof(err)), 0);
  CHECK_INT(k.n_identities, 1);
  char r[AGE_KEY_TEXT_MAX];
  CHECK_INT(age_recipient_string(k.identities[0].pub, r, sizeof(r)), 0);
  CHECK_STR(r, RCPT1); /* as `age-keygen -y` prints it */
  CHECK_INT(age_keys_add_recipients(&k, RCPT1, err, sizeof(err)), 0);
  CHECK(!memcmp(k.recipients[0], k.identities[0].pub, 32));
  char id_text[512];
  snprintf(id_text, sizeof(id_text), "%s", ID1);
  /* A key file, as age-keygen writes it (comments, CRLF, blank lines). */
  char file[1024];
  snprintf(
      file, sizeof(file),
      "# created: 2026-01-01T00:00:00Z\r\n# public key: %s\r\n%s\r\n\n%s\n",
      RCPT1, ID1, ID1);
  CHECK_INT(age_keys_add_identities(&k, file, err, sizeof(err)), 0);
  CHECK_INT(k.n_identities, 3);
  /* Failures name the line, never the key, and add nothing. */
  struct {
    const char *text;
    const char *msg;
  } bad[] = {
      {"", "no secret keys found"},
      {"# only a comment\n", "no secret keys found"},
      {"AGE-SECRET-KEY-"
       "1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM1",
       "line 1: malformed secret key"},
      {"age-secret-key-"
       "1egtzvffv20835nwyv6270lxyvk2vknx2mmdkwyklmgr48uawx40q2p2lm0",
       "line 1: unsupported identity type"},
      {"# "
       "x\nAGE-SECRET-KEY-"
       "1EGTZVFFV20835NWYV6270lxyvk2vknx2mmdkwyklmgr48uawx40q2p2lm0",
       "line 2: malformed secret key"},
      {" AGE-SECRET-KEY-"
       "1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0",
       "line 1: malformed secret key"},
      {RCPT1, "line 1: this is a recipient (public key"},
  };
  for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
    err[0] = 0;
    CHECK_INT(age_keys_add_identities(&k, bad[i].text, err, sizeof(err)),
              ERR_AGE_KEY);
    if (!strstr(err, bad[i].msg)) {
      fprintf(stderr, "case %zu: got \"%s\", want \"%s\"\n", i, err,
              bad[i].msg);
      CHECK(0);
    }
    CHECK(strstr(err, "EGTZVFFV") == NULL && strstr(err, "egtzvffv") == NULL);
    CHECK(strstr(err, "xmwwc06") == NULL);
  }
  CHECK_INT(k.n_identities, 3);
  CHECK_INT(age_keys_add_recipients(&k,
                                    "age1xmwwc06ly3ee5rytxm9mflaz2u56jjj36s0"
                                    "mypdrwsvlul66mv4q47ryeg",
                                    err, sizeof(err)),
            ERR_AGE_KEY);
  CHECK(strstr(err, "line 1: malformed recipient") != NULL);
  CHECK_INT(age_keys_add_recipients(&k, ID1, err, sizeof(err)), ERR_AGE_KEY);
  CHECK(strstr(err, "this is a secret key") != NULL);
  CHECK(strstr(err, "EGTZVFFV") == NULL);
  CHECK_INT(age_keys_add_recipients(&k, "\n\n", err, sizeof(err)), ERR_AGE_KEY);
  CHECK_STR(err, "no recipients found");
  CHECK_INT(k.n_recipients, 1);
  age_keys_destroy(&k);
  CHECK_INT(k.n_identities, 0);
}

/* ------------------------------------------------------------------ */
/* Round trips                                                         */

static uint8_t *noise(size_t n) {
  uint8_t *p = xmalloc(n ? n : 1);
  RAND_bytes(p, (int)(n ? n : 1));
  return p;
}

/* Two fresh key pairs: k0 encrypts to both, k1 holds only the second. */
static void two_pairs(struct age_keys *both, struct age_keys *second,
                      struct age_keys *stranger) {
  char err[128];
  for (int i = 0; i < 3; i++) {
    uint8_t sk[32];
    char text[128];
    RAND_bytes(sk, 32);
    bech32_encode("AGE-SECRET-KEY-", sk, 32, text, sizeof(text));
    struct age_keys *k = i == 0 ? both : i == 1 ? second : stranger;
    CHECK_INT(age_keys_add_identities(k, text, err, sizeof(err)), 0);
    if (i < 2) {
      char r[AGE_KEY_TEXT_MAX];
      age_recipient_string(k->identities[k->n_identities - 1].pub, r,
                           sizeof(r));
      CHECK_INT(age_keys_add_recipients(both, r, err, sizeof(err)), 0);
    }
  }
}

TEST(round_trips) {
  struct age_keys both = {0}, second = {0}, stranger = {0};
  two_pairs(&both, &second, &stranger);
  CHECK_INT(both.n_recipients, 2);
  size_t sizes[] = {0, 1, 65535, 65536, 65537, 131072, 131073, (1 << 20) + 3};
  for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
    size_t n = sizes[i];
    uint8_t *p = noise(n);
    /* Streaming, written in odd pieces. */
    struct buf enc;
    buf_init(&enc, 0);
    struct age_enc *e;
    CHECK_INT(age_enc_new(&both, collect, &enc, &e), 0);
    for (size_t off = 0; off < n; off += 10007)
      CHECK_INT(age_enc_write(e, p + off, MIN(10007, n - off)), 0);
    CHECK_INT(age_enc_end(e), 0);
    age_enc_free(e);
    /* In place, after a prefix that must stay untouched. */
    struct buf ip;
    buf_init(&ip, 0);
    buf_append(&ip, "prefix", 6);
    buf_append(&ip, p, n);
    CHECK_INT(age_encrypt_inplace(&both, &ip, 6), 0);
    CHECK(!memcmp(ip.data, "prefix", 6));
    CHECK_INT(ip.len - 6, enc.len); /* same header shape, same size */
    struct buf ipf;
    buf_init(&ipf, 0);
    buf_append(&ipf, ip.data + 6, ip.len - 6);
    const struct buf *files[] = {&enc, &ipf};
    for (int f = 0; f < 2; f++) {
      struct buf out;
      buf_init(&out, 0);
      CHECK_INT(run_dec(age_dec_new(&second, collect, &out), files[f], 3001),
                0);
      CHECK(out.len == n && !memcmp(out.data, p, n));
      buf_reset(&out);
      CHECK_INT(run_dec(age_dec_new(&both, collect, &out), files[f], 0), 0);
      CHECK(out.len == n);
      buf_reset(&out);
      CHECK_INT(run_dec(age_dec_new(&stranger, collect, &out), files[f], 0),
                ERR_AGE_NO_MATCH);
      CHECK_INT(out.len, 0);
      buf_destroy(&out);
    }
    buf_destroy(&enc);
    buf_destroy(&ip);
    buf_destroy(&ipf);
    free(p);
  }
  age_keys_destroy(&both);
  age_keys_destroy(&second);
  age_keys_destroy(&stranger);
}

/* Every truncation fails (never a short success), and so does every
 * flipped byte outside the header's free text. */
TEST(truncation_and_tampering) {
  struct age_keys both = {0}, second = {0}, stranger = {0};
  two_pairs(&both, &second, &stranger);
  size_t n = 2 * AGE_CHUNK + 100;
  uint8_t *p = noise(n);
  struct buf enc;
  buf_init(&enc, 0);
  struct age_enc *e;
  CHECK_INT(age_enc_new(&both, collect, &enc, &e), 0);
  CHECK_INT(age_enc_write(e, p, n), 0);
  CHECK_INT(age_enc_end(e), 0);
  age_enc_free(e);
  int bad = 0;
  for (size_t cut = 0; cut < enc.len; cut += cut < 400 ? 1 : 997) {
    struct buf t = {enc.data, cut, cut, 0}, out;
    buf_init(&out, 0);
    int rc = run_dec(age_dec_new(&second, collect, &out), &t, 0);
    bad += rc == 0;
    buf_destroy(&out);
  }
  CHECK_INT(bad, 0);
  bad = 0;
  for (size_t at = 0; at < enc.len; at += at < 400 ? 1 : 4099) {
    enc.data[at] ^= 0x20;
    struct buf out;
    buf_init(&out, 0);
    int rc = run_dec(age_dec_new(&second, collect, &out), &enc, 0);
    bad += rc == 0;
    enc.data[at] ^= 0x20;
    buf_destroy(&out);
  }
  CHECK_INT(bad, 0);
  /* Something that is not age at all fails at once, not after 256 KiB. */
  struct buf lz4 = {(uint8_t *)"\x04\x22\x4d\x18\x64\x70\xb9", 7, 7, 0}, out;
  buf_init(&out, 0);
  struct age_dec *d = age_dec_new(&second, collect, &out);
  CHECK_INT(age_dec_feed(d, lz4.data, lz4.len), ERR_AGE_HEADER);
  age_dec_free(d);
  buf_destroy(&out);
  buf_destroy(&enc);
  free(p);
  age_keys_destroy(&both);
  age_keys_destroy(&second);
  age_keys_destroy(&stranger);
}

int main(void) {
  RUN(testkit);
  RUN(bech32_vectors);
  RUN(keys);
  RUN(round_trips);
  RUN(truncation_and_tampering);
  T_DONE();
}
