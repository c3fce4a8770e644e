/*
 * cache.c -- the cache on the request path.
 *
 * A GET or HEAD on a route with cache: on is keyed (cache_key.c) and
 * looked up in the shared zone.  A fresh entry is served from it.  A
 * stale one stays while a new entry is filled beside it: the request
 * carries the stored validators, a 304 makes the stale copy fresh again,
 * an upstream failure may serve it (stale-if-error), a new response
 * replaces it.  A miss claims the key, so the response that comes back
 * is copied into the zone while it streams to the client; requests for a
 * key being filled read along, woken by the filling worker.  Unsafe
 * methods drop their URI's entries when they succeed.
 *
 * Stored object: the response head (status line and fields, without the
 * final empty line, without hop-by-hop fields and Age) then the body.
 *
 * A stale entry within its stale-while-revalidate window is served at
 * once while one refresh (a proxy exchange with no client) fills beside
 * it.
 *
 * A response that varies on request fields outside the route's key turns
 * the URL's entry into a marker that lists them; each variant is an entry
 * of its own, keyed by the URL's key and the request's values of those
 * fields (at most the route's max_variants of them per URL).
 *
 * Calls: cache_store.c, cache_policy.c, cache_key.c, http_parse.c.
 */
#include "cache.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cache_key.h"
#include "cache_policy.h"
#include "evio.h"
#include "route.h"
#include "stats.h"

static void cache_count(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

#define CACHE_MAX_STORED_HEADERS 128

static struct cache_store *zone;

/* ---- waking the workers that read along a fill ---- */

static int notify_fd = -1;
static int notify_slot = -1;
static int notify_master;

static socklen_t cache_notify_addr(struct sockaddr_un *a, int slot)
{
    int n;

    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    /* abstract: sun_path[0] is NUL, the name needs no file */
    n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1,
                 "portico-%d-%d", notify_master, slot);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                       (size_t)n);
}

int cache_notify_open(int slot)
{
    struct sockaddr_un a;
    socklen_t len;

    if (zone == NULL || slot < 0 || slot >= 64)
        return -1;
    notify_master = (int)getppid();
    notify_slot = slot;
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (notify_fd < 0)
        return -1;
    len = cache_notify_addr(&a, slot);
    if (bind(notify_fd, (struct sockaddr *)&a, len) < 0) {
        /* A retiring worker of this slot still holds the name: waiters
         * here fall back to their periodic check. */
        close(notify_fd);
        notify_fd = -1;
    }
    return notify_fd;
}

void cache_notify_drain(int fd)
{
    char buf[64];

    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
}

/* Wake every worker reading along x's entry (this one included). */
static void cache_notify(struct cache_xfer *x)
{
    uint64_t mask = zone ? cache_waiters(zone, &x->ref) : 0;
    struct sockaddr_un a;
    int fd = notify_fd;

    if (fd < 0) {
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return;
    }
    for (int k = 0; mask && k < 64; k++) {
        if (!(mask & ((uint64_t)1 << k)))
            continue;
        socklen_t len = cache_notify_addr(&a, k);
        sendto(fd, "w", 1, MSG_DONTWAIT, (struct sockaddr *)&a, len);
    }
    if (fd != notify_fd)
        close(fd);
}

void cache_zone_set(struct cache_store *s)
{
    int fd = s ? cache_store_file(s) : -1;

    if (s != zone)
        cache_head_forget(); /* they name entries of the old zone */
    zone = s;
    /* bodies go out from the zone's pages: the workers inherit this */
    evio_send_file(s, s ? cache_store_size(s) : 0, fd, CACHE_SPLICE_MIN);
}

/* Bytes of big bodies queued to be copied in this loop turn. */
static uint64_t turn_copied;

void cache_turn_end(void)
{
    turn_copied = 0;
}

struct cache_store *cache_zone(void)
{
    return zone;
}

static int cache_safe(enum http_method m)
{
    return m == HTTP_M_GET || m == HTTP_M_HEAD;
}

/* The key of r as a GET (HEAD shares it) into x->key. */
static int cache_make_key(struct cache_xfer *x, const struct conf_route *rt,
                          const struct http_request *r, int tls)
{
    struct pt_str drop[64], vary[64];
    struct cache_key_opts o = {rt->cache.sort_query, drop,
                               PT_MIN(rt->cache.ndrop_query, 64), vary,
                               PT_MIN(rt->cache.nheaders, 64), 1};
    struct cache_key_in in = {PT_STR("GET"),
                              tls ? PT_STR("https") : PT_STR("http"),
                              r->host, r->path, r->query, r->headers,
                              r->nheaders};
    char buf[CACHE_KEY_MAX];
    int n;

    for (size_t i = 0; i < o.ndrop; i++)
        drop[i] = (struct pt_str){rt->cache.drop_query[i],
                                  strlen(rt->cache.drop_query[i])};
    int has_ae = 0;
    for (size_t i = 0; i < o.nvary; i++) {
        vary[i] = (struct pt_str){rt->cache.headers[i],
                                  strlen(rt->cache.headers[i])};
        has_ae |= pt_str_ieq(vary[i], "Accept-Encoding");
    }
    /* The encoding is always part of the key (as br, gzip or identity):
     * a compressed copy never reaches a client that cannot read it. */
    if (!has_ae && o.nvary < 64)
        vary[o.nvary++] = PT_STR("Accept-Encoding");
    n = cache_key_build(&in, &o, buf, sizeof(buf));
    if (n <= 0)
        return PT_ERROR; /* too long a key: not cached */
    x->key = malloc((size_t)n);
    if (x->key == NULL)
        return PT_ERROR;
    memcpy(x->key, buf, (size_t)n);
    x->key_len = x->primary_len = (size_t)n;
    return PT_OK;
}

/* The first len bytes of an entry, copied out of the zone into dst
 * (they may span blocks).  PT_ERROR when they are not all there. */
static int cache_copy_out(struct cache_ref *ref, char *dst, size_t len)
{
    for (size_t n = 0; n < len;) {
        const void *p;
        int done;
        size_t k = cache_read(zone, ref, n, &p, &done);
        if (k == 0 || k == (size_t)-1)
            return PT_ERROR;
        k = PT_MIN(k, len - n);
        memcpy(dst + n, p, k);
        n += k;
    }
    return PT_OK;
}

/* ---- Vary beyond the route's key: markers and variants ---- */

#define CACHE_VARY_MAX 512 /* bytes of a marker's field list */
#define CACHE_VARY_FIELDS 16

/* A copy of the request's fields in one allocation (names and values
 * after the array), for a variant key made when the response says what
 * it varies on. */
static void cache_save_fields(struct cache_xfer *x,
                              const struct http_request *r)
{
    size_t bytes = r->nheaders * sizeof(struct http_header);
    struct http_header *h;
    char *p;

    for (size_t i = 0; i < r->nheaders; i++)
        bytes += r->headers[i].name.len + r->headers[i].value.len;
    h = malloc(bytes ? bytes : 1);
    if (h == NULL)
        return;
    p = (char *)(h + r->nheaders);
    for (size_t i = 0; i < r->nheaders; i++) {
        const struct http_header *f = &r->headers[i];
        memcpy(p, f->name.p, f->name.len);
        h[i].name = (struct pt_str){p, f->name.len};
        p += f->name.len;
        memcpy(p, f->value.p, f->value.len);
        h[i].value = (struct pt_str){p, f->value.len};
        p += f->value.len;
    }
    x->saved = h;
    x->nsaved = r->nheaders;
}

