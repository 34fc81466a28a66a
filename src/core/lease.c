/*
 * The single-writer lease of a replica path (lease.h has the format and
 * the states).  Every write is conditional on the version last seen:
 * create-if-absent for a path never leased, replace-if-unchanged for the
 * rest, so of two hosts racing for one path exactly one wins, and an owner
 * whose lease was taken learns it at its next renewal (the write fails
 * with ERR_PRECONDITION) and stops uploading.
 *
 * Expiry is judged by the reader's wall clock against `expires_ns`: hosts
 * need clocks within a fraction of the TTL of each other (NTP).  The
 * owner itself stops at valid_until, measured on its monotonic clock from
 * the start of its last successful write, a sixth of the TTL before the
 * expiry others see.
 */
#include "core/lease.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "loop/loop.h"

#define LEASE_BODY_MAX 4096
#define RETRY_MS 1000

struct lease {
  struct backend *b;
  const char *db, *name; /* borrowed, for logs */
  char *owner;           /* our owner id */
  const char *meta;      /* borrowed: where the owner id is kept */
  int persisted;         /* the owner id is in meta */
  int started;           /* lease_start ran */
  const char *host;      /* this_host(): the same for every lease */
  int pid;
  int64_t started_ns;
  int64_t ttl_ns;
  int64_t idle_ttl_ns; /* lease_set_idle_ttl: the expiry while unused */
  int64_t last_use_ns; /* monotonic: the last lease_use */
  int idle_written;    /* our last write has the idle expiry */
  int w_idle;          /* the write in flight has it */
  int wake_wanted;     /* lease_use wants a renewal at ttl before uploads */
  int force;
  enum lease_state state;
  int refs;  /* replicas holding it (lease_join, lease_drop) */
  int busy;  /* a request in flight */
  int freed; /* lease_free while busy: the callback frees it */
  int64_t seq;
  char tag[BACKEND_TAG_MAX];  /* our version, while held */
  char seen[BACKEND_TAG_MAX]; /* the version last read */
  char wtag[BACKEND_TAG_MAX]; /* the version of the write in flight */
  struct buf rd;              /* lock.json as read */
  char *wr;                   /* the body being written */
  int64_t write_start;        /* monotonic start of the write in flight */
  int64_t valid_until;        /* monotonic: uploads allowed until */
  int renew_failing;          /* a renewal failed (not a precondition) */
  char *refused_owner;        /* whose lease we last said we wait for */
  char *last_err;             /* the last acquisition error logged */
  int took_from_other;        /* the write in flight takes over a live one */
  int prev_ours;              /* the version taken was our own owner's */
  struct loop_timer *timer;
  /* Who hears of changes: one replica, or every replica of a dir entry
   * (lease_join); a subscriber that left has cb NULL until compacted. */
  struct lease_sub *subs;
  size_t n_subs, cap_subs, live_subs;
  size_t first_live; /* no live subscriber below this index */
  /* Subscribers gone dormant (lease_park): each holds a ref and keeps the
   * lease held and renewed as if it still replicated. */
  size_t parked;
  /* An owner id found in a parked subscriber's meta directory before the
   * lease started (owner_from_subs can no longer see that one). */
  char *owner_hint;
  size_t hints_tried;
  int notifying;
  void (*release_cb)(void *arg);
  void *release_arg;
  /* Shared (lease_join): the registry key, and what the lease owns. */
  char *key;
  struct backend *own_b;
  char *own_meta, *own_db;
  struct lease *next_shared;
  const char *(*meta_of)(void *arg); /* a subscriber's meta directory */
};

struct lease_sub {
  lease_change_cb cb;
  void *arg;
};

static struct lease *g_shared; /* leases of dir entries, by key */

/* What lock.json says. */
struct lease_info {
  char owner[256];
  char host[256];
  long pid;
  int64_t expires_ns;
  int released;
};

static void acquire(struct lease *l);
static void renew(struct lease *l);

const char *lease_state_name(enum lease_state s) {
  static const char *names[] = {"acquire", "waiting", "held", "releasing",
                                "closed"};
  return names[s];
}

