/*
 * log.h -- the error log (levels, timestamps, one write per line) and the
 * access log writer.  Layer 0.  Calls: libc only.
 */
#ifndef PORTICO_LOG_H
#define PORTICO_LOG_H

#include <stdarg.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conf.h"

/* Who is speaking ("master", "worker 2"): prefixes every line. */
void log_set_role(const char *role);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Error log destination; the fd is borrowed (default 2, stderr). */
void log_set_fd(int fd);
int log_get_fd(void);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap);

#define log_debug(...)                                                     \
    do {                                                                   \
        if (log_get_level() <= LOG_LVL_DEBUG)                              \
            log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                           \
    } while (0)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

/* One finished exchange, as the access log sees it. */
struct access_entry {
    const struct sockaddr *client;
    struct pt_str method, target, referer, user_agent;
    int version_minor; /* -1 when no request line was parsed */
    int status;
    uint64_t bytes_sent; /* body bytes */
    uint64_t duration_us;
    struct pt_str request_id;
    const char *cache;    /* what the cache did ("hit", "miss", ...) */
    const char *upstream; /* server address, or NULL */
    uint64_t upstream_us; /* time to the upstream's response head */
};

/*
 * Append one line in `format` to fd (O_APPEND; one write(2) per line so
 * lines from several workers never interleave).  Returns PT_OK or
 * PT_ERROR when the write failed.
 */
int access_log_write(int fd, enum access_format format,
                     const struct access_entry *e);

/*
 * Open a log path for appending: "stderr" gives a dup of fd 2.  Returns
 * the fd, or -1 with errno set.
 */
int log_open_path(const char *path);

#endif
