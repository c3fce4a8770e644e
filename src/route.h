/*
 * route.h -- picks the route for a request: first match wins, on host
 * (exact or "*.suffix") and path prefix.  Layer 1 (pure).
 */
#ifndef PORTICO_ROUTE_H
#define PORTICO_ROUTE_H

#include "conf.h"

/*
 * host is the request's Host (any ":port" and trailing dot are ignored,
 * case-insensitive); path is the raw request path.  Returns the first
 * matching route of conf (borrowed), or NULL when none matches.
 */
const struct conf_route *route_match(const struct conf *conf,
                                     struct pt_str host, struct pt_str path);

/* Does a rule set drop this field (named in remove, or replaced by set)? */
int route_header_dropped(const struct conf_header_ops *ops,
                         struct pt_str name);

#endif
