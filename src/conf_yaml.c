/*
 * conf_yaml.c -- portico's config schema: one declarative key table per
 * mapping of portico.yaml ({name, setter, offset, range}) and the setters
 * that check each value on its own (addresses, host names, header
 * fields, upstream groups), collecting every error.  The node tree is
 * conf_tree.c's, the walker conf_walk.c's; defaults, checks across values
 * and the dump are conf.c's.
 * Calls: conf_tree.c, conf_walk.c, util.c, conf.c (conf_diag_*).
 * Never: libyaml, sockets, logging.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "conf_tree.h"
#include "conf_walk.h"
#include "util.h"

#define KIB 1024ULL
#define MIB (1024 * KIB)
#define HOUR_MS (3600ULL * 1000)
#define DAY_MS (24 * HOUR_MS)

/* ---- top level and logs ---- */

static void set_workers(struct walk *w, const struct slot *at)
{
    struct conf *c = at->base;
    uint64_t v;

    if (ynode_is(at->val, "auto")) {
        c->workers_auto = 1;
        return;
    }
    if (walk_uint(w, at->val, "an integer or auto", &v) &&
        walk_range(w, at->k, at->val, v, NUM_INT)) {
        c->workers = (int)v;
        c->workers_auto = 0;
    }
}

/* POSIX portable user names, so a typo cannot smuggle odd bytes about. */
static void set_user(struct walk *w, const struct slot *at)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    const char *s = walk_text(w, at->val, "a user name");
    struct quoted q;

    if (s == NULL)
        return;
    if (s[0] == '-' || strspn(s, ok) != at->val->len) {
        walk_error(w, at->val,
                   "invalid user name %s (letters, digits, \".\", \"_\" "
                   "and \"-\" only)",
                   walk_quote(&q, at->val->str, at->val->len));
        return;
    }
    walk_set_string(w, at);
}

static void set_level(struct walk *w, const struct slot *at)
{
    const char *names[LOG_LVL_ERROR + 1];
    const char *s = walk_text(w, at->val, "a log level");

    if (s == NULL)
        return;
    for (int l = LOG_LVL_DEBUG; l <= LOG_LVL_ERROR; l++) {
        names[l] = conf_log_level_name((enum log_level)l);
        if (strcmp(s, names[l]) == 0) {
            *(enum log_level *)walk_field(at) = (enum log_level)l;
            return;
        }
    }
    walk_choice_error(w, at->val, names, PT_ARRAY_LEN(names));
}

static void set_format(struct walk *w, const struct slot *at)
{
    static const char *const names[] = {"combined", "json", "off"};
    static const enum access_format formats[] = {ACCESS_COMBINED, ACCESS_JSON,
                                                 ACCESS_OFF};
    const char *s = walk_text(w, at->val, "a log format");

    if (s == NULL)
        return;
    for (size_t i = 0; i < PT_ARRAY_LEN(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            *(int *)walk_field(at) = (int)formats[i];
            return;
        }
    }
    walk_choice_error(w, at->val, names, PT_ARRAY_LEN(names));
}

/* ---- listeners ---- */

static void set_listen(struct walk *w, const struct slot *at)
{
    struct conf_listener *l = at->base;
    const char *s =
        walk_text(w, at->val, "an address like \"127.0.0.1:8080\"");
    const char *why = NULL;
    struct quoted q;

    if (s == NULL)
        return;
    walk_store_string(&l->listen, pt_xmemdup(s, at->val->len));
    l->pos = at->val->pos;
    if (pt_parse_addr(s, &l->addr, &l->addrlen, &why) != PT_OK) {
        l->addrlen = 0; /* tells conf.c's duplicate check to skip it */
        walk_error(w, at->val, "cannot parse address %s: %s",
                   walk_quote(&q, at->val->str, at->val->len), why);
    }
}

/* A required key of a mapping: report it missing, with a hint of what
 * goes there.  Other node types have been reported by walk_map. */
static void walk_require(struct walk *w, const struct ynode *map,
                         const char *key, const char *hint)
{
    if (map->type == YNODE_MAP && ynode_get(map, key) == NULL)
        walk_error(w, map, "missing key \"%s\" (%s)", key, hint);
}

static void walk_listener(struct walk *w, const struct ynode *item,
                          const struct key_spec *keys, struct conf_listener *l)
{
    l->pos = item->pos;
    walk_map(w, item, keys, l);
    walk_require(w, item, "listen", "an address like \"127.0.0.1:8080\"");
}

static void set_listeners(struct walk *w, const struct slot *at)
{
    struct conf *c = at->base;

    if (!walk_expect(w, at->val, YNODE_SEQ, "a sequence"))
        return;
    if (at->val->nkids == 0) {
        conf_diag_at(w->diag, w->conf, at->val->pos,
                     "no listeners: add one under listeners:");
        return;
    }
    /* every item gets a slot, valid or not, so indexes match the file */
    c->listeners = pt_xcalloc(at->val->nkids, sizeof(*c->listeners));
    c->nlisteners = at->val->nkids;
    for (size_t i = 0; i < at->val->nkids; i++) {
        size_t mark = walk_push(w, "[%zu]", i);

        walk_listener(w, at->val->kids[i], at->k->sub, &c->listeners[i]);
        walk_pop(w, mark);
    }
}

/* ---- listeners: tls ---- */

static void walk_cert(struct walk *w, const struct ynode *item,
                      const struct key_spec *keys, struct conf_cert *cert)
{
    cert->pos = item->pos;
    walk_map(w, item, keys, cert);
    walk_require(w, item, "cert", "the certificate file, PEM, chain after it");
    walk_require(w, item, "key", "the certificate's private key file, PEM");
}

static void set_certificates(struct walk *w, const struct slot *at)
{
    struct conf_tls *tls = &((struct conf_listener *)at->base)->tls;

    if (!walk_expect(w, at->val, YNODE_SEQ,
                     "a sequence like [{ cert: site.crt, key: site.key }]"))
        return;
    if (at->val->nkids == 0) {
        walk_error(w, at->val,
                   "no certificates: add at least one { cert: FILE, "
                   "key: FILE }");
        return;
    }
    tls->certs = pt_xcalloc(at->val->nkids, sizeof(*tls->certs));
    tls->ncerts = at->val->nkids;
    for (size_t i = 0; i < at->val->nkids; i++) {
        size_t mark = walk_push(w, "[%zu]", i);

        walk_cert(w, at->val->kids[i], at->k->sub, &tls->certs[i]);
        walk_pop(w, mark);
    }
}

