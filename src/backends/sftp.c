/*
 * The SFTP backend (spec 8.4): a replica in a directory on an SSH server,
 * through libssh2 in non-blocking mode on the event loop.
 *
 * One SSH connection per replica, opened on first use and reused by every
 * operation; operations queue FIFO and run one at a time on it.  The
 * session's socket is watched by the loop (loop_poll) in the directions
 * libssh2 says it is blocked on, exactly as curl's sockets are in http.c;
 * a watchdog timer ends an attempt that makes no progress for IO_TIMEOUT.
 *
 * Connecting: the host name is resolved on the thread pool, the TCP connect
 * is non-blocking, then the SSH handshake, the host-key check, the user
 * authentication (public key from `key-path`, then `password`) and the
 * SFTP subsystem.  The host key must be known: it is looked up in
 * `host-key-path` (a known_hosts file, or a file holding the server's public
 * key line, as `ssh-keyscan` or /etc/ssh/ssh_host_*_key.pub give it) or else
 * in ~/.ssh/known_hosts; an unknown or changed key is refused with an error
 * naming the host and the key's SHA256 fingerprint.  (Litestream 0.3 does
 * not check host keys at all.)
 *
 * A lost connection (reset, EOF, timeout) fails the attempt; the operation
 * is retried from its start on a new connection after a backoff (250 ms
 * doubling, at most MAX_ATTEMPTS attempts), then reported.  Errors the
 * server answers with (permission denied, disk full) are reported at once,
 * and the connection stays up.  Authentication and host-key failures fail
 * every queued operation at once: retrying cannot fix them.
 *
 *  put   writes <final>.tmp (parent directories created on demand, 0700;
 *        files 0600), fsyncs it on the server (fsync@openssh.com, when
 *        offered), closes it and renames it over the final name.  OpenSSH
 *        refuses to rename over an existing file, so an overwrite (a
 *        snapshot taken again at the same index) removes the old file
 *        first.  A failed put removes its temporary file; when the server
 *        says "failure", statvfs@openssh.com tells whether its disk is full.
 *  get   reads [off, off+len) into memory or an fd; a missing file is
 *        ERR_NOT_FOUND.
 *  list  the file backend's semantics (S3's, on directories): every
 *        regular file below the prefix, or with a delimiter the files and
 *        the directories holding at least one file; *.tmp is skipped.
 *  del   removes files (missing ones are fine), then the directories left
 *        empty, up to generations/.
 *  get_tag, put_cond (the lease's lock.json): atomic, as a directory of
 *        immutable versions lock.json.d/<seq> created by rename, which
 *        SFTP v3 refuses onto an existing name ("conditional writes"
 *        below).  A server whose rename replaces files breaks the
 *        protocol and this guarantee.
 *
 * The password is kept in memory only for the authentication call; it is
 * never logged nor put in a message.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/base64.h"
#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "loop/loop.h"

#define CHUNK (4u << 20) /* bytes per sftp_write/sftp_read call */
#define CONNECT_TIMEOUT_MS 10000
#define IO_TIMEOUT_MS 30000 /* no progress for this long: connection lost */
#define IDLE_RECONNECT_MS (5 * 60 * 1000) /* idle longer: connect anew */
#define MAX_ATTEMPTS 5
#define BACKOFF_BASE_MS 250
#define BACKOFF_MAX_MS 4000
#define FILE_MODE 0600
#define DIR_MODE 0700

enum conn_state {
  C_DOWN,      /* no connection */
  C_BACKOFF,   /* waiting before the next connect */
  C_RESOLVING, /* getaddrinfo on the pool */
  C_CONNECTING,
  C_HANDSHAKE,
  C_HOSTKEY,
  C_AUTH_LIST,
  C_AUTH_KEY,
  C_AUTH_PASSWORD,
  C_SFTP_INIT,
  C_READY,
};

enum sop_kind { S_PUT, S_GET, S_LIST, S_DEL, S_GET_TAG, S_PUT_COND };

/* A directory the lister still has to read. */
struct dir_item {
  char *key;   /* key of the directory, "" or ending in '/' */
  char *owner; /* probing: the common prefix this directory may prove */
};

struct sop {
  struct sop *next;
  enum sop_kind kind;
  char *key;  /* put/get: the key; list: the prefix */
  char *path; /* put/get: remote path */
  char *tmp;  /* put: remote temporary path */
  struct payload payload;
  int64_t off, len;
  struct sink sink;
  size_t sink_base; /* buf sink length at submit (a retry truncates back) */
  int delimiter;
  struct obj_list *out;
  struct obj_list list;
  char **keys;
  size_t n_keys;
  backend_cb cb;
  void *arg;
  int attempts;
  int started; /* op_step ran at least once */

  /* progress of the current attempt */
  int phase;
  LIBSSH2_SFTP_HANDLE *h;
  int64_t done;   /* payload bytes written / object bytes read */
  uint8_t *chunk; /* put from fd, get to fd */
  size_t chunk_len, chunk_done;
  int mkdirs;       /* put: parent directories created once */
  size_t mkdir_at;  /* put: next '/' of tmp to mkdir up to */
  int overwrite;    /* put: old file removed once */
  int fail_code;    /* put: failure being cleaned up after */
  int fail_statvfs; /* put: the server said "failure": disk full? */
  char fail_what[160];
  size_t key_i;          /* del: next key */
  char *prune;           /* del: directory to remove if empty */
  struct dir_item *dirs; /* list: stack of directories to read */
  size_t n_dirs;
  struct dir_item cur; /* list: the directory being read */
  /* get_tag, put_cond (the lease): see "conditional writes" */
  char *dir;        /* <key>.d */
  char *tag;        /* the caller's BACKEND_TAG_MAX buffer */
  uint64_t seq;     /* put_cond: the version written */
  uint64_t max_seq; /* the highest version listed */
  uint64_t gc[64];  /* put_cond: versions to remove (COND_GC_MAX) */
  size_t n_gc, gc_i;
  int rescans;      /* get_tag: listed again */
  struct buf check; /* put_cond: the version found at our target */

  int status;
  char err[768];
};

struct sftp_priv {
  struct backend *b;
  char *host;     /* as written, without the port */
  char *hostport; /* host:port for messages */
  int port;
  char *user;
  char *password;
  char *key_path;
  struct buf key; /* the private key file */
  char *root;     /* remote directory, no trailing '/' */
  char *hostkeys; /* host-key-path, or ~/.ssh/known_hosts */
  int hostkeys_explicit;

  enum conn_state st;
  int fd;
  LIBSSH2_SESSION *sess;
  LIBSSH2_SFTP *sftp;
  struct loop_poll *poll;
  struct loop_timer *kick;     /* drive soon / after a backoff */
  struct loop_timer *watchdog; /* no progress: connection lost */
  struct addrinfo *ai;         /* resolved addresses */
  struct addrinfo *ai_next;    /* the next one to try */
  int resolving;               /* a pool job holds this struct */
  int closed;                  /* close() ran while resolving: free on done */
  int backoff_ms;
  int driving, redrive;
  uint64_t idle_since_ms; /* when the last operation ended */
  char *auth_methods;
  char *hostkey_types; /* asked for in the handshake, from hostkeys */
  char conn_err[512];  /* why the last connection attempt failed */
  struct sop *head, *tail;
};

static int g_libssh2_ready;

static void drive(struct sftp_priv *s);
static void conn_teardown(struct sftp_priv *s);

/* --- operations: queue and completion --- */

static void sop_free(struct sop *o) {
  free(o->key);
  free(o->path);
  free(o->tmp);
  free(o->chunk);
  obj_list_destroy(&o->list);
  for (size_t i = 0; i < o->n_keys; i++)
    free(o->keys[i]);
  free(o->keys);
  free(o->prune);
  for (size_t i = 0; i < o->n_dirs; i++) {
    free(o->dirs[i].key);
    free(o->dirs[i].owner);
  }
  free(o->dirs);
  free(o->cur.key);
  free(o->cur.owner);
  free(o->dir);
  buf_destroy(&o->check);
  free(o);
}

static const char *op_name(enum sop_kind k) {
  static const char *const names[] = {"put",    "get",  "list",
                                      "delete", "read", "conditional put"};
  return names[k];
}

