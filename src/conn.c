/*
 * conn.c -- one client connection: the HTTP/1.1 server state machine.
 *
 *   HEAD --(head parsed)--> BODY --(body consumed)--> respond --> HEAD
 *     |                                                  |
 *     +--(bad input, timeout)--> CLOSING --> LINGER --> freed
 *
 * The connection owns its bufferevent (socket + buffers) and one timer
 * whose meaning follows the state: keep-alive idle or header deadline in
 * HEAD, lingering-close bound in LINGER.  Body reads and response writes
 * are bounded by the bufferevent's read/write timeouts.  A request holds
 * a reference to the configuration generation it started with.
 *
 * Between requests a plain-TCP connection dozes (conn_doze: it stays
 * awake, watching its socket with one event), and the ones idle longest
 * beyond CONN_DOZE_MAX sleep (struct sleeper below): their struct conn
 * goes back to the worker's pool and ~0.2 KB stays.  A new connection is
 * read at once (conn_read_now), and its socket is registered with epoll
 * only when it must wait for bytes.
 *
 * Calls: http_parse.c, route.c, log.c, worker.h.
 */
#include "conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/err.h>

#include "admin.h"
#include "cache.h"
#include "evio.h"
#include "http_parse.h"
#include "log.h"
#include "stats.h"
#include "proxy.h"
#include "route.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

/* Past this much unsent output, pipelined requests wait their turn. */
#define CONN_OUTPUT_HIGH (64 * 1024)
#define CONN_MAX_SINGLE_WRITE (1024 * 1024) /* bytes per write turn */
#define CONN_MAX_SINGLE_READ (256 * 1024)   /* bytes per read turn */
/* How long a closing connection keeps reading so the client gets our
 * last response instead of a reset. */
#define CONN_LINGER_MS 2000

enum conn_state {
    CONN_HEAD,    /* waiting for or reading a request head */
    CONN_BODY,    /* reading (and discarding) a request body */
    CONN_PROXY,   /* the request is being forwarded upstream */
    CONN_FLUSH,   /* response queued; next request waits for the drain */
    CONN_CLOSING, /* last response queued; close when written */
    CONN_LINGER,  /* write side shut; draining input until EOF or timer */
};

/* The exchange in flight.  Reset for every request. */
struct conn_req {
    struct gen *gen; /* ref: the generation this request runs under */
    const struct conf_route *route; /* borrowed from gen */
    int version_minor;               /* -1 before a request line parsed */
    unsigned keep_alive : 1;
    unsigned head_only : 1;
    unsigned chunked : 1;
    uint64_t body_left;    /* Content-Length bytes still to read */
    uint64_t body_bytes;   /* decoded body bytes read so far */
    struct http_chunked chunk;
    struct proxy *px;      /* owns, while proxying */
    struct timeval start;
    /* access-log copies of method, target, referer, user agent */
    struct pt_str method, target, referer, user_agent;
    struct pt_str request_id; /* the client's X-Request-Id, or rid */
    const char *cache;        /* static: what the cache did, or NULL */
    char rid[33];             /* one made for the request */
};

struct conn {
    LIST_ENTRY(conn) link; /* the worker's open conns, or the pool */
    struct worker *w;         /* borrowed */
    struct bufferevent *bev;  /* owns: socket and buffers */
    struct event *timer;      /* owns */
    struct sockaddr_storage peer;
    enum conn_state state;
    unsigned nreq;        /* requests completed on this connection */
    size_t scanned;       /* head bytes already scanned */
    uint32_t tail;        /* the last four bytes scanned */
    unsigned line_seen : 1;    /* the request line is complete */
    unsigned head_started : 1; /* a byte of the next head has arrived */
    unsigned head_timed : 1;   /* its header deadline is armed */
    unsigned stop_after : 1;   /* graceful stop: close after this one */
    unsigned tls : 1;          /* accepted on a TLS listener */
    unsigned admin : 1;        /* accepted on the admin listener */
    int access_format;         /* the listener's (or the global) format */
    uint64_t bytes_in, bytes_out; /* not yet added to the shared stats */
    struct conn_req req;
    char *logbuf;         /* owns: storage for req's access-log copies */
    size_t logcap;
    /* Plain TCP output is written by on_flush at the end of the loop
     * turn that queued it, with the bufferevent's EV_WRITE off: no epoll
     * change per response.  Only what the socket does not take at once
     * arms EV_WRITE (write_armed) until libevent has written it. */
    LIST_ENTRY(conn) flink; /* the worker's flush queue */
    unsigned direct : 1;       /* plain TCP, written by on_flush */
    unsigned client_closes : 1; /* the last request said it is the last */
    unsigned flush_queued : 1;
    unsigned write_armed : 1;
    /* Dozing: between requests, still awake (conn_doze). */
    struct event wake;         /* the next request's first byte */
    TAILQ_ENTRY(conn) dlink;   /* the worker's dozers, oldest first */
    uint64_t doze_until;       /* ms (conn_now_ms): keep-alive deadline */
    evutil_socket_t fd;        /* bev's, from conn_get to conn_release */
    unsigned wake_on : 1;      /* wake is registered */
    unsigned wake_watch : 1;   /* wake stands for reads (conn_watch_client) */
    unsigned dozing : 1;
    /* the bufferevent's timeouts, as conn_read_timeout last set them */
    unsigned to_set : 1;
    uint64_t to_read, to_send;
};

/*
 * A plain-TCP keep-alive connection idle beyond the CONN_DOZE_MAX that
 * doze (conn_doze) sleeps: its struct conn (bufferevent, buffers, timer,
 * per-request state: ~1.8 KB) goes back to the worker's pool, and a
 * struct sleeper (~0.2 KB) watches the socket: one persistent read
 * event whose timeout is the idle deadline.  A readable socket wakes it
 * into a conn from the pool.  While it
 * switches, both events are registered on the socket for a moment, so
 * epoll sees no change and no system call is made.  A TLS connection
 * keeps its session in its bufferevent and never sleeps.
 */
struct sleeper {
    LIST_ENTRY(sleeper) link; /* the worker's sleepers */
    struct worker *w;            /* borrowed */
    struct event ev;             /* owns the socket while asleep */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer;
    unsigned nreq;
    int access_format;
    unsigned admin : 1;
    unsigned stop_after : 1;
};

/* Free conns kept for reuse, their bufferevents without a socket: the
 * most that wake at once, up to this many. */
#define CONN_POOL_MAX 256
/* Connections between requests that stay awake (conn_doze): past this
 * many, the one idle longest goes to sleep. */
#define CONN_DOZE_MAX 256

static LIST_HEAD(, conn) conn_list;      /* awake */
static LIST_HEAD(, sleeper) sleep_list;  /* asleep */
static unsigned conn_n; /* open connections: awake and asleep */
static LIST_HEAD(, conn) conn_pool;      /* free, for reuse */
static unsigned conn_pool_n;
static LIST_HEAD(, conn) flush_q; /* conns with output to write this turn */
static struct event *flush_ev;    /* active while flush_q is not empty */
static TAILQ_HEAD(doze_head, conn) doze_q = TAILQ_HEAD_INITIALIZER(doze_q);
static unsigned doze_n;
static struct event *doze_ev; /* at the oldest dozer's deadline */

