/*
 * Conditional writes (backend_get_tag / backend_put_cond) on the file
 * backend and through the best-effort emulation, and the lease on top of
 * them through the loop: one owner at a time, a waiter takes a released
 * lease, a forced takeover fences the old owner at its next renewal, the
 * owner id is kept in the meta directory (and only for this host).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "base/err.h"
#include "base/util.h"
#include "core/lease.h"
#include "loop/loop.h"
#include "t.h"

static char g_dir[] = "/tmp/sluice-lease.XXXXXX";
static char g_err[1024];

static struct backend *open_file(const char *sub) {
  struct replica_config rc = {0};
  rc.type = "file";
  rc.name = "file";
  char *p = path_join(g_dir, sub);
  rc.path = p;
  struct backend *b = backend_open(&rc, g_err, sizeof(g_err));
  free(p);
  return b;
}

struct wait {
  volatile int done;
  int status;
};

static void on_done(void *arg, int status, const char *err) {
  struct wait *w = arg;
  (void)err;
  w->status = status;
  w->done = 1;
}

static int put_cond(struct backend *b, const char *data, const char *match,
                    char *tag) {
  struct wait w = {0};
  backend_put_cond(b, "lock.json", (const uint8_t *)data, strlen(data), match,
                   tag, on_done, &w);
  CHECK_INT(loop_run_until(&w.done), 0);
  return w.status;
}

static int get_tag(struct backend *b, struct buf *out, char *tag) {
  struct wait w = {0};
  buf_reset(out);
  backend_get_tag(b, "lock.json", out, tag, on_done, &w);
  CHECK_INT(loop_run_until(&w.done), 0);
  return w.status;
}

/* Create-only, then replace-if-unchanged: the semantics every store's
 * conditional writes give the lease. */
static void check_cond_semantics(struct backend *b) {
  char t1[BACKEND_TAG_MAX], t2[BACKEND_TAG_MAX], t3[BACKEND_TAG_MAX];
  struct buf rd;
  buf_init(&rd, 4096);
  CHECK_INT(get_tag(b, &rd, t1), ERR_NOT_FOUND);
  CHECK_INT(put_cond(b, "one", "deadbeef", t1), ERR_PRECONDITION);
  CHECK_INT(put_cond(b, "one", NULL, t1), 0);
  CHECK_INT(put_cond(b, "two", NULL, t2), ERR_PRECONDITION);
  CHECK_INT(get_tag(b, &rd, t2), 0);
  CHECK_STR(t2, t1);
  CHECK(rd.len == 3 && !memcmp(rd.data, "one", 3));
  CHECK_INT(put_cond(b, "two", t1, t2), 0);
  CHECK(strcmp(t1, t2) != 0);
  /* The old version no longer matches: a fenced owner's renewal. */
  CHECK_INT(put_cond(b, "three", t1, t3), ERR_PRECONDITION);
  CHECK_INT(get_tag(b, &rd, t3), 0);
  CHECK_STR(t3, t2);
  CHECK(rd.len == 3 && !memcmp(rd.data, "two", 3));
  buf_destroy(&rd);
}

TEST(file_conditional_writes) {
  struct backend *b = open_file("cond");
  CHECK(b != NULL);
  CHECK(b->ops->caps & BACKEND_CAP_COND);
  check_cond_semantics(b);
  backend_close(b);
}

TEST(emulated_conditional_writes) {
  /* The file backend without its conditional ops: backend.c's emulation. */
  struct backend *b = open_file("emu");
  static struct backend_ops ops;
  ops = *b->ops;
  ops.get_tag = NULL;
  ops.put_cond = NULL;
  ops.caps &= ~(unsigned)BACKEND_CAP_COND;
  const struct backend_ops *orig = b->ops;
  b->ops = &ops;
  check_cond_semantics(b);
  b->ops = orig;
  backend_close(b);
}