static void sop_fail(struct sftp_priv *s, struct sop *o, int code,
                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Records the operation's error: "sftp: OP sftp://user@host/path: cause". */
static void sop_fail(struct sftp_priv *s, struct sop *o, int code,
                     const char *fmt, ...) {
  char cause[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cause, sizeof(cause), fmt, ap);
  va_end(ap);
  const char *what = o->kind == S_DEL && o->key_i < o->n_keys
                         ? o->keys[o->key_i]
                     : o->key ? o->key
                              : "";
  o->status = code ? code : -EIO;
  const char *d = s->b->desc;
  snprintf(o->err, sizeof(o->err), "sftp: %s %s%s%s: %s", op_name(o->kind), d,
           *d && d[strlen(d) - 1] == '/' ? "" : "/", what, cause);
}

/* Removes the head operation and calls its callback. */
static void sop_finish(struct sftp_priv *s, struct sop *o) {
  if (s->head == o) {
    s->head = o->next;
    if (!s->head)
      s->tail = NULL;
  }
  if (!o->status && o->kind == S_LIST) {
    struct obj_list *dst = o->out;
    obj_list_sort(&o->list);
    if (!dst->n && !dst->n_prefixes) {
      obj_list_destroy(dst);
      *dst = o->list;
      memset(&o->list, 0, sizeof(o->list));
    } else {
      for (size_t i = 0; i < o->list.n; i++)
        obj_list_add(dst, o->list.objs[i].key, o->list.objs[i].size,
                     o->list.objs[i].mtime_ns);
      for (size_t i = 0; i < o->list.n_prefixes; i++)
        obj_list_add_prefix(dst, o->list.prefixes[i]);
      obj_list_sort(dst);
    }
  }
  o->cb(o->arg, o->status, o->status ? o->err : NULL);
  sop_free(o);
}

/* Resets the operation's progress so that it starts over (a retry on a
 * new connection: handles died with the old one). */
static void sop_reset(struct sop *o) {
  o->phase = 0;
  o->h = NULL;
  o->done = 0;
  o->chunk_len = o->chunk_done = 0;
  o->mkdirs = 0;
  o->mkdir_at = 0;
  o->overwrite = 0;
  o->fail_code = 0;
  o->fail_statvfs = 0;
  o->key_i = 0;
  free(o->prune);
  o->prune = NULL;
  obj_list_destroy(&o->list);
  for (size_t i = 0; i < o->n_dirs; i++) {
    free(o->dirs[i].key);
    free(o->dirs[i].owner);
  }
  o->n_dirs = 0;
  free(o->cur.key);
  free(o->cur.owner);
  o->cur.key = o->cur.owner = NULL;
  if (o->kind == S_GET && o->sink.buf)
    o->sink.buf->len = o->sink_base;
}

static void enqueue(struct backend *b, struct sop *o) {
  struct sftp_priv *s = b->priv;
  if (s->tail)
    s->tail->next = o;
  else
    s->head = o;
  s->tail = o;
  /* Later, never inside the caller: callbacks must not run re-entrantly. */
  if (!loop_timer_active(s->kick) && s->st != C_BACKOFF)
    loop_timer_start(s->kick, 0);
}

/* --- libssh2 errors --- */

static const char *ssh_errmsg(struct sftp_priv *s) {
  char *msg = NULL;
  if (!s->sess)
    return "no session";
  libssh2_session_last_error(s->sess, &msg, NULL, 0);
  return msg && *msg ? msg : "unknown SSH error";
}

static const char *fx_name(unsigned long fx) {
  switch (fx) {
  case LIBSSH2_FX_EOF:
    return "end of file";
  case LIBSSH2_FX_NO_SUCH_FILE:
    return "no such file";
  case LIBSSH2_FX_PERMISSION_DENIED:
    return "permission denied";
  case LIBSSH2_FX_FAILURE:
    return "failure";
  case LIBSSH2_FX_BAD_MESSAGE:
    return "bad message";
  case LIBSSH2_FX_OP_UNSUPPORTED:
    return "operation unsupported";
  case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM:
    return "no space left on the server's disk";
  case LIBSSH2_FX_QUOTA_EXCEEDED:
    return "quota exceeded";
  case LIBSSH2_FX_FILE_ALREADY_EXISTS:
    return "file already exists";
  case LIBSSH2_FX_NO_SUCH_PATH:
    return "no such path";
  case LIBSSH2_FX_WRITE_PROTECT:
    return "write protected";
  default:
    return "SFTP error";
  }
}

static int fx_code(unsigned long fx) {
  switch (fx) {
  case LIBSSH2_FX_NO_SUCH_FILE:
  case LIBSSH2_FX_NO_SUCH_PATH:
    return ERR_NOT_FOUND;
  case LIBSSH2_FX_PERMISSION_DENIED:
  case LIBSSH2_FX_WRITE_PROTECT:
    return -EACCES;
  case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM:
  case LIBSSH2_FX_QUOTA_EXCEEDED:
    return -ENOSPC;
  case LIBSSH2_FX_FILE_ALREADY_EXISTS:
    return -EEXIST;
  default:
    return -EIO;
  }
}

/* What an operation step returns: done (the operation finished, maybe
 * with o->status set), again (waiting for the socket) or a connection
 * error (a negative libssh2 code other than an SFTP status). */
enum { STEP_DONE = 0, STEP_AGAIN = 1, STEP_NEXT = 2 };
#define PHASE_FAILED (-1)

/* Classifies a libssh2 result rc < 0 of an SFTP call: EAGAIN, an SFTP
 * status (*fx set, returns 0), or a connection error (returned). */
static int sftp_rc(struct sftp_priv *s, int rc, unsigned long *fx) {
  if (rc == LIBSSH2_ERROR_EAGAIN)
    return LIBSSH2_ERROR_EAGAIN;
  if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL) {
    *fx = libssh2_sftp_last_error(s->sftp);
    return 0;
  }
  return rc;
}

/* The result of a call that returns a handle (NULL on failure). */
static int handle_rc(struct sftp_priv *s, LIBSSH2_SFTP_HANDLE *h,
                     unsigned long *fx) {
  if (h)
    return 1;
  return sftp_rc(s, libssh2_session_last_errno(s->sess), fx);
}

/* --- put --- */

enum {
  P_OPEN,
  P_MKDIR,
  P_WRITE,
  P_FSYNC,
  P_CLOSE,
  P_RENAME,
  P_STAT_OLD,
  P_UNLINK_OLD,
  P_FAIL_CLOSE,
  P_FAIL_STATVFS,
  P_FAIL_UNLINK,
};

/* Starts the failure path of a put: close the handle, look at free space
 * when the server only said "failure", remove the temporary file. */
static void put_failing(struct sop *o, int code, const char *what,
                        unsigned long fx) {
  o->fail_code = code;
  o->fail_statvfs = fx == LIBSSH2_FX_FAILURE;
  if (fx)
    snprintf(o->fail_what, sizeof(o->fail_what), "%s: %s", what, fx_name(fx));
  else
    snprintf(o->fail_what, sizeof(o->fail_what), "%s", what);
  o->phase = o->h              ? P_FAIL_CLOSE
             : o->fail_statvfs ? P_FAIL_STATVFS
                               : P_FAIL_UNLINK;
}

/* Fills o->chunk from the payload when it is drained.  Returns 0, or
 * -errno when the local file cannot be read. */
static int put_fill(struct sop *o, const uint8_t **data, size_t *n) {
  const struct payload *p = &o->payload;
  if (p->data) {
    *data = p->data + o->done;
    *n = (size_t)MIN((int64_t)CHUNK, p->len - o->done);
    return 0;
  }
  if (o->chunk_done == o->chunk_len) {
    size_t want = (size_t)MIN((int64_t)CHUNK, p->len - o->done);
    if (!o->chunk)
      o->chunk = xmalloc(CHUNK);
    ssize_t r = pread_full(p->fd, o->chunk, want, (off_t)(p->off + o->done));
    if (r < 0)
      return (int)r;
    if ((size_t)r != want)
      return -EIO; /* the source is shorter than promised */
    o->chunk_len = want;
    o->chunk_done = 0;
  }
  *data = o->chunk + o->chunk_done;
  *n = o->chunk_len - o->chunk_done;
  return 0;
}

static int put_step(struct sftp_priv *s, struct sop *o) {
  unsigned long fx = 0;
  int rc;
  switch (o->phase) {
  case P_OPEN:
    o->h = libssh2_sftp_open_ex(s->sftp, o->tmp, (unsigned)strlen(o->tmp),
                                LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT |
                                    LIBSSH2_FXF_TRUNC,
                                FILE_MODE, LIBSSH2_SFTP_OPENFILE);
    if ((rc = handle_rc(s, o->h, &fx)) < 0)
      return rc;
    if (rc == 0) {
      if (fx == LIBSSH2_FX_NO_SUCH_FILE && !o->mkdirs) {
        o->mkdirs = 1;
        o->mkdir_at = 1; /* skip a leading '/' */
        o->phase = P_MKDIR;
        return STEP_NEXT;
      }
      put_failing(o, fx_code(fx), "cannot create the temporary file", fx);
      return STEP_NEXT;
    }
    o->phase = P_WRITE;
    return STEP_NEXT;
  case P_MKDIR: {
    /* mkdir -p of the temporary file's parent, top down; "exists" (a
     * failure status) is fine, the open after it tells the truth. */
    const char *slash = strchr(o->tmp + o->mkdir_at, '/');
    if (!slash) {
      o->phase = P_OPEN;
      return STEP_NEXT;
    }
    size_t n = (size_t)(slash - o->tmp);
    rc = libssh2_sftp_mkdir_ex(s->sftp, o->tmp, (unsigned)n, DIR_MODE);
    if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
      return rc;
    o->mkdir_at = n + 1;
    return STEP_NEXT;
  }
  case P_WRITE:
    while (o->done < o->payload.len) {
      const uint8_t *data = NULL;
      size_t n = 0;
      if ((rc = put_fill(o, &data, &n))) {
        char what[128];
        snprintf(what, sizeof(what), "cannot read the local data: %s",
                 err_str(rc));
        put_failing(o, rc, what, 0);
        return STEP_NEXT;
      }
      ssize_t w = libssh2_sftp_write(o->h, (const char *)data, n);
      if (w < 0) {
        if ((rc = sftp_rc(s, (int)w, &fx)) < 0)
          return rc;
        put_failing(o, fx_code(fx), "write failed", fx);
        return STEP_NEXT;
      }
      o->done += w;
      if (!o->payload.data)
        o->chunk_done += (size_t)w;
    }
    o->phase = P_FSYNC;
    return STEP_NEXT;
  case P_FSYNC:
    rc = libssh2_sftp_fsync(o->h);
    if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
      return rc;
    if (rc == 0 && fx && fx != LIBSSH2_FX_OP_UNSUPPORTED) {
      put_failing(o, fx_code(fx), "fsync failed", fx);
      return STEP_NEXT;
    }
    o->phase = P_CLOSE;
    return STEP_NEXT;
  case P_CLOSE:
    rc = libssh2_sftp_close_handle(o->h);
    if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
      return rc;
    o->h = NULL;
    if (fx) {
      put_failing(o, fx_code(fx), "close failed", fx);
      return STEP_NEXT;
    }
    o->phase = P_RENAME;
    return STEP_NEXT;
  case P_RENAME:
    rc = libssh2_sftp_rename_ex(s->sftp, o->tmp, (unsigned)strlen(o->tmp),
                                o->path, (unsigned)strlen(o->path),
                                LIBSSH2_SFTP_RENAME_OVERWRITE |
                                    LIBSSH2_SFTP_RENAME_ATOMIC |
                                    LIBSSH2_SFTP_RENAME_NATIVE);
    if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
      return rc;
    if (fx && !o->overwrite &&
        (fx == LIBSSH2_FX_FAILURE || fx == LIBSSH2_FX_FILE_ALREADY_EXISTS)) {
      /* OpenSSH (SFTP v3) will not rename over a file: if that is why,
       * remove the old file and rename again. */
      o->overwrite = 1;
      o->phase = P_STAT_OLD;
      return STEP_NEXT;
    }
    if (fx) {
      put_failing(o, fx_code(fx), "rename failed", fx);
      return STEP_NEXT;
    }
    return STEP_DONE;
  case P_STAT_OLD: {
    LIBSSH2_SFTP_ATTRIBUTES a;
    rc = libssh2_sftp_stat_ex(s->sftp, o->path, (unsigned)strlen(o->path),
                              LIBSSH2_SFTP_LSTAT, &a);
    if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
      return rc;
    if (fx) { /* no old file: the rename failed for another reason */
      put_failing(o, -EIO, "rename failed", LIBSSH2_FX_FAILURE);
      return STEP_NEXT;
    }
    o->phase = P_UNLINK_OLD;
    return STEP_NEXT;
  }
  case P_UNLINK_OLD:
    rc = libssh2_sftp_unlink_ex(s->sftp, o->path, (unsigned)strlen(o->path));
    if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
      return rc;
    o->phase = P_RENAME;
    return STEP_NEXT;
  case P_FAIL_CLOSE: {
    rc = libssh2_sftp_close_handle(o->h);
    if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
      return rc;
    o->h = NULL;
    o->phase = o->fail_statvfs ? P_FAIL_STATVFS : P_FAIL_UNLINK;
    return STEP_NEXT;
  }
  case P_FAIL_STATVFS: {
    LIBSSH2_SFTP_STATVFS st;
    char *dir = path_dir(o->tmp);
    rc = libssh2_sftp_statvfs(s->sftp, dir, strlen(dir), &st);
    free(dir);
    if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
      return rc;
    if (rc == 0 && st.f_bavail == 0) {
      o->fail_code = -ENOSPC;
      snprintf(o->fail_what, sizeof(o->fail_what),
               "the server's disk is full (0 of %llu blocks of %llu bytes "
               "free)",
               (unsigned long long)st.f_blocks,
               (unsigned long long)st.f_frsize);
    }
    o->phase = P_FAIL_UNLINK;
    return STEP_NEXT;
  }
  case P_FAIL_UNLINK:
    rc = libssh2_sftp_unlink_ex(s->sftp, o->tmp, (unsigned)strlen(o->tmp));
    if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
      return rc;
    sop_fail(s, o, o->fail_code, "%s", o->fail_what);
    return STEP_DONE;
  }
  return STEP_DONE;
}