/* x->key becomes the key of the variant that the fields h select among
 * `fields` (the marker's list); x->vary keeps the list. */
static int cache_variant_key(struct cache_xfer *x,
                             const struct http_header *h, size_t nh,
                             const char *fields)
{
    char buf[CACHE_KEY_MAX];
    char *k, *v;
    int n;

    if (x->primary_len > sizeof(buf))
        return PT_ERROR;
    memcpy(buf, x->key, x->primary_len);
    n = cache_key_vary(h, nh, (struct pt_str){fields, strlen(fields)}, buf,
                       x->primary_len, sizeof(buf));
    if (n <= 0)
        return PT_ERROR;
    k = malloc((size_t)n);
    v = strdup(fields);
    if (k == NULL || v == NULL) {
        free(k);
        free(v);
        return PT_ERROR;
    }
    memcpy(k, buf, (size_t)n);
    free(x->key);
    free(x->vary);
    x->key = k;
    x->key_len = (size_t)n;
    x->vary = v;
    x->variant = 1;
    return PT_OK;
}

/* A marker's field list, copied out of the zone (NUL-terminated). */
static char *cache_marker_fields(const struct cache_ref *marker,
                                 const struct cache_meta *m)
{
    struct cache_ref ref = *marker; /* its own read cursor */
    size_t len = m->head_len;
    char *s;

    if (len == 0 || len > CACHE_VARY_MAX || (s = malloc(len + 1)) == NULL)
        return NULL;
    if (cache_copy_out(&ref, s, len) < 0) {
        free(s);
        return NULL;
    }
    s[len] = '\0';
    return s;
}

/*
 * The URL's entry x->ref is a marker: look the request's variant up
 * instead (claiming it when absent and claim is set).  A new variant
 * past the route's max_variants drops the URL's others first, so a
 * spread of field values cannot fill the zone.  Returns PT_ERROR when no
 * variant key can be made (nothing pinned then).
 */
static int cache_enter_variant(struct cache_xfer *x,
                               const struct conf_route *rt,
                               const struct http_request *r, int claim,
                               enum cache_found *found)
{
    struct cache_ref marker = x->ref;
    char *fields = cache_marker_fields(&marker, &x->meta);
    enum cache_found f;

    if (fields == NULL ||
        cache_variant_key(x, r->headers, r->nheaders, fields) < 0) {
        free(fields);
        cache_release(zone, &marker);
        return PT_ERROR;
    }
    free(fields);
    struct pt_str key = {x->key, x->key_len};
    f = cache_lookup(zone, key, 0, &x->ref, &x->meta);
    if (f == CACHE_MISS && claim) {
        if (cache_count_up(zone, &marker,
                           (uint16_t)PT_MAX(rt->cache.max_variants, 1)) ==
            0) {
            char pre[CACHE_KEY_MAX + 2];
            memcpy(pre, x->key, x->primary_len);
            memcpy(pre + x->primary_len, "\n*", 2);
            cache_purge_prefix(zone,
                               (struct pt_str){pre, x->primary_len + 2});
        }
        f = cache_lookup(zone, key, 1, &x->ref, &x->meta);
    }
    cache_release(zone, &marker);
    *found = f;
    return PT_OK;
}

/*
 * The Vary fields of resp that the route's key leaves out (it holds its
 * key.headers and, normalised, Accept-Encoding): lower-case, sorted,
 * without repeats, joined by ',' into buf.  Returns how many; -1 for
 * "Vary: *" (no request can match it), -2 for too many.
 */
static int cache_vary_fields(const struct conf_route *rt,
                             const struct http_response *resp, char *buf,
                             size_t cap)
{
    struct pt_str f[CACHE_VARY_FIELDS];
    int n = 0;
    size_t len = 0;

    for (size_t i = 0; i < resp->nheaders; i++) {
        if (!pt_str_ieq(resp->headers[i].name, "Vary"))
            continue;
        struct pt_str v = resp->headers[i].value;
        for (size_t a = 0, b; a < v.len; a = b + 1) {
            for (b = a; b < v.len && v.p[b] != ','; b++)
                ;
            struct pt_str t = {v.p + a, b - a};
            while (t.len && (t.p[0] == ' ' || t.p[0] == '\t'))
                t.p++, t.len--;
            while (t.len && (t.p[t.len - 1] == ' ' || t.p[t.len - 1] == '\t'))
                t.len--;
            if (t.len == 1 && t.p[0] == '*')
                return -1;
            int known = t.len == 0 || pt_str_ieq(t, "Accept-Encoding");
            for (size_t k = 0; !known && k < rt->cache.nheaders; k++)
                known = pt_str_ieq(t, rt->cache.headers[k]);
            for (int k = 0; !known && k < n; k++)
                known = f[k].len == t.len &&
                        strncasecmp(f[k].p, t.p, t.len) == 0;
            if (known)
                continue;
            if (n == CACHE_VARY_FIELDS)
                return -2;
            /* insertion sort, case-insensitively */
            int at = n;
            while (at > 0) {
                int c = strncasecmp(f[at - 1].p, t.p,
                                    PT_MIN(f[at - 1].len, t.len));
                if (c < 0 || (c == 0 && f[at - 1].len < t.len))
                    break;
                f[at] = f[at - 1];
                at--;
            }
            f[at] = t;
            n++;
        }
    }
    for (int k = 0; k < n; k++) {
        if (len + f[k].len + 2 > cap)
            return -2;
        if (k)
            buf[len++] = ',';
        for (size_t i = 0; i < f[k].len; i++)
            buf[len++] = pt_lower(f[k].p[i]);
    }
    buf[len] = '\0';
    return n;
}

/*
 * A stored head, copied out of the zone (it may span blocks) with the
 * final empty line it is stored without, and parsed: resp's views point
 * into bytes, which one allocation holds with the field array (sized by
 * the head's lines).  A stored head never changes under its (entry,
 * version), so each worker keeps the heads it served lately (head_memo,
 * direct-mapped) and a hit neither copies nor parses its head again; the
 * freshness fields read from it (struct cache_response) are kept too,
 * for the stored_at they were read under (a 304 refreshes stored_at in place).
 * Counted references: the memo's slot and each xfer using it.
 */
struct cache_head {
    unsigned refs;
    uint32_t entry, version;
    struct http_response resp;
    char *block; /* owns: cache_head_block's, for block_status/ops */
    size_t block_len;
    int block_status;
    const struct conf_header_ops *block_ops;
    int64_t cr_at;            /* stored_at cr was read under */
    unsigned cr_ok : 1;
    struct cache_response cr; /* views into bytes */
    char bytes[];
};

#define CACHE_HEAD_MEMO 64 /* slots, a power of two */

static struct cache_head *head_memo[CACHE_HEAD_MEMO];

static void cache_head_put(struct cache_head *h)
{
    if (h != NULL && --h->refs == 0) {
        free(h->block);
        free(h);
    }
}