static void conn_process(struct conn *c);
static void conn_free(struct conn *c);
static void conn_next(struct conn *c, int keep, int read_whole);
static void conn_head_reset(struct conn *c);
static void conn_read_now(struct conn *c);

unsigned conn_count(void)
{
    return conn_n;
}

static const char *conn_peer_name(struct conn *c, char *buf, size_t len)
{
    return pt_addr_format((struct sockaddr *)&c->peer, buf, len);
}

/* Bound the gap between body reads (ms > 0) or lift the bound (0); the
 * write timeout (timeouts.send) always stands. */
static void conn_read_timeout(struct conn *c, uint64_t ms)
{
    const struct conf *cf = worker_gen(c->w)->conf;
    struct timeval rtv = pt_tv(ms), wtv = pt_tv(cf->timeouts.send);

    /* set once per connection, not per request: libevent re-adds both
     * events to apply them */
    if (c->to_set && c->to_read == ms && c->to_send == cf->timeouts.send)
        return;
    bufferevent_set_timeouts(c->bev, ms ? &rtv : NULL, &wtv);
    c->to_set = 1;
    c->to_read = ms;
    c->to_send = cf->timeouts.send;
}

static void conn_timer_ms(struct conn *c, uint64_t ms)
{
    struct timeval tv = pt_tv(ms);
    evtimer_add(c->timer, &tv);
}

/* "Date: Sat, 21 Nov 2026 19:30:00 GMT\r\n", formatted once a second. */
static struct pt_str conn_date_field(struct conn *c)
{
    static char buf[64];
    static size_t len;
    static time_t last;
    struct timeval now;

    event_base_gettimeofday_cached(worker_base(c->w), &now);
    if (now.tv_sec != last) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        len = strftime(buf, sizeof(buf),
                       "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        last = now.tv_sec;
    }
    return (struct pt_str){buf, len};
}

static const struct conf *conn_conf(struct conn *c)
{
    return c->req.gen ? c->req.gen->conf : worker_gen(c->w)->conf;
}

/* ---- access log and counters ----------------------------------------- */

/* Bytes counted per connection reach the shared counters in batches. */
static void conn_flush_bytes(struct conn *c)
{
    struct stats_global *g = stats_global();

    if (g == NULL)
        return;
    if (c->bytes_in)
        atomic_fetch_add_explicit(&g->bytes_in, c->bytes_in,
                                  memory_order_relaxed);
    if (c->bytes_out)
        atomic_fetch_add_explicit(&g->bytes_out, c->bytes_out,
                                  memory_order_relaxed);
    c->bytes_in = c->bytes_out = 0;
}

static void on_in_bytes(struct evbuffer *b, const struct evbuffer_cb_info *i,
                        void *arg)
{
    ((struct conn *)arg)->bytes_in += i->n_added;
}

static void on_out_bytes(struct evbuffer *b, const struct evbuffer_cb_info *i,
                         void *arg)
{
    struct conn *c = arg;

    c->bytes_out += i->n_deleted;
    if (i->n_added && c->direct && !c->flush_queued && !c->write_armed) {
        c->flush_queued = 1;
        if (LIST_EMPTY(&flush_q))
            event_active(flush_ev, EV_TIMEOUT, 1);
        LIST_INSERT_HEAD(&flush_q, c, flink);
    }
}

static void conn_flush_unlink(struct conn *c)
{
    if (!c->flush_queued)
        return;
    LIST_REMOVE(c, flink);
    c->flush_queued = 0;
}

static struct pt_str conn_keep(char **dst, struct pt_str s)
{
    struct pt_str out = {*dst, s.len};
    memcpy(*dst, s.p, s.len);
    *dst += s.len;
    return out;
}

/* splitmix64's finaliser: a bijection, so distinct inputs stay distinct. */
static uint64_t conn_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* v in 16 hex digits, a byte (two digits) at a time. */
static void conn_hex64(char out[16], uint64_t v)
{
    static const char hex[] = "0123456789abcdef";

    for (int i = 14; i >= 0; i -= 2, v >>= 8) {
        out[i] = hex[(v >> 4) & 15];
        out[i + 1] = hex[v & 15];
    }
}

/*
 * An X-Request-Id for a request that has none: 128 bits in hex, 64 drawn
 * at random once per worker process and 64 from a counter
 * scrambled by a bijection, so ids never repeat within a process and
 * differ across processes -- without a getrandom call per request.
 */
