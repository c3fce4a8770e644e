/*
 * conf.h -- one configuration generation: the whole validated config,
 * built in one go and freed in one go.  Layer 2.  conf_tree.c is the only
 * file that includes <yaml.h> (YAML to a node tree), conf_walk.c walks
 * that tree with key tables, conf_yaml.c holds portico's tables; conf.c
 * owns defaults, cross-checks and the effective-config dump.
 * Calls: util.c.  Never: libevent, sockets I/O.
 */
#ifndef PORTICO_CONF_H
#define PORTICO_CONF_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "portico.h"

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_NOTICE, LOG_LVL_WARN,
                 LOG_LVL_ERROR };

/* ACCESS_INHERIT (0) in a listener or route: use the enclosing format. */
enum access_format { ACCESS_INHERIT, ACCESS_COMBINED, ACCESS_OFF,
                     ACCESS_JSON };

/* Where a value came from, so later checks can point at it. */
struct conf_pos {
    int line; /* 1-based; 0 when the value is a default */
    int col;  /* 1-based */
};

/* A file the config refers to (certificate, key, CA bundle), read once
 * by the master and passed to the workers with the config bytes: workers
 * that dropped privileges never open it themselves. */
struct conf_file {
    char *path;  /* owns: absolute (relative paths are taken from the
                    config file's directory) */
    char *data;  /* owns; NUL-terminated */
    size_t len;
};

struct conf_cert {
    char *cert;                       /* owns: absolute path; may hold the
                                         chain after the leaf */
    char *key;                        /* owns: absolute path */
    const struct conf_file *cert_file; /* borrowed from conf->files */
    const struct conf_file *key_file;  /* borrowed from conf->files */
    struct conf_pos pos;              /* the list item */
    struct conf_pos cert_pos, key_pos;
};

struct conf_tls {
    int enabled;              /* 1 when tls: is written */
    struct conf_cert *certs;  /* owns; the first is the default (no SNI
                                 match); at least one */
    size_t ncerts;
    int min_version;          /* 0x0303 (TLS 1.2, default) or 0x0304 */
    char *ciphers;            /* owns; TLS 1.2 list; NULL = built-in */
    char *ciphersuites;       /* owns; TLS 1.3 list; NULL = built-in */
    struct conf_pos pos;
};

struct conf_listener {
    char *listen;                 /* owns: as written, e.g. "[::]:8080" */
    struct sockaddr_storage addr; /* parsed numeric address */
    socklen_t addrlen;
    int backlog;                  /* default 511 */
    struct conf_tls tls;
    int access_format;            /* enum access_format; INHERIT = the
                                     global access_log.format */
    int admin;                    /* 1: the admin listener (added by the
                                     loader from admin:) */
    struct conf_pos pos;
};

/* A client address range allowed on the admin listener. */
struct conf_allow {
    int family;        /* AF_INET or AF_INET6 */
    uint8_t addr[16];  /* network byte order */
    unsigned prefix;   /* bits */
    char *text;        /* owns: as written */
};

struct conf_admin {
    int enabled;              /* 1 when admin: is written */
    struct conf_listener listener; /* while loading; then moved into
                                      conf->listeners with admin = 1 */
    struct conf_allow *allow; /* owns; default loopback only */
    size_t nallow;
    struct conf_pos pos;
};

struct conf_header {
    char *name;  /* owns */
    char *value; /* owns */
};

struct conf_respond {
    int status;                  /* 100..599, default 200 */
    char *body;                  /* owns; "" when absent */
    size_t body_len;
    struct conf_header *headers; /* owns; in file order */
    size_t nheaders;
};

enum conf_balance { BALANCE_ROUND_ROBIN, BALANCE_LEAST_CONN, BALANCE_HASH };
enum conf_hash_key { HASH_CLIENT, HASH_URI, HASH_HEADER };

struct conf_server {
    char *address;                /* owns: as written */
    struct sockaddr_storage addr; /* numeric, like listeners */
    socklen_t addrlen;
    unsigned weight;              /* 1..1000, default 1 */
    struct conf_pos pos;
};

/* Upstream timeouts in ms; 0 in a route means "the upstream's". */
struct conf_upstream_timeouts {
    uint64_t connect; /* TCP connect */
    uint64_t send;    /* between writes of the request */
    uint64_t read;    /* between reads of the response */
};

/* Active health checks of an upstream group's servers. */
struct conf_health {
    int enabled;       /* 1 when health_check: is written */
    char *path;        /* owns; default "/" */
    uint64_t interval; /* ms between checks of one server; default 5s */
    uint64_t timeout;  /* ms for connect + answer; default 2s */
    unsigned fails;    /* failed checks in a row that take it out: 3 */
    unsigned passes;   /* passed checks in a row that bring it back: 2 */
};

