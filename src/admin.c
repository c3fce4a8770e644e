/*
 * admin.c -- /metrics, /status and /healthz on the admin listener.
 * Every figure comes from the shared-memory zones, so any worker answers
 * for all of them.  Calls: stats.c, shm.c, conf.h, libevent buffers.
 */
#include "admin.h"

#include <ctype.h>
#include <strings.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "cache_key.h"
#include "config.h"
#include "shm.h"
#include "stats.h"

static uint64_t ld(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* A label value with Prometheus' escapes: backslash, quote, newline. */
static void admin_label(struct evbuffer *b, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\\' || s[i] == '"')
            evbuffer_add_printf(b, "\\%c", s[i]);
        else if (s[i] == '\n')
            evbuffer_add(b, PT_LIT("\\n"));
        else
            evbuffer_add(b, &s[i], 1);
    }
}

static void admin_type(struct evbuffer *b, const char *name, const char *type,
                       const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                        type);
}

static void admin_requests(struct evbuffer *b)
{
    static const char *const cls[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    const struct stats_global *g = stats_global();
    const struct stats_route *r;
    size_t i = 0;

    admin_type(b, "portico_requests_total", "counter",
               "Requests answered, by route and status class.");
    while ((r = stats_route_next(&i)) != NULL) {
        for (int c = 0; c < STATS_CLASSES; c++) {
            evbuffer_add(b, PT_LIT("portico_requests_total{route=\""));
            admin_label(b, r->key, strlen(r->key));
            evbuffer_add_printf(b, "\",code=\"%s\"} %llu\n", cls[c],
                                (unsigned long long)ld(&r->requests[c]));
        }
    }
    for (int c = 0; c < STATS_CLASSES; c++)
        evbuffer_add_printf(
            b, "portico_requests_total{route=\"(none)\",code=\"%s\"} %llu\n",
            cls[c], (unsigned long long)ld(&g->requests_unrouted[c]));
}

/* "group address" key into its two labels. */
static void admin_server_labels(struct evbuffer *b, const char *key)
{
    const char *sp = strchr(key, ' ');
    size_t glen = sp ? (size_t)(sp - key) : strlen(key);

    evbuffer_add(b, PT_LIT("upstream=\""));
    admin_label(b, key, glen);
    evbuffer_add(b, PT_LIT("\",server=\""));
    if (sp)
        admin_label(b, sp + 1, strlen(sp + 1));
    evbuffer_add(b, PT_LIT("\""));
}

static void admin_histograms(struct evbuffer *b)
{
    const struct stats_server *s;
    size_t i = 0;

    admin_type(b, "portico_upstream_response_seconds", "histogram",
               "Time from sending a request upstream to its response head.");
    while ((s = stats_server_next(&i)) != NULL) {
        uint64_t cum = 0;
        for (int k = 0; k <= STATS_BUCKETS; k++) {
            cum += ld(&s->buckets[k]);
            evbuffer_add(b, PT_LIT("portico_upstream_response_seconds_bucket{"));
            admin_server_labels(b, s->key);
            if (k < STATS_BUCKETS)
                evbuffer_add_printf(b, ",le=\"%g\"} %llu\n",
                                    stats_bucket_bounds[k],
                                    (unsigned long long)cum);
            else
                evbuffer_add_printf(b, ",le=\"+Inf\"} %llu\n",
                                    (unsigned long long)cum);
        }
        evbuffer_add(b, PT_LIT("portico_upstream_response_seconds_sum{"));
        admin_server_labels(b, s->key);
        evbuffer_add_printf(b, "} %.6f\n", (double)ld(&s->sum_us) / 1e6);
        evbuffer_add(b, PT_LIT("portico_upstream_response_seconds_count{"));
        admin_server_labels(b, s->key);
        evbuffer_add_printf(b, "} %llu\n", (unsigned long long)cum);
    }
}

static int admin_server_up(const struct conf_upstream *u,
                           const struct conf_server *s)
{
    struct shm_health *h = shm_health_find(u->name, s->address);

    if (h == NULL)
        return 1;
    return !atomic_load(&h->active_down) &&
           atomic_load(&h->down_until) <= pt_clock_ms(CLOCK_MONOTONIC);
}

static void admin_health(struct evbuffer *b, const struct conf *conf)
{
    admin_type(b, "portico_upstream_up", "gauge",
               "1 when the server is usable, 0 when health checks or "
               "failures took it out.");
    for (size_t i = 0; i < conf->nupstreams; i++) {
        const struct conf_upstream *u = &conf->upstreams[i];
        for (size_t k = 0; k < u->nservers; k++) {
            evbuffer_add(b, PT_LIT("portico_upstream_up{upstream=\""));
            admin_label(b, u->name, strlen(u->name));
            evbuffer_add(b, PT_LIT("\",server=\""));
            admin_label(b, u->servers[k].address,
                        strlen(u->servers[k].address));
            evbuffer_add_printf(b, "\"} %d\n",
                                admin_server_up(u, &u->servers[k]));
        }
    }
}

static void admin_counter(struct evbuffer *b, const char *name,
                          const char *type, const char *help, uint64_t v)
{
    admin_type(b, name, type, help);
    evbuffer_add_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static void admin_cache(struct evbuffer *b, const struct stats_global *g)
{
    struct cache_stats cs = {0};

    admin_counter(b, "portico_cache_hits_total", "counter",
                  "Requests answered from the shared cache.",
                  ld(&g->cache_hits));
    admin_counter(b, "portico_cache_misses_total", "counter",
                  "Requests fetched upstream to fill a cache entry.",
                  ld(&g->cache_misses));
    admin_counter(b, "portico_cache_stale_total", "counter",
                  "Entries found stale and fetched anew.", ld(&g->cache_stale));
    admin_counter(b, "portico_cache_collapsed_total", "counter",
                  "Requests that read along another request's fill.",
                  ld(&g->cache_collapsed));
    admin_counter(b, "portico_cache_uncacheable_total", "counter",
                  "Responses the cache policy did not store.",
                  ld(&g->cache_uncacheable));
    if (cache_zone())
        cache_store_stats(cache_zone(), &cs);
    admin_counter(b, "portico_cache_evictions_total", "counter",
                  "Entries evicted to make room (least recently used first).",
                  cs.evictions);
    admin_counter(b, "portico_cache_entries", "gauge",
                  "Entries in the cache zone.", cs.entries);
    admin_counter(b, "portico_cache_bytes_used", "gauge",
                  "Bytes of the zone's blocks in use.", cs.bytes_used);
    admin_counter(b, "portico_cache_bytes_total", "gauge",
                  "Bytes of blocks the zone has.", cs.bytes_total);
    admin_counter(b, "portico_cache_pins_returned_total", "counter",
                  "Pins on entries held by workers that died, given back "
                  "by the master.",
                  cs.pins_returned);
    admin_counter(b, "portico_cache_pins_untracked_total", "counter",
                  "Pins taken while the zone's pin ledger was full: lost "
                  "if their worker dies.",
                  cs.pins_untracked);
}

static void admin_metrics(const struct conf *conf, struct evbuffer *b)
{
    const struct stats_global *g = stats_global();

    admin_requests(b);
    admin_counter(b, "portico_bytes_received_total", "counter",
                  "Bytes read from clients.", ld(&g->bytes_in));
    admin_counter(b, "portico_bytes_sent_total", "counter",
                  "Bytes written to clients.", ld(&g->bytes_out));
    admin_type(b, "portico_connections_open", "gauge",
               "Client connections open now.");
    evbuffer_add_printf(b, "portico_connections_open %lld\n",
                        (long long)atomic_load(&g->connections_open));
    admin_counter(b, "portico_connections_total", "counter",
                  "Client connections accepted.", ld(&g->connections_total));
    admin_histograms(b);
    admin_health(b, conf);
    admin_type(b, "portico_upstream_retries_total", "counter",
               "Requests sent again: on a fresh connection after a pooled "
               "one was closed (stale_connection), or to another server.");
    evbuffer_add_printf(
        b,
        "portico_upstream_retries_total{reason=\"stale_connection\"} %llu\n"
        "portico_upstream_retries_total{reason=\"next_server\"} %llu\n",
        (unsigned long long)ld(&g->retries_stale),
        (unsigned long long)ld(&g->retries_next_server));
    admin_type(b, "portico_reloads_total", "counter",
               "Configuration reloads (SIGHUP), applied or rejected.");
    evbuffer_add_printf(b,
                        "portico_reloads_total{result=\"ok\"} %llu\n"
                        "portico_reloads_total{result=\"rejected\"} %llu\n",
                        (unsigned long long)ld(&g->reloads_ok),
                        (unsigned long long)ld(&g->reloads_rejected));
    admin_cache(b, g);
    admin_counter(b, "portico_workers", "gauge", "Worker processes running.",
                  ld(&g->workers));
    admin_counter(b, "portico_config_generation", "gauge",
                  "The configuration generation being served.",
                  ld(&g->generation));
}

static void admin_json_str(struct evbuffer *b, const char *s)
{
    evbuffer_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            evbuffer_add_printf(b, "\\%c", c);
        else if (c < 0x20)
            evbuffer_add_printf(b, "\\u%04x", c);
        else
            evbuffer_add(b, s, 1);
    }
    evbuffer_add(b, "\"", 1);
}

static void admin_status(const struct conf *conf, struct evbuffer *b)
{
    const struct stats_global *g = stats_global();
    uint64_t requests = 0;
    const struct stats_route *r;
    size_t it = 0;

    while ((r = stats_route_next(&it)) != NULL)
        for (int c = 0; c < STATS_CLASSES; c++)
            requests += ld(&r->requests[c]);
    for (int c = 0; c < STATS_CLASSES; c++)
        requests += ld(&g->requests_unrouted[c]);
    evbuffer_add_printf(
        b,
        "{\"version\":\"%s\",\"master_pid\":%d,\"generation\":%llu,"
        "\"workers\":%llu,\"uptime_seconds\":%llu,"
        "\"connections_open\":%lld,\"requests_total\":%llu,\"upstreams\":[",
        PACKAGE_VERSION, (int)getppid(), (unsigned long long)ld(&g->generation),
        (unsigned long long)ld(&g->workers),
        (unsigned long long)((uint64_t)time(NULL) - ld(&g->started_unix)),
        (long long)atomic_load(&g->connections_open),
        (unsigned long long)requests);
    for (size_t i = 0; i < conf->nupstreams; i++) {
        const struct conf_upstream *u = &conf->upstreams[i];
        evbuffer_add_printf(b, "%s{\"name\":", i ? "," : "");
        admin_json_str(b, u->name);
        evbuffer_add(b, PT_LIT(",\"servers\":["));
        for (size_t k = 0; k < u->nservers; k++) {
            evbuffer_add_printf(b, "%s{\"address\":", k ? "," : "");
            admin_json_str(b, u->servers[k].address);
            evbuffer_add_printf(b, ",\"up\":%s}",
                                admin_server_up(u, &u->servers[k]) ? "true"
                                                                    : "false");
        }
        evbuffer_add(b, PT_LIT("]}"));
    }
    evbuffer_add(b, PT_LIT("]}\n"));
}

/* The value of query parameter name, percent-decoded into buf; -1 when
 * absent or too long. */
static int admin_param(struct pt_str q, const char *name, char *buf,
                       size_t cap)
{
    size_t nl = strlen(name), i = 0;

    while (i < q.len) {
        size_t end = i;
        while (end < q.len && q.p[end] != '&')
            end++;
        if (end - i > nl && q.p[i + nl] == '=' &&
            memcmp(q.p + i, name, nl) == 0) {
            size_t n = 0;
            for (size_t k = i + nl + 1; k < end && n + 1 < cap; k++) {
                if (q.p[k] == '%' && k + 2 < end && isxdigit(q.p[k + 1]) &&
                    isxdigit(q.p[k + 2])) {
                    char hex[3] = {q.p[k + 1], q.p[k + 2], 0};
                    buf[n++] = (char)strtol(hex, NULL, 16);
                    k += 2;
                } else {
                    buf[n++] = q.p[k] == '+' ? ' ' : q.p[k];
                }
            }
            buf[n] = '\0';
            return (int)n;
        }
        if (end - i == nl && memcmp(q.p + i, name, nl) == 0) {
            buf[0] = '\0';
            return 0;
        }
        i = end + 1;
    }
    return -1;
}

/* "http://host[:port]/path?query" into the key the cache stores it under
 * (as a GET, without the variant part).  Returns its length or -1. */
static int admin_url_key(const char *url, char *key, size_t cap)
{
    struct cache_key_in in = {PT_STR("GET"), {0}, {0}, {0}, {0}, NULL, 0};
    const char *s = strstr(url, "://"), *host, *path, *q;

    if (s == NULL)
        return -1;
    in.scheme = (struct pt_str){url, (size_t)(s - url)};
    host = s + 3;
    path = strchr(host, '/');
    if (path == NULL)
        path = host + strlen(host);
    in.host = (struct pt_str){host, (size_t)(path - host)};
    q = strchr(path, '?');
    in.path = (struct pt_str){*path ? path : "/",
                              *path ? (size_t)((q ? q : path + strlen(path)) -
                                               path)
                                    : 1};
    if (q)
        in.query = (struct pt_str){q + 1, strlen(q + 1)};
    return cache_key_build(&in, NULL, key, cap);
}

/* Does a stored head carry tag in Surrogate-Key (space-separated) or
 * Cache-Tag (comma-separated)? */
static int admin_has_tag(const char *head, size_t len, void *arg)
{
    const char *tag = arg, *end = head + len;
    size_t tl = strlen(tag);

    for (const char *line = head; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        const char *le = eol ? eol : end;
        size_t nl = 0;
        if ((size_t)(le - line) > 14 && strncasecmp(line, "Surrogate-Key:", 14) == 0)
            nl = 14;
        else if ((size_t)(le - line) > 10 && strncasecmp(line, "Cache-Tag:", 10) == 0)
            nl = 10;
        for (const char *p = line + nl; nl && p < le;) {
            while (p < le && (*p == ' ' || *p == ',' || *p == '\t' || *p == '\r'))
                p++;
            const char *t = p;
            while (p < le && *p != ' ' && *p != ',' && *p != '\t' && *p != '\r')
                p++;
            if ((size_t)(p - t) == tl && memcmp(t, tag, tl) == 0)
                return 1;
        }
        line = le + 1;
    }
    return 0;
}

/*
 * POST /cache/purge?url=URL | prefix=URL | tag=TAG | all [&soft]: drop (or, soft,
 * make stale) the entries of one URL and all its variants, of every URL
 * under a prefix, or all of them.
 */
static void admin_purge(const struct http_request *r,
                        struct admin_reply *reply)
{
    struct cache_store *z = cache_zone();
    char url[2048], key[CACHE_KEY_MAX + 2];
    int soft = admin_param(r->query, "soft", url, sizeof(url)) >= 0;
    size_t n = 0;
    int klen;

    if (z == NULL) {
        reply->status = 400;
        evbuffer_add(reply->body, PT_LIT("no cache: configured\n"));
        return;
    }
    if (admin_param(r->query, "all", url, sizeof(url)) >= 0) {
        n = soft ? cache_expire(z, PT_STR(""), 0)
                 : cache_purge_prefix(z, PT_STR(""));
    } else if (admin_param(r->query, "url", url, sizeof(url)) > 0 &&
               (klen = admin_url_key(url, key, sizeof(key) - 1)) > 0) {
        struct pt_str exact = {key, (size_t)klen};
        key[klen] = '\n'; /* and every variant: "KEY\n..." */
        struct pt_str variants = {key, (size_t)klen + 1};
        n = soft ? cache_expire(z, exact, 1) + cache_expire(z, variants, 0)
                 : (size_t)cache_purge(z, exact) +
                       cache_purge_prefix(z, variants);
    } else if (admin_param(r->query, "tag", url, sizeof(url)) > 0) {
        n = cache_purge_if(z, admin_has_tag, url, soft);
    } else if (admin_param(r->query, "prefix", url, sizeof(url)) > 0 &&
               (klen = admin_url_key(url, key, sizeof(key))) > 0) {
        struct pt_str pre = {key, (size_t)klen};
        n = soft ? cache_expire(z, pre, 0) : cache_purge_prefix(z, pre);
    } else {
        reply->status = 400;
        evbuffer_add(reply->body,
                     PT_LIT("usage: POST /cache/purge?url=URL | prefix=URL"
                            " | tag=TAG | all, and &soft to mark stale\n"));
        return;
    }
    reply->content_type = "application/json";
    evbuffer_add_printf(reply->body, "{\"purged\":%zu,\"soft\":%s}\n", n,
                        soft ? "true" : "false");
}

void admin_handle(const struct conf *conf, const struct http_request *r,
                  struct admin_reply *reply)
{
    struct pt_str p = r->path;

    reply->status = 200;
    reply->content_type = "text/plain; charset=utf-8";
    if (pt_str_eq(p, "/cache/purge")) {
        if (r->method_id == HTTP_M_POST || r->method_id == HTTP_M_DELETE) {
            admin_purge(r, reply);
        } else {
            reply->status = 405;
            evbuffer_add(reply->body, PT_LIT("405: POST /cache/purge\n"));
        }
        return;
    }
    if (r->method_id != HTTP_M_GET && r->method_id != HTTP_M_HEAD) {
        reply->status = 405;
        evbuffer_add(reply->body, PT_LIT("405 Method Not Allowed\n"));
    } else if (pt_str_eq(p, "/metrics")) {
        reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
        admin_metrics(conf, reply->body);
    } else if (pt_str_eq(p, "/status")) {
        reply->content_type = "application/json";
        admin_status(conf, reply->body);
    } else if (pt_str_eq(p, "/healthz")) {
        evbuffer_add(reply->body, PT_LIT("ok\n"));
    } else {
        reply->status = 404;
        evbuffer_add(reply->body,
                     PT_LIT("404 Not Found: /metrics, /status, /healthz\n"));
    }
}

static int admin_match(const struct conf_allow *a, const uint8_t *addr,
                       int family)
{
    unsigned full = a->prefix / 8, rest = a->prefix % 8;

    if (a->family != family)
        return 0;
    if (memcmp(a->addr, addr, full) != 0)
        return 0;
    return rest == 0 ||
           ((a->addr[full] ^ addr[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

int admin_allowed(const struct conf *conf, const struct sockaddr *sa)
{
    const uint8_t *addr;
    uint8_t v4[4];
    int family = sa->sa_family;

    if (family == AF_INET) {
        addr = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else {
        addr = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)addr)) {
            memcpy(v4, addr + 12, 4); /* ::ffff:a.b.c.d is IPv4 */
            addr = v4;
            family = AF_INET;
        }
    }
    for (size_t i = 0; i < conf->admin.nallow; i++)
        if (admin_match(&conf->admin.allow[i], addr, family))
            return 1;
    return 0;
}
