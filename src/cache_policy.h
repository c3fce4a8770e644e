/*
 * cache_policy.h -- HTTP caching rules for a shared cache (RFC 9111, with
 * RFC 9110 conditionals, RFC 5861 stale-* extensions): what may be
 * stored, for how long, and whether a stored response may be reused.
 * The cache key and Cache-Status are in cache_key.h.
 * Layer 1 (pure): bytes in, structs out.  No I/O, no logging, no globals,
 * no allocation.  Time is int64 seconds since the epoch, always passed in.
 * Every view in a result points into the caller's header arrays.
 */
#ifndef PORTICO_CACHE_POLICY_H
#define PORTICO_CACHE_POLICY_H

#include <stdint.h>

#include "http_parse.h"
#include "portico.h"

/* A delta-seconds directive that is absent (or ignored as invalid). */
#define CACHE_DELTA_NONE ((int64_t)-1)
/* max-stale without a value: any staleness is acceptable (RFC 9111 5.2.1.2) */
#define CACHE_STALE_ANY INT64_MAX
/* Delta-seconds beyond this are taken as this (RFC 9111 1.2.2). */
#define CACHE_DELTA_MAX ((int64_t)2147483648)
/* A timestamp that is absent or unusable. */
#define CACHE_TIME_NONE INT64_MIN

/*
 * The Cache-Control directives of one message, all field lines combined.
 * Directives that do not apply to the message's direction stay unset.
 */
struct cache_control {
    int64_t max_age;   /* request and response */
    int64_t s_maxage;  /* response */
    int64_t max_stale; /* request; CACHE_STALE_ANY without a value */
    int64_t min_fresh; /* request */
    int64_t stale_while_revalidate; /* response (RFC 5861 3) */
    int64_t stale_if_error;         /* both (RFC 5861 4) */
    unsigned no_cache : 1;          /* with or without a field list */
    unsigned no_store : 1;
    unsigned private : 1; /* with or without a field list */
    unsigned public : 1;
    unsigned must_revalidate : 1;
    unsigned proxy_revalidate : 1;
    unsigned must_understand : 1;
    unsigned immutable : 1; /* RFC 8246: informational here */
    unsigned only_if_cached : 1;
    /* max-age or s-maxage repeated or with an invalid value: the response
       is stale (RFC 9111 4.2.1); only the response side reads it */
    unsigned freshness_invalid : 1;
};

/* What the policy reads from a request head. */
struct cache_request {
    enum http_method method;
    struct cache_control cc; /* Pragma: no-cache folded in (RFC 9111 5.4) */
    unsigned has_authorization : 1;
};

/* What the policy reads from a response head. */
struct cache_response {
    int status;
    struct cache_control cc;
    int64_t date;                  /* CACHE_TIME_NONE: absent or invalid */
    int64_t expires;               /* CACHE_TIME_NONE: absent */
    int64_t last_modified;         /* CACHE_TIME_NONE: absent or invalid */
    int64_t age;                   /* Age header; 0 when absent or invalid */
    struct pt_str etag;            /* borrowed; len 0 when absent */
    unsigned expires_invalid : 1;  /* present but not a date: expired */
    unsigned expires_repeated : 1; /* two Expires lines: stale */
    unsigned has_set_cookie : 1;
    unsigned vary_star : 1;
    unsigned has_content_range : 1;
};

enum cache_storability {
    CACHE_STORE_NO = 0,
    CACHE_STORE_YES,
    CACHE_STORE_HEAD_ONLY, /* answer to HEAD: may only answer HEAD */
};

/* What the route adds to the RFC's freshness rules (opts may be NULL:
   no heuristic, no forced ttl). */
struct cache_lifetime_opts {
    int64_t heuristic_max; /* cap of the 10% heuristic; 0 disables it */
    int64_t forced_ttl;    /* used when nothing else applies; -1: none */
};

enum cache_reuse {
    CACHE_FRESH,                  /* serve it */
    CACHE_STALE_OK,               /* stale, but the client's max-stale
                                     accepts it: serve it */
    CACHE_STALE_REVALIDATE,       /* stale or not fresh enough: validate
                                     with the origin before serving */
    CACHE_STALE_WHILE_REVALIDATE, /* serve it now, refresh in background */
    CACHE_MUST_REVALIDATE,        /* no-cache (request or response):
                                     validate even though fresh */
    CACHE_ONLY_IF_CACHED_MISS,    /* only-if-cached and not servable:
                                     the caller answers 504 */
};

/* Validators to send upstream when revalidating (RFC 9111 4.3.1). */
struct cache_validators {
    struct pt_str if_none_match;     /* the stored ETag; len 0: none */
    struct pt_str if_modified_since; /* the stored Last-Modified */
};

/* A URI on the same origin, as path and query views (borrowed). */
struct cache_uri {
    struct pt_str path;
    struct pt_str query; /* without '?'; len 0 when absent */
};

/* The inputs of a cache key (cache_key.h); also the target of
   cache_invalidations. */
