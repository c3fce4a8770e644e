/*
 * check_conf.c -- unit tests for the config loader (conf.c, conf_yaml.c)
 * and the value parsers it uses (util.c).
 *
 * Fixtures live in tests/unit/conf/.  Every good-*.yaml must load without
 * a diagnostic and its dump must load again to the same dump.  Every
 * bad-*.yaml opens with one "# expect: LINE:COL: error: MESSAGE" line per
 * error it must produce, and must produce exactly those, each prefixed
 * with the fixture's path.  Files are found under $PORTICO_SRCDIR, else
 * the PORTICO_SRCDIR define, else "../.." (running from tests/unit).
 * tests/unit/conf/tls/ holds real PEM files (EC P-256, CN=test.example
 * and other.example) for the fixtures to name; tls.c's tests may use them.
 * Calls: conf.h, util.h, check.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "conf.h"
#include "util.h"

#ifndef PORTICO_SRCDIR
#define PORTICO_SRCDIR "../.."
#endif

#define FIXTURES_MAX 256
#define EXPECT_TAG "# expect: "

static char *bad_fixtures[FIXTURES_MAX];
static size_t nbad;
static char *good_fixtures[FIXTURES_MAX];
static size_t ngood;

/* ---- helpers ---- */

static const char *srcdir(void)
{
    const char *dir = getenv("PORTICO_SRCDIR");

    return dir != NULL && dir[0] != '\0' ? dir : PORTICO_SRCDIR;
}

/* A path under the source tree; the caller frees it. */
static char *src_path(const char *rel)
{
    char *path;

    /* also used by main(), outside any test: no ck_assert here */
    if (asprintf(&path, "%s/%s", srcdir(), rel) < 0)
        abort();
    return path;
}

static struct conf *load_str(const char *yaml, struct conf_diag *diag)
{
    return conf_load_buffer("test.yaml", yaml, strlen(yaml), diag);
}

/* The dump of conf as a string; the caller frees it. */
static char *dump_string(const struct conf *conf)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    ck_assert_ptr_nonnull(f);
    conf_dump(conf, f);
    fclose(f);
    return buf;
}

static int diag_has(const struct conf_diag *diag, const char *msg)
{
    for (size_t i = 0; i < diag->n; i++) {
        if (strcmp(diag->msgs[i], msg) == 0)
            return 1;
    }
    return 0;
}

static void diag_print(const struct conf_diag *diag)
{
    for (size_t i = 0; i < diag->n; i++)
        fprintf(stderr, "  got: %s\n", diag->msgs[i]);
}

/* Loads yaml and checks it fails with exactly the one message given. */
static void expect_one_error(const char *yaml, const char *msg)
{
    struct conf_diag diag = {0};
    struct conf *conf = load_str(yaml, &diag);

    if (diag.n != 1 || strcmp(diag.msgs[0], msg) != 0)
        diag_print(&diag);
    ck_assert_ptr_null(conf);
    ck_assert_uint_eq(diag.n, 1);
    ck_assert_str_eq(diag.msgs[0], msg);
    conf_diag_fini(&diag);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists tests/unit/conf/PREFIX*.yaml into names[], sorted. */
static size_t fixtures_scan(const char *prefix, char **names)
{
    char *dir_path = src_path("tests/unit/conf");
    DIR *dir = opendir(dir_path);
    struct dirent *e;
    size_t n = 0;

    if (dir == NULL) {
        fprintf(stderr, "check_conf: cannot open %s\n", dir_path);
        free(dir_path);
        return 0;
    }
    while ((e = readdir(dir)) != NULL && n < FIXTURES_MAX) {
        size_t len = strlen(e->d_name);

        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && len > 5 &&
            strcmp(e->d_name + len - 5, ".yaml") == 0)
            names[n++] = strdup(e->d_name);
    }
    closedir(dir);
    free(dir_path);
    qsort(names, n, sizeof(*names), cmp_names);
    return n;
}

static void fixtures_free(void)
{
    for (size_t i = 0; i < nbad; i++)
        free(bad_fixtures[i]);
    for (size_t i = 0; i < ngood; i++)
        free(good_fixtures[i]);
}

/* ---- util.c: sizes and durations ---- */

START_TEST(test_size_ok)
{
    static const struct {
        const char *in;
        uint64_t out;
    } cases[] = {
        {"0", 0},
        {"512", 512},
        {"16k", 16384},
        {"16K", 16384},
        {"10m", 10485760},
        {"1g", 1073741824},
        {"1G", 1073741824},
        {"18446744073709551615", UINT64_MAX},
        {"17179869183g", 17179869183ULL << 30},
    };

    for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
        uint64_t v = 1;

        ck_assert_msg(pt_parse_size(cases[i].in, &v) == PT_OK, "%s",
                      cases[i].in);
        ck_assert_uint_eq(v, cases[i].out);
    }
}
END_TEST

START_TEST(test_size_bad)
{
    static const char *const bad[] = {
        "",
        "k",
        "12q",
        "1.5k",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1kb",
        "0x10",
        "18446744073709551616",
        "17179869184g",
        "1e3",
    };

    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++) {
        uint64_t v = 7;

        ck_assert_msg(pt_parse_size(bad[i], &v) == PT_ERROR, "%s", bad[i]);
        ck_assert_uint_eq(v, 7);
    }
}
END_TEST

START_TEST(test_duration_ok)
{
    static const struct {
        const char *in;
        uint64_t ms;
    } cases[] = {
        {"250ms", 250},  {"10s", 10000}, {"10", 10000}, {"5m", 300000},
        {"1h", 3600000}, {"0", 0},       {"0ms", 0},    {"24h", 86400000},
    };

    for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
        uint64_t v = 1;

        ck_assert_msg(pt_parse_duration(cases[i].in, &v) == PT_OK, "%s",
                      cases[i].in);
        ck_assert_uint_eq(v, cases[i].ms);
    }
}
END_TEST

START_TEST(test_duration_bad)
{
    static const char *const bad[] = {
        "",
        "s",
        "10x",
        "1.5s",
        "10S",
        "1d",
        "10 s",
        "-1s",
        "ms10",
        "5mm",
        "18446744073709551615h",
        "99999999999999999999",
    };

    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++) {
        uint64_t v = 7;

        ck_assert_msg(pt_parse_duration(bad[i], &v) == PT_ERROR, "%s", bad[i]);
        ck_assert_uint_eq(v, 7);
    }
}
END_TEST

START_TEST(test_format_units)
{
    char buf[32];

    ck_assert_str_eq(pt_format_size(0, buf, sizeof(buf)), "0");
    ck_assert_str_eq(pt_format_size(1000, buf, sizeof(buf)), "1000");
    ck_assert_str_eq(pt_format_size(16384, buf, sizeof(buf)), "16k");
    ck_assert_str_eq(pt_format_size(1536 * 1024, buf, sizeof(buf)), "1536k");
    ck_assert_str_eq(pt_format_size(10485760, buf, sizeof(buf)), "10m");
    ck_assert_str_eq(pt_format_size(1ULL << 40, buf, sizeof(buf)), "1024g");
    ck_assert_str_eq(pt_format_duration(0, buf, sizeof(buf)), "0s");
    ck_assert_str_eq(pt_format_duration(1, buf, sizeof(buf)), "1ms");
    ck_assert_str_eq(pt_format_duration(1500, buf, sizeof(buf)), "1500ms");
    ck_assert_str_eq(pt_format_duration(90000, buf, sizeof(buf)), "90s");
    ck_assert_str_eq(pt_format_duration(120000, buf, sizeof(buf)), "2m");
    ck_assert_str_eq(pt_format_duration(86400000, buf, sizeof(buf)), "24h");
}
END_TEST

START_TEST(test_str_eq)
{
    struct pt_str s = PT_STR("Content-Length");
    struct pt_str empty = {NULL, 0};

    ck_assert(pt_str_eq(s, "Content-Length"));
    ck_assert(!pt_str_eq(s, "content-length"));
    ck_assert(!pt_str_eq(s, "Content-Lengt"));
    ck_assert(pt_str_ieq(s, "content-LENGTH"));
    ck_assert(!pt_str_ieq(s, "content-lengthx"));
    ck_assert(pt_str_eq(empty, ""));
    ck_assert(pt_str_ieq(empty, ""));
    ck_assert(!pt_str_eq(empty, "a"));
}
END_TEST

/* ---- util.c: addresses ---- */

