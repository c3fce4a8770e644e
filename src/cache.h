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

enum cache_outcome {
    CACHE_PASS,  /* not cacheable here: forward, store nothing */
    CACHE_SERVE, /* answer from the cache (cache_serve) */
    CACHE_FILL,  /* forward, and offer the response to the store */
};

struct cache_xfer {
    struct cache_ref ref;
    unsigned pinned : 1;
    unsigned filling : 1;   /* the entry is ours to fill */
    unsigned storing : 1;   /* the response is going in */
    unsigned head_only : 1;
    unsigned invalidate : 1; /* unsafe method: drop the URI on success */
    int conditional;        /* 304 or 200 for a hit */
    int64_t request_time;
    struct cache_request creq;
    const char *detail;     /* static: why not stored / served */
    int fwd;                /* enum cache_fwd for Cache-Status */
    int64_t ttl;            /* for Cache-Status of a hit */
    struct cache_meta meta;
    char *key;              /* owns */
    size_t key_len;
};

/* Look the request up (route has cache: on).  tls: the request came
 * over TLS (part of the key).  r's views are read now only. */
enum cache_outcome cache_begin(struct cache_xfer *x,
                               const struct conf *conf,
                               const struct conf_route *route,
                               const struct http_request *r, int tls);

/* Answer a hit into out: head (with Age, Cache-Status and the route's
 * headers.response rules) and body.
 * Returns the status sent; *body_bytes what of the body was queued. */
int cache_serve(struct cache_xfer *x, const struct conf_header_ops *ops,
                struct evbuffer *out, int keep_alive, int http10,
                uint64_t *body_bytes);

/*
 * The upstream's final response head arrived: decide whether it goes in
 * and, if so, store its head; an unsafe request's success drops the
 * cached copies of its URI (RFC 9111 4.4).  Adds the Cache-Status field to `fields`
 * (the head being sent to the client).  body_framed: the body has a
 * Content-Length (others are not stored).
 */
void cache_on_response(struct cache_xfer *x, const struct conf *conf,
                       const struct conf_route *route,
                       const struct http_response *resp, int body_framed,
                       struct evbuffer *fields);

/* Body bytes about to go to the client: copy them into the entry. */
void cache_on_body(struct cache_xfer *x, const struct conf *conf,
                   struct evbuffer *src, size_t n);

/* The exchange ended: complete (the entry becomes servable) or not. */
void cache_end(struct cache_xfer *x, int complete);

#endif
