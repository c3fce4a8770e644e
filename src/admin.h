/*
 * admin.h -- the admin listener's built-in endpoints: /metrics
 * (Prometheus text format, summed over all workers through shared
 * memory), /status (JSON) and /healthz.  Calls: stats.c, shm.c, conf.h,
 * libevent buffers.
 */
#ifndef PORTICO_ADMIN_H
#define PORTICO_ADMIN_H

#include <event2/buffer.h>

#include "conf.h"
#include "http_parse.h"

struct admin_reply {
    int status;
    const char *content_type; /* static */
    struct evbuffer *body;    /* borrowed: filled by admin_handle */
};

/* Answer one request on the admin listener: fills reply (status and
 * body).  conf is the current generation's. */
void admin_handle(const struct conf *conf, const struct http_request *r,
                  struct admin_reply *reply);

/* Is the client allowed on the admin listener (admin.allow)? */
int admin_allowed(const struct conf *conf, const struct sockaddr *sa);

#endif