/* Parses s, checks it formats back as want, returns the family. */
static int addr_roundtrip(const char *s, const char *want)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    const char *why = NULL;
    char buf[64];

    ck_assert_msg(pt_parse_addr(s, &ss, &len, &why) == PT_OK, "%s: %s", s,
                  why);
    ck_assert_str_eq(pt_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)),
                     want);
    if (ss.ss_family == AF_INET)
        ck_assert_uint_eq(len, sizeof(struct sockaddr_in));
    else
        ck_assert_uint_eq(len, sizeof(struct sockaddr_in6));
    return ss.ss_family;
}

START_TEST(test_addr_ok)
{
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why;

    ck_assert_int_eq(addr_roundtrip("127.0.0.1:8080", "127.0.0.1:8080"),
                     AF_INET);
    ck_assert_int_eq(addr_roundtrip("0.0.0.0:0", "0.0.0.0:0"), AF_INET);
    ck_assert_int_eq(addr_roundtrip("[::1]:443", "[::1]:443"), AF_INET6);
    ck_assert_int_eq(addr_roundtrip("[::]:65535", "[::]:65535"), AF_INET6);
    ck_assert_int_eq(addr_roundtrip("[0:0::1]:80", "[::1]:80"), AF_INET6);
    ck_assert_int_eq(
        addr_roundtrip("[::ffff:10.0.0.1]:80", "[::ffff:10.0.0.1]:80"),
        AF_INET6);
    ck_assert_int_eq(pt_parse_addr("10.1.2.3:80", &ss, &len, &why), PT_OK);
    ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 80);
    ck_assert_uint_eq(ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr),
                      0x0A010203);
}
END_TEST

START_TEST(test_addr_bad)
{
    static const struct {
        const char *in;
        const char *why;
    } cases[] = {
        {"", "empty address"},
        {"127.0.0.1", "missing :port, e.g. 127.0.0.1:8080 or [::1]:8080"},
        {"[::1]", "missing :port, e.g. 127.0.0.1:8080 or [::1]:8080"},
        {"[::1]8080", "missing :port, e.g. 127.0.0.1:8080 or [::1]:8080"},
        {"127.0.0.1:", "the port must be a number 0..65535"},
        {"127.0.0.1:65536", "the port must be a number 0..65535"},
        {"127.0.0.1:80x", "the port must be a number 0..65535"},
        {"127.0.0.1:-1", "the port must be a number 0..65535"},
        {":8080", "missing address before the port, e.g. 0.0.0.0:8080"},
        {"[]:8080", "missing address before the port, e.g. 0.0.0.0:8080"},
        {"1.2.3:80",
         "not a valid IPv4 address (four numbers 0..255 joined by dots)"},
        {"256.1.1.1:80",
         "not a valid IPv4 address (four numbers 0..255 joined by dots)"},
        {"localhost:80",
         "numeric address required, e.g. 127.0.0.1:8080 or [::1]:8080"},
        {"*:80",
         "numeric address required, e.g. 127.0.0.1:8080 or [::1]:8080"},
        {"::1:80", "IPv6 addresses need brackets, e.g. [::1]:8080"},
        {"[::1:80", "missing \"]\" after the IPv6 address"},
        {"[::g]:80", "not a valid IPv6 address"},
        {"[fe80::1%eth0]:80", "not a valid IPv6 address"},
        {"[127.0.0.1]:80", "not a valid IPv6 address"},
    };

    for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
        struct sockaddr_storage ss;
        socklen_t len = 0;
        const char *why = NULL;

        ck_assert_msg(pt_parse_addr(cases[i].in, &ss, &len, &why) == PT_ERROR,
                      "%s", cases[i].in);
        ck_assert_ptr_nonnull(why);
        ck_assert_str_eq(why, cases[i].why);
    }
}
END_TEST

/* ---- conf: values and defaults ---- */

START_TEST(test_defaults)
{
    struct conf_diag diag = {0};
    struct conf *c =
        load_str("listeners:\n  - listen: \"127.0.0.1:8080\"\n", &diag);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(diag.n, 0);
    ck_assert_int_eq(c->workers_auto, 1);
    ck_assert_int_eq(c->workers, cores < 1 ? 1 : cores > 512 ? 512 : cores);
    ck_assert_ptr_null(c->user);
    ck_assert_ptr_null(c->pid_file);
    ck_assert_str_eq(c->error_log.path, "stderr");
    ck_assert_int_eq(c->error_log.level, LOG_LVL_INFO);
    ck_assert_str_eq(c->access_log.path, "stderr");
    ck_assert_int_eq(c->access_log.format, ACCESS_COMBINED);
    ck_assert_uint_eq(c->limits.max_connections, 10000);
    ck_assert_uint_eq(c->limits.max_header_bytes, 16 * 1024);
    ck_assert_uint_eq(c->limits.max_headers, 100);
    ck_assert_uint_eq(c->limits.max_uri_bytes, 8 * 1024);
    ck_assert_uint_eq(c->limits.max_body_bytes, 10 * 1024 * 1024);
    ck_assert_uint_eq(c->timeouts.client_header, 10000);
    ck_assert_uint_eq(c->timeouts.client_body, 60000);
    ck_assert_uint_eq(c->timeouts.keepalive, 75000);
    ck_assert_uint_eq(c->timeouts.send, 60000);
    ck_assert_uint_eq(c->timeouts.shutdown_grace, 30000);
    ck_assert_uint_eq(c->timeouts.upstream_connect, 3000);
    ck_assert_uint_eq(c->timeouts.upstream_send, 60000);
    ck_assert_uint_eq(c->timeouts.upstream_read, 60000);
    ck_assert_uint_eq(c->nupstreams, 0);
    ck_assert_ptr_null(c->upstreams);
    ck_assert_uint_eq(c->nlisteners, 1);
    ck_assert_int_eq(c->listeners[0].backlog, 511);
    ck_assert_int_eq(c->listeners[0].pos.line, 2);
    ck_assert_int_eq(c->listeners[0].pos.col, 13);
    ck_assert_uint_eq(c->nroutes, 0);
    conf_free(&c);
    ck_assert_ptr_null(c);
    conf_diag_fini(&diag);
}
END_TEST

static void check_full_routes(const struct conf *c)
{
    const struct conf_respond *rs = &c->routes[0].respond;

    ck_assert_uint_eq(c->nroutes, 4);
    ck_assert_str_eq(c->routes[0].host, "*.example.com"); /* lower-cased */
    ck_assert_str_eq(c->routes[0].path_prefix, "/api");
    ck_assert_int_eq(rs->status, 503);
    ck_assert_str_eq(rs->body, "down for maintenance\n");
    ck_assert_uint_eq(rs->body_len, strlen("down for maintenance\n"));
    ck_assert_uint_eq(rs->nheaders, 2);
    ck_assert_str_eq(rs->headers[0].name, "Content-Type");
    ck_assert_str_eq(rs->headers[0].value, "text/plain; charset=utf-8");
    ck_assert_str_eq(rs->headers[1].name, "Retry-After");
    ck_assert_str_eq(rs->headers[1].value, "120");
    ck_assert_str_eq(c->routes[1].host, "www.example.com");
    ck_assert_str_eq(c->routes[1].path_prefix, "/");
    ck_assert_int_eq(c->routes[1].respond.status, 301);
    ck_assert_ptr_null(c->routes[2].host);
    ck_assert_int_eq(c->routes[2].respond.status, 204);
    ck_assert_str_eq(c->routes[2].respond.body, "");
    ck_assert_int_eq(c->routes[3].respond.status, 200);
    ck_assert_int_eq(c->routes[3].pos.line, 44);
}

