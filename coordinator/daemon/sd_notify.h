/* systemd's service notification protocol (sd_notify(3)), spoken directly:
 * one datagram to the unix socket named by $NOTIFY_SOCKET. No libsystemd:
 * the protocol is a few lines, and sagad then runs the same with or
 * without systemd (no socket: nothing is sent). Used by daemon.c for
 * READY=1, STOPPING=1 and the watchdog's WATCHDOG=1. */
#ifndef SAGAD_SD_NOTIFY_H
#define SAGAD_SD_NOTIFY_H

#include <stdint.h>

/* Send `state` (e.g. "READY=1\nSTATUS=consuming") to $NOTIFY_SOCKET, a
 * path or, starting with '@', an abstract socket. Returns 1 when sent, 0
 * when there is no such variable (not run by a service manager), or -1
 * when sending failed (errno set). Never blocks. */
int sagad_sd_notify(const char *state);

/* The watchdog interval the service manager asks for, in microseconds:
 * $WATCHDOG_USEC when set and $WATCHDOG_PID is unset or this process's
 * pid; 0 when no watchdog is asked for or the values are not numbers. */
uint64_t sagad_sd_watchdog_usec(void);

#endif
