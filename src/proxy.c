/*
 * proxy.c -- one request forwarded to an upstream server.
 *
 *   CONNECT --(connected / pooled)--> SEND --(response head)--> DELIVER
 *      ^                                |                          |
 *      +--(refused, or pooled conn      |                          v
 *          closed before answering:     +--(1xx: relay, stay)     done
 *          retry when allowed)----------+
 *
 * The request head is rewritten once, into px->head, and kept until the
 * response head arrives so a retry can resend it.  Bodies stream in both
 * directions through evbuffer moves, never whole-buffered: when the far
 * side's output passes PX_HIGH, reading from the near side stops until it
 * drains (back-pressure).
 *
 * Calls: upstream.c, http_parse.c, conn.h, log.c, util.c.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

#include "cache.h"
#include "cache_key.h"
#include "conn.h"
#include "evio.h"
#include "log.h"
#include "route.h"
#include "stats.h"
#include "upstream.h"
#include "worker.h"
#include "util.h"

/* Unsent bytes one side may hold before the other side stops reading. */
#define PX_HIGH (256 * 1024)
/* Largest upstream response head accepted. */
#define PX_MAX_RESP_HEAD (64 * 1024)
#define PX_MAX_RESP_HEADERS 200
/* px_pump_chunked: the body passed limits.max_body_bytes. */
#define PX_TOO_LARGE (-100)

enum px_state {
    PX_CONNECT, /* waiting for a connection to the chosen server */
    PX_SEND,    /* request going out; waiting for the response head */
    PX_DELIVER, /* response head sent on; streaming the body */
    PX_TUNNEL,  /* after 101: bytes both ways until either side closes */
};

/* How the response body is framed on each side. */
enum px_body {
    BODY_NONE,          /* HEAD, 204, 304 */
    BODY_LENGTH,        /* Content-Length both sides */
    BODY_CHUNKED,       /* chunked both sides: validated, passed as is */
    BODY_CHUNKED_TO_RAW, /* chunked upstream, HTTP/1.0 client: decoded */
    BODY_CLOSE_TO_CHUNKED, /* ends at upstream close; chunked to client */
    BODY_CLOSE,         /* ends at upstream close; so does the client's */
};

struct proxy {
    struct proxy *pool_next;         /* freed, in the worker's pool */
    struct conn *c;                  /* borrowed: owns this proxy */
    const struct conf_route *route;  /* borrowed from the generation */
    struct ups_group *group;         /* borrowed */
    struct ups_server *srv;          /* borrowed: current server */
    struct upconn *uc;               /* owns while the exchange runs */
    char *head;                      /* owns: the upstream request head */
    size_t head_len;
    uint32_t hash_key;               /* for balance: hash */
    uint64_t tried;                  /* servers tried (bit per index) */
    unsigned attempts;
    int last_status;                 /* the last server's failure */
    const char *last_why;
    enum px_state state;
    struct conf_upstream_timeouts to;

    /* request body, client -> upstream */
    unsigned idempotent : 1;
    unsigned head_only : 1;
    unsigned client_http10 : 1;
    unsigned req_chunked : 1;
    unsigned req_done : 1;      /* the whole body went upstream */
    unsigned body_started : 1;  /* a body byte left the client buffer */
    unsigned force_new : 1;     /* retry on a fresh connection */
    unsigned counted_busy : 1;
    uint64_t req_left;
    uint64_t req_bytes;         /* decoded chunked body bytes so far */
    uint64_t max_body;          /* limits.max_body_bytes; 0 = none */
    struct http_chunked req_chunk;

    /* upgrade (WebSocket) and streams */
    unsigned upgrade : 1;       /* the client asked to switch protocols */
    unsigned sse : 1;           /* text/event-stream response */
    unsigned closing : 1;       /* a tunnel side closed: flush, then end */
    struct bufferevent *flush_to; /* borrowed: the side being flushed */
    uint64_t websocket_idle;    /* ms */
    uint64_t sse_idle;          /* ms */
    struct event *idle_ev;      /* owns: the tunnel's idle timer */
    uint64_t last_active;       /* ms, monotonic: the tunnel's last byte */

    /* response, upstream -> client */
    int status;
    enum px_body body;
    unsigned up_keep : 1;
    unsigned resp_done : 1;
    uint64_t resp_left;
    struct http_chunked resp_chunk;
    uint64_t sent;              /* body bytes queued for the client */
    const struct conf *conf;    /* borrowed: the request's generation */
    struct cache_xfer cx;       /* the request's dealings with the cache */
    unsigned cache_hit : 1;     /* answered from the cache */
    unsigned cache_follow : 1;  /* reading along another request's fill */
    unsigned bg_mode : 1;       /* a background refresh: no client */
    unsigned only_if_cached : 1; /* not in the cache, and must not go out */
    unsigned head_fill : 1;     /* a HEAD miss fetched as GET to fill the
                                   cache: the body is stored, not sent */
    struct proxy *bg;           /* owns until started: the refresh that
                                   follows a stale-while-revalidate hit */
    struct evbuffer *sink;      /* owns (bg_mode, head_fill): the body,
                                   dropped once stored */
    struct gen *bg_gen;         /* ref (bg_mode): keeps route and pools */
    LIST_ENTRY(proxy) wlink; /* the worker's followers */
    uint64_t follow_sent;
    int follow_status;
    struct timespec t0;         /* when the request went upstream */
    uint64_t upstream_us;
};

static void px_connect(struct proxy *px);
static void px_follow_step(struct proxy *px);
static struct proxy *px_new_refresh(struct conn *c, struct ups_set *ups,
                                    const struct conf_route *route,
                                    const struct http_request *r,
                                    const struct conf *cf,
                                    struct proxy *fg);
static void px_follow_unlink(struct proxy *px);
static void px_pump_request(struct proxy *px);
static void px_up_write_now(struct proxy *px);
static void px_pump_response(struct proxy *px);

static int px_idempotent(enum http_method m)
{
    return m == HTTP_M_GET || m == HTTP_M_HEAD || m == HTTP_M_PUT ||
           m == HTTP_M_DELETE || m == HTTP_M_OPTIONS || m == HTTP_M_TRACE;
}

static uint64_t px_elapsed_us(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)(now.tv_sec - t0->tv_sec) * 1000000 +
           (uint64_t)(now.tv_nsec - t0->tv_nsec) / 1000;
}

static struct bufferevent *px_client(struct proxy *px)
{
    return conn_bev(px->c);
}

/* ---- the client side, or none (a background refresh) ------------------- */

static void px_bg_finish(struct proxy *px);

static struct evbuffer *px_out(struct proxy *px)
{
    return px->bg_mode ? px->sink : bufferevent_get_output(conn_bev(px->c));
}

static int px_keep(struct proxy *px)
{
    return !px->bg_mode && conn_client_keep_alive(px->c);
}

static void px_set_keep(struct proxy *px, int keep)
{
    if (!px->bg_mode)
        conn_set_keep_alive(px->c, keep);
}

/* What the cache did, for the client's access log line. */
static void px_log_cache(struct proxy *px)
{
    if (!px->bg_mode && px->route->cache.enabled)
        conn_set_cache_status(px->c, cache_log_status(&px->cx));
}

static void px_end_error(struct proxy *px, int status, const char *why)
{
    if (px->bg_mode)
        px_bg_finish(px);
    else
        conn_proxy_error(px->c, status, why);
}

static void px_end_abort(struct proxy *px)
{
    if (px->bg_mode)
        px_bg_finish(px);
    else
        conn_proxy_abort(px->c);
}

static void px_end_done(struct proxy *px, int status, uint64_t body_bytes,
                        const char *upstream, uint64_t upstream_us)
{
    if (px->bg_mode)
        px_bg_finish(px);
    else
        conn_proxy_done(px->c, status, body_bytes, upstream, upstream_us);
}

