/*
 * util.c -- value parsers shared by the config loader and the daemon:
 * sizes, durations, numeric socket addresses, their inverse formatters,
 * and the string-view comparisons declared in portico.h.  Layer 0.
 * Calls: libc only (inet_pton/inet_ntop).  Never: allocation, logging.
 */
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KIB 1024ULL
#define MS_PER_S 1000ULL
#define MS_PER_M (60 * MS_PER_S)
#define MS_PER_H (60 * MS_PER_M)

/*
 * Reads the leading decimal digits of *s into *out and advances *s.
 * Returns PT_OK, or PT_ERROR when there is no digit or on overflow.
 */
static int parse_digits(const char **s, uint64_t *out)
{
    const char *p = *s;
    uint64_t v = 0;

    if (*p < '0' || *p > '9')
        return PT_ERROR;
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t d = (uint64_t)(*p - '0');

        if (v > (UINT64_MAX - d) / 10)
            return PT_ERROR;
        v = v * 10 + d;
    }
    *s = p;
    *out = v;
    return PT_OK;
}

/* Multiplies with overflow detection; returns PT_OK or PT_ERROR. */
static int mul_checked(uint64_t v, uint64_t mult, uint64_t *out)
{
    if (mult != 0 && v > UINT64_MAX / mult)
        return PT_ERROR;
    *out = v * mult;
    return PT_OK;
}

static uint64_t size_unit(const char *u)
{
    if (u[0] == '\0')
        return 1;
    if (u[1] != '\0')
        return 0;
    switch (pt_lower(u[0])) {
    case 'k':
        return KIB;
    case 'm':
        return KIB * KIB;
    case 'g':
        return KIB * KIB * KIB;
    default:
        return 0;
    }
}

int pt_parse_size(const char *s, uint64_t *out)
{
    uint64_t v, mult;

    if (parse_digits(&s, &v) != PT_OK)
        return PT_ERROR;
    mult = size_unit(s);
    if (mult == 0)
        return PT_ERROR;
    return mul_checked(v, mult, out);
}

/* Lower-case units only: "m" is minutes here but mebibytes in sizes. */
static uint64_t duration_unit(const char *u)
{
    if (strcmp(u, "") == 0 || strcmp(u, "s") == 0)
        return MS_PER_S;
    if (strcmp(u, "ms") == 0)
        return 1;
    if (strcmp(u, "m") == 0)
        return MS_PER_M;
    if (strcmp(u, "h") == 0)
        return MS_PER_H;
    return 0;
}

int pt_parse_duration(const char *s, uint64_t *out_ms)
{
    uint64_t v, mult;

    if (parse_digits(&s, &v) != PT_OK)
        return PT_ERROR;
    mult = duration_unit(s);
    if (mult == 0)
        return PT_ERROR;
    return mul_checked(v, mult, out_ms);
}

const char *pt_format_size(uint64_t bytes, char *buf, size_t buflen)
{
    static const char units[] = "gmk";
    uint64_t mult = KIB * KIB * KIB;

    for (size_t i = 0; bytes != 0 && i < 3; i++, mult /= KIB) {
        if (bytes % mult == 0) {
            snprintf(buf, buflen, "%llu%c", (unsigned long long)(bytes / mult),
                     units[i]);
            return buf;
        }
    }
    snprintf(buf, buflen, "%llu", (unsigned long long)bytes);
    return buf;
}

const char *pt_format_duration(uint64_t ms, char *buf, size_t buflen)
{
    static const struct {
        uint64_t mult;
        const char *unit;
    } units[] = {{MS_PER_H, "h"}, {MS_PER_M, "m"}, {MS_PER_S, "s"}};

    if (ms == 0) {
        snprintf(buf, buflen, "0s");
        return buf;
    }
    for (size_t i = 0; i < PT_ARRAY_LEN(units); i++) {
        if (ms % units[i].mult == 0) {
            snprintf(buf, buflen, "%llu%s",
                     (unsigned long long)(ms / units[i].mult), units[i].unit);
            return buf;
        }
    }
    snprintf(buf, buflen, "%llums", (unsigned long long)ms);
    return buf;
}

/* Parses the text after the last ':' as a port; *why on error. */
static int parse_port(const char *s, uint16_t *port, const char **why)
{
    uint64_t v;

    if (parse_digits(&s, &v) != PT_OK || *s != '\0' || v > 65535) {
        *why = "the port must be a number 0..65535";
        return PT_ERROR;
    }
    *port = (uint16_t)v;
    return PT_OK;
}

