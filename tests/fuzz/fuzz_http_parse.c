/*
 * fuzz_http_parse.c -- libFuzzer target for src/http_parse.c.  Every input
 * goes through http_parse_request and http_parse_response (whole, and as
 * each growing prefix, each in an exact-size copy so ASan sees overreads)
 * and through http_chunked_decode (whole, and one byte at a time), and the
 * parsers' contracts are checked as invariants.
 * Calls: http_parse.h, libc.  No libFuzzer API: the gcc replay driver in
 * `make check` runs the corpus through the same entry point.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

/* abort() and not assert(): the check must survive -DNDEBUG builds. */
#define FUZZ_CHECK(cond)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,        \
                    __LINE__, #cond);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

#define FUZZ_HDRS 16
#define FUZZ_MAX_TRAILER 256

/* Small limits, so that every limit is reachable with small inputs. */
static const struct http_limits fuzz_lim = {384, 96, 10};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- views ------------------------------------------------------------- */

static int view_in(struct pt_str v, const char *buf, size_t len)
{
    uintptr_t b = (uintptr_t)buf;
    uintptr_t p = (uintptr_t)v.p;

    if (v.len == 0)
        return v.p == NULL || (p >= b && p <= b + len);
    return p >= b && v.len <= len && p - b <= len - v.len;
}

static int view_same(struct pt_str a, struct pt_str b)
{
    return a.len == b.len && (a.len == 0 || a.p == b.p);
}

static void check_headers(const struct http_header *h, size_t n,
                          const char *buf, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        struct pt_str v = h[i].value;

        FUZZ_CHECK(view_in(h[i].name, buf, len) && h[i].name.len > 0);
        FUZZ_CHECK(view_in(v, buf, len));
        FUZZ_CHECK(memchr(h[i].name.p, ':', h[i].name.len) == NULL);
        FUZZ_CHECK(memchr(v.p ? v.p : "", '\r', v.len) == NULL);
        FUZZ_CHECK(memchr(v.p ? v.p : "", '\n', v.len) == NULL);
        FUZZ_CHECK(memchr(v.p ? v.p : "", '\0', v.len) == NULL);
        if (v.len > 0) {
            FUZZ_CHECK(v.p[0] != ' ' && v.p[0] != '\t');
            FUZZ_CHECK(v.p[v.len - 1] != ' ' && v.p[v.len - 1] != '\t');
        }
        (void)http_list_has_token(v, "close");
    }
}

/* ---- requests ---------------------------------------------------------- */

static ssize_t req_parse(const char *buf, size_t len,
                         const struct http_limits *lim,
                         struct http_request *req, struct http_header *h)
{
    memset(req, 0, sizeof(*req));
    req->headers = h;
    req->headers_cap = FUZZ_HDRS;
    return http_parse_request(buf, len, lim, req);
}

static void req_check(ssize_t rc, const char *buf, size_t len,
                      const struct http_limits *lim,
                      const struct http_request *req)
{
    if (rc == PT_AGAIN) {
        FUZZ_CHECK(len < lim->max_head_bytes);
        return;
    }
    if (rc == PT_ERROR) {
        int s = req->status;
        FUZZ_CHECK(s == 400 || s == 414 || s == 417 || s == 431 || s == 501 ||
                   s == 505);
        FUZZ_CHECK(req->error != NULL && req->error[0] != '\0');
        return;
    }
    FUZZ_CHECK(rc > 0 && (size_t)rc <= len);
    FUZZ_CHECK((size_t)rc <= lim->max_head_bytes);
    FUZZ_CHECK(buf[rc - 1] == '\n' && buf[rc - 2] == '\r');
    len = (size_t)rc; /* views stay inside the head */
    FUZZ_CHECK(view_in(req->method, buf, len) && req->method.len > 0);
    FUZZ_CHECK(view_in(req->target, buf, len) && req->target.len > 0);
    FUZZ_CHECK(req->target.len <= lim->max_uri_bytes);
    FUZZ_CHECK(view_in(req->path, buf, len) && view_in(req->query, buf, len));
    FUZZ_CHECK(view_in(req->host, buf, len));
    FUZZ_CHECK(req->version_minor == 0 || req->version_minor == 1);
    FUZZ_CHECK(req->version_minor == 0 || req->host.len > 0);
    FUZZ_CHECK(req->nheaders <= FUZZ_HDRS);
    FUZZ_CHECK(req->nheaders <= lim->max_headers);
    FUZZ_CHECK(req->content_length >= -1);
    FUZZ_CHECK(req->content_length <= ((int64_t)1 << 62));
    FUZZ_CHECK(!(req->chunked && req->content_length >= 0));
    FUZZ_CHECK(!req->chunked || req->version_minor == 1);
    check_headers(req->headers, req->nheaders, buf, len);
    (void)http_header_find(req->headers, req->nheaders, "host");
}

