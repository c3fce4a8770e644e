/*
 * http_parse.c -- strict HTTP/1.x message heads (RFC 9112, RFC 9110) and
 * the incremental chunked-body decoder.  Layer 1: pure functions over the
 * caller's bytes; no I/O, no logging, no globals, no allocation.
 * Calls: portico.h helpers (pt_str_ieq, pt_str_eq) and libc only.
 *
 * Heads are re-parsed from the start whenever the caller has more bytes
 * (the "bytes consumed, -2 partial, -1 bad" contract).  To keep that cheap
 * the request line is checked as far as it has arrived, the rest of the
 * head is only scanned for CRLF discipline and its end, and fields are
 * parsed once the empty line is in the buffer.  Checks run in byte order,
 * so a prefix that fails keeps failing with the same status as more bytes
 * arrive, and a head that parses gives the same result in any longer
 * buffer.
 */
#include "http_parse.h"

#include <string.h>

/* RFC 9112 leaves the ceiling to us; 2^62 keeps any sum far from overflow. */
#define HP_MAX_LENGTH ((uint64_t)1 << 62)

/* Defaults for a zero limit; they match conf.h's documented defaults. */
#define HP_DEF_HEAD_BYTES 16384
#define HP_DEF_URI_BYTES 8192
#define HP_DEF_HEADERS 100
#define HP_DEF_TRAILER_BYTES 16384

/* A chunk-size line with extensions has no business being longer. */
#define HP_MAX_SIZE_LINE 4096

/* Everything one head parse needs; shared by requests and responses. */
struct head_ctx {
    const char *buf; /* borrowed: the caller's bytes */
    size_t len;      /* bytes available */
    size_t limit;    /* min(len, max_head): bytes we may look at */
    size_t max_head;
    size_t max_uri;
    size_t max_headers;
    int is_request;
    int version_minor;

    struct http_header *headers; /* borrowed: the caller's array */
    size_t cap;
    size_t n;

    /* Facts gathered from the fields, applied once all are read. */
    size_t nhost;
    struct pt_str host;     /* Host field value */
    struct pt_str abs_host; /* authority of an absolute-form target */
    int64_t content_length; /* -1 when absent */
    size_t te_lines;        /* Transfer-Encoding field lines */
    size_t te_codings;      /* non-empty codings over all of them */
    size_t te_chunked;      /* how many of those are "chunked" */
    unsigned te_last_chunked : 1;
    unsigned conn_close : 1;
    unsigned conn_keep_alive : 1;
    unsigned conn_upgrade : 1;
    unsigned has_upgrade : 1;
    unsigned expect_continue : 1;

    int status;
    const char *error;
};

/* ---- character classes ------------------------------------------------- */

/* RFC 9110 5.6.2 tchar. */
static const unsigned char tchar_map[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, /*  !"#$%&'()*+,-./ */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, /* 0123456789:;<=>? */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* @ABCDEFGHIJKLMNO */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, /* PQRSTUVWXYZ[\]^_ */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* `abcdefghijklmno */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, /* pqrstuvwxyz{|}~  */
};

static int char_tchar(char c)
{
    return tchar_map[(unsigned char)c];
}

/* field-vchar, SP and HTAB: what a field value, reason or trailer holds. */
static int char_field(char c)
{
    unsigned char u = (unsigned char)c;
    return u == '\t' || (u >= 0x20 && u != 0x7f);
}

/* Visible ASCII but '#': fragments never travel in a request-target. */
static int char_target(char c)
{
    unsigned char u = (unsigned char)c;
    return u >= 0x21 && u <= 0x7e && u != '#';
}

static int char_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int char_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int char_hex(char c)
{
    return hex_value(c) >= 0;
}

/* ---- small view helpers ------------------------------------------------ */

static struct pt_str str_make(const char *p, const char *end)
{
    return (struct pt_str){p, (size_t)(end - p)};
}

/* The view without leading and trailing SP/HTAB. */
static struct pt_str str_trim(const char *p, const char *end)
{
    while (p < end && char_ows(*p))
        p++;
    while (end > p && char_ows(end[-1]))
        end--;
    return str_make(p, end);
}

static int str_all_tchar(struct pt_str s)
{
    for (size_t i = 0; i < s.len; i++)
        if (!char_tchar(s.p[i]))
            return 0;
    return s.len > 0;
}

/* 1*DIGIT up to HP_MAX_LENGTH; 0 on anything else. */
static int str_to_length(struct pt_str s, uint64_t *out)
{
    uint64_t n = 0;

    if (s.len == 0)
        return 0;
    for (size_t i = 0; i < s.len; i++) {
        if (!char_digit(s.p[i]))
            return 0;
        unsigned d = (unsigned)(s.p[i] - '0');
        if (n > (HP_MAX_LENGTH - d) / 10)
            return 0;
        n = n * 10 + d;
    }
    *out = n;
    return 1;
}

/*
 * Comma-separated list walker (RFC 9110 5.6.1).  Yields every element,
 * empty ones included (with len 0) so callers can decide about them.
 * Quoted strings are not special: none of the lists we read use them.
 */
struct list_iter {
    const char *p;
    const char *end;
    int done;
};

static struct list_iter list_begin(struct pt_str v)
{
    return (struct list_iter){v.p, v.p + v.len, 0};
}

static int list_next(struct list_iter *it, struct pt_str *elem)
{
    const char *comma;
    const char *e;

    if (it->done)
        return 0;
    comma = memchr(it->p, ',', (size_t)(it->end - it->p));
    e = comma ? comma : it->end;
    *elem = str_trim(it->p, e);
    if (comma)
        it->p = comma + 1;
    else
        it->done = 1;
    return 1;
}

/* ---- host and authority (RFC 3986 3.2.2, RFC 9110 7.2) ----------------- */

/*
 * unreserved / sub-delims, but without ',': a comma in a host is legal in
 * a reg-name yet is what a merged pair of Host fields looks like, so it is
 * refused rather than guessed about.
 */
static const unsigned char host_map[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    0, 1, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, /*  !"#$%&'()*+,-./ */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, /* 0123456789:;<=>? */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* @ABCDEFGHIJKLMNO */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, /* PQRSTUVWXYZ[\]^_ */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* `abcdefghijklmno */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, /* pqrstuvwxyz{|}~  */
};

