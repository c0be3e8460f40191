/* consumer.h -- the consumer thread's loop (consumer.c). */
#ifndef SL_CONSUMER_H
#define SL_CONSUMER_H

#include "worker_int.h"

/* Fetches, dispatches and publishes until a stop signal has drained the
 * jobs in flight, its deadline or a second signal has passed (then
 * w->abandoning is set), or the producer hit a fatal error (w->abandoning
 * too). Consumer thread, with w's clients and executors started. */
void sl_consumer_run(struct sl_worker *w);

/* Logs the worker's counters in one line. */
void sl_consumer_log_progress(struct sl_worker *w);

#endif
