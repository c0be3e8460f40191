/* outcome.h -- what became of a job: its result event, its ledger row, its
 * dead letter (outcome.c); and struct sl_item, one job on its way through
 * its transaction.
 *
 * Executor threads: an item belongs to the executor running its batch.
 */
#ifndef SL_OUTCOME_H
#define SL_OUTCOME_H

#include <jansson.h>
#include <libpq-fe.h>

#include "event.h"
#include "handler_int.h"
#include "pg.h"
#include "worker_int.h"

/* One job of a batch on its way through PostgreSQL (job.c, txn.c, group.c). */
struct sl_item {
	struct sl_job *job;
	struct sl_event ev;
	const struct sl_job_type_rt *jt;
	char *pending;               /* result on its way into the ledger, malloc'ed */
	enum sl_job_status pending_status; /* its status */
	char attempts[16];           /* job->attempts as text, for the ledger */
	int wait;                    /* the last attempt ended because PostgreSQL cannot judge now */
	int pg_error;                /* its pending failed outcome comes from a database error */
	double retry_after;          /* the handler asked to wait at least this long before the retry */
	char *job_json;              /* sl_job_json()'s text, malloc'ed... */
	int job_json_attempt;        /* ...for this attempt */
	int giving_up;               /* out of attempts: its failed outcome is on its way to the ledger */
	int record_tries;            /* ...and that write failed this often while PostgreSQL answered */
	char code[64];               /* why the last attempt did not finish it */
	char message[1024];
	/* Its handler's statement, sent ahead of the handler (sl_handler.plan). */
	struct sl_plan plan;
	enum { SL_AHEAD_NONE, SL_AHEAD_SENT, SL_AHEAD_USED } ahead;
	PGresult *ahead_res;         /* the statement's result until the handler takes it */
};

/* Returns a new result event (malloc'ed) for a job that ran: `status`,
 * with `output` (borrowed, may be NULL) or an error code and message. */
char *sl_outcome_result(struct sl_executor *ex, const struct sl_event *ev, const char *status, json_t *output,
                        const char *code, const char *message);

/* Finishes a message that never reached the ledger (not a CloudEvent,
 * unknown type, schema violation): a `failed` result whose id and time come
 * from the message, the same on every delivery, and its dead letter. ev may
 * be NULL (nothing decoded). */
void sl_outcome_fail_unrun(struct sl_executor *ex, struct sl_job *job, const struct sl_event *ev,
                           const char *code, const char *message);

/* Takes the stored result of a job that is final already (a duplicate
 * delivery) into its job. Returns 0, or -1 with *cls and errbuf. */
int sl_outcome_take_stored(struct sl_executor *ex, struct sl_item *it, enum sl_pg_class *cls, char *errbuf,
                           size_t errbuf_size);

/* Writes a `failed` outcome (it->code, it->message) to the ledger in the
 * current transaction and gives the job its result; a job final meanwhile
 * takes its stored result instead. Returns 0, or -1 with *cls and errbuf. */
int sl_outcome_record_failed(struct sl_executor *ex, struct sl_item *it, enum sl_pg_class *cls, char *errbuf,
                             size_t errbuf_size);

/* For a job whose failed outcome cannot be written while PostgreSQL
 * answers: the outcome the ledger holds, else a `failed` result without a
 * row, deterministic like sl_outcome_fail_unrun()'s. Returns -1 when the
 * ledger cannot be read. */
int sl_outcome_fail_unrecorded(struct sl_executor *ex, struct sl_item *it);

/* Gives the item's pending result to its job: its ledger write went
 * through. */
void sl_outcome_take_pending(struct sl_item *it);

/* A failed job also gets a dead letter (with it->code and it->message);
 * one that took another delivery's stored result does not. */
void sl_outcome_dead_letter(struct sl_item *it);

/* Logs a job that failed for good (once it has its dead letter). */
void sl_outcome_log_failed(const struct sl_item *it);

#endif
