/* job.h -- a batch of jobs on one executor, from message to outcome (job.c). */
#ifndef SL_JOB_H
#define SL_JOB_H

#include <stddef.h>

#include "worker_int.h"

/* Runs jobs[0..n) (in queue order: per key, offset order) on ex's
 * connection, up to limits.max_batch of them in one transaction, else one
 * each, chained, and fills each job's outcome: job->end says whether it has
 * a result to publish or was handed back unrun (revoked, stopping).
 * Executor thread. */
void sl_job_run_batch(struct sl_executor *ex, struct sl_job **jobs, size_t n);

struct sl_item;

/* The attempts of items[0..n) (decoded, their type found and their data
 * valid), in order, until each has its outcome or is handed back unrun:
 * group transactions (txn.c), backoff after a job's own transient failure,
 * giving up after its last attempt, waiting without counting while
 * PostgreSQL cannot judge. sl_job_run_batch() after decoding; tests/pg
 * directly. Executor thread. */
void sl_job_run_items(struct sl_executor *ex, struct sl_item *items, size_t n);

#endif
