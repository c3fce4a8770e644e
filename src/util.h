/*
 * util.h -- value parsers shared by the config loader and the daemon:
 * sizes, durations, numeric socket addresses.  Layer 0.  Calls: libc only.
 */
#ifndef PORTICO_UTIL_H
#define PORTICO_UTIL_H

#include <stdint.h>
#include <sys/socket.h>

#include "portico.h"

/*
 * "16k", "10m", "1g", "512" (bytes; k/m/g are powers of 1024, either case).
 * Returns PT_OK and sets *out, or PT_ERROR on syntax or overflow.
 */
int pt_parse_size(const char *s, uint64_t *out);

/*
 * "250ms", "10s", "5m", "1h" (a bare number means seconds).  Result in
 * milliseconds.  Returns PT_OK or PT_ERROR on syntax or overflow.
 */
int pt_parse_duration(const char *s, uint64_t *out_ms);

/*
 * Numeric "A.B.C.D:port" or "[v6]:port" (port 0..65535; 0 = any port).
 * Returns PT_OK or PT_ERROR; *why gets a static reason on error.
 */
int pt_parse_addr(const char *s, struct sockaddr_storage *ss,
                  socklen_t *len, const char **why);

/*
 * Inverse of pt_parse_size / pt_parse_duration, in the largest exact unit:
 * 16384 -> "16k", 90000 ms -> "90s", 0 -> "0" / "0s".  Writes into buf
 * (32 bytes is always enough) and returns buf.
 */
const char *pt_format_size(uint64_t bytes, char *buf, size_t buflen);
const char *pt_format_duration(uint64_t ms, char *buf, size_t buflen);

/*
 * Allocation for the config loader, where running out of memory is
 * fatal (a config is small): these abort with a message instead of
 * returning NULL.  calloc of 0 elements still returns a pointer.
 */
/* Say so on stderr and abort. */
void pt_oom(void) __attribute__((noreturn));
void *pt_xcalloc(size_t n, size_t size);
char *pt_xmemdup(const char *s, size_t len); /* plus a NUL */
char *pt_xstrdup(const char *s);

/* Format a socket address as "A.B.C.D:port" / "[v6]:port" into buf. */
const char *pt_addr_format(const struct sockaddr *sa, char *buf,
                           size_t buflen);

#endif
