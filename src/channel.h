/*
 * channel.h -- messages between the master and one worker over a
 * SOCK_SEQPACKET socketpair, with file descriptors passed by SCM_RIGHTS.
 * Layer 4 helper (plain syscalls, no libevent).
 */
#ifndef PORTICO_CHANNEL_H
#define PORTICO_CHANNEL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum channel_type {
    /* master -> worker.  fds: [config memfd, error log, access log or -1
     * as a placeholder (see has_access), listener fds in config order] */
    CHANNEL_GENERATION = 1,
    /* master -> worker.  fds: [error log, access log] (SIGUSR1) */
    CHANNEL_REOPEN,
    CHANNEL_STOP_GRACEFUL, /* finish open work, then exit */
    CHANNEL_STOP_FAST,     /* exit now */
    /* worker -> master */
    CHANNEL_ACK,  /* generation applied */
    CHANNEL_NACK, /* generation refused (reason logged by the worker) */
};

/* The most descriptors one message carries (the kernel's SCM_MAX_FD). */
#define CHANNEL_MAX_FDS 253

struct channel_msg {
    uint32_t type;
    uint32_t generation;
    uint32_t nfds;
    uint32_t flags;
};

#define CHANNEL_F_HAS_ACCESS 1u /* the access log fd is real */

/*
 * A generation's bundle: the config bytes the master validated and the
 * files they refer to (certificates, keys), written to fd (a memfd the
 * workers map).  Returns 0, or -1 with errno set.
 */
struct conf;
struct conf_file;
int channel_bundle_write(int fd, const struct conf *c);

/* A bundle read back: views into the mapped bytes, files[] owned (free
 * with channel_bundle_fini; their path/data point into the mapping). */
struct channel_bundle {
    const char *yaml;
    size_t yaml_len;
    struct conf_file *files;
    size_t nfiles;
};
/* Returns 0, or -1 when the bytes are not a whole bundle. */
int channel_bundle_read(const char *p, size_t len, struct channel_bundle *b);
void channel_bundle_fini(struct channel_bundle *b);

/* A connected pair; both ends close-on-exec.  Returns 0 or -1. */
int channel_pair(int fds[2]);

/*
 * Send one message with nfds descriptors (borrowed: the caller still owns
 * and closes them).  Non-blocking.  Returns 0, or -1 with errno set.
 */
int channel_send(int fd, struct channel_msg *msg, const int *fds,
                 size_t nfds);

/*
 * Receive one message.  Received descriptors (owned by the caller) go into
 * fds[0..*nfds).  Returns 1 on a message, 0 on EOF, -1 on error with errno
 * set (EAGAIN when nothing is waiting).
 */
int channel_recv(int fd, struct channel_msg *msg, int *fds, size_t maxfds,
                 size_t *nfds);

#endif
