/* kafka.h -- the worker's Kafka clients (kafka.c). Consumer thread. */
#ifndef SL_KAFKA_H
#define SL_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "worker_int.h"

/* Returns a new consumer (RD_KAFKA_CONSUMER: in w's group, offsets stored
 * by hand, rebalances to rebalance.c) or producer (RD_KAFKA_PRODUCER:
 * idempotent, acks=all, delivery reports to publish.c), with w as its
 * opaque; or NULL with the reason in errbuf. The caller destroys it. */
rd_kafka_t *sl_kafka_client_new(struct sl_worker *w, rd_kafka_type_t type, char *errbuf, size_t errbuf_size);

/* Returns a producer like sl_kafka_client_new()'s that sends each record
 * in a record batch of its own and at once (batch.num.messages 1, linger.ms
 * 0), for records a topic refused in a batch (publish.c); or NULL with the
 * reason in errbuf. */
rd_kafka_t *sl_kafka_producer_alone(struct sl_worker *w, char *errbuf, size_t errbuf_size);

/* Reads, through rk, the max.message.bytes of the dead-letter topic, of
 * every job type's result topic and of the job topics (Kafka's
 * DescribeConfigs, at most 5 s): into w->batch_max, the smallest of the
 * dead-letter and result topics', which sl_kafka_client_new() keeps the
 * producer's batches under; w->relay_batch_max, the smallest of the
 * dead-letter and job topics', for the outbox relay's producer; and each
 * type's result_topic_max, which its results are checked against (txn.c).
 * A limit that cannot be read is 0 and logged. Compacted result and
 * dead-letter topics (cleanup.policy) go to sl_publish_key_keyless(). Call
 * before the producers are made. */
void sl_kafka_learn_limits(struct sl_worker *w, rd_kafka_t *rk);

/* The max.message.bytes of one topic, asked of the brokers through rk (at
 * most 5 s); 0 when it cannot be read, -1 when the topic does not exist,
 * with why in errbuf (empty on a stop signal). *compacted: whether its
 * cleanup.policy compacts (it refuses records without a key). Logs
 * nothing. Any thread. */
int sl_kafka_topic_limit(rd_kafka_t *rk, const char *topic, int *compacted, char *errbuf, size_t errbuf_size);

/* Sets batch.size on a producer's conf under limit, the smallest
 * max.message.bytes of the topics it writes (`what` it writes, for the log
 * line), unless the value conf holds (the user's, or librdkafka's default)
 * is under it already; the broker refuses a whole batch above a topic's
 * limit. limit 0: nothing. Returns 0, or -1 with the reason in errbuf. */
int sl_kafka_cap_batches(int limit, const char *what, rd_kafka_conf_t *conf, char *errbuf, size_t errbuf_size);

/* Sets one property on conf; returns 0, or -1 with `kafka property "KEY":
 * why` in errbuf. */
int sl_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errbuf, size_t errbuf_size);

/* Sets the n properties of kv in order; -1 at the first refused. */
int sl_kafka_conf_set_all(rd_kafka_conf_t *conf, const struct sl_kv *kv, size_t n, char *errbuf,
                          size_t errbuf_size);

#endif
