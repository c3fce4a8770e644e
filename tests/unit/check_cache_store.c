/*
 * check_cache_store.c -- the shared-memory store: fill and read back,
 * read-while-write, abort, LRU eviction order, pins that block eviction,
 * max_object, purges, several processes hammering one zone, processes
 * killed mid-fill or while holding the lock, and the pins of a dead
 * process given back (cache_store_forget), the ledger full included.
 */
#include <check.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "cache_store.h"
#include "evio.h"

#define MB (1024u * 1024u)

/* "PREFIX<n>" in buf */
static struct pt_str key_of(char *buf, size_t cap, const char *prefix, int n)
{
    int len = snprintf(buf, cap, "%s%d", prefix, n);
    return (struct pt_str){buf, (size_t)len};
}

/* Deterministic content for object n of size len. */
static void fill_bytes(unsigned char *p, size_t len, int n)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(i * 31 + (size_t)n * 7);
}

/* Read the whole object behind ref into a new buffer; *len its size. */
static unsigned char *read_all(struct cache_store *s, struct cache_ref *ref,
                               size_t *len)
{
    unsigned char *out = NULL;
    size_t n = 0;
    int done = 0;

    while (!done) {
        const void *p;
        size_t k = cache_read(s, ref, n, &p, &done);
        if (k == (size_t)-1) {
            free(out);
            return NULL;
        }
        if (k == 0 && !done)
            break; /* not complete yet */
        out = realloc(out, n + k + 1);
        memcpy(out + n, p, k);
        n += k;
    }
    *len = n;
    return out;
}

static int store_object(struct cache_store *s, struct pt_str key, size_t len,
                        int n)
{
    struct cache_ref ref;
    struct cache_meta meta = {.status = 200, .head_len = 10};
    unsigned char *data = malloc(len + 1);
    int rc;

    fill_bytes(data, len, n);
    if (cache_lookup(s, key, 1, &ref, &meta) != CACHE_CLAIMED) {
        free(data);
        return -1;
    }
    /* in uneven pieces, as a response arrives */
    for (size_t off = 0; off < len;) {
        size_t k = PT_MIN(len - off, (size_t)(1 + (off * 7919) % 9000));
        if (cache_fill_append(s, &ref, data + off, k, 64 * MB) != PT_OK) {
            free(data);
            return -2;
        }
        off += k;
    }
    meta.lifetime = n;
    rc = cache_fill_done(s, &ref, &meta);
    cache_release(s, &ref);
    free(data);
    return rc;
}

/* 1 when key holds object n of len bytes exactly; 0 when absent. */
static int check_object(struct cache_store *s, struct pt_str key, size_t len,
                        int n)
{
    struct cache_ref ref;
    struct cache_meta meta;
    unsigned char *got, *want;
    size_t got_len;
    int ok;

    if (cache_lookup(s, key, 0, &ref, &meta) != CACHE_HIT)
        return 0;
    got = read_all(s, &ref, &got_len);
    cache_release(s, &ref);
    want = malloc(len + 1);
    fill_bytes(want, len, n);
    ok = got && got_len == len && memcmp(got, want, len) == 0 &&
         meta.lifetime == n;
    free(got);
    free(want);
    return ok ? 1 : -1;
}

START_TEST(test_fill_and_read)
{
    struct cache_store *s = cache_store_new(4 * MB);
    char k[64];

    ck_assert_ptr_nonnull(s);
    for (int n = 0; n < 6; n++) {
        size_t len = n == 0 ? 0 : (size_t)1 << (n * 3); /* 0 .. 32k */
        ck_assert_int_eq(store_object(s, key_of(k, 64, "GET http://x/", n),
                                      len, n),
                         PT_OK);
    }
    for (int n = 0; n < 6; n++) {
        size_t len = n == 0 ? 0 : (size_t)1 << (n * 3);
        ck_assert_int_eq(
            check_object(s, key_of(k, 64, "GET http://x/", n), len, n), 1);
    }
    ck_assert_int_eq(check_object(s, key_of(k, 64, "GET http://y/", 1), 8, 1),
                     0);
    cache_store_free(&s);
}
END_TEST

START_TEST(test_read_while_write_and_abort)
{
    struct cache_store *s = cache_store_new(2 * MB);
    struct cache_ref filler, reader;
    struct cache_meta meta = {0};
    struct pt_str key = PT_STR("GET http://x/stream");
    unsigned char data[10000];
    const void *p;
    int done;

    fill_bytes(data, sizeof(data), 3);
    ck_assert_int_eq(cache_lookup(s, key, 1, &filler, &meta), CACHE_CLAIMED);
    ck_assert_int_eq(cache_fill_append(s, &filler, data, 5000, MB), PT_OK);
    /* one fill per key: the next one finds it being filled */
    ck_assert_int_eq(cache_lookup(s, key, 1, &reader, &meta), CACHE_FILLING);
    size_t n = 0;
    for (size_t k; (k = cache_read(s, &reader, n, &p, &done)) > 0; n += k)
        ck_assert(memcmp(p, data + n, k) == 0);
    ck_assert_uint_eq(n, 5000);
    ck_assert_int_eq(done, 0); /* more to come */
    ck_assert_int_eq(cache_fill_append(s, &filler, data + 5000, 5000, MB),
                     PT_OK);
    ck_assert_int_eq(cache_fill_done(s, &filler, &meta), PT_OK);
    for (size_t k; (k = cache_read(s, &reader, n, &p, &done)) > 0; n += k)
        ck_assert(memcmp(p, data + n, k) == 0);
    ck_assert_uint_eq(n, 10000);
    ck_assert_int_eq(done, 1);
    cache_release(s, &reader);
    cache_release(s, &filler);

    /* an aborted fill: its reader learns it, the key is free again */
    struct pt_str k2 = PT_STR("GET http://x/aborted");
    ck_assert_int_eq(cache_lookup(s, k2, 1, &filler, &meta), CACHE_CLAIMED);
    cache_fill_append(s, &filler, data, 100, MB);
    ck_assert_int_eq(cache_lookup(s, k2, 0, &reader, &meta), CACHE_FILLING);
    cache_fill_abort(s, &filler);
    cache_release(s, &filler);
    ck_assert_uint_eq(cache_read(s, &reader, 0, &p, &done), (size_t)-1);
    cache_release(s, &reader);
    ck_assert_int_eq(cache_lookup(s, k2, 0, &reader, &meta), CACHE_MISS);
    cache_store_free(&s);
}
END_TEST

