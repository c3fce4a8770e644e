/*
 * master.c -- the master process.  It opens the listeners, forks the
 * workers and watches them; it never serves a request.
 *
 * Signal handlers only set flags.  All signals the master handles stay
 * blocked except inside ppoll(), so a signal can never slip in between the
 * check of the flags and the wait.
 *
 * SIGHUP re-reads the config.  A valid one goes to the running workers as
 * a new generation (config bytes in a memfd, listener fds by SCM_RIGHTS);
 * unchanged listeners keep their socket, so no connect is ever refused.
 * Only a lower worker count, another user or another cache zone retires
 * workers, gracefully.  Workers inherit the cache zone by fork, so a new
 * zone (added or resized) is mapped by the master and reaches new workers
 * only: the old ones keep theirs until they exit.
 *
 * Calls: worker.c, listener.c, channel.c, conf.c, log.c, sdnotify.c,
 * cache_store.c (it maps the cache zone and gives back the pins of the
 * workers it reaps).
 */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "channel.h"
#include "listener.h"
#include "log.h"
#include "sdnotify.h"
#include "cache.h"
#include "shm.h"
#include "stats.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

/* A worker that dies sooner than this after its start counts as a crash
 * in a row; from the second in a row on, re-forks back off. */
#define MASTER_FAST_DEATH_MS 5000
#define MASTER_BACKOFF_FIRST_MS 500
#define MASTER_BACKOFF_MAX_MS 30000
/* Session-ticket keys are replaced this often; a ticket stays good for
 * two periods. */
#define MASTER_TICKET_ROTATE_MS (12ull * 3600 * 1000)
/* After a stop deadline, workers still running are killed. */
#define MASTER_FAST_STOP_MS 5000

struct slot {
    pid_t pid;           /* 0: not running */
    int chan;            /* master's end of the channel; -1 when none */
    uint64_t started_ms;
    unsigned fast_deaths; /* crashes in a row, each soon after start */
    uint64_t restart_at;  /* when pid == 0: fork again at this time */
    unsigned acked;       /* last generation this worker applied */
};

/* A worker asked to finish and exit (fewer workers, another user). */
struct retiree {
    pid_t pid;
    int chan;
};

enum master_stop { RUNNING, STOP_GRACEFUL, STOP_FAST };

struct master {
    struct conf *conf;   /* owns: the current generation */
    const char *path;    /* borrowed */
    unsigned gen;
    int *lfds;           /* owns: parallel to conf->listeners */
    int error_fd;        /* owns unless 2 */
    int access_fd;       /* owns; -1 when off */
    struct slot *slots;  /* owns: conf->workers of them */
    size_t nslots;
    struct retiree *ret; /* owns */
    size_t nret, capret;
    enum master_stop stop;
    uint64_t stop_deadline;
    int killed;          /* stop deadline passed, SIGKILL sent */
    unsigned reload_pending; /* generation waiting for acks; 0 = none */
    uint64_t next_rotate;    /* when the ticket keys rotate next */
};

static volatile sig_atomic_t sig_hup, sig_int, sig_term, sig_quit, sig_usr1,
    sig_chld;

static void on_master_signal(int sig)
{
    switch (sig) {
    case SIGHUP: sig_hup = 1; break;
    case SIGINT: sig_int = 1; break;
    case SIGTERM: sig_term = 1; break;
    case SIGQUIT: sig_quit = 1; break;
    case SIGUSR1: sig_usr1 = 1; break;
    case SIGCHLD: sig_chld = 1; break;
    }
}

static const int master_sigs[] = {SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1,
                                  SIGCHLD};

static uint64_t now_ms(void)
{
    return pt_clock_ms(CLOCK_MONOTONIC);
}

/* ---- workers ------------------------------------------------------------ */

static size_t master_live(const struct master *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nslots; i++)
        n += m->slots[i].pid > 0;
    return n;
}

/* In a new worker: forget everything that is the master's. */
static void master_child_reset(struct master *m, int keep)
{
    struct sigaction sa;
    sigset_t none;

    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i].chan >= 0)
            close(m->slots[i].chan);
    for (size_t i = 0; i < m->nret; i++)
        close(m->ret[i].chan);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (size_t i = 0; i < PT_ARRAY_LEN(master_sigs); i++)
        sigaction(master_sigs[i], &sa, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    (void)keep;
}

