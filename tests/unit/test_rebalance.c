/* test_rebalance.c -- unit tests for rebalance.c on librdkafka's mock
 * cluster: a revoke with jobs in flight waits for the finished ones to
 * publish, commits what is committable, and lets the partition go only
 * after its last job; a revoke while abandoning waits for nothing. The
 * test plays the executors (mock_worker.h) and calls the rebalance
 * callback as librdkafka would.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>

#include "mock_worker.h"

/* Revokes the job topic's partition 0 through the real rebalance callback.
 * Returns the seconds the callback took. */
static double
mock_revoke(struct mock *m)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	double t0 = sl_now();

	rd_kafka_topic_partition_list_add(list, MOCK_JOBS, 0);
	sl_rebalance_cb(m->w.consumer, RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS, list, &m->w);
	rd_kafka_topic_partition_list_destroy(list);
	return sl_now() - t0;
}

/* An executor finishing a job while the revoke waits. */
struct late_job {
	struct mock *m;
	int i;                         /* the job's index in m->jobs */
	double delay;                  /* seconds before it is handed back */
};

static void *
late_hand_back(void *arg)
{
	struct late_job *l = arg;
	struct timespec ts = { 0, (long)(l->delay * 1e9) };

	nanosleep(&ts, NULL);
	mock_finish(l->m->jobs[l->i], SL_JOB_SUCCEEDED, NULL, 0);
	mock_hand_back(l->m, l->i);
	return NULL;
}

/* Jobs 0..2 in flight. Job 0 has finished and waits to be published, job 1
 * finishes during the revoke, job 2 runs past limits.revoke_timeout. The
 * revoke publishes 0 and 1, waits for them to be acknowledged, commits
 * offset 2 (job 2's, the lowest unfinished), and marks the partition
 * revoked for the executors; the partition struct lives on, unassigned,
 * until job 2 comes back unrun, and that moves no offset. */
static void
test_revoke_drains_commits_and_keeps_the_partition_for_its_last_job(void **state)
{
	struct mock *m = mock_new(1, 1, "");
	struct late_job late;
	struct sl_partition *p;
	pthread_t thread;
	double took;

	(void)state;
	mock_feed(m, 3, NULL);
	p = mock_assign(m);
	mock_fetch(m, 3);
	mock_finish(m->jobs[0], SL_JOB_SUCCEEDED, NULL, 0);
	mock_hand_back(m, 0);
	late = (struct late_job){ m, 1, 0.3 };
	assert_int_equal(pthread_create(&thread, NULL, late_hand_back, &late), 0);

	took = mock_revoke(m);
	pthread_join(thread, NULL);
	/* It waited for job 2 until revoke_timeout (1 s), not for ever. */
	assert_true(took >= 0.9);
	assert_true(took < 3);
	assert_int_equal(mock_committed(m), 2);
	assert_null(sl_partition_find(&m->w, MOCK_JOBS, 0));
	assert_null(m->w.parts);
	assert_int_equal(atomic_load(&p->revoked), 1);
	assert_int_equal(p->assigned, 0);
	assert_int_equal(p->jobs, 1);
	assert_int_equal(p->stored, 2);
	assert_int_equal(m->w.in_flight, 1);
	assert_ptr_equal(p->oldest, m->jobs[2]);

	/* Its executor sees the revoke and hands job 2 back unrun: the job
	 * and then the partition struct are released (the sanitizers check
	 * the free), and no offset moves. */
	mock_finish(m->jobs[2], SL_JOB_SUCCEEDED, NULL, 1);
	mock_hand_back(m, 2);
	assert_true(mock_pump(m, mock_idle, 5));
	assert_int_equal(atomic_load(&m->w.n_skipped), 1);
	assert_int_equal(rd_kafka_commit(m->w.consumer, NULL, 0), RD_KAFKA_RESP_ERR__NO_OFFSET);
	assert_int_equal(mock_committed(m), 2);
	mock_destroy(m);
}

/* A revoke with every job finished commits past all of them and frees the
 * partition struct at once. */
static void
test_revoke_of_an_idle_partition_commits_everything(void **state)
{
	struct mock *m = mock_new(1, 1, "");
	double took;

	(void)state;
	mock_feed(m, 2, NULL);
	mock_assign(m);
	mock_fetch(m, 2);
	mock_finish(m->jobs[0], SL_JOB_SUCCEEDED, NULL, 0);
	mock_finish(m->jobs[1], SL_JOB_FAILED, "handler_error", 0);
	mock_hand_back(m, 0);
	mock_hand_back(m, 1);
	took = mock_revoke(m);
	assert_true(took < 0.9);
	assert_int_equal(m->w.in_flight, 0);
	assert_null(m->w.parts);
	assert_int_equal(mock_committed(m), 2);
	mock_destroy(m);
}

/* A revoke while the worker abandons its jobs (a second stop signal, a
 * fatal error, the close at exit) waits for nothing: jobs still running
 * stay in flight under the revoked partition and are redelivered to the
 * next owner. */
static void
test_revoke_while_abandoning_does_not_wait(void **state)
{
	struct mock *m = mock_new(1, 1, "");
	struct sl_partition *p;
	double took;

	(void)state;
	mock_feed(m, 2, NULL);
	p = mock_assign(m);
	mock_fetch(m, 2);
	m->w.abandoning = 1;
	took = mock_revoke(m);
	assert_true(took < 0.5);
	assert_int_equal(atomic_load(&p->revoked), 1);
	assert_int_equal(p->assigned, 0);
	assert_int_equal(p->jobs, 2);
	assert_null(m->w.parts);
	/* Nothing was done: nothing past offset 0 may be committed. */
	assert_true(mock_committed(m) <= 0);
	mock_destroy(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_revoke_drains_commits_and_keeps_the_partition_for_its_last_job),
		cmocka_unit_test(test_revoke_of_an_idle_partition_commits_everything),
		cmocka_unit_test(test_revoke_while_abandoning_does_not_wait),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