/* Explains why inet_pton refused an IPv4-looking host. */
static const char *why_not_v4(const char *host)
{
    if (strspn(host, "0123456789.") == strlen(host))
        return "not a valid IPv4 address (four numbers 0..255 joined by dots)";
    /* Resolving names here would make the config depend on DNS. */
    return "numeric address required, e.g. 127.0.0.1:8080 or [::1]:8080";
}

static int addr_fill_v4(const char *host, uint16_t port,
                        struct sockaddr_storage *ss, socklen_t *len,
                        const char **why)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
        *why = why_not_v4(host);
        return PT_ERROR;
    }
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    *len = sizeof(*sin);
    return PT_OK;
}

static int addr_fill_v6(const char *host, uint16_t port,
                        struct sockaddr_storage *ss, socklen_t *len,
                        const char **why)
{
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
        *why = "not a valid IPv6 address";
        return PT_ERROR;
    }
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    *len = sizeof(*sin6);
    return PT_OK;
}

/*
 * Splits s into host (copied into host[hostcap]) and the port text.
 * Sets *v6 when the host was bracketed.  Returns the port text or NULL.
 */
static const char *addr_split(const char *s, char *host, size_t hostcap,
                              int *v6, const char **why)
{
    const char *end, *colon;

    *v6 = s[0] == '[';
    if (*v6) {
        end = strchr(s, ']');
        if (end == NULL) {
            *why = "missing \"]\" after the IPv6 address";
            return NULL;
        }
        s++;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        end = colon;
        if (colon != NULL && memchr(s, ':', (size_t)(colon - s)) != NULL) {
            *why = "IPv6 addresses need brackets, e.g. [::1]:8080";
            return NULL;
        }
    }
    if (colon == NULL || *colon != ':') {
        *why = "missing :port, e.g. 127.0.0.1:8080 or [::1]:8080";
        return NULL;
    }
    if (end == s) {
        *why = "missing address before the port, e.g. 0.0.0.0:8080";
        return NULL;
    }
    if ((size_t)(end - s) >= hostcap) {
        *why = *v6 ? "not a valid IPv6 address"
                   : "numeric address required, e.g. 127.0.0.1:8080 or "
                     "[::1]:8080";
        return NULL;
    }
    memcpy(host, s, (size_t)(end - s));
    host[end - s] = '\0';
    return colon + 1;
}

int pt_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len,
                  const char **why)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port_text;
    uint16_t port;
    int v6;

    if (s[0] == '\0') {
        *why = "empty address";
        return PT_ERROR;
    }
    port_text = addr_split(s, host, sizeof(host), &v6, why);
    if (port_text == NULL || parse_port(port_text, &port, why) != PT_OK)
        return PT_ERROR;
    if (v6)
        return addr_fill_v6(host, port, ss, len, why);
    return addr_fill_v4(host, port, ss, len, why);
}

const char *pt_addr_format(const struct sockaddr *sa, char *buf, size_t buflen)
{
    char host[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(buf, buflen, "%s:%u", host, ntohs(sin->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(buf, buflen, "[%s]:%u", host, ntohs(sin6->sin6_port));
    } else {
        snprintf(buf, buflen, "(address family %d)", sa->sa_family);
    }
    return buf;
}

void pt_oom(void)
{
    fputs("portico: out of memory while loading the config\n", stderr);
    abort();
}

void *pt_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);

    if (p == NULL)
        pt_oom();
    return p;
}

char *pt_xmemdup(const char *s, size_t len)
{
    char *p = malloc(len + 1);

    if (p == NULL)
        pt_oom();
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *pt_xstrdup(const char *s)
{
    return pt_xmemdup(s, strlen(s));
}

/* Eight bytes a turn, the last word overlapping the one before; under
 * eight, byte by byte. */
int pt_mem_ieq(const char *a, const char *b, size_t n)
{
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8)
            if (pt_lower8(pt_word(a + i)) != pt_lower8(pt_word(b + i)))
                return 0;
        return pt_lower8(pt_word(a + n - 8)) == pt_lower8(pt_word(b + n - 8));
    }
    for (size_t i = 0; i < n; i++)
        if (pt_lower(a[i]) != pt_lower(b[i]))
            return 0;
    return 1;
}
