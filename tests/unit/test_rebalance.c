/* test_rebalance.c -- unit tests for rebalance.c on librdkafka's mock
 * cluster: a revoke with jobs in flight waits for the finished ones to
 * publish, commits what is committable, and lets the partition go only
 * after its last job; a revoke while abandoning waits for nothing. The
 * test plays the executors (mock_worker.h) and calls the rebalance
 * callback as librdkafka would.
 */
#include <pthread.h>
#include <stdatomic.h>
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

/* A second member of the group, on its own thread: it joins, takes what
 * the group gives it, and stays until told to leave. */
struct member {
	struct mock *m;
	atomic_int joined;             /* it got an assignment (maybe empty) */
	atomic_int leave;
};

/* The member's rebalance callback: takes what it is given, and says so. */
static void
member_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct member *mb = opaque;

	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		rd_kafka_assign(rk, parts);
		atomic_store(&mb->joined, 1);
	} else {
		rd_kafka_assign(rk, NULL);
	}
}

static void *
member_main(void *arg)
{
	struct member *mb = arg;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_topic_partition_list_t *topics;
	rd_kafka_message_t *msg;
	char errbuf[512];
	rd_kafka_t *rk;

	rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mb->m->mc), errbuf,
	                  sizeof(errbuf));
	rd_kafka_conf_set(conf, "group.id", mb->m->w.cfg->group, errbuf, sizeof(errbuf));
	rd_kafka_conf_set(conf, "session.timeout.ms", "4000", errbuf, sizeof(errbuf));
	rd_kafka_conf_set(conf, "heartbeat.interval.ms", "200", errbuf, sizeof(errbuf));
	rd_kafka_conf_set(conf, "enable.auto.commit", "false", errbuf, sizeof(errbuf));
	rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", errbuf, sizeof(errbuf));
	rd_kafka_conf_set_rebalance_cb(conf, member_rebalance);
	rd_kafka_conf_set_opaque(conf, mb);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, sizeof(errbuf));
	if (rk == NULL)
		return NULL;
	rd_kafka_poll_set_consumer(rk);
	topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(topics, MOCK_JOBS, RD_KAFKA_PARTITION_UA);
	rd_kafka_subscribe(rk, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	while (!atomic_load(&mb->leave))
		if ((msg = rd_kafka_consumer_poll(rk, 50)) != NULL)
			rd_kafka_message_destroy(msg);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return NULL;
}

/* The loop's fetching half, for the group test: messages become jobs. */
static void
poll_jobs(struct mock *m)
{
	rd_kafka_message_t *msg = rd_kafka_consumer_poll(m->w.consumer, 20);
	struct sl_job *job;

	if (msg == NULL)
		return;
	if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR || (job = sl_partition_add_job(&m->w, msg)) == NULL) {
		rd_kafka_message_destroy(msg);
		return;
	}
	mock_require(m->n_jobs < MOCK_MAX, "too many jobs");
	m->jobs[m->n_jobs++] = job;
}

/* The whole path through a real group on the mock cluster: the worker
 * subscribes and runs two jobs; a second member joins; the group revokes
 * the partition inside rd_kafka_consumer_poll(). The revoke publishes the
 * finished job and stores its offset, and leaves the running one under
 * the revoked partition struct. Whoever gets the partition next starts at
 * or before the unfinished job; if it is this worker, its jobs come back
 * under a new struct, and the old job handed back unrun touches neither.
 *
 * Unlike a Kafka broker, which accepts a commit of the current generation
 * while the group prepares a rebalance (so that members can commit as they
 * give up partitions), librdkafka 2.0.2's mock cluster refuses it with
 * REBALANCE_IN_PROGRESS: here the revoke's commit fails, and the test can
 * only check that nothing past the unfinished job is committed. What the
 * revoke commits is checked by the tests that call the callback directly. */
static void
test_revoke_when_a_member_joins_the_group(void **state)
{
	struct mock *m = mock_new(1, 1, "");
	rd_kafka_topic_partition_list_t *topics;
	struct member mb = { 0 };
	struct sl_partition *p, *again;
	pthread_t thread;
	double deadline, settle;
	int i;

	(void)state;
	mock_feed(m, 2, NULL);
	topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(topics, MOCK_JOBS, RD_KAFKA_PARTITION_UA);
	assert_int_equal(rd_kafka_subscribe(m->w.consumer, topics), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_topic_partition_list_destroy(topics);
	mock_fetch(m, 2);
	p = sl_partition_find(&m->w, MOCK_JOBS, 0);
	assert_non_null(p);
	mock_finish(m->jobs[0], SL_JOB_SUCCEEDED, NULL, 0);
	mock_hand_back(m, 0);

	mb.m = m;
	assert_int_equal(pthread_create(&thread, NULL, member_main, &mb), 0);
	deadline = sl_now() + 15;
	while (!atomic_load(&p->revoked) && sl_now() < deadline) {
		poll_jobs(m);
		mock_step(m);
	}
	assert_int_equal(atomic_load(&p->revoked), 1);
	assert_int_equal(p->assigned, 0);
	assert_int_equal(p->stored, 1);
	assert_int_equal(p->jobs, 1);
	assert_ptr_equal(m->jobs[1]->part, p);
	assert_true(mock_committed(m) <= 1);

	/* The group settles: the partition is the other member's, or ours
	 * again under a new struct (our assignment comes in a poll soon
	 * after the other member's). */
	while (!atomic_load(&mb.joined) && sl_now() < deadline) {
		poll_jobs(m);
		mock_step(m);
	}
	assert_int_equal(atomic_load(&mb.joined), 1);
	settle = sl_now() + 0.5;
	while (sl_now() < settle) {
		poll_jobs(m);
		mock_step(m);
	}
	again = sl_partition_find(&m->w, MOCK_JOBS, 0);
	assert_true(again != p);
	if (again != NULL) {
		/* Fetched again from the committed offset (or the start, as the
		 * mock refused the commit), up to the unfinished job. */
		while ((m->n_jobs == 2 || m->jobs[m->n_jobs - 1] == NULL || m->jobs[m->n_jobs - 1]->offset < 1) &&
		       sl_now() < deadline)
			poll_jobs(m);
	}
	/* Job 1 comes back unrun; jobs fetched under the new struct run. */
	for (i = 1; i < m->n_jobs; i++) {
		if (m->jobs[i] == NULL)
			continue;
		if (i >= 2)
			assert_ptr_equal(m->jobs[i]->part, again);
		mock_finish(m->jobs[i], SL_JOB_SUCCEEDED, NULL, i < 2);
		mock_hand_back(m, i);
	}
	assert_true(mock_pump(m, mock_idle, 5));
	if (again != NULL)
		assert_int_equal(again->stored, 2);
	for (i = 0; i < m->n_jobs; i++)
		assert_null(m->jobs[i]);
	atomic_store(&mb.leave, 1);
	pthread_join(thread, NULL);
	mock_destroy(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_revoke_drains_commits_and_keeps_the_partition_for_its_last_job),
		cmocka_unit_test(test_revoke_of_an_idle_partition_commits_everything),
		cmocka_unit_test(test_revoke_while_abandoning_does_not_wait),
		cmocka_unit_test(test_revoke_when_a_member_joins_the_group),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
