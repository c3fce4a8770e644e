/*
 * cache_policy.c -- the caching rules of a shared HTTP cache: directive
 * and date parsing, storability, freshness, age, reuse, conditionals,
 * validators, 304 updates and invalidation.  Cache keys and Cache-Status
 * are in cache_key.c.
 * Layer 1 (pure).  Calls: cache_util.h, http_parse.h (header lookups),
 * portico.h, libc.  Never: I/O, logging, allocation, mutable globals.
 *
 * RFC 9111 (caching), RFC 9110 (dates, validators, conditionals),
 * RFC 5861 (stale-while-revalidate, stale-if-error), RFC 8246 (immutable).
 */
#include "cache_policy.h"

#include <string.h>

#include "cache_util.h"

/* ---- small helpers ----------------------------------------------------- */

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;

    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* later - earlier, never below 0, saturating. */
static int64_t span(int64_t later, int64_t earlier)
{
    int64_t r;

    if (__builtin_sub_overflow(later, earlier, &r))
        return later > earlier ? INT64_MAX : 0;
    return r > 0 ? r : 0;
}

/* Is tok an element of the comma-separated list (case-insensitive)? */
static int list_has(struct pt_str list, struct pt_str tok)
{
    const char *p = list.p;
    const char *end = list.p + list.len;

    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;

        if (str_ieq(str_trim(str_make(p, e)), tok))
            return 1;
        p = comma ? comma + 1 : end;
    }
    return 0;
}

static int header_count(const struct http_header *h, size_t n,
                        const char *name)
{
    int count = 0;

    for (size_t i = 0; i < n; i++)
        count += pt_str_ieq(h[i].name, name);
    return count;
}

/* ---- Cache-Control (RFC 9111 5.2) -------------------------------------- */

/* One directive: token [ "=" ( token / quoted-string ) ]. */
struct cc_dir {
    struct pt_str name;
    struct pt_str arg; /* a quoted-string's inside, escapes kept */
    int has_arg;
    int arg_ok; /* the argument and the element are well-formed */
};

/* Skip to just past the next comma outside a quoted-string. */
static const char *cc_skip_element(const char *p, const char *end)
{
    int quoted = 0;

    for (; p < end; p++) {
        if (quoted && *p == '\\' && p + 1 < end)
            p++;
        else if (*p == '"')
            quoted = !quoted;
        else if (*p == ',' && !quoted)
            return p + 1;
    }
    return end;
}

/* The argument at p: a token, or a quoted-string whose inside (escapes
   kept) becomes d->arg.  Returns where it ends. */
static const char *cc_arg(const char *p, const char *end, struct cc_dir *d)
{
    const char *q = p;

    d->has_arg = 1;
    if (p < end && *p == '"') {
        for (q = p + 1; q < end && *q != '"'; q++)
            q += *q == '\\' && q + 1 < end;
        d->arg = str_make(p + 1, q);
        d->arg_ok = q < end; /* closed */
        return q < end ? q + 1 : end;
    }
    while (q < end && char_tchar(*q))
        q++;
    d->arg = str_make(p, q);
    d->arg_ok = q > p;
    return q;
}

/*
 * Next directive from *pp.  Returns 0 at the end.  A malformed element
 * still yields its name (with arg_ok 0), so that no-store or private
 * followed by junk is honoured rather than dropped: the safe reading.
 */
static int cc_next(const char **pp, const char *end, struct cc_dir *d)
{
    const char *p = *pp;
    const char *q;

    for (;;) {
        while (p < end && (char_ows(*p) || *p == ','))
            p++;
        if (p == end)
            return 0;
        for (q = p; q < end && char_tchar(*q); q++)
            ;
        if (q > p)
            break;
        p = cc_skip_element(p, end); /* no name: nothing to honour */
    }
    memset(d, 0, sizeof(*d));
    d->name = str_make(p, q);
    d->arg_ok = 1;
    if (q < end && *q == '=')
        q = cc_arg(q + 1, end, d);
    while (q < end && char_ows(*q))
        q++;
    if (q < end && *q != ',') {
        d->arg_ok = 0;
        q = cc_skip_element(q, end);
    }
    *pp = q;
    return 1;
}

/* A delta-seconds argument, or PT_ERROR when missing or malformed. */
static int cc_delta(const struct cc_dir *d, int64_t *out)
{
    if (!d->has_arg || !d->arg_ok)
        return PT_ERROR;
    return delta_parse(d->arg, out);
}

/*
 * max-age and s-maxage: a repeat or an invalid value makes the response
 * stale rather than guessing which to believe (RFC 9111 4.2.1 allows
 * "first wins" or "stale"; stale is the choice that cannot over-serve).
 */