static void set_min_version(struct walk *w, const struct slot *at)
{
    struct conf_tls *tls = &((struct conf_listener *)at->base)->tls;
    const char *s = walk_text(w, at->val, "\"1.2\" or \"1.3\"");
    struct quoted q;

    if (s == NULL)
        return;
    if (strcmp(s, "1.2") == 0) {
        tls->min_version = 0x0303;
    } else if (strcmp(s, "1.3") == 0) {
        tls->min_version = 0x0304;
    } else {
        int old = strcmp(s, "1.0") == 0 || strcmp(s, "1.1") == 0;

        walk_error(w, at->val, "expected \"1.2\" or \"1.3\", got %s%s",
                   walk_quote(&q, at->val->str, at->val->len),
                   old ? " (TLS 1.0 and 1.1 are deprecated: RFC 8996)" : "");
    }
}

/* Writing tls: turns TLS on for the listener; certificates: is required. */
static void set_listener_tls(struct walk *w, const struct slot *at)
{
    struct conf_listener *l = at->base;

    l->tls.enabled = 1;
    l->tls.pos = at->key->pos;
    walk_set_section(w, at);
    walk_require(w, at->val, "certificates",
                 "a sequence like [{ cert: site.crt, key: site.key }]");
}

/* ---- host names, header fields, upstream names ---- */

static int host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static const char *host_labels_why(const char *h)
{
    const char *label = h;

    if (strlen(h) > 253)
        return "longer than 253 characters";
    for (const char *p = h;; p++) {
        if (*p == '.' || *p == '\0') {
            if (p == label)
                return "empty label (two dots, or a dot at either end)";
            if (p - label > 63)
                return "a label is longer than 63 characters";
            if (*p == '\0')
                return NULL;
            label = p + 1;
        } else if (*p == ':') {
            return "a host to match has no port";
        } else if (!host_char(*p)) {
            return "only letters, digits, \"-\", \"_\" and \".\" are allowed";
        }
    }
}

/* Why a lower-cased match host is unusable, or NULL. */
static const char *host_why(const char *h)
{
    char v6[INET6_ADDRSTRLEN];
    struct in6_addr a6;
    size_t len;

    if (strncmp(h, "*.", 2) == 0)
        h += 2;
    if (strchr(h, '*') != NULL)
        return "\"*\" is only allowed as the whole first label, as in "
               "\"*.example.com\"";
    if (h[0] != '[')
        return host_labels_why(h);
    len = strlen(h);
    if (h[len - 1] != ']' || len - 2 >= sizeof(v6))
        return "not a valid bracketed IPv6 address";
    memcpy(v6, h + 1, len - 2);
    v6[len - 2] = '\0';
    if (inet_pton(AF_INET6, v6, &a6) != 1)
        return "not a valid bracketed IPv6 address";
    return NULL;
}

/* RFC 9110 5.6.2 token characters. */
static int token_ok(const char *s, size_t len)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";

    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9');

        if (!alnum && (c == '\0' || strchr(extra, c) == NULL))
            return 0;
    }
    return 1;
}

/* Field values may hold HTAB but no other control byte (CR/LF split). */
static int field_value_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if ((c < 0x20 && c != '\t') || c == 0x7F)
            return 0;
    }
    return 1;
}

static int header_token_ok(struct walk *w, const struct ynode *name)
{
    struct quoted q;

    if (token_ok(name->str, name->len))
        return 1;
    walk_error(w, name,
               "invalid header name %s (letters, digits and "
               "!#$%%&'*+-.^_`|~ only)",
               walk_quote(&q, name->str, name->len));
    return 0;
}

static int header_value_ok(struct walk *w, const struct ynode *name,
                           const struct ynode *value)
{
    size_t mark = walk_push(w, ".%s", name->str); /* a token: safe */
    int ok = walk_expect(w, value, YNODE_SCALAR, "a string");

    if (ok && !field_value_ok(value->str, value->len)) {
        walk_error(w, value,
                   "must not contain CR, LF, NUL or other "
                   "control characters");
        ok = 0;
    }
    walk_pop(w, mark);
    return ok;
}

#define UPSTREAM_NAME_MAX 64
#define UPSTREAM_NAME_RULE "letters, digits, \"_\" and \"-\"; at most 64"

/* Upstream names print safely in any message, path or dump. */
static int upstream_name_ok(const char *s, size_t len)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";

    return len >= 1 && len <= UPSTREAM_NAME_MAX && strspn(s, ok) == len;
}

/* ---- upstreams ---- */

static int addr_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static void set_server_address(struct walk *w, const struct slot *at)
{
    struct conf_server *s = at->base;
    const char *a =
        walk_text(w, at->val, "an address like \"127.0.0.1:3000\"");
    const char *why = NULL;
    struct quoted q;

    if (a == NULL)
        return;
    walk_store_string(&s->address, pt_xmemdup(a, at->val->len));
    s->pos = at->val->pos;
    walk_quote(&q, at->val->str, at->val->len);
    if (pt_parse_addr(a, &s->addr, &s->addrlen, &why) != PT_OK) {
        s->addrlen = 0; /* tells conf.c's duplicate check to skip it */
        walk_error(w, at->val, "cannot parse address %s: %s", q.s, why);
    } else if (addr_port(&s->addr) == 0) {
        s->addrlen = 0;
        walk_error(w, at->val,
                   "cannot use address %s: port 0 is for listeners; a "
                   "server needs 1..65535",
                   q.s);
    }
}

static void walk_server(struct walk *w, const struct ynode *item,
                        const struct key_spec *keys, struct conf_server *s)
{
    s->pos = item->pos;
    walk_map(w, item, keys, s);
    walk_require(w, item, "address", "an address like \"127.0.0.1:3000\"");
}

static void set_servers(struct walk *w, const struct slot *at)
{
    struct conf_upstream *u = at->base;

    if (!walk_expect(w, at->val, YNODE_SEQ, "a sequence"))
        return;
    if (at->val->nkids == 0) {
        walk_error(w, at->val, "no servers: add at least one");
        return;
    }
    u->servers = pt_xcalloc(at->val->nkids, sizeof(*u->servers));
    u->nservers = at->val->nkids;
    for (size_t i = 0; i < at->val->nkids; i++) {
        size_t mark = walk_push(w, "[%zu]", i);

        walk_server(w, at->val->kids[i], at->k->sub, &u->servers[i]);
        walk_pop(w, mark);
    }
}

static const char *const balance_names[] = {"round_robin", "least_conn",
                                            "hash"};

/* The balance val names, or -1. */
static int balance_find(const struct ynode *val)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(balance_names); i++) {
        if (ynode_is(val, balance_names[i]))
            return (int)i;
    }
    return -1;
}

static void set_balance(struct walk *w, const struct slot *at)
{
    struct conf_upstream *u = at->base;
    static const enum conf_balance values[] = {
        BALANCE_ROUND_ROBIN, BALANCE_LEAST_CONN, BALANCE_HASH};
    int i;

    if (walk_text(w, at->val, "a balance method") == NULL)
        return;
    i = balance_find(at->val);
    if (i < 0)
        walk_choice_error(w, at->val, balance_names,
                          PT_ARRAY_LEN(balance_names));
    else
        u->balance = values[i];
}

