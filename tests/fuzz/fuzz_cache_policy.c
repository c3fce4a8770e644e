/*
 * fuzz_cache_policy.c -- libFuzzer target for src/cache_policy.c and
 * src/cache_key.c.  The input is used three ways: whole, as a
 * Cache-Control value and as an HTTP-date; and split at '\n' into
 * "Name: value" lines, as request and response heads that go through
 * every decision function and the cache key builder.  The modules'
 * contracts are checked as invariants.  Calls: cache_policy.h,
 * cache_key.h, libc.  No libFuzzer API: the gcc replay driver in
 * `make check` runs the corpus through the same entry point.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache_key.h"
#include "cache_policy.h"

/* abort() and not assert(): the check must survive -DNDEBUG builds. */
#define FUZZ_CHECK(cond)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,        \
                    __LINE__, #cond);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

#define FUZZ_HDRS 24
#define FUZZ_KEY 512
#define NOW ((int64_t)1748736000) /* 2025-06-01 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int delta_ok(int64_t v)
{
    return v == CACHE_DELTA_NONE || (v >= 0 && v <= CACHE_DELTA_MAX);
}

/* ---- Cache-Control ----------------------------------------------------- */

static void fuzz_cc(struct pt_str v)
{
    struct cache_control cc, again;

    cache_control_init(&cc);
    cache_control_parse(v, &cc);
    FUZZ_CHECK(delta_ok(cc.max_age) && delta_ok(cc.s_maxage));
    FUZZ_CHECK(delta_ok(cc.min_fresh));
    FUZZ_CHECK(delta_ok(cc.stale_while_revalidate));
    FUZZ_CHECK(delta_ok(cc.stale_if_error));
    FUZZ_CHECK(cc.max_stale == CACHE_STALE_ANY || delta_ok(cc.max_stale));
    cache_control_init(&again);
    cache_control_parse(v, &again);
    FUZZ_CHECK(memcmp(&cc, &again, sizeof(cc)) == 0);
}

/* ---- dates ------------------------------------------------------------- */

