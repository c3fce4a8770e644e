/*
 * cache.h -- one request's dealings with the shared cache: the key, the
 * lookup, serving a hit, and filling the store from an upstream response
 * as it streams to the client.  Layer 4 glue between proxy.c and the
 * store (cache_store.c) and policy (cache_policy.c, cache_key.c).
 */
#ifndef PORTICO_CACHE_H
#define PORTICO_CACHE_H

#include <event2/buffer.h>

#include "cache_policy.h"
#include "cache_store.h"
#include "conf.h"
#include "http_parse.h"

/* The zone the master mapped before forking (NULL: no cache). */
void cache_zone_set(struct cache_store *s);
struct cache_store *cache_zone(void);
/* The end of a loop turn: big bodies may be copied again (cache.sendfile). */
void cache_turn_end(void);
/* Forget the parsed heads the worker keeps (a new configuration: the
 * heads made with the old one's headers.response rules must go). */
void cache_head_forget(void);

enum cache_outcome {
    CACHE_PASS,  /* not cacheable here: forward, store nothing */
    CACHE_SERVE, /* answer from the cache (cache_serve) */
    CACHE_FILL,  /* forward, and offer the response to the store */
    CACHE_WAIT,  /* another request fills it: read along (cache_follow) */
    CACHE_ONLY_IF_CACHED, /* the client wants nothing but a stored copy,
                             and there is none it may have: 504 */
};

/* Stored meta flag: "not cacheable", remembered briefly so that the next
 * burst of requests for the key goes straight upstream. */
#define CACHE_F_HIT_FOR_MISS 1
#define CACHE_HIT_FOR_MISS_SECONDS 10
/* Stored meta flag: a URL's marker entry.  Its responses vary on request
 * fields outside the route's key; the entry lists them ("a,b", sorted,
 * lower-case), and each variant is stored under the URL's key joined
 * with the request's values of those fields (cache_key_vary).  Its
 * meta.status counts the variants made since the count last started. */
#define CACHE_F_VARY 2

/* Worker start: the socket other workers' fills wake this one through
 * (an abstract unix datagram socket named after the master and slot).
 * Returns the fd to watch, or -1. */
int cache_notify_open(int slot);
/* The socket is readable: empty it.  The caller then runs the waiters. */
void cache_notify_drain(int fd);

struct cache_head; /* cache.c: a stored head, parsed */

struct cache_xfer {
    struct cache_ref ref;
    unsigned begun : 1;     /* cache_begin ran; cache_end has work */
    unsigned pinned : 1;
    unsigned filling : 1;   /* the entry is ours to fill */
    unsigned storing : 1;   /* the response is going in */
    unsigned head_only : 1;
    unsigned invalidate : 1; /* unsafe method: drop the URI on success */
    unsigned tls : 1;
    enum http_method method;
    uint64_t sendfile_after; /* cache.sendfile, as bytes copied a turn */
    char *target;            /* owns (invalidate): "host\0path\0query" */
    unsigned following : 1;  /* reading along another request's fill */
    unsigned head_sent : 1;  /* (following) the head went to the client */
    unsigned follow_chunked : 1; /* (following) length unknown: chunks */
    uint64_t off;            /* (following) next byte of the entry to send */
    /* a stale entry kept while it is revalidated or refetched */
    struct cache_ref old;
    unsigned has_old : 1;
    struct cache_meta old_meta;
    struct cache_control stored_cc; /* the stale entry's Cache-Control */
    int64_t old_age;
    char *validators;        /* owns: fields to send upstream, or NULL */
    unsigned swr_refresh : 1; /* a stale hit served: refresh it behind */
    int reuse;               /* cache_reuse's verdict on the stored copy */
    int fwd_status;          /* Cache-Status fwd-status; 0 = none */
    int conditional;        /* 304 or 200 for a hit */
    int64_t request_time;
    struct cache_request creq;
    const char *detail;     /* static: why not stored / served */
    int fwd;                /* enum cache_fwd for Cache-Status */
    int64_t ttl;            /* for Cache-Status of a hit */
    struct cache_meta meta;
    char *key;              /* owns */
    size_t key_len;
    size_t primary_len;     /* key[0..primary_len): the URL's own key */
    unsigned variant : 1;   /* key is a variant's (through a marker) */
    char *vary;             /* owns (variant): the marker's field list */
    struct cache_head *head; /* a reference: the stored head of ref,
                                parsed (judge, then serve) */
    struct http_response hresp; /* views into head */
    struct http_header *saved; /* owns: the request's fields, kept while
                                  filling or following the URL's own key
                                  (a variant key may be needed later) */
    size_t nsaved;
};