/* --- get --- */

enum { G_OPEN, G_READ, G_CLOSE };

static int get_step(struct sftp_priv *s, struct sop *o) {
  unsigned long fx = 0;
  int rc;
  switch (o->phase) {
  case G_OPEN:
    o->h = libssh2_sftp_open_ex(s->sftp, o->path, (unsigned)strlen(o->path),
                                LIBSSH2_FXF_READ, 0, LIBSSH2_SFTP_OPENFILE);
    if ((rc = handle_rc(s, o->h, &fx)) < 0)
      return rc;
    if (rc == 0) {
      sop_fail(s, o, fx_code(fx), "%s", fx_name(fx));
      return STEP_DONE;
    }
    if (o->off > 0)
      libssh2_sftp_seek64(o->h, (libssh2_uint64_t)o->off);
    o->phase = G_READ;
    return STEP_NEXT;
  case G_READ:
    for (;;) {
      int64_t left = o->len >= 0 ? o->len - o->done : (int64_t)CHUNK;
      if (left <= 0)
        break;
      size_t want = (size_t)MIN(left, (int64_t)CHUNK);
      char *dst;
      if (o->sink.buf) {
        /* A capped buffer takes reads of what room it has left (a small
         * object into a small buffer, e.g. the lease's lock.json). */
        struct buf *sb = o->sink.buf;
        if (sb->max && sb->max > sb->len && sb->max - sb->len < want)
          want = sb->max - sb->len;
        if ((rc = buf_reserve(o->sink.buf, want))) {
          sop_fail(s, o, rc, "object larger than the buffer allows");
          o->phase = G_CLOSE;
          return STEP_NEXT;
        }
        dst = (char *)o->sink.buf->data + o->sink.buf->len;
      } else {
        if (!o->chunk)
          o->chunk = xmalloc(CHUNK);
        dst = (char *)o->chunk;
      }
      ssize_t r = libssh2_sftp_read(o->h, dst, want);
      if (r < 0) {
        if ((rc = sftp_rc(s, (int)r, &fx)) < 0)
          return rc;
        sop_fail(s, o, fx_code(fx), "read failed: %s", fx_name(fx));
        o->phase = G_CLOSE;
        return STEP_NEXT;
      }
      if (r == 0)
        break; /* end of file */
      if (o->sink.buf) {
        o->sink.buf->len += (size_t)r;
      } else if ((rc = pwrite_full(o->sink.fd, o->chunk, (size_t)r,
                                   (off_t)(o->sink.off + o->done)))) {
        sop_fail(s, o, rc, "cannot write the local file: %s", err_str(rc));
        o->phase = G_CLOSE;
        return STEP_NEXT;
      }
      o->done += r;
    }
    o->phase = G_CLOSE;
    return STEP_NEXT;
  case G_CLOSE:
    rc = libssh2_sftp_close_handle(o->h);
    if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
      return rc;
    o->h = NULL;
    return STEP_DONE;
  }
  return STEP_DONE;
}

/* --- list --- */

enum { L_START, L_POP, L_OPENDIR, L_READDIR, L_CLOSEDIR };

static void dirs_push(struct sop *o, const char *key, const char *owner) {
  o->dirs = xrealloc(o->dirs, (o->n_dirs + 1) * sizeof(*o->dirs));
  o->dirs[o->n_dirs].key = xstrdup(key);
  o->dirs[o->n_dirs].owner = owner ? xstrdup(owner) : NULL;
  o->n_dirs++;
}

static int has_prefix_listed(const struct obj_list *l, const char *p) {
  for (size_t i = 0; i < l->n_prefixes; i++)
    if (!strcmp(l->prefixes[i], p))
      return 1;
  return 0;
}

static char *remote_path(struct sftp_priv *s, const char *key) {
  if (!*key)
    return xstrdup(*s->root ? s->root : ".");
  return path_join(s->root, key);
}

/* Reads the entries of the directory open in o->h (dir names it in an
 * error), calling each(o, name, attrs) until the end or until each returns
 * nonzero.  <0: the connection's result (-EAGAIN: call again, it resumes);
 * 0: done, or a failure recorded in o. */
static int readdir_each(struct sftp_priv *s, struct sop *o, const char *dir,
                        int (*each)(struct sop *, const char *,
                                    const LIBSSH2_SFTP_ATTRIBUTES *)) {
  for (;;) {
    unsigned long fx = 0;
    char name[512];
    LIBSSH2_SFTP_ATTRIBUTES a;
    int rc = libssh2_sftp_readdir_ex(o->h, name, sizeof(name), NULL, 0, &a);
    if (rc < 0) {
      if ((rc = sftp_rc(s, rc, &fx)) < 0)
        return rc;
      sop_fail(s, o, fx_code(fx), "cannot read directory %s: %s", dir,
               fx_name(fx));
      return 0;
    }
    if (rc == 0 || each(o, name, &a))
      return 0;
  }
}

/* One directory entry of the directory being listed; nonzero when a probe
 * found its file (the rest of the directory is not needed). */
static int list_entry(struct sop *o, const char *name,
                      const LIBSSH2_SFTP_ATTRIBUTES *a) {
  if (!strcmp(name, ".") || !strcmp(name, ".."))
    return 0;
  char *key = xasprintf("%s%s", o->cur.key, name);
  int is_dir = (a->flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) &&
               LIBSSH2_SFTP_S_ISDIR(a->permissions);
  int is_reg = (a->flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) &&
               LIBSSH2_SFTP_S_ISREG(a->permissions);
  if (o->cur.owner) {
    /* Probing for one file below a candidate common prefix. */
    if (is_reg && !str_has_suffix(name, ".tmp"))
      obj_list_add_prefix(&o->list, o->cur.owner);
    else if (is_dir && !has_prefix_listed(&o->list, o->cur.owner)) {
      char *sub = xasprintf("%s/", key);
      dirs_push(o, sub, o->cur.owner);
      free(sub);
    }
  } else if (!str_has_prefix(key, o->key)) {
    /* the first directory holds entries outside the prefix */
  } else if (is_dir) {
    char *sub = xasprintf("%s/", key);
    dirs_push(o, sub, o->delimiter ? sub : NULL);
    free(sub);
  } else if (is_reg && !str_has_suffix(name, ".tmp")) {
    int64_t mtime = a->flags & LIBSSH2_SFTP_ATTR_ACMODTIME
                        ? (int64_t)a->mtime * NS_PER_SEC
                        : 0;
    int64_t size = a->flags & LIBSSH2_SFTP_ATTR_SIZE ? (int64_t)a->filesize : 0;
    obj_list_add(&o->list, key, size, mtime);
  }
  free(key);
  return o->cur.owner && has_prefix_listed(&o->list, o->cur.owner);
}

static int list_step(struct sftp_priv *s, struct sop *o) {
  unsigned long fx = 0;
  int rc;
  switch (o->phase) {
  case L_START: {
    /* The directory holding the prefix's last element. */
    const char *slash = strrchr(o->key, '/');
    char *dir = xstrndup(o->key, slash ? (size_t)(slash - o->key + 1) : 0);
    dirs_push(o, dir, NULL);
    free(dir);
    o->phase = L_POP;
    return STEP_NEXT;
  }
  case L_POP:
    free(o->cur.key);
    free(o->cur.owner);
    o->cur.key = o->cur.owner = NULL;
    while (o->n_dirs) {
      o->cur = o->dirs[--o->n_dirs];
      if (!o->cur.owner || !has_prefix_listed(&o->list, o->cur.owner))
        break;
      free(o->cur.key);
      free(o->cur.owner);
      o->cur.key = o->cur.owner = NULL;
    }
    if (!o->cur.key)
      return STEP_DONE;
    o->phase = L_OPENDIR;
    return STEP_NEXT;
  case L_OPENDIR: {
    char *path = remote_path(s, o->cur.key);
    o->h = libssh2_sftp_open_ex(s->sftp, path, (unsigned)strlen(path), 0, 0,
                                LIBSSH2_SFTP_OPENDIR);
    free(path);
    if ((rc = handle_rc(s, o->h, &fx)) < 0)
      return rc;
    if (rc == 0) {
      if (fx != LIBSSH2_FX_NO_SUCH_FILE && fx != LIBSSH2_FX_NO_SUCH_PATH) {
        sop_fail(s, o, fx_code(fx), "cannot read directory %s: %s",
                 *o->cur.key ? o->cur.key : ".", fx_name(fx));
        return STEP_DONE;
      }
      o->phase = L_POP; /* a missing directory lists empty */
      return STEP_NEXT;
    }
    o->phase = L_READDIR;
    return STEP_NEXT;
  }
  case L_READDIR:
    rc = readdir_each(s, o, *o->cur.key ? o->cur.key : ".", list_entry);
    if (rc < 0)
      return rc;
    o->phase = L_CLOSEDIR;
    return STEP_NEXT;
  case L_CLOSEDIR:
    rc = libssh2_sftp_close_handle(o->h);
    if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
      return rc;
    o->h = NULL;
    if (o->status)
      return STEP_DONE;
    o->phase = L_POP;
    return STEP_NEXT;
  }
  return STEP_DONE;
}

/* --- delete --- */

enum { D_UNLINK, D_PRUNE };

/* The directory of key i when the next key is elsewhere (or i is last):
 * it may be empty now. */