static struct cache_head **cache_head_slot(const struct cache_ref *ref)
{
    uint32_t k = (ref->entry * 2654435761u) ^ ref->version;

    return &head_memo[(k ^ (k >> 16)) & (CACHE_HEAD_MEMO - 1)];
}

void cache_head_forget(void)
{
    for (size_t i = 0; i < CACHE_HEAD_MEMO; i++) {
        cache_head_put(head_memo[i]);
        head_memo[i] = NULL;
    }
}

/* The head of x->ref, read from the zone and parsed.  NULL when it
 * cannot be read or parsed, or on no memory. */
static struct cache_head *cache_head_read(struct cache_xfer *x)
{
    size_t len = x->meta.head_len, lines = 1, at;
    char small[2048]; /* most heads: counted here, then sized to fit */
    struct cache_head *h;

    if (len <= sizeof(small)) {
        if (cache_copy_out(&x->ref, small, len) < 0)
            return NULL;
        for (size_t i = 0; i < len; i++)
            lines += small[i] == '\n';
    } else {
        lines = CACHE_MAX_STORED_HEADERS;
    }
    lines = PT_MIN(lines, CACHE_MAX_STORED_HEADERS);
    /* room for the head, its last CRLFs, and a field per line */
    at = (len + 4 + 7) & ~(size_t)7;
    h = malloc(sizeof(*h) + at + sizeof(struct http_header) * lines);
    if (h == NULL)
        return NULL;
    if (len <= sizeof(small)) {
        memcpy(h->bytes, small, len);
    } else if (cache_copy_out(&x->ref, h->bytes, len) < 0) {
        free(h);
        return NULL;
    }
    memcpy(h->bytes + len, "\r\n\r\n", 4);
    struct http_limits lim = {len + 4, len + 4, lines};
    memset(&h->resp, 0, sizeof(h->resp));
    h->resp.headers = (struct http_header *)(h->bytes + at);
    h->resp.headers_cap = lines;
    if (http_parse_response(h->bytes, len + 4, &lim, &h->resp) <= 0) {
        free(h);
        return NULL;
    }
    h->refs = 1;
    h->entry = x->ref.entry;
    h->version = x->ref.version;
    h->cr_ok = 0;
    h->block = NULL;
    return h;
}

/* x->head and x->hresp: the stored head of x->ref.  PT_ERROR when it
 * cannot be read or parsed. */
static int cache_head_load(struct cache_xfer *x)
{
    struct cache_head **slot = cache_head_slot(&x->ref), *h = *slot;

    if (x->head && x->head->entry == x->ref.entry &&
        x->head->version == x->ref.version)
        return PT_OK;
    if (h == NULL || h->entry != x->ref.entry ||
        h->version != x->ref.version) {
        h = cache_head_read(x);
        if (h == NULL)
            return PT_ERROR;
        cache_head_put(*slot);
        *slot = h;
    }
    h->refs++;
    cache_head_put(x->head);
    x->head = h;
    x->hresp = h->resp;
    return PT_OK;
}

/* The stored validators, to ask the upstream whether the stale copy is
 * still good (RFC 9111 4.3.1) -- unless the client asks its own
 * conditional question, which then goes upstream as it is. */
static void cache_make_validators(struct cache_xfer *x,
                                  const struct http_response *stored,
                                  const struct http_request *r, int64_t now)
{
    struct cache_validators v;

    free(x->validators);
    x->validators = NULL;
    if (http_header_find(r->headers, r->nheaders, "If-None-Match") ||
        http_header_find(r->headers, r->nheaders, "If-Modified-Since") ||
        cache_validators(stored->headers, stored->nheaders, now, &v) == 0)
        return;
    if (asprintf(&x->validators, "%s%.*s%s%s%.*s%s",
                 v.if_none_match.len ? "If-None-Match: " : "",
                 (int)v.if_none_match.len, v.if_none_match.p,
                 v.if_none_match.len ? "\r\n" : "",
                 v.if_modified_since.len ? "If-Modified-Since: " : "",
                 (int)v.if_modified_since.len, v.if_modified_since.p,
                 v.if_modified_since.len ? "\r\n" : "") < 0)
        x->validators = NULL;
}

/* A hit: may it be served to this request, and how (RFC 9111 4)? */
static enum cache_outcome cache_judge(struct cache_xfer *x,
                                      const struct http_request *r)
{
    const struct http_response *resp = &x->hresp;
    struct cache_response *cr;
    int64_t now = x->request_time, age;
    enum cache_reuse use;

    if (cache_head_load(x) < 0)
        return CACHE_PASS;
    cr = &x->head->cr;
    if (!x->head->cr_ok || x->head->cr_at != x->meta.stored_at) {
        cache_response_read(resp->status, resp->headers, resp->nheaders,
                            x->meta.stored_at, cr);
        x->head->cr_at = x->meta.stored_at;
        x->head->cr_ok = 1;
    }
    age = cache_age_current(x->meta.initial_age, x->meta.stored_at, now);
    use = cache_reuse(&x->creq.cc, &cr->cc, x->meta.lifetime, age);
    x->ttl = x->meta.lifetime - age;
    x->conditional = cache_conditional(r->method_id, r->headers, r->nheaders,
                                       cr->etag, cr->last_modified, now);
    x->stored_cc = cr->cc;
    x->old_age = age;
    x->reuse = use;
    if (use == CACHE_FRESH || use == CACHE_STALE_OK)
        return CACHE_SERVE;
    cache_make_validators(x, resp, r, now); /* to revalidate it */
    return CACHE_FILL;
}

/* The key is being filled: is there a stale copy beside it that this
 * request may have at once (stale-while-revalidate)?  On yes, x holds it
 * pinned instead of the entry being filled. */
static int cache_swr_sibling(struct cache_xfer *x, struct pt_str key,
                             const struct http_request *r)
{
    struct cache_ref filling = x->ref, ready;
    struct cache_meta fmeta = x->meta, meta;

    if (cache_lookup_ready(zone, key, &ready, &meta) != CACHE_HIT)
        return 0;
    x->ref = ready;
    x->meta = meta;
    if (!(meta.flags & CACHE_F_HIT_FOR_MISS) &&
        cache_judge(x, r) == CACHE_FILL &&
        x->reuse == CACHE_STALE_WHILE_REVALIDATE) {
        cache_release(zone, &filling);
        return 1;
    }
    cache_release(zone, &ready);
    x->ref = filling;
    x->meta = fmeta;
    return 0;
}