START_TEST(test_max_object_and_purge)
{
    struct cache_store *s = cache_store_new(2 * MB);
    struct cache_ref ref;
    struct cache_meta meta = {0};
    unsigned char data[3000] = {0};
    char k[64];

    ck_assert_int_eq(cache_lookup(s, PT_STR("big"), 1, &ref, &meta),
                     CACHE_CLAIMED);
    ck_assert_int_eq(cache_fill_append(s, &ref, data, 3000, 4096), PT_OK);
    ck_assert_int_eq(cache_fill_append(s, &ref, data, 3000, 4096), PT_ERROR);
    cache_release(s, &ref);
    ck_assert_int_eq(cache_lookup(s, PT_STR("big"), 0, &ref, &meta),
                     CACHE_MISS);

    for (int n = 0; n < 10; n++)
        store_object(s, key_of(k, 64, n < 5 ? "GET http://a/" : "GET http://b/", n),
                     100, n);
    ck_assert_int_eq(cache_purge(s, key_of(k, 64, "GET http://a/", 0)), 1);
    ck_assert_int_eq(cache_purge(s, key_of(k, 64, "GET http://a/", 0)), 0);
    ck_assert_uint_eq(cache_purge_prefix(s, PT_STR("GET http://a/")), 4);
    ck_assert_int_eq(check_object(s, key_of(k, 64, "GET http://b/", 7), 100, 7), 1);
    /* soft purge: still there, but stale */
    ck_assert_uint_eq(cache_expire(s, key_of(k, 64, "GET http://b/", 8), 1), 1);
    ck_assert_int_eq(cache_lookup(s, key_of(k, 64, "GET http://b/", 8), 0, &ref,
                                  &meta),
                     CACHE_HIT);
    ck_assert_int_eq(meta.lifetime, 0);
    ck_assert_int_eq(meta.stored_at, 0);
    cache_release(s, &ref);
    ck_assert_uint_eq(cache_expire(s, PT_STR("GET http://b/"), 0), 5);
    ck_assert_uint_eq(cache_purge_prefix(s, PT_STR("")), 5);
    struct cache_stats st;
    cache_store_stats(s, &st);
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.bytes_used, 0);
    cache_store_free(&s);
}
END_TEST

START_TEST(test_lru_eviction_and_pins)
{
    struct cache_store *s = cache_store_new(1 * MB);
    struct cache_stats st;
    struct cache_ref pin;
    struct cache_meta meta;
    char k[64];
    int n;

    cache_store_stats(s, &st);
    ck_assert_uint_le(st.bytes_total, MB); /* the budget covers it all */
    int cap = (int)(st.bytes_total / CACHE_BLOCK);
    /* object 0 stays pinned, object 1 is touched: both must survive */
    store_object(s, key_of(k, 64, "k", 0), 1000, 0);
    store_object(s, key_of(k, 64, "k", 1), 1000, 1);
    ck_assert_int_eq(cache_lookup(s, key_of(k, 64, "k", 0), 0, &pin, &meta),
                     CACHE_HIT);
    for (n = 2; n < cap * 3; n++) {
        ck_assert_int_eq(store_object(s, key_of(k, 64, "k", n), 1000, n),
                         PT_OK);
        if (n % 8 == 0)
            ck_assert_int_eq(check_object(s, key_of(k, 64, "k", 1), 1000, 1),
                             1);
    }
    cache_store_stats(s, &st);
    ck_assert_uint_gt(st.evictions, 0);
    ck_assert_uint_le(st.bytes_used, st.bytes_total);
    /* pinned and recently used survived, the oldest others did not */
    size_t len;
    unsigned char *got = read_all(s, &pin, &len);
    ck_assert_uint_eq(len, 1000);
    free(got);
    cache_release(s, &pin);
    ck_assert_int_eq(check_object(s, key_of(k, 64, "k", 1), 1000, 1), 1);
    ck_assert_int_eq(check_object(s, key_of(k, 64, "k", 2), 1000, 2), 0);
    ck_assert_int_eq(check_object(s, key_of(k, 64, "k", n - 1), 1000, n - 1),
                     1);
    cache_store_free(&s);
}
END_TEST

