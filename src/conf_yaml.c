/*
 * conf_yaml.c -- reads portico.yaml into a struct conf.  libyaml events
 * become a small node tree that remembers line:col; then one declarative
 * key table per mapping ({name, setter, offset, range}) fills the struct
 * and checks every value on its own, collecting every error.  The only
 * file that includes <yaml.h>.  Defaults, checks across values and the
 * dump are conf.c's.
 * Calls: libyaml, util.c, conf.c (conf_diag_*).  Never: sockets, logging.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "conf.h"
#include "util.h"

/* Real configs nest 5 deep; a limit keeps the recursion bounded. */
#define TREE_MAX_DEPTH 64
/* Bytes of a value quoted back in a message: enough to recognise it. */
#define QUOTE_MAX 64

#define KIB 1024ULL
#define MIB (1024 * KIB)
#define DAY_MS (24ULL * 3600 * 1000)

#define WHAT_SIZE "a size like 16k, 10m or 1g"
#define WHAT_DURATION "a duration like 500ms, 10s, 5m or 1h"

enum ynode_type { YNODE_SCALAR, YNODE_SEQ, YNODE_MAP, YNODE_BAD };

/* One YAML node.  YNODE_BAD stands for a node already reported (an alias,
 * a tag): later checks skip it silently so one mistake gives one error. */
struct ynode {
    enum ynode_type type;
    struct conf_pos pos;
    int plain; /* scalar written without quotes */
    char *str; /* owns: scalar bytes plus a NUL */
    size_t len;
    struct ynode **kids; /* owns; a mapping interleaves key, value */
    size_t nkids;
    size_t cap;
};

/* Reads events into a tree. */
struct builder {
    yaml_parser_t parser;
    const struct conf *conf; /* borrowed: its path names the file */
    struct conf_diag *diag;
    const char *buf; /* borrowed: the input, to place reader errors */
    size_t len;
};

/* Walks the tree with the key tables. */
struct walk {
    struct conf *conf;
    struct conf_diag *diag;
    char path[256]; /* "routes[2].respond.status": prefixes messages */
    size_t pathlen;
};

struct slot;

struct key_spec {
    const char *name;
    void (*set)(struct walk *w, const struct slot *at);
    size_t off;                 /* of the field in base */
    size_t width;               /* sizeof the field, for number stores */
    uint64_t min, max;          /* accepted range of a number */
    const char *why;            /* why the range is what it is; for a key not
                                   supported yet, the message that says so */
    const struct key_spec *sub; /* the table of a nested section */
    size_t pos_at; /* offset of a struct conf_pos in base that records
                      where an accepted value was, for conf.c's checks
                      across values; 0 = none (no struct starts with one) */
};

/* What a setter gets: its table entry, the key and value nodes, and the
 * struct that the entry's offsets are relative to. */
struct slot {
    const struct key_spec *k;
    const struct ynode *key;
    const struct ynode *val;
    void *base;
};

enum num_kind { NUM_INT, NUM_SIZE, NUM_DURATION };

/* A value quoted for a message: escaped, cut at QUOTE_MAX bytes. */
struct quoted {
    char s[QUOTE_MAX * 4 + 16];
};

/* ---- memory: a config is small, so running out here is fatal ---- */

static void oom(void)
{
    fputs("portico: out of memory while loading the config\n", stderr);
    abort();
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);

    if (p == NULL)
        oom();
    return p;
}

static char *xmemdup(const char *s, size_t len)
{
    char *p = malloc(len + 1);

    if (p == NULL)
        oom();
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* ---- the node tree ---- */

static void ynode_free(struct ynode *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        ynode_free(n->kids[i]);
    free(n->kids);
    free(n->str);
    free(n);
}

static void ynode_add(struct ynode *parent, struct ynode *kid)
{
    if (parent->nkids == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 4;
        void *p = realloc(parent->kids, cap * sizeof(*parent->kids));

        if (p == NULL)
            oom();
        parent->kids = p;
        parent->cap = cap;
    }
    parent->kids[parent->nkids++] = kid;
}

/* YAML's null: an empty plain scalar, "~" or "null". */
static int ynode_is_null(const struct ynode *n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};

    if (n->type != YNODE_SCALAR || !n->plain)
        return 0;
    for (size_t i = 0; i < PT_ARRAY_LEN(nulls); i++) {
        if (strcmp(n->str, nulls[i]) == 0)
            return 1;
    }
    return 0;
}

static const char *ynode_kind(const struct ynode *n)
{
    switch (n->type) {
    case YNODE_MAP:
        return "a mapping";
    case YNODE_SEQ:
        return "a sequence";
    default:
        return ynode_is_null(n) ? "null" : "a scalar";
    }
}

static int ynode_is(const struct ynode *n, const char *s)
{
    return n->type == YNODE_SCALAR && n->len == strlen(s) &&
           memcmp(n->str, s, n->len) == 0;
}

