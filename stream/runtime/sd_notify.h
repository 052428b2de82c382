/* sd_notify.h — systemd's service notification protocol (sd_notify(3)) without libsystemd:
 * readiness, status, watchdog keep-alives, stopping and reloading, each one datagram to the
 * socket named by $NOTIFY_SOCKET. Owns nothing between calls (a socket per message).
 * Thread: any; the runtime calls it from the loop thread.
 *
 * Every function returns 1 when the message was sent, 0 when the process is not supervised
 * (no $NOTIFY_SOCKET: a run outside systemd or Kubernetes is not an error), or -errno when the
 * socket named cannot be used (the caller logs it and goes on; a lost notification is never
 * fatal to the stream). */
#ifndef SR_SD_NOTIFY_H
#define SR_SD_NOTIFY_H

#include <stdint.h>

/* "READY=1" plus "STATUS=<status>" when status is not NULL: the consumer group is joined. */
int sr_notify_ready(const char *status);
/* "STATUS=<status>": one line shown by systemctl status (newlines become spaces). */
int sr_notify_status(const char *status);
/* "WATCHDOG=1": the loop is alive; send every half of sr_notify_watchdog_usec. */
int sr_notify_watchdog(void);
/* "STOPPING=1": the drain has begun. */
int sr_notify_stopping(void);
/* "RELOADING=1" + "MONOTONIC_USEC=<CLOCK_MONOTONIC in µs>": a reload (SIGHUP) has begun;
 * send sr_notify_ready() when it is done. */
int sr_notify_reloading(void);
/* The watchdog interval systemd expects keep-alives within: 1 and *out set (µs) when
 * $WATCHDOG_USEC is set and $WATCHDOG_PID is unset or this process; 0 when the watchdog is
 * off or meant for another process; -EINVAL when either variable is malformed. */
int sr_notify_watchdog_usec(uint64_t *out);

#endif
