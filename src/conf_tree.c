/*
 * conf_tree.c -- libyaml events into the node tree of conf_tree.h, each
 * node keeping the line:col it was written at.  Refuses what portico's
 * config has no use for (aliases, tags, several documents, deep nesting)
 * with one error each.  The only file that includes <yaml.h>.
 * Calls: libyaml, conf.c (conf_diag_at).  Never: the config's meaning.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "conf.h"
#include "conf_tree.h"
#include "util.h"

/* Real configs nest 5 deep; a limit keeps the recursion bounded. */
#define TREE_MAX_DEPTH 64

/* Reads events into a tree. */
struct builder {
    yaml_parser_t parser;
    const struct conf *conf; /* borrowed: its path names the file */
    struct conf_diag *diag;
    const char *buf; /* borrowed: the input, to place reader errors */
    size_t len;
};

/* ---- memory: a config is small, so running out here is fatal ---- */

/* ---- the node tree ---- */

void ynode_free(struct ynode *n)
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
            pt_oom();
        parent->kids = p;
        parent->cap = cap;
    }
    parent->kids[parent->nkids++] = kid;
}

int ynode_is_null(const struct ynode *n)
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

const char *ynode_kind(const struct ynode *n)
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

int ynode_is(const struct ynode *n, const char *s)
{
    return n->type == YNODE_SCALAR && n->len == strlen(s) &&
           memcmp(n->str, s, n->len) == 0;
}

/* The index of the key node name in map, or SIZE_MAX. */
static size_t map_index(const struct ynode *map, const char *name)
{
    if (map == NULL || map->type != YNODE_MAP)
        return SIZE_MAX;
    for (size_t i = 0; i + 1 < map->nkids; i += 2) {
        if (ynode_is(map->kids[i], name))
            return i;
    }
    return SIZE_MAX;
}

const struct ynode *ynode_get(const struct ynode *map, const char *name)
{
    size_t i = map_index(map, name);

    return i == SIZE_MAX ? NULL : map->kids[i + 1];
}

const struct ynode *ynode_get_key(const struct ynode *map, const char *name)
{
    size_t i = map_index(map, name);

    return i == SIZE_MAX ? NULL : map->kids[i];
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
        pt_oom();
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
    struct ynode *n = pt_xcalloc(1, sizeof(*n));

    n->pos = mark_pos(ev->start_mark);
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        n->type = YNODE_SCALAR;
        n->str = pt_xmemdup((const char *)ev->data.scalar.value,
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

int conf_tree_parse(const struct conf *conf, const char *buf, size_t len,
                    struct conf_diag *diag, struct ynode **root)
{
    struct builder b = {.conf = conf, .diag = diag, .buf = buf, .len = len};
    int rc;

    if (!yaml_parser_initialize(&b.parser))
        pt_oom();
    /* libyaml asserts on a NULL input, even an empty one */
    yaml_parser_set_input_string(
        &b.parser, (const unsigned char *)(buf ? buf : ""), buf ? len : 0);
    rc = tree_build(&b, root);
    yaml_parser_delete(&b.parser);
    return rc;
}

const char *conf_yaml_version(void)
{
    static char buf[48];

    snprintf(buf, sizeof(buf), "libyaml %s", yaml_get_version_string());
    return buf;
}
