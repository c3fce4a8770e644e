/*
 * check_http_parse.c -- unit tests for src/http_parse.c: request and
 * response heads (valid, malformed, limits, fed byte by byte), chunked
 * bodies, and the small lookups.  Calls: http_parse.h, libcheck.
 *
 * The tables of bad input double as the list of rejections documented in
 * the man page: each row says the status the client gets.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

/* A literal with its exact length, so rows may hold NUL bytes. */
#define RAW(s) s, sizeof(s) - 1

#define MAX_HDRS 64

static const struct http_limits lim_default = {16384, 8192, 100};

struct req_case {
    const char *raw;
    size_t len;
    int status; /* expected req->status */
    const char *what;
};

struct resp_case {
    const char *raw;
    size_t len;
    const char *what;
};

struct chunk_case {
    const char *raw;
    size_t len;
    const char *what;
};

/* ---- helpers ----------------------------------------------------------- */

static ssize_t parse_req(const char *buf, size_t len,
                         const struct http_limits *lim,
                         struct http_request *req, struct http_header *h,
                         size_t cap)
{
    memset(req, 0, sizeof(*req));
    req->headers = h;
    req->headers_cap = cap;
    return http_parse_request(buf, len, lim, req);
}

static ssize_t parse_resp(const char *buf, size_t len,
                          struct http_response *resp, struct http_header *h)
{
    memset(resp, 0, sizeof(*resp));
    resp->headers = h;
    resp->headers_cap = MAX_HDRS;
    return http_parse_response(buf, len, &lim_default, resp);
}