TEST(owner_id_persisted_per_host) {
  char *meta = path_join(g_dir, "meta1");
  int persisted = 1;
  /* No meta directory yet: a new id, not written (the engine makes it). */
  char *a = lease_owner_id(meta, &persisted);
  CHECK_INT(persisted, 0);
  CHECK(lease_owner_persist(meta, a) == -ENOENT);
  CHECK_INT(mkdir_p(meta, 0700), 0);
  CHECK_INT(lease_owner_persist(meta, a), 0);
  char *b = lease_owner_id(meta, &persisted);
  CHECK_INT(persisted, 1);
  CHECK_STR(a, b);
  char host[256] = "";
  gethostname(host, sizeof(host) - 1);
  CHECK(str_has_prefix(a, host));
  /* Another host's id (a meta directory copied over) is replaced. */
  char *f = path_join(meta, LEASE_OWNER_FILE);
  const char *other = "some-other-host:1:2\n";
  CHECK_INT(file_write_atomic(f, other, strlen(other), 0600), 0);
  char *c = lease_owner_id(meta, &persisted);
  CHECK_INT(persisted, 0);
  CHECK(strcmp(c, "some-other-host:1:2") != 0);
  CHECK(str_has_prefix(c, host));
  free(a);
  free(b);
  free(c);
  free(f);
  free(meta);
}

struct holder {
  int held, changes, renewals;
};

static void on_change(void *arg, int held) {
  struct holder *h = arg;
  if (held == LEASE_RENEWED) { /* no change: a lone subscriber's renewal */
    CHECK(h->held);
    h->renewals++;
    return;
  }
  h->held = held;
  h->changes++;
}

static void on_timeout(void *arg) {
  *(volatile int *)arg = 1;
}

/* Runs the loop until cond() or a deadline (ms). */
static int run_until(int (*cond)(void *), void *arg, int ms) {
  volatile int expired = 0;
  struct loop_timer *t = loop_timer_new(on_timeout, (void *)&expired);
  loop_timer_start(t, (uint64_t)ms);
  while (!cond(arg) && !expired) {
    volatile int tick = 0;
    struct loop_timer *s = loop_timer_new(on_timeout, (void *)&tick);
    loop_timer_start(s, 10);
    loop_run_until(&tick);
    loop_timer_free(s);
  }
  loop_timer_free(t);
  return cond(arg);
}

static int is_held(void *arg) {
  return ((struct holder *)arg)->held;
}
static int is_lost(void *arg) {
  return !((struct holder *)arg)->held;
}

static int not_held(void *arg) {
  return !lease_held(arg);
}

static void on_released(void *arg) {
  *(volatile int *)arg = 1;
}

TEST(lease_one_owner_release_force) {
  /* 3 s: a renewal (every ttl/3) may run late on a loaded machine, and a
   * late one rightly loses the lease; 600 ms failed there. */
  const int64_t ttl = 3000 * NS_PER_MS;
  struct backend *b1 = open_file("shared"), *b2 = open_file("shared"),
                 *b3 = open_file("shared");
  char *m1 = path_join(g_dir, "m1"), *m2 = path_join(g_dir, "m2"),
       *m3 = path_join(g_dir, "m3");
  struct holder h1 = {0}, h2 = {0}, h3 = {0};
  struct lease *l1 = lease_new(b1, m1, "db1", "r", ttl, 0, on_change, &h1);
  CHECK(!run_until(is_held, &h1, 200)); /* not before lease_start */
  lease_start(l1);
  CHECK(run_until(is_held, &h1, 5000));
  CHECK(lease_held(l1));
  struct lease *l2 = lease_new(b2, m2, "db2", "r", ttl, 0, on_change, &h2);
  lease_start(l2);
  /* Renewals keep it ours for several TTLs; l2 only waits. */
  CHECK(!run_until(is_held, &h2, 3500));
  CHECK(h1.held && h1.changes == 1);
  CHECK(h1.renewals >= 1); /* LEASE_RENEWED, the lease's only subscriber */
  CHECK_INT(lease_state(l2), L_WAITING);
  /* A clean release: l2 takes it without waiting for the expiry. */
  volatile int rel = 0;
  lease_release(l1, on_released, (void *)&rel);
  CHECK_INT(loop_run_until(&rel), 0);
  CHECK_INT(lease_state(l1), L_CLOSED);
  CHECK(run_until(is_held, &h2, 5000));
  /* A forced takeover: l2 notices at its next renewal (ttl/3). */
  struct lease *l3 = lease_new(b3, m3, "db3", "r", ttl, 1, on_change, &h3);
  lease_start(l3);
  CHECK(run_until(is_held, &h3, 5000));
  int64_t t0 = time_mono_ns();
  CHECK(run_until(is_lost, &h2, 5000));
  CHECK(time_mono_ns() - t0 < ttl / 3 + 500 * NS_PER_MS);
  CHECK(!lease_held(l2));
  CHECK(lease_held(l3));
  /* The forcing is one-shot: l2 waits for l3 rather than taking it back. */
  CHECK(!run_until(is_held, &h2, 1000));
  CHECK(h3.held && h3.changes == 1);
  rel = 0;
  lease_release(l3, on_released, (void *)&rel);
  CHECK_INT(loop_run_until(&rel), 0);
  rel = 0;
  lease_release(l2, on_released, (void *)&rel);
  CHECK_INT(loop_run_until(&rel), 0);
  lease_free(l1);
  lease_free(l2);
  lease_free(l3);
  backend_close(b1);
  backend_close(b2);
  backend_close(b3);
  free(m1);
  free(m2);
  free(m3);
}

