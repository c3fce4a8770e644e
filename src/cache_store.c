/*
 * cache_store.c -- the cache's shared-memory zone.
 *
 *   header | buckets[nbuckets] | entries[nentries] | pins[npin_slots] |
 *   next[nblocks] | blocks[nblocks][CACHE_BLOCK]
 *
 * Everything is sized from cache.size so the zone never grows.  Indexes
 * (uint32_t, NIL for none) link buckets, the LRU list, free lists and
 * block chains; there are no pointers in the zone.  One robust,
 * process-shared mutex guards the metadata; it is held for a few list
 * operations at a time, never while bytes are copied.  Body bytes are
 * written by the one filler and read by pinned readers without the lock:
 * `length` is published (release) only after the bytes and the chain
 * below it are in place.
 *
 * Entries are the truth.  If a process dies holding the lock, the next
 * locker rebuilds buckets, LRU and free lists from the entries' states
 * and block chains (store_repair), and drops entries whose filler died.
 *
 * Pins are counted per entry (refs) and, beside that, per process in the
 * pin ledger: records {pid, entry, version, count} in an open-addressed
 * table keyed by (pid, entry), updated under the lock wherever the calling
 * process pins or unpins.  When a process is gone, cache_store_forget
 * gives back what the ledger says it held, so an entry a killed worker was
 * serving can be evicted again and a purged one is freed.  The rule that
 * keeps it safe: a record's count never exceeds the pins that process
 * really holds on that entry; it may fall short (those pins stay lost, as
 * all were before), it is never over (nothing is given back twice or
 * taken from a living holder).  Hence: refs goes up before the record and
 * the record goes down before refs, so a process killed between the two
 * leaves it short; a pin taken while the ledger is full is not recorded
 * (pins_untracked); a dead filler's own pin, dropped by whoever finds its
 * fill orphaned, comes off its record too.  store_repair checks the
 * ledger against the entries and rebuilds it.
 *
 * Calls: libc, pthreads.
 */
#include "cache_store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#define NIL 0xffffffffu
#define STORE_MAGIC 0x70746373u /* "ptcs" */

/* E_PUNCH: unlinked and unpinned, its blocks being punched out of the
 * zone's file by `filler` without the lock, which frees it next
 * (entry_free, store_unlock). */
enum entry_state { E_FREE, E_FILLING, E_READY, E_DEAD, E_PUNCH };

struct entry {
    uint64_t hash;
    uint32_t hnext;            /* bucket chain */
    uint32_t lru_prev, lru_next;
    uint32_t first, last;      /* block chain */
    uint32_t nblocks;          /* in the chain, a fill's reserve too */
    uint32_t wblock, wn;       /* filling: the block of the last byte,
                                  and how many blocks up to it */
    uint64_t expect;           /* filling: the bytes announced, or 0 */
    uint32_t refs;             /* pins; under the lock */
    uint32_t key_len;
    int32_t filler;            /* pid filling it */
    uint64_t tick;             /* last use, for LRU order on repair */
    _Atomic uint32_t state;
    _Atomic uint32_t version;  /* bumped when the slot is freed */
    _Atomic uint64_t length;   /* caller bytes written so far */
    _Atomic uint64_t waiters;  /* worker slots reading along (bit each) */
    _Atomic uint32_t head_len; /* the head's bytes, once stored; 0 before */
    _Atomic uint32_t hits;     /* lookups that found it complete */
    _Atomic uint32_t spliced;  /* sent from the file: punch when freed */
    struct cache_meta meta;
};

/* One ledger record: pid holds count pins on entry (at version).  A
 * slot is empty while pid is 0; pid is written last and cleared first. */
struct pin {
    int32_t pid;
    uint32_t entry;
    uint32_t version;
    uint32_t count;
};

/* Ledger slots: a power of two, about one per entry, within these bounds;
 * at most three quarters of them are used (short probes). */
#define PIN_SLOTS_MIN 1024u
#define PIN_SLOTS_MAX (1u << 18)

struct cache_store {
    uint32_t magic;
    uint64_t size;
    uint32_t nblocks, nentries, nbuckets, npin_slots;
    pthread_mutex_t lock;
    uint32_t lru_head, lru_tail; /* head: most recently used */
    uint32_t free_block, free_entry;
    uint32_t used_blocks, used_entries;
    uint32_t used_pins;          /* ledger records */
    uint64_t seed;               /* of key_hash: random per zone */
    uint64_t tick, evictions, repairs;
    uint64_t pins_untracked;     /* pins taken while the ledger was full */
    uint64_t pins_returned;      /* given back by cache_store_forget */
    uint64_t off_buckets, off_entries, off_pins, off_next, off_blocks;
    int fd;                      /* the zone's memfd, or -1 */
    _Atomic unsigned splice_off; /* a punch failed: stop sendfile */
};

/* ---- layout ---- */

static uint32_t *buckets(struct cache_store *s)
{
    return (uint32_t *)((char *)s + s->off_buckets);
}

static struct entry *entries(struct cache_store *s)
{
    return (struct entry *)((char *)s + s->off_entries);
}

static struct pin *pins(struct cache_store *s)
{
    return (struct pin *)((char *)s + s->off_pins);
}

static uint32_t *next_of(struct cache_store *s)
{
    return (uint32_t *)((char *)s + s->off_next);
}

static char *block(struct cache_store *s, uint32_t b)
{
    return (char *)s + s->off_blocks + (uint64_t)b * CACHE_BLOCK;
}

static uint64_t align64(uint64_t v)
{
    return (v + 63) & ~(uint64_t)63;
}

static uint32_t pin_slots_for(uint32_t nentries)
{
    uint32_t np = PIN_SLOTS_MIN;

    while (np < nentries && np < PIN_SLOTS_MAX)
        np <<= 1;
    return np;
}

/* How many blocks fit in size with their share of entries, buckets and
 * ledger: one entry for every two blocks, a bucket per entry, a ledger
 * slot per entry (PIN_SLOTS_MIN..PIN_SLOTS_MAX). */
