/* test_pg_classify.c -- unit tests for pg.c's classification of failures:
 * the job's own transient failures, "cannot judge now" and permanent ones
 * (DESIGN.md, Failures). No server needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "pg.h"

static void
test_the_jobs_own_transient_failures(void **state)
{
	(void)state;
	assert_int_equal(sl_pg_classify_sqlstate("40001"), SL_PG_TRANSIENT); /* serialization */
	assert_int_equal(sl_pg_classify_sqlstate("40P01"), SL_PG_TRANSIENT); /* deadlock */
	assert_int_equal(sl_pg_classify_sqlstate("55P03"), SL_PG_TRANSIENT); /* lock timeout */
}

static void
test_cannot_judge_now(void **state)
{
	static const char *const states[] = {
		"",      /* no SQLSTATE: libpq lost the connection */
		"08006", "08001", "08P01",
		"57P01", "57P02", "57P03", "57P05", /* shutdown, crash, starting up, idle session timeout */
		"57014",                            /* a cancel sluice did not ask for */
		"53300", "53100", "53200",          /* too many connections, disk full, out of memory */
		"25006",                            /* read-only server (a standby after failover) */
		"25P03",                            /* idle-in-transaction timeout */
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		if (sl_pg_classify_sqlstate(states[i]) != SL_PG_UNAVAILABLE)
			fail_msg("SQLSTATE \"%s\" is not \"cannot judge now\"", states[i]);
	assert_int_equal(sl_pg_classify_sqlstate(NULL), SL_PG_UNAVAILABLE);
	/* No connection, or none that works, is the same. */
	assert_int_equal(sl_pg_classify(NULL, NULL), SL_PG_UNAVAILABLE);
}

static void
test_permanent(void **state)
{
	static const char *const states[] = { "22003", "23505", "P0001", "42883", "42P01", "SL001", "XX000" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		if (sl_pg_classify_sqlstate(states[i]) != SL_PG_PERMANENT)
			fail_msg("SQLSTATE \"%s\" is not permanent", states[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_the_jobs_own_transient_failures),
		cmocka_unit_test(test_cannot_judge_now),
		cmocka_unit_test(test_permanent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
