/*
 * conf.c -- one configuration generation as a whole: defaults, the checks
 * that span several values, diagnostics, freeing, and the effective-config
 * dump (porticod -T).  Reading the YAML itself is conf_yaml.c's job.
 * Reads the files the config names (certificates, keys, CA bundles) but
 * does not parse them: tls.c does.
 * Calls: conf_yaml.c, util.c, libc (getpwnam, sysconf, open, read).
 * Never: libyaml, libevent, socket I/O.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "util.h"

/* A config larger than this is a mistake (or /dev/zero). */
#define CONF_FILE_MAX (16 * 1024 * 1024)
/* A certificate chain, key or CA bundle larger than this is a mistake;
 * every worker keeps a copy. */
#define FILE_MAX (1024 * 1024)
#define TLS_1_2 0x0303
#define TLS_1_3 0x0304
#define WORKERS_MAX 512
#define BACKLOG_DEFAULT 511
/* Under Node.js's 5 s keepAliveTimeout, so portico closes first. */
#define UPSTREAM_KEEPALIVE_TIMEOUT_MS 4000
/* "(defined: a, b, ...)" lists at most this much of the names. */
#define NAME_LIST_MAX 200

/* ---- memory: a config is small, so running out here is fatal ---- */

/* ---- diagnostics ---- */

static void diag_push(struct conf_diag *diag, char *msg)
{
    if (diag->n == diag->cap) {
        size_t cap = diag->cap ? diag->cap * 2 : 8;
        char **p = realloc(diag->msgs, cap * sizeof(*p));

        if (p == NULL)
            pt_oom();
        diag->msgs = p;
        diag->cap = cap;
    }
    diag->msgs[diag->n++] = msg;
}

void conf_diag_add(struct conf_diag *diag, const char *fmt, ...)
{
    va_list ap;
    char *msg;
    int rc;

    va_start(ap, fmt);
    rc = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (rc < 0)
        pt_oom();
    diag_push(diag, msg);
}

void conf_diag_at(struct conf_diag *diag, const struct conf *conf,
                  struct conf_pos pos, const char *fmt, ...)
{
    va_list ap;
    char *msg;
    int rc;

    va_start(ap, fmt);
    rc = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (rc < 0)
        pt_oom();
    if (pos.line > 0)
        conf_diag_add(diag, "%s:%d:%d: error: %s", conf->path, pos.line,
                      pos.col, msg);
    else
        conf_diag_add(diag, "%s: error: %s", conf->path, msg);
    free(msg);
}

void conf_diag_fini(struct conf_diag *diag)
{
    for (size_t i = 0; i < diag->n; i++)
        free(diag->msgs[i]);
    free(diag->msgs);
    memset(diag, 0, sizeof(*diag));
}

const char *conf_log_level_name(enum log_level level)
{
    static const char *const names[] = {"debug", "info", "notice", "warn",
                                        "error"};

    if ((unsigned)level >= PT_ARRAY_LEN(names))
        return "unknown";
    return names[level];
}

/* ---- defaults ---- */

/* The defaults conf.h documents, for everything the file may leave out. */
static void conf_set_defaults(struct conf *c)
{
    c->workers_auto = 1;
    c->error_log.level = LOG_LVL_INFO;
    c->access_log.format = ACCESS_COMBINED;
    c->limits.max_connections = 10000;
    c->limits.max_header_bytes = 16 * 1024;
    c->limits.max_headers = 100;
    c->limits.max_uri_bytes = 8 * 1024;
    c->limits.max_body_bytes = 10 * 1024 * 1024;
    c->timeouts.client_header = 10 * 1000;
    c->timeouts.client_body = 60 * 1000;
    c->timeouts.keepalive = 75 * 1000;
    c->timeouts.send = 60 * 1000;
    c->timeouts.shutdown_grace = 30 * 1000;
    c->timeouts.upstream_connect = 3 * 1000;
    c->timeouts.upstream_send = 60 * 1000;
    c->timeouts.upstream_read = 60 * 1000;
    c->timeouts.websocket_idle = 3600 * 1000;
    c->timeouts.sse_idle = 3600 * 1000;
}

void conf_upstream_init(struct conf_upstream *u)
{
    memset(u, 0, sizeof(*u));
    u->balance = BALANCE_ROUND_ROBIN;
    u->hash_key = HASH_CLIENT;
    u->keepalive = 32;
    u->keepalive_timeout = UPSTREAM_KEEPALIVE_TIMEOUT_MS;
    u->retries = 1;
    u->max_fails = 3;
    u->fail_timeout = 10 * 1000;
    u->health_check.interval = 5 * 1000;
    u->health_check.timeout = 2 * 1000;
    u->health_check.fails = 3;
    u->health_check.passes = 2;
    u->tls.verify = 1;
    /* timeouts stay 0 until conf_fill_defaults: the global ones may be
     * written after upstreams: */
}

static int workers_auto_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 1)
        return 1;
    return n > WORKERS_MAX ? WORKERS_MAX : (int)n;
}

/*
 * The largest of cpu0's caches, from sysfs (sysconf's figure comes from
 * cpuid, which in a virtual machine may describe the host's whole chip);
 * 32 MiB where the kernel does not say.
 */
