/*
 * worker.c -- a worker process: event_base, generations, listeners,
 * privileges, and the channel to the master.
 *
 * A reload arrives as a CHANNEL_GENERATION message carrying the config
 * bytes the master validated (in a memfd) and every listener's fd.  The
 * worker builds the new generation beside the old one, swaps it in, and
 * the old one lives on until the last request holding it ends.
 *
 * Calls: conn.c, channel.c, conf.c, log.c, http_parse.c.
 */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "channel.h"
#include "conn.h"
#include "proxy.h"
#include "listener.h"
#include "log.h"
#include "stats.h"
#include "tls.h"
#include "upstream.h"

struct worker {
    int slot;
    struct event_base *base;     /* owns */
    struct gen *gen;             /* ref: the current generation */
    int channel_fd;              /* owns */
    struct event *channel_ev;    /* owns */
    struct event *sig_ev[3];     /* owns: INT, TERM, QUIT */
    struct event *grace_ev;      /* owns; armed by a graceful stop */
    struct event *notify_ev;     /* owns: cache fills waking followers */
    struct event *notify_retry;  /* owns: armed while the name is taken */
    int notify_fd;               /* owns; -1 without a cache */
    unsigned stopping : 1;
    unsigned paused : 1;         /* accepting paused at max_connections */
    unsigned shedding : 1;       /* accepting paused: over its share */
    struct event *shed_ev;       /* owns: checks the share while shedding */
    struct http_header *hdrs;    /* owns: scratch for one request head */
    size_t hdrs_cap;
};

static void worker_stop_graceful(struct worker *w, const char *why);

/* ---- generations ------------------------------------------------------- */

struct gen *gen_ref(struct gen *g)
{
    g->refs++;
    return g;
}

static void gen_free(struct gen *g)
{
    for (size_t i = 0; i < g->nlsn; i++)
        if (g->lsn[i])
            evconnlistener_free(g->lsn[i]);
    free(g->lsn);
    for (size_t i = 0; g->lctx && i < g->conf->nlisteners; i++)
        tls_server_free(&g->lctx[i].tls);
    free(g->lctx);
    for (size_t i = 0; g->responds && i < g->conf->nroutes; i++) {
        free(g->responds[i].head);
        free(g->responds[i].fields);
    }
    free(g->responds);
    free(g->route_stats);
    ups_set_free(&g->ups);
    if (g->access_fd >= 0)
        close(g->access_fd);
    if (g->error_fd >= 0 && g->error_fd != 2)
        close(g->error_fd);
    conf_free(&g->conf);
    free(g);
}

void gen_release(struct gen **gp)
{
    struct gen *g = *gp;

    if (g == NULL)
        return;
    *gp = NULL;
    if (--g->refs == 0)
        gen_free(g);
}

/* Serialise a respond: route's status line and fields once per
 * generation, so answering costs a few buffer appends. */
static int gen_build_respond(struct gen_respond *gr,
                             const struct conf_respond *rs)
{
    size_t cap = 128, len;
    int has_type = 0;

    for (size_t i = 0; i < rs->nheaders; i++) {
        cap += strlen(rs->headers[i].name) + strlen(rs->headers[i].value) + 4;
        if (strcasecmp(rs->headers[i].name, "Content-Type") == 0)
            has_type = 1;
    }
    if (asprintf(&gr->head, "HTTP/1.1 %d %s\r\n", rs->status,
                 http_reason(rs->status)) < 0) {
        gr->head = NULL;
        return PT_ERROR;
    }
    gr->head_len = strlen(gr->head);
    gr->fields = malloc(cap);
    if (gr->fields == NULL)
        return PT_ERROR;
    len = 0;
    for (size_t i = 0; i < rs->nheaders; i++)
        len += (size_t)snprintf(gr->fields + len, cap - len, "%s: %s\r\n",
                                rs->headers[i].name, rs->headers[i].value);
    if (!has_type && rs->body_len)
        len += (size_t)snprintf(gr->fields + len, cap - len,
                                "Content-Type: text/plain; charset=utf-8\r\n");
    /* 1xx, 204 and 304 carry no body and no length (RFC 9110 8.6). */
    if (rs->status != 204 && rs->status != 304 && rs->status >= 200)
        len += (size_t)snprintf(gr->fields + len, cap - len,
                                "Content-Length: %zu\r\n", rs->body_len);
    gr->fields_len = len;
    return PT_OK;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg);
static void on_accept_error(struct evconnlistener *l, void *arg);