/* ---- the upstream request head ------------------------------------------ */

/* Hop-by-hop fields (RFC 9110 7.6.1), and those portico sets itself. */
static int px_hop_by_hop(struct pt_str name)
{
    switch (name.len) { /* one compare or two for most names */
    case 2:
        return pt_str_ieq(name, "TE");
    case 7:
        return pt_str_ieq(name, "Trailer") || pt_str_ieq(name, "Upgrade");
    case 10:
        return pt_str_ieq(name, "Connection") ||
               pt_str_ieq(name, "Keep-Alive");
    case 17:
        if (pt_str_ieq(name, "Transfer-Encoding"))
            return 1;
        break;
    }
    /* Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, ... */
    return name.len > 6 && pt_lower(name.p[0]) == 'p' &&
           strncasecmp(name.p, "Proxy-", 6) == 0;
}

/* Has the message a Connection field (whose tokens name more fields
 * to drop)? */
static int px_has_connection(const struct http_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (pt_str_ieq(h[i].name, "Connection"))
            return 1;
    return 0;
}

/* Is name listed in any Connection field of the message? */
static int px_connection_lists(const struct http_header *h, size_t n,
                               struct pt_str name)
{
    char tok[128];

    if (name.len >= sizeof(tok))
        return 0;
    memcpy(tok, name.p, name.len);
    tok[name.len] = '\0';
    for (size_t i = 0; i < n; i++)
        if (pt_str_ieq(h[i].name, "Connection") &&
            http_list_has_token(h[i].value, tok))
            return 1;
    return 0;
}

/*
 * A head being written: into a buffer on the stack (on the heap past
 * it), then added to its evbuffer in one piece by px_text_end, or kept
 * as it is by px_text_take (the upstream request head).  An
 * evbuffer_add per piece would cost ~100 instructions each, plus the
 * byte-counting callback of a client's output.
 */
struct px_text {
    char *p;
    size_t len, cap;
    unsigned failed : 1; /* out of memory: px_text_end adds nothing,
                          * px_text_take gives NULL */
    char room[2048];
};

static void px_text_init(struct px_text *t)
{
    t->p = t->room;
    t->len = 0;
    t->cap = sizeof(t->room);
    t->failed = 0;
}

static void px_put_grow(struct px_text *t, const void *s, size_t n)
{
    size_t cap = PT_MAX(t->cap * 2, t->len + n);
    char *p;

    if (t->failed)
        return;
    p = t->p == t->room ? malloc(cap) : realloc(t->p, cap);
    if (p == NULL) {
        t->failed = 1;
        t->cap = t->len = 0; /* px_put does nothing more */
        return;
    }
    if (t->p == t->room)
        memcpy(p, t->room, t->len);
    t->p = p;
    t->cap = cap;
    memcpy(t->p + t->len, s, n);
    t->len += n;
}