/* Drops the entries of subscribers that left, once they are as many as
 * the live ones (a dir entry's lease may have 100,000 subscribers: compacting
 * at every join or leave was quadratic). */
static void subs_compact(struct lease *l) {
  if (l->notifying || l->n_subs - l->live_subs <= l->live_subs)
    return;
  size_t k = 0;
  for (size_t i = 0; i < l->n_subs; i++)
    if (l->subs[i].cb)
      l->subs[k++] = l->subs[i];
  l->n_subs = k;
  l->first_live = 0;
}

static void sub_add(struct lease *l, lease_change_cb cb, void *arg) {
  subs_compact(l);
  if (l->n_subs == l->cap_subs) {
    l->cap_subs = l->cap_subs ? 2 * l->cap_subs : 4;
    l->subs = xrealloc(l->subs, l->cap_subs * sizeof(*l->subs));
  }
  l->subs[l->n_subs++] = (struct lease_sub){cb, arg};
  l->live_subs++;
}

/* 1 if sub was subscribed (it is not now).  Databases leave in about the
 * order they joined: the search starts at the first live entry. */
static int sub_remove(struct lease *l, void *sub) {
  for (size_t i = l->first_live; i < l->n_subs; i++) {
    if (l->subs[i].cb && l->subs[i].arg == sub) {
      l->subs[i].cb = NULL;
      l->live_subs--;
      while (l->first_live < l->n_subs && !l->subs[l->first_live].cb)
        l->first_live++;
      subs_compact(l);
      return 1;
    }
  }
  return 0;
}

/* Tells every subscriber (each callback may leave or release). */
static void notify(struct lease *l, int held) {
  l->notifying++;
  for (size_t i = 0; i < l->n_subs; i++)
    if (l->subs[i].cb)
      l->subs[i].cb(l->subs[i].arg, held);
  l->notifying--;
  subs_compact(l);
}

static void set_state(struct lease *l, enum lease_state s) {
  if (l->state == s || l->state == L_CLOSED)
    return;
  if (s != L_HELD)
    l->idle_written = l->wake_wanted = 0;
  log_debug(l->db, l->name, "lease %s -> %s", lease_state_name(l->state),
            lease_state_name(s));
  l->state = s;
  if (s != L_RELEASING && s != L_CLOSED)
    notify(l, s == L_HELD);
}

/* --- the owner id --- */

int lease_owner_persist(const char *meta, const char *id) {
  struct stat st;
  if (stat(meta, &st) || !S_ISDIR(st.st_mode))
    return -ENOENT; /* the engine has not made it yet */
  char *path = path_join(meta, LEASE_OWNER_FILE);
  char *line = xasprintf("%s\n", id);
  int rc = file_write_atomic(path, line, strlen(line), 0600);
  if (rc)
    log_warn(meta, NULL,
             "write %s: %s (the lease owner id will not survive a restart)",
             path, strerror(-rc));
  free(line);
  free(path);
  return rc;
}

/* This host's name as an owner id begins with it (no ':'). */
static void owner_host(char *host, size_t n) {
  snprintf(host, n, "localhost");
  gethostname(host, n - 1);
  host[n - 1] = '\0'; /* (a truncated name is not terminated) */
  host[strcspn(host, ":\n")] = '\0';
}

/* The id kept in meta for this host, or NULL. */
static char *owner_read(const char *meta) {
  char host[256];
  owner_host(host, sizeof(host));
  char *path = path_join(meta, LEASE_OWNER_FILE);
  struct buf b;
  buf_init(&b, 1024);
  char *id = NULL;
  if (!file_read_all(path, 1024, &b) && b.len) {
    buf_append(&b, "", 1);
    char *s = (char *)b.data;
    s[strcspn(s, "\r\n")] = '\0';
    size_t hl = strlen(host);
    /* Another host's id (a meta directory copied along with the database)
     * is not ours. */
    if (!strncmp(s, host, hl) && s[hl] == ':')
      id = xstrdup(s);
  }
  buf_destroy(&b);
  free(path);
  return id;
}