static void store_layout(struct cache_store *s, uint64_t size)
{
    uint64_t per = CACHE_BLOCK + sizeof(uint32_t) +
                   (sizeof(struct entry) + 2 * sizeof(uint32_t)) / 2 + 1;
    uint64_t n = (size - align64(sizeof(*s)) - 5 * 64) / per;
    /* the ledger for that many: no more than it takes for fewer */
    uint64_t ledger = (uint64_t)pin_slots_for((uint32_t)(n / 2 + 1)) *
                      sizeof(struct pin);

    n = (size - align64(sizeof(*s)) - 5 * 64 - ledger) / per;
    for (;; n--) {
        uint32_t ne = (uint32_t)(n / 2 + 1), nb = 1, np = pin_slots_for(ne);
        while (nb < ne)
            nb <<= 1;
        s->nblocks = (uint32_t)n;
        s->nentries = ne;
        s->nbuckets = nb;
        s->npin_slots = np;
        s->off_buckets = align64(sizeof(*s));
        s->off_entries = align64(s->off_buckets + (uint64_t)nb * 4);
        s->off_pins = align64(s->off_entries + (uint64_t)ne * sizeof(struct entry));
        s->off_next = align64(s->off_pins + (uint64_t)np * sizeof(struct pin));
        /* blocks are whole pages of the zone's file (entry_punch) */
        s->off_blocks = (s->off_next + n * 4 + CACHE_BLOCK - 1) &
                        ~(uint64_t)(CACHE_BLOCK - 1);
        if (s->off_blocks + n * CACHE_BLOCK <= size)
            return;
    }
}

static void store_reset_lists(struct cache_store *s)
{
    uint32_t *bk = buckets(s), *nx = next_of(s);
    struct entry *e = entries(s);

    for (uint32_t i = 0; i < s->nbuckets; i++)
        bk[i] = NIL;
    for (uint32_t i = 0; i < s->nblocks; i++)
        nx[i] = i + 1 < s->nblocks ? i + 1 : NIL;
    for (uint32_t i = 0; i < s->nentries; i++) {
        atomic_store(&e[i].state, E_FREE);
        e[i].hnext = i + 1 < s->nentries ? i + 1 : NIL; /* free list */
    }
    s->free_block = s->nblocks ? 0 : NIL;
    s->free_entry = 0;
    s->lru_head = s->lru_tail = NIL;
    s->used_blocks = s->used_entries = 0;
    memset(pins(s), 0, (size_t)s->npin_slots * sizeof(struct pin));
    s->used_pins = 0;
}

/* Blocks [b, b + n) out of the zone's file: their pages go (to be freed
 * once nothing else holds them) and the next write there faults in a
 * fresh one.  0 or -1 with errno. */
static int blocks_punch(struct cache_store *s, uint32_t b, uint32_t n)
{
    return fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                     (off_t)(s->off_blocks + (uint64_t)b * CACHE_BLOCK),
                     (off_t)n * CACHE_BLOCK);
}

/* A memfd of size bytes to map the zone from, or -1 for an anonymous
 * mapping (cache_store_file). */
static int store_memfd(uint64_t size)
{
    int fd;

    if (sysconf(_SC_PAGESIZE) != CACHE_BLOCK)
        return -1;
    fd = memfd_create("porticod-cache", MFD_CLOEXEC);
    if (fd >= 0 && ftruncate(fd, (off_t)size) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

struct cache_store *cache_store_new(uint64_t size)
{
    pthread_mutexattr_t a;
    struct cache_store *s;
    int fd;

    if (size < 1024 * 1024) {
        errno = EINVAL;
        return NULL;
    }
    fd = store_memfd(size);
    s = mmap(NULL, size, PROT_READ | PROT_WRITE,
             fd >= 0 ? MAP_SHARED : MAP_SHARED | MAP_ANONYMOUS, fd, 0);
    if (s == MAP_FAILED) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        errno = e;
        return NULL;
    }
    s->magic = STORE_MAGIC;
    s->size = size;
    /* a seed nobody outside knows: keys chosen to share a bucket cannot
     * be worked out in advance (without it, 0x9e37...) */
    if (getrandom(&s->seed, sizeof(s->seed), GRND_NONBLOCK) !=
        sizeof(s->seed))
        s->seed = 0x9e3779b97f4a7c15ull;
    store_layout(s, size);
    s->fd = fd;
    atomic_init(&s->splice_off, 0);
    if (fd >= 0 && s->nblocks > 0 && blocks_punch(s, 0, 1) < 0) {
        close(fd); /* the mapping stays */
        s->fd = -1;
    }
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&s->lock, &a);
    pthread_mutexattr_destroy(&a);
    store_reset_lists(s);
    return s;
}

void cache_store_free(struct cache_store **sp)
{
    if (*sp) {
        if ((*sp)->fd >= 0)
            close((*sp)->fd);
        munmap(*sp, (*sp)->size);
    }
    *sp = NULL;
}

uint64_t cache_store_size(const struct cache_store *s)
{
    return s->size;
}

int cache_store_file(const struct cache_store *s)
{
    return s->fd;
}

static struct entry *ref_entry(struct cache_store *s,
                               const struct cache_ref *ref);

int cache_splice_ok(struct cache_store *s, const struct cache_ref *ref)
{
    struct entry *e = ref_entry(s, ref);

    if (e == NULL || s->fd < 0 || atomic_load(&s->splice_off) ||
        atomic_load_explicit(&e->hits, memory_order_relaxed) <
            CACHE_SPLICE_HITS)
        return 0;
    if (!atomic_load_explicit(&e->spliced, memory_order_relaxed))
        atomic_store(&e->spliced, 1); /* before any byte goes */
    return 1;
}

/* ---- lists (lock held) ---- */

static void lru_unlink(struct cache_store *s, uint32_t i)
{
    struct entry *e = entries(s);

    if (e[i].lru_prev != NIL)
        e[e[i].lru_prev].lru_next = e[i].lru_next;
    else
        s->lru_head = e[i].lru_next;
    if (e[i].lru_next != NIL)
        e[e[i].lru_next].lru_prev = e[i].lru_prev;
    else
        s->lru_tail = e[i].lru_prev;
    e[i].lru_prev = e[i].lru_next = NIL;
}

static void lru_push(struct cache_store *s, uint32_t i)
{
    struct entry *e = entries(s);

    e[i].lru_prev = NIL;
    e[i].lru_next = s->lru_head;
    if (s->lru_head != NIL)
        e[s->lru_head].lru_prev = i;
    s->lru_head = i;
    if (s->lru_tail == NIL)
        s->lru_tail = i;
    e[i].tick = ++s->tick;
}