static void conn_make_rid(char out[33])
{
    static char seed_hex[16]; /* the random half, written once */
    static uint64_t seed, counter;
    static int seeded; /* workers only: each seeds after its fork */
    uint64_t v;

    if (!seeded) {
        uint64_t r[2];
        if (getrandom(r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
            r[0] = ((uint64_t)random() << 32) ^ (uint64_t)random() ^
                   (uint64_t)getpid(),
            r[1] = ((uint64_t)random() << 32) ^ (uint64_t)random();
        conn_hex64(seed_hex, r[0]);
        seed = r[1];
        seeded = 1;
    }
    memcpy(out, seed_hex, 16);
    v = conn_mix64(seed + counter++);
    conn_hex64(out + 16, v);
    out[32] = '\0';
}

/* The client's X-Request-Id (kept when the access log is on), else one
 * made for the request when first asked for: the upstream and the log
 * see the same. */
struct pt_str conn_request_id(struct conn *c)
{
    if (c->req.request_id.len == 0) {
        conn_make_rid(c->req.rid);
        c->req.request_id = (struct pt_str){c->req.rid, 32};
    }
    return c->req.request_id;
}

/* Copy what the access log needs out of the head before it is drained. */
static void conn_log_capture(struct conn *c, const struct http_request *r)
{
    const struct http_header *ref, *ua, *rid;
    size_t need;
    char *p;

    ref = http_header_find(r->headers, r->nheaders, "Referer");
    ua = http_header_find(r->headers, r->nheaders, "User-Agent");
    rid = http_header_find(r->headers, r->nheaders, "X-Request-Id");
    need = r->method.len + r->target.len + (ref ? ref->value.len : 0) +
           (ua ? ua->value.len : 0) + (rid ? rid->value.len : 0);
    if (need > c->logcap) {
        char *nb = realloc(c->logbuf, need);
        if (nb == NULL)
            return; /* the log line goes without the strings */
        c->logbuf = nb;
        c->logcap = need;
    }
    p = c->logbuf;
    c->req.method = conn_keep(&p, r->method);
    c->req.target = conn_keep(&p, r->target);
    if (ref)
        c->req.referer = conn_keep(&p, ref->value);
    if (ua)
        c->req.user_agent = conn_keep(&p, ua->value);
    if (rid)
        c->req.request_id = conn_keep(&p, rid->value);
}

/* The access log format for a request on route r (NULL: none, as for
 * the admin listener's): the route's own, else the listener's. */
static int conn_access_format(const struct conn *c,
                              const struct conf_route *r)
{
    return r && r->access_format ? r->access_format : c->access_format;
}

static void conn_log_access_up(struct conn *c, int status, uint64_t bytes,
                               const char *upstream, uint64_t upstream_us)
{
    struct gen *g = c->req.gen ? c->req.gen : worker_gen(c->w);
    const struct conf_route *r = c->req.route;
    int format = conn_access_format(c, r);
    struct access_entry e;
    struct timeval now, d;

    stats_request(r && c->req.gen ? c->req.gen->route_stats[r - g->conf->routes]
                                  : NULL,
                  status);
    conn_flush_bytes(c);
    if (format == ACCESS_OFF)
        return;
    event_base_gettimeofday_cached(worker_base(c->w), &now);
    evutil_timersub(&now, &c->req.start, &d);
    memset(&e, 0, sizeof(e));
    e.client = (struct sockaddr *)&c->peer;
    e.method = c->req.method;
    e.target = c->req.target;
    e.referer = c->req.referer;
    e.user_agent = c->req.user_agent;
    e.version_minor = c->req.version_minor;
    e.status = status;
    e.bytes_sent = bytes;
    e.duration_us = (uint64_t)d.tv_sec * 1000000 + (uint64_t)d.tv_usec;
    e.upstream = upstream;
    e.upstream_us = upstream_us;
    e.request_id = conn_request_id(c);
    e.cache = c->req.cache;
    access_log_write(g->access_fd, (enum access_format)format, &e);
}

static void conn_log_access(struct conn *c, int status, uint64_t bytes)
{
    conn_log_access_up(c, status, bytes, NULL, 0);
}

/* ---- closing ---------------------------------------------------------- */

static void conn_end_request(struct conn *c)
{
    proxy_free(&c->req.px);
    gen_release(&c->req.gen);
    memset(&c->req, 0, sizeof(c->req));
    c->req.version_minor = -1;
}

/* A connection of w's, awake or asleep, is gone. */
static void conn_closed(struct worker *w)
{
    conn_n--;
    stats_conn_closed();
    worker_conn_closed(w);
}

static void conn_destroy(struct conn *c)
{
    event_free(c->timer);
    bufferevent_free(c->bev); /* closes its socket, if it has one */
    free(c->logbuf);
    free(c);
}

/*
 * The socket goes: closed (close_fd), or on to a sleeper.  The rest goes
 * back to the pool when there is room and its buffers are empty (nothing
 * in them refers to anything then), else it is freed.
 */
static void conn_release(struct conn *c, int close_fd)
{
    evutil_socket_t fd = bufferevent_getfd(c->bev);

    evtimer_del(c->timer);
    if (c->wake_on) {
        event_del(&c->wake);
        c->wake_on = 0;
    }
    c->wake_watch = 0;
    c->fd = -1;
    if (!c->tls && conn_pool_n < CONN_POOL_MAX &&
        evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        bufferevent_setfd(c->bev, -1);
        bufferevent_disable(c->bev, EV_WRITE); /* conn_get reads only */
        if (close_fd)
            evutil_closesocket(fd);
        LIST_INSERT_HEAD(&conn_pool, c, link);
        conn_pool_n++;
        return;
    }
    if (!close_fd)
        bufferevent_setfd(c->bev, -1);
    conn_destroy(c);
}

static void conn_undoze(struct conn *c)
{
    if (!c->dozing)
        return;
    TAILQ_REMOVE(&doze_q, c, dlink);
    doze_n--;
    c->dozing = 0;
}

static void conn_free(struct conn *c)
{
    struct worker *w = c->w;

    conn_undoze(c);
    conn_flush_unlink(c);
    conn_end_request(c);
    LIST_REMOVE(c, link);
    conn_flush_bytes(c);
    conn_release(c, 1);
    conn_closed(w);
}

/* Output written: shut our side and read until the client hangs up, so
 * unread request bytes don't turn our last response into a reset. */
static void conn_linger(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    c->state = CONN_LINGER;
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    evbuffer_drain(in, evbuffer_get_length(in));
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    c->to_set = 0;
    bufferevent_enable(c->bev, EV_READ);
    conn_timer_ms(c, CONN_LINGER_MS);
}

/*
 * The client said its request was the last and sent nothing after it:
 * closing at once cannot turn our answer into a reset, so the lingering
 * read (a shutdown, a read, a timer) is not needed.
 */
static int conn_nothing_unread(struct conn *c)
{
    int n = 0;

    return c->client_closes && !c->tls && c->state == CONN_CLOSING &&
           evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
           ioctl(bufferevent_getfd(c->bev), FIONREAD, &n) == 0 && n == 0;
}

/* Stop reading; close once the queued output is written.  read_whole:
 * the request was read to its end, so a client that said it was its
 * last may be closed at once (conn_nothing_unread); otherwise it may
 * still be sending, and the close lingers. */
static void conn_close_after_write(struct conn *c, int read_whole)
{
    if (!read_whole)
        c->client_closes = 0;
    c->state = CONN_CLOSING;
    bufferevent_disable(c->bev, EV_READ);
    evtimer_del(c->timer);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_linger(c);
}

/* ---- responses --------------------------------------------------------- */

static void conn_add_common(struct conn *c, struct evbuffer *out,
                            int keep_alive)
{
    struct pt_str date = conn_date_field(c);

    evbuffer_add(out, date.p, date.len);
    evbuffer_add(out, PT_LIT("Server: portico\r\n"));
    if (!keep_alive)
        evbuffer_add(out, PT_LIT("Connection: close\r\n"));
    else if (c->req.version_minor == 0)
        evbuffer_add(out, PT_LIT("Connection: keep-alive\r\n"));
}

/*
 * Answer an error of our own and close: bad input, limits, timeouts.
 * The request is never passed on.  `why` is static text for the body
 * and the error log.
 */
static void conn_error(struct conn *c, int status, const char *why)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    const char *reason = http_reason(status);
    char peer[64], body[256];
    int n;

    if (c->req.start.tv_sec == 0)
        event_base_gettimeofday_cached(worker_base(c->w), &c->req.start);
    log_info("client %s: %d %s: %s", conn_peer_name(c, peer, sizeof(peer)),
             status, reason, why);
    n = snprintf(body, sizeof(body), "%d %s: %s\n", status, reason, why);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, reason);
    conn_add_common(c, out, 0);
    evbuffer_add_printf(out,
                        "Content-Type: text/plain; charset=utf-8\r\n"
                        "Content-Length: %d\r\n\r\n",
                        n);
    if (!c->req.head_only)
        evbuffer_add(out, body, (size_t)n);
    conn_log_access(c, status, c->req.head_only ? 0 : (uint64_t)n);
    conn_end_request(c);
    conn_close_after_write(c, 0);
}