char *lease_owner_id(const char *meta, int *persisted) {
  char *id = owner_read(meta);
  if (persisted)
    *persisted = id != NULL;
  if (id)
    return id;
  char host[256];
  owner_host(host, sizeof(host));
  /* Seconds with nanoseconds: unique even for databases of one process
   * started in the same second. */
  int64_t now = time_now_ns();
  return xasprintf("%s:%d:%" PRId64 ".%09" PRId64, host, (int)getpid(),
                   (int64_t)(now / NS_PER_SEC), (int64_t)(now % NS_PER_SEC));
}

/* A shared lease whose first database has no id kept (a database created
 * while sluice was down sorts first, or the first run stopped before that
 * database's meta directory existed): the id kept by one of the next
 * subscribers, so a restart still knows the lease in the store as its own
 * (lease_last_ours) and the databases asleep from the start list nothing.
 * Written to l->meta once taken. */
#define OWNER_SEARCH_MAX 64
static int owner_from_subs(struct lease *l) {
  if (!l->meta_of)
    return 0;
  size_t tried = 0;
  for (size_t i = l->first_live; i < l->n_subs && tried < OWNER_SEARCH_MAX;
       i++) {
    if (!l->subs[i].cb)
      continue;
    const char *m = l->meta_of(l->subs[i].arg);
    if (!m || !strcmp(m, l->meta))
      continue;
    tried++;
    char *id = owner_read(m);
    if (id) {
      free(l->owner);
      l->owner = id;
      return 1;
    }
  }
  return 0;
}

/* --- lock.json --- */

/* The string or number after "key": in a flat JSON object we wrote. */
static int json_field(const char *body, const char *key, char *out,
                      size_t outlen) {
  char pat[64];
  snprintf(pat, sizeof(pat), "\"%s\"", key);
  const char *p = strstr(body, pat);
  if (!p)
    return -1;
  p += strlen(pat);
  while (*p == ' ' || *p == ':' || *p == '\t' || *p == '\n')
    p++;
  size_t n = 0;
  if (*p == '"') {
    p++;
    while (p[n] && p[n] != '"')
      n++;
  } else {
    while (p[n] && p[n] != ',' && p[n] != '}' && p[n] != ' ' && p[n] != '\n')
      n++;
  }
  if (n >= outlen)
    n = outlen - 1;
  memcpy(out, p, n);
  out[n] = '\0';
  return 0;
}

static int parse_info(struct buf *b, struct lease_info *in) {
  memset(in, 0, sizeof(*in));
  if (buf_append(b, "", 1))
    return -1;
  b->len--;
  const char *s = (const char *)b->data;
  char v[64];
  if (json_field(s, "owner", in->owner, sizeof(in->owner)) || !in->owner[0] ||
      json_field(s, "expires_ns", v, sizeof(v)))
    return -1;
  in->expires_ns = strtoll(v, NULL, 10);
  json_field(s, "host", in->host, sizeof(in->host));
  if (!json_field(s, "pid", v, sizeof(v)))
    in->pid = strtol(v, NULL, 10);
  in->released = !json_field(s, "released", v, sizeof(v)) && !strcmp(v, "true");
  return 0;
}

/* The TTL the write in flight gives the lease. */
static int64_t write_ttl(const struct lease *l) {
  return l->w_idle ? l->idle_ttl_ns : l->ttl_ns;
}

static char *make_body(struct lease *l, int released) {
  int64_t now = time_now_ns();
  int64_t exp = released ? now : now + write_ttl(l);
  char started[32], renewed[32], expires[32], ttl[40];
  time_format_rfc3339(l->started_ns, started);
  time_format_rfc3339(now, renewed);
  time_format_rfc3339(exp, expires);
  duration_format(write_ttl(l), ttl);
  return xasprintf("{\"version\":1,\"owner\":\"%s\",\"host\":\"%s\","
                   "\"pid\":%d,\"started\":\"%s\",\"renewed\":\"%s\","
                   "\"expires\":\"%s\",\"expires_ns\":%" PRId64
                   ",\"ttl\":\"%s\",\"idle\":%s,\"seq\":%" PRId64
                   ",\"released\":%s}\n",
                   l->owner, l->host, l->pid, started, renewed, expires, exp,
                   ttl, l->w_idle && !released ? "true" : "false", ++l->seq,
                   released ? "true" : "false");
}