/* A parsed date printed as IMF-fixdate parses back to the same time. */
static void date_roundtrip(int64_t t)
{
    static const char *const days[] = {"Thu", "Fri", "Sat", "Sun",
                                       "Mon", "Tue", "Wed"};
    static const char *const mons[] = {"Jan", "Feb", "Mar", "Apr",
                                       "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"};
    time_t tt = (time_t)t;
    struct tm tm;
    char buf[64];
    int64_t back;
    int64_t d = (t >= 0 ? t : t - 86399) / 86400;

    if (gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 < 0)
        return;
    snprintf(buf, sizeof(buf), "%s, %02d %s %04d %02d:%02d:%02d GMT",
             days[((d % 7) + 7) % 7], tm.tm_mday, mons[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    FUZZ_CHECK(cache_date_parse((struct pt_str){buf, strlen(buf)}, NOW,
                                &back) == PT_OK);
    FUZZ_CHECK(back == t);
}

static void fuzz_date(struct pt_str v)
{
    static const int64_t nows[] = {0, 784111777, NOW, INT64_MIN, INT64_MAX};
    int64_t t;

    for (size_t i = 0; i < PT_ARRAY_LEN(nows); i++) {
        if (cache_date_parse(v, nows[i], &t) != PT_OK)
            continue;
        /* 0000-01-01 .. 9999-12-31 23:59:60 */
        FUZZ_CHECK(t >= -62167219200 && t <= 253402300800);
        if (memmem(v.p, v.len, ":60", 3) == NULL)
            date_roundtrip(t); /* leap seconds do not round-trip */
    }
}

/* ---- heads ------------------------------------------------------------- */

/* "Name: value" lines; lines without a colon are skipped. */
static size_t split_headers(const char *buf, size_t len, struct http_header *h)
{
    const char *p = buf;
    const char *end = buf + len;
    size_t n = 0;

    while (p < end && n < FUZZ_HDRS) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        const char *colon = memchr(p, ':', (size_t)(e - p));

        if (colon != NULL) {
            const char *v = colon + 1;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            h[n].name = (struct pt_str){p, (size_t)(colon - p)};
            h[n].value = (struct pt_str){v, (size_t)(e - v)};
            n++;
        }
        p = nl ? nl + 1 : end;
    }
    return n;
}

static void fuzz_decisions(const struct http_header *h, size_t n, int status)
{
    struct cache_request q;
    struct cache_response r;
    struct cache_lifetime_opts o = {3600, status % 2 ? 300 : -1};
    const char *why = NULL;
    enum cache_storability st;
    int64_t life, age;

    cache_request_read(HTTP_M_GET, h, n, &q);
    cache_response_read(status, h, n, NOW, &r);
    st = cache_storable(&q, &r, &why);
    FUZZ_CHECK((st == CACHE_STORE_NO) == (why != NULL));
    FUZZ_CHECK(st == CACHE_STORE_NO || st == CACHE_STORE_YES);
    FUZZ_CHECK(r.age >= 0 && r.age <= CACHE_DELTA_MAX);
    life = cache_freshness_lifetime(&r, NOW, &o);
    FUZZ_CHECK(life >= 0);
    age = cache_age_initial(&r, NOW - 1, NOW);
    FUZZ_CHECK(age >= 0);
    age = cache_age_current(age, NOW, NOW + status);
    FUZZ_CHECK(age >= 0);
    FUZZ_CHECK(cache_reuse(&q.cc, &r.cc, life, age) <=
               CACHE_ONLY_IF_CACHED_MISS);
    (void)cache_stale_if_error(&q.cc, &r.cc, life, age);
}

static void fuzz_validation(const struct http_header *h, size_t n)
{
    struct cache_validators v;
    const struct http_header *et = http_header_find(h, n, "etag");
    struct pt_str etag = et ? et->value : (struct pt_str){NULL, 0};
    int c;

    c = cache_conditional(HTTP_M_GET, h, n, etag, NOW - 10, NOW);
    FUZZ_CHECK(c == 200 || c == 304);
    c = cache_validators(h, n, NOW, &v);
    FUZZ_CHECK(c >= 0 && c <= 2);
    FUZZ_CHECK(c == (v.if_none_match.len > 0) + (v.if_modified_since.len > 0));
    if (v.if_none_match.len > 0)
        FUZZ_CHECK(cache_conditional(HTTP_M_GET, h, 0, v.if_none_match,
                                     CACHE_TIME_NONE, NOW) == 200);
    c = cache_304_applies(h, n, h, n, NOW);
    FUZZ_CHECK(c == 1); /* a response always matches itself */
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(!cache_header_updatable(h[i].name, h, n) ||
                   cache_header_storable(h[i].name, h, n));
}

/* ---- invalidation and keys --------------------------------------------- */

static void fuzz_invalidate(const struct cache_key_in *in,
                            const struct http_header *h, size_t n)
{
    struct cache_uri out[3];
    int c = cache_invalidations(HTTP_M_POST, 200, in, h, n, out);

    FUZZ_CHECK(c >= 1 && c <= 3);
    for (int i = 0; i < c; i++)
        FUZZ_CHECK(out[i].path.len > 0 || i == 0);
    FUZZ_CHECK(cache_invalidations(HTTP_M_GET, 200, in, h, n, out) == 0);
}

/* In a sorted key, the query's parameter names never decrease. */
static void check_sorted(const char *key, size_t len)
{
    const char *q = memchr(key, '?', len);
    const char *end = memchr(key, '\n', len);
    const char *prev = NULL;
    size_t prev_len = 0;

    end = end ? end : key + len;
    if (q == NULL || q > end)
        return;
    for (const char *p = q + 1; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        size_t nl = (size_t)((eq ? eq : e) - p);

        FUZZ_CHECK(e > p); /* no empty parameters once sorted */
        if (prev != NULL) {
            int c = memcmp(prev, p, PT_MIN(prev_len, nl));
            FUZZ_CHECK(c < 0 || (c == 0 && prev_len <= nl));
        }
        prev = p;
        prev_len = nl;
        p = amp ? amp + 1 : end;
    }
}

static int has_qm(struct pt_str s)
{
    return s.len > 0 && memchr(s.p, '?', s.len) != NULL;
}

static void fuzz_key(const struct cache_key_in *in, const struct pt_str *drop,
                     size_t ndrop, const struct pt_str *vary, size_t nvary)
{
    struct cache_key_opts o = {1, drop, ndrop, vary, nvary, 1};
    char a[FUZZ_KEY], b[FUZZ_KEY];
    int la, lb;

    for (int bits = 0; bits < 4; bits++) {
        o.sort_query = bits & 1;
        o.normalize_accept_encoding = (bits >> 1) & 1;
        la = cache_key_build(in, &o, a, sizeof(a));
        FUZZ_CHECK(la >= -1 && la <= FUZZ_KEY);
        if (la < 0)
            continue;
        lb = cache_key_build(in, &o, b, (size_t)la);
        FUZZ_CHECK(lb == la && memcmp(a, b, (size_t)la) == 0);
        if (la > 0)
            FUZZ_CHECK(cache_key_build(in, &o, b, (size_t)la - 1) == -1);
        if (o.sort_query && !has_qm(in->method) && !has_qm(in->scheme) &&
            !has_qm(in->host) && !has_qm(in->path))
            check_sorted(a, (size_t)la);
    }
}

static struct pt_str line_at(const struct http_header *h, size_t n, size_t i)
{
    return i < n ? h[i].value : (struct pt_str){"", 0};
}

/* Key inputs taken from the first header values, so they share bytes. */
static void fuzz_keys(const struct http_header *h, size_t n)
{
    struct cache_key_in in = {line_at(h, n, 0),
                              line_at(h, n, 1),
                              line_at(h, n, 2),
                              line_at(h, n, 3),
                              line_at(h, n, 4),
                              h,
                              n};
    struct pt_str names[FUZZ_HDRS];
    struct pt_str vals[FUZZ_HDRS];

    for (size_t i = 0; i < n; i++) {
        names[i] = h[i].name;
        vals[i] = h[i].value;
    }
    fuzz_key(&in, vals, n, names, n);
    fuzz_invalidate(&in, h, n);
}

static void fuzz_status(const uint8_t *data, size_t size, const char *s)
{
    struct cache_status st = {0};
    char buf[256];
    int len;

    st.fwd = (enum cache_fwd)(size > 0 ? data[0] % 9 : 0);
    st.fwd_status = size > 1 ? data[1] * 3 : 0;
    st.has_ttl = size > 2;
    st.ttl = size > 2 ? (int64_t)(int8_t)data[2] * 1000003 : 0;
    st.stored = size > 3 && (data[3] & 1);
    st.collapsed = size > 3 && (data[3] & 2);
    st.detail = s;
    len = cache_status_format("portico", &st, buf, sizeof(buf));
    FUZZ_CHECK(len == -1 || (size_t)len == strlen(buf));
    for (int i = 0; i < len; i++)
        FUZZ_CHECK(buf[i] >= 0x20 && buf[i] < 0x7f);
}

/* ---- entry ------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy: the replay driver's buffer may be larger. */
    char *buf = malloc(size ? size : 1);
    char *cstr = malloc(size + 1);
    struct http_header h[FUZZ_HDRS];
    struct pt_str whole;
    size_t n;

    memcpy(buf, data, size);
    memcpy(cstr, data, size);
    cstr[size] = '\0';
    whole = (struct pt_str){buf, size};
    fuzz_cc(whole);
    fuzz_date(whole);
    n = split_headers(buf, size, h);
    for (size_t i = 0; i < n; i++) {
        fuzz_cc(h[i].value);
        fuzz_date(h[i].value);
    }
    fuzz_decisions(h, n, size > 0 ? 100 + data[0] * 2 : 200);
    fuzz_validation(h, n);
    fuzz_keys(h, n);
    fuzz_status(data, size, cstr);
    free(cstr);
    free(buf);
    return 0;
}
