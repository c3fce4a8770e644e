/*
 * conn.h -- one client connection and its HTTP/1.1 state machine.
 * Calls: http_parse.c, route.c, log.c, worker.h (generations).
 */
#ifndef PORTICO_CONN_H
#define PORTICO_CONN_H

#include <event2/util.h>
#include <stdint.h>

#include "portico.h"
#include <sys/socket.h>

struct worker;
struct conn;

struct gen_listener;
struct gen;

/* Take ownership of an socket accepted on lc (borrowed: read at once).
 * Returns PT_OK or PT_ERROR (the socket is closed then). */
int conn_new(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa,
             int salen, const struct gen_listener *lc);
/* The request's X-Request-Id: the client's, or one made for it. */
struct pt_str conn_request_id(struct conn *c);
/* What the cache did for the request in flight (a static string), for
 * the json access log. */
void conn_set_cache_status(struct conn *c, const char *status);
/* The generation the request in flight runs under (borrowed). */
struct gen *conn_gen(struct conn *c);
/* Did the request arrive over TLS? */
int conn_is_tls(const struct conn *c);

/* ---- for proxy.c: the client side of a proxied exchange ---- */

struct bufferevent *conn_bev(struct conn *c);
/* Watch the client's socket while its request waits (a client that
 * goes is seen); proxy.c calls this instead of enabling reads. */
void conn_watch_client(struct conn *c);

const struct sockaddr *conn_peer(const struct conn *c);
/* May the client connection stay open after this exchange? */
int conn_client_keep_alive(const struct conn *c);
void conn_set_keep_alive(struct conn *c, int keep);
/* Nothing of the response was sent yet: answer status (502, 503, 504)
 * and close.  Frees the proxy. */
void conn_proxy_error(struct conn *c, int status, const char *why);
/* The whole response is queued.  Frees the proxy. */
void conn_proxy_done(struct conn *c, int status, uint64_t body_bytes,
                     const char *upstream, uint64_t upstream_us);
/* The response started and cannot finish, or a tunnel ended: close now.
 * Frees the proxy and the connection. */
void conn_proxy_abort(struct conn *c);
/* Write the access log line now (a tunnel logs when it opens). */
void conn_proxy_log(struct conn *c, int status, const char *upstream,
                    uint64_t upstream_us);

/* Graceful stop: close idle connections now, let busy ones finish their
 * current exchange and then close. */
void conn_stop_all_graceful(void);
/* Fast stop: close every connection now. */
void conn_close_all(void);
unsigned conn_count(void);

#endif
