/*
 * listener.c -- listening sockets.  Calls: util.c.
 */
#include "listener.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
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

/* ---- one wake-up per connection ---------------------------------------- */

/*
 * Every worker's epoll set holds the same listening socket.  Registered
 * plainly, a connection that arrives while the workers sleep wakes them
 * all, and all but one find accept() empty: with two idle workers, 2.65
 * wake-ups per connection, 1.81 with this (bench/NOTES.md, entry 24).
 * EPOLLEXCLUSIVE wakes one sleeper only.  libevent 2.1 has no
 * flag for it and keeps its epoll descriptor to itself, so once libevent
 * has registered the socket, the registration is replaced, in the same
 * set, by one with the same events and data (libevent 2.1's epoll back
 * end: EPOLLIN, data.fd) plus EPOLLEXCLUSIVE.  libevent only ever
 * deletes it again (evconnlistener_disable, _free), which works on an
 * exclusive entry; it never modifies it, as nothing else waits on the fd.
 */

static int wake_epfd = -1; /* the set found, kept: one loop per process */

/* Whether /proc/self/fdinfo/<epfd> lists fd, with the inode ino. */
static int epoll_set_lists(int epfd, int fd, unsigned long ino)
{
    char path[64], line[256];
    int found = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", epfd);
    f = fopen(path, "re");
    if (f == NULL)
        return 0;
    while (!found && fgets(line, sizeof(line), f)) {
        /* "tfd:        7 events:       19 data: 7  pos:0 ino:2b1a ..." */
        const char *i = strstr(line, " ino:");
        int tfd;

        if (sscanf(line, "tfd: %d", &tfd) == 1 && tfd == fd && i &&
            strtoul(i + 5, NULL, 16) == ino)
            found = 1;
    }
    fclose(f);
    return found;
}

/*
 * The epoll set of this process that holds fd: the event loop's, as
 * the loop has just registered the socket.  -1 when none does (no /proc,
 * or a libevent that defers its changes).
 */
static int epoll_set_of(int fd)
{
    struct stat st;
    struct dirent *de;
    int epfd = -1;
    DIR *d;

    if (fstat(fd, &st) < 0 || (d = opendir("/proc/self/fd")) == NULL)
        return -1;
    while (epfd < 0 && (de = readdir(d)) != NULL) {
        char path[64], target[32];
        int n = atoi(de->d_name);
        ssize_t len;

        if (de->d_name[0] == '.' || n == dirfd(d))
            continue;
        snprintf(path, sizeof(path), "/proc/self/fd/%d", n);
        len = readlink(path, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (strcmp(target, "anon_inode:[eventpoll]") == 0 &&
            epoll_set_lists(n, fd, (unsigned long)st.st_ino))
            epfd = n;
    }
    closedir(d);
    return epfd;
}

int listener_wake_one(int fd)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof(ev));
    if (wake_epfd < 0 || epoll_ctl(wake_epfd, EPOLL_CTL_DEL, fd, &ev) < 0) {
        wake_epfd = epoll_set_of(fd);
        if (wake_epfd < 0 || epoll_ctl(wake_epfd, EPOLL_CTL_DEL, fd, &ev) < 0)
            return -1; /* left as the loop registered it */
    }
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.fd = fd;
    if (epoll_ctl(wake_epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        return 0;
    /* A kernel without EPOLLEXCLUSIVE (before 4.5): as it was. */
    ev.events = EPOLLIN;
    if (epoll_ctl(wake_epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        return -1;
    return -2;
}
