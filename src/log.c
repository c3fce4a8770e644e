/*
 * log.c -- error log lines ("TIME porticod[PID] ROLE LEVEL: text") and
 * access log lines.  Calls: libc only.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static struct {
    enum log_level level;
    int fd;
    char role[32];
} log_state = {LOG_LVL_INFO, 2, "master"};

void log_set_role(const char *role)
{
    snprintf(log_state.role, sizeof(log_state.role), "%s", role);
}

void log_set_level(enum log_level level)
{
    log_state.level = level;
}

enum log_level log_get_level(void)
{
    return log_state.level;
}

void log_set_fd(int fd)
{
    log_state.fd = fd;
}

int log_get_fd(void)
{
    return log_state.fd;
}

static size_t log_timestamp(char *buf, size_t len)
{
    struct timeval tv;
    struct tm tm;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, len - n, ".%03dZ",
                          (int)(tv.tv_usec / 1000));
    return n;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    char line[2048];
    int n, m;

    if (level < log_state.level)
        return;
    n = (int)log_timestamp(line, sizeof(line));
    n += snprintf(line + n, sizeof(line) - (size_t)n, " porticod[%d] %s %s: ",
                  (int)getpid(), log_state.role, conf_log_level_name(level));
    m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    if (m < 0)
        m = 0;
    n += PT_MIN(m, (int)sizeof(line) - n - 2);
    line[n++] = '\n';
    /* One write per line: workers share the fd with O_APPEND. */
    if (write(log_state.fd, line, (size_t)n) < 0) {
        /* Nowhere left to report a failing error log. */
    }
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

int log_open_path(const char *path)
{
    if (strcmp(path, "stderr") == 0)
        return fcntl(2, F_DUPFD_CLOEXEC, 3);
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

/* Copy a view into a log line, escaping quotes, backslashes and bytes
 * outside printable ASCII so a client can't forge log lines. */
static size_t log_escape(char *out, size_t cap, struct pt_str s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    if (s.len == 0 && cap > 1) {
        out[n++] = '-';
        return n;
    }
    for (size_t i = 0; i < s.len && n + 4 < cap; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            out[n++] = (char)c;
            continue;
        }
        out[n++] = '\\';
        out[n++] = 'x';
        out[n++] = hex[c >> 4];
        out[n++] = hex[c & 15];
    }
    return n;
}

/* "[21/Nov/2026:19:30:00 +0000]", formatted once per second. */
static const char *log_clf_time(void)
{
    static char buf[40];
    static time_t last;
    time_t now = time(NULL);

    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof(buf), "[%d/%b/%Y:%H:%M:%S +0000]", &tm);
        last = now;
    }
    return buf;
}

/* A JSON string value: quotes, backslashes and control bytes escaped;
 * bytes past ASCII as \u00XX so the line stays valid JSON whatever the
 * client sent. */
static size_t log_json_str(char *out, size_t cap, struct pt_str s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    out[n++] = '"';
    for (size_t i = 0; i < s.len && n + 8 < cap; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            out[n++] = (char)c;
        } else if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else {
            memcpy(out + n, "\\u00", 4);
            n += 4;
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n++] = '"';
    return n;
}

/* {"time":..,"client":..,"method":..,"path":..,"status":..,"bytes":..,
 *  "request_time":..,"upstream":..,"upstream_time":..,"cache":..,
 *  "request_id":..} on one line. */
static int access_log_json(int fd, const struct access_entry *e,
                           const char *client)
{
    char line[8192], ts[64];
    size_t n = 0;
    const size_t cap = sizeof(line);

    log_timestamp(ts, sizeof(ts));
    n += (size_t)snprintf(line, cap, "{\"time\":\"%s\",\"client\":\"%s\","
                                     "\"method\":",
                          ts, client);
    n += log_json_str(line + n, cap - n - 600, e->method);
    n += (size_t)snprintf(line + n, cap - n, ",\"path\":");
    n += log_json_str(line + n, cap - n - 500, e->target);
    n += (size_t)snprintf(
        line + n, cap - n,
        ",\"status\":%d,\"bytes\":%llu,\"request_time\":%llu.%06llu,"
        "\"upstream\":",
        e->status, (unsigned long long)e->bytes_sent,
        (unsigned long long)(e->duration_us / 1000000),
        (unsigned long long)(e->duration_us % 1000000));
    if (e->upstream)
        n += (size_t)snprintf(line + n, cap - n,
                              "\"%s\",\"upstream_time\":%llu.%06llu",
                              e->upstream,
                              (unsigned long long)(e->upstream_us / 1000000),
                              (unsigned long long)(e->upstream_us % 1000000));
    else
        n += (size_t)snprintf(line + n, cap - n,
                              "null,\"upstream_time\":null");
    if (e->cache)
        n += (size_t)snprintf(line + n, cap - n,
                              ",\"cache\":\"%s\",\"request_id\":", e->cache);
    else
        n += (size_t)snprintf(line + n, cap - n,
                              ",\"cache\":null,\"request_id\":");
    n += log_json_str(line + n, cap - n - 8, e->request_id);
    line[n++] = '}';
    line[n++] = '\n';
    return write(fd, line, n) == (ssize_t)n ? PT_OK : PT_ERROR;
}

int access_log_write(int fd, enum access_format format,
                     const struct access_entry *e)
{
    char line[8192], addr[64];
    size_t n;
    const size_t cap = sizeof(line);

    if (format == ACCESS_OFF || fd < 0)
        return PT_OK;
    pt_addr_format(e->client, addr, sizeof(addr));
    /* The client's address without the port, as combined logs have it. */
    char *colon = strrchr(addr, ':');
    if (colon)
        *colon = '\0';
    if (addr[0] == '[') {
        memmove(addr, addr + 1, strlen(addr));
        addr[strlen(addr) - 1] = '\0';
    }
    if (format == ACCESS_JSON)
        return access_log_json(fd, e, addr);
    n = (size_t)snprintf(line, cap, "%s - - %s \"", addr, log_clf_time());
    if (e->version_minor >= 0) {
        n += log_escape(line + n, cap - n - 512, e->method);
        line[n++] = ' ';
        n += log_escape(line + n, cap - n - 512, e->target);
        n += (size_t)snprintf(line + n, cap - n, " HTTP/1.%d",
                              e->version_minor);
    }
    n += (size_t)snprintf(line + n, cap - n, "\" %d %llu \"", e->status,
                          (unsigned long long)e->bytes_sent);
    n += log_escape(line + n, cap - n - 300, e->referer);
    n += (size_t)snprintf(line + n, cap - n, "\" \"");
    n += log_escape(line + n, cap - n - 40, e->user_agent);
    n += (size_t)snprintf(line + n, cap - n, "\" %llu.%03llu",
                          (unsigned long long)(e->duration_us / 1000000),
                          (unsigned long long)(e->duration_us / 1000 % 1000));
    /* After combined's fields: request time, upstream and its time. */
    if (e->upstream)
        n += (size_t)snprintf(
            line + n, cap - n, " %s %llu.%03llu\n", e->upstream,
            (unsigned long long)(e->upstream_us / 1000000),
            (unsigned long long)(e->upstream_us / 1000 % 1000));
    else
        n += (size_t)snprintf(line + n, cap - n, " - -\n");
    return write(fd, line, n) == (ssize_t)n ? PT_OK : PT_ERROR;
}
