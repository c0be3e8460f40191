/* publish.h -- results, dead letters and their delivery reports
 * (publish.c). Consumer thread. */
#ifndef SL_PUBLISH_H
#define SL_PUBLISH_H

#include <librdkafka/rdkafka.h>

#include "worker_int.h"

/* Takes the jobs the executors handed back and publishes their outcomes;
 * releases the ones handed back unrun. Returns how many jobs' records it
 * produced. */
int sl_publish_done(struct sl_worker *w);

/* Sends what the producer holds now instead of at the end of linger.ms:
 * for when nothing more will join the batch (no job at the executors).
 * Blocks up to 1 ms. */
void sl_publish_flush(struct sl_worker *w);

/* Produces again the records whose pause after a failure is over. */
void sl_publish_retry_due(struct sl_worker *w);

/* Notes that topic is compacted (cleanup.policy): it refuses records
 * without a key, so the result or dead letter of a job without a key goes
 * there keyed by the job's source topic, partition and offset. */
void sl_publish_key_keyless(struct sl_worker *w, const char *topic);

/* Serves the producers' delivery reports: waits up to timeout_ms for the
 * batching producer's, takes the other's without waiting. */
void sl_publish_poll(struct sl_worker *w, int timeout_ms);

/* At stop: waits up to timeout_ms for each producer to deliver what it
 * holds, then purges what is left (its jobs are redelivered). Returns how
 * many records were purged. */
int sl_publish_drain(struct sl_worker *w, int timeout_ms);

/* The producers' delivery report callback (rd_kafka_conf_set_dr_msg_cb),
 * opaque w: an acknowledged record counts toward its job's completion, a
 * failed one is produced again later. Runs inside rd_kafka_poll() and
 * rd_kafka_flush() on the consumer thread. */
void sl_publish_delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

#endif
