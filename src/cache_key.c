/*
 * cache_key.c -- the cache key of a request (query sorting and dropping,
 * Accept-Encoding normalisation, joined Vary headers) and the
 * Cache-Status field value (RFC 9211).
 * Layer 1 (pure).  Calls: cache_util.h, portico.h, libc.
 * Never: I/O, logging, allocation, mutable globals.
 */
#include "cache_key.h"

#include <limits.h>
#include <string.h>

#include "cache_util.h"

/* ---- output buffer ----------------------------------------------------- */

struct out {
    char *buf;
    size_t cap;
    size_t len;
    int overflow;
};

static void out_bytes(struct out *o, const char *p, size_t n)
{
    if (o->overflow || n > o->cap - o->len) {
        o->overflow = 1;
        return;
    }
    if (n > 0)
        memcpy(o->buf + o->len, p, n);
    o->len += n;
}

static void out_str(struct out *o, const char *s)
{
    out_bytes(o, s, strlen(s));
}

static void out_view(struct out *o, struct pt_str s)
{
    out_bytes(o, s.p, s.len);
}

/* Is s "accept-encoding", in any case?  Two overlapping words, each
 * lower-cased, against the name's. */
static int is_accept_encoding(struct pt_str s)
{
    return s.len == 15 && pt_lower8(pt_word(s.p)) == pt_word("accept-e") &&
           pt_lower8(pt_word(s.p + 7)) == pt_word("encoding");
}

/* The key's host, scheme and header names are lower-cased here: 8 bytes
 * a turn (the bytes are ~11 instructions each one by one, and this was
 * a tenth of a cache hit's). */
static void out_lower(struct out *o, struct pt_str s)
{
    char *d = o->buf + o->len;
    size_t i = 0;

    if (o->overflow || s.len > o->cap - o->len) {
        o->overflow = 1;
        return;
    }
    for (; i + 8 <= s.len; i += 8) {
        uint64_t x = pt_lower8(pt_word(s.p + i));
        memcpy(d + i, &x, 8);
    }
    for (; i < s.len; i++)
        d[i] = pt_lower(s.p[i]);
    o->len += s.len;
}

static void out_int(struct out *o, int64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0)
        tmp[--i] = '-';
    out_bytes(o, tmp + i, sizeof(tmp) - i);
}

/* The length written, or -1 on overflow or past INT_MAX. */
static int out_result(const struct out *o)
{
    return o->overflow || o->len > INT_MAX ? -1 : (int)o->len;
}

/* ---- Cache-Status (RFC 9211) ------------------------------------------- */

/* sf-token = ( ALPHA / "*" ) *( tchar / ":" / "/" ) (RFC 8941 3.3.4) */
static int sf_is_token(const char *s)
{
    if (!char_alpha(s[0]) && s[0] != '*')
        return 0;
    for (s++; *s != '\0'; s++)
        if (!char_tchar(*s) && *s != ':' && *s != '/')
            return 0;
    return 1;
}

/* A token when it is one, else an sf-string with non-printables left
   out (RFC 8941 3.3.3 allows only %x20-7E). */
static void out_sf_item(struct out *o, const char *s)
{
    if (sf_is_token(s)) {
        out_str(o, s);
        return;
    }
    out_bytes(o, "\"", 1);
    for (; *s != '\0'; s++) {
        if (*s < 0x20 || *s > 0x7e)
            continue;
        if (*s == '"' || *s == '\\')
            out_bytes(o, "\\", 1);
        out_bytes(o, s, 1);
    }
    out_bytes(o, "\"", 1);
}

static const char *const fwd_names[] = {
    [CACHE_FWD_BYPASS] = "bypass",     [CACHE_FWD_METHOD] = "method",
    [CACHE_FWD_URI_MISS] = "uri-miss", [CACHE_FWD_VARY_MISS] = "vary-miss",
    [CACHE_FWD_MISS] = "miss",         [CACHE_FWD_REQUEST] = "request",
    [CACHE_FWD_STALE] = "stale",       [CACHE_FWD_PARTIAL] = "partial",
};

int cache_status_format(const char *name, const struct cache_status *st,
                        char *buf, size_t cap)
{
    struct out o = {buf, cap, 0, 0};

    if ((unsigned)st->fwd > CACHE_FWD_PARTIAL || name == NULL ||
        name[0] == '\0')
        return -1;
    out_sf_item(&o, name);
    if (st->fwd == CACHE_FWD_NONE) {
        out_str(&o, "; hit");
    } else {
        out_str(&o, "; fwd=");
        out_str(&o, fwd_names[st->fwd]);
    }
    if (st->fwd_status > 0) {
        out_str(&o, "; fwd-status=");
        out_int(&o, st->fwd_status);
    }
    if (st->has_ttl) {
        out_str(&o, "; ttl=");
        out_int(&o, st->ttl);
    }
    if (st->stored)
        out_str(&o, "; stored");
    if (st->collapsed)
        out_str(&o, "; collapsed");
    if (st->detail != NULL && st->detail[0] != '\0') {
        out_str(&o, "; detail=");
        out_sf_item(&o, st->detail);
    }
    out_bytes(&o, "", 1); /* the NUL, which the length leaves out */
    if (out_result(&o) < 0)
        return -1;
    return (int)o.len - 1;
}