static int master_spawn(struct master *m, size_t i)
{
    struct slot *s = &m->slots[i];
    int sv[2];
    pid_t pid;

    if (channel_pair(sv) < 0) {
        log_error("worker %zu: socketpair: %s", i, strerror(errno));
        return PT_ERROR;
    }
    pid = fork();
    if (pid < 0) {
        log_error("worker %zu: fork: %s", i, strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return PT_ERROR;
    }
    if (pid == 0) {
        struct worker_init in = {(int)i,        m->gen,       m->conf,
                                 m->lfds,       m->error_fd,  m->access_fd,
                                 sv[1]};
        close(sv[0]);
        master_child_reset(m, sv[1]);
        worker_run(&in);
    }
    close(sv[1]);
    s->pid = pid;
    s->chan = sv[0];
    s->started_ms = now_ms();
    s->acked = m->gen;
    log_debug("worker %zu started as pid %d", i, (int)pid);
    return PT_OK;
}

/* Fork a worker again after a failed fork or a crash. */
static void master_schedule(struct master *m, size_t i, uint64_t delay)
{
    m->slots[i].pid = 0;
    m->slots[i].restart_at = now_ms() + delay;
}

static uint64_t master_backoff(unsigned fast_deaths)
{
    uint64_t d = MASTER_BACKOFF_FIRST_MS;

    if (fast_deaths <= 1)
        return 0; /* a single crash is re-forked at once */
    for (unsigned k = 2; k < fast_deaths && d < MASTER_BACKOFF_MAX_MS; k++)
        d *= 2;
    return PT_MIN(d, (uint64_t)MASTER_BACKOFF_MAX_MS);
}

static void master_describe_exit(int status, char *buf, size_t len)
{
    if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
}

static void master_slot_died(struct master *m, size_t i, int status)
{
    struct slot *s = &m->slots[i];
    uint64_t lived = now_ms() - s->started_ms, delay;
    char how[96];

    if (s->chan >= 0)
        close(s->chan);
    s->chan = -1;
    master_describe_exit(status, how, sizeof(how));
    if (m->stop != RUNNING) {
        log_info("worker %zu (pid %d) %s", i, (int)s->pid, how);
        s->pid = 0;
        return;
    }
    s->fast_deaths = lived < MASTER_FAST_DEATH_MS ? s->fast_deaths + 1 : 1;
    delay = master_backoff(s->fast_deaths);
    if (delay == 0) {
        log_error("worker %zu (pid %d) %s; starting a new one", i,
                  (int)s->pid, how);
    } else {
        log_error("worker %zu (pid %d) %s; crash loop: %u deaths in a row "
                  "within %d ms of start, next start in %llu ms",
                  i, (int)s->pid, how, s->fast_deaths, MASTER_FAST_DEATH_MS,
                  (unsigned long long)delay);
    }
    master_schedule(m, i, delay);
}

static int master_retiree_died(struct master *m, pid_t pid, int status)
{
    char how[96];

    for (size_t i = 0; i < m->nret; i++) {
        if (m->ret[i].pid != pid)
            continue;
        close(m->ret[i].chan);
        m->ret[i] = m->ret[--m->nret];
        master_describe_exit(status, how, sizeof(how));
        log_info("retired worker (pid %d) %s", (int)pid, how);
        return 1;
    }
    return 0;
}

/* A worker is gone: the cache pins it held (entries it was serving or
 * filling when it was killed) are given back.  Before any new fork, so
 * that no process using the zone can have its pid yet. */
static void master_forget_pins(pid_t pid)
{
    size_t n = cache_store_forget(cache_zone(), pid);

    if (n)
        log_notice("worker (pid %d) left %zu cache pin%s: given back", (int)pid,
                   n, n == 1 ? "" : "s");
}

static void master_reap(struct master *m)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        master_forget_pins(pid);
        stats_proc_gone(pid);
        if (master_retiree_died(m, pid, status))
            continue;
        for (size_t i = 0; i < m->nslots; i++) {
            if (m->slots[i].pid == pid) {
                master_slot_died(m, i, status);
                break;
            }
        }
    }
}

