/*
 * evio.c -- see evio.h.  A bufferevent keeps its input's end and its
 * output's start frozen except while it reads or writes itself; these
 * unfreeze around their own change as it does.
 */
#include "evio.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* evio_send_now's most pieces per call */
#define EVIO_SEND_IOV 16

ssize_t evio_recv(struct evbuffer *in, evutil_socket_t fd, size_t want,
                  size_t *room)
{
    struct evbuffer_iovec v;
    ssize_t n = -1;

    *room = 0;
    evbuffer_unfreeze(in, 0);
    if (evbuffer_reserve_space(in, (ev_ssize_t)want, &v, 1) == 1) {
        *room = v.iov_len;
        n = recv(fd, v.iov_base, v.iov_len, 0);
        if (n > 0) {
            v.iov_len = (size_t)n;
            evbuffer_commit_space(in, &v, 1);
        }
    } else {
        errno = ENOMEM;
    }
    evbuffer_freeze(in, 0);
    return n;
}

size_t evio_send_now(struct evbuffer *out, evutil_socket_t fd)
{
    struct evbuffer_iovec v[EVIO_SEND_IOV];
    struct iovec iov[EVIO_SEND_IOV];
    int nv = evbuffer_peek(out, -1, NULL, v, EVIO_SEND_IOV);
    ssize_t n;

    if (nv <= 0)
        return evbuffer_get_length(out);
    if (nv > EVIO_SEND_IOV)
        nv = EVIO_SEND_IOV;
    if (nv == 1) {
        n = send(fd, v[0].iov_base, v[0].iov_len, MSG_NOSIGNAL);
    } else {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)nv};
        for (int i = 0; i < nv; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
        }
        n = sendmsg(fd, &m, MSG_NOSIGNAL);
    }
    if (n > 0) {
        evbuffer_unfreeze(out, 1);
        evbuffer_drain(out, (size_t)n);
        evbuffer_freeze(out, 1);
    }
    return evbuffer_get_length(out);
}