enum cache_outcome cache_begin(struct cache_xfer *x, const struct conf *conf,
                               const struct conf_route *route,
                               const struct http_request *r, int tls)
{
    enum cache_found f;

    memset(x, 0, sizeof(*x));
    x->begun = 1;
    x->request_time = (int64_t)time(NULL);
    x->fwd = CACHE_FWD_BYPASS;
    x->sendfile_after = conf->cache.sendfile_after;
    if (zone == NULL || !route->cache.enabled)
        return CACHE_PASS;
    if (cache_make_key(x, route, r, tls) < 0) {
        x->detail = "key-too-long";
        return CACHE_PASS;
    }
    if (!cache_safe(r->method_id)) {
        /* what its success invalidates is known with the response */
        x->invalidate = 1;
        x->tls = tls;
        x->method = r->method_id;
        x->target = malloc(r->host.len + r->path.len + r->query.len + 3);
        if (x->target) {
            char *t = x->target;
            memcpy(t, r->host.p, r->host.len);
            t += r->host.len;
            *t++ = '\0';
            memcpy(t, r->path.p, r->path.len);
            t += r->path.len;
            *t++ = '\0';
            memcpy(t, r->query.p, r->query.len);
            t[r->query.len] = '\0';
        }
        x->fwd = CACHE_FWD_METHOD;
        return CACHE_PASS;
    }
    x->head_only = r->method_id == HTTP_M_HEAD;
    cache_request_read(r->method_id, r->headers, r->nheaders, &x->creq);
    if (x->creq.cc.no_store) {
        x->fwd = CACHE_FWD_REQUEST;
        x->detail = "no-store";
        return CACHE_PASS;
    }
    struct pt_str key = {x->key, x->key_len};
    /* only-if-cached (RFC 9111 5.2.1.7): never to the origin */
    f = cache_lookup(zone, key, !x->creq.cc.only_if_cached, &x->ref,
                     &x->meta);
    if (f == CACHE_HIT && (x->meta.flags & CACHE_F_VARY)) {
        /* The URL's responses vary: the request's variant instead. */
        if (cache_enter_variant(x, route, r, !x->creq.cc.only_if_cached,
                                &f) < 0) {
            x->detail = "key-too-long";
            return CACHE_PASS;
        }
        key = (struct pt_str){x->key, x->key_len};
    }
    enum cache_fwd miss = x->variant ? CACHE_FWD_VARY_MISS
                                     : CACHE_FWD_URI_MISS;
    if (x->creq.cc.only_if_cached) {
        x->pinned = f != CACHE_MISS;
        if (f == CACHE_HIT && !(x->meta.flags & CACHE_F_HIT_FOR_MISS) &&
            cache_judge(x, r) == CACHE_SERVE) {
            x->fwd = CACHE_FWD_NONE;
            return CACHE_SERVE;
        }
        x->detail = "only-if-cached";
        return CACHE_ONLY_IF_CACHED;
    }
    x->pinned = f != CACHE_MISS;
    if (f == CACHE_HIT && (x->meta.flags & CACHE_F_HIT_FOR_MISS) &&
        x->request_time - x->meta.stored_at < x->meta.lifetime) {
        /* Known to be uncacheable: straight upstream, nobody waits. */
        cache_release(zone, &x->ref);
        x->pinned = 0;
        x->fwd = miss;
        x->detail = "uncacheable";
        return CACHE_PASS;
    }
    if (f == CACHE_HIT && !(x->meta.flags & CACHE_F_HIT_FOR_MISS)) {
        if (cache_judge(x, r) == CACHE_SERVE) {
            x->fwd = CACHE_FWD_NONE;
            return CACHE_SERVE;
        }
        if (x->reuse == CACHE_STALE_WHILE_REVALIDATE) {
            /* RFC 5861 3: the stale copy now, a refresh behind it. */
            x->fwd = CACHE_FWD_NONE;
            x->detail = "stale-while-revalidate";
            x->swr_refresh = 1;
            return CACHE_SERVE;
        }
        /* Stale, or the client asks for a fresh one: keep the stale copy
         * (to revalidate, or to stand in if the upstream fails) and fill
         * a new entry beside it. */
        x->old = x->ref;
        x->old_meta = x->meta;
        x->has_old = 1;
        f = cache_claim_beside(zone, key, &x->ref);
        x->pinned = f != CACHE_MISS;
        memset(&x->meta, 0, sizeof(x->meta));
        x->fwd = CACHE_FWD_STALE;
    } else if (f == CACHE_HIT) { /* an expired hit-for-miss marker */
        cache_release(zone, &x->ref);
        cache_purge(zone, key);
        f = cache_lookup(zone, key, 1, &x->ref, &x->meta);
        x->pinned = f != CACHE_MISS;
        x->fwd = miss;
    } else {
        x->fwd = miss;
    }
    if (f == CACHE_FILLING && cache_swr_sibling(x, key, r)) {
        /* A refresh is under way: the stale copy, at once. */
        x->fwd = CACHE_FWD_NONE;
        x->detail = "stale-while-revalidate";
        return CACHE_SERVE;
    }
    if (!x->variant && (f == CACHE_FILLING || f == CACHE_CLAIMED))
        cache_save_fields(x, r); /* the response may turn out to vary */
    if (f == CACHE_FILLING && notify_slot >= 0) {
        /* One fill per key: read along as it arrives. */
        cache_wait(zone, &x->ref, notify_slot);
        x->following = 1;
        if (stats_global())
            cache_count(&stats_global()->cache_collapsed);
        return CACHE_WAIT;
    }
    if (f != CACHE_CLAIMED) {
        /* Filled elsewhere and no way to be woken, or the zone is full. */
        x->detail = f == CACHE_FILLING ? "fill-in-progress" : "no-space";
        return CACHE_PASS;
    }
    x->filling = 1;
    /* A HEAD miss is fetched as a GET (proxy.c) and stored as one. */
    x->creq.method = HTTP_M_GET;
    if (stats_global())
        cache_count(x->fwd == CACHE_FWD_STALE ? &stats_global()->cache_stale
                                              : &stats_global()->cache_misses);
    return CACHE_FILL;
}

static char *cache_put_uint(char *at, uint64_t v);

/* "Cache-Status: ...\r\n" for x into buf; NULL if it does not fit. */
static const char *cache_status_line(const struct cache_xfer *x, char *buf,
                                     size_t cap)
{
    struct cache_status st = {(enum cache_fwd)x->fwd, x->fwd_status,
                              x->fwd == 0 || x->fwd_status, x->ttl,
                              x->storing, 0, x->detail};
    static const char hit[] = "Cache-Status: portico; hit; ttl=";

    if (x->fwd == CACHE_FWD_NONE && x->fwd_status == 0 && !x->storing &&
        x->detail == NULL && cap >= sizeof(hit) + 24) {
        /* a plain hit, the common case: what cache_status_format would
         * say, without its general machinery */
        char *at = buf + sizeof(hit) - 1;
        memcpy(buf, hit, sizeof(hit) - 1);
        if (x->ttl < 0)
            *at++ = '-';
        at = cache_put_uint(at, x->ttl < 0 ? 0 - (uint64_t)x->ttl
                                           : (uint64_t)x->ttl);
        memcpy(at, "\r\n", 3);
        return buf;
    }
    int n = snprintf(buf, cap, "Cache-Status: ");

    if (cache_status_format("portico", &st, buf + n, cap - (size_t)n - 2) < 0)
        return NULL;
    strcat(buf, "\r\n");
    return buf;
}

/* Bytes written at a cursor in space the caller reserved for them. */
static char *cache_put(char *at, const void *p, size_t n)
{
    memcpy(at, p, n);
    return at + n;
}

static char *cache_put_field(char *at, const char *name, size_t nlen,
                             const char *value, size_t vlen)
{
    at = cache_put(at, name, nlen);
    at = cache_put(at, ": ", 2);
    at = cache_put(at, value, vlen);
    return cache_put(at, "\r\n", 2);
}

