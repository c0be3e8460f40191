/* executor.c -- the pool of executor threads.
 *
 * Each executor is a thread with its own PostgreSQL connection and a FIFO of
 * jobs. The consumer thread picks the executor from the job's Kafka key, so
 * jobs of one key run one after another in offset order, and jobs of
 * different keys run in parallel on as many executors as configured,
 * whatever the partition count. The queues need no bound of their own: the
 * consumer thread bounds the jobs in flight and pauses partitions above it.
 *
 * Finished jobs go back to the consumer thread through one done queue,
 * a whole batch at once and in order (sl_executors_hand_back), and the
 * consumer thread is woken out of its poll to publish them.
 *
 * Not for: what a job does (job.c) or what happens to it after (publish.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "executor.h"

#include "clock.h"
#include "job.h"
#include "log.h"

/* An executor thread: takes what its queue holds, up to a batch, runs it
 * (job.c) and hands it back, until told to stop with an empty queue. */
static void *
executor_main(void *arg)
{
	struct sl_executor *ex = arg;
	size_t max = sl_batch_grouped(ex->w->cfg) ? (size_t)ex->w->cfg->max_batch : SL_CHAIN_MAX, n, i;
	struct sl_job **batch = calloc(max, sizeof(*batch));
	double started, took;
	const char *wedge = getenv("SLUICE_TEST_WEDGE_EXECUTOR");
	int wedge_index = wedge != NULL && *wedge ? atoi(wedge) : -1;

	if (batch == NULL)
		abort();
	for (;;) {
		/* Take what is queued, up to max_batch jobs: they share one
		 * transaction, in queue (so per key, offset) order. With
		 * max_batch 1 they run one transaction each, chained. */
		pthread_mutex_lock(&ex->mu);
		while (ex->head == NULL && !ex->stop)
			pthread_cond_wait(&ex->cv, &ex->mu);
		if (ex->head == NULL) {
			pthread_mutex_unlock(&ex->mu);
			break;
		}
		for (n = 0; n < max && ex->head != NULL; n++) {
			batch[n] = ex->head;
			ex->head = batch[n]->next;
			batch[n]->next = NULL;
			ex->queued--;
		}
		if (ex->head == NULL)
			ex->tail = NULL;
		pthread_mutex_unlock(&ex->mu);

		started = sl_now();
		atomic_store(&ex->busy, 1);
		atomic_store(&ex->progress_at, (long long)(started * 1000));
		if (wedge_index == (int)ex->index) {
			/* Test hook (SLUICE_TEST_WEDGE_EXECUTOR): this executor hangs
			 * on its first job until the worker abandons it. */
			while (!atomic_load(&ex->w->abandon))
				nanosleep(&(struct timespec){ 0, 50 * 1000 * 1000 }, NULL);
		}
		/* Jobs of a revoked partition or an abandoning worker are handed
		 * back unrun (sl_job_run_batch checks); the next owner gets them. */
		sl_job_run_batch(ex, batch, n);
		took = sl_now() - started;
		atomic_fetch_add(&ex->busy_ns, (long long)(took * 1e9));
		atomic_store(&ex->busy, 0);
		atomic_fetch_add(&ex->done, (long long)n);
		atomic_store(&ex->progress_at, (long long)(sl_now() * 1000));
		for (i = 0; i < n; i++)
			batch[i]->run_seconds = took / (double)n;
		sl_executors_hand_back(ex->w, batch, n);
	}
	free(batch);
	sl_pgconn_close(&ex->pg);
	return NULL;
}