static void master_restart_due(struct master *m)
{
    uint64_t now = now_ms();

    if (m->stop != RUNNING)
        return;
    for (size_t i = 0; i < m->nslots; i++) {
        struct slot *s = &m->slots[i];
        if (s->pid == 0 && s->restart_at <= now &&
            master_spawn(m, i) < 0)
            master_schedule(m, i, MASTER_BACKOFF_FIRST_MS);
    }
}

static void master_send_simple(int chan, uint32_t type)
{
    struct channel_msg msg = {type, 0, 0, 0};

    if (channel_send(chan, &msg, NULL, 0) < 0)
        log_error("channel: %s", strerror(errno));
}

/* Ask slot i's worker to finish its work and exit; its slot is free. */
static void master_retire(struct master *m, size_t i)
{
    struct slot *s = &m->slots[i];

    if (s->pid > 0) {
        if (m->nret == m->capret) {
            size_t cap = m->capret ? m->capret * 2 : 8;
            struct retiree *r = realloc(m->ret, cap * sizeof(*r));
            if (r == NULL) {
                kill(s->pid, SIGTERM); /* can't track it: stop it now */
                return;
            }
            m->ret = r;
            m->capret = cap;
        }
        master_send_simple(s->chan, CHANNEL_STOP_GRACEFUL);
        m->ret[m->nret++] = (struct retiree){s->pid, s->chan};
    }
    s->pid = 0;
    s->chan = -1;
}

/* ---- stopping ------------------------------------------------------------ */

static void master_begin_stop(struct master *m, enum master_stop how)
{
    uint64_t grace = m->conf->timeouts.shutdown_grace;

    if (m->stop == STOP_FAST || m->stop == how)
        return;
    m->stop = how;
    sdnotify_stopping();
    log_notice("%s stop: %zu workers", how == STOP_FAST ? "fast" : "graceful",
               master_live(m) + m->nret);
    m->stop_deadline = now_ms() + (how == STOP_FAST ? MASTER_FAST_STOP_MS
                                                    : grace + 5000);
    for (size_t i = 0; i < m->nslots; i++) {
        if (m->slots[i].pid <= 0)
            continue;
        if (how == STOP_FAST)
            kill(m->slots[i].pid, SIGTERM);
        else
            master_send_simple(m->slots[i].chan, CHANNEL_STOP_GRACEFUL);
    }
    for (size_t i = 0; i < m->nret && how == STOP_FAST; i++)
        kill(m->ret[i].pid, SIGTERM);
    /* Stop listening at once: a stopping server takes no new work. */
    for (size_t i = 0; m->lfds && i < m->conf->nlisteners; i++) {
        if (m->lfds[i] >= 0)
            close(m->lfds[i]);
        m->lfds[i] = -1;
    }
}

static void master_kill_stragglers(struct master *m)
{
    if (m->stop == RUNNING || m->killed || now_ms() < m->stop_deadline)
        return;
    m->killed = 1;
    log_warn("stop deadline passed; killing %zu workers",
             master_live(m) + m->nret);
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i].pid > 0)
            kill(m->slots[i].pid, SIGKILL);
    for (size_t i = 0; i < m->nret; i++)
        kill(m->ret[i].pid, SIGKILL);
}

/* ---- log files ------------------------------------------------------------ */

static int master_open_logs(const struct conf *c, int *error_fd,
                            int *access_fd)
{
    *access_fd = -1;
    *error_fd = strcmp(c->error_log.path, "stderr") == 0
                    ? 2
                    : log_open_path(c->error_log.path);
    if (*error_fd < 0) {
        log_error("error_log \"%s\": %s", c->error_log.path, strerror(errno));
        return PT_ERROR;
    }
    /* The loader keeps a path only when some format (global, listener
     * or route) logs. */
    if (c->access_log.path == NULL)
        return PT_OK;
    *access_fd = log_open_path(c->access_log.path);
    if (*access_fd < 0) {
        log_error("access_log \"%s\": %s", c->access_log.path,
                  strerror(errno));
        if (*error_fd != 2)
            close(*error_fd);
        return PT_ERROR;
    }
    return PT_OK;
}