/* Several processes store and check random objects in one zone. */
START_TEST(test_processes_hammer)
{
    struct cache_store *s = cache_store_new(2 * MB);
    pid_t kids[4];

    for (int c = 0; c < 4; c++) {
        kids[c] = fork();
        if (kids[c] == 0) {
            char k[64];
            int bad = 0;
            srand((unsigned)getpid());
            for (int i = 0; i < 3000; i++) {
                int n = rand() % 200;
                size_t len = (size_t)(n * 97 % 20000);
                struct pt_str key = key_of(k, 64, "GET http://h/obj/", n);
                int r = check_object(s, key, len, n);
                if (r < 0)
                    bad++;
                else if (r == 0)
                    store_object(s, key, len, n);
            }
            _exit(bad ? 1 : 0);
        }
    }
    for (int c = 0; c < 4; c++) {
        int st;
        waitpid(kids[c], &st, 0);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "process %d read a corrupted object", c);
    }
    cache_store_free(&s);
}
END_TEST

/* A filler killed mid-fill, and a process killed holding the lock. */
START_TEST(test_killed_processes)
{
    struct cache_store *s = cache_store_new(2 * MB);
    struct cache_ref ref;
    struct cache_meta meta;
    struct cache_stats st;
    int ws;
    pid_t pid = fork();

    if (pid == 0) {
        unsigned char d[6000] = {1};
        cache_lookup(s, PT_STR("GET http://x/half"), 1, &ref, &meta);
        cache_fill_append(s, &ref, d, sizeof(d), MB);
        raise(SIGKILL);
    }
    waitpid(pid, &ws, 0);
    /* nobody will finish it: the key is free to fill again */
    ck_assert_int_eq(cache_lookup(s, PT_STR("GET http://x/half"), 1, &ref, &meta),
                     CACHE_CLAIMED);
    cache_fill_abort(s, &ref);
    cache_release(s, &ref);
    store_object(s, PT_STR("GET http://x/kept"), 5000, 5);

    pid = fork();
    if (pid == 0) {
        cache_store_lock_for_test(s);
        raise(SIGKILL);
    }
    waitpid(pid, &ws, 0);
    ck_assert(WIFSIGNALED(ws));
    /* the next locker recovers: no deadlock, contents intact */
    ck_assert_int_eq(check_object(s, PT_STR("GET http://x/kept"), 5000, 5), 1);
    ck_assert_int_eq(store_object(s, PT_STR("GET http://x/new"), 9000, 9), PT_OK);
    ck_assert_int_eq(check_object(s, PT_STR("GET http://x/new"), 9000, 9), 1);
    cache_store_stats(s, &st);
    ck_assert_uint_eq(st.repairs, 1);
    ck_assert_uint_eq(st.entries, 2);
    cache_store_free(&s);
}
END_TEST

/* Store `count` objects of len bytes under "PREFIX<n>" from n = from. */
static void store_many(struct cache_store *s, const char *prefix, int from,
                       int count, size_t len)
{
    char k[64];

    for (int n = from; n < from + count; n++)
        ck_assert_int_eq(store_object(s, key_of(k, 64, prefix, n), len, n),
                         PT_OK);
}

static uint64_t bytes_used(struct cache_store *s)
{
    struct cache_stats st;

    cache_store_stats(s, &st);
    return st.bytes_used;
}

static uint64_t entry_count(struct cache_store *s)
{
    struct cache_stats st;

    cache_store_stats(s, &st);
    return st.entries;
}

/* In a child: pin key (a HIT) `times` times and leave without releasing. */
static pid_t pin_and_die(struct cache_store *s, struct pt_str key, int times)
{
    pid_t pid = fork();

    if (pid == 0) {
        struct cache_ref ref;
        struct cache_meta meta;
        if (cache_lookup(s, key, 0, &ref, &meta) != CACHE_HIT)
            _exit(1);
        for (int i = 1; i < times; i++)
            cache_addref(s, &ref);
        _exit(0);
    }
    return pid;
}

static void reap_ok(pid_t pid)
{
    int ws;

    ck_assert_int_eq(waitpid(pid, &ws, 0), pid);
    ck_assert_msg(WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
                  "child %d failed", (int)pid);
}

/*
 * A process dies holding pins: on a complete entry it was serving (twice),
 * on another, and on one it was filling.  Until forget, the purged one
 * keeps its blocks and the other cannot be evicted; after, both can.
 */
