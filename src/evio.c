/*
 * evio.c -- see evio.h.  A bufferevent keeps its input's end and its
 * output's start frozen except while it reads or writes itself; these
 * unfreeze around their own change as it does.
 */
#include "evio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent_struct.h>
#include <event2/event.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#endif
#endif
#ifndef ASAN_POISON_MEMORY_REGION
#define ASAN_POISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif
#include <sys/sendfile.h>
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

ssize_t evio_read(struct evbuffer *in, evutil_socket_t fd, size_t want)
{
    static char buf[EVIO_READ_SMALL]; /* the process's: copied out at once */
    size_t room;
    ssize_t n = recv(fd, buf, want < sizeof(buf) ? want : sizeof(buf), 0);
    ssize_t more;

    if (n <= 0)
        return n;
    evbuffer_unfreeze(in, 0);
    if (evbuffer_add(in, buf, (size_t)n) < 0)
        n = -1, errno = ENOMEM;
    evbuffer_freeze(in, 0);
    if (n != (ssize_t)sizeof(buf) || want <= sizeof(buf))
        return n;
    want -= sizeof(buf);
    more = evio_recv(in, fd, want < EVIO_READ_BULK ? want : EVIO_READ_BULK,
                     &room);
    return more > 0 ? n + more : n;
}

/* The bufferevent's read event: what libevent 2.1's reader does, with
 * evio_read for its read. */
static void on_own_read(evutil_socket_t fd, short what, void *arg)
{
    struct bufferevent *bev = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    bufferevent_data_cb readcb;
    bufferevent_event_cb eventcb;
    void *cbarg;
    size_t low = 0, high = 0, have = evbuffer_get_length(in);
    size_t want = EVIO_READ_SMALL + EVIO_READ_BULK;
    short err = BEV_EVENT_READING;
    ssize_t n;

    bufferevent_getcb(bev, &readcb, NULL, &eventcb, &cbarg);
    if (what == EV_TIMEOUT) {
        err |= BEV_EVENT_TIMEOUT;
        goto fail;
    }
    bufferevent_getwatermark(bev, EV_READ, &low, &high);
    if (high) {
        if (have >= high) {
            /* the mark was lowered under what is held: setting it again
             * suspends reading, as libevent's reader does */
            bufferevent_setwatermark(bev, EV_READ, low, high);
            return;
        }
        if (want > high - have)
            want = high - have;
    }
    n = evio_read(in, fd, want);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        err |= n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR;
        goto fail;
    }
    /* last: the callback may free bev */
    if (readcb && evbuffer_get_length(in) >= low)
        readcb(bev, cbarg);
    return;
fail:
    bufferevent_disable(bev, EV_READ);
    if (eventcb)
        eventcb(bev, err, cbarg);
}

/* bev's event ev (its ev_read or ev_write, for `what`) calls cb from now
 * on; taken out and put back around it if the bufferevent had it in. */
static int evio_take(struct bufferevent *bev, struct event *ev, short what,
                     event_callback_fn cb)
{
    int on = (bufferevent_get_enabled(bev) & what) != 0;
    int rc;

    if (on)
        bufferevent_disable(bev, what);
    rc = event_assign(ev, bufferevent_get_base(bev), bufferevent_getfd(bev),
                      what | EV_PERSIST | EV_FINALIZE, cb, bev);
    if (on)
        bufferevent_enable(bev, what);
    return rc < 0 ? -1 : 0;
}

int evio_own_reads(struct bufferevent *bev)
{
    return evio_take(bev, &bev->ev_read, EV_READ, on_own_read);
}

/* The file evio_send_file registered; none while fd is -1. */
static struct {
    const char *base;
    size_t len, min;
    int fd;
} send_file = {.fd = -1};

void evio_send_file(const void *base, size_t len, int fd, size_t min)
{
    send_file.base = base;
    send_file.len = len;
    send_file.fd = base ? fd : -1;
    send_file.min = min;
}

/* Does piece v go with sendfile? */
static int evio_from_file(const struct evbuffer_iovec *v)
{
    const char *p = v->iov_base;

    return send_file.fd >= 0 && v->iov_len >= send_file.min &&
           p >= send_file.base && p < send_file.base + send_file.len &&
           v->iov_len <= (size_t)(send_file.base + send_file.len - p);
}

/* Piece v with sendfile.  Where the kernel refuses it for this file
 * (not for the socket's sake, as send then shows), it is sent by copy
 * and sendfile is used no more. */
static ssize_t evio_sendfile(evutil_socket_t fd,
                             const struct evbuffer_iovec *v)
{
    off_t at = (const char *)v->iov_base - send_file.base;
    ssize_t n = sendfile(fd, send_file.fd, &at, v->iov_len);

    if (n >= 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return n;
    n = send(fd, v->iov_base, v->iov_len, MSG_NOSIGNAL);
    if (n >= 0)
        send_file.fd = -1;
    return n;
}

/* Pieces v[0..nv) by copy; more says a piece follows at once (sendfile's,
 * so that the head before it waits to share its packets). */
static ssize_t evio_sendv(evutil_socket_t fd, const struct evbuffer_iovec *v,
                          int nv, int more)
{
    struct iovec iov[EVIO_SEND_IOV];
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)nv};
    int flags = MSG_NOSIGNAL | (more ? MSG_MORE : 0);

    if (nv == 1)
        return send(fd, v[0].iov_base, v[0].iov_len, flags);
    for (int i = 0; i < nv; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len;
    }
    return sendmsg(fd, &m, flags);
}

/* evio_send_now; *err gets 0, or the errno of a call that failed for
 * another reason than a full socket. */
