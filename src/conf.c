/*
 * conf.c -- one configuration generation as a whole: defaults, the checks
 * that span several values, diagnostics, freeing, and the effective-config
 * dump (porticod -T).  Reading the YAML itself is conf_yaml.c's job.
 * Calls: conf_yaml.c, util.c, libc (getpwnam, sysconf).
 * Never: libyaml, libevent, socket I/O.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "util.h"

/* A config larger than this is a mistake (or /dev/zero). */
#define CONF_FILE_MAX (16 * 1024 * 1024)
#define WORKERS_MAX 512
#define BACKLOG_DEFAULT 511

/* ---- memory: a config is small, so running out here is fatal ---- */

static void oom(void)
{
    fputs("portico: out of memory while loading the config\n", stderr);
    abort();
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);

    if (p == NULL)
        oom();
    return p;
}

static char *xmemdup(const char *s, size_t len)
{
    char *p = malloc(len + 1);

    if (p == NULL)
        oom();
    if (len > 0)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static char *xstrdup(const char *s)
{
    return xmemdup(s, strlen(s));
}

/* ---- diagnostics ---- */

static void diag_push(struct conf_diag *diag, char *msg)
{
    if (diag->n == diag->cap) {
        size_t cap = diag->cap ? diag->cap * 2 : 8;
        char **p = realloc(diag->msgs, cap * sizeof(*p));

        if (p == NULL)
            oom();
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
        oom();
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
        oom();
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
}

static int workers_auto_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 1)
        return 1;
    return n > WORKERS_MAX ? WORKERS_MAX : (int)n;
}

static void route_fill_defaults(struct conf_route *r)
{
    if (r->path_prefix == NULL)
        r->path_prefix = xstrdup("/");
    if (r->respond.status == 0)
        r->respond.status = 200;
    if (r->respond.body == NULL) {
        r->respond.body = xstrdup("");
        r->respond.body_len = 0;
    }
}

/* Defaults that depend on what the file said, filled in after parsing. */
static void conf_fill_defaults(struct conf *c)
{
    if (c->workers_auto)
        c->workers = workers_auto_count();
    if (c->error_log.path == NULL)
        c->error_log.path = xstrdup("stderr");
    if (c->access_log.format == ACCESS_OFF) {
        free(c->access_log.path);
        c->access_log.path = NULL;
    } else if (c->access_log.path == NULL) {
        c->access_log.path = xstrdup("stderr");
    }
    for (size_t i = 0; i < c->nlisteners; i++) {
        if (c->listeners[i].backlog == 0)
            c->listeners[i].backlog = BACKLOG_DEFAULT;
    }
    for (size_t i = 0; i < c->nroutes; i++)
        route_fill_defaults(&c->routes[i]);
}

/* ---- checks across values ---- */

static int listener_same(const struct conf_listener *a,
                         const struct conf_listener *b)
{
    /* pt_parse_addr zeroes the padding, so bytes compare */
    return a->addrlen != 0 && a->addrlen == b->addrlen &&
           memcmp(&a->addr, &b->addr, a->addrlen) == 0;
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
    struct conf *c = xcalloc(1, sizeof(*c));

    c->path = xstrdup(name ? name : "(config)");
    c->source = xmemdup(buf, len);
    c->source_len = len;
    conf_set_defaults(c);
    return c;
}

struct conf *conf_load_buffer(const char *name, const char *buf, size_t len,
                              struct conf_diag *diag)
{
    size_t before = diag->n;
    struct conf *c = conf_new(name, buf, len);

    if (conf_yaml_parse(c, c->source, c->source_len, diag) == PT_OK) {
        conf_fill_defaults(c);
        check_listeners(c, diag);
        check_limits(c, diag);
        check_user(c, diag);
    }
    if (diag->n != before)
        conf_free(&c);
    return c;
}

/* Reads fd to the end into *out (caller frees).  Returns 0 or an errno. */
static int read_all(int fd, char **out, size_t *outlen)
{
    size_t cap = 4096, len = 0;
    char *buf = NULL;

    for (;;) {
        ssize_t n;

        if (buf == NULL || len == cap) {
            char *p;

            if (buf != NULL && cap >= CONF_FILE_MAX) {
                free(buf);
                return EFBIG;
            }
            cap = buf ? cap * 2 : cap;
            p = realloc(buf, cap);
            if (p == NULL)
                oom();
            buf = p;
        }
        n = read(fd, buf + len, cap - len);
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
    *out = buf;
    *outlen = len;
    return 0;
}

struct conf *conf_load_file(const char *path, struct conf_diag *diag)
{
    struct conf *c;
    char *buf = NULL;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int err = fd < 0 ? errno : read_all(fd, &buf, &len);

    if (fd >= 0)
        close(fd);
    if (err != 0) {
        conf_diag_add(diag, "cannot read %s: %s", path, strerror(err));
        return NULL;
    }
    c = conf_load_buffer(path, buf, len, diag);
    free(buf);
    return c;
}

static void route_free(struct conf_route *r)
{
    free(r->host);
    free(r->path_prefix);
    free(r->respond.body);
    for (size_t i = 0; i < r->respond.nheaders; i++) {
        free(r->respond.headers[i].name);
        free(r->respond.headers[i].value);
    }
    free(r->respond.headers);
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
        free(c->listeners[i].listen);
    free(c->listeners);
    for (size_t i = 0; i < c->nroutes; i++)
        route_free(&c->routes[i]);
    free(c->routes);
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
    fprintf(out, "  format: %s\n",
            c->access_log.format == ACCESS_OFF ? "off" : "combined");
}

static void dump_size(FILE *out, const char *key, uint64_t v)
{
    char buf[32];

    fprintf(out, "  %s: %s\n", key, pt_format_size(v, buf, sizeof(buf)));
}

static void dump_duration(FILE *out, const char *key, uint64_t ms)
{
    char buf[32];

    fprintf(out, "  %s: %s\n", key, pt_format_duration(ms, buf, sizeof(buf)));
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

        dump_line(out, "  - ", "listen", l->listen, strlen(l->listen));
        fprintf(out, "    backlog: %d\n", l->backlog);
    }
}

static void dump_route(const struct conf_route *r, FILE *out)
{
    const struct conf_respond *rs = &r->respond;

    fputs("  - match:\n", out);
    if (r->host != NULL)
        dump_line(out, "      ", "host", r->host, strlen(r->host));
    dump_line(out, "      ", "path_prefix", r->path_prefix,
              strlen(r->path_prefix));
    fputs("    respond:\n", out);
    fprintf(out, "      status: %d\n", rs->status);
    dump_line(out, "      ", "body", rs->body, rs->body_len);
    if (rs->nheaders == 0)
        return;
    fputs("      headers:\n", out);
    for (size_t i = 0; i < rs->nheaders; i++) {
        const struct conf_header *h = &rs->headers[i];

        /* quoted: a token may start with "!", "&" or "*", YAML syntax */
        fputs("        ", out);
        dump_str(out, h->name, strlen(h->name));
        fputs(": ", out);
        dump_str(out, h->value, strlen(h->value));
        fputc('\n', out);
    }
}

void conf_dump(const struct conf *conf, FILE *out)
{
    fputs("# portico effective configuration, defaults filled in\n", out);
    dump_process(conf, out);
    dump_logs(conf, out);
    dump_limits(conf, out);
    dump_listeners(conf, out);
    if (conf->nroutes == 0) {
        fputs("routes: [] # every request gets 404\n", out);
        return;
    }
    fputs("routes:\n", out);
    for (size_t i = 0; i < conf->nroutes; i++)
        dump_route(&conf->routes[i], out);
}