START_TEST(test_dead_pins_given_back)
{
    struct cache_store *s = cache_store_new(2 * MB);
    struct pt_str hit = PT_STR("GET http://x/hit");
    struct pt_str kept = PT_STR("GET http://x/kept");
    struct pt_str fill = PT_STR("GET http://x/fill");
    struct cache_stats st;
    struct cache_ref ref;
    struct cache_meta meta;
    uint64_t before;
    pid_t pid;

    cache_store_stats(s, &st);
    int cap = (int)(st.bytes_total / CACHE_BLOCK);
    ck_assert_int_eq(store_object(s, hit, 20000, 1), PT_OK);
    ck_assert_int_eq(store_object(s, kept, 20000, 2), PT_OK);
    pid = fork();
    if (pid == 0) {
        unsigned char d[6000] = {1};
        if (cache_lookup(s, hit, 0, &ref, &meta) != CACHE_HIT)
            _exit(1);
        cache_addref(s, &ref);
        if (cache_lookup(s, kept, 0, &ref, &meta) != CACHE_HIT ||
            cache_lookup(s, fill, 1, &ref, &meta) != CACHE_CLAIMED ||
            cache_fill_append(s, &ref, d, sizeof(d), MB) != PT_OK)
            _exit(1);
        _exit(0); /* nothing released */
    }
    reap_ok(pid);

    /* purged: findable no more, but its blocks stay taken */
    before = bytes_used(s);
    ck_assert_int_eq(cache_purge(s, hit), 1);
    ck_assert_uint_eq(bytes_used(s), before);
    /* and the pinned one outlives any amount of newer objects */
    store_many(s, "GET http://x/new/", 0, cap * 2, 1000);
    cache_store_stats(s, &st);
    ck_assert_uint_gt(st.evictions, 0);
    ck_assert_int_eq(check_object(s, kept, 20000, 2), 1);

    before = bytes_used(s);
    ck_assert_uint_eq(cache_store_forget(s, pid), 4);
    /* hit's 20000 bytes and fill's 6000 (and their keys) are free */
    ck_assert_uint_le(bytes_used(s), before - 7 * CACHE_BLOCK);
    ck_assert_int_eq(cache_lookup(s, fill, 0, &ref, &meta), CACHE_MISS);
    ck_assert_uint_eq(cache_store_forget(s, pid), 0); /* never twice */
    cache_store_stats(s, &st);
    ck_assert_uint_eq(st.pins_returned, 4);
    ck_assert_uint_eq(st.pins_untracked, 0);

    /* kept is an ordinary entry again: old, unpinned, evicted */
    store_many(s, "GET http://x/newer/", 0, cap * 2, 1000);
    ck_assert_int_eq(check_object(s, kept, 20000, 2), 0);
    uint64_t left = entry_count(s);
    ck_assert_uint_eq(cache_purge_prefix(s, PT_STR("")), left);
    ck_assert_uint_eq(bytes_used(s), 0);
    cache_store_free(&s);
}
END_TEST

/*
 * The pins that stay are the living's: a release after forget does not
 * take one more than there is, and a dead filler's pin dropped by a lookup
 * is not given back again by forget.
 */
START_TEST(test_forget_and_release)
{
    struct cache_store *s = cache_store_new(2 * MB);
    struct pt_str a = PT_STR("GET http://x/a"), b = PT_STR("GET http://x/b");
    struct pt_str f = PT_STR("GET http://x/f");
    struct cache_ref mine, mine2, other;
    struct cache_meta meta;
    pid_t pid;

    /* a: pinned here and by a child that dies */
    ck_assert_int_eq(store_object(s, a, 10000, 1), PT_OK);
    ck_assert_int_eq(cache_lookup(s, a, 0, &mine, &meta), CACHE_HIT);
    pid = pin_and_die(s, a, 1);
    reap_ok(pid);
    ck_assert_int_eq(cache_purge(s, a), 1);
    ck_assert_uint_eq(cache_store_forget(s, pid), 1);
    ck_assert_uint_gt(bytes_used(s), 0); /* still read here */
    cache_release(s, &mine);
    ck_assert_uint_eq(bytes_used(s), 0);
    ck_assert_uint_eq(entry_count(s), 0);
    cache_release(s, &mine); /* released already: nothing happens */

    /* b: pins forgotten under a live holder; its releases find refs 0 */
    ck_assert_int_eq(store_object(s, b, 10000, 2), PT_OK);
    ck_assert_int_eq(cache_lookup(s, b, 0, &mine, &meta), CACHE_HIT);
    cache_addref(s, &mine);
    mine2 = mine;
    ck_assert_uint_eq(cache_store_forget(s, getpid()), 2);
    cache_release(s, &mine);
    cache_release(s, &mine2);
    ck_assert_int_eq(check_object(s, b, 10000, 2), 1);
    ck_assert_int_eq(cache_purge(s, b), 1);
    ck_assert_uint_eq(bytes_used(s), 0); /* no pin left over (or wrapped) */

    /* f: a child claims it, pins it once more and dies mid-fill */
    pid = fork();
    if (pid == 0) {
        unsigned char d[6000] = {1};
        if (cache_lookup(s, f, 1, &other, &meta) != CACHE_CLAIMED ||
            cache_fill_append(s, &other, d, sizeof(d), MB) != PT_OK)
            _exit(1);
        cache_addref(s, &other);
        _exit(0);
    }
    reap_ok(pid);
    /* the lookup finds the fill orphaned and drops the filler's pin */
    ck_assert_int_eq(cache_lookup(s, f, 0, &other, &meta), CACHE_MISS);
    ck_assert_uint_gt(bytes_used(s), 0); /* the second pin holds it */
    ck_assert_uint_eq(cache_store_forget(s, pid), 1);
    ck_assert_uint_eq(bytes_used(s), 0);
    ck_assert_uint_eq(entry_count(s), 0);
    cache_store_free(&s);
}
END_TEST

