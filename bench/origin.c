/* origin.c -- the "fast static origin" of the benchmark: one thread, epoll,
 * answers every request head it reads with the same 1 KB JSON body
 * (keep-alive, pipelining-safe).  Requests must have no body (GET).
 * Usage: origin PORT BODYFILE.  Built by bench/run into its temp dir. */
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
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD 65536
struct c { char in[8192]; size_t inlen; };
static struct c *conns[MAXFD];
static char resp[4096];
static size_t resplen;

static void drop(int ep, int fd)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
	free(conns[fd]);
	conns[fd] = NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3) { fprintf(stderr, "usage: origin PORT BODYFILE\n"); return 2; }
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
	signal(SIGPIPE, SIG_IGN);

	int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096)) { perror("bind/listen"); return 1; }
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = ls }, evs[256];
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
	char out[65536];
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
			ssize_t r = read(fd, k->in + k->inlen, sizeof k->in - k->inlen);
			if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; drop(ep, fd); continue; }
			k->inlen += (size_t)r;
			size_t olen = 0, used = 0;
			char *p;
			while ((p = memmem(k->in + used, k->inlen - used, "\r\n\r\n", 4))) {
				used = (size_t)(p - k->in) + 4;
				if (olen + resplen > sizeof out) break;
				memcpy(out + olen, resp, resplen);
				olen += resplen;
			}
			memmove(k->in, k->in + used, k->inlen - used);
			k->inlen -= used;
			if (k->inlen == sizeof k->in) { drop(ep, fd); continue; }
			/* loopback with small answers: a short write is not expected;
			 * if it happens, finish it blocking-ish rather than lose bytes */
			size_t off = 0;
			while (off < olen) {
				ssize_t w = write(fd, out + off, olen - off);
				if (w > 0) off += (size_t)w;
				else if (w < 0 && errno == EAGAIN) usleep(100);
				else { drop(ep, fd); break; }
			}
		}
	}
}
