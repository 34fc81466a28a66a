/*
 * The single-writer lease of a replica path: before it uploads anything,
 * a replica takes `lock.json` at the replica root (beside generations/,
 * which is all Litestream 0.3 and sluice ever list, so restores ignore
 * it), renews it every TTL/3 with the store's conditional writes
 * (backend_put_cond) and stops uploading when it loses it.
 *
 * lock.json (one JSON object, written only by lease.c):
 *   version     1
 *   owner       the owner id "HOST:PID:START" (START in seconds.nanoseconds) of
 * the first run that used this meta directory on this host (persisted in
 *               <meta>/sluice-lease-owner, so a restart within the TTL
 *               resumes its own lease instead of waiting for it)
 *   host, pid   this process; started: its start time (RFC 3339)
 *   renewed     when this version was written (RFC 3339)
 *   expires     renewed + ttl (RFC 3339), expires_ns: the same in ns
 *   ttl         the TTL (Go duration)
 *   seq         writes by this owner (so every version's bytes differ)
 *   released    true after a clean stop: free to take at once
 *
 * States:
 *   ACQUIRE   reading lock.json / writing ours (a request in flight)
 *   WAITING   another owner holds a live lease: retry when it expires
 *   HELD      ours; renewed every ttl/3; uploads allowed until
 *             valid_until (the start of the last good write + ttl*5/6)
 *
 * Idle leases (lease_set_idle_ttl, the `lease-idle-ttl` key): when nothing
 * called lease_use for a whole TTL, the next renewal writes the idle TTL
 * instead (expires = now + idle TTL; "idle": true) and the one after it
 * comes idle_ttl/3 later, so an idle path costs a request per idle_ttl/3,
 * not per ttl/3.  Others see a longer expiry (refused for longer, which is
 * safe).  The next lease_use does not allow uploads at once: it renews at
 * the TTL first, a conditional write, so a -force-takeover made meanwhile
 * is seen (the owner is fenced) before anything is uploaded.
 *   RELEASING writing the released version (clean stop)
 *   CLOSED    released or given up; never changes again
 * A lease with ttl 0 (`lease-ttl: 0`) is always held and writes nothing.
 */
#ifndef SLUICE_LEASE_H
#define SLUICE_LEASE_H

#include <stdint.h>

#include "backends/backend.h"
#include "config/config.h"

#define LEASE_KEY "lock.json"
#define LEASE_OWNER_FILE "sluice-lease-owner"

enum lease_state { L_ACQUIRE, L_WAITING, L_HELD, L_RELEASING, L_CLOSED };

/* Called on every change of state before a release: held = 1 when it is
 * taken (or renewed after failures), 0 when not ours (refused, lost,
 * retrying), LEASE_RESUMED when still ours and renewed at the TTL after an
 * idle renewal (a lease_use waited for it).  It may call lease_release. */
#define LEASE_RESUMED 2
/* And, to a lease's only subscriber (none parked), LEASE_RENEWED after
 * each plain renewal: one PUT to its path, which replica.c counts against
 * its sync-interval on an object store (a busy path's renewals then do not
 * add to its PUTs). */
#define LEASE_RENEWED 3
typedef void (*lease_change_cb)(void *arg, int held);

struct lease;

/* A lease of b's path, not taken yet (lease_start).  meta: the database's meta
 * directory (the owner id lives there); db, name: for log lines (all
 * borrowed, must outlive the lease).  force: take it even from a live
 * owner (only this first time). */
struct lease *lease_new(struct backend *b, const char *meta, const char *db,
                        const char *name, int64_t ttl_ns, int force,
                        lease_change_cb cb, void *arg);
/* Starts taking it (once; replica.c calls it before its first upload, so
 * a database that never appears takes no lease). */
void lease_start(struct lease *l);
/* Ours and not past its local deadline (written at the idle TTL or not). */
int lease_held(const struct lease *l);
/* Before an upload or a delete: 1 if it may go on now.  Marks the lease
 * used (not idle).  0 when not held, or held with the idle expiry: then a
 * renewal at the TTL starts and the change callback says LEASE_RESUMED (or
 * 0, fenced) when it ends; lease_waking is true meanwhile. */
int lease_use(struct lease *l);
int lease_waking(const struct lease *l);
/* The idle TTL (0, or not above the TTL: renewals always at the TTL). */
void lease_set_idle_ttl(struct lease *l, int64_t idle_ttl_ns);
/* A shared lease: how to find a subscriber's meta directory, where a
 * restart looks for the owner id kept when the first database has none. */
void lease_set_meta_of(struct lease *l, const char *(*meta_of)(void *arg));
enum lease_state lease_state(const struct lease *l);
/* Taken (or being taken) from a lock.json our own owner id wrote last: no
 * other owner took the path since (so a position known locally from
 * before still holds).  Always so without a lease (ttl 0). */
int lease_last_ours(const struct lease *l);
/* Taking it failed (the store errs) and it is being retried. */
int lease_failing(const struct lease *l);
/* Why (the store's message), while failing. */
const char *lease_error(const struct lease *l);
const char *lease_state_name(enum lease_state s);
/* Clean stop: writes the released version if held, then cb (also when
 * not held, at once).  No change callbacks after this. */
void lease_release(struct lease *l, void (*cb)(void *arg), void *arg);
/* Frees it (a request still in flight frees it when it ends). */
void lease_free(struct lease *l);

/* One lease for every database of a dir entry (cfg->lease_root set): at
 * the entry's replica root, shared by all its databases' replicas, so an
 * idle database costs no lease request of its own.  Finds or creates it
 * (opening a backend on the root) and subscribes cb/arg.  meta: the meta
 * directory the owner id is kept in (the first database's), entry: for
 * log lines (both copied).  NULL and err if the root cannot be opened. */
struct lease *lease_join(const struct replica_config *cfg, const char *meta,
                         const char *entry, int64_t ttl_ns, int force,
                         lease_change_cb cb, void *arg, char *err,
                         size_t errlen);
/* A subscriber's clean stop: no more callbacks for it, then cb; the last
 * subscriber of a shared lease releases it first (lease_release).  For a
 * lease of lease_new, lease_release. */
void lease_leave(struct lease *l, void *sub, void (*cb)(void *arg), void *arg);
/* The subscriber lets go of l (lease_free once nobody holds it). */
void lease_drop(struct lease *l, void *sub);

/* A dir entry's lease (lease_join), not one of lease_new. */
int lease_shared(const struct lease *l);
/* A subscriber of a shared lease goes dormant (its database closed while
 * idle, daemon.c): no more callbacks for it, but the lease stays held and
 * renewed as if it still replicated; the subscriber's lease_drop follows
 * as usual.  lease_unpark, once its next instance has joined again, or
 * lease_unpark_leave (deleted, shutdown, reload) end the park. */
void lease_park(struct lease *l, void *sub);
void lease_unpark(struct lease *l);
/* As lease_leave for a parked subscriber: the last holder releases the
 * lease, then cb (NULL: none). */
void lease_unpark_leave(struct lease *l, void (*cb)(void *arg), void *arg);

/* The owner id kept in meta for this host, or a new one
 * "HOST:PID:SEC.NSEC" (returns owned); *persisted (if set) says whether
 * it is in meta already.  Never creates meta (the engine does). */
char *lease_owner_id(const char *meta, int *persisted);
/* Writes id to meta/sluice-lease-owner if meta exists: 0 or -errno. */
int lease_owner_persist(const char *meta, const char *id);

#endif