static char *del_prune_dir(struct sop *o, size_t i) {
  const char *k = o->keys[i];
  const char *slash = strrchr(k, '/');
  if (!slash)
    return NULL;
  size_t n = (size_t)(slash - k);
  if (i + 1 < o->n_keys && !strncmp(o->keys[i + 1], k, n) &&
      o->keys[i + 1][n] == '/' && !strchr(o->keys[i + 1] + n + 1, '/'))
    return NULL;
  return xstrndup(k, n);
}

static int del_step(struct sftp_priv *s, struct sop *o) {
  for (;;) {
    unsigned long fx = 0;
    int rc;
    if (o->phase == D_UNLINK) {
      if (o->key_i == o->n_keys)
        return STEP_DONE;
      char *path = remote_path(s, o->keys[o->key_i]);
      rc = libssh2_sftp_unlink_ex(s->sftp, path, (unsigned)strlen(path));
      free(path);
      if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
        return rc;
      if (fx && fx != LIBSSH2_FX_NO_SUCH_FILE &&
          fx != LIBSSH2_FX_NO_SUCH_PATH) {
        sop_fail(s, o, fx_code(fx), "%s", fx_name(fx));
        return STEP_DONE;
      }
      o->prune = del_prune_dir(o, o->key_i);
      o->key_i++;
      if (o->prune)
        o->phase = D_PRUNE;
      continue;
    }
    /* D_PRUNE: remove o->prune if empty, then its parents, stopping below
     * generations/ (or the root for keys elsewhere). */
    if (!o->prune || !strcmp(o->prune, "generations") ||
        !strcmp(path_base(o->prune), "generations")) {
      free(o->prune);
      o->prune = NULL;
      o->phase = D_UNLINK;
      continue;
    }
    char *path = remote_path(s, o->prune);
    rc = libssh2_sftp_rmdir_ex(s->sftp, path, (unsigned)strlen(path));
    free(path);
    if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
      return rc;
    char *slash = strrchr(o->prune, '/');
    if (fx || !slash) { /* not empty (or gone): stop here */
      free(o->prune);
      o->prune = NULL;
      o->phase = D_UNLINK;
      continue;
    }
    *slash = '\0';
  }
}

/* --- conditional writes: the lease (get_tag, put_cond) ---
 *
 * SFTP v3 has no compare-and-swap and no atomic replace (posix-rename@
 * openssh.com is not reachable through libssh2 1.10), but it has an
 * atomic create-if-absent: RENAME, which the protocol says fails when the
 * new name exists (OpenSSH does it with link(2), so of two renames onto
 * one name exactly one succeeds, and the file appears whole).  A
 * conditional object is therefore a directory of immutable versions,
 * <key>.d/<seq> (seq: 20 decimal digits, 1 up), the highest being the
 * current one; its tag is its seq.
 *
 *  get_tag   lists <key>.d, reads the highest version (listed again if a
 *            writer removed it meanwhile).  No version: ERR_NOT_FOUND.
 *  put_cond  writes a unique temporary file, fsyncs and closes it, then
 *            renames it to version match+1 (1 when match is NULL): if that
 *            exists, someone else replaced match first (ERR_PRECONDITION).
 *            Then it lists the directory: a version above its own means
 *            its match was an old version whose successor had been
 *            removed, so it removes its own again (ERR_PRECONDITION).
 *            Otherwise it won; it removes the versions below match.
 * The highest version is never removed (only those below the one being
 * replaced are), so a version above ours in that listing is proof that we
 * lost, and its absence proof that we won.  A retry after a lost
 * connection that finds its target taken reads it: its own bytes mean its
 * first rename went through.
 */

#define SEQ_DIGITS 20
#define COND_GC_MAX 64 /* old versions removed per write */
#define COND_RESCANS 5 /* version removed between listing and reading */
#define COND_READ_MAX 65536

enum {
  K_OPENDIR = 100, /* above put_step's phases: a put_cond runs those too */
  K_READDIR,
  K_CLOSEDIR,
  K_OPEN,
  K_READ,
  K_CLOSE,
  K_CHECK_OPEN,
  K_CHECK_READ,
  K_CHECK_CLOSE,
  K_UNLINK_TMP,
  K_UNDO,
  K_GC,
};

static uint64_t g_cond_tmp_seq;

static char *cond_dir(struct sftp_priv *s, const char *key) {
  char *p = remote_path(s, key);
  char *d = xasprintf("%s.d", p);
  free(p);
  return d;
}

static char *cond_version(const char *dir, uint64_t seq) {
  return xasprintf("%s/%0*llu", dir, SEQ_DIGITS, (unsigned long long)seq);
}

/* The seq of a version's file name, or 0. */
static uint64_t cond_seq(const char *name) {
  if (strlen(name) != SEQ_DIGITS)
    return 0;
  for (const char *p = name; *p; p++)
    if (!isdigit((unsigned char)*p))
      return 0;
  return strtoull(name, NULL, 10);
}

/* Reads o->path into buf (capped): the open, read and close phases that
 * both get_tag and a retried put_cond need.  Returns a step result; sets
 * *fx on an SFTP error (the caller decides what it means). */
static int cond_open(struct sftp_priv *s, struct sop *o, const char *path,
                     unsigned long *fx) {
  o->h = libssh2_sftp_open_ex(s->sftp, path, (unsigned)strlen(path),
                              LIBSSH2_FXF_READ, 0, LIBSSH2_SFTP_OPENFILE);
  return handle_rc(s, o->h, fx);
}

/* Reads until EOF into b: 1 done, 0 an SFTP error in *fx, <0 connection. */
static int cond_read(struct sftp_priv *s, struct sop *o, struct buf *b,
                     unsigned long *fx) {
  for (;;) {
    size_t want = 4096;
    if (b->max && b->max - b->len < want)
      want = b->max - b->len;
    int rc = want ? buf_reserve(b, want) : -EFBIG;
    if (rc) {
      *fx = LIBSSH2_FX_FAILURE; /* larger than any lease */
      return 0;
    }
    ssize_t r = libssh2_sftp_read(o->h, (char *)b->data + b->len, want);
    if (r < 0) {
      if ((rc = sftp_rc(s, (int)r, fx)) < 0)
        return rc;
      return 0;
    }
    if (r == 0)
      return 1;
    b->len += (size_t)r;
  }
}

static int cond_close(struct sftp_priv *s, struct sop *o) {
  unsigned long fx = 0;
  int rc = libssh2_sftp_close_handle(o->h);
  if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
    return rc;
  o->h = NULL;
  return 0;
}

/* One entry of <key>.d: a version raises the highest seen and, below the
 * one a put_cond replaces, is one to remove. */
static int cond_entry(struct sop *o, const char *name,
                      const LIBSSH2_SFTP_ATTRIBUTES *a) {
  (void)a;
  uint64_t seq = cond_seq(name);
  if (!seq)
    return 0;
  o->max_seq = MAX(o->max_seq, seq);
  if (o->kind == S_PUT_COND && seq + 1 < o->seq && o->n_gc < COND_GC_MAX)
    o->gc[o->n_gc++] = seq;
  return 0;
}

/* The listing of <key>.d: the highest version, and (put_cond) the versions
 * below the one replaced, to remove. */
static int cond_list_step(struct sftp_priv *s, struct sop *o, int *missing) {
  unsigned long fx = 0;
  int rc;
  switch (o->phase) {
  case K_OPENDIR:
    o->max_seq = 0;
    o->n_gc = 0;
    o->h = libssh2_sftp_open_ex(s->sftp, o->dir, (unsigned)strlen(o->dir), 0, 0,
                                LIBSSH2_SFTP_OPENDIR);
    if ((rc = handle_rc(s, o->h, &fx)) < 0)
      return rc;
    if (rc == 0) {
      if (fx == LIBSSH2_FX_NO_SUCH_FILE || fx == LIBSSH2_FX_NO_SUCH_PATH) {
        *missing = 1;
        return STEP_DONE;
      }
      sop_fail(s, o, fx_code(fx), "cannot read directory %s: %s", o->dir,
               fx_name(fx));
      return STEP_DONE;
    }
    o->phase = K_READDIR;
    return STEP_NEXT;
  case K_READDIR:
    if ((rc = readdir_each(s, o, o->dir, cond_entry)) < 0)
      return rc;
    o->phase = K_CLOSEDIR;
    return STEP_NEXT;
  case K_CLOSEDIR:
    if ((rc = cond_close(s, o)) < 0)
      return rc;
    return STEP_DONE;
  }
  return STEP_DONE;
}

static int get_tag_step(struct sftp_priv *s, struct sop *o) {
  unsigned long fx = 0;
  int rc, missing = 0;
  if (o->phase == 0)
    o->phase = K_OPENDIR;
  switch (o->phase) {
  case K_OPENDIR:
  case K_READDIR:
  case K_CLOSEDIR: {
    int was_close = o->phase == K_CLOSEDIR;
    rc = cond_list_step(s, o, &missing);
    if (rc != STEP_DONE || o->status)
      return rc;
    if (missing || (was_close && !o->max_seq)) {
      sop_fail(s, o, ERR_NOT_FOUND, "no such file");
      return STEP_DONE;
    }
    if (!was_close)
      return STEP_DONE; /* cannot happen: a listing ends at its close */
    free(o->path);
    o->path = cond_version(o->dir, o->max_seq);
    o->phase = K_OPEN;
    return STEP_NEXT;
  }
  case K_OPEN:
    if ((rc = cond_open(s, o, o->path, &fx)) < 0)
      return rc;
    if (rc == 0) {
      if ((fx == LIBSSH2_FX_NO_SUCH_FILE || fx == LIBSSH2_FX_NO_SUCH_PATH) &&
          ++o->rescans < COND_RESCANS) {
        o->phase = K_OPENDIR; /* replaced and removed meanwhile */
        return STEP_NEXT;
      }
      sop_fail(s, o, fx_code(fx), "%s: %s", o->path, fx_name(fx));
      return STEP_DONE;
    }
    o->sink.buf->len = o->sink_base;
    o->phase = K_READ;
    return STEP_NEXT;
  case K_READ:
    if ((rc = cond_read(s, o, o->sink.buf, &fx)) < 0)
      return rc;
    if (rc == 0)
      sop_fail(s, o, fx_code(fx), "read failed: %s", fx_name(fx));
    o->phase = K_CLOSE;
    return STEP_NEXT;
  case K_CLOSE:
    if ((rc = cond_close(s, o)) < 0)
      return rc;
    if (!o->status)
      snprintf(o->tag, BACKEND_TAG_MAX, "%llu", (unsigned long long)o->max_seq);
    return STEP_DONE;
  }
  return STEP_DONE;
}