static int never(void *arg) {
  (void)arg;
  return 0;
}

static int is_resumed(void *arg) {
  return ((struct holder *)arg)->held == LEASE_RESUMED;
}

/* lock.json at path as written last: 1 if it has the idle expiry. */
static int lock_is_idle(void *arg) {
  struct buf b;
  buf_init(&b, 8192);
  int ok = !file_read_all(arg, 8192, &b) && b.len &&
           memmem(b.data, b.len, "\"idle\":true", 11);
  buf_destroy(&b);
  return ok;
}

static char *read_lock(const char *path) {
  struct buf b;
  buf_init(&b, 8192);
  CHECK_INT(file_read_all(path, 8192, &b), 0);
  buf_append(&b, "", 1);
  char *s = xstrdup((char *)b.data);
  buf_destroy(&b);
  return s;
}

/* Idle leases: unused for a TTL, the renewal writes the idle expiry and
 * no renewal follows for a while; a use renews at the TTL before it
 * allows uploads (LEASE_RESUMED); after a forced takeover made while
 * idle, the use finds the lease gone and never allows uploads. */
TEST(lease_idle_renews_late_then_wakes) {
  const int64_t ttl = 3000 * NS_PER_MS;
  struct backend *b1 = open_file("idle"), *b2 = open_file("idle");
  char *m1 = path_join(g_dir, "im1"), *m2 = path_join(g_dir, "im2");
  char *lock = path_join(g_dir, "idle/lock.json");
  struct holder h1 = {0}, h2 = {0};
  struct lease *l1 = lease_new(b1, m1, "db1", "r", ttl, 0, on_change, &h1);
  lease_set_idle_ttl(l1, 60 * NS_PER_SEC);
  lease_start(l1);
  CHECK(run_until(is_held, &h1, 5000));
  CHECK(lease_use(l1));
  CHECK(!lock_is_idle(lock));
  CHECK(run_until(lock_is_idle, lock, 9000));
  CHECK(lease_held(l1));
  /* No write for more than a TTL (three renewals at ttl/3). */
  char *v1 = read_lock(lock);
  run_until(never, NULL, 3500);
  char *v2 = read_lock(lock);
  CHECK_STR(v2, v1);
  free(v1);
  free(v2);
  /* A use: not at once, but after a renewal at the TTL. */
  int changes = h1.changes;
  CHECK(!lease_use(l1));
  CHECK(lease_waking(l1));
  CHECK(run_until(is_resumed, &h1, 5000));
  CHECK_INT(h1.changes, changes + 1);
  CHECK(!lease_waking(l1));
  CHECK(lease_use(l1));
  CHECK(!lock_is_idle(lock));
  /* Idle again, then forced away: the next use learns it, allows nothing. */
  CHECK(run_until(lock_is_idle, lock, 9000));
  struct lease *l2 = lease_new(b2, m2, "db2", "r", ttl, 1, on_change, &h2);
  lease_start(l2);
  CHECK(run_until(is_held, &h2, 5000));
  CHECK(!lease_use(l1));
  CHECK(run_until(is_lost, &h1, 5000));
  CHECK(!lease_use(l1));
  CHECK(!lease_held(l1));
  CHECK(lease_held(l2));
  volatile int rel = 0;
  lease_release(l2, on_released, (void *)&rel);
  CHECK_INT(loop_run_until(&rel), 0);
  rel = 0;
  lease_release(l1, on_released, (void *)&rel);
  CHECK_INT(loop_run_until(&rel), 0);
  lease_free(l1);
  lease_free(l2);
  backend_close(b1);
  backend_close(b2);
  free(m1);
  free(m2);
  free(lock);
}

