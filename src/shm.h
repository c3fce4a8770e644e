/*
 * shm.h -- the shared-memory zone the master maps before forking, so
 * every worker sees the same state.  For now it holds the health of each
 * upstream server; the cache and the counters come next.  Layer 3.
 * Calls: libc only.  Lock-free: every field is a C11 atomic, so a worker
 * killed at any moment leaves nothing locked and nothing half-written
 * that matters.
 */
#ifndef PORTICO_SHM_H
#define PORTICO_SHM_H

#include <stdatomic.h>
#include <stdint.h>

#include "conf.h"

/* The health of one server of one upstream group, shared by all. */
struct shm_health {
    char key[160];                 /* "group\0address"; empty = free */
    _Atomic uint64_t down_until;   /* passive: skipped until (monotonic ms) */
    _Atomic uint64_t fail_start;   /* passive: first failure of the window */
    _Atomic uint32_t fails;        /* passive: failures in the window */
    _Atomic uint32_t active_down;  /* active checks say it is down */
};

/* A session-ticket key: the name is sent in the ticket, the AES key
 * seals it, the HMAC key signs it. */
struct shm_ticket_key {
    uint8_t name[16];
    uint8_t aes[32];
    uint8_t hmac[32];
};

#define SHM_TICKET_KEYS 3

/* A shared anonymous mapping of size bytes, zeroed; NULL on failure. */
void *shm_map(size_t size);
/* FNV-1a over key: the slot tables' hash. */
uint32_t shm_hash(const char *key, size_t len);

/* Map the zone (master, before the first fork).  Returns PT_OK or
 * PT_ERROR with errno set.  The mapping is inherited by every worker and
 * kept across reloads, so health survives them. */
int shm_init(void);

/*
 * The master, before a generation reaches the workers: give every server
 * of conf a slot (kept when it exists).  Returns the number of servers
 * that found no free slot (their health stays per worker).
 */
size_t shm_health_register(const struct conf *conf);

/*
 * The ticket keys, shared by every worker so a session resumes anywhere:
 * keys[*current] seals new tickets, the others still open tickets sealed
 * before the last rotations.  NULL when there is no zone.
 */
const struct shm_ticket_key *shm_ticket_keys(unsigned *current);
/* The master, now and then: a fresh key takes over sealing; the oldest
 * is forgotten. */
void shm_ticket_rotate(void);

/* The slot of a server, or NULL (no zone, or not registered). */
struct shm_health *shm_health_find(const char *group, const char *address);

#endif