/* The value under key name in map, or NULL (also when map is not one). */
static const struct ynode *map_get(const struct ynode *map, const char *name)
{
    if (map == NULL || map->type != YNODE_MAP)
        return NULL;
    for (size_t i = 0; i + 1 < map->nkids; i += 2) {
        if (ynode_is(map->kids[i], name))
            return map->kids[i + 1];
    }
    return NULL;
}

/* ---- building the tree from libyaml events ---- */

static struct conf_pos mark_pos(yaml_mark_t m)
{
    return (struct conf_pos){(int)m.line + 1, (int)m.column + 1};
}

/* Reader errors carry a byte offset, not a mark. */
static struct conf_pos offset_pos(const char *buf, size_t len, size_t off)
{
    struct conf_pos pos = {1, 1};

    for (size_t i = 0; i < off && i < len; i++) {
        if (buf[i] == '\n') {
            pos.line++;
            pos.col = 1;
        } else if (((unsigned char)buf[i] & 0xC0) != 0x80) {
            pos.col++;
        }
    }
    return pos;
}

/* The byte at a 1-based position of buf, or -1 (columns count chars). */
static int byte_at(const char *buf, size_t len, struct conf_pos pos)
{
    struct conf_pos at = {1, 1};

    for (size_t i = 0; i < len; i++) {
        if (at.line == pos.line && at.col == pos.col)
            return (unsigned char)buf[i];
        if (buf[i] == '\n') {
            at.line++;
            at.col = 1;
        } else if (((unsigned char)buf[i] & 0xC0) != 0x80) {
            at.col++;
        }
    }
    return -1;
}

static void builder_syntax_error(struct builder *b)
{
    const yaml_parser_t *p = &b->parser;
    struct conf_pos at = mark_pos(p->problem_mark);
    const char *problem = p->problem ? p->problem : "invalid YAML";

    if (p->error == YAML_MEMORY_ERROR)
        oom();
    if (p->error == YAML_READER_ERROR) {
        at = offset_pos(b->buf, b->len, p->problem_offset);
        if (p->problem_value >= 0)
            conf_diag_at(b->diag, b->conf, at, "%s: #%X", problem,
                         (unsigned)p->problem_value);
        else
            conf_diag_at(b->diag, b->conf, at, "%s", problem);
    } else if (byte_at(b->buf, b->len, at) == '\t') {
        /* libyaml's "cannot start any token" hides the classic mistake */
        conf_diag_at(b->diag, b->conf, at,
                     "a tab where YAML wants spaces (%s)", problem);
    } else if (p->context != NULL) {
        struct conf_pos ctx = mark_pos(p->context_mark);

        conf_diag_at(b->diag, b->conf, at, "%s (%s at %d:%d)", problem,
                     p->context, ctx.line, ctx.col);
    } else {
        conf_diag_at(b->diag, b->conf, at, "%s", problem);
    }
}

static int builder_next(struct builder *b, yaml_event_t *ev)
{
    if (yaml_parser_parse(&b->parser, ev))
        return PT_OK;
    builder_syntax_error(b);
    return PT_ERROR;
}

static const yaml_char_t *event_tag(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return ev->data.scalar.tag;
    case YAML_SEQUENCE_START_EVENT:
        return ev->data.sequence_start.tag;
    case YAML_MAPPING_START_EVENT:
        return ev->data.mapping_start.tag;
    default:
        return NULL;
    }
}

/* Makes the node ev starts, without its children; reports what we refuse. */
static struct ynode *tree_leaf(struct builder *b, const yaml_event_t *ev)
{
    struct ynode *n = xcalloc(1, sizeof(*n));

    n->pos = mark_pos(ev->start_mark);
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        n->type = YNODE_SCALAR;
        n->str = xmemdup((const char *)ev->data.scalar.value,
                         ev->data.scalar.length);
        n->len = ev->data.scalar.length;
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        break;
    case YAML_SEQUENCE_START_EVENT:
        n->type = YNODE_SEQ;
        break;
    case YAML_MAPPING_START_EVENT:
        n->type = YNODE_MAP;
        break;
    default: /* an alias: the only other event that starts a node */
        n->type = YNODE_BAD;
        conf_diag_at(b->diag, b->conf, n->pos, "aliases are not supported");
        break;
    }
    return n;
}

static struct ynode *tree_node(struct builder *b, yaml_event_t *ev, int depth);

/* Adds the nodes up to the event that ends n.  PT_ERROR when fatal. */
static int tree_kids(struct builder *b, struct ynode *n, yaml_event_type_t end,
                     int depth)
{
    yaml_event_t ev;
    struct ynode *kid;

    if (depth >= TREE_MAX_DEPTH) {
        conf_diag_at(b->diag, b->conf, n->pos,
                     "nested more than %d levels deep", TREE_MAX_DEPTH);
        return PT_ERROR;
    }
    for (;;) {
        if (builder_next(b, &ev) != PT_OK)
            return PT_ERROR;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return PT_OK;
        }
        kid = tree_node(b, &ev, depth + 1);
        if (kid == NULL)
            return PT_ERROR;
        ynode_add(n, kid);
    }
}

