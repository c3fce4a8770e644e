/*
 * check_evio.c -- evio_recv and evio_send_now over a socketpair: bytes
 * land whole and in order, EOF and an empty socket are told apart, a
 * full socket leaves the rest queued, and a buffer kept frozen the way
 * a bufferevent keeps it is frozen again afterwards.  And libevent's
 * memory: blocks as big as asked for, reused by class, at most
 * EVIO_MEM_KEEP kept, realloc keeping the bytes.  The suite runs with
 * evio_mem_init installed, as porticod does, so every evbuffer above
 * lives in those blocks.  Last, a connection accepted on a socket from
 * listener_open has TCP_NODELAY without setting it itself, and
 * listener_wake_one makes a loop's registration exclusive, or says what
 * it left when the kernel refuses (epoll_ctl below fails on demand).
 * And evio_own_reads: a bufferevent read by evio_read, with libevent's
 * callbacks, watermarks and timeout, and no ioctl (counted below).
 */
#include <check.h>
#include <stdarg.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "conf.h"
#include "evio.h"
#include "listener.h"

static int sv[2];

/* epoll_ctl, as libevent and listener.c call it in this program: the
 * next epoll_add_fail EPOLL_CTL_ADDs fail with ENOMEM, the rest go to
 * the kernel. */
static int epoll_add_fail;

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    if (op == EPOLL_CTL_ADD && epoll_add_fail > 0) {
        epoll_add_fail--;
        errno = ENOMEM;
        return -1;
    }
    return (int)syscall(SYS_epoll_ctl, epfd, op, fd, ev);
}

/* ioctl, counting FIONREAD: libevent's reader asks it before each read. */
static int fionread_calls;

int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    void *arg;

    va_start(ap, req);
    arg = va_arg(ap, void *);
    va_end(ap);
    if (req == FIONREAD)
        fionread_calls++;
    return (int)syscall(SYS_ioctl, fd, req, arg);
}

/* sendfile, counted: evio_send_now's pieces from a registered file. */
static int sendfile_calls;

ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    sendfile_calls++;
    return (ssize_t)syscall(SYS_sendfile, out_fd, in_fd, offset, count);
}

static void pair_open(void)
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv),
                     0);
}

static void pair_close(void)
{
    close(sv[0]);
    close(sv[1]);
}

START_TEST(test_recv)
{
    struct evbuffer *in = evbuffer_new();
    size_t room = 0;
    char got[64];

    pair_open();
    evbuffer_add(in, "ab", 2);
    evbuffer_freeze(in, 0); /* as a bufferevent keeps its input */
    /* nothing there yet: -1, EAGAIN, nothing added */
    ck_assert_int_eq(evio_recv(in, sv[0], 4096, &room), -1);
    ck_assert(errno == EAGAIN || errno == EWOULDBLOCK);
    ck_assert_uint_eq(evbuffer_get_length(in), 2);
    ck_assert_int_eq(write(sv[1], "cdefgh", 6), 6);
    ck_assert_int_eq(evio_recv(in, sv[0], 4096, &room), 6);
    ck_assert_uint_ge(room, 4096);
    ck_assert_uint_eq(evbuffer_get_length(in), 8);
    ck_assert_int_eq(evbuffer_copyout(in, got, sizeof(got)), 8);
    ck_assert(memcmp(got, "abcdefgh", 8) == 0);
    /* frozen again: adding to the end fails */
    ck_assert_int_eq(evbuffer_add(in, "x", 1), -1);
    /* room: what the recv was offered, at least what was asked for */
    ck_assert_int_eq(write(sv[1], "0123456789", 10), 10);
    ssize_t n = evio_recv(in, sv[0], 4, &room);
    ck_assert_uint_ge(room, 4);
    ck_assert_int_eq(n, room < 10 ? (ssize_t)room : 10);
    close(sv[1]);
    while (evio_recv(in, sv[0], 4096, &room) > 0)
        ;
    ck_assert_int_eq(evio_recv(in, sv[0], 4096, &room), 0); /* EOF */
    ck_assert_uint_eq(evbuffer_get_length(in), 18);
    close(sv[0]);
    evbuffer_free(in);
}
END_TEST