static void req_same(ssize_t ra, const struct http_request *a, ssize_t rb,
                     const struct http_request *b)
{
    FUZZ_CHECK(ra == rb);
    if (ra == PT_ERROR)
        FUZZ_CHECK(a->status == b->status);
    if (ra <= 0)
        return;
    FUZZ_CHECK(view_same(a->method, b->method));
    FUZZ_CHECK(a->method_id == b->method_id);
    FUZZ_CHECK(view_same(a->target, b->target));
    FUZZ_CHECK(view_same(a->path, b->path));
    FUZZ_CHECK(view_same(a->query, b->query));
    FUZZ_CHECK(view_same(a->host, b->host));
    FUZZ_CHECK(a->version_minor == b->version_minor);
    FUZZ_CHECK(a->nheaders == b->nheaders);
    FUZZ_CHECK(a->content_length == b->content_length);
    FUZZ_CHECK(a->chunked == b->chunked && a->keep_alive == b->keep_alive);
    FUZZ_CHECK(a->expect_continue == b->expect_continue);
    FUZZ_CHECK(a->upgrade == b->upgrade);
}

/*
 * Grow the buffer one byte at a time, as a client trickling bytes would:
 * PT_AGAIN until the first answer, which must be right where the head
 * ends (or an error), and every longer buffer gives that same answer.
 */
static void req_prefixes(const char *buf, size_t size)
{
    struct http_header h1[FUZZ_HDRS], h2[FUZZ_HDRS];
    struct http_request first, cur;
    ssize_t rfirst = PT_AGAIN;
    size_t last = PT_MIN(size, fuzz_lim.max_head_bytes);

    for (size_t k = 0; k <= last; k++) {
        char *pre = malloc(k ? k : 1);
        memcpy(pre, buf, k);
        ssize_t rc = req_parse(pre, k, &fuzz_lim, &cur, h2);
        req_check(rc, pre, k, &fuzz_lim, &cur);
        free(pre);
        if (rfirst == PT_AGAIN && rc != PT_AGAIN) {
            FUZZ_CHECK(rc == PT_ERROR || (size_t)rc == k);
            rfirst = req_parse(buf, k, &fuzz_lim, &first, h1);
            FUZZ_CHECK(rfirst == rc);
        } else if (rfirst != PT_AGAIN) {
            /* cur's views point into freed memory: compare by offset. */
            FUZZ_CHECK(rc == rfirst);
            if (rc == PT_ERROR)
                FUZZ_CHECK(cur.status == first.status);
        }
    }
    ssize_t rc = req_parse(buf, size, &fuzz_lim, &cur, h2);
    req_check(rc, buf, size, &fuzz_lim, &cur);
    if (rfirst != PT_AGAIN || size > last)
        req_same(rfirst, &first, rc, &cur);
}

/* ---- responses --------------------------------------------------------- */

static ssize_t resp_parse(const char *buf, size_t len,
                          struct http_response *resp, struct http_header *h)
{
    memset(resp, 0, sizeof(*resp));
    resp->headers = h;
    resp->headers_cap = FUZZ_HDRS;
    return http_parse_response(buf, len, &fuzz_lim, resp);
}

static void resp_check(ssize_t rc, const char *buf, size_t len,
                       const struct http_response *resp)
{
    if (rc == PT_AGAIN) {
        FUZZ_CHECK(len < fuzz_lim.max_head_bytes);
        return;
    }
    if (rc == PT_ERROR) {
        FUZZ_CHECK(resp->error != NULL && resp->error[0] != '\0');
        return;
    }
    FUZZ_CHECK(rc > 0 && (size_t)rc <= len);
    FUZZ_CHECK((size_t)rc <= fuzz_lim.max_head_bytes);
    len = (size_t)rc;
    FUZZ_CHECK(resp->status >= 100 && resp->status <= 999);
    FUZZ_CHECK(view_in(resp->reason, buf, len));
    FUZZ_CHECK(resp->version_minor == 0 || resp->version_minor == 1);
    FUZZ_CHECK(resp->nheaders <= FUZZ_HDRS);
    FUZZ_CHECK(resp->content_length >= -1);
    FUZZ_CHECK(!(resp->chunked && resp->content_length >= 0));
    check_headers(resp->headers, resp->nheaders, buf, len);
}