static inline void px_put(struct px_text *t, const void *s, size_t n)
{
    if (n == 0)
        return; /* s may be NULL then (an absent Host, say) */
    if (n > t->cap - t->len) { /* or failed: cap is 0 then */
        px_put_grow(t, s, n);
        return;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
}

/* What t holds, as an allocation of the caller's (*len bytes), and t
 * emptied.  NULL when memory ran out. */
static char *px_text_take(struct px_text *t, size_t *len)
{
    char *p = t->failed ? NULL
              : t->p != t->room ? t->p
                                : malloc(t->len ? t->len : 1);

    if (p != NULL && t->p == t->room)
        memcpy(p, t->room, t->len);
    else if (p == NULL && t->p != t->room)
        free(t->p);
    *len = t->len;
    px_text_init(t);
    return p;
}

/* Add what t holds to b, and empty t.  PT_ERROR (nothing added) when
 * memory ran out. */
static int px_text_end(struct px_text *t, struct evbuffer *b)
{
    int rc = !t->failed && evbuffer_add(b, t->p, t->len) == 0 ? PT_OK
                                                               : PT_ERROR;
    if (t->p != t->room)
        free(t->p);
    px_text_init(t);
    return rc;
}

static void px_put_field(struct px_text *t, struct pt_str name,
                         struct pt_str value)
{
    size_t n = name.len + value.len + 4;
    char *d = t->p + t->len;

    if (n > t->cap - t->len) { /* or failed: px_put knows what to do */
        px_put(t, name.p, name.len);
        px_put(t, PT_LIT(": "));
        px_put(t, value.p, value.len);
        px_put(t, PT_LIT("\r\n"));
        return;
    }
    /* the usual case: one check for the line, the separators stored */
    if (name.len)
        memcpy(d, name.p, name.len);
    d += name.len;
    memcpy(d, ": ", 2);
    d += 2;
    if (value.len) /* value.p may be NULL then (an absent Host, say) */
        memcpy(d, value.p, value.len);
    memcpy(d + value.len, "\r\n", 2);
    t->len += n;
}

static void px_put_ops(struct px_text *t, const struct conf_header_ops *ops)
{
    for (size_t i = 0; i < ops->nset; i++)
        px_put_field(t, pt_str_c(ops->set[i].name),
                     pt_str_c(ops->set[i].value));
    for (size_t i = 0; i < ops->nadd; i++)
        px_put_field(t, pt_str_c(ops->add[i].name),
                     pt_str_c(ops->add[i].value));
}

/* "HTTP/1.1 <status> <reason>\r\n" */
static void px_put_status(struct px_text *t, int status, struct pt_str reason)
{
    char code[3] = {(char)('0' + status / 100 % 10),
                    (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10)};

    px_put(t, PT_LIT("HTTP/1.1 "));
    px_put(t, code, 3);
    px_put(t, PT_LIT(" "));
    px_put(t, reason.p, reason.len);
    px_put(t, PT_LIT("\r\n"));
}

/* Copy the client's fields that go on, minus hop-by-hop ones, the ones
 * portico rewrites, and what the route removes or replaces. */
static void px_copy_request_fields(struct proxy *px,
                                   const struct http_request *r,
                                   struct px_text *b)
{
    const struct conf_header_ops *ops = &px->route->request_headers;
    static const char *const rewritten[] = {
        "Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"};
    int lists = px_has_connection(r->headers, r->nheaders);

    for (size_t i = 0; i < r->nheaders; i++) {
        struct pt_str name = r->headers[i].name;
        int skip = px_hop_by_hop(name) ||
                   (lists &&
                    px_connection_lists(r->headers, r->nheaders, name)) ||
                   route_header_dropped(ops, name);
        for (size_t k = 0; k < PT_ARRAY_LEN(rewritten) && !skip; k++)
            skip = pt_str_ieq(name, rewritten[k]);
        if (!skip)
            px_put_field(b, name, r->headers[i].value);
    }
}

/* The client's address without the port, for X-Forwarded-For: its
 * length in buf (at least INET6_ADDRSTRLEN bytes).  IPv4 by hand: glibc's
 * inet_ntop formats it through sprintf, a tenth of a request's work. */
static size_t px_client_ip(const struct sockaddr *sa, char *buf)
{
    if (sa->sa_family == AF_INET) {
        const unsigned char *a =
            (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        char *at = buf;
        for (int i = 0; i < 4; i++) {
            unsigned v = a[i];
            if (v >= 100)
                *at++ = (char)('0' + v / 100);
            if (v >= 10)
                *at++ = (char)('0' + v / 10 % 10);
            *at++ = (char)('0' + v % 10);
            *at++ = '.';
        }
        return (size_t)(at - buf - 1);
    }
    if (sa->sa_family == AF_INET6 &&
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr,
                  buf, INET6_ADDRSTRLEN) != NULL)
        return strlen(buf);
    return 0;
}

/* X-Request-Id: the client's passes through with the other fields; a
 * request without one gets the id the access log records too. */
static void px_request_id(struct proxy *px, struct px_text *b,
                          const struct http_request *r)
{
    if (http_header_find(r->headers, r->nheaders, "X-Request-Id") == NULL)
        px_put_field(b, PT_STR("X-Request-Id"), conn_request_id(px->c));
}

/* X-Forwarded-For: what the client sent, then the client itself. */
static void px_forwarded_for(struct proxy *px, const struct http_request *r,
                             struct px_text *b)
{
    char ip[INET6_ADDRSTRLEN];
    int first = 1;

    px_put(b, PT_LIT("X-Forwarded-For: "));
    for (size_t i = 0; i < r->nheaders; i++) {
        if (!pt_str_ieq(r->headers[i].name, "X-Forwarded-For") ||
            r->headers[i].value.len == 0)
            continue;
        if (!first)
            px_put(b, PT_LIT(", "));
        px_put(b, r->headers[i].value.p, r->headers[i].value.len);
        first = 0;
    }
    if (!first)
        px_put(b, PT_LIT(", "));
    px_put(b, ip, px_client_ip(conn_peer(px->c), ip));
    px_put(b, PT_LIT("\r\n"));
}

/* The upstream request head, into px->head (made here: a hit has none).
 * PT_ERROR when out of memory. */
static int px_build_head(struct proxy *px, const struct http_request *r)
{
    const struct conf_upstream *up = px->route->upstream;
    const char *reval = cache_revalidation_fields(&px->cx);
    struct px_text text, *b = &text;

    px_text_init(b);

    if (px->head_fill)
        px_put(b, PT_LIT("GET "));
    else {
        px_put(b, r->method.p, r->method.len);
        px_put(b, PT_LIT(" "));
    }
    if (r->target.len && r->target.p[0] != '/' && r->target.p[0] != '*') {
        /* absolute-form: the upstream gets origin-form */
        if (r->path.len)
            px_put(b, r->path.p, r->path.len);
        else
            px_put(b, PT_LIT("/"));
        if (r->query.len) {
            px_put(b, PT_LIT("?"));
            px_put(b, r->query.p, r->query.len);
        }
    } else {
        px_put(b, r->target.p, r->target.len);
    }
    px_put(b, PT_LIT(" HTTP/1.1\r\n"));
    if (up->host)
        px_put_field(b, PT_STR("Host"), pt_str_c(up->host));
    else
        px_put_field(b, PT_STR("Host"), r->host);
    px_copy_request_fields(px, r, b);
    px_forwarded_for(px, r, b);
    if (conn_is_tls(px->c))
        px_put(b, PT_LIT("X-Forwarded-Proto: https\r\n"));
    else
        px_put(b, PT_LIT("X-Forwarded-Proto: http\r\n"));
    px_put_field(b, PT_STR("X-Forwarded-Host"), r->host);
    px_put(b, PT_LIT("Via: 1.1 portico\r\n"));
    px_request_id(px, b, r);
    px_put_ops(b, &px->route->request_headers);
    if (px->upgrade) {
        /* The one hop-by-hop exchange passed on: a protocol switch. */
        const struct http_header *u =
            http_header_find(r->headers, r->nheaders, "Upgrade");
        px_put(b, PT_LIT("Connection: upgrade\r\n"));
        px_put_field(b, u->name, u->value);
    }
    if (r->chunked)
        px_put(b, PT_LIT("Transfer-Encoding: chunked\r\n"));
    if (reval)
        px_put(b, reval, strlen(reval));
    px_put(b, PT_LIT("\r\n"));
    px->head = px_text_take(b, &px->head_len);
    return px->head ? PT_OK : PT_ERROR;
}

/* ---- failures before the response head ------------------------------------ */

static int px_may_retry(const struct proxy *px)
{
    const struct conf_upstream *up = px->route->upstream;
    return !px->body_started && px->idempotent &&
           px->attempts <= up->retries;
}

static int px_serve_cached(struct proxy *px);

/* The upstream's answer sends us back to the stored copy (a 304 to a
 * revalidation, or an error that stale-if-error covers). */
static void px_answer_from_cache(struct proxy *px, int upstream_reusable)
{
    struct upconn *uc = px->uc;

    px->uc = NULL;
    if (px->counted_busy) {
        ups_server_busy(px->srv, -1);
        px->counted_busy = 0;
    }
    if (uc && upstream_reusable && px->req_done &&
        evbuffer_get_length(bufferevent_get_input(uc->bev)) == 0)
        ups_conn_put(&uc);
    else
        ups_conn_close(&uc);
    if (px->bg_mode) { /* refreshed (or kept): nobody to answer */
        px_bg_finish(px);
        return;
    }
    if (px_serve_cached(px) < 0)
        px_end_error(px, 502, "the cached copy could not be read");
}

/* Nothing was sent to the client yet: answer with status and end. */
static void px_fail(struct proxy *px, int status, const char *why)
{
    const struct conf_upstream *up = px->route->upstream;

    if (cache_on_error(&px->cx, status)) {
        log_info("upstream %s: %s: %d; serving a stale copy "
                 "(stale-if-error)",
                 up->name, why, status);
        px_answer_from_cache(px, 0);
        return;
    }
    log_warn("upstream %s: %s%s%s%s: %d", up->name, px->srv ? "server " : "",
             px->srv ? ups_server_conf(px->srv)->address : "",
             px->srv ? ": " : "", why, status);
    ups_conn_close(&px->uc);
    px_end_error(px, status, why);
}

/* The server could not be reached or answered with an error before the
 * response head: mark it, then try another one when allowed. */
static void px_server_error(struct proxy *px, int status, const char *why)
{
    px->last_status = status;
    px->last_why = why;
    ups_server_failed(px->srv);
    ups_conn_close(&px->uc);
    if (px->counted_busy) {
        ups_server_busy(px->srv, -1);
        px->counted_busy = 0;
    }
    if (px_may_retry(px)) {
        log_info("upstream %s: server %s: %s; trying another",
                 px->route->upstream->name,
                 ups_server_conf(px->srv)->address, why);
        px_connect(px);
        return;
    }
    px_fail(px, status, why);
}

/* ---- connecting ---------------------------------------------------------- */

static void on_up_read(struct bufferevent *bev, void *arg);
static void on_up_write(struct bufferevent *bev, void *arg);
static void on_up_event(struct bufferevent *bev, short what, void *arg);

/* Connected (or taken from the pool): send the head, then the body. */
/* The read timeout runs once the whole request is out: a long upload
 * is bounded by the send timeout instead. */
static void px_timeouts(struct proxy *px)
{
    struct timeval rtv = pt_tv(px->sse ? px->sse_idle : px->to.read);
    struct timeval wtv = pt_tv(px->to.send);

    ups_conn_timeouts(px->uc, px->req_done ? &rtv : NULL, &wtv);
}

static void px_send(struct proxy *px)
{
    struct bufferevent *ub = px->uc->bev;
    int now = px->req_done && !px->uc->tls && !px->upgrade;

    px->state = PX_SEND;
    clock_gettime(CLOCK_MONOTONIC, &px->t0);
    px_timeouts(px);
    ups_conn_read(px->uc, 1);
    if (now) {
        /* No body: the head goes out now, straight from px->head when
         * nothing is queued before it, without arming EV_WRITE (an epoll
         * change to make and undo) unless the socket is full.  What the
         * socket did not take, or an error, is left to EV_WRITE. */
        struct evbuffer *out = bufferevent_get_output(ub);
        size_t sent = 0;
        if (bufferevent_get_enabled(ub) & EV_WRITE)
            bufferevent_disable(ub, EV_WRITE);
        if (evbuffer_get_length(out) == 0) {
            ssize_t n = send(px->uc->fd, px->head, px->head_len,
                             MSG_NOSIGNAL);
            sent = n > 0 ? (size_t)n : 0;
        }
        if (sent == px->head_len)
            return;
        evbuffer_add(out, px->head + sent, px->head_len - sent);
        if (evio_send_now(out, px->uc->fd))
            bufferevent_enable(ub, EV_WRITE);
        return;
    }
    evbuffer_add(bufferevent_get_output(ub), px->head, px->head_len);
    /* a body: on_up_write pumps more of it below a quarter of PX_HIGH;
     * a plain upstream's is written as it comes (px_up_write_now) */
    bufferevent_setwatermark(ub, EV_WRITE, PX_HIGH / 4, 0);
    if (px->uc->tls)
        bufferevent_enable(ub, EV_WRITE);
    else if (bufferevent_get_enabled(ub) & EV_WRITE)
        bufferevent_disable(ub, EV_WRITE);
    if (px->req_done)
        px_up_write_now(px); /* an upgrade's head: no body to pump */
    else
        px_pump_request(px); /* writes the head with the body's first
                              * bytes, or ends the exchange (px freed) */
}

static void px_connect(struct proxy *px)
{
    struct ups_server *s = ups_pick(px->group, px->hash_key, px->tried);

    if (s == NULL) {
        px->srv = NULL;
        if (px->attempts)
            px_fail(px, px->last_status, px->last_why);
        else
            px_fail(px, 503, "no usable server in the upstream group");
        return;
    }
    px->srv = s;
    if (px->attempts && stats_global()) /* another server, for a retry */
        atomic_fetch_add(&stats_global()->retries_next_server, 1);
    px->attempts++;
    if (ups_server_index(s) < 64)
        px->tried |= 1ull << ups_server_index(s);
    px->uc = ups_conn_get(s);
    if (px->uc && px->force_new && px->uc->reused) {
        /* A retry after a stale pooled connection: take a fresh one. */
        ups_conn_close(&px->uc);
        px->uc = ups_conn_get(s);
    }
    if (px->uc == NULL) {
        px_server_error(px, 502, strerror(errno));
        return;
    }
    ups_server_busy(s, +1);
    px->counted_busy = 1;
    bufferevent_setcb(px->uc->bev, on_up_read, on_up_write, on_up_event, px);
    if (px->uc->reused) {
        px_send(px);
        return;
    }
    struct timeval ctv = pt_tv(px->to.connect);
    px->state = PX_CONNECT;
    ups_conn_timeouts(px->uc, NULL, &ctv);
    bufferevent_enable(px->uc->bev, EV_WRITE);
}

/* ---- request body ------------------------------------------------------- */

/* Re-encode decoded chunk data for the upstream; returns PT_OK when the
 * body is complete, PT_AGAIN, or PT_ERROR (bad framing). */
static int px_pump_chunked(struct proxy *px, struct evbuffer *in,
                           struct evbuffer *out)
{
    while (!px->req_chunk.done && evbuffer_get_length(in) > 0 &&
           evbuffer_get_length(out) < PX_HIGH) {
        struct evbuffer_iovec v;
        struct pt_str data;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t n = http_chunked_decode(&px->req_chunk, v.iov_base,
                                        v.iov_len, &data);
        if (n < 0)
            return PT_ERROR;
        px->req_bytes += data.len;
        if (px->max_body && px->req_bytes > px->max_body)
            return PX_TOO_LARGE;
        if (data.len) {
            size_t framing = (size_t)n - data.len;
            evbuffer_add_printf(out, "%zx\r\n", data.len);
            evbuffer_drain(in, framing);
            evbuffer_remove_buffer(in, out, data.len);
            evbuffer_add(out, PT_LIT("\r\n"));
        } else {
            evbuffer_drain(in, (size_t)n);
        }
        px->body_started = 1;
        if (n == 0)
            break;
    }
    if (px->req_chunk.done) {
        /* Trailers are not forwarded: the last chunk ends the body. */
        evbuffer_add(out, PT_LIT("0\r\n\r\n"));
        return PT_OK;
    }
    return PT_AGAIN;
}

static void px_pump_request(struct proxy *px)
{
    struct bufferevent *cb;
    struct evbuffer *in, *out;

    if (px->req_done || px->uc == NULL || px->state == PX_CONNECT)
        return;
    cb = px_client(px);
    in = bufferevent_get_input(cb);
    out = bufferevent_get_output(px->uc->bev);
    if (px->req_chunked) {
        int rc = px_pump_chunked(px, in, out);
        if (rc == PT_ERROR || rc == PX_TOO_LARGE) {
            /* Bad framing or too large: nothing more goes upstream. */
            ups_conn_close(&px->uc);
            if (px->state == PX_DELIVER)
                px_end_abort(px);
            else if (rc == PT_ERROR)
                px_end_error(px, 400, "invalid chunked body framing");
            else
                px_end_error(px, 413, "request body exceeds "
                                             "limits.max_body_bytes");
            return;
        }
        px->req_done = rc == PT_OK;
        if (px->req_done)
            px_timeouts(px);
    } else {
        size_t n = PT_MIN(evbuffer_get_length(in), px->req_left);
        n = PT_MIN(n, PX_HIGH);
        if (n) {
            evbuffer_remove_buffer(in, out, n);
            px->req_left -= n;
            px->body_started = 1;
        }
        if (px->req_left == 0 && !px->req_done) {
            px->req_done = 1;
            px_timeouts(px);
        }
    }
    px_up_write_now(px);
    /* Back-pressure: stop reading the client while upstream is full. */
    if (!px->req_done && evbuffer_get_length(out) >= PX_HIGH)
        bufferevent_disable(cb, EV_READ);
    else
        bufferevent_enable(cb, EV_READ);
}

/* ---- tunnel (after 101 Switching Protocols) ---------------------------------- */

static uint64_t px_now_ms(void)
{
    return pt_clock_ms(CLOCK_MONOTONIC);
}

/* Reading one side of the exchange on or off: the upstream's reads are
 * its upconn's (ups_conn_read), the client's its bufferevent's. */
static void px_reading(struct proxy *px, struct bufferevent *bev, int on)
{
    if (px->uc && bev == px->uc->bev)
        ups_conn_read(px->uc, on);
    else if (on)
        bufferevent_enable(bev, EV_READ);
    else
        bufferevent_disable(bev, EV_READ);
}

/*
 * What goes to a plain upstream (a request head and body, a tunnel's
 * bytes from the client) is written at once, and EV_WRITE is armed only
 * for what the socket did not take; on_up_write turns it off again once
 * all went.  libevent's own way, arming EV_WRITE when bytes are added
 * and disarming it when they are written, costs two epoll changes and a
 * loop turn for every request with a body and every tunnel message.
 * While armed, EV_WRITE carries timeouts.send, as before.  The client's
 * side needs nothing: conn.c writes plain client output itself at the
 * end of the turn.  A TLS upstream stays with libevent throughout.
 */
static void px_up_write_now(struct proxy *px)
{
    struct bufferevent *ub = px->uc->bev;

    if (px->uc->tls || (bufferevent_get_enabled(ub) & EV_WRITE))
        return; /* libevent writes it */
    if (evio_send_now(bufferevent_get_output(ub), px->uc->fd))
        bufferevent_enable(ub, EV_WRITE);
}

/* Move what one side sent to the other; stop reading it while the other
 * side has PX_HIGH unsent (back-pressure, as in libevent's le-proxy). */
static void px_move(struct proxy *px, struct bufferevent *from,
                    struct bufferevent *to)
{
    struct evbuffer *in = bufferevent_get_input(from);
    struct evbuffer *out = bufferevent_get_output(to);
    size_t n = evbuffer_get_length(in);

    if (n) {
        evbuffer_remove_buffer(in, out, n);
        px->last_active = px_now_ms();
        if (px->uc && to == px->uc->bev)
            px_up_write_now(px);
    }
    if (px->closing)
        return;
    px_reading(px, from, evbuffer_get_length(out) < PX_HIGH);
}

static void on_tunnel_idle(evutil_socket_t fd, short what, void *arg)
{
    struct proxy *px = arg;
    uint64_t idle = px_now_ms() - px->last_active;

    if (idle < px->websocket_idle) {
        struct timeval tv = pt_tv(px->websocket_idle - idle);
        evtimer_add(px->idle_ev, &tv);
        return;
    }
    log_info("upstream %s: tunnel idle for %llu ms (timeouts.websocket_idle);"
             " closing",
             px->route->upstream->name, (unsigned long long)idle);
    px_end_abort(px);
}

/* One side closed: what it sent still goes to the other side, then the
 * exchange ends.  Returns 1 when the flush is still under way. */
static int px_tunnel_close(struct proxy *px, struct bufferevent *from,
                           struct bufferevent *to)
{
    if (from)
        px_move(px, from, to);
    if (evbuffer_get_length(bufferevent_get_output(to)) == 0)
        return 0;
    px->closing = 1;
    px->flush_to = to;
    bufferevent_setwatermark(to, EV_WRITE, 0, 0);
    if (from)
        px_reading(px, from, 0);
    return 1;
}

/* PT_ERROR, with nothing sent, when out of memory. */
static int px_start_tunnel(struct proxy *px, const struct http_response *r)
{
    struct bufferevent *cb = px_client(px), *ub = px->uc->bev;
    struct evbuffer *out = bufferevent_get_output(cb);
    struct timeval wtv = pt_tv(px->to.send), itv = pt_tv(px->websocket_idle);
    struct px_text t;

    px_text_init(&t);
    px_put_status(&t, 101, r->reason);
    for (size_t i = 0; i < r->nheaders; i++) {
        struct pt_str name = r->headers[i].name;
        if (!px_hop_by_hop(name) || pt_str_ieq(name, "Upgrade"))
            px_put_field(&t, name, r->headers[i].value);
    }
    px_put(&t, PT_LIT("Connection: upgrade\r\n\r\n"));
    if (px_text_end(&t, out) < 0)
        return PT_ERROR;
    px->state = PX_TUNNEL;
    px->status = 101;
    px->upstream_us = px_elapsed_us(&px->t0);
    px->last_active = px_now_ms();
    ups_server_ok(px->srv);
    /* Idle tunnels are bounded by websocket_idle, not the read timeout. */
    ups_conn_timeouts(px->uc, NULL, &wtv);
    bufferevent_setwatermark(ub, EV_WRITE, 0, 0);
    bufferevent_enable(ub, EV_WRITE); /* the client's bytes go up as well */
    px->idle_ev = evtimer_new(bufferevent_get_base(ub), on_tunnel_idle, px);
    if (px->idle_ev)
        evtimer_add(px->idle_ev, &itv);
    conn_proxy_log(px->c, 101, ups_server_conf(px->srv)->address,
                   px->upstream_us);
    return PT_OK;
}

/* ---- response head ---------------------------------------------------------- */

static void px_copy_response_fields(struct proxy *px,
                                    const struct http_response *r,
                                    struct px_text *b)
{
    const struct conf_header_ops *ops = &px->route->response_headers;
    int lists = px_has_connection(r->headers, r->nheaders);

    for (size_t i = 0; i < r->nheaders; i++) {
        struct pt_str name = r->headers[i].name;
        if (px_hop_by_hop(name) ||
            (lists && px_connection_lists(r->headers, r->nheaders, name)) ||
            route_header_dropped(ops, name))
            continue;
        /* portico frames the body itself */
        if (pt_str_ieq(name, "Content-Length") && px->body != BODY_LENGTH &&
            px->body != BODY_NONE)
            continue;
        px_put_field(b, name, r->headers[i].value);
    }
}

static enum px_body px_body_mode(struct proxy *px,
                                 const struct http_response *r)
{
    if ((px->head_only && !px->head_fill) || r->status == 204 ||
        r->status == 304)
        return BODY_NONE;
    if (r->chunked)
        return px->client_http10 ? BODY_CHUNKED_TO_RAW : BODY_CHUNKED;
    if (r->content_length >= 0)
        return BODY_LENGTH;
    return px->client_http10 ? BODY_CLOSE : BODY_CLOSE_TO_CHUNKED;
}

/* Does the upstream announce when it closes idle connections?  Retire a
 * pooled connection a second earlier. */
static void px_learn_keepalive(struct proxy *px, const struct http_response *r)
{
    const struct http_header *ka =
        http_header_find(r->headers, r->nheaders, "Keep-Alive");
    const char *p, *end;

    if (ka == NULL)
        return;
    end = ka->value.p + ka->value.len;
    for (p = ka->value.p; p + 8 <= end; p++) {
        if (strncasecmp(p, "timeout=", 8) != 0)
            continue;
        uint64_t s = 0;
        for (p += 8; p < end && *p >= '0' && *p <= '9' && s < 100000; p++)
            s = s * 10 + (uint64_t)(*p - '0');
        px->uc->idle_ms = s > 1 ? (s - 1) * 1000 : 500;
        return;
    }
}

/* Relay an interim response (100 Continue, 103 Early Hints).  PT_ERROR,
 * with nothing sent, when out of memory. */
static int px_relay_interim(struct proxy *px, const struct http_response *r)
{
    struct px_text t;

    if (px->client_http10 || r->status == 101)
        return PT_OK; /* HTTP/1.0 has no interim responses */
    px_text_init(&t);
    px_put_status(&t, r->status, r->reason);
    for (size_t i = 0; i < r->nheaders; i++)
        if (!px_hop_by_hop(r->headers[i].name))
            px_put_field(&t, r->headers[i].name, r->headers[i].value);
    px_put(&t, PT_LIT("\r\n"));
    return px_text_end(&t, px_out(px));
}

/* PT_ERROR, with nothing sent, when out of memory. */
static int px_send_head(struct proxy *px, const struct http_response *r)
{
    struct evbuffer *out = px_out(px);
    /* A body without framing for the client ends with the connection. */
    int keep = px_keep(px) && px->body != BODY_CLOSE &&
               px->body != BODY_CHUNKED_TO_RAW;
    struct px_text t;
    char csbuf[300];
    const char *cs;

    px_text_init(&t);
    px_put_status(&t, r->status, r->reason);
    px_copy_response_fields(px, r, &t);
    px_put_ops(&t, &px->route->response_headers);
    cs = cache_on_response(&px->cx, px->conf, px->route, r,
                           !px->head_only || px->head_fill, csbuf,
                           sizeof(csbuf));
    if (cs)
        px_put(&t, cs, strlen(cs));
    if (px->body == BODY_CHUNKED || px->body == BODY_CLOSE_TO_CHUNKED)
        px_put(&t, PT_LIT("Transfer-Encoding: chunked\r\n"));
    if (!keep)
        px_put(&t, PT_LIT("Connection: close\r\n"));
    else if (px->client_http10)
        px_put(&t, PT_LIT("Connection: keep-alive\r\n"));
    px_put(&t, PT_LIT("\r\n"));
    if (px_text_end(&t, out) < 0)
        return PT_ERROR;
    px_set_keep(px, keep);
    return PT_OK;
}

/* Parse an upstream response head from [p, p + len) into r, its fields
 * into hdrs. */
static ssize_t px_parse_head(struct http_response *r,
                             struct http_header *hdrs, const void *p,
                             size_t len)
{
    static const struct http_limits lim = {
        PX_MAX_RESP_HEAD, PX_MAX_RESP_HEAD, PX_MAX_RESP_HEADERS};

    memset(r, 0, sizeof(*r));
    r->headers = hdrs;
    r->headers_cap = PX_MAX_RESP_HEADERS;
    return http_parse_response(p, len, &lim, r);
}

/* Parse what the upstream sent so far.  Returns PT_OK once a final head
 * was handled, PT_AGAIN for more, PT_ERROR after answering. */
static int px_read_head(struct proxy *px)
{
    struct evbuffer *in = bufferevent_get_input(px->uc->bev);
    struct http_header hdrs[PX_MAX_RESP_HEADERS];

    for (;;) {
        struct http_response r;
        struct evbuffer_iovec v;
        ssize_t n = PT_AGAIN;

        /* The head is nearly always whole in the first chain (one read
         * brought it): parsed there, its end found by the parser.  Else
         * the buffer is searched for the end, and what lies before it
         * made one piece. */
        if (evbuffer_peek(in, -1, NULL, &v, 1) == 1)
            n = px_parse_head(&r, hdrs, v.iov_base,
                              PT_MIN(v.iov_len, PX_MAX_RESP_HEAD));
        if (n == PT_AGAIN) {
            struct evbuffer_ptr hit = evbuffer_search(in, "\r\n\r\n", 4,
                                                      NULL);
            if (hit.pos < 0) {
                if (evbuffer_get_length(in) > PX_MAX_RESP_HEAD) {
                    px_server_error(px, 502, "response head too large");
                    return PT_ERROR;
                }
                return PT_AGAIN;
            }
            size_t hl = (size_t)hit.pos + 4;
            n = px_parse_head(&r, hdrs, evbuffer_pullup(in, (ssize_t)hl),
                              hl);
        }
        if (n == PT_AGAIN)
            return PT_AGAIN;
        if (n < 0) {
            px_server_error(px, 502, "invalid response from upstream");
            return PT_ERROR;
        }
        if (r.status == 101) {
            if (!px->upgrade) {
                px_server_error(px, 502, "101 without an upgrade request");
                return PT_ERROR;
            }
            if (px_start_tunnel(px, &r) < 0) {
                px_fail(px, 502, "out of memory");
                return PT_ERROR;
            }
            evbuffer_drain(in, (size_t)n);
            px_move(px, px->uc->bev, px_client(px));
            px_move(px, px_client(px), px->uc->bev);
            return PT_ERROR; /* not a response to deliver */
        }
        if (r.status < 200) {
            if (px_relay_interim(px, &r) < 0) {
                px_fail(px, 502, "out of memory");
                return PT_ERROR;
            }
            evbuffer_drain(in, (size_t)n);
            continue;
        }
        if (r.status == 304 && cache_on_not_modified(&px->cx, &r)) {
            /* Revalidated: the stored copy is fresh again. */
            px->up_keep = r.keep_alive;
            evbuffer_drain(in, (size_t)n);
            px_answer_from_cache(px, r.keep_alive);
            return PT_ERROR; /* nothing more to read for this request */
        }
        if (r.status >= 500 && cache_on_error(&px->cx, r.status)) {
            evbuffer_drain(in, (size_t)n);
            px_answer_from_cache(px, 0);
            return PT_ERROR;
        }
        px->status = r.status;
        px->body = px_body_mode(px, &r);
        px->up_keep = r.keep_alive && px->body != BODY_CLOSE &&
                      px->body != BODY_CLOSE_TO_CHUNKED;
        px->resp_left = r.content_length > 0 ? (uint64_t)r.content_length
                                             : 0;
        px->upstream_us = px_elapsed_us(&px->t0);
        ups_server_observe(px->srv, px->upstream_us);
        const struct http_header *ct =
            http_header_find(r.headers, r.nheaders, "Content-Type");
        if (ct && ct->value.len >= 17 &&
            strncasecmp(ct->value.p, "text/event-stream", 17) == 0) {
            /* SSE: streams may idle for long; sse_idle bounds them. */
            px->sse = 1;
            px_timeouts(px);
        }
        px_learn_keepalive(px, &r);
        if (px_send_head(px, &r) < 0) {
            px_fail(px, 502, "out of memory");
            return PT_ERROR;
        }
        if (px->head_fill && !px->cx.storing) {
            /* Not stored after all: the HEAD's client needs no body,
             * and the upstream connection goes rather than read it. */
            px->body = BODY_NONE;
            px->up_keep = 0;
        }
        evbuffer_drain(in, (size_t)n);
        ups_server_ok(px->srv);
        px->state = PX_DELIVER;
        return PT_OK;
    }
}

/* ---- response body ----------------------------------------------------------- */

/* Forward validated chunked framing as it is (HTTP/1.1 client) or decode
 * it (HTTP/1.0 client).  Returns PT_ERROR on bad framing. */
static int px_pump_resp_chunked(struct proxy *px, struct evbuffer *in,
                                struct evbuffer *out)
{
    while (!px->resp_chunk.done && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        struct pt_str data;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t n = http_chunked_decode(&px->resp_chunk, v.iov_base,
                                        v.iov_len, &data);
        if (n < 0)
            return PT_ERROR;
        px->sent += data.len;
        cache_on_data(&px->cx, px->conf, data.p, data.len);
        if (px->body == BODY_CHUNKED) {
            evbuffer_remove_buffer(in, out, (size_t)n);
        } else {
            evbuffer_drain(in, (size_t)n - data.len);
            evbuffer_remove_buffer(in, out, data.len);
        }
        if (n == 0)
            break;
    }
    return PT_OK;
}

static void px_pump_response(struct proxy *px)
{
    struct evbuffer *in = bufferevent_get_input(px->uc->bev);
    struct evbuffer *out = px->head_fill ? px->sink : px_out(px);
    size_t len = evbuffer_get_length(in);

    switch (px->body) {
    case BODY_NONE:
        px->resp_done = 1;
        break;
    case BODY_LENGTH: {
        size_t n = PT_MIN(len, px->resp_left);
        cache_on_body(&px->cx, px->conf, in, n);
        evbuffer_remove_buffer(in, out, n);
        px->resp_left -= n;
        px->sent += n;
        px->resp_done = px->resp_left == 0;
        break;
    }
    case BODY_CHUNKED:
    case BODY_CHUNKED_TO_RAW:
        if (px_pump_resp_chunked(px, in, out) < 0) {
            log_warn("upstream %s: server %s: invalid chunked body",
                     px->route->upstream->name,
                     ups_server_conf(px->srv)->address);
            px->up_keep = 0;
            px_end_abort(px);
            return;
        }
        px->resp_done = px->resp_chunk.done;
        cache_progress(&px->cx);
        break;
    case BODY_CLOSE_TO_CHUNKED:
        cache_on_body(&px->cx, px->conf, in, len);
        if (len) {
            evbuffer_add_printf(out, "%zx\r\n", len);
            evbuffer_remove_buffer(in, out, len);
            evbuffer_add(out, PT_LIT("\r\n"));
            px->sent += len;
        }
        break;
    case BODY_CLOSE:
        cache_on_body(&px->cx, px->conf, in, len);
        px->sent += len;
        evbuffer_remove_buffer(in, out, len);
        break;
    }
    if (px->head_fill)
        evbuffer_drain(out, evbuffer_get_length(out)); /* stored, not sent */
    if (px->resp_done) {
        struct upconn *uc = px->uc;
        px->uc = NULL;
        ups_server_busy(px->srv, -1);
        px->counted_busy = 0;
        uc->requests++;
        /* Pool it only when both messages ended cleanly. */
        if (px->up_keep && px->req_done &&
            evbuffer_get_length(bufferevent_get_input(uc->bev)) == 0)
            ups_conn_put(&uc);
        else
            ups_conn_close(&uc);
        px_log_cache(px);
        cache_end(&px->cx, 1);
        px_end_done(px, px->status, px->head_fill ? 0 : px->sent,
                        ups_server_conf(px->srv)->address, px->upstream_us);
        return;
    }
    if (px->bg_mode) {
        evbuffer_drain(out, evbuffer_get_length(out)); /* stored, not sent */
        return;
    }
    /* Back-pressure: a slow client slows the upstream read. */
    if (evbuffer_get_length(out) >= PX_HIGH)
        ups_conn_read(px->uc, 0);
}

/* ---- upstream callbacks ------------------------------------------------------ */

static void on_up_read(struct bufferevent *bev, void *arg)
{
    struct proxy *px = arg;

    if (px->state == PX_TUNNEL) {
        px_move(px, bev, px_client(px));
        return;
    }
    if (px->state == PX_SEND && px_read_head(px) != PT_OK)
        return;
    if (px->state == PX_DELIVER)
        px_pump_response(px);
}

static void on_up_write(struct bufferevent *bev, void *arg)
{
    struct proxy *px = arg;

    if (px->state != PX_TUNNEL) {
        if (!px->uc->tls &&
            evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            bufferevent_disable(bev, EV_WRITE); /* px_up_write_now's */
        px_pump_request(px);
        return;
    }
    if (px->closing) {
        if (px->flush_to == bev &&
            evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            px_end_abort(px);
        return;
    }
    /* All written (the low watermark is 0): from now on px_move writes
     * the client's bytes itself (px_up_write_now). */
    if (!px->uc->tls)
        bufferevent_disable(bev, EV_WRITE);
    px_move(px, px_client(px), bev);
}

/* The upstream closed or failed before its response head was complete. */
static void px_early_close(struct proxy *px, short what)
{
    int nothing = evbuffer_get_length(bufferevent_get_input(px->uc->bev)) ==
                  0;

    if (px->uc->reused && nothing && !px->body_started) {
        /* The classic keep-alive race: the upstream closed the pooled
         * connection as we sent.  Nothing of the body left the client's
         * buffer, so the request can go again, on a fresh connection. */
        ups_stale_retries++;
        if (stats_global())
            atomic_fetch_add(&stats_global()->retries_stale, 1);
        log_info("upstream %s: server %s closed a pooled connection; "
                 "retrying on a new one (%lu so far)",
                 px->route->upstream->name,
                 ups_server_conf(px->srv)->address, ups_stale_retries);
        ups_conn_close(&px->uc);
        ups_server_busy(px->srv, -1);
        px->counted_busy = 0;
        px->force_new = 1;
        px->tried &= ~(1ull << (ups_server_index(px->srv) & 63));
        px->attempts--;
        px_connect(px);
        return;
    }
    px_server_error(px, 502, (what & BEV_EVENT_EOF)
                                 ? "upstream closed the connection"
                                 : "upstream connection reset");
}

static void on_up_event(struct bufferevent *bev, short what, void *arg)
{
    struct proxy *px = arg;

    if (what & BEV_EVENT_CONNECTED) {
        px_send(px);
        return;
    }
    if (px->state == PX_TUNNEL) {
        /* The upstream closed (or failed): flush to the client, end. */
        if ((what & BEV_EVENT_TIMEOUT) || px->closing ||
            !px_tunnel_close(px, bev, px_client(px))) {
            px_end_abort(px);
        } else {
            ups_conn_read(px->uc, 0);
            bufferevent_disable(bev, EV_WRITE);
        }
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if (px->state == PX_DELIVER) {
            log_warn("upstream %s: server %s: read timeout mid-body",
                     px->route->upstream->name,
                     ups_server_conf(px->srv)->address);
            px_end_abort(px);
            return;
        }
        px_server_error(px, 504, px->state == PX_CONNECT
                                     ? "connect timed out"
                                     : "upstream timed out");
        return;
    }
    if (px->state == PX_CONNECT) {
        unsigned long e = bufferevent_get_openssl_error(bev);
        if (e) {
            char why[200];
            ERR_error_string_n(e, why, sizeof(why));
            log_warn("upstream %s: server %s: TLS: %s",
                     px->route->upstream->name,
                     ups_server_conf(px->srv)->address, why);
        }
        px_server_error(px, 502, "connect failed");
        return;
    }
    if (px->state == PX_SEND) {
        px_early_close(px, what);
        return;
    }
    /* DELIVER: the end of a close-delimited body, or a truncation. */
    if ((what & BEV_EVENT_EOF) && (px->body == BODY_CLOSE ||
                                   px->body == BODY_CLOSE_TO_CHUNKED)) {
        px_pump_response(px);
        if (px->body == BODY_CLOSE_TO_CHUNKED)
            evbuffer_add(px_out(px),
                         "0\r\n\r\n", 5);
        px->up_keep = 0;
        px->resp_done = 1;
        px->body = BODY_NONE;
        px_pump_response(px);
        return;
    }
    log_warn("upstream %s: server %s: connection lost mid-body",
             px->route->upstream->name, ups_server_conf(px->srv)->address);
    px_end_abort(px);
}

/* ---- the client side ----------------------------------------------------------- */

void proxy_on_client_read(struct proxy *px)
{
    if (px->state == PX_TUNNEL) {
        if (!px->closing)
            px_move(px, px_client(px), px->uc->bev);
        return;
    }
    px_pump_request(px);
}

int proxy_on_client_eof(struct proxy *px)
{
    if (px->state != PX_TUNNEL || px->closing)
        return 0;
    return px_tunnel_close(px, px_client(px), px->uc->bev);
}

void proxy_on_client_drained(struct proxy *px)
{
    if (px->cache_follow) {
        px_follow_step(px);
        return;
    }
    if (px->state == PX_TUNNEL) {
        if (!px->closing)
            px_move(px, px->uc->bev, px_client(px));
        else if (px->flush_to == px_client(px))
            px_end_abort(px);
        return;
    }
    if (px->state == PX_DELIVER && px->uc) {
        ups_conn_read(px->uc, 1);
        if (evbuffer_get_length(bufferevent_get_input(px->uc->bev)))
            px_pump_response(px);
    }
}

int proxy_request_done(const struct proxy *px)
{
    return px->req_done;
}

/*
 * Freed proxies kept for the next requests, per worker: a struct proxy
 * is ~0.9 KB, and glibc turns malloc + memset into calloc, which never
 * uses the per-thread cache (and a chunk this size barely fits it).
 */
#define PX_POOL_MAX 64

static struct proxy *px_pool;
static unsigned px_pool_n;

static struct proxy *px_pool_get(void)
{
    struct proxy *px = px_pool;

    if (px != NULL) {
        px_pool = px->pool_next;
        px_pool_n--;
    } else if ((px = malloc(sizeof(*px))) == NULL) {
        return NULL;
    }
    memset(px, 0, sizeof(*px));
    return px;
}

static void px_release(struct proxy *px)
{
    if (px_pool_n >= PX_POOL_MAX) {
        free(px);
        return;
    }
    px->pool_next = px_pool;
    px_pool = px;
    px_pool_n++;
}

/* A proxy for r with everything but the cache and the head settled. */
static struct proxy *px_alloc(struct conn *c, struct ups_set *ups,
                              const struct conf_route *route,
                              const struct http_request *r,
                              const struct conf *cf)
{
    const struct conf_upstream *up = route->upstream;
    struct proxy *px = px_pool_get();

    if (px == NULL)
        return NULL;
    px->c = c;
    px->route = route;
    px->group = ups_group_of(ups, up);
    px->idempotent = px_idempotent(r->method_id);
    px->head_only = r->method_id == HTTP_M_HEAD;
    px->client_http10 = r->version_minor == 0;
    px->req_chunked = r->chunked;
    px->req_left = r->content_length > 0 ? (uint64_t)r->content_length : 0;
    px->req_done = !r->chunked && px->req_left == 0;
    px->max_body = cf->limits.max_body_bytes;
    px->upgrade = r->upgrade && r->method_id == HTTP_M_GET;
    px->websocket_idle = cf->timeouts.websocket_idle;
    px->sse_idle = cf->timeouts.sse_idle;
    px->to.connect = route->timeouts.connect ? route->timeouts.connect
                                             : up->timeouts.connect;
    px->to.send = route->timeouts.send ? route->timeouts.send
                                       : up->timeouts.send;
    px->to.read = route->timeouts.read ? route->timeouts.read
                                       : up->timeouts.read;
    struct ups_hash_input hin = {conn_peer(c), r->target, {"", 0}};
    if (up->hash_header) {
        const struct http_header *h =
            http_header_find(r->headers, r->nheaders, up->hash_header);
        if (h)
            hin.header = h->value;
    }
    px->hash_key = ups_hash_key(px->group, &hin);
    px->conf = cf;
    return px;
}

struct proxy *proxy_start(struct conn *c, struct ups_set *ups,
                          const struct conf_route *route,
                          const struct http_request *r,
                          const struct conf *cf)
{
    struct proxy *px = px_alloc(c, ups, route, r, cf);

    if (px == NULL)
        return NULL;
    enum cache_outcome co =
        route->cache.enabled ? cache_begin(&px->cx, cf, route, r,
                                           conn_is_tls(c))
                             : CACHE_PASS;
    if ((co == CACHE_SERVE || co == CACHE_WAIT) && !px->req_done) {
        /* a body to read: forward instead */
        cache_end(&px->cx, 0);
        px->cx.fwd = CACHE_FWD_REQUEST;
        px->cx.detail = "request-body";
    } else if (co == CACHE_ONLY_IF_CACHED) {
        px->only_if_cached = 1;
    } else if (co == CACHE_SERVE) {
        px->cache_hit = 1;
        if (px->cx.swr_refresh)
            px->bg = px_new_refresh(c, ups, route, r, cf, px);
        return px; /* answered from the zone: no upstream head to build */
    } else if (co == CACHE_FILL && px->head_only &&
               (px->sink = evbuffer_new()) != NULL) {
        /* A HEAD miss fills the entry a GET would: the server is asked
         * for the whole response once, and later GETs and HEADs hit. */
        px->head_fill = 1;
    }
    if (px_build_head(px, r) < 0)
        proxy_free(&px);
    return px;
}

/* ---- reading along another request's fill (one fill per key) ---- */

static LIST_HEAD(, proxy) followers;
static struct event *follow_timer;

static void px_follow_unlink(struct proxy *px)
{
    if (!px->cache_follow)
        return;
    LIST_REMOVE(px, wlink);
    px->cache_follow = 0;
}

/* Send what the fill has added; finish, wait, or fall back. */
static void px_follow_step(struct proxy *px)
{
    struct evbuffer *out = px_out(px);
    int keep = px_keep(px);
    int rc = cache_follow(&px->cx, &px->route->response_headers, out, &keep,
                          px->client_http10, &px->follow_sent,
                          &px->follow_status);

    if (rc == 0)
        return;
    px_follow_unlink(px);
    if (rc == -1) {
        /* The fill gave up before its head: fetch it ourselves. */
        cache_end(&px->cx, 0);
        px->cx.fwd = CACHE_FWD_URI_MISS;
        px->cx.detail = "uncacheable";
        px_connect(px);
        return;
    }
    if (rc == -2) {
        cache_end(&px->cx, 0);
        px_end_abort(px);
        return;
    }
    px_log_cache(px);
    cache_end(&px->cx, 0);
    px_set_keep(px, keep);
    px_end_done(px, px->follow_status, px->follow_sent, NULL, 0);
}

/* A fill progressed somewhere (or the periodic check): every follower
 * in this worker takes what is new.  The list may change under us. */
void proxy_cache_wakeup(void)
{
    struct proxy *px = LIST_FIRST(&followers), *next;

    for (; px; px = next) {
        next = LIST_NEXT(px, wlink);
        px_follow_step(px);
    }
}

/* The safety net for a follower whose filler died without a word. */
static void on_follow_timer(evutil_socket_t fd, short what, void *arg)
{
    struct timeval tv = {1, 0};

    proxy_cache_wakeup();
    if (!LIST_EMPTY(&followers))
        evtimer_add(follow_timer, &tv);
}

static void px_follow_start(struct proxy *px)
{
    struct timeval tv = {1, 0};

    px->cache_follow = 1;
    LIST_INSERT_HEAD(&followers, px, wlink);
    if (follow_timer == NULL)
        follow_timer = evtimer_new(bufferevent_get_base(px_client(px)),
                                   on_follow_timer, NULL);
    if (follow_timer && !evtimer_pending(follow_timer, NULL))
        evtimer_add(follow_timer, &tv);
    px_follow_step(px);
}

/* A fresh copy in the cache answers the request; no upstream involved. */
static int px_serve_cached(struct proxy *px)
{
    struct evbuffer *out = px_out(px);
    int keep = px_keep(px);
    uint64_t bytes;
    int status = cache_serve(&px->cx, &px->route->response_headers, out,
                             keep, px->client_http10, &bytes);

    if (status < 0)
        return PT_ERROR; /* nothing was queued */
    px_log_cache(px);
    cache_end(&px->cx, 0);
    px_set_keep(px, keep);
    if (stats_global())
        atomic_fetch_add(&stats_global()->cache_hits, 1);
    px_end_done(px, status, bytes, NULL, 0);
    return PT_OK;
}

/* ---- background refresh (stale-while-revalidate) ---- */

static void px_bg_finish(struct proxy *px)
{
    struct gen *g = px->bg_gen;

    px->bg_gen = NULL;
    proxy_free(&px);
    gen_release(&g);
}

/* The refresh a stale-while-revalidate hit asks for: a request of its own
 * to the upstream, built now from r, whose response only goes into the
 * cache.  NULL when it cannot be had (the next request will try). */
static struct proxy *px_new_refresh(struct conn *c, struct ups_set *ups,
                                    const struct conf_route *route,
                                    const struct http_request *r,
                                    const struct conf *cf,
                                    struct proxy *fg)
{
    struct proxy *px = px_alloc(c, ups, route, r, cf);

    if (px == NULL)
        return NULL;
    px->sink = evbuffer_new();
    if (px->sink == NULL ||
        cache_begin_refresh(&px->cx, &fg->cx) != PT_OK) {
        proxy_free(&px);
        return NULL;
    }
    px->head_fill = px->head_only; /* after a HEAD hit: refreshed as GET */
    if (px_build_head(px, r) < 0) /* with the stored validators */
        proxy_free(&px);
    return px;
}

/* Detach the prepared refresh from the client and send it. */
static void px_bg_start(struct proxy *px, struct conn *c)
{
    px->bg_gen = gen_ref(conn_gen(c));
    px->c = NULL;
    px->bg_mode = 1;
    px->client_http10 = 0;
    px_connect(px);
}

void proxy_run(struct proxy *px)
{
    if (px->bg) {
        struct proxy *bg = px->bg;
        px->bg = NULL;
        px_bg_start(bg, px->c);
    }
    if (px->cache_hit) {
        /* The entry was judged with its head parsed, and stays pinned:
         * serving it fails only when memory does. */
        if (px_serve_cached(px) < 0)
            px_end_error(px, 500, "out of memory serving a cached copy");
        return;
    }
    if (px->only_if_cached) {
        px_log_cache(px);
        px_end_error(px, 504, "only-if-cached: not in the cache");
        return;
    }
    /* Waiting on the upstream or a fill: a client that goes is seen. */
    conn_watch_client(px->c);
    if (px->cx.following) {
        px_follow_start(px);
        return;
    }
    px_connect(px);
}

void proxy_free(struct proxy **pp)
{
    struct proxy *px = *pp;

    if (px == NULL)
        return;
    *pp = NULL;
    if (px->counted_busy)
        ups_server_busy(px->srv, -1);
    ups_conn_close(&px->uc);
    if (px->idle_ev)
        event_free(px->idle_ev);
    px_follow_unlink(px);
    cache_end(&px->cx, 0);
    if (px->bg)
        proxy_free(&px->bg);
    if (px->sink)
        evbuffer_free(px->sink);
    free(px->head); /* none for a hit */
    px_release(px);
}