/* One lease for a dir entry's databases (lease_join): subscribers of the
 * same root share it (one lock.json at the root, one acquisition), all
 * hear of changes, the first to leave does not release it, the last does,
 * and a database joining after that takes a new one. */
TEST(lease_shared_by_a_dir_entry) {
  const int64_t ttl = 3000 * NS_PER_MS;
  char *root = path_join(g_dir, "dirroot");
  struct replica_config rc = {0};
  rc.type = "file";
  rc.name = "file";
  rc.path = path_join(root, "t1/app.db");
  rc.lease_root = root;
  char *m1 = path_join(g_dir, "dm1");
  struct holder h1 = {0}, h2 = {0}, h3 = {0};
  struct lease *l1 =
      lease_join(&rc, m1, "dir", ttl, 0, on_change, &h1, g_err, sizeof(g_err));
  free(rc.path);
  rc.path = path_join(root, "t2/app.db");
  struct lease *l2 =
      lease_join(&rc, m1, "dir", ttl, 0, on_change, &h2, g_err, sizeof(g_err));
  CHECK(l1 && l1 == l2);
  lease_start(l1);
  lease_start(l2); /* (once) */
  CHECK(run_until(is_held, &h1, 5000));
  CHECK(h2.held && h1.changes == 1 && h2.changes == 1);
  char *lock = path_join(root, "lock.json");
  CHECK(access(lock, F_OK) == 0);
  /* The first to stop: no release, the other still holds it. */
  volatile int rel = 0;
  lease_leave(l1, &h1, on_released, (void *)&rel);
  CHECK_INT(loop_run_until(&rel), 0);
  CHECK(lease_held(l2));
  CHECK(!run_until(is_lost, &h2, 3500)); /* renewed past a TTL */
  lease_drop(l1, &h1);
  /* The last one releases it. */
  rel = 0;
  lease_leave(l2, &h2, on_released, (void *)&rel);
  CHECK_INT(loop_run_until(&rel), 0);
  CHECK_INT(lease_state(l2), L_CLOSED);
  struct buf b;
  buf_init(&b, 4096);
  CHECK_INT(file_read_all(lock, 4096, &b), 0);
  buf_append(&b, "", 1);
  CHECK(strstr((const char *)b.data, "\"released\":true") != NULL);
  buf_destroy(&b);
  /* Joining after the release: a new lease, taken again. */
  struct lease *l3 =
      lease_join(&rc, m1, "dir", ttl, 0, on_change, &h3, g_err, sizeof(g_err));
  CHECK(l3 && l3 != l2);
  lease_drop(l2, &h2);
  lease_start(l3);
  CHECK(run_until(is_held, &h3, 5000));
  rel = 0;
  lease_leave(l3, &h3, on_released, (void *)&rel);
  CHECK_INT(loop_run_until(&rel), 0);
  lease_drop(l3, &h3);
  free(lock);
  free(rc.path);
  free(root);
  free(m1);
}

