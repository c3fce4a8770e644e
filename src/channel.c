/*
 * channel.c -- master/worker message passing with SCM_RIGHTS.
 * Calls: libc only.
 */
#include "channel.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int channel_pair(int fds[2])
{
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds);
}

int channel_send(int fd, struct channel_msg *msg, const int *fds,
                 size_t nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * CHANNEL_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {msg, sizeof(*msg)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    if (nfds > CHANNEL_MAX_FDS) {
        errno = EMSGSIZE;
        return -1;
    }
    msg->nfds = (uint32_t)nfds;
    if (nfds > 0) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
    }
    for (;;) {
        ssize_t n = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n == (ssize_t)sizeof(*msg))
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

static void channel_close_all(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

int channel_recv(int fd, struct channel_msg *msg, int *fds, size_t maxfds,
                 size_t *nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * CHANNEL_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {msg, sizeof(*msg)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    ssize_t n;

    *nfds = 0;
    do
        n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return n == 0 ? 0 : -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm;
         cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int got[CHANNEL_MAX_FDS];
        memcpy(got, CMSG_DATA(cm), k * sizeof(int));
        for (size_t i = 0; i < k; i++) {
            if (*nfds < maxfds)
                fds[(*nfds)++] = got[i];
            else
                close(got[i]);
        }
    }
    /* A short or truncated message is a broken invariant between our own
     * processes: drop it, and its descriptors, rather than guess. */
    if (n != (ssize_t)sizeof(*msg) || (mh.msg_flags & MSG_CTRUNC) ||
        *nfds != msg->nfds) {
        channel_close_all(fds, *nfds);
        *nfds = 0;
        errno = EPROTO;
        return -1;
    }
    return 1;
}
