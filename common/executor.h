/* executor.h -- the pool of executor threads and their queues (executor.c). */
#ifndef SL_EXECUTOR_H
#define SL_EXECUTOR_H

#include <stddef.h>

#include "worker_int.h"

/* Starts w->cfg->executors threads, each with its queue (its connection is
 * opened by its first job). Returns 0, or -1 with the reason in errbuf.
 * Consumer thread, once. */
int sl_executors_start(struct sl_worker *w, char *errbuf, size_t errbuf_size);

/* Queues job on executor `index` (modulo the pool size) and wakes it.
 * Consumer thread. */
void sl_executors_submit(struct sl_worker *w, unsigned index, struct sl_job *job);

/* Asks every busy executor's server to cancel the running statement, so an
 * abandoned job does not hold the stop up on a lock wait. Consumer thread. */
void sl_executors_cancel_all(struct sl_worker *w);

/* Stops the executors once their queues are empty and joins them, waiting
 * at most wait_seconds in all. Returns how many did not stop: those are
 * left to the process exit (their transactions roll back when the
 * connection closes), and the worker's shared state must then outlive this
 * call. When all stopped, the pool is freed. Consumer thread. */
int sl_executors_stop(struct sl_worker *w, double wait_seconds);

/* Hands finished jobs[0..n) back to the consumer thread, in order, at once,
 * and wakes it. Any thread. */
void sl_executors_hand_back(struct sl_worker *w, struct sl_job **jobs, size_t n);

/* Returns the jobs handed back since the last call (a list linked by
 * `next`, oldest first; NULL: none), which the caller now owns. Consumer
 * thread. */
struct sl_job *sl_executors_take_done(struct sl_worker *w);

#endif
