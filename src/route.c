/*
 * route.c -- first-match routing on host and path prefix.
 * Calls: nothing.  Pure: no I/O, no globals.
 */
#include "route.h"

/* Strip ":port" (not inside an IPv6 literal) and one trailing dot. */
static struct pt_str route_host_name(struct pt_str host)
{
    size_t i = host.len;

    if (host.len && host.p[0] == '[') {
        const char *end = memchr(host.p, ']', host.len);
        if (end)
            host.len = (size_t)(end - host.p) + 1;
        return host;
    }
    while (i > 0 && host.p[i - 1] >= '0' && host.p[i - 1] <= '9')
        i--;
    if (i > 0 && i < host.len && host.p[i - 1] == ':')
        host.len = i - 1;
    else if (i > 0 && i == host.len && host.p[i - 1] == ':')
        host.len = i - 1;
    if (host.len && host.p[host.len - 1] == '.')
        host.len--;
    return host;
}

static int route_ieq_tail(struct pt_str s, const char *lit, size_t litlen)
{
    if (s.len < litlen)
        return 0;
    const char *p = s.p + s.len - litlen;
    for (size_t i = 0; i < litlen; i++)
        if (pt_lower(p[i]) != lit[i])
            return 0;
    return 1;
}

/* Route hosts are lower-cased by the loader; "*.x" matches "a.x", "b.a.x"
 * but not "x" itself. */
static int route_host_ok(const char *want, struct pt_str host)
{
    size_t wl;

    if (want == NULL)
        return 1;
    wl = strlen(want);
    if (want[0] == '*' && want[1] == '.')
        return host.len > wl - 1 && route_ieq_tail(host, want + 1, wl - 1);
    return host.len == wl && route_ieq_tail(host, want, wl);
}

int route_header_dropped(const struct conf_header_ops *ops,
                         struct pt_str name)
{
    for (size_t i = 0; i < ops->nremove; i++)
        if (pt_str_ieq(name, ops->remove[i]))
            return 1;
    for (size_t i = 0; i < ops->nset; i++)
        if (pt_str_ieq(name, ops->set[i].name))
            return 1;
    return 0;
}

const struct conf_route *route_match(const struct conf *conf,
                                     struct pt_str host, struct pt_str path)
{
    struct pt_str name = route_host_name(host);

    for (size_t i = 0; i < conf->nroutes; i++) {
        const struct conf_route *r = &conf->routes[i];
        size_t pl = strlen(r->path_prefix);
        if (!route_host_ok(r->host, name))
            continue;
        if (path.len >= pl && memcmp(path.p, r->path_prefix, pl) == 0)
            return r;
    }
    return NULL;
}