static void gen_close_fds(const int *lfds, size_t from, size_t n)
{
    for (size_t k = from; k < n; k++)
        close(lfds[k]);
}

/*
 * Build a generation around conf (owned from now on, freed on failure)
 * and the given fds (owned; closed on failure).  Listeners start
 * disabled.  Returns NULL on failure.
 */
static struct gen *gen_new(struct worker *w, unsigned id, struct conf *conf,
                           const int *lfds, int error_fd, int access_fd)
{
    struct gen *g = calloc(1, sizeof(*g));

    if (g == NULL) {
        gen_close_fds(lfds, 0, conf->nlisteners);
        if (access_fd >= 0)
            close(access_fd);
        if (error_fd != 2)
            close(error_fd);
        conf_free(&conf);
        return NULL;
    }
    g->id = id;
    g->refs = 1;
    g->conf = conf;
    g->worker = w;
    g->error_fd = error_fd;
    g->access_fd = access_fd;
    g->responds = calloc(conf->nroutes + 1, sizeof(*g->responds));
    g->lsn = calloc(conf->nlisteners + 1, sizeof(*g->lsn));
    g->lctx = calloc(conf->nlisteners + 1, sizeof(*g->lctx));
    g->ups = ups_set_new(w->base, conf);
    g->route_stats = calloc(conf->nroutes + 1, sizeof(*g->route_stats));
    for (size_t r = 0; g->route_stats && r < conf->nroutes; r++)
        g->route_stats[r] = stats_route_find(&conf->routes[r]);
    if (g->responds == NULL || g->lsn == NULL || g->lctx == NULL ||
        g->ups == NULL || g->route_stats == NULL)
        goto fail;
    for (size_t i = 0; i < conf->nlisteners; i++) {
        char why[300];
        g->lctx[i].w = w;
        g->lctx[i].admin = conf->listeners[i].admin;
        g->lctx[i].access_format = conf->listeners[i].access_format
                                       ? conf->listeners[i].access_format
                                       : (int)conf->access_log.format;
        if (!conf->listeners[i].tls.enabled)
            continue;
        /* Validated by the master: a failure here is memory or a bug. */
        g->lctx[i].tls = tls_server_new(conf, &conf->listeners[i].tls, why,
                                        sizeof(why));
        if (g->lctx[i].tls == NULL) {
            log_error("listener %s: TLS: %s", conf->listeners[i].listen, why);
            goto fail;
        }
    }
    for (size_t r = 0; r < conf->nroutes; r++)
        if (conf->routes[r].upstream == NULL &&
            gen_build_respond(&g->responds[r], &conf->routes[r].respond))
            goto fail;
    for (size_t i = 0; i < conf->nlisteners; i++, g->nlsn = i) {
        /* backlog 0: the socket listens already, with the configured
         * backlog (-1 would have libevent listen again, with 128) */
        g->lsn[i] = evconnlistener_new(
            w->base, on_accept, &g->lctx[i],
            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_DISABLED,
            0, lfds[i]);
        if (g->lsn[i] == NULL)
            goto fail;
        evconnlistener_set_error_cb(g->lsn[i], on_accept_error);
    }
    return g;

fail:
    gen_close_fds(lfds, g->nlsn, conf->nlisteners);
    if (g->lsn == NULL)
        g->nlsn = 0;
    gen_free(g);
    return NULL;
}

/* One worker woken per connection, not all (listener_wake_one). */
static void listener_wake(struct evconnlistener *l)
{
    static int warned;
    int r = listener_wake_one(evconnlistener_get_fd(l));

    if (r == -2) {
        log_error("listener: lost its epoll registration; registering "
                  "it again (every worker wakes for each connection)");
        evconnlistener_disable(l);
        evconnlistener_enable(l);
    } else if (r < 0 && !warned) {
        warned = 1;
        log_debug("listener: no EPOLLEXCLUSIVE here; every worker wakes "
                  "for each connection");
    }
}

static void gen_listen(struct gen *g, int on)
{
    for (size_t i = 0; i < g->nlsn; i++) {
        if (g->lsn[i] == NULL)
            continue;
        if (on) {
            evconnlistener_enable(g->lsn[i]);
            listener_wake(g->lsn[i]);
        } else
            evconnlistener_disable(g->lsn[i]);
    }
}

/* Make g current: it starts accepting, the old one stops (its sockets
 * close when its last request ends and it is freed). */
static void gen_close_listeners(struct gen *g)
{
    for (size_t i = 0; i < g->nlsn; i++) {
        if (g->lsn[i])
            evconnlistener_free(g->lsn[i]);
        g->lsn[i] = NULL;
    }
}