static void master_close_logs(int error_fd, int access_fd)
{
    if (error_fd != 2 && error_fd >= 0)
        close(error_fd);
    if (access_fd >= 0)
        close(access_fd);
}

static void master_set_logs(struct master *m, int error_fd, int access_fd)
{
    master_close_logs(m->error_fd, m->access_fd);
    m->error_fd = error_fd;
    m->access_fd = access_fd;
    log_set_fd(error_fd);
}

/* [error log, access log (or the error log as a placeholder)] */
static size_t master_log_fds(const struct master *m, int *fds,
                             uint32_t *flags)
{
    fds[0] = m->error_fd;
    fds[1] = m->access_fd >= 0 ? m->access_fd : m->error_fd;
    if (m->access_fd >= 0)
        *flags |= CHANNEL_F_HAS_ACCESS;
    return 2;
}

/* SIGUSR1: reopen both logs (logrotate moved them) and pass them on. */
static void master_reopen(struct master *m)
{
    int error_fd, access_fd, fds[2];
    struct channel_msg msg = {CHANNEL_REOPEN, m->gen, 0, 0};

    if (master_open_logs(m->conf, &error_fd, &access_fd) < 0)
        return;
    master_set_logs(m, error_fd, access_fd);
    master_log_fds(m, fds, &msg.flags);
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i].pid > 0 && channel_send(m->slots[i].chan, &msg, fds,
                                                2) < 0)
            log_error("worker %zu: cannot pass reopened logs: %s", i,
                      strerror(errno));
    log_notice("log files reopened");
}

/* ---- reload ---------------------------------------------------------------- */

static void master_log_listening(const struct conf_listener *l, int fd)
{
    char name[80];
    log_notice("listening on %s (listen: \"%s\")",
               listener_bound_name(fd, name, sizeof(name)), l->listen);
}

/* Close the sockets among fds[0..n) that the current generation does not
 * have (those opened for a reload that failed). */
static void master_close_new(struct master *m, const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int shared = 0;
        for (size_t j = 0; m->lfds && j < m->conf->nlisteners; j++)
            shared |= m->lfds[j] == fds[i];
        if (!shared && fds[i] >= 0)
            close(fds[i]);
    }
}

/* Listener fds for conf: the old socket where the address is unchanged,
 * a new one otherwise.  Returns NULL (all new sockets closed) on error. */
static int *master_listeners_for(struct master *m, const struct conf *c)
{
    int *fds = calloc(c->nlisteners + 1, sizeof(int));
    size_t i;

    if (fds == NULL)
        return NULL;
    for (i = 0; i < c->nlisteners; i++) {
        const struct conf_listener *nl = &c->listeners[i];
        fds[i] = -1;
        for (size_t j = 0; m->lfds && j < m->conf->nlisteners; j++) {
            const struct conf_listener *ol = &m->conf->listeners[j];
            if (ol->addrlen == nl->addrlen &&
                memcmp(&ol->addr, &nl->addr, nl->addrlen) == 0 &&
                m->lfds[j] >= 0)
                fds[i] = m->lfds[j];
        }
        if (fds[i] >= 0)
            continue;
        fds[i] = listener_open(nl);
        if (fds[i] < 0) {
            log_error("%s:%d:%d: error: cannot listen on \"%s\": %s", c->path,
                      nl->pos.line, nl->pos.col, nl->listen, strerror(errno));
            goto fail;
        }
        master_log_listening(nl, fds[i]);
    }
    return fds;
fail:
    master_close_new(m, fds, i);
    free(fds);
    return NULL;
}

/* Close the old listeners the new generation no longer has. */
static void master_close_dropped(struct master *m, const int *keep, size_t n)
{
    for (size_t j = 0; j < m->conf->nlisteners; j++) {
        int kept = 0;
        for (size_t i = 0; i < n; i++)
            kept |= keep[i] == m->lfds[j];
        if (!kept && m->lfds[j] >= 0) {
            log_notice("no longer listening on %s",
                       m->conf->listeners[j].listen);
            close(m->lfds[j]);
        }
    }
}

/* The generation's bundle (config bytes and the files they name) in a
 * memfd for the workers. */
