/* rebalance.c -- the group gives partitions and takes them back; the
 * worker pauses them when it is full.
 *
 * Assign: a new partition struct per partition (partition.c), paused or
 * not as the worker is. Revoke: no new work on the partitions, their
 * in-flight jobs finish and publish (bounded by limits.revoke_timeout, and
 * by a second stop signal), the committable offsets are committed
 * synchronously, then the partitions go. A lost assignment is not
 * committed: another member owns it already. Jobs still running go on
 * under their revoked partition struct and are handed back unrun.
 *
 * Not for: a partition's offsets (partition.c). Consumer thread, inside
 * rd_kafka_consumer_poll() for the callbacks.
 */
#include "rebalance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "partition.h"
#include "publish.h"
#include "signals.h"

void
sl_rebalance_pause(struct sl_worker *w, int pause)
{
	rd_kafka_topic_partition_list_t *list = NULL;

	if (w->paused == pause)
		return;
	if (rd_kafka_assignment(w->consumer, &list) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	if (pause)
		rd_kafka_pause_partitions(w->consumer, list);
	else
		rd_kafka_resume_partitions(w->consumer, list);
	rd_kafka_topic_partition_list_destroy(list);
	w->paused = pause;
	sl_log_debug("%s all partitions (%ld jobs in flight)", pause ? "paused" : "resumed", w->in_flight);
}

/* Assign: a partition struct for each, the assignment taken, and the
 * worker's pause state applied to it. */
static void
on_assign(struct sl_worker *w, rd_kafka_topic_partition_list_t *parts)
{
	int i;

	for (i = 0; i < parts->cnt; i++)
		sl_partition_new(w, parts->elems[i].topic, parts->elems[i].partition);
	if (rd_kafka_assign(w->consumer, parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
		sl_log_error("could not assign %d partitions", parts->cnt);
	/* librdkafka keeps a partition's application pause across
	 * assignments, so a partition paused under an earlier assignment would
	 * stay silent: set the state we want explicitly. */
	if (w->paused)
		rd_kafka_pause_partitions(w->consumer, parts);
	else
		rd_kafka_resume_partitions(w->consumer, parts);
	atomic_store(&w->ops.joined, 1);
	atomic_store(&w->ops.brokers_down, 0);
	sl_log_info("assigned %d partitions", parts->cnt);
}

/* Revoke: stop new work on the partitions, let their in-flight jobs finish
 * (bounded by revoke_timeout), commit synchronously, then let them go. A
 * lost assignment is not committed: another member owns it already. */
static void
on_revoke(struct sl_worker *w, rd_kafka_topic_partition_list_t *parts, int abandon)
{
	rd_kafka_topic_partition_list_t *commit;
	struct sl_partition *p, **pp;
	int lost = rd_kafka_assignment_lost(w->consumer), i, busy;
	double deadline = sl_now() + (abandon ? 0 : w->revoke_timeout);
	rd_kafka_resp_err_t err;

	for (i = 0; i < parts->cnt; i++)
		if ((p = sl_partition_find(w, parts->elems[i].topic, parts->elems[i].partition)) != NULL)
			atomic_store(&p->revoked, 1);
	if (lost) /* out of the group until the next assignment: not ready */
		atomic_store(&w->ops.joined, 0);
	do {
		busy = 0;
		sl_publish_done(w);
		sl_publish_retry_due(w);
		sl_publish_poll(w, 5);
		for (i = 0; i < parts->cnt; i++)
			if ((p = sl_partition_find(w, parts->elems[i].topic, parts->elems[i].partition)) != NULL)
				busy += p->jobs;
	} while (busy > 0 && !lost && sl_now() < deadline && sl_signals_stop() < 2);
	if (busy > 0 && !lost)
		sl_log_warn("revoke: %d jobs still in flight after %.1f s; the next owner gets them again", busy,
		            w->revoke_timeout);

	commit = rd_kafka_topic_partition_list_new(parts->cnt);
	for (i = 0; i < parts->cnt; i++) {
		int64_t off;
		if ((p = sl_partition_find(w, parts->elems[i].topic, parts->elems[i].partition)) == NULL)
			continue;
		off = sl_offsets_committable(p->offsets);
		if (off >= 0)
			rd_kafka_topic_partition_list_add(commit, p->topic, p->partition)->offset = off;
	}
	if (!lost && commit->cnt > 0) {
		err = rd_kafka_commit(w->consumer, commit, 0);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
			sl_log_warn("could not commit offsets of revoked partitions: %s", rd_kafka_err2str(err));
	}
	rd_kafka_topic_partition_list_destroy(commit);

	for (pp = &w->parts; (p = *pp) != NULL;) {
		if (rd_kafka_topic_partition_list_find(parts, p->topic, p->partition) == NULL) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		p->assigned = 0;
		if (p->jobs == 0)
			sl_partition_free(p);
	}
	rd_kafka_resume_partitions(w->consumer, parts); /* see on_assign */
	rd_kafka_assign(w->consumer, NULL);
	sl_log_info("%s %d partitions", lost ? "lost" : "revoked", parts->cnt);
}


void
sl_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct sl_worker *w = opaque;

	(void)rk;
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
		on_assign(w, parts);
	else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
		on_revoke(w, parts, w->abandoning);
	else {
		sl_log_error("rebalance error: %s", rd_kafka_err2str(err));
		rd_kafka_assign(w->consumer, NULL);
	}
}