static void set_hash_key(struct walk *w, const struct slot *at)
{
    static const char *const names[] = {"client", "uri", "header:NAME"};
    static const char prefix[] = "header:";
    struct conf_upstream *u = at->base;
    const char *s = walk_text(w, at->val, "client, uri or header:NAME");
    size_t plen = sizeof(prefix) - 1;
    struct quoted q;

    if (s == NULL)
        return;
    if (strcmp(s, "client") == 0) {
        u->hash_key = HASH_CLIENT;
    } else if (strcmp(s, "uri") == 0) {
        u->hash_key = HASH_URI;
    } else if (strncmp(s, prefix, plen) != 0) {
        walk_choice_error(w, at->val, names, PT_ARRAY_LEN(names));
    } else if (!token_ok(s + plen, at->val->len - plen)) {
        walk_error(w, at->val,
                   "invalid header name after \"header:\" in %s (letters, "
                   "digits and !#$%%&'*+-.^_`|~ only)",
                   walk_quote(&q, at->val->str, at->val->len));
    } else {
        u->hash_key = HASH_HEADER;
        walk_store_string(&u->hash_header,
                          pt_xmemdup(s + plen, at->val->len - plen));
    }
}

/* "1".."65535" without sign or leading zero. */
static int port_ok(const char *p)
{
    size_t n = strspn(p, "0123456789");

    return n >= 1 && n <= 5 && p[n] == '\0' && p[0] != '0' &&
           strtoul(p, NULL, 10) <= 65535;
}

/* Why s is not a usable Host value "name[:port]" / "[v6][:port]", or
 * NULL.  It is sent verbatim, so nothing may split the header. */
static const char *host_port_why(const char *s)
{
    const char *end = s[0] == '[' ? strchr(s, ']') : strchr(s, ':');
    size_t hlen = end ? (size_t)(end - s) + (s[0] == '[') : strlen(s);
    const char *port = s + hlen;
    char host[256];

    if (s[0] == '[' && end == NULL)
        return "missing \"]\" after the IPv6 address";
    if (s[0] != '[' && end != NULL && strchr(end + 1, ':') != NULL)
        return "IPv6 addresses need brackets, e.g. [::1]:8080";
    if (*port != '\0' && (*port != ':' || !port_ok(port + 1)))
        return "a port must be \":1\" to \":65535\" right after the host";
    if (hlen == 0)
        return "missing host before the port";
    if (hlen >= sizeof(host))
        return "longer than 253 characters";
    for (size_t i = 0; i < hlen; i++)
        host[i] = pt_lower(s[i]);
    host[hlen] = '\0';
    if (strchr(host, '*') != NULL)
        return "a host to send cannot be a wildcard";
    return host_why(host);
}

static void set_upstream_host(struct walk *w, const struct slot *at)
{
    const char *s = walk_text(w, at->val, "a host like \"api.internal\"");
    const char *why;
    struct quoted q;

    if (s == NULL)
        return;
    why = host_port_why(s);
    if (why != NULL) {
        walk_error(w, at->val, "invalid host %s: %s",
                   walk_quote(&q, at->val->str, at->val->len), why);
        return;
    }
    walk_store_string(walk_field(at), pt_xmemdup(s, at->val->len));
}

/* Why s cannot be sent as TLS server name (and verified), or NULL. */
static const char *sni_why(const char *s, size_t len)
{
    struct in6_addr a6;
    struct in_addr a4;
    char host[256];

    if (len >= sizeof(host))
        return "longer than 253 characters";
    for (size_t i = 0; i <= len; i++)
        host[i] = pt_lower(s[i]);
    if (strchr(host, '*') != NULL)
        return "a server name cannot be a wildcard";
    if (host[0] == '[' || inet_pton(AF_INET, host, &a4) == 1 ||
        inet_pton(AF_INET6, host, &a6) == 1)
        return "an IP address is not a server name (RFC 6066)";
    if (strchr(host, ':') != NULL)
        return "a server name has no port";
    return host_labels_why(host);
}

static void set_sni(struct walk *w, const struct slot *at)
{
    const char *s = walk_text(w, at->val,
                              "a server name like "
                              "\"api.internal\"");
    const char *why;
    struct quoted q;

    if (s == NULL)
        return;
    why = sni_why(s, at->val->len);
    if (why != NULL) {
        walk_error(w, at->val, "invalid server name %s: %s",
                   walk_quote(&q, at->val->str, at->val->len), why);
        return;
    }
    walk_store_string(walk_field(at), pt_xmemdup(s, at->val->len));
}

static void set_flag(struct walk *w, const struct slot *at)
{
    int v;

    if (walk_bool(w, at->val, "true or false", &v))
        *(int *)walk_field(at) = v;
}

/* Writing tls: turns TLS to the servers on; its keys are optional. */
static void set_upstream_tls(struct walk *w, const struct slot *at)
{
    struct conf_upstream *u = at->base;

    u->tls.enabled = 1;
    u->tls.pos = at->key->pos;
    walk_set_section(w, at);
}

/* hash_key without balance: hash would be silently ignored. */
static void check_hash_key(struct walk *w, const struct ynode *map,
                           const struct conf_upstream *u)
{
    const struct ynode *key = ynode_get(map, "hash_key");
    const struct ynode *balance = ynode_get(map, "balance");

    if (key == NULL || u->balance == BALANCE_HASH)
        return;
    if (balance != NULL && balance_find(balance) < 0)
        return; /* the balance itself is wrong, and said so */
    walk_error(w, key, "hash_key needs balance: hash");
}

static void walk_upstream(struct walk *w, const struct ynode *name,
                          const struct ynode *val, const struct key_spec *keys,
                          struct conf_upstream *u)
{
    struct quoted q;
    size_t mark;

    conf_upstream_init(u);
    u->pos = name->pos;
    walk_quote(&q, name->str, name->len);
    if (upstream_name_ok(name->str, name->len))
        u->name = pt_xmemdup(name->str, name->len);
    else
        walk_error(w, name, "invalid upstream name %s (%s)", q.s,
                   UPSTREAM_NAME_RULE);
    mark = walk_push(w, ".%s", u->name ? u->name : q.s);
    walk_map(w, val, keys, u);
    walk_require(w, val, "servers",
                 "a sequence like [{ address: \"127.0.0.1:3000\" }]");
    if (val->type == YNODE_MAP)
        check_hash_key(w, val, u);
    walk_pop(w, mark);
}

static void set_upstreams(struct walk *w, const struct slot *at)
{
    struct conf *c = at->base;
    const struct ynode *map = at->val;

    if (!walk_expect(w, map, YNODE_MAP, "a mapping of names to upstreams"))
        return;
    c->upstreams = pt_xcalloc(map->nkids / 2, sizeof(*c->upstreams));
    for (size_t i = 0; i + 1 < map->nkids; i += 2) {
        if (walk_key_ok(w, map, i))
            walk_upstream(w, map->kids[i], map->kids[i + 1], at->k->sub,
                          &c->upstreams[c->nupstreams++]);
    }
}

