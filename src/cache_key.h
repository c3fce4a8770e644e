/*
 * cache_key.h -- the cache key of a request and the Cache-Status field
 * value (RFC 9211) of a shared cache.
 * Layer 1 (pure): bytes in, bytes out into the caller's buffer.  No I/O,
 * no logging, no globals, no allocation.  The key's inputs,
 * struct cache_key_in, live in cache_policy.h: invalidation reads them too.
 * Calls: cache_policy.h, portico.h.
 */
#ifndef PORTICO_CACHE_KEY_H
#define PORTICO_CACHE_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "cache_policy.h"
#include "portico.h"

/* The "fwd" parameter of Cache-Status (RFC 9211 2.2). */
enum cache_fwd {
    CACHE_FWD_NONE = 0, /* not forwarded: a hit */
    CACHE_FWD_BYPASS,
    CACHE_FWD_METHOD,
    CACHE_FWD_URI_MISS,
    CACHE_FWD_VARY_MISS,
    CACHE_FWD_MISS,
    CACHE_FWD_REQUEST,
    CACHE_FWD_STALE,
    CACHE_FWD_PARTIAL,
};

struct cache_status {
    enum cache_fwd fwd;
    int fwd_status; /* 0: not sent */
    int has_ttl;
    int64_t ttl; /* lifetime - current age; negative when stale */
    unsigned stored : 1;
    unsigned collapsed : 1;
    const char *detail; /* borrowed; NULL: not sent */
};

/* A route's declarative key options. */
struct cache_key_opts {
    int sort_query;            /* stable sort of parameters by raw name */
    const struct pt_str *drop; /* parameter names; "utm_*" is a prefix */
    size_t ndrop;
    const struct pt_str *vary; /* request header names joining the key */
    size_t nvary;
    int normalize_accept_encoding; /* Accept-Encoding -> br|gzip|identity */
};

/*
 * Write a Cache-Status field value (RFC 9211) for cache `name` into buf,
 * NUL-terminated.  Returns its length, or -1 when buf is too small.
 */
int cache_status_format(const char *name, const struct cache_status *st,
                        char *buf, size_t cap);

/*
 * Write the cache key of a request into buf (not NUL-terminated):
 * "METHOD scheme://host/path?query" then "\nname: v1,v2" per header of
 * opts->vary ("\nname" when absent).  HEAD is keyed as GET, the host is
 * lower-cased without its default port, query bytes are never decoded.
 * opts may be NULL.  Returns the length, or -1 when buf is too small.
 */
int cache_key_build(const struct cache_key_in *in,
                    const struct cache_key_opts *opts, char *buf, size_t cap);

/*
 * A variant's key (RFC 9111 4.1): to the key in buf[0..len) append "\n*"
 * then, for each name of the comma-separated list `names` (lower-case),
 * the request's values as cache_key_build writes them ("\nname: v1,v2",
 * "\nname" when absent).  Every variant key of a URL starts with that
 * URL's key and "\n".  Returns the new length, or -1 past cap.
 */
int cache_key_vary(const struct http_header *h, size_t nh,
                   struct pt_str names, char *buf, size_t len, size_t cap);

#endif
