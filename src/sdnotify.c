/*
 * sdnotify.c -- the sd_notify(3) protocol without libsystemd: each
 * message is one datagram of "KEY=value" lines sent on a fresh AF_UNIX
 * SOCK_DGRAM socket to the address in $NOTIFY_SOCKET.  A socket per
 * message keeps nothing open that the workers would inherit.
 * Calls: log.c, libc.  Never: libevent, conf.
 */
#include "sdnotify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "portico.h"

/* systemd reads at most this much of a message; ours are far shorter. */
#define SDNOTIFY_MAX 1024

static struct {
    int inited;
    int enabled;
    int failed; /* a send failed and was logged: stay quiet after that */
    struct sockaddr_un addr;
    socklen_t addrlen;
} sdn;

int sdnotify_init(void)
{
    const char *env;
    size_t len;

    if (sdn.inited)
        return sdn.enabled;
    sdn.inited = 1;
    env = getenv("NOTIFY_SOCKET");
    if (env == NULL || env[0] == '\0')
        return 0;
    len = strlen(env);
    if ((env[0] != '/' && env[0] != '@') || len >= sizeof(sdn.addr.sun_path)) {
        log_warn("NOTIFY_SOCKET \"%s\": not a unix socket address; systemd "
                 "will not be told about readiness",
                 env);
        return 0;
    }
    memset(&sdn.addr, 0, sizeof(sdn.addr));
    sdn.addr.sun_family = AF_UNIX;
    memcpy(sdn.addr.sun_path, env, len);
    if (env[0] == '@')
        sdn.addr.sun_path[0] = '\0'; /* abstract: no terminating NUL */
    else
        len++; /* a path: count its NUL */
    sdn.addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    sdn.enabled = 1;
    return 1;
}

/* Send msg as one datagram.  Failures are logged once. */
static void sdnotify_send(const char *msg, size_t len)
{
    int fd;
    ssize_t n;

    if (!sdnotify_init())
        return;
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        n = -1;
    } else {
        n = sendto(fd, msg, len, MSG_NOSIGNAL,
                   (const struct sockaddr *)&sdn.addr, sdn.addrlen);
        int saved = errno;
        close(fd);
        errno = saved;
    }
    if (n < 0 && !sdn.failed) {
        sdn.failed = 1;
        log_warn("cannot notify systemd (NOTIFY_SOCKET): %s", strerror(errno));
    }
}

/* Append "STATUS=text\n" with any newline in text made a space (one
 * status is one line). */
static size_t sdnotify_put_status(char *buf, size_t off, const char *text)
{
    int n = snprintf(buf + off, SDNOTIFY_MAX - off, "STATUS=%s\n", text);

    if (n < 0)
        return off;
    size_t end = PT_MIN(off + (size_t)n, (size_t)SDNOTIFY_MAX - 1);
    for (size_t i = off + 7; i + 1 < end; i++)
        if (buf[i] == '\n' || buf[i] == '\r')
            buf[i] = ' ';
    buf[end - 1] = '\n';
    return end;
}

void sdnotify_ready(const char *fmt, ...)
{
    char text[SDNOTIFY_MAX / 2], buf[SDNOTIFY_MAX];
    size_t off;
    va_list ap;

    if (!sdnotify_init())
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    off = (size_t)snprintf(buf, sizeof(buf), "READY=1\nMAINPID=%d\n",
                           (int)getpid());
    sdnotify_send(buf, sdnotify_put_status(buf, off, text));
}

void sdnotify_reloading(void)
{
    char buf[SDNOTIFY_MAX];
    struct timespec ts;
    int n;

    if (!sdnotify_init())
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    n = snprintf(buf, sizeof(buf),
                 "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%llu\n",
                 (unsigned long long)ts.tv_sec * 1000000ull +
                     (unsigned long long)ts.tv_nsec / 1000ull);
    sdnotify_send(buf, (size_t)n);
}

void sdnotify_stopping(void)
{
    static const char msg[] = "STOPPING=1\nSTATUS=stopping\n";

    sdnotify_send(msg, sizeof(msg) - 1);
}

void sdnotify_status(const char *fmt, ...)
{
    char text[SDNOTIFY_MAX - 16], buf[SDNOTIFY_MAX];
    va_list ap;

    if (!sdnotify_init())
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    sdnotify_send(buf, sdnotify_put_status(buf, 0, text));
}