static void cc_freshness(const struct cc_dir *d, int64_t *field,
                         struct cache_control *cc)
{
    int64_t v;

    if (cc_delta(d, &v) != PT_OK || *field != CACHE_DELTA_NONE) {
        cc->freshness_invalid = 1;
        return;
    }
    *field = v;
}

/* Other delta directives: the first valid one wins, invalid ones are
   ignored (RFC 9111 5.2: unrecognised or invalid means absent). */
static void cc_delta_first(const struct cc_dir *d, int64_t *field)
{
    int64_t v;

    if (*field == CACHE_DELTA_NONE && cc_delta(d, &v) == PT_OK)
        *field = v;
}

static void cc_max_stale(const struct cc_dir *d, struct cache_control *cc)
{
    if (cc->max_stale != CACHE_DELTA_NONE)
        return;
    if (!d->has_arg)
        cc->max_stale = CACHE_STALE_ANY;
    else
        cc_delta_first(d, &cc->max_stale);
}

/* Directives without arguments; an argument, if any, is ignored
   (no-cache="f" and private="f" are honoured as a whole). */
static int cc_flag(const struct cc_dir *d, struct cache_control *cc)
{
    struct pt_str n = d->name;

    if (pt_str_ieq(n, "no-cache"))
        cc->no_cache = 1;
    else if (pt_str_ieq(n, "no-store"))
        cc->no_store = 1;
    else if (pt_str_ieq(n, "private"))
        cc->private = 1;
    else if (pt_str_ieq(n, "public"))
        cc->public = 1;
    else if (pt_str_ieq(n, "must-revalidate"))
        cc->must_revalidate = 1;
    else if (pt_str_ieq(n, "proxy-revalidate"))
        cc->proxy_revalidate = 1;
    else if (pt_str_ieq(n, "must-understand"))
        cc->must_understand = 1;
    else if (pt_str_ieq(n, "immutable"))
        cc->immutable = 1;
    else if (pt_str_ieq(n, "only-if-cached"))
        cc->only_if_cached = 1;
    else
        return 0;
    return 1;
}

static void cc_apply(const struct cc_dir *d, struct cache_control *cc)
{
    struct pt_str n = d->name;

    if (cc_flag(d, cc))
        return;
    if (pt_str_ieq(n, "max-age"))
        cc_freshness(d, &cc->max_age, cc);
    else if (pt_str_ieq(n, "s-maxage"))
        cc_freshness(d, &cc->s_maxage, cc);
    else if (pt_str_ieq(n, "max-stale"))
        cc_max_stale(d, cc);
    else if (pt_str_ieq(n, "min-fresh"))
        cc_delta_first(d, &cc->min_fresh);
    else if (pt_str_ieq(n, "stale-while-revalidate"))
        cc_delta_first(d, &cc->stale_while_revalidate);
    else if (pt_str_ieq(n, "stale-if-error"))
        cc_delta_first(d, &cc->stale_if_error);
}

void cache_control_init(struct cache_control *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age = CACHE_DELTA_NONE;
    cc->s_maxage = CACHE_DELTA_NONE;
    cc->max_stale = CACHE_DELTA_NONE;
    cc->min_fresh = CACHE_DELTA_NONE;
    cc->stale_while_revalidate = CACHE_DELTA_NONE;
    cc->stale_if_error = CACHE_DELTA_NONE;
}

void cache_control_parse(struct pt_str value, struct cache_control *cc)
{
    const char *p = value.p;
    const char *end = value.p + value.len;
    struct cc_dir d;

    if (value.len == 0)
        return;
    while (cc_next(&p, end, &d))
        cc_apply(&d, cc);
}

/* ---- HTTP-date (RFC 9110 5.6.7) ---------------------------------------- */

static const char *const day_names[7] = {"Mon", "Tue", "Wed", "Thu",
                                         "Fri", "Sat", "Sun"};
/* What follows the abbreviation in RFC 850's day-name-l. */
static const char *const day_rest[7] = {"day", "sday",  "nesday", "rsday",
                                        "day", "urday", "day"};
static const char *const month_names[12] = {"Jan", "Feb", "Mar", "Apr",
                                            "May", "Jun", "Jul", "Aug",
                                            "Sep", "Oct", "Nov", "Dec"};

struct date_fields {
    int year, month, day; /* month 1..12 */
    int hour, min, sec;
};

struct cursor {
    const char *p;
    const char *end;
};

/* Match lit exactly (case-sensitive: RFC 9110 spells these with %s). */
static int cur_lit(struct cursor *c, const char *lit)
{
    size_t n = strlen(lit);

    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
        return 0;
    c->p += n;
    return 1;
}