START_TEST(test_send_now)
{
    struct evbuffer *out = evbuffer_new();
    char piece[3][100], got[400];
    size_t total = 0;

    pair_open();
    for (int i = 0; i < 3; i++) {
        memset(piece[i], 'a' + i, sizeof(piece[i]));
        /* three chains, sent with one sendmsg */
        evbuffer_add_reference(out, piece[i], sizeof(piece[i]), NULL, NULL);
    }
    evbuffer_freeze(out, 1); /* as a bufferevent keeps its output */
    ck_assert_uint_eq(evio_send_now(out, sv[0]), 0);
    ck_assert_int_eq(read(sv[1], got, sizeof(got)), 300);
    for (int i = 0; i < 300; i++)
        ck_assert_int_eq(got[i], 'a' + i / 100);
    ck_assert_int_eq(evbuffer_prepend(out, "x", 1), -1); /* frozen again */
    evbuffer_unfreeze(out, 1);

    /* more than the socket takes: the rest stays queued, in order */
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    char *big = malloc(1 << 20);
    for (size_t i = 0; i < (1u << 20); i++)
        big[i] = (char)(i * 7);
    evbuffer_add(out, big, 1 << 20);
    size_t left = evio_send_now(out, sv[0]);
    ck_assert_uint_gt(left, 0);
    ck_assert_uint_lt(left, 1u << 20);
    for (;;) {
        ssize_t n = read(sv[1], got, sizeof(got));
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            ck_assert_int_eq(got[i], (char)((total + (size_t)i) * 7));
        total += (size_t)n;
    }
    ck_assert_uint_eq(total + left, 1u << 20);
    free(big);
    pair_close();
    evbuffer_free(out);
}
END_TEST

/* Read exactly len bytes from a blocking fd into a new buffer. */
static char *read_exactly(int fd, size_t len)
{
    char *got = malloc(len + 1);
    size_t have = 0;

    while (have < len) {
        ssize_t n = read(fd, got + have, len - have);
        ck_assert_int_gt(n, 0);
        have += (size_t)n;
    }
    return got;
}

/* A memfd of len bytes mapped whole, filled with a pattern; *fd gets it. */
static char *file_mapped(size_t len, int *fd)
{
    char *f;

    *fd = memfd_create("check_evio", 0);
    ck_assert_int_ge(*fd, 0);
    ck_assert_int_eq(ftruncate(*fd, (off_t)len), 0);
    f = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
    ck_assert_ptr_ne(f, MAP_FAILED);
    for (size_t i = 0; i < len; i++)
        f[i] = (char)(i * 13 + 1);
    return f;
}

/* Pieces of a registered file go with sendfile, at their offset, in
 * order among the copied ones; short pieces, pieces of other memory and
 * everything once the file is unregistered are copied. */
START_TEST(test_send_file)
{
    const size_t flen = 256 * 1024, min = 64 * 1024;
    int mfd, sndbuf = 1 << 20;
    char *f = file_mapped(flen, &mfd), *other = malloc(min);
    char *want = malloc(2 * flen), *got;
    size_t wl = 0;

    memset(other, 'o', min);
    evio_send_file(f, flen, mfd, min);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf));

    for (int round = 0; round < 2; round++) {
        struct evbuffer *out = evbuffer_new();
        struct {
            const char *p;
            size_t len;
        } piece[] = {
            {"head\r\n", 6},         /* copied: not the file's */
            {f + 1000, min + 5},      /* the file's, long enough */
            {f + 100, min - 1},       /* the file's, too short */
            {other, min},             /* long, not the file's */
            {f + flen - min, min},    /* the file's, to its very end */
        };
        int calls = sendfile_calls;
        wl = 0;
        for (size_t i = 0; i < sizeof(piece) / sizeof(piece[0]); i++) {
            evbuffer_add_reference(out, piece[i].p, piece[i].len, NULL, NULL);
            memcpy(want + wl, piece[i].p, piece[i].len);
            wl += piece[i].len;
        }
        evbuffer_freeze(out, 1);
        ck_assert_uint_eq(evio_send_now(out, sv[0]), 0);
        got = read_exactly(sv[1], wl);
        ck_assert(memcmp(got, want, wl) == 0);
        free(got);
        /* two from the file, then none once it is unregistered */
        ck_assert_int_eq(sendfile_calls - calls, round == 0 ? 2 : 0);
        evio_send_file(NULL, 0, -1, 0);
        evbuffer_free(out);
    }
    pair_close();
    munmap(f, flen);
    close(mfd);
    free(other);
    free(want);
}
END_TEST