/* The request is complete: answer from its route, or 404. */
static void conn_respond(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    const struct conf_route *r = c->req.route;
    int keep = conn_client_keep_alive(c);
    uint64_t sent = 0;

    if (r == NULL) {
        static const char nf[] = "404 Not Found: no route matches\n";
        evbuffer_add(out, PT_LIT("HTTP/1.1 404 Not Found\r\n"));
        conn_add_common(c, out, keep);
        evbuffer_add_printf(out, "Content-Type: text/plain; charset=utf-8"
                                 "\r\nContent-Length: %zu\r\n\r\n",
                            sizeof(nf) - 1);
        if (!c->req.head_only) {
            evbuffer_add(out, nf, sizeof(nf) - 1);
            sent = sizeof(nf) - 1;
        }
        conn_log_access(c, 404, sent);
    } else {
        const struct gen_respond *gr =
            &c->req.gen->responds[r - c->req.gen->conf->routes];
        evbuffer_add(out, gr->head, gr->head_len);
        conn_add_common(c, out, keep);
        evbuffer_add(out, gr->fields, gr->fields_len);
        evbuffer_add(out, PT_LIT("\r\n"));
        if (!c->req.head_only && r->respond.body_len) {
            evbuffer_add(out, r->respond.body, r->respond.body_len);
            sent = r->respond.body_len;
        }
        conn_log_access(c, r->respond.status, sent);
    }
    conn_next(c, keep, 1);
}

/* The exchange is over and its response queued: make way for the next
 * request, or close (read_whole: see conn_close_after_write). */
static void conn_next(struct conn *c, int keep, int read_whole)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    conn_end_request(c);
    c->nreq++;
    if (!keep) {
        conn_close_after_write(c, read_whole);
        return;
    }
    c->state = CONN_HEAD;
    conn_head_reset(c);
    c->head_started = 0;
    c->head_timed = 0;
    conn_read_timeout(c, 0);
    if (evbuffer_get_length(out) > CONN_OUTPUT_HIGH) {
        /* A client pipelining faster than it reads: wait for the drain. */
        c->state = CONN_FLUSH;
        bufferevent_disable(c->bev, EV_READ);
    }
}

/* ---- request body ------------------------------------------------------ */

static int conn_body_limit(struct conn *c, uint64_t more)
{
    uint64_t max = conn_conf(c)->limits.max_body_bytes;

    c->req.body_bytes += more;
    return max == 0 || c->req.body_bytes <= max;
}

/* Decode chunked framing from the input; returns PT_OK when the body is
 * done, PT_AGAIN for more, PT_ERROR after answering an error. */
static int conn_read_chunked(struct conn *c, struct evbuffer *in)
{
    struct evbuffer_iovec v[8];
    size_t used = 0;
    int nv = evbuffer_peek(in, -1, NULL, v, 8);

    for (int i = 0; i < nv && !c->req.chunk.done; i++) {
        const char *p = v[i].iov_base;
        size_t left = v[i].iov_len;
        while (left > 0 && !c->req.chunk.done) {
            struct pt_str data;
            ssize_t n = http_chunked_decode(&c->req.chunk, p, left, &data);
            if (n < 0) {
                evbuffer_drain(in, used);
                conn_error(c, 400, "invalid chunked body framing");
                return PT_ERROR;
            }
            if (!conn_body_limit(c, data.len)) {
                evbuffer_drain(in, used);
                conn_error(c, 413, "request body exceeds limits."
                                   "max_body_bytes");
                return PT_ERROR;
            }
            p += n;
            left -= (size_t)n;
            used += (size_t)n;
        }
    }
    evbuffer_drain(in, used);
    return c->req.chunk.done ? PT_OK : PT_AGAIN;
}

static void conn_read_body(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    if (c->req.chunked) {
        int rc = conn_read_chunked(c, in);
        if (rc == PT_AGAIN && evbuffer_get_length(in) > 0 &&
            !c->req.chunk.done) {
            /* More than 8 segments buffered: go round again. */
            rc = conn_read_chunked(c, in);
        }
        if (rc != PT_OK)
            return;
    } else {
        size_t n = PT_MIN(evbuffer_get_length(in), c->req.body_left);
        evbuffer_drain(in, n);
        c->req.body_left -= n;
        if (c->req.body_left > 0)
            return;
    }
    conn_respond(c);
}

/* ---- request head ------------------------------------------------------ */

/*
 * Scan the bytes not seen yet for the end of the head, or for a byte
 * that already makes the head invalid (a bare CR or LF), so a bad head
 * is answered at once instead of at the header deadline.  Returns how
 * many bytes to hand the parser, or 0 to wait for more.  Each byte is
 * looked at once however slowly the head arrives.
 */
static size_t conn_head_span(struct conn *c, struct evbuffer *in,
                             const struct conf *cf)
{
    size_t len = evbuffer_get_length(in);
    size_t limit = cf->limits.max_header_bytes;
    size_t upto = PT_MIN(len, limit + 1);
    struct evbuffer_iovec v[16];
    struct evbuffer_ptr from;
    /* in locals: stores through a char pointer could alias c's fields */
    size_t scanned = c->scanned;
    uint32_t t = c->tail;

    while (scanned < upto) {
        evbuffer_ptr_set(in, &from, scanned, EVBUFFER_PTR_SET);
        int nv = evbuffer_peek(in, (ev_ssize_t)(upto - scanned), &from, v,
                               16);
        for (int i = 0; i < nv && i < 16; i++) {
            const unsigned char *p = v[i].iov_base;
            size_t n = PT_MIN(v[i].iov_len, upto - scanned);
            for (size_t k = 0; k < n; k++) {
                if (p[k] > '\r' && (t & 0xff) != '\r') {
                    /* most bytes: neither CR nor LF, nor after a CR */
                    size_t j = k + 1;
                    while (j + 8 <= n && !pt_below(pt_word(p + j), '\r' + 1))
                        j += 8;
                    while (j < n && p[j] > '\r')
                        j++;
                    scanned += j - k;
                    t = p[j - 1]; /* no match can span a byte like it */
                    k = j - 1;
                    continue;
                }
                int after_cr = (t & 0xff) == '\r';
                t = t << 8 | p[k];
                scanned++;
                if (p[k] == '\n') {
                    c->line_seen = 1;
                    if (!after_cr || t == 0x0d0a0d0aU)
                        goto found;
                } else if (after_cr) {
                    goto found; /* bare CR: the parser says 400 */
                }
            }
        }
    }
    c->scanned = scanned;
    c->tail = t;
    if (len > limit)
        return upto; /* the parser names the limit: 414 or 431 */
    if (!c->line_seen && len > cf->limits.max_uri_bytes)
        return upto; /* a request line longer than any allowed URI */
    return 0;
found:
    c->scanned = scanned;
    c->tail = t;
    return scanned;
}

static void conn_head_reset(struct conn *c)
{
    c->scanned = 0;
    c->tail = 0;
    c->line_seen = 0;
}

/* A plain-HTTP request to a route that wants TLS: 308 to the same target
 * on https (308 keeps the method and body, unlike 301).  The request body,
 * if any, is not read: the connection closes after the answer. */
