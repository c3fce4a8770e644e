/*
 * listener.h -- opening listening sockets (in the master, before fork or
 * on reload).  Calls: libc, log.c.
 */
#ifndef PORTICO_LISTENER_H
#define PORTICO_LISTENER_H

#include "conf.h"

/*
 * Open, bind and listen on l->addr (non-blocking, close-on-exec,
 * SO_REUSEADDR, IPV6_V6ONLY for IPv6).  Returns the fd, or -1 with errno
 * set.
 */
int listener_open(const struct conf_listener *l);

/* "127.0.0.1:34567": the address the socket is actually bound to. */
const char *listener_bound_name(int fd, char *buf, size_t len);

/*
 * After the event loop has registered fd (an evconnlistener enabled),
 * make its registration EPOLLEXCLUSIVE, so that a connection wakes one
 * sleeping worker rather than all.  Returns 0 when done; -1 when it could
 * not be (no /proc, an old kernel), the registration left as the loop
 * made it; -2 when fd is no longer registered at all (out of memory in
 * the kernel: the listener must be enabled again).
 */
int listener_wake_one(int fd);

#endif
