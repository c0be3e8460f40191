/* consumer.c -- the consumer thread's loop: fetch, dispatch, publish, stop.
 *
 * Everything about a job's life outside PostgreSQL happens on this one
 * thread, so partitions, offsets and delivery reports need no locks:
 *
 *   fetch    rd_kafka_consumer_poll(); the message becomes a job in its
 *            partition's list and tracker (partition.c) and goes to an
 *            executor: the one its key's jobs are at, else the least
 *            loaded (dispatch.c)
 *   publish  finished jobs come back from the executors; their results,
 *            and dead letters, are produced (publish.c)
 *   store    when every record of a job is acknowledged, its partition's
 *            committable offset is stored; auto-commit sends it to Kafka
 *            (partition.c)
 *
 * In-flight jobs are bounded (limits.max_in_flight): at the bound the loop
 * stops taking messages, and a worker that stays full pauses its
 * partitions (rebalance.c) while polling goes on. A stop signal drains:
 * no new jobs, the ones in flight finish and publish, up to
 * limits.shutdown_timeout or a second signal, after which the rest are
 * abandoned (rolled back and redelivered).
 *
 * Not for: starting and stopping the worker (worker.c). Consumer thread.
 */
#include "consumer.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "executor.h"
#include "log.h"
#include "notify.h"
#include "ops.h"
#include "partition.h"
#include "publish.h"
#include "rebalance.h"
#include "reload.h"
#include "signals.h"

/* Seconds a worker at max_in_flight waits for jobs to end before it pauses
 * its partitions (see the loop). */
#define FULL_BEFORE_PAUSE 1.0

/* FNV-1a over len bytes, continuing from h: cheap. */
static uint64_t
fnv1a(const void *data, size_t len, uint64_t h)
{
	const unsigned char *p = data;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* What orders a message's job (dispatch.c): its key, so that one key's
 * jobs run in offset order; a keyless message, its partition. */
static uint64_t
order_hash(const rd_kafka_message_t *m, const struct sl_partition *p)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	if (m->key != NULL)
		return fnv1a(m->key, m->key_len, h);
	h = fnv1a(p->topic, strlen(p->topic), h);
	return fnv1a(&p->partition, sizeof(p->partition), h);
}

void
sl_consumer_log_progress(struct sl_worker *w)
{
	sl_log_info("progress: fetched=%lld succeeded=%lld rejected=%lld failed=%lld dead_letters=%lld "
	            "duplicates=%lld retries=%lld in_flight=%ld",
	            (long long)atomic_load(&w->n_fetched), (long long)atomic_load(&w->n_succeeded),
	            (long long)atomic_load(&w->n_rejected), (long long)atomic_load(&w->n_failed),
	            (long long)atomic_load(&w->n_dead_letters), (long long)atomic_load(&w->n_duplicates),
	            (long long)atomic_load(&w->n_retries), w->in_flight);
}

/* Makes message m (stolen) a job and hands it to its executor. */
static void
handle_message(struct sl_worker *w, rd_kafka_message_t *m, int draining)
{
	struct sl_partition *p;
	struct sl_job *job;

	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			sl_ops_kafka_error(w, rd_kafka_err2name(m->err));
			sl_log_warn("consumer error: %s", rd_kafka_message_errstr(m));
		}
		rd_kafka_message_destroy(m);
		return;
	}
	atomic_store(&w->ops.brokers_down, 0);
	/* While draining, a message is left for the next owner: it never enters
	 * the tracker, so no committed offset can pass it. The consumer's
	 * position has passed it, though: from now on that position is no
	 * offset to store (sl_partition_store_idle). */
	if (draining) {
		if ((p = sl_partition_find(w, rd_kafka_topic_name(m->rkt), m->partition)) != NULL)
			p->dropped = 1;
		rd_kafka_message_destroy(m);
		return;
	}
	if ((job = sl_partition_add_job(w, m)) == NULL) {
		rd_kafka_message_destroy(m);
		return;
	}
	atomic_fetch_add(&w->n_fetched, 1);
	job->key_hash = order_hash(m, job->part);
	job->executor = sl_dispatch_take(&w->dispatch, job->key_hash);
	sl_executors_submit(w, job->executor, job);
}

void
sl_consumer_run(struct sl_worker *w)
{
	double drain_deadline = 0, last_progress_log, full_since = 0, last_idle_store = 0;
	int draining = 0;
	rd_kafka_message_t *m;

	last_progress_log = sl_now();
	for (;;) {
		if (sl_signals_stop() && !draining) {
			draining = 1;
			drain_deadline = sl_now() + w->shutdown_timeout;
			sl_rebalance_pause(w, 1);
			sl_notify("STOPPING=1\nSTATUS=stopping: draining %ld jobs", w->in_flight);
			sl_log_info("stopping: draining %ld jobs in flight (deadline %.1f s)", w->in_flight,
			            w->shutdown_timeout);
		}
		if (atomic_load(&w->fatal)) {
			sl_log_error("stopping after a fatal kafka error; unfinished jobs are redelivered");
			w->abandoning = 1;
			break;
		}
		if (draining && w->in_flight == 0)
			break;
		if (draining && (sl_signals_stop() >= 2 || sl_now() >= drain_deadline)) {
			sl_log_warn("abandoning %ld jobs in flight (%s); they are rolled back and redelivered",
			            w->in_flight, sl_signals_stop() >= 2 ? "second signal" : "deadline");
			w->abandoning = 1;
			break;
		}
		/* At max_in_flight the worker stops taking messages: the fetched
		 * ones wait in librdkafka's queue (bounded by
		 * queued.max.messages.kbytes) and flow again as soon as jobs end.
		 * Only a worker that stays full pauses its partitions, which
		 * drops that queue and costs a refetch on resume (about
		 * fetch.wait.max.ms), but lets consumer_poll() serve rebalances
		 * and errors while the jobs take their time. */
		if (!draining && !w->paused && w->in_flight >= w->max_in_flight) {
			if (full_since == 0)
				full_since = sl_now();
			if (sl_now() - full_since >= FULL_BEFORE_PAUSE)
				sl_rebalance_pause(w, 1);
			sl_publish_poll(w, 1);
		} else {
			full_since = 0;
			m = rd_kafka_consumer_poll(w->consumer, w->in_flight > 0 ? 5 : 100);
			if (m != NULL)
				handle_message(w, m, draining);
			sl_publish_poll(w, 0);
		}
		/* Results wait in the producer for linger.ms (50 ms), to go out
		 * in batches while every executor is busy; while one is idle the
		 * worker has capacity to spare, a batch would fill only slowly,
		 * and what was published goes now. At saturation the executors
		 * are never idle, and results batch. Idle is an executor with no
		 * job at all: jobs in flight fewer than executors (the test
		 * before) missed an idle executor beside a busy one with a queue,
		 * and results waited for linger (a 5 ms median at 3,200 jobs/s). */
		if (sl_publish_done(w) > 0 && sl_dispatch_any_idle(&w->dispatch))
			sl_publish_flush(w);
		sl_publish_retry_due(w);
		if (!draining && w->paused && w->in_flight <= w->max_in_flight / 2)
			sl_rebalance_pause(w, 0);
		if (sl_now() - last_idle_store >= 1) {
			sl_partition_store_idle(w);
			last_idle_store = sl_now();
		}
		if (sl_now() - last_progress_log >= 10) {
			sl_consumer_log_progress(w);
			last_progress_log = sl_now();
		}
		if (sl_signals_take_reload())
			sl_reload(w);
		sl_ops_tick(w, draining);
	}
}
