/* jobsql.c -- the statements sluice runs around a job's handler: the
 * transaction's own (begin, commit, savepoints' lock bound, role) and the
 * job ledger's (read a stored result, write an outcome), and the check that
 * the ledger has the shape they need.
 *
 * Kept in one place so that a reader sees every statement sluice sends,
 * and a migration of the ledger (schemas/sql/) has one file to match.
 * The texts live in static storage: their addresses name the prepared
 * statements (pgpipe.c).
 *
 * Not for: when they are sent (group.c, txn.c) or what their results mean
 * for a job (outcome.c).
 */
#include "jobsql.h"

#include <stdio.h>
#include <string.h>

#include "pg.h"

const char sl_sql_begin[] = "begin";
const char sl_sql_commit[] = "commit";
const char sl_sql_rollback[] = "rollback";
/* Inside a group, every job after the first waits at most this long for a
 * lock. Jobs of one transaction lock rows in job order, not in one global
 * order, so two groups can deadlock, and a group that waits holds all its
 * own locks meanwhile, which makes others wait in turn. So a job that would
 * wait ends the group instead: the jobs before it commit (their locks go)
 * and it goes first in the next group, where it waits like a lone job. With
 * 1,000 accounts and 4 executors, `make bench` measured max_batch 32 at 770
 * jobs/s with 100 ms here and 2,300 with 1 ms. (Brief waits, such as for a
 * table's extension lock, end a group too; that costs a COMMIT.) */
const char sl_sql_lock_timeout[] = "set local lock_timeout = '1ms'";
/* After a handler's statement that ran under its job type's role and
 * statement_timeout: back to the session's, before sluice's own writes. */
const char sl_sql_leave_role[] = "set local role none";
const char sl_sql_leave_timeout[] = "set local statement_timeout to default";
/* The session's bounds for one transaction, when sessions are a pooler's
 * (postgres.pooling): $1 lock_timeout, $2 idle_in_transaction_session_timeout,
 * in ms. Sent with each BEGIN, in its pipeline. */
const char sl_sql_bounds[] = "select set_config('lock_timeout', $1, true), "
                             "set_config('idle_in_transaction_session_timeout', $2, true)";
const char sl_sql_stored[] = "select status, result from sluice.jobs where source = $1 and id = $2";
/* Writes a job's outcome: its one write to the ledger. $6 is the attempts
 * of this delivery; a row left `failed` by an earlier delivery adds them.
 * A final row (succeeded, rejected) is left alone: the statement below
 * returns no row then, the pipelined one raises SL001 (0004_job_final.sql). */
#define SQL_RECORD_INTO "insert into sluice.jobs (source, id, type, status, result, attempts, finished_at) "
#define SQL_RECORD_CONFLICT(final_row)                                                                  \
	"on conflict (source, id) do update set status = excluded.status, result = excluded.result, "  \
	"finished_at = now(), attempts = sluice.jobs.attempts + excluded.attempts where " final_row
#define SQL_RECORD(final_row)                                                                           \
	SQL_RECORD_INTO "values ($1, $2, $3, $4, $5, $6::integer, now()) " SQL_RECORD_CONFLICT(final_row)
#define SQL_FINAL_OR_RAISE                                                                              \
	"case when sluice.jobs.status in ('running', 'failed') then true "                              \
	"else sluice.job_final(sluice.jobs.source, sluice.jobs.id, sluice.jobs.status) end"
const char sl_sql_record[] = SQL_RECORD("sluice.jobs.status in ('running', 'failed') returning status");
const char sl_sql_record_or_raise[] = SQL_RECORD(SQL_FINAL_OR_RAISE);
/* The outcomes of several jobs in one statement: each parameter is an
 * array with an element per job, in the order of sl_sql_record's. One
 * statement instead of one per job: pgbench measured a 32-job group with
 * its ledger rows written so at 0.89 of the server's CPU per job
 * (tests/bench/group-shapes). Atomic: a job final already fails them all. */
const char sl_sql_record_many_or_raise[] =
	SQL_RECORD_INTO "select u.source, u.id, u.type, u.status, u.result, u.attempts, now() "
	"from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::integer[]) "
	"as u(source, id, type, status, result, attempts) " SQL_RECORD_CONFLICT(SQL_FINAL_OR_RAISE);

/* Prepared on every new connection, before any transaction: a statement
 * cannot be prepared inside a transaction that an error has aborted, and
 * that is where undo and record run. */
const char *const sl_sql_framework[] = {
	sl_sql_begin,  sl_sql_commit, sl_sql_rollback,        sl_sql_lock_timeout,
	sl_sql_stored, sl_sql_record, sl_sql_record_or_raise, sl_sql_record_many_or_raise,
};
_Static_assert(sizeof(sl_sql_framework) / sizeof(sl_sql_framework[0]) == SL_SQL_N_FRAMEWORK,
               "jobsql.h counts the framework statements");

int
sl_sql_check_ledger(PGconn *conn, char *errbuf, size_t errbuf_size)
{
	size_t i;

	for (i = 0; i < SL_SQL_N_FRAMEWORK; i++) {
		PGresult *res = PQprepare(conn, "", sl_sql_framework[i], 0, NULL);
		int ok = res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK;

		if (!ok) {
			const char *words = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
			char why[512];

			snprintf(why, sizeof(why), "%s", words ? words : PQerrorMessage(conn));
			why[strcspn(why, "\n")] = '\0';
			snprintf(errbuf, errbuf_size,
			         "the job ledger sluice.jobs does not have the shape this worker needs (%s%s%s); "
			         "run 'sluicectl migrate'",
			         sl_pg_sqlstate(res), *sl_pg_sqlstate(res) ? ": " : "", why);
		}
		PQclear(res);
		if (!ok)
			return -1;
	}
	return 0;
}
