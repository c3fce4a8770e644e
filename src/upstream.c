/*
 * upstream.c -- upstream groups of one generation inside one worker.
 *
 * Server choice: smooth weighted round robin (every server gets its
 * share, spread out rather than in bursts), least connections scaled by
 * weight, or a consistent-hash ring with 160 points per unit of weight,
 * so adding a server moves only the keys that now land on it.
 *
 * Health lives in the shared-memory zone, so every worker skips a server
 * that any of them found failing.  Passive: max_fails failures within
 * fail_timeout take a server out for fail_timeout.  Active (worker 0
 * only, for all): health_check requests every interval; `fails` failed
 * in a row take it out, `passes` passed in a row bring it back.
 *
 * Pool: idle keep-alive connections per server, each retired after its
 * idle time (keepalive_timeout, or less when the upstream announced a
 * shorter Keep-Alive timeout) so that we close before the upstream does.
 *
 * Calls: log.c, util.c, libevent.
 */
#include "upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "evio.h"
#include "http_parse.h"
#include "log.h"
#include "shm.h"
#include "stats.h"
#include "tls.h"
#include "util.h"

#include <event2/bufferevent_ssl.h>
#include <fcntl.h>

#define UPS_RING_POINTS 160

unsigned long ups_stale_retries;

struct ups_check;

struct ups_server {
    const struct conf_server *cf; /* borrowed from the generation */
    struct ups_group *group;      /* borrowed */
    size_t index;
    int current;                  /* smooth weighted round robin */
    unsigned active;              /* requests in flight (least_conn) */
    struct shm_health *health;    /* shared slot, or &local */
    struct shm_health local;      /* when the zone had no slot */
    struct upconn *idle;          /* owns: the idle pool */
    unsigned nidle;
    struct ups_check *check;      /* owns: active checks (worker 0) */
    struct stats_server *stats;   /* shared histogram slot, or NULL */
};

struct ups_point {
    uint32_t hash;
    uint32_t server;
};

struct ups_group {
    const struct conf_upstream *cf; /* borrowed */
    struct ups_set *set;            /* borrowed */
    struct ups_server *servers;     /* owns */
    size_t nservers;
    struct ups_point *ring;         /* owns; balance: hash */
    size_t nring;
    struct tls_client *tls;         /* owns; NULL for plain HTTP */
};

struct ups_set {
    struct event_base *base;    /* borrowed */
    struct ups_group *groups;   /* owns; parallel to conf->upstreams */
    size_t ngroups;
    const struct conf_upstream *first; /* for pointer-to-index */
    unsigned retired : 1;
};

/* Health and backoff times are CLOCK_MONOTONIC milliseconds; read
 * timeouts, which move with every read, CLOCK_MONOTONIC_COARSE ones. */

