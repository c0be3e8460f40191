/* outcome.c -- what became of a job: its result event, its ledger row and
 * its dead letter.
 *
 * A job's outcome is final once its ledger row says so: a result goes out
 * only after the row that holds it committed, or, for a message that never
 * reached PostgreSQL, with an id and time taken from the message so that
 * every delivery publishes the same bytes. A job that is final already (a
 * redelivery, another worker's) takes the stored result instead of its own.
 *
 * Not for: when outcomes are written (txn.c, job.c). Executor threads.
 */
#include "outcome.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobsql.h"
#include "log.h"
#include "pgpipe.h"

/* strdup() that aborts when memory is out (a job cannot go on without). */
static char *
xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");

	if (d == NULL)
		abort();
	return d;
}

/* Latest Kafka timestamp (ms) that RFC 3339's four-digit years can show:
 * 9999-12-31T23:59:59.999Z. */
#define MAX_RFC3339_MS INT64_C(253402300799999)

/* Formats the message's timestamp as RFC 3339, for results that must be the
 * same on every delivery. The producer sets it: one that is missing, or
 * beyond year 9999 (which our own result schema would refuse), gives way to
 * the time it is read. */
static void
message_time(const rd_kafka_message_t *msg, char out[48])
{
	rd_kafka_timestamp_type_t tstype;
	int64_t ms = rd_kafka_message_timestamp(msg, &tstype);
	time_t secs;
	struct tm tm;

	if (ms < 0 || ms > MAX_RFC3339_MS) {
		sl_event_now(out);
		return;
	}
	secs = (time_t)(ms / 1000);
	gmtime_r(&secs, &tm);
	snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* A `failed` result for a message that never reached the ledger, plus its
 * dead letter. The result id is the message's coordinates. */
void
sl_outcome_fail_unrun(struct sl_executor *ex, struct sl_job *job, const struct sl_event *ev,
                    const char *code, const char *message)
{
	struct sl_result r = { 0 };
	char id[512], when[48];

	snprintf(id, sizeof(id), "%s/%" PRId32 "/%" PRId64, job->part->topic, job->part->partition, job->offset);
	message_time(job->msg, when);
	r.status = "failed";
	r.job_id = ev ? ev->id : NULL;
	r.job_source = ev ? ev->source : NULL;
	r.job_type = ev ? ev->type : NULL;
	r.error_code = code;
	r.error_message = message;
	job->status = SL_JOB_FAILED;
	if ((job->result = sl_event_result(&r, id, ex->w->cfg->result_source, when)) == NULL)
		abort();
	job->dlq_code = xstrdup(code);
	job->dlq_message = xstrdup(message);
	sl_log_job_warn(ev && ev->id ? ev->id : NULL, "job failed: %s: %s (%s/%d@%" PRId64 ")", code, message,
	                job->part->topic, (int)job->part->partition, job->offset);
}

/* Builds the result event of a job that ran (new malloc'ed string). */
char *
sl_outcome_result(struct sl_executor *ex, const struct sl_event *ev, const char *status, json_t *output,
             const char *code, const char *message)
{
	struct sl_result r = { 0 };
	char result_id[37], when[32];
	char *result;

	sl_event_uuid(result_id);
	sl_event_now(when);
	r.status = status;
	r.job_id = ev->id;
	r.job_source = ev->source;
	r.job_type = ev->type;
	r.output = output;
	r.error_code = code;
	r.error_message = message;
	if ((result = sl_event_result(&r, result_id, ex->w->cfg->result_source, when)) == NULL)
		abort();
	return result;
}

/* Reads the stored result of a final job into it (a duplicate delivery). */
int
sl_outcome_take_stored(struct sl_executor *ex, struct sl_item *it, enum sl_pg_class *cls, char *errbuf, size_t errbuf_size)
{
	const char *params[2] = { it->ev.source, it->ev.id };
	PGresult *res = sl_pgconn_run(&ex->pg, sl_sql_stored, 2, params, cls, errbuf, errbuf_size);

	if (res == NULL)
		return -1;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 1)) {
		snprintf(errbuf, errbuf_size, "ledger row of a finished job has no result");
		*cls = SL_PG_PERMANENT;
		PQclear(res);
		return -1;
	}
	free(it->job->result);
	it->job->result = xstrdup(PQgetvalue(res, 0, 1));
	it->job->status = strcmp(PQgetvalue(res, 0, 0), "succeeded") == 0 ? SL_JOB_SUCCEEDED : SL_JOB_REJECTED;
	it->job->duplicate = 1;
	PQclear(res);
	return 0;
}

