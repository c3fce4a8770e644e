/*
 * check_route.c -- route_match: first match wins, exact and wildcard
 * hosts, ports and trailing dots ignored, path prefixes.
 */
#include <check.h>
#include <stdlib.h>

#include "route.h"

static struct conf_route routes[] = {
    {.host = "api.example.com", .path_prefix = "/v1"},
    {.host = "*.example.com", .path_prefix = "/"},
    {.host = NULL, .path_prefix = "/static"},
    {.host = "[::1]", .path_prefix = "/"},
    {.host = NULL, .path_prefix = "/"},
};

static struct conf cf = {.routes = routes,
                         .nroutes = sizeof(routes) / sizeof(routes[0])};

static int which(const char *host, const char *path)
{
    struct pt_str h = {host, strlen(host)}, p = {path, strlen(path)};
    const struct conf_route *r = route_match(&cf, h, p);
    return r ? (int)(r - routes) : -1;
}

START_TEST(test_first_match_wins)
{
    ck_assert_int_eq(which("api.example.com", "/v1/users"), 0);
    /* Same host, other path: falls through to the wildcard. */
    ck_assert_int_eq(which("api.example.com", "/v2"), 1);
    ck_assert_int_eq(which("other.org", "/static/app.js"), 2);
    ck_assert_int_eq(which("other.org", "/"), 4);
}
END_TEST

START_TEST(test_host_forms)
{
    ck_assert_int_eq(which("API.Example.COM", "/v1"), 0);
    ck_assert_int_eq(which("api.example.com:8080", "/v1"), 0);
    ck_assert_int_eq(which("api.example.com.", "/v1"), 0);
    ck_assert_int_eq(which("api.example.com.:443", "/v1"), 0);
    ck_assert_int_eq(which("[::1]:8080", "/x"), 3);
    ck_assert_int_eq(which("[::1]", "/x"), 3);
}
END_TEST

START_TEST(test_wildcard)
{
    ck_assert_int_eq(which("a.example.com", "/"), 1);
    ck_assert_int_eq(which("a.b.example.com", "/"), 1);
    /* "*.example.com" is for subdomains, not the apex or look-alikes. */
    ck_assert_int_eq(which("example.com", "/"), 4);
    ck_assert_int_eq(which("badexample.com", "/"), 4);
    ck_assert_int_eq(which(".example.com", "/"), 4);
}
END_TEST

START_TEST(test_no_match)
{
    struct conf empty = {0};
    struct pt_str h = PT_STR("x"), p = PT_STR("/");
    ck_assert_ptr_null(route_match(&empty, h, p));
    ck_assert_int_eq(which("other.org", "*"), -1);
}
END_TEST

START_TEST(test_header_dropped)
{
    char *remove[] = {"X-Powered-By"};
    struct conf_header set[] = {{"Cache-Control", "no-store"}};
    struct conf_header_ops ops = {set, 1, NULL, 0, remove, 1};
    struct conf_header_ops none = {0};

    ck_assert(route_header_dropped(&ops, PT_STR("x-powered-by")));
    ck_assert(route_header_dropped(&ops, PT_STR("CACHE-CONTROL")));
    ck_assert(!route_header_dropped(&ops, PT_STR("X-Powered")));
    ck_assert(!route_header_dropped(&none, PT_STR("X-Powered-By")));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("route");
    TCase *tc = tcase_create("match");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_first_match_wins);
    tcase_add_test(tc, test_host_forms);
    tcase_add_test(tc, test_wildcard);
    tcase_add_test(tc, test_no_match);
    tcase_add_test(tc, test_header_dropped);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
