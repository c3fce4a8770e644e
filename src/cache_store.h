/*
 * cache_store.h -- the shared-memory object store of the HTTP cache: one
 * zone, mapped by the master before forking, whose byte budget covers
 * the index, the entries' metadata and the bodies.  Layer 3.
 * Calls: libc, pthreads (a robust, process-shared mutex).
 *
 * An object is a key and a byte string (the caller's serialised response
 * head and body) kept in a chain of fixed-size blocks.  One process fills
 * an entry while others may already read what is written so far
 * (read-while-write); readers pin what they read, and eviction (LRU)
 * skips pinned entries.  A full zone evicts or refuses, never fails
 * loudly.  A process killed while holding the lock leaves the zone
 * consistent: the next locker rebuilds the index, LRU and free lists from
 * the entries, which are the only source of truth.  A process killed
 * while holding pins leaves them held until cache_store_forget(pid) gives
 * them back (the master calls it for each worker it reaps); the zone keeps
 * a ledger of who holds what for that, and a pin taken while the ledger is
 * full is not recorded (pins_untracked).
 */
#ifndef PORTICO_CACHE_STORE_H
#define PORTICO_CACHE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "portico.h"

#define CACHE_BLOCK 4096      /* bytes of data per block */
#define CACHE_KEY_MAX 2048    /* longer keys are not cached */
/* Stored bytes go to a socket with sendfile(2) from the zone's file in
 * runs of at least this many (cache_store_file); shorter runs are
 * cheaper to copy (bench/NOTES.md, entry 27). */
#define CACHE_SPLICE_MIN (64 * 1024)
/* ... and only from an entry found this many times: sending from the
 * file makes the entry's eviction and the refill of its blocks dearer
 * (~400 us per 256 KB, against ~25 us saved per hit), which only an
 * entry hit often pays back (bench/NOTES.md, entry 31). */
#define CACHE_SPLICE_HITS 16

struct cache_store;

/* What the cache keeps beside the bytes (policy data, set by the filler
 * at cache_fill_done, read back at lookup). */
struct cache_meta {
    int64_t stored_at;     /* when the response arrived (unix seconds) */
    int64_t lifetime;      /* freshness lifetime, seconds */
    int64_t initial_age;   /* RFC 9111 4.2.3 corrected initial age */
    uint32_t head_len;     /* bytes of the stored head before the body */
    uint16_t status;
    uint16_t flags;        /* the caller's */
};

enum cache_found {
    CACHE_MISS,    /* absent (and not claimed) */
    CACHE_HIT,     /* complete: ref pinned */
    CACHE_FILLING, /* being filled by someone: ref pinned, read so far */
    CACHE_CLAIMED, /* absent: a new entry is the caller's to fill */
};

/* A pinned entry; the version guards against a slot reused meanwhile.
 * The cursor remembers where the last read was, so reading an object
 * from start to end walks its block chain once. */
struct cache_ref {
    uint32_t entry;
    uint32_t version;
    uint32_t cur_block;  /* block holding data offset cur_start */
    uint64_t cur_start;  /* data offset of cur_block's first byte */
};

struct cache_stats {
    uint64_t entries, bytes_used, bytes_total, evictions, repairs;
    uint64_t pins_untracked; /* pins taken while the ledger was full */
    uint64_t pins_returned;  /* given back by cache_store_forget */
};

/*
 * Map a zone of `size` bytes (at least 1m).  Returns NULL with errno set.
 * Call before forking: children share it.
 */
struct cache_store *cache_store_new(uint64_t size);
/* Unmap (tests). */
void cache_store_free(struct cache_store **s);
uint64_t cache_store_size(const struct cache_store *s);

/*
 * The zone's file: a memfd mapped whole from the zone's start, so that a
 * run of stored bytes at p can go to a socket with sendfile(2) from
 * offset p - (char *)s, the socket's buffers taking the pages themselves
 * instead of a copy.  Returns the descriptor (inherited by fork, like the
 * mapping), or -1 when the zone has none (memfd_create refused, pages
 * are not CACHE_BLOCK bytes, or holes cannot be punched).
 *
 * The kernel holds such a page until the receiver has read it and says
 * nothing when.  So an entry that may have been sent so (cache_splice_ok)
 * has its blocks punched out of the file when it is freed: a block used
 * again is a fresh page, and bytes in flight never change.  If a punch
 * fails, the blocks are freed anyway and cache_splice_ok says no from
 * then on (it cannot fail on a memfd, which is checked once when the
 * zone is made).
 */
int cache_store_file(const struct cache_store *s);

/*
 * May the pinned entry's bytes go to a socket from the zone's file?  Yes
 * once it has been found complete CACHE_SPLICE_HITS times; the entry is
 * then marked, to be punched out of the file when it is freed.  The
 * caller queues its runs of CACHE_SPLICE_MIN bytes or more only after a
 * yes (shorter runs are never sent from the file).
 */
int cache_splice_ok(struct cache_store *s, const struct cache_ref *ref);

/*
 * Look key up.  On HIT or FILLING the entry is pinned in *ref (release it
 * with cache_release) and *meta is filled (FILLING: as far as known).
 * With claim, an absent key gets a new FILLING entry owned by the caller
 * (CACHE_CLAIMED, pinned); without, CACHE_MISS.  A key longer than
 * CACHE_KEY_MAX is always a MISS.
 */
enum cache_found cache_lookup(struct cache_store *s, struct pt_str key,
                              int claim, struct cache_ref *ref,
                              struct cache_meta *meta);

