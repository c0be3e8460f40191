/* offsets.c -- per-partition tracker of in-flight offsets, behind offsets.h.
 *
 * The tracker is a growable ring buffer (a deque) of (offset, done) entries
 * in strictly increasing offset order. Adding pushes at the back in O(1)
 * amortised; finishing finds the entry by binary search in O(log n) and then
 * pops every finished entry off the front, so the front entry is always
 * unfinished and sl_offsets_committable() is O(1).
 *
 * Finished entries behind an unfinished front one stay in the ring until the
 * front finishes. So that one long job cannot make the ring grow with every
 * message fetched after it, the ring is compacted (finished entries dropped,
 * order kept) whenever they outnumber the unfinished ones, and its capacity
 * shrinks when it is three quarters empty: the ring never holds more than
 * twice sl_offsets_in_flight() entries, nor has room for more than eight times
 * that (or RING_MIN_CAP). Each compaction removes at least half of the entries
 * it walks, so its cost is amortised O(1) per sl_offsets_done().
 *
 * Not for: storing or committing offsets with Kafka (the consumer does that),
 * or locking: one thread owns each tracker.
 */
#include "offsets.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Smallest capacity; a power of two, like every capacity of the ring. */
#define RING_MIN_CAP 16

struct entry {
	int64_t offset;
	int done;
};

struct sl_offsets {
	struct entry *ring;        /* cap entries, or NULL while cap is 0 */
	size_t cap;                /* 0 or a power of two >= RING_MIN_CAP */
	size_t head;               /* ring index of the front entry */
	size_t len;                /* entries in the ring, finished or not */
	size_t pending;            /* entries not yet done: the in-flight count */
	int64_t last;              /* last offset added, or -1 when none was */
};

/* The i-th entry from the front (0 <= i < len). */
static struct entry *
at(const sl_offsets_t *t, size_t i)
{
	assert(i < t->len);
	return &t->ring[(t->head + i) & (t->cap - 1)];
}

/* Moves the entries into a new array of new_cap entries, front first at index
 * 0. Returns 0, or -1 when out of memory (the ring is then unchanged). */
static int
resize(sl_offsets_t *t, size_t new_cap)
{
	struct entry *ring;
	size_t i;

	assert(new_cap >= t->len && new_cap >= RING_MIN_CAP);
	assert((new_cap & (new_cap - 1)) == 0);
	ring = malloc(new_cap * sizeof(*ring));
	if (ring == NULL)
		return -1;
	for (i = 0; i < t->len; i++)
		ring[i] = *at(t, i);
	free(t->ring);
	t->ring = ring;
	t->cap = new_cap;
	t->head = 0;
	return 0;
}

/* Drops every finished entry, keeping the order of the others. Works in place
 * (the write index never passes the read index), so it cannot fail. */
static void
compact(sl_offsets_t *t)
{
	size_t r, w = 0;

	for (r = 0; r < t->len; r++) {
		struct entry e = *at(t, r);
		if (!e.done)
			*at(t, w++) = e;
	}
	t->len = w;
	assert(t->len == t->pending);
}

/* Gives memory back after a burst: halves the capacity until the ring is more
 * than a quarter full (or at its minimum), so cap <= max(RING_MIN_CAP,
 * 4 * len) holds after every call. A failed shrink is harmless: the ring keeps
 * its larger array. */
static void
maybe_shrink(sl_offsets_t *t)
{
	size_t cap = t->cap;

	while (cap > RING_MIN_CAP && t->len <= cap / 4)
		cap /= 2;
	if (cap != t->cap)
		(void)resize(t, cap);
}

sl_offsets_t *
sl_offsets_new(void)
{
	sl_offsets_t *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->last = -1;
	return t;
}

void
sl_offsets_destroy(sl_offsets_t *t)
{
	if (t == NULL)
		return;
	free(t->ring);
	free(t);
}

int
sl_offsets_add(sl_offsets_t *t, int64_t offset)
{
	assert(t != NULL);
	/* t->last starts at -1, so this also refuses negative offsets, which
	 * Kafka never hands out for a message. */
	if (offset <= t->last)
		return -1;
	if (t->len == t->cap && resize(t, t->cap ? t->cap * 2 : RING_MIN_CAP) != 0)
		return -1;
	t->len++;
	at(t, t->len - 1)->offset = offset;
	at(t, t->len - 1)->done = 0;
	t->pending++;
	t->last = offset;
	return 0;
}

int
sl_offsets_done(sl_offsets_t *t, int64_t offset)
{
	size_t lo = 0, hi, mid;
	struct entry *e = NULL;

	assert(t != NULL);
	/* Binary search over the ring in logical order for the entry. */
	hi = t->len;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (at(t, mid)->offset < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < t->len && at(t, lo)->offset == offset)
		e = at(t, lo);
	if (e == NULL || e->done)
		return -1;
	e->done = 1;
	t->pending--;

	/* Invariant for committable(): the front entry, if any, is unfinished. */
	while (t->len > 0 && at(t, 0)->done) {
		t->head = (t->head + 1) & (t->cap - 1);
		t->len--;
	}
	if (t->len - t->pending > t->pending)
		compact(t);
	maybe_shrink(t);
	return 0;
}

int64_t
sl_offsets_committable(const sl_offsets_t *t)
{
	assert(t != NULL);
	if (t->len > 0) {
		assert(!at(t, 0)->done);
		return at(t, 0)->offset;
	}
	return t->last < 0 ? -1 : t->last + 1;
}

size_t
sl_offsets_in_flight(const sl_offsets_t *t)
{
	assert(t != NULL);
	return t->pending;
}

void
sl_offsets_reset(sl_offsets_t *t)
{
	assert(t != NULL);
	free(t->ring);
	memset(t, 0, sizeof(*t));
	t->last = -1;
}