/* Fill all n bytes: under ASan a block smaller than asked would show. */
static void *mem_fill(size_t n, int v)
{
    void *p = evio_mem_alloc(n);

    ck_assert_ptr_nonnull(p);
    memset(p, v, n);
    return p;
}

/* A listening socket on 127.0.0.1, any port; *bound gets its address. */
static int loopback_listener(struct sockaddr_storage *bound, socklen_t *bl)
{
    struct conf_listener l;
    struct sockaddr_in *a = (struct sockaddr_in *)&l.addr;
    int fd;

    memset(&l, 0, sizeof(l));
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l.addrlen = sizeof(*a);
    l.backlog = 8;
    fd = listener_open(&l);
    ck_assert_int_ge(fd, 0);
    *bl = sizeof(*bound);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)bound, bl), 0);
    return fd;
}

/* conn.c sets no TCP_NODELAY per connection: it comes from the
 * listening socket, which Linux copies to each accepted one. */
START_TEST(test_listener_nodelay)
{
    struct sockaddr_storage bound;
    socklen_t bl;
    int lfd, cfd, afd, v = 0;
    socklen_t vl = sizeof(v);

    lfd = loopback_listener(&bound, &bl);
    cfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(cfd, 0);
    ck_assert_int_eq(connect(cfd, (struct sockaddr *)&bound, bl), 0);
    /* the listener is non-blocking; loopback's handshake is done by now
     * (connect returned), but allow the queue a moment */
    for (int i = 0; (afd = accept(lfd, NULL, NULL)) < 0 && i < 100; i++)
        usleep(10000);
    ck_assert_int_ge(afd, 0);
    ck_assert_int_eq(getsockopt(afd, IPPROTO_TCP, TCP_NODELAY, &v, &vl), 0);
    ck_assert_int_ne(v, 0);
    close(afd);
    close(cfd);
    close(lfd);
}
END_TEST

/* The events this process's epoll sets hold fd with, or -1: none does. */
static long epoll_events_of(int fd)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    long found = -1;

    ck_assert_ptr_nonnull(d);
    while (found < 0 && (de = readdir(d)) != NULL) {
        char path[300], target[64], line[256];
        ssize_t n;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
        n = readlink(path, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strcmp(target, "anon_inode:[eventpoll]") != 0)
            continue;
        snprintf(path, sizeof(path), "/proc/self/fdinfo/%s", de->d_name);
        f = fopen(path, "r");
        if (f == NULL)
            continue;
        while (fgets(line, sizeof(line), f)) {
            int tfd;
            unsigned long ev;
            if (sscanf(line, "tfd: %d events: %lx", &tfd, &ev) == 2 &&
                tfd == fd)
                found = (long)ev;
        }
        fclose(f);
    }
    closedir(d);
    return found;
}

static void on_conn_count(struct evconnlistener *l, evutil_socket_t fd,
                          struct sockaddr *sa, int salen, void *arg)
{
    (*(int *)arg)++;
    close(fd);
}

/* Connect to a listener on base, and run base until it accepted:
 * *accepted is on_conn_count's count.  Returns the client's socket. */
static int connect_accepted(struct event_base *base,
                            const struct sockaddr_storage *bound,
                            socklen_t bl, const int *accepted)
{
    int cfd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(cfd, 0);
    ck_assert_int_eq(connect(cfd, (const struct sockaddr *)bound, bl), 0);
    for (int i = 0; *accepted == 0 && i < 100; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(10000);
    }
    ck_assert_int_eq(*accepted, 1);
    return cfd;
}

/* The listener's registration in the loop's epoll set becomes exclusive,
 * survives libevent taking it out and putting it back, and still
 * dispatches; a socket no loop holds is left alone. */