static void describe(const struct lease_info *in, char *out, size_t n) {
  char exp[32];
  time_format_rfc3339(in->expires_ns, exp);
  snprintf(out, n, "host %s (pid %ld, owner %s) %s %s",
           in->host[0] ? in->host : "?", in->pid, in->owner,
           in->released ? "released at" : "until", exp);
}

/* --- requests --- */

/* Ends a request; 1 if the lease was freed meanwhile (stop at once). */
static int request_end(struct lease *l) {
  assert(l->busy);
  l->busy = 0;
  if (l->freed) {
    lease_free(l);
    return 1;
  }
  return 0;
}

static void finish_release(struct lease *l) {
  loop_timer_stop(l->timer);
  set_state(l, L_CLOSED);
  void (*cb)(void *) = l->release_cb;
  l->release_cb = NULL;
  if (cb)
    cb(l->release_arg);
}

static void on_released(void *arg, int status, const char *err) {
  struct lease *l = arg;
  free(l->wr);
  l->wr = NULL;
  if (request_end(l))
    return;
  if (status == ERR_PRECONDITION)
    log_warn(l->db, l->name,
             "lease on %s: not released, another owner holds it now",
             l->b->desc);
  else if (status)
    log_warn(l->db, l->name,
             "lease on %s: release failed (%s); it expires by itself",
             l->b->desc, err ? err : err_str(status));
  else
    log_info(l->db, l->name, "lease on %s released", l->b->desc);
  finish_release(l);
}

static void start_release(struct lease *l) {
  /* Not kept when taken (the meta directory did not exist yet): now, so
   * the next start knows this version as its own. */
  if (!l->persisted)
    l->persisted = lease_owner_persist(l->meta, l->owner) == 0;
  set_state(l, L_RELEASING);
  loop_timer_stop(l->timer);
  l->w_idle = 0;
  l->wr = make_body(l, 1);
  l->busy = 1;
  backend_put_cond(l->b, LEASE_KEY, (const uint8_t *)l->wr, strlen(l->wr),
                   l->tag, l->wtag, on_released, l);
}

/* A request ended while a release waited for it. */
static int release_pending(struct lease *l) {
  if (!l->release_cb)
    return 0;
  if (l->busy) /* the callback started the release itself */
    return 1;
  if (l->state == L_HELD)
    start_release(l);
  else
    finish_release(l);
  return 1;
}

/* Our write succeeded.  Returns 1 when it is the renewal at the TTL that a
 * lease_use after an idle write waited for. */
static int hold(struct lease *l) {
  int64_t ttl = write_ttl(l);
  memcpy(l->tag, l->wtag, BACKEND_TAG_MAX);
  l->valid_until = l->write_start + ttl - ttl / 6;
  if (l->w_idle && !l->idle_written)
    log_debug(l->db, l->name, "lease on %s: idle, renewed for %" PRId64 " s",
              l->b->desc, (int64_t)(ttl / NS_PER_SEC));
  l->idle_written = l->w_idle;
  int woke = !l->w_idle && l->wake_wanted;
  if (woke)
    l->wake_wanted = 0;
  str_set(&l->refused_owner, NULL);
  str_set(&l->last_err, NULL);
  /* The meta directory exists once the engine opened the database: keep
   * the id there for a restart (a few bytes, once). */
  if (!l->persisted)
    l->persisted = lease_owner_persist(l->meta, l->owner) == 0;
  if (l->renew_failing)
    log_info(l->db, l->name, "lease on %s renewed again", l->b->desc);
  l->renew_failing = 0;
  loop_timer_start(l->timer, (uint64_t)(ttl / 3 / NS_PER_MS) + 1);
  set_state(l, L_HELD);
  return woke;
}

/* The lease cannot be taken (the store fails): as serious as a replica
 * sync error, since nothing goes to the path; logged once per message. */
static void acquire_failed(struct lease *l, int status, const char *err) {
  const char *m = err ? err : err_str(status);
  if (str_set(&l->last_err, m)) {
    log_error(l->db, l->name,
              "lease on %s cannot be taken, not replicating to it: %s "
              "(retrying)",
              l->b->desc, m);
  }
}