/*
 * The filler appends bytes (head, then body).  Returns PT_OK, or PT_ERROR
 * when the object would pass max_object bytes or no block can be had
 * (the entry is then dropped: the caller goes on without caching).
 */
int cache_fill_append(struct cache_store *s, const struct cache_ref *ref,
                      const void *p, size_t n, uint64_t max_object);
/*
 * The filler says how many bytes it will append in all (head and body),
 * when it knows: the entry's blocks are then taken that many at a time
 * (up to 1 MB), end to end in the zone even while other fills run, and
 * those left unused go back at cache_fill_done.  Without it a fill takes
 * 1, 2, 4 ... blocks at a time.
 */
void cache_fill_expect(struct cache_store *s, const struct cache_ref *ref,
                       uint64_t bytes);
/* The object is complete: readers may serve it whole from now on; blocks
 * it took and did not fill go back. */
int cache_fill_done(struct cache_store *s, const struct cache_ref *ref,
                    const struct cache_meta *meta);
/* Give up filling: the entry goes; readers see it as aborted. */
void cache_fill_abort(struct cache_store *s, const struct cache_ref *ref);

/*
 * Bytes of the object from offset off that can be read now: *p points
 * into the zone, valid while ref is pinned.  Returns their count (up to
 * the end of one block); 0 with *done set when the object is complete and
 * off is its end, 0 with *done clear when the filler has not written
 * more yet; (size_t)-1 when the fill was aborted.
 */
size_t cache_read(struct cache_store *s, struct cache_ref *ref,
                  uint64_t off, const void **p, int *done);

/* Pin an entry one more time (each pin is released on its own). */
void cache_addref(struct cache_store *s, const struct cache_ref *ref);

/* Unpin. */
void cache_release(struct cache_store *s, struct cache_ref *ref);

/* Drop the entry of key (pinned readers finish first).  Returns 1 when
 * there was one. */
int cache_purge(struct cache_store *s, struct pt_str key);
/* Drop every entry whose key starts with prefix ("" = all); returns how
 * many. */
size_t cache_purge_prefix(struct cache_store *s, struct pt_str prefix);

/*
 * Drop (or, soft, make stale) every complete entry whose stored head
 * (the caller's bytes up to its head length) match() accepts.  match
 * runs with the zone's lock held: it must be quick and not call back.
 * Returns how many.
 */
size_t cache_purge_if(struct cache_store *s,
                      int (*match)(const char *head, size_t len, void *arg),
                      void *arg, int soft);

/* Soft purge: entries whose key starts with prefix (or equals it, with
 * exact) become stale, so the next request refetches them instead of
 * every client at once finding nothing.  Returns how many. */
size_t cache_expire(struct cache_store *s, struct pt_str prefix, int exact);

void cache_store_stats(struct cache_store *s, struct cache_stats *out);

/*
 * pid is gone (exited or killed; not yet reaped, or reaped just now):
 * give back every pin the ledger records for it, drop the fills it left
 * unfinished (as a lookup finding them would), and forget its records.
 * An entry purged meanwhile and now unpinned is freed; one still in the
 * index can be evicted again.  Returns how many pins were given back.
 * Only for a process that will never touch the zone again.  s may be NULL.
 */
size_t cache_store_forget(struct cache_store *s, pid_t pid);

/*
 * Revalidation: a new entry for key, claimed while the stale one stays
 * (new lookups find the new one first); cache_refresh gives a READY
 * entry new freshness (its head length kept); cache_kill drops one entry
 * by reference (readers finish first).
 */
enum cache_found cache_claim_beside(struct cache_store *s, struct pt_str key,
                                    struct cache_ref *ref);
/* The complete entry of key when another is being filled beside it
 * (pinned, HIT), else CACHE_MISS. */
enum cache_found cache_lookup_ready(struct cache_store *s, struct pt_str key,
                                    struct cache_ref *ref,
                                    struct cache_meta *meta);
void cache_refresh(struct cache_store *s, const struct cache_ref *ref,
                   const struct cache_meta *meta);
void cache_kill(struct cache_store *s, const struct cache_ref *ref);

/*
 * A counter kept in a complete entry's meta.status, for the caller's own
 * bookkeeping entries: one more, atomically.  Returns the new count; 0
 * when it would pass max (it starts again at 1); -1 when the entry is
 * gone.
 */
int cache_count_up(struct cache_store *s, const struct cache_ref *ref,
                   uint16_t max);

/*
 * Read-while-write: the filler publishes the head's length once the head
 * is in (cache_head_len is 0 before); readers in other workers register
 * their slot (0..63) with cache_wait, and the filler wakes every slot in
 * cache_waiters after each step.  cache_filler_alive tells a reader
 * whether the fill can still progress.
 */
void cache_set_head_len(struct cache_store *s, const struct cache_ref *ref,
                        uint32_t len);
uint32_t cache_head_len(struct cache_store *s, const struct cache_ref *ref);
void cache_wait(struct cache_store *s, const struct cache_ref *ref, int slot);
/* Bytes written so far (the whole object once it is complete). */
uint64_t cache_length(struct cache_store *s, const struct cache_ref *ref);
uint64_t cache_waiters(struct cache_store *s, const struct cache_ref *ref);
int cache_filler_alive(struct cache_store *s, const struct cache_ref *ref);

/* Tests only: take the lock and keep it (a process that then dies shows
 * that the next locker recovers). */
void cache_store_lock_for_test(struct cache_store *s);
/* Tests only: the most entries any one bucket holds. */
uint32_t cache_store_longest_bucket(struct cache_store *s);

#endif