START_TEST(test_listener_wake_one)
{
    struct event_base *base = event_base_new();
    struct sockaddr_storage bound, other_bound;
    socklen_t bl, obl;
    struct evconnlistener *l;
    int lfd, other, cfd, accepted = 0;

    ck_assert_ptr_nonnull(base);
    lfd = loopback_listener(&bound, &bl);
    other = loopback_listener(&other_bound, &obl);
    l = evconnlistener_new(base, on_conn_count, &accepted, 0, 0, lfd);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_ge(epoll_events_of(lfd), 0);
    ck_assert_int_eq(epoll_events_of(lfd) & EPOLLEXCLUSIVE, 0);

    ck_assert_int_eq(listener_wake_one(lfd), 0);
    ck_assert_int_ne(epoll_events_of(lfd) & EPOLLEXCLUSIVE, 0);
    ck_assert_int_ne(epoll_events_of(lfd) & EPOLLIN, 0);

    evconnlistener_disable(l);
    ck_assert_int_eq(epoll_events_of(lfd), -1);
    evconnlistener_enable(l);
    ck_assert_int_eq(epoll_events_of(lfd) & EPOLLEXCLUSIVE, 0);
    ck_assert_int_eq(listener_wake_one(lfd), 0); /* the set found before */
    ck_assert_int_ne(epoll_events_of(lfd) & EPOLLEXCLUSIVE, 0);

    ck_assert_int_eq(listener_wake_one(other), -1);
    ck_assert_int_eq(epoll_events_of(other), -1);

    cfd = connect_accepted(base, &bound, bl, &accepted);

    close(cfd);
    evconnlistener_free(l);
    close(lfd);
    close(other);
    event_base_free(base);
}
END_TEST

/* The kernel refuses the exclusive registration: the plain one is put
 * back (-1).  It refuses that too: the socket is in no set (-2), and
 * libevent registers it again when the listener is disabled and enabled,
 * as the worker does then. */
START_TEST(test_listener_wake_refused)
{
    struct event_base *base = event_base_new();
    struct sockaddr_storage bound;
    socklen_t bl;
    struct evconnlistener *l;
    int lfd, cfd, accepted = 0;

    ck_assert_ptr_nonnull(base);
    lfd = loopback_listener(&bound, &bl);
    l = evconnlistener_new(base, on_conn_count, &accepted, 0, 0, lfd);
    ck_assert_ptr_nonnull(l);

    epoll_add_fail = 1;
    ck_assert_int_eq(listener_wake_one(lfd), -1);
    ck_assert_int_eq(epoll_add_fail, 0);
    ck_assert_int_eq(epoll_events_of(lfd) & EPOLLEXCLUSIVE, 0);
    ck_assert_int_ne(epoll_events_of(lfd) & EPOLLIN, 0);

    epoll_add_fail = 2;
    ck_assert_int_eq(listener_wake_one(lfd), -2);
    ck_assert_int_eq(epoll_events_of(lfd), -1);

    evconnlistener_disable(l);
    evconnlistener_enable(l);
    ck_assert_int_ne(epoll_events_of(lfd) & EPOLLIN, 0);
    ck_assert_int_eq(listener_wake_one(lfd), 0); /* and now it may */
    ck_assert_int_ne(epoll_events_of(lfd) & EPOLLEXCLUSIVE, 0);

    cfd = connect_accepted(base, &bound, bl, &accepted);

    close(cfd);
    evconnlistener_free(l);
    close(lfd);
    event_base_free(base);
}
END_TEST

/* What a bufferevent's callbacks saw. */
struct seen {
    int reads;       /* read callbacks */
    size_t first;    /* bytes held at the first */
    size_t taken;    /* bytes the read callback drained, in all */
    short events;    /* the event callback's flags, or 0 */
    int drain;       /* the read callback drains the input */
    unsigned char next; /* the byte expected next */
    int in_order;
    int writes;      /* write callbacks */
    int err;         /* errno at the event callback */
    size_t out_left; /* the output's bytes at the last */
};