/* ---- routes ---- */

static void set_host(struct walk *w, const struct slot *at)
{
    const char *s = walk_text(w, at->val, "a host name");
    const char *why;
    struct quoted q;
    char *host;

    if (s == NULL)
        return;
    host = pt_xmemdup(s, at->val->len);
    for (char *p = host; *p != '\0'; p++)
        *p = pt_lower(*p); /* Host matching is case-insensitive */
    why = host_why(host);
    if (why != NULL) {
        walk_error(w, at->val, "invalid host %s: %s",
                   walk_quote(&q, at->val->str, at->val->len), why);
        free(host);
        return;
    }
    walk_store_string(walk_field(at), host);
}

static void set_path_prefix(struct walk *w, const struct slot *at)
{
    const char *s = walk_text(w, at->val, "a path like /api");
    struct quoted q;

    if (s == NULL)
        return;
    walk_quote(&q, at->val->str, at->val->len);
    if (s[0] != '/') {
        walk_error(w, at->val, "must start with \"/\", got %s", q.s);
        return;
    }
    for (const char *p = s; *p != '\0'; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7F) {
            walk_error(w, at->val, "%s contains a space or control character",
                       q.s);
            return;
        }
        if (*p == '?' || *p == '#') {
            walk_error(w, at->val, "%s must not contain \"?\" or \"#\"", q.s);
            return;
        }
    }
    walk_store_string(walk_field(at), pt_xmemdup(s, at->val->len));
}

/* health_check.path: a request target in origin form; a query is fine. */
static void set_health_path(struct walk *w, const struct slot *at)
{
    const char *s = walk_text(w, at->val, "a path like /healthz");
    struct quoted q;

    if (s == NULL)
        return;
    walk_quote(&q, at->val->str, at->val->len);
    if (s[0] != '/') {
        walk_error(w, at->val, "must start with \"/\", got %s", q.s);
        return;
    }
    for (const char *p = s; *p != '\0'; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7F || *p == '#') {
            walk_error(w, at->val,
                       "%s contains a space, control character or \"#\"",
                       q.s);
            return;
        }
    }
    walk_store_string(walk_field(at), pt_xmemdup(s, at->val->len));
}

/* Writing health_check: turns the checks on; its keys are optional. */
static void set_health_check(struct walk *w, const struct slot *at)
{
    ((struct conf_upstream *)at->base)->health_check.enabled = 1;
    walk_set_section(w, at);
}

static void set_body(struct walk *w, const struct slot *at)
{
    struct conf_respond *rs = &((struct conf_route *)at->base)->respond;

    if (!walk_expect(w, at->val, YNODE_SCALAR, "a string"))
        return;
    /* "" is a fine body, and a NUL byte is just a byte here */
    walk_store_string(&rs->body, pt_xmemdup(at->val->str, at->val->len));
    rs->body_len = at->val->len;
}

/* A response header of respond: -- framing is portico's job: a fixed
 * value here would contradict it. */
static int header_name_ok(struct walk *w, const struct ynode *name)
{
    static const char *const reserved[] = {
        "Content-Length", "Transfer-Encoding", "Connection", "Date", "Server"};
    struct pt_str view = {name->str, name->len};
    struct quoted q;

    if (!header_token_ok(w, name))
        return 0;
    for (size_t i = 0; i < PT_ARRAY_LEN(reserved); i++) {
        if (pt_str_ieq(view, reserved[i])) {
            walk_error(w, name, "header %s is set by portico",
                       walk_quote(&q, name->str, name->len));
            return 0;
        }
    }
    return 1;
}

static void set_headers(struct walk *w, const struct slot *at)
{
    struct conf_respond *rs = &((struct conf_route *)at->base)->respond;

    if (!walk_expect(w, at->val, YNODE_MAP, "a mapping"))
        return;
    rs->headers = pt_xcalloc(at->val->nkids / 2, sizeof(*rs->headers));
    for (size_t i = 0; i + 1 < at->val->nkids; i += 2) {
        const struct ynode *name = at->val->kids[i],
                           *value = at->val->kids[i + 1];
        struct conf_header *h = &rs->headers[rs->nheaders];

        if (!walk_key_ok(w, at->val, i) || !header_name_ok(w, name) ||
            !header_value_ok(w, name, value))
            continue;
        h->name = pt_xmemdup(name->str, name->len);
        h->value = pt_xmemdup(value->str, value->len);
        rs->nheaders++;
    }
}

/* 1xx, 204 and 304 responses end at the head (RFC 9112 6.3). */
static int status_allows_body(int status)
{
    return !(status >= 100 && status < 200) && status != 204 && status != 304;
}

static void set_respond(struct walk *w, const struct slot *at)
{
    struct conf_route *r = at->base;
    struct conf_respond *rs = &r->respond;
    const struct ynode *body = ynode_get(at->val, "body");

    r->has_respond = 1;
    walk_map(w, at->val, at->k->sub, at->base);
    if (body != NULL && rs->body_len > 0 && !status_allows_body(rs->status)) {
        size_t mark = walk_push(w, ".body");

        walk_error(w, body, "a %d response cannot have a body", rs->status);
        walk_pop(w, mark);
    }
}

/* The name only; conf.c finds the upstream once all are read. */
static void set_route_upstream(struct walk *w, const struct slot *at)
{
    struct conf_route *r = at->base;
    const char *s = walk_text(w, at->val, "an upstream name");
    struct quoted q;

    if (s == NULL)
        return;
    if (!upstream_name_ok(s, at->val->len)) {
        walk_error(w, at->val, "invalid upstream name %s (%s)",
                   walk_quote(&q, at->val->str, at->val->len),
                   UPSTREAM_NAME_RULE);
        return;
    }
    walk_store_string(&r->upstream_name, pt_xmemdup(s, at->val->len));
    r->upstream_pos = at->val->pos;
}

/* true (443), false (off) or the port of the https listener. */
static void set_https_redirect(struct walk *w, const struct slot *at)
{
    struct conf_route *r = at->base;
    int on;
    uint64_t v;

    if (at->val->type == YNODE_SCALAR && at->val->plain &&
        (ynode_is(at->val, "true") || ynode_is(at->val, "false"))) {
        walk_bool(w, at->val, "true or false", &on);
        r->https_redirect = on ? 443 : 0;
        return;
    }
    if (walk_uint(w, at->val, "true, false or a port 1..65535", &v) &&
        walk_range(w, at->k, at->val, v, NUM_INT))
        r->https_redirect = (int)v;
}

/* ---- routes: headers.request / headers.response ---- */

