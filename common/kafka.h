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

#endif