static void bucket_unlink(struct cache_store *s, uint32_t i)
{
    struct entry *e = entries(s);
    uint32_t *p = &buckets(s)[e[i].hash & (s->nbuckets - 1)];

    while (*p != NIL && *p != i)
        p = &e[*p].hnext;
    if (*p == i)
        *p = e[i].hnext;
    e[i].hnext = NIL;
}

/* ---- the pin ledger (lock held) ---- */

/* This process's pid, asked once per process (a fork child asks again). */
static pid_t self_pid;
static pthread_once_t self_once = PTHREAD_ONCE_INIT;

static void self_forget(void)
{
    self_pid = 0;
}

static void self_register(void)
{
    pthread_atfork(NULL, NULL, self_forget);
}

static int32_t self(void)
{
    if (self_pid == 0) {
        pthread_once(&self_once, self_register);
        self_pid = getpid();
    }
    return (int32_t)self_pid;
}

/* Stores to the zone in program order: a process killed between two of
 * them leaves the first done and not the second (see the rule above). */
static void zone_order(void)
{
    atomic_signal_fence(memory_order_seq_cst);
}

static uint32_t pin_home(const struct cache_store *s, int32_t pid,
                         uint32_t entry)
{
    uint64_t k = ((uint64_t)(uint32_t)pid << 32 | entry) *
                 0x9e3779b97f4a7c15ull;
    return (uint32_t)(k >> 32) & (s->npin_slots - 1);
}

/* The slot of (pid, entry)'s record, or NIL. */
static uint32_t pin_find(struct cache_store *s, int32_t pid, uint32_t entry)
{
    struct pin *pl = pins(s);
    uint32_t mask = s->npin_slots - 1;

    for (uint32_t k = pin_home(s, pid, entry);; k = (k + 1) & mask) {
        if (pl[k].pid == 0)
            return NIL;
        if (pl[k].pid == pid && pl[k].entry == entry)
            return k;
    }
}

/* Fill the empty slot k with a record: its key last. */
static void pin_put(struct cache_store *s, uint32_t k, int32_t pid,
                    uint32_t entry, uint32_t version, uint32_t count)
{
    struct pin *p = &pins(s)[k];

    p->entry = entry;
    p->version = version;
    p->count = count;
    zone_order();
    p->pid = pid;
}

/* Empty slot k, moving the records after it back so that every record
 * stays reachable from its home slot (no tombstones).  A record being
 * moved is in both slots for a moment, never in neither. */
static void pin_remove(struct cache_store *s, uint32_t k)
{
    struct pin *pl = pins(s);
    uint32_t mask = s->npin_slots - 1;

    pl[k].pid = 0;
    zone_order();
    s->used_pins--;
    for (uint32_t j = (k + 1) & mask; pl[j].pid != 0; j = (j + 1) & mask) {
        uint32_t home = pin_home(s, pl[j].pid, pl[j].entry);
        /* j may move to the hole k when its home is not in (k, j]. */
        if (((j - home) & mask) < ((j - k) & mask))
            continue;
        pin_put(s, k, pl[j].pid, pl[j].entry, pl[j].version, pl[j].count);
        zone_order();
        pl[j].pid = 0;
        zone_order();
        k = j;
    }
}

/* pid took one more pin on entry i (refs already counts it). */
static void pin_add(struct cache_store *s, int32_t pid, uint32_t i)
{
    uint32_t version = atomic_load(&entries(s)[i].version);
    uint32_t k = pin_find(s, pid, i);
    struct pin *pl = pins(s);

    zone_order(); /* refs first */
    if (k != NIL) {
        if (pl[k].version != version) {
            /* left over from the slot's previous life: no pins of now */
            pl[k].count = 0;
            pl[k].version = version;
        }
        pl[k].count++;
        return;
    }
    if (s->used_pins >= s->npin_slots - s->npin_slots / 4) {
        s->pins_untracked++; /* given back by nobody if pid dies */
        return;
    }
    k = pin_home(s, pid, i);
    while (pl[k].pid != 0)
        k = (k + 1) & (s->npin_slots - 1);
    pin_put(s, k, pid, i, version, 1);
    s->used_pins++;
}

/* pid gives up n pins on entry i: off its record (before refs). */
static void pin_drop(struct cache_store *s, int32_t pid, uint32_t i,
                     uint32_t n)
{
    uint32_t k = pin_find(s, pid, i);
    struct pin *pl = pins(s);

    if (k == NIL)
        return; /* untracked */
    if (pl[k].version != atomic_load(&entries(s)[i].version) ||
        pl[k].count <= n)
        pin_remove(s, k);
    else
        pl[k].count -= n;
    zone_order();
}

/* Entry i's blocks out of the zone's file, if it is big enough to have
 * gone to a socket from there (cache_store_file): runs of blocks that lie
 * end to end, one punch each. */
static void entry_punch(struct cache_store *s, uint32_t i)
{
    struct entry *e = &entries(s)[i];
    uint32_t *nx = next_of(s), b = e->first, n = e->nblocks;

    if (s->fd < 0 || !atomic_load(&e->spliced))
        return;
    while (n > 0 && b != NIL) {
        uint32_t run = b, len = 0;
        do {
            b = nx[b];
            len++;
            n--;
        } while (n > 0 && b == run + len);
        if (blocks_punch(s, run, len) < 0)
            atomic_store(&s->splice_off, 1);
    }
}

/* Up to n blocks of the chain from b onto the free list, whole and in
 * their order, so that the next fill takes them in that order: end to
 * end in the zone as they were, one run to send (cache_serve), not one
 * per block. */
static void chain_free(struct cache_store *s, uint32_t b, uint32_t n)
{
    uint32_t *nx = next_of(s), last = b, k = 1;

    if (n == 0 || b == NIL)
        return;
    while (k < n && nx[last] != NIL) {
        last = nx[last];
        k++;
    }
    nx[last] = s->free_block;
    s->free_block = b;
    s->used_blocks -= k;
}

/* Entries this process made E_PUNCH while it held the lock, to punch
 * once it lets go (store_unlock).  More in one hold are punched at once. */
#define PUNCH_LATER 64
static uint32_t punch_later[PUNCH_LATER];
static unsigned punch_later_n;

/* Give back an entry nobody pins and nobody can find any more.  One that
 * may have gone to a socket from the zone's file is punched first; unless
 * its blocks are wanted `now` (eviction), it is only marked, and punched
 * and freed once the lock is let go (store_unlock): a punch takes tens of
 * microseconds, long to hold every worker's lookups. */
