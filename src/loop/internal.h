/*
 * What the loop's own files share (private to src/loop/: nothing above
 * includes it, and nothing above sees libuv).
 */
#ifndef SLUICE_LOOP_INTERNAL_H
#define SLUICE_LOOP_INTERNAL_H

#include <uv.h>

/* The process's one libuv loop, created by loop_init(). */
uv_loop_t *loop_uv(void);

#endif