static void on_seen_read(struct bufferevent *bev, void *arg)
{
    struct seen *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    unsigned char b[4096];

    if (s->reads++ == 0)
        s->first = n;
    while (s->drain && n > 0) {
        size_t k = n < sizeof(b) ? n : sizeof(b);
        ck_assert_int_eq(evbuffer_remove(in, b, k), (int)k);
        for (size_t i = 0; i < k; i++)
            s->in_order &= b[i] == s->next++;
        s->taken += k;
        n -= k;
    }
}

static void on_seen_event(struct bufferevent *bev, short what, void *arg)
{
    ((struct seen *)arg)->events = what;
    ((struct seen *)arg)->err = errno;
}

static void on_seen_write(struct bufferevent *bev, void *arg)
{
    struct seen *s = arg;

    s->writes++;
    s->out_left = evbuffer_get_length(bufferevent_get_output(bev));
}

static struct bufferevent *own_reader(struct event_base *base,
                                      struct seen *s)
{
    struct bufferevent *bev = bufferevent_socket_new(base, sv[0], 0);

    ck_assert_ptr_nonnull(bev);
    memset(s, 0, sizeof(*s));
    s->in_order = 1;
    bufferevent_setcb(bev, on_seen_read, NULL, on_seen_event, s);
    bufferevent_enable(bev, EV_READ);
    ck_assert_int_eq(evio_own_reads(bev), 0);
    ck_assert_int_ne(bufferevent_get_enabled(bev) & EV_READ, 0);
    return bev;
}

static void turns(struct event_base *base, int n)
{
    for (int i = 0; i < n; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(2000);
    }
}

/* Writes on the write event (evio_own_writes): what the socket does not
 * take at once goes turn by turn, in order, a registered file's piece
 * with sendfile each turn; the write callback comes once, drained; the
 * write timeout and a failed write reach the event callback with
 * writing off. */
START_TEST(test_own_writes)
{
    struct event_base *base = event_base_new();
    const size_t flen = 512 * 1024;
    int mfd, small = 4096;
    char *f = file_mapped(flen, &mfd), *got = malloc(flen + 4);
    struct timeval tv = {0, 50000};
    struct bufferevent *bev;
    struct seen s;
    size_t have = 0;

    signal(SIGPIPE, SIG_IGN); /* as the worker: sendfile has no MSG_NOSIGNAL */
    evio_send_file(f, flen, mfd, 64 * 1024);
    pair_open();
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    bev = bufferevent_socket_new(base, sv[0], 0); /* writing on */
    ck_assert_ptr_nonnull(bev);
    memset(&s, 0, sizeof(s));
    bufferevent_setcb(bev, NULL, on_seen_write, on_seen_event, &s);
    ck_assert_int_eq(evio_own_writes(bev), 0);
    ck_assert_int_ne(bufferevent_get_enabled(bev) & EV_WRITE, 0);

    sendfile_calls = 0;
    bufferevent_write(bev, "head", 4);
    evbuffer_add_reference(bufferevent_get_output(bev), f, flen, NULL, NULL);
    for (int i = 0; have < flen + 4 && i < 20000; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        ssize_t n = read(sv[1], got + have, flen + 4 - have);
        if (n > 0)
            have += (size_t)n;
    }
    ck_assert_uint_eq(have, flen + 4);
    ck_assert(memcmp(got, "head", 4) == 0 && memcmp(got + 4, f, flen) == 0);
    ck_assert_int_gt(sendfile_calls, 1); /* turn after turn */
    turns(base, 2);
    ck_assert_int_eq(s.writes, 1);
    ck_assert_uint_eq(s.out_left, 0);
    ck_assert_int_eq(s.events, 0);

    /* nobody reads: the write timeout */
    bufferevent_set_timeouts(bev, NULL, &tv);
    evbuffer_add_reference(bufferevent_get_output(bev), f, flen, NULL, NULL);
    for (int i = 0; s.events == 0 && i < 200; i++)
        turns(base, 1);
    ck_assert_int_eq(s.events, BEV_EVENT_WRITING | BEV_EVENT_TIMEOUT);
    ck_assert_int_eq(bufferevent_get_enabled(bev) & EV_WRITE, 0);

    /* the reader is gone: the write fails */
    close(sv[1]);
    s.events = 0;
    bufferevent_enable(bev, EV_WRITE);
    for (int i = 0; s.events == 0 && i < 200; i++)
        turns(base, 1);
    ck_assert_int_eq(s.events, BEV_EVENT_WRITING | BEV_EVENT_ERROR);
    ck_assert_int_eq(s.err, EPIPE); /* why, as libevent's writer leaves it */
    ck_assert_int_eq(bufferevent_get_enabled(bev) & EV_WRITE, 0);

    evio_send_file(NULL, 0, -1, 0);
    bufferevent_free(bev);
    close(sv[0]);
    event_base_free(base);
    munmap(f, flen);
    close(mfd);
    free(got);
}
END_TEST

