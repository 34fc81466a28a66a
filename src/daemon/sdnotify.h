/*
 * systemd's notification protocol, spoken directly: a datagram to the unix
 * socket named by $NOTIFY_SOCKET ("@..." for the abstract namespace).
 * No-op when the variable is unset.
 */
#ifndef SLUICE_SDNOTIFY_H
#define SLUICE_SDNOTIFY_H

#include <stdint.h>

int sd_notify_msg(const char *msg);
/* Watchdog interval from $WATCHDOG_USEC (honouring $WATCHDOG_PID), in
 * microseconds; 0 when the watchdog is off. */
uint64_t sd_watchdog_usec(void);

#endif