static void conn_redirect_https(struct conn *c, const struct http_request *r)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct pt_str host = r->host;
    int port = c->req.route->https_redirect;
    const char *p = host.p + host.len;

    /* The host without any ":port" (an IPv6 literal keeps its brackets). */
    while (p > host.p && p[-1] >= '0' && p[-1] <= '9')
        p--;
    if (p > host.p && p[-1] == ':' && p < host.p + host.len)
        host.len = (size_t)(p - 1 - host.p);
    if (host.len == 0) {
        conn_error(c, 400, "https_redirect needs a Host header");
        return;
    }
    evbuffer_add(out, PT_LIT("HTTP/1.1 308 Permanent Redirect\r\n"));
    conn_add_common(c, out, 0);
    evbuffer_add_printf(out, "Location: https://%.*s", (int)host.len,
                        host.p);
    if (port != 443)
        evbuffer_add_printf(out, ":%d", port);
    /* origin-form as is; absolute-form by its path and query */
    if (r->target.len && r->target.p[0] == '/') {
        evbuffer_add(out, r->target.p, r->target.len);
    } else {
        evbuffer_add(out, r->path.len ? r->path.p : "/",
                     r->path.len ? r->path.len : 1);
        if (r->query.len) {
            evbuffer_add(out, "?", 1);
            evbuffer_add(out, r->query.p, r->query.len);
        }
    }
    evbuffer_add(out, PT_LIT("\r\nContent-Length: 0\r\n\r\n"));
    conn_log_access(c, 308, 0);
    conn_end_request(c);
    conn_close_after_write(c, 0);
}

/* A request on the admin listener: built-in endpoints, no routes.  Its
 * body, if any, is not read: the connection closes after the answer. */
static void conn_admin(struct conn *c, const struct http_request *r,
                       size_t head_len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct admin_reply reply = {0, NULL, evbuffer_new()};
    int keep = conn_client_keep_alive(c) && !r->chunked &&
               r->content_length <= 0;
    size_t len;

    if (reply.body == NULL) {
        evbuffer_drain(bufferevent_get_input(c->bev), head_len);
        conn_error(c, 500, "out of memory");
        return;
    }
    admin_handle(c->req.gen->conf, r, &reply);
    /* r's views point into the head: drained only once it is answered */
    evbuffer_drain(bufferevent_get_input(c->bev), head_len);
    len = evbuffer_get_length(reply.body);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", reply.status,
                        http_reason(reply.status));
    conn_add_common(c, out, keep);
    evbuffer_add_printf(out,
                        "Content-Type: %s\r\nCache-Control: no-store\r\n"
                        "Content-Length: %zu\r\n\r\n",
                        reply.content_type, len);
    if (!c->req.head_only)
        evbuffer_add_buffer(out, reply.body);
    evbuffer_free(reply.body);
    conn_log_access(c, reply.status, c->req.head_only ? 0 : len);
    conn_next(c, keep, !r->chunked && r->content_length <= 0);
}

