/*
 * conn.h -- one client connection and its HTTP/1.1 state machine.
 * Calls: http_parse.c, route.c, log.c, worker.h (generations).
 */
#ifndef PORTICO_CONN_H
#define PORTICO_CONN_H

#include <event2/util.h>
#include <sys/socket.h>

struct worker;
struct conn;

/* Take ownership of an accepted socket.  Returns PT_OK or PT_ERROR (the
 * socket is closed then). */
int conn_new(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa,
             int salen);

/* Graceful stop: close idle connections now, let busy ones finish their
 * current exchange and then close. */
void conn_stop_all_graceful(void);
/* Fast stop: close every connection now. */
void conn_close_all(void);
unsigned conn_count(void);

#endif