static void entry_free(struct cache_store *s, uint32_t i, int now)
{
    struct entry *e = &entries(s)[i];
    uint32_t b = e->first;

    if (s->fd >= 0 && atomic_load(&e->spliced) &&
        atomic_load(&e->state) != E_PUNCH) {
        if (!now && punch_later_n < PUNCH_LATER) {
            atomic_store(&e->state, E_PUNCH);
            e->filler = self();
            punch_later[punch_later_n++] = i;
            return;
        }
        entry_punch(s, i);
    }
    chain_free(s, b, e->nblocks);
    e->first = e->last = NIL;
    e->nblocks = 0;
    atomic_store(&e->state, E_FREE);
    atomic_fetch_add(&e->version, 1);
    e->hnext = s->free_entry;
    s->free_entry = i;
    s->used_entries--;
}

/* Findable no more; freed now or by the last reader's release (now:
 * entry_free). */
static void entry_kill(struct cache_store *s, uint32_t i, int now)
{
    struct entry *e = &entries(s)[i];
    uint32_t st = atomic_load(&e->state);

    if (st != E_FILLING && st != E_READY)
        return; /* already unlinked */
    bucket_unlink(s, i);
    lru_unlink(s, i);
    atomic_store(&e->state, E_DEAD);
    if (e->refs == 0)
        entry_free(s, i, now);
}

/* Entry i's filler died mid-fill: nobody will finish it, and the pin the
 * filler held (since store_claim) goes, off its ledger record too, so
 * that cache_store_forget does not give it back again. */
static void drop_filler(struct cache_store *s, uint32_t i)
{
    struct entry *e = &entries(s)[i];

    if (e->refs) {
        pin_drop(s, e->filler, i, 1);
        e->refs--;
    }
    entry_kill(s, i, 0);
}

/* The least recently used entry that is complete and unpinned goes. */
static int store_evict(struct cache_store *s)
{
    struct entry *e = entries(s);

    for (uint32_t i = s->lru_tail; i != NIL; i = e[i].lru_prev) {
        if (e[i].refs == 0 && atomic_load(&e[i].state) == E_READY) {
            entry_kill(s, i, 1); /* its blocks are wanted now */
            s->evictions++;
            return 1;
        }
    }
    return 0;
}

static uint32_t block_alloc(struct cache_store *s)
{
    uint32_t b;

    while (s->free_block == NIL)
        if (!store_evict(s))
            return NIL;
    b = s->free_block;
    s->free_block = next_of(s)[b];
    next_of(s)[b] = NIL;
    s->used_blocks++;
    return b;
}

/* Blocks a fill takes at most at once (1 MB): the lock is held for
 * each, and a fill that dies leaves no more than this unused. */
#define FILL_RESERVE_MAX 256u

/*
 * Entry e's fill has filled its last block, with n more bytes to write
 * after the first len: chain more blocks, as many as the bytes still
 * announced (cache_fill_expect) or, when none are, as many as it has
 * already (so a fill of unknown size takes runs of 1, 2, 4 ... blocks),
 * within [blocks for n, FILL_RESERVE_MAX] and max_object.  Taken in one
 * go from the free list's head they lie end to end in the zone however
 * many fills run at once, so a large body goes out in runs of 64 KB and
 * more (cache_serve) rather than in blocks interleaved with another
 * fill's.  What a fill does not use goes back at cache_fill_done.
 * 0 when not even one block can be had.  Lock held.
 */
static int fill_reserve(struct cache_store *s, struct entry *e, uint64_t len,
                        uint64_t n, uint64_t max_object)
{
    uint64_t want = n, k, got = 0;

    if (e->expect > len + n)
        want = e->expect - len;
    else if (e->expect == 0)
        want = PT_MAX(n, (uint64_t)e->nblocks * CACHE_BLOCK);
    if (want > max_object - len)
        want = PT_MAX(n, max_object - len);
    k = (want + CACHE_BLOCK - 1) / CACHE_BLOCK;
    k = PT_MAX(PT_MIN(k, FILL_RESERVE_MAX), 1);
    for (; got < k; got++) {
        uint32_t b = block_alloc(s);
        if (b == NIL)
            break;
        next_of(s)[e->last] = b;
        e->last = b;
        e->nblocks++;
    }
    return got > 0;
}

static uint32_t entry_alloc(struct cache_store *s)
{
    uint32_t i;

    while (s->free_entry == NIL)
        if (!store_evict(s))
            return NIL;
    i = s->free_entry;
    s->free_entry = entries(s)[i].hnext;
    s->used_entries++;
    return i;
}

/* ---- recovery from a process that died holding the lock ---- */

static int pid_alive(int32_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH);
}

static int tick_cmp(const void *a, const void *b, void *arg)
{
    const struct entry *e = arg;
    uint64_t x = e[*(const uint32_t *)a].tick, y = e[*(const uint32_t *)b].tick;
    return x < y ? -1 : x > y;
}

/* Keep an entry's chain to exactly nblocks blocks and mark them owned. */
static void repair_chain(struct cache_store *s, struct entry *e,
                         unsigned char *owned)
{
    uint32_t *nx = next_of(s), b = e->first, last = NIL, k = 0;

    for (; k < e->nblocks && b < s->nblocks && !owned[b]; k++) {
        owned[b] = 1;
        last = b;
        b = nx[b];
    }
    e->nblocks = k;
    e->last = last;
    if (last != NIL)
        nx[last] = NIL;
    else
        e->first = NIL;
}

static int pin_cmp(const void *a, const void *b)
{
    const struct pin *x = a, *y = b;

    if (x->pid != y->pid)
        return x->pid < y->pid ? -1 : 1;
    return x->entry < y->entry ? -1 : x->entry > y->entry;
}

/*
 * The ledger anew, from the records the entries vouch for: a live entry,
 * its version, a count.  A record caught being moved (pin_remove) is
 * there twice: once is kept.  When an entry's records add up to more
 * than its refs, none of them can be trusted: they go (those pins are
 * lost if their processes die, as untracked ones are).
 */