START_TEST(test_full_values)
{
    char *path = src_path("tests/unit/conf/good-full.yaml");
    struct conf_diag diag = {0};
    struct conf *c = conf_load_file(path, &diag);

    diag_print(&diag);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->workers, 3);
    ck_assert_int_eq(c->workers_auto, 0);
    ck_assert_str_eq(c->user, "nobody");
    ck_assert_str_eq(c->pid_file, "/run/portico.pid");
    ck_assert_str_eq(c->error_log.path, "/var/log/portico/error.log");
    ck_assert_int_eq(c->error_log.level, LOG_LVL_WARN);
    ck_assert_str_eq(c->access_log.path, "/var/log/portico/access.log");
    ck_assert_uint_eq(c->limits.max_connections, 20000);
    ck_assert_uint_eq(c->limits.max_header_bytes, 32 * 1024);
    ck_assert_uint_eq(c->limits.max_headers, 50);
    ck_assert_uint_eq(c->limits.max_uri_bytes, 4 * 1024);
    ck_assert_uint_eq(c->limits.max_body_bytes, 1ULL << 30);
    ck_assert_uint_eq(c->timeouts.client_header, 5000);
    ck_assert_uint_eq(c->timeouts.client_body, 30000);
    ck_assert_uint_eq(c->timeouts.keepalive, 120000);
    ck_assert_uint_eq(c->timeouts.send, 3600000);
    ck_assert_uint_eq(c->timeouts.shutdown_grace, 0);
    ck_assert_uint_eq(c->nlisteners, 3);
    ck_assert_str_eq(c->listeners[1].listen, "[::1]:8443");
    ck_assert_int_eq(c->listeners[1].addr.ss_family, AF_INET6);
    ck_assert_int_eq(c->listeners[1].backlog, 16);
    ck_assert_int_eq(c->listeners[2].backlog, 511);
    check_full_routes(c);
    conf_free(&c);
    conf_diag_fini(&diag);
    free(path);
}
END_TEST

static struct conf *load_fixture(const char *name)
{
    char *path = NULL;
    struct conf_diag diag = {0};
    struct conf *c;

    ck_assert_int_ge(asprintf(&path, "%s/tests/unit/conf/%s", srcdir(), name),
                     0);
    c = conf_load_file(path, &diag);
    diag_print(&diag);
    ck_assert_msg(c != NULL, "%s did not load", path);
    conf_diag_fini(&diag);
    free(path);
    return c;
}

static void check_upstream_app(const struct conf *c)
{
    const struct conf_upstream *u = &c->upstreams[0];

    ck_assert_str_eq(u->name, "app");
    ck_assert_int_eq(u->pos.line, 9);
    ck_assert_uint_eq(u->nservers, 3);
    ck_assert_str_eq(u->servers[0].address, "127.0.0.1:3000");
    ck_assert_int_eq(u->servers[0].addr.ss_family, AF_INET);
    ck_assert_uint_eq(
        ntohs(((struct sockaddr_in *)&u->servers[0].addr)->sin_port), 3000);
    ck_assert_int_eq(u->servers[0].pos.line, 11);
    ck_assert_int_eq(u->servers[0].pos.col, 18);
    ck_assert_uint_eq(u->servers[0].weight, 2);
    ck_assert_int_eq(u->servers[1].addr.ss_family, AF_INET6);
    ck_assert_uint_eq(u->servers[1].addrlen, sizeof(struct sockaddr_in6));
    ck_assert_uint_eq(u->servers[1].weight, 1); /* the default */
    ck_assert_uint_eq(u->servers[2].weight, 1000);
    ck_assert_int_eq(u->balance, BALANCE_LEAST_CONN);
    ck_assert_ptr_null(u->hash_header);
    ck_assert_uint_eq(u->keepalive, 0);
    ck_assert_uint_eq(u->keepalive_timeout, 3600000);
    ck_assert_uint_eq(u->retries, 0);
    ck_assert_uint_eq(u->max_fails, 0);
    ck_assert_uint_eq(u->fail_timeout, 86400000);
    ck_assert_str_eq(u->host, "API.internal:3000"); /* as written */
    ck_assert_uint_eq(u->timeouts.connect, 500);
    ck_assert_uint_eq(u->timeouts.send, 5000);
    ck_assert_uint_eq(u->timeouts.read, 120000);
}

static void check_upstreams_hash(const struct conf *c)
{
    const struct conf_upstream *u = &c->upstreams[1];

    ck_assert_str_eq(u->name, "sticky");
    ck_assert_int_eq(u->balance, BALANCE_HASH);
    ck_assert_int_eq(u->hash_key, HASH_HEADER);
    ck_assert_str_eq(u->hash_header, "X-User-Id");
    ck_assert_uint_eq(u->keepalive, 10000);
    ck_assert_uint_eq(u->keepalive_timeout, 1);
    ck_assert_uint_eq(u->retries, 10);
    ck_assert_uint_eq(u->max_fails, 1000);
    ck_assert_uint_eq(u->fail_timeout, 1);
    ck_assert_str_eq(u->host, "[::1]");
    /* not written: the global timeouts.upstream_* */
    ck_assert_uint_eq(u->timeouts.connect, 2000);
    ck_assert_uint_eq(u->timeouts.send, 30000);
    ck_assert_uint_eq(u->timeouts.read, 90000);
    ck_assert_int_eq(c->upstreams[2].hash_key, HASH_URI);
    ck_assert_int_eq(c->upstreams[3].balance, BALANCE_HASH);
    ck_assert_int_eq(c->upstreams[3].hash_key, HASH_CLIENT);
    ck_assert_str_eq(c->upstreams[4].name, "null");
    ck_assert_int_eq(c->upstreams[4].balance, BALANCE_ROUND_ROBIN);
    ck_assert_uint_eq(c->upstreams[4].timeouts.connect, 2000);
    ck_assert_uint_eq(c->upstreams[4].timeouts.read, 1000);
}

static void check_upstream_route(const struct conf *c)
{
    const struct conf_route *r = &c->routes[1];
    const struct conf_header_ops *rq = &r->request_headers;
    const struct conf_header_ops *rp = &r->response_headers;

    ck_assert(!r->has_respond);
    ck_assert_int_eq(r->respond.status, 0);
    ck_assert_ptr_null(r->respond.body);
    ck_assert_str_eq(r->upstream_name, "app");
    ck_assert_ptr_eq(r->upstream, &c->upstreams[0]);
    ck_assert_uint_eq(r->timeouts.connect, 1000);
    ck_assert_uint_eq(r->timeouts.send, 5000);
    ck_assert_uint_eq(r->timeouts.read, 5000);
    ck_assert_uint_eq(rq->nset, 2);
    ck_assert_str_eq(rq->set[0].name, "X-Api-Version");
    ck_assert_str_eq(rq->set[0].value, "1");
    ck_assert_str_eq(rq->set[1].name, "!odd");
    ck_assert_str_eq(rq->set[1].value, "tab\there");
    ck_assert_uint_eq(rq->nadd, 1);
    ck_assert_str_eq(rq->add[0].name, "X-Tag");
    ck_assert_uint_eq(rq->nremove, 2);
    ck_assert_str_eq(rq->remove[0], "Cookie");
    ck_assert_str_eq(rq->remove[1], "X-Debug");
    ck_assert_uint_eq(rp->nset, 2);
    ck_assert_str_eq(rp->set[1].name, "Server"); /* fine upstream-side */
    ck_assert_uint_eq(rp->nadd, 1);
    ck_assert_str_eq(rp->add[0].value, "seen=1; Path=/");
    ck_assert_uint_eq(rp->nremove, 1);
    ck_assert_str_eq(rp->remove[0], "X-Powered-By");
}

START_TEST(test_upstream_values)
{
    struct conf *c = load_fixture("good-upstreams.yaml");

    ck_assert_uint_eq(c->timeouts.upstream_connect, 2000);
    ck_assert_uint_eq(c->timeouts.upstream_send, 30000);
    ck_assert_uint_eq(c->timeouts.upstream_read, 90000);
    ck_assert_uint_eq(c->nupstreams, 5);
    check_upstream_app(c);
    check_upstreams_hash(c);
    ck_assert_uint_eq(c->nroutes, 5);
    ck_assert(c->routes[0].has_respond);
    ck_assert_ptr_null(c->routes[0].upstream_name);
    ck_assert_ptr_null(c->routes[0].upstream);
    check_upstream_route(c);
    ck_assert_ptr_eq(c->routes[2].upstream, &c->upstreams[1]);
    ck_assert_uint_eq(c->routes[2].timeouts.connect, 0); /* upstream's */
    ck_assert_uint_eq(c->routes[2].timeouts.read, 600000);
    ck_assert_ptr_eq(c->routes[3].upstream, &c->upstreams[2]);
    ck_assert_ptr_eq(c->routes[4].upstream, &c->upstreams[4]);
    ck_assert_str_eq(c->routes[4].path_prefix, "/");
    conf_free(&c);
}
END_TEST