static int master_memfd(const struct conf *c)
{
    int fd = memfd_create("portico-config", MFD_CLOEXEC);

    if (fd >= 0 && channel_bundle_write(fd, c) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Send the current generation to every running worker. */
static void master_broadcast_gen(struct master *m, int memfd)
{
    int fds[CHANNEL_MAX_FDS];
    struct channel_msg msg = {CHANNEL_GENERATION, m->gen, 0, 0};
    size_t n = 1;

    fds[0] = memfd;
    n += master_log_fds(m, fds + 1, &msg.flags);
    for (size_t i = 0; i < m->conf->nlisteners; i++)
        fds[n++] = m->lfds[i];
    for (size_t i = 0; i < m->nslots; i++) {
        if (m->slots[i].pid <= 0)
            continue;
        if (channel_send(m->slots[i].chan, &msg, fds, n) < 0) {
            /* It would keep serving the old rules: replace it. */
            log_error("worker %zu: cannot send generation %u (%s); "
                      "replacing it",
                      i, m->gen, strerror(errno));
            kill(m->slots[i].pid, SIGTERM);
        }
    }
}

static int master_same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* Apply the worker count and user of the new generation; new_zone: the
 * cache zone was replaced, and only a fork hands the new one over. */
static int master_resize(struct master *m, const struct conf *old,
                         int new_zone)
{
    size_t want = (size_t)m->conf->workers;
    int user = !master_same_str(old->user, m->conf->user);

    if (user || new_zone) {
        log_notice("%s changed: replacing all workers gracefully",
                   user ? "user" : "cache zone");
        for (size_t i = 0; i < m->nslots; i++)
            master_retire(m, i);
    }
    for (size_t i = want; i < m->nslots; i++)
        master_retire(m, i);
    if (want > m->nslots) {
        struct slot *s = realloc(m->slots, want * sizeof(*s));
        if (s == NULL)
            return PT_ERROR;
        m->slots = s;
        memset(s + m->nslots, 0, (want - m->nslots) * sizeof(*s));
        for (size_t i = m->nslots; i < want; i++)
            s[i].chan = -1;
    }
    m->nslots = want;
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i].pid == 0 && master_spawn(m, i) < 0)
            master_schedule(m, i, MASTER_BACKOFF_FIRST_MS);
    return PT_OK;
}

static void master_reject(const struct conf_diag *d, const char *path,
                          const char *why)
{
    if (stats_global())
        atomic_fetch_add(&stats_global()->reloads_rejected, 1);
    for (size_t i = 0; i < d->n; i++)
        log_error("reload rejected: %s", d->msgs[i]);
    log_error("reload rejected: %s (%s); still serving the current "
              "configuration",
              why, path);
    sdnotify_ready("running; last reload rejected");
}

/* Give every upstream server its shared health slot before any worker
 * can need it. */
static void master_register_health(const struct conf *c)
{
    size_t missing = shm_health_register(c);

    stats_register(c);
    if (missing)
        log_warn("%zu upstream servers found no shared health slot; their "
                 "health is tracked per worker",
                 missing);
}

static int master_write_pid(const struct conf *c);

/* pid_file changed: write the new one, remove the old one. */
static void master_move_pid(const struct conf *old, const struct conf *nc)
{
    if (master_same_str(old->pid_file, nc->pid_file))
        return;
    if (master_write_pid(nc) == PT_OK && old->pid_file)
        unlink(old->pid_file);
}

/* Does nc need a zone other than the one the master has? */
static int master_zone_changes(const struct conf *cur, const struct conf *nc)
{
    return nc->cache.enabled != cur->cache.enabled ||
           (nc->cache.enabled && nc->cache.size != cur->cache.size);
}

/* The new generation's zone replaces the master's own mapping of the old
 * one (workers still running keep theirs until they exit). */
static void master_swap_zone(struct cache_store *nz, const struct conf *old,
                             const struct conf *nc)
{
    struct cache_store *oz = cache_zone();
    char a[32], b[32];

    cache_zone_set(nz);
    cache_store_free(&oz);
    if (old->cache.enabled && nc->cache.enabled)
        log_notice("cache zone resized from %s to %s; new workers start "
                   "with an empty cache",
                   pt_format_size(old->cache.size, a, sizeof(a)),
                   pt_format_size(nc->cache.size, b, sizeof(b)));
    else if (nc->cache.enabled)
        log_notice("cache zone of %s mapped",
                   pt_format_size(nc->cache.size, b, sizeof(b)));
    else
        log_notice("cache zone removed");
}