static void worker_swap_gen(struct worker *w, struct gen *g)
{
    /* The new generation holds its own fd for every socket it keeps, so
     * the old one's close now: a removed listener stops at once. */
    if (w->gen) {
        gen_close_listeners(w->gen);
        ups_set_retire(w->gen->ups);
    }
    gen_release(&w->gen);
    w->gen = g;
    cache_head_forget(); /* they may hold the old rules' fields */
    log_set_fd(g->error_fd);
    log_set_level(g->conf->error_log.level);
    if (!w->stopping && !w->paused && !w->shedding)
        gen_listen(g, 1);
    if (w->slot == 0)
        ups_set_check(g->ups);
}

struct gen *worker_gen(struct worker *w)
{
    return w->gen;
}

struct event_base *worker_base(struct worker *w)
{
    return w->base;
}

int worker_stopping(struct worker *w)
{
    return w->stopping;
}

struct http_header *worker_headers(struct worker *w, size_t n)
{
    if (n > w->hdrs_cap) {
        struct http_header *h = realloc(w->hdrs, n * sizeof(*h));
        if (h == NULL)
            abort(); /* at most limits.max_headers entries: tiny */
        w->hdrs = h;
        w->hdrs_cap = n;
    }
    return w->hdrs;
}

/* ---- accepting --------------------------------------------------------- */

/*
 * The kernel wakes the worker that began waiting first (EPOLLEXCLUSIVE,
 * listener_wake_one), so on a quiet server one worker would take every
 * connection, and long-lived ones (WebSockets, event streams, keep-alive
 * clients) would stay piled on it once they got busy.  A worker holding
 * more than its share of the open connections stops waiting on the
 * listeners until it is back near the mean; the kernel then wakes the
 * others in its place.  One worker at a time does so, so the others
 * always listen.  The counts are the shared ones (stats.h), from which
 * the master takes a dead worker's connections when it reaps it.
 */
#define SHED_CHECK_MS 10

static int worker_over_share(int leaving)
{
    struct stats_global *sg = stats_global();
    int64_t open, mean;
    uint64_t n;

    if (sg == NULL)
        return 0;
    open = atomic_load_explicit(&sg->connections_open, memory_order_relaxed);
    n = atomic_load_explicit(&sg->workers, memory_order_relaxed);
    if (n < 2 || open <= 0)
        return 0;
    mean = open / (int64_t)n;
    /* 8 + mean/8 over the mean to start, half that to stop */
    return (int64_t)conn_count() >
           mean + (8 + mean / 8) / (leaving ? 2 : 1);
}

/* Stop shedding (the caller listens again, if it should). */
static void worker_shed_end(struct worker *w)
{
    int64_t me = (int64_t)getpid();

    w->shedding = 0;
    event_del(w->shed_ev);
    atomic_compare_exchange_strong(&stats_global()->accept_shedder, &me, 0);
}

/*
 * Over the share: stop listening, check every SHED_CHECK_MS.  Only while
 * no other worker does (stats_global()->accept_shedder): a worker that
 * sheds decides on counts that move as the others accept, and two that
 * shed on stale counts would leave nobody listening until a check.
 */
static void worker_shed_start(struct worker *w)
{
    static const struct timeval every = {0, SHED_CHECK_MS * 1000};
    int64_t none = 0;

    if (!atomic_compare_exchange_strong(&stats_global()->accept_shedder,
                                        &none, (int64_t)getpid()))
        return;
    w->shedding = 1;
    if (event_add(w->shed_ev, &every) < 0) {
        worker_shed_end(w); /* keep accepting: balance is not worth a stall */
        return;
    }
    gen_listen(w->gen, 0);
    log_debug("%u connections, over this worker's share: not accepting "
              "for now", conn_count());
}

static void worker_shed_check(struct worker *w)
{
    if (worker_over_share(1))
        return;
    /* listening before another may stop: never nobody */
    if (!w->paused && !w->stopping)
        gen_listen(w->gen, 1);
    worker_shed_end(w);
}

/*
 * Runs every SHED_CHECK_MS while shedding; before that, once, made active
 * by worker_shed after the accept loop that took this worker over its
 * share.  That loop ran until accept() found the queue empty: a worker
 * that stopped listening with connections still queued would leave them
 * there, as the kernel told no other worker about them (EPOLLEXCLUSIVE),
 * until some new connection woke one.
 */
