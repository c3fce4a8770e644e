/*
 * cache_util.h -- private helpers shared by cache_policy.c and
 * cache_key.c: ASCII classes, string views, delta-seconds, host:port.
 * Layer 1 (pure).  Calls: cache_policy.h, portico.h, libc.
 * Never: I/O, logging, allocation, globals.  Include from those two
 * files only; everything here is static inline.
 */
#ifndef PORTICO_CACHE_UTIL_H
#define PORTICO_CACHE_UTIL_H

#include <stdint.h>
#include <string.h>

#include "cache_policy.h"

/* ---- characters and views ---------------------------------------------- */

static inline int char_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline int char_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline int char_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* tchar (RFC 9110 5.6.2) */
static inline int char_tchar(char c)
{
    return char_alpha(c) || char_digit(c) ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static inline struct pt_str str_make(const char *b, const char *e)
{
    return (struct pt_str){b, (size_t)(e - b)};
}

static inline struct pt_str str_trim(struct pt_str s)
{
    while (s.len > 0 && char_ows(s.p[0])) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && char_ows(s.p[s.len - 1]))
        s.len--;
    return s;
}

/* Case-insensitive comparison of two views. */
static inline int str_ieq(struct pt_str a, struct pt_str b)
{
    if (a.len != b.len)
        return 0;
    for (size_t i = 0; i < a.len; i++)
        if (pt_lower(a.p[i]) != pt_lower(b.p[i]))
            return 0;
    return 1;
}

/* Byte-wise comparison of two views: <0, 0, >0 like memcmp. */
static inline int str_cmp(struct pt_str a, struct pt_str b)
{
    size_t n = PT_MIN(a.len, b.len);
    int c = n ? memcmp(a.p, b.p, n) : 0;

    if (c != 0)
        return c;
    return (a.len > b.len) - (a.len < b.len);
}

/* ---- numbers ----------------------------------------------------------- */

/*
 * delta-seconds = 1*DIGIT (RFC 9111 1.2.2); values past 2^31 are taken
 * as 2^31, as the RFC asks.  Returns PT_OK or PT_ERROR.
 */
static inline int delta_parse(struct pt_str s, int64_t *out)
{
    int64_t v = 0;

    if (s.len == 0)
        return PT_ERROR;
    for (size_t i = 0; i < s.len; i++) {
        if (!char_digit(s.p[i]))
            return PT_ERROR;
        if (v < CACHE_DELTA_MAX)
            v = v * 10 + (s.p[i] - '0');
    }
    *out = PT_MIN(v, CACHE_DELTA_MAX);
    return PT_OK;
}

/* ---- hosts and ports --------------------------------------------------- */

/* Split "name[:port]" or "[v6][:port]"; port len 0 when absent. */
static inline void host_split(struct pt_str host, struct pt_str *name,
                              struct pt_str *port)
{
    const char *end = host.p + host.len;
    const char *colon = NULL;

    if (host.len > 0 && host.p[0] == '[') {
        const char *rb = memchr(host.p, ']', host.len);
        if (rb != NULL && rb + 1 < end && rb[1] == ':')
            colon = rb + 1;
    } else if (host.len > 0) {
        colon = memrchr(host.p, ':', host.len);
    }
    *name = colon ? str_make(host.p, colon) : host;
    *port = colon ? str_make(colon + 1, end) : str_make(end, end);
}

static inline int scheme_is_https(struct pt_str scheme)
{
    return pt_str_ieq(scheme, "https");
}

/* The key's scheme: as given, "http" when empty. */
static inline struct pt_str scheme_of(const struct cache_key_in *in)
{
    return in->scheme.len > 0 ? in->scheme : PT_STR("http");
}

/* The port number (the scheme's default when empty), or -1 when the
   bytes are not a port. */
static inline int64_t port_value(struct pt_str port, struct pt_str scheme)
{
    int64_t v;

    if (port.len == 0) /* "host:" means the default (RFC 3986 3.2.3) */
        return scheme_is_https(scheme) ? 443 : 80;
    if (delta_parse(port, &v) != PT_OK || v > 65535)
        return -1;
    return v;
}

#endif