/* More pins than the ledger has room for: the rest go untracked. */
START_TEST(test_ledger_full)
{
    struct cache_store *s = cache_store_new(8 * MB);
    struct cache_stats st;
    struct cache_meta meta;
    char k[64];
    enum { N = 1000 };
    struct cache_ref *refs = calloc(N, sizeof(*refs));
    uint64_t untracked;
    pid_t pid;

    store_many(s, "GET http://x/l/", 0, N, 100);
    ck_assert_uint_eq(entry_count(s), N); /* none evicted */

    /* here: pin them all, then release them all */
    for (int n = 0; n < N; n++)
        ck_assert_int_eq(cache_lookup(s, key_of(k, 64, "GET http://x/l/", n),
                                      0, &refs[n], &meta),
                         CACHE_HIT);
    cache_store_stats(s, &st);
    untracked = st.pins_untracked;
    ck_assert_uint_gt(untracked, 0); /* the ledger was full */
    ck_assert_uint_lt(untracked, N);
    for (int n = 0; n < N; n++)
        cache_release(s, &refs[n]);
    ck_assert_uint_eq(cache_store_forget(s, getpid()), 0);
    ck_assert_uint_eq(cache_purge_prefix(s, PT_STR("")), N);
    ck_assert_uint_eq(bytes_used(s), 0);

    /* a child pins them all and dies: what the ledger holds comes back,
     * the untracked pins stay lost (their entries keep a block each) */
    store_many(s, "GET http://x/l/", 0, N, 100);
    pid = fork();
    if (pid == 0) {
        for (int n = 0; n < N; n++)
            if (cache_lookup(s, key_of(k, 64, "GET http://x/l/", n), 0,
                             &refs[n], &meta) != CACHE_HIT)
                _exit(1);
        _exit(0);
    }
    reap_ok(pid);
    cache_store_stats(s, &st);
    untracked = st.pins_untracked - untracked;
    ck_assert_uint_gt(untracked, 0);
    ck_assert_uint_eq(cache_store_forget(s, pid), N - untracked);
    ck_assert_uint_eq(cache_purge_prefix(s, PT_STR("")), N);
    ck_assert_uint_eq(entry_count(s), untracked);
    ck_assert_uint_eq(bytes_used(s), untracked * CACHE_BLOCK);
    /* the ledger works on: pins taken and given back */
    store_many(s, "GET http://x/m/", 0, 10, 100);
    pid = pin_and_die(s, PT_STR("GET http://x/m/3"), 3);
    reap_ok(pid);
    ck_assert_uint_eq(cache_store_forget(s, pid), 3);
    free(refs);
    cache_store_free(&s);
}
END_TEST

/* A process dies holding pins and the lock: the repair keeps its ledger
 * records (and drops its fill with the fill's pin), forget does the rest. */
START_TEST(test_forget_after_repair)
{
    struct cache_store *s = cache_store_new(2 * MB);
    struct pt_str hit = PT_STR("GET http://x/hit");
    struct cache_stats st;
    int ws;
    pid_t pid;

    ck_assert_int_eq(store_object(s, hit, 20000, 1), PT_OK);
    pid = fork();
    if (pid == 0) {
        struct cache_ref ref, fill;
        struct cache_meta meta;
        if (cache_lookup(s, hit, 0, &ref, &meta) != CACHE_HIT)
            _exit(1);
        cache_addref(s, &ref);
        if (cache_lookup(s, PT_STR("GET http://x/fill"), 1, &fill, &meta) !=
            CACHE_CLAIMED)
            _exit(1);
        cache_store_lock_for_test(s);
        raise(SIGKILL);
    }
    ck_assert_int_eq(waitpid(pid, &ws, 0), pid);
    ck_assert(WIFSIGNALED(ws));
    ck_assert_int_eq(cache_purge(s, hit), 1); /* repairs first */
    cache_store_stats(s, &st);
    ck_assert_uint_eq(st.repairs, 1);
    ck_assert_uint_gt(st.bytes_used, 0);
    ck_assert_uint_eq(cache_store_forget(s, pid), 2);
    ck_assert_uint_eq(bytes_used(s), 0);
    ck_assert_uint_eq(entry_count(s), 0);
    cache_store_free(&s);
}
END_TEST

/*
 * Processes pinning, unpinning, filling and purging at random are killed
 * at random moments (holding the lock or not, in the middle of a ledger
 * update or not) and forgotten.  Whatever forget gives back, it never
 * takes a pin the living hold: the objects pinned here stay readable
 * through purges and churn, and are freed once released.
 */
