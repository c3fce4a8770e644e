/*
 * stats.h -- counters every worker adds to and the admin listener reads,
 * in a shared-memory zone mapped by the master before forking (so they
 * add up over all workers and survive reloads).  Layer 3.  Lock-free:
 * relaxed atomics only.  Calls: libc.
 */
#ifndef PORTICO_STATS_H
#define PORTICO_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "conf.h"

#define STATS_CLASSES 5 /* 1xx .. 5xx */
#define STATS_BUCKETS 11 /* upstream time histogram, plus +Inf */

/* Requests of one route, keyed "host path_prefix" ("*" for any host). */
struct stats_route {
    char key[192];                      /* empty = free */
    _Atomic uint64_t requests[STATS_CLASSES];
};

/* Upstream response times of one server, keyed like shm_health. */
struct stats_server {
    char key[160];
    _Atomic uint64_t buckets[STATS_BUCKETS + 1]; /* cumulative at read */
    _Atomic uint64_t sum_us;
    _Atomic uint64_t count;
};

struct stats_global {
    _Atomic uint64_t bytes_in, bytes_out;
    _Atomic int64_t connections_open;
    _Atomic uint64_t connections_total;
    _Atomic uint64_t requests_unrouted[STATS_CLASSES];
    _Atomic uint64_t retries_stale;       /* pooled connection closed */
    _Atomic uint64_t retries_next_server; /* another server tried */
    _Atomic uint64_t reloads_ok, reloads_rejected;
    _Atomic uint64_t cache_hits;       /* answered from a stored entry */
    _Atomic uint64_t cache_misses;     /* fetched to fill an entry */
    _Atomic uint64_t cache_stale;      /* found stale, fetched anew */
    _Atomic uint64_t cache_collapsed;  /* read along another's fill */
    _Atomic uint64_t cache_uncacheable; /* responses not stored */
    _Atomic uint64_t workers;             /* running, as the master saw */
    _Atomic uint64_t generation;
    _Atomic uint64_t started_unix;        /* master start, seconds */
    /* Not a counter: the pid of the one worker that stops accepting to
     * share connections out (worker.c, worker_over_share), 0 for none.
     * One at a time, so that another always listens. */
    _Atomic int64_t accept_shedder;
};

extern const double stats_bucket_bounds[STATS_BUCKETS]; /* seconds */

/* Map the zone (master, before forking).  Returns PT_OK or PT_ERROR. */
int stats_init(void);
/* The master: slots for conf's routes and upstream servers. */
void stats_register(const struct conf *conf);

struct stats_global *stats_global(void); /* NULL before stats_init */
/* A route's slot, or NULL.  route NULL: NULL (count it as unrouted). */
struct stats_route *stats_route_find(const struct conf_route *route);
struct stats_server *stats_server_find(const char *group,
                                       const char *address);

/*
 * Open client connections are counted in the global gauge and, beside
 * it, per worker process, so that the master can take a dead worker's
 * connections out of the gauge.  A worker claims its place at start
 * (stats_proc_claim); conn.c counts each connection opened and closed;
 * the master calls stats_proc_gone for each pid it reaps, which also
 * frees a shedding token that pid held.
 */
void stats_proc_claim(int64_t pid);
void stats_conn_opened(void);
void stats_conn_closed(void);
void stats_proc_gone(int64_t pid);

/* Count one finished exchange with this status. */
void stats_request(struct stats_route *r, int status);
/* One upstream response head after us microseconds. */
void stats_upstream_time(struct stats_server *s, uint64_t us);

/* The next used slot at or after *i (for /metrics), *i moved past it;
 * NULL at the end.  Start with *i = 0. */
const struct stats_route *stats_route_next(size_t *i);
const struct stats_server *stats_server_next(size_t *i);

/* "api.example.com /v1" into buf (the route's key). */
void stats_route_key(const struct conf_route *route, char *buf, size_t len);

#endif