START_TEST(test_health_values)
{
    struct conf *c = load_fixture("good-health.yaml");
    const struct conf_health *h = &c->upstreams[0].health_check;
    const struct conf_health *q = &c->upstreams[1].health_check;

    ck_assert_uint_eq(c->timeouts.websocket_idle, 30 * 60 * 1000);
    ck_assert_uint_eq(c->timeouts.sse_idle, 2 * 3600 * 1000);
    ck_assert_int_eq(h->enabled, 1);
    ck_assert_str_eq(h->path, "/healthz?deep=1");
    ck_assert_uint_eq(h->interval, 1000);
    ck_assert_uint_eq(h->timeout, 500);
    ck_assert_uint_eq(h->fails, 2);
    ck_assert_uint_eq(h->passes, 1);
    /* "health_check: {}" turns the checks on with every default */
    ck_assert_int_eq(q->enabled, 1);
    ck_assert_str_eq(q->path, "/");
    ck_assert_uint_eq(q->interval, 5000);
    ck_assert_uint_eq(q->timeout, 2000);
    ck_assert_uint_eq(q->fails, 3);
    ck_assert_uint_eq(q->passes, 2);
    conf_free(&c);
    /* no health_check: no checks, and the 1h idle defaults */
    c = load_fixture("good-upstream-defaults.yaml");
    ck_assert_int_eq(c->upstreams[0].health_check.enabled, 0);
    ck_assert_uint_eq(c->timeouts.websocket_idle, 3600 * 1000);
    ck_assert_uint_eq(c->timeouts.sse_idle, 3600 * 1000);
    conf_free(&c);
}
END_TEST

/* cache: written values, and the defaults of a bare cache: {} */
START_TEST(test_cache_values)
{
    struct conf *c = load_fixture("good-cache.yaml");
    struct conf_diag diag = {0};

    ck_assert_int_eq(c->cache.enabled, 1);
    ck_assert_uint_eq(c->cache.size, 64ull << 20);
    ck_assert_uint_eq(c->cache.max_object_size, 4ull << 20);
    ck_assert_uint_eq(c->cache.default_ttl, 10000);
    ck_assert_int_eq(c->cache.sendfile, CONF_SENDFILE_ALWAYS);
    ck_assert_uint_eq(c->cache.sendfile_after, 0);
    conf_free(&c);
    c = load_str("listeners: [ { listen: \"127.0.0.1:8080\" } ]\ncache: {}\n",
                 &diag);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(diag.n, 0);
    ck_assert_uint_eq(c->cache.size, 256ull << 20);
    /* copied up to half the CPU's cache a turn, shared by the workers */
    ck_assert_int_eq(c->cache.sendfile, CONF_SENDFILE_AUTO);
    uint64_t all = c->cache.sendfile_after * (uint64_t)c->workers;
    ck_assert_uint_ge(all, 1024);
    ck_assert_uint_lt(all, 1ull << 40);
    conf_free(&c);
    conf_diag_fini(&diag);
}
END_TEST

/* cache.sendfile: true, false, auto or a size, each as the bytes of big
 * bodies a worker copies in a loop turn. */
START_TEST(test_cache_sendfile)
{
    static const struct {
        const char *yaml;
        int mode;
        uint64_t after;
    } cases[] = {
        {"workers: 1\ncache: { sendfile: false }\n", CONF_SENDFILE_NEVER,
         UINT64_MAX},
        {"workers: 1\ncache: { sendfile: true }\n", CONF_SENDFILE_ALWAYS,
         0},
        {"workers: 3\ncache: { sendfile: 4m }\n", CONF_SENDFILE_AFTER,
         4ull << 20},
        {"workers: 1\ncache: { sendfile: 0 }\n", CONF_SENDFILE_AFTER, 0},
    };
    struct conf_diag diag = {0};
    uint64_t auto1 = 0, auto2 = 0;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[256];
        snprintf(yaml, sizeof(yaml),
                 "listeners: [ { listen: \"127.0.0.1:8080\" } ]\n%s",
                 cases[i].yaml);
        struct conf *c = load_str(yaml, &diag);
        ck_assert_msg(c != NULL, "%s", cases[i].yaml);
        ck_assert_int_eq(c->cache.sendfile, cases[i].mode);
        ck_assert_uint_eq(c->cache.sendfile_after, cases[i].after);
        conf_free(&c);
    }
    for (int workers = 1; workers <= 2; workers++) {
        char yaml[256];
        snprintf(yaml, sizeof(yaml),
                 "listeners: [ { listen: \"127.0.0.1:8080\" } ]\n"
                 "workers: %d\ncache: { sendfile: auto }\n",
                 workers);
        struct conf *c = load_str(yaml, &diag);
        ck_assert_ptr_nonnull(c);
        ck_assert_int_eq(c->cache.sendfile, CONF_SENDFILE_AUTO);
        *(workers == 1 ? &auto1 : &auto2) = c->cache.sendfile_after;
        conf_free(&c);
    }
    ck_assert_uint_gt(auto2, 0);
    ck_assert_uint_eq(auto1 / 2, auto2); /* the workers share the cache */
    ck_assert_uint_eq(diag.n, 0);
    conf_diag_fini(&diag);
}
END_TEST

START_TEST(test_upstream_defaults)
{
    struct conf *c = load_fixture("good-upstream-defaults.yaml");
    const struct conf_upstream *api = &c->upstreams[0], *web;

    ck_assert_uint_eq(c->nupstreams, 2);
    web = &c->upstreams[1];
    ck_assert_uint_eq(api->nservers, 1);
    ck_assert_uint_eq(api->servers[0].weight, 1);
    ck_assert_int_eq(api->balance, BALANCE_ROUND_ROBIN);
    ck_assert_int_eq(api->hash_key, HASH_CLIENT);
    ck_assert_ptr_null(api->hash_header);
    ck_assert_uint_eq(api->keepalive, 32);
    ck_assert_uint_eq(api->keepalive_timeout, 4000);
    ck_assert_uint_eq(api->retries, 1);
    ck_assert_uint_eq(api->max_fails, 3);
    ck_assert_uint_eq(api->fail_timeout, 10000);
    ck_assert_ptr_null(api->host);
    /* globals written after upstreams: still reach them */
    ck_assert_uint_eq(api->timeouts.connect, 7000);
    ck_assert_uint_eq(api->timeouts.send, 60000);
    ck_assert_uint_eq(api->timeouts.read, 120000);
    ck_assert_uint_eq(web->nservers, 2);
    ck_assert_uint_eq(web->timeouts.connect, 7000);
    ck_assert_uint_eq(web->timeouts.send, 1000);
    ck_assert_uint_eq(web->timeouts.read, 120000);
    /* routes come first in the file, resolved once all is read */
    ck_assert_ptr_eq(c->routes[0].upstream, api);
    ck_assert_ptr_eq(c->routes[1].upstream, web);
    ck_assert_int_eq(c->routes[0].upstream_pos.line, 5);
    ck_assert_int_eq(c->routes[0].upstream_pos.col, 15);
    ck_assert_uint_eq(c->routes[0].request_headers.nset, 0);
    ck_assert_ptr_null(c->routes[0].request_headers.set);
    ck_assert_uint_eq(c->routes[0].timeouts.read, 0);
    conf_free(&c);
}
END_TEST

START_TEST(test_source_kept)
{
    char *path = src_path("tests/unit/conf/good-brief-example.yaml");
    struct conf_diag diag = {0};
    struct conf *c = conf_load_file(path, &diag);
    FILE *f = fopen(path, "rb");
    char buf[4096];
    size_t n;

    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(f);
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    ck_assert_str_eq(c->path, path);
    ck_assert_uint_eq(c->source_len, n);
    ck_assert_mem_eq(c->source, buf, n);
    conf_free(&c);
    conf_diag_fini(&diag);
    free(path);
}
END_TEST

START_TEST(test_access_off)
{
    struct conf_diag diag = {0};
    struct conf *c = load_str("access_log: { path: /x.log, format: off }\n"
                              "listeners: [ { listen: \"[::]:0\" } ]\n",
                              &diag);

    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->access_log.format, ACCESS_OFF);
    ck_assert_ptr_null(c->access_log.path);
    conf_free(&c);
    conf_diag_fini(&diag);
}
END_TEST

START_TEST(test_body_bytes)
{
    struct conf_diag diag = {0};
    struct conf *c = load_str("listeners: [ { listen: \"127.0.0.1:0\" } ]\n"
                              "routes: [ { respond: { body: \"a\\0b\" } } ]\n",
                              &diag);

    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->routes[0].respond.body_len, 3);
    ck_assert_mem_eq(c->routes[0].respond.body, "a\0b", 3);
    conf_free(&c);
    conf_diag_fini(&diag);
}
END_TEST

/* ---- conf: tls, https_redirect and the files they name ---- */