START_TEST(test_kills_at_random)
{
    struct cache_store *s = cache_store_new(4 * MB);
    struct cache_ref mine[8];
    struct cache_meta meta;
    struct cache_stats st;
    char k[64];
    size_t given = 0;
    const char *env = getenv("PORTICO_TEST_SEED"); /* to try others */

    srand(env ? (unsigned)atoi(env) : 7);
    store_many(s, "GET http://r/", 0, 40, 9000);
    for (int n = 0; n < 8; n++)
        ck_assert_int_eq(cache_lookup(s, key_of(k, 64, "GET http://r/", n), 0,
                                      &mine[n], &meta),
                         CACHE_HIT);
    for (int round = 0; round < 40; round++) {
        unsigned seed = (unsigned)rand();
        pid_t pid = fork();
        if (pid == 0) {
            struct cache_ref held[64];
            int nheld = 0;
            unsigned char d[3000] = {2};
            srand(seed);
            for (;;) {
                int n = rand() % 60, op = rand() % 8;
                struct pt_str key = key_of(k, 64, "GET http://r/", n);
                if (op < 3 && nheld < 64) {
                    if (cache_lookup(s, key, 1, &held[nheld], &meta) ==
                        CACHE_CLAIMED)
                        cache_fill_append(s, &held[nheld], d, sizeof(d), MB);
                    else if (cache_length(s, &held[nheld]) == 0)
                        continue; /* a miss: nothing pinned */
                    nheld++;
                } else if (op < 4 && nheld > 0 && nheld < 64) {
                    held[nheld] = held[rand() % nheld];
                    cache_addref(s, &held[nheld++]);
                } else if (op < 6 && nheld > 0) {
                    int i = rand() % nheld;
                    struct cache_meta m = {.head_len = 1};
                    cache_fill_done(s, &held[i], &m);
                    cache_release(s, &held[i]);
                    held[i] = held[--nheld];
                } else if (op < 7 && n >= 8) {
                    cache_purge(s, key); /* not ours (a purged entry
                                            reads as aborted) */
                } else if (rand() % 2000 == 0) {
                    cache_store_lock_for_test(s);
                    raise(SIGKILL);
                }
            }
        }
        usleep((useconds_t)(rand() % 3000));
        kill(pid, SIGKILL);
        ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
        given += cache_store_forget(s, pid);
        for (int n = 0; n < 8; n++) {
            size_t len;
            unsigned char *got = read_all(s, &mine[n], &len);
            ck_assert_msg(got != NULL && len == 9000, "round %d: object %d",
                          round, n);
            free(got);
        }
    }
    cache_store_stats(s, &st);
    printf("random kills: %zu pins given back, %llu repairs\n", given,
           (unsigned long long)st.repairs);
    ck_assert_uint_gt(given, 0);
    /* purged and churned under our pins: not freed (same version) */
    cache_purge_prefix(s, PT_STR(""));
    store_many(s, "GET http://r2/", 0, 200, 9000);
    for (int n = 0; n < 8; n++) {
        ck_assert_uint_eq(cache_length(s, &mine[n]), 9000);
        cache_release(s, &mine[n]);
    }
    cache_purge_prefix(s, PT_STR(""));
    cache_store_stats(s, &st);
    printf("random kills: %llu bytes left pinned by the dead\n",
           (unsigned long long)st.bytes_used);
    cache_store_free(&s);
}
END_TEST

/* A connected loopback TCP pair, *snd to write, *rcv to read, each with
 * room for `room` bytes that nobody has read yet. */
static void tcp_pair(int *snd, int *rcv, int room)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM, 0);

    *snd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(l, 0);
    ck_assert_int_ge(*snd, 0);
    setsockopt(l, SOL_SOCKET, SO_RCVBUF, &room, sizeof(room));
    setsockopt(*snd, SOL_SOCKET, SO_SNDBUF, &room, sizeof(room));
    ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)&a, &al), 0);
    ck_assert_int_eq(listen(l, 1), 0);
    ck_assert_int_eq(connect(*snd, (struct sockaddr *)&a, al), 0);
    *rcv = accept(l, NULL, NULL);
    ck_assert_int_ge(*rcv, 0);
    close(l);
}

/* An object's bytes into out by reference, blocks that lie end to end
 * as one piece (as cache_serve queues a body); the longest piece. */
static size_t queue_object(struct cache_store *s, struct cache_ref *ref,
                           struct evbuffer *out)
{
    const char *run = NULL;
    size_t run_len = 0, longest = 0;
    int done = 0;

    for (uint64_t off = 0;;) {
        const void *p;
        size_t k = cache_read(s, ref, off, &p, &done);
        if (k != 0 && k != (size_t)-1 && run && run + run_len == p) {
            run_len += k;
        } else {
            if (run)
                evbuffer_add_reference(out, run, run_len, NULL, NULL);
            longest = PT_MAX(longest, run_len);
            if (k == 0 || k == (size_t)-1)
                break;
            run = p;
            run_len = k;
        }
        off += k;
    }
    return longest;
}

/* Look key up CACHE_SPLICE_HITS times: it may then go to a socket from
 * the zone's file (cache_splice_ok says no before, yes after). */
static void hit_often(struct cache_store *s, struct pt_str key)
{
    struct cache_ref ref;
    struct cache_meta meta;

    for (int i = 0; i < CACHE_SPLICE_HITS; i++) {
        ck_assert_int_eq(cache_lookup(s, key, 0, &ref, &meta), CACHE_HIT);
        if (i == CACHE_SPLICE_HITS - 2)
            ck_assert_int_eq(cache_splice_ok(s, &ref), 0);
        if (i == CACHE_SPLICE_HITS - 1)
            ck_assert_int_eq(cache_splice_ok(s, &ref), 1);
        cache_release(s, &ref);
    }
}

/* Object n of len bytes stored under "GET http://x/<n>" and pinned in
 * *ref; where its first byte is. */
static const void *store_pinned(struct cache_store *s, int n, size_t len,
                                struct cache_ref *ref)
{
    struct cache_meta meta;
    const void *p = NULL;
    char k[64];
    int done;

    ck_assert_int_eq(store_object(s, key_of(k, 64, "GET http://x/", n), len, n),
                     PT_OK);
    hit_often(s, key_of(k, 64, "GET http://x/", n));
    ck_assert_int_eq(
        cache_lookup(s, key_of(k, 64, "GET http://x/", n), 0, ref, &meta),
        CACHE_HIT);
    cache_read(s, ref, 0, &p, &done);
    return p;
}

/* An object sent with sendfile from the zone's file (cache_store_file,
 * evio_send_file, once cache_splice_ok) reaches the receiver as it was
 * sent even when, before the receiver reads it, its entry is freed and
 * its blocks are filled with another object: the freed entry's pages
 * left the file, so the socket still holds the old ones. */