static void on_shed_check(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    if (w->shedding)
        worker_shed_check(w);
    else if (!w->paused && !w->stopping && worker_over_share(0))
        worker_shed_start(w);
}

static void worker_shed(struct worker *w)
{
    if (w->shedding || !worker_over_share(0))
        return;
    if (w->shed_ev == NULL)
        w->shed_ev = event_new(w->base, -1, EV_PERSIST, on_shed_check, w);
    if (w->shed_ev != NULL)
        event_active(w->shed_ev, EV_TIMEOUT, 1);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    struct gen_listener *lc = arg;
    struct worker *w = lc->w;

    conn_new(w, fd, sa, salen, lc);
    if (conn_count() >= w->gen->conf->limits.max_connections &&
        !w->paused) {
        /* Full: stop accepting until a connection closes.  Pending
         * connects wait in the kernel's backlog or go to other workers. */
        w->paused = 1;
        gen_listen(w->gen, 0);
        log_warn("limits.max_connections (%u) reached; pausing accept",
                 w->gen->conf->limits.max_connections);
    } else if (!w->paused) {
        worker_shed(w);
    }
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct worker *w = ((struct gen_listener *)arg)->w;
    int err = EVUTIL_SOCKET_ERROR();

    /* Out of descriptors or memory: pause briefly rather than spin. */
    log_error("accept: %s", evutil_socket_error_to_string(err));
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        w->paused = 1;
        gen_listen(w->gen, 0);
    }
}

void worker_conn_closed(struct worker *w)
{
    if (w->stopping) {
        if (conn_count() == 0)
            event_base_loopbreak(w->base);
        return;
    }
    if (w->paused && conn_count() < w->gen->conf->limits.max_connections) {
        w->paused = 0;
        if (!w->shedding)
            gen_listen(w->gen, 1);
    }
    if (w->shedding)
        worker_shed_check(w);
}

/* ---- stopping ---------------------------------------------------------- */

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    log_notice("shutdown_grace over; closing %u connections", conn_count());
    conn_close_all();
    event_base_loopbreak(w->base);
}

static void worker_stop_graceful(struct worker *w, const char *why)
{
    struct timeval tv;
    uint64_t ms = w->gen->conf->timeouts.shutdown_grace;

    if (w->stopping)
        return;
    log_info("graceful stop (%s): %u connections open", why, conn_count());
    w->stopping = 1;
    if (w->notify_retry)
        evtimer_del(w->notify_retry);
    if (w->shedding)
        worker_shed_end(w);
    gen_close_listeners(w->gen);
    conn_stop_all_graceful();
    if (conn_count() == 0) {
        event_base_loopbreak(w->base);
        return;
    }
    tv = pt_tv(ms);
    w->grace_ev = evtimer_new(w->base, on_grace, w);
    if (w->grace_ev == NULL || evtimer_add(w->grace_ev, &tv) < 0)
        on_grace(-1, 0, w);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct worker *w = arg;

    if (sig == SIGQUIT) {
        worker_stop_graceful(w, "SIGQUIT");
        return;
    }
    conn_close_all();
    event_base_loopbreak(w->base);
}

/* ---- the channel ------------------------------------------------------- */

static void worker_reply(struct worker *w, uint32_t type, uint32_t gen)
{
    struct channel_msg m = {type, gen, 0, 0};

    if (channel_send(w->channel_fd, &m, NULL, 0) < 0)
        log_error("channel: cannot answer the master: %s", strerror(errno));
}

/* Load the generation the master validated from its memfd: the config
 * bytes and the files they name, never the disk. */
static struct conf *worker_load_memfd(struct worker *w, int fd)
{
    struct conf_diag diag = {0};
    struct conf *conf = NULL;
    struct channel_bundle b;
    struct stat st;

    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd,
                       0);
        if (p != MAP_FAILED) {
            if (channel_bundle_read(p, (size_t)st.st_size, &b) == 0) {
                conf = conf_load_buffer_files(w->gen->conf->path, b.yaml,
                                              b.yaml_len, b.files, b.nfiles,
                                              &diag);
                channel_bundle_fini(&b);
            }
            munmap(p, (size_t)st.st_size);
        }
    }
    for (size_t i = 0; i < diag.n; i++)
        log_error("reload: %s", diag.msgs[i]);
    conf_diag_fini(&diag);
    return conf;
}

