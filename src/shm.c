/*
 * shm.c -- the shared-memory zone: an open-addressing table of server
 * health slots.  Only the master inserts (before the workers learn the
 * generation that needs the slot); workers only look up and update
 * atomics, so no lock is ever held across processes.
 * Calls: libc only.
 */
#include "shm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#define SHM_MAGIC 0x70747368u /* "ptsh" */
#define SHM_HEALTH_SLOTS 4096

struct shm_zone {
    uint32_t magic;
    uint32_t nslots;
    /* Rotation writes the slot after the current one, which no worker
     * uses since it was retired two rotations ago, then moves current. */
    _Atomic uint32_t ticket_current;
    struct shm_ticket_key tickets[SHM_TICKET_KEYS];
    struct shm_health health[SHM_HEALTH_SLOTS];
};

static struct shm_zone *zone;

static int shm_random(void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = getrandom((char *)buf + got, len - got, 0);
        if (n < 0 && errno != EINTR)
            return PT_ERROR;
        if (n > 0)
            got += (size_t)n;
    }
    return PT_OK;
}

void *shm_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    return p == MAP_FAILED ? NULL : p;
}

int shm_init(void)
{
    zone = shm_map(sizeof(*zone));
    if (zone == NULL)
        return PT_ERROR;
    zone->magic = SHM_MAGIC;
    zone->nslots = SHM_HEALTH_SLOTS;
    for (unsigned i = 0; i < SHM_TICKET_KEYS; i++)
        if (shm_random(&zone->tickets[i], sizeof(zone->tickets[i])) < 0)
            return PT_ERROR;
    return PT_OK;
}

const struct shm_ticket_key *shm_ticket_keys(unsigned *current)
{
    if (zone == NULL)
        return NULL;
    *current = atomic_load(&zone->ticket_current) % SHM_TICKET_KEYS;
    return zone->tickets;
}

void shm_ticket_rotate(void)
{
    uint32_t next;

    if (zone == NULL)
        return;
    next = (atomic_load(&zone->ticket_current) + 1) % SHM_TICKET_KEYS;
    if (shm_random(&zone->tickets[next], sizeof(zone->tickets[next])) == 0)
        atomic_store(&zone->ticket_current, next);
}

/* "group\0address" into key; returns its length, or 0 when too long. */
static size_t shm_key(char *key, const char *group, const char *address)
{
    size_t g = strlen(group), a = strlen(address);

    if (g + 1 + a + 1 > sizeof(((struct shm_health *)0)->key))
        return 0;
    memcpy(key, group, g + 1);
    memcpy(key + g + 1, address, a + 1);
    return g + 1 + a;
}

uint32_t shm_hash(const char *key, size_t len)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 16777619u;
    }
    return h;
}

/* The slot holding key, or with insert the free slot where it goes. */
static struct shm_health *shm_probe(const char *key, size_t len, int insert)
{
    uint32_t h = shm_hash(key, len);

    for (uint32_t i = 0; i < zone->nslots; i++) {
        struct shm_health *s = &zone->health[(h + i) % zone->nslots];
        if (s->key[0] == '\0')
            return insert ? s : NULL;
        if (memcmp(s->key, key, len + 1) == 0)
            return s;
    }
    return NULL;
}

size_t shm_health_register(const struct conf *conf)
{
    size_t missing = 0;
    char key[160];

    for (size_t i = 0; zone && i < conf->nupstreams; i++) {
        const struct conf_upstream *u = &conf->upstreams[i];
        for (size_t k = 0; k < u->nservers; k++) {
            size_t len = shm_key(key, u->name, u->servers[k].address);
            struct shm_health *s = len ? shm_probe(key, len, 1) : NULL;
            if (s == NULL) {
                missing++;
                continue;
            }
            if (s->key[0] == '\0')
                memcpy(s->key, key, len + 1);
            /* Without active checks nothing would ever bring it back. */
            if (!u->health_check.enabled)
                atomic_store(&s->active_down, 0);
        }
    }
    return missing;
}

struct shm_health *shm_health_find(const char *group, const char *address)
{
    char key[160];
    size_t len;

    if (zone == NULL)
        return NULL;
    len = shm_key(key, group, address);
    return len ? shm_probe(key, len, 0) : NULL;
}
