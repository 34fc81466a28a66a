/*
 * What the loop's own files share (private to src/loop/: nothing above
 * includes it, and nothing above sees libuv).
 */
#ifndef SLUICE_LOOP_INTERNAL_H
#define SLUICE_LOOP_INTERNAL_H

#include <stdint.h>
#include <uv.h>

/* The process's one libuv loop, created by loop_init(). */
uv_loop_t *loop_uv(void);

/* The process's one inotify instance (inotify.c), under watch.c and
 * dirwatch.c.  A watch's callback gets each event's inotify mask and the
 * name of the entry it is about; name NULL for the directory itself
 * (IN_DELETE_SELF, IN_MOVE_SELF; IN_IGNORED: the kernel dropped the watch)
 * and for a queue overflow (IN_Q_OVERFLOW, to every watch: anything may
 * have changed).  Returns 0 or a negative errno (-ENOSPC: the watch
 * limit).  ino_remove is safe inside a callback. */
struct ino_watch;
typedef void (*ino_cb)(void *arg, const char *name, uint32_t mask);
int ino_add(const char *path, ino_cb cb, void *arg, struct ino_watch **out);
void ino_remove(struct ino_watch *w);
void ino_close(void); /* (loop_close) */

#endif
