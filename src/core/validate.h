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
void validator_stop(struct validator *v);
int validator_running(const struct validator *v);
void validator_free(struct validator *v);

#endif