/* ---- cache keys -------------------------------------------------------- */

/* A query parameter: "name=value" or "name", raw bytes. */
struct qparam {
    struct pt_str all;
    struct pt_str name;
    size_t index; /* position in the query, for a stable sort */
};

/* Next non-empty '&'-separated parameter from *pp; 0 at the end. */
static int qparam_next(const char **pp, const char *end, struct qparam *q)
{
    const char *p = *pp;

    while (p < end && *p == '&')
        p++;
    if (p == end)
        return 0;
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *e = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(e - p));

    q->all = str_make(p, e);
    q->name = str_make(p, eq ? eq : e);
    q->index++;
    *pp = e;
    return 1;
}

/* Exact raw name, or a prefix when the pattern ends in '*'. */
static int qparam_dropped(struct pt_str name, const struct cache_key_opts *o)
{
    for (size_t i = 0; i < o->ndrop; i++) {
        struct pt_str d = o->drop[i];

        if (d.len > 0 && d.p[d.len - 1] == '*') {
            d.len--;
            if (name.len >= d.len && memcmp(name.p, d.p, d.len) == 0)
                return 1;
        } else if (str_cmp(name, d) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Does a come before b: by (raw name, position) when sorting, else by
   position alone? */
static int qparam_before(const struct qparam *a, const struct qparam *b,
                         int sort)
{
    int c = sort ? str_cmp(a->name, b->name) : 0;

    return c < 0 || (c == 0 && a->index < b->index);
}

/*
 * The kept parameter that follows prev in output order, or 0 when none
 * is left.  A selection sort over the raw query: quadratic, but it needs
 * no memory and queries are bounded by the URI limit.
 */
static int qparam_following(struct pt_str query, const struct qparam *prev,
                            const struct cache_key_opts *o,
                            struct qparam *best)
{
    const char *p = query.p;
    const char *end = query.p + query.len;
    struct qparam q = {0};
    int found = 0;

    while (qparam_next(&p, end, &q)) {
        if (qparam_dropped(q.name, o))
            continue;
        if (prev != NULL && !qparam_before(prev, &q, o->sort_query))
            continue;
        if (!found || qparam_before(&q, best, o->sort_query)) {
            *best = q;
            found = 1;
        }
    }
    return found;
}

/* Without options the query is kept byte for byte; with them, empty
   parameters go too. */
static void key_query(struct out *o, struct pt_str query,
                      const struct cache_key_opts *opts)
{
    struct qparam cur, next;
    int have;

    if (query.len > 0 && !opts->sort_query && opts->ndrop == 0) {
        out_bytes(o, "?", 1);
        out_view(o, query);
        return;
    }
    have = qparam_following(query, NULL, opts, &cur);
    for (int first = 1; have; first = 0) {
        out_bytes(o, first ? "?" : "&", 1);
        out_view(o, cur.all);
        have = qparam_following(query, &cur, opts, &next);
        cur = next;
    }
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in
   thousandths; -1 when malformed. */
static int qvalue_parse(struct pt_str s)
{
    int v;
    int scale = 100;

    if (s.len == 0 || (s.p[0] != '0' && s.p[0] != '1'))
        return -1;
    v = (s.p[0] - '0') * 1000;
    if (s.len == 1)
        return v;
    if (s.p[1] != '.' || s.len > 5)
        return -1;
    for (size_t i = 2; i < s.len; i++, scale /= 10) {
        if (!char_digit(s.p[i]) || (v == 1000 && s.p[i] != '0'))
            return -1;
        v += (s.p[i] - '0') * scale;
    }
    return v;
}

/* One Accept-Encoding member "coding [; q=x]": its coding and weight
   (-1 when malformed). */
static int ae_member(struct pt_str m, struct pt_str *coding)
{
    const char *p = m.p;
    const char *end = m.p + m.len;
    const char *semi = memchr(p, ';', m.len);
    struct pt_str param;

    *coding = str_trim(str_make(p, semi ? semi : end));
    if (semi == NULL)
        return 1000;
    param = str_trim(str_make(semi + 1, end));
    if (param.len < 2 || pt_lower(param.p[0]) != 'q' || param.p[1] != '=')
        return -1;
    return qvalue_parse(str_make(param.p + 2, param.p + param.len));
}

struct ae_weights {
    int br, gzip, star; /* -1: not mentioned */
};

static void ae_scan(struct pt_str v, struct ae_weights *w)
{
    const char *p = v.p;
    const char *end = v.p + v.len;

    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        struct pt_str coding;
        int q = ae_member(str_make(p, e), &coding);

        if (q >= 0 && pt_str_ieq(coding, "br"))
            w->br = q;
        else if (q >= 0 &&
                 (pt_str_ieq(coding, "gzip") || pt_str_ieq(coding, "x-gzip")))
            w->gzip = q;
        else if (q >= 0 && pt_str_eq(coding, "*"))
            w->star = q;
        p = comma ? comma + 1 : end;
    }
}

/*
 * Accept-Encoding reduced to the coding we would serve (RFC 9110
 * 12.5.3): the better-weighted of br and gzip, br on a tie, "*" standing
 * for whichever is not named; identity when neither is acceptable or the
 * field is absent (a client that says nothing gets no coding from us).
 */
static struct pt_str ae_normalize(const struct http_header *h, size_t n)
{
    struct ae_weights w = {-1, -1, -1};

    for (size_t i = 0; i < n; i++)
        if (is_accept_encoding(h[i].name))
            ae_scan(h[i].value, &w);
    if (w.br < 0)
        w.br = w.star;
    if (w.gzip < 0)
        w.gzip = w.star;
    if (w.br > 0 && w.br >= w.gzip)
        return PT_STR("br");
    if (w.gzip > 0)
        return PT_STR("gzip");
    return PT_STR("identity");
}

/* "\nname: v1,v2" for the lines present, "\nname" when there are none. */
static void key_header(struct out *o, struct pt_str name,
                       const struct cache_key_in *in,
                       const struct cache_key_opts *opts)
{
    int first = 1;

    if (opts->normalize_accept_encoding && is_accept_encoding(name)) {
        out_view(o, PT_STR("\naccept-encoding: "));
        out_view(o, ae_normalize(in->headers, in->nheaders));
        return;
    }
    out_bytes(o, "\n", 1);
    out_lower(o, name);
    for (size_t i = 0; i < in->nheaders; i++) {
        if (!str_ieq(in->headers[i].name, name))
            continue;
        out_bytes(o, first ? ": " : ",", first ? 2 : 1);
        out_view(o, in->headers[i].value);
        first = 0;
    }
}

/* Lower-cased host, without the scheme's default port. */
static void key_host(struct out *o, const struct cache_key_in *in)
{
    struct pt_str name, port;
    int64_t def = scheme_is_https(in->scheme) ? 443 : 80;

    host_split(in->host, &name, &port);
    out_lower(o, name);
    if (port.len > 0 && port_value(port, in->scheme) != def) {
        out_bytes(o, ":", 1);
        out_view(o, port);
    }
}

/*
 * Key = METHOD SP scheme "://" host path [ "?" query ] *( LF header ).
 * HEAD is keyed as GET so that a stored GET answers HEAD (RFC 9110
 * 9.3.2); the caller keeps HEAD-only entries from answering GET.  The
 * scheme is kept: an http -> https redirect must not answer https.
 */
int cache_key_build(const struct cache_key_in *in,
                    const struct cache_key_opts *opts, char *buf, size_t cap)
{
    static const struct cache_key_opts none = {0};
    struct out o = {buf, cap, 0, 0};

    if (opts == NULL)
        opts = &none;
    if (pt_str_ieq(in->method, "HEAD"))
        out_str(&o, "GET");
    else
        out_view(&o, in->method);
    out_bytes(&o, " ", 1);
    out_lower(&o, scheme_of(in));
    out_str(&o, "://");
    key_host(&o, in);
    out_view(&o, in->path);
    key_query(&o, in->query, opts);
    for (size_t i = 0; i < opts->nvary; i++)
        key_header(&o, opts->vary[i], in, opts);
    return out_result(&o);
}

int cache_key_vary(const struct http_header *h, size_t nh,
                   struct pt_str names, char *buf, size_t len, size_t cap)
{
    static const struct cache_key_opts none = {0};
    struct cache_key_in in = {{"", 0}, {"", 0}, {"", 0}, {"", 0}, {"", 0},
                              h, nh};
    struct out o = {buf, cap, len, len > cap};
    size_t a = 0;

    out_str(&o, "\n*");
    while (a < names.len) {
        size_t b = a;
        while (b < names.len && names.p[b] != ',')
            b++;
        if (b > a)
            key_header(&o, (struct pt_str){names.p + a, b - a}, &in, &none);
        a = b + 1;
    }
    return out_result(&o);
}
