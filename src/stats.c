/*
 * stats.c -- the counters' shared-memory zone: global counters, one slot
 * per route and one per upstream server, found by key in open-addressing
 * tables.  Only the master inserts (before a generation that needs a
 * slot reaches the workers); workers only add to atomics.
 * Calls: libc.
 */
#include "stats.h"

#include "shm.h"

#include <stdio.h>
#include <string.h>

#define STATS_ROUTES 1024
#define STATS_SERVERS 4096

const double stats_bucket_bounds[STATS_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

#define STATS_PROCS 256 /* worker processes, retiring ones included */

/* A worker process's share of connections_open; pid 0: a free place.
 * A cache line each: workers update their own at every connection. */
struct stats_proc {
    _Alignas(64) _Atomic int64_t pid;
    _Atomic int64_t connections_open;
};

struct stats_zone {
    struct stats_global global;
    struct stats_proc procs[STATS_PROCS];
    struct stats_route routes[STATS_ROUTES];
    struct stats_server servers[STATS_SERVERS];
};

static struct stats_zone *zone;
static struct stats_proc *self_proc; /* this worker's place, or NULL */

int stats_init(void)
{
    zone = shm_map(sizeof(*zone));
    return zone ? PT_OK : PT_ERROR;
}

struct stats_global *stats_global(void)
{
    return zone ? &zone->global : NULL;
}

void stats_proc_claim(int64_t pid)
{
    self_proc = NULL;
    for (size_t i = 0; zone && i < STATS_PROCS; i++) {
        int64_t none = 0;
        if (atomic_compare_exchange_strong(&zone->procs[i].pid, &none, pid)) {
            self_proc = &zone->procs[i];
            return;
        }
    }
    /* All taken (over 256 workers): this one's connections stay in the
     * gauge if it dies. */
}

/*
 * The gauge goes up before the worker's share and down after it, so a
 * worker killed between the two leaves the gauge one too high, never
 * below the truth, once stats_proc_gone took its share off.
 */
void stats_conn_opened(void)
{
    if (zone == NULL)
        return;
    atomic_fetch_add_explicit(&zone->global.connections_open, 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&zone->global.connections_total, 1,
                              memory_order_relaxed);
    if (self_proc)
        atomic_fetch_add_explicit(&self_proc->connections_open, 1,
                                  memory_order_relaxed);
}

void stats_conn_closed(void)
{
    if (zone == NULL)
        return;
    if (self_proc)
        atomic_fetch_sub_explicit(&self_proc->connections_open, 1,
                                  memory_order_relaxed);
    atomic_fetch_sub_explicit(&zone->global.connections_open, 1,
                              memory_order_relaxed);
}

void stats_proc_gone(int64_t pid)
{
    int64_t held = pid;

    if (zone == NULL)
        return;
    atomic_compare_exchange_strong(&zone->global.accept_shedder, &held, 0);
    for (size_t i = 0; i < STATS_PROCS; i++) {
        struct stats_proc *p = &zone->procs[i];
        if (atomic_load(&p->pid) != pid)
            continue;
        atomic_fetch_sub(&zone->global.connections_open,
                         atomic_exchange(&p->connections_open, 0));
        atomic_store(&p->pid, 0);
        return;
    }
}

/* Find (or, with insert, claim) the slot of key in a table of n slots of
 * size sz whose first member is the key array of keylen bytes. */
static void *stats_probe(void *table, size_t n, size_t sz, size_t keylen,
                         const char *key, size_t len, int insert)
{
    uint32_t h = shm_hash(key, len);

    if (len == 0 || len >= keylen)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char *slot = (char *)table + ((h + i) % n) * sz;
        if (slot[0] == '\0') {
            if (!insert)
                return NULL;
            memcpy(slot, key, len + 1);
            return slot;
        }
        if (memcmp(slot, key, len + 1) == 0)
            return slot;
    }
    return NULL;
}

void stats_route_key(const struct conf_route *route, char *buf, size_t len)
{
    snprintf(buf, len, "%s %s", route->host ? route->host : "*",
             route->path_prefix);
}

static struct stats_route *stats_route_probe(const struct conf_route *r,
                                             int insert)
{
    char key[192];

    if (zone == NULL || r == NULL)
        return NULL;
    stats_route_key(r, key, sizeof(key));
    return stats_probe(zone->routes, STATS_ROUTES, sizeof(zone->routes[0]),
                       sizeof(zone->routes[0].key), key, strlen(key),
                       insert);
}

static struct stats_server *stats_server_probe(const char *group,
                                               const char *address,
                                               int insert)
{
    char key[160];

    if (zone == NULL)
        return NULL;
    snprintf(key, sizeof(key), "%s %s", group, address);
    return stats_probe(zone->servers, STATS_SERVERS,
                       sizeof(zone->servers[0]),
                       sizeof(zone->servers[0].key), key, strlen(key),
                       insert);
}

void stats_register(const struct conf *conf)
{
    for (size_t i = 0; zone && i < conf->nroutes; i++)
        stats_route_probe(&conf->routes[i], 1);
    for (size_t i = 0; zone && i < conf->nupstreams; i++) {
        const struct conf_upstream *u = &conf->upstreams[i];
        for (size_t k = 0; k < u->nservers; k++)
            stats_server_probe(u->name, u->servers[k].address, 1);
    }
}

struct stats_route *stats_route_find(const struct conf_route *route)
{
    return stats_route_probe(route, 0);
}

struct stats_server *stats_server_find(const char *group, const char *address)
{
    return stats_server_probe(group, address, 0);
}

void stats_request(struct stats_route *r, int status)
{
    int cls = status / 100 - 1;

    if (zone == NULL || cls < 0 || cls >= STATS_CLASSES)
        return;
    atomic_fetch_add_explicit(r ? &r->requests[cls]
                                : &zone->global.requests_unrouted[cls],
                              1, memory_order_relaxed);
}

void stats_upstream_time(struct stats_server *s, uint64_t us)
{
    size_t b = 0;

    if (s == NULL)
        return;
    while (b < STATS_BUCKETS && (double)us > stats_bucket_bounds[b] * 1e6)
        b++;
    atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_us, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
}

const struct stats_route *stats_route_next(size_t *i)
{
    for (; zone && *i < STATS_ROUTES; (*i)++)
        if (zone->routes[*i].key[0])
            return &zone->routes[(*i)++];
    return NULL;
}

const struct stats_server *stats_server_next(size_t *i)
{
    for (; zone && *i < STATS_SERVERS; (*i)++)
        if (zone->servers[*i].key[0])
            return &zone->servers[(*i)++];
    return NULL;
}