static int char_host(char c)
{
    return host_map[(unsigned char)c];
}

/* reg-name: 1*( host char / pct-encoded ); returns where it stops. */
static const char *host_reg_name(const char *p, const char *end)
{
    const char *start = p;

    while (p < end && *p != ':') {
        if (*p == '%') {
            if (end - p < 3 || !char_hex(p[1]) || !char_hex(p[2]))
                return NULL;
            p += 3;
        } else if (char_host(*p)) {
            p++;
        } else {
            return NULL;
        }
    }
    return p == start ? NULL : p;
}

/* "[" IPv6address / IPvFuture "]", checked for its alphabet only. */
static const char *host_ip_literal(const char *p, const char *end)
{
    const char *start = ++p;

    while (p < end && *p != ']') {
        if (!char_host(*p) && *p != ':')
            return NULL;
        p++;
    }
    if (p == end || p == start)
        return NULL;
    return p + 1;
}

/* port = *DIGIT, at most 65535; empty only when not required. */
static int host_port(const char *p, const char *end, int need_port)
{
    unsigned long v = 0;

    if (p == end)
        return !need_port;
    if (end - p > 5)
        return 0;
    for (; p < end; p++) {
        if (!char_digit(*p))
            return 0;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    return v <= 65535;
}

/*
 * uri-host [ ":" port ], the port required for CONNECT's authority-form.
 * No userinfo: an '@' is refused (RFC 9110 4.2.4).  An empty host is
 * refused too: RFC 9110 allows an empty Host only for targets without an
 * authority, which we do not serve, so one rule covers every case.
 */
static int host_check(struct pt_str h, int need_port)
{
    const char *end = h.p + h.len;
    const char *p;

    if (h.len == 0)
        return 0;
    if (h.p[0] == '[')
        p = host_ip_literal(h.p, end);
    else
        p = host_reg_name(h.p, end);
    if (p == NULL)
        return 0;
    if (p == end)
        return !need_port;
    if (*p != ':')
        return 0;
    return host_port(p + 1, end, need_port);
}

/* ---- head scaffolding -------------------------------------------------- */

static int head_fail(struct head_ctx *c, int status, const char *why)
{
    c->status = status;
    c->error = why;
    return PT_ERROR;
}

static void head_init(struct head_ctx *c, const char *buf, size_t len,
                      const struct http_limits *lim, int is_request)
{
    memset(c, 0, sizeof(*c));
    c->buf = buf;
    c->len = len;
    c->is_request = is_request;
    c->content_length = -1;
    c->max_head =
        lim && lim->max_head_bytes ? lim->max_head_bytes : HP_DEF_HEAD_BYTES;
    c->max_uri =
        lim && lim->max_uri_bytes ? lim->max_uri_bytes : HP_DEF_URI_BYTES;
    c->max_headers =
        lim && lim->max_headers ? lim->max_headers : HP_DEF_HEADERS;
    c->limit = PT_MIN(len, c->max_head);
}

/*
 * An incomplete head that already fills max_head bytes can never fit:
 * turn PT_AGAIN into 431 then, so the caller stops buffering.
 */
static ssize_t head_limit(struct head_ctx *c, int rc)
{
    if (rc == PT_AGAIN && c->len >= c->max_head)
        return head_fail(c, 431, "header section larger than the limit");
    return rc;
}

/*
 * Find the end of the line starting at pos.  PT_OK: *eol is at its CR.
 * PT_AGAIN: no LF yet; *eol is where the bytes seen so far end (a final
 * CR is left out: its LF may be next).  PT_ERROR: an LF without CR, at
 * *eol.
 */
static int head_line(struct head_ctx *c, size_t pos, size_t *eol)
{
    const char *lf = memchr(c->buf + pos, '\n', c->limit - pos);
    size_t at;

    if (lf == NULL) {
        *eol = c->limit;
        if (*eol > pos && c->buf[*eol - 1] == '\r')
            (*eol)--;
        return PT_AGAIN;
    }
    at = (size_t)(lf - c->buf);
    *eol = at;
    if (at == pos || c->buf[at - 1] != '\r')
        return head_fail(c, 400, "bare LF in message head");
    *eol = at - 1;
    return PT_OK;
}

/* RFC 9112 2.2: empty lines before a request line are skipped. */
static int head_skip_empty(struct head_ctx *c, size_t *pos)
{
    size_t i = 0;

    while (i < c->limit) {
        if (c->buf[i] == '\n')
            return head_fail(c, 400, "bare LF in message head");
        if (c->buf[i] != '\r')
            break;
        if (i + 1 == c->limit)
            return PT_AGAIN;
        if (c->buf[i + 1] != '\n')
            return head_fail(c, 400, "bare CR in message head");
        i += 2;
    }
    *pos = i;
    return i == c->limit ? PT_AGAIN : PT_OK;
}

/*
 * Look for the empty line that ends the head, from the first field line
 * at pos.  Only CRLF discipline and the field count are checked here; the
 * fields are parsed later, once.  Returns the head length, PT_AGAIN or
 * PT_ERROR.
 */
static ssize_t head_scan(struct head_ctx *c, size_t pos)
{
    size_t lines = 0;
    size_t eol;
    int rc;

    for (;;) {
        rc = head_line(c, pos, &eol);
        if (rc == PT_ERROR)
            return PT_ERROR;
        if (memchr(c->buf + pos, '\r', eol - pos) != NULL)
            return head_fail(c, 400, "bare CR in message head");
        if (rc == PT_AGAIN)
            return PT_AGAIN;
        if (eol == pos)
            return (ssize_t)(eol + 2);
        if (++lines > c->max_headers)
            return head_fail(c, 431, "too many header fields");
        pos = eol + 2;
    }
}

/* ---- field semantics --------------------------------------------------- */

static int fact_host(struct head_ctx *c, struct pt_str v)
{
    if (++c->nhost > 1)
        return head_fail(c, 400, "more than one Host header field");
    if (!host_check(v, 0))
        return head_fail(c, 400, "invalid Host header field");
    c->host = v;
    return PT_OK;
}

/* "5" and "5, 5" and a repeated "5" are one length; anything else is not. */
static int fact_content_length(struct head_ctx *c, struct pt_str v)
{
    struct list_iter it = list_begin(v);
    struct pt_str e;
    uint64_t n;

    while (list_next(&it, &e)) {
        if (!str_to_length(e, &n))
            return head_fail(c, 400, "invalid Content-Length");
        if (c->content_length >= 0 && (uint64_t)c->content_length != n)
            return head_fail(c, 400, "conflicting Content-Length values");
        c->content_length = (int64_t)n;
    }
    return PT_OK;
}

/*
 * One transfer-coding: token *( OWS ";" OWS parameter ).  Parameters are
 * not read, only required to start right; chunked takes none.
 */
static int te_coding(struct head_ctx *c, struct pt_str e, int *is_chunked)
{
    const char *p = e.p;
    const char *end = e.p + e.len;
    struct pt_str tok;

    while (p < end && char_tchar(*p))
        p++;
    tok = str_make(e.p, p);
    while (p < end && char_ows(*p))
        p++;
    if (tok.len == 0 || (p < end && *p != ';'))
        return head_fail(c, 400, "invalid Transfer-Encoding");
    *is_chunked = pt_str_ieq(tok, "chunked");
    if (*is_chunked && p < end)
        return head_fail(c, 400, "parameters on the chunked coding");
    return PT_OK;
}

/* All Transfer-Encoding lines form one list; judged in head_te(). */
static int fact_transfer_encoding(struct head_ctx *c, struct pt_str v)
{
    struct list_iter it = list_begin(v);
    struct pt_str e;
    int is_chunked;

    c->te_lines++;
    while (list_next(&it, &e)) {
        if (e.len == 0)
            continue; /* empty elements are allowed: RFC 9110 5.6.1 */
        if (te_coding(c, e, &is_chunked) != PT_OK)
            return PT_ERROR;
        c->te_codings++;
        c->te_chunked += (size_t)is_chunked;
        c->te_last_chunked = is_chunked ? 1u : 0u;
    }
    return PT_OK;
}

static int fact_connection(struct head_ctx *c, struct pt_str v)
{
    struct list_iter it = list_begin(v);
    struct pt_str e;

    while (list_next(&it, &e)) {
        if (e.len == 0)
            continue;
        if (!str_all_tchar(e))
            return head_fail(c, 400, "invalid Connection header field");
        if (pt_str_ieq(e, "close"))
            c->conn_close = 1;
        else if (pt_str_ieq(e, "keep-alive"))
            c->conn_keep_alive = 1;
        else if (pt_str_ieq(e, "upgrade"))
            c->conn_upgrade = 1;
    }
    return PT_OK;
}

/* Only 100-continue is defined (RFC 9110 10.1.1); the rest earn a 417. */
static int fact_expect(struct head_ctx *c, struct pt_str v)
{
    struct list_iter it = list_begin(v);
    struct pt_str e;

    while (list_next(&it, &e)) {
        if (e.len == 0)
            continue;
        if (!pt_str_ieq(e, "100-continue"))
            return head_fail(c, 417, "unsupported expectation");
        c->expect_continue = 1;
    }
    return PT_OK;
}

/* Route the fields that decide framing and connection handling. */
static int field_facts(struct head_ctx *c, const struct http_header *h)
{
    struct pt_str n = h->name;

    /* The names that matter have lengths of their own: one comparison. */
    switch (n.len) {
    case 14:
        if (pt_str_ieq(n, "content-length"))
            return fact_content_length(c, h->value);
        break;
    case 17:
        if (pt_str_ieq(n, "transfer-encoding"))
            return fact_transfer_encoding(c, h->value);
        break;
    case 10:
        if (pt_str_ieq(n, "connection"))
            return fact_connection(c, h->value);
        break;
    case 7:
        if (pt_str_ieq(n, "upgrade"))
            c->has_upgrade = 1;
        break;
    case 4:
        if (c->is_request && pt_str_ieq(n, "host"))
            return fact_host(c, h->value);
        break;
    case 6:
        if (c->is_request && pt_str_ieq(n, "expect"))
            return fact_expect(c, h->value);
        break;
    default:
        break;
    }
    return PT_OK;
}

/* ---- field lines ------------------------------------------------------- */

static const char *field_name_error(const char *q, const char *end)
{
    if (q == end)
        return "header field line without a colon";
    if (char_ows(*q))
        return "whitespace before colon in header field";
    return "invalid byte in header field name";
}

/*
 * Every byte of [v, end) a char_field.  Eight at a time first: a word
 * with no byte below 0x20 and none 0x7f (none zero once xored with
 * 0x7f) passes whole.  A word that fails, a tab perhaps, is looked at
 * byte by byte, as is the tail.
 */
static int field_value_ok(const char *v, const char *end)
{
    while (end - v >= 8) {
        uint64_t x = pt_word(v);
        if (pt_below(x, 0x20) | pt_below(x ^ 0x7f7f7f7f7f7f7f7full, 1)) {
            for (int i = 0; i < 8; i++)
                if (!char_field(v[i]))
                    return 0;
        }
        v += 8;
    }
    for (; v < end; v++)
        if (!char_field(*v))
            return 0;
    return 1;
}

/* field-name ":" OWS field-value OWS (RFC 9112 5). */
static int field_split(struct head_ctx *c, const char *p, const char *end,
                       struct http_header *h)
{
    const char *q = p;

    if (char_ows(*p))
        return head_fail(c, 400, "obs-fold (line folding) in header field");
    while (q < end && char_tchar(*q))
        q++;
    if (q == end || *q != ':')
        return head_fail(c, 400, field_name_error(q, end));
    if (q == p)
        return head_fail(c, 400, "empty header field name");
    if (!field_value_ok(q + 1, end))
        return head_fail(c, 400, "invalid byte in header field value");
    h->name = str_make(p, q);
    h->value = str_trim(q + 1, end);
    return PT_OK;
}

static int field_line(struct head_ctx *c, const char *p, const char *end)
{
    struct http_header h;

    if (field_split(c, p, end, &h) != PT_OK)
        return PT_ERROR;
    if (c->n >= c->cap)
        return head_fail(c, 431, "more header fields than headers_cap");
    c->headers[c->n++] = h;
    return field_facts(c, &h);
}

/* Parse the field lines in [pos, end): all CRLF-terminated, checked. */
static int head_fields(struct head_ctx *c, size_t pos, size_t end)
{
    while (pos < end) {
        const char *cr = memchr(c->buf + pos, '\r', end - pos);
        size_t eol = (size_t)(cr - c->buf);

        if (field_line(c, c->buf + pos, c->buf + eol) != PT_OK)
            return PT_ERROR;
        pos = eol + 2;
    }
    return PT_OK;
}

/* Persistence per RFC 9112 9.3. */
static int head_keep_alive(const struct head_ctx *c)
{
    if (c->conn_close)
        return 0;
    return c->version_minor >= 1 || c->conn_keep_alive;
}

/* ---- request line ------------------------------------------------------ */

static enum http_method method_lookup(struct pt_str m)
{
    static const struct {
        const char *name;
        enum http_method id;
    } tab[] = {
        {"GET", HTTP_M_GET},         {"HEAD", HTTP_M_HEAD},
        {"POST", HTTP_M_POST},       {"PUT", HTTP_M_PUT},
        {"DELETE", HTTP_M_DELETE},   {"PATCH", HTTP_M_PATCH},
        {"OPTIONS", HTTP_M_OPTIONS}, {"CONNECT", HTTP_M_CONNECT},
        {"TRACE", HTTP_M_TRACE},
    };

    /* Methods are case-sensitive (RFC 9110 9.1): "get" is another one. */
    for (size_t i = 0; i < PT_ARRAY_LEN(tab); i++)
        if (pt_str_eq(m, tab[i].name))
            return tab[i].id;
    return HTTP_M_OTHER;
}

/*
 * request-target bytes up to the SP that ends it, in byte order so that
 * a too-long target gives 414 however much of it has arrived.
 */
static int reqline_target(struct head_ctx *c, const char *t, const char *end,
                          int complete, const char **sp)
{
    const char *r;

    for (r = t; r < end && *r != ' '; r++) {
        if ((size_t)(r - t) >= c->max_uri)
            return head_fail(c, 414, "request-target longer than the limit");
        if (!char_target(*r))
            return head_fail(c, 400, "invalid byte in request-target");
    }
    if (r == t && r < end)
        return head_fail(c, 400, "extra space in request line");
    if (r == end && !complete)
        return PT_AGAIN;
    if (r == t)
        return head_fail(c, 400, "request line without request-target");
    if (r == end)
        return head_fail(c, 400,
                         "request line without HTTP version "
                         "(HTTP/0.9 is not supported)");
    *sp = r;
    return PT_OK;
}

/*
 * "HTTP/" DIGIT "." DIGIT, checked as far as it has arrived.  Bytes after
 * it are the caller's business.
 */
static int version_parse(struct head_ctx *c, const char *v, const char *end,
                         int complete, int *major, int *minor)
{
    static const char shape[] = "HTTP/9.9"; /* '9' stands for a digit */
    size_t n = (size_t)(end - v);

    if (n >= 8 && memcmp(v, "HTTP/1.1", 8) == 0) { /* nearly every head */
        *major = *minor = 1;
        return PT_OK;
    }
    for (size_t i = 0; i < n && i < 8; i++) {
        int ok = shape[i] == '9' ? char_digit(v[i]) : v[i] == shape[i];
        if (!ok)
            return head_fail(c, 400, "malformed HTTP version");
    }
    if (n < 8)
        return complete ? head_fail(c, 400, "malformed HTTP version")
                        : PT_AGAIN;
    *major = v[5] - '0';
    *minor = v[7] - '0';
    return PT_OK;
}

static int reqline_version(struct head_ctx *c, const char *v, const char *end,
                           int complete)
{
    int major, minor;
    int rc = version_parse(c, v, end, complete, &major, &minor);

    if (rc != PT_OK)
        return rc;
    if (end - v > 8)
        return head_fail(c, 400, "extra bytes after HTTP version");
    if (!complete)
        return PT_AGAIN;
    if (major != 1 || minor > 1)
        return head_fail(c, 505, "HTTP version not supported");
    c->version_minor = minor;
    return PT_OK;
}

/* Path and query of an origin-form (or absolute-form) remainder. */
static void target_split(const char *p, const char *end,
                         struct http_request *req)
{
    const char *q = memchr(p, '?', (size_t)(end - p));

    if (q == NULL) {
        req->path = str_make(p, end);
        req->query = str_make(end, end);
        return;
    }
    req->path = str_make(p, q);
    req->query = str_make(q + 1, end);
}

/*
 * absolute-form: "http://" or "https://" authority [path-abempty] [?query].
 * The authority becomes the host (it wins over Host, RFC 9112 3.2.2).  An
 * empty path stays empty: whoever rewrites the target sends "/" for it.
 */
static int target_absolute(struct head_ctx *c, struct http_request *req)
{
    const char *p = req->target.p;
    const char *end = p + req->target.len;
    size_t skip = 0;
    const char *a;

    if (req->target.len >= 7 && pt_str_ieq(str_make(p, p + 7), "http://"))
        skip = 7;
    else if (req->target.len >= 8 &&
             pt_str_ieq(str_make(p, p + 8), "https://"))
        skip = 8;
    else
        return head_fail(c, 400,
                         "request-target is neither origin-form "
                         "nor an http(s) absolute URI");
    a = p + skip;
    for (p = a; p < end && *p != '/' && *p != '?'; p++)
        ;
    if (!host_check(str_make(a, p), 0))
        return head_fail(c, 400, "invalid authority in request-target");
    c->abs_host = str_make(a, p);
    target_split(p, end, req);
    return PT_OK;
}

/* Which of the four forms (RFC 9112 3.2), and is it allowed here? */
static int target_classify(struct head_ctx *c, struct http_request *req)
{
    struct pt_str t = req->target;
    const char *end = t.p + t.len;

    if (req->method_id == HTTP_M_CONNECT) {
        if (!host_check(t, 1))
            return head_fail(c, 400,
                             "CONNECT needs an authority-form "
                             "target (host:port)");
        req->path = str_make(end, end);
        req->query = str_make(end, end);
        return PT_OK;
    }
    if (t.len == 1 && t.p[0] == '*') {
        if (req->method_id != HTTP_M_OPTIONS)
            return head_fail(c, 400, "asterisk-form target without OPTIONS");
        req->path = t;
        req->query = str_make(end, end);
        return PT_OK;
    }
    if (t.p[0] == '/') {
        target_split(t.p, end, req);
        return PT_OK;
    }
    return target_absolute(c, req);
}

/*
 * method SP request-target SP HTTP-version, over [p, end).  With
 * complete == 0 the line has not fully arrived: check what is there and
 * return PT_AGAIN unless it is already wrong.
 */
static int reqline_parse(struct head_ctx *c, const char *p, const char *end,
                         int complete, struct http_request *req)
{
    const char *q = p;
    const char *sp;
    int rc;

    while (q < end && char_tchar(*q))
        q++;
    if (q == end && !complete)
        return PT_AGAIN;
    if (q == end || *q != ' ')
        return head_fail(c, 400,
                         q == end ? "request line without "
                                    "request-target"
                                  : "invalid byte in method");
    if (q == p)
        return head_fail(c, 400, "request line without method");
    rc = reqline_target(c, q + 1, end, complete, &sp);
    if (rc != PT_OK)
        return rc;
    rc = reqline_version(c, sp + 1, end, complete);
    if (rc != PT_OK)
        return rc;
    req->method = str_make(p, q);
    req->method_id = method_lookup(req->method);
    req->target = str_make(q + 1, sp);
    req->version_minor = c->version_minor;
    return target_classify(c, req);
}

/* ---- requests ---------------------------------------------------------- */

/* RFC 9112 6.1 and 6.3, for the request side. */
static int request_te(struct head_ctx *c, struct http_request *req)
{
    if (c->content_length >= 0)
        return head_fail(c, 400,
                         "both Transfer-Encoding and "
                         "Content-Length");
    if (c->version_minor == 0)
        return head_fail(c, 400, "Transfer-Encoding in an HTTP/1.0 request");
    if (c->te_codings == 0)
        return head_fail(c, 400, "empty Transfer-Encoding");
    if (c->te_chunked > 1)
        return head_fail(c, 400, "chunked applied more than once");
    if (!c->te_last_chunked)
        return head_fail(c, 400, "final transfer coding is not chunked");
    if (c->te_codings > 1)
        return head_fail(c, 501, "transfer coding other than chunked");
    req->chunked = 1;
    return PT_OK;
}

static int request_finish(struct head_ctx *c, struct http_request *req)
{
    if (c->version_minor == 1 && c->nhost == 0)
        return head_fail(c, 400, "HTTP/1.1 request without Host");
    if (c->te_lines > 0 && request_te(c, req) != PT_OK)
        return PT_ERROR;
    req->nheaders = c->n;
    req->host = c->abs_host.p ? c->abs_host : c->host;
    req->content_length = c->content_length;
    req->keep_alive = head_keep_alive(c) ? 1u : 0u;
    /* An HTTP/1.0 client cannot wait for 100 (RFC 9110 10.1.1). */
    req->expect_continue = c->expect_continue && c->version_minor == 1;
    req->upgrade = c->conn_upgrade && c->has_upgrade;
    return PT_OK;
}

static void request_reset(struct http_request *req)
{
    struct http_header *headers = req->headers;
    size_t cap = req->headers_cap;

    memset(req, 0, sizeof(*req));
    req->headers = headers;
    req->headers_cap = cap;
    req->content_length = -1;
}

static ssize_t request_head(struct head_ctx *c, struct http_request *req)
{
    size_t pos, eol;
    ssize_t end;
    int rc;

    rc = head_skip_empty(c, &pos);
    if (rc != PT_OK)
        return head_limit(c, rc);
    rc = head_line(c, pos, &eol);
    if (rc == PT_ERROR) {
        /* Answer as a shorter buffer did if the line went wrong earlier. */
        if (reqline_parse(c, c->buf + pos, c->buf + eol, 0, req) != PT_ERROR)
            head_fail(c, 400, "bare LF in message head");
        return PT_ERROR;
    }
    rc = reqline_parse(c, c->buf + pos, c->buf + eol, rc == PT_OK, req);
    if (rc != PT_OK)
        return head_limit(c, rc);
    end = head_scan(c, eol + 2);
    if (end < 0)
        return head_limit(c, (int)end);
    if (head_fields(c, eol + 2, (size_t)end - 2) != PT_OK)
        return PT_ERROR;
    if (request_finish(c, req) != PT_OK)
        return PT_ERROR;
    return end;
}

ssize_t http_parse_request(const char *buf, size_t len,
                           const struct http_limits *lim,
                           struct http_request *req)
{
    struct head_ctx c;
    ssize_t rc;

    request_reset(req);
    head_init(&c, buf, len, lim, 1);
    c.headers = req->headers;
    c.cap = req->headers ? req->headers_cap : 0;
    rc = request_head(&c, req);
    if (rc == PT_ERROR) {
        req->status = c.status;
        req->error = c.error;
    }
    return rc;
}

/* ---- responses --------------------------------------------------------- */

/*
 * HTTP-version SP 3DIGIT SP reason-phrase.  A missing SP + reason right
 * before CRLF is accepted: some servers send "HTTP/1.1 200\r\n".
 */
static int statusline_parse(struct head_ctx *c, const char *p, const char *end,
                            struct http_response *resp)
{
    int major, minor;

    if (version_parse(c, p, end, 1, &major, &minor) != PT_OK)
        return PT_ERROR;
    if (major != 1)
        return head_fail(c, 505, "unsupported HTTP version in status line");
    p += 8;
    if (end - p < 4 || p[0] != ' ' || !char_digit(p[1]) || !char_digit(p[2]) ||
        !char_digit(p[3]) || p[1] == '0')
        return head_fail(c, 502, "malformed status code");
    resp->status = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
    p += 4;
    if (p < end && *p++ != ' ')
        return head_fail(c, 502, "malformed status line");
    for (const char *r = p; r < end; r++)
        if (!char_field(*r))
            return head_fail(c, 502, "invalid byte in reason phrase");
    resp->reason = str_make(p, end);
    /* Later 1.x minors are 1.1-compatible (RFC 9110 2.5). */
    c->version_minor = minor > 0;
    resp->version_minor = c->version_minor;
    return PT_OK;
}

/*
 * RFC 9112 6.1 and 6.3 for responses: Transfer-Encoding overrides
 * Content-Length; a final coding other than chunked means the body runs
 * until the connection closes.
 */
static int response_te(struct head_ctx *c, struct http_response *resp)
{
    if (c->version_minor == 0)
        return head_fail(c, 502, "Transfer-Encoding in an HTTP/1.0 response");
    if (c->te_codings == 0)
        return head_fail(c, 502, "empty Transfer-Encoding");
    if (c->te_chunked > 1)
        return head_fail(c, 502, "chunked applied more than once");
    if (c->te_chunked == 1 && !c->te_last_chunked)
        return head_fail(c, 502, "chunked is not the final transfer coding");
    resp->content_length = -1;
    resp->chunked = c->te_last_chunked;
    if (!resp->chunked)
        resp->keep_alive = 0;
    return PT_OK;
}

static void response_reset(struct http_response *resp)
{
    struct http_header *headers = resp->headers;
    size_t cap = resp->headers_cap;

    memset(resp, 0, sizeof(*resp));
    resp->headers = headers;
    resp->headers_cap = cap;
    resp->content_length = -1;
}

static ssize_t response_head(struct head_ctx *c, struct http_response *resp)
{
    size_t eol;
    ssize_t end;
    int rc;

    rc = head_line(c, 0, &eol);
    if (rc != PT_OK)
        return head_limit(c, rc);
    if (statusline_parse(c, c->buf, c->buf + eol, resp) != PT_OK)
        return PT_ERROR;
    end = head_scan(c, eol + 2);
    if (end < 0)
        return head_limit(c, (int)end);
    if (head_fields(c, eol + 2, (size_t)end - 2) != PT_OK)
        return PT_ERROR;
    resp->nheaders = c->n;
    resp->content_length = c->content_length;
    resp->keep_alive = head_keep_alive(c) ? 1u : 0u;
    if (c->te_lines > 0 && response_te(c, resp) != PT_OK)
        return PT_ERROR;
    return end;
}

ssize_t http_parse_response(const char *buf, size_t len,
                            const struct http_limits *lim,
                            struct http_response *resp)
{
    struct head_ctx c;
    ssize_t rc;

    response_reset(resp);
    head_init(&c, buf, len, lim, 0);
    c.headers = resp->headers;
    c.cap = resp->headers ? resp->headers_cap : 0;
    rc = response_head(&c, resp);
    if (rc == PT_ERROR)
        resp->error = c.error;
    return rc;
}

/* ---- chunked bodies (RFC 9112 7.1) ------------------------------------- */

/* dec->state values; 0 must be the start. */
enum chunk_state {
    CH_SIZE_FIRST = 0, /* first HEXDIG of chunk-size */
    CH_SIZE,           /* HEXDIG, BWS, ';' or CR */
    CH_EXT_BWS,        /* BWS after the size or a value: ';' must follow */
    CH_EXT_NAME_FIRST, /* after ';' (and BWS): first tchar of the name */
    CH_EXT_NAME,       /* name tchars; BWS, '=', ';' or CR */
    CH_EXT_NAME_BWS,   /* BWS after the name: '=' or ';' must follow */
    CH_EXT_VAL_FIRST,  /* after '=' (and BWS): token or DQUOTE */
    CH_EXT_VAL_TOKEN,  /* token value: tchars, BWS, ';' or CR */
    CH_EXT_QUOTED,     /* inside a quoted-string */
    CH_EXT_QUOTED_ESC, /* after a backslash inside it */
    CH_EXT_VAL_END,    /* after the closing DQUOTE: BWS, ';' or CR */
    CH_SIZE_LF,        /* CR seen at the end of the size line */
    CH_DATA,           /* remaining bytes of chunk data */
    CH_DATA_CR,        /* the CR after chunk data */
    CH_DATA_LF,        /* the LF after chunk data */
    CH_TR_LINE,        /* start of a trailer line, or the final CRLF */
    CH_TR_NAME,        /* trailer field-name tchars, then ':' */
    CH_TR_VALUE,       /* trailer field-value bytes, then CR */
    CH_TR_LF,          /* LF ending a trailer field line */
    CH_END_LF,         /* LF of the empty line ending the body */
    CH_DONE,
    CH_ERROR,
};

static int chunk_size_digit(struct http_chunked *dec, char c)
{
    uint64_t d = (uint64_t)hex_value(c);

    if (dec->remaining > (HP_MAX_LENGTH - d) / 16)
        return PT_ERROR;
    dec->remaining = dec->remaining * 16 + d;
    dec->state = CH_SIZE;
    return PT_OK;
}

/* Where a byte that may end an element of the size line leads. */
static int chunk_ext_sep(struct http_chunked *dec, char c)
{
    if (char_ows(c))
        dec->state = CH_EXT_BWS;
    else if (c == ';')
        dec->state = CH_EXT_NAME_FIRST;
    else if (c == '\r')
        dec->state = CH_SIZE_LF;
    else
        return PT_ERROR;
    return PT_OK;
}

/* quoted-string body: qdtext / quoted-pair (RFC 9110 5.6.4). */
static int chunk_quoted(struct http_chunked *dec, char c)
{
    if (dec->state == CH_EXT_QUOTED_ESC) {
        if (!char_field(c))
            return PT_ERROR;
        dec->state = CH_EXT_QUOTED;
    } else if (c == '"') {
        dec->state = CH_EXT_VAL_END;
    } else if (c == '\\') {
        dec->state = CH_EXT_QUOTED_ESC;
    } else if (!char_field(c)) {
        return PT_ERROR;
    }
    return PT_OK;
}

/* After a complete size line: data, or the trailer section after "0". */
static int chunk_size_end(struct http_chunked *dec, char c)
{
    if (c != '\n')
        return PT_ERROR;
    dec->state = dec->remaining ? CH_DATA : CH_TR_LINE;
    dec->line_bytes = 0;
    return PT_OK;
}

/* States where BWS may come before one particular next thing. */
static int chunk_bws_byte(struct http_chunked *dec, char c)
{
    if (char_ows(c))
        return PT_OK;
    if (dec->state == CH_EXT_BWS && c == ';')
        dec->state = CH_EXT_NAME_FIRST;
    else if (dec->state == CH_EXT_NAME_FIRST && char_tchar(c))
        dec->state = CH_EXT_NAME;
    else if (dec->state == CH_EXT_NAME_BWS && c == '=')
        dec->state = CH_EXT_VAL_FIRST;
    else if (dec->state == CH_EXT_NAME_BWS && c == ';')
        dec->state = CH_EXT_NAME_FIRST;
    else if (dec->state == CH_EXT_VAL_FIRST && c == '"')
        dec->state = CH_EXT_QUOTED;
    else if (dec->state == CH_EXT_VAL_FIRST && char_tchar(c))
        dec->state = CH_EXT_VAL_TOKEN;
    else
        return PT_ERROR;
    return PT_OK;
}

/*
 * One byte of chunk-size [ chunk-ext ] CRLF, where
 * chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ).
 * Whitespace not followed by ';' or '=' (e.g. "5 \r\n") is refused.
 */
static int chunk_size_byte(struct http_chunked *dec, char c)
{
    if (++dec->line_bytes > HP_MAX_SIZE_LINE)
        return PT_ERROR;
    switch (dec->state) {
    case CH_SIZE_FIRST:
        return char_hex(c) ? chunk_size_digit(dec, c) : PT_ERROR;
    case CH_SIZE:
        return char_hex(c) ? chunk_size_digit(dec, c) : chunk_ext_sep(dec, c);
    case CH_EXT_NAME:
        if (char_tchar(c))
            return PT_OK;
        if (c == '=' || char_ows(c)) {
            dec->state = c == '=' ? CH_EXT_VAL_FIRST : CH_EXT_NAME_BWS;
            return PT_OK;
        }
        return chunk_ext_sep(dec, c);
    case CH_EXT_VAL_TOKEN:
        return char_tchar(c) ? PT_OK : chunk_ext_sep(dec, c);
    case CH_EXT_QUOTED:
    case CH_EXT_QUOTED_ESC:
        return chunk_quoted(dec, c);
    case CH_EXT_VAL_END:
        return chunk_ext_sep(dec, c);
    case CH_SIZE_LF:
        return chunk_size_end(dec, c);
    default:
        return chunk_bws_byte(dec, c);
    }
}

/* The CRLF that must follow chunk data. */
static int chunk_data_end(struct http_chunked *dec, char c)
{
    if (dec->state == CH_DATA_CR) {
        if (c != '\r')
            return PT_ERROR;
        dec->state = CH_DATA_LF;
        return PT_OK;
    }
    if (c != '\n')
        return PT_ERROR;
    dec->state = CH_SIZE_FIRST;
    dec->remaining = 0;
    dec->line_bytes = 0;
    return PT_OK;
}

/* trailer-section = *( field-line CRLF ) CRLF, same field rules as heads. */
static int chunk_trailer_byte(struct http_chunked *dec, char c)
{
    size_t max =
        dec->max_trailer_bytes ? dec->max_trailer_bytes : HP_DEF_TRAILER_BYTES;
    int next = -1;

    if (++dec->trailer_bytes > max)
        return PT_ERROR;
    dec->line_bytes++;
    if (dec->state == CH_TR_LINE)
        next = c == '\r' ? CH_END_LF : char_tchar(c) ? CH_TR_NAME : -1;
    else if (dec->state == CH_TR_NAME)
        next = c == ':' ? CH_TR_VALUE : char_tchar(c) ? CH_TR_NAME : -1;
    else if (dec->state == CH_TR_VALUE)
        next = c == '\r' ? CH_TR_LF : char_field(c) ? CH_TR_VALUE : -1;
    else if (dec->state == CH_TR_LF)
        next = c == '\n' ? CH_TR_LINE : -1;
    else if (dec->state == CH_END_LF)
        next = c == '\n' ? CH_DONE : -1;
    if (next < 0)
        return PT_ERROR;
    if (next == CH_TR_LINE)
        dec->line_bytes = 0;
    dec->done = next == CH_DONE;
    dec->state = next;
    return PT_OK;
}

static int chunk_byte(struct http_chunked *dec, char c)
{
    if (dec->state <= CH_SIZE_LF)
        return chunk_size_byte(dec, c);
    if (dec->state == CH_DATA_CR || dec->state == CH_DATA_LF)
        return chunk_data_end(dec, c);
    return chunk_trailer_byte(dec, c);
}

/* Hand out as much of the current chunk's data as the buffer holds. */
static size_t chunk_data(struct http_chunked *dec, const char *p, size_t avail,
                         struct pt_str *data)
{
    size_t n = dec->remaining < avail ? (size_t)dec->remaining : avail;

    data->p = p;
    data->len = n;
    dec->remaining -= n;
    if (dec->remaining == 0)
        dec->state = CH_DATA_CR;
    return n;
}

ssize_t http_chunked_decode(struct http_chunked *dec, const char *buf,
                            size_t len, struct pt_str *data)
{
    size_t i = 0;

    data->p = buf;
    data->len = 0;
    if (dec->state < CH_SIZE_FIRST || dec->state >= CH_ERROR) {
        dec->state = CH_ERROR;
        return PT_ERROR;
    }
    while (i < len && dec->state != CH_DONE) {
        if (dec->state == CH_DATA)
            return (ssize_t)(i + chunk_data(dec, buf + i, len - i, data));
        if (chunk_byte(dec, buf[i]) != PT_OK) {
            dec->state = CH_ERROR;
            return PT_ERROR;
        }
        i++;
    }
    return (ssize_t)i;
}

/* ---- small lookups ----------------------------------------------------- */

int http_list_has_token(struct pt_str value, const char *token)
{
    struct list_iter it = list_begin(value);
    struct pt_str e;

    while (list_next(&it, &e))
        if (e.len > 0 && pt_str_ieq(e, token))
            return 1;
    return 0;
}

/* Reason phrases by class, indexed by code % 100; NULL marks a gap. */
/* clang-format off */
static const char *const reason_1xx[] = {
    "Continue", "Switching Protocols", "Processing", "Early Hints"};
static const char *const reason_2xx[] = {
    "OK", "Created", "Accepted", "Non-Authoritative Information",
    "No Content", "Reset Content", "Partial Content", "Multi-Status",
    "Already Reported"};
static const char *const reason_3xx[] = {
    "Multiple Choices", "Moved Permanently", "Found", "See Other",
    "Not Modified", "Use Proxy", NULL, "Temporary Redirect",
    "Permanent Redirect"};
static const char *const reason_4xx[] = {
    "Bad Request", "Unauthorized", "Payment Required", "Forbidden",
    "Not Found", "Method Not Allowed", "Not Acceptable",
    "Proxy Authentication Required", "Request Timeout", "Conflict", "Gone",
    "Length Required", "Precondition Failed", "Content Too Large",
    "URI Too Long", "Unsupported Media Type", "Range Not Satisfiable",
    "Expectation Failed", "I'm a teapot", NULL, NULL, "Misdirected Request",
    "Unprocessable Content", "Locked", "Failed Dependency", "Too Early",
    "Upgrade Required", NULL, "Precondition Required", "Too Many Requests",
    NULL, "Request Header Fields Too Large"};
static const char *const reason_5xx[] = {
    "Internal Server Error", "Not Implemented", "Bad Gateway",
    "Service Unavailable", "Gateway Timeout", "HTTP Version Not Supported",
    "Variant Also Negotiates", "Insufficient Storage", "Loop Detected", NULL,
    "Not Extended", "Network Authentication Required"};
/* clang-format on */

const char *http_reason(int status)
{
    static const struct {
        const char *const *names;
        size_t n;
    } cls[] = {{reason_1xx, PT_ARRAY_LEN(reason_1xx)},
               {reason_2xx, PT_ARRAY_LEN(reason_2xx)},
               {reason_3xx, PT_ARRAY_LEN(reason_3xx)},
               {reason_4xx, PT_ARRAY_LEN(reason_4xx)},
               {reason_5xx, PT_ARRAY_LEN(reason_5xx)}};
    const char *r = NULL;

    if (status == 226)
        return "IM Used";
    if (status == 451)
        return "Unavailable For Legal Reasons";
    if (status >= 100 && status < 600 &&
        (size_t)(status % 100) < cls[status / 100 - 1].n)
        r = cls[status / 100 - 1].names[status % 100];
    return r ? r : "Unknown";
}