static void master_reload(struct master *m)
{
    struct conf_diag diag = {0};
    struct conf *nc, *old;
    struct cache_store *nz = NULL;
    int *lfds, memfd, error_fd, access_fd, new_zone;

    log_notice("SIGHUP: reloading %s", m->path);
    sdnotify_reloading();
    nc = conf_load_file(m->path, &diag);
    if (nc && tls_check_conf(nc, &diag) < 0)
        conf_free(&nc);
    if (nc == NULL) {
        char why[64];
        snprintf(why, sizeof(why), "%zu error%s", diag.n,
                 diag.n == 1 ? "" : "s");
        master_reject(&diag, m->path, why);
        conf_diag_fini(&diag);
        return;
    }
    conf_diag_fini(&diag);
    if (nc->nlisteners + 3 > CHANNEL_MAX_FDS) {
        master_reject(&diag, m->path, "too many listeners");
        conf_free(&nc);
        return;
    }
    new_zone = master_zone_changes(m->conf, nc);
    lfds = master_listeners_for(m, nc);
    if (lfds == NULL) {
        master_reject(&diag, m->path, "a listener could not be opened");
        conf_free(&nc);
        return;
    }
    if (master_open_logs(nc, &error_fd, &access_fd) < 0) {
        master_reject(&diag, m->path, "a log file could not be opened");
        master_close_new(m, lfds, nc->nlisteners);
        free(lfds);
        conf_free(&nc);
        return;
    }
    memfd = master_memfd(nc);
    if (memfd < 0) {
        log_error("reload rejected: memfd: %s", strerror(errno));
        sdnotify_ready("running; last reload rejected");
        master_close_logs(error_fd, access_fd);
        master_close_new(m, lfds, nc->nlisteners);
        free(lfds);
        conf_free(&nc);
        return;
    }
    if (new_zone && nc->cache.enabled &&
        (nz = cache_store_new(nc->cache.size)) == NULL) {
        /* Workers inherit the zone by fork: a new one is mapped here,
         * before any of them can need it. */
        conf_diag_at(&diag, nc,
                     nc->cache.size_pos.line ? nc->cache.size_pos
                                             : nc->cache.pos,
                     "cache zone of %llu bytes: %s",
                     (unsigned long long)nc->cache.size, strerror(errno));
        master_reject(&diag, m->path, "the cache zone could not be mapped");
        conf_diag_fini(&diag);
        close(memfd);
        master_close_logs(error_fd, access_fd);
        master_close_new(m, lfds, nc->nlisteners);
        free(lfds);
        conf_free(&nc);
        return;
    }
    /* Commit: from here on the new generation is the master's. */
    if (new_zone)
        master_swap_zone(nz, m->conf, nc);
    master_register_health(nc);
    master_close_dropped(m, lfds, nc->nlisteners);
    free(m->lfds);
    m->lfds = lfds;
    old = m->conf;
    m->conf = nc;
    master_set_logs(m, error_fd, access_fd);
    log_set_level(nc->error_log.level);
    master_move_pid(old, nc);
    m->gen++;
    atomic_fetch_add(&stats_global()->reloads_ok, 1);
    atomic_store(&stats_global()->generation, m->gen);
    master_broadcast_gen(m, memfd);
    close(memfd);
    master_resize(m, old, new_zone);
    conf_free(&old);
    m->reload_pending = m->gen;
    log_notice("generation %u sent to %zu workers", m->gen, master_live(m));
}

/* ---- the loop ---------------------------------------------------------------- */