int lease_failing(const struct lease *l) {
  return l->last_err != NULL;
}

const char *lease_error(const struct lease *l) {
  return str_or_empty(l->last_err);
}

/* The timer first: the change callback may release the lease. */
static void retry_later(struct lease *l, enum lease_state s, int64_t ms) {
  loop_timer_start(l->timer, (uint64_t)MAX(ms, 50));
  set_state(l, s);
}

static void on_taken(void *arg, int status, const char *err) {
  struct lease *l = arg;
  free(l->wr);
  l->wr = NULL;
  if (request_end(l))
    return;
  if (!status) {
    char ttl[40];
    duration_format(l->ttl_ns, ttl);
    log_info(l->db, l->name, "lease on %s held (owner %s, ttl %s)", l->b->desc,
             l->owner, ttl);
    hold(l);
  }
  if (release_pending(l))
    return;
  if (!status)
    return;
  if (status == ERR_PRECONDITION) {
    /* Someone else wrote it between our read and our write: read again. */
    acquire(l);
    return;
  }
  acquire_failed(l, status, err);
  retry_later(l, L_ACQUIRE, RETRY_MS);
  notify(l, 0); /* a shutdown waiting for it ends */
}

static void take(struct lease *l, const char *match) {
  l->w_idle = 0;
  l->wr = make_body(l, 0);
  l->write_start = time_mono_ns();
  l->busy = 1;
  backend_put_cond(l->b, LEASE_KEY, (const uint8_t *)l->wr, strlen(l->wr),
                   match, l->wtag, on_taken, l);
}

/* Another owner holds a live lease: say so once per owner, wait. */
static void refuse(struct lease *l, const struct lease_info *in) {
  char who[640];
  describe(in, who, sizeof(who));
  if (str_set(&l->refused_owner, in->owner)) {
    log_error(l->db, l->name,
              "replica path %s is leased by %s: not replicating to it (other "
              "replicas go on); taking over when the lease lapses, or now "
              "with -force-takeover",
              l->b->desc, who);
  }
  /* Look again at its expiry, or sooner: a clean stop releases it. */
  int64_t wait = (in->expires_ns - time_now_ns()) / NS_PER_MS + 100;
  retry_later(l, L_WAITING, MIN(wait, l->ttl_ns / 3 / NS_PER_MS));
}

static void on_read(void *arg, int status, const char *err) {
  struct lease *l = arg;
  if (request_end(l))
    return;
  if (release_pending(l))
    return;
  l->prev_ours = 0;
  if (status == ERR_NOT_FOUND) {
    l->took_from_other = 0;
    take(l, NULL);
    return;
  }
  if (status) {
    acquire_failed(l, status, err);
    retry_later(l, L_ACQUIRE, RETRY_MS);
    notify(l, 0); /* a shutdown waiting for it ends */
    return;
  }
  struct lease_info in;
  char who[640];
  if (parse_info(&l->rd, &in)) {
    log_warn(l->db, l->name,
             "lease on %s: %s/%s is not a sluice lease; "
             "replacing it",
             l->b->desc, l->b->desc, LEASE_KEY);
    l->took_from_other = 1;
    take(l, l->seen);
    return;
  }
  describe(&in, who, sizeof(who));
  int force = l->force;
  l->force = 0; /* only the first time: two forced hosts must not duel */
  l->took_from_other = 0;
  if (!strcmp(in.owner, l->owner)) {
    l->prev_ours = 1;
    if (!in.released && in.expires_ns > time_now_ns())
      log_info(l->db, l->name, "lease on %s: resuming our own (owner %s)",
               l->b->desc, l->owner);
  } else if (in.released || in.expires_ns <= time_now_ns()) {
    l->took_from_other = 1;
    log_info(l->db, l->name, "lease on %s: taking it over from %s (%s)",
             l->b->desc, who, in.released ? "released" : "expired");
  } else if (force) {
    l->took_from_other = 1;
    log_warn(l->db, l->name,
             "lease on %s: forced takeover from %s; that owner stops "
             "uploading at its next renewal",
             l->b->desc, who);
  } else {
    refuse(l, &in);
    return;
  }
  take(l, l->seen);
}

