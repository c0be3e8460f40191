/* test_handler_api.c -- unit tests for handler_api.c: the transaction-control
 * check of sluice_job_exec(), and the public helpers that need no server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "handler_int.h"

static void
test_transaction_control(void **state)
{
	static const char *const refused[] = {
		"commit", "COMMIT", "Commit;", "  \n\tcommit", "begin", "BEGIN ISOLATION LEVEL SERIALIZABLE",
		"start transaction", "end", "rollback", "ROLLBACK TO SAVEPOINT a", "abort", "savepoint a",
		"release savepoint a", "release a", "prepare transaction 'x'", "PREPARE\n  TRANSACTION 'x'",
		"-- a comment\ncommit", "/* c */ commit", "/* outer /* nested */ still */ commit",
		"--x\n/*y*/ --z\n  RollBack", "commit prepared 'x'", "rollback prepared 'x'",
		"prepare /* c */ transaction 'x'",
	};
	static const char *const allowed[] = {
		"select 1", "insert into t values (1)", "beginning", "select 'commit'", "commit_log",
		"/* commit */ select 1", "-- commit\nselect 1", "prepare p as select 1", "prepare", "",
		"   ", "/* unterminated commit", "with x as (select 1) select * from x", "end_of_day",
		"\"commit\"", "call proc()", "update t set committed = true", "starting", "ends",
		"prepare transactions", "/* a /* b */ commit */ select 1",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		if (!sl_sql_is_transaction_control(refused[i]))
			fail_msg("not refused: %s", refused[i]);
	}
	for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		if (sl_sql_is_transaction_control(allowed[i]))
			fail_msg("refused: %s", allowed[i]);
	}
	assert_int_equal(sl_sql_is_transaction_control(NULL), 0);
}

/* A handler that tries COMMIT, then reports its NULL result as a database
 * error and succeeds anyway for good measure. */
static enum sluice_outcome
committing(sluice_job_t *job)
{
	PGresult *res = sluice_job_exec(job, "commit", 0, NULL);

	assert_null(res);
	/* Later statements are not sent either. */
	assert_null(sluice_job_exec(job, "select 1", 0, NULL));
	return sluice_job_succeed(job, json_object());
}

static void
test_refused_statement_fails_job(void **state)
{
	static const struct sl_api_handler api = { committing, NULL };
	struct sl_job_ctx ctx;

	(void)state;
	memset(&ctx, 0, sizeof(ctx));
	ctx.job_type = "t";
	ctx.handler_data = &api;
	assert_int_equal(sl_api_run(&ctx), SL_OUTCOME_FAILED);
	assert_string_equal(ctx.error_code, "transaction_control");
	assert_non_null(strstr(ctx.error_message, "refused to run \"commit\" for job type \"t\""));
	assert_null(ctx.output);
}

static enum sluice_outcome
accessors(sluice_job_t *job)
{
	size_t len = 99;
	const void *key = sluice_job_key(job, &len);

	assert_string_equal(sluice_job_id(job), "i");
	assert_string_equal(sluice_job_source(job), "s");
	assert_string_equal(sluice_job_type(job), "t");
	assert_null(sluice_job_subject(job));
	assert_string_equal(sluice_job_time(job), "2024-01-01T00:00:00Z");
	assert_int_equal(len, 3);
	assert_memory_equal(key, "k\0y", 3);
	assert_int_equal(sluice_job_attempt(job), 2);
	assert_string_equal(sluice_job_data_text(job), "{\"a\":1}");
	/* The same text, kept with the job. */
	assert_ptr_equal(sluice_job_data_text(job), sluice_job_data_text(job));
	/* Not an object: refused, released, FAILED. */
	assert_int_equal(sluice_job_succeed(job, json_integer(1)), SLUICE_FAILED);
	assert_int_equal(sluice_job_succeed(job, NULL), SLUICE_FAILED);
	assert_int_equal(sluice_job_retry(job, "busy", 2.5, "try %s", "later"), SLUICE_RETRY);
	return sluice_job_succeed(job, json_pack("{s:i}", "ok", 1));
}

static void
test_accessors(void **state)
{
	static const struct sl_api_handler api = { accessors, NULL };
	struct sl_job_ctx ctx;

	(void)state;
	memset(&ctx, 0, sizeof(ctx));
	ctx.job_id = "i";
	ctx.job_source = "s";
	ctx.job_type = "t";
	ctx.job_time = "2024-01-01T00:00:00Z";
	ctx.key = "k\0y";
	ctx.key_len = 3;
	ctx.attempt = 2;
	ctx.data = json_pack("{s:i}", "a", 1);
	ctx.handler_data = &api;
	assert_int_equal(sl_api_run(&ctx), SL_OUTCOME_SUCCEEDED);
	assert_null(ctx.data_text); /* released when the handler returned */
	assert_int_equal(json_integer_value(json_object_get(ctx.output, "ok")), 1);
	assert_string_equal(ctx.error_code, "busy");
	assert_true(ctx.retry_after == 2.5);
	json_decref(ctx.output);
	json_decref(ctx.data);
}

static void
test_plan(void **state)
{
	static const char sql[] = "select $1";
	struct sl_plan plan;
	const char *params[SLUICE_PLAN_MAX_PARAMS + 1] = { 0 };
	const char *kept;
	char long_text[40];

	(void)state;
	memset(&plan, 0, sizeof(plan));
	kept = sluice_plan_keep((sluice_plan_t *)&plan, "12345");
	assert_string_equal(kept, "12345");
	memset(long_text, 'x', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	assert_non_null(sluice_plan_keep((sluice_plan_t *)&plan, long_text));
	assert_null(sluice_plan_keep((sluice_plan_t *)&plan, long_text)); /* 6 + 40 + 40 > 64 */
	params[0] = kept;
	assert_int_equal(sluice_plan_set((sluice_plan_t *)&plan, sql, 1, params), 1);
	assert_ptr_equal(plan.sql, sql);
	assert_ptr_equal(plan.params[0], kept);
	assert_int_equal(sluice_plan_set((sluice_plan_t *)&plan, sql, SLUICE_PLAN_MAX_PARAMS + 1, params), 0);
	assert_int_equal(sluice_plan_set((sluice_plan_t *)&plan, "commit", 0, NULL), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transaction_control),
		cmocka_unit_test(test_refused_statement_fails_job),
		cmocka_unit_test(test_accessors),
		cmocka_unit_test(test_plan),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