static char *cache_put_uint(char *at, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return cache_put(at, tmp + i, sizeof(tmp) - i);
}

/* The status line, the stored fields as the route's headers.response
 * rules have them, and the rules' own fields: the part of a hit's head
 * that only the entry, the status sent and the rules decide. */
static size_t cache_block_len(const struct http_response *resp, int status,
                              const struct conf_header_ops *ops)
{
    size_t need = 9 + 4 + strlen(http_reason(status)) + 2;

    for (size_t i = 0; i < resp->nheaders; i++)
        need += resp->headers[i].name.len + resp->headers[i].value.len + 4;
    for (size_t i = 0; i < ops->nset; i++)
        need += strlen(ops->set[i].name) + strlen(ops->set[i].value) + 4;
    for (size_t i = 0; i < ops->nadd; i++)
        need += strlen(ops->add[i].name) + strlen(ops->add[i].value) + 4;
    return need;
}

static char *cache_block_put(char *at, const struct http_response *resp,
                             int status, const struct conf_header_ops *ops)
{
    const char *reason = http_reason(status);

    at = cache_put(at, "HTTP/1.1 ", 9);
    at = cache_put_uint(at, (uint64_t)status);
    at = cache_put(at, " ", 1);
    at = cache_put(at, reason, strlen(reason));
    at = cache_put(at, "\r\n", 2);
    for (size_t i = 0; i < resp->nheaders; i++) {
        struct pt_str name = resp->headers[i].name;
        if ((status == 304 && pt_str_ieq(name, "Content-Length")) ||
            route_header_dropped(ops, name))
            continue;
        at = cache_put_field(at, name.p, name.len, resp->headers[i].value.p,
                             resp->headers[i].value.len);
    }
    for (size_t i = 0; i < ops->nset; i++)
        at = cache_put_field(at, ops->set[i].name, strlen(ops->set[i].name),
                             ops->set[i].value, strlen(ops->set[i].value));
    for (size_t i = 0; i < ops->nadd; i++)
        at = cache_put_field(at, ops->add[i].name, strlen(ops->add[i].name),
                             ops->add[i].value, strlen(ops->add[i].value));
    return at;
}

/* h's block for (status, ops), made once and kept with the parsed head
 * (head_memo is emptied when the configuration changes, so an ops
 * pointer there is always one of a live generation).  NULL on no
 * memory. */
static const char *cache_head_block(struct cache_head *h, int status,
                                    const struct conf_header_ops *ops,
                                    size_t *len)
{
    if (h->block == NULL || h->block_ops != ops ||
        h->block_status != status) {
        char *b = malloc(cache_block_len(&h->resp, status, ops));
        if (b == NULL)
            return NULL;
        free(h->block);
        h->block = b;
        h->block_len = (size_t)(cache_block_put(b, &h->resp, status, ops) - b);
        h->block_ops = ops;
        h->block_status = status;
    }
    *len = h->block_len;
    return h->block;
}

/*
 * The head of a stored response to the client: the block above (kept in
 * h when given), Age, Cache-Status (when given) and the connection's own
 * field.  Written in one piece of out's own space (its size counted
 * first): no format strings, no copy through a scratch buffer.
 * PT_ERROR (nothing written) when out cannot grow.
 */
static int cache_write_head(struct evbuffer *out, struct cache_head *h,
                             const struct http_response *resp, int status,
                             const struct conf_header_ops *ops, int64_t age,
                             const char *cache_status, const char *framing,
                             int keep_alive, int http10)
{
    const char *conn = !keep_alive ? "Connection: close\r\n"
                       : http10    ? "Connection: keep-alive\r\n"
                                   : "";
    size_t fl = framing ? strlen(framing) : 0;
    size_t cl = cache_status ? strlen(cache_status) : 0;
    size_t blen = 0;
    const char *block = h ? cache_head_block(h, status, ops, &blen) : NULL;
    size_t need;
    struct evbuffer_iovec v;
    char *at;

    if (block == NULL)
        blen = cache_block_len(resp, status, ops);
    need = blen + 5 + 20 + 2 + fl + cl + strlen(conn) + 2;
    if (evbuffer_reserve_space(out, (ev_ssize_t)need, &v, 1) < 1)
        return PT_ERROR;
    at = block ? cache_put(v.iov_base, block, blen)
               : cache_block_put(v.iov_base, resp, status, ops);
    at = cache_put(at, "Age: ", 5);
    at = cache_put_uint(at, (uint64_t)PT_MAX(age, 0));
    at = cache_put(at, "\r\n", 2);
    at = cache_put(at, framing ? framing : "", fl);
    at = cache_put(at, cache_status ? cache_status : "", cl);
    at = cache_put(at, conn, strlen(conn));
    at = cache_put(at, "\r\n", 2);
    v.iov_len = (size_t)(at - (char *)v.iov_base);
    return evbuffer_commit_space(out, &v, 1) < 0 ? PT_ERROR : PT_OK;
}

/* One served body's hold on its entry: released with its last piece. */
struct cache_serve_pin {
    struct cache_ref ref;
    unsigned pieces;
};

static void cache_unpin(const void *data, size_t len, void *arg)
{
    struct cache_serve_pin *pin = arg;

    if (--pin->pieces > 0)
        return;
    if (zone)
        cache_release(zone, &pin->ref);
    free(pin);
}

int cache_serve(struct cache_xfer *x, const struct conf_header_ops *ops,
                struct evbuffer *out, int keep_alive, int http10,
                uint64_t *body_bytes)
{
    const struct http_response *resp = &x->hresp;
    char cs[300];
    int status;

    *body_bytes = 0;
    if (cache_head_load(x) < 0)
        return -1;
    status = x->conditional == 304 ? 304 : resp->status;
    /* stored from a chunked or close-delimited response: the length is
     * known now */
    char framing[64];
    if (resp->content_length < 0 && status != 304 && status != 204)
        snprintf(framing, sizeof(framing), "Content-Length: %llu\r\n",
                 (unsigned long long)(cache_length(zone, &x->ref) -
                                      x->meta.head_len));
    else
        framing[0] = '\0';
    /* The body goes out straight from the zone: the output buffer holds
     * references to the blocks, and a pin of its own keeps them until
     * the last one is written (or the connection goes).  Everything
     * that can fail comes before the first byte is queued. */
    struct cache_serve_pin *pin = NULL;
    if (status != 304 && !x->head_only &&
        (pin = malloc(sizeof(*pin))) == NULL)
        return -1;
    if (cache_write_head(out, x->head, resp, status, ops,
                         x->meta.lifetime - x->ttl,
                         cache_status_line(x, cs, sizeof(cs)),
                         framing[0] ? framing : NULL, keep_alive,
                         http10) < 0) {
        free(pin);
        return -1;
    }
    if (pin == NULL)
        return status;
    pin->ref = x->ref;
    pin->pieces = 1; /* this loop's own, dropped at its end */
    if (x->pinned)
        x->pinned = 0; /* x's own pin goes with the body */
    else
        cache_addref(zone, &pin->ref);
    /* Blocks that lie end to end in the zone go out as one piece: fewer
     * references to add, fewer iovecs to write. */
    const char *run = NULL;
    size_t run_len = 0;
    /* A big body is copied while this loop turn has copied less than
     * cache.sendfile's bytes; past that its runs of CACHE_SPLICE_MIN or
     * more go with sendfile (evio), from an entry hit often enough to
     * pay for it.  Otherwise runs stay under that size, so evio copies
     * them. */
    uint64_t body = cache_length(zone, &x->ref) - x->meta.head_len;
    size_t cap = CACHE_SPLICE_MIN - 1;
    if (body >= CACHE_SPLICE_MIN) {
        if ((body > x->sendfile_after ||
             turn_copied > x->sendfile_after - body) &&
            cache_splice_ok(zone, &x->ref))
            cap = SIZE_MAX;
        else
            turn_copied += body;
    }
    for (uint64_t off = x->meta.head_len;;) {
        const void *p;
        int done;
        size_t k = cache_read(zone, &x->ref, off, &p, &done);
        if (k != 0 && k != (size_t)-1 && run && run + run_len == p &&
            run_len + k <= cap) {
            run_len += k;
        } else {
            if (run) {
                pin->pieces++;
                if (evbuffer_add_reference(out, run, run_len, cache_unpin,
                                           pin) < 0) {
                    pin->pieces--;
                    evbuffer_add(out, run, run_len);
                }
            }
            if (k == 0 || k == (size_t)-1)
                break;
            run = p;
            run_len = k;
        }
        off += k;
        *body_bytes += k;
    }
    cache_unpin(NULL, 0, pin);
    return status;
}

