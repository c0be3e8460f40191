/* test_publish.c -- unit tests for publish.c and partition.c on librdkafka's
 * mock cluster: a result whose delivery fails, a dead letter and a result
 * of one job, a result or dead letter refused in a batch (sent alone), a
 * dead letter too large for its topic, jobs completing out
 * of offset order, and a job handed back unrun. No broker, no PostgreSQL: the test plays the
 * executors (mock_worker.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mock_worker.h"

/* The Produce request's API key (Kafka protocol). */
#define API_PRODUCE 0

/* Finds header `name` of msg; returns its value as a new string, or NULL. */
static char *
header(const rd_kafka_message_t *msg, const char *name)
{
	rd_kafka_headers_t *h = NULL;
	const void *v;
	size_t len;

	if (rd_kafka_message_headers(msg, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    rd_kafka_header_get_last(h, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return NULL;
	return strndup(v, len);
}

/* A result whose delivery fails keeps its job, and the job's offset, until
 * the record is produced again and acknowledged. */
static void
test_failed_delivery_is_retried_before_the_offset_moves(void **state)
{
	struct mock *m = mock_new(1, 1, "");
	struct sl_partition *p;

	(void)state;
	mock_feed(m, 1, NULL);
	p = mock_assign(m);
	mock_fetch(m, 1);
	/* Every Produce request fails (retriable), for longer than
	 * message.timeout.ms: librdkafka gives up and reports the record
	 * failed. */
	mock_fail_requests(m, API_PRODUCE, 200, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
	mock_finish(m->jobs[0], SL_JOB_SUCCEEDED, NULL, 0);
	mock_hand_back(m, 0);
	assert_true(mock_pump(m, mock_retrying, 5));
	/* Failed, queued for a second attempt: the job and its offset wait. */
	assert_int_equal(m->w.in_flight, 1);
	assert_int_equal(p->stored, -1);
	assert_int_equal(sl_offsets_committable(p->offsets), 0);
	assert_non_null(p->oldest);
	assert_int_equal(p->oldest->pending_acks, 1);

	rd_kafka_mock_clear_request_errors(m->mc, API_PRODUCE);
	assert_true(mock_pump(m, mock_idle, 5));
	assert_null(m->w.retries);
	assert_int_equal(p->stored, 1);
	assert_int_equal(sl_offsets_committable(p->offsets), 1);
	assert_null(p->oldest);
	assert_int_equal(p->jobs, 0);
	assert_int_equal(rd_kafka_commit(m->w.consumer, NULL, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_int_equal(mock_committed(m), 1);

	assert_true(mock_read(m, MOCK_RESULTS, 1, NULL, NULL, 5) >= 1);
	mock_destroy(m);
}

/* What a test saw of the dead-letter topic. */
struct dead_letters {
	int n;
	int with_value;                /* records with a non-empty value */
	int omitted;                   /* records with sluice-value-omitted */
	char *code;                    /* sluice-error-code of the last one */
	char *offset;                  /* sluice-source-offset of the last one */
};

static void
see_dead_letter(const rd_kafka_message_t *msg, void *arg)
{
	struct dead_letters *d = arg;
	char *omitted = header(msg, "sluice-value-omitted");

	d->n++;
	d->with_value += msg->len > 0;
	d->omitted += omitted != NULL;
	free(omitted);
	free(d->code);
	free(d->offset);
	d->code = header(msg, "sluice-error-code");
	d->offset = header(msg, "sluice-source-offset");
}

static int
dlq_pending(struct mock *m)
{
	const struct sl_job *job = m->w.parts->oldest;

	return job != NULL && job->result_acked && !job->dlq_acked;
}

/* Reads the one dead letter on the dead-letter topic and checks it: with
 * its value or without (sluice-value-omitted), its error code (NULL: not
 * checked) and its source offset 0. */
static void
expect_dead_letter(struct mock *m, int with_value, const char *code)
{
	struct dead_letters d = { 0 };

	assert_int_equal(mock_read(m, MOCK_DLQ, 1, see_dead_letter, &d, 5), 1);
	assert_int_equal(d.with_value, with_value);
	assert_int_equal(d.omitted, !with_value);
	if (code != NULL)
		assert_string_equal(d.code, code);
	assert_string_equal(d.offset, "0");
	free(d.code);
	free(d.offset);
}

/* A failed job publishes a result and a dead letter: its offset moves only
 * when both are acknowledged. The dead-letter topic has no leader for
 * longer than message.timeout.ms, so the result is acknowledged first and
 * the dead letter fails and is produced again. */
static void
test_dead_letter_and_result_both_acknowledged_before_the_offset_moves(void **state)
{
	struct mock *m = mock_new(1, 1, "");
	struct sl_partition *p;

	(void)state;
	mock_feed(m, 1, NULL);
	p = mock_assign(m);
	mock_fetch(m, 1);
	rd_kafka_mock_partition_set_leader(m->mc, MOCK_DLQ, 0, -1);
	mock_finish(m->jobs[0], SL_JOB_FAILED, "handler_error", 0);
	mock_hand_back(m, 0);
	assert_true(mock_pump(m, dlq_pending, 5));
	assert_int_equal(p->oldest->pending_acks, 1);
	assert_true(mock_pump(m, mock_retrying, 5));
	/* The result is in, the dead letter failed: nothing moves. */
	assert_int_equal(m->w.in_flight, 1);
	assert_int_equal(p->stored, -1);
	assert_int_equal(sl_offsets_committable(p->offsets), 0);

	rd_kafka_mock_partition_set_leader(m->mc, MOCK_DLQ, 0, 1);
	assert_true(mock_pump(m, mock_idle, 10));
	assert_int_equal(p->stored, 1);
	assert_int_equal(atomic_load(&m->w.n_dead_letters), 1);
	assert_int_equal(atomic_load(&m->w.n_failed), 1);
	expect_dead_letter(m, 1, "handler_error");
	mock_destroy(m);
}

/* A dead letter the broker refuses as too large (MSG_SIZE_TOO_LARGE on the
 * dead-letter topic's broker only), in its batch and then alone, is sent
 * again without its value, with sluice-value-omitted, rather than blocking
 * its partition forever. */
static void
test_dead_letter_too_large_is_sent_without_its_value(void **state)
{
	struct mock *m = mock_new(2, 2, "");
	struct sl_partition *p;

	(void)state;
	mock_feed(m, 1, NULL);
	p = mock_assign(m);
	mock_fetch(m, 1);
	rd_kafka_mock_broker_push_request_error_rtts(m->mc, 2, API_PRODUCE, 2, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0,
	                                             RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0);
	mock_finish(m->jobs[0], SL_JOB_FAILED, "message_too_large", 0);
	mock_hand_back(m, 0);
	assert_true(mock_pump(m, mock_retrying, 5));
	assert_int_equal(p->stored, -1);
	assert_true(mock_pump(m, mock_idle, 10));
	assert_int_equal(p->stored, 1);
	assert_non_null(m->w.alone);
	expect_dead_letter(m, 0, "message_too_large");
	mock_destroy(m);
}

/* A topic whose max.message.bytes was lowered after the worker started
 * refuses whole batches of records each small enough for it, on every
 * retry in a batch. A dead letter refused once goes again alone, in a
 * batch of its own, still with its value. */
static void
test_dead_letter_refused_in_a_batch_goes_alone_with_its_value(void **state)
{
	struct mock *m = mock_new(2, 2, "");
	struct sl_partition *p;

	(void)state;
	mock_feed(m, 1, NULL);
	p = mock_assign(m);
	mock_fetch(m, 1);
	rd_kafka_mock_broker_push_request_error_rtts(m->mc, 2, API_PRODUCE, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0);
	mock_finish(m->jobs[0], SL_JOB_FAILED, "handler_error", 0);
	mock_hand_back(m, 0);
	assert_true(mock_pump(m, mock_idle, 10));
	assert_int_equal(p->stored, 1);
	assert_non_null(m->w.alone);
	expect_dead_letter(m, 1, "handler_error");
	mock_destroy(m);
}

static int
alone_made(struct mock *m)
{
	return m->w.alone != NULL;
}

/* The same for a result: refused in a batch, it goes alone. Refused alone
 * too (larger than the topic takes by itself), it waits, holding its
 * offset, and goes when the topic takes it: the ledger holds this result,
 * and nothing else may be published for the job. Published once. */
static void
test_result_refused_in_a_batch_goes_alone(void **state)
{
	struct mock *m = mock_new(1, 1, "");
	struct sl_partition *p;

	(void)state;
	mock_feed(m, 1, NULL);
	p = mock_assign(m);
	mock_fetch(m, 1);
	mock_fail_requests(m, API_PRODUCE, 2, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
	mock_finish(m->jobs[0], SL_JOB_SUCCEEDED, NULL, 0);
	mock_hand_back(m, 0);
	assert_true(mock_pump(m, alone_made, 5));
	assert_true(mock_pump(m, mock_retrying, 5));
	assert_int_equal(p->stored, -1);
	assert_int_equal(m->w.in_flight, 1);
	assert_true(mock_pump(m, mock_idle, 10));
	assert_int_equal(p->stored, 1);
	assert_int_equal(atomic_load(&m->w.n_succeeded), 1);
	assert_int_equal(mock_read(m, MOCK_RESULTS, 1, NULL, NULL, 5), 1);
	mock_destroy(m);
}

/* The same, when the producer itself refuses the dead letter: a job
 * message larger than the producer's message.max.bytes (16 MiB by
 * default in kafka.c; lowered here) fails with message_too_large, and its
 * dead letter cannot be produced with its value at all.
 * rd_kafka_producev() refuses such a record at once (MSG_SIZE_TOO_LARGE), not
 * in a delivery report: it used to be retried a second later with its value
 * again, forever, and the partition's offset never moved again. */
static void
test_dead_letter_too_large_for_the_producer_is_sent_without_its_value(void **state)
{
	static char big[4096];
	struct mock *m;
	struct sl_partition *p;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	m = mock_new(1, 1, "\"message.max.bytes=2000\"");
	mock_feed(m, 1, big);
	p = mock_assign(m);
	mock_fetch(m, 1);
	mock_finish(m->jobs[0], SL_JOB_FAILED, "message_too_large", 0);
	mock_hand_back(m, 0);
	assert_true(mock_pump(m, mock_idle, 5));
	assert_int_equal(p->stored, 1);
	expect_dead_letter(m, 0, NULL);
	mock_destroy(m);
}

static int
stored_moved(struct mock *m)
{
	return m->w.parts->stored >= 0;
}

static long want_in_flight;

static int
in_flight_down(struct mock *m)
{
	return m->w.in_flight <= want_in_flight;
}

/* Jobs at offsets 0, 1 and 2 complete as 2, 0, 1: the stored offset is
 * always the lowest unfinished one, never past a job still in flight. */
static void
test_out_of_order_completion_stores_the_lowest_unfinished_offset(void **state)
{
	struct mock *m = mock_new(1, 1, "");
	struct sl_partition *p;

	(void)state;
	mock_feed(m, 3, NULL);
	p = mock_assign(m);
	mock_fetch(m, 3);
	assert_int_equal(m->jobs[2]->offset, 2);

	mock_finish(m->jobs[2], SL_JOB_SUCCEEDED, NULL, 0);
	mock_hand_back(m, 2);
	want_in_flight = 2;
	assert_true(mock_pump(m, in_flight_down, 5));
	/* Offset 0 is the next to read: storing it is harmless, passing it
	 * would lose jobs 0 and 1 at a crash. */
	assert_true(p->stored <= 0);
	assert_int_equal(sl_offsets_committable(p->offsets), 0);

	mock_finish(m->jobs[0], SL_JOB_SUCCEEDED, NULL, 0);
	mock_hand_back(m, 0);
	want_in_flight = 1;
	assert_true(mock_pump(m, in_flight_down, 5));
	assert_true(stored_moved(m));
	assert_int_equal(p->stored, 1);

	mock_finish(m->jobs[1], SL_JOB_REJECTED, NULL, 0);
	mock_hand_back(m, 1);
	assert_true(mock_pump(m, mock_idle, 5));
	assert_int_equal(p->stored, 3);
	assert_int_equal(atomic_load(&m->w.n_succeeded), 2);
	assert_int_equal(atomic_load(&m->w.n_rejected), 1);
	assert_int_equal(rd_kafka_commit(m->w.consumer, NULL, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_int_equal(mock_committed(m), 3);
	mock_destroy(m);
}

/* A job handed back unrun (revoked, or abandoned at a stop) ends without
 * its offset: a later job that succeeded cannot carry the stored offset
 * past it, so the next owner runs it again. */
static void
test_skipped_job_holds_its_offset(void **state)
{
	struct mock *m = mock_new(1, 1, "");
	struct sl_partition *p;

	(void)state;
	mock_feed(m, 2, NULL);
	p = mock_assign(m);
	mock_fetch(m, 2);
	mock_finish(m->jobs[0], SL_JOB_SUCCEEDED, NULL, 1);
	mock_finish(m->jobs[1], SL_JOB_SUCCEEDED, NULL, 0);
	mock_hand_back(m, 0);
	mock_hand_back(m, 1);
	assert_true(mock_pump(m, mock_idle, 5));
	assert_int_equal(atomic_load(&m->w.n_skipped), 1);
	assert_int_equal(atomic_load(&m->w.n_succeeded), 1);
	assert_true(p->stored <= 0);
	assert_int_equal(sl_offsets_committable(p->offsets), 0);
	assert_int_equal(mock_read(m, MOCK_RESULTS, 1, NULL, NULL, 5), 1);
	mock_destroy(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failed_delivery_is_retried_before_the_offset_moves),
		cmocka_unit_test(test_dead_letter_and_result_both_acknowledged_before_the_offset_moves),
		cmocka_unit_test(test_dead_letter_too_large_is_sent_without_its_value),
		cmocka_unit_test(test_dead_letter_refused_in_a_batch_goes_alone_with_its_value),
		cmocka_unit_test(test_result_refused_in_a_batch_goes_alone),
		cmocka_unit_test(test_dead_letter_too_large_for_the_producer_is_sent_without_its_value),
		cmocka_unit_test(test_out_of_order_completion_stores_the_lowest_unfinished_offset),
		cmocka_unit_test(test_skipped_job_holds_its_offset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