/* What the setters of one direction's set/add/remove share. */
struct ops_walk {
    struct conf_header_ops *ops; /* borrowed: what is filled */
    int request;                 /* headers.request, not .response */
    const struct ynode **names;  /* owns the array: names accepted so far */
    size_t nnames;
};

/* Framing and connection management are per hop and portico's job. */
static const char *const managed_request[] = {
    "Host",       "Content-Length", "Transfer-Encoding",
    "Connection", "Keep-Alive",     "TE",
    "Trailer",    "Upgrade",        "Proxy-Connection"};
static const char *const managed_response[] = {
    "Content-Length", "Transfer-Encoding", "Connection",
    "Keep-Alive",     "Trailer",           "Upgrade"};

static int ops_managed(const struct ops_walk *ow, struct pt_str name)
{
    const char *const *list = ow->request ? managed_request : managed_response;
    size_t n = ow->request ? PT_ARRAY_LEN(managed_request)
                           : PT_ARRAY_LEN(managed_response);

    for (size_t i = 0; i < n; i++) {
        if (pt_str_ieq(name, list[i]))
            return 1;
    }
    return 0;
}

/* "upstreams.app.host" when the route names a valid upstream. */
static const char *host_hint(const struct walk *w)
{
    static char buf[UPSTREAM_NAME_MAX + 32];
    const struct ynode *up = w->route_upstream;

    if (up == NULL || up->type != YNODE_SCALAR ||
        !upstream_name_ok(up->str, up->len))
        return "use upstreams.NAME.host";
    snprintf(buf, sizeof(buf), "use upstreams.%s.host", up->str);
    return buf;
}

/*
 * Checks one header name of set/add/remove: a token, not managed by
 * portico, and not given before in this direction in any case (the
 * order set, add and remove apply in must not matter).
 */
static int ops_name_ok(struct walk *w, struct ops_walk *ow,
                       const struct ynode *name)
{
    struct pt_str view = {name->str, name->len};
    struct quoted q;

    if (!header_token_ok(w, name))
        return 0;
    walk_quote(&q, name->str, name->len);
    if (ops_managed(ow, view)) {
        if (pt_str_ieq(view, "Host"))
            walk_error(w, name, "header %s is managed by portico (%s)", q.s,
                       host_hint(w));
        else
            walk_error(w, name, "header %s is managed by portico", q.s);
        return 0;
    }
    for (size_t i = 0; i < ow->nnames; i++) {
        const struct ynode *prev = ow->names[i];

        if (!pt_str_ieq(view, prev->str))
            continue;
        walk_error(w, name,
                   "header %s is already named at %d:%d (each name once "
                   "per direction, in any case)",
                   q.s, prev->pos.line, prev->pos.col);
        return 0;
    }
    ow->names[ow->nnames++] = name; /* room: see ops_count */
    return 1;
}

/* set: and add: -- a mapping of names to values. */
static void ops_fields(struct walk *w, const struct slot *at,
                       struct conf_header **out, size_t *n)
{
    struct ops_walk *ow = at->base;

    if (!walk_expect(w, at->val, YNODE_MAP, "a mapping of header fields"))
        return;
    *out = pt_xcalloc(at->val->nkids / 2, sizeof(**out));
    for (size_t i = 0; i + 1 < at->val->nkids; i += 2) {
        const struct ynode *name = at->val->kids[i],
                           *value = at->val->kids[i + 1];
        struct conf_header *h = &(*out)[*n];

        if (!walk_key_ok(w, at->val, i) || !ops_name_ok(w, ow, name) ||
            !header_value_ok(w, name, value))
            continue;
        h->name = pt_xmemdup(name->str, name->len);
        h->value = pt_xmemdup(value->str, value->len);
        (*n)++;
    }
}

static void set_ops_set(struct walk *w, const struct slot *at)
{
    struct ops_walk *ow = at->base;

    ops_fields(w, at, &ow->ops->set, &ow->ops->nset);
}

static void set_ops_add(struct walk *w, const struct slot *at)
{
    struct ops_walk *ow = at->base;

    ops_fields(w, at, &ow->ops->add, &ow->ops->nadd);
}

/* remove: -- a sequence of names. */
static void set_ops_remove(struct walk *w, const struct slot *at)
{
    struct ops_walk *ow = at->base;
    struct conf_header_ops *ops = ow->ops;

    if (!walk_expect(w, at->val, YNODE_SEQ, "a sequence of header names"))
        return;
    ops->remove = pt_xcalloc(at->val->nkids, sizeof(*ops->remove));
    for (size_t i = 0; i < at->val->nkids; i++) {
        const struct ynode *name = at->val->kids[i];
        size_t mark = walk_push(w, "[%zu]", i);

        if (walk_expect(w, name, YNODE_SCALAR, "a header name") &&
            ops_name_ok(w, ow, name))
            ops->remove[ops->nremove++] = pt_xmemdup(name->str, name->len);
        walk_pop(w, mark);
    }
}

/* At least as many names as set/add/remove of map can hold. */
static size_t ops_count(const struct ynode *map)
{
    size_t n = 0;

    for (size_t i = 1; map->type == YNODE_MAP && i < map->nkids; i += 2)
        n += map->kids[i]->nkids;
    return n;
}

/* request: / response: -- the field is the route's conf_header_ops. */
static void set_header_ops(struct walk *w, const struct slot *at)
{
    struct ops_walk ow = {
        .ops = walk_field(at),
        /* the two directions share a table; the field tells them apart */
        .request = at->k->off == offsetof(struct conf_route, request_headers),
        .names = pt_xcalloc(ops_count(at->val), sizeof(*ow.names)),
    };

    walk_map(w, at->val, at->k->sub, &ow);
    free(ow.names);
}

/* timeouts: or headers: in a respond: route: nothing to apply them to. */
static void only_with_upstream(struct walk *w, const struct ynode *item,
                               const char *key, const char *why)
{
    const struct ynode *k = ynode_get_key(item, key);

    if (k != NULL)
        walk_error(w, k, "%s: only with upstream:%s", key, why);
}

static void walk_route(struct walk *w, const struct ynode *item,
                       const struct key_spec *keys, struct conf_route *r)
{
    const struct ynode *respond, *upstream, *later;

    r->pos = item->pos;
    w->route_upstream = ynode_get(item, "upstream");
    walk_map(w, item, keys, r);
    w->route_upstream = NULL;
    if (item->type != YNODE_MAP)
        return;
    respond = ynode_get_key(item, "respond");
    upstream = ynode_get_key(item, "upstream");
    if (respond == NULL && upstream == NULL) {
        walk_error(w, item, "no action: add respond: or upstream:");
    } else if (respond != NULL && upstream != NULL) {
        later = respond->pos.line > upstream->pos.line ||
                        (respond->pos.line == upstream->pos.line &&
                         respond->pos.col > upstream->pos.col)
                    ? respond
                    : upstream;
        walk_error(w, later, "a route takes respond: or upstream:, not both");
    } else if (respond != NULL) {
        only_with_upstream(w, item, "timeouts", "");
        only_with_upstream(w, item, "headers",
                           " (respond: has its own headers)");
    }
}