static int put_cond_step(struct sftp_priv *s, struct sop *o) {
  unsigned long fx = 0;
  int rc, missing = 0;
  if (o->phase < P_RENAME || (o->phase > P_RENAME && o->phase < K_OPENDIR))
    return put_step(s, o); /* the temporary file, or a failure's cleanup */
  switch (o->phase) {
  case P_RENAME:
    rc = libssh2_sftp_rename_ex(s->sftp, o->tmp, (unsigned)strlen(o->tmp),
                                o->path, (unsigned)strlen(o->path), 0);
    if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
      return rc;
    if (fx == LIBSSH2_FX_FAILURE || fx == LIBSSH2_FX_FILE_ALREADY_EXISTS) {
      o->phase = K_CHECK_OPEN; /* taken: by us, before a lost connection? */
      return STEP_NEXT;
    }
    if (fx) {
      put_failing(o, fx_code(fx), "rename failed", fx);
      return STEP_NEXT;
    }
    o->phase = K_OPENDIR;
    return STEP_NEXT;
  case K_CHECK_OPEN:
    if ((rc = cond_open(s, o, o->path, &fx)) < 0)
      return rc;
    if (rc == 0) {
      put_failing(o, -EIO, "rename failed", LIBSSH2_FX_FAILURE);
      return STEP_NEXT;
    }
    o->check.len = 0;
    o->phase = K_CHECK_READ;
    return STEP_NEXT;
  case K_CHECK_READ:
    if ((rc = cond_read(s, o, &o->check, &fx)) < 0)
      return rc;
    o->phase = K_CHECK_CLOSE;
    return STEP_NEXT;
  case K_CHECK_CLOSE:
    if ((rc = cond_close(s, o)) < 0)
      return rc;
    if (o->check.len == (size_t)o->payload.len &&
        !memcmp(o->check.data, o->payload.data, o->check.len)) {
      o->phase = K_UNLINK_TMP; /* ours: the first attempt's rename landed */
      return STEP_NEXT;
    }
    put_failing(o, ERR_PRECONDITION, "replaced by another writer meanwhile", 0);
    return STEP_NEXT;
  case K_UNLINK_TMP:
    rc = libssh2_sftp_unlink_ex(s->sftp, o->tmp, (unsigned)strlen(o->tmp));
    if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
      return rc;
    o->phase = K_OPENDIR;
    return STEP_NEXT;
  case K_OPENDIR:
  case K_READDIR:
  case K_CLOSEDIR: {
    int was_close = o->phase == K_CLOSEDIR;
    rc = cond_list_step(s, o, &missing);
    if (rc != STEP_DONE || o->status)
      return rc;
    if (missing || !was_close) {
      sop_fail(s, o, -EIO, "%s vanished after the rename", o->dir);
      return STEP_DONE;
    }
    if (o->max_seq > o->seq) {
      o->phase = K_UNDO; /* our match was old: a later version stands */
      return STEP_NEXT;
    }
    o->gc_i = 0;
    o->phase = K_GC;
    return STEP_NEXT;
  }
  case K_UNDO:
    rc = libssh2_sftp_unlink_ex(s->sftp, o->path, (unsigned)strlen(o->path));
    if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
      return rc;
    sop_fail(s, o, ERR_PRECONDITION, "version %llu stands above ours",
             (unsigned long long)o->max_seq);
    return STEP_DONE;
  case K_GC:
    while (o->gc_i < o->n_gc) {
      char *p = cond_version(o->dir, o->gc[o->gc_i]);
      rc = libssh2_sftp_unlink_ex(s->sftp, p, (unsigned)strlen(p));
      free(p);
      if (rc < 0 && (rc = sftp_rc(s, rc, &fx)) < 0)
        return rc;
      o->gc_i++; /* gone already is fine */
    }
    snprintf(o->tag, BACKEND_TAG_MAX, "%llu", (unsigned long long)o->seq);
    return STEP_DONE;
  }
  return STEP_DONE;
}

/* --- the connection --- */

static void on_poll(void *arg, int status, int events);

static void watchdog_arm(struct sftp_priv *s, uint64_t ms) {
  loop_timer_start(s->watchdog, ms);
}

/* Waits for the socket in the directions libssh2 is blocked on. */
static void wait_socket(struct sftp_priv *s, int events) {
  if (!events && s->sess) {
    int d = libssh2_session_block_directions(s->sess);
    events = (d & LIBSSH2_SESSION_BLOCK_INBOUND ? LOOP_POLL_READ : 0) |
             (d & LIBSSH2_SESSION_BLOCK_OUTBOUND ? LOOP_POLL_WRITE : 0);
  }
  if (!events)
    events = LOOP_POLL_READ;
  loop_poll_start(s->poll, events);
  watchdog_arm(s, s->st == C_READY ? IO_TIMEOUT_MS : CONNECT_TIMEOUT_MS);
}

static void fail_all(struct sftp_priv *s, int code, const char *msg) {
  while (s->head) {
    struct sop *o = s->head;
    sop_fail(s, o, code, "%s", msg);
    sop_finish(s, o);
  }
}

/* The connection failed (msg says why).  fatal: retrying cannot help
 * (authentication, host key): every queued operation fails now.  Else the
 * head operation is retried after a backoff, up to MAX_ATTEMPTS times. */
static void conn_fail(struct sftp_priv *s, int code, int fatal, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));

static void conn_fail(struct sftp_priv *s, int code, int fatal, const char *fmt,
                      ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->conn_err, sizeof(s->conn_err), fmt, ap);
  va_end(ap);
  int was_ready = s->st == C_READY;
  conn_teardown(s);
  if (fatal) {
    fail_all(s, code, s->conn_err);
    s->backoff_ms = 0;
    return;
  }
  struct sop *o = s->head;
  if (o) {
    sop_reset(o);
    if (++o->attempts >= MAX_ATTEMPTS) {
      sop_fail(s, o, code, "%s (after %d attempts)", s->conn_err, o->attempts);
      sop_finish(s, o);
    }
  }
  /* A connection that was working is retried at once the first time. */
  if (was_ready && !s->backoff_ms) {
    log_info(NULL, s->b->name, "sftp: connection to %s lost: %s; reconnecting",
             s->hostport, s->conn_err);
    s->backoff_ms = BACKOFF_BASE_MS / 2;
    if (s->head) {
      s->st = C_BACKOFF;
      loop_timer_start(s->kick, 0);
    }
    return;
  }
  s->backoff_ms =
      s->backoff_ms ? MIN(s->backoff_ms * 2, BACKOFF_MAX_MS) : BACKOFF_BASE_MS;
  if (s->head) {
    log_debug(NULL, s->b->name, "sftp: %s: %s; retrying in %d ms", s->hostport,
              s->conn_err, s->backoff_ms);
    s->st = C_BACKOFF;
    loop_timer_start(s->kick, (uint64_t)s->backoff_ms);
  }
}

/* Transport stand-ins for freeing a session whose socket is gone: sends
 * "succeed" into nothing and receives fail, so libssh2 can run its close
 * sequences (which free open handles and their queued writes) without
 * touching the socket and without blocking. */
static ssize_t dead_send(libssh2_socket_t fd, const void *buf, size_t len,
                         int flags, void **abstract) {
  (void)fd, (void)buf, (void)flags, (void)abstract;
  return (ssize_t)len;
}

static ssize_t dead_recv(libssh2_socket_t fd, void *buf, size_t len, int flags,
                         void **abstract) {
  (void)fd, (void)buf, (void)len, (void)flags, (void)abstract;
  return -ECONNRESET;
}

static void conn_teardown(struct sftp_priv *s) {
  loop_timer_stop(s->watchdog);
  loop_poll_free(s->poll);
  s->poll = NULL;
  if (s->sess) {
    if (s->st == C_READY && !(s->head && s->head->h))
      libssh2_session_disconnect(s->sess, "closing"); /* one try */
    libssh2_session_callback_set(s->sess, LIBSSH2_CALLBACK_SEND,
                                 (void *)dead_send);
    libssh2_session_callback_set(s->sess, LIBSSH2_CALLBACK_RECV,
                                 (void *)dead_recv);
    libssh2_session_set_blocking(s->sess, 1);
    /* Only the head operation can hold a handle (one at a time); libssh2
     * does not free open handles with the session. */
    if (s->head && s->head->h)
      libssh2_sftp_close_handle(s->head->h);
    if (s->sftp)
      libssh2_sftp_shutdown(s->sftp);
    libssh2_session_free(s->sess);
  }
  if (s->head)
    s->head->h = NULL;
  s->sftp = NULL;
  s->sess = NULL;
  if (s->fd >= 0)
    close(s->fd);
  s->fd = -1;
  free(s->auth_methods);
  s->auth_methods = NULL;
  s->st = C_DOWN;
}

/* Starts a non-blocking connect to s->ai_next.  Returns 0 (in progress or
 * done) or a negative errno after trying every address. */
static int conn_connect(struct sftp_priv *s) {
  int err = -ECONNREFUSED;
  for (; s->ai_next; s->ai_next = s->ai_next->ai_next) {
    struct addrinfo *a = s->ai_next;
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    a->ai_protocol);
    if (fd < 0) {
      err = -errno;
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, a->ai_addr, a->ai_addrlen) && errno != EINPROGRESS) {
      err = -errno;
      close(fd);
      continue;
    }
    int rc = loop_poll_new(fd, on_poll, s, &s->poll);
    if (rc) {
      close(fd);
      return rc;
    }
    s->fd = fd;
    s->ai_next = a->ai_next;
    s->st = C_CONNECTING;
    wait_socket(s, LOOP_POLL_WRITE);
    return 0;
  }
  return err;
}

struct resolve_job {
  struct sftp_priv *s;
  char *host;
  int port;
  struct addrinfo *ai;
  int rc;
};

static void resolve_work(void *arg) {
  struct resolve_job *j = arg;
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  char port[16];
  snprintf(port, sizeof(port), "%d", j->port);
  j->rc = getaddrinfo(j->host, port, &hints, &j->ai);
}

static void sftp_priv_free(struct sftp_priv *s);

static void on_resolved(void *arg, int status) {
  struct resolve_job *j = arg;
  struct sftp_priv *s = j->s;
  s->resolving = 0;
  if (s->closed) {
    if (j->ai)
      freeaddrinfo(j->ai);
    free(j->host);
    free(j);
    sftp_priv_free(s);
    return;
  }
  if (s->ai)
    freeaddrinfo(s->ai);
  s->ai = j->rc ? NULL : j->ai;
  s->ai_next = s->ai;
  int rc = j->rc;
  free(j->host);
  free(j);
  if (rc || status) {
    s->st = C_DOWN;
    conn_fail(s, -EHOSTUNREACH, 0, "cannot resolve %s: %s", s->host,
              rc ? gai_strerror(rc) : "canceled");
    return;
  }
  int crc = conn_connect(s);
  if (crc) {
    s->st = C_DOWN;
    conn_fail(s, crc, 0, "cannot connect to %s: %s", s->hostport, err_str(crc));
    return;
  }
}