struct cache_key_in {
    struct pt_str method; /* HEAD is keyed as GET (see cache_key_build) */
    struct pt_str scheme; /* "http" or "https": selects the default port */
    struct pt_str host;
    struct pt_str path;
    struct pt_str query;               /* without '?' */
    const struct http_header *headers; /* the request's */
    size_t nheaders;
};

/* Set every field of cc to "absent". */
void cache_control_init(struct cache_control *cc);

/*
 * Add the directives of one Cache-Control field value to cc (call once
 * per field line, after cache_control_init).  Unknown directives and
 * invalid arguments are ignored, except that an invalid or repeated
 * max-age/s-maxage sets freshness_invalid.  Never fails.
 */
void cache_control_parse(struct pt_str value, struct cache_control *cc);

/*
 * Parse an HTTP-date: IMF-fixdate, RFC 850 or asctime (RFC 9110 5.6.7).
 * now places the RFC 850 two-digit year.  Returns PT_OK with *out set,
 * or PT_ERROR for anything else (then *out is untouched).
 */
int cache_date_parse(struct pt_str s, int64_t now, int64_t *out);

/* Summarise a request head into *out.  Never fails. */
void cache_request_read(enum http_method method, const struct http_header *h,
                        size_t n, struct cache_request *out);

/*
 * Summarise a response head into *out; response_time (when it arrived)
 * places two-digit years.  out->etag borrows from h.  Never fails.
 */
void cache_response_read(int status, const struct http_header *h, size_t n,
                         int64_t response_time, struct cache_response *out);

/*
 * May this exchange be stored (RFC 9111 3, 3.5)?  Returns CACHE_STORE_YES,
 * CACHE_STORE_HEAD_ONLY, or CACHE_STORE_NO with *why set to a static
 * reason (why may be NULL; it is set to NULL when storable).  Our own
 * rule on top of the RFC: a response with Set-Cookie is stored only when
 * it says "public" or s-maxage, and is then stored as is.
 */
enum cache_storability cache_storable(const struct cache_request *req,
                                const struct cache_response *resp,
                                const char **why);

/*
 * Freshness lifetime in seconds (RFC 9111 4.2.1, 4.2.2): s-maxage,
 * max-age, Expires - Date, the heuristic, the route's forced ttl, or 0.
 */
int64_t cache_freshness_lifetime(const struct cache_response *resp,
                                 int64_t response_time,
                                 const struct cache_lifetime_opts *opts);

/*
 * The corrected initial age at store time (RFC 9111 4.2.3), >= 0, given
 * when the request was sent and when the response arrived.
 */
int64_t cache_age_initial(const struct cache_response *resp,
                          int64_t request_time, int64_t response_time);

/* The current age at serve time: initial age plus resident time, >= 0. */
int64_t cache_age_current(int64_t initial_age, int64_t response_time,
                          int64_t now);

/* May a stored response be reused for this request (RFC 9111 4)? */
enum cache_reuse cache_reuse(const struct cache_control *req,
                             const struct cache_control *stored,
                             int64_t lifetime, int64_t current_age);

/*
 * The upstream failed: may the stored copy be served anyway (RFC 5861 4)?
 * Returns 1 or 0.
 */
int cache_stale_if_error(const struct cache_control *req,
                         const struct cache_control *stored, int64_t lifetime,
                         int64_t current_age);

/*
 * Evaluate the client's If-None-Match / If-Modified-Since against the
 * stored ETag (len 0: none) and Last-Modified (CACHE_TIME_NONE: none)
 * (RFC 9110 13.1.2, 13.1.3, 13.2.2).  Returns 304 or 200.
 */
int cache_conditional(enum http_method method, const struct http_header *req,
                      size_t n, struct pt_str etag, int64_t last_modified,
                      int64_t now);

/*
 * Fill *out with the validators of a stored response head.  Returns how
 * many were found (0, 1 or 2).
 */
int cache_validators(const struct http_header *stored, size_t n, int64_t now,
                     struct cache_validators *out);

/*
 * Does a 304 received for a revalidation built by cache_validators()
 * update this stored response (RFC 9111 4.3.4)?  Returns 1 or 0.
 */
int cache_304_applies(const struct http_header *stored, size_t nstored,
                      const struct http_header *h304, size_t n304,
                      int64_t now);

/*
 * Does the response field name go into the stored copy (RFC 9111 3.1)?
 * h is the response head (its Connection header is read).  Returns 1/0.
 */
int cache_header_storable(struct pt_str name, const struct http_header *h,
                          size_t n);

/*
 * Does the field name of a 304 replace the stored field of that name
 * (RFC 9111 3.2, 4.3.4)?  h304 is the 304's head.  Returns 1 or 0.
 */
int cache_header_updatable(struct pt_str name, const struct http_header *h304,
                           size_t n304);

/*
 * URIs an exchange invalidates (RFC 9111 4.4): for an unsafe method with
 * a 2xx/3xx answer, the target and the Location / Content-Location that
 * share its origin (scheme, host).  Writes up to 3 into out and returns
 * how many.
 */
int cache_invalidations(enum http_method method, int status,
                        const struct cache_key_in *target,
                        const struct http_header *resp, size_t n,
                        struct cache_uri out[3]);

#endif
