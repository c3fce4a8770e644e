/*
 * conf_tree.h -- private to the config loader: the YAML document as a
 * small tree of nodes that remember where they were written, so any
 * later check can point at the right line:col.  Deliberately free of
 * <yaml.h>: conf_tree.c is the only file that sees libyaml.
 */
#ifndef PORTICO_CONF_TREE_H
#define PORTICO_CONF_TREE_H

#include <stddef.h>

#include "conf.h"

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

/*
 * Parses len bytes of buf into *root (caller frees with ynode_free; NULL
 * for an empty stream).  What the tree refuses (aliases, tags, a second
 * document) is appended to diag as "conf->path:L:C: error: ...".
 * Returns PT_OK, or PT_ERROR after a fatal syntax error (already
 * reported; *root is then NULL).
 */
int conf_tree_parse(const struct conf *conf, const char *buf, size_t len,
                    struct conf_diag *diag, struct ynode **root);

/* Frees n and everything under it; NULL is fine. */
void ynode_free(struct ynode *n);

/* 1 for YAML's null: an empty plain scalar, "~" or "null". */
int ynode_is_null(const struct ynode *n);

/* "a mapping", "a sequence", "null" or "a scalar", for messages. */
const char *ynode_kind(const struct ynode *n);

/* 1 when n is a scalar whose bytes are exactly s. */
int ynode_is(const struct ynode *n, const char *s);

/* The value under key name in map, or NULL (also when map is not one);
 * ynode_get_key returns the key node itself. */
const struct ynode *ynode_get(const struct ynode *map, const char *name);
const struct ynode *ynode_get_key(const struct ynode *map, const char *name);

#endif