static void repair_pins(struct cache_store *s)
{
    struct entry *e = entries(s);
    struct pin *pl = pins(s);
    struct pin *keep = calloc(s->npin_slots + 1, sizeof(*keep));
    uint32_t *sum = calloc(s->nentries + 1, sizeof(*sum));
    uint32_t n = 0, m = 0, mask = s->npin_slots - 1;

    if (keep == NULL || sum == NULL)
        abort(); /* as store_repair */
    for (uint32_t k = 0; k < s->npin_slots; k++) {
        struct pin p = pl[k];
        if (p.pid <= 0 || p.entry >= s->nentries || p.count == 0 ||
            atomic_load(&e[p.entry].state) == E_FREE ||
            p.version != atomic_load(&e[p.entry].version))
            continue;
        keep[n++] = p;
    }
    qsort(keep, n, sizeof(*keep), pin_cmp);
    for (uint32_t k = 0; k < n; k++) {
        if (m > 0 && keep[m - 1].pid == keep[k].pid &&
            keep[m - 1].entry == keep[k].entry) {
            keep[m - 1].count = PT_MIN(keep[m - 1].count, keep[k].count);
            continue;
        }
        keep[m++] = keep[k];
    }
    for (uint32_t k = 0; k < m; k++) {
        uint32_t *t = &sum[keep[k].entry];
        *t = keep[k].count > UINT32_MAX - *t ? UINT32_MAX : *t + keep[k].count;
    }
    memset(pl, 0, (size_t)s->npin_slots * sizeof(*pl));
    s->used_pins = 0;
    for (uint32_t k = 0; k < m; k++) {
        struct pin *p = &keep[k];
        if (sum[p->entry] > e[p->entry].refs ||
            s->used_pins >= s->npin_slots - s->npin_slots / 4)
            continue;
        uint32_t j = pin_home(s, p->pid, p->entry);
        while (pl[j].pid != 0)
            j = (j + 1) & mask;
        pin_put(s, j, p->pid, p->entry, p->version, p->count);
        s->used_pins++;
    }
    free(keep);
    free(sum);
}

/*
 * Rebuild everything but the entries from the entries.  Entries whose
 * filler died are dropped; buckets, LRU (by last use), both free lists
 * and the ledger are made anew.  Runs with the lock held, after
 * EOWNERDEAD.
 */
static void store_repair(struct cache_store *s)
{
    struct entry *e = entries(s);
    unsigned char *owned = calloc(s->nblocks + 1, 1);
    uint32_t *live = calloc(s->nentries + 1, sizeof(uint32_t)), nlive = 0;
    uint32_t *bk = buckets(s), *nx = next_of(s);

    if (owned == NULL || live == NULL)
        abort(); /* cannot repair: the master re-forks, someone retries */
    repair_pins(s);
    s->free_entry = NIL;
    s->used_entries = s->used_blocks = 0;
    for (uint32_t i = 0; i < s->nbuckets; i++)
        bk[i] = NIL;
    for (uint32_t i = s->nentries; i-- > 0;) {
        uint32_t st = atomic_load(&e[i].state);
        if (st == E_FILLING && !pid_alive(e[i].filler)) {
            st = E_DEAD;
            if (e[i].refs) { /* the dead filler's own pin */
                pin_drop(s, e[i].filler, i, 1);
                e[i].refs--;
            }
        }
        if (st == E_DEAD && e[i].refs == 0)
            st = E_FREE;
        if (st == E_PUNCH && !pid_alive(e[i].filler))
            st = E_FREE; /* punched below with the other free blocks */
        atomic_store(&e[i].state, st);
        if (st == E_FREE) {
            e[i].first = NIL;
            e[i].nblocks = 0;
            e[i].hnext = s->free_entry;
            s->free_entry = i;
            continue;
        }
        s->used_entries++;
        repair_chain(s, &e[i], owned);
        s->used_blocks += e[i].nblocks;
        if (st == E_FILLING && e[i].nblocks < e[i].wn) {
            /* its chain lost the block being written: unfinishable */
            st = E_DEAD;
            atomic_store(&e[i].state, st);
        }
        e[i].hnext = NIL;
        e[i].lru_prev = e[i].lru_next = NIL;
        if (st == E_DEAD || st == E_PUNCH)
            continue;
        uint32_t *b = &bk[e[i].hash & (s->nbuckets - 1)];
        e[i].hnext = *b;
        *b = i;
        live[nlive++] = i;
    }
    s->free_block = NIL;
    for (uint32_t b = s->nblocks; b-- > 0;) {
        if (owned[b])
            continue;
        nx[b] = s->free_block;
        s->free_block = b;
    }
    /* a dropped entry's pages may be in a dead worker's sends */
    for (uint32_t b = 0; s->fd >= 0 && b < s->nblocks;) {
        uint32_t run = b;
        while (b < s->nblocks && !owned[b])
            b++;
        if (b > run && blocks_punch(s, run, b - run) < 0)
            atomic_store(&s->splice_off, 1);
        b += b < s->nblocks;
    }
    qsort_r(live, nlive, sizeof(*live), tick_cmp, e);
    s->lru_head = s->lru_tail = NIL;
    for (uint32_t k = 0; k < nlive; k++)
        lru_push(s, live[k]); /* oldest first: the newest ends at head */
    s->repairs++;
    free(owned);
    free(live);
}

static void store_lock(struct cache_store *s)
{
    if (pthread_mutex_lock(&s->lock) == EOWNERDEAD) {
        store_repair(s);
        pthread_mutex_consistent(&s->lock);
    }
}

/* Let go of the lock; then punch the entries entry_free left marked, and
 * take the lock again to free them.  Nobody else touches an E_PUNCH
 * entry's blocks meanwhile: it is in no bucket, list or free list, and
 * it is this process's (filler) until then (store_repair and
 * cache_store_forget free it only once this process is gone). */
static void store_unlock(struct cache_store *s)
{
    uint32_t q[PUNCH_LATER];
    unsigned n = punch_later_n;

    if (n == 0) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    memcpy(q, punch_later, n * sizeof(*q));
    punch_later_n = 0;
    pthread_mutex_unlock(&s->lock);
    for (unsigned k = 0; k < n; k++)
        entry_punch(s, q[k]);
    store_lock(s);
    for (unsigned k = 0; k < n; k++)
        if (atomic_load(&entries(s)[q[k]].state) == E_PUNCH &&
            entries(s)[q[k]].filler == self())
            entry_free(s, q[k], 0); /* punched: freed now */
    pthread_mutex_unlock(&s->lock);
}

/* ---- the API ---- */

