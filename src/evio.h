/*
 * evio.h -- a plain socket's bytes into and out of a bufferevent's
 * buffers without the bufferevent's own I/O: libevent 2.1 asks the
 * kernel how much is there (ioctl FIONREAD) before every read and reads
 * at most 4 KB, and writes with writev, which passes through the
 * file-system layer.  evio_own_reads and evio_own_writes take a plain
 * bufferevent's reads and writes over for good, and evio_send_file lets
 * its writes use sendfile(2).  And libevent's memory, from a cache of freed
 * buffer blocks (evio_mem_init).  Layer 1.  Calls: libevent's evbuffer,
 * libc.
 */
#ifndef PORTICO_EVIO_H
#define PORTICO_EVIO_H

#include <stddef.h>
#include <sys/types.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/util.h>

/*
 * One recv(2) of up to `want` bytes (or the room the last chain has
 * beyond that) straight onto the end of a bufferevent's input, `in`.
 * Returns recv's result: bytes added, 0 at EOF, -1 with errno (ENOMEM
 * when no room could be made).  *room gets the room the recv was
 * offered, so the caller can tell a read that filled it.
 */
ssize_t evio_recv(struct evbuffer *in, evutil_socket_t fd, size_t want,
                  size_t *room);

/* evio_read's first recv: into a process buffer of this size, copied
 * into a chain sized to what came. */
#define EVIO_READ_SMALL (16 * 1024)
/* Its second, only when the first filled that buffer: straight into the
 * input's room, a chain that fits a 64 KB block with its header. */
#define EVIO_READ_BULK (64 * 1024 - 128)

/*
 * Up to `want` bytes onto the end of a bufferevent's input, `in`: one
 * recv(2) of up to EVIO_READ_SMALL, copied, so that a request or message
 * of a few hundred bytes takes a small chain, not a 16 KB one; when it
 * filled that, a second recv of up to EVIO_READ_BULK for a stream.
 * Returns the bytes added by both, or the first recv's 0 at EOF or -1
 * with errno.  The second's EOF or error is left for the next read.
 */
ssize_t evio_read(struct evbuffer *in, evutil_socket_t fd, size_t want);

/*
 * From now on bev's socket is read with evio_read, not by libevent (an
 * ioctl(FIONREAD) and a readv of at most 4 KB per turn).  Only the
 * callback of the bufferevent's read event changes: bufferevent_enable
 * and _disable, the read timeout and the read watermarks work on it as
 * before, and the read, event and watermark callbacks are called as
 * libevent calls them.  For a plain socket bufferevent (libevent 2.1's
 * struct bufferevent, bufferevent_struct.h); again after each
 * bufferevent_setfd, which puts libevent's reader back.  Returns -1,
 * leaving libevent's reader, if the event cannot be set.
 */
int evio_own_reads(struct bufferevent *bev);

/*
 * The same for its writes: what the bufferevent's write event finds in
 * the output goes with evio_send_now's calls (sendfile for the file of
 * evio_send_file), not libevent's writev.  The write timeout, the write
 * watermark and the write and event callbacks work as libevent's: a
 * timeout or a failed write to the event callback with writing off, the
 * write event taken out once the output is empty, the write callback
 * while the output is at or under the low mark.  Again after each
 * bufferevent_setfd.  Returns -1, leaving libevent's writer, if the event
 * cannot be set.
 */
int evio_own_writes(struct bufferevent *bev);

/*
 * Write what a bufferevent's output, `out`, holds, now, instead of on
 * the bufferevent's next EV_WRITE turn: send(2) or sendmsg(2) for up to
 * 16 pieces a call, sendfile(2) for a piece from the file registered
 * with evio_send_file, call after call while each takes all it is
 * offered.  Returns the bytes left: the socket was full, or failed, and
 * EV_WRITE (evio_own_writes, or libevent's writev where it is not used)
 * finishes the write or meets the error again and reports it.
 */
size_t evio_send_now(struct evbuffer *out, evutil_socket_t fd);

/*
 * From now on a piece of an output that lies in [base, base + len) and
 * is at least `min` bytes long goes out with sendfile(2) from `fd` at
 * offset (piece - base), the socket's buffers taking the file's pages
 * instead of a copy: `base` is where fd's memory is mapped whole from
 * offset 0 (the cache zone, cache_store_file).  Whoever owns the mapping
 * must never change such bytes once sent, since the receiver reads the
 * pages themselves, later; it decides which pieces qualify by how it
 * queues them (cache_serve: runs under `min` while an entry may not).
 * fd -1 turns it off.  sendfile has no MSG_NOSIGNAL: the process must
 * ignore SIGPIPE (the workers do).
 */
void evio_send_file(const void *base, size_t len, int fd, size_t min);

/*
 * libevent's memory.  Each request's buffers come and go: with glibc's
 * malloc a chain of 1 KB or more (a response head, a read's room) costs
 * ~270 instructions to take and give back, beyond its thread cache.
 * These keep up to 16 freed blocks of each power of two from 1 KB to
 * 64 KB for reuse (at most ~2 MB per process).  evio_mem_init installs
 * them: call it before anything else of libevent's.  The other three are
 * malloc, realloc and free for libevent, open for the unit tests.
 */
#define EVIO_MEM_KEEP 16 /* freed blocks kept per class */

void evio_mem_init(void);
void *evio_mem_alloc(size_t n);
void *evio_mem_realloc(void *p, size_t n);
void evio_mem_free(void *p);

#endif