static void conn_start(struct sftp_priv *s) {
  if (!g_libssh2_ready) {
    libssh2_init(0);
    g_libssh2_ready = 1;
  }
  s->st = C_RESOLVING;
  s->resolving = 1;
  struct resolve_job *j = xcalloc(1, sizeof(*j));
  j->s = s;
  j->host = xstrdup(s->host);
  j->port = s->port;
  loop_work_submit(resolve_work, on_resolved, j);
}

/* --- host keys --- */

static int knownhost_keytype(int hostkey_type) {
  switch (hostkey_type) {
  case LIBSSH2_HOSTKEY_TYPE_RSA:
    return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
  case LIBSSH2_HOSTKEY_TYPE_DSS:
    return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
    return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
    return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
    return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
  case LIBSSH2_HOSTKEY_TYPE_ED25519:
    return LIBSSH2_KNOWNHOST_KEY_ED25519;
  default:
    return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
  }
}

/* The key type name at the start of an SSH public key blob. */
static void blob_type(const uint8_t *k, size_t n, char *out, size_t outlen) {
  uint32_t l = n >= 4 ? get_be32(k) : 0;
  if (n < 4 || l > n - 4 || l >= outlen)
    l = 0;
  memcpy(out, k + 4, l);
  out[l] = '\0';
  if (!l)
    snprintf(out, outlen, "unknown");
}

/* A public key line "TYPE BASE64 [comment]" (an ssh_host_*_key.pub file)
 * rather than a known_hosts line: does it hold the server's key?  Returns
 * 1 match, 0 not a key line, -1 a key line for another key. */
static int pubkey_line(const char *line, const uint8_t *key, size_t klen) {
  static const char *const types[] = {"ssh-", "ecdsa-sha2-", "sk-"};
  int is_key = 0;
  for (size_t i = 0; i < ARRAY_SIZE(types); i++)
    is_key |= str_has_prefix(line, types[i]);
  if (!is_key)
    return 0;
  const char *b64 = line + strcspn(line, " \t");
  b64 += strspn(b64, " \t");
  size_t n = strcspn(b64, " \t\r\n");
  uint8_t *blob;
  size_t blen;
  if (!n || base64_decode(b64, n, 0, &blob, &blen))
    return -1;
  int match = blen == klen && !memcmp(blob, key, klen);
  free(blob);
  return match ? 1 : -1;
}

/* OpenSSH's host patterns: '*' and '?' only ('[' is literal, as in
 * "[host]:port"), case-insensitive. */
static int glob_match(const char *p, const char *s) {
  for (; *p; p++, s++) {
    if (*p == '*') {
      for (;; s++) {
        if (glob_match(p + 1, s))
          return 1;
        if (!*s)
          return 0;
      }
    }
    if (!*s ||
        (*p != '?' && tolower((unsigned char)*p) != tolower((unsigned char)*s)))
      return 0;
  }
  return !*s;
}

/* Does one known_hosts host pattern name this server?  Plain names
 * ("host", "[host]:port"), wildcards, and hashed names ("|1|salt|hash",
 * HMAC-SHA1 of the name keyed with the salt). */
static int host_pattern_matches(struct sftp_priv *s, const char *pat,
                                size_t n) {
  char name[300], *p = xstrndup(pat, n);
  int match = 0;
  if (s->port == 22)
    snprintf(name, sizeof(name), "%s", s->host);
  else
    snprintf(name, sizeof(name), "[%s]:%d", s->host, s->port);
  if (str_has_prefix(p, "|1|")) {
    char *bar = strchr(p + 3, '|');
    uint8_t *salt = NULL, *hash = NULL;
    size_t sl = 0, hl = 0;
    if (bar && !base64_decode(p + 3, (size_t)(bar - p - 3), 0, &salt, &sl) &&
        !base64_decode(bar + 1, strlen(bar + 1), 0, &hash, &hl) && hl == 20) {
      uint8_t mac[EVP_MAX_MD_SIZE];
      unsigned ml = 0;
      HMAC(EVP_sha1(), salt, (int)sl, (const uint8_t *)name, strlen(name), mac,
           &ml);
      match = ml == 20 && !memcmp(mac, hash, 20);
    }
    free(salt);
    free(hash);
  } else if (p[0] != '!') {
    match = glob_match(p, name);
  }
  free(p);
  return match;
}

/* The host key algorithms to ask for, from the key types the trusted file
 * holds for this server (libssh2 prefers ECDSA, OpenSSH clients Ed25519:
 * a known_hosts written by ssh may hold only the latter).  Owned string,
 * or NULL to keep libssh2's order. */
static char *hostkey_prefs(struct sftp_priv *s) {
  struct buf file, out;
  buf_init(&file, 4u << 20);
  buf_init(&out, 0);
  if (file_read_all(s->hostkeys, 4u << 20, &file) || buf_append(&file, "", 1)) {
    buf_destroy(&file);
    return NULL;
  }
  char *sp;
  for (char *line = strtok_r((char *)file.data, "\n", &sp); line;
       line = strtok_r(NULL, "\n", &sp)) {
    line += strspn(line, " \t");
    if (!*line || *line == '#' || *line == '@')
      continue;
    const char *type = line;
    if (!pubkey_line(line, (const uint8_t *)"", 0)) {
      /* known_hosts: "patterns type key"; the patterns must name us. */
      size_t hn = strcspn(line, " \t");
      int ours = 0;
      for (size_t i = 0; i < hn && !ours;) {
        size_t pn = strcspn(line + i, ",");
        pn = MIN(pn, hn - i);
        ours = host_pattern_matches(s, line + i, pn);
        i += pn + 1;
      }
      if (!ours)
        continue;
      type = line + hn + strspn(line + hn, " \t");
    }
    size_t tn = strcspn(type, " \t");
    const char *add = NULL;
    char one[64];
    if (tn == 7 && !strncmp(type, "ssh-rsa", 7))
      add = "rsa-sha2-512,rsa-sha2-256,ssh-rsa";
    else if (tn < sizeof(one)) {
      snprintf(one, sizeof(one), "%.*s", (int)tn, type);
      add = one;
    }
    if (add && !(out.len && strstr((char *)out.data, add)))
      buf_appendf(&out, "%s%s", out.len ? "," : "", add);
  }
  buf_destroy(&file);
  if (!out.len) {
    buf_destroy(&out);
    return NULL;
  }
  return (char *)buf_steal(&out, NULL);
}

/* Checks the server's host key.  Returns 0, or fills s->conn_err. */
static int check_hostkey(struct sftp_priv *s) {
  size_t klen = 0;
  int ktype = 0;
  const uint8_t *key =
      (const uint8_t *)libssh2_session_hostkey(s->sess, &klen, &ktype);
  if (!key) {
    snprintf(s->conn_err, sizeof(s->conn_err), "%s sent no host key",
             s->hostport);
    return -1;
  }
  char tname[64], fp[64] = "SHA256:";
  blob_type(key, klen, tname, sizeof(tname));
  const char *hash = libssh2_hostkey_hash(s->sess, LIBSSH2_HOSTKEY_HASH_SHA256);
  if (hash) {
    char b64[BASE64_LEN(32) + 1];
    size_t n = base64_encode((const uint8_t *)hash, 32, b64);
    while (n && b64[n - 1] == '=')
      b64[--n] = '\0';
    snprintf(fp + 7, sizeof(fp) - 7, "%s", b64);
  }
  struct buf file;
  buf_init(&file, 4u << 20);
  int rc = file_read_all(s->hostkeys, 4u << 20, &file);
  if (rc && rc != -ENOENT) {
    buf_destroy(&file);
    snprintf(s->conn_err, sizeof(s->conn_err),
             "cannot read host keys from %s: %s", s->hostkeys, err_str(rc));
    return -1;
  }
  LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(s->sess);
  int fixed = 0, check = LIBSSH2_KNOWNHOST_CHECK_NOTFOUND;
  buf_append(&file, "", 1); /* NUL */
  char *text = (char *)file.data;
  for (char *sp, *line = strtok_r(text, "\n", &sp); line;
       line = strtok_r(NULL, "\n", &sp)) {
    line += strspn(line, " \t");
    if (!*line || *line == '#')
      continue;
    int m = pubkey_line(line, key, klen);
    if (m == 1)
      fixed = 1;
    else if (m == -1 && !fixed)
      fixed = -1;
    else if (m == 0)
      libssh2_knownhost_readline(kh, line, strlen(line),
                                 LIBSSH2_KNOWNHOST_FILE_OPENSSH);
  }
  buf_destroy(&file);
  if (fixed != 1) {
    struct libssh2_knownhost *found = NULL;
    check = libssh2_knownhost_checkp(
        kh, s->host, s->port, (const char *)key, klen,
        LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
            knownhost_keytype(ktype),
        &found);
    if (check == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND && fixed == -1)
      check = LIBSSH2_KNOWNHOST_CHECK_MISMATCH;
  }
  libssh2_knownhost_free(kh);
  if (fixed == 1 || check == LIBSSH2_KNOWNHOST_CHECK_MATCH)
    return 0;
  if (check == LIBSSH2_KNOWNHOST_CHECK_MISMATCH) {
    snprintf(s->conn_err, sizeof(s->conn_err),
             "host key of %s has CHANGED: the server sent %s %s, which is not "
             "the key %s holds for it; refusing to connect (if the server's "
             "key really changed, update %s)",
             s->hostport, tname, fp, s->hostkeys, s->hostkeys);
    return -1;
  }
  char port[16] = "";
  if (s->port != 22)
    snprintf(port, sizeof(port), "-p %d ", s->port);
  snprintf(s->conn_err, sizeof(s->conn_err),
           "host key of %s is unknown: %s %s is not in %s%s; refusing to "
           "connect (check the fingerprint, then add it, e.g. ssh-keyscan "
           "%s%s >> %s%s)",
           s->hostport, tname, fp, s->hostkeys,
           rc == -ENOENT ? " (no such file)" : "", port, s->host, s->hostkeys,
           s->hostkeys_explicit ? "" : ", or set host-key-path");
  return -1;
}

/* --- driving --- */

/* One step of connection setup.  Returns STEP_NEXT, STEP_AGAIN, or
 * STEP_DONE after conn_fail. */
