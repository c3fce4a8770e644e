/*
 * proxy.h -- one proxied exchange: the request forwarded to an upstream
 * server, the response streamed back.  Owned by the client connection's
 * request.  Calls: upstream.c, http_parse.c, conn.h, log.c.
 */
#ifndef PORTICO_PROXY_H
#define PORTICO_PROXY_H

#include "conf.h"
#include "http_parse.h"

struct conn;
struct proxy;
struct ups_set;

/*
 * Prepare forwarding request r (r's views need to stay valid during this
 * call only) to the route's upstream: the upstream head is built now.
 * Returns the proxy (owned by the caller, free with proxy_free) or NULL
 * when out of memory.  Nothing happens on the network until proxy_run.
 */
struct proxy *proxy_start(struct conn *c, struct ups_set *ups,
                          const struct conf_route *route,
                          const struct http_request *r,
                          const struct conf *cf);
/* Pick a server and connect.  May end the exchange at once (503). */
void proxy_run(struct proxy *px);

/* The client sent more bytes (request body) or drained its output. */
void proxy_on_client_read(struct proxy *px);
void proxy_on_client_drained(struct proxy *px);

/* The client closed its side.  Returns 1 when the proxy finishes the
 * exchange itself (a tunnel flushing to the upstream), 0 when the caller
 * should close now. */
int proxy_on_client_eof(struct proxy *px);

/* A cache fill progressed: requests reading along it take the news. */
void proxy_cache_wakeup(void);

/* Is the request body fully forwarded (so the client's next bytes are
 * the next request)? */
int proxy_request_done(const struct proxy *px);

/* End the exchange: the upstream connection is closed unless it was
 * already handed back to its pool. */
void proxy_free(struct proxy **px);

#endif
