/* partition.c -- a partition while assigned, its jobs, and the offsets
 * that may be committed.
 *
 * Every fetched job enters its partition's tracker (offsets.c) and job
 * list in offset order. A job is done when every record it published is
 * acknowledged; then its offset is marked done, and the partition's
 * committable offset (the lowest unfinished one) is stored for
 * librdkafka's auto-commit. So an offset is committed only when its job's
 * outcome is durable, and a crash at any point redelivers instead of
 * losing. A partition that is revoked lives on, unassigned, until its last
 * job is released, so late jobs of an old assignment never move a new
 * one's offsets.
 *
 * Not for: assigning and revoking (rebalance.c). Consumer thread.
 */
#include "partition.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

struct sl_partition *
sl_partition_new(struct sl_worker *w, const char *topic, int32_t partition)
{
	struct sl_partition *p = calloc(1, sizeof(*p));

	if (p == NULL || (p->offsets = sl_offsets_new()) == NULL || (p->topic = strdup(topic)) == NULL)
		abort();
	p->partition = partition;
	p->assigned = 1;
	p->stored = -1;
	p->progress_at = sl_now();
	p->next = w->parts;
	w->parts = p;
	return p;
}

struct sl_partition *
sl_partition_find(struct sl_worker *w, const char *topic, int32_t partition)
{
	struct sl_partition *p;

	for (p = w->parts; p != NULL; p = p->next)
		if (p->partition == partition && strcmp(p->topic, topic) == 0)
			return p;
	return NULL;
}

void
sl_partition_free(struct sl_partition *p)
{
	if (p == NULL)
		return;
	sl_offsets_destroy(p->offsets);
	free(p->topic);
	free(p);
}

/* Stores `off` as the partition's next offset to read. */
static void
store_at(struct sl_worker *w, struct sl_partition *p, int64_t off)
{
	rd_kafka_topic_partition_list_t *list;
	rd_kafka_resp_err_t err;

	list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = off;
	err = rd_kafka_offsets_store(w->consumer, list);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		err = list->elems[0].err;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		sl_log_warn("could not store offset %" PRId64 " of %s [%d]: %s", off, p->topic, (int)p->partition,
		            rd_kafka_err2str(err));
	else
		p->stored = off;
	rd_kafka_topic_partition_list_destroy(list);
}

/* Stores the partition's committable offset if it moved. */
static void
store_offset(struct sl_worker *w, struct sl_partition *p)
{
	int64_t off = sl_offsets_committable(p->offsets);

	if (!p->assigned || off < 0 || off <= p->stored)
		return;
	store_at(w, p, off);
}

/* Stores the consumer's position of every idle partition that is ahead of
 * what was stored. A transactional producer's commit marker takes an offset
 * that is never a message: without this the stored offset stays one short
 * of the end forever (lag 1, committed offset behind). Idle means every
 * message handed to the tracker is done (a job handed back unrun at a stop
 * stays in flight there) and none was left out of it (while draining): then
 * every message before the position is done, and the position is
 * committable. Consumer thread. */
void
sl_partition_store_idle(struct sl_worker *w)
{
	rd_kafka_topic_partition_list_t *list;
	struct sl_partition *p;
	int i;

	list = rd_kafka_topic_partition_list_new(8);
	for (p = w->parts; p != NULL; p = p->next)
		if (p->assigned && !p->dropped && sl_offsets_in_flight(p->offsets) == 0)
			rd_kafka_topic_partition_list_add(list, p->topic, p->partition);
	if (list->cnt > 0 && rd_kafka_position(w->consumer, list) == RD_KAFKA_RESP_ERR_NO_ERROR)
		for (i = 0; i < list->cnt; i++) {
			rd_kafka_topic_partition_t *e = &list->elems[i];
			if (e->err == RD_KAFKA_RESP_ERR_NO_ERROR && e->offset >= 0 &&
			    (p = sl_partition_find(w, e->topic, e->partition)) != NULL && e->offset > p->stored &&
			    e->offset > sl_offsets_committable(p->offsets))
				store_at(w, p, e->offset);
		}
	rd_kafka_topic_partition_list_destroy(list);
}

/* Ends a job's life: frees it and whatever it kept alive. */
void
sl_partition_release_job(struct sl_worker *w, struct sl_job *job)
{
	struct sl_partition *p = job->part;

	if (job->p_prev != NULL)
		job->p_prev->p_next = job->p_next;
	else
		p->oldest = job->p_next;
	if (job->p_next != NULL)
		job->p_next->p_prev = job->p_prev;
	else
		p->newest = job->p_prev;
	p->jobs--;
	w->in_flight--;
	if (!p->assigned && p->jobs == 0)
		sl_partition_free(p);
	rd_kafka_message_destroy(job->msg);
	free(job->result);
	free(job->dlq_code);
	free(job->dlq_message);
	free(job);
}

/* Every record of the job is acknowledged: its offset is done. */
void
sl_partition_job_done(struct sl_worker *w, struct sl_job *job)
{
	struct sl_partition *p = job->part;

	int64_t before = sl_offsets_committable(p->offsets);

	if (sl_offsets_done(p->offsets, job->offset) == 0) {
		if (sl_offsets_committable(p->offsets) != before)
			p->progress_at = sl_now();
		store_offset(w, p);
	}
	sl_partition_release_job(w, job);
}

struct sl_job *
sl_partition_add_job(struct sl_worker *w, rd_kafka_message_t *m)
{
	struct sl_partition *p = sl_partition_find(w, rd_kafka_topic_name(m->rkt), m->partition);
	struct sl_job *job;

	if (p == NULL || sl_offsets_add(p->offsets, m->offset) < 0) {
		if (p != NULL)
			p->dropped = 1;
		return NULL;
	}
	if ((job = calloc(1, sizeof(*job))) == NULL)
		abort();
	job->msg = m;
	job->part = p;
	job->offset = m->offset;
	job->fetched_at = sl_now();
	job->result_topic = w->cfg->result_topic;
	job->p_prev = p->newest;
	if (p->newest != NULL)
		p->newest->p_next = job;
	else
		p->oldest = job;
	p->newest = job;
	p->last_fetched_ts = rd_kafka_message_timestamp(m, NULL);
	if (p->jobs == 0)
		p->progress_at = job->fetched_at;
	p->jobs++;
	w->in_flight++;
	return job;
}
