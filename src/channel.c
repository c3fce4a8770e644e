/*
 * channel.c -- master/worker message passing with SCM_RIGHTS.
 * Calls: libc only.
 */
#include "channel.h"

#include "conf.h"

#include <errno.h>
#include <stdlib.h>
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

/* ---- generation bundles -------------------------------------------------- */

static const char bundle_magic[4] = {'P', 'T', 'B', '1'};

static int bundle_put(int fd, const void *p, size_t len)
{
    const char *b = p;

    while (len > 0) {
        ssize_t n = write(fd, b, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

static int bundle_put_blob(int fd, const char *p, uint64_t len)
{
    return bundle_put(fd, &len, sizeof(len)) || bundle_put(fd, p, len) ? -1
                                                                       : 0;
}

int channel_bundle_write(int fd, const struct conf *c)
{
    uint64_t n = c->nfiles;

    if (bundle_put(fd, bundle_magic, 4) ||
        bundle_put_blob(fd, c->source, c->source_len) ||
        bundle_put(fd, &n, sizeof(n)))
        return -1;
    for (size_t i = 0; i < c->nfiles; i++)
        if (bundle_put_blob(fd, c->files[i].path, strlen(c->files[i].path)) ||
            bundle_put_blob(fd, c->files[i].data, c->files[i].len))
            return -1;
    return 0;
}

/* A length-prefixed blob at *off; 0, or -1 when it runs past len. */
static int bundle_get_blob(const char *p, size_t len, size_t *off,
                           const char **out, size_t *outlen)
{
    uint64_t n;

    if (len - *off < sizeof(n))
        return -1;
    memcpy(&n, p + *off, sizeof(n));
    *off += sizeof(n);
    if (n > len - *off)
        return -1;
    *out = p + *off;
    *outlen = (size_t)n;
    *off += (size_t)n;
    return 0;
}

int channel_bundle_read(const char *p, size_t len, struct channel_bundle *b)
{
    size_t off = 4, plen;
    uint64_t n;
    const char *path;

    memset(b, 0, sizeof(*b));
    if (len < 4 || memcmp(p, bundle_magic, 4) != 0 ||
        bundle_get_blob(p, len, &off, &b->yaml, &b->yaml_len) ||
        len - off < sizeof(n))
        return -1;
    memcpy(&n, p + off, sizeof(n));
    off += sizeof(n);
    if (n > CHANNEL_MAX_FDS * 64 || !(b->files = calloc(n + 1, sizeof(*b->files))))
        return -1;
    for (; b->nfiles < n; b->nfiles++) {
        struct conf_file *f = &b->files[b->nfiles];
        if (bundle_get_blob(p, len, &off, &path, &plen) ||
            bundle_get_blob(p, len, &off, (const char **)&f->data, &f->len))
            goto fail;
        f->path = strndup(path, plen);
        if (f->path == NULL)
            goto fail;
    }
    return 0;
fail:
    channel_bundle_fini(b);
    return -1;
}

void channel_bundle_fini(struct channel_bundle *b)
{
    for (size_t i = 0; i < b->nfiles; i++)
        free(b->files[i].path);
    free(b->files);
    memset(b, 0, sizeof(*b));
}