static void set_routes(struct walk *w, const struct slot *at)
{
    struct conf *c = at->base;

    if (!walk_expect(w, at->val, YNODE_SEQ, "a sequence"))
        return;
    c->routes = pt_xcalloc(at->val->nkids, sizeof(*c->routes));
    c->nroutes = at->val->nkids;
    for (size_t i = 0; i < at->val->nkids; i++) {
        size_t mark = walk_push(w, "[%zu]", i);

        walk_route(w, at->val->kids[i], at->k->sub, &c->routes[i]);
        walk_pop(w, mark);
    }
}

/* ---- the key tables ---- */

#define WHY_TIMEOUT "0 would fire at once; over a day is not a timeout"
#define WHY_IDLE "0 would fire at once; streams may idle for days, not weeks"

static const struct key_spec error_log_keys[] = {
    FIELD("path", walk_set_string, struct conf, error_log.path),
    FIELD("level", set_level, struct conf, error_log.level),
    {0},
};

static const struct key_spec access_log_keys[] = {
    FIELD("path", walk_set_string, struct conf, access_log.path),
    FIELD("format", set_format, struct conf, access_log.format),
    {0},
};

static const struct key_spec limits_keys[] = {
    NUM("max_connections", walk_set_uint, struct conf, limits.max_connections,
        1, 1000000, "per worker; each holds a file descriptor"),
    NUM_POS("max_header_bytes", walk_set_size, struct conf,
            limits.max_header_bytes, KIB, MIB,
            "below 1k real browsers break; above 1m only helps attacks",
            pos.max_header_bytes),
    NUM("max_headers", walk_set_uint, struct conf, limits.max_headers, 1, 1000,
        "every header costs work on every request"),
    NUM_POS("max_uri_bytes", walk_set_size, struct conf, limits.max_uri_bytes,
            256, MIB,
            "below 256 real sites break; above 1m only helps attacks",
            pos.max_uri_bytes),
    NUM("max_body_bytes", walk_set_size, struct conf, limits.max_body_bytes, 0,
        UINT64_MAX, "0 means unlimited"),
    {0},
};

static const struct key_spec timeouts_keys[] = {
    NUM("client_header", walk_set_duration, struct conf,
        timeouts.client_header, 1, DAY_MS, WHY_TIMEOUT),
    NUM("client_body", walk_set_duration, struct conf, timeouts.client_body, 1,
        DAY_MS, WHY_TIMEOUT),
    NUM("keepalive", walk_set_duration, struct conf, timeouts.keepalive, 1,
        DAY_MS, WHY_TIMEOUT),
    NUM("send", walk_set_duration, struct conf, timeouts.send, 1, DAY_MS,
        WHY_TIMEOUT),
    NUM("shutdown_grace", walk_set_duration, struct conf,
        timeouts.shutdown_grace, 0, DAY_MS,
        "0 stops at once; over a day would stall every restart"),
    NUM("upstream_connect", walk_set_duration, struct conf,
        timeouts.upstream_connect, 1, DAY_MS, WHY_TIMEOUT),
    NUM("upstream_send", walk_set_duration, struct conf,
        timeouts.upstream_send, 1, DAY_MS, WHY_TIMEOUT),
    NUM("upstream_read", walk_set_duration, struct conf,
        timeouts.upstream_read, 1, DAY_MS, WHY_TIMEOUT),
    NUM("websocket_idle", walk_set_duration, struct conf,
        timeouts.websocket_idle, 1, 7 * DAY_MS, WHY_IDLE),
    NUM("sse_idle", walk_set_duration, struct conf, timeouts.sse_idle, 1,
        7 * DAY_MS, WHY_IDLE),
    {0},
};

static const struct key_spec cert_keys[] = {
    FIELD_POS("cert", walk_set_path, struct conf_cert, cert, cert_pos),
    FIELD_POS("key", walk_set_path, struct conf_cert, key, key_pos),
    {0},
};

/* base: the struct conf_listener */
static const struct key_spec listener_tls_keys[] = {
    SECTION("certificates", set_certificates, cert_keys),
    OTHER("min_version", set_min_version),
    FIELD("ciphers", walk_set_string, struct conf_listener, tls.ciphers),
    FIELD("ciphersuites", walk_set_string, struct conf_listener,
          tls.ciphersuites),
    {0},
};

/* A listener's or a route's access_log: only the format changes; the
 * file stays the global access_log.path. */
static const struct key_spec listener_access_keys[] = {
    FIELD("format", set_format, struct conf_listener, access_format),
    {0},
};

static const struct key_spec route_access_keys[] = {
    FIELD("format", set_format, struct conf_route, access_format),
    {0},
};

static const struct key_spec listener_keys[] = {
    SECTION("access_log", walk_set_section, listener_access_keys),
    FIELD("listen", set_listen, struct conf_listener, listen),
    NUM("backlog", walk_set_uint, struct conf_listener, backlog, 1, 65535,
        "the kernel caps it at net.core.somaxconn anyway"),
    SECTION("tls", set_listener_tls, listener_tls_keys),
    {0},
};

static const struct key_spec server_keys[] = {
    OTHER("address", set_server_address),
    NUM("weight", walk_set_uint, struct conf_server, weight, 1, 1000,
        "a share relative to the other servers; 1000 is fine enough"),
    {0},
};

static const struct key_spec upstream_timeouts_keys[] = {
    NUM("connect", walk_set_duration, struct conf_upstream, timeouts.connect,
        1, DAY_MS, WHY_TIMEOUT),
    NUM("send", walk_set_duration, struct conf_upstream, timeouts.send, 1,
        DAY_MS, WHY_TIMEOUT),
    NUM("read", walk_set_duration, struct conf_upstream, timeouts.read, 1,
        DAY_MS, WHY_TIMEOUT),
    {0},
};

static const struct key_spec health_keys[] = {
    FIELD("path", set_health_path, struct conf_upstream, health_check.path),
    NUM("interval", walk_set_duration, struct conf_upstream,
        health_check.interval, 100, HOUR_MS,
        "checks more often than every 100ms only load the server"),
    NUM("timeout", walk_set_duration, struct conf_upstream,
        health_check.timeout, 1, HOUR_MS,
        "0 would fail every check; over an hour is not a check"),
    NUM("fails", walk_set_uint, struct conf_upstream, health_check.fails, 1,
        100, "failed checks in a row before the server is taken out"),
    NUM("passes", walk_set_uint, struct conf_upstream, health_check.passes,
        1, 100, "passed checks in a row before the server comes back"),
    {0},
};