/* The key's hash: eight bytes a step (a byte a step cost ~200
 * instructions of a 1 KB hit), seeded per zone, the length mixed in,
 * and a final mix so that the low bits, which pick the bucket, depend
 * on every byte. */
static uint64_t key_hash(const struct cache_store *s, struct pt_str key)
{
    const uint64_t k1 = 0xbf58476d1ce4e5b9ull, k2 = 0x94d049bb133111ebull;
    uint64_t h = s->seed ^ (key.len * k2);
    size_t i = 0;

    for (; i + 8 <= key.len; i += 8) {
        h = (h ^ pt_word(key.p + i)) * k1;
        h ^= h >> 29;
    }
    if (i < key.len) {
        uint64_t w = 0;
        memcpy(&w, key.p + i, key.len - i);
        h = (h ^ w) * k1;
        h ^= h >> 29;
    }
    h = (h ^ (h >> 30)) * k1;
    h = (h ^ (h >> 27)) * k2;
    return h ^ (h >> 31);
}

static uint32_t store_find(struct cache_store *s, struct pt_str key,
                           uint64_t h)
{
    struct entry *e = entries(s);

    for (uint32_t i = buckets(s)[h & (s->nbuckets - 1)]; i != NIL;
         i = e[i].hnext) {
        if (e[i].hash == h && e[i].key_len == key.len &&
            memcmp(block(s, e[i].first), key.p, key.len) == 0)
            return i;
    }
    return NIL;
}

static void ref_set(struct cache_store *s, struct cache_ref *ref, uint32_t i)
{
    ref->entry = i;
    ref->version = atomic_load(&entries(s)[i].version);
    ref->cur_block = entries(s)[i].first;
    ref->cur_start = 0;
}

/* A fresh FILLING entry holding key, pinned by its filler. */
static uint32_t store_claim(struct cache_store *s, struct pt_str key,
                            uint64_t h)
{
    uint32_t i = entry_alloc(s), b;
    struct entry *e;

    if (i == NIL)
        return NIL;
    b = block_alloc(s);
    e = &entries(s)[i];
    if (b == NIL) {
        e->first = NIL;
        e->nblocks = 0;
        atomic_store(&e->state, E_DEAD);
        entry_free(s, i, 0);
        return NIL;
    }
    memcpy(block(s, b), key.p, key.len);
    e->hash = h;
    e->key_len = (uint32_t)key.len;
    e->first = e->last = e->wblock = b;
    e->nblocks = e->wn = 1;
    e->expect = 0;
    e->refs = 1;
    e->filler = self();
    memset(&e->meta, 0, sizeof(e->meta));
    atomic_store(&e->length, 0);
    atomic_store(&e->waiters, 0);
    atomic_store(&e->head_len, 0);
    atomic_store(&e->hits, 0);
    atomic_store(&e->spliced, 0);
    atomic_store(&e->state, E_FILLING);
    pin_add(s, e->filler, i);
    uint32_t *bk = &buckets(s)[h & (s->nbuckets - 1)];
    e->hnext = *bk;
    *bk = i;
    lru_push(s, i);
    return i;
}

enum cache_found cache_lookup(struct cache_store *s, struct pt_str key,
                              int claim, struct cache_ref *ref,
                              struct cache_meta *meta)
{
    uint64_t h = key_hash(s, key);
    enum cache_found found = CACHE_MISS;
    uint32_t i;

    if (key.len == 0 || key.len > CACHE_KEY_MAX)
        return CACHE_MISS;
    store_lock(s);
    i = store_find(s, key, h);
    if (i != NIL && atomic_load(&entries(s)[i].state) == E_FILLING &&
        !pid_alive(entries(s)[i].filler)) {
        /* Its filler was killed mid-fill: nobody will finish it, and
         * the pin it held goes with it. */
        drop_filler(s, i);
        i = NIL;
    }
    if (i != NIL) {
        struct entry *e = &entries(s)[i];
        e->refs++;
        pin_add(s, self(), i);
        lru_unlink(s, i);
        lru_push(s, i);
        found = atomic_load(&e->state) == E_READY ? CACHE_HIT : CACHE_FILLING;
        if (found == CACHE_HIT)
            atomic_fetch_add_explicit(&e->hits, 1, memory_order_relaxed);
        *meta = e->meta;
    } else if (claim && (i = store_claim(s, key, h)) != NIL) {
        found = CACHE_CLAIMED;
        memset(meta, 0, sizeof(*meta));
    }
    if (found != CACHE_MISS)
        ref_set(s, ref, i);
    store_unlock(s);
    return found;
}

static struct entry *ref_entry(struct cache_store *s,
                               const struct cache_ref *ref)
{
    struct entry *e;

    if (ref->entry >= s->nentries)
        return NULL; /* released already */
    e = &entries(s)[ref->entry];
    return atomic_load(&e->version) == ref->version ? e : NULL;
}

int cache_fill_append(struct cache_store *s, const struct cache_ref *ref,
                      const void *p, size_t n, uint64_t max_object)
{
    struct entry *e = ref_entry(s, ref);
    const char *src = p;

    if (e == NULL || atomic_load(&e->state) != E_FILLING)
        return PT_ERROR;
    if (atomic_load(&e->length) + n > max_object) {
        cache_fill_abort(s, ref);
        return PT_ERROR;
    }
    while (n > 0) {
        uint64_t len = atomic_load_explicit(&e->length, memory_order_relaxed);
        uint64_t at = (e->key_len + len) % CACHE_BLOCK;
        if (at == 0) { /* wblock is full (the key is never empty) */
            if (e->wblock == e->last) {
                store_lock(s);
                int ok = fill_reserve(s, e, len, n, max_object);
                store_unlock(s);
                if (!ok) {
                    cache_fill_abort(s, ref);
                    return PT_ERROR;
                }
            }
            e->wblock = next_of(s)[e->wblock];
            e->wn++;
        }
        size_t k = (size_t)PT_MIN((uint64_t)n, CACHE_BLOCK - at);
        memcpy(block(s, e->wblock) + at, src, k);
        /* The bytes, then the length: readers never see unwritten data. */
        atomic_store_explicit(&e->length, len + k, memory_order_release);
        src += k;
        n -= k;
    }
    return PT_OK;
}

void cache_fill_expect(struct cache_store *s, const struct cache_ref *ref,
                       uint64_t bytes)
{
    struct entry *e = ref_entry(s, ref);

    if (e && atomic_load(&e->state) == E_FILLING)
        e->expect = bytes; /* the filler's own: read by its appends only */
}