/* 1 if lock.json at path says released, 0 if not, -1 unreadable. */
static int lock_released(const char *path) {
  struct buf b;
  buf_init(&b, 4096);
  int rc = file_read_all(path, 4096, &b);
  buf_append(&b, "", 1);
  int r = rc ? -1 : strstr((const char *)b.data, "\"released\":true") != NULL;
  buf_destroy(&b);
  return r;
}

/* A dormant database parks its place in its entry's lease (lease_park):
 * with every subscriber parked or gone the lease stays held and renewed
 * (no release), a subscriber that joins again and unparks takes its place,
 * and the last holder's lease_unpark_leave releases it. */
TEST(lease_parked_stays_held) {
  const int64_t ttl = 3000 * NS_PER_MS;
  char *root = path_join(g_dir, "parkroot");
  struct replica_config rc = {0};
  rc.type = "file";
  rc.name = "file";
  rc.path = path_join(root, "t1/app.db");
  rc.lease_root = root;
  char *m1 = path_join(g_dir, "pm1");
  struct holder h1 = {0}, h2 = {0}, h3 = {0};
  struct lease *l1 =
      lease_join(&rc, m1, "dir", ttl, 0, on_change, &h1, g_err, sizeof(g_err));
  struct lease *l2 =
      lease_join(&rc, m1, "dir", ttl, 0, on_change, &h2, g_err, sizeof(g_err));
  CHECK(l1 && l1 == l2 && lease_shared(l1));
  lease_start(l1);
  CHECK(run_until(is_held, &h1, 5000));
  /* Both go dormant: parked, then their instances are freed. */
  lease_park(l1, &h1);
  lease_drop(l1, &h1);
  lease_park(l2, &h2);
  lease_drop(l2, &h2);
  CHECK(lease_held(l1));
  /* Renewed past a TTL with no subscriber left (none hears of it). */
  CHECK(!run_until(not_held, l1, 3500));
  char *lock = path_join(root, "lock.json");
  CHECK_INT(lock_released(lock), 0);
  /* One wakes: its new instance joins the same lease, then unparks. */
  struct lease *l3 =
      lease_join(&rc, m1, "dir", ttl, 0, on_change, &h3, g_err, sizeof(g_err));
  CHECK(l3 == l1);
  lease_unpark(l3);
  CHECK(lease_held(l3));
  /* The other is deleted: its park ends, the live one keeps the lease. */
  volatile int rel = 0;
  lease_unpark_leave(l1, on_released, (void *)&rel);
  CHECK_INT(loop_run_until(&rel), 0);
  CHECK(lease_held(l3));
  /* The last one out releases it. */
  rel = 0;
  lease_leave(l3, &h3, on_released, (void *)&rel);
  CHECK_INT(loop_run_until(&rel), 0);
  CHECK_INT(lease_state(l3), L_CLOSED);
  CHECK_INT(lock_released(lock), 1);
  lease_drop(l3, &h3);
  /* Parked last: lease_unpark_leave releases it. */
  struct holder h4 = {0};
  struct lease *l4 =
      lease_join(&rc, m1, "dir", ttl, 0, on_change, &h4, g_err, sizeof(g_err));
  lease_start(l4);
  CHECK(run_until(is_held, &h4, 5000));
  lease_park(l4, &h4);
  lease_drop(l4, &h4);
  rel = 0;
  lease_unpark_leave(l4, on_released, (void *)&rel);
  CHECK_INT(loop_run_until(&rel), 0);
  CHECK_INT(lock_released(lock), 1);
  free(lock);
  free(rc.path);
  free(root);
  free(m1);
}

int main(void) {
  if (!mkdtemp(g_dir) || loop_init()) {
    perror("setup");
    return 1;
  }
  RUN(file_conditional_writes);
  RUN(emulated_conditional_writes);
  RUN(owner_id_persisted_per_host);
  RUN(lease_one_owner_release_force);
  RUN(lease_shared_by_a_dir_entry);
  RUN(lease_parked_stays_held);
  RUN(lease_idle_renews_late_then_wakes);
  CHECK_INT(loop_close(), 0);
  rm_rf(g_dir);
  T_DONE();
}