int
sl_executors_start(struct sl_worker *w, char *errbuf, size_t errbuf_size)
{
	unsigned i;
	int err;

	pthread_mutex_init(&w->done_mu, NULL);
	w->n_executors = (unsigned)w->cfg->executors;
	w->executors = calloc(w->n_executors, sizeof(*w->executors));
	if (w->executors == NULL) {
		snprintf(errbuf, errbuf_size, "out of memory");
		return -1;
	}
	for (i = 0; i < w->n_executors; i++) {
		struct sl_executor *ex = &w->executors[i];
		ex->w = w;
		ex->index = i;
		pthread_mutex_init(&ex->mu, NULL);
		pthread_cond_init(&ex->cv, NULL);
		ex->pg.cancel_mu = &ex->mu;
		ex->pg.round_trips = w->ops.m_round_trips;
		atomic_store(&ex->progress_at, (long long)(sl_now() * 1000));
		if ((err = pthread_create(&ex->thread, NULL, executor_main, ex)) != 0) {
			snprintf(errbuf, errbuf_size, "could not start executor thread: %s", strerror(err));
			w->n_executors = i;
			return -1;
		}
	}
	return 0;
}

void
sl_executors_submit(struct sl_worker *w, unsigned index, struct sl_job *job)
{
	struct sl_executor *ex = &w->executors[index % w->n_executors];

	job->next = NULL;
	pthread_mutex_lock(&ex->mu);
	if (ex->tail != NULL)
		ex->tail->next = job;
	else
		ex->head = job;
	ex->tail = job;
	ex->queued++;
	pthread_cond_signal(&ex->cv);
	pthread_mutex_unlock(&ex->mu);
}

void
sl_executors_cancel_all(struct sl_worker *w)
{
	unsigned i;
	char errbuf[256];

	for (i = 0; i < w->n_executors; i++) {
		struct sl_executor *ex = &w->executors[i];
		pthread_mutex_lock(&ex->mu);
		if (ex->pg.cancel != NULL && atomic_load(&ex->busy))
			(void)PQcancel(ex->pg.cancel, errbuf, sizeof(errbuf));
		pthread_mutex_unlock(&ex->mu);
	}
}

int
sl_executors_stop(struct sl_worker *w, double wait_seconds)
{
	struct timespec deadline;
	unsigned i;
	int stuck = 0;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += (time_t)wait_seconds;
	deadline.tv_nsec += (long)((wait_seconds - (double)(time_t)wait_seconds) * 1e9);
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	for (i = 0; i < w->n_executors; i++) {
		struct sl_executor *ex = &w->executors[i];
		pthread_mutex_lock(&ex->mu);
		ex->stop = 1;
		pthread_cond_signal(&ex->cv);
		pthread_mutex_unlock(&ex->mu);
	}
	for (i = 0; i < w->n_executors; i++) {
		if (pthread_timedjoin_np(w->executors[i].thread, NULL, &deadline) != 0) {
			sl_log_warn("executor %u did not stop in time; leaving it to the process exit", i);
			stuck++;
			continue;
		}
		pthread_mutex_destroy(&w->executors[i].mu);
		pthread_cond_destroy(&w->executors[i].cv);
	}
	if (stuck == 0) {
		free(w->executors);
		w->executors = NULL;
		w->n_executors = 0;
	}
	return stuck;
}

void
sl_executors_hand_back(struct sl_worker *w, struct sl_job **jobs, size_t n)
{
	size_t i;
	int was_empty;

	if (n == 0)
		return;
	for (i = 0; i + 1 < n; i++)
		jobs[i]->next = jobs[i + 1];
	jobs[n - 1]->next = NULL;
	pthread_mutex_lock(&w->done_mu);
	was_empty = w->done_head == NULL;
	if (w->done_tail != NULL)
		w->done_tail->next = jobs[0];
	else
		w->done_head = jobs[0];
	w->done_tail = jobs[n - 1];
	pthread_mutex_unlock(&w->done_mu);
	/* Wake the consumer thread out of rd_kafka_consumer_poll(), once. */
	if (was_empty && w->consumer_q != NULL)
		rd_kafka_queue_yield(w->consumer_q);
}

struct sl_job *
sl_executors_take_done(struct sl_worker *w)
{
	struct sl_job *jobs;

	pthread_mutex_lock(&w->done_mu);
	jobs = w->done_head;
	w->done_head = w->done_tail = NULL;
	pthread_mutex_unlock(&w->done_mu);
	return jobs;
}
