/*
 * validation-interval for one replica (see validate.c).
 */
#ifndef SLUICE_VALIDATE_H
#define SLUICE_VALIDATE_H

struct replica;
struct validator;

/* NULL when the replica has no validation-interval. */
struct validator *validator_new(struct replica *r);
void validator_start(struct validator *v);
/* Stops the timers and ends a pass in flight at its next step (a restore
 * is canceled); replica_side_done once it has ended. */
void validator_stop(struct validator *v);
/* A pass is in flight (its callbacks are due). */
int validator_running(const struct validator *v);
/* Only when not running. */
void validator_free(struct validator *v);

#endif