/* The bytes of a file under the source tree; the caller frees them. */
static char *src_bytes(const char *rel, size_t *len)
{
    char *path = src_path(rel), *buf = malloc(64 * 1024);
    FILE *f = fopen(path, "rb");

    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_ptr_nonnull(buf);
    *len = fread(buf, 1, 64 * 1024, f);
    fclose(f);
    free(path);
    return buf;
}

/* f holds exactly the bytes of rel, and its absolute path names rel. */
static void check_file(const struct conf *c, const struct conf_file *f,
                       const char *rel)
{
    char *want_path = src_path(rel);
    char *real_want = realpath(want_path, NULL), *real_got;
    size_t len;
    char *want = src_bytes(rel, &len);

    ck_assert_ptr_nonnull(f);
    ck_assert(f >= c->files && f < c->files + c->nfiles);
    ck_assert_int_eq(f->path[0], '/');
    real_got = realpath(f->path, NULL);
    ck_assert_ptr_nonnull(real_want);
    ck_assert_ptr_nonnull(real_got);
    ck_assert_str_eq(real_got, real_want);
    ck_assert_uint_gt(len, 0);
    ck_assert_uint_eq(f->len, len);
    ck_assert_mem_eq(f->data, want, len);
    ck_assert_int_eq(f->data[len], '\0');
    free(want);
    free(want_path);
    free(real_want);
    free(real_got);
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);

    return n >= m && strcmp(s + n - m, tail) == 0;
}

static void check_tls_listeners(const struct conf *c)
{
    const struct conf_tls *t0 = &c->listeners[0].tls;
    const struct conf_tls *t1 = &c->listeners[1].tls;

    ck_assert_uint_eq(c->nlisteners, 3);
    ck_assert_int_eq(t0->enabled, 1);
    ck_assert_int_eq(t0->pos.line, 5); /* the tls: key */
    ck_assert_int_eq(t0->pos.col, 5);
    ck_assert_uint_eq(t0->ncerts, 2);
    ck_assert_int_eq(t0->min_version, 0x0304);
    ck_assert_str_eq(
        t0->ciphers,
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256");
    ck_assert_str_eq(t0->ciphersuites,
                     "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256");
    /* positions: the item, and the cert: and key: values */
    ck_assert_int_eq(t0->certs[0].pos.line, 7);
    ck_assert_int_eq(t0->certs[0].pos.col, 11);
    ck_assert_int_eq(t0->certs[0].cert_pos.line, 7);
    ck_assert_int_eq(t0->certs[0].cert_pos.col, 19);
    ck_assert_int_eq(t0->certs[0].key_pos.line, 7);
    ck_assert_int_eq(t0->certs[0].key_pos.col, 38);
    ck_assert_int_eq(t0->certs[1].pos.line, 8);
    ck_assert_int_eq(t0->certs[1].cert_pos.col, 17);
    ck_assert_int_eq(t0->certs[1].key_pos.line, 9);
    ck_assert_int_eq(t0->certs[1].key_pos.col, 16);
    /* absolute; "./" and "//" are cleaned away, ".." is kept */
    ck_assert_int_eq(t0->certs[0].cert[0], '/');
    ck_assert(ends_with(t0->certs[0].cert, "/tests/unit/conf/tls/cert.pem"));
    ck_assert(ends_with(t0->certs[0].key, "/tests/unit/conf/tls/key.pem"));
    ck_assert(
        ends_with(t0->certs[1].cert, "/tests/unit/conf/tls/other-cert.pem"));
    ck_assert(
        ends_with(t1->certs[0].cert, "/tests/unit/conf/tls/../tls/cert.pem"));
    ck_assert_ptr_null(strstr(t0->certs[1].cert, "/./"));
    ck_assert_ptr_null(strstr(t0->certs[1].cert, "//"));
    ck_assert_str_eq(t0->certs[0].cert_file->path, t0->certs[0].cert);
    check_file(c, t0->certs[0].cert_file, "tests/unit/conf/tls/cert.pem");
    check_file(c, t0->certs[0].key_file, "tests/unit/conf/tls/key.pem");
    check_file(c, t0->certs[1].cert_file,
               "tests/unit/conf/tls/other-cert.pem");
    check_file(c, t0->certs[1].key_file, "tests/unit/conf/tls/other-key.pem");
    /* the second listener: defaults, and the same key file shared */
    ck_assert_int_eq(t1->enabled, 1);
    ck_assert_uint_eq(t1->ncerts, 1);
    ck_assert_int_eq(t1->min_version, 0x0303);
    ck_assert_ptr_null(t1->ciphers);
    ck_assert_ptr_null(t1->ciphersuites);
    ck_assert_ptr_eq(t1->certs[0].key_file, t0->certs[0].key_file);
    check_file(c, t1->certs[0].cert_file, "tests/unit/conf/tls/cert.pem");
    /* the third: no TLS */
    ck_assert_int_eq(c->listeners[2].tls.enabled, 0);
    ck_assert_ptr_null(c->listeners[2].tls.certs);
    ck_assert_uint_eq(c->listeners[2].tls.ncerts, 0);
}

START_TEST(test_tls_values)
{
    struct conf *c = load_fixture("good-tls.yaml");
    const struct conf_upstream *u = c->upstreams;

    check_tls_listeners(c);
    /* cert.pem, key.pem, other-cert.pem, other-key.pem and the
     * "tls/../tls/cert.pem" spelling: each path read once */
    ck_assert_uint_eq(c->nfiles, 5);
    for (size_t i = 0; i < c->nfiles; i++) {
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(c->files[i].path, c->files[j].path);
    }
    ck_assert_uint_eq(c->nupstreams, 4);
    ck_assert_int_eq(u[0].tls.enabled, 1);
    ck_assert_int_eq(u[0].tls.verify, 1);
    ck_assert_str_eq(u[0].tls.sni, "API.internal"); /* as written */
    ck_assert(ends_with(u[0].tls.ca, "/tests/unit/conf/tls/cert.pem"));
    ck_assert_int_eq(u[0].tls.pos.line, 20);
    ck_assert_int_eq(u[0].tls.pos.col, 5);
    ck_assert_int_eq(u[0].tls.ca_pos.line, 20);
    ck_assert_int_eq(u[0].tls.ca_pos.col, 30);
    /* a listener's certificate and an upstream's CA: one file */
    ck_assert_ptr_eq(u[0].tls.ca_file, c->listeners[0].tls.certs[0].cert_file);
    ck_assert_int_eq(u[1].tls.enabled, 1);
    ck_assert_int_eq(u[1].tls.verify, 0);
    ck_assert_ptr_null(u[1].tls.ca);
    ck_assert_ptr_null(u[1].tls.ca_file);
    ck_assert_ptr_null(u[1].tls.sni);
    ck_assert_int_eq(u[2].tls.enabled, 1); /* tls: {} */
    ck_assert_int_eq(u[2].tls.verify, 1);
    ck_assert_int_eq(u[3].tls.enabled, 0);
    ck_assert_uint_eq(c->nroutes, 3);
    ck_assert_int_eq(c->routes[0].https_redirect, 443);
    ck_assert(c->routes[0].has_respond);
    ck_assert_int_eq(c->routes[1].https_redirect, 8443);
    ck_assert_int_eq(c->routes[2].https_redirect, 0);
    conf_free(&c);
}
END_TEST

/* No TLS written: nothing on, no file read. */
START_TEST(test_tls_defaults)
{
    struct conf_diag diag = {0};
    struct conf *c = load_str(
        "listeners: [ { listen: \"127.0.0.1:0\" } ]\n"
        "upstreams: { a: { servers: [ { address: \"127.0.0.1:1\" } ] } }\n"
        "routes: [ { upstream: a } ]\n",
        &diag);

    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->listeners[0].tls.enabled, 0);
    ck_assert_int_eq(c->listeners[0].tls.min_version, 0);
    ck_assert_int_eq(c->upstreams[0].tls.enabled, 0);
    ck_assert_ptr_null(c->upstreams[0].tls.ca_file);
    ck_assert_int_eq(c->routes[0].https_redirect, 0);
    ck_assert_ptr_null(c->files);
    ck_assert_uint_eq(c->nfiles, 0);
    conf_free(&c);
    conf_diag_fini(&diag);
}
END_TEST

static const char bundle_yaml[] =
    "listeners:\n"
    "  - listen: \"127.0.0.1:8443\"\n"
    "    tls: { certificates: [ { cert: site.crt, key: /keys/site.key } ] }\n"
    "upstreams:\n"
    "  a: { servers: [ { address: \"127.0.0.1:1\" } ], tls: { ca: ../ca.pem } "
    "}\n";