/*
 * Builds the node that *ev starts, consuming ev and, for a collection,
 * the events up to its end.  Returns NULL after a fatal error.
 */
static struct ynode *tree_node(struct builder *b, yaml_event_t *ev, int depth)
{
    yaml_event_type_t end = YAML_NO_EVENT;
    int tagged = event_tag(ev) != NULL;
    struct ynode *n = tree_leaf(b, ev);

    if (ev->type == YAML_SEQUENCE_START_EVENT)
        end = YAML_SEQUENCE_END_EVENT;
    else if (ev->type == YAML_MAPPING_START_EVENT)
        end = YAML_MAPPING_END_EVENT;
    yaml_event_delete(ev);
    if (end != YAML_NO_EVENT && tree_kids(b, n, end, depth) != PT_OK) {
        ynode_free(n);
        return NULL;
    }
    if (tagged) {
        /* "!!int 5" would ask for typing rules we do not have */
        conf_diag_at(b->diag, b->conf, n->pos, "tags are not supported");
        n->type = YNODE_BAD;
    }
    return n;
}

/* After the first document only the end of the stream may follow. */
static int tree_end(struct builder *b)
{
    yaml_event_t ev;

    if (builder_next(b, &ev) != PT_OK) /* the document's end */
        return PT_ERROR;
    yaml_event_delete(&ev);
    if (builder_next(b, &ev) != PT_OK)
        return PT_ERROR;
    if (ev.type == YAML_DOCUMENT_START_EVENT)
        conf_diag_at(b->diag, b->conf, mark_pos(ev.start_mark),
                     "multiple documents are not supported");
    yaml_event_delete(&ev);
    return PT_OK;
}

/*
 * Reads the stream into *root (caller frees; NULL for an empty stream).
 * Returns PT_ERROR after a syntax error, already reported.
 */
static int tree_build(struct builder *b, struct ynode **root)
{
    yaml_event_t ev;

    *root = NULL;
    if (builder_next(b, &ev) != PT_OK) /* the stream's start */
        return PT_ERROR;
    yaml_event_delete(&ev);
    if (builder_next(b, &ev) != PT_OK)
        return PT_ERROR;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return PT_OK;
    }
    yaml_event_delete(&ev); /* the document's start */
    if (builder_next(b, &ev) != PT_OK)
        return PT_ERROR;
    *root = tree_node(b, &ev, 0);
    if (*root == NULL)
        return PT_ERROR;
    return tree_end(b);
}

/* ---- messages ---- */

static const char *quote(struct quoted *q, const char *s, size_t len)
{
    char *o = q->s;
    size_t i;

    *o++ = '"';
    /* cut after QUOTE_MAX bytes, but never inside a UTF-8 sequence */
    for (i = 0; i < len && (i < QUOTE_MAX || (s[i] & 0xC0) == 0x80); i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\')
            o += sprintf(o, "\\%c", c);
        else if (c == '\n')
            o += sprintf(o, "\\n");
        else if (c < 0x20 || c == 0x7F)
            o += sprintf(o, "\\x%02X", c);
        else
            *o++ = (char)c;
    }
    strcpy(o, i < len ? "\"..." : "\"");
    return q->s;
}

static void walk_error(struct walk *w, const struct ynode *n, const char *fmt,
                       ...) __attribute__((format(printf, 3, 4)));

/* Reports at n, prefixed with the path of the value being walked. */
static void walk_error(struct walk *w, const struct ynode *n, const char *fmt,
                       ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (w->pathlen > 0)
        conf_diag_at(w->diag, w->conf, n->pos, "%s: %s", w->path, msg);
    else
        conf_diag_at(w->diag, w->conf, n->pos, "%s", msg);
}

static size_t path_push(struct walk *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends to the path; returns the mark path_pop goes back to. */
static size_t path_push(struct walk *w, const char *fmt, ...)
{
    size_t mark = w->pathlen;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(w->path + mark, sizeof(w->path) - mark, fmt, ap);
    va_end(ap);
    if (n > 0)
        w->pathlen = PT_MIN(mark + (size_t)n, sizeof(w->path) - 1);
    return mark;
}

static void path_pop(struct walk *w, size_t mark)
{
    w->pathlen = mark;
    w->path[mark] = '\0';
}

/* Levenshtein distance ignoring ASCII case; long words never match. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[33];

    if (la > 32 || lb > 32)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];

        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = pt_lower(a[i - 1]) != pt_lower(b[j - 1]);

            row[j] = PT_MIN(PT_MIN(row[j] + 1, row[j - 1] + 1), diag + cost);
            diag = up;
        }
    }
    return row[lb];
}

/* "warning" for "warn", "timeout" for "timeouts": a prefix of 3 or more. */
static int is_prefix(const char *a, const char *b)
{
    size_t la = strlen(a);

    return la >= 3 && strncasecmp(a, b, la) == 0;
}

/* " (did you mean "x"?)" for the closest name, or "" if none is close. */
static const char *did_you_mean(char *buf, size_t buflen, const char *word,
                                const char *const *names, size_t n)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;

    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(word, names[i]);

        int close = d <= PT_MAX(1, strlen(names[i]) / 3) ||
                    is_prefix(word, names[i]) || is_prefix(names[i], word);

        if (close && d < best_d) {
            best = names[i];
            best_d = d;
        }
    }
    if (best == NULL)
        return "";
    snprintf(buf, buflen, " (did you mean \"%s\"?)", best);
    return buf;
}