static void master_on_channel(struct master *m, size_t i)
{
    struct channel_msg msg = {0};
    int fds[4];
    size_t nfds;
    int rc = channel_recv(m->slots[i].chan, &msg, fds, 4, &nfds);

    for (size_t k = 0; k < nfds; k++)
        close(fds[k]);
    if (rc == 0 || (rc < 0 && errno != EAGAIN)) {
        /* The worker is exiting; SIGCHLD tells the rest.  Stop polling
         * the dead channel: a ready fd would starve signal delivery. */
        close(m->slots[i].chan);
        m->slots[i].chan = -1;
        return;
    }
    if (rc < 0)
        return;
    if (msg.type == CHANNEL_ACK)
        m->slots[i].acked = msg.generation;
    else if (msg.type == CHANNEL_NACK && msg.generation == m->gen) {
        /* It would serve the old rules: a fresh worker takes its slot. */
        log_error("worker %zu refused generation %u; replacing it", i,
                  msg.generation);
        master_retire(m, i);
        if (master_spawn(m, i) < 0)
            master_schedule(m, i, MASTER_BACKOFF_FIRST_MS);
    }
}

/* Once every running worker applied the pending generation, say so. */
static void master_check_acks(struct master *m)
{
    if (m->reload_pending == 0)
        return;
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i].pid > 0 && m->slots[i].acked != m->reload_pending)
            return;
    log_notice("reload complete: generation %u running in %zu workers",
               m->reload_pending, master_live(m));
    sdnotify_ready("running: generation %u", m->reload_pending);
    m->reload_pending = 0;
}

/* How long ppoll may sleep: until the next re-fork or stop deadline. */
static int master_timeout(const struct master *m)
{
    uint64_t now = now_ms(), next = UINT64_MAX;

    for (size_t i = 0; i < m->nslots && m->stop == RUNNING; i++)
        if (m->slots[i].pid == 0)
            next = PT_MIN(next, m->slots[i].restart_at);
    if (m->stop != RUNNING && !m->killed)
        next = PT_MIN(next, m->stop_deadline);
    if (m->stop == RUNNING && m->next_rotate)
        next = PT_MIN(next, m->next_rotate);
    if (next == UINT64_MAX)
        return -1;
    return next <= now ? 0 : (int)PT_MIN(next - now, 60000);
}

static void master_wait(struct master *m, const sigset_t *waitmask)
{
    struct pollfd pfd[1024];
    size_t n = 0, idx[1024];
    int ms = master_timeout(m);
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    for (size_t i = 0; i < m->nslots && n < 1024; i++) {
        if (m->slots[i].pid > 0 && m->slots[i].chan >= 0) {
            pfd[n] = (struct pollfd){m->slots[i].chan, POLLIN, 0};
            idx[n++] = i;
        }
    }
    if (ppoll(pfd, n, ms < 0 ? NULL : &ts, waitmask) <= 0)
        return;
    /* ppoll returning ready fds leaves pending signals undelivered: open
     * the mask for a moment so their handlers run now. */
    sigset_t old;
    sigprocmask(SIG_SETMASK, waitmask, &old);
    sigprocmask(SIG_SETMASK, &old, NULL);
    for (size_t k = 0; k < n; k++)
        if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))
            master_on_channel(m, idx[k]);
}

static int master_done(const struct master *m)
{
    return m->stop != RUNNING && master_live(m) == 0 && m->nret == 0;
}

static void master_handle_flags(struct master *m)
{
    /* Stops first: a terminal's Ctrl-C or systemd's SIGTERM reaches the
     * workers too, and their exits are not crashes to re-fork. */
    if (sig_int || sig_term) {
        sig_int = sig_term = 0;
        master_begin_stop(m, STOP_FAST);
    }
    if (sig_quit) {
        sig_quit = 0;
        master_begin_stop(m, STOP_GRACEFUL);
    }
    if (sig_chld) {
        sig_chld = 0;
        master_reap(m);
    }
    if (sig_hup) {
        sig_hup = 0;
        if (m->stop == RUNNING)
            master_reload(m);
    }
    if (sig_usr1) {
        sig_usr1 = 0;
        master_reopen(m);
    }
}

static int master_signals(sigset_t *waitmask)
{
    struct sigaction sa;
    sigset_t block;

    sigemptyset(&block);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_master_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < PT_ARRAY_LEN(master_sigs); i++) {
        sigaddset(&block, master_sigs[i]);
        if (sigaction(master_sigs[i], &sa, NULL) < 0)
            return PT_ERROR;
    }
    signal(SIGPIPE, SIG_IGN);
    if (sigprocmask(SIG_BLOCK, &block, waitmask) < 0)
        return PT_ERROR;
    for (size_t i = 0; i < PT_ARRAY_LEN(master_sigs); i++)
        sigdelset(waitmask, master_sigs[i]);
    return PT_OK;
}

