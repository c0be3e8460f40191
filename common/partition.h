/* partition.h -- partitions, their jobs and their stored offsets
 * (partition.c). Consumer thread. */
#ifndef SL_PARTITION_H
#define SL_PARTITION_H

#include <librdkafka/rdkafka.h>

#include "worker_int.h"

/* Adds a new partition struct, assigned, to w's assignment and returns it. */
struct sl_partition *sl_partition_new(struct sl_worker *w, const char *topic, int32_t partition);

/* Returns the assigned partition struct of topic/partition, or NULL. */
struct sl_partition *sl_partition_find(struct sl_worker *w, const char *topic, int32_t partition);

/* Frees p (which must be off the assignment list). NULL is a no-op. */
void sl_partition_free(struct sl_partition *p);

/* Returns a new job for message m (stolen on success) at the end of its
 * partition's list, its offset in the tracker; or NULL when m cannot be
 * tracked (not assigned here), after marking the partition `dropped`. */
struct sl_job *sl_partition_add_job(struct sl_worker *w, rd_kafka_message_t *m);

/* Every record of the job is acknowledged: marks its offset done, stores
 * the partition's committable offset if it moved, and releases the job. */
void sl_partition_job_done(struct sl_worker *w, struct sl_job *job);

/* Ends a job's life without marking its offset done (handed back unrun):
 * frees it and its message; frees its partition too when that is revoked
 * and this was its last job. */
void sl_partition_release_job(struct sl_worker *w, struct sl_job *job);

/* Stores the position of every idle partition ahead of what was stored
 * (see partition.c). */
void sl_partition_store_idle(struct sl_worker *w);

#endif