/*
 * Where a response that varies goes (RFC 9111 4.1).  Fields in the
 * route's key need nothing more.  For others, the URL's entry (claimed
 * by x) becomes a marker that lists them, and the response goes in under
 * its variant's key instead; a request keyed through a marker stores its
 * response only if it varies the same way.  Returns NULL when x->ref is
 * where to store it, else why it is not stored.
 */
static const char *cache_vary_place(struct cache_xfer *x,
                                    const struct conf_route *rt,
                                    const struct http_response *resp,
                                    int64_t now, int64_t life)
{
    char fields[CACHE_VARY_MAX];
    int n = cache_vary_fields(rt, resp, fields, sizeof(fields));
    struct cache_ref marker = x->ref, vref;
    struct cache_meta vm;
    enum cache_found f;

    if (n < 0)
        return n == -1 ? "vary-star" : "vary-too-many";
    if (x->variant) {
        if (n == 0 || strcmp(fields, x->vary) == 0)
            return NULL;
        /* The server varies on other fields now: the marker goes, and
         * the next request for the URL makes a new one. */
        cache_purge(zone, (struct pt_str){x->key, x->primary_len});
        return "vary-changed";
    }
    if (n == 0)
        return NULL;
    if (x->saved == NULL) /* a refresh: no request fields to key by */
        return "vary-not-in-key";
    if (cache_variant_key(x, x->saved, x->nsaved, fields) < 0)
        return "key-too-long";
    struct pt_str key = {x->key, x->key_len};
    f = cache_lookup(zone, key, 1, &vref, &vm);
    if (f == CACHE_HIT || f == CACHE_FILLING) {
        /* left by an earlier marker of the URL: this one replaces it */
        cache_release(zone, &vref);
        cache_purge(zone, key);
        f = cache_lookup(zone, key, 1, &vref, &vm);
    }
    if (f != CACHE_CLAIMED) {
        if (f != CACHE_MISS)
            cache_release(zone, &vref);
        return "no-space";
    }
    struct cache_meta mm = {now, life, 0, (uint32_t)strlen(fields), 1,
                            CACHE_F_VARY};
    if (cache_fill_append(zone, &marker, fields, mm.head_len, UINT64_MAX) !=
            PT_OK ||
        cache_fill_done(zone, &marker, &mm) != PT_OK) {
        cache_fill_abort(zone, &vref);
        cache_release(zone, &vref);
        return "no-space";
    }
    cache_notify(x); /* those reading along the URL go to their variant */
    cache_release(zone, &x->ref);
    x->ref = vref;
    if (x->has_old)
        cache_kill(zone, &x->old); /* a stale copy the marker replaces */
    return NULL;
}

/* Reading along the URL's own entry, which became a marker: read along
 * the request's variant instead, when it is there or being filled. */
static int cache_follow_variant(struct cache_xfer *x)
{
    struct pt_str primary = {x->key, x->primary_len};
    struct cache_ref m, v;
    struct cache_meta mm, vm;
    enum cache_found f;
    char *fields;

    if (x->variant || x->saved == NULL)
        return PT_ERROR;
    f = cache_lookup(zone, primary, 0, &m, &mm);
    if (f == CACHE_MISS)
        return PT_ERROR;
    fields = f == CACHE_HIT && (mm.flags & CACHE_F_VARY)
                 ? cache_marker_fields(&m, &mm)
                 : NULL;
    cache_release(zone, &m);
    if (fields == NULL ||
        cache_variant_key(x, x->saved, x->nsaved, fields) < 0) {
        free(fields);
        return PT_ERROR;
    }
    free(fields);
    f = cache_lookup(zone, (struct pt_str){x->key, x->key_len}, 0, &v, &vm);
    if (f == CACHE_MISS)
        return PT_ERROR;
    cache_release(zone, &x->ref);
    x->ref = v;
    x->meta = vm;
    if (f == CACHE_FILLING)
        cache_wait(zone, &x->ref, notify_slot);
    return PT_OK;
}

/* The head of an entry being filled, once it is in. */
static int cache_follow_head(struct cache_xfer *x,
                             const struct conf_header_ops *ops,
                             struct evbuffer *out, int *keep_alive,
                             int http10, int *status)
{
    char framing[64];
    const void *p;
    int done = 0;

    const struct http_response *resp = &x->hresp;

    x->meta.head_len = cache_head_len(zone, &x->ref);
    if (x->meta.head_len == 0)
        return 0;
    if (cache_head_load(x) < 0)
        return -1;
    *status = resp->status;
    framing[0] = '\0';
    if (resp->content_length < 0 && resp->status != 204 && !x->head_only) {
        /* The length comes with the end of the fill: chunked for an
         * HTTP/1.1 client, the connection's end for an HTTP/1.0 one --
         * unless the fill is complete already. */
        cache_read(zone, &x->ref, cache_length(zone, &x->ref), &p, &done);
        if (done)
            snprintf(framing, sizeof(framing), "Content-Length: %llu\r\n",
                     (unsigned long long)(cache_length(zone, &x->ref) -
                                          x->meta.head_len));
        else if (!http10)
            snprintf(framing, sizeof(framing),
                     "Transfer-Encoding: chunked\r\n");
        else
            *keep_alive = 0;
        x->follow_chunked = !done && !http10;
    }
    if (cache_write_head(out, x->head, resp, resp->status, ops, 0,
                         "Cache-Status: portico; fwd=uri-miss; collapsed\r\n",
                         framing[0] ? framing : NULL, *keep_alive,
                         http10) < 0)
        return -1;
    x->head_sent = 1;
    x->off = x->meta.head_len;
    return 1;
}