START_TEST(test_sent_pages_stay)
{
    struct cache_store *s = cache_store_new(MB);
    const size_t len = 3 * CACHE_SPLICE_MIN;
    struct cache_ref ref, ref2;
    struct evbuffer *out = evbuffer_new();
    unsigned char *want = malloc(len), *got = malloc(len);
    const void *first, *first2;
    struct cache_stats st;
    int fd, snd, rcv;
    size_t have = 0;
    char k[64];

    ck_assert_ptr_nonnull(s);
    fd = cache_store_file(s);
    ck_assert_int_ge(fd, 0);
    evio_send_file(s, cache_store_size(s), fd, CACHE_SPLICE_MIN);
    tcp_pair(&snd, &rcv, 4 * (int)len);

    first = store_pinned(s, 1, len, &ref);
    ck_assert_uint_ge(queue_object(s, &ref, out), CACHE_SPLICE_MIN);
    evbuffer_freeze(out, 1);
    ck_assert_uint_eq(evio_send_now(out, snd), 0); /* all in the socket */
    cache_release(s, &ref);
    ck_assert_int_eq(cache_purge(s, key_of(k, 64, "GET http://x/", 1)), 1);
    cache_store_stats(s, &st);
    ck_assert_uint_eq(st.entries, 0); /* punched, then freed */
    ck_assert_uint_eq(st.bytes_used, 0);

    /* the same blocks (the freed ones are taken first, in their order),
     * other bytes */
    first2 = store_pinned(s, 2, len, &ref2);
    ck_assert_ptr_eq(first2, first);
    {   /* and end to end as they were: one run, not one per block */
        struct evbuffer *b2 = evbuffer_new();
        ck_assert_uint_ge(queue_object(s, &ref2, b2), len);
        evbuffer_free(b2);
    }
    cache_release(s, &ref2);

    while (have < len) {
        ssize_t n = read(rcv, got + have, len - have);
        ck_assert_int_gt(n, 0);
        have += (size_t)n;
    }
    fill_bytes(want, len, 1);
    ck_assert(memcmp(got, want, len) == 0);
    ck_assert_int_eq(check_object(s, key_of(k, 64, "GET http://x/", 2), len, 2),
                     1);

    /* a full zone of objects that get punched when they go: each new
     * one evicts the oldest and is stored (an eviction punches at once) */
    for (int n = 10; n < 40; n++) {
        ck_assert_int_eq(store_object(s, key_of(k, 64, "GET http://y/", n),
                                      CACHE_SPLICE_MIN + 1000, n),
                         PT_OK);
        hit_often(s, key_of(k, 64, "GET http://y/", n));
    }
    for (int n = 35; n < 40; n++)
        ck_assert_int_eq(check_object(s, key_of(k, 64, "GET http://y/", n),
                                      CACHE_SPLICE_MIN + 1000, n),
                         1);
    cache_store_stats(s, &st);
    ck_assert_uint_gt(st.evictions, 0);

    evio_send_file(NULL, 0, -1, 0);
    close(snd);
    close(rcv);
    evbuffer_free(out);
    free(want);
    free(got);
    cache_store_free(&s);
}
END_TEST

/* Keys that differ in a byte or two, as URLs of one site do, spread
 * over the buckets: 4,000 of them in 8,192 buckets leave none with more
 * than a handful (about 5 for a random spread; all in one if the hash
 * ignored the bytes).  And all are found. */
START_TEST(test_keys_spread)
{
    struct cache_store *s = cache_store_new(64 * MB);
    char k[64];

    ck_assert_ptr_nonnull(s);
    for (int n = 0; n < 4000; n++)
        ck_assert_int_eq(
            store_object(s, key_of(k, 64, "GET http://example.com/p?id=", n),
                         10, n),
            PT_OK);
    ck_assert_uint_le(cache_store_longest_bucket(s), 10);
    for (int n = 0; n < 4000; n += 7)
        ck_assert_int_eq(
            check_object(s, key_of(k, 64, "GET http://example.com/p?id=", n),
                         10, n),
            1);
    cache_store_free(&s);
}
END_TEST

/* A fill that announces more than the zone can give takes what there
 * is, and when no block can be had at all (everything else pinned) its
 * append fails and the entry goes with all its blocks: the zone's use
 * is back to the pinned objects', and once they are let go a fill of
 * the same size succeeds. */
