/*
 * http_parse.h -- strict HTTP/1.x message-head and chunked-body parsers.
 * Layer 1 (pure): bytes in, structs out.  No I/O, no logging, no globals,
 * no allocation.  Every view in a result points into the caller's buffer.
 */
#ifndef PORTICO_HTTP_PARSE_H
#define PORTICO_HTTP_PARSE_H

#include <stdint.h>
#include <sys/types.h>

#include "portico.h"

enum http_method {
    HTTP_M_OTHER = 0, /* a valid token we do not know: passed on as is */
    HTTP_M_GET,
    HTTP_M_HEAD,
    HTTP_M_POST,
    HTTP_M_PUT,
    HTTP_M_DELETE,
    HTTP_M_PATCH,
    HTTP_M_OPTIONS,
    HTTP_M_CONNECT,
    HTTP_M_TRACE,
};

struct http_header {
    struct pt_str name;  /* token, as received (case kept) */
    struct pt_str value; /* leading and trailing SP/HTAB trimmed */
};

/* Limits the caller imposes; exceeding one gives the status noted. */
struct http_limits {
    size_t max_head_bytes;  /* request line + headers + CRLF CRLF: 431 */
    size_t max_uri_bytes;   /* request-target length: 414 */
    size_t max_headers;     /* header field lines: 431 */
};

/* Framing and connection facts derived while parsing. */
struct http_request {
    struct pt_str method;
    enum http_method method_id;
    struct pt_str target; /* request-target as received */
    struct pt_str path;   /* path part of target ("*" for asterisk-form,
                             "" for authority-form) */
    struct pt_str query;  /* after '?', without it; len 0 when absent */
    int version_minor;    /* 0 or 1 (HTTP/1.0, HTTP/1.1) */

    struct http_header *headers; /* caller-owned array */
    size_t nheaders;
    size_t headers_cap; /* caller sets: capacity of headers[] */

    struct pt_str host;     /* Host header value, or authority of an
                               absolute-form target (which wins) */
    int64_t content_length; /* -1 when absent */
    unsigned chunked : 1;   /* Transfer-Encoding: chunked */
    unsigned keep_alive : 1; /* connection persists after this exchange */
    unsigned expect_continue : 1; /* Expect: 100-continue */
    unsigned upgrade : 1;   /* Connection: upgrade and an Upgrade header */

    int status; /* on PT_ERROR: the status to answer (400, 414, 417, 431,
                   501, 505) */
    const char *error; /* on PT_ERROR: static text saying what was wrong */
};

/*
 * Parse a request head from buf[0..len).  Returns the number of bytes the
 * head takes (up to and including the empty line) when it is complete and
 * valid, PT_AGAIN when more bytes are needed (and no limit is exceeded yet),
 * or PT_ERROR with req->status and req->error set.  Stateless: call again
 * with the same, longer buffer when more bytes arrive.  Empty lines (CRLF)
 * before the request line are skipped as RFC 9112 2.2 allows, and count in
 * the return value.
 */
ssize_t http_parse_request(const char *buf, size_t len,
                           const struct http_limits *lim,
                           struct http_request *req);

struct http_response {
    int version_minor;
    int status;             /* 100..999 */
    struct pt_str reason;
    struct http_header *headers;
    size_t nheaders;
    size_t headers_cap;
    int64_t content_length; /* -1 when absent */
    unsigned chunked : 1;
    unsigned keep_alive : 1; /* the upstream keeps the connection open */
    const char *error;
};

/*
 * Parse a response head.  Same contract as http_parse_request (limits:
 * max_head_bytes and max_headers).  The caller knows whether the response
 * has a body (HEAD, 1xx, 204, 304) and reads content_length/chunked.
 */
ssize_t http_parse_response(const char *buf, size_t len,
                            const struct http_limits *lim,
                            struct http_response *resp);

/* Incremental chunked-body decoder state; zero it to start. */
struct http_chunked {
    int state;
    uint64_t remaining;   /* bytes left in the current chunk's data */
    size_t line_bytes;    /* bytes of the current size/trailer line */
    size_t trailer_bytes; /* total bytes of trailer section so far */
    size_t max_trailer_bytes; /* caller sets; 0 means 16384 */
    unsigned done : 1;    /* the last chunk and trailers were consumed */
};

/*
 * Decode chunked framing from buf[0..len).  Returns the bytes consumed
 * (>= 0) or PT_ERROR on bad framing (invalid hex, overflow, missing CRLF,
 * chunk extensions with bad bytes, bad trailer fields, too large trailers).
 * When payload bytes are found, *data is set to them (a view inside the
 * consumed bytes, at their end) and the call returns right after them, so
 * the caller loops: call, use data, advance by the return value.
 * data->len == 0 means no payload in this call.  dec->done is set once the
 * whole body, trailers included, has been consumed; bytes after it are
 * never consumed.
 */
ssize_t http_chunked_decode(struct http_chunked *dec, const char *buf,
                            size_t len, struct pt_str *data);

/* Find a header by name (case-insensitive); NULL when absent.  Inline,
 * so that a literal name's length and words are constants. */
static inline const struct http_header *
http_header_find(const struct http_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (pt_str_ieq(h[i].name, name))
            return &h[i];
    return NULL;
}

/* Does a comma-separated header value contain token (case-insensitive)? */
int http_list_has_token(struct pt_str value, const char *token);

/* Reason phrase for a status code ("Unknown" when none is known). */
const char *http_reason(int status);

#endif