/* Exactly n digits. */
static int cur_digits(struct cursor *c, int n, int *out)
{
    int v = 0;

    if (c->end - c->p < n)
        return 0;
    for (int i = 0; i < n; i++) {
        if (!char_digit(c->p[i]))
            return 0;
        v = v * 10 + (c->p[i] - '0');
    }
    c->p += n;
    *out = v;
    return 1;
}

/* One of names[0..count) (3 letters); *idx gets its index. */
static int cur_name(struct cursor *c, const char *const *names, int count,
                    int *idx)
{
    for (int i = 0; i < count; i++) {
        if (cur_lit(c, names[i])) {
            *idx = i;
            return 1;
        }
    }
    return 0;
}

/* time-of-day = hour ":" minute ":" second */
static int cur_time(struct cursor *c, struct date_fields *f)
{
    return cur_digits(c, 2, &f->hour) && cur_lit(c, ":") &&
           cur_digits(c, 2, &f->min) && cur_lit(c, ":") &&
           cur_digits(c, 2, &f->sec);
}

static int cur_month(struct cursor *c, struct date_fields *f)
{
    if (!cur_name(c, month_names, 12, &f->month))
        return 0;
    f->month++;
    return 1;
}

/* IMF-fixdate after "Sun,": SP 06 SP Nov SP 1994 SP 08:49:37 SP GMT */
static int date_imf(struct cursor *c, struct date_fields *f)
{
    return cur_lit(c, " ") && cur_digits(c, 2, &f->day) && cur_lit(c, " ") &&
           cur_month(c, f) && cur_lit(c, " ") && cur_digits(c, 4, &f->year) &&
           cur_lit(c, " ") && cur_time(c, f) && cur_lit(c, " GMT");
}

/* rfc850-date after "Sunday,": SP 06-Nov-94 SP 08:49:37 SP GMT */
static int date_850(struct cursor *c, struct date_fields *f)
{
    return cur_lit(c, " ") && cur_digits(c, 2, &f->day) && cur_lit(c, "-") &&
           cur_month(c, f) && cur_lit(c, "-") && cur_digits(c, 2, &f->year) &&
           cur_lit(c, " ") && cur_time(c, f) && cur_lit(c, " GMT");
}

/* asctime-date after "Sun": SP Nov SP ( 2DIGIT / SP DIGIT ) SP time SP
   1994 */
static int date_asctime(struct cursor *c, struct date_fields *f)
{
    if (!cur_lit(c, " ") || !cur_month(c, f) || !cur_lit(c, " "))
        return 0;
    if (!(cur_lit(c, " ") ? cur_digits(c, 1, &f->day)
                          : cur_digits(c, 2, &f->day)))
        return 0;
    return cur_lit(c, " ") && cur_time(c, f) && cur_lit(c, " ") &&
           cur_digits(c, 4, &f->year);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1..12). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}

/* The Gregorian year of a timestamp. */
static int64_t year_of(int64_t t)
{
    int64_t z = (t >= 0 ? t : t - 86399) / 86400 + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;

    return yoe + era * 400 + (mp >= 10);
}

/*
 * RFC 9110 5.6.7: a two-digit year that would be more than 50 years in
 * the future is the most recent past year with those digits.
 */
static int year_from_2digit(int yy, int64_t now)
{
    /* keep now within 0000..9999 so the arithmetic stays small */
    int64_t t = PT_MAX(PT_MIN(now, (int64_t)253402300799), (int64_t)0);
    int64_t cur = year_of(t);
    int64_t y = cur - cur % 100 + yy;

    if (y > cur + 50)
        y -= 100;
    else if (y <= cur - 50)
        y += 100;
    return (int)y;
}

static int leap_year(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int date_valid(const struct date_fields *f)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
    int dim = mdays[f->month - 1] + (f->month == 2 && leap_year(f->year));

    /* second 60: a leap second, which RFC 5322 (IMF) allows; a year
       past 9999 can only come from a two-digit year near then */
    return f->day >= 1 && f->day <= dim && f->hour <= 23 && f->min <= 59 &&
           f->sec <= 60 && f->year <= 9999;
}

/* The day name is not checked against the date: RFC 9110 does not ask
   for it, and origins get it wrong. */
int cache_date_parse(struct pt_str s, int64_t now, int64_t *out)
{
    struct cursor c = {s.p, s.p + s.len};
    struct date_fields f;
    int wday;
    int ok;

    if (!cur_name(&c, day_names, 7, &wday))
        return PT_ERROR;
    if (cur_lit(&c, ","))
        ok = date_imf(&c, &f);
    else if (c.p < c.end && *c.p == ' ')
        ok = date_asctime(&c, &f);
    else if ((ok = cur_lit(&c, day_rest[wday]) && cur_lit(&c, ",") &&
                   date_850(&c, &f)))
        f.year = year_from_2digit(f.year, now);
    if (!ok || c.p != c.end || !date_valid(&f))
        return PT_ERROR;
    *out = days_from_civil(f.year, f.month, f.day) * 86400 + f.hour * 3600 +
           f.min * 60 + f.sec;
    return PT_OK;
}

