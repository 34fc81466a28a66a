/*
 * The running daemon (`sluice replicate`): start-up, reloads, the -exec
 * child, metrics, systemd notify, shutdown.
 */
#ifndef SLUICE_DAEMON_H
#define SLUICE_DAEMON_H

#include "config/config.h"

struct daemon_opts {
  struct config cfg; /* taken over by daemon_run, which destroys it */
  char *config_path; /* taken over; the file reloads read, NULL in
                        command-line mode */
  int expand_env;
  int verbose;
};

/* Replicates until shutdown; returns the process exit code. */
int daemon_run(struct daemon_opts *o);

#endif
