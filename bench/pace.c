/* pace.c -- a fixed-rate HTTP/1.1 load for bench/run's latency rows.
 *
 * wrk keeps every connection busy: each answer sends the next request at
 * once, so the rate climbs until the two cores are full, and its p99 then
 * measures how the scheduler shares them between wrk and the proxy (NOTES
 * entry 36).  pace holds the rate instead: CONNS keep-alive connections
 * send RATE requests per second in all, on a schedule fixed before the
 * load starts.  Connection g sends its k-th request at
 *
 *     start + (g + k * CONNS) / RATE seconds,
 *
 * so the requests of all connections together are evenly spaced.  A
 * request is timed from that planned moment, not from when it was sent: a
 * connection still waiting for an earlier answer sends the next request as
 * soon as the answer comes, and the wait counts against the server (the
 * answers a stalled server delays are not left out of the tail).
 *
 * Usage: pace [-t THREADS] [-d SECONDS] -c CONNS -r RATE http://IP:PORT/PATH
 * Prints one line of key=value pairs: rate (answers completed within the
 * load, per second: below RATE, the server fell behind), answered (all
 * answers, those completed in the 2 s after the load included), errors, non2xx, backlog (requests planned before the end
 * but never sent because the connection was still waiting), lag99 (p99 of
 * the delay between a request's planned moment and its send on an idle
 * connection, ms: pace's own lateness, left out of the latencies) and the latency percentiles p50 p90 p99 p99.9 and max in
 * ms.  Exit status 1 when the load could not run at all.
 *
 * Answers must carry a Content-Length (no chunked bodies); IPv4 only. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Latency histogram: 1 µs buckets below 100 ms, 1 ms buckets up to 100 s. */
#define FINE_N 100000
#define COARSE_N 100000
struct hist {
	uint64_t fine[FINE_N];
	uint64_t coarse[COARSE_N];
	uint64_t n;
	uint64_t max_ns;
};

