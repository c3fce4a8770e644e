/*
 * tls.h -- OpenSSL contexts: one server context set per TLS listener
 * (SNI picks the certificate), one client context per TLS upstream group.
 * Session tickets are sealed with keys from the shared-memory zone, so a
 * session resumes on whichever worker the next connection reaches.
 * Calls: OpenSSL, shm.c, conf.h.
 */
#ifndef PORTICO_TLS_H
#define PORTICO_TLS_H

#include <openssl/ssl.h>

#include "conf.h"

struct tls_server;
struct tls_client;

/*
 * Build every context conf asks for once, to find what would fail at
 * run time: unreadable or mismatched certificates and keys, bad cipher
 * lists, a CA bundle without certificates.  Each problem is added to diag
 * at its line and column.  Returns PT_OK or PT_ERROR.
 */
int tls_check_conf(const struct conf *conf, struct conf_diag *diag);

/* The contexts of a TLS listener, or NULL with why (static or in buf). */
struct tls_server *tls_server_new(const struct conf *conf,
                                  const struct conf_tls *t, char *buf,
                                  size_t buflen);
void tls_server_free(struct tls_server **ts);
/* A new server-side SSL for an accepted connection (caller owns). */
SSL *tls_server_ssl(struct tls_server *ts);

/* The context of a TLS upstream group, or NULL with why in buf. */
struct tls_client *tls_client_new(const struct conf_upstream *u, char *buf,
                                  size_t buflen);
void tls_client_free(struct tls_client **tc);
/* A new client-side SSL, with SNI and the name to verify set. */
SSL *tls_client_ssl(struct tls_client *tc);

/* The OpenSSL error queue as one line (and cleared), for logs. */
const char *tls_error_string(char *buf, size_t len);

/* "OpenSSL 3.0.x ..." for porticod -V. */
const char *tls_version(void);

#endif
