/*
 * upstream.h -- upstream groups inside one worker and one generation:
 * server choice (smooth weighted round robin, least connections,
 * consistent hash), passive health, and the pool of idle keep-alive
 * connections per server.  Calls: log.c, util.c, libevent.
 */
#ifndef PORTICO_UPSTREAM_H
#define PORTICO_UPSTREAM_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "conf.h"

struct ups_server;
struct ups_group;
struct ups_set;

/* One TCP connection to an upstream server. */
struct upconn {
    struct bufferevent *bev;  /* owns; its callbacks are the user's */
    struct ups_server *srv;   /* borrowed */
    struct upconn *next;      /* idle list */
    evutil_socket_t fd;       /* bev's */
    uint64_t idle_ms;         /* how long it may idle in the pool */
    unsigned requests;        /* exchanges done on it */
    unsigned reused : 1;      /* came from the pool */
    unsigned tls : 1;         /* bev is a TLS bufferevent */
    /* A plain connection's reads (see ups_conn_read): */
    unsigned rd_set : 1;      /* rd is assigned */
    unsigned rd_on : 1;       /* rd is added */
    unsigned rd_timed : 1;    /* rd_ms bounds the wait for bytes */
    unsigned wr_timed : 1;    /* wr_tv is the bufferevent's write timeout */
    uint32_t rd_want;         /* what the next read asks for */
    uint64_t rd_ms;
    uint64_t rd_due;          /* when the wait times out (coarse ms); 0: never */
    uint64_t tmo_at;          /* when tmo fires; 0: not pending */
    struct timeval wr_tv;
    struct event rd;          /* no timeout of its own: tmo is it, lazily */
    struct event tmo;
};

/* All groups of one configuration generation (owned by the generation). */
struct ups_set *ups_set_new(struct event_base *base, const struct conf *conf);
/* Close every pooled connection and free; connections in use must have
 * been released first. */
void ups_set_free(struct ups_set **set);
/* A reload made this set old: close its idle connections and stop its
 * health checks now. */
void ups_set_retire(struct ups_set *set);
/* Run the active health checks of every group that has them (one worker
 * does this for all: the results are shared). */
void ups_set_check(struct ups_set *set);

struct ups_group *ups_group_of(struct ups_set *set,
                               const struct conf_upstream *cf);

/* What a request offers the hash: its client, URI and headers. */
struct ups_hash_input {
    const struct sockaddr *client;
    struct pt_str uri;
    struct pt_str header; /* value of hash_key header:NAME */
};

/* The request's key for balance: hash (0 for other policies). */
uint32_t ups_hash_key(const struct ups_group *g,
                      const struct ups_hash_input *in);

/*
 * Pick a usable server not marked in `tried` (a bit per server index;
 * at most 64 are tracked); key is ups_hash_key's.  Returns NULL when
 * none is usable (503).
 */
struct ups_server *ups_pick(struct ups_group *g, uint32_t key,
                            uint64_t tried);
size_t ups_server_index(const struct ups_server *s);
const struct conf_server *ups_server_conf(const struct ups_server *s);
const struct conf_upstream *ups_group_conf(const struct ups_group *g);
struct ups_group *ups_server_group(const struct ups_server *s);

/* The server answered with a response head after us microseconds. */
void ups_server_observe(struct ups_server *s, uint64_t us);
/* A request started / ended on s (least_conn counts these). */
void ups_server_busy(struct ups_server *s, int delta);
/* Passive health: a connect error, reset or timeout; or a success. */
void ups_server_failed(struct ups_server *s);
void ups_server_ok(struct ups_server *s);

/*
 * An idle pooled connection to s, or a new connecting one (bev not yet
 * connected: wait for BEV_EVENT_CONNECTED).  NULL on a local failure
 * (errno set).  The caller owns the result.
 */
struct upconn *ups_conn_get(struct ups_server *s);
/* Give a healthy connection back to its pool (or close it when the pool
 * is full or the set is retired).  *uc becomes NULL. */
void ups_conn_put(struct upconn **uc);
/* Close a connection that cannot be reused. */
void ups_conn_close(struct upconn **uc);

/*
 * Reading.  A TLS connection's reads are its bufferevent's.  A plain
 * one's are portico's: one recv per readiness straight into the
 * bufferevent's input, asking for more while the reads come back full
 * (libevent's evbuffer_read asks the kernel first with FIONREAD, a
 * system call per read, and takes at most 4 KB).  Either way the
 * bufferevent's read and event callbacks are called as libevent would:
 * BEV_EVENT_READING with EOF, ERROR or TIMEOUT, reading then off.
 *
 * ups_conn_read turns reading on or off; on again restarts the read
 * timeout.  ups_conn_timeouts sets the read timeout (NULL: none; it
 * runs while reading is on, from the last read) and the bufferevent's
 * write timeout (NULL: none).
 */
void ups_conn_read(struct upconn *uc, int on);
void ups_conn_timeouts(struct upconn *uc, const struct timeval *rd,
                       const struct timeval *wr);

/* Counters for this worker (retries of stale pooled connections). */
extern unsigned long ups_stale_retries;

#endif