int cache_follow(struct cache_xfer *x, const struct conf_header_ops *ops,
                 struct evbuffer *out, int *keep_alive, int http10,
                 uint64_t *body_bytes, int *status)
{
    const void *p;
    int done = 0;
    size_t k;

    if (!x->head_sent) {
        int rc = cache_follow_head(x, ops, out, keep_alive, http10, status);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            /* No head yet.  A marker: on to the request's variant.  An
             * entry marked uncacheable, a dead filler or an aborted fill
             * sends this request upstream. */
            k = cache_read(zone, &x->ref, cache_length(zone, &x->ref), &p,
                           &done);
            if (done && cache_follow_variant(x) == PT_OK)
                return cache_follow(x, ops, out, keep_alive, http10,
                                    body_bytes, status);
            if (k == (size_t)-1 || done || !cache_filler_alive(zone, &x->ref))
                return -1;
            return 0;
        }
        if (x->head_only)
            return 1;
    }
    while (evbuffer_get_length(out) < 256 * 1024) {
        k = cache_read(zone, &x->ref, x->off, &p, &done);
        if (k == (size_t)-1)
            return -2;
        if (k == 0 && done && x->follow_chunked)
            evbuffer_add(out, PT_LIT("0\r\n\r\n"));
        if (k == 0)
            return done ? 1 : cache_filler_alive(zone, &x->ref) ? 0 : -2;
        if (x->follow_chunked)
            evbuffer_add_printf(out, "%zx\r\n", k);
        evbuffer_add(out, p, k);
        if (x->follow_chunked)
            evbuffer_add(out, PT_LIT("\r\n"));
        x->off += k;
        *body_bytes += k;
    }
    return 0;
}

/* Store the head: status line and the fields a cache keeps. */
static int cache_store_head(struct cache_xfer *x, const struct conf *conf,
                            const struct http_response *resp)
{
    struct evbuffer *b = evbuffer_new();
    int rc = PT_ERROR;

    if (b == NULL)
        return PT_ERROR;
    evbuffer_add_printf(b, "HTTP/1.1 %d %.*s", resp->status,
                        (int)resp->reason.len, resp->reason.p);
    for (size_t i = 0; i < resp->nheaders; i++) {
        struct pt_str name = resp->headers[i].name;
        if (!cache_header_storable(name, resp->headers, resp->nheaders) ||
            pt_str_ieq(name, "Age") || pt_str_ieq(name, "Cache-Status") ||
            pt_str_ieq(name, "Transfer-Encoding"))
            continue;
        evbuffer_add_printf(b, "\r\n%.*s: %.*s", (int)name.len, name.p,
                            (int)resp->headers[i].value.len,
                            resp->headers[i].value.p);
    }
    x->meta.head_len = (uint32_t)evbuffer_get_length(b);
    if (resp->content_length >= 0 && !x->head_only && resp->status != 204)
        cache_fill_expect(zone, &x->ref,
                          x->meta.head_len + (uint64_t)resp->content_length);
    if (cache_fill_append(zone, &x->ref, evbuffer_pullup(b, -1),
                          x->meta.head_len,
                          conf->cache.max_object_size) == PT_OK)
        rc = PT_OK;
    evbuffer_free(b);
    return rc;
}

/* Drop the entries of one URI, each variant ("key\n...") included. */
static void cache_drop_uri(const struct conf_route *rt,
                           const struct cache_key_in *in)
{
    struct pt_str drop[64];
    struct cache_key_opts o = {rt->cache.sort_query, drop,
                               PT_MIN(rt->cache.ndrop_query, 64), NULL, 0,
                               0};
    char key[CACHE_KEY_MAX + 1];
    int n;

    for (size_t i = 0; i < o.ndrop; i++)
        drop[i] = (struct pt_str){rt->cache.drop_query[i],
                                  strlen(rt->cache.drop_query[i])};
    n = cache_key_build(in, &o, key, sizeof(key) - 1);
    if (n <= 0)
        return;
    cache_purge(zone, (struct pt_str){key, (size_t)n});
    key[n] = '\n';
    cache_purge_prefix(zone, (struct pt_str){key, (size_t)n + 1});
}

/* RFC 9111 4.4: a successful unsafe request invalidates its target, and
 * its Location and Content-Location when they share its origin. */
static void cache_invalidate(struct cache_xfer *x,
                             const struct conf_route *route,
                             const struct http_response *resp)
{
    const char *host = x->target, *path = host + strlen(host) + 1;
    const char *query = path + strlen(path) + 1;
    struct cache_key_in in = {PT_STR("GET"),
                              x->tls ? PT_STR("https") : PT_STR("http"),
                              {host, strlen(host)}, {path, strlen(path)},
                              {query, strlen(query)}, NULL, 0};
    struct cache_uri uris[3];
    int n = cache_invalidations(x->method, resp->status, &in, resp->headers,
                                resp->nheaders, uris);

    for (int i = 0; i < n; i++) {
        in.path = uris[i].path;
        in.query = uris[i].query;
        cache_drop_uri(route, &in);
    }
}

const char *cache_on_response(struct cache_xfer *x, const struct conf *conf,
                              const struct conf_route *route,
                              const struct http_response *resp,
                              int body_framed, char *cs, size_t cap)
{
    struct cache_response cr;
    int64_t now = (int64_t)time(NULL);
    const char *why = NULL;

    if (x->invalidate && x->target)
        cache_invalidate(x, route, resp);
    if (x->filling && resp->status == 304) {
        /* The client's own conditional request, answered upstream: no
         * entry comes of it, and nothing is remembered against the key. */
        cache_fill_abort(zone, &x->ref);
        cache_notify(x);
        x->filling = 0;
    }
    if (x->filling) {
        cache_response_read(resp->status, resp->headers, resp->nheaders, now,
                            &cr);
        /* heuristic freshness (RFC 9111 4.2.2) up to a day */
        struct cache_lifetime_opts lo = {
            86400, route->cache.ttl ? (int64_t)(route->cache.ttl / 1000)
               : conf->cache.default_ttl ? (int64_t)(conf->cache.default_ttl / 1000)
                                         : -1};
        enum cache_storability ok = cache_storable(&x->creq, &cr, &why);
        int64_t life = cache_freshness_lifetime(&cr, now, &lo);
        if (ok != CACHE_STORE_YES)
            ;
        else if (!body_framed)
            why = "not-storable";
        else if (resp->content_length >= 0 &&
                 (uint64_t)resp->content_length >
                     conf->cache.max_object_size)
            why = "too-large";
        else if (life <= 0)
            why = "not-fresh";
        else if ((why = cache_vary_place(x, route, resp, now, life)))
            ;
        else {
            x->meta.stored_at = now;
            x->meta.lifetime = life;
            x->meta.initial_age = cache_age_initial(&cr, x->request_time, now);
            x->meta.status = (uint16_t)resp->status;
            x->storing = cache_store_head(x, conf, resp) == PT_OK;
            if (!x->storing)
                why = "too-large";
            else
                cache_set_head_len(zone, &x->ref, x->meta.head_len);
        }
        if (!x->storing) {
            /* Remembered as uncacheable for a while: those waiting go
             * upstream now, the next ones go there without waiting. */
            struct cache_meta hfm = {now, CACHE_HIT_FOR_MISS_SECONDS, 0, 0,
                                     (uint16_t)resp->status,
                                     CACHE_F_HIT_FOR_MISS};
            x->detail = why ? why : "not-storable";
            if (stats_global())
                cache_count(&stats_global()->cache_uncacheable);
            cache_fill_done(zone, &x->ref, &hfm);
            if (x->has_old)
                cache_kill(zone, &x->old); /* no longer a copy to keep */
            x->filling = 0;
        }
        cache_notify(x);
        if (x->fwd != CACHE_FWD_STALE && x->fwd != CACHE_FWD_VARY_MISS)
            x->fwd = CACHE_FWD_URI_MISS;
    }
    return route->cache.enabled && zone ? cache_status_line(x, cs, cap)
                                        : NULL;
}