/* "expected one of a, b; got "x"" plus a suggestion. */
static void report_choice(struct walk *w, const struct ynode *val,
                          const char *const *names, size_t n)
{
    char list[128] = "", hint[64];
    struct quoted q;

    for (size_t i = 0; i < n; i++) {
        strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
        strncat(list, names[i], sizeof(list) - strlen(list) - 1);
    }
    walk_error(w, val, "expected one of %s; got %s%s", list,
               quote(&q, val->str, val->len),
               did_you_mean(hint, sizeof(hint), val->str, names, n));
}

static void report_unknown(struct walk *w, const struct ynode *key,
                           const struct key_spec *table)
{
    const char *names[32];
    char hint[64];
    struct quoted q;
    size_t n = 0;

    for (; table[n].name != NULL && n < PT_ARRAY_LEN(names); n++)
        names[n] = table[n].name;
    walk_error(w, key, "unknown key %s%s", quote(&q, key->str, key->len),
               did_you_mean(hint, sizeof(hint), key->str, names, n));
}

/* ---- type checks and scalar readers ---- */

/* Checks n is of type t (and not null); otherwise says what was wanted. */
static int expect(struct walk *w, const struct ynode *n, enum ynode_type t,
                  const char *what)
{
    if (n->type == t && !ynode_is_null(n))
        return 1;
    if (n->type != YNODE_BAD)
        walk_error(w, n, "expected %s, got %s", what, ynode_kind(n));
    return 0;
}

/* A non-empty string without NUL bytes, or NULL after an error. */
static const char *scalar_text(struct walk *w, const struct ynode *val,
                               const char *what)
{
    if (!expect(w, val, YNODE_SCALAR, what))
        return NULL;
    if (val->len == 0) {
        walk_error(w, val, "must not be empty");
        return NULL;
    }
    if (strlen(val->str) != val->len) {
        walk_error(w, val, "must not contain a NUL byte");
        return NULL;
    }
    return val->str;
}

/* Plain decimal digits only, so "0x10", "1e3", "+5" and "5" quoted are
 * refused; a value too big for 64 bits saturates (then fails a range). */
static int int_parse(const struct ynode *val, uint64_t *out)
{
    uint64_t v = 0;

    if (!val->plain || val->len == 0)
        return 0;
    for (size_t i = 0; i < val->len; i++) {
        unsigned d = (unsigned char)val->str[i] - '0';

        if (d > 9)
            return 0;
        v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX : v * 10 + d;
    }
    *out = v;
    return 1;
}

static int scalar_uint(struct walk *w, const struct ynode *val,
                       const char *what, uint64_t *out)
{
    struct quoted q;

    if (!expect(w, val, YNODE_SCALAR, what))
        return 0;
    if (int_parse(val, out))
        return 1;
    walk_error(w, val, "expected %s, got %s%s", what,
               val->plain ? "" : "a quoted string ",
               quote(&q, val->str, val->len));
    return 0;
}

static const char *num_format(enum num_kind kind, uint64_t v, char *buf,
                              size_t len)
{
    if (kind == NUM_SIZE)
        return pt_format_size(v, buf, len);
    if (kind == NUM_DURATION)
        return pt_format_duration(v, buf, len);
    snprintf(buf, len, "%llu", (unsigned long long)v);
    return buf;
}

static int check_range(struct walk *w, const struct key_spec *k,
                       const struct ynode *val, uint64_t v, enum num_kind kind)
{
    char lo[32], hi[32];

    if (v >= k->min && v <= k->max)
        return 1;
    /* val->str parsed as a number, so it is safe to print as is */
    walk_error(w, val, "%s is out of range %s..%s (%s)", val->str,
               num_format(kind, k->min, lo, sizeof(lo)),
               num_format(kind, k->max, hi, sizeof(hi)), k->why);
    return 0;
}

static void *field_at(const struct slot *at)
{
    return (char *)at->base + at->k->off;
}

/* Stores into an unsigned/int (4 bytes) or size_t/uint64_t field. */
static void store_number(void *field, size_t width, uint64_t v)
{
    uint32_t v32 = (uint32_t)v;

    if (width == sizeof(v)) {
        memcpy(field, &v, sizeof(v));
        return;
    }
    assert(width == sizeof(v32));
    memcpy(field, &v32, sizeof(v32));
}

static void store_string(void *field, char *s)
{
    char **p = field;

    free(*p);
    *p = s;
}

/* Notes where an accepted value was written, if its entry asks to. */
static void note_pos(const struct slot *at)
{
    if (at->k->pos_at != 0)
        memcpy((char *)at->base + at->k->pos_at, &at->val->pos,
               sizeof(at->val->pos));
}

