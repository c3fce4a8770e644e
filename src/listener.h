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

#endif