/* ---- reading heads ----------------------------------------------------- */

void cache_request_read(enum http_method method, const struct http_header *h,
                        size_t n, struct cache_request *out)
{
    int has_cc = 0;
    int pragma = 0;

    memset(out, 0, sizeof(*out));
    out->method = method;
    cache_control_init(&out->cc);
    for (size_t i = 0; i < n; i++) {
        if (pt_str_ieq(h[i].name, "cache-control")) {
            has_cc = 1;
            cache_control_parse(h[i].value, &out->cc);
        } else if (pt_str_ieq(h[i].name, "pragma")) {
            pragma |= http_list_has_token(h[i].value, "no-cache");
        } else if (pt_str_ieq(h[i].name, "authorization")) {
            out->has_authorization = 1;
        }
    }
    /* RFC 9111 5.4: Pragma counts only when Cache-Control is absent. */
    if (pragma && !has_cc)
        out->cc.no_cache = 1;
}

static void resp_date(struct pt_str v, int64_t now, int64_t *field)
{
    int64_t t;

    if (*field == CACHE_TIME_NONE && cache_date_parse(v, now, &t) == PT_OK)
        *field = t;
}

/* Expires: an invalid date means "already expired" (RFC 9111 5.3); two
   lines make the response stale (4.2.1). */
static void resp_expires(struct pt_str v, int64_t now,
                         struct cache_response *out)
{
    int64_t t;

    if (out->expires != CACHE_TIME_NONE || out->expires_invalid) {
        out->expires_repeated = 1;
        return;
    }
    if (cache_date_parse(v, now, &t) == PT_OK)
        out->expires = t;
    else
        out->expires_invalid = 1;
}

static void resp_header(const struct http_header *hd, int64_t now,
                        struct cache_response *out, int *seen_age)
{
    struct pt_str n = hd->name;

    if (pt_str_ieq(n, "cache-control"))
        cache_control_parse(hd->value, &out->cc);
    else if (pt_str_ieq(n, "date"))
        resp_date(hd->value, now, &out->date);
    else if (pt_str_ieq(n, "expires"))
        resp_expires(hd->value, now, out);
    else if (pt_str_ieq(n, "last-modified"))
        resp_date(hd->value, now, &out->last_modified);
    else if (pt_str_ieq(n, "age") && !(*seen_age)++)
        (void)delta_parse(hd->value, &out->age); /* invalid: stays 0 */
    else if (pt_str_ieq(n, "etag") && out->etag.len == 0)
        out->etag = hd->value;
    else if (pt_str_ieq(n, "set-cookie"))
        out->has_set_cookie = 1;
    else if (pt_str_ieq(n, "vary"))
        out->vary_star |= http_list_has_token(hd->value, "*");
    else if (pt_str_ieq(n, "content-range"))
        out->has_content_range = 1;
}

void cache_response_read(int status, const struct http_header *h, size_t n,
                         int64_t response_time, struct cache_response *out)
{
    int seen_age = 0;

    memset(out, 0, sizeof(*out));
    out->status = status;
    cache_control_init(&out->cc);
    out->date = CACHE_TIME_NONE;
    out->expires = CACHE_TIME_NONE;
    out->last_modified = CACHE_TIME_NONE;
    for (size_t i = 0; i < n; i++)
        resp_header(&h[i], response_time, out, &seen_age);
}

/* ---- storability (RFC 9111 3) ------------------------------------------ */

/*
 * Heuristically cacheable by default (RFC 9110 15.1), minus 206: this
 * cache stores whole responses only.
 */
static int status_heuristic(int s)
{
    return s == 200 || s == 203 || s == 204 || s == 300 || s == 301 ||
           s == 308 || s == 404 || s == 405 || s == 410 || s == 414 ||
           s == 501;
}

/* Statuses whose caching rules we know, for must-understand (5.2.2.3). */
static int status_understood(int s)
{
    return status_heuristic(s) || s == 302 || s == 303 || s == 307;
}

static int resp_explicit_freshness(const struct cache_response *r)
{
    return r->cc.max_age != CACHE_DELTA_NONE ||
           r->cc.s_maxage != CACHE_DELTA_NONE || r->cc.freshness_invalid ||
           r->expires != CACHE_TIME_NONE || r->expires_invalid ||
           r->expires_repeated;
}

