/*
 * check_cache_policy.c -- unit tests for src/cache_policy.c and
 * src/cache_key.c: Cache-Control parsing, HTTP-dates, storability,
 * freshness, age, reuse, stale-if-error, conditionals, validators, 304
 * updates, invalidation, Cache-Status and cache keys.
 * Calls: cache_policy.h, cache_key.h, libcheck.
 *
 * Most tests are table rows: header blocks are written as "Name: value"
 * lines joined by '\n', so a row reads like the message it stands for.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache_key.h"
#include "cache_policy.h"

#define MAX_HDRS 16

/* Sun, 06 Nov 1994 08:49:37 GMT: the RFC's own example date. */
#define D0 ((int64_t)784111777)
#define D0_S "Sun, 06 Nov 1994 08:49:37 GMT"
#define D0_PLUS_100 "Sun, 06 Nov 1994 08:51:17 GMT"
#define D0_MINUS_1000 "Sun, 06 Nov 1994 08:32:57 GMT"
#define D0_MINUS_10D "Thu, 27 Oct 1994 08:49:37 GMT"
/* 2025-06-01: "now" for the two-digit-year rule */
#define NOW_2025 ((int64_t)1748736000)

#define NONE CACHE_DELTA_NONE
#define ANY CACHE_STALE_ANY

/* ---- helpers ----------------------------------------------------------- */

/* Split "A: b\nC: d" into h[]; views point into spec.  Returns the count. */
static size_t hdrs(const char *spec, struct http_header *h)
{
    size_t n = 0;
    const char *p = spec;

    while (p != NULL && *p != '\0') {
        const char *nl = strchr(p, '\n');
        const char *e = nl ? nl : p + strlen(p);
        const char *colon = memchr(p, ':', (size_t)(e - p));
        const char *v;

        ck_assert_msg(colon != NULL && n < MAX_HDRS, "bad spec: %s", spec);
        for (v = colon + 1; v < e && *v == ' '; v++)
            ;
        h[n].name = (struct pt_str){p, (size_t)(colon - p)};
        h[n].value = (struct pt_str){v, (size_t)(e - v)};
        n++;
        p = nl ? nl + 1 : NULL;
    }
    return n;
}

static struct pt_str view(const char *s)
{
    return (struct pt_str){s, s ? strlen(s) : 0};
}

static struct cache_control cc_of(const char *value)
{
    struct cache_control cc;

    cache_control_init(&cc);
    cache_control_parse(view(value), &cc);
    return cc;
}

static void read_resp(int status, const char *spec, struct http_header *h,
                      struct cache_response *r)
{
    size_t n = hdrs(spec, h);
    cache_response_read(status, h, n, D0, r);
}

