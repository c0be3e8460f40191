/* ops.h -- what operators see of a running worker (ops.c): metrics, the
 * HTTP listener, sd_notify and the watchdog. */
#ifndef SL_OPS_H
#define SL_OPS_H

#include <stddef.h>

#include "worker_int.h"

/* Registers the metrics and starts the HTTP listener. Returns 0, or -1 with
 * the reason in errbuf. Consumer thread, before the loop. */
int sl_ops_start(struct sl_worker *w, char *errbuf, size_t errbuf_size);

/* Snapshots, STATUS= and the watchdog: on every loop iteration. Consumer
 * thread. */
void sl_ops_tick(struct sl_worker *w, int draining);

/* Counts a job whose outcome goes out now, by its type and status.
 * Consumer thread. */
void sl_ops_job_done(struct sl_worker *w, const struct sl_job *job);

/* Counts a Kafka error by its name. Consumer thread. */
void sl_ops_kafka_error(struct sl_worker *w, const char *name);

/* Stops the listener and frees the metrics. Consumer thread, after the loop. */
void sl_ops_stop(struct sl_worker *w);

#endif