/* Records a failed outcome for it inside the current transaction and fills
 * its result; if the job is final meanwhile, takes the stored result instead. */
int
sl_outcome_record_failed(struct sl_executor *ex, struct sl_item *it, enum sl_pg_class *cls, char *errbuf, size_t errbuf_size)
{
	char *result = sl_outcome_result(ex, &it->ev, "failed", NULL, it->code, it->message);
	const char *params[6] = { it->ev.source, it->ev.id, it->ev.type, "failed", result, it->attempts };
	PGresult *res;
	int final;

	snprintf(it->attempts, sizeof(it->attempts), "%d", it->job->attempts);
	res = sl_pgconn_run(&ex->pg, sl_sql_record, 6, params, cls, errbuf, errbuf_size);

	if (res == NULL) {
		free(result);
		return -1;
	}
	final = PQntuples(res) == 0;
	PQclear(res);
	if (final) {
		free(result);
		return sl_outcome_take_stored(ex, it, cls, errbuf, errbuf_size);
	}
	free(it->job->result);
	it->job->result = result;
	it->job->status = SL_JOB_FAILED;
	return 0;
}

/* A failed job also goes to the dead-letter topic; one that another worker
 * finished meanwhile (record_failed took its stored result) does not. */
void
sl_outcome_dead_letter(struct sl_item *it)
{
	if (it->job->status != SL_JOB_FAILED)
		return;
	it->job->dlq_code = xstrdup(it->code);
	it->job->dlq_message = xstrdup(it->message);
}

/* Hands an item's pending result to its job: its ledger write went through. */
void
sl_outcome_take_pending(struct sl_item *it)
{
	free(it->job->result);
	it->job->result = it->pending;
	it->job->status = it->pending_status;
	it->pending = NULL;
	sl_outcome_dead_letter(it);
}

/* Settles a job whose failed outcome cannot be written while PostgreSQL
 * answers (the write itself breaks, e.g. a trigger): the outcome the
 * ledger holds, if it holds one (final, or `failed` from an earlier
 * delivery), else a `failed` result without a ledger row, like a message
 * that never reached PostgreSQL gets, with an id and words that are the
 * same on every delivery. Returns -1 when the ledger cannot be read. */
int
sl_outcome_fail_unrecorded(struct sl_executor *ex, struct sl_item *it)
{
	const char *params[2] = { it->ev.source, it->ev.id };
	enum sl_pg_class cls;
	char errbuf[512];
	PGresult *res = sl_pgconn_run(&ex->pg, sl_sql_stored, 2, params, &cls, errbuf, sizeof(errbuf));
	const char *st;

	if (res == NULL)
		return -1;
	free(it->job->result);
	it->job->result = NULL;
	st = PQntuples(res) == 1 && !PQgetisnull(res, 0, 1) ? PQgetvalue(res, 0, 0) : "";
	if (strcmp(st, "succeeded") == 0 || strcmp(st, "rejected") == 0 || strcmp(st, "failed") == 0) {
		it->job->result = xstrdup(PQgetvalue(res, 0, 1));
		it->job->status = strcmp(st, "succeeded") == 0 ? SL_JOB_SUCCEEDED
		                  : strcmp(st, "rejected") == 0 ? SL_JOB_REJECTED
		                                                : SL_JOB_FAILED;
		it->job->duplicate = strcmp(st, "failed") != 0;
		sl_outcome_dead_letter(it);
	} else {
		sl_outcome_fail_unrun(ex, it->job, &it->ev, SL_ERR_RETRIES_EXHAUSTED,
		                    "gave up: the job's own ledger write fails while postgresql answers");
	}
	PQclear(res);
	return 0;
}

void
sl_outcome_log_failed(const struct sl_item *it)
{
	if (it->job->dlq_code != NULL)
		sl_log_job_warn(it->ev.id, "job failed: %s: %s (%s/%d@%" PRId64 ", %d attempts)", it->job->dlq_code,
		                it->job->dlq_message, it->job->part->topic, (int)it->job->part->partition,
		                it->job->offset, it->job->attempts);
}