static void store_number_at(const struct slot *at, uint64_t v)
{
    store_number(field_at(at), at->k->width, v);
    note_pos(at);
}

/* ---- setters: one per kind of value ---- */

static void set_uint(struct walk *w, const struct slot *at)
{
    uint64_t v;

    if (scalar_uint(w, at->val, "an integer", &v) &&
        check_range(w, at->k, at->val, v, NUM_INT))
        store_number_at(at, v);
}

/* A size or duration: parse is pt_parse_size or pt_parse_duration. */
static void set_measure(struct walk *w, const struct slot *at,
                        enum num_kind kind)
{
    const struct ynode *val = at->val;
    const char *what = kind == NUM_SIZE ? WHAT_SIZE : WHAT_DURATION;
    struct quoted q;
    uint64_t v;
    int rc;

    if (!expect(w, val, YNODE_SCALAR, what))
        return;
    rc = kind == NUM_SIZE ? pt_parse_size(val->str, &v)
                          : pt_parse_duration(val->str, &v);
    if (rc != PT_OK || strlen(val->str) != val->len) {
        walk_error(w, val, "expected %s, got %s", what,
                   quote(&q, val->str, val->len));
        return;
    }
    if (check_range(w, at->k, val, v, kind))
        store_number_at(at, v);
}

static void set_size(struct walk *w, const struct slot *at)
{
    set_measure(w, at, NUM_SIZE);
}

static void set_duration(struct walk *w, const struct slot *at)
{
    set_measure(w, at, NUM_DURATION);
}

static void set_string(struct walk *w, const struct slot *at)
{
    const char *s = scalar_text(w, at->val, "a string");

    if (s != NULL) {
        store_string(field_at(at), xmemdup(s, at->val->len));
        note_pos(at);
    }
}

static void set_workers(struct walk *w, const struct slot *at)
{
    struct conf *c = at->base;
    uint64_t v;

    if (ynode_is(at->val, "auto")) {
        c->workers_auto = 1;
        return;
    }
    if (scalar_uint(w, at->val, "an integer or auto", &v) &&
        check_range(w, at->k, at->val, v, NUM_INT)) {
        c->workers = (int)v;
        c->workers_auto = 0;
    }
}

/* POSIX portable user names, so a typo cannot smuggle odd bytes about. */
static void set_user(struct walk *w, const struct slot *at)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    const char *s = scalar_text(w, at->val, "a user name");
    struct quoted q;

    if (s == NULL)
        return;
    if (s[0] == '-' || strspn(s, ok) != at->val->len) {
        walk_error(w, at->val,
                   "invalid user name %s (letters, digits, \".\", \"_\" "
                   "and \"-\" only)",
                   quote(&q, at->val->str, at->val->len));
        return;
    }
    set_string(w, at);
}

static void set_level(struct walk *w, const struct slot *at)
{
    const char *names[LOG_LVL_ERROR + 1];
    const char *s = scalar_text(w, at->val, "a log level");

    if (s == NULL)
        return;
    for (int l = LOG_LVL_DEBUG; l <= LOG_LVL_ERROR; l++) {
        names[l] = conf_log_level_name((enum log_level)l);
        if (strcmp(s, names[l]) == 0) {
            *(enum log_level *)field_at(at) = (enum log_level)l;
            return;
        }
    }
    report_choice(w, at->val, names, PT_ARRAY_LEN(names));
}

static void set_format(struct walk *w, const struct slot *at)
{
    static const char *const names[] = {"combined", "off"};
    static const enum access_format formats[] = {ACCESS_COMBINED, ACCESS_OFF};
    const char *s = scalar_text(w, at->val, "a log format");

    if (s == NULL)
        return;
    if (strcmp(s, "json") == 0) {
        walk_error(w, at->val, "format \"json\" is not supported yet");
        return;
    }
    for (size_t i = 0; i < PT_ARRAY_LEN(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            *(enum access_format *)field_at(at) = formats[i];
            return;
        }
    }
    report_choice(w, at->val, names, PT_ARRAY_LEN(names));
}

static void walk_map(struct walk *w, const struct ynode *map,
                     const struct key_spec *table, void *base);

static void set_section(struct walk *w, const struct slot *at)
{
    walk_map(w, at->val, at->k->sub, at->base);
}

/* Keys known from the design but not built yet: say so, not "unknown". */
static void set_unsupported(struct walk *w, const struct slot *at)
{
    walk_error(w, at->key, "%s",
               at->k->why ? at->k->why : "not supported yet in this build");
}

/* ---- listeners ---- */

static void set_listen(struct walk *w, const struct slot *at)
{
    struct conf_listener *l = at->base;
    const char *s =
        scalar_text(w, at->val, "an address like \"127.0.0.1:8080\"");
    const char *why = NULL;
    struct quoted q;

    if (s == NULL)
        return;
    store_string(&l->listen, xmemdup(s, at->val->len));
    l->pos = at->val->pos;
    if (pt_parse_addr(s, &l->addr, &l->addrlen, &why) != PT_OK) {
        l->addrlen = 0; /* tells conf.c's duplicate check to skip it */
        walk_error(w, at->val, "cannot parse address %s: %s",
                   quote(&q, at->val->str, at->val->len), why);
    }
}