/* Why the response itself may not be stored, or NULL. */
static const char *resp_unstorable(const struct cache_response *r)
{
    if (r->status < 200 || r->status > 599)
        return "status not final";
    if (r->status == 206 || r->has_content_range)
        return "partial content";
    if (r->status == 304)
        return "not modified";
    if (r->cc.no_store)
        return "response no-store";
    if (r->cc.private)
        return "private";
    if (r->cc.must_understand && !status_understood(r->status))
        return "must-understand with unknown status";
    if (r->vary_star)
        return "Vary: *";
    if (!resp_explicit_freshness(r) && !r->cc.public &&
        !status_heuristic(r->status))
        return "no freshness information";
    return NULL;
}

/*
 * RFC 9111 3.5: a shared cache stores answers to authorised requests
 * only when the origin says so.  Set-Cookie is our own rule: storing it
 * would hand one user's cookie to everyone, so only an explicit "public"
 * or s-maxage (the origin addressing shared caches) allows it.
 */
static const char *exchange_unstorable(const struct cache_request *q,
                                       const struct cache_response *r)
{
    if (q->has_authorization && !r->cc.public &&
        r->cc.s_maxage == CACHE_DELTA_NONE && !r->cc.must_revalidate)
        return "Authorization";
    if (r->has_set_cookie && !r->cc.public &&
        r->cc.s_maxage == CACHE_DELTA_NONE)
        return "Set-Cookie";
    return NULL;
}

enum cache_storability cache_storable(const struct cache_request *req,
                                const struct cache_response *resp,
                                const char **why)
{
    const char *reason = NULL;

    if (req->method != HTTP_M_GET && req->method != HTTP_M_HEAD)
        reason = "method not cacheable";
    else if (req->cc.no_store)
        reason = "request no-store";
    else if ((reason = resp_unstorable(resp)) == NULL)
        reason = exchange_unstorable(req, resp);
    if (why != NULL)
        *why = reason;
    if (reason != NULL)
        return CACHE_STORE_NO;
    return req->method == HTTP_M_HEAD ? CACHE_STORE_HEAD_ONLY
                                      : CACHE_STORE_YES;
}

/* ---- freshness and age (RFC 9111 4.2) ---------------------------------- */

/* 4.2.2: a fraction (10%) of the time since Last-Modified, capped. */
static int64_t lifetime_heuristic(const struct cache_response *r, int64_t date,
                                  const struct cache_lifetime_opts *o)
{
    if (o == NULL || o->heuristic_max <= 0 ||
        r->last_modified == CACHE_TIME_NONE)
        return 0;
    return PT_MIN(span(date, r->last_modified) / 10, o->heuristic_max);
}

int64_t cache_freshness_lifetime(const struct cache_response *resp,
                                 int64_t response_time,
                                 const struct cache_lifetime_opts *opts)
{
    const struct cache_control *cc = &resp->cc;
    int64_t date = resp->date != CACHE_TIME_NONE ? resp->date : response_time;
    int64_t h;

    if (cc->freshness_invalid)
        return 0;
    if (cc->s_maxage != CACHE_DELTA_NONE) /* shared caches only: 5.2.2.10 */
        return cc->s_maxage;
    if (cc->max_age != CACHE_DELTA_NONE) /* Expires is then ignored (5.3) */
        return cc->max_age;
    if (resp->expires_invalid || resp->expires_repeated)
        return 0;
    if (resp->expires != CACHE_TIME_NONE)
        return span(resp->expires, date);
    if (!status_heuristic(resp->status) && !cc->public)
        return 0;
    if ((h = lifetime_heuristic(resp, date, opts)) > 0)
        return h;
    if (opts != NULL && opts->forced_ttl >= 0)
        return opts->forced_ttl;
    return 0;
}

int64_t cache_age_initial(const struct cache_response *resp,
                          int64_t request_time, int64_t response_time)
{
    int64_t date = resp->date != CACHE_TIME_NONE ? resp->date : response_time;
    int64_t apparent_age = span(response_time, date);
    int64_t response_delay = span(response_time, request_time);
    int64_t corrected_age_value = sat_add(resp->age, response_delay);

    return PT_MAX(apparent_age, corrected_age_value);
}

int64_t cache_age_current(int64_t initial_age, int64_t response_time,
                          int64_t now)
{
    int64_t resident_time = span(now, response_time);

    return sat_add(PT_MAX(initial_age, (int64_t)0), resident_time);
}

/* ---- reuse (RFC 9111 4, 4.2.4, 5.2) ------------------------------------ */

/*
 * Directives that forbid serving stale at all (4.2.4): must-revalidate,
 * and for a shared cache proxy-revalidate and s-maxage (5.2.2.10 gives
 * s-maxage proxy-revalidate's meaning).  no-cache is handled earlier.
 */
static int stale_forbidden(const struct cache_control *stored)
{
    return stored->must_revalidate || stored->proxy_revalidate ||
           stored->s_maxage != CACHE_DELTA_NONE;
}