/* A worker's load: files from the master's bundle, never from the disk. */
START_TEST(test_tls_bundle)
{
    static const char name[] = "/nonexistent-pt/etc/portico.yaml";
    const struct conf_file files[] = {
        {(char *)"/nonexistent-pt/etc/other.pem", (char *)"x", 1},
        {(char *)"/keys/site.key", (char *)"KEY\0B", 5},
        {(char *)"/nonexistent-pt/etc/site.crt", (char *)"CERT\n", 5},
        {(char *)"/nonexistent-pt/etc/../ca.pem", (char *)"CA", 2},
    };
    struct conf_diag diag = {0};
    const struct conf_cert *cert;
    struct conf *c =
        conf_load_buffer_files(name, bundle_yaml, strlen(bundle_yaml), files,
                               PT_ARRAY_LEN(files), &diag);

    diag_print(&diag);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->nfiles, 3); /* other.pem is not named */
    cert = &c->listeners[0].tls.certs[0];
    ck_assert_str_eq(cert->cert, "/nonexistent-pt/etc/site.crt");
    ck_assert_str_eq(cert->cert_file->data, "CERT\n");
    ck_assert_uint_eq(cert->cert_file->len, 5);
    ck_assert_ptr_ne(cert->cert_file->data, files[2].data); /* a copy */
    ck_assert_uint_eq(cert->key_file->len, 5);
    ck_assert_mem_eq(cert->key_file->data, "KEY\0B", 6); /* NUL-ended */
    ck_assert_str_eq(c->upstreams[0].tls.ca_file->data, "CA");
    conf_free(&c);
    /* one missing from the bundle: an error where it is named */
    c = conf_load_buffer_files(name, bundle_yaml, strlen(bundle_yaml), files,
                               3, &diag);
    ck_assert_ptr_null(c);
    if (diag.n != 1)
        diag_print(&diag);
    ck_assert_uint_eq(diag.n, 1);
    ck_assert_str_eq(diag.msgs[0],
                     "/nonexistent-pt/etc/portico.yaml:5:60: error: "
                     "upstreams.a.tls.ca: cannot read "
                     "/nonexistent-pt/etc/../ca.pem: not in the validated "
                     "bundle");
    conf_diag_fini(&diag);
}
END_TEST

/* Files that are on the disk are still taken from the bundle alone, and
 * the master's files make a worker's load that dumps the same. */
START_TEST(test_tls_bundle_no_disk)
{
    char *path = src_path("tests/unit/conf/good-tls.yaml");
    struct conf_diag diag = {0};
    struct conf *c = conf_load_file(path, &diag), *w;
    char *dump1, *dump2;

    ck_assert_ptr_nonnull(c);
    w = conf_load_buffer_files(path, c->source, c->source_len, c->files,
                               c->nfiles, &diag);
    diag_print(&diag);
    ck_assert_ptr_nonnull(w);
    ck_assert_uint_eq(w->nfiles, c->nfiles);
    for (size_t i = 0; i < w->nfiles; i++) {
        ck_assert_str_eq(w->files[i].path, c->files[i].path);
        ck_assert_uint_eq(w->files[i].len, c->files[i].len);
        ck_assert_mem_eq(w->files[i].data, c->files[i].data, c->files[i].len);
    }
    dump1 = dump_string(c);
    dump2 = dump_string(w);
    ck_assert_str_eq(dump1, dump2);
    conf_free(&w);
    /* an empty bundle: every file is missing, though on the disk */
    w = conf_load_buffer_files(path, c->source, c->source_len, NULL, 0, &diag);
    ck_assert_ptr_null(w);
    ck_assert_uint_eq(diag.n, c->nfiles);
    for (size_t i = 0; i < diag.n; i++)
        ck_assert_msg(ends_with(diag.msgs[i], ": not in the validated bundle"),
                      "%s", diag.msgs[i]);
    conf_free(&c);
    conf_diag_fini(&diag);
    free(dump1);
    free(dump2);
    free(path);
}
END_TEST

static void write_file(const char *dir, const char *name, size_t len)
{
    char *path;
    FILE *f;

    ck_assert_int_ge(asprintf(&path, "%s/%s", dir, name), 0);
    f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    for (size_t i = 0; i < len; i++)
        fputc('A' + (int)(i % 26), f);
    fclose(f);
    free(path);
}

static void remove_file(const char *dir, const char *name)
{
    char *path;

    ck_assert_int_ge(asprintf(&path, "%s/%s", dir, name), 0);
    unlink(path);
    free(path);
}

/* Empty, too big, not a regular file; exactly 1m is fine. */
START_TEST(test_tls_file_errors)
{
    static const char *const names[] = {"empty.pem", "big.pem", "exact.pem",
                                        "fifo"};
    static const char yaml[] =
        "listeners:\n"
        "  - listen: \"127.0.0.1:8443\"\n"
        "    tls:\n"
        "      certificates:\n"
        "        - { cert: exact.pem, key: empty.pem }\n"
        "        - { cert: big.pem, key: fifo }\n";
    static const char good[] =
        "listeners:\n"
        "  - listen: \"127.0.0.1:8443\"\n"
        "    tls: { certificates: [ { cert: exact.pem, key: exact.pem } ] }\n";
    char dir[] = "/tmp/check_conf.XXXXXX", *name, *fifo, *msg;
    struct conf_diag diag = {0};
    struct conf *c;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    write_file(dir, "empty.pem", 0);
    write_file(dir, "big.pem", 1024 * 1024 + 1);
    write_file(dir, "exact.pem", 1024 * 1024);
    ck_assert_int_ge(asprintf(&fifo, "%s/fifo", dir), 0);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_int_ge(asprintf(&name, "%s/portico.yaml", dir), 0);
    c = conf_load_buffer(name, yaml, strlen(yaml), &diag);
    ck_assert_ptr_null(c);
    if (diag.n != 3)
        diag_print(&diag);
    ck_assert_uint_eq(diag.n, 3);
    ck_assert_int_ge(asprintf(&msg,
                              "%s:5:35: error: listeners[0].tls."
                              "certificates[0].key: %s/empty.pem is "
                              "empty",
                              name, dir),
                     0);
    ck_assert_str_eq(diag.msgs[0], msg);
    free(msg);
    ck_assert_int_ge(asprintf(&msg,
                              "%s:6:19: error: listeners[0].tls."
                              "certificates[1].cert: %s/big.pem is "
                              "larger than 1m",
                              name, dir),
                     0);
    ck_assert_str_eq(diag.msgs[1], msg);
    free(msg);
    ck_assert_int_ge(asprintf(&msg,
                              "%s:6:33: error: listeners[0].tls."
                              "certificates[1].key: cannot read "
                              "%s/fifo: not a regular file",
                              name, dir),
                     0);
    ck_assert_str_eq(diag.msgs[2], msg);
    free(msg);
    conf_diag_fini(&diag);
    c = conf_load_buffer(name, good, strlen(good), &diag);
    diag_print(&diag);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->nfiles, 1);
    ck_assert_uint_eq(c->files[0].len, 1024 * 1024);
    ck_assert_int_eq(c->files[0].data[1024 * 1024], '\0');
    ck_assert_ptr_eq(c->listeners[0].tls.certs[0].key_file, &c->files[0]);
    conf_free(&c);
    for (size_t i = 0; i < PT_ARRAY_LEN(names); i++)
        remove_file(dir, names[i]);
    rmdir(dir);
    free(fifo);
    free(name);
}
END_TEST

/* Relative paths: from the config's directory, else the current one. */
START_TEST(test_tls_relative)
{
    static const struct {
        const char *name;
        int under_cwd; /* dir is under the current directory */
        const char *dir;
    } cases[] = {
        {"(fuzz)", 1, ""},
        {"fuzz.yaml", 1, ""},
        {"sub/dir/portico.yaml", 1, "/sub/dir"},
        {"./sub//portico.yaml", 1, "/sub"},
        {"/etc/portico/portico.yaml", 0, "/etc/portico"},
        {"/portico.yaml", 0, ""},
    };
    static const char yaml[] =
        "listeners: [ { listen: \"127.0.0.1:0\" } ]\n"
        "upstreams: { a: { servers: [ { address: \"127.0.0.1:1\" } ], "
        "tls: { ca: nope-pt.pem } } }\n";
    char *cwd = getcwd(NULL, 0);

    ck_assert_ptr_nonnull(cwd);
    if (strcmp(cwd, "/") == 0)
        cwd[0] = '\0';
    for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
        struct conf_diag diag = {0};
        struct conf *c =
            conf_load_buffer(cases[i].name, yaml, strlen(yaml), &diag);
        char *want;

        ck_assert_ptr_null(c);
        ck_assert_int_ge(asprintf(&want,
                                  "%s:2:71: error: upstreams.a.tls.ca: "
                                  "cannot read %s%s/nope-pt.pem: No such "
                                  "file or directory",
                                  cases[i].name, cases[i].under_cwd ? cwd : "",
                                  cases[i].dir),
                         0);
        if (diag.n != 1)
            diag_print(&diag);
        ck_assert_uint_eq(diag.n, 1);
        ck_assert_str_eq(diag.msgs[0], want);
        free(want);
        conf_diag_fini(&diag);
    }
    free(cwd);
}
END_TEST

