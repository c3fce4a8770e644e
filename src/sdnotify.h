/*
 * sdnotify.h -- systemd's readiness protocol (sd_notify(3)) spoken by
 * hand: datagrams to $NOTIFY_SOCKET, no libsystemd.  Layer 4, used by the
 * master only.  Calls: log.c, libc.
 *
 * Without NOTIFY_SOCKET (not started by systemd with Type=notify) every
 * function does nothing.  A message that cannot be sent is logged once
 * and otherwise ignored: the daemon serves either way.
 */
#ifndef PORTICO_SDNOTIFY_H
#define PORTICO_SDNOTIFY_H

/*
 * Read NOTIFY_SOCKET (a path, or "@name" for the abstract namespace).
 * Returns 1 when notifications will be sent, 0 when not.  The other
 * functions call it on first use; calling it again re-reads nothing.
 */
int sdnotify_init(void);

/* "READY=1", "MAINPID=<our pid>" and "STATUS=" the formatted text: at
 * start-up, and again when a reload is over, applied or rejected. */
void sdnotify_ready(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* "RELOADING=1" with "MONOTONIC_USEC=" (CLOCK_MONOTONIC), as
 * Type=notify-reload wants it: a reload has begun. */
void sdnotify_reloading(void);

/* "STOPPING=1": a stop has begun. */
void sdnotify_stopping(void);

/* "STATUS=..." alone, shown by systemctl status. */
void sdnotify_status(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

#endif