static enum cache_reuse reuse_stale(const struct cache_control *req,
                                    const struct cache_control *stored,
                                    int64_t staleness)
{
    if (stale_forbidden(stored))
        return CACHE_STALE_REVALIDATE;
    /* min-fresh asks for freshness; max-age without max-stale refuses
       stale responses (5.2.1.1, 5.2.1.3) */
    if (req->min_fresh != CACHE_DELTA_NONE ||
        (req->max_age != CACHE_DELTA_NONE &&
         req->max_stale == CACHE_DELTA_NONE))
        return CACHE_STALE_REVALIDATE;
    /* preferred to max-stale: it also refreshes the copy */
    if (stored->stale_while_revalidate != CACHE_DELTA_NONE &&
        staleness <= stored->stale_while_revalidate)
        return CACHE_STALE_WHILE_REVALIDATE;
    if (req->max_stale != CACHE_DELTA_NONE && staleness <= req->max_stale)
        return CACHE_STALE_OK;
    return CACHE_STALE_REVALIDATE;
}

static enum cache_reuse reuse_decide(const struct cache_control *req,
                                     const struct cache_control *stored,
                                     int64_t lifetime, int64_t age)
{
    if (req->max_age != CACHE_DELTA_NONE && age > req->max_age)
        return CACHE_STALE_REVALIDATE;
    if (lifetime > age) { /* fresh: 4.2 */
        if (req->min_fresh != CACHE_DELTA_NONE &&
            lifetime - age < req->min_fresh)
            return CACHE_STALE_REVALIDATE;
        return CACHE_FRESH;
    }
    return reuse_stale(req, stored, span(age, lifetime));
}

enum cache_reuse cache_reuse(const struct cache_control *req,
                             const struct cache_control *stored,
                             int64_t lifetime, int64_t current_age)
{
    enum cache_reuse r;

    /* only-if-cached (5.2.1.7): whatever needs the origin becomes 504 */
    if (req->no_cache || stored->no_cache)
        return req->only_if_cached ? CACHE_ONLY_IF_CACHED_MISS
                                   : CACHE_MUST_REVALIDATE;
    r = reuse_decide(req, stored, lifetime, current_age);
    if (r == CACHE_STALE_REVALIDATE && req->only_if_cached)
        return CACHE_ONLY_IF_CACHED_MISS;
    return r;
}

/*
 * RFC 5861 4: the larger of the request's and the response's windows.
 * The directives that forbid stale (4.2.4) and a client's no-cache win
 * over it: those parties asked never to see an unvalidated copy.
 */
int cache_stale_if_error(const struct cache_control *req,
                         const struct cache_control *stored, int64_t lifetime,
                         int64_t current_age)
{
    int64_t window = PT_MAX(req->stale_if_error, stored->stale_if_error);

    if (req->no_cache || stored->no_cache || stale_forbidden(stored))
        return 0;
    if (lifetime > current_age)
        return 1;
    return window != CACHE_DELTA_NONE && span(current_age, lifetime) <= window;
}

/* ---- validators and conditionals (RFC 9110 8.8.3, 13) ------------------ */

struct etag {
    struct pt_str opaque; /* with its quotes */
    int weak;
};

/* etagc = %x21 / %x23-7E / obs-text */
static int char_etagc(char c)
{
    unsigned char u = (unsigned char)c;

    return u == 0x21 || (u >= 0x23 && u != 0x7f);
}

/* entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, from *pp; advances. */
static int etag_next(const char **pp, const char *end, struct etag *t)
{
    const char *p = *pp;
    const char *q;

    t->weak = end - p >= 2 && p[0] == 'W' && p[1] == '/';
    if (t->weak)
        p += 2;
    if (p == end || *p != '"')
        return 0;
    for (q = p + 1; q < end && char_etagc(*q); q++)
        ;
    if (q == end || *q != '"')
        return 0;
    t->opaque = str_make(p, q + 1);
    *pp = q + 1;
    return 1;
}

/* A whole field value that is exactly one entity-tag. */
static int etag_parse(struct pt_str v, struct etag *t)
{
    const char *p = v.p;

    return v.len > 0 && etag_next(&p, v.p + v.len, t) && p == v.p + v.len;
}

static int etag_weak_eq(const struct etag *a, const struct etag *b)
{
    return str_cmp(a->opaque, b->opaque) == 0;
}

static int etag_strong_eq(const struct etag *a, const struct etag *b)
{
    return !a->weak && !b->weak && etag_weak_eq(a, b);
}

/* If-None-Match = "*" / #entity-tag; weak comparison (13.1.2).  Members
   that do not parse are skipped. */