static void acquire(struct lease *l) {
  set_state(l, L_ACQUIRE);
  buf_reset(&l->rd);
  l->seen[0] = '\0';
  l->busy = 1;
  backend_get_tag(l->b, LEASE_KEY, &l->rd, l->seen, on_read, l);
}

/* Our renewal failed its condition: who has it now?  Say so and wait. */
static void on_fenced_read(void *arg, int status, const char *err) {
  struct lease *l = arg;
  (void)err;
  if (request_end(l))
    return;
  struct lease_info in;
  char who[640] = "another owner";
  int ok = !status && !parse_info(&l->rd, &in);
  if (ok)
    describe(&in, who, sizeof(who));
  log_error(l->db, l->name,
            "lease on %s was taken over by %s: stopped uploading to this path",
            l->b->desc, who);
  if (ok)
    str_set(&l->refused_owner, in.owner);
  if (release_pending(l))
    return;
  int64_t wait =
      ok ? (in.expires_ns - time_now_ns()) / NS_PER_MS + 100 : RETRY_MS;
  retry_later(l, L_WAITING, MIN(wait, l->ttl_ns / 3 / NS_PER_MS));
}

static void on_renewed(void *arg, int status, const char *err) {
  struct lease *l = arg;
  free(l->wr);
  l->wr = NULL;
  if (request_end(l))
    return;
  if (!status) {
    int woke = hold(l);
    if (release_pending(l))
      return;
    if (l->wake_wanted && l->idle_written) {
      renew(l); /* woken while an idle renewal was in flight */
      return;
    }
    if (woke)
      notify(l, LEASE_RESUMED); /* uploads may go on */
    else if (l->n_subs == 1 && !l->parked && l->subs[0].cb)
      l->subs[0].cb(l->subs[0].arg, LEASE_RENEWED);
    return;
  }
  if (status == ERR_PRECONDITION) {
    /* Who has it?  The read goes out first: the state change below may
     * start a release, which then waits for it. */
    loop_timer_stop(l->timer);
    buf_reset(&l->rd);
    l->busy = 1;
    backend_get_tag(l->b, LEASE_KEY, &l->rd, l->seen, on_fenced_read, l);
    set_state(l, L_WAITING); /* uploads stop now */
    return;
  }
  if (release_pending(l))
    return;
  if (!l->renew_failing)
    log_warn(l->db, l->name, "lease on %s: renewal failed: %s (retrying)",
             l->b->desc, err ? err : err_str(status));
  l->renew_failing = 1;
  if (time_mono_ns() >= l->valid_until) {
    log_error(l->db, l->name,
              "lease on %s not renewed before it expired: stopped uploading "
              "to this path until it is taken again",
              l->b->desc);
    retry_later(l, L_ACQUIRE, RETRY_MS);
    return;
  }
  loop_timer_start(l->timer, RETRY_MS);
}

/* A renewal: at the idle TTL when nothing used the lease for a whole TTL
 * (and nothing waits to upload), else at the TTL. */
static void renew(struct lease *l) {
  l->w_idle = l->idle_ttl_ns > l->ttl_ns && !l->wake_wanted &&
              time_mono_ns() - l->last_use_ns >= l->ttl_ns;
  l->wr = make_body(l, 0);
  l->write_start = time_mono_ns();
  l->busy = 1;
  backend_put_cond(l->b, LEASE_KEY, (const uint8_t *)l->wr, strlen(l->wr),
                   l->tag, l->wtag, on_renewed, l);
}

static void on_timer(void *arg) {
  struct lease *l = arg;
  if (l->busy || l->release_cb)
    return;
  if (l->state == L_HELD)
    renew(l);
  else if (l->state == L_ACQUIRE || l->state == L_WAITING)
    acquire(l);
}

/* --- API --- */

static const char *this_host(void) {
  static char host[256];
  if (!host[0] && gethostname(host, sizeof(host) - 1))
    host[0] = '\0';
  return host;
}