static void walk_listener(struct walk *w, const struct ynode *item,
                          const struct key_spec *keys, struct conf_listener *l)
{
    l->pos = item->pos;
    walk_map(w, item, keys, l);
    if (item->type == YNODE_MAP && map_get(item, "listen") == NULL)
        walk_error(w, item,
                   "missing key \"listen\" (an address like "
                   "\"127.0.0.1:8080\")");
}

static void set_listeners(struct walk *w, const struct slot *at)
{
    struct conf *c = at->base;

    if (!expect(w, at->val, YNODE_SEQ, "a sequence"))
        return;
    if (at->val->nkids == 0) {
        conf_diag_at(w->diag, w->conf, at->val->pos,
                     "no listeners: add one under listeners:");
        return;
    }
    /* every item gets a slot, valid or not, so indexes match the file */
    c->listeners = xcalloc(at->val->nkids, sizeof(*c->listeners));
    c->nlisteners = at->val->nkids;
    for (size_t i = 0; i < at->val->nkids; i++) {
        size_t mark = path_push(w, "[%zu]", i);

        walk_listener(w, at->val->kids[i], at->k->sub, &c->listeners[i]);
        path_pop(w, mark);
    }
}

/* ---- routes ---- */

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

static void set_host(struct walk *w, const struct slot *at)
{
    const char *s = scalar_text(w, at->val, "a host name");
    const char *why;
    struct quoted q;
    char *host;

    if (s == NULL)
        return;
    host = xmemdup(s, at->val->len);
    for (char *p = host; *p != '\0'; p++)
        *p = pt_lower(*p); /* Host matching is case-insensitive */
    why = host_why(host);
    if (why != NULL) {
        walk_error(w, at->val, "invalid host %s: %s",
                   quote(&q, at->val->str, at->val->len), why);
        free(host);
        return;
    }
    store_string(field_at(at), host);
}

static void set_path_prefix(struct walk *w, const struct slot *at)
{
    const char *s = scalar_text(w, at->val, "a path like /api");
    struct quoted q;

    if (s == NULL)
        return;
    quote(&q, at->val->str, at->val->len);
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
    store_string(field_at(at), xmemdup(s, at->val->len));
}

