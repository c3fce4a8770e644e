/*
 * tls.c -- OpenSSL contexts for TLS listeners and TLS upstreams.
 *
 * A listener gets one SSL_CTX per distinct set of names; an RSA and an
 * ECDSA certificate for the same names share one context, and OpenSSL
 * picks the one the client can use.  The first certificate's context is
 * the default; the servername callback moves a handshake to the context
 * whose names match the SNI (exact first, then "*.suffix").
 *
 * Defaults a security review accepts: TLS 1.2 and 1.3 only, ECDHE with
 * AEAD ciphers, server preference, no compression, no renegotiation,
 * ALPN http/1.1.  Certificates and keys come from memory (conf->files),
 * never from disk: workers have dropped the privileges to read them.
 *
 * Calls: OpenSSL, shm.c, conf.h.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "shm.h"

#define TLS_DEFAULT_CIPHERS                                                   \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"              \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"              \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_DEFAULT_SUITES                                                    \
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

/* One name a context answers for ("www.example.com", "*.example.com"). */
struct tls_name {
    char *name;   /* owns; lower case */
    SSL_CTX *ctx; /* borrowed from the server's list */
};

struct tls_server {
    SSL_CTX **ctxs;          /* owns: [0] is the default */
    char ***ctx_names;       /* owns: the name set of each context */
    size_t nctx;
    struct tls_name *names;  /* owns */
    size_t nnames;
};

struct tls_client {
    SSL_CTX *ctx;  /* owns */
    char *sni;     /* owns; NULL = no SNI, no name check */
    char *ip;      /* owns; an address to verify instead of a name */
};

const char *tls_error_string(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();

    if (e == 0)
        snprintf(buf, len, "unknown error");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

const char *tls_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

/* ---- parsing certificates and keys from memory --------------------------- */

/* The leaf and its chain from a PEM file's bytes. */
static X509 *tls_read_chain(const struct conf_file *f, STACK_OF(X509) **chain)
{
    BIO *bio = BIO_new_mem_buf(f->data, (int)f->len);
    X509 *leaf = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    X509 *x;

    *chain = sk_X509_new_null();
    while (leaf && *chain && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
        sk_X509_push(*chain, x);
    ERR_clear_error(); /* the end of the file reads as an error */
    BIO_free(bio);
    return leaf;
}

static EVP_PKEY *tls_read_key(const struct conf_file *f)
{
    BIO *bio = BIO_new_mem_buf(f->data, (int)f->len);
    EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;

    BIO_free(bio);
    return k;
}

static char *tls_lower_dup(const char *s, size_t len)
{
    char *out = malloc(len + 1);

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++)
        out[i] = pt_lower(s[i]);
    out[len] = '\0';
    return out;
}

/* The DNS names of a certificate (the CN when it has none), NULL-ended. */
static char **tls_cert_names(X509 *x)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
                                           NULL);
    int n = sans ? sk_GENERAL_NAME_num(sans) : 0, k = 0;
    char **names = calloc((size_t)n + 2, sizeof(char *));

    for (int i = 0; names && i < n; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS)
            continue;
        const unsigned char *p = ASN1_STRING_get0_data(g->d.dNSName);
        names[k++] = tls_lower_dup((const char *)p,
                                   (size_t)ASN1_STRING_length(g->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
    if (names && k == 0) {
        char cn[256];
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(x),
                                      NID_commonName, cn, sizeof(cn)) > 0)
            names[k++] = tls_lower_dup(cn, strlen(cn));
    }
    return names;
}

static void tls_names_free(char **names)
{
    for (size_t i = 0; names && names[i]; i++)
        free(names[i]);
    free(names);
}

static int tls_names_equal(char **a, char **b)
{
    size_t i;

    for (i = 0; a[i] && b[i]; i++)
        if (strcmp(a[i], b[i]) != 0)
            return 0;
    return a[i] == NULL && b[i] == NULL;
}

/* ---- server contexts -------------------------------------------------------- */

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char h1[] = "\x08http/1.1";

    if (SSL_select_next_proto((unsigned char **)out, outlen, h1,
                              sizeof(h1) - 1, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no ALPN: HTTP/1.1 all the same */
    return SSL_TLSEXT_ERR_OK;
}

/* Seal and open session tickets with the keys every worker shares. */
static int on_ticket_key(SSL *ssl, unsigned char *name, unsigned char *iv,
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    unsigned cur;
    const struct shm_ticket_key *keys = shm_ticket_keys(&cur), *k = NULL;
    OSSL_PARAM params[2];

    if (keys == NULL)
        return -1;
    if (enc) {
        k = &keys[cur];
        memcpy(name, k->name, sizeof(k->name));
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) <= 0)
            return -1;
    } else {
        for (unsigned i = 0; i < SHM_TICKET_KEYS && !k; i++)
            if (memcmp(name, keys[i].name, sizeof(keys[i].name)) == 0)
                k = &keys[i];
        if (k == NULL)
            return 0; /* unknown key: a full handshake */
    }
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (!EVP_CipherInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv, enc) ||
        !EVP_MAC_init(hctx, k->hmac, sizeof(k->hmac), params))
        return -1;
    /* 2: this ticket is good, but sealed with an older key: renew it. */
    return enc || k == &keys[cur] ? 1 : 2;
}