void cache_on_data(struct cache_xfer *x, const struct conf *conf,
                   const void *p, size_t n)
{
    if (!x->storing || n == 0)
        return;
    if (cache_fill_append(zone, &x->ref, p, n, conf->cache.max_object_size) !=
        PT_OK) {
        x->storing = 0;
        x->filling = 0;
    }
}

void cache_progress(struct cache_xfer *x)
{
    if (zone && (x->storing || x->pinned))
        cache_notify(x);
}

void cache_on_body(struct cache_xfer *x, const struct conf *conf,
                   struct evbuffer *src, size_t n)
{
    struct evbuffer_iovec v[16];
    struct evbuffer_ptr at;
    size_t off = 0;

    if (!x->storing)
        return;
    while (off < n) {
        evbuffer_ptr_set(src, &at, off, EVBUFFER_PTR_SET);
        int nv = evbuffer_peek(src, (ev_ssize_t)(n - off), &at, v, 16);
        if (nv <= 0)
            break;
        for (int i = 0; i < nv && i < 16 && off < n; i++) {
            size_t k = PT_MIN(v[i].iov_len, n - off);
            if (cache_fill_append(zone, &x->ref, v[i].iov_base, k,
                                  conf->cache.max_object_size) != PT_OK) {
                /* Too large after all, or no room: stop storing. */
                x->storing = 0;
                x->filling = 0;
                cache_notify(x);
                return;
            }
            off += k;
        }
    }
    cache_notify(x);
}

void cache_end(struct cache_xfer *x, int complete)
{
    /* a route without caching never began; an ended one is all zero */
    if (zone == NULL || !x->begun)
        return;
    if (x->filling) {
        int stored = complete && x->storing;
        if (stored)
            cache_fill_done(zone, &x->ref, &x->meta);
        else
            cache_fill_abort(zone, &x->ref);
        cache_notify(x);
        if (stored && x->has_old)
            cache_kill(zone, &x->old); /* the new copy replaces it */
    }
    if (x->pinned)
        cache_release(zone, &x->ref);
    if (x->has_old)
        cache_release(zone, &x->old);
    free(x->validators);
    free(x->target);
    free(x->key);
    free(x->vary);
    free(x->saved);
    cache_head_put(x->head);
    memset(x, 0, sizeof(*x));
}

/* ---- revalidation and stale-if-error ---- */

const char *cache_revalidation_fields(const struct cache_xfer *x)
{
    return x->has_old ? x->validators : NULL;
}

/* Serve the kept stale copy from now on: the new fill goes. */
static void cache_fall_back(struct cache_xfer *x, int status)
{
    if (x->filling) {
        cache_fill_abort(zone, &x->ref);
        cache_notify(x);
        x->filling = 0;
    }
    if (x->pinned)
        cache_release(zone, &x->ref);
    x->ref = x->old;
    x->meta = x->old_meta;
    x->pinned = 1;
    x->has_old = 0;
    x->storing = 0;
    x->fwd = CACHE_FWD_STALE;
    x->fwd_status = status;
}

int cache_on_not_modified(struct cache_xfer *x,
                          const struct http_response *resp)
{
    struct cache_response cr;
    struct cache_meta m;
    int64_t now = (int64_t)time(NULL), life;

    if (!x->has_old || x->validators == NULL)
        return 0;
    /* Freshness from the 304 where it says, else as stored. */
    cache_response_read(304, resp->headers, resp->nheaders, now, &cr);
    life = cache_freshness_lifetime(&cr, now, NULL);
    m = x->old_meta;
    m.stored_at = now;
    m.initial_age = cache_age_initial(&cr, x->request_time, now);
    if (life > 0)
        m.lifetime = life;
    cache_refresh(zone, &x->old, &m);
    x->old_meta = m;
    cache_fall_back(x, 304);
    x->ttl = m.lifetime - m.initial_age;
    return 1;
}

int cache_on_error(struct cache_xfer *x, int status)
{
    if (!x->has_old ||
        !cache_stale_if_error(&x->creq.cc, &x->stored_cc,
                              x->old_meta.lifetime, x->old_age))
        return 0;
    cache_fall_back(x, status);
    x->ttl = x->old_meta.lifetime - x->old_age;
    x->detail = "stale-if-error";
    return 1;
}

int cache_begin_refresh(struct cache_xfer *x, const struct cache_xfer *fg)
{
    struct pt_str key = {fg->key, fg->key_len};

    memset(x, 0, sizeof(*x));
    x->begun = 1;
    x->request_time = fg->request_time;
    x->creq = fg->creq;
    x->creq.method = HTTP_M_GET; /* a refresh after a HEAD goes as GET */
    x->key = malloc(fg->key_len);
    if (zone == NULL || x->key == NULL)
        return PT_ERROR;
    memcpy(x->key, fg->key, fg->key_len);
    x->key_len = fg->key_len;
    x->primary_len = fg->primary_len;
    x->variant = fg->variant;
    if (fg->vary && (x->vary = strdup(fg->vary)) == NULL)
        return PT_ERROR;
    /* the stale copy, pinned for itself: refreshed by a 304, or dropped
     * when the new response is stored */
    enum cache_found f = cache_lookup(zone, key, 0, &x->old, &x->old_meta);
    if (f != CACHE_HIT) {
        if (f == CACHE_FILLING)
            cache_release(zone, &x->old); /* a refresh is under way */
        return PT_ERROR;
    }
    x->has_old = 1;
    x->stored_cc = fg->stored_cc;
    x->old_age = fg->old_age;
    if (fg->validators)
        x->validators = strdup(fg->validators);
    if (cache_claim_beside(zone, key, &x->ref) != CACHE_CLAIMED)
        return PT_ERROR;
    x->pinned = 1;
    x->filling = 1;
    x->fwd = CACHE_FWD_STALE;
    if (stats_global())
        cache_count(&stats_global()->cache_stale);
    return PT_OK;
}

const char *cache_log_status(const struct cache_xfer *x)
{
    if (x->following)
        return "collapsed";
    if (x->fwd == CACHE_FWD_NONE)
        return x->swr_refresh || (x->detail && *x->detail) ? "stale" : "hit";
    if (x->fwd_status == 304)
        return "revalidated";
    if (x->fwd_status)
        return "stale";
    if (x->storing)
        return "miss";
    if (x->fwd == CACHE_FWD_METHOD || x->fwd == CACHE_FWD_REQUEST ||
        x->fwd == CACHE_FWD_BYPASS)
        return "bypass";
    return "uncacheable";
}