/* TLS to the servers of an upstream group. */
struct conf_upstream_tls {
    int enabled;                 /* 1 when tls: is written */
    int verify;                  /* check the server certificate: 1 */
    char *ca;                    /* owns: absolute path; NULL = the
                                    system's trust store */
    const struct conf_file *ca_file; /* borrowed from conf->files */
    struct conf_pos ca_pos;      /* the ca: value */
    char *sni;                   /* owns; NULL = the upstream's host: (or
                                    none for a numeric address); also the
                                    name verified */
    struct conf_pos pos;
};

struct conf_upstream {
    char *name;                  /* owns: the key under upstreams: */
    struct conf_server *servers; /* owns; at least one */
    size_t nservers;
    enum conf_balance balance;   /* default round_robin */
    enum conf_hash_key hash_key; /* balance: hash; default client */
    char *hash_header;           /* owns; for hash_key header:NAME */
    unsigned keepalive;          /* idle connections kept per server per
                                    worker; default 32; 0 = none */
    uint64_t keepalive_timeout;  /* ms; default 4s, under Node's 5 s */
    unsigned retries;            /* other servers tried on connect
                                    failure (idempotent); default 1 */
    unsigned max_fails;          /* passive health; default 3; 0 = off */
    uint64_t fail_timeout;       /* ms; default 10s */
    char *host;                  /* owns; Host sent upstream; NULL = the
                                    client's */
    struct conf_upstream_timeouts timeouts; /* defaults from the global
                                               timeouts.upstream_* */
    struct conf_health health_check;
    struct conf_upstream_tls tls;
    struct conf_pos pos;
};

struct conf_header_ops {
    struct conf_header *set; /* owns: replace (or add) these */
    size_t nset;
    struct conf_header *add; /* owns: append these */
    size_t nadd;
    char **remove;           /* owns: drop every field of these names */
    size_t nremove;
};

/* cache.sendfile: how big cached bodies leave (cache_serve). */
enum conf_sendfile {
    CONF_SENDFILE_AUTO = 0, /* copied up to a share of the CPU's cache a
                               turn, then sendfile(2) */
    CONF_SENDFILE_NEVER,    /* false: always copied */
    CONF_SENDFILE_ALWAYS,   /* true: sendfile(2) */
    CONF_SENDFILE_AFTER     /* a size: copied up to it a turn */
};

/* The shared-memory HTTP cache (one zone for all workers). */
struct conf_cache {
    int enabled;              /* 1 when cache: is written */
    uint64_t size;            /* the zone's whole byte budget; 256m */
    uint64_t max_object_size; /* larger responses pass uncached; 8m */
    uint64_t default_ttl;     /* ms; freshness for responses that give
                                 none, on routes without a ttl; 0 = none */
    int sendfile;             /* enum conf_sendfile */
    uint64_t sendfile_after;  /* bytes of big bodies a worker copies in
                                 one loop turn before it sends the rest
                                 of the turn's with sendfile(2) from the
                                 zone's file: 0 all, UINT64_MAX none;
                                 filled in for every mode */
    struct conf_pos pos, size_pos;
};

/* A route's cache: settings. */
struct conf_route_cache {
    int enabled;          /* cache: true, or a mapping */
    uint64_t ttl;         /* ms; 0 = what the response says */
    int sort_query;       /* key.sort_query */
    char **drop_query;    /* owns; key.drop_query ("utm_*" a prefix) */
    size_t ndrop_query;
    char **headers;       /* owns; key.headers: request fields in the key */
    size_t nheaders;
    unsigned max_variants; /* stored variants per URL (Vary); 16 */
    struct conf_pos pos;
};

struct conf_route {
    char *host;        /* owns; NULL = any host.  "*.example.com" matches
                          subdomains only; lower-cased at load */
    char *path_prefix; /* owns; default "/" */
    /* The action: exactly one of respond or upstream. */
    int has_respond;
    struct conf_respond respond;
    char *upstream_name;             /* owns; NULL with respond */
    struct conf_upstream *upstream;  /* borrowed from conf->upstreams */
    struct conf_pos upstream_pos;    /* where upstream: names it */
    struct conf_upstream_timeouts timeouts; /* 0 = the upstream's */
    struct conf_header_ops request_headers;  /* headers.request */
    struct conf_header_ops response_headers; /* headers.response */
    int access_format;       /* enum access_format; INHERIT = the
                                listener's */
    struct conf_route_cache cache;
    int https_redirect;      /* 0 off; else a request that came in plain
                                HTTP gets 308 to https on this port (443
                                for "true") */
    struct conf_pos pos;
};

struct conf {
    char *path;    /* owns: the file name used in messages */
    char *source;  /* owns: the exact bytes loaded (sent to workers) */
    size_t source_len;