static void conn_start_request(struct conn *c, struct http_request *r,
                               size_t head_len)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    const struct conf *cf;

    c->req.gen = gen_ref(worker_gen(c->w));
    cf = c->req.gen->conf;
    c->req.version_minor = r->version_minor;
    c->req.keep_alive = r->keep_alive;
    c->client_closes = !r->keep_alive;
    c->req.head_only = r->method_id == HTTP_M_HEAD;
    c->req.chunked = r->chunked;
    c->req.body_left = r->content_length > 0 ? (uint64_t)r->content_length
                                             : 0;
    c->req.route = route_match(cf, r->host, r->path);
    /* the access log's copies of the request's strings, if it is on
     * (for the route, or for the listener: an admin request has none) */
    if (conn_access_format(c, c->req.route) != ACCESS_OFF ||
        c->access_format != ACCESS_OFF)
        conn_log_capture(c, r);
    evtimer_del(c->timer);
    if (r->method_id == HTTP_M_CONNECT) {
        conn_error(c, 501, "CONNECT is not supported");
        return;
    }
    if (c->admin) {
        c->req.route = NULL;
        conn_admin(c, r, head_len);
        return;
    }
    if (c->req.route && c->req.route->https_redirect && !c->tls) {
        conn_redirect_https(c, r);
        return;
    }
    if (cf->limits.max_body_bytes && r->content_length >= 0 &&
        (uint64_t)r->content_length > cf->limits.max_body_bytes) {
        conn_error(c, 413, "request body exceeds limits.max_body_bytes");
        return;
    }
    if (c->req.route && c->req.route->upstream) {
        /* The upstream head is built from r's views: before the drain. */
        c->req.px = proxy_start(c, c->req.gen->ups, c->req.route, r, cf);
        evbuffer_drain(in, head_len);
        if (c->req.px == NULL) {
            conn_error(c, 500, "out of memory");
            return;
        }
        c->state = CONN_PROXY;
        if (c->req.chunked || c->req.body_left > 0) {
            conn_read_timeout(c, cf->timeouts.client_body);
            bufferevent_enable(c->bev, EV_READ);
        }
        proxy_run(c->req.px); /* reads on for anything but a hit */
        return;
    }
    evbuffer_drain(in, head_len);
    c->state = CONN_BODY;
    if (c->req.chunked || c->req.body_left > 0) {
        conn_read_timeout(c, cf->timeouts.client_body);
        bufferevent_enable(c->bev, EV_READ);
        if (r->expect_continue && r->version_minor == 1)
            evbuffer_add(bufferevent_get_output(c->bev),
                         "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    conn_read_body(c);
}

/* The head so far is incomplete: read on, within the header deadline
 * that its first byte started (in this loop turn). */
static void conn_head_wait(struct conn *c, const struct conf *cf)
{
    if (!c->head_timed) {
        c->head_timed = 1;
        conn_timer_ms(c, cf->timeouts.client_header);
    }
    bufferevent_enable(c->bev, EV_READ);
}

static void conn_read_head(struct conn *c)
{
    struct worker *w = c->w;
    const struct conf *cf = worker_gen(w)->conf;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct http_limits lim = {cf->limits.max_header_bytes,
                              cf->limits.max_uri_bytes,
                              cf->limits.max_headers};
    struct http_request r;
    size_t span;
    ssize_t n;

    if (evbuffer_get_length(in) == 0) {
        /* between requests conn_idle decides how to wait */
        if (c->head_started)
            bufferevent_enable(c->bev, EV_READ);
        return;
    }
    if (!c->head_started) {
        /* The first byte of a head starts the header deadline (armed
         * only if the head has to be waited for: conn_head_wait). */
        c->head_started = 1;
        event_base_gettimeofday_cached(worker_base(w), &c->req.start);
    }
    for (;;) {
        size_t seen = c->scanned;
        span = conn_head_span(c, in, cf);
        if (span == 0) {
            conn_head_wait(c, cf);
            return;
        }
        memset(&r, 0, sizeof(r));
        r.headers = worker_headers(w, cf->limits.max_headers);
        r.headers_cap = cf->limits.max_headers;
        n = http_parse_request(
            (const char *)evbuffer_pullup(in, (ssize_t)span), span, &lim, &r);
        if (n != PT_AGAIN)
            break;
        if (c->scanned == seen) { /* a limit check, not a new line */
            conn_head_wait(c, cf);
            return;
        }
        c->tail = 0; /* only empty lines so far: look on past them */
    }
    if (n < 0) {
        c->req.version_minor = -1;
        conn_error(c, r.status, r.error);
        return;
    }
    conn_start_request(c, &r, (size_t)n);
}

static void sleeper_close(struct sleeper *s)
{
    struct worker *w = s->w;

    event_del(&s->ev);
    evutil_closesocket(event_get_fd(&s->ev));
    LIST_REMOVE(s, link);
    free(s);
    conn_closed(w);
}

static void on_wake(evutil_socket_t fd, short what, void *arg);

/* Between requests with everything written and nothing read: plain TCP
 * connections may doze or sleep then. */
static int conn_can_rest(struct conn *c)
{
    return c->direct && !c->flush_queued && !c->write_armed &&
           evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
           evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
}

/* Trade a connection waiting for its next request for a sleeper that
 * wakes on its first byte or closes at the deadline ms.  PT_ERROR when
 * it cannot (TLS, output not written yet, out of memory). */
static int conn_sleep(struct conn *c, uint64_t ms)
{
    struct timeval tv = pt_tv(ms);
    struct sleeper *s;

    if (!conn_can_rest(c))
        return PT_ERROR;
    s = malloc(sizeof(*s));
    if (s == NULL)
        return PT_ERROR;
    s->w = c->w;
    memcpy(&s->peer, &c->peer, sizeof(s->peer));
    s->nreq = c->nreq;
    s->access_format = c->access_format;
    s->admin = c->admin;
    s->stop_after = 0;
    /* Registered before the bufferevent lets go of the socket: epoll's
     * interest in it never changes. */
    event_assign(&s->ev, worker_base(c->w), bufferevent_getfd(c->bev),
                 EV_READ | EV_PERSIST, on_wake, s);
    if (event_add(&s->ev, &tv) < 0) {
        free(s);
        return PT_ERROR;
    }
    LIST_INSERT_HEAD(&sleep_list, s, link);
    conn_flush_bytes(c);
    LIST_REMOVE(c, link);
    conn_release(c, 0);
    return PT_OK;
}

/*
 * Dozing: a keep-alive connection that has just been answered stays
 * awake for its next request, which on a busy connection comes soon:
 * the sleep and wake (a sleeper, a conn from the pool, their events)
 * would cost about a tenth of a cached answer.  It waits on c->wake, a
 * persistent read event with no timeout, while its bufferevent does not
 * read; the worker's doze queue keeps dozers in deadline order, and one
 * timer (doze_ev) closes those whose keep-alive ran out.  At most
 * CONN_DOZE_MAX doze: past that the one idle longest goes to sleep, so
 * idle connections still cost a sleeper each.
 *
 * c->wake stays registered after the wake, as long as the connection
 * lives: a request answered in the same loop turn dozes again without
 * touching it.  If it fires while the connection is busy (its
 * bufferevent reads then, or it wants no input), it is removed.
 */
static uint64_t conn_now_ms(void)
{
    return pt_clock_ms(CLOCK_MONOTONIC_COARSE);
}

static void doze_arm(uint64_t now)
{
    struct conn *c = TAILQ_FIRST(&doze_q);

    if (c != NULL && !evtimer_pending(doze_ev, NULL)) {
        struct timeval tv =
            pt_tv(c->doze_until > now ? c->doze_until - now : 0);
        evtimer_add(doze_ev, &tv);
    }
}

static void on_doze_deadline(evutil_socket_t fd, short what, void *arg)
{
    uint64_t now = conn_now_ms();
    struct conn *c;

    (void)fd, (void)what, (void)arg;
    while ((c = TAILQ_FIRST(&doze_q)) != NULL && c->doze_until <= now)
        conn_free(c); /* the keep-alive timeout: closed with nothing sent */
    doze_arm(now);
}

static void on_doze_wake(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd, (void)what;
    if (!c->dozing) {
        event_del(&c->wake);
        c->wake_on = 0;
        if (c->wake_watch && c->state == CONN_PROXY)
            bufferevent_enable(c->bev, EV_READ); /* bytes or EOF: see */
        c->wake_watch = 0;
        return;
    }
    conn_undoze(c);
    conn_read_now(c);
}

/* PT_ERROR when c cannot doze: it may sleep then. */
static int conn_doze(struct conn *c, uint64_t ms)
{
    uint64_t now = conn_now_ms(), until = now + ms;
    struct conn *last = TAILQ_LAST(&doze_q, doze_head);

    /* Deadline order holds unless a reload shortened the keep-alive. */
    if (!conn_can_rest(c) || doze_ev == NULL ||
        (last != NULL && until < last->doze_until))
        return PT_ERROR;
    if (!c->wake_on) {
        event_assign(&c->wake, worker_base(c->w), c->fd,
                     EV_READ | EV_PERSIST, on_doze_wake, c);
        if (event_add(&c->wake, NULL) < 0)
            return PT_ERROR;
        c->wake_on = 1;
    }
    if (bufferevent_get_enabled(c->bev) & EV_READ)
        bufferevent_disable(c->bev, EV_READ);
    evtimer_del(c->timer);
    c->wake_watch = 0;
    c->dozing = 1;
    c->doze_until = until;
    TAILQ_INSERT_TAIL(&doze_q, c, dlink);
    doze_arm(now);
    if (++doze_n > CONN_DOZE_MAX) {
        struct conn *old = TAILQ_FIRST(&doze_q);
        conn_undoze(old);
        if (conn_sleep(old, old->doze_until > now ? old->doze_until - now
                                                  : 0) < 0)
            conn_free(old);
    }
    return PT_OK;
}

/* The connection waits for a next request: it dozes or sleeps once its
 * answer is written, or arms the idle timer; it closes instead when the
 * worker is stopping. */
static void conn_idle(struct conn *c)
{
    const struct conf *cf = worker_gen(c->w)->conf;
    uint64_t ms = c->nreq ? cf->timeouts.keepalive
                          : cf->timeouts.client_header;
    int stopping = c->stop_after || worker_stopping(c->w);

    if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0 &&
        (c->direct || stopping))
        return; /* on_write comes back here once the answer is out */
    if (stopping) {
        conn_free(c);
        return;
    }
    if (c->nreq > 0 && conn_doze(c, ms) == PT_OK)
        return;
    if (conn_sleep(c, ms) == PT_OK)
        return;
    bufferevent_enable(c->bev, EV_READ);
    conn_timer_ms(c, ms);
}

/*
 * Handle whatever input the current state can use.  Pipelined requests
 * are answered in order by this loop, never by recursion, so a burst of
 * tiny requests can't grow the stack.
 */
static void conn_process(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    for (;;) {
        unsigned done = c->nreq;
        switch (c->state) {
        case CONN_HEAD:
            /* reads are turned on when it waits for bytes: a request
             * read whole on accept never registers the socket */
            conn_read_head(c);
            break;
        case CONN_BODY:
            conn_read_body(c);
            break;
        case CONN_PROXY:
            /* Body bytes go upstream; bytes past the body are the next
             * request and wait until this exchange is over. */
            proxy_on_client_read(c->req.px);
            return;
        case CONN_LINGER:
            evbuffer_drain(in, evbuffer_get_length(in));
            return;
        case CONN_FLUSH:
        case CONN_CLOSING:
            return;
        }
        if (c->nreq == done || evbuffer_get_length(in) == 0)
            break;
    }
    if (c->state == CONN_HEAD && !c->head_started)
        conn_idle(c);
}

/* ---- callbacks --------------------------------------------------------- */

/* Plain sockets are read by evio_read (evio_own_reads) and written by
 * evio_send_now and evio_own_writes, TLS by libevent. */