/* ---- conf: errors ---- */

START_TEST(test_three_errors)
{
    struct conf_diag diag = {0};
    struct conf *c = load_str("workers: 0\n"
                              "listeners:\n"
                              "  - listen: \"localhost:80\"\n"
                              "limits: { max_header_bytes: 12q }\n",
                              &diag);

    ck_assert_ptr_null(c);
    if (diag.n != 3)
        diag_print(&diag);
    ck_assert_uint_eq(diag.n, 3);
    ck_assert(diag_has(&diag, "test.yaml:1:10: error: workers: 0 is out of "
                              "range 1..512 (one process per core is "
                              "plenty)"));
    ck_assert(diag_has(&diag, "test.yaml:3:13: error: listeners[0].listen: "
                              "cannot parse address \"localhost:80\": "
                              "numeric address required, e.g. "
                              "127.0.0.1:8080 or [::1]:8080"));
    ck_assert(diag_has(&diag, "test.yaml:4:29: error: "
                              "limits.max_header_bytes: expected a size "
                              "like 16k, 10m or 1g, got \"12q\""));
    conf_diag_fini(&diag);
}
END_TEST

START_TEST(test_errors_appended)
{
    struct conf_diag diag = {0};
    struct conf *c;

    conf_diag_add(&diag, "earlier: %d", 1);
    c = load_str("listeners: [ { listen: \"127.0.0.1:0\" } ]\n", &diag);
    /* errors from before the call do not make a good config fail */
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(diag.n, 1);
    ck_assert_str_eq(diag.msgs[0], "earlier: 1");
    conf_free(&c);
    conf_diag_fini(&diag);
    ck_assert_uint_eq(diag.n, 0);
    ck_assert_ptr_null(diag.msgs);
}
END_TEST

START_TEST(test_load_file_missing)
{
    struct conf_diag diag = {0};
    struct conf *c = conf_load_file("/nonexistent/portico.yaml", &diag);

    ck_assert_ptr_null(c);
    ck_assert_uint_eq(diag.n, 1);
    ck_assert_str_eq(diag.msgs[0], "cannot read /nonexistent/portico.yaml: "
                                   "No such file or directory");
    conf_diag_fini(&diag);
    c = conf_load_file("/", &diag);
    ck_assert_ptr_null(c);
    ck_assert_str_eq(diag.msgs[0], "cannot read /: Is a directory");
    conf_diag_fini(&diag);
}
END_TEST

START_TEST(test_user_lookup)
{
    static const char yaml[] = "user: no-such-user-pt\n"
                               "listeners: [ { listen: \"127.0.0.1:0\" } ]\n";
    struct conf_diag diag = {0};
    struct conf *c;

    if (geteuid() == 0) {
        expect_one_error(yaml, "test.yaml:1:7: error: user: no such user "
                               "\"no-such-user-pt\"");
        return;
    }
    /* not root: portico will not switch users, so any name will do */
    c = load_str(yaml, &diag);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->user, "no-such-user-pt");
    conf_free(&c);
    conf_diag_fini(&diag);
}
END_TEST

START_TEST(test_misc_messages)
{
    expect_one_error("routes: []\n",
                     "test.yaml:1:1: error: no listeners: add one under "
                     "listeners:");
    expect_one_error("", "test.yaml:1:1: error: no listeners: add one under "
                         "listeners:");
    expect_one_error("listeners: [ { listen: \"127.0.0.1:1\", listen: "
                     "\"127.0.0.1:2\" } ]\n",
                     "test.yaml:1:39: error: listeners[0]: duplicate key "
                     "\"listen\" (first at 1:16)");
    expect_one_error("workers: 99999999999999999999999\n"
                     "listeners: [ { listen: \"127.0.0.1:0\" } ]\n",
                     "test.yaml:1:10: error: workers: "
                     "99999999999999999999999 is out of range 1..512 (one "
                     "process per core is plenty)");
    expect_one_error("listeners: [ { listen: \"127.0.0.1:0\" } ]\n"
                     "routes: [ { respond: { headers: { \"\": x } } } ]\n",
                     "test.yaml:2:35: error: routes[0].respond.headers: "
                     "invalid header name \"\" (letters, digits and "
                     "!#$%&'*+-.^_`|~ only)");
}
END_TEST

/* Long lists of names are cut; bad upstreams are not "defined". */
START_TEST(test_upstream_messages)
{
    static const char many[] =
        "listeners: [ { listen: \"127.0.0.1:0\" } ]\n"
        "routes: [ { upstream: x } ]\n"
        "upstreams:\n"
        "  aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: "
        "{ servers: [ { address: \"127.0.0.1:1\" } ] }\n"
        "  bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb: "
        "{ servers: [ { address: \"127.0.0.1:1\" } ] }\n"
        "  cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc: "
        "{ servers: [ { address: \"127.0.0.1:1\" } ] }\n"
        "  d: { servers: [ { address: \"127.0.0.1:1\" } ] }\n";
    struct conf_diag diag = {0};
    struct conf *c;

    expect_one_error(
        many, "test.yaml:2:23: error: routes[0].upstream: no upstream "
              "named \"x\" (defined: "
              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
              "aaaaa, "
              "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
              "bbbbb, ...)");
    c = load_str("listeners: [ { listen: \"127.0.0.1:0\" } ]\n"
                 "routes: [ { upstream: ok } ]\n"
                 "upstreams: { \"b c\": { servers: [ { address: "
                 "\"127.0.0.1:1\" } ] } }\n",
                 &diag);
    ck_assert_ptr_null(c);
    if (diag.n != 2)
        diag_print(&diag);
    ck_assert_uint_eq(diag.n, 2);
    ck_assert_str_eq(diag.msgs[1],
                     "test.yaml:2:23: error: routes[0].upstream: "
                     "no upstream named \"ok\" (no upstreams "
                     "are defined)");
    conf_diag_fini(&diag);
}
END_TEST

START_TEST(test_diag_at)
{
    struct conf_diag diag = {0};
    struct conf *c =
        load_str("listeners: [ { listen: \"127.0.0.1:0\" } ]\n", &diag);
    struct conf_pos none = {0, 0};

    ck_assert_ptr_nonnull(c);
    conf_diag_at(&diag, c, c->listeners[0].pos, "cannot bind: %s", "oops");
    conf_diag_at(&diag, c, none, "whole file");
    ck_assert_str_eq(diag.msgs[0], "test.yaml:1:24: error: cannot bind: oops");
    ck_assert_str_eq(diag.msgs[1], "test.yaml: error: whole file");
    ck_assert_str_eq(conf_log_level_name(LOG_LVL_NOTICE), "notice");
    ck_assert_str_eq(conf_log_level_name((enum log_level)42), "unknown");
    conf_free(&c);
    conf_free(&c); /* NULL-safe */
    conf_free(NULL);
    conf_diag_fini(&diag);
}
END_TEST

/* ---- fixtures ---- */

/* Collects the "# expect:" lines that open a fixture; returns how many. */
static size_t expects_read(const char *path, char **out, size_t max)
{
    FILE *f = fopen(path, "rb");
    char line[1024];
    size_t n = 0;

    ck_assert_msg(f != NULL, "cannot open %s", path);
    while (n < max && fgets(line, sizeof(line), f) != NULL &&
           strncmp(line, EXPECT_TAG, strlen(EXPECT_TAG)) == 0) {
        line[strcspn(line, "\n")] = '\0';
        ck_assert_int_ge(
            asprintf(&out[n++], "%s:%s", path, line + strlen(EXPECT_TAG)), 0);
    }
    fclose(f);
    return n;
}

