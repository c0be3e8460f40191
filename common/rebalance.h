/* rebalance.h -- assignment, revoke and pause (rebalance.c). Consumer thread. */
#ifndef SL_REBALANCE_H
#define SL_REBALANCE_H

#include <librdkafka/rdkafka.h>

#include "worker_int.h"

/* Pauses (pause 1) or resumes every assigned partition; fetching goes on
 * so that the group sees the member alive. No-op when already so. */
void sl_rebalance_pause(struct sl_worker *w, int pause);

/* The consumer's rebalance callback (rd_kafka_conf_set_rebalance_cb),
 * opaque w. A revoke while w->abandoning waits for nothing. */
void sl_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                     void *opaque);

#endif