static int str_is(struct pt_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

/* ---- Cache-Control ----------------------------------------------------- */

enum {
    F_NC = 1 << 0,
    F_NS = 1 << 1,
    F_PRIV = 1 << 2,
    F_PUB = 1 << 3,
    F_MR = 1 << 4,
    F_PR = 1 << 5,
    F_MU = 1 << 6,
    F_IMM = 1 << 7,
    F_OIC = 1 << 8,
    F_INV = 1 << 9,
};

struct cc_case {
    const char *value;
    int64_t max_age, s_maxage, max_stale, min_fresh, swr, sie;
    int flags;
};

static const struct cc_case cc_cases[] = {
    {"", NONE, NONE, NONE, NONE, NONE, NONE, 0},
    {"max-age=60", 60, NONE, NONE, NONE, NONE, NONE, 0},
    {"MAX-AGE=30, S-MaxAge=7", 30, 7, NONE, NONE, NONE, NONE, 0},
    {"max-age=00060", 60, NONE, NONE, NONE, NONE, NONE, 0},
    {"max-age=\"10\"", 10, NONE, NONE, NONE, NONE, NONE, 0},
    {"max-age=99999999999999999999", CACHE_DELTA_MAX, NONE, NONE, NONE, NONE,
     NONE, 0},
    /* quoted-string arguments may hold commas and directive names */
    {"no-cache=\"a, b\", max-age=5", 5, NONE, NONE, NONE, NONE, NONE, F_NC},
    {"no-cache=\"a, no-store\"", NONE, NONE, NONE, NONE, NONE, NONE, F_NC},
    {"foo=\"bar, max-age=5\", s-maxage=7", NONE, 7, NONE, NONE, NONE, NONE, 0},
    {"foo=\"a\\\"b, max-age=5\", public", NONE, NONE, NONE, NONE, NONE, NONE,
     F_PUB},
    {"private=\"Set-Cookie\"", NONE, NONE, NONE, NONE, NONE, NONE, F_PRIV},
    {"max-stale", NONE, NONE, ANY, NONE, NONE, NONE, 0},
    {"max-stale=30", NONE, NONE, 30, NONE, NONE, NONE, 0},
    {"max-stale=abc", NONE, NONE, NONE, NONE, NONE, NONE, 0},
    {"min-fresh=10, only-if-cached", NONE, NONE, NONE, 10, NONE, NONE, F_OIC},
    {"stale-while-revalidate=30, stale-if-error=60", NONE, NONE, NONE, NONE,
     30, 60, 0},
    {"stale-if-error=5, stale-if-error=10", NONE, NONE, NONE, NONE, NONE, 5,
     0},
    {"stale-while-revalidate", NONE, NONE, NONE, NONE, NONE, NONE, 0},
    /* repeated or invalid freshness: stale (RFC 9111 4.2.1) */
    {"max-age=60, max-age=60", 60, NONE, NONE, NONE, NONE, NONE, F_INV},
    {"max-age=60, max-age=120", 60, NONE, NONE, NONE, NONE, NONE, F_INV},
    {"s-maxage=1, s-maxage=2", NONE, 1, NONE, NONE, NONE, NONE, F_INV},
    {"max-age", NONE, NONE, NONE, NONE, NONE, NONE, F_INV},
    {"max-age=abc", NONE, NONE, NONE, NONE, NONE, NONE, F_INV},
    {"max-age=-1", NONE, NONE, NONE, NONE, NONE, NONE, F_INV},
    {"max-age=\"1\\0\"", NONE, NONE, NONE, NONE, NONE, NONE, F_INV},
    {"max-age=\"5", NONE, NONE, NONE, NONE, NONE, NONE, F_INV},
    {"max-age = 60", NONE, NONE, NONE, NONE, NONE, NONE, F_INV},
    {"max-age=5;x", NONE, NONE, NONE, NONE, NONE, NONE, F_INV},
    /* malformed elements keep their restrictive names */
    {"no-store junk", NONE, NONE, NONE, NONE, NONE, NONE, F_NS},
    {",,, public ,, ", NONE, NONE, NONE, NONE, NONE, NONE, F_PUB},
    {"=5, max-age=3", 3, NONE, NONE, NONE, NONE, NONE, 0},
    {"max-age=60 , s-maxage=30", 60, 30, NONE, NONE, NONE, NONE, 0},
    {"Public, MUST-REVALIDATE, Proxy-Revalidate, immutable, "
     "must-understand, only-if-cached",
     NONE, NONE, NONE, NONE, NONE, NONE,
     F_PUB | F_MR | F_PR | F_IMM | F_MU | F_OIC},
    {"no-transform, community=\"UCI\"", NONE, NONE, NONE, NONE, NONE, NONE, 0},
};

static int cc_flags(const struct cache_control *cc)
{
    return (cc->no_cache ? F_NC : 0) | (cc->no_store ? F_NS : 0) |
           (cc->private ? F_PRIV : 0) | (cc->public ? F_PUB : 0) |
           (cc->must_revalidate ? F_MR : 0) |
           (cc->proxy_revalidate ? F_PR : 0) |
           (cc->must_understand ? F_MU : 0) | (cc->immutable ? F_IMM : 0) |
           (cc->only_if_cached ? F_OIC : 0) |
           (cc->freshness_invalid ? F_INV : 0);
}

START_TEST(test_cc_parse)
{
    const struct cc_case *c = &cc_cases[_i];
    struct cache_control cc = cc_of(c->value);

    ck_assert_msg(cc.max_age == c->max_age, "%s: max-age %lld", c->value,
                  (long long)cc.max_age);
    ck_assert_msg(cc.s_maxage == c->s_maxage, "%s: s-maxage", c->value);
    ck_assert_msg(cc.max_stale == c->max_stale, "%s: max-stale", c->value);
    ck_assert_msg(cc.min_fresh == c->min_fresh, "%s: min-fresh", c->value);
    ck_assert_msg(cc.stale_while_revalidate == c->swr, "%s: swr", c->value);
    ck_assert_msg(cc.stale_if_error == c->sie, "%s: sie", c->value);
    ck_assert_msg(cc_flags(&cc) == c->flags, "%s: flags %x, want %x", c->value,
                  cc_flags(&cc), c->flags);
}
END_TEST

START_TEST(test_cc_request)
{
    struct http_header h[MAX_HDRS];
    struct cache_request q;
    size_t n;

    n = hdrs("Pragma: no-cache", h);
    cache_request_read(HTTP_M_GET, h, n, &q);
    ck_assert(q.cc.no_cache && !q.has_authorization);

    /* Pragma is ignored next to Cache-Control (RFC 9111 5.4) */
    n = hdrs("Pragma: no-cache\nCache-Control: max-age=5", h);
    cache_request_read(HTTP_M_GET, h, n, &q);
    ck_assert(!q.cc.no_cache && q.cc.max_age == 5);

    n = hdrs("Cache-Control: max-stale\nCache-Control: no-store\n"
             "authorization: Bearer x",
             h);
    cache_request_read(HTTP_M_HEAD, h, n, &q);
    ck_assert(q.cc.max_stale == ANY && q.cc.no_store && q.has_authorization);
    ck_assert_int_eq(q.method, HTTP_M_HEAD);
}
END_TEST

/* ---- HTTP-date --------------------------------------------------------- */

struct date_case {
    const char *s;
    int64_t now;
    int ok;
    int64_t t;
};

static const struct date_case date_cases[] = {
    {D0_S, NOW_2025, 1, D0},
    {"Sunday, 06-Nov-94 08:49:37 GMT", NOW_2025, 1, D0},
    {"Sun Nov  6 08:49:37 1994", NOW_2025, 1, D0},
    {"Sun Nov 06 08:49:37 1994", NOW_2025, 1, D0},
    {"Thu, 01 Jan 1970 00:00:00 GMT", NOW_2025, 1, 0},
    {"Wed, 31 Dec 1969 23:59:59 GMT", NOW_2025, 1, -1},
    {"Fri, 31 Dec 9999 23:59:59 GMT", NOW_2025, 1, 253402300799},
    {"Tue, 29 Feb 2000 00:00:00 GMT", NOW_2025, 1, 951782400},
    {"Sat, 29 Feb 2020 12:00:00 GMT", NOW_2025, 1, 1582977600},
    {"Sat, 31 Dec 2016 23:59:60 GMT", NOW_2025, 1, 1483228800},
    {"Mon, 06 Nov 1994 08:49:37 GMT", NOW_2025, 1, D0}, /* wrong day name */
    {"Friday, 01-Jan-99 00:00:00 GMT", NOW_2025, 1, 915148800},
    /* two digits: more than 50 years ahead means the past century */
    {"Thursday, 01-Jan-70 00:00:00 GMT", D0, 1, 0},
    {"Thursday, 01-Jan-70 00:00:00 GMT", NOW_2025, 1, 3155760000},
    {"Saturday, 01-Jan-00 00:00:00 GMT", D0, 1, 946684800},
    {"Wednesday, 01-Jan-25 00:00:00 GMT", NOW_2025, 1, 1735689600},
    /* invalid */
    {"Sunday, 06-Nov-25 08:49:37 GMT", INT64_MAX, 0, 0}, /* year 10025 */
    {"", NOW_2025, 0, 0},
    {"0", NOW_2025, 0, 0},
    {"-1", NOW_2025, 0, 0},
    {"Sun, 06 Nov 1994 08:49:37 UTC", NOW_2025, 0, 0},
    {"Sun, 06 Nov 1994 08:49:37 gmt", NOW_2025, 0, 0},
    {"Sun, 6 Nov 1994 08:49:37 GMT", NOW_2025, 0, 0},
    {"Sun, 06 Nov 94 08:49:37 GMT", NOW_2025, 0, 0},
    {"sun, 06 Nov 1994 08:49:37 GMT", NOW_2025, 0, 0},
    {"Sun, 06 nov 1994 08:49:37 GMT", NOW_2025, 0, 0},
    {"Sun, 32 Nov 1994 08:49:37 GMT", NOW_2025, 0, 0},
    {"Sun, 31 Apr 1994 08:49:37 GMT", NOW_2025, 0, 0},
    {"Thu, 29 Feb 1900 08:49:37 GMT", NOW_2025, 0, 0},
    {"Sun, 00 Nov 1994 08:49:37 GMT", NOW_2025, 0, 0},
    {"Sun, 06 Nov 1994 24:00:00 GMT", NOW_2025, 0, 0},
    {"Sun, 06 Nov 1994 08:60:00 GMT", NOW_2025, 0, 0},
    {"Sun, 06 Nov 1994 08:49:61 GMT", NOW_2025, 0, 0},
    {"Sun, 06 Nov 1994 08:49:37 GMT x", NOW_2025, 0, 0},
    {"Sun, 06 Nov 1994 08:49:37 GMT ", NOW_2025, 0, 0},
    {" Sun, 06 Nov 1994 08:49:37 GMT", NOW_2025, 0, 0},
    {"Sun, 06 Nov 1994 08:49:37", NOW_2025, 0, 0},
    {"Sun, 06 Nov 1994 8:49:37 GMT", NOW_2025, 0, 0},
    {"Sunday, 06 Nov 1994 08:49:37 GMT", NOW_2025, 0, 0},
    {"Sun, 06-Nov-94 08:49:37 GMT", NOW_2025, 0, 0},
    {"Sunday, 06-Nov-1994 08:49:37 GMT", NOW_2025, 0, 0},
    {"Sunday, 06-Nov-94 08:49:37", NOW_2025, 0, 0},
    {"Sun Nov 6 08:49:37 1994", NOW_2025, 0, 0},
    {"Sun Nov  6 08:49:37 94", NOW_2025, 0, 0},
    {"Sun Nov  6 08:49:37 1994 GMT", NOW_2025, 0, 0},
    {"Sun,  06 Nov 1994 08:49:37 GMT", NOW_2025, 0, 0},
    {"Sux, 06 Nov 1994 08:49:37 GMT", NOW_2025, 0, 0},
};

START_TEST(test_date_parse)
{
    const struct date_case *c = &date_cases[_i];
    int64_t t = 42;
    int rc = cache_date_parse(view(c->s), c->now, &t);

    if (!c->ok) {
        ck_assert_msg(rc == PT_ERROR, "\"%s\" parsed", c->s);
        ck_assert_msg(t == 42, "\"%s\": *out written on error", c->s);
        return;
    }
    ck_assert_msg(rc == PT_OK, "\"%s\" rejected", c->s);
    ck_assert_msg(t == c->t, "\"%s\": %lld, want %lld", c->s, (long long)t,
                  (long long)c->t);
}
END_TEST

/* Every second of a few days round-trips through IMF-fixdate. */
START_TEST(test_date_roundtrip)
{
    static const char *const days[] = {"Thu", "Fri", "Sat", "Sun",
                                       "Mon", "Tue", "Wed"};
    static const char *const mons[] = {"Jan", "Feb", "Mar", "Apr",
                                       "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"};
    char buf[64];

    for (int64_t t = 0; t < (int64_t)4e9; t += 7777777) {
        struct tm tm;
        time_t tt = (time_t)t;
        int64_t back;

        gmtime_r(&tt, &tm);
        snprintf(buf, sizeof(buf), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 days[(t / 86400) % 7], tm.tm_mday, mons[tm.tm_mon],
                 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        ck_assert_msg(cache_date_parse(view(buf), t, &back) == PT_OK, "%s",
                      buf);
        ck_assert_msg(back == t, "%s: %lld", buf, (long long)back);
    }
}
END_TEST

/* ---- storability ------------------------------------------------------- */

struct store_case {
    enum http_method method;
    const char *req;
    int status;
    const char *resp;
    enum cache_storability want;
    const char *why; /* expected reason when CACHE_STORE_NO */
};

#define YES CACHE_STORE_YES
#define NO CACHE_STORE_NO

static const struct store_case store_cases[] = {
    {HTTP_M_GET, "", 200, "", YES, NULL},
    {HTTP_M_HEAD, "", 200, "", CACHE_STORE_HEAD_ONLY, NULL},
    {HTTP_M_POST, "", 200, "Cache-Control: max-age=60", NO,
     "method not cacheable"},
    {HTTP_M_DELETE, "", 200, "", NO, "method not cacheable"},
    {HTTP_M_OTHER, "", 200, "", NO, "method not cacheable"},
    {HTTP_M_GET, "Cache-Control: no-store", 200, "", NO, "request no-store"},
    {HTTP_M_GET, "", 200, "Cache-Control: no-store", NO, "response no-store"},
    {HTTP_M_GET, "", 200, "cache-control: NO-STORE", NO, "response no-store"},
    {HTTP_M_GET, "", 200, "Cache-Control: max-age=60\nCache-Control: no-store",
     NO, "response no-store"},
    {HTTP_M_GET, "", 200, "Cache-Control: no-cache=\"a, no-store\"", YES,
     NULL},
    {HTTP_M_GET, "", 200, "Cache-Control: private", NO, "private"},
    {HTTP_M_GET, "", 200, "Cache-Control: private=\"Set-Cookie\", max-age=60",
     NO, "private"},
    {HTTP_M_GET, "", 206, "Cache-Control: max-age=60", NO, "partial content"},
    {HTTP_M_GET, "", 200, "Content-Range: bytes 0-1/10", NO,
     "partial content"},
    {HTTP_M_GET, "", 304, "Cache-Control: max-age=60", NO, "not modified"},
    {HTTP_M_GET, "", 101, "", NO, "status not final"},
    {HTTP_M_GET, "", 302, "", NO, "no freshness information"},
    {HTTP_M_GET, "", 500, "", NO, "no freshness information"},
    {HTTP_M_GET, "", 302, "Cache-Control: max-age=60", YES, NULL},
    {HTTP_M_GET, "", 302, "Cache-Control: public", YES, NULL},
    {HTTP_M_GET, "", 500, "Expires: " D0_PLUS_100, YES, NULL},
    {HTTP_M_GET, "", 503, "Expires: 0", YES, NULL}, /* stored, expired */
    {HTTP_M_GET, "", 307, "Cache-Control: max-age=abc", YES, NULL},
    {HTTP_M_GET, "", 404, "", YES, NULL},
    {HTTP_M_GET, "", 410, "", YES, NULL},
    {HTTP_M_GET, "", 200, "Vary: Accept-Encoding, *", NO, "Vary: *"},
    {HTTP_M_GET, "", 200, "Vary: Accept-Encoding", YES, NULL},
    {HTTP_M_GET, "Authorization: Basic eA==", 200, "Cache-Control: max-age=60",
     NO, "Authorization"},
    {HTTP_M_GET, "Authorization: Basic eA==", 200,
     "Cache-Control: public, max-age=60", YES, NULL},
    {HTTP_M_GET, "Authorization: Basic eA==", 200,
     "Cache-Control: s-maxage=60", YES, NULL},
    {HTTP_M_GET, "Authorization: Basic eA==", 200,
     "Cache-Control: must-revalidate, max-age=60", YES, NULL},
    {HTTP_M_GET, "", 200, "Set-Cookie: a=b\nCache-Control: max-age=60", NO,
     "Set-Cookie"},
    {HTTP_M_GET, "", 200, "Set-Cookie: a=b\nCache-Control: public", YES, NULL},
    {HTTP_M_GET, "", 200, "Set-Cookie: a=b\nCache-Control: s-maxage=5", YES,
     NULL},
    {HTTP_M_GET, "", 299, "Cache-Control: must-understand, max-age=60", NO,
     "must-understand with unknown status"},
    {HTTP_M_GET, "", 200, "Cache-Control: must-understand, no-store", NO,
     "response no-store"},
    {HTTP_M_GET, "", 200, "Cache-Control: no-cache", YES, NULL},
    {HTTP_M_GET, "Pragma: no-cache", 200, "", YES, NULL},
};

START_TEST(test_storable)
{
    const struct store_case *c = &store_cases[_i];
    struct http_header qh[MAX_HDRS], rh[MAX_HDRS];
    struct cache_request q;
    struct cache_response r;
    const char *why = "unset";

    cache_request_read(c->method, qh, hdrs(c->req, qh), &q);
    read_resp(c->status, c->resp, rh, &r);
    ck_assert_msg(cache_storable(&q, &r, &why) == c->want, "row %d (%s): %s",
                  _i, c->resp, why ? why : "stored");
    if (c->want == NO)
        ck_assert_str_eq(why, c->why);
    else
        ck_assert_ptr_null(why);
    ck_assert_int_eq(cache_storable(&q, &r, NULL), c->want);
}
END_TEST

/* ---- freshness lifetime ------------------------------------------------ */

struct life_case {
    int status;
    const char *resp;
    int64_t heuristic_max, forced_ttl;
    int64_t want;
};

static const struct life_case life_cases[] = {
    {200, "Cache-Control: max-age=60", 0, -1, 60},
    {200, "Cache-Control: max-age=60, s-maxage=120", 0, -1, 120},
    {200, "Cache-Control: s-maxage=0, max-age=60", 0, -1, 0},
    {200, "Date: " D0_S "\nExpires: " D0_PLUS_100, 0, -1, 100},
    {200, "Expires: " D0_PLUS_100, 0, -1, 100}, /* Date absent: receipt */
    {200, "Date: " D0_S "\nExpires: " D0_MINUS_1000, 0, -1, 0},
    {200, "Date: " D0_MINUS_1000 "\nExpires: " D0_S, 0, -1, 1000},
    {200, "Expires: 0", 3600, 300, 0}, /* invalid: already expired */
    {200, "Date: nonsense\nExpires: " D0_PLUS_100, 0, -1, 100},
    {200, "Date: " D0_S "\nExpires: " D0_PLUS_100 "\nCache-Control: max-age=5",
     0, -1, 5},
    {200, "Cache-Control: max-age=60\nExpires: garbage", 0, -1, 60},
    {200, "Date: " D0_S "\nExpires: " D0_PLUS_100 "\nExpires: " D0_PLUS_100, 0,
     -1, 0},
    {200, "Cache-Control: max-age=60, max-age=60", 3600, 300, 0},
    {200, "Expires: 0\nExpires: 1\nCache-Control: max-age=9", 0, -1, 9},
    {200, "Cache-Control: max-age=60\nCache-Control: max-age=120", 0, -1, 0},
    {200, "Cache-Control: max-age=abc", 3600, 300, 0},
    {200, "Cache-Control: max-age=\"90\"", 0, -1, 90},
    {200, "Cache-Control: max-age=99999999999", 0, -1, CACHE_DELTA_MAX},
    {200, "Cache-Control: no-cache, max-age=60", 0, -1, 60},
    {200, "Cache-Control: max-age=0, must-revalidate", 3600, 300, 0},
    /* heuristic: 10% of Date - Last-Modified, capped */
    {200, "Date: " D0_S "\nLast-Modified: " D0_MINUS_10D, 1000000, -1, 86400},
    {200, "Date: " D0_S "\nLast-Modified: " D0_MINUS_10D, 3600, -1, 3600},
    {200, "Last-Modified: " D0_MINUS_10D, 1000000, -1, 86400},
    {200, "Date: " D0_S "\nLast-Modified: " D0_MINUS_10D, 0, -1, 0},
    {200, "Date: " D0_S "\nLast-Modified: " D0_MINUS_10D, 0, 300, 300},
    {200, "Date: " D0_S "\nLast-Modified: " D0_PLUS_100, 3600, 300, 300},
    {302, "Date: " D0_S "\nLast-Modified: " D0_MINUS_10D, 3600, 300, 0},
    {302, "Cache-Control: public\nLast-Modified: " D0_MINUS_10D, 3600, -1,
     3600},
    {404, "", 3600, 300, 300},
    {200, "", 3600, -1, 0},
    {200, "", 0, 0, 0},
};

START_TEST(test_lifetime)
{
    const struct life_case *c = &life_cases[_i];
    struct http_header h[MAX_HDRS];
    struct cache_response r;
    struct cache_lifetime_opts o = {c->heuristic_max, c->forced_ttl};
    int64_t got;

    read_resp(c->status, c->resp, h, &r);
    got = cache_freshness_lifetime(&r, D0, &o);
    ck_assert_msg(got == c->want, "row %d (%s): %lld, want %lld", _i, c->resp,
                  (long long)got, (long long)c->want);
}
END_TEST

START_TEST(test_lifetime_no_opts)
{
    struct http_header h[MAX_HDRS];
    struct cache_response r;

    read_resp(200, "Last-Modified: " D0_MINUS_10D, h, &r);
    ck_assert_int_eq(cache_freshness_lifetime(&r, D0, NULL), 0);
    read_resp(200, "Cache-Control: max-age=7", h, &r);
    ck_assert_int_eq(cache_freshness_lifetime(&r, D0, NULL), 7);
}
END_TEST

/* ---- age --------------------------------------------------------------- */

struct age_case {
    const char *resp;
    int64_t request_time, response_time, now;
    int64_t initial, current;
};

static const struct age_case age_cases[] = {
    {"Date: " D0_S, D0, D0, D0 + 10, 0, 10},
    {"Date: " D0_S "\nAge: 30", D0, D0 + 2, D0 + 12, 32, 42},
    {"", D0, D0 + 5, D0 + 5, 5, 5},
    {"Date: " D0_MINUS_1000, D0, D0, D0, 1000, 1000},
    {"Date: " D0_MINUS_1000 "\nAge: 2000", D0 - 1, D0, D0 + 1, 2001, 2002},
    {"Date: " D0_PLUS_100, D0, D0, D0 + 1, 0, 1}, /* origin clock ahead */
    {"Date: " D0_S "\nAge: abc", D0, D0, D0, 0, 0},
    {"Age: 99999999999", D0, D0, D0 + 1, CACHE_DELTA_MAX, CACHE_DELTA_MAX + 1},
    {"Age: 5\nAge: 50", D0, D0, D0, 5, 5},
    {"Date: " D0_S, D0, D0, D0 - 100, 0, 0}, /* our clock went back */
    {"Date: " D0_S, D0 + 5, D0, D0, 0, 0},   /* sent after received? */
};

START_TEST(test_age)
{
    const struct age_case *c = &age_cases[_i];
    struct http_header h[MAX_HDRS];
    struct cache_response r;
    int64_t init, cur;

    read_resp(200, c->resp, h, &r);
    init = cache_age_initial(&r, c->request_time, c->response_time);
    cur = cache_age_current(init, c->response_time, c->now);
    ck_assert_msg(init == c->initial, "row %d: initial %lld", _i,
                  (long long)init);
    ck_assert_msg(cur == c->current, "row %d: current %lld", _i,
                  (long long)cur);
}
END_TEST

START_TEST(test_age_saturates)
{
    ck_assert(cache_age_current(INT64_MAX - 1, 0, 100) == INT64_MAX);
    ck_assert(cache_age_current(-5, 0, 3) == 3);
    ck_assert(cache_age_current(0, INT64_MIN, INT64_MAX) == INT64_MAX);
}
END_TEST

/* ---- reuse ------------------------------------------------------------- */

struct reuse_case {
    const char *req, *stored;
    int64_t lifetime, age;
    enum cache_reuse want;
};

static const struct reuse_case reuse_cases[] = {
    {"", "max-age=60", 60, 10, CACHE_FRESH},
    {"", "max-age=60", 60, 59, CACHE_FRESH},
    {"", "max-age=60", 60, 60, CACHE_STALE_REVALIDATE},
    {"", "max-age=0, must-revalidate", 0, 0, CACHE_STALE_REVALIDATE},
    {"max-stale", "", 60, 100000, CACHE_STALE_OK},
    {"max-stale=10", "", 60, 70, CACHE_STALE_OK},
    {"max-stale=10", "", 60, 71, CACHE_STALE_REVALIDATE},
    {"max-stale", "must-revalidate", 60, 100, CACHE_STALE_REVALIDATE},
    {"max-stale", "proxy-revalidate", 60, 100, CACHE_STALE_REVALIDATE},
    {"max-stale", "s-maxage=60", 60, 100, CACHE_STALE_REVALIDATE},
    {"", "stale-while-revalidate=30", 60, 80, CACHE_STALE_WHILE_REVALIDATE},
    {"", "stale-while-revalidate=30", 60, 90, CACHE_STALE_WHILE_REVALIDATE},
    {"", "stale-while-revalidate=30", 60, 91, CACHE_STALE_REVALIDATE},
    {"", "stale-while-revalidate=30, must-revalidate", 60, 80,
     CACHE_STALE_REVALIDATE},
    {"", "stale-while-revalidate=30, s-maxage=60", 60, 80,
     CACHE_STALE_REVALIDATE},
    {"max-stale", "stale-while-revalidate=30", 60, 80,
     CACHE_STALE_WHILE_REVALIDATE},
    {"max-stale", "stale-while-revalidate=30", 60, 200, CACHE_STALE_OK},
    {"no-cache", "", 60, 0, CACHE_MUST_REVALIDATE},
    {"", "no-cache", 60, 0, CACHE_MUST_REVALIDATE},
    {"", "no-cache=\"x\", stale-while-revalidate=60", 60, 70,
     CACHE_MUST_REVALIDATE},
    {"only-if-cached", "", 60, 10, CACHE_FRESH},
    {"only-if-cached", "", 60, 100, CACHE_ONLY_IF_CACHED_MISS},
    {"only-if-cached, max-stale", "", 60, 100, CACHE_STALE_OK},
    {"only-if-cached", "no-cache", 60, 0, CACHE_ONLY_IF_CACHED_MISS},
    {"only-if-cached", "must-revalidate", 0, 5, CACHE_ONLY_IF_CACHED_MISS},
    {"only-if-cached", "stale-while-revalidate=9", 0, 5,
     CACHE_STALE_WHILE_REVALIDATE},
    {"max-age=5", "", 60, 10, CACHE_STALE_REVALIDATE},
    {"max-age=0", "", 60, 0, CACHE_FRESH},
    {"max-age=30", "", 60, 10, CACHE_FRESH},
    {"max-age=100", "stale-while-revalidate=60", 60, 70,
     CACHE_STALE_REVALIDATE},
    {"max-age=100, max-stale", "", 60, 70, CACHE_STALE_OK},
    {"min-fresh=20", "", 60, 50, CACHE_STALE_REVALIDATE},
    {"min-fresh=10", "", 60, 50, CACHE_FRESH},
    {"min-fresh=0, max-stale", "", 60, 70, CACHE_STALE_REVALIDATE},
    {"", "immutable, max-age=60", 60, 10, CACHE_FRESH},
};

START_TEST(test_reuse)
{
    const struct reuse_case *c = &reuse_cases[_i];
    struct cache_control req = cc_of(c->req);
    struct cache_control st = cc_of(c->stored);
    enum cache_reuse got = cache_reuse(&req, &st, c->lifetime, c->age);

    ck_assert_msg(got == c->want, "row %d (%s | %s): %d, want %d", _i, c->req,
                  c->stored, got, c->want);
}
END_TEST

struct sie_case {
    const char *req, *stored;
    int64_t lifetime, age;
    int want;
};

static const struct sie_case sie_cases[] = {
    {"", "stale-if-error=60", 60, 100, 1},
    {"", "stale-if-error=60", 60, 120, 1},
    {"", "stale-if-error=60", 60, 121, 0},
    {"stale-if-error=300", "", 60, 200, 1},
    {"stale-if-error=10", "stale-if-error=300", 60, 200, 1},
    {"", "stale-if-error=600, must-revalidate", 60, 100, 0},
    {"", "stale-if-error=600, proxy-revalidate", 60, 100, 0},
    {"", "stale-if-error=600, s-maxage=60", 60, 100, 0},
    {"", "stale-if-error=600, no-cache", 60, 100, 0},
    {"no-cache", "stale-if-error=60", 60, 100, 0},
    {"", "", 60, 10, 1},
    {"", "", 60, 100, 0},
};

START_TEST(test_stale_if_error)
{
    const struct sie_case *c = &sie_cases[_i];
    struct cache_control req = cc_of(c->req);
    struct cache_control st = cc_of(c->stored);

    ck_assert_msg(cache_stale_if_error(&req, &st, c->lifetime, c->age) ==
                      c->want,
                  "row %d (%s | %s)", _i, c->req, c->stored);
}
END_TEST

/* ---- conditional requests ---------------------------------------------- */

struct cond_case {
    enum http_method method;
    const char *req;
    const char *etag;      /* stored; NULL: none */
    int64_t last_modified; /* stored */
    int want;
};

#define LM_NONE CACHE_TIME_NONE

static const struct cond_case cond_cases[] = {
    {HTTP_M_GET, "If-None-Match: \"abc\"", "\"abc\"", LM_NONE, 304},
    {HTTP_M_GET, "If-None-Match: W/\"abc\"", "\"abc\"", LM_NONE, 304},
    {HTTP_M_GET, "If-None-Match: \"abc\"", "W/\"abc\"", LM_NONE, 304},
    {HTTP_M_GET, "If-None-Match: \"x\", \"abc\"", "\"abc\"", LM_NONE, 304},
    {HTTP_M_GET, "If-None-Match: \"x\"", "\"abc\"", LM_NONE, 200},
    {HTTP_M_GET, "If-None-Match: \"ABC\"", "\"abc\"", LM_NONE, 200},
    {HTTP_M_GET, "If-None-Match: *", "\"abc\"", LM_NONE, 304},
    {HTTP_M_GET, "If-None-Match: *", NULL, D0, 304},
    {HTTP_M_GET, "If-None-Match: \"abc\"", NULL, D0, 200},
    {HTTP_M_GET, "If-None-Match: \"abc\"", "abc", D0, 200}, /* bad stored */
    {HTTP_M_GET, "If-None-Match: \"a,b\"", "\"a,b\"", LM_NONE, 304},
    {HTTP_M_GET, "If-None-Match: \"x\", *", "\"abc\"", LM_NONE, 200},
    {HTTP_M_GET, "If-None-Match: W/\"abc", "\"abc\"", LM_NONE, 200},
    {HTTP_M_GET, "If-None-Match: junk, \"abc\"", "\"abc\"", LM_NONE, 304},
    {HTTP_M_GET, "If-None-Match: \"x\"\nIf-None-Match: \"abc\"", "\"abc\"",
     LM_NONE, 304},
    /* If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2) */
    {HTTP_M_GET, "If-None-Match: \"x\"\nIf-Modified-Since: " D0_S, "\"abc\"",
     D0 - 1000, 200},
    {HTTP_M_GET, "If-Modified-Since: " D0_S, "\"abc\"", D0 - 1000, 304},
    {HTTP_M_GET, "If-Modified-Since: " D0_S, NULL, D0, 304},
    {HTTP_M_GET, "If-Modified-Since: " D0_MINUS_1000, NULL, D0, 200},
    {HTTP_M_HEAD, "If-Modified-Since: " D0_S, NULL, D0, 304},
    {HTTP_M_GET, "If-Modified-Since: Sunday, 06-Nov-94 08:49:37 GMT", NULL, D0,
     304},
    {HTTP_M_GET, "If-Modified-Since: yesterday", NULL, D0, 200},
    {HTTP_M_GET, "If-Modified-Since: " D0_S, NULL, LM_NONE, 200},
    {HTTP_M_GET, "If-Modified-Since: " D0_S "\nIf-Modified-Since: " D0_S, NULL,
     D0, 200},
    {HTTP_M_GET, "If-Modified-Since: Fri, 31 Dec 9999 23:59:59 GMT", NULL, D0,
     200}, /* in the future: invalid */
    {HTTP_M_POST, "If-None-Match: \"abc\"", "\"abc\"", LM_NONE, 200},
    {HTTP_M_POST, "If-Modified-Since: " D0_S, NULL, D0, 200},
    {HTTP_M_GET, "", "\"abc\"", D0, 200},
};

START_TEST(test_conditional)
{
    const struct cond_case *c = &cond_cases[_i];
    struct http_header h[MAX_HDRS];
    size_t n = hdrs(c->req, h);
    int got = cache_conditional(c->method, h, n, view(c->etag),
                                c->last_modified, D0 + 10);

    ck_assert_msg(got == c->want, "row %d (%s): %d", _i, c->req, got);
}
END_TEST

START_TEST(test_validators)
{
    struct http_header h[MAX_HDRS];
    struct cache_validators v;
    size_t n;

    n = hdrs("ETag: W/\"v1\"\nLast-Modified: " D0_S, h);
    ck_assert_int_eq(cache_validators(h, n, D0, &v), 2);
    ck_assert(str_is(v.if_none_match, "W/\"v1\""));
    ck_assert(str_is(v.if_modified_since, D0_S));

    n = hdrs("ETag: v1\nLast-Modified: last tuesday", h);
    ck_assert_int_eq(cache_validators(h, n, D0, &v), 0);
    ck_assert_uint_eq(v.if_none_match.len, 0);
    ck_assert_uint_eq(v.if_modified_since.len, 0);

    n = hdrs("Content-Type: text/plain\nETag: \"\"", h);
    ck_assert_int_eq(cache_validators(h, n, D0, &v), 1);
    ck_assert(str_is(v.if_none_match, "\"\""));
}
END_TEST

/* ---- 304 updates ------------------------------------------------------- */

struct upd_case {
    const char *stored, *h304;
    int want;
};

static const struct upd_case upd_cases[] = {
    {"ETag: \"a\"", "ETag: \"a\"", 1},
    {"ETag: \"a\"", "ETag: \"b\"", 0},
    {"ETag: W/\"a\"", "ETag: \"a\"", 0}, /* strong needs strong */
    {"ETag: \"a\"", "ETag: W/\"a\"", 1}, /* weak: weak comparison */
    {"Last-Modified: " D0_S, "ETag: \"a\"", 0},
    {"ETag: \"a\"\nLast-Modified: " D0_S, "Last-Modified: " D0_S, 1},
    {"Last-Modified: " D0_S, "Last-Modified: " D0_MINUS_1000, 0},
    {"ETag: \"a\"", "Last-Modified: " D0_S, 0},
    {"ETag: \"a\"", "Cache-Control: max-age=5", 1}, /* no validator */
    {"ETag: \"a\"", "ETag: bogus", 1},
};

START_TEST(test_304_applies)
{
    const struct upd_case *c = &upd_cases[_i];
    struct http_header s[MAX_HDRS], u[MAX_HDRS];
    size_t ns = hdrs(c->stored, s);
    size_t nu = hdrs(c->h304, u);

    ck_assert_msg(cache_304_applies(s, ns, u, nu, D0) == c->want,
                  "row %d: %s / %s", _i, c->stored, c->h304);
}
END_TEST

struct field_case {
    const char *name;
    int storable, updatable;
};

static const struct field_case field_cases[] = {
    {"Content-Type", 1, 1},
    {"Content-Encoding", 1, 1},
    {"ETag", 1, 1},
    {"Cache-Control", 1, 1},
    {"Date", 1, 1},
    {"Set-Cookie", 1, 1},
    {"Content-Length", 1, 0},
    {"content-range", 1, 0},
    {"Connection", 0, 0},
    {"Keep-Alive", 0, 0},
    {"Transfer-Encoding", 0, 0},
    {"TE", 0, 0},
    {"Upgrade", 0, 0},
    {"Trailer", 0, 0},
    {"Proxy-Connection", 0, 0},
    {"Proxy-Authenticate", 0, 0},
    {"X-Hop", 0, 0},
    {"x-other", 0, 0},
    {"X-Kept", 1, 1},
};

START_TEST(test_fields)
{
    const struct field_case *c = &field_cases[_i];
    struct http_header h[MAX_HDRS];
    size_t n = hdrs("Connection: keep-alive, X-Hop\nConnection: x-OTHER", h);

    ck_assert_msg(cache_header_storable(view(c->name), h, n) == c->storable,
                  "%s storable", c->name);
    ck_assert_msg(cache_header_updatable(view(c->name), h, n) == c->updatable,
                  "%s updatable", c->name);
}
END_TEST

/* ---- invalidation ------------------------------------------------------ */

struct inv_case {
    enum http_method method;
    int status;
    const char *resp;
    int count;
    const char *uris[3]; /* path, or path?query */
};

static const struct inv_case inv_cases[] = {
    {HTTP_M_POST, 200, "", 1, {"/a?q=1"}},
    {HTTP_M_GET, 200, "Location: /b", 0, {NULL}},
    {HTTP_M_HEAD, 200, "", 0, {NULL}},
    {HTTP_M_OPTIONS, 200, "", 0, {NULL}},
    {HTTP_M_POST, 500, "Location: /b", 0, {NULL}},
    {HTTP_M_POST, 404, "", 0, {NULL}},
    {HTTP_M_POST, 100, "", 0, {NULL}},
    {HTTP_M_OTHER, 200, "", 1, {"/a?q=1"}},
    {HTTP_M_PUT, 201, "Location: /b", 2, {"/a?q=1", "/b"}},
    {HTTP_M_POST,
     303,
     "Location: http://example.com/b?x=1",
     2,
     {"/a?q=1", "/b?x=1"}},
    {HTTP_M_POST, 303, "Location: HTTP://Example.COM:80", 2, {"/a?q=1", "/"}},
    {HTTP_M_POST, 200, "Location: http://other.com/b", 1, {"/a?q=1"}},
    {HTTP_M_POST, 200, "Location: http://example.com:8080/b", 1, {"/a?q=1"}},
    {HTTP_M_DELETE, 204, "Location: https://example.com/b", 1, {"/a?q=1"}},
    {HTTP_M_POST, 200, "Content-Location: /a?q=1", 1, {"/a?q=1"}},
    {HTTP_M_POST, 200, "Location: //EXAMPLE.com:80/c", 2, {"/a?q=1", "/c"}},
    {HTTP_M_POST, 200, "Location: //other/c", 1, {"/a?q=1"}},
    {HTTP_M_POST, 200, "Location: b/c", 1, {"/a?q=1"}},
    {HTTP_M_POST, 200, "Location: mailto:x@example.com", 1, {"/a?q=1"}},
    {HTTP_M_POST,
     200,
     "Location: http://u:p@example.com/d",
     2,
     {"/a?q=1", "/d"}},
    {HTTP_M_PATCH,
     200,
     "Location: /b\nContent-Location: /c#frag",
     3,
     {"/a?q=1", "/b", "/c"}},
    {HTTP_M_POST,
     302,
     "Location: /b\nContent-Location: /b",
     2,
     {"/a?q=1", "/b"}},
};

static void uri_format(const struct cache_uri *u, char *buf, size_t cap)
{
    snprintf(buf, cap, "%.*s%s%.*s", (int)u->path.len, u->path.p,
             u->query.len ? "?" : "", (int)u->query.len, u->query.p);
}

START_TEST(test_invalidation)
{
    const struct inv_case *c = &inv_cases[_i];
    struct http_header h[MAX_HDRS];
    size_t n = hdrs(c->resp, h);
    struct cache_key_in t = {.method = PT_STR("POST"),
                             .scheme = PT_STR("http"),
                             .host = PT_STR("example.com"),
                             .path = PT_STR("/a"),
                             .query = PT_STR("q=1")};
    struct cache_uri out[3];
    char buf[128];
    int got = cache_invalidations(c->method, c->status, &t, h, n, out);

    ck_assert_msg(got == c->count, "row %d (%s): %d URIs", _i, c->resp, got);
    for (int i = 0; i < got; i++) {
        uri_format(&out[i], buf, sizeof(buf));
        ck_assert_str_eq(buf, c->uris[i]);
    }
}
END_TEST

START_TEST(test_invalidation_default_scheme)
{
    struct http_header h[MAX_HDRS];
    size_t n = hdrs("Location: HTTP://example.com:80/b?c", h);
    struct cache_key_in t = {.host = PT_STR("example.com:80"),
                             .path = PT_STR("/a")};
    struct cache_uri out[3];

    ck_assert_int_eq(cache_invalidations(HTTP_M_PUT, 204, &t, h, n, out), 2);
    ck_assert(str_is(out[1].path, "/b") && str_is(out[1].query, "c"));
    ck_assert_uint_eq(out[0].query.len, 0);
}
END_TEST

/* ---- Cache-Status ------------------------------------------------------ */

struct status_case {
    struct cache_status st;
    const char *want;
};

static const struct status_case status_cases[] = {
    {{.has_ttl = 1, .ttl = 123}, "portico; hit; ttl=123"},
    {{.has_ttl = 1, .ttl = -5}, "portico; hit; ttl=-5"},
    {{.fwd = CACHE_FWD_MISS, .stored = 1}, "portico; fwd=miss; stored"},
    {{.fwd = CACHE_FWD_STALE, .fwd_status = 304},
     "portico; fwd=stale; fwd-status=304"},
    {{.fwd = CACHE_FWD_URI_MISS}, "portico; fwd=uri-miss"},
    {{.fwd = CACHE_FWD_REQUEST}, "portico; fwd=request"},
    {{.fwd = CACHE_FWD_BYPASS}, "portico; fwd=bypass"},
    {{.fwd = CACHE_FWD_METHOD}, "portico; fwd=method"},
    {{.fwd = CACHE_FWD_VARY_MISS, .collapsed = 1},
     "portico; fwd=vary-miss; collapsed"},
    {{.fwd = CACHE_FWD_MISS, .detail = "no-store"},
     "portico; fwd=miss; detail=no-store"},
    {{.fwd = CACHE_FWD_MISS, .detail = "Vary: *"},
     "portico; fwd=miss; detail=\"Vary: *\""},
    {{.fwd = CACHE_FWD_MISS, .detail = "a\"b\\c\n"},
     "portico; fwd=miss; detail=\"a\\\"b\\\\c\""},
    {{.fwd = CACHE_FWD_PARTIAL,
      .fwd_status = 200,
      .has_ttl = 1,
      .ttl = 0,
      .stored = 1},
     "portico; fwd=partial; fwd-status=200; ttl=0; stored"},
};

START_TEST(test_cache_status)
{
    const struct status_case *c = &status_cases[_i];
    char buf[128];
    int len = cache_status_format("portico", &c->st, buf, sizeof(buf));
    size_t want = strlen(c->want);

    ck_assert_int_eq(len, (int)want);
    ck_assert_str_eq(buf, c->want);
    /* exactly enough room (with the NUL) works, one byte less does not */
    ck_assert_int_eq(cache_status_format("portico", &c->st, buf, want + 1),
                     (int)want);
    ck_assert_int_eq(cache_status_format("portico", &c->st, buf, want), -1);
}
END_TEST

START_TEST(test_cache_status_name)
{
    struct cache_status st = {.fwd = CACHE_FWD_MISS};
    char buf[64];

    ck_assert_int_gt(cache_status_format("edge node", &st, buf, 64), 0);
    ck_assert_str_eq(buf, "\"edge node\"; fwd=miss");
    ck_assert_int_eq(cache_status_format("", &st, buf, 64), -1);
    st.fwd = (enum cache_fwd)99;
    ck_assert_int_eq(cache_status_format("portico", &st, buf, 64), -1);
}
END_TEST

/* ---- cache keys -------------------------------------------------------- */

static const struct pt_str drop_list[] = {PT_STR("utm_*"), PT_STR("fbclid")};
static const struct pt_str vary_ae[] = {PT_STR("Accept-Encoding")};
static const struct pt_str vary_lang[] = {PT_STR("Accept-Language"),
                                          PT_STR("X-Missing")};

enum { K_SORT = 1, K_DROP = 2, K_AE = 4, K_NORM = 8, K_LANG = 16 };

struct key_case {
    const char *method, *scheme, *host, *path, *query;
    const char *headers;
    int opts;
    const char *want;
};

static const struct key_case key_cases[] = {
    {"GET", "http", "example.com", "/a", "", "", 0,
     "GET http://example.com/a"},
    {"HEAD", "http", "example.com", "/a", "", "", 0,
     "GET http://example.com/a"},
    {"PURGE", "", "example.com", "/", "", "", 0, "PURGE http://example.com/"},
    {"GET", "http", "Example.COM:80", "/A", "", "", 0,
     "GET http://example.com/A"},
    {"GET", "http", "example.com:", "/", "", "", 0, "GET http://example.com/"},
    {"GET", "http", "example.com:443", "/", "", "", 0,
     "GET http://example.com:443/"},
    {"GET", "HTTPS", "example.com:443", "/", "", "", 0,
     "GET https://example.com/"},
    {"GET", "https", "example.com:8443", "/", "", "", 0,
     "GET https://example.com:8443/"},
    {"GET", "http", "[::1]:80", "/", "", "", 0, "GET http://[::1]/"},
    {"GET", "http", "[::1]:8080", "/", "", "", 0, "GET http://[::1]:8080/"},
    {"GET", "http", "h", "/p", "b=2&a=1", "", 0, "GET http://h/p?b=2&a=1"},
    {"GET", "http", "h", "/p", "b=2&&a=1", "", 0, "GET http://h/p?b=2&&a=1"},
    {"GET", "http", "h", "/p", "b=2&a=1", "", K_SORT,
     "GET http://h/p?a=1&b=2"},
    {"GET", "http", "h", "/p", "b=2&a=1&b=1&a=0", "", K_SORT,
     "GET http://h/p?a=1&a=0&b=2&b=1"},
    {"GET", "http", "h", "/p", "%62=1&a=2&B=3&a", "", K_SORT,
     "GET http://h/p?%62=1&B=3&a=2&a"},
    {"GET", "http", "h", "/p", "a=1&&b=2&", "", K_SORT,
     "GET http://h/p?a=1&b=2"},
    {"GET", "http", "h", "/p", "ab=1&a=2&a=1", "", K_SORT,
     "GET http://h/p?a=2&a=1&ab=1"},
    {"GET", "http", "h", "/p", "utm_source=x&id=3&fbclid=y&utm_medium=z", "",
     K_DROP, "GET http://h/p?id=3"},
    {"GET", "http", "h", "/p", "utm_source=x&fbclid=y", "", K_DROP,
     "GET http://h/p"},
    {"GET", "http", "h", "/p", "fbclid2=1&utm=2&UTM_a=3", "", K_DROP,
     "GET http://h/p?fbclid2=1&utm=2&UTM_a=3"},
    {"GET", "http", "h", "/p", "z=1&utm_a=2&a=3&fbclid", "", K_SORT | K_DROP,
     "GET http://h/p?a=3&z=1"},
    {"GET", "http", "h", "/p", "", "Accept-Language: en\nX-Other: 1", K_LANG,
     "GET http://h/p\naccept-language: en\nx-missing"},
    {"GET", "http", "h", "/p", "",
     "accept-language: en\nAccept-Language: fr;q=0.5", K_LANG,
     "GET http://h/p\naccept-language: en,fr;q=0.5\nx-missing"},
    {"GET", "http", "h", "/", "", "Accept-Encoding: gzip, deflate", K_AE,
     "GET http://h/\naccept-encoding: gzip, deflate"},
    {"GET", "http", "h", "/", "", "Accept-Encoding: gzip, deflate, br",
     K_AE | K_NORM, "GET http://h/\naccept-encoding: br"},
    {"GET", "http", "h", "/", "", "Accept-Encoding: gzip;q=1, br;q=0.5",
     K_AE | K_NORM, "GET http://h/\naccept-encoding: gzip"},
    {"GET", "http", "h", "/", "", "Accept-Encoding: gzip;q=0.8, BR;q=0.8",
     K_AE | K_NORM, "GET http://h/\naccept-encoding: br"},
    {"GET", "http", "h", "/", "", "", K_AE | K_NORM,
     "GET http://h/\naccept-encoding: identity"},
    {"GET", "http", "h", "/", "", "Accept-Encoding: *", K_AE | K_NORM,
     "GET http://h/\naccept-encoding: br"},
    {"GET", "http", "h", "/", "", "Accept-Encoding: br;q=0, *", K_AE | K_NORM,
     "GET http://h/\naccept-encoding: gzip"},
    {"GET", "http", "h", "/", "", "Accept-Encoding: identity", K_AE | K_NORM,
     "GET http://h/\naccept-encoding: identity"},
    {"GET", "http", "h", "/", "", "Accept-Encoding: gzip;q=0", K_AE | K_NORM,
     "GET http://h/\naccept-encoding: identity"},
    {"GET", "http", "h", "/", "", "Accept-Encoding: x-gzip", K_AE | K_NORM,
     "GET http://h/\naccept-encoding: gzip"},
    /* the field's name in any case; a name one byte off is another */
    {"GET", "http", "h", "/", "", "ACCEPT-ENCODING: br", K_AE | K_NORM,
     "GET http://h/\naccept-encoding: br"},
    {"GET", "http", "h", "/", "", "accept-encodinG: gzip", K_AE | K_NORM,
     "GET http://h/\naccept-encoding: gzip"},
    {"GET", "http", "h", "/", "", "Accept-Encodinx: br", K_AE | K_NORM,
     "GET http://h/\naccept-encoding: identity"},
    {"GET", "http", "h", "/", "", "Bccept-Encoding: br", K_AE | K_NORM,
     "GET http://h/\naccept-encoding: identity"},
    {"GET", "http", "h", "/", "", "Accept_Encoding: br", K_AE | K_NORM,
     "GET http://h/\naccept-encoding: identity"},
    {"GET", "http", "h", "/", "", "Accept-Encoding: br;q=2, gzip",
     K_AE | K_NORM, "GET http://h/\naccept-encoding: gzip"},
    {"GET", "http", "h", "/", "", "Accept-Encoding: br;q=0.001, gzip;q=0.000",
     K_AE | K_NORM, "GET http://h/\naccept-encoding: br"},
    {"GET", "http", "h", "/", "",
     "Accept-Encoding: gzip;q=0.5\nAccept-Encoding: br;q=0.9", K_AE | K_NORM,
     "GET http://h/\naccept-encoding: br"},
};

static void key_opts_of(int bits, struct cache_key_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->sort_query = (bits & K_SORT) != 0;
    if (bits & K_DROP) {
        o->drop = drop_list;
        o->ndrop = PT_ARRAY_LEN(drop_list);
    }
    if (bits & K_AE) {
        o->vary = vary_ae;
        o->nvary = 1;
    }
    if (bits & K_LANG) {
        o->vary = vary_lang;
        o->nvary = 2;
    }
    o->normalize_accept_encoding = (bits & K_NORM) != 0;
}

START_TEST(test_key)
{
    const struct key_case *c = &key_cases[_i];
    struct http_header h[MAX_HDRS];
    struct cache_key_in in = {view(c->method),
                              view(c->scheme),
                              view(c->host),
                              view(c->path),
                              view(c->query),
                              h,
                              0};
    struct cache_key_opts o;
    char buf[256];
    int want = (int)strlen(c->want);
    int len;

    in.nheaders = hdrs(c->headers, h);
    key_opts_of(c->opts, &o);
    len = cache_key_build(&in, &o, buf, sizeof(buf));
    ck_assert_msg(len == want && memcmp(buf, c->want, (size_t)want) == 0,
                  "row %d: got \"%.*s\"", _i, len < 0 ? 0 : len, buf);
    ck_assert_int_eq(cache_key_build(&in, &o, buf, (size_t)want), want);
    ck_assert_int_eq(cache_key_build(&in, &o, buf, (size_t)want - 1), -1);
}
END_TEST

START_TEST(test_key_defaults)
{
    struct cache_key_in in = {PT_STR("GET"),
                              PT_STR("http"),
                              PT_STR("h"),
                              PT_STR("/"),
                              PT_STR("b&a"),
                              NULL,
                              0};
    char buf[32];
    int len = cache_key_build(&in, NULL, buf, sizeof(buf));

    ck_assert_int_eq(len, (int)strlen("GET http://h/?b&a"));
    ck_assert(memcmp(buf, "GET http://h/?b&a", (size_t)len) == 0);
    ck_assert_int_eq(cache_key_build(&in, NULL, NULL, 0), -1);
}
END_TEST

/* Lower-casing in the key (eight bytes at a time, then one by one) is
 * pt_lower's for every byte value, at every length and alignment: a
 * request header's name carries them (a key has "\nname" for each). */
START_TEST(test_key_lower)
{
    char all[256 + 16], buf[512];
    struct cache_key_in in = {PT_STR("GET"), PT_STR("http"), PT_STR("h"),
                              PT_STR("/"),   PT_STR(""),     NULL,
                              0};
    struct pt_str name;
    struct cache_key_opts o = {0, NULL, 0, &name, 1, 0};
    const size_t pre = strlen("GET http://h/\n");

    for (int i = 0; i < (int)sizeof(all); i++)
        all[i] = (char)(i * 7 + 3); /* every value, in no tidy order */
    for (size_t off = 0; off < 8; off++) {
        for (size_t len = 0; len + off <= sizeof(all); len += 1 + len / 8) {
            name = (struct pt_str){all + off, len};
            ck_assert_int_eq(cache_key_build(&in, &o, buf, sizeof(buf)),
                             (int)(pre + len));
            for (size_t i = 0; i < len; i++)
                ck_assert_msg(buf[pre + i] == pt_lower(all[off + i]),
                              "byte 0x%02x at %zu of %zu",
                              (unsigned char)all[off + i], i, len);
        }
    }
}
END_TEST

/* A variant's key: the URL's key, "\n*", then each listed field's
 * values from the request (joined, absent distinct from empty). */
START_TEST(test_key_vary)
{
    struct http_header h[] = {
        {PT_STR("X-A"), PT_STR("1")},
        {PT_STR("x-b"), PT_STR("")},
        {PT_STR("X-A"), PT_STR("2")},
    };
    const char *want = "K\n*\nx-a: 1,2\nx-b: \nx-c";
    char buf[64] = "K";
    int n = cache_key_vary(h, 3, PT_STR("x-a,x-b,x-c"), buf, 1, sizeof(buf));

    ck_assert_int_eq(n, (int)strlen(want));
    ck_assert(memcmp(buf, want, (size_t)n) == 0);
    /* an empty list still marks the key as a variant's */
    ck_assert_int_eq(cache_key_vary(h, 3, PT_STR(""), buf, 1, sizeof(buf)), 3);
    ck_assert(memcmp(buf, "K\n*", 3) == 0);
    /* too small a buffer, or a key already past it */
    ck_assert_int_eq(cache_key_vary(h, 3, PT_STR("x-a,x-b,x-c"), buf, 1,
                                    strlen(want) - 1),
                     -1);
    ck_assert_int_eq(cache_key_vary(h, 3, PT_STR("x-a"), buf, 10, 8), -1);
}
END_TEST

/* ---- suite ------------------------------------------------------------- */

#define LOOP(tc, fn, table)                                                   \
    tcase_add_loop_test(tc, fn, 0, (int)PT_ARRAY_LEN(table))

static Suite *cache_policy_suite(void)
{
    Suite *s = suite_create("cache_policy");
    TCase *tc;

    tc = tcase_create("parse");
    LOOP(tc, test_cc_parse, cc_cases);
    tcase_add_test(tc, test_cc_request);
    LOOP(tc, test_date_parse, date_cases);
    tcase_add_test(tc, test_date_roundtrip);
    suite_add_tcase(s, tc);

    tc = tcase_create("store");
    LOOP(tc, test_storable, store_cases);
    LOOP(tc, test_lifetime, life_cases);
    tcase_add_test(tc, test_lifetime_no_opts);
    LOOP(tc, test_age, age_cases);
    tcase_add_test(tc, test_age_saturates);
    suite_add_tcase(s, tc);

    tc = tcase_create("reuse");
    LOOP(tc, test_reuse, reuse_cases);
    LOOP(tc, test_stale_if_error, sie_cases);
    LOOP(tc, test_conditional, cond_cases);
    tcase_add_test(tc, test_validators);
    LOOP(tc, test_304_applies, upd_cases);
    LOOP(tc, test_fields, field_cases);
    LOOP(tc, test_invalidation, inv_cases);
    tcase_add_test(tc, test_invalidation_default_scheme);
    suite_add_tcase(s, tc);

    tc = tcase_create("output");
    LOOP(tc, test_cache_status, status_cases);
    tcase_add_test(tc, test_cache_status_name);
    LOOP(tc, test_key, key_cases);
    tcase_add_test(tc, test_key_defaults);
    tcase_add_test(tc, test_key_lower);
    tcase_add_test(tc, test_key_vary);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cache_policy_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