/* Bytes arrive whole and in order, more than libevent's 4 KB a turn,
 * without FIONREAD; EOF reaches the event callback and stops reading. */
START_TEST(test_own_reads)
{
    struct event_base *base = event_base_new();
    static unsigned char big[200 * 1024];
    struct bufferevent *bev;
    struct seen s;
    size_t sent = 0;

    pair_open();
    ck_assert_int_eq(fcntl(sv[1], F_SETFL, 0), 0); /* the writer blocks */
    bev = own_reader(base, &s);
    s.drain = 1;
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (unsigned char)i;
    fionread_calls = 0;
    ck_assert_int_eq(write(sv[1], big, 100), 100);
    turns(base, 3);
    ck_assert_int_eq(s.reads, 1);
    ck_assert_uint_eq(s.first, 100);

    /* a stream: the writer fills the socket while the loop reads */
    s.reads = 0;
    s.next = 0;
    while (sent < sizeof(big)) {
        ssize_t n = send(sv[1], big + sent,
                         sizeof(big) - sent, MSG_DONTWAIT);
        if (n > 0)
            sent += (size_t)n;
        turns(base, 1);
    }
    turns(base, 5);
    ck_assert_uint_eq(s.taken, 100 + sizeof(big));
    ck_assert(s.in_order);
    ck_assert_uint_gt(s.first, 4096); /* libevent reads 4 KB a turn */
    ck_assert_int_eq(fionread_calls, 0);

    close(sv[1]);
    turns(base, 3);
    ck_assert_int_eq(s.events, BEV_EVENT_READING | BEV_EVENT_EOF);
    ck_assert_int_eq(bufferevent_get_enabled(bev) & EV_READ, 0);

    bufferevent_free(bev);
    close(sv[0]);
    event_base_free(base);
}
END_TEST

/* The read high watermark bounds what is held; reading resumes once
 * the callback's owner drains it.  The read timeout reaches the event
 * callback and stops reading. */
START_TEST(test_own_reads_marks)
{
    struct event_base *base = event_base_new();
    struct timeval tv = {0, 30 * 1000};
    char b[5000];
    struct bufferevent *bev;
    struct seen s;

    pair_open();
    bev = own_reader(base, &s);
    bufferevent_setwatermark(bev, EV_READ, 0, 1000);
    memset(b, 'x', sizeof(b));
    ck_assert_int_eq(write(sv[1], b, sizeof(b)), (int)sizeof(b));
    turns(base, 5);
    ck_assert_uint_eq(evbuffer_get_length(bufferevent_get_input(bev)), 1000);
    ck_assert_int_eq(s.reads, 1);
    evbuffer_drain(bufferevent_get_input(bev), 1000); /* resumes */
    turns(base, 5);
    ck_assert_uint_eq(evbuffer_get_length(bufferevent_get_input(bev)), 1000);
    ck_assert_int_eq(s.reads, 2);
    ck_assert_int_eq(s.events, 0);

    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    evbuffer_drain(bufferevent_get_input(bev), 1000);
    s.drain = 1;
    turns(base, 5); /* the other 3000 */
    ck_assert_uint_eq(s.taken, 3000);
    bufferevent_set_timeouts(bev, &tv, NULL);
    for (int i = 0; i < 100 && s.events == 0; i++)
        turns(base, 1);
    ck_assert_int_eq(s.events, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
    ck_assert_int_eq(bufferevent_get_enabled(bev) & EV_READ, 0);

    bufferevent_free(bev);
    pair_close();
    event_base_free(base);
}
END_TEST

START_TEST(test_mem_sizes)
{
    static const size_t sizes[] = {0,    1,     511,   512,   513,     1024,
                                   1025, 4096,  40000, 65536, 65537, 1 << 20};
    void *p[sizeof(sizes) / sizeof(sizes[0])];

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        p[i] = mem_fill(sizes[i], (int)i);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (size_t k = 0; k < sizes[i]; k++)
            ck_assert_int_eq(((unsigned char *)p[i])[k], i);
        evio_mem_free(p[i]);
    }
    evio_mem_free(NULL);
}
END_TEST

