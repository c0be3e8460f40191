/* dispatch.c -- which executor runs a job: the one its key's jobs are at
 * while any is, else the least loaded.
 *
 * Jobs of one key take effect in offset order: while one is queued at or
 * running on an executor, the next goes after it there. A key with no job
 * at the executors may go to any: its earlier jobs are finished (committed,
 * or handed back skipped, and then so is the rest of their partition's).
 * A fixed hash of the key would keep that order too, but leaves executors
 * idle while others have queues: a few busy keys, or many executors for
 * the keys in flight, load them unevenly.
 *
 * Keys are told apart by a 64-bit hash (the caller's): two keys with one
 * hash share an executor while both have jobs there, which costs
 * parallelism, not order. The table holds the keys with jobs at the
 * executors, open addressing with linear probing, removal by shifting
 * back (no tombstones), grown at half full.
 *
 * Not for: hashing the key (consumer.c), the executors' queues
 * (executor.c). Consumer thread only.
 */
#include "dispatch.h"

#include <stdlib.h>

/* A finaliser (splitmix64's), so that the low bits the table uses depend on
 * every bit of the caller's hash. */
static size_t
slot_of(const struct sl_dispatch *d, uint64_t hash)
{
	hash ^= hash >> 30;
	hash *= 0xbf58476d1ce4e5b9ULL;
	hash ^= hash >> 27;
	hash *= 0x94d049bb133111ebULL;
	hash ^= hash >> 31;
	return (size_t)hash & d->mask;
}

int
sl_dispatch_init(struct sl_dispatch *d, unsigned n_executors, size_t jobs)
{
	size_t n = 64;

	while (n < 2 * jobs)
		n *= 2;
	d->slots = calloc(n, sizeof(*d->slots));
	d->load = calloc(n_executors ? n_executors : 1, sizeof(*d->load));
	if (d->slots == NULL || d->load == NULL) {
		free(d->slots);
		free(d->load);
		return -1;
	}
	d->mask = n - 1;
	d->used = 0;
	d->n_executors = n_executors ? n_executors : 1;
	d->next = 0;
	return 0;
}

void
sl_dispatch_free(struct sl_dispatch *d)
{
	free(d->slots);
	free(d->load);
	d->slots = NULL;
	d->load = NULL;
}

/* Returns the slot of hash, or the empty slot where it would go. */
static struct sl_dispatch_slot *
find(const struct sl_dispatch *d, uint64_t hash)
{
	size_t i = slot_of(d, hash);

	while (d->slots[i].count != 0 && d->slots[i].hash != hash)
		i = (i + 1) & d->mask;
	return &d->slots[i];
}

/* Doubles the table and places every key again. */
static void
grow(struct sl_dispatch *d)
{
	struct sl_dispatch_slot *old = d->slots;
	size_t i, n_old = d->mask + 1;

	if ((d->slots = calloc(2 * n_old, sizeof(*d->slots))) == NULL)
		abort();
	d->mask = 2 * n_old - 1;
	for (i = 0; i < n_old; i++)
		if (old[i].count != 0)
			*find(d, old[i].hash) = old[i];
	free(old);
}

/* The executor with the fewest jobs, the search starting after the last
 * one chosen so that ties spread. */
static unsigned
least_loaded(struct sl_dispatch *d)
{
	unsigned i, k, best = d->next % d->n_executors;

	for (i = 1; i < d->n_executors; i++) {
		k = (d->next + i) % d->n_executors;
		if (d->load[k] < d->load[best])
			best = k;
	}
	d->next = best + 1;
	return best;
}

unsigned
sl_dispatch_take(struct sl_dispatch *d, uint64_t hash)
{
	struct sl_dispatch_slot *s = find(d, hash);

	if (s->count == 0) {
		if (2 * (d->used + 1) > d->mask + 1) {
			grow(d);
			s = find(d, hash);
		}
		s->hash = hash;
		s->executor = least_loaded(d);
		d->used++;
	}
	s->count++;
	d->load[s->executor]++;
	return s->executor;
}

void
sl_dispatch_done(struct sl_dispatch *d, uint64_t hash, unsigned executor)
{
	struct sl_dispatch_slot *s;
	size_t i, j, home;

	if (d->slots == NULL)
		return; /* never set up: a test's worker */
	s = find(d, hash);
	if (executor < d->n_executors)
		d->load[executor]--;
	if (s->count == 0 || --s->count > 0)
		return;
	/* Empty now: shift back the run of slots after it that may sit there,
	 * so that every key stays reachable from its home slot. */
	d->used--;
	i = (size_t)(s - d->slots);
	for (j = (i + 1) & d->mask; d->slots[j].count != 0; j = (j + 1) & d->mask) {
		home = slot_of(d, d->slots[j].hash);
		/* j's key may move to i when i lies on its way from home to j. */
		if (((j - home) & d->mask) >= ((j - i) & d->mask)) {
			d->slots[i] = d->slots[j];
			d->slots[j].count = 0;
			i = j;
		}
	}
	d->slots[i].count = 0;
}

int
sl_dispatch_any_idle(const struct sl_dispatch *d)
{
	unsigned i;

	for (i = 0; i < d->n_executors; i++)
		if (d->load[i] == 0)
			return 1;
	return 0;
}