static int conn_step(struct sftp_priv *s) {
  int rc;
  switch (s->st) {
  case C_DOWN:
    if (!s->head)
      return STEP_DONE;
    conn_start(s);
    return STEP_DONE;
  case C_BACKOFF:
  case C_RESOLVING:
  case C_READY:
    return STEP_DONE;
  case C_CONNECTING: {
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl))
      soerr = errno;
    if (soerr == EINPROGRESS)
      return STEP_AGAIN;
    if (soerr) {
      loop_poll_free(s->poll);
      s->poll = NULL;
      close(s->fd);
      s->fd = -1;
      if (s->ai_next && !conn_connect(s))
        return STEP_AGAIN;
      s->st = C_DOWN;
      conn_fail(s, -soerr, 0, "cannot connect to %s: %s", s->hostport,
                strerror(soerr));
      return STEP_DONE;
    }
    s->sess = libssh2_session_init();
    if (!s->sess) {
      conn_fail(s, -ENOMEM, 0, "cannot create an SSH session");
      return STEP_DONE;
    }
    libssh2_session_set_blocking(s->sess, 0);
    free(s->hostkey_types);
    s->hostkey_types = hostkey_prefs(s);
    if (s->hostkey_types &&
        libssh2_session_method_pref(s->sess, LIBSSH2_METHOD_HOSTKEY,
                                    s->hostkey_types))
      log_debug(NULL, s->b->name, "sftp: host key types %s not supported",
                s->hostkey_types);
    s->st = C_HANDSHAKE;
    return STEP_NEXT;
  }
  case C_HANDSHAKE:
    rc = libssh2_session_handshake(s->sess, s->fd);
    if (rc == LIBSSH2_ERROR_EAGAIN)
      return STEP_AGAIN;
    if (rc) {
      conn_fail(s, ERR_PROTOCOL, 0, "SSH handshake with %s failed: %s%s%s%s%s",
                s->hostport, ssh_errmsg(s),
                s->hostkey_types ? " (asked for host key types " : "",
                s->hostkey_types ? s->hostkey_types : "",
                s->hostkey_types ? ", the ones trusted in " : "",
                s->hostkey_types ? s->hostkeys : "");
      if (s->hostkey_types)
        strncat(s->conn_err, ")",
                sizeof(s->conn_err) - strlen(s->conn_err) - 1);
      return STEP_DONE;
    }
    s->st = C_HOSTKEY;
    return STEP_NEXT;
  case C_HOSTKEY:
    if (check_hostkey(s)) {
      char msg[sizeof(s->conn_err)];
      snprintf(msg, sizeof(msg), "%s", s->conn_err);
      conn_fail(s, ERR_AUTH, 1, "%s", msg);
      return STEP_DONE;
    }
    s->st = C_AUTH_LIST;
    return STEP_NEXT;
  case C_AUTH_LIST: {
    char *list =
        libssh2_userauth_list(s->sess, s->user, (unsigned)strlen(s->user));
    if (!list) {
      if (libssh2_userauth_authenticated(s->sess)) {
        s->st = C_SFTP_INIT;
        return STEP_NEXT;
      }
      if (libssh2_session_last_errno(s->sess) == LIBSSH2_ERROR_EAGAIN)
        return STEP_AGAIN;
      conn_fail(s, ERR_PROTOCOL, 0, "SSH authentication with %s failed: %s",
                s->hostport, ssh_errmsg(s));
      return STEP_DONE;
    }
    s->auth_methods = xstrdup(list);
    int pk = strstr(list, "publickey") != NULL;
    int pw = strstr(list, "password") != NULL;
    if (s->key.len && pk)
      s->st = C_AUTH_KEY;
    else if (s->password && pw)
      s->st = C_AUTH_PASSWORD;
    else {
      char msg[300];
      snprintf(msg, sizeof(msg),
               "authentication as %s on %s impossible: the server accepts "
               "%s, and this replica has %s",
               s->user, s->hostport, list,
               s->key.len && s->password ? "a key and a password"
               : s->key.len              ? "a key (key-path) only"
                                         : "a password only");
      conn_fail(s, ERR_AUTH, 1, "%s", msg);
      return STEP_DONE;
    }
    return STEP_NEXT;
  }
  case C_AUTH_KEY:
    rc = libssh2_userauth_publickey_frommemory(
        s->sess, s->user, strlen(s->user), NULL, 0, (const char *)s->key.data,
        s->key.len, NULL);
    if (rc == LIBSSH2_ERROR_EAGAIN)
      return STEP_AGAIN;
    if (rc == 0) {
      s->st = C_SFTP_INIT;
      return STEP_NEXT;
    }
    if (rc != LIBSSH2_ERROR_AUTHENTICATION_FAILED &&
        rc != LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED && rc != LIBSSH2_ERROR_FILE &&
        rc != LIBSSH2_ERROR_METHOD_NOT_SUPPORTED) {
      conn_fail(s, ERR_PROTOCOL, 0, "SSH authentication with %s failed: %s",
                s->hostport, ssh_errmsg(s));
      return STEP_DONE;
    }
    if (s->password && strstr(s->auth_methods, "password")) {
      s->st = C_AUTH_PASSWORD;
      return STEP_NEXT;
    }
    {
      char msg[400];
      snprintf(msg, sizeof(msg),
               "authentication as %s on %s failed: the key in %s was %s",
               s->user, s->hostport, s->key_path,
               rc == LIBSSH2_ERROR_FILE ? "not usable (an unencrypted OpenSSH "
                                          "or PEM private key is needed)"
                                        : "refused");
      conn_fail(s, ERR_AUTH, 1, "%s", msg);
    }
    return STEP_DONE;
  case C_AUTH_PASSWORD:
    rc = libssh2_userauth_password_ex(s->sess, s->user,
                                      (unsigned)strlen(s->user), s->password,
                                      (unsigned)strlen(s->password), NULL);
    if (rc == LIBSSH2_ERROR_EAGAIN)
      return STEP_AGAIN;
    if (rc == 0) {
      s->st = C_SFTP_INIT;
      return STEP_NEXT;
    }
    if (rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED ||
        rc == LIBSSH2_ERROR_PASSWORD_EXPIRED) {
      char msg[300];
      snprintf(msg, sizeof(msg),
               "authentication as %s on %s failed: password refused%s", s->user,
               s->hostport, s->key.len ? " (and the key too)" : "");
      conn_fail(s, ERR_AUTH, 1, "%s", msg);
      return STEP_DONE;
    }
    conn_fail(s, ERR_PROTOCOL, 0, "SSH authentication with %s failed: %s",
              s->hostport, ssh_errmsg(s));
    return STEP_DONE;
  case C_SFTP_INIT:
    s->sftp = libssh2_sftp_init(s->sess);
    if (!s->sftp) {
      if (libssh2_session_last_errno(s->sess) == LIBSSH2_ERROR_EAGAIN)
        return STEP_AGAIN;
      conn_fail(s, ERR_PROTOCOL, 0, "cannot start SFTP on %s: %s", s->hostport,
                ssh_errmsg(s));
      return STEP_DONE;
    }
    s->st = C_READY;
    s->backoff_ms = 0;
    s->idle_since_ms = loop_now_ms();
    log_debug(NULL, s->b->name, "sftp: connected to %s as %s", s->hostport,
              s->user);
    return STEP_NEXT;
  }
  return STEP_DONE;
}

static int op_step(struct sftp_priv *s, struct sop *o) {
  switch (o->kind) {
  case S_PUT:
    return put_step(s, o);
  case S_GET:
    return get_step(s, o);
  case S_LIST:
    return list_step(s, o);
  case S_DEL:
    return del_step(s, o);
  case S_GET_TAG:
    return get_tag_step(s, o);
  case S_PUT_COND:
    return put_cond_step(s, o);
  }
  return STEP_DONE;
}

static void drive(struct sftp_priv *s) {
  if (s->driving) {
    s->redrive = 1;
    return;
  }
  s->driving = 1;
  for (;;) {
    s->redrive = 0;
    int rc;
    if (s->head && s->head->phase == PHASE_FAILED) {
      sop_finish(s, s->head);
      continue;
    }
    if (s->st != C_READY) {
      rc = conn_step(s);
      if (rc == STEP_NEXT)
        continue;
      if (rc == STEP_AGAIN)
        wait_socket(s, s->st == C_CONNECTING ? LOOP_POLL_WRITE : 0);
      if (s->redrive)
        continue;
      break;
    }
    struct sop *o = s->head;
    if (!o) {
      /* Idle: nothing to wait for until the next operation. */
      if (s->poll)
        loop_poll_stop(s->poll);
      loop_timer_stop(s->watchdog);
      break;
    }
    if (!o->started && loop_now_ms() - s->idle_since_ms > IDLE_RECONNECT_MS) {
      /* Idle for long: NATs and firewalls may have dropped the connection
       * without a word, which only the watchdog would notice.  Start
       * afresh instead. */
      log_debug(NULL, s->b->name, "sftp: reconnecting to %s after idling",
                s->hostport);
      conn_teardown(s);
      continue;
    }
    o->started = 1;
    rc = op_step(s, o);
    if (rc == LIBSSH2_ERROR_EAGAIN)
      rc = STEP_AGAIN;
    if (rc == STEP_NEXT)
      continue;
    if (rc == STEP_AGAIN) {
      wait_socket(s, 0);
      break;
    }
    if (rc == STEP_DONE) {
      s->backoff_ms = 0;
      s->idle_since_ms = loop_now_ms();
      sop_finish(s, o);
      continue;
    }
    /* A connection error. */
    char *msg = NULL;
    libssh2_session_last_error(s->sess, &msg, NULL, 0);
    conn_fail(s, rc == LIBSSH2_ERROR_TIMEOUT ? -ETIMEDOUT : -ECONNRESET, 0,
              "connection to %s lost: %s", s->hostport,
              msg && *msg ? msg : "socket error");
  }
  s->driving = 0;
}

static void on_poll(void *arg, int status, int events) {
  struct sftp_priv *s = arg;
  (void)events;
  if (status < 0 && s->st != C_CONNECTING) {
    /* libuv reports POLLERR as a status: the socket's error says what. */
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (s->fd >= 0)
      getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr) {
      conn_fail(s, -soerr, 0, "connection to %s lost: %s", s->hostport,
                strerror(soerr));
      return;
    }
  }
  drive(s); /* a connect in progress learns its result from SO_ERROR */
}

static void on_kick(void *arg) {
  struct sftp_priv *s = arg;
  if (s->st == C_BACKOFF)
    s->st = C_DOWN;
  drive(s);
}

static void on_watchdog(void *arg) {
  struct sftp_priv *s = arg;
  conn_fail(s, -ETIMEDOUT, 0, "%s did not answer for %d s", s->hostport,
            (s->st == C_READY ? IO_TIMEOUT_MS : CONNECT_TIMEOUT_MS) / 1000);
}