/* base: the struct conf_upstream */
static const struct key_spec upstream_tls_keys[] = {
    FIELD("verify", set_flag, struct conf_upstream, tls.verify),
    FIELD_POS("ca", walk_set_path, struct conf_upstream, tls.ca, tls.ca_pos),
    FIELD("sni", set_sni, struct conf_upstream, tls.sni),
    {0},
};

static const struct key_spec upstream_keys[] = {
    SECTION("servers", set_servers, server_keys),
    OTHER("balance", set_balance),
    OTHER("hash_key", set_hash_key),
    NUM("keepalive", walk_set_uint, struct conf_upstream, keepalive, 0, 10000,
        "idle connections per server and worker, each a file descriptor"),
    NUM("keepalive_timeout", walk_set_duration, struct conf_upstream,
        keepalive_timeout, 1, HOUR_MS,
        "it must end before the upstream's own idle timeout does"),
    NUM("retries", walk_set_uint, struct conf_upstream, retries, 0, 10,
        "each retry can add a connect timeout to the wait"),
    NUM("max_fails", walk_set_uint, struct conf_upstream, max_fails, 0, 1000,
        "0 turns passive health checks off"),
    NUM("fail_timeout", walk_set_duration, struct conf_upstream, fail_timeout,
        1, DAY_MS,
        "0 would never skip a failing server; over a day is "
        "not a timeout"),
    FIELD("host", set_upstream_host, struct conf_upstream, host),
    SECTION("timeouts", walk_set_section, upstream_timeouts_keys),
    SECTION("health_check", set_health_check, health_keys),
    SECTION("tls", set_upstream_tls, upstream_tls_keys),
    {0},
};

/* ---- cache ---- */

static void set_cache(struct walk *w, const struct slot *at)
{
    struct conf_cache *c = walk_field(at);

    c->enabled = 1;
    c->pos = at->key->pos;
    walk_map(w, at->val, at->k->sub, c);
}

/* A sequence of strings into a fresh array (names checked by check). */
static void set_string_seq(struct walk *w, const struct ynode *seq,
                           char ***out, size_t *n,
                           int (*check)(const char *, size_t),
                           const char *what)
{
    struct quoted q;

    if (!walk_expect(w, seq, YNODE_SEQ, "a sequence"))
        return;
    *out = pt_xcalloc(seq->nkids + 1, sizeof(char *));
    for (size_t i = 0; i < seq->nkids; i++) {
        const struct ynode *v = seq->kids[i];
        const char *s = walk_text(w, v, what);
        if (s == NULL)
            continue;
        if (!check(s, v->len)) {
            walk_error(w, v, "invalid %s %s", what,
                       walk_quote(&q, v->str, v->len));
            continue;
        }
        (*out)[(*n)++] = pt_xmemdup(s, v->len);
    }
}

/* A query parameter name, or a prefix ending in '*'. */
static int query_name_ok(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == '&' || s[i] == '=' ||
            s[i] == '#' || (s[i] == '*' && i + 1 != len))
            return 0;
    return 1;
}

static int field_name_ok(const char *s, size_t len)
{
    return token_ok(s, len);
}

static void set_cache_drop(struct walk *w, const struct slot *at)
{
    struct conf_route_cache *c = at->base;

    set_string_seq(w, at->val, &c->drop_query, &c->ndrop_query,
                   query_name_ok, "query parameter name");
}

static void set_cache_headers(struct walk *w, const struct slot *at)
{
    struct conf_route_cache *c = at->base;

    set_string_seq(w, at->val, &c->headers, &c->nheaders, field_name_ok,
                   "header name");
}

static void set_cache_sort(struct walk *w, const struct slot *at)
{
    walk_bool(w, at->val, "true or false",
              &((struct conf_route_cache *)at->base)->sort_query);
}

static const struct key_spec route_cache_key_keys[] = {
    OTHER("sort_query", set_cache_sort),
    OTHER("drop_query", set_cache_drop),
    OTHER("headers", set_cache_headers),
    {0},
};

static const struct key_spec route_cache_keys[] = {
    NUM("ttl", walk_set_duration, struct conf_route_cache, ttl, 1000,
        365 * DAY_MS, "cache lifetimes are counted in seconds"),
    SECTION("key", walk_set_section, route_cache_key_keys),
    NUM("max_variants", walk_set_uint, struct conf_route_cache, max_variants,
        1, 1000, "each variant is an entry of its own"),
    {0},
};

/* cache: true | false | { ttl, key } */
static void set_route_cache(struct walk *w, const struct slot *at)
{
    struct conf_route *r = at->base;

    r->cache.pos = at->key->pos;
    r->cache.max_variants = 16;
    if (at->val->type == YNODE_SCALAR) {
        walk_bool(w, at->val, "true, false or a mapping", &r->cache.enabled);
        return;
    }
    r->cache.enabled = 1;
    walk_map(w, at->val, route_cache_keys, &r->cache);
}

static const struct key_spec match_keys[] = {
    FIELD("host", set_host, struct conf_route, host),
    FIELD("path_prefix", set_path_prefix, struct conf_route, path_prefix),
    {0},
};

static const struct key_spec respond_keys[] = {
    NUM("status", walk_set_uint, struct conf_route, respond.status, 200, 599,
        "a final response: 2xx to 5xx"),
    OTHER("body", set_body),
    OTHER("headers", set_headers),
    {0},
};

static const struct key_spec route_timeouts_keys[] = {
    NUM("connect", walk_set_duration, struct conf_route, timeouts.connect, 1,
        DAY_MS, WHY_TIMEOUT),
    NUM("send", walk_set_duration, struct conf_route, timeouts.send, 1, DAY_MS,
        WHY_TIMEOUT),
    NUM("read", walk_set_duration, struct conf_route, timeouts.read, 1, DAY_MS,
        WHY_TIMEOUT),
    {0},
};

/* base: a struct ops_walk */
static const struct key_spec header_ops_keys[] = {
    OTHER("set", set_ops_set),
    OTHER("add", set_ops_add),
    OTHER("remove", set_ops_remove),
    {0},
};

static const struct key_spec route_headers_keys[] = {
    SECTION_AT("request", set_header_ops, struct conf_route, request_headers,
               header_ops_keys),
    SECTION_AT("response", set_header_ops, struct conf_route, response_headers,
               header_ops_keys),
    {0},
};

static const struct key_spec route_keys[] = {
    SECTION("match", walk_set_section, match_keys),
    SECTION("respond", set_respond, respond_keys),
    OTHER("upstream", set_route_upstream),
    SECTION("timeouts", walk_set_section, route_timeouts_keys),
    SECTION("headers", walk_set_section, route_headers_keys),
    NUM("https_redirect", set_https_redirect, struct conf_route,
        https_redirect, 1, 65535,
        "the port of the https listener; false turns the redirect off"),
    SECTION("access_log", walk_set_section, route_access_keys),
    SECTION("cache", set_route_cache, route_cache_keys),
    {0},
};