    int workers;      /* >= 1; "auto" resolved to the number of cores */
    int workers_auto; /* 1 when written as auto (for -T) */
    char *user;       /* owns; NULL = do not change user */
    char *pid_file;   /* owns; NULL = none */

    struct {
        char *path; /* owns; "stderr" by default */
        enum log_level level; /* default info */
    } error_log;

    struct {
        char *path; /* owns; "stderr", a file, or NULL when format off */
        enum access_format format; /* default combined */
    } access_log;

    struct {
        unsigned max_connections; /* per worker; default 10000 */
        size_t max_header_bytes;  /* default 16k */
        unsigned max_headers;     /* default 100 */
        size_t max_uri_bytes;     /* default 8k */
        uint64_t max_body_bytes;  /* default 10m; 0 = unlimited */
    } limits;

    struct { /* all in milliseconds */
        uint64_t client_header;  /* default 10s: 408 */
        uint64_t client_body;    /* default 60s between body reads: 408 */
        uint64_t keepalive;      /* default 75s idle between requests */
        uint64_t send;           /* default 60s: client not reading */
        uint64_t shutdown_grace; /* default 30s */
        uint64_t upstream_connect; /* default 3s */
        uint64_t upstream_send;    /* default 60s */
        uint64_t upstream_read;    /* default 60s */
        uint64_t websocket_idle;   /* default 1h: a tunnel with no byte
                                      either way is closed */
        uint64_t sse_idle;         /* default 1h: replaces upstream_read
                                      for text/event-stream responses */
    } timeouts;

    struct conf_admin admin;         /* its listener is in listeners[] */
    struct conf_cache cache;
    struct conf_file *files;         /* owns: certificates, keys, CAs */
    size_t nfiles;
    struct conf_upstream *upstreams; /* owns; in file order */
    size_t nupstreams;
    struct conf_listener *listeners; /* owns */
    size_t nlisteners;
    struct conf_route *routes; /* owns; first match wins */
    size_t nroutes;

    /* Where values checked against each other were written, so conf.c's
     * cross-checks can point at them (line 0 = left at the default). */
    struct {
        struct conf_pos user;
        struct conf_pos max_header_bytes;
        struct conf_pos max_uri_bytes;
    } pos;
};

/* Collected diagnostics, each a full "file:line:col: error: ..." line. */
struct conf_diag {
    char **msgs; /* owns each */
    size_t n;
    size_t cap;
};

/*
 * Load and validate a config.  Returns a new generation (caller owns, free
 * with conf_free) or NULL when there were errors; every error found is
 * appended to diag (never just the first).  conf_load_file reads the file;
 * conf_load_buffer parses bytes already read (name is used in messages).
 */
struct conf *conf_load_file(const char *path, struct conf_diag *diag);
struct conf *conf_load_buffer(const char *name, const char *buf, size_t len,
                              struct conf_diag *diag);
/*
 * As conf_load_buffer, but files the config refers to are taken from
 * files[0..nfiles) (matched by absolute path) instead of the disk: how a
 * worker loads the generation the master validated.  name must be the
 * config's path, for relative file names.
 */
struct conf *conf_load_buffer_files(const char *name, const char *buf,
                                    size_t len, const struct conf_file *files,
                                    size_t nfiles, struct conf_diag *diag);
void conf_free(struct conf **conf);

/* Print the effective config, defaults filled in, as YAML (porticod -T). */
void conf_dump(const struct conf *conf, FILE *out);

void conf_diag_add(struct conf_diag *diag, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void conf_diag_fini(struct conf_diag *diag);

/*
 * Append "conf->path:LINE:COL: error: MESSAGE" (no LINE:COL when pos.line
 * is 0), e.g. for a listener that fails to bind at start-up.
 */
void conf_diag_at(struct conf_diag *diag, const struct conf *conf,
                  struct conf_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Internal to conf.c / conf_yaml.c: parse YAML bytes into conf, checking
 * each value on its own and appending every error to diag.  Returns PT_OK
 * when the document could be walked (diag may still have gained errors),
 * PT_ERROR on a fatal YAML syntax error.
 */
int conf_yaml_parse(struct conf *conf, const char *buf, size_t len,
                    struct conf_diag *diag);

/*
 * Internal to conf.c / conf_yaml.c: zeroes u and gives it the defaults
 * that do not depend on other values (keepalive 32, retries 1, ...).
 */
void conf_upstream_init(struct conf_upstream *u);

const char *conf_log_level_name(enum log_level level);

/*
 * Every key the loader accepts, as fn(path, name) with path like
 * "upstreams.*.health_check.interval" (keys not supported yet are left
 * out).  For the test that keeps man/portico.yaml.5 complete.
 */
void conf_yaml_keys(void (*fn)(const char *path, const char *name,
                               void *arg),
                    void *arg);

/* "libyaml 0.2.5", for porticod -V. */
const char *conf_yaml_version(void);

#endif