int cache_fill_done(struct cache_store *s, const struct cache_ref *ref,
                    const struct cache_meta *meta)
{
    struct entry *e = ref_entry(s, ref);
    int rc = PT_ERROR;

    store_lock(s);
    if (e && atomic_load(&e->state) == E_FILLING) {
        if (e->wn < e->nblocks) { /* the reserve it did not use */
            chain_free(s, next_of(s)[e->wblock], e->nblocks - e->wn);
            next_of(s)[e->wblock] = NIL;
            e->last = e->wblock;
            e->nblocks = e->wn;
        }
        e->meta = *meta;
        atomic_store_explicit(&e->state, E_READY, memory_order_release);
        rc = PT_OK;
    }
    store_unlock(s);
    return rc;
}

void cache_fill_abort(struct cache_store *s, const struct cache_ref *ref)
{
    struct entry *e = ref_entry(s, ref);

    store_lock(s);
    if (e && atomic_load(&e->state) == E_FILLING)
        entry_kill(s, ref->entry, 0);
    store_unlock(s);
}

size_t cache_read(struct cache_store *s, struct cache_ref *ref, uint64_t off,
                  const void **p, int *done)
{
    struct entry *e = ref_entry(s, ref);
    uint32_t st;
    uint64_t len, d;

    *done = 0;
    if (e == NULL)
        return (size_t)-1;
    st = atomic_load_explicit(&e->state, memory_order_acquire);
    len = atomic_load_explicit(&e->length, memory_order_acquire);
    if (st == E_DEAD || st == E_FREE)
        return (size_t)-1;
    if (off >= len) {
        /* READY is published after the last length: read it again. */
        *done = st == E_READY && off == atomic_load(&e->length);
        return 0;
    }
    d = e->key_len + off;
    if (d < ref->cur_start) {
        ref->cur_block = e->first;
        ref->cur_start = 0;
    }
    while (d >= ref->cur_start + CACHE_BLOCK) {
        ref->cur_block = next_of(s)[ref->cur_block];
        ref->cur_start += CACHE_BLOCK;
    }
    *p = block(s, ref->cur_block) + (d - ref->cur_start);
    return (size_t)PT_MIN(ref->cur_start + CACHE_BLOCK - d,
                          e->key_len + len - d);
}

void cache_addref(struct cache_store *s, const struct cache_ref *ref)
{
    struct entry *e = ref_entry(s, ref);

    store_lock(s);
    if (e) {
        e->refs++;
        pin_add(s, self(), ref->entry);
    }
    store_unlock(s);
}

void cache_release(struct cache_store *s, struct cache_ref *ref)
{
    struct entry *e = ref_entry(s, ref);

    store_lock(s);
    if (e && e->refs > 0) {
        pin_drop(s, self(), ref->entry, 1);
        if (--e->refs == 0 && atomic_load(&e->state) == E_DEAD)
            entry_free(s, ref->entry, 0);
    }
    store_unlock(s);
    ref->entry = NIL;
}

int cache_purge(struct cache_store *s, struct pt_str key)
{
    uint32_t i;

    store_lock(s);
    i = store_find(s, key, key_hash(s, key));
    if (i != NIL)
        entry_kill(s, i, 0);
    store_unlock(s);
    return i != NIL;
}

size_t cache_expire(struct cache_store *s, struct pt_str prefix, int exact)
{
    struct entry *e = entries(s);
    size_t n = 0;

    store_lock(s);
    for (uint32_t i = 0; i < s->nentries; i++) {
        if (atomic_load(&e[i].state) != E_READY ||
            e[i].key_len < prefix.len || (exact && e[i].key_len != prefix.len) ||
            memcmp(block(s, e[i].first), prefix.p, prefix.len) != 0)
            continue;
        e[i].meta.lifetime = 0;
        e[i].meta.stored_at = 0; /* older than any clock: stale now */
        n++;
    }
    store_unlock(s);
    return n;
}

/* The head of entry i (after its key), copied into buf; its length. */
static size_t entry_head(struct cache_store *s, uint32_t i, char *buf,
                         size_t cap)
{
    struct entry *e = &entries(s)[i];
    uint64_t want = PT_MIN((uint64_t)atomic_load(&e->head_len), cap);
    uint64_t d = e->key_len, got = 0;
    uint32_t b = e->first;

    while (got < want && b != NIL) {
        uint64_t in = d % CACHE_BLOCK;
        uint64_t k = PT_MIN(CACHE_BLOCK - in, want - got);
        memcpy(buf + got, block(s, b) + in, k);
        got += k;
        d += k;
        if (d % CACHE_BLOCK == 0)
            b = next_of(s)[b];
    }
    return (size_t)got;
}

size_t cache_purge_if(struct cache_store *s,
                      int (*match)(const char *head, size_t len, void *arg),
                      void *arg, int soft)
{
    struct entry *e = entries(s);
    char *buf = malloc(64 * 1024);
    size_t n = 0;

    if (buf == NULL)
        return 0;
    store_lock(s);
    for (uint32_t i = 0; i < s->nentries; i++) {
        if (atomic_load(&e[i].state) != E_READY)
            continue;
        size_t len = entry_head(s, i, buf, 64 * 1024);
        if (len == 0 || !match(buf, len, arg))
            continue;
        if (soft) {
            e[i].meta.lifetime = 0;
            e[i].meta.stored_at = 0;
        } else {
            entry_kill(s, i, 0);
        }
        n++;
    }
    store_unlock(s);
    free(buf);
    return n;
}

size_t cache_purge_prefix(struct cache_store *s, struct pt_str prefix)
{
    struct entry *e = entries(s);
    size_t n = 0;

    store_lock(s);
    for (uint32_t i = 0; i < s->nentries; i++) {
        uint32_t st = atomic_load(&e[i].state);
        if ((st == E_READY || st == E_FILLING) &&
            e[i].key_len >= prefix.len &&
            memcmp(block(s, e[i].first), prefix.p, prefix.len) == 0) {
            entry_kill(s, i, 0);
            n++;
        }
    }
    store_unlock(s);
    return n;
}

void cache_store_stats(struct cache_store *s, struct cache_stats *out)
{
    store_lock(s);
    out->entries = s->used_entries;
    out->bytes_used = (uint64_t)s->used_blocks * CACHE_BLOCK;
    out->bytes_total = (uint64_t)s->nblocks * CACHE_BLOCK;
    out->evictions = s->evictions;
    out->repairs = s->repairs;
    out->pins_untracked = s->pins_untracked;
    out->pins_returned = s->pins_returned;
    store_unlock(s);
}