struct lease *lease_new(struct backend *b, const char *meta, const char *db,
                        const char *name, int64_t ttl_ns, int force,
                        lease_change_cb cb, void *arg) {
  struct lease *l = xcalloc(1, sizeof(*l));
  l->b = b;
  l->db = db;
  l->name = name;
  l->ttl_ns = ttl_ns;
  l->force = force;
  l->refs = 1;
  if (cb)
    sub_add(l, cb, arg);
  l->pid = (int)getpid();
  l->started_ns = time_now_ns();
  l->host = this_host();
  buf_init(&l->rd, LEASE_BODY_MAX);
  l->timer = loop_timer_new(on_timer, l);
  if (ttl_ns <= 0) {
    l->state = L_HELD;
    l->valid_until = INT64_MAX;
    return l;
  }
  l->meta = meta;
  return l;
}

void lease_start(struct lease *l) {
  if (l->started || l->ttl_ns <= 0 || l->state != L_ACQUIRE)
    return;
  l->started = 1;
  l->last_use_ns = time_mono_ns();
  l->owner = lease_owner_id(l->meta, &l->persisted);
  if (!l->persisted && !owner_from_subs(l) && l->owner_hint) {
    free(l->owner);
    l->owner = l->owner_hint;
    l->owner_hint = NULL;
  }
  if (!(l->b->ops->caps & BACKEND_CAP_COND))
    log_warn(l->db, l->name,
             "%s has no conditional writes: the single-writer lease on this "
             "path is best effort (two hosts starting in the same moment can "
             "both take it)",
             l->b->desc);
  acquire(l);
}

int lease_last_ours(const struct lease *l) {
  return l->ttl_ns <= 0 || l->prev_ours;
}

int lease_held(const struct lease *l) {
  return l->state == L_HELD && time_mono_ns() < l->valid_until;
}

void lease_set_meta_of(struct lease *l, const char *(*meta_of)(void *arg)) {
  l->meta_of = meta_of;
}

void lease_set_idle_ttl(struct lease *l, int64_t idle_ttl_ns) {
  l->idle_ttl_ns = idle_ttl_ns;
}

int lease_use(struct lease *l) {
  l->last_use_ns = time_mono_ns();
  if (!lease_held(l))
    return 0;
  if (!l->idle_written)
    return 1;
  /* Written with the idle expiry: a -force-takeover may have replaced it
   * since, which only a conditional write can tell.  Renew at the TTL
   * first; uploads wait for it (LEASE_RESUMED). */
  if (!l->wake_wanted)
    log_debug(l->db, l->name, "lease on %s: in use again, renewing first",
              l->b->desc);
  l->wake_wanted = 1;
  if (!l->busy && !l->release_cb) {
    loop_timer_stop(l->timer);
    renew(l);
  }
  return 0;
}

int lease_waking(const struct lease *l) {
  return l->wake_wanted && l->state == L_HELD;
}

enum lease_state lease_state(const struct lease *l) {
  return l->state;
}

void lease_release(struct lease *l, void (*cb)(void *arg), void *arg) {
  assert(!l->release_cb);
  if (l->ttl_ns <= 0 || l->state == L_CLOSED) {
    l->state = L_CLOSED;
    cb(arg);
    return;
  }
  l->release_cb = cb;
  l->release_arg = arg;
  loop_timer_stop(l->timer);
  if (l->busy)
    return; /* the request's end continues the release */
  if (l->state == L_HELD)
    start_release(l);
  else
    finish_release(l);
}

void lease_free(struct lease *l) {
  if (!l)
    return;
  if (l->busy) {
    l->freed = 1;
    l->n_subs = l->live_subs = l->first_live = 0;
    l->release_cb = NULL;
    loop_timer_stop(l->timer);
    return;
  }
  loop_timer_free(l->timer);
  buf_destroy(&l->rd);
  free(l->wr);
  free(l->owner);
  free(l->owner_hint);
  free(l->subs);
  free(l->key);
  free(l->own_meta);
  free(l->own_db);
  if (l->own_b)
    backend_close(l->own_b);
  free(l->refused_owner);
  free(l->last_err);
  free(l);
}

/* --- one lease for every database of a dir entry --- */

static void unregister(struct lease *l) {
  for (struct lease **p = &g_shared; *p; p = &(*p)->next_shared) {
    if (*p == l) {
      *p = l->next_shared;
      l->next_shared = NULL;
      return;
    }
  }
}