static void on_read(struct bufferevent *bev, void *arg)
{
    conn_process(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    if (c->write_armed) {
        /* libevent wrote what the socket did not take at once: back to
         * writing at the end of each turn. */
        c->write_armed = 0;
        bufferevent_disable(c->bev, EV_WRITE);
    }
    if (c->state == CONN_CLOSING) {
        if (conn_nothing_unread(c))
            conn_free(c); /* no reset can overtake the answer */
        else
            conn_linger(c);
    } else if (c->state == CONN_FLUSH) {
        c->state = CONN_HEAD;
        conn_process(c);
    } else if (c->state == CONN_HEAD && !c->head_started &&
               (c->direct || c->stop_after)) {
        /* the answer is out: doze or sleep, or close when stopping
         * (conn_idle) */
        conn_process(c);
    } else if (c->state == CONN_PROXY) {
        proxy_on_client_drained(c->req.px);
    }
}

/*
 * End of a loop turn's callbacks: write the output queued during it.  A
 * connection whose output all went is told so at once (on_write); one
 * whose socket is full, or failed, hands the rest to libevent, which
 * writes it, or reports the error, through EV_WRITE.
 */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    cache_turn_end();
    while (!LIST_EMPTY(&flush_q)) {
        struct conn *c = LIST_FIRST(&flush_q);
        struct evbuffer *out = bufferevent_get_output(c->bev);
        conn_flush_unlink(c);
        if (evbuffer_get_length(out) == 0)
            continue;
        if (evio_send_now(out, c->fd) == 0) {
            on_write(c->bev, c); /* may queue c again, or free it */
        } else {
            c->write_armed = 1;
            bufferevent_enable(c->bev, EV_WRITE);
        }
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (what & BEV_EVENT_CONNECTED)
        return; /* the TLS handshake is done */
    if ((what & BEV_EVENT_EOF) && evbuffer_get_length(out) > 0 &&
        c->state != CONN_BODY && c->state != CONN_LINGER &&
        c->state != CONN_PROXY) {
        /* The client half-closed after its last request: finish writing
         * what it asked for, then close. */
        conn_end_request(c);
        c->state = CONN_CLOSING;
        bufferevent_disable(c->bev, EV_READ);
        evtimer_del(c->timer);
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) &&
        c->state == CONN_PROXY && proxy_request_done(c->req.px)) {
        /* client_body bounded the upload, which is over: a client that
         * just reads a long response owes us no bytes. */
        conn_read_timeout(c, 0);
        bufferevent_enable(c->bev, EV_READ);
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) &&
        (c->state == CONN_BODY || c->state == CONN_PROXY)) {
        conn_error(c, 408, "client sent the body too slowly "
                           "(timeouts.client_body)");
        return;
    }
    if ((what & BEV_EVENT_EOF) && c->state == CONN_PROXY &&
        proxy_on_client_eof(c->req.px)) {
        bufferevent_disable(c->bev, EV_READ);
        return;
    }
    if ((what & BEV_EVENT_ERROR) && c->tls && c->nreq == 0 &&
        log_get_level() <= LOG_LVL_DEBUG) {
        /* A failed handshake (or plain HTTP on a TLS port): one line at
         * debug level, never more. */
        char peer[64], why[200];
        unsigned long e = bufferevent_get_openssl_error(c->bev);
        if (e)
            ERR_error_string_n(e, why, sizeof(why));
        else
            snprintf(why, sizeof(why), "connection closed");
        log_debug("client %s: TLS: %s", conn_peer_name(c, peer, sizeof(peer)),
                  why);
    }
    /* EOF, reset, or a client that stopped reading (timeouts.send). */
    conn_free(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    if (c->state == CONN_HEAD && c->head_started) {
        c->req.version_minor = -1;
        conn_error(c, 408, "request head not received in time "
                           "(timeouts.client_header)");
        return;
    }
    /* Keep-alive idle, an idle new connection, or lingering done. */
    conn_free(c);
}

/* ---- the client side of a proxied exchange ----------------------------- */

/*
 * While its request waits on the upstream or a fill, the client's socket
 * is watched, so that a client that goes is seen.  A connection woken
 * from a doze still has its wake event registered: that watches for
 * free, and hands over to the bufferevent's reads at the first byte or
 * EOF (on_doze_wake).  This saves turning those reads on and off again
 * for every request.
 */
void conn_watch_client(struct conn *c)
{
    if (c->wake_on) {
        c->wake_watch = 1;
        return;
    }
    bufferevent_enable(c->bev, EV_READ);
}

struct bufferevent *conn_bev(struct conn *c)
{
    return c->bev;
}

const struct sockaddr *conn_peer(const struct conn *c)
{
    return (const struct sockaddr *)&c->peer;
}

int conn_client_keep_alive(const struct conn *c)
{
    return c->req.keep_alive && !c->stop_after && !worker_stopping(c->w);
}

void conn_set_keep_alive(struct conn *c, int keep)
{
    c->req.keep_alive = keep;
}

void conn_proxy_error(struct conn *c, int status, const char *why)
{
    conn_read_timeout(c, 0);
    conn_error(c, status, why);
}

void conn_proxy_done(struct conn *c, int status, uint64_t body_bytes,
                     const char *upstream, uint64_t upstream_us)
{
    /* Unread request body bytes would be taken for the next request. */
    int keep = conn_client_keep_alive(c) && proxy_request_done(c->req.px);

    conn_log_access_up(c, status, body_bytes, upstream, upstream_us);
    conn_read_timeout(c, 0);
    conn_next(c, keep, proxy_request_done(c->req.px));
    if (c->state == CONN_HEAD)
        conn_process(c);
}

void conn_proxy_log(struct conn *c, int status, const char *upstream,
                    uint64_t upstream_us)
{
    conn_log_access_up(c, status, 0, upstream, upstream_us);
}

void conn_proxy_abort(struct conn *c)
{
    conn_free(c);
}

/* ---- life cycle -------------------------------------------------------- */

void conn_set_cache_status(struct conn *c, const char *status)
{
    c->req.cache = status;
}

struct gen *conn_gen(struct conn *c)
{
    return c->req.gen ? c->req.gen : worker_gen(c->w);
}

int conn_is_tls(const struct conn *c)
{
    return c->tls;
}

/* A TLS listener's connection: the handshake runs in the bufferevent. */
static struct bufferevent *conn_bev_new(struct event_base *base,
                                        evutil_socket_t fd,
                                        struct tls_server *tls)
{
    struct bufferevent *bev;
    SSL *ssl;

