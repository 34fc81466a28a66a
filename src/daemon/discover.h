/*
 * Live discovery for the daemon's `dir:` entries: `watch: true` entries are
 * watched (inotify through src/loop; polled at monitor-interval when a
 * directory cannot be watched), and a dir that does not exist yet is
 * waited for.  Every scan runs on the thread pool, one directory per job,
 * and reports only what changed since that directory's last scan.
 */
#ifndef SLUICE_DAEMON_DISCOVER_H
#define SLUICE_DAEMON_DISCOVER_H

#include "config/config.h"

struct discover;
/* Starts on c's dir entries (borrowed: c must outlive the discover). */
struct discover *discover_start(const struct config *c);
/* Stops every watch and timer; jobs in flight finish and are dropped. */
void discover_stop(struct discover *d);

/* Implemented by daemon.c.  Idempotent: a database already running is
 * left alone, one not running is not an error. */
void daemon_discovered(const struct db_config *entry, const char *rel);
void daemon_vanished(const char *path);
/* Every database under directory abs (a subdirectory removed). */
void daemon_vanished_under(const char *abs);
/* Whether a database at path is replicating (or starting). */
int daemon_is_running(const char *path);

#endif
