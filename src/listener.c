/*
 * listener.c -- listening sockets.  Calls: util.c.
 */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include "util.h"

int listener_open(const struct conf_listener *l)
{
    int one = 1, saved;
    int fd = socket(l->addr.ss_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        goto fail;
    if (l->addr.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        goto fail;
    /* Linux copies TCP_NODELAY from the listening socket to each one it
     * accepts: set here, it costs no system call per connection. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        goto fail;
    if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) < 0)
        goto fail;
    if (listen(fd, l->backlog) < 0)
        goto fail;
    return fd;
fail:
    saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

const char *listener_bound_name(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        snprintf(buf, len, "?");
        return buf;
    }
    return pt_addr_format((struct sockaddr *)&ss, buf, len);
}