static void hist_add(struct hist *h, uint64_t ns)
{
	uint64_t us = ns / 1000;
	if (us < FINE_N)
		h->fine[us]++;
	else if (us / 1000 < COARSE_N)
		h->coarse[us / 1000]++;
	else
		h->coarse[COARSE_N - 1]++;
	h->n++;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

static void hist_merge(struct hist *into, const struct hist *h)
{
	for (size_t i = 0; i < FINE_N; i++)
		into->fine[i] += h->fine[i];
	for (size_t i = 0; i < COARSE_N; i++)
		into->coarse[i] += h->coarse[i];
	into->n += h->n;
	if (h->max_ns > into->max_ns)
		into->max_ns = h->max_ns;
}

/* the upper edge of the bucket holding the q-th quantile, in ms */
static double hist_q(const struct hist *h, double q)
{
	uint64_t want = (uint64_t)(q * (double)h->n), seen = 0;
	if (h->n == 0)
		return 0;
	if (want >= h->n)
		want = h->n - 1;
	for (size_t i = 0; i < FINE_N; i++)
		if ((seen += h->fine[i]) > want)
			return (double)(i + 1) / 1000.0;
	for (size_t i = 0; i < COARSE_N; i++)
		if ((seen += h->coarse[i]) > want)
			return (double)(i + 1);
	return (double)h->max_ns / 1e6;
}

struct pconn {
	int fd;
	unsigned g;          /* the connection's index over all threads */
	uint64_t k;          /* its requests planned so far */
	uint64_t due;        /* the planned moment of request k (ns) */
	int busy;            /* request k is sent, its answer not complete */
	uint64_t idle_since; /* when its last answer completed */
	uint64_t sent;       /* when request k's timing starts */
	char head[8192];     /* the answer's head, as it arrives */
	size_t head_len;
	int in_body;
	uint64_t body_left;
	int status;
	int closes;          /* the answer said Connection: close */
	unsigned heap_at;    /* its place in the idle heap, when idle */
};

struct thread {
	pthread_t tid;
	struct pconn *c;
	unsigned n;
	struct pconn **heap; /* idle connections, earliest due first */
	unsigned heap_n;
	struct hist lat, lag;
	uint64_t errors, non2xx, backlog, answered_in_load, answered;
	int ep;
};

static struct sockaddr_in addr;
static char request[1024];
static size_t request_len;
static unsigned conns, nthreads = 2;
static double rate, seconds = 4;
static uint64_t t_start, t_end;

/* the shortest sleep between sends (ns) */
#define PACE_TICK 50000u

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t planned(const struct pconn *c)
{
	double s = ((double)c->g + (double)c->k * conns) / rate;
	return t_start + (uint64_t)(s * 1e9);
}

/* ---- the idle heap ------------------------------------------------------ */

static void heap_swap(struct thread *t, unsigned a, unsigned b)
{
	struct pconn *x = t->heap[a];
	t->heap[a] = t->heap[b];
	t->heap[b] = x;
	t->heap[a]->heap_at = a;
	t->heap[b]->heap_at = b;
}

static void heap_push(struct thread *t, struct pconn *c)
{
	unsigned i = t->heap_n++;
	t->heap[i] = c;
	c->heap_at = i;
	while (i > 0 && t->heap[(i - 1) / 2]->due > t->heap[i]->due) {
		heap_swap(t, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static struct pconn *heap_pop(struct thread *t)
{
	struct pconn *top = t->heap[0];
	unsigned i = 0;
	t->heap[0] = t->heap[--t->heap_n];
	t->heap[0]->heap_at = 0;
	for (;;) {
		unsigned l = 2 * i + 1, r = l + 1, m = i;
		if (l < t->heap_n && t->heap[l]->due < t->heap[m]->due)
			m = l;
		if (r < t->heap_n && t->heap[r]->due < t->heap[m]->due)
			m = r;
		if (m == i)
			break;
		heap_swap(t, i, m);
		i = m;
	}
	return top;
}

/* ---- connections --------------------------------------------------------- */

static int conn_open(struct thread *t, struct pconn *c)
{
	struct epoll_event ev = {.events = EPOLLIN};
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		return -1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 &&
	    errno != EINPROGRESS) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	ev.data.ptr = c;
	if (epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	c->head_len = 0;
	c->in_body = 0;
	return 0;
}

static void conn_reopen(struct thread *t, struct pconn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (conn_open(t, c) < 0)
		t->errors++;
}

/* c is idle: plan its next request */
static void conn_next(struct thread *t, struct pconn *c)
{
	c->busy = 0;
	c->k++;
	c->due = planned(c);
	heap_push(t, c);
}

/* the request in flight on c is lost: count it, plan the next one */
static void conn_fail(struct thread *t, struct pconn *c)
{
	t->errors++;
	conn_reopen(t, c);
	conn_next(t, c);
}

static void conn_send(struct thread *t, struct pconn *c, uint64_t now)
{
	ssize_t w;

	if (c->fd < 0 && conn_open(t, c) < 0) {
		t->errors++;
		conn_next(t, c);
		return;
	}
	w = send(c->fd, request, request_len, MSG_NOSIGNAL);
	if (w != (ssize_t)request_len) {
		/* a fresh connect still under way sends on EAGAIN: rare on
		 * loopback; count it as lost rather than wait */
		conn_fail(t, c);
		return;
	}
	/* late because the server had not answered the last one: from the
	 * plan; late because pace was: from now */
	if (c->idle_since > c->due) {
		c->sent = c->due;
	} else {
		c->sent = now;
		hist_add(&t->lag, now - c->due);
	}
	c->busy = 1;
}

/* Parse the answer's head: status, Content-Length, Connection: close.
 * Returns -1 for an answer pace cannot follow. */
static int parse_head(struct pconn *c)
{
	char *p = c->head, *end = c->head + c->head_len, *nl;
	int have_len = 0;

	if (c->head_len < 12 || strncmp(p, "HTTP/1.", 7) != 0)
		return -1;
	c->status = atoi(p + 9);
	c->closes = 0;
	c->body_left = 0;
	while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		char *line = nl + 1;
		char *eol = memchr(line, '\n', (size_t)(end - line));
		size_t len = eol ? (size_t)(eol - line) : 0;
		if (strncasecmp(line, "content-length:", 15) == 0) {
			c->body_left = strtoull(line + 15, NULL, 10);
			have_len = 1;
		} else if (strncasecmp(line, "transfer-encoding:", 18) == 0) {
			return -1;
		} else if (strncasecmp(line, "connection:", 11) == 0 &&
		           memmem(line, len, "close", 5) != NULL) {
			c->closes = 1;
		}
		p = line;
	}
	if (!have_len && c->status != 204 && c->status != 304)
		return -1;
	return 0;
}

/* An answer is complete at now: time it, plan the next request. */
static void conn_answered(struct thread *t, struct pconn *c, uint64_t now)
{
	if (now < t_end)
		t->answered_in_load++;
	hist_add(&t->lat, now - c->sent);
	t->answered++;
	c->idle_since = now;
	if (c->status < 200 || c->status > 299)
		t->non2xx++;
	c->head_len = 0;
	c->in_body = 0;
	if (c->closes)
		conn_reopen(t, c);
	conn_next(t, c);
}

static void conn_read(struct thread *t, struct pconn *c)
{
	static __thread char buf[262144];
	ssize_t r = recv(c->fd, buf, sizeof buf, 0);
	size_t off = 0;

	if (r <= 0) {
		if (r < 0 && errno == EAGAIN)
			return;
		if (c->busy)
			conn_fail(t, c); /* a busy conn is not in the heap */
		else
			conn_reopen(t, c); /* an idle one stays there */
		return;
	}
	if (!c->busy) { /* bytes nobody asked for */
		t->errors++;
		conn_reopen(t, c);
		return;
	}
	while (off < (size_t)r) {
		if (!c->in_body) {
			size_t take = (size_t)r - off, room = sizeof c->head - 1 - c->head_len;
			char *eoh;
			if (take > room)
				take = room;
			memcpy(c->head + c->head_len, buf + off, take);
			c->head[c->head_len + take] = '\0';
			eoh = strstr(c->head + (c->head_len > 3 ? c->head_len - 3 : 0), "\r\n\r\n");
			if (eoh == NULL) {
				c->head_len += take;
				off += take;
				if (c->head_len == sizeof c->head - 1) {
					conn_fail(t, c);
					return;
				}
				continue;
			}
			{
				size_t used = (size_t)(eoh + 4 - c->head) - c->head_len;
				c->head_len += used;
				off += used;
			}
			if (parse_head(c) < 0) {
				fprintf(stderr, "pace: an answer without a Content-Length "
				                "(or not HTTP/1.x): %.60s\n", c->head);
				exit(1);
			}
			c->in_body = 1;
		}
		{
			size_t take = (size_t)r - off;
			if (take > c->body_left)
				take = (size_t)c->body_left;
			c->body_left -= take;
			off += take;
		}
		if (c->body_left == 0) {
			conn_answered(t, c, now_ns());
			if (off < (size_t)r) { /* more than the answer */
				t->errors++;
				conn_reopen(t, c);
				return;
			}
		}
	}
}

static void *thread_main(void *arg)
{
	struct thread *t = arg;
	struct epoll_event evs[256];
	uint64_t drain_end = t_end + 2000000000u;

	for (;;) {
		uint64_t now = now_ns();
		struct timespec ts = {0, 0};
		int n;

		if (now >= drain_end)
			break;
		/* send what is due; nothing planned from t_end on */
		while (t->heap_n > 0 && t->heap[0]->due <= now && t->heap[0]->due < t_end)
			conn_send(t, heap_pop(t), now);
		if (t->heap_n == t->n && (t->heap_n == 0 || t->heap[0]->due >= t_end))
			break; /* all idle, nothing more planned */
		if (t->heap_n > 0 && t->heap[0]->due < t_end) {
			uint64_t wait = t->heap[0]->due - now;
			if (wait < PACE_TICK)
				wait = PACE_TICK;
			ts.tv_sec = (time_t)(wait / 1000000000u);
			ts.tv_nsec = (long)(wait % 1000000000u);
		} else {
			ts.tv_nsec = 10000000; /* only answers to wait for */
		}
		n = epoll_pwait2(t->ep, evs, 256, &ts, NULL);
		if (n < 0 && errno != EINTR) {
			perror("pace: epoll_pwait2");
			exit(1);
		}
		for (int i = 0; i < n; i++)
			conn_read(t, evs[i].data.ptr);
	}
	/* planned before the end, never sent: the connection was waiting */
	for (unsigned i = 0; i < t->n; i++) {
		struct pconn *c = &t->c[i];
		if (c->busy)
			t->errors++; /* no answer within the 2 s drain */
		c->k += c->busy;
		while (planned(c) < t_end) {
			t->backlog++;
			c->k++;
		}
	}
	return NULL;
}

static int parse_url(const char *url)
{
	char host[64];
	const char *p, *slash;
	unsigned port;

	if (strncmp(url, "http://", 7) != 0)
		return -1;
	p = url + 7;
	slash = strchr(p, '/');
	if (slash == NULL || (size_t)(slash - p) >= sizeof host)
		return -1;
	memcpy(host, p, (size_t)(slash - p));
	host[slash - p] = '\0';
	{
		char *colon = strchr(host, ':');
		if (colon == NULL || sscanf(colon + 1, "%u", &port) != 1 || port == 0 ||
		    port > 65535)
			return -1;
		*colon = '\0';
	}
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
		return -1;
	request_len = (size_t)snprintf(request, sizeof request,
	                               "GET %s HTTP/1.1\r\nHost: %.*s\r\n\r\n", slash,
	                               (int)(slash - p), p);
	return request_len < sizeof request ? 0 : -1;
}

static void usage(void)
{
	fprintf(stderr, "usage: pace [-t THREADS] [-d SECONDS] -c CONNS -r RATE "
	                "http://IP:PORT/PATH\n");
	exit(1);
}

int main(int argc, char **argv)
{
	struct thread *th;
	struct hist *lat, *lag;
	uint64_t errors = 0, non2xx = 0, backlog = 0, in_load = 0, answered = 0;
	int o;

	while ((o = getopt(argc, argv, "t:d:c:r:")) != -1) {
		switch (o) {
		case 't': nthreads = (unsigned)atoi(optarg); break;
		case 'd': seconds = atof(optarg); break;
		case 'c': conns = (unsigned)atoi(optarg); break;
		case 'r': rate = atof(optarg); break;
		default: usage();
		}
	}
	if (optind != argc - 1 || conns == 0 || rate <= 0 || seconds <= 0 ||
	    nthreads == 0 || nthreads > conns)
		usage();
	if (parse_url(argv[optind]) < 0) {
		fprintf(stderr, "pace: %s: want http://IPv4:PORT/PATH\n", argv[optind]);
		return 1;
	}
	/* wake at the planned moments, not up to 50 µs after them */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	th = calloc(nthreads, sizeof *th);
	lat = calloc(1, sizeof *lat);
	lag = calloc(1, sizeof *lag);
	if (th == NULL || lat == NULL || lag == NULL)
		return 1;
	for (unsigned i = 0; i < nthreads; i++) {
		struct thread *t = &th[i];
		unsigned first = i * conns / nthreads, last = (i + 1) * conns / nthreads;
		t->n = last - first;
		t->c = calloc(t->n, sizeof *t->c);
		t->heap = calloc(t->n, sizeof *t->heap);
		t->ep = epoll_create1(0);
		if (t->c == NULL || t->heap == NULL || t->ep < 0)
			return 1;
		for (unsigned j = 0; j < t->n; j++) {
			t->c[j].g = first + j;
			if (conn_open(t, &t->c[j]) < 0) {
				perror("pace: connect");
				return 1;
			}
		}
	}
	usleep(100000); /* let the connections be accepted before the clock starts */
	t_start = now_ns() + 1000000u;
	t_end = t_start + (uint64_t)(seconds * 1e9);
	for (unsigned i = 0; i < nthreads; i++) {
		for (unsigned j = 0; j < th[i].n; j++) {
			th[i].c[j].due = planned(&th[i].c[j]);
			heap_push(&th[i], &th[i].c[j]);
		}
		if (pthread_create(&th[i].tid, NULL, thread_main, &th[i]) != 0)
			return 1;
	}
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(th[i].tid, NULL);
		hist_merge(lat, &th[i].lat);
		hist_merge(lag, &th[i].lag);
		errors += th[i].errors;
		non2xx += th[i].non2xx;
		backlog += th[i].backlog;
		in_load += th[i].answered_in_load;
		answered += th[i].answered;
	}
	if (lat->n == 0) {
		fprintf(stderr, "pace: no answer at all\n");
		return 1;
	}
	printf("rate=%.0f answered=%llu errors=%llu non2xx=%llu backlog=%llu "
	       "lag99=%.3f p50=%.3f p90=%.3f p99=%.3f p99.9=%.3f max=%.3f\n",
	       (double)in_load / seconds, (unsigned long long)answered,
	       (unsigned long long)errors, (unsigned long long)non2xx,
	       (unsigned long long)backlog, hist_q(lag, 0.99), hist_q(lat, 0.50),
	       hist_q(lat, 0.90), hist_q(lat, 0.99), hist_q(lat, 0.999),
	       (double)lat->max_ns / 1e6);
	return 0;
}