static uint64_t cpu_cache_bytes(void)
{
    uint64_t best = 0;

    for (int i = 0; i < 8; i++) {
        char path[64], unit = 0;
        unsigned long long n;
        FILE *f;

        snprintf(path, sizeof(path),
                 "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if ((f = fopen(path, "r")) == NULL)
            break;
        if (fscanf(f, "%llu%c", &n, &unit) >= 1) {
            uint64_t b = n * (unit == 'K' ? 1024ull
                              : unit == 'M' ? 1024ull * 1024 : 1);
            if (b > best)
                best = b;
        }
        fclose(f);
    }
    return best ? best : 32ull << 20;
}

/*
 * cache.sendfile as the bytes of big bodies a worker copies in a loop
 * turn.  auto: half the CPU's largest cache, shared among the workers.
 * Copies past that cost about twice as much each (their pages come back
 * cold), where sendfile(2) sends every answer of an entry from the same
 * pages (bench/NOTES.md, entry 46).
 */
static void sendfile_fill(struct conf_cache *cc, int workers)
{
    switch (cc->sendfile) {
    case CONF_SENDFILE_NEVER:
        cc->sendfile_after = UINT64_MAX;
        break;
    case CONF_SENDFILE_ALWAYS:
        cc->sendfile_after = 0;
        break;
    case CONF_SENDFILE_AFTER:
        break;
    default:
        cc->sendfile_after = cpu_cache_bytes() / 2 / (uint64_t)workers;
        break;
    }
}

/* respond: is filled only where written; an upstream: route's stays 0. */
static void route_fill_defaults(struct conf_route *r)
{
    if (r->path_prefix == NULL)
        r->path_prefix = pt_xstrdup("/");
    if (!r->has_respond)
        return;
    if (r->respond.status == 0)
        r->respond.status = 200;
    if (r->respond.body == NULL) {
        r->respond.body = pt_xstrdup("");
        r->respond.body_len = 0;
    }
}

static void upstream_fill_defaults(struct conf_upstream *u,
                                   const struct conf *c)
{
    struct conf_upstream_timeouts *t = &u->timeouts;

    for (size_t i = 0; i < u->nservers; i++) {
        if (u->servers[i].weight == 0)
            u->servers[i].weight = 1;
    }
    if (t->connect == 0)
        t->connect = c->timeouts.upstream_connect;
    if (t->send == 0)
        t->send = c->timeouts.upstream_send;
    if (t->read == 0)
        t->read = c->timeouts.upstream_read;
    if (u->health_check.enabled && u->health_check.path == NULL)
        u->health_check.path = pt_xstrdup("/");
}

/* Is any exchange logged: the global format, or a listener's or route's? */
static int access_log_used(const struct conf *c)
{
    int on = c->access_log.format != ACCESS_OFF;

    for (size_t i = 0; !on && i < c->nlisteners; i++)
        on = c->listeners[i].access_format == ACCESS_COMBINED ||
             c->listeners[i].access_format == ACCESS_JSON;
    for (size_t i = 0; !on && i < c->nroutes; i++)
        on = c->routes[i].access_format == ACCESS_COMBINED ||
             c->routes[i].access_format == ACCESS_JSON;
    return on;
}

/* admin: becomes one more listener, served by the built-in handler; by
 * default it listens on loopback and lets only loopback clients in. */
static void admin_fill_defaults(struct conf *c)
{
    struct conf_admin *a = &c->admin;
    static const char *const loopback[] = {"127.0.0.0/8", "::1/128"};
    const char *why;
    struct conf_listener *ls;

    if (!a->enabled)
        return;
    if (a->listener.listen == NULL) {
        a->listener.listen = pt_xstrdup("127.0.0.1:9901");
        a->listener.pos = a->pos;
        pt_parse_addr(a->listener.listen, &a->listener.addr,
                      &a->listener.addrlen, &why);
    }
    if (a->allow == NULL) {
        a->allow = calloc(PT_ARRAY_LEN(loopback), sizeof(*a->allow));
        if (a->allow == NULL)
            pt_oom();
        for (size_t i = 0; i < PT_ARRAY_LEN(loopback); i++) {
            struct conf_allow *al = &a->allow[a->nallow++];
            const char *s = loopback[i];
            al->family = strchr(s, ':') ? AF_INET6 : AF_INET;
            inet_pton(al->family, al->family == AF_INET ? "127.0.0.0" : "::1",
                      al->addr);
            al->prefix = al->family == AF_INET ? 8 : 128;
            al->text = pt_xstrdup(s);
        }
    }
    ls = realloc(c->listeners, (c->nlisteners + 1) * sizeof(*ls));
    if (ls == NULL)
        pt_oom();
    c->listeners = ls;
    ls[c->nlisteners] = a->listener;
    ls[c->nlisteners].admin = 1;
    memset(&a->listener, 0, sizeof(a->listener)); /* moved */
    c->nlisteners++;
}

/* Defaults that depend on what the file said, filled in after parsing. */
static void conf_fill_defaults(struct conf *c)
{
    if (c->workers_auto)
        c->workers = workers_auto_count();
    sendfile_fill(&c->cache, c->workers);
    if (c->error_log.path == NULL)
        c->error_log.path = pt_xstrdup("stderr");
    admin_fill_defaults(c);
    if (!access_log_used(c)) {
        free(c->access_log.path);
        c->access_log.path = NULL;
    } else if (c->access_log.path == NULL) {
        c->access_log.path = pt_xstrdup("stderr");
    }
    for (size_t i = 0; i < c->nlisteners; i++) {
        struct conf_listener *l = &c->listeners[i];

        if (l->backlog == 0)
            l->backlog = BACKLOG_DEFAULT;
        if (l->tls.enabled && l->tls.min_version == 0)
            l->tls.min_version = TLS_1_2;
    }
    for (size_t i = 0; i < c->nupstreams; i++)
        upstream_fill_defaults(&c->upstreams[i], c);
    for (size_t i = 0; i < c->nroutes; i++)
        route_fill_defaults(&c->routes[i]);
}

/* ---- checks across values ---- */

/* pt_parse_addr zeroes the padding, so bytes compare; addrlen 0 marks
 * an address already reported as bad. */
static int addr_same(const struct sockaddr_storage *a, socklen_t alen,
                     const struct sockaddr_storage *b, socklen_t blen)
{
    return alen != 0 && alen == blen && memcmp(a, b, alen) == 0;
}

static int listener_same(const struct conf_listener *a,
                         const struct conf_listener *b)
{
    return addr_same(&a->addr, a->addrlen, &b->addr, b->addrlen);
}

static void check_listeners(const struct conf *c, struct conf_diag *diag)
{
    for (size_t i = 1; i < c->nlisteners; i++) {
        const struct conf_listener *l = &c->listeners[i];

        for (size_t j = 0; j < i; j++) {
            const struct conf_listener *first = &c->listeners[j];

            if (!listener_same(first, l))
                continue;
            /* l->listen parsed as a numeric address: safe to print */
            conf_diag_at(diag, c, l->pos,
                         "duplicate listener \"%s\" (first defined at %d:%d)",
                         l->listen, first->pos.line, first->pos.col);
            break;
        }
    }
}

/* The same server twice in one upstream would just double its weight. */
static void check_servers(const struct conf *c, const struct conf_upstream *u,
                          struct conf_diag *diag)
{
    for (size_t i = 1; u->name != NULL && i < u->nservers; i++) {
        const struct conf_server *s = &u->servers[i];

        for (size_t j = 0; j < i; j++) {
            const struct conf_server *first = &u->servers[j];

            if (!addr_same(&first->addr, first->addrlen, &s->addr, s->addrlen))
                continue;
            /* both parsed as numeric addresses and the name is vetted:
             * safe to print */
            conf_diag_at(diag, c, s->pos,
                         "upstreams.%s.servers[%zu].address: duplicate "
                         "server \"%s\" (first defined at %d:%d)",
                         u->name, i, s->address, first->pos.line,
                         first->pos.col);
            break;
        }
    }
}

static struct conf_upstream *upstream_find(const struct conf *c,
                                           const char *name)
{
    for (size_t i = 0; i < c->nupstreams; i++) {
        if (c->upstreams[i].name && strcmp(c->upstreams[i].name, name) == 0)
            return &c->upstreams[i];
    }
    return NULL;
}

/* "defined: a, b" or "no upstreams are defined", into buf. */
static const char *upstream_names(const struct conf *c, char *buf,
                                  size_t buflen)
{
    size_t len = 0;

    for (size_t i = 0; i < c->nupstreams; i++) {
        const char *name = c->upstreams[i].name;

        if (name == NULL) /* reported as invalid */
            continue;
        if (len + strlen(name) + 2 > NAME_LIST_MAX) {
            len += (size_t)snprintf(buf + len, buflen - len, ", ...");
            break;
        }
        len += (size_t)snprintf(buf + len, buflen - len, "%s%s",
                                len ? ", " : "defined: ", name);
    }
    if (len == 0)
        snprintf(buf, buflen, "no upstreams are defined");
    return buf;
}

/*
 * Points each upstream: route at its group.  Done once everything is
 * read, since routes: may come before upstreams: in the file; the
 * pointers stay valid because conf->upstreams is never reallocated.
 */
static void resolve_routes(struct conf *c, struct conf_diag *diag)
{
    char names[NAME_LIST_MAX + 32];

    for (size_t i = 0; i < c->nroutes; i++) {
        struct conf_route *r = &c->routes[i];

        if (r->upstream_name == NULL)
            continue;
        r->upstream = upstream_find(c, r->upstream_name);
        if (r->upstream == NULL) /* the name is vetted: safe to print */
            conf_diag_at(diag, c, r->upstream_pos,
                         "routes[%zu].upstream: no upstream named \"%s\" "
                         "(%s)",
                         i, r->upstream_name,
                         upstream_names(c, names, sizeof(names)));
    }
}

/* A route's cache: needs the zone, and something to cache from. */
static void check_cache(struct conf *c, struct conf_diag *diag)
{
    char a[32], b[32];

    if (c->cache.enabled && c->cache.size == 0)
        c->cache.size = 256ull << 20;
    if (c->cache.enabled && c->cache.max_object_size == 0)
        c->cache.max_object_size = PT_MIN(8ull << 20, c->cache.size / 4);
    if (c->cache.enabled && c->cache.max_object_size > c->cache.size / 4)
        conf_diag_at(diag, c, c->cache.pos,
                     "cache.max_object_size (%s) must not exceed a quarter "
                     "of cache.size (%s): one object would crowd out the "
                     "rest",
                     pt_format_size(c->cache.max_object_size, a, sizeof(a)),
                     pt_format_size(c->cache.size, b, sizeof(b)));
    for (size_t i = 0; i < c->nroutes; i++) {
        const struct conf_route *r = &c->routes[i];
        if (!r->cache.enabled)
            continue;
        if (!c->cache.enabled)
            conf_diag_at(diag, c, r->cache.pos,
                         "routes[%zu].cache: no cache zone: add a top-level "
                         "cache: { size: 256m }",
                         i);
        else if (r->has_respond)
            conf_diag_at(diag, c, r->cache.pos,
                         "routes[%zu].cache: only with upstream: (respond: "
                         "answers are already in memory)",
                         i);
    }
}

static void check_limits(const struct conf *c, struct conf_diag *diag)
{
    char uri[32], hdr[32];
    struct conf_pos at = c->pos.max_uri_bytes;

    if (c->limits.max_uri_bytes <= c->limits.max_header_bytes)
        return;
    if (at.line == 0) /* left at its default: blame the other one */
        at = c->pos.max_header_bytes;
    conf_diag_at(diag, c, at,
                 "limits.max_uri_bytes (%s) must not exceed "
                 "limits.max_header_bytes (%s): the request line has to "
                 "fit in the header buffer",
                 pt_format_size(c->limits.max_uri_bytes, uri, sizeof(uri)),
                 pt_format_size(c->limits.max_header_bytes, hdr, sizeof(hdr)));
}

static void check_user(const struct conf *c, struct conf_diag *diag)
{
    /* Only root can switch users; anyone else runs as themselves, and a
     * test or a developer's config must not depend on /etc/passwd. */
    if (c->user == NULL || geteuid() != 0)
        return;
    if (getpwnam(c->user) == NULL) /* conf_yaml.c vetted its characters */
        conf_diag_at(diag, c, c->pos.user, "user: no such user \"%s\"",
                     c->user);
}

/* ---- loading and freeing ---- */

static struct conf *conf_new(const char *name, const char *buf, size_t len)
{
    struct conf *c = pt_xcalloc(1, sizeof(*c));

    c->path = pt_xstrdup(name ? name : "(config)");
    c->source = pt_xmemdup(buf, len);
    c->source_len = len;
    conf_set_defaults(c);
    return c;
}

/* Reads fd to the end into *out, NUL-terminated (caller frees).
 * Returns 0, EFBIG when it holds more than max bytes, or an errno. */
static int read_all(int fd, size_t max, char **out, size_t *outlen)
{
    size_t cap = 0, len = 0;
    char *buf = NULL;

    for (;;) {
        ssize_t n;

        if (len + 1 >= cap) { /* room for a byte and the NUL */
            char *p;

            if (len > max) {
                free(buf);
                return EFBIG;
            }
            /* max + 2: one byte over max tells a file that is too big */
            cap = PT_MIN(cap ? cap * 2 : 4096, max + 2);
            p = realloc(buf, cap);
            if (p == NULL)
                pt_oom();
            buf = p;
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;

            free(buf);
            return err;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > max) {
        free(buf);
        return EFBIG;
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return 0;
}

/* ---- the files a config names: certificates, keys, CA bundles ---- */

/* Where those files come from. */
struct file_source {
    int disk;                      /* read them; else files[] alone */
    const struct conf_file *files; /* borrowed: the validated bundle */
    size_t nfiles;
};

/* One place the config names a file. */
struct file_ref {
    const char *path;              /* borrowed from the conf: absolute */
    const struct conf_file **slot; /* borrowed: pointed at the file */
    struct conf_pos pos;
    char key[160]; /* "listeners[0].tls.certificates[1].key" */
};

/* Counts a reference to path, and with refs records it at refs[*n]. */
static void ref_add(struct file_ref *refs, size_t *n, const char *path,
                    const struct conf_file **slot, struct conf_pos pos,
                    const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void ref_add(struct file_ref *refs, size_t *n, const char *path,
                    const struct conf_file **slot, struct conf_pos pos,
                    const char *fmt, ...)
{
    va_list ap;

    if (path == NULL) /* reported while walking */
        return;
    if (refs != NULL) {
        refs[*n].path = path;
        refs[*n].slot = slot;
        refs[*n].pos = pos;
        va_start(ap, fmt);
        vsnprintf(refs[*n].key, sizeof(refs[*n].key), fmt, ap);
        va_end(ap);
    }
    (*n)++;
}

/* The files c names, in file order, into refs (NULL: only counted). */
static size_t file_refs(struct conf *c, struct file_ref *refs)
{
    size_t n = 0;

    for (size_t i = 0; i < c->nlisteners; i++) {
        struct conf_tls *tls = &c->listeners[i].tls;

        for (size_t j = 0; tls->enabled && j < tls->ncerts; j++) {
            struct conf_cert *cert = &tls->certs[j];

            ref_add(refs, &n, cert->cert, &cert->cert_file, cert->cert_pos,
                    "listeners[%zu].tls.certificates[%zu].cert", i, j);
            ref_add(refs, &n, cert->key, &cert->key_file, cert->key_pos,
                    "listeners[%zu].tls.certificates[%zu].key", i, j);
        }
    }
    for (size_t i = 0; i < c->nupstreams; i++) {
        struct conf_upstream *u = &c->upstreams[i];

        if (u->tls.enabled && u->name != NULL)
            ref_add(refs, &n, u->tls.ca, &u->tls.ca_file, u->tls.ca_pos,
                    "upstreams.%s.tls.ca", u->name);
    }
    return n;
}

/* Reads path, a regular file of at most FILE_MAX bytes, into *data
 * (NUL-terminated).  Returns 0, an errno, or -1 for "not a regular file". */
static int file_read(const char *path, char **data, size_t *len)
{
    /* O_NONBLOCK: a FIFO must not hang the load; it is refused below */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    int err;

    if (fd < 0)
        return errno;
    if (fstat(fd, &st) != 0)
        err = errno;
    else if (S_ISDIR(st.st_mode))
        err = EISDIR;
    else if (!S_ISREG(st.st_mode))
        err = -1;
    else
        err = read_all(fd, FILE_MAX, data, len);
    close(fd);
    return err;
}

static const struct conf_file *bundle_find(const struct file_source *src,
                                           const char *path)
{
    for (size_t i = 0; i < src->nfiles; i++) {
        if (src->files[i].path != NULL &&
            strcmp(src->files[i].path, path) == 0)
            return &src->files[i];
    }
    return NULL;
}

/* Fills f->data and f->len for f->path.  Returns NULL, or why it could
 * not (for the caller to free). */
static char *file_load(struct conf_file *f, const struct file_source *src)
{
    char max[32], *why = NULL;
    int err = 0;

    if (src->disk) {
        err = file_read(f->path, &f->data, &f->len);
    } else {
        const struct conf_file *b = bundle_find(src, f->path);

        if (b == NULL) {
            if (asprintf(&why, "cannot read %s: not in the validated bundle",
                         f->path) < 0)
                pt_oom();
            return why;
        }
        f->data = pt_xmemdup(b->data ? b->data : "", b->data ? b->len : 0);
        f->len = b->data ? b->len : 0;
    }
    pt_format_size(FILE_MAX, max, sizeof(max));
    if (err == EFBIG || (err == 0 && f->len > FILE_MAX))
        err = asprintf(&why, "%s is larger than %s", f->path, max);
    else if (err == -1)
        err = asprintf(&why, "cannot read %s: not a regular file", f->path);
    else if (err != 0)
        err = asprintf(&why, "cannot read %s: %s", f->path, strerror(err));
    else if (f->len == 0)
        err = asprintf(&why, "%s is empty", f->path);
    if (err < 0)
        pt_oom();
    return why;
}

struct ref_order {
    const char *path;
    size_t i;
};

static int ref_order_cmp(const void *a, const void *b)
{
    const struct ref_order *x = a, *y = b;
    int d = strcmp(x->path, y->path);

    return d != 0 ? d : (x->i > y->i) - (x->i < y->i);
}

/*
 * Reads every file the config names into c->files, once per path, and
 * points the config's cert_file, key_file and ca_file at them.  A file
 * that cannot be had is reported where it is first named.  c->files is
 * allocated once, with its final size, so the pointers stay valid.
 */
static void resolve_files(struct conf *c, const struct file_source *src,
                          struct conf_diag *diag)
{
    size_t nrefs = file_refs(c, NULL), nuniq = 0;
    struct file_ref *refs;
    struct ref_order *order;
    size_t *first;

    if (nrefs == 0)
        return;
    refs = pt_xcalloc(nrefs, sizeof(*refs));
    order = pt_xcalloc(nrefs, sizeof(*order));
    first = pt_xcalloc(nrefs, sizeof(*first));
    file_refs(c, refs);
    /* sorted by path, then by place: the first of each run is the first
     * place that names the file */
    for (size_t i = 0; i < nrefs; i++)
        order[i] = (struct ref_order){refs[i].path, i};
    qsort(order, nrefs, sizeof(*order), ref_order_cmp);
    for (size_t k = 0; k < nrefs; k++) {
        int lead = k == 0 || strcmp(order[k].path, order[k - 1].path) != 0;

        first[order[k].i] = lead ? order[k].i : first[order[k - 1].i];
        nuniq += lead;
    }
    c->files = pt_xcalloc(nuniq, sizeof(*c->files));
    for (size_t i = 0; i < nrefs; i++) {
        struct conf_file *f;
        char *why;

        if (first[i] != i) {
            *refs[i].slot = *refs[first[i]].slot;
            continue;
        }
        f = &c->files[c->nfiles++];
        f->path = pt_xstrdup(refs[i].path);
        *refs[i].slot = f;
        why = file_load(f, src);
        if (why != NULL) {
            conf_diag_at(diag, c, refs[i].pos, "%s: %s", refs[i].key, why);
            free(why);
        }
    }
    free(first);
    free(order);
    free(refs);
}

/* ---- loading ---- */

/* What conf_load_file, conf_load_buffer and conf_load_buffer_files
 * share: the files the config names come from src. */
static struct conf *conf_load(const char *name, const char *buf, size_t len,
                              const struct file_source *src,
                              struct conf_diag *diag)
{
    size_t before = diag->n;
    struct conf *c = conf_new(name, buf, len);

    if (conf_yaml_parse(c, c->source, c->source_len, diag) == PT_OK) {
        /* no file is read for a config that is wrong already */
        if (diag->n == before)
            resolve_files(c, src, diag);
        conf_fill_defaults(c);
        check_listeners(c, diag);
        for (size_t i = 0; i < c->nupstreams; i++)
            check_servers(c, &c->upstreams[i], diag);
        resolve_routes(c, diag);
        check_limits(c, diag);
        check_cache(c, diag);
        check_user(c, diag);
    }
    if (diag->n != before)
        conf_free(&c);
    return c;
}

struct conf *conf_load_buffer(const char *name, const char *buf, size_t len,
                              struct conf_diag *diag)
{
    static const struct file_source disk = {.disk = 1};

    return conf_load(name, buf, len, &disk, diag);
}

struct conf *conf_load_buffer_files(const char *name, const char *buf,
                                    size_t len, const struct conf_file *files,
                                    size_t nfiles, struct conf_diag *diag)
{
    const struct file_source bundle = {.files = files, .nfiles = nfiles};

    return conf_load(name, buf, len, &bundle, diag);
}

struct conf *conf_load_file(const char *path, struct conf_diag *diag)
{
    static const struct file_source disk = {.disk = 1};
    struct conf *c;
    char *buf = NULL;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int err = fd < 0 ? errno : read_all(fd, CONF_FILE_MAX, &buf, &len);

    if (fd >= 0)
        close(fd);
    if (err != 0) {
        conf_diag_add(diag, "cannot read %s: %s", path, strerror(err));
        return NULL;
    }
    c = conf_load(path, buf, len, &disk, diag);
    free(buf);
    return c;
}

static void headers_free(struct conf_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

static void header_ops_free(struct conf_header_ops *ops)
{
    headers_free(ops->set, ops->nset);
    headers_free(ops->add, ops->nadd);
    for (size_t i = 0; i < ops->nremove; i++)
        free(ops->remove[i]);
    free(ops->remove);
}

static void route_free(struct conf_route *r)
{
    free(r->host);
    free(r->path_prefix);
    free(r->respond.body);
    headers_free(r->respond.headers, r->respond.nheaders);
    free(r->upstream_name);
    header_ops_free(&r->request_headers);
    header_ops_free(&r->response_headers);
    for (size_t i = 0; i < r->cache.ndrop_query; i++)
        free(r->cache.drop_query[i]);
    free(r->cache.drop_query);
    for (size_t i = 0; i < r->cache.nheaders; i++)
        free(r->cache.headers[i]);
    free(r->cache.headers);
}

static void upstream_free(struct conf_upstream *u)
{
    free(u->name);
    for (size_t i = 0; i < u->nservers; i++)
        free(u->servers[i].address);
    free(u->servers);
    free(u->hash_header);
    free(u->health_check.path);
    free(u->host);
    free(u->tls.ca);
    free(u->tls.sni);
}

static void listener_free(struct conf_listener *l)
{
    free(l->listen);
    for (size_t i = 0; i < l->tls.ncerts; i++) {
        free(l->tls.certs[i].cert);
        free(l->tls.certs[i].key);
    }
    free(l->tls.certs);
    free(l->tls.ciphers);
    free(l->tls.ciphersuites);
}

void conf_free(struct conf **conf)
{
    struct conf *c = conf ? *conf : NULL;

    if (c == NULL)
        return;
    free(c->path);
    free(c->source);
    free(c->user);
    free(c->pid_file);
    free(c->error_log.path);
    free(c->access_log.path);
    for (size_t i = 0; i < c->nlisteners; i++)
        listener_free(&c->listeners[i]);
    free(c->listeners);
    listener_free(&c->admin.listener);
    for (size_t i = 0; i < c->admin.nallow; i++)
        free(c->admin.allow[i].text);
    free(c->admin.allow);
    for (size_t i = 0; i < c->nroutes; i++)
        route_free(&c->routes[i]);
    free(c->routes);
    for (size_t i = 0; i < c->nupstreams; i++)
        upstream_free(&c->upstreams[i]);
    free(c->upstreams);
    for (size_t i = 0; i < c->nfiles; i++) {
        free(c->files[i].path);
        free(c->files[i].data);
    }
    free(c->files);
    free(c);
    *conf = NULL;
}

/* ---- the effective-config dump ---- */

/* Decodes one UTF-8 character; returns its length or 0 if invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t k;
    uint32_t v;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xE0) == 0xC0) {
        k = 2, v = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        k = 3, v = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        k = 4, v = s[0] & 0x07;
    } else {
        return 0;
    }
    if (k > n)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    *cp = v;
    return k;
}

/* What YAML lets stand raw inside double quotes.  NEL, LS and PS are line
 * breaks to YAML and would be folded; a BOM may be dropped. */
static int dump_raw_ok(uint32_t cp)
{
    if (cp < 0x80)
        return cp >= 0x20 && cp != 0x7F && cp != '"' && cp != '\\';
    if (cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF)
        return 0;
    return (cp >= 0xA0 && cp <= 0xD7FF) || (cp >= 0xE000 && cp <= 0xFFFD) ||
           (cp >= 0x10000 && cp <= 0x10FFFF);
}

static void dump_escape(FILE *out, uint32_t cp)
{
    static const char from[] = "\"\\\n\t\r";
    static const char *const to[] = {"\\\"", "\\\\", "\\n", "\\t", "\\r"};
    const char *hit = cp != 0 && cp < 0x80 ? strchr(from, (int)cp) : NULL;

    if (hit != NULL)
        fputs(to[hit - from], out);
    else if (cp <= 0xFF)
        fprintf(out, "\\x%02X", (unsigned)cp);
    else if (cp <= 0xFFFF)
        fprintf(out, "\\u%04X", (unsigned)cp);
    else
        fprintf(out, "\\U%08X", (unsigned)cp);
}

/* Writes s as a double-quoted YAML scalar that reads back byte for byte. */
static void dump_str(FILE *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;

    fputc('"', out);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = utf8_decode(p + i, len - i, &cp);

        if (k == 0) { /* cannot come from libyaml, which checks UTF-8 */
            fprintf(out, "\\x%02X", p[i]);
            i++;
            continue;
        }
        if (dump_raw_ok(cp))
            fwrite(p + i, 1, k, out);
        else
            dump_escape(out, cp);
        i += k;
    }
    fputc('"', out);
}

static void dump_line(FILE *out, const char *indent, const char *key,
                      const char *s, size_t len)
{
    fprintf(out, "%s%s: ", indent, key);
    dump_str(out, s, len);
    fputc('\n', out);
}

static void dump_process(const struct conf *c, FILE *out)
{
    if (c->workers_auto)
        fprintf(out, "workers: auto # %d on this machine\n", c->workers);
    else
        fprintf(out, "workers: %d\n", c->workers);
    if (c->user != NULL)
        dump_line(out, "", "user", c->user, strlen(c->user));
    if (c->pid_file != NULL)
        dump_line(out, "", "pid_file", c->pid_file, strlen(c->pid_file));
}

static const char *access_format_name(int f)
{
    return f == ACCESS_OFF ? "off" : f == ACCESS_JSON ? "json" : "combined";
}

static void dump_logs(const struct conf *c, FILE *out)
{
    fputs("error_log:\n", out);
    if (c->error_log.path != NULL)
        dump_line(out, "  ", "path", c->error_log.path,
                  strlen(c->error_log.path));
    fprintf(out, "  level: %s\n", conf_log_level_name(c->error_log.level));
    fputs("access_log:\n", out);
    if (c->access_log.path != NULL)
        dump_line(out, "  ", "path", c->access_log.path,
                  strlen(c->access_log.path));
    fprintf(out, "  format: %s\n", access_format_name(c->access_log.format));
}

static void dump_size(FILE *out, const char *key, uint64_t v)
{
    char buf[32];

    fprintf(out, "  %s: %s\n", key, pt_format_size(v, buf, sizeof(buf)));
}

static void dump_duration_at(FILE *out, const char *indent, const char *key,
                             uint64_t ms)
{
    char buf[32];

    fprintf(out, "%s%s: %s\n", indent, key,
            pt_format_duration(ms, buf, sizeof(buf)));
}

static void dump_duration(FILE *out, const char *key, uint64_t ms)
{
    dump_duration_at(out, "  ", key, ms);
}

static void dump_limits(const struct conf *c, FILE *out)
{
    fputs("limits:\n", out);
    fprintf(out, "  max_connections: %u\n", c->limits.max_connections);
    dump_size(out, "max_header_bytes", c->limits.max_header_bytes);
    fprintf(out, "  max_headers: %u\n", c->limits.max_headers);
    dump_size(out, "max_uri_bytes", c->limits.max_uri_bytes);
    dump_size(out, "max_body_bytes", c->limits.max_body_bytes);
    fputs("timeouts:\n", out);
    dump_duration(out, "client_header", c->timeouts.client_header);
    dump_duration(out, "client_body", c->timeouts.client_body);
    dump_duration(out, "keepalive", c->timeouts.keepalive);
    dump_duration(out, "send", c->timeouts.send);
    dump_duration(out, "shutdown_grace", c->timeouts.shutdown_grace);
    dump_duration(out, "upstream_connect", c->timeouts.upstream_connect);
    dump_duration(out, "upstream_send", c->timeouts.upstream_send);
    dump_duration(out, "upstream_read", c->timeouts.upstream_read);
    dump_duration(out, "websocket_idle", c->timeouts.websocket_idle);
    dump_duration(out, "sse_idle", c->timeouts.sse_idle);
}

static void dump_text(FILE *out, const char *indent, const char *key,
                      const char *s)
{
    if (s != NULL)
        dump_line(out, indent, key, s, strlen(s));
}

static void dump_listener_tls(const struct conf_tls *tls, FILE *out)
{
    if (!tls->enabled)
        return;
    fputs("    tls:\n      certificates:\n", out);
    for (size_t i = 0; i < tls->ncerts; i++) {
        dump_text(out, "        - ", "cert", tls->certs[i].cert);
        dump_text(out, "          ", "key", tls->certs[i].key);
    }
    fprintf(out, "      min_version: \"%s\"\n",
            tls->min_version == TLS_1_3 ? "1.3" : "1.2");
    dump_text(out, "      ", "ciphers", tls->ciphers);
    dump_text(out, "      ", "ciphersuites", tls->ciphersuites);
}

static void dump_list(FILE *out, const char *key, char **v, size_t n)
{
    fprintf(out, "        %s: [", key);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ", " : "", out);
        dump_str(out, v[i], strlen(v[i]));
    }
    fputs("]\n", out);
}

static void dump_route_cache(const struct conf_route_cache *rc, FILE *out)
{
    char buf[32];

    if (!rc->enabled)
        return;
    fputs("    cache:\n", out);
    if (rc->ttl)
        fprintf(out, "      ttl: %s\n",
                pt_format_duration(rc->ttl, buf, sizeof(buf)));
    fprintf(out, "      key:\n        sort_query: %s\n",
            rc->sort_query ? "true" : "false");
    dump_list(out, "drop_query", rc->drop_query, rc->ndrop_query);
    dump_list(out, "headers", rc->headers, rc->nheaders);
    fprintf(out, "      max_variants: %u\n", rc->max_variants);
}

static void dump_cache(const struct conf *c, FILE *out)
{
    char a[32], b[32], t[32], s[32];

    if (!c->cache.enabled)
        return;
    fprintf(out, "cache:\n  size: %s\n  max_object_size: %s\n"
                 "  default_ttl: %s\n",
            pt_format_size(c->cache.size, a, sizeof(a)),
            pt_format_size(c->cache.max_object_size, b, sizeof(b)),
            c->cache.default_ttl
                ? pt_format_duration(c->cache.default_ttl, t, sizeof(t))
                : "0s");
    pt_format_size(c->cache.sendfile_after, s, sizeof(s));
    switch (c->cache.sendfile) {
    case CONF_SENDFILE_NEVER:
        fputs("  sendfile: false\n", out);
        break;
    case CONF_SENDFILE_ALWAYS:
        fputs("  sendfile: true\n", out);
        break;
    case CONF_SENDFILE_AFTER:
        fprintf(out, "  sendfile: %s\n", s);
        break;
    default:
        fprintf(out, "  sendfile: auto # %s a turn on this machine\n", s);
        break;
    }
}

static void dump_admin(const struct conf *c, FILE *out)
{
    if (!c->admin.enabled)
        return;
    fputs("admin:\n", out);
    for (size_t i = 0; i < c->nlisteners; i++)
        if (c->listeners[i].admin)
            dump_line(out, "  ", "listen", c->listeners[i].listen,
                      strlen(c->listeners[i].listen));
    fputs(c->admin.nallow ? "  allow:\n" : "  allow: [] # nobody\n", out);
    for (size_t i = 0; i < c->admin.nallow; i++) {
        fputs("    - ", out);
        dump_str(out, c->admin.allow[i].text, strlen(c->admin.allow[i].text));
        fputc('\n', out);
    }
}

static void dump_listeners(const struct conf *c, FILE *out)
{
    if (c->nlisteners == 0) {
        fputs("listeners: []\n", out);
        return;
    }
    fputs("listeners:\n", out);
    for (size_t i = 0; i < c->nlisteners; i++) {
        const struct conf_listener *l = &c->listeners[i];

        if (l->admin)
            continue;
        dump_line(out, "  - ", "listen", l->listen, strlen(l->listen));
        fprintf(out, "    backlog: %d\n", l->backlog);
        if (l->access_format != ACCESS_INHERIT)
            fprintf(out, "    access_log: { format: %s }\n",
                    access_format_name(l->access_format));
        dump_listener_tls(&l->tls, out);
    }
    dump_admin(c, out);
}

/* "KEY:" then one "NAME: VALUE" line per field, indented under it. */
static void dump_fields(FILE *out, const char *indent, const char *key,
                        const struct conf_header *h, size_t n)
{
    if (n == 0)
        return;
    fprintf(out, "%s%s:\n", indent, key);
    for (size_t i = 0; i < n; i++) {
        /* quoted: a token may start with "!", "&" or "*", YAML syntax */
        fprintf(out, "%s  ", indent);
        dump_str(out, h[i].name, strlen(h[i].name));
        fputs(": ", out);
        dump_str(out, h[i].value, strlen(h[i].value));
        fputc('\n', out);
    }
}

static void dump_server(const struct conf_server *s, FILE *out)
{
    dump_line(out, "      - ", "address", s->address, strlen(s->address));
    fprintf(out, "        weight: %u\n", s->weight);
}

static void dump_health(const struct conf_health *h, FILE *out)
{
    if (!h->enabled)
        return;
    fputs("    health_check:\n", out);
    dump_line(out, "      ", "path", h->path, strlen(h->path));
    dump_duration_at(out, "      ", "interval", h->interval);
    dump_duration_at(out, "      ", "timeout", h->timeout);
    fprintf(out, "      fails: %u\n", h->fails);
    fprintf(out, "      passes: %u\n", h->passes);
}

static void dump_upstream(const struct conf_upstream *u, FILE *out)
{
    static const char *const balance[] = {"round_robin", "least_conn", "hash"};

    fputs("  ", out);
    dump_str(out, u->name, strlen(u->name)); /* "null" is a fine name */
    fputs(":\n    servers:\n", out);
    for (size_t i = 0; i < u->nservers; i++)
        dump_server(&u->servers[i], out);
    fprintf(out, "    balance: %s\n", balance[u->balance]);
    if (u->balance == BALANCE_HASH && u->hash_key == HASH_HEADER)
        fprintf(out, "    hash_key: \"header:%s\"\n", u->hash_header);
    else if (u->balance == BALANCE_HASH)
        fprintf(out, "    hash_key: %s\n",
                u->hash_key == HASH_URI ? "uri" : "client");
    fprintf(out, "    keepalive: %u\n", u->keepalive);
    dump_duration_at(out, "    ", "keepalive_timeout", u->keepalive_timeout);
    fprintf(out, "    retries: %u\n", u->retries);
    fprintf(out, "    max_fails: %u\n", u->max_fails);
    dump_duration_at(out, "    ", "fail_timeout", u->fail_timeout);
    if (u->host != NULL)
        dump_line(out, "    ", "host", u->host, strlen(u->host));
    fputs("    timeouts:\n", out);
    dump_duration_at(out, "      ", "connect", u->timeouts.connect);
    dump_duration_at(out, "      ", "send", u->timeouts.send);
    dump_duration_at(out, "      ", "read", u->timeouts.read);
    dump_health(&u->health_check, out);
    if (!u->tls.enabled)
        return;
    fputs("    tls:\n", out);
    fprintf(out, "      verify: %s\n", u->tls.verify ? "true" : "false");
    dump_text(out, "      ", "ca", u->tls.ca);
    dump_text(out, "      ", "sni", u->tls.sni);
}

static void dump_upstreams(const struct conf *c, FILE *out)
{
    if (c->nupstreams == 0) {
        fputs("upstreams: {}\n", out);
        return;
    }
    fputs("upstreams:\n", out);
    for (size_t i = 0; i < c->nupstreams; i++)
        dump_upstream(&c->upstreams[i], out);
}

static int header_ops_empty(const struct conf_header_ops *ops)
{
    return ops->nset == 0 && ops->nadd == 0 && ops->nremove == 0;
}

static void dump_header_ops(const char *key, const struct conf_header_ops *ops,
                            FILE *out)
{
    if (header_ops_empty(ops))
        return;
    fprintf(out, "      %s:\n", key);
    dump_fields(out, "        ", "set", ops->set, ops->nset);
    dump_fields(out, "        ", "add", ops->add, ops->nadd);
    if (ops->nremove == 0)
        return;
    fputs("        remove:\n", out);
    for (size_t i = 0; i < ops->nremove; i++) {
        fputs("          - ", out);
        dump_str(out, ops->remove[i], strlen(ops->remove[i]));
        fputc('\n', out);
    }
}

/* Only what the route sets: 0 means the upstream's, which -T shows. */
static void dump_route_upstream(const struct conf_route *r, FILE *out)
{
    const struct conf_upstream_timeouts *t = &r->timeouts;

    dump_line(out, "    ", "upstream", r->upstream_name,
              strlen(r->upstream_name));
    if (t->connect || t->send || t->read)
        fputs("    timeouts:\n", out);
    if (t->connect)
        dump_duration_at(out, "      ", "connect", t->connect);
    if (t->send)
        dump_duration_at(out, "      ", "send", t->send);
    if (t->read)
        dump_duration_at(out, "      ", "read", t->read);
    if (header_ops_empty(&r->request_headers) &&
        header_ops_empty(&r->response_headers))
        return;
    fputs("    headers:\n", out);
    dump_header_ops("request", &r->request_headers, out);
    dump_header_ops("response", &r->response_headers, out);
}

static void dump_route(const struct conf_route *r, FILE *out)
{
    const struct conf_respond *rs = &r->respond;

    fputs("  - match:\n", out);
    if (r->host != NULL)
        dump_line(out, "      ", "host", r->host, strlen(r->host));
    dump_line(out, "      ", "path_prefix", r->path_prefix,
              strlen(r->path_prefix));
    if (r->https_redirect == 443)
        fputs("    https_redirect: true\n", out);
    else if (r->https_redirect != 0)
        fprintf(out, "    https_redirect: %d\n", r->https_redirect);
    if (r->access_format != ACCESS_INHERIT)
        fprintf(out, "    access_log: { format: %s }\n",
                access_format_name(r->access_format));
    dump_route_cache(&r->cache, out);
    if (!r->has_respond) {
        dump_route_upstream(r, out);
        return;
    }
    fputs("    respond:\n", out);
    fprintf(out, "      status: %d\n", rs->status);
    dump_line(out, "      ", "body", rs->body, rs->body_len);
    dump_fields(out, "      ", "headers", rs->headers, rs->nheaders);
}

void conf_dump(const struct conf *conf, FILE *out)
{
    fputs("# portico effective configuration, defaults filled in\n", out);
    dump_process(conf, out);
    dump_logs(conf, out);
    dump_limits(conf, out);
    dump_cache(conf, out);
    dump_upstreams(conf, out);
    dump_listeners(conf, out);
    if (conf->nroutes == 0) {
        fputs("routes: [] # every request gets 404\n", out);
        return;
    }
    fputs("routes:\n", out);
    for (size_t i = 0; i < conf->nroutes; i++)
        dump_route(&conf->routes[i], out);
}