/* 32-bit FNV-1a, then a final avalanche so nearby keys spread out. */
static uint32_t ups_hash(const void *data, size_t len, uint32_t h)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static int ups_point_cmp(const void *a, const void *b)
{
    const struct ups_point *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

/* Points come from each server's address, not its position, so another
 * server added or removed leaves them where they were. */
static int ups_ring_build(struct ups_group *g)
{
    size_t total = 0, n = 0;

    for (size_t i = 0; i < g->nservers; i++)
        total += (size_t)g->servers[i].cf->weight * UPS_RING_POINTS;
    g->ring = calloc(total ? total : 1, sizeof(*g->ring));
    if (g->ring == NULL)
        return PT_ERROR;
    for (size_t i = 0; i < g->nservers; i++) {
        const char *a = g->servers[i].cf->address;
        size_t pts = (size_t)g->servers[i].cf->weight * UPS_RING_POINTS;
        for (size_t k = 0; k < pts; k++) {
            uint32_t seed = (uint32_t)(2166136261u ^ (k * 0x9e3779b9u));
            g->ring[n].hash = ups_hash(a, strlen(a), seed);
            g->ring[n++].server = (uint32_t)i;
        }
    }
    qsort(g->ring, n, sizeof(*g->ring), ups_point_cmp);
    g->nring = n;
    return PT_OK;
}

struct ups_set *ups_set_new(struct event_base *base, const struct conf *conf)
{
    struct ups_set *set = calloc(1, sizeof(*set));

    if (set == NULL)
        return NULL;
    set->base = base;
    set->first = conf->upstreams;
    set->groups = calloc(conf->nupstreams + 1, sizeof(*set->groups));
    if (set->groups == NULL)
        goto fail;
    for (size_t i = 0; i < conf->nupstreams; i++, set->ngroups = i) {
        struct ups_group *g = &set->groups[i];
        g->cf = &conf->upstreams[i];
        g->set = set;
        g->nservers = g->cf->nservers;
        g->servers = calloc(g->nservers, sizeof(*g->servers));
        if (g->servers == NULL)
            goto fail;
        for (size_t k = 0; k < g->nservers; k++) {
            struct ups_server *s = &g->servers[k];
            s->cf = &g->cf->servers[k];
            s->group = g;
            s->index = k;
            s->health = shm_health_find(g->cf->name, s->cf->address);
            s->stats = stats_server_find(g->cf->name, s->cf->address);
            if (s->health == NULL)
                s->health = &s->local;
        }
        if (g->cf->balance == BALANCE_HASH && ups_ring_build(g) < 0)
            goto fail;
        if (g->cf->tls.enabled) {
            char why[300];
            g->tls = tls_client_new(g->cf, why, sizeof(why));
            if (g->tls == NULL) {
                log_error("upstream %s: TLS: %s", g->cf->name, why);
                goto fail;
            }
        }
    }
    return set;
fail:
    set->ngroups = conf->nupstreams;
    ups_set_free(&set);
    return NULL;
}

static void ups_check_free(struct ups_check **ckp);

static void ups_pool_drain(struct ups_server *s)
{
    ups_check_free(&s->check);
    while (s->idle) {
        struct upconn *uc = s->idle;
        s->idle = uc->next;
        s->nidle--;
        ups_conn_close(&uc);
    }
}

void ups_set_retire(struct ups_set *set)
{
    set->retired = 1;
    for (size_t i = 0; i < set->ngroups; i++)
        for (size_t k = 0; k < set->groups[i].nservers; k++)
            ups_pool_drain(&set->groups[i].servers[k]);
}

void ups_set_free(struct ups_set **sp)
{
    struct ups_set *set = *sp;

    if (set == NULL)
        return;
    *sp = NULL;
    for (size_t i = 0; set->groups && i < set->ngroups; i++) {
        struct ups_group *g = &set->groups[i];
        for (size_t k = 0; g->servers && k < g->nservers; k++)
            ups_pool_drain(&g->servers[k]);
        free(g->servers);
        free(g->ring);
        tls_client_free(&g->tls);
    }
    free(set->groups);
    free(set);
}

struct ups_group *ups_group_of(struct ups_set *set,
                               const struct conf_upstream *cf)
{
    size_t i = (size_t)(cf - set->first);
    return i < set->ngroups ? &set->groups[i] : NULL;
}

size_t ups_server_index(const struct ups_server *s)
{
    return s->index;
}

const struct conf_server *ups_server_conf(const struct ups_server *s)
{
    return s->cf;
}

const struct conf_upstream *ups_group_conf(const struct ups_group *g)
{
    return g->cf;
}

struct ups_group *ups_server_group(const struct ups_server *s)
{
    return s->group;
}

/* ---- choosing -------------------------------------------------------- */

static int ups_usable(const struct ups_server *s, uint64_t tried,
                      uint64_t now)
{
    if (s->index < 64 && (tried >> s->index) & 1)
        return 0;
    return !atomic_load_explicit(&s->health->active_down,
                                 memory_order_relaxed) &&
           atomic_load_explicit(&s->health->down_until,
                                memory_order_relaxed) <= now;
}

/* Smooth weighted round robin: raise every candidate by its weight, take
 * the highest, lower it by the total. */
static struct ups_server *ups_pick_rr(struct ups_group *g, uint64_t tried,
                                      uint64_t now)
{
    struct ups_server *best = NULL;
    int total = 0;

    for (size_t i = 0; i < g->nservers; i++) {
        struct ups_server *s = &g->servers[i];
        if (!ups_usable(s, tried, now))
            continue;
        s->current += (int)s->cf->weight;
        total += (int)s->cf->weight;
        if (best == NULL || s->current > best->current)
            best = s;
    }
    if (best)
        best->current -= total;
    return best;
}

/* Fewest requests in flight per unit of weight; round robin breaks
 * ties so idle servers share the load. */
static struct ups_server *ups_pick_least(struct ups_group *g, uint64_t tried,
                                         uint64_t now)
{
    struct ups_server *best = NULL;
    uint64_t tie = 0;

    for (size_t i = 0; i < g->nservers; i++) {
        struct ups_server *s = &g->servers[i];
        if (!ups_usable(s, tried, now))
            continue;
        if (best == NULL) {
            best = s;
            continue;
        }
        uint64_t a = (uint64_t)s->active * best->cf->weight;
        uint64_t b = (uint64_t)best->active * s->cf->weight;
        if (a < b)
            best = s;
        else if (a == b)
            tie |= 1;
    }
    if (best && tie) {
        /* Among the equally loaded, rotate with round robin. */
        uint64_t others = tried;
        for (size_t i = 0; i < g->nservers && i < 64; i++) {
            struct ups_server *s = &g->servers[i];
            if ((uint64_t)s->active * best->cf->weight !=
                (uint64_t)best->active * s->cf->weight)
                others |= 1ull << i;
        }
        struct ups_server *rr = ups_pick_rr(g, others, now);
        if (rr)
            best = rr;
    }
    return best;
}

uint32_t ups_hash_key(const struct ups_group *g,
                      const struct ups_hash_input *in)
{
    uint32_t h;

    if (g->cf->balance != BALANCE_HASH)
        return 0;
    switch (g->cf->hash_key) {
    case HASH_CLIENT: {
        const struct sockaddr *sa = in->client;
        if (sa->sa_family == AF_INET6)
            h = ups_hash(&((const struct sockaddr_in6 *)sa)->sin6_addr, 16,
                         2166136261u);
        else
            h = ups_hash(&((const struct sockaddr_in *)sa)->sin_addr, 4,
                         2166136261u);
        break;
    }
    case HASH_URI:
        h = ups_hash(in->uri.p, in->uri.len, 2166136261u);
        break;
    default:
        h = ups_hash(in->header.p, in->header.len, 2166136261u);
    }
    return h;
}

static struct ups_server *ups_pick_hash(struct ups_group *g, uint32_t h,
                                        uint64_t tried, uint64_t now)
{
    size_t lo = 0, hi = g->nring;

    while (lo < hi) { /* first point at or after h */
        size_t mid = (lo + hi) / 2;
        if (g->ring[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Walk on past unusable servers: their keys go to the next ones. */
    for (size_t k = 0; k < g->nring; k++) {
        struct ups_server *s = &g->servers[g->ring[(lo + k) % g->nring].server];
        if (ups_usable(s, tried, now))
            return s;
    }
    return NULL;
}

struct ups_server *ups_pick(struct ups_group *g, uint32_t key,
                            uint64_t tried)
{
    uint64_t now = pt_clock_ms(CLOCK_MONOTONIC);

    switch (g->cf->balance) {
    case BALANCE_LEAST_CONN:
        return ups_pick_least(g, tried, now);
    case BALANCE_HASH:
        return ups_pick_hash(g, key, tried, now);
    default:
        return ups_pick_rr(g, tried, now);
    }
}

void ups_server_observe(struct ups_server *s, uint64_t us)
{
    stats_upstream_time(s->stats, us);
}

void ups_server_busy(struct ups_server *s, int delta)
{
    if (delta < 0 && s->active == 0)
        return;
    s->active = (unsigned)((int)s->active + delta);
}

/* Races between workers here only blur the count by a failure or two;
 * the compare-and-swap makes sure one worker logs the change. */
void ups_server_failed(struct ups_server *s)
{
    const struct conf_upstream *cf = s->group->cf;
    struct shm_health *h = s->health;
    uint64_t now = pt_clock_ms(CLOCK_MONOTONIC), until;
    uint32_t fails;

    if (cf->max_fails == 0)
        return;
    if (now - atomic_load(&h->fail_start) > cf->fail_timeout) {
        atomic_store(&h->fails, 0);
        atomic_store(&h->fail_start, now);
    }
    fails = atomic_fetch_add(&h->fails, 1) + 1;
    until = atomic_load(&h->down_until);
    if (fails < cf->max_fails || until > now)
        return;
    if (atomic_compare_exchange_strong(&h->down_until, &until,
                                       now + cf->fail_timeout)) {
        atomic_store(&h->fails, 0);
        log_warn("upstream %s: server %s down for %llu ms after %u failures "
                 "(passive health)",
                 cf->name, s->cf->address,
                 (unsigned long long)cf->fail_timeout, fails);
    }
}

void ups_server_ok(struct ups_server *s)
{
    if (atomic_load_explicit(&s->health->fails, memory_order_relaxed))
        atomic_store(&s->health->fails, 0);
}

/* ---- connections --------------------------------------------------------- */

static void on_idle_event(struct bufferevent *bev, short what, void *arg)
{
    struct upconn *uc = arg, **pp;
    struct ups_server *s = uc->srv;

    /* Closed, reset, or its idle time is over: out of the pool. */
    for (pp = &s->idle; *pp; pp = &(*pp)->next) {
        if (*pp == uc) {
            *pp = uc->next;
            s->nidle--;
            break;
        }
    }
    ups_conn_close(&uc);
}

static void on_idle_read(struct bufferevent *bev, void *arg)
{
    /* An idle upstream must not talk: whatever it says, drop it. */
    on_idle_event(bev, BEV_EVENT_READING, arg);
}

/*
 * A TLS connection: the TCP connect is started here, and the handshake
 * runs in the bufferevent once the socket is writable;
 * BEV_EVENT_CONNECTED comes after the handshake, the write timeout
 * bounds both.
 */
static struct bufferevent *ups_tls_connect(struct ups_server *s)
{
    struct bufferevent *bev;
    int one = 1, saved;
    int fd = socket(s->cf->addr.ss_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    SSL *ssl;

    if (fd < 0)
        return NULL;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&s->cf->addr, s->cf->addrlen) < 0 &&
        errno != EINPROGRESS)
        goto fail;
    ssl = tls_client_ssl(s->group->tls);
    if (ssl == NULL)
        goto fail;
    bev = bufferevent_openssl_socket_new(s->group->set->base, fd, ssl,
                                         BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        goto fail;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
fail:
    saved = errno;
    close(fd);
    errno = saved;
    return NULL;
}


/* libevent moves 16 KB per read or write turn by default: a large body
 * would take a loop turn (and an epoll round) per 16 KB.  The read
 * bound counts for TLS connections; plain ones read as below. */
#define UPS_MAX_SINGLE_READ (256 * 1024)
#define UPS_MAX_SINGLE_WRITE (1024 * 1024)

static void ups_conn_tune(struct bufferevent *bev)
{
    bufferevent_set_max_single_read(bev, UPS_MAX_SINGLE_READ);
    bufferevent_set_max_single_write(bev, UPS_MAX_SINGLE_WRITE);
}

/* ---- reading a plain connection ------------------------------------------ */

/*
 * What one read asks for: from UPS_READ_MIN, doubled after each read
 * that filled its space, up to UPS_READ_MAX, and halved after one that
 * used less than a quarter.  libevent gives a new buffer chain a power
 * of two bytes including its ~50-byte header, so these stay under one.
 */
#define UPS_READ_MIN (4096 - 128)
#define UPS_READ_MAX (64 * 1024 - 128)

/*
 * A plain connection's read timeout is kept lazily, as a deadline
 * (rd_due) and a timer (tmo) that fires no later than it.  Moving the
 * deadline later, as every read, every exchange and every return to the
 * pool does, is a store; the timer is added again only when the deadline
 * moves before it, or, when it fires early, for what is left.  (A timeout
 * on the read event itself had libevent take the timer out of its heap
 * and put it back two or three times per exchange.)
 */
static void ups_rd_push(struct upconn *uc)
{
    uc->rd_due = uc->rd_timed
                     ? pt_clock_ms(CLOCK_MONOTONIC_COARSE) + uc->rd_ms
                     : 0;
}

static void ups_rd_arm(struct upconn *uc)
{
    struct timeval tv;

    ups_rd_push(uc);
    if (!uc->rd_timed)
        return;
    if (uc->tmo_at && uc->tmo_at <= uc->rd_due)
        return; /* fires first, and looks again */
    tv = pt_tv(uc->rd_ms);
    if (event_add(&uc->tmo, &tv) == 0)
        uc->tmo_at = uc->rd_due;
}

static void ups_on_read(evutil_socket_t fd, short what, void *arg);

static void ups_on_tmo(evutil_socket_t fd, short what, void *arg)
{
    struct upconn *uc = arg;
    uint64_t now = pt_clock_ms(CLOCK_MONOTONIC_COARSE);
    struct timeval tv;

    (void)fd; /* a timer's: -1 */
    (void)what;
    uc->tmo_at = 0;
    if (!uc->rd_on || uc->rd_due == 0)
        return;
    if (now < uc->rd_due) {
        tv = pt_tv(uc->rd_due - now);
        if (event_add(&uc->tmo, &tv) == 0)
            uc->tmo_at = uc->rd_due;
        return;
    }
    ups_on_read(uc->fd, EV_TIMEOUT, uc); /* may free uc */
}

static void ups_on_read(evutil_socket_t fd, short what, void *arg)
{
    struct upconn *uc = arg;
    struct bufferevent *bev = uc->bev;
    bufferevent_data_cb readcb;
    bufferevent_event_cb eventcb;
    void *cbarg;
    short why = BEV_EVENT_TIMEOUT;

    bufferevent_getcb(bev, &readcb, NULL, &eventcb, &cbarg);
    if (!(what & EV_TIMEOUT)) {
        size_t room;
        ssize_t n = evio_recv(bufferevent_get_input(bev), fd, uc->rd_want,
                              &room);
        if (n > 0) {
            ups_rd_push(uc);
            if ((size_t)n == room)
                uc->rd_want = PT_MIN(uc->rd_want * 2, UPS_READ_MAX);
            else if ((size_t)n < uc->rd_want / 4)
                uc->rd_want = PT_MAX(uc->rd_want / 2, UPS_READ_MIN);
            if (readcb)
                readcb(bev, cbarg); /* may free uc */
            return;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
                      errno == EINTR))
            return;
        why = n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR;
    }
    ups_conn_read(uc, 0);
    if (eventcb)
        eventcb(bev, BEV_EVENT_READING | why, cbarg); /* may free uc */
}

void ups_conn_read(struct upconn *uc, int on)
{
    if (uc->tls) {
        if (on)
            bufferevent_enable(uc->bev, EV_READ);
        else
            bufferevent_disable(uc->bev, EV_READ);
        return;
    }
    if (!on) {
        if (uc->rd_on)
            event_del(&uc->rd);
        uc->rd_on = 0;
        uc->rd_due = 0; /* tmo, if pending, finds nothing to do */
        return;
    }
    if (uc->rd_on)
        return;
    if (!uc->rd_set) {
        struct event_base *base = bufferevent_get_base(uc->bev);
        event_assign(&uc->rd, base, uc->fd, EV_READ | EV_PERSIST,
                     ups_on_read, uc);
        evtimer_assign(&uc->tmo, base, ups_on_tmo, uc);
        uc->rd_set = 1;
        uc->rd_want = UPS_READ_MIN;
    }
    if (event_add(&uc->rd, NULL) == 0) {
        uc->rd_on = 1;
        ups_rd_arm(uc);
    } else {
        log_warn("upstream: cannot watch a connection for reading: %s",
                 strerror(errno));
    }
}

/* A plain connection's read timeout (NULL: none), applied at once when
 * reading is on. */
static void ups_conn_read_timeout(struct upconn *uc, const struct timeval *rd)
{
    uc->rd_timed = rd != NULL;
    if (rd)
        uc->rd_ms = (uint64_t)rd->tv_sec * 1000 +
                    (uint64_t)rd->tv_usec / 1000;
    if (uc->rd_on)
        ups_rd_arm(uc);
}

void ups_conn_timeouts(struct upconn *uc, const struct timeval *rd,
                       const struct timeval *wr)
{
    if (uc->tls) {
        bufferevent_set_timeouts(uc->bev, rd, wr);
        return;
    }
    /* the same write timeout as before is not set again: that would
     * re-add the bufferevent's events */
    if (wr ? !uc->wr_timed || uc->wr_tv.tv_sec != wr->tv_sec ||
                 uc->wr_tv.tv_usec != wr->tv_usec
           : uc->wr_timed) {
        bufferevent_set_timeouts(uc->bev, NULL, wr);
        uc->wr_timed = wr != NULL;
        if (wr)
            uc->wr_tv = *wr;
    }
    ups_conn_read_timeout(uc, rd);
}

struct upconn *ups_conn_get(struct ups_server *s)
{
    struct ups_set *set = s->group->set;
    struct upconn *uc = s->idle;
    int one = 1;

    if (uc) {
        s->idle = uc->next;
        s->nidle--;
        uc->next = NULL;
        uc->reused = 1;
        /* reading stays on, with its idle timeout until the caller
         * sets its own, at once */
        bufferevent_setcb(uc->bev, NULL, NULL, NULL, NULL);
        return uc;
    }
    uc = calloc(1, sizeof(*uc));
    if (uc == NULL)
        return NULL;
    uc->srv = s;
    if (s->group->tls) {
        uc->bev = ups_tls_connect(s);
        if (uc->bev == NULL) {
            int saved = errno;
            free(uc);
            errno = saved;
            return NULL;
        }
        ups_conn_tune(uc->bev);
        uc->tls = 1;
        uc->fd = bufferevent_getfd(uc->bev);
        return uc;
    }
    uc->bev = bufferevent_socket_new(set->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (uc->bev == NULL) {
        free(uc);
        return NULL;
    }
    ups_conn_tune(uc->bev);
    if (bufferevent_socket_connect(uc->bev, (struct sockaddr *)&s->cf->addr,
                                   (int)s->cf->addrlen) < 0) {
        int saved = errno;
        ups_conn_close(&uc);
        errno = saved;
        return NULL;
    }
    uc->fd = bufferevent_getfd(uc->bev);
    setsockopt(uc->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return uc;
}

void ups_conn_put(struct upconn **ucp)
{
    struct upconn *uc = *ucp;
    struct ups_server *s = uc->srv;
    const struct conf_upstream *cf = s->group->cf;
    struct timeval tv;

    *ucp = NULL;
    if (s->group->set->retired || s->nidle >= cf->keepalive ||
        evbuffer_get_length(bufferevent_get_input(uc->bev)) > 0 ||
        evbuffer_get_length(bufferevent_get_output(uc->bev)) > 0) {
        ups_conn_close(&uc);
        return;
    }
    uint64_t ms = uc->idle_ms ? PT_MIN(uc->idle_ms, cf->keepalive_timeout)
                              : cf->keepalive_timeout;
    tv = pt_tv(ms);
    bufferevent_setcb(uc->bev, on_idle_read, NULL, on_idle_event, uc);
    /* A plain connection keeps its write timeout (nothing is written
     * while idle; setting it again would re-add its events); a TLS one's
     * are all set anew by its next exchange. */
    if (uc->tls)
        bufferevent_set_timeouts(uc->bev, &tv, NULL);
    else
        ups_conn_read_timeout(uc, &tv);
    ups_conn_read(uc, 1);
    uc->next = s->idle;
    s->idle = uc;
    s->nidle++;
}

void ups_conn_close(struct upconn **ucp)
{
    struct upconn *uc = *ucp;

    if (uc == NULL)
        return;
    *ucp = NULL;
    if (uc->rd_on)
        event_del(&uc->rd);
    if (uc->rd_set)
        event_del(&uc->tmo);
    bufferevent_free(uc->bev);
    free(uc);
}

/* ---- active health checks (worker 0 runs them for every worker) ---------- */

struct ups_check {
    struct ups_server *s;     /* borrowed */
    struct event *timer;      /* owns */
    struct bufferevent *bev;  /* owns while a check runs */
    unsigned ok, bad;         /* results in a row */
};

static void ups_check_schedule(struct ups_check *ck, uint64_t ms)
{
    struct timeval tv = pt_tv(ms);
    evtimer_add(ck->timer, &tv);
}

static void ups_check_result(struct ups_check *ck, int pass, const char *why)
{
    struct ups_server *s = ck->s;
    const struct conf_upstream *cf = s->group->cf;
    struct shm_health *h = s->health;

    bufferevent_free(ck->bev);
    ck->bev = NULL;
    if (pass) {
        ck->bad = 0;
        if (++ck->ok >= cf->health_check.passes &&
            atomic_exchange(&h->active_down, 0)) {
            /* Back: forget the passive verdict too. */
            atomic_store(&h->down_until, 0);
            atomic_store(&h->fails, 0);
            log_notice("upstream %s: server %s is up (%u checks passed)",
                       cf->name, s->cf->address, ck->ok);
        }
    } else {
        ck->ok = 0;
        if (++ck->bad >= cf->health_check.fails &&
            !atomic_exchange(&h->active_down, 1))
            log_warn("upstream %s: server %s is down: %s (%u checks failed)",
                     cf->name, s->cf->address, why, ck->bad);
    }
    ups_check_schedule(ck, cf->health_check.interval);
}

static void on_check_read(struct bufferevent *bev, void *arg)
{
    struct ups_check *ck = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr eol = evbuffer_search(in, "\r\n", 2, NULL);
    char line[16] = {0};

    if (eol.pos < 0) {
        if (evbuffer_get_length(in) > 1024)
            ups_check_result(ck, 0, "invalid response");
        return;
    }
    evbuffer_copyout(in, line, PT_MIN((size_t)eol.pos, sizeof(line) - 1));
    /* "HTTP/1.x 2xx" or 3xx passes. */
    if (strncmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ' ||
        (line[9] != '2' && line[9] != '3'))
        ups_check_result(ck, 0, "status not 2xx or 3xx");
    else
        ups_check_result(ck, 1, NULL);
}

static void on_check_event(struct bufferevent *bev, short what, void *arg)
{
    struct ups_check *ck = arg;

    if (what & BEV_EVENT_CONNECTED)
        return;
    ups_check_result(ck, 0, (what & BEV_EVENT_TIMEOUT) ? "timed out"
                            : (what & BEV_EVENT_EOF) ? "closed without answer"
                                                     : "connection failed");
}

static void on_check_timer(evutil_socket_t fd, short what, void *arg)
{
    struct ups_check *ck = arg;
    struct ups_server *s = ck->s;
    const struct conf_upstream *cf = s->group->cf;
    struct timeval tv = pt_tv(cf->health_check.timeout);

    /* A TLS group is checked over TLS, like its requests. */
    ck->bev = s->group->tls ? ups_tls_connect(s)
                            : bufferevent_socket_new(s->group->set->base, -1,
                                                     BEV_OPT_CLOSE_ON_FREE);
    if (ck->bev == NULL) {
        ups_check_schedule(ck, cf->health_check.interval);
        return;
    }
    bufferevent_setcb(ck->bev, on_check_read, NULL, on_check_event, ck);
    bufferevent_set_timeouts(ck->bev, &tv, &tv);
    evbuffer_add_printf(bufferevent_get_output(ck->bev),
                        "GET %s HTTP/1.1\r\nHost: %s\r\n"
                        "User-Agent: portico-health-check\r\n"
                        "Connection: close\r\n\r\n",
                        cf->health_check.path,
                        cf->host ? cf->host : s->cf->address);
    bufferevent_enable(ck->bev, EV_READ | EV_WRITE);
    if (!s->group->tls &&
        bufferevent_socket_connect(ck->bev, (struct sockaddr *)&s->cf->addr,
                                   (int)s->cf->addrlen) < 0)
        ups_check_result(ck, 0, "connect failed");
}

static void ups_check_free(struct ups_check **ckp)
{
    struct ups_check *ck = *ckp;

    if (ck == NULL)
        return;
    *ckp = NULL;
    if (ck->bev)
        bufferevent_free(ck->bev);
    event_free(ck->timer);
    free(ck);
}

void ups_set_check(struct ups_set *set)
{
    for (size_t i = 0; i < set->ngroups; i++) {
        struct ups_group *g = &set->groups[i];
        if (!g->cf->health_check.enabled)
            continue;
        for (size_t k = 0; k < g->nservers; k++) {
            struct ups_check *ck = calloc(1, sizeof(*ck));
            if (ck == NULL)
                return;
            ck->s = &g->servers[k];
            ck->timer = evtimer_new(set->base, on_check_timer, ck);
            if (ck->timer == NULL) {
                free(ck);
                return;
            }
            g->servers[k].check = ck;
            ups_check_schedule(ck, 0);
        }
    }
}
