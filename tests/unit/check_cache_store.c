/*
 * check_cache_store.c -- the shared-memory store: fill and read back,
 * read-while-write, abort, LRU eviction order, pins that block eviction,
 * max_object, purges, several processes hammering one zone, and processes
 * killed mid-fill or while holding the lock.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache_store.h"

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

int main(void)
{
    Suite *s = suite_create("cache_store");
    TCase *tc = tcase_create("store");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fill_and_read);
    tcase_add_test(tc, test_read_while_write_and_abort);
    tcase_add_test(tc, test_max_object_and_purge);
    tcase_add_test(tc, test_lru_eviction_and_pins);
    tcase_add_test(tc, test_processes_hammer);
    tcase_add_test(tc, test_killed_processes);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