/* Where the root lives: type, endpoint, bucket, host and root path. */
static char *share_key(const struct replica_config *cfg) {
  return xasprintf("%s|%s|%s|%s|%s|%s", cfg->type ? cfg->type : "file",
                   cfg->endpoint ? cfg->endpoint : "",
                   cfg->bucket ? cfg->bucket : "", cfg->host ? cfg->host : "",
                   cfg->account_name ? cfg->account_name : "", cfg->lease_root);
}

struct lease *lease_join(const struct replica_config *cfg, const char *meta,
                         const char *entry, int64_t ttl_ns, int force,
                         lease_change_cb cb, void *arg, char *err,
                         size_t errlen) {
  char *key = share_key(cfg);
  struct lease *l = g_shared;
  while (l && strcmp(l->key, key))
    l = l->next_shared;
  if (l) {
    free(key);
    l->refs++;
    sub_add(l, cb, arg);
    return l;
  }
  struct replica_config root;
  config_replica_copy(&root, cfg);
  free(root.path);
  root.path = xstrdup(cfg->lease_root);
  free(root.url);
  root.url = NULL;
  struct backend *b = backend_open(&root, err, errlen);
  config_replica_destroy(&root);
  if (!b) {
    free(key);
    return NULL;
  }
  char *m = xstrdup(meta), *d = xstrdup(entry);
  l = lease_new(b, m, d, b->name, ttl_ns, force, cb, arg);
  l->own_b = b;
  l->own_meta = m;
  l->own_db = d;
  l->key = key;
  l->next_shared = g_shared;
  g_shared = l;
  return l;
}

void lease_leave(struct lease *l, void *sub, void (*cb)(void *arg), void *arg) {
  if (!l->key) {
    lease_release(l, cb, arg);
    return;
  }
  int was = sub_remove(l, sub);
  if (!was || l->live_subs > 0 || l->parked > 0 || l->release_cb) {
    cb(arg); /* others still replicate under it (or it is being released) */
    return;
  }
  /* The last one out releases it; a database that appears later takes a
   * new one. */
  unregister(l);
  lease_release(l, cb, arg);
}

/* One holder fewer: the last one frees it. */
static void unref(struct lease *l) {
  if (--l->refs > 0)
    return;
  if (l->key)
    unregister(l);
  lease_free(l);
}

void lease_drop(struct lease *l, void *sub) {
  if (!l)
    return;
  sub_remove(l, sub);
  unref(l);
}

int lease_shared(const struct lease *l) {
  return l && l->key != NULL;
}

void lease_park(struct lease *l, void *sub) {
  assert(l->key);
  if (!l->started && !l->owner_hint && l->meta_of &&
      l->hints_tried < OWNER_SEARCH_MAX) {
    const char *m = l->meta_of(sub);
    if (m && strcmp(m, l->meta)) {
      l->hints_tried++;
      l->owner_hint = owner_read(m);
    }
  }
  sub_remove(l, sub);
  l->parked++;
  l->refs++; /* the park's own (the subscriber's goes with lease_drop) */
}

void lease_unpark(struct lease *l) {
  assert(l->parked > 0);
  l->parked--;
  unref(l);
}

struct unpark_leave {
  struct lease *l;
  void (*cb)(void *arg);
  void *arg;
};

static void unpark_released(void *arg) {
  struct unpark_leave *u = arg;
  struct lease *l = u->l;
  void (*cb)(void *) = u->cb;
  void *cb_arg = u->arg;
  free(u);
  unref(l);
  if (cb)
    cb(cb_arg);
}

void lease_unpark_leave(struct lease *l, void (*cb)(void *arg), void *arg) {
  assert(l->parked > 0);
  l->parked--;
  if (l->live_subs > 0 || l->parked > 0 || l->release_cb) {
    unref(l); /* (the last when only a release in flight holds it) */
    if (cb)
      cb(arg);
    return;
  }
  /* The last holder of the entry's lease: released, as lease_leave does. */
  unregister(l);
  struct unpark_leave *u = xmalloc(sizeof(*u));
  *u = (struct unpark_leave){l, cb, arg};
  lease_release(l, unpark_released, u);
}