/* ---- admin ---- */

static void set_admin_listen(struct walk *w, const struct slot *at)
{
    struct conf_admin *a = at->base;
    struct slot s = *at;

    s.base = &a->listener;
    set_listen(w, &s);
}

/* "127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8" */
static int parse_allow(const char *s, struct conf_allow *out)
{
    char ip[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t iplen = slash ? (size_t)(slash - s) : strlen(s);
    unsigned max, prefix;

    if (iplen == 0 || iplen >= sizeof(ip))
        return PT_ERROR;
    memcpy(ip, s, iplen);
    ip[iplen] = '\0';
    if (inet_pton(AF_INET, ip, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, ip, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return PT_ERROR;
    }
    prefix = max;
    if (slash) {
        char *end;
        unsigned long v = strtoul(slash + 1, &end, 10);
        if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || v > max)
            return PT_ERROR;
        prefix = (unsigned)v;
    }
    out->prefix = prefix;
    return PT_OK;
}

static void set_admin_allow(struct walk *w, const struct slot *at)
{
    struct conf_admin *a = at->base;
    const struct ynode *seq = at->val;
    struct quoted q;

    if (!walk_expect(w, seq, YNODE_SEQ, "a sequence of addresses"))
        return;
    a->allow = calloc(seq->nkids + 1, sizeof(*a->allow));
    if (a->allow == NULL)
        pt_oom();
    for (size_t i = 0; i < seq->nkids; i++) {
        const struct ynode *v = seq->kids[i];
        const char *s = walk_text(w, v, "an address like 10.0.0.0/8 or ::1");
        if (s == NULL)
            continue;
        if (parse_allow(s, &a->allow[a->nallow]) < 0) {
            walk_error(w, v,
                       "cannot parse %s: expected an IPv4 or IPv6 address, "
                       "with an optional /prefix",
                       walk_quote(&q, v->str, v->len));
            continue;
        }
        a->allow[a->nallow++].text = pt_xmemdup(s, v->len);
    }
}

static const struct key_spec admin_keys[] = {
    OTHER("listen", set_admin_listen),
    OTHER("allow", set_admin_allow),
    {0},
};

static void set_admin(struct walk *w, const struct slot *at)
{
    struct conf_admin *a = walk_field(at);

    a->enabled = 1;
    a->pos = at->key->pos;
    walk_map(w, at->val, at->k->sub, a);
}

/* cache.sendfile: true, false, auto or a size (copied a turn first). */
static void set_sendfile(struct walk *w, const struct slot *at)
{
    static const char what[] = "true, false, auto or a size like 16m";
    struct conf_cache *cc = at->base;
    const struct ynode *v = at->val;
    struct quoted q;
    uint64_t n;

    if (!walk_expect(w, v, YNODE_SCALAR, what))
        return;
    if (v->plain && ynode_is(v, "true")) {
        cc->sendfile = CONF_SENDFILE_ALWAYS;
    } else if (v->plain && ynode_is(v, "false")) {
        cc->sendfile = CONF_SENDFILE_NEVER;
    } else if (ynode_is(v, "auto")) {
        cc->sendfile = CONF_SENDFILE_AUTO;
    } else if (pt_parse_size(v->str, &n) == PT_OK &&
               strlen(v->str) == v->len) {
        cc->sendfile = CONF_SENDFILE_AFTER;
        cc->sendfile_after = n;
    } else {
        walk_error(w, v, "expected %s, got %s%s", what,
                   v->plain ? "" : "a quoted string ",
                   walk_quote(&q, v->str, v->len));
    }
}

static const struct key_spec cache_keys[] = {
    NUM_POS("size", walk_set_size, struct conf_cache, size, 1024 * 1024,
            (uint64_t)64 << 30, "one shared-memory zone, held in RAM",
            size_pos),
    NUM("max_object_size", walk_set_size, struct conf_cache,
        max_object_size, 1, (uint64_t)1 << 30,
        "a larger object would push too much else out"),
    NUM("default_ttl", walk_set_duration, struct conf_cache, default_ttl, 0,
        365 * DAY_MS, "counted in seconds; 0 uses only what responses say"),
    FIELD("sendfile", set_sendfile, struct conf_cache, sendfile),
    {0},
};

static const struct key_spec root_keys[] = {
    NUM("workers", set_workers, struct conf, workers, 1, 512,
        "one process per core is plenty"),
    FIELD_POS("user", set_user, struct conf, user, pos.user),
    FIELD("pid_file", walk_set_string, struct conf, pid_file),
    SECTION("error_log", walk_set_section, error_log_keys),
    SECTION("access_log", walk_set_section, access_log_keys),
    SECTION("limits", walk_set_section, limits_keys),
    SECTION("timeouts", walk_set_section, timeouts_keys),
    SECTION("listeners", set_listeners, listener_keys),
    SECTION("routes", set_routes, route_keys),
    SECTION("upstreams", set_upstreams, upstream_keys),
    SECTION_AT("cache", set_cache, struct conf, cache, cache_keys),
    SECTION_AT("admin", set_admin, struct conf, admin, admin_keys),
    {0},
};

static void walk_root(struct walk *w, const struct ynode *root)
{
    static const struct conf_pos start = {1, 1};

    if (root == NULL || ynode_is_null(root)) { /* empty file */
        conf_diag_at(w->diag, w->conf, root ? root->pos : start,
                     "no listeners: add one under listeners:");
        return;
    }
    if (root->type != YNODE_MAP) {
        if (root->type != YNODE_BAD)
            walk_error(w, root, "expected a mapping at the top level, got %s",
                       ynode_kind(root));
        return;
    }
    walk_map(w, root, root_keys, w->conf);
    if (ynode_get(root, "listeners") == NULL)
        walk_error(w, root, "no listeners: add one under listeners:");
}

int conf_yaml_parse(struct conf *conf, const char *buf, size_t len,
                    struct conf_diag *diag)
{
    struct walk w = {.conf = conf, .diag = diag};
    struct ynode *root = NULL;
    int rc = conf_tree_parse(conf, buf, len, diag, &root);

    if (rc == PT_OK)
        walk_root(&w, root);
    ynode_free(root);
    free(w.base_dir);
    return rc;
}

/* ---- the list of keys, for documentation checks ---- */

static void keys_walk(const struct key_spec *t, const char *prefix,
                      void (*fn)(const char *, const char *, void *),
                      void *arg)
{
    char path[256];

    for (; t && t->name; t++) {
        if (t->set == walk_set_unsupported)
            continue;
        snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "",
                 t->name);
        fn(path, t->name, arg);
        keys_walk(t->sub, path, fn, arg);
    }
}

void conf_yaml_keys(void (*fn)(const char *path, const char *name,
                               void *arg),
                    void *arg)
{
    keys_walk(root_keys, "", fn, arg);
}
