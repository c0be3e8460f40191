/* dispatch.h -- which executor runs a job (dispatch.c). Consumer thread. */
#ifndef SL_DISPATCH_H
#define SL_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

/* A key (by its hash) with jobs at the executors: where they are. */
struct sl_dispatch_slot {
	uint64_t hash;
	unsigned executor;
	unsigned count;       /* jobs of the key at the executor; 0: the slot is empty */
};

struct sl_dispatch {
	struct sl_dispatch_slot *slots;
	size_t mask;          /* slots - 1, a power of two less one */
	size_t used;          /* slots with a count */
	long *load;           /* per executor: jobs handed to it and not yet back */
	unsigned n_executors;
	unsigned next;        /* where the search for the least loaded starts */
};

/* Sets d up for n_executors, sized for `jobs` keys at once (it grows past
 * that). Returns 0, or -1 when out of memory. */
int sl_dispatch_init(struct sl_dispatch *d, unsigned n_executors, size_t jobs);

void sl_dispatch_free(struct sl_dispatch *d);

/* Counts a job of the key with this hash and returns its executor: the one
 * the key's jobs are at, if any are, else the least loaded. Aborts when
 * out of memory (as allocation on the job path does). */
unsigned sl_dispatch_take(struct sl_dispatch *d, uint64_t hash);

/* Takes back a job that sl_dispatch_take() gave `executor`. */
void sl_dispatch_done(struct sl_dispatch *d, uint64_t hash, unsigned executor);

/* Returns 1 when some executor has no job: the worker has capacity to
 * spare, so what is waiting to be published will not be joined by more
 * soon. */
int sl_dispatch_any_idle(const struct sl_dispatch *d);

#endif
