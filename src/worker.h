/*
 * worker.h -- one worker process: its event_base, its configuration
 * generations, its listeners and its client connections.
 * Calls: conn.c, channel.c, conf.c, log.c.
 */
#ifndef PORTICO_WORKER_H
#define PORTICO_WORKER_H

#include <event2/event.h>
#include <event2/listener.h>

#include "conf.h"
#include "http_parse.h"

struct worker;
struct ups_set;
struct tls_server;
struct stats_route;

/* Pre-serialised response pieces for one respond: route. */
struct gen_respond {
    char *head;     /* owns: "HTTP/1.1 S R\r\n" */
    size_t head_len;
    char *fields;   /* owns: route headers, Content-Type, Content-Length */
    size_t fields_len;
};

/* What an accepting listener knows: its worker and its TLS contexts. */
struct gen_listener {
    struct worker *w;        /* borrowed */
    struct tls_server *tls;  /* owns; NULL for plain HTTP */
    int admin;               /* the admin listener */
    int access_format;       /* the listener's, or the global one */
};

/*
 * One configuration generation inside a worker.  Requests take a
 * reference when they start and release it when they end, so a reload
 * never changes the rules under a request in flight.
 */
struct gen {
    unsigned id;
    int refs;
    struct conf *conf;              /* owns */
    struct gen_respond *responds;   /* owns; parallel to conf->routes */
    struct stats_route **route_stats; /* owns the array; parallel to
                                         conf->routes; shared slots */
    struct evconnlistener **lsn;    /* owns; parallel to conf->listeners */
    struct gen_listener *lctx;      /* owns; parallel to conf->listeners */
    size_t nlsn;
    int access_fd;                  /* owns; -1 when the log is off */
    int error_fd;                   /* owns */
    struct ups_set *ups;            /* owns: upstream groups and pools */
    struct worker *worker;          /* borrowed */
};

struct gen *gen_ref(struct gen *g);
void gen_release(struct gen **g);

/* What a worker starts with, inherited from the master through fork. */
struct worker_init {
    int slot;              /* 0-based worker number */
    unsigned generation;
    struct conf *conf;     /* becomes the worker's (fork copy) */
    const int *listen_fds; /* parallel to conf->listeners; taken over */
    int error_fd;          /* taken over (2 stays open) */
    int access_fd;         /* taken over; -1 when off */
    int channel_fd;        /* owned from now on */
};

/* Run a worker until it stops; never returns (calls _exit). */
void worker_run(const struct worker_init *init) __attribute__((noreturn));

/* The worker's current generation (borrowed). */
struct gen *worker_gen(struct worker *w);
struct event_base *worker_base(struct worker *w);
/* Scratch header array of at least n entries, valid until the next
 * call; used while one request head is being handled. */
struct http_header *worker_headers(struct worker *w, size_t n);
/* A connection closed: lets the worker resume accepting or finish a
 * graceful stop. */
void worker_conn_closed(struct worker *w);
int worker_stopping(struct worker *w);

#endif