    if (tls == NULL)
        return bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    ssl = tls_server_ssl(tls);
    if (ssl == NULL)
        return NULL;
    bev = bufferevent_openssl_socket_new(base, fd, ssl,
                                         BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    /* Clients that close without close_notify are the common case. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* A conn reading fd: from the pool (plain TCP), or new.  NULL when out
 * of memory; fd is still the caller's then. */
static struct conn *conn_get(struct worker *w, evutil_socket_t fd,
                             struct tls_server *tls, int reading)
{
    struct event_base *base = worker_base(w);
    struct conn *c = LIST_FIRST(&conn_pool);

    if (flush_ev == NULL)
        flush_ev = event_new(base, -1, 0, on_flush, NULL);
    if (doze_ev == NULL)
        doze_ev = evtimer_new(base, on_doze_deadline, NULL);
    if (tls == NULL && c != NULL && flush_ev != NULL) {
        struct bufferevent *bev = c->bev;
        struct event *timer = c->timer;
        char *logbuf = c->logbuf;
        size_t logcap = c->logcap;

        LIST_REMOVE(c, link);
        conn_pool_n--;
        memset(c, 0, sizeof(*c));
        c->bev = bev;
        c->timer = timer;
        c->logbuf = logbuf;
        c->logcap = logcap;
        c->direct = 1;
        c->fd = fd;
        if (!reading)
            bufferevent_disable(bev, EV_READ); /* no socket: no call */
        bufferevent_setfd(bev, fd);
        /* setfd put libevent's reader and writer back */
        (void)evio_own_reads(bev);
        (void)evio_own_writes(bev);
        if (reading)
            bufferevent_enable(bev, EV_READ);
        return c;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->fd = fd;
    c->timer = evtimer_new(base, on_timer, c);
    c->bev = c->timer ? conn_bev_new(base, fd, tls) : NULL;
    if (c->bev == NULL) {
        if (c->timer)
            event_free(c->timer);
        free(c);
        return NULL;
    }
    /* libevent moves 16 KB per turn by default: a 256 KB answer would
     * take 16 loop turns and as many writev calls, an upload likewise. */
    bufferevent_set_max_single_write(c->bev, CONN_MAX_SINGLE_WRITE);
    bufferevent_set_max_single_read(c->bev, CONN_MAX_SINGLE_READ);
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    evbuffer_add_cb(bufferevent_get_input(c->bev), on_in_bytes, c);
    evbuffer_add_cb(bufferevent_get_output(c->bev), on_out_bytes, c);
    c->tls = tls != NULL;
    if (!c->tls) { /* else libevent's reader and writer stay */
        (void)evio_own_reads(c->bev);
        (void)evio_own_writes(c->bev);
    }
    /* TLS output goes through the bufferevent; plain output through the
     * flush queue (on_flush). */
    c->direct = !c->tls && flush_ev != NULL;
    if (c->direct)
        bufferevent_disable(c->bev, EV_WRITE); /* on by default */
    if (reading || !c->direct)
        bufferevent_enable(c->bev, c->direct ? EV_READ : EV_READ | EV_WRITE);
    return c;
}

/* c starts, or resumes after a sleep, as one of w's open connections. */
static void conn_open(struct conn *c, struct worker *w,
                      const struct sockaddr *sa, size_t salen, int admin,
                      int access_format)
{
    c->w = w;
    memcpy(&c->peer, sa, PT_MIN(salen, sizeof(c->peer)));
    c->req.version_minor = -1;
    c->admin = admin;
    c->access_format = access_format;
    c->state = CONN_HEAD;
    conn_read_timeout(c, 0);
    /* Stop reading past a full head plus some body: a client can't make
     * us buffer more than that while a request waits. */
    bufferevent_setwatermark(
        c->bev, EV_READ, 0,
        worker_gen(w)->conf->limits.max_header_bytes + 256 * 1024);
    LIST_INSERT_HEAD(&conn_list, c, link);
}

int conn_new(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa,
             int salen, const struct gen_listener *lc)
{
    struct conn *c;

    /* TCP_NODELAY comes from the listening socket (listener_open) */
    c = conn_get(w, fd, lc->tls, 0); /* plain: conn_read_now first */
    if (c == NULL) {
        evutil_closesocket(fd);
        return PT_ERROR;
    }
    conn_open(c, w, sa, (size_t)salen, lc->admin, lc->access_format);
    conn_n++;
    stats_conn_opened();
    /* Until the first byte, the header deadline bounds an idle accept. */
    conn_timer_ms(c, worker_gen(w)->conf->timeouts.client_header);
    if (c->admin && !admin_allowed(worker_gen(w)->conf, sa)) {
        conn_error(c, 403, "client not in admin.allow");
        return PT_OK;
    }
    /* The request often arrives with the connection: read it now rather
     * than a loop turn later. */
    if (!c->tls)
        conn_read_now(c);
    return PT_OK;
}

/*
 * Read what the socket holds now and handle it, without waiting for the
 * bufferevent's next turn: one recv (evio_read).  More than
 * EVIO_READ_SMALL is read on by the bufferevent.
 */
static void conn_read_now(struct conn *c)
{
    ssize_t n = evio_read(bufferevent_get_input(c->bev), c->fd,
                          EVIO_READ_SMALL);

    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                   errno != EINTR))
        conn_free(c); /* the client closed, or the socket failed */
    else if (n > 0)
        conn_process(c);
    else
        conn_idle(c); /* nothing yet: doze or sleep till it comes */
}

/* A sleeper's socket is readable (or its deadline passed): wake it into
 * a conn and read at once, since this event already saw the bytes. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct sleeper *s = arg;
    struct conn *c = (what & EV_READ) ? conn_get(s->w, fd, NULL, 1) : NULL;

    if (c == NULL) {
        sleeper_close(s);
        return;
    }
    conn_open(c, s->w, &s->peer.sa, sizeof(s->peer), s->admin,
              s->access_format);
    c->nreq = s->nreq;
    c->stop_after = s->stop_after;
    /* after conn_get registered the bufferevent: epoll sees no change */
    event_del(&s->ev);
    LIST_REMOVE(s, link);
    free(s);
    conn_read_now(c);
}

/* Idle: between requests with nothing buffered, here or in the kernel
 * (bytes that arrived but were not read yet are a request in flight),
 * and the last response written out: a keep-alive answer can still sit
 * in the output buffer in CONN_HEAD, and closing then would lose it. */
static int conn_is_idle(struct conn *c)
{
    int pending = 0;

    if (c->state != CONN_HEAD || c->head_started ||
        evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 ||
        evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
        return 0;
    if (ioctl(bufferevent_getfd(c->bev), FIONREAD, &pending) < 0)
        return 1;
    return pending == 0;
}

void conn_stop_all_graceful(void)
{
    struct conn *c = LIST_FIRST(&conn_list), *next;
    struct sleeper *s = LIST_FIRST(&sleep_list), *snext;

    for (; c; c = next) {
        next = LIST_NEXT(c, link);
        c->stop_after = 1;
        if (conn_is_idle(c))
            conn_free(c);
    }
    for (; s; s = snext) {
        int pending = 0;
        snext = LIST_NEXT(s, link);
        s->stop_after = 1; /* a request already sent is answered first */
        if (ioctl(event_get_fd(&s->ev), FIONREAD, &pending) < 0 ||
            pending == 0)
            sleeper_close(s);
    }
}

void conn_close_all(void)
{
    while (!LIST_EMPTY(&conn_list))
        conn_free(LIST_FIRST(&conn_list));
    while (!LIST_EMPTY(&sleep_list))
        sleeper_close(LIST_FIRST(&sleep_list));
    while (!LIST_EMPTY(&conn_pool)) {
        struct conn *c = LIST_FIRST(&conn_pool);
        LIST_REMOVE(c, link);
        conn_pool_n--;
        conn_destroy(c);
    }
}