static void worker_on_generation(struct worker *w,
                                 const struct channel_msg *m, int *fds,
                                 size_t nfds)
{
    struct conf *conf = nfds >= 3 ? worker_load_memfd(w, fds[0]) : NULL;
    int access_fd = (m->flags & CHANNEL_F_HAS_ACCESS) ? fds[2] : -1;
    struct gen *g;

    if (nfds >= 3 && !(m->flags & CHANNEL_F_HAS_ACCESS))
        close(fds[2]);
    if (nfds >= 1)
        close(fds[0]);
    if (conf == NULL || conf->nlisteners != nfds - 3) {
        /* Validated by the master, so this is a broken invariant between
         * our own processes: keep the old generation, say so. */
        log_error("generation %u refused: config or descriptors mismatch",
                  m->generation);
        for (size_t i = 1; i < nfds; i++)
            if (i != 2 || access_fd >= 0)
                close(fds[i]);
        conf_free(&conf);
        worker_reply(w, CHANNEL_NACK, m->generation);
        return;
    }
    g = gen_new(w, m->generation, conf, fds + 3, fds[1], access_fd);
    if (g == NULL) {
        log_error("generation %u: out of memory; keeping %u",
                  m->generation, w->gen->id);
        worker_reply(w, CHANNEL_NACK, m->generation);
        return;
    }
    worker_swap_gen(w, g);
    log_debug("generation %u applied", g->id);
    worker_reply(w, CHANNEL_ACK, g->id);
}

/* SIGUSR1 in the master: swap in the freshly opened log files. */
static void worker_on_reopen(struct worker *w, const struct channel_msg *m,
                             int *fds, size_t nfds)
{
    struct gen *g = w->gen;

    if (nfds != 2) {
        for (size_t i = 0; i < nfds; i++)
            close(fds[i]);
        return;
    }
    if (g->error_fd != 2)
        close(g->error_fd);
    g->error_fd = fds[0];
    log_set_fd(g->error_fd);
    if (g->access_fd >= 0)
        close(g->access_fd);
    g->access_fd = (m->flags & CHANNEL_F_HAS_ACCESS) ? fds[1] : -1;
    if (g->access_fd < 0)
        close(fds[1]);
    log_info("log files reopened");
}

static void on_channel(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct channel_msg m = {0};
    int fds[CHANNEL_MAX_FDS];
    size_t nfds;
    int rc = channel_recv(fd, &m, fds, CHANNEL_MAX_FDS, &nfds);

    if (rc < 0 && errno == EAGAIN)
        return;
    if (rc <= 0) {
        /* The master is gone: finish what is open, then exit. */
        event_del(w->channel_ev);
        worker_stop_graceful(w, "master gone");
        return;
    }
    switch (m.type) {
    case CHANNEL_GENERATION:
        worker_on_generation(w, &m, fds, nfds);
        break;
    case CHANNEL_REOPEN:
        worker_on_reopen(w, &m, fds, nfds);
        break;
    case CHANNEL_STOP_GRACEFUL:
        worker_stop_graceful(w, "asked by the master");
        break;
    case CHANNEL_STOP_FAST:
        conn_close_all();
        event_base_loopbreak(w->base);
        break;
    default:
        for (size_t i = 0; i < nfds; i++)
            close(fds[i]);
        log_error("channel: unknown message %u", m.type);
    }
}

/* ---- start-up ---------------------------------------------------------- */

/* Started as root: become conf->user for good. */
static int worker_drop_privileges(const struct conf *conf)
{
    struct passwd *pw;

    if (geteuid() != 0 || conf->user == NULL)
        return PT_OK;
    pw = getpwnam(conf->user);
    if (pw == NULL) {
        log_error("user \"%s\": no such user", conf->user);
        return PT_ERROR;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
        setuid(pw->pw_uid) < 0) {
        log_error("cannot become user \"%s\": %s", conf->user,
                  strerror(errno));
        return PT_ERROR;
    }
    if (setuid(0) == 0) {
        log_error("dropped to \"%s\" but could regain root", conf->user);
        return PT_ERROR;
    }
    return PT_OK;
}

/* The descriptors inherited through fork become the first generation's:
 * the worker owns them now, so a listener dropped later really closes. */
static int worker_take_fds(const struct worker_init *in, int **lfds)
{
    size_t n = in->conf->nlisteners;

    *lfds = calloc(n + 1, sizeof(int));
    if (*lfds == NULL)
        return PT_ERROR;
    memcpy(*lfds, in->listen_fds, n * sizeof(int));
    return PT_OK;
}

static void on_cache_notify(evutil_socket_t fd, short what, void *arg)
{
    cache_notify_drain(fd);
    proxy_cache_wakeup();
}