static void set_body(struct walk *w, const struct slot *at)
{
    struct conf_respond *rs = &((struct conf_route *)at->base)->respond;

    if (!expect(w, at->val, YNODE_SCALAR, "a string"))
        return;
    /* "" is a fine body, and a NUL byte is just a byte here */
    store_string(&rs->body, xmemdup(at->val->str, at->val->len));
    rs->body_len = at->val->len;
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

static int header_name_ok(struct walk *w, const struct ynode *name)
{
    /* framing is portico's job: a fixed value here would contradict it */
    static const char *const reserved[] = {
        "Content-Length", "Transfer-Encoding", "Connection", "Date",
        "Server"};
    struct pt_str view = {name->str, name->len};
    struct quoted q;

    if (!token_ok(name->str, name->len)) {
        walk_error(w, name,
                   "invalid header name %s (letters, digits and "
                   "!#$%%&'*+-.^_`|~ only)",
                   quote(&q, name->str, name->len));
        return 0;
    }
    for (size_t i = 0; i < PT_ARRAY_LEN(reserved); i++) {
        if (pt_str_ieq(view, reserved[i])) {
            walk_error(w, name, "header %s is set by portico",
                       quote(&q, name->str, name->len));
            return 0;
        }
    }
    return 1;
}

static int header_value_ok(struct walk *w, const struct ynode *name,
                           const struct ynode *value)
{
    size_t mark = path_push(w, ".%s", name->str); /* a token: safe */
    int ok = expect(w, value, YNODE_SCALAR, "a string");

    if (ok && !field_value_ok(value->str, value->len)) {
        walk_error(w, value,
                   "must not contain CR, LF, NUL or other "
                   "control characters");
        ok = 0;
    }
    path_pop(w, mark);
    return ok;
}

static int map_key_ok(struct walk *w, const struct ynode *map, size_t i);

static void set_headers(struct walk *w, const struct slot *at)
{
    struct conf_respond *rs = &((struct conf_route *)at->base)->respond;

    if (!expect(w, at->val, YNODE_MAP, "a mapping"))
        return;
    rs->headers = xcalloc(at->val->nkids / 2, sizeof(*rs->headers));
    for (size_t i = 0; i + 1 < at->val->nkids; i += 2) {
        const struct ynode *name = at->val->kids[i],
                           *value = at->val->kids[i + 1];
        struct conf_header *h = &rs->headers[rs->nheaders];

        if (!map_key_ok(w, at->val, i) || !header_name_ok(w, name) ||
            !header_value_ok(w, name, value))
            continue;
        h->name = xmemdup(name->str, name->len);
        h->value = xmemdup(value->str, value->len);
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
    struct conf_respond *rs = &((struct conf_route *)at->base)->respond;
    const struct ynode *body = map_get(at->val, "body");

    walk_map(w, at->val, at->k->sub, at->base);
    if (body != NULL && rs->body_len > 0 && !status_allows_body(rs->status)) {
        size_t mark = path_push(w, ".body");

        walk_error(w, body, "a %d response cannot have a body", rs->status);
        path_pop(w, mark);
    }
}

static void set_upstream(struct walk *w, const struct slot *at)
{
    const char *s = scalar_text(w, at->val, "an upstream name");
    struct quoted q;

    if (s != NULL)
        walk_error(w, at->val,
                   "no upstream named %s (upstreams are not supported yet "
                   "in this build)",
                   quote(&q, at->val->str, at->val->len));
}

static void walk_route(struct walk *w, const struct ynode *item,
                       const struct key_spec *keys, struct conf_route *r)
{
    r->pos = item->pos;
    walk_map(w, item, keys, r);
    /* upstream: is an action too, already reported as unavailable */
    if (item->type == YNODE_MAP && map_get(item, "respond") == NULL &&
        map_get(item, "upstream") == NULL)
        walk_error(w, item, "no action: add respond:");
}

static void set_routes(struct walk *w, const struct slot *at)
{
    struct conf *c = at->base;

    if (!expect(w, at->val, YNODE_SEQ, "a sequence"))
        return;
    c->routes = xcalloc(at->val->nkids, sizeof(*c->routes));
    c->nroutes = at->val->nkids;
    for (size_t i = 0; i < at->val->nkids; i++) {
        size_t mark = path_push(w, "[%zu]", i);

        walk_route(w, at->val->kids[i], at->k->sub, &c->routes[i]);
        path_pop(w, mark);
    }
}

/* ---- the key tables ---- */

#define NUM(key, setter, type, member, lo, hi, reason)                        \
    {                                                                         \
        .name = (key), .set = (setter), .off = offsetof(type, member),        \
        .width = sizeof(((type *)0)->member), .min = (lo), .max = (hi),       \
        .why = (reason)                                                       \
    }
#define FIELD(key, setter, type, member)                                      \
    {                                                                         \
        .name = (key), .set = (setter), .off = offsetof(type, member)         \
    }
/* NUM / FIELD that also record where the accepted value was written */
#define NUM_POS(key, setter, type, member, lo, hi, reason, posmember)         \
    {                                                                         \
        .name = (key), .set = (setter), .off = offsetof(type, member),        \
        .width = sizeof(((type *)0)->member), .min = (lo), .max = (hi),       \
        .why = (reason), .pos_at = offsetof(type, posmember)                  \
    }
#define FIELD_POS(key, setter, type, member, posmember)                       \
    {                                                                         \
        .name = (key), .set = (setter), .off = offsetof(type, member),        \
        .pos_at = offsetof(type, posmember)                                   \
    }
#define SECTION(key, setter, table)                                           \
    {                                                                         \
        .name = (key), .set = (setter), .sub = (table)                        \
    }
#define OTHER(key, setter)                                                    \
    {                                                                         \
        .name = (key), .set = (setter)                                        \
    }

#define WHY_TIMEOUT "0 would fire at once; over a day is not a timeout"

static const struct key_spec error_log_keys[] = {
    FIELD("path", set_string, struct conf, error_log.path),
    FIELD("level", set_level, struct conf, error_log.level),
    {0},
};

static const struct key_spec access_log_keys[] = {
    FIELD("path", set_string, struct conf, access_log.path),
    FIELD("format", set_format, struct conf, access_log.format),
    {0},
};

static const struct key_spec limits_keys[] = {
    NUM("max_connections", set_uint, struct conf, limits.max_connections, 1,
        1000000, "per worker; each holds a file descriptor"),
    NUM_POS("max_header_bytes", set_size, struct conf, limits.max_header_bytes,
            KIB, MIB,
            "below 1k real browsers break; above 1m only helps attacks",
            pos.max_header_bytes),
    NUM("max_headers", set_uint, struct conf, limits.max_headers, 1, 1000,
        "every header costs work on every request"),
    NUM_POS("max_uri_bytes", set_size, struct conf, limits.max_uri_bytes, 256,
            MIB, "below 256 real sites break; above 1m only helps attacks",
            pos.max_uri_bytes),
    NUM("max_body_bytes", set_size, struct conf, limits.max_body_bytes, 0,
        UINT64_MAX, "0 means unlimited"),
    {0},
};

static const struct key_spec timeouts_keys[] = {
    NUM("client_header", set_duration, struct conf, timeouts.client_header, 1,
        DAY_MS, WHY_TIMEOUT),
    NUM("client_body", set_duration, struct conf, timeouts.client_body, 1,
        DAY_MS, WHY_TIMEOUT),
    NUM("keepalive", set_duration, struct conf, timeouts.keepalive, 1, DAY_MS,
        WHY_TIMEOUT),
    NUM("send", set_duration, struct conf, timeouts.send, 1, DAY_MS,
        WHY_TIMEOUT),
    NUM("shutdown_grace", set_duration, struct conf, timeouts.shutdown_grace,
        0, DAY_MS, "0 stops at once; over a day would stall every restart"),
    {0},
};

static const struct key_spec listener_keys[] = {
    FIELD("listen", set_listen, struct conf_listener, listen),
    NUM("backlog", set_uint, struct conf_listener, backlog, 1, 65535,
        "the kernel caps it at net.core.somaxconn anyway"),
    {.name = "tls", .set = set_unsupported, .why = "TLS is not supported yet"},
    {0},
};

static const struct key_spec match_keys[] = {
    FIELD("host", set_host, struct conf_route, host),
    FIELD("path_prefix", set_path_prefix, struct conf_route, path_prefix),
    {0},
};

static const struct key_spec respond_keys[] = {
    NUM("status", set_uint, struct conf_route, respond.status, 200, 599,
        "a final response: 2xx to 5xx"),
    OTHER("body", set_body),
    OTHER("headers", set_headers),
    {0},
};

static const struct key_spec route_keys[] = {
    SECTION("match", set_section, match_keys),
    SECTION("respond", set_respond, respond_keys),
    OTHER("upstream", set_upstream),
    OTHER("cache", set_unsupported),
    {0},
};

static const struct key_spec root_keys[] = {
    NUM("workers", set_workers, struct conf, workers, 1, 512,
        "one process per core is plenty"),
    FIELD_POS("user", set_user, struct conf, user, pos.user),
    FIELD("pid_file", set_string, struct conf, pid_file),
    SECTION("error_log", set_section, error_log_keys),
    SECTION("access_log", set_section, access_log_keys),
    SECTION("limits", set_section, limits_keys),
    SECTION("timeouts", set_section, timeouts_keys),
    SECTION("listeners", set_listeners, listener_keys),
    SECTION("routes", set_routes, route_keys),
    OTHER("upstreams", set_unsupported),
    OTHER("cache", set_unsupported),
    OTHER("admin", set_unsupported),
    {0},
};

/* ---- walking ---- */

/* Checks the key of pair i in map: a scalar not seen earlier in map. */
static int map_key_ok(struct walk *w, const struct ynode *map, size_t i)
{
    const struct ynode *key = map->kids[i];
    struct quoted q;

    if (key->type == YNODE_BAD)
        return 0;
    if (key->type != YNODE_SCALAR) {
        walk_error(w, key, "keys must be scalars, got %s", ynode_kind(key));
        return 0;
    }
    for (size_t j = 0; j < i; j += 2) {
        const struct ynode *prev = map->kids[j];

        if (prev->type == YNODE_SCALAR && prev->len == key->len &&
            memcmp(prev->str, key->str, key->len) == 0) {
            walk_error(w, key, "duplicate key %s (first at %d:%d)",
                       quote(&q, key->str, key->len), prev->pos.line,
                       prev->pos.col);
            return 0;
        }
    }
    return 1;
}

static const struct key_spec *spec_find(const struct key_spec *table,
                                        const struct ynode *key)
{
    for (; table->name != NULL; table++) {
        if (ynode_is(key, table->name))
            return table;
    }
    return NULL;
}

/* Hands each pair of map to the setter its key names in table. */
static void walk_map(struct walk *w, const struct ynode *map,
                     const struct key_spec *table, void *base)
{
    if (!expect(w, map, YNODE_MAP, "a mapping"))
        return;
    assert(map->nkids % 2 == 0);
    for (size_t i = 0; i < map->nkids; i += 2) {
        const struct ynode *key = map->kids[i], *val = map->kids[i + 1];
        const struct key_spec *k;
        size_t mark;

        if (!map_key_ok(w, map, i))
            continue;
        k = spec_find(table, key);
        if (k == NULL) {
            report_unknown(w, key, table);
            continue;
        }
        mark = path_push(w, "%s%s", w->pathlen ? "." : "", k->name);
        k->set(w, &(struct slot){k, key, val, base});
        path_pop(w, mark);
    }
}

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
    if (map_get(root, "listeners") == NULL)
        walk_error(w, root, "no listeners: add one under listeners:");
}

int conf_yaml_parse(struct conf *conf, const char *buf, size_t len,
                    struct conf_diag *diag)
{
    struct builder b = {.conf = conf, .diag = diag, .buf = buf, .len = len};
    struct walk w = {.conf = conf, .diag = diag};
    struct ynode *root = NULL;
    int rc;

    if (!yaml_parser_initialize(&b.parser))
        oom();
    /* libyaml asserts on a NULL input, even an empty one */
    yaml_parser_set_input_string(
        &b.parser, (const unsigned char *)(buf ? buf : ""), buf ? len : 0);
    rc = tree_build(&b, &root);
    yaml_parser_delete(&b.parser);
    if (rc == PT_OK)
        walk_root(&w, root);
    ynode_free(root);
    return rc;
}

const char *conf_yaml_version(void)
{
    static char buf[48];

    snprintf(buf, sizeof(buf), "libyaml %s", yaml_get_version_string());
    return buf;
}