static int master_write_pid(const struct conf *c)
{
    FILE *f;

    if (c->pid_file == NULL)
        return PT_OK;
    f = fopen(c->pid_file, "we");
    if (f == NULL) {
        log_error("pid_file \"%s\": %s", c->pid_file, strerror(errno));
        return PT_ERROR;
    }
    fprintf(f, "%d\n", (int)getpid());
    return fclose(f) == 0 ? PT_OK : PT_ERROR;
}

static int master_start(struct master *m)
{
    if (master_open_logs(m->conf, &m->error_fd, &m->access_fd) < 0)
        return PT_ERROR;
    log_set_fd(m->error_fd);
    log_set_level(m->conf->error_log.level);
    m->lfds = master_listeners_for(m, m->conf);
    if (m->lfds == NULL)
        return PT_ERROR;
    if (shm_init() < 0 || stats_init() < 0) {
        log_error("shared memory: %s", strerror(errno));
        return PT_ERROR;
    }
    master_register_health(m->conf);
    if (m->conf->cache.enabled) {
        struct cache_store *cs = cache_store_new(m->conf->cache.size);
        if (cs == NULL) {
            log_error("cache zone of %llu bytes: %s",
                      (unsigned long long)m->conf->cache.size,
                      strerror(errno));
            return PT_ERROR;
        }
        cache_zone_set(cs);
    }
    stats_global()->started_unix = (uint64_t)time(NULL);
    stats_global()->generation = m->gen;
    m->next_rotate = now_ms() + MASTER_TICKET_ROTATE_MS;
    if (master_write_pid(m->conf) < 0)
        return PT_ERROR;
    if (m->conf->user && geteuid() != 0)
        log_notice("user \"%s\" ignored: not started as root",
                   m->conf->user);
    m->nslots = (size_t)m->conf->workers;
    m->slots = calloc(m->nslots, sizeof(*m->slots));
    if (m->slots == NULL)
        return PT_ERROR;
    for (size_t i = 0; i < m->nslots; i++) {
        m->slots[i].chan = -1;
        if (master_spawn(m, i) < 0)
            return PT_ERROR;
    }
    log_notice("ready: %zu workers, generation %u, pid %d", m->nslots,
               m->gen, (int)getpid());
    sdnotify_ready("running: generation %u", m->gen);
    return PT_OK;
}

static void master_fini(struct master *m)
{
    if (m->conf && m->conf->pid_file)
        unlink(m->conf->pid_file);
    for (size_t i = 0; m->lfds && i < m->conf->nlisteners; i++)
        if (m->lfds[i] >= 0)
            close(m->lfds[i]);
    free(m->lfds);
    free(m->slots);
    free(m->ret);
    log_set_fd(2);
    master_close_logs(m->error_fd, m->access_fd);
    conf_free(&m->conf);
}

int master_run(struct conf *conf, const char *path)
{
    struct master m;
    sigset_t waitmask;
    int status = 0;

    memset(&m, 0, sizeof(m));
    m.conf = conf;
    m.path = path;
    m.gen = 1;
    m.error_fd = 2;
    m.access_fd = -1;
    log_set_role("master");
    if (master_signals(&waitmask) < 0 || master_start(&m) < 0) {
        status = 1;
        master_begin_stop(&m, STOP_FAST);
    }
    while (!master_done(&m)) {
        if (stats_global())
            atomic_store(&stats_global()->workers, master_live(&m));
        master_wait(&m, &waitmask);
        master_handle_flags(&m);
        master_restart_due(&m);
        master_kill_stragglers(&m);
        master_check_acks(&m);
        if (m.next_rotate && now_ms() >= m.next_rotate) {
            shm_ticket_rotate();
            m.next_rotate += MASTER_TICKET_ROTATE_MS;
            log_info("TLS session-ticket keys rotated");
        }
    }
    log_notice("stopped");
    master_fini(&m);
    return status;
}