static SSL_CTX *tls_ctx_match(struct tls_server *ts, const char *host)
{
    const char *dot;

    for (size_t i = 0; i < ts->nnames; i++)
        if (strcasecmp(ts->names[i].name, host) == 0)
            return ts->names[i].ctx;
    dot = strchr(host, '.');
    for (size_t i = 0; dot && i < ts->nnames; i++) {
        const char *n = ts->names[i].name;
        if (n[0] == '*' && n[1] == '.' && strcasecmp(n + 1, dot) == 0)
            return ts->names[i].ctx;
    }
    return NULL;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    struct tls_server *ts = arg;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    SSL_CTX *ctx;

    if (host == NULL)
        return SSL_TLSEXT_ERR_OK; /* no SNI: the default certificate */
    ctx = tls_ctx_match(ts, host);
    if (ctx && ctx != SSL_get_SSL_CTX(ssl))
        SSL_set_SSL_CTX(ssl, ctx);
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *tls_server_ctx(const struct conf_tls *t, struct tls_server *ts,
                               const char **why)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    static const unsigned char sid[] = "portico";

    if (ctx == NULL) {
        *why = "cannot create an SSL context";
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, t->min_version);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (!SSL_CTX_set_cipher_list(ctx, t->ciphers ? t->ciphers
                                                 : TLS_DEFAULT_CIPHERS)) {
        *why = "ciphers: no usable cipher in the list";
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (!SSL_CTX_set_ciphersuites(ctx, t->ciphersuites ? t->ciphersuites
                                                       : TLS_DEFAULT_SUITES)) {
        *why = "ciphersuites: no usable suite in the list";
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, ts);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    return ctx;
}

/* Add one certificate: to the context with the same names, or a new one. */
static int tls_server_add(struct tls_server *ts, const struct conf_tls *t,
                          const struct conf_cert *c, const char **why)
{
    STACK_OF(X509) *chain = NULL;
    X509 *leaf = tls_read_chain(c->cert_file, &chain);
    EVP_PKEY *key = leaf ? tls_read_key(c->key_file) : NULL;
    char **names = leaf ? tls_cert_names(leaf) : NULL;
    SSL_CTX *ctx = NULL;
    int rc = PT_ERROR;
    size_t i;

    if (leaf == NULL) {
        *why = "cert: no PEM certificate in the file";
        goto out;
    }
    if (key == NULL) {
        *why = "key: no PEM private key in the file";
        goto out;
    }
    if (!X509_check_private_key(leaf, key)) {
        *why = "key: does not match the certificate";
        goto out;
    }
    for (i = 0; i < ts->nctx && !ctx; i++)
        if (tls_names_equal(ts->ctx_names[i], names))
            ctx = ts->ctxs[i];
    if (ctx == NULL) {
        SSL_CTX **nc = realloc(ts->ctxs, (ts->nctx + 1) * sizeof(*nc));
        char ***nn = realloc(ts->ctx_names, (ts->nctx + 1) * sizeof(*nn));
        if (nc)
            ts->ctxs = nc;
        if (nn)
            ts->ctx_names = nn;
        if (!nc || !nn || !(ctx = tls_server_ctx(t, ts, why)))
            goto out;
        ts->ctxs[ts->nctx] = ctx;
        ts->ctx_names[ts->nctx++] = names;
        for (size_t k = 0; names[k]; k++) {
            struct tls_name *tn =
                realloc(ts->names, (ts->nnames + 1) * sizeof(*tn));
            if (tn == NULL)
                break;
            ts->names = tn;
            ts->names[ts->nnames++] = (struct tls_name){names[k], ctx};
        }
        names = NULL; /* owned by ts now */
    }
    if (!SSL_CTX_use_cert_and_key(ctx, leaf, key, chain, 1)) {
        *why = "cert: OpenSSL refused the certificate and key";
        goto out;
    }
    rc = PT_OK;
out:
    tls_names_free(names);
    X509_free(leaf);
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

struct tls_server *tls_server_new(const struct conf *conf,
                                  const struct conf_tls *t, char *buf,
                                  size_t buflen)
{
    struct tls_server *ts = calloc(1, sizeof(*ts));
    const char *why = "out of memory";

    (void)conf;
    for (size_t i = 0; ts && i < t->ncerts; i++) {
        if (tls_server_add(ts, t, &t->certs[i], &why) < 0) {
            char ossl[200];
            snprintf(buf, buflen, "%s (%s)", why,
                     tls_error_string(ossl, sizeof(ossl)));
            tls_server_free(&ts);
            return NULL;
        }
    }
    if (ts == NULL)
        snprintf(buf, buflen, "%s", why);
    return ts;
}

void tls_server_free(struct tls_server **tsp)
{
    struct tls_server *ts = *tsp;

    if (ts == NULL)
        return;
    *tsp = NULL;
    for (size_t i = 0; i < ts->nctx; i++) {
        SSL_CTX_free(ts->ctxs[i]);
        tls_names_free(ts->ctx_names[i]);
    }
    free(ts->ctxs);
    free(ts->ctx_names);
    free(ts->names);
    free(ts);
}

SSL *tls_server_ssl(struct tls_server *ts)
{
    return SSL_new(ts->ctxs[0]);
}

/* ---- client contexts ---------------------------------------------------------- */

static int tls_client_ca(SSL_CTX *ctx, const struct conf_file *f)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    BIO *bio = BIO_new_mem_buf(f->data, (int)f->len);
    X509 *x;
    int n = 0;

    while (bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
        n += X509_STORE_add_cert(store, x) == 1;
        X509_free(x);
    }
    ERR_clear_error();
    BIO_free(bio);
    return n;
}

struct tls_client *tls_client_new(const struct conf_upstream *u, char *buf,
                                  size_t buflen)
{
    const struct conf_upstream_tls *t = &u->tls;
    struct tls_client *tc = calloc(1, sizeof(*tc));
    const char *name = t->sni ? t->sni : u->host;

    if (tc == NULL || (tc->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
        snprintf(buf, buflen, "cannot create an SSL context");
        tls_client_free(&tc);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(tc->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(tc->ctx, SSL_OP_NO_COMPRESSION |
                                     SSL_OP_NO_RENEGOTIATION);
    if (t->ca_file) {
        if (tls_client_ca(tc->ctx, t->ca_file) == 0) {
            snprintf(buf, buflen, "ca: no PEM certificate in the file");
            tls_client_free(&tc);
            return NULL;
        }
    } else {
        SSL_CTX_set_default_verify_paths(tc->ctx);
    }
    SSL_CTX_set_verify(tc->ctx, t->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                       NULL);
    if (name) {
        /* The SNI and the verified name leave out any ":port"; an IP
         * literal is verified as an address and never sent as SNI
         * (RFC 6066 3). */
        const char *end = name[0] == '[' ? strchr(name, ']') : NULL;
        const char *colon = strrchr(name, ':');
        size_t len = end ? (size_t)(end - name - 1)
                     : colon ? (size_t)(colon - name)
                             : strlen(name);
        char *host = strndup(end ? name + 1 : name, len);
        unsigned char ip[16];
        if (host && (inet_pton(AF_INET, host, ip) == 1 ||
                     inet_pton(AF_INET6, host, ip) == 1))
            tc->ip = host;
        else
            tc->sni = host;
    }
    return tc;
}

void tls_client_free(struct tls_client **tcp)
{
    struct tls_client *tc = *tcp;

    if (tc == NULL)
        return;
    *tcp = NULL;
    SSL_CTX_free(tc->ctx);
    free(tc->sni);
    free(tc->ip);
    free(tc);
}

SSL *tls_client_ssl(struct tls_client *tc)
{
    SSL *ssl = SSL_new(tc->ctx);

    if (ssl && tc->sni) {
        SSL_set_tlsext_host_name(ssl, tc->sni);
        SSL_set1_host(ssl, tc->sni);
    } else if (ssl && tc->ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), tc->ip);
    }
    return ssl;
}

/* ---- checking a config ------------------------------------------------------------ */

int tls_check_conf(const struct conf *conf, struct conf_diag *diag)
{
    char why[300];
    size_t before = diag->n;

    for (size_t i = 0; i < conf->nlisteners; i++) {
        const struct conf_tls *t = &conf->listeners[i].tls;
        for (size_t k = 0; t->enabled && k < t->ncerts; k++) {
            /* One certificate at a time, so every bad one is named. */
            const struct conf_cert *c = &t->certs[k];
            struct tls_server *ts = calloc(1, sizeof(*ts));
            const char *msg = "out of memory";
            int bad = ts == NULL || tls_server_add(ts, t, c, &msg) < 0;
            tls_server_free(&ts);
            if (!bad)
                continue;
            tls_error_string(why, sizeof(why));
            if (strncmp(msg, "cipher", 6) == 0) {
                conf_diag_at(diag, conf, t->pos, "listeners[%zu].tls.%s",
                             i, msg);
                break;
            }
            conf_diag_at(diag, conf,
                         strncmp(msg, "key:", 4) == 0 ? c->key_pos
                                                      : c->cert_pos,
                         "listeners[%zu].tls.certificates[%zu].%s (%s)", i, k,
                         msg, why);
        }
    }
    for (size_t i = 0; i < conf->nupstreams; i++) {
        const struct conf_upstream *u = &conf->upstreams[i];
        if (!u->tls.enabled)
            continue;
        struct tls_client *tc = tls_client_new(u, why, sizeof(why));
        if (tc == NULL)
            conf_diag_at(diag, conf, u->tls.pos, "upstreams.%s.tls: %s",
                         u->name, why);
        tls_client_free(&tc);
    }
    return diag->n == before ? PT_OK : PT_ERROR;
}
