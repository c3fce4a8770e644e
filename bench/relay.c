/* relay.c -- the floor for pass-through: a TCP relay that does nothing a
 * proxy could skip.  One thread, epoll; each client connection gets its
 * own connection to the origin, opened at accept; whatever one side
 * sends is passed on to the other with one recv and one send, unparsed.
 * No HTTP at all, so no proxy can use less CPU per request than this
 * (4 system calls per request, plus its share of epoll_wait).
 * Usage: relay LISTEN_PORT ORIGIN_PORT (both on 127.0.0.1).  Built by
 * bench/run into its temp dir; only for request/response traffic whose
 * messages fit the socket buffers (a send that would block drops the
 * pair). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD 65536
static int peer[MAXFD];

static void drop(int ep, int fd)
{
	int p = peer[fd];
	epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
	epoll_ctl(ep, EPOLL_CTL_DEL, p, NULL);
	close(fd);
	close(p);
}

static int watch(int ep, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

int main(int argc, char **argv)
{
	struct sockaddr_in la = {.sin_family = AF_INET}, oa = la;
	int one = 1, ls, ep;

	if (argc != 3) {
		fprintf(stderr, "usage: relay LISTEN_PORT ORIGIN_PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	la.sin_addr.s_addr = oa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	la.sin_port = htons((uint16_t)atoi(argv[1]));
	oa.sin_port = htons((uint16_t)atoi(argv[2]));
	ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ls < 0 || bind(ls, (struct sockaddr *)&la, sizeof la) < 0 ||
	    listen(ls, 4096) < 0 || (ep = epoll_create1(0)) < 0 ||
	    watch(ep, ls) < 0) {
		perror("relay");
		return 1;
	}
	for (;;) {
		struct epoll_event evs[256];
		int n = epoll_wait(ep, evs, 256, -1);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == ls) {
				int c;
				while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					int u = socket(AF_INET, SOCK_STREAM, 0);
					if (c >= MAXFD || u < 0 || u >= MAXFD ||
					    connect(u, (struct sockaddr *)&oa, sizeof oa) < 0) {
						close(c);
						if (u >= 0)
							close(u);
						continue;
					}
					fcntl(u, F_SETFL, O_NONBLOCK);
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
					setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
					peer[c] = u;
					peer[u] = c;
					watch(ep, c);
					watch(ep, u);
				}
				continue;
			}
			char buf[65536];
			ssize_t r = recv(fd, buf, sizeof buf, 0);
			if (r < 0 && errno == EAGAIN)
				continue;
			if (r <= 0 || send(peer[fd], buf, (size_t)r, MSG_NOSIGNAL) != r)
				drop(ep, fd);
		}
	}
}