static void resp_prefixes(const char *buf, size_t size)
{
    struct http_header h[FUZZ_HDRS];
    struct http_response cur;
    ssize_t rfirst = PT_AGAIN;
    size_t last = PT_MIN(size, fuzz_lim.max_head_bytes);

    for (size_t k = 0; k <= last; k++) {
        char *pre = malloc(k ? k : 1);
        memcpy(pre, buf, k);
        ssize_t rc = resp_parse(pre, k, &cur, h);
        resp_check(rc, pre, k, &cur);
        free(pre);
        if (rfirst == PT_AGAIN && rc != PT_AGAIN)
            FUZZ_CHECK(rc == PT_ERROR || (size_t)rc == k);
        if (rfirst != PT_AGAIN)
            FUZZ_CHECK(rc == rfirst);
        if (rc != PT_AGAIN)
            rfirst = rc;
    }
    ssize_t rc = resp_parse(buf, size, &cur, h);
    resp_check(rc, buf, size, &cur);
    if (rfirst != PT_AGAIN || size > last)
        FUZZ_CHECK(rc == rfirst);
}

/* ---- chunked bodies ---------------------------------------------------- */

struct chunk_run {
    char *payload; /* owns: at most the input size */
    size_t len;
    size_t consumed;
    int error;
    int done;
};

/* Decode in slices of at most step bytes (0: all that is left). */
static void chunk_decode(const char *buf, size_t size, size_t step,
                         struct chunk_run *out)
{
    struct http_chunked dec = {0};
    size_t pos = 0;

    dec.max_trailer_bytes = FUZZ_MAX_TRAILER;
    out->payload = malloc(size ? size : 1);
    out->len = 0;
    out->error = 0;
    while (pos < size && !dec.done) {
        size_t n = step ? PT_MIN(step, size - pos) : size - pos;
        struct pt_str d;
        ssize_t rc = http_chunked_decode(&dec, buf + pos, n, &d);

        if (rc == PT_ERROR) {
            out->error = 1;
            FUZZ_CHECK(http_chunked_decode(&dec, buf + pos, n, &d) ==
                       PT_ERROR);
            break;
        }
        FUZZ_CHECK(rc >= 0 && (size_t)rc <= n);
        FUZZ_CHECK(rc > 0 || dec.done); /* progress, or finished */
        FUZZ_CHECK(d.len <= (size_t)rc);
        FUZZ_CHECK(d.len == 0 || d.p + d.len == buf + pos + rc);
        memcpy(out->payload + out->len, d.p, d.len);
        out->len += d.len;
        pos += (size_t)rc;
    }
    out->consumed = pos;
    out->done = dec.done;
    FUZZ_CHECK(out->len <= pos);
    if (dec.done) {
        struct pt_str d;
        FUZZ_CHECK(http_chunked_decode(&dec, buf + pos, size - pos, &d) == 0);
    }
}

static void chunk_compare(const char *buf, size_t size)
{
    struct chunk_run whole, bytes;

    chunk_decode(buf, size, 0, &whole);
    chunk_decode(buf, size, 1, &bytes);
    FUZZ_CHECK(whole.error == bytes.error && whole.done == bytes.done);
    FUZZ_CHECK(whole.len == bytes.len);
    FUZZ_CHECK(memcmp(whole.payload, bytes.payload, whole.len) == 0);
    if (!whole.error)
        FUZZ_CHECK(whole.consumed == bytes.consumed);
    if (!whole.error && !whole.done)
        FUZZ_CHECK(whole.consumed == size); /* all taken while waiting */
    free(whole.payload);
    free(bytes.payload);
}

/* ---- entry ------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy: the replay driver's buffer may be larger. */
    char *buf = malloc(size ? size : 1);
    struct http_header h[FUZZ_HDRS];
    struct http_request req;
    ssize_t rc;

    memcpy(buf, data, size);
    FUZZ_CHECK(http_reason(size > 0 ? data[0] * 3 : 0) != NULL);
    req_prefixes(buf, size);
    resp_prefixes(buf, size);
    chunk_compare(buf, size);

    /* Default limits, then what a proxy does next: the body, pipelining. */
    rc = req_parse(buf, size, NULL, &req, h);
    if (rc > 0 && req.chunked)
        chunk_compare(buf + rc, size - (size_t)rc);
    if (rc > 0) {
        rc = req_parse(buf + rc, size - (size_t)rc, &fuzz_lim, &req, h);
        (void)rc;
    }
    free(buf);
    return 0;
}
