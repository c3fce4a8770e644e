/* origin.c -- the "fast static origin" of the benchmark: one thread, epoll,
 * answers every request head it reads with the same 1 KB JSON body
 * (keep-alive, pipelining-safe).  Requests must have no body (GET).
 * Cacheable paths for the cache scenarios: /c100, /c1k and /c256k answer
 * 100 B, 1 KB and 256 KB bodies with "Cache-Control: public, max-age=600"
 * and a Content-Length; every request for a path starting with /c is
 * counted, and GET /count answers that count (itself not counted), so
 * bench/run can prove a cache hit run never reached the origin.
 * Usage: origin PORT BODYFILE [PROCESSES].  With PROCESSES > 1 it forks
 * that many responders, each with its own listening socket on PORT
 * (SO_REUSEPORT: the kernel spreads connections by their addresses), and
 * each counts only its own requests (/count is then per process).  The
 * children end with the first process.  Built by bench/run.
 *
 * The 256 KB answer is copied from memory into the socket, head and body
 * in one send, which on this machine is cheaper than sendfile(2) from a
 * memfd (bench/NOTES.md, entry 43; portico's cache copies by default too).
 * Run as two processes on the proxies' port, that makes it the reference
 * for the 256 KB hit row: a server doing nothing else (entry 39).  A
 * connection whose answer the socket did not take whole waits for
 * EPOLLOUT, reading nothing more until it is sent. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD 65536
struct c {
	char in[8192];
	size_t inlen;
	size_t foff;            /* the 256 KB answer still to send: offset, */
	size_t fleft;           /* bytes (0: none, reading requests) */
};
static struct c *conns[MAXFD];
static char resp[4096];
static size_t resplen;
static char *cresp[3];          /* /c100, /c1k, /c256k */
static size_t cresplen[3];
static unsigned long long ccount; /* requests for /c... */

static void mkcached(int i, size_t blen)
{
	char head[256];
	int hl = snprintf(head, sizeof head,
	    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
	    "Cache-Control: public, max-age=600\r\nContent-Length: %zu\r\n\r\n", blen);
	cresp[i] = malloc((size_t)hl + blen);
	memcpy(cresp[i], head, (size_t)hl);
	memset(cresp[i] + hl, 'x', blen);
	cresplen[i] = (size_t)hl + blen;
}

/* write all of buf (loopback: a short write is rare; wait it out) */
static int writeall(int fd, const char *buf, size_t len, int flags)
{
	size_t off = 0;
	while (off < len) {
		ssize_t w = send(fd, buf + off, len - off, flags);
		if (w > 0) off += (size_t)w;
		else if (w < 0 && errno == EAGAIN) usleep(100);
		else return -1;
	}
	return 0;
}

static void drop(int ep, int fd)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
	free(conns[fd]);
	conns[fd] = NULL;
}

static void want(int ep, int fd, unsigned events)
{
	struct epoll_event ce = { .events = events, .data.fd = fd };
	epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ce);
}

/* Send what is left of a connection's 256 KB answer: 1 when it is all
 * sent, 0 when the socket is full (the caller waits for EPOLLOUT), -1
 * when the connection failed. */
static int send_body(int fd)
{
	struct c *k = conns[fd];
	while (k->fleft) {
		ssize_t w = send(fd, cresp[2] + k->foff, k->fleft, MSG_NOSIGNAL);
		if (w > 0) { k->fleft -= (size_t)w; k->foff += (size_t)w; }
		else if (w < 0 && errno == EAGAIN) return 0;
		else return -1;
	}
	return 1;
}

/* Answer every whole request head in the connection's input: answers
 * gathered in one buffer and written at the end, a 256 KB answer sent on
 * its own.  0: go on reading; 1: the body waits for EPOLLOUT; -1: the
 * connection failed. */