static int str_is(struct pt_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

static int view_same(struct pt_str a, struct pt_str b)
{
    return a.len == b.len && (a.len == 0 || a.p == b.p);
}

/* Two parses of the same buffer gave the same request. */
static void assert_req_same(const struct http_request *a,
                            const struct http_request *b)
{
    ck_assert(view_same(a->method, b->method));
    ck_assert_int_eq(a->method_id, b->method_id);
    ck_assert(view_same(a->target, b->target));
    ck_assert(view_same(a->path, b->path));
    ck_assert(view_same(a->query, b->query));
    ck_assert(view_same(a->host, b->host));
    ck_assert_int_eq(a->version_minor, b->version_minor);
    ck_assert_uint_eq(a->nheaders, b->nheaders);
    for (size_t i = 0; i < a->nheaders; i++) {
        ck_assert(view_same(a->headers[i].name, b->headers[i].name));
        ck_assert(view_same(a->headers[i].value, b->headers[i].value));
    }
    ck_assert_int_eq(a->content_length, b->content_length);
    ck_assert_int_eq(a->chunked, b->chunked);
    ck_assert_int_eq(a->keep_alive, b->keep_alive);
    ck_assert_int_eq(a->expect_continue, b->expect_continue);
    ck_assert_int_eq(a->upgrade, b->upgrade);
}

/*
 * Feed a bad request one byte more at a time: no prefix may succeed, and
 * once a prefix is rejected every longer one is rejected the same way.
 */
static void assert_bad_monotonic(const char *raw, size_t len,
                                 const struct http_limits *lim, size_t cap)
{
    struct http_header h[MAX_HDRS];
    struct http_request req;
    int first = 0;

    for (size_t k = 0; k <= len; k++) {
        ssize_t rc = parse_req(raw, k, lim, &req, h, cap);
        ck_assert_msg(rc == PT_AGAIN || rc == PT_ERROR,
                      "prefix %zu of a bad request parsed", k);
        if (rc == PT_ERROR && first == 0)
            first = req.status;
        else if (first != 0)
            ck_assert_msg(rc == PT_ERROR && req.status == first,
                          "prefix %zu: status changed from %d", k, first);
    }
}

/* ---- requests: rejected ------------------------------------------------ */

#define H11 " HTTP/1.1\r\nHost: a\r\n"

static const struct req_case req_bad[] = {
    /* line endings */
    {RAW("GET / HTTP/1.1\nHost: a\n\n"), 400, "bare LF ends lines"},
    {RAW("GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n"), 400, "bare LF in head"},
    {RAW("GET / HTTP/1.1\r\nHost: a\r\n\n"), 400, "bare LF as empty line"},
    {RAW("GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n"), 400, "bare CR in head"},
    {RAW("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"), 400, "bare CR in end"},
    {RAW("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bare CR in line"},
    {RAW("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "leading bare LF"},
    {RAW("\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "leading bare CR"},
    {RAW("\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
     "bare LF after empty line"},
    /* request line */
    {RAW("GET /\r\n\r\n"), 400, "HTTP/0.9 request"},
    {RAW("GET\r\n\r\n"), 400, "method only"},
    {RAW("GET \r\n\r\n"), 400, "no target"},
    {RAW("GET / http/1.1\r\nHost: a\r\n\r\n"), 400, "lowercase version"},
    {RAW("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400, "space after version"},
    {RAW("GET  /" H11 "\r\n"), 400, "two spaces before target"},
    {RAW("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
     "two spaces after target"},
    {RAW("GET\t/" H11 "\r\n"), 400, "tab after method"},
    {RAW(" GET /" H11 "\r\n"), 400, "leading space"},
    {RAW("G(ET /" H11 "\r\n"), 400, "bad byte in method"},
    {RAW("GET / HTTP/1\r\nHost: a\r\n\r\n"), 400, "short version"},
    {RAW("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), 400, "three-digit version"},
    {RAW("GET / HTTP/11.1\r\nHost: a\r\n\r\n"), 400, "two-digit major"},
    {RAW("GET / HTTPS/1.1\r\nHost: a\r\n\r\n"), 400, "wrong protocol"},
    {RAW("GET / HTTP/1.x\r\nHost: a\r\n\r\n"), 400, "letter in version"},
    {RAW("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505, "HTTP/2.0"},
    {RAW("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505, "HTTP/1.2"},
    {RAW("GET / HTTP/3.0\r\nHost: a\r\n\r\n"), 505, "HTTP/3.0"},
    {RAW("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), 505, "explicit HTTP/0.9"},
    /* request-target */
    {RAW("GET /a#frag" H11 "\r\n"), 400, "fragment"},
    {RAW("GET /a\x01"
         "b" H11 "\r\n"),
     400, "control char in target"},
    {RAW("GET /a\x7f" H11 "\r\n"), 400, "DEL in target"},
    {RAW("GET /a\x80" H11 "\r\n"), 400, "byte >= 0x80 in target"},
    {RAW("GET /a\0b" H11 "\r\n"), 400, "NUL in target"},
    {RAW("GET /a\tb" H11 "\r\n"), 400, "tab in target"},
    {RAW("GET a/b" H11 "\r\n"), 400, "relative target"},
    {RAW("GET ftp://a/b" H11 "\r\n"), 400, "non-http scheme"},
    {RAW("GET http:/a/b" H11 "\r\n"), 400, "malformed absolute"},
    {RAW("GET http:///b" H11 "\r\n"), 400, "empty authority"},
    {RAW("GET http://u@a/b" H11 "\r\n"), 400, "userinfo"},
    {RAW("GET http://a b/" H11 "\r\n"), 400, "space splits target"},
    {RAW("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
     "asterisk without OPTIONS"},
    {RAW("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "CONNECT origin-form"},
    {RAW("CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "CONNECT no port"},
    {RAW("CONNECT a: HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "CONNECT empty port"},
    {RAW("CONNECT a:99999 HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
     "CONNECT port out of range"},
    {RAW("CONNECT http://a:1/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
     "CONNECT absolute-form"},
    {RAW("GET a:80" H11 "\r\n"), 400, "authority-form without CONNECT"},
    /* field syntax */
    {RAW("GET /" H11 "X : y\r\n\r\n"), 400, "space before colon"},
    {RAW("GET /" H11 "X\t: y\r\n\r\n"), 400, "tab before colon"},
    {RAW("GET /" H11 "X: y\r\n z\r\n\r\n"), 400, "obs-fold with SP"},
    {RAW("GET /" H11 "X: y\r\n\tz\r\n\r\n"), 400, "obs-fold with HTAB"},
    {RAW("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400, "first field folded"},
    {RAW("GET /" H11 ": y\r\n\r\n"), 400, "empty field name"},
    {RAW("GET /" H11 "Xy\r\n\r\n"), 400, "field without colon"},
    {RAW("GET /" H11 "X\"y: z\r\n\r\n"), 400, "bad byte in field name"},
    {RAW("GET /" H11 "X\x80: z\r\n\r\n"), 400, "obs-text in field name"},
    {RAW("GET /" H11 "X: a\0b\r\n\r\n"), 400, "NUL in field value"},
    {RAW("GET /" H11 "X: a\x01"
         "b\r\n\r\n"),
     400, "CTL in field value"},
    {RAW("GET /" H11 "X: a\x7f\r\n\r\n"), 400, "DEL in field value"},
    /* Host */
    {RAW("GET / HTTP/1.1\r\n\r\n"), 400, "HTTP/1.1 without Host"},
    {RAW("GET http://a/ HTTP/1.1\r\n\r\n"), 400, "absolute-form without Host"},
    {RAW("GET /" H11 "Host: a\r\n\r\n"), 400, "two Host fields"},
    {RAW("GET /" H11 "host: b\r\n\r\n"), 400, "two Host, other case"},
    {RAW("GET / HTTP/1.1\r\nHost:\r\n\r\n"), 400, "empty Host"},
    {RAW("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400, "space in Host"},
    {RAW("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400, "slash in Host"},
    {RAW("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), 400, "userinfo in Host"},
    {RAW("GET / HTTP/1.1\r\nHost: a,b\r\n\r\n"), 400, "comma in Host"},
    {RAW("GET / HTTP/1.1\r\nHost: a:b\r\n\r\n"), 400, "non-digit port"},
    {RAW("GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n"), 400, "port too large"},
    {RAW("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), 400, "unclosed IP literal"},
    {RAW("GET / HTTP/1.1\r\nHost: []\r\n\r\n"), 400, "empty IP literal"},
    {RAW("GET / HTTP/1.1\r\nHost: [::1/]\r\n\r\n"), 400,
     "slash in IP literal"},
    {RAW("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n"), 400, "junk after literal"},
    {RAW("GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n"), 400, "bad pct-encoding"},
    /* Content-Length */
    {RAW("POST /" H11 "Content-Length: abc\r\n\r\n"), 400, "CL not digits"},
    {RAW("POST /" H11 "Content-Length: -1\r\n\r\n"), 400, "CL negative"},
    {RAW("POST /" H11 "Content-Length: +5\r\n\r\n"), 400, "CL with sign"},
    {RAW("POST /" H11 "Content-Length:\r\n\r\n"), 400, "CL empty"},
    {RAW("POST /" H11 "Content-Length: 0x5\r\n\r\n"), 400, "CL in hex"},
    {RAW("POST /" H11 "Content-Length: 5 5\r\n\r\n"), 400, "CL two numbers"},
    {RAW("POST /" H11 "Content-Length: 5, 6\r\n\r\n"), 400, "CL list differs"},
    {RAW("POST /" H11 "Content-Length: 5,,5\r\n\r\n"), 400,
     "CL empty element"},
    {RAW("POST /" H11 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n"), 400,
     "CL fields differ"},
    {RAW("POST /" H11 "Content-Length: 4611686018427387905\r\n\r\n"), 400,
     "CL above 2^62"},
    {RAW("POST /" H11 "Content-Length: 99999999999999999999999\r\n\r\n"), 400,
     "CL overflows 64 bits"},
    /* Transfer-Encoding */
    {RAW("POST /" H11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"
         "\r\n"),
     400, "TE and CL"},
    {RAW("POST /" H11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"
         "\r\n"),
     400, "CL and TE"},
    {RAW("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400,
     "TE in HTTP/1.0"},
    {RAW("POST /" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n"), 501,
     "coding before chunked"},
    {RAW("POST /" H11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: "
         "chunked\r\n\r\n"),
     501, "coding before chunked, two fields"},
    {RAW("POST /" H11 "Transfer-Encoding: gzip\r\n\r\n"), 400,
     "final coding not chunked"},
    {RAW("POST /" H11 "Transfer-Encoding: identity\r\n\r\n"), 400,
     "identity coding"},
    {RAW("POST /" H11 "Transfer-Encoding: chunked, gzip\r\n\r\n"), 400,
     "chunked not final"},
    {RAW("POST /" H11 "Transfer-Encoding: chunked, chunked\r\n\r\n"), 400,
     "chunked twice"},
    {RAW("POST /" H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: "
         "chunked\r\n\r\n"),
     400, "chunked twice, two fields"},
    {RAW("POST /" H11 "Transfer-Encoding:\r\n\r\n"), 400, "TE empty"},
    {RAW("POST /" H11 "Transfer-Encoding: ,\r\n\r\n"), 400, "TE only commas"},
    {RAW("POST /" H11 "Transfer-Encoding: chunked;x=1\r\n\r\n"), 400,
     "parameters on chunked"},
    {RAW("POST /" H11 "Transfer-Encoding: chunked x\r\n\r\n"), 400,
     "TE garbage after token"},
    {RAW("POST /" H11 "Transfer-Encoding: \"chunked\"\r\n\r\n"), 400,
     "TE quoted"},
    /* Connection, Expect */
    {RAW("GET /" H11 "Connection: close, a b\r\n\r\n"), 400,
     "Connection element not a token"},
    {RAW("POST /" H11 "Expect: 100-continue-x\r\n\r\n"), 417,
     "unknown expectation"},
    {RAW("POST /" H11 "Expect: 100-continue, foo\r\n\r\n"), 417,
     "second expectation unknown"},
    {RAW("POST /" H11 "Expect: foo=bar\r\n\r\n"), 417,
     "expectation with value"},
};

START_TEST(test_req_bad)
{
    const struct req_case *c = &req_bad[_i];
    struct http_header h[MAX_HDRS];
    struct http_request req;
    ssize_t rc = parse_req(c->raw, c->len, &lim_default, &req, h, MAX_HDRS);

    ck_assert_msg(rc == PT_ERROR, "%s: returned %zd", c->what, rc);
    ck_assert_msg(req.status == c->status, "%s: status %d, want %d (%s)",
                  c->what, req.status, c->status, req.error);
    ck_assert_msg(req.error != NULL && req.error[0] != '\0', "%s", c->what);
    assert_bad_monotonic(c->raw, c->len, &lim_default, MAX_HDRS);
}
END_TEST

/* Bad bytes in the request line are refused before the head is complete. */
/* A field value is refused for a control byte (but a tab) or DEL, and
 * taken for any other byte (obs-text too), wherever the byte stands in
 * values of 1 to 24 bytes: the check goes eight bytes at a time, then
 * byte by byte. */
START_TEST(test_req_field_bytes)
{
    struct http_request req;
    struct http_header h[MAX_HDRS];
    char buf[128], val[32];

    for (int b = 0; b < 256; b++) {
        int ok = b == '\t' || (b >= 0x20 && b != 0x7f);
        for (int len = 1; len <= 24; len++) {
            for (int at = 0; at < len; at++) {
                memset(val, 'a', (size_t)len);
                val[at] = (char)b;
                int n = snprintf(buf, sizeof(buf),
                                 "GET / HTTP/1.1\r\nHost: h\r\nX: ");
                memcpy(buf + n, val, (size_t)len);
                n += len;
                memcpy(buf + n, "\r\n\r\n", 4);
                n += 4;
                ssize_t rc = parse_req(buf, (size_t)n, &lim_default, &req, h,
                                       MAX_HDRS);
                ck_assert_msg((rc > 0) == ok, "byte 0x%02x at %d of %d: %zd",
                              b, at, len, rc);
            }
        }
    }
}
END_TEST

static const struct req_case req_early[] = {
    {RAW("G(ET / HT"), 400, "bad method byte"},
    {RAW(" GET"), 400, "leading space"},
    {RAW("GET /a#"), 400, "fragment"},
    {RAW("GET /a\x01"), 400, "control char"},
    {RAW("GET  /"), 400, "double space"},
    {RAW("GET / http"), 400, "lowercase version"},
    {RAW("GET / HTTP/1.1 "), 400, "space after version"},
    {RAW("GET / HTTP/1.1\nHost"), 400, "bare LF after request line"},
    {RAW("GET / HTTP/1.1\r\nHost: a\nX"), 400, "bare LF in fields"},
    {RAW("GET / HTTP/1.1\r\nHost: a\rX"), 400, "bare CR in fields"},
    {RAW("GET / HTTP/2.0\r\n"), 505, "HTTP/2.0 line complete"},
};

START_TEST(test_req_early)
{
    const struct req_case *c = &req_early[_i];
    struct http_header h[MAX_HDRS];
    struct http_request req;
    ssize_t rc = parse_req(c->raw, c->len, &lim_default, &req, h, MAX_HDRS);

    ck_assert_msg(rc == PT_ERROR && req.status == c->status,
                  "%s: rc %zd status %d", c->what, rc, req.status);
}
END_TEST

/* ---- requests: accepted ------------------------------------------------ */

START_TEST(test_req_get_query)
{
    static const char raw[] = "GET /a/b?x=1&y=%20 HTTP/1.1\r\n"
                              "Host: example.com:8080\r\n"
                              "User-Agent:  curl/8 \t\r\n"
                              "X-Empty:\r\n"
                              "X-Obs: caf\xc3\xa9\r\n\r\n";
    struct http_header h[MAX_HDRS];
    struct http_request req;
    ssize_t rc = parse_req(raw, sizeof(raw) - 1, &lim_default, &req, h, 8);

    ck_assert_int_eq(rc, (ssize_t)sizeof(raw) - 1);
    ck_assert(str_is(req.method, "GET"));
    ck_assert_int_eq(req.method_id, HTTP_M_GET);
    ck_assert(str_is(req.target, "/a/b?x=1&y=%20"));
    ck_assert(str_is(req.path, "/a/b"));
    ck_assert(str_is(req.query, "x=1&y=%20"));
    ck_assert(str_is(req.host, "example.com:8080"));
    ck_assert_int_eq(req.version_minor, 1);
    ck_assert_uint_eq(req.nheaders, 4);
    ck_assert(str_is(h[1].name, "User-Agent"));
    ck_assert(str_is(h[1].value, "curl/8"));
    ck_assert(str_is(h[2].value, ""));
    ck_assert(str_is(h[3].value, "caf\xc3\xa9"));
    ck_assert_int_eq(req.content_length, -1);
    ck_assert(!req.chunked && req.keep_alive && !req.upgrade);
    ck_assert(!req.expect_continue);
}
END_TEST

START_TEST(test_req_post_length)
{
    static const char raw[] = "POST /submit HTTP/1.1\r\nHost: a\r\n"
                              "Content-Length: 5, 5\r\n"
                              "content-length: 5\r\n"
                              "Expect: 100-Continue\r\n\r\nhello";
    struct http_header h[MAX_HDRS];
    struct http_request req;
    ssize_t rc = parse_req(raw, sizeof(raw) - 1, &lim_default, &req, h, 8);

    ck_assert_int_eq(rc, (ssize_t)sizeof(raw) - 1 - 5);
    ck_assert_int_eq(req.method_id, HTTP_M_POST);
    ck_assert_int_eq(req.content_length, 5);
    ck_assert(!req.chunked);
    ck_assert(req.expect_continue);
    ck_assert_uint_eq(req.query.len, 0);
}
END_TEST

START_TEST(test_req_post_chunked)
{
    static const char raw[] = "POST /up HTTP/1.1\r\nHost: a\r\n"
                              "Transfer-Encoding: Chunked\r\n\r\n";
    struct http_header h[MAX_HDRS];
    struct http_request req;
    ssize_t rc = parse_req(raw, sizeof(raw) - 1, &lim_default, &req, h, 8);

    ck_assert_int_eq(rc, (ssize_t)sizeof(raw) - 1);
    ck_assert(req.chunked);
    ck_assert_int_eq(req.content_length, -1);
}
END_TEST

START_TEST(test_req_http10)
{
    static const char ka[] = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n"
                             "Expect: 100-continue\r\n\r\n";
    static const char plain[] = "GET / HTTP/1.0\r\n\r\n";
    static const char closed[] = "GET / HTTP/1.1\r\nHost: a\r\n"
                                 "Connection: keep-alive, close\r\n\r\n";
    struct http_header h[MAX_HDRS];
    struct http_request req;

    ck_assert_int_eq(parse_req(ka, sizeof(ka) - 1, NULL, &req, h, 8),
                     (ssize_t)sizeof(ka) - 1);
    ck_assert_int_eq(req.version_minor, 0);
    ck_assert(req.keep_alive);
    ck_assert(!req.expect_continue); /* ignored for HTTP/1.0 */
    ck_assert_uint_eq(req.host.len, 0);
    ck_assert_int_eq(parse_req(plain, sizeof(plain) - 1, NULL, &req, h, 8),
                     (ssize_t)sizeof(plain) - 1);
    ck_assert(!req.keep_alive);
    ck_assert_int_eq(parse_req(closed, sizeof(closed) - 1, NULL, &req, h, 8),
                     (ssize_t)sizeof(closed) - 1);
    ck_assert(!req.keep_alive);
}
END_TEST

START_TEST(test_req_absolute)
{
    static const char raw[] = "GET HTTPS://Up.Example:8443/p/q?z HTTP/1.1\r\n"
                              "Host: other\r\n\r\n";
    static const char bare[] = "GET http://[::1]:80 HTTP/1.1\r\n"
                               "Host: x\r\n\r\n";
    struct http_header h[MAX_HDRS];
    struct http_request req;

    ck_assert_int_eq(parse_req(raw, sizeof(raw) - 1, NULL, &req, h, 8),
                     (ssize_t)sizeof(raw) - 1);
    ck_assert(str_is(req.host, "Up.Example:8443"));
    ck_assert(str_is(req.path, "/p/q"));
    ck_assert(str_is(req.query, "z"));
    ck_assert_int_eq(parse_req(bare, sizeof(bare) - 1, NULL, &req, h, 8),
                     (ssize_t)sizeof(bare) - 1);
    ck_assert(str_is(req.host, "[::1]:80"));
    ck_assert_uint_eq(req.path.len, 0);
}
END_TEST

START_TEST(test_req_options_connect)
{
    static const char opt[] = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char con[] = "CONNECT a.example:443 HTTP/1.1\r\n"
                              "Host: a.example:443\r\n\r\n";
    struct http_header h[MAX_HDRS];
    struct http_request req;

    ck_assert_int_eq(parse_req(opt, sizeof(opt) - 1, NULL, &req, h, 8),
                     (ssize_t)sizeof(opt) - 1);
    ck_assert_int_eq(req.method_id, HTTP_M_OPTIONS);
    ck_assert(str_is(req.path, "*"));
    ck_assert_int_eq(parse_req(con, sizeof(con) - 1, NULL, &req, h, 8),
                     (ssize_t)sizeof(con) - 1);
    ck_assert_int_eq(req.method_id, HTTP_M_CONNECT);
    ck_assert(str_is(req.target, "a.example:443"));
    ck_assert_uint_eq(req.path.len, 0);
}
END_TEST

START_TEST(test_req_lists)
{
    static const char raw[] = "PUT /x HTTP/1.1\r\nHost: %41b.example:\r\n"
                              "Connection: , close,\r\n"
                              "Expect: , 100-continue\r\n\r\n";
    struct http_header h[MAX_HDRS];
    struct http_request req;

    ck_assert_int_eq(parse_req(raw, sizeof(raw) - 1, NULL, &req, h, 8),
                     (ssize_t)sizeof(raw) - 1);
    ck_assert(str_is(req.host, "%41b.example:"));
    ck_assert(!req.keep_alive && req.expect_continue);
}
END_TEST

START_TEST(test_req_pipelined)
{
    static const char raw[] = "\r\n\r\nGET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                              "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t first = 4 + strlen("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
    struct http_header h[MAX_HDRS];
    struct http_request req;
    ssize_t rc = parse_req(raw, sizeof(raw) - 1, NULL, &req, h, 8);

    ck_assert_int_eq(rc, (ssize_t)first);
    ck_assert(str_is(req.path, "/1"));
    rc = parse_req(raw + first, sizeof(raw) - 1 - first, NULL, &req, h, 8);
    ck_assert_int_eq(rc, (ssize_t)(sizeof(raw) - 1 - first));
    ck_assert(str_is(req.path, "/2"));
}
END_TEST

START_TEST(test_req_methods_upgrade)
{
    static const char ws[] = "GET /ws HTTP/1.1\r\nHost: a\r\n"
                             "Connection: keep-alive, Upgrade\r\n"
                             "Upgrade: websocket\r\n\r\n";
    static const char noup[] = "GET /ws HTTP/1.1\r\nHost: a\r\n"
                               "Connection: Upgrade\r\n\r\n";
    static const char purge[] = "PURGE / HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char lower[] = "get / HTTP/1.1\r\nHost: a\r\n\r\n";
    struct http_header h[MAX_HDRS];
    struct http_request req;

    ck_assert_int_gt(parse_req(ws, sizeof(ws) - 1, NULL, &req, h, 8), 0);
    ck_assert(req.upgrade && req.keep_alive);
    ck_assert_int_gt(parse_req(noup, sizeof(noup) - 1, NULL, &req, h, 8), 0);
    ck_assert(!req.upgrade);
    ck_assert_int_gt(parse_req(purge, sizeof(purge) - 1, NULL, &req, h, 8), 0);
    ck_assert_int_eq(req.method_id, HTTP_M_OTHER);
    ck_assert(str_is(req.method, "PURGE"));
    ck_assert_int_gt(parse_req(lower, sizeof(lower) - 1, NULL, &req, h, 8), 0);
    ck_assert_int_eq(req.method_id, HTTP_M_OTHER);
}
END_TEST

/* ---- requests: fed one byte at a time ---------------------------------- */

static const char *const req_split[] = {
    "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
    "\r\nPOST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n",
    "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "GET http://h.example/x HTTP/1.1\r\nHost: h.example\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    ("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
     "Upgrade: websocket\r\nExpect: 100-continue\r\n\r\n"),
};

START_TEST(test_req_split)
{
    const char *raw = req_split[_i];
    size_t len = strlen(raw);
    struct http_header h1[MAX_HDRS], h2[MAX_HDRS];
    struct http_request whole, part;
    /* An exact-size copy so ASan sees any read past the end. */
    char *buf = malloc(len + 5);

    memcpy(buf, raw, len);
    memcpy(buf + len, "GET /", 5); /* a pipelined request follows */
    ck_assert_int_eq(parse_req(buf, len, NULL, &whole, h1, MAX_HDRS),
                     (ssize_t)len);
    for (size_t k = 0; k < len; k++) {
        char *pre = malloc(k ? k : 1);
        memcpy(pre, buf, k);
        ck_assert_msg(parse_req(pre, k, NULL, &part, h2, MAX_HDRS) == PT_AGAIN,
                      "prefix %zu", k);
        free(pre);
    }
    for (size_t k = len; k <= len + 5; k++) {
        ck_assert_int_eq(parse_req(buf, k, NULL, &part, h2, MAX_HDRS),
                         (ssize_t)len);
        assert_req_same(&whole, &part);
    }
    free(buf);
}
END_TEST

/* ---- limits ------------------------------------------------------------ */

/* "GET /<n-1 'a'> HTTP/1.1\r\nHost: a\r\n\r\n": a target of n bytes. */
static char *req_with_target(size_t n, size_t *len)
{
    char *buf = malloc(n + 64);

    memcpy(buf, "GET /", 5);
    memset(buf + 5, 'a', n - 1);
    *len = 4 + n;
    *len += (size_t)sprintf(buf + *len, " HTTP/1.1\r\nHost: a\r\n\r\n");
    return buf;
}

START_TEST(test_limit_uri)
{
    struct http_limits lim = {4096, 100, 100};
    struct http_header h[MAX_HDRS];
    struct http_request req;
    size_t len;
    char *ok = req_with_target(100, &len);

    ck_assert_int_eq(parse_req(ok, len, &lim, &req, h, 8), (ssize_t)len);
    free(ok);
    char *big = req_with_target(101, &len);
    ck_assert_int_eq(parse_req(big, len, &lim, &req, h, 8), PT_ERROR);
    ck_assert_int_eq(req.status, 414);
    /* Still incomplete: no CRLF yet, but the target is already too long. */
    ck_assert_int_eq(parse_req(big, 4 + 101, &lim, &req, h, 8), PT_ERROR);
    ck_assert_int_eq(req.status, 414);
    ck_assert_int_eq(parse_req(big, 4 + 100, &lim, &req, h, 8), PT_AGAIN);
    assert_bad_monotonic(big, len, &lim, 8);
    free(big);
    /* A request line longer than the whole head limit, target still short. */
    lim = (struct http_limits){64, 100, 100};
    big = req_with_target(90, &len);
    ck_assert_int_eq(parse_req(big, len, &lim, &req, h, 8), PT_ERROR);
    ck_assert_int_eq(req.status, 431);
    free(big);
}
END_TEST

START_TEST(test_limit_head_bytes)
{
    static const char head[] = "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789\r\n"
                               "\r\n";
    size_t len = sizeof(head) - 1;
    struct http_limits lim = {len, 8192, 100};
    struct http_header h[MAX_HDRS];
    struct http_request req;

    ck_assert_int_eq(parse_req(head, len, &lim, &req, h, 8), (ssize_t)len);
    lim.max_head_bytes = len - 1;
    ck_assert_int_eq(parse_req(head, len, &lim, &req, h, 8), PT_ERROR);
    ck_assert_int_eq(req.status, 431);
    /* Incomplete and already at the limit: 431 without waiting for more. */
    ck_assert_int_eq(parse_req(head, len - 1, &lim, &req, h, 8), PT_ERROR);
    ck_assert_int_eq(req.status, 431);
    ck_assert_int_eq(parse_req(head, len - 2, &lim, &req, h, 8), PT_AGAIN);
    /* Empty lines before the request line count too. */
    lim.max_head_bytes = 8;
    ck_assert_int_eq(parse_req("\r\n\r\n\r\n\r\n", 8, &lim, &req, h, 8),
                     PT_ERROR);
    ck_assert_int_eq(req.status, 431);
    assert_bad_monotonic(head, len, &lim, 8);
}
END_TEST

START_TEST(test_limit_header_count)
{
    static const char head[] = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n"
                               "\r\n";
    static const char part[] = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n"
                               "C: 3";
    size_t len = sizeof(head) - 1;
    struct http_limits lim = {16384, 8192, 3};
    struct http_header h[MAX_HDRS];
    struct http_request req;

    ck_assert_int_eq(parse_req(head, len, &lim, &req, h, 3), (ssize_t)len);
    lim.max_headers = 2;
    ck_assert_int_eq(parse_req(head, len, &lim, &req, h, 8), PT_ERROR);
    ck_assert_int_eq(req.status, 431);
    ck_assert_int_eq(parse_req(part, sizeof(part) - 1, &lim, &req, h, 8),
                     PT_ERROR);
    ck_assert_int_eq(req.status, 431);
    assert_bad_monotonic(head, len, &lim, 8);
    /* The caller's array is the other bound. */
    lim.max_headers = 100;
    ck_assert_int_eq(parse_req(head, len, &lim, &req, h, 2), PT_ERROR);
    ck_assert_int_eq(req.status, 431);
    ck_assert_int_eq(parse_req(head, len, &lim, &req, NULL, 0), PT_ERROR);
    ck_assert_int_eq(req.status, 431);
}
END_TEST

/* ---- responses --------------------------------------------------------- */

START_TEST(test_resp_valid)
{
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                             "Server: x\r\n\r\nhello";
    static const char noreason[] = "HTTP/1.1 204\r\n\r\n";
    static const char empty[] = "HTTP/1.1 304 \r\n\r\n";
    struct http_header h[MAX_HDRS];
    struct http_response resp;

    ck_assert_int_eq(parse_resp(ok, sizeof(ok) - 1, &resp, h),
                     (ssize_t)sizeof(ok) - 6);
    ck_assert_int_eq(resp.status, 200);
    ck_assert(str_is(resp.reason, "OK"));
    ck_assert_int_eq(resp.content_length, 5);
    ck_assert(resp.keep_alive && !resp.chunked);
    ck_assert_uint_eq(resp.nheaders, 2);
    ck_assert_int_eq(parse_resp(noreason, sizeof(noreason) - 1, &resp, h),
                     (ssize_t)sizeof(noreason) - 1);
    ck_assert_int_eq(resp.status, 204);
    ck_assert_uint_eq(resp.reason.len, 0);
    ck_assert_int_eq(parse_resp(empty, sizeof(empty) - 1, &resp, h),
                     (ssize_t)sizeof(empty) - 1);
    ck_assert_int_eq(resp.status, 304);
    ck_assert_uint_eq(resp.reason.len, 0);
    ck_assert_int_eq(parse_resp(ok, 20, &resp, h), PT_AGAIN);
}
END_TEST

START_TEST(test_resp_framing)
{
    static const char both[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n";
    static const char gz[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
                             "\r\n";
    static const char gzc[] = "HTTP/1.1 200 OK\r\n"
                              "Transfer-Encoding: gzip, chunked\r\n\r\n";
    static const char ka10[] = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                               "\r\n";
    static const char p10[] = "HTTP/1.0 200 OK\r\n\r\n";
    static const char cl11[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
    struct http_header h[MAX_HDRS];
    struct http_response r;

    ck_assert_int_gt(parse_resp(both, sizeof(both) - 1, &r, h), 0);
    ck_assert(r.chunked && r.content_length == -1 && r.keep_alive);
    ck_assert_int_gt(parse_resp(gz, sizeof(gz) - 1, &r, h), 0);
    ck_assert(!r.chunked && r.content_length == -1 && !r.keep_alive);
    ck_assert_int_gt(parse_resp(gzc, sizeof(gzc) - 1, &r, h), 0);
    ck_assert(r.chunked && r.keep_alive);
    ck_assert_int_gt(parse_resp(ka10, sizeof(ka10) - 1, &r, h), 0);
    ck_assert(r.keep_alive && r.version_minor == 0);
    ck_assert_int_gt(parse_resp(p10, sizeof(p10) - 1, &r, h), 0);
    ck_assert(!r.keep_alive);
    ck_assert_int_gt(parse_resp(cl11, sizeof(cl11) - 1, &r, h), 0);
    ck_assert(!r.keep_alive);
}
END_TEST

static const struct resp_case resp_bad[] = {
    {RAW("HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n"), "obs-fold"},
    {RAW("HTTP/1.1 200 OK\nX: y\n\n"), "bare LF"},
    {RAW("HTTP/1.1 200 OK\r\nX: y\rZ\r\n\r\n"), "bare CR"},
    {RAW("HTTP/1.1 200 OK\r\nX : y\r\n\r\n"), "space before colon"},
    {RAW("HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n"), "NUL in value"},
    {RAW("HTTP/1.1 20 OK\r\n\r\n"), "two-digit status"},
    {RAW("HTTP/1.1 2000 OK\r\n\r\n"), "four-digit status"},
    {RAW("HTTP/1.1 099 OK\r\n\r\n"), "status below 100"},
    {RAW("HTTP/1.1 2x0 OK\r\n\r\n"), "letter in status"},
    {RAW("HTTP/1.1  200 OK\r\n\r\n"), "two spaces"},
    {RAW("HTTP/1.1 200OK\r\n\r\n"), "no space before reason"},
    {RAW("HTTP/1.1 200 O\x01K\r\n\r\n"), "CTL in reason"},
    {RAW("HTTP/2.0 200 OK\r\n\r\n"), "HTTP/2.0"},
    {RAW("http/1.1 200 OK\r\n\r\n"), "lowercase version"},
    {RAW("\r\nHTTP/1.1 200 OK\r\n\r\n"), "leading empty line"},
    {RAW("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n"), "CL differs"},
    {RAW("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), "CL not digits"},
    {RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
     "chunked not final"},
    {RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
         "Transfer-Encoding: chunked\r\n\r\n"),
     "chunked twice"},
    {RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n"), "TE empty"},
    {RAW("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
     "TE in HTTP/1.0"},
};

START_TEST(test_resp_bad)
{
    const struct resp_case *c = &resp_bad[_i];
    struct http_header h[MAX_HDRS];
    struct http_response resp;
    ssize_t rc = parse_resp(c->raw, c->len, &resp, h);

    ck_assert_msg(rc == PT_ERROR, "%s: returned %zd", c->what, rc);
    ck_assert_msg(resp.error != NULL, "%s", c->what);
}
END_TEST

START_TEST(test_resp_limits)
{
    static const char raw[] = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n";
    struct http_limits lim = {16384, 8192, 1};
    struct http_header h[MAX_HDRS];
    struct http_response resp;

    memset(&resp, 0, sizeof(resp));
    resp.headers = h;
    resp.headers_cap = MAX_HDRS;
    ck_assert_int_eq(http_parse_response(raw, sizeof(raw) - 1, &lim, &resp),
                     PT_ERROR);
    lim = (struct http_limits){20, 8192, 100};
    ck_assert_int_eq(http_parse_response(raw, sizeof(raw) - 1, &lim, &resp),
                     PT_ERROR);
    ck_assert_int_eq(http_parse_response(raw, 19, &lim, &resp), PT_AGAIN);
    for (size_t k = 0; k < sizeof(raw) - 1; k++)
        ck_assert_int_eq(parse_resp(raw, k, &resp, h), PT_AGAIN);
}
END_TEST

/* ---- chunked bodies ---------------------------------------------------- */

struct chunk_out {
    char data[1024];
    size_t len;      /* payload bytes gathered */
    size_t consumed; /* bytes the decoder took */
    int error;
    int done;
};

/* Decode buf in slices of at most step bytes (0: the whole rest). */
static void chunk_run(const char *buf, size_t len, size_t step, size_t max_tr,
                      struct chunk_out *out)
{
    struct http_chunked dec = {0};
    size_t pos = 0;

    dec.max_trailer_bytes = max_tr;
    memset(out, 0, sizeof(*out));
    while (pos < len && !dec.done) {
        size_t n = step ? PT_MIN(step, len - pos) : len - pos;
        struct pt_str d;
        ssize_t rc = http_chunked_decode(&dec, buf + pos, n, &d);
        if (rc < 0) {
            out->error = 1;
            break;
        }
        ck_assert_uint_le((size_t)rc, n);
        ck_assert(d.len == 0 ||
                  (d.p >= buf + pos && d.p + d.len <= buf + pos + (size_t)rc));
        ck_assert(out->len + d.len <= sizeof(out->data));
        memcpy(out->data + out->len, d.p, d.len);
        out->len += d.len;
        pos += (size_t)rc;
        if (rc == 0 && !dec.done)
            ck_abort_msg("no progress");
    }
    out->consumed = pos;
    out->done = dec.done;
}

START_TEST(test_chunked_valid)
{
    static const char body[] =
        "5\r\nhello\r\n"
        "000A;name=value ; quoted = \"a \\\" ;b\" ;flag\r\n0123456789\r\n"
        "c \t;x ;y\r\n hello world\r\n"
        "0;last\r\nX-Sum: 42\r\nY:\r\n\r\n"
        "GET / HTTP/1.1\r\n";
    size_t body_len = sizeof(body) - 1 - 16;
    struct chunk_out whole, bytes;

    chunk_run(body, sizeof(body) - 1, 0, 0, &whole);
    ck_assert(!whole.error && whole.done);
    ck_assert_uint_eq(whole.consumed, body_len);
    ck_assert_uint_eq(whole.len, 27);
    ck_assert_mem_eq(whole.data, "hello0123456789 hello world", 27);
    chunk_run(body, sizeof(body) - 1, 1, 0, &bytes);
    ck_assert(!bytes.error && bytes.done);
    ck_assert_uint_eq(bytes.consumed, body_len);
    ck_assert_uint_eq(bytes.len, whole.len);
    ck_assert_mem_eq(bytes.data, whole.data, whole.len);
}
END_TEST

START_TEST(test_chunked_state)
{
    struct http_chunked dec = {0};
    struct pt_str d;

    /* Incomplete input is consumed and remembered. */
    ck_assert_int_eq(http_chunked_decode(&dec, "3\r", 2, &d), 2);
    ck_assert_int_eq(http_chunked_decode(&dec, "\nab", 3, &d), 3);
    ck_assert(d.len == 2 && memcmp(d.p, "ab", 2) == 0);
    ck_assert_int_eq(dec.remaining, 1);
    ck_assert_int_eq(http_chunked_decode(&dec, "c\r\n0\r\n\r\nXX", 10, &d), 1);
    ck_assert_int_eq(http_chunked_decode(&dec, "\r\n0\r\n\r\nXX", 9, &d), 7);
    ck_assert(dec.done && d.len == 0);
    ck_assert_int_eq(http_chunked_decode(&dec, "XX", 2, &d), 0);
    /* Errors stick. */
    memset(&dec, 0, sizeof(dec));
    ck_assert_int_eq(http_chunked_decode(&dec, "z", 1, &d), PT_ERROR);
    ck_assert_int_eq(http_chunked_decode(&dec, "0\r\n\r\n", 5, &d), PT_ERROR);
    /* 2^62 itself is a legal size. */
    memset(&dec, 0, sizeof(dec));
    ck_assert_int_eq(http_chunked_decode(&dec, "4000000000000000\r\n", 18, &d),
                     18);
    ck_assert(dec.remaining == ((uint64_t)1 << 62));
}
END_TEST

static const struct chunk_case chunk_bad[] = {
    {RAW("\r\n"), "empty chunk-size"},
    {RAW("g\r\n"), "non-hex size"},
    {RAW("-5\r\n"), "negative size"},
    {RAW("0x5\r\n"), "0x prefix"},
    {RAW(" 5\r\n"), "space before size"},
    {RAW("5 \r\nhello\r\n0\r\n\r\n"), "space after size, no ext"},
    {RAW("5\nhello\r\n0\r\n\r\n"), "bare LF after size"},
    {RAW("5\rhello\r\n0\r\n\r\n"), "bare CR after size"},
    {RAW("5\r\nhelloX\r\n0\r\n\r\n"), "data longer than size"},
    {RAW("5\r\nhello\n0\r\n\r\n"), "bare LF after data"},
    {RAW("5\r\nhello\r0\r\n\r\n"), "bare CR after data"},
    {RAW("4000000000000001\r\n"), "size above 2^62"},
    {RAW("FFFFFFFFFFFFFFFFFFFF\r\n"), "size overflows 64 bits"},
    {RAW("5;\r\nhello\r\n0\r\n\r\n"), "empty extension"},
    {RAW("5;=x\r\nhello\r\n0\r\n\r\n"), "extension without name"},
    {RAW("5;a=\r\nhello\r\n0\r\n\r\n"), "extension without value"},
    {RAW("5;a\x01\r\nhello\r\n0\r\n\r\n"), "CTL in extension"},
    {RAW("5;a=b c\r\nhello\r\n0\r\n\r\n"), "space inside ext value"},
    {RAW("5;a=\"x\r\nhello\r\n0\r\n\r\n"), "unterminated quote"},
    {RAW("5;a=\"x\"y\r\nhello\r\n0\r\n\r\n"), "bytes after quote"},
    {RAW("5;a=\"x\x7f\"\r\nhello\r\n0\r\n\r\n"), "DEL in quoted"},
    {RAW("5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n"), "CTL after backslash"},
    {RAW("5;a \r\nhello\r\n0\r\n\r\n"), "space after ext name"},
    {RAW("0\r\n x: y\r\n\r\n"), "obs-fold in trailer"},
    {RAW("0\r\nX\r\n\r\n"), "trailer without colon"},
    {RAW("0\r\nX : y\r\n\r\n"), "space before colon in trailer"},
    {RAW("0\r\n: y\r\n\r\n"), "empty trailer name"},
    {RAW("0\r\nX: a\0b\r\n\r\n"), "NUL in trailer value"},
    {RAW("0\r\nX: y\n\r\n"), "bare LF in trailer"},
    {RAW("0\r\nX: y\r\n\n"), "bare LF ends trailers"},
    {RAW("0\r\n\rX"), "bare CR ends trailers"},
};

START_TEST(test_chunked_bad)
{
    const struct chunk_case *c = &chunk_bad[_i];
    struct chunk_out whole, bytes;

    chunk_run(c->raw, c->len, 0, 0, &whole);
    chunk_run(c->raw, c->len, 1, 0, &bytes);
    ck_assert_msg(whole.error && bytes.error, "%s", c->what);
}
END_TEST

START_TEST(test_chunked_limits)
{
    char line[4200];
    struct chunk_out out;
    static const char tr[] = "0\r\nX-A: 0123456789\r\n\r\n";

    /* A size line of 4096 bytes is the longest allowed. */
    memset(line, '0', sizeof(line));
    memcpy(line + 4094, "\r\n\r\n", 4);
    chunk_run(line, 4098, 0, 0, &out);
    ck_assert(!out.error && out.done);
    memset(line, '0', sizeof(line));
    memcpy(line + 4095, "\r\n\r\n", 4);
    chunk_run(line, 4099, 0, 0, &out);
    ck_assert(out.error);
    /* Trailer section: 17 bytes of field line plus the final CRLF. */
    chunk_run(tr, sizeof(tr) - 1, 0, 19, &out);
    ck_assert(!out.error && out.done);
    chunk_run(tr, sizeof(tr) - 1, 1, 18, &out);
    ck_assert(out.error);
}
END_TEST

/* ---- small lookups ----------------------------------------------------- */

/*
 * pt_str_ieq, eight bytes a turn, against a byte-by-byte fold: for
 * lengths 0-24, each place of the literal with every byte value put in
 * the view.  Only 'A'..'Z' and 'a'..'z' may meet their other case;
 * pairs 0x20 apart that are not letters ('@' '`', '[' '{', CR '-',
 * 0xc1 0xe1) must differ.
 */
static int ieq_ref(struct pt_str s, const char *lit)
{
    if (s.len != strlen(lit))
        return 0;
    for (size_t i = 0; i < s.len; i++)
        if (pt_lower(s.p[i]) != pt_lower(lit[i]))
            return 0;
    return 1;
}

START_TEST(test_str_ieq)
{
    const char *src = "X-Forwarded-For-Content-Lengths@[";
    char lit[32], view[32];

    for (size_t len = 0; len <= 24; len++) {
        memcpy(lit, src + (len % 7), len);
        lit[len] = '\0';
        for (size_t at = 0; at < len; at++) {
            for (int b = 0; b < 256; b++) {
                memcpy(view, lit, len);
                view[at] = (char)b;
                struct pt_str v = {view, len};
                ck_assert_msg(pt_str_ieq(v, lit) == ieq_ref(v, lit),
                              "byte 0x%02x at %zu of \"%s\"", b, at, lit);
            }
        }
        /* the whole view in the other case, and one byte short */
        for (size_t i = 0; i < len; i++) {
            char f = (char)(lit[i] | 0x20);
            view[i] = f >= 'a' && f <= 'z' ? (char)(lit[i] ^ 0x20) : lit[i];
        }
        ck_assert(pt_str_ieq((struct pt_str){view, len}, lit));
        if (len)
            ck_assert(!pt_str_ieq((struct pt_str){view, len - 1}, lit));
    }
    /* Literals, as the parser passes them: 8 to 16 bytes take the
     * inline path with the literal's words folded. */
#define IEQ_EVERY_BYTE(lit)                                                  \
    do {                                                                     \
        for (size_t at = 0; at < sizeof(lit) - 1; at++) {                    \
            for (int b = 0; b < 256; b++) {                                  \
                struct pt_str v = {view, sizeof(lit) - 1};                   \
                memcpy(view, lit, sizeof(lit) - 1);                          \
                view[at] = (char)b;                                          \
                ck_assert_msg(pt_str_ieq(v, lit) == ieq_ref(v, lit),         \
                              "byte 0x%02x at %zu of \"%s\"", b, at, lit);    \
            }                                                                \
        }                                                                    \
    } while (0)
    IEQ_EVERY_BYTE("Host");
    IEQ_EVERY_BYTE("X-Forwar");
    IEQ_EVERY_BYTE("Keep-Alive");
    IEQ_EVERY_BYTE("Content-Type");
    IEQ_EVERY_BYTE("Content-Length");
    IEQ_EVERY_BYTE("X-Forwarded-Host");
    IEQ_EVERY_BYTE("Transfer-Encoding");
#undef IEQ_EVERY_BYTE
    ck_assert(!pt_str_ieq(PT_STR("content\rlength"), "Content-Length"));
    ck_assert(!pt_str_ieq(PT_STR("@"), "`"));
    ck_assert(!pt_str_ieq(PT_STR("abcdefgh["), "ABCDEFGH{"));
    ck_assert(!pt_str_ieq(PT_STR("abcdefgh\xc1"), "ABCDEFGH\xe1"));
    ck_assert(pt_str_ieq(PT_STR("TRANSFER-ENCODING"), "transfer-encoding"));
}
END_TEST

START_TEST(test_helpers)
{
    struct http_header h[2] = {{PT_STR("Host"), PT_STR("a")},
                               {PT_STR("X-Y"), PT_STR("b")}};

    ck_assert_ptr_eq(http_header_find(h, 2, "x-y"), &h[1]);
    ck_assert_ptr_eq(http_header_find(h, 2, "HOST"), &h[0]);
    ck_assert_ptr_null(http_header_find(h, 2, "X"));
    ck_assert_ptr_null(http_header_find(h, 0, "Host"));
    ck_assert(http_list_has_token(PT_STR("keep-alive, Upgrade"), "upgrade"));
    ck_assert(http_list_has_token(PT_STR(" close "), "close"));
    ck_assert(http_list_has_token(PT_STR("a,,\tclose\t,"), "close"));
    ck_assert(!http_list_has_token(PT_STR("upgrades"), "upgrade"));
    ck_assert(!http_list_has_token(PT_STR("notclose, closed"), "close"));
    ck_assert(!http_list_has_token(PT_STR(""), "close"));
    ck_assert(!http_list_has_token(PT_STR("close"), ""));
    ck_assert_str_eq(http_reason(200), "OK");
    ck_assert_str_eq(http_reason(431), "Request Header Fields Too Large");
    ck_assert_str_eq(http_reason(511), "Network Authentication Required");
    ck_assert_str_eq(http_reason(101), "Switching Protocols");
    ck_assert_str_eq(http_reason(208), "Already Reported");
    ck_assert_str_eq(http_reason(226), "IM Used");
    ck_assert_str_eq(http_reason(308), "Permanent Redirect");
    ck_assert_str_eq(http_reason(418), "I'm a teapot");
    ck_assert_str_eq(http_reason(421), "Misdirected Request");
    ck_assert_str_eq(http_reason(428), "Precondition Required");
    ck_assert_str_eq(http_reason(451), "Unavailable For Legal Reasons");
    ck_assert_str_eq(http_reason(505), "HTTP Version Not Supported");
    ck_assert_str_eq(http_reason(510), "Not Extended");
    ck_assert_str_eq(http_reason(306), "Unknown");
    ck_assert_str_eq(http_reason(419), "Unknown");
    ck_assert_str_eq(http_reason(509), "Unknown");
    ck_assert_str_eq(http_reason(599), "Unknown");
    ck_assert_str_eq(http_reason(99), "Unknown");
    ck_assert_str_eq(http_reason(600), "Unknown");
    ck_assert_str_eq(http_reason(-1), "Unknown");
}
END_TEST

/* ---- suite ------------------------------------------------------------- */

static Suite *http_parse_suite(void)
{
    Suite *s = suite_create("http_parse");
    TCase *tc;

    tc = tcase_create("request_valid");
    tcase_add_test(tc, test_req_get_query);
    tcase_add_test(tc, test_req_post_length);
    tcase_add_test(tc, test_req_post_chunked);
    tcase_add_test(tc, test_req_http10);
    tcase_add_test(tc, test_req_absolute);
    tcase_add_test(tc, test_req_options_connect);
    tcase_add_test(tc, test_req_lists);
    tcase_add_test(tc, test_req_pipelined);
    tcase_add_test(tc, test_req_methods_upgrade);
    tcase_add_loop_test(tc, test_req_split, 0, (int)PT_ARRAY_LEN(req_split));
    suite_add_tcase(s, tc);

    tc = tcase_create("request_bad");
    tcase_add_loop_test(tc, test_req_bad, 0, (int)PT_ARRAY_LEN(req_bad));
    tcase_add_loop_test(tc, test_req_early, 0, (int)PT_ARRAY_LEN(req_early));
    tcase_add_test(tc, test_req_field_bytes);
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_add_test(tc, test_limit_uri);
    tcase_add_test(tc, test_limit_head_bytes);
    tcase_add_test(tc, test_limit_header_count);
    suite_add_tcase(s, tc);

    tc = tcase_create("response");
    tcase_add_test(tc, test_resp_valid);
    tcase_add_test(tc, test_resp_framing);
    tcase_add_loop_test(tc, test_resp_bad, 0, (int)PT_ARRAY_LEN(resp_bad));
    tcase_add_test(tc, test_resp_limits);
    suite_add_tcase(s, tc);

    tc = tcase_create("chunked");
    tcase_add_test(tc, test_chunked_valid);
    tcase_add_test(tc, test_chunked_state);
    tcase_add_loop_test(tc, test_chunked_bad, 0, (int)PT_ARRAY_LEN(chunk_bad));
    tcase_add_test(tc, test_chunked_limits);
    suite_add_tcase(s, tc);

    tc = tcase_create("helpers");
    tcase_add_test(tc, test_str_ieq);
    tcase_add_test(tc, test_helpers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(http_parse_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
