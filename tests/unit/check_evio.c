/*
 * check_evio.c -- evio_recv and evio_send_now over a socketpair: bytes
 * land whole and in order, EOF and an empty socket are told apart, a
 * full socket leaves the rest queued, and a buffer kept frozen the way
 * a bufferevent keeps it is frozen again afterwards.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "evio.h"

static int sv[2];

static void pair_open(void)
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv),
                     0);
}

static void pair_close(void)
{
    close(sv[0]);
    close(sv[1]);
}

START_TEST(test_recv)
{
    struct evbuffer *in = evbuffer_new();
    size_t room = 0;
    char got[64];

    pair_open();
    evbuffer_add(in, "ab", 2);
    evbuffer_freeze(in, 0); /* as a bufferevent keeps its input */
    /* nothing there yet: -1, EAGAIN, nothing added */
    ck_assert_int_eq(evio_recv(in, sv[0], 4096, &room), -1);
    ck_assert(errno == EAGAIN || errno == EWOULDBLOCK);
    ck_assert_uint_eq(evbuffer_get_length(in), 2);
    ck_assert_int_eq(write(sv[1], "cdefgh", 6), 6);
    ck_assert_int_eq(evio_recv(in, sv[0], 4096, &room), 6);
    ck_assert_uint_ge(room, 4096);
    ck_assert_uint_eq(evbuffer_get_length(in), 8);
    ck_assert_int_eq(evbuffer_copyout(in, got, sizeof(got)), 8);
    ck_assert(memcmp(got, "abcdefgh", 8) == 0);
    /* frozen again: adding to the end fails */
    ck_assert_int_eq(evbuffer_add(in, "x", 1), -1);
    /* room: what the recv was offered, at least what was asked for */
    ck_assert_int_eq(write(sv[1], "0123456789", 10), 10);
    ssize_t n = evio_recv(in, sv[0], 4, &room);
    ck_assert_uint_ge(room, 4);
    ck_assert_int_eq(n, room < 10 ? (ssize_t)room : 10);
    close(sv[1]);
    while (evio_recv(in, sv[0], 4096, &room) > 0)
        ;
    ck_assert_int_eq(evio_recv(in, sv[0], 4096, &room), 0); /* EOF */
    ck_assert_uint_eq(evbuffer_get_length(in), 18);
    close(sv[0]);
    evbuffer_free(in);
}
END_TEST

START_TEST(test_send_now)
{
    struct evbuffer *out = evbuffer_new();
    char piece[3][100], got[400];
    size_t total = 0;

    pair_open();
    for (int i = 0; i < 3; i++) {
        memset(piece[i], 'a' + i, sizeof(piece[i]));
        /* three chains, sent with one sendmsg */
        evbuffer_add_reference(out, piece[i], sizeof(piece[i]), NULL, NULL);
    }
    evbuffer_freeze(out, 1); /* as a bufferevent keeps its output */
    ck_assert_uint_eq(evio_send_now(out, sv[0]), 0);
    ck_assert_int_eq(read(sv[1], got, sizeof(got)), 300);
    for (int i = 0; i < 300; i++)
        ck_assert_int_eq(got[i], 'a' + i / 100);
    ck_assert_int_eq(evbuffer_prepend(out, "x", 1), -1); /* frozen again */
    evbuffer_unfreeze(out, 1);

    /* more than the socket takes: the rest stays queued, in order */
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    char *big = malloc(1 << 20);
    for (size_t i = 0; i < (1u << 20); i++)
        big[i] = (char)(i * 7);
    evbuffer_add(out, big, 1 << 20);
    size_t left = evio_send_now(out, sv[0]);
    ck_assert_uint_gt(left, 0);
    ck_assert_uint_lt(left, 1u << 20);
    for (;;) {
        ssize_t n = read(sv[1], got, sizeof(got));
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            ck_assert_int_eq(got[i], (char)((total + (size_t)i) * 7));
        total += (size_t)n;
    }
    ck_assert_uint_eq(total + left, 1u << 20);
    free(big);
    pair_close();
    evbuffer_free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("evio");
    TCase *tc = tcase_create("evio");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_recv);
    tcase_add_test(tc, test_send_now);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