START_TEST(test_bad_fixture)
{
    char *path, *expects[16];
    struct conf_diag diag = {0};
    struct conf *c;
    size_t n;

    ck_assert_int_ge(
        asprintf(&path, "%s/tests/unit/conf/%s", srcdir(), bad_fixtures[_i]),
        0);
    n = expects_read(path, expects, PT_ARRAY_LEN(expects));
    ck_assert_msg(n > 0, "%s: no \"# expect:\" first line", path);
    c = conf_load_file(path, &diag);
    ck_assert_msg(c == NULL, "%s loaded", path);
    for (size_t i = 0; i < n; i++) {
        if (!diag_has(&diag, expects[i]))
            diag_print(&diag);
        ck_assert_msg(diag_has(&diag, expects[i]), "missing: %s", expects[i]);
        free(expects[i]);
    }
    if (diag.n != n)
        diag_print(&diag);
    ck_assert_msg(diag.n == n, "%s: %zu errors, expected %zu", path, diag.n,
                  n);
    conf_diag_fini(&diag);
    free(path);
}
END_TEST

/* Loads path, dumps it, loads the dump, dumps again: both must agree. */
static void check_loads_and_roundtrips(const char *path)
{
    struct conf_diag diag = {0};
    struct conf *c = conf_load_file(path, &diag), *again;
    char *dump1, *dump2;

    diag_print(&diag);
    ck_assert_msg(c != NULL && diag.n == 0, "%s did not load", path);
    dump1 = dump_string(c);
    again = conf_load_buffer("dump.yaml", dump1, strlen(dump1), &diag);
    diag_print(&diag);
    ck_assert_msg(again != NULL, "dump of %s did not load:\n%s", path, dump1);
    dump2 = dump_string(again);
    ck_assert_str_eq(dump1, dump2);
    conf_free(&c);
    conf_free(&again);
    conf_diag_fini(&diag);
    free(dump1);
    free(dump2);
}

START_TEST(test_good_fixture)
{
    char *path;

    ck_assert_int_ge(
        asprintf(&path, "%s/tests/unit/conf/%s", srcdir(), good_fixtures[_i]),
        0);
    check_loads_and_roundtrips(path);
    free(path);
}
END_TEST

/*
 * The configs we ship must load.  Running as root on a build machine
 * without the "portico" user is the one failure forgiven: that user is
 * made by the package, not by the build.
 */
static void check_shipped(const char *rel)
{
    char *path = src_path(rel);
    struct conf_diag diag = {0};
    struct conf *c;
    size_t forgiven = 0;

    if (access(path, F_OK) != 0) {
        fprintf(stderr, "check_conf: SKIP %s: not there (yet)\n", path);
        free(path);
        return;
    }
    c = conf_load_file(path, &diag);
    for (size_t i = 0; i < diag.n; i++)
        forgiven += strstr(diag.msgs[i], ": error: user: no such user") != 0;
    if (c == NULL && diag.n > 0 && forgiven == diag.n)
        fprintf(stderr, "check_conf: %s: %s (forgiven)\n", path, diag.msgs[0]);
    else
        check_loads_and_roundtrips(path);
    conf_free(&c);
    conf_diag_fini(&diag);
    free(path);
}

/* ---- every key the loader accepts is documented ---- */

struct doc_check {
    char *man;      /* man/portico.yaml.5 */
    char *example;  /* conf/portico.yaml */
    char missing[4096];
};

static char *read_whole(const char *rel)
{
    char *path = src_path(rel), *buf = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "r");

    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_ge(getdelim(&buf, &len, '\0', f), 1);
    fclose(f);
    free(path);
    return buf;
}

/* ".It Ic NAME", ".It Ic PREFIX.NAME" or ".Ss NAME" at a line start. */
static int man_documents(const char *man, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = man; (p = strstr(p, name)) != NULL; p += n) {
        const char *line = p;
        while (line > man && line[-1] != '\n')
            line--;
        char after = p[n];
        if (after != ' ' && after != '\n' && after != '\0')
            continue;
        if (strncmp(line, ".Ss ", 4) == 0 && line + 4 == p)
            return 1;
        if (strncmp(line, ".It Ic ", 7) != 0)
            continue;
        /* what stands between ".It Ic " and the name is a dotted prefix */
        const char *q = line + 7;
        while (q < p && *q != ' ')
            q++;
        if (q == p && (p == line + 7 || p[-1] == '.'))
            return 1;
    }
    return 0;
}

/* "NAME:" in the example, written or commented out. */
static int example_shows(const char *example, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = example; (p = strstr(p, name)) != NULL; p += n) {
        char before = p == example ? '\n' : p[-1];
        if (p[n] == ':' && strchr("\n #{,-[", before))
            return 1;
    }
    return 0;
}

static void doc_key(const char *path, const char *name, void *arg)
{
    struct doc_check *d = arg;
    size_t len = strlen(d->missing);

    if (!man_documents(d->man, name))
        snprintf(d->missing + len, sizeof(d->missing) - len,
                 " %s (man/portico.yaml.5)", path);
    len = strlen(d->missing);
    if (!example_shows(d->example, name))
        snprintf(d->missing + len, sizeof(d->missing) - len,
                 " %s (conf/portico.yaml)", path);
}

START_TEST(test_every_key_documented)
{
    struct doc_check d = {read_whole("man/portico.yaml.5"),
                          read_whole("conf/portico.yaml"), ""};

    conf_yaml_keys(doc_key, &d);
    free(d.man);
    free(d.example);
    ck_assert_msg(d.missing[0] == '\0', "keys not documented:%s", d.missing);
}
END_TEST

START_TEST(test_shipped_configs)
{
    check_shipped("conf/portico.yaml");
    check_shipped("examples/demo.yaml");
}
END_TEST

/* ---- suites ---- */

static Suite *util_suite(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("parse");

    tcase_add_test(tc, test_size_ok);
    tcase_add_test(tc, test_size_bad);
    tcase_add_test(tc, test_duration_ok);
    tcase_add_test(tc, test_duration_bad);
    tcase_add_test(tc, test_format_units);
    tcase_add_test(tc, test_str_eq);
    tcase_add_test(tc, test_addr_ok);
    tcase_add_test(tc, test_addr_bad);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *conf_suite(void)
{
    Suite *s = suite_create("conf");
    TCase *values = tcase_create("values");
    TCase *errors = tcase_create("errors");
    TCase *fixtures = tcase_create("fixtures");

    tcase_add_test(values, test_defaults);
    tcase_add_test(values, test_full_values);
    tcase_add_test(values, test_source_kept);
    tcase_add_test(values, test_access_off);
    tcase_add_test(values, test_body_bytes);
    tcase_add_test(values, test_upstream_values);
    tcase_add_test(values, test_cache_values);
    tcase_add_test(values, test_cache_sendfile);
    tcase_add_test(values, test_upstream_defaults);
    tcase_add_test(values, test_health_values);
    tcase_add_test(values, test_tls_values);
    tcase_add_test(values, test_tls_defaults);
    tcase_add_test(values, test_tls_bundle);
    tcase_add_test(values, test_tls_bundle_no_disk);
    tcase_add_test(values, test_tls_file_errors);
    tcase_add_test(values, test_tls_relative);
    tcase_add_test(errors, test_three_errors);
    tcase_add_test(errors, test_errors_appended);
    tcase_add_test(errors, test_load_file_missing);
    tcase_add_test(errors, test_user_lookup);
    tcase_add_test(errors, test_misc_messages);
    tcase_add_test(errors, test_upstream_messages);
    tcase_add_test(errors, test_diag_at);
    tcase_add_loop_test(fixtures, test_bad_fixture, 0, (int)nbad);
    tcase_add_loop_test(fixtures, test_good_fixture, 0, (int)ngood);
    tcase_add_test(fixtures, test_shipped_configs);
    tcase_add_test(fixtures, test_every_key_documented);
    suite_add_tcase(s, values);
    suite_add_tcase(s, errors);
    suite_add_tcase(s, fixtures);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    nbad = fixtures_scan("bad-", bad_fixtures);
    ngood = fixtures_scan("good-", good_fixtures);
    if (nbad == 0 || ngood == 0) {
        fprintf(stderr,
                "check_conf: no fixtures under %s/tests/unit/conf "
                "(set PORTICO_SRCDIR)\n",
                srcdir());
        return EXIT_FAILURE;
    }
    sr = srunner_create(util_suite());
    srunner_add_suite(sr, conf_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    fixtures_free();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