/* Look the request up (route has cache: on).  tls: the request came
 * over TLS (part of the key).  r's views are read now only. */
enum cache_outcome cache_begin(struct cache_xfer *x,
                               const struct conf *conf,
                               const struct conf_route *route,
                               const struct http_request *r, int tls);

/* Answer a hit into out: head (with Age, Cache-Status and the route's
 * headers.response rules) and body.
 * Returns the status sent; *body_bytes what of the body was queued.
 * -1 (out of memory) with nothing queued. */
int cache_serve(struct cache_xfer *x, const struct conf_header_ops *ops,
                struct evbuffer *out, int keep_alive, int http10,
                uint64_t *body_bytes);

/*
 * The upstream's final response head arrived: decide whether it goes in
 * and, if so, store its head; an unsafe request's success drops the
 * cached copies of its URI (RFC 9111 4.4).  Returns the Cache-Status
 * field for the head sent to the client, written in cs (300 bytes is
 * enough), or NULL.  body_framed: the body has a Content-Length (others
 * are not stored).
 */
const char *cache_on_response(struct cache_xfer *x, const struct conf *conf,
                              const struct conf_route *route,
                              const struct http_response *resp,
                              int body_framed, char *cs, size_t cap);

/*
 * Following a fill: send what is new.  Returns 1 when the response is
 * complete, 0 when waiting for more (or for the client to drain), -1
 * when the fill gave up before the head was sent (go upstream instead),
 * -2 when it gave up after (close the client).  *body_bytes grows by
 * what was queued.
 */
int cache_follow(struct cache_xfer *x, const struct conf_header_ops *ops,
                 struct evbuffer *out, int *keep_alive, int http10,
                 uint64_t *body_bytes, int *status);

/*
 * After a stale-while-revalidate hit (fg->swr_refresh): set x up as the
 * refresh of fg's entry, a request of its own whose response only fills
 * a new entry (or refreshes the stale one on 304).  Returns PT_OK, or
 * PT_ERROR when a refresh is already under way or no room is left.
 */
int cache_begin_refresh(struct cache_xfer *x, const struct cache_xfer *fg);

/* One word for the access log: hit, stale, revalidated, collapsed, miss,
 * uncacheable or bypass. */
const char *cache_log_status(const struct cache_xfer *x);

/* Conditional fields for the upstream request when a stale entry is
 * revalidated ("If-None-Match: ...\r\n..."), or NULL. */
const char *cache_revalidation_fields(const struct cache_xfer *x);

/*
 * The upstream answered 304 to a revalidation: the stale entry is fresh
 * again (RFC 9111 4.3.4) and becomes the one to serve.  Or the upstream
 * failed (status: 5xx, or ours for a failed exchange) and the stale
 * entry may stand in (RFC 5861 stale-if-error).  Each returns 1 when the
 * caller should now answer with cache_serve, 0 otherwise.
 */
int cache_on_not_modified(struct cache_xfer *x,
                          const struct http_response *resp);
int cache_on_error(struct cache_xfer *x, int status);

/* Decoded body bytes (from a chunked response) into the entry; then
 * cache_progress once per batch to wake the readers along. */
void cache_on_data(struct cache_xfer *x, const struct conf *conf,
                   const void *p, size_t n);
void cache_progress(struct cache_xfer *x);

/* Body bytes about to go to the client: copy them into the entry. */
void cache_on_body(struct cache_xfer *x, const struct conf *conf,
                   struct evbuffer *src, size_t n);

/* The exchange ended: complete (the entry becomes servable) or not. */
void cache_end(struct cache_xfer *x, int complete);

#endif