static int inm_matches(struct pt_str v, const struct etag *stored)
{
    const char *p = v.p;
    const char *end = v.p + v.len;
    struct etag t;

    if (pt_str_eq(v, "*"))
        return 1; /* we hold a representation */
    while (p < end) {
        while (p < end && (char_ows(*p) || *p == ','))
            p++;
        if (p == end)
            break;
        if (etag_next(&p, end, &t)) {
            if (stored != NULL && etag_weak_eq(&t, stored))
                return 1;
        } else {
            p = cc_skip_element(p, end);
        }
    }
    return 0;
}

/* 13.1.3: one valid date, not in the future, or the field is ignored. */
static int ims_evaluate(const struct http_header *h, size_t n,
                        int64_t last_modified, int64_t now)
{
    const struct http_header *ims =
        http_header_find(h, n, "if-modified-since");
    int64_t t;

    if (ims == NULL || header_count(h, n, "if-modified-since") != 1 ||
        cache_date_parse(ims->value, now, &t) != PT_OK || t > now)
        return 200;
    if (last_modified == CACHE_TIME_NONE)
        return 200;
    return last_modified <= t ? 304 : 200;
}

int cache_conditional(enum http_method method, const struct http_header *req,
                      size_t n, struct pt_str etag, int64_t last_modified,
                      int64_t now)
{
    struct etag stored;
    int has_etag = etag_parse(etag, &stored);
    int has_inm = 0;

    /* only GET and HEAD are answered from the cache */
    if (method != HTTP_M_GET && method != HTTP_M_HEAD)
        return 200;
    for (size_t i = 0; i < n; i++) {
        if (!pt_str_ieq(req[i].name, "if-none-match"))
            continue;
        has_inm = 1;
        if (inm_matches(req[i].value, has_etag ? &stored : NULL))
            return 304;
    }
    if (has_inm) /* 13.2.2: If-Modified-Since is then not evaluated */
        return 200;
    return ims_evaluate(req, n, last_modified, now);
}

int cache_validators(const struct http_header *stored, size_t n, int64_t now,
                     struct cache_validators *out)
{
    const struct http_header *et = http_header_find(stored, n, "etag");
    const struct http_header *lm =
        http_header_find(stored, n, "last-modified");
    struct etag t;
    int64_t when;
    int count = 0;

    memset(out, 0, sizeof(*out));
    if (et != NULL && etag_parse(et->value, &t)) {
        out->if_none_match = et->value;
        count++;
    }
    if (lm != NULL && cache_date_parse(lm->value, now, &when) == PT_OK) {
        out->if_modified_since = lm->value;
        count++;
    }
    return count;
}

static int header_date(const struct http_header *h, size_t n, const char *name,
                       int64_t now, int64_t *out)
{
    const struct http_header *f = http_header_find(h, n, name);

    return f != NULL && cache_date_parse(f->value, now, out) == PT_OK;
}

static int header_etag(const struct http_header *h, size_t n, struct etag *t)
{
    const struct http_header *f = http_header_find(h, n, "etag");

    return f != NULL && etag_parse(f->value, t);
}

/*
 * 4.3.4: a strong ETag selects by strong comparison, a weak one by weak
 * comparison, else Last-Modified must be equal.  A 304 with no validator
 * at all applies: we keep one response per key and only send validators
 * taken from it, so the 304 can answer nothing else (the RFC's concern
 * is validators from elsewhere).
 */
int cache_304_applies(const struct http_header *stored, size_t nstored,
                      const struct http_header *h304, size_t n304, int64_t now)
{
    struct etag new_tag, old_tag;
    int64_t new_lm, old_lm;
    int has_old = header_etag(stored, nstored, &old_tag);

    if (header_etag(h304, n304, &new_tag)) {
        if (!has_old)
            return 0;
        return new_tag.weak ? etag_weak_eq(&new_tag, &old_tag)
                            : etag_strong_eq(&new_tag, &old_tag);
    }
    if (header_date(h304, n304, "last-modified", now, &new_lm))
        return header_date(stored, nstored, "last-modified", now, &old_lm) &&
               old_lm == new_lm;
    return 1;
}

/* ---- stored header fields (RFC 9111 3.1, 3.2) -------------------------- */

/*
 * Hop-by-hop fields (RFC 9110 7.6.1) are removed before forwarding, so
 * before storage; proxy-specific ones MUST NOT be stored (3.1).
 */
static const char *const unstored_fields[] = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "trailer",
    "proxy-authenticate",
    "proxy-authentication-info",
    "proxy-authorization",
};

int cache_header_storable(struct pt_str name, const struct http_header *h,
                          size_t n)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(unstored_fields); i++)
        if (pt_str_ieq(name, unstored_fields[i]))
            return 0;
    /* fields named by Connection are hop-by-hop too (RFC 9110 7.6.1) */
    for (size_t i = 0; i < n; i++)
        if (pt_str_ieq(h[i].name, "connection") && list_has(h[i].value, name))
            return 0;
    return 1;
}