size_t cache_store_forget(struct cache_store *s, pid_t pid)
{
    struct entry *e;
    struct pin *pl;
    size_t n = 0;

    if (s == NULL || pid <= 0)
        return 0;
    e = entries(s);
    pl = pins(s);
    store_lock(s);
    /* Its fills first, as a lookup finding them would drop them: their
     * filler's pin comes off the record before the rest is given back. */
    for (uint32_t i = 0; i < s->nentries; i++) {
        if (atomic_load(&e[i].state) == E_FILLING && e[i].filler == pid) {
            n += e[i].refs > 0;
            drop_filler(s, i);
        } else if (atomic_load(&e[i].state) == E_PUNCH &&
                   e[i].filler == pid) {
            entry_punch(s, i); /* it died before it was done */
            entry_free(s, i, 0);
        }
    }
    /* pin_remove moves later records back into slot k: look at k again. */
    for (uint32_t k = 0; k < s->npin_slots;) {
        if (pl[k].pid != (int32_t)pid) {
            k++;
            continue;
        }
        uint32_t i = pl[k].entry, give = 0;
        if (i < s->nentries && atomic_load(&e[i].state) != E_FREE &&
            pl[k].version == atomic_load(&e[i].version))
            give = PT_MIN(pl[k].count, e[i].refs);
        pin_remove(s, k);
        if (give == 0)
            continue;
        e[i].refs -= give;
        n += give;
        if (e[i].refs == 0 && atomic_load(&e[i].state) == E_DEAD)
            entry_free(s, i, 0);
    }
    s->pins_returned += n;
    store_unlock(s);
    return n;
}

enum cache_found cache_lookup_ready(struct cache_store *s, struct pt_str key,
                                    struct cache_ref *ref,
                                    struct cache_meta *meta)
{
    struct entry *e = entries(s);
    uint64_t h = key_hash(s, key);
    uint32_t i;

    if (key.len == 0 || key.len > CACHE_KEY_MAX)
        return CACHE_MISS;
    store_lock(s);
    for (i = buckets(s)[h & (s->nbuckets - 1)]; i != NIL; i = e[i].hnext)
        if (e[i].hash == h && e[i].key_len == key.len &&
            atomic_load(&e[i].state) == E_READY &&
            memcmp(block(s, e[i].first), key.p, key.len) == 0)
            break;
    if (i != NIL) {
        e[i].refs++;
        pin_add(s, self(), i);
        *meta = e[i].meta;
        ref_set(s, ref, i);
    }
    store_unlock(s);
    return i != NIL ? CACHE_HIT : CACHE_MISS;
}

enum cache_found cache_claim_beside(struct cache_store *s, struct pt_str key,
                                    struct cache_ref *ref)
{
    uint32_t i;

    if (key.len == 0 || key.len > CACHE_KEY_MAX)
        return CACHE_MISS;
    store_lock(s);
    i = store_claim(s, key, key_hash(s, key)); /* at the bucket's head */
    if (i != NIL)
        ref_set(s, ref, i);
    store_unlock(s);
    return i != NIL ? CACHE_CLAIMED : CACHE_MISS;
}

void cache_refresh(struct cache_store *s, const struct cache_ref *ref,
                   const struct cache_meta *meta)
{
    struct entry *e = ref_entry(s, ref);

    store_lock(s);
    if (e && atomic_load(&e->state) == E_READY) {
        uint32_t head_len = e->meta.head_len;
        e->meta = *meta;
        e->meta.head_len = head_len;
    }
    store_unlock(s);
}

void cache_kill(struct cache_store *s, const struct cache_ref *ref)
{
    struct entry *e = ref_entry(s, ref);

    store_lock(s);
    if (e)
        entry_kill(s, ref->entry, 0);
    store_unlock(s);
}

int cache_count_up(struct cache_store *s, const struct cache_ref *ref,
                   uint16_t max)
{
    struct entry *e = ref_entry(s, ref);
    int rc = -1;

    store_lock(s);
    if (e && atomic_load(&e->state) == E_READY) {
        if (e->meta.status >= max) {
            e->meta.status = 1;
            rc = 0;
        } else {
            rc = ++e->meta.status;
        }
    }
    store_unlock(s);
    return rc;
}

void cache_set_head_len(struct cache_store *s, const struct cache_ref *ref,
                        uint32_t len)
{
    struct entry *e = ref_entry(s, ref);

    if (e)
        atomic_store_explicit(&e->head_len, len, memory_order_release);
}

uint32_t cache_head_len(struct cache_store *s, const struct cache_ref *ref)
{
    struct entry *e = ref_entry(s, ref);

    return e ? atomic_load_explicit(&e->head_len, memory_order_acquire) : 0;
}

uint64_t cache_length(struct cache_store *s, const struct cache_ref *ref)
{
    struct entry *e = ref_entry(s, ref);

    return e ? atomic_load_explicit(&e->length, memory_order_acquire) : 0;
}

void cache_wait(struct cache_store *s, const struct cache_ref *ref, int slot)
{
    struct entry *e = ref_entry(s, ref);

    if (e && slot >= 0 && slot < 64)
        atomic_fetch_or(&e->waiters, (uint64_t)1 << slot);
}

uint64_t cache_waiters(struct cache_store *s, const struct cache_ref *ref)
{
    struct entry *e = ref_entry(s, ref);

    return e ? atomic_load(&e->waiters) : 0;
}

int cache_filler_alive(struct cache_store *s, const struct cache_ref *ref)
{
    struct entry *e = ref_entry(s, ref);

    return e && (atomic_load(&e->state) != E_FILLING || pid_alive(e->filler));
}

void cache_store_lock_for_test(struct cache_store *s)
{
    store_lock(s);
}

uint32_t cache_store_longest_bucket(struct cache_store *s)
{
    uint32_t longest = 0;

    store_lock(s);
    for (uint32_t b = 0; b < s->nbuckets; b++) {
        uint32_t n = 0;
        for (uint32_t i = buckets(s)[b]; i != NIL; i = entries(s)[i].hnext)
            n++;
        longest = PT_MAX(longest, n);
    }
    store_unlock(s);
    return longest;
}