static int serve(int fd)
{
	static char out[65536];
	struct c *k = conns[fd];
	size_t olen = 0, used = 0;
	char *p, cnt[128];
	int ret = 0;
	while ((p = memmem(k->in + used, k->inlen - used, "\r\n\r\n", 4))) {
		/* the request target: after the method's space */
		const char *q = memchr(k->in + used, ' ', (size_t)(p - (k->in + used)));
		const char *rp = resp;
		size_t rl = resplen;
		int big = 0;
		if (q && q[1] == '/' && q[2] == 'c') {
			if (!strncmp(q + 1, "/count ", 7)) {
				int cl = snprintf(cnt + 64, 64, "%llu", ccount);
				int hl = snprintf(cnt, 64, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", cl);
				memmove(cnt + hl, cnt + 64, (size_t)cl + 1);
				rp = cnt; rl = (size_t)(hl + cl);
			} else {
				ccount++;
				int i = !strncmp(q + 1, "/c100", 5) ? 0 : !strncmp(q + 1, "/c256k", 6) ? 2 : 1;
				rp = cresp[i]; rl = cresplen[i];
				if (i == 2) { big = 1; rl = 0; } /* sent on its own */
			}
		}
		used = (size_t)(p - k->in) + 4;
		if (olen + rl > sizeof out) {
			if (writeall(fd, out, olen, 0)) return -1;
			olen = 0;
		}
		memcpy(out + olen, rp, rl);
		olen += rl;
		if (big) {
			/* what is gathered, then the answer on its own */
			if (olen && writeall(fd, out, olen, 0)) return -1;
			olen = 0;
			k->foff = 0;
			k->fleft = cresplen[2];
			int r = send_body(fd);
			if (r < 0) return -1;
			if (r == 0) { ret = 1; break; }
		}
	}
	memmove(k->in, k->in + used, k->inlen - used);
	k->inlen -= used;
	if (olen && writeall(fd, out, olen, 0)) return -1;
	if (!ret && k->inlen == sizeof k->in) return -1;  /* a head too long */
	return ret;
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 4) { fprintf(stderr, "usage: origin PORT BODYFILE [PROCESSES]\n"); return 2; }
	int nproc = argc == 4 ? atoi(argv[3]) : 1;
	if (nproc < 1 || nproc > 64) { fprintf(stderr, "origin: PROCESSES: 1 to 64\n"); return 2; }
	char body[2048];
	FILE *f = fopen(argv[2], "rb");
	if (!f) { perror(argv[2]); return 1; }
	size_t blen = fread(body, 1, sizeof body, f);
	fclose(f);
	resplen = (size_t)snprintf(resp, sizeof resp,
	    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	    "Content-Length: %zu\r\n\r\n", blen);
	memcpy(resp + resplen, body, blen);
	resplen += blen;
	mkcached(0, 100);
	mkcached(1, 1024);
	mkcached(2, 256 * 1024);
	signal(SIGPIPE, SIG_IGN);

	pid_t first = getpid();
	for (int i = 1; i < nproc; i++) {
		pid_t pid = fork();
		if (pid < 0) { perror("fork"); return 1; }
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGTERM);
			if (getppid() != first) return 0;
			break;
		}
	}
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (nproc > 1) setsockopt(ls, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096)) { perror("bind/listen"); return 1; }
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = ls }, evs[256];
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == ls) {
				int c;
				while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					if (c >= MAXFD) { close(c); continue; }
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
					conns[c] = calloc(1, sizeof(struct c));
					struct epoll_event ce = { .events = EPOLLIN, .data.fd = c };
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
				}
				continue;
			}
			struct c *k = conns[fd];
			int r;
			if (k->fleft) {
				/* waiting to send the rest of a body */
				r = send_body(fd);
				if (r == 0) continue;
				if (r > 0) {
					want(ep, fd, EPOLLIN);
					r = serve(fd);
				}
			} else {
				ssize_t got = read(fd, k->in + k->inlen, sizeof k->in - k->inlen);
				if (got <= 0) { if (got < 0 && errno == EAGAIN) continue; drop(ep, fd); continue; }
				k->inlen += (size_t)got;
				r = serve(fd);
			}
			if (r < 0) drop(ep, fd);
			else if (r > 0) want(ep, fd, EPOLLOUT);
		}
	}
}