/*
 * 3.2: every field of the 304 replaces the stored ones, except those not
 * stored at all (3.1), Content-Length (MUST), and Content-Range, which
 * describes a body a 304 does not have (MAY).  Content-Encoding and
 * Content-Type are updated: we store the bytes as received, so nothing
 * was derived from them.
 */
int cache_header_updatable(struct pt_str name, const struct http_header *h304,
                           size_t n304)
{
    if (pt_str_ieq(name, "content-length") ||
        pt_str_ieq(name, "content-range"))
        return 0;
    return cache_header_storable(name, h304, n304);
}

/* ---- hosts and origins ------------------------------------------------- */

static int host_same(struct pt_str a, struct pt_str b, struct pt_str scheme)
{
    struct pt_str an, ap, bn, bp;
    int64_t pa, pb;

    host_split(a, &an, &ap);
    host_split(b, &bn, &bp);
    pa = port_value(ap, scheme);
    pb = port_value(bp, scheme);
    return an.len > 0 && str_ieq(an, bn) && pa >= 0 && pa == pb;
}

/* ---- invalidation (RFC 9111 4.4) --------------------------------------- */

static int method_safe(enum http_method m)
{
    return m == HTTP_M_GET || m == HTTP_M_HEAD || m == HTTP_M_OPTIONS ||
           m == HTTP_M_TRACE;
}

/* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" */
static const char *uri_scheme_end(struct pt_str v)
{
    size_t i = 0;

    if (v.len == 0 || !char_alpha(v.p[0]))
        return NULL;
    while (i < v.len && (char_alpha(v.p[i]) || char_digit(v.p[i]) ||
                         v.p[i] == '+' || v.p[i] == '-' || v.p[i] == '.'))
        i++;
    return i < v.len && v.p[i] == ':' ? v.p + i : NULL;
}

/* path [ "?" query ] [ "#" fragment ] from p; an empty path is "/". */
static void uri_path_query(const char *p, const char *end, struct cache_uri *u)
{
    const char *hash = memchr(p, '#', (size_t)(end - p));
    const char *qm;

    end = hash ? hash : end;
    qm = memchr(p, '?', (size_t)(end - p));
    u->path = str_make(p, qm ? qm : end);
    u->query = qm ? str_make(qm + 1, end) : str_make(end, end);
    if (u->path.len == 0)
        u->path = PT_STR("/");
}

/*
 * A Location / Content-Location on the target's origin, as path+query.
 * Relative references other than absolute paths would need resolving
 * into a buffer, so they are left out (invalidating them is a MAY).
 */
static int uri_same_origin(struct pt_str v, const struct cache_key_in *t,
                           struct cache_uri *u)
{
    const char *end = v.p + v.len;
    const char *p = v.p;
    const char *se = uri_scheme_end(v);

    if (se != NULL) {
        if (!str_ieq(str_make(v.p, se), scheme_of(t)))
            return 0;
        p = se + 1;
    }
    if (end - p >= 2 && p[0] == '/' && p[1] == '/') {
        const char *a = p + 2;
        const char *ae = a;
        while (ae < end && *ae != '/' && *ae != '?' && *ae != '#')
            ae++;
        const char *at = memrchr(a, '@', (size_t)(ae - a));
        if (!host_same(str_make(at ? at + 1 : a, ae), t->host, t->scheme))
            return 0;
        p = ae;
    } else if (se != NULL || p == end || *p != '/') {
        return 0;
    }
    uri_path_query(p, end, u);
    return 1;
}

static int uri_eq(const struct cache_uri *a, const struct cache_uri *b)
{
    return str_cmp(a->path, b->path) == 0 && str_cmp(a->query, b->query) == 0;
}

int cache_invalidations(enum http_method method, int status,
                        const struct cache_key_in *target,
                        const struct http_header *resp, size_t n,
                        struct cache_uri out[3])
{
    static const char *const fields[] = {"location", "content-location"};
    int count = 1;

    if (method_safe(method) || status < 200 || status > 399)
        return 0;
    out[0].path = target->path;
    out[0].query = target->query;
    for (size_t f = 0; f < PT_ARRAY_LEN(fields); f++) {
        const struct http_header *h = http_header_find(resp, n, fields[f]);
        struct cache_uri u;
        int dup = 0;

        if (h == NULL || !uri_same_origin(h->value, target, &u))
            continue;
        for (int i = 0; i < count; i++)
            dup |= uri_eq(&u, &out[i]);
        if (!dup)
            out[count++] = u;
    }
    return count;
}