START_TEST(test_mem_reuse)
{
    void *a = mem_fill(3000, 1), *b, *c;
    void *many[EVIO_MEM_KEEP + 8], *again[EVIO_MEM_KEEP + 8];

    /* 3000 and 4000 bytes are one class (4 KB): the block comes back */
    evio_mem_free(a);
    b = mem_fill(4000, 2);
    ck_assert_ptr_eq(a, b);
    /* 5000 is the next class: not that block, and not a small one */
    evio_mem_free(b);
    c = mem_fill(5000, 3);
    ck_assert_ptr_ne(c, b);
    evio_mem_free(c);
    /* blocks outside the classes are never kept */
    a = mem_fill(100, 4);
    evio_mem_free(a);
    b = mem_fill(300000, 5);
    evio_mem_free(b);
    /* at most EVIO_MEM_KEEP of a class are kept, the first freed; the
     * rest go back to malloc */
    for (size_t i = 0; i < EVIO_MEM_KEEP + 8; i++)
        many[i] = mem_fill(2048, 6);
#ifndef __SANITIZE_ADDRESS__
    size_t used = mallinfo2().uordblks;
#endif
    for (size_t i = 0; i < EVIO_MEM_KEEP + 8; i++)
        evio_mem_free(many[i]);
#ifndef __SANITIZE_ADDRESS__
    size_t back = used - mallinfo2().uordblks;
    ck_assert_uint_ge(back, 8 * (2048 + 16));
    ck_assert_uint_lt(back, 9 * (2048 + 16));
#endif
    for (size_t i = 0; i < EVIO_MEM_KEEP; i++) {
        again[i] = mem_fill(2048, 7);
        ck_assert_ptr_eq(again[i], many[EVIO_MEM_KEEP - 1 - i]);
    }
    for (size_t i = 0; i < EVIO_MEM_KEEP; i++)
        evio_mem_free(again[i]);
}
END_TEST

START_TEST(test_mem_realloc)
{
    unsigned char *p = evio_mem_realloc(NULL, 200), *q;

    ck_assert_ptr_nonnull(p);
    for (int i = 0; i < 200; i++)
        p[i] = (unsigned char)i;
    /* past a small block's size, and on through the classes: the bytes
     * go along */
    for (size_t n = 300; n <= 200000; n = n * 3) {
        q = evio_mem_realloc(p, n);
        ck_assert_ptr_nonnull(q);
        for (int i = 0; i < 200; i++)
            ck_assert_int_eq(q[i], i);
        memset(q + 200, 0xee, n - 200);
        p = q;
    }
    /* smaller: the same block */
    ck_assert_ptr_eq(evio_mem_realloc(p, 10), p);
    ck_assert_int_eq(p[9], 9);
    evio_mem_free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("evio");
    TCase *tc = tcase_create("evio");
    SRunner *sr;
    int failed;

    evio_mem_init();
    tcase_add_test(tc, test_recv);
    tcase_add_test(tc, test_send_now);
    tcase_add_test(tc, test_send_file);
    tcase_add_test(tc, test_mem_sizes);
    tcase_add_test(tc, test_mem_reuse);
    tcase_add_test(tc, test_mem_realloc);
    tcase_add_test(tc, test_listener_nodelay);
    tcase_add_test(tc, test_listener_wake_one);
    tcase_add_test(tc, test_listener_wake_refused);
    tcase_add_test(tc, test_own_reads);
    tcase_add_test(tc, test_own_writes);
    tcase_add_test(tc, test_own_reads_marks);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