static size_t evio_send(struct evbuffer *out, evutil_socket_t fd, int *err)
{
    *err = 0;
    for (;;) {
        struct evbuffer_iovec v[EVIO_SEND_IOV];
        int nv = evbuffer_peek(out, -1, NULL, v, EVIO_SEND_IOV), k = 0;
        size_t offered = 0;
        ssize_t n;

        if (nv <= 0)
            break;
        if (nv > EVIO_SEND_IOV)
            nv = EVIO_SEND_IOV;
        while (k < nv && !evio_from_file(&v[k]))
            offered += v[k++].iov_len;
        if (k == 0) {
            offered = v[0].iov_len;
            n = evio_sendfile(fd, &v[0]);
        } else {
            n = evio_sendv(fd, v, k, k < nv);
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            *err = errno;
        if (n <= 0)
            break;
        /* a piece's last bytes drained may let its owner reuse them:
         * sendfile's pages are the owner's to keep (evio_send_file) */
        evbuffer_unfreeze(out, 1);
        evbuffer_drain(out, (size_t)n);
        evbuffer_freeze(out, 1);
        if ((size_t)n < offered)
            break;
    }
    return evbuffer_get_length(out);
}

size_t evio_send_now(struct evbuffer *out, evutil_socket_t fd)
{
    int err;

    return evio_send(out, fd, &err);
}

/* The bufferevent's write event: what libevent 2.1's writer does, with
 * evio_send for its writes. */
static void on_own_write(evutil_socket_t fd, short what, void *arg)
{
    struct bufferevent *bev = arg;
    struct evbuffer *out = bufferevent_get_output(bev);
    bufferevent_data_cb writecb;
    bufferevent_event_cb eventcb;
    void *cbarg;
    size_t low = 0, high = 0, before = evbuffer_get_length(out), left = 0;
    short ev = BEV_EVENT_WRITING;
    int err = 0;

    bufferevent_getcb(bev, NULL, &writecb, &eventcb, &cbarg);
    if (what == EV_TIMEOUT) {
        ev |= BEV_EVENT_TIMEOUT;
        goto fail;
    }
    if (before > 0) {
        left = evio_send(out, fd, &err);
        if (left == before && !err)
            return; /* the socket is full: the next turn */
        if (left == before) {
            ev |= BEV_EVENT_ERROR;
            goto fail;
        }
    }
    if (left == 0)
        event_del(&bev->ev_write);
    bufferevent_getwatermark(bev, EV_WRITE, &low, &high);
    /* last: the callback may free bev */
    if (writecb && left <= low)
        writecb(bev, cbarg);
    return;
fail:
    bufferevent_disable(bev, EV_WRITE);
    if (err)
        errno = err; /* for the event callback, as libevent leaves it */
    if (eventcb)
        eventcb(bev, ev, cbarg);
}

int evio_own_writes(struct bufferevent *bev)
{
    return evio_take(bev, &bev->ev_write, EV_WRITE, on_own_write);
}

/* ---- libevent's memory ---------------------------------------------- */

/*
 * Every block carries a 16-byte header: the bytes its caller may use,
 * and its class.  Requests of 513 B to 64 KB are rounded up to a power
 * of two, their class; a freed block of a class waits on that class's
 * list, up to EVIO_MEM_KEEP of them, for the next request of the class.
 * Smaller and larger requests go to malloc as they are (class 0).
 */
#define EVIO_MEM_MIN 10 /* 1 KB */
#define EVIO_MEM_MAX 16 /* 64 KB */
struct evio_mem_hdr {
    size_t size;
    size_t cls;
};

static void *mem_kept[EVIO_MEM_MAX + 1][EVIO_MEM_KEEP];
static unsigned mem_nkept[EVIO_MEM_MAX + 1];

static size_t mem_class(size_t n)
{
    size_t c = EVIO_MEM_MIN;

    if (n <= ((size_t)1 << EVIO_MEM_MIN) / 2 || n > (size_t)1 << EVIO_MEM_MAX)
        return 0;
    while (((size_t)1 << c) < n)
        c++;
    return c;
}

void *evio_mem_alloc(size_t n)
{
    size_t c = mem_class(n);
    struct evio_mem_hdr *h;

    if (c && mem_nkept[c]) {
        void *p = mem_kept[c][--mem_nkept[c]];
        ASAN_UNPOISON_MEMORY_REGION(p, (size_t)1 << c);
        return p;
    }
    h = malloc(sizeof(*h) + (c ? (size_t)1 << c : n));
    if (h == NULL)
        return NULL;
    h->size = c ? (size_t)1 << c : n;
    h->cls = c;
    return h + 1;
}

void evio_mem_free(void *p)
{
    struct evio_mem_hdr *h;

    if (p == NULL)
        return;
    h = (struct evio_mem_hdr *)p - 1;
    if (h->cls && mem_nkept[h->cls] < EVIO_MEM_KEEP) {
        mem_kept[h->cls][mem_nkept[h->cls]++] = p;
        ASAN_POISON_MEMORY_REGION(p, h->size); /* a use after free shows */
    } else {
        free(h);
    }
}

void *evio_mem_realloc(void *p, size_t n)
{
    struct evio_mem_hdr *h;
    void *q;

    if (p == NULL)
        return evio_mem_alloc(n);
    h = (struct evio_mem_hdr *)p - 1;
    if (n <= h->size)
        return p;
    q = evio_mem_alloc(n);
    if (q == NULL)
        return NULL;
    memcpy(q, p, h->size);
    evio_mem_free(p);
    return q;
}

void evio_mem_init(void)
{
    event_set_mem_functions(evio_mem_alloc, evio_mem_realloc, evio_mem_free);
}