/* --- ops --- */

/* Keys must stay below the root: no absolute keys, no ".." elements. */
static int key_is_safe(const char *key) {
  if (key[0] == '/')
    return 0;
  for (const char *p = key; *p;) {
    size_t n = strcspn(p, "/");
    if (n == 2 && p[0] == '.' && p[1] == '.')
      return 0;
    p += n;
    if (*p == '/')
      p++;
  }
  return 1;
}

static struct sop *sop_new(struct backend *b, enum sop_kind kind,
                           const char *key, backend_cb cb, void *arg) {
  struct sop *o = xcalloc(1, sizeof(*o));
  o->kind = kind;
  o->key = xstrdup(key ? key : "");
  o->cb = cb;
  o->arg = arg;
  if (key && !key_is_safe(key))
    sop_fail(b->priv, o, -EINVAL, "invalid key");
  return o;
}

/* An operation that failed before it started (a bad key) still answers
 * later, in its turn, without a connection. */
static void submit(struct backend *b, struct sop *o) {
  if (o->status)
    o->phase = PHASE_FAILED;
  enqueue(b, o);
}

static void sftp_put(struct backend *b, const char *key,
                     const struct payload *p, backend_cb cb, void *arg) {
  struct sftp_priv *s = b->priv;
  struct sop *o = sop_new(b, S_PUT, key, cb, arg);
  o->path = remote_path(s, key);
  o->tmp = xasprintf("%s.tmp", o->path);
  o->payload = *p;
  submit(b, o);
}

static void sftp_get(struct backend *b, const char *key, int64_t off,
                     int64_t len, const struct sink *sk, backend_cb cb,
                     void *arg) {
  struct sftp_priv *s = b->priv;
  struct sop *o = sop_new(b, S_GET, key, cb, arg);
  o->path = remote_path(s, key);
  o->off = off < 0 ? 0 : off;
  o->len = len;
  o->sink = *sk;
  if (sk->buf)
    o->sink_base = sk->buf->len;
  submit(b, o);
}

static void sftp_list(struct backend *b, const char *prefix, int delimiter,
                      struct obj_list *out, backend_cb cb, void *arg) {
  struct sop *o = sop_new(b, S_LIST, prefix, cb, arg);
  o->delimiter = delimiter;
  o->out = out;
  submit(b, o);
}

static void sftp_del(struct backend *b, char *const *keys, size_t n,
                     backend_cb cb, void *arg) {
  struct sop *o = sop_new(b, S_DEL, NULL, cb, arg);
  o->keys = xcalloc(n ? n : 1, sizeof(char *));
  for (size_t i = 0; i < n; i++) {
    o->keys[i] = xstrdup(keys[i]);
    if (!o->status && !key_is_safe(keys[i])) {
      o->key_i = i;
      sop_fail(b->priv, o, -EINVAL, "invalid key");
    }
  }
  o->n_keys = n;
  submit(b, o);
}

static void sftp_get_tag(struct backend *b, const char *key, struct buf *out,
                         char *tag, backend_cb cb, void *arg) {
  struct sftp_priv *s = b->priv;
  struct sop *o = sop_new(b, S_GET_TAG, key, cb, arg);
  o->dir = cond_dir(s, key);
  o->tag = tag;
  o->sink.buf = out;
  o->sink.fd = -1;
  o->sink_base = out->len;
  submit(b, o);
}

static void sftp_put_cond(struct backend *b, const char *key,
                          const uint8_t *data, size_t len, const char *match,
                          char *tag_out, backend_cb cb, void *arg) {
  struct sftp_priv *s = b->priv;
  struct sop *o = sop_new(b, S_PUT_COND, key, cb, arg);
  o->dir = cond_dir(s, key);
  o->tag = tag_out;
  o->seq = (match ? strtoull(match, NULL, 10) : 0) + 1;
  o->path = cond_version(o->dir, o->seq);
  char host[64] = "host";
  gethostname(host, sizeof(host) - 1);
  host[strcspn(host, "/.")] = '\0';
  o->tmp = xasprintf("%s/.%s.%d.%llu.tmp", o->dir, host, (int)getpid(),
                     (unsigned long long)++g_cond_tmp_seq);
  o->payload = (struct payload){.data = data, .fd = -1, .len = (int64_t)len};
  buf_init(&o->check, COND_READ_MAX);
  submit(b, o);
}

/* --- open / close --- */

static char *default_known_hosts(void) {
  const char *home = getenv("HOME");
  if (!home || !*home) {
    struct passwd *pw = getpwuid(getuid());
    home = pw ? pw->pw_dir : "/";
  }
  return path_join(home, ".ssh/known_hosts");
}

/* "host", "host:port", "[v6]" or "[v6]:port". */
static int split_host(const char *hp, char **host, int *port) {
  const char *colon = NULL;
  if (hp[0] == '[') {
    const char *close = strchr(hp, ']');
    if (!close)
      return -EINVAL;
    *host = xstrndup(hp + 1, (size_t)(close - hp - 1));
    if (close[1] == ':')
      colon = close + 1;
    else if (close[1])
      return -EINVAL;
  } else {
    colon = strrchr(hp, ':');
    if (colon && strchr(hp, ':') != colon)
      colon = NULL; /* a bare IPv6 address */
    *host = colon ? xstrndup(hp, (size_t)(colon - hp)) : xstrdup(hp);
  }
  *port = 22;
  if (colon) {
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p <= 0 || p > 65535)
      return -EINVAL;
    *port = (int)p;
  }
  return **host ? 0 : -EINVAL;
}

static void sftp_priv_free(struct sftp_priv *s) {
  free(s->host);
  free(s->hostport);
  free(s->user);
  if (s->password) {
    explicit_bzero(s->password, strlen(s->password));
    free(s->password);
  }
  free(s->key_path);
  if (s->key.data)
    explicit_bzero(s->key.data, s->key.len);
  buf_destroy(&s->key);
  free(s->root);
  free(s->hostkeys);
  free(s->hostkey_types);
  if (s->ai)
    freeaddrinfo(s->ai);
  free(s);
}

static int sftp_open(struct backend *b, const struct replica_config *cfg,
                     char *err, size_t errlen) {
  const char *name = cfg->name ? cfg->name : "sftp";
  if (!cfg->host || !*cfg->host || !cfg->user || !*cfg->user) {
    snprintf(err, errlen, "replica %s: %s required for sftp replica", name,
             !cfg->host || !*cfg->host ? "host" : "user");
    return ERR_CONFIG;
  }
  int has_pw = cfg->password && *cfg->password;
  int has_key = cfg->key_path && *cfg->key_path;
  if (!has_pw && !has_key) {
    snprintf(err, errlen,
             "replica %s: sftp replica needs a password or a key-path", name);
    return ERR_CONFIG;
  }
  struct sftp_priv *s = xcalloc(1, sizeof(*s));
  s->b = b;
  s->fd = -1;
  buf_init(&s->key, 1u << 20);
  if (split_host(cfg->host, &s->host, &s->port)) {
    snprintf(err, errlen, "replica %s: invalid sftp host \"%s\"", name,
             cfg->host);
    sftp_priv_free(s);
    return ERR_CONFIG;
  }
  s->hostport = strchr(s->host, ':') ? xasprintf("[%s]:%d", s->host, s->port)
                                     : xasprintf("%s:%d", s->host, s->port);
  s->user = xstrdup(cfg->user);
  if (has_pw)
    s->password = xstrdup(cfg->password);
  if (has_key) {
    s->key_path = path_abs(cfg->key_path);
    int rc = file_read_all(s->key_path, 1u << 20, &s->key);
    if (rc || !s->key.len) {
      snprintf(err, errlen, "replica %s: key-path %s: %s", name, s->key_path,
               rc ? err_str(rc) : "empty file");
      sftp_priv_free(s);
      return ERR_CONFIG;
    }
    if (memmem(s->key.data, s->key.len, "ENCRYPTED", 9)) {
      snprintf(err, errlen,
               "replica %s: key-path %s: the private key is protected by a "
               "passphrase; sluice needs an unencrypted key",
               name, s->key_path);
      sftp_priv_free(s);
      return ERR_CONFIG;
    }
  }
  if (cfg->host_key_path && *cfg->host_key_path) {
    s->hostkeys = path_abs(cfg->host_key_path);
    s->hostkeys_explicit = 1;
    if (access(s->hostkeys, R_OK)) {
      snprintf(err, errlen, "replica %s: host-key-path %s: %s", name,
               s->hostkeys, strerror(errno));
      sftp_priv_free(s);
      return ERR_CONFIG;
    }
  } else {
    s->hostkeys = default_known_hosts();
  }
  /* The path is absolute on the server when it starts with '/', else
   * relative to the login directory (Litestream keeps it as written). */
  const char *path = cfg->path ? cfg->path : "";
  size_t pl = strlen(path);
  while (pl > 1 && path[pl - 1] == '/')
    pl--;
  s->root = xstrndup(path, pl);
  b->desc = xasprintf("sftp://%s@%s%s%s", s->user,
                      s->port == 22 ? s->host : s->hostport,
                      s->root[0] == '/' ? "" : "/", s->root);
  s->kick = loop_timer_new(on_kick, s);
  s->watchdog = loop_timer_new(on_watchdog, s);
  b->priv = s;
  return 0;
}

static void sftp_close(struct backend *b) {
  struct sftp_priv *s = b->priv;
  if (!s)
    return;
  /* Operations still queued (a shutdown that timed out) are dropped
   * without their callbacks: their owners are gone. */
  conn_teardown(s);
  while (s->head) {
    struct sop *o = s->head;
    s->head = o->next;
    sop_free(o);
  }
  s->tail = NULL;
  loop_timer_free(s->kick);
  loop_timer_free(s->watchdog);
  s->kick = s->watchdog = NULL;
  b->priv = NULL;
  if (s->resolving) {
    s->closed = 1; /* freed when the resolver job returns */
    return;
  }
  sftp_priv_free(s);
}

/* backend.c allocates priv_size bytes; this backend keeps its own state
 * (it may outlive the backend while a resolver job runs), so it asks for
 * none and sets b->priv itself. */
const struct backend_ops backend_sftp = {
    .name = "sftp",
    .caps = BACKEND_CAP_COND,
    .priv_size = 0,
    .open = sftp_open,
    .close = sftp_close,
    .put = sftp_put,
    .get = sftp_get,
    .list = sftp_list,
    .del = sftp_del,
    .get_tag = sftp_get_tag,
    .put_cond = sftp_put_cond,
};
