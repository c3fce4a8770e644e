/*
 * portico.h -- base vocabulary shared by every module: return codes,
 * string views, small helpers.  Calls: nothing.
 */
#ifndef PORTICO_H
#define PORTICO_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* The small set of return codes every module speaks. */
enum {
    PT_OK = 0,
    PT_ERROR = -1, /* bad input or failure; the caller decides the outcome */
    PT_AGAIN = -2, /* need more bytes / try later */
};

/* A borrowed view of bytes; never NUL-terminated unless stated. */
struct pt_str {
    const char *p;
    size_t len;
};

#define PT_STR(lit) ((struct pt_str){(lit), sizeof(lit) - 1})

/* A view of a NUL-terminated string. */
static inline struct pt_str pt_str_c(const char *s)
{
    return (struct pt_str){s, strlen(s)};
}
/* A string literal and its length, as two arguments: f(buf, PT_LIT("x")) */
#define PT_LIT(lit) (lit), (sizeof(lit) - 1)
#define PT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PT_MAX(a, b) ((a) > (b) ? (a) : (b))

/*
 * Eight bytes at a time.  pt_word: the 8 bytes at p.  pt_below(x, n), n
 * from 1 to 128: non-zero when some byte of x is below n.  Below the
 * lowest such byte nothing borrows, so that byte's bit 7 is set in
 * x - n*0x01..; a byte of 0x80 or more is masked out by ~x; higher bytes
 * may show borrows, so the value says "some", not which.
 */
static inline uint64_t pt_word(const void *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

static inline uint64_t pt_below(uint64_t x, unsigned n)
{
    const uint64_t ones = 0x0101010101010101ull;
    return (x - ones * n) & ~x & (ones << 7);
}

/* Eight bytes lower-cased at once: a byte gets 0x20 added when it is
 * 'A'..'Z'.  In each byte's low seven bits, adding 0x3f carries into
 * bit 7 from 'A' (0x41) up, adding 0x25 from past 'Z' (0x5a) up; bytes
 * with bit 7 set are not ASCII and stay as they are.  No carry crosses
 * a byte: each low-seven-bit sum stays under 0x100. */
static inline uint64_t pt_lower8(uint64_t x)
{
    const uint64_t low7 = 0x7f7f7f7f7f7f7f7full, high = 0x8080808080808080ull;
    uint64_t b = x & low7;
    uint64_t upper =
        ((b + 0x3f3f3f3f3f3f3f3full) ^ (b + 0x2525252525252525ull)) & ~x &
        high;

    return x | (upper >> 2);
}

/* Milliseconds of clock id: CLOCK_MONOTONIC, or CLOCK_MONOTONIC_COARSE
 * (a tick, ~4 ms, at most behind; cheaper) where that is close enough. */
static inline uint64_t pt_clock_ms(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A duration in milliseconds as libevent takes it. */
static inline struct timeval pt_tv(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static inline char pt_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive ASCII comparison of n bytes (util.c): eight a turn. */
int pt_mem_ieq(const char *a, const char *b, size_t n);

/* Case-insensitive ASCII comparison of a view against a C string.
 * Always inline: with a literal (the usual caller: a field name) the
 * length is a constant, most calls end at the length check, and a name
 * of 8 to 16 bytes is two words whose lower-cased forms are constants.
 * Out of line, strlen would run at every call. */
static inline __attribute__((always_inline)) int pt_str_ieq(struct pt_str s,
                                                            const char *lit)
{
    size_t n = __builtin_strlen(lit);

    if (s.len != n)
        return 0;
    if (__builtin_constant_p(n) && n >= 8 && n <= 16)
        return pt_lower8(pt_word(s.p)) == pt_lower8(pt_word(lit)) &&
               pt_lower8(pt_word(s.p + n - 8)) ==
                   pt_lower8(pt_word(lit + n - 8));
    return pt_mem_ieq(s.p, lit, n);
}

/* Case-sensitive comparison of a view against a C string. */
static inline int pt_str_eq(struct pt_str s, const char *lit)
{
    size_t n = __builtin_strlen(lit);

    /* memcmp with a NULL view is undefined even for 0 bytes */
    return s.len == n && (n == 0 || __builtin_memcmp(s.p, lit, n) == 0);
}

#endif