static void on_notify_retry(evutil_socket_t fd, short what, void *arg);

/*
 * The socket other workers' fills wake this one through.  A retiring
 * worker of the same slot (another user, another cache zone, a refused
 * generation) may hold its name a while yet: try again until it is gone,
 * or followers here would only move on the once-a-second check.
 */
static void worker_notify_open(struct worker *w)
{
    static const struct timeval retry = {0, 250000};

    if (cache_zone() == NULL || w->slot >= 64 || w->stopping)
        return; /* no socket to have (cache_notify_open: slots 0..63) */
    w->notify_fd = cache_notify_open(w->slot);
    if (w->notify_fd >= 0) {
        w->notify_ev = event_new(w->base, w->notify_fd, EV_READ | EV_PERSIST,
                                 on_cache_notify, w);
        if (w->notify_ev)
            event_add(w->notify_ev, NULL);
        if (w->notify_retry)
            log_debug("cache notify socket of slot %d bound", w->slot);
        return;
    }
    if (w->notify_retry == NULL)
        w->notify_retry = evtimer_new(w->base, on_notify_retry, w);
    if (w->notify_retry)
        evtimer_add(w->notify_retry, &retry);
}

static void on_notify_retry(evutil_socket_t fd, short what, void *arg)
{
    worker_notify_open(arg);
}

static int worker_setup(struct worker *w, const struct worker_init *in)
{
    static const int sigs[3] = {SIGINT, SIGTERM, SIGQUIT};
    int *lfds;
    struct gen *g;

    w->slot = in->slot;
    w->channel_fd = in->channel_fd;
    stats_proc_claim((int64_t)getpid());
    w->base = event_base_new();
    if (w->base == NULL)
        return PT_ERROR;
    if (worker_take_fds(in, &lfds) < 0)
        return PT_ERROR;
    g = gen_new(w, in->generation, in->conf, lfds, in->error_fd,
                in->access_fd);
    free(lfds);
    if (g == NULL)
        return PT_ERROR;
    for (int i = 0; i < 3; i++) {
        w->sig_ev[i] = evsignal_new(w->base, sigs[i], on_signal, w);
        if (w->sig_ev[i] == NULL || event_add(w->sig_ev[i], NULL) < 0)
            return PT_ERROR;
    }
    w->channel_ev = event_new(w->base, w->channel_fd, EV_READ | EV_PERSIST,
                              on_channel, w);
    if (w->channel_ev == NULL || event_add(w->channel_ev, NULL) < 0)
        return PT_ERROR;
    worker_swap_gen(w, g);
    worker_notify_open(w);
    return worker_drop_privileges(g->conf);
}

static void worker_fini(struct worker *w)
{
    conn_close_all();
    for (int i = 0; i < 3; i++)
        if (w->sig_ev[i])
            event_free(w->sig_ev[i]);
    if (w->channel_ev)
        event_free(w->channel_ev);
    if (w->grace_ev)
        event_free(w->grace_ev);
    if (w->notify_ev)
        event_free(w->notify_ev);
    if (w->shed_ev)
        event_free(w->shed_ev);
    if (w->notify_retry)
        event_free(w->notify_retry);
    if (w->notify_fd >= 0)
        close(w->notify_fd);
    gen_release(&w->gen);
    free(w->hdrs);
    close(w->channel_fd);
    if (w->base)
        event_base_free(w->base);
}

void worker_run(const struct worker_init *in)
{
    struct worker w;
    char role[32];
    int status = 0;

    memset(&w, 0, sizeof(w));
    w.notify_fd = -1;
    snprintf(role, sizeof(role), "worker %d", in->slot);
    log_set_role(role);
    signal(SIGPIPE, SIG_IGN);
    /* SIGHUP and SIGUSR1 are the master's: it relays what they mean. */
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    /* A body streams through in 64-256 KB buffer chains, each freed as
     * soon as it is written.  With glibc's defaults every free at the
     * top of the heap gave the memory back (brk) and the next read took
     * it again: ~15 brk calls per MB of an upload.  Keep up to 8 MB free
     * at the top, and serve blocks under 1 MB from the heap (setting one
     * of these stops glibc adjusting the mmap threshold by itself). */
    mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    if (worker_setup(&w, in) < 0) {
        log_error("cannot start: %s", strerror(errno));
        status = 2;
    } else {
        log_debug("started, generation %u", w.gen->id);
        event_base_dispatch(w.base);
    }
    log_set_fd(2);
    worker_fini(&w);
    _exit(status);
}
