/*
 * conf_walk.h -- private to the config loader: declarative key tables
 * ({name, setter, offset, range}) and the walker that applies them to
 * the node tree, collecting every error with its line:col and key path.
 * conf_yaml.c writes portico's tables; conf_walk.c runs them.
 */
#ifndef PORTICO_CONF_WALK_H
#define PORTICO_CONF_WALK_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "conf_tree.h"

/* Bytes of a value quoted back in a message: enough to recognise it. */
#define QUOTE_MAX 64

/* Walks the tree with the key tables. */
struct walk {
    struct conf *conf; /* borrowed: what the setters fill */
    struct conf_diag *diag;
    char path[256]; /* "routes[2].respond.status": prefixes messages */
    size_t pathlen;
    /* borrowed: the upstream: value of the route being walked, or NULL;
     * lets a message name the upstream whatever the key order */
    const struct ynode *route_upstream;
    /* owns: the absolute directory relative file paths are taken from
     * (the config file's, else the current one); made on first use */
    char *base_dir;
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

/* ---- table entries ---- */

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
/* a section whose setter gets the field at member, not the whole base */
#define SECTION_AT(key, setter, type, member, table)                          \
    {                                                                         \
        .name = (key), .set = (setter), .off = offsetof(type, member),        \
        .sub = (table)                                                        \
    }
/* a key not built yet, rejected with why */
#define UNSUPPORTED(key, message)                                             \
    {                                                                         \
        .name = (key), .set = walk_set_unsupported, .why = (message)          \
    }

/* Memory: pt_xcalloc / pt_xmemdup (util.h) abort when out of it. */

/* ---- messages and the key path ---- */

/* Writes s escaped and in double quotes into q; returns q->s. */
const char *walk_quote(struct quoted *q, const char *s, size_t len);

/* Reports an error at n, prefixed with the current key path. */
void walk_error(struct walk *w, const struct ynode *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends to the path; returns the mark walk_pop goes back to. */
size_t walk_push(struct walk *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void walk_pop(struct walk *w, size_t mark);

/* "expected one of a, b; got "x"" plus a suggestion, at val. */
void walk_choice_error(struct walk *w, const struct ynode *val,
                       const char *const *names, size_t n);

/* ---- type checks and scalar readers: 0 / NULL after an error ---- */

/* 1 when n is of type t (and not null); else says what was wanted. */
int walk_expect(struct walk *w, const struct ynode *n, enum ynode_type t,
                const char *what);

/* val's bytes when a non-empty string without NUL bytes, or NULL. */
const char *walk_text(struct walk *w, const struct ynode *val,
                      const char *what);

/* Plain decimal digits into *out (saturating), or 0. */
int walk_uint(struct walk *w, const struct ynode *val, const char *what,
              uint64_t *out);

/* 1 when k->min <= v <= k->max; else states the range and k->why. */
int walk_range(struct walk *w, const struct key_spec *k,
               const struct ynode *val, uint64_t v, enum num_kind kind);

/* true or false, written plain, into *out; or 0 after an error. */
int walk_bool(struct walk *w, const struct ynode *val, const char *what,
              int *out);

/* The field at->k->off bytes into at->base. */
void *walk_field(const struct slot *at);

/* Frees the string in *(char **)field and stores s (owned) there. */
void walk_store_string(void *field, char *s);

/* Records where at->val was written, if at->k has a pos_at. */
void walk_note_pos(const struct slot *at);

/* 1 when key i of map is a scalar not seen earlier in map. */
int walk_key_ok(struct walk *w, const struct ynode *map, size_t i);

/* ---- walking and the shared setters ---- */

/* Hands each pair of map to the setter its key names in table, with base
 * as the struct the entries' offsets are relative to. */
void walk_map(struct walk *w, const struct ynode *map,
              const struct key_spec *table, void *base);

void walk_set_uint(struct walk *w, const struct slot *at);
void walk_set_size(struct walk *w, const struct slot *at);
void walk_set_duration(struct walk *w, const struct slot *at);
void walk_set_string(struct walk *w, const struct slot *at);
/* a file path, stored absolute: a relative one is taken from the config
 * file's directory (the current one when the config's name has no "/") */
void walk_set_path(struct walk *w, const struct slot *at);
/* walk_map of the value with at->k->sub */
void walk_set_section(struct walk *w, const struct slot *at);
/* a key known from the design but not built yet: at->k->why or "not
 * supported yet in this build" */
void walk_set_unsupported(struct walk *w, const struct slot *at);

#endif
