/*
 * conf.h -- one configuration generation: the whole validated config,
 * built in one go and freed in one go.  Layer 2.  conf_yaml.c is the only
 * file that includes <yaml.h>; conf.c owns defaults, cross-checks and the
 * effective-config dump.  Calls: util.c.  Never: libevent, sockets I/O.
 */
#ifndef PORTICO_CONF_H
#define PORTICO_CONF_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "portico.h"

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_NOTICE, LOG_LVL_WARN,
                 LOG_LVL_ERROR };

enum access_format { ACCESS_COMBINED, ACCESS_OFF };

/* Where a value came from, so later checks can point at it. */
struct conf_pos {
    int line; /* 1-based; 0 when the value is a default */
    int col;  /* 1-based */
};

struct conf_listener {
    char *listen;                 /* owns: as written, e.g. "[::]:8080" */
    struct sockaddr_storage addr; /* parsed numeric address */
    socklen_t addrlen;
    int backlog;                  /* default 511 */
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

struct conf_route {
    char *host;        /* owns; NULL = any host.  "*.example.com" matches
                          subdomains only; lower-cased at load */
    char *path_prefix; /* owns; default "/" */
    struct conf_respond respond; /* the action (only one for now) */
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
    } timeouts;

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

const char *conf_log_level_name(enum log_level level);

/* "libyaml 0.2.5", for porticod -V. */
const char *conf_yaml_version(void);

#endif