START_TEST(test_fill_without_room)
{
    struct cache_store *s = cache_store_new(MB);
    struct cache_ref pinned[64], ref;
    struct cache_meta meta = {.status = 200, .head_len = 10};
    const size_t big = 600 * 1024;
    unsigned char *data = calloc(1, big);
    struct cache_stats st;
    uint64_t held;
    int npinned = 0, rc = PT_OK;
    char k[64];

    ck_assert_ptr_nonnull(s);
    /* objects of 60 KB, each pinned, while they fit */
    for (int n = 0; n < 64; n++) {
        struct pt_str key = key_of(k, 64, "GET http://p/", n);
        if (store_object(s, key, 60 * 1024, n) != PT_OK)
            break;
        ck_assert_int_eq(cache_lookup(s, key, 0, &pinned[npinned], &meta),
                         CACHE_HIT);
        npinned++;
        cache_store_stats(s, &st);
        if (st.bytes_total - st.bytes_used < big)
            break; /* less room left than the big one wants */
    }
    ck_assert_int_gt(npinned, 2);
    cache_store_stats(s, &st);
    held = st.bytes_used;

    ck_assert_int_eq(cache_lookup(s, PT_STR("GET http://p/big"), 1, &ref,
                                  &meta),
                     CACHE_CLAIMED);
    cache_fill_expect(s, &ref, big);
    for (size_t off = 0; off < big && rc == PT_OK; off += 8192)
        rc = cache_fill_append(s, &ref, data + off, 8192, 64 * MB);
    ck_assert_int_eq(rc, PT_ERROR);
    cache_release(s, &ref);
    ck_assert_int_eq(cache_lookup(s, PT_STR("GET http://p/big"), 0, &ref,
                                  &meta),
                     CACHE_MISS);
    cache_store_stats(s, &st);
    ck_assert_uint_eq(st.bytes_used, held);

    for (int n = 0; n < npinned; n++)
        cache_release(s, &pinned[n]);
    ck_assert_int_eq(cache_lookup(s, PT_STR("GET http://p/big"), 1, &ref,
                                  &meta),
                     CACHE_CLAIMED);
    cache_fill_expect(s, &ref, big);
    for (size_t off = 0; off < big; off += 8192)
        ck_assert_int_eq(cache_fill_append(s, &ref, data + off, 8192, 64 * MB),
                         PT_OK);
    ck_assert_int_eq(cache_fill_done(s, &ref, &meta), PT_OK);
    cache_release(s, &ref);
    free(data);
    cache_store_free(&s);
}
END_TEST

/* The longest run of blocks end to end in key's object. */
static size_t longest_run(struct cache_store *s, struct pt_str key)
{
    struct evbuffer *b = evbuffer_new();
    struct cache_ref ref;
    struct cache_meta meta;
    size_t n;

    ck_assert_int_eq(cache_lookup(s, key, 0, &ref, &meta), CACHE_HIT);
    n = queue_object(s, &ref, b);
    cache_release(s, &ref);
    evbuffer_free(b);
    return n;
}

/* Four fills at once, appending in turns a few kilobytes each, as four
 * responses arriving together would: each body still lies in the zone
 * in long runs, so that it can go out with sendfile (cache_serve takes
 * runs of CACHE_SPLICE_MIN and more).  With the size announced
 * (cache_fill_expect), whole; without, in runs that double.  Blocks
 * taken and not filled go back when the fill is done. */
START_TEST(test_fills_side_by_side)
{
    struct cache_store *s = cache_store_new(8 * MB);
    const size_t len = 256 * 1024;
    struct cache_ref ref[4];
    struct cache_meta meta = {.status = 200, .head_len = 10};
    unsigned char *data[4];
    struct cache_stats st;
    char k[64];

    ck_assert_ptr_nonnull(s);
    for (int n = 0; n < 4; n++) {
        data[n] = malloc(len);
        fill_bytes(data[n], len, n);
        ck_assert_int_eq(cache_lookup(s, key_of(k, 64, "GET http://z/", n), 1,
                                      &ref[n], &meta),
                         CACHE_CLAIMED);
        /* 0 and 1 announce their size; 1 says twice what it sends */
        if (n < 2)
            cache_fill_expect(s, &ref[n], n == 0 ? len : 2 * len);
    }
    for (size_t off = 0; off < len;) {
        size_t step = PT_MIN(len - off, (size_t)(1000 + off % 3000));
        for (int n = 0; n < 4; n++)
            ck_assert_int_eq(
                cache_fill_append(s, &ref[n], data[n] + off, step, 64 * MB),
                PT_OK);
        off += step;
    }
    for (int n = 0; n < 4; n++) {
        meta.lifetime = n;
        ck_assert_int_eq(cache_fill_done(s, &ref[n], &meta), PT_OK);
        cache_release(s, &ref[n]);
    }
    for (int n = 0; n < 4; n++) {
        struct pt_str key = key_of(k, 64, "GET http://z/", n);
        ck_assert_int_eq(check_object(s, key, len, n), 1);
        /* the first block is shared with the key */
        if (n < 2)
            ck_assert_uint_ge(longest_run(s, key), len - CACHE_BLOCK);
        else
            ck_assert_uint_ge(longest_run(s, key), CACHE_SPLICE_MIN);
    }
    /* what 1 took for the second half it never sent went back */
    cache_store_stats(s, &st);
    ck_assert_uint_eq(st.bytes_used,
                      4 * ((strlen(k) + len + CACHE_BLOCK - 1) / CACHE_BLOCK) *
                          CACHE_BLOCK);
    for (int n = 0; n < 4; n++)
        free(data[n]);
    cache_store_free(&s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cache_store");
    TCase *tc = tcase_create("store");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fill_and_read);
    tcase_add_test(tc, test_sent_pages_stay);
    tcase_add_test(tc, test_fills_side_by_side);
    tcase_add_test(tc, test_keys_spread);
    tcase_add_test(tc, test_fill_without_room);
    tcase_add_test(tc, test_read_while_write_and_abort);
    tcase_add_test(tc, test_max_object_and_purge);
    tcase_add_test(tc, test_lru_eviction_and_pins);
    tcase_add_test(tc, test_processes_hammer);
    tcase_add_test(tc, test_killed_processes);
    tcase_add_test(tc, test_dead_pins_given_back);
    tcase_add_test(tc, test_forget_and_release);
    tcase_add_test(tc, test_ledger_full);
    tcase_add_test(tc, test_forget_after_repair);
    tcase_add_test(tc, test_kills_at_random);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
