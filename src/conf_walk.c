/*
 * conf_walk.c -- the key-table walker: hands each pair of a mapping of
 * the node tree to the setter its key names in a table of struct
 * key_spec, keeps the "routes[2].respond" path that prefixes messages,
 * and supplies the setters and scalar readers every section shares.
 * Unknown and duplicate keys, wrong types and out-of-range numbers are
 * reported here, with a suggestion for a misspelt key.  It knows no key
 * of portico's own: the tables are conf_yaml.c's.
 * Calls: conf_tree.c (node helpers), util.c, conf.c (conf_diag_at).
 * Never: libyaml, sockets, logging.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf.h"
#include "conf_tree.h"
#include "conf_walk.h"
#include "util.h"

#define WHAT_SIZE "a size like 16k, 10m or 1g"
#define WHAT_DURATION "a duration like 500ms, 10s, 5m or 1h"

/* ---- memory: a config is small, so running out here is fatal ---- */

/* ---- messages ---- */

const char *walk_quote(struct quoted *q, const char *s, size_t len)
{
    /* q is written, never read: callers pass it uninitialised */
    /* cppcheck-suppress ctuuninitvar */
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

/* Reports at n, prefixed with the path of the value being walked. */
void walk_error(struct walk *w, const struct ynode *n, const char *fmt, ...)
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

size_t walk_push(struct walk *w, const char *fmt, ...)
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

void walk_pop(struct walk *w, size_t mark)
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
void walk_choice_error(struct walk *w, const struct ynode *val,
                       const char *const *names, size_t n)
{
    char list[128] = "", hint[64];
    struct quoted q;

    for (size_t i = 0; i < n; i++) {
        strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
        strncat(list, names[i], sizeof(list) - strlen(list) - 1);
    }
    walk_error(w, val, "expected one of %s; got %s%s", list,
               walk_quote(&q, val->str, val->len),
               did_you_mean(hint, sizeof(hint), val->str, names, n));
}

static void report_unknown(struct walk *w, const struct ynode *key,
                           const struct key_spec *table)
{
    const char *names[32];
    char hint[64];
    struct quoted q;
    size_t n = 0;

    for (; n < PT_ARRAY_LEN(names) && table[n].name != NULL; n++)
        names[n] = table[n].name;
    walk_error(w, key, "unknown key %s%s", walk_quote(&q, key->str, key->len),
               did_you_mean(hint, sizeof(hint), key->str, names, n));
}

/* ---- type checks and scalar readers ---- */

/* Checks n is of type t (and not null); otherwise says what was wanted. */
int walk_expect(struct walk *w, const struct ynode *n, enum ynode_type t,
                const char *what)
{
    if (n->type == t && !ynode_is_null(n))
        return 1;
    if (n->type != YNODE_BAD)
        walk_error(w, n, "expected %s, got %s", what, ynode_kind(n));
    return 0;
}

/* A non-empty string without NUL bytes, or NULL after an error. */
const char *walk_text(struct walk *w, const struct ynode *val,
                      const char *what)
{
    if (!walk_expect(w, val, YNODE_SCALAR, what))
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

int walk_uint(struct walk *w, const struct ynode *val, const char *what,
              uint64_t *out)
{
    struct quoted q;

    if (!walk_expect(w, val, YNODE_SCALAR, what))
        return 0;
    if (int_parse(val, out))
        return 1;
    walk_error(w, val, "expected %s, got %s%s", what,
               val->plain ? "" : "a quoted string ",
               walk_quote(&q, val->str, val->len));
    return 0;
}

int walk_bool(struct walk *w, const struct ynode *val, const char *what,
              int *out)
{
    struct quoted q;

    if (!walk_expect(w, val, YNODE_SCALAR, what))
        return 0;
    if (val->plain && (ynode_is(val, "true") || ynode_is(val, "false"))) {
        *out = ynode_is(val, "true");
        return 1;
    }
    walk_error(w, val, "expected %s, got %s%s", what,
               val->plain ? "" : "a quoted string ",
               walk_quote(&q, val->str, val->len));
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

int walk_range(struct walk *w, const struct key_spec *k,
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

void *walk_field(const struct slot *at)
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

void walk_store_string(void *field, char *s)
{
    char **p = field;

    free(*p);
    *p = s;
}

/* Notes where an accepted value was written, if its entry asks to. */
void walk_note_pos(const struct slot *at)
{
    if (at->k->pos_at != 0)
        memcpy((char *)at->base + at->k->pos_at, &at->val->pos,
               sizeof(at->val->pos));
}

static void store_number_at(const struct slot *at, uint64_t v)
{
    store_number(walk_field(at), at->k->width, v);
    walk_note_pos(at);
}

/* ---- setters: one per kind of value ---- */

void walk_set_uint(struct walk *w, const struct slot *at)
{
    uint64_t v;

    if (walk_uint(w, at->val, "an integer", &v) &&
        walk_range(w, at->k, at->val, v, NUM_INT))
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

    if (!walk_expect(w, val, YNODE_SCALAR, what))
        return;
    rc = kind == NUM_SIZE ? pt_parse_size(val->str, &v)
                          : pt_parse_duration(val->str, &v);
    if (rc != PT_OK || strlen(val->str) != val->len) {
        walk_error(w, val, "expected %s, got %s", what,
                   walk_quote(&q, val->str, val->len));
        return;
    }
    if (walk_range(w, at->k, val, v, kind))
        store_number_at(at, v);
}

void walk_set_size(struct walk *w, const struct slot *at)
{
    set_measure(w, at, NUM_SIZE);
}

void walk_set_duration(struct walk *w, const struct slot *at)
{
    set_measure(w, at, NUM_DURATION);
}

void walk_set_string(struct walk *w, const struct slot *at)
{
    const char *s = walk_text(w, at->val, "a string");

    if (s != NULL) {
        walk_store_string(walk_field(at), pt_xmemdup(s, at->val->len));
        walk_note_pos(at);
    }
}

/*
 * Drops "." components and doubled slashes from the absolute path p, in
 * place, so one file has one spelling; ".." stays, since a symbolic link
 * may come before it.  A trailing "/" stays too.
 */
static void path_clean(char *p)
{
    size_t len = strlen(p);
    int trailing = len > 1 && p[len - 1] == '/';
    const char *in = p;
    char *out = p;

    while (*in != '\0') {
        const char *seg;
        size_t n;

        while (*in == '/')
            in++;
        seg = in;
        while (*in != '\0' && *in != '/')
            in++;
        n = (size_t)(in - seg);
        if (n == 0 || (n == 1 && seg[0] == '.'))
            continue;
        *out++ = '/';
        memmove(out, seg, n); /* out <= seg: never ahead of the input */
        out += n;
    }
    if (out == p || trailing)
        *out++ = '/';
    *out = '\0';
}

/* The absolute directory relative paths are taken from, or NULL after an
 * error at val. */
static const char *walk_base_dir(struct walk *w, const struct ynode *val)
{
    const char *name = w->conf->path;
    const char *slash = strrchr(name, '/');
    char *cwd;

    if (w->base_dir != NULL)
        return w->base_dir;
    if (name[0] == '/') {
        w->base_dir = pt_xmemdup(name, (size_t)(slash - name) + 1);
        path_clean(w->base_dir);
        return w->base_dir;
    }
    cwd = getcwd(NULL, 0);
    if (cwd == NULL) {
        if (errno == ENOMEM)
            pt_oom();
        walk_error(w, val,
                   "cannot make a relative path absolute: the current "
                   "directory is unknown (%s)",
                   strerror(errno));
        return NULL;
    }
    /* no "/" in the name (a plain file name, or "(fuzz)"): the current
     * directory; else the name's directory under it */
    if (asprintf(&w->base_dir, "%s/%.*s", cwd, slash ? (int)(slash - name) : 0,
                 name) < 0)
        pt_oom();
    free(cwd);
    path_clean(w->base_dir);
    return w->base_dir;
}

void walk_set_path(struct walk *w, const struct slot *at)
{
    const char *s = walk_text(w, at->val, "a file path");
    const char *dir;
    struct quoted q;
    char *abs;

    if (s == NULL)
        return;
    for (const char *p = s; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7F) {
            walk_error(w, at->val,
                       "must not contain control characters, "
                       "got %s",
                       walk_quote(&q, at->val->str, at->val->len));
            return;
        }
    }
    if (s[0] == '/') {
        abs = pt_xmemdup(s, at->val->len);
    } else {
        dir = walk_base_dir(w, at->val);
        if (dir == NULL)
            return;
        if (asprintf(&abs, "%s/%s", dir, s) < 0)
            pt_oom();
    }
    path_clean(abs);
    walk_store_string(walk_field(at), abs);
    walk_note_pos(at);
}

void walk_set_section(struct walk *w, const struct slot *at)
{
    walk_map(w, at->val, at->k->sub, at->base);
}

/* Keys known from the design but not built yet: say so, not "unknown". */
void walk_set_unsupported(struct walk *w, const struct slot *at)
{
    walk_error(w, at->key, "%s",
               at->k->why ? at->k->why : "not supported yet in this build");
}

/* ---- walking ---- */

/* Checks the key of pair i in map: a scalar not seen earlier in map. */
int walk_key_ok(struct walk *w, const struct ynode *map, size_t i)
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
                       walk_quote(&q, key->str, key->len), prev->pos.line,
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
void walk_map(struct walk *w, const struct ynode *map,
              const struct key_spec *table, void *base)
{
    if (!walk_expect(w, map, YNODE_MAP, "a mapping"))
        return;
    assert(map->nkids % 2 == 0);
    for (size_t i = 0; i < map->nkids; i += 2) {
        const struct ynode *key = map->kids[i], *val = map->kids[i + 1];
        const struct key_spec *k;
        size_t mark;

        if (!walk_key_ok(w, map, i))
            continue;
        k = spec_find(table, key);
        if (k == NULL) {
            report_unknown(w, key, table);
            continue;
        }
        mark = walk_push(w, "%s%s", w->pathlen ? "." : "", k->name);
        k->set(w, &(struct slot){k, key, val, base});
        walk_pop(w, mark);
    }
}
