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

#endif
